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
pub mod signals;
pub mod supervisor;
pub mod reload;
pub mod observe;
pub mod admin;
// -- data plane, in request order --
pub mod shards;
pub mod listener;
pub mod proxy_protocol;
pub mod tls;
pub mod guard;
pub mod front;
pub mod router;
pub mod static_files;
pub mod proxy;
pub mod dispatcher;
pub mod wire;
pub mod claims;
pub mod respond;
// -- worker process --
pub mod worker;
pub mod python;
