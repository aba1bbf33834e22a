//! A client that leaves while its HTTP/1 response is pending and idle (issue 27): the
//! front sees its close (FIN, reset, or over TLS close_notify then FIN) without
//! waiting for the next write, and ends the request, as nginx does
//! (`proxy_ignore_client_abort off`). A Flask generator gets GeneratorExit, Django's
//! event stream `http.disconnect`; four vanished event streams no longer hold the
//! places of a worker with `--worker-connections 4`, even when it pipelined a byte
//! before leaving. A client that half-closes after its request is one that left, as
//! for nginx (measured: README, "client close").

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// On main the front noticed only at its next write, which an idle stream never does.
const NOTICED_WITHIN: Duration = Duration::from_secs(10);

fn flask(extra: &[&str]) -> Server {
    let venv = venv();
    let apps = apps_dir();
    let mut args = vec![
        "--chdir",
        apps.to_str().unwrap(),
        "--venv",
        venv.to_str().unwrap(),
        "-w",
        "1",
        "--threads",
        "4",
    ];
    args.extend_from_slice(extra);
    args.push("flask_app:app");
    Server::start(args)
}

fn django(site: &DjangoSite, extra: &[&str]) -> Server {
    let mut args = vec!["-k", "asgi", "-w", "1"];
    args.extend_from_slice(extra);
    site.launch(&args, "djsite.asgi:application").start()
}

/// The state `path` reports (`{"state": ...}`), or `None` when it is not answered 200.
fn state(server: &Server, path: &str) -> Option<String> {
    let r = client().get(server.url(path)).send().ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: serde_json::Value = r.json().ok()?;
    v["state"].as_str().map(str::to_string)
}

fn wait_for_state(server: &Server, path: &str, want: &str) {
    wait_until(&format!("{path} to say {want}"), NOTICED_WITHIN, || {
        state(server, path).as_deref() == Some(want)
    });
}

fn request(server: &Server, path: &str, version: &str) -> String {
    format!(
        "GET {path} {version}\r\nHost: 127.0.0.1:{}\r\n\r\n",
        server.addr.port()
    )
}

/// Opens `path` over plain TCP and reads until `until` arrived.
fn open_tcp(server: &Server, path: &str, until: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request(server, path, "HTTP/1.1").as_bytes())
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(until) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {until:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

/// How the TLS client leaves.
#[derive(Clone, Copy)]
enum TlsLeave {
    /// close_notify, then FIN.
    CloseNotify,
    /// FIN without close_notify.
    Fin,
}

/// A TLS connection (ALPN http/1.1) to `server`, trusting `cert`.
async fn tls_connect(
    server: &Server,
    cert: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Opens `path` over TLS (HTTP/1.1), reads until `until`, then leaves as `how`.
fn tls_open_and_leave(server: &Server, cert: &str, path: &str, until: &str, how: TlsLeave) {
    tls_open_pipeline_and_leave(server, cert, path, until, b"", how)
}

/// `tls_open_and_leave`, writing `pipelined` (part of a next request) before leaving.
fn tls_open_pipeline_and_leave(
    server: &Server,
    cert: &str,
    path: &str,
    until: &str,
    pipelined: &[u8],
    how: TlsLeave,
) {
    let req = request(server, path, "HTTP/1.1");
    runtime().block_on(async {
        let mut tls = tls_connect(server, cert).await;
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(until) {
            let read = tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf));
            let n = read.await.unwrap().unwrap();
            assert!(n > 0, "closed before {until:?}");
            seen.extend_from_slice(&buf[..n]);
        }
        if !pipelined.is_empty() {
            tls.write_all(pipelined).await.unwrap();
            tls.flush().await.unwrap();
        }
        match how {
            // tokio-rustls sends close_notify, then shuts the TCP write side.
            TlsLeave::CloseNotify => tls.shutdown().await.unwrap(),
            TlsLeave::Fin => tls.get_mut().0.shutdown().await.unwrap(),
        }
        // The socket stays open, half-closed, until the front closes it.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(NOTICED_WITHIN, tls.read_to_end(&mut rest));
        let _ = read.await;
    });
}

/// Waits until `path`, asked over HTTPS, says `"state": want`.
fn wait_for_state_tls(server: &Server, cert: &str, path: &str, want: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let needle = format!("\"state\": \"{want}\"");
    let flask_needle = format!("\"state\":\"{want}\"");
    wait_until(&format!("{path} to say {want}"), NOTICED_WITHIN, || {
        runtime().block_on(async {
            let mut tls = tls_connect(server, cert).await;
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            let out = String::from_utf8_lossy(&out);
            out.contains(&needle) || out.contains(&flask_needle)
        })
    });
}

#[test]
fn a_flask_stream_whose_client_leaves_is_closed() {
    let server = flask(&[]);
    let s = open_tcp(&server, "/idle-stream/tcp/", "first\n");
    drop(s);
    wait_for_state(&server, "/idle-stream/tcp/state/", "closed");
    // The worker's thread is free again, and the front serves on.
    let (status, _) = h1_request(&server, "GET", "/", b"");
    assert_eq!(status, 200);
}

/// A client that half-closes (`printf ... | nc -N`) while its stream is pending is
/// treated as gone, as nginx does without `proxy_ignore_client_abort`.
#[test]
fn a_half_close_with_a_response_pending_ends_it() {
    let server = flask(&[]);
    let mut s = open_tcp(&server, "/idle-stream/half/", "first\n");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    wait_for_state(&server, "/idle-stream/half/state/", "closed");
    // The front closed the connection (after what it had written).
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

#[test]
fn a_flask_stream_whose_tls_client_leaves_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = flask(&["--certfile", &cert, "--keyfile", &key]);
    for (key, how) in [("notify", TlsLeave::CloseNotify), ("fin", TlsLeave::Fin)] {
        let path = format!("/idle-stream/{key}/");
        tls_open_and_leave(&server, &cert, &path, "first\n", how);
        wait_for_state_tls(&server, &cert, &format!("{path}state/"), "closed");
    }
}

/// Django's event stream over TLS: the client's close_notify (then FIN), or a bare
/// FIN, is `http.disconnect`.
#[test]
fn a_tls_client_leaving_mid_stream_is_a_disconnect_for_django() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let site = DjangoSite::prepare();
    let server = django(&site, &["--certfile", &cert, "--keyfile", &key]);
    for (key, how) in [
        ("tlsnotify", TlsLeave::CloseNotify),
        ("tlsfin", TlsLeave::Fin),
    ] {
        let path = format!("/sse/{key}/");
        tls_open_and_leave(&server, &cert, &path, "data: 0\n\n", how);
        wait_for_state_tls(&server, &cert, &format!("{path}state/"), "disconnected");
    }
}

/// The denial of service this closes: `--worker-connections 4 -t 0`, four event
/// streams whose clients vanished held all four places of the one worker for good,
/// and the next request got 503.
#[test]
fn vanished_event_streams_free_their_workers_places() {
    four_streams_vanish_and_free_their_places("dos", b"");
}

/// `--worker-connections 4 -t 0`: four event streams whose clients each write
/// `parting` after the first event and vanish; each must be seen to leave
/// (the app's state says so), and the next request is then served, not 503.
fn four_streams_vanish_and_free_their_places(name: &str, parting: &[u8]) {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("q.toml");
    std::fs::write(&conf, "[workers]\nqueue_timeout = 1\n").unwrap();
    let site = DjangoSite::prepare();
    let args = [
        "--worker-connections",
        "4",
        "-t",
        "0",
        "-c",
        conf.to_str().unwrap(),
    ];
    let server = django(&site, &args);
    for i in 0..4 {
        let mut s = open_tcp(&server, &format!("/sse/{name}{i}/"), "data: 0\n\n");
        s.write_all(parting).unwrap();
        drop(s);
    }
    for i in 0..4 {
        wait_for_state(&server, &format!("/sse/{name}{i}/state/"), "disconnected");
    }
    let (status, body) = h1_request(&server, "GET", "/async/json/", b"");
    assert_eq!(status, 200, "{body}");
}

// ---- attack3: a last attacker's probes (branch i27-attack3), kept as the rules ----
// A half-close with an answer owed is a client that left, as for nginx: measured on
// nginx 1.22 (default proxy settings) in front of gunicorn, a request followed at once
// by `shutdown(SHUT_WR)` gets 499 and nothing, 20/20, whether the upstream answers at
// once, after 1 s, or the request is an HTTP/1.0 POST (README, "client close").

/// Reads until `needle` arrived (what was read is dropped).
fn read_until(s: &mut TcpStream, needle: &str) {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

fn read_all_tcp(s: &mut TcpStream) -> String {
    common::read_to_close(s, Duration::from_secs(15))
}

/// Sends `bytes` and the FIN in one segment (MSG_MORE, then `shutdown(SHUT_WR)`), so
/// the front sees the FIN with the request, before any app could answer.
fn send_then_half_close(server: &Server, bytes: &[u8]) -> TcpStream {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let s = TcpStream::connect(server.addr).unwrap();
    let more = MsgFlags::from_bits_retain(libc::MSG_MORE);
    let mut sent = 0;
    while sent < bytes.len() {
        sent += send(s.as_raw_fd(), &bytes[sent..], more).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s
}

/// `printf 'GET / ...' | nc -N`: a complete request, then FIN. The answer is owed
/// when the FIN is seen: the client left, and gets nothing, as nginx answers it (499,
/// nothing written); the front closes the connection and serves on.
#[test]
fn attack3_half_close_after_a_short_request_is_a_client_that_left() {
    let server = flask(&[]);
    for _ in 0..20 {
        let mut s = send_then_half_close(&server, request(&server, "/", "HTTP/1.1").as_bytes());
        let out = read_all_tcp(&mut s);
        assert_eq!(out, "", "nginx writes nothing here either");
    }
    let (status, _) = h1_request(&server, "GET", "/", b"");
    assert_eq!(status, 200);
}

/// The same with a POST body (HTTP/1.0, as old clients do): nginx 499s it too.
#[test]
fn attack3_half_close_after_a_post_http10_is_a_client_that_left() {
    let server = flask(&[]);
    let req = "POST /admin/login/ HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    for _ in 0..20 {
        let mut s = send_then_half_close(&server, req.as_bytes());
        let out = read_all_tcp(&mut s);
        assert_eq!(out, "", "nginx writes nothing here either");
    }
    let (status, _) = h1_request(&server, "GET", "/", b"");
    assert_eq!(status, 200);
}

/// Over TLS: the request, then close_notify + FIN (or a bare FIN). The FIN may come
/// before or after a fast answer (tokio-rustls cannot send both in one segment), so
/// only the end is checked: the front closes the connection whatever the order, and
/// the client gets either nothing or the whole answer. (An owed answer's half-close
/// over TLS: `a_flask_stream_whose_tls_client_leaves_is_closed`.)
#[test]
fn attack3_tls_half_close_after_a_short_request_ends_the_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = flask(&["--certfile", &cert, "--keyfile", &key]);
    let req = request(&server, "/", "HTTP/1.1");
    for how in [TlsLeave::Fin, TlsLeave::CloseNotify] {
        for _ in 0..10 {
            let out = runtime().block_on(async {
                let mut tls = tls_connect(&server, &cert).await;
                tls.write_all(req.as_bytes()).await.unwrap();
                match how {
                    TlsLeave::CloseNotify => tls.shutdown().await.unwrap(),
                    TlsLeave::Fin => tls.get_mut().0.shutdown().await.unwrap(),
                }
                let mut out = Vec::new();
                let r = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut out));
                assert!(r.await.is_ok(), "the front must close the connection");
                String::from_utf8_lossy(&out).into_owned()
            });
            assert!(
                out.is_empty() || out.contains("hello from flask"),
                "{out:?}"
            );
        }
    }
}

/// Three requests pipelined behind a slow stream, the last one invalid: all
/// answered, in order, the 400 last.
#[test]
fn attack3_pipelined_behind_a_slow_stream_all_answered_in_order() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut req = request(&server, "/slow-stream/", "HTTP/1.1");
    req.push_str(&request(&server, "/", "HTTP/1.1"));
    req.push_str(&request(&server, "/stream", "HTTP/1.1"));
    req.push_str("GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let out = read_all_tcp(&mut s);
    let a = out.find("slow 4").expect(&out);
    let b = out.find("hello from flask").expect(&out);
    let c = out.find("chunk 4").expect(&out);
    let d = out.find("HTTP/1.1 400").expect(&out);
    assert!(a < b && b < c && c < d, "{out}");
}

/// A second request written one byte at a time while the first answer streams.
#[test]
fn attack3_one_byte_writes_while_a_stream_is_pending() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(request(&server, "/slow-stream/", "HTTP/1.1").as_bytes())
        .unwrap();
    let mut second = request(&server, "/", "HTTP/1.1");
    second = second.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    // One segment per byte, while the stream is pending (its first chunk came).
    s.set_nodelay(true).unwrap();
    read_until(&mut s, "slow 0");
    for b in second.as_bytes() {
        s.write_all(&[*b]).unwrap();
    }
    let out = read_all_tcp(&mut s);
    assert!(
        out.contains("slow 4") && out.contains("hello from flask"),
        "{out}"
    );
}

/// Pipelined requests, then FIN: the client left with answers owed, as for nginx
/// (ignore_client_abort off): nothing is answered, the front closes and serves on.
#[test]
fn attack3_pipelined_then_half_close() {
    let server = flask(&[]);
    let mut req = request(&server, "/", "HTTP/1.1");
    req.push_str(&request(&server, "/", "HTTP/1.1"));
    let mut s = send_then_half_close(&server, req.as_bytes());
    let out = read_all_tcp(&mut s);
    assert_eq!(out, "");
    let (status, _) = h1_request(&server, "GET", "/", b"");
    assert_eq!(status, 200);
}

/// Expect: 100-continue, the body sent only after the 100.
#[test]
fn attack3_expect_continue_late_body() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /admin/login/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.contains("100 Continue"), "{first}");
    s.write_all(b"hello").unwrap();
    let out = read_all_tcp(&mut s);
    assert!(out.contains("5 bytes"), "{first}{out}");
}

/// A second request's head sent partially behind a stream (the watch reads it), the
/// rest once the stream has gone on.
#[test]
fn attack3_partial_second_head_then_rest() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(request(&server, "/slow-stream/", "HTTP/1.1").as_bytes())
        .unwrap();
    read_until(&mut s, "slow 0");
    s.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    read_until(&mut s, "slow 2");
    s.write_all(b"st: x\r\nConnection: close\r\n\r\n").unwrap();
    let out = read_all_tcp(&mut s);
    assert!(
        out.contains("slow 4") && out.contains("hello from flask"),
        "{out}"
    );
}

/// 5000 pipelined requests in one burst: all answered.
#[test]
fn attack3_huge_pipelined_burst() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let one = request(&server, "/", "HTTP/1.1");
    let mut all = one.repeat(4999);
    all.push_str(&one.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"));
    let mut w = s.try_clone().unwrap();
    let t = std::thread::spawn(move || w.write_all(all.as_bytes()));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let _ = t.join();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("hello from flask").count(), 5000);
}

/// A WebSocket handshake pipelined behind a pending stream (Flask has no WebSocket
/// route: the answer is a 404 after the stream, and nothing hangs).
#[test]
fn attack3_websocket_handshake_pipelined_behind_stream() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut req = request(&server, "/slow-stream/", "HTTP/1.1");
    req.push_str("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let out = read_all_tcp(&mut s);
    let a = out.find("slow 4").expect(&out);
    let b = out[a..].find("HTTP/1.1 ").map(|i| i + a).expect(&out);
    assert!(b > a, "{out}");
}

/// HTTP/1.0 keep-alive, three requests pipelined (a streamed 1.0 answer ends by close, so none is streamed).
#[test]
fn attack3_http10_keep_alive_pipelined() {
    let server = flask(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut req = String::from("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    req.push_str("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    req.push_str("GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let out = read_all_tcp(&mut s);
    assert_eq!(out.matches("hello from flask").count(), 3, "{out}");
}

/// Over TLS: requests pipelined behind a slow stream, the last one invalid.
#[test]
fn attack3_tls_pipelined_behind_a_slow_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = flask(&["--certfile", &cert, "--keyfile", &key]);
    let mut req = request(&server, "/slow-stream/", "HTTP/1.1");
    req.push_str(&request(&server, "/", "HTTP/1.1"));
    req.push_str("GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n");
    let out = runtime().block_on(async {
        let mut tls = tls_connect(&server, &cert).await;
        for b in req.as_bytes().chunks(7) {
            tls.write_all(b).await.unwrap();
            tls.flush().await.unwrap();
        }
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut out));
        let _ = r.await;
        String::from_utf8_lossy(&out).into_owned()
    });
    let a = out.find("slow 4").expect(&out);
    let b = out.find("hello from flask").expect(&out);
    let d = out.find("HTTP/1.1 400").expect(&out);
    assert!(a < b && b < d, "{out}");
}

/// A POST pipelined behind a slow stream, its body sent late (after 1 s), with and
/// without Expect: 100-continue.
#[test]
fn attack3_pipelined_post_body_late_behind_stream() {
    let server = flask(&[]);
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let mut req = request(&server, "/slow-stream/", "HTTP/1.1");
        req.push_str(&format!(
            "POST /admin/login/ HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: 5\r\nConnection: close\r\n\r\n"
        ));
        s.write_all(req.as_bytes()).unwrap();
        read_until(&mut s, "slow 1");
        s.write_all(b"hello").unwrap();
        let out = read_all_tcp(&mut s);
        assert!(
            out.contains("slow 4") && out.contains("5 bytes"),
            "{expect:?}: {out}"
        );
    }
}

/// Control for the half-close probes: a FIN once the answer was written (nothing
/// owed) is an ordinary end; the front closes after it.
#[test]
fn attack3_half_close_after_the_answer_control() {
    let server = flask(&[]);
    for _ in 0..5 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(request(&server, "/", "HTTP/1.1").as_bytes())
            .unwrap();
        read_until(&mut s, "hello from flask");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        read_all_tcp(&mut s);
    }
}

/// A client that began its next request's head (then stopped) behind an idle stream,
/// and leaves: the guard is mid-head, so it stops watching; is the leave noticed?
#[test]
fn attack3_partial_next_head_then_leave_is_noticed() {
    let server = flask(&[]);
    let mut s = open_tcp(&server, "/idle-stream/partial/", "first\n");
    s.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    drop(s);
    wait_for_state(&server, "/idle-stream/partial/state/", "closed");
}

/// Over TLS, one byte, part of a head or 64 KiB pipelined, then close_notify or a
/// bare FIN.
#[test]
fn attack3_tls_pipelined_bytes_then_leave_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = flask(&["--certfile", &cert, "--keyfile", &key]);
    // Past the read-ahead too: the socket probe sees the FIN behind the records.
    let big = [
        &b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n"[..],
        &[b'x'; 65536],
    ]
    .concat();
    let cases = [
        ("gnotify", &b"G"[..], TlsLeave::CloseNotify),
        ("gfin", b"G", TlsLeave::Fin),
        ("headfin", b"GET / HTTP/1.1\r\nHo", TlsLeave::Fin),
        ("bignotify", &big, TlsLeave::CloseNotify),
        ("bigfin", &big, TlsLeave::Fin),
    ];
    for (key, pipelined, how) in cases {
        let path = format!("/idle-stream/{key}/");
        tls_open_pipeline_and_leave(&server, &cert, &path, "first\n", pipelined, how);
        wait_for_state_tls(&server, &cert, &format!("{path}state/"), "closed");
    }
}

/// Past the watch's read-ahead (8 KiB) the client's bytes wait in the kernel, and its
/// FIN behind them: the socket is asked (POLLRDHUP) instead. 16 KiB or 100 KiB
/// pipelined behind an idle stream (all taken by the front's kernel), then the client
/// leaves: noticed. (Before the probe, 16 KiB held the worker's place for good.)
#[test]
fn attack3_kilobytes_pipelined_then_leave_is_noticed() {
    let server = flask(&[]);
    for n in [16 * 1024, 100 * 1024] {
        let key = format!("big{n}");
        let mut s = open_tcp(&server, &format!("/idle-stream/{key}/"), "first\n");
        let head = format!("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[head.as_bytes(), &vec![b'x'; n]].concat())
            .unwrap();
        drop(s);
        wait_for_state(&server, &format!("/idle-stream/{key}/state/"), "closed");
    }
}

/// The same with a pipelined complete request (the guard holds it ready for hyper):
/// the leave after it.
#[test]
fn attack3_complete_next_request_then_leave_is_noticed() {
    let server = flask(&[]);
    let mut s = open_tcp(&server, "/idle-stream/full/", "first\n");
    s.write_all(request(&server, "/", "HTTP/1.1").as_bytes())
        .unwrap();
    drop(s);
    wait_for_state(&server, "/idle-stream/full/state/", "closed");
}

/// The denial of service `vanished_event_streams_free_their_workers_places` closes,
/// reopened by one pipelined byte: each client writes "G" after its stream's first
/// event, then vanishes. The guard was then mid-head and the watch stopped, so the four
/// places stayed held (503); now the watch reads on and sees each client leave.
#[test]
fn attack3_one_pipelined_byte_reopens_the_vanished_stream_dos() {
    four_streams_vanish_and_free_their_places("g", b"G");
}
