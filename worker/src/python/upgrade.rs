//! The socket an upgrade request carries (a WebSocket handshake), handed to the app
//! the way gunicorn's sync and gthread workers hand theirs: one blocking
//! `socket.socket` under both `gunicorn.socket` and `werkzeug.socket`, on which the
//! app writes its own `101` and its frames. After the response the worker calls the
//! object's `close()` (not `os.close`: the app may still hold the object). A
//! connection's `OSError` on such a request is how a WebSocket ends (Flask-Sock
//! raises `ConnectionError` after the close in some modes; gunicorn ignores EPIPE
//! and ECONNRESET), so it is logged at debug, without a traceback
//! (`is_socket_end` says which).

use super::traceback;
use crate::log::wdebug;
use pyo3::exceptions::{PyConnectionError, PyOSError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};

/// `socket.socket(fileno=fd)`, blocking: the master may have made its pair
/// non-blocking, and the flag is shared with the fd it passed. The object owns the
/// fd from then on; if it cannot be made, the fd is closed here.
pub fn adopt<'py>(py: Python<'py>, fd: OwnedFd) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("fileno", fd.as_raw_fd())?;
    let sock = py
        .import("socket")?
        .getattr("socket")?
        .call((), Some(&kwargs))?;
    // The object closes it now (and a failing `setblocking` below leaves it to the
    // object's finaliser).
    let _ = fd.into_raw_fd();
    sock.call_method1("setblocking", (true,))?;
    Ok(sock)
}

/// The response is over: the socket's `close()`; what it raises is only logged.
/// First the GIL is let go once: a WebSocket library's reader thread may be just
/// about to send (simple-websocket answers a client's close from its own thread
/// after waking the app's, which then returns at once), and closing under it would
/// lose that frame (the client sees 1006 instead of its close code). Any thread
/// waiting for the GIL runs up to its next blocking call before we close; one
/// release per upgraded connection costs nothing that matters.
pub fn close(py: Python<'_>, stream: u32, sock: &Bound<'_, PyAny>) {
    py.detach(std::thread::yield_now);
    if let Err(e) = sock.call_method0("close") {
        quiet(py, stream, "closing the socket", &e);
    }
}

/// Whether `err` is how an upgraded connection ends rather than an app error: a
/// `ConnectionError` (EPIPE, ECONNRESET, ...), a `TimeoutError` (a timeout the app
/// set on the socket), or an `OSError` of a socket closed under its user (EBADF,
/// ENOTCONN, ESHUTDOWN). Not every `OSError`: a `FileNotFoundError` in a WebSocket
/// view is an app bug, and keeps its traceback.
pub fn is_socket_end(py: Python<'_>, err: &PyErr) -> bool {
    use nix::errno::Errno;
    if err.is_instance_of::<PyConnectionError>(py) || err.is_instance_of::<PyTimeoutError>(py) {
        return true;
    }
    if !err.is_instance_of::<PyOSError>(py) {
        return false;
    }
    let errno = err
        .value(py)
        .getattr("errno")
        .and_then(|e| e.extract::<i32>());
    let closed = [Errno::EBADF, Errno::ENOTCONN, Errno::ESHUTDOWN].map(|e| e as i32);
    errno.is_ok_and(|e| closed.contains(&e))
}

/// Logs an error of an upgraded connection at debug, one line.
pub fn quiet(py: Python<'_>, stream: u32, what: &str, err: &PyErr) {
    wdebug!(
        "stream {stream}: upgraded connection, {what}: {}",
        traceback::summary(py, err)
    );
}
