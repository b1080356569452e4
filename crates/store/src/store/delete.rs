//! Deletion by distinct id and dropping a project: [`Store::delete`],
//! [`Store::delete_many`], [`Store::drop_project`], and the resolution of
//! one request into a transaction shared by every kind of deletion.
//!
//! A deletion returns when its tombstone file and manifest are durable;
//! from then on no snapshot returns the rows below its cut-off, in parts
//! (found through the distinct-id index) or in buffered rows (found
//! through the memtable's hash index). See docs/deletion-lifecycle.md.

use std::collections::{BTreeMap, HashMap};

use croaring::Bitmap;

use super::{now_us, poisoned, Inner, Store};
use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::{DeletionRequest, RequestKind};
use crate::memtable::{Chunk, Memtable};
use crate::part::read_seqs;
use crate::schema::Table;

/// Most distinct ids one deletion call accepts.
pub const MAX_DELETE_IDS: usize = 1000;

/// What to delete.
#[derive(Debug, Clone)]
pub struct DeleteSpec {
    /// Project of the distinct ids.
    pub project_id: i64,
    /// The distinct ids: up to [`MAX_DELETE_IDS`] for [`Store::delete`],
    /// any number for [`Store::delete_many`].
    pub distinct_ids: Vec<String>,
    /// Delete rows with `_seq` below this; `None` = everything appended before the call.
    pub cutoff: Option<u64>,
    /// ... and at or above this (0: from the first row). The persons
    /// layer sets it for an id that another person held before: that
    /// person's rows of the id stay. At most the cut-off.
    pub floor: u64,
    /// The ids stay in use after the request: past the cut-off their rows
    /// are another holder's or no one's (the persons layer's runs of an
    /// id a reset or a split detached from the person), or still the
    /// same person's (a deletion that keeps the profile). Changes no row;
    /// recorded as [`DeletionRequest::keeps_ids`], and a metadata rebuild
    /// does not block such ids.
    ///
    /// [`DeletionRequest::keeps_ids`]: crate::format::DeletionRequest::keeps_ids
    pub keeps_ids: bool,
    /// Tables to delete from; empty = all tables.
    pub tables: Vec<Table>,
    /// What the request is recorded as: [`RequestKind::DistinctIds`]
    /// (the default) or [`RequestKind::Person`] (the persons layer's
    /// deletions). Deletions of events by predicate go through
    /// [`Store::delete_events`].
    pub kind: RequestKind,
    /// Rows of the persons metadata removed with this deletion (the
    /// persons layer's count, stated by the request's receipt); 0
    /// otherwise. With several requests (more ids than
    /// [`MAX_DELETE_IDS`]) the first one carries it.
    pub metadata_rows_removed: u64,
}

impl DeleteSpec {
    /// Delete every row of `distinct_ids` in `project_id` appended before
    /// the call, in all tables (the common case; set `cutoff` or `tables`
    /// on the result for the others).
    pub fn ids<S: Into<String>>(
        project_id: i64,
        distinct_ids: impl IntoIterator<Item = S>,
    ) -> DeleteSpec {
        DeleteSpec {
            project_id,
            distinct_ids: distinct_ids.into_iter().map(Into::into).collect(),
            cutoff: None,
            floor: 0,
            keeps_ids: false,
            tables: Vec::new(),
            kind: RequestKind::DistinctIds,
            metadata_rows_removed: 0,
        }
    }
}

/// Result of a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The recorded request.
    pub request_id: u64,
    /// Rows newly hidden by this request (for a bridged predicate,
    /// `logical` without `undo_until_us`: those found before the bound).
    pub rows_hidden: u64,
    /// The cut-off used.
    pub cutoff: u64,
    /// When the rows must be gone from disk (µs since the epoch, UTC).
    pub purge_due_by_us: i64,
    /// Hidden by its predicate when read, not yet by tombstone bits (an
    /// undo window, or a predicate resolved in the background; see
    /// `undo.rs`).
    pub logical: bool,
    /// End of the undo window, if the request has one.
    pub undo_until_us: Option<i64>,
}

/// Result of [`Store::drop_project`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropOutcome {
    /// The project.
    pub project_id: i64,
    /// Parts that left the manifest.
    pub parts_removed: usize,
    /// Visible rows removed (parts and buffered rows).
    pub rows_removed: u64,
    /// Bytes of the removed parts.
    pub bytes_removed: u64,
    /// Deletion requests removed.
    pub requests_removed: usize,
}

impl Store {
    /// Hide the rows of `spec.distinct_ids` below the cut-off, in every part and
    /// in buffered rows. Durable and visible to every later snapshot when it returns.
    /// At most [`MAX_DELETE_IDS`] ids; [`Store::delete_many`] takes any number.
    pub fn delete(&self, spec: DeleteSpec) -> Result<DeleteOutcome> {
        self.inner.writable()?;
        let (project, ids, tables) = validate_spec(&spec)?;
        let kind = spec.kind;
        if ids.len() > MAX_DELETE_IDS {
            return Err(StoreError::InvalidInput(format!(
                "a deletion takes at most {MAX_DELETE_IDS} distinct ids, got {}",
                ids.len()
            )));
        }
        let mut tx = Transaction::begin(&self.inner)?;
        let out = self.inner.resolve_deletion(
            &mut tx,
            kind,
            project,
            ids,
            tables,
            spec.cutoff,
            spec.floor,
        )?;
        tx.set_metadata_rows_removed(out.request_id, spec.metadata_rows_removed);
        if spec.keeps_ids {
            tx.set_keeps_ids(out.request_id);
        }
        tx.commit()?;
        tracing::info!(
            request_id = out.request_id,
            rows_hidden = out.rows_hidden,
            project,
            "deletion committed"
        );
        Ok(out)
    }

    /// Delete any number of distinct ids, of any number of projects, in
    /// **one commit** (one tombstone file, one manifest fsync): when it
    /// returns, every row of every spec is hidden from later snapshots;
    /// on an error (a bad spec anywhere is found before anything is
    /// resolved) none is.
    ///
    /// Each spec becomes one deletion request per [`MAX_DELETE_IDS`] ids
    /// (requests are tracked, purged and verified separately); the
    /// outcomes are returned in order, chunk by chunk. Ids are resolved a
    /// chunk at a time, so memory grows with the rows hidden (as bitmaps),
    /// not with the product of ids and parts. Empty input commits nothing.
    /// Specs without a cut-off of their own share one: rows appended
    /// before the call.
    ///
    /// ```no_run
    /// # fn f(store: &elide_store::Store) -> elide_store::Result<()> {
    /// use elide_store::DeleteSpec;
    /// let outcomes = store.delete_many([
    ///     DeleteSpec::ids(1, ["user-1", "user-2"]),
    ///     DeleteSpec::ids(2, (0..5000).map(|i| format!("anon-{i}"))), // 5 requests
    /// ])?;
    /// let hidden: u64 = outcomes.iter().map(|o| o.rows_hidden).sum();
    /// # Ok(()) }
    /// ```
    pub fn delete_many(
        &self,
        specs: impl IntoIterator<Item = DeleteSpec>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.inner.writable()?;
        let mut checked = Vec::new();
        for spec in specs {
            let (project, ids, tables) = validate_spec(&spec)?;
            checked.push((
                spec.kind,
                project,
                ids,
                tables,
                (spec.cutoff, spec.floor, spec.keeps_ids),
                spec.metadata_rows_removed,
            ));
        }
        if checked.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = Transaction::begin(&self.inner)?;
        // One cut-off for the whole call ("appended before it").
        let now_seq = self.inner.next_seq()?;
        let mut out = Vec::new();
        for (kind, project, ids, tables, (cutoff, floor, keeps_ids), metadata_rows) in checked {
            let cutoff = Some(cutoff.unwrap_or(now_seq));
            for (i, chunk) in ids.chunks(MAX_DELETE_IDS).enumerate() {
                let o = self.inner.resolve_deletion(
                    &mut tx,
                    kind,
                    project,
                    chunk.to_vec(),
                    tables.clone(),
                    cutoff,
                    floor,
                )?;
                if i == 0 {
                    tx.set_metadata_rows_removed(o.request_id, metadata_rows);
                }
                if keeps_ids {
                    tx.set_keeps_ids(o.request_id);
                }
                out.push(o);
            }
        }
        tx.commit()?;
        tracing::info!(
            requests = out.len(),
            rows_hidden = out.iter().map(|o| o.rows_hidden).sum::<u64>(),
            "deletions committed together"
        );
        Ok(out)
    }

    /// Drop a project: every row of it appended before the call becomes
    /// invisible at once, its parts and deletion requests leave the
    /// manifest, and its files are removed by GC (after the snapshots that
    /// read them). Buffered rows are flushed first and again after, so the
    /// ingest log keeps none of the project's rows either.
    pub fn drop_project(&self, project_id: i64) -> Result<DropOutcome> {
        self.inner.writable()?;
        check_project(project_id)?;
        let inner = &*self.inner;
        let f = inner.flush_lock.lock().map_err(poisoned)?;
        inner.freeze_for_flush()?;
        inner.flush_frozen_locked(&f)?;
        crate::failpoint!("drop::after_first_flush");
        let mut tx = Transaction::begin(inner)?;
        // Rows appended since the flush above (active memtable only: the
        // flush lock keeps new memtables from being flushed meanwhile).
        // The replay cut-off covers every one of them, also those that a
        // request of the project hides now: that request leaves the
        // manifest with this commit.
        let (mem_hits, replay_cutoff) = {
            let st = inner.state.lock().map_err(poisoned)?;
            let mut hits = Vec::new();
            for m in st.memtables() {
                m.rows_of_project(project_id, u64::MAX, &mut hits)?;
            }
            let cutoff = hits.iter().max().map(|m| m + 1);
            hits.retain(|s| !st.mem_deleted.contains(*s));
            (hits, cutoff)
        };
        let dropped: Vec<(u64, u64, u64)> = tx
            .manifest()
            .parts
            .iter()
            .filter(|p| p.project_id == project_id)
            .map(|p| (p.id, p.live_rows(), p.size))
            .collect();
        for (id, _, _) in &dropped {
            tx.remove_part(*id);
        }
        tx.note_drop(project_id, inner.next_seq()?, inner.oldest_reservation());
        let requests_removed = tx.remove_project_requests(project_id);
        tx.set_project_settings(project_id, Default::default());
        tx.hide_mem_rows(&mem_hits);
        if let Some(cutoff) = replay_cutoff {
            // Replay must hide these rows if the process stops before the
            // flush below removes them from the ingest log.
            tx.add_dropped(project_id, cutoff);
        }
        tx.commit()?;
        crate::failpoint!("drop::after_commit");
        // Flush what was appended meanwhile without the hidden rows, so
        // the log segment that held them is removed.
        inner.freeze_for_flush()?;
        inner.flush_frozen_locked(&f)?;
        let out = DropOutcome {
            project_id,
            parts_removed: dropped.len(),
            rows_removed: dropped.iter().map(|d| d.1).sum::<u64>() + mem_hits.len() as u64,
            bytes_removed: dropped.iter().map(|d| d.2).sum(),
            requests_removed,
        };
        tracing::info!(?out, "project dropped");
        Ok(out)
    }
}

impl Inner {
    /// Resolve one deletion request into `tx`: hide the rows of `ids`
    /// (sorted, unique, at most [`MAX_DELETE_IDS`]) of `project` from
    /// `floor` to below the cut-off in `tables`, in parts (through the
    /// distinct-id index) and in buffered rows, and record the request.
    /// Nothing is published until `tx` commits.
    #[allow(clippy::too_many_arguments)]
    fn resolve_deletion(
        &self,
        tx: &mut Transaction<'_>,
        kind: RequestKind,
        project: i64,
        ids: Vec<String>,
        tables: Vec<Table>,
        cutoff: Option<u64>,
        floor: u64,
    ) -> Result<DeleteOutcome> {
        let inner = self;
        let (cutoff, mem_hits) = self.cutoff_and_buffered(tx, cutoff, |m, cutoff, hits| {
            if floor > cutoff {
                return Err(StoreError::InvalidInput(format!(
                    "a deletion's floor ({floor}) must not be above its cut-off ({cutoff})"
                )));
            }
            for t in &tables {
                for d in &ids {
                    m.find(*t, project, d, floor..cutoff, hits);
                }
            }
            Ok(())
        })?;

        // Resolve part rows through the distinct-id index.
        let mut additions: BTreeMap<u64, Bitmap> = BTreeMap::new();
        let mut slow: Vec<(u64, u32, u32)> = Vec::new();
        // Parts holding rows of this request (hidden now or earlier).
        let mut holding: std::collections::BTreeSet<u64> = Default::default();
        {
            let live: std::collections::HashSet<u64> =
                tx.manifest().parts.iter().map(|p| p.id).collect();
            for p in tx.find_runs(project, &ids, &tables)? {
                if !live.contains(&p.part_id) || cutoff <= p.min_seq || p.max_seq < floor {
                    continue;
                }
                if cutoff > p.max_seq && floor <= p.min_seq {
                    holding.insert(p.part_id);
                    additions
                        .entry(p.part_id)
                        .or_default()
                        .add_range(p.start..p.start + p.len);
                } else {
                    slow.push((p.part_id, p.start, p.len));
                }
            }
        }
        // Runs that straddle the cut-off or the floor: read the part's
        // `_seq` column (sorted within a run).
        let mut seq_cache: HashMap<u64, Vec<u64>> = HashMap::new();
        for (part_id, start, len) in slow {
            let i = tx
                .part_index(part_id)
                .ok_or_else(|| StoreError::Internal("part vanished".into()))?;
            if let std::collections::hash_map::Entry::Vacant(v) = seq_cache.entry(part_id) {
                v.insert(read_seqs(&inner.storage, &tx.manifest().parts[i])?);
            }
            let seqs = &seq_cache[&part_id];
            let run = seqs
                .get(start as usize..(start + len) as usize)
                .ok_or_else(|| {
                    StoreError::corrupt(&tx.manifest().parts[i].path, "run outside the part")
                })?;
            let from = run.partition_point(|s| *s < floor) as u32;
            let below = run.partition_point(|s| *s < cutoff) as u32;
            if below > from {
                holding.insert(part_id);
                additions
                    .entry(part_id)
                    .or_default()
                    .add_range(start + from..start + below);
            }
        }
        let mut by_table = self.buffered_tables(&mem_hits)?;
        for (part_id, add) in additions {
            let new = match tx.bitmap(part_id) {
                Some(old) => old.or(&add),
                None => add,
            };
            let before = tx.bitmap(part_id).map_or(0, |b| b.cardinality());
            let gained = new.cardinality() - before;
            if gained > 0 {
                if let Some(t) = tx.part_table(part_id) {
                    *by_table.entry(t).or_default() += gained;
                }
                tx.set_bitmap(part_id, new);
            }
        }
        let rows_hidden = by_table.values().sum();
        let mut request = self.new_request(tx, kind, project, tables, cutoff);
        request.floor_seq = floor;
        request.distinct_ids = ids;
        request.rows_hidden = rows_hidden;
        request.rows_hidden_by_table = by_table;
        request.parts = holding.into_iter().collect();
        let outcome = add_hidden_request(tx, request);
        tx.hide_mem_rows(&mem_hits);
        Ok(outcome)
    }
}

/// Record in `tx` a request whose rows are hidden by the same commit;
/// what the deletion returns.
pub(crate) fn add_hidden_request(
    tx: &mut Transaction<'_>,
    request: DeletionRequest,
) -> DeleteOutcome {
    let (rows_hidden, cutoff, purge_due_by_us) = (
        request.rows_hidden,
        request.cutoff_seq,
        request.purge_due_by_us,
    );
    let request_id = tx.add_request(request);
    DeleteOutcome {
        request_id,
        rows_hidden,
        cutoff,
        purge_due_by_us,
        logical: false,
        undo_until_us: None,
    }
}

impl Inner {
    /// Under the state lock: the cut-off of a deletion (`cutoff`, or
    /// everything appended so far; never above it) and the `_seq`s of the
    /// buffered rows `find` reports below it that nothing hides yet (nor
    /// an earlier request of `tx`).
    pub(crate) fn cutoff_and_buffered(
        &self,
        tx: &Transaction<'_>,
        cutoff: Option<u64>,
        mut find: impl FnMut(&Memtable, u64, &mut Vec<u64>) -> Result<()>,
    ) -> Result<(u64, Vec<u64>)> {
        let st = self.state.lock().map_err(poisoned)?;
        if let Some(f) = &st.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        let cutoff = cutoff.unwrap_or(st.next_seq);
        if cutoff > st.next_seq {
            return Err(StoreError::InvalidInput(format!(
                "cut-off {cutoff} is above the next sequence number {}; a deletion cannot cover rows not yet appended",
                st.next_seq
            )));
        }
        let mut hits = Vec::new();
        for m in st.memtables() {
            find(m, cutoff, &mut hits)?;
        }
        hits.retain(|s| !st.mem_deleted.contains(*s) && !tx.hides_mem_row(*s));
        Ok((cutoff, hits))
    }

    /// The tables of buffered rows by `_seq` (each counted once per
    /// table).
    pub(crate) fn buffered_tables(&self, seqs: &[u64]) -> Result<BTreeMap<Table, u64>> {
        let mut out = BTreeMap::new();
        if seqs.is_empty() {
            return Ok(out);
        }
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        let st = self.state.lock().map_err(poisoned)?;
        let mut chunks: Vec<&Chunk> = st
            .memtables()
            .flat_map(|m| m.chunks.iter().map(|c| &**c))
            .collect();
        chunks.sort_by_key(|c| c.seq_start);
        let mut i = 0;
        for s in sorted {
            while i < chunks.len() && chunks[i].seq_end() <= s {
                i += 1;
            }
            match chunks.get(i) {
                Some(c) if c.seq_start <= s => *out.entry(c.table).or_default() += 1,
                _ => {
                    return Err(StoreError::Internal(format!(
                        "buffered row {s} is in no memtable chunk"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// A pending request of `kind` created now, due by the project's
    /// erasure deadline; the caller fills in what it covers.
    pub(crate) fn new_request(
        &self,
        tx: &Transaction<'_>,
        kind: RequestKind,
        project: i64,
        tables: Vec<Table>,
        cutoff: u64,
    ) -> DeletionRequest {
        let now = now_us();
        let due = crate::lifecycle::due_by(
            tx.manifest(),
            project,
            now,
            self.policy.options().max_pending_age,
        );
        DeletionRequest::new(kind, project, tables, cutoff, now, due)
    }
}

/// Project ids are never negative.
pub(crate) fn check_project(project: i64) -> Result<()> {
    if project < 0 {
        return Err(StoreError::InvalidInput(format!(
            "project ids are never negative, got {project}"
        )));
    }
    Ok(())
}

/// Check a [`DeleteSpec`]: (project, sorted unique ids, sorted tables).
/// The number of ids is not limited here.
fn validate_spec(spec: &DeleteSpec) -> Result<(i64, Vec<String>, Vec<Table>)> {
    let mut ids: Vec<String> = spec.distinct_ids.clone();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(StoreError::InvalidInput(
            "a deletion needs at least one distinct id".into(),
        ));
    }
    if ids.iter().any(|d| d.is_empty()) {
        return Err(StoreError::InvalidInput(
            "distinct ids must not be empty".into(),
        ));
    }
    check_project(spec.project_id)?;
    if spec.kind == RequestKind::Events {
        return Err(StoreError::InvalidInput(
            "a deletion of events by predicate goes through delete_events".into(),
        ));
    }
    let tables: Vec<Table> = if spec.tables.is_empty() {
        Table::ALL.to_vec()
    } else {
        let mut t = spec.tables.clone();
        t.sort();
        t.dedup();
        t
    };
    Ok((spec.project_id, ids, tables))
}
