//! File I/O of parts, tombstone files and manifests, through `object_store`.
//!
//! The local filesystem is the default backend; tests may pass any
//! [`ObjectStore`] (for example `InMemory`). On the local backend a write is
//! made durable before it returns: the object store writes a staged file and
//! renames it into place, then we `fsync` the file and its directory, so a
//! crash of the process or the machine never leaves a half-written object
//! under its final name.
//!
//! The API is blocking: the store calls it from its own threads. Local
//! `object_store` operations run inline when no tokio runtime is current.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Result, StoreError};

/// Blocking handle on the store's objects.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

impl Storage {
    /// Local filesystem storage rooted at `root` (created if missing).
    pub fn local(root: &FsPath) -> Result<Storage> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::io(root.display(), e))?;
        let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| StoreError::ObjectStore {
            path: root.display().to_string(),
            source: e,
        })?;
        Ok(Storage {
            store: Arc::new(fs),
            local_root: Some(root.to_path_buf()),
        })
    }

    /// Storage over an arbitrary object store (no local durability hooks).
    pub fn object_store(store: Arc<dyn ObjectStore>) -> Storage {
        Storage {
            store,
            local_root: None,
        }
    }

    /// The underlying object store (registered with DataFusion by the query layer).
    pub fn inner(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The local root directory, when the backend is the local filesystem.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    fn os_err(path: &str, e: object_store::Error) -> StoreError {
        StoreError::ObjectStore {
            path: path.to_string(),
            source: e,
        }
    }

    /// Write `bytes` at `path`, replacing nothing: the path must not exist.
    /// Durable when it returns.
    pub fn put_new(&self, path: &str, bytes: Bytes) -> Result<()> {
        self.put_new_nosync(path, bytes)?;
        self.sync_files(&[path])
    }

    /// Write without the fsync; call [`Storage::sync_files`] for a group of writes.
    pub fn put_new_nosync(&self, path: &str, bytes: Bytes) -> Result<()> {
        let p = Path::from(path);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        block_on(self.store.put_opts(&p, PutPayload::from_bytes(bytes), opts))
            .map(|_| ())
            .map_err(|e| Self::os_err(path, e))
    }

    /// Make written objects durable: fsync each file, then each distinct directory once.
    pub fn sync_files(&self, paths: &[&str]) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut dirs = std::collections::BTreeSet::new();
        for p in paths {
            let full = root.join(p);
            let f = std::fs::File::open(&full).map_err(|e| StoreError::io(full.display(), e))?;
            f.sync_all()
                .map_err(|e| StoreError::io(full.display(), e))?;
            if let Some(d) = full.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        Ok(())
    }

    /// Read a whole object.
    pub fn get(&self, path: &str) -> Result<Bytes> {
        let p = Path::from(path);
        block_on(async { self.store.get(&p).await?.bytes().await })
            .map_err(|e| Self::os_err(path, e))
    }

    /// Remove an object; a missing object is not an error. Only GC calls this.
    pub(crate) fn delete(&self, path: &str) -> Result<()> {
        let p = Path::from(path);
        match block_on(self.store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::os_err(path, e)),
        }
    }

    /// Whether an object exists.
    pub fn exists(&self, path: &str) -> Result<bool> {
        let p = Path::from(path);
        match block_on(self.store.head(&p)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::os_err(path, e)),
        }
    }

    /// List objects under `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let p = Path::from(prefix);
        block_on(self.store.list(Some(&p)).try_collect::<Vec<_>>())
            .map_err(|e| Self::os_err(prefix, e))
    }

    /// Staged uploads an interrupted writer left behind (`name#N` files of the
    /// local backend), which `list` does not show. Paths are absolute.
    pub(crate) fn local_staging_leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(root) = &self.local_root {
            for top in ["manifest", "parts", "tombstones"] {
                walk(&root.join(top), &mut |p: &FsPath| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if let Some((_, suffix)) = name.rsplit_once('#') {
                        if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                            out.push(p.to_path_buf());
                        }
                    }
                });
            }
        }
        out
    }
}

fn walk(dir: &FsPath, f: &mut dyn FnMut(&FsPath)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

/// fsync a directory so that entries created or removed in it are durable.
pub(crate) fn sync_dir(dir: &FsPath) -> Result<()> {
    let d = std::fs::File::open(dir).map_err(|e| StoreError::io(dir.display(), e))?;
    d.sync_all().map_err(|e| StoreError::io(dir.display(), e))
}
