//! `X-Accel-Redirect` (nginx) and `X-Sendfile` (Apache's mod_xsendfile): an app's
//! view answers with a header naming a file, and the front serves that file from a
//! static mount instead of the app's body, the django-sendfile2 pattern for
//! protected downloads. The app decides who may download; the front streams the
//! file with the static layer's ETag, Last-Modified, Range and precompressed
//! variants, and no Python thread waits on the client.
//!
//! `X-Accel-Redirect` names a URL path under a mount (an `internal` one, usually);
//! `X-Sendfile` names an absolute file path inside a mount's directory. The app's
//! body is dropped first, which releases its worker; its `Content-Disposition` and
//! `Cache-Control` are kept. A target outside every mount gets 404 (and a warning
//! that names it); a path that escapes its mount is refused by the static layer.

use crate::proxy::{AccelTarget, InternalRedirect, Upstream};
use crate::respond::{self, Body, Failure};
use crate::static_files::StaticFiles;
use http::{header, Method, Request, Response};

/// The app's fields that carry over to the file's response.
const KEPT: [header::HeaderName; 2] = [header::CONTENT_DISPOSITION, header::CACHE_CONTROL];

/// Serves the file `resp` asks for, if it asks; else returns it as it is.
pub async fn follow(statics: &StaticFiles, mut resp: Response<Body>) -> Response<Body> {
    let Some(asked) = resp.extensions_mut().remove::<InternalRedirect>() else {
        return resp;
    };
    let upstream = resp.extensions().get::<Upstream>().copied();
    // The app's body goes now: its worker is free before the file is sent.
    let (app, _) = resp.into_parts();
    let target = match &asked.target {
        AccelTarget::Url(url) => statics.redirect_target(url),
        AccelTarget::File(path) => statics.sendfile_target(path),
    };
    let mut file = match target {
        Some((mount, path, uri)) => {
            statics
                .serve(mount, &path, &file_request(&asked, uri))
                .await
        }
        None => {
            tracing::warn!(
                target = ?asked.target,
                "the app asked for a file no static mount serves"
            );
            respond::error_response(Failure::NotFound)
        }
    };
    for name in KEPT {
        if let Some(v) = app.headers.get(&name) {
            file.headers_mut().insert(name, v.clone());
        }
    }
    if let Some(u) = upstream {
        file.extensions_mut().insert(u);
    }
    file
}

/// The client's request, as a GET (or HEAD) of the file: its Range, conditionals
/// and Accept-Encoding apply.
fn file_request(asked: &InternalRedirect, uri: http::Uri) -> http::request::Parts {
    let method = if asked.method == Method::HEAD {
        Method::HEAD
    } else {
        Method::GET
    };
    let (mut parts, ()) = Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .expect("a method and a parsed URI make a request")
        .into_parts();
    parts.headers = asked.headers.clone();
    parts
}
