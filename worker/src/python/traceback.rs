//! Turning a Python exception into text: the full traceback for the error log and
//! the `--dev` HTML page, and the one-line summary (`ModuleNotFoundError: No module
//! named 'x'`) for start-up messages.

use pyo3::prelude::*;
use pyo3::types::PyList;

/// The traceback exactly as Python would print it.
pub fn format(py: Python<'_>, err: &PyErr) -> String {
    let lines = py
        .import("traceback")
        .and_then(|tb| {
            // Type, value and traceback separately: before 3.12 a fetched error's
            // traceback is not necessarily attached to the value yet.
            let value = err.value(py);
            let trace = match err.traceback(py) {
                Some(t) => t.into_any(),
                None => value.getattr("__traceback__")?,
            };
            let args = (err.get_type(py), value, trace);
            tb.call_method1("format_exception", args)
        })
        .and_then(|l| l.cast_into::<PyList>().map_err(PyErr::from));
    match lines {
        Ok(lines) => lines.iter().map(|l| l.to_string()).collect(),
        Err(_) => format!("{err}\n"),
    }
}

/// The last line of `format_exception_only`: the exception type and message.
pub fn summary(py: Python<'_>, err: &PyErr) -> String {
    let text: Option<String> = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception_only", (err.get_type(py), err.value(py))))
        .and_then(|l| l.extract::<Vec<String>>())
        .ok()
        .map(|l| l.concat());
    match text {
        Some(t) => t.trim_end().lines().last().unwrap_or_default().to_string(),
        None => err.to_string(),
    }
}

/// The `--dev` error page: the escaped traceback in a `<pre>`.
pub fn dev_page(title: &str, traceback: &str) -> Vec<u8> {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>500 Internal Server Error</title></head>\n\
         <body><h1>500 Internal Server Error</h1>\n<p>{}</p>\n<pre>{}</pre>\n\
         <p><small>ferricorn --dev: tracebacks are shown because development mode is on.</small></p>\n\
         </body></html>\n",
        escape(title),
        escape(traceback)
    )
    .into_bytes()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_escapes_markup() {
        let page = String::from_utf8(super::dev_page("t", "<script>&'\"")).unwrap();
        assert!(page.contains("&lt;script&gt;&amp;&#x27;&quot;"));
        assert!(!page.contains("<script>"));
    }
}
