//! The admin port (`--admin-bind`: `/healthz`, `/readyz`, `/metrics`) against a client
//! that connects and sends nothing, or half a head: it gets the public port's
//! slow-client rules and a connection cap of its own, so a few hundred such
//! connections from anywhere in the cluster cannot use up the process's file
//! descriptors (the public port's too) and fail the liveness probe.

mod common;
use common::*;
use ferricorn::defaults::ADMIN_MAX_CONNECTIONS;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A server with an admin port and `[limits]` from `limits`; returns it and the port.
fn admin_server(dir: &std::path::Path, limits: &str, extra: &[&str]) -> (Server, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let conf = dir.join("limits.toml");
    std::fs::write(&conf, format!("[limits]\n{limits}")).unwrap();
    let conf = conf.to_str().unwrap().to_owned();
    let mut args = vec!["-w", "1", "--admin-bind", &admin, "-c", &conf];
    args.extend_from_slice(extra);
    (test_app("front_app:app", &args).start(), admin)
}

/// What the server sends on `s` until it closes, and whether it did within `within`.
fn read_until_close(s: &mut TcpStream, within: Duration) -> (String, bool) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    // A reset is a close too: the server drops a connection with bytes unread.
    let closed = match s.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = admin_server(dir.path(), "head_timeout = 1\n", &["--keep-alive", "1"]);
    let started = Instant::now();
    let mut half = TcpStream::connect(&admin).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (resp, closed) = read_until_close(&mut half, Duration::from_secs(5));
    assert!(closed && resp.starts_with("HTTP/1.1 408"), "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let mut idle = TcpStream::connect(&admin).unwrap();
    let (resp, closed) = read_until_close(&mut idle, Duration::from_secs(5));
    assert!(closed && resp.is_empty(), "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // After a probe's answer too: a kept-alive connection goes after `keep_alive`.
    let mut probe = TcpStream::connect(&admin).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (resp, closed) = read_until_close(&mut probe, Duration::from_secs(5));
    assert!(closed && resp.starts_with("HTTP/1.1 200"), "{resp:?}");
    // The guard's grammar too: a bad head is a 400, not hyper's guess.
    let mut bad = TcpStream::connect(&admin).unwrap();
    bad.write_all(b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n")
        .unwrap();
    let (resp, _) = read_until_close(&mut bad, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?}");
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn past_the_admin_cap_a_new_connection_closes_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "head_timeout = 60\n";
    let (server, admin) = admin_server(dir.path(), limits, &["--keep-alive", "60"]);
    let before = open_fds(server.pid());
    // Each starts a head and stops: held for the head timeout, a minute here; 300
    // of them would use up the descriptors of a server under `ulimit -n 400`.
    let mut held: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&admin).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    // The probe is served at once, though it came after them all.
    let started = Instant::now();
    let mut probe = TcpStream::connect(&admin).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_until_close(&mut probe, Duration::from_secs(10));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The oldest went, the newest stay: the server holds the cap's worth.
    let (resp, closed) = read_until_close(&mut held[0], Duration::from_secs(10));
    assert!(closed && resp.is_empty(), "the oldest connection: {resp:?}");
    wait_until(
        "the server to hold the cap's worth",
        Duration::from_secs(10),
        || open_fds(server.pid()) <= before + ADMIN_MAX_CONNECTIONS,
    );
    let newest = held.last_mut().unwrap();
    newest
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        newest.read(&mut [0u8; 16]).is_err(),
        "the newest one was closed"
    );
    // The public port is not affected.
    assert_eq!(h1_request(&server, "GET", "/environ", b"").0, 200);
}
