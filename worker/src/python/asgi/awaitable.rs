//! An awaitable that is already done: what `receive()` and `send()` return when
//! they need not wait, so a hello world creates no future at all (Granian's
//! `PyDoneAwaitable`, written anew). `await` calls `__await__`, whose iterator
//! finishes at once with the value: the task never suspends.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

#[pyclass(frozen, module = "ferricorn", name = "Done")]
pub(crate) struct Done {
    value: Py<PyAny>,
}

impl Done {
    pub(crate) fn new(value: Py<PyAny>) -> Self {
        Done { value }
    }

    /// `value`, as an awaitable that is done.
    pub(crate) fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, Done::new(value))?.into_any())
    }

    /// `Done(None)`, for `send()`.
    pub(crate) fn none(py: Python<'_>) -> Self {
        Done { value: py.None() }
    }
}

#[pymethods]
impl Done {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        Err(PyStopIteration::new_err((self.value.clone_ref(py),)))
    }

    /// The generator protocol's `send`, which `await` uses after the first step in
    /// some paths: the same answer.
    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.__next__(py)
    }
}
