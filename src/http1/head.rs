//! A request head as the guard accepted it ([`RequestHead`]): its bytes, split off
//! the guard's buffer, with the offsets of its parts and the facts the guard
//! established (framing, keep-alive, `Expect`, upgrade, Host). Nothing here reads
//! the head again: the `http::Request` the front decides on is built from the
//! offsets (`RequestHead::to_request`).

use crate::guard::{FieldSpan, Framing, HeadSummary, Span, ValidHead};
use crate::net::RawTarget;
use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// A complete request head the guard accepted.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    /// Request line to the empty line ending the head.
    bytes: Bytes,
    summary: HeadSummary,
    fields: Vec<FieldSpan>,
}

/// Why a head the guard accepted cannot become an `http::Request`: only a target the
/// `http` crate cannot hold (none is known; the front answers 400 if one comes).
#[derive(Debug, thiserror::Error)]
#[error("request target not representable: {0}")]
pub(crate) struct Unrepresentable(#[from] http::Error);

impl RequestHead {
    /// Takes the head out of the guard's buffer (its bytes) and field list.
    pub(crate) fn take(head: ValidHead<'_>) -> RequestHead {
        head.buf.advance(head.start);
        RequestHead {
            bytes: head.buf.split().freeze(),
            summary: head.summary,
            fields: std::mem::take(head.fields),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn at(&self, span: Span) -> &[u8] {
        &self.bytes[span.range()]
    }

    pub(crate) fn method(&self) -> &[u8] {
        self.at(self.summary.method)
    }

    pub(crate) fn target(&self) -> &[u8] {
        self.at(self.summary.target)
    }

    pub(crate) fn version(&self) -> Version {
        match self.summary.http10 {
            true => Version::HTTP_10,
            false => Version::HTTP_11,
        }
    }

    /// Every field (name, value without surrounding whitespace), in order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|f| (self.at(f.name), self.at(f.value)))
    }

    pub(crate) fn framing(&self) -> Framing {
        self.summary.framing
    }

    pub(crate) fn keep_alive(&self) -> bool {
        self.summary.keep_alive
    }

    pub(crate) fn expect_continue(&self) -> bool {
        self.summary.expect_continue
    }

    /// A WebSocket candidate: what follows its head is held for a tunnel.
    pub(crate) fn is_upgrade(&self) -> bool {
        self.summary.upgrade
    }

    // Stage 2 of issue 28: the typed request takes it from here.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn host(&self) -> Option<&[u8]> {
        self.summary.host.map(|h| self.at(h))
    }

    /// The field list, for the guard to reuse (`Http1Guard::recycle_fields`).
    pub(crate) fn into_fields(self) -> Vec<FieldSpan> {
        self.fields
    }

    /// The request the front decides on, with `body`. Values share the head's bytes;
    /// names are the `http` crate's (lower case, standard ones interned).
    pub(crate) fn to_request<B>(&self, body: B) -> Result<Request<B>, Unrepresentable> {
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for f in &self.fields {
            let name = HeaderName::from_bytes(self.at(f.name)).map_err(http::Error::from)?;
            let value = HeaderValue::from_maybe_shared(self.bytes.slice(f.value.range()))
                .map_err(http::Error::from)?;
            headers.append(name, value);
        }
        let mut req = Request::new(body);
        *req.method_mut() = Method::from_bytes(self.method()).map_err(http::Error::from)?;
        *req.version_mut() = self.version();
        *req.uri_mut() = self.uri(&mut req)?;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// The target as a `Uri`. One `http` refuses as it is (a `"` in a query, which
    /// gunicorn and nginx take) becomes an escaped copy, and, as for CONNECT's
    /// authority, the app gets the client's bytes ([`RawTarget`]).
    fn uri<B>(&self, req: &mut Request<B>) -> Result<Uri, http::Error> {
        let target = self.bytes.slice(self.summary.target.range());
        let uri = match Uri::from_maybe_shared(target.clone()) {
            Ok(uri) if req.method() != Method::CONNECT => return Ok(uri),
            Ok(uri) => uri,
            Err(_) => Uri::from_maybe_shared(escape_target(&target))?,
        };
        req.extensions_mut().insert(RawTarget(target));
        Ok(uri)
    }
}

/// The target with the bytes `http` refuses in a path or query (`"` `<` `>` and
/// `` ` ``, which gunicorn and nginx take) percent-encoded.
fn escape_target(target: &[u8]) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(target.len() + 16);
    let fragment = memchr::memchr(b'#', target).unwrap_or(target.len());
    for (i, &b) in target.iter().enumerate() {
        if i < fragment && matches!(b, b'"' | b'<' | b'>' | b'`') {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
