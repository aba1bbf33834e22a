//! Relays what a worker writes into the error log: its own records, from a pipe
//! of their own (`ferricorn_wire::log_record`: one event each, at their level, with
//! the request's id, method and path when they name one), and whatever the app
//! prints on stderr, as plain lines. The two never mix: a line of the app's, even
//! one a client chose (a decoded path that starts with RS), is never read as a
//! record, so it cannot forge an event, a request id or an import failure. Lines
//! are bounded (`MAX_LINE`): a line without end costs the master no more than
//! that. An import failure is shown once per generation of workers, not once per
//! worker.

use ferricorn_wire::log_record::{Level, Record, IMPORT_FAILED};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line relayed; the rest of a longer one is dropped, and the cut is said.
pub const MAX_LINE: usize = 256 * 1024;

/// Relays a worker's stderr (the app's output) and its records pipe until both
/// end. `generation` tells apart the reloads, for showing an import failure once
/// per generation.
pub async fn relay(
    pid: u32,
    generation: u64,
    stderr: impl tokio::io::AsyncRead + Unpin,
    records: impl tokio::io::AsyncRead + Unpin,
) {
    tokio::join!(
        relay_app_output(pid, stderr),
        each_line(records, |line, cut| record_line(pid, generation, line, cut)),
    );
}

/// Relays what the app prints, as plain lines, until EOF.
async fn relay_app_output(pid: u32, output: impl tokio::io::AsyncRead + Unpin) {
    each_line(output, |line, cut| app_line(pid, line, cut)).await;
}

async fn each_line(input: impl tokio::io::AsyncRead + Unpin, mut f: impl FnMut(&[u8], bool)) {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_bounded(&mut reader, &mut line).await {
            Ok(None) | Err(_) => return,
            Ok(Some(cut)) => f(&line, cut),
        }
    }
}

/// Reads one line (without its LF) into `line`, keeping at most `MAX_LINE` bytes.
/// Some(true): the line was longer and was cut. None: end of input.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    let mut cut = false;
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (piece, used, end) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LINE - line.len();
        cut |= piece.len() > room;
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        reader.consume(used);
        if end {
            return Ok(Some(cut));
        }
    }
}

fn app_line(pid: u32, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if cut {
        tracing::info!(target: "worker", pid, "{text} [line cut at {MAX_LINE} bytes]");
    } else {
        tracing::info!(target: "worker", pid, "{text}");
    }
}

/// A line of the records pipe: only our worker writes there; one it cut or that
/// does not decode is shown as it is.
fn record_line(pid: u32, generation: u64, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    match Record::decode(&text).filter(|_| !cut) {
        Some(record) => relay_record(pid, generation, &record),
        None => app_line(pid, line, cut),
    }
}

fn relay_record(pid: u32, generation: u64, r: &Record) {
    if r.get(IMPORT_FAILED.0) == Some(IMPORT_FAILED.1) {
        if !first_import_failure(generation, &r.message) {
            return;
        }
        let summary = r.message.lines().next().unwrap_or_default();
        *LAST_IMPORT_FAILURE
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(summary.into());
    }
    let (id, method, path) = (r.get("request_id"), r.get("method"), r.get("path"));
    let message = &r.message;
    match level_of(r) {
        Level::Error => {
            tracing::error!(target: "ferricorn::worker", pid, request_id = id, method, path, "{message}")
        }
        Level::Warn => {
            tracing::warn!(target: "ferricorn::worker", pid, request_id = id, method, path, "{message}")
        }
        Level::Info => {
            tracing::info!(target: "ferricorn::worker", pid, request_id = id, method, path, "{message}")
        }
        Level::Debug => {
            tracing::debug!(target: "ferricorn::worker", pid, request_id = id, method, path, "{message}")
        }
    }
}

/// A record's level as relayed: the worker's own `booted: app ...` line says again
/// what the master's `Booted worker pid=... python=...` says (each boot was logged
/// twice), so it is kept for `--log-level debug`.
fn level_of(r: &Record) -> Level {
    match r.level {
        Level::Info if r.message.starts_with("booted: app ") => Level::Debug,
        level => level,
    }
}

/// The first line of the last import failure a worker reported, for the master's
/// closing line (`failed to import app "x": ModuleNotFoundError: ...`).
static LAST_IMPORT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

pub fn last_import_failure() -> Option<String> {
    LAST_IMPORT_FAILURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Import failures shown lately, by generation and text: a few suffice, since
/// workers of one generation report within moments of each other.
static SHOWN: Mutex<VecDeque<(u64, u64)>> = Mutex::new(VecDeque::new());

fn first_import_failure(generation: u64, message: &str) -> bool {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    message.hash(&mut h);
    let key = (generation, h.finish());
    let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    if shown.contains(&key) {
        return false;
    }
    if shown.len() == 16 {
        shown.pop_front();
    }
    shown.push_back(key);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_their_cut_is_told() {
        let long = vec![b'x'; MAX_LINE + 10];
        let input = [long.as_slice(), b"\nshort\r\nlast"].concat();
        let mut reader = tokio::io::BufReader::with_capacity(1000, input.as_slice());
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line).await.unwrap(),
            Some(true)
        );
        assert_eq!(line.len(), MAX_LINE);
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line).await.unwrap(),
            Some(false)
        );
        assert_eq!(line, b"short\r");
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line).await.unwrap(),
            Some(false)
        );
        assert_eq!(line, b"last");
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line).await.unwrap(),
            None
        );
    }

    #[test]
    fn an_import_failure_is_shown_once_per_generation() {
        assert!(first_import_failure(7, "boom"));
        assert!(!first_import_failure(7, "boom"));
        assert!(first_import_failure(8, "boom"));
        assert!(first_import_failure(7, "other"));
    }
}
