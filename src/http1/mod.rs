//! HTTP/1 served by our own codec, on the guard's one parse (issue 28): between the
//! guard, which validates every client byte, and the front, which decides on the
//! request.
//!
//! - `head`: the guard's accepted head as a typed [`head::RequestHead`] (offsets
//!   recorded while it validated, no second parse), and the `http::Request` the
//!   front gets, built from those offsets.
//! - `inbox`: the guard's sink for a connection: heads and decoded body bytes, in
//!   stream order.
//! - [`body`]: the request body, fed by the connection with back-pressure, and
//!   [`body::ClientBody`], the body type of every request the front takes.
//! - `encode`, `date`: the response head, framed as hyper frames it, with a cached
//!   `Date`.
//! - `conn`, `io`: the connection's driver (keep-alive, pipelining, timeouts,
//!   parking, the graceful stop, refusals, the client-close watch, the tunnel's
//!   hand-over) and its client stream.
//! - [`testing`]: the whole codec over a byte stream, for the differential fuzz test.

pub mod body;
pub(crate) mod conn;
pub(crate) mod date;
pub(crate) mod encode;
pub(crate) mod head;
pub(crate) mod inbox;
mod io;
pub mod testing;

pub use conn::parked_connections;
