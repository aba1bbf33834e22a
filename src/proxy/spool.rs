//! Request-body buffering, as nginx does in front of gunicorn: the whole body is read
//! from the client before a worker is chosen, so a slow upload never holds a worker.
//! Bodies up to `memory_limit` stay in memory, while all of them together stay within
//! `BodyBudget`; larger ones, and any past the budget, go to an unlinked temp file.

use crate::respond::Failure;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub enum Spooled {
    Memory(Bytes),
    File(tokio::fs::File),
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

/// How a body is read: its limits and the shared memory budget.
pub struct Reading<'a> {
    pub max: u64,
    pub memory_limit: u64,
    pub pause_limit: std::time::Duration,
    pub budget: &'a Arc<BodyBudget>,
    /// The Content-Length, when the client sent one: memory for it is taken at once.
    pub declared: Option<u64>,
}

/// Reads the whole body. More than `max` bytes → `PayloadTooLarge`; a client that
/// breaks the body framing → `BadRequest`.
pub async fn read_body<B>(mut body: B, r: Reading<'_>) -> Result<Body, Failure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut held = Held::default();
    let mut memory = BytesMut::new();
    let mut len: u64 = 0;
    let mut file: Option<tokio::fs::File> = None;
    match r.declared {
        // One allocation of the exact size: hyper's pieces would each pin a buffer.
        Some(n) if n > 0 && n <= r.memory_limit && r.budget.take(n, &mut held) => {
            memory.reserve(n as usize)
        }
        Some(n) if n > 0 => file = Some(spool_file(&mut memory, &mut held).await?),
        _ => {}
    }
    while !body.is_end_stream() {
        // A client that stops sending mid-body gets 408, not a connection held forever.
        let frame = match tokio::time::timeout(r.pause_limit, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => return Err(Failure::RequestTimeout),
        };
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "request body read failed");
            Failure::BadRequest
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: WSGI cannot show them
        };
        len += data.len() as u64;
        if len > r.max {
            return Err(Failure::PayloadTooLarge);
        }
        if file.is_none() {
            let fits = len <= r.memory_limit
                && (len <= held.bytes || r.budget.take(len - held.bytes, &mut held));
            if fits {
                memory.extend_from_slice(&data);
                continue;
            }
            file = Some(spool_file(&mut memory, &mut held).await?);
        }
        let f = file.as_mut().expect("set above");
        f.write_all(&data).await.map_err(internal)?;
    }
    let data = match file {
        Some(mut f) => {
            f.flush().await.map_err(internal)?;
            f.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(internal)?;
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

/// Moves what is in memory to a new temp file, giving its memory share back.
async fn spool_file(memory: &mut BytesMut, held: &mut Held) -> Result<tokio::fs::File, Failure> {
    let mut f = tokio::fs::File::from_std(tempfile::tempfile().map_err(internal)?);
    f.write_all(memory).await.map_err(internal)?;
    *memory = BytesMut::new();
    held.release();
    Ok(f)
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
            f.rewind().await.map_err(internal)?;
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
                let n = f.read(&mut buf).await.map_err(internal)?;
                buf.truncate(n);
                Ok((n > 0).then(|| Bytes::from(buf)))
            }
        }
    }
}
