//! Prometheus metrics, kept as atomics and rendered in the text exposition format
//! (version 0.0.4) on each scrape of `/metrics`.
//!
//! Per-request counters are kept once per front thread (`crate::shards`), each set
//! on its own cache lines, and summed at scrape time: counters shared by the threads
//! would move a cache line between cores several times per request.

use super::{RestartReason, RouteKind};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

/// Live gauges the metrics read from elsewhere at scrape time.
pub struct Gauges {
    pub queued: usize,
    /// Request-body bytes held in memory (`[limits] body_memory` caps it).
    pub body_memory: u64,
    pub spool: SpoolUse,
    pub responses: ResponseUse,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Idle HTTP/1 keep-alive connections parked without hyper's buffers.
    pub parked: u64,
    /// WebSocket tunnels open now (handshakes under way are not counted).
    pub websockets: u64,
}

/// Why a WebSocket handshake was refused before Python
/// (`ferricorn_websocket_upgrades_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRefusal {
    /// `websocket_max` open already: 503.
    Cap,
    /// The server is stopping or reloading: 503.
    Draining,
    /// The path is a static mount's: 400.
    Static,
    /// A malformed handshake: 400, or 426 for another version.
    Handshake,
}

impl UpgradeRefusal {
    const ALL: [UpgradeRefusal; 4] = [
        UpgradeRefusal::Cap,
        UpgradeRefusal::Draining,
        UpgradeRefusal::Static,
        UpgradeRefusal::Handshake,
    ];

    fn label(self) -> &'static str {
        match self {
            UpgradeRefusal::Cap => "cap",
            UpgradeRefusal::Draining => "draining",
            UpgradeRefusal::Static => "static",
            UpgradeRefusal::Handshake => "handshake",
        }
    }
}

/// Request bodies spooled to temp files (`[limits] body_spool_files`,
/// `body_spool_bytes`), and the bodies refused for want of room.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpoolUse {
    pub files: u64,
    pub bytes: u64,
    pub refused_files: u64,
    pub refused_bytes: u64,
    /// The temp directory was full.
    pub refused_disk: u64,
}

/// What responses held for their clients take (`[limits] response_memory`,
/// `response_files`), and the responses cut or refused for want of room.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseUse {
    pub memory: u64,
    pub files: u64,
    /// Responses cut to make room for another.
    pub cut_stalled: u64,
    /// Responses cut because they found no room.
    pub cut_no_room: u64,
    /// Static files answered 503 for want of a file slot.
    pub static_refused: u64,
}

/// A request in flight, see [`Metrics::request_started`].
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.here().in_flight.fetch_sub(1, Relaxed);
    }
}

/// What one front thread counts.
#[derive(Default)]
#[repr(align(128))]
struct PerThread {
    /// [route kind][status class 1..=5]
    requests: [[AtomicU64; 5]; 3],
    latency: Histogram,
    /// Time app requests waited for a worker's Python thread.
    queue: Histogram,
    in_flight: AtomicI64,
    bytes_sent: AtomicU64,
}

pub struct Metrics {
    threads: Box<[PerThread]>,
    restarts: [AtomicU64; RestartReason::ALL.len()],
    workers_serving: AtomicI64,
    workers_other: AtomicI64,
    upgrades_refused: [AtomicU64; UpgradeRefusal::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(1)
    }
}

impl Metrics {
    pub fn new(front_threads: usize) -> Self {
        Metrics {
            threads: (0..front_threads.max(1))
                .map(|_| PerThread::default())
                .collect(),
            restarts: Default::default(),
            workers_serving: AtomicI64::new(0),
            workers_other: AtomicI64::new(0),
            upgrades_refused: Default::default(),
        }
    }

    fn here(&self) -> &PerThread {
        let i = crate::shards::current().min(self.threads.len() - 1);
        &self.threads[i]
    }

    fn sum(&self, f: impl Fn(&PerThread) -> u64) -> u64 {
        self.threads.iter().map(f).sum()
    }

    /// The request counts as in flight until the guard is dropped: answered, or
    /// dropped unanswered when its client went away (a reset HTTP/2 stream).
    pub fn request_started(&self) -> InFlight<'_> {
        self.here().in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// Counted by the front thread that answered, which also started the request.
    pub fn request_finished(&self, kind: RouteKind, status: u16, elapsed: Duration, bytes: u64) {
        let t = self.here();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        t.requests[kind as usize][class].fetch_add(1, Relaxed);
        t.latency.observe(elapsed);
        t.bytes_sent.fetch_add(bytes, Relaxed);
    }

    /// An app request started on a worker `waited` after it was ready to go.
    pub fn request_queued(&self, waited: Duration) {
        self.here().queue.observe(waited);
    }

    /// A WebSocket handshake refused before Python.
    pub fn upgrade_refused(&self, why: UpgradeRefusal) {
        self.upgrades_refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn worker_restarted(&self, reason: RestartReason) {
        self.restarts[reason as usize].fetch_add(1, Relaxed);
    }

    /// Set by the supervisor after every change to the pool.
    pub fn set_workers(&self, serving: usize, other: usize) {
        self.workers_serving.store(serving as i64, Relaxed);
        self.workers_other.store(other as i64, Relaxed);
    }

    pub fn workers_serving(&self) -> usize {
        self.workers_serving.load(Relaxed).max(0) as usize
    }

    pub fn restarts(&self, reason: RestartReason) -> u64 {
        self.restarts[reason as usize].load(Relaxed)
    }

    /// The text exposition of every metric.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        render_gauges(&mut out, g);
        self.render_workers(&mut out);
        self.render_counters(&mut out, g);
        out
    }

    /// Requests by route kind and status class, in flight, and by front thread.
    fn render_requests(&self, out: &mut String) {
        *out +=
            "# HELP ferricorn_requests_total Requests answered, by route kind and status class.\n";
        *out += "# TYPE ferricorn_requests_total counter\n";
        for kind in RouteKind::ALL {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let n = self.sum(|t| t.requests[kind as usize][i].load(Relaxed));
                let _ = writeln!(
                    out,
                    "ferricorn_requests_total{{kind=\"{}\",status=\"{class}\"}} {n}",
                    kind.label()
                );
            }
        }
        gauge(
            out,
            "ferricorn_requests_in_flight",
            "Requests being answered.",
            self.threads
                .iter()
                .map(|t| t.in_flight.load(Relaxed))
                .sum::<i64>()
                .max(0),
        );
        *out +=
            "# HELP ferricorn_front_thread_requests_total Requests answered, by front thread.\n";
        *out += "# TYPE ferricorn_front_thread_requests_total counter\n";
        for (i, t) in self.threads.iter().enumerate() {
            let n: u64 = t.latency.count.load(Relaxed);
            let _ = writeln!(
                out,
                "ferricorn_front_thread_requests_total{{thread=\"{i}\"}} {n}"
            );
        }
    }

    /// The latency and queue-time histograms.
    fn render_latency(&self, out: &mut String) {
        self.render_histogram(
            out,
            "ferricorn_request_duration_seconds",
            "Time from request head to response head.",
            |t| &t.latency,
        );
        self.render_histogram(
            out,
            "ferricorn_request_queue_seconds",
            "Time an app request waited, its body read, until a worker's Python thread started it.",
            |t| &t.queue,
        );
    }

    fn render_histogram(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        of: impl Fn(&PerThread) -> &Histogram,
    ) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.sum(|t| of(t).buckets[i].load(Relaxed));
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.sum(|t| of(t).count.load(Relaxed));
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum(|t| of(t).sum_micros.load(Relaxed)) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }

    /// Worker processes by state, and their restarts by reason.
    fn render_workers(&self, out: &mut String) {
        *out += "# HELP ferricorn_workers Worker processes, by state.\n# TYPE ferricorn_workers gauge\n";
        let serving = self.workers_serving.load(Relaxed);
        let other = self.workers_other.load(Relaxed);
        let _ = writeln!(out, "ferricorn_workers{{state=\"serving\"}} {serving}");
        let _ = writeln!(out, "ferricorn_workers{{state=\"draining\"}} {other}");
        *out += "# HELP ferricorn_worker_restarts_total Workers replaced, by reason.\n";
        *out += "# TYPE ferricorn_worker_restarts_total counter\n";
        for r in RestartReason::ALL {
            let _ = writeln!(
                out,
                "ferricorn_worker_restarts_total{{reason=\"{}\"}} {}",
                r.label(),
                self.restarts(r)
            );
        }
    }

    /// The counters kept elsewhere: the error log's drops, the static cache, bytes.
    fn render_counters(&self, out: &mut String, g: &Gauges) {
        *out += "# HELP ferricorn_body_spool_refused_total Request bodies answered 503 for want of room to spool them, by cap.\n";
        *out += "# TYPE ferricorn_body_spool_refused_total counter\n";
        for (cap, n) in [
            ("files", g.spool.refused_files),
            ("bytes", g.spool.refused_bytes),
            ("disk", g.spool.refused_disk),
        ] {
            let _ = writeln!(
                out,
                "ferricorn_body_spool_refused_total{{cap=\"{cap}\"}} {n}"
            );
        }
        *out += "# HELP ferricorn_responses_cut_total Responses cut for want of room in [limits] response_memory and response_files: to make room for another (their client took nothing for longest, over 250 ms), or finding none.\n";
        *out += "# TYPE ferricorn_responses_cut_total counter\n";
        for (why, n) in [
            ("stalled", g.responses.cut_stalled),
            ("no_room", g.responses.cut_no_room),
        ] {
            let _ = writeln!(out, "ferricorn_responses_cut_total{{why=\"{why}\"}} {n}");
        }
        *out += "# HELP ferricorn_websocket_upgrades_refused_total WebSocket handshakes refused before the app, by reason.\n";
        *out += "# TYPE ferricorn_websocket_upgrades_refused_total counter\n";
        for why in UpgradeRefusal::ALL {
            let n = self.upgrades_refused[why as usize].load(Relaxed);
            let reason = why.label();
            let _ = writeln!(
                out,
                "ferricorn_websocket_upgrades_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        counter(
            out,
            "ferricorn_static_file_slot_refused_total",
            "Static files answered 503: no file slot ([limits] response_files) within body_spool_wait.",
            g.responses.static_refused,
        );
        *out += "# HELP ferricorn_pathsend_total ASGI responses whose body is a file the app named (http.response.pathsend), sent by the front, or refused (502: not the file the app saw).\n";
        *out += "# TYPE ferricorn_pathsend_total counter\n";
        let (sent, refused) = pathsend::counts();
        let _ = writeln!(out, "ferricorn_pathsend_total{{result=\"sent\"}} {sent}");
        let _ = writeln!(
            out,
            "ferricorn_pathsend_total{{result=\"refused\"}} {refused}"
        );
        counter(
            out,
            "ferricorn_error_log_dropped_total",
            "Error-log events dropped because the log's destination did not keep up.",
            super::error_log::dropped(),
        );
        counter(
            out,
            "ferricorn_static_cache_hits_total",
            "Static files answered from the open-file cache.",
            g.cache_hits,
        );
        counter(
            out,
            "ferricorn_static_cache_misses_total",
            "Static file lookups that went to the file system.",
            g.cache_misses,
        );
        counter(
            out,
            "ferricorn_response_body_bytes_total",
            "Response body bytes announced by Content-Length.",
            self.sum(|t| t.bytes_sent.load(Relaxed)),
        );
    }
}

/// The gauges the front reads at the moment `/metrics` asks.
fn render_gauges(out: &mut String, g: &Gauges) {
    gauge(
        out,
        "ferricorn_body_memory_bytes",
        "Request-body bytes held in memory (capped by [limits] body_memory).",
        g.body_memory as i64,
    );
    gauge(
        out,
        "ferricorn_body_spool_files",
        "Request bodies in temp files (capped by [limits] body_spool_files).",
        g.spool.files as i64,
    );
    gauge(
        out,
        "ferricorn_body_spool_bytes",
        "Request-body bytes in temp files (capped by [limits] body_spool_bytes).",
        g.spool.bytes as i64,
    );
    gauge(
        out,
        "ferricorn_response_memory_bytes",
        "Response bytes held in memory for clients (capped by [limits] response_memory).",
        g.responses.memory as i64,
    );
    gauge(
        out,
        "ferricorn_response_files",
        "Files held open by responses: spool files and static files streamed (capped by [limits] response_files).",
        g.responses.files as i64,
    );
    gauge(
        out,
        "ferricorn_requests_queued",
        "Requests waiting for a free worker.",
        g.queued as i64,
    );
    gauge(
        out,
        "ferricorn_connections_parked",
        "Idle HTTP/1 keep-alive connections, parked without their buffers.",
        g.parked as i64,
    );
    gauge(
        out,
        "ferricorn_websockets_open",
        "WebSocket tunnels open (handshakes under way not counted; [limits] websocket_max caps both).",
        g.websockets as i64,
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// `ferricorn_pathsend_total`: counted where the front sends an app's named file
/// (`proxy::pathsend`), read here.
pub(crate) mod pathsend {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Files sent, and files refused (not the one the worker named).
    pub(crate) static SENT: AtomicU64 = AtomicU64::new(0);
    pub(crate) static REFUSED: AtomicU64 = AtomicU64::new(0);

    /// (sent, refused).
    pub(crate) fn counts() -> (u64, u64) {
        (
            SENT.load(Ordering::Relaxed),
            REFUSED.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_by_kind_class_and_bucket() {
        let m = Metrics::default();
        let first = m.request_started();
        m.request_finished(RouteKind::App, 200, Duration::from_millis(3), 13);
        drop(first);
        let second = m.request_started();
        m.request_finished(RouteKind::Static, 404, Duration::from_millis(20), 0);
        drop(second);
        // A request dropped unanswered is no longer in flight either.
        drop(m.request_started());
        m.worker_restarted(RestartReason::Timeout);
        m.request_queued(Duration::from_micros(1500));
        let g = Gauges {
            queued: 2,
            body_memory: 4096,
            spool: SpoolUse {
                files: 3,
                bytes: 3_000_000,
                refused_files: 0,
                refused_bytes: 2,
                refused_disk: 1,
            },
            responses: ResponseUse {
                memory: 1000,
                files: 2,
                cut_stalled: 3,
                cut_no_room: 4,
                static_refused: 5,
            },
            cache_hits: 5,
            cache_misses: 1,
            parked: 7,
            websockets: 3,
        };
        let text = m.render(&g);
        assert!(text.contains("ferricorn_requests_total{kind=\"app\",status=\"2xx\"} 1"));
        assert!(text.contains("ferricorn_body_memory_bytes 4096"));
        assert!(text.contains("ferricorn_body_spool_files 3\n"));
        assert!(text.contains("ferricorn_body_spool_bytes 3000000\n"));
        assert!(text.contains("ferricorn_body_spool_refused_total{cap=\"bytes\"} 2"));
        assert!(text.contains("ferricorn_body_spool_refused_total{cap=\"disk\"} 1"));
        assert!(text.contains("ferricorn_response_memory_bytes 1000\n"));
        assert!(text.contains("ferricorn_response_files 2\n"));
        assert!(text.contains("ferricorn_responses_cut_total{why=\"stalled\"} 3"));
        assert!(text.contains("ferricorn_responses_cut_total{why=\"no_room\"} 4"));
        assert!(text.contains("ferricorn_static_file_slot_refused_total 5"));
        assert!(text.contains("ferricorn_requests_total{kind=\"static\",status=\"4xx\"} 1"));
        assert!(text.contains("ferricorn_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("ferricorn_request_duration_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("ferricorn_request_duration_seconds_count 2"));
        assert!(text.contains("ferricorn_request_queue_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("ferricorn_request_queue_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("ferricorn_request_queue_seconds_sum 0.0015"));
        assert!(text.contains("ferricorn_requests_in_flight 0"));
        assert!(text.contains("ferricorn_requests_queued 2"));
        assert!(text.contains("ferricorn_connections_parked 7"));
        assert!(text.contains("ferricorn_websockets_open 3"));
        m.upgrade_refused(UpgradeRefusal::Static);
        let text = m.render(&g);
        assert!(text.contains("ferricorn_websocket_upgrades_refused_total{reason=\"static\"} 1"));
        assert!(text.contains("ferricorn_websocket_upgrades_refused_total{reason=\"cap\"} 0"));
        assert!(text.contains("ferricorn_worker_restarts_total{reason=\"timeout\"} 1"));
        assert!(text.contains("ferricorn_static_cache_hits_total 5"));
        assert!(text.contains("ferricorn_response_body_bytes_total 13"));
        assert!(text.contains("ferricorn_front_thread_requests_total{thread=\"0\"} 2"));
    }
}
