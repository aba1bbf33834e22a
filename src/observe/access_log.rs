//! The access log: one line per request, static and proxied alike, in nginx's
//! `combined` format, as JSON, or from a `{field}` template. Lines go through a
//! bounded channel to a writer thread, so logging never blocks the request path (a
//! line that finds the channel full is dropped and counted).

pub use crate::config::access_log_format::{placeholders, Format, FIELDS};
use crate::respond::{Polled, Tap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

/// One request, as the front saw it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub remote: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub protocol: &'static str,
    pub status: u16,
    pub bytes: Option<u64>,
    /// Bytes received from the client: set for a WebSocket (at its close) only.
    pub bytes_in: Option<u64>,
    pub duration: Duration,
    pub user_agent: String,
    pub referer: String,
    pub request_id: String,
    pub worker_pid: Option<u32>,
    pub upstream: Option<Duration>,
    /// How long the request waited for a worker's Python thread.
    pub queue: Option<Duration>,
}

impl Entry {
    fn field(&self, name: &str) -> String {
        match name {
            "time" => rfc3339(self.time),
            "remote" => self.remote.clone(),
            "method" => self.method.clone(),
            "path" => self.path.clone(),
            "query" => self.query.clone(),
            "protocol" => self.protocol.to_string(),
            "status" => self.status.to_string(),
            "bytes" => self
                .bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            "bytes_in" => self
                .bytes_in
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            "duration_ms" => millis_or_dash(Some(self.duration)),
            "user_agent" => self.user_agent.clone(),
            "referer" => self.referer.clone(),
            "request_id" => self.request_id.clone(),
            "worker_pid" => self
                .worker_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            "upstream_ms" => millis_or_dash(self.upstream),
            "queue_ms" => millis_or_dash(self.queue),
            "request" => format!("{} {} {}", self.method, self.target(), self.protocol),
            "time_local" => format!("[{}]", clf_time(self.time)),
            "duration" => format!("{:.6}", self.duration.as_secs_f64()),
            "duration_s" => self.duration.as_secs().to_string(),
            "duration_us" => self.duration.as_micros().to_string(),
            _ => String::new(),
        }
    }

    pub fn format(&self, format: &Format) -> String {
        match format {
            Format::Combined => self.combined(),
            Format::Json => self.json(),
            Format::Template(t) => {
                let mut out = String::with_capacity(t.len() + 64);
                let mut rest = t.as_str();
                while let Some(start) = rest.find('{') {
                    out.push_str(&rest[..start]);
                    match rest[start + 1..].find('}') {
                        Some(end) => {
                            // An empty value is written `-`, as nginx and gunicorn do.
                            // Escaped as in `combined`: a template's quotes are the
                            // operator's, and a client's `"` must not close them.
                            let value = self.field(&rest[start + 1..start + 1 + end]);
                            out.push_str(&escape_client_text(or_dash(&value)));
                            rest = &rest[start + 2 + end..];
                        }
                        None => {
                            rest = &rest[start..];
                            break;
                        }
                    }
                }
                out.push_str(rest);
                out
            }
        }
    }

    /// `127.0.0.1 - - [23/Nov/2026:10:00:00 +0000] "GET /?q=1 HTTP/1.1" 200 13 "ref" "ua"`
    fn combined(&self) -> String {
        let target = self.target();
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
            self.remote,
            clf_time(self.time),
            self.method,
            escape_client_text(&target),
            self.protocol,
            self.status,
            self.bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            escape_client_text(or_dash(&self.referer)),
            escape_client_text(or_dash(&self.user_agent)),
        )
    }

    /// The request target as the client sent it: path and query.
    fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    fn json(&self) -> String {
        let mut out = String::from("{");
        for (i, name) in FIELDS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            let numeric = matches!(
                *name,
                "status"
                    | "bytes"
                    | "bytes_in"
                    | "duration_ms"
                    | "worker_pid"
                    | "upstream_ms"
                    | "queue_ms"
            );
            let v = self.field(name);
            if numeric && v != "-" {
                out.push_str(&v);
            } else if numeric {
                out.push_str("null");
            } else {
                json_string(&v, &mut out);
            }
        }
        out.push('}');
        out
    }
}

/// Milliseconds with three decimals, or `-` (JSON: null) when unknown.
fn millis_or_dash(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.3}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Client-controlled text in a text line (`combined` and templates alike): `"`, `\`,
/// control characters (C0, DEL, C1) and bidi overrides become `\xHH`, one per byte
/// of their UTF-8, as nginx's `escape=default` writes them. A header then cannot
/// close a quoted field, forge a line, drive a terminal or reorder what a reader sees.
fn escape_client_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' || is_unsafe_to_show(c) {
            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Controls, and the bidi formatting characters that reorder a line on screen
/// (U+061C, U+200E/F, U+202A..E, U+2066..9: "Trojan Source").
fn is_unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_to_show(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// "Wed, 25 Nov 2026 18:57:07 GMT" → ("25", "Nov", "2026", "18:57:07")
fn date_parts(t: SystemTime) -> [String; 4] {
    let http = httpdate::fmt_http_date(t);
    let p: Vec<&str> = http.split(' ').collect();
    [p[1].into(), p[2].into(), p[3].into(), p[4].into()]
}

/// Common Log Format time: `25/Nov/2026:18:57:07 +0000`.
fn clf_time(t: SystemTime) -> String {
    let [d, m, y, hms] = date_parts(t);
    format!("{d}/{m}/{y}:{hms} +0000")
}

/// `2026-11-25T18:57:07Z`
fn rfc3339(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let [d, m, y, hms] = date_parts(t);
    let month = MONTHS.iter().position(|x| *x == m).map_or(0, |i| i + 1);
    format!("{y}-{month:02}-{d}T{hms}Z")
}

enum Message {
    Line(String),
    Reopen,
}

/// Where lines go: stdout or a file (reopened on USR1, for logrotate).
pub struct AccessLog {
    tx: SyncSender<Message>,
    format: Format,
    dropped: AtomicU64,
}

impl AccessLog {
    /// `target` is "-" for stdout or a file path (appended to).
    pub fn start(target: &str, format: Format) -> std::io::Result<Self> {
        let path = (target != "-").then(|| PathBuf::from(target));
        let mut sink = open(path.as_ref())?;
        let (tx, rx) = sync_channel::<Message>(16 * 1024);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    match msg {
                        Message::Line(line) => {
                            let _ = sink.write_all(line.as_bytes());
                            // Drain what queued meanwhile, then flush once.
                            while let Ok(Message::Line(more)) = rx.try_recv() {
                                let _ = sink.write_all(more.as_bytes());
                            }
                            let _ = sink.flush();
                        }
                        Message::Reopen => {
                            if let Ok(s) = open(path.as_ref()) {
                                sink = s;
                            }
                        }
                    }
                }
            })?;
        Ok(AccessLog {
            tx,
            format,
            dropped: AtomicU64::new(0),
        })
    }

    pub fn log(&self, entry: &Entry) {
        let mut line = entry.format(&self.format);
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Message::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn reopen(&self) {
        let _ = self.tx.try_send(Message::Reopen);
    }
}

fn open(path: Option<&PathBuf>) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(std::io::stdout()),
        Some(p) => Box::new(std::io::BufWriter::new(
            OpenOptions::new().create(true).append(true).open(p)?,
        )),
    })
}

/// Writes a response's access-log line when its body ends, so the line has the time
/// to the last byte and the body bytes actually sent, also for a streamed response
/// and for one whose client went away (logged when the body is dropped).
pub struct LogWhenSent {
    sent: u64,
    started: std::time::Instant,
    pending: Option<(Arc<AccessLog>, Entry)>,
}

impl LogWhenSent {
    pub fn new(log: Arc<AccessLog>, entry: Entry, started: std::time::Instant) -> Self {
        LogWhenSent {
            sent: 0,
            started,
            pending: Some((log, entry)),
        }
    }

    fn finish(&mut self) {
        if let Some((log, mut entry)) = self.pending.take() {
            entry.bytes = Some(self.sent);
            entry.duration = self.started.elapsed();
            log.log(&entry);
        }
    }
}

impl Tap for LogWhenSent {
    fn polled(&mut self, polled: &Polled) {
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(_) => self.finish(),
            Poll::Pending => {}
        }
    }
}

impl Drop for LogWhenSent {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000),
            remote: "127.0.0.1".into(),
            method: "GET".into(),
            path: "/".into(),
            query: "q=1".into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes: Some(13),
            bytes_in: None,
            duration: Duration::from_micros(1500),
            user_agent: "curl/8 \"x\"".into(),
            referer: String::new(),
            request_id: "abc".into(),
            worker_pid: Some(42),
            upstream: None,
            queue: Some(Duration::from_micros(250)),
        }
    }

    #[test]
    fn combined_is_nginx_shaped_and_escapes_quotes() {
        let line = entry().format(&Format::Combined);
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains(" +0000] \"GET /?q=1 HTTP/1.1\" 200 13 \"-\" \"curl/8 \\x22x\\x22\""),
            "{line}"
        );
    }

    #[test]
    fn json_has_every_field_with_types() {
        let line = entry().format(&Format::Json);
        assert!(line.contains("\"status\":200"), "{line}");
        assert!(line.contains("\"upstream_ms\":null"), "{line}");
        assert!(line.contains("\"bytes_in\":null"), "{line}");
        let mut ws = entry();
        ws.bytes_in = Some(7);
        assert!(ws.format(&Format::Json).contains("\"bytes_in\":7"));
        assert!(line.contains("\"queue_ms\":0.250"), "{line}");
        assert!(
            line.contains("\"user_agent\":\"curl/8 \\\"x\\\"\""),
            "{line}"
        );
        assert!(line.contains("\"time\":\"2026-11-23T10:00:00Z\""), "{line}");
    }

    #[test]
    fn templates_fill_fields_and_refuse_unknown_ones() {
        let f = Format::parse("{remote} {status} {worker_pid}").unwrap();
        assert_eq!(entry().format(&f), "127.0.0.1 200 42");
        assert!(Format::parse("{nope}").is_err());
        assert!(Format::parse("plain").is_err());
    }

    #[test]
    fn gunicorns_codes_render_as_gunicorn_does() {
        let f = Format::parse(r#"%(h)s %(t)s "%(r)s" %(s)s %(D)s %(p)s"#).unwrap();
        assert_eq!(
            entry().format(&f),
            "127.0.0.1 [23/Nov/2026:10:00:00 +0000] \"GET /?q=1 HTTP/1.1\" 200 1500 42"
        );
        let f = Format::parse("{queue_ms} {duration} {duration_s}").unwrap();
        assert_eq!(entry().format(&f), "0.250 0.001500 0");
    }

    /// A client's `"` cannot close a field the operator quoted, in a template as in
    /// `combined`; controls (C0, C1) and bidi overrides go out as `\xHH` bytes.
    #[test]
    fn client_text_is_escaped_alike_in_combined_and_templates() {
        let mut e = entry();
        e.user_agent = "Mozilla\" 200 1 \"-\" \"-".into();
        e.referer = "ref\u{202e}evil\u{9b}31m\n".into();
        e.path = "/a\\b\u{1b}".into();
        let gunicorn = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
        let tail = concat!(
            r#""GET /a\x5Cb\x1B?q=1 HTTP/1.1" 200 13 "#,
            r#""ref\xE2\x80\xAEevil\xC2\x9B31m\x0A" "Mozilla\x22 200 1 \x22-\x22 \x22-""#
        );
        for format in [Format::Combined, Format::parse(gunicorn).unwrap()] {
            let line = e.format(&format);
            assert!(line.ends_with(tail), "{format:?}: {line}");
        }
        let json = e.format(&Format::Json);
        assert!(
            json.contains(r#""referer":"ref\u202eevil\u009b31m\n""#),
            "{json}"
        );
    }
}
