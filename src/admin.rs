//! The admin listener (`--admin-bind`, off by default): `/healthz` (200 while the
//! master runs), `/readyz` (200 when a worker is ready — or in static-only mode —
//! and the server is not draining; 503 otherwise) and `/metrics` (Prometheus text).
//! It is a separate port so probes and scrapes never queue behind client traffic
//! and are never exposed with the site.

use crate::observe::{Metrics, Phase};
use crate::respond::{self, Body};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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

pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, req.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
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
