//! Forwarding a WebSocket handshake: the request goes to a worker with one end of a
//! socketpair (`environ["gunicorn.socket"]`), the master keeps the other, and
//! whoever answers first decides what the client gets:
//!
//! - the app writes into the socket (it took it, as under gunicorn): its HTTP/1.1
//!   head is read there (`app_head`); a valid `101` opens the tunnel (the caller
//!   relays), another status is an ordinary answer whose body is the rest of the
//!   socket. Its WSGI answer on the wire is read and dropped. The worker's
//!   `timeout` stops applying to the request once the tunnel is open (not before:
//!   a half-written head that hangs is timed out like any request).
//! - a `ResponseHead` on the wire with nothing in the socket: an ordinary answer
//!   (an app that refuses the handshake with a WSGI response).
//!
//! The request is never sent ahead of a free thread (`acquire(false, ..)`): a
//! request carrying a socket is never taken back and sent again.

use super::app_head::{self, AppHead};
use super::sticky::Stickiness;
use super::{
    build_response, request_head, AbortOnDrop, AppBody, Overrides, Proxy, Stamp, Upstream,
};
use crate::dispatcher::response_spool::{Interruption, Receiver};
use crate::dispatcher::WorkerConn;
use crate::net::ConnInfo;
use crate::respond::{self, Failure};
use crate::tunnel::handshake::Handshake;
use crate::wire::{Frame, RequestHead};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{Response, Version};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// What became of a forwarded handshake.
pub(crate) enum Upgraded {
    /// The app took the socket and answered `101`: the client's answer (`101`, or
    /// `200` over HTTP/2), the master's end and the bytes the app wrote after its head.
    Tunnel {
        resp: Response<()>,
        app: UnixStream,
        first: Bytes,
        /// Cancelled when the worker's tunnels are to close (`WorkerConn::close_tunnels`).
        worker_gone: tokio_util::sync::CancellationToken,
    },
    /// Any other answer, ready for the client.
    Answer(Response<respond::Body>),
}

/// A handshake sent to a worker with its socket.
struct Sent {
    /// The master's end of the socketpair.
    mine: UnixStream,
    worker: Arc<WorkerConn>,
    stream: u32,
    rx: Receiver,
    guard: AbortOnDrop,
    sent_at: Instant,
    /// The route's stickiness, for the answer's cookie.
    sticky: Stickiness,
}

/// Who answered first (see the module doc).
enum Taken {
    /// The app wrote into its socket: these bytes so far.
    Socket(BytesMut),
    /// The wire answer, with nothing in the socket.
    Wire(Option<Frame>),
}

impl Proxy {
    /// The worker `timeout` (`None`: off), which bounds the wait for an app's head
    /// on its socket.
    pub fn with_worker_timeout(mut self, timeout: Option<Duration>) -> Self {
        if let Some(t) = timeout {
            self.upgrade_head_wait = t;
        }
        self
    }

    /// Leases a free thread (never ahead: see the module doc), then makes the
    /// socketpair and sends the handshake with one end to it.
    async fn send_upgrade(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        stamp: &Stamp,
        hs: &Handshake,
        overrides: Overrides,
        again: bool,
    ) -> Result<Sent, Failure> {
        let head = handshake_head(parts, conn, stamp, hs);
        // A sticky route's cookie pins the upgrade to its session's worker too.
        let sticky = Stickiness::of(overrides.sticky, &parts.headers);
        let lease = self
            .dispatcher
            .acquire(false, again, sticky.prefer())
            .await?;
        // Only now, with a thread leased: a handshake waiting in the queue holds no
        // descriptor (HTTP/2 puts many on one connection, outside the fd plan).
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().map_err(internal)?;
        mine.set_nonblocking(true).map_err(internal)?;
        let mine = UnixStream::from_std(mine).map_err(internal)?;
        let worker = lease.conn().clone();
        let sent_at = Instant::now();
        let (stream, rx) = worker.start_upgrade(
            lease,
            head,
            theirs.into(),
            self.limits.response_buffer_size,
            overrides.timeout,
        );
        let guard = AbortOnDrop {
            worker: Some(worker.clone()),
            stream,
        };
        worker.send(stream, Frame::RequestEnd);
        Ok(Sent {
            mine,
            worker,
            stream,
            rx,
            guard,
            sent_at,
            sticky,
        })
    }

    /// Forwards the handshake `hs` to a worker (see the module doc). Over HTTP/2 an
    /// answer that opens no tunnel is never a 2xx (`no_tunnel_is_no_success`).
    pub(crate) async fn forward_upgrade(
        &self,
        parts: http::request::Parts,
        conn: &ConnInfo,
        stamp: &Stamp,
        hs: &Handshake,
    ) -> Result<Upgraded, Failure> {
        let upgraded = self.forward_handshake(parts, conn, stamp, hs).await?;
        no_tunnel_is_no_success(upgraded, hs)
    }

    /// Sends the handshake and waits for who takes it; one taken back before it
    /// started (its worker went) is sent again, with a new pair.
    async fn send_until_started(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        stamp: &Stamp,
        hs: &Handshake,
        overrides: Overrides,
    ) -> Result<(Sent, Taken), Failure> {
        let mut again = false;
        loop {
            let mut sent = self
                .send_upgrade(parts, conn, stamp, hs, overrides, again)
                .await?;
            let taken = who_took_it(&mut sent.mine, &mut sent.rx).await;
            if matches!(taken, Taken::Wire(None))
                && sent.rx.interruption() == Some(Interruption::Revoked)
            {
                sent.guard.worker = None;
                again = true;
                continue;
            }
            return Ok((sent, taken));
        }
    }

    async fn forward_handshake(
        &self,
        parts: http::request::Parts,
        conn: &ConnInfo,
        stamp: &Stamp,
        hs: &Handshake,
    ) -> Result<Upgraded, Failure> {
        let overrides = Overrides::of(&parts);
        let waiting_since = crate::claims::monotonic_ns();
        let (sent, taken) = self
            .send_until_started(&parts, conn, stamp, hs, overrides)
            .await?;
        let Sent {
            mut mine,
            worker,
            stream,
            rx,
            mut guard,
            sent_at,
            sticky,
        } = sent;
        let cookie = |headers: &mut http::HeaderMap| {
            sticky.remember(headers, worker.id(), stamp.client.scheme);
        };
        let upstream = |worker: &WorkerConn| Upstream {
            pid: worker.pid,
            elapsed: sent_at.elapsed(),
            queue: worker
                .started_at(stream)
                .map(|at| Duration::from_nanos(at.saturating_sub(waiting_since))),
        };
        match taken {
            Taken::Wire(Some(Frame::ResponseHead(head))) => {
                let mut resp = build_response(*head)?;
                resp.extensions_mut().insert(upstream(&worker));
                cookie(resp.headers_mut());
                // Orders to the front never reach a client; none applies to a handshake.
                let _ = super::accel_fields::take(resp.headers_mut());
                let worker = guard.worker.take();
                let body = AppBody {
                    rx,
                    guard: AbortOnDrop { worker, stream },
                    done: false,
                    first: None,
                };
                Ok(Upgraded::Answer(resp.map(|()| respond::Body::new(body))))
            }
            Taken::Wire(_) => {
                guard.worker = None;
                Err(match rx.interruption() {
                    Some(Interruption::TimedOut) => Failure::WorkerTimeout,
                    Some(Interruption::GaveUp) => Failure::SpoolFull,
                    _ => Failure::WorkerFailed,
                })
            }
            Taken::Socket(bytes) => {
                // The app answers on its socket now; its WSGI answer is dropped. The
                // worker `timeout` still holds until a tunnel opens: an app that
                // writes part of a head (or a plain answer) and hangs is timed out
                // and its worker replaced, as for any request.
                guard.worker = None;
                tokio::spawn(discard(rx));
                // A route's zero timeout means none: the worker's bounds the head then.
                let route = overrides.timeout.filter(|t| !t.is_zero());
                let limit = route.unwrap_or(self.upgrade_head_wait);
                let head = read_app_head(&mut mine, bytes, limit).await?;
                let mut upgraded = answer(head, mine, hs, worker.tunnels_closed())?;
                match &mut upgraded {
                    Upgraded::Tunnel { resp, .. } => {
                        worker.exempt_from_timeout(stream);
                        cookie(resp.headers_mut());
                        resp.extensions_mut().insert(upstream(&worker));
                    }
                    Upgraded::Answer(resp) => {
                        cookie(resp.headers_mut());
                        resp.extensions_mut().insert(upstream(&worker));
                    }
                };
                Ok(upgraded)
            }
        }
    }
}

/// RFC 8441 §5: a 2xx to an extended CONNECT means the WebSocket is open, and hyper
/// makes the stream a tunnel (the body dropped). An app's 2xx that is no `101` (a
/// WSGI answer, or a head on its socket) is therefore a 502 over HTTP/2; an HTTP/1
/// client gets the app's answer as it is (its connection then closes).
fn no_tunnel_is_no_success(upgraded: Upgraded, hs: &Handshake) -> Result<Upgraded, Failure> {
    match &upgraded {
        Upgraded::Answer(resp) if hs.h2 && resp.status().is_success() => {
            tracing::error!(
                status = resp.status().as_u16(),
                "the app answered an HTTP/2 WebSocket handshake with a 2xx that is no 101: 502 (a 2xx would open the tunnel for the client)"
            );
            Err(Failure::WorkerFailed)
        }
        _ => Ok(upgraded),
    }
}

/// The request head the app sees: the HTTP/1.1 handshake the client's request stands
/// for (an HTTP/2 extended CONNECT becomes a `GET` with the key the front made),
/// with `Connection: Upgrade` and `Upgrade: websocket`, which other requests never
/// carry to the app. Its version stays the client's (`HTTP/2` for RFC 8441): an
/// ASGI scope's `http_version` says it.
fn handshake_head(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    stamp: &Stamp,
    hs: &Handshake,
) -> RequestHead {
    let mut head = request_head(parts, conn, None, stamp);
    head.method = Bytes::from_static(b"GET");
    head.version = match parts.version {
        Version::HTTP_2 => 20,
        _ => 11,
    };
    if parts.version == Version::HTTP_2 {
        // `request_head` took a CONNECT's path as gunicorn would; an extended
        // CONNECT has a real `:path`.
        head.path = Bytes::copy_from_slice(parts.uri.path().as_bytes());
        head.query = Bytes::copy_from_slice(parts.uri.query().unwrap_or("").as_bytes());
    }
    head.headers
        .retain(|(name, _)| name.as_ref() != b"sec-websocket-key");
    head.headers.extend([
        (
            Bytes::from_static(b"connection"),
            Bytes::from_static(b"Upgrade"),
        ),
        (
            Bytes::from_static(b"upgrade"),
            Bytes::from_static(b"websocket"),
        ),
        (
            Bytes::from_static(b"sec-websocket-key"),
            Bytes::from(hs.key.clone()),
        ),
    ]);
    head.upgrade = true;
    head
}

/// Waits for the first of: bytes in the socket, or the wire answer. On the wire
/// answer the socket is looked at once more: the app's socket writes come before it
/// returns, so they are queued by then.
async fn who_took_it(mine: &mut UnixStream, rx: &mut Receiver) -> Taken {
    let mut buf = BytesMut::new();
    let mut socket_open = true;
    loop {
        tokio::select! {
            biased;
            ready = mine.readable(), if socket_open => {
                if ready.is_err() {
                    socket_open = false;
                    continue;
                }
                match peek(mine, &mut buf) {
                    Some(true) => return Taken::Socket(buf),
                    Some(false) => socket_open = false, // closed unused: the wire answers
                    None => {}
                }
            }
            frame = rx.recv() => {
                if socket_open && peek(mine, &mut buf) == Some(true) {
                    return Taken::Socket(buf);
                }
                return Taken::Wire(frame);
            }
        }
    }
}

/// Reads what is in the socket now: `Some(true)` bytes, `Some(false)` EOF (or an
/// error), `None` nothing yet.
fn peek(mine: &UnixStream, buf: &mut BytesMut) -> Option<bool> {
    buf.reserve(4096);
    match mine.try_read_buf(buf) {
        Ok(0) => Some(false),
        Ok(_) => Some(true),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(_) => Some(false),
    }
}

/// Reads the app's head (bounded by `app_head::MAX_HEAD` and `limit`).
async fn read_app_head(
    mine: &mut UnixStream,
    mut buf: BytesMut,
    limit: Duration,
) -> Result<(AppHead, BytesMut), Failure> {
    let read = async {
        loop {
            if let Some(head) = app_head::parse(&buf)? {
                let _ = buf.split_to(head.len);
                return Ok((head, buf));
            }
            buf.reserve(4096);
            if mine
                .read_buf(&mut buf)
                .await
                .map_err(|_| Failure::WorkerFailed)?
                == 0
            {
                tracing::error!("the app closed its socket before the end of its response head");
                return Err(Failure::WorkerFailed);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| Failure::WorkerTimeout)?
}

/// The client's answer for the app's head.
fn answer(
    (head, rest): (AppHead, BytesMut),
    mine: UnixStream,
    hs: &Handshake,
    worker_gone: tokio_util::sync::CancellationToken,
) -> Result<Upgraded, Failure> {
    if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
        let resp = app_head::tunnel_answer(&head, hs)?;
        return Ok(Upgraded::Tunnel {
            resp,
            app: mine,
            first: rest.freeze(),
            worker_gone,
        });
    }
    let (resp, length) = app_head::plain_answer(&head)?;
    let body = futures_util::stream::unfold(
        (Some(rest.freeze()), mine, length),
        |(first, mut mine, left)| async move {
            if left == Some(0) {
                return None;
            }
            let mut chunk = match first.filter(|b| !b.is_empty()) {
                Some(b) => b,
                None => {
                    let mut buf = BytesMut::with_capacity(16 * 1024);
                    match mine.read_buf(&mut buf).await {
                        Ok(0) => return None,
                        Ok(_) => buf.freeze(),
                        Err(e) => return Some((Err(e), (None, mine, Some(0)))),
                    }
                }
            };
            // Up to the length the app gave, then the end.
            if let Some(left) = left {
                chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
            }
            let left = left.map(|l| l - chunk.len() as u64);
            Some((Ok(chunk), (None, mine, left)))
        },
    );
    let body = http_body_util::StreamBody::new(body.map(|c| {
        c.map(http_body::Frame::data)
            .map_err(respond::BoxError::from)
    }));
    Ok(Upgraded::Answer(resp.map(|()| respond::Body::new(body))))
}

/// Reads and drops the worker's frames for a request whose app answered on its
/// socket, to the end of the stream (which frees the worker's thread).
async fn discard(mut rx: Receiver) {
    while let Some(frame) = rx.recv().await {
        if matches!(frame, Frame::ResponseEnd | Frame::Abort(_)) {
            break;
        }
    }
}

fn internal(e: std::io::Error) -> Failure {
    tracing::error!(error = %e, "cannot make a socketpair for a WebSocket");
    Failure::Internal
}
