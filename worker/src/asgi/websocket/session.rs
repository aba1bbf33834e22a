//! One accepted WebSocket, server side, without I/O (RFC 6455 §5-§7): fed the bytes
//! read from the client, it yields whole messages (fragments reassembled, text
//! checked as UTF-8 while it arrives, so a bad prefix fails at once) and the
//! connection's end; it queues what it answers by itself (a pong for a ping, the
//! reply to a close, and, once the app has taken the messages before it, the close
//! that fails the connection on a protocol error) with what the app sends, for the
//! caller to write. Nothing here waits or allocates
//! while idle: a session between messages holds a partial frame head (at most 14
//! bytes, inline) and no buffer.

use super::frame::{self, Head};

/// The largest message taken from a client (uvicorn's `ws_max_size`); a larger one
/// fails the connection with 1009.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// Pings are answered while less than this waits to be written.
const PONG_BACKLOG: usize = 1 << 20;

/// What the client said, as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Text(String),
    Binary(Vec<u8>),
    /// The connection is over: the client's close (its code, 1005 when it gave
    /// none, and reason), the code the server failed it with (1002, 1007, 1009), or
    /// 1006 when the socket ended without a close.
    Closed {
        code: u16,
        reason: String,
    },
}

/// Why the app cannot send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    #[error("the WebSocket is closed")]
    Closed,
    #[error("close code {0} may not be sent (RFC 6455 §7.4)")]
    Code(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The server's close is queued; the client's reply ends it.
    CloseSent,
    /// The client broke the protocol: nothing more is read, and the close with
    /// this code waits for `flush_failure`, so that what the app answers to the
    /// messages before the fault goes out first (RFC 6455 §7.1.7; Autobahn's
    /// strict order). The app may still send until then.
    Failing(u16),
    /// Nothing more is read or sent; the caller closes the socket once the queued
    /// bytes are written.
    Closed,
}

/// Where the reader is inside the client's stream of frames.
#[derive(Debug)]
enum Rx {
    Head {
        buf: [u8; frame::MAX_HEAD],
        have: u8,
    },
    Payload {
        head: Head,
        done: u64,
    },
}

const NO_HEAD: Rx = Rx::Head {
    buf: [0; frame::MAX_HEAD],
    have: 0,
};

/// A data message being reassembled.
#[derive(Debug)]
struct Message {
    text: bool,
    data: Vec<u8>,
    /// How much of a text message is known to be valid UTF-8 (the rest is the
    /// start of a sequence its next bytes complete).
    checked: usize,
}

/// A failure of the connection: the close code sent, and why (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fail(u16, &'static str);

/// One WebSocket's state.
#[derive(Debug)]
pub(crate) struct Session {
    state: State,
    rx: Rx,
    msg: Option<Message>,
    /// The control frame being read (at most 125 bytes; empty between frames).
    control: Vec<u8>,
    /// Bytes to write, of which `sent` are written.
    out: Vec<u8>,
    sent: usize,
    max_message: usize,
    /// Why the server failed the connection, for the caller's log.
    failure: Option<&'static str>,
}

impl Session {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            state: State::Open,
            rx: NO_HEAD,
            msg: None,
            control: Vec::new(),
            out: Vec::new(),
            sent: 0,
            max_message,
            failure: None,
        }
    }

    /// A session whose first bytes out are `head` (the `101` that accepts it).
    pub(crate) fn accepted(max_message: usize, head: Vec<u8>) -> Self {
        Self {
            out: head,
            ..Self::new(max_message)
        }
    }

    /// Takes `data`, read from the client, and appends what it completes to `events`.
    pub(crate) fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) {
        if let Err(Fail(code, why)) = self.read(data, events) {
            self.failure = Some(why);
            self.finish(code, events);
        }
    }

    /// The client's socket ended (EOF or an error): 1006 unless already closed.
    pub(crate) fn feed_eof(&mut self, events: &mut Vec<Event>) {
        let told = matches!(self.state, State::Closed | State::Failing(_));
        self.release();
        if !told {
            events.push(Event::Closed {
                code: 1006,
                reason: String::new(),
            });
        }
    }

    /// Queues the close that fails the connection, once the app has taken the
    /// messages before the fault (see `State::Failing`).
    pub(crate) fn flush_failure(&mut self) {
        if let State::Failing(code) = self.state {
            self.push(frame::CLOSE, &code.to_be_bytes());
            self.state = State::Closed;
        }
    }

    /// Whether a failing close waits for `flush_failure`.
    pub(crate) fn is_failing(&self) -> bool {
        matches!(self.state, State::Failing(_))
    }

    /// Whether bytes from the client are still wanted.
    pub(crate) fn is_reading(&self) -> bool {
        matches!(self.state, State::Open | State::CloseSent)
    }

    /// Why the server failed the connection, if it did.
    pub(crate) fn failure(&self) -> Option<&'static str> {
        self.failure
    }

    fn read(&mut self, mut data: &[u8], events: &mut Vec<Event>) -> Result<(), Fail> {
        while !data.is_empty() && self.is_reading() {
            let used = match &mut self.rx {
                Rx::Head { buf, have } => {
                    let have_before = usize::from(*have);
                    let take = data.len().min(frame::MAX_HEAD - have_before);
                    let parsed = if have_before == 0 {
                        frame::parse_head(data)
                    } else {
                        buf[have_before..have_before + take].copy_from_slice(&data[..take]);
                        frame::parse_head(&buf[..have_before + take])
                    };
                    match parsed.map_err(|e| Fail(1002, head_error(e)))? {
                        Some((head, len)) => {
                            self.start_frame(head, events)?;
                            len - have_before
                        }
                        None => {
                            buf[have_before..have_before + take].copy_from_slice(&data[..take]);
                            *have = (have_before + take) as u8;
                            take
                        }
                    }
                }
                Rx::Payload { head, done } => {
                    let (head, at) = (*head, *done);
                    let take = data
                        .len()
                        .min(usize::try_from(head.len - at).unwrap_or(usize::MAX));
                    self.payload(&head, at, &data[..take])?;
                    if at + take as u64 == head.len {
                        self.rx = NO_HEAD;
                        self.end_frame(&head, events)?;
                    } else {
                        self.rx = Rx::Payload {
                            head,
                            done: at + take as u64,
                        };
                    }
                    take
                }
            };
            data = &data[used..];
        }
        Ok(())
    }

    /// A head is read: checks it against the message in progress and the size limit.
    fn start_frame(&mut self, head: Head, events: &mut Vec<Event>) -> Result<(), Fail> {
        if !head.is_control() {
            let so_far = match (&self.msg, head.opcode) {
                (None, frame::CONTINUATION) => {
                    return Err(Fail(1002, "a continuation frame outside a message"))
                }
                (Some(_), frame::TEXT | frame::BINARY) => {
                    return Err(Fail(1002, "a new message inside a fragmented one"))
                }
                (Some(m), _) => m.data.len(),
                (None, _) => 0,
            };
            if head.len > (self.max_message - so_far) as u64 {
                return Err(Fail(1009, "a message over the size limit"));
            }
            if self.msg.is_none() {
                self.msg = Some(Message {
                    text: head.opcode == frame::TEXT,
                    data: Vec::new(),
                    checked: 0,
                });
            }
        }
        self.rx = Rx::Payload { head, done: 0 };
        if head.len == 0 {
            self.rx = NO_HEAD;
            self.end_frame(&head, events)?;
        }
        Ok(())
    }

    /// Payload bytes `chunk` of the frame `head`, `at` bytes into it.
    fn payload(&mut self, head: &Head, at: u64, chunk: &[u8]) -> Result<(), Fail> {
        let (buf, checked) = match self.msg.as_mut() {
            Some(m) if !head.is_control() => (&mut m.data, m.text.then_some(&mut m.checked)),
            _ => (&mut self.control, None),
        };
        let start = buf.len();
        buf.extend_from_slice(chunk);
        frame::unmask(&mut buf[start..], head.mask, at);
        if let Some(checked) = checked {
            match std::str::from_utf8(&buf[*checked..]) {
                Ok(_) => *checked = buf.len(),
                Err(e) if e.error_len().is_none() => *checked += e.valid_up_to(),
                Err(_) => return Err(Fail(1007, "a text message that is not UTF-8")),
            }
        }
        Ok(())
    }

    /// A whole frame is read.
    fn end_frame(&mut self, head: &Head, events: &mut Vec<Event>) -> Result<(), Fail> {
        match head.opcode {
            frame::PING => {
                let payload = std::mem::take(&mut self.control);
                // A client that reads none of its pongs (a ping flood) gets no more
                // while a megabyte waits: RFC 6455 §5.5.3 lets pongs be skipped.
                if self.state == State::Open && self.pending().len() < PONG_BACKLOG {
                    self.push(frame::PONG, &payload);
                }
            }
            frame::PONG => self.control = Vec::new(),
            frame::CLOSE => {
                let (code, reason) = close_payload(&std::mem::take(&mut self.control))?;
                if self.state == State::Open {
                    // Echo the code (an empty close for none), as the RFC's §5.5.1 suggests.
                    let echo = if code == 1005 {
                        Vec::new()
                    } else {
                        code.to_be_bytes().to_vec()
                    };
                    self.push(frame::CLOSE, &echo);
                }
                self.release();
                events.push(Event::Closed { code, reason });
            }
            _ if head.fin => self.end_message(events)?,
            _ => {}
        }
        Ok(())
    }

    fn end_message(&mut self, events: &mut Vec<Event>) -> Result<(), Fail> {
        let Some(m) = self.msg.take() else {
            return Ok(());
        };
        let event = if m.text {
            match String::from_utf8(m.data) {
                Ok(s) => Event::Text(s),
                Err(_) => return Err(Fail(1007, "a text message ending inside a UTF-8 sequence")),
            }
        } else {
            Event::Binary(m.data)
        };
        // After its close the server reads only for the client's reply (§1.4).
        if self.state == State::Open {
            events.push(event);
        }
        Ok(())
    }

    /// Fails the connection with `code`: a close frame (by `flush_failure`) unless
    /// one was sent.
    fn finish(&mut self, code: u16, events: &mut Vec<Event>) {
        let open = self.state == State::Open;
        self.release();
        if open {
            self.state = State::Failing(code);
        }
        events.push(Event::Closed {
            code,
            reason: String::new(),
        });
    }

    /// Closed: what was being read is dropped.
    fn release(&mut self) {
        self.state = State::Closed;
        self.rx = NO_HEAD;
        self.msg = None;
        self.control = Vec::new();
    }
}

/// The server's side: what the app sends, and the bytes for the caller to write.
impl Session {
    /// Queues a text message (one final frame).
    pub(crate) fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(frame::TEXT, text.as_bytes())
    }

    /// Queues a binary message (one final frame).
    pub(crate) fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send(frame::BINARY, data)
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::Closed);
        }
        self.push(opcode, payload);
        Ok(())
    }

    /// Queues the server's close (`code`, and `reason` cut to the 123 bytes a close
    /// frame holds, at a character's end); the client's reply will end the session.
    pub(crate) fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        if !sendable(code) {
            return Err(SendError::Code(code));
        }
        if let State::Failing(_) = self.state {
            self.flush_failure(); // the fault's code, not the app's
            return Ok(());
        }
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        self.push(frame::CLOSE, &payload);
        self.state = State::CloseSent;
        Ok(())
    }

    /// Whether the app may still send (no close sent or received).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open | State::Failing(_))
    }

    /// Whether the session is over: once `pending` is empty, the socket is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The bytes to write next.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// `n` bytes of `pending` were written. Once all are, the buffer is let go.
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
        if self.sent == self.out.len() {
            self.out = Vec::new();
            self.sent = 0;
        }
    }

    fn push(&mut self, opcode: u8, payload: &[u8]) {
        // Written bytes are dropped before the buffer grows past twice what is unsent.
        if self.sent > 0 && self.sent >= self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        frame::encode(&mut self.out, opcode, payload);
    }
}

/// A close frame's payload: its code (1005 when empty) and reason (§5.5.1, §7.4).
fn close_payload(p: &[u8]) -> Result<(u16, String), Fail> {
    let Some((code, reason)) = p.split_first_chunk::<2>() else {
        return match p.is_empty() {
            true => Ok((1005, String::new())),
            false => Err(Fail(1002, "a close frame of one byte")),
        };
    };
    let code = u16::from_be_bytes(*code);
    if !sendable(code) {
        return Err(Fail(1002, "a close code that may not be sent"));
    }
    match std::str::from_utf8(reason) {
        Ok(r) => Ok((code, r.to_owned())),
        Err(_) => Err(Fail(1007, "a close reason that is not UTF-8")),
    }
}

/// The codes an endpoint may put in a close frame: the registered ones, less
/// 1004-1006 and 1015 (never sent), and the private 3000-4999.
pub(crate) fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn head_error(e: frame::HeadError) -> &'static str {
    match e {
        frame::HeadError::Reserved => "a reserved bit set",
        frame::HeadError::Opcode(_) => "a reserved opcode",
        frame::HeadError::Unmasked => "an unmasked client frame",
        frame::HeadError::FragmentedControl => "a fragmented control frame",
        frame::HeadError::LongControl => "a control frame over 125 bytes",
        frame::HeadError::Length => "a 64-bit length with its top bit set",
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
