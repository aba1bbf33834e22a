//! The path and query the app sees (PATH_INFO before decoding, QUERY_STRING, and
//! RAW_URI made of both), taken from the request-target as the client sent it when
//! the URI is not it (see `net::RawTarget`), else from the URI.

use crate::net::RawTarget;
use bytes::Bytes;
use http::{request::Parts, Method};
use memchr::memchr;

/// The raw path (still percent-encoded) and query of a request.
pub fn path_and_query(parts: &Parts) -> (Bytes, Bytes) {
    let Some(RawTarget(raw)) = parts.extensions.get::<RawTarget>() else {
        let uri = &parts.uri;
        return (
            Bytes::copy_from_slice(uri.path().as_bytes()),
            Bytes::copy_from_slice(uri.query().unwrap_or("").as_bytes()),
        );
    };
    if parts.method == Method::CONNECT {
        return (raw.slice_ref(connect_path(raw)), Bytes::new());
    }
    let (path, query) = split_target(raw);
    let path = if path.is_empty() {
        // `http://host?q`: hyper's URI gives "/" as the path; so do we.
        Bytes::from_static(b"/")
    } else {
        raw.slice_ref(path)
    };
    (path, raw.slice_ref(query))
}

/// The path and query of an origin- or absolute-form target; the fragment is dropped,
/// as hyper does.
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let target = &target[..memchr(b'#', target).unwrap_or(target.len())];
    let path_start = match memchr::memmem::find(target, b"://") {
        Some(i) if !target.starts_with(b"/") => {
            let authority = &target[i + 3..];
            i + 3 + memchr::memchr2(b'/', b'?', authority).unwrap_or(authority.len())
        }
        _ => 0,
    };
    let rest = &target[path_start..];
    match memchr(b'?', rest) {
        Some(q) => (&rest[..q], &rest[q + 1..]),
        None => (rest, &rest[rest.len()..]),
    }
}

/// PATH_INFO of an authority-form (CONNECT) target as gunicorn gives it, so apps see
/// what they saw there: Python's `urlsplit` takes a host that looks like a URI scheme
/// (a letter, then letters, digits, `+`, `-`, `.`) for one, leaving the port as the
/// path (`example.com:443` → `443`); anything else (an IP literal, `[::1]:443`) is
/// all path.
fn connect_path(target: &[u8]) -> &[u8] {
    let is_scheme_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    match memchr(b':', target) {
        Some(colon)
            if target[0].is_ascii_alphabetic() && target[..colon].iter().all(is_scheme_char) =>
        {
            &target[colon + 1..]
        }
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, uri: &str, raw: Option<&'static str>) -> Parts {
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap();
        if let Some(raw) = raw {
            req.extensions_mut()
                .insert(RawTarget(Bytes::from_static(raw.as_bytes())));
        }
        req.into_parts().0
    }

    fn pq(p: &Parts) -> (String, String) {
        let (path, query) = path_and_query(p);
        (
            String::from_utf8(path.to_vec()).unwrap(),
            String::from_utf8(query.to_vec()).unwrap(),
        )
    }

    fn pair(path: &str, query: &str) -> (String, String) {
        (path.to_string(), query.to_string())
    }

    #[test]
    fn without_a_raw_target_hyper_uri_is_used() {
        let p = parts(Method::GET, "/a%20b?x=1", None);
        assert_eq!(pq(&p), pair("/a%20b", "x=1"));
        let p = parts(Method::GET, "http://h", None);
        assert_eq!(pq(&p), pair("/", ""));
    }

    #[test]
    fn a_raw_target_gives_the_client_bytes() {
        let quotes = parts(Method::GET, "/", Some("/with_\"quotes\"?foo=\"bar\"#f<"));
        assert_eq!(pq(&quotes), pair("/with_\"quotes\"", "foo=\"bar\""));
        let absolute = parts(Method::GET, "/", Some("http://a:1/p<`>?q=\"#x"));
        assert_eq!(pq(&absolute), pair("/p<`>", "q=\""));
        let no_path = parts(Method::GET, "/", Some("https://a?q=<"));
        assert_eq!(pq(&no_path), pair("/", "q=<"));
        let query_only_slash = parts(Method::GET, "/", Some("/?a=//b://c"));
        assert_eq!(pq(&query_only_slash), pair("/", "a=//b://c"));
    }

    #[test]
    fn connect_paths_are_gunicorns() {
        for (target, path) in [
            ("example.com:443", "443"),
            ("[::1]:443", "[::1]:443"),
            ("10.0.0.1:8080", "10.0.0.1:8080"),
            ("my_host:80", "my_host:80"),
            ("a+b-c.d:1", "1"),
        ] {
            let p = parts(Method::CONNECT, "example.com:443", Some(target));
            assert_eq!(pq(&p), pair(path, ""), "{target}");
        }
    }
}
