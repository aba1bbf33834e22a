//! The TOML file as written by users: raw structs, every key optional, unknown keys
//! refused. It is also the one schema of the configuration: the flags are laid over
//! it (`flags`), every key left out gets its default (`fill_defaults`, from
//! `crate::defaults`), `Settings` is validated from the result, and `--check-config`
//! prints the result back as TOML.

use crate::defaults;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `MODULE:CALLABLE`, like the positional argument.
    pub app: Option<String>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub python: PythonSection,
    #[serde(default)]
    pub workers: WorkersSection,
    #[serde(default, rename = "static", skip_serializing_if = "Vec::is_empty")]
    pub statics: Vec<StaticSection>,
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSection>,
    #[serde(default)]
    pub static_cache: StaticCacheSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub reload: ReloadSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub compression: CompressionSection,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub enabled: Option<bool>,
    pub min_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// A plain-HTTP bind that redirects every request to HTTPS.
    pub redirect_http: Option<String>,
    /// The port its redirects name (default: the first TCP bind's).
    pub redirect_https_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub bind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// A list, or one address as a plain string (`bind = "0.0.0.0:8000"`, as in a
    /// gunicorn.conf.py).
    #[serde(default, deserialize_with = "one_or_many")]
    pub bind: Option<Vec<String>>,
    pub keep_alive: Option<u64>,
    pub graceful_timeout: Option<u64>,
    pub front_threads: Option<usize>,
    pub pid: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub proxy_protocol: Option<bool>,
    pub umask: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    pub chdir: Option<PathBuf>,
    pub pythonpath: Option<Vec<PathBuf>>,
    pub venv: Option<PathBuf>,
    pub interpreter: Option<PathBuf>,
    pub hooks: Option<String>,
    /// ASGI's `root_path`: the URL prefix the app is mounted under.
    pub root_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    pub count: Option<usize>,
    pub threads: Option<usize>,
    pub timeout: Option<u64>,
    pub max_requests: Option<u64>,
    pub max_requests_jitter: Option<u64>,
    /// Bytes, or a string with a unit (`"512MiB"`).
    #[serde(default, deserialize_with = "byte_size")]
    pub max_memory: Option<u64>,
    pub max_lifetime: Option<u64>,
    pub preload: Option<bool>,
    pub backlog: Option<usize>,
    pub queue_timeout: Option<u64>,
    pub boot_timeout: Option<u64>,
    pub look_ahead: Option<usize>,
    pub look_ahead_stall_ms: Option<u64>,
    /// `"wsgi"` or `"asgi"`.
    pub interface: Option<String>,
    pub worker_connections: Option<usize>,
    /// `"auto"`, `"asyncio"` or `"uvloop"`.
    pub asgi_loop: Option<String>,
    /// `"auto"`, `"on"` or `"off"`.
    pub asgi_lifespan: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSection {
    pub url: String,
    pub dir: PathBuf,
    pub cache_control: Option<String>,
    pub index: Option<String>,
    pub precompressed: Option<bool>,
    pub fallthrough: Option<bool>,
    pub dotfiles: Option<bool>,
    pub internal: Option<bool>,
    /// `"manifest"` (Django's staticfiles.json) or `"pattern"` (a hash in the name).
    pub immutable: Option<String>,
    /// Headers added to 200, 206 and 304 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// `[[route]]`: settings for the requests under one URL prefix.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub prefix: String,
    /// Seconds a worker may stay silent on such a request (0: no limit).
    pub timeout: Option<u64>,
    #[serde(default, deserialize_with = "byte_size")]
    pub max_body_size: Option<u64>,
    /// `"10/s"` or `"30/m"`, per client address.
    pub rate: Option<String>,
    /// Requests over the rate let through at once (nginx's `burst`).
    pub burst: Option<u32>,
    /// IPv6 clients share a bucket per /N (default 64; 128: per address).
    pub ipv6_subnet: Option<u8>,
    /// A client's requests stay on the worker that first answered it (a cookie).
    pub sticky: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCacheSection {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<usize>,
    pub max_file_size: Option<u64>,
    pub revalidate_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_body_size: Option<u64>,
    pub body_buffer_size: Option<u64>,
    pub body_memory: Option<u64>,
    pub body_spool_files: Option<usize>,
    pub body_spool_bytes: Option<u64>,
    pub body_spool_wait: Option<u64>,
    pub response_buffer_size: Option<usize>,
    pub response_memory: Option<u64>,
    pub response_files: Option<usize>,
    pub request_line: Option<usize>,
    pub request_fields: Option<usize>,
    pub request_field_size: Option<usize>,
    pub head_timeout: Option<u64>,
    pub body_timeout: Option<u64>,
    pub write_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub http2_max_streams: Option<u32>,
    pub require_host: Option<bool>,
    pub websocket_max: Option<usize>,
    pub websocket_idle_timeout: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    pub forwarded_allow_ips: Option<String>,
    pub real_ip_header: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: Option<String>,
    pub format: Option<String>,
    pub error_logfile: Option<PathBuf>,
    pub access_logfile: Option<String>,
    pub access_log_format: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    pub enabled: Option<bool>,
    pub extra_files: Option<Vec<PathBuf>>,
}

fn default<T>(key: &mut Option<T>, value: T) {
    key.get_or_insert(value);
}

impl FileConfig {
    /// Gives every key left out its default, so the config holds every effective
    /// value. Keys with no default (a pid file, TLS files, an admin bind) stay out.
    pub fn fill_defaults(&mut self) {
        self.server.fill_defaults();
        self.python.fill_defaults();
        self.workers.fill_defaults();
        self.statics
            .iter_mut()
            .for_each(StaticSection::fill_defaults);
        self.static_cache.fill_defaults();
        self.limits.fill_defaults();
        default(
            &mut self.proxy.forwarded_allow_ips,
            defaults::FORWARDED_ALLOW_IPS.into(),
        );
        default(
            &mut self.proxy.real_ip_header,
            defaults::REAL_IP_HEADER.into(),
        );
        self.log.fill_defaults();
        default(&mut self.reload.enabled, false);
        default(&mut self.reload.extra_files, Vec::new());
        default(&mut self.compression.enabled, true);
        default(
            &mut self.compression.min_size,
            defaults::COMPRESSION_MIN_SIZE,
        );
    }
}

impl ServerSection {
    fn fill_defaults(&mut self) {
        default(&mut self.bind, vec![defaults::BIND.into()]);
        default(&mut self.keep_alive, defaults::KEEP_ALIVE_S);
        default(&mut self.graceful_timeout, defaults::GRACEFUL_TIMEOUT_S);
        default(&mut self.front_threads, defaults::front_threads());
        default(&mut self.proxy_protocol, false);
    }
}

impl PythonSection {
    fn fill_defaults(&mut self) {
        default(&mut self.pythonpath, Vec::new());
        default(&mut self.root_path, String::new());
        if self.venv.is_none() {
            self.venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from);
        }
    }
}

impl WorkersSection {
    fn fill_defaults(&mut self) {
        default(&mut self.count, defaults::workers());
        default(&mut self.threads, defaults::THREADS);
        default(&mut self.timeout, defaults::TIMEOUT_S);
        default(&mut self.max_requests, defaults::MAX_REQUESTS);
        default(&mut self.max_requests_jitter, defaults::MAX_REQUESTS_JITTER);
        default(&mut self.max_memory, defaults::MAX_MEMORY);
        default(&mut self.max_lifetime, defaults::MAX_LIFETIME_S);
        default(&mut self.preload, defaults::PRELOAD);
        default(&mut self.backlog, defaults::BACKLOG);
        default(&mut self.queue_timeout, defaults::QUEUE_TIMEOUT_S);
        default(&mut self.boot_timeout, defaults::BOOT_TIMEOUT_S);
        default(&mut self.look_ahead, defaults::LOOK_AHEAD);
        default(&mut self.look_ahead_stall_ms, defaults::LOOK_AHEAD_STALL_MS);
        default(&mut self.interface, defaults::INTERFACE.into());
        default(&mut self.worker_connections, defaults::WORKER_CONNECTIONS);
        default(&mut self.asgi_loop, defaults::ASGI_LOOP.into());
        default(&mut self.asgi_lifespan, defaults::ASGI_LIFESPAN.into());
    }
}

impl StaticSection {
    /// A `--static URL=DIR` mount.
    pub fn new(url: &str, dir: &str) -> Self {
        StaticSection {
            url: url.into(),
            dir: dir.into(),
            cache_control: None,
            index: None,
            precompressed: None,
            fallthrough: None,
            dotfiles: None,
            internal: None,
            immutable: None,
            headers: None,
        }
    }

    fn fill_defaults(&mut self) {
        default(&mut self.index, defaults::STATIC_INDEX.into());
        // One default for `--static` and `[[static]]` alike; none for an internal
        // mount, whose files are the app's to cache (its own Cache-Control wins).
        if self.internal != Some(true) {
            default(
                &mut self.cache_control,
                defaults::STATIC_CACHE_CONTROL.into(),
            );
        }
        default(&mut self.precompressed, true);
        default(&mut self.fallthrough, false);
        default(&mut self.dotfiles, false);
        default(&mut self.internal, false);
    }
}

impl StaticCacheSection {
    fn fill_defaults(&mut self) {
        default(&mut self.max_bytes, defaults::STATIC_CACHE_BYTES);
        default(&mut self.max_entries, defaults::STATIC_CACHE_ENTRIES);
        default(&mut self.max_file_size, defaults::STATIC_CACHE_FILE_SIZE);
        default(
            &mut self.revalidate_ms,
            defaults::STATIC_CACHE_REVALIDATE_MS,
        );
    }
}

impl LimitsSection {
    fn fill_defaults(&mut self) {
        default(&mut self.max_body_size, defaults::MAX_BODY_SIZE);
        default(&mut self.body_buffer_size, defaults::BODY_BUFFER_SIZE);
        default(&mut self.body_memory, defaults::BODY_MEMORY);
        default(&mut self.body_spool_files, defaults::BODY_SPOOL_FILES);
        default(&mut self.body_spool_bytes, defaults::BODY_SPOOL_BYTES);
        default(&mut self.body_spool_wait, defaults::BODY_SPOOL_WAIT_S);
        default(
            &mut self.response_buffer_size,
            defaults::RESPONSE_BUFFER_SIZE,
        );
        default(&mut self.response_memory, defaults::RESPONSE_MEMORY);
        default(&mut self.response_files, defaults::RESPONSE_FILES);
        default(&mut self.request_line, defaults::REQUEST_LINE);
        default(&mut self.request_fields, defaults::REQUEST_FIELDS);
        default(&mut self.request_field_size, defaults::REQUEST_FIELD_SIZE);
        default(&mut self.head_timeout, defaults::HEAD_TIMEOUT_S);
        default(&mut self.body_timeout, defaults::BODY_TIMEOUT_S);
        default(&mut self.write_timeout, defaults::WRITE_TIMEOUT_S);
        default(&mut self.max_connections, defaults::MAX_CONNECTIONS);
        default(&mut self.http2_max_streams, defaults::HTTP2_MAX_STREAMS);
        default(&mut self.require_host, false);
        default(&mut self.websocket_max, defaults::WEBSOCKET_MAX);
        default(
            &mut self.websocket_idle_timeout,
            defaults::WEBSOCKET_IDLE_TIMEOUT_S,
        );
    }
}

impl LogSection {
    fn fill_defaults(&mut self) {
        default(&mut self.level, defaults::LOG_LEVEL.into());
        default(&mut self.format, defaults::LOG_FORMAT.into());
        default(
            &mut self.access_log_format,
            defaults::ACCESS_LOG_FORMAT.into(),
        );
    }
}

/// `"a"` or `["a", "b"]`, both as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

/// `536870912` or `"512MiB"` (`cli::parse_byte_size`).
fn byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(Some(n)),
        Size::Text(t) => crate::cli::parse_byte_size(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}
