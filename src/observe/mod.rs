//! What operators see: the lifecycle phase (read by `/readyz`), Prometheus metrics
//! (`metrics`) and the access log (`access_log`). Recording is a few atomic adds on
//! the request path; formatting happens when `/metrics` is scraped.

pub mod access_log;
pub mod error_log;
pub mod metrics;
pub mod worker_output;

pub use metrics::Metrics;

/// The master's lifecycle, published on a watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    /// TERM received: in-flight work drains, `/readyz` answers 503.
    Draining,
}

/// Which part of the server answered a request (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Static,
    App,
    /// Refused or unrouted (404 in static-only mode, errors before routing).
    Other,
}

impl RouteKind {
    pub const ALL: [RouteKind; 3] = [RouteKind::Static, RouteKind::App, RouteKind::Other];

    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Static => "static",
            RouteKind::App => "app",
            RouteKind::Other => "other",
        }
    }
}

/// Why the supervisor replaced a worker (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    Crash,
    Timeout,
    MaxRequests,
    Reload,
    MaxMemory,
    MaxLifetime,
}

impl RestartReason {
    pub const ALL: [RestartReason; 6] = [
        RestartReason::Crash,
        RestartReason::Timeout,
        RestartReason::MaxRequests,
        RestartReason::Reload,
        RestartReason::MaxMemory,
        RestartReason::MaxLifetime,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Timeout => "timeout",
            RestartReason::MaxRequests => "max-requests",
            RestartReason::Reload => "reload",
            RestartReason::MaxMemory => "max-memory",
            RestartReason::MaxLifetime => "max-lifetime",
        }
    }
}
