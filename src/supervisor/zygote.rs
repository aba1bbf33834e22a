//! Preload (`[workers] preload`): the zygote, one process of the app's interpreter
//! that imports the app once and forks the workers (worker/src/worker/zygote.rs has
//! its side and the protocol). Workers forked from it share the imported code and
//! data copy-on-write.
//!
//! There is one zygote per reload generation, started by the first worker start
//! that needs it: a HUP's new generation gets a new zygote, which imports the new
//! code, and the old one is killed (its workers are the master's, adopted, and
//! drain as any). A zygote that does not import fails that start like a worker that
//! does not import. A zygote that died is started again by the next start.

use super::process;
use super::spec::WorkerSpec;
use super::start::StartError;
use crate::observe::worker_output;
use ferricorn_wire::worker_args::WorkerArgs;
use nix::sys::socket::{
    recv, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, MsgFlags,
    SockFlag, SockType,
};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Child;

/// The current generation's zygote, shared by the worker starts.
#[derive(Default)]
pub struct Zygotes {
    current: tokio::sync::Mutex<Current>,
}

#[derive(Default)]
struct Current {
    zygote: Option<Arc<Zygote>>,
    /// A generation whose zygote failed to start, and whether the app was the cause:
    /// the other starts of that generation fail the same way without a new try.
    failed: Option<(u64, Option<super::start::AppFailure>)>,
}

impl Zygotes {
    /// The zygote of `generation`, started if there is none or it died. An older
    /// generation's start gets `Superseded`: its zygote is gone.
    pub async fn get(&self, spec: &WorkerSpec, generation: u64) -> Result<Arc<Zygote>, StartError> {
        let mut current = self.current.lock().await;
        if let Some(z) = &current.zygote {
            if z.generation > generation {
                return Err(StartError::Superseded);
            }
            if z.generation == generation && z.alive() {
                return Ok(z.clone());
            }
        }
        if let Some((failed, app)) = current.failed {
            if failed == generation {
                return Err(StartError::ZygoteFailed { app });
            }
        }
        // The old one goes first: it is killed when dropped.
        current.zygote = None;
        match Zygote::start(spec, generation).await {
            Ok(z) => {
                let z = Arc::new(z);
                current.zygote = Some(z.clone());
                current.failed = None;
                Ok(z)
            }
            Err(e) => {
                current.failed = Some((generation, e.app_failure()));
                Err(e)
            }
        }
    }

    /// At stop: the zygote goes (it has no requests).
    pub async fn clear(&self) {
        self.current.lock().await.zygote = None;
    }
}

pub struct Zygote {
    pid: u32,
    generation: u64,
    /// The master's end of the control socket (blocking, with a receive timeout).
    control: Mutex<OwnedFd>,
    child: Mutex<Option<Child>>,
}

impl Zygote {
    /// Spawns the zygote and waits until it imported the app (or exited, or took
    /// longer than `boot_timeout`).
    async fn start(spec: &WorkerSpec, generation: u64) -> Result<Zygote, StartError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        setsockopt(&ours, sockopt::ReceiveTimeout, &timeval(spec.boot_timeout))
            .map_err(std::io::Error::from)?;
        let (records, records_end) = process::records_pipe()?;
        let mut child = process::spawn_zygote(spec, theirs, records_end)?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, app = %spec.app, "preload: importing the app in the zygote");
        let relay = child
            .stderr
            .take()
            .map(|err| tokio::spawn(worker_output::relay(pid, generation, err, records)));
        let zygote = Zygote {
            pid,
            generation,
            control: Mutex::new(ours),
            child: Mutex::new(None),
        };
        let hello = zygote.hello();
        tokio::select! {
            said = hello => match said {
                Ok(p) if p == pid => {
                    *zygote.child.lock().unwrap() = Some(child);
                    tracing::info!(pid, "preload: the app is imported; forking workers from it");
                    Ok(zygote)
                }
                _ => Err(zygote_failed(child, relay, spec).await),
            },
            _ = tokio::time::sleep(spec.boot_timeout + Duration::from_secs(1)) => {
                Err(zygote_failed(child, relay, spec).await)
            }
        }
    }

    /// Forks a worker with `args`, its stderr and records pipe the write ends
    /// `stderr` and `records`; its pid. The request and its answer hold the control
    /// socket together, so concurrent starts never take each other's pid.
    pub async fn fork(
        self: &Arc<Self>,
        args: WorkerArgs,
        stderr: OwnedFd,
        records: OwnedFd,
    ) -> std::io::Result<u32> {
        let me = self.clone();
        let argv: Vec<u8> = args
            .to_args()
            .iter()
            .flat_map(|a| a.as_bytes().iter().copied().chain([0]))
            .collect();
        let forked = tokio::task::spawn_blocking(move || {
            let control = me.control.lock().unwrap();
            let fds = [stderr.as_raw_fd(), records.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            let iov = [IoSlice::new(&argv)];
            sendmsg::<()>(control.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
            receive_pid(&control)
        });
        match forked.await.map_err(std::io::Error::other)?? {
            0 => Err(std::io::Error::other("the zygote could not fork")),
            pid => Ok(pid),
        }
    }

    /// The zygote's first word: its pid, once the app is imported.
    async fn hello(&self) -> std::io::Result<u32> {
        let fd = self.control.lock().unwrap().try_clone()?;
        tokio::task::spawn_blocking(move || receive_pid(&fd))
            .await
            .map_err(std::io::Error::other)?
    }

    fn alive(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Zygote {
    /// Killed, and its exit collected in the background (it serves nothing).
    fn drop(&mut self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let pid = self.pid;
        process::signal(pid, nix::sys::signal::Signal::SIGKILL);
        tracing::info!(pid, generation = self.generation, "preload: zygote stopped");
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = child.wait().await;
                process::forget(pid);
            });
        }
    }
}

/// One pid from the zygote (blocking, up to the socket's receive timeout).
fn receive_pid(control: &OwnedFd) -> std::io::Result<u32> {
    let mut pid = [0u8; 4];
    match recv(control.as_raw_fd(), &mut pid, MsgFlags::empty())? {
        4 => Ok(u32::from_le_bytes(pid)),
        _ => Err(std::io::Error::other(
            "the zygote closed its control socket",
        )),
    }
}

/// The zygote exited before it was ready (an import failure: its traceback is
/// relayed first) or hung: the start fails as a worker's would.
async fn zygote_failed(
    mut child: Child,
    relay: Option<tokio::task::JoinHandle<()>>,
    spec: &WorkerSpec,
) -> StartError {
    let pid = child.id().unwrap_or(0);
    let status = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
    if let Ok(status) = status {
        if let Some(relay) = relay {
            let _ = tokio::time::timeout(Duration::from_secs(2), relay).await;
        }
        process::forget(pid);
        return match status {
            Ok(s) => StartError::Exited(s),
            Err(e) => StartError::Spawn(e),
        };
    }
    // Where the import hangs: faulthandler prints every thread's stack.
    process::signal(pid, nix::sys::signal::Signal::SIGUSR1);
    tokio::time::sleep(super::DUMP_GRACE).await;
    let _ = child.kill().await;
    process::forget(pid);
    StartError::Timeout {
        app: spec.app.clone(),
        waited: spec.boot_timeout,
    }
}

fn timeval(d: Duration) -> nix::sys::time::TimeVal {
    nix::sys::time::TimeVal::new(d.as_secs() as _, d.subsec_micros() as _)
}
