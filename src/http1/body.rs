//! The request body of an HTTP/1 request ([`RequestBody`]), fed by its connection
//! ([`BodyFeed`]) with the bytes the guard validated (Content-Length bytes, or chunk
//! data; trailers were checked by the guard and are dropped, as before).
//!
//! Back-pressure: the connection reads from the client for a body only when the body
//! was polled and has nothing to give (`BodyFeed::poll_wanted`), one read at a time,
//! as hyper does. `Expect: 100-continue` is answered then too: the connection writes
//! the interim response the first time the body is polled, so an app (or a limit)
//! that refuses the request before reading its body never invites it.
//!
//! [`ClientBody`] is the one request body type the front takes: this one for HTTP/1,
//! hyper's for HTTP/2.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why a request body ended before its framing said it would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("client closed the connection inside the request body")]
    Closed,
    #[error("malformed request body framing")]
    Refused,
    #[error("client connection failed inside the request body")]
    Failed,
}

/// Where the body's bytes stand, shared by the body and its connection.
#[derive(Debug, Default)]
struct Shared {
    /// Data the connection gave that the body has not returned yet.
    chunk: Option<Bytes>,
    ended: bool,
    error: Option<BodyError>,
    /// The body was polled with nothing to give: the connection should read.
    wanted: bool,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// An HTTP/1 request's body (see the module doc).
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: the request has no body.
    shared: Option<Arc<Mutex<Shared>>>,
    /// Content-Length bytes not yet returned (`None` for chunked).
    remaining: Option<u64>,
}

/// The connection's side of a [`RequestBody`].
#[derive(Debug)]
pub(crate) struct BodyFeed {
    shared: Arc<Mutex<Shared>>,
}

impl RequestBody {
    /// The body of a request without one.
    pub(crate) fn empty() -> RequestBody {
        RequestBody {
            shared: None,
            remaining: Some(0),
        }
    }

    /// A body of `length` bytes (`None`: chunked), and its feed.
    pub(crate) fn channel(length: Option<u64>) -> (RequestBody, BodyFeed) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let body = RequestBody {
            shared: Some(shared.clone()),
            remaining: length,
        };
        (body, BodyFeed { shared })
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut s = lock(shared);
        if let Some(chunk) = s.chunk.take() {
            drop(s);
            if let Some(r) = &mut self.remaining {
                *r = r.saturating_sub(chunk.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(e) = s.error {
            return Poll::Ready(Some(Err(e)));
        }
        if s.ended {
            drop(s);
            self.shared = None;
            return Poll::Ready(None);
        }
        s.wanted = true;
        s.body_waker = Some(cx.waker().clone());
        if let Some(w) = s.conn_waker.take() {
            w.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.shared.is_none() || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl BodyFeed {
    /// Ready when the body waits for data the connection has not given yet (the
    /// connection then reads); registers the connection's task to be woken otherwise.
    pub(crate) fn poll_wanted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.shared);
        if s.wanted && s.chunk.is_none() {
            return Poll::Ready(());
        }
        s.conn_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The front dropped the body: no one will read it.
    pub(crate) fn is_abandoned(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    fn settle(&self, f: impl FnOnce(&mut Shared)) {
        let mut s = lock(&self.shared);
        f(&mut s);
        s.wanted = false;
        if let Some(w) = s.body_waker.take() {
            w.wake();
        }
    }

    /// Gives the body its next bytes (only when it wanted them: one chunk at a time).
    pub(crate) fn push(&self, data: Bytes) {
        self.settle(|s| {
            debug_assert!(s.chunk.is_none());
            s.chunk = Some(data);
        });
    }

    pub(crate) fn end(&self) {
        self.settle(|s| s.ended = true);
    }

    pub(crate) fn fail(&self, e: BodyError) {
        self.settle(|s| s.error = Some(e));
    }
}

/// The request body the front takes, whichever protocol brought it.
#[derive(Debug)]
pub enum ClientBody {
    Http1(RequestBody),
    Http2(hyper::body::Incoming),
}

/// A request body's failure, whichever protocol brought it.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error(transparent)]
    Http1(#[from] BodyError),
    #[error(transparent)]
    Http2(#[from] hyper::Error),
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Http1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http1(b) => b.is_end_stream(),
            ClientBody::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http1(b) => b.size_hint(),
            ClientBody::Http2(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_connection_reads_only_for_a_body_that_waits() {
        let (mut body, feed) = RequestBody::channel(Some(5));
        assert_eq!(body.size_hint().exact(), Some(5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(feed.poll_wanted(&mut cx).is_pending(), "not polled yet");
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(feed.poll_wanted(&mut cx).is_ready());
        feed.push(Bytes::from_static(b"abc"));
        assert!(
            feed.poll_wanted(&mut cx).is_pending(),
            "one chunk at a time"
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert_eq!(body.size_hint().exact(), Some(2));
        feed.push(Bytes::from_static(b"de"));
        feed.end();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "de");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_a_dropped_one_abandoned() {
        let (body, feed) = RequestBody::channel(None);
        assert_eq!(body.size_hint().exact(), None);
        feed.fail(BodyError::Closed);
        let e = body.collect().await.unwrap_err();
        assert_eq!(e, BodyError::Closed);
        assert!(feed.is_abandoned());
        let empty = RequestBody::empty();
        assert!(http_body::Body::is_end_stream(&empty));
    }
}
