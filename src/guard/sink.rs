//! Where the guard puts what it validated ([`Sink`]), and what it learnt of a head on
//! the way ([`ValidHead`]): the offsets of the request line's parts and of every
//! field, recorded while each line was checked, and the facts the checks established
//! (framing, keep-alive, `Expect`, upgrade, Host). The HTTP/1 codec (`crate::http1`)
//! builds its request from them without reading the head a second time; a plain
//! `BytesMut` sink gets the validated bytes as they came (the guard's own tests).

use bytes::BytesMut;

/// Byte offsets `start..end` in a request head (from its request line on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(super) fn of(outer: &[u8], inner: &[u8]) -> Span {
        let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + inner.len()) as u32,
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header field: its name, and its value without the whitespace around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    pub name: Span,
    pub value: Span,
}

/// How the body of a request is delimited (RFC 9112 §6.3), as the guard decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// No body (no Content-Length nor Transfer-Encoding, or `Content-Length: 0`, or a
    /// WebSocket candidate, after whose head nothing is read as HTTP).
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// What the guard established about a valid head, besides its offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadSummary {
    pub method: Span,
    pub target: Span,
    /// `HTTP/1.0` (else `HTTP/1.1`: no other version passes).
    pub http10: bool,
    pub framing: Framing,
    /// The connection may carry another request after this one, as hyper decides it:
    /// HTTP/1.1 unless a `Connection` field lists `close`; HTTP/1.0 only when one
    /// lists `keep-alive` and none `close`.
    pub keep_alive: bool,
    /// HTTP/1.1 with `Expect: 100-continue` (the last `Expect` field decides, as in hyper).
    pub expect_continue: bool,
    /// A WebSocket candidate (`guard::upgrade`): what follows the head is held.
    pub upgrade: bool,
    /// The Host field's value, if any (at most one passes).
    pub host: Option<Span>,
}

/// A complete head the guard accepted, handed to its [`Sink`].
pub struct ValidHead<'a> {
    /// The head buffer: `buf[start..]` is the request (request line to the empty
    /// line). A sink may split it off (the guard clears whatever is left).
    pub buf: &'a mut BytesMut,
    pub start: usize,
    pub summary: HeadSummary,
    /// Every field in order, offsets from `start`. A sink may take the `Vec` (the
    /// guard's next head then starts a new one: see `Http1Guard::recycle_fields`).
    pub fields: &'a mut Vec<FieldSpan>,
}

impl ValidHead<'_> {
    /// The request's bytes, request line to the empty line.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// What the guard hands on, in stream order.
pub trait Sink {
    /// A complete, valid head.
    fn head(&mut self, head: ValidHead<'_>);
    /// Body bytes as the app reads them (Content-Length bytes, or chunk data).
    fn body(&mut self, data: &[u8]);
    /// Chunked framing around the data: size lines, CRLFs, trailer lines.
    fn framing(&mut self, raw: &[u8]);
    /// The body of the last head ended (never called for a head with `Framing::None`).
    fn body_end(&mut self);
    /// Bytes of an HTTP/2 connection (the preface on), passed unchecked.
    fn h2(&mut self, raw: &[u8]);
}

/// The validated bytes as they came.
impl Sink for BytesMut {
    fn head(&mut self, head: ValidHead<'_>) {
        self.extend_from_slice(head.bytes());
    }

    fn body(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }

    fn framing(&mut self, raw: &[u8]) {
        self.extend_from_slice(raw);
    }

    fn body_end(&mut self) {}

    fn h2(&mut self, raw: &[u8]) {
        self.extend_from_slice(raw);
    }
}
