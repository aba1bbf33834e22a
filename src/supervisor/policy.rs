//! Pure supervisor decisions, no I/O: restart back-off and per-worker request quotas.

use std::time::Duration;

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
    // splitmix64: a well-mixed value from a small seed, no RNG crate needed.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    max_requests + if jitter == 0 { 0 } else { z % (jitter + 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
