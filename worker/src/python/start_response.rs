//! `start_response` and the `write()` callable it returns. The status and headers are
//! checked here, so a bad value raises inside the app (and becomes a 500 if nothing
//! was sent): status `"NNN reason"` with a final status code (200-599), headers a
//! list of `(str, str)` tuples, names HTTP tokens, values latin-1 without CR, LF or
//! NUL, at most `wire::MAX_RESPONSE_HEAD` bytes in all. Hop-by-hop fields are dropped:
//! framing belongs to the front.

use super::response::{Head, NotStarted, Response, StartError};
use bytes::Bytes;
use ferricorn_wire::wire;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use std::sync::Arc;

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
];

#[pyclass(frozen, module = "ferricorn", name = "StartResponse")]
pub struct StartResponse {
    resp: Arc<Response>,
}

impl StartResponse {
    pub fn new(resp: Arc<Response>) -> Self {
        StartResponse { resp }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        &self,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(exc) = exc_info {
            if self.resp.head_sent() {
                return Err(reraise(exc));
            }
        }
        let head = parse_head(status, headers)?;
        match self.resp.start(head, exc_info.is_some()) {
            Ok(()) => Ok(Write {
                resp: self.resp.clone(),
            }),
            Err(StartError::HeadSent) => Err(reraise(exc_info.expect("only with exc_info"))),
            Err(StartError::Twice) => Err(PyRuntimeError::new_err(
                "start_response() called a second time without exc_info",
            )),
        }
    }
}

/// PEP 3333: with the head already sent, start_response re-raises exc_info.
fn reraise(exc_info: &Bound<'_, PyAny>) -> PyErr {
    match exc_info.get_item(1) {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

#[pyclass(frozen, module = "ferricorn", name = "Write")]
pub struct Write {
    resp: Arc<Response>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                type_name(data)
            ))
        })?;
        if self.resp.is_front_aborted() {
            return Err(PyOSError::new_err("the client went away"));
        }
        let mut frames = Vec::new();
        self.resp
            .write(data.as_bytes(), &mut frames)
            .map_err(not_started)?;
        // write() is the streaming interface: the bytes go out now.
        self.resp.push(py, &mut frames, true);
        Ok(())
    }
}

pub fn not_started(_: NotStarted) -> PyErr {
    PyRuntimeError::new_err("the application sent body data before calling start_response()")
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Head> {
    let status = parse_status(status)?;
    let headers = headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response() headers must be a list, not {}",
            type_name(headers)
        ))
    })?;
    let mut out = Vec::with_capacity(headers.len());
    let mut declared = None;
    let mut size = 0;
    for item in headers.iter() {
        let (name, value) = header_pair(&item)?;
        // As encoded on the wire: two length prefixes per field.
        size += name.len() + value.len() + 8;
        if size > wire::MAX_RESPONSE_HEAD {
            return Err(PyValueError::new_err(format!(
                "response headers exceed ferricorn's limit of {} bytes",
                wire::MAX_RESPONSE_HEAD
            )));
        }
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) {
            continue;
        }
        if lower == "content-length" {
            let n = parse_length(&value)?;
            if declared.is_some_and(|d| d != n) {
                return Err(PyValueError::new_err("conflicting Content-Length headers"));
            }
            declared = Some(n);
        }
        out.push((Bytes::from(name.into_bytes()), Bytes::from(value)));
    }
    Ok(Head {
        status,
        headers: out,
        declared,
    })
}

fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<u16> {
    let s = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "status must be a str like '200 OK', not {}",
            type_name(status)
        ))
    })?;
    let s = s.to_cow()?;
    let b = s.as_bytes();
    let code = (b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ')
        .then(|| s[..3].parse::<u16>().expect("three digits"))
        .filter(|c| wire::FINAL_STATUS.contains(c));
    let printable = s
        .chars()
        .all(|c| c == '\t' || (' '..='\u{ff}').contains(&c) && c != '\x7f');
    match code {
        Some(code) if printable => Ok(code),
        _ => Err(PyValueError::new_err(format!(
            "invalid status {s:?}: expected 'NNN Reason' with NNN from {} to {}",
            wire::FINAL_STATUS.start(),
            wire::FINAL_STATUS.end()
        ))),
    }
}

fn header_pair(item: &Bound<'_, PyAny>) -> PyResult<(String, Vec<u8>)> {
    let bad = || {
        PyTypeError::new_err(format!(
            "each header must be a (str, str) tuple, not {}",
            item.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    };
    let pair = item.cast::<PyTuple>().map_err(|_| bad())?;
    if pair.len() != 2 {
        return Err(bad());
    }
    let name = pair.get_item(0)?;
    let value = pair.get_item(1)?;
    let name = name.cast::<PyString>().map_err(|_| bad())?.to_cow()?;
    let value = value.cast::<PyString>().map_err(|_| bad())?.to_cow()?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(PyValueError::new_err(format!(
            "invalid header name {name:?}"
        )));
    }
    let value = latin1_value(&value).ok_or_else(|| {
        PyValueError::new_err(format!("invalid value for header {name:?}: {value:?}"))
    })?;
    Ok((name.into_owned(), value))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The value as latin-1 bytes, or None if it holds a char above U+00FF or CR/LF/NUL.
fn latin1_value(v: &str) -> Option<Vec<u8>> {
    v.chars()
        .map(|c| match c {
            '\r' | '\n' | '\0' => None,
            c => u8::try_from(u32::from(c)).ok(),
        })
        .collect()
}

fn parse_length(v: &[u8]) -> PyResult<u64> {
    std::str::from_utf8(v)
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "invalid Content-Length {:?}",
                String::from_utf8_lossy(v)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_must_be_latin1_without_controls() {
        assert_eq!(latin1_value("caf\u{e9}"), Some(b"caf\xe9".to_vec()));
        assert_eq!(latin1_value("a\r\nb"), None);
        assert_eq!(latin1_value("\u{20ac}"), None);
        assert!(is_tchar(b'-') && !is_tchar(b':') && !is_tchar(b' '));
    }
}
