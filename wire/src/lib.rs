//! What the front (the `ferricorn` binary) and its workers (the `ferricorn._worker`
//! extension module, run by the app's own interpreter) must agree on, in one crate
//! both depend on: the frames on the worker socket (`wire`), the claim table that
//! decides who runs a request sent ahead (`claims`), the worker's command line
//! (`worker_args`), built by the one and parsed by the other, the worker's log
//! records on their own pipe (`log_record`), and the WebSocket handshake's accept
//! value (`websocket`).

#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

pub mod claims;
pub mod log_record;
pub mod websocket;
pub mod wire;
pub mod worker_args;

/// Bumped whenever a frame's layout or meaning changes; the worker's Ready frame
/// carries it, and the master refuses a worker that speaks another version.
pub const PROTOCOL: u32 = 6;

/// The ferricorn release this crate belongs to; the front and the worker module
/// must come from the same one.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit status of a worker, and of the master at start-up, when the app does not
/// import.
pub const EXIT_APP_IMPORT: u8 = 3;

/// Exit status of a worker whose app speaks the other interface (an ASGI app on
/// WSGI workers, or the reverse); the master makes it its own usage error (2).
pub const EXIT_APP_INTERFACE: u8 = 4;
