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

/// The interface table (DESIGN27 §1) on real apps: Django's two handlers, Flask,
/// plain functions and classes, asgiref's marker.
#[test]
fn the_interface_of_real_apps_is_recognised() {
    let script = r#"
import functools
from django.conf import settings
settings.configure(MIDDLEWARE=[])
from ferricorn._interface import classify
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from asgiref.sync import markcoroutinefunction
import flask
async def plain(scope, receive, send): pass
def wsgi(environ, start_response): pass
def wrapper(scope, receive, send): return plain(scope, receive, send)
class Asgi2:
    def __init__(self, scope): pass
class WsgiClass:
    def __init__(self, environ, start_response): pass
class Marked:
    def __init__(self): markcoroutinefunction(self)
    def __call__(self, scope, receive, send): return plain(scope, receive, send)
got = [classify(a) for a in (ASGIHandler(), WSGIHandler(), flask.Flask("t"), plain,
    functools.partial(plain), wsgi, wrapper, Asgi2, WsgiClass, Marked(), len)]
print(" ".join(got))
"#;
    let out = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "asgi wsgi wsgi asgi asgi wsgi maybe-asgi asgi2 wsgi asgi unknown",
        "{err}"
    );
}

#[test]
fn hello_over_http1_on_uvloop() {
    // The worker's own boot line (which names the loop) is a debug record.
    let server = asgi(&["--log-level", "debug"]);
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
    let out = server.raw(
        b"GET /scope HTTP/1.0\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(out.contains("\"http_version\": \"1.0\""), "{out}");
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

/// HTTP/2's RST_STREAM is the client leaving, as HTTP/1's close is.
#[test]
fn an_http2_reset_mid_stream_is_an_http_disconnect() {
    let server = asgi(&["-w", "1"]);
    runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        let req = http::Request::builder()
            .uri(format!("http://{}/sse", server.addr))
            .body(())
            .unwrap();
        let (resp, _send) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("data: 2") {
            let chunk = body.data().await.unwrap().unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            seen.extend_from_slice(&chunk);
        }
        drop(body); // h2 resets a stream whose body is dropped unread
        drop(client);
    });
    wait_for_answer(&server, "/disconnects", "1");
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
    // An app that does not import: the import's traceback, served as for WSGI.
    let server = test_app("raises_on_import:app", &["-k", "asgi", "--reload"]).start();
    let (status, body) = get(&server, "/");
    assert_eq!(status, 500);
    assert!(body.contains("The application failed to import."), "{body}");
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
fn the_apps_head_is_checked_like_a_wsgi_apps() {
    let server = asgi(&["-w", "1"]);
    assert_eq!(get(&server, "/bad-header").0, 500);
    server.wait_for_log("invalid value for header \"x-a\"", Duration::from_secs(5));
    assert_eq!(get(&server, "/bad-status").0, 500);
    server.wait_for_log("invalid status 1200", Duration::from_secs(5));
    assert_eq!(get(&server, "/bytearray"), (200, "from a bytearray".into()));
    let r = client().get(server.url("/hop-by-hop")).send().unwrap();
    assert_eq!(r.headers()["x-kept"], "yes");
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
    assert_eq!(r.text().unwrap(), "ok");
}

#[test]
fn threads_size_the_loops_default_executor() {
    let server = asgi(&["-w", "1", "--threads", "4"]);
    let (_, body) = get(&server, "/executor");
    let names: Vec<&str> = body.split(' ').collect();
    assert_eq!(names.len(), 4, "{body}");
    assert!(
        names.iter().all(|n| n.starts_with("asgi-executor")),
        "{body}"
    );
}

#[test]
fn preload_forks_workers_that_each_run_their_own_loop_and_lifespan() {
    let server = asgi(&["-w", "2", "--preload"]);
    assert_eq!(get(&server, "/"), (200, "hello".into()));
    assert_eq!(get(&server, "/state"), (200, "yes".into()));
}

#[test]
fn request_hooks_are_not_run_for_asgi_and_it_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = apps_dir().join("hooks_conf.py");
    let server = test_app(
        "asgi_raw:app",
        &["-k", "asgi", "-w", "1", "--hooks", hooks.to_str().unwrap()],
    )
    .env("HOOKS_LOG", dir.path().join("hooks.log"))
    .start();
    assert_eq!(get(&server, "/"), (200, "hello".into()));
    server.wait_for_log(
        "pre_request and post_request are not run for ASGI",
        Duration::from_secs(5),
    );
    let log = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
    assert!(log.contains("post_worker_init"), "{log}");
    assert!(!log.contains("pre_request"), "{log}");
}

/// A handshake to an app that answers the `websocket` scope with `http.*`
/// messages is its error (a 500 on the wire, nothing on the socket): its passed
/// socket is taken off the queue and closed, so the next requests and handshakes
/// stay in step with their sockets. (WebSockets themselves: tests/asgi_websocket.rs.)
#[test]
fn a_websocket_handshake_is_refused_and_the_worker_goes_on() {
    let server = asgi(&["-w", "1"]);
    for _ in 0..2 {
        let head = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let out = server.raw(head.as_bytes(), Duration::from_secs(10));
        assert!(out.starts_with("HTTP/1.1 500"), "{out}");
        assert_eq!(get(&server, "/"), (200, "hello".into()));
    }
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

/// `auto` takes an app that raises on the lifespan scope as one without lifespan
/// (said once, at info); `on` makes it a failed startup.
#[test]
fn lifespan_auto_goes_on_without_an_apps_lifespan_and_on_insists() {
    let server = test_app("asgi_raw:no_lifespan", &["-k", "asgi", "-w", "1"]).start();
    assert_eq!(get(&server, "/state"), (200, "none".into()));
    server.wait_for_log(
        "ASGI 'lifespan' protocol appears unsupported",
        Duration::from_secs(5),
    );
    let mut server = test_app(
        "asgi_raw:no_lifespan",
        &["-k", "asgi", "-w", "1", "--asgi-lifespan", "on"],
    )
    .no_wait()
    .start();
    let status = server.wait_exit(Duration::from_secs(60));
    let log = server.log();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("ValueError: unsupported scope lifespan"),
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
    let apps = apps_dir();
    let out = run([
        "--chdir",
        apps.to_str().unwrap(),
        "--check-config",
        "asgi_raw:app",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\"asgi_raw:app\" is an ASGI app (async def)"),
        "{err}"
    );
    let line = "\"asgi_raw:app\" is an ASGI app (async def); its workers are WSGI: add -k asgi \
                (or [workers] interface = \"asgi\")";
    assert!(log.contains(line), "{log}");
}

/// `/listened` of asgi_raw: (heard, ended, waited).
fn listened(server: &Server) -> (u64, u64, u64) {
    listened_at(&server.url("/listened"))
}

fn listened_at(url: &str) -> (u64, u64, u64) {
    let body = client().get(url).send().unwrap().text().unwrap();
    let n: Vec<u64> = body.split(' ').map(|x| x.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

/// Tasks awaiting `receive()` (a listener for the disconnect, as Django's and
/// Starlette's beside a streaming response; here two at once) while the request's
/// task streams to a client that reads slowly, so its `send()` waits under
/// back-pressure: when the client goes, every listener hears `http.disconnect`
/// and the stream ends (`send()` raises). Before the fix a second `receive()`
/// took the first's place, which then waited for ever.
#[test]
fn listeners_and_a_paused_stream_all_learn_of_the_disconnect() {
    use std::io::Read;
    let server = asgi(&["-w", "1"]);
    let mut s = open_get(&server, "/listen-stream?2");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 256 * 1024 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n;
    }
    // The client reads no more: the stream is paused, its send() waits.
    wait_until("a send() waits", Duration::from_secs(20), || {
        listened(&server).2 > 0
    });
    drop(s); // unread bytes: a reset
    wait_until("both listeners heard it", Duration::from_secs(20), || {
        listened(&server).0 == 2
    });
    wait_until("the stream ended", Duration::from_secs(20), || {
        listened(&server).1 == 1
    });
    // Over HTTP/2: a reset of the stream.
    let waited = listened(&server).2;
    let url = server.url("/listened");
    // Its waits run beside the h2 connection's task, which must run to reset.
    let wait = |what: &'static str, done: fn((u64, u64, u64), u64) -> bool| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            wait_until(what, Duration::from_secs(20), || {
                done(listened_at(&url), waited)
            })
        })
    };
    runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        let req = http::Request::builder()
            .uri(format!("http://{}/listen-stream?2", server.addr))
            .body(())
            .unwrap();
        let (resp, send) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        let chunk = body.data().await.unwrap().unwrap();
        assert!(!chunk.is_empty());
        // Never released: the window closes, the front pauses the stream.
        let paused = wait("a send() waits", |(_, _, w), before| w > before);
        paused.await.unwrap();
        drop((body, send)); // h2 resets a stream dropped unread
        wait("both listeners heard it", |(h, _, _), _| h == 4)
            .await
            .unwrap();
        wait("the stream ended", |(_, e, _), _| e == 2)
            .await
            .unwrap();
        drop(client);
    });
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}
