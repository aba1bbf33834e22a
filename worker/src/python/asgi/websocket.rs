//! WebSocket handshakes on an ASGI worker (contract §4: the `websocket` scope, the
//! RFC 6455 framing in Rust on the passed socket). Not built yet: the handshake
//! is refused on the wire (501) and the socket closed, nothing written on it. The
//! session will be a `conn::Entry` variant, registered with `Core::register`.

use super::conn::Core;
use crate::stream::Fatal;
use crate::wire::{Frame, RequestHead, ResponseHead};
use bytes::Bytes;
use pyo3::prelude::*;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// A WebSocket handshake (`RequestHead::upgrade`) with its socket.
pub fn start(
    py: Python<'_>,
    core: &Arc<Core>,
    id: u32,
    head: Box<RequestHead>,
    socket: OwnedFd,
) -> Result<(), Fatal> {
    drop((head, socket));
    core.send_frames(py, id, refused());
    Ok(())
}

fn refused() -> Vec<Frame> {
    let body = Bytes::from_static(b"WebSockets are not served by this worker yet\n");
    vec![
        Frame::ResponseHead(Box::new(ResponseHead {
            status: 501,
            headers: vec![(
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
        })),
        Frame::ResponseBody(body),
        Frame::ResponseEnd,
    ]
}
