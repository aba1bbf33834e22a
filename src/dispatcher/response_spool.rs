//! Response buffering, as nginx does in front of gunicorn: the connection reader takes
//! a worker's response as fast as the worker writes it. Up to `memory_limit` bytes of
//! a response that the client has not taken yet stay in memory; beyond that the body
//! goes to an unlinked temp file, so a slow client costs disk, not a worker and not RAM.
//! When the disk is full too, the response is given up, as nginx gives up on an
//! upstream response it cannot buffer: what it held is freed, its client gets a cut
//! response (the connection closed, the HTTP/2 stream reset) and the worker is told
//! to stop (`GaveUp`), so it serves the next request at once instead of waiting on a
//! client that does not read.
//!
//! All responses together stay within `ResponseBudget`: its memory (the bytes queued
//! here and the chunk the HTTP/2 or HTTP/1 writer holds, counted until dropped) and
//! its file slots (one per spool file). Past both, a stalled response is cut to make
//! room, or else this one is given up (see `response_budget`).

use super::response_budget::{FileSlot, Holder, ResponseBudget};
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
    /// Its share of `[limits] response_files`, given back when it closes.
    _slot: Option<FileSlot>,
}

impl SpillFile {
    fn create(slot: FileSlot) -> std::io::Result<Self> {
        Ok(SpillFile {
            file: tempfile::tempfile()?,
            written: Mutex::new(0),
            _slot: Some(slot),
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
struct Queue {
    deliveries: VecDeque<Delivery>,
    /// Body bytes queued in memory that the response has not taken yet (their share
    /// of the budget).
    in_memory: usize,
    /// Body bytes queued in the spool file, not read back yet.
    on_disk: usize,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
    /// The response was given up (`GaveUp`): what the worker still sends is dropped.
    given_up: bool,
    /// The spool file, once the response needed one.
    spill: Option<Arc<SpillFile>>,
    /// When the response last took something (or began).
    last_taken: Instant,
    /// Known to the budget as a holder (`ResponseBudget::register`).
    registered: bool,
    budget: &'static ResponseBudget,
}

impl Queue {
    fn new(budget: &'static ResponseBudget) -> Self {
        Queue {
            deliveries: VecDeque::new(),
            in_memory: 0,
            on_disk: 0,
            waker: None,
            sender_gone: false,
            receiver_gone: false,
            given_up: false,
            spill: None,
            last_taken: Instant::now(),
            registered: false,
            budget,
        }
    }

    /// Frees what the queue holds: its memory share and its spool file.
    fn free(&mut self) {
        self.deliveries.clear();
        self.on_disk = 0;
        self.budget.give_memory(std::mem::take(&mut self.in_memory));
        self.spill = None;
    }
}

impl Holder for Mutex<Queue> {
    fn idle_since(&self) -> Option<Instant> {
        let q = self.lock().unwrap_or_else(|e| e.into_inner());
        let holds = q.spill.is_some();
        (holds && !q.given_up && !q.receiver_gone).then_some(q.last_taken)
    }

    fn cut(&self) {
        let q = self.lock().unwrap_or_else(|e| e.into_inner());
        if !q.given_up && !q.receiver_gone {
            give_up(q, None);
        }
    }
}

type Shared = Arc<Mutex<Queue>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending half kept per stream by the connection reader.
pub struct Sender {
    shared: Shared,
    memory_limit: usize,
    budget: &'static ResponseBudget,
    /// For the log line of a response given up.
    request_id: Bytes,
    /// The caller was told the response was given up (once is enough).
    told: bool,
}

/// The receiving half, read by the response body.
pub struct Receiver {
    shared: Shared,
    spill_offset: u64,
    interruption: Option<Interruption>,
    budget: &'static ResponseBudget,
}

/// Why the front ended a stream that the worker did not end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    TimedOut,
    Revoked,
    /// Given up for want of room (before its head: the client gets 503).
    GaveUp,
}

pub(crate) fn channel(
    memory_limit: usize,
    budget: &'static ResponseBudget,
    request_id: Bytes,
) -> (Sender, Receiver) {
    let shared = Arc::new(Mutex::new(Queue::new(budget)));
    (
        Sender {
            shared: shared.clone(),
            memory_limit,
            budget,
            request_id,
            told: false,
        },
        Receiver {
            shared,
            spill_offset: 0,
            interruption: None,
            budget,
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

/// Responses cut to make room for one body frame, at most: each frees up to
/// `response_buffer_size` of memory or a file.
const CUTS_PER_FRAME: usize = 8;

impl Sender {
    /// Queues a frame; body bytes past the memory limit (the response's, or the
    /// budget's) go to the spool file (once a response spills, the rest of it follows
    /// through the file, keeping the order). Frames for a response nobody reads any
    /// more are dropped (and never spilled). `GaveUp`: the worker should stop.
    pub fn send(&mut self, frame: Frame) -> Result<(), GaveUp> {
        let Frame::ResponseBody(b) = frame else {
            let q = lock(&self.shared);
            if !q.receiver_gone && !q.given_up {
                push(q, Delivery::Frame(frame));
            }
            return Ok(());
        };
        for _ in 0..=CUTS_PER_FRAME {
            let mut q = lock(&self.shared);
            if q.receiver_gone {
                return Ok(());
            }
            if q.given_up {
                drop(q);
                return self.tell();
            }
            match self.place(&mut q, &b) {
                Ok(Some(delivery)) => {
                    let register = !q.registered && q.spill.is_some();
                    q.registered |= register;
                    push(q, delivery);
                    if register {
                        let holder: Arc<dyn Holder> = self.shared.clone();
                        self.budget.register(Arc::downgrade(&holder));
                    }
                    return Ok(());
                }
                Ok(None) => {
                    // No room: take a stalled response's, not holding our lock
                    // (any longer idle one's for a response's first bytes, or
                    // when its client waits for these).
                    let first = q.in_memory == 0 && q.spill.is_none();
                    let min_idle = if first || q.waker.is_some() {
                        Duration::ZERO
                    } else {
                        super::response_budget::CUT_AFTER
                    };
                    drop(q);
                    let asking = Arc::as_ptr(&self.shared) as *const ();
                    if !self.budget.make_room(min_idle, asking) {
                        break;
                    }
                }
                Err(e) => {
                    spool_failed(&e);
                    if q.in_memory > 0 && q.in_memory + b.len() > self.memory_limit {
                        let gave_up = give_up(q, Some(&self.request_id));
                        self.told = true;
                        return Err(gave_up);
                    }
                    self.budget.force_memory(b.len());
                    push(q, Delivery::Frame(Frame::ResponseBody(b)));
                    return Ok(());
                }
            }
        }
        self.budget.no_room();
        self.told = true;
        Err(give_up(lock(&self.shared), None))
    }

    /// Where a body frame goes: memory if the response's limit and the budget
    /// allow, else the spool file (a new one needs a file slot). `Ok(None)`: neither
    /// has room; `Err`: the file failed (a full disk).
    fn place(&self, q: &mut Queue, b: &Bytes) -> std::io::Result<Option<Delivery>> {
        if q.spill.is_none()
            && q.in_memory + b.len() <= self.memory_limit
            && self.budget.take_memory(b.len())
        {
            return Ok(Some(Delivery::Frame(Frame::ResponseBody(b.clone()))));
        }
        if q.spill.is_none() {
            let Some(slot) = self.budget.try_file() else {
                return Ok(None);
            };
            q.spill = Some(Arc::new(SpillFile::create(slot)?));
        }
        let file = q.spill.clone().expect("just set");
        file.append(b)?;
        Ok(Some(Delivery::Spilled { file, len: b.len() }))
    }

    /// The first time the caller hears of a response given up (by the budget, for
    /// another's room): the worker is told to stop.
    fn tell(&mut self) -> Result<(), GaveUp> {
        if std::mem::replace(&mut self.told, true) {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// Body bytes queued that the response has not taken yet, in memory or on disk
    /// (an ASGI response is paused past a limit, `conn::asgi`).
    pub fn held(&self) -> usize {
        let q = lock(&self.shared);
        q.in_memory + q.on_disk
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
/// when its client (which may never read) leaves. `request_id`: log it (a full
/// disk; the budget logs its own cuts once a minute).
fn give_up(mut q: MutexGuard<'_, Queue>, request_id: Option<&Bytes>) -> GaveUp {
    q.given_up = true;
    q.free();
    q.deliveries.push_back(Delivery::GaveUp);
    if let Some(id) = request_id {
        let id = String::from_utf8_lossy(id);
        tracing::warn!(request_id = %id, "response spool full: giving up on the response (its client gets it cut) and freeing its worker");
    }
    wake(q);
    GaveUp
}

/// Queues `delivery` (unless the receiver left) and wakes a waiting receiver.
fn push(mut q: MutexGuard<'_, Queue>, delivery: Delivery) {
    let (memory, disk) = match &delivery {
        Delivery::Frame(Frame::ResponseBody(b)) => (b.len(), 0),
        Delivery::Spilled { len, .. } => (0, *len),
        _ => (0, 0),
    };
    if q.receiver_gone {
        q.budget.give_memory(memory);
        return;
    }
    q.in_memory += memory;
    q.on_disk += disk;
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
        q.free();
    }
}

impl Receiver {
    /// The next frame, with spooled body bytes read back from the file; `None` once
    /// the sender is gone and everything was taken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut q = lock(&self.shared);
        match q.deliveries.pop_front() {
            Some(d) => {
                // Its memory share goes with the chunk (`counted`).
                let d = match d {
                    Delivery::Frame(Frame::ResponseBody(b)) => {
                        q.in_memory -= b.len();
                        Delivery::Frame(Frame::ResponseBody(b))
                    }
                    Delivery::Spilled { file, len } => {
                        let d = self.to_read(&mut q, file, len);
                        if let Delivery::Spilled { len, .. } = &d {
                            q.on_disk -= len;
                        }
                        d
                    }
                    d => d,
                };
                q.last_taken = Instant::now();
                if q.deliveries.is_empty() && q.sender_gone {
                    q.spill = None;
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
            Delivery::Frame(Frame::ResponseBody(b)) => Frame::ResponseBody(counted(b, self.budget)),
            Delivery::Frame(f) => f,
            Delivery::TimedOut => {
                self.interruption = Some(Interruption::TimedOut);
                Frame::Abort(Bytes::from_static(b"worker timed out"))
            }
            Delivery::Revoked => {
                self.interruption = Some(Interruption::Revoked);
                Frame::Abort(Bytes::from_static(b"revoked before it started"))
            }
            Delivery::GaveUp => {
                self.interruption = Some(Interruption::GaveUp);
                Frame::Abort(Bytes::from_static(b"response spool full"))
            }
            Delivery::Spilled { file, len } => match file.read(self.spill_offset, len) {
                Ok(b) => {
                    self.spill_offset += len as u64;
                    Frame::ResponseBody(counted(b, self.budget))
                }
                Err(e) => {
                    self.budget.give_memory(len);
                    Frame::Abort(Bytes::from(format!("response spool read failed: {e}")))
                }
            },
        }
    }

    /// How much of spooled bytes to read back now, its memory taken: all of them
    /// within the budget; past it `PRESSED_READ` (a client whose window is shut
    /// holds the chunk read for it), the rest left first in the queue.
    fn to_read(&self, q: &mut Queue, file: Arc<SpillFile>, len: usize) -> Delivery {
        if self.budget.take_memory(len) {
            return Delivery::Spilled { file, len };
        }
        let n = len.min(PRESSED_READ);
        self.budget.force_memory(n);
        if n < len {
            q.deliveries.push_front(Delivery::Spilled {
                file: file.clone(),
                len: len - n,
            });
        }
        Delivery::Spilled { file, len: n }
    }
}

/// Spooled bytes read back at once past the memory budget.
const PRESSED_READ: usize = 16 * 1024;

/// A body chunk on its way to the client keeps its share of the budget until the
/// connection's writer drops it: an HTTP/2 stream whose window is shut holds one.
struct Counted {
    data: Bytes,
    budget: &'static ResponseBudget,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.budget.give_memory(self.data.len());
    }
}

fn counted(data: Bytes, budget: &'static ResponseBudget) -> Bytes {
    if data.is_empty() {
        return data;
    }
    Bytes::from_owner(Counted { data, budget })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_past_the_limit_go_through_the_file_in_order() {
        let (mut tx, mut rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        tx.send(Frame::ResponseBody(Bytes::from_static(b"0123456789")))
            .unwrap();
        tx.send(Frame::ResponseBody(Bytes::from_static(b"abc")))
            .unwrap();
        tx.send(Frame::ResponseBody(Bytes::from_static(b"de")))
            .unwrap();
        tx.send(Frame::ResponseEnd).unwrap();
        assert!(lock(&tx.shared).spill.is_some(), "nothing spilled");
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
        let (mut tx, mut rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        tx.time_out();
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert_eq!(rx.interruption(), Some(Interruption::TimedOut));
    }

    #[tokio::test]
    async fn a_revocation_ends_the_stream_and_says_so() {
        let (mut tx, mut rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        tx.revoke();
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert_eq!(rx.interruption(), Some(Interruption::Revoked));
    }

    #[tokio::test]
    async fn the_end_of_the_sender_ends_the_stream_after_what_it_sent() {
        let (mut tx, mut rx) = channel(10, super::super::response_budget::global(), Bytes::new());
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
        let (mut tx, mut rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send(Frame::ResponseEnd).unwrap();
        assert!(matches!(waiter.await.unwrap(), Some(Frame::ResponseEnd)));
    }

    #[tokio::test]
    async fn frames_for_a_receiver_that_left_are_dropped() {
        let (mut tx, rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        let shared = rx.shared.clone();
        drop(rx);
        tx.send(Frame::ResponseBody(Bytes::from_static(b"12345")))
            .unwrap();
        assert!(lock(&shared).deliveries.is_empty());
    }

    #[tokio::test]
    async fn a_body_for_a_receiver_that_left_never_reaches_the_spool_file() {
        let (mut tx, rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        drop(rx);
        tx.send(Frame::ResponseBody(Bytes::from_static(
            b"more than ten bytes",
        )))
        .unwrap();
        assert!(lock(&tx.shared).spill.is_none());
    }

    /// A full disk with memory full too: the response is cut at once (what it held
    /// freed, its receiver told), and what the worker still sends is dropped.
    #[tokio::test]
    async fn a_response_that_fits_nowhere_is_given_up() {
        let (mut tx, mut rx) = channel(
            10,
            super::super::response_budget::global(),
            Bytes::from_static(b"req-1"),
        );
        tx.send(Frame::ResponseBody(Bytes::from_static(b"12345678")))
            .unwrap();
        // A spool file on a full disk.
        let full = std::fs::File::options().write(true).open("/dev/full");
        lock(&tx.shared).spill = Some(Arc::new(SpillFile {
            file: full.unwrap(),
            written: Mutex::new(0),
            _slot: None,
        }));
        assert_eq!(
            tx.send(Frame::ResponseBody(Bytes::from_static(b"abcdefgh"))),
            Err(GaveUp)
        );
        assert!(lock(&tx.shared).spill.is_none(), "its spool file is closed");
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

    /// Past the shared budget bytes go to a file; a response that then finds no
    /// file slot takes the one of the response idle longest, which is cut (its
    /// worker told once); everything is given back when the responses end.
    #[tokio::test]
    async fn past_the_budget_a_file_then_the_room_of_an_idle_response() {
        use super::super::response_budget::ResponseBudget;
        let budget: &'static ResponseBudget =
            Box::leak(Box::new(ResponseBudget::new(10, 1, Duration::ZERO)));
        let body = || Frame::ResponseBody(Bytes::from_static(b"12345678"));
        let (mut a, mut ra) = channel(100, budget, Bytes::new());
        a.send(body()).unwrap();
        a.send(body()).unwrap();
        assert_eq!((budget.usage().memory, budget.usage().files), (8, 1));
        let (mut b, mut rb) = channel(100, budget, Bytes::new());
        b.send(body()).unwrap();
        assert_eq!(budget.usage().cut_stalled, 1);
        assert_eq!(a.send(body()), Err(GaveUp), "its worker is told");
        assert_eq!(a.send(body()), Ok(()), "once");
        match ra.recv().await {
            Some(Frame::Abort(why)) => assert_eq!(&why[..], b"response spool full"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(rb.recv().await, Some(Frame::ResponseBody(_))));
        drop((a, ra, b, rb));
        assert_eq!((budget.usage().memory, budget.usage().files), (0, 0));
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_never_spills() {
        let (mut tx, mut rx) = channel(10, super::super::response_budget::global(), Bytes::new());
        for _ in 0..100 {
            tx.send(Frame::ResponseBody(Bytes::from_static(b"12345678")))
                .unwrap();
            assert!(rx.recv().await.is_some());
        }
        assert!(lock(&tx.shared).spill.is_none());
    }
}
