//! HTTP/1 keep-alive connections between requests. One idle for `PARK_AFTER` (0.5 s)
//! is parked: its hyper connection is freed (tests/memory.rs has the figures), and a
//! new one takes its next request. Parked, a connection must behave exactly as before:
//! it serves what comes next in any shape, times out, refuses bad input and drains.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The misbehave app with an admin port, for `ferricorn_connections_parked`.
fn parking_server(extra: &[&str]) -> (Server, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["-w", "1", "--admin-bind", &admin];
    args.extend_from_slice(extra);
    let server = test_app("misbehave:app", &args).start();
    (server, admin)
}

fn wait_parked(admin: &str, n: u64) {
    wait_until("connections parked", Duration::from_secs(10), || {
        metric(admin, "ferricorn_connections_parked") == n
    });
}

/// A connection after one answered request, then parked.
fn parked_connection(server: &Server, admin: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert!(read_one_response(&mut s).starts_with("HTTP/1.1 200"));
    wait_parked(admin, 1);
    s
}

/// Everything the server sends until it closes (or `within` passes: then it fails).
fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("not closed within {within:?}: {e}"));
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_parked_connection_serves_what_comes_next() {
    let (server, admin) = parking_server(&["--keep-alive", "60"]);
    let mut s = parked_connection(&server, &admin);

    // A head that arrives in pieces, the first while parked.
    s.write_all(b"GET /host HTTP/1.1\r\nHo").unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"st: split.example\r\n\r\n").unwrap();
    let resp = read_one_response(&mut s);
    assert!(resp.ends_with("split.example split.example"), "{resp}");
    wait_parked(&admin, 1);

    // Two pipelined requests in one write: both answered, in order.
    s.write_all(b"GET /host HTTP/1.1\r\nHost: one\r\n\r\nGET /host HTTP/1.1\r\nHost: two\r\n\r\n")
        .unwrap();
    let mut both = String::new();
    while both.matches("HTTP/1.1 200").count() < 2 || !both.ends_with("two two") {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {both:?}");
        both.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let one = both.find("one one").expect("the first answer");
    assert!(one < both.find("two two").unwrap(), "{both}");
    wait_parked(&admin, 1);

    // A body, and a streamed (chunked) answer; parked again after each.
    s.write_all(
        b"POST /slow-read?chunk=100&pause=0 HTTP/1.1\r\nHost: a\r\nContent-Length: 300\r\n\r\n",
    )
    .unwrap();
    s.write_all(&[b'x'; 300]).unwrap();
    assert!(read_one_response(&mut s).ends_with("\r\n\r\n300"));
    wait_parked(&admin, 1);
    s.write_all(b"GET /stream?n=3&pause=0 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut streamed = String::new();
    while !streamed.ends_with("0\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {streamed:?}");
        streamed.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        streamed.contains("transfer-encoding: chunked"),
        "{streamed}"
    );
    wait_parked(&admin, 1);

    // Closed by the client while parked: no longer counted.
    drop(s);
    wait_parked(&admin, 0);
}

#[test]
fn a_parked_connection_still_closes_at_the_keep_alive_timeout() {
    let (server, admin) = parking_server(&["--keep-alive", "2"]);
    let started = Instant::now();
    let mut s = parked_connection(&server, &admin);
    assert_eq!(read_to_close(&mut s, Duration::from_secs(10)), "");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(1900) && idle < Duration::from_millis(3500),
        "closed after {idle:?}, keep-alive is 2 s"
    );
    wait_parked(&admin, 0);
}

#[test]
fn what_comes_to_a_parked_connection_is_still_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("limits.toml");
    std::fs::write(&conf, "[limits]\nhead_timeout = 1\n").unwrap();
    let conf = conf.to_str().unwrap();
    let (server, admin) = parking_server(&["-c", conf, "--keep-alive", "60"]);

    let mut s = parked_connection(&server, &admin);
    s.write_all(b"GET /pid HTTP/1.1\r\nHost: a\r\nBad Field\r\n\r\n")
        .unwrap();
    let resp = read_to_close(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?}");
    wait_parked(&admin, 0);

    let mut s = parked_connection(&server, &admin);
    let started = Instant::now();
    s.write_all(b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Slow")
        .unwrap();
    let resp = read_to_close(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_closes_parked_connections_at_once() {
    let (mut server, admin) = parking_server(&["--keep-alive", "300"]);
    let mut s = parked_connection(&server, &admin);
    let started = Instant::now();
    server.signal(libc_sig("TERM"));
    assert_eq!(read_to_close(&mut s, Duration::from_secs(10)), "");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained in {:?}",
        started.elapsed()
    );
}
