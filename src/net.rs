//! Facts about connections, at the bottom of the crate: where the front listens
//! (`BindAddr`), what the listener knows of a client connection (`ConnInfo`),
//! which peers may speak for a client (`TrustedProxies`, from `forwarded_allow_ips`)
//! and where they say who it is (`RealIpHeader`, from `real_ip_header`).
//! Plain values that config, the listener and the proxy share; they import no stage.

use crate::wire::Scheme;
use http::HeaderName;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// Facts about the client connection, known to the listener.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub scheme: Scheme,
}

/// The request-target byte for byte, when the request's `Uri` is not it (a target
/// `http` refuses as it is, CONNECT's authority: `http1::head`): a request
/// extension, never a header a client could send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTarget(pub bytes::Bytes);

/// Where the front listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    /// `fd://N`: a listening socket systemd passed (socket activation).
    Fd(i32),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Fd(n) => write!(f, "fd://{n}"),
        }
    }
}

/// A bind address we cannot use, with what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BindError(String);

/// Parses `HOST:PORT`, `[V6]:PORT`, `:PORT`, `PORT` or `unix:/path`.
pub fn parse_bind(s: &str) -> Result<BindAddr, BindError> {
    if let Some(fd) = s.strip_prefix("fd://") {
        return match fd.parse::<i32>() {
            Ok(n) if n >= 0 => Ok(BindAddr::Fd(n)),
            _ => Err(BindError(format!(
                "bind {s:?}: expected fd://N, N a file descriptor"
            ))),
        };
    }
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(BindError("bind unix: needs a path".into()));
        }
        return Ok(BindAddr::Unix(PathBuf::from(path)));
    }
    let bad = || {
        BindError(format!(
            "bind {s:?}: expected HOST:PORT, [IPV6]:PORT, unix:/path or fd://N"
        ))
    };
    if let Ok(port) = s.parse::<u16>() {
        return Ok(BindAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    let s2 = if let Some(rest) = s.strip_prefix(':') {
        format!("0.0.0.0:{rest}")
    } else if s.starts_with("localhost:") {
        s.replacen("localhost", "127.0.0.1", 1)
    } else {
        s.to_string()
    };
    s2.parse::<SocketAddr>()
        .map(BindAddr::Tcp)
        .map_err(|_| bad())
}

/// The parsed `forwarded_allow_ips`: `*`, addresses and CIDR ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    nets: Vec<IpNet>,
}

/// An address range; a single address is a range with a full-length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A `forwarded_allow_ips` entry we cannot use, with the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forwarded_allow_ips entry {entry:?}: {reason}")]
pub struct TrustListError {
    entry: String,
    reason: String,
}

impl TrustedProxies {
    /// Whether a peer may set the client address and scheme. `None` is a Unix-socket
    /// peer: trusted.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => true,
            Some(ip) => self.any || self.nets.iter().any(|n| n.contains(ip.to_canonical())),
        }
    }
}

impl Default for TrustedProxies {
    fn default() -> Self {
        crate::defaults::FORWARDED_ALLOW_IPS
            .parse()
            .expect("the default parses")
    }
}

impl FromStr for TrustedProxies {
    type Err = TrustListError;

    /// A comma-separated list; blanks around entries and empty entries are ignored,
    /// so `""` trusts no one.
    fn from_str(s: &str) -> Result<Self, TrustListError> {
        let mut out = TrustedProxies {
            any: false,
            nets: Vec::new(),
        };
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.any = true;
            } else {
                out.nets.push(entry.parse()?);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.nets.iter().map(IpNet::to_string).collect();
        if self.any {
            parts.insert(0, "*".into());
        }
        f.write_str(&parts.join(","))
    }
}

impl IpNet {
    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The address with its host bits cleared.
    fn network(addr: IpAddr, prefix: u8) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let same_family = self.addr.is_ipv4() == ip.is_ipv4();
        same_family && IpNet::network(ip, self.prefix) == self.addr
    }
}

impl FromStr for IpNet {
    type Err = TrustListError;

    fn from_str(entry: &str) -> Result<Self, TrustListError> {
        let bad = |reason: &str| TrustListError {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("expected an IP address, a CIDR range such as 10.0.0.0/8, or *"))?;
        let max = IpNet::max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(p) => parse_prefix(p, max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0..={max}")))?,
        };
        let network = IpNet::network(addr, prefix);
        if network != addr {
            // Almost always a typo; silently widening or narrowing the range is worse.
            return Err(bad(&format!(
                "host bits are set; did you mean {network}/{prefix}?"
            )));
        }
        Ok(IpNet { addr, prefix })
    }
}

/// `real_ip_header`: the one source of the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// A field holding a list of addresses: `X-Forwarded-For`, `X-Real-IP`, or any
    /// other one a proxy sets (`CF-Connecting-IP`, `True-Client-IP`, ...).
    List(HeaderName),
    /// RFC 7239 `Forwarded`: `for=` and `proto=`.
    Forwarded,
    /// The PROXY protocol header (`proxy_protocol = true`).
    ProxyProtocol,
}

/// A `real_ip_header` value we cannot use, with what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("real_ip_header {0:?}: expected X-Forwarded-For, Forwarded, X-Real-IP, proxy_protocol or another header name")]
pub struct RealIpHeaderError(String);

impl Default for RealIpHeader {
    fn default() -> Self {
        crate::defaults::REAL_IP_HEADER
            .parse()
            .expect("the default parses")
    }
}

impl FromStr for RealIpHeader {
    type Err = RealIpHeaderError;

    /// Case-insensitive, as header names are.
    fn from_str(s: &str) -> Result<Self, RealIpHeaderError> {
        if s.eq_ignore_ascii_case("proxy_protocol") {
            return Ok(RealIpHeader::ProxyProtocol);
        }
        match HeaderName::from_bytes(s.as_bytes()) {
            Ok(name) if name == http::header::FORWARDED => Ok(RealIpHeader::Forwarded),
            Ok(name) => Ok(RealIpHeader::List(name)),
            Err(_) => Err(RealIpHeaderError(s.to_string())),
        }
    }
}

impl fmt::Display for RealIpHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RealIpHeader::List(name) if name == "x-forwarded-for" => f.write_str("X-Forwarded-For"),
            RealIpHeader::List(name) if name == "x-real-ip" => f.write_str("X-Real-IP"),
            RealIpHeader::List(name) => f.write_str(name.as_str()),
            RealIpHeader::Forwarded => f.write_str("Forwarded"),
            RealIpHeader::ProxyProtocol => f.write_str("proxy_protocol"),
        }
    }
}

/// A CIDR prefix length in plain decimal (no sign, no leading zero), at most `max`.
fn parse_prefix(p: &str, max: u8) -> Option<u8> {
    let plain = !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    let canonical = p == "0" || !p.starts_with('0');
    let n: u8 = p.parse().ok().filter(|_| plain && canonical)?;
    (n <= max).then_some(n)
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == IpNet::max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests;
