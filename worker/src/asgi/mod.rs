//! The ASGI worker's decisions that need no Python (the WebSocket codec in
//! `websocket`, and here): one stream's request body as it
//! arrives (`Inbox`), its response's state machine (`Response`: head once, the
//! app's Content-Length kept, HEAD bodies dropped, the terminal frame once; the
//! body bytes the app took, credited back to the master in batches), the
//! checks on the app's status and header fields, and the scope's decoded path. The
//! pyo3 side (`crate::python::asgi`) owns the loop, the futures and the tasks, and
//! asks these types what to send.

pub(crate) mod websocket;

use crate::wire::{self, Frame, ResponseHead, CHUNK};
use bytes::Bytes;
use std::collections::VecDeque;

/// One `recvmsg` of the master's socket reads at most this much; the loop then
/// runs the tasks it made ready before it reads again.
pub(crate) const READ_BUF: usize = 256 * 1024;

/// Past this many encoded bytes not yet written to the master, `send()` waits for
/// the buffer to drain (uvicorn's `FlowControl`, with room for a few big chunks).
pub(crate) const HIGH_WATER: usize = 1024 * 1024;

/// Body bytes buffered for one stream go to the app in `http.request` messages
/// of at most this size (one chunk may be bigger: it is never split).
pub(crate) const MESSAGE_MAX: usize = 1024 * 1024;

/// A task still running this long after its cancel (which comes 1 s after the
/// master's `Cancel`) ignored it: the worker tells the master its loop runs
/// (`Credit(0)`; the stream keeps its slot until the task ends). Together well
/// under the master's `defaults::CANCEL_GRACE` (5 s), past which it takes the
/// missing answer for a blocked loop and replaces the worker.
pub(crate) const CANCEL_ACK: std::time::Duration = std::time::Duration::from_secs(2);

/// Hop-by-hop fields an app may not set: framing belongs to the front.
pub(crate) const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-connection",
    b"te",
    b"trailer",
];

/// The app took this much of a body since the last `Credit`: credit it now. Half
/// the master's window (`wire::ASGI_BODY_WINDOW`), so one `Credit` goes per 128 KiB
/// and a stream whose app waits for more always has room for the next chunk.
pub(crate) const CREDIT_BATCH: usize = wire::ASGI_BODY_WINDOW / 2;

/// A request body as the master sends it.
#[derive(Default)]
pub(crate) struct Inbox {
    chunks: VecDeque<Bytes>,
    ended: bool,
    aborted: bool,
    /// The message with `more_body: False` was handed over.
    finished: bool,
    /// Bytes handed to the app and not credited to the master yet.
    uncredited: usize,
}

/// What `receive()` hands the app next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// `http.request` with `body` and `more_body`.
    Body(Bytes, bool),
    /// `http.disconnect`.
    Disconnect,
    /// Nothing yet: wait.
    Wait,
}

impl Inbox {
    pub(crate) fn push(&mut self, data: Bytes) {
        if !self.ended && !self.aborted && !data.is_empty() {
            self.chunks.push_back(data);
        }
    }

    pub(crate) fn end(&mut self) {
        self.ended = true;
    }

    /// The client went away (the master's Abort), or the stream was dropped.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
        self.chunks.clear();
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// The next message; after the whole body only a disconnect may come, so the
    /// caller waits for one (the app normally stops listening long before).
    pub(crate) fn take(&mut self) -> Received {
        if self.aborted {
            return Received::Disconnect;
        }
        if let Some(chunk) = self.chunks.pop_front() {
            let chunk = self.join_buffered(chunk);
            self.uncredited += chunk.len();
            let more = !(self.ended && self.chunks.is_empty());
            self.finished |= !more;
            return Received::Body(chunk, more);
        }
        if self.ended && !self.finished {
            // An empty body, or one whose end came after its last bytes were taken.
            self.finished = true;
            return Received::Body(Bytes::new(), false);
        }
        Received::Wait
    }

    /// The `Credit` to send now, if the app took a batch's worth since the last
    /// one. None once the body is whole or the client gone: the master sends no
    /// more of it either way.
    pub(crate) fn credit_due(&mut self) -> Option<u32> {
        if self.uncredited < CREDIT_BATCH || self.ended || self.aborted {
            return None;
        }
        let n = u32::try_from(self.uncredited).unwrap_or(u32::MAX);
        self.uncredited -= n as usize;
        Some(n)
    }
}

impl Inbox {
    /// `first` and the chunks buffered behind it, up to `MESSAGE_MAX` bytes, as one
    /// message: an app reading a big body makes fewer round trips through Python.
    fn join_buffered(&mut self, first: Bytes) -> Bytes {
        let mut total = first.len();
        let mut n = 0;
        for c in &self.chunks {
            if total + c.len() > MESSAGE_MAX {
                break;
            }
            total += c.len();
            n += 1;
        }
        if n == 0 {
            return first;
        }
        let mut joined = bytes::BytesMut::with_capacity(total);
        joined.extend_from_slice(&first);
        for c in self.chunks.drain(..n) {
            joined.extend_from_slice(&c);
        }
        joined.freeze()
    }
}

/// Why the app's `send()` is refused; the message becomes its exception.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    #[error("http.response.start sent twice")]
    Twice,
    #[error("http.response.body (or pathsend) sent before http.response.start")]
    NotStarted,
    #[error("the response is already complete")]
    Complete,
    #[error("invalid status {0}: expected {lo} to {hi}", lo = wire::FINAL_STATUS.start(), hi = wire::FINAL_STATUS.end())]
    Status(i64),
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid value for header {0:?}")]
    HeaderValue(String),
    #[error(
        "response headers exceed ferricorn's limit of {} bytes",
        wire::MAX_RESPONSE_HEAD
    )]
    HeadTooLarge,
    #[error("invalid Content-Length {0:?}")]
    Length(String),
    #[error("conflicting Content-Length headers")]
    ConflictingLength,
    #[error("the app sent more than its Content-Length")]
    TooLong,
    #[error(
        "Content-Length {declared} but the file named by http.response.pathsend has {size} bytes"
    )]
    FileLength { declared: u64, size: u64 },
}

/// A response's progress, as the app's `send()` calls drive it. The head is held
/// until the first body or file message (as PEP 3333 holds WSGI's), so an app that
/// fails in between, or whose pathsend file is missing, still gets its 500.
#[derive(Default)]
pub(crate) struct Response {
    pub(crate) head_only: bool,
    started: bool,
    pending: Option<ResponseHead>,
    declared: Option<u64>,
    sent: u64,
    status: u16,
    /// A terminal frame (ResponseEnd or Abort) was produced.
    done: bool,
}

impl Response {
    pub(crate) fn new(head_only: bool) -> Self {
        Response {
            head_only,
            ..Response::default()
        }
    }

    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// The head went out: a failure now can only cut the response.
    pub(crate) fn head_sent(&self) -> bool {
        self.started && self.pending.is_none()
    }

    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// `http.response.start`: checks the status and fields, drops hop-by-hop ones,
    /// and holds the head for the first body or file message.
    pub(crate) fn start(&mut self, status: i64, fields: Fields) -> Result<(), SendError> {
        if self.done {
            return Err(SendError::Complete);
        }
        if self.started {
            return Err(SendError::Twice);
        }
        let status = u16::try_from(status)
            .ok()
            .filter(|s| wire::FINAL_STATUS.contains(s))
            .ok_or(SendError::Status(status))?;
        let (headers, declared) = check_fields(fields)?;
        self.started = true;
        self.status = status;
        self.declared = declared;
        self.pending = Some(ResponseHead { status, headers });
        Ok(())
    }

    fn push_head(&mut self, out: &mut Vec<Frame>) {
        if let Some(head) = self.pending.take() {
            out.push(Frame::ResponseHead(Box::new(head)));
        }
    }

    /// `http.response.body`: the frames to send (the end too when `!more`). Bytes
    /// past the app's Content-Length cut the response.
    pub(crate) fn body(
        &mut self,
        data: Bytes,
        more: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), SendError> {
        if !self.started {
            return Err(SendError::NotStarted);
        }
        if self.done {
            return Err(SendError::Complete);
        }
        self.push_head(out);
        if !self.head_only && !data.is_empty() {
            let room = self.declared.map(|d| d.saturating_sub(self.sent));
            if room.is_some_and(|r| (data.len() as u64) > r) {
                out.push(self.abort("body longer than its Content-Length"));
                return Err(SendError::TooLong);
            }
            self.sent += data.len() as u64;
            let mut rest = data;
            while rest.len() > CHUNK {
                out.push(Frame::ResponseBody(rest.split_to(CHUNK)));
            }
            out.push(Frame::ResponseBody(rest));
        }
        if !more {
            out.push(self.end());
        }
        Ok(())
    }

    /// The normal end: `ResponseEnd`, or an Abort if the body fell short of its
    /// declared length (a client must not take a short body for a whole one).
    fn end(&mut self) -> Frame {
        let short = !self.head_only
            && !bodiless(self.status)
            && self.declared.is_some_and(|d| d != self.sent);
        if short {
            return self.abort("body shorter than its Content-Length");
        }
        self.done = true;
        Frame::ResponseEnd
    }

    /// `http.response.pathsend`, once the file checked out: the head, then `file`
    /// (the `ResponseFile` frame) as the body and the end.
    pub(crate) fn file(&mut self, file: Frame, out: &mut Vec<Frame>) -> Result<(), SendError> {
        if !self.started {
            return Err(SendError::NotStarted);
        }
        if self.done {
            return Err(SendError::Complete);
        }
        // The front sends the file's length: a Content-Length that says otherwise
        // is the app's error (its send() raises), not a 502 at the front.
        if let (Some(declared), Frame::ResponseFile(f)) = (self.declared, &file) {
            if declared != f.size {
                return Err(SendError::FileLength {
                    declared,
                    size: f.size,
                });
            }
        }
        self.push_head(out);
        out.push(file);
        self.done = true;
        Ok(())
    }

    /// Ends the stream abnormally (once).
    pub(crate) fn abort(&mut self, why: &'static str) -> Frame {
        self.done = true;
        Frame::Abort(Bytes::from_static(why.as_bytes()))
    }

    /// The plain 500 in place of a response that failed before its head went out
    /// (the WSGI path's page).
    pub(crate) fn error_page(&mut self, out: &mut Vec<Frame>) {
        let body = Bytes::from_static(b"500 Internal Server Error\n");
        self.error_page_of(b"text/plain; charset=utf-8", body, out);
    }

    /// A 500 with this body (`--dev`: the traceback page).
    pub(crate) fn error_page_of(
        &mut self,
        content_type: &'static [u8],
        body: Bytes,
        out: &mut Vec<Frame>,
    ) {
        self.started = true;
        self.pending = None;
        self.done = true;
        out.push(Frame::ResponseHead(Box::new(ResponseHead {
            status: 500,
            headers: vec![
                (
                    Bytes::from_static(b"content-type"),
                    Bytes::from_static(content_type),
                ),
                (
                    Bytes::from_static(b"content-length"),
                    Bytes::from(body.len().to_string()),
                ),
            ],
        })));
        if !self.head_only {
            out.push(Frame::ResponseBody(body));
        }
        out.push(Frame::ResponseEnd);
    }
}

type Fields = Vec<(Bytes, Bytes)>;

/// Statuses whose responses never have a body.
fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// The app's header fields, checked: names HTTP tokens, values without control
/// characters but HTAB (what the front's `HeaderValue` takes: else a 502 there,
/// with no word of the app's error), the whole head under `wire::MAX_RESPONSE_HEAD`; hop-by-hop fields dropped;
/// names lower-cased (HTTP/2 wants them so, HTTP/1 does not care).
fn check_fields(fields: Fields) -> Result<(Fields, Option<u64>), SendError> {
    let mut out = Vec::with_capacity(fields.len());
    let mut declared = None;
    let mut size = 0;
    for (name, value) in fields {
        size += name.len() + value.len() + 8;
        if size > wire::MAX_RESPONSE_HEAD {
            return Err(SendError::HeadTooLarge);
        }
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(SendError::HeaderName(lossy(&name)));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(SendError::HeaderValue(lossy(&name)));
        }
        let name = match name.iter().any(u8::is_ascii_uppercase) {
            true => Bytes::from(name.to_ascii_lowercase()),
            false => name,
        };
        if HOP_BY_HOP.contains(&&name[..]) {
            continue;
        }
        if &name[..] == b"content-length" {
            let n = parse_length(&value)?;
            if declared.is_some_and(|d| d != n) {
                return Err(SendError::ConflictingLength);
            }
            declared = Some(n);
        }
        out.push((name, value));
    }
    Ok((out, declared))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_length(v: &[u8]) -> Result<u64, SendError> {
    std::str::from_utf8(v)
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| SendError::Length(lossy(v)))
}

/// The scope's `path`: the raw path percent-decoded, as UTF-8 (what uvicorn's
/// `unquote` gives; invalid sequences become U+FFFD), after `root_path`.
pub(crate) fn scope_path(root_path: &str, raw: &[u8]) -> String {
    let decoded = percent_encoding::percent_decode(raw).decode_utf8_lossy();
    let mut path = String::with_capacity(root_path.len() + decoded.len());
    path.push_str(root_path);
    path.push_str(&decoded);
    path
}

#[cfg(test)]
mod tests;
