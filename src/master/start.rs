//! Before serving: the interpreter and the config checked, the listeners bound, the
//! operations side (metrics, admin, access log, pidfile) started, and the workers
//! booted; each a step of `master::run`, and each failure a `MasterError`.

use super::*;

/// The listeners, bound before anything starts ("address in use" fails fast), with
/// the URLs they are announced as and the TLS configuration they serve.
pub(super) struct Bound {
    pub(super) listeners: Vec<Listener>,
    pub(super) urls: Vec<String>,
    pub(super) tls: Option<Arc<Tls>>,
    /// The plain-HTTP bind that redirects to HTTPS, and the TLS port it names.
    pub(super) redirect: Option<(tokio::net::TcpListener, u16)>,
}

pub(super) fn bind(
    settings: &Settings,
    inherited: systemd::Inherited,
) -> Result<Bound, MasterError> {
    let tls = match &settings.tls {
        Some((cert, key)) => Some(Tls::load(cert, key)?),
        None => None,
    };
    let listeners = bind_all(settings, inherited)?;
    let urls = listeners.iter().map(|l| url_of(l, tls.is_some())).collect();
    let redirect = match settings.redirect_http {
        Some(addr) => {
            let port = settings.redirect_https_port;
            Some((
                bind_redirect(addr)?,
                port.unwrap_or_else(|| https_port(&listeners)),
            ))
        }
        None => None,
    };
    Ok(Bound {
        listeners,
        urls,
        tls,
        redirect,
    })
}

/// Binds the redirect bind. SO_REUSEPORT: a USR2 upgrade's new master binds it
/// again while the old one still answers on it (it is not among the sockets handed
/// over), and each answers alike.
fn bind_redirect(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, MasterError> {
    let bind = || {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    let l = bind().map_err(|source| MasterError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let local = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("Redirecting plain HTTP to HTTPS at: http://{local}");
    Ok(l)
}

/// The port redirected clients are sent to: the first TCP bind's (443 if none).
fn https_port(listeners: &[Listener]) -> u16 {
    listeners
        .iter()
        .find_map(|l| match l {
            Listener::Tcp(t) => t.local_addr().ok().map(|a| a.port()),
            Listener::Unix { .. } => None,
        })
        .unwrap_or(443)
}

/// Serves the redirect bind, if any, until `stop` (the listeners' stop).
pub(super) fn serve_redirect(
    redirect: Option<(tokio::net::TcpListener, u16)>,
    settings: &Settings,
    connections: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
) {
    if let Some((listener, https_port)) = redirect {
        let conns = crate::tls::redirect::RedirectConns {
            https_port,
            guard: guard_limits(settings),
            timeouts: conn_timeouts(settings),
            connections,
        };
        tokio::spawn(crate::tls::redirect::serve(listener, conns, stop));
    }
}

/// What operators see: the metrics, the phase `/readyz` reports, the admin listener,
/// the access log and the pidfile; all set up before any worker starts, so a path
/// or an address that cannot be used is a set-up error.
pub(super) struct Operations {
    pub(super) metrics: Arc<Metrics>,
    pub(super) phase: watch::Sender<Phase>,
    pub(super) admin_listener: Option<tokio::net::TcpListener>,
    /// Its fd, for a binary upgrade's new master.
    pub(super) admin_fd: Option<std::os::fd::RawFd>,
    pub(super) access_log: Option<Arc<AccessLog>>,
    pub(super) pidfile: Option<PidFile>,
}

impl Operations {
    /// `inherited_admin`: the admin socket an upgrading master handed over.
    pub(super) async fn start(
        settings: &Settings,
        inherited_admin: Option<std::net::TcpListener>,
    ) -> Result<Operations, MasterError> {
        let admin_listener = match (settings.admin_bind, inherited_admin) {
            (Some(addr), Some(l)) => Some(adopt_admin(addr, l)?),
            (Some(addr), None) => Some(bind_admin(addr).await?),
            (None, _) => None,
        };
        let admin_fd = admin_listener.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
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
        let pidfile = match &settings.pid {
            Some(p) => Some(PidFile::write(p)?),
            None => None,
        };
        Ok(Operations {
            metrics: Arc::new(Metrics::new(settings.front_threads)),
            phase: watch::channel(Phase::Starting).0,
            admin_listener,
            admin_fd,
            access_log: access_log.map(Arc::new),
            pidfile,
        })
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` once the front exists.
    pub(super) fn serve_admin(&mut self, front: &Arc<Front>, settings: &Settings) {
        if let Some(l) = self.admin_listener.take() {
            let state = Arc::new(AdminState {
                phase: self.phase.subscribe(),
                metrics: self.metrics.clone(),
                front: front.clone(),
                has_app: settings.app.is_some(),
            });
            let conns = admin::AdminConns {
                timeouts: conn_timeouts(settings),
                guard: guard_limits(settings),
                max: crate::defaults::ADMIN_MAX_CONNECTIONS,
            };
            tokio::spawn(admin::serve(l, state, conns, CancellationToken::new()));
        }
    }
}

/// The static mounts, with `[compression]` for their text files.
pub(super) fn static_files(settings: &Settings) -> Result<StaticFiles, MasterError> {
    let statics = StaticFiles::new(&settings.statics, &settings.static_cache, settings.reload)
        .map_err(MasterError::Static)?;
    Ok(statics.with_compression(settings.compression))
}

/// How every client connection is served, from the settings.
pub(super) fn conn_settings(
    settings: &Settings,
    tls: Option<Arc<Tls>>,
    shards: Shards,
) -> ConnSettings {
    let limits = &settings.limits;
    ConnSettings {
        timeouts: conn_timeouts(settings),
        connections: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
        http2_max_streams: limits.http2_max_streams,
        guard: guard_limits(settings),
        tls,
        proxy_protocol: settings.proxy_protocol,
        shards,
    }
}

/// The slow-client timeouts, for the public and the admin port alike.
fn conn_timeouts(settings: &Settings) -> ConnTimeouts {
    let limits = &settings.limits;
    ConnTimeouts {
        idle: settings.keep_alive,
        head: limits.head_timeout,
        write: limits.write_timeout,
    }
}

/// The request head limits, for the HTTP/1 guard and HTTP/2 requests alike.
pub(super) fn guard_limits(settings: &Settings) -> GuardLimits {
    let limits = &settings.limits;
    GuardLimits {
        request_line: limits.request_line,
        fields: limits.request_fields,
        field_size: limits.request_field_size,
        head: crate::defaults::REQUEST_HEAD,
        require_host: limits.require_host,
    }
}

/// The pidfile, written before any worker starts and removed however we exit.
pub(super) struct PidFile(std::path::PathBuf);

impl PidFile {
    /// Names us now; a USR2 upgrade's new master only once it serves
    /// (`upgrade::take_over`).
    fn write(path: &std::path::Path) -> Result<PidFile, MasterError> {
        let file = PidFile(path.to_path_buf());
        if super::upgrade::taking_over() {
            // It names the old master, which serves, until we do.
            return Ok(file);
        }
        PidFile::name_us(path).map_err(|source| MasterError::Pidfile {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(file)
    }

    pub(super) fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes our pid into `path` whole: a reader (a script sending a signal) sees
    /// the old pid or the new one, never an empty file.
    pub(super) fn name_us(path: &std::path::Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".ferricorn-pid")
            .tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, format!("{}\n", std::process::id()).as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Drop for PidFile {
    /// Only while it is still ours: after a binary upgrade it names the new master.
    fn drop(&mut self) {
        let ours = format!("{}\n", std::process::id());
        if std::fs::read_to_string(&self.0).is_ok_and(|c| c == ours) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The supervisor's task and the channel that commands it.
pub(super) type Pool = (
    mpsc::UnboundedSender<supervisor::Command>,
    tokio::task::JoinHandle<()>,
);

pub(super) struct Booted {
    pub(super) pool: Pool,
    pub(super) proxy: Proxy,
    pub(super) runtime_dir: tempfile::TempDir,
}

/// Boots the workers while still answering TERM, INT and QUIT: an app that takes a
/// minute to import must not make Ctrl-C wait for it. None: stopped during boot.
pub(super) async fn boot_pool(
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
            // An event loop takes every request it is sent: nothing waits in its
            // socket for a thread, so nothing is sent ahead.
            depth: match settings.workers.interface {
                crate::config::Interface::Wsgi => settings.workers.look_ahead,
                crate::config::Interface::Asgi => 0,
            },
            stall: settings.workers.look_ahead_stall,
        },
    );
    tracing::info!(app = %app, workers = settings.workers.count, threads = settings.workers.threads, "Booting workers");
    let boot = Supervisor::boot(
        WorkerSpec::of(settings),
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
                } else if e.is_interface_mismatch() {
                    MasterError::AppInterface { app: app.to_string(), shown: false }
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
        proxy: Proxy::new(dispatcher, settings.limits.clone())
            .with_worker_timeout(settings.workers.timeout),
        runtime_dir: dir,
    }))
}

/// The interpreter the workers will run on, asked before any port is bound; None
/// in static-only mode, which needs no Python.
pub(super) async fn check_interpreter(
    settings: &Settings,
) -> Result<Option<probe::Found>, MasterError> {
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

fn adopt_admin(
    addr: std::net::SocketAddr,
    l: std::net::TcpListener,
) -> Result<tokio::net::TcpListener, MasterError> {
    let adopt = || {
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    };
    adopt().map_err(|source| MasterError::AdminBind {
        addr: addr.to_string(),
        source,
    })
}

pub(super) async fn bind_admin(
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, MasterError> {
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

pub(super) fn bind_all(
    settings: &Settings,
    mut inherited: systemd::Inherited,
) -> Result<Vec<Listener>, MasterError> {
    let bind_error = |addr: &dyn std::fmt::Display| {
        let addr = addr.to_string();
        move |source| MasterError::Bind {
            addr: addr.clone(),
            source,
        }
    };
    let named_fds = settings.binds.iter().any(|b| matches!(b, BindAddr::Fd(_)));
    let mut listeners = Vec::new();
    // A binary upgrade hands over every socket of the old master, in bind order.
    if !inherited.is_empty() && (!named_fds || super::upgrade::taking_over()) {
        // Socket activation: the passed sockets replace `bind`, as in gunicorn.
        tracing::info!(
            sockets = inherited.len(),
            "socket activation: listening on the sockets passed in $LISTEN_FDS (by systemd, or by the master before a USR2 upgrade); [server] bind is not used"
        );
        for fd in (0..inherited.len() as i32).map(|i| systemd::FIRST_FD + i) {
            let error = bind_error(&format!("fd://{fd}"));
            if let Some(socket) = inherited.take_fd(fd).map_err(&error)? {
                listeners.push(Listener::inherited(socket).map_err(&error)?);
            }
        }
        return Ok(listeners);
    }
    for addr in &settings.binds {
        let l = match addr {
            BindAddr::Fd(n) => match inherited.take_fd(*n).map_err(bind_error(addr))? {
                Some(socket) => Listener::inherited(socket),
                None => Listener::bind(addr, settings.umask),
            },
            _ => Listener::bind(addr, settings.umask),
        };
        listeners.push(l.map_err(bind_error(addr))?);
    }
    Ok(listeners)
}

/// What a listener is reachable at: `http://ADDR`, `https://ADDR` or `unix:/path`.
pub(super) fn url_of(l: &Listener, tls: bool) -> String {
    match (l, tls) {
        (Listener::Tcp(_), true) => l.describe().replacen("http://", "https://", 1),
        _ => l.describe(),
    }
}

/// A fresh directory of mode 0700 for the worker sockets, removed on exit.
pub(super) fn make_runtime_dir(settings: &Settings) -> std::io::Result<tempfile::TempDir> {
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

pub(super) async fn check_config(settings: &Settings) -> Result<(), MasterError> {
    if let Some(app) = &settings.app {
        let status = process::check_import(&WorkerSpec::of(settings)).await?;
        if process::app_failure(&status) == Some(crate::supervisor::AppFailure::Interface) {
            // The worker said it on stderr, the user's terminal.
            return Err(MasterError::AppInterface {
                app: app.clone(),
                shown: true,
            });
        }
        if !status.success() {
            return Err(MasterError::AppImport(app.clone()));
        }
    }
    print!("{}", settings.describe());
    println!("# config OK");
    Ok(())
}
