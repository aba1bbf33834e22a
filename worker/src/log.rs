//! The worker's own log records (`ferricorn_wire::log_record`), on a pipe of their
//! own that the master passes (`--log-fd`, fd 3): the master relays them into the
//! error log with the worker's pid, at their level, one event each even when they
//! span lines (a traceback), so records from two threads never interleave.
//!
//! What the app prints (stdout, stderr, its `logging`, a C library) never reaches
//! that pipe, so no line of it can pass for a record, not even one a client chose
//! (a decoded path that starts with RS, say): the master reads the app's stderr as
//! plain lines only. The pipe is closed at exec, so the app's subprocesses do not
//! inherit it. Without it (a worker started by hand, as tests/worker_protocol.rs
//! does) records go to stderr; with `--check` (`--check-config`, whose stderr is a
//! person's terminal) they are plain text there.

use ferricorn_wire::log_record::{Level, Record};
use std::fs::File;
use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The records pipe, once the master gave one.
static RECORDS: Mutex<Option<File>> = Mutex::new(None);

static PLAIN: AtomicBool = AtomicBool::new(false);

/// Plain text on stderr from now on: stderr is a person's terminal
/// (`--check-config`), not the master's relay.
pub fn set_plain() {
    PLAIN.store(true, Ordering::Relaxed);
}

pub fn is_plain() -> bool {
    PLAIN.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum LogFdError {
    #[error("--log-fd {0}: not an open file descriptor: {1}")]
    NotOpen(RawFd, nix::Error),
}

/// Records go to fd `fd`, which the master opened for us, from now on.
#[allow(unsafe_code)]
pub fn use_records_fd(fd: RawFd) -> Result<(), LogFdError> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::FromRawFd;
    // SAFETY: the number is checked to be open (F_GETFD) before it is owned, and
    // nothing else in the process owns it: the master put it there for us alone.
    let owned = unsafe {
        if nix::libc::fcntl(fd, nix::libc::F_GETFD) < 0 {
            return Err(LogFdError::NotOpen(fd, nix::errno::Errno::last()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    // Closed at exec: a subprocess of the app must not write records, nor hold the
    // pipe open after we exit.
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| LogFdError::NotOpen(fd, e))?;
    use_records_pipe(owned);
    Ok(())
}

/// Records go to `pipe` from now on (preload: a forked worker's own pipe replaces
/// the zygote's, which this process closes).
pub fn use_records_pipe(pipe: OwnedFd) {
    *RECORDS.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(pipe));
}

/// Writes one record in a single write, records of other threads waiting.
pub fn emit(record: &Record) {
    if is_plain() {
        return plain(format_args!("{}", record.message));
    }
    let mut records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let _ = match records.as_mut() {
        Some(pipe) => pipe.write_all(record.encode().as_bytes()),
        None => std::io::stderr()
            .lock()
            .write_all(record.encode().as_bytes()),
    };
}

/// One plain line on stderr, `ferricorn: ...`.
pub fn plain(args: std::fmt::Arguments<'_>) {
    let text = format!("ferricorn: {args}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub fn at(level: Level, args: std::fmt::Arguments<'_>) {
    emit(&Record::new(level, args.to_string()));
}

/// `wlog!("...", args)`: an INFO record; `werror!` an ERROR one, `wdebug!` a DEBUG one.
macro_rules! wlog {
    ($($t:tt)*) => {
        $crate::log::at(ferricorn_wire::log_record::Level::Info, format_args!($($t)*))
    };
}
macro_rules! werror {
    ($($t:tt)*) => {
        $crate::log::at(ferricorn_wire::log_record::Level::Error, format_args!($($t)*))
    };
}
macro_rules! wdebug {
    ($($t:tt)*) => {
        $crate::log::at(ferricorn_wire::log_record::Level::Debug, format_args!($($t)*))
    };
}
pub(crate) use {wdebug, werror, wlog};
