//! ferricorn: one binary that does the job of nginx + gunicorn in front of a Python
//! WSGI application.
//!
//! ```text
//! client ─TCP─▶ listener ─▶ front (tower stack) ─▶ router ─┬─▶ static_files (ServeDir + our Backend)
//!                                                          └─▶ proxy ─▶ dispatcher ─UDS, wire─▶ worker ─▶ python
//! master: config, supervisor (spawns and watches workers), signals
//! ```
//!
//! The workers are not in this crate: they are the app's own interpreter running
//! the `ferricorn._worker` extension module (`worker/`), and this binary links no
//! libpython. What both ends share (frames, claims, the worker's argv) is the
//! `ferricorn-wire` crate (`wire/`).
//!
//! Modules are declared in the order a request meets them.

#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

pub mod cli;
pub mod config;
pub mod master;
pub mod signals;
pub mod systemd;
pub mod supervisor;
pub mod reload;
pub mod observe;
pub mod admin;
// -- data plane, in request order --
pub mod shards;
pub mod listener;
pub mod conn_watch;
pub mod proxy_protocol;
pub mod tls;
pub mod guard;
pub mod http1;
/// The HTTP/1 codec over a byte stream, for the differential fuzz test (not an API).
#[doc(hidden)]
pub use http1::testing;
pub mod front;
pub mod router;
pub mod static_files;
pub mod proxy;
pub mod tunnel;
pub mod dispatcher;
// -- value types at the bottom, which import no stage --
pub use ferricorn_wire::{claims, log_record, wire};
pub mod defaults;
pub mod net;
pub mod normal_path;
pub mod respond;
