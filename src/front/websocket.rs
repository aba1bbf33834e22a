//! The WebSocket handshake as the front judges it, on hyper's parse of the request:
//! whether a request asks for a WebSocket at all, whether its handshake is well
//! formed (else a refusal before Python; the values it makes and checks are
//! `tunnel::handshake`'s).
//!
//! - HTTP/1.1 (RFC 6455 §4.2.1): an `Upgrade` field naming `websocket` makes the
//!   request a WebSocket handshake; it must be `GET`, HTTP/1.1, with `Connection`
//!   naming `upgrade`, no body, one `Sec-WebSocket-Key` of 16 bytes in base64, and
//!   one `Sec-WebSocket-Version`: 13 (426 with `Sec-WebSocket-Version: 13` for
//!   another). The same token rule as the guard's (`guard::upgrade::lists_token`),
//!   so the guard's hold and this decision agree.
//! - HTTP/2 (RFC 8441): a CONNECT with `:protocol = websocket`, version 13, no body
//!   declared. Another `:protocol` is refused (400).
//!
//! Other `Upgrade` tokens (`h2c`, …) make no handshake: the request is served as
//! any other, the field dropped as hop-by-hop.

use crate::guard::upgrade::lists_token;
use crate::tunnel::handshake::make_key;
pub(crate) use crate::tunnel::handshake::Handshake;
use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};

/// Why a handshake is refused before Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("a WebSocket handshake must be GET over HTTP/1.1")]
    Method,
    #[error("Connection does not name upgrade")]
    Connection,
    #[error("a WebSocket handshake has no body")]
    Body,
    #[error("missing, repeated or invalid Sec-WebSocket-Key")]
    Key,
    #[error("missing or repeated Sec-WebSocket-Version")]
    VersionField,
    #[error("Sec-WebSocket-Version is not 13")]
    Version,
    #[error("an extended CONNECT for another protocol than websocket")]
    Protocol,
}

impl Malformed {
    /// 426 with the version we speak for another version, else 400.
    pub(crate) fn response(self) -> Response<crate::respond::Body> {
        if self == Malformed::Version {
            let mut resp = crate::respond::status_page(StatusCode::UPGRADE_REQUIRED);
            resp.headers_mut()
                .insert("sec-websocket-version", HeaderValue::from_static("13"));
            return resp;
        }
        crate::respond::error_response(crate::respond::Failure::BadRequest)
    }
}

/// Whether `req` asks for a WebSocket: `None` when it does not (served as any
/// request), else its handshake or why it is refused.
pub(crate) fn classify<B>(req: &Request<B>) -> Option<Result<Handshake, Malformed>> {
    if req.version() == Version::HTTP_2 {
        let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
        if req.method() != Method::CONNECT {
            // h2 refuses `:protocol` on another method itself; never trust that alone.
            return Some(Err(Malformed::Protocol));
        }
        if !protocol.as_str().eq_ignore_ascii_case("websocket") {
            return Some(Err(Malformed::Protocol));
        }
        return Some(check_h2(req.headers()));
    }
    if !asks_websocket_h1(req) {
        return None;
    }
    Some(check_h1(req))
}

/// An HTTP/1 request with an `Upgrade` field naming `websocket`, well formed or not:
/// its answer ends the connection unless it opens a tunnel, since the bytes after it
/// may be frames, never to be read as HTTP.
fn asks_websocket_h1<B>(req: &Request<B>) -> bool {
    req.version() != Version::HTTP_2 && lists(req.headers(), header::UPGRADE, "websocket")
}

fn check_h1<B>(req: &Request<B>) -> Result<Handshake, Malformed> {
    if req.method() != Method::GET || req.version() != Version::HTTP_11 {
        return Err(Malformed::Method);
    }
    let h = req.headers();
    if !lists(h, header::CONNECTION, "upgrade") {
        return Err(Malformed::Connection);
    }
    check_no_body(h)?;
    let key = one(h, header::SEC_WEBSOCKET_KEY).ok_or(Malformed::Key)?;
    if !is_valid_key(key.as_bytes()) {
        return Err(Malformed::Key);
    }
    check_version(h)?;
    Ok(Handshake {
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        h2: false,
    })
}

fn check_h2(h: &HeaderMap) -> Result<Handshake, Malformed> {
    check_no_body(h)?;
    check_version(h)?;
    Ok(Handshake {
        key: make_key(),
        h2: true,
    })
}

/// A handshake has no body: any Content-Length (even 0: nothing to gain from it) or
/// Transfer-Encoding is refused, so no byte after the head is ever a body.
fn check_no_body(h: &HeaderMap) -> Result<(), Malformed> {
    if h.contains_key(header::CONTENT_LENGTH) || h.contains_key(header::TRANSFER_ENCODING) {
        return Err(Malformed::Body);
    }
    Ok(())
}

fn check_version(h: &HeaderMap) -> Result<(), Malformed> {
    let v = one(h, header::SEC_WEBSOCKET_VERSION).ok_or(Malformed::VersionField)?;
    match v.as_bytes() {
        b"13" => Ok(()),
        _ => Err(Malformed::Version),
    }
}

/// The one field named `name`; `None` when absent or repeated.
fn one(h: &HeaderMap, name: header::HeaderName) -> Option<&HeaderValue> {
    let mut all = h.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// Whether any `name` field lists `token` (a repeated field is one list).
fn lists(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .any(|v| lists_token(v.as_bytes(), token.as_bytes()))
}

/// RFC 6455 §4.2.1: base64 of 16 bytes (24 characters, padded).
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn h1(method: &str, fields: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method(method)
            .uri("/ws")
            .version(Version::HTTP_11);
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
    }

    #[test]
    fn a_well_formed_handshake_in_any_spelling_passes() {
        let hs = classify(&h1("GET", &good())).unwrap().unwrap();
        assert_eq!(hs.key, KEY);
        let mut f = good();
        f[0] = ("upgrade", "WebSocket, h2c");
        f[1] = ("connection", "keep-alive, Upgrade");
        assert!(classify(&h1("GET", &f)).unwrap().is_ok());
        // Repeated fields make one list.
        let mut f = good();
        f[1] = ("connection", "keep-alive");
        f.push(("connection", "upgrade"));
        f.push(("upgrade", "h2c"));
        assert!(classify(&h1("GET", &f)).unwrap().is_ok());
    }

    #[test]
    fn other_upgrades_are_no_handshake() {
        let f = [("upgrade", "h2c"), ("connection", "upgrade")];
        assert_eq!(classify(&h1("GET", &f)), None);
        assert_eq!(classify(&h1("GET", &[])), None);
        assert_eq!(classify(&h1("GET", &[("upgrade", "websocket/13")])), None);
    }

    #[test]
    fn malformed_handshakes_are_refused_with_their_reason() {
        let refused = |method: &str, f: &[(&str, &str)]| classify(&h1(method, f)).unwrap().err();
        assert_eq!(refused("POST", &good()), Some(Malformed::Method));
        let mut f = good();
        f[1] = ("connection", "keep-alive");
        assert_eq!(refused("GET", &f), Some(Malformed::Connection));
        for body in [("content-length", "0"), ("transfer-encoding", "chunked")] {
            let mut f = good();
            f.push(body);
            assert_eq!(refused("GET", &f), Some(Malformed::Body));
        }
        for key in [
            "",
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZSE=",
            " dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            let mut f = good();
            f[2] = ("sec-websocket-key", key);
            assert_eq!(refused("GET", &f), Some(Malformed::Key), "{key:?}");
        }
        let mut f = good();
        f.push(("sec-websocket-key", KEY));
        assert_eq!(refused("GET", &f), Some(Malformed::Key), "repeated");
        let mut f = good();
        f[3] = ("sec-websocket-version", "8");
        assert_eq!(refused("GET", &f), Some(Malformed::Version));
        f.push(("sec-websocket-version", "13"));
        assert_eq!(refused("GET", &f), Some(Malformed::VersionField));
        let mut http10 = h1("GET", &good());
        *http10.version_mut() = Version::HTTP_10;
        assert_eq!(classify(&http10).unwrap().err(), Some(Malformed::Method));
        assert_eq!(
            Malformed::Version.response().headers()["sec-websocket-version"],
            "13"
        );
        assert_eq!(Malformed::Key.response().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn an_h2_extended_connect_gets_a_fresh_key() {
        let req = |protocol: &str, method: Method| {
            let mut r = Request::builder()
                .method(method)
                .uri("https://a.example/ws")
                .version(Version::HTTP_2)
                .header("sec-websocket-version", "13")
                .body(())
                .unwrap();
            r.extensions_mut()
                .insert(hyper::ext::Protocol::from_static(Box::leak(
                    protocol.to_string().into_boxed_str(),
                )));
            r
        };
        let a = classify(&req("websocket", Method::CONNECT))
            .unwrap()
            .unwrap();
        let b = classify(&req("websocket", Method::CONNECT))
            .unwrap()
            .unwrap();
        assert!(a.h2 && is_valid_key(a.key.as_bytes()));
        assert_ne!(a.key, b.key);
        assert_eq!(
            classify(&req("connect-udp", Method::CONNECT)).unwrap(),
            Err(Malformed::Protocol)
        );
        assert_eq!(
            classify(&req("websocket", Method::GET)).unwrap(),
            Err(Malformed::Protocol)
        );
        let plain = Request::builder()
            .method(Method::CONNECT)
            .uri("a.example:443")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(classify(&plain), None, "a CONNECT without :protocol");
    }
}
