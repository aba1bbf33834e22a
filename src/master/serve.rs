//! Serving: the accept loops, "Ready" and the banner, the signals while running
//! (reload, workers up and down, log reopening), and the drain at the end.

use super::*;

/// The accept loops, and what stops and drains them.
pub(super) struct Serving {
    drain: Arc<Drain>,
    stop_accepting: CancellationToken,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The listeners' connection places (`max_connections`), which the redirect bind
    /// shares: the open-file plan counts them once.
    connections: Arc<tokio::sync::Semaphore>,
}

impl Serving {
    pub(super) fn start(
        settings: &Settings,
        listeners: Vec<Listener>,
        front: &Arc<Front>,
        tls: &Option<Arc<Tls>>,
        shards: Shards,
    ) -> Serving {
        let drain = Arc::new(Drain::default());
        let stop_accepting = CancellationToken::new();
        let conn_settings = conn_settings(settings, tls.clone(), shards);
        let accept_tasks = listeners
            .into_iter()
            .map(|l| {
                tokio::spawn(listener::accept_loop(
                    l,
                    front.clone(),
                    conn_settings.clone(),
                    drain.clone(),
                    stop_accepting.clone(),
                ))
            })
            .collect();
        Serving {
            drain,
            stop_accepting,
            accept_tasks,
            connections: conn_settings.connections,
        }
    }

    /// Cancelled when the listeners stop accepting (the redirect bind stops with them).
    pub(super) fn stop_token(&self) -> CancellationToken {
        self.stop_accepting.clone()
    }

    /// The connection places the listeners take from, for the redirect bind.
    pub(super) fn connections(&self) -> Arc<tokio::sync::Semaphore> {
        self.connections.clone()
    }

    /// Stops accepting and gives the connections `grace` to finish.
    pub(super) async fn drain(self, grace: Duration) {
        self.stop_accepting.cancel();
        for t in self.accept_tasks {
            let _ = t.await;
        }
        if tokio::time::timeout(grace, self.drain.drain())
            .await
            .is_err()
        {
            tracing::warn!("graceful timeout: closing connections with requests in flight");
        }
    }
}

/// "Listening at" and "Ready" (the app imported: a failed import is never preceded
/// by them), and the banner on a terminal.
pub(super) fn announce_ready(
    settings: &Settings,
    urls: &[String],
    ops: &Operations,
    error_log: &ErrorLog,
    python: Option<&probe::Found>,
) {
    for url in urls {
        tracing::info!("Listening at: {url} ({})", std::process::id());
    }
    // Ready for /readyz before the "Ready" line: whoever reads the line (tests, people)
    // may ask /readyz at once.
    let _ = ops.phase.send(Phase::Ready);
    let workers = match settings.app {
        Some(_) => settings.workers.count,
        None => 0,
    };
    tracing::info!(workers, static_mounts = settings.statics.len(), "Ready");
    systemd::notify(&format!(
        "READY=1\nSTATUS=Ready: {workers} worker(s), {}",
        urls.join(", ")
    ));
    // A binary upgrade's new master: the old one may drain now.
    super::upgrade::take_over(ops.pidfile.as_ref());
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // After the queued log lines, "Ready" among them.
        error_log.flush(Duration::from_secs(1));
        eprint!("{}", banner(settings, urls, python));
    }
}

/// What the signals act on while the server runs.
pub(super) struct Running<'a> {
    pub(super) cli: &'a Cli,
    /// The listening sockets, for a binary upgrade's new master (USR2).
    pub(super) listener_fds: &'a [std::os::fd::RawFd],
    pub(super) admin_fd: Option<std::os::fd::RawFd>,
    /// The pid file, named again by this master if a new one fails (USR2).
    pub(super) pidfile: Option<&'a std::path::Path>,
    pub(super) pool: &'a Option<Pool>,
    pub(super) tls: &'a Option<Arc<Tls>>,
    pub(super) error_log: &'a ErrorLog,
    pub(super) access_log: &'a Option<Arc<AccessLog>>,
}

impl Running<'_> {
    /// Answers HUP, TTIN, TTOU, USR1 and code changes until a stop: true for QUIT's
    /// quick stop, false for TERM/INT's graceful one.
    pub(super) async fn until_stopped(
        &self,
        cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        loop {
            match cmd_rx.recv().await {
                Some(Command::Stop) | None => {
                    tracing::info!("Received TERM/INT: graceful stop");
                    systemd::notify("STOPPING=1");
                    return false;
                }
                Some(Command::Quit) => {
                    tracing::info!("Received QUIT: quick stop");
                    systemd::notify("STOPPING=1");
                    return true;
                }
                Some(cmd @ (Command::Reload | Command::CodeChanged)) => {
                    let hup = cmd == Command::Reload;
                    if hup {
                        tracing::info!("Received HUP: reloading");
                        systemd::notify_reloading();
                    }
                    self.reload_tls();
                    // READY=1 comes from the supervisor when the workers are replaced
                    // (or the reload failed); at once when nothing was sent to it.
                    if !reload(self.cli, self.pool, hup).await && hup {
                        systemd::notify("READY=1");
                    }
                }
                Some(Command::AddWorker) => send(self.pool, supervisor::Command::AddWorker),
                Some(Command::RemoveWorker) => send(self.pool, supervisor::Command::RemoveWorker),
                Some(Command::ReopenLogs) => self.reopen_logs(),
                Some(Command::Upgrade) => {
                    tracing::info!("Received USR2: binary upgrade");
                    super::upgrade::start_new_master(
                        self.listener_fds,
                        self.admin_fd,
                        self.pidfile,
                    );
                }
            }
        }
    }

    fn reload_tls(&self) {
        if let Some(tls) = self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; keeping the current certificate")
                }
            }
        }
    }

    fn reopen_logs(&self) {
        match self.error_log.reopen() {
            Ok(()) => tracing::info!("Received USR1: log files reopened"),
            Err(e) => tracing::error!(error = %e, "USR1: cannot reopen the error log"),
        }
        if let Some(log) = self.access_log {
            log.reopen();
        }
    }
}

/// Stops the workers: at once for a quick stop, else with 5 s to finish.
pub(super) async fn stop_pool(pool: Option<Pool>, quick: bool) {
    if let Some((tx, handle)) = pool {
        let (done_tx, done_rx) = oneshot::channel();
        let grace = if quick {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        };
        let _ = tx.send(supervisor::Command::Stop {
            grace,
            done: done_tx,
        });
        let _ = done_rx.await;
        let _ = handle.await;
    }
}

pub(super) fn send(pool: &Option<Pool>, cmd: supervisor::Command) {
    match pool {
        Some((tx, _)) => {
            let _ = tx.send(cmd);
        }
        None => tracing::info!("no workers in static-only mode; signal ignored"),
    }
}

/// HUP: a config that no longer parses, or (with `ask_interpreter`) an interpreter that can
/// no longer run our worker (a venv upgraded or broken under the running server),
/// leaves everything as it is. The probe is awaited, so reloads stay in order.
/// true when the supervisor was asked to reload.
pub(super) async fn reload(cli: &Cli, pool: &Option<Pool>, ask_interpreter: bool) -> bool {
    let settings = match Settings::load(cli) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("reload refused, config invalid: {e}");
            return false;
        }
    };
    if let (true, Some(python), Some(_)) = (ask_interpreter, &settings.python.interpreter, pool) {
        if let Err(e) = probe::check(python).await {
            tracing::error!("reload refused, old workers keep serving: {e}");
            return false;
        }
    }
    send(
        pool,
        supervisor::Command::Reload(Box::new(WorkerSpec::of(&settings))),
    );
    pool.is_some()
}

/// The few lines a person at a terminal wants once the server is up: where to point
/// the browser, what runs, and whether this is dev mode. Logs (and log shippers)
/// never see it: it is printed only when stderr is a terminal, after "Ready".
pub(super) fn banner(
    settings: &Settings,
    urls: &[String],
    python: Option<&probe::Found>,
) -> String {
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
