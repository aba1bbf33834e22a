//! Our tower-http `Backend` for ServeDir: the one place that touches the file system
//! for static mounts. It enforces containment (a path is served only if, with every
//! symlink resolved, it lies inside the canonical root, and — unless the mount allows
//! dotfiles — no component below the root starts with '.', in the path asked for
//! and in the one it resolves to) and answers from the
//! open-file cache, reading small files whole and opening large ones for streaming.
//! A large file held open for its response takes a slot of `[limits] response_files`
//! (waiting for one up to `body_spool_wait`, then 503): an HTTP/2 client that keeps
//! its window shut holds the file as long as the stream lives.
//!
//! Refusals look exactly like missing files (`NotFound` → 404): a client learns
//! nothing about what lies outside the root.

use bytes::Bytes;
use std::future::Future;
use std::io::{self, Cursor, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File};

use super::cache::{Entry, Meta, OpenFileCache, Resolved};
use crate::dispatcher::response_budget::{self, FileSlot};

/// No file slot came free in time: the file is answered 503, not opened.
#[derive(Debug, thiserror::Error)]
#[error("no slot for one more open file ([limits] response_files)")]
pub(super) struct NoFileSlot;

/// Why a path is not served. All of them become 404.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0} is not below the static root")]
    NotBelowRoot(PathBuf),
    #[error("{0} names a dotfile")]
    Dotfile(PathBuf),
    #[error("{0} resolves outside the static root (symlink)")]
    Escapes(PathBuf),
    #[error("{0} is neither a regular file nor a directory")]
    NotRegular(PathBuf),
}

impl From<Refused> for io::Error {
    fn from(r: Refused) -> Self {
        io::Error::new(io::ErrorKind::NotFound, r)
    }
}

/// Files that change while being read are re-read this many times before giving up.
const READ_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct ContainedBackend {
    root: Arc<PathBuf>,
    dotfiles: bool,
    cache: Arc<OpenFileCache>,
}

impl ContainedBackend {
    /// `root` must already be canonical (see `StaticFiles::new`).
    pub fn new(root: PathBuf, dotfiles: bool, cache: Arc<OpenFileCache>) -> Self {
        ContainedBackend {
            root: Arc::new(root),
            dotfiles,
            cache,
        }
    }

    /// What `path` is, from the cache while fresh, else from disk (off the runtime).
    pub async fn resolve(&self, path: PathBuf) -> io::Result<Arc<Resolved>> {
        let entry = match self.cache.fresh(&path) {
            Some(entry) => entry,
            None => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.load(path))
                    .await
                    .map_err(io::Error::other)??
            }
        };
        match entry {
            Entry::Found(resolved) => Ok(resolved),
            Entry::Missing => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// Checks `path` on disk and records the outcome in the cache. Blocking.
    fn load(&self, path: PathBuf) -> io::Result<Entry> {
        self.cache.record_miss();
        let previous = match self.cache.stale(&path) {
            Some(Entry::Found(r)) => Some(r),
            _ => None,
        };
        let entry = match self.load_from_disk(&path, previous) {
            Ok(resolved) => Entry::Found(resolved),
            Err(e) if e.kind() == io::ErrorKind::NotFound || names_nothing(&e) => Entry::Missing,
            // Permission errors and the like are not remembered: they may be fixed.
            Err(e) => return Err(e),
        };
        self.cache.insert(path, entry.clone());
        Ok(entry)
    }

    fn load_from_disk(
        &self,
        path: &Path,
        previous: Option<Arc<Resolved>>,
    ) -> io::Result<Arc<Resolved>> {
        let real = self.contain(path)?;
        let meta = std::fs::metadata(&real)?;
        if !meta.is_file() && !meta.is_dir() {
            // A FIFO or device would block or never end.
            return Err(Refused::NotRegular(path.to_owned()).into());
        }
        let meta = Meta::from(&meta);
        if let Some(prev) = previous {
            if prev.real_path == real && prev.meta == meta {
                return Ok(prev); // unchanged: keep the bytes, just re-arm the timer
            }
        }
        if meta.is_dir || meta.len > self.cache.max_file_size() {
            return Ok(Arc::new(Resolved::new(meta, real, None)));
        }
        read_whole(real, meta)
    }

    /// The canonical path of `path` if serving it is allowed.
    fn contain(&self, path: &Path) -> io::Result<PathBuf> {
        let below = path
            .strip_prefix(&*self.root)
            .map_err(|_| Refused::NotBelowRoot(path.to_owned()))?;
        if !self.dotfiles && has_dot_component(below) {
            return Err(Refused::Dotfile(path.to_owned()).into());
        }
        let real = std::fs::canonicalize(path)?;
        let Ok(real_below) = real.strip_prefix(&*self.root) else {
            return Err(Refused::Escapes(path.to_owned()).into());
        };
        // What is opened, not only what was asked: `envlink -> .env` is the dotfile.
        if !self.dotfiles && has_dot_component(real_below) {
            return Err(Refused::Dotfile(path.to_owned()).into());
        }
        Ok(real)
    }
}

fn has_dot_component(path: &Path) -> bool {
    path.components().any(|c| match c {
        Component::Normal(name) => name.as_encoded_bytes().first() == Some(&b'.'),
        _ => true, // `..`, `.`, a root: never expected below the root, refuse
    })
}

/// A path that cannot name a file: a file used as a directory (ENOTDIR), or a name
/// longer than the file system allows (ENAMETOOLONG: a client's 256-byte segment, or
/// the `.br`/`.gz` sibling of a 253-byte name, which ServeDir then skips). As nginx,
/// these are "no such file", not a server error.
pub(super) fn names_nothing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ENAMETOOLONG))
}

/// Reads a small file whole, making sure the bytes and the metadata (hence the ETag)
/// belong to the same version of the file.
fn read_whole(real: PathBuf, mut meta: Meta) -> io::Result<Arc<Resolved>> {
    for _ in 0..READ_ATTEMPTS {
        let bytes = std::fs::read(&real)?;
        let after = Meta::from(&std::fs::metadata(&real)?);
        if after == meta && bytes.len() as u64 == meta.len {
            return Ok(Arc::new(Resolved::new(
                meta,
                real,
                Some(Bytes::from(bytes)),
            )));
        }
        meta = after; // written to while we read: try again
    }
    // No path in the text: the ERROR line that reports it prints the path quoted.
    Err(io::Error::other("the file keeps changing while being read"))
}

impl Backend for ContainedBackend {
    type File = OpenedFile;
    type Metadata = Meta;
    type OpenFuture = Pin<Box<dyn Future<Output = io::Result<OpenedFile>> + Send>>;
    type MetadataFuture = Pin<Box<dyn Future<Output = io::Result<Meta>> + Send>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(async move {
            let resolved = this.resolve(path).await?;
            if resolved.meta.is_dir {
                return Err(io::ErrorKind::NotFound.into());
            }
            match &resolved.body {
                Some(bytes) => Ok(OpenedFile::Memory(
                    Cursor::new(bytes.clone()),
                    resolved.meta,
                )),
                // The canonical path, so a symlink swapped in since the check is not followed.
                None => {
                    let Some(slot) = response_budget::global().wait_file().await else {
                        return Err(io::Error::other(NoFileSlot));
                    };
                    let file = tokio::fs::File::open(&resolved.real_path).await?;
                    Ok(OpenedFile::Disk(file, slot))
                }
            }
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(async move { Ok(this.resolve(path).await?.meta) })
    }
}

/// A file ServeDir reads: bytes from the cache, or a file on disk streamed in chunks
/// (with its slot, given back when the response drops it).
pub enum OpenedFile {
    Memory(Cursor<Bytes>, Meta),
    Disk(tokio::fs::File, #[allow(dead_code)] FileSlot),
}

impl AsyncRead for OpenedFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OpenedFile::Memory(c, _) => Pin::new(c).poll_read(cx, buf),
            OpenedFile::Disk(f, _) => Pin::new(f).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for OpenedFile {
    fn start_seek(self: Pin<&mut Self>, pos: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            OpenedFile::Memory(c, _) => Pin::new(c).start_seek(pos),
            OpenedFile::Disk(f, _) => Pin::new(f).start_seek(pos),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            OpenedFile::Memory(c, _) => Pin::new(c).poll_complete(cx),
            OpenedFile::Disk(f, _) => Pin::new(f).poll_complete(cx),
        }
    }
}

impl File for OpenedFile {
    type Metadata = Meta;
    type MetadataFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Meta>> + Send + 'a>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        match self {
            OpenedFile::Memory(_, meta) => {
                let meta = *meta;
                Box::pin(async move { Ok(meta) })
            }
            // fstat of the open file: its length and ETag match the bytes we stream,
            // even if the cached metadata is up to a second old.
            OpenedFile::Disk(f, _) => Box::pin(async move { Ok(Meta::from(&f.metadata().await?)) }),
        }
    }
}
