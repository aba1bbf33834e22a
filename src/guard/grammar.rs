//! The guard's pure grammar: request line, header field, framing field and chunk-size
//! rules (RFC 9110/9112, gunicorn 27's defaults), as functions over bytes, without
//! state or I/O.

use super::{HeadFacts, Reject, Span, TransferCodings, RESERVED_FIELD};
use memchr::memchr;

/// gunicorn's default method rule: a token of 3 to 20 characters with no lower-case
/// letter and no `#` (so `-BLARGH` passes, `get`, `GET:` and `G` do not).
pub(super) fn check_method(method: &[u8]) -> Result<(), Reject> {
    let ok = (3..=20).contains(&method.len())
        && method
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#');
    if ok {
        Ok(())
    } else {
        Err(Reject::BadRequest)
    }
}

/// RFC 9112 §3.2: origin-form for any method, absolute-form (http/https), asterisk-form
/// only for OPTIONS, authority-form only (and always) for CONNECT. Only visible ASCII:
/// raw non-ASCII is refused as gunicorn 27 does (a proxy may decode it differently).
pub(super) fn check_target(method: &[u8], target: &[u8]) -> Result<(), Reject> {
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(Reject::BadRequest);
    }
    let ok = if method == b"CONNECT" {
        is_authority_form(target)
    } else if target == b"*" {
        method == b"OPTIONS"
    } else {
        target[0] == b'/' || is_absolute_http_form(target)
    };
    if ok {
        Ok(())
    } else {
        Err(Reject::BadRequest)
    }
}

/// CONNECT's authority-form: `uri-host ":" port`, the port given.
pub(super) fn is_authority_form(target: &[u8]) -> bool {
    matches!(split_host_port(target), Some((host, Some(port))) if is_target_host(host) && !port.is_empty())
}

/// The host of a target: not empty, and not percent-encoded. RFC 3986 allows
/// `%41`, but `http::Uri` and nginx refuse it, so no other reader of the target
/// would spell the host as we do (the differential fuzz found it).
fn is_target_host(host: &[u8]) -> bool {
    !host.is_empty() && memchr(b'%', host).is_none()
}

/// `http://authority...` or `https://authority...` whose authority is a non-empty
/// `uri-host [ ":" port ]` (RFC 9110 §4.2.1: an http URI with an empty host is
/// invalid). A `userinfo@` before it is let through: RFC 9110 §4.2.4 only says a
/// recipient SHOULD treat it as an error, and gunicorn serves it (the conformance
/// corpus's valid/rfc9112_target_absolute_userinfo_01); never the app's Host.
pub(super) fn is_absolute_http_form(target: &[u8]) -> bool {
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"));
    let Some(rest) = rest else {
        return false;
    };
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let mut authority = &rest[..end];
    if let Some(at) = memchr::memrchr(b'@', authority) {
        let userinfo = &authority[..at];
        if !userinfo
            .iter()
            .all(|&b| is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'%'))
        {
            return false;
        }
        authority = &authority[at + 1..];
    }
    matches!(split_host_port(authority), Some((host, _)) if is_target_host(host))
}

/// A Host field value (or `:authority`): `uri-host [ ":" port ]`, or empty, which
/// RFC 9112 §3.2 has a client send when the target has no authority. Anything else
/// is the invalid Host RFC 9112 §3.2 makes a 400: it would reach the app as
/// `HTTP_HOST` and `SERVER_NAME`, which apps build URLs (and cache keys) from.
pub(super) fn is_host_field_value(value: &[u8]) -> bool {
    value.is_empty() || matches!(split_host_port(value), Some((host, _)) if !host.is_empty())
}

/// Splits a valid `uri-host [ ":" port ]` (RFC 3986 §3.2.2-3) into the host and the
/// port digits (`Some(b"")` for a bare `:`); `None` when either is invalid. The host
/// is an IP-literal in brackets, or a reg-name (IPv4 is one syntactically) without
/// `..` (nginx refuses it too: a name with it is only ever a path in disguise). A
/// port is at most 65535, so `SERVER_PORT` says what the client wrote.
pub(super) fn split_host_port(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let host_end = if authority.first() == Some(&b'[') {
        let close = memchr(b']', authority)?;
        is_ip_literal(&authority[1..close]).then_some(close + 1)?
    } else {
        let end = memchr(b':', authority).unwrap_or(authority.len());
        is_reg_name(&authority[..end]).then_some(end)?
    };
    let (host, rest) = authority.split_at(host_end);
    let port = match rest {
        [] => None,
        [b':', digits @ ..] => Some(digits),
        _ => return None,
    };
    let port_ok = port.is_none_or(|p| {
        p.iter().all(u8::is_ascii_digit)
            && (p.is_empty() || std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok()))
    });
    port_ok.then_some((host, port))
}

/// `*( unreserved / pct-encoded / sub-delims )`, without `..`.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if is_unreserved(b) || is_sub_delim(b) => {}
            _ => return false,
        }
        i += 1;
    }
    memchr::memmem::find(name, b"..").is_none()
}

/// Inside the brackets: an IPv6 address (no zone), or `IPvFuture`.
fn is_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        return match &rest[digits..] {
            [b'.', tail @ ..] => {
                digits > 0
                    && !tail.is_empty()
                    && tail
                        .iter()
                        .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
            }
            _ => false,
        };
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// RFC 3986 §2.3 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 sub-delims.
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

pub(super) fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Splits `name: value` and validates both; the value comes back without OWS.
pub(super) fn split_field_line(line: &[u8]) -> Result<(&[u8], &[u8]), Reject> {
    // A line starting with whitespace is obs-fold (or whitespace before the first
    // field): RFC 9112 §5.2 lets a server refuse it, and we must (smuggling vector).
    let colon = memchr(b':', line).ok_or(Reject::BadRequest)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Reject::BadRequest);
    }
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return Err(Reject::BadRequest);
    }
    Ok((name, trim_ows(value)))
}

/// Records what a header field says about framing and routing; refuses conflicts, and
/// the guard's own internal field.
pub(super) fn note_framing_field(
    f: &mut HeadFacts,
    name: &[u8],
    value: &[u8],
) -> Result<(), Reject> {
    if name.eq_ignore_ascii_case(b"content-length") {
        // Even an equal duplicate is refused: RFC 9112 allows merging them, but every
        // intermediary that does it differently is a smuggling vector.
        if f.content_length.is_some() {
            return Err(Reject::BadRequest);
        }
        f.content_length = Some(parse_content_length(value)?);
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        note_transfer_codings(&mut f.transfer_encoding, value)?;
    } else if name.eq_ignore_ascii_case(b"host") {
        f.hosts += 1;
        if f.hosts > 1 || !is_host_field_value(value) {
            return Err(Reject::BadRequest);
        }
    } else if name.eq_ignore_ascii_case(b"content-type") {
        f.content_types += 1;
        if f.content_types > 1 {
            return Err(Reject::BadRequest);
        }
    } else if name.eq_ignore_ascii_case(RESERVED_FIELD.as_bytes()) {
        // Only the guard may add it: from a client it would rewrite the request line.
        return Err(Reject::BadRequest);
    }
    Ok(())
}

/// Records what a field (its value `at` these offsets) says about the
/// connection and the interim response: `Connection` tokens (as hyper reads them,
/// every field counted), `Expect` (the last one decides, as in hyper), Host's value.
pub(super) fn note_connection_field(f: &mut HeadFacts, name: &[u8], value: &[u8], at: Span) {
    if name.eq_ignore_ascii_case(b"connection") {
        f.connection_close |= super::upgrade::lists_token(value, b"close");
        f.connection_keep_alive |= super::upgrade::lists_token(value, b"keep-alive");
    } else if name.eq_ignore_ascii_case(b"expect") {
        f.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
    } else if name.eq_ignore_ascii_case(b"host") {
        f.host = Some(at);
    }
}

/// `1*DIGIT` that fits in a u64: no sign, no list, no inner whitespace.
pub(super) fn parse_content_length(value: &[u8]) -> Result<u64, Reject> {
    if value.is_empty() {
        return Err(Reject::BadRequest);
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(Reject::BadRequest);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Reject::BadRequest)
    })
}

/// Adds one Transfer-Encoding field's codings (a comma list, possibly empty elements)
/// to what earlier fields said; `chunked` may appear once, and nothing may follow it.
///
/// Stricter than RFC 9110 §5.6.1 where hyper (the front's reader before issue 28)
/// answered 400, so no reader takes what it refused (the differential fuzz found
/// both): a value that is not ASCII, and an empty last element of the last field
/// (`chunked, `, or an empty field after `chunked`), which hyper reads as "not
/// chunked". nginx takes `chunked` alone.
pub(super) fn note_transfer_codings(te: &mut TransferCodings, value: &[u8]) -> Result<(), Reject> {
    te.present = true;
    if !value.is_ascii() {
        return Err(Reject::BadRequest);
    }
    for element in value.split(|&b| b == b',') {
        let coding = trim_ows(element);
        if coding.is_empty() {
            continue;
        }
        let name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or(coding));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Reject::BadRequest);
        }
        let is_chunked = name.eq_ignore_ascii_case(b"chunked");
        if is_chunked && (te.chunked || name.len() != coding.len()) {
            // twice, or with parameters: chunked has none
            return Err(Reject::BadRequest);
        }
        te.chunked |= is_chunked;
        te.last_is_chunked = is_chunked;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
    if trim_ows(last).is_empty() {
        te.last_is_chunked = false;
    }
    Ok(())
}

/// `1*HEXDIG [ BWS ; chunk-ext ]`: no sign, no whitespace before the size, no
/// whitespace after it unless an extension follows, no control characters.
pub(super) fn parse_chunk_size_line(line: &[u8]) -> Result<u64, Reject> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Reject::BadRequest);
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16).unwrap_or(0);
        n.checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(Reject::BadRequest)
    })?;
    let rest = &line[digits..];
    let ext = trim_start_ows(rest);
    if !rest.is_empty() && ext.first() != Some(&b';') {
        return Err(Reject::BadRequest);
    }
    if !ext.iter().all(|&b| is_field_value_byte(b)) {
        return Err(Reject::BadRequest);
    }
    Ok(size)
}

/// RFC 9110 §5.6.2 tchar.
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// field-vchar / SP / HTAB / obs-text: every byte except CTLs (HTAB aside) and DEL.
pub(super) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// A table, so the check of every header name byte is one load.
pub(super) const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

pub(super) fn trim_start_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[start..]
}

pub(super) fn trim_ows(s: &[u8]) -> &[u8] {
    let s = trim_start_ows(s);
    let end = s.len()
        - s.iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_are_uri_host_and_port() {
        let good: &[&[u8]] = &[
            b"",
            b"a.example",
            b"a.example:8080",
            b"A-b_c~d.example",
            b"127.0.0.1:80",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"[v1.x:y]",
            b"xn--bcher-kva.example",
            b"a%2Db",
            b"a.example:",
            b"a.example:65535",
            b"!$&'()*+,;=",
        ];
        for v in good {
            assert!(is_host_field_value(v), "{:?}", String::from_utf8_lossy(v));
        }
        let bad: &[&[u8]] = &[
            b"a b",
            b"evil/../x",
            b"good@evil",
            b"u:p@good",
            b"good:80x",
            b"good:65536",
            b"good:1:2",
            b":80",
            b"a..b",
            b"a\\b",
            b"a%2",
            b"a%zz",
            b"[::1",
            b"[::1]x",
            b"[fe80::1%25eth0]",
            b"[a.b]",
            b"[v.x]",
            b"::1",
            b"a?b",
            b"a#b",
            b"\"a\"",
            b"a\tb",
            b"\xc3\xa9.example",
        ];
        for v in bad {
            assert!(!is_host_field_value(v), "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn absolute_and_authority_forms_need_a_valid_host() {
        assert!(is_absolute_http_form(b"http://a.example/x"));
        assert!(is_absolute_http_form(b"HTTPS://[::1]:8443?q"));
        assert!(is_absolute_http_form(b"http://a.example"));
        assert!(is_absolute_http_form(b"http://u:p@a.example:8080/x"));
        let bad = [
            &b"http://:80/x"[..],
            b"http:///x",
            b"http://u@/",
            b"http://u@:80/",
        ];
        for t in bad
            .into_iter()
            .chain([&b"http://a b/"[..], b"http://u@a@b/", b"http://a\\b/"])
        {
            assert!(
                !is_absolute_http_form(t),
                "{:?}",
                String::from_utf8_lossy(t)
            );
        }
        assert!(is_authority_form(b"a.example:443"));
        assert!(is_authority_form(b"[::1]:443"));
        for t in [
            &b"a.example"[..],
            b"a.example:",
            b":443",
            b"u@a:443",
            b"a/b:443",
        ] {
            assert!(!is_authority_form(t), "{:?}", String::from_utf8_lossy(t));
        }
    }
}
