//! [`GuardedIo`]: the client stream with every read passed through the guard, the
//! guard's error response written on shutdown, and the HTTP/1 slow-client timeouts
//! (idle, head, stalled write) enforced where the bytes are seen.
//!
//! It also parks an idle HTTP/1 connection: once hyper has answered every request and
//! flushed, and the client has sent nothing for [`PARK_AFTER`], reads return EOF, so
//! hyper's connection ends without a shutdown and its buffers (16 KiB) are freed; the
//! stream then waits here ([`GuardedIo::next_request`]) with a few hundred bytes, as
//! nginx's keep-alive state does, and a new hyper connection takes the next request.
//!
//! Client close: while an answer is pending hyper reads nothing (`half_close`), so
//! each flush looks at the client's side instead; its EOF or reset fails the flush,
//! which ends the request as nginx does (`GuardedIo::watch_for_client_close`).

use super::{GuardLimits, Http1Guard, Reject};
use bytes::{Buf, Bytes, BytesMut};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Size of the buffer each read from the client goes into.
const SCRATCH: usize = 8 * 1024;

thread_local! {
    /// The buffer reads from clients go into, one per thread: each read is validated and
    /// copied out before the next connection reads, so a buffer per connection would
    /// only sit idle (8 KiB of every idle keep-alive connection, 80 MiB for 10,000).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// How long an HTTP/1 connection stays idle between requests before it is parked: a
/// client that sends its next request sooner keeps its hyper connection (making one
/// costs about as much as serving a small request's head).
pub const PARK_AFTER: Duration = Duration::from_millis(500);

/// Connections parked right now, in all threads (`ferricorn_connections_parked`).
static PARKED: AtomicU64 = AtomicU64::new(0);

/// How many HTTP/1 connections are parked now.
pub fn parked_connections() -> u64 {
    PARKED.load(Ordering::Relaxed)
}

/// The responses hyper finished with on one HTTP/1 connection, counted by the front as
/// each response body is dropped. Equal to the guard's count of requests, hyper owes
/// nothing and waits for the next request.
///
/// It also carries the guard's word that it held the bytes after a WebSocket
/// candidate's head (`guard::upgrade`), for the front.
#[derive(Debug, Default)]
pub struct Answered(AtomicU64, std::sync::atomic::AtomicBool);

impl Answered {
    pub fn one_more(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The HTTP/1 codec read a WebSocket candidate's head (see `is_held`).
    pub fn hold(&self) {
        self.1.store(true, Ordering::Release);
    }

    /// The guard held the bytes after a WebSocket candidate's head.
    pub fn is_held(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }
}

/// Whether hyper may be told EOF to park the connection.
#[derive(Debug)]
struct Parking {
    answered: Arc<Answered>,
    /// `answered` when hyper last flushed: its write buffer was empty then.
    flushed_answers: u64,
    /// Something was written since that flush.
    dirty: bool,
    /// EOF was handed to hyper to park; the stream waits for the next request.
    parked: bool,
}

/// After a refusal, at most this much unread input is drained before the close, so the
/// kernel sends our error response and a FIN instead of a reset that could destroy it.
const DRAIN_ON_REJECT: usize = 64 * 1024;

/// A client stream whose reads pass through an [`Http1Guard`].
///
/// Reads return only validated bytes; after a violation they return EOF, so hyper
/// answers the earlier pipelined requests and then shuts the connection down. That
/// shutdown ([`AsyncWrite::poll_shutdown`]) first writes the guard's error response.
/// Writes pass straight through.
#[derive(Debug)]
pub struct GuardedIo<T: AsyncRead + AsyncWrite + Unpin> {
    /// Always `Some` but inside `into_tunnel`, which takes it (the type has a `Drop`).
    inner: Option<T>,
    guard: Http1Guard,
    /// Validated bytes not yet handed to the reader.
    ready: BytesMut,
    read_closed: bool,
    reject: Option<Reject>,
    /// How much of the reject response is written; `usize::MAX` once taken elsewhere.
    reject_written: usize,
    /// The reader wrote something after the refusal (see `owes_reject_response`).
    wrote_after_reject: bool,
    /// What the client sent after a held head was discarded before the close.
    held_drained: bool,
    timeouts: Option<ConnTimeouts>,
    /// When the wait for the head being held back began.
    head_started: Option<Instant>,
    /// When the current wait between requests began; cleared when bytes arrive.
    idle_since: Option<Instant>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    parking: Option<Parking>,
}

/// Timeouts against slow clients, enforced where the bytes are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// Between requests (and before the first one): the connection is closed silently.
    pub idle: Duration,
    /// From the first byte of a request head to its end: 408, then close.
    pub head: Duration,
    /// A write to the client that makes no progress this long ends the connection.
    pub write: Duration,
}

/// What a read timer does when it fires.
enum Expiry {
    /// Idle keep-alive connection: close without a word.
    Close,
    /// A head took too long: 408.
    Reject(Reject),
    /// Idle long enough to park (see the module doc).
    Park,
}

impl<T: AsyncRead + AsyncWrite + Unpin> GuardedIo<T> {
    /// Enables the slow-client timeouts (off by default, as in the unit tests).
    pub fn with_timeouts(mut self, timeouts: ConnTimeouts) -> Self {
        self.timeouts = Some(timeouts);
        self
    }

    /// The deadline for the read in progress, if the guard's state calls for one.
    fn read_deadline(&mut self) -> Option<(Instant, Expiry)> {
        let t = self.timeouts?;
        if self.guard.is_h2() {
            return None;
        }
        if self.guard.is_in_head() {
            let started = *self.head_started.get_or_insert_with(Instant::now);
            return Some((started + t.head, Expiry::Reject(Reject::RequestTimeout)));
        }
        self.head_started = None;
        // Inside a body the front's body-read timeout applies (it answers 408 itself).
        if !self.guard.is_idle() {
            return None;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        if PARK_AFTER < t.idle && self.may_park() {
            return Some((since + PARK_AFTER, Expiry::Park));
        }
        Some((since + t.idle, Expiry::Close))
    }

    /// Parks idle connections from now on; the front counts the answers in `answered`.
    pub fn park_when_idle(&mut self, answered: Arc<Answered>) {
        // The first head may have been read (and held) while the version was sniffed.
        if self.guard.is_held() {
            answered.1.store(true, Ordering::Release);
        }
        self.parking = Some(Parking {
            answered,
            flushed_answers: 0,
            dirty: false,
            parked: false,
        });
    }

    /// hyper owes the client nothing, and nothing is left to hand to it.
    fn may_park(&self) -> bool {
        let Some(p) = &self.parking else {
            return false;
        };
        let answered = p.answered.count();
        !p.parked
            && !p.dirty
            && p.flushed_answers == answered
            && answered == self.guard.requests_seen()
            && self.ready.is_empty()
            && self.reject.is_none()
            && !self.read_closed
    }

    /// Whether the last EOF hyper read was the one that parks the connection.
    pub fn is_parked(&self) -> bool {
        self.parking.as_ref().is_some_and(|p| p.parked)
    }

    /// Takes back bytes hyper read and did not use (none, when it was parked idle).
    pub fn unread(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            let mut all = BytesMut::from(&bytes[..]);
            all.extend_from_slice(&self.ready);
            self.ready = all;
        }
    }

    /// Waits, parked, for the next request's first validated bytes: `Ok(true)` when
    /// they are here for a new hyper connection, `Ok(false)` when the connection ended
    /// (EOF, the idle timeout, or a refusal whose response `poll_shutdown` writes).
    pub async fn next_request(&mut self) -> io::Result<bool> {
        if self.ready.is_empty() {
            self.ready = BytesMut::new();
        }
        self.guard.release_idle_buffers();
        std::future::poll_fn(|cx| self.poll_next_request(cx)).await
    }

    fn poll_next_request(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if !self.ready.is_empty() {
                self.set_parked(false);
                return Poll::Ready(Ok(true));
            }
            if self.read_closed {
                return Poll::Ready(Ok(false));
            }
            ready!(self.poll_more(cx))?;
        }
    }

    fn set_parked(&mut self, parked: bool) {
        if let Some(p) = &mut self.parking {
            if p.parked != parked {
                match parked {
                    true => PARKED.fetch_add(1, Ordering::Relaxed),
                    false => PARKED.fetch_sub(1, Ordering::Relaxed),
                };
                p.parked = parked;
            }
        }
    }

    /// hyper flushed with its buffer empty; if that leaves the connection idle, the
    /// read timer is moved to the parking deadline now, since hyper reads no more
    /// until the client sends something.
    fn on_flushed(&mut self, cx: &mut Context<'_>) {
        let Some(p) = &mut self.parking else {
            return;
        };
        p.dirty = false;
        p.flushed_answers = p.answered.count();
        if self.guard.is_idle() && self.may_park() {
            if let Poll::Ready(expiry) = self.poll_read_timer(cx) {
                self.expire(expiry);
                cx.waker().wake_by_ref();
            }
        }
    }

    /// Nothing to read yet: arm the timer for this state and see whether it fired.
    fn poll_read_timer(&mut self, cx: &mut Context<'_>) -> Poll<Expiry> {
        let Some((deadline, expiry)) = self.read_deadline() else {
            self.read_timer = None;
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let timer = match &mut self.read_timer {
            Some(t) => {
                if t.deadline() != deadline {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self
                .read_timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.read_timer = None;
                Poll::Ready(expiry)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write that cannot progress: fail it once the write timeout passes.
    fn poll_write_timer(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(t) = self.timeouts else {
            return Poll::Pending;
        };
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(t.write)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read the response in time",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(
            self.inner
                .as_mut()
                .expect("only into_tunnel takes the stream"),
        )
    }

    /// After a WebSocket candidate's head (see `guard::upgrade`) and hyper's answer:
    /// the client stream and the bytes read past that head (any hyper did not use
    /// must be given back with [`GuardedIo::unread`] first), for the tunnel's relay.
    pub fn into_tunnel(mut self) -> (T, BytesMut) {
        let mut bytes = std::mem::take(&mut self.ready);
        bytes.extend_from_slice(&self.guard.take_held());
        let inner = self
            .inner
            .take()
            .expect("only into_tunnel takes the stream");
        (inner, bytes)
    }

    /// Whether the last head was a WebSocket candidate: hyper was given EOF after it.
    pub fn is_held(&self) -> bool {
        self.guard.is_held()
    }

    pub fn new(inner: T, limits: GuardLimits) -> Self {
        GuardedIo {
            inner: Some(inner),
            guard: Http1Guard::new(limits),
            ready: BytesMut::new(),
            read_closed: false,
            reject: None,
            reject_written: 0,
            wrote_after_reject: false,
            held_drained: false,
            timeouts: None,
            head_started: None,
            idle_since: None,
            read_timer: None,
            write_timer: None,
            parking: None,
        }
    }

    /// Reads until the first bytes tell HTTP/2's preface from an HTTP/1 request (or
    /// the connection ends, is refused, or times out: HTTP/1's path then answers or
    /// closes it). The bytes stay here for hyper. `Ok(true)`: HTTP/2.
    pub async fn sniff_h2(&mut self) -> io::Result<bool> {
        std::future::poll_fn(|cx| self.poll_sniff_h2(cx)).await
    }

    fn poll_sniff_h2(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        while !self.guard.knows_version() && !self.read_closed {
            ready!(self.poll_more(cx))?;
        }
        Poll::Ready(Ok(self.guard.is_h2()))
    }

    /// Reads once more from the client into the guard, or notes that the input
    /// ended (EOF, a refusal, a timer that fired: `read_closed`).
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_fill(cx) {
            Poll::Ready(Ok(true)) => {}
            Poll::Ready(Ok(false)) => self.read_closed = true,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                let expiry = ready!(self.poll_read_timer(cx));
                self.expire(expiry);
            }
        }
        Poll::Ready(Ok(()))
    }

    /// What a read timer that fired does.
    fn expire(&mut self, expiry: Expiry) {
        match expiry {
            Expiry::Close => self.read_closed = true,
            Expiry::Reject(r) => {
                tracing::debug!(status = r.status().as_u16(), "slow request head");
                self.reject = Some(r);
                self.read_closed = true;
            }
            Expiry::Park => self.set_parked(true),
        }
    }

    /// The refusal whose response has not been written yet, if any; taking it means the
    /// caller writes the response, so [`AsyncWrite::poll_shutdown`] will not.
    pub fn take_pending_reject(&mut self) -> Option<Reject> {
        let r = self.owes_reject_response()?;
        self.reject_written = usize::MAX;
        Some(r)
    }

    /// The refusal whose response is still ours to write, if any. A refusal inside a
    /// body is different: the reader has that request's head and sees its body end
    /// early, so it answers (hyper passes the service a body error, and the front
    /// answers 400); we only answer when it wrote nothing, e.g. because it gave up.
    fn owes_reject_response(&self) -> Option<Reject> {
        let r = self.reject?;
        let answered = self.guard.refused_inside_body() && self.wrote_after_reject;
        (self.reject_written == 0 && !answered).then_some(r)
    }

    /// What every write to the client does with its result: progress stops the
    /// write timer, no progress runs it.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let n = match polled {
            Poll::Ready(r) => {
                self.write_timer = None;
                r?
            }
            Poll::Pending => return self.poll_write_timer(cx).map(Err),
        };
        self.note_written(n);
        Poll::Ready(Ok(n))
    }

    fn note_writing(&mut self) {
        if let Some(p) = &mut self.parking {
            p.dirty = true;
        }
    }

    fn note_written(&mut self, n: usize) {
        if self.reject.is_some() && n > 0 {
            self.wrote_after_reject = true;
        }
    }

    /// Reads once from the client into the guard; false at EOF or on a refusal.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut rb = ReadBuf::new(scratch);
            ready!(self.io().poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(false));
            }
            self.idle_since = None;
            if let Err(r) = self.guard.feed(&scratch[..n], &mut self.ready) {
                tracing::debug!(status = r.status().as_u16(), "request refused by the guard");
                self.reject = Some(r);
                return Poll::Ready(Ok(false));
            }
            if self.guard.is_held() {
                if let Some(p) = &self.parking {
                    p.answered.1.store(true, Ordering::Release);
                }
            }
            Poll::Ready(Ok(true))
        })
    }

    /// While a response is owed, watches the client's side for its close: hyper reads
    /// nothing then (`half_close`), so a client that leaves during an idle stream would
    /// hold its worker until the next write. nginx ends the proxied request when the
    /// client's EOF comes first (`proxy_ignore_client_abort off`), a half-close
    /// included; so does this: the error it returns ends hyper's connection, whose
    /// dropped response body tells the worker (`Abort`).
    ///
    /// The watch reads through the guard, so bytes a client pipelined are kept for
    /// hyper (one read's worth: it stops once any are waiting). It costs no syscall
    /// when nothing arrived: tokio knows the socket is drained since hyper's last read.
    fn watch_for_client_close(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.watches_client() {
            return None;
        }
        let gone = match self.poll_fill(cx) {
            Poll::Pending | Poll::Ready(Ok(true)) => return None,
            // A refusal of what the client pipelined: hyper meets it as it does today.
            Poll::Ready(Ok(false)) if self.reject.is_some() => {
                self.read_closed = true;
                return None;
            }
            Poll::Ready(Ok(false)) => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "client closed its connection with a response pending",
            ),
            Poll::Ready(Err(e)) => e,
        };
        tracing::debug!(error = %gone, "client left with a response pending");
        self.read_closed = true;
        Some(gone)
    }

    /// A response is owed (the front has not finished every request the guard
    /// passed), hyper holds nothing unread of ours, and the input is between requests.
    fn watches_client(&self) -> bool {
        let Some(p) = &self.parking else {
            return false;
        };
        !self.read_closed
            && self.ready.is_empty()
            && self.guard.is_idle()
            && p.answered.count() < self.guard.requests_seen()
    }

    fn poll_write_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(r) = self.reject else {
            return Poll::Ready(Ok(()));
        };
        if self.reject_written == 0 {
            if self.owes_reject_response().is_none() {
                return Poll::Ready(Ok(()));
            }
            self.drain_unread_input(cx);
        }
        let bytes = r.response_bytes();
        while self.reject_written < bytes.len() {
            let rest = &bytes[self.reject_written..];
            let n = ready!(self.io().poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.reject_written += n;
        }
        self.io().poll_flush(cx)
    }

    /// Discards what the client already sent (without waiting for more): closing a
    /// socket with unread input makes the kernel send a reset instead of our response.
    fn drain_unread_input(&mut self, cx: &mut Context<'_>) {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut drained = 0;
            while drained < DRAIN_ON_REJECT {
                let mut rb = ReadBuf::new(scratch);
                match self.io().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => drained += rb.filled().len(),
                    _ => break,
                }
            }
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = buf.remaining().min(this.ready.len());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            // After a WebSocket candidate's head, hyper gets EOF and later bytes
            // stay held (or unread in the kernel) for the tunnel.
            if this.read_closed || this.is_parked() || this.guard.is_held() {
                return Poll::Ready(Ok(()));
            }
            if this.guard.is_h2() {
                return this.io().poll_read(cx, buf);
            }
            // Held-back head bytes produce nothing: read again rather than return an
            // empty read, which the caller would take for EOF.
            ready!(this.poll_more(cx))?;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_writing();
        let polled = this.io().poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_writing();
        let polled = this.io().poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(T::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.io().poll_flush(cx))?;
        this.on_flushed(cx);
        // hyper flushes each time its connection is polled: the one place to watch
        // the client's side while it reads nothing (see `watch_for_client_close`).
        if let Some(gone) = this.watch_for_client_close(cx) {
            return Poll::Ready(Err(gone));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_reject(cx))?;
        // A handshake answered without a tunnel: what the client sent after it is
        // unread; closing on it would reset the connection under our answer.
        if this.guard.is_held() && !this.held_drained {
            this.held_drained = true;
            this.drain_unread_input(cx);
        }
        this.io().poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for GuardedIo<T> {
    /// hyper drops the stream without `poll_shutdown` when the connection ends in an
    /// error: try once, without waiting, to get the error response out anyway (a fresh
    /// socket's send buffer takes these ~150 bytes).
    fn drop(&mut self) {
        self.set_parked(false);
        let Some(r) = self.owes_reject_response() else {
            return;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.inner.is_none() {
            return;
        }
        if let Poll::Ready(Ok(n)) = self.io().poll_write(&mut cx, &r.response_bytes()) {
            self.reject_written = n;
            let _ = self.io().poll_flush(&mut cx);
        }
    }
}
