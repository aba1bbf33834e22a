//! The answer to a WebSocket handshake an ASGI app accepts (`websocket.accept`):
//! the `101` head the worker writes on the socket, which the master reads as it
//! reads a WSGI app's (`src/proxy/app_head.rs`: strictly, 502 for anything off) and
//! turns into the client's `101` or, over HTTP/2, the stream's `200`. The app's
//! subprotocol must be one the client offered, and its fields are checked here as
//! the master would check them, so an app's mistake is its exception, not a 502.

use ferricorn_wire::websocket::accept_for;

/// The most bytes of a head the master reads (`app_head::MAX_HEAD`).
const MAX_HEAD: usize = 64 * 1024;
/// The most app fields: the master takes 128 fields in all, and the worker's are 4.
const MAX_APP_FIELDS: usize = 120;

/// Fields the worker writes (or never writes: no extension is negotiated, and a
/// `101` has no body); an app's own would contradict them. The hop-by-hop fields
/// (`crate::asgi::HOP_BY_HOP`: `upgrade`, `connection`, ...) are the worker's too.
const OWNED: &[&str] = &[
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
];

/// A field the app may not set on its `101`.
fn owned(name: &[u8]) -> bool {
    OWNED
        .iter()
        .any(|o| o.as_bytes().eq_ignore_ascii_case(name))
        || crate::asgi::HOP_BY_HOP
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
}

/// Why an app's `websocket.accept` cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AcceptError {
    #[error("subprotocol {0:?} is not one the client offered ({1:?})")]
    Subprotocol(String, Vec<String>),
    #[error("header name {0:?} is not an HTTP token")]
    Name(String),
    #[error("the value of header {0:?} holds a control character (CR, LF, NUL, ...)")]
    Value(String),
    #[error("header {0:?} is the worker's to write (the subprotocol goes in `subprotocol`)")]
    Owned(String),
    #[error("the accept's headers are too many or too long")]
    TooLarge,
}

/// The subprotocols a client offers: every `Sec-WebSocket-Protocol` field's
/// comma-separated tokens, in order (RFC 6455 §4.1; a non-token is dropped).
pub(crate) fn offered<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    fields
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| is_token(t))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

/// The `101` head for the handshake's `key`, the app's `subprotocol` (checked
/// against `offered`) and its `headers` (name, value).
pub(crate) fn accept_head(
    key: &str,
    subprotocol: Option<&str>,
    offered: &[String],
    headers: &[(impl AsRef<[u8]>, impl AsRef<[u8]>)],
) -> Result<Vec<u8>, AcceptError> {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n");
    head.extend_from_slice(b"Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    head.extend_from_slice(accept_for(key).as_bytes());
    head.extend_from_slice(b"\r\n");
    if let Some(p) = subprotocol {
        if !offered.iter().any(|o| o == p) {
            return Err(AcceptError::Subprotocol(p.to_owned(), offered.to_vec()));
        }
        push_field(&mut head, b"Sec-WebSocket-Protocol", p.as_bytes());
    }
    if headers.len() > MAX_APP_FIELDS {
        return Err(AcceptError::TooLarge);
    }
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        let shown = || String::from_utf8_lossy(name).into_owned();
        if !is_token(name) {
            return Err(AcceptError::Name(shown()));
        }
        if owned(name) {
            return Err(AcceptError::Owned(shown()));
        }
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7F))
        {
            return Err(AcceptError::Value(shown()));
        }
        push_field(&mut head, name, value);
    }
    head.extend_from_slice(b"\r\n");
    match head.len() <= MAX_HEAD {
        true => Ok(head),
        false => Err(AcceptError::TooLarge),
    }
}

fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// An RFC 9110 token: one or more of its characters.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const NONE: &[(&[u8], &[u8])] = &[];

    fn offers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_head_carries_the_rfc_accept_value_and_nothing_else_by_default() {
        let head = accept_head(KEY, None, &[], NONE).unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn the_subprotocol_must_be_one_offered() {
        let offered = offered([&b"chat, superchat"[..], b" v2.proto "]);
        assert_eq!(offered, offers(&["chat", "superchat", "v2.proto"]));
        let head = accept_head(KEY, Some("superchat"), &offered, NONE).unwrap();
        assert!(String::from_utf8(head)
            .unwrap()
            .contains("\r\nSec-WebSocket-Protocol: superchat\r\n"));
        for bad in ["chat2", "", "Chat", "chat\r\nX-Evil: 1", "ç"] {
            assert!(
                matches!(
                    accept_head(KEY, Some(bad), &offered, NONE),
                    Err(AcceptError::Subprotocol(..))
                ),
                "{bad:?}"
            );
        }
        assert!(accept_head(KEY, Some("chat"), &[], NONE).is_err());
    }

    #[test]
    fn offered_lists_drop_what_is_not_a_token() {
        let got = offered([&b"a,,b c, \xff, d"[..], b""]);
        assert_eq!(got, offers(&["a", "d"]));
    }

    #[test]
    fn app_headers_are_checked_like_response_headers() {
        let h = |n: &[u8], v: &[u8]| vec![(n.to_vec(), v.to_vec())];
        let ok = accept_head(KEY, None, &[], &h(b"Set-Cookie", b"a=b; Path=/\t\x80")).unwrap();
        assert!(ok.ends_with(b"\r\nSet-Cookie: a=b; Path=/\t\x80\r\n\r\n"));
        for bad_name in [&b"X Y"[..], b"", b"X:Y", b"X\r\nY", b"\xc3\xa7"] {
            assert!(matches!(
                accept_head(KEY, None, &[], &h(bad_name, b"1")),
                Err(AcceptError::Name(_))
            ));
        }
        for bad_value in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\x7f", b"\x1b[0m"] {
            assert!(matches!(
                accept_head(KEY, None, &[], &h(b"X", bad_value)),
                Err(AcceptError::Value(_))
            ));
        }
        for owned in [
            "Upgrade",
            "CONNECTION",
            "sec-websocket-accept",
            "Sec-WebSocket-Extensions",
            "Content-Length",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Proxy-Connection",
            "Transfer-Encoding",
        ] {
            assert!(matches!(
                accept_head(KEY, None, &[], &h(owned.as_bytes(), b"x")),
                Err(AcceptError::Owned(_))
            ));
        }
    }

    #[test]
    fn heads_the_master_would_refuse_as_too_large_are_refused_here() {
        let many: Vec<_> = (0..121)
            .map(|i| (format!("x-{i}").into_bytes(), b"1".to_vec()))
            .collect();
        assert_eq!(
            accept_head(KEY, None, &[], &many),
            Err(AcceptError::TooLarge)
        );
        let long = vec![(b"x".to_vec(), vec![b'a'; 64 * 1024])];
        assert_eq!(
            accept_head(KEY, None, &[], &long),
            Err(AcceptError::TooLarge)
        );
        assert!(accept_head(KEY, None, &[], &many[..120]).is_ok());
    }
}
