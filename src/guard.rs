//! The HTTP/1 request guard: the first thing every client byte meets.
//!
//! Lenient HTTP/1 parsers serve Content-Length together with Transfer-Encoding, bare-LF
//! line endings, duplicate Host, chunk sizes with a sign, and more (hyper's did,
//! measured against each peer). Each of those is a request smuggling vector once a
//! second parser (a proxy, a cache, a worker) reads the same bytes differently. So
//! every HTTP/1 request is read once, here, strictly, and that one reading is the
//! request (`crate::http1` builds it from what the guard recorded):
//!
//! - [`Http1Guard`] is a pure, synchronous state machine (no I/O). It owns the
//!   *message syntax and framing* of every request on a connection: the request line,
//!   the header section, the body framing (Content-Length or chunked, including the
//!   chunk-size lines and trailer section) and the boundary to the next pipelined
//!   request. It does not own semantics (routing, body size limits, `_` in header
//!   names, Upgrade): those stay with the front.
//! - `sink`: what it hands on ([`Sink`]): each valid head with the offsets of its
//!   parts and the facts it established ([`ValidHead`]), body bytes, body ends.
//! - `client_close`: the rules of the watch for a client gone while its answer is
//!   owed (`http1::conn` applies them), and the socket probe it asks.
//! - `grammar`: the byte-level rules the state machine applies, as pure functions.
//! - `http2`: the same rules and limits for the HTTP/2 requests hyper's h2 server
//!   decoded (HTTP/2 bytes pass the state machine unchecked), applied by the front.
//!
//! The rules follow RFC 9112 and gunicorn 27's defaults (the conformance corpus in
//! tests/conformance/ is the test suite: see the tests at the bottom).

use crate::defaults;
use crate::respond::Failure;
use bytes::BytesMut;
use http::StatusCode;
use memchr::memchr;
pub(crate) mod client_close;
mod grammar;
pub(crate) mod http2;
mod sink;
pub(crate) mod upgrade;
use grammar::*;
pub use sink::{FieldSpan, Framing, HeadSummary, Sink, Span, ValidHead};

/// A field no client may send (head or trailers): issue 26's stand-ins carried the
/// request line in it to the front; still refused, so nothing that trusted it is fooled.
pub const RESERVED_FIELD: &str = "x-ferricorn-original-request";

/// Timeouts against slow clients, enforced where the bytes are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// Between requests (and before the first one): the connection is closed silently.
    pub idle: std::time::Duration,
    /// From the first byte of a request head to its end: 408, then close.
    pub head: std::time::Duration,
    /// A write to the client that makes no progress this long ends the connection.
    pub write: std::time::Duration,
}

/// Limits on the request head, with gunicorn's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Longest request line, without its CRLF (`--limit-request-line`, 414 past it).
    pub request_line: usize,
    /// Most header fields in a request, or trailer fields in a chunked body
    /// (`--limit-request-fields`, 431 past it).
    pub fields: usize,
    /// Longest field line, counting its CRLF as gunicorn does
    /// (`--limit-request-field_size`, 431 past it).
    pub field_size: usize,
    /// The whole head: request line, field lines and CRLFs for HTTP/1, the decoded
    /// header list for HTTP/2 (431 past it, as soon as the bytes held pass it).
    pub head: usize,
    /// Refuse HTTP/1.1 requests without Host (nginx does; gunicorn and the corpus do not).
    pub require_host: bool,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            request_line: defaults::REQUEST_LINE,
            fields: defaults::REQUEST_FIELDS,
            field_size: defaults::REQUEST_FIELD_SIZE,
            head: defaults::REQUEST_HEAD,
            require_host: false,
        }
    }
}

/// Why a request was refused; each maps to one small, fixed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("malformed request")]
    BadRequest,
    #[error("request line too long")]
    UriTooLong,
    #[error("too many or too large header fields")]
    HeaderFieldsTooLarge,
    #[error("HTTP version not supported")]
    VersionNotSupported,
    #[error("request head not received in time")]
    RequestTimeout,
}

impl From<Reject> for Failure {
    fn from(r: Reject) -> Failure {
        match r {
            Reject::BadRequest => Failure::BadRequest,
            Reject::UriTooLong => Failure::UriTooLong,
            Reject::HeaderFieldsTooLarge => Failure::HeaderFieldsTooLarge,
            Reject::VersionNotSupported => Failure::VersionNotSupported,
            Reject::RequestTimeout => Failure::RequestTimeout,
        }
    }
}

impl Reject {
    /// The status, from the one place that maps failures to statuses.
    pub fn status(self) -> StatusCode {
        Failure::from(self).status()
    }

    /// The complete response written before the connection is closed (`respond`
    /// renders it, as every status page).
    pub fn response_bytes(self) -> bytes::Bytes {
        crate::respond::closing_page_bytes(self.status())
    }
}

/// The HTTP/2 prior-knowledge connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest chunk-size line (size and extensions) we buffer; nginx allows far less in
/// practice, and a longer one is only ever an attempt to make us buffer.
const MAX_CHUNK_LINE: usize = 4096;

/// Trailer fields that would change framing, routing, authentication or connection
/// handling if a downstream merged them into the header section (RFC 9110 §6.5.1).
const FORBIDDEN_TRAILERS: &[&[u8]] = &[
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"trailer",
    b"te",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"upgrade",
    b"expect",
    b"authorization",
    b"proxy-authorization",
    b"cookie",
    b"content-encoding",
    b"content-range",
    // Never a client's to send.
    RESERVED_FIELD.as_bytes(),
];

/// Where the guard is in the byte stream of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Start of the connection: the bytes so far (held in `head`) are a prefix of the
    /// HTTP/2 preface.
    Preface,
    /// HTTP/2 prior knowledge: hyper's h2 codec does its own strict parsing.
    H2,
    /// Reading a request head into `head`.
    Head,
    /// A Content-Length body with this many bytes still to pass.
    FixedBody {
        remaining: u64,
    },
    /// Reading a chunk-size line into `line`.
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after chunk data; `seen_cr` once its CR went by.
    ChunkDataEnd {
        seen_cr: bool,
    },
    /// Reading trailer field lines into `line`, up to the empty line ending the body.
    Trailers {
        fields: usize,
    },
    /// After a WebSocket candidate's head (`upgrade`): nothing more is HTTP; what
    /// arrives is held for the tunnel, never passed on.
    Held,
    Rejected(Reject),
}

/// What the header section of the request being read has said so far.
#[derive(Debug, Default)]
struct HeadFacts {
    /// Offset in `head` of the line being read.
    line_start: usize,
    /// Offset in `head` where the request starts (after a tolerated empty line).
    request_start: usize,
    seen_request_line: bool,
    http10: bool,
    get: bool,
    /// The request line's method and target (offsets from `request_start`).
    method: Span,
    target: Span,
    host: Option<Span>,
    /// `Connection` fields listed `close` / `keep-alive`.
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    upgrade: upgrade::UpgradeFacts,
    fields: usize,
    hosts: usize,
    content_types: usize,
    content_length: Option<u64>,
    transfer_encoding: TransferCodings,
}

#[derive(Debug, Default)]
struct TransferCodings {
    present: bool,
    chunked: bool,
    last_is_chunked: bool,
}

/// What the reused head buffer starts at; most request heads fit.
const HEAD_BUFFER: usize = 1024;

/// Validates the client side of an HTTP/1 connection; see the module doc.
///
/// It owns the syntax of request heads (request line, field lines, limits), the
/// framing of bodies (Content-Length, chunked with extensions and trailers) and the
/// boundaries between pipelined requests. Head bytes are held back until the whole
/// head is valid; body bytes pass as soon as they are known to be body.
#[derive(Debug)]
pub struct Http1Guard {
    limits: GuardLimits,
    state: State,
    /// The request head being read (reused between requests).
    head: BytesMut,
    facts: HeadFacts,
    /// The chunk-size or trailer line being read (reused).
    line: BytesMut,
    heads_passed: u64,
    refused_inside_body: bool,
    /// Bytes read past a WebSocket candidate's head (`State::Held`).
    held: BytesMut,
    /// The offsets of the fields of the head being read (see `sink`).
    fields: Vec<FieldSpan>,
}

impl Http1Guard {
    pub fn new(limits: GuardLimits) -> Self {
        Http1Guard {
            limits,
            state: State::Preface,
            head: BytesMut::with_capacity(HEAD_BUFFER),
            facts: HeadFacts::default(),
            line: BytesMut::new(),
            heads_passed: 0,
            refused_inside_body: false,
            held: BytesMut::new(),
            fields: Vec::new(),
        }
    }

    /// Validates `input` (the next bytes read from the client) and appends the bytes
    /// hyper may see to `out`. Head bytes are held back until the whole head is validated.
    ///
    /// After an `Err` the connection is done: every later call returns the same error.
    pub fn feed<S: Sink>(&mut self, mut input: &[u8], out: &mut S) -> Result<(), Reject> {
        if let State::Rejected(r) = self.state {
            return Err(r);
        }
        while !input.is_empty() {
            match self.step(input, out) {
                Ok(used) => input = &input[used..],
                Err(r) => {
                    self.refused_inside_body = self.is_in_body();
                    self.state = State::Rejected(r);
                    return Err(r);
                }
            }
        }
        Ok(())
    }

    /// true once the connection was recognised as HTTP/2 prior knowledge (preface
    /// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`): everything passes through unchecked from then on.
    pub fn is_h2(&self) -> bool {
        self.state == State::H2
    }

    /// Whether the first bytes told HTTP/2's preface from an HTTP/1 request yet.
    pub fn knows_version(&self) -> bool {
        self.state != State::Preface
    }

    /// true while part of a request head is held back.
    pub fn is_in_head(&self) -> bool {
        matches!(self.state, State::Head | State::Preface) && !self.head.is_empty()
    }

    /// true between requests with nothing held back: EOF here is a clean close.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head | State::Preface) && self.head.is_empty()
    }

    /// true when the refusal came inside a body: the reader already has that request's
    /// head, sees its body end early, and answers it itself.
    pub fn refused_inside_body(&self) -> bool {
        self.refused_inside_body
    }

    /// Between requests: gives back what a long head or chunk line made the reused
    /// buffers grow to, so an idle connection keeps only the usual size.
    pub fn release_idle_buffers(&mut self) {
        if self.head.capacity() > HEAD_BUFFER {
            self.head = BytesMut::with_capacity(HEAD_BUFFER);
        }
        self.line = BytesMut::new();
    }

    /// true after a WebSocket candidate's head: the reader gets EOF, and the bytes
    /// read since are held for a tunnel (see `upgrade`).
    pub fn is_held(&self) -> bool {
        self.state == State::Held
    }

    /// The bytes read past a WebSocket candidate's head.
    pub fn take_held(&mut self) -> BytesMut {
        std::mem::take(&mut self.held)
    }

    /// Gives back a field list a sink took with a head, to be reused for the next.
    pub fn recycle_fields(&mut self, mut fields: Vec<FieldSpan>) {
        if self.fields.capacity() == 0 {
            fields.clear();
            self.fields = fields;
        }
    }

    /// How many request heads were validated and passed on.
    pub fn requests_seen(&self) -> u64 {
        self.heads_passed
    }

    fn is_in_body(&self) -> bool {
        matches!(
            self.state,
            State::FixedBody { .. }
                | State::ChunkSize
                | State::ChunkData { .. }
                | State::ChunkDataEnd { .. }
                | State::Trailers { .. }
        )
    }

    /// Consumes a prefix of `input` in the current state; returns its length.
    fn step<S: Sink>(&mut self, input: &[u8], out: &mut S) -> Result<usize, Reject> {
        match self.state {
            State::Preface => Ok(self.step_preface(input, out)),
            State::H2 => {
                out.h2(input);
                Ok(input.len())
            }
            State::Head => self.step_head(input, out),
            State::FixedBody { remaining } => {
                let n = pass_body(input, remaining, out);
                self.state = match remaining - n as u64 {
                    0 => {
                        out.body_end();
                        State::Head
                    }
                    remaining => State::FixedBody { remaining },
                };
                Ok(n)
            }
            State::ChunkSize => self.step_chunk_size(input, out),
            State::ChunkData { remaining } => {
                let n = pass_body(input, remaining, out);
                self.state = match remaining - n as u64 {
                    0 => State::ChunkDataEnd { seen_cr: false },
                    remaining => State::ChunkData { remaining },
                };
                Ok(n)
            }
            State::ChunkDataEnd { seen_cr } => {
                let expected = if seen_cr { b'\n' } else { b'\r' };
                if input[0] != expected {
                    return Err(Reject::BadRequest);
                }
                out.framing(&input[..1]);
                self.state = if seen_cr {
                    State::ChunkSize
                } else {
                    State::ChunkDataEnd { seen_cr: true }
                };
                Ok(1)
            }
            State::Trailers { fields } => self.step_trailers(input, fields, out),
            State::Held => {
                // Bounded: the connection reads no more once the state is reached, so this
                // is at most the rest of the read that ended the head.
                self.held.extend_from_slice(input);
                Ok(input.len())
            }
            State::Rejected(r) => Err(r),
        }
    }

    /// Holds bytes while they could still be the HTTP/2 preface; on the first byte that
    /// cannot, replays what was held as HTTP/1 (by leaving it in `head`).
    fn step_preface<S: Sink>(&mut self, input: &[u8], out: &mut S) -> usize {
        let held = self.head.len();
        let take = input.len().min(H2_PREFACE.len() - held);
        if input[..take] != H2_PREFACE[held..held + take] {
            self.state = State::Head;
            self.replay_held_head();
            return 0;
        }
        self.head.extend_from_slice(&input[..take]);
        if self.head.len() == H2_PREFACE.len() {
            out.h2(&self.head);
            // HTTP/2 passes unchecked: the head buffer is never used again.
            self.head = BytesMut::new();
            self.state = State::H2;
        }
        take
    }

    /// The bytes held as a possible preface are re-read as the start of an HTTP/1 head.
    fn replay_held_head(&mut self) {
        // Only `PRI * HTTP/2.0\r\n\r\nSM\r\n` prefixes get here; they hold at most one
        // complete line each time around, so re-scanning from the start is enough.
        let held = std::mem::take(&mut self.head);
        let mut sink = BytesMut::new();
        // A replayed prefix is at most 23 bytes and can only fail or stay incomplete:
        // the "PRI *" request line is refused (asterisk-form needs OPTIONS).
        if let Err(r) = self.feed(&held, &mut sink) {
            self.state = State::Rejected(r);
        }
        debug_assert!(sink.is_empty());
    }

    fn step_head<S: Sink>(&mut self, input: &[u8], out: &mut S) -> Result<usize, Reject> {
        let Some(lf) = memchr(b'\n', input) else {
            self.head.extend_from_slice(input);
            self.check_head_line_limits(self.head.len())?;
            return Ok(input.len());
        };
        self.head.extend_from_slice(&input[..=lf]);
        self.end_head_line(out)?;
        Ok(lf + 1)
    }

    /// Refuses a line too long before its end arrives (no unbounded buffering), and a
    /// head past `limits.head` (line limits alone allow 800 KB). `held`: all of `head`
    /// while the line is partial, all but its LF once it ended. The limit crossed
    /// first answers, so the refusal never depends on where the reads ended.
    fn check_head_line_limits(&self, held: usize) -> Result<(), Reject> {
        // The line may end in the CR of its CRLF, hence the + 1 and the - 1.
        let (line_limit, too_long) = match self.facts.seen_request_line {
            false => (self.limits.request_line + 1, Reject::UriTooLong),
            true => (
                self.limits.field_size.saturating_sub(1),
                Reject::HeaderFieldsTooLarge,
            ),
        };
        let line_past = self.facts.line_start + line_limit;
        let head_past = self.facts.request_start + self.limits.head;
        match held > line_past.min(head_past) {
            true if line_past <= head_past => Err(too_long),
            true => Err(Reject::HeaderFieldsTooLarge),
            false => Ok(()),
        }
    }

    /// A complete line (ending in LF) was appended to `head`: validate it.
    fn end_head_line<S: Sink>(&mut self, out: &mut S) -> Result<(), Reject> {
        self.check_head_line_limits(self.head.len() - 1)?;
        let start = self.facts.line_start;
        let line = strip_crlf(&self.head[start..])?;
        if self.head.len() - self.facts.request_start > self.limits.head {
            return Err(Reject::HeaderFieldsTooLarge); // the LF counts too
        }
        self.facts.line_start = self.head.len();
        if !self.facts.seen_request_line {
            if line.is_empty() && start == 0 {
                // RFC 9112 §2.2: one empty line before the request line is tolerated.
                self.facts.request_start = self.head.len();
                return Ok(());
            }
            let checked = check_request_line(line, &self.limits)?;
            self.facts.seen_request_line = true;
            self.facts.http10 = checked.http10;
            self.facts.get = checked.get;
            (self.facts.method, self.facts.target) = (checked.method, checked.target);
            self.fields.clear();
            return Ok(());
        }
        if line.is_empty() {
            return self.end_head(out);
        }
        let field = line;
        self.facts.fields += 1;
        if self.facts.fields > self.limits.fields || field.len() + 2 > self.limits.field_size {
            return Err(Reject::HeaderFieldsTooLarge);
        }
        let (name, value) = split_field_line(field)?;
        self.facts.upgrade.note(name, value);
        note_framing_field(&mut self.facts, name, value)?;
        let request = &self.head[self.facts.request_start..];
        let span = FieldSpan {
            name: Span::of(request, name),
            value: Span::of(request, value),
        };
        note_connection_field(&mut self.facts, name, value, span.value);
        self.fields.push(span);
        Ok(())
    }

    /// The empty line ending the head arrived: decide the body framing and pass the head.
    fn end_head<S: Sink>(&mut self, out: &mut S) -> Result<(), Reject> {
        let f = &self.facts;
        if f.hosts == 0 && !f.http10 && self.limits.require_host {
            return Err(Reject::BadRequest);
        }
        let te = &f.transfer_encoding;
        let next = if te.present {
            // RFC 9112 §6.1: TE in HTTP/1.0, with Content-Length, or without a final
            // `chunked` makes the framing ambiguous: refuse rather than guess.
            if f.http10 || f.content_length.is_some() || !te.last_is_chunked {
                return Err(Reject::BadRequest);
            }
            State::ChunkSize
        } else {
            match f.content_length {
                Some(n) if n > 0 => State::FixedBody { remaining: n },
                _ => State::Head,
            }
        };
        // A WebSocket candidate: whatever its framing says, nothing after its head is
        // read as HTTP (the front refuses a handshake with a body).
        let upgrade = f.upgrade.is_candidate(f.get, f.http10);
        let next = match upgrade {
            true => State::Held,
            false => next,
        };
        let summary = summarize(f, &next, upgrade);
        out.head(ValidHead {
            buf: &mut self.head,
            start: f.request_start,
            summary,
            fields: &mut self.fields,
        });
        self.head.clear();
        self.facts = HeadFacts::default();
        self.heads_passed += 1;
        self.state = next;
        Ok(())
    }

    fn step_chunk_size<S: Sink>(&mut self, input: &[u8], out: &mut S) -> Result<usize, Reject> {
        let Some(used) = self.take_line(input, MAX_CHUNK_LINE, Reject::BadRequest)? else {
            return Ok(input.len());
        };
        let size = parse_chunk_size_line(strip_crlf(&self.line)?)?;
        out.framing(&self.line);
        self.line.clear();
        self.state = match size {
            0 => State::Trailers { fields: 0 },
            remaining => State::ChunkData { remaining },
        };
        Ok(used)
    }

    fn step_trailers<S: Sink>(
        &mut self,
        input: &[u8],
        fields: usize,
        out: &mut S,
    ) -> Result<usize, Reject> {
        let max = self.limits.field_size;
        let Some(used) = self.take_line(input, max, Reject::HeaderFieldsTooLarge)? else {
            return Ok(input.len());
        };
        let line = strip_crlf(&self.line)?;
        let end = line.is_empty();
        if end {
            self.state = State::Head;
        } else {
            if fields + 1 > self.limits.fields || line.len() + 2 > max {
                return Err(Reject::HeaderFieldsTooLarge);
            }
            let (name, _) = split_field_line(line)?;
            if FORBIDDEN_TRAILERS
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
            {
                return Err(Reject::BadRequest);
            }
            self.state = State::Trailers { fields: fields + 1 };
        }
        out.framing(&self.line);
        if end {
            out.body_end();
        }
        self.line.clear();
        Ok(used)
    }

    /// Appends `input` to `line` up to and including the first LF. Returns how much was
    /// used when the line is complete, `None` when more input is needed.
    fn take_line(
        &mut self,
        input: &[u8],
        max: usize,
        too_long: Reject,
    ) -> Result<Option<usize>, Reject> {
        let end = memchr(b'\n', input).map(|lf| lf + 1);
        let chunk = &input[..end.unwrap_or(input.len())];
        if self.line.len() + chunk.len() > max {
            return Err(too_long);
        }
        self.line.extend_from_slice(chunk);
        Ok(end)
    }
}

/// Passes up to `remaining` bytes of body; returns how many.
fn pass_body<S: Sink>(input: &[u8], remaining: u64, out: &mut S) -> usize {
    let n = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
    out.body(&input[..n]);
    n
}

/// What the sink learns of a head besides its offsets; `next` is the state its end
/// leads to (the framing decided).
fn summarize(f: &HeadFacts, next: &State, upgrade: bool) -> HeadSummary {
    HeadSummary {
        method: f.method,
        target: f.target,
        http10: f.http10,
        framing: match *next {
            State::FixedBody { remaining } => Framing::Length(remaining),
            State::ChunkSize => Framing::Chunked,
            _ => Framing::None,
        },
        keep_alive: !f.connection_close && (!f.http10 || f.connection_keep_alive),
        expect_continue: f.expect_continue && !f.http10,
        upgrade,
        host: f.host,
    }
}

/// A line as read (ending in LF) without its CRLF; a bare LF is refused.
fn strip_crlf(line: &[u8]) -> Result<&[u8], Reject> {
    match line {
        [rest @ .., b'\r', b'\n'] => Ok(rest),
        _ => Err(Reject::BadRequest),
    }
}

/// What a valid request line says about the rest of the request.
struct RequestLine {
    method: Span,
    target: Span,
    http10: bool,
    /// The method is `GET` (a WebSocket handshake's).
    get: bool,
}

/// Validates `method SP request-target SP HTTP-version`.
fn check_request_line(line: &[u8], limits: &GuardLimits) -> Result<RequestLine, Reject> {
    if line.len() > limits.request_line {
        return Err(Reject::UriTooLong);
    }
    let sp1 = memchr(b' ', line).ok_or(Reject::BadRequest)?;
    let (method, rest) = (&line[..sp1], &line[sp1 + 1..]);
    let sp2 = memchr(b' ', rest).ok_or(Reject::BadRequest)?;
    let (target, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    check_method(method)?;
    check_target(method, target)?;
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Reject::VersionNotSupported)
        }
        _ => return Err(Reject::BadRequest),
    };
    Ok(RequestLine {
        method: Span::of(line, method),
        target: Span::of(line, target),
        http10,
        get: method == b"GET",
    })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
