//! ASGI workers under attack (issue 27), against the real binary and the raw ASGI
//! app tests/apps/asgi_attack.py: what a client or a buggy app does must cost only
//! its own request, never the worker's memory, the worker, or other requests.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

fn attack_server(extra: &[&str]) -> (Server, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["-k", "asgi", "-w", "1", "--admin-bind", &admin];
    args.extend_from_slice(extra);
    (test_app("asgi_attack:app", &args).start(), admin)
}

fn number(server: &Server, path: &str) -> u64 {
    let (status, body) = get(&server.url(path));
    assert_eq!(status, 200, "{path}: {body}");
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{path}: {body}"))
}

/// Uploads its app does not read yet stay at the front (its spool), not in the
/// worker: before the fix the worker read every body off its socket into memory,
/// so N clients uploading to a handler that waits (a slow query, a lock) before it
/// reads had the worker hold N whole bodies (here 8 x 40 MB: ~330 MB; with
/// `worker_connections` 1000 and the 100 MB body limit, 100 GB). Each body is then
/// read whole once the app gets to it.
#[test]
fn bodies_an_app_has_not_read_are_not_held_in_the_worker() {
    let (server, _admin) = attack_server(&["--log-level", "debug"]);
    let pid: i32 = number(&server, "/pid") as i32;
    let before = rss_kib(pid);
    const SIZE: usize = 40 * 1024 * 1024;
    const CLIENTS: usize = 8;
    let body = vec![b'u'; SIZE];
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let head = format!("POST /unread HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        clients.push(s);
    }
    // Every body is at the front, every request with its app.
    wait_until(
        "every upload waits in the app",
        Duration::from_secs(30),
        || number(&server, "/waiting") == CLIENTS as u64,
    );
    // The front forwards each body right after its head, up to its window: the
    // front says (at debug) when a body's window is full, which, with an app that
    // reads nothing, is all the worker is sent of it until the app reads.
    wait_until("every body's window full", Duration::from_secs(30), || {
        server.log().matches("body's window is full").count() >= CLIENTS
    });
    assert_eq!(get(&server.url("/release")).0, 200);
    for mut s in clients {
        let answer = read_one_response(&mut s);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&SIZE.to_string()), "{answer}");
    }
    // The peak, reading included: each app reads its body a piece at a time.
    let held = peak_rss_kib(pid).saturating_sub(before);
    assert!(
        held < 64 * 1024,
        "the worker held {held} KiB of {} MiB of unread bodies",
        (CLIENTS * SIZE) >> 20
    );
}

/// An app that answers without reading its body (a stream of events to a POST)
/// is not held back by the pause of that body: the front forwards the body before
/// it reads the response, so a body paused for good would hold the response for
/// ever.
#[test]
fn a_response_streams_while_its_unread_body_is_not_paused() {
    let (server, _admin) = attack_server(&[]);
    const SIZE: usize = 4 * 1024 * 1024;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!("POST /tick?1000 HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![b'u'; SIZE]).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("tick\n").count() < 2 {
        let n = s.read(&mut buf).expect("the events arrive");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}
const TIMEOUT_RESTARTS: &str = "ferricorn_worker_restarts_total{reason=\"timeout\"}";

/// A task that swallows the CancelledError of its timeout (a bare `except`, a
/// library that retries, a slow `finally`) is that request's problem: its client
/// got 504, and the worker, whose loop runs on, ends the stream itself. Before the
/// fix the master took the unanswered Cancel for a blocked loop: "WORKER TIMEOUT",
/// the worker condemned, replaced, and killed with every stream it still served.
#[test]
fn a_task_that_ignores_its_cancel_costs_only_its_request() {
    let (server, admin) = attack_server(&["-t", "2"]);
    let pid = get(&server.url("/pid")).1;
    // Never silent (a chunk every 0.5 s, 10 s in all): no timeout of its own.
    let url = server.url("/tick?20");
    let ticking = thread::spawn(move || get(&url));
    let started = std::time::Instant::now();
    assert_eq!(get(&server.url("/swallow")).0, 504);
    wait_until("the task saw its cancel", Duration::from_secs(5), || {
        number(&server, "/swallowed") == 1
    });
    // Past the master's 5 s grace for the Cancel, and its check.
    let (status, body) = ticking.join().unwrap();
    assert!(started.elapsed() > Duration::from_secs(9));
    assert_eq!(status, 200, "{}", server.log());
    assert!(body.ends_with("end\n"), "{body}");
    assert_eq!(get(&server.url("/pid")), (200, pid), "{}", server.log());
    assert!(!server.log().contains("WORKER TIMEOUT"), "{}", server.log());
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 0);
    server.wait_for_log("ignored its cancellation", Duration::from_secs(1));
}

/// A GET of `path` whose answer is under way (its first bytes read): the stream.
fn streaming(server: &Server, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(s.read(&mut buf).unwrap() > 0);
    s
}

/// Tasks that ignore their cancel cannot pile up past `worker_connections`: the
/// worker's loop answers the master's Cancel (it is not blocked), but the request
/// keeps its slot until its task really ends; once such tasks hold half the
/// slots, the worker is replaced, and its drain lets them go. Before the fix the
/// slot was freed as the worker gave up on the task, so a client hitting such a
/// view again and again grew the worker's tasks (and memory) without bound.
#[test]
fn tasks_that_ignore_their_cancel_keep_their_slots_and_recycle_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, "[workers]\nqueue_timeout = 2\n").unwrap();
    let conf = conf.to_str().unwrap();
    let args = ["-t", "1", "--worker-connections", "3", "-c", conf];
    let (server, admin) = attack_server(&args);
    let pid = get(&server.url("/pid")).1;
    // One slot: a task that swallows its cancel and ends 30 s later.
    assert_eq!(get(&server.url("/swallow?30")).0, 504);
    server.wait_for_log("ignored its cancellation", Duration::from_secs(10));
    // The two others: streams that never stay silent.
    let held = [
        streaming(&server, "/tick?40"),
        streaming(&server, "/tick?40"),
    ];
    // The swallowing task's slot is still taken: a request finds none (503 at
    // the queue's timeout), where before it found one free.
    assert_eq!(get(&server.url("/pid")).0, 503, "{}", server.log());
    drop(held);
    wait_until("the streams' slots free", Duration::from_secs(10), || {
        get(&server.url("/pid")) == (200, pid.clone())
    });
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 0);
    // A second one: they hold 2 of 3 slots, and the worker is replaced.
    assert_eq!(get(&server.url("/swallow?30")).0, 504);
    server.wait_for_log("hold half the worker's slots", Duration::from_secs(10));
    wait_until("a new worker serves", Duration::from_secs(30), || {
        let (status, now) = get(&server.url("/pid"));
        status == 200 && now != pid
    });
    let exited = format!("worker exited pid={pid} status=exit 0");
    server.wait_for_log(&exited, Duration::from_secs(30));
    assert!(
        server.log().contains("let go of 2 request(s)"),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("WORKER TIMEOUT"), "{}", server.log());
    assert_eq!(metric(&admin, TIMEOUT_RESTARTS), 1);
}

/// `sys.exit()` (or a KeyboardInterrupt) in a handler fails that request only: a
/// 500 before the head, a cut response after. asyncio lets both out of the loop,
/// and before the fix the worker exited with every request it served (502s).
#[test]
fn system_exit_in_a_handler_fails_only_its_request() {
    let (server, _admin) = attack_server(&[]);
    let pid = get(&server.url("/pid")).1;
    let url = server.url("/tick?6");
    let ticking = thread::spawn(move || get(&url));
    // The stream is under way before the app exits.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /tick?4 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(s.read(&mut buf).unwrap() > 0);
    assert_eq!(get(&server.url("/exit")).0, 500);
    // Its head went out: the response is cut (hyper may not have written it yet).
    let cut = server.raw(
        b"GET /interrupt HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(cut.is_empty() || cut.starts_with("HTTP/1.1 200"), "{cut}");
    let (status, body) = ticking.join().unwrap();
    assert_eq!((status, body.ends_with("end\n")), (200, true), "{body}");
    assert_eq!(get(&server.url("/pid")), (200, pid), "{}", server.log());
    server.wait_for_log("the ASGI app raised SystemExit", Duration::from_secs(5));
}

/// A header value with a control character is the app's error, said in its
/// traceback (500), as CR, LF and NUL were; before, the worker passed it and the
/// front refused it (502, no word of what the app did).
#[test]
fn a_control_character_in_a_header_is_the_apps_500() {
    let (server, _admin) = attack_server(&[]);
    assert_eq!(get(&server.url("/header-ctl")).0, 500);
    server.wait_for_log("invalid value for header \"x-a\"", Duration::from_secs(5));
}

/// `sys.exit()` (or a KeyboardInterrupt) in a task the app started itself (a
/// background job, `asyncio.create_task` in a view) or in a callback it scheduled
/// costs only that task: one error record with its traceback, and the worker and
/// its other requests live on. asyncio lets both out of the loop, and before the
/// fix the worker exited with every request it served (the stream was cut).
#[test]
fn system_exit_in_a_task_the_app_started_costs_only_that_task() {
    for asgi_loop in ["uvloop", "asyncio"] {
        let (server, _admin) = attack_server(&["--asgi-loop", asgi_loop]);
        let pid = get(&server.url("/pid")).1;
        let url = server.url("/tick?4");
        let ticking = thread::spawn(move || get(&url));
        assert_eq!(get(&server.url("/spawn-exit")), (200, "spawned".into()));
        server.wait_for_log("in _spawned_exit", Duration::from_secs(5));
        assert_eq!(get(&server.url("/spawn-interrupt")).0, 200);
        server.wait_for_log("in _spawned_interrupt", Duration::from_secs(5));
        let (status, body) = ticking.join().unwrap();
        assert_eq!((status, body.ends_with("end\n")), (200, true), "{body}");
        assert_eq!(get(&server.url("/pid")), (200, pid), "{}", server.log());
        // Once each, with the traceback; asyncio does not report it again.
        let log = server.log();
        assert_eq!(log.matches("in _spawned_exit").count(), 1, "{log}");
        assert_eq!(log.matches("in _spawned_interrupt").count(), 1, "{log}");
        assert!(!log.contains("never retrieved"), "{log}");
    }
}

/// A task that ignores every cancel (its request keeps its slot) does not hold up
/// a drain: TERM lets go of it, and the worker runs its lifespan shutdown and exits
/// 0 by itself, not killed at the end of `graceful_timeout`.
#[test]
fn a_task_that_ignores_its_cancel_does_not_hold_up_the_drain() {
    let (mut server, _admin) = attack_server(&["-t", "1", "--graceful-timeout", "20"]);
    let pid = get(&server.url("/pid")).1;
    assert_eq!(get(&server.url("/stubborn?60")).0, 504);
    server.wait_for_log("ignored its cancellation", Duration::from_secs(10));
    server.signal(libc_sig("TERM"));
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("ASGI lifespan shutdown done"), "{log}");
    let exited = format!("worker exited pid={pid} status=exit 0");
    assert!(log.contains(&exited), "{exited:?} not in\n{log}");
}
