//! The admin listener (`--admin-bind`, off by default): `/healthz` (200 while the
//! master runs), `/readyz` (200 when a worker is ready — or in static-only mode —
//! and the server is not draining; 503 otherwise) and `/metrics` (Prometheus text).
//! It is a separate port so probes and scrapes never queue behind client traffic
//! and are never exposed with the site. It is still a port any pod of the cluster may
//! reach: its connections pass the public port's guard and slow-client timeouts, and
//! at most `defaults::ADMIN_MAX_CONNECTIONS` are open at once (a new one closes the
//! oldest), so idle or half-sent connections cannot use up the process's file
//! descriptors (the public port's too) nor keep the probes out.

use crate::conn_watch::Activity;
use crate::guard::{ConnTimeouts, GuardLimits};
use crate::http1::{self, body::ClientBody};
use crate::observe::{Metrics, Phase};
use crate::respond::{self, Body};
use http::{header, HeaderValue, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the admin endpoints read.
pub struct AdminState {
    pub phase: watch::Receiver<Phase>,
    pub metrics: Arc<Metrics>,
    pub front: Arc<crate::front::Front>,
    /// `false` in static-only mode: ready needs no worker then.
    pub has_app: bool,
}

/// How the admin port's connections are served.
#[derive(Clone, Copy)]
pub struct AdminConns {
    /// The public port's: idle close, 408 for a slow head, the write timeout.
    pub timeouts: ConnTimeouts,
    /// The public port's head limits (the probes' requests are tiny).
    pub guard: GuardLimits,
    /// Connections served at once; a new one past it closes the oldest.
    pub max: usize,
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    conns: AdminConns,
    stop: CancellationToken,
) {
    let open = Arc::new(OpenConns::default());
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    crate::listener::back_off_after_accept_error(&e).await;
                    continue;
                }
            },
        };
        let (id, closed) = open.add(conns.max);
        let (state, open) = (state.clone(), open.clone());
        tokio::spawn(async move {
            let service = tower::service_fn(move |req: Request<ClientBody>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, req.uri().path())) }
            });
            // Our HTTP/1 codec, as on the main listeners: the guard reads every byte,
            // its timeouts end an idle or slow connection. (An HTTP/2 client is closed.)
            let activity = Activity::new(CancellationToken::new());
            let conn = http1::conn::serve(stream, conns.guard, conns.timeouts, service, activity);
            tokio::select! {
                _ = conn => {}
                _ = closed.cancelled() => {}
            }
            open.remove(id);
        });
    }
}

/// The admin port's open connections, oldest first. Past the cap a new connection
/// closes the oldest rather than wait in the backlog: behind connections held open
/// for the head timeout, a probe would wait longer than the kubelet does and fail,
/// while a probe's own connection lives for a moment and is seldom the oldest.
#[derive(Default)]
struct OpenConns {
    conns: std::sync::Mutex<(u64, std::collections::VecDeque<(u64, CancellationToken)>)>,
}

impl OpenConns {
    /// Registers a new connection (closing the oldest past `max`): its id and the
    /// token that closes it.
    fn add(&self, max: usize) -> (u64, CancellationToken) {
        let mut guard = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let (next, conns) = &mut *guard;
        while conns.len() >= max.max(1) {
            if let Some((_, oldest)) = conns.pop_front() {
                oldest.cancel();
            }
        }
        *next += 1;
        let token = CancellationToken::new();
        conns.push_back((*next, token.clone()));
        (*next, token)
    }

    fn remove(&self, id: u64) {
        let mut guard = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.retain(|(i, _)| *i != id);
    }
}

fn answer(state: &AdminState, path: &str) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let phase = *state.phase.borrow();
            let workers = state.metrics.workers_serving();
            if phase == Phase::Ready && (workers > 0 || !state.has_app) {
                text(StatusCode::OK, "ready\n")
            } else {
                let why = match phase {
                    Phase::Draining => "draining\n",
                    Phase::Starting => "starting\n",
                    Phase::Ready => "no worker ready\n",
                };
                text(StatusCode::SERVICE_UNAVAILABLE, why)
            }
        }
        "/metrics" => {
            let body = state.metrics.render(&state.front.gauges());
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = respond::full(body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => respond::status_page(StatusCode::NOT_FOUND),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(respond::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::OpenConns;

    #[test]
    fn past_the_cap_the_oldest_open_connection_is_closed() {
        let open = OpenConns::default();
        let (a, first) = open.add(2);
        let (_, second) = open.add(2);
        assert!(!first.is_cancelled());
        let (_, third) = open.add(2);
        assert!(first.is_cancelled() && !second.is_cancelled() && !third.is_cancelled());
        // A connection that ended is no longer counted, nor closed later.
        open.remove(a);
        let (b, fourth) = open.add(3);
        assert!(!second.is_cancelled() && !fourth.is_cancelled());
        open.remove(b);
        open.add(2);
        assert!(second.is_cancelled() && !third.is_cancelled());
    }
}
