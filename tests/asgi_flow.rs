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
    let server = test_app("asgi_flow:app", &["-k", "asgi", "-w", "1"]).start();
    let (status, pid) = get(&server.url("/pid"));
    assert_eq!(status, 200);
    (server, pid.trim().parse().unwrap())
}

/// With every upload waiting in the app unread: the worker's peak memory grows by
/// far less than the 50 MiB sent (watched for 2 s: without a window it passes 40
/// MiB at once); then the app reads them, and each arrives whole.
fn held_then_read(server: &Server, worker: i32, uploads: thread::JoinHandle<Vec<(u16, String)>>) {
    let base = rss_kib(worker);
    wait_until("every upload waiting in the app", Duration::from_secs(60), || {
        get(&server.url("/held")).1 == STREAMS.to_string()
    });
    let grew = |limit_kib: u64| peak_rss_kib(worker).saturating_sub(base) > limit_kib;
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        assert!(
            !grew(40 * 1024),
            "the worker buffered the bodies its app does not read: {} KiB more",
            peak_rss_kib(worker) - base
        );
        thread::sleep(Duration::from_millis(50));
    }
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
