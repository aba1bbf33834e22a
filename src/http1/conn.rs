//! One HTTP/1 connection, served by our codec ([`serve`]): read (through the guard)
//! → head → `Request<ClientBody>` → the front's service → response head
//! (`encode`) and body → the next request, pipelined ones in order.
//!
//! It owns what hyper's connection did, and what the guard's I/O wrapper had to fake
//! around it:
//! - keep-alive (HTTP/1.1 unless `close`, HTTP/1.0 with `keep-alive`) and the close
//!   after a request whose body was not read to its end;
//! - the slow-client timeouts: idle between requests (silent close), the head (408),
//!   a stalled write (`io`); a body's read timeout is the front's;
//! - parking: idle for [`PARK_AFTER`], the connection gives back its buffers and
//!   only waits for the socket to be readable (counted in
//!   `ferricorn_connections_parked`), as nginx's keep-alive state does;
//! - the graceful stop: an idle connection closes (at once when parked, else after
//!   `DRAIN_GRACE` for a request on its way), a request in flight is finished with
//!   `Connection: close` (the front adds it);
//! - the guard's refusal response (400/408/413/414/431/505), written after the
//!   answers owed to the requests before it;
//! - the client-close watch: while an answer is owed and the request's body is read,
//!   it keeps reading (into the guard, at most `client_close::READ_AHEAD` bytes and
//!   [`WATCH_AHEAD_ITEMS`] heads or body pieces ahead), so a
//!   client's EOF or reset ends the request as nginx does, even behind pipelined bytes;
//!   once that is full (or after a WebSocket candidate's head) it asks the socket
//!   every `client_close::PEER_PROBE_EVERY` whether the peer ended ([`PeerEnded`]);
//! - the hand-over of the stream to the tunnel after a WebSocket's `101`.

use super::body::{BodyError, BodyFeed, ClientBody, RequestBody};
use super::encode::Answering;
use super::head::RequestHead;
use super::inbox::Input;
use super::io::ClientIo;
use crate::conn_watch::{Activity, DRAIN_GRACE};
use crate::guard::client_close::PeerEnded;
use crate::guard::client_close::{self, Found, Verdict, Watch};
use crate::guard::{self, ConnTimeouts, GuardLimits, Reject};
use crate::respond::BoxError;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// How long an HTTP/1 connection stays idle between requests before it is parked.
pub const PARK_AFTER: Duration = Duration::from_millis(500);

/// How many parsed items (heads, body pieces) the client-close watch reads ahead of
/// the request being answered, besides `client_close::READ_AHEAD` bytes: a head costs
/// its bytes and about 150 more (tiny pipelined heads would multiply the bytes' cost).
const WATCH_AHEAD_ITEMS: usize = 32;

/// A write buffer grown past this is given back when the connection parks.
const OUT_BUFFER: usize = 4 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Connections parked right now, in all threads (`ferricorn_connections_parked`).
static PARKED: AtomicU64 = AtomicU64::new(0);

/// How many HTTP/1 connections are parked now.
pub fn parked_connections() -> u64 {
    PARKED.load(Ordering::Relaxed)
}

/// How a connection served by [`serve`] ended.
pub(crate) enum Ended<T> {
    Closed,
    /// It is HTTP/2 with prior knowledge: the stream, and the bytes read from it.
    Http2(T, Bytes),
}

/// What the driver does after one exchange.
enum Next {
    KeepGoing,
    Close,
    /// The client left, or a write failed: close without a word.
    Abort,
    Tunnel(Box<crate::tunnel::AppSide>),
}

/// The service of the front, as the connection calls it.
pub(crate) trait Service<B>:
    tower::Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>
{
}

impl<S, B> Service<B> for S where
    S: tower::Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>
{
}

/// Serves an HTTP/1 connection to its end (see the module doc); a connection that
/// turns out to be HTTP/2 is given back with what was read.
pub(crate) async fn serve<T, S, B>(
    io: T,
    limits: GuardLimits,
    timeouts: ConnTimeouts,
    mut service: S,
    activity: Arc<Activity>,
) -> Ended<T>
where
    T: AsyncRead + AsyncWrite + PeerEnded + Unpin,
    S: Service<B>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut conn = Conn {
        io: ClientIo::new(io, limits, timeouts.write),
        timeouts,
        activity,
        out: Vec::new(),
        idle_since: Instant::now(),
        head_started: None,
        stop_at: None,
        parked: Parked::default(),
        held: false,
    };
    while let Some(head) = conn.next_head().await {
        // Boxed: an idle connection's task holds none of a request's state.
        match Box::pin(conn.serve_one(head, &mut service)).await {
            Next::KeepGoing => conn.idle_since = Instant::now(),
            Next::Close => break,
            Next::Abort => return Ended::Closed,
            Next::Tunnel(side) => {
                conn.tunnel(*side).await;
                return Ended::Closed;
            }
        }
    }
    conn.parked.set(false);
    if let Some(h2) = conn.io.inbox.take_h2() {
        return Ended::Http2(conn.io.io, h2.freeze());
    }
    conn.finish().await;
    Ended::Closed
}

struct Conn<T> {
    io: ClientIo<T>,
    timeouts: ConnTimeouts,
    activity: Arc<Activity>,
    /// The response head (and small chunks behind it), reused.
    out: Vec<u8>,
    /// When the connection last became idle (between requests).
    idle_since: Instant,
    /// When the first byte of the head being read came.
    head_started: Option<Instant>,
    /// Set once the drain's stop came: an idle connection closes then.
    stop_at: Option<Instant>,
    parked: Parked,
    /// A WebSocket candidate's head was read: nothing after it is HTTP.
    held: bool,
}

/// What the connection knows of the request body while its answer is owed.
struct Reading {
    feed: Option<BodyFeed>,
    /// `Expect: 100-continue`: bytes of the interim response written so far.
    expect: Option<usize>,
    /// The body ended as framed (nothing of it is left to read).
    complete: bool,
    /// Nothing more is fed (complete, failed, or dropped by the front).
    done: bool,
}

/// What ended a wait for input.
enum Woke {
    Read,
    Expired(Expiry),
    Stop,
}

/// What a read deadline does when it passes.
enum Expiry {
    Close,
    Reject,
    Park,
}

impl<T: AsyncRead + AsyncWrite + PeerEnded + Unpin> Conn<T> {
    /// The next request's head, reading for it as needed; `None` when the
    /// connection ends (EOF, refusal, timeout, stop, or HTTP/2).
    async fn next_head(&mut self) -> Option<RequestHead> {
        loop {
            match self.io.inbox.pop() {
                Some(Input::Head(h)) => {
                    self.head_started = None;
                    return Some(h);
                }
                // The rest of a body the front did not read, all received.
                Some(_) => continue,
                None => {}
            }
            if self.io.eof || self.io.refused.is_some() || self.io.inbox.is_h2() || self.held {
                return None;
            }
            if !self.wait_for_input().await {
                return None;
            }
        }
    }

    /// Waits for the next read (and makes it); false when the connection should end.
    async fn wait_for_input(&mut self) -> bool {
        let idle = self.io.guard.is_idle();
        let t = self.timeouts;
        let (deadline, expiry) = if !idle {
            let started = *self.head_started.get_or_insert_with(Instant::now);
            (started + t.head, Expiry::Reject)
        } else if !self.parked.0 && PARK_AFTER < t.idle {
            (self.idle_since + PARK_AFTER, Expiry::Park)
        } else {
            (self.idle_since + t.idle, Expiry::Close)
        };
        if idle
            && self
                .stop_at
                .is_some_and(|at| self.parked.0 || Instant::now() >= at)
        {
            return false;
        }
        let stop = self.activity.stop().clone();
        let stop_at = self.stop_at;
        let io = &mut self.io;
        let woke = tokio::select! {
            biased;
            _ = poll_fn(|cx| io.poll_read_once(cx)) => Woke::Read,
            () = tokio::time::sleep_until(deadline) => Woke::Expired(expiry),
            () = stop.cancelled(), if stop_at.is_none() => Woke::Stop,
            () = sleep_until_some(stop_at), if idle => return false,
        };
        match woke {
            Woke::Read => {
                self.parked.set(false);
                if !self.io.guard.is_idle() && self.head_started.is_none() {
                    self.head_started = Some(Instant::now());
                }
                true
            }
            Woke::Expired(Expiry::Close) => false,
            Woke::Expired(Expiry::Reject) => {
                tracing::debug!("slow request head");
                self.io.refused = Some(Reject::RequestTimeout);
                false
            }
            Woke::Expired(Expiry::Park) => {
                self.park();
                true
            }
            Woke::Stop => {
                self.stop_at = Some(Instant::now() + DRAIN_GRACE);
                true
            }
        }
    }

    fn park(&mut self) {
        self.io.guard.release_idle_buffers();
        if self.out.capacity() > OUT_BUFFER {
            self.out = Vec::new();
        }
        self.parked.set(true);
    }

    /// One exchange: the request to the service, its answer to the client.
    async fn serve_one<S, B>(&mut self, head: RequestHead, service: &mut S) -> Next
    where
        S: Service<B>,
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if head.is_upgrade() {
            self.held = true;
            self.activity.hold();
        }
        let (body, feed) = match head.framing() {
            guard::Framing::None => (RequestBody::empty(), None),
            guard::Framing::Length(n) => {
                let (b, f) = RequestBody::channel(Some(n));
                (b, Some(f))
            }
            guard::Framing::Chunked => {
                let (b, f) = RequestBody::channel(None);
                (b, Some(f))
            }
        };
        let mut reading = Reading {
            expect: (head.expect_continue() && feed.is_some()).then_some(0),
            complete: feed.is_none(),
            done: feed.is_none(),
            feed,
        };
        let keep_alive = head.keep_alive() && !head.is_upgrade();
        let req = match head.to_request(ClientBody::Http1(body)) {
            Ok(req) => req,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                self.io.refused = Some(Reject::BadRequest);
                return Next::Close;
            }
        };
        self.io.guard.recycle_fields(head.into_fields());
        let (method, version) = (req.method().clone(), req.version());
        let _ = poll_fn(|cx| service.poll_ready(cx)).await;
        let Some(resp) = self.answer(service.call(req), &mut reading).await else {
            return Next::Abort;
        };
        self.skip_unread_body(&mut reading);
        // A body the front still holds may yet be read while the answer is written.
        let held = reading.feed.as_ref().is_some_and(|f| !f.is_abandoned());
        let body_ok = reading.complete || held;
        let answering = Answering {
            method: &method,
            version,
            keep_alive: keep_alive && body_ok && !self.activity.is_stopping(),
        };
        match self.respond(resp, answering, &mut reading).await {
            Ok((status, _)) if status == StatusCode::SWITCHING_PROTOCOLS && self.held => {
                match self.activity.take_tunnel() {
                    Some(side) => Next::Tunnel(Box::new(side)),
                    None => Next::Close,
                }
            }
            Ok((_, encoded)) if encoded.last => Next::Close,
            Ok(_) => {
                self.skip_unread_body(&mut reading);
                match reading.complete {
                    true => Next::KeepGoing,
                    false => Next::Close,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "response not delivered");
                Next::Abort
            }
        }
    }

    /// A body the front did not read to its end: if all of it came already, it is
    /// skipped and the connection can carry the next request; else it will close.
    fn skip_unread_body(&mut self, reading: &mut Reading) {
        if reading.feed.as_ref().is_some_and(|f| !f.is_abandoned()) {
            return;
        }
        while !reading.complete {
            match self.io.inbox.pop() {
                Some(Input::Data(_)) => {}
                Some(Input::End) => reading.complete = true,
                Some(head @ Input::Head(_)) => {
                    self.io.inbox.unpop(head);
                    return;
                }
                None => return,
            }
        }
    }

    /// Waits for the service's answer while feeding the request body and watching
    /// the client; `None` when the client left.
    async fn answer<F, B>(&mut self, fut: F, reading: &mut Reading) -> Option<Response<B>>
    where
        F: std::future::Future<Output = Result<Response<B>, Infallible>>,
    {
        let mut fut = pin!(fut);
        let mut probe = None;
        poll_fn(|cx| {
            if let Poll::Ready(Ok(resp)) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            match self.poll_side(cx, reading, &mut probe) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// What the connection does while an answer is owed: feeds the body when it
    /// waits for data, else watches for the client's close (reading ahead, then
    /// probing the socket: `client_close`). `Ready`: the client left.
    fn poll_side(
        &mut self,
        cx: &mut Context<'_>,
        reading: &mut Reading,
        probe: &mut Option<Pin<Box<Sleep>>>,
    ) -> Poll<()> {
        loop {
            if !reading.done {
                match self.poll_feed(cx, reading) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(())) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let io = &mut self.io;
            let watch = Watch {
                answer_owed: true,
                input_ended: io.eof,
                read_ahead: io.inbox.held_bytes(),
            };
            if watch.probes_peer()
                || (!watch.input_ended && self.held)
                || (watch.reads() && io.inbox.len() >= WATCH_AHEAD_ITEMS)
            {
                return self.poll_probe(cx, probe);
            }
            if !watch.reads() {
                return Poll::Pending;
            }
            let found = match io.poll_read_once(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(true) if io.refused.is_some() => Found::Refused,
                Poll::Ready(true) => Found::Bytes,
                Poll::Ready(false) => Found::End,
            };
            if client_close::verdict(found) == Verdict::Gone {
                tracing::debug!("client left with a response pending");
                return Poll::Ready(());
            }
        }
    }

    /// The watch stopped reading with an answer owed: every `PEER_PROBE_EVERY` the
    /// socket says whether the peer ended behind the unread bytes. `Ready`: it did.
    fn poll_probe(
        &mut self,
        cx: &mut Context<'_>,
        probe: &mut Option<Pin<Box<Sleep>>>,
    ) -> Poll<()> {
        let every = client_close::PEER_PROBE_EVERY;
        let timer = probe.get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        loop {
            std::task::ready!(std::future::Future::poll(timer.as_mut(), cx));
            if self.io.io.peer_ended() {
                tracing::debug!("client left with a response pending (socket probe)");
                return Poll::Ready(());
            }
            timer.as_mut().reset(Instant::now() + every);
        }
    }

    /// Feeds the body one step. `Ready(Ok)`: progress (poll again), `Ready(Err)`:
    /// the client left while the interim response was written.
    fn poll_feed(&mut self, cx: &mut Context<'_>, reading: &mut Reading) -> Poll<Result<(), ()>> {
        let Some(feed) = &reading.feed else {
            reading.done = true;
            return Poll::Ready(Ok(()));
        };
        if feed.is_abandoned() {
            reading.done = true;
            return Poll::Ready(Ok(()));
        }
        if feed.poll_wanted(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(at) = reading.expect {
            return self.poll_continue(cx, at, reading);
        }
        match self.io.inbox.pop() {
            Some(Input::Data(d)) => {
                feed.push(d);
                // A body that knows its length is not polled past its last byte.
                if self.io.inbox.next_is_end() {
                    self.io.inbox.pop();
                    feed.end();
                    (reading.complete, reading.done) = (true, true);
                }
            }
            Some(Input::End) => {
                feed.end();
                (reading.complete, reading.done) = (true, true);
            }
            Some(head @ Input::Head(_)) => {
                // The guard ends a body before a head; never here.
                self.io.inbox.unpop(head);
                feed.fail(BodyError::Refused);
                reading.done = true;
            }
            None if self.io.refused.is_some() || self.io.eof => {
                feed.fail(match self.io.refused {
                    Some(_) => BodyError::Refused,
                    None => BodyError::Closed,
                });
                reading.done = true;
            }
            None => {
                std::task::ready!(self.io.poll_read_once(cx));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the `100 Continue` the body's first poll asked for.
    fn poll_continue(
        &mut self,
        cx: &mut Context<'_>,
        mut at: usize,
        reading: &mut Reading,
    ) -> Poll<Result<(), ()>> {
        while at < CONTINUE.len() {
            match self.io.poll_write(cx, &CONTINUE[at..]) {
                Poll::Ready(Ok(n)) if n > 0 => at += n,
                Poll::Ready(_) => return Poll::Ready(Err(())),
                Poll::Pending => {
                    reading.expect = Some(at);
                    return Poll::Pending;
                }
            }
        }
        reading.expect = Some(at);
        match std::pin::Pin::new(&mut self.io.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                reading.expect = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The close: the guard's refusal response when one is owed, then the shutdown.
    async fn finish(mut self) {
        let owed = self
            .io
            .refused
            .filter(|_| !self.io.guard.refused_inside_body());
        if let Some(r) = owed {
            self.io.drain_unread();
            if self.io.write_all(&r.response_bytes()).await.is_err() {
                return;
            }
        } else if self.held {
            // A handshake answered without a tunnel: what the client sent after it
            // is unread; closing on it would reset the connection under our answer.
            self.io.drain_unread();
        }
        let _ = self.io.flush().await;
        let _ = self.io.shutdown().await;
    }

    /// After a `101`: the stream and the bytes read past the handshake's head go to
    /// the tunnel's relay.
    async fn tunnel(self, side: crate::tunnel::AppSide) {
        let mut io = self.io;
        let held = io.guard.take_held().freeze();
        let stop = self.activity.stop().clone();
        Box::pin(crate::tunnel::run(io.io, held, side, &stop)).await;
    }
}

/// Whether a connection is counted in [`PARKED`]; uncounted when dropped.
#[derive(Debug, Default)]
struct Parked(bool);

impl Parked {
    fn set(&mut self, parked: bool) {
        if self.0 != parked {
            match parked {
                true => PARKED.fetch_add(1, Ordering::Relaxed),
                false => PARKED.fetch_sub(1, Ordering::Relaxed),
            };
            self.0 = parked;
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.set(false);
    }
}

mod send;
#[cfg(test)]
mod tests;

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
