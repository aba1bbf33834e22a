//! `wsgi.input`: a read-only binary stream over the request body as the leader
//! thread receives it. Reads take what is buffered without releasing the GIL and
//! wait with it released; they never go past the body and return `b""` at its end.
//! After the front aborts the request, reads raise `OSError`.

use crate::stream::{Aborted, Body, Conn, Want};
use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::sync::Arc;

#[pyclass(frozen, module = "ferricorn", name = "Input")]
pub struct Input {
    body: Arc<Body>,
    conn: Arc<Conn>,
}

impl Input {
    pub fn new(body: Arc<Body>, conn: Arc<Conn>) -> Self {
        Input { body, conn }
    }

    fn take<'py>(&self, py: Python<'py>, want: Want) -> PyResult<Bound<'py, PyBytes>> {
        let chunks = match self.body.try_take(want) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                // This thread may become the socket's reader for a while.
                py.detach(|| self.conn.take_blocking(&self.body, want))
            }
            Err(e) => Err(e),
        }
        .map_err(|e: Aborted| PyOSError::new_err(e.to_string()))?;
        to_bytes(py, &chunks)
    }
}

fn to_bytes<'py>(py: Python<'py>, chunks: &[Bytes]) -> PyResult<Bound<'py, PyBytes>> {
    if let [one] = chunks {
        return Ok(PyBytes::new(py, one));
    }
    let len = chunks.iter().map(Bytes::len).sum();
    PyBytes::new_with(py, len, |buf| {
        let mut at = 0;
        for c in chunks {
            buf[at..at + c.len()].copy_from_slice(c);
            at += c.len();
        }
        Ok(())
    })
}

/// `None` or a negative size means "no limit", as for Python file objects.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match limit(size) {
            Some(n) => self.take(py, Want::Bytes(n)),
            None => self.take(py, Want::All),
        }
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.take(py, Want::Line(limit(size).unwrap_or(usize::MAX)))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0).unwrap_or(usize::MAX);
        let lines = PyList::empty(py);
        let mut total = 0;
        while total < hint {
            let line = self.take(py, Want::Line(usize::MAX))?;
            if line.as_bytes().is_empty() {
                break;
            }
            total += line.as_bytes().len();
            lines.append(line)?;
        }
        Ok(lines)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.take(py, Want::Line(usize::MAX))?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}
