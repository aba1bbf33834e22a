//! The front ↔ worker wire protocol, carried on one Unix socket per worker.
//!
//! Every frame is length-prefixed so either side can read many frames per syscall
//! and split them without parsing HTTP again:
//!
//! ```text
//! u32 BE  len      bytes that follow (kind + stream + payload), at most MAX_FRAME
//! u8      kind     see `Kind`
//! u32 BE  stream   request id on this connection; 0 for connection-level frames
//! ...     payload  depends on kind
//! ```
//!
//! A request is `RequestHead`, zero or more `RequestBody`, then `RequestEnd`. The worker
//! answers on the same stream with `ResponseHead`, zero or more `ResponseBody`, then
//! `ResponseEnd` (complete) or `Abort` (the response must be cut, not completed).
//! The front sends `Abort` when the client went away. Many streams interleave on one
//! connection. Strings inside payloads are `u32 BE length + bytes`; the front has
//! parsed and validated the request, so connection facts (peer, scheme, server
//! name/port, request id) are fields here and never client headers.
//!
//! A `RequestHead` with `upgrade` set carries a socket: its first byte is sent in a
//! `sendmsg` with exactly one fd in SCM_RIGHTS. The worker reads with `recvmsg`
//! always and queues received fds in order; each upgrade head takes the next one
//! (Linux ends a unix-stream `recvmsg` right after a segment that carries fds, so
//! the fd is queued by the time its head's first byte is read).
//!
//! An ASGI worker runs many streams at once and gets three more frames from the
//! front: `Cancel` (past its timeout), `Pause` / `Resume` (response back-pressure).
//! It may end a response with `ResponseFile` (`http.response.pathsend`) instead of
//! body frames, and it returns `Credit` as its app takes the request body: the front
//! sends an ASGI worker at most a window of each body beyond what it credited.

use crate::PROTOCOL;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest frame either side accepts; bodies are split into chunks below it.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest response head a worker sends (status and header fields, as encoded):
/// far above what browsers accept, far below `MAX_FRAME`. An app's larger head is
/// its error (a 500), not a broken connection.
pub const MAX_RESPONSE_HEAD: usize = 1024 * 1024;
/// Statuses an app may answer with: a final response (no 1xx, which WSGI cannot
/// follow with the real one) with a code RFC 9110 defines a class for.
pub const FINAL_STATUS: std::ops::RangeInclusive<u16> = 200..=599;
/// Body chunk size used by senders.
pub const CHUNK: usize = 64 * 1024;
/// An ASGI worker's request-body window per stream: the front sends at most this
/// many body bytes beyond what the worker credited (`Frame::Credit`), so an app that
/// does not read its upload leaves it in the front's spool, not in the worker's
/// memory. The worker credits in batches of half of it; twice `CHUNK` at least, so
/// a stream whose app waits for more always has room for the next chunk.
pub const ASGI_BODY_WINDOW: usize = 256 * 1024;
const HEADER_LEN: usize = 4 + 1 + 4;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload truncated")]
    Truncated,
    #[error("frame has {0} trailing bytes")]
    Trailing(usize),
    #[error("the worker speaks protocol {0}, this master {PROTOCOL}")]
    Protocol(u32),
    #[error("bad field value: {0}")]
    BadField(&'static str),
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ready = 1,
    RequestHead = 2,
    RequestBody = 3,
    RequestEnd = 4,
    ResponseHead = 5,
    ResponseBody = 6,
    ResponseEnd = 7,
    Abort = 8,
    Cancel = 9,
    Pause = 10,
    Resume = 11,
    ResponseFile = 12,
    Credit = 13,
}

impl Kind {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            1 => Kind::Ready,
            2 => Kind::RequestHead,
            3 => Kind::RequestBody,
            4 => Kind::RequestEnd,
            5 => Kind::ResponseHead,
            6 => Kind::ResponseBody,
            7 => Kind::ResponseEnd,
            8 => Kind::Abort,
            9 => Kind::Cancel,
            10 => Kind::Pause,
            11 => Kind::Resume,
            12 => Kind::ResponseFile,
            13 => Kind::Credit,
            other => return Err(WireError::UnknownKind(other)),
        })
    }
}

/// `wsgi.url_scheme` as decided by the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Everything the worker needs to build a WSGI environ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Bytes,
    /// Request-target path, still percent-encoded (RAW_URI); the worker decodes it.
    pub path: Bytes,
    pub query: Bytes,
    /// 10, 11 or 20 for HTTP/1.0, HTTP/1.1, HTTP/2.
    pub version: u8,
    pub scheme: Scheme,
    pub remote_addr: Bytes,
    pub remote_port: u16,
    pub server_name: Bytes,
    pub server_port: u16,
    pub request_id: Bytes,
    /// Known body length; `None` when the body was chunked and its end is the
    /// `RequestEnd` frame (`wsgi.input_terminated`).
    pub content_length: Option<u64>,
    /// Header fields as received (names lower-case), hop-by-hop fields removed.
    pub headers: Vec<(Bytes, Bytes)>,
    /// This request carries a socket (a WebSocket handshake): the master sends the
    /// frame's first byte with one fd in SCM_RIGHTS, and the worker hands that fd to
    /// the app as `gunicorn.socket` / `werkzeug.socket`.
    pub upgrade: bool,
}

/// Bits of a `RequestHead`'s flag byte; every other bit must be 0.
const FLAG_UPGRADE: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(Bytes, Bytes)>,
}

/// `http.response.pathsend` (ASGI): the body is this file, which the master opens
/// and sends itself. `dev`, `ino` and `size` are what the worker's `stat` saw; the
/// master sends nothing of a file that is no longer that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFile {
    /// An absolute path, as bytes (a Unix path need not be UTF-8).
    pub path: Bytes,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// What a worker says about itself when it is ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// `crate::PROTOCOL` of the worker module; first on the wire, so a worker of
    /// another version is recognised even when the rest of its frame differs.
    pub protocol: u32,
    pub pid: u32,
    pub interpreter: Interpreter,
}

/// The interpreter a worker runs on, for the log and for mismatch errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interpreter {
    /// `sys.implementation.name`, e.g. "cpython".
    pub implementation: String,
    /// e.g. "3.14.0".
    pub version: String,
    pub executable: String,
    pub prefix: String,
}

impl std::fmt::Display for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}, prefix {})",
            self.implementation, self.version, self.executable, self.prefix
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Worker → front, stream 0, once the app imported.
    Ready(Box<Ready>),
    RequestHead(Box<RequestHead>),
    RequestBody(Bytes),
    RequestEnd,
    ResponseHead(Box<ResponseHead>),
    ResponseBody(Bytes),
    ResponseEnd,
    /// The stream ends abnormally; the text says why (for the log only).
    Abort(Bytes),
    /// Front → ASGI worker: the request is past its timeout (the client already got
    /// 504): cancel its task. The worker ends the stream (`Abort`) once it is done.
    Cancel,
    /// Front → ASGI worker: the front holds too much of this stream's response;
    /// the app's body `send()` waits until `Resume`.
    Pause,
    Resume,
    /// ASGI worker → front, after `ResponseHead`: the body is this file, and the
    /// response ends with it (no `ResponseEnd` follows).
    ResponseFile(Box<ResponseFile>),
    /// ASGI worker → front: its app took this many more bytes of the stream's
    /// request body (`receive()`); the front may send that much more of it.
    /// `Credit(0)` after a `Cancel`: the worker's loop runs, but the task ignores
    /// its cancel; the stream (and its slot) stays until the task ends.
    Credit(u32),
}

impl Frame {
    /// The frame's kind, for messages (`RequestHead`, ...).
    pub fn name(&self) -> &'static str {
        match self.kind() {
            Kind::Ready => "Ready",
            Kind::RequestHead => "RequestHead",
            Kind::RequestBody => "RequestBody",
            Kind::RequestEnd => "RequestEnd",
            Kind::ResponseHead => "ResponseHead",
            Kind::ResponseBody => "ResponseBody",
            Kind::ResponseEnd => "ResponseEnd",
            Kind::Abort => "Abort",
            Kind::Cancel => "Cancel",
            Kind::Pause => "Pause",
            Kind::Resume => "Resume",
            Kind::ResponseFile => "ResponseFile",
            Kind::Credit => "Credit",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Frame::Ready(_) => Kind::Ready,
            Frame::RequestHead(_) => Kind::RequestHead,
            Frame::RequestBody(_) => Kind::RequestBody,
            Frame::RequestEnd => Kind::RequestEnd,
            Frame::ResponseHead(_) => Kind::ResponseHead,
            Frame::ResponseBody(_) => Kind::ResponseBody,
            Frame::ResponseEnd => Kind::ResponseEnd,
            Frame::Abort(_) => Kind::Abort,
            Frame::Cancel => Kind::Cancel,
            Frame::Pause => Kind::Pause,
            Frame::Resume => Kind::Resume,
            Frame::ResponseFile(_) => Kind::ResponseFile,
            Frame::Credit(_) => Kind::Credit,
        }
    }
}

/// Appends one frame to `out`.
pub fn encode(stream: u32, frame: &Frame, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0); // length, patched below
    out.put_u8(frame.kind() as u8);
    out.put_u32(stream);
    match frame {
        Frame::Ready(r) => encode_ready(r, out),
        Frame::RequestHead(head) => encode_request_head(head, out),
        Frame::RequestBody(b) | Frame::ResponseBody(b) | Frame::Abort(b) => out.put_slice(b),
        Frame::RequestEnd | Frame::ResponseEnd | Frame::Cancel | Frame::Pause | Frame::Resume => {}
        Frame::Credit(n) => out.put_u32(*n),
        Frame::ResponseFile(f) => {
            put_str(&f.path, out);
            out.put_u64(f.dev);
            out.put_u64(f.ino);
            out.put_u64(f.size);
        }
        Frame::ResponseHead(head) => {
            out.put_u16(head.status);
            put_headers(&head.headers, out);
        }
    }
    let len = out.len() - start - 4;
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
}

fn encode_request_head(head: &RequestHead, out: &mut BytesMut) {
    put_str(&head.method, out);
    put_str(&head.path, out);
    put_str(&head.query, out);
    out.put_u8(head.version);
    out.put_u8(match head.scheme {
        Scheme::Http => 0,
        Scheme::Https => 1,
    });
    put_str(&head.remote_addr, out);
    out.put_u16(head.remote_port);
    put_str(&head.server_name, out);
    out.put_u16(head.server_port);
    put_str(&head.request_id, out);
    out.put_u64(head.content_length.unwrap_or(u64::MAX));
    out.put_u8(if head.upgrade { FLAG_UPGRADE } else { 0 });
    put_headers(&head.headers, out);
}

fn encode_ready(r: &Ready, out: &mut BytesMut) {
    out.put_u32(r.protocol);
    out.put_u32(r.pid);
    let i = &r.interpreter;
    for s in [&i.implementation, &i.version, &i.executable, &i.prefix] {
        put_str(s.as_bytes(), out);
    }
}

fn decode_ready(p: &mut Bytes) -> Result<Ready, WireError> {
    let protocol = get_u32(p)?;
    if protocol != PROTOCOL {
        return Err(WireError::Protocol(protocol));
    }
    let pid = get_u32(p)?;
    let mut text = || -> Result<String, WireError> {
        String::from_utf8(get_str(p)?.to_vec()).map_err(|_| WireError::BadField("interpreter"))
    };
    let interpreter = Interpreter {
        implementation: text()?,
        version: text()?,
        executable: text()?,
        prefix: text()?,
    };
    Ok(Ready {
        protocol,
        pid,
        interpreter,
    })
}

fn put_str(s: &[u8], out: &mut BytesMut) {
    out.put_u32(s.len() as u32);
    out.put_slice(s);
}

fn put_headers(headers: &[(Bytes, Bytes)], out: &mut BytesMut) {
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        put_str(name, out);
        put_str(value, out);
    }
}

/// Takes one complete frame off the front of `buf`, or returns `Ok(None)` when more
/// bytes are needed. A corrupt frame is an error; the connection should be closed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<(u32, Frame)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if len < HEADER_LEN - 4 {
        return Err(WireError::Truncated);
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut payload = take_payload(buf, len);
    let kind = Kind::from_u8(payload.get_u8())?;
    let stream = payload.get_u32();
    let frame = decode_payload(kind, &mut payload)?;
    if !payload.is_empty() {
        return Err(WireError::Trailing(payload.len()));
    }
    Ok(Some((stream, frame)))
}

/// Frames up to this size are copied out of the read buffer instead of sharing it.
const COPY_BELOW: usize = 16 * 1024;

/// The next `len` bytes as the frame's own `Bytes`. A small frame is copied: a
/// `Bytes` split off the read buffer would keep the whole buffer (64 KiB and more)
/// alive until the last such frame is dropped, so every refill allocated a fresh
/// buffer and freeing the old one made glibc consolidate its heap; a copy of a
/// small frame costs less. Large bodies are split off without a copy.
fn take_payload(buf: &mut BytesMut, len: usize) -> Bytes {
    if len < COPY_BELOW {
        let payload = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        payload
    } else {
        buf.split_to(len).freeze()
    }
}

fn decode_payload(kind: Kind, p: &mut Bytes) -> Result<Frame, WireError> {
    Ok(match kind {
        Kind::Ready => Frame::Ready(Box::new(decode_ready(p)?)),
        Kind::RequestHead => Frame::RequestHead(Box::new(decode_request_head(p)?)),
        Kind::RequestBody => Frame::RequestBody(p.split_off(0)),
        Kind::RequestEnd => Frame::RequestEnd,
        Kind::ResponseHead => {
            let status = get_u16(p)?;
            if !FINAL_STATUS.contains(&status) {
                return Err(WireError::BadField("status"));
            }
            Frame::ResponseHead(Box::new(ResponseHead {
                status,
                headers: get_headers(p)?,
            }))
        }
        Kind::ResponseBody => Frame::ResponseBody(p.split_off(0)),
        Kind::ResponseEnd => Frame::ResponseEnd,
        Kind::Abort => Frame::Abort(p.split_off(0)),
        Kind::Cancel => Frame::Cancel,
        Kind::Pause => Frame::Pause,
        Kind::Resume => Frame::Resume,
        Kind::Credit => Frame::Credit(get_u32(p)?),
        Kind::ResponseFile => Frame::ResponseFile(Box::new(ResponseFile {
            path: get_str(p)?,
            dev: get_u64(p)?,
            ino: get_u64(p)?,
            size: get_u64(p)?,
        })),
    })
}

fn decode_request_head(p: &mut Bytes) -> Result<RequestHead, WireError> {
    let method = get_str(p)?;
    let path = get_str(p)?;
    let query = get_str(p)?;
    let version = get_u8(p)?;
    if !matches!(version, 10 | 11 | 20) {
        return Err(WireError::BadField("version"));
    }
    let scheme = match get_u8(p)? {
        0 => Scheme::Http,
        1 => Scheme::Https,
        _ => return Err(WireError::BadField("scheme")),
    };
    let remote_addr = get_str(p)?;
    let remote_port = get_u16(p)?;
    let server_name = get_str(p)?;
    let server_port = get_u16(p)?;
    let request_id = get_str(p)?;
    let content_length = match get_u64(p)? {
        u64::MAX => None,
        n => Some(n),
    };
    let upgrade = match get_u8(p)? {
        0 => false,
        FLAG_UPGRADE => true,
        _ => return Err(WireError::BadField("flags")),
    };
    let headers = get_headers(p)?;
    Ok(RequestHead {
        method,
        path,
        query,
        version,
        scheme,
        remote_addr,
        remote_port,
        server_name,
        server_port,
        request_id,
        content_length,
        headers,
        upgrade,
    })
}

fn need(p: &Bytes, n: usize) -> Result<(), WireError> {
    if p.remaining() < n {
        Err(WireError::Truncated)
    } else {
        Ok(())
    }
}

fn get_u8(p: &mut Bytes) -> Result<u8, WireError> {
    need(p, 1)?;
    Ok(p.get_u8())
}

fn get_u16(p: &mut Bytes) -> Result<u16, WireError> {
    need(p, 2)?;
    Ok(p.get_u16())
}

fn get_u32(p: &mut Bytes) -> Result<u32, WireError> {
    need(p, 4)?;
    Ok(p.get_u32())
}

fn get_u64(p: &mut Bytes) -> Result<u64, WireError> {
    need(p, 8)?;
    Ok(p.get_u64())
}

fn get_str(p: &mut Bytes) -> Result<Bytes, WireError> {
    let len = get_u32(p)? as usize;
    need(p, len)?;
    Ok(p.split_to(len))
}

fn get_headers(p: &mut Bytes) -> Result<Vec<(Bytes, Bytes)>, WireError> {
    let count = get_u32(p)? as usize;
    // Each header needs at least 8 bytes of lengths: refuse counts the payload cannot hold
    // before allocating for them.
    if count > p.remaining() / 8 {
        return Err(WireError::Truncated);
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = get_str(p)?;
        let value = get_str(p)?;
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests;
