//! Issue 28's differential fuzz: the proof that our reading of HTTP/1 requests is at
//! least as strict as before, and reads what it accepts as hyper does.
//!
//! Random request streams aimed at the edge's hard cases (`generate`: framing
//! respellings, bare CR/LF, obs-fold, odd targets and tokens, pipelining, gunicorn's
//! corpus, byte mutations), each cut into reads at random points, go to:
//! - [`ours`]: our reading of a connection's requests, issue 28's codec (the one
//!   function to switch when the reading changes: before the codec it was the guard
//!   then hyper, and the first 10-minute run was against that);
//! - hyper's HTTP/1 server, with the settings the front gave it (`reference`);
//! - the guard alone (`reference::guard_reads`), whose verdicts the codec must keep.
//!
//! The properties, on every stream:
//! - (a) every stream ours accepts, hyper parses to the same requests (method,
//!   target, version, fields, body), up to the request that ends the connection;
//!   where hyper cannot read a request ours takes, the difference must be one of
//!   the [`known_difference`]s (a target `http::Uri` refuses, `"` in a query: served
//!   as sent, as gunicorn does), or ours closes earlier (a `close` in a Connection
//!   value hyper cannot read);
//! - (b) ours refuses every stream the guard refuses, with the same `Reject`
//!   when the refusal is in a head (a stream whose connection ends before the
//!   guard's refusal is exempt);
//! - (c) cutting the stream into other reads never changes ours' result.
//!
//! The summary (printed; `--nocapture` shows it) counts what hyper accepts that the
//! guard refuses, by hard case: our strictness margin, not a failure.
//!
//! Runs: `cargo test --lib guard::fuzz` runs `PROPTEST_CASES` cases (default
//! [`CI_CASES`], about 5 s of CPU in a debug build); `FUZZ_MINUTES=10 cargo test --lib
//! guard::fuzz -- --nocapture` runs batches of 2,000 for that long, goes on past a
//! failure to find the others, and prints the summary. A failure prints the shrunk
//! stream (bytes, cuts, limits): make it a test in guard/tests/fuzz_found.rs.

mod framing;
mod generate;
mod request;
mod reference;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use super::{upgrade::lists_token, GuardLimits, Reject};
use generate::Stream;
use reference::{guard_reads, hyper_reads, HyperOutcome, Seen};

/// Cases in a CI run (`PROPTEST_CASES` overrides it).
const CI_CASES: u32 = 5_000;

/// How ours ended a stream: every complete request, or a refusal.
type Ours = Result<Vec<Seen>, Reject>;

/// Our reading of a connection's requests: issue 28's codec (`crate::http1`), on
/// the guard's one parse, through the crate's test API (`crate::testing`: the
/// guard itself never uses the codec built on it). (Before it, the guard then hyper on what it passed, the
/// stand-in restored: `ours` at 2f10bfbb3.)
fn ours(reads: &[Vec<u8>], limits: GuardLimits) -> Ours {
    let reads: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
    let requests = crate::testing::parse_requests_in_reads(&reads, limits)?;
    Ok(requests.into_iter().map(seen).collect())
}

/// A request the codec read, in the terms hyper gives.
fn seen(r: crate::testing::ParsedRequest) -> Seen {
    Seen {
        method: r.method,
        target: reference::printed_target(&r.target),
        version: r.version,
        fields: reference::ordered_fields(r.fields),
        body: r.body,
    }
}

/// Requests hyper cannot read that ours takes on purpose, with the reason.
fn known_difference(request: &Seen) -> Option<&'static str> {
    if request.target.starts_with("(not a Uri)") {
        // `"` in a query and the like: gunicorn and nginx serve them, the `http`
        // crate refuses them (before the codec, the guard handed hyper a stand-in).
        return Some("target http::Uri refuses");
    }
    None
}

/// Whether the connection ends after `r` (so nothing after it is read as HTTP):
/// hyper's keep-alive rules (a `close` token in any Connection field; HTTP/1.0
/// without `keep-alive`; a Connection value that is not visible ASCII is not read)
/// and the guard's WebSocket candidate.
fn ends_connection(r: &Seen) -> bool {
    let connection: Vec<&[u8]> = r
        .fields
        .iter()
        .filter(|(n, v)| n == b"connection" && is_visible_ascii(v))
        .map(|(_, v)| v.as_slice())
        .collect();
    let close = connection.iter().any(|v| lists_token(v, b"close"));
    let keep_alive = connection.iter().any(|v| lists_token(v, b"keep-alive"));
    close || (r.version == (1, 0) && !keep_alive) || is_websocket_candidate(r)
}

/// A `close` in a Connection value that is not visible ASCII: hyper does not read
/// the value (`HeaderValue::to_str`), the codec and nginx do and close: stricter.
fn closes_where_hyper_does_not(r: &Seen) -> bool {
    r.fields
        .iter()
        .any(|(n, v)| n == b"connection" && !is_visible_ascii(v) && lists_token(v, b"close"))
}

fn is_visible_ascii(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

fn is_websocket_candidate(r: &Seen) -> bool {
    let lists = |name: &[u8], token: &[u8]| {
        r.fields
            .iter()
            .any(|(n, v)| n == name && lists_token(v, token))
    };
    r.method == "GET"
        && r.version == (1, 1)
        && lists(b"upgrade", b"websocket")
        && lists(b"connection", b"upgrade")
}

/// The requests up to the one that ends the connection; a WebSocket candidate's
/// body is not HTTP (the tunnel's, or refused by the front).
fn until_connection_ends(mut requests: Vec<Seen>) -> Vec<Seen> {
    if let Some(end) = requests.iter().position(ends_connection) {
        requests.truncate(end + 1);
        if is_websocket_candidate(&requests[end]) {
            requests[end].body.clear();
        }
    }
    requests
}

/// What the run saw, for the summary.
#[derive(Default)]
struct Tally {
    cases: u64,
    accepted: u64,
    requests: u64,
    guard_refused: BTreeMap<String, u64>,
    /// Hard case → (the guard refused a request with it, hyper read that request).
    margin: BTreeMap<&'static str, (u64, u64)>,
    /// Hard case → streams the guard accepted that hyper (raw) refused.
    hyper_refused: BTreeMap<&'static str, u64>,
    known: BTreeMap<&'static str, u64>,
    /// The first streams the guard accepted and hyper refused, with hyper's error.
    hyper_refused_examples: Vec<String>,
}

/// One case: the three properties, and the tally.
fn check(rt: &tokio::runtime::Runtime, s: &Stream, tally: &mut Tally) -> Result<(), TestCaseError> {
    let reads_a = s.reads(&s.cuts_a);
    let guard = guard_reads(&reads_a, s.limits);
    if guard.h2 {
        return Ok(());
    }
    let ours_a = ours(&reads_a, s.limits);
    // (c)
    for (name, cuts) in [("cuts_b", &s.cuts_b[..]), ("one read", &[][..])] {
        let other = ours(&s.reads(cuts), s.limits);
        if other != ours_a {
            return Err(fail(format!(
                "(c) {name} gives {other:?}, cuts_a gives {ours_a:?}"
            )));
        }
    }
    let hyper = hyper_reads(rt, &reads_a, &s.limits);
    tally.cases += 1;
    tally_margin(s, &guard, &hyper, tally);
    // (b)
    if let (Some(refusal), Some(at)) = (guard.refused, guard.refused_request()) {
        *tally
            .guard_refused
            .entry(format!("{refusal:?}"))
            .or_default() += 1;
        match &ours_a {
            Err(r) if *r == refusal || guard.in_body => {}
            Err(r) => {
                return Err(fail(format!(
                    "(b) ours refused with {r:?}, the guard with {refusal:?}"
                )))
            }
            Ok(v) => {
                let v = until_connection_ends(v.clone());
                if !(v.len() <= at && v.last().is_some_and(ends_connection)) {
                    return Err(fail(format!(
                        "(b) ours accepted {v:?}; the guard refused request {at}: {refusal:?}"
                    )));
                }
            }
        }
    }
    // (a)
    let Ok(requests) = ours_a else {
        return Ok(());
    };
    tally.accepted += 1;
    tally.requests += requests.len() as u64;
    same_as_hyper(until_connection_ends(requests), &hyper, tally)
}

/// Property (a) for one accepted stream.
fn same_as_hyper(
    ours: Vec<Seen>,
    hyper: &HyperOutcome,
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    // A WebSocket candidate's head ends HTTP whatever its body: hyper's counts
    // even when the stream stopped inside its body.
    let mut theirs = hyper.requests.clone();
    theirs.extend(hyper.unfinished.clone().filter(is_websocket_candidate));
    let theirs = until_connection_ends(theirs);
    for (i, request) in ours.iter().enumerate() {
        let Some(h) = theirs.get(i) else {
            if let Some(reason) = known_difference(request) {
                *tally.known.entry(reason).or_default() += 1;
                return Ok(());
            }
            return Err(fail(format!(
                "(a) hyper did not read request {i} {request:?}: {:?}",
                hyper.refused
            )));
        };
        if request != h {
            return Err(fail(format!(
                "(a) request {i}: ours {request:?}\n  hyper {h:?}"
            )));
        }
    }
    if theirs.len() > ours.len() {
        if ours.last().is_some_and(closes_where_hyper_does_not) {
            let reason = "ours closes on a Connection value hyper does not read";
            *tally.known.entry(reason).or_default() += 1;
            return Ok(());
        }
        return Err(fail(format!(
            "(a) hyper read {} requests, ours {}: {:?}",
            theirs.len(),
            ours.len(),
            &theirs[ours.len()..]
        )));
    }
    Ok(())
}

fn fail(why: String) -> TestCaseError {
    TestCaseError::fail(why)
}

/// Counts what hyper (reading the raw stream) takes that the guard refuses, and
/// what the guard takes that hyper refuses, under the hard cases of the request.
fn tally_margin(
    s: &Stream,
    guard: &reference::GuardOutcome,
    hyper: &HyperOutcome,
    tally: &mut Tally,
) {
    if let Some(at) = guard.refused_request() {
        let took = hyper.requests.len() > at;
        for tag in s.tags_of(at) {
            let entry = tally.margin.entry(tag).or_default();
            entry.0 += 1;
            entry.1 += u64::from(took);
        }
    } else if hyper.refused.is_some() && (hyper.requests.len() as u64) < guard.heads {
        // hyper refused a request whose head the guard passed (not merely the start
        // of one the guard was still reading, nor bytes after a WebSocket head).
        let at = hyper.requests.len();
        for tag in s.tags_of(at) {
            *tally.hyper_refused.entry(tag).or_default() += 1;
        }
        // A few of each kind of error: the shortest streams, where it shows.
        let error = hyper.refused.as_deref().unwrap_or_default();
        let examples = &mut tally.hyper_refused_examples;
        let same = examples.iter().filter(|e| e.starts_with(error)).count();
        if same < 3 && s.bytes.len() < 300 {
            examples.push(format!("{error}: b\"{}\"", s.bytes.escape_ascii()));
        }
    }
}

impl Tally {
    fn print(&self, elapsed: Duration) {
        println!(
            "differential fuzz: {} streams in {:.1} s; ours accepted {} ({} requests, each read as hyper reads it); the guard refused {:?}",
            self.cases,
            elapsed.as_secs_f64(),
            self.accepted,
            self.requests,
            self.guard_refused
        );
        println!(
            "strictness margin: hard case: refused by the guard / of which hyper read the request"
        );
        for (tag, (refused, took)) in &self.margin {
            if *took > 0 {
                println!("  {tag}: {refused} / {took}");
            }
        }
        println!(
            "accepted by the guard, refused by hyper reading the raw stream (hard case: streams):"
        );
        for (tag, n) in &self.hyper_refused {
            println!("  {tag}: {n}");
        }
        for example in &self.hyper_refused_examples {
            println!("  e.g. {example}");
        }
        println!(
            "known differences (hyper cannot read what ours takes): {:?}",
            self.known
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// One batch of `cases` cases; the shrunk case of a failure.
fn run_batch(rt: &tokio::runtime::Runtime, cases: u32, tally: &RefCell<Tally>) -> Option<String> {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&generate::stream(), |s| {
        check(rt, &s, &mut tally.borrow_mut())
    });
    match result {
        Ok(()) => None,
        Err(TestError::Fail(why, s)) => Some(format!("{why}\nminimal case: {s:?}")),
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn ours_reads_as_hyper_and_refuses_what_the_guard_refuses() {
    let rt = runtime();
    let tally = RefCell::new(Tally::default());
    let start = Instant::now();
    let minutes = std::env::var("FUZZ_MINUTES").ok();
    let failures: Vec<String> = match minutes.and_then(|m| m.parse::<f64>().ok()) {
        // Long mode: batches until the time is up; a failure is printed and the
        // run goes on, to find the others.
        Some(m) => {
            let end = start + Duration::from_secs_f64(m * 60.0);
            let mut failures = Vec::new();
            while Instant::now() < end {
                if let Some(failure) = run_batch(&rt, 2000, &tally) {
                    println!("FAILURE {failure}");
                    failures.push(failure);
                }
            }
            failures
        }
        None => {
            let cases = std::env::var("PROPTEST_CASES").ok();
            let cases = cases.and_then(|c| c.parse().ok()).unwrap_or(CI_CASES);
            run_batch(&rt, cases, &tally).into_iter().collect()
        }
    };
    tally.borrow().print(start.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
