//! Deletion of events by predicate ([`Store::delete_events`]) and its dry
//! run ([`Store::preview_events`]).
//!
//! A request of kind `events` is a predicate ([`EventPredicate`]) plus a
//! cut-off `_seq`, over chosen tables of one project. It is resolved to
//! tombstone bits when it is recorded, like a deletion of distinct ids, so
//! the rows are hidden when the call returns and the same compaction,
//! verification and lifecycle apply. Resolution reads only the parts of
//! the project whose time range meets the window, and of those only the
//! columns the predicate names; `properties` are read (and parsed) only
//! for rows the other conditions kept.
//!
//! Every place that decides whether a row belongs to a request asks this
//! module for predicate requests: the deletion itself, the replay of the
//! ingest log at open (`open.rs`), a bulk ingest committing across the
//! request (`commit.rs`), and the verification scan (`compact/advance.rs`).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use croaring::Bitmap;
use serde::Serialize;

use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::{PartMeta, RequestKind};
use crate::memtable::{Chunk, Memtable};
use crate::part::{read_columns_at, str_col, u64_col};
use crate::predicate::{EventPredicate, Matcher, PropertiesMatcher};
use crate::schema::{Table, PROJECT_COLUMN, SEQ_COLUMN};
use crate::storage::Storage;
use crate::store::{add_hidden_request, check_project, poisoned, DeleteOutcome, Store};

/// A deletion of the events (or recordings) a predicate matches.
#[derive(Debug, Clone)]
pub struct EventDeletion {
    /// Project.
    pub project_id: i64,
    /// Which rows; at least one condition.
    pub predicate: EventPredicate,
    /// Tables to delete from; empty = events only. A predicate with event
    /// or property conditions applies to events only.
    pub tables: Vec<Table>,
    /// Delete rows with `_seq` below this; `None` = everything appended
    /// before the call.
    pub cutoff: Option<u64>,
    /// Keep the request cancellable ([`Store::cancel_request`]) this long:
    /// its rows are hidden at once but not purged before the window ends
    /// (`undo.rs`). At most the project's erasure deadline less the
    /// compaction's `deadline_slack`. `None`: no undo.
    pub undo_window: Option<std::time::Duration>,
}

impl EventDeletion {
    /// Delete the rows of `project_id` that `predicate` matches, in the
    /// events table, appended before the call.
    pub fn new(project_id: i64, predicate: EventPredicate) -> EventDeletion {
        EventDeletion {
            project_id,
            predicate,
            tables: Vec::new(),
            cutoff: None,
            undo_window: None,
        }
    }

    /// Checked, normalised (predicate, tables).
    fn checked(&self) -> Result<(EventPredicate, Vec<Table>)> {
        check_project(self.project_id)?;
        let mut tables = if self.tables.is_empty() {
            vec![Table::Events]
        } else {
            self.tables.clone()
        };
        tables.sort();
        tables.dedup();
        let mut pred = self.predicate.clone();
        pred.normalize();
        // A new request compares numbers exactly; only requests recorded
        // before read them as doubles.
        pred.numbers = crate::predicate::Numbers::Exact;
        pred.validate(&tables)?;
        Ok((pred, tables))
    }
}

/// What a deletion would hide, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TablePreview {
    /// Visible rows it would hide.
    pub rows: u64,
    /// Parts holding them (rows still in the ingest log count in `rows`
    /// only).
    pub parts: u64,
}

/// What a deletion would hide: nothing is changed to find out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeletionPreview {
    /// Visible rows it would hide, all tables.
    pub rows: u64,
    /// Parts it would touch, all tables.
    pub parts: u64,
    /// The same per table.
    pub by_table: BTreeMap<Table, TablePreview>,
}

/// Positions of the rows of `part` that `pred` matches below `cutoff`
/// (hidden or not).
pub(crate) fn match_part(
    storage: &Storage,
    part: &PartMeta,
    pred: &EventPredicate,
    cutoff: u64,
) -> Result<Bitmap> {
    match_part_within(storage, part, pred, cutoff, None)
}

/// [`match_part`] among the rows `within` only (every row when `None`):
/// only those are read.
pub(crate) fn match_part_within(
    storage: &Storage,
    part: &PartMeta,
    pred: &EventPredicate,
    cutoff: u64,
    within: Option<&Bitmap>,
) -> Result<Bitmap> {
    let mut out = Bitmap::new();
    if cutoff <= part.min_seq || !pred.may_match_part(part) || within.is_some_and(Bitmap::is_empty)
    {
        return Ok(out);
    }
    if cutoff > part.max_seq && pred.covers_part(part) {
        // Every row, without reading (a retention sweep's whole days).
        out.add_range(0..part.rows as u32);
        if let Some(w) = within {
            out.and_inplace(w);
        }
        return Ok(out);
    }
    let mut cols = pred.columns(part.table);
    cols.push(SEQ_COLUMN);
    let b = read_columns_at(storage, part, &cols, within)?;
    let seqs = u64_col(&b, SEQ_COLUMN, &part.path)?;
    let m = Matcher::new(pred, part.table, &b)?;
    let keep = |i: usize| seqs.value(i) < cutoff && m.row(i);
    match within {
        // Row `i` of the batch is the `i`-th row of `within`.
        Some(w) => {
            if w.cardinality() != b.num_rows() as u64 {
                return Err(StoreError::corrupt(
                    &part.path,
                    "a row selection returned the wrong number of rows",
                ));
            }
            for (i, pos) in w.iter().enumerate() {
                if keep(i) {
                    out.add(pos);
                }
            }
        }
        None => {
            for i in 0..b.num_rows() {
                if keep(i) {
                    out.add(i as u32);
                }
            }
        }
    }
    if pred.needs_properties() && !out.is_empty() {
        let props = read_columns_at(storage, part, &["properties"], Some(&out))?;
        let col = str_col(&props, "properties", &part.path)?;
        if col.len() as u64 != out.cardinality() {
            return Err(StoreError::corrupt(
                &part.path,
                "a row selection returned the wrong number of rows",
            ));
        }
        let mut kept = Bitmap::new();
        let m = PropertiesMatcher::new(pred);
        for (j, pos) in out.iter().enumerate() {
            let text = (!col.is_null(j)).then(|| col.value(j));
            if m.matches(text) {
                kept.add(pos);
            }
        }
        out = kept;
    }
    Ok(out)
}

/// [`match_part`] of every part of `parts`, in order, on up to as many
/// threads as the machine has cores (each part is read and evaluated on
/// its own; the first error wins).
pub(crate) fn match_parts(
    storage: &Storage,
    parts: &[&PartMeta],
    pred: &EventPredicate,
    cutoff: u64,
) -> Result<Vec<Bitmap>> {
    let all = match_parts_until(storage, parts, pred, cutoff, None)?;
    // Without a deadline every part is read.
    Ok(all.into_iter().map(Option::unwrap_or_default).collect())
}

/// [`match_parts`], but no part is started after `deadline`: those are
/// `None`.
pub(crate) fn match_parts_until(
    storage: &Storage,
    parts: &[&PartMeta],
    pred: &EventPredicate,
    cutoff: u64,
    deadline: Option<std::time::Instant>,
) -> Result<Vec<Option<Bitmap>>> {
    crate::parallel::try_map(parts, "predicate scan", |p| {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(None);
        }
        match_part(storage, p, pred, cutoff).map(Some)
    })
}

/// `_seq`s of the buffered rows of `project` in `tables` that `pred`
/// matches below `cutoff` (hidden or not).
pub(crate) fn match_memtable(
    mem: &Memtable,
    project: i64,
    tables: &[Table],
    pred: &EventPredicate,
    cutoff: u64,
    hits: &mut Vec<u64>,
) -> Result<()> {
    for c in &mem.chunks {
        match_chunk(c, project, tables, pred, cutoff, hits)?;
    }
    Ok(())
}

/// [`match_memtable`] of one chunk of buffered rows.
pub(crate) fn match_chunk(
    c: &Chunk,
    project: i64,
    tables: &[Table],
    pred: &EventPredicate,
    cutoff: u64,
    hits: &mut Vec<u64>,
) -> Result<()> {
    if !tables.contains(&c.table) || c.seq_start >= cutoff {
        return Ok(());
    }
    let b = &c.batch;
    let projects = b
        .column_by_name(PROJECT_COLUMN)
        .and_then(|a| a.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| StoreError::Internal("buffered rows without project_id".into()))?;
    let m = Matcher::new(pred, c.table, b)?;
    let matcher = PropertiesMatcher::new(pred);
    let props = if pred.needs_properties() && c.table == Table::Events {
        Some(str_col(b, "properties", "buffered rows")?)
    } else {
        None
    };
    for i in 0..b.num_rows() {
        let seq = c.seq_start + i as u64;
        if seq >= cutoff || projects.value(i) != project || !m.row(i) {
            continue;
        }
        if let Some(p) = props {
            if !matcher.matches((!p.is_null(i)).then(|| p.value(i))) {
                continue;
            }
        }
        hits.push(seq);
    }
    Ok(())
}

/// The live parts a predicate request may hold rows in.
pub(crate) fn candidates<'a>(
    parts: &'a [PartMeta],
    project: i64,
    tables: &'a [Table],
    pred: &'a EventPredicate,
    cutoff: u64,
) -> impl Iterator<Item = &'a PartMeta> {
    parts.iter().filter(move |p| {
        p.project_id == project
            && tables.contains(&p.table)
            && p.min_seq < cutoff
            && pred.may_match_part(p)
    })
}

/// Rows of predicate request `r` left in `parts` (hidden or not): the
/// count and a path holding some, or `None` when there are none. The
/// verification scan of `compact/advance.rs`.
pub(crate) fn rows_left(
    storage: &Storage,
    parts: &[PartMeta],
    r: &crate::format::DeletionRequest,
) -> Result<Option<(u64, String)>> {
    let Some(pred) = &r.predicate else {
        return Ok(None);
    };
    let mut found: Option<(u64, String)> = None;
    let parts: Vec<&PartMeta> =
        candidates(parts, r.project_id, &r.tables, pred, r.cutoff_seq).collect();
    let matched = match_parts(storage, &parts, pred, r.cutoff_seq)?;
    for (p, m) in parts.iter().zip(matched) {
        let n = m.cardinality();
        if n > 0 {
            let e = found.get_or_insert_with(|| (0, p.path.clone()));
            e.0 += n;
        }
    }
    Ok(found)
}

impl Store {
    /// Delete the rows a predicate matches (see [`EventPredicate`]): when
    /// it returns, every matching row of the project appended before the
    /// call is hidden from later snapshots, and a request of kind
    /// `events` tracks its purge like any other. An empty predicate is
    /// refused.
    ///
    /// ```no_run
    /// # fn f(store: &elide_store::Store) -> elide_store::Result<()> {
    /// use elide_store::predicate::EventPredicate;
    /// use elide_store::EventDeletion;
    /// let out = store.delete_events(EventDeletion::new(
    ///     1,
    ///     EventPredicate {
    ///         events: vec!["$autocapture".into()],
    ///         before_us: Some(1_700_000_000_000_000),
    ///         ..Default::default()
    ///     },
    /// ))?;
    /// println!("request {} hid {} rows", out.request_id, out.rows_hidden);
    /// # Ok(()) }
    /// ```
    pub fn delete_events(&self, d: EventDeletion) -> Result<DeleteOutcome> {
        let inner = self.inner();
        inner.writable()?;
        let (pred, tables) = d.checked()?;
        let started = std::time::Instant::now();
        let mut tx = Transaction::begin(inner)?;
        let undo_until_us = match d.undo_window {
            Some(w) => Some(inner.undo_until(&tx, d.project_id, w)?),
            None => None,
        };
        // Undo: resolve everything (the count is the answer), hide by
        // the predicate. Otherwise resolve within the bound, or hide by
        // the predicate and resolve in the background (the bridge).
        let deadline = match undo_until_us {
            Some(_) => None,
            None => inner.opts.predicate_resolve_bound.map(|b| started + b),
        };
        let res = inner.match_predicate(&tx, d.project_id, &pred, &tables, d.cutoff, deadline)?;
        let out = if undo_until_us.is_none() && res.complete {
            let out = inner.record_events(
                &mut tx,
                RequestKind::Events,
                d.project_id,
                pred,
                tables,
                res,
            )?;
            tx.commit()?;
            out
        } else {
            inner.record_logical(tx, d.project_id, pred, tables, res, undo_until_us)?
        };
        tracing::info!(
            request_id = out.request_id,
            rows_hidden = out.rows_hidden,
            project = d.project_id,
            logical = out.logical,
            undo_until_us = out.undo_until_us,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "deletion of events by predicate committed"
        );
        Ok(out)
    }

    /// What [`Store::delete_events`] would hide now, per table: visible
    /// rows (not hidden already by tombstones or a logical request) and
    /// the parts holding them. Reads a snapshot; changes nothing
    /// and takes no lock that writers wait for.
    pub fn preview_events(&self, d: &EventDeletion) -> Result<DeletionPreview> {
        self.preview_events_until(d, None)?.ok_or_else(|| {
            StoreError::Internal("a preview without a deadline left parts unread".into())
        })
    }

    /// [`Store::preview_events`], but no part is started after
    /// `deadline`: `None` if one was left unread (a server answers a dry
    /// run within its query time).
    pub fn preview_events_until(
        &self,
        d: &EventDeletion,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<DeletionPreview>> {
        let (pred, tables) = d.checked()?;
        let inner = self.inner();
        let (version, _pin) = inner.pinned_version()?;
        let (cutoff, mem_hits) = {
            let st = inner.state.lock().map_err(poisoned)?;
            let cutoff = d.cutoff.unwrap_or(st.next_seq).min(st.next_seq);
            // Rows hidden already, by bits or by a logical request, are
            // not counted.
            let logical = crate::undo::logical_requests(&version.manifest.requests);
            let mut hidden = croaring::Treemap::new();
            for m in st.memtables() {
                crate::undo::hide_buffered(&logical, m.chunks.iter(), &mut hidden)?;
            }
            let mut hits: Vec<(Table, u64)> = Vec::new();
            for t in &tables {
                let mut h = Vec::new();
                for m in st.memtables() {
                    match_memtable(m, d.project_id, &[*t], &pred, cutoff, &mut h)?;
                }
                hits.extend(
                    h.into_iter()
                        .filter(|s| !st.mem_deleted.contains(*s) && !hidden.contains(*s))
                        .map(|s| (*t, s)),
                );
            }
            (cutoff, hits)
        };
        let mut out = DeletionPreview::default();
        let parts: Vec<&PartMeta> = candidates(
            &version.manifest.parts,
            d.project_id,
            &tables,
            &pred,
            cutoff,
        )
        .collect();
        let Some(matched) = match_parts_until(&inner.storage, &parts, &pred, cutoff, deadline)?
            .into_iter()
            .collect::<Option<Vec<Bitmap>>>()
        else {
            return Ok(None);
        };
        let logical = crate::undo::logical_requests(&version.manifest.requests);
        for (p, mut m) in parts.into_iter().zip(matched) {
            let bits = version.tombstones.get(&p.id);
            if let Some(old) =
                crate::undo::hidden_in_part(&inner.storage, &inner.logical, &logical, p, bits)?
            {
                m.andnot_inplace(&old);
            }
            if !m.is_empty() {
                let t = out.by_table.entry(p.table).or_default();
                t.rows += m.cardinality();
                t.parts += 1;
            }
        }
        for (t, _) in mem_hits {
            out.by_table.entry(t).or_default().rows += 1;
        }
        out.rows = out.by_table.values().map(|t| t.rows).sum();
        out.parts = out.by_table.values().map(|t| t.parts).sum();
        Ok(Some(out))
    }
}

/// A predicate's rows as a transaction sees them: the cut-off, the
/// buffered rows it matches (not hidden yet), and per candidate part the
/// rows it matches (hidden or not), `None` for parts not read before the
/// deadline.
pub(crate) struct Matched {
    pub cutoff: u64,
    pub mem_hits: Vec<u64>,
    pub parts: Vec<(u64, Option<Bitmap>)>,
    /// Whether every candidate part was read.
    pub complete: bool,
}

impl Matched {
    /// Rows of the matched parts not hidden yet in `tx`, plus the
    /// buffered ones, per table.
    pub fn newly_hidden(
        &self,
        inner: &crate::store::Inner,
        tx: &mut Transaction<'_>,
    ) -> Result<BTreeMap<Table, u64>> {
        let mut by_table = inner.buffered_tables(&self.mem_hits)?;
        for (id, m) in &self.parts {
            let Some(m) = m else { continue };
            let n = match tx.bitmap(*id) {
                Some(old) => m.andnot_cardinality(old),
                None => m.cardinality(),
            };
            if n > 0 {
                if let Some(t) = tx.part_table(*id) {
                    *by_table.entry(t).or_default() += n;
                }
            }
        }
        Ok(by_table)
    }

    /// Set the bits of a complete match in `tx` and hide its buffered
    /// rows: the rows newly hidden per table and the parts holding
    /// matched rows.
    pub fn apply(
        self,
        inner: &crate::store::Inner,
        tx: &mut Transaction<'_>,
    ) -> Result<(BTreeMap<Table, u64>, Vec<u64>)> {
        let mut by_table = inner.buffered_tables(&self.mem_hits)?;
        let mut holding = Vec::new();
        for (id, matched) in self.parts {
            let Some(matched) = matched.filter(|m| !m.is_empty()) else {
                continue;
            };
            holding.push(id);
            let before = tx.bitmap(id).map_or(0, |b| b.cardinality());
            let new = match tx.bitmap(id) {
                Some(old) => old.or(&matched),
                None => matched,
            };
            if new.cardinality() > before {
                if let Some(t) = tx.part_table(id) {
                    *by_table.entry(t).or_default() += new.cardinality() - before;
                }
                tx.set_bitmap(id, new);
            }
        }
        tx.hide_mem_rows(&self.mem_hits);
        Ok((by_table, holding))
    }
}

impl crate::store::Inner {
    /// The rows `pred` matches in project `project`'s `tables` below the
    /// cut-off (`None`: everything appended so far), as `tx` sees them;
    /// parts not started before `deadline` are left unread. `cached`
    /// bits (of a logical request) are used instead of reading.
    pub(crate) fn match_predicate(
        &self,
        tx: &Transaction<'_>,
        project: i64,
        pred: &EventPredicate,
        tables: &[Table],
        cutoff: Option<u64>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Matched> {
        let (cutoff, mem_hits) = self.cutoff_and_buffered(tx, cutoff, |m, cutoff, hits| {
            match_memtable(m, project, tables, pred, cutoff, hits)
        })?;
        let parts: Vec<&PartMeta> =
            candidates(&tx.manifest().parts, project, tables, pred, cutoff).collect();
        let matched = match_parts_until(&self.storage, &parts, pred, cutoff, deadline)?;
        let complete = matched.iter().all(Option::is_some);
        Ok(Matched {
            cutoff,
            mem_hits,
            parts: parts.iter().map(|p| p.id).zip(matched).collect(),
            complete,
        })
    }

    /// Set the bits of a complete match in `tx` and record the request.
    pub(crate) fn record_events(
        &self,
        tx: &mut Transaction<'_>,
        kind: RequestKind,
        project: i64,
        pred: EventPredicate,
        tables: Vec<Table>,
        matched: Matched,
    ) -> Result<DeleteOutcome> {
        let cutoff = matched.cutoff;
        let (by_table, holding) = matched.apply(self, tx)?;
        let rows_hidden = by_table.values().sum();
        let mut request = self.new_request(tx, kind, project, tables, cutoff);
        request.predicate = Some(pred);
        request.rows_hidden = rows_hidden;
        request.rows_hidden_by_table = by_table;
        request.parts = holding;
        Ok(add_hidden_request(tx, request))
    }

    /// Resolve a predicate deletion into `tx`: hide the matching rows below
    /// the cut-off in parts and in buffered rows, and record the request.
    pub(crate) fn resolve_events(
        &self,
        tx: &mut Transaction<'_>,
        kind: RequestKind,
        project: i64,
        pred: EventPredicate,
        tables: Vec<Table>,
        cutoff: Option<u64>,
    ) -> Result<DeleteOutcome> {
        let matched = self.match_predicate(tx, project, &pred, &tables, cutoff, None)?;
        self.record_events(tx, kind, project, pred, tables, matched)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::gc::Gc;
    use crate::io::StdFs;
    use crate::part::day_of;

    /// A predicate asked among some rows answers what it answers over the
    /// whole part, less the rows outside them, on each of its paths: the
    /// columns only, `properties` too, and a part it covers whole.
    #[test]
    fn a_match_within_rows_is_the_whole_match_among_them() {
        let ts = 1_790_000_000_000_000;
        let rows: Vec<crate::jsonl::EventRow> = (0..3000)
            .map(|i| crate::jsonl::EventRow {
                uuid: None,
                event: ["a", "b", "c"][i % 3].into(),
                distinct_id: format!("user-{}", i % 37),
                person_id: None,
                project_id: 1,
                timestamp_us: ts + i as i64,
                properties: Some(format!(r#"{{"k": {}}}"#, i % 5)),
                session_id: None,
            })
            .collect();
        let input = crate::jsonl::rows_to_batch(&rows).expect("rows");
        let batch = crate::normalize::normalize(Table::Events, &input)
            .and_then(|n| n.finish(0, ts))
            .expect("batch");
        let dir = tempfile::tempdir().expect("dir");
        let storage = Storage::local(dir.path(), Arc::new(StdFs)).expect("storage");
        let part = crate::part::test_part(&batch, day_of(ts))
            .finish(&storage, &Gc::default())
            .expect("finish")
            .expect("a part")
            .meta;
        let preds = [
            r#"{"events": ["b"]}"#,
            r#"{"events": ["a", "c"], "properties": [{"key": "k", "value": 3, "operator": "exact"}]}"#,
            r#"{"before_us": 9000000000000000}"#,
        ];
        let every = |step: u32, from: u32| (from..3000).step_by(step as usize).collect::<Bitmap>();
        let withins = [
            Bitmap::new(),
            every(1, 0),
            every(7, 3),
            every(1000, 2999),
            every(2, 1),
        ];
        for text in preds {
            let pred: EventPredicate = serde_json::from_str(text).expect("predicate");
            // Cut-offs below, inside and past the part's `_seq`s.
            for cutoff in [part.min_seq, part.min_seq + 1500, part.max_seq + 1] {
                let whole = match_part(&storage, &part, &pred, cutoff).expect("whole");
                for w in &withins {
                    let got =
                        match_part_within(&storage, &part, &pred, cutoff, Some(w)).expect("within");
                    assert_eq!(got, whole.and(w), "{text}, cut-off {cutoff}");
                }
            }
            assert!(!match_part(&storage, &part, &pred, part.max_seq + 1)
                .expect("whole")
                .is_empty());
        }
    }
}
