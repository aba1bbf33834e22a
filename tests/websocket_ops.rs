//! WebSockets in operation (issue 26): 2,000 idle WebSockets held open through the
//! master (its memory per connection printed and bounded); a client that stops
//! reading, over HTTP/1.1 and on an RFC 8441 stream with a shut window, blocks the
//! app's `send` while the master's memory stays put; the cap (503), the idle
//! timeout, the worker timeout not applied; TERM with WebSockets open over HTTP/1.1
//! and HTTP/2 (new handshakes refused, ferricorn exits within `graceful_timeout`, the
//! clients see their connections end, the access-log line at close); HUP closing
//! the old workers' WebSockets. Raw RFC 6455 clients (tests/common/websocket.rs) and
//! the `h2` crate's extended CONNECT, against tests/apps/ws_echo.py (Flask-Sock) and
//! tests/apps/ws_raw.py (raw sockets, its metrics and access log).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const IDLE: usize = 2000;

/// 2,000 WebSockets, each holding a worker thread blocked in `recv`
/// (tests/apps/ws_raw.py `/idle/...`), cost the master at most 64 KiB each; the figure is
/// printed (the idle relay should hold no buffer).
#[test]
fn two_thousand_idle_websockets_memory_per_connection() {
    // This process holds the 2,000 client sockets: its soft open-file limit may be
    // 1024 (the master raises its own).
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 3 * IDLE as u64,
        "open-file hard limit {hard} < 3 x {IDLE}"
    );
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    let threads = (IDLE / 2 + 1).to_string();
    let max = (IDLE * 2).to_string();
    let server = test_app(
        "ws_raw:app",
        &["-w", "2", "--threads", &threads, "--websocket-max", &max],
    )
    .start();
    // One round trip first: what the first WebSocket allocates once is not per
    // connection.
    let mut first = ws_open(server.addr, "/idle/warm");
    first.write_bytes(b"warm");
    drop(first);
    let before = rss_kib(server.pid());
    let start = Instant::now();
    let mut held: Vec<TcpStream> = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let s = ws_open(server.addr, &format!("/idle/{i}"));
        held.push(s);
    }
    let opened = start.elapsed();
    // Every one of them is live: the last and the first answer.
    for i in [IDLE - 1, 0] {
        held[i].write_bytes(format!("still there {i}").as_bytes());
    }
    let after = rss_kib(server.pid());
    let per_conn = (after.saturating_sub(before) * 1024) / IDLE as u64;
    println!(
        "{IDLE} idle WebSockets (opened in {opened:?}): master RSS {before} KiB -> {after} KiB, \
         {per_conn} bytes per connection"
    );
    if per_conn > 64 * 1024 {
        server.fail(&format!(
            "the master holds {per_conn} bytes per idle WebSocket (bound: 64 KiB)"
        ));
    }
}

/// A byte round trip through ws_raw's byte echo.
trait RoundTrip {
    fn write_bytes(&mut self, bytes: &[u8]);
}

impl RoundTrip for TcpStream {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.write_all(bytes).unwrap();
        let mut back = vec![0u8; bytes.len()];
        self.read_exact(&mut back).unwrap();
        assert_eq!(back, bytes);
    }
}

/// TERM with WebSockets open on the Flask-Sock echo: the master exits 0 within
/// `graceful_timeout` plus a margin (no hang on the app's threads blocked in
/// receive), and each client sees its connection end.
#[test]
fn term_with_open_websockets_exits_within_graceful_timeout() {
    const GRACEFUL: u64 = 3;
    let mut server = test_app(
        "ws_echo:app",
        &[
            "-w",
            "2",
            "--threads",
            "8",
            "--graceful-timeout",
            &GRACEFUL.to_string(),
        ],
    )
    .start();
    let mut sockets: Vec<TcpStream> = (0..6)
        .map(|i| {
            let mut s = ws_open(server.addr, "/echo");
            ws_echo(&mut s, &format!("before TERM {i}"));
            s
        })
        .collect();
    let start = Instant::now();
    server.signal(15);
    // Each client sees its connection close: a close frame and/or EOF, and no
    // stray bytes. (read timeout: ws_open's 60 s, well past the bound below)
    for s in &mut sockets {
        loop {
            match ws_recv(s) {
                None => break,
                Some((0x8, _)) => continue,
                Some(other) => server.fail(&format!("after TERM: unexpected frame {other:?}")),
            }
        }
    }
    let closed = start.elapsed();
    let status = server.wait_exit(Duration::from_secs(GRACEFUL + 30));
    let exited = start.elapsed();
    println!("TERM: WebSockets closed after {closed:?}, master exited after {exited:?}");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    if exited > Duration::from_secs(GRACEFUL + 10) {
        server.fail(&format!(
            "exit took {exited:?} (graceful_timeout {GRACEFUL} s)"
        ));
    }
}

/// The same over HTTP/2: a WebSocket opened with an extended CONNECT (RFC 8441, the
/// `h2` crate) on an h2c connection ends at TERM (the stream ends or is reset) and
/// the master exits within `graceful_timeout`.
#[test]
fn term_with_an_open_rfc8441_stream() {
    const GRACEFUL: u64 = 2;
    let mut server = test_app(
        "ws_echo:app",
        &[
            "-w",
            "1",
            "--threads",
            "4",
            "--graceful-timeout",
            &GRACEFUL.to_string(),
        ],
    )
    .start();
    let rt = runtime();
    let addr = server.addr;
    let (_send, mut body) = rt.block_on(async {
        let (mut send, mut body) = h2_websocket(addr, "/echo").await;
        // A masked text frame "hi"; the echo comes back unmasked.
        let frame = [0x81u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        send.send_data(bytes::Bytes::copy_from_slice(&frame), false)
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let chunk = body.data().await.expect("the echo").unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, [0x81, 0x02, b'h', b'i']);
        // `send` is kept: dropping it would reset the stream.
        (send, body)
    });
    let start = Instant::now();
    server.signal(15);
    let ended = rt.block_on(async {
        // A close frame may come first; then the stream ends or is reset.
        loop {
            match body.data().await {
                // (an empty DATA frame may carry END_STREAM)
                Some(Ok(chunk)) if chunk.is_empty() || chunk[0] == 0x88 => continue,
                Some(Ok(chunk)) => return format!("unexpected data {chunk:?}"),
                Some(Err(e)) => return format!("reset ({e})"),
                None => return "ended".to_string(),
            }
        }
    });
    let status = server.wait_exit(Duration::from_secs(GRACEFUL + 30));
    let exited = start.elapsed();
    println!("TERM: the RFC 8441 stream {ended}, master exited after {exited:?}");
    assert!(!ended.starts_with("unexpected"), "{ended}");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    if exited > Duration::from_secs(GRACEFUL + 10) {
        server.fail(&format!(
            "exit took {exited:?} (graceful_timeout {GRACEFUL} s)"
        ));
    }
}

/// A client that stops reading: the app's `send` blocks once the kernel's buffers
/// on the way are full (back-pressure), and the master buffers no more than its
/// small relay buffer; reading again gets every message, whole and in order.
#[test]
fn a_client_that_stops_reading_blocks_the_apps_send() {
    let server = test_app("ws_echo:app", &["-w", "1", "--threads", "4"]).start();
    let before = rss_kib(server.pid());
    let mut s = ws_open(server.addr, "/flood");
    let last = flood_blocked(&server);
    let grown = rss_kib(server.pid()).saturating_sub(before);
    println!(
        "a client that stops reading: the app blocked after {last} bytes; master RSS +{grown} KiB"
    );
    // The kernel buffers a few MiB on loopback (TCP autotuning, the socketpair);
    // without back-pressure the count would grow without end.
    assert!(
        last < 64 << 20,
        "{last} bytes sent to a client that reads nothing"
    );
    assert!(grown < 8 << 10, "master RSS grew {grown} KiB");
    for _ in 0..(last / 65536 + 16) {
        let (op, payload) = ws_recv(&mut s).expect("a flood message");
        assert_eq!((op, payload.len()), (0x2, 65536));
    }
}

/// Bytes the flood route (tests/apps/ws_echo.py) sent when its count stopped
/// growing: the app's send blocked (waits for that fact, 60 s at most).
fn flood_blocked(server: &Server) -> u64 {
    let sent = || -> u64 {
        let text = client()
            .get(server.url("/flood/sent"))
            .send()
            .unwrap()
            .text();
        text.unwrap().trim().parse().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut still) = (0, 0);
    while still < 10 {
        let now = sent();
        if now > 0 && now == last {
            still += 1;
        } else {
            (last, still) = (now, 0);
        }
        if Instant::now() > deadline {
            server.fail(&format!("the app never blocked: {now} bytes sent"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

/// The same on an RFC 8441 stream whose HTTP/2 flow-control window the client
/// keeps shut: the relay stops reading the app's socket, the app's send blocks.
#[test]
fn an_rfc8441_stream_with_a_shut_window_blocks_the_apps_send() {
    let server = test_app("ws_echo:app", &["-w", "1", "--threads", "4"]).start();
    let rt = runtime();
    let before = rss_kib(server.pid());
    // The connection task runs only inside block_on: between the calls nothing is
    // read, the window stays shut.
    let (_send, mut body) = rt.block_on(h2_websocket(server.addr, "/flood"));
    let last = flood_blocked(&server);
    let grown = rss_kib(server.pid()).saturating_sub(before);
    println!("a shut HTTP/2 window: the app blocked after {last} bytes; master RSS +{grown} KiB");
    assert!(
        last < 64 << 20,
        "{last} bytes sent to a stream with a shut window"
    );
    assert!(grown < 8 << 10, "master RSS grew {grown} KiB");
    let got = rt.block_on(async {
        let mut got = 0u64;
        while got < last {
            let chunk = body.data().await.expect("flood data").unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got += chunk.len() as u64;
        }
        got
    });
    assert!(got >= last);
}

#[test]
fn cap_idle_timeout_and_worker_timeout() {
    let (server, admin) = ws_server(&[
        "--websocket-max",
        "1",
        "--websocket-idle-timeout",
        "4",
        "-t",
        "2",
    ]);
    let started = Instant::now();
    let (mut s, _) = ws_open_head(server.addr, "/raw");
    assert_eq!(read_n(&mut s, 2), b"hi");
    // Past the cap: 503 before Python.
    let answer = answer_until_close(
        server.addr,
        handshake("/raw").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert_eq!(refused_total(&admin, "cap"), 1);
    // Open longer than the worker timeout (2 s), with bytes every second: alive.
    let mut quiet = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_secs(1));
        s.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut s, 4), b"ping");
        quiet = Instant::now();
    }
    assert!(!server.log().contains("WORKER TIMEOUT"), "{}", server.log());
    // Then silence: closed after the idle timeout (4 s), not before.
    assert_eq!(read_to_close(&mut s, Duration::from_secs(15)), "");
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(3500),
        "closed after {waited:?}"
    );
    wait_websockets_closed(&admin);
    // The worker's thread came back.
    let (status, _) = h1_request(&server, "GET", "/pid", b"");
    assert_eq!(status, 200);
}

#[test]
fn term_refuses_new_handshakes_and_closes_open_ones_after_graceful_timeout() {
    let (mut server, admin) = ws_server(&["--graceful-timeout", "3"]);
    let (mut open_ws, _) = ws_open_head(server.addr, "/raw");
    assert_eq!(read_n(&mut open_ws, 2), b"hi");
    // A handshake on its way when TERM comes: its head ends after it.
    let mut late = TcpStream::connect(server.addr).unwrap();
    late.write_all(b"GET /raw HTTP/1.1\r\nHost: a\r\n").unwrap();
    let term = Instant::now();
    server.signal(libc::SIGTERM);
    // Draining once the listener is closed (the stop follows at once).
    wait_until("the listener closed", Duration::from_secs(10), || {
        TcpStream::connect(server.addr).is_err()
    });
    let rest = handshake("/raw")
        .split_once("\r\n")
        .unwrap()
        .1
        .split_once("\r\n")
        .unwrap()
        .1
        .to_string();
    late.write_all(rest.as_bytes()).unwrap();
    let answer = read_to_close(&mut late, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert_eq!(refused_total(&admin, "draining"), 1);
    // The open one still works during the grace...
    open_ws.write_all(b"still").unwrap();
    assert_eq!(read_n(&mut open_ws, 5), b"still");
    // ...and is closed at its end; the server exits within graceful_timeout.
    assert_eq!(read_to_close(&mut open_ws, Duration::from_secs(10)), "");
    let status = server.wait_exit(Duration::from_secs(10));
    let took = term.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(6), "exit after {took:?}");
    assert!(
        server.log().contains("\"status\":101"),
        "the line at close: {}",
        server.log()
    );
}

/// HUP: the new workers take new handshakes at once; the old worker's WebSocket is
/// closed after `graceful_timeout` (its app sees its socket end), so the old worker
/// does not drain forever.
#[test]
fn hup_closes_the_old_workers_websockets_after_graceful_timeout() {
    let (server, _admin) = ws_server(&["--graceful-timeout", "2"]);
    let (mut old, _) = ws_open_head(server.addr, "/raw");
    assert_eq!(read_n(&mut old, 2), b"hi");
    let (_, old_pid) = h1_request(&server, "GET", "/pid", b"");
    // The chunked body: its size line, then the pid.
    let old_pid = old_pid
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(old_pid.parse::<u32>().is_ok(), "{old_pid}");
    let from = server.log_len();
    server.signal(libc::SIGHUP);
    server.wait_for_log_after(from, "reload complete", Duration::from_secs(60));
    let hup = Instant::now();
    let (mut new, _) = ws_open_head(server.addr, "/raw");
    assert_eq!(read_n(&mut new, 2), b"hi");
    // The old one still works until the grace ends...
    old.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut old, 1), b"x");
    // ...then is closed, and its worker exits.
    assert_eq!(read_to_close(&mut old, Duration::from_secs(15)), "");
    assert!(
        hup.elapsed() < Duration::from_secs(8),
        "{:?}",
        hup.elapsed()
    );
    wait_until("the old worker gone", Duration::from_secs(20), || {
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
    });
    new.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut new, 1), b"y");
}

/// TERM with an HTTP/2 WebSocket open: it carries on during the grace, then its
/// stream ends and the server exits within `graceful_timeout`.
#[test]
fn term_with_an_http2_websocket_open() {
    let (mut server, _admin) = ws_server(&["--graceful-timeout", "2"]);
    let rt = runtime();
    let term = rt.block_on(async {
        let (mut send, mut body) = h2_websocket(server.addr, "/raw").await;
        assert_eq!(&body.data().await.unwrap().unwrap()[..], b"hi");
        let term = Instant::now();
        server.signal(libc::SIGTERM);
        send.send_data(bytes::Bytes::from_static(b"during"), false)
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            got.extend_from_slice(&body.data().await.unwrap().unwrap());
        }
        assert_eq!(got, b"during");
        // The end: the stream finishes (or is reset) when the grace is over.
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = body.data().await {}
        })
        .await;
        assert!(end.is_ok(), "the stream outlived the grace");
        term
    });
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let took = term.elapsed();
    assert!(took < Duration::from_secs(5), "exit after {took:?}");
    // Its access-log line at the close: 200 over HTTP/2, bytes each way.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"protocol\":\"HTTP/2.0\"") && l.contains("\"path\":\"/raw\""))
        .unwrap_or_else(|| panic!("no line: {log}"));
    assert!(
        line.contains("\"status\":200,\"bytes\":8,\"bytes_in\":6,"),
        "{line}"
    );
}

/// Back-pressure: a client that reads nothing makes the app's `send` block; the
/// master keeps no more than its small per-direction buffer (the rest is the
/// kernel's socket buffers), not the 256 MiB the app tries to write.
#[test]
fn a_client_that_stops_reading_blocks_a_raw_apps_send() {
    let (server, _admin) = ws_server(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(handshake("/flood").as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    let line = server.wait_for_log("flooded ", Duration::from_secs(60));
    let sent: u64 = line
        .split("flooded ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap();
    assert!(
        sent < 32 * 1024 * 1024,
        "the app wrote {sent} bytes to a client reading none"
    );
    eprintln!("the app's send blocked after {sent} bytes");
    // What was written still arrives, in order.
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while got < sent {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        got += n as u64;
    }
}
