//! The supervisor: keeps `workers` worker processes ready behind the dispatcher, the
//! way gunicorn's arbiter does. It replaces a worker that dies (with back-off when
//! starts keep failing), kills one that stays silent past `--timeout` (`timeout`:
//! once its other threads' requests are done), retires one
//! that reached `--max-requests`, `max_memory` or `max_lifetime` (`recycle`) once
//! its replacement is ready, and rolls every worker over on reload, each new worker
//! ready before an old one drains (`reload`: one that fails leaves the server as
//! it was).
//!
//! It is one task that owns all worker state and reacts to events (worker started,
//! exited, quota reached, a 100 ms tick) and commands from the master; `policy` holds
//! the pure decisions and `process` the only spawn/kill code.

mod drain;
mod hooks;
pub mod policy;
pub mod probe;
pub mod process;
mod recycle;
mod reload;
pub mod spec;
mod start;
mod timeout;
mod zygote;

use start::{remove_worker_files, start};
pub use start::{AppFailure, StartError};

use crate::dispatcher::{Dispatcher, WorkerConn, WorkerEvent};
use crate::observe::{Metrics, RestartReason};
use crate::shards::Shards;
use nix::sys::signal::Signal;
use spec::WorkerSpec;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Time between the faulthandler signal and SIGKILL for a timed-out worker.
const DUMP_GRACE: Duration = Duration::from_millis(300);
/// After `graceful_timeout` a draining worker's WebSockets are closed; a thread whose
/// app still has not returned this much later (it ignores its socket's end) is hung,
/// and no timeout applies to it: its worker is killed.
const HUNG_TUNNEL_MARGIN: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum Command {
    /// Re-read settings and replace every worker (HUP, or a file change with --reload).
    Reload(Box<WorkerSpec>),
    AddWorker,
    RemoveWorker,
    /// The master's TERM: the front drains for `grace` (`drain`: ASGI streams).
    Stopping {
        grace: Duration,
    },
    /// Stop every worker: TERM, then KILL after the grace period; reply when done.
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

enum Event {
    Conn(WorkerEvent),
    Started {
        purpose: Purpose,
        /// The reload generation it was started for.
        generation: u64,
        result: Result<Arc<WorkerConn>, StartError>,
    },
    Exited {
        pid: u32,
        status: std::io::Result<ExitStatus>,
        socket: PathBuf,
    },
}

/// Why a worker is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Keep the pool at its target size.
    Fill,
    /// Replace an old-generation worker during a reload.
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Serving,
    /// No new requests since then; TERM once in-flight work is done. Its WebSockets
    /// (never timed out) are closed by the front after `graceful_timeout`.
    Draining(Instant),
    /// SIGKILL at this instant (after the faulthandler dump).
    Killing(Instant),
    /// A request timed out while its other threads ran requests: no new requests;
    /// SIGKILL once those have ended or timed out, or at this instant (`timeout`).
    Condemned(Instant),
    /// TERM or KILL sent; waiting for the exit.
    Stopping,
    /// Its connection closed while serving: SIGKILL sent, a replacement started;
    /// the exit is reported as a death.
    Lost,
}

struct Managed {
    conn: Arc<WorkerConn>,
    state: WorkerState,
    /// Belongs to the generation a reload is replacing, or is being recycled.
    old: bool,
    born: Instant,
    /// Its `max_lifetime` with jitter.
    lifetime: Option<Duration>,
    /// Its RSS when it became ready (with `max_memory` set), see `recycle`.
    born_rss: Option<u64>,
    /// The reload generation it was started for (`reload`).
    generation: u64,
    /// Draining: its open ASGI streams were ended and it got TERM (`drain`).
    cut: bool,
}

impl Managed {
    fn new(
        conn: Arc<WorkerConn>,
        state: WorkerState,
        old: bool,
        lifetime: Option<Duration>,
    ) -> Self {
        Managed {
            conn,
            state,
            old,
            born: Instant::now(),
            lifetime,
            born_rss: None,
            generation: 0,
            cut: false,
        }
    }
}

pub struct Supervisor {
    spec: WorkerSpec,
    dispatcher: &'static Dispatcher,
    runtime_dir: PathBuf,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    workers: HashMap<u32, Managed>,
    target: usize,
    starting: usize,
    failures: u32,
    seq: u64,
    stopping: bool,
    metrics: Arc<Metrics>,
    /// Where each worker's connection lives.
    shards: Shards,
    /// New-generation workers of a reload not yet ready, and not yet started.
    reload_pending: usize,
    reload_to_start: usize,
    /// Bumped by each reload: a worker started for an earlier one is superseded.
    generation: u64,
    /// During a reload: the settings it replaced, put back if it fails (`reload`).
    settled: Option<reload::Settled>,
    /// When memory and ages were last checked (`recycle`).
    recycle_checked: Instant,
    /// A fresh worker over `max_memory` was warned about (once per generation).
    max_memory_warned: bool,
    /// Preload: the zygote that forks this generation's workers.
    zygotes: Arc<zygote::Zygotes>,
    /// The master's Python hooks, and prometheus_client's clean-up.
    hooks: Option<hooks::HookHelper>,
    /// The worker counts last published (serving, other).
    published: (usize, usize),
    /// The master's TERM: when ASGI streams still open are ended, and its deadline.
    stop_cut: Option<(Instant, Instant)>,
}

impl Supervisor {
    /// Starts the pool and waits until every worker is ready. An app that does not
    /// import fails the boot (`StartError::is_import_failure`).
    pub async fn boot(
        spec: WorkerSpec,
        dispatcher: &'static Dispatcher,
        runtime_dir: PathBuf,
        metrics: Arc<Metrics>,
        shards: Shards,
    ) -> Result<Self, StartError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut sup = Supervisor {
            target: spec.count,
            spec,
            dispatcher,
            runtime_dir,
            events_tx,
            events_rx,
            workers: HashMap::new(),
            starting: 0,
            failures: 0,
            seq: 0,
            stopping: false,
            metrics,
            shards,
            reload_pending: 0,
            reload_to_start: 0,
            generation: 0,
            settled: None,
            recycle_checked: Instant::now(),
            max_memory_warned: false,
            zygotes: Arc::default(),
            hooks: None,
            published: (0, 0),
            stop_cut: None,
        };
        sup.hooks = hooks::HookHelper::start(&sup.spec, 0);
        // gunicorn runs on_starting before any worker exists; so do we.
        if let Some(h) = &mut sup.hooks {
            h.on_starting().await;
        }
        for _ in 0..sup.target {
            sup.start_worker(Purpose::Fill, Duration::ZERO);
        }
        while sup.starting > 0 {
            match sup.events_rx.recv().await {
                Some(Event::Started { result: Err(e), .. }) => {
                    sup.starting -= 1;
                    sup.kill_all().await;
                    return Err(e);
                }
                Some(ev) => sup.handle(ev),
                None => unreachable!("the supervisor holds a sender"),
            }
        }
        // Ready is announced next: /readyz must already see the pool.
        sup.publish_counts();
        sup.hook("when_ready");
        Ok(sup)
    }

    /// Serves commands and worker events until `Stop` completes.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // SIGCHLD: an orphan the app left behind exited (we are its subreaper, or PID 1).
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop { grace, done }) => {
                        self.stop(grace).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                    None => {
                        self.stop(Duration::ZERO).await;
                        return;
                    }
                },
                Some(ev) = self.events_rx.recv() => {
                    self.handle(ev);
                    self.publish_counts();
                }
                _ = tick.tick() => {
                    self.on_tick();
                    self.publish_counts();
                }
                Some(()) = recv_or_pending(&mut sigchld) => {
                    process::reap_orphans();
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Reload(spec) => self.reload(*spec),
            Command::AddWorker => {
                self.target += 1;
                if let Some(settled) = &mut self.settled {
                    settled.target += 1;
                }
                tracing::info!(workers = self.target, "TTIN: one worker more");
                self.fill();
            }
            Command::RemoveWorker => {
                if self.target <= 1 {
                    tracing::info!("TTOU ignored: keeping the last worker");
                    return;
                }
                self.target -= 1;
                if let Some(settled) = &mut self.settled {
                    settled.target = settled.target.saturating_sub(1).max(1);
                }
                tracing::info!(workers = self.target, "TTOU: one worker less");
                if let Some(pid) = self.least_loaded_serving() {
                    self.drain(pid);
                }
            }
            Command::Stopping { grace } => self.on_stopping(grace),
            Command::Stop { .. } => unreachable!("handled in run"),
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Started {
                purpose,
                generation,
                result,
            } => {
                self.starting -= 1;
                if generation == self.generation {
                    self.on_started(purpose, result);
                } else {
                    self.on_superseded(result);
                }
            }
            Event::Exited {
                pid,
                status,
                socket,
            } => {
                remove_worker_files(&socket);
                self.on_exited(pid, status);
            }
            Event::Conn(WorkerEvent::QuotaReached { pid }) => {
                tracing::info!(pid, "worker reached max-requests; replacing it");
                self.replace(pid, RestartReason::MaxRequests);
            }
            Event::Conn(WorkerEvent::Closed { pid }) => self.on_conn_closed(pid),
        }
    }

    fn on_started(&mut self, purpose: Purpose, result: Result<Arc<WorkerConn>, StartError>) {
        match result {
            Ok(conn) => {
                self.failures = 0;
                tracing::info!(pid = conn.pid, python = %conn.interpreter, "Booted worker");
                let lifetime = policy::lifetime(self.spec.max_lifetime, u64::from(conn.pid));
                let mut managed = Managed::new(conn.clone(), WorkerState::Serving, false, lifetime);
                managed.born_rss = self.born_rss(conn.pid);
                managed.generation = self.generation;
                self.workers.insert(conn.pid, managed);
                self.dispatcher.add(conn);
                // Each new worker is ready before one old-generation worker drains.
                if let Some(old) = self.oldest_old_serving() {
                    if purpose == Purpose::Reload {
                        self.metrics.worker_restarted(RestartReason::Reload);
                    }
                    self.drain(old);
                }
                if purpose == Purpose::Reload {
                    self.reload_step();
                }
            }
            Err(e)
                if purpose == Purpose::Reload
                    && (e.app_failure().is_some() || e.is_protocol_mismatch()) =>
            {
                self.reload_failed(&e)
            }
            Err(e) => {
                self.failures += 1;
                tracing::error!(error = %e, failures = self.failures, "worker failed to start");
                self.fill();
            }
        }
    }

    /// A worker started for a reload that a later one replaced runs the old code or
    /// settings: it stops at once (it has no requests), and the pool is filled with
    /// the current generation. Without this, HUP bursts left extra workers for good.
    fn on_superseded(&mut self, result: Result<Arc<WorkerConn>, StartError>) {
        if let Ok(conn) = result {
            tracing::info!(
                pid = conn.pid,
                "worker booted for a superseded reload; stopping it"
            );
            conn.retire();
            self.stop_unwanted(conn, Signal::SIGTERM);
        }
        self.fill();
    }

    /// A worker that became ready when it is no longer wanted: signalled, and kept
    /// track of until its exit.
    fn stop_unwanted(&mut self, conn: Arc<WorkerConn>, sig: Signal) {
        process::signal(conn.pid, sig);
        let managed = Managed::new(conn.clone(), WorkerState::Stopping, true, None);
        self.workers.insert(conn.pid, managed);
    }

    /// More current workers serving than the target (a start that raced a reload
    /// or a TTOU): the least loaded extras drain. Not while a reload is replacing
    /// workers, which overlaps generations on purpose.
    fn trim_to_target(&mut self) {
        if self.reload_pending > 0 || self.stopping {
            return;
        }
        let current = |w: &Managed| w.state == WorkerState::Serving && !w.old;
        let mut extra = self.workers.values().filter(|w| current(w)).count();
        while extra > self.target {
            let pid = self
                .workers
                .iter()
                .filter(|(_, w)| current(w))
                .min_by_key(|(_, w)| w.conn.in_flight())
                .map(|(pid, _)| *pid);
            let Some(pid) = pid else { break };
            tracing::info!(
                pid,
                workers = self.target,
                "more workers than the target; draining one"
            );
            self.drain(pid);
            extra -= 1;
        }
    }

    fn on_exited(&mut self, pid: u32, status: std::io::Result<ExitStatus>) {
        let Some(w) = self.workers.remove(&pid) else {
            return;
        };
        self.hook(&format!("child_exit {pid}"));
        self.dispatcher.remove(&w.conn);
        let status = status
            .map(|s| process::describe_exit(&s))
            .unwrap_or_else(|e| e.to_string());
        if matches!(w.state, WorkerState::Serving | WorkerState::Lost) {
            self.metrics.worker_restarted(RestartReason::Crash);
            tracing::error!(pid, %status, "worker died; replacing it");
        } else {
            tracing::info!(pid, %status, "worker exited");
        }
        if !self.stopping {
            self.fill();
        }
    }

    /// A worker without its connection can never serve again, whatever closed it
    /// (a frame that broke the protocol, a crash on either side): it is killed, and
    /// a replacement starts at once rather than after its exit.
    fn on_conn_closed(&mut self, pid: u32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        if matches!(w.state, WorkerState::Stopping | WorkerState::Lost) {
            return;
        }
        let was_serving = w.state == WorkerState::Serving;
        w.conn.retire();
        process::signal(pid, Signal::SIGKILL);
        if was_serving {
            tracing::warn!(
                pid,
                "worker connection closed; killing and replacing the worker"
            );
            w.state = WorkerState::Lost;
            self.fill();
        } else {
            w.state = WorkerState::Stopping;
        }
    }

    /// Starts workers until serving + starting reaches the target.
    fn fill(&mut self) {
        if self.stopping {
            return;
        }
        let serving = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Serving && !w.old)
            .count();
        let delay = policy::restart_delay(self.failures);
        for _ in (serving + self.starting)..self.target {
            self.start_worker(Purpose::Fill, delay);
        }
    }

    fn on_tick(&mut self) {
        self.trim_to_target();
        let now = Instant::now();
        self.recycle_if_due(now);
        self.cut_for_stop(now);
        for (pid, w) in self.workers.iter_mut() {
            match w.state {
                WorkerState::Draining(since) => {
                    drain::tick(*pid, w, since, now, self.spec.graceful_timeout)
                }
                WorkerState::Killing(at) if now >= at => {
                    process::signal(*pid, Signal::SIGKILL);
                    w.state = WorkerState::Stopping;
                }
                _ => {}
            }
        }
        self.enforce_timeouts(now);
    }

    /// A serving worker is to leave (max-requests, memory, age): its successor
    /// starts now, and it drains once the successor is ready (`on_started`).
    fn replace(&mut self, pid: u32, reason: RestartReason) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        // A condemned worker's replacement is started already.
        if matches!(w.state, WorkerState::Condemned(_)) {
            return;
        }
        w.old = true;
        self.metrics.worker_restarted(reason);
        self.start_worker(Purpose::Fill, Duration::ZERO);
    }

    /// Stops sending new work to a worker; TERM follows when it has none in flight.
    fn drain(&mut self, pid: u32) {
        if let Some(w) = self.workers.get_mut(&pid) {
            w.conn.retire();
            self.dispatcher.remove(&w.conn);
            w.state = WorkerState::Draining(Instant::now());
        }
    }

    /// An event for the master's hooks, if any run.
    fn hook(&self, event: &str) {
        if let Some(h) = &self.hooks {
            h.send(event);
        }
    }

    /// Workers by state, for `/metrics`, `/readyz` and systemd's STATUS.
    fn publish_counts(&mut self) {
        let serving = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Serving)
            .count();
        let counts = (serving, self.workers.len() - serving);
        self.metrics.set_workers(counts.0, counts.1);
        if counts != self.published {
            self.published = counts;
            crate::systemd::notify(&format!(
                "STATUS={} worker(s) serving, {} starting or stopping",
                counts.0, counts.1
            ));
        }
    }

    fn least_loaded_serving(&self) -> Option<u32> {
        self.workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Serving)
            .min_by_key(|(_, w)| w.conn.in_flight())
            .map(|(pid, _)| *pid)
    }

    fn oldest_old_serving(&self) -> Option<u32> {
        self.workers
            .iter()
            .filter(|(_, w)| w.old && w.state == WorkerState::Serving)
            .min_by_key(|(pid, _)| **pid)
            .map(|(pid, _)| *pid)
    }

    fn start_worker(&mut self, purpose: Purpose, delay: Duration) {
        self.seq += 1;
        self.starting += 1;
        let socket = self.runtime_dir.join(format!("worker-{}.sock", self.seq));
        let spec = self.spec.clone();
        let dispatcher = self.dispatcher;
        let events = self.events_tx.clone();
        let shards = self.shards.clone();
        let generation = self.generation;
        let zygotes = self.zygotes.clone();
        let quota = policy::request_quota(
            spec.max_requests,
            spec.max_requests_jitter,
            self.seq ^ u64::from(std::process::id()),
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = start(
                &spec, &socket, quota, generation, dispatcher, &shards, &events, &zygotes,
            )
            .await;
            let _ = events.send(Event::Started {
                purpose,
                generation,
                result,
            });
        });
    }

    async fn stop(&mut self, grace: Duration) {
        self.stopping = true;
        self.zygotes.clear().await;
        let now = Instant::now();
        for (pid, w) in self.workers.iter_mut() {
            w.conn.retire();
            drain::cut(w, now, grace);
            w.state = WorkerState::Stopping;
            process::signal(*pid, Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.workers.is_empty() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(ev)) => self.handle(ev),
                _ => break,
            }
        }
        self.kill_all().await;
    }

    /// SIGKILL whatever is left and wait for the exits (bounded).
    async fn kill_all(&mut self) {
        self.stopping = true;
        self.zygotes.clear().await;
        for pid in self.workers.keys() {
            process::signal(*pid, Signal::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.workers.is_empty() || self.starting > 0 {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(Event::Started { result, .. })) => {
                    self.starting -= 1;
                    if let Ok(conn) = result {
                        self.stop_unwanted(conn, Signal::SIGKILL);
                    }
                }
                Ok(Some(ev)) => self.handle(ev),
                _ => break,
            }
        }
    }
}

async fn recv_or_pending(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
