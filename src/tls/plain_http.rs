//! Plain HTTP on a TLS port: a browser or script that says `http://` to the HTTPS
//! port gets nginx's answer, `400 The plain HTTP request was sent to HTTPS port`,
//! and the connection closes; before this, rustls's alert came back as bytes curl
//! read as an `HTTP/0.9` reply. The first byte tells them apart without consuming
//! it: every TLS connection opens with a handshake record (0x16), every HTTP/1
//! request (and HTTP/2's preface, `PRI`) with a method's letter.

use crate::proxy_protocol::Prefixed;
use bytes::Bytes;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a connection's first byte says it speaks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A TLS record (a ClientHello's handshake record, 0x16), or anything that is
    /// not plain HTTP: rustls decides.
    Tls,
    /// A letter: an HTTP method (or HTTP/2's `PRI` preface) in clear.
    PlainHttp,
}

pub(crate) fn opening(first: u8) -> Opening {
    if first.is_ascii_alphabetic() {
        Opening::PlainHttp
    } else {
        Opening::Tls
    }
}

/// How long a client on the TLS port gets for its first byte, and a plain-HTTP one
/// for its request head (the TLS handshake's own bound).
const WAIT: Duration = Duration::from_secs(10);

/// How much of a plain-HTTP request is read before the answer (the guard's bound on
/// a head), and how much more is read and dropped after it: unread bytes at close
/// would make the kernel send a reset that can destroy the answer in flight.
const HEAD_MAX: usize = crate::defaults::REQUEST_HEAD;
const LINGER_MAX: usize = 64 * 1024;
const LINGER: Duration = Duration::from_secs(1);

const PAGE: &str = "<html>\r\n\
<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n\
<body>\r\n\
<center><h1>400 Bad Request</h1></center>\r\n\
<center>The plain HTTP request was sent to HTTPS port</center>\r\n\
</body>\r\n\
</html>\r\n";

/// Before the TLS handshake: a connection whose first byte (in `rest`, the bytes
/// read past a PROXY header, or else on the socket, peeked) opens plain HTTP is
/// answered 400 and closed (`None`); any other goes on to the handshake. A client
/// that sends nothing for `WAIT` is closed.
pub(crate) async fn past_plain_http(rest: Bytes, s: TcpStream) -> Option<Prefixed<TcpStream>> {
    let first = match rest.first() {
        Some(b) => *b,
        None => {
            let mut b = [0u8; 1];
            match tokio::time::timeout(WAIT, s.peek(&mut b)).await {
                Ok(Ok(1)) => b[0],
                _ => return None,
            }
        }
    };
    let mut io = Prefixed::new(rest, s);
    match opening(first) {
        Opening::Tls => Some(io),
        Opening::PlainHttp => {
            // Each step bounded; the client's doing, so not worth a log line above debug.
            let _ = tokio::time::timeout(WAIT, answer(&mut io)).await;
            let _ = tokio::time::timeout(LINGER, linger(&mut io)).await;
            tracing::debug!("plain HTTP request on the TLS port: 400");
            None
        }
    }
}

/// Reads the request head (up to `HEAD_MAX`), then writes nginx's 400 page with
/// `Connection: close` (no body for a HEAD).
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while head.len() < HEAD_MAX && !ends_head(&head) {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    io.write_all(response(head.starts_with(b"HEAD ")).as_bytes())
        .await?;
    io.flush().await?;
    io.shutdown().await
}

fn ends_head(head: &[u8]) -> bool {
    memchr::memmem::find(head, b"\r\n\r\n").is_some()
        || memchr::memmem::find(head, b"\n\n").is_some()
}

fn response(head_only: bool) -> String {
    let body = if head_only { "" } else { PAGE };
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        PAGE.len()
    )
}

/// nginx's lingering close: what the client still sends is read and dropped, so
/// the close does not reset the answer away.
async fn linger<S: AsyncRead + Unpin>(io: &mut S) {
    let mut buf = [0u8; 4096];
    let mut read = 0;
    while read < LINGER_MAX {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_is_tls_a_method_is_plain_http() {
        assert_eq!(opening(0x16), Opening::Tls);
        assert_eq!(opening(0x80), Opening::Tls);
        assert_eq!(opening(0), Opening::Tls);
        for first in *b"GPHODCTPgp" {
            assert_eq!(opening(first), Opening::PlainHttp);
        }
    }

    #[test]
    fn the_answer_is_nginx_s_400() {
        let r = response(false);
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with(PAGE));
        assert!(r.contains(&format!("Content-Length: {}\r\n", PAGE.len())));
        let head = response(true);
        assert!(head.ends_with("\r\n\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", PAGE.len())));
    }
}
