//! Preload (`--preload`): the zygote. The master starts one worker process of the
//! app's interpreter in zygote mode. It imports the app once, moves the heap to the
//! collector's permanent generation (`gc.freeze()`), says it is ready, and then
//! forks a worker for each request of the master, so the workers share the
//! imported code and data copy-on-write.
//!
//! The control channel is the zygote's stdin: a `SOCK_SEQPACKET` socket, one message
//! each way per fork. The master sends the worker's argv (NUL-separated) with the
//! write ends of the worker's own stderr pipe and log records pipe attached
//! (`SCM_RIGHTS`, in that order); the zygote
//! answers with the worker's pid (0: the fork failed). First of all, the zygote
//! sends its own pid once the app is imported.
//!
//! Each worker is forked twice: the middle process exits at once, so the worker is
//! orphaned and adopted by the master (a child subreaper), which then waits for its
//! exit as for a worker it spawned. Forks happen on the zygote's only thread.

use super::{signals, StartError};
use crate::log::{werror, wlog};
use crate::python;
use ferricorn_wire::worker_args::WorkerArgs;
use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
use nix::unistd::{getppid, Pid};
use std::ffi::OsString;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

/// The control socket: the zygote's stdin.
const CONTROL: RawFd = 0;
/// The longest argv the master sends.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a new worker waits to be adopted by the master.
const ADOPTION: Duration = Duration::from_secs(5);

/// What one fork made of this process.
enum Forked {
    /// Still the zygote; the worker has this pid (0: the fork failed).
    Zygote(u32),
    /// The new worker.
    Worker,
}

/// Runs the zygote until the master closes the control socket: `Ok(None)`, exit 0.
/// In a forked worker it returns `Ok(Some(args))`, and the worker serves with them.
pub(super) fn run(master: Pid) -> Result<Option<WorkerArgs>, StartError> {
    python::freeze_heap();
    let mut control = owned(CONTROL);
    reply(&control, std::process::id())?;
    loop {
        let Some((argv, pipes)) = receive(&control)? else {
            return Ok(None);
        };
        warn_if_threaded();
        match fork_twice() {
            Forked::Zygote(pid) => {
                drop(pipes);
                reply(&control, pid)?;
            }
            Forked::Worker => {
                become_worker(master, &mut control, pipes)?;
                std::mem::forget(control);
                return WorkerArgs::parse_args(argv)
                    .map(Some)
                    .map_err(StartError::Usage);
            }
        }
    }
}

/// What a forked worker writes to: its stderr (the app's output) and its records
/// pipe (`crate::log`).
struct Pipes {
    stderr: OwnedFd,
    records: OwnedFd,
}

/// The next fork request: the worker's argv and its pipes. `None`: the master
/// closed the socket (it is stopping, or replaced this zygote).
fn receive(control: &OwnedFd) -> Result<Option<(Vec<OsString>, Pipes)>, StartError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| StartError::Control(e.into()))?;
        let fds: Vec<OwnedFd> = msg
            .cmsgs()
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .map(owned)
            .collect();
        (msg.bytes, fds)
    };
    if len == 0 {
        return Ok(None);
    }
    let Ok([stderr, records]) = <[OwnedFd; 2]>::try_from(fds) else {
        return Err(StartError::Control(std::io::Error::other(
            "a fork request without the worker's stderr and records pipes",
        )));
    };
    Ok(Some((argv_of(&buf[..len]), Pipes { stderr, records })))
}

/// The argv of a fork request: each argument ends with a NUL. An empty argument
/// is one (`--root-path ""`), so only the last terminator is cut before the split.
fn argv_of(msg: &[u8]) -> Vec<OsString> {
    let msg = msg.strip_suffix(&[0]).unwrap_or(msg);
    msg.split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

/// Takes ownership of an open fd nothing else in the process owns: one received by
/// `SCM_RIGHTS`, or the standard fds the zygote replaces.
#[allow(unsafe_code)]
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is open (given by the master as stdin or stderr, or installed
    // by recvmsg), and no other owner closes it: std's stdin/stderr handles only
    // borrow fds 0 and 2, and the zygote forgets these before the process ends.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Our pid (when ready) or a worker's, as the master reads it.
fn reply(control: &OwnedFd, pid: u32) -> Result<(), StartError> {
    send(control.as_raw_fd(), &pid.to_le_bytes(), MsgFlags::empty())
        .map(|_| ())
        .map_err(|e| StartError::Control(e.into()))
}

/// gunicorn's `--preload` has the same caveat: a thread the app started at import
/// does not exist in the forked workers.
fn warn_if_threaded() {
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        werror!(
            "preload: the app started {} thread(s) at import; they do not exist in the forked workers",
            threads - 1
        );
    }
}

/// Forks a worker through a middle process that exits at once. In the zygote, the
/// worker's pid comes back through a pipe from the middle process.
fn fork_twice() -> Forked {
    let Ok((read, write)) = nix::unistd::pipe() else {
        return Forked::Zygote(0);
    };
    match python::fork() {
        Ok(0) => {
            drop(read);
            let pid = match python::fork() {
                Ok(0) => return Forked::Worker,
                Ok(pid) => pid as u32,
                Err(_) => 0,
            };
            let _ = nix::unistd::write(&write, &pid.to_le_bytes());
            exit_now()
        }
        Ok(middle) => {
            drop(write);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(middle), None);
            let mut pid = [0u8; 4];
            let got = nix::unistd::read(&read, &mut pid).unwrap_or(0);
            Forked::Zygote(if got == 4 { u32::from_le_bytes(pid) } else { 0 })
        }
        Err(e) => {
            werror!("preload: {e}");
            Forked::Zygote(0)
        }
    }
}

/// Ends the middle process at once: no atexit handlers, no buffers flushed, no
/// interpreter finalised (they belong to the zygote).
#[allow(unsafe_code)]
fn exit_now() -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { nix::libc::_exit(0) }
}

/// In the new worker: wait to be adopted by the master, die with it, write to our
/// own stderr and records pipes, and let go of the zygote's control socket.
fn become_worker(master: Pid, control: &mut OwnedFd, pipes: Pipes) -> Result<(), StartError> {
    let deadline = Instant::now() + ADOPTION;
    while getppid() != master {
        if Instant::now() > deadline {
            return Err(StartError::Parent(signals::ParentError::Exited));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    signals::die_with_parent(master)?;
    let null = std::fs::File::open("/dev/null").map_err(StartError::Control)?;
    nix::unistd::dup2(&null, control).map_err(|e| StartError::Control(e.into()))?;
    let mut fd2 = owned(2);
    nix::unistd::dup2(&pipes.stderr, &mut fd2).map_err(|e| StartError::Control(e.into()))?;
    std::mem::forget(fd2);
    crate::log::use_records_pipe(pipes.records);
    wlog!("forked from the preloaded app");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_arguments_survive_the_fork_request() {
        let argv = super::argv_of(b"--app\0m:app\0--root-path\0\0--dev\0");
        assert_eq!(argv, ["--app", "m:app", "--root-path", "", "--dev"]);
    }
}
