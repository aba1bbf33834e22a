//! `http.response.pathsend`: the app names a file and the front sends it (the
//! `ResponseFile` frame). The worker checks it here, in Rust: an absolute path to
//! a regular file, else `OSError` in the app's `send()` (a 500 if the app lets it
//! go). The front opens the path itself and sends nothing of a file that is no
//! longer the one stat'ed here (`dev`, `ino`, `size`).

use super::conn::{lock, Core};
use super::http::{send_error, StreamRef};
use crate::wire::{Frame, ResponseFile};
use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) fn send(
    py: Python<'_>,
    core: &Arc<Core>,
    stream: &StreamRef,
    message: &Bound<'_, PyAny>,
) -> PyResult<Option<Py<PyAny>>> {
    let path: PathBuf = message.get_item(intern!(py, "path"))?.extract()?;
    let file = Frame::ResponseFile(Box::new(check(path)?));
    let mut frames = Vec::new();
    let id = {
        let mut s = lock(stream);
        s.resp.file(file, &mut frames).map_err(send_error)?;
        s.id
    };
    core.send_frames(py, id, frames);
    Ok(None)
}

/// What the front needs to send `path`, if it is an absolute path to a regular
/// file.
fn check(path: PathBuf) -> PyResult<ResponseFile> {
    let shown = path.display().to_string();
    if !path.is_absolute() {
        return Err(PyOSError::new_err(format!(
            "http.response.pathsend: {shown:?} is not an absolute path"
        )));
    }
    let meta = std::fs::metadata(&path)
        .map_err(|e| PyOSError::new_err(format!("http.response.pathsend: {shown:?}: {e}")))?;
    if !meta.is_file() {
        return Err(PyOSError::new_err(format!(
            "http.response.pathsend: {shown:?} is not a regular file"
        )));
    }
    Ok(ResponseFile {
        path: Bytes::copy_from_slice(path.as_os_str().as_bytes()),
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
    })
}
