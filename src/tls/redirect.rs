//! The plain-HTTP bind that sends clients to HTTPS (`[tls] redirect_http`,
//! `--redirect-http ADDR`): nginx's `listen 80; return 301 https://$host$request_uri;`.
//! Every request gets a redirect to the same host (its port replaced by the TLS
//! port's, left out when 443) and the same target; nothing reaches the app. A GET or
//! HEAD gets 301, as nginx's `return 301`; any other method 308, which keeps the
//! method and body (a form POSTed to `http://` is not turned into a GET by the
//! browser and lost). The request passes the public port's guard (HTTP/1) or its
//! HTTP/2 rules (h2c prior knowledge), and a host that is not a plain name, IPv4 or
//! `[IPv6]` gets 400: the Location never names anything but the host the client
//! itself asked for.

use crate::conn_watch::Activity;
use crate::guard::{self, ConnTimeouts, GuardLimits};
use crate::http1::{self, body::ClientBody};
use crate::proxy_protocol::Prefixed;
use crate::respond::{self, Body};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How the redirect bind's connections are served.
#[derive(Clone)]
pub(crate) struct RedirectConns {
    /// The TLS port clients are sent to (the first TCP bind's).
    pub(crate) https_port: u16,
    /// The public port's guard limits and slow-client timeouts.
    pub(crate) guard: GuardLimits,
    pub(crate) timeouts: ConnTimeouts,
    /// The listeners' connection places (`max_connections`), shared: port 80's
    /// connections count against the same cap as the TLS port's, as nginx's
    /// `worker_connections`, so the open-file plan (`master::fd_limit`) holds; with a
    /// cap of their own they took the descriptors the TLS port needed (EMFILE). More
    /// wait in the backlog.
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
}

/// What a request on the redirect bind gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// 301 (GET, HEAD) or 308 (other methods) to `location`.
    To {
        status: StatusCode,
        location: String,
    },
    /// No usable host, or a target that is not a path (`*`, CONNECT's authority).
    BadRequest,
}

/// Decides the redirect for a request with `method`, `authority` (an absolute-form
/// target's or HTTP/2's `:authority`), `host` (the Host field) and `target` (path
/// and query).
pub(crate) fn decide(
    method: &Method,
    authority: Option<&str>,
    host: Option<&str>,
    target: &str,
    https_port: u16,
) -> Redirect {
    let name = match (authority, host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => return Redirect::BadRequest,
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Redirect::BadRequest,
    };
    let Some(name) = host_name(name) else {
        return Redirect::BadRequest;
    };
    if !target.starts_with('/') || *method == Method::CONNECT {
        return Redirect::BadRequest;
    }
    let port = match https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let status = match *method {
        Method::GET | Method::HEAD => StatusCode::MOVED_PERMANENTLY,
        _ => StatusCode::PERMANENT_REDIRECT,
    };
    Redirect::To {
        status,
        location: format!("https://{}{port}{target}", name.to_ascii_lowercase()),
    }
}

/// The host of `host[:port]`, when it is a DNS name (letters, digits, `-`, `.`),
/// IPv4 or a bracketed IPv6 address; stricter than the guard's Host grammar, which
/// lets escapes and sub-delims through that have no place in a redirect's URL.
fn host_name(value: &str) -> Option<&str> {
    let (host, port) = if let Some(inner) = value.strip_prefix('[') {
        let close = inner.find(']')?;
        let addr = &inner[..close];
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        (&value[..close + 2], &inner[close + 1..])
    } else {
        let end = value.find(':').unwrap_or(value.len());
        let name = &value[..end];
        let labels_ok = name
            .trim_end_matches('.')
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !labels_ok || name.len() > 253 {
            return None;
        }
        (name, &value[end..])
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => Some(host),
        Some(p) if p.parse::<u16>().is_ok() && p.bytes().all(|b| b.is_ascii_digit()) => Some(host),
        _ => None,
    }
}

/// nginx's page for a 301/308 (the body says nothing the Location does not).
fn page(status: StatusCode) -> String {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

fn answer<B>(req: &Request<B>, limits: &GuardLimits) -> Response<Body> {
    // The HTTP/1 guard has checked an HTTP/1 head; HTTP/2's get the same rules here.
    if req.version() == Version::HTTP_2 {
        if let Err(reject) = guard::http2::check(req, limits) {
            return respond::status_page(reject.status());
        }
    }
    let host = req.headers().get(header::HOST).map(|h| h.to_str());
    let host = match host {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return respond::status_page(StatusCode::BAD_REQUEST),
        None => None,
    };
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    let authority = req.uri().authority().map(|a| a.as_str());
    let https_port = req.extensions().get::<HttpsPort>().map_or(443, |p| p.0);
    match decide(req.method(), authority, host, target, https_port) {
        Redirect::To { status, location } => match HeaderValue::from_str(&location) {
            Ok(location) => {
                let body = if req.method() == Method::HEAD {
                    String::new()
                } else {
                    page(status)
                };
                let mut r = Response::new(respond::full(body));
                *r.status_mut() = status;
                let h = r.headers_mut();
                h.insert(header::LOCATION, location);
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                r
            }
            Err(_) => respond::status_page(StatusCode::BAD_REQUEST),
        },
        Redirect::BadRequest => respond::status_page(StatusCode::BAD_REQUEST),
    }
}

/// The TLS port, carried to `answer` in the request's extensions.
#[derive(Clone, Copy)]
struct HttpsPort(u16);

/// Accepts on the redirect bind until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, conns: RedirectConns, stop: CancellationToken) {
    let permits = conns.connections.clone();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin (as the
                    // listeners do; `listener` is above this module in the flow).
                    tracing::warn!(error = %e, "accept failed (redirect bind)");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conns = conns.clone();
        tokio::spawn(async move {
            serve_conn(stream, conns).await;
            drop(permit);
        });
    }
}

/// One connection: HTTP/1 served by our codec (the guard reads every byte, its
/// timeouts end an idle or slow connection), or HTTP/2 with prior knowledge, whose
/// connection lives at most the head timeout plus the keep-alive (a client that
/// follows a redirect needs one request).
async fn serve_conn(stream: TcpStream, conns: RedirectConns) {
    let limits = conns.guard;
    let port = HttpsPort(conns.https_port);
    let h1 = tower::service_fn(move |mut req: Request<ClientBody>| {
        req.extensions_mut().insert(port);
        let r = answer(&req, &limits);
        async move { Ok::<_, Infallible>(r) }
    });
    let activity = Activity::new(CancellationToken::new());
    let t = conns.timeouts;
    let ended = http1::conn::serve(stream, limits, t, h1, activity).await;
    let http1::conn::Ended::Http2(stream, read) = ended else {
        return;
    };
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(port);
        let r = answer(&req, &limits);
        async move { Ok::<_, Infallible>(r) }
    });
    let life = t.head + t.idle;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(16)
        .max_header_list_size(guard::http2::max_header_list_size(&limits));
    // The bytes read while telling the versions apart come first.
    let io = TokioIo::new(Prefixed::new(read, stream));
    let conn = builder.serve_connection(io, service);
    let _ = tokio::time::timeout(life.max(Duration::from_secs(1)), conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(status: u16, location: &str) -> Redirect {
        Redirect::To {
            status: StatusCode::from_u16(status).unwrap(),
            location: location.into(),
        }
    }

    #[test]
    fn get_and_head_get_301_to_the_same_host_and_target() {
        let get = decide(&Method::GET, None, Some("Example.com:80"), "/a/b?c=d", 443);
        assert_eq!(get, to(301, "https://example.com/a/b?c=d"));
        let head = decide(&Method::HEAD, None, Some("example.com"), "/", 8443);
        assert_eq!(head, to(301, "https://example.com:8443/"));
        let v6 = decide(&Method::GET, None, Some("[::1]:8080"), "/x", 8443);
        assert_eq!(v6, to(301, "https://[::1]:8443/x"));
        let v4 = decide(&Method::GET, None, Some("192.0.2.1"), "//x", 443);
        assert_eq!(v4, to(301, "https://192.0.2.1//x"));
    }

    #[test]
    fn other_methods_get_308_which_keeps_the_method() {
        let post = decide(&Method::POST, None, Some("example.com"), "/form", 443);
        assert_eq!(post, to(308, "https://example.com/form"));
    }

    #[test]
    fn a_host_that_is_no_plain_name_gets_400() {
        for host in [
            "",
            "evil.com@good",
            "a b",
            "a..b",
            ".a",
            "a/b",
            "a%2fb",
            "a;b",
            "a:b:c",
            "a:99999",
            "a:",
            "[::1",
            "[zz]",
            "a:80x",
            "a\\b",
            "good.com#",
        ] {
            let d = decide(&Method::GET, None, Some(host), "/", 443);
            assert_eq!(d, Redirect::BadRequest, "{host:?}");
        }
        assert_eq!(
            decide(&Method::GET, None, None, "/", 443),
            Redirect::BadRequest
        );
    }

    #[test]
    fn an_authority_that_is_not_the_host_gets_400() {
        let d = decide(&Method::GET, Some("evil.com"), Some("good.com"), "/", 443);
        assert_eq!(d, Redirect::BadRequest);
        let d = decide(&Method::GET, Some("good.com"), Some("GOOD.com"), "/", 443);
        assert_eq!(d, to(301, "https://good.com/"));
        let d = decide(&Method::GET, Some("good.com"), None, "/", 443);
        assert_eq!(d, to(301, "https://good.com/"));
    }

    #[test]
    fn a_target_that_is_no_path_gets_400() {
        for (m, t) in [
            (Method::OPTIONS, "*"),
            (Method::CONNECT, "/"),
            (Method::GET, ""),
        ] {
            assert_eq!(decide(&m, None, Some("a"), t, 443), Redirect::BadRequest);
        }
    }
}
