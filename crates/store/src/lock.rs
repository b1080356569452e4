//! The writer lock of a data directory: one open `Store` per directory.
//!
//! Two layers, because no single lock primitive does both jobs:
//!
//! * across processes, a POSIX record lock (`fcntl(F_SETLK)`) on `LOCK`.
//!   Unlike `flock(2)`, a record lock belongs to the process and is not
//!   inherited by a `fork`ed child. With `flock`, any child spawned by another
//!   thread while the store is open shares the lock's open file description
//!   until it `exec`s, so closing the store did not reliably release the
//!   directory: a reopen in the same process could see `Locked` for a moment.
//! * inside the process, a registry of open directories (by canonical
//!   path), because record locks of one process never conflict with each
//!   other. The entry is removed when the `DirLock` drops, i.e. when the last
//!   handle on the store is gone.
//!
//! The kernel releases the record lock when the process dies (kill -9
//! included), so a crashed writer never leaves the directory locked.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Result, StoreError};

fn registry() -> &'static Mutex<HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// Holds the writer lock of one data directory until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    key: PathBuf,
    /// `Some` until drop.
    file: Option<File>,
}

impl DirLock {
    /// Take the lock of `dir` (which must exist), or fail with
    /// [`StoreError::Locked`].
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let key = dir
            .canonicalize()
            .map_err(|e| StoreError::io(dir.display(), e))?;
        let lock_path = dir.join("LOCK");
        let locked = || StoreError::Locked {
            path: dir.to_path_buf(),
            lock: lock_path.clone(),
        };
        // A panic elsewhere while holding the registry cannot leave it
        // inconsistent (insert and remove are single operations).
        let mut open = registry().lock().unwrap_or_else(|p| p.into_inner());
        if open.contains(&key) {
            return Err(locked());
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(lock_path.display(), e))?;
        if !try_lock_process(&file).map_err(|e| StoreError::io(lock_path.display(), e))? {
            return Err(locked());
        }
        open.insert(key.clone());
        Ok(DirLock {
            key,
            file: Some(file),
        })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Close the file (releasing the record lock) and forget the entry
        // under the registry mutex, in that order. Removing the entry first
        // would let another thread of this process lock the directory with
        // a new descriptor, whose lock our close would then release (POSIX
        // drops all of a process's record locks on a file when any of its
        // descriptors for it closes).
        let mut open = registry().lock().unwrap_or_else(|p| p.into_inner());
        drop(self.file.take());
        open.remove(&self.key);
    }
}

/// Try a process-owned exclusive lock on the whole file; `Ok(false)` if
/// another process holds a lock on it. Closing any descriptor of the file
/// releases all of this process's locks on it.
pub(crate) fn try_lock_process(file: &File) -> std::io::Result<bool> {
    try_lock(file, true)
}

/// Try a process-owned shared lock (the file may be open read-only);
/// `Ok(false)` if another process holds an exclusive one.
pub(crate) fn try_lock_shared(file: &File) -> std::io::Result<bool> {
    try_lock(file, false)
}

#[cfg(unix)]
fn try_lock(file: &File, exclusive: bool) -> std::io::Result<bool> {
    use rustix::fs::{fcntl_lock, FlockOperation};
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match fcntl_lock(file, op) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::AGAIN => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn try_lock(file: &File, exclusive: bool) -> std::io::Result<bool> {
    let r = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match r {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_process_fails_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        drop(a);
        DirLock::acquire(dir.path()).unwrap();
    }
}
