//! The guard's pure grammar: request line, header field, framing field and chunk-size
//! rules (RFC 9110/9112, gunicorn 27's defaults), as functions over bytes, without
//! state or I/O.

use super::{stand_in, HeadFacts, Reject, TransferCodings};
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

/// `host:port` with a non-empty host (a name, or an IPv6 literal in brackets).
pub(super) fn is_authority_form(target: &[u8]) -> bool {
    let Some(colon) = memchr::memrchr(b':', target) else {
        return false;
    };
    let (host, port) = (&target[..colon], &target[colon + 1..]);
    !host.is_empty()
        && !port.is_empty()
        && port.iter().all(u8::is_ascii_digit)
        && !host.iter().any(|b| matches!(b, b'/' | b'?' | b'#' | b'@'))
}

/// `http://authority...` or `https://authority...` with a non-empty authority.
pub(super) fn is_absolute_http_form(target: &[u8]) -> bool {
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"));
    matches!(rest, Some(r) if !r.is_empty() && !matches!(r[0], b'/' | b'?' | b'#'))
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
        if f.hosts > 1 {
            return Err(Reject::BadRequest);
        }
    } else if name.eq_ignore_ascii_case(b"content-type") {
        f.content_types += 1;
        if f.content_types > 1 {
            return Err(Reject::BadRequest);
        }
    } else if name.eq_ignore_ascii_case(stand_in::FIELD.as_bytes()) {
        // Only the guard may add it: from a client it would rewrite the request line.
        return Err(Reject::BadRequest);
    }
    Ok(())
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
pub(super) fn note_transfer_codings(te: &mut TransferCodings, value: &[u8]) -> Result<(), Reject> {
    te.present = true;
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
