//! WebSockets at the edge (issue 26): the handshake over HTTP/1.1 (plain and TLS)
//! and HTTP/2 (RFC 8441) against the real binary and tests/apps/ws_app.py, which
//! takes `environ["gunicorn.socket"]` as gunicorn apps do. Refusals before Python
//! (400, 426, a static mount, 503 past `websocket_max` and while draining), bytes
//! after a handshake never read as HTTP, what an app may answer on its socket, the
//! idle timeout, TERM with a WebSocket open, the worker timeout not applied, the
//! metrics and the access-log line at close. The client-library suites (websockets,
//! wsproto, Chromium, Socket.IO, Autobahn) live elsewhere; these send RFC 6455
//! frames by hand.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// ws_app with an admin port (metrics) and the access log as JSON on stdout.
fn ws_server(extra: &[&str]) -> (Server, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "-w",
        "1",
        "--threads",
        "4",
        "--admin-bind",
        &admin,
        "--access-logfile",
        "-",
        "--access-log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    (test_app("ws_app:app", &args).start(), admin)
}

/// A handshake head for `path` with `fields` (`Host` first, then these, in order).
fn head(method_path_version: &str, fields: &[&str]) -> String {
    let mut h = format!("{method_path_version}\r\nHost: a\r\n");
    for f in fields {
        h.push_str(f);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

const GOOD: &[&str] = &[
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

fn good(path: &str) -> String {
    head(&format!("GET {path} HTTP/1.1"), GOOD)
}

/// Reads an HTTP head byte by byte (nothing past it is consumed).
fn read_head(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out).unwrap();
    out
}

/// Everything until the server closes (within `within`, else a failure).
fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => panic!(
            "not closed within {within:?} ({e}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// A client frame (FIN, masked as RFC 6455 §5.3 requires).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A server frame: its opcode and payload (unmasked).
fn read_frame(s: &mut impl Read) -> (u8, Vec<u8>) {
    let h = read_n(s, 2);
    let len = match h[1] & 0x7f {
        126 => u16::from_be_bytes(read_n(s, 2).try_into().unwrap()) as usize,
        127 => u64::from_be_bytes(read_n(s, 8).try_into().unwrap()) as usize,
        n => n as usize,
    };
    assert_eq!(h[1] & 0x80, 0, "a server frame is never masked");
    (h[0] & 0x0f, read_n(s, len))
}

/// Opens a WebSocket on `path`: the stream after the 101 head, and the head.
fn open(server: &Server, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(good(path).as_bytes()).unwrap();
    let h = read_head(&mut s);
    assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
    (s, h)
}

/// `metric`, from inside an async test (its blocking client has a runtime of its own).
fn metric_off_runtime(admin: &str, name: &str) -> u64 {
    let (admin, name) = (admin.to_string(), name.to_string());
    std::thread::spawn(move || metric(&admin, &name))
        .join()
        .unwrap()
}

fn refused_total(admin: &str, reason: &str) -> u64 {
    metric(
        admin,
        &format!("ferricorn_websocket_upgrades_refused_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn flask_sock_echo_and_raw_socket_over_http1() {
    let (server, admin) = ws_server(&[]);
    // Flask-Sock: a text and a binary message, then a close.
    let (mut s, h) = open(&server, "/echo");
    assert!(
        h.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            ACCEPT.to_ascii_lowercase()
        )),
        "{h}"
    );
    assert!(h.to_ascii_lowercase().contains("upgrade: websocket"), "{h}");
    assert!(!h.to_ascii_lowercase().contains("content-length"), "{h}");
    s.write_all(&frame(1, b"hello")).unwrap();
    assert_eq!(read_frame(&mut s), (1, b"hello".to_vec()));
    let big = vec![7u8; 200_000];
    s.write_all(&frame(2, &big)).unwrap();
    assert_eq!(read_frame(&mut s), (2, big));
    assert_eq!(metric(&admin, "ferricorn_websockets_open"), 1);
    s.write_all(&frame(8, &1000u16.to_be_bytes())).unwrap();
    // The close is answered, then the connection ends. (simple-websocket wakes the
    // handler before it sends its close reply, so the app may return and its socket
    // be closed first, under gunicorn as here: the reply is not always there.)
    let rest = read_to_close(&mut s, Duration::from_secs(10));
    let close_reply = String::from_utf8_lossy(&[0x88, 2, 0x03, 0xe8]).into_owned();
    assert!(rest.is_empty() || rest == close_reply, "{rest:?}");
    poll_metric(
        &admin,
        "ferricorn_websockets_open",
        Duration::from_secs(10),
        |n| n == 0,
    )
    .unwrap();
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
    let mut packet = good("/raw").into_bytes();
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
    let (mut s, h) = open(&server, "/report?x=1");
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
fn handshake_spellings_that_are_one_handshake_open_it() {
    let (server, _admin) = ws_server(&[]);
    for fields in [
        &[
            "Upgrade: WebSocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ][..],
        &[
            "upgrade: websocket, h2c",
            "connection: upgrade",
            "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version: 13",
        ],
        &[
            "Upgrade: h2c",
            "Upgrade: websocket",
            "Connection: keep-alive",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
        &[
            "Upgrade:   websocket  ",
            "Connection:\tUpgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
    ] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(head("GET /raw HTTP/1.1", fields).as_bytes())
            .unwrap();
        let h = read_head(&mut s);
        assert!(h.starts_with("HTTP/1.1 101 "), "{fields:?}: {h}");
        assert_eq!(read_n(&mut s, 2), b"hi");
    }
    // A request, then a handshake, in one packet: the first answered, then the tunnel.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET /pid HTTP/1.1\r\nHost: a\r\n\r\n{}", good("/raw")).as_bytes())
        .unwrap();
    let first = read_head(&mut s);
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    // Its chunked body, to the last chunk.
    let mut body = Vec::new();
    while !body.ends_with(b"\r\n0\r\n\r\n") {
        body.extend(read_n(&mut s, 1));
    }
    let second = read_head(&mut s);
    assert!(second.starts_with("HTTP/1.1 101 "), "{second}");
    assert_eq!(read_n(&mut s, 2), b"hi");
    s.write_all(b"after").unwrap();
    assert_eq!(read_n(&mut s, 5), b"after");
    // `Connection: close, Upgrade` still names upgrade.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        head(
            "GET /raw HTTP/1.1",
            &[GOOD[0], "Connection: close, Upgrade", GOOD[2], GOOD[3]],
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    assert_eq!(read_n(&mut s, 2), b"hi");
    s.write_all(b"more").unwrap();
    assert_eq!(read_n(&mut s, 4), b"more");
    // Absolute-form names the same resource.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head(&format!("GET http://{}/raw HTTP/1.1", server.addr), GOOD).as_bytes())
        .unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
}

#[test]
fn malformed_handshakes_are_refused_before_python_and_end_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "file").unwrap();
    let mount = format!("/static={}", dir.path().display());
    let (server, admin) = ws_server(&["--static", &mount]);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let cases: Vec<(String, &str)> = vec![
        (
            head(
                "POST /raw HTTP/1.1",
                &[GOOD[0], GOOD[1], key, GOOD[3], "Content-Length: 3"],
            )
            .replace("\r\n\r\n", "\r\n\r\nabc"),
            "400",
        ),
        (head("GET /raw HTTP/1.0", GOOD), "400"),
        (
            head(
                "GET /raw HTTP/1.1",
                &[GOOD[0], "Connection: keep-alive", key, GOOD[3]],
            ),
            "400",
        ),
        (
            head(
                "GET /raw HTTP/1.1",
                &[GOOD[0], GOOD[1], key, GOOD[3], "Content-Length: 2"],
            )
            .replace("\r\n\r\n", "\r\n\r\nab"),
            "400",
        ),
        (
            head(
                "GET /raw HTTP/1.1",
                &[GOOD[0], GOOD[1], key, GOOD[3], "Transfer-Encoding: chunked"],
            )
            .replace("\r\n\r\n", "\r\n\r\n0\r\n\r\n"),
            "400",
        ),
        (
            head("GET /raw HTTP/1.1", &[GOOD[0], GOOD[1], GOOD[3]]),
            "400",
        ),
        (
            head(
                "GET /raw HTTP/1.1",
                &[GOOD[0], GOOD[1], "Sec-WebSocket-Key: c2hvcnQ=", GOOD[3]],
            ),
            "400",
        ),
        (
            head("GET /raw HTTP/1.1", &[GOOD[0], GOOD[1], key, key, GOOD[3]]),
            "400",
        ),
        (head("GET /raw HTTP/1.1", &[GOOD[0], GOOD[1], key]), "400"),
        (
            head(
                "GET /raw HTTP/1.1",
                &[GOOD[0], GOOD[1], key, "Sec-WebSocket-Version: 8"],
            ),
            "426",
        ),
        (good("/static/f.txt"), "400"),
        (good("/static/missing"), "400"),
    ];
    for (i, (req, status)) in cases.iter().enumerate() {
        // A request pipelined after the refused head is never answered: what follows
        // a handshake's head may be frames.
        let mut packet = req.clone().into_bytes();
        packet.extend_from_slice(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(&packet).unwrap();
        let answer = read_to_close(&mut s, Duration::from_secs(10));
        let status_line = answer.replacen("HTTP/1.0 ", "HTTP/1.1 ", 1);
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "case {i}: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "case {i}: {answer}"
        );
        assert_eq!(
            answer.matches("HTTP/1.").count(),
            1,
            "case {i}: only the refusal: {answer}"
        );
        if *status == "426" {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{answer}"
            );
        }
    }
    // A refused head followed by many bytes: the answer still gets out (the unread
    // input is drained before the close, not reset under it).
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut packet = head(
        "GET /raw HTTP/1.1",
        &[GOOD[0], GOOD[1], "Sec-WebSocket-Key: x", GOOD[3]],
    )
    .into_bytes();
    packet.extend(std::iter::repeat_n(b'z', 60_000));
    s.write_all(&packet).unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(refused_total(&admin, "static"), 2);
    assert_eq!(refused_total(&admin, "handshake"), 11);
    // None of them reached Python: the app would have answered 101 or 403.
    assert!(!server.log().contains("\"status\":101"), "{}", server.log());
    // Another Upgrade token is no handshake: served, and keep-alive kept.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h2c = head(
        "GET /pid HTTP/1.1",
        &[
            "Upgrade: h2c",
            "Connection: Upgrade, HTTP2-Settings",
            "HTTP2-Settings: AAMAAABkAAQAAP__",
        ],
    );
    s.write_all(format!("{h2c}GET /pid HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches("HTTP/1.1 200 ").count() < 2 {
        let n = s.read(&mut buf).unwrap_or_else(|e| panic!("{e}: {got}"));
        assert!(n > 0, "closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        !got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
}

#[test]
fn what_an_app_answers_on_its_socket() {
    let (server, _admin) = ws_server(&[]);
    let answer = |path: &str| {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(good(path).as_bytes()).unwrap();
        read_to_close(&mut s, Duration::from_secs(40))
    };
    // A WSGI answer without taking the socket: as it is, and the connection ends.
    let refused = answer("/refuse");
    assert!(
        refused.starts_with("HTTP/1.1 403 ") && refused.contains("\r\nrefused\r\n"),
        "{refused}"
    );
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    // Another status written into the socket: an ordinary answer, its body the rest.
    let socket403 = answer("/socket403");
    assert!(
        socket403.starts_with("HTTP/1.1 403 ") && socket403.ends_with("\r\n\r\nnope!"),
        "{socket403}"
    );
    // A 101 that does not open a WebSocket, garbage, or a head without end: 502.
    for path in ["/no-upgrade", "/bad-accept", "/garbled", "/huge"] {
        let a = answer(path);
        assert!(a.starts_with("HTTP/1.1 502 "), "{path}: {a}");
    }
    // A WSGI 101 to an ordinary request is no answer (the worker's 500, as before
    // issue 26), and its connection is no tunnel.
    let (status, answer) = h1_request(&server, "GET", "/answer101", b"");
    assert_eq!(status, 500, "{answer}");
    // The worker is not left stuck by any of them.
    let (status, _) = h1_request(&server, "GET", "/pid", b"");
    assert_eq!(status, 200);
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
    let mut packet = head("GET /report HTTP/1.1", GOOD).into_bytes();
    packet.extend_from_slice(&frame(1, b"early"));
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
    assert_eq!(read_n(&mut s, frame(1, b"early").len()), frame(1, b"early"));
    let big = vec![b'x'; 100_000];
    s.write_all(&big).unwrap();
    assert_eq!(read_n(&mut s, big.len()), big);
}

/// RFC 8441 over h2c with the `h2` crate: the server says it speaks extended
/// CONNECT, the app sees the GET handshake, answers 101, the client gets 200.
#[test]
fn extended_connect_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "file").unwrap();
    let mount = format!("/static={}", dir.path().display());
    let (server, admin) = ws_server(&["--static", &mount]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move { conn.await.ok() });
        let mut client = client.ready().await.unwrap();
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
            let mut req = http::Request::builder()
                .method("CONNECT")
                .uri(format!("http://{}{path}", server.addr))
                .header("sec-websocket-version", version)
                .body(())
                .unwrap();
            req.extensions_mut()
                .insert(h2::ext::Protocol::from_static(protocol));
            req
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
        let msg = frame(2, &[9u8; 50_000]);
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

#[test]
fn cap_idle_timeout_and_worker_timeout() {
    let (server, admin) = ws_server(&[
        "--websocket-max",
        "1",
        "--websocket-idle-timeout",
        "4",
        "-t",
        "2",
    ]);
    let started = Instant::now();
    let (mut s, _) = open(&server, "/raw");
    assert_eq!(read_n(&mut s, 2), b"hi");
    // Past the cap: 503 before Python.
    let mut second = TcpStream::connect(server.addr).unwrap();
    second.write_all(good("/raw").as_bytes()).unwrap();
    let answer = read_to_close(&mut second, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert_eq!(refused_total(&admin, "cap"), 1);
    // Open longer than the worker timeout (2 s), with bytes every second: alive.
    let mut quiet = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_secs(1));
        s.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut s, 4), b"ping");
        quiet = Instant::now();
    }
    assert!(!server.log().contains("WORKER TIMEOUT"), "{}", server.log());
    // Then silence: closed after the idle timeout (4 s), not before.
    assert_eq!(read_to_close(&mut s, Duration::from_secs(15)), "");
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(3500),
        "closed after {waited:?}"
    );
    poll_metric(
        &admin,
        "ferricorn_websockets_open",
        Duration::from_secs(10),
        |n| n == 0,
    )
    .unwrap();
    // The worker's thread came back.
    let (status, _) = h1_request(&server, "GET", "/pid", b"");
    assert_eq!(status, 200);
}

#[test]
fn term_refuses_new_handshakes_and_closes_open_ones_after_graceful_timeout() {
    let (mut server, admin) = ws_server(&["--graceful-timeout", "3"]);
    let (mut open_ws, _) = open(&server, "/raw");
    assert_eq!(read_n(&mut open_ws, 2), b"hi");
    // A handshake on its way when TERM comes: its head ends after it.
    let mut late = TcpStream::connect(server.addr).unwrap();
    late.write_all(b"GET /raw HTTP/1.1\r\nHost: a\r\n").unwrap();
    let term = Instant::now();
    server.signal(libc::SIGTERM);
    // Draining once the listener is closed (the stop follows at once).
    wait_until("the listener closed", Duration::from_secs(10), || {
        TcpStream::connect(server.addr).is_err()
    });
    let rest = good("/raw")
        .split_once("\r\n")
        .unwrap()
        .1
        .split_once("\r\n")
        .unwrap()
        .1
        .to_string();
    late.write_all(rest.as_bytes()).unwrap();
    let answer = read_to_close(&mut late, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert_eq!(refused_total(&admin, "draining"), 1);
    // The open one still works during the grace...
    open_ws.write_all(b"still").unwrap();
    assert_eq!(read_n(&mut open_ws, 5), b"still");
    // ...and is closed at its end; the server exits within graceful_timeout.
    assert_eq!(read_to_close(&mut open_ws, Duration::from_secs(10)), "");
    let status = server.wait_exit(Duration::from_secs(10));
    let took = term.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(6), "exit after {took:?}");
    assert!(
        server.log().contains("\"status\":101"),
        "the line at close: {}",
        server.log()
    );
}

/// HUP: the new workers take new handshakes at once; the old worker's WebSocket is
/// closed after `graceful_timeout` (its app sees its socket end), so the old worker
/// does not drain forever.
#[test]
fn hup_closes_the_old_workers_websockets_after_graceful_timeout() {
    let (server, _admin) = ws_server(&["--graceful-timeout", "2"]);
    let (mut old, _) = open(&server, "/raw");
    assert_eq!(read_n(&mut old, 2), b"hi");
    let (_, old_pid) = h1_request(&server, "GET", "/pid", b"");
    // The chunked body: its size line, then the pid.
    let old_pid = old_pid
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(old_pid.parse::<u32>().is_ok(), "{old_pid}");
    let from = server.log_len();
    server.signal(libc::SIGHUP);
    server.wait_for_log_after(from, "reload complete", Duration::from_secs(60));
    let hup = Instant::now();
    let (mut new, _) = open(&server, "/raw");
    assert_eq!(read_n(&mut new, 2), b"hi");
    // The old one still works until the grace ends...
    old.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut old, 1), b"x");
    // ...then is closed, and its worker exits.
    assert_eq!(read_to_close(&mut old, Duration::from_secs(15)), "");
    assert!(
        hup.elapsed() < Duration::from_secs(8),
        "{:?}",
        hup.elapsed()
    );
    wait_until("the old worker gone", Duration::from_secs(20), || {
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
    });
    new.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut new, 1), b"y");
}

/// TERM with an HTTP/2 WebSocket open: it carries on during the grace, then its
/// stream ends and the server exits within `graceful_timeout`.
#[test]
fn term_with_an_http2_websocket_open() {
    let (mut server, _admin) = ws_server(&["--graceful-timeout", "2"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let term = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move { conn.await.ok() });
        let mut client = client.ready().await.unwrap();
        let mut req = http::Request::builder()
            .method("CONNECT")
            .uri(format!("http://{}/raw", server.addr))
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        assert_eq!(&body.data().await.unwrap().unwrap()[..], b"hi");
        let term = Instant::now();
        server.signal(libc::SIGTERM);
        send.send_data(bytes::Bytes::from_static(b"during"), false)
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            got.extend_from_slice(&body.data().await.unwrap().unwrap());
        }
        assert_eq!(got, b"during");
        // The end: the stream finishes (or is reset) when the grace is over.
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = body.data().await {}
        })
        .await;
        assert!(end.is_ok(), "the stream outlived the grace");
        term
    });
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let took = term.elapsed();
    assert!(took < Duration::from_secs(5), "exit after {took:?}");
    // Its access-log line at the close: 200 over HTTP/2, bytes each way.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"protocol\":\"HTTP/2.0\"") && l.contains("\"path\":\"/raw\""))
        .unwrap_or_else(|| panic!("no line: {log}"));
    assert!(
        line.contains("\"status\":200,\"bytes\":8,\"bytes_in\":6,"),
        "{line}"
    );
}

/// An HTTP/2 connection carrying a WebSocket is not idle: `keep_alive` (1 s here)
/// must not end it with GOAWAY and drop it under the tunnel.
#[test]
fn an_http2_websocket_keeps_its_connection() {
    let (server, _admin) = ws_server(&["--keep-alive", "1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move { conn.await.ok() });
        let mut client = client.ready().await.unwrap();
        let mut req = http::Request::builder()
            .method("CONNECT")
            .uri(format!("http://{}/raw", server.addr))
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
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

/// A `fallthrough` mount (nginx's `try_files $uri @app`) at `/`: a handshake for a
/// path with no file goes to the app, as any request does; one for a file there is
/// refused.
#[test]
fn a_fallthrough_mount_sends_handshakes_without_a_file_to_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("f.txt"), "file").unwrap();
    let conf = dir.path().join("f.toml");
    std::fs::write(
        &conf,
        format!(
            "[[static]]\nurl = \"/\"\ndir = \"{}\"\nfallthrough = true\n",
            files.display()
        ),
    )
    .unwrap();
    let (server, admin) = ws_server(&["-c", conf.to_str().unwrap()]);
    let (mut s, _) = open(&server, "/raw");
    assert_eq!(read_n(&mut s, 2), b"hi");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(good("/f.txt").as_bytes()).unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(refused_total(&admin, "static"), 1);
}

/// Back-pressure: a client that reads nothing makes the app's `send` block; the
/// master keeps no more than its small per-direction buffer (the rest is the
/// kernel's socket buffers), not the 256 MiB the app tries to write.
#[test]
fn a_client_that_stops_reading_blocks_the_apps_send() {
    let (server, _admin) = ws_server(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(good("/flood").as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    let line = server.wait_for_log("flooded ", Duration::from_secs(60));
    let sent: u64 = line
        .split("flooded ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap();
    assert!(
        sent < 32 * 1024 * 1024,
        "the app wrote {sent} bytes to a client reading none"
    );
    eprintln!("the app's send blocked after {sent} bytes");
    // What was written still arrives, in order.
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while got < sent {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        got += n as u64;
    }
}
