//! The only file that spawns, signals, measures and reaps worker processes. A worker is the
//! app's own interpreter running `python -m ferricorn.worker ARGS`, a fresh exec,
//! never a fork of the multi-threaded master.

use super::spec::WorkerSpec;
use ferricorn_wire::worker_args::WorkerArgs;
use ferricorn_wire::EXIT_APP_IMPORT;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use tokio::process::{Child, Command};

/// Starts one worker that will connect to `socket`.
pub fn spawn(spec: &WorkerSpec, socket: &Path, claims: &Path) -> std::io::Result<Child> {
    let dev = spec.dev;
    let mut cmd = worker_command(
        spec,
        WorkerArgs {
            socket: socket.to_path_buf(),
            claims: Some(claims.to_path_buf()),
            threads: spec.threads,
            dev,
            ..spec.args()
        },
    );
    if dev {
        // Bytecode caches are validated by mtime in whole seconds and size: an edit
        // within the same second that keeps the size would run the stale .pyc.
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    // A process group of its own: a terminal's Ctrl-C or hangup reaches the master,
    // which decides how workers stop; workers die with the master (PDEATHSIG).
    // stderr is relayed into the error log by the master (one format, reopenable).
    cmd.stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .process_group(0);
    spawn_tracked(&mut cmd)
}

/// Spawns a child whose exit status we wait for ourselves (a worker, the interpreter
/// probe), so `reap_orphans` leaves it alone; call `forget` once it is collected.
pub fn spawn_tracked(cmd: &mut Command) -> std::io::Result<Child> {
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        WORKERS.lock().unwrap().insert(pid);
    }
    Ok(child)
}

/// Pids of children we spawned and tokio has not reaped yet: `reap_orphans` leaves
/// them to tokio, whose `Child::wait` needs their exit status.
static WORKERS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// SIGKILL to every child we spawned and still track: a boot abandoned on TERM
/// leaves no half-started worker behind.
pub fn kill_tracked() {
    for pid in WORKERS.lock().unwrap().iter() {
        signal(*pid, Signal::SIGKILL);
    }
}

/// The child's exit was collected by tokio.
pub fn forget(pid: u32) {
    WORKERS.lock().unwrap().remove(&pid);
}

/// Makes orphaned descendants (a process the app forked and left behind) our
/// children, as they would be if we were PID 1 in a container; `reap_orphans` then
/// collects them so they do not linger as zombies.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper");
    }
}

/// Reaps exited children that are not our workers; returns how many.
pub fn reap_orphans() -> usize {
    let me = std::process::id();
    let workers = WORKERS.lock().unwrap().clone();
    let mut reaped = 0;
    for pid in zombie_children(me) {
        if workers.contains(&pid) {
            continue;
        }
        if waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)).is_ok() {
            tracing::debug!(pid, "reaped an orphaned process");
            reaped += 1;
        }
    }
    reaped
}

/// Children of `parent` in state Z, from /proc.
fn zombie_children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the command (which may hold spaces) start after the last ')'.
            let mut fields = stat[stat.rfind(')').map_or(0, |i| i + 1)..].split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(parent)
        })
        .collect()
}

/// `--check`: import the app in a throwaway worker; Ok(()) or the exit status.
pub async fn check_import(spec: &WorkerSpec) -> std::io::Result<ExitStatus> {
    let args = WorkerArgs {
        socket: "/dev/null".into(),
        check: true,
        ..spec.args()
    };
    worker_command(spec, args)
        .stdin(Stdio::null())
        .status()
        .await
}

/// `PYTHON -m ferricorn.worker ARGS` on the chosen interpreter.
fn worker_command(spec: &WorkerSpec, args: WorkerArgs) -> Command {
    let mut cmd = Command::new(&spec.python);
    cmd.arg("-m").arg(WORKER_MODULE).args(args.to_args());
    cmd
}

/// The Python module a worker process runs (`worker/python/ferricorn/worker.py`).
const WORKER_MODULE: &str = "ferricorn.worker";

/// A process's resident memory (`/proc/PID/statm`, resident pages), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some(pages * page)
}

pub fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Whether an exit means the app itself cannot be imported.
pub fn is_import_failure(status: &ExitStatus) -> bool {
    status.code() == Some(i32::from(EXIT_APP_IMPORT))
}
