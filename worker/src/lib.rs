//! ferricorn's worker, as the CPython extension module `ferricorn._worker`. The master
//! starts the app's own interpreter as `python -m ferricorn.worker ARGS`; that
//! module calls `run` here, which imports the app, connects to the master's Unix
//! socket, says Ready, and serves requests framed by `ferricorn_wire::wire` until the
//! master tells it to stop.
//!
//! `worker` owns the process (signals, the socket, threads); `python` owns every
//! line of pyo3 (the module itself, the app, WSGI).

#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

pub(crate) use ferricorn_wire::{claims, wire};

pub mod python;
pub mod worker;
