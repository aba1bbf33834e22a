//! The error log: the master's tracing events and what workers write to their
//! stderr (`worker_output`), in one destination and format. Human-readable text by
//! default, one JSON object a line with `--log-format json` (for log shippers). A
//! file given with `--error-logfile` is reopened on USR1 (logrotate).
//!
//! Logging never blocks serving: events are queued (at most `QUEUE_BUDGET` bytes)
//! for one writer thread. When the destination stalls (a pipe nobody reads), events
//! beyond the budget are dropped and counted (`dropped`, in `/metrics`), and the
//! writer says how many once it can write again. gunicorn keeps serving then too.

use crate::config::LogFormat;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of formatted events that may wait for the writer.
const QUEUE_BUDGET: usize = 4 * 1024 * 1024;

/// Events dropped because the queue was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Where error-log lines go; cheap to clone, shared by the subscriber and `reopen`.
#[derive(Clone)]
pub struct ErrorLog {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
    queue: Arc<Queue>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<Pending>,
    /// Signalled when events arrive and when the writer has emptied the queue.
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    events: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer holds events it took but has not written yet.
    writing: bool,
}

impl ErrorLog {
    /// Opens the destination and starts the writer thread.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let file = match path {
            Some(p) => Some((p.to_path_buf(), Arc::new(Mutex::new(append(p)?)))),
            None => None,
        };
        let log = ErrorLog {
            file,
            queue: Arc::default(),
        };
        let writer = log.clone();
        std::thread::Builder::new()
            .name("error-log".into())
            .spawn(move || writer.write_loop())?;
        Ok(log)
    }

    /// Waits (at most `limit`) until every queued event is written: before the
    /// process prints its last line and exits.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut st = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.events.is_empty() || st.writing {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self
                .queue
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn push(&self, event: Vec<u8>) {
        let mut st = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.bytes + event.len() > QUEUE_BUDGET {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        st.bytes += event.len();
        st.events.push_back(event);
        self.queue.changed.notify_all();
    }

    fn write_loop(self) {
        let mut reported = 0;
        loop {
            let batch: Vec<Vec<u8>> = {
                let mut st = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
                st.writing = false;
                self.queue.changed.notify_all();
                while st.events.is_empty() {
                    st = self
                        .queue
                        .changed
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner());
                }
                st.bytes = 0;
                st.writing = true;
                st.events.drain(..).collect()
            };
            let mut sink = self.sink();
            for event in &batch {
                let _ = sink.write_all(event);
            }
            let _ = sink.flush();
            let now = dropped();
            if now > reported {
                tracing::warn!(
                    dropped = now - reported,
                    "the error log could not keep up; events were dropped"
                );
                reported = now;
            }
        }
    }

    fn sink(&self) -> Sink {
        match &self.file {
            Some((_, f)) => Sink::File(f.clone()),
            None => Sink::Stderr(io::stderr()),
        }
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

enum Sink {
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

/// One event being formatted; queued whole when the formatter is done with it.
pub struct EventBuf {
    buf: Vec<u8>,
    log: ErrorLog,
}

impl Write for EventBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuf {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.log.push(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> MakeWriter<'a> for ErrorLog {
    type Writer = EventBuf;

    fn make_writer(&'a self) -> EventBuf {
        EventBuf {
            buf: Vec::new(),
            log: self.clone(),
        }
    }
}

/// Installs the global subscriber. What the app itself prints on stderr (target
/// `worker`) is always shown, as gunicorn passes it through; the workers' own
/// records (tracebacks included) obey the level like the master's events.
pub fn init(level: &str, format: LogFormat, log: ErrorLog) {
    let filter = tracing_subscriber::EnvFilter::try_new(directives(level))
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

/// The subscriber's filter for `--log-level`: our own events at that level, the
/// app's output always. The protocol libraries' debug output stays out of our
/// debug, and their warnings out of the log unless it is at debug: those are a
/// client's doing, one per connection (rustls on a TLS 1.2 renegotiation attempt,
/// h2 on a rapid-reset connection), so any client could write the operator's log
/// (and page whoever alerts on WARN) at its connection rate. nginx logs such
/// client errors at info.
fn directives(level: &str) -> String {
    let ours = match level {
        "warning" => "warn",
        "critical" => "error",
        other => other,
    };
    let (others, protocol) = match ours {
        "debug" => ("info", "info"),
        other => (other, "error"),
    };
    format!(
        "{others},rustls={protocol},h2={protocol},hyper={protocol},ferricorn={ours},worker=info"
    )
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn the_protocol_libraries_log_errors_only_below_debug() {
        assert_eq!(
            directives("warning"),
            "warn,rustls=error,h2=error,hyper=error,ferricorn=warn,worker=info"
        );
        assert_eq!(
            directives("info"),
            "info,rustls=error,h2=error,hyper=error,ferricorn=info,worker=info"
        );
        assert_eq!(
            directives("debug"),
            "info,rustls=info,h2=info,hyper=info,ferricorn=debug,worker=info"
        );
        assert!(directives("critical").starts_with("error,rustls=error,"));
        for level in ["debug", "info", "warning", "error", "critical"] {
            assert!(
                tracing_subscriber::EnvFilter::try_new(directives(level)).is_ok(),
                "{level}"
            );
        }
    }
}
