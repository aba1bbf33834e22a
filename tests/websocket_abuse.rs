//! WebSockets under abuse: the issue 26 attacker's findings (apps in
//! tests/apps/ws_raw.py), each a test that failed before its fix. A worker recycled
//! under its WebSockets is not kept for ever (F1), nor one whose WebSocket thread
//! hangs (F1b); a route's `timeout = 0` still waits for the app's head (F8); the
//! front's orders (X-Accel-*) never reach the client from a handshake's answer (F4);
//! an HTTP/2 answer that opens no tunnel is never a 2xx (F3); a head on the socket
//! with bad framing is a 502 (F5); handshakes waiting for a thread hold no
//! descriptor (F6); `ferricorn_websockets_open` counts tunnels, not handshakes (F7).
//! The second attacker's: the worker `timeout` holds until the tunnel opens, a
//! sticky route's handshake answer sets its cookie, and an app that half-closes
//! still reads the client's Close reply.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The answer's head to a raw handshake to `path`, and the stream.
fn try_open(addr: SocketAddr, path: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(handshake(path).as_bytes()).unwrap();
    (read_head(&mut s), s)
}

/// A WebSocket on ws_raw's `/raw` (or a path like it), past its "hi".
fn open_raw(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = ws_open(addr, path);
    assert_eq!(read_n(&mut s, 2), b"hi");
    s
}

fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    assert_eq!(read_n(s, msg.len()), msg);
}

/// Descriptors process `pid` holds.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `n` extended CONNECTs to `/raw` on one new h2c connection, left waiting: the
/// connection and the pending answers, to be dropped by the caller.
async fn queue_h2_handshakes(
    addr: SocketAddr,
    n: usize,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>,
) {
    let mut client = h2_client(addr).await;
    let mut pending = Vec::new();
    for _ in 0..n {
        client = client.ready().await.unwrap();
        let req = ws_connect_request(addr, "/raw", "websocket", "13");
        if let Ok(r) = client.send_request(req, false) {
            pending.push(r);
        }
    }
    (client, pending)
}

/// `queue_h2_handshakes`, returning once the dispatcher's queue (read on `admin`)
/// holds all `n`.
async fn queued_h2_handshakes(
    addr: SocketAddr,
    n: usize,
    admin: &str,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>,
) {
    let queued = queue_h2_handshakes(addr, n).await;
    let admin = admin.to_string();
    tokio::task::spawn_blocking(move || {
        poll_metric(
            &admin,
            "ferricorn_requests_queued",
            Duration::from_secs(10),
            |q| q >= n as u64,
        )
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{n} handshakes queued: {e:?}"));
    queued
}

/// F1: a worker recycled by max_requests while a WebSocket runs on it is not kept
/// for ever: a client holding one WebSocket per round must not make the worker
/// processes grow.
#[test]
fn recycled_workers_do_not_pile_up_behind_websockets() {
    let (server, _admin) = ws_server(&["--max-requests", "4", "--graceful-timeout", "1"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open_raw(server.addr, "/raw"));
        for _ in 0..6 {
            let _ = get(&format!("http://{}/pid", server.addr));
        }
    }
    // graceful_timeout and a margin: a drained worker's WebSockets are closed by then.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let n = children(server.pid()).len();
        if n <= 2 {
            break;
        }
        if Instant::now() > deadline {
            server.fail(&format!(
                "{n} worker processes for -w 1 with 3 WebSockets held"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// F1b: a draining worker whose WebSocket thread never returns (its app ignores the
/// socket's end) is killed after graceful_timeout and a margin, with a warning.
#[test]
fn a_hung_websocket_thread_does_not_keep_a_draining_worker() {
    let (server, _admin) = ws_server(&["--graceful-timeout", "1"]);
    let old = children(server.pid());
    let _ws = open_raw(server.addr, "/stuck");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let now = children(server.pid());
        if now.len() == 1 && !old.contains(&now[0]) {
            break;
        }
        if Instant::now() > deadline {
            server.fail(&format!(
                "12 s after HUP (graceful 1 s): workers {now:?}, old {old:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = server.wait_for_log("WebSocket threads did not return", Duration::from_secs(5));
    assert!(line.contains(&old[0].to_string()), "{line}");
}

/// F8: `[[route]] timeout = 0` (none) still waits for an app's head written in two parts.
#[test]
fn a_route_without_timeout_still_waits_for_the_apps_head() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, "[[route]]\nprefix = \"/long/\"\ntimeout = 0\n").unwrap();
    let (server, _admin) = ws_server(&["-c", conf.to_str().unwrap()]);
    let mut s = open_raw(server.addr, "/slowhead");
    round_trip(&mut s, b"default route");
    let mut s = open_raw(server.addr, "/long/slowhead");
    round_trip(&mut s, b"route timeout = 0");
}

/// F4: the front's orders (X-Accel-Redirect, X-Accel-Limit-Rate) never reach the
/// client from a handshake's answer: a WSGI one, one written on the socket, a 101.
#[test]
fn accel_fields_never_reach_the_client_on_a_handshake() {
    let (server, _admin) = ws_server(&[]);
    for path in ["/accel", "/accel-socket", "/accel101"] {
        let (head, mut s) = try_open(server.addr, path);
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("x-accel") && lower.starts_with("http/1.1 "),
            "{path}: the front's orders reached the client: {head}"
        );
        if path == "/accel101" {
            assert!(lower.starts_with("http/1.1 101 "), "{head}");
            assert_eq!(read_n(&mut s, 2), b"hi");
            round_trip(&mut s, b"still a tunnel");
        }
    }
}

/// F3: over HTTP/2, an app's 2xx that is no 101 (a WSGI 200, a 200 on the socket)
/// is a 502, never the 2xx that means "tunnel open"; other statuses pass, and an
/// HTTP/1 client gets the app's 200 as it is.
#[test]
fn an_http2_answer_that_opens_no_tunnel_is_not_a_2xx() {
    let (server, _admin) = ws_server(&[]);
    let addr = server.addr;
    let statuses = runtime().block_on(async {
        let mut client = h2_client(addr).await;
        let mut out = Vec::new();
        for path in ["/plain", "/socket200", "/socket403"] {
            client = client.ready().await.unwrap();
            let req = ws_connect_request(addr, path, "websocket", "13");
            let (resp, _send) = client.send_request(req, false).unwrap();
            out.push((path, resp.await.map(|r| r.status().as_u16())));
        }
        out
    });
    for (path, status) in statuses {
        let want = if path == "/socket403" { 403 } else { 502 };
        assert!(
            matches!(status, Ok(s) if s == want),
            "{path}: {status:?} (a 2xx tells the client its WebSocket is open)"
        );
    }
    server.wait_for_log("a 2xx that is no 101", Duration::from_secs(5));
    let answer = answer_until_close(
        server.addr,
        handshake("/socket200").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
}

/// F5: a head on the socket framed as no HTTP/1 client would accept (two
/// Content-Lengths, a signed one, Transfer-Encoding with Content-Length) is a 502
/// with a log line, never a bare EOF.
#[test]
fn a_socket_head_with_bad_framing_is_a_502() {
    let (server, _admin) = ws_server(&[]);
    for framing in ["dupcl", "pluscl", "tecl"] {
        let from = server.log_len();
        let (head, _) = try_open(server.addr, &format!("/badhead?{framing}"));
        assert!(head.starts_with("HTTP/1.1 502 "), "{framing}: {head:?}");
        server.wait_for_log_after(
            from,
            "the app's response head on its socket",
            Duration::from_secs(5),
        );
    }
}

/// F6: a handshake waiting for a thread holds no descriptor of the master: 50 of
/// them on one HTTP/2 connection cost that connection only.
#[test]
fn queued_handshakes_hold_no_descriptor() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        "ws_raw:app",
        &["-w", "1", "--threads", "2", "--admin-bind", &admin],
    )
    .start();
    let _held = [open_raw(server.addr, "/raw"), open_raw(server.addr, "/raw")];
    let before = fds(server.pid());
    let after = runtime().block_on(async {
        let queued = queued_h2_handshakes(server.addr, 50, &admin).await;
        let after = fds(server.pid());
        drop(queued);
        after
    });
    assert!(
        after < before + 10,
        "50 queued handshakes: the master's descriptors went from {before} to {after}"
    );
}

/// F6 end to end: under a limit of 256 descriptors, 2 WebSockets and 200 queued
/// HTTP/2 handshakes on 4 connections leave room for another client.
#[test]
fn queued_handshakes_do_not_take_the_masters_descriptors() {
    let apps = apps_dir();
    let dir = tempfile::tempdir().unwrap();
    let mount = static_mount(dir.path());
    let args = [
        "--nofile=256:256",
        BIN,
        "--static",
        &mount,
        "--chdir",
        apps.to_str().unwrap(),
        "-w",
        "1",
        "--threads",
        "2",
        "ws_raw:app",
        "-b",
        "127.0.0.1:0",
    ];
    let server = Launch::program("prlimit", args).start();
    let _held = [open_raw(server.addr, "/raw"), open_raw(server.addr, "/raw")];
    let addr = server.addr;
    let status = runtime().block_on(async {
        let mut queued = Vec::new();
        for _ in 0..4 {
            queued.push(queue_h2_handshakes(addr, 50).await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = tokio::task::spawn_blocking(move || static_file(addr))
            .await
            .unwrap();
        drop(queued);
        status
    });
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "a static file for another client, while handshakes wait for a thread: {status:?}"
    );
}

/// The status line of GET /static/f.txt on a new connection, or what went wrong.
fn static_file(addr: SocketAddr) -> String {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => return format!("connect: {e}"),
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if let Err(e) = s.write_all(b"GET /static/f.txt HTTP/1.1\r\nHost: a\r\n\r\n") {
        return format!("write: {e}");
    }
    let head = read_head(&mut s);
    if head.is_empty() {
        return "no answer (accept failed?)".into();
    }
    head.lines().next().unwrap_or("").to_string()
}

/// F7: `ferricorn_websockets_open` counts open tunnels, not handshakes waiting for a
/// thread.
#[test]
fn websockets_open_counts_tunnels_not_handshakes() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        "ws_raw:app",
        &["-w", "1", "--threads", "1", "--admin-bind", &admin],
    )
    .start();
    let mut ws = open_raw(server.addr, "/raw");
    let rt = runtime();
    rt.block_on(async {
        let queued = queued_h2_handshakes(server.addr, 3, &admin).await;
        let open = metric_off_runtime(&admin, "ferricorn_websockets_open");
        assert_eq!(open, 1, "1 tunnel open, 3 handshakes waiting");
        drop(queued);
    });
    round_trip(&mut ws, b"still open");
}

/// Second attacker, F1: the worker `timeout` holds until the tunnel is open. An app
/// that writes part of its head on the socket and hangs gets its client a 504 and
/// its worker replaced, as any hung request does; before, the thread was lost for
/// good (no timeout, no restart, the worker's one thread gone).
#[test]
fn a_half_written_head_that_hangs_is_timed_out_like_any_request() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = test_app(
        "ws_raw:app",
        &[
            "-w",
            "1",
            "--threads",
            "1",
            "-t",
            "2",
            "--admin-bind",
            &admin,
        ],
    )
    .start();
    let (status, old) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    let (head, _s) = try_open(server.addr, "/partial");
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    poll_metric(
        &admin,
        "ferricorn_worker_restarts_total{reason=\"timeout\"}",
        Duration::from_secs(20),
        |n| n == 1,
    )
    .expect("the hung worker replaced");
    let (status, new) = get(&server.url("/pid"));
    assert_eq!(status, 200, "a new worker serves");
    assert_ne!(new, old);
}

/// Second attacker, F2: a sticky route's handshake answer (101, and HTTP/2's 200)
/// sets the cookie like any answer under the route, so a client that opens its
/// WebSocket first, or brings a stale token, is pinned from then on.
#[test]
fn a_sticky_routes_handshake_answer_sets_the_cookie() {
    let (server, _admin) = ws_server(&["--sticky", "/"]);
    let (head, _s) = try_open(server.addr, "/raw");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let token = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("set-cookie: ferricorn_worker=")
                .map(String::from)
        })
        .unwrap_or_else(|| panic!("no cookie on the 101: {head}"));
    let token = token.split(';').next().unwrap().to_string();
    let stale = "0".repeat(32);
    for (cookie, wants_new) in [(stale.as_str(), true), (token.as_str(), false)] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let field = format!("Cookie: ferricorn_worker={cookie}");
        let mut fields = HANDSHAKE.to_vec();
        fields.push(&field);
        let req = handshake_head("GET /raw HTTP/1.1", &fields);
        s.write_all(req.as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let set = head
            .to_ascii_lowercase()
            .contains("set-cookie: ferricorn_worker=");
        assert_eq!(set, wants_new, "cookie {cookie}: {head}");
    }
    runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        while !client.is_extended_connect_protocol_enabled() {
            client = client.ready().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let req = ws_connect_request(server.addr, "/raw", "websocket", "13");
        let (resp, _send) = client.send_request(req, false).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            cookie
                .as_deref()
                .is_some_and(|c| c.starts_with("ferricorn_worker=")),
            "{cookie:?}"
        );
    });
}

/// Second attacker, F3: an app that sends its Close frame and half-closes its
/// socket still reads the client's Close reply (the relay lingers on the client's
/// side); before, the relay ended with the app's side and the reply was lost.
#[test]
fn an_app_that_half_closes_still_gets_the_clients_close_reply() {
    let (server, _admin) = ws_server(&[]);
    let mut s = ws_open(server.addr, "/apphalf");
    assert_eq!(
        read_n(&mut s, 4),
        [0x88, 0x02, 0x03, 0xe8],
        "the app's Close"
    );
    let reply = ws_frame(0x8, &[0x03, 0xe8]);
    s.write_all(&reply).unwrap();
    drop(s);
    server.wait_for_log(
        &format!("apphalf got {}", reply.len()),
        Duration::from_secs(10),
    );
}
