//! All pyo3 / CPython code lives here and nowhere else.
