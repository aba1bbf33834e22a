//! Which of the app's responses are compressed, and the compressing itself
//! (tower-http's gzip and br by Accept-Encoding). The setting is config's plain
//! `Compression`; the policy that reads a response is here. A compressed
//! response's strong ETag becomes weak, as nginx's gzip filter makes it: the bytes
//! sent are no longer the ones the app's validator names (RFC 9110 §8.8.1).

use crate::config::Compression;
use crate::respond::Body;
use http::{header, HeaderValue, Request, Response, StatusCode};
use std::convert::Infallible;
use tower::{Layer, ServiceExt};
use tower_http::compression::{predicate::Predicate, CompressionLayer};

/// Which responses the front compresses (gzip or br, by Accept-Encoding): the app's,
/// of a compressible type, with a known length of at least `min_size`. Static files
/// are left alone here (`static_files::compressed` compresses them once, keeping
/// byte ranges on the file), and so are streamed responses (compression would hold
/// chunks back).
#[derive(Debug, Clone, Copy)]
pub struct AppCompression(pub Compression);

impl Predicate for AppCompression {
    fn should_compress<B>(&self, resp: &Response<B>) -> bool
    where
        B: http_body::Body,
    {
        let h = resp.headers();
        self.0.enabled
            && resp.status() != StatusCode::PARTIAL_CONTENT
            && !h.contains_key(header::ACCEPT_RANGES)
            && !h.contains_key(header::CONTENT_ENCODING)
            && content_length_of(h).is_some_and(|n| n >= self.0.min_size)
            && h.get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_compressible)
    }
}

/// Text types (the static layer's one list, which also picks the files it compresses).
fn is_compressible(content_type: &str) -> bool {
    crate::static_files::is_text(content_type)
}

/// Compresses one response by the request's Accept-Encoding (tower-http's
/// compression, which also adds `Vary`). Applied to the responses the predicate
/// picks only: its body type carries every encoder's state inline (about 6 KiB),
/// which as a layer around all responses was copied on every move of every one.
pub async fn compress(
    policy: AppCompression,
    resp: Response<Body>,
    accept: Option<HeaderValue>,
) -> Response<Body> {
    let mut resp = Some(resp);
    let svc = CompressionLayer::new()
        .no_deflate()
        .no_zstd()
        .compress_when(policy)
        .layer(tower::service_fn(move |_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(resp.take().expect("called once")))
        }));
    let mut req = Request::new(());
    if let Some(v) = accept {
        req.headers_mut().insert(header::ACCEPT_ENCODING, v);
    }
    let mut resp = match svc.oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    };
    // The predicate refuses a response that already has a Content-Encoding, so
    // one here is ours.
    if resp.headers().contains_key(header::CONTENT_ENCODING) {
        weaken_etag(resp.headers_mut());
    }
    resp
}

/// `"x"` becomes `W/"x"`; a weak one stays; one that is neither is dropped, as
/// nginx's `ngx_http_weak_etag` does (a malformed validator cannot be made weak).
fn weaken_etag(h: &mut http::HeaderMap) {
    let weakened: Vec<HeaderValue> = h
        .get_all(header::ETAG)
        .iter()
        .filter_map(|v| {
            let b = v.as_bytes();
            if b.starts_with(b"W/") {
                Some(v.clone())
            } else if b.starts_with(b"\"") {
                HeaderValue::from_bytes(&[b"W/", b].concat()).ok()
            } else {
                None
            }
        })
        .collect();
    h.remove(header::ETAG);
    for v in weakened {
        h.append(header::ETAG, v);
    }
}

pub(super) fn content_length_of(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etags(values: &[&'static str]) -> Vec<String> {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(header::ETAG, HeaderValue::from_static(v));
        }
        weaken_etag(&mut h);
        h.get_all(header::ETAG)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_strong_etag_becomes_weak_a_weak_one_stays_a_malformed_one_goes() {
        assert_eq!(etags(&["\"abc\""]), ["W/\"abc\""]);
        assert_eq!(etags(&["W/\"abc\""]), ["W/\"abc\""]);
        assert_eq!(etags(&["abc"]), Vec::<String>::new());
        assert_eq!(etags(&[]), Vec::<String>::new());
        assert_eq!(etags(&["\"a\"", "W/\"b\""]), ["W/\"a\"", "W/\"b\""]);
    }
}
