//! The edge: gunicorn's request corpus (../shared/conformance) run against ferricorn
//! serving its echo app, and smuggling shapes the corpus misses, sent as raw bytes.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn conformance_dir() -> PathBuf {
    repo().join("../shared/conformance")
}

fn echo_server(extra: &[&str]) -> Server {
    let dir = conformance_dir();
    let mut args = vec![
        "--chdir",
        dir.to_str().unwrap(),
        "-w",
        "2",
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    args.push("echo_app:app");
    Server::start(args)
}

/// Runs the corpus runner; returns (the closing line, the ids that failed).
fn run_corpus(server: &Server, extra: &[&str]) -> (String, BTreeSet<String>) {
    let out = Command::new("python3")
        .arg(conformance_dir().join("run_http_conformance.py"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &server.addr.port().to_string(),
        ])
        // ferricorn passes its own request id to the app.
        .args(["--ignore-header", "HTTP_X_REQUEST_ID"])
        .args(extra)
        .output()
        .expect("run the conformance runner");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let failed = text
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    let last = text.lines().last().unwrap_or_default().to_string();
    eprintln!("{text}");
    (last, failed)
}

/// Cases ferricorn refuses on purpose or cannot serve, each with the reason:
/// - valid/009, valid/027: superseded; gunicorn 27 refuses them too (TE identity with
///   Content-Length; raw non-ASCII bytes in the target).
/// - valid/014: a raw `"` in the target; hyper's parser refuses it (so does Granian).
/// - CONNECT (authority-form): a WSGI app cannot run a tunnel; hyper closes it.
const KNOWN: &[&str] = &[
    "valid/009",
    "valid/027",
    "valid/014",
    "valid/rfc9112_target_authority_connect_01",
    "valid/rfc9112_target_authority_ipv6_01",
];

#[test]
fn gunicorn_corpus_with_default_settings() {
    let server = echo_server(&[]);
    let (summary, failed) = run_corpus(&server, &["--skip-config-dependent"]);
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|id| !KNOWN.contains(&id.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected failures: {unexpected:?} ({summary})"
    );
    assert!(
        summary.starts_with("12") && summary.contains("passed"),
        "{summary}"
    );
}

#[test]
fn gunicorn_corpus_limit_cases_with_the_equivalent_settings() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases: [(&str, String); 4] = [
        (
            "invalid/010",
            conf("a.toml", "[limits]\nrequest_field_size = 10\n"),
        ),
        (
            "invalid/011",
            conf("b.toml", "[limits]\nrequest_fields = 2\n"),
        ),
        (
            "invalid/012",
            conf("c.toml", "[limits]\nrequest_field_size = 98\n"),
        ),
        (
            "valid/024",
            conf(
                "d.toml",
                "[limits]\nrequest_line = 8200\nrequest_field_size = 8210\n",
            ),
        ),
    ];
    for (case, config) in &cases {
        let server = echo_server(&["-c", config]);
        let (summary, failed) = run_corpus(&server, &["--case", case]);
        assert!(failed.is_empty(), "{case}: {summary}");
        assert_eq!(summary, "1 passed, 0 failed", "{case}");
    }
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn smuggling_shapes_are_refused_and_never_reach_the_app() {
    let server = echo_server(&[]);
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    ];
    for raw in cases {
        let resp = server.raw(raw, Duration::from_secs(5));
        let line = status_line(&resp);
        assert!(
            line.starts_with("HTTP/1.1 4"),
            "{:?} got {resp:?}",
            String::from_utf8_lossy(raw)
        );
        assert!(!resp.contains("REQUEST_METHOD"), "reached the app: {resp}");
    }
    let resp = server.raw(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", Duration::from_secs(5));
    assert!(status_line(&resp).starts_with("HTTP/1.1 505"), "{resp}");
}

#[test]
fn a_refused_request_does_not_cost_the_valid_ones_before_it() {
    let server = echo_server(&[]);
    let resp = server.raw(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        Duration::from_secs(5),
    );
    // Bodies do not end in a newline: find status lines anywhere.
    let statuses: Vec<&str> = resp
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| resp[i..].lines().next().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 400 Bad Request"
        ],
        "{resp}"
    );
}

#[test]
fn limits_answer_414_and_431() {
    let server = echo_server(&[]);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
    assert!(
        status_line(&server.raw(long_line.as_bytes(), Duration::from_secs(5)))
            .starts_with("HTTP/1.1 414")
    );
    let long_field = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert!(
        status_line(&server.raw(long_field.as_bytes(), Duration::from_secs(5)))
            .starts_with("HTTP/1.1 431")
    );
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert!(
        status_line(&server.raw(many.as_bytes(), Duration::from_secs(5)))
            .starts_with("HTTP/1.1 431")
    );
}
