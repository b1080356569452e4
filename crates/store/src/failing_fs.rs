//! A [`FileSystem`] whose fsyncs, or removals, fail on demand (feature
//! `testing`): the tests of a commit whose outcome is unknown (a manifest
//! renamed into place, then its directory's fsync fails) and of files GC
//! cannot remove, in this crate and in the crates built on it.

use std::path::Path;

use crate::io::{AppendFile, FileSystem, StdFs};

/// The local file system, except that while `armed` an fsync fails: of a
/// file whose path `file` accepts, or of a directory `dir` accepts; and a
/// removal of a file `remove` accepts.
#[derive(Debug)]
pub struct FailingSync {
    armed: std::sync::atomic::AtomicBool,
    file: fn(&Path) -> bool,
    dir: fn(&Path) -> bool,
    remove: fn(&Path) -> bool,
}

impl FailingSync {
    /// Fsyncs of the files `file` accepts fail while armed.
    pub fn files(file: fn(&Path) -> bool) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FailingSync {
            armed: Default::default(),
            file,
            dir: |_| false,
            remove: |_| false,
        })
    }

    /// Fsyncs of the directories `dir` accepts fail while armed.
    pub fn dirs(dir: fn(&Path) -> bool) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FailingSync {
            armed: Default::default(),
            file: |_| false,
            dir,
            remove: |_| false,
        })
    }

    /// Removals of the files `remove` accepts fail while armed (the file
    /// stays).
    pub fn removals(remove: fn(&Path) -> bool) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FailingSync {
            armed: Default::default(),
            file: |_| false,
            dir: |_| false,
            remove,
        })
    }

    /// Make the chosen fsyncs fail (`true`) or succeed again (`false`).
    pub fn arm(&self, armed: bool) {
        self.armed.store(armed, std::sync::atomic::Ordering::SeqCst);
    }

    fn fails(&self, which: fn(&Path) -> bool, path: &Path) -> bool {
        self.armed.load(std::sync::atomic::Ordering::SeqCst) && which(path)
    }
}

impl FileSystem for FailingSync {
    fn create_new(&self, path: &Path) -> std::io::Result<std::sync::Arc<dyn AppendFile>> {
        StdFs.create_new(path)
    }
    fn write_new(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        StdFs.write_new(path, bytes)
    }
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        if self.fails(self.file, path) {
            return Err(std::io::Error::other("injected: fsync failed"));
        }
        StdFs.sync_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if self.fails(self.dir, path) {
            return Err(std::io::Error::other("injected: directory fsync failed"));
        }
        StdFs.sync_dir(path)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        if self.fails(self.remove, path) {
            return Err(std::io::Error::other("injected: removal failed"));
        }
        StdFs.remove_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
        StdFs.truncate(path, len)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        StdFs.create_dir_all(path)
    }
}
