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

/// The value of an unlabelled metric on the admin port.
fn metric(admin: &str, name: &str) -> u64 {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
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

/// What one idle HTTP/1 keep-alive connection costs the master, after a request:
/// 36.4 KiB in this (debug) build before; 19.7 once each way of serving was boxed
/// and a connection held hyper's HTTP/1 state only (not room for HTTP/2's too).
/// hyper's own read and write buffers are 16 KiB of what is left.
#[test]
fn an_idle_keep_alive_connection_costs_the_master_little() {
    use std::io::Write;
    let server = misbehave(&["-w", "1", "--keep-alive", "300"]).start();
    let request = b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n";
    let open = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(server.addr).unwrap();
                s.write_all(request).unwrap();
                read_one_response(&mut s);
                s
            })
            .collect()
    };
    // First connections set up per-thread state once; not what one connection costs.
    drop(open(50));
    let before = rss_kib(server.pid());
    let idle = open(500);
    let per = (rss_kib(server.pid()) - before) as f64 / 500.0;
    eprintln!("an idle keep-alive connection: {per:.1} KiB");
    assert!(per < 25.0, "{per:.1} KiB per idle connection");
    drop(idle);
}

/// Reads one HTTP/1 response with a Content-Length off `s`, leaving it open.
fn read_one_response(s: &mut std::net::TcpStream) {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .expect("a Content-Length");
        if body.len() >= len {
            return;
        }
    }
}
