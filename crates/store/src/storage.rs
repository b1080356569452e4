//! File I/O of parts, tombstone files and manifests.
//!
//! Two backends:
//!
//! * **local** (the default): files under the data directory, written
//!   through the [`FileSystem`] seam so that every durability step is
//!   explicit (and observable by the crash tests). A new object is staged
//!   as `<name>#<n>`, synced, renamed to its name without replacing
//!   anything, and its directory is synced; directories created on the
//!   way are synced into their parents. Readers (DataFusion) see the same
//!   files through an `object_store` `LocalFileSystem`.
//! * **object store**: any [`ObjectStore`] (S3 and S3-compatible servers;
//!   tests use `InMemory` and an S3 server), with no local durability
//!   hooks: a put-if-absent is durable when it returns. What the commit
//!   path needs beyond that (settling lost answers, the latest-version
//!   hint, the writer lease) is in `remote/`.
//!
//! The API is blocking: the store calls it from its own threads.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Result, StoreError};
use crate::io::{parent, FileSystem};
use crate::remote::wait;

/// One object found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Path relative to the store's root (`parts/...`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modified (µs since the epoch), where the backend says
    /// (object stores; the local walk leaves it out).
    pub modified_us: Option<i64>,
}

#[derive(Debug)]
struct Local {
    root: PathBuf,
    fs: Arc<dyn FileSystem>,
    /// Directories known to exist durably (saves a stat per write).
    dirs: Mutex<HashSet<PathBuf>>,
}

/// Blocking handle on the store's objects.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    local: Option<Arc<Local>>,
}

fn staging_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    // Unique in this process; the process id keeps two processes apart
    // (only one writes, but a crashed one may have left a staged file).
    (u64::from(std::process::id()) << 32) | (N.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

impl Storage {
    /// Local storage rooted at `root` (which must exist), written through `fs`.
    pub(crate) fn local(root: &FsPath, fs: Arc<dyn FileSystem>) -> Result<Storage> {
        let reader =
            LocalFileSystem::new_with_prefix(root).map_err(|e| StoreError::ObjectStore {
                path: root.display().to_string(),
                source: e,
            })?;
        Ok(Storage {
            store: Arc::new(reader),
            local: Some(Arc::new(Local {
                root: root.to_path_buf(),
                fs,
                dirs: Mutex::default(),
            })),
        })
    }

    /// Storage over an arbitrary object store (no local durability hooks).
    pub(crate) fn object_store(store: Arc<dyn ObjectStore>) -> Storage {
        Storage { store, local: None }
    }

    /// The underlying object store, for reads (the query layer registers it
    /// with DataFusion). Writing through it bypasses the commit path and
    /// GC: unsupported.
    pub fn inner(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The local root directory, when the backend is the local filesystem.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local.as_deref().map(|l| l.root.as_path())
    }

    fn os_err(path: &str, e: object_store::Error) -> StoreError {
        StoreError::ObjectStore {
            path: path.to_string(),
            source: e,
        }
    }

    /// Write `bytes` at `path`, replacing nothing: the path must not exist.
    /// Durable when it returns; after a crash `path` is absent or whole.
    pub(crate) fn put_new(&self, path: &str, bytes: Bytes) -> Result<()> {
        match &self.local {
            Some(l) => {
                let (full, staging) = l.prepare(path)?;
                l.fs.publish(&full, &staging, &bytes)
                    .map_err(|e| StoreError::io(path, e))
            }
            None => self.put_object(path, bytes),
        }
    }

    /// Write without the fsyncs; call [`Storage::sync_files`] for a group
    /// of writes before anything references them.
    pub(crate) fn put_new_nosync(&self, path: &str, bytes: Bytes) -> Result<()> {
        match &self.local {
            Some(l) => {
                let (full, staging) = l.prepare(path)?;
                l.fs.write_new(&staging, &bytes)
                    .and_then(|_| l.fs.rename_noreplace(&staging, &full))
                    .map_err(|e| {
                        let _ = l.fs.remove_file(&staging);
                        StoreError::io(path, e)
                    })
            }
            None => self.put_object(path, bytes),
        }
    }

    fn put_object(&self, path: &str, bytes: Bytes) -> Result<()> {
        let (store, p) = (self.inner(), Path::from(path));
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        wait(async move {
            store
                .put_opts(&p, PutPayload::from_bytes(bytes), opts)
                .await
        })?
        .map(|_| ())
        .map_err(|e| Self::os_err(path, e))
    }

    /// Whether objects live in an object store (not the local directory).
    pub fn is_remote(&self) -> bool {
        self.local.is_none()
    }

    /// Publish manifest `path` (a new version; `bytes` carries `token`).
    /// Local: staged, synced and renamed into place. Object store:
    /// put-if-absent, an ambiguous answer settled by reading the version
    /// back (`remote::publish_manifest`), then the latest-version hint.
    pub(crate) fn publish_manifest(
        &self,
        path: &str,
        bytes: Bytes,
        token: &str,
        still_writer: &dyn Fn() -> Result<Option<std::time::Duration>>,
    ) -> Result<crate::remote::Published> {
        if self.local.is_some() {
            self.put_new(path, bytes)?;
            return Ok(crate::remote::Published::Committed);
        }
        let store = self.inner();
        let published = crate::remote::publish_manifest(&store, path, bytes, token, still_writer)?;
        if published == crate::remote::Published::Committed {
            if let Some(v) = crate::format::parse_manifest_path(path) {
                crate::remote::write_hint(&store, v);
            }
        }
        Ok(published)
    }

    /// Make written objects durable: fsync each file, then each distinct directory once.
    pub(crate) fn sync_files(&self, paths: &[&str]) -> Result<()> {
        let Some(l) = &self.local else {
            return Ok(());
        };
        let mut dirs = BTreeSet::new();
        for p in paths {
            let full = l.root.join(p);
            l.fs.sync_file(&full).map_err(|e| StoreError::io(p, e))?;
            dirs.insert(parent(&full).to_path_buf());
        }
        for d in dirs {
            l.fs.sync_dir(&d)
                .map_err(|e| StoreError::io(d.display(), e))?;
        }
        Ok(())
    }

    /// [`Storage::sync_files`] for every file of each part.
    pub(crate) fn sync_parts(&self, parts: &[&crate::format::PartMeta]) -> Result<()> {
        let files: Vec<String> = parts.iter().flat_map(|p| p.files()).collect();
        let refs: Vec<&str> = files.iter().map(String::as_str).collect();
        self.sync_files(&refs)
    }

    /// Read a whole object.
    pub(crate) fn get(&self, path: &str) -> Result<Bytes> {
        match &self.local {
            Some(l) => std::fs::read(l.root.join(path))
                .map(Bytes::from)
                .map_err(|e| StoreError::io(path, e)),
            None => {
                let (store, p) = (self.inner(), Path::from(path));
                wait(async move { store.get(&p).await?.bytes().await })?
                    .map_err(|e| Self::os_err(path, e))
            }
        }
    }

    /// Read `range` of an object (exactly that many bytes, or an error).
    pub(crate) fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| StoreError::Internal(format!("range too large in {path}")))?;
        match &self.local {
            Some(l) => {
                let f =
                    std::fs::File::open(l.root.join(path)).map_err(|e| StoreError::io(path, e))?;
                let mut buf = vec![0u8; len];
                crate::checksum::read_exact_at(&f, &mut buf, range.start)
                    .map_err(|e| StoreError::io(path, e))?;
                Ok(Bytes::from(buf))
            }
            None => {
                let (store, p) = (self.inner(), Path::from(path));
                wait(async move { store.get_range(&p, range).await })?
                    .map_err(|e| Self::os_err(path, e))
            }
        }
    }

    /// Remove objects; a missing object is not an error. The removals are
    /// durable when it returns (their directories are synced). Returns the
    /// paths that could not be removed, with the error. Only GC calls this.
    pub(crate) fn delete_all(&self, paths: &[String]) -> Vec<(String, StoreError)> {
        let mut failed = Vec::new();
        match &self.local {
            Some(l) => {
                // Each directory with the paths removed from it. A path
                // already missing counts too: its removal (an earlier
                // attempt's, whose sync failed) is made durable here.
                let mut dirs: BTreeMap<std::path::PathBuf, Vec<&String>> = BTreeMap::new();
                for p in paths {
                    let full = l.root.join(p);
                    match l.fs.remove_file(&full) {
                        Ok(()) => dirs.entry(parent(&full).to_path_buf()).or_default().push(p),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            dirs.entry(parent(&full).to_path_buf()).or_default().push(p)
                        }
                        Err(e) => failed.push((p.clone(), StoreError::io(p, e))),
                    }
                }
                for (d, removed) in dirs {
                    match l.fs.sync_dir(&d) {
                        Ok(()) => {}
                        // No directory, no entry to make durable (a part
                        // planned and never written, its day's directory
                        // never made).
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            // Gone from the live tree, but a power loss could
                            // bring them back: not removed yet, so that GC
                            // tries again (and holds back the requests that
                            // wait for them) rather than a receipt saying so.
                            tracing::warn!(dir = %d.display(), error = %e, "could not sync a directory after removals");
                            let why =
                                format!("removed, but its directory could not be synced: {e}");
                            failed.extend(
                                removed.into_iter().map(|p| {
                                    (p.clone(), StoreError::Internal(format!("{p}: {why}")))
                                }),
                            );
                        }
                    }
                }
            }
            None => {
                for p in paths {
                    let (store, path) = (self.inner(), Path::from(p.as_str()));
                    match wait(async move { store.delete(&path).await }) {
                        Ok(Ok(()) | Err(object_store::Error::NotFound { .. })) => {}
                        Ok(Err(e)) => failed.push((p.clone(), Self::os_err(p, e))),
                        Err(e) => failed.push((p.clone(), e)),
                    }
                }
            }
        }
        failed
    }

    /// Remove one object (see [`Storage::delete_all`]).
    pub(crate) fn delete(&self, path: &str) -> Result<()> {
        match self.delete_all(&[path.to_string()]).pop() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether an object exists.
    pub(crate) fn exists(&self, path: &str) -> Result<bool> {
        match &self.local {
            Some(l) => l
                .root
                .join(path)
                .try_exists()
                .map_err(|e| StoreError::io(path, e)),
            None => {
                let (store, p) = (self.inner(), Path::from(path));
                match wait(async move { store.head(&p).await })? {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(Self::os_err(path, e)),
                }
            }
        }
    }

    /// Objects under `prefix` (a top-level directory such as `parts`),
    /// including staged uploads (`name#n`) an interrupted writer left.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        match &self.local {
            Some(l) => {
                let mut out = Vec::new();
                walk(&l.root, &l.root.join(prefix), &mut out)?;
                out.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(out)
            }
            None => {
                let (store, p) = (self.inner(), Path::from(prefix));
                let objs = wait(async move { store.list(Some(&p)).try_collect::<Vec<_>>().await })?
                    .map_err(|e| Self::os_err(prefix, e))?;
                Ok(objs
                    .into_iter()
                    .map(|o| Listed {
                        path: o.location.to_string(),
                        size: o.size,
                        modified_us: Some(o.last_modified.timestamp_micros()),
                    })
                    .collect())
            }
        }
    }
}

impl Local {
    /// The full path of object `path` (its directory ready) and a new
    /// staging name beside it (`<name>#<n>`, which the sweep recognises).
    fn prepare(&self, path: &str) -> Result<(PathBuf, PathBuf)> {
        let full = self.root.join(path);
        self.ensure_dir(parent(&full))?;
        let staging = PathBuf::from(format!("{}#{}", full.display(), staging_suffix()));
        Ok((full, staging))
    }

    /// Create `dir` if missing, syncing each directory created into its
    /// parent, so that a file published inside it survives a power loss.
    fn ensure_dir(&self, dir: &FsPath) -> Result<()> {
        if self.dirs.lock().is_ok_and(|d| d.contains(dir)) {
            return Ok(());
        }
        // Every directory from the root down to `dir` gets its entry
        // synced into its parent once per process, whether this process
        // created it or one that died before syncing it did.
        let chain: Vec<&FsPath> = dir
            .ancestors()
            .take_while(|a| *a != self.root.as_path() && a.starts_with(&self.root))
            .collect();
        for d in chain.into_iter().rev() {
            if self.dirs.lock().is_ok_and(|c| c.contains(d)) {
                continue;
            }
            if !d.is_dir() {
                self.fs
                    .create_dir_all(d)
                    .map_err(|e| StoreError::io(d.display(), e))?;
            }
            let p = parent(d);
            self.fs
                .sync_dir(p)
                .map_err(|e| StoreError::io(p.display(), e))?;
            if let Ok(mut c) = self.dirs.lock() {
                c.insert(d.to_path_buf());
            }
        }
        Ok(())
    }
}

fn walk(root: &FsPath, dir: &FsPath, out: &mut Vec<Listed>) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir.display(), e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
        let p = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| StoreError::io(p.display(), e))?;
        if ft.is_dir() {
            walk(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let Some(rel) = rel.to_str() else {
                // Not a name Elide writes; the sweep reports it.
                out.push(Listed {
                    path: rel.to_string_lossy().into_owned(),
                    size: 0,
                    modified_us: None,
                });
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Listed {
                path: rel.replace(std::path::MAIN_SEPARATOR, "/"),
                size,
                modified_us: None,
            });
        }
    }
    Ok(())
}

/// fsync a directory so that entries created or removed in it are durable.
pub(crate) fn sync_dir(fs: &dyn FileSystem, dir: &FsPath) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io(dir.display(), e))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::io::{AppendFile, FileSystem, StdFs};

    /// A file system whose directory syncs fail while `broken` is set.
    #[derive(Debug, Default)]
    struct NoDirSync {
        broken: AtomicBool,
    }

    impl FileSystem for NoDirSync {
        fn create_new(&self, path: &FsPath) -> std::io::Result<Arc<dyn AppendFile>> {
            StdFs.create_new(path)
        }
        fn write_new(&self, path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
            StdFs.write_new(path, bytes)
        }
        fn sync_file(&self, path: &FsPath) -> std::io::Result<()> {
            StdFs.sync_file(path)
        }
        fn sync_dir(&self, path: &FsPath) -> std::io::Result<()> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected: EIO"));
            }
            StdFs.sync_dir(path)
        }
        fn rename_noreplace(&self, from: &FsPath, to: &FsPath) -> std::io::Result<()> {
            StdFs.rename_noreplace(from, to)
        }
        fn remove_file(&self, path: &FsPath) -> std::io::Result<()> {
            StdFs.remove_file(path)
        }
        fn truncate(&self, path: &FsPath, len: u64) -> std::io::Result<()> {
            StdFs.truncate(path, len)
        }
        fn create_dir_all(&self, path: &FsPath) -> std::io::Result<()> {
            StdFs.create_dir_all(path)
        }
    }

    /// A removal whose directory could not be synced is reported as not
    /// done (GC tries it again, and holds back the requests waiting for
    /// it); the next attempt syncs the directory and reports it done.
    #[test]
    fn a_removal_counts_once_its_directory_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(NoDirSync::default());
        let storage = Storage::local(dir.path(), fs.clone()).unwrap();
        let path = "tombstones/0000000000000001.tomb".to_string();
        std::fs::create_dir_all(dir.path().join("tombstones")).unwrap();
        std::fs::write(dir.path().join(&path), b"bits").unwrap();
        fs.broken.store(true, Ordering::SeqCst);
        let failed = storage.delete_all(std::slice::from_ref(&path));
        assert_eq!(failed.len(), 1);
        assert!(!dir.path().join(&path).exists());
        fs.broken.store(false, Ordering::SeqCst);
        assert!(storage.delete_all(std::slice::from_ref(&path)).is_empty());
        // A path whose directory was never made is no failure.
        let never = "parts/events/1/2026-01-01/0000000000000002.parquet".to_string();
        assert!(storage.delete_all(&[never]).is_empty());
    }
}
