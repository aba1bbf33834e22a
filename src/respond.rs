//! The one place that turns an error into a status: small, consistent bodies with no
//! internal detail. Who is to blame decides the status: the client (4xx), a worker
//! (502/503/504) or us (500).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

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

/// Why a request did not get the app's (or a file's) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    PayloadTooLarge,
    BadRequest,
    /// The client paused longer than the body timeout while sending its body.
    RequestTimeout,
    /// The worker died or broke the protocol while serving this request.
    WorkerFailed,
    /// Every worker was busy for `queue_timeout`, or the wait queue was full.
    Overloaded,
    /// The worker stayed silent past `--timeout`.
    WorkerTimeout,
    Internal,
}

impl Failure {
    pub fn status(self) -> StatusCode {
        match self {
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BadRequest => StatusCode::BAD_REQUEST,
            Failure::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Failure::WorkerFailed => StatusCode::BAD_GATEWAY,
            Failure::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Failure::WorkerTimeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A small plain-text error page: "404 Not Found\n".
pub fn error_response(failure: Failure) -> Response<Body> {
    status_page(failure.status())
}

pub fn status_page(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut resp = Response::new(full(text));
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
