//! A subject-access export: everything held about one person, in one call
//! ([`Persons::export`]): the profile with all its distinct ids, the UUIDs
//! of persons merged into it (through the overrides), its activity
//! entries, and every visible event and recording row that is the
//! person's: the rows of its distinct ids over the runs of `_seq`s it held
//! them, and of ids a reset or a split detached from it up to then
//! (`persons/runs.rs`; the store finds them through its
//! distinct-id index, not a scan). The same rows are what deleting the
//! person would hide, so an export that skips the rows (`f` doing
//! nothing) is the dry run of the deletion.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::UInt64Type;
use arrow::record_batch::RecordBatch;
use elide_store::schema::{DISTINCT_ID_COLUMN, SEQ_COLUMN};
use elide_store::{RowsOf, StoreError, Table};
use uuid::Uuid;

use crate::error::Result;
use crate::meta::{Activity, MetaStore, MetaTx};
use crate::persons::runs::{holders, Span};
use crate::persons::{find, view, Person, Persons};

/// The metadata part of an export.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PersonExport {
    /// The profile, with every distinct id it owns.
    pub person: Person,
    /// UUIDs of persons merged into this one (their ids are now its own).
    pub merged_person_uuids: Vec<String>,
    /// Activity entries, oldest first.
    pub activity: Vec<Activity>,
}

/// Where an export goes: the metadata first, then the rows.
pub trait ExportSink {
    /// The person's metadata (called once, before any row).
    fn person(&mut self, meta: &PersonExport) -> Result<()>;
    /// A batch of the person's rows of `table`, in its stored schema.
    fn rows(&mut self, table: Table, batch: RecordBatch) -> elide_store::Result<()>;
}

impl<M: MetaStore> Persons<M> {
    /// The metadata of person `key` (integer id or UUID) of `project`.
    pub fn export_meta(&self, project: i64, key: &str) -> Result<PersonExport> {
        self.meta()
            .read(|tx| meta_of(tx, project, key).map(|(m, _)| m))
    }

    /// Export person `key` of `project` to `sink`: its metadata, then its
    /// rows of `tables` (empty: all). Returns the rows delivered per
    /// table.
    pub fn export(
        &self,
        project: i64,
        key: &str,
        tables: &[Table],
        sink: &mut dyn ExportSink,
    ) -> Result<RowsOf> {
        let (meta, runs) = self.meta().read(|tx| {
            let (meta, merged) = meta_of(tx, project, key)?;
            let ids = &meta.person.distinct_ids;
            let mut uuids = vec![meta.person.uuid];
            uuids.extend(merged);
            let runs = holders(tx, project, uuids, ids)?.spans(ids);
            Ok((meta, runs))
        })?;
        sink.person(&meta)?;
        // Every id is read in one pass; an id another holder bounds is
        // read whole and cut to the person's runs (most persons have no
        // such id, and their rows go as they are read).
        let mut by_id: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for s in runs {
            by_id.entry(s.id.clone()).or_default().push(s);
        }
        let cut = by_id.values().flatten().any(|s| !s.is_whole());
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let mut rows: BTreeMap<Table, u64> = BTreeMap::new();
        let read = self
            .store()
            .rows_of_distinct_ids(project, &ids, tables, &mut |t, b| {
                let b = if cut { within(&b, &by_id)? } else { b };
                if b.num_rows() == 0 {
                    return Ok(());
                }
                *rows.entry(t).or_default() += b.num_rows() as u64;
                sink.rows(t, b)
            })?;
        Ok(RowsOf {
            rows,
            parts: read.parts,
        })
    }

    /// The rows an export of person `key` would hold, counted without
    /// sending them anywhere: the dry run of deleting the person's events
    /// and recordings. (Rows of ids another holder bounds are read, to be
    /// cut by `_seq`.)
    pub fn export_counts(&self, project: i64, key: &str) -> Result<RowsOf> {
        self.export(project, key, &[], &mut Discard)
    }
}

/// A sink that keeps nothing: [`Persons::export`] into it counts the
/// rows (a dry run).
pub struct Discard;

impl ExportSink for Discard {
    fn person(&mut self, _: &PersonExport) -> Result<()> {
        Ok(())
    }
    fn rows(&mut self, _: Table, _: RecordBatch) -> elide_store::Result<()> {
        Ok(())
    }
}

/// The metadata of person `key`, and the persons merged into it.
fn meta_of(tx: &mut dyn MetaTx, project: i64, key: &str) -> Result<(PersonExport, Vec<Uuid>)> {
    let row = find(tx, project, key)?;
    let person = view(tx, row)?;
    let merged = tx.merged_into(project, &person.uuid)?;
    // Its activity and that of the persons merged into it (logged under
    // their own UUIDs before the merge), oldest first.
    let mut activity = tx.activity(project, Some(&person.uuid), 0, usize::MAX)?;
    for u in &merged {
        activity.extend(tx.activity(project, Some(u), 0, usize::MAX)?);
    }
    activity.sort_by_key(|a| a.id);
    let meta = PersonExport {
        person,
        merged_person_uuids: merged.iter().map(|u| u.hyphenated().to_string()).collect(),
        activity,
    };
    Ok((meta, merged))
}

/// The rows of `b` whose (distinct id, `_seq`) is in one of `runs`.
fn within(b: &RecordBatch, runs: &BTreeMap<String, Vec<Span>>) -> elide_store::Result<RecordBatch> {
    let missing = |c: &str| StoreError::Internal(format!("an exported batch has no {c} column"));
    let ids = b
        .column_by_name(DISTINCT_ID_COLUMN)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| missing(DISTINCT_ID_COLUMN))?;
    let seqs = b
        .column_by_name(SEQ_COLUMN)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| missing(SEQ_COLUMN))?;
    let keep: BooleanArray = (0..b.num_rows())
        .map(|i| {
            Some(
                !ids.is_null(i)
                    && runs
                        .get(ids.value(i))
                        .is_some_and(|r| r.iter().any(|s| s.holds(seqs.value(i)))),
            )
        })
        .collect();
    Ok(arrow::compute::filter_record_batch(b, &keep)?)
}
