//! The worker's own log records on stderr (`ferricorn_wire::log_record`): the master
//! relays them into the error log with the worker's pid, at their level, one event
//! each even when they span lines (a traceback), so records from two threads never
//! interleave. What the app itself prints on stderr stays plain lines.

use ferricorn_wire::log_record::{Level, Record};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static PLAIN: AtomicBool = AtomicBool::new(false);

/// Plain text from now on: stderr is a person's terminal (`--check-config`), not
/// the master's relay.
pub fn set_plain() {
    PLAIN.store(true, Ordering::Relaxed);
}

pub fn is_plain() -> bool {
    PLAIN.load(Ordering::Relaxed)
}

/// Writes one record to stderr in a single write.
pub fn emit(record: &Record) {
    let text = if is_plain() {
        format!("ferricorn: {}\n", record.message)
    } else {
        record.encode()
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub fn at(level: Level, args: std::fmt::Arguments<'_>) {
    emit(&Record::new(level, args.to_string()));
}

/// `wlog!("...", args)`: an INFO record; `werror!` an ERROR one.
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
pub(crate) use {werror, wlog};
