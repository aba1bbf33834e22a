//! ASGI's `http.response.pathsend` (Starlette's `FileResponse` uses it when the
//! scope offers it): after the response head, the worker names a file
//! (`Frame::ResponseFile`) and the front sends it as the body, so no Python task
//! copies it through the wire. The worker `stat`ed it; the front opens the path
//! itself (master and workers share one uid) and sends nothing of a file that is
//! no longer that one (`dev`, `ino` and `size` must match what the worker saw): a
//! file replaced or truncated in between is a 502, not another file. The app's
//! status and fields go out as they are (the app answered Range and HEAD itself);
//! the body is the file, its Content-Length the file's size. The open file holds a
//! slot of `[limits] response_files`, as a static file does.
//!
//! An ASGI worker sends its head together with the first body message (the spec
//! forbids starting a response before it), so the front waits for that frame
//! before it answers: it says whether the body is a file.

use super::AppBody;
use crate::config::Interface;
use crate::dispatcher::response_budget::{self, FileSlot};
use crate::dispatcher::response_spool::Interruption;
use crate::observe::metrics::pathsend;
use crate::respond::{self, BoxError, Failure};
use crate::wire::{Frame, ResponseFile};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response};
use std::os::unix::ffi::OsStrExt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::io::AsyncReadExt;

/// Bytes read from the file at once.
const CHUNK: usize = 64 * 1024;

/// Why a named file is not sent (logged; the client gets 502).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("not an absolute path")]
    NotAbsolute,
    #[error("cannot open it: {0}")]
    Open(std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("replaced since the app named it (device/inode differ)")]
    Replaced,
    #[error("its size is {now}, the app's stat said {said}")]
    Resized { now: u64, said: u64 },
    #[error("the app's Content-Length {0} is not the file's size")]
    Length(String),
}

/// The response for a head the worker sent: for an ASGI worker, once the frame
/// after it came, the file it names, or `body` with that frame first.
pub(super) async fn body_or_file(
    resp: Response<()>,
    mut body: AppBody,
) -> Result<Response<respond::Body>, Failure> {
    let asgi = body
        .guard
        .worker
        .as_ref()
        .is_some_and(|w| w.interface() == Interface::Asgi);
    if !asgi {
        return Ok(resp.map(|()| respond::Body::new(body)));
    }
    let next = body.rx.recv().await;
    match (next, body.rx.interruption()) {
        (_, Some(Interruption::TimedOut)) => Err(Failure::WorkerTimeout),
        (_, Some(Interruption::GaveUp)) => Err(Failure::SpoolFull),
        // Nothing went out yet: an honest 502 rather than a cut 200.
        (None | Some(Frame::Abort(_)), _) => Err(Failure::WorkerFailed),
        (Some(Frame::ResponseFile(file)), _) => {
            // The worker ended the stream with it: nothing to abort.
            body.guard.worker = None;
            send_file(resp, *file).await
        }
        (next, _) => {
            body.first = next;
            Ok(resp.map(|()| respond::Body::new(body)))
        }
    }
}

async fn send_file(
    resp: Response<()>,
    named: ResponseFile,
) -> Result<Response<respond::Body>, Failure> {
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&named.path));
    let Some(slot) = response_budget::global().wait_file().await else {
        return Err(Failure::SpoolFull);
    };
    let opened = match open(&path, &named, resp.headers()).await {
        Ok(file) => file,
        Err(why) => {
            pathsend::REFUSED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), %why, "http.response.pathsend: not sending the file: 502");
            return Err(Failure::WorkerFailed);
        }
    };
    pathsend::SENT.fetch_add(1, Ordering::Relaxed);
    let mut resp = resp.map(|()| {
        respond::Body::new(FileBody {
            file: opened.take(named.size),
            left: named.size,
            buf: BytesMut::new(),
            _slot: slot,
        })
    });
    // The length is the file's: no chunked framing the app may have asked for.
    resp.headers_mut().remove(header::TRANSFER_ENCODING);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(named.size));
    Ok(resp)
}

/// Opens `path` and checks it is the regular file the worker saw. Opened
/// non-blocking: a FIFO swapped in would otherwise block the open for ever.
async fn open(
    path: &std::path::Path,
    named: &ResponseFile,
    headers: &http::HeaderMap,
) -> Result<tokio::fs::File, Refused> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if !path.is_absolute() {
        return Err(Refused::NotAbsolute);
    }
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        if len.to_str().ok().and_then(|l| l.parse::<u64>().ok()) != Some(named.size) {
            return Err(Refused::Length(
                String::from_utf8_lossy(len.as_bytes()).into(),
            ));
        }
    }
    let path = path.to_owned();
    let file = tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
    })
    .await
    .map_err(|e| Refused::Open(std::io::Error::other(e)))?
    .map_err(Refused::Open)?;
    let file = tokio::fs::File::from_std(file);
    let meta = file.metadata().await.map_err(Refused::Open)?;
    if !meta.is_file() {
        return Err(Refused::NotRegular);
    }
    if (meta.dev(), meta.ino()) != (named.dev, named.ino) {
        return Err(Refused::Replaced);
    }
    if meta.len() != named.size {
        return Err(Refused::Resized {
            now: meta.len(),
            said: named.size,
        });
    }
    Ok(file)
}

/// The file's `left` bytes, in chunks; one that ends early (truncated while sent)
/// cuts the response, and one that grew is sent as it was named.
struct FileBody {
    file: tokio::io::Take<tokio::fs::File>,
    left: u64,
    buf: BytesMut,
    _slot: FileSlot,
}

#[derive(Debug, thiserror::Error)]
#[error("the file named by http.response.pathsend shrank while it was sent")]
struct Shrank;

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        // Room for a whole chunk (a no-op while the last one's room is unused).
        this.buf.reserve(CHUNK);
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.file), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Err(Shrank.into()))),
            Poll::Ready(Ok(n)) => {
                this.left -= n as u64;
                let chunk = this.buf.split().freeze();
                Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}
