//! The one place that turns an error into a status: small, consistent bodies with no
//! internal detail. Who is to blame decides the status: the client (4xx), a worker
//! (502/503/504) or us (500).

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use std::pin::Pin;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the front sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// An answer that carries no content whatever its body holds (RFC 9110 §6.4.1): a
/// HEAD's, a 1xx, a 204 and a 304. hyper drops such a body over HTTP/1 only; over
/// HTTP/2 its DATA frames make the response malformed (RFC 9113 §8.1.1) and clients
/// reset the stream.
pub(crate) fn has_no_content(method: &Method, status: StatusCode) -> bool {
    method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// One poll of a response body, as a `Tap` sees it.
pub type Polled = Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>>;

/// Watches a response body go out (the access log's bytes and end, HTTP/2's
/// stalled streams); what happens when the body is dropped is the tap's own Drop.
pub trait Tap: Send + Unpin + 'static {
    fn polled(&mut self, polled: &Polled);
}

/// A response body with a `Tap` on it.
pub fn tapped(inner: Body, tap: impl Tap) -> Body {
    Body::new(Tapped { inner, tap })
}

struct Tapped<T> {
    inner: Body,
    tap: T,
}

impl<T: Tap> http_body::Body for Tapped<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.tap.polled(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Who is to blame for a request that did not get its answer, which decides the
/// status class: the client (4xx), a worker (502, 504), or the server itself
/// (503 when it is out of capacity, 500 for its own fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Worker,
    Server,
}

/// Why a request did not get the app's (or a file's) answer: every stage's own
/// error converts into this (`From`), and `status` is the one place it becomes a
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    /// A static mount answers GET and HEAD only.
    MethodNotAllowed,
    PayloadTooLarge,
    BadRequest,
    /// The client paused longer than the body timeout while sending its body.
    RequestTimeout,
    /// The request line was too long (the guard's refusal).
    UriTooLong,
    /// Too many or too large header fields (the guard's refusal).
    HeaderFieldsTooLarge,
    /// Not HTTP/1.0 or 1.1 (the guard's refusal).
    VersionNotSupported,
    /// The worker died or broke the protocol while serving this request.
    WorkerFailed,
    /// The worker stayed silent past `--timeout`.
    WorkerTimeout,
    /// The queue for a worker was full (`[workers] backlog`).
    QueueFull,
    /// Every worker stayed busy for `[workers] queue_timeout`.
    QueueTimeout,
    /// A request body found no room to spool in (`[limits] body_spool_files`,
    /// `body_spool_bytes`, or a full temp directory) within `body_spool_wait`; or a
    /// static file no slot to be held open in (`[limits] response_files`).
    SpoolFull,
    Internal,
}

impl Failure {
    pub fn blame(self) -> Blame {
        match self {
            Failure::NotFound
            | Failure::MethodNotAllowed
            | Failure::PayloadTooLarge
            | Failure::BadRequest
            | Failure::RequestTimeout
            | Failure::UriTooLong
            | Failure::HeaderFieldsTooLarge
            | Failure::VersionNotSupported => Blame::Client,
            Failure::WorkerFailed | Failure::WorkerTimeout => Blame::Worker,
            Failure::QueueFull | Failure::QueueTimeout | Failure::SpoolFull | Failure::Internal => {
                Blame::Server
            }
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Failure::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BadRequest => StatusCode::BAD_REQUEST,
            Failure::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Failure::UriTooLong => StatusCode::URI_TOO_LONG,
            Failure::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Failure::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Failure::WorkerFailed => StatusCode::BAD_GATEWAY,
            Failure::WorkerTimeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::QueueFull | Failure::QueueTimeout | Failure::SpoolFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A small plain-text error page: "404 Not Found\n".
pub fn error_response(failure: Failure) -> Response<Body> {
    status_page(failure.status())
}

/// The body of a status page: `404 Not Found` and a newline.
fn page_text(status: StatusCode) -> String {
    format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
}

/// A status page as a whole HTTP/1.1 response that ends the connection, for the
/// guard: it answers before hyper has a request to answer.
pub fn closing_page_bytes(status: StatusCode) -> Bytes {
    let text = page_text(status);
    Bytes::from(format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        text.len()
    ))
}

pub fn status_page(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(page_text(status)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Failure; 14] = [
        Failure::NotFound,
        Failure::MethodNotAllowed,
        Failure::PayloadTooLarge,
        Failure::BadRequest,
        Failure::RequestTimeout,
        Failure::UriTooLong,
        Failure::HeaderFieldsTooLarge,
        Failure::VersionNotSupported,
        Failure::WorkerFailed,
        Failure::WorkerTimeout,
        Failure::QueueFull,
        Failure::QueueTimeout,
        Failure::SpoolFull,
        Failure::Internal,
    ];

    /// The blame decides the class: the client's failures are 4xx (and 505), the
    /// rest 5xx.
    #[test]
    fn a_failure_s_status_follows_its_blame() {
        for f in ALL {
            let status = f.status();
            match f.blame() {
                // 505 is the one 5xx a client causes (RFC 9110 §15.6.6).
                Blame::Client => assert!(
                    status.is_client_error() || status == StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "{f:?}: {status}"
                ),
                Blame::Worker => assert!(
                    matches!(
                        status,
                        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                    ),
                    "{f:?}: {status}"
                ),
                Blame::Server => assert!(status.is_server_error(), "{f:?}: {status}"),
            }
        }
    }

    /// The guard's own page is the same page, as a whole HTTP/1.1 response.
    #[test]
    fn the_closing_page_is_the_status_page_with_its_length() {
        let bytes = closing_page_bytes(StatusCode::URI_TOO_LONG);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 17\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n414 URI Too Long\n"), "{text}");
    }

    #[test]
    fn head_1xx_204_and_304_have_no_content() {
        let none = |m: &Method, s: u16| has_no_content(m, StatusCode::from_u16(s).unwrap());
        for s in [103, 204, 304] {
            assert!(none(&Method::GET, s), "{s}");
        }
        for s in [200, 206, 301, 404, 500] {
            assert!(none(&Method::HEAD, s), "HEAD {s}");
            assert!(!none(&Method::GET, s), "GET {s}");
            assert!(!none(&Method::POST, s), "POST {s}");
        }
    }
}
