//! WSGI apps behind the front, over real sockets: a Flask app, a validated probe
//! app (wsgiref.validate), buffering, streaming, errors, queueing and limits.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

fn front_app(extra: &[&str]) -> Server {
    let apps = apps_dir();
    let mut args = vec!["--chdir", apps.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("front_app:app");
    Server::start(args)
}

fn flask() -> Server {
    let venv = venv();
    Server::start([
        "--chdir",
        apps_dir().to_str().unwrap(),
        "--venv",
        venv.to_str().unwrap(),
        "-w",
        "2",
        "flask_app:app",
    ])
}

fn json(r: reqwest::blocking::Response) -> serde_json::Value {
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn flask_json_form_upload_session_and_stream() {
    let server = flask();
    let c = client();

    let r = c.get(server.url("/")).send().unwrap();
    assert_eq!(r.text().unwrap(), "hello from flask");

    let v = json(
        c.post(server.url("/json"))
            .json(&serde_json::json!({"a": [1, 2]}))
            .send()
            .unwrap(),
    );
    assert_eq!(v["received"]["a"][1], 2);

    let v = json(
        c.post(server.url("/form"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("name=J%C3%BCrgen&tag=a&tag=b")
            .send()
            .unwrap(),
    );
    assert_eq!(v["name"], "Jürgen");
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));

    // 3 MiB: past the in-memory threshold, so the front spools it to a temp file.
    let content: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let boundary = "XyZboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let v = json(
        c.post(server.url("/upload"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .unwrap(),
    );
    assert_eq!(v["filename"], "data.bin");
    assert_eq!(v["size"], content.len());

    // Carry the session cookie by hand.
    let first = c.get(server.url("/counter")).send().unwrap();
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(json(first)["n"], 1);
    let second = c
        .get(server.url("/counter"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(json(second)["n"], 2);

    let r = c.get(server.url("/stream")).send().unwrap();
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(
        r.text().unwrap(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );
}

#[test]
fn validated_app_raises_nothing_and_environ_is_right() {
    let server = front_app(&["-w", "1"]);
    let c = client();
    let v = json(
        c.get(server.url("/environ?x=1&y=%20"))
            .header("X-Custom", "caf\u{e9}")
            .header("X_Injected", "evil")
            .send()
            .unwrap(),
    );
    assert_eq!(v["REQUEST_METHOD"], "GET");
    assert_eq!(v["PATH_INFO"], "/environ");
    assert_eq!(v["QUERY_STRING"], "x=1&y=%20");
    assert_eq!(v["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(v["SERVER_PORT"], server.addr.port().to_string());
    assert_eq!(v["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(v["wsgi.url_scheme"], "http");
    assert!(
        v.get("HTTP_X_INJECTED").is_none(),
        "underscore header reached the app"
    );
    // Raw bytes as latin-1, as PEP 3333 says.
    assert_eq!(v["HTTP_X_CUSTOM"], "caf\u{c3}\u{a9}");

    // Percent-decoded PATH_INFO, as latin-1 of the bytes.
    let v = json(c.get(server.url("/environ/%C3%A9t%C3%A9")).send().unwrap());
    assert_eq!(v["PATH_INFO"], "/environ/\u{c3}\u{a9}t\u{c3}\u{a9}");

    for path in ["/big?n=10", "/cookies", "/slow-stream", "/pid"] {
        let r = c.get(server.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().unwrap();
    }
    let r = c
        .post(server.url("/upload"))
        .body(vec![7u8; 100_000])
        .send()
        .unwrap();
    assert_eq!(json(r)["len"], 100_000);
    assert!(!server.log().contains("AssertionError"), "{}", server.log());
}

#[test]
fn head_has_no_body_and_cookies_stay_separate() {
    let server = front_app(&["-w", "1"]);
    let r = client().head(server.url("/big?n=5000")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5000");
    assert_eq!(r.bytes().unwrap().len(), 0);

    let r = client().get(server.url("/cookies")).send().unwrap();
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies.len(), 2);
    assert!(r.headers().get("date").is_some());
    assert_eq!(r.headers()["server"], "ferricorn");
}

#[test]
fn app_exceptions_are_500_or_a_cut_response_and_the_worker_survives() {
    let server = front_app(&["-w", "1"]);
    let (pid_before, _) = (
        client()
            .get(server.url("/pid"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        (),
    );
    let r = client().get(server.url("/raise")).send().unwrap();
    assert_eq!(r.status(), 500);
    assert!(
        !r.text().unwrap().contains("boom"),
        "traceback leaked to the client"
    );
    server.wait_for_log("boom before the response", Duration::from_secs(5));

    // After the head was sent the response must not look complete.
    let raw = server.raw(
        b"GET /raise-late HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    // hyper may or may not have flushed the head before the cut: either way the
    // client must not see a complete response.
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        !raw.ends_with("0\r\n\r\n"),
        "a cut response ended like a complete one: {raw:?}"
    );

    let pid_after = client()
        .get(server.url("/pid"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(pid_before, pid_after, "the worker was replaced");
}

#[test]
fn streamed_response_arrives_while_it_is_produced() {
    let server = front_app(&["-w", "1"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /slow-stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut got = String::new();
    while !got.contains("line 0") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let first = started.elapsed();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    let all = started.elapsed();
    assert!(rest.contains("line 3"));
    assert!(
        first < Duration::from_millis(250),
        "first chunk after {first:?}"
    );
    assert!(
        all >= Duration::from_millis(850),
        "whole body after {all:?}"
    );
}

#[test]
fn body_over_the_limit_is_413_before_it_is_sent() {
    let server = front_app(&["-w", "1", "--limit-request-body", "1000"]);
    // Announce a large body and send none of it: the answer must come anyway.
    let raw = server.raw(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    let r = client()
        .post(server.url("/upload"))
        .body(vec![1u8; 999])
        .send()
        .unwrap();
    assert_eq!(json(r)["len"], 999);
}

#[test]
fn chunked_request_body_reaches_the_app() {
    let server = front_app(&["-w", "1"]);
    let raw = server.raw(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"len\": 11"), "{raw}");
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_response_to_a_slow_client_is_spooled_to_disk_not_memory() {
    spooled_response_check(&[]);
}

fn spooled_response_check(extra: &[&str]) {
    let mut args = vec!["-w", "1"];
    args.extend_from_slice(extra);
    let server = front_app(&args);
    let before = rss_kib(server.pid());
    let mut lazy = TcpStream::connect(server.addr).unwrap();
    lazy.write_all(b"GET /big?n=60000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // With one single-threaded worker, this answer comes only after the worker has
    // handed the whole 60 MB to the front, which the client has not read.
    let r = client().get(server.url("/pid")).send().unwrap();
    assert_eq!(r.status(), 200);
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(
        grown < 20 * 1024,
        "the master holds {grown} KiB of a 60 MB response in memory"
    );
    // The client still gets every byte, in order.
    let mut body = Vec::new();
    lazy.read_to_end(&mut body).unwrap();
    let text_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(body.len() - text_end, 60_000_000);
    assert!(body[text_end..].iter().all(|&b| b == b'x'));
}

#[test]
fn slow_client_does_not_hold_the_worker() {
    let server = front_app(&["-w", "1"]);
    // Ask for 20 MB and read none of it: the front buffers, the worker is free.
    let mut lazy = TcpStream::connect(server.addr).unwrap();
    lazy.write_all(b"GET /big?n=20000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = client().get(server.url("/pid")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(lazy);
}

#[test]
fn full_queue_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("q.toml");
    std::fs::write(&conf, "[workers]\nbacklog = 1\nqueue_timeout = 1\n").unwrap();
    let apps = apps_dir();
    let server = Server::start([
        "-c",
        conf.to_str().unwrap(),
        "--chdir",
        apps.to_str().unwrap(),
        "-w",
        "1",
        "sup_app:app",
    ]);
    let busy = {
        let url = server.url("/sleep?s=3");
        thread::spawn(move || client().get(url).send().unwrap().status().as_u16())
    };
    thread::sleep(Duration::from_millis(300));
    let queued = {
        let url = server.url("/pid");
        thread::spawn(move || client().get(url).send().unwrap())
    };
    thread::sleep(Duration::from_millis(200));
    let r = client().get(server.url("/pid")).send().unwrap();
    assert_eq!(r.status(), 503, "queue full");
    assert_eq!(r.headers()["retry-after"], "1");
    let q = queued.join().unwrap();
    assert_eq!(q.status(), 503, "queue timeout after 1 s");
    assert_eq!(busy.join().unwrap(), 200);
}

#[test]
fn app_that_does_not_import_exits_3_with_the_traceback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.py"),
        "import os\nraise ValueError('bad settings')\n",
    )
    .unwrap();
    let mut server = Server::launch([
        "--chdir",
        dir.path().to_str().unwrap(),
        "-w",
        "1",
        "broken:app",
    ])
    .no_wait()
    .start();
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{}", server.log());
    let log = server.log();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("ValueError: bad settings"), "{log}");

    let mut server = Server::launch([
        "--chdir",
        apps_dir().to_str().unwrap(),
        "-w",
        "1",
        "sup_app:nope",
    ])
    .no_wait()
    .start();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(3));
    assert!(server.log().contains("nope"), "{}", server.log());
}
