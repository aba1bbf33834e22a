//! The tunnel stage: a WebSocket the app took (`proxy::upgrade`), from the moment the
//! client has its `101` (HTTP/1) or `200` (HTTP/2 extended CONNECT) to its close.
//!
//! - [`Slots`]: the cap on WebSockets, handshakes under way and open tunnels together
//!   (`websocket_max`, 503 past it), and the open tunnels `/metrics` shows; a
//!   [`Slot`] is held from the handshake to the tunnel's end.
//! - [`AppSide`]: what the proxy hands over: the master's end of the socketpair the
//!   app writes to, the bytes the app wrote after its head, and the [`Closing`]
//!   record (access log line, metrics) written when the tunnel ends.
//! - `relay`: the bytes both ways, with the idle timeout and the drain.
//! - `handshake`: the accepted handshake the front and the proxy share.
//!
//! HTTP/1's client stream comes from the connection (`conn_watch::serve_h1` after
//! hyper's manual upgrade, with the bytes the guard held past the handshake);
//! HTTP/2's is the stream's body (`hyper::upgrade::on`), run in a task of its own.

pub(crate) mod handshake;
mod relay;

use crate::observe::access_log::{AccessLog, Entry};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// How a tunnel is run, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `websocket_idle_timeout`: no byte either way this long and the tunnel closes
    /// (zero: never).
    pub idle: Duration,
    /// `graceful_timeout`: how long after TERM/HUP an open tunnel may go on.
    pub grace: Duration,
}

/// The cap on WebSockets (handshakes under way and open tunnels) and their counts.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    /// Slots taken: handshakes under way and open tunnels.
    taken: AtomicUsize,
    /// Open tunnels only (`Slot::opened`).
    open: AtomicUsize,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            taken: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        })
    }

    /// A place for one more WebSocket, or `None` at `websocket_max`.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            slots: self.clone(),
            opened: false,
        })
    }

    /// Tunnels open now, not handshakes under way (`ferricorn_websockets_open`).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One WebSocket's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    opened: bool,
}

impl Slot {
    /// Its tunnel is open (the client has its `101` or `200`): counted as open.
    pub fn opened(&mut self) {
        if !std::mem::replace(&mut self.opened, true) {
            self.slots.open.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.opened {
            self.slots.open.fetch_sub(1, Ordering::AcqRel);
        }
        self.slots.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What is written when a tunnel ends: its access-log line (status 101 or 200, the
/// connection's life, bytes each way) and its place under the cap.
pub struct Closing {
    pub slot: Slot,
    pub log: Option<(Arc<AccessLog>, Entry)>,
    /// When the handshake arrived: the line's duration is the connection's life.
    pub started: Instant,
}

impl Closing {
    fn finish(self, to_client: u64, from_client: u64) {
        if let Some((log, mut entry)) = self.log {
            entry.bytes = Some(to_client);
            entry.bytes_in = Some(from_client);
            entry.duration = self.started.elapsed();
            log.log(&entry);
        }
        tracing::debug!(
            to_client,
            from_client,
            secs = self.started.elapsed().as_secs(),
            "websocket closed"
        );
        drop(self.slot);
    }
}

/// The app's side of a tunnel, handed from the proxy to whoever holds the client.
pub struct AppSide {
    /// The master's end of the socketpair whose other end the app holds.
    pub app: tokio::net::UnixStream,
    /// What the app wrote after its `101` head, for the client first.
    pub first: Bytes,
    /// Closes the tunnel at once: its worker drained past `graceful_timeout`.
    pub worker_gone: CancellationToken,
    pub closing: Closing,
    pub settings: Settings,
}

impl std::fmt::Debug for AppSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSide").finish_non_exhaustive()
    }
}

/// Relays `client` ⇄ the app until either ends (or idles, or the drain closes it):
/// `from_client` first (bytes the client sent right after its handshake), the
/// app's `first` bytes first the other way. `stop` is the drain's.
pub async fn run<C>(client: C, from_client: Bytes, side: AppSide, stop: &CancellationToken)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let AppSide {
        app,
        first,
        worker_gone,
        closing,
        settings,
    } = side;
    let (to_client, from_client) = relay::Relay::new(client, app, first, from_client, settings)
        .run(stop, &worker_gone)
        .await;
    closing.finish(to_client, from_client);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_the_open_tunnels_and_come_back_when_dropped() {
        let slots = Slots::new(2);
        let mut a = slots.take().unwrap();
        let mut b = slots.take().unwrap();
        assert!(slots.take().is_none());
        // Handshakes under way take a place but are not open tunnels.
        assert_eq!(slots.open(), 0);
        a.opened();
        b.opened();
        b.opened();
        assert_eq!(slots.open(), 2);
        drop(a);
        assert_eq!(slots.open(), 1);
        let c = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(b);
        assert_eq!(slots.open(), 0);
        drop(c);
        assert!(slots.take().is_some());
    }
}
