//! The worker's own log records, which the master relays into the error log. They
//! travel on a pipe of their own (`WorkerArgs::log_fd`), never on the stderr the
//! app writes to: a line the app prints (one a client chose, even) is never read
//! as a record. One record is one line that starts with RS (0x1e):
//!
//! ```text
//! RS level US key=value US key=value ... US message LF
//! ```
//!
//! `level` is `E`, `W`, `I` or `D`. In keys, values and the message, `\`, LF, CR and US
//! are escaped (`\\`, `\n`, `\r`, `\u`), so a whole traceback stays one record: one
//! event in the error log, one object in JSON mode.

/// The field that marks a worker's report that the app does not import.
pub const IMPORT_FAILED: (&str, &str) = ("event", "import_failed");

const RS: char = '\x1e';
const US: char = '\x1f';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub level: Level,
    pub fields: Vec<(String, String)>,
    pub message: String,
}

impl Record {
    pub fn new(level: Level, message: impl Into<String>) -> Record {
        Record {
            level,
            fields: Vec::new(),
            message: message.into(),
        }
    }

    pub fn field(mut self, key: &str, value: impl Into<String>) -> Record {
        self.fields.push((key.to_string(), value.into()));
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record as one line, LF included.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.message.len() + 64);
        out.push(RS);
        out.push(match self.level {
            Level::Error => 'E',
            Level::Warn => 'W',
            Level::Info => 'I',
            Level::Debug => 'D',
        });
        for (k, v) in &self.fields {
            out.push(US);
            escape_into(k, &mut out);
            out.push('=');
            escape_into(v, &mut out);
        }
        out.push(US);
        escape_into(&self.message, &mut out);
        out.push('\n');
        out
    }

    /// A line (without its LF) that is a record; None for any other line.
    pub fn decode(line: &str) -> Option<Record> {
        let rest = line.strip_prefix(RS)?;
        let mut parts = rest.split(US);
        let level = match parts.next()? {
            "E" => Level::Error,
            "W" => Level::Warn,
            "I" => Level::Info,
            "D" => Level::Debug,
            _ => return None,
        };
        let mut parts: Vec<&str> = parts.collect();
        let message = unescape(parts.pop()?);
        let fields = parts
            .into_iter()
            .map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((unescape(k), unescape(v)))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Record {
            level,
            fields,
            message,
        })
    }
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            US => out.push_str("\\u"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => out.push(US),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceback_survives_as_one_line() {
        let r = Record::new(
            Level::Error,
            "error handling request\nTraceback:\n  a \\ b \x1f c\r\n",
        )
        .field("request_id", "abc")
        .field("path", "/x=y\nz");
        let line = r.encode();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert_eq!(Record::decode(line.trim_end_matches('\n')), Some(r.clone()));
        assert_eq!(r.get("path"), Some("/x=y\nz"));
    }

    #[test]
    fn other_lines_are_not_records() {
        assert_eq!(Record::decode("Traceback (most recent call last):"), None);
        assert_eq!(Record::decode("\x1eX\x1fmessage"), None);
        assert_eq!(Record::decode("\x1eE\x1fno-equals\x1fm"), None);
        let bare = Record::decode("\x1eI\x1fjust a message").unwrap();
        assert_eq!(bare, Record::new(Level::Info, "just a message"));
        let debug = Record::decode("\x1eD\x1fquiet").unwrap();
        assert_eq!(debug, Record::new(Level::Debug, "quiet"));
    }
}
