//! The front: the one function that composes the tower service stack every client
//! request goes through, and the routing step at its core (static mount, app or 404).

use crate::proxy::{ConnInfo, Proxy};
use crate::respond::{self, Body, Failure};
use crate::router::{self, Route};
use crate::static_files::StaticFiles;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

/// Everything a request may need, shared by all connections.
pub struct Front {
    pub statics: StaticFiles,
    /// `None` in static-only mode.
    pub proxy: Option<Proxy>,
}

impl Front {
    /// The service for one client connection.
    pub fn service(
        self: &Arc<Self>,
        conn: ConnInfo,
    ) -> impl tower::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
           + Send {
        let front = self.clone();
        let conn = Arc::new(conn);
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::if_not_present(
                header::SERVER,
                HeaderValue::from_static("ferricorn"),
            ))
            .service_fn(move |req: Request<Incoming>| {
                let front = front.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(front.handle(req, &conn).await) }
            })
    }

    async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        match router::route(&self.statics, self.proxy.is_some(), req.uri().path()) {
            Route::Static(id) => {
                let (parts, body) = req.into_parts();
                let resp = self.statics.serve(id, &parts).await;
                match &self.proxy {
                    Some(proxy)
                        if resp.status() == StatusCode::NOT_FOUND
                            && self.statics.falls_through(id) =>
                    {
                        proxy.forward(Request::from_parts(parts, body), conn).await
                    }
                    _ => resp,
                }
            }
            Route::App => match &self.proxy {
                Some(proxy) => proxy.forward(req, conn).await,
                None => respond::error_response(Failure::NotFound),
            },
            Route::NotFound => respond::error_response(Failure::NotFound),
        }
    }
}
