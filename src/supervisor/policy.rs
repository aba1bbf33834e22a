//! Pure supervisor decisions, no I/O: restart back-off, per-worker request quotas
//! and lifetimes, when a worker is recycled, and what a timeout costs a worker.

use std::time::Duration;

/// When, after a drain began, an ASGI worker's streams still open are ended
/// (`supervisor::drain`): `graceful_timeout` minus min(5 s, a fifth of it), which
/// leaves the worker that long for its tasks to see `http.disconnect`, be cancelled
/// if they ignore it, and for the lifespan shutdown.
pub fn drain_cut(graceful: Duration) -> Duration {
    graceful.saturating_sub((graceful / 5).min(Duration::from_secs(5)))
}

/// Delay before starting a worker after `failures` start failures in a row:
/// 0, then 100 ms doubling up to 30 s.
pub fn restart_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ms = 100u64.saturating_mul(1u64 << (failures - 1).min(20));
    Duration::from_millis(ms.min(30_000))
}

/// `--max-requests` plus a jitter in 0..=jitter so workers do not all retire at once.
/// `seed` is any per-worker number (pid, counter); 0 max_requests means no quota.
pub fn request_quota(max_requests: u64, jitter: u64, seed: u64) -> u64 {
    if max_requests == 0 {
        return 0;
    }
    max_requests
        + if jitter == 0 {
            0
        } else {
            mix(seed) % (jitter + 1)
        }
}

/// `--max-lifetime` plus up to a tenth more, so workers started together (at boot,
/// by a reload) do not all retire together.
pub fn lifetime(max_lifetime: Option<Duration>, seed: u64) -> Option<Duration> {
    let max = max_lifetime?;
    let tenth = (max.as_millis() / 10) as u64;
    Some(max + Duration::from_millis(mix(seed) % (tenth + 1)))
}

/// Why a serving worker should be replaced now, if it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recycle {
    /// Its RSS passed `max_memory`.
    Memory { rss: u64 },
    /// It lived past its lifetime.
    Lifetime,
}

/// `rss` (bytes, when known) against `max_memory` (0: off) first, then `age`
/// against `lifetime`. A worker that was over `max_memory` already when it became
/// ready (`born_rss`) is not replaced for memory: its successor would be as big and
/// be replaced in turn at the next check, for ever.
pub fn recycle(
    rss: Option<u64>,
    born_rss: Option<u64>,
    max_memory: u64,
    age: Duration,
    lifetime: Option<Duration>,
) -> Option<Recycle> {
    let born_over = born_rss.is_some_and(|b| b > max_memory);
    match rss {
        Some(rss) if max_memory > 0 && rss > max_memory && !born_over => {
            Some(Recycle::Memory { rss })
        }
        _ if lifetime.is_some_and(|l| age >= l) => Some(Recycle::Lifetime),
        _ => None,
    }
}

/// What becomes of a worker once its requests past their timeout got 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTimeout {
    /// Killed now (after the stack dump): nothing else of its is running.
    Kill,
    /// Condemned: sent nothing more and replaced at once, but killed only when its
    /// other running requests have ended or reached their own timeouts. A hung
    /// thread costs only its own request, as a slow thread does in gunicorn's
    /// gthread worker.
    Condemn,
}

/// Whether a request past its timeout is cancelled in its worker (which serves
/// on) rather than costing the worker: only an ASGI worker's, whose requests are
/// tasks on an event loop, and not once the worker is condemned (its loop did not
/// end a cancelled request: it is blocked).
pub fn cancels(interface: crate::config::Interface, condemned: bool) -> bool {
    interface == crate::config::Interface::Asgi && !condemned
}

/// Whether an ASGI worker is replaced because tasks that ignored their cancel
/// (`detached`) hold its `slots` (each keeps its slot until it ends): once they
/// hold half, its capacity goes to an app's bug; a fresh worker takes over, and
/// the old one's drain lets them go.
pub fn recycle_detached(detached: usize, slots: usize) -> bool {
    detached > 0 && detached.saturating_mul(2) >= slots
}

/// `threads` of the worker, `others_running`: its requests still running once the
/// timed-out ones are answered and the unstarted ones taken back. A single-thread
/// worker has nothing else to finish, and its one thread is stuck: it is killed.
/// So is one that would make more than `max_condemned` condemned workers at once
/// (its other requests then get 504): each lingers beside its replacement, and a
/// client that keeps hanging requests must not grow the processes past that.
pub fn after_timeout(
    threads: usize,
    others_running: usize,
    condemned: usize,
    max_condemned: usize,
) -> AfterTimeout {
    if threads > 1 && others_running > 0 && condemned < max_condemned {
        AfterTimeout::Condemn
    } else {
        AfterTimeout::Kill
    }
}

/// After a reload was called off, whether a serving worker is to be replaced: one
/// the called-off reload(s) started (`generation` past `settled`, the last one of
/// the settings put back) runs settings given up; one of those settings that the
/// reload had set to be replaced (`marked`) serves on; any other keeps its fate
/// (`old`: it was being recycled already).
pub fn replaced_after_failed_reload(
    generation: u64,
    settled: u64,
    marked: bool,
    old: bool,
) -> bool {
    generation > settled || (old && !marked)
}

/// How long a condemned worker may keep running its other requests, from its
/// condemnation: at least `grace` (`--graceful-timeout`, what a stop gives them),
/// longer if one's own limit (`limits`: route or `--timeout`) is. Bounded, so a
/// response that streams for ever cannot keep a worker with a hung thread alive
/// for ever; at the end, what still runs gets 504 (or is cut) and it is killed.
pub fn condemned_grace(limits: &[Option<Duration>], grace: Duration) -> Duration {
    limits.iter().flatten().copied().fold(grace, Duration::max)
}

/// splitmix64: a well-mixed value from a small seed, no RNG crate needed.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_replaces_only_the_workers_it_started() {
        // Generation 3 settled; 4 and 5 were reloads, called off.
        assert!(!replaced_after_failed_reload(3, 3, true, true));
        assert!(!replaced_after_failed_reload(1, 3, true, true));
        assert!(replaced_after_failed_reload(4, 3, false, true));
        assert!(replaced_after_failed_reload(5, 3, false, false));
        // Being recycled before the reload: its successor is still wanted.
        assert!(replaced_after_failed_reload(3, 3, false, true));
        assert!(!replaced_after_failed_reload(3, 3, false, false));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(2), Duration::from_millis(200));
        assert_eq!(restart_delay(5), Duration::from_millis(1600));
        assert_eq!(restart_delay(40), Duration::from_secs(30));
    }

    #[test]
    fn quota_stays_within_jitter() {
        assert_eq!(request_quota(0, 10, 3), 0);
        assert_eq!(request_quota(100, 0, 3), 100);
        let quotas: Vec<u64> = (0..200).map(|s| request_quota(100, 10, s)).collect();
        assert!(quotas.iter().all(|q| (100..=110).contains(q)));
        assert!(
            quotas.iter().any(|q| *q != quotas[0]),
            "jitter never varies"
        );
    }

    #[test]
    fn lifetimes_get_up_to_a_tenth_more() {
        assert_eq!(lifetime(None, 1), None);
        let max = Duration::from_secs(100);
        let all: Vec<Duration> = (0..200).filter_map(|s| lifetime(Some(max), s)).collect();
        assert!(all.iter().all(|l| (max..=max + max / 10).contains(l)));
        assert!(all.iter().any(|l| *l != all[0]), "jitter never varies");
    }

    #[test]
    fn memory_is_checked_before_age() {
        let mib = 1 << 20;
        let (young, old) = (Duration::from_secs(1), Duration::from_secs(9));
        let life = Some(Duration::from_secs(5));
        let born = Some(50 * mib);
        assert_eq!(
            recycle(Some(300 * mib), born, 0, young, None),
            None,
            "0: off"
        );
        assert_eq!(recycle(Some(100 * mib), born, 200 * mib, young, life), None);
        assert_eq!(
            recycle(Some(300 * mib), born, 200 * mib, old, life),
            Some(Recycle::Memory { rss: 300 * mib })
        );
        assert_eq!(
            recycle(None, born, 200 * mib, old, life),
            Some(Recycle::Lifetime)
        );
        assert_eq!(recycle(Some(mib), born, 200 * mib, old, None), None);
    }

    #[test]
    fn a_timeout_kills_only_a_worker_with_nothing_else_running() {
        assert_eq!(after_timeout(1, 0, 0, 4), AfterTimeout::Kill);
        assert_eq!(
            after_timeout(1, 1, 0, 4),
            AfterTimeout::Kill,
            "one thread: it is the stuck one"
        );
        assert_eq!(after_timeout(2, 0, 0, 4), AfterTimeout::Kill);
        assert_eq!(after_timeout(2, 1, 0, 4), AfterTimeout::Condemn);
        assert_eq!(after_timeout(8, 7, 3, 4), AfterTimeout::Condemn);
        assert_eq!(
            after_timeout(8, 7, 4, 4),
            AfterTimeout::Kill,
            "no more condemned workers than the pool"
        );
    }

    #[test]
    fn only_a_serving_asgi_worker_cancels_a_request_past_its_timeout() {
        use crate::config::Interface;
        assert!(cancels(Interface::Asgi, false));
        assert!(!cancels(Interface::Asgi, true), "its loop is blocked");
        assert!(
            !cancels(Interface::Wsgi, false),
            "a thread cannot be cancelled"
        );
    }

    #[test]
    fn a_condemned_worker_gets_the_graceful_timeout_or_a_longer_own_limit() {
        let s = Duration::from_secs;
        assert_eq!(condemned_grace(&[], s(30)), s(30));
        assert_eq!(condemned_grace(&[None, Some(s(2))], s(30)), s(30));
        assert_eq!(
            condemned_grace(&[Some(s(600)), None], s(30)),
            s(600),
            "a route's long limit"
        );
    }

    #[test]
    fn an_asgi_drain_ends_open_streams_before_its_deadline() {
        let s = Duration::from_secs;
        assert_eq!(drain_cut(s(30)), s(25), "5 s before, at most");
        assert_eq!(
            drain_cut(s(6)),
            Duration::from_millis(4800),
            "a fifth before"
        );
        assert_eq!(drain_cut(s(100)), s(95));
        assert_eq!(drain_cut(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn detached_tasks_holding_half_the_slots_recycle_the_worker() {
        assert!(!recycle_detached(0, 1));
        assert!(recycle_detached(1, 1));
        assert!(recycle_detached(1, 2));
        assert!(!recycle_detached(1, 3));
        assert!(recycle_detached(2, 3));
        assert!(!recycle_detached(499, 1000));
        assert!(recycle_detached(500, 1000));
    }

    #[test]
    fn a_worker_born_over_max_memory_is_not_replaced_for_memory() {
        let mib = 1 << 20;
        let young = Duration::from_secs(1);
        let fresh = Some(30 * mib);
        assert_eq!(recycle(Some(300 * mib), fresh, 10 * mib, young, None), None);
        assert_eq!(
            recycle(Some(300 * mib), fresh, 10 * mib, young, Some(young)),
            Some(Recycle::Lifetime),
            "its age still counts"
        );
        assert_eq!(
            recycle(Some(300 * mib), None, 10 * mib, young, None),
            Some(Recycle::Memory { rss: 300 * mib }),
            "unknown birth: the limit applies"
        );
    }
}
