//! The master process: start-up order, serving, and the response to signals.
//!
//! Order: parse flags and config (exit 2 on error) → ask the app's interpreter
//! whether it can run our worker (exit 2 if not) → raise the open-file limit (a
//! warning when it is short, `fd_limit`) → bind listeners (so "address in
//! use" fails fast) → install signal handlers → boot the workers (exit 3 when the app
//! does not import) → announce Ready → serve until TERM/INT (drain, exit 0) or QUIT.

mod fd_limit;
mod serve;
mod start;
mod upgrade;

use crate::admin::{self, AdminState};
use crate::cli::Cli;
use crate::config::Settings;
use crate::conn_watch::Drain;
use crate::dispatcher::{Dispatcher, LookAhead};
use crate::front::{AppCompression, Front};
use crate::guard::{ConnTimeouts, GuardLimits};
use crate::listener::{self, ConnSettings, Listener};
use crate::net::BindAddr;
use crate::observe::access_log::AccessLog;
use crate::observe::error_log::{self, ErrorLog};
use crate::observe::worker_output;
use crate::observe::{Metrics, Phase};
use crate::proxy::Proxy;
use crate::shards::Shards;
use crate::signals::{self, Command};
use crate::static_files::StaticFiles;
use crate::supervisor::spec::WorkerSpec;
use crate::supervisor::{self, probe, process, Supervisor};
use crate::systemd;
use crate::tls::Tls;
use clap::Parser;
use ferricorn_wire::EXIT_APP_IMPORT;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use serve::*;
use start::*;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The worker's own summary line when it sent one (`failed to import app "x":
    /// ModuleNotFoundError: ...`), else one naming the app.
    #[error("{}", import_failure_line(.0))]
    AppImport(String),
    /// The app speaks the other interface (the worker's one line: `"x" is an ASGI
    /// app ...; add -k asgi`), a set-up error; `shown`: the worker already printed
    /// it on the terminal (`--check-config`).
    #[error("{}", interface_line(app))]
    AppInterface { app: String, shown: bool },
    #[error(transparent)]
    Start(#[from] supervisor::StartError),
    #[error(transparent)]
    Interpreter(#[from] Box<probe::ProbeError>),
    #[error("runtime directory: {0}")]
    RuntimeDir(std::io::Error),
    #[error("static files: {0}")]
    Static(std::io::Error),
    #[error("signals: {0}")]
    Signals(std::io::Error),
    #[error("--reload file watcher: {0}")]
    Watch(notify::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the pidfile {}: {source}", path.display())]
    Pidfile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} (admin): {source}")]
    AdminBind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub fn main() -> ExitCode {
    // Before any thread starts: it reads and removes $LISTEN_FDS / $LISTEN_PID.
    let inherited = systemd::Inherited::take();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let settings = match Settings::load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferricorn: {e}");
            return ExitCode::from(2);
        }
    };
    let error_log = match ErrorLog::open(settings.error_logfile.as_deref()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "ferricorn: cannot open the error log {}: {e}",
                settings
                    .error_logfile
                    .as_deref()
                    .unwrap_or(std::path::Path::new("-"))
                    .display()
            );
            return ExitCode::from(2);
        }
    };
    error_log::init(&settings.log_level, settings.log_format, error_log.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferricorn: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(cli, settings, error_log.clone(), inherited));
    // Everything queued is out before the last line, which goes straight to stderr.
    error_log.flush(Duration::from_secs(2));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ MasterError::AppImport(_)) => {
            eprintln!("ferricorn: {e}");
            ExitCode::from(EXIT_APP_IMPORT)
        }
        Err(MasterError::AppInterface { shown: true, .. }) => ExitCode::from(2),
        Err(e) if e.is_setup_error() => {
            eprintln!("ferricorn: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ferricorn: {e}");
            ExitCode::from(1)
        }
    }
}

impl MasterError {
    /// The user's set-up is wrong (exit 2, like a bad flag), not the server.
    fn is_setup_error(&self) -> bool {
        match self {
            MasterError::Interpreter(_)
            | MasterError::Pidfile { .. }
            | MasterError::AccessLog { .. }
            | MasterError::AppInterface { .. } => true,
            MasterError::Start(e) => e.is_protocol_mismatch(),
            _ => false,
        }
    }
}

/// The master's life, step by step: check, bind, start the operations side, boot
/// the workers, serve, and on a stop signal drain.
async fn run(
    cli: Cli,
    mut settings: Settings,
    error_log: ErrorLog,
    inherited: systemd::Inherited,
) -> Result<(), MasterError> {
    let python = check_interpreter(&settings).await?;
    if settings.check_config {
        return check_config(&settings).await;
    }
    fd_limit::fit(&mut settings);
    crate::dispatcher::response_budget::configure(
        settings.limits.response_memory,
        settings.limits.response_files,
        settings.limits.body_spool_wait,
    );
    let mut inherited = inherited;
    let inherited_admin = upgrade::inherited_admin(&mut inherited);
    let mut bound = bind(&settings, inherited)?;
    let (shards, front_threads) = Shards::start(settings.front_threads)?;
    process::become_subreaper();
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    signals::install(cmd_tx.clone()).map_err(MasterError::Signals)?;
    let _watcher = match (settings.reload, &settings.app) {
        (true, Some(_)) => {
            Some(crate::reload::watch(&settings, cmd_tx).map_err(MasterError::Watch)?)
        }
        _ => None,
    };
    let mut ops = Operations::start(&settings, inherited_admin).await?;
    let statics = start::static_files(&settings)?;
    let (pool, proxy, _runtime_dir) = match &settings.app {
        Some(app) => match boot_pool(&settings, app, &ops.metrics, &shards, &mut cmd_rx).await? {
            Some(b) => (Some(b.pool), Some(b.proxy), Some(b.runtime_dir)),
            None => return Ok(()),
        },
        None => (None, None, None),
    };
    let front = front(&settings, statics, proxy, &ops);
    ops.serve_admin(&front, &settings);
    let listener_fds: Vec<_> = bound.listeners.iter().map(Listener::raw_fd).collect();
    let serving = Serving::start(&settings, bound.listeners, &front, &bound.tls, shards);
    start::serve_redirect(
        bound.redirect.take(),
        &settings,
        serving.connections(),
        serving.stop_token(),
    );
    announce_ready(&settings, &bound.urls, &ops, &error_log, python.as_ref());
    let running = Running {
        cli: &cli,
        listener_fds: &listener_fds,
        admin_fd: ops.admin_fd,
        pidfile: ops.pidfile.as_ref().map(PidFile::path),
        pool: &pool,
        tls: &bound.tls,
        error_log: &error_log,
        access_log: &ops.access_log,
    };
    let quick = running.until_stopped(&mut cmd_rx).await;
    stop(quick, &settings, &ops, serving, pool).await;
    front_threads.stop();
    tracing::info!("Shutdown complete");
    Ok(())
}

/// The front every listener serves: static files, the app's proxy, and the rules
/// each request is checked against.
fn front(
    settings: &Settings,
    statics: StaticFiles,
    proxy: Option<Proxy>,
    ops: &Operations,
) -> Arc<Front> {
    Arc::new(Front::new(
        statics,
        proxy,
        ops.metrics.clone(),
        ops.access_log.clone(),
        crate::front::Rules {
            compression: AppCompression(settings.compression),
            limits: crate::front::limits::RouteLimits::new(&settings.routes),
            head_limits: start::guard_limits(settings),
            real_ip: crate::proxy::forward_headers::RealIp {
                trusted: settings.forwarded_allow_ips.clone(),
                header: settings.real_ip_header.clone(),
            },
            websockets: crate::front::WebSockets::from_settings(settings),
        },
    ))
}

/// A stop signal came (`quick`: INT/QUIT): say Draining, drain the connections
/// for `graceful_timeout` (none when quick), then stop the workers.
async fn stop(
    quick: bool,
    settings: &Settings,
    ops: &Operations,
    serving: Serving,
    pool: Option<Pool>,
) {
    // Load balancers stop sending traffic while in-flight work drains.
    let _ = ops.phase.send(Phase::Draining);
    let grace = if quick {
        Duration::ZERO
    } else {
        settings.graceful_timeout
    };
    if let (false, Some((tx, _))) = (quick, &pool) {
        // ASGI streams that never end by themselves end before `grace` is over.
        let _ = tx.send(supervisor::Command::Stopping { grace });
    }
    serving.drain(grace).await;
    stop_pool(pool, quick).await;
}

fn interface_line(app: &str) -> String {
    worker_output::last_import_failure().unwrap_or_else(|| {
        format!("the app {app:?} speaks the other interface than its workers (WSGI or ASGI): see [workers] interface, -k")
    })
}

fn import_failure_line(app: &str) -> String {
    worker_output::last_import_failure()
        .unwrap_or_else(|| format!("failed to import the app {app:?}"))
}
