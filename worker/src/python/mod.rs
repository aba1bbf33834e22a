//! All pyo3 / CPython code lives here and nowhere else. `module` is what Python
//! imports as `ferricorn._worker`; its `run` hands the main thread to `worker`, which
//! loads the app (`app`), then runs `serve_thread` on each of its Python threads. A Python thread attaches to the interpreter once for its whole
//! life and detaches only while it waits or does socket I/O: reading the next
//! request (it is then the leader, see `worker::stream`), waiting for body bytes, or
//! writing its response. Per request: build the environ (`environ`, `input`), call
//! the app with `start_response` (`start_response`), drive its iterable into frames
//! (`response`, `file_wrapper`), always call its `close()`, and turn exceptions into
//! a 500 or an Abort (`traceback` for the log and the `--dev` page). An upgrade
//! request also gets its socket in the environ, closed after the response (`upgrade`).

pub mod app;
pub(crate) mod asgi;
mod environ;
mod file_wrapper;
mod input;
mod module;
mod response;
mod start_response;
pub mod traceback;
mod upgrade;

use crate::log::{self, werror, wlog};
use crate::stream::{Conn, Job};
use crate::wire::{Frame, RequestHead};
use environ::{Consts, ThreadCache};
use ferricorn_wire::log_record::{Level, Record};
use file_wrapper::FileWrapper;
use input::Input;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use response::{ErrorPage, Response};
use start_response::{not_started, type_name, StartResponse};
use std::sync::Arc;

/// The app's callable, opaque outside this module.
pub struct App(Py<PyAny>);

/// What the Python threads run.
pub enum Handler {
    App(App),
    /// `--dev` with an app that failed to import: every request gets this 500 page.
    Broken(Vec<u8>),
}

/// Everything the Python threads share.
pub struct Shared {
    handler: Handler,
    consts: Consts,
    dev: bool,
}

impl Shared {
    pub fn new(handler: Handler, threads: usize, dev: bool) -> Result<Self, SetupError> {
        Python::attach(|py| {
            Ok(Shared {
                handler,
                consts: Consts::new(py, threads).map_err(|e| SetupError(e.to_string()))?,
                dev,
            })
        })
    }
}

/// The interpreter could not make the objects every request shares (the Python
/// exception, as text: no pyo3 type leaves this module).
#[derive(Debug, thiserror::Error)]
#[error("Python: cannot set up the shared request objects: {0}")]
pub struct SetupError(String);

/// Prepares `sys.path` (`dirs` first, in order) and faulthandler, then imports `spec`.
pub fn load(dirs: &[std::path::PathBuf], spec: &str) -> Result<App, app::LoadFailure> {
    Python::attach(|py| {
        app::prepare(py, dirs).map_err(|e| app::LoadFailure {
            traceback: Some(traceback::format(py, &e)),
            message: "failed to prepare the interpreter".into(),
        })?;
        app::load(py, spec).map(App)
    })
}

/// The app's interface against the configured one (`ferricorn/_interface.py`):
/// `Some(line)` when they differ, the one line the operator gets. A failure of
/// the check itself trusts the configuration.
pub fn check_interface(app: &App, spec: &str, interface: &str) -> Option<String> {
    Python::attach(|py| {
        let got = py
            .import("ferricorn._interface")
            .and_then(|m| m.call_method1("check", (app.0.bind(py), spec, interface)))
            .and_then(|r| r.extract::<Option<String>>());
        match got {
            Ok(line) => line,
            Err(e) => {
                log_exception(py, "the interface check failed", &e);
                None
            }
        }
    })
}

/// Hooks (`--hooks`): `ferricorn._hooks` loads the user's file or module now (in a
/// worker before the app; with preload, in the zygote).
pub fn hooks_configure(spec: &str, master: u32) {
    hooks_call("configure", |_, m| {
        m.call_method1("configure", (spec, master)).map(|_| ())
    });
}

/// `post_fork` or `worker_exit` (what a hook raises is logged by `_hooks`).
pub fn hooks_event(name: &str) {
    hooks_call(name, |_, m| {
        m.call_method1("worker_event", (name,)).map(|_| ())
    });
}

/// `post_worker_init`, and the app wrapped for `pre_request` / `post_request`.
pub fn hooks_ready(handler: &mut Handler, interface: &str) {
    let Handler::App(app) = handler else {
        return;
    };
    hooks_call("post_worker_init", |py, m| {
        let wrapped = m.call_method1("worker_ready", (app.0.bind(py), interface))?;
        *app = App(wrapped.unbind());
        Ok(())
    });
}

fn hooks_call(what: &str, f: impl FnOnce(Python<'_>, &Bound<'_, PyModule>) -> PyResult<()>) {
    Python::attach(|py| {
        if let Err(e) = py.import("ferricorn._hooks").and_then(|m| f(py, &m)) {
            log_exception(py, &format!("hooks: {what} failed"), &e);
        }
    });
}

/// Preload: everything the import made moves to the collector's permanent
/// generation (`gc.freeze()`), so collections in the forked workers do not write to
/// the pages they share with the zygote.
pub fn freeze_heap() {
    Python::attach(|py| {
        if let Err(e) = py.import("gc").and_then(|gc| gc.call_method0("freeze")) {
            log_exception(py, "gc.freeze() failed", &e);
        }
    });
}

/// `os.fork()`: CPython's own fork, which runs the interpreter's and the app's
/// at-fork hooks (`os.register_at_fork`) on both sides. 0 in the child.
pub fn fork() -> Result<i32, ForkError> {
    Python::attach(|py| -> PyResult<i32> { py.import("os")?.call_method0("fork")?.extract() })
        .map_err(|e| ForkError(e.to_string()))
}

/// `os.fork()` raised (no memory, too many processes).
#[derive(Debug, thiserror::Error)]
#[error("os.fork(): {0}")]
pub struct ForkError(String);

/// The interpreter this worker runs on, as its Ready frame reports it.
pub fn interpreter() -> crate::wire::Interpreter {
    Python::attach(|py| module::interpreter(py).unwrap_or_default())
}

/// Runs the app's `atexit` handlers (clean exit after a drain).
pub fn run_atexit() {
    Python::attach(app::run_atexit);
}

/// Logs an exception with its traceback, as one write.
pub fn log_exception(py: Python<'_>, what: &str, err: &PyErr) {
    werror!("{what}:\n{}", traceback::format(py, err).trim_end());
}

/// One Python thread's life: take a request, answer it, forever.
pub fn serve_thread(shared: Arc<Shared>, conn: Arc<Conn>) {
    Python::attach(|py| {
        let mut cache = ThreadCache::default();
        loop {
            let job = match conn.try_job() {
                Some(job) => job,
                None => py.detach(|| conn.next_job()),
            };
            handle(py, &shared, &mut cache, &conn, job);
        }
    })
}

fn handle(py: Python<'_>, shared: &Shared, cache: &mut ThreadCache, conn: &Arc<Conn>, job: Job) {
    let Job {
        stream,
        head,
        body,
        socket,
    } = job;
    let upgrade = socket.is_some();
    let head_only = head.method.as_ref() == b"HEAD";
    // For the error log, should the app fail: the head itself goes to the app.
    let request = RequestLine {
        id: head.request_id.clone(),
        method: head.method.clone(),
        path: head.path.clone(),
    };
    let out = std::mem::take(&mut cache.out);
    let resp = Arc::new(Response::new(
        stream,
        head_only,
        body.clone(),
        conn.clone(),
        out,
    ));
    let mut frames = Vec::new();
    match &shared.handler {
        Handler::App(app) => {
            let call = Call {
                app: app.0.bind(py),
                head,
                socket,
            };
            let outcome = run(py, shared, cache, call, &resp, &mut frames);
            let outcome = outcome.and_then(|()| resp.finish(&mut frames).map_err(not_started));
            if let Err(e) = outcome {
                let page = error_page(py, shared.dev, &resp, &request, upgrade, &e);
                resp.fail(page, &mut frames);
            }
        }
        Handler::Broken(page) => resp.fail(
            ErrorPage {
                content_type: "text/html; charset=utf-8",
                body: page.clone(),
            },
            &mut frames,
        ),
    }
    conn.forget(stream, &body);
    resp.push(py, &mut frames, true);
    cache.out = resp.take_out();
    conn.check_drained();
}

/// Which request failed, as the error log names it.
struct RequestLine {
    id: bytes::Bytes,
    method: bytes::Bytes,
    path: bytes::Bytes,
}

/// Logs the failure and picks the 500 body (used only if nothing was sent yet). On
/// an upgrade request an `OSError` is the connection's end: debug, no traceback.
fn error_page(
    py: Python<'_>,
    dev: bool,
    resp: &Response,
    request: &RequestLine,
    upgrade: bool,
    err: &PyErr,
) -> ErrorPage {
    if upgrade && upgrade::is_socket_end(py, err) {
        upgrade::quiet(py, resp.stream, "the app raised", err);
        return ErrorPage::plain();
    }
    if resp.is_front_aborted() {
        wlog!(
            "stream {}: request aborted by the front: {}",
            resp.stream,
            traceback::summary(py, err)
        );
        return ErrorPage::plain();
    }
    let tb = traceback::format(py, err);
    let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
    log::emit(
        &Record::new(
            Level::Error,
            format!("error handling request\n{}", tb.trim_end()),
        )
        .field("request_id", text(&request.id))
        .field("method", text(&request.method))
        .field("path", text(&request.path)),
    );
    if dev {
        ErrorPage {
            content_type: "text/html; charset=utf-8",
            body: traceback::dev_page("The application raised an exception.", &tb),
        }
    } else {
        ErrorPage::plain()
    }
}

/// What one request runs: the app, the head, and an upgrade request's socket.
struct Call<'a, 'py> {
    app: &'a Bound<'py, PyAny>,
    head: Box<RequestHead>,
    socket: Option<std::os::fd::OwnedFd>,
}

/// Builds the environ, runs the app, then closes an upgrade request's socket
/// whether the app returned or raised.
fn run(
    py: Python<'_>,
    shared: &Shared,
    cache: &mut ThreadCache,
    call: Call<'_, '_>,
    resp: &Arc<Response>,
    frames: &mut Vec<Frame>,
) -> PyResult<()> {
    let Call { app, head, socket } = call;
    let input = Bound::new(py, Input::new(resp.body().clone(), resp.conn.clone()))?.into_any();
    let environ = environ::build(py, &shared.consts, cache, &head, input)?;
    drop(head);
    let Some(fd) = socket else {
        return respond(py, app, environ, resp, frames);
    };
    let sock = upgrade::adopt(py, fd)?;
    environ::set_socket(py, &shared.consts, &environ, &sock)?;
    let outcome = respond(py, app, environ, resp, frames);
    upgrade::close(py, resp.stream, &sock);
    outcome
}

/// Calls the app and sends its body; `close()` is always called once the app
/// returned an iterable, whatever happened while sending it.
fn respond(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: Bound<'_, pyo3::types::PyDict>,
    resp: &Arc<Response>,
    frames: &mut Vec<Frame>,
) -> PyResult<()> {
    let start = Bound::new(py, StartResponse::new(resp.clone()))?;
    let result = app.call1((environ, start))?;
    let sent = send(py, &result, resp, frames);
    if let Err(e) = close(py, &result) {
        // The body is complete by now: log, but do not turn it into a failure.
        log_exception(py, "the response's close() raised", &e);
    }
    sent
}

fn close(py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<()> {
    let name = pyo3::intern!(py, "close");
    if result.hasattr(name)? {
        result.call_method0(name)?;
    }
    Ok(())
}

/// Turns the app's iterable into frames. A list or tuple is already complete, so its
/// frames are written together at the end (one write for the whole response); any
/// other iterable streams: each item is written as it comes, and if nobody reads the
/// socket meanwhile we look for an Abort of this stream (its client left).
fn send(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    resp: &Arc<Response>,
    frames: &mut Vec<Frame>,
) -> PyResult<()> {
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some((file, pos)) = wrapper.get().open_fast(py) {
            // Require start_response first, as the iterable path does.
            if !resp.started() {
                return Err(not_started(response::NotStarted));
            }
            let r = resp.clone();
            return py
                .detach(move || file_wrapper::send_file(&r, &file, pos))
                .map_err(|e| PyOSError::new_err(format!("sending the file failed: {e}")));
        }
    }
    let streaming = !(result.is_instance_of::<PyList>() || result.is_instance_of::<PyTuple>());
    for item in result.try_iter()? {
        let item = item?;
        let data = item.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "the response iterable must yield bytes, not {}",
                type_name(&item)
            ))
        })?;
        resp.write(data.as_bytes(), frames).map_err(not_started)?;
        if streaming {
            resp.push(py, frames, true);
            resp.conn.poll_input();
        } else {
            resp.push(py, frames, false);
        }
        if resp.is_stopped() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// STYLE.md §1: the FFI boundary stays in one module.
    #[test]
    fn pyo3_appears_only_under_src_python() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path != src.join("python") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(
                        !text.contains(concat!("py", "o3::")),
                        "{} uses pyo3 outside src/python/",
                        path.display()
                    );
                }
            }
        }
    }
}
