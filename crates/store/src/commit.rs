//! The one commit path. Every change of state — an ingest flush, a deletion,
//! (later) a compaction swap, a project drop — builds a [`Transaction`] and
//! ends in [`Transaction::commit`]; nothing else writes a manifest.
//!
//! ```text
//!  begin()                     take the commit lock; base = current version
//!   │  op-specific changes      new parts, new bitmaps, requests, flushed_seq
//!   ▼
//!  commit()
//!   1. write the tombstone file (one file, one bitmap per changed part); fsync
//!   2. write manifest version base+1 (create-only); fsync file and directory
//!      ── the commit point: a crash before it leaves the base version, after
//!         it the new one; files of a crashed commit are swept at open
//!   3. publish: under the state lock, swap the version, hide memtable rows,
//!      drop the flushed memtable — one step, so snapshots see all or nothing
//!   4. retire what the new version no longer references; GC
//! ```
//!
//! Commits are serialized by the commit lock. Lock order: commit lock, then
//! state lock; never the reverse.
//!
//! Conflicts (this issue's operations; compaction joins in the next):
//!
//! | concurrent with   | append                      | delete                    | flush                                    |
//! |-------------------|-----------------------------|---------------------------|------------------------------------------|
//! | **append**        | ordered by `_seq`           | rows at or above the cut-off are never hidden | append goes to the new memtable |
//! | **delete**        | —                           | serialized by commit lock | rows hidden after the flush wrote its parts are remapped onto the new parts at commit |
//! | **flush**         | —                           | —                         | serialized by the flush lock             |

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};

use croaring::{Bitmap, Treemap};

use crate::error::{Result, StoreError};
use crate::format::{
    encode_manifest, encode_tombstones, manifest_path, tombstone_path, Manifest, TombstoneRef,
};
use crate::index::DistinctIdIndex;
use crate::memtable::Memtable;
use crate::part::{read_postings, WrittenPart};
use crate::store::{now_us, Inner, Version};

/// State guarded by the commit lock.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    /// The distinct-id index once a deletion (or an empty store at open)
    /// has installed it; from then on every flush commit adds its parts.
    pub index: Option<DistinctIdIndex>,
}

struct FlushPublish {
    memtable_id: u64,
    wal_segments: Vec<u64>,
    parts: Vec<WrittenPart>,
}

/// A change of state being built under the commit lock.
pub(crate) struct Transaction<'a> {
    inner: &'a Inner,
    guard: MutexGuard<'a, CommitState>,
    base: Arc<Version>,
    pub manifest: Manifest,
    changed: BTreeMap<u64, Bitmap>,
    mem_hide: Treemap,
    flush: Option<FlushPublish>,
    part_pos: Option<HashMap<u64, usize>>,
}

impl<'a> Transaction<'a> {
    pub fn begin(inner: &'a Inner) -> Result<Self> {
        let guard = inner
            .commit
            .lock()
            .map_err(|_| StoreError::Internal("commit lock poisoned".into()))?;
        let base = inner.current_version()?;
        let manifest = base.manifest.clone();
        Ok(Transaction {
            inner,
            guard,
            base,
            manifest,
            changed: BTreeMap::new(),
            mem_hide: Treemap::new(),
            flush: None,
            part_pos: None,
        })
    }

    /// Position of part `id` in `self.manifest.parts`.
    pub fn part_index(&mut self, id: u64) -> Option<usize> {
        let parts = &self.manifest.parts;
        self.part_pos
            .get_or_insert_with(|| parts.iter().enumerate().map(|(i, p)| (p.id, i)).collect())
            .get(&id)
            .copied()
    }

    /// The bitmap of a part as of this transaction.
    pub fn bitmap(&self, part_id: u64) -> Option<&Bitmap> {
        self.changed
            .get(&part_id)
            .or_else(|| self.base.tombstones.get(&part_id).map(|b| &**b))
    }

    /// Replace a part's bitmap (must be a superset of its current one).
    pub fn set_bitmap(&mut self, part_id: u64, bitmap: Bitmap) {
        self.changed.insert(part_id, bitmap);
    }

    /// Hide memtable rows (by `_seq`) when this transaction publishes.
    pub fn hide_mem_rows(&mut self, seqs: &[u64]) {
        for s in seqs {
            self.mem_hide.add(*s);
        }
    }

    /// The distinct-id index. At open, a background thread builds it (see
    /// [`crate::index::BackgroundBuild`]); the first deletion waits for that
    /// build, adds the parts committed since it started, and keeps it. If
    /// there was no build, or it failed, the index is built here.
    pub fn index(&mut self) -> Result<&DistinctIdIndex> {
        if self.guard.index.is_none() {
            let started = std::time::Instant::now();
            let idx = match self.inner.index_build.wait() {
                Some((mut idx, covered)) => {
                    let missing: Vec<_> = self
                        .manifest
                        .parts
                        .iter()
                        .filter(|p| !covered.contains(&p.id))
                        .collect();
                    for p in &missing {
                        let postings = read_postings(&self.inner.storage, p)?;
                        idx.add(p.table, p.project_id, p.id, &postings);
                    }
                    tracing::info!(
                        keys = idx.len(),
                        caught_up_parts = missing.len(),
                        waited_ms = started.elapsed().as_millis() as u64,
                        "took the distinct-id index built at open"
                    );
                    idx
                }
                None => {
                    let idx = DistinctIdIndex::build(&self.inner.storage, &self.manifest)?;
                    tracing::info!(
                        keys = idx.len(),
                        parts = self.manifest.parts.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "built distinct-id index"
                    );
                    idx
                }
            };
            self.guard.index = Some(idx);
        }
        self.guard
            .index
            .as_ref()
            .ok_or_else(|| StoreError::Internal("index missing after build".into()))
    }

    /// Make a flushed memtable's parts live; rows of it hidden after the parts
    /// were written (`deleted_at_write`) become tombstones of the new parts.
    pub fn add_flushed(
        &mut self,
        mem: &Memtable,
        parts: Vec<WrittenPart>,
        deleted_at_write: &Treemap,
    ) -> Result<()> {
        let now_deleted = self.inner.mem_deleted()?;
        let mut late = Vec::new();
        for seq in now_deleted.iter() {
            if seq >= mem.seq_start && seq < mem.seq_end && !deleted_at_write.contains(seq) {
                late.push(seq);
            }
        }
        if !late.is_empty() {
            let mut pos: HashMap<u64, (u64, u32)> = HashMap::new();
            for p in &parts {
                for (i, s) in p.seqs.iter().enumerate() {
                    pos.insert(*s, (p.meta.id, i as u32));
                }
            }
            let mut bitmaps: BTreeMap<u64, Bitmap> = BTreeMap::new();
            for seq in late {
                let (part, at) = pos.get(&seq).copied().ok_or_else(|| {
                    StoreError::Internal(format!("deleted row {seq} missing from flushed parts"))
                })?;
                bitmaps.entry(part).or_default().add(at);
            }
            tracing::debug!(
                parts = bitmaps.len(),
                "remapped late deletions onto flushed parts"
            );
            self.changed.extend(bitmaps);
        }
        for p in &parts {
            self.manifest.parts.push(p.meta.clone());
        }
        self.manifest.parts.sort_by(|a, b| {
            (a.table, a.project_id, a.day, a.id).cmp(&(b.table, b.project_id, b.day, b.id))
        });
        self.part_pos = None;
        self.manifest.flushed_seq = self.manifest.flushed_seq.max(mem.seq_end);
        self.flush = Some(FlushPublish {
            memtable_id: mem.id,
            wal_segments: mem.wal_segments.clone(),
            parts,
        });
        Ok(())
    }

    /// Write, publish and clean up. Returns the new version.
    pub fn commit(mut self) -> Result<Arc<Version>> {
        let inner = self.inner;
        let mut tombstones = self.base.tombstones.clone();
        if !self.changed.is_empty() {
            let file_id = inner.alloc_file_id();
            let path = tombstone_path(file_id);
            let refs: BTreeMap<u64, &Bitmap> = self.changed.iter().map(|(k, v)| (*k, v)).collect();
            inner
                .storage
                .put_new(&path, encode_tombstones(&refs).into())?;
            crate::failpoint!("commit::after_tombstones");
            let changed = std::mem::take(&mut self.changed);
            for (part_id, bitmap) in changed {
                let i = self.part_index(part_id).ok_or_else(|| {
                    StoreError::Internal(format!("tombstone for unknown part {part_id}"))
                })?;
                self.manifest.parts[i].tombstone = Some(TombstoneRef {
                    file_id,
                    path: path.clone(),
                    deleted: bitmap.cardinality(),
                });
                tombstones.insert(part_id, Arc::new(bitmap));
            }
        }
        let version = self.base.manifest.version + 1;
        self.manifest.version = version;
        self.manifest.committed_at_us = now_us();
        self.manifest.next_file_id = self.manifest.next_file_id.max(inner.peek_file_id());
        self.manifest.next_seq = self.manifest.next_seq.max(inner.next_seq()?);
        let bytes = encode_manifest(&self.manifest)?;
        crate::failpoint!("commit::before_manifest");
        inner
            .storage
            .put_new(&manifest_path(version), bytes.into())?;
        crate::failpoint!("commit::after_manifest");

        let retired: Vec<String> = {
            let new_refs = self.manifest.referenced_paths();
            let mut r: Vec<String> = self
                .base
                .manifest
                .referenced_paths()
                .into_iter()
                .filter(|p| !new_refs.contains(p))
                .collect();
            r.push(manifest_path(self.base.manifest.version));
            r
        };
        let new_version = Arc::new(Version {
            manifest: std::mem::replace(&mut self.manifest, Manifest::empty()),
            tombstones,
        });
        let flush = self.flush.take();
        inner.publish(
            Arc::clone(&new_version),
            &self.mem_hide,
            flush.as_ref().map(|f| f.memtable_id),
        )?;
        if let Some(f) = &flush {
            if let Some(idx) = self.guard.index.as_mut() {
                for p in &f.parts {
                    idx.add(p.meta.table, p.meta.project_id, p.meta.id, &p.postings);
                }
            }
        }
        drop(self.guard);
        inner.gc.retire(retired, version);
        if let Some(f) = &flush {
            if let Err(e) = inner
                .gc
                .remove_wal_segments(&inner.wal_dir, &f.wal_segments)
            {
                tracing::warn!(error = %e, "could not remove flushed ingest-log segments; they are removed at next open");
            }
        }
        if let Err(e) = inner.gc.collect(&inner.storage) {
            tracing::warn!(error = %e, "gc failed; will retry after the next commit");
        }
        Ok(new_version)
    }
}
