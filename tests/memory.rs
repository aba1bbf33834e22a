//! Memory bounded by configuration, not by clients: what a slow app, a full disk or
//! many slow uploads cost the master. Figures are peaks (VmHWM) of the master alone.

mod common;
use common::*;
use std::time::Duration;

fn misbehave(extra: &[&str]) -> Launch {
    test_app("misbehave:app", extra)
}

/// A 50 MiB upload to an app that reads it slowly used to be read whole from its
/// spool file into the master's memory; it streams with back-pressure now.
#[test]
fn a_spooled_upload_streams_to_a_slow_app() {
    let server = misbehave(&["-w", "1"]).start();
    assert_eq!(get(&server.url("/pid")).0, 200);
    let before = peak_rss_kib(server.pid());
    let body = vec![b'u'; 50 * 1024 * 1024];
    let resp = client()
        .post(server.url("/slow-read?chunk=1048576&pause=0.04"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), (50 * 1024 * 1024).to_string());
    let grown = peak_rss_kib(server.pid()) - before;
    eprintln!("master peak grew by {grown} KiB for a 50 MiB upload");
    assert!(grown < 16 * 1024, "the master's peak grew by {grown} KiB");
}

/// Three clients that do not read a 50 MiB response each, with the spool's disk
/// full: the master used to keep every byte in memory (+193 MiB, 2,200 error
/// lines). It holds each response's memory share, pauses the worker, logs once,
/// and every byte still arrives once the clients read.
#[test]
fn responses_on_a_full_disk_pause_the_worker_instead_of_filling_memory() {
    use std::io::{Read, Write};
    let tmp = SmallTmpfs::mount("8m");
    let server = misbehave(&["-w", "1", "--threads", "3"])
        .env("TMPDIR", tmp.path())
        .start();
    assert_eq!(get(&server.url("/pid")).0, 200);
    let before = peak_rss_kib(server.pid());
    let clients: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.write_all(
                b"GET /stream?n=51200&pause=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect();
    server.wait_for_log("response spool file failed", Duration::from_secs(60));
    // Unread for a while: without back-pressure the worker's 150 MB pile up in the
    // master within a second or two.
    let watch_until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < watch_until {
        let grown = rss_kib(server.pid()).saturating_sub(before);
        assert!(grown < 32 * 1024, "the master grew by {grown} KiB");
        std::thread::sleep(Duration::from_millis(50));
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                s.read_to_end(&mut all).unwrap();
                all
            })
        })
        .collect();
    for r in readers {
        let all = r.join().unwrap();
        let body = all
            .split(|&b| b == b'\n')
            .skip_while(|l| l != b"\r")
            .skip(1);
        let body_len: usize = body.map(|l| l.len() + 1).sum::<usize>();
        assert!(
            body_len >= 51_200_000,
            "a response was cut: {body_len} bytes"
        );
    }
    let grown = peak_rss_kib(server.pid()) - before;
    eprintln!("master peak grew by {grown} KiB for 3 unread 50 MB responses on a full disk");
    assert!(grown < 32 * 1024, "the master's peak grew by {grown} KiB");
    let log = server.log();
    assert_eq!(
        log.matches("response spool file failed").count(),
        1,
        "{log}"
    );
    assert_eq!(get(&server.url("/pid")).0, 200);
}

/// Bodies waiting for a worker, all in memory, used to cost 1.35 MiB each (300 of
/// them: +406 MiB). With `[limits] body_memory` they take that much at most; the
/// rest wait in temp files.
#[test]
fn request_bodies_in_memory_stay_within_body_memory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.toml");
    std::fs::write(&conf, "[limits]\nbody_memory = 16777216\n").unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let server = misbehave(&[
        "-w",
        "1",
        "-c",
        conf.to_str().unwrap(),
        "--admin-bind",
        &admin,
    ])
    .start();
    assert_eq!(get(&server.url("/pid")).0, 200);
    let before = peak_rss_kib(server.pid());
    // The worker is busy reading slowly; everyone else waits with a 900 KiB body.
    let blocker = std::thread::spawn({
        let url = server.url("/slow-read?chunk=1&pause=20");
        move || {
            client()
                .post(url)
                .body(vec![b'b'; 10])
                .send()
                .map(|r| r.status())
        }
    });
    wait_until("the worker busy", Duration::from_secs(10), || {
        metric(&admin, "ferricorn_requests_in_flight") == 1
    });
    let uploads: Vec<_> = (0..200)
        .map(|_| {
            let url = server.url("/slow-read?chunk=1048576&pause=0");
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .build()
                    .unwrap();
                c.post(url)
                    .body(vec![b'u'; 900 * 1024])
                    .send()
                    .map(|r| r.status())
            })
        })
        .collect();
    wait_until(
        "every upload read and queued",
        Duration::from_secs(60),
        || metric(&admin, "ferricorn_requests_queued") == 200,
    );
    let grown = peak_rss_kib(server.pid()) - before;
    eprintln!("200 queued 900 KiB bodies: master peak +{grown} KiB");
    assert!(grown < 64 * 1024, "the master's peak grew by {grown} KiB");
    let held = metric(&admin, "ferricorn_body_memory_bytes");
    assert!(held <= 16 * 1024 * 1024, "{held}");
    drop(server);
    let _ = blocker.join();
    for u in uploads {
        let _ = u.join();
    }
}

/// Opens `n` connections to `server`, each after one request answered (kept open).
fn answered_connections(server: &Server, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            read_one_response(&mut s);
            s
        })
        .collect()
}

/// What a keep-alive connection costs the master right after a request, while it
/// still holds its hyper connection: 36.4 KiB in this (debug) build before; 19.7
/// once each way of serving was boxed and a connection held hyper's HTTP/1 state
/// only; 14.1 with the request's future boxed too. hyper's own read and write
/// buffers are 16 KiB of what is left (in a release build).
#[test]
fn a_keep_alive_connection_between_requests_costs_the_master_little() {
    let server = misbehave(&["-w", "1", "--keep-alive", "300"]).start();
    // First connections set up per-thread state once; not what one connection costs.
    drop(answered_connections(&server, 50));
    let before = rss_kib(server.pid());
    let idle = answered_connections(&server, 500);
    let per = (rss_kib(server.pid()) - before) as f64 / 500.0;
    eprintln!("a keep-alive connection after its request: {per:.1} KiB");
    assert!(per < 17.0, "{per:.1} KiB per connection");
    drop(idle);
}

/// An idle keep-alive connection is parked after `PARK_AFTER` (0.5 s): hyper's
/// connection and buffers are freed and the stream waits with the guard alone, as
/// nginx's keep-alive state does. Opened in batches, each parked before the next,
/// so the figure is what a parked connection keeps, not hyper's passing buffers.
#[test]
fn an_idle_keep_alive_connection_is_parked_with_a_few_kib() {
    let admin = format!("127.0.0.1:{}", free_port());
    let server = misbehave(&["-w", "1", "--keep-alive", "300", "--admin-bind", &admin]).start();
    let parked = |n: u64| {
        wait_until("connections parked", Duration::from_secs(20), || {
            metric(&admin, "ferricorn_connections_parked") == n
        })
    };
    drop(answered_connections(&server, 50));
    parked(0);
    let warm = answered_connections(&server, 50);
    parked(50);
    drop(warm);
    parked(0);
    let before = rss_kib(server.pid());
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.extend(answered_connections(&server, 50));
        parked(idle.len() as u64);
    }
    let per = (rss_kib(server.pid()) - before) as f64 / idle.len() as f64;
    eprintln!("a parked keep-alive connection: {per:.1} KiB");
    assert!(per < 8.0, "{per:.1} KiB per parked connection");
    drop(idle);
}
