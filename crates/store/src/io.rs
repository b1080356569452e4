//! The file-system seam: every write, fsync, rename and removal the store
//! makes on local disk goes through a [`FileSystem`].
//!
//! Production uses [`StdFs`] (the operating system). Tests install a
//! recording implementation (`crash_fs`, feature `testing`) that keeps,
//! beside the live files, the image a power loss would leave: file
//! contents as of their last `fsync`, directory entries as of their
//! directory's last `fsync` (as redb's crash tests do). A missing `fsync`
//! is invisible to a test that kills the process (the page cache
//! survives), but not to one that reopens that image.
//!
//! Reads go straight to the file system (they change nothing durable).
//!
//! ## The durability rules the store follows
//!
//! * A new object is written under a staging name, `fsync`ed, renamed to
//!   its final name without replacing anything, and its directory is
//!   `fsync`ed ([`FileSystem::publish`]). After a power loss the final name
//!   either does not exist or holds the whole object. (Parts skip the first
//!   `fsync` and are synced as a group before the commit that references
//!   them; an unreferenced part is swept at open.)
//! * An ingest-log record is durable after `fdatasync` of its segment; a
//!   new segment's header and directory entry are synced when it is
//!   created.
//! * A removal is durable after its directory is `fsync`ed; GC syncs the
//!   directories it removed from, so that an erased file does not come
//!   back after a power loss.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file being appended to (an ingest-log segment).
pub trait AppendFile: Send + Sync + Debug {
    /// Append `buf` (one `write`, or several for a large buffer).
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`: the bytes written so far survive a power loss.
    fn sync_data(&self) -> io::Result<()>;
}

/// The local file operations of the store.
pub trait FileSystem: Send + Sync + Debug {
    /// Create `path` (which must not exist) for appending.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>>;
    /// Write a whole new file at `path` (which must not exist), not synced.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// `fsync` the file at `path`.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// `fsync` a directory: entries created, renamed or removed in it survive.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Rename `from` to `to`; fails with `AlreadyExists` if `to` exists.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Cut the file at `path` to `len` bytes and `fsync` it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Create a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Write `bytes` as a new object at `path`: staged, synced, renamed
    /// without replacing, directory synced. Durable and whole when it
    /// returns; after a crash, `path` is absent or complete.
    /// A failure at any step removes the staged file (a write that
    /// failed part way leaves one, which may hold what a manifest holds:
    /// pending requests' distinct ids in clear).
    fn publish(&self, path: &Path, staging: &Path, bytes: &[u8]) -> io::Result<()> {
        let done = self
            .write_new(staging, bytes)
            .and_then(|_| self.sync_file(staging))
            .and_then(|_| self.rename_noreplace(staging, path));
        if let Err(e) = done {
            let _ = self.remove_file(staging);
            return Err(e);
        }
        self.sync_dir(parent(path))
    }
}

/// `path` made absolute and canonical, though its last components may not
/// exist yet: the longest existing ancestor is canonicalized and the rest
/// appended. `None` if no ancestor resolves, or a missing component is
/// `..` (which could not be resolved without the directory).
pub fn canonical_lenient(path: &Path) -> Option<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut at = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = at.canonicalize() {
            let mut full = c;
            for r in rest.iter().rev() {
                full.push(r);
            }
            return Some(full);
        }
        rest.push(at.file_name()?.to_os_string());
        at = at.parent()?;
    }
}

/// The parent directory of `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdAppend(File);

impl AppendFile for StdAppend {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for StdFs {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(StdAppend(f)))
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new().create_new(true).write(true).open(path)?;
        f.write_all(bytes)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        rename_noreplace(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
}

/// `renameat2(RENAME_NOREPLACE)` where the kernel has it; elsewhere a hard
/// link plus an unlink of the source, which also never replaces.
#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without RENAME_NOREPLACE (some network and FUSE ones).
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            link_then_unlink(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    link_then_unlink(from, to)
}

fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes half of a new file, then fails (a full disk).
    #[derive(Debug)]
    struct HalfWrite;

    impl FileSystem for HalfWrite {
        fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
            StdFs.create_new(path)
        }
        fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            StdFs.write_new(path, &bytes[..bytes.len() / 2])?;
            Err(io::Error::other("injected: no space left"))
        }
        fn sync_file(&self, path: &Path) -> io::Result<()> {
            StdFs.sync_file(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.sync_dir(path)
        }
        fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename_noreplace(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_file(path)
        }
        fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
            StdFs.truncate(path, len)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            StdFs.create_dir_all(path)
        }
    }

    /// A publish whose write fails part way leaves neither the object nor
    /// the half-written staged file.
    #[test]
    fn a_failed_write_leaves_no_staged_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, staging) = (dir.path().join("x"), dir.path().join("x#1"));
        assert!(HalfWrite.publish(&path, &staging, b"secret ids").is_err());
        assert!(!path.exists() && !staging.exists());
        StdFs.publish(&path, &staging, b"secret ids").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret ids");
        assert!(!staging.exists());
    }
}
