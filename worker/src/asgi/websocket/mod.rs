//! WebSockets for ASGI apps, without I/O and without Python: the frames of RFC 6455
//! (`frame`), one accepted connection's state (`session`), and the `101` that
//! accepts a handshake (`handshake`). The loop (`python::asgi`) reads and writes the
//! socket the master passed, and turns events into the app's messages.

pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod session;

pub(crate) use session::{Event, Session};
