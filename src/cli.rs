//! Command-line flags, named after gunicorn's where gunicorn has the flag.
//! Every flag is optional so that the config file can supply it; `config` merges.

use crate::defaults;
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
    /// WSGI app as MODULE:CALLABLE (e.g. mysite.wsgi:application); MODULE alone means
    /// MODULE:application, as in gunicorn. Without it only static mounts are served.
    pub app: Option<String>,

    /// TOML config file; flags given here override it.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,

    #[arg(short = 'b', long = "bind", help = with_default("Address to listen on: HOST:PORT, [V6]:PORT or unix:/path (repeatable).", defaults::BIND))]
    pub bind: Vec<String>,

    /// gunicorn's worker class: sync and gthread serve a WSGI app on threads (with
    /// --threads); asgi and uvicorn.workers.UvicornWorker serve an ASGI app on an
    /// event loop ([workers] interface).
    #[arg(short = 'k', long = "worker-class", value_name = "CLASS")]
    pub worker_class: Option<String>,

    #[arg(long = "worker-connections", value_name = "N", help = with_default("ASGI: requests and WebSockets in flight at once in one worker.", defaults::WORKER_CONNECTIONS))]
    pub worker_connections: Option<usize>,

    #[arg(long = "asgi-loop", value_name = "LOOP", help = with_default("ASGI: the event loop, auto (uvloop when installed), asyncio or uvloop.", defaults::ASGI_LOOP))]
    pub asgi_loop: Option<String>,

    #[arg(long = "asgi-lifespan", value_name = "MODE", help = with_default("ASGI: the lifespan protocol, auto, on or off.", defaults::ASGI_LIFESPAN))]
    pub asgi_lifespan: Option<String>,

    /// ASGI: the scope's root_path, the URL prefix the app is mounted under (gunicorn's --root-path).
    #[arg(long = "root-path", value_name = "PATH", allow_hyphen_values = true)]
    pub root_path: Option<String>,

    /// Worker processes. [default: $WEB_CONCURRENCY, else the number of CPU cores]
    #[arg(short = 'w', long = "workers")]
    pub workers: Option<usize>,

    #[arg(long = "threads", help = with_default("Python threads per worker (requests served at once by one worker).", defaults::THREADS))]
    pub threads: Option<usize>,

    #[arg(short = 't', long = "timeout", help = with_default("Seconds a worker may stay silent on a request before it is replaced (0 = off).", defaults::TIMEOUT_S))]
    pub timeout: Option<u64>,

    #[arg(long = "boot-timeout", help = with_default("Seconds a new worker may take to import the app and become ready.", defaults::BOOT_TIMEOUT_S))]
    pub boot_timeout: Option<u64>,

    #[arg(long = "graceful-timeout", help = with_default("Seconds given to in-flight requests on stop or reload.", defaults::GRACEFUL_TIMEOUT_S))]
    pub graceful_timeout: Option<u64>,

    /// Threads of the front (accepting, parsing, proxying, static files). [default: half the CPU cores, at least 1]
    #[arg(long = "front-threads")]
    pub front_threads: Option<usize>,

    #[arg(long = "max-requests", help = with_default("Replace a worker after it served this many requests (0 = never).", defaults::MAX_REQUESTS))]
    pub max_requests: Option<u64>,

    #[arg(long = "max-requests-jitter", help = with_default("Random extra requests, 0..=N, added to --max-requests per worker.", defaults::MAX_REQUESTS_JITTER))]
    pub max_requests_jitter: Option<u64>,

    #[arg(long = "max-memory", value_name = "SIZE", value_parser = parse_byte_size, help = with_default("Replace a worker whose memory (RSS) passes this, checked each second, e.g. 512MiB or 1G (0 = never).", defaults::MAX_MEMORY))]
    pub max_memory: Option<u64>,

    #[arg(long = "max-lifetime", value_name = "SECONDS", help = with_default("Replace a worker after it lived this long, plus up to a tenth more at random (0 = never).", defaults::MAX_LIFETIME_S))]
    pub max_lifetime: Option<u64>,

    #[arg(long = "keep-alive", help = with_default("Seconds an idle keep-alive connection stays open.", defaults::KEEP_ALIVE_S))]
    pub keep_alive: Option<u64>,

    /// Import the app once, in a zygote process, and fork the workers from it: they
    /// share its memory copy-on-write (gunicorn's --preload). HUP starts a new zygote.
    #[arg(long = "preload", alias = "preload-app")]
    pub preload: bool,

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

    /// Server hooks, gunicorn's names: a Python file (FILE.py) or module defining
    /// on_starting, when_ready, post_fork, post_worker_init, worker_exit,
    /// child_exit, pre_request or post_request.
    #[arg(long = "hooks", value_name = "FILE|MODULE")]
    pub hooks: Option<String>,

    /// Serve DIR at the URL prefix, as URL=DIR (repeatable), e.g. /static/=staticfiles.
    #[arg(long = "static", value_name = "URL=DIR")]
    pub statics: Vec<String>,

    #[arg(long = "log-level", help = with_default("debug, info, warning (or warn), error or critical.", defaults::LOG_LEVEL))]
    pub log_level: Option<String>,

    /// TLS certificate chain (PEM); with --keyfile, every TCP bind speaks TLS.
    #[arg(long = "certfile")]
    pub certfile: Option<std::path::PathBuf>,

    /// TLS private key (PEM).
    #[arg(long = "keyfile")]
    pub keyfile: Option<std::path::PathBuf>,

    /// Plain-HTTP bind answering every request with a redirect to HTTPS (nginx's
    /// `return 301 https://$host$request_uri`), e.g. 0.0.0.0:80; needs --certfile. [default: off]
    #[arg(long = "redirect-http", value_name = "ADDR")]
    pub redirect_http: Option<String>,

    /// The HTTPS port --redirect-http sends clients to, when it is not the TLS bind's
    /// own (a container or Service publishing 443 for a bind on 8443). [default: the
    /// first TCP bind's port]
    #[arg(long = "redirect-https-port", value_name = "PORT")]
    pub redirect_https_port: Option<u16>,

    /// Error log format: text or json. [default: text]
    #[arg(long = "log-format")]
    pub log_format: Option<String>,

    /// Write the error log to this file instead of stderr (reopened on USR1).
    #[arg(long = "error-logfile", alias = "log-file")]
    pub error_logfile: Option<std::path::PathBuf>,

    /// Access log: a file, or '-' for stdout. [default: none]
    #[arg(long = "access-logfile")]
    pub access_logfile: Option<String>,

    // gunicorn spells it --access-logformat, with %(h)s-style codes; both work.
    #[arg(long = "access-log-format", alias = "access-logformat", help = with_default("Access log format: combined, json, or a template of {field}s.", defaults::ACCESS_LOG_FORMAT))]
    pub access_log_format: Option<String>,

    /// Admin listener for /healthz, /readyz and /metrics, e.g. 127.0.0.1:9000. [default: off]
    #[arg(long = "admin-bind")]
    pub admin_bind: Option<String>,

    #[arg(long = "backlog", help = with_default("Requests that may wait for a free worker before 503.", defaults::BACKLOG))]
    pub backlog: Option<usize>,

    /// Requests under this URL prefix stay on the worker that first answered the
    /// client (a cookie), as Flask-SocketIO needs on several workers: e.g.
    /// --sticky /socket.io/ (repeatable; `[[route]] sticky = true`).
    #[arg(long = "sticky", value_name = "PREFIX")]
    pub sticky: Vec<String>,

    #[arg(long = "limit-request-body", help = with_default("Largest request body in bytes; larger gets 413.", defaults::MAX_BODY_SIZE))]
    pub limit_request_body: Option<u64>,

    #[arg(long = "body-spool-files", help = with_default("Request bodies in temp files at once; one more waits, then gets 503.", defaults::BODY_SPOOL_FILES))]
    pub body_spool_files: Option<usize>,

    #[arg(long = "body-spool-bytes", help = with_default("Bytes of all request bodies in temp files together; more waits, then gets 503.", defaults::BODY_SPOOL_BYTES))]
    pub body_spool_bytes: Option<u64>,

    #[arg(long = "forwarded-allow-ips", value_name = "IPS", help = with_default("Proxies trusted to set the client address and scheme (X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Ssl, Forwarded): comma-separated addresses and CIDR ranges, or '*' for any.", defaults::FORWARDED_ALLOW_IPS))]
    pub forwarded_allow_ips: Option<String>,

    #[arg(long = "real-ip-header", value_name = "FIELD", help = with_default("Where a trusted proxy gives the client address, as nginx's real_ip_header: X-Forwarded-For, Forwarded (RFC 7239, its proto= too), X-Real-IP, another field name, or proxy_protocol; the others are ignored.", defaults::REAL_IP_HEADER))]
    pub real_ip_header: Option<String>,

    /// Every TCP connection starts with a PROXY protocol v1 or v2 header (from a load
    /// balancer such as HAProxy or AWS NLB); the address in it becomes REMOTE_ADDR.
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: bool,

    /// Mask for the mode of `unix:` bind sockets, as gunicorn's --umask: 0o007 (or
    /// 007) lets the group connect. [default: the process's umask]
    #[arg(long = "umask", value_parser = parse_umask)]
    pub umask: Option<u32>,

    #[arg(long = "limit-request-line", help = with_default("Longest request line in bytes; longer gets 414.", defaults::REQUEST_LINE))]
    pub limit_request_line: Option<usize>,

    #[arg(long = "limit-request-fields", help = with_default("Most header fields in a request; more gets 431.", defaults::REQUEST_FIELDS))]
    pub limit_request_fields: Option<usize>,

    // gunicorn spells it with an underscore; the dashed form is accepted too.
    #[arg(long = "limit-request-field_size", alias = "limit-request-field-size", help = with_default("Longest header field in bytes; longer gets 431.", defaults::REQUEST_FIELD_SIZE))]
    pub limit_request_field_size: Option<usize>,

    #[arg(long = "websocket-max", value_name = "N", help = with_default("WebSockets open at once; a handshake past it gets 503.", defaults::WEBSOCKET_MAX))]
    pub websocket_max: Option<usize>,

    #[arg(long = "websocket-idle-timeout", value_name = "SECONDS", help = with_default("Seconds a WebSocket may carry no byte either way before it is closed (0 = never).", defaults::WEBSOCKET_IDLE_TIMEOUT_S))]
    pub websocket_idle_timeout: Option<u64>,

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

/// Bytes: `536870912`, or a number with K, M or G (powers of 1024, with or without
/// `i` and `B`, any case): `512M`, `512MiB`, `1g`.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{s:?} is not a size (bytes, or e.g. 512MiB, 1G)")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (bytes, or e.g. 512MiB, 1G)"))
}

/// A flag's help with its default from `defaults`, as clap shows its own.
fn with_default(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_in_bytes_or_with_a_binary_unit() {
        use super::parse_byte_size as size;
        assert_eq!(size("1024"), Ok(1024));
        assert_eq!(size("512MiB"), Ok(512 << 20));
        assert_eq!(size("512m"), Ok(512 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("64 kB"), Ok(64 << 10));
        for bad in ["", "MiB", "1.5G", "1T", "-1", "99999999999999G"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }
}
