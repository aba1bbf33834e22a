//! The HTTP/1.1 response head an app wrote into a WebSocket's socket (it answers the
//! handshake itself, as under gunicorn), parsed strictly and turned into the answer
//! the client gets: a `101` (HTTP/1) or the stream's `200` (HTTP/2, RFC 8441) with
//! the app's fields, or, for another status, an ordinary response. Anything the
//! front would not pass from a worker's wire head is the app's fault (502).

use crate::respond::Failure;
use crate::tunnel::handshake::{accept_for, Handshake};
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

/// The most head bytes read from the app before its head must have ended.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most fields in it.
const MAX_FIELDS: usize = 128;

/// A complete head: its status, its fields, and how many bytes it took.
#[derive(Debug)]
pub(crate) struct AppHead {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub len: usize,
}

/// Parses the head at the start of `buf`: `Ok(None)` while incomplete.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<AppHead>, Failure> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(bad("head too large")),
        Err(e) => {
            tracing::error!(error = %e, "the app wrote a malformed response head on its socket");
            return Err(Failure::WorkerFailed);
        }
    };
    if r.version != Some(1) {
        return Err(bad("not HTTP/1.1"));
    }
    let status = r
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| bad("status"))?;
    let mut headers = http::HeaderMap::with_capacity(r.headers.len());
    for f in r.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| bad("field name"))?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| bad("field value"))?;
        headers.append(name, value);
    }
    Ok(Some(AppHead {
        status,
        headers,
        len,
    }))
}

/// Fields that frame or hold an HTTP/1 connection: never passed to the client from
/// an app's `101` (hyper frames the answer), nor into an HTTP/2 stream's answer at
/// all (RFC 9113 §8.2.2), where the handshake fields have no meaning either.
const FRAMING: &[&str] = &["content-length", "transfer-encoding"];
const NOT_IN_H2: &[&str] = &[
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "sec-websocket-accept",
    "te",
    "trailer",
];

/// The client's answer for an app's head that is a `101`: it must name `websocket`
/// in `Upgrade` and carry the accept value for `hs`'s key. `Err` for any other head.
pub(crate) fn tunnel_answer(head: &AppHead, hs: &Handshake) -> Result<Response<()>, Failure> {
    if head.status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(bad("not 101"));
    }
    let h = &head.headers;
    let names_websocket = h
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| crate::guard::upgrade::lists_token(v.as_bytes(), b"websocket"));
    if !names_websocket {
        return Err(bad("101 without Upgrade: websocket"));
    }
    let accept = h
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(HeaderValue::as_bytes);
    if accept != Some(accept_for(&hs.key).as_bytes())
        || h.get_all(header::SEC_WEBSOCKET_ACCEPT).iter().count() != 1
    {
        return Err(bad("101 with a wrong Sec-WebSocket-Accept"));
    }
    let mut resp = Response::new(());
    *resp.status_mut() = match hs.h2 {
        true => StatusCode::OK,
        false => StatusCode::SWITCHING_PROTOCOLS,
    };
    for (name, value) in h {
        let n = name.as_str();
        if FRAMING.contains(&n) || (hs.h2 && NOT_IN_H2.contains(&n)) {
            continue;
        }
        resp.headers_mut().append(name.clone(), value.clone());
    }
    if !hs.h2 {
        // What made it a 101 for the client, whatever the app's spelling.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    without_orders(resp.headers_mut());
    Ok(resp)
}

/// Takes the app's orders to the front (`accel_fields`) off a head it wrote on its
/// socket: none reaches the client, and none is followed on a handshake's answer.
fn without_orders(headers: &mut http::HeaderMap) {
    let orders = super::accel_fields::take(headers);
    if orders.target.is_some() || orders.limit_rate.is_some() {
        tracing::warn!("X-Accel-* / X-Sendfile on a WebSocket handshake's answer: ignored");
    }
}

/// The body length an app's non-`101` head on its socket gives, judged as strictly
/// as an HTTP/1 client would judge it (RFC 9112 §6.3): one Content-Length of digits
/// only, and no Transfer-Encoding (the body is read as the socket's bytes, never
/// decoded: a coded body would reach the client still coded).
fn body_length(h: &http::HeaderMap) -> Result<Option<u64>, Failure> {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return Err(bad("Transfer-Encoding (with or without Content-Length)"));
    }
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = lengths.next() else {
        return Ok(None);
    };
    if lengths.next().is_some() {
        return Err(bad("Content-Length repeated"));
    }
    let digits = first.as_bytes();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad("Content-Length not a number"));
    }
    Ok(first.to_str().ok().and_then(|v| v.parse().ok()))
}

/// An app's non-`101` head as an ordinary answer (its body: the rest of the socket,
/// up to its Content-Length when it gives one). Not a 1xx: no final answer.
pub(crate) fn plain_answer(head: &AppHead) -> Result<(Response<()>, Option<u64>), Failure> {
    if head.status.is_informational() {
        return Err(bad("1xx"));
    }
    let length = body_length(&head.headers)?;
    let mut resp = Response::new(());
    *resp.status_mut() = head.status;
    for (name, value) in &head.headers {
        if matches!(name.as_str(), "connection" | "keep-alive" | "upgrade") {
            continue;
        }
        resp.headers_mut().append(name.clone(), value.clone());
    }
    without_orders(resp.headers_mut());
    Ok((resp, length))
}

fn bad(what: &str) -> Failure {
    tracing::error!("the app's response head on its socket: {what}");
    Failure::WorkerFailed
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn hs(h2: bool) -> Handshake {
        Handshake {
            key: KEY.into(),
            h2,
        }
    }

    fn head(text: &str) -> AppHead {
        parse(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn a_partial_head_waits_and_a_huge_or_garbled_one_is_refused() {
        assert!(parse(b"HTTP/1.1 101 Switching").unwrap().is_none());
        assert!(parse(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n")
            .unwrap()
            .is_none());
        let mut huge = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&huge).err(), Some(Failure::WorkerFailed));
        assert_eq!(
            parse(b"HTTX/1.1 101\r\n\r\n").err(),
            Some(Failure::WorkerFailed)
        );
        assert_eq!(
            parse(b"HTTP/1.0 101 OK\r\n\r\n").err(),
            Some(Failure::WorkerFailed)
        );
        assert_eq!(
            parse(b"HTTP/1.1 101 OK\r\nA\x01: b\r\n\r\n").err(),
            Some(Failure::WorkerFailed)
        );
        let h = head("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\nframes");
        assert_eq!(h.len, "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n".len());
    }

    #[test]
    fn a_101_must_name_websocket_and_answer_the_key() {
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\nContent-Length: 0\r\n\r\n"
        );
        let h1 = tunnel_answer(&head(&good), &hs(false)).unwrap();
        assert_eq!(h1.status(), 101);
        assert_eq!(h1.headers()["sec-websocket-accept"], ACCEPT);
        assert_eq!(h1.headers()["sec-websocket-protocol"], "chat");
        assert!(!h1.headers().contains_key("content-length"));
        let h2 = tunnel_answer(&head(&good), &hs(true)).unwrap();
        assert_eq!(h2.status(), 200);
        for gone in [
            "connection",
            "upgrade",
            "sec-websocket-accept",
            "content-length",
        ] {
            assert!(!h2.headers().contains_key(gone), "{gone}");
        }
        assert_eq!(h2.headers()["sec-websocket-protocol"], "chat");
        let no_upgrade = format!("HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert!(tunnel_answer(&head(&no_upgrade), &hs(false)).is_err());
        let wrong = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(tunnel_answer(&head(wrong), &hs(false)).is_err());
        let twice = format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert!(tunnel_answer(&head(&twice), &hs(false)).is_err());
    }

    #[test]
    fn another_status_is_an_ordinary_answer() {
        let (resp, len) =
            plain_answer(&head("HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n")).unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(len, Some(5));
        assert!(!resp.headers().contains_key("connection"));
        assert!(plain_answer(&head("HTTP/1.1 100 Continue\r\n\r\n")).is_err());
        assert!(plain_answer(&head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")).is_err());
    }

    #[test]
    fn a_socket_head_frames_its_body_strictly() {
        for bad in [
            "Content-Length: 2\r\nContent-Length: 3",
            "Content-Length: 2\r\nContent-Length: 2",
            "Content-Length: 2, 2",
            "Content-Length: +2",
            "Content-Length: -2",
            "Content-Length: 0x2",
            "Content-Length: 99999999999999999999",
            "Content-Length: 2\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\nhi");
            assert!(plain_answer(&head(&text)).is_err(), "{bad}");
        }
        for bad in [
            "HTTP/1.1 200 OK\r\nA B: c\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: b\x00\r\n\r\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let (_, len) = plain_answer(&head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")).unwrap();
        assert_eq!(len, Some(2));
    }

    #[test]
    fn orders_to_the_front_never_reach_the_client_from_a_socket_head() {
        let orders = "X-Accel-Redirect: /internal/x\r\nX-Sendfile: /etc/passwd\r\nX-Accel-Limit-Rate: 10\r\nX-Accel-Buffering: no\r\n";
        let (plain, _) =
            plain_answer(&head(&format!("HTTP/1.1 200 OK\r\n{orders}X-A: 1\r\n\r\n"))).unwrap();
        let tunnel = format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{orders}X-A: 1\r\n\r\n");
        let h1 = tunnel_answer(&head(&tunnel), &hs(false)).unwrap();
        let h2 = tunnel_answer(&head(&tunnel), &hs(true)).unwrap();
        for resp in [&plain, &h1, &h2] {
            let names: Vec<_> = resp.headers().keys().map(|n| n.as_str()).collect();
            assert!(
                names
                    .iter()
                    .all(|n| !n.starts_with("x-accel") && *n != "x-sendfile"),
                "{names:?}"
            );
            assert_eq!(resp.headers()["x-a"], "1");
        }
    }
}
