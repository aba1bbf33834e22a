//! Every default of a setting, named once. The config merge falls back to these, the
//! guard's `GuardLimits::default` is made of them, and the command line's help prints
//! them (`cli::with_default`), so the three cannot disagree. The README's tables and
//! `conf/ferricorn.example.toml` state the same figures for people.

/// The callable of an app given as `MODULE` alone: gunicorn's `application`.
pub const APP_CALLABLE: &str = "application";

/// `[server] bind`, `-b`.
pub const BIND: &str = "127.0.0.1:8000";
/// `[server] keep_alive`, `--keep-alive`: seconds.
pub const KEEP_ALIVE_S: u64 = 5;
/// `[server] graceful_timeout`, `--graceful-timeout`: seconds.
pub const GRACEFUL_TIMEOUT_S: u64 = 30;

/// `[workers] threads`, `--threads`.
pub const THREADS: usize = 1;
/// `[workers] timeout`, `-t`: seconds (0: off).
pub const TIMEOUT_S: u64 = 30;
/// `[workers] boot_timeout`, `--boot-timeout`: seconds.
pub const BOOT_TIMEOUT_S: u64 = 60;
/// `[workers] max_requests`, `--max-requests` (0: never).
pub const MAX_REQUESTS: u64 = 0;
/// `[workers] max_requests_jitter`, `--max-requests-jitter`.
pub const MAX_REQUESTS_JITTER: u64 = 0;
/// `[workers] max_memory`, `--max-memory`: bytes of RSS (0: never).
pub const MAX_MEMORY: u64 = 0;
/// `[workers] max_lifetime`, `--max-lifetime`: seconds (0: never).
pub const MAX_LIFETIME_S: u64 = 0;
/// `[workers] preload`, `--preload`.
pub const PRELOAD: bool = false;
/// `[workers] backlog`, `--backlog`: requests waiting for a worker.
pub const BACKLOG: usize = 2048;
/// `[workers] queue_timeout`: seconds.
pub const QUEUE_TIMEOUT_S: u64 = 30;
/// `[workers] interface`, `-k`.
pub const INTERFACE: &str = "wsgi";
/// `[workers] worker_connections`, `--worker-connections`: requests and WebSockets
/// in flight at once in one ASGI worker.
pub const WORKER_CONNECTIONS: usize = ferricorn_wire::worker_args::WORKER_CONNECTIONS;
/// `[workers] asgi_loop`, `--asgi-loop`.
pub const ASGI_LOOP: &str = "auto";
/// `[workers] asgi_lifespan`, `--asgi-lifespan`.
pub const ASGI_LIFESPAN: &str = "auto";
/// ASGI: how long a worker has to end a request cancelled at its timeout (the
/// task's clean-up included) before its event loop counts as blocked and the
/// worker is dumped and replaced as a WSGI worker would be.
pub const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// `[workers] look_ahead`: requests sent ahead to a busy worker.
pub const LOOK_AHEAD: usize = 16;
/// `[workers] look_ahead_stall_ms`.
pub const LOOK_AHEAD_STALL_MS: u64 = 10;

/// `[limits] max_body_size`, `--limit-request-body`: bytes.
pub const MAX_BODY_SIZE: u64 = 100 * 1024 * 1024;
/// `[limits] body_buffer_size`: bytes of a body kept in memory before a temp file.
pub const BODY_BUFFER_SIZE: u64 = 1024 * 1024;
/// `[limits] body_memory`: bytes of all bodies in memory together.
pub const BODY_MEMORY: u64 = 64 * 1024 * 1024;
/// `[limits] body_spool_files`, `--body-spool-files`: request bodies in temp files at
/// once, across connections (each holds a file descriptor).
pub const BODY_SPOOL_FILES: usize = 1024;
/// `[limits] body_spool_bytes`, `--body-spool-bytes`: bytes of all spooled request
/// bodies together (disk in `$TMPDIR`).
pub const BODY_SPOOL_BYTES: u64 = 1024 * 1024 * 1024;
/// `[limits] body_spool_wait`: seconds a body waits for room under the spool caps
/// before its 503.
pub const BODY_SPOOL_WAIT_S: u64 = 10;
/// `[limits] response_buffer_size`: bytes.
pub const RESPONSE_BUFFER_SIZE: usize = 1024 * 1024;
/// `[limits] response_memory`: bytes of all responses held in memory together for
/// clients that have not taken them yet.
pub const RESPONSE_MEMORY: u64 = 64 * 1024 * 1024;
/// `[limits] response_files`: files held open by responses at once (response spool
/// files and static files streamed from disk), each a descriptor.
pub const RESPONSE_FILES: usize = 1024;
/// `[limits] request_line`, `--limit-request-line`: bytes (gunicorn's).
pub const REQUEST_LINE: usize = 4094;
/// `[limits] request_fields`, `--limit-request-fields` (gunicorn's).
pub const REQUEST_FIELDS: usize = 100;
/// `[limits] request_field_size`, `--limit-request-field_size`: bytes (gunicorn's).
pub const REQUEST_FIELD_SIZE: usize = 8190;
/// The whole request head, not a setting: HTTP/1's request line and field lines,
/// HTTP/2's decoded header list (431 past it). nginx's `large_client_header_buffers`
/// (4 × 8k), which holds any browser's head; the per-line limits alone would let a
/// connection make the front hold 100 × 8190 bytes of an unfinished head. Under
/// hyper's own HTTP/1 read buffer (`listener`), so the guard refuses first.
pub const REQUEST_HEAD: usize = 32 * 1024;
/// `[limits] head_timeout`: seconds.
pub const HEAD_TIMEOUT_S: u64 = 10;
/// `[limits] body_timeout`: seconds.
pub const BODY_TIMEOUT_S: u64 = 30;
/// `[limits] write_timeout`: seconds.
pub const WRITE_TIMEOUT_S: u64 = 30;
/// `[limits] max_connections`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Connections the admin port (`--admin-bind`) keeps open at once, not a setting:
/// it serves probes and a scraper, a few at a time; a new one past it closes the
/// oldest.
pub const ADMIN_MAX_CONNECTIONS: usize = 32;
/// `[limits] http2_max_streams`.
pub const HTTP2_MAX_STREAMS: u32 = 100;
/// `[limits] websocket_max`, `--websocket-max`: WebSockets open at once.
pub const WEBSOCKET_MAX: usize = 1000;
/// `[limits] websocket_idle_timeout`, `--websocket-idle-timeout`: seconds.
pub const WEBSOCKET_IDLE_TIMEOUT_S: u64 = 300;

/// `[static_cache] max_bytes`.
pub const STATIC_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// `[static_cache] max_entries`.
pub const STATIC_CACHE_ENTRIES: usize = 10_000;
/// `[static_cache] max_file_size`: bytes.
pub const STATIC_CACHE_FILE_SIZE: u64 = 1024 * 1024;
/// `[static_cache] revalidate_ms`.
pub const STATIC_CACHE_REVALIDATE_MS: u64 = 1000;

/// `[[static]] cache_control` (and `--static`'s): browsers reuse a file for an hour
/// before they revalidate it; `immutable` names get a year.
pub const STATIC_CACHE_CONTROL: &str = "public, max-age=3600";
/// Compressed static files kept in memory (`static_files::compressed`): bytes.
pub const STATIC_COMPRESSED_BYTES: u64 = 32 * 1024 * 1024;
/// `[compression] min_size`: bytes.
pub const COMPRESSION_MIN_SIZE: u64 = 1024;

/// `[[static]] index`: the file served for a directory.
pub const STATIC_INDEX: &str = "index.html";

/// `[log] format`, `--log-format`.
pub const LOG_FORMAT: &str = "text";
/// `[log] level`, `--log-level`.
pub const LOG_LEVEL: &str = "info";
/// `[log] access_log_format`, `--access-log-format`.
pub const ACCESS_LOG_FORMAT: &str = "combined";
/// `[proxy] forwarded_allow_ips`, `--forwarded-allow-ips`: only local proxies.
pub const FORWARDED_ALLOW_IPS: &str = "127.0.0.1,::1";
/// `[proxy] real_ip_header`, `--real-ip-header`: the field the client address comes
/// from, as nginx's `real_ip_header` (and what gunicorn reads).
pub const REAL_IP_HEADER: &str = "X-Forwarded-For";
/// `[[route]] ipv6_subnet`: IPv6 clients share a rate-limit bucket per /64, the
/// block one subscriber gets (and can pick any address in).
pub const RATE_IPV6_SUBNET: u8 = 64;
/// `[[route]] sticky`, `--sticky PREFIX`: off (any worker serves any request).
pub const ROUTE_STICKY: bool = false;

/// `[workers] count`, `-w`: `$WEB_CONCURRENCY` (as gunicorn), else the CPU count.
pub fn workers() -> usize {
    std::env::var("WEB_CONCURRENCY")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(cpu_count)
}

/// `[server] front_threads`, `--front-threads`: half the cores, at least one. The
/// workers need the other half: on 2 cores one front thread served the Django view 6%
/// faster than two, with less CPU per request (benches/README.md, "Front threads by
/// default").
pub fn front_threads() -> usize {
    (cpu_count() / 2).max(1)
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
