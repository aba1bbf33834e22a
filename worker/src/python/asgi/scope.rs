//! The `http` scope of one request, built from the master's head: every fixed key
//! interned once (`intern!`), values as the ASGI spec types them. `path` is the
//! decoded raw path after `root_path` (`crate::asgi::scope_path`), `raw_path` the
//! raw bytes after it; `client` is the address the front resolved after proxy
//! trust (None on a Unix listener), `server` the Host-derived name and port.

use crate::wire::{RequestHead, Scheme};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// What every scope of this worker shares.
pub(crate) struct Fixed {
    pub(crate) root_path: String,
    /// The lifespan's `state`, when lifespan ran; each scope gets a shallow copy.
    pub(crate) state: Option<Py<PyDict>>,
    /// `http.response.pathsend` is offered.
    pub(crate) pathsend: bool,
}

pub(crate) fn http<'py>(
    py: Python<'py>,
    fixed: &Fixed,
    head: &RequestHead,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    scope.set_item(intern!(py, "type"), intern!(py, "http"))?;
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
    scope.set_item(intern!(py, "asgi"), asgi)?;
    let version = match head.version {
        10 => intern!(py, "1.0"),
        20 => intern!(py, "2"),
        _ => intern!(py, "1.1"),
    };
    scope.set_item(intern!(py, "http_version"), version)?;
    let method = String::from_utf8_lossy(&head.method);
    scope.set_item(intern!(py, "method"), PyString::new(py, &method))?;
    let scheme = match head.scheme {
        Scheme::Http => intern!(py, "http"),
        Scheme::Https => intern!(py, "https"),
    };
    scope.set_item(intern!(py, "scheme"), scheme)?;
    common(py, fixed, head, &scope)?;
    if fixed.pathsend {
        let ext = PyDict::new(py);
        ext.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
        scope.set_item(intern!(py, "extensions"), ext)?;
    }
    Ok(scope)
}

/// The keys `http` and `websocket` scopes share.
pub(crate) fn common(
    py: Python<'_>,
    fixed: &Fixed,
    head: &RequestHead,
    scope: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let path = crate::asgi::scope_path(&fixed.root_path, &head.path);
    scope.set_item(intern!(py, "path"), path)?;
    let mut raw = Vec::with_capacity(fixed.root_path.len() + head.path.len());
    raw.extend_from_slice(fixed.root_path.as_bytes());
    raw.extend_from_slice(&head.path);
    scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, &raw))?;
    scope.set_item(intern!(py, "query_string"), PyBytes::new(py, &head.query))?;
    scope.set_item(intern!(py, "root_path"), fixed.root_path.as_str())?;
    let headers = PyList::empty(py);
    for (name, value) in &head.headers {
        let pair = PyTuple::new(py, [PyBytes::new(py, name), PyBytes::new(py, value)])?;
        headers.append(pair)?;
    }
    scope.set_item(intern!(py, "headers"), headers)?;
    if head.remote_addr.is_empty() {
        scope.set_item(intern!(py, "client"), py.None())?;
    } else {
        let addr = String::from_utf8_lossy(&head.remote_addr);
        scope.set_item(intern!(py, "client"), (addr, head.remote_port))?;
    }
    let name = String::from_utf8_lossy(&head.server_name);
    scope.set_item(intern!(py, "server"), (name, head.server_port))?;
    if let Some(state) = &fixed.state {
        scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
    }
    Ok(())
}
