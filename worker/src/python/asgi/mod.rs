//! The ASGI worker (`--interface asgi`): the interpreter's main thread runs an
//! asyncio loop (uvloop under `--asgi-loop auto` when it imports), made by
//! `ferricorn/_asgi.py`, which also runs the `lifespan` scope. `serve` runs the
//! lifespan startup, says Ready, serves until a signal or the master's EOF
//! (`conn`: the loop reads the master's socket itself; `http`: each request a
//! real task; `scope`, `awaitable`, `pathsend`; WebSocket handshakes go to
//! `websocket`), then runs the lifespan shutdown after a drain. The signal thread only posts to the loop (`Waker`).

mod awaitable;
mod conn;
mod drain;
mod http;
mod pathsend;
mod scope;
mod websocket;
mod ws_socket;

use super::app::LoadFailure;
use super::{log_exception, traceback, App};
use crate::claims::Claims;
use crate::log::{self, wlog};
use crate::stream::Exit;
use ferricorn_wire::log_record::Level;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::os::unix::net::UnixStream;

/// What the command line says about the ASGI worker.
pub(crate) struct Options {
    pub(crate) asgi_loop: String,
    pub(crate) lifespan: String,
    pub(crate) root_path: String,
    pub(crate) threads: usize,
    pub(crate) dev: bool,
}

/// Posts signals to the loop (`call_soon_threadsafe`): SIGTERM drains,
/// SIGINT/SIGQUIT stop at once.
pub(crate) struct Waker {
    event_loop: Py<PyAny>,
    cb: Py<PyAny>,
}

impl Waker {
    pub(crate) fn wake(&self, term: bool) {
        Python::attach(|py| {
            let cb = self.cb.clone_ref(py);
            let _ = self
                .event_loop
                .call_method1(py, "call_soon_threadsafe", (cb, term));
        });
    }
}

/// Why the ASGI worker did not serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failed {
    /// The lifespan startup failed: reported like an import failure (exit 3).
    #[error("{}", .0.message)]
    Startup(LoadFailure),
    /// The loop could not be made or run.
    #[error("the ASGI event loop failed:\n{0}")]
    Loop(String),
}

/// The loop made and the lifespan startup done: what `serve` goes on with.
pub(crate) struct Booted {
    event_loop: Py<PyAny>,
    loop_name: String,
    life: Py<PyAny>,
    app: Py<PyAny>,
}

/// Makes the loop and runs the lifespan startup to its end, before the worker
/// connects to the master (a failure is then an exit like an import failure's).
pub(crate) fn boot(app: &App, opts: &Options) -> Result<Booted, Failed> {
    Python::attach(|py| {
        let m = py
            .import("ferricorn._asgi")
            .map_err(|e| loop_error(py, &e))?;
        let made = m
            .call_method1("new_loop", (&opts.asgi_loop, opts.threads))
            .map_err(|e| loop_error(py, &e))?;
        let (event_loop, loop_name): (Bound<'_, PyAny>, String) =
            made.extract().map_err(|e| loop_error(py, &e))?;
        let life = m
            .call_method1("Lifespan", (app.0.bind(py), &opts.lifespan))
            .map_err(|e| loop_error(py, &e))?;
        startup(py, &event_loop, &life)?;
        Ok(Booted {
            event_loop: event_loop.unbind(),
            loop_name,
            life: life.unbind(),
            app: app.0.clone_ref(py),
        })
    })
}

/// Serves on the booted loop until the worker must exit. `ready` sends the Ready
/// frame (the socket is still blocking then) and logs the boot line with the
/// loop's name; `signals` starts the signal thread with its `Waker`.
pub(crate) fn serve(
    booted: Booted,
    sock: UnixStream,
    claims: Option<Claims>,
    opts: Options,
    ready: impl FnOnce(&UnixStream, &str),
    signals: impl FnOnce(Waker),
) -> Result<Exit, Failed> {
    Python::attach(|py| {
        let event_loop = booted.event_loop.bind(py);
        let life = booted.life.bind(py);
        let state = match life.getattr("supported").and_then(|s| s.is_truthy()) {
            Ok(true) => life
                .getattr("state")
                .and_then(|s| Ok(s.cast_into::<PyDict>()?.unbind()))
                .ok(),
            _ => None,
        };
        ready(&sock, &booted.loop_name);
        let fixed = scope::Fixed {
            root_path: opts.root_path.clone(),
            state,
            pathsend: true,
        };
        let core = conn::Core::new(
            py,
            sock,
            claims,
            booted.app.clone_ref(py),
            event_loop.clone().unbind(),
            fixed,
            opts.dev,
        )
        .map_err(|e| loop_error(py, &e))?;
        let cb = Py::new(py, conn::OnSignal(core.clone())).map_err(|e| loop_error(py, &e))?;
        signals(Waker {
            event_loop: event_loop.clone().unbind(),
            cb: cb.into_any(),
        });
        core.start(py).map_err(|e| loop_error(py, &e))?;
        let done = core.done_future(py);
        run_until(py, event_loop, done.bind(py)).map_err(|e| loop_error(py, &e))?;
        let why = core.exit();
        if why == Exit::Drained {
            shutdown(py, event_loop, life);
        }
        Ok(why)
    })
}

/// Runs the loop until `done`. asyncio lets a `SystemExit` or `KeyboardInterrupt`
/// out of the loop; a request's own coroutine runs in `guarded`, which makes it
/// that request's failure, but one raised in a task or callback the app started
/// itself (a background job) would end the worker and every request it serves:
/// it costs only that task (one error record with its traceback) and the loop
/// runs on, its other callbacks where they were.
fn run_until(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    done: &Bound<'_, PyAny>,
) -> PyResult<()> {
    loop {
        let err = match event_loop.call_method1("run_until_complete", (done,)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let escaped = err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
            || err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py);
        if !escaped {
            return Err(err);
        }
        let what = format!(
            "a task or callback the app started raised {}: only it ends, the worker serves on",
            kind(py, &err)
        );
        log_exception(py, &what, &err);
        if done.call_method0("done")?.is_truthy()? {
            return Ok(());
        }
    }
}

fn kind(py: Python<'_>, err: &PyErr) -> String {
    err.get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn loop_error(py: Python<'_>, e: &PyErr) -> Failed {
    Failed::Loop(traceback::format(py, e))
}

/// Runs the lifespan startup to its end; a failure is the worker's exit 3.
fn startup(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    life: &Bound<'_, PyAny>,
) -> Result<(), Failed> {
    let coro = life
        .call_method0("startup")
        .map_err(|e| loop_error(py, &e))?;
    let got = event_loop
        .call_method1("run_until_complete", (coro,))
        .map_err(|e| loop_error(py, &e))?;
    log_notes(life);
    if got.is_none() {
        return Ok(());
    }
    let (message, tb): (String, String) = got.extract().map_err(|e| loop_error(py, &e))?;
    Err(Failed::Startup(LoadFailure {
        traceback: (!tb.is_empty()).then_some(tb),
        message,
    }))
}

/// What the lifespan wants said (unsupported, a failure `auto` mode lets pass).
fn log_notes(life: &Bound<'_, PyAny>) {
    let Ok(notes) = life
        .getattr("notes")
        .and_then(|n| n.extract::<Vec<(String, String)>>())
    else {
        return;
    };
    for (level, text) in notes {
        let level = match level.as_str() {
            "warning" => Level::Warn,
            _ => Level::Info,
        };
        log::at(level, format_args!("{}", text.trim_end()));
    }
}

/// `lifespan.shutdown`, after a drain and before `worker_exit` and atexit.
fn shutdown(py: Python<'_>, event_loop: &Bound<'_, PyAny>, life: &Bound<'_, PyAny>) {
    let ran = life
        .call_method0("shutdown")
        .and_then(|coro| event_loop.call_method1("run_until_complete", (coro,)));
    match ran {
        Ok(msg) if msg.is_none() => {
            if life
                .getattr("supported")
                .is_ok_and(|s| s.is_truthy().unwrap_or(false))
            {
                wlog!("ASGI lifespan shutdown done");
            }
        }
        Ok(msg) => log::at(Level::Warn, format_args!("{msg}")),
        Err(e) => log_exception(py, "ASGI lifespan shutdown failed", &e),
    }
}
