//! One response's state machine, shared by `start_response`, `write()` and the
//! driver: the pending status and headers, when the head goes out (with the first
//! non-empty body bytes or at the end, as PEP 3333 asks), the app's Content-Length
//! enforced (too long → cut with Abort, too short → Abort instead of ResponseEnd),
//! HEAD bodies dropped, and the 500 that replaces a failed response when nothing was
//! sent yet. It decides frames, and encodes them into its output buffer (`push`),
//! which goes to the socket in one write when the response is complete, grows past
//! `FLUSH_AT`, or the caller asks (every chunk of a streaming response).

use crate::log::werror;
use crate::stream::{Body, Conn};
use crate::wire::{self, Frame, ResponseHead, CHUNK};
use bytes::{Bytes, BytesMut};
use pyo3::Python;
use std::sync::{Arc, Mutex, MutexGuard};

/// What `start_response` accepted.
pub struct Head {
    pub status: u16,
    pub headers: Vec<(Bytes, Bytes)>,
    /// The app's Content-Length, if it declared one.
    pub declared: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StartError {
    /// Called again without `exc_info`.
    Twice,
    /// `exc_info` given after the head went out: the caller re-raises it.
    HeadSent,
}

/// `write()` or a body item before `start_response`.
#[derive(Debug, PartialEq, Eq)]
pub struct NotStarted;

/// The body of a 500 that replaces a failed response.
pub struct ErrorPage {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ErrorPage {
    pub fn plain() -> Self {
        ErrorPage {
            content_type: "text/plain; charset=utf-8",
            body: b"500 Internal Server Error\n".to_vec(),
        }
    }
}

#[derive(Default)]
struct State {
    pending: Option<Head>,
    head_sent: bool,
    sent: u64,
    /// A terminal frame (ResponseEnd or Abort) was produced: drop everything after.
    done: bool,
    /// Encoded frames not yet written (the thread's reusable buffer, lent to us).
    out: BytesMut,
}

/// Write what is encoded once it grows past this, even if more is coming.
const FLUSH_AT: usize = 64 * 1024;

pub struct Response {
    pub stream: u32,
    pub conn: Arc<Conn>,
    head_only: bool,
    body: Arc<Body>,
    state: Mutex<State>,
}

fn abort(why: &'static str) -> Frame {
    Frame::Abort(Bytes::from_static(why.as_bytes()))
}

/// Statuses whose responses never have a body, so a "short" body is no error.
fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

impl Response {
    /// `out` is an empty buffer to encode into, given back by `take_out`.
    pub fn new(
        stream: u32,
        head_only: bool,
        body: Arc<Body>,
        conn: Arc<Conn>,
        out: BytesMut,
    ) -> Self {
        Response {
            stream,
            conn,
            head_only,
            body,
            state: Mutex::new(State {
                out,
                ..State::default()
            }),
        }
    }

    /// The output buffer back, for the next request (it is empty after a flush).
    pub fn take_out(&self) -> BytesMut {
        std::mem::take(&mut self.lock().out)
    }

    /// Encodes `frames` (draining the vector) and writes what is encoded if `flush`
    /// or if it is big; the write releases the GIL (it may block on the socket).
    pub fn push(&self, py: Python<'_>, frames: &mut Vec<Frame>, flush: bool) {
        if let Some(mut out) = self.encode(frames, flush) {
            py.detach(|| self.conn.write_out(&mut out));
            self.lock().out = out;
        }
    }

    /// `push` for a caller that already released the GIL.
    pub fn push_detached(&self, frames: &mut Vec<Frame>, flush: bool) {
        if let Some(mut out) = self.encode(frames, flush) {
            self.conn.write_out(&mut out);
            self.lock().out = out;
        }
    }

    /// Encodes; returns the buffer when it must be written now.
    fn encode(&self, frames: &mut Vec<Frame>, flush: bool) -> Option<BytesMut> {
        let mut st = self.lock();
        for f in frames.drain(..) {
            wire::encode(self.stream, &f, &mut st.out);
        }
        let due = st.out.len() >= FLUSH_AT || (flush && !st.out.is_empty());
        due.then(|| std::mem::take(&mut st.out))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn head_sent(&self) -> bool {
        self.lock().head_sent
    }

    /// `start_response(status, headers, exc_info)` after validation.
    pub fn start(&self, head: Head, exc_info: bool) -> Result<(), StartError> {
        let mut st = self.lock();
        if st.head_sent && exc_info {
            return Err(StartError::HeadSent);
        }
        if st.pending.is_some() && !exc_info {
            return Err(StartError::Twice);
        }
        st.pending = Some(head);
        Ok(())
    }

    /// The front aborted the stream, or we cut it: the app's output goes nowhere.
    pub fn is_stopped(&self) -> bool {
        self.lock().done || self.body.is_aborted()
    }

    pub fn is_front_aborted(&self) -> bool {
        self.body.is_aborted()
    }

    /// Body bytes the app may still send under its Content-Length.
    pub fn room(&self) -> Option<u64> {
        let st = self.lock();
        st.pending
            .as_ref()
            .and_then(|h| h.declared)
            .map(|d| d.saturating_sub(st.sent))
    }

    /// Whether start_response was called.
    pub fn started(&self) -> bool {
        self.lock().pending.is_some()
    }

    pub fn body(&self) -> &Arc<Body> {
        &self.body
    }

    pub fn head_only(&self) -> bool {
        self.head_only
    }

    /// Takes the head out for its frame; the status and length stay for later checks.
    fn head_frame(st: &mut State) -> Result<Frame, NotStarted> {
        let head = st.pending.as_mut().ok_or(NotStarted)?;
        st.head_sent = true;
        Ok(Frame::ResponseHead(Box::new(ResponseHead {
            status: head.status,
            headers: std::mem::take(&mut head.headers),
        })))
    }

    /// Body bytes from the iterable or `write()`.
    pub fn write(&self, data: &[u8], out: &mut Vec<Frame>) -> Result<(), NotStarted> {
        let mut st = self.lock();
        if st.done || data.is_empty() {
            return Ok(());
        }
        if st.pending.is_none() {
            return Err(NotStarted);
        }
        if self.body.is_aborted() {
            return Ok(());
        }
        if !st.head_sent {
            let frame = Self::head_frame(&mut st)?;
            out.push(frame);
        }
        if self.head_only {
            return Ok(());
        }
        let declared = st.pending.as_ref().and_then(|h| h.declared);
        let room = declared.map_or(u64::MAX, |d| d.saturating_sub(st.sent));
        let keep = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        for chunk in data[..keep].chunks(CHUNK) {
            out.push(Frame::ResponseBody(Bytes::copy_from_slice(chunk)));
        }
        st.sent += keep as u64;
        if keep < data.len() {
            werror!(
                "stream {}: the app sent more than its Content-Length ({}): response cut",
                self.stream,
                declared.unwrap_or_default()
            );
            out.push(abort("response body longer than its Content-Length"));
            st.done = true;
        }
        Ok(())
    }

    /// The app returned and its iterable is exhausted.
    pub fn finish(&self, out: &mut Vec<Frame>) -> Result<(), NotStarted> {
        let mut st = self.lock();
        if st.done {
            return Ok(());
        }
        if self.body.is_aborted() {
            st.done = true;
            out.push(abort("aborted by the front"));
            return Ok(());
        }
        if !st.head_sent {
            let frame = Self::head_frame(&mut st)?;
            out.push(frame);
        }
        st.done = true;
        let head = st.pending.as_ref().ok_or(NotStarted)?;
        match head.declared {
            Some(d) if d > st.sent && !self.head_only && !bodiless(head.status) => {
                werror!(
                    "stream {}: the app sent {} bytes but declared Content-Length {}: response cut",
                    self.stream,
                    st.sent,
                    d
                );
                out.push(abort("response body shorter than its Content-Length"));
            }
            _ => out.push(Frame::ResponseEnd),
        }
        Ok(())
    }

    /// The app failed: a 500 if nothing went out yet, else cut the response.
    pub fn fail(&self, page: ErrorPage, out: &mut Vec<Frame>) {
        let mut st = self.lock();
        if st.done {
            return;
        }
        st.done = true;
        if st.head_sent || self.body.is_aborted() {
            out.push(abort("application error"));
            return;
        }
        st.head_sent = true;
        let headers = vec![
            (
                Bytes::from_static(b"content-type"),
                Bytes::from_static(page.content_type.as_bytes()),
            ),
            (
                Bytes::from_static(b"content-length"),
                Bytes::from(page.body.len().to_string()),
            ),
        ];
        out.push(Frame::ResponseHead(Box::new(ResponseHead {
            status: 500,
            headers,
        })));
        if !self.head_only {
            for chunk in page.body.chunks(CHUNK) {
                out.push(Frame::ResponseBody(Bytes::copy_from_slice(chunk)));
            }
        }
        out.push(Frame::ResponseEnd);
    }
}
