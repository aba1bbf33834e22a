//! The worker process: started by the master as `ferricorn __worker ...` (never a
//! fork of the multi-threaded master), it imports the app, connects to the master's
//! Unix socket, says Ready, and serves requests framed by `crate::wire`.
//!
//! Start-up order: block the signals we `sigwait` for (before any thread exists),
//! tie our life to the master's, chdir, start CPython, import the app (exit 3 with
//! the traceback if it does not import, unless `--dev`), connect, start the signal
//! and Python threads (which do the socket I/O themselves: `server`, `stream`), send
//! Ready, then wait for a reason to exit.

pub mod log;
mod server;
mod signals;
pub mod stream;

use crate::claims::Claims;
use crate::python::{self, app::LoadFailure, Handler, Shared};
use crate::wire::Frame;
use clap::Parser;
use log::wlog;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use stream::{Conn, Exit};

/// argv[1] that selects the worker; hidden from --help.
pub const SUBCOMMAND: &str = "__worker";

/// Exit status of a worker (and of the master at start-up) when the app does not import.
pub const EXIT_APP_IMPORT: u8 = 3;

/// Python threads run app code, which may recurse deeply: give them a main-thread-
/// sized stack (virtual memory; only touched pages cost).
const PYTHON_STACK: usize = 8 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "ferricorn __worker")]
pub struct WorkerArgs {
    /// The master's Unix socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// The claim table shared with the master (see `crate::claims`); without it
    /// every request read is run.
    #[arg(long)]
    pub claims: Option<PathBuf>,
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

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot block signals: {0}")]
    Signals(nix::Error),
    #[error("{0}")]
    Parent(String),
    #[error("--chdir {0}: {1}")]
    Chdir(PathBuf, std::io::Error),
    #[error(transparent)]
    Python(#[from] python::InitError),
    #[error("cannot connect to the master at {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("cannot map the claim table {0}: {1}")]
    Claims(PathBuf, std::io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("Python: {0}")]
    Setup(String),
}

pub fn main() -> ExitCode {
    let args = WorkerArgs::parse_from(std::env::args_os().skip(1));
    let parent = nix::unistd::getppid();
    match run(args, parent) {
        Ok(code) => code,
        Err(e) => {
            wlog!("ferricorn: worker failed to start: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: WorkerArgs, parent: nix::unistd::Pid) -> Result<ExitCode, StartError> {
    signals::block().map_err(StartError::Signals)?;
    signals::die_with_parent(parent).map_err(StartError::Parent)?;
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).map_err(|e| StartError::Chdir(dir.clone(), e))?;
    }
    let program = match python::program_name(args.venv.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ferricorn: {e}");
            return Ok(ExitCode::from(EXIT_APP_IMPORT));
        }
    };
    python::initialize(&program)?;
    let loaded = load(&args);
    let handler = match loaded {
        Ok(app) => Handler::App(app),
        Err(failure) => {
            report(&failure);
            if !args.dev || args.check {
                return Ok(ExitCode::from(EXIT_APP_IMPORT));
            }
            Handler::Broken(broken_page(&failure))
        }
    };
    if args.check {
        return Ok(ExitCode::SUCCESS);
    }
    serve(&args, handler)
}

/// `sys.path` entries like gunicorn (`--pythonpath` dirs, then the working
/// directory), faulthandler, then the import.
fn load(args: &WorkerArgs) -> Result<python::App, LoadFailure> {
    let mut dirs: Vec<PathBuf> = args.pythonpath.iter().map(|p| absolute(p)).collect();
    dirs.push(absolute(Path::new(".")));
    python::load(&dirs, &args.app)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The traceback, then one line an operator can act on.
fn report(failure: &LoadFailure) {
    let mut text = String::new();
    if let Some(tb) = &failure.traceback {
        text.push_str(tb);
        if !tb.ends_with('\n') {
            text.push('\n');
        }
    }
    text.push_str(&format!("ferricorn: {}\n", failure.message));
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn broken_page(failure: &LoadFailure) -> Vec<u8> {
    let tb = failure.traceback.as_deref().unwrap_or_default();
    let text = format!("{tb}\nferricorn: {}\n", failure.message);
    python::traceback::dev_page("The application failed to import.", &text)
}

fn serve(args: &WorkerArgs, handler: Handler) -> Result<ExitCode, StartError> {
    let threads = args.threads.max(1);
    let shared = Shared::new(handler, threads, args.dev).map_err(StartError::Setup)?;
    let shared = Arc::new(shared);
    let sock = UnixStream::connect(&args.socket)
        .map_err(|e| StartError::Connect(args.socket.clone(), e))?;
    let claims = match &args.claims {
        Some(path) => Some(Claims::open(path).map_err(|e| StartError::Claims(path.clone(), e))?),
        None => None,
    };
    let conn = Arc::new(Conn::new(sock, claims));
    signals::spawn(conn.clone()).map_err(StartError::Thread)?;
    for i in 0..threads {
        let (shared, conn) = (shared.clone(), conn.clone());
        std::thread::Builder::new()
            .name(format!("python-{i}"))
            .stack_size(PYTHON_STACK)
            .spawn(move || {
                // serve_thread only returns by panicking (a bug): fail loudly so the
                // master replaces the worker instead of it silently losing capacity.
                let c = conn.clone();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    python::serve_thread(shared, conn)
                }));
                c.exit(Exit::Fatal("a Python thread panicked".into()));
            })
            .map_err(StartError::Thread)?;
    }
    // The master sends nothing before Ready, so the threads above only wait so far.
    conn.send_now(
        0,
        &Frame::Ready {
            pid: std::process::id(),
        },
    );
    wlog!("booted: app {}, {} Python thread(s)", args.app, threads);
    let why = conn.wait_exit();
    Ok(shutdown(why))
}

/// Runs `atexit` on a clean exit and picks the exit status. Every frame is written
/// by the time a drain ends (threads write their own). The interpreter is not
/// finalised: Python threads may be busy.
fn shutdown(why: Exit) -> ExitCode {
    match why {
        Exit::Drained => {
            python::run_atexit();
            ExitCode::SUCCESS
        }
        Exit::MasterGone | Exit::Quick => ExitCode::SUCCESS,
        Exit::Fatal(e) => {
            wlog!("ferricorn: worker stopping: {e}");
            ExitCode::from(1)
        }
    }
}
