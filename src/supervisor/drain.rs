//! A draining worker's end. A WSGI worker gets TERM once its requests are done;
//! its WebSockets close at `graceful_timeout`, and a thread still in one
//! `HUNG_TUNNEL_MARGIN` later is hung: the worker is killed. An ASGI worker may
//! hold streams that never end by themselves (server-sent events, a request
//! waiting for `http.disconnect`): at `policy::drain_cut` (the deadline minus
//! min(5 s, 20%)) its open streams are ended for their clients and the worker sees
//! `http.disconnect` on each (`WorkerConn::cut_streams`), and it gets TERM at once:
//! it cancels the tasks that ignore the disconnect, runs its lifespan shutdown,
//! `worker_exit` and atexit, and exits 0 before the deadline instead of being
//! killed at it. On the master's own TERM the same cut happens at the same point of
//! the front's drain (`Command::Stopping`), and again when the workers get TERM.

use super::policy;
use super::{process, Managed, Supervisor, WorkerState, HUNG_TUNNEL_MARGIN};
use crate::config::Interface;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

impl Supervisor {
    /// The master's TERM: the front drains for `grace`; ASGI streams still open at
    /// `policy::drain_cut(grace)` are ended then (`cut_for_stop`).
    pub(super) fn on_stopping(&mut self, grace: Duration) {
        let now = Instant::now();
        self.stop_cut = Some((now + policy::drain_cut(grace), now + grace));
    }

    /// Past the front drain's cut: every ASGI worker's open streams end (once).
    pub(super) fn cut_for_stop(&mut self, now: Instant) {
        let Some((_, deadline)) = self.stop_cut.filter(|(at, _)| now >= *at) else {
            return;
        };
        self.stop_cut = None;
        let grace = deadline.saturating_duration_since(now) + HUNG_TUNNEL_MARGIN;
        for w in self.workers.values() {
            cut(w, now, grace);
        }
    }
}

/// Ends an ASGI worker's open streams (see the module doc), giving the worker
/// until `now + grace` to end each; returns whether it had any.
pub(super) fn cut(w: &Managed, now: Instant, grace: Duration) -> bool {
    if w.conn.interface() != Interface::Asgi {
        return false;
    }
    let n = w.conn.cut_streams(now, grace);
    if n > 0 {
        tracing::info!(
            pid = w.conn.pid,
            streams = n,
            "drain: ending the ASGI worker's open streams before graceful_timeout (its app sees http.disconnect)"
        );
    }
    n > 0
}

/// One tick of a worker draining since `since`.
pub(super) fn tick(pid: u32, w: &mut Managed, since: Instant, now: Instant, graceful: Duration) {
    // Tasks that ignored their cancel (answered 504 already) wait for nothing:
    // the worker's TERM lets them go.
    if w.conn.in_flight() == w.conn.detached() {
        if !w.cut {
            process::signal(pid, Signal::SIGTERM); // a cut worker had its TERM
        }
        w.state = WorkerState::Stopping;
        return;
    }
    if now >= since + graceful + HUNG_TUNNEL_MARGIN && (w.cut || w.conn.only_taken_in_flight()) {
        match w.cut {
            true => tracing::warn!(
                pid,
                "a draining ASGI worker's requests did not end after their streams were ended: killing it"
            ),
            false => tracing::warn!(
                pid,
                "a draining worker's WebSocket threads did not return after their sockets were closed: killing it"
            ),
        }
        process::signal(pid, Signal::SIGKILL);
        w.state = WorkerState::Stopping;
        return;
    }
    let cut_at = since + policy::drain_cut(graceful);
    if !w.cut && w.conn.interface() == Interface::Asgi && now >= cut_at {
        let left = (since + graceful).saturating_duration_since(now);
        cut(w, now, left + HUNG_TUNNEL_MARGIN);
        process::signal(pid, Signal::SIGTERM);
        w.cut = true;
    }
    if now >= since + graceful {
        // Their apps see the socket end and return, which ends the drain.
        w.conn.close_tunnels();
    }
}
