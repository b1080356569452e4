//! Reader leases: how a read-only process keeps the writer's GC away from
//! the files of the version it reads, without taking the writer lock.
//!
//! ```text
//!  reader                                   writer (GC, open-time sweep)
//!  create readers/<name>.new, lock it,      list readers/*.lease
//!  write 0, rename to <name>.lease
//!  ("0": pin everything)                    lock free? owner dead: stale, removed
//!  read the latest manifest V               locked: live; read its version
//!  write V                                  keep every file retired after the
//!  ... query version V ...                    oldest live lease's version
//!  drop: unlock, remove the file
//! ```
//!
//! The lease is a file holding a POSIX record lock for as long as the
//! reader lives (the kernel releases it when the process dies, kill -9
//! included), so a crashed reader never pins files forever. Because a
//! reader announces itself (version 0) *before* it reads the manifest, the
//! writer can never remove a file between the reader's choice of version
//! and its lease. Record locks never conflict inside one process, so leases
//! of this process are also kept in a registry that the liveness check
//! consults first.
//!
//! A lease is honoured for at most [`LEASE_MAX_AGE`] (its file's mtime):
//! a reader stuck for longer must not hold back the physical removal of
//! erased rows indefinitely. Its next read of a removed file then fails
//! with an error naming the file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};

/// Directory of reader leases, under the data directory.
pub const READERS_DIR: &str = "readers";
/// Longest a lease pins files.
pub const LEASE_MAX_AGE: Duration = Duration::from_secs(3600);

/// Leases held by this process, with their versions. A lease of this
/// process is never opened a second time: closing that descriptor would
/// release the process's record lock on it. Keyed by file name (unique:
/// it holds the process id, the time and a random number), not by path:
/// a reader that opened `./data` and a writer that opened `/abs/data` in
/// one process see the same lease under two paths.
fn registry() -> &'static Mutex<HashMap<PathBuf, u64>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, u64>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// A lease held by this process (removed on drop).
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    file: Option<File>,
}

impl Lease {
    /// Announce a reader of `data_dir`, pinning everything until
    /// [`Lease::set_version`].
    pub fn acquire(data_dir: &Path) -> Result<Lease> {
        let dir = data_dir.join(READERS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(dir.display(), e))?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{}-{nanos}-{:08x}", std::process::id(), rand_u32());
        // Made under a name the writer ignores, locked and written, and
        // only then given its `.lease` name: a writer never sees a lease
        // that is not yet held (and would otherwise take it for stale).
        let staging = dir.join(format!("{name}.new"));
        let path = dir.join(format!("{name}.lease"));
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&staging)
            .map_err(|e| StoreError::io(staging.display(), e))?;
        let held = crate::lock::try_lock_process(&file)
            .map_err(|e| StoreError::io(staging.display(), e))?;
        if !held {
            let _ = std::fs::remove_file(&staging);
            return Err(StoreError::Internal(format!(
                "a new lease file {} is locked by another process",
                staging.display()
            )));
        }
        // Registered before it is named: a writer of this process that
        // lists the leases in between must not probe it (its probe would
        // succeed within the process, and its close drop our lock).
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry_key(&path), 0);
        let written = file
            .write_all(format!("{:020}\n", 0).as_bytes())
            .and_then(|_| std::fs::rename(&staging, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staging);
            registry()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&registry_key(&path));
            return Err(StoreError::io(path.display(), e));
        }
        Ok(Lease {
            path,
            file: Some(file),
        })
    }

    /// Pin the files of manifest `version` (0 pins everything).
    pub fn set_version(&mut self, version: u64) -> Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        // Fixed width, written in one call: a concurrent reader of the
        // file sees the old or the new text, and treats anything else as 0.
        let text = format!("{version:020}\n");
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(text.as_bytes()))
            .map_err(|e| StoreError::io(self.path.display(), e))?;
        if let Some(v) = registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&registry_key(&self.path))
        {
            *v = version;
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = registry().lock().unwrap_or_else(|p| p.into_inner());
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
        held.remove(&registry_key(&self.path));
    }
}

/// A lease's key in [`registry`]: its file name.
fn registry_key(path: &Path) -> PathBuf {
    path.file_name()
        .map_or_else(|| path.to_path_buf(), PathBuf::from)
}

fn rand_u32() -> u32 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let x = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), t);
    x as u32
}

/// The versions pinned by live leases of `data_dir` (0 = everything).
/// Stale leases (owner gone) are removed; leases past [`LEASE_MAX_AGE`]
/// are ignored and reported.
pub fn pinned_versions(data_dir: &Path) -> Vec<u64> {
    let dir = data_dir.join(READERS_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if ext == Some("new") {
            // A lease a reader died making (between creating and naming
            // it): nobody can hold it after a minute.
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > Duration::from_secs(60));
            if old {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if ext != Some("lease") {
            continue;
        }
        let ours = registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&registry_key(&path))
            .copied();
        if let Some(version) = ours {
            out.push(version);
            continue;
        }
        // Read-only is enough to probe a lock (a reader may run as
        // another user). A shared lock is granted only if nobody holds an
        // exclusive one: then the reader is gone.
        let Ok(mut f) = OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        match crate::lock::try_lock_shared(&f) {
            Ok(true) => {
                tracing::info!(lease = %path.display(), "removing a stale reader lease");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %path.display(), error = %e, "cannot check a reader lease; honouring it");
            }
        }
        let age = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age > LEASE_MAX_AGE {
            tracing::warn!(lease = %path.display(), age_s = age.as_secs(), "a reader lease is older than the maximum; no longer honoured");
            continue;
        }
        let mut text = String::new();
        let version = f
            .read_to_string(&mut text)
            .ok()
            .and_then(|_| text.trim().parse::<u64>().ok())
            .unwrap_or(0);
        out.push(version);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_pins_until_dropped_and_a_stale_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(pinned_versions(dir.path()).is_empty());
        let mut lease = Lease::acquire(dir.path()).unwrap();
        assert_eq!(pinned_versions(dir.path()), vec![0]);
        lease.set_version(7).unwrap();
        assert_eq!(pinned_versions(dir.path()), vec![7]);
        // Seen through another spelling of the directory (a reader that
        // opened `./data`, a writer `/abs/data`): still this process's
        // lease, not probed (the probe's close would drop its lock).
        let other = dir.path().join(READERS_DIR).join("..");
        assert_eq!(pinned_versions(&other), vec![7]);
        assert_eq!(pinned_versions(dir.path()), vec![7], "still held");
        drop(lease);
        assert!(pinned_versions(dir.path()).is_empty());
        // A lease file nobody holds (its reader was killed).
        let stale = dir.path().join(READERS_DIR).join("1-2-3.lease");
        std::fs::write(&stale, "00000000000000000003\n").unwrap();
        assert!(pinned_versions(dir.path()).is_empty());
        assert!(!stale.exists());
    }

    /// A lease held by another process (its POSIX record lock taken by
    /// Python's `fcntl.lockf`, which is the same kind of lock) is live
    /// until that process dies, kill -9 included.
    #[test]
    fn a_lease_of_another_process_is_honoured_until_it_dies() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join(READERS_DIR);
        std::fs::create_dir_all(&leases).unwrap();
        let file = leases.join("999-1-2.lease");
        std::fs::write(&file, "00000000000000000005\n").unwrap();
        let script = "import fcntl,sys,time\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(60)\n";
        let mut child = match std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("python3 is needed for this test: {e}"),
        };
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        for _ in 0..3 {
            assert_eq!(pinned_versions(dir.path()), vec![5]);
            assert!(file.exists(), "a live lease is kept");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(pinned_versions(dir.path()).is_empty());
        assert!(!file.exists(), "the dead reader's lease is removed");
    }
}
