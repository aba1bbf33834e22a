//! The open-file limit (RLIMIT_NOFILE). Every connection, spooled request body,
//! static file and worker socket is a descriptor; systemd's default soft limit is
//! 1024, far below `max_connections`. At start the soft limit is raised to the hard
//! one (as nginx's `worker_rlimit_nofile` lets operators do); when even that is below
//! what the settings need, one warning says so with the numbers, and connections are
//! kept to half the descriptors, spooled bodies to a quarter, files held by
//! responses (`response_files`) to an eighth and WebSockets (`websocket_max`) to a
//! sixteenth, so none can starve the rest (worker sockets, a replacement worker's
//! pipes).

use crate::config::Settings;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors the master holds per worker: its socket, its stdout and stderr pipes,
/// and a spare (a zygote's, a replacement booting beside it).
const PER_WORKER: u64 = 4;
/// Listeners, the admin socket, log files, the runtime directory, the signal pipes.
const RESERVE: u64 = 64;
/// Descriptors the master holds per WebSocket beyond its client's connection (one
/// of `max_connections`): its end of the socketpair. The worker's end is closed once
/// written to the worker (a moment, for at most one handshake per leased thread),
/// and a handshake waiting for a thread holds none (`proxy::upgrade` makes the pair
/// once a thread is leased).
const PER_WEBSOCKET: u64 = 1;

/// What the settings need, and what is done when the limit is below it.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    need: u64,
    /// The caps that fit (unchanged when the limit suffices).
    max_connections: usize,
    spool_files: usize,
    response_files: usize,
    websocket_max: usize,
    short: bool,
}

/// What the settings ask for, in descriptors.
#[derive(Debug, Clone, Copy)]
struct Asked {
    max_connections: usize,
    spool_files: usize,
    response_files: usize,
    websocket_max: usize,
    workers: usize,
}

fn plan(limit: u64, a: Asked) -> Plan {
    let Asked {
        max_connections,
        spool_files,
        response_files,
        websocket_max,
        workers,
    } = a;
    let need = (max_connections as u64)
        .saturating_add(spool_files as u64)
        .saturating_add(response_files as u64)
        .saturating_add((websocket_max as u64).saturating_mul(PER_WEBSOCKET))
        .saturating_add((workers as u64).saturating_mul(PER_WORKER))
        .saturating_add(RESERVE);
    if limit >= need {
        return Plan {
            need,
            max_connections,
            spool_files,
            response_files,
            websocket_max,
            short: false,
        };
    }
    let share = |d: u64| usize::try_from(limit / d).unwrap_or(usize::MAX).max(1);
    Plan {
        need,
        max_connections: max_connections.min(share(2)),
        spool_files: spool_files.min(share(4)),
        response_files: response_files.min(share(8)),
        websocket_max: websocket_max.min(share(16 * PER_WEBSOCKET)),
        short: true,
    }
}

/// Raises the soft limit to the hard one; warns (once) and lowers `max_connections`
/// and `body_spool_files` when the result is below what the settings need.
pub(super) fn fit(settings: &mut Settings) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return;
        }
    };
    // Linux refuses an infinite RLIMIT_NOFILE: the most it allows is fs.nr_open.
    let target = if hard == RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1024 * 1024)
    } else {
        hard
    };
    let limit = if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => target,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit (RLIMIT_NOFILE)");
                soft
            }
        }
    } else {
        soft
    };
    let l = &mut settings.limits;
    let p = plan(
        limit,
        Asked {
            max_connections: l.max_connections,
            spool_files: l.body_spool_files,
            response_files: l.response_files,
            websocket_max: l.websocket_max,
            workers: settings.workers.count,
        },
    );
    if p.short {
        tracing::warn!(
            "open-file limit (RLIMIT_NOFILE) is {limit} (soft was {soft}, hard {hard}), below the {} that max_connections ({}) + body_spool_files ({}) + response_files ({}) + websocket_max ({}) + {} workers need: raise it (systemd LimitNOFILE=, ulimit -n, docker --ulimit nofile=); until then at most {} connections are served and {} request bodies spooled at once, responses hold at most {} files and at most {} WebSockets are open",
            p.need,
            l.max_connections,
            l.body_spool_files,
            l.response_files,
            l.websocket_max,
            settings.workers.count,
            p.max_connections,
            p.spool_files,
            p.response_files,
            p.websocket_max,
        );
        l.max_connections = p.max_connections;
        l.body_spool_files = p.spool_files;
        l.response_files = p.response_files;
        l.websocket_max = p.websocket_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_descriptors_change_nothing() {
        let p = plan(1 << 20, asked(10_000, 1024, 8));
        assert_eq!(
            p,
            Plan {
                need: 10_000 + 1024 + 1024 + 1000 + 32 + RESERVE,
                max_connections: 10_000,
                spool_files: 1024,
                response_files: 1024,
                websocket_max: 1000,
                short: false
            }
        );
    }

    #[test]
    fn too_few_keep_connections_to_half_spooled_bodies_to_a_quarter_response_files_to_an_eighth() {
        let p = plan(400, asked(10_000, 1024, 2));
        assert!(p.short);
        assert_eq!(
            (p.max_connections, p.spool_files, p.response_files),
            (200, 100, 50)
        );
        // WebSockets: one descriptor each, a sixteenth of the limit.
        assert_eq!(p.websocket_max, 25);
        // WebSockets alone can make the limit short.
        let mut ws = asked(100, 10, 1);
        ws.websocket_max = 1000;
        assert!(plan(1024, ws).short);
        assert_eq!(plan(1024, ws).websocket_max, 64);
        // A cap already below a quarter stays.
        assert_eq!(plan(400, asked(10_000, 8, 2)).spool_files, 8);
        assert_eq!(plan(2, asked(10_000, 8, 2)).spool_files, 1);
        assert_eq!(plan(2, asked(10_000, 8, 2)).response_files, 1);
    }

    fn asked(max_connections: usize, files: usize, workers: usize) -> Asked {
        Asked {
            max_connections,
            spool_files: files,
            response_files: files,
            websocket_max: 1000,
            workers,
        }
    }
}
