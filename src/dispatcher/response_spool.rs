//! Response buffering, as nginx does in front of gunicorn: the connection reader takes
//! a worker's response as fast as the worker writes it. Up to `memory_limit` bytes of
//! a response that the client has not taken yet stay in memory; beyond that the body
//! goes to an unlinked temp file, so a slow client costs disk, not a worker and not RAM.
//! When the disk is full too, the response is given up, as nginx gives up on an
//! upstream response it cannot buffer: what it held is freed, its client gets a cut
//! response (the connection closed, the HTTP/2 stream reset) and the worker is told
//! to stop (`GaveUp`), so it serves the next request at once instead of waiting on a
//! client that does not read.

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
    /// Neither memory nor disk had room for the rest: the response ends here, cut.
    GaveUp,
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
    sender_gone: bool,
    receiver_gone: bool,
    /// The response was given up (`GaveUp`): what the worker still sends is dropped.
    given_up: bool,
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
    /// For the log line of a response given up.
    request_id: Bytes,
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

pub fn channel(memory_limit: usize, request_id: Bytes) -> (Sender, Receiver) {
    let shared = Shared::default();
    (
        Sender {
            shared: shared.clone(),
            memory_limit,
            spill: None,
            request_id,
        },
        Receiver {
            shared,
            spill_offset: 0,
            interruption: None,
        },
    )
}

/// A body frame fitted neither in memory nor on disk: the response was given up
/// (its client gets it cut), and the caller tells the worker to stop writing it.
#[derive(Debug, PartialEq, Eq)]
pub struct GaveUp;

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
        tracing::error!(error = %e, failures, "response spool file failed; holding responses in memory up to their limit and giving up on those beyond it");
    }
}

impl Sender {
    /// Queues a frame; body bytes past the memory limit go to the spool file (once a
    /// response spills, the rest of it follows through the file, keeping the order).
    /// Frames for a response nobody reads any more are dropped (and never spilled).
    pub fn send(&mut self, frame: Frame) -> Result<(), GaveUp> {
        let q = lock(&self.shared);
        if q.receiver_gone || q.given_up {
            return Ok(());
        }
        let delivery = match frame {
            Frame::ResponseBody(b)
                if self.spill.is_some() || q.in_memory + b.len() > self.memory_limit =>
            {
                match spill(&mut self.spill, &b) {
                    Ok(file) => Delivery::Spilled { file, len: b.len() },
                    Err(e) => {
                        spool_failed(&e);
                        if q.in_memory > 0 && q.in_memory + b.len() > self.memory_limit {
                            return Err(give_up(q, &mut self.spill, &self.request_id));
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

    /// Ends the stream because the worker stayed silent past `--timeout`.
    pub fn time_out(&mut self) {
        push(lock(&self.shared), Delivery::TimedOut);
    }

    /// Ends the stream because the front revoked the request before it started.
    pub fn revoke(&mut self) {
        push(lock(&self.shared), Delivery::Revoked);
    }
}

/// Ends the response cut: what it held in memory and on disk is freed now, not
/// when its client (which may never read) leaves.
fn give_up(
    mut q: MutexGuard<'_, Queue>,
    spill: &mut Option<Arc<SpillFile>>,
    request_id: &Bytes,
) -> GaveUp {
    q.given_up = true;
    q.deliveries.clear();
    q.in_memory = 0;
    q.deliveries.push_back(Delivery::GaveUp);
    *spill = None;
    let id = String::from_utf8_lossy(request_id);
    tracing::warn!(request_id = %id, "response spool full: giving up on the response (its client gets it cut) and freeing its worker");
    wake(q);
    GaveUp
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
            Delivery::GaveUp => Frame::Abort(Bytes::from_static(b"response spool full")),
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
        let (mut tx, mut rx) = channel(10, Bytes::new());
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
        let (mut tx, mut rx) = channel(10, Bytes::new());
        tx.time_out();
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert_eq!(rx.interruption(), Some(Interruption::TimedOut));
    }

    #[tokio::test]
    async fn a_revocation_ends_the_stream_and_says_so() {
        let (mut tx, mut rx) = channel(10, Bytes::new());
        tx.revoke();
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert_eq!(rx.interruption(), Some(Interruption::Revoked));
    }

    #[tokio::test]
    async fn the_end_of_the_sender_ends_the_stream_after_what_it_sent() {
        let (mut tx, mut rx) = channel(10, Bytes::new());
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
        let (mut tx, mut rx) = channel(10, Bytes::new());
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send(Frame::ResponseEnd).unwrap();
        assert!(matches!(waiter.await.unwrap(), Some(Frame::ResponseEnd)));
    }

    #[tokio::test]
    async fn frames_for_a_receiver_that_left_are_dropped() {
        let (mut tx, rx) = channel(10, Bytes::new());
        let shared = rx.shared.clone();
        drop(rx);
        tx.send(Frame::ResponseBody(Bytes::from_static(b"12345")))
            .unwrap();
        assert!(lock(&shared).deliveries.is_empty());
    }

    #[tokio::test]
    async fn a_body_for_a_receiver_that_left_never_reaches_the_spool_file() {
        let (mut tx, rx) = channel(10, Bytes::new());
        drop(rx);
        tx.send(Frame::ResponseBody(Bytes::from_static(
            b"more than ten bytes",
        )))
        .unwrap();
        assert!(tx.spill.is_none());
    }

    /// A full disk with memory full too: the response is cut at once (what it held
    /// freed, its receiver told), and what the worker still sends is dropped.
    #[tokio::test]
    async fn a_response_that_fits_nowhere_is_given_up() {
        let (mut tx, mut rx) = channel(10, Bytes::from_static(b"req-1"));
        tx.send(Frame::ResponseBody(Bytes::from_static(b"12345678")))
            .unwrap();
        // A spool file on a full disk.
        let full = std::fs::File::options().write(true).open("/dev/full");
        tx.spill = Some(Arc::new(SpillFile {
            file: full.unwrap(),
            written: Mutex::new(0),
        }));
        assert_eq!(
            tx.send(Frame::ResponseBody(Bytes::from_static(b"abcdefgh"))),
            Err(GaveUp)
        );
        assert!(tx.spill.is_none(), "its spool file is closed");
        assert_eq!(lock(&rx.shared).in_memory, 0, "its memory is freed");
        assert_eq!(
            tx.send(Frame::ResponseBody(Bytes::from_static(b"more"))),
            Ok(())
        );
        tx.send(Frame::ResponseEnd).unwrap();
        match rx.recv().await {
            Some(Frame::Abort(why)) => assert_eq!(&why[..], b"response spool full"),
            other => panic!("{other:?}"),
        }
        drop(tx);
        assert!(rx.recv().await.is_none(), "nothing after the cut");
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_never_spills() {
        let (mut tx, mut rx) = channel(10, Bytes::new());
        for _ in 0..100 {
            tx.send(Frame::ResponseBody(Bytes::from_static(b"12345678")))
                .unwrap();
            assert!(rx.recv().await.is_some());
        }
        assert!(tx.spill.is_none());
    }
}
