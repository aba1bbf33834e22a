//! ASGI workers (`-k asgi`) behind the front, over real sockets, with a raw ASGI
//! app (tests/apps/asgi_raw.py, no framework): the scope, request bodies in
//! `more_body` chunks, streamed responses, many requests in flight on one worker,
//! `http.disconnect`, lifespan, errors, and the interface checks.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn asgi(extra: &[&str]) -> Server {
    let mut args = vec!["-k", "asgi"];
    args.extend_from_slice(extra);
    test_app("asgi_raw:app", &args).start()
}

fn get(server: &Server, path: &str) -> (u16, String) {
    let r = client().get(server.url(path)).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn hello_over_http1_on_uvloop() {
    let server = asgi(&[]);
    assert_eq!(get(&server, "/"), (200, "hello".into()));
    let line = server.wait_for_log("booted: app asgi_raw:app (ASGI", Duration::from_secs(5));
    assert!(line.contains("uvloop loop"), "{line}");
}

fn json(server: &Server, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut req = client().get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let text = req.send().unwrap().text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_scope_says_what_the_front_decided() {
    let server = asgi(&["--root-path", "/api", "--forwarded-allow-ips", "127.0.0.1"]);
    let v = json(
        &server,
        "/a%20b/scope?x=1&y=%20",
        &[("X-Test", "v1"), ("X-Forwarded-For", "203.0.113.9")],
    );
    assert_eq!(v["type"], "http");
    assert_eq!(v["asgi"]["version"], "3.0");
    assert_eq!(v["http_version"], "1.1");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["scheme"], "http");
    assert_eq!(v["root_path"], "/api");
    assert_eq!(v["path"], "/api/a b/scope");
    assert_eq!(v["raw_path"], "/api/a%20b/scope");
    assert_eq!(v["query_string"], "x=1&y=%20");
    assert_eq!(v["client"][0], "203.0.113.9", "client after proxy trust");
    assert_eq!(v["server"][1], server.addr.port());
    let headers = v["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(|h| h[0] == "x-test" && h[1] == "v1"),
        "{headers:?}"
    );
    assert!(headers.iter().all(|h| h[0]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| !c.is_ascii_uppercase())));
    assert_eq!(
        v["extensions"],
        serde_json::json!(["http.response.pathsend"])
    );
    let (status, body) = h2_request(&server, "GET", "/scope", b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["http_version"], "2");
    assert!(
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "host"),
        "{v}"
    );
}

#[test]
fn http2_over_tls_is_https_and_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let server = asgi(&["--certfile", &cert, "--keyfile", &key]);
    let body = runtime().block_on(async {
        let tls = h2_tls(server.addr, &cert).await;
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(async move { conn.await.ok() });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .uri(format!("https://127.0.0.1:{}/scope", server.addr.port()))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        let mut out = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).unwrap()
    });
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["http_version"], "2");
    assert_eq!(v["scheme"], "https");
}

#[test]
fn a_5_mb_body_arrives_in_several_more_body_chunks() {
    let server = asgi(&[]);
    let body: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, &body).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let r = client()
        .post(server.url("/body"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    let parts: Vec<&str> = text.split(' ').collect();
    assert_eq!(parts[0], (5 * 1024 * 1024).to_string(), "{text}");
    assert!(parts[1].parse::<usize>().unwrap() > 2, "{text}");
    assert_eq!(parts[2], sum.split(' ').next().unwrap(), "{text}");
}

/// Reads from `s` until `needle` is in what was read; panics after 20 s.
fn read_until(s: &mut std::net::TcpStream, seen: &mut Vec<u8>, needle: &str) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

fn open_get(server: &Server, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s
}

#[test]
fn a_streamed_response_arrives_as_it_is_produced() {
    let server = asgi(&["-w", "1"]);
    let mut s = open_get(&server, "/stream");
    let mut seen = Vec::new();
    // The app holds its last chunk until /release: the first must come before.
    read_until(&mut s, &mut seen, "first\n");
    assert!(!String::from_utf8_lossy(&seen).contains("last"));
    assert_eq!(get(&server, "/release"), (200, "released".into()));
    read_until(&mut s, &mut seen, "last\n");
    read_until(&mut s, &mut seen, "0\r\n\r\n");
}

#[test]
fn one_worker_serves_50_sleeping_requests_at_once() {
    let server = asgi(&["-w", "1"]);
    let start = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let url = server.url("/sleep");
            std::thread::spawn(move || client().get(url).send().unwrap().text().unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "slept");
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "50 × 1 s sleeps took {took:?}"
    );
}

/// Polls `path` until it answers `want` (a fact the app records), for up to 20 s.
fn wait_for_answer(server: &Server, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(server, path);
        if body == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still says {body:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_leaves_mid_stream_is_an_http_disconnect() {
    let server = asgi(&["-w", "1"]);
    let mut s = open_get(&server, "/sse");
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "data: 2");
    drop(s);
    wait_for_answer(&server, "/disconnects", "1");
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

#[test]
fn an_exception_before_the_head_is_a_500_and_the_worker_lives_on() {
    let server = asgi(&["-w", "1"]);
    let (_, pid) = get(&server, "/pid");
    let (status, body) = get(&server, "/raise");
    assert_eq!(status, 500);
    assert_eq!(body, "500 Internal Server Error\n");
    server.wait_for_log("ValueError: boom before the head", Duration::from_secs(5));
    assert_eq!(get(&server, "/pid"), (200, pid.clone()));
    // After the head: the response is cut, not completed.
    let mut s = open_get(&server, "/raise-after");
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "partial");
    assert_eq!(get(&server, "/release"), (200, "released".into()));
    use std::io::Read;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    seen.extend_from_slice(&rest);
    assert!(
        !String::from_utf8_lossy(&seen).contains("0\r\n\r\n"),
        "completed: {seen:?}"
    );
    server.wait_for_log("ValueError: boom after the head", Duration::from_secs(5));
    assert_eq!(get(&server, "/pid"), (200, pid));
}

#[test]
fn a_failure_between_start_and_body_or_a_bad_pathsend_is_still_a_500() {
    let server = asgi(&["-w", "1"]);
    let (_, pid) = get(&server, "/pid");
    assert_eq!(get(&server, "/start-then-raise").0, 500);
    server.wait_for_log(
        "ValueError: boom between start and body",
        Duration::from_secs(5),
    );
    for path in ["/pathsend/no/such/file", "/pathsend/", "/pathsend/tmp"] {
        assert_eq!(get(&server, path).0, 500, "{path}");
    }
    server.wait_for_log("is not a regular file", Duration::from_secs(5));
    server.wait_for_log("No such file or directory", Duration::from_secs(5));
    assert_eq!(get(&server, "/pid"), (200, pid));
}

#[test]
fn reload_mode_shows_the_traceback_page() {
    let server = asgi(&["-w", "1", "--reload"]);
    let r = client().get(server.url("/raise")).send().unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().unwrap();
    assert!(body.contains("ValueError: boom before the head"), "{body}");
}

#[test]
fn term_lets_a_request_in_flight_finish_then_runs_the_lifespan_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("shutdown");
    let mut server = test_app("asgi_raw:app", &["-k", "asgi", "-w", "1"])
        .env("SHUTDOWN_FILE", &marker)
        .start();
    let mut s = open_get(&server, "/slow-stream");
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "first\n");
    server.signal(15);
    read_until(&mut s, &mut seen, "last\n");
    read_until(&mut s, &mut seen, "0\r\n\r\n");
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "shutdown");
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

#[test]
fn lifespan_state_reaches_requests_and_shutdown_runs_on_term() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("shutdown");
    let mut server = test_app("asgi_raw:app", &["-k", "asgi", "-w", "1"])
        .env("SHUTDOWN_FILE", &marker)
        .start();
    assert_eq!(get(&server, "/state"), (200, "yes".into()));
    server.signal(15);
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "shutdown");
}

#[test]
fn a_failed_lifespan_startup_is_exit_3_with_its_message_once() {
    let mut server = test_app("asgi_raw:app", &["-k", "asgi", "-w", "2"])
        .env("FAIL_STARTUP", "1")
        .no_wait()
        .start();
    let status = server.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(3), "{}", server.log());
    let log = server.log();
    // One record however many workers failed, and the master's last line.
    let records = log
        .lines()
        .filter(|l| l.contains("ERROR ASGI lifespan startup failed"));
    assert_eq!(records.count(), 1, "{log}");
    let last = log.trim_end().lines().last().unwrap();
    assert_eq!(
        last, "ferricorn: ASGI lifespan startup failed: no database here",
        "{log}"
    );
}

#[test]
fn an_app_of_the_other_interface_is_exit_2_with_one_line() {
    let mut server = test_app("asgi_raw:wsgi_app", &["-k", "asgi"])
        .no_wait()
        .start();
    let status = server.wait_exit(Duration::from_secs(60));
    let log = server.log();
    assert_eq!(status.code(), Some(2), "{log}");
    let line = "\"asgi_raw:wsgi_app\" is a WSGI app (environ, start_response) and -k asgi was \
                given: drop -k asgi, or serve an ASGI app";
    assert!(log.contains(line), "{log}");
    let mut server = test_app("asgi_raw:app", &[]).no_wait().start();
    let status = server.wait_exit(Duration::from_secs(60));
    let log = server.log();
    assert_eq!(status.code(), Some(2), "{log}");
    let line = "\"asgi_raw:app\" is an ASGI app (async def); its workers are WSGI: add -k asgi \
                (or [workers] interface = \"asgi\")";
    assert!(log.contains(line), "{log}");
}
