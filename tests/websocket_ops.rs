//! WebSockets at scale and at shutdown (issue 26): 2,000 idle WebSockets held open
//! through the master (its memory per connection printed and bounded), and TERM with
//! WebSockets open (ferricorn exits within `graceful_timeout`, the clients see their
//! connections close). Raw RFC 6455 clients (tests/common/websocket.rs).

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
