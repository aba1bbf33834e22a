//! Helpers of the ASGI suites (issue 27: tests/asgi_django.rs, asgi_fastapi.rs,
//! asgi_quart.rs): an app of tests/apps served with `-k asgi`, server-sent events read
//! off a raw HTTP/1.1 socket as they come, WebSocket messages over an RFC 8441 stream
//! of the `h2` crate, and what a process read from files (/proc/PID/io).

use super::{h2_client, test_app, ws_frame, Server};
use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `MODULE:CALLABLE` of tests/apps served by ASGI workers (`-k asgi`) with `extra`.
pub fn asgi_app(app: &str, extra: &[&str]) -> Server {
    let mut args = vec!["-k", "asgi"];
    args.extend_from_slice(extra);
    test_app(app, &args).start()
}

/// Reads from `s` into `buf` until `buf` holds `needle` (the bytes read so far are
/// kept, so a caller can go on reading); fails after `within`.
pub fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 16384];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {:?} within {within:?}; got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(buf)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e} before {:?}", String::from_utf8_lossy(needle)),
        }
    }
}

/// `GET path` of an event stream on a new HTTP/1.1 connection (closed by the server
/// after the answer), read until its first event `data: 0`: the socket and what it
/// read so far (the head and that event).
pub fn sse_open(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"data: 0\n\n", Duration::from_secs(60));
    (s, buf)
}

/// An extended CONNECT (RFC 8441) to `path` on `client`, with `fields` added: the
/// answer's status, and the request (kept open) and response bodies.
pub async fn h2_ws_connect(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, h2::SendStream<bytes::Bytes>, h2::RecvStream) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            Instant::now() < deadline,
            "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from_static("websocket"));
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let req = req.body(()).unwrap();
    *client = client.clone().ready().await.unwrap();
    let (resp, send) = client.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    (resp.status().as_u16(), send, resp.into_body())
}

/// A new h2c connection's RFC 8441 WebSocket to `path`, which must be accepted (200).
pub async fn h2_ws_open(
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
) -> (h2::SendStream<bytes::Bytes>, WsRecv) {
    let mut client = h2_client(addr).await;
    let (status, send, recv) = h2_ws_connect(&mut client, addr, path, fields).await;
    assert_eq!(status, 200, "{path}");
    (send, WsRecv::new(recv))
}

/// Sends one masked client frame on an RFC 8441 stream.
pub fn h2_ws_send(send: &mut h2::SendStream<bytes::Bytes>, opcode: u8, payload: &[u8]) {
    send.send_data(bytes::Bytes::from(ws_frame(opcode, payload)), false)
        .unwrap();
}

/// The server's side of an RFC 8441 stream, read frame by frame.
pub struct WsRecv {
    body: h2::RecvStream,
    buf: Vec<u8>,
}

impl WsRecv {
    pub fn new(body: h2::RecvStream) -> Self {
        WsRecv {
            body,
            buf: Vec::new(),
        }
    }

    /// The next whole server frame as (opcode, payload); None at the stream's end.
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let mut cur = Cursor::new(&self.buf[..]);
            if let Some(frame) = super::ws_recv(&mut cur) {
                let used = cur.position() as usize;
                self.buf.drain(..used);
                return Some(frame);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.data())
                .await
                .expect("a frame within 30 s")?
                .ok()?;
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// Bytes process `pid` read through read(2) and the like so far (`rchar` of
/// /proc/PID/io): a worker that streamed a file itself read all of it.
pub fn read_chars(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/{pid}/io"))
}

/// `GET path` on an open HTTP/2 connection: the status and the whole body.
pub async fn h2_get(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (u16, String) {
    let (status, mut body) = h2_get_open(client, addr, path).await;
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// `GET path` on an open HTTP/2 connection: the status and the body still to read.
pub async fn h2_get_open(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (u16, h2::RecvStream) {
    let req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    *client = client.clone().ready().await.unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = resp.await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (resp.status().as_u16(), resp.into_body())
}

/// Reads `body` into `buf` until `buf` holds `needle`.
pub async fn h2_read_until(body: &mut h2::RecvStream, buf: &mut Vec<u8>, needle: &[u8]) {
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(60), body.data())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 60 s: {buf:?}"))
            .unwrap_or_else(|| panic!("stream ended before {needle:?}: {buf:?}"))
            .unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
}
