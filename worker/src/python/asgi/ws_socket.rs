//! A WebSocket's socket on the loop: `settle` is the one place that, after any
//! change, writes what the session queued, keeps the loop's `add_reader` /
//! `add_writer` interest in step (no reading while the app has a megabyte it has
//! not taken, writing only while bytes wait), hands a waiting `receive()` its
//! message, lets a waiting `send()` go once the queue is under `HIGH_WATER`, and
//! closes the socket when the connection is over (then ends the wire stream, and
//! forgets the WebSocket once its task is done too). Reads go through one 64 KiB
//! buffer per thread, so an idle WebSocket holds none. No Python runs while the
//! WebSocket's lock is held: `settle` decides under it, `apply` acts after.

use super::conn::{lock, Core};
use super::websocket::{deliver, Phase, Ws, WsRef};
use crate::asgi::websocket::Event;
use crate::asgi::HIGH_WATER;
use crate::log::wdebug;
use crate::wire::{Frame, ResponseHead};
use pyo3::intern;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// How long the server waits for the client's reply to its close before it
/// closes the socket anyway.
const CLOSE_TIMEOUT: f64 = 5.0;

/// How long the close that fails a connection waits for an app that does not
/// ask for the messages before the fault (one that does sends it at once).
const FAIL_DELAY: f64 = 1.0;

/// Reads per readiness callback, so one busy WebSocket cannot hold the loop.
const READS_PER_CALL: usize = 4;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// What `settle` decided, done once the lock is released.
#[derive(Default)]
struct Todo {
    fd: i32,
    reader: Option<bool>,
    writer: Option<bool>,
    /// The socket, to close after the loop stops watching it.
    close: Option<UnixStream>,
    timer: Option<Py<PyAny>>,
    wire_end: Option<u32>,
    deliver: Option<(Py<PyAny>, Event)>,
    release: Vec<Py<PyAny>>,
    reject: Vec<Py<PyAny>>,
    forget: Option<u32>,
    fail_delay: bool,
}

/// The readiness callbacks (`add_reader`, `add_writer`, `call_later`).
#[pyclass(frozen, module = "ferricorn", name = "WebSocketIo")]
pub(crate) struct Io {
    core: Arc<Core>,
    ws: WsRef,
    kind: IoKind,
}

#[derive(Clone, Copy)]
enum IoKind {
    Read,
    Write,
    CloseTimeout,
    FailDelay,
}

#[pymethods]
impl Io {
    fn __call__(&self, py: Python<'_>) {
        match self.kind {
            IoKind::Read => read(&self.ws),
            IoKind::Write => {}
            IoKind::CloseTimeout => give_up(&self.ws),
            IoKind::FailDelay => {
                let mut w = lock(&self.ws);
                w.timer = None;
                if let Phase::Open(s) = &mut w.phase {
                    s.flush_failure();
                }
            }
        }
        settle(py, &self.core, &self.ws);
        if let IoKind::FailDelay = self.kind {
            let _ = close_timer(py, &self.core, &self.ws); // then the client's reply
        }
    }
}

/// Puts back what `take` gave a `receive()` whose task was cancelled meanwhile
/// (e.g. `asyncio.wait_for(ws.receive(), t)` timing out as the message came), with
/// its bytes counted again: `take` subtracted them.
fn untake(w: &mut Ws, ev: Event) {
    w.inbox_bytes += size(&ev);
    w.inbox.push_front(ev);
}

/// The next event for `receive()`; after the end, the end again. The app asking
/// past the messages before a protocol fault is the moment the failing close goes
/// out (after its answers to them).
pub(super) fn take(w: &mut Ws) -> Option<Event> {
    let ev = match w.inbox.pop_front() {
        Some(ev) => {
            w.inbox_bytes -= size(&ev);
            Some(ev)
        }
        None => w
            .ended
            .clone()
            .map(|(code, reason)| Event::Closed { code, reason }),
    };
    if let (Some(Event::Closed { .. }), Phase::Open(s)) = (&ev, &mut w.phase) {
        s.flush_failure();
    }
    ev
}

fn size(ev: &Event) -> usize {
    match ev {
        Event::Text(t) => t.len(),
        Event::Binary(b) => b.len(),
        Event::Closed { .. } => 0,
    }
}

fn push(w: &mut Ws, events: Vec<Event>) {
    for ev in events {
        if let Event::Closed { code, reason } = &ev {
            w.ended = Some((*code, reason.clone()));
        }
        w.inbox_bytes += size(&ev);
        w.inbox.push_back(ev);
    }
}

/// Reads what the client sent, a few buffers' worth, into the session.
fn read(ws: &WsRef) {
    let mut g = lock(ws);
    let w = &mut *g;
    let (Some(sock), Phase::Open(s)) = (&w.sock, &mut w.phase) else {
        return;
    };
    let mut events = Vec::new();
    SCRATCH.with_borrow_mut(|buf| {
        for _ in 0..READS_PER_CALL {
            match (&*sock).read(buf) {
                Ok(0) => s.feed_eof(&mut events),
                Ok(n) => {
                    s.feed(&buf[..n], &mut events);
                    if n < buf.len() {
                        break; // the socket is empty now
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => s.feed_eof(&mut events),
            }
            if s.is_closed() {
                break;
            }
        }
    });
    if let Some(why) = s.failure().filter(|_| !events.is_empty()) {
        wdebug!("stream {}: WebSocket failed: {why}", w.id);
    }
    push(w, events);
}

/// The client never answered the server's close: the socket closes now.
fn give_up(ws: &WsRef) {
    let mut g = lock(ws);
    let w = &mut *g;
    w.timer = None;
    if let Phase::Open(s) = &mut w.phase {
        let mut events = Vec::new();
        s.feed_eof(&mut events);
        s.advance(s.pending().len());
        push(w, events);
    }
}

/// Writes what the session queued, as much as the socket takes.
fn write(w: &mut Ws) {
    let (Some(sock), Phase::Open(s)) = (&w.sock, &mut w.phase) else {
        return;
    };
    let mut events = Vec::new();
    while !s.pending().is_empty() {
        match (&*sock).write(s.pending()) {
            Ok(n) => s.advance(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                // The master's end is gone: nothing more can be said.
                s.feed_eof(&mut events);
                s.advance(s.pending().len());
            }
        }
    }
    push(w, events);
}

/// Brings the socket, the loop's interest and the waiters in step with the state.
pub(crate) fn settle(py: Python<'_>, core: &Arc<Core>, ws: &WsRef) {
    let todo = {
        let mut g = lock(ws);
        let w = &mut *g;
        let mut todo = Todo {
            fd: w.sock.as_ref().map_or(-1, |s| s.as_raw_fd()),
            ..Todo::default()
        };
        if w.recv_waiter.is_some() {
            if let Some(ev) = take(w) {
                todo.deliver = w.recv_waiter.take().map(|f| (f, ev));
            }
        }
        write(w);
        let over = match &w.phase {
            Phase::Open(s) => s.is_closed() && s.pending().is_empty(),
            Phase::Connecting => w.ended.is_some(),
            Phase::Denying | Phase::Closed => true,
        };
        if over && w.sock.is_some() {
            todo.close = w.sock.take();
            todo.timer = w.timer.take();
            if matches!(w.phase, Phase::Open(_)) && !w.wire_done {
                w.wire_done = true;
                todo.wire_end = Some(w.id);
            }
        }
        interest(w, &mut todo);
        todo.fail_delay = w.sock.is_some()
            && w.timer.is_none()
            && matches!(&w.phase, Phase::Open(s) if s.is_failing());
        if w.task.is_none() && w.wire_done && w.sock.is_none() {
            todo.forget = Some(w.id);
        }
        todo
    };
    apply(py, core, ws, todo);
}

/// Which of reader and writer the loop should have, and which `send()`s may go on.
fn interest(w: &mut Ws, todo: &mut Todo) {
    let (want_read, want_write, backlog, sending) = match (&w.sock, &w.phase) {
        (Some(_), Phase::Open(s)) => (
            s.is_reading() && w.inbox_bytes < HIGH_WATER,
            !s.pending().is_empty(),
            s.pending().len(),
            s.is_open(),
        ),
        _ => (false, false, 0, false),
    };
    if want_read != w.reading {
        todo.reader = Some(want_read);
        w.reading = want_read;
    }
    if want_write != w.writing {
        todo.writer = Some(want_write);
        w.writing = want_write;
    }
    if !sending {
        todo.reject = std::mem::take(&mut w.send_waiters);
    } else if backlog < HIGH_WATER {
        todo.release = std::mem::take(&mut w.send_waiters);
    }
}

fn apply(py: Python<'_>, core: &Arc<Core>, ws: &WsRef, todo: Todo) {
    let lp = core.event_loop.bind(py);
    let io = |kind| Io {
        core: core.clone(),
        ws: ws.clone(),
        kind,
    };
    match todo.reader {
        Some(true) => call(lp.call_method1(intern!(py, "add_reader"), (todo.fd, io(IoKind::Read)))),
        Some(false) => call(lp.call_method1(intern!(py, "remove_reader"), (todo.fd,))),
        None => {}
    }
    match todo.writer {
        Some(true) => {
            call(lp.call_method1(intern!(py, "add_writer"), (todo.fd, io(IoKind::Write))))
        }
        Some(false) => call(lp.call_method1(intern!(py, "remove_writer"), (todo.fd,))),
        None => {}
    }
    drop(todo.close); // after the loop stopped watching its fd
    if let Some(t) = todo.timer {
        call(
            t.call_method0(py, intern!(py, "cancel"))
                .map(|r| r.into_bound(py)),
        );
    }
    if let Some(id) = todo.wire_end {
        let head = ResponseHead {
            status: 200,
            headers: Vec::new(),
        };
        core.send_frames(
            py,
            id,
            vec![Frame::ResponseHead(Box::new(head)), Frame::ResponseEnd],
        );
    }
    if let Some((waiter, ev)) = todo.deliver {
        if is_done(py, &waiter) {
            untake(&mut lock(ws), ev); // its task was cancelled: kept for the next call
        } else {
            deliver(py, &waiter, &ev);
        }
    }
    for w in todo.release {
        super::http::resolve(py, &w, py.None());
    }
    for w in todo.reject {
        if !is_done(py, &w) {
            let err = super::websocket::disconnected().into_value(py);
            let _ = w.call_method1(py, intern!(py, "set_exception"), (err,));
        }
    }
    if todo.fail_delay {
        arm(py, core, ws, FAIL_DELAY, IoKind::FailDelay);
    }
    if let Some(id) = todo.forget {
        core.forget_websocket(py, ws, id);
    }
}

fn call(r: PyResult<Bound<'_, PyAny>>) {
    if let Err(e) = r {
        Python::attach(|py| super::super::log_exception(py, "a WebSocket's loop call failed", &e));
    }
}

fn is_done(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    fut.call_method0(py, intern!(py, "done"))
        .and_then(|d| d.is_truthy(py))
        .unwrap_or(true)
}

/// A future for a `send()` that must wait for the socket (`None`: it need not).
pub(crate) fn send_waiter(
    py: Python<'_>,
    core: &Arc<Core>,
    ws: &WsRef,
) -> PyResult<Option<Py<PyAny>>> {
    let (backlog, id) = {
        let w = lock(ws);
        match &w.phase {
            Phase::Open(s) => (s.pending().len(), w.id),
            _ => (0, w.id),
        }
    };
    if backlog < HIGH_WATER {
        return Ok(None);
    }
    wdebug!("stream {id}: WebSocket send() waits: {backlog} bytes the socket did not take");
    let fut = core.new_future(py)?;
    lock(ws).send_waiters.push(fut.clone_ref(py));
    Ok(Some(fut))
}

/// Arms the close handshake's deadline (once).
pub(crate) fn close_timer(py: Python<'_>, core: &Arc<Core>, ws: &WsRef) -> PyResult<()> {
    arm(py, core, ws, CLOSE_TIMEOUT, IoKind::CloseTimeout);
    Ok(())
}

/// `loop.call_later(delay, ...)` for this WebSocket, unless a timer is armed or
/// the socket is closed.
fn arm(py: Python<'_>, core: &Arc<Core>, ws: &WsRef, delay: f64, kind: IoKind) {
    {
        let w = lock(ws);
        if w.timer.is_some() || w.sock.is_none() {
            return;
        }
    }
    let cb = Io {
        core: core.clone(),
        ws: ws.clone(),
        kind,
    };
    match core
        .event_loop
        .call_method1(py, intern!(py, "call_later"), (delay, cb))
    {
        Ok(handle) => lock(ws).timer = Some(handle),
        Err(e) => super::super::log_exception(py, "a WebSocket's timer", &e),
    }
}
