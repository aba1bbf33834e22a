//! WebSocket helpers of the issue-26 suites: the Python clients of tests/ws_clients
//! run from the test venv (with a deadline), the raw-socket app (tests/apps/ws_raw.py)
//! with its metrics and access log, RFC 6455 handshakes and frames written by hand,
//! and RFC 8441 streams opened with the `h2` crate (`h2_client` is in http2.rs).

use super::{free_port, h2_client, metric, test_app, venv, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// tests/ws_clients/NAME.
pub fn ws_client(name: &str) -> PathBuf {
    super::repo().join("tests/ws_clients").join(name)
}

/// Runs `python SCRIPT ARGS` from the test venv, failing (with the client's and the
/// server's output) unless it exits 0 within `timeout`; returns its stdout.
pub fn run_client(server: &Server, script: &str, args: &[&str], timeout: Duration) -> String {
    let mut child = Command::new(venv().join("bin/python"))
        .arg(ws_client(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test venv's python");
    let deadline = Instant::now() + timeout;
    // Poll the exit: reading the pipes meanwhile would need threads; the clients
    // print little, far below a pipe's buffer.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    match status {
        Some(s) if s.success() => stdout,
        s => server.fail(&format!(
            "{script} {args:?}: {}\n--- client stdout:\n{stdout}\n--- client stderr:\n{stderr}",
            s.map_or("timed out".to_string(), |s| s.to_string())
        )),
    }
}

/// Runs tests/ws_clients/socketio_client.py on `server` with `args` (SESSIONS EVENTS
/// [TRANSPORTS] [flags]); one JSON value per session. A failed session fails here,
/// with the client's output.
pub fn socketio_sessions(server: &Server, args: &[&str]) -> Vec<serde_json::Value> {
    let url = server.url("");
    let mut all = vec![url.as_str()];
    all.extend_from_slice(args);
    let out = run_client(server, "socketio_client.py", &all, Duration::from_secs(300));
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// RFC 6455's example key and the accept it gives (section 1.3).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The fields of a good handshake after `Host`, in order.
pub const HANDSHAKE: &[&str] = &[
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// A request head: `request_line`, `Host: a`, then `fields` in order.
pub fn handshake_head(request_line: &str, fields: &[&str]) -> String {
    let mut h = format!("{request_line}\r\nHost: a\r\n");
    for f in fields {
        h.push_str(f);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// A good HTTP/1.1 handshake head for `path`.
pub fn handshake(path: &str) -> String {
    handshake_head(&format!("GET {path} HTTP/1.1"), HANDSHAKE)
}

/// Reads an HTTP head byte by byte (nothing past it is consumed); what came before
/// an EOF or error.
pub fn read_head(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
        assert!(out.len() < 65536, "endless head");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out).unwrap();
    out
}

/// Everything until the server closes (within `within`, else a failure).
pub fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
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

/// `request` sent on a new connection to `addr`: everything until the server closes
/// it (within `within`, else a failure).
pub fn answer_until_close(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    read_to_close(&mut s, within)
}

/// A WebSocket opened with a raw HTTP/1.1 handshake to `path`; the answer's head
/// (checked: 101 with our accept) is read byte by byte, so nothing after it is lost.
pub fn ws_open(addr: SocketAddr, path: &str) -> TcpStream {
    ws_open_head(addr, path).0
}

/// `ws_open`, with the answer's head.
pub fn ws_open_head(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(handshake(path).as_bytes()).unwrap();
    let head = read_head(&mut s);
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 101 "), "{path}: {head:?}");
    assert!(
        lower.contains(&format!(
            "sec-websocket-accept: {}",
            WS_ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    (s, head)
}

/// One client frame (FIN set) with `opcode` and `payload`, masked as RFC 6455 §5.3
/// requires.
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Sends one client frame.
pub fn ws_send(s: &mut impl Write, opcode: u8, payload: &[u8]) {
    s.write_all(&ws_frame(opcode, payload)).unwrap();
}

/// The next server frame (never masked) as (opcode, payload); None at EOF or reset.
pub fn ws_recv(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    assert_eq!(head[1] & 0x80, 0, "a server frame is never masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0f, payload))
}

/// A text message to the echo app (tests/apps/ws_echo.py) and its echo back.
pub fn ws_echo(s: &mut TcpStream, text: &str) {
    ws_send(s, 0x1, text.as_bytes());
    let (op, payload) = ws_recv(s).expect("an echo");
    assert_eq!((op, payload.as_slice()), (0x1, text.as_bytes()));
}

/// tests/apps/ws_raw.py on one worker (4 threads), with an admin port (its address
/// returned, for the metrics) and the access log as JSON on stdout.
pub fn ws_server(extra: &[&str]) -> (Server, String) {
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
    (test_app("ws_raw:app", &args).start(), admin)
}

/// `ferricorn_websocket_upgrades_refused_total{reason}`.
pub fn refused_total(admin: &str, reason: &str) -> u64 {
    metric(
        admin,
        &format!("ferricorn_websocket_upgrades_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Waits (10 s at most) for `ferricorn_websockets_open` to come back to 0.
pub fn wait_websockets_closed(admin: &str) {
    super::poll_metric(
        admin,
        "ferricorn_websockets_open",
        Duration::from_secs(10),
        |n| n == 0,
    )
    .unwrap();
}

/// A static mount `/static` of `dir` holding one file, `f.txt`: the `--static` value.
pub fn static_mount(dir: &std::path::Path) -> String {
    std::fs::write(dir.join("f.txt"), "file").unwrap();
    format!("/static={}", dir.display())
}

/// `metric`, from inside an async test (its blocking client has a runtime of its own).
pub fn metric_off_runtime(admin: &str, name: &str) -> u64 {
    let (admin, name) = (admin.to_string(), name.to_string());
    std::thread::spawn(move || metric(&admin, &name))
        .join()
        .unwrap()
}

/// An extended CONNECT (RFC 8441) to `path` with `:protocol` and
/// `sec-websocket-version`.
pub fn ws_connect_request(
    addr: SocketAddr,
    path: &str,
    protocol: &'static str,
    version: &str,
) -> http::Request<()> {
    http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", version)
        .extension(h2::ext::Protocol::from_static(protocol))
        .body(())
        .unwrap()
}

/// A WebSocket opened on a new h2c connection with an extended CONNECT (RFC 8441)
/// to `path`: its request (kept open) and response bodies.
pub async fn h2_websocket(
    addr: SocketAddr,
    path: &str,
) -> (h2::SendStream<bytes::Bytes>, h2::RecvStream) {
    let mut client = h2_client(addr).await;
    // The server's SETTINGS (ENABLE_CONNECT_PROTOCOL) arrive with its preface.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            Instant::now() < deadline,
            "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let req = ws_connect_request(addr, path, "websocket", "13");
    let (resp, send) = client.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    (send, resp.into_body())
}
