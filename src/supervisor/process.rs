//! The only file that spawns, signals, measures and reaps worker processes. A worker is the
//! app's own interpreter running `python -m ferricorn.worker ARGS`, a fresh exec,
//! never a fork of the multi-threaded master.

use super::spec::WorkerSpec;
use ferricorn_wire::worker_args::WorkerArgs;
use ferricorn_wire::{EXIT_APP_IMPORT, EXIT_APP_INTERFACE};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use tokio::process::{Child, Command};

/// Starts one worker that will connect to `socket`, its records going to `records`
/// (the write end of `records_pipe`).
pub fn spawn(
    spec: &WorkerSpec,
    socket: &Path,
    claims: &Path,
    records: OwnedFd,
) -> std::io::Result<Child> {
    let mut cmd = worker_command(spec, worker_args(spec, socket, claims));
    cmd.stdin(Stdio::null());
    give_records_pipe(&mut cmd, records);
    spawn_worker_process(spec, cmd)
}

/// Preload: starts the zygote (`zygote`), its stdin the control socket `control`.
pub fn spawn_zygote(
    spec: &WorkerSpec,
    control: OwnedFd,
    records: OwnedFd,
) -> std::io::Result<Child> {
    let args = WorkerArgs {
        socket: "/dev/null".into(),
        threads: spec.threads,
        dev: spec.dev,
        zygote: true,
        log_fd: Some(RECORDS_FD),
        ..spec.args()
    };
    let mut cmd = worker_command(spec, args);
    cmd.stdin(Stdio::from(control));
    give_records_pipe(&mut cmd, records);
    spawn_worker_process(spec, cmd)
}

/// The master's hooks helper (`hooks`): `python -m ferricorn.hooks SPEC DIRS...` in
/// the app's directory, events on its stdin, each named back on its stdout when done.
pub fn spawn_hooks_helper(spec: &WorkerSpec, records: OwnedFd) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.python);
    without_master_env(&mut cmd);
    // Its records (a hook's traceback) on a pipe of their own, as a worker's.
    give_records_pipe(&mut cmd, records);
    cmd.arg("-m")
        .arg(HOOKS_MODULE)
        .args(["--log-fd".to_string(), RECORDS_FD.to_string()])
        .arg(spec.hooks.as_deref().unwrap_or(""))
        .args(&spec.pythonpath)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &spec.chdir {
        cmd.current_dir(dir);
    }
    spawn_tracked(&mut cmd)
}

/// What one worker is told: its socket and claim table, threads, dev mode.
pub fn worker_args(spec: &WorkerSpec, socket: &Path, claims: &Path) -> WorkerArgs {
    WorkerArgs {
        socket: socket.to_path_buf(),
        claims: Some(claims.to_path_buf()),
        threads: spec.threads,
        dev: spec.dev,
        log_fd: Some(RECORDS_FD),
        ..spec.args()
    }
}

fn spawn_worker_process(spec: &WorkerSpec, mut cmd: Command) -> std::io::Result<Child> {
    if spec.dev {
        // Bytecode caches are validated by mtime in whole seconds and size: an edit
        // within the same second that keeps the size would run the stale .pyc.
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    // A process group of its own: a terminal's Ctrl-C or hangup reaches the master,
    // which decides how workers stop; workers die with the master (PDEATHSIG).
    // stderr is relayed into the error log by the master (one format, reopenable).
    cmd.stderr(Stdio::piped())
        .kill_on_drop(false)
        .process_group(0);
    spawn_tracked(&mut cmd)
}

/// Preload: a worker the zygote forked, orphaned and so now our child (we are a
/// subreaper). `reap_orphans` leaves it to `wait_adopted`.
pub fn adopt(pid: u32) {
    WORKERS.lock().unwrap().insert(pid);
}

/// Waits for an adopted worker's exit and collects its status: checked on each
/// SIGCHLD (the listener is registered before the first check, so no exit is missed).
pub async fn wait_adopted(pid: u32) -> std::io::Result<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    let pid = Pid::from_raw(pid as i32);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).map_err(std::io::Error::from)? {
            WaitStatus::Exited(_, code) => return Ok(ExitStatus::from_raw(code << 8)),
            WaitStatus::Signaled(_, sig, core) => {
                return Ok(ExitStatus::from_raw(
                    sig as i32 | if core { 0x80 } else { 0 },
                ))
            }
            _ => {
                sigchld.recv().await;
            }
        }
    }
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
    without_master_env(&mut cmd);
    cmd.arg("-m").arg(WORKER_MODULE).args(args.to_args());
    cmd
}

/// The child does not inherit what systemd or an upgrading master told the master
/// alone (`systemd::MASTER_ONLY_ENV`). Removed from the child's copy only: the
/// master is multi-threaded, so its own environment is never changed.
pub(crate) fn without_master_env(cmd: &mut Command) {
    for name in crate::systemd::MASTER_ONLY_ENV {
        cmd.env_remove(name);
    }
}

/// The fd a worker writes its log records to (`--log-fd`): the first one after
/// stdin, stdout and stderr.
const RECORDS_FD: RawFd = 3;

/// A pipe for a worker's log records, apart from its stderr, which the app writes
/// to (`observe::worker_output`): the master's read end, and the write end for the
/// worker. Both are closed at exec; `give_records_pipe` puts the write end at
/// `RECORDS_FD` in the worker alone.
pub(crate) fn records_pipe() -> std::io::Result<(tokio::net::unix::pipe::Receiver, OwnedFd)> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    Ok((
        tokio::net::unix::pipe::Receiver::from_owned_fd(read)?,
        write,
    ))
}

/// The child gets `records` at `RECORDS_FD`. Our copy closes when `cmd` is dropped
/// (just after the spawn), so the master sees the pipe's end when the worker's is.
#[allow(unsafe_code)]
fn give_records_pipe(cmd: &mut Command, records: OwnedFd) {
    // SAFETY: between fork and exec only async-signal-safe calls are made (dup2,
    // fcntl) on an fd the closure owns; nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            let fd = records.as_raw_fd();
            let done = if fd == RECORDS_FD {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                nix::libc::fcntl(fd, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(fd, RECORDS_FD)
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The Python module a worker process runs (`worker/python/ferricorn/worker.py`).
const WORKER_MODULE: &str = "ferricorn.worker";
/// The Python module of the master's hooks helper (`worker/python/ferricorn/hooks.py`).
const HOOKS_MODULE: &str = "ferricorn.hooks";

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

/// Whether an exit means the app itself cannot be served: it does not import, or
/// it speaks the other interface.
pub fn app_failure(status: &ExitStatus) -> Option<super::start::AppFailure> {
    use super::start::AppFailure;
    match u8::try_from(status.code()?).ok()? {
        EXIT_APP_IMPORT => Some(AppFailure::Import),
        EXIT_APP_INTERFACE => Some(AppFailure::Interface),
        _ => None,
    }
}

/// How a process ended, for the log: `exit 0`, `exit 3`, `signal KILL`,
/// `signal SEGV (core dumped)` (std's Display says `exit status: 0`).
pub(crate) fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit {code}");
    }
    let Some(n) = status.signal() else {
        return status.to_string();
    };
    let name = match Signal::try_from(n) {
        Ok(sig) => sig.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => n.to_string(),
    };
    match status.core_dumped() {
        true => format!("signal {name} (core dumped)"),
        false => format!("signal {name}"),
    }
}

#[cfg(test)]
mod exit_tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exits_read_as_a_code_or_a_signal() {
        assert_eq!(describe_exit(&ExitStatus::from_raw(0)), "exit 0");
        assert_eq!(describe_exit(&ExitStatus::from_raw(3 << 8)), "exit 3");
        assert_eq!(describe_exit(&ExitStatus::from_raw(15)), "signal TERM");
        assert_eq!(describe_exit(&ExitStatus::from_raw(9)), "signal KILL");
        assert_eq!(
            describe_exit(&ExitStatus::from_raw(11 | 0x80)),
            "signal SEGV (core dumped)"
        );
    }
}
