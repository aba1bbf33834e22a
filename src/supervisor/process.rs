//! The only file that spawns, signals and reaps worker processes. A worker is
//! `/proc/self/exe __worker ...`, a fresh exec of our own binary, never a fork of
//! the multi-threaded master.

use crate::config::Settings;
use crate::worker::{EXIT_APP_IMPORT, SUBCOMMAND};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use tokio::process::{Child, Command};

/// Starts one worker that will connect to `socket`.
pub fn spawn(settings: &Settings, socket: &Path, dev: bool) -> std::io::Result<Child> {
    let app = settings.app.as_deref().unwrap_or_default();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(SUBCOMMAND)
        .arg("--socket")
        .arg(socket)
        .arg("--app")
        .arg(app)
        .arg("--threads")
        .arg(settings.workers.threads.to_string());
    python_args(settings, &mut cmd);
    if dev {
        cmd.arg("--dev");
    }
    cmd.stdin(Stdio::null()).kill_on_drop(false);
    cmd.spawn()
}

/// `--check`: import the app in a throwaway worker; Ok(()) or the exit status.
pub async fn check_import(settings: &Settings) -> std::io::Result<ExitStatus> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(SUBCOMMAND)
        .arg("--socket")
        .arg("/dev/null")
        .arg("--app")
        .arg(settings.app.as_deref().unwrap_or_default())
        .arg("--check");
    python_args(settings, &mut cmd);
    cmd.stdin(Stdio::null()).status().await
}

fn python_args(settings: &Settings, cmd: &mut Command) {
    let py = &settings.python;
    if let Some(dir) = &py.chdir {
        cmd.arg("--chdir").arg(dir);
    }
    for p in &py.pythonpath {
        cmd.arg("--pythonpath").arg(p);
    }
    if let Some(v) = &py.venv {
        cmd.arg("--venv").arg(v);
    }
}

pub fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Whether an exit means the app itself cannot be imported.
pub fn is_import_failure(status: &ExitStatus) -> bool {
    status.code() == Some(i32::from(EXIT_APP_IMPORT))
}
