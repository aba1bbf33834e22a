//! Stand-ins: valid requests that hyper would refuse or mishandle, handed to it as a
//! request line it parses as an ordinary request, with the client's own method and
//! target in an internal field ([`FIELD`]) that [`Restore`], the layer between hyper
//! and the front, turns back into the request the front and the app see ([`take`]).
//! Both sides of that contract live here.
//!
//! Two cases, both requests gunicorn serves (its corpus has them as valid):
//! - a `"`, `<`, `>` or `` ` `` in the target's path or query: the `http` crate's URI
//!   parser refuses them, so hyper would answer 400. The stand-in carries them
//!   percent-encoded; the app still gets the client's bytes (RAW_URI, QUERY_STRING)
//!   and PATH_INFO decoded from them. Control bytes, spaces and non-ASCII never get
//!   here: the guard refuses them before.
//! - CONNECT: hyper makes any 2xx answer to it a tunnel (no body, the connection handed
//!   over to an upgrade nobody takes), so the stand-in has another method. The app sees
//!   CONNECT like any method, as under gunicorn, and no tunnel is ever opened.
//!
//! The field cannot be spoofed: the guard refuses a request that carries it (in its
//! head or its trailers), and [`Restore`] believes it only on HTTP/1 requests, which
//! all went through the guard (HTTP/2 bypasses it), and removes it from every request.

use crate::net::RawTarget;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Version};
use memchr::memchr;
use std::task::{Context, Poll};

/// The internal field: `<method> <target>` as the client sent them.
pub const FIELD: &str = "x-ferricorn-original-request";

/// [`FIELD`] as a name built once: [`take`] runs for every request, and a `&str`
/// name would be parsed each time.
static FIELD_NAME: http::HeaderName = http::HeaderName::from_static(FIELD);

/// How many fields a stand-in adds to the head hyper parses (its field limit must
/// leave room for them).
pub const ADDED_FIELDS: usize = 1;

/// The method hyper sees for CONNECT: any token without special meaning to hyper.
const CONNECT_STAND_IN: &[u8] = b"FERRICORN-CONNECT";

/// The client's request line, as the front restores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// The request-target, byte for byte (visible ASCII).
    pub target: Bytes,
}

/// Bytes that `http` 1.x refuses in a path or query although gunicorn and nginx take
/// them: `"` `<` `>` in a query, `<` `>` `` ` `` in a path. All four are encoded in both
/// (one rule instead of `http`'s two tables). A unit test sends every visible ASCII
/// byte through a stand-in to `http::Uri`, so a change in those tables shows up there.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'`')
}

/// Whether the request line `method target` must reach hyper as a stand-in. Both parts
/// were validated already.
pub(super) fn is_needed(method: &[u8], target: &[u8]) -> bool {
    method == b"CONNECT"
        || target[path_and_query(target)]
            .iter()
            .any(|&b| needs_escape(b))
}

/// Where the path and query of a validated target are: origin-form from its start,
/// absolute-form after its authority, both up to a fragment; empty for the authority
/// and asterisk forms, which have neither.
fn path_and_query(target: &[u8]) -> std::ops::Range<usize> {
    let start = match target.first() {
        Some(b'/') => 0,
        _ => match memchr::memmem::find(target, b"://") {
            // absolute-form (`http://` or `https://`, checked by the guard)
            Some(i) => {
                let authority = i + 3;
                let end = target[authority..]
                    .iter()
                    .position(|b| matches!(b, b'/' | b'?' | b'#'));
                authority + end.unwrap_or(target.len() - authority)
            }
            None => return 0..0,
        },
    };
    let end = memchr(b'#', &target[start..]).map_or(target.len(), |i| start + i);
    start..end
}

/// Writes the stand-in of a validated head to `out`. `head` is the whole head (request
/// line, fields, the empty line); `line_len` is the request line's length with its CRLF.
pub(super) fn write(head: &[u8], line_len: usize, out: &mut BytesMut) {
    let line = &head[..line_len - 2];
    let fields = &head[line_len..head.len() - 2];
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        // The guard validated the line; pass it unchanged rather than panic.
        debug_assert!(false, "stand-in for an invalid request line");
        out.extend_from_slice(head);
        return;
    };
    out.extend_from_slice(if method == b"CONNECT" {
        CONNECT_STAND_IN
    } else {
        method
    });
    out.put_u8(b' ');
    write_escaped(target, out);
    out.put_u8(b' ');
    out.extend_from_slice(version);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(fields);
    out.extend_from_slice(FIELD.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(method);
    out.put_u8(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The target with the bytes of its path and query that `http` refuses percent-encoded.
fn write_escaped(target: &[u8], out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let range = path_and_query(target);
    for (i, &b) in target.iter().enumerate() {
        if range.contains(&i) && needs_escape(b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.put_u8(b);
        }
    }
}

/// Removes the internal field from `headers` and, on an HTTP/1 request (the only kind
/// the guard has seen), returns the client's request line it carries.
pub fn take(headers: &mut HeaderMap, version: Version) -> Option<Original> {
    let value = headers.remove(&FIELD_NAME)?;
    if !matches!(version, Version::HTTP_10 | Version::HTTP_11) {
        return None;
    }
    let value = value.as_bytes();
    let space = memchr(b' ', value)?;
    let target = &value[space + 1..];
    if target.is_empty() {
        return None;
    }
    Some(Original {
        method: Method::from_bytes(&value[..space]).ok()?,
        target: Bytes::copy_from_slice(target),
    })
}

/// The layer between hyper and the front's service: a request hyper parsed as a
/// stand-in gets the client's method back, and its raw target as a [`RawTarget`]
/// extension; the internal field leaves every request here, so nothing after it
/// (nor the app) ever sees it.
#[derive(Debug, Clone)]
pub struct Restore<S>(pub S);

impl<S, B> tower::Service<Request<B>> for Restore<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        let version = req.version();
        if let Some(original) = take(req.headers_mut(), version) {
            *req.method_mut() = original.method;
            req.extensions_mut().insert(RawTarget(original.target));
        }
        self.0.call(req)
    }
}
