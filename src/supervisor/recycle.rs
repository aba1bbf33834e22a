//! Recycling by memory and age (`[workers] max_memory`, `max_lifetime`): once a
//! second the supervisor measures each serving worker against both. A worker over
//! either is replaced like one that reached max-requests: its successor starts at
//! once, and it drains (finishing what it has in flight) only when the successor is
//! ready, so no request waits on a missing worker.
//!
//! A worker's RSS is also taken as it becomes ready, before it serves: one over
//! `max_memory` already is never replaced for memory (its successor would be as
//! big, and the pool would be replaced every second), and the limit's being below a
//! fresh worker is said once, with both figures.

use super::policy::{self, Recycle};
use super::{process, Supervisor, WorkerState};
use crate::observe::RestartReason;
use std::time::{Duration, Instant};

/// How often RSS and ages are checked: `/proc` reads, cheap at this rate.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

const MIB: f64 = 1024.0 * 1024.0;

impl Supervisor {
    /// Replaces every serving worker over its memory or age limit (at most once a
    /// `CHECK_EVERY`).
    pub(super) fn recycle_if_due(&mut self, now: Instant) {
        if self.spec.max_memory == 0 && self.spec.max_lifetime.is_none() {
            return;
        }
        if now.duration_since(self.recycle_checked) < CHECK_EVERY {
            return;
        }
        self.recycle_checked = now;
        let due: Vec<(u32, Recycle)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Serving && !w.old)
            .filter_map(|(&pid, w)| {
                let rss = (self.spec.max_memory > 0)
                    .then(|| process::rss_bytes(pid))
                    .flatten();
                let age = now.duration_since(w.born);
                policy::recycle(rss, w.born_rss, self.spec.max_memory, age, w.lifetime)
                    .map(|r| (pid, r))
            })
            .collect();
        for (pid, why) in due {
            self.log_recycle(pid, why, now);
            let reason = match why {
                Recycle::Memory { .. } => RestartReason::MaxMemory,
                Recycle::Lifetime => RestartReason::MaxLifetime,
            };
            self.replace(pid, reason);
        }
    }

    /// A worker's RSS as it becomes ready, before it serves (with `max_memory`
    /// set); the first one over the limit since start or reload is warned about.
    pub(super) fn born_rss(&mut self, pid: u32) -> Option<u64> {
        let max = self.spec.max_memory;
        if max == 0 {
            return None;
        }
        let rss = process::rss_bytes(pid)?;
        if rss > max && !self.max_memory_warned {
            self.max_memory_warned = true;
            tracing::warn!(
                pid,
                rss_mib = %format!("{:.1}", rss as f64 / MIB),
                max_memory_mib = %format!("{:.1}", max as f64 / MIB),
                "max_memory is below a fresh worker's memory: such workers are not \
                 replaced for memory (it would be every second); raise max_memory above rss_mib"
            );
        }
        Some(rss)
    }

    fn log_recycle(&self, pid: u32, why: Recycle, now: Instant) {
        match why {
            Recycle::Memory { rss } => tracing::warn!(
                pid,
                rss_mib = %format!("{:.1}", rss as f64 / MIB),
                max_memory_mib = %format!("{:.1}", self.spec.max_memory as f64 / MIB),
                "worker over max_memory; replacing it"
            ),
            Recycle::Lifetime => {
                let lived = self.workers.get(&pid).map(|w| now.duration_since(w.born));
                tracing::info!(
                    pid,
                    lived_s = lived.map_or(0, |d| d.as_secs()),
                    max_lifetime_s = self.spec.max_lifetime.map_or(0, |d| d.as_secs()),
                    "worker reached max_lifetime; replacing it"
                )
            }
        }
    }
}
