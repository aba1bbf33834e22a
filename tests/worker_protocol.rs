//! The worker process end to end: the test venv's interpreter running
//! `python -m ferricorn.worker` (the module tests/run-all.sh installed from the
//! wheel) against a Unix listener bound here, spoken to with `ferricorn::wire` frames
//! (the launcher is tests/common/worker.rs). Each test waits on facts (frames, exit
//! status, log lines) with deadlines.

#[path = "common/worker.rs"]
mod launcher;

use bytes::Bytes;
use ferricorn::claims::Claims;
use ferricorn::wire::{Frame, Scheme};
use launcher::*;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

#[test]
fn hello_world() {
    let mut w = probe(&[]);
    let r = w.get("/hello", "");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "Hello, world!");
    assert_eq!(r.end, End::Complete);
}

#[test]
fn post_body_is_echoed_with_and_without_length() {
    let mut w = probe(&[]);
    let r = w.request(head("POST", "/echo", ""), &[b"hello ", b"world"]);
    assert_eq!(r.text(), "hello world");
    let mut chunked = head("POST", "/echo", "");
    chunked.content_length = None;
    let r = w.request(chunked, &[b"a", b"bc", b"", b"def"]);
    assert_eq!(r.text(), "abcdef");
    let r = w.request(head("POST", "/read_n", "n=4"), &[b"abcdef", b"ghij"]);
    assert_eq!(r.json(), serde_json::json!(["abcd", "efgh", "ij"]));
}

#[test]
fn input_readline_readlines_and_iteration() {
    let mut w = probe(&[]);
    let r = w.request(
        head("POST", "/lines", ""),
        &[b"first\nsec", b"ond\nthird\nlast"],
    );
    assert_eq!(
        r.json(),
        serde_json::json!(["first\n", "se", ["cond\n", "third\n", "last"]])
    );
    let mut h = head("POST", "/iter_input", "");
    h.content_length = None;
    let r = w.request(h, &[b"a\nb", b"\n", b"c"]);
    assert_eq!(r.json(), serde_json::json!(["a\n", "b\n", "c"]));
}

#[test]
fn write_callable_sends_before_the_iterable() {
    let mut w = probe(&[]);
    assert_eq!(w.get("/write", "").text(), "one,two,three");
}

#[test]
fn exc_info_replaces_or_reraises() {
    let mut w = probe(&[]);
    let r = w.get("/exc_info", "");
    assert_eq!((r.status, r.text().as_str()), (Some(503), "replaced"));
    let r = w.get("/exc_info_after", "");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.text(), "partial");
    assert!(matches!(r.end, End::Aborted(_)), "{r:?}");
    let r = w.get("/twice", "");
    assert_eq!(r.status, Some(500));
    w.wait_log("called a second time");
}

#[test]
fn exceptions_before_and_after_the_head() {
    let mut w = probe(&[]);
    let r = w.get("/raise_before", "");
    assert_eq!(r.status, Some(500));
    assert_eq!(r.text(), "500 Internal Server Error\n");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.end, End::Complete);
    w.wait_log("RuntimeError: boom before the head");
    let r = w.get("/raise_after", "");
    assert_eq!((r.status, r.text().as_str()), (Some(200), "first"));
    assert!(matches!(r.end, End::Aborted(_)));
    w.wait_log("RuntimeError: boom after the head");
    let r = w.get("/bad_item", "");
    assert_eq!(r.status, Some(500));
    // and the worker keeps serving
    assert_eq!(w.get("/hello", "").text(), "Hello, world!");
}

#[test]
fn content_length_mismatch_aborts() {
    let mut w = probe(&[]);
    let r = w.get("/cl_short", "");
    assert_eq!(r.text(), "12345");
    assert!(matches!(r.end, End::Aborted(_)));
    let r = w.get("/cl_long", "");
    assert_eq!(r.text(), "123");
    assert!(matches!(r.end, End::Aborted(_)));
}

#[test]
fn headers_are_checked_and_hop_by_hop_dropped() {
    let mut w = probe(&[]);
    let r = w.get("/bad_header", "");
    assert_eq!(r.status, Some(500));
    w.wait_log("invalid value for header");
    let r = w.get("/cookies", "");
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "Set-Cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(r.header("connection").is_none() && r.header("transfer-encoding").is_none());
}

#[test]
fn head_drops_the_body() {
    let mut w = probe(&[]);
    let r = w.request(head("HEAD", "/hello", ""), &[]);
    assert_eq!(r.status, Some(200));
    assert!(r.body.is_empty());
    assert_eq!(r.end, End::Complete);
}

#[test]
fn file_wrapper_sends_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let p = path.to_str().unwrap();
    let mut w = probe(&[]);
    let r = w.get("/file", &format!("path={p}"));
    assert_eq!(r.body, data);
    assert_eq!(r.end, End::Complete);
    let r = w.get("/file", &format!("path={p}&skip=10"));
    assert_eq!(r.body, &data[10..]);
    let r = w.get("/file", &format!("path={p}&cl=100"));
    assert_eq!((r.body.as_slice(), &r.end), (&data[..100], &End::Complete));
    let r = w.get("/file_py", "");
    assert_eq!(r.text(), "from a BytesIO");
}

#[test]
fn close_is_called_also_after_a_front_abort() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("closed.txt");
    let rec = record.to_str().unwrap();
    let mut w = probe(&[]);
    let r = w.get("/close", &format!("record={rec}"));
    assert_eq!(r.text(), "ab");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "closed\n");
    std::fs::remove_file(&record).unwrap();

    let s = w.stream();
    let mut h = head("POST", "/close_abort", &format!("record={rec}"));
    h.content_length = None;
    w.send(s, Frame::RequestHead(Box::new(h)));
    assert!(matches!(w.next_frame(s), Frame::ResponseHead(_)));
    assert_eq!(
        w.next_frame(s),
        Frame::ResponseBody(Bytes::from_static(b"x"))
    );
    w.send(s, Frame::Abort(Bytes::from_static(b"client went away")));
    assert!(matches!(w.next_frame(s), Frame::Abort(_)));
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "closed\n");
    assert_eq!(w.get("/hello", "").text(), "Hello, world!");
}

#[test]
fn environ_types_and_values() {
    let mut w = probe(&["--threads", "2"]);
    let mut h = head("POST", "/environ/caf%C3%A9", "a=1&b=%20");
    h.scheme = Scheme::Https;
    h.headers = vec![
        (
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"text/plain"),
        ),
        (
            Bytes::from_static(b"content-length"),
            Bytes::from_static(b"3"),
        ),
        (Bytes::from_static(b"x-multi"), Bytes::from_static(b"one")),
        (Bytes::from_static(b"accept"), Bytes::from_static(b"*/*")),
        (Bytes::from_static(b"x-multi"), Bytes::from_static(b"two")),
        (
            Bytes::from_static(b"x-latin"),
            Bytes::from_static(b"caf\xe9"),
        ),
    ];
    let r = w.request(h, &[b"abc"]);
    let env = r.json();
    let s = |k: &str| {
        assert_eq!(env[k][0], "str", "{k} type: {env}");
        env[k][1].as_str().unwrap().to_string()
    };
    assert_eq!(s("REQUEST_METHOD"), "POST");
    assert_eq!(s("SCRIPT_NAME"), "");
    assert_eq!(s("PATH_INFO"), "/environ/caf\u{c3}\u{a9}");
    assert_eq!(s("QUERY_STRING"), "a=1&b=%20");
    assert_eq!(s("RAW_URI"), "/environ/caf%C3%A9?a=1&b=%20");
    assert_eq!(s("REQUEST_URI"), "/environ/caf%C3%A9?a=1&b=%20");
    assert_eq!(s("CONTENT_TYPE"), "text/plain");
    assert_eq!(s("CONTENT_LENGTH"), "3");
    assert_eq!(s("SERVER_NAME"), "example.test");
    assert_eq!(s("SERVER_PORT"), "8080");
    assert_eq!(s("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(s("REMOTE_ADDR"), "10.1.2.3");
    assert_eq!(s("REMOTE_PORT"), "40000");
    assert_eq!(s("HTTP_X_MULTI"), "one,two");
    assert_eq!(s("HTTP_ACCEPT"), "*/*");
    assert_eq!(s("HTTP_X_LATIN"), "caf\u{e9}");
    assert_eq!(s("wsgi.url_scheme"), "https");
    assert_eq!(s("ferricorn.request_id"), "req-1");
    assert!(env.get("HTTP_CONTENT_TYPE").is_none() && env.get("HTTP_CONTENT_LENGTH").is_none());
    assert!(env.get("HTTP_X_REQUEST_ID").is_none());
    assert_eq!(env["wsgi.version"], serde_json::json!(["tuple", "(1, 0)"]));
    assert_eq!(env["wsgi.multithread"], serde_json::json!(["bool", true]));
    assert_eq!(env["wsgi.multiprocess"], serde_json::json!(["bool", true]));
    assert_eq!(env["wsgi.run_once"], serde_json::json!(["bool", false]));
    assert_eq!(
        env["wsgi.input_terminated"],
        serde_json::json!(["bool", true])
    );
    assert!(env["wsgi.errors"][1].as_str().unwrap().contains("stderr"));
    assert!(env["wsgi.file_wrapper"][1]
        .as_str()
        .unwrap()
        .contains("FileWrapper"));
    // Without a body: no CONTENT_TYPE / CONTENT_LENGTH.
    let mut h = head("GET", "/environ", "");
    h.content_length = None;
    h.version = 20;
    let env = w.request(h, &[]).json();
    assert!(env.get("CONTENT_TYPE").is_none() && env.get("CONTENT_LENGTH").is_none());
    assert_eq!(env["SERVER_PROTOCOL"][1], "HTTP/2");
}

#[test]
fn two_requests_in_flight_with_two_threads() {
    let mut w = probe(&["--threads", "2"]);
    let a = w.stream();
    let mut h = head("POST", "/echo", "");
    h.content_length = None;
    w.send(a, Frame::RequestHead(Box::new(h)));
    w.send(a, Frame::RequestBody(Bytes::from_static(b"first half, ")));
    // A blocks in wsgi.input.read() on one thread; B is answered by the other.
    let b = w.send_request(head("GET", "/hello", ""), &[]);
    assert_eq!(w.response(b).text(), "Hello, world!");
    w.send(a, Frame::RequestBody(Bytes::from_static(b"second half")));
    w.send(a, Frame::RequestEnd);
    assert_eq!(w.response(a).text(), "first half, second half");
}

#[test]
fn a_request_the_front_revoked_before_it_started_is_dropped_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.claims");
    let claims = Claims::create(&path).unwrap();
    let mut w = probe(&["--claims", path.to_str().unwrap()]);
    let (a, b, c) = (w.stream(), w.stream(), w.stream());
    claims.offer(a);
    claims.offer(b);
    claims.offer(c);
    assert!(claims.revoke(b), "nothing has started b yet");
    for (s, path) in [(a, "/hello"), (b, "/environ"), (c, "/hello")] {
        let mut h = head("GET", path, "");
        h.content_length = Some(0);
        w.send(s, Frame::RequestHead(Box::new(h)));
        w.send(s, Frame::RequestEnd);
    }
    assert_eq!(w.response(a).text(), "Hello, world!");
    assert_eq!(w.response(c).text(), "Hello, world!");
    // Requests run in order on the one thread: an answer to b would be stashed by now.
    assert!(
        w.stash.get(&b).is_none_or(VecDeque::is_empty),
        "{:?}",
        w.stash.get(&b)
    );
    assert!(
        !claims.revoke(a) && !claims.revoke(c),
        "a and c were started"
    );
    // A stream the front never offered is not run either.
    let d = w.send_request(head("GET", "/hello", ""), &[]);
    let e = w.stream();
    claims.offer(e);
    w.send(e, Frame::RequestHead(Box::new(head("GET", "/hello", ""))));
    w.send(e, Frame::RequestEnd);
    assert_eq!(w.response(e).text(), "Hello, world!");
    assert!(w.stash.get(&d).is_none_or(VecDeque::is_empty));
}

#[test]
fn wsgiref_validator_raises_nothing() {
    let mut w = probe(&[]);
    let r = w.request(head("POST", "/validated", ""), &[b"l1\nrest"]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (Some(200), "w:line=l1\nrest=rest"),
        "{}",
        w.log()
    );
    let r = w.request(head("HEAD", "/validated", ""), &[]);
    assert_eq!(r.status, Some(200));
    w.wait_log("validated app ran");
    assert_eq!(w.get("/hello", "").status, Some(200));
    let log = w.log();
    for bad in [
        "AssertionError",
        "Exception ignored",
        "WSGIWarning",
        "Traceback",
    ] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
}

/// `sys.executable`, `sys.prefix` and `sys.version` of an interpreter, as it says.
fn facts_of(python: &Path) -> (String, String, String) {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; print(sys.version.split()[0]); print(sys.prefix); print(sys.executable)",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let mut lines = out.lines().map(str::to_string);
    let mut next = || lines.next().unwrap();
    (next(), next(), next())
}

#[test]
fn the_worker_is_the_interpreter_that_started_it() {
    let (version, prefix, executable) = facts_of(&python());
    let mut w = probe(&[]);
    let info = w.get("/pyinfo", "").json();
    assert_eq!(info["version"], version);
    assert_eq!(info["prefix"], prefix);
    assert_eq!(info["executable"], executable);
    assert_eq!(info["path"][0], apps().to_str().unwrap());
}

/// A second venv, made here, with the wheel installed by pip: its own packages are
/// what the worker imports, by the interpreter's own venv rules.
#[test]
fn venv_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let status = Command::new(python())
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success());
    let wheel = wheel();
    let status = Command::new(python())
        .args(["-m", "pip", "--disable-pip-version-check", "-q", "--python"])
        .arg(venv.join("bin/python"))
        .args(["install", "--no-deps", "--no-index"])
        .arg(&wheel)
        .status()
        .unwrap();
    assert!(status.success(), "pip install {}", wheel.display());
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    std::fs::write(site.join("venvonly.py"), "VALUE = 'only in the venv'\n").unwrap();
    let dir = apps();
    let args = ["--app", "probe:app", "--chdir", dir.to_str().unwrap()];
    let mut w = Worker::start_on(&venv.join("bin/python"), &args, None);
    assert_eq!(w.get("/venvmod", "").json(), "only in the venv");
    let info = w.get("/pyinfo", "").json();
    let canon = |v: &serde_json::Value| std::fs::canonicalize(v.as_str().unwrap()).unwrap();
    assert_eq!(
        canon(&info["prefix"]),
        std::fs::canonicalize(&venv).unwrap()
    );
    assert_eq!(
        info["executable"],
        venv.join("bin/python").to_str().unwrap()
    );
}

/// The wheel tests/run-all.sh built (deploy/build-wheel.sh).
fn wheel() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/wheels");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .unwrap_or_else(|| panic!("no wheel in {}: run `bash tests/run-all.sh`", dir.display()))
}

fn failing(app: &str, extra: &[&str]) -> (ExitStatus, String) {
    let dir = apps();
    let mut args = vec!["--app", app, "--chdir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (mut child, _dir, _listener, log, argv) = spawn_worker(&python(), &args, None);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{argv:?} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let (m, cv) = &*log;
    let mut g = m.lock().unwrap();
    while !g.1 {
        g = cv.wait_timeout(g, DEADLINE).unwrap().0;
    }
    (status, as_text(&g.0))
}

/// The worker's stderr with its records decoded: each one's fields on a line, then
/// its message (a traceback keeps its lines).
fn as_text(log: &str) -> String {
    log.lines()
        .map(|l| match ferricorn::log_record::Record::decode(l) {
            Some(r) => {
                let fields: Vec<String> =
                    r.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}] ferricorn: {}\n", fields.join(" "), r.message)
            }
            None => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn import_failures_exit_3_with_traceback_and_one_line() {
    let (status, log) = failing("no_such_module:app", &[]);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("[event=import_failed]"), "{log}");
    assert!(
        log.contains("ferricorn: failed to import app \"no_such_module:app\": ModuleNotFoundError: No module named 'no_such_module'"),
        "{log}"
    );
    let (status, log) = failing("probe:nope", &[]);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("ferricorn: failed to find attribute \"nope\" in module \"probe\""),
        "{log}"
    );
    let (status, log) = failing("broken_syntax:app", &[]);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("SyntaxError"), "{log}");
    let (status, log) = failing("raises_on_import:app", &["--check"]);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("RuntimeError: the app refuses to import"),
        "{log}"
    );
    let (status, log) = failing("probe:app", &["--check"]);
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn dev_mode_serves_the_import_traceback() {
    let dir = apps();
    let mut w = Worker::start(&[
        "--app",
        "broken_syntax:app",
        "--chdir",
        dir.to_str().unwrap(),
        "--dev",
    ]);
    let r = w.get("/anything", "");
    assert_eq!(r.status, Some(500));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(page.contains("SyntaxError"), "{page}");
    assert!(page.contains("def app(environ, start_response)"), "{page}");
    assert!(page.contains("broken_syntax.py"), "{page}");
    // Every request, not only the first.
    assert_eq!(
        w.request(head("POST", "/x", ""), &[b"body"]).status,
        Some(500)
    );
}

#[test]
fn dev_mode_shows_runtime_tracebacks() {
    let mut w = probe(&["--dev"]);
    let r = w.get("/raise_before", "");
    assert_eq!(r.status, Some(500));
    assert!(
        r.text().contains("RuntimeError: boom before the head"),
        "{}",
        r.text()
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let mut w = probe(&[]);
    let a = w.stream();
    let mut h = head("POST", "/echo", "announce=1");
    h.content_length = None;
    w.send(a, Frame::RequestHead(Box::new(h)));
    w.send(a, Frame::RequestBody(Bytes::from_static(b"in flight")));
    w.wait_log("echo: reading the body");
    nix_kill(w.child.id(), "TERM");
    w.wait_log("draining");
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    w.send(a, Frame::RequestEnd);
    assert_eq!(w.response(a).text(), "in flight");
    assert_eq!(w.wait_exit().code(), Some(0));
}

#[test]
fn sigterm_does_not_lose_a_request_still_in_the_socket() {
    // No wait between the request and the signal: the worker may get SIGTERM before
    // its reader has seen the head. It must still answer, then exit 0.
    let mut w = probe(&[]);
    let s = w.send_request(head("GET", "/hello", ""), &[]);
    nix_kill(w.child.id(), "TERM");
    assert_eq!(w.response(s).text(), "Hello, world!");
    assert_eq!(w.wait_exit().code(), Some(0));
}

#[test]
fn master_eof_and_sigint_stop_the_worker() {
    let mut w = probe(&[]);
    drop(w.sock.take());
    assert!(w.wait_exit().success());
    let mut w = probe(&[]);
    nix_kill(w.child.id(), "INT");
    assert!(w.wait_exit().success());
}

#[test]
fn sigusr1_dumps_every_thread() {
    let mut w = probe(&["--threads", "2"]);
    nix_kill(w.child.id(), "USR1");
    w.wait_log("Thread 0x");
    assert_eq!(w.get("/hello", "").status, Some(200));
}

fn nix_kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Worker CPU per hello-world request (utime + stime from /proc), with `window`
/// requests in flight. Run: `cargo test --release --test worker_protocol bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_hello_cpu_per_request() {
    for (threads, window) in [(1usize, 1usize), (4, 4)] {
        let t = threads.to_string();
        let mut w = probe(&["--threads", &t]);
        let cpu = |pid: u32| -> f64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
            ticks / 100.0
        };
        for _ in 0..500 {
            w.get("/hello", "");
        }
        let n = 20_000;
        let (c0, t0) = (cpu(w.child.id()), Instant::now());
        let mut inflight = VecDeque::new();
        for _ in 0..n {
            if inflight.len() == window {
                let s = inflight.pop_front().unwrap();
                assert_eq!(w.response(s).body.len(), 13);
            }
            inflight.push_back(w.send_request(head("GET", "/hello", ""), &[]));
        }
        for s in inflight {
            w.response(s);
        }
        let (c1, t1) = (cpu(w.child.id()), t0.elapsed());
        println!(
            "threads {threads}, window {window}: {:.1} µs worker CPU/request, {:.0} req/s",
            (c1 - c0) * 1e6 / n as f64,
            n as f64 / t1.as_secs_f64()
        );
    }
}
