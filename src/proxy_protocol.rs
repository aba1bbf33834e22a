//! The PROXY protocol (HAProxy's v1 text line and v2 binary header), read by the
//! listener before anything else when `proxy_protocol = true`: a TCP load balancer
//! (HAProxy, AWS NLB, ...) that cannot add HTTP headers tells us who connected to it.
//!
//! On such a listener every connection must start with a header (a load balancer
//! that forgets it is a misconfiguration we must not paper over, and accepting
//! connections without one would let a client that reaches us directly pose as the
//! balancer). The header's source address replaces the socket peer as the
//! connection's client (REMOTE_ADDR, and the peer that `forwarded_allow_ips` judges);
//! `LOCAL` (v2 health checks), `UNKNOWN` (v1) and non-IP families keep the socket peer.
//! A malformed, missing or slow (over [`HEADER_TIMEOUT`]) header closes the connection.
//!
//! [`parse`] is pure (unit- and property-tested); [`read_header`] does the reading, and
//! [`Prefixed`] hands the bytes read past the header back to the HTTP side.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a connection may take to send its PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest v1 line, CRLF included (the spec's own bound).
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v2 header we buffer: the fixed 16 bytes, the addresses and TLVs. The spec
/// allows 64 KiB of TLVs; real balancers send a few hundred bytes, and a peer on this
/// listener should not make us hold 64 KiB each.
const V2_MAX: usize = 16 + 4096;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer relays a client: `src` connected to `dst`.
    Proxied { src: SocketAddr, dst: SocketAddr },
    /// No client address (v2 LOCAL, v1 UNKNOWN, a non-IP family): use the socket's.
    Local,
}

/// The outcome of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a valid header: read more.
    Incomplete,
    /// The header, and its length in bytes (what follows is the client's data).
    Done(ProxyHeader, usize),
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 line: {0}")]
    BadV1(&'static str),
    #[error("malformed PROXY protocol v2 header: {0}")]
    BadV2(&'static str),
    #[error("the connection closed inside the PROXY protocol header")]
    Eof,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Parses a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.starts_with(V1_PREFIX) {
        return parse_v1(buf);
    }
    if buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    let could_be = |sig: &[u8]| sig.starts_with(&buf[..buf.len().min(sig.len())]);
    if could_be(V1_PREFIX) || could_be(V2_SIGNATURE) {
        Ok(Parsed::Incomplete)
    } else {
        Err(ProxyError::Missing)
    }
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = memchr(b'\n', window) else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::BadV1("longer than 107 bytes"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::BadV1("the line does not end in CRLF"))?;
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.is_ascii())
        .ok_or(ProxyError::BadV1("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader::Local,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            ProxyHeader::Proxied {
                src: SocketAddr::new(v1_ip(src, v4)?, v1_port(sport)?),
                dst: SocketAddr::new(v1_ip(dst, v4)?, v1_port(dport)?),
            }
        }
        ["PROXY", "TCP4" | "TCP6", ..] => {
            return Err(ProxyError::BadV1(
                "expected PROXY TCP4|TCP6 SRC DST SPORT DPORT",
            ))
        }
        _ => return Err(ProxyError::BadV1("unknown protocol (TCP4, TCP6, UNKNOWN)")),
    };
    Ok(Parsed::Done(header, lf + 1))
}

fn v1_ip(s: &str, v4: bool) -> Result<IpAddr, ProxyError> {
    let ip = if v4 {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    ip.map_err(|_| ProxyError::BadV1("an address does not match its family"))
}

/// Plain decimal 0..=65535: no sign, no leading zero (the spec's wording).
fn v1_port(s: &str) -> Result<u16, ProxyError> {
    let plain = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = s == "0" || !s.starts_with('0');
    s.parse()
        .ok()
        .filter(|_| plain && canonical)
        .ok_or(ProxyError::BadV1("a port is not a number in 0..=65535"))
}

/// The 12-byte signature, version/command, family/protocol, length, addresses, TLVs.
fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(Parsed::Incomplete);
    };
    let (version, command) = (fixed[12] >> 4, fixed[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::BadV2("the version is not 2"));
    }
    let total = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if total > V2_MAX {
        return Err(ProxyError::BadV2("longer than we accept (4 KiB of TLVs)"));
    }
    let Some(body) = buf.get(16..total) else {
        return Ok(Parsed::Incomplete);
    };
    let header = match command {
        0x0 => ProxyHeader::Local,
        0x1 => v2_addresses(fixed[13], body)?,
        _ => return Err(ProxyError::BadV2("unknown command")),
    };
    Ok(Parsed::Done(header, total))
}

fn v2_addresses(family: u8, body: &[u8]) -> Result<ProxyHeader, ProxyError> {
    const TOO_SHORT: ProxyError = ProxyError::BadV2("the addresses do not fit its length");
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match family {
        // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
        0x11 => {
            let a = body.get(..12).ok_or(TOO_SHORT)?;
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&a[at..at + 4]).unwrap());
            Ok(ProxyHeader::Proxied {
                src: SocketAddr::new(ip(0), port(8)),
                dst: SocketAddr::new(ip(4), port(10)),
            })
        }
        // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
        0x21 => {
            let a = body.get(..36).ok_or(TOO_SHORT)?;
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&a[at..at + 16]).unwrap());
            Ok(ProxyHeader::Proxied {
                src: SocketAddr::new(ip(0), port(32)),
                dst: SocketAddr::new(ip(16), port(34)),
            })
        }
        // UNSPEC, or a Unix-socket client: no address to give; the spec says use ours.
        0x00 | 0x30 | 0x31 => Ok(ProxyHeader::Local),
        _ => Err(ProxyError::BadV2(
            "unsupported family or protocol (TCP over IPv4/IPv6 only)",
        )),
    }
}

/// Reads exactly one PROXY header from `io`; returns it and the bytes that came after
/// it in the same reads (the start of the client's request).
pub async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<(ProxyHeader, Bytes), ProxyError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if let Parsed::Done(header, len) = parse(&buf)? {
            let rest = buf.split_off(len).freeze();
            return Ok((header, rest));
        }
        // `parse` refuses anything past V2_MAX, so this buffer stays bounded.
        buf.reserve(512);
        if io.read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Eof);
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

/// The socket under the prefix (the client-close watch asks it whether the peer left).
impl<S: std::os::fd::AsFd> std::os::fd::AsFd for Prefixed<S> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
