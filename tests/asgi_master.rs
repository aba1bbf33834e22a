//! The master's side of ASGI workers (issue 27), against the real binary and the raw
//! ASGI app tests/apps/asgi_master.py: a request past its timeout (global or
//! `[[route]]`) is cancelled in the worker, which serves on, unless its loop is
//! blocked (then dump and replace, as for WSGI); an app of the other interface is
//! one line and exit 2; a response its client does not read is paused in the
//! worker, not spooled; `http.response.pathsend` sends the file from the front.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT_RESTARTS: &str = "ferricorn_worker_restarts_total{reason=\"timeout\"}";

fn asgi_server(extra: &[&str]) -> (Server, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["-k", "asgi", "-w", "1", "--admin-bind", &admin];
    args.extend_from_slice(extra);
    (test_app("asgi_master:app", &args).start(), admin)
}

/// GET `path` on its own thread: its status and how long it took.
fn timed_get(server: &Server, path: &str) -> thread::JoinHandle<(u16, Duration)> {
    let url = server.url(path);
    thread::spawn(move || {
        let started = Instant::now();
        let (status, _) = get(&url);
        (status, started.elapsed())
    })
}

fn number(server: &Server, path: &str) -> u64 {
    let (status, body) = get(&server.url(path));
    assert_eq!(status, 200, "{path}: {body}");
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{path}: {body}"))
}

/// The slow request gets 504 near `limit`, the task is cancelled in the worker
/// (the app counts it), another request is served meanwhile and after by the same
/// worker, and no worker was replaced.
fn cancelled_and_served_on(server: &Server, admin: &str, limit: Duration) {
    let pid = get(&server.url("/pid")).1;
    let slow = timed_get(server, "/sleep");
    // Served while /sleep waits on the same worker (one worker).
    assert_eq!(get(&server.url("/pid")), (200, pid.clone()));
    let (status, took) = slow.join().unwrap();
    assert_eq!(status, 504);
    assert!(
        took >= limit && took < limit + Duration::from_secs(3),
        "{took:?}"
    );
    wait_until("the task cancelled", Duration::from_secs(5), || {
        number(server, "/cancelled") == 1
    });
    server.wait_for_log("its task cancelled", Duration::from_secs(5));
    assert_eq!(get(&server.url("/pid")), (200, pid), "{}", server.log());
    assert_eq!(metric(admin, TIMEOUT_RESTARTS), 0);
    assert!(!server.log().contains("WORKER TIMEOUT"), "{}", server.log());
    assert_eq!(children(server.pid()).len(), 1);
}

#[test]
fn a_request_past_the_timeout_is_cancelled_and_its_worker_serves_on() {
    let (server, admin) = asgi_server(&["-t", "2"]);
    cancelled_and_served_on(&server, &admin, Duration::from_secs(2));
    // Over HTTP/2 alike.
    assert_eq!(h2_request(&server, "GET", "/sleep", b"").0, 504);
    wait_until("the second task cancelled", Duration::from_secs(5), || {
        number(&server, "/cancelled") == 2
    });
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 0);
}

#[test]
fn a_request_past_its_route_timeout_is_cancelled_likewise() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, "[[route]]\nprefix = \"/sleep\"\ntimeout = 1\n").unwrap();
    let (server, admin) = asgi_server(&["-t", "60", "-c", conf.to_str().unwrap()]);
    cancelled_and_served_on(&server, &admin, Duration::from_secs(1));
}

/// A stream whose head is out and that then stays silent is cut at its timeout
/// (the client saw the event), and cancelled likewise.
#[test]
fn a_silent_event_stream_is_cut_and_cancelled() {
    let (server, admin) = asgi_server(&["-t", "2"]);
    let pid = get(&server.url("/pid")).1;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /event-then-sleep HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut s, Duration::from_secs(10));
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("data: 1"), "{answer}");
    assert!(!answer.ends_with("0\r\n\r\n"), "not cut: {answer}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    wait_until("the task cancelled", Duration::from_secs(5), || {
        number(&server, "/cancelled") == 1
    });
    assert_eq!(get(&server.url("/pid")), (200, pid));
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 0);
}

/// `time.sleep` in a handler blocks the loop: the cancel is never acknowledged, so
/// after `cancel_grace` (5 s) the worker's stacks are dumped and it is replaced.
#[test]
fn a_blocked_loop_falls_back_to_dump_and_replace() {
    let (server, admin) = asgi_server(&["-t", "2"]);
    let old = children(server.pid())[0];
    let (status, took) = timed_get(&server, "/block").join().unwrap();
    assert_eq!(status, 504);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let line = server.wait_for_log("did not end within", Duration::from_secs(10));
    assert!(line.contains("WORKER TIMEOUT"), "{line}");
    // faulthandler's dump names the blocking handler.
    server.wait_for_log("asgi_master.py", Duration::from_secs(5));
    wait_until("a replacement worker", Duration::from_secs(30), || {
        let now = children(server.pid());
        now.len() == 1 && now[0] != old
    });
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 1);
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    assert_ne!(pid, old.to_string());
}

/// The app's interface is not its workers': the master says the worker's one
/// line and exits 2, at start and under --check-config, both ways.
#[test]
fn an_app_of_the_other_interface_is_one_line_and_exit_2() {
    let apps = apps_dir();
    let apps = apps.to_str().unwrap();
    for (app, class) in [("asgi_master:app", "sync"), ("asgi_master:wsgi", "asgi")] {
        // At start, with --preload (the zygote finds it), and --check-config.
        for mode in ["start", "preload", "check"] {
            let mut args = vec!["--chdir", apps, "-k", class, "-w", "2"];
            match mode {
                "check" => args.push("--check-config"),
                "preload" => args.extend_from_slice(&["--preload", "-b", "127.0.0.1:0"]),
                _ => args.extend_from_slice(&["-b", "127.0.0.1:0"]),
            }
            args.push(app);
            let out = run(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{app} -k {class} {mode}: {stderr}");
            assert_eq!(out.status.code(), Some(2), "{what}");
            let last = stderr.lines().last().unwrap_or_default();
            assert!(last.starts_with("ferricorn: "), "{what}");
            assert!(last.contains(app), "{what}");
            assert!(last.to_lowercase().contains("asgi"), "{what}");
            // The line once as the closing line (at start, the error log has it too).
            let times = stderr.lines().filter(|l| l.ends_with(last)).count();
            assert!(times <= 2, "{what}");
            assert!(!stderr.contains("Traceback"), "{what}");
        }
    }
}

/// A client that does not read an endless response: the app's `send()` is paused
/// near `response_buffer_size` (plus what the sockets hold), nothing goes to disk,
/// and it goes on once the client reads.
#[test]
fn a_response_its_client_does_not_read_is_paused_in_the_worker() {
    let (server, admin) = asgi_server(&["--log-level", "debug"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 1024];
    assert!(s.read(&mut head).unwrap() > 0);
    let stalled = settled(&server);
    let memory = metric(&admin, "ferricorn_response_memory_bytes");
    eprintln!("HTTP/1: paused at {stalled} bytes produced, {memory} held");
    assert!(stalled < 24 << 20, "paused at {stalled} bytes");
    assert_eq!(metric(&admin, "ferricorn_response_files"), 0, "spilled");
    assert!(memory <= 5 << 20, "{memory}");
    // The client reads: the app is resumed.
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < stalled as usize + (32 << 20) {
        read += s.read(&mut buf).unwrap();
    }
    assert!(number(&server, "/produced") > stalled);
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 0);
}

/// The same over HTTP/2, whose client keeps its window shut.
#[test]
fn an_http2_response_its_client_does_not_read_is_paused_in_the_worker() {
    let (server, admin) = asgi_server(&["--log-level", "debug"]);
    let rt = runtime();
    let (_client, mut body) = rt.block_on(async {
        let mut client = h2_client(server.addr).await;
        let req = http::Request::get(format!("http://{}/stream", server.addr))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        (client, resp.await.unwrap().into_body())
    });
    let stalled = settled(&server);
    let memory = metric(&admin, "ferricorn_response_memory_bytes");
    eprintln!("HTTP/2: paused at {stalled} bytes produced, {memory} held");
    assert!(stalled < 24 << 20, "paused at {stalled} bytes");
    assert_eq!(metric(&admin, "ferricorn_response_files"), 0, "spilled");
    assert!(memory <= 5 << 20, "{memory}");
    rt.block_on(async {
        let mut read = 0;
        while read < stalled as usize + (32 << 20) {
            let chunk = body.data().await.unwrap().unwrap();
            read += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    });
    assert!(number(&server, "/produced") > stalled);
}

/// What /stream produced once paused. The worker says (at debug) when a send()
/// waits for the front's Resume, and a paused stream produces nothing more until
/// its client reads: the fact waited on (no sampling of a count).
fn settled(server: &Server) -> u64 {
    server.wait_for_log("send() waits: the front paused", Duration::from_secs(20));
    let produced = number(server, "/produced");
    assert!(produced > 0, "paused before producing");
    produced
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// `http.response.pathsend` of a 50 MB file: sent whole by the front with the
/// app's fields, HEAD without a body; a file replaced between the app's `stat` and
/// the front's open is a 502 and a warning, never the other file.
#[test]
fn pathsend_sends_the_named_file_from_the_front() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let data = pattern(50_000_000);
    std::fs::write(&big, &data).unwrap();
    let mount = format!("/files/={}", dir.path().display());
    let (server, admin) = asgi_server(&["--static", &mount]);
    let target = format!("/file?{}", big.display());
    let resp = client().get(server.url(&target)).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "50000000");
    assert_eq!(resp.headers()["x-app"], "pathsend");
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let got = resp.bytes().unwrap();
    assert!(got[..] == data[..], "{} bytes, not the file", got.len());
    let sent = "ferricorn_pathsend_total{result=\"sent\"}";
    assert_eq!(metric(&admin, sent), 1);
    // HEAD: the head only.
    let head = format!("HEAD {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let answer = server.raw(head.as_bytes(), Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("content-length: 50000000"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "a body: {answer:.300}");
    // Over HTTP/2 too.
    let got = runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        let req = http::Request::get(format!("http://{}{target}", server.addr))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        got
    });
    assert!(got == data, "HTTP/2: {} bytes, not the file", got.len());
    // Replaced after the app's stat: 502, never the other file.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, b"the app's file").unwrap();
    let (status, body) = get(&server.url(&format!("/replaced?{}", small.display())));
    assert_eq!(status, 502, "{body}");
    server.wait_for_log("not sending the file", Duration::from_secs(5));
    let refused = "ferricorn_pathsend_total{result=\"refused\"}";
    assert_eq!(metric(&admin, refused), 1);
    // A Content-Length that is not the file's: the app's error (its send() raises,
    // a 500 with its traceback), never a body that lies; the front's own check
    // stays behind it.
    let (status, _) = get(&server.url(&format!("/wrong-length?{}", small.display())));
    assert_eq!(status, 500);
    server.wait_for_log(
        "Content-Length 3 but the file named by http.response.pathsend has",
        Duration::from_secs(5),
    );
    assert_eq!(metric(&admin, refused), 1);
    // The worker serves on.
    assert_eq!(get(&server.url("/no-pathsend")), (200, "True".into()));
    // X-Accel-Redirect from an ASGI app: the file, with the app's disposition.
    let resp = client()
        .get(server.url("/accel?/files/small.bin"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-disposition"], "attachment");
    assert!(resp.headers().get("x-accel-redirect").is_none());
    assert_eq!(resp.text().unwrap(), "the app's file");
}

/// HUP with code whose app now speaks the other interface: "reload failed", and
/// the old workers keep serving.
#[test]
fn hup_to_an_app_of_the_other_interface_keeps_the_old_workers() {
    let dir = tempfile::tempdir().unwrap();
    let write = |body: &str| {
        let tmp = dir.path().join("hup_app.py.tmp");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, dir.path().join("hup_app.py")).unwrap();
    };
    write(
        "import os\n\
         async def app(scope, receive, send):\n\
         \x20   if scope['type'] != 'http':\n\
         \x20       return\n\
         \x20   await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n\
         \x20   await send({'type': 'http.response.body', 'body': str(os.getpid()).encode()})\n",
    );
    let path = dir.path().to_str().unwrap();
    let mut server = Server::start(["--chdir", path, "-k", "asgi", "-w", "1", "hup_app:app"]);
    let (status, pid) = get(&server.url("/"));
    assert_eq!(status, 200);
    write("def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'wsgi']\n");
    let from = server.log_len();
    server.signal(libc_sig("HUP"));
    let line = server.wait_for_log_after(from, "reload failed", Duration::from_secs(30));
    assert!(line.contains("other interface"), "{line}");
    assert_eq!(get(&server.url("/")), (200, pid));
    assert!(server.alive());
}
