//! Process-level safety for a worker: die with the master (`PR_SET_PDEATHSIG`), and
//! turn SIGTERM / SIGINT / SIGQUIT into `Conn` decisions on one thread that
//! `sigwait`s for them. The signals are blocked in every other thread (the mask is set
//! before any thread starts and is inherited, also by threads the app creates), so no
//! async handler ever runs Rust or Python code. SIGUSR1 stays unblocked: it belongs
//! to Python's faulthandler, which dumps every thread's stack when the master is
//! about to kill a worker stuck on a request.

use crate::log::wlog;
use crate::stream::{Conn, Exit};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{getppid, Pid};
use std::sync::Arc;

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGQUIT);
    set
}

/// Must run first in `main`, before any thread exists.
pub fn block() -> nix::Result<()> {
    handled().thread_block()
}

/// Asks the kernel to SIGKILL us when the master dies, then checks the master did
/// not die before the request took effect (we would then have been re-parented).
pub fn die_with_parent(parent: Pid) -> Result<(), ParentError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(ParentError::Prctl)?;
    if getppid() != parent {
        return Err(ParentError::Exited);
    }
    Ok(())
}

/// Why the worker cannot tie its life to the master's.
#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    #[error("prctl(PR_SET_PDEATHSIG): {0}")]
    Prctl(nix::Error),
    #[error("the master exited during start-up")]
    Exited,
}

/// Starts the thread that turns signals into drain / quick-exit decisions.
pub fn spawn(conn: Arc<Conn>) -> std::io::Result<()> {
    spawn_with(move |term| match term {
        // SIGTERM: the master stopped sending work; finish what is in flight.
        true => conn.drain(),
        false => conn.exit(Exit::Quick),
    })
}

/// The signal thread with its own reaction: `on(true)` for SIGTERM (drain),
/// `on(false)` for SIGINT / SIGQUIT (stop now). The ASGI worker posts both to its
/// loop.
pub fn spawn_with(on: impl Fn(bool) + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match handled().wait() {
                Ok(sig) => on(sig == Signal::SIGTERM),
                Err(e) => {
                    wlog!("sigwait failed: {e}");
                    return;
                }
            }
        })
        .map(|_| ())
}
