//! A request's body on its way to the worker, beside the wait for the answer. An
//! ASGI worker is sent a body only as its app reads it (a credit window,
//! `dispatcher::conn::asgi`), and an app may answer, even stream its answer, before
//! it reads its body, or without reading it at all. So the body goes in a task of
//! its own, which runs on after the answer's head has come, until the body or the
//! stream ends; the request waits for the worker's first frame meanwhile.

use super::spool;
use crate::dispatcher::response_spool::Receiver;
use crate::dispatcher::WorkerConn;
use crate::respond::Failure;
use crate::wire::{self, Frame};
use std::sync::Arc;
use tokio::task::JoinHandle;

type Sent = (spool::Body, Result<(), Failure>);

/// A body being sent on one stream.
pub(super) struct Sending {
    task: Option<JoinHandle<Sent>>,
    /// The body, once the task gave it back (or when there was nothing to send).
    back: Option<spool::Body>,
}

impl Sending {
    /// Starts sending `body` on `stream`. An empty body is only its end: no task.
    pub(super) fn start(worker: &Arc<WorkerConn>, stream: u32, body: spool::Body) -> Self {
        if body.len == 0 {
            worker.send(stream, Frame::RequestEnd);
            return Sending {
                task: None,
                back: Some(body),
            };
        }
        let worker = worker.clone();
        let task = tokio::spawn(async move {
            let mut body = body;
            let sent = send_all(&worker, stream, &mut body).await;
            (body, sent)
        });
        Sending {
            task: Some(task),
            back: None,
        }
    }

    /// The worker's first frame on the stream (`None`: the stream ended without
    /// one), or the body's failure to be read before it came.
    pub(super) async fn first_frame(
        &mut self,
        rx: &mut Receiver,
    ) -> Result<Option<Frame>, Failure> {
        if let Some(task) = &mut self.task {
            tokio::select! {
                frame = rx.recv() => return Ok(frame),
                sent = task => {
                    self.task = None;
                    let (body, sent) = sent.map_err(|_| Failure::Internal)?;
                    self.back = Some(body);
                    sent?;
                }
            }
        }
        Ok(rx.recv().await)
    }

    /// The answer's head came: the rest of the body goes on without the request
    /// (until the body or the stream ends).
    pub(super) fn detach(mut self) {
        self.task = None; // a dropped JoinHandle lets its task run
    }

    /// The body back, to be sent again (its request was taken back before it
    /// started): waits for the task, which stops at once on an ended stream.
    pub(super) async fn take_back(mut self) -> Result<spool::Body, Failure> {
        if let Some(task) = self.task.take() {
            return task
                .await
                .map(|(body, _)| body)
                .map_err(|_| Failure::Internal);
        }
        self.back.take().ok_or(Failure::Internal)
    }
}

/// A request given up before its answer's head (its client left, a 504, a body
/// that failed to be read) stops sending.
impl Drop for Sending {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Sends the body from its start, then its end; stops early, without an error,
/// when the stream ended (the worker needs no more of it).
async fn send_all(worker: &WorkerConn, stream: u32, body: &mut spool::Body) -> Result<(), Failure> {
    let mut chunks = body.chunks(wire::CHUNK).await?;
    while let Some(chunk) = chunks.next().await? {
        if !worker.send_body(stream, chunk).await {
            return Ok(());
        }
    }
    worker.send(stream, Frame::RequestEnd);
    Ok(())
}
