//! The response head on the wire, framed by hyper's rules (so clients see what they
//! saw when hyper wrote it; unit tests compare both byte for byte):
//!
//! - the status line in the request's version (`HTTP/1.0` to an HTTP/1.0 client), a
//!   reason phrase always;
//! - the fields in the `HeaderMap`'s order, names lower case, repeated `Connection`,
//!   `Transfer-Encoding` and `Trailer` values joined on one line;
//! - the framing: the body's known length as `content-length`, else chunked for
//!   HTTP/1.1, else close-delimited; none at all for HEAD, 1xx, 204 and 304 (whose
//!   `content-length` the app gave is kept as it gave it);
//! - keep-alive: `connection: close` added when the connection ends after this
//!   answer, `connection: keep-alive` to an HTTP/1.0 client that keeps it;
//! - a cached `date` last, unless the response has one.
//!
//! One exception, hyper's own: a 1xx other than 101 is not a response we can send
//! (hyper answers 500 and closes; so do we).

use super::date;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};

/// What the response body says of its length (hyper's reading of `http_body::Body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// The body has ended already (`is_end_stream`).
    Empty,
    Known(u64),
    Unknown,
}

impl BodyLength {
    pub(crate) fn of<B: http_body::Body>(body: &B) -> BodyLength {
        if body.is_end_stream() {
            return BodyLength::Empty;
        }
        match body.size_hint().exact() {
            Some(n) => BodyLength::Known(n),
            None => BodyLength::Unknown,
        }
    }
}

/// How the body that follows the head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0: no body is written, whatever the body has).
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, length unknown).
    CloseDelimited,
}

/// The head written, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub(crate) framing: Framing,
    /// The connection ends after this response (`Connection: close` said or added,
    /// close-delimited body, a 101's hand-over).
    pub(crate) last: bool,
}

/// What the response answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering<'a> {
    pub(crate) method: &'a Method,
    pub(crate) version: Version,
    /// The connection may carry another request after this one (the request's
    /// keep-alive, and we are not stopping).
    pub(crate) keep_alive: bool,
}

/// The app's framing fields are checked against the body (a mismatch would let the
/// body say where the next response starts): hyper refuses the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("response framing fields conflict with each other or the body")]
    Framing,
}

/// Writes the head of `status`/`headers` (a body of `body` length) to `dst`. The
/// `Connection` fields are adjusted first as hyper adjusts them.
pub(crate) fn encode_head(
    dst: &mut Vec<u8>,
    req: Answering<'_>,
    mut status: StatusCode,
    headers: &mut HeaderMap,
    mut body: BodyLength,
) -> Result<Encoded, EncodeError> {
    let mut last = !req.keep_alive;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        tracing::warn!(status = status.as_u16(), "a 1xx response cannot be sent");
        (status, body, last) = (StatusCode::INTERNAL_SERVER_ERROR, BodyLength::Empty, true);
        headers.clear();
    }
    let http10 = req.version == Version::HTTP_10;
    fix_connection(headers, http10, &mut last);
    // The connection is the tunnel's after a 101 (told nothing, as by hyper).
    last |= status == StatusCode::SWITCHING_PROTOCOLS;
    let start = dst.len();
    status_line(dst, http10, status);
    let rules = Rules::new(req.method, status, http10);
    let mut fields = Fields::default();
    let written = write_fields(dst, headers, &rules, body, &mut fields);
    let Ok(mut framing) = written else {
        dst.truncate(start);
        return Err(EncodeError::Framing);
    };
    last |= fields.close;
    if !fields.wrote_len {
        framing = implicit_framing(dst, &rules, body);
    }
    if !rules.can_have_body {
        framing = Framing::Length(0);
    }
    if !fields.wrote_date {
        dst.extend_from_slice(b"date: ");
        date::extend(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    last |= framing == Framing::CloseDelimited;
    Ok(Encoded { framing, last })
}

/// hyper's `enforce_version`: an HTTP/1.0 client that keeps the connection is told
/// so (and one the response does not tell is closed); an HTTP/1.1 one whose
/// connection ends is told `close`.
fn fix_connection(headers: &mut HeaderMap, http10: bool, last: &mut bool) {
    let lists = |headers: &HeaderMap, token: &[u8]| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| crate::guard::upgrade::lists_token(v.as_bytes(), token))
    };
    if !http10 && !*last {
        return;
    }
    if http10 {
        if lists(headers, b"keep-alive") {
            return;
        }
        match *last {
            true => {}
            false => {
                headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            }
        }
    } else if *last && !lists(headers, b"close") {
        headers.append(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn status_line(dst: &mut Vec<u8>, http10: bool, status: StatusCode) {
    if !http10 && status == StatusCode::OK {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    let reason = status.canonical_reason().unwrap_or("<none>");
    dst.extend_from_slice(reason.as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// hyper's `can_chunked`, `can_have_content_length` and `can_have_body`, for one
/// request method and status.
struct Rules {
    head: bool,
    http10: bool,
    can_chunked: bool,
    can_have_content_length: bool,
    can_have_body: bool,
}

impl Rules {
    fn new(method: &Method, status: StatusCode, http10: bool) -> Rules {
        let no_content = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
        let head = method == Method::HEAD;
        // CONNECT is an ordinary method here: no tunnel is ever opened for it, and
        // the front closes the connection after its answer.
        let can_chunked = !head && !status.is_informational() && !no_content;
        Rules {
            head,
            http10,
            can_chunked,
            can_have_content_length: !status.is_informational() && !no_content,
            can_have_body: can_chunked,
        }
    }
}

/// What the fields written said.
#[derive(Default)]
struct Fields {
    wrote_len: bool,
    wrote_date: bool,
    /// A `Connection` value lists `close`.
    close: bool,
}

/// The fields, with the framing ones checked (hyper's `encode_headers`); returns the
/// framing they set, if any (`fields.wrote_len`). One pass over the map, in its
/// order: the values of a name come together (no lookup per name).
fn write_fields(
    dst: &mut Vec<u8>,
    headers: &HeaderMap,
    rules: &Rules,
    body: BodyLength,
    f: &mut Fields,
) -> Result<Framing, ()> {
    let mut framing = Framing::Length(0);
    let mut it = headers.iter().peekable();
    while let Some((name, first)) = it.next() {
        let rest = std::iter::from_fn(|| it.next_if(|(n, _)| *n == name).map(|(_, v)| v));
        let mut values = std::iter::once(first).chain(rest);
        if let Some(set) = write_name(dst, name, &mut values, rules, body, f)? {
            framing = set;
        }
        values.for_each(drop);
    }
    Ok(framing)
}

/// The fields of one name; the framing they set, if any.
fn write_name<'a>(
    dst: &mut Vec<u8>,
    name: &HeaderName,
    values: &mut impl Iterator<Item = &'a HeaderValue>,
    rules: &Rules,
    body: BodyLength,
    f: &mut Fields,
) -> Result<Option<Framing>, ()> {
    match *name {
        header::CONTENT_LENGTH => {
            if f.wrote_len {
                return Err(());
            }
            let Some(n) = content_length(dst, values, rules, body)? else {
                return Ok(None);
            };
            f.wrote_len = true;
            Ok(Some(Framing::Length(n)))
        }
        header::TRANSFER_ENCODING => {
            if f.wrote_len {
                return Err(());
            }
            if rules.http10 || !rules.can_chunked {
                return Ok(None);
            }
            let mut chunked_last = false;
            join_values(dst, b"transfer-encoding: ", values, |v| {
                chunked_last = is_chunked(v)
            });
            if !chunked_last {
                dst.truncate(dst.len() - 2);
                dst.extend_from_slice(b", chunked\r\n");
            }
            f.wrote_len = true;
            Ok(Some(Framing::Chunked))
        }
        header::CONNECTION => {
            join_values(dst, b"connection: ", values, |v| {
                f.close |= crate::guard::upgrade::lists_token(v, b"close")
            });
            Ok(None)
        }
        header::TRAILER => {
            if !rules.http10 && rules.can_chunked {
                join_values(dst, b"trailer: ", values, |_| {});
            }
            Ok(None)
        }
        _ => {
            f.wrote_date |= *name == header::DATE;
            for v in values {
                dst.extend_from_slice(name.as_str().as_bytes());
                dst.extend_from_slice(b": ");
                dst.extend_from_slice(v.as_bytes());
                dst.extend_from_slice(b"\r\n");
            }
            Ok(None)
        }
    }
}

/// The app's `content-length` fields (hyper: a known body length is trusted and its
/// first field written; with an unknown one, every field must say the same number;
/// without a body only HEAD's is kept). `None`: nothing written.
fn content_length<'a>(
    dst: &mut Vec<u8>,
    mut values: impl Iterator<Item = &'a HeaderValue>,
    rules: &Rules,
    body: BodyLength,
) -> Result<Option<u64>, ()> {
    let first = values.next().ok_or(())?;
    let n = match body {
        BodyLength::Known(n) => n,
        BodyLength::Unknown => {
            let n = parse_length(first.as_bytes()).ok_or(())?;
            if values.any(|v| parse_length(v.as_bytes()) != Some(n)) {
                return Err(());
            }
            n
        }
        BodyLength::Empty if !rules.head => return Ok(None),
        BodyLength::Empty => {
            // HEAD: every field as the app gave it, the body none.
            for v in std::iter::once(first).chain(values) {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(v.as_bytes());
                dst.extend_from_slice(b"\r\n");
            }
            return Ok(Some(0));
        }
    };
    dst.extend_from_slice(b"content-length: ");
    dst.extend_from_slice(first.as_bytes());
    dst.extend_from_slice(b"\r\n");
    Ok(Some(n))
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a `Transfer-Encoding` value ends in `chunked` (hyper's `is_chunked_`).
fn is_chunked(v: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// `name: v1, v2\r\n`, calling `each` on every value.
fn join_values<'a>(
    dst: &mut Vec<u8>,
    name: &[u8],
    values: impl Iterator<Item = &'a HeaderValue>,
    mut each: impl FnMut(&[u8]),
) {
    dst.extend_from_slice(name);
    for (i, v) in values.enumerate() {
        if i > 0 {
            dst.extend_from_slice(b", ");
        }
        dst.extend_from_slice(v.as_bytes());
        each(v.as_bytes());
    }
    dst.extend_from_slice(b"\r\n");
}

/// The framing when no field set it.
fn implicit_framing(dst: &mut Vec<u8>, rules: &Rules, body: BodyLength) -> Framing {
    match body {
        BodyLength::Unknown if rules.http10 || !rules.can_chunked => Framing::CloseDelimited,
        BodyLength::Unknown => {
            dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
        BodyLength::Empty | BodyLength::Known(0) => {
            if rules.can_have_content_length && !rules.head {
                dst.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Length(0)
        }
        BodyLength::Known(n) if rules.can_have_content_length => {
            dst.extend_from_slice(b"content-length: ");
            write_decimal(dst, n);
            dst.extend_from_slice(b"\r\n");
            Framing::Length(n)
        }
        BodyLength::Known(_) => Framing::Length(0),
    }
}

/// `n` in decimal (without `fmt`'s machinery: once per response).
fn write_decimal(dst: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.extend_from_slice(&digits[at..]);
}

/// The line before a chunk of `len` bytes (`len` in hex, CRLF), in `buf`.
pub(crate) fn chunk_size_line(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 16;
    let mut n = len;
    loop {
        at -= 1;
        buf[at] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[at..]
}

/// The end of a chunked body: the last chunk, no trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests;
