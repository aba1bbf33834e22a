//! The ASGI worker's logic that needs no Python: the WebSocket codec.

pub mod websocket;
