//! WebSockets through ferricorn to a WSGI app that takes the socket, with real
//! clients (issue 26): the `websockets` library against the Flask-Sock echo of
//! tests/apps/ws_echo.py over HTTP/1.1 and TLS (text, binary, 16 MiB, fragments,
//! ping/pong, close codes); RFC 8441 over HTTP/2 with raw `h2` frames and `wsproto`,
//! over h2c (prior knowledge) and TLS with ALPN h2. Flask-SocketIO with
//! python-socketio's client is in tests/socketio.rs. The Python clients live in
//! tests/ws_clients and were first checked against gunicorn 27 gthread (the h2 one
//! against an RFC 8441 server).

mod common;

use common::*;
use std::time::Duration;

const CLIENT_DEADLINE: Duration = Duration::from_secs(300);

/// The echo app on one worker with room for the clients' few sockets at once.
fn echo_server(extra: &[&str]) -> Server {
    let mut args = vec!["-w", "1", "--threads", "8"];
    args.extend_from_slice(extra);
    test_app("ws_echo:app", &args).start()
}

#[test]
fn websockets_client_over_http1() {
    let server = echo_server(&[]);
    let out = run_client(
        &server,
        "echo_client.py",
        &[&format!("ws://{}", server.addr)],
        CLIENT_DEADLINE,
    );
    assert!(out.contains("all checks passed"), "{out}");
    // Ordinary requests still work beside the WebSockets.
    let page = client().get(server.url("/pid")).send().unwrap();
    assert_eq!(page.status(), 200);
}

#[test]
fn websockets_client_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = echo_server(&["--certfile", &cert, "--keyfile", &key]);
    let out = run_client(
        &server,
        "echo_client.py",
        &[
            &format!("wss://127.0.0.1:{}", server.addr.port()),
            "--cafile",
            &cert,
        ],
        CLIENT_DEADLINE,
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn rfc8441_over_h2c_prior_knowledge() {
    let server = echo_server(&[]);
    let port = server.addr.port().to_string();
    let out = run_client(
        &server,
        "h2_client.py",
        &["127.0.0.1", &port],
        CLIENT_DEADLINE,
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn rfc8441_over_tls_with_alpn_h2() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(tmp.path());
    let server = echo_server(&["--certfile", &cert, "--keyfile", &key]);
    let port = server.addr.port().to_string();
    let out = run_client(
        &server,
        "h2_client.py",
        &["127.0.0.1", &port, "--tls", &cert],
        CLIENT_DEADLINE,
    );
    assert!(out.contains("all checks passed"), "{out}");
}
