//! Who the client is: which peers may tell us (`forwarded_allow_ips`), which one
//! field they tell it in (`real_ip_header`, as nginx's), and what we believe of it.
//! The front decides this once per request (`front`), and that one answer is
//! REMOTE_ADDR, `wsgi.url_scheme`, the access log's client and the rate-limit key.
//!
//! The rules, applied only when the connection's peer is trusted (a Unix-socket peer
//! has no address and counts as trusted, as in gunicorn: only a local proxy can reach it):
//!
//! - The address comes from the one field `real_ip_header` names; every other field
//!   is ignored for it, so a client cannot add one its proxy passes through
//!   unchanged. A list (`X-Forwarded-For`, `X-Real-IP`, ...) is walked from the
//!   right, across its field lines, each proxy having appended the address that
//!   connected to it: trusted addresses are skipped (nginx's `real_ip_recursive on`)
//!   and the first untrusted one is the client; empty items are skipped, and an item
//!   that is not an address (with an optional port, `[v6]` brackets) stops the walk,
//!   keeping the last address it saw. The scheme is then gunicorn's
//!   `secure_scheme_headers`: `X-Forwarded-Proto: https`, `X-Forwarded-Ssl: on`,
//!   `X-Forwarded-Protocol: ssl` mean https, any other value http, and two of them
//!   that disagree are a 400 (gunicorn's `InvalidSchemeHeaders`).
//! - `Forwarded` (RFC 7239): its elements are walked the same way by their `for=`,
//!   each line read from the right (so a client's unbalanced quote cannot swallow
//!   what its proxy appended after it); the walk also stops at `for=unknown`, an
//!   obfuscated `_name`, an element without `for=`, or a malformed one. The scheme is
//!   the `proto=` of the element the walk ended on (written by a trusted hop); the
//!   X-Forwarded-* fields are ignored.
//! - `proxy_protocol`: the PROXY header's source, which the listener made the
//!   connection's peer; no field is read.
//!
//! From an untrusted peer nothing is believed: REMOTE_ADDR is the socket peer and the
//! scheme is the connection's. The headers still reach the app as HTTP_X_FORWARDED_*
//! and HTTP_FORWARDED, as gunicorn passes them: an app (or a middleware such as
//! werkzeug's ProxyFix) that reads them must apply its own trust.

use crate::net::{ConnInfo, RealIpHeader, TrustedProxies};
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

impl Client {
    /// The connection's own facts: its peer and scheme.
    pub fn peer(conn: &ConnInfo) -> Self {
        Client {
            addr: conn.peer.map(|p| p.ip()),
            port: conn.peer.map_or(0, |p| p.port()),
            scheme: conn.scheme,
        }
    }
}

/// A trusted peer sent headers we must refuse (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("X-Forwarded-Proto/-Ssl/-Protocol disagree about the scheme")]
    ConflictingScheme,
}

/// nginx's realip module: which peers may speak for the client, and in which field.
#[derive(Debug, Clone, Default)]
pub struct RealIp {
    pub trusted: TrustedProxies,
    pub header: RealIpHeader,
}

impl RealIp {
    /// Whether this connection's peer may set forwarding facts (and the request id).
    pub fn trusts(&self, conn: &ConnInfo) -> bool {
        self.trusted.trusts(conn.peer.map(|p| p.ip()))
    }

    /// The client address and scheme for a request on `conn`, by the rules above.
    pub fn resolve(&self, headers: &HeaderMap, conn: &ConnInfo) -> Result<Client, ForwardError> {
        let mut client = Client::peer(conn);
        if !self.trusts(conn) {
            return Ok(client);
        }
        let found = match &self.header {
            RealIpHeader::List(name) => Found {
                addr: from_list(&self.trusted, headers, name),
                scheme: scheme_from_x_headers(headers)?,
            },
            RealIpHeader::Forwarded => from_forwarded(&self.trusted, headers),
            RealIpHeader::ProxyProtocol => Found::default(),
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
}

/// What the forwarding headers say, before it is applied to the connection's facts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Found {
    addr: Option<(IpAddr, Option<u16>)>,
    scheme: Option<Scheme>,
}

/// The walk of a list field: its lines last to first, each line's items right to
/// left. Bytes, not text: a line a client filled with non-ASCII stops the walk at its
/// own items instead of vanishing (and taking the items its proxy appended with it).
fn from_list(
    trust: &TrustedProxies,
    headers: &HeaderMap,
    name: &HeaderName,
) -> Option<(IpAddr, Option<u16>)> {
    let mut found = None;
    for line in headers.get_all(name).iter().rev() {
        for item in line.as_bytes().rsplit(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            let Some((ip, port)) = std::str::from_utf8(item).ok().and_then(parse_node_addr) else {
                return found;
            };
            found = Some((ip, port));
            if !trust.trusts(Some(ip)) {
                return found;
            }
        }
    }
    found
}

fn from_forwarded(trust: &TrustedProxies, headers: &HeaderMap) -> Found {
    let mut found = Found::default();
    for line in headers.get_all(header::FORWARDED).iter().rev() {
        for element in elements_rev(line.as_bytes()) {
            if element.is_some_and(|e| e.trim_ascii().is_empty()) {
                continue;
            }
            let Some(element) = element.and_then(parse_element) else {
                return found;
            };
            found.scheme = element.proto.as_deref().and_then(scheme_of_proto);
            match element.node {
                Some(Node::Ip(ip, port)) => {
                    found.addr = Some((ip, port));
                    if !trust.trusts(Some(ip)) {
                        return found;
                    }
                }
                _ => return found,
            }
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

/// gunicorn's `secure_scheme_headers`: the field and the value that means https.
/// Names built once (a `&str` name is parsed and validated on every lookup; these
/// lookups run for every request from a trusted peer).
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
/// element that is malformed (bad syntax, an unparseable `for=`, a repeated parameter,
/// or left of a quote that is not closed).
pub fn parse_forwarded(value: &str) -> Vec<Option<Element>> {
    let mut elements: Vec<Option<Element>> = elements_rev(value.as_bytes())
        .into_iter()
        .map(|e| e.and_then(parse_element))
        .collect();
    elements.reverse();
    elements
}

/// The elements of one `Forwarded` field line, right to left, split at commas outside
/// quoted-strings. Read from the right because the right is what the trusted proxies
/// appended: a quote the client left open spoils only the client's own part, the
/// left-most piece (`None`), where read from the left it would swallow the rest of
/// the line. Inside a quoted-string, a `"` after an odd run of `\` is escaped; a
/// piece that is not UTF-8 is `None` too.
fn elements_rev(line: &[u8]) -> Vec<Option<&str>> {
    fn piece(b: &[u8]) -> Option<&str> {
        std::str::from_utf8(b).ok()
    }
    let mut out = Vec::new();
    let mut end = line.len();
    let mut quoted = false;
    for i in (0..line.len()).rev() {
        match line[i] {
            b'"' if !quoted => quoted = true,
            b'"' => {
                let backslashes = line[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                quoted = backslashes % 2 == 1;
            }
            b',' if !quoted => {
                out.push(piece(&line[i + 1..end]));
                end = i;
            }
            _ => {}
        }
    }
    out.push(if quoted { None } else { piece(&line[..end]) });
    out
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
