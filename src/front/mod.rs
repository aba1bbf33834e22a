//! The front: the one service every client request goes through, and the routing step
//! at its core (static mount, app or 404); the app's responses are compressed here
//! (tower-http) and every response gets the Server field.
//! Each request gets a request id (returned as `X-Request-Id`, passed to the app) and
//! is counted in the metrics and, when enabled, the access log. An HTTP/1 request
//! comes from our codec (`http1`), read once by the guard; an HTTP/2 request meets
//! the HTTP/1 guard's rules and limits here first (`guard::http2`).

mod accel;
mod limit_rate;
mod compression;
pub mod limits;
#[cfg(test)]
mod path_tests;
mod upgrade;
pub(crate) mod websocket;

use crate::conn_watch::Activity;
use crate::guard::{self, GuardLimits};
use crate::http1::body::ClientBody;
use crate::net::ConnInfo;
use crate::normal_path::{NormalPath, PathError};
use crate::observe::access_log::{AccessLog, Entry, LogWhenSent};
use crate::observe::metrics::{Gauges, UpgradeRefusal};
use crate::observe::{Metrics, RouteKind};
use crate::proxy::forward_headers::{Client, RealIp};
use crate::proxy::{Proxy, RequestStart, Stamp, Upstream};
use crate::respond::{self, Body, Failure};
use crate::router::{self, Route};
use crate::static_files::StaticFiles;
use bytes::Bytes;
use compression::content_length_of;
pub use compression::AppCompression;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tower_http::compression::predicate::Predicate;
pub use upgrade::WebSockets;

/// Everything a request may need, shared by all connections.
pub struct Front {
    statics: StaticFiles,
    /// `None` in static-only mode.
    proxy: Option<Proxy>,
    metrics: Arc<Metrics>,
    access_log: Option<Arc<AccessLog>>,
    compression: AppCompression,
    request_ids: RequestIds,
    /// `[[route]]` overrides and rate limits.
    limits: limits::RouteLimits,
    /// The request head limits, for HTTP/2 requests (the guard applies them to HTTP/1).
    head_limits: GuardLimits,
    /// Who the client is: decided once per request, for everything that asks.
    real_ip: RealIp,
    websockets: WebSockets,
}

/// Request ids: 12 hex digits of a per-process random prefix (one per front thread)
/// and 8 of a per-thread counter, cheap and unique enough to find one request across
/// the access log, the error log and the app's logs. The counter is the thread's
/// own: one shared by the front threads would move between cores on every request.
struct RequestIds {
    seed: u64,
}

thread_local! {
    static NEXT_REQUEST_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl RequestIds {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        RequestIds { seed }
    }

    fn make(&self) -> Bytes {
        let n = NEXT_REQUEST_ID.with(|next| {
            let n = next.get();
            next.set(n.wrapping_add(1));
            n
        });
        let prefix = (self.seed ^ crate::shards::current() as u64) & 0xffff_ffff_ffff;
        let mut id = [0u8; 20];
        let _ = std::io::Write::write_fmt(&mut &mut id[..], format_args!("{prefix:012x}{n:08x}"));
        Bytes::copy_from_slice(&id)
    }
}

/// The rules the front applies to every request, from the settings.
pub struct Rules {
    pub compression: AppCompression,
    /// `[[route]]` overrides and rate limits.
    pub limits: limits::RouteLimits,
    /// The request head limits, for HTTP/2 requests (the guard applies them to HTTP/1).
    pub head_limits: GuardLimits,
    /// Where the client's address comes from.
    pub real_ip: RealIp,
    pub websockets: WebSockets,
}

impl Front {
    pub fn new(
        statics: StaticFiles,
        proxy: Option<Proxy>,
        metrics: Arc<Metrics>,
        access_log: Option<Arc<AccessLog>>,
        rules: Rules,
    ) -> Self {
        let Rules {
            compression,
            limits,
            head_limits,
            real_ip,
            websockets,
        } = rules;
        Front {
            statics,
            proxy,
            metrics,
            access_log,
            compression,
            request_ids: RequestIds::new(),
            limits,
            head_limits,
            real_ip,
            websockets,
        }
    }

    /// The figures `/metrics` reads from the front's parts at the moment it asks.
    pub fn gauges(&self) -> Gauges {
        let (cache_hits, cache_misses) = self.statics.cache_stats();
        Gauges {
            queued: self.proxy.as_ref().map_or(0, |p| p.queued()),
            body_memory: self.proxy.as_ref().map_or(0, |p| p.body_memory()),
            spool: self
                .proxy
                .as_ref()
                .map_or_else(Default::default, |p| p.spool_use()),
            responses: crate::dispatcher::response_budget::global().usage(),
            cache_hits,
            cache_misses,
            parked: crate::http1::parked_connections(),
            websockets: self.websockets.slots.open() as u64,
        }
    }

    /// The service for one client connection.
    pub fn service(
        self: &Arc<Self>,
        conn: ConnInfo,
        activity: Arc<Activity>,
    ) -> impl tower::Service<
        Request<ClientBody>,
        Response = Response<
            impl http_body::Body<Data = Bytes, Error = impl Into<respond::BoxError>> + Send,
        >,
        Error = Infallible,
        Future = impl Send,
    > + Clone
           + Send {
        // One reference count per connection, cloned per request: a clone of the
        // `Arc<Front>` itself would move its count between the front threads' cores.
        let this = Arc::new((self.clone(), conn, activity));
        tower::service_fn(move |req: Request<ClientBody>| {
            let this = this.clone();
            // Boxed: hyper keeps room for one request's future in every connection,
            // idle ones included, and this one is about 5 KiB.
            Box::pin(async move {
                // An HTTP/2 stream counts from its arrival to its body's end, for the
                // connection's idle and stalled-write timeouts (`conn_watch`).
                let stream = (req.version() == Version::HTTP_2).then(|| this.2.open_stream());
                let mut resp = this.0.serve(req, &this.1, &this.2).await;
                Ok::<_, Infallible>(match stream {
                    Some(s) => resp.map(|b| respond::tapped(b, s.answered())),
                    None => {
                        // Never on a 101: its connection is the tunnel's now.
                        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                        if this.2.is_stopping() && !switching {
                            resp.headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        resp
                    }
                })
            })
        })
    }

    async fn serve(
        &self,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        activity: &Arc<Activity>,
    ) -> Response<Body> {
        let started = Instant::now();
        let accept_encoding = req.headers().get(header::ACCEPT_ENCODING).cloned();
        let method = req.method().clone();
        let (mut resp, entry) = self.handle(req, conn, activity, started).await;
        if self.compression.should_compress(&resp) {
            resp = compression::compress(self.compression, resp, accept_encoding).await;
        }
        if respond::has_no_content(&method, resp.status()) {
            resp = without_content(resp, &method);
        }
        resp.headers_mut()
            .entry(header::SERVER)
            .or_insert(HeaderValue::from_static("ferricorn"));
        match (&self.access_log, entry) {
            // The line is written when the body ends: bytes sent, time to last byte.
            (Some(log), Some(entry)) => {
                let log = log.clone();
                resp.map(|body| respond::tapped(body, LogWhenSent::new(log, entry, started)))
            }
            _ => resp,
        }
    }

    async fn handle(
        &self,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        activity: &Arc<Activity>,
        started: Instant,
    ) -> (Response<Body>, Option<Entry>) {
        let _in_flight = self.metrics.request_started();
        // Judged once: whether the request asks for a WebSocket, and its handshake.
        let websocket = websocket::classify(&req);
        // After a WebSocket handshake's head come frames, not requests: unless it
        // opens the tunnel, its answer ends the connection.
        let ends_connection =
            is_http1_connect(&req) || (websocket.is_some() && req.version() != Version::HTTP_2);
        // The one answer to "who is the client" that REMOTE_ADDR, the scheme, the
        // access log and the rate limits all use.
        let resolved = self.real_ip.resolve(req.headers(), conn);
        let stamp = self.stamp(&req, conn, resolved.unwrap_or(Client::peer(conn)));
        let request_id = stamp.request_id.clone();
        let logged = self
            .access_log
            .as_ref()
            .map(|_| LoggedHead::of(&req, &stamp.client));
        let (kind, mut resp) = match resolved {
            Ok(_) => self.route(req, websocket, conn, &stamp, activity).await,
            Err(e) => {
                tracing::debug!(error = %e, "refused forwarding headers");
                let resp = respond::error_response(Failure::BadRequest);
                (RouteKind::Other, resp)
            }
        };
        if let Ok(v) = HeaderValue::from_maybe_shared(request_id.clone()) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let tunneled = resp.extensions().get::<upgrade::Tunneled>().is_some();
        if ends_connection && !tunneled {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let bytes = content_length(&resp);
        let elapsed = started.elapsed();
        tracing::debug!(
            status = resp.status().as_u16(),
            route = kind.label(),
            micros = elapsed.as_micros() as u64,
            request_id = %String::from_utf8_lossy(&request_id),
            "request"
        );
        self.metrics
            .request_finished(kind, resp.status().as_u16(), elapsed, bytes.unwrap_or(0));
        if let Some(waited) = resp.extensions().get::<Upstream>().and_then(|u| u.queue) {
            self.metrics.request_queued(waited);
        }
        // A tunnel's line is written at its close (`tunnel::Closing`).
        let entry = logged.filter(|_| !tunneled).map(|head| {
            let upstream = resp.extensions().get::<Upstream>().copied();
            let id = String::from_utf8_lossy(&request_id).into_owned();
            let mut entry = head.into_entry(resp.status(), id, upstream);
            entry.bytes = bytes;
            entry.duration = elapsed;
            entry
        });
        (resp, entry)
    }

    /// The request's id and start time: a trusted proxy's `X-Request-Id` and
    /// `X-Request-Start` (so they follow the request through the whole chain), else
    /// our own. An untrusted client can choose neither. With `client`, the one
    /// answer to who sent it.
    fn stamp(&self, req: &Request<ClientBody>, conn: &ConnInfo, client: Client) -> Stamp {
        let trusted = self.real_ip.trusts(conn);
        let passed = |name: &str| {
            if !trusted {
                return None;
            }
            let value = req.headers().get(name)?.as_bytes();
            is_plausible_passed_value(value).then(|| Bytes::copy_from_slice(value))
        };
        Stamp {
            request_id: passed("x-request-id").unwrap_or_else(|| self.request_ids.make()),
            request_start: match passed("x-request-start") {
                Some(v) => RequestStart::Passed(v),
                None => RequestStart::Received(SystemTime::now()),
            },
            client,
        }
    }

    /// Chooses the request's answer: a `[[route]]`'s rate limit, then a static mount
    /// or the app, all decided on one normal form of its path (`normal_path`).
    async fn route(
        &self,
        mut req: Request<ClientBody>,
        websocket: Option<Result<websocket::Handshake, websocket::Malformed>>,
        conn: &ConnInfo,
        stamp: &Stamp,
        activity: &Arc<Activity>,
    ) -> (RouteKind, Response<Body>) {
        // HTTP/1 heads were checked by the guard before hyper parsed them.
        if req.version() == Version::HTTP_2 {
            if let Err(refused) = guard::http2::check(&req, &self.head_limits) {
                tracing::debug!(error = %refused, "refused an HTTP/2 request");
                return (RouteKind::Other, respond::error_response(refused.into()));
            }
        }
        // A WebSocket handshake: malformed ones refused before Python; a good one
        // meets the same `[[route]]`s and router as any request, then is opened.
        let websocket = match websocket {
            Some(Err(why)) => {
                tracing::debug!(%why, "WebSocket handshake refused");
                return self.refuse_upgrade(UpgradeRefusal::Handshake, why.response());
            }
            Some(Ok(hs)) => Some(hs),
            None => None,
        };
        let path = match request_path(&req) {
            Ok(path) => path,
            Err(why) => {
                tracing::debug!(path = req.uri().path(), %why, "request path refused");
                return (RouteKind::Other, respond::error_response(why.into()));
            }
        };
        if !self.limits.is_empty() {
            // `*` and CONNECT's authority name no path: only a `[[route]]` for the
            // whole server (`prefix = "/"`) holds them.
            let under = path
                .as_ref()
                .map_or_else(|| Cow::Owned(NormalPath::root()), Cow::Borrowed);
            match self.limits.check(&under, || client_ip(&stamp.client)) {
                Ok(Some(overrides)) => {
                    req.extensions_mut().insert(overrides);
                }
                Ok(None) => {}
                Err(wait) => return (RouteKind::Other, limits::too_many_requests(wait)),
            }
        }
        let Some(path) = path else {
            if websocket.is_some() {
                // A handshake names a resource: `*` or an authority is none.
                return self.refuse_upgrade(
                    UpgradeRefusal::Handshake,
                    respond::error_response(Failure::BadRequest),
                );
            }
            return self.to_app(req, conn, stamp).await; // no mount either
        };
        let route = router::route(&self.statics, self.proxy.is_some(), &path);
        if let Some(hs) = websocket {
            // Boxed (`open_websocket`): every request's future would hold room for it.
            return match route {
                Route::Static(id) if !self.falls_to_app(id, &path, &req).await => {
                    tracing::info!(path = %req.uri().path(), "WebSocket handshake to a static mount refused");
                    let resp = respond::error_response(Failure::BadRequest);
                    self.refuse_upgrade(UpgradeRefusal::Static, resp)
                }
                Route::NotFound => (RouteKind::Other, respond::error_response(Failure::NotFound)),
                Route::Static(_) | Route::App => {
                    Box::pin(self.open_websocket(req, hs, conn, stamp, activity)).await
                }
            };
        }
        match route {
            Route::Static(id) => {
                let (parts, body) = req.into_parts();
                let resp = self.statics.serve(id, &path, &parts).await;
                if resp.status() == StatusCode::NOT_FOUND
                    && self.proxy.is_some()
                    && self.statics.falls_through(id)
                {
                    return self
                        .to_app(Request::from_parts(parts, body), conn, stamp)
                        .await;
                }
                (RouteKind::Static, resp)
            }
            Route::App => self.to_app(req, conn, stamp).await,
            Route::NotFound => (RouteKind::Other, respond::error_response(Failure::NotFound)),
        }
    }

    /// The app's answer, or the file its `X-Accel-Redirect` names; 404 without an app.
    async fn to_app(
        &self,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        stamp: &Stamp,
    ) -> (RouteKind, Response<Body>) {
        match &self.proxy {
            Some(proxy) => {
                let resp = proxy.forward(req, conn, stamp).await;
                (RouteKind::App, accel::follow(&self.statics, resp).await)
            }
            None => (RouteKind::Other, respond::error_response(Failure::NotFound)),
        }
    }
}

/// The client's address for rate limits (unspecified over a Unix socket without a
/// trusted proxy's word).
fn client_ip(client: &Client) -> std::net::IpAddr {
    client
        .addr
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The normal form of the request's path, from the target as hyper parsed it: the
/// same for every form a client may send (origin-form, absolute-form, HTTP/2's
/// `:path`, a guard stand-in, whose URI carries the client's bytes re-escaped);
/// `None` for `*` and an authority (CONNECT), which name no path.
fn request_path<B>(req: &Request<B>) -> Result<Option<NormalPath>, PathError> {
    match req.uri().path() {
        "" | "*" => Ok(None),
        path => NormalPath::parse(path.as_bytes()).map(Some),
    }
}

/// A path with no normal form is the client's fault.
impl From<PathError> for Failure {
    fn from(_: PathError) -> Self {
        Failure::BadRequest
    }
}

/// A CONNECT over HTTP/1 is answered like any request (no tunnel) and ends its
/// connection: a client or intermediary that takes our 2xx for an open tunnel would
/// send bytes after it that must never be read as further requests.
fn is_http1_connect<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT && req.version() <= Version::HTTP_11
}

/// Short, printable, no spaces: safe to log and to pass on.
fn is_plausible_passed_value(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

/// The head GET would get, no content: our error pages, and a compressor's frame
/// around nothing, would otherwise go out as DATA over HTTP/2. A HEAD keeps the
/// length its body had, as hyper gives it over HTTP/1.
fn without_content(mut resp: Response<Body>, method: &Method) -> Response<Body> {
    use http_body::Body as _;
    let length = resp.body().size_hint().exact();
    if *method == Method::HEAD
        && !respond::has_no_content(&Method::GET, resp.status())
        && !resp.headers().contains_key(header::CONTENT_LENGTH)
    {
        if let Some(n) = length {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    resp.map(|_| respond::empty())
}

fn content_length(resp: &Response<Body>) -> Option<u64> {
    content_length_of(resp.headers())
}

/// The parts of a request the access log needs, taken before the request moves on.
struct LoggedHead {
    remote: String,
    method: String,
    path: String,
    query: String,
    protocol: &'static str,
    user_agent: String,
    referer: String,
}

impl LoggedHead {
    /// The access-log line of this request's answer (`status`, from `upstream`),
    /// its size and duration still to be set: when the answer is sent, or for a
    /// WebSocket at its close (`tunnel::Closing`).
    fn into_entry(self, status: StatusCode, request_id: String, up: Option<Upstream>) -> Entry {
        Entry {
            time: SystemTime::now(),
            remote: self.remote,
            method: self.method,
            path: self.path,
            query: self.query,
            protocol: self.protocol,
            status: status.as_u16(),
            bytes: None,
            bytes_in: None,
            duration: std::time::Duration::ZERO,
            user_agent: self.user_agent,
            referer: self.referer,
            request_id,
            worker_pid: up.map(|u| u.pid),
            upstream: up.map(|u| u.elapsed),
            queue: up.and_then(|u| u.queue),
        }
    }

    fn of(req: &Request<ClientBody>, client: &Client) -> Self {
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        LoggedHead {
            remote: client
                .addr
                .map_or_else(|| "unix".into(), |ip| ip.to_string()),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            protocol: match req.version() {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            user_agent: header(header::USER_AGENT),
            referer: header(header::REFERER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_ids_are_20_hex_digits_and_differ_per_request_and_per_thread() {
        let ids = Arc::new(RequestIds::new());
        let a = ids.make();
        let b = ids.make();
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(u8::is_ascii_hexdigit), "{a:?}");
        assert!(is_plausible_passed_value(&a));
        assert_ne!(a, b);
        // Another front thread counts from 0 too, under its own prefix.
        let (shards, threads) = crate::shards::Shards::start(2).unwrap();
        let _on_0 = shards.host_client();
        let on_1 = shards.host_client();
        assert_eq!(on_1.index(), 1);
        let ids_1 = ids.clone();
        let c = on_1
            .run(move |_| async move { ids_1.make() })
            .await
            .unwrap();
        assert_eq!(&c[12..], &a[12..], "both threads' first id");
        assert_ne!(c, a);
        threads.stop();
    }
}
