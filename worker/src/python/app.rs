//! Getting the WSGI callable, gunicorn-style: `sys.path` gets the extra directories
//! first, faulthandler is armed, then `MODULE:ATTR` is imported (`MODULE` alone means
//! `MODULE:application`; `ATTR` may be dotted, and `ATTR()` calls a factory). A
//! failure keeps the full traceback and one clear line for the operator.

use super::traceback;
use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;

/// Why the app could not be loaded.
#[derive(Debug)]
pub struct LoadFailure {
    /// The Python traceback, when there is one worth showing.
    pub traceback: Option<String>,
    /// One line for the operator, without the `ferricorn: ` prefix.
    pub message: String,
}

/// Puts `dirs` (in this order) at the front of `sys.path`, like gunicorn's `--chdir`
/// and `--pythonpath`, and arms faulthandler: fatal errors print every thread's
/// stack, and SIGUSR1 does too (the master sends it before killing a stuck worker).
pub fn prepare(py: Python<'_>, dirs: &[PathBuf]) -> PyResult<()> {
    let sys = py.import("sys")?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    for (i, dir) in dirs.iter().enumerate() {
        let dir = dir.to_string_lossy();
        if path.contains(&*dir)? {
            path.call_method1("remove", (&*dir,))?;
        }
        path.insert(i, &*dir)?;
    }
    let faulthandler = py.import("faulthandler")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("all_threads", true)?;
    faulthandler.call_method("enable", (), Some(&kwargs))?;
    kwargs.set_item("chain", false)?;
    let sigusr1 = py.import("signal")?.getattr("SIGUSR1")?;
    faulthandler.call_method("register", (sigusr1,), Some(&kwargs))?;
    Ok(())
}

/// Imports `spec` and returns the callable.
pub fn load(py: Python<'_>, spec: &str) -> Result<Py<PyAny>, LoadFailure> {
    let (module, attr) = spec.split_once(':').unwrap_or((spec, "application"));
    let imported = py.import(module).map_err(|e| LoadFailure {
        traceback: Some(traceback::format(py, &e)),
        message: format!(
            "failed to import app \"{spec}\": {}",
            traceback::summary(py, &e)
        ),
    })?;
    let (path, factory) = match attr.strip_suffix("()") {
        Some(p) => (p, true),
        None => (attr, false),
    };
    let mut obj = imported.into_any();
    for part in path.split('.') {
        obj = obj
            .getattr(part)
            .map_err(|e| attribute_failure(py, &e, attr, module))?;
    }
    if factory {
        obj = obj.call0().map_err(|e| LoadFailure {
            traceback: Some(traceback::format(py, &e)),
            message: format!(
                "app factory \"{spec}\" failed: {}",
                traceback::summary(py, &e)
            ),
        })?;
    }
    if !obj.is_callable() {
        return Err(LoadFailure {
            traceback: None,
            message: format!(
                "application object \"{attr}\" in module \"{module}\" is not callable"
            ),
        });
    }
    Ok(obj.unbind())
}

fn attribute_failure(py: Python<'_>, e: &PyErr, attr: &str, module: &str) -> LoadFailure {
    if e.is_instance_of::<PyAttributeError>(py) {
        LoadFailure {
            traceback: None,
            message: format!("failed to find attribute \"{attr}\" in module \"{module}\""),
        }
    } else {
        LoadFailure {
            traceback: Some(traceback::format(py, e)),
            message: format!(
                "failed to load attribute \"{attr}\" from module \"{module}\": {}",
                traceback::summary(py, e)
            ),
        }
    }
}

/// Runs the app's `atexit` handlers on a clean exit (the worker never finalises
/// the interpreter: other threads may still be inside it).
pub fn run_atexit(py: Python<'_>) {
    if let Err(e) = py
        .import("atexit")
        .and_then(|m| m.call_method0("_run_exitfuncs"))
    {
        super::log_exception(py, "atexit handler failed", &e);
    }
}
