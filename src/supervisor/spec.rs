//! What a worker is made from: the one piece of the settings the supervisor keeps
//! (a reload swaps it whole). `process` turns it into the worker's command line,
//! which `wire::worker_args::WorkerArgs` writes here and parses in the worker.

use crate::config::{Interface, Settings};
use ferricorn_wire::worker_args::WorkerArgs;
use std::path::PathBuf;
use std::time::Duration;

/// How the pool's workers are started and held.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The interpreter that runs `python -m ferricorn.worker`.
    pub python: PathBuf,
    /// `MODULE:CALLABLE`.
    pub app: String,
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    /// Python threads per worker.
    pub threads: usize,
    /// Development mode (`--reload`): tracebacks in pages, no bytecode cache, all
    /// workers replaced at once.
    pub dev: bool,
    /// How many workers the pool keeps.
    pub count: usize,
    /// A worker silent this long on a request is replaced; `None`: never.
    pub timeout: Option<Duration>,
    /// What a worker condemned by a timeout gives its other requests at least
    /// (`--graceful-timeout`, see `timeout`).
    pub graceful_timeout: Duration,
    /// A new worker that is not ready within this is a failed start.
    pub boot_timeout: Duration,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// RSS in bytes past which a worker is replaced; 0: never.
    pub max_memory: u64,
    /// Age past which a worker is replaced (plus up to a tenth); `None`: never.
    pub max_lifetime: Option<Duration>,
    /// Workers are forked from a zygote that imported the app (`zygote`).
    pub preload: bool,
    /// Server hooks: a Python file or module (`hooks`, `ferricorn._hooks`).
    pub hooks: Option<String>,
    /// WSGI threads or an ASGI event loop.
    pub interface: Interface,
    /// Requests one worker runs at once (`WorkerSettings::capacity`).
    pub capacity: usize,
    /// ASGI: `--asgi-loop`, `--asgi-lifespan`, `--root-path`.
    pub asgi_loop: String,
    pub asgi_lifespan: String,
    pub root_path: String,
}

impl WorkerSpec {
    pub fn of(settings: &Settings) -> WorkerSpec {
        let w = &settings.workers;
        WorkerSpec {
            python: settings
                .python
                .interpreter
                .as_ref()
                .map_or_else(|| "python3".into(), |i| i.path.clone()),
            app: settings.app.clone().unwrap_or_default(),
            chdir: settings.python.chdir.clone(),
            pythonpath: settings.python.pythonpath.clone(),
            threads: w.threads,
            dev: settings.reload,
            count: w.count,
            timeout: w.timeout,
            graceful_timeout: settings.graceful_timeout,
            boot_timeout: w.boot_timeout,
            max_requests: w.max_requests,
            max_requests_jitter: w.max_requests_jitter,
            max_memory: w.max_memory,
            max_lifetime: w.max_lifetime,
            preload: w.preload,
            hooks: settings.python.hooks.clone(),
            interface: w.interface,
            capacity: w.capacity(),
            asgi_loop: w.asgi_loop.clone(),
            asgi_lifespan: w.asgi_lifespan.clone(),
            root_path: settings.python.root_path.clone(),
        }
    }

    /// What every worker of this spec is told: the app and where it lives.
    pub fn args(&self) -> WorkerArgs {
        WorkerArgs {
            app: self.app.clone(),
            threads: 1,
            chdir: self.chdir.clone(),
            pythonpath: self.pythonpath.clone(),
            hooks: self.hooks.clone(),
            interface: self.interface,
            worker_connections: self.capacity,
            asgi_loop: self.asgi_loop.clone(),
            asgi_lifespan: self.asgi_lifespan.clone(),
            root_path: self.root_path.clone(),
            ..WorkerArgs::default()
        }
    }
}
