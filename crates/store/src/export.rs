//! Every visible row of some distinct ids, whole: the store's half of a
//! subject-access export ([`Store::rows_of_distinct_ids`]), and the dry run
//! of a person deletion (the same rows are what it would hide).
//!
//! A writer finds the rows through the distinct-id index (one run per id
//! per part; only those rows are read, through a parquet row selection),
//! and buffered rows through the memtables' hash index. The index, the
//! version it covers and the memtables are taken together under the
//! commit lock and then the state lock, so no flush or compaction can move
//! a row between them: each visible row is delivered exactly once. A
//! read-only store has no index; it scans the `distinct_id` column of the
//! project's parts instead.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use croaring::Bitmap;

use crate::error::{Result, StoreError};
use crate::format::PartMeta;
use crate::part::read_columns_at;
use crate::predicate::EventPredicate;
use crate::schema::{with_uuid_text, Table};
use crate::store::{poisoned, Store};

/// What [`Store::rows_of_distinct_ids`] delivered, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowsOf {
    /// Rows per table.
    pub rows: BTreeMap<Table, u64>,
    /// Parts read.
    pub parts: u64,
}

impl RowsOf {
    /// Rows of every table.
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }
}

impl Store {
    /// Every visible row of `distinct_ids` in `project`, in `tables`
    /// (empty: all), each delivered once to `f` as a batch in the table's
    /// stored schema (with `_seq` and `inserted_at`) but with UUIDs as
    /// their text, as users read them: part rows by part,
    /// in file order, then buffered rows in append order. Found through
    /// the distinct-id index, not a scan (see the module docs). With
    /// `f = |_, _| Ok(())` this counts what deleting those ids would hide.
    pub fn rows_of_distinct_ids(
        &self,
        project: i64,
        distinct_ids: &[String],
        tables: &[Table],
        f: &mut dyn FnMut(Table, RecordBatch) -> Result<()>,
    ) -> Result<RowsOf> {
        crate::store::check_project(project)?;
        let tables: Vec<Table> = if tables.is_empty() {
            Table::ALL.to_vec()
        } else {
            tables.to_vec()
        };
        let inner = self.inner();
        let mut ids: Vec<&String> = distinct_ids.iter().filter(|d| !d.is_empty()).collect();
        ids.sort();
        ids.dedup();
        // (part, positions) to read, the version they belong to, and the
        // buffered rows, taken together.
        let (version, pin, wanted, mem) = if self.is_read_only() {
            let (version, pin) = inner.pinned_version()?;
            let mut wanted: Vec<(PartMeta, Bitmap)> = Vec::new();
            for chunk in ids.chunks(crate::MAX_DELETE_IDS) {
                let pred = EventPredicate {
                    distinct_ids: chunk.iter().map(|d| (*d).clone()).collect(),
                    ..Default::default()
                };
                for p in version
                    .manifest
                    .parts
                    .iter()
                    .filter(|p| p.project_id == project && tables.contains(&p.table))
                {
                    let m = crate::by_predicate::match_part(&inner.storage, p, &pred, u64::MAX)?;
                    if !m.is_empty() {
                        merge(&mut wanted, p, m);
                    }
                }
            }
            let st = inner.state.lock().map_err(poisoned)?;
            let mem = buffered(&st, project, &tables, &ids)?;
            (version, pin, wanted, mem)
        } else {
            let lock = || {
                inner
                    .commit
                    .lock()
                    .map_err(|_| StoreError::Internal("commit lock poisoned".into()))
            };
            // The version read, pinned, with its buffered rows.
            let pinned = || -> Result<_> {
                let st = inner.state.lock().map_err(poisoned)?;
                let pin = inner.gc.register(st.version.manifest.version);
                let mem = buffered(&st, project, &tables, &ids)?;
                Ok((std::sync::Arc::clone(&st.version), pin, mem))
            };
            let owned: Vec<String> = ids.iter().map(|d| (*d).clone()).collect();
            // (A test merges here.) Versions are published only under the
            // commit lock, so the version read under it below is the one
            // the index covers: no commit lands between the two.
            crate::failpoint!("export::before_index");
            let guard = lock()?;
            // While the index is being built, the `.runs` files are read
            // without the commit lock (the version is pinned). `Ok`: the
            // runs they hold; `Err`: the lock, to read the index.
            let files = if crate::commit::files_first(inner, &guard) {
                let (version, pin, mem) = pinned()?;
                drop(guard);
                match crate::index::runs_from_files(
                    &inner.storage,
                    &version.manifest,
                    project,
                    &owned,
                    &tables,
                ) {
                    Some(found) => Ok((version, pin, mem, found)),
                    None => Err(lock()?),
                }
            } else {
                Err(guard)
            };
            let (version, pin, mem, found) = match files {
                Ok(read) => read,
                Err(mut guard) => {
                    // The index covers the current manifest, and retires
                    // the runs of parts a commit removes (at once when
                    // many go together): the version is read under the
                    // same lock as the index, so no part merged away
                    // since is looked for in an index that has forgotten
                    // it.
                    let (version, pin, mem) = pinned()?;
                    let found = crate::commit::index_runs(
                        inner,
                        &mut guard,
                        &version.manifest,
                        project,
                        &owned,
                        &tables,
                    )?;
                    (version, pin, mem, found)
                }
            };
            let mut runs: BTreeMap<u64, Bitmap> = BTreeMap::new();
            for p in found {
                runs.entry(p.part_id)
                    .or_default()
                    .add_range(p.start..p.start + p.len);
            }
            let mut wanted = Vec::new();
            for (id, rows) in runs {
                // The index also holds parts retired since (marked dead
                // lazily): only the version's live parts count.
                if let Some(p) = version.manifest.part(id) {
                    wanted.push((p.clone(), rows));
                }
            }
            (version, pin, wanted, mem)
        };
        let mut out = RowsOf::default();
        // Hidden rows are not exported: tombstoned ones and those of
        // logical requests (undo.rs), as every read leaves them out.
        let logical = crate::undo::logical_requests(&version.manifest.requests);
        let mut kept = Vec::with_capacity(wanted.len());
        for (p, mut rows) in wanted {
            let bits = version.tombstones.get(&p.id);
            let hidden =
                crate::undo::hidden_in_part(&inner.storage, &inner.logical, &logical, &p, bits)?;
            if let Some(dead) = hidden {
                rows.andnot_inplace(&dead);
            }
            if !rows.is_empty() {
                kept.push((p, rows));
            }
        }
        let mut wanted = kept;
        // Parts are read a few at a time on every core, and delivered in
        // order: memory holds one group's rows, not the whole export.
        let group = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
        while !wanted.is_empty() {
            let take: Vec<(PartMeta, Bitmap)> = wanted.drain(..group.min(wanted.len())).collect();
            let batches = crate::parallel::try_map(&take, "export read", |(p, rows)| {
                let columns: Vec<String> = p
                    .table
                    .def()
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
                read_columns_at(&inner.storage, p, &cols, Some(rows))
            })?;
            for ((p, _), b) in take.iter().zip(batches) {
                out.parts += 1;
                *out.rows.entry(p.table).or_default() += b.num_rows() as u64;
                f(p.table, with_uuid_text(b)?)?;
            }
        }
        for (t, b) in mem {
            *out.rows.entry(t).or_default() += b.num_rows() as u64;
            f(t, with_uuid_text(b)?)?;
        }
        drop(pin);
        Ok(out)
    }
}

/// Add `rows` of `p` to `wanted` (a part may be matched by several id
/// chunks).
fn merge(wanted: &mut Vec<(PartMeta, Bitmap)>, p: &PartMeta, rows: Bitmap) {
    match wanted.iter_mut().find(|(q, _)| q.id == p.id) {
        Some((_, r)) => r.or_inplace(&rows),
        None => wanted.push((p.clone(), rows)),
    }
}

/// The visible buffered rows of `ids`, per memtable chunk.
fn buffered(
    st: &crate::store::State,
    project: i64,
    tables: &[Table],
    ids: &[&String],
) -> Result<Vec<(Table, RecordBatch)>> {
    let mut out = Vec::new();
    let logical = crate::undo::logical_requests(&st.version.manifest.requests);
    let mut hidden = croaring::Treemap::new();
    for m in st.memtables() {
        crate::undo::hide_buffered(&logical, m.chunks.iter(), &mut hidden)?;
    }
    for m in st.memtables() {
        let mut seqs = Vec::new();
        for t in tables {
            for d in ids {
                m.find(*t, project, d, 0..u64::MAX, &mut seqs);
            }
        }
        seqs.retain(|s| !st.mem_deleted.contains(*s) && !hidden.contains(*s));
        seqs.sort_unstable();
        seqs.dedup();
        if !seqs.is_empty() {
            out.extend(m.rows_at(&seqs)?);
        }
    }
    Ok(out)
}
