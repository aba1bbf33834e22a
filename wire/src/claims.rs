//! The claim table: one shared page per worker through which the front can take
//! back a request that the worker has received but not started.
//!
//! Why: with one Python thread per worker, a worker that gets its next request only
//! when the last one ended sleeps and wakes once per request (a round trip through
//! the kernel each time). The dispatcher therefore sends a few requests ahead
//! (`[workers] look_ahead`), which the worker finds already in its socket buffer.
//! A request sent ahead must not get stuck behind a slow one while another worker
//! could serve it, so the front can revoke it, and the two processes must agree,
//! without a message round trip, on whether the worker started it first. Each
//! stream has a slot (`stream % SLOTS`): the front writes the stream id there before
//! sending the head; the worker swaps it to `STARTED` before running the request;
//! the front revokes by swapping it to `REVOKED`. Exactly one swap wins.
//!
//! A slot is reused only after `SLOTS` later streams, and the front never has that
//! many requests outstanding on one worker (`MAX_OUTSTANDING`), so two live requests
//! never share a slot. Stream ids `STARTED` (0) and `REVOKED` (u32::MAX) are never
//! used (`next_stream_id`).
//!
//! Beside the slots, the worker writes when it started each stream (monotonic
//! nanoseconds, `monotonic_ns`, one clock for all processes), so the front knows
//! exactly how long a request waited for a Python thread, look-ahead included: the
//! queue time of `X-Request-Start`-reading APMs and `ferricorn_request_queue_seconds`.
//!
//! The table is a file in the runtime directory (mode 0700, beside the worker's
//! socket), mapped shared by both processes. Its blocks are allocated before it is
//! mapped, so a full disk is an error at worker start, never a SIGBUS later.

#![allow(unsafe_code)]

use memmap2::MmapMut;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots per worker: one page of `u32`s (and two of start times).
pub const SLOTS: usize = 1024;
/// Most requests the front may have outstanding on one worker (running or sent
/// ahead): below `SLOTS`, so live streams never collide.
pub const MAX_OUTSTANDING: usize = SLOTS - 1;
const STARTED: u32 = 0;
const REVOKED: u32 = u32::MAX;
const SLOTS_LEN: usize = SLOTS * std::mem::size_of::<u32>();
const LEN: usize = SLOTS_LEN + SLOTS * std::mem::size_of::<u64>();

pub struct Claims {
    map: MmapMut,
}

impl Claims {
    /// The front's side: creates the table file (it must not exist) and maps it.
    pub fn create(path: &Path) -> io::Result<Claims> {
        // Only our own processes may map it: the directory is 0700, the file 0600.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // Blocks allocated now, not on first store: a sparse page on a full disk
        // would fault (SIGBUS) in whichever process first writes a slot.
        nix::fcntl::posix_fallocate(&file, 0, LEN as libc::off_t).map_err(io::Error::from)?;
        Claims::map(&file)
    }

    /// The worker's side: maps the table the front created.
    pub fn open(path: &Path) -> io::Result<Claims> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() != LEN as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "claim table has the wrong size",
            ));
        }
        Claims::map(&file)
    }

    fn map(file: &std::fs::File) -> io::Result<Claims> {
        // SAFETY: the file is ours (created in the 0700 runtime directory) and keeps
        // its length; the only other process mapping it is the peer, which touches it
        // only through the same atomics.
        let map = unsafe { MmapMut::map_mut(file)? };
        Ok(Claims { map })
    }

    fn slot(&self, stream: u32) -> &AtomicU32 {
        let slots = self.map.as_ptr() as *const AtomicU32;
        // SAFETY: the mapping is LEN bytes, page-aligned (so aligned for u32), and the
        // index is below SLOTS. Shared memory is only accessed atomically.
        unsafe { &*slots.add(stream as usize % SLOTS) }
    }

    fn started(&self, stream: u32) -> &AtomicU64 {
        // SAFETY: the times follow the slots, SLOTS_LEN (4096) bytes into the page-
        // aligned mapping of LEN bytes, so aligned for u64; the index is below SLOTS.
        unsafe {
            let times = self.map.as_ptr().add(SLOTS_LEN) as *const AtomicU64;
            &*times.add(stream as usize % SLOTS)
        }
    }

    /// Front: this stream is about to be sent; the worker may start it.
    pub fn offer(&self, stream: u32) {
        self.slot(stream).store(stream, Ordering::Release);
    }

    /// Front: takes the stream back if the worker has not started it.
    pub fn revoke(&self, stream: u32) -> bool {
        self.swap_from(stream, REVOKED)
    }

    /// Worker: marks the stream started, unless the front revoked it first, and
    /// notes when. The time is written before the worker answers, so the front
    /// reads it once the answer arrives.
    pub fn claim(&self, stream: u32) -> bool {
        let claimed = self.swap_from(stream, STARTED);
        if claimed {
            self.started(stream)
                .store(monotonic_ns(), Ordering::Release);
        }
        claimed
    }

    /// Front: when the worker started `stream` (`monotonic_ns`), read once its
    /// answer came; `None` if it never claimed it.
    pub fn started_at(&self, stream: u32) -> Option<u64> {
        if self.slot(stream).load(Ordering::Acquire) != STARTED {
            return None;
        }
        Some(self.started(stream).load(Ordering::Acquire))
    }

    fn swap_from(&self, stream: u32, to: u32) -> bool {
        self.slot(stream)
            .compare_exchange(stream, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in the front and its workers.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there on Linux");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The stream id after `id`, skipping the two values the table reserves.
pub fn next_stream_id(id: u32) -> u32 {
    match id.wrapping_add(1) {
        STARTED | REVOKED => 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pair() -> (tempfile::TempDir, Claims, Claims) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.claims");
        let front = Claims::create(&path).unwrap();
        let worker = Claims::open(&path).unwrap();
        (dir, front, worker)
    }

    #[test]
    fn the_worker_claims_an_offered_stream_once() {
        let (_d, front, worker) = pair();
        front.offer(7);
        assert!(worker.claim(7));
        assert!(!worker.claim(7));
        assert!(!front.revoke(7), "a started stream cannot be revoked");
    }

    #[test]
    fn the_front_reads_when_the_worker_started_a_stream() {
        let (_d, front, worker) = pair();
        front.offer(9);
        assert_eq!(front.started_at(9), None, "not started yet");
        let before = monotonic_ns();
        assert!(worker.claim(9));
        let at = front.started_at(9).unwrap();
        assert!(before <= at && at <= monotonic_ns(), "{before} {at}");
    }

    #[test]
    fn a_revoked_stream_is_not_started() {
        let (_d, front, worker) = pair();
        front.offer(8);
        assert!(front.revoke(8));
        assert!(!worker.claim(8));
    }

    #[test]
    fn a_reused_slot_does_not_confuse_the_old_stream() {
        let (_d, front, worker) = pair();
        let old = 5;
        let new = old + SLOTS as u32;
        front.offer(old);
        assert!(front.revoke(old));
        front.offer(new);
        assert!(!worker.claim(old), "the revoked stream stays revoked");
        assert!(worker.claim(new));
    }

    #[test]
    fn create_refuses_an_existing_file_and_open_checks_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.claims");
        Claims::create(&path).unwrap();
        assert!(Claims::create(&path).is_err());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let short = dir.path().join("short");
        std::fs::write(&short, b"abc").unwrap();
        assert!(Claims::open(&short).is_err());
    }

    #[test]
    fn stream_ids_skip_the_reserved_values() {
        assert_eq!(next_stream_id(1), 2);
        assert_eq!(next_stream_id(u32::MAX - 1), 1);
        assert_eq!(next_stream_id(u32::MAX), 1);
    }
}
