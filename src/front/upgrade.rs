//! Opening a WebSocket, once the handshake is well formed (`websocket`) and the
//! request passed the rules every request meets (proxy trust, `[[route]]`s, the
//! router): refused while draining or at `websocket_max` (503), forwarded to the
//! app with its socket (`proxy::upgrade`), and, when the app took it and answered
//! `101`, handed to the relay (`tunnel`): HTTP/1 through the connection's
//! `Activity` (hyper writes the `101`, then `conn_watch::serve_h1` relays), HTTP/2
//! in a task of its own on the stream's body.

use super::websocket::Handshake;
use super::{Front, LoggedHead};
use crate::conn_watch::Activity;
use crate::http1::body::ClientBody;
use crate::net::ConnInfo;
use crate::observe::metrics::UpgradeRefusal;
use crate::observe::RouteKind;
use crate::proxy::upgrade::Upgraded;
use crate::proxy::{Stamp, Upstream};
use crate::respond::{self, Body, Failure};
use crate::tunnel::{self, AppSide, Closing};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Instant;

/// The WebSocket settings and the count of open ones.
pub struct WebSockets {
    pub slots: Arc<tunnel::Slots>,
    pub settings: tunnel::Settings,
}

impl WebSockets {
    /// `[limits] websocket_max`, `websocket_idle_timeout`, and `graceful_timeout`.
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        WebSockets {
            slots: tunnel::Slots::new(s.limits.websocket_max),
            settings: tunnel::Settings {
                idle: s.limits.websocket_idle_timeout,
                grace: s.graceful_timeout,
            },
        }
    }
}

/// Marks the answer that opened a tunnel: its access-log line is written at the
/// tunnel's close, not when the answer is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tunneled;

impl Front {
    /// Refuses (and counts) a handshake with `resp`.
    pub(super) fn refuse_upgrade(
        &self,
        why: UpgradeRefusal,
        resp: Response<Body>,
    ) -> (RouteKind, Response<Body>) {
        self.metrics.upgrade_refused(why);
        (RouteKind::Other, resp)
    }

    /// A handshake to a `fallthrough` mount's path with no file there goes to the app,
    /// as any request would (nginx's `try_files $uri @app`); the mount's own answer to a
    /// HEAD decides, without serving anything.
    pub(super) async fn falls_to_app(
        &self,
        id: crate::static_files::MountId,
        path: &crate::normal_path::NormalPath,
        req: &Request<ClientBody>,
    ) -> bool {
        if self.proxy.is_none() || !self.statics.falls_through(id) {
            return false;
        }
        let probe = Request::head(req.uri().clone())
            .body(())
            .map(|r| r.into_parts().0);
        match probe {
            Ok(parts) => {
                self.statics.serve(id, path, &parts).await.status() == StatusCode::NOT_FOUND
            }
            Err(_) => false,
        }
    }

    /// Opens the WebSocket `hs` asks for (see the module doc).
    pub(super) async fn open_websocket(
        &self,
        mut req: Request<ClientBody>,
        hs: Handshake,
        conn: &ConnInfo,
        stamp: &Stamp,
        activity: &Arc<Activity>,
    ) -> (RouteKind, Response<Body>) {
        let Some(proxy) = &self.proxy else {
            return (RouteKind::Other, respond::error_response(Failure::NotFound));
        };
        if activity.is_stopping() {
            let resp = respond::status_page(StatusCode::SERVICE_UNAVAILABLE);
            return self.refuse_upgrade(UpgradeRefusal::Draining, resp);
        }
        if !hs.h2 && !activity.is_held() {
            // The front's check passed where the guard's did not: the bytes after
            // this head were not held, so they cannot be a tunnel's.
            tracing::debug!("WebSocket handshake the guard did not hold; refused");
            let resp = respond::error_response(Failure::BadRequest);
            return self.refuse_upgrade(UpgradeRefusal::Handshake, resp);
        }
        let Some(mut slot) = self.websockets.slots.take() else {
            tracing::warn!("websocket_max WebSockets open; handshake refused");
            let resp = respond::status_page(StatusCode::SERVICE_UNAVAILABLE);
            return self.refuse_upgrade(UpgradeRefusal::Cap, resp);
        };
        let started = Instant::now();
        let logged = self
            .access_log
            .as_ref()
            .map(|log| (log.clone(), LoggedHead::of(&req, &stamp.client)));
        let on_upgrade = hs.h2.then(|| hyper::upgrade::on(&mut req));
        let (parts, _) = req.into_parts();
        let forwarded = proxy.forward_upgrade(parts, conn, stamp, &hs).await;
        let (resp, app, first, worker_gone) = match forwarded {
            Ok(Upgraded::Tunnel {
                resp,
                app,
                first,
                worker_gone,
            }) => (resp, app, first, worker_gone),
            Ok(Upgraded::Answer(resp)) => return (RouteKind::App, resp),
            Err(failure) => return (RouteKind::App, respond::error_response(failure)),
        };
        slot.opened();
        let upstream = resp.extensions().get::<Upstream>().copied();
        let log = logged.map(|(log, head)| {
            let id = String::from_utf8_lossy(&stamp.request_id).into_owned();
            (log, head.into_entry(resp.status(), id, upstream))
        });
        let side = AppSide {
            app,
            first,
            worker_gone,
            closing: Closing { slot, log, started },
            settings: self.websockets.settings,
        };
        match on_upgrade {
            None => activity.hand_tunnel(side),
            Some(on_upgrade) => {
                let stop = activity.stop().clone();
                // Its connection is busy while it lasts (`keep_alive` does not end it).
                let open = activity.open_tunnel();
                tokio::spawn(async move {
                    let _open = open;
                    match on_upgrade.await {
                        Ok(stream) => {
                            let stream = TokioIo::new(stream);
                            tunnel::run(stream, bytes::Bytes::new(), side, &stop).await
                        }
                        Err(e) => tracing::debug!(error = %e, "HTTP/2 WebSocket stream gone"),
                    }
                });
            }
        }
        let mut resp = resp.map(|()| respond::empty());
        resp.extensions_mut().insert(Tunneled);
        (RouteKind::App, resp)
    }
}
