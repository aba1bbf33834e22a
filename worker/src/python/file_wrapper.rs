//! `wsgi.file_wrapper`: an iterable over a file-like object. When the app returns one
//! whose file has a real `fileno()` (a regular file), the worker sends the file from
//! Rust with the GIL released — `pread` from the file's current position in
//! `wire::CHUNK` pieces, stopping at the app's Content-Length — instead of a
//! Python-level `read()` loop. Anything else falls back to iterating `read(blksize)`.

use super::response::Response;
use crate::wire::CHUNK;
use pyo3::prelude::*;
use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::FileExt;

#[pyclass(frozen, module = "ferricorn", name = "FileWrapper")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.blksize,))?;
        Ok(data.is_truthy()?.then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr(pyo3::intern!(py, "close"))? {
            f.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// Our own descriptor for the wrapped file and its logical position, when the
    /// fast path applies (a regular file). `tell()`, not the descriptor's offset:
    /// Python's buffered reader may have read ahead of what the app consumed.
    pub fn open_fast(&self, py: Python<'_>) -> Option<(File, u64)> {
        let f = self.filelike.bind(py);
        let fd: RawFd = f.call_method0("fileno").ok()?.extract().ok()?;
        let pos: u64 = f.call_method0("tell").ok()?.extract().ok()?;
        let file = dup(fd)?;
        file.metadata().ok()?.is_file().then_some((file, pos))
    }
}

#[allow(unsafe_code)]
fn dup(fd: RawFd) -> Option<File> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the file object's fileno() while we hold the
    // GIL, so no Python code can close it before the dup below returns; we only use
    // the borrow to make our own descriptor (F_DUPFD_CLOEXEC), which we then own.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok().map(File::from)
}

/// Sends `file` from `pos` to its end (or the app's Content-Length). Runs with the
/// GIL released.
pub fn send_file(resp: &Response, file: &File, mut pos: u64) -> std::io::Result<()> {
    if resp.head_only() {
        return Ok(());
    }
    let mut buf = vec![0u8; CHUNK];
    let mut frames = Vec::new();
    loop {
        if resp.is_stopped() {
            return Ok(());
        }
        let want = resp
            .room()
            .map_or(CHUNK, |r| usize::try_from(r).unwrap_or(CHUNK).min(CHUNK));
        if want == 0 {
            return Ok(());
        }
        let n = match file.read_at(&mut buf[..want], pos) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pos += n as u64;
        // The app called start_response before returning, or the driver fails it.
        if resp.write(&buf[..n], &mut frames).is_err() {
            return Ok(());
        }
        resp.push_detached(&mut frames, true);
    }
}
