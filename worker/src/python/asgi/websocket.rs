//! One `websocket` scope on the loop (ASGI 2.4, contract §4): its task (`start`),
//! `receive()` (`websocket.connect` first, then the client's messages and its
//! `websocket.disconnect`) and `send()` (`accept`, `send`, `close`, and the denial
//! response extension), the master's frames for it before it is accepted, and what
//! its task's end means. Once accepted, the socket the master passed carries the
//! `101` and RFC 6455 frames, coded in Rust (`crate::asgi::websocket`) and moved by
//! `ws_socket` under the loop's `add_reader` / `add_writer`; the app sees whole
//! messages only. A refusal (`websocket.close` before `accept`: 403, or
//! `websocket.http.response.*`) is an ordinary answer on the wire, the socket
//! closed unused. The stream's wire end for an accepted one is `ResponseHead(200)`
//! + `ResponseEnd`, sent when the socket closes (the master drops it).

use super::awaitable::Done;
use super::conn::{lock, Core, Entry};
use super::http::{is_done, optional, resolve, send_error};
use super::scope;
use super::ws_socket;
use crate::asgi::websocket::{handshake, session::MAX_MESSAGE, Event, Session};
use crate::asgi::Response;
use crate::stream::Fatal;
use crate::wire::{Frame, RequestHead, ResponseHead, Scheme};
use bytes::Bytes;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Where a WebSocket is in its life.
pub(super) enum Phase {
    /// The handshake waits for the app's answer.
    Connecting,
    /// The app refuses it with its own response (`websocket.http.response.*`).
    Denying,
    /// Accepted: the socket carries frames.
    Open(Session),
    /// Over (refused, or the socket closed).
    Closed,
}

/// One WebSocket's state, shared by its `receive`, `send`, socket callbacks, task
/// callback and the connection's table.
pub(crate) struct Ws {
    pub(super) id: u32,
    pub(super) phase: Phase,
    /// The socket the master passed, non-blocking; None once closed.
    pub(super) sock: Option<UnixStream>,
    key: String,
    offered: Vec<String>,
    /// `websocket.connect` was handed over.
    connected: bool,
    /// What the client said that the app has not taken yet, and its size.
    pub(super) inbox: VecDeque<Event>,
    pub(super) inbox_bytes: usize,
    /// The connection's end as the app sees it, once known (code, reason).
    pub(super) ended: Option<(u16, String)>,
    pub(super) recv_waiter: Option<Py<PyAny>>,
    /// `send()`s waiting for the socket to take the bytes queued before them.
    pub(super) send_waiters: Vec<Py<PyAny>>,
    pub(super) reading: bool,
    pub(super) writing: bool,
    /// The close handshake's deadline (`loop.call_later`'s handle).
    pub(super) timer: Option<Py<PyAny>>,
    pub(super) task: Option<Py<PyAny>>,
    /// The master gave up on it before it was accepted (client gone, timeout).
    aborted: Option<&'static str>,
    /// The wire stream is ended.
    pub(super) wire_done: bool,
    /// The denial's response.
    resp: Response,
    request: [Bytes; 3],
}

pub(crate) type WsRef = Arc<Mutex<Ws>>;

/// A handshake with its socket: the scope is built and the app's task started.
pub(crate) fn start(
    py: Python<'_>,
    core: &Arc<Core>,
    id: u32,
    head: Box<RequestHead>,
    socket: OwnedFd,
) -> Result<(), Fatal> {
    let head = &*head;
    let offered = handshake::offered(field(head, b"sec-websocket-protocol"));
    let key = field(head, b"sec-websocket-key").next().unwrap_or_default();
    let sock = UnixStream::from(socket);
    // The master made only its own end non-blocking; the loop must never wait here.
    if let Err(e) = sock.set_nonblocking(true) {
        crate::log::wlog!("stream {id}: a WebSocket's socket: {e}");
    }
    let ws = Arc::new(Mutex::new(Ws {
        id,
        phase: Phase::Connecting,
        sock: Some(sock),
        key: String::from_utf8_lossy(key).into_owned(),
        offered,
        connected: false,
        inbox: VecDeque::new(),
        inbox_bytes: 0,
        ended: None,
        recv_waiter: None,
        send_waiters: Vec::new(),
        reading: false,
        writing: false,
        timer: None,
        task: None,
        aborted: None,
        wire_done: false,
        resp: Response::new(false),
        // Copies: a slice of a large head would keep the worker's read buffer
        // alive for the WebSocket's life.
        request: [&head.request_id, &head.method, &head.path].map(|b| Bytes::copy_from_slice(b)),
    }));
    core.register(id, Entry::WebSocket(ws.clone()))?;
    if let Err(e) = spawn(py, core, &ws, head) {
        ending(py, core, &ws, false, Some(&e));
    }
    Ok(())
}

/// The values of the head's field `name`.
fn field<'a>(head: &'a RequestHead, name: &'static [u8]) -> impl Iterator<Item = &'a [u8]> {
    head.headers
        .iter()
        .filter(move |(n, _)| n.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

fn spawn(py: Python<'_>, core: &Arc<Core>, ws: &WsRef, head: &RequestHead) -> PyResult<()> {
    let scope = websocket_scope(py, &core.fixed, head, &lock(ws).offered)?;
    let receive = Receive {
        core: core.clone(),
        ws: ws.clone(),
    };
    let send = Send {
        core: core.clone(),
        ws: ws.clone(),
    };
    let (receive, send) = (Bound::new(py, receive)?, Bound::new(py, send)?);
    let task = core.start_task(py, scope.into_any(), receive.into_any(), send.into_any())?;
    let done = TaskDone {
        core: core.clone(),
        ws: ws.clone(),
    };
    task.call_method1(py, intern!(py, "add_done_callback"), (done,))?;
    lock(ws).task = Some(task);
    Ok(())
}

/// The `websocket` scope: the keys it shares with `http`, its scheme, the
/// client's subprotocols, and the denial-response extension.
fn websocket_scope<'py>(
    py: Python<'py>,
    fixed: &scope::Fixed,
    head: &RequestHead,
    offered: &[String],
) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
    scope.set_item(intern!(py, "asgi"), asgi)?;
    let version = match head.version {
        20 => intern!(py, "2"),
        _ => intern!(py, "1.1"),
    };
    scope.set_item(intern!(py, "http_version"), version)?;
    let scheme = match head.scheme {
        Scheme::Http => intern!(py, "ws"),
        Scheme::Https => intern!(py, "wss"),
    };
    scope.set_item(intern!(py, "scheme"), scheme)?;
    scope::common(py, fixed, head, &scope)?;
    scope.set_item(intern!(py, "subprotocols"), PyList::new(py, offered)?)?;
    let ext = PyDict::new(py);
    ext.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
    scope.set_item(intern!(py, "extensions"), ext)?;
    Ok(scope)
}

/// A frame from the master for this stream: before the accept, an `Abort` (the
/// client went) or `Cancel` (past its timeout) ends the handshake; after it, the
/// socket says how the connection ends, and these are ignored, as is the
/// `RequestEnd` every handshake gets.
pub(crate) fn from_master(py: Python<'_>, core: &Arc<Core>, ws: &WsRef, frame: &Frame) {
    let (why, task) = {
        let mut w = lock(ws);
        if !matches!(w.phase, Phase::Connecting | Phase::Denying) || w.aborted.is_some() {
            return;
        }
        let (why, cancel) = match frame {
            Frame::Cancel => ("cancelled", true),
            Frame::Abort(_) => ("client gone", false),
            _ => return, // RequestEnd: a handshake has no body
        };
        w.aborted = Some(why);
        w.inbox.push_back(Event::Closed {
            code: 1006,
            reason: String::new(),
        });
        w.ended = Some((1006, String::new()));
        (
            why,
            cancel
                .then(|| w.task.as_ref().map(|t| t.clone_ref(py)))
                .flatten(),
        )
    };
    crate::log::wdebug!(
        "stream {}: WebSocket handshake ended by the master ({why})",
        lock(ws).id
    );
    if let Some(task) = task {
        let _ = task.call_method0(py, intern!(py, "cancel"));
    }
    ws_socket::settle(py, core, ws);
}

/// The message a received event is for the app.
pub(super) fn message(py: Python<'_>, event: &Event) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    match event {
        Event::Text(text) => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            d.set_item(intern!(py, "text"), PyString::new(py, text))?;
        }
        Event::Binary(data) => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            d.set_item(intern!(py, "bytes"), PyBytes::new(py, data))?;
        }
        Event::Closed { code, reason } => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
            d.set_item(intern!(py, "code"), code)?;
            d.set_item(intern!(py, "reason"), PyString::new(py, reason))?;
        }
    }
    Ok(d.into_any().unbind())
}

pub(super) fn disconnected() -> PyErr {
    super::http::ClientDisconnected::new_err("the WebSocket is closed (websocket.disconnect)")
}

#[pyclass(frozen, module = "ferricorn", name = "WebSocketReceive")]
pub(crate) struct Receive {
    core: Arc<Core>,
    ws: WsRef,
}

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let got = {
            let mut w = lock(&self.ws);
            if !w.connected {
                w.connected = true;
                let d = PyDict::new(py);
                d.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
                return Done::ready(py, d.into_any().unbind());
            }
            ws_socket::take(&mut w)
        };
        if let Some(event) = got {
            ws_socket::settle(py, &self.core, &self.ws); // reading may resume
            return Done::ready(py, message(py, &event)?);
        }
        // One reader at a time, as the `websockets` library (uvicorn's default)
        // refuses a concurrent recv(): a second waiter would take the first's
        // place, and the first would wait for ever.
        if lock(&self.ws)
            .recv_waiter
            .as_ref()
            .is_some_and(|f| !is_done(py, f))
        {
            return Err(PyRuntimeError::new_err(
                "receive() called while another task awaits this WebSocket's receive()",
            ));
        }
        let fut = self.core.new_future(py)?;
        lock(&self.ws).recv_waiter = Some(fut.clone_ref(py));
        Ok(fut)
    }
}

#[pyclass(frozen, module = "ferricorn", name = "WebSocketSend")]
pub(crate) struct Send {
    core: Arc<Core>,
    ws: WsRef,
}

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let kind = message.get_item(intern!(py, "type"))?;
        let kind = kind.cast::<PyString>()?.to_cow()?;
        let wait = match &*kind {
            "websocket.accept" => self.accept(py, message)?,
            "websocket.send" => self.send(py, message)?,
            "websocket.close" => self.close(py, message)?,
            "websocket.http.response.start" => self.deny_start(py, message)?,
            "websocket.http.response.body" => self.deny_body(py, message)?,
            other => {
                return Err(PyRuntimeError::new_err(format!(
                    "unexpected ASGI message type {other:?} for a websocket scope"
                )))
            }
        };
        match wait {
            Some(fut) => Ok(fut),
            None => Ok(Py::new(py, Done::none(py))?.into_any()),
        }
    }
}

impl Send {
    /// The handshake must still be unanswered; a gone client is an `OSError`.
    fn unanswered(&self, w: &Ws, what: &str) -> PyResult<()> {
        if w.aborted.is_some() {
            return Err(disconnected());
        }
        match w.phase {
            Phase::Connecting => Ok(()),
            _ => Err(PyRuntimeError::new_err(format!(
                "{what}: the WebSocket handshake was already answered"
            ))),
        }
    }

    fn accept(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let subprotocol = match optional(py, message, intern!(py, "subprotocol"))? {
            Some(p) => Some(p.extract::<String>().map_err(|_| {
                PyTypeError::new_err("websocket.accept: subprotocol must be a str or None")
            })?),
            None => None,
        };
        let fields = super::http::headers(py, message)?;
        {
            let mut w = lock(&self.ws);
            self.unanswered(&w, "websocket.accept")?;
            let head = handshake::accept_head(&w.key, subprotocol.as_deref(), &w.offered, &fields)
                .map_err(|e| PyValueError::new_err(format!("websocket.accept: {e}")))?;
            w.phase = Phase::Open(Session::accepted(MAX_MESSAGE, head));
        }
        ws_socket::settle(py, &self.core, &self.ws);
        Ok(None)
    }

    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let bytes = optional(py, message, intern!(py, "bytes"))?;
        let text = optional(py, message, intern!(py, "text"))?;
        let sent = {
            let mut w = lock(&self.ws);
            let Phase::Open(session) = &mut w.phase else {
                return Err(match w.phase {
                    Phase::Connecting if w.aborted.is_none() => {
                        PyRuntimeError::new_err("websocket.send before websocket.accept")
                    }
                    _ => disconnected(),
                });
            };
            match (bytes, text) {
                (Some(b), None) => session.send_binary(
                    b.cast::<PyBytes>()
                        .map_err(|_| PyTypeError::new_err("websocket.send: bytes must be bytes"))?
                        .as_bytes(),
                ),
                (None, Some(t)) => session.send_text(
                    &t.cast::<PyString>()
                        .map_err(|_| PyTypeError::new_err("websocket.send: text must be a str"))?
                        .to_cow()?,
                ),
                _ => {
                    return Err(PyValueError::new_err(
                        "websocket.send: exactly one of bytes and text must be given",
                    ))
                }
            }
        };
        sent.map_err(|_| disconnected())?;
        ws_socket::settle(py, &self.core, &self.ws);
        ws_socket::send_waiter(py, &self.core, &self.ws)
    }

    fn close(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let code: u16 = match optional(py, message, intern!(py, "code"))? {
            Some(c) => c.extract().map_err(|_| {
                PyValueError::new_err("websocket.close: code must be an int from 1000 to 4999")
            })?,
            None => 1000,
        };
        let reason: String = match optional(py, message, intern!(py, "reason"))? {
            Some(r) => r
                .extract()
                .map_err(|_| PyTypeError::new_err("websocket.close: reason must be a str"))?,
            None => String::new(),
        };
        let refuse = {
            let mut g = lock(&self.ws);
            let aborted = g.aborted.is_some();
            match &mut g.phase {
                // Before the accept: a 403 on the wire, nothing on the socket.
                Phase::Connecting if !aborted => true,
                Phase::Open(session) if session.is_open() => {
                    session
                        .close(code, &reason)
                        .map_err(|e| PyValueError::new_err(e.to_string()))?;
                    false
                }
                // Closing what is closed (an app's `finally`) is no error.
                _ => return Ok(None),
            }
        };
        match refuse {
            true => self.refuse(py, 403),
            false => ws_socket::close_timer(py, &self.core, &self.ws)?,
        }
        ws_socket::settle(py, &self.core, &self.ws);
        Ok(None)
    }

    /// A plain refusal with `status` and no body.
    fn refuse(&self, py: Python<'_>, status: u16) {
        let id = {
            let mut w = lock(&self.ws);
            w.phase = Phase::Closed;
            w.wire_done = true;
            w.ended = Some((1006, String::new()));
            w.id
        };
        let head = ResponseHead {
            status,
            headers: vec![(
                Bytes::from_static(b"content-length"),
                Bytes::from_static(b"0"),
            )],
        };
        let frames = vec![Frame::ResponseHead(Box::new(head)), Frame::ResponseEnd];
        self.core.send_frames(py, id, frames);
    }

    fn deny_start(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let status: i64 = message
            .get_item(intern!(py, "status"))?
            .extract()
            .map_err(|_| {
                PyTypeError::new_err("websocket.http.response.start: status must be an int")
            })?;
        let fields = super::http::headers(py, message)?;
        {
            let mut w = lock(&self.ws);
            self.unanswered(&w, "websocket.http.response.start")?;
            // The head goes with the first body message.
            w.resp.start(status, fields).map_err(send_error)?;
            w.phase = Phase::Denying;
        }
        ws_socket::settle(py, &self.core, &self.ws); // the socket closes unused
        Ok(None)
    }

    fn deny_body(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let data = match optional(py, message, intern!(py, "body"))? {
            None => Bytes::new(),
            Some(b) => Bytes::copy_from_slice(
                b.cast::<PyBytes>()
                    .map_err(|_| {
                        PyTypeError::new_err("websocket.http.response.body: body must be bytes")
                    })?
                    .as_bytes(),
            ),
        };
        let more = match optional(py, message, intern!(py, "more_body"))? {
            Some(m) => m.is_truthy()?,
            None => false,
        };
        let mut frames = Vec::new();
        let (id, outcome) = {
            let mut w = lock(&self.ws);
            if w.aborted.is_some() {
                return Err(disconnected());
            }
            if !matches!(w.phase, Phase::Denying) {
                return Err(PyRuntimeError::new_err(
                    "websocket.http.response.body before websocket.http.response.start",
                ));
            }
            let outcome = w.resp.body(data, more, &mut frames);
            if w.resp.done() {
                w.phase = Phase::Closed;
                w.wire_done = true;
                w.ended = Some((1006, String::new()));
            }
            (w.id, outcome)
        };
        let queued = self.core.send_frames(py, id, frames);
        outcome.map_err(send_error)?;
        match queued >= crate::asgi::HIGH_WATER {
            true => self.core.drain_waiter(py),
            false => Ok(None),
        }
    }
}

/// The task's end decides the WebSocket's end, if the app did not.
#[pyclass(frozen, module = "ferricorn", name = "WebSocketTaskDone")]
pub(crate) struct TaskDone {
    core: Arc<Core>,
    ws: WsRef,
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
        lock(&self.ws).task = None;
        ending(py, &self.core, &self.ws, cancelled, err.as_ref());
        Ok(())
    }
}

/// What a task's end (or a failure to start it) leaves to do: an unanswered
/// handshake gets a 500 (or the master's Abort back); an open WebSocket is closed
/// (1000, 1011 after an exception, 1001 when cancelled).
fn ending(py: Python<'_>, core: &Arc<Core>, ws: &WsRef, cancelled: bool, err: Option<&PyErr>) {
    let (id, frames, close_open) = {
        let mut g = lock(ws);
        let w = &mut *g;
        if let Some(e) = err.filter(|_| w.aborted.is_none()) {
            super::http::log_failure(py, &w.request, e);
        }
        let mut frames = Vec::new();
        let mut close_open = false;
        let (aborted, resp) = (w.aborted, &mut w.resp);
        match &mut w.phase {
            _ if w.wire_done => {}
            Phase::Connecting | Phase::Denying if aborted.is_some() => {
                frames.push(resp.abort(aborted.unwrap_or("client gone")));
            }
            Phase::Connecting => {
                if err.is_none() && !cancelled {
                    let e = PyRuntimeError::new_err(
                        "the ASGI app returned without accepting or refusing the WebSocket",
                    );
                    super::http::log_failure(py, &w.request, &e);
                }
                resp.error_page(&mut frames);
            }
            Phase::Denying if resp.head_sent() => {
                frames.push(resp.abort("the app failed mid-response"))
            }
            Phase::Denying => resp.error_page(&mut frames),
            Phase::Open(session) => {
                let code = match (cancelled, err) {
                    (true, _) => 1001,
                    (_, Some(_)) => 1011,
                    _ => 1000,
                };
                close_open = session.close(code, "").is_ok();
            }
            Phase::Closed => {}
        }
        if !frames.is_empty() {
            w.wire_done = true;
            w.phase = Phase::Closed;
        }
        (w.id, frames, close_open)
    };
    if !frames.is_empty() {
        core.send_frames(py, id, frames);
    }
    if close_open {
        let _ = ws_socket::close_timer(py, core, ws);
    }
    ws_socket::settle(py, core, ws);
}

/// A waiting `receive()` gets `event` (its future completed).
pub(super) fn deliver(py: Python<'_>, waiter: &Py<PyAny>, event: &Event) {
    if let Ok(msg) = message(py, event) {
        resolve(py, waiter, msg);
    }
}
