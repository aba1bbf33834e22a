//! WebSocket helpers of the issue-26 suites: the Python clients of tests/ws_clients
//! run from the test venv (with a deadline), a raw RFC 6455 handshake and frames for
//! the Rust-side clients (2,000 idle connections, TERM).

use super::{venv, Server};
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

/// RFC 6455's example key and the accept it gives (section 1.3).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket opened with a raw HTTP/1.1 handshake to `path`; the answer's head
/// (checked: 101 with our accept) is read byte by byte, so nothing after it is lost.
pub fn ws_open(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "handshake to {path}: {other:?} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(head.len() < 65536, "endless handshake answer");
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            WS_ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    s
}

/// One masked client frame (FIN set) with `opcode` and `payload`.
pub fn ws_send(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
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
    s.write_all(&frame).unwrap();
}

/// The next server frame (unmasked) as (opcode, payload); None at EOF or reset.
pub fn ws_recv(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
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

/// A text message to the echo app (tests/apps/sock_echo.py) and its echo back.
pub fn ws_echo(s: &mut TcpStream, text: &str) {
    ws_send(s, 0x1, text.as_bytes());
    let (op, payload) = ws_recv(s).expect("an echo");
    assert_eq!((op, payload.as_slice()), (0x1, text.as_bytes()));
}
