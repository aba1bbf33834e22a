//! Memory and time stay bounded for ASGI workers (issue 27), against the real binary
//! and tests/apps/asgi_flow.py: a request body the app does not read waits in the
//! front's spool, not in the worker (the body window: `Credit`), over HTTP/1 and
//! HTTP/2, and arrives whole once the app reads it.

mod common;

use common::*;
use std::thread;
use std::time::Duration;

const STREAMS: usize = 20;
/// 50 MiB in all.
const EACH: usize = 50 * 1024 * 1024 / STREAMS;

/// Distinct bytes for each stream (xorshift), and their length and sha256 as the
/// app answers them.
fn body(seed: u64) -> (Vec<u8>, String) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(EACH);
    while out.len() < EACH {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(EACH);
    let digest = ring::digest::digest(&ring::digest::SHA256, &out);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (out, format!("{EACH} {hex}"))
}

fn flow_server() -> (Server, i32) {
    let args = ["-k", "asgi", "-w", "1", "--log-level", "debug"];
    let server = test_app("asgi_flow:app", &args).start();
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    (server, pid.trim().parse().unwrap())
}

/// With every upload waiting in the app unread and every body's window full (the
/// front says so at debug: all the worker is sent of a body its app does not
/// read): the worker's peak memory grew by far less than the 50 MiB sent
/// (without a window it passes 40 MiB at once); then the app reads them, and each
/// arrives whole.
fn held_then_read(server: &Server, worker: i32, uploads: thread::JoinHandle<Vec<(u16, String)>>) {
    let base = rss_kib(worker);
    wait_until(
        "every upload waiting in the app",
        Duration::from_secs(60),
        || get(&server.url("/held")).1 == STREAMS.to_string(),
    );
    wait_until("every body's window full", Duration::from_secs(60), || {
        server.log().matches("body's window is full").count() >= STREAMS
    });
    let grew = peak_rss_kib(worker).saturating_sub(base);
    assert!(
        grew < 40 * 1024,
        "the worker buffered the bodies its app does not read: {grew} KiB more"
    );
    assert_eq!(get(&server.url("/go")).0, 200);
    let answers = uploads.join().unwrap();
    for (i, (status, answer)) in answers.into_iter().enumerate() {
        assert_eq!(status, 200, "stream {i}: {answer}");
        assert_eq!(answer, body(i as u64).1, "stream {i}");
    }
    let peak = peak_rss_kib(worker) - base;
    assert!(peak < 20 * 1024, "the worker's peak grew by {peak} KiB");
}

#[test]
fn a_body_the_app_does_not_read_waits_in_the_front_over_http1() {
    let (server, worker) = flow_server();
    let url = server.url("/hold");
    let uploads = thread::spawn(move || {
        let clients: Vec<_> = (0..STREAMS)
            .map(|i| {
                let url = url.clone();
                thread::spawn(move || {
                    let resp = client().post(&url).body(body(i as u64).0).send().unwrap();
                    (resp.status().as_u16(), resp.text().unwrap())
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    held_then_read(&server, worker, uploads);
}

#[test]
fn a_body_the_app_does_not_read_waits_in_the_front_over_http2() {
    let (server, worker) = flow_server();
    let addr = server.addr;
    let uploads = thread::spawn(move || {
        runtime().block_on(async move {
            let client = h2_client(addr).await;
            let streams: Vec<_> = (0..STREAMS)
                .map(|i| tokio::spawn(h2_upload(client.clone(), addr, i)))
                .collect();
            let mut out = Vec::new();
            for s in streams {
                out.push(s.await.unwrap());
            }
            out
        })
    });
    held_then_read(&server, worker, uploads);
}

/// One POST /hold on a shared HTTP/2 connection: its status and body.
async fn h2_upload(
    client: h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    i: usize,
) -> (u16, String) {
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post(format!("http://{addr}/hold"))
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from(body(i as u64).0), true)
        .unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// An SSE stream opened with a raw HTTP/1 request, its first event read.
fn open_sse(server: &Server, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: open") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{path}: closed before its first event");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{path}");
    s
}

/// Reads until the server ends the stream (EOF or reset); when that was.
fn until_end(mut s: std::net::TcpStream) -> std::time::Instant {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    std::time::Instant::now()
}

/// A server of asgi_flow.py with `--graceful-timeout 6` whose lifespan shutdown
/// writes to the returned file, and two open SSE streams: one waiting in
/// `receive()` for `http.disconnect`, one sending every 100 ms.
fn draining_server(
    dir: &std::path::Path,
) -> (Server, std::path::PathBuf, i32, Vec<std::net::TcpStream>) {
    let file = dir.join("shutdown");
    let server = test_app(
        "asgi_flow:app",
        &["-k", "asgi", "-w", "1", "--graceful-timeout", "6"],
    )
    .env("FLOW_SHUTDOWN_FILE", &file)
    .start();
    let pid = get(&server.url("/pid")).1.trim().parse().unwrap();
    let streams = vec![open_sse(&server, "/sse"), open_sse(&server, "/tick")];
    (server, file, pid, streams)
}

fn ended(streams: Vec<std::net::TcpStream>) -> Vec<thread::JoinHandle<std::time::Instant>> {
    streams
        .into_iter()
        .map(|s| thread::spawn(move || until_end(s)))
        .collect()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferricorn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The log of a drain that ended `worker`'s two open streams itself: both were
/// still open when it did, its app heard of it after, and the worker then
/// exited by itself (0), not killed at the drain's end.
fn drained_by_the_cut(log: &str, worker: i32) {
    let cut = log
        .find("drain: ending the ASGI worker's open streams")
        .unwrap_or_else(|| panic!("no cut in\n{log}"));
    let line = log[cut..].lines().next().unwrap();
    assert!(line.contains("streams=2"), "{line}");
    let heard = log.find("sse: http.disconnect").expect("the app heard it");
    assert!(
        heard > cut,
        "the app heard of a disconnect before the cut\n{log}"
    );
    let exited = format!("worker exited pid={worker} status=exit 0");
    assert!(log.contains(&exited), "{exited:?} not in\n{log}");
}

/// TERM with two endless SSE streams and `--graceful-timeout 6`: near the deadline
/// (6 s - 20%, `policy::drain_cut`) the streams end, the app sees
/// `http.disconnect`, the lifespan shutdown runs, and the worker and the master
/// exit 0, where the master used to wait 6 s and then kill the worker 5 s later,
/// its lifespan shutdown never run. Facts, not timings: both streams were still
/// open when the drain ended them, the app heard of it after, and the worker
/// exited by itself.
#[test]
fn term_ends_endless_asgi_streams_in_time_for_the_lifespan_shutdown() {
    let dir = temp_dir("flow-term");
    let (mut server, file, worker, streams) = draining_server(&dir);
    let readers = ended(streams);
    server.signal(libc_sig("TERM"));
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", server.log());
    for r in readers {
        r.join().unwrap();
    }
    drained_by_the_cut(&server.log(), worker);
    let shutdown = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(shutdown, format!("shutdown {worker}\n"), "{}", server.log());
    let log = server.log();
    for line in [
        "drain: ending the ASGI worker's open streams",
        "sse: http.disconnect",
        "ASGI lifespan shutdown done",
    ] {
        assert!(log.contains(line), "{line:?} not in\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// HUP: the old worker drains with two endless SSE streams; they end before its
/// `graceful_timeout`, and its lifespan shutdown runs (it used to drain for ever).
#[test]
fn hup_ends_the_old_asgi_workers_endless_streams_and_runs_its_lifespan_shutdown() {
    let dir = temp_dir("flow-hup");
    let (server, file, old, streams) = draining_server(&dir);
    let readers = ended(streams);
    server.signal(libc_sig("HUP"));
    let done = server.wait_for_log("reload complete", Duration::from_secs(30));
    let drained_from = std::time::Instant::now();
    for r in readers {
        let at = r.join().unwrap() - drained_from;
        assert!(
            at < Duration::from_secs(6),
            "a stream ended {at:?} after the reload ({done})"
        );
    }
    wait_until(
        "the old worker's lifespan shutdown",
        Duration::from_secs(6),
        || std::fs::read_to_string(&file).unwrap_or_default() == format!("shutdown {old}\n"),
    );
    let exit_line = |l: &str| {
        l.contains("worker exited")
            && l.contains(&format!("pid={old}"))
            && l.contains("status=exit 0")
    };
    wait_until("the old worker's exit 0", Duration::from_secs(5), || {
        server.log().lines().any(exit_line)
    });
    let log = server.log();
    assert!(log.contains("sse: http.disconnect"), "{log}");
    assert_ne!(
        get(&server.url("/pid")).1.trim(),
        old.to_string(),
        "a new worker serves"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request whose app never reads its upload (the body waits in the front for
/// credit) and runs past `--timeout`: 504 at the timeout, not once the worker
/// answers the cancel; the worker serves on.
#[test]
fn a_held_upload_past_its_timeout_is_answered_504_in_time() {
    let server = test_app("asgi_flow:app", &["-k", "asgi", "-w", "1", "-t", "2"]).start();
    let pid = get(&server.url("/pid")).1;
    let started = std::time::Instant::now();
    let resp = client()
        .post(server.url("/hold"))
        .body(body(1).0)
        .send()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status().as_u16(), 504);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The cancel reaches the app as http.disconnect, then as a cancel 1 s later.
    wait_until("its task ended", Duration::from_secs(10), || {
        get(&server.url("/held")).1 == "0"
    });
    assert_eq!(get(&server.url("/pid")).1, pid, "the same worker serves on");
}

/// The same TERM with the SSE streams on one HTTP/2 connection: the drain ends
/// them (reset), and the lifespan shutdown runs.
#[test]
fn term_ends_endless_asgi_streams_over_http2_too() {
    let dir = temp_dir("flow-term-h2");
    let file = dir.join("shutdown");
    let mut server = test_app(
        "asgi_flow:app",
        &["-k", "asgi", "-w", "1", "--graceful-timeout", "6"],
    )
    .env("FLOW_SHUTDOWN_FILE", &file)
    .start();
    let worker = get(&server.url("/pid")).1;
    let addr = server.addr;
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let streams = thread::spawn(move || {
        runtime().block_on(async move {
            let client = h2_client(addr).await;
            let mut bodies = Vec::new();
            for path in ["/sse", "/tick"] {
                let req = http::Request::get(format!("http://{addr}{path}"))
                    .body(())
                    .unwrap();
                let (resp, _) = client.clone().send_request(req, true).unwrap();
                let mut body = resp.await.unwrap().into_body();
                let first = body.data().await.unwrap().unwrap();
                assert!(first.starts_with(b"data: open"), "{path}");
                bodies.push(body);
            }
            opened_tx.send(()).unwrap();
            for mut body in bodies {
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
            }
            std::time::Instant::now()
        })
    });
    opened_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    server.signal(libc_sig("TERM"));
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", server.log());
    streams.join().unwrap();
    drained_by_the_cut(&server.log(), worker.trim().parse().unwrap());
    let shutdown = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        shutdown,
        format!("shutdown {}\n", worker.trim()),
        "{}",
        server.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
