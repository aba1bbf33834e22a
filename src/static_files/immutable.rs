//! `[[static]] immutable`: files whose name changes whenever their content does
//! (Django's `ManifestStaticFilesStorage`, bundlers' content hashes) are cached by
//! browsers for a year without revalidation, WhiteNoise's rule; every other file
//! keeps the mount's `cache_control`.
//!
//! The manifest mode reads `staticfiles.json` from the mount's directory and knows
//! the hashed names it lists. A thread of its own checks the file's mtime once per
//! `revalidate` (the open-file cache's interval, `MIN_CHECK` at least) and reads it
//! again when it changed, so a `collectstatic` during a deploy is seen without a
//! restart; a request only looks the name up in memory, never stats nor parses (a
//! large manifest on a slow disk would hold up the runtime). A manifest that is
//! missing or does not parse marks nothing immutable (and says so once per change).

use crate::config::ImmutableFiles;
use http::HeaderValue;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// The `Cache-Control` of an immutable file.
pub const IMMUTABLE: HeaderValue = HeaderValue::from_static("max-age=31536000, public, immutable");
/// Django's `ManifestStaticFilesStorage.manifest_name`.
const MANIFEST: &str = "staticfiles.json";
/// A hash in a name: this many hex digits at least.
const HASH_DIGITS: usize = 8;
/// The manifest's checks are this far apart at least (`revalidate_ms = 0` would
/// make its thread spin).
const MIN_CHECK: Duration = Duration::from_millis(100);

pub enum Immutable {
    Manifest(Manifest),
    Pattern,
}

impl Immutable {
    pub fn new(mode: ImmutableFiles, root: &Path, revalidate: Duration) -> Self {
        match mode {
            ImmutableFiles::Manifest => {
                Immutable::Manifest(Manifest::watch(root.join(MANIFEST), revalidate))
            }
            ImmutableFiles::Pattern => Immutable::Pattern,
        }
    }

    /// Whether `rel` (a path below the mount's directory) never changes.
    pub fn covers(&self, rel: &Path) -> bool {
        match self {
            Immutable::Manifest(m) => rel.to_str().is_some_and(|r| m.lists(r)),
            Immutable::Pattern => rel
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(has_hash),
        }
    }
}

/// `name.HASH.ext` (or more dots): a middle segment of hex digits only.
fn has_hash(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1]
            .iter()
            .any(|p| p.len() >= HASH_DIGITS && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The request side of the manifest: the names it lists, in memory only (no path
/// to stat). Its thread keeps them current and ends once this is dropped.
pub struct Manifest {
    names: Arc<RwLock<HashSet<String>>>,
}

impl Manifest {
    /// Reads the manifest now (the first request sees it), then starts its thread.
    fn watch(path: PathBuf, revalidate: Duration) -> Manifest {
        let watcher = Watcher {
            mtime: modified(&path),
            path,
        };
        let names = Arc::new(RwLock::new(watcher.read()));
        let weak = Arc::downgrade(&names);
        let every = revalidate.max(MIN_CHECK);
        let spawned = std::thread::Builder::new()
            .name("static-manifest".into())
            .spawn(move || watcher.run(weak, every));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the static manifest's thread; its changes are not seen");
        }
        Manifest { names }
    }

    fn lists(&self, rel: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(rel)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The manifest's own thread: stats the file once per interval, reads it when its
/// mtime changed.
struct Watcher {
    path: PathBuf,
    mtime: Option<SystemTime>,
}

impl Watcher {
    fn run(mut self, names: Weak<RwLock<HashSet<String>>>, every: Duration) {
        loop {
            std::thread::sleep(every);
            let Some(names) = names.upgrade() else {
                return;
            };
            let mtime = modified(&self.path);
            if mtime != self.mtime {
                self.mtime = mtime;
                let read = self.read();
                *names.write().unwrap_or_else(|e| e.into_inner()) = read;
            }
        }
    }

    /// The hashed names: the values of `"paths"`.
    fn read(&self) -> HashSet<String> {
        let parsed = std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            });
        let names: Option<HashSet<String>> = parsed.as_ref().ok().and_then(|v| {
            let paths = v.get("paths")?.as_object()?;
            Some(
                paths
                    .values()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect(),
            )
        });
        match names {
            Some(names) => {
                tracing::info!(manifest = %self.path.display(), files = names.len(), "static manifest read");
                names
            }
            None => {
                let why = parsed.err().unwrap_or_else(|| "no \"paths\" object".into());
                tracing::warn!(manifest = %self.path.display(), %why, "static manifest unusable; no file is immutable");
                HashSet::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_a_middle_segment_of_hex_digits() {
        for hashed in [
            "base.27e20196a850.css",
            "app.3f2a9c1b.js",
            "a.b.0123abcd.min.js",
        ] {
            assert!(has_hash(hashed), "{hashed}");
        }
        for plain in [
            "base.css",
            "jquery.min.js",
            "deadbeef.css",
            "x.1234567.css",
            "logo.svg",
        ] {
            assert!(!has_hash(plain), "{plain}");
        }
    }

    /// Writes `text` with an mtime `secs` ahead, as a later collectstatic would.
    fn rewrite(path: &Path, text: &str, secs: u64) {
        std::fs::write(path, text).unwrap();
        let later = SystemTime::now() + Duration::from_secs(secs);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(later).unwrap();
    }

    /// Waits (10 s at most) until `m` covers `name` or not, as `want` says.
    fn wait_for(m: &Immutable, name: &str, want: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while m.covers(Path::new(name)) != want {
            assert!(std::time::Instant::now() < deadline, "{name} never {want}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_manifest_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST);
        std::fs::write(
            &path,
            r#"{"paths": {"a.css": "a.0123456789ab.css"}, "version": "1.1"}"#,
        )
        .unwrap();
        let m = Immutable::new(ImmutableFiles::Manifest, dir.path(), Duration::ZERO);
        assert!(m.covers(Path::new("a.0123456789ab.css")));
        assert!(!m.covers(Path::new("a.css")));
        rewrite(&path, r#"{"paths": {"a.css": "a.ba9876543210.css"}}"#, 5);
        wait_for(&m, "a.ba9876543210.css", true);
        assert!(!m.covers(Path::new("a.0123456789ab.css")));
        rewrite(&path, "not json", 10);
        wait_for(&m, "a.ba9876543210.css", false);
    }

    /// A request only looks in memory: with the manifest's directory gone (which a
    /// stat or a read would see), the names stay until the thread's next check.
    #[test]
    fn a_lookup_neither_stats_nor_reads_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"paths": {"a.css": "a.0123456789ab.css"}}"#,
        )
        .unwrap();
        let m = Immutable::new(
            ImmutableFiles::Manifest,
            dir.path(),
            Duration::from_secs(3600),
        );
        let root = dir.path().to_path_buf();
        dir.close().unwrap();
        assert!(!root.exists());
        for _ in 0..1000 {
            assert!(m.covers(Path::new("a.0123456789ab.css")));
        }
    }
}
