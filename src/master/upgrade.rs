//! Binary upgrade on USR2, as nginx and gunicorn do it: the master starts the
//! binary now on disk (a new version, say) with the same arguments, handing it its
//! listening sockets as socket activation does (`$LISTEN_FDS` from fd 3), so the
//! port is never closed. The new master boots its own workers and, once they serve,
//! sends TERM to the old master (`$FERRICORN_UPGRADE_FROM`), which drains as on any
//! TERM: the sockets stay open in the new master, and connections waiting in them
//! are accepted there. If the new master fails to start, the old one keeps serving
//! and says why.
//!
//! One upgrade at a time: a USR2 while a new master is starting is refused (said in
//! the log), or two new masters would serve the port for ever. The pid file names
//! the serving master at every moment: the new master writes it only once ready,
//! just before it sends TERM, and an old master whose new master exited writes it
//! again. The new master sends that TERM only while the pid it was given is still
//! its parent: if the old master is gone (a TERM of its own during the upgrade),
//! the pid may be another process's by now, and the new master serves on alone.
//!
//! Under systemd (`Type=notify`, `NotifyAccess=main`) the main pid would change
//! behind systemd's back; use `systemctl restart` with `ferricorn.socket` there.

use super::start::PidFile;
use crate::listener;
use crate::systemd::{ADMIN_FD, UPGRADE_FROM};
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// A new master is starting (from USR2 until it exits or we stop).
static UNDER_WAY: AtomicBool = AtomicBool::new(false);

/// This master was started by a USR2 upgrade: it takes over every passed socket.
pub fn taking_over() -> bool {
    std::env::var_os(UPGRADE_FROM).is_some()
}

/// The admin socket the old master handed over, taken out of `inherited` so it is
/// not served as an HTTP listener.
pub fn inherited_admin(inherited: &mut crate::systemd::Inherited) -> Option<std::net::TcpListener> {
    let fd = std::env::var(ADMIN_FD).ok()?.parse().ok()?;
    match inherited.take_fd(fd) {
        Ok(Some(crate::systemd::InheritedSocket::Tcp(l))) => Some(l),
        _ => None,
    }
}

/// USR2: starts the new master with `fds` (the listeners, in bind order, then the
/// admin listener) at fd 3 onwards, unless one is starting already. Its exit is
/// watched: an upgrade that fails leaves this master serving, named by `pidfile`.
pub(super) fn start_new_master(listeners: &[RawFd], admin: Option<RawFd>, pidfile: Option<&Path>) {
    if UNDER_WAY.swap(true, Ordering::AcqRel) {
        return tracing::warn!("USR2 refused: a binary upgrade is already under way");
    }
    let mut fds = listeners.to_vec();
    fds.extend(admin);
    let exe = match std::env::current_exe() {
        // The binary was replaced on disk: /proc/self/exe names the old, deleted one.
        Ok(p) => std::path::PathBuf::from(
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string(),
        ),
        Err(e) => {
            UNDER_WAY.store(false, Ordering::Release);
            return tracing::error!(error = %e, "binary upgrade: cannot find our executable");
        }
    };
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDS_FIRST_FD", crate::systemd::FIRST_FD.to_string())
        .env_remove("LISTEN_PID")
        .env(UPGRADE_FROM, std::process::id().to_string())
        .env_remove(ADMIN_FD)
        .kill_on_drop(false);
    if admin.is_some() {
        let fd = crate::systemd::FIRST_FD + listeners.len() as i32;
        cmd.env(ADMIN_FD, fd.to_string());
    }
    place_fds(&mut cmd, fds);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            UNDER_WAY.store(false, Ordering::Release);
            return tracing::error!(error = %e, exe = %exe.display(), "binary upgrade: cannot start the new master; still serving");
        }
    };
    listener::set_handed_over(true);
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, exe = %exe.display(), "binary upgrade: new master started; it takes over once its workers serve");
    let pidfile = pidfile.map(Path::to_path_buf);
    tokio::spawn(async move {
        let status = child.wait().await;
        listener::set_handed_over(false);
        // It may have written the pid file before it failed: we are the one serving.
        if let Some(path) = &pidfile {
            if let Err(e) = PidFile::name_us(path) {
                tracing::error!(error = %e, path = %path.display(), "binary upgrade: cannot write the pid file back");
            }
        }
        UNDER_WAY.store(false, Ordering::Release);
        tracing::error!(pid, status = %status.map_or_else(|e| e.to_string(), |s| crate::supervisor::process::describe_exit(&s)), "binary upgrade: the new master exited; still serving");
    });
}

/// In the new master, once ready: the pid file names us, and the old master (our
/// parent, still) drains and exits.
pub(super) fn take_over(pidfile: Option<&PidFile>) {
    let Some(old) = std::env::var(UPGRADE_FROM)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    if let Some(p) = pidfile {
        if let Err(e) = PidFile::name_us(p.path()) {
            tracing::error!(error = %e, path = %p.path().display(), "binary upgrade: cannot write the pid file");
        }
    }
    let parent = nix::unistd::getppid().as_raw();
    if parent != old {
        return tracing::warn!(
            old_master = old,
            parent,
            "binary upgrade: ready, but the old master is no longer our parent (it stopped); not signalling that pid, serving on"
        );
    }
    tracing::info!(
        old_master = old,
        "binary upgrade: ready; asking the old master to drain"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// The child gets `fds` at 3, 4, ... without close-on-exec: first moved above any
/// fd in the way, then into place.
#[allow(unsafe_code)]
fn place_fds(cmd: &mut tokio::process::Command, fds: Vec<RawFd>) {
    let first = crate::systemd::FIRST_FD;
    // SAFETY: between fork and exec only async-signal-safe calls are made (fcntl,
    // dup2, close); nothing allocates (`fds` was moved in whole before the fork).
    unsafe {
        cmd.pre_exec(move || {
            let high = first + fds.len() as i32 + 1000;
            let mut moved = [0 as RawFd; 64];
            for (i, &fd) in fds.iter().enumerate().take(moved.len()) {
                let m = nix::libc::fcntl(fd, nix::libc::F_DUPFD, high);
                if m < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = m;
            }
            for (i, &m) in moved.iter().enumerate().take(fds.len().min(moved.len())) {
                if nix::libc::dup2(m, first + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::libc::close(m);
            }
            Ok(())
        });
    }
}
