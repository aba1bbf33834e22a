//! Starting one worker: its socket and claim table in the runtime directory, the
//! process, and the wait for its Ready frame (or its exit, or the start timeout).

use super::spec::WorkerSpec;
use super::zygote::Zygotes;
use super::{process, Event};
use crate::claims::Claims;
use crate::dispatcher::conn::{Capacity, ConnectError};
use crate::dispatcher::{Dispatcher, WorkerConn};
use crate::observe::worker_output;
use crate::shards::Shards;
use crate::wire;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not start the worker: {0}")]
    Spawn(#[from] std::io::Error),
    /// The worker's socket or claim table could not be made (a full disk, say).
    #[error("could not create {}: {source}", path.display())]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("worker exited during start-up ({})", super::process::describe_exit(.0))]
    Exited(ExitStatus),
    #[error(
        "the worker did not finish importing {app} within {} s (boot_timeout); its Python stack is above",
        waited.as_secs()
    )]
    Timeout { app: String, waited: Duration },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A start for a generation that a reload has replaced (preload: its zygote is
    /// gone).
    #[error("superseded by a reload")]
    Superseded,
    /// Preload: this generation's zygote already failed to start (said above).
    #[error("the preloading zygote failed to start (see above)")]
    ZygoteFailed { app: Option<AppFailure> },
}

/// The app, not the server, kept a worker from starting: a new worker would fail
/// the same way, so a boot stops and a reload is called off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppFailure {
    /// It does not import (the worker's exit `EXIT_APP_IMPORT`).
    Import,
    /// It speaks the other interface (ASGI on WSGI workers or the reverse: the
    /// worker's exit `EXIT_APP_INTERFACE`).
    Interface,
}

impl StartError {
    pub fn app_failure(&self) -> Option<AppFailure> {
        match self {
            StartError::Exited(s) => process::app_failure(s),
            StartError::ZygoteFailed { app } => *app,
            _ => None,
        }
    }

    pub fn is_import_failure(&self) -> bool {
        self.app_failure() == Some(AppFailure::Import)
    }

    pub fn is_interface_mismatch(&self) -> bool {
        self.app_failure() == Some(AppFailure::Interface)
    }

    /// The worker module is another ferricorn's: a set-up error, not a crash.
    pub fn is_protocol_mismatch(&self) -> bool {
        matches!(
            self,
            StartError::Connect(ConnectError::Wire(wire::WireError::Protocol(_)))
        )
    }
}

/// The claim table of the worker on `socket` lives beside it.
fn claims_path(socket: &Path) -> PathBuf {
    socket.with_extension("claims")
}

pub(super) fn remove_worker_files(socket: &Path) {
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_file(claims_path(socket));
}

/// Binds the worker's socket, starts the process, and waits for its Ready frame (or
/// its exit). The exit watcher reports the process's end as an `Event::Exited`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start(
    spec: &WorkerSpec,
    socket: &std::path::Path,
    quota: u64,
    generation: u64,
    dispatcher: &'static Dispatcher,
    shards: &Shards,
    events: &mpsc::UnboundedSender<Event>,
    zygotes: &Zygotes,
) -> Result<Arc<WorkerConn>, StartError> {
    let (listener, claims, claims_path) = worker_files(socket)?;
    let (mut proc, stderr, records) =
        match launch(spec, socket, &claims_path, generation, zygotes).await {
            Ok(launched) => launched,
            Err(e) => {
                remove_worker_files(socket);
                return Err(e);
            }
        };
    let pid = proc.pid();
    let relay = tokio::spawn(worker_output::relay(pid, generation, stderr, records));
    let handshake = async {
        let (sock, _) = listener.accept().await?;
        let sock = sock.into_std()?;
        let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
        let capacity = Capacity {
            slots: spec.capacity,
            interface: spec.interface,
        };
        let conn = shards
            .host_worker()
            .run(move |host| async move {
                let sock = UnixStream::from_std(sock)?;
                WorkerConn::handshake(host, sock, claims, capacity, quota, dispatcher, conn_tx)
                    .await
            })
            .await??;
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = conn_rx.recv().await {
                let _ = events.send(Event::Conn(ev));
            }
        });
        Ok::<_, StartError>(conn)
    };
    let boot_timeout = spec.boot_timeout;
    let result = tokio::select! {
        r = tokio::time::timeout(boot_timeout, handshake) => match r {
            Ok(r) => r,
            Err(_) => {
                // Where the import hangs: faulthandler prints every thread's stack.
                process::signal(pid, nix::sys::signal::Signal::SIGUSR1);
                tokio::time::sleep(super::DUMP_GRACE).await;
                Err(StartError::Timeout {
                    app: spec.app.clone(),
                    waited: boot_timeout,
                })
            }
        },
        status = proc.wait() => {
            remove_worker_files(socket);
            process::forget(pid);
            // The traceback of a failed import must be in the log before we report.
            let _ = tokio::time::timeout(Duration::from_secs(2), relay).await;
            return Err(match status {
                Ok(s) => StartError::Exited(s),
                Err(e) => StartError::Spawn(e),
            });
        }
    };
    drop(listener);
    if result.is_err() {
        process::signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    watch_exit(proc, pid, events.clone(), socket.to_path_buf());
    result
}

/// A worker process: one we spawned, or (preload) one the zygote forked for us.
enum Proc {
    Spawned(tokio::process::Child),
    Adopted(u32),
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Spawned(c) => c.id().unwrap_or(0),
            Proc::Adopted(pid) => *pid,
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Proc::Spawned(c) => c.wait().await,
            Proc::Adopted(pid) => process::wait_adopted(*pid).await,
        }
    }
}

type Stderr = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Records = tokio::net::unix::pipe::Receiver;

/// Starts the worker process: spawned, or forked by the zygote with preload. Its
/// stderr (the app's output) and its records pipe are relayed either way.
async fn launch(
    spec: &WorkerSpec,
    socket: &Path,
    claims: &Path,
    generation: u64,
    zygotes: &Zygotes,
) -> Result<(Proc, Stderr, Records), StartError> {
    let (records, records_end) = process::records_pipe()?;
    if !spec.preload {
        let mut child = process::spawn(spec, socket, claims, records_end)?;
        let stderr = child.stderr.take().expect("stderr is piped");
        return Ok((Proc::Spawned(child), Box::new(stderr), records));
    }
    let zygote = zygotes.get(spec, generation).await?;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let pid = zygote
        .fork(
            process::worker_args(spec, socket, claims),
            write,
            records_end,
        )
        .await?;
    process::adopt(pid);
    let stderr = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
    Ok((Proc::Adopted(pid), Box::new(stderr), records))
}

/// The worker's socket, bound, and its claim page, allocated (a full disk is an
/// error here, not a SIGBUS later).
fn worker_files(socket: &Path) -> Result<(UnixListener, Claims, PathBuf), StartError> {
    remove_worker_files(socket);
    let files_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StartError::Files { path, source }
    };
    let listener = UnixListener::bind(socket).map_err(files_error(socket))?;
    let claims_path = claims_path(socket);
    let claims = Claims::create(&claims_path).map_err(|e| {
        remove_worker_files(socket);
        files_error(&claims_path)(e)
    })?;
    Ok((listener, claims, claims_path))
}

/// Reports the process's end as an `Event::Exited`, whenever it comes.
fn watch_exit(mut proc: Proc, pid: u32, events: mpsc::UnboundedSender<Event>, socket: PathBuf) {
    tokio::spawn(async move {
        let status = proc.wait().await;
        process::forget(pid);
        let _ = events.send(Event::Exited {
            pid,
            status,
            socket,
        });
    });
}
