//! `--reload` (development): watches the app's Python files (under chdir and the
//! pythonpath, never the virtualenv), the config file and `--reload-extra-file`s, and
//! asks the master for a rolling restart once changes have settled.

use crate::config::Settings;
use crate::signals::Command;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Changes closer together than this become one reload (editors write several times).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// What to watch, derived from the settings.
struct WatchSet {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    exclude: Vec<PathBuf>,
}

impl WatchSet {
    fn from_settings(settings: &Settings) -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let absolute = |p: &Path| cwd.join(p);
        let mut dirs = vec![absolute(
            settings.python.chdir.as_deref().unwrap_or(Path::new(".")),
        )];
        dirs.extend(settings.python.pythonpath.iter().map(|p| absolute(p)));
        let mut files: Vec<PathBuf> = settings
            .reload_extra_files
            .iter()
            .map(|p| absolute(p))
            .collect();
        files.extend(settings.config_path.iter().map(|p| absolute(p)));
        let mut exclude: Vec<PathBuf> = settings.python.venv.iter().map(|p| absolute(p)).collect();
        exclude.extend(dirs.iter().map(|d| d.join("target")));
        WatchSet {
            dirs: dirs.into_iter().map(canonical).collect(),
            files: files.into_iter().map(canonical).collect(),
            exclude: exclude.into_iter().map(canonical).collect(),
        }
    }

    fn is_relevant(&self, path: &Path) -> bool {
        if self.files.iter().any(|f| f == path) {
            return true;
        }
        let is_py = path.extension().is_some_and(|e| e == "py");
        is_py
            && self.dirs.iter().any(|d| path.starts_with(d))
            && !self.exclude.iter().any(|x| path.starts_with(x))
            && !path.components().any(|c| {
                let c = c.as_os_str();
                c == "__pycache__" || c == ".git" || c == "site-packages"
            })
    }
}

fn canonical(p: PathBuf) -> PathBuf {
    std::fs::canonicalize(&p).unwrap_or(p)
}

/// Starts the watcher; it lives as long as the returned handle.
pub fn watch(
    settings: &Settings,
    commands: mpsc::UnboundedSender<Command>,
) -> notify::Result<notify::RecommendedWatcher> {
    let set = WatchSet::from_settings(settings);
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.kind.is_access() {
                return;
            }
            for p in ev.paths {
                let _ = raw_tx.send(p);
            }
        }
    })?;
    for d in &set.dirs {
        watcher.watch(d, RecursiveMode::Recursive)?;
    }
    for f in &set.files {
        // Watch the parent: editors replace files by renaming, which drops a file watch.
        if let Some(parent) = f.parent() {
            watcher.watch(parent, RecursiveMode::NonRecursive)?;
        }
    }
    tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            if !set.is_relevant(&canonical(first.clone())) && !set.is_relevant(&first) {
                continue;
            }
            // Let the burst settle.
            while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {}
            tracing::info!(file = %first.display(), "change detected: reloading workers");
            if commands.send(Command::CodeChanged).is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}
