//! [`Snapshot`]: a consistent, immutable view of the store for one query
//! (a published version, registered with GC so that its files stay, plus
//! the durable buffered rows), and what a read must leave out of it: each
//! part's tombstone bits and the rows of logical requests (`undo.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use croaring::Bitmap;

use crate::error::Result;
use crate::format::{DeletionRequest, Manifest, PartMeta};
use crate::gc::LiveGuard;
use crate::memtable::{without_deleted, Chunk};
use crate::schema::Table;
use crate::storage::Storage;
use crate::store::{poisoned, Store, Version};

impl Store {
    /// A consistent view for queries. Files it references stay on disk while it lives.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let inner = self.inner();
        let (version, chunks, deleted, guard) = {
            let st = inner.state.lock().map_err(poisoned)?;
            let durable = inner.durable_seq.load(Ordering::Acquire);
            let chunks: Vec<Arc<Chunk>> = st
                .frozen
                .iter()
                .flat_map(|m| m.chunks.iter())
                .chain(st.active.chunks.iter())
                .filter(|c| c.seq_end() <= durable)
                .cloned()
                .collect();
            let guard = inner.gc.register(st.version.manifest.version);
            (
                Arc::clone(&st.version),
                chunks,
                Arc::clone(&st.mem_deleted),
                guard,
            )
        };
        let logical = crate::undo::logical_requests(&version.manifest.requests);
        let deleted = if logical.is_empty() {
            deleted
        } else {
            let mut all = (*deleted).clone();
            crate::undo::hide_buffered(&logical, chunks.iter(), &mut all)?;
            Arc::new(all)
        };
        let mut mem: BTreeMap<Table, Vec<RecordBatch>> = BTreeMap::new();
        for c in chunks {
            if let Some(b) = without_deleted(&c.batch, c.seq_start, &deleted)? {
                mem.entry(c.table).or_default().push(b);
            }
        }
        Ok(Snapshot::of(inner, version, mem, logical, guard))
    }
}

/// How many versions read back by [`Store::snapshot_at`] stay in memory.
const READ_VERSIONS_KEPT: usize = 4;

impl Store {
    /// The view of the published version `version` a worker of a
    /// distributed query reads (`elide-distributed`): its parts, their
    /// tombstones and its logical requests, without buffered rows (they
    /// belong to no version; the coordinator's plan carries them). The
    /// store's current version is served from memory; an older or newer
    /// one (another process's writer committed since this store read) is
    /// read from storage, and an error comes back when it is no longer
    /// there (its manifest retired by GC): a reader of a version never
    /// falls back to another. The last few versions read are kept (a
    /// version never changes once published).
    pub fn snapshot_at(&self, version: u64) -> Result<Snapshot> {
        let inner = self.inner();
        // Registered under the state lock, as `snapshot` does: GC never
        // sees the current version unguarded between the two.
        let (current, guard) = {
            let st = inner.state.lock().map_err(poisoned)?;
            (Arc::clone(&st.version), inner.gc.register(version))
        };
        let cached = || -> Result<Option<Arc<Version>>> {
            let read = inner.read_versions.lock().map_err(poisoned)?;
            Ok(read.iter().find(|v| v.manifest.version == version).cloned())
        };
        let version = if current.manifest.version == version {
            current
        } else if let Some(v) = cached()? {
            v
        } else {
            let path = crate::format::manifest_path(version);
            let manifest = crate::open::read_manifest(&inner.storage, &path).map_err(|e| {
                if e.is_not_found() {
                    crate::StoreError::Unavailable(format!(
                        "version {version} of the store is no longer on storage (its manifest was retired); plan the query again"
                    ))
                } else {
                    e
                }
            })?;
            let tombstones = crate::open::load_tombstones(&inner.storage, &manifest)?;
            let v = Arc::new(Version {
                manifest,
                tombstones,
            });
            let mut read = inner.read_versions.lock().map_err(poisoned)?;
            read.retain(|r| r.manifest.version != version);
            read.push(Arc::clone(&v));
            if read.len() > READ_VERSIONS_KEPT {
                read.remove(0);
            }
            v
        };
        let logical = crate::undo::logical_requests(&version.manifest.requests);
        Ok(Snapshot::of(
            inner,
            version,
            BTreeMap::new(),
            logical,
            guard,
        ))
    }
}

/// A consistent, immutable view of the store for one query.
pub struct Snapshot {
    version: Arc<Version>,
    mem: BTreeMap<Table, Vec<RecordBatch>>,
    storage: Storage,
    store_id: String,
    /// The version's logical requests (undo.rs): hidden when read.
    logical: Vec<DeletionRequest>,
    cache: Arc<crate::undo::LogicalCache>,
    scans: crate::store::ScanActivity,
    _guard: LiveGuard,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version.manifest.version)
            .finish()
    }
}

impl Snapshot {
    /// A snapshot of `inner`'s `version` with buffered rows `mem`.
    fn of(
        inner: &crate::store::Inner,
        version: Arc<Version>,
        mem: BTreeMap<Table, Vec<RecordBatch>>,
        logical: Vec<DeletionRequest>,
        guard: LiveGuard,
    ) -> Snapshot {
        Snapshot {
            version,
            mem,
            storage: inner.storage.clone(),
            store_id: inner.store_id.clone(),
            logical,
            cache: Arc::clone(&inner.logical),
            scans: inner.scans.clone(),
            _guard: guard,
        }
    }

    /// Count a part file a query reads from this snapshot, while the guard
    /// lives: the store's throttled compaction yields the CPU meanwhile.
    pub fn scan_guard(&self) -> crate::store::ScanGuard {
        self.scans.guard()
    }

    /// Manifest version of this snapshot.
    pub fn version(&self) -> u64 {
        self.version.manifest.version
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.version.manifest
    }

    /// Live parts of `table` that queries see: every part of the manifest
    /// but those of a two-phase ingest not yet confirmed (`bulk.rs`),
    /// which become visible at once when it is.
    pub fn parts(&self, table: Table) -> impl Iterator<Item = &PartMeta> {
        let m = &self.version.manifest;
        m.parts
            .iter()
            .filter(move |p| p.table == table && !m.is_pending_part(p.id))
    }

    /// The tombstone bitmap of a part (deleted row positions), if any.
    /// Rows hidden by a logical request (an undo window, a predicate
    /// being resolved) are not in it: reads use [`Snapshot::hidden`].
    pub fn tombstone(&self, part_id: u64) -> Option<&Arc<Bitmap>> {
        self.version.tombstones.get(&part_id)
    }

    /// The rows of `part` a read must leave out: its tombstone and what
    /// the snapshot's logical requests match (computed on first use and
    /// cached; reads the part's predicate columns then). `None`: none.
    ///
    /// Fails closed: a part whose manifest counts deleted rows that its
    /// tombstone in this snapshot does not hold is an error, never a
    /// read of those rows (every reader — the scan, a shipped plan, the
    /// Delta export — gets this check here).
    pub fn hidden(&self, part: &PartMeta) -> Result<Option<Arc<Bitmap>>> {
        let bits = self.version.tombstones.get(&part.id);
        let held = bits.map_or(0, |b| b.cardinality());
        if held < part.deleted() {
            return Err(crate::StoreError::corrupt(
                &part.path,
                format!(
                    "the manifest counts {} deleted rows but the snapshot's tombstone holds {held}; refusing to read it",
                    part.deleted()
                ),
            ));
        }
        if self.logical.is_empty() {
            return Ok(bits.cloned());
        }
        crate::undo::hidden_in_part(&self.storage, &self.cache, &self.logical, part, bits)
    }

    /// Rows of `part` a read returns.
    pub fn live_rows(&self, part: &PartMeta) -> Result<u64> {
        if self.logical.is_empty() {
            return Ok(part.live_rows());
        }
        Ok(part.rows - self.hidden(part)?.map_or(0, |b| b.cardinality()))
    }

    /// Whether some rows are hidden by logical requests (their counts are
    /// then not in the manifest's part figures).
    pub fn has_logical_requests(&self) -> bool {
        !self.logical.is_empty()
    }

    /// Buffered rows of `table` (not yet in parts), deletions applied.
    pub fn memtable_batches(&self, table: Table) -> &[RecordBatch] {
        self.mem.get(&table).map_or(&[], |v| v.as_slice())
    }

    /// Storage the parts are read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Id of the store this snapshot belongs to.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Rows visible in `table`.
    pub fn visible_rows(&self, table: Table) -> Result<u64> {
        let mut n = self
            .memtable_batches(table)
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum::<u64>();
        for p in self.parts(table) {
            n += self.live_rows(p)?;
        }
        Ok(n)
    }
}
