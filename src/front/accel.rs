//! `X-Accel-Redirect` (nginx) and `X-Sendfile` (Apache's mod_xsendfile): an app's
//! view answers with a header naming a file, and the front serves that file from a
//! static mount instead of the app's body, the django-sendfile2 pattern for
//! protected downloads. The app decides who may download; the front streams the
//! file with the static layer's ETag, Last-Modified, Range and precompressed
//! variants, and no Python thread waits on the client. Also the app's
//! `X-Accel-Limit-Rate`, which paces its answer or the file (`limit_rate`).
//!
//! `X-Accel-Redirect` names a URL path under a mount (an `internal` one, usually);
//! `X-Sendfile` names an absolute file path inside a mount's directory. The app's
//! body is dropped first, which releases its worker. Of its fields, those nginx
//! copies onto the file's answer (the entries marked `redirect` in
//! `ngx_http_upstream.c`'s `ngx_http_upstream_headers_in` table) are kept:
//! `Content-Type`, `Content-Disposition`, `Cache-Control`, `Expires` (and
//! `Accept-Ranges`, which the front leaves to the static layer), plus every
//! `Set-Cookie`. On an error answer (the file is missing, a precondition or range
//! fails) only the cookies stay, as nginx's error page keeps them: what the view did
//! to the session holds whatever the file; a `Content-Disposition` would turn the
//! error page into a download. A target outside every mount gets 404 (and a warning
//! that names it); a path that escapes its mount is refused by the static layer; a
//! directory gets 404, never a redirect naming the internal path.

use crate::proxy::{AccelTarget, InternalRedirect, LimitRate, Upstream};
use crate::respond::{self, Body, Failure};
use crate::static_files::StaticFiles;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};

use super::limit_rate;

/// The app's fields that carry over to the file's successful response.
const KEPT: [header::HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::EXPIRES,
];

/// Of those, the ones a 304 may carry (RFC 9110 §15.4.5).
const KEPT_ON_304: [header::HeaderName; 2] = [header::CACHE_CONTROL, header::EXPIRES];

/// Does what the app's control fields asked: serves the file it names, paces the
/// answer; else returns `resp` as it is.
pub async fn follow(statics: &StaticFiles, mut resp: Response<Body>) -> Response<Body> {
    let rate = resp.extensions_mut().remove::<LimitRate>();
    if let Some(asked) = resp.extensions_mut().remove::<InternalRedirect>() {
        resp = serve_file(statics, asked, resp).await;
    }
    match rate {
        Some(LimitRate(rate)) => limit_rate::limit(resp, rate),
        None => resp,
    }
}

/// The file `asked` names, with what the app's answer `app` keeps on it.
async fn serve_file(
    statics: &StaticFiles,
    asked: InternalRedirect,
    app: Response<Body>,
) -> Response<Body> {
    let upstream = app.extensions().get::<Upstream>().copied();
    // The app's body goes now: its worker is free before the file is sent.
    let (app, _) = app.into_parts();
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
    if file.status().is_redirection() && file.status() != StatusCode::NOT_MODIFIED {
        // A directory: its redirect would name the internal path to the client.
        tracing::debug!(target = ?asked.target, "X-Accel target is a directory");
        file = respond::error_response(Failure::NotFound);
    }
    keep_app_fields(&app.headers, &mut file);
    if let Some(u) = upstream {
        file.extensions_mut().insert(u);
    }
    file
}

/// Copies the app's fields that nginx keeps onto the file's answer (see the module
/// doc): all of `KEPT` on a success, the cacheability on a 304, only the cookies on
/// an error.
fn keep_app_fields(app: &HeaderMap, file: &mut Response<Body>) {
    let status = file.status();
    let kept: &[header::HeaderName] = if status.is_success() {
        &KEPT
    } else if status == StatusCode::NOT_MODIFIED {
        &KEPT_ON_304
    } else {
        &[]
    };
    let h = file.headers_mut();
    for name in kept {
        let mut values = app.get_all(name).iter();
        if let Some(first) = values.next() {
            h.insert(name.clone(), first.clone());
            // Cache-Control is a list; of the others the first counts, as in nginx.
            if name == header::CACHE_CONTROL {
                for v in values {
                    h.append(name.clone(), v.clone());
                }
            }
        }
    }
    for cookie in app.get_all(header::SET_COOKIE) {
        h.append(header::SET_COOKIE, cookie.clone());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn app_head() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/pdf".parse().unwrap());
        h.append(header::CONTENT_TYPE, "text/html".parse().unwrap());
        h.insert(header::CONTENT_DISPOSITION, "attachment".parse().unwrap());
        h.append(header::CACHE_CONTROL, "private".parse().unwrap());
        h.append(header::CACHE_CONTROL, "max-age=60".parse().unwrap());
        h.insert(
            header::EXPIRES,
            "Thu, 01 Jan 2037 00:00:00 GMT".parse().unwrap(),
        );
        h.append(header::SET_COOKIE, "a=1".parse().unwrap());
        h.append(header::SET_COOKIE, "b=2".parse().unwrap());
        h.insert(header::ETAG, "\"app\"".parse().unwrap());
        h
    }

    fn file(status: StatusCode) -> Response<Body> {
        let mut r = Response::new(respond::empty());
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/octet-stream".parse().unwrap(),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            "public, max-age=3600".parse().unwrap(),
        );
        r
    }

    fn values(r: &Response<Body>, name: header::HeaderName) -> Vec<&str> {
        r.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn a_served_file_keeps_what_nginx_keeps() {
        for status in [StatusCode::OK, StatusCode::PARTIAL_CONTENT] {
            let mut r = file(status);
            keep_app_fields(&app_head(), &mut r);
            assert_eq!(values(&r, header::CONTENT_TYPE), ["application/pdf"]);
            assert_eq!(values(&r, header::CONTENT_DISPOSITION), ["attachment"]);
            assert_eq!(values(&r, header::CACHE_CONTROL), ["private", "max-age=60"]);
            assert_eq!(values(&r, header::EXPIRES).len(), 1);
            assert_eq!(values(&r, header::SET_COOKIE), ["a=1", "b=2"]);
            assert!(
                r.headers().get(header::ETAG).is_none(),
                "the file's validators only"
            );
        }
    }

    #[test]
    fn an_error_keeps_only_the_cookies() {
        for status in [
            StatusCode::NOT_FOUND,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::RANGE_NOT_SATISFIABLE,
        ] {
            let mut r = file(status);
            keep_app_fields(&app_head(), &mut r);
            assert_eq!(
                values(&r, header::CONTENT_TYPE),
                ["application/octet-stream"]
            );
            assert!(r.headers().get(header::CONTENT_DISPOSITION).is_none());
            assert!(r.headers().get(header::EXPIRES).is_none());
            assert_eq!(values(&r, header::CACHE_CONTROL), ["public, max-age=3600"]);
            assert_eq!(values(&r, header::SET_COOKIE), ["a=1", "b=2"]);
        }
    }

    #[test]
    fn a_304_keeps_the_cacheability() {
        let mut r = file(StatusCode::NOT_MODIFIED);
        keep_app_fields(&app_head(), &mut r);
        assert_eq!(values(&r, header::CACHE_CONTROL), ["private", "max-age=60"]);
        assert_eq!(values(&r, header::EXPIRES).len(), 1);
        assert!(r.headers().get(header::CONTENT_DISPOSITION).is_none());
        assert_eq!(values(&r, header::SET_COOKIE), ["a=1", "b=2"]);
    }

    #[test]
    fn an_app_without_a_type_leaves_the_files() {
        let mut r = file(StatusCode::OK);
        keep_app_fields(&HeaderMap::new(), &mut r);
        assert_eq!(
            values(&r, header::CONTENT_TYPE),
            ["application/octet-stream"]
        );
        assert_eq!(values(&r, header::CACHE_CONTROL), ["public, max-age=3600"]);
    }
}
