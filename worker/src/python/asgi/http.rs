//! One `http` request on the loop: its task (`spawn`), `receive()` and `send()`
//! (`Receive`, `Send`), the master's frames for it (`feed`, `client_gone`), and
//! what its task's end means (`TaskDone`): a 500 if it failed before the head, an
//! Abort if after, `Abort("cancelled")` when the master cancelled it. `receive()`
//! and `send()` return an already-done awaitable unless they must wait; only then
//! is a loop future made.

use super::awaitable::Done;
use super::conn::{lock, Core};
use super::scope;
use crate::asgi::{Inbox, Received, Response, SendError, CANCEL_ACK, HIGH_WATER};
use crate::log::{self, wdebug};
use crate::wire::{Frame, RequestHead};
use bytes::Bytes;
use ferricorn_wire::log_record::{Level, Record};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One request's state, shared by its `receive`, `send`, task callback and the
/// connection's table.
pub(crate) struct Stream {
    pub(crate) id: u32,
    pub(crate) inbox: Inbox,
    pub(crate) resp: Response,
    /// The `receive()`s waiting, oldest first: each task awaiting one has its own
    /// (a listener for the disconnect beside one reading the body, as uvicorn
    /// serves them; Django and Starlette listen while they stream).
    recv_waiters: VecDeque<Py<PyAny>>,
    /// The `send()`s waiting for a Resume (a paused stream).
    send_waiters: Vec<Py<PyAny>>,
    pub(crate) paused: bool,
    pub(crate) task: Option<Py<PyAny>>,
    /// Draining, and its client gone at the last sweep: cancelled at the next.
    doomed: bool,
    /// Cancelled, and its task ignored it (`CancelOverdue`): the stream stays,
    /// with its slot at the master, until the task ends, or the worker drains.
    detached: bool,
    /// For the error log, should the app fail.
    request: [Bytes; 3],
}

pub(crate) type StreamRef = Arc<Mutex<Stream>>;

impl Stream {
    pub(crate) fn new(id: u32, head: &RequestHead) -> StreamRef {
        Arc::new(Mutex::new(Stream {
            id,
            inbox: Inbox::default(),
            resp: Response::new(head.method.as_ref() == b"HEAD"),
            recv_waiters: VecDeque::new(),
            send_waiters: Vec::new(),
            paused: false,
            task: None,
            doomed: false,
            detached: false,
            request: [
                head.request_id.clone(),
                head.method.clone(),
                head.path.clone(),
            ],
        }))
    }
}

/// Builds the scope and starts `app(scope, receive, send)` as a task.
pub(crate) fn spawn(
    py: Python<'_>,
    core: &Arc<Core>,
    stream: &StreamRef,
    head: &RequestHead,
) -> PyResult<()> {
    let scope = scope::http(py, &core.fixed, head)?;
    let receive = Receive {
        core: core.clone(),
        stream: stream.clone(),
    };
    let send = Send {
        core: core.clone(),
        stream: stream.clone(),
    };
    let (receive, send) = (Bound::new(py, receive)?, Bound::new(py, send)?);
    let task = core.start_task(py, scope.into_any(), receive.into_any(), send.into_any())?;
    let done = TaskDone {
        core: core.clone(),
        stream: stream.clone(),
    };
    task.call_method1(py, intern!(py, "add_done_callback"), (done,))?;
    lock(stream).task = Some(task);
    Ok(())
}

/// The app could not even be called (its call raised): a 500.
pub(crate) fn failed_before_task(
    py: Python<'_>,
    core: &Arc<Core>,
    stream: &StreamRef,
    err: &PyErr,
) {
    let (id, frames) = {
        let mut s = lock(stream);
        let _ = log_failure(py, &s.request, err);
        let mut frames = Vec::new();
        s.resp.error_page(&mut frames);
        (s.id, frames)
    };
    core.send_frames(py, id, frames);
    core.task_done(py, stream, id);
}

/// Body bytes or the body's end from the master; a waiting `receive()` gets them.
pub(crate) fn feed(py: Python<'_>, core: &Core, stream: &StreamRef, f: impl FnOnce(&mut Inbox)) {
    let (delivered, credit) = {
        let mut s = lock(stream);
        f(&mut s.inbox);
        let delivered = take_for_waiters(py, &mut s);
        (delivered, credit_due(&mut s))
    };
    send_credit(py, core, credit);
    for (waiter, got) in delivered {
        if let Ok(msg) = message(py, got) {
            resolve(py, &waiter, msg);
        }
    }
}

/// The body bytes the app took, to credit to the master now (`Inbox::credit_due`).
fn credit_due(s: &mut Stream) -> Option<(u32, Frame)> {
    s.inbox.credit_due().map(|n| (s.id, Frame::Credit(n)))
}

/// Sends a credit (outside the stream's lock: `send_frames` may call the loop).
fn send_credit(py: Python<'_>, core: &Core, credit: Option<(u32, Frame)>) {
    if let Some((id, frame)) = credit {
        core.send_frames(py, id, vec![frame]);
    }
}

/// The waiting `receive()`s' futures and what each gets, oldest first, while
/// messages are there.
fn take_for_waiters(py: Python<'_>, s: &mut Stream) -> Vec<(Py<PyAny>, Received)> {
    let mut delivered = Vec::new();
    while let Some(waiter) = s.recv_waiters.pop_front() {
        if is_done(py, &waiter) {
            continue; // its task was cancelled: the message stays for the next call
        }
        match s.inbox.take() {
            Received::Wait => {
                s.recv_waiters.push_front(waiter);
                break;
            }
            got => delivered.push((waiter, got)),
        }
    }
    delivered
}

/// The client went away (the master's Abort, or the connection's end): a waiting
/// `receive()` gets `http.disconnect`, a waiting `send()` raises.
pub(crate) fn client_gone(py: Python<'_>, stream: &StreamRef) {
    let (recv, send) = {
        let mut s = lock(stream);
        s.inbox.abort();
        (
            std::mem::take(&mut s.recv_waiters),
            std::mem::take(&mut s.send_waiters),
        )
    };
    for w in recv {
        disconnect(py, &w);
    }
    for w in send {
        reject(py, &w, disconnected());
    }
}

/// Seconds a cancelled request's task has to end by itself after its
/// `http.disconnect`, before the task is cancelled (under the master's 5 s
/// `CANCEL_GRACE`).
const CANCEL_AFTER_DISCONNECT_S: f64 = 1.0;

/// The master's Cancel (the request is past its timeout; the master answered
/// 504): first an `http.disconnect`, as if the client had gone, then, unless the
/// task ended by then, the task's cancel `CANCEL_AFTER_DISCONNECT_S` later (its end
/// sends `Abort("cancelled")`). Django's ASGIHandler runs the view in a task of its
/// own and cancels it when its listener sees the disconnect; cancelling only the
/// app's task would leave the view running, orphaned and uncounted, and skip
/// `request_finished` (tests/asgi_django.rs). A task still running `CANCEL_ACK`
/// after its cancel ignored it (`CancelOverdue`).
pub(crate) fn cancel(py: Python<'_>, core: &Arc<Core>, stream: &StreamRef) {
    client_gone(py, stream);
    let task = lock(stream).task.as_ref().map(|t| t.clone_ref(py));
    let Some(task) = task else {
        return;
    };
    let task = task.bind(py);
    let call_later = intern!(py, "call_later");
    let later = task.getattr(intern!(py, "cancel")).and_then(|cancel| {
        core.event_loop
            .call_method1(py, call_later, (CANCEL_AFTER_DISCONNECT_S, cancel))
    });
    if later.is_err() {
        let _ = task.call_method0(intern!(py, "cancel"));
    }
    let overdue = CancelOverdue {
        core: core.clone(),
        stream: stream.clone(),
    };
    let check = Py::new(py, overdue).and_then(|cb| {
        let after = CANCEL_AFTER_DISCONNECT_S + CANCEL_ACK.as_secs_f64();
        core.event_loop.call_method1(py, call_later, (after, cb))
    });
    if let Err(e) = check {
        super::super::log_exception(py, "call_later(cancel check) failed", &e);
    }
}

/// A cancelled task still running: it caught its CancelledError (or cleans up
/// slowly). The loop runs, which the master is told (`Credit(0)` on the stream)
/// before it takes the missing end for a blocked loop and replaces the worker
/// with every request it serves. The task runs on (its `send()`s are refused),
/// and its stream stays open, with its slot at the master, until it ends: tasks
/// that ignore their cancel never add up past `worker_connections`.
#[pyclass(frozen, module = "ferricorn", name = "CancelOverdue")]
pub(crate) struct CancelOverdue {
    core: Arc<Core>,
    stream: StreamRef,
}

#[pymethods]
impl CancelOverdue {
    fn __call__(&self, py: Python<'_>) {
        let id = {
            let mut s = lock(&self.stream);
            if s.task.is_none() || s.resp.done() {
                return;
            }
            s.detached = true;
            s.id
        };
        log::at(
            Level::Warn,
            format_args!(
                "stream {id}: its task ignored its cancellation for {:?} (it caught \
                 CancelledError?): it runs on, and keeps its request's slot until it ends",
                CANCEL_ACK
            ),
        );
        self.core.send_frames(py, id, vec![Frame::Credit(0)]);
    }
}

/// A drain's sweep (`drain`): a detached task's stream ends now (no request comes
/// any more, so its slot no longer matters, and the worker's lifespan shutdown
/// need not wait for a task that ignores every cancel). Returns whether it did.
pub(super) fn let_go(py: Python<'_>, core: &Core, stream: &StreamRef) -> bool {
    let (id, frames) = {
        let mut s = lock(stream);
        if !s.detached || s.task.is_none() || s.resp.done() {
            return false;
        }
        (s.id, vec![s.resp.abort("cancelled")])
    };
    core.send_frames(py, id, frames);
    core.task_done(py, stream, id);
    true
}

/// A drain's sweep (`drain`): a task whose client is gone is marked, and cancelled
/// at the next sweep if it still runs. Returns whether it was cancelled now.
pub(crate) fn doom(py: Python<'_>, stream: &StreamRef) -> bool {
    let task = {
        let mut s = lock(stream);
        if !s.inbox.is_aborted() || !std::mem::replace(&mut s.doomed, true) {
            return false;
        }
        s.task.as_ref().map(|t| t.clone_ref(py))
    };
    task.is_some_and(|t| t.call_method0(py, intern!(py, "cancel")).is_ok())
}

/// The master's Pause (`paused`) or Resume: a paused `send()` goes on.
pub(crate) fn resume(py: Python<'_>, stream: &StreamRef, paused: bool) {
    let waiters = {
        let mut s = lock(stream);
        s.paused = paused;
        match paused {
            true => Vec::new(),
            false => std::mem::take(&mut s.send_waiters),
        }
    };
    for w in waiters {
        resolve(py, &w, py.None());
    }
}

pub(super) fn is_done(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    fut.call_method0(py, intern!(py, "done"))
        .and_then(|d| d.is_truthy(py))
        .unwrap_or(true)
}

/// Completes a future unless its task gave up on it (cancelled).
pub(crate) fn resolve(py: Python<'_>, fut: &Py<PyAny>, value: Py<PyAny>) {
    if !is_done(py, fut) {
        let _ = fut.call_method1(py, intern!(py, "set_result"), (value,));
    }
}

fn reject(py: Python<'_>, fut: &Py<PyAny>, err: PyErr) {
    if !is_done(py, fut) {
        let _ = fut.call_method1(py, intern!(py, "set_exception"), (err.into_value(py),));
    }
}

pyo3::create_exception!(
    ferricorn,
    ClientDisconnected,
    PyOSError,
    "send() after the client went away (ASGI 2.4: an OSError)."
);

fn disconnected() -> PyErr {
    ClientDisconnected::new_err("the client went away (http.disconnect)")
}

fn message(py: Python<'_>, got: Received) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    match got {
        Received::Body(body, more) => {
            d.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
            d.set_item(intern!(py, "body"), PyBytes::new(py, &body))?;
            d.set_item(intern!(py, "more_body"), more)?;
        }
        Received::Disconnect | Received::Wait => {
            d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
        }
    }
    Ok(d.into_any().unbind())
}

#[pyclass(frozen, module = "ferricorn", name = "Receive")]
pub(crate) struct Receive {
    core: Arc<Core>,
    stream: StreamRef,
}

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (got, credit) = {
            let mut s = lock(&self.stream);
            let got = s.inbox.take();
            (got, credit_due(&mut s))
        };
        send_credit(py, &self.core, credit);
        // Once the response is complete, as in uvicorn: `http.disconnect`, for the
        // front watches the client no more and would never say so.
        let got = match got {
            Received::Wait if lock(&self.stream).resp.done() => Received::Disconnect,
            got => got,
        };
        if got != Received::Wait {
            return Done::ready(py, message(py, got)?);
        }
        let fut = self.core.new_future(py)?;
        let mut s = lock(&self.stream);
        // Those whose task gave up (`wait_for(receive(), t)` in a loop) go.
        s.recv_waiters.retain(|w| !is_done(py, w));
        s.recv_waiters.push_back(fut.clone_ref(py));
        Ok(fut)
    }
}

#[pyclass(frozen, module = "ferricorn", name = "Send")]
pub(crate) struct Send {
    core: Arc<Core>,
    stream: StreamRef,
}

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let kind = message.get_item(intern!(py, "type"))?;
        let kind = kind.cast::<PyString>()?.to_cow()?;
        if lock(&self.stream).inbox.is_aborted() {
            return Err(disconnected());
        }
        let wait = match &*kind {
            "http.response.start" => self.start(py, message)?,
            "http.response.body" => self.body(py, message)?,
            "http.response.pathsend" if self.core.fixed.pathsend => {
                super::pathsend::send(py, &self.core, &self.stream, message)?
            }
            other => {
                return Err(PyRuntimeError::new_err(format!(
                    "unexpected ASGI message type {other:?} for an http scope"
                )))
            }
        };
        answered(py, &self.stream);
        match wait {
            Some(fut) => Ok(fut),
            None => Ok(self.core.done_none.clone_ref(py)),
        }
    }
}

/// Completes a waiting `receive()` with `http.disconnect`.
fn disconnect(py: Python<'_>, waiter: &Py<PyAny>) {
    if let Ok(msg) = message(py, Received::Disconnect) {
        resolve(py, waiter, msg);
    }
}

/// After a message that may have completed the response: a `receive()` waiting
/// (Django's and Starlette's listeners for a disconnect) gets `http.disconnect`.
fn answered(py: Python<'_>, stream: &StreamRef) {
    let waiters = {
        let mut s = lock(stream);
        match s.resp.done() {
            true => std::mem::take(&mut s.recv_waiters),
            false => VecDeque::new(),
        }
    };
    for w in waiters {
        disconnect(py, &w);
    }
}

impl Send {
    fn start(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let status: i64 = message
            .get_item(intern!(py, "status"))?
            .extract()
            .map_err(|_| PyTypeError::new_err("http.response.start: status must be an int"))?;
        let fields = headers(py, message)?;
        lock(&self.stream)
            .resp
            .start(status, fields)
            .map_err(send_error)?;
        Ok(None)
    }

    fn body(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let body = optional(py, message, intern!(py, "body"))?;
        let data = match body {
            None => Bytes::new(),
            Some(b) => body_bytes(&b)?,
        };
        let more = match optional(py, message, intern!(py, "more_body"))? {
            Some(m) => m.is_truthy()?,
            None => false,
        };
        let mut frames = Vec::new();
        let (id, outcome, paused) = {
            let mut s = lock(&self.stream);
            let outcome = s.resp.body(data, more, &mut frames);
            (s.id, outcome, s.paused && more)
        };
        let queued = self.core.send_frames(py, id, frames);
        outcome.map_err(send_error)?;
        if paused {
            // Said, for it is what a client that stops reading comes to (tests
            // wait on it: a paused stream moves no more until its client reads).
            wdebug!("stream {id}: send() waits: the front paused the response (its client does not read)");
            let fut = self.core.new_future(py)?;
            let mut s = lock(&self.stream);
            s.send_waiters.retain(|w| !is_done(py, w));
            s.send_waiters.push(fut.clone_ref(py));
            return Ok(Some(fut));
        }
        match queued >= HIGH_WATER {
            true => self.core.drain_waiter(py),
            false => Ok(None),
        }
    }
}

/// The body as the spec types it (bytes); a bytearray is taken too, as uvicorn
/// takes it.
fn body_bytes(b: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = b.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    match b.cast::<PyByteArray>() {
        Ok(b) => Ok(Bytes::from(b.to_vec())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "http.response.body: body must be bytes, not {}",
            b.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))),
    }
}

/// `message.get(key)`, None when missing or None.
pub(crate) fn optional<'py>(
    py: Python<'py>,
    message: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let v = message.call_method1(intern!(py, "get"), (key,))?;
    Ok((!v.is_none()).then_some(v))
}

/// The message's `headers`: an iterable of `[name, value]` byte strings.
pub(super) fn headers(py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Vec<(Bytes, Bytes)>> {
    let Some(list) = optional(py, message, intern!(py, "headers"))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in list.try_iter()? {
        let item = item?;
        let bytes = |i: usize| -> PyResult<Bytes> {
            let v = item.get_item(i)?;
            let b = v.cast::<PyBytes>().map_err(|_| {
                PyTypeError::new_err("each response header must be a pair of bytes")
            })?;
            Ok(Bytes::copy_from_slice(b.as_bytes()))
        };
        if item.len()? != 2 {
            return Err(PyTypeError::new_err(
                "each response header must be a pair of bytes",
            ));
        }
        out.push((bytes(0)?, bytes(1)?));
    }
    Ok(out)
}

pub(crate) fn send_error(e: SendError) -> PyErr {
    match e {
        SendError::Twice | SendError::NotStarted | SendError::Complete | SendError::TooLong => {
            PyRuntimeError::new_err(e.to_string())
        }
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// The task's end decides the stream's end, if the app did not.
#[pyclass(frozen, module = "ferricorn", name = "TaskDone")]
pub(crate) struct TaskDone {
    core: Arc<Core>,
    stream: StreamRef,
}

#[pymethods]
impl TaskDone {
    fn __call__(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let cancelled = task.call_method0(intern!(py, "cancelled"))?.is_truthy()?;
        let err = match cancelled {
            true => None,
            false => {
                let exc = task.call_method0(intern!(py, "exception"))?;
                (!exc.is_none()).then(|| PyErr::from_value(exc))
            }
        };
        let (id, frames) = {
            let mut s = lock(&self.stream);
            s.task = None;
            (
                s.id,
                ending(py, &mut s, cancelled, err.as_ref(), self.core.dev),
            )
        };
        self.core.send_frames(py, id, frames);
        self.core.task_done(py, &self.stream, id);
        Ok(())
    }
}

/// The frames that end a stream whose task is over.
fn ending(
    py: Python<'_>,
    s: &mut Stream,
    cancelled: bool,
    err: Option<&PyErr>,
    dev: bool,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    if cancelled {
        if !s.resp.done() {
            frames.push(s.resp.abort("cancelled"));
        }
        return frames;
    }
    if s.inbox.is_aborted() {
        // The OSError our send() raised after the disconnect is the app giving
        // up, not a bug: debug. Anything else is still the app's error.
        match err {
            Some(e) if e.is_instance_of::<PyOSError>(py) => {
                let summary = super::super::traceback::summary(py, e);
                wdebug!("stream {}: the client went away: {summary}", s.id);
            }
            Some(e) => {
                let _ = log_failure(py, &s.request, e);
            }
            None => {}
        }
        if !s.resp.done() {
            frames.push(s.resp.abort("client gone"));
        }
        return frames;
    }
    let tb = match err {
        Some(e) => log_failure(py, &s.request, e),
        None if !s.resp.done() => {
            let e = PyRuntimeError::new_err(match s.resp.started() {
                true => "the ASGI app returned before its response was complete",
                false => "the ASGI app returned without sending a response",
            });
            log_failure(py, &s.request, &e)
        }
        None => String::new(),
    };
    if s.resp.done() {
    } else if s.resp.head_sent() {
        frames.push(s.resp.abort("the app failed mid-response"));
    } else if dev {
        let page = super::super::traceback::dev_page("The application raised an exception.", &tb);
        s.resp
            .error_page_of(b"text/html; charset=utf-8", Bytes::from(page), &mut frames);
    } else {
        s.resp.error_page(&mut frames);
    }
    frames
}

/// One error record with the traceback, as the WSGI path logs a failed request;
/// returns the traceback.
pub(super) fn log_failure(py: Python<'_>, request: &[Bytes; 3], err: &PyErr) -> String {
    let tb = super::super::traceback::format(py, err);
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    log::emit(
        &Record::new(
            Level::Error,
            format!("error handling request\n{}", tb.trim_end()),
        )
        .field("request_id", text(&request[0]))
        .field("method", text(&request[1]))
        .field("path", text(&request[2])),
    );
    tb
}
