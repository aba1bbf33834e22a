//! The master process: start-up order, serving, and the response to signals.
//!
//! Order: parse flags and config (exit 2 on error) → ask the app's interpreter
//! whether it can run our worker (exit 2 if not) → bind listeners (so "address in
//! use" fails fast) → install signal handlers → boot the workers (exit 3 when the app
//! does not import) → announce Ready → serve until TERM/INT (drain, exit 0) or QUIT.

use crate::admin::{self, AdminState};
use crate::cli::Cli;
use crate::config::Settings;
use crate::conn_watch::Drain;
use crate::dispatcher::{Dispatcher, LookAhead};
use crate::front::{AppCompression, Front};
use crate::guard::{ConnTimeouts, GuardLimits};
use crate::listener::{self, ConnSettings, Listener};
use crate::observe::access_log::AccessLog;
use crate::observe::error_log::{self, ErrorLog};
use crate::observe::worker_output;
use crate::observe::{Metrics, Phase};
use crate::proxy::Proxy;
use crate::shards::Shards;
use crate::signals::{self, Command};
use crate::static_files::StaticFiles;
use crate::supervisor::{self, probe, process, Supervisor};
use crate::tls::Tls;
use clap::Parser;
use ferricorn_wire::EXIT_APP_IMPORT;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

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
    let outcome = runtime.block_on(run(cli, settings, error_log.clone()));
    // Everything queued is out before the last line, which goes straight to stderr.
    error_log.flush(Duration::from_secs(2));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ MasterError::AppImport(_)) => {
            eprintln!("ferricorn: {e}");
            ExitCode::from(EXIT_APP_IMPORT)
        }
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
            | MasterError::AccessLog { .. } => true,
            MasterError::Start(e) => e.is_protocol_mismatch(),
            _ => false,
        }
    }
}

async fn run(cli: Cli, settings: Settings, error_log: ErrorLog) -> Result<(), MasterError> {
    let python = check_interpreter(&settings).await?;
    if settings.check_config {
        return check_config(&settings).await;
    }
    let tls = match &settings.tls {
        Some((cert, key)) => Some(Tls::load(cert, key)?),
        None => None,
    };
    let listeners = bind_all(&settings)?;
    let urls: Vec<String> = listeners.iter().map(|l| url_of(l, tls.is_some())).collect();
    // Said once the app imported: before, a failed import would follow it.
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

    let metrics = Arc::new(Metrics::new(settings.front_threads));
    let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
    let admin_listener = match settings.admin_bind {
        Some(addr) => Some(bind_admin(addr).await?),
        None => None,
    };
    let access_log = match &settings.access_logfile {
        Some(target) => Some(
            AccessLog::start(target, settings.access_log_format.clone()).map_err(|source| {
                MasterError::AccessLog {
                    path: target.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    // Before any worker starts: a path that cannot be written is a set-up error.
    let _pidfile = match &settings.pid {
        Some(p) => Some(PidFile::write(p)?),
        None => None,
    };
    let statics = StaticFiles::new(&settings.statics, &settings.static_cache, settings.reload)
        .map_err(MasterError::Static)?;
    let (pool, proxy, _runtime_dir) = match &settings.app {
        Some(app) => match boot_pool(&settings, app, &metrics, &shards, &mut cmd_rx).await? {
            Some(booted) => (
                Some(booted.pool),
                Some(booted.proxy),
                Some(booted.runtime_dir),
            ),
            None => return Ok(()),
        },
        None => (None, None, None),
    };

    let front = Arc::new(Front::new(
        statics,
        proxy,
        metrics.clone(),
        access_log.map(Arc::new),
        AppCompression(settings.compression),
    ));
    if let Some(l) = admin_listener {
        let state = Arc::new(AdminState {
            phase: phase_rx,
            metrics: metrics.clone(),
            front: front.clone(),
            has_app: settings.app.is_some(),
        });
        tokio::spawn(admin::serve(l, state, CancellationToken::new()));
    }
    let drain = Arc::new(Drain::default());
    let stop_accepting = CancellationToken::new();
    let conn_settings = conn_settings(&settings, tls.clone(), shards.clone());
    let mut accept_tasks = Vec::new();
    for l in listeners {
        accept_tasks.push(tokio::spawn(listener::accept_loop(
            l,
            front.clone(),
            conn_settings.clone(),
            drain.clone(),
            stop_accepting.clone(),
        )));
    }
    for url in &urls {
        tracing::info!("Listening at: {url} ({})", std::process::id());
    }
    // Ready for /readyz before the "Ready" line: whoever reads the line (tests, people)
    // may ask /readyz at once.
    let _ = phase_tx.send(Phase::Ready);
    tracing::info!(
        workers = if settings.app.is_some() {
            settings.workers.count
        } else {
            0
        },
        static_mounts = settings.statics.len(),
        "Ready"
    );
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // After the queued log lines, "Ready" among them.
        error_log.flush(Duration::from_secs(1));
        eprint!("{}", banner(&settings, &urls, python.as_ref()));
    }

    let quick = loop {
        match cmd_rx.recv().await {
            Some(Command::Stop) | None => {
                tracing::info!("Received TERM/INT: graceful stop");
                break false;
            }
            Some(Command::Quit) => {
                tracing::info!("Received QUIT: quick stop");
                break true;
            }
            Some(cmd @ (Command::Reload | Command::CodeChanged)) => {
                if cmd == Command::Reload {
                    tracing::info!("Received HUP: reloading");
                }
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "TLS reload failed; keeping the current certificate")
                        }
                    }
                }
                reload(&cli, &pool, cmd == Command::Reload).await;
            }
            Some(Command::AddWorker) => send(&pool, supervisor::Command::AddWorker),
            Some(Command::RemoveWorker) => send(&pool, supervisor::Command::RemoveWorker),
            Some(Command::ReopenLogs) => {
                match error_log.reopen() {
                    Ok(()) => tracing::info!("Received USR1: log files reopened"),
                    Err(e) => tracing::error!(error = %e, "USR1: cannot reopen the error log"),
                }
                if let Some(log) = &front.access_log {
                    log.reopen();
                }
            }
        }
    };
    // Load balancers stop sending traffic while in-flight work drains.
    let _ = phase_tx.send(Phase::Draining);

    stop_accepting.cancel();
    for t in accept_tasks {
        let _ = t.await;
    }
    let grace = if quick {
        Duration::ZERO
    } else {
        settings.graceful_timeout
    };
    if tokio::time::timeout(grace, drain.drain()).await.is_err() {
        tracing::warn!("graceful timeout: closing connections with requests in flight");
    }
    if let Some((tx, handle)) = pool {
        let (done_tx, done_rx) = oneshot::channel();
        let _ = tx.send(supervisor::Command::Stop {
            grace: if quick {
                Duration::ZERO
            } else {
                Duration::from_secs(5)
            },
            done: done_tx,
        });
        let _ = done_rx.await;
        let _ = handle.await;
    }
    front_threads.stop();
    tracing::info!("Shutdown complete");
    Ok(())
}

/// How every client connection is served, from the settings.
fn conn_settings(settings: &Settings, tls: Option<Arc<Tls>>, shards: Shards) -> ConnSettings {
    let limits = &settings.limits;
    ConnSettings {
        timeouts: ConnTimeouts {
            idle: settings.keep_alive,
            head: limits.head_timeout,
            write: limits.write_timeout,
        },
        connections: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
        http2_max_streams: limits.http2_max_streams,
        guard: GuardLimits {
            request_line: limits.request_line,
            fields: limits.request_fields,
            field_size: limits.request_field_size,
            require_host: limits.require_host,
        },
        tls,
        proxy_protocol: settings.proxy_protocol,
        shards,
    }
}

fn import_failure_line(app: &str) -> String {
    worker_output::last_import_failure()
        .unwrap_or_else(|| format!("failed to import the app {app:?}"))
}

/// The pidfile, written before any worker starts and removed however we exit.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> Result<PidFile, MasterError> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            MasterError::Pidfile {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The supervisor's task and the channel that commands it.
type Pool = (
    mpsc::UnboundedSender<supervisor::Command>,
    tokio::task::JoinHandle<()>,
);

struct Booted {
    pool: Pool,
    proxy: Proxy,
    runtime_dir: tempfile::TempDir,
}

/// Boots the workers while still answering TERM, INT and QUIT: an app that takes a
/// minute to import must not make Ctrl-C wait for it. None: stopped during boot.
async fn boot_pool(
    settings: &Settings,
    app: &str,
    metrics: &Arc<Metrics>,
    shards: &Shards,
    cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<Option<Booted>, MasterError> {
    let dir = make_runtime_dir(settings).map_err(MasterError::RuntimeDir)?;
    let dispatcher = Dispatcher::new(
        settings.workers.backlog,
        settings.workers.queue_timeout,
        LookAhead {
            depth: settings.workers.look_ahead,
            stall: settings.workers.look_ahead_stall,
        },
    );
    tracing::info!(app = %app, workers = settings.workers.count, threads = settings.workers.threads, "Booting workers");
    let boot = Supervisor::boot(
        settings.clone(),
        dispatcher,
        dir.path().to_path_buf(),
        metrics.clone(),
        shards.clone(),
    );
    tokio::pin!(boot);
    let sup = loop {
        tokio::select! {
            booted = &mut boot => break booted.map_err(|e| {
                if e.is_import_failure() {
                    MasterError::AppImport(app.to_string())
                } else {
                    e.into()
                }
            })?,
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Stop | Command::Quit) | None => {
                    tracing::info!("Received a stop signal while booting: stopping");
                    process::kill_tracked();
                    return Ok(None);
                }
                Some(other) => tracing::info!(signal = ?other, "ignored while booting"),
            },
        }
    };
    let (sup_tx, sup_rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(sup.run(sup_rx));
    Ok(Some(Booted {
        pool: (sup_tx, handle),
        proxy: Proxy::new(
            dispatcher,
            settings.limits.clone(),
            settings.forwarded_allow_ips.clone(),
        ),
        runtime_dir: dir,
    }))
}

fn send(pool: &Option<Pool>, cmd: supervisor::Command) {
    match pool {
        Some((tx, _)) => {
            let _ = tx.send(cmd);
        }
        None => tracing::info!("no workers in static-only mode; signal ignored"),
    }
}

/// The interpreter the workers will run on, asked before any port is bound; None
/// in static-only mode, which needs no Python.
async fn check_interpreter(settings: &Settings) -> Result<Option<probe::Found>, MasterError> {
    let Some(python) = &settings.python.interpreter else {
        return Ok(None);
    };
    let found = probe::check(python).await?;
    tracing::info!(
        python = %python.path.display(),
        chosen_by = %python.chosen_by,
        version = %format!("{} {}", found.implementation, found.version),
        prefix = %found.prefix,
        "Python interpreter"
    );
    Ok(Some(found))
}

/// HUP: a config that no longer parses, or (with `ask_interpreter`) an interpreter that can
/// no longer run our worker (a venv upgraded or broken under the running server),
/// leaves everything as it is. The probe is awaited, so reloads stay in order.
async fn reload(cli: &Cli, pool: &Option<Pool>, ask_interpreter: bool) {
    let settings = match Settings::load(cli) {
        Ok(s) => s,
        Err(e) => return tracing::error!("reload refused, config invalid: {e}"),
    };
    if let (true, Some(python), Some(_)) = (ask_interpreter, &settings.python.interpreter, pool) {
        if let Err(e) = probe::check(python).await {
            return tracing::error!("reload refused, old workers keep serving: {e}");
        }
    }
    send(pool, supervisor::Command::Reload(Box::new(settings)));
}

async fn bind_admin(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, MasterError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MasterError::AdminBind {
            addr: addr.to_string(),
            source,
        })?;
    let local = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("Admin listening at: http://{local}");
    Ok(l)
}

fn bind_all(settings: &Settings) -> Result<Vec<Listener>, MasterError> {
    let mut listeners = Vec::new();
    for addr in &settings.binds {
        let l = Listener::bind(addr, settings.umask).map_err(|source| MasterError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// What a listener is reachable at: `http://ADDR`, `https://ADDR` or `unix:/path`.
fn url_of(l: &Listener, tls: bool) -> String {
    match (l, tls) {
        (Listener::Tcp(_), true) => l.describe().replacen("http://", "https://", 1),
        _ => l.describe(),
    }
}

/// The few lines a person at a terminal wants once the server is up: where to point
/// the browser, what runs, and whether this is dev mode. Logs (and log shippers)
/// never see it: it is printed only when stderr is a terminal, after "Ready".
fn banner(settings: &Settings, urls: &[String], python: Option<&probe::Found>) -> String {
    let mut out = format!("\n  ferricorn {} is ready\n", env!("CARGO_PKG_VERSION"));
    for url in urls {
        // A browser wants the trailing slash; a Unix socket path must not get one.
        let slash = if url.starts_with("http") { "/" } else { "" };
        out += &format!("  Listening:  {url}{slash}\n");
    }
    match &settings.app {
        Some(app) => {
            let w = &settings.workers;
            out += &format!(
                "  App:        {app}  ({} worker{} x {} thread{})\n",
                w.count,
                if w.count == 1 { "" } else { "s" },
                w.threads,
                if w.threads == 1 { "" } else { "s" },
            );
        }
        None => out += "  App:        none (static files only)\n",
    }
    if let (Some(found), Some(i)) = (python, &settings.python.interpreter) {
        out += &format!(
            "  Python:     {} {} ({}, {})\n",
            found.implementation,
            found.version,
            i.path.display(),
            i.chosen_by
        );
    }
    for s in &settings.statics {
        out += &format!("  Static:     {} -> {}\n", s.url, s.dir.display());
    }
    out += if settings.reload {
        "  Dev mode:   on (--reload: code changes restart workers; tracebacks in error pages; static files no-cache)\n"
    } else {
        "  Dev mode:   off\n"
    };
    out += "  Press Ctrl-C to stop.\n\n";
    out
}

/// A fresh directory of mode 0700 for the worker sockets, removed on exit.
fn make_runtime_dir(settings: &Settings) -> std::io::Result<tempfile::TempDir> {
    let base = settings
        .runtime_dir
        .clone()
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(Into::into))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    // Only our user may reach the worker sockets: mode 0700 from creation on.
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("ferricorn-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
}

async fn check_config(settings: &Settings) -> Result<(), MasterError> {
    if let Some(app) = &settings.app {
        let status = process::check_import(settings).await?;
        if !status.success() {
            return Err(MasterError::AppImport(app.clone()));
        }
    }
    print!("{}", settings.describe());
    println!("# config OK");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_names_urls_app_workers_statics_and_dev_mode() {
        let cli = Cli::parse_from([
            "ferricorn",
            "-w",
            "3",
            "--threads",
            "2",
            "--reload",
            "--static",
            &format!("/static/={}", env!("CARGO_MANIFEST_DIR")),
            "mysite.wsgi:application",
        ]);
        let settings = Settings::load(&cli).unwrap();
        let found = probe::Found {
            implementation: "cpython".into(),
            version: "3.14.0".into(),
            executable: "/srv/venv/bin/python".into(),
            prefix: "/srv/venv".into(),
            module: probe::Module::NotTried,
        };
        let text = banner(
            &settings,
            &["http://127.0.0.1:8000".into(), "unix:/run/f.sock".into()],
            Some(&found),
        );
        assert!(
            text.contains("Listening:  http://127.0.0.1:8000/\n"),
            "{text}"
        );
        assert!(text.contains("Listening:  unix:/run/f.sock\n"), "{text}");
        assert!(
            text.contains("App:        mysite.wsgi:application  (3 workers x 2 threads)"),
            "{text}"
        );
        assert!(text.contains("Static:     /static/ -> "), "{text}");
        assert!(text.contains("Python:     cpython 3.14.0 ("), "{text}");
        assert!(text.contains("Dev mode:   on"), "{text}");

        let settings = Settings::load(&Cli::parse_from([
            "ferricorn",
            "--static",
            "/s/=.",
            "-w",
            "1",
        ]))
        .unwrap();
        let text = banner(&settings, &[], None);
        assert!(
            text.contains("App:        none (static files only)"),
            "{text}"
        );
        assert!(text.contains("Dev mode:   off"), "{text}");
    }
}
