//! WebSockets at scale, under back-pressure and at shutdown (issue 26): 2,000 idle
//! WebSockets held open through the master (its memory per connection printed and
//! bounded); a client that stops reading, over HTTP/1.1 and on an RFC 8441 stream
//! with a shut window, blocks the app's `send` while the master's memory stays put;
//! TERM with WebSockets open over HTTP/1.1 and HTTP/2 (ferricorn exits within
//! `graceful_timeout`, the clients see their connections end). Raw RFC 6455 clients
//! (tests/common/websocket.rs) and the `h2` crate's extended CONNECT.

mod common;

use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const IDLE: usize = 2000;

/// 2,000 WebSockets, each holding a worker thread blocked in `recv`
/// (tests/apps/ws_hold.py), cost the master at most 64 KiB each; the figure is
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
        "ws_hold:app",
        &["-w", "2", "--threads", &threads, "--websocket-max", &max],
    )
    .start();
    // One round trip first: what the first WebSocket allocates once is not per
    // connection.
    let mut first = ws_open(server.addr, "/");
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

/// A byte round trip through ws_hold's raw echo.
trait RoundTrip {
    fn write_bytes(&mut self, bytes: &[u8]);
}

impl RoundTrip for TcpStream {
    fn write_bytes(&mut self, bytes: &[u8]) {
        use std::io::{Read, Write};
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
        "sock_echo:app",
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
        "sock_echo:app",
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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
    let server = test_app("sock_echo:app", &["-w", "1", "--threads", "4"]).start();
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

/// Bytes the flood route (tests/apps/sock_echo.py) sent when its count stopped
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
    let server = test_app("sock_echo:app", &["-w", "1", "--threads", "4"]).start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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

/// A WebSocket opened on a new h2c connection with an extended CONNECT (RFC 8441)
/// to `path`: its request (kept open) and response bodies.
async fn h2_websocket(
    addr: std::net::SocketAddr,
    path: &str,
) -> (h2::SendStream<bytes::Bytes>, h2::RecvStream) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move { conn.await.ok() });
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS (ENABLE_CONNECT_PROTOCOL) arrive with its preface.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            Instant::now() < deadline,
            "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from_static("websocket"))
        .body(())
        .unwrap();
    let (resp, send) = client.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    (send, resp.into_body())
}
