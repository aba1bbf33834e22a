//! The proxy stage: turns a parsed, validated client request into a wire request for
//! a worker, and the worker's frames back into a response.
//!
//! The front never forwards client bytes verbatim: it re-encodes the head, drops
//! hop-by-hop fields and field names with `_` (they would alias `-` names in the
//! WSGI environ), and passes connection facts (peer, scheme, server name/port,
//! request id) as frame fields that no client header can spoof.

pub(crate) mod accel_fields;
pub(crate) mod app_head;
pub mod forward_headers;
pub(crate) mod pathsend;
pub mod spool;
pub(crate) mod sticky;
pub mod target;
mod stamp;
pub(crate) mod upgrade;

use crate::config::Limits;
use crate::dispatcher::response_spool::Interruption;
use crate::dispatcher::{Dispatcher, WorkerConn};
use crate::net::ConnInfo;
use crate::respond::{self, BoxError, Failure};
use crate::wire::{self, Frame, RequestHead, ResponseHead, Scheme};
pub use accel_fields::AccelTarget;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
pub use stamp::{RequestStart, Stamp};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub struct Proxy {
    dispatcher: &'static Dispatcher,
    limits: Limits,
    body_budget: Arc<spool::BodyBudget>,
    spool: Arc<spool::SpoolCaps>,
    /// The worker `timeout`, which bounds the wait for a WebSocket app's head.
    upgrade_head_wait: std::time::Duration,
}

/// Which worker answered, how long it took to send its head, and how long the
/// request waited for a Python thread there (for the access log and metrics).
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub pid: u32,
    pub elapsed: std::time::Duration,
    pub queue: Option<std::time::Duration>,
}

impl Proxy {
    pub fn new(dispatcher: &'static Dispatcher, limits: Limits) -> Self {
        Proxy {
            dispatcher,
            body_budget: spool::BodyBudget::new(limits.body_memory),
            spool: spool::SpoolCaps::new(
                limits.body_spool_files,
                limits.body_spool_bytes,
                limits.body_spool_wait,
            ),
            limits,
            upgrade_head_wait: std::time::Duration::from_secs(crate::defaults::TIMEOUT_S),
        }
    }

    /// Bytes of request bodies held in memory now.
    pub fn body_memory(&self) -> u64 {
        self.body_budget.used()
    }

    /// Request bodies in temp files now, and the refusals so far.
    pub(crate) fn spool_use(&self) -> crate::observe::metrics::SpoolUse {
        self.spool.usage()
    }

    /// Requests waiting for a free worker.
    pub fn queued(&self) -> usize {
        self.dispatcher.counts().1
    }

    /// Forwards a request to a worker. `stamp` is what the app sees of the front:
    /// the request's id and when its head arrived.
    pub async fn forward<B>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
        stamp: &Stamp,
    ) -> Response<respond::Body>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        match self.try_forward(req, conn, stamp).await {
            Ok(resp) => resp,
            Err(failure) => respond::error_response(failure),
        }
    }

    /// The request's body, read (spooled past `body_buffer_size`). What is refused
    /// from the head alone is refused before the body is read: a refused request
    /// costs no upload.
    async fn admit<B>(
        &self,
        parts: &http::request::Parts,
        body: B,
        overrides: Overrides,
    ) -> Result<spool::Body, Failure>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let max_body_size = overrides.max_body_size.unwrap_or(self.limits.max_body_size);
        let declared = declared_length(&parts.headers);
        if declared.is_some_and(|n| n > max_body_size) {
            return Err(Failure::PayloadTooLarge);
        }
        let reading = spool::Reading {
            max: max_body_size,
            memory_limit: self.limits.body_buffer_size,
            pause_limit: self.limits.body_timeout,
            budget: &self.body_budget,
            spool: &self.spool,
            declared,
        };
        spool::read_body(body, reading).await
    }

    async fn try_forward<B>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
        stamp: &Stamp,
    ) -> Result<Response<respond::Body>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let overrides = Overrides::of(&parts);
        let mut body = self.admit(&parts, body, overrides).await?;
        let had_body = body.len > 0
            || parts.headers.contains_key(header::CONTENT_LENGTH)
            || parts.headers.contains_key(header::TRANSFER_ENCODING);
        // Only a body held in memory may be sent ahead of a worker's threads (see
        // `dispatcher`); a request taken back before it started is sent again, with
        // its head built again (rare, where a copy kept for it would cost every request).
        let ahead = body.in_memory();
        let mut again = false;
        // Ready to go: from here on the request waits for a worker's thread.
        let waiting_since = crate::claims::monotonic_ns();
        let sticky = sticky::Stickiness::of(overrides.sticky, &parts.headers);
        let prefer = sticky.prefer();
        loop {
            let head = request_head(&parts, conn, had_body.then_some(body.len), stamp);
            let lease = self.dispatcher.acquire(ahead, again, prefer).await?;
            let worker = lease.conn().clone();
            let sent_at = std::time::Instant::now();
            let (stream, mut rx) = worker.start_request(
                lease,
                head,
                self.limits.response_buffer_size,
                overrides.timeout,
            );
            // Armed before the body goes: a client gone mid-way ends the stream too.
            let mut guard = AbortOnDrop {
                worker: Some(worker.clone()),
                stream,
            };
            let mut chunks = body.chunks(wire::CHUNK).await?;
            while let Some(chunk) = chunks.next().await? {
                if !worker.send_body(stream, chunk).await {
                    break; // the stream ended (or was cancelled) without the rest
                }
            }
            worker.send(stream, Frame::RequestEnd);

            let first = rx.recv().await;
            if let Some(Frame::ResponseHead(head)) = first {
                let mut resp = build_response(*head)?;
                sticky.remember(resp.headers_mut(), worker.id(), stamp.client.scheme);
                let queue = worker
                    .started_at(stream)
                    .map(|at| std::time::Duration::from_nanos(at.saturating_sub(waiting_since)));
                resp.extensions_mut().insert(Upstream {
                    pid: worker.pid,
                    elapsed: sent_at.elapsed(),
                    queue,
                });
                // Orders to the front, on every answer: none reaches the client.
                let asked = accel_fields::take(resp.headers_mut());
                if let Some(target) = asked.target {
                    resp.extensions_mut().insert(InternalRedirect {
                        target,
                        method: parts.method.clone(),
                        headers: parts.headers.clone(),
                    });
                }
                if let Some(rate) = asked.limit_rate {
                    resp.extensions_mut().insert(LimitRate(rate));
                }
                let worker = guard.worker.take();
                if respond::has_no_content(&parts.method, resp.status()) {
                    return Ok(without_content(resp)); // `rx` goes: see there
                }
                let body = AppBody {
                    rx,
                    guard: AbortOnDrop { worker, stream },
                    done: false,
                    first: None,
                };
                return pathsend::body_or_file(resp, body).await;
            }
            guard.worker = None;
            match rx.interruption() {
                Some(Interruption::Revoked) => again = true,
                Some(Interruption::TimedOut) => return Err(Failure::WorkerTimeout),
                Some(Interruption::GaveUp) => return Err(Failure::SpoolFull),
                None => return Err(Failure::WorkerFailed),
            }
        }
    }
}

/// What a `[[route]]` changes for one request (`front::limits`), carried in the
/// request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub max_body_size: Option<u64>,
    /// The worker's silence limit; `Duration::ZERO`: none.
    pub timeout: Option<std::time::Duration>,
    /// The route is sticky: its cookie (`sticky`).
    pub(crate) sticky: Option<sticky::StickyCookie>,
}

impl Overrides {
    /// A `[[route]]`'s settings, carried in the request's extensions.
    pub(crate) fn of(parts: &http::request::Parts) -> Self {
        parts.extensions.get::<Self>().copied().unwrap_or_default()
    }
}

/// The app answered with `X-Accel-Redirect` or `X-Sendfile` (the header names a
/// file the front serves instead of the app's body, `front::accel`): what that
/// needs of the client's request, kept only then.
#[derive(Debug, Clone)]
pub struct InternalRedirect {
    pub target: AccelTarget,
    pub method: http::Method,
    /// Range, the conditionals and Accept-Encoding apply to the file.
    pub headers: HeaderMap,
}

/// The app's `X-Accel-Limit-Rate`: its answer (or the file it names) goes out at
/// most this many bytes a second (`front::accel`).
#[derive(Debug, Clone, Copy)]
pub struct LimitRate(pub std::num::NonZeroU64);

/// The wire head of a request: re-encoded fields, connection facts as frame fields.
/// `pub` for benches/micro only.
#[doc(hidden)]
pub fn request_head(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    body_len: Option<u64>,
    stamp: &Stamp,
) -> RequestHead {
    let client = &stamp.client;
    let target_authority = target_authority(&parts.uri);
    let host_field = parts.headers.get(header::HOST).map(|h| h.as_bytes());
    let host = target_authority.as_deref().or(host_field);
    let (server_name, server_port) = server_name_port(host, conn, client.scheme);
    let mut headers = forwardable_headers(&parts.headers);
    if target_authority.is_some() {
        headers.retain(|(name, _)| name.as_ref() != b"host");
    }
    if target_authority.is_some() || host_field.is_none() {
        if let Some(h) = host {
            headers.push((Bytes::from_static(b"host"), Bytes::copy_from_slice(h)));
        }
    }
    if let Some(len) = body_len {
        headers.push((
            Bytes::from_static(b"content-length"),
            Bytes::from(len.to_string()),
        ));
    }
    // The app sees the front's request id (HTTP_X_REQUEST_ID) and start time
    // (HTTP_X_REQUEST_START), never a client's.
    headers.push((
        Bytes::from_static(b"x-request-id"),
        stamp.request_id.clone(),
    ));
    headers.push((
        Bytes::from_static(b"x-request-start"),
        stamp.request_start.value(),
    ));
    let (path, query) = target::path_and_query(parts);
    RequestHead {
        method: Bytes::copy_from_slice(parts.method.as_str().as_bytes()),
        path,
        query,
        version: match parts.version {
            Version::HTTP_10 | Version::HTTP_09 => 10,
            Version::HTTP_11 => 11,
            _ => 20,
        },
        scheme: client.scheme,
        remote_addr: client
            .addr
            .map(|ip| Bytes::from(ip.to_string()))
            .unwrap_or_default(),
        remote_port: client.port,
        server_name,
        server_port,
        request_id: stamp.request_id.clone(),
        content_length: body_len,
        headers,
        upgrade: false,
    }
}

/// The authority of an absolute-form target (HTTP/1) or of `:authority` (HTTP/2),
/// which RFC 9112 §3.2.2 and RFC 9113 §8.3.1 make win over a Host field, as nginx
/// does. The app then sees it as HTTP_HOST and SERVER_NAME. Not for CONNECT, whose
/// authority names the tunnel (no scheme).
fn target_authority(uri: &http::Uri) -> Option<Vec<u8>> {
    uri.scheme()?;
    let a = uri.authority()?;
    Some(match a.port() {
        Some(port) => format!("{}:{}", a.host(), port.as_str()).into_bytes(),
        None => a.host().as_bytes().to_vec(),
    })
}

/// The Content-Length a client declared, if it is a plain number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "content-length",
];

/// Client fields that reach the app: not hop-by-hop (nor named in Connection), no `_`
/// in the name, several Cookie fields as one. Content-Length is re-derived from the
/// body actually read.
fn forwardable_headers(headers: &HeaderMap) -> Vec<(Bytes, Bytes)> {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let cookie = joined_cookie(headers);
    let mut out: Vec<(Bytes, Bytes)> = headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !n.contains('_')
                && !HOP_BY_HOP.contains(&n)
                // Replaced by the front's own (a trusted proxy's were adopted already).
                && n != "x-request-id"
                && n != "x-request-start"
                && !named_by_connection.iter().any(|c| c == n)
                && (*name != header::COOKIE || cookie.is_none())
        })
        .map(|(name, value)| {
            (
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect();
    if let Some(rest) = codings_before_chunked(headers) {
        out.push((Bytes::from_static(b"transfer-encoding"), Bytes::from(rest)));
    }
    if let Some(cookie) = cookie {
        out.push((Bytes::from_static(b"cookie"), cookie));
    }
    out
}

/// Several Cookie fields (HTTP/2 clients split the cookie into crumbs, RFC 9113
/// §8.2.3; an HTTP/1 client may send several lines) joined with `"; "`, as the one
/// HTTP_COOKIE that Django and Werkzeug parse: joined as other repeated fields are
/// (with `,`), the crumbs would read as one cookie's value. `None` for one field or
/// none, which pass as they are.
fn joined_cookie(headers: &HeaderMap) -> Option<Bytes> {
    let mut crumbs = headers.get_all(header::COOKIE).iter();
    let first = crumbs.next()?;
    let mut rest = crumbs.peekable();
    rest.peek()?;
    let mut joined = first.as_bytes().to_vec();
    for crumb in rest {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(crumb.as_bytes());
    }
    Some(Bytes::from(joined))
}

/// The front removes the chunked framing (it read the whole body); codings applied
/// before it (`gzip, chunked`) still describe the body, so the app must see them.
fn codings_before_chunked(headers: &HeaderMap) -> Option<String> {
    let all: Vec<&str> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    match all.split_last() {
        Some((last, rest)) if last.eq_ignore_ascii_case("chunked") && !rest.is_empty() => {
            Some(rest.join(", "))
        }
        _ => None,
    }
}

/// SERVER_NAME / SERVER_PORT from the Host field, else the local address. A Host
/// without a port means the default port of the request's scheme (`scheme`: the
/// client's, as a trusted proxy says it, the one `wsgi.url_scheme` has).
fn server_name_port(host: Option<&[u8]>, conn: &ConnInfo, scheme: Scheme) -> (Bytes, u16) {
    let default_port = conn.local.map(|a| a.port()).unwrap_or(match conn.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    if let Some(host) = host
        .and_then(|h| std::str::from_utf8(h).ok())
        .filter(|h| !h.is_empty())
    {
        let (name, port) = split_host_port(host);
        let port = port.and_then(|p| p.parse().ok()).unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        return (Bytes::copy_from_slice(name.as_bytes()), port);
    }
    let name = conn
        .local
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "localhost".into());
    (Bytes::from(name), default_port)
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// The worker's head as an HTTP response; a field hyper would refuse is the worker's
/// fault (502), never passed through. `pub` for benches/micro only.
#[doc(hidden)]
pub fn build_response(head: ResponseHead) -> Result<Response<()>, Failure> {
    let status = StatusCode::from_u16(head.status).map_err(|_| Failure::WorkerFailed)?;
    if status.is_informational() {
        // Not a final answer: the client would wait for another one.
        return Err(bad_field("status (1xx)"));
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.reserve(head.headers.len());
    for (name, value) in head.headers {
        let name = HeaderName::from_bytes(&name).map_err(|_| bad_field("name"))?;
        let value =
            HeaderValue::from_maybe_shared(without_ows(value)).map_err(|_| bad_field("value"))?;
        headers.append(name, value);
    }
    Ok(resp)
}

/// A field value as an HTTP/1 reader takes it, without the whitespace around it:
/// HTTP/2 forbids that whitespace (RFC 9113 §8.2.1: a strict client treats the
/// response as malformed), yet Django's Set-Cookie values start with a space.
fn without_ows(value: Bytes) -> Bytes {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    if !value.first().is_some_and(is_ows) && !value.last().is_some_and(is_ows) {
        return value;
    }
    let start = value.iter().take_while(|b| is_ows(b)).count();
    let end = value.len()
        - value[start..]
            .iter()
            .rev()
            .take_while(|b| is_ows(b))
            .count();
    value.slice(start..end)
}

/// An answer without content (`respond::has_no_content`). The app's body is dropped
/// as it comes (its receiver gone), not cut: the worker finishes the request and
/// frees its slot as usual. RFC 9110 §8.6: never a Content-Length on a 204.
fn without_content(mut resp: Response<()>) -> Response<respond::Body> {
    if resp.status() == StatusCode::NO_CONTENT {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    resp.map(|()| respond::empty())
}

fn bad_field(what: &str) -> Failure {
    tracing::error!("worker sent an invalid response header {what}");
    Failure::WorkerFailed
}

/// Tells the worker to stop when the response is dropped before its end (the client
/// went away), so the app's `close()` runs and the slot frees up.
struct AbortOnDrop {
    worker: Option<Arc<WorkerConn>>,
    stream: u32,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            w.abort(self.stream);
        }
    }
}

/// The response body, fed by the worker connection's reader as fast as the worker
/// writes: the channel buffers, so a slow client never holds a worker.
struct AppBody {
    rx: crate::dispatcher::response_spool::Receiver,
    guard: AbortOnDrop,
    done: bool,
    /// A frame already taken from `rx` (`pathsend` looked at it).
    first: Option<Frame>,
}

#[derive(Debug, thiserror::Error)]
#[error("the worker cut the response: {0}")]
struct Cut(String);

impl http_body::Body for AppBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            let frame = match self.first.take() {
                Some(f) => Some(f),
                None => match self.rx.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(f) => f,
                },
            };
            let end = |this: &mut Self| {
                this.done = true;
                this.guard.worker = None;
            };
            return Poll::Ready(match frame {
                Some(Frame::ResponseBody(b)) if b.is_empty() => continue,
                Some(Frame::ResponseBody(b)) => {
                    if let Some(w) = &self.guard.worker {
                        w.response_taken(self.guard.stream); // ASGI: maybe Resume
                    }
                    Some(Ok(http_body::Frame::data(b)))
                }
                Some(Frame::ResponseEnd) => {
                    end(&mut self);
                    None
                }
                Some(Frame::Abort(why)) => {
                    end(&mut self);
                    Some(Err(Cut(String::from_utf8_lossy(&why).into_owned()).into()))
                }
                Some(_) | None => {
                    end(&mut self);
                    Some(Err(Cut("worker lost".into()).into()))
                }
            });
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_split() {
        assert_eq!(
            split_host_port("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_host_port("example.com"), ("example.com", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    }

    #[test]
    fn hop_by_hop_and_underscore_fields_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x_forwarded_for", "6.6.6.6".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        let names: Vec<_> = forwardable_headers(&h)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec![Bytes::from_static(b"accept")]);
    }

    #[test]
    fn response_values_lose_the_whitespace_around_them() {
        let head = ResponseHead {
            status: 200,
            headers: vec![
                (
                    Bytes::from_static(b"set-cookie"),
                    Bytes::from_static(b" a=1; Path=/"),
                ),
                (Bytes::from_static(b"x-a"), Bytes::from_static(b"\t b c \t")),
                (Bytes::from_static(b"x-b"), Bytes::from_static(b"  ")),
            ],
        };
        let resp = build_response(head).unwrap();
        assert_eq!(resp.headers()["set-cookie"], "a=1; Path=/");
        assert_eq!(resp.headers()["x-a"], "b c");
        assert_eq!(resp.headers()["x-b"], "");
    }

    #[test]
    fn an_informational_status_is_no_answer() {
        for status in [100, 103, 199] {
            let head = ResponseHead {
                status,
                headers: Vec::new(),
            };
            assert_eq!(build_response(head).err(), Some(Failure::WorkerFailed));
        }
    }

    #[test]
    fn cookie_crumbs_are_joined_into_one_field() {
        let mut h = HeaderMap::new();
        h.append("cookie", "sessionid=abc".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        h.append("cookie", "csrftoken=xyz".parse().unwrap());
        let fields = forwardable_headers(&h);
        let cookies: Vec<_> = fields.iter().filter(|(n, _)| n == "cookie").collect();
        assert_eq!(cookies.len(), 1, "{fields:?}");
        assert_eq!(cookies[0].1, "sessionid=abc; csrftoken=xyz");
        // One field passes as it is.
        h.remove("cookie");
        h.insert("cookie", "a=1, b".parse().unwrap());
        assert_eq!(forwardable_headers(&h)[1].1, "a=1, b");
    }
}
