//! One client connection from its first byte to its end: the graceful stop (TERM:
//! hyper's graceful shutdown, which is GOAWAY on HTTP/2, then the drain waits for
//! it) and the timeouts of HTTP/2. HTTP/1's timeouts live in its driver
//! (`http1::conn`), which reads every byte of it; an HTTP/2 connection's streams
//! are watched here instead, once a second, and its socket writes by [`H2Io`]:
//!
//! - **idle**: no open stream for `head` seconds since the preface (no request
//!   ever came) or `idle` seconds since the last stream ended: GOAWAY (RFC 9113
//!   §6.8), and the connection closes. Bytes without a stream (PINGs, SETTINGS, a
//!   header block that never ends) do not keep it open.
//! - **stalled write**: a response whose data hyper has not asked for more of in
//!   `write` seconds (the client keeps its flow-control window shut): GOAWAY, and the
//!   connection is dropped a moment later with everything its streams held.
//! - **abusive resets**: a client that cancelled most of its streams before their
//!   answer (at least `RESETS_FLOOR`), paced so that hyper's rapid-reset limit does
//!   not see it, is treated like a stalled one. Each cancelled request cost a place
//!   in the queue for a worker, and maybe the worker's time.

use crate::respond::{Polled, Tap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often an HTTP/2 connection's streams are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Between the GOAWAY for a stalled connection and dropping it.
const STALL_GRACE: Duration = Duration::from_secs(1);
/// Streams a client may cancel before its share of cancelled streams is judged.
const RESETS_FLOOR: u64 = 100;

/// The graceful stop of every connection, and the count the drain waits on.
#[derive(Default)]
pub struct Drain {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    /// Counts `fut` (one connection's life) from now on: a drain that starts before
    /// its task runs still waits for it.
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        self.tracker.track_future(fut)
    }

    /// What tells a connection to finish.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Asks every connection to finish (GOAWAY / `Connection: close`) and waits
    /// until all have ended.
    pub async fn drain(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The timeouts an HTTP/2 connection is held to (the guard's, for HTTP/1).
#[derive(Debug, Clone, Copy)]
pub struct H2Timeouts {
    pub head: Duration,
    pub idle: Duration,
    pub write: Duration,
}

/// What the front and the guard tell the watcher about one connection.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    open: AtomicUsize,
    had_stream: AtomicBool,
    /// Streams opened, and of those cancelled by the client before their answer.
    opened: AtomicU64,
    cancelled: AtomicU64,
    /// Milliseconds since `epoch` when the last stream ended (or the connection began).
    idle_since: AtomicU64,
    streams: Mutex<Vec<Weak<StreamClock>>>,
    /// HTTP/1: the codec read a WebSocket candidate's head (`guard::upgrade`).
    held: AtomicBool,
    /// The drain's stop: once asked, HTTP/1 answers carry `Connection: close`.
    stop: CancellationToken,
    /// HTTP/1: the app's side of a WebSocket the front answered `101` for, taken by
    /// the connection once it wrote that answer.
    tunnel: Mutex<Option<crate::tunnel::AppSide>>,
}

/// One HTTP/2 stream's response: since when hyper holds data it could not send.
#[derive(Debug, Default)]
struct StreamClock {
    /// Milliseconds since the connection's epoch, plus one; 0: not waiting.
    waiting_since: AtomicU64,
}

impl Activity {
    pub fn new(stop: CancellationToken) -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            had_stream: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            streams: Mutex::new(Vec::new()),
            held: AtomicBool::new(false),
            stop,
            tunnel: Mutex::new(None),
        })
    }

    /// HTTP/1: the guard held the bytes after a WebSocket candidate's head (see
    /// `guard::upgrade`), the one request of this connection that may tunnel.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// HTTP/1: the connection read a WebSocket candidate's head.
    pub fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// HTTP/1: the app's side of the tunnel the `101` being answered opens.
    pub fn hand_tunnel(&self, side: crate::tunnel::AppSide) {
        *self.tunnel.lock().unwrap_or_else(|e| e.into_inner()) = Some(side);
    }

    pub(crate) fn take_tunnel(&self) -> Option<crate::tunnel::AppSide> {
        self.tunnel.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The server is draining: an HTTP/1 answer ends its connection, so the client
    /// opens a new one (to the master that stays, during a binary upgrade) instead
    /// of sending its next request into a close.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The drain's stop, which ends this connection gracefully.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A request arrived; it counts until the returned value (moved into its
    /// response body) is dropped.
    pub fn open_stream(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.had_stream.store(true, Ordering::Relaxed);
        let clock = Arc::new(StreamClock::default());
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        streams.push(Arc::downgrade(&clock));
        OpenStream {
            clock,
            activity: self.clone(),
            answered: false,
        }
    }

    /// An HTTP/2 WebSocket's stream, open until the returned value is dropped (at the
    /// tunnel's end): the connection is not idle meanwhile. Never judged stalled: a
    /// tunnel's silence is the WebSocket idle timeout's.
    pub fn open_tunnel(self: &Arc<Self>) -> OpenStream {
        let mut stream = self.open_stream();
        stream.answered = true;
        stream
    }

    fn verdict(&self, t: H2Timeouts) -> Verdict {
        let now = self.now_ms();
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        if cancelled >= RESETS_FLOOR && cancelled * 2 > self.opened.load(Ordering::Relaxed) {
            return Verdict::Abusive;
        }
        if self.open.load(Ordering::Relaxed) == 0 {
            let limit = if self.had_stream.load(Ordering::Relaxed) {
                t.idle
            } else {
                t.head
            };
            let since = self.idle_since.load(Ordering::Relaxed);
            return match now.saturating_sub(since) >= limit.as_millis() as u64 {
                true => Verdict::Idle,
                false => Verdict::Fine,
            };
        }
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let stalled = streams.iter().filter_map(Weak::upgrade).any(|s| {
            let w = s.waiting_since.load(Ordering::Relaxed);
            w > 0 && now.saturating_sub(w - 1) >= t.write.as_millis() as u64
        });
        if stalled {
            Verdict::Stalled
        } else {
            Verdict::Fine
        }
    }
}

enum Verdict {
    Fine,
    Idle,
    Stalled,
    Abusive,
}

/// An HTTP/2 request from its arrival until its response body is dropped.
pub struct OpenStream {
    clock: Arc<StreamClock>,
    activity: Arc<Activity>,
    /// Became a response body; dropped before that, the client cancelled it.
    answered: bool,
}

impl OpenStream {
    /// hyper took data (or the head is out and it has yet to ask for data): the
    /// client's window decides when it asks again.
    fn waiting(&self) {
        let now = self.activity.now_ms() + 1;
        self.clock.waiting_since.store(now, Ordering::Relaxed);
    }

    /// hyper asked for data and we have none yet: the app is slow, not the client.
    fn not_waiting(&self) {
        self.clock.waiting_since.store(0, Ordering::Relaxed);
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let a = &self.activity;
        if !self.answered {
            a.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        if a.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        }
    }
}

impl OpenStream {
    /// The stream's response body is on its way: the tap on it tells the watcher how
    /// its sending goes.
    pub fn answered(mut self) -> Self {
        self.answered = true;
        self.waiting();
        self
    }
}

impl Tap for OpenStream {
    fn polled(&mut self, polled: &Polled) {
        match polled {
            Poll::Ready(Some(Ok(_))) => self.waiting(),
            _ => self.not_waiting(),
        }
    }
}

/// How long, after a stop, an HTTP/1 connection may take to send the request it has
/// on the way: a client that just connected, or a keep-alive client between two
/// requests, gets its answer (with `Connection: close`) instead of a connection
/// closed under its request. Idle connections are parked after 0.5 s and closed at
/// once; this bounds the others.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs one connection to its end: `shutdown` starts its graceful end (on the drain's stop
/// and, given `h2` timeouts, for an idle, stalled or abusive HTTP/2 connection).
pub async fn watch<C, E>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    h2: Option<H2Timeouts>,
) where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let mut asked = false;
    let mut drop_at: Option<Instant> = None;
    let mut tick = h2.map(|_| {
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every
    });
    let t = h2.unwrap_or(H2Timeouts {
        head: Duration::MAX,
        idle: Duration::MAX,
        write: Duration::MAX,
    });
    loop {
        tokio::select! {
            biased;
            // Errors are the client's (reset, timeout): hyper answered what it could.
            _ = &mut conn => return,
            _ = activity.stop().cancelled(), if !asked => {
                shutdown(conn.as_mut());
                asked = true;
            }
            _ = next_tick(&mut tick), if tick.is_some() => {
                if drop_at.is_some_and(|at| Instant::now() >= at) {
                    return;
                }
                match activity.verdict(t) {
                    Verdict::Fine => {}
                    Verdict::Idle if !asked => {
                        shutdown(conn.as_mut());
                        asked = true;
                        // A client that keeps the connection after GOAWAY.
                        drop_at = Some(Instant::now() + t.idle.max(CHECK_EVERY));
                    }
                    Verdict::Idle => {}
                    bad @ (Verdict::Stalled | Verdict::Abusive) => {
                        if !asked {
                            match bad {
                                Verdict::Stalled => tracing::debug!("HTTP/2 client did not read the response in time"),
                                _ => tracing::warn!("HTTP/2 client cancelled most of its streams; GOAWAY"),
                            }
                            shutdown(conn.as_mut());
                            asked = true;
                        }
                        let at = Instant::now() + STALL_GRACE;
                        drop_at = Some(drop_at.map_or(at, |d| d.min(at)));
                    }
                }
            }
        }
    }
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// An HTTP/2 client stream whose writes are held to the stalled-write timeout (armed
/// only when a write cannot progress): hyper's h2 server has none for its socket.
pub struct H2Io<T> {
    inner: T,
    write: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> H2Io<T> {
    pub fn new(inner: T, write: Duration) -> Self {
        H2Io {
            inner,
            write,
            timer: None,
        }
    }

    fn timed<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if let Poll::Ready(r) = polled {
            self.timer = None;
            return Poll::Ready(r);
        }
        let write = self.write;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(write)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client did not read the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for H2Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for H2Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.timed(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.timed(cx, polled)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
