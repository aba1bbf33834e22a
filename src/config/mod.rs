//! Configuration: the TOML file (`file`), the command line (`crate::cli`) merged over
//! it, validated once into `Settings`, which is all the rest of the server reads.

pub mod access_log_format;
mod describe;
mod error;
mod file;
pub mod interpreter;

pub use error::ConfigError;

use crate::cli::Cli;
use crate::defaults;
use crate::net::{parse_bind, BindAddr, TrustedProxies};
use file::FileConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Bytes of one response kept in memory for a slow client; the rest is spooled to
    /// a temp file.
    pub response_buffer_size: usize,
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
}

#[derive(Debug, Clone)]
pub struct PythonSettings {
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub venv: Option<PathBuf>,
    /// The interpreter the workers run on; None without an app (static only).
    pub interpreter: Option<interpreter::Interpreter>,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub count: usize,
    pub threads: usize,
    /// `None` = no timeout.
    pub timeout: Option<Duration>,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    pub backlog: usize,
    pub queue_timeout: Duration,
    /// How long a new worker may take to import the app and say Ready.
    pub boot_timeout: Duration,
    /// Requests a worker may be sent beyond its threads (see `dispatcher`).
    pub look_ahead: usize,
    /// A worker that finished nothing for this long gets its unstarted requests
    /// taken back and nothing sent ahead.
    pub look_ahead_stall: Duration,
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
    pub static_cache: FileCache,
    pub limits: Limits,
    /// Peers whose X-Forwarded-* / Forwarded headers are believed.
    pub forwarded_allow_ips: TrustedProxies,
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
    pub compression: Compression,
    pub reload: bool,
    pub reload_extra_files: Vec<PathBuf>,
    pub check_config: bool,
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

    fn merge(cli: &Cli, f: FileConfig) -> Result<Self, ConfigError> {
        let binds_raw = if !cli.bind.is_empty() {
            cli.bind.clone()
        } else {
            f.server
                .bind
                .clone()
                .unwrap_or_else(|| vec![defaults::BIND.into()])
        };
        let binds = binds_raw
            .iter()
            .map(|b| parse_bind(b))
            .collect::<Result<Vec<_>, _>>()?;

        let app = cli.app.clone().or(f.app);
        if let Some(app) = &app {
            validate_app(app)?;
        }

        let workers = WorkerSettings {
            count: cli
                .workers
                .or(f.workers.count)
                .or_else(web_concurrency)
                .unwrap_or_else(cpu_count),
            threads: cli
                .threads
                .or(f.workers.threads)
                .unwrap_or(defaults::THREADS),
            timeout: match cli
                .timeout
                .or(f.workers.timeout)
                .unwrap_or(defaults::TIMEOUT_S)
            {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
            max_requests: cli
                .max_requests
                .or(f.workers.max_requests)
                .unwrap_or(defaults::MAX_REQUESTS),
            max_requests_jitter: cli
                .max_requests_jitter
                .or(f.workers.max_requests_jitter)
                .unwrap_or(defaults::MAX_REQUESTS_JITTER),
            backlog: cli
                .backlog
                .or(f.workers.backlog)
                .unwrap_or(defaults::BACKLOG),
            queue_timeout: Duration::from_secs(
                f.workers.queue_timeout.unwrap_or(defaults::QUEUE_TIMEOUT_S),
            ),
            boot_timeout: Duration::from_secs(
                cli.boot_timeout
                    .or(f.workers.boot_timeout)
                    .unwrap_or(defaults::BOOT_TIMEOUT_S),
            ),
            look_ahead: f.workers.look_ahead.unwrap_or(defaults::LOOK_AHEAD),
            look_ahead_stall: Duration::from_millis(
                f.workers
                    .look_ahead_stall_ms
                    .unwrap_or(defaults::LOOK_AHEAD_STALL_MS),
            ),
        };
        if workers.count == 0 {
            return Err(ConfigError::invalid("workers must be at least 1"));
        }
        if workers.threads == 0 {
            return Err(ConfigError::invalid("threads must be at least 1"));
        }
        let front_threads = cli
            .front_threads
            .or(f.server.front_threads)
            .unwrap_or_else(cpu_count);
        if front_threads == 0 {
            return Err(ConfigError::invalid("front_threads must be at least 1"));
        }
        if workers.threads.saturating_add(workers.look_ahead) > crate::claims::MAX_OUTSTANDING {
            return Err(ConfigError::invalid(format!(
                "threads + look_ahead must be at most {}",
                crate::claims::MAX_OUTSTANDING
            )));
        }

        let mut statics = Vec::new();
        for s in f.statics {
            statics.push(static_mount(
                &s.url,
                s.dir,
                s.cache_control,
                s.index,
                s.precompressed,
                s.fallthrough,
                s.dotfiles,
            )?);
        }
        for spec in &cli.statics {
            let (url, dir) = spec.split_once('=').ok_or_else(|| {
                ConfigError::invalid(format!("--static {spec:?}: expected URL=DIR"))
            })?;
            statics.push(static_mount(url, dir.into(), None, None, None, None, None)?);
        }

        let log_level = cli
            .log_level
            .clone()
            .or(f.log.level)
            .unwrap_or_else(|| defaults::LOG_LEVEL.into())
            .to_ascii_lowercase();
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(ConfigError::invalid(format!(
                "log level {log_level:?}: expected one of {}",
                LOG_LEVELS.join(", ")
            )));
        }

        let log_format = match cli.log_format.clone().or(f.log.format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::invalid(format!(
                    "log format {other:?}: expected text or json"
                )))
            }
        };
        let access_log_format = access_log_format::Format::parse(
            cli.access_log_format
                .as_deref()
                .or(f.log.access_log_format.as_deref())
                .unwrap_or(defaults::ACCESS_LOG_FORMAT),
        )
        .map_err(ConfigError::invalid)?;
        let admin_bind = match cli.admin_bind.clone().or(f.admin.bind) {
            None => None,
            Some(a) => match parse_bind(&a)? {
                BindAddr::Tcp(sa) => Some(sa),
                BindAddr::Unix(_) => {
                    return Err(ConfigError::invalid("admin bind must be HOST:PORT"))
                }
            },
        };

        let tls = match (
            cli.certfile.clone().or(f.tls.certfile),
            cli.keyfile.clone().or(f.tls.keyfile),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(ConfigError::invalid("TLS needs both certfile and keyfile")),
        };

        let forwarded_allow_ips = cli
            .forwarded_allow_ips
            .as_deref()
            .or(f.proxy.forwarded_allow_ips.as_deref())
            .unwrap_or(defaults::FORWARDED_ALLOW_IPS)
            .parse::<TrustedProxies>()
            .map_err(|e| ConfigError::invalid(e.to_string()))?;

        let (venv, venv_origin) = match (&cli.venv, f.python.venv, std::env::var_os("VIRTUAL_ENV"))
        {
            (Some(v), _, _) => (Some(v.clone()), "--venv"),
            (None, Some(v), _) => (Some(v), "[python] venv"),
            (None, None, Some(v)) => (Some(PathBuf::from(v)), "$VIRTUAL_ENV"),
            (None, None, None) => (None, ""),
        };
        let explicit = match (&cli.python, &f.python.interpreter) {
            (Some(p), _) => Some((p.as_path(), "--python")),
            (None, Some(p)) => Some((p.as_path(), "[python] interpreter")),
            (None, None) => None,
        };
        let interpreter = match &app {
            Some(_) => Some(
                interpreter::choose(
                    explicit,
                    venv.as_deref().map(|v| (v, venv_origin)),
                    std::env::current_exe()
                        .ok()
                        .as_deref()
                        .and_then(Path::parent),
                    std::env::var_os("PATH").as_deref(),
                )
                .map_err(|e| ConfigError::invalid(e.to_string()))?,
            ),
            None => None,
        };

        if f.server.umask.is_some_and(|m| m > 0o777) {
            return Err(ConfigError::invalid(
                "[server] umask: expected 0 to 0o777, e.g. umask = 0o007",
            ));
        }
        if app.is_none() && statics.is_empty() {
            return Err(ConfigError::invalid(
                "nothing to serve: give an app (MODULE:CALLABLE, e.g. mysite.wsgi:application) or a static mount (--static URL=DIR)",
            ));
        }
        Ok(Settings {
            config_path: cli.config.clone(),
            app,
            binds,
            keep_alive: Duration::from_secs(
                cli.keep_alive
                    .or(f.server.keep_alive)
                    .unwrap_or(defaults::KEEP_ALIVE_S),
            ),
            graceful_timeout: Duration::from_secs(
                cli.graceful_timeout
                    .or(f.server.graceful_timeout)
                    .unwrap_or(defaults::GRACEFUL_TIMEOUT_S),
            ),
            front_threads,
            pid: cli.pid.clone().or(f.server.pid),
            runtime_dir: f.server.runtime_dir,
            python: PythonSettings {
                chdir: cli.chdir.clone().or(f.python.chdir),
                pythonpath: if cli.pythonpath.is_empty() {
                    f.python.pythonpath.unwrap_or_default()
                } else {
                    cli.pythonpath.clone()
                },
                venv,
                interpreter,
            },
            workers,
            statics,
            static_cache: FileCache {
                max_bytes: f
                    .static_cache
                    .max_bytes
                    .unwrap_or(defaults::STATIC_CACHE_BYTES),
                max_entries: f
                    .static_cache
                    .max_entries
                    .unwrap_or(defaults::STATIC_CACHE_ENTRIES),
                max_file_size: f
                    .static_cache
                    .max_file_size
                    .unwrap_or(defaults::STATIC_CACHE_FILE_SIZE),
                revalidate: Duration::from_millis(
                    f.static_cache
                        .revalidate_ms
                        .unwrap_or(defaults::STATIC_CACHE_REVALIDATE_MS),
                ),
            },
            limits: Limits {
                max_body_size: cli
                    .limit_request_body
                    .or(f.limits.max_body_size)
                    .unwrap_or(defaults::MAX_BODY_SIZE),
                body_buffer_size: f
                    .limits
                    .body_buffer_size
                    .unwrap_or(defaults::BODY_BUFFER_SIZE),
                body_memory: f.limits.body_memory.unwrap_or(defaults::BODY_MEMORY),
                response_buffer_size: f
                    .limits
                    .response_buffer_size
                    .unwrap_or(defaults::RESPONSE_BUFFER_SIZE),
                request_line: cli
                    .limit_request_line
                    .or(f.limits.request_line)
                    .unwrap_or(defaults::REQUEST_LINE),
                request_fields: cli
                    .limit_request_fields
                    .or(f.limits.request_fields)
                    .unwrap_or(defaults::REQUEST_FIELDS),
                request_field_size: cli
                    .limit_request_field_size
                    .or(f.limits.request_field_size)
                    .unwrap_or(defaults::REQUEST_FIELD_SIZE),
                head_timeout: Duration::from_secs(
                    f.limits.head_timeout.unwrap_or(defaults::HEAD_TIMEOUT_S),
                ),
                body_timeout: Duration::from_secs(
                    f.limits.body_timeout.unwrap_or(defaults::BODY_TIMEOUT_S),
                ),
                write_timeout: Duration::from_secs(
                    f.limits.write_timeout.unwrap_or(defaults::WRITE_TIMEOUT_S),
                ),
                max_connections: f
                    .limits
                    .max_connections
                    .unwrap_or(defaults::MAX_CONNECTIONS),
                http2_max_streams: f
                    .limits
                    .http2_max_streams
                    .unwrap_or(defaults::HTTP2_MAX_STREAMS),
                require_host: f.limits.require_host.unwrap_or(false),
            },
            forwarded_allow_ips,
            proxy_protocol: cli.proxy_protocol || f.server.proxy_protocol.unwrap_or(false),
            umask: cli.umask.or(f.server.umask),
            log_level,
            log_format,
            // gunicorn users write `--error-logfile -` for stderr, our default.
            error_logfile: cli
                .error_logfile
                .clone()
                .or(f.log.error_logfile)
                .filter(|p| p.as_os_str() != "-"),
            access_logfile: cli.access_logfile.clone().or(f.log.access_logfile),
            access_log_format,
            admin_bind,
            tls,
            compression: Compression {
                enabled: f.compression.enabled.unwrap_or(true),
                min_size: f
                    .compression
                    .min_size
                    .unwrap_or(defaults::COMPRESSION_MIN_SIZE),
            },
            reload: cli.reload || f.reload.enabled.unwrap_or(false),
            reload_extra_files: if cli.reload_extra_file.is_empty() {
                f.reload.extra_files.unwrap_or_default()
            } else {
                cli.reload_extra_file.clone()
            },
            check_config: cli.check_config,
        })
    }
}

fn web_concurrency() -> Option<usize> {
    std::env::var("WEB_CONCURRENCY").ok()?.trim().parse().ok()
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn validate_app(app: &str) -> Result<(), ConfigError> {
    match app.split_once(':') {
        Some((module, callable)) if !module.is_empty() && !callable.is_empty() => Ok(()),
        _ => Err(ConfigError::invalid(format!(
            "app {app:?}: expected MODULE:CALLABLE, e.g. mysite.wsgi:application"
        ))),
    }
}

fn static_mount(
    url: &str,
    dir: PathBuf,
    cache_control: Option<String>,
    index: Option<String>,
    precompressed: Option<bool>,
    fallthrough: Option<bool>,
    dotfiles: Option<bool>,
) -> Result<StaticMount, ConfigError> {
    if !url.starts_with('/') {
        return Err(ConfigError::invalid(format!(
            "static url {url:?} must start with '/'"
        )));
    }
    let mut url = url.to_string();
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
    let index = index.unwrap_or_else(|| "index.html".into());
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
        precompressed: precompressed.unwrap_or(true),
        fallthrough: fallthrough.unwrap_or(false),
        dotfiles: dotfiles.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests;
