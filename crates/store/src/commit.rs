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
//! Besides the operation's own changes, every commit applies three rules:
//!
//! * a part whose rows are all deleted leaves the manifest (its file is
//!   retired, so a deletion of a whole part is physical at once);
//! * a part that leaves the manifest leaves each deletion request's `parts`
//!   list and its path joins the request's `awaiting_removal` (the
//!   lifecycle then waits until the file is gone);
//! * every file the base version referenced, or this transaction wrote,
//!   that the new version does not reference is retired to GC.
//!
//! ## Conflict matrix
//!
//! Append, delete and drop are atomic under locks; flush, purge and merge
//! read and write for a while *before* taking the commit lock, so the
//! question for each pair is what happens when the other operation commits
//! while they are in flight. "Compaction" is purge or merge.
//!
//! | in flight ↓ / commits meanwhile → | append | delete | flush | compaction | drop | GC |
//! |---|---|---|---|---|---|---|
//! | **append** (state lock) | ordered by `_seq` | cut-off read under the state lock: later rows are never hidden | goes to the new memtable | never touches memtables | rows below the drop's cut-off are hidden; later rows start the project anew | ingest log removed only after its rows are in committed parts |
//! | **delete** (commit lock) | see append | serialized | see flush | see compaction | serialized; a drop removes the request | superseded tombstone files removed after the snapshots that read them |
//! | **flush** | — | rows hidden after the parts were written are remapped onto them through `_seq`; the requests published meanwhile list the new parts | flush lock | disjoint parts: flush adds, compaction replaces what it read | drop holds the flush lock: no flush is in flight | parts are not retired before they are committed; the log after |
//! | **compaction** | — | deletes committed between the read and the swap are carried onto the output through the old→new row map; the requests published meanwhile list the output; never aborts | see flush | compaction lock (one at a time); the swap re-checks its inputs | the swap finds its inputs gone and is abandoned; the output is discarded through GC | inputs stay on disk: the rewrite holds a registered snapshot |
//! | **drop** (flush + commit lock) | see append | serialized | excluded by the flush lock | see compaction | serialized | files retired, removed after older snapshots |
//! | **GC** | — | — | — | — | — | one pass at a time per file list; removing a missing file is not an error |
//!
//! Queries read a snapshot (a published version registered with GC) and
//! are unaffected by any of these. `tests/it/conflicts.rs` (store crate)
//! runs each pair.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

use croaring::{Bitmap, Treemap};

use crate::error::{Result, StoreError};
use crate::format::{
    encode_manifest, encode_tombstones, manifest_path, tombstone_path, DeletionRequest, Manifest,
    RequestStatus, TombstoneRef,
};
use crate::index::{DistinctIdIndex, Posting};
use crate::lifecycle;
use crate::memtable::Memtable;
use crate::part::{read_postings, WrittenPart};
use crate::schema::Table;
use crate::store::{now_us, Inner, Version};

/// State guarded by the commit lock.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    /// The distinct-id index once a deletion (or an empty store at open)
    /// has installed it; from then on every commit that adds parts adds
    /// their runs, and every commit that removes parts marks them dead.
    pub index: Option<DistinctIdIndex>,
    /// Project drops of this process as (project, `next_seq` at the drop),
    /// for bulk ingests in flight across them (bulk.rs). Pruned when no
    /// reservation is older than an entry.
    pub drops: Vec<(i64, u64)>,
    /// Set when a commit failed after its manifest may have been
    /// published: every later commit is refused until the store is
    /// reopened (its base would no longer be the last version).
    pub failed: Option<String>,
}

/// The runs of a bulk ingest's parts in an index of their own, merged
/// into the store's index at the commit instead of adding those parts'
/// runs one by one (one map operation per distinct id, not per run).
struct StagedRuns {
    index: DistinctIdIndex,
    /// The parts whose runs `index` holds.
    parts: HashSet<u64>,
    /// Those of them the commit leaves out (their project was dropped).
    left_out: Vec<u64>,
}

struct FlushPublish {
    memtable_id: u64,
    wal_segments: Vec<u64>,
}

/// A change of state being built under the commit lock.
pub(crate) struct Transaction<'a> {
    inner: &'a Inner,
    guard: MutexGuard<'a, CommitState>,
    base: Arc<Version>,
    /// The manifest being built. Private: every change goes through one of
    /// the typed edits below, and [`Transaction::commit`] checks the
    /// result's invariants ([`Manifest::check_invariants`]) in debug builds.
    manifest: Manifest,
    changed: BTreeMap<u64, Bitmap>,
    mem_hide: Treemap,
    flush: Option<FlushPublish>,
    /// Parts written by this transaction's operation (flush or compaction).
    added: Vec<WrittenPart>,
    part_pos: Option<HashMap<u64, usize>>,
    /// Files written for this transaction that it does not publish.
    extra_retired: Vec<String>,
    /// A bulk ingest's runs, already in an index of their own (bulk.rs).
    staged: Option<StagedRuns>,
    /// Part id -> the parts this transaction wrote in its place (a purge's
    /// or merge's output), for the receipts of the requests it erases.
    replaced_by: HashMap<u64, Vec<u64>>,
}

impl<'a> Transaction<'a> {
    pub fn begin(inner: &'a Inner) -> Result<Self> {
        inner.writable()?;
        let guard = inner
            .commit
            .lock()
            .map_err(|_| StoreError::Internal("commit lock poisoned".into()))?;
        if let Some(f) = &guard.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
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
            added: Vec::new(),
            part_pos: None,
            extra_retired: Vec::new(),
            staged: None,
            replaced_by: HashMap::new(),
        })
    }

    /// The manifest as this transaction has changed it so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Record a new deletion request: it gets the next request id, which
    /// is returned. It must be `pending` and list only live parts.
    pub fn add_request(&mut self, mut request: DeletionRequest) -> u64 {
        debug_assert_eq!(request.status, RequestStatus::Pending);
        let id = self.manifest.next_request_id;
        self.manifest.next_request_id += 1;
        request.id = id;
        request.changed_in_version = self.version();
        self.manifest.requests.push(request);
        id
    }

    /// Cancel logical request `id` at `now_us` ([`lifecycle::cancel`]):
    /// its rows are visible again from the version this commit publishes.
    /// The request, as it was, is returned; an unknown id or a cancel the
    /// lifecycle refuses is [`StoreError::InvalidInput`].
    pub fn cancel_request(&mut self, id: u64, now_us: i64) -> Result<DeletionRequest> {
        let version = self.version();
        let Some(r) = self.manifest.requests.iter_mut().find(|r| r.id == id) else {
            return Err(StoreError::InvalidInput(format!(
                "no deletion request {id}"
            )));
        };
        let before = r.clone();
        lifecycle::cancel(r, now_us)?;
        r.changed_in_version = version;
        Ok(before)
    }

    /// Record that logical request `id` is resolved at `now_us`: the
    /// caller set the bits of its `rows_hidden` rows in `parts` (and hid
    /// its buffered rows) in this transaction.
    pub fn resolve_logical(
        &mut self,
        id: u64,
        now_us: i64,
        rows_hidden: std::collections::BTreeMap<crate::schema::Table, u64>,
        parts: Vec<u64>,
    ) -> Result<()> {
        let version = self.version();
        let r = self
            .manifest
            .requests
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| StoreError::Internal(format!("resolving unknown request {id}")))?;
        lifecycle::mark_resolved(r, now_us, rows_hidden, parts)?;
        r.changed_in_version = version;
        Ok(())
    }

    /// The version this transaction publishes.
    fn version(&self) -> u64 {
        self.base.manifest.version + 1
    }

    /// Set (or reset to the defaults) a project's settings.
    pub fn set_project_settings(&mut self, project_id: i64, s: crate::format::ProjectSettings) {
        if s.is_default() {
            self.manifest.projects.remove(&project_id);
        } else {
            self.manifest.projects.insert(project_id, s);
        }
    }

    /// Forget every request of a dropped project; returns how many.
    pub fn remove_project_requests(&mut self, project_id: i64) -> usize {
        let before = self.manifest.requests.len();
        self.manifest
            .requests
            .retain(|r| r.project_id != project_id);
        before - self.manifest.requests.len()
    }

    /// Record a project drop whose rows below `cutoff_seq` may still be in
    /// the ingest log (replay hides them).
    pub fn add_dropped(&mut self, project_id: i64, cutoff_seq: u64) {
        self.manifest.dropped.push(crate::format::DroppedProject {
            project_id,
            cutoff_seq,
        });
    }

    /// Bind (or unbind) the metadata database's identity.
    pub fn set_metadata_id(&mut self, id: Option<String>) {
        self.manifest.metadata_id = id;
    }

    /// Record the figures of a compaction run.
    pub fn set_last_compaction(&mut self, summary: crate::format::CompactionSummary) {
        self.manifest.last_compaction = Some(summary);
    }

    /// Advance request `id` pending → purged at `now_us` if its purge is
    /// complete as the manifest tells ([`lifecycle::purge_complete`]);
    /// `false` (nothing changed) otherwise.
    pub fn mark_purged(
        &mut self,
        id: u64,
        now_us: i64,
        oldest_reservation: Option<u64>,
    ) -> Result<bool> {
        let flushed = self.manifest.flushed_seq;
        let Some(r) = self.manifest.requests.iter_mut().find(|r| r.id == id) else {
            return Ok(false);
        };
        if !lifecycle::purge_complete(r, flushed, oldest_reservation) {
            return Ok(false);
        }
        lifecycle::mark_purged(r, now_us)?;
        r.changed_in_version = self.base.manifest.version + 1;
        Ok(true)
    }

    /// Advance request `id` purged → verified at `now_us` (its ids become
    /// keyed hashes under the manifest's key, created on first use);
    /// `false` if it is not awaiting verification.
    pub fn mark_verified(&mut self, id: u64, now_us: i64) -> Result<bool> {
        let Some(i) = self.manifest.requests.iter().position(|r| r.id == id) else {
            return Ok(false);
        };
        if !lifecycle::awaits_verification(&self.manifest.requests[i]) {
            return Ok(false);
        }
        if self.manifest.hash_key.is_empty() {
            let a = uuid::Uuid::new_v4().simple().to_string();
            let b = uuid::Uuid::new_v4().simple().to_string();
            self.manifest.hash_key = format!("{a}{b}");
        }
        let key = self.manifest.hash_key.clone();
        lifecycle::mark_verified(&mut self.manifest.requests[i], &key, now_us)?;
        self.manifest.requests[i].changed_in_version = self.version();
        Ok(true)
    }

    /// Publish the receipt chain's new `head`, written for the requests
    /// of `assigned` (request id, receipt number): each records its
    /// number, and its list of erased files moves into the receipt.
    pub fn record_receipts(&mut self, head: crate::receipt::ReceiptHead, assigned: &[(u64, u64)]) {
        self.manifest.receipts_head = Some(head);
        for (id, seq) in assigned {
            if let Some(r) = self.manifest.requests.iter_mut().find(|r| r.id == *id) {
                r.erased_files.clear();
                r.receipt_seq = Some(*seq);
            }
        }
    }

    /// Position of part `id` in `self.manifest.parts`.
    pub fn part_index(&mut self, id: u64) -> Option<usize> {
        let parts = &self.manifest.parts;
        self.part_pos
            .get_or_insert_with(|| parts.iter().enumerate().map(|(i, p)| (p.id, i)).collect())
            .get(&id)
            .copied()
    }

    /// Record a `.runs` file on the entry of part `id` (which has none);
    /// false if the part is not in the manifest.
    pub fn set_part_runs(&mut self, id: u64, runs: crate::runs_file::RunsRef) -> bool {
        match self.part_index(id) {
            Some(i) => {
                let p = &mut self.manifest.parts[i];
                debug_assert!(p.runs.is_none(), "part {id} already has a .runs file");
                p.runs = Some(runs);
                true
            }
            None => false,
        }
    }

    /// Record on request `id` (added by this transaction) the persons
    /// metadata rows removed with it.
    pub fn set_metadata_rows_removed(&mut self, id: u64, rows: u64) {
        if let Some(r) = self.manifest.requests.iter_mut().find(|r| r.id == id) {
            r.metadata_rows_removed = rows;
        }
    }

    /// The table of live part `id`.
    pub fn part_table(&mut self, id: u64) -> Option<crate::schema::Table> {
        let i = self.part_index(id)?;
        Some(self.manifest.parts[i].table)
    }

    /// The bitmap of a part as of this transaction.
    pub fn bitmap(&self, part_id: u64) -> Option<&Bitmap> {
        self.changed
            .get(&part_id)
            .or_else(|| self.base.tombstones.get(&part_id).map(|b| &**b))
    }

    /// Replace a part's bitmap (must be a superset of its current one).
    pub fn set_bitmap(&mut self, part_id: u64, bitmap: Bitmap) {
        debug_assert!(
            self.bitmap(part_id)
                .is_none_or(|old| old.is_subset(&bitmap)),
            "a bitmap of part {part_id} would lose deleted rows"
        );
        self.changed.insert(part_id, bitmap);
    }

    /// Whether this transaction already hides the memtable row `seq`.
    pub fn hides_mem_row(&self, seq: u64) -> bool {
        self.mem_hide.contains(seq)
    }

    /// Hide memtable rows (by `_seq`) when this transaction publishes.
    pub fn hide_mem_rows(&mut self, seqs: &[u64]) {
        for s in seqs {
            self.mem_hide.add(*s);
        }
    }

    /// Remove a part from the manifest (its file is retired at commit).
    pub fn remove_part(&mut self, id: u64) {
        self.manifest.parts.retain(|p| p.id != id);
        self.changed.remove(&id);
        self.part_pos = None;
    }

    /// Record that part `new` (added by this transaction) replaces part
    /// `old` (removed by it): a rewrite's input and output.
    pub fn record_replacement(&mut self, old: u64, new: u64) {
        self.replaced_by.entry(old).or_default().push(new);
    }

    /// Make a written part live.
    pub fn add_part(&mut self, part: WrittenPart) {
        self.manifest.parts.push(part.meta.clone());
        self.added.push(part);
        self.manifest.parts.sort_by(|a, b| {
            (a.table, a.project_id, a.day, a.id).cmp(&(b.table, b.project_id, b.day, b.id))
        });
        self.part_pos = None;
    }

    /// Record that pending requests with id `>= first_request` whose scope
    /// covers `part_id` (same project and table, cut-off above the part's
    /// smallest `_seq`) hold rows in it: used when deletions published
    /// while the part was being written were carried onto it.
    pub fn track_late_requests(&mut self, part_id: u64, first_request: u64) {
        let Some(i) = self.part_index(part_id) else {
            return;
        };
        let p = &self.manifest.parts[i];
        let (table, project, min_seq) = (p.table, p.project_id, p.min_seq);
        for r in self.manifest.requests.iter_mut().filter(|r| {
            r.id >= first_request
                && r.status == RequestStatus::Pending
                && !r.logical
                && r.project_id == project
                && r.covers_table(table)
                && r.cutoff_seq > min_seq
        }) {
            if !r.parts.contains(&part_id) {
                r.parts.push(part_id);
            }
        }
    }

    /// The distinct-id index. At open, a background thread builds it (see
    /// [`crate::index::BackgroundBuild`]); this waits for that build, adds
    /// the parts committed since it started, and keeps it. If there was no
    /// build, or it failed, the index is built here. Deletions call
    /// [`Transaction::find_runs`] instead, which reads `.runs` files while
    /// the build runs.
    pub fn index(&mut self) -> Result<&DistinctIdIndex> {
        ensure_index(self.inner, &mut self.guard, &self.manifest)
    }

    /// The runs of `ids` of `project` in `tables` (see [`find_runs`]).
    pub fn find_runs(
        &mut self,
        project: i64,
        ids: &[String],
        tables: &[Table],
    ) -> Result<Vec<Posting>> {
        find_runs(
            self.inner,
            &mut self.guard,
            &self.manifest,
            project,
            ids,
            tables,
        )
    }

    /// Make a flushed memtable's parts live; rows of it hidden after the parts
    /// were written (`deleted_at_write`, captured when the next request id
    /// was `first_late_request`) become tombstones of the new parts, and
    /// the requests published since then list those parts.
    pub fn add_flushed(
        &mut self,
        mem: &Memtable,
        parts: Vec<WrittenPart>,
        deleted_at_write: &Treemap,
        first_late_request: u64,
    ) -> Result<()> {
        let now_deleted = self.inner.mem_deleted()?;
        let mut late = Vec::new();
        for seq in now_deleted.iter() {
            if seq >= mem.seq_start && seq < mem.seq_end && !deleted_at_write.contains(seq) {
                late.push(seq);
            }
        }
        let mut bitmaps: BTreeMap<u64, Bitmap> = BTreeMap::new();
        if !late.is_empty() {
            let mut pos: HashMap<u64, (u64, u32)> = HashMap::new();
            for p in &parts {
                for (i, s) in p.seqs.iter().enumerate() {
                    pos.insert(*s, (p.meta.id, i as u32));
                }
            }
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
        }
        for p in parts {
            self.add_part(p);
        }
        for (part, bitmap) in bitmaps {
            self.changed.insert(part, bitmap);
            self.track_late_requests(part, first_late_request);
        }
        self.manifest.flushed_seq = self.manifest.flushed_seq.max(mem.seq_end);
        self.flush = Some(FlushPublish {
            memtable_id: mem.id,
            wal_segments: mem.wal_segments.clone(),
        });
        Ok(())
    }

    /// Make a bulk ingest's parts live (bulk.rs). `first_request` was the
    /// next request id when its first `_seq`s were reserved: requests
    /// from it on may cover its rows and are applied to the new parts
    /// (through their runs), and parts of projects dropped since are left
    /// out (their files retired).
    pub fn add_bulk(
        &mut self,
        parts: Vec<WrittenPart>,
        first_request: u64,
        staged: Option<DistinctIdIndex>,
    ) -> Result<crate::bulk::BulkAdded> {
        let mut out = crate::bulk::BulkAdded::default();
        self.staged = staged.map(|index| StagedRuns {
            index,
            parts: parts.iter().map(|p| p.meta.id).collect(),
            left_out: Vec::new(),
        });
        let drops = self.guard.drops.clone();
        for p in parts {
            let m = &p.meta;
            if drops
                .iter()
                .any(|(proj, cut)| *proj == m.project_id && m.max_seq < *cut)
            {
                out.rows_dropped += m.rows;
                self.extra_retired.push(m.path.clone());
                if let Some(s) = &mut self.staged {
                    s.left_out.push(m.id);
                }
                continue;
            }
            let mut hidden = Bitmap::new();
            let mut late: Vec<u64> = Vec::new();
            // Logical requests are left out: reads hide their rows in
            // the new parts as anywhere else, and resolving them later
            // sets their bits (undo.rs); cancelled ones hide nothing.
            for r in self.manifest.requests.iter().filter(|r| {
                r.id >= first_request
                    && !r.logical
                    && r.status != RequestStatus::Cancelled
                    && r.project_id == m.project_id
                    && r.covers_table(m.table)
                    && r.cutoff_seq > m.min_seq
            }) {
                let mut mine = Bitmap::new();
                for d in &r.distinct_ids {
                    crate::bulk::rows_below(&p, d, r.cutoff_seq, &mut mine);
                }
                if let Some(pred) = &r.predicate {
                    mine.or_inplace(&crate::by_predicate::match_part(
                        &self.inner.storage,
                        m,
                        pred,
                        r.cutoff_seq,
                    )?);
                }
                if !mine.is_empty() {
                    hidden.or_inplace(&mine);
                    late.push(r.id);
                }
            }
            let id = m.id;
            out.part_ids.push(id);
            self.add_part(p);
            if !hidden.is_empty() {
                out.rows_hidden += hidden.cardinality();
                self.changed.insert(id, hidden);
                for r in self
                    .manifest
                    .requests
                    .iter_mut()
                    .filter(|r| late.contains(&r.id) && r.status == RequestStatus::Pending)
                {
                    if !r.parts.contains(&id) {
                        r.parts.push(id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Record a bulk ingest as pending under its token (bulk.rs).
    pub fn add_pending_ingest(&mut self, p: crate::format::PendingIngest) -> Result<()> {
        if self
            .manifest
            .pending_ingests
            .iter()
            .any(|q| q.token == p.token)
        {
            return Err(StoreError::InvalidInput(format!(
                "ingest token {:?} is already pending",
                p.token
            )));
        }
        self.manifest.pending_ingests.push(p);
        Ok(())
    }

    /// Resolve a pending ingest: confirm it (its parts become ordinary)
    /// or void it (its parts leave the manifest). `false` if no ingest is
    /// pending under `token`.
    pub fn resolve_pending_ingest(&mut self, token: &str, confirm: bool) -> bool {
        let Some(i) = self
            .manifest
            .pending_ingests
            .iter()
            .position(|p| p.token == token)
        else {
            return false;
        };
        let p = self.manifest.pending_ingests.remove(i);
        if !confirm {
            for id in p.parts {
                self.remove_part(id);
            }
        }
        true
    }

    /// Record a project drop at `next_seq`, for bulk ingests in flight.
    pub fn note_drop(&mut self, project_id: i64, next_seq: u64, oldest_reservation: Option<u64>) {
        let drops = &mut self.guard.drops;
        drops.retain(|(_, cut)| oldest_reservation.is_some_and(|o| o < *cut));
        if oldest_reservation.is_some_and(|o| o < next_seq) {
            drops.push((project_id, next_seq));
        }
    }

    /// Remove fully deleted parts, move parts that left the manifest from
    /// the requests' lists to their `awaiting_removal`. Returns the ids of
    /// the parts that left.
    fn apply_rules(&mut self) -> HashSet<u64> {
        let rows: HashMap<u64, u64> = if self.changed.is_empty() {
            HashMap::new()
        } else {
            self.manifest.parts.iter().map(|p| (p.id, p.rows)).collect()
        };
        let full: Vec<u64> = self
            .changed
            .iter()
            .filter(|(id, b)| rows.get(id).is_some_and(|r| b.cardinality() >= *r))
            .map(|(id, _)| *id)
            .collect();
        for id in full {
            tracing::debug!(part = id, "every row of the part is deleted; removing it");
            self.remove_part(id);
        }
        let live: HashSet<u64> = self.manifest.parts.iter().map(|p| p.id).collect();
        for pi in &mut self.manifest.pending_ingests {
            pi.parts.retain(|id| live.contains(id));
        }
        let mut metas: HashMap<u64, &crate::format::PartMeta> = HashMap::new();
        for p in &self.base.manifest.parts {
            metas.insert(p.id, p);
        }
        for p in &self.added {
            metas.insert(p.meta.id, &p.meta);
        }
        let gone: HashSet<u64> = metas
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        // What replaced a part that left: the output of the rewrite that
        // read it (recorded by `record_replacement`), if still live; none
        // for a part dropped whole.
        let file = |p: &crate::format::PartMeta| crate::receipt::FileHash {
            path: p.path.clone(),
            blake3: p.blake3.clone(),
            size: p.size,
        };
        for r in &mut self.manifest.requests {
            r.parts.retain(|id| {
                if !gone.contains(id) {
                    return true;
                }
                if let Some(p) = metas.get(id) {
                    // The parquet file and its `.runs` file (which holds
                    // the distinct ids): the request waits for both.
                    for f in p.files() {
                        if !r.awaiting_removal.contains(&f) {
                            r.awaiting_removal.push(f);
                        }
                    }
                    let outputs = self.replaced_by.get(id);
                    let replaced_by = self
                        .added
                        .iter()
                        .map(|a| &a.meta)
                        .filter(|a| {
                            live.contains(&a.id) && outputs.is_some_and(|o| o.contains(&a.id))
                        })
                        .map(file)
                        .collect();
                    r.erased_files.push(crate::receipt::ErasedFile {
                        file: file(p),
                        replaced_by,
                    });
                }
                false
            });
        }
        gone
    }

    /// Write, publish and clean up. Returns the new version.
    pub fn commit(mut self) -> Result<Arc<Version>> {
        let inner = self.inner;
        let gone = self.apply_rules();
        // Rows below the oldest buffered row (or below `next_seq` when
        // nothing is buffered) are all in parts: bulk ingests write theirs
        // directly, so `flushed_seq` also moves without a flush.
        self.manifest.flushed_seq = self.manifest.flushed_seq.max(inner.oldest_unflushed_seq()?);
        let flushed = self.manifest.flushed_seq;
        self.manifest.dropped.retain(|d| d.cutoff_seq > flushed);
        let mut tombstones = self.base.tombstones.clone();
        tombstones.retain(|id, _| !gone.contains(id));
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
        debug_assert_eq!(self.manifest.check_invariants(), Ok(()));
        let retired: Vec<String> = {
            let new_refs = self.manifest.referenced_paths();
            let old: BTreeSet<String> = self
                .base
                .manifest
                .referenced_paths()
                .into_iter()
                .chain(self.added.iter().flat_map(|p| p.meta.files()))
                .collect();
            let mut r: Vec<String> = old.into_iter().filter(|p| !new_refs.contains(p)).collect();
            r.append(&mut self.extra_retired);
            r.push(manifest_path(self.base.manifest.version));
            r
        };
        if inner.storage.is_remote() {
            // The retention window of an object store's GC runs from
            // here, durably: a later process (a one-shot command) removes
            // them when it is over (gc.rs).
            self.manifest.retired = crate::gc::carry_retired(
                &self.base.manifest.retired,
                &retired,
                &self.manifest.referenced_paths(),
                inner.opts.object_retention,
                self.manifest.committed_at_us,
            );
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.manifest.commit_token.clone_from(&token);
        if inner.storage.is_remote() {
            self.manifest.writer_id = Some(inner.writer_id.clone());
        }
        let bytes = encode_manifest(&self.manifest)?;
        crate::failpoint!("commit::before_manifest");
        if let Some(lease) = &inner.writer_lease {
            // An object store's writer lease must outlast this commit.
            lease.check()?;
        }
        let still_writer = || -> Result<Option<std::time::Duration>> {
            inner.writer_lease.as_ref().map(|l| l.check()).transpose()
        };
        let published = inner.storage.publish_manifest(
            &manifest_path(version),
            bytes.into(),
            &token,
            &still_writer,
        );
        if let Ok(crate::remote::Published::Conflict) = published {
            let why = format!(
                "manifest version {version} was published by another writer; this handle's commit did not happen; reopen the store"
            );
            tracing::error!(%why, "the store refuses commits until it is reopened");
            self.guard.failed = Some(why.clone());
            return Err(StoreError::Unavailable(why));
        }
        if let Err(e) = published {
            // A failure after the rename (the directory's fsync) leaves
            // the manifest in place: the commit may have happened. Every
            // later commit would build on a base that is no longer the
            // last version (and receipts past it would be rewritten), so
            // the store refuses writes until it is reopened. On an object
            // store the error already means the outcome is unknown.
            if inner.storage.is_remote()
                || inner
                    .storage
                    .exists(&manifest_path(version))
                    .unwrap_or(true)
            {
                let why = format!(
                    "manifest version {version} may be published but its commit failed ({e}); reopen the store"
                );
                tracing::error!(%why, "the store refuses commits until it is reopened");
                self.guard.failed = Some(why);
            }
            return Err(e);
        }
        crate::failpoint!("commit::after_manifest");

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
        if let Some(idx) = self.guard.index.as_mut() {
            let staged = self.staged.take();
            let is_staged = |id: &u64| staged.as_ref().is_some_and(|s| s.parts.contains(id));
            for p in self
                .added
                .iter()
                .filter(|p| !gone.contains(&p.meta.id) && !is_staged(&p.meta.id))
            {
                idx.add(p.meta.table, p.meta.project_id, p.meta.id, &p.postings);
            }
            let mut dead: Vec<u64> = gone.iter().copied().collect();
            if let Some(s) = staged {
                idx.merge(s.index);
                dead.extend(s.left_out);
            }
            let live = new_version.manifest.parts.len();
            idx.retire_parts(dead, live);
        }
        drop(self.guard);
        // A path referenced again (a `.runs` file rewritten at its part's
        // path by a backfill) must leave GC's list of what to remove.
        if inner.gc.pending() > 0 {
            inner
                .gc
                .keep_referenced(&new_version.manifest.referenced_paths());
        }
        inner.gc.retire(retired, version);
        if let Some(f) = &flush {
            if let Err(e) =
                inner
                    .gc
                    .remove_wal_segments(&*inner.opts.fs, &inner.wal_dir, &f.wal_segments)
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

/// The runs of `ids` of `project` in `tables` (some may be of parts no
/// longer in `manifest`: callers keep the live ones). Without an
/// in-memory index — while the one started at open is being built, or
/// with [`crate::StoreOptions::in_memory_index`] off — from the parts'
/// `.runs` files, so that a deletion right after open does not wait;
/// from the index otherwise, or when a part has no usable `.runs` file
/// (it is then built or waited for here).
pub(crate) fn find_runs(
    inner: &Inner,
    guard: &mut MutexGuard<'_, CommitState>,
    manifest: &Manifest,
    project: i64,
    ids: &[String],
    tables: &[Table],
) -> Result<Vec<Posting>> {
    if files_first(inner, guard) {
        if let Some(found) =
            crate::index::runs_from_files(&inner.storage, manifest, project, ids, tables)
        {
            return Ok(found);
        }
    }
    index_runs(inner, guard, manifest, project, ids, tables)
}

/// [`find_runs`] through the in-memory index only (built or waited for
/// here, covering `manifest`).
pub(crate) fn index_runs(
    inner: &Inner,
    guard: &mut MutexGuard<'_, CommitState>,
    manifest: &Manifest,
    project: i64,
    ids: &[String],
    tables: &[Table],
) -> Result<Vec<Posting>> {
    let index = ensure_index(inner, guard, manifest)?;
    let mut found = Vec::new();
    for t in tables {
        for d in ids {
            found.extend_from_slice(index.lookup(*t, project, d));
        }
    }
    Ok(found)
}

/// Whether runs are looked up in `.runs` files before the in-memory
/// index: there is none yet, and none is wanted or the one started at
/// open is still being built.
pub(crate) fn files_first(inner: &Inner, guard: &MutexGuard<'_, CommitState>) -> bool {
    guard.index.is_none() && (!inner.opts.in_memory_index || inner.index_build.is_running())
}

/// The distinct-id index, under the commit lock (`guard`), covering the
/// parts of `manifest` (the version being built or the current one): the
/// one built at open (caught up with the parts committed since), or one
/// built here if there was no build or it failed. Kept in `guard`.
pub(crate) fn ensure_index<'g>(
    inner: &Inner,
    guard: &'g mut MutexGuard<'_, CommitState>,
    manifest: &Manifest,
) -> Result<&'g DistinctIdIndex> {
    if guard.index.is_none() {
        let started = std::time::Instant::now();
        let idx = match inner.index_build.wait() {
            Some((mut idx, covered)) => {
                let missing: Vec<_> = manifest
                    .parts
                    .iter()
                    .filter(|p| !covered.contains(&p.id))
                    .collect();
                for p in &missing {
                    let postings = read_postings(&inner.storage, p)?;
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
                let idx = DistinctIdIndex::build(&inner.storage, manifest)?;
                tracing::info!(
                    keys = idx.len(),
                    parts = manifest.parts.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "built distinct-id index"
                );
                idx
            }
        };
        guard.index = Some(idx);
    }
    guard
        .index
        .as_ref()
        .ok_or_else(|| StoreError::Internal("index missing after build".into()))
}
