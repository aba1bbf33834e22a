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

    /// Hands the body to `send` in chunks of at most `chunk` bytes; may be called
    /// again (a revoked request is sent once more).
    pub async fn for_each_chunk(
        &mut self,
        chunk: usize,
        mut send: impl FnMut(Bytes),
    ) -> Result<(), Failure> {
        match &mut self.data {
            Spooled::Memory(chunks) => {
                for c in chunks.iter() {
                    let mut c = c.clone();
                    while c.len() > chunk {
                        send(c.split_to(chunk));
                    }
                    if !c.is_empty() {
                        send(c);
                    }
                }
            }
            Spooled::File(f) => {
                f.rewind().await.map_err(internal)?;
                let mut buf = vec![0u8; chunk];
                loop {
                    let n = f.read(&mut buf).await.map_err(internal)?;
                    if n == 0 {
                        break;
                    }
                    send(Bytes::copy_from_slice(&buf[..n]));
                }
            }
        }
        Ok(())
    }
}
