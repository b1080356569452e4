//! The flush: a full memtable is frozen (its ingest-log segment rotated)
//! and written as parts by the flusher thread, one commit per memtable;
//! then its log segment is removed.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{poisoned, Inner, State, Version};
use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::PartMeta;
use crate::gc::LiveGuard;
use crate::memtable::Memtable;
use crate::part::write_parts;
use crate::wal;
use crate::worker::FlushMsg;

impl Inner {
    pub(super) fn freeze_locked(&self, st: &mut MutexGuard<'_, State>) -> Result<()> {
        if st.active.rows == 0 {
            return Ok(());
        }
        let seg = st.next_wal_segment;
        if let Err(e) = self.wal()?.rotate(seg) {
            st.failed = Some(format!("ingest log rotation failed: {e}"));
            return Err(e);
        }
        st.next_wal_segment += 1;
        let id = st.next_memtable_id;
        st.next_memtable_id += 1;
        let next_seq = st.next_seq;
        let old = std::mem::replace(&mut st.active, Memtable::new(id, next_seq, Some(seg)));
        st.frozen.push_back(Arc::new(old));
        Ok(())
    }

    /// The flush lock: held, no flush is in flight.
    pub(crate) fn flush_lock(&self) -> &Mutex<()> {
        &self.flush_lock
    }

    /// Wake the background compaction worker (if any) now.
    pub(crate) fn wake_compactor(&self) {
        if let Ok(f) = self.compactor.lock() {
            if let Some((tx, _)) = &*f {
                let _ = tx.send(FlushMsg::Wake);
            }
        }
    }

    pub(super) fn wake_flusher(&self) {
        if let Ok(f) = self.flusher.lock() {
            if let Some((tx, _)) = &*f {
                let _ = tx.send(FlushMsg::Wake);
            }
        }
    }

    /// Freeze the active memtable and flush everything buffered.
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.writable()?;
        let f = self.flush_lock.lock().map_err(poisoned)?;
        self.freeze_for_flush()?;
        self.flush_frozen_locked(&f)
    }

    pub(super) fn freeze_for_flush(&self) -> Result<()> {
        let mut st = self.state.lock().map_err(poisoned)?;
        if let Some(f) = &st.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        self.freeze_locked(&mut st)
    }

    /// The current version, registered with GC: its files stay on disk
    /// while the guard lives.
    pub(crate) fn pinned_version(&self) -> Result<(Arc<Version>, LiveGuard)> {
        let st = self.state.lock().map_err(poisoned)?;
        let guard = self.gc.register(st.version.manifest.version);
        Ok((Arc::clone(&st.version), guard))
    }

    /// Remove ingest-log segments no memtable references (their rows are
    /// in committed parts; a failed removal after a flush leaves them).
    pub(crate) fn sweep_wal(&self) -> Result<usize> {
        let st = self.state.lock().map_err(poisoned)?;
        let live: std::collections::HashSet<u64> = st
            .memtables()
            .flat_map(|m| m.wal_segments.iter().copied())
            .collect();
        let stale: Vec<u64> = wal::list_segments(&self.wal_dir)?
            .into_iter()
            .filter(|s| !live.contains(s))
            .collect();
        self.gc
            .remove_wal_segments(&*self.opts.fs, &self.wal_dir, &stale)?;
        Ok(stale.len())
    }

    /// Flush every frozen memtable, oldest first.
    pub(crate) fn flush_frozen(&self) -> Result<()> {
        let f = self.flush_lock.lock().map_err(poisoned)?;
        self.flush_frozen_locked(&f)
    }

    /// [`Inner::flush_frozen`] with the flush lock already held.
    pub(crate) fn flush_frozen_locked(&self, _flush_lock: &MutexGuard<'_, ()>) -> Result<()> {
        loop {
            // The hidden rows and the next request id are read together:
            // requests published later hide rows only through `mem_deleted`
            // changes this flush's commit sees as late.
            let (mem, deleted, first_late_request) = {
                let st = self.state.lock().map_err(poisoned)?;
                match st.frozen.front() {
                    None => return Ok(()),
                    Some(m) => (
                        Arc::clone(m),
                        Arc::clone(&st.mem_deleted),
                        st.version.manifest.next_request_id,
                    ),
                }
            };
            // While commits are refused (until a reopen), parts written
            // now could never be published.
            crate::commit::commits_allowed(self)?;
            let started = std::time::Instant::now();
            let parts = write_parts(
                &self.storage,
                &self.gc,
                &self.opts.part,
                &mem.chunks,
                &deleted,
                &mut || self.alloc_file_id(),
            )?;
            let n_parts = parts.len();
            let files: Vec<String> = parts.iter().flat_map(|p| p.meta.files()).collect();
            // A failure that certainly published nothing leaves the parts
            // unreferenced: they are removed, not left to a sweep at the
            // next open (a retried flush would leave a memtable's worth
            // each time, and their rows would outlive a verified
            // deletion). A commit that may have published them leaves
            // them to the sweep (`Gc::after_failed_commit`).
            let discard = |e: StoreError| {
                for f in &files {
                    self.gc.discard(&self.storage, f);
                }
                e
            };
            let mut tx = (|| {
                crate::failpoint!("flush::after_write_parts");
                let metas: Vec<&PartMeta> = parts.iter().map(|p| &p.meta).collect();
                self.storage.sync_parts(&metas)?;
                Transaction::begin(self)
            })()
            .map_err(discard)?;
            tx.add_flushed(&mem, parts, &deleted, first_late_request)
                .map_err(discard)?;
            tx.commit()
                .map_err(|e| self.gc.after_failed_commit(&self.storage, e, &files))?;
            tracing::debug!(
                rows = mem.rows,
                parts = n_parts,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "flushed memtable"
            );
        }
    }
}
