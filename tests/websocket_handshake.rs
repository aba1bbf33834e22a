//! WebSocket handshakes at the edge (issue 26), over HTTP/1.1 against the real
//! binary and tests/apps/ws_raw.py: every spelling that is one handshake opens it;
//! malformed ones, another version, and a static mount's path are refused before
//! Python (400, 426), their connection ended and what follows their head never read
//! as a request; a `fallthrough` mount sends a path without a file to the app; what
//! an app may answer on its socket instead of a 101. The HTTP/2 refusals are in
//! tests/websocket_tunnel.rs, beside the RFC 8441 tunnel.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
        s.write_all(handshake_head("GET /raw HTTP/1.1", fields).as_bytes())
            .unwrap();
        let h = read_head(&mut s);
        assert!(h.starts_with("HTTP/1.1 101 "), "{fields:?}: {h}");
        assert_eq!(read_n(&mut s, 2), b"hi");
    }
    // A request, then a handshake, in one packet: the first answered, then the tunnel.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET /pid HTTP/1.1\r\nHost: a\r\n\r\n{}", handshake("/raw")).as_bytes())
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
        handshake_head(
            "GET /raw HTTP/1.1",
            &[
                HANDSHAKE[0],
                "Connection: close, Upgrade",
                HANDSHAKE[2],
                HANDSHAKE[3],
            ],
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
    s.write_all(
        handshake_head(
            &format!("GET http://{}/raw HTTP/1.1", server.addr),
            HANDSHAKE,
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
}

#[test]
fn malformed_handshakes_are_refused_before_python_and_end_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mount = static_mount(dir.path());
    let (server, admin) = ws_server(&["--static", &mount]);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let cases: Vec<(String, &str)> = vec![
        (
            handshake_head(
                "POST /raw HTTP/1.1",
                &[
                    HANDSHAKE[0],
                    HANDSHAKE[1],
                    key,
                    HANDSHAKE[3],
                    "Content-Length: 3",
                ],
            )
            .replace("\r\n\r\n", "\r\n\r\nabc"),
            "400",
        ),
        (handshake_head("GET /raw HTTP/1.0", HANDSHAKE), "400"),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[HANDSHAKE[0], "Connection: keep-alive", key, HANDSHAKE[3]],
            ),
            "400",
        ),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[
                    HANDSHAKE[0],
                    HANDSHAKE[1],
                    key,
                    HANDSHAKE[3],
                    "Content-Length: 2",
                ],
            )
            .replace("\r\n\r\n", "\r\n\r\nab"),
            "400",
        ),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[
                    HANDSHAKE[0],
                    HANDSHAKE[1],
                    key,
                    HANDSHAKE[3],
                    "Transfer-Encoding: chunked",
                ],
            )
            .replace("\r\n\r\n", "\r\n\r\n0\r\n\r\n"),
            "400",
        ),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[HANDSHAKE[0], HANDSHAKE[1], HANDSHAKE[3]],
            ),
            "400",
        ),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[
                    HANDSHAKE[0],
                    HANDSHAKE[1],
                    "Sec-WebSocket-Key: c2hvcnQ=",
                    HANDSHAKE[3],
                ],
            ),
            "400",
        ),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[HANDSHAKE[0], HANDSHAKE[1], key, key, HANDSHAKE[3]],
            ),
            "400",
        ),
        (
            handshake_head("GET /raw HTTP/1.1", &[HANDSHAKE[0], HANDSHAKE[1], key]),
            "400",
        ),
        (
            handshake_head(
                "GET /raw HTTP/1.1",
                &[HANDSHAKE[0], HANDSHAKE[1], key, "Sec-WebSocket-Version: 8"],
            ),
            "426",
        ),
        (handshake("/static/f.txt"), "400"),
        (handshake("/static/missing"), "400"),
    ];
    for (i, (req, status)) in cases.iter().enumerate() {
        // A request pipelined after the refused head is never answered: what follows
        // a handshake's head may be frames.
        let mut packet = req.clone().into_bytes();
        packet.extend_from_slice(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n");
        let answer = answer_until_close(server.addr, &packet, Duration::from_secs(10));
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
    let mut packet = handshake_head(
        "GET /raw HTTP/1.1",
        &[
            HANDSHAKE[0],
            HANDSHAKE[1],
            "Sec-WebSocket-Key: x",
            HANDSHAKE[3],
        ],
    )
    .into_bytes();
    packet.extend(std::iter::repeat_n(b'z', 60_000));
    let answer = answer_until_close(server.addr, &packet, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(refused_total(&admin, "static"), 2);
    assert_eq!(refused_total(&admin, "handshake"), 11);
    // None of them reached Python: the app would have answered 101 or 403.
    assert!(!server.log().contains("\"status\":101"), "{}", server.log());
    // Another Upgrade token is no handshake: served, and keep-alive kept.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h2c = handshake_head(
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
        answer_until_close(
            server.addr,
            handshake(path).as_bytes(),
            Duration::from_secs(40),
        )
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
    let (mut s, _) = ws_open_head(server.addr, "/raw");
    assert_eq!(read_n(&mut s, 2), b"hi");
    let answer = answer_until_close(
        server.addr,
        handshake("/f.txt").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(refused_total(&admin, "static"), 1);
}
