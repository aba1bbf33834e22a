//! The relay of one tunnel: client ⇄ the app's socketpair end, a byte count each
//! way, the idle timeout (no byte either way) and the drain's close.
//!
//! Memory stays small and bounded: each read goes into a buffer shared by the
//! thread ([`SCRATCH`] bytes) and is written on at once; only what the other side
//! did not take yet is kept, in a buffer of that tunnel's own (at most one read's
//! worth), and while it is kept that direction reads nothing more. So a peer that
//! stops reading stops the other peer's bytes in the kernel's socket buffers, which
//! makes the app's `send` block (back-pressure), and an idle tunnel holds no buffer.

use super::Settings;
use bytes::{Buf, Bytes, BytesMut};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

/// The most one read takes (and so the most a tunnel keeps per direction).
const SCRATCH: usize = 16 * 1024;

/// How long the client gets to take the close (TLS close_notify, FIN).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long the client's last bytes (its Close reply) still go to an app that
/// half-closed its socket (`shutdown(SHUT_WR)` after its Close frame), as nginx's
/// `lingering_timeout`: then the tunnel ends, whatever the client does.
const LINGER: Duration = Duration::from_secs(5);

thread_local! {
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// One direction of the relay.
#[derive(Default)]
struct Direction {
    /// Read but not yet taken by the other side; empty (no allocation) when idle.
    pending: BytesMut,
    /// The reading side ended (EOF); its end was passed on once `shut`.
    read_done: bool,
    shut: bool,
    /// Written since the last flush.
    dirty: bool,
    /// Bytes handed to the other side.
    count: u64,
}

impl Direction {
    fn with_first(first: Bytes) -> Self {
        Direction {
            pending: BytesMut::from(&first[..]),
            ..Direction::default()
        }
    }

    fn is_done(&self) -> bool {
        self.read_done && self.shut
    }

    /// Moves bytes from `from` to `to` until neither can go on; `Ready(Ok)` once
    /// this direction ended and its end was passed on.
    fn poll_move<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut from: Pin<&mut R>,
        mut to: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if !self.pending.is_empty() {
                let n = ready!(to.as_mut().poll_write(cx, &self.pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.count += n as u64;
                self.dirty = true;
                self.pending.advance(n);
                if self.pending.is_empty() {
                    // Give the memory back: an idle tunnel keeps no buffer.
                    self.pending = BytesMut::new();
                }
                continue;
            }
            if self.read_done {
                if !self.shut {
                    ready!(to.as_mut().poll_shutdown(cx))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            let read = READ_SCRATCH.with_borrow_mut(|scratch| {
                let mut rb = ReadBuf::new(scratch);
                match from.as_mut().poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let got = rb.filled();
                if got.is_empty() {
                    self.read_done = true;
                    return Poll::Ready(Ok(()));
                }
                // Straight on when the other side takes it; only the rest is kept.
                let taken = match to.as_mut().poll_write(cx, got) {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => 0,
                };
                self.count += taken as u64;
                self.dirty |= taken > 0;
                self.pending.extend_from_slice(&got[taken..]);
                Poll::Ready(Ok(()))
            });
            match read {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    if self.dirty {
                        ready!(to.as_mut().poll_flush(cx))?;
                        self.dirty = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Why a relay ended (for the debug log).
#[derive(Debug)]
enum End {
    /// Both sides closed, or the app closed its end.
    Closed,
    Idle,
    Drained,
    Failed(#[allow(dead_code)] io::Error),
}

/// Both directions of one tunnel.
pub(super) struct Relay<C> {
    client: C,
    app: tokio::net::UnixStream,
    /// App → client.
    down: Direction,
    /// Client → app.
    up: Direction,
    settings: Settings,
    last_progress: Instant,
    /// Set once the app's side ended: the end of the client's last word (`LINGER`).
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Relay<C> {
    pub(super) fn new(
        client: C,
        app: tokio::net::UnixStream,
        first_down: Bytes,
        first_up: Bytes,
        settings: Settings,
    ) -> Self {
        Relay {
            client,
            app,
            down: Direction::with_first(first_down),
            up: Direction::with_first(first_up),
            settings,
            last_progress: Instant::now(),
            linger: None,
        }
    }

    /// Runs to the end; returns the bytes sent to the client and received from it.
    /// `stop`: the drain's (the tunnel goes on for `grace`); `worker_gone`: at once.
    pub(super) async fn run(
        mut self,
        stop: &CancellationToken,
        worker_gone: &CancellationToken,
    ) -> (u64, u64) {
        let idle = tokio::time::sleep(self.settings.idle);
        let stopped = stop.cancelled();
        let gone = worker_gone.cancelled();
        tokio::pin!(idle, stopped, gone);
        let mut drain: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let end = std::future::poll_fn(|cx| {
            let before = self.down.count + self.up.count;
            if let Poll::Ready(end) = self.poll_both(cx) {
                return Poll::Ready(end);
            }
            if self.down.count + self.up.count != before {
                self.last_progress = Instant::now();
            }
            // 0: no idle timeout.
            while !self.settings.idle.is_zero() && idle.as_mut().poll(cx).is_ready() {
                let deadline = self.last_progress + self.settings.idle;
                if Instant::now() >= deadline {
                    return Poll::Ready(End::Idle);
                }
                idle.as_mut().reset(deadline.into());
            }
            if gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Drained);
            }
            if drain.is_none() && stopped.as_mut().poll(cx).is_ready() {
                drain = Some(Box::pin(tokio::time::sleep(self.settings.grace)));
            }
            if let Some(d) = &mut drain {
                if d.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::Drained);
                }
            }
            Poll::Pending
        })
        .await;
        tracing::debug!(why = ?end, "websocket relay ended");
        if !self.down.shut {
            // A close of our own (idle, drain, the client's error): tell the client.
            let _ = tokio::time::timeout(CLOSE_WAIT, self.client.shutdown()).await;
        }
        (self.down.count, self.up.count)
    }

    fn poll_both(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        let down = self
            .down
            .poll_move(cx, Pin::new(&mut self.app), Pin::new(&mut self.client));
        if let Poll::Ready(Err(e)) = down {
            return Poll::Ready(End::Failed(e));
        }
        let up = self
            .up
            .poll_move(cx, Pin::new(&mut self.client), Pin::new(&mut self.app));
        if !self.down.is_done() {
            if let Poll::Ready(Err(e)) = up {
                return Poll::Ready(End::Failed(e));
            }
            return Poll::Pending;
        }
        // The app ended its side and all it wrote went out (the server closes first,
        // RFC 6455 §7.1.1). An app that only half-closed still reads the client's
        // Close reply, so the client's side runs on until it ends, fails (an app that
        // closed its socket: EPIPE) or `LINGER` passes.
        if up.is_ready() {
            return Poll::Ready(End::Closed);
        }
        let linger = self
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        match linger.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(End::Closed),
            Poll::Pending => Poll::Pending,
        }
    }
}
