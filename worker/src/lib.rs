//! ferricorn's worker, as the CPython extension module `ferricorn._worker`. The master
//! starts the app's own interpreter as `python -m ferricorn.worker ARGS`; that
//! module calls `run` here, which imports the app, connects to the master's Unix
//! socket, says Ready, and serves requests framed by `ferricorn_wire::wire` until the
//! master tells it to stop.
//!
//! Layers, each importing only those below it: `worker` owns the process (start-up,
//! signals, reading the master's frames); `python` owns every line of pyo3 (the
//! module itself, the app, WSGI); below both, `stream` (the connection's requests,
//! their bodies and the threads' scheduling) and `log` (records on stderr). The
//! extension module's entry calls [`run_worker`] here, at the root that composes
//! them, so `python` never imports `worker`.

#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

pub(crate) use ferricorn_wire::{claims, wire};

pub(crate) mod asgi;
pub mod body;
mod fds;
pub mod log;
pub mod python;
pub mod stream;
pub mod worker;

/// Serves as a worker (`ferricorn._worker.run`); returns the process's exit status.
pub fn run_worker(argv: Vec<std::ffi::OsString>) -> u8 {
    worker::main(argv)
}
