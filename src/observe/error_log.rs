//! The error log: the master's tracing events and every line a worker writes to its
//! stderr (Python tracebacks, `wsgi.errors`, faulthandler dumps), relayed by the
//! master so they share one destination and format. Human-readable text by default,
//! one JSON object a line with `--log-format json` (for log shippers). A file given
//! with `--error-logfile` is reopened on USR1 (logrotate).

use crate::config::LogFormat;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// Where error-log lines go; cheap to clone, shared by the subscriber and `reopen`.
#[derive(Clone)]
pub struct ErrorLog {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
}

impl ErrorLog {
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let file = match path {
            Some(p) => Some((p.to_path_buf(), Arc::new(Mutex::new(append(p)?)))),
            None => None,
        };
        Ok(ErrorLog { file })
    }

    /// USR1: open the path again (logrotate moved the old file away).
    pub fn reopen(&self) -> io::Result<()> {
        if let Some((path, file)) = &self.file {
            let fresh = append(path)?;
            *file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        Ok(())
    }

    fn is_terminal(&self) -> bool {
        self.file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr())
    }
}

fn append(p: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

pub enum Sink {
    Stderr(io::Stderr),
    File(Arc<Mutex<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stderr(s) => s.write(buf),
            Sink::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stderr(s) => s.flush(),
            Sink::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for ErrorLog {
    type Writer = Sink;

    fn make_writer(&'a self) -> Sink {
        match &self.file {
            Some((_, f)) => Sink::File(f.clone()),
            None => Sink::Stderr(io::stderr()),
        }
    }
}

/// Installs the global subscriber. Worker output (target `worker`) is always shown at
/// info, whatever the level: it is where Python tracebacks arrive.
pub fn init(level: &str, format: LogFormat, log: ErrorLog) {
    let directive = match level {
        "warning" => "warn",
        "critical" => "error",
        other => other,
    };
    // debug is ours; the libraries' debug output (hyper, rustls...) stays out of it.
    let others = if directive == "debug" {
        "info"
    } else {
        directive
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{others},ferricorn={directive},worker=info"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = log.is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// Relays a worker's stderr into the error log, one event a line, until EOF.
pub async fn relay_worker_output(pid: u32, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "worker", pid, "{line}");
    }
}
