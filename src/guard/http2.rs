//! The HTTP/1 guard's rules for HTTP/2 requests. hyper's h2 server decodes them
//! (HPACK, pseudo-headers, framing) and refuses what RFC 9113 makes a protocol
//! error: connection-specific fields, `te` other than `trailers`, repeated or late
//! pseudo-headers, upper-case names, control characters, a Content-Length the DATA
//! contradicts, header lists over SETTINGS_MAX_HEADER_LIST_SIZE (431). What it lets
//! through, the front checks here on the decoded request, with the same limits
//! (`GuardLimits`) and the same grammar functions as the HTTP/1 guard, so a request
//! is refused the same way whichever protocol carried it:
//!
//! - the request line HTTP/1 would carry (`method SP :path SP HTTP/1.1`) within
//!   `--limit-request-line` (414); the method and target rules (a `:path` of `*`
//!   only for OPTIONS, visible ASCII only, origin-form); `:scheme` http or https;
//! - the field count and each field line (`name: value\r\n`) within
//!   `--limit-request-fields` and `--limit-request-field_size` (431), cookie
//!   crumbs (RFC 9113 §8.2.3) counted as the one field the app gets, `:authority`
//!   as the Host line it stands for;
//! - field values without leading or trailing whitespace (RFC 9113 §8.2.1) and
//!   without control characters; one Content-Length, Host and Content-Type at most;
//! - a `host` field equal to `:authority` (RFC 9113 §8.3.1); both `uri-host [ ":" port ]`
//!   by HTTP/1's Host grammar (no userinfo, no space, no `/`).
//!
//! Field names with `_` and the joining of cookie crumbs are the proxy's, for both
//! protocols (`proxy::forwardable_headers`). h2's header list limit follows the
//! same limits, up to a bound on what HPACK makes the front decode
//! ([`max_header_list_size`]).

use super::grammar::{
    check_method, check_target, is_field_value_byte, is_tchar, note_framing_field, split_host_port,
};
use super::{GuardLimits, HeadFacts, Reject};
use http::{header, uri::Authority, HeaderMap, Method, Request, Uri};

/// `SP HTTP/1.1` and the space before the target: what an HTTP/1 request line
/// adds to the method and the target.
const REQUEST_LINE_EXTRA: usize = " ".len() + " HTTP/1.1".len();

/// What HPACK counts for each field beyond its name and value (RFC 9113 §6.5.2).
const HPACK_FIELD_OVERHEAD: usize = 32;

/// The SETTINGS_MAX_HEADER_LIST_SIZE: every header list the limits allow (each
/// field's line within `field_size`, name + value + `: ` and CRLF, plus HPACK's 32
/// bytes; the pseudo-headers within the request line, `:authority` within a field
/// line) up to `limits.head`, the same cap as an HTTP/1 head's. A larger list gets
/// h2's own 431. The cap matters more here: HPACK lets a client name a 4 KiB entry of
/// its dynamic table in one byte, so a stream costs the front up to this much for a
/// few hundred bytes on the wire, and a connection `http2_max_streams` times that
/// (measured, 4 connections of 100 such streams: 170 MB for 90 kB sent when the
/// whole 800 KiB the per-line limits allow was let through, 31 MB at 64 KiB).
pub(crate) fn max_header_list_size(limits: &GuardLimits) -> u32 {
    let per_field = limits.field_size + HPACK_FIELD_OVERHEAD;
    let pseudo = limits.request_line + limits.field_size + 4 * HPACK_FIELD_OVERHEAD;
    let total = limits
        .fields
        .saturating_add(1)
        .saturating_mul(per_field)
        .saturating_add(pseudo)
        .min(limits.head);
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Checks an HTTP/2 request hyper decoded against the HTTP/1 guard's rules.
pub(crate) fn check<B>(req: &Request<B>, limits: &GuardLimits) -> Result<(), Reject> {
    // RFC 8441's extended CONNECT (`:protocol`, a WebSocket) has a real `:path`:
    // its target is judged as the GET it stands for (`front::websocket`).
    let extended = req.extensions().get::<hyper::ext::Protocol>().is_some();
    let method = match extended {
        true => &Method::GET,
        false => req.method(),
    };
    check_request_line(method, req.uri(), limits)?;
    check_fields(req.headers(), req.uri().authority(), limits)
}

/// The pseudo-headers, as the request line HTTP/1 would carry them.
fn check_request_line(method: &Method, uri: &Uri, limits: &GuardLimits) -> Result<(), Reject> {
    let is_connect = method == Method::CONNECT;
    // CONNECT has `:authority` and no `:path` (h2 refuses one); its target is the authority.
    let target = if is_connect {
        uri.authority().map_or("", Authority::as_str)
    } else {
        uri.path_and_query().map_or("", |p| p.as_str())
    };
    let method = method.as_str().as_bytes();
    if method.len() + target.len() + REQUEST_LINE_EXTRA > limits.request_line {
        return Err(Reject::UriTooLong);
    }
    check_method(method)?;
    check_target(method, target.as_bytes())?;
    // `:path` is origin-form or `*` (RFC 9113 §8.3.1): the absolute form that
    // `check_target` takes from HTTP/1 has no place in it.
    if !is_connect && !target.starts_with('/') && target != "*" {
        return Err(Reject::BadRequest);
    }
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Reject::BadRequest);
        }
    }
    if let Some(authority) = uri.authority() {
        // RFC 9113 §8.3.1: no userinfo; a host to name, by the Host grammar.
        let host = split_host_port(authority.as_str().as_bytes()).map(|(host, _)| host);
        if host.is_none_or(<[u8]>::is_empty) {
            return Err(Reject::BadRequest);
        }
    }
    Ok(())
}

/// The regular fields, as the field lines HTTP/1 would carry them.
fn check_fields(
    headers: &HeaderMap,
    authority: Option<&Authority>,
    limits: &GuardLimits,
) -> Result<(), Reject> {
    let mut facts = HeadFacts::default();
    let mut fields = 0;
    // The one `cookie: a; b` line the crumbs become (0: none yet).
    let mut cookie_line = 0;
    for (name, value) in headers {
        let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
        check_field(name, value)?;
        let line = if name == header::COOKIE.as_str().as_bytes() && cookie_line > 0 {
            cookie_line += "; ".len() + value.len();
            cookie_line
        } else {
            fields += 1;
            let line = field_line_len(name, value);
            if name == header::COOKIE.as_str().as_bytes() {
                cookie_line = line;
            }
            line
        };
        if fields > limits.fields || line > limits.field_size {
            return Err(Reject::HeaderFieldsTooLarge);
        }
        note_framing_field(&mut facts, name, value)?;
    }
    let host = headers.get(header::HOST).map(|h| h.as_bytes());
    match (authority, host) {
        // `:authority` stands for the Host line.
        (Some(a), None)
            if fields + 1 > limits.fields
                || field_line_len(b"host", a.as_str().as_bytes()) > limits.field_size =>
        {
            return Err(Reject::HeaderFieldsTooLarge);
        }
        (Some(a), Some(h)) if !a.as_str().as_bytes().eq_ignore_ascii_case(h) => {
            return Err(Reject::BadRequest);
        }
        (None, None) if limits.require_host => return Err(Reject::BadRequest),
        _ => {}
    }
    Ok(())
}

/// A field's name and value by the HTTP/1 grammar, and no whitespace around the
/// value (HTTP/1's parser strips it; RFC 9113 §8.2.1 makes it malformed).
fn check_field(name: &[u8], value: &[u8]) -> Result<(), Reject> {
    let edge_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let ok = !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && value.iter().all(|&b| is_field_value_byte(b))
        && !edge_space(value.first())
        && !edge_space(value.last());
    if ok {
        Ok(())
    } else {
        Err(Reject::BadRequest)
    }
}

/// `name: value\r\n`, as `--limit-request-field_size` counts an HTTP/1 line.
fn field_line_len(name: &[u8], value: &[u8]) -> usize {
    name.len() + ": ".len() + value.len() + "\r\n".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GuardLimits {
        GuardLimits {
            request_line: 60,
            fields: 4,
            field_size: 40,
            head: 1024,
            require_host: false,
        }
    }

    fn req(method: &str, uri: &str, fields: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn verdict(method: &str, uri: &str, fields: &[(&str, &str)]) -> Result<(), Reject> {
        check(&req(method, uri, fields), &limits())
    }

    const BAD: Result<(), Reject> = Err(Reject::BadRequest);
    const TOO_LARGE: Result<(), Reject> = Err(Reject::HeaderFieldsTooLarge);

    #[test]
    fn a_plain_request_passes() {
        assert_eq!(
            verdict("GET", "https://a.example/x?y=1", &[("accept", "*/*")]),
            Ok(())
        );
        assert_eq!(verdict("OPTIONS", "*", &[]), Ok(()));
        assert_eq!(verdict("CONNECT", "a.example:443", &[]), Ok(()));
        let inner_space = [("x-a", "one two\tthree")];
        assert_eq!(verdict("GET", "/", &inner_space), Ok(()));
    }

    #[test]
    fn the_request_line_rules_are_http1s() {
        // 60 bytes: `GET ` + path + ` HTTP/1.1`
        let fits = format!("/{}", "a".repeat(60 - 4 - 9 - 1));
        assert_eq!(verdict("GET", &fits, &[]), Ok(()));
        let long = format!("{fits}b");
        assert_eq!(verdict("GET", &long, &[]), Err(Reject::UriTooLong));
        assert_eq!(verdict("get", "/", &[]), BAD, "gunicorn's method rule");
        assert_eq!(verdict("GE", "/", &[]), BAD);
        assert_eq!(verdict("GET", "*", &[]), BAD, "* only for OPTIONS");
        assert_eq!(verdict("GET", "ftp://a.example/", &[]), BAD, "scheme");
        assert_eq!(
            verdict("GET", "http://u:p@a.example/", &[]),
            BAD,
            "userinfo"
        );
        assert_eq!(verdict("CONNECT", "a.example", &[]), BAD, "no port");
    }

    #[test]
    fn whitespace_around_a_value_and_duplicates_are_refused() {
        for v in [" v", "v ", "\tv", "v\t"] {
            assert_eq!(verdict("GET", "/", &[("x-a", v)]), BAD, "{v:?}");
        }
        for name in ["content-length", "host", "content-type"] {
            let twice = [(name, "1"), (name, "1")];
            assert_eq!(verdict("POST", "/", &twice), BAD, "{name} twice");
        }
        assert_eq!(verdict("POST", "/", &[("content-length", "+1")]), BAD);
    }

    #[test]
    fn host_must_name_the_authority() {
        let uri = "https://a.example:8443/";
        assert_eq!(verdict("GET", uri, &[("host", "A.example:8443")]), Ok(()));
        assert_eq!(verdict("GET", uri, &[("host", "b.example:8443")]), BAD);
        assert_eq!(verdict("GET", uri, &[("host", "a.example")]), BAD);
        let strict = GuardLimits {
            require_host: true,
            ..limits()
        };
        assert_eq!(check(&req("GET", "/", &[]), &strict), BAD);
        assert_eq!(check(&req("GET", "/", &[("host", "a")]), &strict), Ok(()));
    }

    #[test]
    fn the_field_limits_count_as_http1_would() {
        let four = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")];
        assert_eq!(verdict("GET", "/", &four), Ok(()));
        // `:authority` is the fifth line (Host).
        assert_eq!(verdict("GET", "http://h/", &four), TOO_LARGE);
        // 40 bytes: `x-a: ` + 33 + CRLF
        let fits = "v".repeat(33);
        assert_eq!(verdict("GET", "/", &[("x-a", &fits)]), Ok(()));
        let long = format!("{fits}v");
        assert_eq!(verdict("GET", "/", &[("x-a", &long)]), TOO_LARGE);
    }

    #[test]
    fn cookie_crumbs_are_one_field_of_their_joined_length() {
        let crumbs = [
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("cookie", "c=3"),
            ("cookie", "d=4"),
            ("cookie", "e=5"),
            ("x", "1"),
        ];
        assert_eq!(verdict("GET", "/", &crumbs), Ok(()));
        // `cookie: ` + 6 crumbs of 3 + 5 `; ` + CRLF = 8 + 18 + 10 + 2 = 38
        let mut more = crumbs.to_vec();
        more.insert(0, ("cookie", "f=6"));
        assert_eq!(verdict("GET", "/", &more), Ok(()));
        more.insert(0, ("cookie", "g"));
        assert_eq!(verdict("GET", "/", &more), TOO_LARGE);
    }

    #[test]
    fn the_header_list_size_admits_what_the_limits_admit_up_to_a_bound() {
        let small = limits();
        let size = max_header_list_size(&small) as usize;
        let fields = small.fields * (small.field_size + HPACK_FIELD_OVERHEAD);
        assert!(size >= fields + small.request_line, "{size}");
        assert!(size < 2 * (fields + small.request_line), "{size}");
        let size = max_header_list_size(&GuardLimits::default());
        assert_eq!(size as usize, crate::defaults::REQUEST_HEAD);
    }
}
