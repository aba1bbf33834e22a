//! The loop's side of the master's socket. `Readable` (under `loop.add_reader`)
//! does one non-blocking `recvmsg` of up to `asgi::READ_BUF`, decodes every whole
//! frame in it and acts on the batch: a head claims its stream and starts its
//! task, body/end/abort frames feed that stream and complete its waiting future.
//! Frames the tasks send go to one out buffer, written once per loop turn
//! (`Flush`, scheduled with `call_soon` by the first frame of a turn), with
//! `add_writer` when the socket is full. All of it runs on the loop's thread; the
//! locks are never contended, and no Python code runs while one is held.

use super::awaitable::Done;
use super::http::{self, Stream, StreamRef};
use super::scope::Fixed;
use super::websocket::{self, WsRef};
use crate::asgi::HIGH_WATER;
use crate::claims::Claims;
use crate::log::{wdebug, wlog};
use crate::stream::{Exit, Fatal};
use crate::wire::{self, Frame, RequestHead};
use bytes::{Buf, BytesMut};
use pyo3::intern;
use pyo3::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct State {
    read_buf: BytesMut,
    tmp: Vec<u8>,
    /// Sockets passed with upgrade heads (SCM_RIGHTS), in order: each upgrade
    /// head takes the next one.
    passed: VecDeque<OwnedFd>,
    /// Streams whose task runs; frames for others are ignored.
    streams: HashMap<u32, Entry>,
    out: BytesMut,
    flush_scheduled: bool,
    writer_on: bool,
    /// `send()`s waiting for `out` to drain below `HIGH_WATER`.
    drain_waiters: Vec<Py<PyAny>>,
    draining: bool,
    input_done: bool,
    write_failed: bool,
    exit: Option<Exit>,
}

/// What a stream id is bound to while its task runs (a WebSocket: until its
/// socket is closed too).
#[derive(Clone)]
pub(crate) enum Entry {
    Http(StreamRef),
    WebSocket(WsRef),
}

impl Entry {
    /// The client went away, or the connection ended: waiters get a disconnect.
    /// (A WebSocket learns it from its own socket, or the master's Abort.)
    fn client_gone(&self, py: Python<'_>) {
        match self {
            Entry::Http(s) => http::client_gone(py, s),
            Entry::WebSocket(_) => {}
        }
    }

    /// The answer is complete: the task may only be waiting for a disconnect. An
    /// open WebSocket is never that: a drain waits for it (the master ends it at
    /// `graceful_timeout`).
    fn answered(&self) -> bool {
        match self {
            Entry::Http(s) => lock(s).resp.done(),
            Entry::WebSocket(_) => false,
        }
    }

    /// An `http` stream's state.
    pub(super) fn http(&self) -> Option<&StreamRef> {
        match self {
            Entry::Http(s) => Some(s),
            _ => None,
        }
    }

    fn is(&self, stream: &StreamRef) -> bool {
        match self {
            Entry::Http(s) => Arc::ptr_eq(s, stream),
            Entry::WebSocket(_) => false,
        }
    }
}

/// The callables the loop holds, made once the `Core` is shared.
struct Callbacks {
    readable: Py<PyAny>,
    flush: Py<PyAny>,
}

/// One ASGI worker's connection to the master, with the app and its loop.
pub(crate) struct Core {
    pub(super) sock: UnixStream,
    claims: Option<Claims>,
    pub(super) app: Py<PyAny>,
    /// `ferricorn._asgi.guarded`: each request's coroutine runs in it.
    pub(super) guarded: Py<PyAny>,
    pub(super) event_loop: Py<PyAny>,
    pub(super) fixed: Fixed,
    pub(super) dev: bool,
    /// The future `serve` runs the loop until; done once `exit` is set.
    done: Py<PyAny>,
    /// What `send()` returns when it need not wait: one shared `Done(None)` (it
    /// holds no state, so every task may await it at once).
    pub(super) done_none: Py<PyAny>,
    st: Mutex<State>,
    cbs: OnceLock<Callbacks>,
}

#[pyclass(frozen, module = "ferricorn")]
pub(crate) struct Readable(Arc<Core>);

#[pymethods]
impl Readable {
    fn __call__(&self, py: Python<'_>) {
        self.0.on_readable(py);
    }
}

#[pyclass(frozen, module = "ferricorn")]
pub(crate) struct Flush(Arc<Core>);

#[pymethods]
impl Flush {
    fn __call__(&self, py: Python<'_>) {
        self.0.flush(py);
    }
}

/// SIGTERM (`true`: drain) or SIGINT/SIGQUIT, posted by the signal thread.
#[pyclass(frozen, module = "ferricorn")]
pub(crate) struct OnSignal(pub(super) Arc<Core>);

#[pymethods]
impl OnSignal {
    fn __call__(&self, py: Python<'_>, term: bool) {
        match term {
            true => self.0.drain(py),
            false => self.0.finish(py, Exit::Quick),
        }
    }
}

impl Core {
    pub(crate) fn new(
        py: Python<'_>,
        sock: UnixStream,
        claims: Option<Claims>,
        app: Py<PyAny>,
        event_loop: Py<PyAny>,
        fixed: Fixed,
        dev: bool,
    ) -> PyResult<Arc<Core>> {
        sock.set_nonblocking(true)?;
        let done = event_loop.call_method0(py, "create_future")?;
        let guarded = py.import("ferricorn._asgi")?.getattr("guarded")?.unbind();
        let core = Arc::new(Core {
            sock,
            claims,
            app,
            guarded,
            event_loop,
            fixed,
            dev,
            done,
            done_none: Py::new(py, Done::none(py))?.into_any(),
            st: Mutex::new(State {
                tmp: vec![0; crate::asgi::READ_BUF],
                ..State::default()
            }),
            cbs: OnceLock::new(),
        });
        let cbs = Callbacks {
            readable: Py::new(py, Readable(core.clone()))?.into_any(),
            flush: Py::new(py, Flush(core.clone()))?.into_any(),
        };
        let _ = core.cbs.set(cbs);
        Ok(core)
    }

    fn cbs(&self) -> &Callbacks {
        self.cbs.get().expect("set in new")
    }

    /// Starts reading the master's frames.
    pub(crate) fn start(&self, py: Python<'_>) -> PyResult<()> {
        let fd = self.sock.as_raw_fd();
        let cb = self.cbs().readable.clone_ref(py);
        self.event_loop.call_method1(py, "add_reader", (fd, cb))?;
        Ok(())
    }

    pub(crate) fn done_future(&self, py: Python<'_>) -> Py<PyAny> {
        self.done.clone_ref(py)
    }

    /// Why the loop stopped (once `done` is).
    pub(crate) fn exit(&self) -> Exit {
        lock(&self.st).exit.clone().unwrap_or(Exit::MasterGone)
    }

    /// Stops the loop for `why` (the first reason wins). A drain's last frames are
    /// written before.
    pub(crate) fn finish(&self, py: Python<'_>, why: Exit) {
        let out = {
            let mut st = lock(&self.st);
            if st.exit.is_some() {
                return;
            }
            st.exit = Some(why.clone());
            std::mem::take(&mut st.out)
        };
        if why == Exit::Drained && !out.is_empty() {
            let _ = self.sock.set_nonblocking(false);
            let _ = (&self.sock).write_all(&out);
        }
        let fd = self.sock.as_raw_fd();
        let _ = self.event_loop.call_method1(py, "remove_reader", (fd,));
        let _ = self.event_loop.call_method1(py, "remove_writer", (fd,));
        let done = self.done.bind(py);
        if !done
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .unwrap_or(true)
        {
            let _ = done.call_method1("set_result", (py.None(),));
        }
    }

    fn on_readable(self: &Arc<Self>, py: Python<'_>) {
        let (frames, ended) = match self.read() {
            Ok(got) => got,
            Err(why) => return self.finish(py, why),
        };
        for (stream, frame) in frames {
            if let Err(e) = self.route(py, stream, frame) {
                return self.finish(py, Exit::Fatal(e));
            }
        }
        if ended {
            self.input_ended(py);
        }
    }

    /// One read and every whole frame in the buffer; `true` at the end of input.
    fn read(&self) -> Result<(Vec<(u32, Frame)>, bool), Exit> {
        let mut st = lock(&self.st);
        let State {
            read_buf,
            tmp,
            passed,
            ..
        } = &mut *st;
        let ended = match crate::fds::recv_nowait(&self.sock, tmp, |fds| passed.extend(fds)) {
            Ok(0) => true,
            Ok(n) => {
                read_buf.extend_from_slice(&tmp[..n]);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Exit::Fatal(Fatal::FdsTruncated))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                false
            }
            Err(e) => {
                wlog!("reading from the master failed: {e}");
                return Err(Exit::MasterGone);
            }
        };
        let mut frames = Vec::new();
        loop {
            match wire::decode(read_buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return Err(Exit::Fatal(e.into())),
            }
        }
        Ok((frames, ended))
    }

    fn route(self: &Arc<Self>, py: Python<'_>, id: u32, frame: Frame) -> Result<(), Fatal> {
        if let Frame::RequestHead(head) = frame {
            return self.start_request(py, id, head);
        }
        let Some(entry) = lock(&self.st).streams.get(&id).cloned() else {
            return Ok(()); // a late frame for a stream that is gone
        };
        let stream = match entry {
            Entry::Http(stream) => stream,
            Entry::WebSocket(ws) => {
                websocket::from_master(py, self, &ws, &frame);
                return Ok(());
            }
        };
        match frame {
            Frame::RequestBody(data) => http::feed(py, self, &stream, |i| i.push(data)),
            Frame::RequestEnd => http::feed(py, self, &stream, |i| i.end()),
            Frame::Abort(_) => http::client_gone(py, &stream),
            Frame::Cancel => http::cancel(py, self, &stream),
            Frame::Pause => http::resume(py, &stream, true),
            Frame::Resume => http::resume(py, &stream, false),
            other => return Err(Fatal::UnexpectedFrame(other.name())),
        }
        Ok(())
    }

    /// A head: claimed (a revoked one is dropped unseen), then its task starts.
    fn start_request(
        self: &Arc<Self>,
        py: Python<'_>,
        id: u32,
        head: Box<RequestHead>,
    ) -> Result<(), Fatal> {
        let socket = match head.upgrade {
            true => Some(
                lock(&self.st)
                    .passed
                    .pop_front()
                    .ok_or(Fatal::NoSocket(id))?,
            ),
            false => None,
        };
        if !self.claims.as_ref().is_none_or(|c| c.claim(id)) {
            return Ok(());
        }
        if let Some(socket) = socket {
            return super::websocket::start(py, self, id, head, socket);
        }
        let stream = Stream::new(id, &head);
        self.register(id, Entry::Http(stream.clone()))?;
        if let Err(e) = http::spawn(py, self, &stream, &head) {
            http::failed_before_task(py, self, &stream, &e);
        }
        Ok(())
    }

    /// Binds `id` to its task's state, so the master's frames for it reach it.
    /// An id still in use by a task whose answer is not complete is the master's
    /// error (it only counts up).
    pub(super) fn register(&self, id: u32, entry: Entry) -> Result<(), Fatal> {
        let mut st = lock(&self.st);
        match st.streams.insert(id, entry) {
            Some(old) if !old.answered() => Err(Fatal::StreamReused(id)),
            _ => Ok(()),
        }
    }

    /// The stream's task ended: forget it; a drain may be over.
    pub(super) fn task_done(&self, py: Python<'_>, stream: &StreamRef, id: u32) {
        {
            let mut st = lock(&self.st);
            if st.streams.get(&id).is_some_and(|s| s.is(stream)) {
                st.streams.remove(&id);
            }
        }
        self.check_drained(py);
    }

    /// A WebSocket's socket is closed and its task done: forget it.
    pub(super) fn forget_websocket(&self, py: Python<'_>, ws: &WsRef, id: u32) {
        {
            let mut st = lock(&self.st);
            if let Some(Entry::WebSocket(w)) = st.streams.get(&id) {
                if Arc::ptr_eq(w, ws) {
                    st.streams.remove(&id);
                }
            }
        }
        self.check_drained(py);
    }

    /// Queues frames of `stream` for the next flush. Returns the bytes now queued.
    pub(super) fn send_frames(&self, py: Python<'_>, stream: u32, frames: Vec<Frame>) -> usize {
        let (schedule, queued) = {
            let mut st = lock(&self.st);
            for f in &frames {
                wire::encode(stream, f, &mut st.out);
            }
            let schedule = !st.flush_scheduled && !st.writer_on && !frames.is_empty();
            st.flush_scheduled |= schedule;
            (schedule, st.out.len())
        };
        if schedule {
            let cb = self.cbs().flush.clone_ref(py);
            if let Err(e) = self.event_loop.call_method1(py, "call_soon", (cb,)) {
                super::super::log_exception(py, "call_soon(flush) failed", &e);
            }
        }
        queued
    }

    /// `app(scope, receive, send)` as a task on the loop, its coroutine run in
    /// `ferricorn._asgi.guarded` (a `SystemExit` fails its request, not the worker).
    pub(super) fn start_task<'py>(
        &self,
        py: Python<'py>,
        scope: Bound<'py, PyAny>,
        receive: Bound<'py, PyAny>,
        send: Bound<'py, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let coro = self.app.call1(py, (scope, receive, send))?;
        let coro = self.guarded.call1(py, (coro,))?;
        self.event_loop
            .call_method1(py, intern!(py, "create_task"), (coro,))
    }

    /// A future on the loop, for a task to wait on.
    pub(super) fn new_future(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.event_loop
            .call_method0(py, intern!(py, "create_future"))
    }

    /// A future the caller awaits until the out buffer drained below `HIGH_WATER`
    /// (`None`: it already has).
    pub(super) fn drain_waiter(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if lock(&self.st).out.len() < HIGH_WATER {
            return Ok(None);
        }
        let fut = self.new_future(py)?;
        lock(&self.st).drain_waiters.push(fut.clone_ref(py));
        Ok(Some(fut))
    }

    /// Writes what the socket takes; waits for room with `add_writer`.
    fn flush(&self, py: Python<'_>) {
        let (register, unregister, waiters, failed) = {
            let mut st = lock(&self.st);
            st.flush_scheduled = false;
            let mut failed = false;
            while !st.out.is_empty() && !st.write_failed {
                match (&self.sock).write(&st.out) {
                    Ok(n) => st.out.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        wlog!("writing to the master failed: {e}");
                        st.write_failed = true;
                        st.out.clear();
                        failed = true;
                    }
                }
            }
            let pending = !st.out.is_empty();
            let register = pending && !st.writer_on;
            let unregister = !pending && st.writer_on;
            st.writer_on = pending;
            let waiters = match st.out.len() < HIGH_WATER {
                true => std::mem::take(&mut st.drain_waiters),
                false => Vec::new(),
            };
            (register, unregister, waiters, failed)
        };
        let fd = self.sock.as_raw_fd();
        if register {
            let cb = self.cbs().flush.clone_ref(py);
            let _ = self.event_loop.call_method1(py, "add_writer", (fd, cb));
        } else if unregister {
            let _ = self.event_loop.call_method1(py, "remove_writer", (fd,));
        }
        for w in waiters {
            http::resolve(py, &w, py.None());
        }
        if failed {
            self.finish(py, Exit::MasterGone);
        }
    }

    /// SIGTERM: take no new work once what is in flight is done; tasks that go on
    /// after their client went are cancelled (`drain`).
    fn drain(self: &Arc<Self>, py: Python<'_>) {
        let (in_flight, again) = {
            let mut st = lock(&self.st);
            let again = std::mem::replace(&mut st.draining, true);
            (st.streams.len(), again)
        };
        wlog!("SIGTERM: draining, {in_flight} request(s) in flight");
        if !again {
            super::drain::schedule(py, self);
        }
        self.check_drained(py);
    }

    /// The streams whose task runs.
    pub(super) fn entries(&self) -> Vec<Entry> {
        lock(&self.st).streams.values().cloned().collect()
    }

    /// Draining: tasks whose response is complete only wait for a disconnect,
    /// which they get now; with no task left, stop reading (frames the master
    /// wrote before are still served), and at the end of input, exit.
    fn check_drained(&self, py: Python<'_>) {
        let (streams, input_done) = {
            let st = lock(&self.st);
            if !st.draining {
                return;
            }
            (
                st.streams.values().cloned().collect::<Vec<_>>(),
                st.input_done,
            )
        };
        for s in &streams {
            if s.answered() {
                s.client_gone(py);
            }
        }
        if !streams.is_empty() {
            return;
        }
        if input_done {
            self.finish(py, Exit::Drained);
        } else {
            let _ = self.sock.shutdown(std::net::Shutdown::Read);
        }
    }

    /// The master closed its side: the end of a drain, or the master is gone.
    /// Every stream's waiters get a disconnect.
    fn input_ended(&self, py: Python<'_>) {
        let (draining, streams) = {
            let mut st = lock(&self.st);
            st.input_done = true;
            (
                st.draining,
                st.streams.values().cloned().collect::<Vec<_>>(),
            )
        };
        let fd = self.sock.as_raw_fd();
        let _ = self.event_loop.call_method1(py, "remove_reader", (fd,));
        for s in &streams {
            s.client_gone(py);
        }
        match draining {
            true => self.check_drained(py),
            false => {
                wdebug!("the master closed the connection");
                self.finish(py, Exit::MasterGone);
            }
        }
    }
}
