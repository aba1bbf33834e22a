//! WebSockets for ASGI apps, without I/O and without Python: the frames of RFC 6455
//! (`frame`), one accepted connection's state (`session`), and the `101` that
//! accepts a handshake (`handshake`). The loop (`python::asgi`) reads and writes the
//! socket the master passed, and turns events into the app's messages.

pub mod frame;
pub mod handshake;
pub mod session;

pub use session::{Event, SendError, Session};
