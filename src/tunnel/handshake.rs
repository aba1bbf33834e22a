//! What a WebSocket handshake is once the front accepted it, as the front (which
//! makes it) and the proxy (which checks the app's answer against it) share it: the
//! key the app must answer (RFC 6455 §4.2.2) and whether the client is an HTTP/2 one
//! (RFC 8441).

use base64::Engine as _;

/// A well-formed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handshake {
    /// The key the app sees and must answer: the client's (HTTP/1), or one the front
    /// made (HTTP/2, which has none).
    pub key: String,
    /// RFC 8441: the answer is the stream's `200`, the tunnel its DATA frames.
    pub h2: bool,
}

/// The key the front makes for an HTTP/2 client: 16 random bytes, base64.
pub(crate) fn make_key() -> String {
    use ring::rand::SecureRandom as _;
    let mut k = [0u8; 16];
    // Only uniqueness matters here (the app answers it, the front checks it).
    let _ = ring::rand::SystemRandom::new().fill(&mut k);
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// `Sec-WebSocket-Accept` for a key: computed where the worker computes it too.
pub(crate) use ferricorn_wire::websocket::accept_for;

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

    #[test]
    fn made_keys_are_16_bytes_and_differ() {
        let (a, b) = (make_key(), make_key());
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 16);
    }
}
