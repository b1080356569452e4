//! The operations' own changes to a [`Transaction`]: requests and their
//! lifecycle, project settings and drops, parts added, replaced and
//! removed, tombstone bitmaps, the rows of a flush or a bulk ingest.
//! Nothing is written or published before [`Transaction::commit`].

use std::collections::{BTreeMap, HashMap};

use croaring::{Bitmap, Treemap};

use super::{ensure_index, find_runs, FlushPublish, StagedRuns, Transaction};
use crate::error::{Result, StoreError};
use crate::format::{DeletionRequest, RequestStatus};
use crate::index::{DistinctIdIndex, Posting};
use crate::lifecycle;
use crate::memtable::Memtable;
use crate::part::WrittenPart;
use crate::schema::Table;

impl Transaction<'_> {
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
    pub(super) fn version(&self) -> u64 {
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

    /// Record that request `id` (added by this transaction) leaves its ids
    /// in use ([`crate::DeleteSpec::keeps_ids`]).
    pub fn set_keeps_ids(&mut self, id: u64) {
        if let Some(r) = self.manifest.requests.iter_mut().find(|r| r.id == id) {
            r.keeps_ids = true;
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

    /// The pending requests that hid some of `late`, the rows of `part`
    /// (about to be added) hidden after it was written: a flush's rows
    /// deleted from the buffer meanwhile, or the deletions a rewrite
    /// carries onto its output. Only requests from `first_request` on,
    /// the next request id when the write read what was hidden, can
    /// (an older one hid its rows before, and logical requests are
    /// resolved under the flush and compaction locks); each is asked what
    /// it covers among the late rows ([`Transaction::rows_of`]; a
    /// predicate reads those rows only, not the whole part, since this
    /// runs under the commit lock), so a request lists only the parts
    /// that hold its rows, and its receipt names only those. A predicate that cannot be read from the part lists
    /// it anyway (a receipt that names one file too many rather than a
    /// failed flush).
    pub fn requests_holding(
        &self,
        part: &WrittenPart,
        late: &Bitmap,
        first_request: u64,
    ) -> Vec<u64> {
        let m = &part.meta;
        let mut out = Vec::new();
        for r in self.manifest.requests.iter().filter(|r| {
            r.id >= first_request
                && r.status == RequestStatus::Pending
                && !r.logical
                && r.project_id == m.project_id
                && r.covers_table(m.table)
                && r.cutoff_seq > m.min_seq
        }) {
            let holds = match self.rows_of(part, r, Some(late)) {
                Ok(rows) => rows.and_cardinality(late) > 0,
                Err(e) => {
                    tracing::warn!(request = r.id, part = m.id, error = %e, "could not tell whether a request holds rows of a new part; listing it there");
                    true
                }
            };
            if holds {
                out.push(r.id);
            }
        }
        out
    }

    /// The rows of `part` that request `r` covers, hidden or not: its
    /// distinct ids' runs within its `_seq` range, and what its predicate
    /// matches below its cut-off (read from the written file, only the
    /// rows `within` when given: the predicate's answer may then leave
    /// out rows outside them).
    fn rows_of(
        &self,
        part: &WrittenPart,
        r: &DeletionRequest,
        within: Option<&Bitmap>,
    ) -> Result<Bitmap> {
        let mut mine = Bitmap::new();
        for d in &r.distinct_ids {
            crate::bulk::rows_in(part, d, r.seqs(), &mut mine);
        }
        if let Some(pred) = &r.predicate {
            mine.or_inplace(&crate::by_predicate::match_part_within(
                &self.inner.storage,
                &part.meta,
                pred,
                r.cutoff_seq,
                within,
            )?);
        }
        Ok(mine)
    }

    /// List part `part_id` in each pending request of `ids`: they hold
    /// rows in it.
    pub fn list_part(&mut self, part_id: u64, ids: &[u64]) {
        for r in self
            .manifest
            .requests
            .iter_mut()
            .filter(|r| ids.contains(&r.id) && r.status == RequestStatus::Pending)
        {
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

    /// Make a flushed memtable's parts live; rows of it hidden after the
    /// parts were written (`deleted_at_write`, captured when the next
    /// request id was `first_late_request`) become tombstones of the new
    /// parts, and the requests that hid them list those parts.
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
        let mut holders = Vec::new();
        for p in &parts {
            if let Some(late) = bitmaps.get(&p.meta.id) {
                holders.push((
                    p.meta.id,
                    self.requests_holding(p, late, first_late_request),
                ));
            }
        }
        for p in parts {
            self.add_part(p);
        }
        for (part, bitmap) in bitmaps {
            self.changed.insert(part, bitmap);
        }
        for (part, ids) in holders {
            self.list_part(part, &ids);
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
                // The part and its `.runs` file (which names its
                // distinct ids): neither is ever published.
                self.extra_retired.extend(m.files());
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
                let mine = self.rows_of(&p, r, None)?;
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
                self.list_part(id, &late);
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

    /// Record a project drop at `next_seq`, for bulk ingests in flight
    /// (it takes effect for them when this transaction's manifest is
    /// published).
    pub fn note_drop(&mut self, project_id: i64, next_seq: u64, oldest_reservation: Option<u64>) {
        let drops = &mut self.guard.drops;
        drops.retain(|(_, cut)| oldest_reservation.is_some_and(|o| o < *cut));
        if oldest_reservation.is_some_and(|o| o < next_seq) {
            self.drop_noted = Some((project_id, next_seq));
        }
    }
}
