//! The end of an ASGI worker's drain (TERM). The master ends the streams still open
//! near its deadline (`Abort`: the app sees `http.disconnect`, its `send()`
//! raises); a task that goes on regardless (it never calls `receive()`, nor
//! `send()`) is cancelled here, `DRAIN_CANCEL_GRACE` to twice that after its client
//! went, so that the lifespan shutdown, `worker_exit` and atexit still run before
//! the master's deadline. A task that already ignored its cancel (its request
//! keeps its slot while the worker serves) is let go of at the first sweep.

use super::conn::Core;
use super::http;
use crate::log::wlog;
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// How long a draining worker's task may go on after its client went, at least
/// (at most twice this: one sweep marks it, the next cancels it).
pub(crate) const DRAIN_CANCEL_GRACE: Duration = Duration::from_millis(500);

/// The sweep `loop.call_later` runs while the worker drains.
#[pyclass(frozen, module = "ferricorn")]
pub(crate) struct Sweep(Arc<Core>);

#[pymethods]
impl Sweep {
    fn __call__(&self, py: Python<'_>) {
        sweep(py, &self.0);
    }
}

/// Sweeps the streams every `DRAIN_CANCEL_GRACE` until none is left.
pub(super) fn schedule(py: Python<'_>, core: &Arc<Core>) {
    let scheduled = Py::new(py, Sweep(core.clone())).and_then(|cb| {
        core.event_loop
            .call_method1(py, "call_later", (DRAIN_CANCEL_GRACE.as_secs_f64(), cb))
    });
    if let Err(e) = scheduled {
        super::super::log_exception(py, "call_later(drain sweep) failed", &e);
    }
}

fn sweep(py: Python<'_>, core: &Arc<Core>) {
    let entries = core.entries();
    if entries.is_empty() {
        return; // the drain is over
    }
    let released = entries
        .iter()
        .filter_map(|e| e.http())
        .filter(|s| http::let_go(py, core, s))
        .count();
    if released > 0 {
        wlog!("draining: let go of {released} request(s) whose task ignored its cancellation");
    }
    let cancelled = entries
        .iter()
        .filter_map(|e| e.http())
        .filter(|s| http::doom(py, s))
        .count();
    if cancelled > 0 {
        wlog!(
            "draining: cancelled {cancelled} request(s) still running after their client was gone"
        );
    }
    schedule(py, core);
}
