//! `--timeout` and `[[route]] timeout`: a request on which its worker stays silent
//! past its limit gets 504. Then `policy::after_timeout` decides the worker's fate:
//! a worker with nothing else running (always so with one thread) gets SIGUSR1
//! (CPython's faulthandler dumps every thread's stack) and SIGKILL; one whose other
//! threads are still running requests is condemned: it is sent nothing more, its
//! unstarted requests are taken back, a replacement starts at once, its stacks are
//! dumped now (while the hung thread is where it hung), and SIGKILL follows only
//! when its other requests have ended or reached their own timeouts (504, never
//! 502), or at the end of its grace (`policy::condemned_grace`: at least
//! `--graceful-timeout`; what still runs then gets 504 or is cut, as at a timeout).
//! A late answer for a timed-out request finds no stream and is dropped.
//!
//! An ASGI worker's request is cancelled instead (issue 27): after its 504 the
//! worker is sent `Cancel` and keeps serving; only when it does not end the stream
//! within `defaults::CANCEL_GRACE` (its event loop is blocked by sync code) does the
//! above apply, the worker's capacity standing for its threads. A task that
//! ignores its cancel keeps its slot until it ends; once such tasks hold half a
//! worker's slots it is replaced (`recycle_detached`). The slots counted are the
//! worker's own, from its start, whatever a reload since set.
//!
//! Condemned workers stay bounded: no more at once than the pool's size (past
//! that, a timed-out worker is killed at once and its other requests get 504), and
//! each lives at most its grace.

use super::policy::{self, AfterTimeout};
use super::{process, Supervisor, WorkerState, DUMP_GRACE};
use crate::defaults::CANCEL_GRACE;
use crate::observe::RestartReason;
use nix::sys::signal::Signal;
use std::time::Instant;

impl Supervisor {
    /// Answers 504 to every request past its limit, then kills or condemns its
    /// worker; kills a condemned worker with nothing left running or past its grace.
    pub(super) fn enforce_timeouts(&mut self, now: Instant) {
        let timeout = self.spec.timeout;
        let mut timed_out = Vec::new();
        let mut done = Vec::new();
        for (pid, w) in self.workers.iter() {
            let condemned = match w.state {
                WorkerState::Condemned(until) if now >= until => {
                    let cut = w.conn.time_out_all();
                    tracing::warn!(
                        pid,
                        requests = cut,
                        "a condemned worker's grace is over: its requests get 504"
                    );
                    done.push(*pid);
                    continue;
                }
                WorkerState::Condemned(_) => true,
                WorkerState::Serving | WorkerState::Draining(_) => false,
                _ => continue,
            };
            let mut silent = w.conn.silent_streams(timeout);
            if !policy::cancels(w.conn.interface(), condemned) {
                // A condemned ASGI worker's earlier cancels: timed out, as its
                // other requests are.
                silent.extend(w.conn.overdue_cancels(now));
            } else {
                cancel(w, &silent, now);
                silent = w.conn.overdue_cancels(now);
                if !silent.is_empty() {
                    tracing::error!(
                        pid,
                        requests = silent.len(),
                        cancel_grace_s = CANCEL_GRACE.as_secs(),
                        "WORKER TIMEOUT: a cancelled request did not end within \
                         cancel_grace_s: the event loop is blocked (sync code?)"
                    );
                }
            }
            if !silent.is_empty() {
                timed_out.push((*pid, silent));
            } else if condemned && w.conn.in_flight() == 0 {
                done.push(*pid);
            }
        }
        for (pid, streams) in timed_out {
            self.on_timed_out(pid, &streams, now);
        }
        for pid in done {
            self.kill_condemned(pid);
        }
        self.recycle_detached();
    }

    /// Replaces a serving ASGI worker half of whose slots are held by tasks that
    /// ignored their cancel (`policy::recycle_detached`).
    fn recycle_detached(&mut self) {
        let due: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Serving && !w.old)
            .filter(|(_, w)| policy::recycle_detached(w.conn.detached(), w.conn.slots()))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            tracing::warn!(
                pid,
                reason = "timeout",
                "tasks that ignored their cancellation hold half the worker's slots: replacing it (its drain lets them go)"
            );
            self.replace(pid, RestartReason::Timeout);
        }
    }

    fn on_timed_out(&mut self, pid: u32, streams: &[u32], now: Instant) {
        let condemned = self
            .workers
            .values()
            .filter(|w| matches!(w.state, WorkerState::Condemned(_)))
            .count();
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        // The worker's own threads, or the `worker_connections` of its event loop
        // (which runs that many requests at once, as threads would), from its
        // start: the spec may have changed since (a reload under way).
        let threads = w.conn.slots();
        for &s in streams {
            w.conn.time_out_stream(s);
        }
        if matches!(w.state, WorkerState::Condemned(_)) {
            tracing::error!(
                pid,
                requests = streams.len(),
                "WORKER TIMEOUT: another request of the condemned worker timed out (504)"
            );
            if w.conn.in_flight() == 0 {
                self.kill_condemned(pid);
            }
            return;
        }
        w.conn.retire();
        self.dispatcher.remove(&w.conn);
        // Requests it was sent ahead but never started go to another worker.
        w.conn.revoke_unstarted(usize::MAX);
        let running = w.conn.in_flight();
        let timeout_s = self.spec.timeout.map_or(0, |t| t.as_secs());
        self.metrics.worker_restarted(RestartReason::Timeout);
        process::signal(pid, Signal::SIGUSR1);
        match policy::after_timeout(threads, running, condemned, self.target) {
            AfterTimeout::Kill => {
                // Over the cap, requests still running get 504 rather than 502.
                w.conn.time_out_all();
                tracing::error!(
                    pid,
                    timeout_s,
                    reason = "timeout",
                    "WORKER TIMEOUT: killing the worker"
                );
                w.state = WorkerState::Killing(now + DUMP_GRACE);
            }
            AfterTimeout::Condemn => {
                let limits = w.conn.limits(self.spec.timeout);
                let grace = policy::condemned_grace(&limits, self.spec.graceful_timeout);
                tracing::error!(
                    pid,
                    timeout_s,
                    running,
                    grace_s = grace.as_secs(),
                    "WORKER TIMEOUT: the request past its timeout got 504; the worker \
                     is sent nothing more and replaced, and killed once its other \
                     requests end (within grace_s)"
                );
                w.state = WorkerState::Condemned(now + grace);
            }
        }
        self.fill();
    }

    /// A condemned worker's other requests have ended, timed out, or had their
    /// grace: its hung thread can only be stopped with it.
    fn kill_condemned(&mut self, pid: u32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        tracing::warn!(
            pid,
            reason = "timeout",
            "killing the timed-out worker: none of its requests runs any more"
        );
        process::signal(pid, Signal::SIGKILL);
        w.state = WorkerState::Stopping;
    }
}

/// Answers 504 to an ASGI worker's requests past their limit and cancels them
/// there: the worker serves on.
fn cancel(w: &super::Managed, streams: &[u32], now: Instant) {
    for &s in streams {
        if w.conn.cancel_stream(s, now, CANCEL_GRACE) {
            tracing::warn!(
                pid = w.conn.pid,
                "request past its timeout: 504, and its task cancelled in the worker, which serves on"
            );
        }
    }
}
