//! Request-body buffering, as nginx does in front of gunicorn: the whole body is read
//! from the client before a worker is chosen, so a slow upload never holds a worker.
//! Bodies up to `memory_limit` stay in memory, while all of them together stay within
//! `BodyBudget`; larger ones, and any past the budget, go to an unlinked temp file,
//! opened when bytes arrive that no longer fit in memory (never for a length only
//! declared). Spool files are capped too (`SpoolCaps`): each is a descriptor and disk,
//! and a client that declares many large bodies must not take every descriptor.

use crate::observe::metrics::SpoolUse;
use crate::respond::Failure;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub enum Spooled {
    Memory(Bytes),
    File(SpoolFile),
}

pub struct Body {
    pub data: Spooled,
    pub len: u64,
    /// The share of `BodyBudget` a body in memory holds until it is dropped.
    _held: Held,
}

/// What all request bodies in memory may take together (`[limits] body_memory`):
/// past it a body goes to a temp file whatever its size, so many slow uploads cost
/// disk, not RAM. Shared by every connection.
#[derive(Debug)]
pub struct BodyBudget {
    limit: u64,
    used: AtomicU64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BodyBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes held now, for `/metrics`.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(self: &Arc<Self>, n: u64, held: &mut Held) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .is_ok();
        if taken {
            held.bytes += n;
            held.budget = Some(self.clone());
        }
        taken
    }
}

/// A share of the budget, given back when dropped.
#[derive(Default)]
struct Held {
    budget: Option<Arc<BodyBudget>>,
    bytes: u64,
}

impl Held {
    fn release(&mut self) {
        if let Some(b) = self.budget.take() {
            b.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
        self.bytes = 0;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

/// The caps on spooled bodies (`[limits] body_spool_files`, `body_spool_bytes`),
/// shared by every connection. A body that needs room past a cap waits up to `wait`
/// for other bodies to end, then gets 503 (`Failure::SpoolFull`).
pub struct SpoolCaps {
    files: Arc<Semaphore>,
    files_cap: usize,
    /// One permit per byte.
    bytes: Arc<Semaphore>,
    bytes_cap: usize,
    wait: Duration,
    /// Refusals: [files, bytes, disk].
    refused: [AtomicU64; 3],
    /// When a refusal was last logged, and the refusals since: once a minute at
    /// most, as under an attack or on a full disk every upload is refused.
    logged: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

const LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a body found no room.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Files = 0,
    Bytes = 1,
    /// The temp directory's file system is full (or refused the file).
    Disk = 2,
}

impl SpoolCaps {
    pub(crate) fn new(files: usize, bytes: u64, wait: Duration) -> Arc<Self> {
        let files_cap = files.min(Semaphore::MAX_PERMITS);
        let bytes_cap = usize::try_from(bytes)
            .map_or(Semaphore::MAX_PERMITS, |b| b.min(Semaphore::MAX_PERMITS));
        Arc::new(SpoolCaps {
            files: Arc::new(Semaphore::new(files_cap)),
            files_cap,
            bytes: Arc::new(Semaphore::new(bytes_cap)),
            bytes_cap,
            wait,
            refused: Default::default(),
            logged: Default::default(),
        })
    }

    /// Use now, for `/metrics`.
    pub(crate) fn usage(&self) -> SpoolUse {
        let refused = |r: Refusal| self.refused[r as usize].load(Ordering::Relaxed);
        SpoolUse {
            files: (self.files_cap - self.files.available_permits()) as u64,
            bytes: (self.bytes_cap - self.bytes.available_permits()) as u64,
            refused_files: refused(Refusal::Files),
            refused_bytes: refused(Refusal::Bytes),
            refused_disk: refused(Refusal::Disk),
        }
    }

    /// Counts a refusal and logs it (the first, then once a minute with a count).
    fn refuse(&self, why: Refusal, error: Option<&std::io::Error>) -> Failure {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        logged.1 += 1;
        if logged.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            let refusals = std::mem::take(&mut logged.1);
            logged.0 = Some(std::time::Instant::now());
            drop(logged);
            let cause = match (why, error) {
                (_, Some(e)) => format!("request body spool failed: {e}"),
                (Refusal::Files, None) => format!(
                    "request bodies past [limits] body_spool_files ({})",
                    self.files_cap
                ),
                (_, None) => format!(
                    "request bodies past [limits] body_spool_bytes ({})",
                    self.bytes_cap
                ),
            };
            tracing::warn!(
                refusals,
                "{cause}: answering 503 (logged once a minute at most)"
            );
        }
        Failure::SpoolFull
    }

    /// A full disk is a lack of room (503); anything else is our fault (500).
    fn io_failure(&self, e: std::io::Error) -> Failure {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE) => {
                self.refuse(Refusal::Disk, Some(&e))
            }
            _ => internal(e),
        }
    }

    /// `n` permits of `sem`, waiting up to `wait` for them (FIFO: a large body is
    /// not starved by small ones).
    async fn take(
        &self,
        sem: &Arc<Semaphore>,
        n: usize,
        why: Refusal,
    ) -> Result<OwnedSemaphorePermit, Failure> {
        let Ok(n32) = u32::try_from(n) else {
            return Err(self.refuse(why, None));
        };
        if let Ok(p) = sem.clone().try_acquire_many_owned(n32) {
            return Ok(p);
        }
        match tokio::time::timeout(self.wait, sem.clone().acquire_many_owned(n32)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(self.refuse(why, None)),
        }
    }
}

/// An unlinked temp file holding a body, with its share of the spool caps: closed
/// (and so deleted) and the share given back when dropped, however the request ends.
pub struct SpoolFile {
    file: tokio::fs::File,
    caps: Arc<SpoolCaps>,
    _slot: OwnedSemaphorePermit,
    bytes: OwnedSemaphorePermit,
}

impl SpoolFile {
    /// A new spool file holding `first` then `then`, once a file slot and room for
    /// their bytes are free.
    async fn open(caps: &Arc<SpoolCaps>, first: &[u8], then: &[u8]) -> Result<Self, Failure> {
        let slot = caps.take(&caps.files, 1, Refusal::Files).await?;
        let n = first.len() + then.len();
        let bytes = caps.take(&caps.bytes, n, Refusal::Bytes).await?;
        let file = tempfile::tempfile().map_err(|e| caps.io_failure(e))?;
        let mut f = SpoolFile {
            file: tokio::fs::File::from_std(file),
            caps: caps.clone(),
            _slot: slot,
            bytes,
        };
        f.write_held(first).await?;
        f.write_held(then).await?;
        Ok(f)
    }

    /// Appends `data`, once room for it is free.
    async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        let more = self
            .caps
            .take(&self.caps.bytes, data.len(), Refusal::Bytes)
            .await?;
        self.bytes.merge(more);
        self.write_held(data).await
    }

    /// Appends bytes whose room is already held.
    async fn write_held(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.file
            .write_all(data)
            .await
            .map_err(|e| self.caps.io_failure(e))
    }
}

/// How a body is read: its limits, the shared memory budget and spool caps.
pub struct Reading<'a> {
    pub max: u64,
    pub memory_limit: u64,
    pub pause_limit: std::time::Duration,
    pub budget: &'a Arc<BodyBudget>,
    pub spool: &'a Arc<SpoolCaps>,
    /// The Content-Length, when the client sent one: memory for it is taken when
    /// its first bytes arrive.
    pub declared: Option<u64>,
}

/// Reads the whole body. More than `max` bytes → `PayloadTooLarge`; a client that
/// breaks the body framing → `BadRequest`; no room to spool it → `SpoolFull`.
pub async fn read_body<B>(mut body: B, r: Reading<'_>) -> Result<Body, Failure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut held = Held::default();
    let mut memory = BytesMut::new();
    let mut len: u64 = 0;
    let mut file: Option<SpoolFile> = None;
    while let Some(data) = next_data(&mut body, r.pause_limit).await? {
        if data.is_empty() {
            continue; // an empty DATA frame is no first byte
        }
        len += data.len() as u64;
        if len > r.max {
            return Err(Failure::PayloadTooLarge);
        }
        if let Some(f) = file.as_mut() {
            f.write(&data).await?;
            continue;
        }
        if len == data.len() as u64 {
            // The first bytes: one allocation of the declared size, as hyper's
            // pieces would each pin a buffer.
            if let Some(n) = r.declared.filter(|n| *n <= r.memory_limit) {
                if r.budget.take(n, &mut held) {
                    memory.reserve(n as usize);
                }
            }
        }
        let fits = len <= r.memory_limit
            && r.declared.is_none_or(|n| n <= r.memory_limit)
            && (len <= held.bytes || r.budget.take(len - held.bytes, &mut held));
        if fits {
            memory.extend_from_slice(&data);
            continue;
        }
        // From here on the body is on disk: its memory share goes back at once.
        let f = SpoolFile::open(r.spool, &memory, &data).await?;
        memory = BytesMut::new();
        held.release();
        file = Some(f);
    }
    let data = match file {
        Some(mut f) => {
            f.file.flush().await.map_err(internal)?;
            f.file.rewind().await.map_err(internal)?;
            Spooled::File(f)
        }
        None => Spooled::Memory(memory.freeze()),
    };
    Ok(Body {
        data,
        len,
        _held: held,
    })
}

/// The body's next data; None at its end. Trailers are skipped: WSGI cannot show them.
async fn next_data<B>(body: &mut B, pause_limit: Duration) -> Result<Option<Bytes>, Failure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    while !body.is_end_stream() {
        // A client that stops sending mid-body gets 408, not a connection held forever.
        let frame = match tokio::time::timeout(pause_limit, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(_) => return Err(Failure::RequestTimeout),
        };
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "request body read failed");
            Failure::BadRequest
        })?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

fn internal(e: std::io::Error) -> Failure {
    tracing::error!(error = %e, "request body spool failed");
    Failure::Internal
}

impl Body {
    /// Whether the body is held in memory (not spooled to a file).
    pub fn in_memory(&self) -> bool {
        matches!(self.data, Spooled::Memory(_))
    }

    /// The body from its start, in chunks of at most `chunk` bytes, read as they
    /// are asked for (a spooled file is never read ahead of what the worker took);
    /// may be asked for again (a revoked request is sent once more).
    pub async fn chunks(&mut self, chunk: usize) -> Result<Chunks<'_>, Failure> {
        if let Spooled::File(f) = &mut self.data {
            f.file.rewind().await.map_err(internal)?;
        }
        Ok(Chunks {
            body: self,
            chunk,
            started: false,
            rest: Bytes::new(),
        })
    }
}

/// See [`Body::chunks`].
pub struct Chunks<'a> {
    body: &'a mut Body,
    chunk: usize,
    started: bool,
    /// What is left of a body in memory.
    rest: Bytes,
}

impl Chunks<'_> {
    pub async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        match &mut self.body.data {
            Spooled::Memory(all) => {
                if !self.started {
                    self.started = true;
                    self.rest = all.clone();
                }
                if self.rest.is_empty() {
                    return Ok(None);
                }
                let n = self.rest.len().min(self.chunk);
                Ok(Some(self.rest.split_to(n)))
            }
            Spooled::File(f) => {
                let mut buf = vec![0u8; self.chunk];
                let n = f.file.read(&mut buf).await.map_err(internal)?;
                buf.truncate(n);
                Ok((n > 0).then(|| Bytes::from(buf)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, StreamExt};
    use http_body_util::StreamBody;

    type Frame = Result<http_body::Frame<Bytes>, std::convert::Infallible>;

    /// A body of `chunks`, then silence when `open` (a client that stopped sending).
    fn body(
        chunks: &[usize],
        open: bool,
    ) -> StreamBody<impl futures_util::Stream<Item = Frame> + Unpin> {
        let frames: Vec<Frame> = chunks
            .iter()
            .map(|n| Ok(http_body::Frame::data(Bytes::from(vec![b'b'; *n]))))
            .collect();
        let rest = if open {
            stream::pending().left_stream()
        } else {
            stream::empty().right_stream()
        };
        StreamBody::new(stream::iter(frames).chain(rest))
    }

    fn reading<'a>(
        budget: &'a Arc<BodyBudget>,
        spool: &'a Arc<SpoolCaps>,
        declared: Option<u64>,
    ) -> Reading<'a> {
        Reading {
            max: 1 << 30,
            memory_limit: 1000,
            pause_limit: Duration::from_millis(200),
            budget,
            spool,
            declared,
        }
    }

    #[tokio::test]
    async fn a_declared_length_alone_takes_neither_memory_nor_a_file() {
        let budget = BodyBudget::new(1 << 20);
        let spool = SpoolCaps::new(4, 1 << 20, Duration::from_millis(50));
        // Each read stays alive (pending) while its use is looked at.
        let mut read = Box::pin(read_body(
            body(&[], true),
            reading(&budget, &spool, Some(5_000_000)),
        ));
        let polled = tokio::time::timeout(Duration::from_millis(50), &mut read).await;
        assert!(polled.is_err(), "still reading");
        assert_eq!(spool.usage().files, 0);
        // Nor does an empty DATA frame for a body that would fit in memory.
        let mut read = Box::pin(read_body(
            body(&[0, 0], true),
            reading(&budget, &spool, Some(900)),
        ));
        let polled = tokio::time::timeout(Duration::from_millis(50), &mut read).await;
        assert!(polled.is_err(), "still reading");
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn past_memory_a_file_holds_the_body_until_it_is_dropped() {
        let budget = BodyBudget::new(1 << 20);
        let spool = SpoolCaps::new(4, 1 << 20, Duration::from_millis(50));
        let b = read_body(
            body(&[600, 600, 600], false),
            reading(&budget, &spool, None),
        )
        .await
        .unwrap();
        assert!(!b.in_memory());
        let used = spool.usage();
        assert_eq!((used.files, used.bytes, budget.used()), (1, 1800, 0));
        drop(b);
        let used = spool.usage();
        assert_eq!((used.files, used.bytes), (0, 0));
    }

    #[tokio::test]
    async fn past_a_cap_a_body_waits_then_is_refused() {
        let budget = BodyBudget::new(1 << 20);
        let spool = SpoolCaps::new(1, 3000, Duration::from_millis(50));
        let held = read_body(body(&[2000], false), reading(&budget, &spool, None))
            .await
            .unwrap();
        // No file slot left.
        let r = read_body(body(&[2000], false), reading(&budget, &spool, None)).await;
        assert_eq!(r.err(), Some(Failure::SpoolFull));
        drop(held);
        // No room for its bytes: 2000 + 2000 of 3000.
        let r = read_body(body(&[2000, 2000], false), reading(&budget, &spool, None)).await;
        assert_eq!(r.err(), Some(Failure::SpoolFull));
        let used = spool.usage();
        assert_eq!((used.refused_files, used.refused_bytes), (1, 1));
        assert_eq!((used.files, used.bytes, budget.used()), (0, 0, 0));
    }
}
