//! `[workers]`: the pool's size and each worker's shape, validated (the interface,
//! its capacity, the ASGI loop's options, the look-ahead bound).

use super::{at_least_one, file, given, secs, ConfigError, Interface};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub count: usize,
    pub threads: usize,
    /// `None` = no timeout.
    pub timeout: Option<Duration>,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// RSS in bytes past which a worker is replaced; 0: never.
    pub max_memory: u64,
    /// Age past which a worker is replaced (plus jitter); `None`: never.
    pub max_lifetime: Option<Duration>,
    /// Import the app once in a zygote and fork the workers from it.
    pub preload: bool,
    pub backlog: usize,
    pub queue_timeout: Duration,
    /// How long a new worker may take to import the app and say Ready.
    pub boot_timeout: Duration,
    /// Requests a worker may be sent beyond its threads (see `dispatcher`).
    pub look_ahead: usize,
    /// A worker that finished nothing for this long gets its unstarted requests
    /// taken back and nothing sent ahead.
    pub look_ahead_stall: Duration,
    /// WSGI threads or an ASGI event loop.
    pub interface: Interface,
    /// ASGI: requests and WebSockets in flight at once in one worker.
    pub worker_connections: usize,
    /// ASGI: `auto`, `asyncio` or `uvloop`.
    pub asgi_loop: String,
    /// ASGI: `auto`, `on` or `off`.
    pub asgi_lifespan: String,
}

impl WorkerSettings {
    /// Requests one worker runs at once: its threads, or its ASGI connections.
    pub fn capacity(&self) -> usize {
        match self.interface {
            Interface::Wsgi => self.threads,
            Interface::Asgi => self.worker_connections,
        }
    }
}

pub(super) fn workers(w: &file::WorkersSection) -> Result<WorkerSettings, ConfigError> {
    let workers = WorkerSettings {
        count: at_least_one("workers", given(&w.count))?,
        threads: at_least_one("threads", given(&w.threads))?,
        timeout: Some(secs(w.timeout)).filter(|t| !t.is_zero()),
        max_requests: given(&w.max_requests),
        max_requests_jitter: given(&w.max_requests_jitter),
        max_memory: given(&w.max_memory),
        max_lifetime: Some(secs(w.max_lifetime)).filter(|t| !t.is_zero()),
        preload: given(&w.preload),
        backlog: given(&w.backlog),
        queue_timeout: secs(w.queue_timeout),
        boot_timeout: secs(w.boot_timeout),
        look_ahead: given(&w.look_ahead),
        look_ahead_stall: Duration::from_millis(given(&w.look_ahead_stall_ms)),
        interface: interface(&given(&w.interface))?,
        worker_connections: at_least_one("worker_connections", given(&w.worker_connections))?,
        asgi_loop: one_of(
            "asgi_loop",
            given(&w.asgi_loop),
            &["auto", "asyncio", "uvloop"],
        )?,
        asgi_lifespan: one_of(
            "asgi_lifespan",
            given(&w.asgi_lifespan),
            &["auto", "on", "off"],
        )?,
    };
    let max = crate::claims::MAX_OUTSTANDING;
    if workers.threads.saturating_add(workers.look_ahead) > max {
        return Err(ConfigError::invalid(format!(
            "threads + look_ahead must be at most {max}"
        )));
    }
    if workers.worker_connections > max {
        return Err(ConfigError::invalid(format!(
            "worker_connections must be at most {max}"
        )));
    }
    Ok(workers)
}

fn interface(name: &str) -> Result<Interface, ConfigError> {
    match name {
        "wsgi" => Ok(Interface::Wsgi),
        "asgi" => Ok(Interface::Asgi),
        other => Err(ConfigError::invalid(format!(
            "interface = {other:?}: expected \"wsgi\" or \"asgi\""
        ))),
    }
}

fn one_of(key: &str, value: String, allowed: &[&str]) -> Result<String, ConfigError> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(format!(
            "{key} = {value:?}: expected one of {}",
            allowed.join(", ")
        )))
    }
}
