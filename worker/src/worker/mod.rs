//! The worker process: the app's own interpreter, started by the master as
//! `python -m ferricorn.worker ARGS` (never a fork of the multi-threaded master).
//! `main` imports the app, connects to the master's Unix socket, says Ready, and
//! serves requests framed by `crate::wire`.
//!
//! Start-up order: block the signals we `sigwait` for (before any thread exists:
//! `main` runs on the interpreter's main thread, the only one so far), tie our life
//! to the master's, chdir, import the app (exit 3 with the traceback if it does not
//! import, unless `--dev`), check its interface (exit 4 when it is not the one
//! configured), connect, start the signal and Python threads (which do the socket
//! I/O themselves: `server`, `stream`), send Ready, then wait for a reason to exit.
//! Under `--interface asgi` the main thread runs an event loop instead (`asgi`).

mod asgi;
mod server;
mod signals;
mod zygote;

use crate::claims::Claims;
use crate::log::{self, werror, wlog};
use crate::python::{self, app::LoadFailure, Handler, Shared};
use crate::stream::{Conn, Exit, Fatal};
use crate::wire::{Frame, Ready};
use ferricorn_wire::log_record::{Level, Record, IMPORT_FAILED};
use ferricorn_wire::worker_args::Interface;
use ferricorn_wire::worker_args::WorkerArgs;
use ferricorn_wire::{EXIT_APP_IMPORT, EXIT_APP_INTERFACE, PROTOCOL};
use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Python threads run app code, which may recurse deeply: give them a main-thread-
/// sized stack (virtual memory; only touched pages cost).
const PYTHON_STACK: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot block signals: {0}")]
    Signals(nix::Error),
    #[error(transparent)]
    Parent(#[from] signals::ParentError),
    #[error("--chdir {0}: {1}")]
    Chdir(PathBuf, std::io::Error),
    #[error("{0}")]
    Usage(ferricorn_wire::worker_args::BadArgs),
    #[error("cannot connect to the master at {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("cannot map the claim table {0}: {1}")]
    Claims(PathBuf, std::io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Setup(#[from] python::SetupError),
    #[error("preload: the control socket: {0}")]
    Control(std::io::Error),
    #[error(transparent)]
    LogFd(#[from] log::LogFdError),
    #[error("the ASGI event loop failed:\n{0}")]
    Loop(String),
}

/// Runs the worker on the calling (main) thread; returns the process's exit status.
pub fn main(argv: Vec<OsString>) -> u8 {
    let parent = nix::unistd::getppid();
    match WorkerArgs::parse_args(argv)
        .map_err(StartError::Usage)
        .and_then(|args| run(args, parent))
    {
        Ok(code) => code,
        // Before the records pipe is ours: a plain line, which the master shows as
        // the worker's output.
        Err(e @ (StartError::Usage(_) | StartError::LogFd(_))) => {
            log::plain(format_args!("worker failed to start: {e}"));
            1
        }
        Err(e) => {
            werror!("worker failed to start: {e}");
            1
        }
    }
}

fn run(args: WorkerArgs, parent: nix::unistd::Pid) -> Result<u8, StartError> {
    if let Some(fd) = args.log_fd {
        // Before anything is logged, so no record goes to stderr (`crate::log`).
        log::use_records_fd(fd)?;
    }
    signals::block().map_err(StartError::Signals)?;
    signals::die_with_parent(parent)?;
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).map_err(|e| StartError::Chdir(dir.clone(), e))?;
    }
    if args.check {
        log::set_plain();
    }
    if let Some(hooks) = &args.hooks {
        python::hooks_configure(hooks, parent.as_raw() as u32);
        if !args.zygote && !args.check {
            python::hooks_event("post_fork");
        }
    }
    let loaded = load(&args);
    let mut handler = match loaded {
        Ok(app) => {
            let interface = args.interface.as_str();
            if let Some(line) = python::check_interface(&app, &args.app, interface) {
                report(&LoadFailure {
                    traceback: None,
                    message: line,
                });
                return Ok(EXIT_APP_INTERFACE);
            }
            Handler::App(app)
        }
        Err(failure) => {
            report(&failure);
            if !args.dev || args.check {
                return Ok(EXIT_APP_IMPORT);
            }
            Handler::Broken(broken_page(&failure))
        }
    };
    if args.check {
        return Ok(0);
    }
    if args.zygote {
        // Forks return here as workers; the zygote itself ends when the master
        // lets go of it.
        return match zygote::run(parent)? {
            Some(worker) => {
                if worker.hooks.is_some() {
                    python::hooks_event("post_fork");
                    python::hooks_ready(&mut handler, args.interface.as_str());
                }
                serve(&worker, handler)
            }
            None => Ok(0),
        };
    }
    if args.hooks.is_some() {
        python::hooks_ready(&mut handler, args.interface.as_str());
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
/// The import failure as one record (the master shows it once per generation,
/// however many workers hit it), or as plain text for `--check-config`, whose
/// stderr is the user's terminal.
pub(crate) fn report(failure: &LoadFailure) {
    let tb = failure.traceback.as_deref().unwrap_or_default().trim_end();
    if log::is_plain() {
        use std::io::Write;
        let text = format!("{tb}\nferricorn: {}\n", failure.message);
        let _ = std::io::stderr()
            .lock()
            .write_all(text.trim_start().as_bytes());
        return;
    }
    let message = match tb {
        "" => failure.message.clone(),
        tb => format!("{}\n{tb}", failure.message),
    };
    log::emit(&Record::new(Level::Error, message).field(IMPORT_FAILED.0, IMPORT_FAILED.1));
}

fn broken_page(failure: &LoadFailure) -> Vec<u8> {
    let tb = failure.traceback.as_deref().unwrap_or_default();
    let text = format!("{tb}\nferricorn: {}\n", failure.message);
    python::traceback::dev_page("The application failed to import.", &text)
}

fn serve(args: &WorkerArgs, handler: Handler) -> Result<u8, StartError> {
    if args.interface == Interface::Asgi {
        if let Handler::App(app) = handler {
            return asgi::serve(args, app);
        }
        // `--dev` with an app that failed to import: the WSGI threads serve its page.
    }
    let threads = args.threads.max(1);
    let shared = Shared::new(handler, threads, args.dev)?;
    let shared = Arc::new(shared);
    let sock = UnixStream::connect(&args.socket)
        .map_err(|e| StartError::Connect(args.socket.clone(), e))?;
    let claims = match &args.claims {
        Some(path) => Some(Claims::open(path).map_err(|e| StartError::Claims(path.clone(), e))?),
        None => None,
    };
    let conn = Arc::new(Conn::new(sock, claims, server::lead));
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
                c.exit(Exit::Fatal(Fatal::ThreadPanicked));
            })
            .map_err(StartError::Thread)?;
    }
    // The master sends nothing before Ready, so the threads above only wait so far.
    let ready = Ready {
        protocol: PROTOCOL,
        pid: std::process::id(),
        interpreter: python::interpreter(),
    };
    let on = ready.interpreter.to_string();
    conn.send_now(0, &Frame::Ready(Box::new(ready)));
    wlog!(
        "booted: app {}, {threads} Python thread(s), on {on}",
        args.app
    );
    let why = conn.wait_exit();
    conn.close_passed();
    Ok(shutdown(why, args.hooks.is_some()))
}

/// Runs `atexit` on a clean exit and picks the exit status. Every frame is written
/// by the time a drain ends (threads write their own). The interpreter is not
/// finalised: Python threads may be busy.
pub(crate) fn shutdown(why: Exit, hooks: bool) -> u8 {
    match why {
        Exit::Drained => {
            if hooks {
                python::hooks_event("worker_exit");
            }
            python::run_atexit();
            0
        }
        Exit::MasterGone | Exit::Quick => 0,
        Exit::Fatal(e) => {
            werror!("worker stopping: {e}");
            1
        }
    }
}
