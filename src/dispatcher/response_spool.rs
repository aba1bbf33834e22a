//! Response buffering, as nginx does in front of gunicorn: the connection reader takes
//! a worker's response as fast as the worker writes it. Up to `memory_limit` bytes of
//! a response that the client has not taken yet stay in memory; beyond that the body
//! goes to an unlinked temp file, so a slow client costs disk, not a worker and not RAM.
//! When the disk is full too, the connection reader stops reading from that worker
//! until the client takes what is in memory (`Blocked`): memory stays at the limit.
//!
//! A response whose head says `X-Accel-Buffering: no` (nginx's `proxy_buffering
//! off` for one response: SSE, long polls, exports the app wants paced by the
//! client) never goes to a file: past the memory limit the worker waits for the
//! client, as nginx makes its upstream wait. Every chunk reaches the client as soon
//! as the worker writes it either way; what `no` changes is who waits for a slow
//! client: the app, not the front's disk.

use crate::wire::Frame;
use bytes::Bytes;
use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What the request side receives, in order.
#[derive(Debug)]
pub enum Delivery {
    Frame(Frame),
    /// The next `len` body bytes are in the spool file, after those already read.
    Spilled {
        file: Arc<SpillFile>,
        len: usize,
    },
    /// The supervisor gave up on the worker (`--timeout`): the stream ends here.
    TimedOut,
    /// The front took the request back before the worker started it (it was sent
    /// ahead, see `crate::claims`): send it again, to another worker.
    Revoked,
}

/// An unlinked temp file written by the connection reader and read by the response.
#[derive(Debug)]
pub struct SpillFile {
    file: std::fs::File,
    written: Mutex<u64>,
}

impl SpillFile {
    fn create() -> std::io::Result<Self> {
        Ok(SpillFile {
            file: tempfile::tempfile()?,
            written: Mutex::new(0),
        })
    }

    /// Writes at the end of what was written before: a write that failed half-way
    /// (a full disk) is simply written again later at the same place.
    fn append(&self, data: &[u8]) -> std::io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        self.file.write_all_at(data, *written)?;
        *written += data.len() as u64;
        Ok(())
    }

    /// Reads `len` bytes at `offset` (written earlier by `append`).
    pub fn read(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }
}

/// What both halves share: one small queue per request. (A tokio mpsc channel
/// allocates a 32-slot block per channel; per request that was the master's largest
/// allocation and made glibc consolidate its heap.)
#[derive(Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    /// Body bytes queued in memory that the response has not taken yet.
    in_memory: usize,
    waker: Option<Waker>,
    /// The connection reader, waiting for the response to take bytes (`Blocked`).
    sender_waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

type Shared = Arc<Mutex<Queue>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending half kept per stream by the connection reader.
pub struct Sender {
    shared: Shared,
    memory_limit: usize,
    spill: Option<Arc<SpillFile>>,
    /// The head said `X-Accel-Buffering: no`: memory only, then `Blocked`.
    unbuffered: bool,
}

/// The receiving half, read by the response body.
pub struct Receiver {
    shared: Shared,
    spill_offset: u64,
    interruption: Option<Interruption>,
}

/// Why the front ended a stream that the worker did not end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    TimedOut,
    Revoked,
}

pub fn channel(memory_limit: usize) -> (Sender, Receiver) {
    let shared = Shared::default();
    (
        Sender {
            shared: shared.clone(),
            memory_limit,
            spill: None,
            unbuffered: false,
        },
        Receiver {
            shared,
            spill_offset: 0,
            interruption: None,
        },
    )
}

/// A body frame that fits neither in memory nor on disk: the caller waits for
/// `Sender::room` and sends it again.
#[derive(Debug)]
pub struct Blocked(pub Frame);

/// The spool's failures are logged once a minute at most, with their count: on a
/// disk that is full, every body frame fails.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);
static FAILURES: AtomicU64 = AtomicU64::new(0);
static LAST_LOGGED: Mutex<Option<Instant>> = Mutex::new(None);

fn spool_failed(e: &std::io::Error) {
    let failures = FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST_LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) {
        *last = Some(Instant::now());
        FAILURES.store(0, Ordering::Relaxed);
        tracing::error!(error = %e, failures, "response spool file failed; holding responses in memory up to their limit and pausing the workers beyond it");
    }
}

impl Sender {
    /// Queues a frame; body bytes past the memory limit go to the spool file (once a
    /// response spills, the rest of it follows through the file, keeping the order).
    /// Frames for a response nobody reads any more are dropped (and never spilled).
    pub fn send(&mut self, frame: Frame) -> Result<(), Blocked> {
        let q = lock(&self.shared);
        if q.receiver_gone {
            return Ok(());
        }
        let delivery = match frame {
            Frame::ResponseHead(head) => {
                self.unbuffered = asks_no_buffering(&head.headers);
                Delivery::Frame(Frame::ResponseHead(head))
            }
            Frame::ResponseBody(b)
                if self.unbuffered
                    && q.in_memory > 0
                    && q.in_memory + b.len() > self.memory_limit =>
            {
                return Err(Blocked(Frame::ResponseBody(b)));
            }
            Frame::ResponseBody(b)
                if !self.unbuffered
                    && (self.spill.is_some() || q.in_memory + b.len() > self.memory_limit) =>
            {
                match spill(&mut self.spill, &b) {
                    Ok(file) => Delivery::Spilled { file, len: b.len() },
                    Err(e) => {
                        spool_failed(&e);
                        if q.in_memory > 0 && q.in_memory + b.len() > self.memory_limit {
                            return Err(Blocked(Frame::ResponseBody(b)));
                        }
                        Delivery::Frame(Frame::ResponseBody(b))
                    }
                }
            }
            other => Delivery::Frame(other),
        };
        push(q, delivery);
        Ok(())
    }

    /// Waits until `len` more bytes fit in memory (or the response is gone): the
    /// same test as `send`'s, so a retry cannot be refused at once again.
    pub fn room(&self, len: usize) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        let limit = self.memory_limit;
        std::future::poll_fn(move |cx| {
            let mut q = lock(&shared);
            if q.receiver_gone || q.in_memory == 0 || q.in_memory + len <= limit {
                return Poll::Ready(());
            }
            q.sender_waker = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Ends the stream because the worker stayed silent past `--timeout`.
    pub fn time_out(&mut self) {
        push(lock(&self.shared), Delivery::TimedOut);
    }

    /// Ends the stream because the front revoked the request before it started.
    pub fn revoke(&mut self) {
        push(lock(&self.shared), Delivery::Revoked);
    }
}

/// Whether a response head turns buffering off: its last `X-Accel-Buffering` that
/// says `yes` or `no` (any case) decides, as in nginx.
pub(crate) fn asks_no_buffering(headers: &[(Bytes, Bytes)]) -> bool {
    let mut off = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"x-accel-buffering") {
            if value.eq_ignore_ascii_case(b"no") {
                off = true;
            } else if value.eq_ignore_ascii_case(b"yes") {
                off = false;
            }
        }
    }
    off
}

/// Queues `delivery` (unless the receiver left) and wakes a waiting receiver.
fn push(mut q: MutexGuard<'_, Queue>, delivery: Delivery) {
    if q.receiver_gone {
        return;
    }
    if let Delivery::Frame(Frame::ResponseBody(b)) = &delivery {
        q.in_memory += b.len();
    }
    q.deliveries.push_back(delivery);
    wake(q);
}

/// Wakes the receiver if it waits, after letting go of the lock.
fn wake(mut q: MutexGuard<'_, Queue>) {
    if let Some(w) = q.waker.take() {
        drop(q);
        w.wake();
    }
}

/// Appends `data` to the response's spool file, created on first use.
fn spill(file: &mut Option<Arc<SpillFile>>, data: &[u8]) -> std::io::Result<Arc<SpillFile>> {
    if file.is_none() {
        *file = Some(Arc::new(SpillFile::create()?));
    }
    let file = file.clone().expect("just set");
    file.append(data)?;
    Ok(file)
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut q = lock(&self.shared);
        q.sender_gone = true;
        wake(q);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut q = lock(&self.shared);
        q.receiver_gone = true;
        q.deliveries.clear();
        if let Some(w) = q.sender_waker.take() {
            w.wake();
        }
    }
}

impl Receiver {
    /// The next frame, with spooled body bytes read back from the file; `None` once
    /// the sender is gone and everything was taken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut q = lock(&self.shared);
        match q.deliveries.pop_front() {
            Some(d) => {
                if let Delivery::Frame(Frame::ResponseBody(b)) = &d {
                    q.in_memory -= b.len();
                    if let Some(w) = q.sender_waker.take() {
                        w.wake();
                    }
                }
                drop(q);
                Poll::Ready(Some(self.open(d)))
            }
            None if q.sender_gone => Poll::Ready(None),
            None => {
                match &mut q.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Frame> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Whether the front ended the stream (`Sender::time_out`: the client gets 504;
    /// `Sender::revoke`: the request goes to another worker).
    pub fn interruption(&self) -> Option<Interruption> {
        self.interruption
    }

    fn open(&mut self, d: Delivery) -> Frame {
        match d {
            Delivery::Frame(f) => f,
            Delivery::TimedOut => {
                self.interruption = Some(Interruption::TimedOut);
                Frame::Abort(Bytes::from_static(b"worker timed out"))
            }
            Delivery::Revoked => {
                self.interruption = Some(Interruption::Revoked);
                Frame::Abort(Bytes::from_static(b"revoked before it started"))
            }
            Delivery::Spilled { file, len } => match file.read(self.spill_offset, len) {
                Ok(b) => {
                    self.spill_offset += len as u64;
                    Frame::ResponseBody(b)
                }
                Err(e) => Frame::Abort(Bytes::from(format!("response spool read failed: {e}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_past_the_limit_go_through_the_file_in_order() {
        let (mut tx, mut rx) = channel(10);
        tx.send(Frame::ResponseBody(Bytes::from_static(b"0123456789")))
            .unwrap();
        tx.send(Frame::ResponseBody(Bytes::from_static(b"abc")))
            .unwrap();
        tx.send(Frame::ResponseBody(Bytes::from_static(b"de")))
            .unwrap();
        tx.send(Frame::ResponseEnd).unwrap();
        assert!(tx.spill.is_some(), "nothing spilled");
        let mut got = Vec::new();
        while let Some(f) = rx.recv().await {
            match f {
                Frame::ResponseBody(b) => got.extend_from_slice(&b),
                Frame::ResponseEnd => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, b"0123456789abcde");
        assert_eq!(lock(&rx.shared).in_memory, 0);
    }

    #[tokio::test]
    async fn a_timeout_ends_the_stream_and_says_so() {
        let (mut tx, mut rx) = channel(10);
        tx.time_out();
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert_eq!(rx.interruption(), Some(Interruption::TimedOut));
    }

    #[tokio::test]
    async fn a_revocation_ends_the_stream_and_says_so() {
        let (mut tx, mut rx) = channel(10);
        tx.revoke();
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert_eq!(rx.interruption(), Some(Interruption::Revoked));
    }

    #[tokio::test]
    async fn the_end_of_the_sender_ends_the_stream_after_what_it_sent() {
        let (mut tx, mut rx) = channel(10);
        tx.send(Frame::ResponseEnd).unwrap();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx.recv().await)
        });
        tokio::task::yield_now().await;
        drop(tx);
        let (first, second) = waiter.await.unwrap();
        assert!(matches!(first, Some(Frame::ResponseEnd)));
        assert!(second.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (mut tx, mut rx) = channel(10);
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send(Frame::ResponseEnd).unwrap();
        assert!(matches!(waiter.await.unwrap(), Some(Frame::ResponseEnd)));
    }

    #[tokio::test]
    async fn frames_for_a_receiver_that_left_are_dropped() {
        let (mut tx, rx) = channel(10);
        let shared = rx.shared.clone();
        drop(rx);
        tx.send(Frame::ResponseBody(Bytes::from_static(b"12345")))
            .unwrap();
        assert!(lock(&shared).deliveries.is_empty());
    }

    #[tokio::test]
    async fn a_body_for_a_receiver_that_left_never_reaches_the_spool_file() {
        let (mut tx, rx) = channel(10);
        drop(rx);
        tx.send(Frame::ResponseBody(Bytes::from_static(
            b"more than ten bytes",
        )))
        .unwrap();
        assert!(tx.spill.is_none());
    }

    fn head(buffering: &'static [u8]) -> Frame {
        Frame::ResponseHead(Box::new(crate::wire::ResponseHead {
            status: 200,
            headers: vec![(
                Bytes::from_static(b"X-Accel-Buffering"),
                Bytes::from_static(buffering),
            )],
        }))
    }

    #[tokio::test]
    async fn an_unbuffered_response_waits_for_its_client_instead_of_spilling() {
        let (mut tx, mut rx) = channel(10);
        tx.send(head(b"No")).unwrap();
        tx.send(Frame::ResponseBody(Bytes::from_static(b"0123456789")))
            .unwrap();
        let refused = tx.send(Frame::ResponseBody(Bytes::from_static(b"a")));
        assert!(matches!(refused, Err(Blocked(Frame::ResponseBody(_)))));
        assert!(tx.spill.is_none());
        let room = tx.room(1);
        assert!(matches!(rx.recv().await, Some(Frame::ResponseHead(_))));
        assert!(matches!(rx.recv().await, Some(Frame::ResponseBody(_))));
        room.await;
        tx.send(Frame::ResponseBody(Bytes::from_static(b"a")))
            .unwrap();
    }

    #[test]
    fn the_last_yes_or_no_decides_buffering() {
        let field = |v: &'static [u8]| {
            (
                Bytes::from_static(b"x-accel-buffering"),
                Bytes::from_static(v),
            )
        };
        assert!(asks_no_buffering(&[field(b"NO")]));
        assert!(!asks_no_buffering(&[field(b"no"), field(b"yes")]));
        assert!(asks_no_buffering(&[
            field(b"yes"),
            field(b"no"),
            field(b"maybe")
        ]));
        assert!(!asks_no_buffering(&[field(b"no ")]));
        assert!(!asks_no_buffering(&[]));
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_never_spills() {
        let (mut tx, mut rx) = channel(10);
        for _ in 0..100 {
            tx.send(Frame::ResponseBody(Bytes::from_static(b"12345678")))
                .unwrap();
            assert!(rx.recv().await.is_some());
        }
        assert!(tx.spill.is_none());
    }
}
