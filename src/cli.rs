//! Command-line flags, named after gunicorn's where gunicorn has the flag.
//! Every flag is optional so that the config file can supply it; `config` merges.

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser, Default)]
#[command(
    name = "ferricorn",
    version,
    about = "One binary that replaces nginx + gunicorn in front of a Python WSGI app",
    after_help = "Exit status: 0 clean stop, 1 runtime failure, 2 bad flag or config, 3 the app did not import."
)]
pub struct Cli {
    /// WSGI app as MODULE:CALLABLE (e.g. mysite.wsgi:application). Without it only
    /// static mounts are served.
    pub app: Option<String>,

    /// TOML config file; flags given here override it.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,

    /// Address to listen on: HOST:PORT, [V6]:PORT or unix:/path (repeatable). [default: 127.0.0.1:8000]
    #[arg(short = 'b', long = "bind")]
    pub bind: Vec<String>,

    /// Worker processes. [default: $WEB_CONCURRENCY, else the number of CPU cores]
    #[arg(short = 'w', long = "workers")]
    pub workers: Option<usize>,

    /// Python threads per worker (requests served at once by one worker). [default: 1]
    #[arg(long = "threads")]
    pub threads: Option<usize>,

    /// Seconds a worker may stay silent on a request before it is replaced (0 = off). [default: 30]
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u64>,

    /// Seconds a new worker may take to import the app and become ready. [default: 60]
    #[arg(long = "boot-timeout")]
    pub boot_timeout: Option<u64>,

    /// Seconds given to in-flight requests on stop or reload. [default: 30]
    #[arg(long = "graceful-timeout")]
    pub graceful_timeout: Option<u64>,

    /// Threads of the front (accepting, parsing, proxying, static files). [default: CPU cores]
    #[arg(long = "front-threads")]
    pub front_threads: Option<usize>,

    /// Replace a worker after it served this many requests (0 = never). [default: 0]
    #[arg(long = "max-requests")]
    pub max_requests: Option<u64>,

    /// Random extra requests, 0..=N, added to --max-requests per worker. [default: 0]
    #[arg(long = "max-requests-jitter")]
    pub max_requests_jitter: Option<u64>,

    /// Seconds an idle keep-alive connection stays open. [default: 5]
    #[arg(long = "keep-alive")]
    pub keep_alive: Option<u64>,

    /// Development mode: restart workers when app files change.
    #[arg(long = "reload")]
    pub reload: bool,

    /// Another file whose change triggers a reload (repeatable).
    #[arg(long = "reload-extra-file")]
    pub reload_extra_file: Vec<PathBuf>,

    /// Directory to change into before the app is imported.
    #[arg(long = "chdir")]
    pub chdir: Option<PathBuf>,

    /// Comma-separated directories prepended to sys.path.
    #[arg(long = "pythonpath", value_delimiter = ',')]
    pub pythonpath: Vec<PathBuf>,

    /// Virtualenv the app runs in; its bin/python runs the workers. [default: $VIRTUAL_ENV]
    #[arg(long = "venv")]
    pub venv: Option<PathBuf>,

    /// The Python interpreter that runs the workers (a path, or a name on PATH).
    /// [default: the venv's, else the python beside ferricorn, else python3]
    #[arg(long = "python", value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Serve DIR at the URL prefix, as URL=DIR (repeatable), e.g. /static/=staticfiles.
    #[arg(long = "static", value_name = "URL=DIR")]
    pub statics: Vec<String>,

    /// debug, info, warning, error or critical. [default: info]
    #[arg(long = "log-level")]
    pub log_level: Option<String>,

    /// TLS certificate chain (PEM); with --keyfile, every TCP bind speaks TLS.
    #[arg(long = "certfile")]
    pub certfile: Option<std::path::PathBuf>,

    /// TLS private key (PEM).
    #[arg(long = "keyfile")]
    pub keyfile: Option<std::path::PathBuf>,

    /// Error log format: text or json. [default: text]
    #[arg(long = "log-format")]
    pub log_format: Option<String>,

    /// Write the error log to this file instead of stderr (reopened on USR1).
    #[arg(long = "error-logfile", alias = "log-file")]
    pub error_logfile: Option<std::path::PathBuf>,

    /// Access log: a file, or '-' for stdout. [default: none]
    #[arg(long = "access-logfile")]
    pub access_logfile: Option<String>,

    /// Access log format: combined, json, or a template of {field}s. [default: combined]
    #[arg(long = "access-log-format")]
    pub access_log_format: Option<String>,

    /// Admin listener for /healthz, /readyz and /metrics, e.g. 127.0.0.1:9000. [default: off]
    #[arg(long = "admin-bind")]
    pub admin_bind: Option<String>,

    /// Requests that may wait for a free worker before 503. [default: 2048]
    #[arg(long = "backlog")]
    pub backlog: Option<usize>,

    /// Largest request body in bytes; larger gets 413. [default: 104857600 (100 MiB)]
    #[arg(long = "limit-request-body")]
    pub limit_request_body: Option<u64>,

    /// Proxies trusted to set the client address and scheme (X-Forwarded-For,
    /// X-Forwarded-Proto, X-Forwarded-Ssl, Forwarded): comma-separated addresses and
    /// CIDR ranges, or '*' for any. [default: 127.0.0.1,::1]
    #[arg(long = "forwarded-allow-ips", value_name = "IPS")]
    pub forwarded_allow_ips: Option<String>,

    /// Every TCP connection starts with a PROXY protocol v1 or v2 header (from a load
    /// balancer such as HAProxy or AWS NLB); the address in it becomes REMOTE_ADDR.
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: bool,

    /// Mask for the mode of `unix:` bind sockets, as gunicorn's --umask: 0o007 (or
    /// 007) lets the group connect. [default: the process's umask]
    #[arg(long = "umask", value_parser = parse_umask)]
    pub umask: Option<u32>,

    /// Longest request line in bytes; longer gets 414. [default: 4094]
    #[arg(long = "limit-request-line")]
    pub limit_request_line: Option<usize>,

    /// Most header fields in a request; more gets 431. [default: 100]
    #[arg(long = "limit-request-fields")]
    pub limit_request_fields: Option<usize>,

    /// Longest header field in bytes; longer gets 431. [default: 8190]
    // gunicorn spells it with an underscore; the dashed form is accepted too.
    #[arg(long = "limit-request-field_size", alias = "limit-request-field-size")]
    pub limit_request_field_size: Option<usize>,

    /// Write the master's pid to this file.
    #[arg(short = 'p', long = "pid")]
    pub pid: Option<PathBuf>,

    /// Validate the config (and import the app), print the effective config, exit.
    #[arg(long = "check-config")]
    pub check_config: bool,
}

/// `0o007`, `007` (a leading 0 means octal, as people write umasks), `0x7` or `7`.
fn parse_umask(s: &str) -> Result<u32, String> {
    let parsed = if let Some(oct) = s.strip_prefix("0o") {
        u32::from_str_radix(oct, 8)
    } else if let Some(hex) = s.strip_prefix("0x") {
        u32::from_str_radix(hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    match parsed {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not a umask (0 to 0o777, e.g. 0o007)")),
    }
}
