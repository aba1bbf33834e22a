//! `[[static]] immutable`: files whose name changes whenever their content does
//! (Django's `ManifestStaticFilesStorage`, bundlers' content hashes) are cached by
//! browsers for a year without revalidation, WhiteNoise's rule; every other file
//! keeps the mount's `cache_control`.
//!
//! The manifest mode reads `staticfiles.json` from the mount's directory and knows
//! the hashed names it lists. It checks the file's mtime at most once per
//! `revalidate` (the open-file cache's interval) and reads it again when it
//! changed, so a `collectstatic` during a deploy is seen without a restart. A
//! manifest that is missing or does not parse marks nothing immutable (and says so
//! once per change).

use crate::config::ImmutableFiles;
use http::HeaderValue;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The `Cache-Control` of an immutable file.
pub const IMMUTABLE: HeaderValue = HeaderValue::from_static("max-age=31536000, public, immutable");
/// Django's `ManifestStaticFilesStorage.manifest_name`.
const MANIFEST: &str = "staticfiles.json";
/// A hash in a name: this many hex digits at least.
const HASH_DIGITS: usize = 8;

pub enum Immutable {
    Manifest(Manifest),
    Pattern,
}

impl Immutable {
    pub fn new(mode: ImmutableFiles, root: &Path, revalidate: Duration) -> Self {
        match mode {
            ImmutableFiles::Manifest => Immutable::Manifest(Manifest {
                path: root.join(MANIFEST),
                revalidate,
                state: Mutex::new(State::default()),
            }),
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

pub struct Manifest {
    path: PathBuf,
    revalidate: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    checked: Option<Instant>,
    mtime: Option<SystemTime>,
    names: HashSet<String>,
}

impl Manifest {
    fn lists(&self, rel: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.checked.is_none_or(|t| t.elapsed() >= self.revalidate) {
            state.checked = Some(Instant::now());
            let mtime = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if mtime != state.mtime {
                state.mtime = mtime;
                state.names = self.read();
            }
        }
        state.names.contains(rel)
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
        assert!(m.covers(Path::new("a.ba9876543210.css")));
        assert!(!m.covers(Path::new("a.0123456789ab.css")));
        rewrite(&path, "not json", 10);
        assert!(
            !m.covers(Path::new("a.ba9876543210.css")),
            "unusable: nothing immutable"
        );
    }
}
