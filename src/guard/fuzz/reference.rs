//! The fuzz's runners: hyper's HTTP/1 server over scripted in-memory reads (the
//! reference), and the guard alone (what must stay refused).
//!
//! hyper gets the settings the front's listener gave it before issue 28's codec
//! (src/listener.rs `builders`: keep-alive, half-close, `max_headers` = the field
//! limit + the stand-in's field, a 416 KiB read buffer, no header timeout); its
//! service records every request it parsed and answers 404, which makes no
//! connection a tunnel (hyper turns a 2xx to CONNECT and any 101 into one).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::{GuardLimits, Http1Guard, Reject};

/// One request as a reader understood it, in the terms hyper can give: the target
/// as `http::Uri` prints it, field names in lower case, fields ordered by name (the
/// values of one name in their order: `HeaderMap` keeps no more), the decoded body.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: (u8, u8),
    pub(super) fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) body: Vec<u8>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} HTTP/{}.{} [",
            self.method, self.target, self.version.0, self.version.1
        )?;
        for (n, v) in &self.fields {
            write!(f, "{}: \"{}\"; ", n.escape_ascii(), v.escape_ascii())?;
        }
        write!(f, "] body b\"{}\"", self.body.escape_ascii())
    }
}

/// A target as hyper's `Request` carries it; the raw bytes when `http::Uri`
/// refuses them (only a reader other than hyper can have such a request).
pub(super) fn printed_target(raw: &[u8]) -> String {
    match http::Uri::try_from(raw) {
        Ok(uri) => uri.to_string(),
        Err(_) => format!("(not a Uri) {}", raw.escape_ascii()),
    }
}

/// Fields in `Seen`'s order: names in lower case, sorted, stable within a name.
pub(super) fn ordered_fields(mut fields: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    for (name, _) in &mut fields {
        name.make_ascii_lowercase();
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

/// What hyper made of a byte stream.
#[derive(Debug, Default)]
pub(super) struct HyperOutcome {
    /// Every request whose head and whole body it read, in order.
    pub(super) requests: Vec<Seen>,
    /// The last head whose body did not end (the stream stopped inside it).
    pub(super) unfinished: Option<Seen>,
    /// hyper's error, when it refused the stream (not one that merely stopped).
    pub(super) refused: Option<String>,
    /// hyper's 431 or 414 rather than its 400.
    pub(super) too_large: bool,
}

/// A client that sends one scripted read at a time, then EOF, and swallows what the
/// server writes.
struct Scripted {
    reads: VecDeque<Vec<u8>>,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(read) = self.reads.front_mut() {
            let n = read.len().min(buf.remaining());
            buf.put_slice(&read[..n]);
            read.drain(..n);
            if read.is_empty() {
                self.reads.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// hyper's read buffer in the listener (its default).
const HYPER_H1_BUFFER: usize = 8192 + 4096 * 100;

fn builder(limits: &GuardLimits) -> http1::Builder {
    let mut h1 = http1::Builder::new();
    h1.keep_alive(true)
        .half_close(true)
        .max_headers(limits.fields + 1)
        .max_buf_size(HYPER_H1_BUFFER)
        .header_read_timeout(None);
    h1
}

#[derive(Default)]
struct Log {
    done: Vec<Seen>,
    unfinished: Option<Seen>,
}

/// Serves `reads` with hyper.
pub(super) fn hyper_reads(
    rt: &tokio::runtime::Runtime,
    reads: &[Vec<u8>],
    limits: &GuardLimits,
) -> HyperOutcome {
    let log = Arc::new(Mutex::new(Log::default()));
    let service = {
        let log = log.clone();
        service_fn(move |req: Request<Incoming>| {
            let log = log.clone();
            async move {
                record(req, &log).await;
                let mut response = Response::new(Empty::<Bytes>::new());
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                Ok::<_, Infallible>(response)
            }
        })
    };
    let io = Scripted {
        reads: reads.iter().cloned().collect(),
    };
    let served = rt.block_on(async {
        let conn = builder(limits).serve_connection(TokioIo::new(io), service);
        tokio::time::timeout(Duration::from_secs(10), conn).await
    });
    let log = std::mem::take(&mut *log.lock().expect("log"));
    let mut outcome = HyperOutcome {
        requests: log.done,
        unfinished: log.unfinished,
        ..HyperOutcome::default()
    };
    match served {
        Err(_) => panic!("hyper did not finish a scripted stream in 10 s"),
        Ok(Ok(())) => {}
        // The stream stopped inside a message: not a refusal.
        Ok(Err(e)) if e.is_incomplete_message() => {}
        Ok(Err(e)) => {
            outcome.too_large = e.is_parse_too_large() || e.to_string().contains("URI too long");
            outcome.refused = Some(e.to_string());
        }
    }
    outcome
}

async fn record(req: Request<Incoming>, log: &Mutex<Log>) {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let target = parts.uri.to_string();
    let version = match parts.version {
        http::Version::HTTP_10 => (1, 0),
        http::Version::HTTP_11 => (1, 1),
        v => panic!("hyper's HTTP/1 server gave {v:?}"),
    };
    let fields = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let mut seen = Seen {
        method,
        target,
        version,
        fields: ordered_fields(fields),
        body: Vec::new(),
    };
    let body = body.collect().await;
    let mut log = log.lock().expect("log");
    match body {
        Ok(body) => {
            seen.body = body.to_bytes().to_vec();
            log.done.push(seen);
        }
        Err(_) => log.unfinished = Some(seen),
    }
}

/// What the guard did with a stream, read by read.
#[derive(Debug, Default)]
pub(super) struct GuardOutcome {
    pub(super) refused: Option<Reject>,
    /// The refusal came inside a body (the request whose head passed last).
    pub(super) in_body: bool,
    /// Request heads passed on.
    pub(super) heads: u64,
    /// A WebSocket candidate's head ended HTTP on the connection.
    pub(super) held: bool,
    /// The stream is HTTP/2 prior knowledge (out of this fuzz's scope).
    pub(super) h2: bool,
    /// What the guard passed on, one entry per read (the reads hyper gets).
    pub(super) passed: Vec<Vec<u8>>,
}

impl GuardOutcome {
    /// The index of the request the guard refused.
    pub(super) fn refused_request(&self) -> Option<usize> {
        self.refused?;
        let heads = self.heads as usize;
        Some(if self.in_body { heads - 1 } else { heads })
    }
}

/// Feeds `reads` to today's guard as `GuardedIo` does: it stops at a refusal, and
/// at a WebSocket candidate's head (what follows is held for a tunnel).
pub(super) fn guard_reads(reads: &[Vec<u8>], limits: GuardLimits) -> GuardOutcome {
    let mut guard = Http1Guard::new(limits);
    let mut outcome = GuardOutcome::default();
    for read in reads {
        let mut out = BytesMut::new();
        let result = guard.feed(read, &mut out);
        if !out.is_empty() {
            outcome.passed.push(out.to_vec());
        }
        if let Err(r) = result {
            outcome.refused = Some(r);
            outcome.in_body = guard.refused_inside_body();
            break;
        }
        if guard.is_held() {
            outcome.held = true;
            break;
        }
    }
    outcome.heads = guard.requests_seen();
    outcome.h2 = guard.is_h2();
    outcome
}
