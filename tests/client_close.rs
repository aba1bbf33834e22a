//! A client that leaves while its HTTP/1 response is pending and idle (issue 27): the
//! front sees its close (FIN, reset, or over TLS close_notify then FIN) without
//! waiting for the next write, and ends the request, as nginx does
//! (`proxy_ignore_client_abort off`). A Flask generator gets GeneratorExit, Django's
//! event stream `http.disconnect`; four vanished event streams no longer hold the
//! places of a worker with `--worker-connections 4`. A client that half-closes after
//! its request is one that left, as for nginx.

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
        let s = open_tcp(&server, &format!("/sse/dos{i}/"), "data: 0\n\n");
        drop(s);
    }
    for i in 0..4 {
        wait_for_state(&server, &format!("/sse/dos{i}/state/"), "disconnected");
    }
    let (status, body) = h1_request(&server, "GET", "/async/json/", b"");
    assert_eq!(status, 200, "{body}");
}
