//! The client stream of an HTTP/1 connection ([`ClientIo`]): every read goes
//! through the guard into the connection's inbox, every write is held to the
//! stalled-write timeout (armed only when a write cannot progress).

use super::inbox::Inbox;
use crate::guard::{GuardLimits, Http1Guard, Reject};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Size of the buffer each read from the client goes into.
const SCRATCH: usize = 8 * 1024;

thread_local! {
    /// The buffer reads from clients go into, one per thread: each read is validated
    /// and copied out before the next connection reads, so a buffer per connection
    /// would only sit idle (8 KiB of every idle keep-alive connection).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// After a refusal, at most this much unread input is drained before the close, so the
/// kernel sends our error response and a FIN instead of a reset that could destroy it.
const DRAIN_ON_CLOSE: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct ClientIo<T> {
    pub(crate) io: T,
    pub(crate) guard: Http1Guard,
    pub(crate) inbox: Inbox,
    /// The client's input ended (EOF, an error, or a refusal): nothing more is read.
    pub(crate) eof: bool,
    /// What the guard refused, if it did.
    pub(crate) refused: Option<Reject>,
    write_timeout: Duration,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> ClientIo<T> {
    pub(crate) fn new(io: T, limits: GuardLimits, write_timeout: Duration) -> Self {
        ClientIo {
            io,
            guard: Http1Guard::new(limits),
            inbox: Inbox::default(),
            eof: false,
            refused: None,
            write_timeout,
            write_timer: None,
        }
    }

    /// Reads once from the client into the guard and the inbox. `Ready(true)`: bytes
    /// came (all validated, or a refusal is now noted); `Ready(false)`: the input
    /// ended (EOF or a read error). Either way `eof` tells whether to read again.
    pub(crate) fn poll_read_once(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut rb = ReadBuf::new(scratch);
            let read = ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb));
            let n = rb.filled().len();
            if let Err(e) = &read {
                tracing::debug!(error = %e, "client read failed");
            }
            if read.is_err() || n == 0 {
                self.eof = true;
                return Poll::Ready(false);
            }
            if let Err(r) = self.guard.feed(&scratch[..n], &mut self.inbox) {
                tracing::debug!(status = r.status().as_u16(), "request refused by the guard");
                self.refused = Some(r);
                self.eof = true;
            }
            Poll::Ready(true)
        })
    }

    /// Writes `buf` whole; a write that makes no progress for the write timeout fails.
    pub(crate) async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Flushes (TLS holds what it encrypted until then), under the write timeout.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let polled = Pin::new(&mut self.io).poll_flush(cx);
            self.after_write(cx, polled.map_ok(|()| 1)).map_ok(|_| ())
        })
        .await
    }

    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let polled = Pin::new(&mut self.io).poll_shutdown(cx);
            self.after_write(cx, polled.map_ok(|()| 1)).map_ok(|_| ())
        })
        .await
    }

    /// One write; a write that cannot progress arms the stalled-write timer.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.after_write(cx, polled)
    }

    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(r) = polled {
            self.write_timer = None;
            return Poll::Ready(r);
        }
        let t = self.write_timeout;
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Discards what the client already sent (without waiting for more): closing a
    /// socket with unread input makes the kernel send a reset instead of our answer.
    pub(crate) fn drain_unread(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut drained = 0;
            while drained < DRAIN_ON_CLOSE {
                let mut rb = ReadBuf::new(scratch);
                match Pin::new(&mut self.io).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => drained += rb.filled().len(),
                    _ => break,
                }
            }
        })
    }
}
