//! Configuration: the TOML file (`file`), the command line (`crate::cli`) merged over
//! it, validated once into `Settings`, which is all the rest of the server reads.

pub mod access_log_format;
mod describe;
mod error;
mod file;
mod flags;
mod workers;
pub mod interpreter;

pub use error::ConfigError;

use crate::cli::Cli;
use crate::defaults;
use crate::net::{parse_bind, BindAddr, RealIpHeader, RealIpHeaderError, TrustedProxies};
pub use ferricorn_wire::worker_args::Interface;
use file::FileConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use workers::WorkerSettings;

/// `[compression]`: the app's responses of a compressible type and at least
/// `min_size` bytes are compressed (the front's `AppCompression` decides).
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    pub enabled: bool,
    pub min_size: u64,
}

/// One `[[static]]` mount.
#[derive(Debug, Clone)]
pub struct StaticMount {
    /// URL prefix, always starting and ending with '/'.
    pub url: String,
    pub dir: PathBuf,
    pub cache_control: Option<String>,
    pub index: String,
    pub precompressed: bool,
    pub fallthrough: bool,
    pub dotfiles: bool,
    /// Reachable only through an app's `X-Accel-Redirect` / `X-Sendfile` (nginx's
    /// `internal`): a client asking for it directly gets 404.
    pub internal: bool,
    /// Which files get `Cache-Control: max-age=31536000, public, immutable`.
    pub immutable: Option<ImmutableFiles>,
    /// Added to 200, 206 and 304 answers (validated header names and values).
    pub headers: Vec<(String, String)>,
}

/// `[[route]]`: what changes for the requests under `prefix` (the longest
/// matching prefix wins; unset keys keep the global settings).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOverride {
    /// Starts with '/'.
    pub prefix: String,
    /// A worker's silence limit on these requests; `Duration::ZERO`: none.
    pub timeout: Option<Duration>,
    pub max_body_size: Option<u64>,
    pub rate: Option<Rate>,
    /// A client's requests stay on one worker (`proxy::sticky`).
    pub sticky: bool,
}

/// Requests per second allowed per client address, plus `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
    /// IPv6 clients are keyed by their first this many bits (`[[route]] ipv6_subnet`).
    pub ipv6_subnet: u8,
}

/// `[[static]] immutable`: how a file whose name never changes its content is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImmutableFiles {
    /// The hashed names of Django's `staticfiles.json` in the mount's directory
    /// (ManifestStaticFilesStorage), re-read when it changes.
    Manifest,
    /// A name with a segment of 8 or more hex digits: `app.3f2a9c1b.js`.
    Pattern,
}

/// The open-file cache for static mounts (nginx's `open_file_cache`).
#[derive(Debug, Clone)]
pub struct FileCache {
    pub max_bytes: u64,
    pub max_entries: usize,
    /// Files larger than this are streamed from disk, never cached.
    pub max_file_size: u64,
    /// How long a cached entry is trusted before its size and mtime are checked again.
    pub revalidate: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_size: u64,
    /// Request bodies above this size are spooled to a temp file.
    pub body_buffer_size: u64,
    /// All request bodies held in memory at once, across connections; beyond it a
    /// body is spooled to a temp file whatever its size.
    pub body_memory: u64,
    /// Request bodies in temp files at once, across connections; a body that needs
    /// one more waits `body_spool_wait`, then gets 503.
    pub body_spool_files: usize,
    /// Bytes of all spooled request bodies together; same wait, same 503.
    pub body_spool_bytes: u64,
    pub body_spool_wait: Duration,
    /// Bytes of one response kept in memory for a slow client; the rest is spooled to
    /// a temp file.
    pub response_buffer_size: usize,
    /// All response bytes held in memory at once for clients that have not taken
    /// them; past it a response goes to its temp file.
    pub response_memory: u64,
    /// Files held open by responses at once (response temp files, static files
    /// streamed from disk).
    pub response_files: usize,
    pub request_line: usize,
    pub request_fields: usize,
    pub request_field_size: usize,
    /// First byte to last byte of a request head; 408 beyond.
    pub head_timeout: Duration,
    /// Longest pause between two reads of a request body; 408 beyond.
    pub body_timeout: Duration,
    /// Longest a write to a client may make no progress.
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    pub http2_max_streams: u32,
    /// Refuse HTTP/1.1 requests without Host (RFC 9112 §3.2, nginx) with 400.
    pub require_host: bool,
    /// WebSockets open at once; a handshake past it gets 503.
    pub websocket_max: usize,
    /// A WebSocket with no byte either way this long is closed.
    pub websocket_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PythonSettings {
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub venv: Option<PathBuf>,
    /// The interpreter the workers run on; None without an app (static only).
    pub interpreter: Option<interpreter::Interpreter>,
    /// Server hooks: a Python file (`.py`) or module.
    pub hooks: Option<String>,
    /// ASGI's `root_path`: empty, or a path that starts with `/` and does not end with one.
    pub root_path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated, effective configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: Option<PathBuf>,
    pub app: Option<String>,
    pub binds: Vec<BindAddr>,
    pub keep_alive: Duration,
    pub graceful_timeout: Duration,
    /// Front threads, each with its own runtime (`crate::shards`).
    pub front_threads: usize,
    pub pid: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub python: PythonSettings,
    pub workers: WorkerSettings,
    pub statics: Vec<StaticMount>,
    /// `[[route]]` overrides, longest prefix first.
    pub routes: Vec<RouteOverride>,
    pub static_cache: FileCache,
    pub limits: Limits,
    /// Peers whose X-Forwarded-* / Forwarded headers are believed.
    pub forwarded_allow_ips: TrustedProxies,
    /// The one field the client address comes from (nginx's `real_ip_header`).
    pub real_ip_header: RealIpHeader,
    /// Every TCP connection starts with a PROXY protocol v1/v2 header.
    pub proxy_protocol: bool,
    /// Mask for the mode of `unix:` bind sockets; None keeps the process's umask.
    pub umask: Option<u32>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub error_logfile: Option<PathBuf>,
    pub access_logfile: Option<String>,
    pub access_log_format: access_log_format::Format,
    pub admin_bind: Option<SocketAddr>,
    /// Certificate and key files; TLS on every TCP bind when set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The plain-HTTP bind that redirects to HTTPS (`[tls] redirect_http`).
    pub redirect_http: Option<SocketAddr>,
    /// The port its redirects name; None: the first TCP bind's.
    pub redirect_https_port: Option<u16>,
    pub compression: Compression,
    pub reload: bool,
    pub reload_extra_files: Vec<PathBuf>,
    pub check_config: bool,
    /// The file's keys with the flags laid over them and every default filled in:
    /// what `--check-config` prints.
    effective: FileConfig,
}

const LOG_LEVELS: &[&str] = &["debug", "info", "warning", "error", "critical"];

impl Settings {
    /// Reads the config file named on the command line (if any), merges the flags
    /// over it and validates the result.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => error::read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// The flags laid over the file, every key left out given its default, and the
    /// result validated section by section.
    fn merge(cli: &Cli, mut f: FileConfig) -> Result<Self, ConfigError> {
        if f.server.umask.is_some_and(|m| m > 0o777) {
            return Err(ConfigError::invalid(
                "[server] umask: expected 0 to 0o777, e.g. umask = 0o007",
            ));
        }
        let origins = Origins::of(cli, &f);
        flags::apply(cli, &mut f)?;
        gunicorn_spellings(&mut f);
        f.fill_defaults();
        if let Some(app) = &f.app {
            validate_app(app)?;
        }
        let python = python(&mut f, origins)?;
        let statics = f
            .statics
            .iter()
            .map(static_mount)
            .collect::<Result<Vec<_>, _>>()?;
        let routes = routes(&f.routes)?;
        let limits = limits(&f.limits, &routes)?;
        let (log_level, log_format, access_log_format) = log(&f.log)?;
        let server = &f.server;
        let settings = Settings {
            config_path: cli.config.clone(),
            app: f.app.clone(),
            binds: given(&server.bind)
                .iter()
                .map(|b| parse_bind(b))
                .collect::<Result<_, _>>()?,
            keep_alive: secs(server.keep_alive),
            graceful_timeout: secs(server.graceful_timeout),
            front_threads: at_least_one("front_threads", given(&server.front_threads))?,
            pid: server.pid.clone(),
            runtime_dir: server.runtime_dir.clone(),
            proxy_protocol: given(&server.proxy_protocol),
            umask: server.umask,
            python,
            workers: workers::workers(&f.workers)?,
            statics,
            routes,
            static_cache: static_cache(&f.static_cache),
            limits,
            forwarded_allow_ips: given(&f.proxy.forwarded_allow_ips)
                .parse::<TrustedProxies>()
                .map_err(|e| ConfigError::invalid(e.to_string()))?,
            real_ip_header: real_ip_header(&f)?,
            log_level,
            log_format,
            // gunicorn users write `--error-logfile -` for stderr, our default.
            error_logfile: f.log.error_logfile.clone().filter(|p| p.as_os_str() != "-"),
            access_logfile: f.log.access_logfile.clone(),
            access_log_format,
            admin_bind: admin_bind(f.admin.bind.as_deref())?,
            tls: tls(&f.tls)?,
            redirect_http: redirect_http(&f.tls)?,
            redirect_https_port: f.tls.redirect_https_port,
            compression: Compression {
                enabled: given(&f.compression.enabled),
                min_size: given(&f.compression.min_size),
            },
            reload: given(&f.reload.enabled),
            reload_extra_files: given(&f.reload.extra_files),
            check_config: cli.check_config,
            effective: f,
        };
        // Last: a wrong value anywhere is the more useful message.
        if settings.app.is_none() && settings.statics.is_empty() {
            return Err(ConfigError::invalid(
                "nothing to serve: give an app (MODULE:CALLABLE, e.g. mysite.wsgi:application) or a static mount (--static URL=DIR)",
            ));
        }
        Ok(settings)
    }
}

/// Where the interpreter and the venv settings came from, taken before the flags are
/// laid over the file (for the messages of `interpreter::choose`).
#[derive(Clone, Copy)]
struct Origins {
    venv: &'static str,
    interpreter: &'static str,
}

impl Origins {
    fn of(cli: &Cli, f: &FileConfig) -> Self {
        Origins {
            venv: match (&cli.venv, &f.python.venv) {
                (Some(_), _) => "--venv",
                (None, Some(_)) => "[python] venv",
                (None, None) => "$VIRTUAL_ENV",
            },
            interpreter: match cli.python {
                Some(_) => "--python",
                None => "[python] interpreter",
            },
        }
    }
}

/// A key `fill_defaults` gave a value to.
fn given<T: Clone + Default>(key: &Option<T>) -> T {
    key.clone().unwrap_or_default()
}

fn secs(key: Option<u64>) -> Duration {
    Duration::from_secs(key.unwrap_or_default())
}

fn at_least_one(name: &str, n: usize) -> Result<usize, ConfigError> {
    match n {
        0 => Err(ConfigError::invalid(format!("{name} must be at least 1"))),
        n => Ok(n),
    }
}

/// `[python]`; with an app, the interpreter is chosen here and written back into
/// the effective config.
fn python(f: &mut FileConfig, origins: Origins) -> Result<PythonSettings, ConfigError> {
    let p = &mut f.python;
    let interpreter = match &f.app {
        Some(_) => {
            let chosen = interpreter::choose(
                p.interpreter.as_deref().map(|i| (i, origins.interpreter)),
                p.venv.as_deref().map(|v| (v, origins.venv)),
                std::env::current_exe()
                    .ok()
                    .as_deref()
                    .and_then(Path::parent),
                std::env::var_os("PATH").as_deref(),
            )
            .map_err(|e| ConfigError::invalid(e.to_string()))?;
            p.interpreter = Some(chosen.path.clone());
            Some(chosen)
        }
        None => None,
    };
    Ok(PythonSettings {
        chdir: p.chdir.clone(),
        pythonpath: given(&p.pythonpath),
        venv: p.venv.clone(),
        interpreter,
        hooks: p.hooks.clone(),
        root_path: root_path(given(&p.root_path))?,
    })
}

/// ASGI's `root_path` is a path prefix: `/api`, never `api` or `/api/`.
fn root_path(p: String) -> Result<String, ConfigError> {
    let ok = p.is_empty()
        || (p.starts_with('/') && !p.ends_with('/') && !p.bytes().any(|b| b.is_ascii_control()));
    if ok {
        Ok(p)
    } else {
        Err(ConfigError::invalid(format!(
            "root_path = {p:?}: expected a path such as \"/api\" (a leading /, no trailing /)"
        )))
    }
}

fn static_cache(c: &file::StaticCacheSection) -> FileCache {
    FileCache {
        max_bytes: given(&c.max_bytes),
        max_entries: given(&c.max_entries),
        max_file_size: given(&c.max_file_size),
        revalidate: Duration::from_millis(given(&c.revalidate_ms)),
    }
}

fn limits(l: &file::LimitsSection, routes: &[RouteOverride]) -> Result<Limits, ConfigError> {
    // A body larger than every spooled body together could only wait for its 503.
    let spool_bytes = given(&l.body_spool_bytes);
    let largest = routes
        .iter()
        .filter_map(|r| r.max_body_size)
        .chain([given(&l.max_body_size)])
        .max()
        .unwrap_or(0);
    if largest > spool_bytes {
        return Err(ConfigError::invalid(format!(
            "a body of max_body_size ({largest} bytes) would never fit in body_spool_bytes ({spool_bytes}): raise [limits] body_spool_bytes (--body-spool-bytes)"
        )));
    }
    Ok(Limits {
        max_body_size: given(&l.max_body_size),
        body_buffer_size: given(&l.body_buffer_size),
        body_memory: given(&l.body_memory),
        body_spool_files: given(&l.body_spool_files),
        body_spool_bytes: given(&l.body_spool_bytes),
        body_spool_wait: secs(l.body_spool_wait),
        response_buffer_size: given(&l.response_buffer_size),
        response_memory: given(&l.response_memory),
        response_files: given(&l.response_files),
        request_line: given(&l.request_line),
        request_fields: given(&l.request_fields),
        request_field_size: given(&l.request_field_size),
        head_timeout: secs(l.head_timeout),
        body_timeout: secs(l.body_timeout),
        write_timeout: secs(l.write_timeout),
        max_connections: given(&l.max_connections),
        http2_max_streams: given(&l.http2_max_streams),
        require_host: given(&l.require_host),
        websocket_max: given(&l.websocket_max),
        websocket_idle_timeout: secs(l.websocket_idle_timeout),
    })
}

/// `[log]`: the level (lower case), the error log's format, the access log's format.
fn log(
    l: &file::LogSection,
) -> Result<(String, LogFormat, access_log_format::Format), ConfigError> {
    let level = given(&l.level).to_ascii_lowercase();
    if !LOG_LEVELS.contains(&level.as_str()) {
        return Err(ConfigError::invalid(format!(
            "log level {level:?}: expected one of {}",
            LOG_LEVELS.join(", ")
        )));
    }
    let format = match given(&l.format).as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(format!(
                "log format {other:?}: expected text or json"
            )))
        }
    };
    let access = access_log_format::Format::parse(&given(&l.access_log_format))
        .map_err(ConfigError::invalid)?;
    Ok((level, format, access))
}

fn admin_bind(bind: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match bind.map(parse_bind).transpose()? {
        None => Ok(None),
        Some(BindAddr::Tcp(sa)) => Ok(Some(sa)),
        Some(BindAddr::Unix(_) | BindAddr::Fd(_)) => {
            Err(ConfigError::invalid("admin bind must be HOST:PORT"))
        }
    }
}

fn tls(t: &file::TlsSection) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (&t.certfile, &t.keyfile) {
        (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
        (None, None) => Ok(None),
        _ => Err(ConfigError::invalid("TLS needs both certfile and keyfile")),
    }
}

fn redirect_http(t: &file::TlsSection) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(bind) = &t.redirect_http else {
        if t.redirect_https_port.is_some() {
            return Err(ConfigError::invalid(
                "redirect_https_port is the port redirect_http names: it needs redirect_http",
            ));
        }
        return Ok(None);
    };
    if t.certfile.is_none() {
        return Err(ConfigError::invalid(
            "redirect_http sends clients to HTTPS: it needs certfile and keyfile",
        ));
    }
    match parse_bind(bind)? {
        BindAddr::Tcp(sa) => Ok(Some(sa)),
        BindAddr::Unix(_) | BindAddr::Fd(_) => {
            Err(ConfigError::invalid("redirect_http must be HOST:PORT"))
        }
    }
}

/// What gunicorn accepts and means the same by: `MODULE` alone for
/// `MODULE:application`, and the log level `warn`.
fn gunicorn_spellings(f: &mut FileConfig) {
    if let Some(app) = &mut f.app {
        if !app.contains(':') && !app.is_empty() {
            *app = format!("{app}:{}", defaults::APP_CALLABLE);
        }
    }
    if let Some(level) = &mut f.log.level {
        if level.eq_ignore_ascii_case("warn") {
            *level = "warning".into();
        }
    }
}

fn validate_app(app: &str) -> Result<(), ConfigError> {
    match app.split_once(':') {
        Some((module, callable)) if !module.is_empty() && !callable.is_empty() => Ok(()),
        _ => Err(ConfigError::invalid(format!(
            "app {app:?}: expected MODULE:CALLABLE, e.g. mysite.wsgi:application"
        ))),
    }
}

/// `[proxy] real_ip_header`; `proxy_protocol` needs the PROXY header on every
/// connection, as nginx's needs `listen ... proxy_protocol`.
fn real_ip_header(f: &FileConfig) -> Result<RealIpHeader, ConfigError> {
    let header: RealIpHeader = given(&f.proxy.real_ip_header)
        .parse()
        .map_err(|e: RealIpHeaderError| ConfigError::invalid(e.to_string()))?;
    if header == RealIpHeader::ProxyProtocol && f.server.proxy_protocol != Some(true) {
        return Err(ConfigError::invalid(
            "real_ip_header = \"proxy_protocol\" needs the PROXY protocol: set [server] proxy_protocol = true (--proxy-protocol)",
        ));
    }
    Ok(header)
}

/// `[[route]]`s, validated, longest prefix first.
fn routes(sections: &[file::RouteSection]) -> Result<Vec<RouteOverride>, ConfigError> {
    let mut out = Vec::new();
    for r in sections {
        if !r.prefix.starts_with('/') {
            return Err(ConfigError::invalid(format!(
                "[[route]] prefix {:?} must start with '/'",
                r.prefix
            )));
        }
        let prefix = normal_prefix("[[route]] prefix", &r.prefix)?;
        if out.iter().any(|o: &RouteOverride| o.prefix == prefix) {
            return Err(ConfigError::invalid(format!(
                "[[route]] prefix {:?} appears twice",
                r.prefix
            )));
        }
        let rate = match &r.rate {
            Some(text) => Some(Rate {
                ipv6_subnet: ipv6_subnet(r)?,
                ..parse_rate(text, r.burst.unwrap_or(0))?
            }),
            None if r.burst.is_some() || r.ipv6_subnet.is_some() => {
                return Err(ConfigError::invalid(format!(
                    "[[route]] {:?}: burst and ipv6_subnet need a rate",
                    r.prefix
                )))
            }
            None => None,
        };
        out.push(RouteOverride {
            prefix,
            timeout: r.timeout.map(Duration::from_secs),
            max_body_size: r.max_body_size,
            rate,
            sticky: r.sticky.unwrap_or(defaults::ROUTE_STICKY),
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(out)
}

/// A URL prefix in the form request paths are matched in (`normal_path`): decoded,
/// slashes merged, no `.` or `..`, so `/caf%C3%A9/` and `//media/` still match.
fn normal_prefix(what: &str, prefix: &str) -> Result<String, ConfigError> {
    let bad =
        |why: &dyn std::fmt::Display| ConfigError::invalid(format!("{what} {prefix:?}: {why}"));
    let path = crate::normal_path::NormalPath::parse(prefix.as_bytes()).map_err(|e| bad(&e))?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| bad(&"not UTF-8 once decoded"))
}

/// `[[route]] ipv6_subnet`: a prefix length, 1 to 128.
fn ipv6_subnet(r: &file::RouteSection) -> Result<u8, ConfigError> {
    match r.ipv6_subnet.unwrap_or(defaults::RATE_IPV6_SUBNET) {
        n @ 1..=128 => Ok(n),
        n => Err(ConfigError::invalid(format!(
            "[[route]] {:?}: ipv6_subnet = {n}: expected a prefix length from 1 to 128 (64: one subscriber's block, 128: each address)",
            r.prefix
        ))),
    }
}

/// `"10/s"` or `"30/m"` (nginx's `r/s`, `r/m`), more than zero.
fn parse_rate(text: &str, burst: u32) -> Result<Rate, ConfigError> {
    let bad = || {
        ConfigError::invalid(format!(
            "[[route]] rate {text:?}: expected requests per second or minute, e.g. \"10/s\" or \"30/m\""
        ))
    };
    let (n, unit) = text.split_once('/').ok_or_else(bad)?;
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per_second = match unit.trim() {
        "s" => n,
        "m" => n / 60.0,
        _ => return Err(bad()),
    };
    if !(per_second > 0.0 && per_second.is_finite()) {
        return Err(bad());
    }
    Ok(Rate {
        per_second,
        burst,
        ipv6_subnet: defaults::RATE_IPV6_SUBNET,
    })
}

fn immutable_files(mode: Option<&str>) -> Result<Option<ImmutableFiles>, ConfigError> {
    match mode {
        None => Ok(None),
        Some("manifest") => Ok(Some(ImmutableFiles::Manifest)),
        Some("pattern") => Ok(Some(ImmutableFiles::Pattern)),
        Some(other) => Err(ConfigError::invalid(format!(
            "[[static]] immutable = {other:?}: expected \"manifest\" or \"pattern\""
        ))),
    }
}

fn static_headers(
    headers: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers.into_iter().flatten() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(ConfigError::invalid(format!(
                "[[static]] headers: {name:?} = {value:?} is not a valid header"
            )));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

fn static_mount(s: &file::StaticSection) -> Result<StaticMount, ConfigError> {
    // `cache_control = ""`: no Cache-Control at all (the default is one hour).
    let cache_control = s.cache_control.clone().filter(|cc| !cc.is_empty());
    let (url, dir) = (&s.url, s.dir.clone());
    if !url.starts_with('/') {
        return Err(ConfigError::invalid(format!(
            "static url {url:?} must start with '/'"
        )));
    }
    let mut url = normal_prefix("static url", url)?;
    if !url.ends_with('/') {
        url.push('/');
    }
    if !dir.is_dir() {
        return Err(ConfigError::invalid(format!(
            "static dir {} (for {url}) is not a directory",
            dir.display()
        )));
    }
    if let Some(cc) = &cache_control {
        if http::HeaderValue::from_str(cc).is_err() {
            return Err(ConfigError::invalid(format!(
                "cache_control {cc:?} is not a valid header value"
            )));
        }
    }
    let index = given(&s.index);
    if index.contains('/') || index.is_empty() {
        return Err(ConfigError::invalid(format!(
            "index {index:?} must be a plain file name"
        )));
    }
    Ok(StaticMount {
        url,
        dir,
        cache_control,
        index,
        precompressed: given(&s.precompressed),
        fallthrough: given(&s.fallthrough),
        dotfiles: given(&s.dotfiles),
        internal: given(&s.internal),
        immutable: immutable_files(s.immutable.as_deref())?,
        headers: static_headers(s.headers.as_ref())?,
    })
}

#[cfg(test)]
mod tests;
