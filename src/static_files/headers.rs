//! The header arithmetic of the file layer, as pure functions: Content-Type with
//! `charset=utf-8`, the ETag and Last-Modified values (byte for byte what tower-http's
//! ServeDir sends, so the cached fast path and ServeDir agree), Accept-Encoding
//! preference with q-values, the 304 decision, and `If-Range`, which ServeDir ignores.
//! No I/O here: everything is unit-tested with plain values.

use http::{header, HeaderMap, HeaderValue};
use httpdate::HttpDate;
use std::path::Path;
use std::time::SystemTime;

/// `application/*` and `image/*` types that are text and so get a charset too.
const TEXTY: &[&str] = &[
    "application/javascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "image/svg+xml",
];

/// Content-Type for a file name, by extension; `charset=utf-8` added to text types.
pub fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    with_charset(mime)
}

/// `mime` as a header value, with `; charset=utf-8` when it is text and has none.
pub fn with_charset(mime: &str) -> HeaderValue {
    if needs_charset(mime) {
        HeaderValue::from_str(&format!("{mime}; charset=utf-8"))
    } else {
        HeaderValue::from_str(mime)
    }
    .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn needs_charset(mime: &str) -> bool {
    !mime.to_ascii_lowercase().contains("charset=") && is_text(mime)
}

/// Whether a Content-Type is text: `text/*` and the `TEXTY` types. The one list of
/// what gets a charset, what the front compresses of the app's answers
/// (`front::compression`) and which static files are compressed on the fly.
pub(crate) fn is_text(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence.starts_with("text/") || TEXTY.contains(&essence.as_str())
}

/// Adds the charset to a Content-Type that ServeDir set without one.
pub fn fix_charset(headers: &mut HeaderMap) {
    let fixed = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        Some(Ok(mime)) if needs_charset(mime) => with_charset(mime),
        _ => return,
    };
    headers.insert(header::CONTENT_TYPE, fixed);
}

/// The strong ETag ServeDir derives from size and mtime (`"secs.nanos-size"` in hex).
/// Kept identical so a client's validator works whichever path served it.
pub fn etag(len: u64, modified: SystemTime) -> Option<HeaderValue> {
    let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let value = format!(
        "\"{:x}.{:08x}-{:x}\"",
        since.as_secs(),
        since.subsec_nanos(),
        len
    );
    HeaderValue::from_str(&value).ok()
}

pub fn last_modified(modified: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&HttpDate::from(modified).to_string())
        .expect("an HTTP date is a valid header value")
}

/// A precompressed sibling ServeDir knows about and we enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Encoding {
    // Ordered least to most preferred, as tower-http breaks q-value ties.
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Identity => "",
            Encoding::Gzip => ".gz",
            Encoding::Brotli => ".br",
        }
    }

    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        })
    }

    fn parse(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("br") {
            Some(Encoding::Brotli)
        } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Some(Encoding::Gzip)
        } else if token.eq_ignore_ascii_case("identity") {
            Some(Encoding::Identity)
        } else {
            None
        }
    }
}

/// The siblings to try, best first, the way ServeDir negotiates: highest q-value
/// wins, ties go to br over gzip over identity, q=0 is refused, unknown codings
/// and `*` are ignored. Stops at identity: from there the plain file is served.
pub fn preferred_encodings(headers: &HeaderMap) -> Vec<Encoding> {
    let mut accepted: Vec<(u16, Encoding)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|item| {
            let mut parts = item.splitn(2, ';');
            let encoding = Encoding::parse(parts.next()?.trim())?;
            let q = match parts.next() {
                Some(q) => parse_q(q.trim())?,
                None => 1000,
            };
            Some((q, encoding))
        })
        .filter(|(q, _)| *q > 0)
        .collect();
    accepted.sort_by(|a, b| b.cmp(a));
    accepted
        .into_iter()
        .map(|(_, e)| e)
        .take_while(|e| *e != Encoding::Identity)
        .collect()
}

/// `q=0.5` → 500; None when malformed (then tower-http drops the coding too).
fn parse_q(s: &str) -> Option<u16> {
    let rest = s.strip_prefix("q=").or_else(|| s.strip_prefix("Q="))?;
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value = whole;
    for (i, b) in frac.bytes().enumerate() {
        value += u16::from(b - b'0') * [100, 10, 1][i];
    }
    (value <= 1000).then_some(value)
}

/// The 304 decision for GET/HEAD (RFC 9110 §13.2.2): If-None-Match (weak comparison)
/// when present, else If-Modified-Since.
pub fn not_modified(req: &HeaderMap, etag: Option<&HeaderValue>, modified: SystemTime) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH) {
        let Some(etag) = etag else { return false };
        return inm.as_bytes() == b"*" || etag_list_contains(inm.as_bytes(), etag, weak_eq);
    }
    let since = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<HttpDate>().ok());
    match since {
        // Whole seconds: HTTP dates carry no sub-second part.
        Some(since) => HttpDate::from(modified) <= since,
        None => false,
    }
}

/// `If-Range` (RFC 9110 §13.1.5): the Range applies only when the validator matches
/// the current representation: an entity tag by strong comparison, or a date equal
/// to Last-Modified. Anything else (weak tag, other date, garbage) means "send it all".
pub fn if_range_matches(
    if_range: &HeaderValue,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let value = if_range.as_bytes();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return etag.is_some_and(|etag| strong_eq(value, etag.as_bytes()));
    }
    let parse = |v: &HeaderValue| v.to_str().ok()?.parse::<HttpDate>().ok();
    match (parse(if_range), last_modified.and_then(parse)) {
        (Some(wanted), Some(current)) => wanted == current,
        _ => false,
    }
}

fn strong_eq(a: &[u8], b: &[u8]) -> bool {
    !a.starts_with(b"W/") && !b.starts_with(b"W/") && a == b
}

fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    a.strip_prefix(b"W/").unwrap_or(a) == b.strip_prefix(b"W/").unwrap_or(b)
}

/// Whether a comma-separated list of entity tags holds one equal to `etag`
/// (commas inside quotes do not split).
fn etag_list_contains(list: &[u8], etag: &HeaderValue, eq: fn(&[u8], &[u8]) -> bool) -> bool {
    let matches = |tag: &[u8]| {
        let tag = tag.trim_ascii();
        !tag.is_empty() && eq(tag, etag.as_bytes())
    };
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in list.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                if matches(&list[start..i]) {
                    return true;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    matches(&list[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hm(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn charset_only_on_text() {
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert!(content_type(Path::new("a.js"))
            .to_str()
            .unwrap()
            .ends_with("; charset=utf-8"));
        assert_eq!(
            content_type(Path::new("a.json")),
            "application/json; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("a.svg")),
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
        assert_eq!(
            with_charset("text/plain; charset=latin1"),
            "text/plain; charset=latin1"
        );
    }

    #[test]
    fn etag_format_matches_servedir() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(0x5f5e100, 0x1234);
        assert_eq!(etag(0x400, t).unwrap(), "\"5f5e100.00001234-400\"");
    }

    #[test]
    fn encodings_follow_q_values() {
        use Encoding::*;
        assert_eq!(preferred_encodings(&hm(&[])), vec![]);
        assert_eq!(
            preferred_encodings(&hm(&[("accept-encoding", "gzip, deflate, br")])),
            vec![Brotli, Gzip]
        );
        assert_eq!(
            preferred_encodings(&hm(&[("accept-encoding", "br;q=0.5, gzip;q=0.8")])),
            vec![Gzip, Brotli]
        );
        assert_eq!(
            preferred_encodings(&hm(&[("accept-encoding", "br;q=0, gzip")])),
            vec![Gzip]
        );
        assert_eq!(
            preferred_encodings(&hm(&[("accept-encoding", "identity, gzip;q=0.5")])),
            vec![]
        );
        assert_eq!(
            preferred_encodings(&hm(&[("accept-encoding", "gzip;q=2, br;q=0.1")])),
            vec![Brotli]
        );
        assert_eq!(parse_q("q=0.125"), Some(125));
        assert_eq!(parse_q("q=1.0001"), None);
    }

    #[test]
    fn conditional_get() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tag = etag(5, t).unwrap();
        let lm = last_modified(t);
        let inm = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(not_modified(&inm(tag.to_str().unwrap()), Some(&tag), t));
        assert!(not_modified(
            &inm(&format!("\"x\", W/{}", tag.to_str().unwrap())),
            Some(&tag),
            t
        ));
        assert!(not_modified(&inm("*"), Some(&tag), t));
        assert!(!not_modified(&inm("\"other\""), Some(&tag), t));
        let mut ims = HeaderMap::new();
        ims.insert(header::IF_MODIFIED_SINCE, lm.clone());
        assert!(not_modified(&ims, Some(&tag), t));
        assert!(!not_modified(&ims, Some(&tag), t + Duration::from_secs(2)));
        // If-None-Match wins over If-Modified-Since.
        ims.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&ims, Some(&tag), t));
    }

    #[test]
    fn if_range_is_strong() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tag = etag(5, t).unwrap();
        let lm = last_modified(t);
        assert!(if_range_matches(&tag, Some(&tag), Some(&lm)));
        let weak = HeaderValue::from_str(&format!("W/{}", tag.to_str().unwrap())).unwrap();
        assert!(!if_range_matches(&weak, Some(&tag), Some(&lm)));
        assert!(!if_range_matches(
            &HeaderValue::from_static("\"old\""),
            Some(&tag),
            Some(&lm)
        ));
        assert!(if_range_matches(&lm, Some(&tag), Some(&lm)));
        let earlier = last_modified(t - Duration::from_secs(60));
        assert!(!if_range_matches(&earlier, Some(&tag), Some(&lm)));
        assert!(!if_range_matches(
            &HeaderValue::from_static("junk"),
            Some(&tag),
            Some(&lm)
        ));
    }

    // ---- property tests (issue 5 item 10) -------------------------------------------
    // The Range header itself is parsed by tower-http (http-range-header); what we own
    // is the validator arithmetic around it: If-Range, If-None-Match lists,
    // If-Modified-Since and Accept-Encoding q-values.

    use proptest::prelude::*;

    /// Header values as a client may send them: visible ASCII, tabs, obs-text (bytes
    /// a header value cannot hold become `"`, which is interesting here anyway).
    fn any_value() -> impl Strategy<Value = HeaderValue> {
        proptest::collection::vec(any::<u8>(), 0..60).prop_map(|b| {
            let ok = |c: u8| c == b'\t' || (c >= 0x20 && c != 0x7f);
            let b: Vec<u8> = b
                .into_iter()
                .map(|c| if ok(c) { c } else { b'"' })
                .collect();
            HeaderValue::from_bytes(&b).unwrap()
        })
    }

    /// Pieces of entity tags, dates and codings, in any order.
    fn near_miss() -> impl Strategy<Value = HeaderValue> {
        const PIECES: &[&str] = &[
            "W/",
            "\"",
            "\"abc\"",
            ",",
            " ",
            "*",
            "q=",
            "0.5",
            "1.0001",
            ";",
            "gzip",
            "br",
            "identity",
            "Tue, 14 Nov 2023 22:13:20 GMT",
            "GMT",
            "-",
        ];
        proptest::collection::vec(proptest::sample::select(PIECES), 0..12)
            .prop_map(|p| HeaderValue::from_str(&p.concat()).unwrap())
    }

    fn value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![any_value(), near_miss()]
    }

    fn any_time() -> impl Strategy<Value = SystemTime> {
        (0u64..=253_402_300_799).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 3000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn validators_never_panic(
            if_range in value(),
            inm in value(),
            ims in value(),
            ae in value(),
            len in any::<u64>(),
            t in any_time(),
        ) {
            let tag = etag(len, t);
            let lm = last_modified(t);
            let _ = if_range_matches(&if_range, tag.as_ref(), Some(&lm));
            let _ = if_range_matches(&if_range, None, None);
            let mut h = HeaderMap::new();
            h.insert(header::IF_MODIFIED_SINCE, ims);
            let _ = not_modified(&h, tag.as_ref(), t);
            h.insert(header::IF_NONE_MATCH, inm);
            let _ = not_modified(&h, tag.as_ref(), t);
            h.insert(header::ACCEPT_ENCODING, ae);
            let _ = preferred_encodings(&h);
        }

        #[test]
        fn if_range_accepts_exactly_the_current_validators(
            len in any::<u64>(),
            t in any_time(),
            other in any_time(),
        ) {
            let tag = etag(len, t).unwrap();
            let lm = last_modified(t);
            prop_assert!(if_range_matches(&tag, Some(&tag), Some(&lm)));
            prop_assert!(if_range_matches(&lm, Some(&tag), Some(&lm)));
            let weak = HeaderValue::from_str(&format!("W/{}", tag.to_str().unwrap())).unwrap();
            prop_assert!(!if_range_matches(&weak, Some(&tag), Some(&lm)));
            let by_date = if_range_matches(&last_modified(other), Some(&tag), Some(&lm));
            prop_assert_eq!(by_date, secs(other) == secs(t));
        }
    }
}
