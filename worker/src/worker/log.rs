//! The worker's own log lines: plain text on stderr, prefixed with `[worker PID]`, so
//! the master's error log shows which worker said what. Python tracebacks go through
//! here too, whole, so lines from two threads do not interleave.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Writes one message (possibly several lines) to stderr in a single write.
pub fn write(args: fmt::Arguments<'_>) {
    let mut text = format!("[worker {}] {}", pid(), args);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `wlog!("...", args)`: one line on stderr, prefixed with the worker's pid.
macro_rules! wlog {
    ($($t:tt)*) => { $crate::worker::log::write(format_args!($($t)*)) };
}
pub(crate) use wlog;
