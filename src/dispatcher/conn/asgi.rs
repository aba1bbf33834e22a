//! What differs for an ASGI worker's streams, which all run at once on one event
//! loop. A stream past its timeout is answered 504 (or cut) as any, then the worker
//! is sent `Cancel` and lives on: the stream keeps its slot until the worker ends
//! it, so cancelled requests cannot pile up beyond `worker_connections`, and a
//! worker that does not end it within `defaults::CANCEL_GRACE` has a blocked loop
//! (the supervisor then falls back to the WSGI path: dump, condemn or kill). A
//! response whose client does not take it is paused in the worker (`Pause` past
//! `response_buffer_size` held, `Resume` below half of it) instead of spooled: the
//! app's `send()` waits, as it would on a slow socket under uvicorn.

use super::{Stream, WorkerConn};
use crate::config::Interface;
use crate::wire::Frame;
use std::time::{Duration, Instant};

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
        drop(streams);
        self.send(stream, Frame::Cancel);
        true
    }

    /// Cancelled streams the worker has not ended by their deadline.
    pub fn overdue_cancels(&self, now: Instant) -> Vec<u32> {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| cancel_overdue(s.cancel_by, now))
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
    fn a_cancel_is_overdue_at_its_deadline() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert!(!cancel_overdue(None, now + s(100)), "never cancelled");
        assert!(!cancel_overdue(Some(now + s(5)), now));
        assert!(cancel_overdue(Some(now + s(5)), now + s(5)));
    }
}
