//! The app's control fields, taken off its response head before anything else reads
//! it, as nginx's proxy module does (its `proxy_hide_headers` default list): they
//! are orders to the front, never meant for the client.
//!
//! - `X-Accel-Redirect: /url/path` (or Apache's `X-Sendfile: /abs/path`): serve that
//!   file instead of the app's body (`front::accel`). Of several, the first counts
//!   (nginx ignores the duplicates, with a warning); X-Accel-Redirect wins over
//!   X-Sendfile.
//! - `X-Accel-Limit-Rate: BYTES`: the response goes out at that many bytes a second
//!   (0: no limit, nginx's `limit_rate`); a value that is not a number is ignored.
//! - `X-Accel-Buffering`: every answer's chunks already reach the client as the app
//!   yields them, and a slow client's share is spooled so it never holds the worker
//!   (whose requests share one socket): removed, with no further effect.
//! - `X-Accel-Expires`, `X-Accel-Charset`: nginx's cache and charset conversion,
//!   which the front does not have: removed.

use http::{HeaderMap, HeaderValue};
use std::num::NonZeroU64;

/// The file an app's answer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccelTarget {
    /// `X-Accel-Redirect`: a URL path under a static mount.
    Url(String),
    /// `X-Sendfile`: an absolute file path inside a static mount's directory.
    File(String),
}

/// What the app's control fields ask of the front.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AccelFields {
    pub(crate) target: Option<AccelTarget>,
    /// Bytes a second.
    pub(crate) limit_rate: Option<NonZeroU64>,
}

const REDIRECT: &str = "x-accel-redirect";
const SENDFILE: &str = "x-sendfile";
const LIMIT_RATE: &str = "x-accel-limit-rate";
/// Consumed without an effect here.
const REMOVED: [&str; 3] = ["x-accel-buffering", "x-accel-expires", "x-accel-charset"];

/// Removes every control field from `headers` and says what they asked.
pub(crate) fn take(headers: &mut HeaderMap) -> AccelFields {
    let redirect = first(headers, REDIRECT);
    let sendfile = first(headers, SENDFILE);
    let target = match (redirect, sendfile) {
        (Some(url), _) => Some(AccelTarget::Url(text(&url))),
        (None, Some(path)) => Some(AccelTarget::File(text(&path))),
        (None, None) => None,
    };
    let limit_rate = first(headers, LIMIT_RATE).and_then(|v| parse_rate(v.as_bytes()));
    for name in REMOVED {
        headers.remove(name);
    }
    AccelFields { target, limit_rate }
}

/// The first value of `name`, removing them all; a warning for the ones ignored.
fn first(headers: &mut HeaderMap, name: &'static str) -> Option<HeaderValue> {
    let mut values = match headers.entry(name) {
        http::header::Entry::Occupied(e) => e.remove_entry_mult().1,
        http::header::Entry::Vacant(_) => return None,
    };
    let first = values.next();
    let ignored = values.count();
    if ignored > 0 {
        tracing::warn!(
            field = name,
            ignored,
            "the app sent the field several times; the first counts"
        );
    }
    first
}

/// The value without the whitespace around it (RFC 9110 §5.5, as nginx reads it);
/// one that is not UTF-8 names no file (an empty target: 404).
fn text(v: &HeaderValue) -> String {
    v.to_str()
        .unwrap_or_default()
        .trim_matches([' ', '\t'])
        .to_string()
}

/// nginx's `ngx_atoi`: decimal digits only; 0 means no limit.
fn parse_rate(v: &[u8]) -> Option<NonZeroU64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v)
        .ok()?
        .parse::<u64>()
        .ok()
        .and_then(NonZeroU64::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            let name = http::HeaderName::from_bytes(n.as_bytes()).unwrap();
            h.append(name, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn every_control_field_is_removed_and_others_stay() {
        let mut h = head(&[
            ("X-Accel-Buffering", "no"),
            ("X-Accel-Expires", "0"),
            ("X-Accel-Limit-Rate", "100"),
            ("X-Accel-Charset", "utf-8"),
            ("Content-Type", "text/event-stream"),
        ]);
        let asked = take(&mut h);
        assert_eq!(asked.target, None);
        assert_eq!(asked.limit_rate, NonZeroU64::new(100));
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type"]);
    }

    #[test]
    fn the_first_redirect_counts_and_wins_over_sendfile() {
        let mut h = head(&[
            ("X-Sendfile", "/srv/b"),
            ("X-Accel-Redirect", "/a/1"),
            ("X-Accel-Redirect", "/a/2"),
        ]);
        assert_eq!(take(&mut h).target, Some(AccelTarget::Url("/a/1".into())));
        assert!(h.is_empty(), "{h:?}");
        let mut h = head(&[("X-Accel-Redirect", " /a/1\t")]);
        assert_eq!(take(&mut h).target, Some(AccelTarget::Url("/a/1".into())));
        let mut h = head(&[("X-Sendfile", "/srv/b"), ("X-Sendfile", "/srv/c")]);
        assert_eq!(
            take(&mut h).target,
            Some(AccelTarget::File("/srv/b".into()))
        );
    }

    #[test]
    fn a_rate_is_digits_and_zero_is_none() {
        assert_eq!(parse_rate(b"2048"), NonZeroU64::new(2048));
        assert_eq!(parse_rate(b" 5\t"), NonZeroU64::new(5));
        for bad in [
            &b""[..],
            b"0",
            b"-5",
            b"+5",
            b"5 5",
            b"5k",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_non_utf8_target_names_no_file() {
        let mut h = HeaderMap::new();
        h.insert(REDIRECT, HeaderValue::from_bytes(b"/a/\xff").unwrap());
        assert_eq!(take(&mut h).target, Some(AccelTarget::Url(String::new())));
    }
}
