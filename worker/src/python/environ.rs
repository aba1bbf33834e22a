//! Building the PEP 3333 environ from a `RequestHead`. Everything constant is made
//! once per process (`Consts`: interned keys, the version tuple, `wsgi.errors`, the
//! file_wrapper type) and per-thread caches keep `HTTP_*` keys and the server
//! name/port strings, so a request costs one dict and its variable values.

use super::file_wrapper::FileWrapper;
use crate::wire::{RequestHead, Scheme};
use bytes::Bytes;
use percent_encoding::percent_decode;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::borrow::Cow;
use std::collections::HashMap;

macro_rules! keys {
    ($($field:ident = $name:literal),* $(,)?) => {
        /// The environ keys, interned once so apps' literal lookups hit by identity.
        struct Keys { $($field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Self {
                Keys { $($field: PyString::intern(py, $name).unbind(),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    server_protocol = "SERVER_PROTOCOL",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    raw_uri = "RAW_URI",
    request_uri = "REQUEST_URI",
    version = "wsgi.version",
    url_scheme = "wsgi.url_scheme",
    input = "wsgi.input",
    errors = "wsgi.errors",
    multithread = "wsgi.multithread",
    multiprocess = "wsgi.multiprocess",
    run_once = "wsgi.run_once",
    input_terminated = "wsgi.input_terminated",
    file_wrapper = "wsgi.file_wrapper",
    request_id = "ferricorn.request_id",
    gunicorn_socket = "gunicorn.socket",
    werkzeug_socket = "werkzeug.socket",
}

const METHODS: [&str; 7] = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Per-process constants of every environ.
pub struct Consts {
    keys: Keys,
    version: Py<PyTuple>,
    http: Py<PyString>,
    https: Py<PyString>,
    empty: Py<PyString>,
    errors: Py<PyAny>,
    file_wrapper: Py<PyAny>,
    protocols: [Py<PyString>; 3],
    methods: Vec<Py<PyString>>,
    multithread: bool,
}

impl Consts {
    pub fn new(py: Python<'_>, threads: usize) -> PyResult<Self> {
        let intern = |s: &str| PyString::intern(py, s).unbind();
        Ok(Consts {
            keys: Keys::new(py),
            version: PyTuple::new(py, [1, 0])?.unbind(),
            http: intern("http"),
            https: intern("https"),
            empty: intern(""),
            // sys.stderr is line-buffered and goes to the worker's stderr: the error log.
            errors: py.import("sys")?.getattr("stderr")?.unbind(),
            file_wrapper: py.get_type::<FileWrapper>().into_any().unbind(),
            protocols: [intern("HTTP/1.0"), intern("HTTP/1.1"), intern("HTTP/2")],
            methods: METHODS.iter().map(|m| intern(m)).collect(),
            multithread: threads > 1,
        })
    }

    fn method<'py>(&self, py: Python<'py>, m: &[u8]) -> Bound<'py, PyString> {
        match METHODS.iter().position(|k| k.as_bytes() == m) {
            Some(i) => self.methods[i].bind(py).clone(),
            None => latin1(py, m),
        }
    }

    fn protocol<'py>(&self, py: Python<'py>, version: u8) -> &Bound<'py, PyString> {
        let i = match version {
            10 => 0,
            20 => 2,
            _ => 1,
        };
        self.protocols[i].bind(py)
    }
}

/// Bounds the per-thread `HTTP_*` key cache: header names are client input.
const MAX_CACHED_KEYS: usize = 256;

/// Per-thread caches for values that rarely change between requests.
#[derive(Default)]
pub struct ThreadCache {
    /// The buffer responses are encoded into, reused across requests.
    pub out: bytes::BytesMut,
    header_keys: HashMap<Bytes, Py<PyString>>,
    server: Option<(Bytes, u16, Py<PyString>, Py<PyString>)>,
}

impl ThreadCache {
    fn header_key<'py>(&mut self, py: Python<'py>, name: &Bytes) -> Bound<'py, PyString> {
        if let Some(k) = self.header_keys.get(name) {
            return k.bind(py).clone();
        }
        let key: String = "HTTP_"
            .chars()
            .chain(name.iter().map(|&b| match b {
                b'-' => '_',
                b => char::from(b.to_ascii_uppercase()),
            }))
            .collect();
        let key = PyString::intern(py, &key);
        if self.header_keys.len() < MAX_CACHED_KEYS {
            self.header_keys.insert(name.clone(), key.clone().unbind());
        }
        key
    }

    fn server<'py>(
        &mut self,
        py: Python<'py>,
        name: &Bytes,
        port: u16,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        match &self.server {
            Some((n, p, ns, ps)) if n == name && *p == port => {
                (ns.bind(py).clone(), ps.bind(py).clone())
            }
            _ => {
                let ns = latin1(py, name);
                let ps = PyString::new(py, &port.to_string());
                self.server = Some((name.clone(), port, ns.clone().unbind(), ps.clone().unbind()));
                (ns, ps)
            }
        }
    }
}

/// CGI values are `str` made from the bytes as latin-1 (PEP 3333 "native strings").
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(b) {
        Ok(s) if b.is_ascii() => PyString::new(py, s),
        _ => PyString::new(py, &b.iter().map(|&c| char::from(c)).collect::<String>()),
    }
}

/// The request's environ; `input` is its `wsgi.input`.
pub fn build<'py>(
    py: Python<'py>,
    c: &Consts,
    cache: &mut ThreadCache,
    head: &RequestHead,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    let k = &c.keys;
    env.set_item(k.request_method.bind(py), c.method(py, &head.method))?;
    env.set_item(k.script_name.bind(py), c.empty.bind(py))?;
    let path: Cow<'_, [u8]> = percent_decode(&head.path).into();
    env.set_item(k.path_info.bind(py), latin1(py, &path))?;
    env.set_item(k.query_string.bind(py), latin1(py, &head.query))?;
    let (server_name, server_port) = cache.server(py, &head.server_name, head.server_port);
    env.set_item(k.server_name.bind(py), server_name)?;
    env.set_item(k.server_port.bind(py), server_port)?;
    env.set_item(k.server_protocol.bind(py), c.protocol(py, head.version))?;
    env.set_item(k.remote_addr.bind(py), latin1(py, &head.remote_addr))?;
    let remote_port = PyString::new(py, &head.remote_port.to_string());
    env.set_item(k.remote_port.bind(py), remote_port)?;
    let uri = raw_uri(py, head);
    env.set_item(k.raw_uri.bind(py), &uri)?;
    env.set_item(k.request_uri.bind(py), &uri)?;
    set_headers(py, c, cache, head, &env)?;
    env.set_item(k.version.bind(py), c.version.bind(py))?;
    let scheme = match head.scheme {
        Scheme::Http => &c.http,
        Scheme::Https => &c.https,
    };
    env.set_item(k.url_scheme.bind(py), scheme.bind(py))?;
    env.set_item(k.input.bind(py), input)?;
    env.set_item(k.errors.bind(py), c.errors.bind(py))?;
    env.set_item(k.multithread.bind(py), c.multithread)?;
    env.set_item(k.multiprocess.bind(py), true)?;
    env.set_item(k.run_once.bind(py), false)?;
    env.set_item(k.input_terminated.bind(py), true)?;
    env.set_item(k.file_wrapper.bind(py), c.file_wrapper.bind(py))?;
    env.set_item(k.request_id.bind(py), latin1(py, &head.request_id))?;
    Ok(env)
}

/// An upgrade request's socket, under gunicorn's key and Werkzeug's: the same object,
/// so an app that takes either gets the one the worker closes.
pub fn set_socket(
    py: Python<'_>,
    c: &Consts,
    env: &Bound<'_, PyDict>,
    sock: &Bound<'_, PyAny>,
) -> PyResult<()> {
    env.set_item(c.keys.gunicorn_socket.bind(py), sock)?;
    env.set_item(c.keys.werkzeug_socket.bind(py), sock)
}

fn raw_uri<'py>(py: Python<'py>, head: &RequestHead) -> Bound<'py, PyString> {
    if head.query.is_empty() {
        return latin1(py, &head.path);
    }
    let mut uri = Vec::with_capacity(head.path.len() + 1 + head.query.len());
    uri.extend_from_slice(&head.path);
    uri.push(b'?');
    uri.extend_from_slice(&head.query);
    latin1(py, &uri)
}

/// `HTTP_*` for every field, repeated fields joined with ","; Content-Type and
/// Content-Length become the CGI keys without the prefix.
fn set_headers(
    py: Python<'_>,
    c: &Consts,
    cache: &mut ThreadCache,
    head: &RequestHead,
    env: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let headers = &head.headers;
    let mut saw_length = false;
    for (i, (name, value)) in headers.iter().enumerate() {
        if headers[..i].iter().any(|(n, _)| n == name) {
            continue; // joined when its first occurrence was seen
        }
        let value = joined(name, value, &headers[i + 1..]);
        let key = match name.as_ref() {
            b"content-type" => c.keys.content_type.bind(py).clone(),
            b"content-length" => {
                saw_length = true;
                c.keys.content_length.bind(py).clone()
            }
            _ => cache.header_key(py, name),
        };
        env.set_item(key, latin1(py, &value))?;
    }
    if let (false, Some(n)) = (saw_length, head.content_length) {
        let n = PyString::new(py, &n.to_string());
        env.set_item(c.keys.content_length.bind(py), n)?;
    }
    Ok(())
}

fn joined<'a>(name: &Bytes, first: &'a Bytes, rest: &[(Bytes, Bytes)]) -> Cow<'a, [u8]> {
    let mut out: Cow<'a, [u8]> = Cow::Borrowed(first);
    for (_, v) in rest.iter().filter(|(n, _)| n == name) {
        let o = out.to_mut();
        o.push(b',');
        o.extend_from_slice(v);
    }
    out
}
