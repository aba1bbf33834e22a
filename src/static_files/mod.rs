//! Static mounts: the front hands a request whose path falls under a `[[static]]`
//! url prefix to `StaticFiles::serve`, which answers it from the mount's directory.
//!
//! A request goes through three steps, decided before anything is rendered:
//! 1. `decide`: method (405), the bare prefix (301 to the slash form), and the path,
//!    the request's normal form (`normal_path`: decoded, no `.` or `..`, slashes
//!    merged), so the file served is the one the path that chose the mount names.
//!    Backslashes, names that are not UTF-8 and dotfiles are refused here (404)
//!    before any file-system call.
//! 2. `compressed_path`: a GET/HEAD of a text file that has no precompressed
//!    sibling, from a client that accepts gzip or br, gets it compressed
//!    (`compressed`: once per file version, cached), unless it asks for a range.
//! 3. `fast_path`: a GET/HEAD without Range or If-Match whose file, precompressed
//!    siblings included, is fully known to the open-file cache is answered from memory
//!    with precomputed headers (ETag, Last-Modified, Content-Type); 304s too.
//! 4. Everything else goes to tower-http's ServeDir over our `ContainedBackend`
//!    (containment, symlinks, the cache), plus what ServeDir lacks: If-Range, an index
//!    name other than index.html, charset, Cache-Control, our error pages.
//!
//! Multi-range requests get the whole file (200), as RFC 9110 allows.

mod backend;
mod cache;
mod compressed;
mod headers;
mod immutable;

pub(crate) use headers::is_text;

use bytes::Bytes;
use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::services::fs::{DefaultServeDirFallback, ServeDir};

use crate::config::{Compression, FileCache, StaticMount};
use crate::normal_path::NormalPath;
use crate::respond::{self, Body, Failure};
use backend::ContainedBackend;
use cache::{Entry, OpenFileCache, Resolved};
use compressed::{CompressedCache, Variant};
use headers::Encoding;
use immutable::Immutable;

/// All static mounts and their shared open-file cache.
pub struct StaticFiles {
    /// Sorted by url prefix length, longest first, so the first match wins.
    mounts: Vec<Mount>,
    cache: Arc<OpenFileCache>,
    dev_mode: bool,
    /// `[compression]`: text files without a sibling are compressed when enabled
    /// and at least `min_size` bytes long (as the app's answers are).
    compression: Compression,
    compressed: CompressedCache,
}

/// Index into `StaticFiles::mounts`, handed out by `route`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountId(usize);

struct Mount {
    config: StaticMount,
    /// Canonical: every served file's canonical path must start with it.
    root: PathBuf,
    cache_control: Option<HeaderValue>,
    /// Files that get a year's `immutable` caching instead of `cache_control`.
    immutable: Option<Immutable>,
    /// `[[static]] headers`, added to 200, 206 and 304.
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// The file system behind `serve_dir` (and the compressed path).
    backend: ContainedBackend,
    serve_dir: ServeDir<DefaultServeDirFallback, ContainedBackend>,
}

/// Characters encoded when a file name goes into a URI path segment: all but
/// RFC 3986's unreserved characters and the sub-delimiters, `:` and `@` (`pchar`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Why a request path is refused before touching the disk (all answered with 404).
/// What a normal path cannot hold (`..`, `.`, NUL) never gets here.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum PathRefusal {
    #[error("the path is not valid UTF-8 once decoded")]
    NotUtf8,
    #[error("backslash in the path")]
    Backslash,
    #[error("a dotfile")]
    Dotfile,
}

/// What a request resolved to, before any file is looked at.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    MethodNotAllowed,
    /// Not GET or HEAD on a mount that falls through to the app: 405 only if the
    /// file exists, else 404, which sends the request to the app (nginx's
    /// `try_files $uri @app` passes a POST for a missing file on).
    MethodNotAllowedIfFound(Target),
    /// `/static` for the mount `/static/`: 301 to this location.
    AddSlash(String),
    Refused(PathRefusal),
    Serve(Target),
}

/// A contained request path inside one mount.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// The path ServeDir is given: the normal path below the mount, each segment
    /// percent-encoded again for ServeDir's one decoding, index appended to a path
    /// ending in '/', query kept (for its directory redirect).
    uri: http::Uri,
    /// The decoded file-system path below the root, the cache key.
    fs_path: PathBuf,
}

impl StaticFiles {
    pub fn new(
        mounts: &[StaticMount],
        cache_settings: &FileCache,
        dev_mode: bool,
    ) -> std::io::Result<Self> {
        let cache = Arc::new(OpenFileCache::new(cache_settings, dev_mode));
        let mut built = mounts
            .iter()
            .map(|m| Mount::new(m, cache.clone(), cache_settings.revalidate))
            .collect::<std::io::Result<Vec<_>>>()?;
        built.sort_by_key(|m| std::cmp::Reverse(m.config.url.len()));
        Ok(StaticFiles {
            mounts: built,
            cache,
            dev_mode,
            compression: Compression {
                enabled: true,
                min_size: crate::defaults::COMPRESSION_MIN_SIZE,
            },
            compressed: CompressedCache::new(
                crate::defaults::STATIC_COMPRESSED_BYTES,
                cache_settings.max_entries,
            ),
        })
    }

    /// `[compression]` for static files too (on, 1 KiB, unless told).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The mount whose url prefix owns this request path (longest prefix wins). The
    /// prefix without its trailing slash belongs to it too (it gets a 301).
    pub fn route(&self, path: &NormalPath) -> Option<MountId> {
        self.mounts
            .iter()
            .position(|m| path.starts_with(&m.config.url) || path.is(m.bare_prefix()))
            .map(MountId)
    }

    /// true for a mount only `X-Accel-Redirect` reaches.
    pub fn is_internal(&self, id: MountId) -> bool {
        self.mounts[id.0].config.internal
    }

    /// The mount, path and request target an app's `X-Accel-Redirect: /url/path`
    /// names, internal mounts included. The path is matched in its normal form, as a
    /// client's is; one with a `.` or `..` segment is refused, as nginx refuses an
    /// unsafe URI there (a file name the app did not check must not climb into
    /// another mount).
    pub fn redirect_target(&self, value: &str) -> Option<(MountId, NormalPath, http::Uri)> {
        if !value.starts_with('/') {
            return None;
        }
        let uri: http::Uri = value.parse().ok()?;
        let path = NormalPath::parse(uri.path().as_bytes()).ok()?;
        if path.had_dot_segments() {
            return None;
        }
        Some((self.route(&path)?, path, uri))
    }

    /// The mount and request target of an app's `X-Sendfile: /abs/file/path`: the
    /// mount whose directory holds the path (no `..` allowed), its URL prefix plus
    /// the rest of the path.
    pub fn sendfile_target(&self, value: &str) -> Option<(MountId, NormalPath, http::Uri)> {
        let path = std::path::Path::new(value);
        let plain = path.is_absolute()
            && path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
        if !plain {
            return None;
        }
        self.mounts.iter().enumerate().find_map(|(i, m)| {
            let rest = path
                .strip_prefix(&m.root)
                .or_else(|_| path.strip_prefix(&m.config.dir))
                .ok()?;
            let encoded: Vec<String> = rest
                .iter()
                .map(|part| utf8_percent_encode(&part.to_string_lossy(), PATH_SEGMENT).to_string())
                .collect();
            let uri: http::Uri = format!("{}{}", m.config.url, encoded.join("/"))
                .parse()
                .ok()?;
            let path = NormalPath::parse(uri.path().as_bytes()).ok()?;
            Some((MountId(i), path, uri))
        })
    }

    /// true when a 404 from this mount should go to the app instead.
    pub fn falls_through(&self, id: MountId) -> bool {
        self.mounts[id.0].config.fallthrough
    }

    /// (hits, misses) of the open-file cache since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Serves a request for that mount: the file `path` (the request's normal path,
    /// which chose the mount) names. Needs only the head of the request.
    pub async fn serve(&self, id: MountId, path: &NormalPath, req: &Parts) -> Response<Body> {
        let mount = &self.mounts[id.0];
        let (response, target) = match mount.decide(path, req) {
            Decision::MethodNotAllowed => (method_not_allowed(), None),
            Decision::MethodNotAllowedIfFound(target) => {
                match tokio::fs::symlink_metadata(&target.fs_path).await {
                    Ok(_) => (method_not_allowed(), None),
                    Err(_) => (respond::error_response(Failure::NotFound), None),
                }
            }
            Decision::AddSlash(location) => {
                (redirect(StatusCode::MOVED_PERMANENTLY, &location), None)
            }
            Decision::Refused(why) => {
                tracing::debug!(path = req.uri.path(), %why, "static path refused");
                (respond::error_response(Failure::NotFound), None)
            }
            Decision::Serve(target) => {
                let response = match self.compressed_path(mount, &target, req).await {
                    Some(response) => response,
                    None => match self.fast_path(mount, &target, req) {
                        Some(response) => response,
                        None => mount.via_serve_dir(&target, req).await,
                    },
                };
                (response, Some(target))
            }
        };
        self.finish(mount, response, target.as_ref())
    }

    /// Whether a file of this name is one the mount may compress: a text type.
    fn compresses(&self, target: &Target) -> bool {
        self.compression.enabled
            && headers::content_type(&target.fs_path)
                .to_str()
                .is_ok_and(is_text)
    }

    /// Whether the answers for this file vary by Accept-Encoding: a mount with
    /// siblings, or a file this layer compresses (a text file, in memory, of at
    /// least `min_size`, as the cache last saw it), as nginx's `gzip_vary` marks
    /// only what its gzip filter would compress.
    fn varies(&self, mount: &Mount, target: &Target) -> bool {
        if mount.config.precompressed {
            return true;
        }
        let len = match self.cache.stale(&target.fs_path) {
            Some(Entry::Found(r)) if r.body.is_some() => r.meta.len,
            _ => return false,
        };
        self.compresses(target)
            && (self.compression.min_size..=compressed::MAX_SOURCE).contains(&len)
    }

    /// A text file without a precompressed sibling, compressed by the encoding the
    /// client prefers. `None` sends the request on: no such encoding accepted, a
    /// range or `If-Match`/`If-Unmodified-Since` asked (those are answered on the
    /// file itself, as nginx's gzip filter leaves ranges to uncompressed answers), a
    /// sibling to serve, a file too small, too large for the memory cache, or one
    /// that does not get smaller.
    async fn compressed_path(
        &self,
        mount: &Mount,
        target: &Target,
        req: &Parts,
    ) -> Option<Response<Body>> {
        let h = &req.headers;
        if !self.compresses(target)
            || [
                header::RANGE,
                header::IF_RANGE,
                header::IF_MATCH,
                header::IF_UNMODIFIED_SINCE,
            ]
            .iter()
            .any(|n| h.contains_key(n))
        {
            return None;
        }
        let accepted = headers::preferred_encodings(h);
        let encoding = *accepted.first()?;
        let file = mount.backend.resolve(target.fs_path.clone()).await.ok()?;
        let len = file.meta.len;
        if file.meta.is_dir
            || file.body.is_none()
            || len < self.compression.min_size
            || len > compressed::MAX_SOURCE
        {
            return None;
        }
        if mount.config.precompressed {
            for e in &accepted {
                let mut sibling = target.fs_path.clone().into_os_string();
                sibling.push(e.extension());
                if mount.backend.resolve(sibling.into()).await.is_ok() {
                    return None; // ServeDir serves the sibling: it is preferred
                }
            }
        }
        let variant = self.compressed.get(&file, encoding).await?;
        Some(render_compressed(target, req, &file, &variant, encoding))
    }

    /// Answers from the cache when everything the answer depends on is in it and fresh;
    /// `None` sends the request to ServeDir (which fills the cache for next time).
    fn fast_path(&self, mount: &Mount, target: &Target, req: &Parts) -> Option<Response<Body>> {
        let h = &req.headers;
        if h.contains_key(header::RANGE)
            || h.contains_key(header::IF_MATCH)
            || h.contains_key(header::IF_UNMODIFIED_SINCE)
        {
            return None; // rare: ServeDir has the full logic
        }
        // ServeDir looks at the plain path first: a directory means a redirect.
        let primary = match self.cache.peek(&target.fs_path)? {
            Entry::Found(r) if r.meta.is_dir => return None,
            other => other,
        };
        let mut chosen = None;
        if mount.config.precompressed {
            for encoding in headers::preferred_encodings(h) {
                let mut sibling = target.fs_path.clone().into_os_string();
                sibling.push(encoding.extension());
                match self.cache.peek(&PathBuf::from(sibling))? {
                    Entry::Found(r) if !r.meta.is_dir => {
                        chosen = Some((r, encoding));
                        break;
                    }
                    _ => continue,
                }
            }
        }
        let (file, encoding) = match (chosen, primary) {
            (Some(c), _) => c,
            (None, Entry::Found(r)) => (r, Encoding::Identity),
            (None, Entry::Missing) => {
                self.cache.record_hit();
                return Some(respond::error_response(Failure::NotFound));
            }
        };
        let body = file.body.clone()?; // large files stream through ServeDir
        self.cache.record_hit();
        Some(render_cached(mount, target, req, &file, body, encoding))
    }

    /// What every static response gets on its way out: our error pages, the charset,
    /// and Cache-Control on success and 304 only.
    fn finish(
        &self,
        mount: &Mount,
        mut response: Response<Body>,
        target: Option<&Target>,
    ) -> Response<Body> {
        let status = response.status();
        if status == StatusCode::NOT_FOUND && !response.headers().contains_key(header::CONTENT_TYPE)
        {
            return respond::status_page(status);
        }
        if status.is_server_error() {
            return respond::status_page(status);
        }
        headers::fix_charset(response.headers_mut());
        let cacheable = matches!(
            status,
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        );
        if cacheable {
            let value = if self.dev_mode {
                Some(HeaderValue::from_static("no-cache"))
            } else if target.is_some_and(|t| mount.is_immutable(t)) {
                Some(immutable::IMMUTABLE)
            } else {
                mount.cache_control.clone()
            };
            if let Some(value) = value {
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            for (name, value) in &mount.headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let varies = target.is_some_and(|t| self.varies(mount, t));
        if varies && cacheable {
            // Every answer for a file that has other encodings says so, the
            // uncompressed one and a 304 too (RFC 9110 §15.4.5), so a cache never
            // hands one client's encoding to another.
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        response
    }
}

impl Mount {
    fn new(
        config: &StaticMount,
        cache: Arc<OpenFileCache>,
        revalidate: std::time::Duration,
    ) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(&config.dir)?;
        let backend = ContainedBackend::new(root.clone(), config.dotfiles, cache);
        let mut serve_dir = ServeDir::with_backend(&root, backend.clone())
            .redirect_path_prefix(config.url.trim_end_matches('/'))
            // RFC 9110 lets a server ignore Range; a whole 200 beats a 416 for clients.
            .ignore_multi_range_requests(true);
        if config.precompressed {
            serve_dir = serve_dir.precompressed_br().precompressed_gzip();
        }
        let cache_control = match &config.cache_control {
            Some(cc) => Some(HeaderValue::from_str(cc).map_err(std::io::Error::other)?),
            None => None,
        };
        let headers = config
            .headers
            .iter()
            .map(|(n, v)| {
                Ok((
                    n.parse().map_err(std::io::Error::other)?,
                    v.parse().map_err(std::io::Error::other)?,
                ))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Mount {
            immutable: config
                .immutable
                .map(|mode| Immutable::new(mode, &root, revalidate)),
            config: config.clone(),
            root,
            cache_control,
            headers,
            backend,
            serve_dir,
        })
    }

    /// Whether the file `target` names never changes under its name.
    fn is_immutable(&self, target: &Target) -> bool {
        let Some(policy) = &self.immutable else {
            return false;
        };
        target
            .fs_path
            .strip_prefix(&self.root)
            .is_ok_and(|rel| policy.covers(rel))
    }

    fn bare_prefix(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }

    fn decide(&self, path: &NormalPath, req: &Parts) -> Decision {
        let readable = req.method == Method::GET || req.method == Method::HEAD;
        if !readable && !self.config.fallthrough {
            return Decision::MethodNotAllowed;
        }
        if path.is(self.bare_prefix()) {
            if !readable {
                return Decision::MethodNotAllowed;
            }
            let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            return Decision::AddSlash(format!("{}{query}", self.config.url));
        }
        let rest = path.strip_prefix(&self.config.url).unwrap_or(b"");
        match self.target(rest, req.uri.query()) {
            Ok(target) if !readable => Decision::MethodNotAllowedIfFound(target),
            Ok(target) => Decision::Serve(target),
            Err(why) => Decision::Refused(why),
        }
    }

    /// Checks the part of the normal path below the mount prefix, encodes it for
    /// ServeDir and appends the index name to a directory path.
    fn target(&self, rest: &[u8], query: Option<&str>) -> Result<Target, PathRefusal> {
        let mut uri_path = String::with_capacity(rest.len() + self.config.index.len() + 2);
        let mut fs_path = self.root.clone();
        // A normal path has no empty segment but the one after a trailing '/'.
        for segment in rest.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
            let name = std::str::from_utf8(segment).map_err(|_| PathRefusal::NotUtf8)?;
            if name.contains('\\') {
                return Err(PathRefusal::Backslash);
            }
            if name.starts_with('.') && !self.config.dotfiles {
                return Err(PathRefusal::Dotfile);
            }
            uri_path.push('/');
            uri_path.extend(utf8_percent_encode(name, PATH_SEGMENT));
            fs_path.push(name);
        }
        if rest.is_empty() || rest.ends_with(b"/") {
            // ServeDir only knows "index.html": name the index ourselves.
            uri_path.push('/');
            uri_path.extend(utf8_percent_encode(&self.config.index, PATH_SEGMENT));
            fs_path.push(&self.config.index);
        }
        if let Some(q) = query {
            uri_path.push('?');
            uri_path.push_str(q);
        }
        let uri = uri_path.parse().map_err(|_| PathRefusal::NotUtf8)?;
        Ok(Target { uri, fs_path })
    }

    /// The full ServeDir path: Range, If-Match, first sight of a file, large files.
    async fn via_serve_dir(&self, target: &Target, req: &Parts) -> Response<Body> {
        let response = self.call_serve_dir(target, req, &req.headers).await;
        let Some(if_range) = req.headers.get(header::IF_RANGE) else {
            return response;
        };
        if response.status() != StatusCode::PARTIAL_CONTENT
            || headers::if_range_matches(
                if_range,
                response.headers().get(header::ETAG),
                response.headers().get(header::LAST_MODIFIED),
            )
        {
            return response;
        }
        // The client's copy is stale: the range would splice two versions. Send it all.
        let mut without_range = req.headers.clone();
        without_range.remove(header::RANGE);
        self.call_serve_dir(target, req, &without_range).await
    }

    async fn call_serve_dir(
        &self,
        target: &Target,
        req: &Parts,
        headers: &HeaderMap,
    ) -> Response<Body> {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = target.uri.clone();
        *request.headers_mut() = headers.clone();
        let mut serve_dir = self.serve_dir.clone();
        match serve_dir.try_call(request).await {
            Ok(response) => response.map(|b| b.map_err(respond::BoxError::from).boxed_unsync()),
            Err(e) if is_not_found(&e) => respond::error_response(Failure::NotFound),
            Err(e) if e.get_ref().is_some_and(|i| i.is::<backend::NoFileSlot>()) => {
                respond::error_response(Failure::SpoolFull)
            }
            Err(e) => {
                // `?`: the path is the client's, quoted with its controls escaped, so
                // a `%0a` or `%1b` in it cannot forge a line or reach a terminal.
                tracing::error!(error = %e, path = ?target.fs_path, "static file failed");
                respond::error_response(Failure::Internal)
            }
        }
    }
}

fn is_not_found(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    ) || backend::names_nothing(e)
}

/// A 200 or 304 from a cached file: the same headers ServeDir would send.
fn render_cached(
    mount: &Mount,
    target: &Target,
    req: &Parts,
    file: &Resolved,
    body: Bytes,
    encoding: Encoding,
) -> Response<Body> {
    let mut response = Response::new(respond::empty());
    if headers::not_modified(&req.headers, file.etag.as_ref(), file.meta.modified) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        put_validators(response.headers_mut(), file);
        return response;
    }
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, headers::content_type(&target.fs_path));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if encoding != Encoding::Identity {
        h.insert(header::CONTENT_ENCODING, encoding.header_value());
    }
    if mount.config.precompressed {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    put_validators(h, file);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if req.method != Method::HEAD {
        *response.body_mut() = respond::full(body);
    }
    response
}

/// A 200 or 304 of a compressed representation: its own ETag, `Content-Encoding`,
/// and no `Accept-Ranges` (a range is answered on the file itself).
fn render_compressed(
    target: &Target,
    req: &Parts,
    file: &Resolved,
    variant: &Variant,
    encoding: Encoding,
) -> Response<Body> {
    let mut response = Response::new(respond::empty());
    let h = response.headers_mut();
    h.insert(header::LAST_MODIFIED, file.last_modified.clone());
    h.insert(header::ETAG, variant.etag.clone());
    if headers::not_modified(&req.headers, Some(&variant.etag), file.meta.modified) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    h.insert(header::CONTENT_TYPE, headers::content_type(&target.fs_path));
    h.insert(header::CONTENT_ENCODING, encoding.header_value());
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(variant.body.len()),
    );
    if req.method != Method::HEAD {
        *response.body_mut() = respond::full(variant.body.clone());
    }
    response
}

fn put_validators(h: &mut HeaderMap, file: &Resolved) {
    h.insert(header::LAST_MODIFIED, file.last_modified.clone());
    if let Some(etag) = &file.etag {
        h.insert(header::ETAG, etag.clone());
    }
}

fn method_not_allowed() -> Response<Body> {
    let mut response = respond::error_response(Failure::MethodNotAllowed);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(respond::empty());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests;
