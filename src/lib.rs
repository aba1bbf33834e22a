//! ferricorn: one binary that does the job of nginx + gunicorn in front of a Python
//! WSGI application.
//!
//! ```text
//! client ─TCP─▶ listener ─▶ front (tower stack) ─▶ router ─┬─▶ static_files (ServeDir + our Backend)
//!                                                          └─▶ proxy ─▶ dispatcher ─UDS, wire─▶ worker ─▶ python
//! master: config, supervisor (spawns and watches workers), signals
//! ```
//!
//! Modules are declared in the order a request meets them.

#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod master;
pub mod reload;
pub mod signals;
pub mod supervisor;
// -- data plane, in request order --
pub mod dispatcher;
pub mod front;
pub mod listener;
pub mod proxy;
pub mod respond;
pub mod router;
pub mod static_files;
pub mod wire;
// -- worker process --
pub mod python;
pub mod worker;
