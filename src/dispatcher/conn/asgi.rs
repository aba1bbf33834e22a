//! What differs for an ASGI worker's streams, which all run at once on one event
//! loop. A stream past its timeout is answered 504 (or cut) as any, then the worker
//! is sent `Cancel` and lives on: the stream keeps its slot until the worker ends
//! it, so cancelled requests cannot pile up beyond `worker_connections`, and a
//! worker that neither ends it nor says its loop runs (`Credit(0)`: the task
//! ignores its cancel, and keeps the slot until it ends) within
//! `defaults::CANCEL_GRACE` has a blocked loop (the supervisor then falls back
//! to the WSGI path: dump, condemn or kill). A
//! response whose client does not take it is paused in the worker (`Pause` past
//! `response_buffer_size` held, `Resume` below half of it) instead of spooled: the
//! app's `send()` waits, as it would on a slow socket under uvicorn. A request body
//! goes in a window per stream (`Window`): at most `wire::ASGI_BODY_WINDOW` bytes
//! beyond what the worker credited (`Credit`, as its app's `receive()` takes them),
//! so 500 uploads to an app that does not read them wait in the front's spool, not
//! in the worker's memory.

use super::{Stream, WorkerConn};
use crate::config::Interface;
use crate::wire::{Frame, ASGI_BODY_WINDOW};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One ASGI stream's request-body window: the body's one sender (`send_body`)
/// waits here for credit; the connection reader credits it, and the stream's end
/// closes it (the sender then stops).
#[derive(Default)]
pub(crate) struct Window {
    sent: AtomicU64,
    credited: AtomicU64,
    closed: AtomicBool,
    /// One waiter at most (the body's sender): `notify_one` keeps a permit for it.
    changed: Notify,
}

/// Whether `len` more body bytes may go with `sent` sent and `credited` back: at
/// most `window` outstanding, and one chunk always goes when none is.
pub(crate) fn window_room(sent: u64, credited: u64, len: usize, window: usize) -> bool {
    let outstanding = sent.saturating_sub(credited);
    outstanding == 0 || outstanding.saturating_add(len as u64) <= window as u64
}

impl Window {
    /// Waits until `len` more bytes fit; `false` once the stream is gone.
    async fn reserve(&self, len: usize) -> bool {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            let (sent, credited) = (
                self.sent.load(Ordering::Acquire),
                self.credited.load(Ordering::Acquire),
            );
            if window_room(sent, credited, len, ASGI_BODY_WINDOW) {
                self.sent.fetch_add(len as u64, Ordering::AcqRel);
                return true;
            }
            // Said, for it is what an app that does not read comes to (tests wait
            // on it: the worker is sent nothing more of this body meanwhile).
            tracing::debug!("a request body's window is full: the rest waits in the spool");
            self.changed.notified().await;
        }
    }

    /// The worker took `n` more bytes; never more than were sent (a credit beyond
    /// would open the window wider than `ASGI_BODY_WINDOW`).
    fn credit(&self, n: u32) {
        let sent = self.sent.load(Ordering::Acquire);
        let _ = self
            .credited
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_add(u64::from(n)).min(sent))
            });
        self.changed.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_one();
    }
}

/// A new stream's window: ASGI workers only (WSGI workers never credit).
pub(super) fn window(interface: Interface) -> Option<Arc<Window>> {
    (interface == Interface::Asgi).then(Arc::default)
}

/// A stream that ends, is cancelled, taken back or lost frees its body's sender.
impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(w) = &self.window {
            w.close();
        }
    }
}

/// The response spool's memory limit and the pause threshold of a stream:
/// `response_buffer_size` for both under WSGI (never paused); under ASGI a pause at
/// it, and room in memory for `IN_FLIGHT` more (past that it spills to disk, as
/// WSGI responses do; the shared `response_memory` still bounds all of them).
pub(super) fn response_limits(interface: Interface, buffer_size: usize) -> (usize, usize) {
    match interface {
        Interface::Wsgi => (buffer_size, 0),
        Interface::Asgi => (buffer_size.saturating_add(IN_FLIGHT), buffer_size.max(1)),
    }
}

/// What an ASGI worker may still send on a stream after the front decided to
/// pause it, before it reads the `Pause`: its out buffer (it stops the app's
/// `send()` at a 1 MiB high-water mark) and what the socket holds.
const IN_FLIGHT: usize = 4 << 20;

/// `held` bytes of a response not taken by its client: pause past `limit`.
pub(crate) fn should_pause(paused: bool, held: usize, limit: usize) -> bool {
    limit > 0 && !paused && held > limit
}

/// Resume a paused response once its client took it below half the limit.
pub(crate) fn should_resume(paused: bool, held: usize, limit: usize) -> bool {
    paused && held <= limit / 2
}

/// A `Cancel` unanswered at `now`: the worker's loop is blocked.
pub(crate) fn cancel_overdue(cancel_by: Option<Instant>, now: Instant) -> bool {
    cancel_by.is_some_and(|by| now >= by)
}

/// After a body frame was queued on `s`: whether the worker must now be told to
/// pause it (marked paused).
pub(super) fn pause(s: &mut Stream) -> bool {
    if s.pause_at == 0 || s.paused {
        return false; // WSGI, or told already: no need to look at the queue
    }
    let pause = should_pause(s.paused, s.tx.held(), s.pause_at);
    s.paused |= pause;
    pause
}

impl WorkerConn {
    pub fn interface(&self) -> Interface {
        self.interface
    }

    /// Waits for room for `len` body bytes in `stream`'s window (at once for a
    /// WSGI worker); `false` when the stream is gone, for either: the rest of its
    /// body is needed by nobody.
    pub(super) async fn window_open(&self, stream: u32, len: usize) -> bool {
        let window = match self.streams.lock().unwrap().get(&stream) {
            Some(s) => s.window.clone(),
            None => return false,
        };
        if self.interface != Interface::Asgi {
            return true;
        }
        match window {
            Some(w) => w.reserve(len).await,
            None => true,
        }
    }

    /// The worker's `Credit`: its app took `n` more bytes of the body, which is
    /// progress (its silence counts from now).
    /// `Credit(0)` on a cancelled stream: the worker's loop runs, but the task
    /// ignores its cancel; the stream keeps its slot until the task ends (its
    /// `Abort`), so such tasks never add up past the worker's slots.
    pub(super) fn credit(&self, stream: u32, n: u32) {
        if let Some(s) = self.streams.lock().unwrap().get_mut(&stream) {
            s.detached |= n == 0 && s.cancel_by.is_some();
            s.last_activity = Instant::now();
            if let Some(w) = &s.window {
                w.credit(n);
            }
        }
    }

    /// The client took some of `stream`'s response: a paused one is resumed once
    /// below half its limit (and its silence counts from now).
    pub fn response_taken(&self, stream: u32) {
        if self.interface != Interface::Asgi {
            return;
        }
        let mut streams = self.streams.lock().unwrap();
        let Some(s) = streams.get_mut(&stream) else {
            return;
        };
        if should_resume(s.paused, s.tx.held(), s.pause_at) {
            s.paused = false;
            s.last_activity = Instant::now();
            // Under the lock: in order with the Pause it answers.
            self.send(stream, Frame::Resume);
        }
    }

    /// An ASGI stream past its timeout: its client gets 504 (or a cut response)
    /// now, and the worker `Cancel`; the stream keeps its slot until the worker ends
    /// it, which it must by `now + grace`. One the worker never started is taken
    /// back instead (its request goes to another worker). Returns whether it was
    /// cancelled.
    pub fn cancel_stream(&self, stream: u32, now: Instant, grace: Duration) -> bool {
        let mut streams = self.streams.lock().unwrap();
        let Some(s) = streams.get_mut(&stream) else {
            return false;
        };
        if s.cancel_by.is_some() {
            return false;
        }
        if self.take_back(stream, s) {
            streams.remove(&stream);
            drop(streams);
            self.dispatcher.release(self);
            return false;
        }
        s.tx.time_out();
        s.cancel_by = Some(now + grace);
        s.paused = false;
        if let Some(w) = &s.window {
            w.close(); // answered: the rest of its body is not wanted
        }
        drop(streams);
        self.send(stream, Frame::Cancel);
        true
    }

    /// The drain's deadline is near (`supervisor::drain`): every stream still open
    /// (an SSE stream, a request waiting for `http.disconnect`) ends for its client
    /// now (504 before its head, else cut, as nginx closes connections at
    /// `worker_shutdown_timeout`), and the worker gets `Abort`, which its app sees as
    /// `http.disconnect`; the stream keeps its slot until the worker ends it, which
    /// it must by `now + grace` (as a `Cancel`). Unstarted requests are taken back.
    /// The worker's WebSockets close too. Returns how many streams were cut.
    pub fn cut_streams(&self, now: Instant, grace: Duration) -> usize {
        self.close_tunnels();
        let mut cut = Vec::new();
        let mut revoked = 0;
        {
            let mut streams = self.streams.lock().unwrap();
            streams.retain(|&id, s| {
                if s.cancel_by.is_some() {
                    return true; // cancelled (or cut) already
                }
                if self.take_back(id, s) {
                    revoked += 1;
                    return false;
                }
                s.tx.time_out();
                s.cancel_by = Some(now + grace);
                s.paused = false;
                if let Some(w) = &s.window {
                    w.close();
                }
                cut.push(id);
                true
            });
        }
        for _ in 0..revoked {
            self.dispatcher.release(self);
        }
        for &id in &cut {
            self.send(id, Frame::Abort(bytes::Bytes::from_static(b"draining")));
        }
        cut.len()
    }

    /// Cancelled streams whose task runs on regardless (`Credit(0)`): each holds
    /// its slot until it ends.
    pub fn detached(&self) -> usize {
        let streams = self.streams.lock().unwrap();
        streams.values().filter(|s| s.detached).count()
    }

    /// Cancelled streams the worker has not ended by their deadline, nor said its
    /// loop runs on (`detached`).
    pub fn overdue_cancels(&self, now: Instant) -> Vec<u32> {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| !s.detached && cancel_overdue(s.cancel_by, now))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_pauses_past_its_limit_and_resumes_below_half() {
        let mib = 1 << 20;
        assert!(!should_pause(false, mib, mib), "at the limit: not past it");
        assert!(should_pause(false, mib + 1, mib));
        assert!(!should_pause(true, 5 * mib, mib), "paused once");
        assert!(!should_pause(false, 5 * mib, 0), "WSGI: never");
        assert!(!should_resume(true, mib / 2 + 1, mib), "above half");
        assert!(should_resume(true, mib / 2, mib));
        assert!(should_resume(true, 0, mib));
        assert!(!should_resume(false, 0, mib), "not paused");
    }

    #[test]
    fn asgi_responses_pause_before_they_spill() {
        assert_eq!(response_limits(Interface::Wsgi, 100), (100, 0));
        let (memory, pause_at) = response_limits(Interface::Asgi, 100);
        assert!(pause_at < memory, "{pause_at} {memory}");
        assert_eq!(response_limits(Interface::Asgi, 0).1, 1, "0 is no 'never'");
    }

    #[test]
    fn the_body_window_holds_at_most_its_size_beyond_the_credit() {
        let w = 256 * 1024;
        let chunk = 64 * 1024;
        assert!(window_room(0, 0, chunk, w));
        assert!(window_room(3 * chunk as u64, 0, chunk, w), "exactly full");
        assert!(!window_room(4 * chunk as u64, 0, 1, w));
        assert!(window_room(4 * chunk as u64, chunk as u64, chunk, w));
        assert!(
            window_room(10, 10, 10 * w, w),
            "nothing out: any chunk goes"
        );
        assert!(
            window_room(5, 10, chunk, w),
            "credit past sent: nothing out"
        );
        // A worker that credits half the window once taken, as ours does: an app
        // waiting for more (all it was sent taken) always leaves room for a chunk.
        let (mut sent, mut credited) = (0u64, 0u64);
        for _ in 0..1000 {
            while window_room(sent, credited, chunk, w) {
                sent += chunk as u64;
            }
            assert!(sent - credited <= w as u64);
            // The app takes everything it has, then waits for more.
            let taken = sent;
            if taken - credited >= (w / 2) as u64 {
                credited = taken;
            }
            assert!(window_room(sent, credited, chunk, w), "stalled at {sent}");
        }
    }

    #[tokio::test]
    async fn a_window_waits_for_credit_and_its_close_frees_the_sender() {
        let w = Arc::new(Window::default());
        let chunk = 64 * 1024;
        for _ in 0..4 {
            assert!(w.reserve(chunk).await);
        }
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.reserve(chunk).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "full: it waits");
        w.credit(chunk as u32);
        assert!(waiting.await.unwrap());
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.reserve(chunk).await }
        });
        w.credit(u32::MAX); // clamped to what was sent
        assert!(waiting.await.unwrap());
        for _ in 0..3 {
            assert!(w.reserve(chunk).await);
        }
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.reserve(chunk).await }
        });
        w.close();
        assert!(!waiting.await.unwrap(), "a closed window sends no more");
    }

    #[test]
    fn a_cancel_is_overdue_at_its_deadline() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert!(!cancel_overdue(None, now + s(100)), "never cancelled");
        assert!(!cancel_overdue(Some(now + s(5)), now));
        assert!(cancel_overdue(Some(now + s(5)), now + s(5)));
    }
}
