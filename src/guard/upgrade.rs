//! The guard's WebSocket rule: after the head of a request that may become a
//! WebSocket tunnel (a *candidate*: `GET`, HTTP/1.1, an `Upgrade` field naming
//! `websocket`, a `Connection` field naming `upgrade`), no later byte is ever read as
//! HTTP. The guard holds what it already read past that head, and the connection
//! (`http1::conn`) reads no more: it answers that one request and ends. The front
//! then either tunnels (the app took the socket; `Conn::tunnel` gives the held bytes
//! to the relay) or answers with `Connection: close`, and the held bytes are dropped
//! unread.
//!
//! Token lists are matched the way the front matches them on the request's fields
//! ([`lists_token`]), so the two decisions are made by the same rule on the same bytes.

/// What the fields of one request head said about a WebSocket upgrade so far.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct UpgradeFacts {
    upgrade_websocket: bool,
    connection_upgrade: bool,
}

impl UpgradeFacts {
    /// Notes one header field (any `Upgrade` / `Connection` line, repeated or not).
    pub(super) fn note(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_websocket |= lists_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.connection_upgrade |= lists_token(value, b"upgrade");
        }
    }

    /// Whether the request whose head ended is a candidate (see the module doc).
    pub(super) fn is_candidate(&self, get: bool, http10: bool) -> bool {
        get && !http10 && self.upgrade_websocket && self.connection_upgrade
    }
}

/// Whether a comma-separated field value lists `token` (ASCII case-insensitive,
/// whitespace around elements ignored, empty elements skipped: RFC 9110 §5.6.1).
pub(crate) fn lists_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|element| trim(element).eq_ignore_ascii_case(token))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_lists_whatever_their_spelling() {
        assert!(lists_token(b"websocket", b"websocket"));
        assert!(lists_token(b"WebSocket", b"websocket"));
        assert!(lists_token(b"h2c, websocket", b"websocket"));
        assert!(lists_token(b"keep-alive,Upgrade", b"upgrade"));
        assert!(lists_token(b" ,\tupgrade\t, ", b"upgrade"));
        assert!(!lists_token(b"websocket/13", b"websocket"));
        assert!(!lists_token(b"upgrades", b"upgrade"));
        assert!(!lists_token(b"h2c", b"websocket"));
        assert!(!lists_token(b"", b"websocket"));
    }

    /// The guard passes a candidate's head and nothing after it, whatever comes in
    /// the same read (a pipelined request, a body it declared); a non-candidate
    /// upgrade (`h2c`) goes on as HTTP.
    #[test]
    fn nothing_after_a_candidates_head_is_passed() {
        use super::super::{GuardLimits, Http1Guard};
        let head = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\n";
        let after = "helloGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut g = Http1Guard::new(GuardLimits::default());
        let mut out = bytes::BytesMut::new();
        g.feed(format!("{head}{after}").as_bytes(), &mut out)
            .unwrap();
        assert_eq!(&out[..], head.as_bytes());
        assert!(g.is_held() && !g.is_idle());
        g.feed(b"\x81\x85more", &mut out).unwrap();
        assert_eq!(&out[..], head.as_bytes());
        let mut want = after.as_bytes().to_vec();
        want.extend_from_slice(b"\x81\x85more");
        assert_eq!(&g.take_held()[..], &want[..]);
        let h2c = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        let mut g = Http1Guard::new(GuardLimits::default());
        let mut out = bytes::BytesMut::new();
        g.feed(
            format!("{h2c}GET /x HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
            &mut out,
        )
        .unwrap();
        assert!(!g.is_held());
        assert_eq!(g.requests_seen(), 2);
    }

    #[test]
    fn a_candidate_needs_get_http11_and_both_fields() {
        let mut f = UpgradeFacts::default();
        f.note(b"Upgrade", b"websocket");
        assert!(!f.is_candidate(true, false), "no Connection: upgrade");
        f.note(b"connection", b"keep-alive");
        f.note(b"CONNECTION", b"Upgrade");
        assert!(f.is_candidate(true, false));
        assert!(!f.is_candidate(false, false));
        assert!(!f.is_candidate(true, true), "HTTP/1.0");
        let mut h2c = UpgradeFacts::default();
        h2c.note(b"upgrade", b"h2c");
        h2c.note(b"connection", b"upgrade");
        assert!(!h2c.is_candidate(true, false));
    }
}
