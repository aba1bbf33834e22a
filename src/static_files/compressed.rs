//! Static files compressed on the fly, as nginx's `gzip on` compresses them: Django's
//! `collectstatic` writes no `.gz`/`.br` siblings, so without this the admin's CSS
//! went out whole. A text file (the types `headers::is_text` names, the app
//! compression's list too) that the open-file cache holds in memory and that has no
//! sibling for an encoding the client accepts is compressed once per file version
//! (its length and mtime; concurrent first requests wait for the one compression)
//! and kept in a memory cache bounded by bytes and entries, least recently used
//! first out. Each representation has its own strong ETag: the file's with `-gz` or
//! `-br` appended, so a validator never names the other bytes.

use bytes::Bytes;
use http::HeaderValue;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

use super::cache::{Meta, Resolved};
use super::headers::Encoding;

/// The largest file compressed (when `[static_cache] max_file_size` keeps larger
/// ones in memory): an eighth of the cache, so no one variant empties it and a file
/// is not compressed again on every request.
pub(crate) const MAX_SOURCE: u64 = crate::defaults::STATIC_COMPRESSED_BYTES / 8;

/// A file's compressed representation.
#[derive(Debug)]
pub(crate) struct Variant {
    pub(crate) body: Bytes,
    pub(crate) etag: HeaderValue,
}

/// `None` once computed: compressing did not make the file smaller (served as is).
type Cell = Arc<OnceCell<Option<Arc<Variant>>>>;

struct Slot {
    /// The version of the file the variant was made from.
    source: Meta,
    cell: Cell,
    /// The variant's bytes, once counted.
    size: u64,
    used: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<(PathBuf, Encoding), Slot>,
    bytes: u64,
    tick: u64,
}

/// The compressed variants, bounded by `max_bytes` and `max_entries`.
pub(crate) struct CompressedCache {
    max_bytes: u64,
    max_entries: usize,
    /// Shared with the compressions' tasks, which count what they made.
    inner: Arc<Mutex<Inner>>,
    /// Compressions running at once, one per core: clients asking for more files
    /// than the cache holds (each compressed again after eviction) wait here rather
    /// than take every blocking thread.
    running: Arc<tokio::sync::Semaphore>,
}

impl CompressedCache {
    pub(crate) fn new(max_bytes: u64, max_entries: usize) -> Self {
        CompressedCache {
            max_bytes,
            max_entries: max_entries.max(1),
            inner: Arc::default(),
            running: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }

    /// The `encoding` variant of `file` (whose bytes the open-file cache holds), made
    /// on the first request for this version of the file; `None` when the file is
    /// not in memory or does not get smaller.
    pub(crate) async fn get(&self, file: &Resolved, encoding: Encoding) -> Option<Arc<Variant>> {
        let body = file.body.clone()?;
        let etag = variant_etag(file.etag.as_ref()?, encoding)?;
        let key = (file.real_path.clone(), encoding);
        let cell = self.cell(&key, file.meta);
        if let Some(made) = cell.get() {
            return made.clone();
        }
        let running = self.running.clone();
        let (inner, max_bytes, max_entries) =
            (self.inner.clone(), self.max_bytes, self.max_entries);
        // A task of its own, which keeps the permit until the compression ends and
        // stores and counts what it made: a requester that goes (a reset stream, a
        // closed connection) frees no permit for a compression still running, and
        // the next request finds the work done rather than starting it again.
        let made = tokio::spawn(async move {
            let variant = cell
                .get_or_init(|| async move {
                    let _permit = running.acquire_owned().await.ok()?;
                    // Off the runtime: brotli on a 1 MiB file takes tens of milliseconds.
                    let made = tokio::task::spawn_blocking(move || compress(&body, encoding));
                    let compressed = made.await.ok()?.ok()?;
                    Some(Arc::new(Variant {
                        body: compressed,
                        etag,
                    }))
                })
                .await
                .clone();
            count(&inner, max_bytes, max_entries, &key, &cell);
            variant
        });
        made.await.ok()?
    }

    /// The cell for this version of the file: the one there, or a new one that
    /// replaces a variant of an older version.
    fn cell(&self, key: &(PathBuf, Encoding), source: Meta) -> Cell {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(slot) = inner.slots.get_mut(key) {
            if slot.source == source {
                slot.used = tick;
                return slot.cell.clone();
            }
        }
        let cell = Cell::default();
        let slot = Slot {
            source,
            cell: cell.clone(),
            size: 0,
            used: tick,
        };
        if let Some(old) = inner.slots.insert(key.clone(), slot) {
            inner.bytes -= old.size;
        }
        cell
    }
}

/// Counts a variant made into the cache's bound, then evicts the least recently used
/// past either bound.
fn count(
    inner: &Mutex<Inner>,
    max_bytes: u64,
    max_entries: usize,
    key: &(PathBuf, Encoding),
    cell: &Cell,
) {
    let size = match cell.get() {
        Some(Some(v)) => v.body.len() as u64,
        _ => 0,
    };
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    let inner = &mut *inner;
    if let Some(slot) = inner.slots.get_mut(key) {
        if Arc::ptr_eq(&slot.cell, cell) && slot.size == 0 && size > 0 {
            slot.size = size;
            inner.bytes += size;
        }
    }
    while inner.bytes > max_bytes || inner.slots.len() > max_entries {
        let Some(oldest) = inner
            .slots
            .iter()
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        if let Some(gone) = inner.slots.remove(&oldest) {
            inner.bytes -= gone.size;
        }
    }
}

impl CompressedCache {
    #[cfg(test)]
    fn held(&self) -> (usize, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.slots.len(), inner.bytes)
    }
}

/// The file's strong ETag with the encoding's suffix inside the quotes.
fn variant_etag(identity: &HeaderValue, encoding: Encoding) -> Option<HeaderValue> {
    let tag = identity.to_str().ok()?.strip_suffix('"')?;
    let suffix = match encoding {
        Encoding::Gzip => "-gz",
        Encoding::Brotli => "-br",
        Encoding::Identity => return None,
    };
    HeaderValue::from_str(&format!("{tag}{suffix}\"")).ok()
}

/// Brotli quality and window, gzip level: once per file version, so the strong
/// settings (nginx's own `gzip_comp_level` is 1 because it compresses every answer).
const BROTLI_QUALITY: u32 = 9;
const BROTLI_WINDOW: u32 = 22;
const GZIP_LEVEL: u32 = 9;

/// `body` compressed; an error when it does not get smaller.
fn compress(body: &[u8], encoding: Encoding) -> std::io::Result<Bytes> {
    let out = match encoding {
        Encoding::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 3),
                flate2::Compression::new(GZIP_LEVEL),
            );
            enc.write_all(body)?;
            enc.finish()?
        }
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 3);
            {
                let mut enc =
                    brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                enc.write_all(body)?;
                enc.flush()?;
            }
            out
        }
        Encoding::Identity => return Err(std::io::Error::other("identity")),
    };
    if out.len() >= body.len() {
        return Err(std::io::Error::other("no smaller"));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, SystemTime};

    fn file(path: &str, text: &str, mtime: u64) -> Resolved {
        let meta = Meta {
            is_dir: false,
            len: text.len() as u64,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(mtime),
        };
        Resolved::new(meta, path.into(), Some(Bytes::from(text.to_string())))
    }

    fn css() -> String {
        "body { font-family: sans-serif; color: #333; }\n".repeat(200)
    }

    #[tokio::test]
    async fn each_encoding_has_its_own_strong_etag_and_decodes_to_the_file() {
        let cache = CompressedCache::new(1 << 20, 100);
        let f = file("/s/a.css", &css(), 1);
        let gz = cache.get(&f, Encoding::Gzip).await.unwrap();
        let br = cache.get(&f, Encoding::Brotli).await.unwrap();
        let identity = f.etag.clone().unwrap();
        assert_ne!(gz.etag, identity);
        assert_ne!(br.etag, gz.etag);
        assert!(gz.etag.to_str().unwrap().starts_with('"'));
        assert!(gz.etag.to_str().unwrap().ends_with("-gz\""));
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, css());
        let mut plain = Vec::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, css().as_bytes());
    }

    #[tokio::test]
    async fn made_once_per_version_replaced_when_the_file_changes() {
        let cache = CompressedCache::new(1 << 20, 100);
        let v1 = file("/s/a.css", &css(), 1);
        let a = cache.get(&v1, Encoding::Gzip).await.unwrap();
        let b = cache.get(&v1, Encoding::Gzip).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "compressed once");
        let v2 = file("/s/a.css", &(css() + "a{}"), 2);
        let c = cache.get(&v2, Encoding::Gzip).await.unwrap();
        assert_ne!(c.etag, a.etag);
        assert_eq!(cache.held().0, 1, "the old version's variant is gone");
    }

    #[tokio::test]
    async fn bounded_by_bytes_and_entries() {
        let cache = CompressedCache::new(1 << 20, 3);
        for i in 0..10 {
            let f = file(&format!("/s/{i}.css"), &css(), 1);
            cache.get(&f, Encoding::Gzip).await.unwrap();
        }
        assert_eq!(cache.held().0, 3);
        let small = CompressedCache::new(100, 100);
        for i in 0..10 {
            let f = file(&format!("/s/{i}.css"), &css(), 1);
            cache.get(&f, Encoding::Gzip).await.unwrap();
        }
        assert!(small.held().1 <= 100, "{:?}", small.held());
    }

    #[tokio::test]
    async fn what_does_not_shrink_is_served_as_is() {
        let cache = CompressedCache::new(1 << 20, 100);
        let f = file("/s/tiny.css", "a", 1);
        assert!(cache.get(&f, Encoding::Gzip).await.is_none());
    }
}
