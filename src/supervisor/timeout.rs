//! `--timeout` and `[[route]] timeout`: a request on which its worker stays silent
//! past its limit gets 504. Then `policy::after_timeout` decides the worker's fate:
//! a worker with nothing else running (always so with one thread) gets SIGUSR1
//! (CPython's faulthandler dumps every thread's stack) and SIGKILL; one whose other
//! threads are still running requests is condemned: it is sent nothing more, its
//! unstarted requests are taken back, a replacement starts at once, its stacks are
//! dumped now (while the hung thread is where it hung), and SIGKILL follows only
//! when its other requests have ended or reached their own timeouts (504, never
//! 502). A late answer for a timed-out request finds no stream and is dropped.

use super::policy::{self, AfterTimeout};
use super::{process, Supervisor, WorkerState, DUMP_GRACE};
use crate::observe::RestartReason;
use nix::sys::signal::Signal;
use std::time::Instant;

impl Supervisor {
    /// Answers 504 to every request past its limit, then kills or condemns its
    /// worker; kills a condemned worker with nothing left running.
    pub(super) fn enforce_timeouts(&mut self) {
        let timeout = self.spec.timeout;
        let mut timed_out = Vec::new();
        let mut done = Vec::new();
        for (pid, w) in self.workers.iter() {
            if matches!(
                w.state,
                WorkerState::Serving | WorkerState::Draining | WorkerState::Condemned
            ) {
                let silent = w.conn.silent_streams(timeout);
                if !silent.is_empty() {
                    timed_out.push((*pid, silent));
                } else if w.state == WorkerState::Condemned && w.conn.in_flight() == 0 {
                    done.push(*pid);
                }
            }
        }
        for (pid, streams) in timed_out {
            self.on_timed_out(pid, &streams);
        }
        for pid in done {
            self.kill_condemned(pid);
        }
    }

    fn on_timed_out(&mut self, pid: u32, streams: &[u32]) {
        let threads = self.spec.threads;
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        for &s in streams {
            w.conn.time_out_stream(s);
        }
        if w.state == WorkerState::Condemned {
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
        match policy::after_timeout(threads, running) {
            AfterTimeout::Kill => {
                tracing::error!(pid, timeout_s, reason = "timeout", "WORKER TIMEOUT: killing the worker");
                w.state = WorkerState::Killing(Instant::now() + DUMP_GRACE);
            }
            AfterTimeout::Condemn => {
                tracing::error!(
                    pid,
                    timeout_s,
                    running,
                    "WORKER TIMEOUT: the request past its timeout got 504; the worker \
                     is sent nothing more and replaced, and killed once its other \
                     requests end"
                );
                w.state = WorkerState::Condemned;
            }
        }
        self.fill();
    }

    /// A condemned worker's other requests have ended or timed out: its hung
    /// thread can only be stopped with it.
    fn kill_condemned(&mut self, pid: u32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        tracing::warn!(
            pid,
            reason = "timeout",
            "killing the timed-out worker: its other requests have ended"
        );
        process::signal(pid, Signal::SIGKILL);
        w.state = WorkerState::Stopping;
    }
}
