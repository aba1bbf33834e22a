//! Trusted proxies: which peers may tell us who the client is (`forwarded_allow_ips`),
//! and what we believe from them (`X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Forwarded-Ssl`, `X-Forwarded-Protocol`, RFC 7239 `Forwarded`).
//!
//! The rules, applied only when the connection's peer is trusted (a Unix-socket peer
//! has no address and counts as trusted, as in gunicorn: only a local proxy can reach it):
//!
//! - `Forwarded`, when present, is the only source: X-Forwarded-* are then ignored.
//!   Its elements are walked from the right; each one's `for=` is the address that
//!   connected to the proxy which appended it. The walk stops at the first element
//!   whose `for=` is an untrusted address (that address is the client), or that has no
//!   usable address (`for=unknown`, an obfuscated `_name`, no `for=`), or that is
//!   malformed (the walk stops before it). REMOTE_ADDR is the last address the walk
//!   saw; the scheme is the `proto=` of the last element it accepted.
//! - Otherwise `X-Forwarded-For` is walked the same way (entries are addresses,
//!   optionally with a port; anything else stops the walk), and `X-Forwarded-Proto:
//!   https`, `X-Forwarded-Ssl: on`, `X-Forwarded-Protocol: ssl` decide the scheme
//!   (gunicorn's `secure_scheme_headers`): any other value means http, and two of them
//!   that disagree are a 400 (gunicorn's `InvalidSchemeHeaders`).
//!
//! From an untrusted peer nothing is believed: REMOTE_ADDR is the socket peer and the
//! scheme is the connection's. The headers still reach the app as HTTP_X_FORWARDED_*
//! and HTTP_FORWARDED, as gunicorn passes them: an app (or a middleware such as
//! werkzeug's ProxyFix) that reads them must apply its own trust.

use crate::net::{ConnInfo, TrustedProxies};
use crate::wire::Scheme;
use http::{header, HeaderMap, HeaderName};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Who the client is, as far as we believe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: Option<IpAddr>,
    /// 0 when unknown (a Unix-socket peer, an X-Forwarded-For entry without a port).
    pub port: u16,
    pub scheme: Scheme,
}

/// A trusted peer sent headers we must refuse (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("X-Forwarded-Proto/-Ssl/-Protocol disagree about the scheme")]
    ConflictingScheme,
}

/// The client address and scheme for a request on `conn`, by the rules above.
pub fn resolve(
    trust: &TrustedProxies,
    headers: &HeaderMap,
    conn: &ConnInfo,
) -> Result<Client, ForwardError> {
    let mut client = Client {
        addr: conn.peer.map(|p| p.ip()),
        port: conn.peer.map(|p| p.port()).unwrap_or(0),
        scheme: conn.scheme,
    };
    if !trust.trusts(client.addr) {
        return Ok(client);
    }
    let found = match joined(headers, &header::FORWARDED) {
        Some(value) => from_forwarded(trust, &value),
        None => from_x_forwarded(trust, headers)?,
    };
    if let Some((ip, port)) = found.addr {
        client.addr = Some(ip);
        client.port = port.unwrap_or(0);
    }
    if let Some(scheme) = found.scheme {
        client.scheme = scheme;
    }
    Ok(client)
}

/// What the forwarding headers say, before it is applied to the connection's facts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Found {
    addr: Option<(IpAddr, Option<u16>)>,
    scheme: Option<Scheme>,
}

/// Every field line of `name`, joined with `,` (a list split over lines is one list).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn from_forwarded(trust: &TrustedProxies, value: &str) -> Found {
    let mut found = Found::default();
    for element in parse_forwarded(value).into_iter().rev() {
        let Some(element) = element else { break };
        found.scheme = element.proto.as_deref().and_then(scheme_of_proto);
        match element.node {
            Some(Node::Ip(ip, port)) => {
                found.addr = Some((ip, port));
                if !trust.trusts(Some(ip)) {
                    break;
                }
            }
            _ => break,
        }
    }
    found
}

fn scheme_of_proto(proto: &str) -> Option<Scheme> {
    if proto.eq_ignore_ascii_case("https") || proto.eq_ignore_ascii_case("wss") {
        Some(Scheme::Https)
    } else if proto.eq_ignore_ascii_case("http") || proto.eq_ignore_ascii_case("ws") {
        Some(Scheme::Http)
    } else {
        None
    }
}

fn from_x_forwarded(trust: &TrustedProxies, headers: &HeaderMap) -> Result<Found, ForwardError> {
    let mut found = Found {
        addr: None,
        scheme: scheme_from_x_headers(headers)?,
    };
    if let Some(list) = joined(headers, &X_FORWARDED_FOR) {
        for entry in list.rsplit(',') {
            let Some((ip, port)) = parse_node_addr(entry.trim()) else {
                break;
            };
            found.addr = Some((ip, port));
            if !trust.trusts(Some(ip)) {
                break;
            }
        }
    }
    Ok(found)
}

// Names built once (a `&str` name is parsed and validated on every lookup; these
// lookups run for every request from a trusted peer).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// gunicorn's `secure_scheme_headers`: the field and the value that means https.
static SECURE_SCHEME_HEADERS: [(HeaderName, &str); 3] = [
    (HeaderName::from_static("x-forwarded-proto"), "https"),
    (HeaderName::from_static("x-forwarded-ssl"), "on"),
    (HeaderName::from_static("x-forwarded-protocol"), "ssl"),
];

fn scheme_from_x_headers(headers: &HeaderMap) -> Result<Option<Scheme>, ForwardError> {
    let mut secure: Option<bool> = None;
    for (name, https_value) in &SECURE_SCHEME_HEADERS {
        for value in headers.get_all(name) {
            let this = value
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case(https_value));
            match secure {
                Some(previous) if previous != this => return Err(ForwardError::ConflictingScheme),
                _ => secure = Some(this),
            }
        }
    }
    Ok(secure.map(|s| if s { Scheme::Https } else { Scheme::Http }))
}

/// One RFC 7239 `forwarded-element`, the parameters we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub node: Option<Node>,
    pub proto: Option<String>,
}

/// A `for=` node (RFC 7239 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Ip(IpAddr, Option<u16>),
    /// `unknown`: the proxy does not know (or will not say) who connected.
    Unknown,
    /// `_token`: a name that hides the address.
    Obfuscated,
}

/// Parses a `Forwarded` field value into its elements, left to right; `None` for an
/// element that is malformed (bad syntax, an unparseable `for=`, a repeated parameter).
pub fn parse_forwarded(value: &str) -> Vec<Option<Element>> {
    let Some(elements) = split_outside_quotes(value, b',') else {
        // An unterminated quote: nothing in the field can be trusted to be what it seems.
        return vec![None];
    };
    elements.into_iter().map(parse_element).collect()
}

fn parse_element(element: &str) -> Option<Element> {
    let mut out = Element {
        node: None,
        proto: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for pair in split_outside_quotes(element, b';')? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        let name = name.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_tchar) || seen.contains(&name) {
            return None;
        }
        let value = unquote(value)?;
        match name.as_str() {
            "for" => out.node = Some(parse_node(&value)?),
            "proto" => out.proto = Some(value),
            _ => {}
        }
        seen.push(name);
    }
    Some(out)
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A token or a quoted-string, unescaped; `None` when it is neither.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
        return ok.then(|| value.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `unknown`,
/// `_hidden`, `_hidden:_port`.
fn parse_node(value: &str) -> Option<Node> {
    if value.eq_ignore_ascii_case("unknown") {
        return Some(Node::Unknown);
    }
    if value.starts_with('_') {
        return value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
            .then_some(Node::Obfuscated);
    }
    let (ip, port) = parse_node_addr(value)?;
    Some(Node::Ip(ip, port))
}

/// An address with an optional port, in the forms proxies write: `1.2.3.4`,
/// `1.2.3.4:80`, `[::1]`, `[::1]:80`, and a bare IPv6 `::1`. An obfuscated port
/// (`_x`) counts as no port.
fn parse_node_addr(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = host.parse().ok()?;
        (IpAddr::V6(ip), after)
    } else {
        let (host, _) = s.split_once(':')?;
        let ip: Ipv4Addr = host.parse().ok()?;
        (IpAddr::V4(ip), &s[host.len()..])
    };
    match port {
        "" => Some((host, None)),
        p => {
            let p = p.strip_prefix(':')?;
            if p.starts_with('_') {
                return Some((host, None));
            }
            let valid = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            Some((host, Some(p.parse().ok().filter(|_| valid)?)))
        }
    }
}

/// Splits at `sep` outside quoted-strings (`\` escapes inside them); `None` when a
/// quote is not closed.
fn split_outside_quotes(s: &str, sep: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

#[cfg(test)]
mod tests;
