//! One worker's Unix-socket connection as the front sees it: a writer task that
//! batches queued frames into one write (and passes an upgrade request's socket with
//! the first byte of its head, SCM_RIGHTS), a reader task that routes the worker's
//! frames to the waiting requests, and the bookkeeping of streams in flight (which
//! the supervisor reads to enforce `--timeout` and `--max-requests`). What differs
//! for an ASGI worker (cancel, pause) is in `asgi`.

use super::response_spool;
use super::{Dispatcher, Lease, WorkerId};
use crate::claims::{next_stream_id, Claims};
use crate::config::Interface;
use crate::shards::Host;
use crate::wire::{self, Frame, RequestHead};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};

/// What a worker connection tells the supervisor.
#[derive(Debug)]
pub enum WorkerEvent {
    /// The connection closed: the worker died or exited.
    Closed { pid: u32 },
    /// The worker served its `--max-requests` quota and takes no new work.
    QuotaReached { pid: u32 },
}

struct Stream {
    tx: response_spool::Sender,
    /// Last time the worker sent anything on this stream (or when it was sent).
    last_activity: Instant,
    /// A `[[route]]` timeout for this request (`Duration::ZERO`: none), instead of
    /// the worker timeout.
    timeout: Option<Duration>,
    /// The app took its socket (`exempt_from_timeout`): a WebSocket's thread.
    taken: bool,
    /// ASGI: answered 504 and sent `Cancel`; the worker must end the stream by
    /// then (`asgi`). It keeps its slot meanwhile.
    cancel_by: Option<Instant>,
    /// ASGI: cancelled, and the worker said its task runs on regardless
    /// (`Credit(0)`): no deadline, the slot is held until the task ends.
    detached: bool,
    /// ASGI: the worker was told to `Pause` this response.
    paused: bool,
    /// ASGI: held bytes past which the response is paused (0: never, WSGI).
    pause_at: usize,
    /// ASGI: the request body's window (`send_body`); closed when the stream goes.
    window: Option<Arc<asgi::Window>>,
}

/// What one worker runs requests on, and how many at once.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Its threads (WSGI) or `worker_connections` (ASGI).
    pub slots: usize,
    pub interface: Interface,
}

/// A frame for the writer; `fd` rides on the frame's first byte (an upgrade
/// request's head).
struct Outgoing {
    stream: u32,
    frame: Frame,
    fd: Option<OwnedFd>,
}

pub struct WorkerConn {
    pub pid: u32,
    /// Its name in sticky cookies (`proxy::sticky`).
    id: WorkerId,
    /// What the worker said it runs on (for the log).
    pub interpreter: wire::Interpreter,
    /// The front thread running this connection's tasks.
    host: Host,
    claims: Claims,
    capacity: usize,
    interface: Interface,
    retiring: AtomicBool,
    next_stream: AtomicU32,
    served: AtomicU64,
    quota: u64,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Request-body bytes queued for the writer: what back-pressure is judged on.
    queued: Arc<Queued>,
    streams: Mutex<HashMap<u32, Stream>>,
    dispatcher: &'static Dispatcher,
    /// Cancelled when this worker's WebSockets are to close (it drained past
    /// `graceful_timeout`, HUP or recycling): the front's relays end them.
    tunnels: tokio_util::sync::CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("worker socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker sent a bad frame: {0}")]
    Wire(#[from] wire::WireError),
    #[error("worker closed the connection before it was ready")]
    ClosedEarly,
    #[error("worker's first frame was not Ready")]
    NotReady,
}

impl WorkerConn {
    /// Reads the worker's Ready frame from a fresh connection, then starts the reader
    /// and writer tasks. Call it on `host`'s front thread, whose runtime `sock` is
    /// registered with. `quota` is the number of requests after which the worker
    /// retires (0 = never).
    pub async fn handshake(
        host: Host,
        sock: UnixStream,
        claims: Claims,
        capacity: Capacity,
        quota: u64,
        dispatcher: &'static Dispatcher,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> Result<Arc<Self>, ConnectError> {
        let (mut rd, wr) = sock.into_split();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let ready = loop {
            if let Some((_, frame)) = wire::decode(&mut buf)? {
                match frame {
                    Frame::Ready(ready) => break ready,
                    _ => return Err(ConnectError::NotReady),
                }
            }
            if rd.read_buf(&mut buf).await? == 0 {
                return Err(ConnectError::ClosedEarly);
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued::default());
        let conn = Arc::new(WorkerConn {
            pid: ready.pid,
            id: WorkerId::random(),
            interpreter: ready.interpreter,
            host,
            claims,
            capacity: capacity.slots,
            interface: capacity.interface,
            retiring: AtomicBool::new(false),
            next_stream: AtomicU32::new(1),
            served: AtomicU64::new(0),
            quota,
            outgoing: tx,
            queued: queued.clone(),
            streams: Mutex::new(HashMap::new()),
            dispatcher,
            tunnels: tokio_util::sync::CancellationToken::new(),
        });
        tokio::spawn(write_loop(wr, rx, queued));
        tokio::spawn(conn.clone().read_loop(rd, buf, events));
        Ok(conn)
    }

    /// The dispatcher whose pool this worker is in.
    pub(super) fn dispatcher(&self) -> &'static Dispatcher {
        self.dispatcher
    }

    /// Its name in sticky cookies: new for every connection.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The front thread (`crate::shards`) this connection lives on.
    pub fn shard(&self) -> usize {
        self.host.index()
    }

    /// Slots this worker offers to new requests: 0 once it is retiring.
    pub fn available_capacity(&self) -> usize {
        if self.retiring.load(Ordering::Relaxed) {
            0
        } else {
            self.capacity
        }
    }

    /// Requests it runs at once (its threads, or its `worker_connections`), as it
    /// was started: retiring or not, and whatever a reload since set.
    pub fn slots(&self) -> usize {
        self.capacity
    }

    /// Stop giving this worker new requests (max-requests, reload, shrink).
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.streams.lock().unwrap().len()
    }

    /// Sends a request head on a leased slot; the receiver yields the worker's frames
    /// for it. Body frames follow through `send_body` / `end_body`.
    pub fn start_request(
        &self,
        lease: Lease,
        head: RequestHead,
        response_memory: usize,
        timeout: Option<Duration>,
    ) -> (u32, response_spool::Receiver) {
        self.start(lease, head, None, response_memory, timeout)
    }

    /// `start_request` for an upgrade request: `fd` (the worker's end of a
    /// socketpair) goes with the head's first byte, and the head says so
    /// (`upgrade`). The master closes its copy once it is sent. Lease it with
    /// `ahead = false`: a request taken back could not be sent again without it
    /// (a `Revoked` one, rare even so, needs a new pair). On the master's end: what
    /// the app wrote, then EOF as soon as its response is over, since the worker
    /// closes the socket before it sends the WSGI answer. So EOF can come before
    /// the `ResponseHead` of an app that never touched the socket: taken means at
    /// least one byte came, not merely "readable".
    pub fn start_upgrade(
        &self,
        lease: Lease,
        mut head: RequestHead,
        fd: OwnedFd,
        response_memory: usize,
        timeout: Option<Duration>,
    ) -> (u32, response_spool::Receiver) {
        head.upgrade = true;
        self.start(lease, head, Some(fd), response_memory, timeout)
    }

    fn start(
        &self,
        lease: Lease,
        head: RequestHead,
        fd: Option<OwnedFd>,
        response_memory: usize,
        timeout: Option<Duration>,
    ) -> (u32, response_spool::Receiver) {
        let stream = self
            .next_stream
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| {
                Some(next_stream_id(id))
            })
            .unwrap_or_else(|id| id);
        let (memory_limit, pause_at) = asgi::response_limits(self.interface, response_memory);
        let (tx, rx) = response_spool::channel(
            memory_limit,
            super::response_budget::global(),
            head.request_id.clone(),
        );
        self.streams.lock().unwrap().insert(
            stream,
            Stream {
                tx,
                last_activity: Instant::now(),
                timeout,
                taken: false,
                cancel_by: None,
                detached: false,
                paused: false,
                pause_at,
                window: asgi::window(self.interface),
            },
        );
        self.claims.offer(stream);
        lease.disarm();
        let _ = self.outgoing.send(Outgoing {
            stream,
            frame: Frame::RequestHead(Box::new(head)),
            fd,
        });
        (stream, rx)
    }

    /// The app took the stream's socket: from now on the worker `--timeout` and a
    /// `[[route]]` timeout never end it (its thread is busy for the connection's
    /// life by design; the relay's idle timeout governs it).
    /// What ends this worker's WebSockets (see `close_tunnels`).
    pub fn tunnels_closed(&self) -> tokio_util::sync::CancellationToken {
        self.tunnels.clone()
    }

    /// Closes this worker's WebSockets: a draining worker's apps then see their
    /// sockets end, and its threads come back.
    pub fn close_tunnels(&self) {
        self.tunnels.cancel();
    }

    pub fn exempt_from_timeout(&self, stream: u32) {
        if let Some(s) = self.streams.lock().unwrap().get_mut(&stream) {
            // A zero limit is "none" for `silent_streams` and `limits`.
            s.timeout = Some(Duration::ZERO);
            s.taken = true;
        }
    }

    /// Only streams whose app took the socket (WebSockets; no timeout ends them) are
    /// in flight: the ordinary requests, bounded by their timeouts, have ended.
    pub fn only_taken_in_flight(&self) -> bool {
        let streams = self.streams.lock().unwrap();
        !streams.is_empty() && streams.values().all(|s| s.taken)
    }

    /// When the worker's Python thread started `stream` (`claims::monotonic_ns`).
    pub fn started_at(&self, stream: u32) -> Option<u64> {
        self.claims.started_at(stream)
    }

    pub fn send(&self, stream: u32, frame: Frame) {
        let _ = self.outgoing.send(Outgoing {
            stream,
            frame,
            fd: None,
        });
    }

    /// Sends a piece of a request body once the body bytes already queued for this
    /// worker are below `OUTGOING_BUDGET` (and, for an ASGI worker, once the stream's
    /// window has room: `asgi::Window`): an upload to an app that reads it slowly
    /// waits in its spool file, not in the master's or the worker's memory. `false`:
    /// the stream is gone (ended, cancelled), send no more of it.
    pub async fn send_body(&self, stream: u32, data: Bytes) -> bool {
        if !self.window_open(stream, data.len()).await {
            return false;
        }
        // The waiter is registered only when there is no room (it takes a lock), and
        // room is checked again after, so a drain in between is not missed.
        while !self.queued.has_room(data.len()) {
            let drained = self.queued.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued.has_room(data.len()) {
                break;
            }
            drained.await;
        }
        self.queued.bytes.fetch_add(data.len(), Ordering::AcqRel);
        self.send(stream, Frame::RequestBody(data));
        true
    }

    /// The client went away. A request the worker has not started is taken back, so
    /// the worker never runs it (a client that resets streams sent ahead would
    /// otherwise keep the worker busy for nothing); else the worker is told, and its
    /// end of the stream releases the slot.
    pub fn abort(&self, stream: u32) {
        let revoked = {
            let mut streams = self.streams.lock().unwrap();
            let revoked = self.claims.revoke(stream);
            if revoked {
                streams.remove(&stream);
            }
            revoked
        };
        if revoked {
            self.dispatcher.release(self);
            return;
        }
        self.send(
            stream,
            Frame::Abort(bytes::Bytes::from_static(b"client gone")),
        );
    }

    /// Streams on which the worker has been silent for longer than their limit: the
    /// route's, else `default` (`None`, or a zero limit: never). Not a stream
    /// already cancelled (it was answered), nor one paused (the front keeps it
    /// silent: its client does not read).
    pub fn silent_streams(&self, default: Option<Duration>) -> Vec<u32> {
        let now = Instant::now();
        self.streams
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| {
                s.cancel_by.is_none()
                    && !s.paused
                    && s.timeout
                        .or(default)
                        .is_some_and(|l| !l.is_zero() && now.duration_since(s.last_activity) > l)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The limit of each stream in flight: its route's, else `default`; `None` (or
    /// zero): none.
    pub fn limits(&self, default: Option<Duration>) -> Vec<Option<Duration>> {
        let streams = self.streams.lock().unwrap();
        streams
            .values()
            .map(|s| s.timeout.or(default).filter(|l| !l.is_zero()))
            .collect()
    }

    /// Ends every stream in flight as `time_out_stream` does (a condemned worker's
    /// grace is over); returns how many.
    pub fn time_out_all(&self) -> usize {
        let ids: Vec<u32> = self.streams.lock().unwrap().keys().copied().collect();
        for &id in &ids {
            self.time_out_stream(id);
        }
        ids.len()
    }

    /// Takes back up to `max` requests the worker has not started, oldest first; each
    /// one's request side gets `Revoked` and sends it again. Returns how many.
    pub fn revoke_unstarted(&self, max: usize) -> usize {
        let mut streams = self.streams.lock().unwrap();
        let mut ids: Vec<u32> = streams.keys().copied().collect();
        ids.sort_unstable();
        let mut revoked = 0;
        for id in ids {
            if revoked == max {
                break;
            }
            let Some(s) = streams.get_mut(&id) else {
                continue;
            };
            if self.take_back(id, s) {
                streams.remove(&id);
                revoked += 1;
            }
        }
        revoked
    }

    /// Takes the request on `stream` back if the worker has not started it: its
    /// request side gets `Revoked` and sends it again. The caller forgets the stream.
    fn take_back(&self, id: u32, stream: &mut Stream) -> bool {
        let taken = self.claims.revoke(id);
        if taken {
            stream.tx.revoke();
        }
        taken
    }

    /// Ends a stream from the front's side because the worker timed out: its request
    /// answers 504 (before the head) or is cut; a request that was only queued
    /// behind the stuck one is sent again instead.
    pub fn time_out_stream(&self, stream: u32) {
        if let Some(mut s) = self.streams.lock().unwrap().remove(&stream) {
            // A cancelled stream was answered when it was cancelled.
            if s.cancel_by.is_none() && !self.take_back(stream, &mut s) {
                s.tx.time_out();
            }
        }
    }

    async fn read_loop(
        self: Arc<Self>,
        mut rd: OwnedReadHalf,
        mut buf: BytesMut,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) {
        loop {
            match wire::decode(&mut buf) {
                Ok(Some((stream, frame))) => self.route(stream, frame, &events),
                Ok(None) => {
                    buf.reserve(64 * 1024);
                    match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(pid = self.pid, error = %e, "worker broke the wire protocol");
                    break;
                }
            }
        }
        self.close(&events);
    }

    /// Hands a frame to its stream. A response given up (no room in memory nor on
    /// disk) is cut for its client, and the worker is told to stop writing it: its
    /// end of the stream then frees the slot, whether or not the client ever reads.
    fn route(&self, stream: u32, frame: Frame, events: &mpsc::UnboundedSender<WorkerEvent>) {
        if let Frame::Credit(n) = frame {
            return self.credit(stream, n);
        }
        let ends = matches!(
            frame,
            Frame::ResponseEnd | Frame::Abort(_) | Frame::ResponseFile(_)
        );
        let mut streams = self.streams.lock().unwrap();
        if ends {
            let Some(mut s) = streams.remove(&stream) else {
                return;
            };
            if s.cancel_by.is_some() {
                tracing::debug!(pid = self.pid, stream, "a cancelled request ended");
            }
            // A WSGI worker moves on to a request it was sent ahead: that request's
            // silence (for `--timeout`) starts now, not when it was queued. An ASGI
            // worker runs every stream at once from the start.
            if self.interface == Interface::Wsgi {
                let now = Instant::now();
                for other in streams.values_mut() {
                    other.last_activity = now;
                }
            }
            drop(streams);
            // Only body frames can be refused, and these are not.
            let _ = s.tx.send(frame);
            self.finished(events);
        } else if let Some(s) = streams.get_mut(&stream) {
            s.last_activity = Instant::now();
            let body = matches!(frame, Frame::ResponseBody(_));
            if let Err(response_spool::GaveUp) = s.tx.send(frame) {
                drop(streams);
                self.send(
                    stream,
                    Frame::Abort(Bytes::from_static(b"response spool full")),
                );
            } else if body && asgi::pause(s) {
                // Sent under the lock, so that a Resume (`response_taken`, on
                // the client's thread) cannot overtake it.
                self.send(stream, Frame::Pause);
            }
        }
    }

    /// One request done: free its slot; retire at the quota.
    fn finished(&self, events: &mpsc::UnboundedSender<WorkerEvent>) {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.quota > 0 && served == self.quota {
            self.retire();
            let _ = events.send(WorkerEvent::QuotaReached { pid: self.pid });
        }
        self.dispatcher.release(self);
    }

    /// The worker is gone: every request it was running fails (502 before its head,
    /// a cut response after), the ones it had not started are sent again, and the
    /// pool forgets it.
    fn close(&self, events: &mpsc::UnboundedSender<WorkerEvent>) {
        self.dispatcher.remove(self);
        // Requests the worker never started go to another worker; only the ones it
        // was running fail.
        let orphans: Vec<Stream> = self
            .streams
            .lock()
            .unwrap()
            .drain()
            .filter_map(|(id, mut s)| (!self.take_back(id, &mut s)).then_some(s))
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                pid = self.pid,
                requests = orphans.len(),
                "worker connection lost with requests in flight"
            );
        }
        drop(orphans);
        let _ = events.send(WorkerEvent::Closed { pid: self.pid });
    }
}

/// Request-body bytes handed to the writer and not written yet.
#[derive(Default)]
struct Queued {
    bytes: AtomicUsize,
    drained: Notify,
    /// The writer is gone (the worker's socket failed): nothing waits for room.
    closed: AtomicBool,
}

impl Queued {
    fn has_room(&self, len: usize) -> bool {
        let now = self.bytes.load(Ordering::Acquire);
        self.closed.load(Ordering::Acquire) || now == 0 || now + len <= OUTGOING_BUDGET
    }
}

/// Request-body bytes that may wait for one worker's socket (see `send_body`).
const OUTGOING_BUDGET: usize = 1024 * 1024;

/// Writes queued frames, many per syscall: it waits for one, then takes all that
/// are already queued (up to ~1 MiB) before writing. A frame with an fd ends the
/// batch: what is before it is written first, then the fd goes with its first byte.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<Queued>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut pending: Option<Outgoing> = None;
    loop {
        let out = match pending.take() {
            Some(out) => out,
            None => match rx.recv().await {
                Some(out) => out,
                None => break,
            },
        };
        let mut bodies = body_len(&out.frame);
        wire::encode(out.stream, &out.frame, &mut buf);
        let written = match out.fd {
            Some(fd) => send_with_fd(&mut wr, &buf, fd).await,
            None => {
                pending = batch(&mut rx, &mut buf, &mut bodies);
                wr.write_all(&buf).await
            }
        };
        if bodies > 0 {
            queued.bytes.fetch_sub(bodies, Ordering::AcqRel);
            queued.drained.notify_waiters();
        }
        if written.is_err() {
            break;
        }
        buf.clear();
    }
    // Nobody will write again: senders must not wait for room.
    queued.closed.store(true, Ordering::Release);
    queued.drained.notify_waiters();
}

fn body_len(f: &Frame) -> usize {
    match f {
        Frame::RequestBody(b) => b.len(),
        _ => 0,
    }
}

/// Encodes the frames already queued into `buf`, up to ~1 MiB, counting body bytes
/// into `bodies`; stops before a frame with an fd, which it returns.
fn batch(
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    buf: &mut BytesMut,
    bodies: &mut usize,
) -> Option<Outgoing> {
    while buf.len() < 1024 * 1024 {
        match rx.try_recv() {
            Ok(out) if out.fd.is_some() => return Some(out),
            Ok(out) => {
                *bodies += body_len(&out.frame);
                wire::encode(out.stream, &out.frame, buf);
            }
            Err(_) => break,
        }
    }
    None
}

/// Writes `bytes` (one encoded frame) with `fd` in SCM_RIGHTS on its first byte:
/// one `sendmsg` of that byte alone, so the fd is attached to exactly it (see
/// `wire`), then the rest with plain writes. Our copy of `fd` is closed after.
async fn send_with_fd(wr: &mut OwnedWriteHalf, bytes: &[u8], fd: OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::{ErrorKind, IoSlice};
    let sock: &UnixStream = wr.as_ref();
    let fds = [fd.as_raw_fd()];
    let first = [IoSlice::new(&bytes[..1])];
    loop {
        sock.writable().await?;
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
            let cmsg = [ControlMessage::ScmRights(&fds)];
            sendmsg::<()>(
                sock.as_raw_fd(),
                &first,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    drop(fd);
    wr.write_all(&bytes[1..]).await
}

mod asgi;

#[cfg(test)]
mod tests;
