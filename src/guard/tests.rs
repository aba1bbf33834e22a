//! The guard's tests: gunicorn's corpus split three ways, ours, the head cap, I/O.

use super::*;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance/gunicorn-requests"
);

/// What the guard did with a whole byte stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    result: Result<(), Reject>,
    idle: bool,
    seen: u64,
}

fn feed_in_pieces(raw: &[u8], limits: GuardLimits, mut size: impl FnMut() -> usize) -> Outcome {
    let mut guard = Http1Guard::new(limits);
    let mut out = BytesMut::new();
    let mut rest = raw;
    let mut result = Ok(());
    while !rest.is_empty() && result.is_ok() {
        let n = size().clamp(1, rest.len());
        result = guard.feed(&rest[..n], &mut out);
        rest = &rest[n..];
    }
    Outcome {
        out: out.to_vec(),
        result,
        idle: guard.is_idle(),
        seen: guard.requests_seen(),
    }
}

/// A small deterministic generator for the random splits (no extra dependency).
fn xorshift(seed: u64) -> impl FnMut() -> usize {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 23) as usize + 1
    }
}

/// Feeds `raw` all at once, byte by byte and in random pieces; all three must agree.
fn check_with(raw: &[u8], limits: GuardLimits) -> Outcome {
    let whole = feed_in_pieces(raw, limits, || usize::MAX);
    let bytewise = feed_in_pieces(raw, limits, || 1);
    assert_eq!(whole, bytewise, "byte by byte differs from all at once");
    for seed in [1, 7, 0x5eed] {
        let random = feed_in_pieces(raw, limits, xorshift(seed));
        assert_eq!(whole, random, "random split (seed {seed}) differs");
    }
    whole
}

fn check(raw: &[u8]) -> Outcome {
    check_with(raw, GuardLimits::default())
}

fn passes(raw: &[u8]) -> Vec<u8> {
    let o = check(raw);
    assert_eq!(
        o.result,
        Ok(()),
        "refused: {}",
        String::from_utf8_lossy(raw)
    );
    o.out
}

fn refused(raw: &[u8]) -> Reject {
    let o = check(raw);
    match o.result {
        Err(r) => r,
        Ok(()) => panic!("accepted: {}", String::from_utf8_lossy(raw)),
    }
}

// ---- the corpus ----

fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// The bytes a valid case must forward: all of them, except empty lines the guard
/// drops between requests (RFC 9112 §2.2).
fn expected_forwarded(id: &str, raw: &[u8]) -> Vec<u8> {
    match id {
        "valid/rfc9112_leading_crlf_01" => raw[2..].to_vec(),
        // The CRLF after the body is an empty line before a request that never comes.
        "valid/040" => raw[..raw.len() - 2].to_vec(),
        _ => raw.to_vec(),
    }
}

/// Invalid cases refused with something other than 400.
fn expected_reject(id: &str) -> Option<Reject> {
    Some(match id {
        "invalid/001" | "invalid/rfc9112_chunked_missing_final_crlf_01" => return None,
        "invalid/006" => Reject::UriTooLong,
        "invalid/007"
        | "invalid/008"
        | "invalid/009"
        | "invalid/017"
        | "invalid/limit_header_default_01" => Reject::HeaderFieldsTooLarge,
        "invalid/version_02" => Reject::VersionNotSupported,
        _ => Reject::BadRequest,
    })
}

/// Corpus cases for features that are not the guard's.
fn out_of_scope(id: &str) -> bool {
    // PROXY protocol is a separate, optional listener feature.
    id.starts_with("invalid/pp_")
}

fn corpus_cases() -> Vec<serde_json::Value> {
    let path = format!("{CORPUS}/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("cases.json");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["config_dependent"] != true && c["superseded"].is_null())
        .cloned()
        .collect()
}

fn raw_of(case: &serde_json::Value) -> Vec<u8> {
    let path = format!("{CORPUS}/{}", case["raw"].as_str().expect("raw"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn corpus_valid_cases_pass_unchanged() {
    let mut count = 0;
    for case in corpus_cases().iter().filter(|c| c["kind"] == "valid") {
        let id = case["id"].as_str().unwrap();
        let raw = raw_of(case);
        let o = check(&raw);
        assert_eq!(o.result, Ok(()), "{id} refused");
        assert_eq!(o.out, expected_forwarded(id, &raw), "{id}: forwarded bytes");
        let requests = case["requests"].as_array().unwrap();
        assert!(o.seen >= requests.len() as u64, "{id}: {} heads", o.seen);
        let mut at = 0;
        for r in requests {
            let line = latin1(&format!(
                "{} {} {}\r\n",
                r["method"].as_str().unwrap(),
                r["uri"].as_str().unwrap(),
                r["version"].as_str().unwrap()
            ));
            let found = memchr::memmem::find(&o.out[at..], &line);
            at += found.unwrap_or_else(|| panic!("{id}: request line missing")) + line.len();
        }
        let pending = id == "valid/040" || case["truncated_body"].is_object();
        assert_eq!(o.idle, !pending, "{id}: idle at the end");
        count += 1;
    }
    assert_eq!(count, 50, "valid cases outside config/superseded");
}

#[test]
fn corpus_invalid_cases_are_refused_or_held() {
    let mut count = 0;
    for case in corpus_cases().iter().filter(|c| c["kind"] == "invalid") {
        let id = case["id"].as_str().unwrap();
        if out_of_scope(id) {
            continue;
        }
        let o = check(&raw_of(case));
        match expected_reject(id) {
            Some(r) => assert_eq!(o.result, Err(r), "{id}"),
            // incomplete: nothing refused yet, but no complete request went through
            None => assert!(o.result.is_ok() && !o.idle, "{id}: {o:?}"),
        }
        count += 1;
    }
    assert_eq!(count, 72, "invalid cases outside config/PROXY");
}

// ---- our own cases ----

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn content_length_with_transfer_encoding_is_refused_in_either_order() {
    let cl_te = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let te_cl = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(refused(cl_te), Reject::BadRequest);
    assert_eq!(refused(te_cl), Reject::BadRequest);
}

#[test]
fn chunked_must_be_once_and_last() {
    for te in [
        "chunked, chunked",
        "chunked,chunked",
        "chunked, gzip",
        "gzip",
        "identity",
        "chunked;x=1",
        "chunked, ",
        "chu nked",
        "\"chunked\"",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        // "chunked, ": an empty last element, hyper's 400 (tests/fuzz_found.rs).
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{te}");
    }
    let twice =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(refused(twice), Reject::BadRequest);
    let upper = b"POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n";
    passes(upper);
}

#[test]
fn transfer_encoding_in_http10_is_refused() {
    let raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(refused(raw), Reject::BadRequest);
}

#[test]
fn content_length_must_be_plain_digits_within_u64() {
    for cl in ["0x10", "1e3", "5,5", "5 5", "", "+5", "-0", "١"] {
        let raw = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{cl:?}");
    }
    let max = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nab";
    assert!(passes(max).ends_with(b"ab"));
    let over = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n";
    assert_eq!(refused(over), Reject::BadRequest);
    let padded = b"POST / HTTP/1.1\r\nContent-Length: \t007 \r\n\r\nabcdefg";
    passes(padded);
    let dup = b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\na";
    assert_eq!(refused(dup), Reject::BadRequest);
}

#[test]
fn chunk_sizes_are_strict() {
    let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for line in [
        "10000000000000000", // 2^64: overflows
        "0x5",
        "5 ",
        " 5",
        "5\t",
        "",
        "-5",
        "5;a\x00b",
        "5;a\x7fb",
    ] {
        let raw = format!("{head}{line}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{line:?}");
    }
    for line in ["5", "05", "5;a=b", "5 ;a", "5\t;a=\"x y\""] {
        let raw = format!("{head}{line}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(passes(raw.as_bytes()), raw.as_bytes(), "{line:?}");
    }
    let huge = format!("{head}ffffffffffffffff\r\nabc");
    assert!(
        check(huge.as_bytes()).result.is_ok(),
        "u64::MAX is a valid size"
    );
    let long_ext = format!("{head}5;{}\r\n", "a".repeat(MAX_CHUNK_LINE));
    assert_eq!(refused(long_ext.as_bytes()), Reject::BadRequest);
}

#[test]
fn chunk_data_must_end_in_crlf() {
    let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for tail in [
        "5\r\nhelloX\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello\r\r\n",
    ] {
        let raw = format!("{head}{tail}");
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{tail:?}");
    }
}

#[test]
fn trailers_are_validated_and_framing_fields_refused() {
    let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    passes(format!("{head}X-Sum: 1\r\nx-other: 2\r\n\r\n").as_bytes());
    for t in [
        "content-length: 3",
        "Transfer-Encoding: chunked",
        "HOST: a",
        "Connection: close",
        "Trailer: x",
        " folded",
        "X y: 1",
        "X: a\x01b",
        "nocolon",
        "X: 1\n",
    ] {
        let raw = format!("{head}{t}\r\n\r\n");
        assert!(check(raw.as_bytes()).result.is_err(), "{t:?}");
    }
    let limits = GuardLimits {
        fields: 2,
        ..GuardLimits::default()
    };
    let many = format!("{head}A: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    let o = check_with(many.as_bytes(), limits);
    assert_eq!(o.result, Err(Reject::HeaderFieldsTooLarge));
}

#[test]
fn request_targets() {
    for target in [
        "/\0",
        "/a\tb",
        "/a\x7f",
        "/\u{e9}",
        "a/b",
        "",
        "http://",
        "ftp://x/",
        "http:///x",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{target:?}");
    }
    let connect_origin = b"CONNECT /x HTTP/1.1\r\n\r\n";
    assert_eq!(refused(connect_origin), Reject::BadRequest);
    let connect_no_port = b"CONNECT example.com HTTP/1.1\r\n\r\n";
    assert_eq!(refused(connect_no_port), Reject::BadRequest);
    passes(b"GET HTTP://EXAMPLE.COM HTTP/1.1\r\n\r\n");
    passes(b"GET /a?b=\"c\"&d=%20#frag HTTP/1.1\r\n\r\n");
}

#[test]
fn the_internal_field_is_never_a_clients() {
    for name in [
        "X-Ferricorn-Original-Request",
        "x-ferricorn-original-request",
    ] {
        let head = format!("GET / HTTP/1.1\r\n{name}: GET /admin\r\n\r\n");
        assert_eq!(refused(head.as_bytes()), Reject::BadRequest, "{name}");
        // whatever the target
        let head = format!("GET /\" HTTP/1.1\r\n{name}: GET /admin\r\n\r\n");
        assert_eq!(refused(head.as_bytes()), Reject::BadRequest, "{name}");
        let trailer = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{name}: GET /admin\r\n\r\n"
        );
        assert_eq!(refused(trailer.as_bytes()), Reject::BadRequest, "{name}");
    }
}

#[test]
fn request_line_shape_method_and_version() {
    for line in [
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET /  HTTP/1.1",
        " GET / HTTP/1.1",
        "GET / http/1.1",
        "GET / HTTP/1",
        "GET / HTTP/1.10",
        "get / HTTP/1.1",
        "GE / HTTP/1.1",
        "ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1",
        "G#T / HTTP/1.1",
        "GET\t/ HTTP/1.1",
    ] {
        let raw = format!("{line}\r\n\r\n");
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{line:?}");
    }
    passes(b"ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n\r\n");
    passes(b"M-SEARCH /x HTTP/1.1\r\n\r\n");
    for v in ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0"] {
        let raw = format!("GET / {v}\r\n\r\n");
        assert_eq!(refused(raw.as_bytes()), Reject::VersionNotSupported, "{v}");
    }
}

#[test]
fn header_lines() {
    for field in [
        "X : 1",
        "X\t: 1",
        ": 1",
        "X",
        "X: a\rb",
        "X: a\x00b",
        "X: a\x7fb",
        "X\u{e9}: 1",
        " X: 1",
        "\tX: 1",
    ] {
        let raw = format!("GET / HTTP/1.1\r\n{field}\r\n\r\n");
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{field:?}");
    }
    passes(b"GET / HTTP/1.1\r\nX_Under: 1\r\nX: \t\xff\x80 a\t\r\nEmpty:\r\n\r\n");
    let bare_lf_end = b"GET / HTTP/1.1\r\nX: 1\r\n\n";
    assert_eq!(refused(bare_lf_end), Reject::BadRequest);
    let bare_lf_line = b"GET / HTTP/1.1\n\r\n";
    assert_eq!(refused(bare_lf_line), Reject::BadRequest);
    let dup_host = b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n";
    assert_eq!(refused(dup_host), Reject::BadRequest);
}

#[test]
fn missing_host_refused_only_when_required() {
    let raw = b"GET / HTTP/1.1\r\n\r\n";
    passes(raw);
    let strict = GuardLimits {
        require_host: true,
        ..GuardLimits::default()
    };
    assert_eq!(check_with(raw, strict).result, Err(Reject::BadRequest));
    assert_eq!(check_with(b"GET / HTTP/1.0\r\n\r\n", strict).result, Ok(()));
    assert_eq!(check_with(GET, strict).result, Ok(()));
}

#[test]
fn pipelined_requests_pass_in_order() {
    let raw = [GET, GET, GET].concat();
    let o = check(&raw);
    assert_eq!((o.result, o.out, o.seen, o.idle), (Ok(()), raw, 3, true));
}

#[test]
fn a_request_inside_a_body_stays_body() {
    let inner = "GET /evil HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    let cl = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let chunked = format!(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    for first in [cl, chunked] {
        let raw = [first.as_bytes(), GET].concat();
        let o = check(&raw);
        assert_eq!((o.result, o.seen), (Ok(()), 2));
        assert_eq!(o.out, raw);
    }
}

#[test]
fn one_empty_line_between_requests_is_dropped() {
    let raw = [GET, b"\r\n", GET].concat();
    assert_eq!(passes(&raw), [GET, GET].concat());
    let two = [GET, b"\r\n\r\n", GET].concat();
    let o = check(&two);
    assert_eq!((o.result, o.out), (Err(Reject::BadRequest), GET.to_vec()));
    assert_eq!(refused(b"\nGET / HTTP/1.1\r\n\r\n"), Reject::BadRequest);
}

#[test]
fn request_line_limit_is_inclusive() {
    let limit = GuardLimits::default().request_line;
    let line = |len: usize| format!("GET /{} HTTP/1.1", "a".repeat(len - 14));
    assert_eq!(line(limit).len(), limit);
    passes(format!("{}\r\n\r\n", line(limit)).as_bytes());
    let over = format!("{}\r\n\r\n", line(limit + 1));
    assert_eq!(refused(over.as_bytes()), Reject::UriTooLong);
    // refused before the line ends: a client cannot make us buffer without bound
    let endless = format!("GET /{}", "a".repeat(limit));
    assert_eq!(refused(endless.as_bytes()), Reject::UriTooLong);
}

#[test]
fn field_limits_are_inclusive() {
    let limits = GuardLimits::default();
    // a field line of exactly `field_size` bytes, CRLF included
    let field = |size: usize| format!("X: {}\r\n", "v".repeat(size - 5));
    assert_eq!(field(limits.field_size).len(), limits.field_size);
    passes(format!("GET / HTTP/1.1\r\n{}\r\n", field(limits.field_size)).as_bytes());
    let over = format!("GET / HTTP/1.1\r\n{}\r\n", field(limits.field_size + 1));
    assert_eq!(refused(over.as_bytes()), Reject::HeaderFieldsTooLarge);
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(limits.field_size));
    assert_eq!(refused(endless.as_bytes()), Reject::HeaderFieldsTooLarge);

    let fields = |n: usize| (0..n).map(|i| format!("F{i}: x\r\n")).collect::<String>();
    passes(format!("GET / HTTP/1.1\r\n{}\r\n", fields(limits.fields)).as_bytes());
    let too_many = format!("GET / HTTP/1.1\r\n{}\r\n", fields(limits.fields + 1));
    assert_eq!(refused(too_many.as_bytes()), Reject::HeaderFieldsTooLarge);
}

#[test]
fn h2_preface_switches_to_pass_through() {
    let mut raw = H2_PREFACE.to_vec();
    raw.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00anything\n\r\0");
    let o = check(&raw);
    assert_eq!((o.result, o.out), (Ok(()), raw.clone()));
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut out = BytesMut::new();
    guard.feed(&raw[..10], &mut out).unwrap();
    assert!(
        out.is_empty() && !guard.is_h2(),
        "a partial preface is held"
    );
    guard.feed(&raw[10..], &mut out).unwrap();
    assert!(guard.is_h2());
}

#[test]
fn h2_preface_lookalikes_are_http1() {
    // "P" and "PRI " start like the preface and must be replayed as HTTP/1.
    passes(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    passes(b"PRI /x HTTP/1.1\r\n\r\n");
    let broken = b"PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n";
    assert!(check(broken).result.is_err());
    // only at the start of a connection
    let later = [GET, H2_PREFACE].concat();
    assert!(check(&later).result.is_err());
}

#[test]
fn a_refusal_knows_whether_the_reader_has_the_head() {
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut out = BytesMut::new();
    let body = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\n";
    assert!(guard.feed(body, &mut out).is_err());
    assert!(guard.refused_inside_body());
    for head in [
        &b"PRI * HTTP/2.0\r\n\r\nXX"[..],
        b"GET / HTTP/1.1\r\nX : 1\r\n",
    ] {
        let mut guard = Http1Guard::new(GuardLimits::default());
        assert!(guard.feed(head, &mut out).is_err());
        assert!(!guard.refused_inside_body());
    }
}

#[test]
fn a_refusal_is_final() {
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut out = BytesMut::new();
    assert_eq!(
        guard.feed(b"GET / HTTP/1.1\r\nX : y\r\n\r\n", &mut out),
        Err(Reject::BadRequest)
    );
    assert_eq!(guard.feed(GET, &mut out), Err(Reject::BadRequest));
    assert!(out.is_empty());
}

#[test]
fn error_responses_are_well_formed() {
    for r in [
        Reject::BadRequest,
        Reject::UriTooLong,
        Reject::HeaderFieldsTooLarge,
        Reject::RequestTimeout,
        Reject::VersionNotSupported,
    ] {
        let bytes = r.response_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = r.status();
        assert!(head.starts_with(&format!("HTTP/1.1 {} ", status.as_u16())));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.ends_with("\r\nConnection: close"));
        assert_eq!(
            body,
            format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap()
            )
        );
    }
}

// ---- the head cap, what the differential fuzz found ----
mod fuzz_found;
mod head;
