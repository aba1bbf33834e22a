//! What all responses held for their clients may take together, across connections:
//! memory (`[limits] response_memory`) and open files (`[limits] response_files`:
//! response spool files and static files streamed from disk). One HTTP/2 client may
//! open 100 streams per connection and never take a byte of them; per response the
//! front holds up to `response_buffer_size` and a file, so without these bounds a few
//! connections took hundreds of MiB and every descriptor.
//!
//! Past the memory budget a response goes to its spool file; a response that finds
//! no file slot either takes the room of the response whose client has taken nothing
//! for longest (over `CUT_AFTER`), which is cut as a write timeout would cut it, or
//! else is cut itself. Waiting is no option there: a worker's responses share one
//! socket, and not reading one would stall the others. A static file, opened before
//! its response starts, waits for a slot instead (then 503).

use crate::observe::metrics::ResponseUse;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A response whose client has taken nothing for this long may be cut to make room
/// for one whose client is not waiting for it either; for a response's first bytes,
/// or one whose client waits (its writer asks for the next bytes), any response
/// longer idle may be.
pub(crate) const CUT_AFTER: Duration = Duration::from_millis(250);

/// Refusals and cuts are logged once a minute at most, with their count.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// A response that holds a file, as the budget sees it: what a response short of
/// room needs is a file (past the memory budget it goes to one), and cutting it
/// frees its memory too.
pub(crate) trait Holder: Send + Sync {
    /// When its client last took something, while it holds a file.
    fn idle_since(&self) -> Option<Instant>;
    /// Ends it cut, freeing what it holds.
    fn cut(&self);
}

pub(crate) struct ResponseBudget {
    memory_limit: u64,
    memory: AtomicU64,
    files: Arc<Semaphore>,
    files_cap: usize,
    file_wait: Duration,
    /// Responses that held a file once (dead ones pruned as it grows).
    holders: Mutex<Holders>,
    /// [cut for another's room, cut for want of room, static files refused].
    counts: [AtomicU64; 3],
    logged: Mutex<(Option<Instant>, u64)>,
}

#[derive(Default)]
struct Holders {
    list: Vec<Weak<dyn Holder>>,
    /// The length at which the dead are pruned next.
    prune_at: usize,
}

/// A file slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct FileSlot(#[allow(dead_code)] OwnedSemaphorePermit);

static GLOBAL: OnceLock<ResponseBudget> = OnceLock::new();

/// Sets the process's budget from the settings, once, at start (after the open-file
/// limit is fitted). A HUP reload keeps it.
pub(crate) fn configure(memory: u64, files: usize, file_wait: Duration) {
    let _ = GLOBAL.set(ResponseBudget::new(memory, files, file_wait));
}

/// The process's budget (the defaults when `configure` was never called: unit tests).
pub(crate) fn global() -> &'static ResponseBudget {
    GLOBAL.get_or_init(|| {
        ResponseBudget::new(
            crate::defaults::RESPONSE_MEMORY,
            crate::defaults::RESPONSE_FILES,
            Duration::from_secs(crate::defaults::BODY_SPOOL_WAIT_S),
        )
    })
}

impl ResponseBudget {
    pub(crate) fn new(memory: u64, files: usize, file_wait: Duration) -> Self {
        let files_cap = files.clamp(1, Semaphore::MAX_PERMITS);
        ResponseBudget {
            memory_limit: memory,
            memory: AtomicU64::new(0),
            files: Arc::new(Semaphore::new(files_cap)),
            files_cap,
            file_wait,
            holders: Mutex::default(),
            counts: Default::default(),
            logged: Mutex::default(),
        }
    }

    pub(crate) fn usage(&self) -> ResponseUse {
        let count = |i: usize| self.counts[i].load(Ordering::Relaxed);
        ResponseUse {
            memory: self.memory.load(Ordering::Relaxed),
            files: (self.files_cap - self.files.available_permits()) as u64,
            cut_stalled: count(0),
            cut_no_room: count(1),
            static_refused: count(2),
        }
    }

    /// Takes `n` bytes if they fit in the budget.
    pub(crate) fn take_memory(&self, n: usize) -> bool {
        let n = n as u64;
        self.memory
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.memory_limit).then_some(u + n)
            })
            .is_ok()
    }

    /// Counts `n` bytes held already, whether or not they fit (a chunk on its way to
    /// the client, a spool failure's fallback).
    pub(crate) fn force_memory(&self, n: usize) {
        self.memory.fetch_add(n as u64, Ordering::AcqRel);
    }

    pub(crate) fn give_memory(&self, n: usize) {
        if n > 0 {
            self.memory.fetch_sub(n as u64, Ordering::AcqRel);
        }
    }

    /// A file slot if one is free now.
    pub(crate) fn try_file(&self) -> Option<FileSlot> {
        self.files.clone().try_acquire_owned().ok().map(FileSlot)
    }

    /// A file slot, waiting up to the file wait (FIFO); None past it (counted).
    pub(crate) async fn wait_file(&self) -> Option<FileSlot> {
        if let Some(slot) = self.try_file() {
            return Some(slot);
        }
        match tokio::time::timeout(self.file_wait, self.files.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(FileSlot(p)),
            _ => {
                self.note(
                    2,
                    "a static file found no file slot within body_spool_wait: answering 503",
                );
                None
            }
        }
    }

    /// Lets `make_room` find this response.
    pub(crate) fn register(&self, holder: Weak<dyn Holder>) {
        let mut h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        if h.list.len() >= h.prune_at {
            h.list.retain(|w| w.strong_count() > 0);
            h.prune_at = (h.list.len() * 2).max(64);
        }
        h.list.push(holder);
    }

    /// Cuts the response whose client has taken nothing for longest, if that is
    /// over `min_idle`, `asking` aside; true when one was cut. Call it holding no
    /// response's lock.
    pub(crate) fn make_room(&self, min_idle: Duration, asking: *const ()) -> bool {
        let victim = {
            let h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
            let cutoff = Instant::now().checked_sub(min_idle);
            h.list
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|r| Arc::as_ptr(r) as *const () != asking)
                .filter_map(|r| Some((r.idle_since()?, r)))
                .filter(|(since, _)| cutoff.is_some_and(|c| *since <= c))
                .min_by_key(|(since, _)| *since)
                .map(|(_, r)| r)
        };
        let Some(victim) = victim else {
            return false;
        };
        victim.cut();
        self.note(0, "responses whose clients took nothing for longest cut to make room (past [limits] response_memory and response_files)");
        true
    }

    /// A response found neither memory, nor a file, nor one to cut.
    pub(crate) fn no_room(&self) {
        self.note(1, "responses cut: no room in [limits] response_memory nor response_files, and no stalled response to take it from");
    }

    /// Counts an event and logs it, the first, then once a minute with a count.
    fn note(&self, what: usize, text: &str) {
        self.counts[what].fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        logged.1 += 1;
        if logged.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            let events = std::mem::take(&mut logged.1);
            logged.0 = Some(Instant::now());
            drop(logged);
            tracing::warn!(events, "{text} (logged once a minute at most)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stalled {
        since: Instant,
        cut: Mutex<bool>,
    }

    impl Holder for Stalled {
        fn idle_since(&self) -> Option<Instant> {
            (!*self.cut.lock().unwrap()).then_some(self.since)
        }
        fn cut(&self) {
            *self.cut.lock().unwrap() = true;
        }
    }

    #[test]
    fn memory_is_taken_within_the_limit_and_given_back() {
        let b = ResponseBudget::new(100, 1, Duration::ZERO);
        assert!(b.take_memory(60));
        assert!(!b.take_memory(60));
        b.give_memory(60);
        assert!(b.take_memory(100));
        assert_eq!(b.usage().memory, 100);
    }

    #[test]
    fn file_slots_are_capped_and_given_back() {
        let b = ResponseBudget::new(100, 2, Duration::ZERO);
        let one = b.try_file().unwrap();
        let _two = b.try_file().unwrap();
        assert!(b.try_file().is_none());
        assert_eq!(b.usage().files, 2);
        drop(one);
        assert!(b.try_file().is_some());
    }

    #[test]
    fn the_longest_stalled_response_is_cut_and_a_fresh_one_never() {
        let b = ResponseBudget::new(100, 1, Duration::ZERO);
        let now = Instant::now();
        let fresh: Arc<Stalled> = Arc::new(Stalled {
            since: now,
            cut: Mutex::new(false),
        });
        let old = Arc::new(Stalled {
            since: now - Duration::from_secs(5),
            cut: Mutex::new(false),
        });
        let older = Arc::new(Stalled {
            since: now - Duration::from_secs(9),
            cut: Mutex::new(false),
        });
        for h in [&fresh, &old, &older] {
            let h: Arc<dyn Holder> = h.clone();
            b.register(Arc::downgrade(&h));
        }
        assert!(b.make_room(CUT_AFTER, std::ptr::null()));
        assert!(*older.cut.lock().unwrap());
        assert!(b.make_room(CUT_AFTER, std::ptr::null()));
        assert!(*old.cut.lock().unwrap());
        assert!(
            !b.make_room(CUT_AFTER, std::ptr::null()),
            "only a fresh one is left"
        );
        assert!(!*fresh.cut.lock().unwrap());
        assert_eq!(b.usage().cut_stalled, 2);
        // For a response's first bytes any idle one goes, never the one asking.
        let fresh_one: Arc<dyn Holder> = fresh.clone();
        let asking = Arc::as_ptr(&fresh_one) as *const ();
        assert!(!b.make_room(Duration::ZERO, asking), "never the one asking");
        assert!(b.make_room(Duration::ZERO, std::ptr::null()));
        assert!(*fresh.cut.lock().unwrap());
    }
}
