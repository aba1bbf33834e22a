//! `[[route]]` overrides: for the requests under a URL prefix (the longest matching
//! one, matched against the request's normal path, so `/%61dmin/` and `//admin/` are
//! under `/admin/`), another worker timeout and body size limit and the sticky
//! cookie (`proxy::sticky`), handed to the proxy with the
//! request (`proxy::Overrides`), and a rate limit per client address, nginx's
//! `limit_req`: a token bucket of `burst + 1` requests refilled at `rate`, keyed by
//! the client address the front decided on (`forward_headers::RealIp`): an IPv4
//! address, or an IPv6 address's /64 (`ipv6_subnet`), since one subscriber gets a
//! whole /64 and may use any address in it. A request over it gets 429 with
//! `Retry-After` and never reaches a worker.
//!
//! The buckets are bounded: at `MAX_CLIENTS` keys, a newcomer takes the place of the
//! least recently seen client (`clients`), in constant time, and is never refused
//! for want of room. A client pushed out comes back with a full bucket, which only
//! a flood of over `MAX_CLIENTS` other keys between two of its requests can do.

mod clients;

use crate::config::{Rate, RouteOverride};
use crate::normal_path::NormalPath;
use crate::proxy::sticky::StickyCookie;
use crate::proxy::Overrides;
use crate::respond::{self, Body};
use clients::Clients;
use http::{header, HeaderValue, Response, StatusCode};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Client keys a rate limit keeps buckets for: about 7 MiB per rate-limited route
/// when full.
const MAX_CLIENTS: usize = 65_536;

pub struct RouteLimits {
    routes: Vec<Route>,
}

struct Route {
    prefix: String,
    overrides: Overrides,
    limiter: Option<Limiter>,
}

impl RouteLimits {
    /// From `Settings::routes` (longest prefix first).
    pub fn new(routes: &[RouteOverride]) -> Self {
        RouteLimits {
            routes: routes
                .iter()
                .map(|r| Route {
                    prefix: r.prefix.clone(),
                    overrides: Overrides {
                        max_body_size: r.max_body_size,
                        timeout: r.timeout,
                        sticky: r.sticky.then(|| StickyCookie::new(&r.prefix)),
                    },
                    limiter: r.rate.map(Limiter::new),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The overrides for `path`, or how long the client must wait. `client` (its
    /// address) is asked only for a rate-limited route.
    pub fn check(
        &self,
        path: &NormalPath,
        client: impl FnOnce() -> IpAddr,
    ) -> Result<Option<Overrides>, Duration> {
        let Some(route) = self.routes.iter().find(|r| path.starts_with(&r.prefix)) else {
            return Ok(None);
        };
        if let Some(limiter) = &route.limiter {
            limiter.take(client(), Instant::now())?;
        }
        Ok(Some(route.overrides))
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub fn too_many_requests(wait: Duration) -> Response<Body> {
    let mut resp = respond::status_page(StatusCode::TOO_MANY_REQUESTS);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

struct Limiter {
    rate: Rate,
    buckets: Mutex<Clients<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            buckets: Mutex::new(Clients::new(MAX_CLIENTS)),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.rate.burst) + 1.0
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() * self.rate.per_second;
        (b.tokens + gained).min(self.capacity())
    }

    /// One request from `client` now: Ok, or the wait until one is allowed.
    fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = rate_key(client, self.rate.ipv6_subnet);
        let fresh = || Bucket {
            tokens: self.capacity(),
            at: now,
        };
        // A panic elsewhere while holding the lock leaves the buckets consistent
        // (each update is one assignment): keep limiting rather than fail.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.get_or_insert_with(key, fresh);
        let tokens = self.refilled(*bucket, now);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / self.rate.per_second,
            ))
        }
    }
}

/// The key a client's requests count against: an IPv4 address (an IPv4-mapped IPv6
/// one too, as a dual-stack socket shows IPv4 peers), or the first `ipv6_subnet`
/// bits of an IPv6 address.
fn rate_key(client: IpAddr, ipv6_subnet: u8) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_subnet.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> Limiter {
        Limiter::new(Rate {
            per_second,
            burst,
            ipv6_subnet: crate::defaults::RATE_IPV6_SUBNET,
        })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = limiter(10.0, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.take(ip, t).is_ok());
        }
        let wait = l.take(ip, t).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(l.take(ip, t + Duration::from_millis(100)).is_ok());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            l.take(other, t).is_ok(),
            "another client has its own bucket"
        );
    }

    #[test]
    fn a_flood_of_newcomers_is_never_refused_nor_grows_the_table() {
        let l = limiter(1.0, 0);
        let t = Instant::now();
        let regular: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.take(regular, t).is_ok());
        // 100,000 distinct clients within one instant, each with a full bucket.
        for i in 0..100_000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert!(l.take(ip, t).is_ok(), "newcomer {i} refused");
            assert!(l.buckets.lock().unwrap().len() <= MAX_CLIENTS);
        }
        assert_eq!(l.buckets.lock().unwrap().len(), MAX_CLIENTS);
        // The least recently seen went first: the first of the flood, and the
        // regular, who comes back with a full bucket.
        assert!(l.take(regular, t).is_ok());
        // The most recent ones are still limited.
        let last = IpAddr::from((0x0a00_0000 + 99_999u32).to_be_bytes());
        assert!(l.take(last, t).is_err());
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_subnet() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let key = |s: &str, n: u8| rate_key(ip(s), n);
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), ip("2001:db8:1:2::"));
        assert_eq!(
            key("2001:DB8:1:2:FFFF:FFFF:FFFF:FFFF", 64),
            ip("2001:db8:1:2::")
        );
        assert_ne!(key("2001:db8:1:3::1", 64), key("2001:db8:1:2::1", 64));
        assert_eq!(key("2001:db8:1:2::1", 128), ip("2001:db8:1:2::1"));
        assert_eq!(key("2001:db8:1:2::1", 48), ip("2001:db8:1::"));
        assert_eq!(key("2001:db8:1:2::1", 1), ip("::"));
        // IPv4 keeps every bit, IPv4-mapped IPv6 is IPv4.
        assert_eq!(key("203.0.113.9", 64), ip("203.0.113.9"));
        assert_eq!(key("::ffff:203.0.113.9", 64), ip("203.0.113.9"));
        assert_eq!(key("::ffff:203.0.113.9", 128), ip("203.0.113.9"));

        let l = limiter(1.0, 0);
        let t = Instant::now();
        assert!(l.take(ip("2001:db8::1"), t).is_ok());
        assert!(
            l.take(ip("2001:db8::ffff:2"), t).is_err(),
            "same /64, same bucket"
        );
        assert!(l.take(ip("2001:db8:0:1::1"), t).is_ok(), "another /64");
        assert!(l.take(ip("203.0.113.9"), t).is_ok());
        assert!(
            l.take(ip("::ffff:203.0.113.9"), t).is_err(),
            "mapped: same client"
        );
        let per_address = Limiter::new(Rate {
            per_second: 1.0,
            burst: 0,
            ipv6_subnet: 128,
        });
        assert!(per_address.take(ip("2001:db8::1"), t).is_ok());
        assert!(per_address.take(ip("2001:db8::2"), t).is_ok());
        assert!(per_address.take(ip("2001:db8::2"), t).is_err());
    }
}
