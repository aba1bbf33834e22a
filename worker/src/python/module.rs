//! The extension module `ferricorn._worker`: what `ferricorn/worker.py` calls (and
//! `ferricorn/_hooks.py`, to log), and what the master's interpreter probe reads
//! (`__version__`, `PROTOCOL`) to refuse a worker module of another ferricorn
//! before any worker starts.

use crate::wire::Interpreter;
use ferricorn_wire::log_record::{Level, Record};
use pyo3::prelude::*;
use std::ffi::OsString;

#[pymodule]
fn _worker(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", ferricorn_wire::VERSION)?;
    m.add("PROTOCOL", ferricorn_wire::PROTOCOL)?;
    m.add_function(wrap_pyfunction!(use_log_fd, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(log_error, m)?)?;
    Ok(())
}

/// One ERROR record on stderr (`crate::log`), which the master relays as one event:
/// how `ferricorn._hooks` reports a hook's traceback, in a worker and in the
/// master's hooks helper alike.
#[pyfunction]
fn log_error(message: &str) {
    crate::log::emit(&Record::new(Level::Error, message));
}

/// Serves as a worker until the master says stop; returns the exit status, which
/// the caller passes to `os._exit` (finalising the interpreter could wait on the
/// app's threads, or on ours that are still attached).
#[pyfunction]
fn run(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| crate::run_worker(argv))
}

pub(super) fn interpreter(py: Python<'_>) -> PyResult<Interpreter> {
    let sys = py.import("sys")?;
    let v = sys.getattr("version_info")?;
    let part = |name: &str| -> PyResult<u32> { v.getattr(name)?.extract() };
    Ok(Interpreter {
        implementation: sys.getattr("implementation")?.getattr("name")?.extract()?,
        version: format!("{}.{}.{}", part("major")?, part("minor")?, part("micro")?),
        executable: sys.getattr("executable")?.extract()?,
        prefix: sys.getattr("prefix")?.extract()?,
    })
}

/// The master's hooks helper (`ferricorn/hooks.py`): the records of this process
/// (`crate::log`) go to the pipe the master opened at `fd`.
#[pyfunction]
fn use_log_fd(fd: i32) -> PyResult<()> {
    crate::log::use_records_fd(fd).map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
}
