//! The WebSocket tunnel (issue 26) against the real binary and tests/apps/ws_raw.py,
//! RFC 6455 frames written by hand: over HTTP/1.1 (the Flask-Sock echo, raw bytes
//! after the head never read as HTTP, the environ the app sees, the access-log line
//! at close), over TLS, and over HTTP/2 with extended CONNECT (RFC 8441: the
//! settings, 101 becoming 200, RST_STREAM, the refusals), where a WebSocket keeps
//! its connection from `keep_alive`. The client-library suites (websockets, wsproto,
//! Chromium, Socket.IO, Autobahn) live in tests/websocket_clients.rs and beside it.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn flask_sock_echo_and_raw_socket_over_http1() {
    let (server, admin) = ws_server(&[]);
    // Flask-Sock: a text and a binary message, then a close.
    let (mut s, h) = ws_open_head(server.addr, "/echo");
    assert!(
        h.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            WS_ACCEPT.to_ascii_lowercase()
        )),
        "{h}"
    );
    assert!(h.to_ascii_lowercase().contains("upgrade: websocket"), "{h}");
    assert!(!h.to_ascii_lowercase().contains("content-length"), "{h}");
    s.write_all(&ws_frame(1, b"hello")).unwrap();
    assert_eq!(ws_recv(&mut s).expect("a frame"), (1, b"hello".to_vec()));
    let big = vec![7u8; 200_000];
    s.write_all(&ws_frame(2, &big)).unwrap();
    assert_eq!(ws_recv(&mut s).expect("a frame"), (2, big));
    assert_eq!(metric(&admin, "ferricorn_websockets_open"), 1);
    s.write_all(&ws_frame(8, &1000u16.to_be_bytes())).unwrap();
    // The close is answered, then the connection ends. (simple-websocket wakes the
    // handler before it sends its close reply, so the app may return and its socket
    // be closed first, under gunicorn as here: the reply is not always there.)
    let rest = read_to_close(&mut s, Duration::from_secs(10));
    let close_reply = String::from_utf8_lossy(&[0x88, 2, 0x03, 0xe8]).into_owned();
    assert!(rest.is_empty() || rest == close_reply, "{rest:?}");
    wait_websockets_closed(&admin);
    // The access-log line at close: 101, bytes each way.
    let line = server.wait_for_log("\"status\":101", Duration::from_secs(10));
    assert!(line.contains("\"path\":\"/echo\""), "{line}");
    let field = |name: &str| -> u64 {
        let at = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        line[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        field("bytes") > 200_000 && field("bytes_in") > 200_000,
        "{line}"
    );

    // The raw route: the bytes the app wrote with its head come first; bytes sent
    // in the same packet as the handshake are the tunnel's, never a request.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut packet = handshake("/raw").into_bytes();
    packet.extend_from_slice(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n");
    s.write_all(&packet).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    assert_eq!(read_n(&mut s, 2), b"hi");
    let echoed = read_n(&mut s, "GET /pid HTTP/1.1\r\nHost: a\r\n\r\n".len());
    assert_eq!(
        echoed, b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n",
        "echoed by the app, not answered"
    );
    // The client's end passed on: the app's echo ends, and so does the connection.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut s, Duration::from_secs(10)), "");

    // What the app sees: the handshake as gunicorn gives it.
    let (mut s, h) = ws_open_head(server.addr, "/report?x=1");
    assert!(
        h.contains("Sec-WebSocket-Protocol: chat") || h.contains("sec-websocket-protocol: chat"),
        "{h}"
    );
    let mut report = Vec::new();
    while !report.ends_with(b"\n") {
        report.extend(read_n(&mut s, 1));
    }
    let report = String::from_utf8(report).unwrap();
    for want in [
        "REQUEST_METHOD=GET",
        "PATH_INFO=/report",
        "QUERY_STRING=x=1",
        "HTTP_UPGRADE=websocket",
        "HTTP_CONNECTION=Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION=13",
        "wsgi.url_scheme=http",
        "SERVER_PROTOCOL=HTTP/1.1",
    ] {
        assert!(report.contains(want), "{want} in {report}");
    }
}

#[test]
fn websocket_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf_certificate(dir.path());
    let (server, _admin) = ws_server(&["--certfile", &cert, "--keyfile", &key]);
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut packet = handshake_head("GET /report HTTP/1.1", HANDSHAKE).into_bytes();
    packet.extend_from_slice(&ws_frame(1, b"early"));
    s.write_all(&packet).unwrap();
    let h = read_head(&mut s);
    assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
    let mut report = Vec::new();
    while !report.ends_with(b"\n") {
        report.extend(read_n(&mut s, 1));
    }
    assert!(
        String::from_utf8_lossy(&report).contains("wsgi.url_scheme=https"),
        "{report:?}"
    );
    // The raw route echoes bytes: the masked frame sent with the handshake comes back.
    assert_eq!(
        read_n(&mut s, ws_frame(1, b"early").len()),
        ws_frame(1, b"early")
    );
    let big = vec![b'x'; 100_000];
    s.write_all(&big).unwrap();
    assert_eq!(read_n(&mut s, big.len()), big);
}

/// RFC 8441 over h2c with the `h2` crate: the server says it speaks extended
/// CONNECT, the app sees the GET handshake, answers 101, the client gets 200.
#[test]
fn extended_connect_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let mount = static_mount(dir.path());
    let (server, admin) = ws_server(&["--static", &mount]);
    let rt = runtime();
    rt.block_on(async {
        let mut client = h2_client(server.addr).await;
        // A first request: the server's SETTINGS are in by its answer.
        let get = http::Request::get(format!("http://{}/pid", server.addr))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(get, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        assert!(
            client.is_extended_connect_protocol_enabled(),
            "SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );

        let connect = |path: &str, protocol: &'static str, version: &str| {
            ws_connect_request(server.addr, path, protocol, version)
        };
        let mut client = client.ready().await.unwrap();
        let (resp, mut send) = client
            .send_request(connect("/report", "websocket", "13"), false)
            .unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200, "200, not 101");
        for gone in ["connection", "upgrade", "sec-websocket-accept"] {
            assert!(
                !resp.headers().contains_key(gone),
                "{gone}: {:?}",
                resp.headers()
            );
        }
        assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            let chunk = body.data().await.unwrap().unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        let report = String::from_utf8_lossy(&got).into_owned();
        assert!(
            report.contains("REQUEST_METHOD=GET") && report.contains("HTTP_UPGRADE=websocket"),
            "{report}"
        );
        assert!(report.contains("PATH_INFO=/report"), "{report}");
        let msg = ws_frame(2, &[9u8; 50_000]);
        send.send_data(bytes::Bytes::from(msg.clone()), false)
            .unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < msg.len() {
            let chunk = body.data().await.unwrap().unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            echoed.extend_from_slice(&chunk);
        }
        assert_eq!(echoed, msg);
        assert_eq!(metric_off_runtime(&admin, "ferricorn_websockets_open"), 1);
        // RST_STREAM mid-tunnel: the tunnel ends and the app's thread is freed.
        send.send_reset(h2::Reason::CANCEL);
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric_off_runtime(&admin, "ferricorn_websockets_open") != 0 {
            assert!(
                Instant::now() < deadline,
                "tunnel still open after RST_STREAM"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        // Refusals: another version (426), another :protocol, a static path is
        // handled below with HTTP/1; a CONNECT to the app needs no worker to refuse.
        let mut client = client.ready().await.unwrap();
        let (resp, _) = client
            .send_request(connect("/raw", "websocket", "8"), true)
            .unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 426);
        assert_eq!(resp.headers()["sec-websocket-version"], "13");
        let mut client = client.ready().await.unwrap();
        let (resp, _) = client
            .send_request(connect("/raw", "connect-udp", "13"), true)
            .unwrap();
        assert_eq!(resp.await.unwrap().status(), 400);
        // A static mount's path: refused as over HTTP/1.
        let mut client = client.ready().await.unwrap();
        let (resp, _) = client
            .send_request(connect("/static/f.txt", "websocket", "13"), true)
            .unwrap();
        assert_eq!(resp.await.unwrap().status(), 400);
        // `:protocol` on a GET is malformed (RFC 8441 §4): h2 resets the stream, or
        // the front refuses it; the app never sees it.
        let mut on_get = connect("/raw", "websocket", "13");
        *on_get.method_mut() = http::Method::GET;
        let mut client = client.ready().await.unwrap();
        if let Ok((resp, _)) = client.send_request(on_get, true) {
            if let Ok(resp) = resp.await {
                assert_eq!(resp.status(), 400);
            }
        }
        // A body declared: no handshake has one.
        let mut with_length = connect("/raw", "websocket", "13");
        with_length
            .headers_mut()
            .insert("content-length", "3".parse().unwrap());
        let mut client = client.ready().await.unwrap();
        let (resp, mut send) = client.send_request(with_length, false).unwrap();
        let _ = send.send_data(bytes::Bytes::from_static(b"abc"), true);
        // 400 from the front, or the stream (or connection) reset by h2: never the app's 200.
        if let Ok(resp) = resp.await {
            assert_eq!(resp.status(), 400);
        }
    });
    assert!(refused_total(&admin, "handshake") >= 2);
    assert_eq!(refused_total(&admin, "static"), 1);
}

/// An HTTP/2 connection carrying a WebSocket is not idle: `keep_alive` (1 s here)
/// must not end it with GOAWAY and drop it under the tunnel.
#[test]
fn an_http2_websocket_keeps_its_connection() {
    let (server, _admin) = ws_server(&["--keep-alive", "1"]);
    let rt = runtime();
    rt.block_on(async {
        let (mut send, mut body) = h2_websocket(server.addr, "/raw").await;
        assert_eq!(&body.data().await.unwrap().unwrap()[..], b"hi");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            send.send_data(bytes::Bytes::from_static(b"tick"), false)
                .unwrap();
            let chunk = body
                .data()
                .await
                .expect("stream ended")
                .expect("stream reset");
            let _ = body.flow_control().release_capacity(chunk.len());
            assert_eq!(&chunk[..], b"tick");
        }
    });
}
