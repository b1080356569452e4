//! Garbage collection: the only code that removes files.
//!
//! A file is garbage when the current manifest no longer references it
//! (a superseded tombstone version, an old manifest) or when its rows are in
//! committed parts (an ingest-log segment). Objects are *retired* by the
//! commit that stopped referencing them, tagged with that commit's version
//! `V`: every snapshot older than `V` may still read them. [`Gc::collect`]
//! removes a retired object once no live snapshot has a version below `V`.
//!
//! ```text
//!   commit V retires f ──► pending (f, V) ──► no snapshot < V alive ──► delete f
//! ```
//!
//! The race this prevents: a query takes snapshot V-1 and is about to open
//! part f while commit V retires f. Snapshots register their version under
//! the same lock that publishes versions, so either the query registered
//! V-1 first (and f waits for it) or it sees V (and never asks for f).
//!
//! At open, [`Gc::sweep_unreferenced`] removes every object under
//! `manifest/`, `parts/` and `tombstones/` that the recovered manifest does
//! not reference: leftovers of commits that crashed before publishing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::format::{manifest_path, Manifest};
use crate::storage::Storage;
use crate::wal;

#[derive(Debug, Default)]
struct GcState {
    /// Live snapshot versions with their reference counts.
    live: BTreeMap<u64, usize>,
    /// Retired objects: path -> version of the commit that retired it.
    pending: Vec<(String, u64)>,
}

/// Tracks live snapshots and retired files.
#[derive(Debug, Default)]
pub struct Gc {
    state: Mutex<GcState>,
    /// Set when a written file may be left on disk unreferenced (a failed
    /// discard, a failed commit): until the sweep at the next open, no
    /// deletion request may be marked purged, since such a file can hold
    /// copies of rows.
    orphans: std::sync::atomic::AtomicBool,
}

/// Keeps a snapshot's version registered while alive.
#[derive(Debug)]
pub struct LiveGuard {
    gc: Arc<Gc>,
    version: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.gc.state.lock() {
            if let Some(c) = s.live.get_mut(&self.version) {
                *c -= 1;
                if *c == 0 {
                    s.live.remove(&self.version);
                }
            }
        }
    }
}

impl Gc {
    /// Register a snapshot of `version`. Call under the lock that publishes versions.
    pub fn register(self: &Arc<Self>, version: u64) -> LiveGuard {
        if let Ok(mut s) = self.state.lock() {
            *s.live.entry(version).or_default() += 1;
        }
        LiveGuard {
            gc: Arc::clone(self),
            version,
        }
    }

    /// Oldest live snapshot version.
    pub fn oldest_live(&self) -> Option<u64> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.live.keys().next().copied())
    }

    /// Retire objects no longer referenced as of commit `version`.
    pub fn retire(&self, paths: impl IntoIterator<Item = String>, version: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.pending.extend(paths.into_iter().map(|p| (p, version)));
        }
    }

    /// Number of retired objects still waiting for old snapshots.
    pub fn pending(&self) -> usize {
        self.state.lock().map_or(0, |s| s.pending.len())
    }

    /// Remove every retired object no live snapshot can read.
    pub fn collect(&self, storage: &Storage) -> Result<usize> {
        let ready: Vec<String> = {
            let Ok(mut s) = self.state.lock() else {
                return Ok(0);
            };
            let oldest = s.live.keys().next().copied();
            let (ready, keep): (Vec<_>, Vec<_>) = s
                .pending
                .drain(..)
                .partition(|(_, v)| oldest.is_none_or(|o| o >= *v));
            s.pending = keep;
            ready.into_iter().map(|(p, _)| p).collect()
        };
        let mut removed = 0;
        let mut failed = Vec::new();
        for p in ready {
            crate::failpoint!("gc::before_delete");
            match storage.delete(&p) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %p, error = %e, "gc: could not remove file; will retry");
                    failed.push(p);
                }
            }
        }
        if !failed.is_empty() {
            if let Ok(mut s) = self.state.lock() {
                s.pending.extend(failed.into_iter().map(|p| (p, 0)));
            }
        }
        Ok(removed)
    }

    /// Remove a file that was written but never published (the output of
    /// an abandoned compaction task). No manifest references it, so no
    /// snapshot can read it. A failure is logged; the sweep at the next
    /// open removes it.
    pub fn discard(&self, storage: &Storage, path: &str) {
        if let Err(e) = storage.delete(path) {
            self.mark_orphans();
            tracing::warn!(path, error = %e, "could not remove an unpublished file; it is removed at next open");
        }
    }

    /// Record that an unreferenced file may be on disk until the next open.
    pub fn mark_orphans(&self) {
        self.orphans
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether an unreferenced file may be on disk (see [`Gc::mark_orphans`]).
    pub fn orphans_possible(&self) -> bool {
        self.orphans.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Remove ingest-log segments whose rows are all in committed parts.
    pub fn remove_wal_segments(&self, dir: &Path, ids: &[u64]) -> Result<()> {
        for id in ids {
            let p = wal::segment_path(dir, *id);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::StoreError::io(p.display(), e)),
            }
        }
        if !ids.is_empty() {
            crate::storage::sync_dir(dir)?;
        }
        Ok(())
    }

    /// At open: remove objects the recovered manifest does not reference,
    /// including staged uploads of interrupted writes.
    pub fn sweep_unreferenced(&self, storage: &Storage, manifest: &Manifest) -> Result<usize> {
        let referenced = manifest.referenced_paths();
        let current = manifest_path(manifest.version);
        let mut removed = 0;
        for prefix in ["parts", "tombstones", "manifest"] {
            for obj in storage.list(prefix)? {
                let p = obj.location.to_string();
                if p == current || referenced.contains(&p) {
                    continue;
                }
                tracing::info!(path = %p, "removing unreferenced file");
                storage.delete(&p)?;
                removed += 1;
            }
        }
        for p in storage.local_staging_leftovers() {
            tracing::info!(path = %p.display(), "removing interrupted upload");
            if std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
