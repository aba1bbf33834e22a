//! Request-body buffering, as nginx does in front of gunicorn: the whole body is read
//! from the client before a worker is chosen, so a slow upload never holds a worker.
//! Bodies up to `memory_limit` stay in memory; larger ones go to an unlinked temp file.

use crate::respond::Failure;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub enum Spooled {
    Memory(Vec<Bytes>),
    File(tokio::fs::File),
}

pub struct Body {
    pub data: Spooled,
    pub len: u64,
}

/// Reads the whole body. More than `max` bytes → `PayloadTooLarge`; a client that
/// breaks the body framing → `BadRequest`.
pub async fn read_body<B>(
    mut body: B,
    max: u64,
    memory_limit: u64,
    pause_limit: std::time::Duration,
) -> Result<Body, Failure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut chunks = Vec::new();
    let mut len: u64 = 0;
    let mut file: Option<tokio::fs::File> = None;
    if body.is_end_stream() {
        return Ok(Body {
            data: Spooled::Memory(chunks),
            len,
        });
    }
    loop {
        // A client that stops sending mid-body gets 408, not a connection held forever.
        let frame = match tokio::time::timeout(pause_limit, body.frame()).await {
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
        if len > max {
            return Err(Failure::PayloadTooLarge);
        }
        if let Some(f) = file.as_mut() {
            f.write_all(&data).await.map_err(internal)?;
        } else if len > memory_limit {
            let mut f = tokio::fs::File::from_std(tempfile::tempfile().map_err(internal)?);
            for c in chunks.drain(..) {
                f.write_all(&c).await.map_err(internal)?;
            }
            f.write_all(&data).await.map_err(internal)?;
            file = Some(f);
        } else {
            chunks.push(data);
        }
    }
    let data = match file {
        Some(mut f) => {
            f.flush().await.map_err(internal)?;
            f.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(internal)?;
            Spooled::File(f)
        }
        None => Spooled::Memory(chunks),
    };
    Ok(Body { data, len })
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
            index: 0,
            rest: Bytes::new(),
        })
    }
}

/// See [`Body::chunks`].
pub struct Chunks<'a> {
    body: &'a mut Body,
    chunk: usize,
    /// The next in-memory piece.
    index: usize,
    /// What is left of the current in-memory piece.
    rest: Bytes,
}

impl Chunks<'_> {
    pub async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        match &mut self.body.data {
            Spooled::Memory(pieces) => {
                while self.rest.is_empty() {
                    let Some(p) = pieces.get(self.index) else {
                        return Ok(None);
                    };
                    self.rest = p.clone();
                    self.index += 1;
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
