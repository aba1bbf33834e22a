//! `[[route]]` overrides: for the requests under a URL prefix (the longest matching
//! one, matched against the request's normal path, so `/%61dmin/` and `//admin/` are
//! under `/admin/`), another worker timeout and body size limit, handed to the proxy with the
//! request (`proxy::Overrides`), and a rate limit per client address, nginx's
//! `limit_req`: a token bucket of `burst + 1` requests refilled at `rate`, keyed by
//! the client address after proxy trust. A request over it gets 429 with
//! `Retry-After` and never reaches a worker.
//!
//! The buckets are bounded: at `MAX_CLIENTS` addresses, the full ones (clients idle
//! long enough to have their whole burst back) are dropped; if none is, a new
//! address is refused (429) until some are, as nginx does when its zone is full.

use crate::config::{Rate, RouteOverride};
use crate::normal_path::NormalPath;
use crate::proxy::Overrides;
use crate::respond::{self, Body};
use http::{header, HeaderValue, Response, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client addresses a rate limit keeps buckets for.
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
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
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
            buckets: Mutex::new(HashMap::new()),
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
        let mut buckets = self.buckets.lock().unwrap();
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            let cap = self.capacity();
            buckets.retain(|_, b| self.refilled(*b, now) < cap);
            if buckets.len() >= MAX_CLIENTS {
                return Err(Duration::from_secs(1));
            }
        }
        let fresh = Bucket {
            tokens: self.capacity(),
            at: now,
        };
        let bucket = buckets.entry(client).or_insert(fresh);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> Limiter {
        Limiter::new(Rate { per_second, burst })
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
    fn the_buckets_stay_bounded() {
        let l = limiter(1.0, 0);
        let t = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            assert!(l.take(IpAddr::from(i.to_be_bytes()), t).is_ok());
        }
        let newcomer: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.take(newcomer, t).is_err(), "full of busy clients");
        // A second later every bucket is full again: they are dropped for it.
        assert!(l.take(newcomer, t + Duration::from_secs(1)).is_ok());
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
    }
}
