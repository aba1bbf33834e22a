//! The worker process: started by the master as `ferricorn __worker ...` (never a
//! fork of the multi-threaded master), it imports the app, connects to the master's
//! Unix socket, says Ready, and serves requests framed by `crate::wire`.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// argv[1] that selects the worker; hidden from --help.
pub const SUBCOMMAND: &str = "__worker";

/// Exit status of a worker (and of the master at start-up) when the app does not import.
pub const EXIT_APP_IMPORT: u8 = 3;

#[derive(Debug, Parser)]
#[command(name = "ferricorn __worker")]
pub struct WorkerArgs {
    /// The master's Unix socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// MODULE:CALLABLE
    #[arg(long)]
    pub app: String,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long)]
    pub chdir: Option<PathBuf>,
    #[arg(long)]
    pub pythonpath: Vec<PathBuf>,
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// Development mode: show tracebacks in responses.
    #[arg(long)]
    pub dev: bool,
    /// Import the app, then exit 0 (used by --check-config).
    #[arg(long)]
    pub check: bool,
}

pub fn main() -> ExitCode {
    let args = WorkerArgs::parse_from(std::env::args_os().skip(1));
    let _ = args;
    ExitCode::from(1)
}
