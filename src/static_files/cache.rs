//! The open-file cache, like nginx's `open_file_cache`: what a path resolved to
//! (a file with its metadata, and its bytes when small; a directory; nothing), with the
//! response headers that depend only on the file precomputed. Keyed by the path
//! ServeDir asks for (root joined with the request path, plus `.br`/`.gz` for
//! siblings), so the fast path in `mod.rs` and the `Backend` share entries.
//!
//! An entry is trusted for `revalidate` after it was last checked; after that the
//! caller re-stats the file (`backend.rs`) and either refreshes the entry or replaces
//! it. Bounded by total cached bytes and by entries; the least recently used entry
//! goes first (a linear scan on eviction: simple, and only paid when full).

use bytes::Bytes;
use http::HeaderValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::headers;
use crate::config::FileCache;

/// What ServeDir needs to know about a file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub is_dir: bool,
    pub len: u64,
    pub modified: SystemTime,
}

impl tower_http::services::fs::Metadata for Meta {
    fn is_dir(&self) -> bool {
        self.is_dir
    }
    fn modified(&self) -> std::io::Result<SystemTime> {
        Ok(self.modified)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

impl From<&std::fs::Metadata> for Meta {
    fn from(m: &std::fs::Metadata) -> Self {
        Meta {
            is_dir: m.is_dir(),
            len: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// A resolved, contained file or directory.
#[derive(Debug)]
pub struct Resolved {
    pub meta: Meta,
    /// The canonical path (symlinks resolved, checked to be inside the root): the
    /// one that gets opened.
    pub real_path: PathBuf,
    /// The whole file when it is small enough to keep; `None` for directories and
    /// large files, which are streamed from disk.
    pub body: Option<Bytes>,
    pub etag: Option<HeaderValue>,
    pub last_modified: HeaderValue,
}

impl Resolved {
    pub fn new(meta: Meta, real_path: PathBuf, body: Option<Bytes>) -> Self {
        Resolved {
            etag: headers::etag(meta.len, meta.modified),
            last_modified: headers::last_modified(meta.modified),
            meta,
            real_path,
            body,
        }
    }
}

/// What a path was found to be when last checked.
#[derive(Clone, Debug)]
pub enum Entry {
    Found(Arc<Resolved>),
    /// Not there, not a regular file or directory, outside the root, or a dotfile:
    /// remembered so repeated 404s and missing `.br`/`.gz` siblings cost no syscall.
    Missing,
}

struct Slot {
    entry: Entry,
    checked: Instant,
    used: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<PathBuf, Slot>,
    bytes: u64,
    tick: u64,
}

pub struct OpenFileCache {
    settings: FileCache,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl OpenFileCache {
    /// `dev_mode` makes every entry stale at once, so each request re-stats.
    pub fn new(settings: &FileCache, dev_mode: bool) -> Self {
        let mut settings = settings.clone();
        if dev_mode {
            settings.revalidate = Duration::ZERO;
        }
        OpenFileCache {
            settings,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Files up to this size are kept in memory.
    pub fn max_file_size(&self) -> u64 {
        self.settings.max_file_size.min(self.settings.max_bytes)
    }

    /// The entry if it was checked within `revalidate`; counts a hit.
    pub fn fresh(&self, path: &Path) -> Option<Entry> {
        let entry = self.lookup(path, true)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }

    /// Like `fresh` but without counting: the fast path peeks at several paths for
    /// one response and counts once with `record_hit`.
    pub fn peek(&self, path: &Path) -> Option<Entry> {
        self.lookup(path, true)
    }

    /// The entry however old, for revalidation (the file may be unchanged).
    pub fn stale(&self, path: &Path) -> Option<Entry> {
        self.lookup(path, false)
    }

    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn lookup(&self, path: &Path, only_fresh: bool) -> Option<Entry> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.slots.get_mut(path)?;
        if only_fresh && slot.checked.elapsed() >= self.settings.revalidate {
            return None;
        }
        slot.used = tick;
        Some(slot.entry.clone())
    }

    /// Stores what `path` was just found to be, evicting least recently used entries
    /// until the bounds hold again.
    pub fn insert(&self, path: PathBuf, entry: Entry) {
        if self.settings.max_entries == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let slot = Slot {
            entry,
            checked: Instant::now(),
            used: inner.tick,
        };
        let added = body_len(&slot.entry);
        if let Some(old) = inner.slots.insert(path, slot) {
            inner.bytes -= body_len(&old.entry);
        }
        inner.bytes += added;
        while inner.slots.len() > self.settings.max_entries || inner.bytes > self.settings.max_bytes
        {
            if !evict_lru(&mut inner) {
                break;
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> (usize, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.slots.len(), inner.bytes)
    }
}

fn body_len(entry: &Entry) -> u64 {
    match entry {
        Entry::Found(r) => r.body.as_ref().map_or(0, |b| b.len() as u64),
        Entry::Missing => 0,
    }
}

fn evict_lru(inner: &mut Inner) -> bool {
    let Some(victim) = inner
        .slots
        .iter()
        .min_by_key(|(_, slot)| slot.used)
        .map(|(path, _)| path.clone())
    else {
        return false;
    };
    if let Some(slot) = inner.slots.remove(&victim) {
        inner.bytes -= body_len(&slot.entry);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_bytes: u64, max_entries: usize) -> FileCache {
        FileCache {
            max_bytes,
            max_entries,
            max_file_size: 100,
            revalidate: Duration::from_secs(60),
        }
    }

    fn file(n: usize) -> Entry {
        let meta = Meta {
            is_dir: false,
            len: n as u64,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        };
        Entry::Found(Arc::new(Resolved::new(
            meta,
            PathBuf::from("/x"),
            Some(Bytes::from(vec![b'x'; n])),
        )))
    }

    #[test]
    fn bounded_by_entries_lru_first() {
        let c = OpenFileCache::new(&settings(1 << 20, 2), false);
        c.insert("/a".into(), file(1));
        c.insert("/b".into(), file(1));
        assert!(c.fresh(Path::new("/a")).is_some()); // /a is now the most recent
        c.insert("/c".into(), file(1));
        assert!(c.peek(Path::new("/b")).is_none(), "LRU entry evicted");
        assert!(c.peek(Path::new("/a")).is_some());
        assert!(c.peek(Path::new("/c")).is_some());
        assert_eq!(c.len(), (2, 2));
    }

    #[test]
    fn bounded_by_bytes() {
        let c = OpenFileCache::new(&settings(100, 100), false);
        c.insert("/a".into(), file(60));
        c.insert("/b".into(), file(60));
        assert_eq!(c.len(), (1, 60));
        c.insert("/b".into(), file(10)); // replacing keeps the byte count right
        assert_eq!(c.len(), (1, 10));
        c.insert("/m".into(), Entry::Missing);
        assert_eq!(c.len(), (2, 10));
    }

    #[test]
    fn dev_mode_is_never_fresh() {
        let c = OpenFileCache::new(&settings(100, 100), true);
        c.insert("/a".into(), file(1));
        assert!(c.fresh(Path::new("/a")).is_none());
        assert!(c.stale(Path::new("/a")).is_some());
    }
}
