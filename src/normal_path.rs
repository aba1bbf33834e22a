//! The request's path as every decision of the front sees it, the way nginx's
//! `location` matching sees `$uri`: percent-decoded once (`%2F` is a `/`, `%2e` a
//! `.`, hex in either case), dot-segments resolved, repeated slashes merged. Mount
//! choice, `internal`, `[[route]]`, the static file looked up and the X-Accel target
//! are all decided on it, so no spelling of a path can get one answer from the router
//! and another from the file system or the app's router (Django and Werkzeug route
//! on the decoded `PATH_INFO`; Werkzeug also drops leading slashes). The app itself
//! still gets the client's `PATH_INFO` and `RAW_URI` (`proxy::target`).
//!
//! It works on bytes, and decides:
//! - a `%` not followed by two hex digits stays a `%` (as Python's `unquote`, hence
//!   the apps, read it); a decoded `%` is never decoded again (`%252e` is `%2e`);
//! - a decoded NUL is refused (400, as nginx does), and so is a `..` that climbs
//!   above `/`;
//! - a result that is not UTF-8 is kept as bytes: prefixes are matched byte for byte
//!   (which is what the apps' lossy decoding matches too); the static layer refuses
//!   such a name (404);
//! - a backslash, `;`, `?` and `#` (decoded from `%5C`, `%3B`, `%3F`, `%23`) are
//!   plain bytes of a segment, as on Unix nginx and in the apps' routers;
//! - the result ends with `/` when the path did, or when its last segment was `.` or
//!   `..` (RFC 3986 §5.2.4: `/a/b/..` is `/a/`).
//!
//! The work is linear in the path's length: each byte is decoded once, written once
//! and, at most once, looked at again when a `..` removes it.

use std::borrow::Cow;

/// Why a request path has no normal form (the client's fault: 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("NUL in the decoded path")]
    Nul,
    #[error("a '..' segment climbs above '/'")]
    AboveRoot,
}

/// A decoded, dot-free, slash-merged path: always starts with `/`, never holds
/// `//`, a `.` or `..` segment, or a NUL.
#[derive(Clone, PartialEq, Eq)]
pub struct NormalPath {
    bytes: Vec<u8>,
    /// The path had a `.` or `..` segment (plain or encoded) before resolution.
    had_dot_segments: bool,
}

impl NormalPath {
    /// The normal form of `raw`, a request path as the client sent it (no query).
    pub fn parse(raw: &[u8]) -> Result<Self, PathError> {
        if raw.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        let decoded = decode(raw);
        if memchr::memchr(0, &decoded).is_some() {
            return Err(PathError::Nul);
        }
        let mut out = Vec::with_capacity(decoded.len());
        out.push(b'/');
        let mut had_dot_segments = false;
        // Every segment written is followed by '/'; `trailing` says whether the
        // result keeps the last one.
        let mut trailing = true;
        for segment in decoded[1..].split(|&b| b == b'/') {
            trailing = true;
            match segment {
                b"" => {}
                b"." => had_dot_segments = true,
                b".." => {
                    had_dot_segments = true;
                    if out.len() == 1 {
                        return Err(PathError::AboveRoot);
                    }
                    out.pop();
                    let parent = memchr::memrchr(b'/', &out).map_or(0, |i| i + 1);
                    out.truncate(parent);
                }
                name => {
                    out.extend_from_slice(name);
                    out.push(b'/');
                    trailing = false;
                }
            }
        }
        if !trailing && out.len() > 1 {
            out.pop();
        }
        Ok(NormalPath {
            bytes: out,
            had_dot_segments,
        })
    }

    /// `/`, for what names no path (`*`, an authority) where a whole-server rule
    /// must still hold.
    pub fn root() -> Self {
        NormalPath {
            bytes: b"/".to_vec(),
            had_dot_segments: false,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The path as text, if it is UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// Whether the path lies under `prefix` (a configured URL prefix, itself normal).
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.bytes.starts_with(prefix.as_bytes())
    }

    /// The part after `prefix`, when the path lies under it.
    pub fn strip_prefix(&self, prefix: &str) -> Option<&[u8]> {
        self.bytes.strip_prefix(prefix.as_bytes())
    }

    pub fn is(&self, path: &str) -> bool {
        self.bytes == path.as_bytes()
    }

    /// true when the client's spelling had a `.` or `..` segment: an app's
    /// `X-Accel-Redirect` with one is refused, as nginx refuses an unsafe URI there.
    pub fn had_dot_segments(&self) -> bool {
        self.had_dot_segments
    }
}

impl std::fmt::Debug for NormalPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NormalPath({:?})", String::from_utf8_lossy(&self.bytes))
    }
}

/// `raw` with every `%XX` (hex in either case) decoded once; any other `%` is kept.
fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'%', raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                raw.get(i + 1).and_then(|&h| hex(h)),
                raw.get(i + 2).and_then(|&l| hex(l)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
