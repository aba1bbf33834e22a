//! The one WebSocket computation both ends make (RFC 6455 §4.2.2): the
//! `Sec-WebSocket-Accept` value for a handshake's key. The front checks it on an
//! app's `101` (WSGI apps write their own); an ASGI worker writes it in the `101` it
//! answers for the app's `websocket.accept`.

use base64::Engine as _;

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_sample_key_gives_the_rfc_sample_accept() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
