//! Deleting by `person_id`: [`Store::delete_person_ids`], for data
//! appended without the persons layer (which knows each person's distinct
//! ids and deletes through them).
//!
//! A person, in PostHog's model and in Elide's, is the set of its distinct
//! ids. So a deletion by person id is resolved into one by distinct ids:
//! the `events` rows of the project (parts and buffered rows) are scanned
//! for the given `person_id`s, the distinct ids found on those rows are
//! collected, and every row of those distinct ids appended before the call
//! is deleted in one commit, through [`Store::delete_many`] — so the
//! request is tracked, purged and verified like any other, and the
//! verification proves that no row of those distinct ids is left below the
//! cut-off.
//!
//! Rows that count: visible rows (not deleted earlier) of the project with
//! `_seq` below the cut-off, taken when the call starts. Every row
//! acknowledged before the call is among them. Not covered: an append
//! still in flight, and a bulk ingest (`ingest`, `ingest_files`) that is
//! running during the call and commits after it: a distinct id that only
//! its rows carry is not found (call again once it has committed).
//!
//! What this deletes, exactly: every row, in the chosen tables, of every
//! distinct id that has at least one `events` row carrying one of the
//! person ids, appended before the call. Rows of such a distinct id that
//! carry another person id (or none) go too: in PostHog's model they are
//! the same person's (ids merged, events captured before the merge).
//!
//! Cost: the scan reads the `distinct_id` and `person_id` columns of the
//! row groups of the project's `events` parts whose `person_id` bloom
//! filter may hold one of the ids (a person active on a few days costs a
//! footer and a filter per other part, not its columns); memory holds
//! only the distinct ids found.

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StoreError};
use crate::part::read_row_groups_with;
use crate::schema::{Table, DISTINCT_ID_COLUMN, PERSON_ID_COLUMN, PROJECT_COLUMN, SEQ_COLUMN};
use crate::store::{DeleteOutcome, DeleteSpec, Store};

/// What [`Store::delete_person_ids`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonDeletion {
    /// The distinct ids found on rows of the person ids (sorted).
    pub distinct_ids: Vec<String>,
    /// The requests committed (empty when no row carried the person ids).
    pub requests: Vec<DeleteOutcome>,
}

impl PersonDeletion {
    /// Rows hidden by the deletion.
    pub fn rows_hidden(&self) -> u64 {
        self.requests.iter().map(|r| r.rows_hidden).sum()
    }
}

impl Store {
    /// Delete the persons `person_ids` (UUIDs, any case) of `project`: every
    /// row, in `tables` (empty: all), of every distinct id seen on an
    /// `events` row with one of those person ids, appended before the call;
    /// one commit (see the [module docs](crate::by_person)). Hidden from
    /// every later snapshot when it returns; purged and verified like any
    /// deletion request.
    pub fn delete_person_ids<S: AsRef<str>>(
        &self,
        project: i64,
        person_ids: &[S],
        tables: &[Table],
    ) -> Result<PersonDeletion> {
        self.inner().writable()?;
        crate::store::check_project(project)?;
        if person_ids.is_empty() {
            return Err(StoreError::InvalidInput(
                "a deletion needs at least one person id".into(),
            ));
        }
        // As stored: 16 bytes.
        let mut wanted = BTreeSet::new();
        for p in person_ids {
            let p = p.as_ref();
            let u = uuid::Uuid::try_parse(p).map_err(|e| {
                StoreError::InvalidInput(format!("person id {p:?} is not a UUID: {e}"))
            })?;
            wanted.insert(*u.as_bytes());
        }
        // Every row acknowledged before the call (an append that returned,
        // a committed ingest) is below this cut-off and in the snapshot
        // taken next. An append still in flight is not covered.
        let cutoff = self.inner().next_seq()?;
        let snap = self.snapshot()?;
        let mut found = BTreeSet::new();
        let storage = snap.storage();
        let scan = Scan {
            project,
            cutoff,
            wanted: &wanted,
        };
        for part in snap
            .parts(Table::Events)
            .filter(|p| p.project_id == project && p.min_seq < cutoff)
        {
            let columns = [
                DISTINCT_ID_COLUMN,
                PERSON_ID_COLUMN,
                PROJECT_COLUMN,
                SEQ_COLUMN,
            ];
            // Only the row groups whose bloom filter may hold one of the
            // ids (16-byte ids hash as bytes; all row groups of a part
            // that stores them as text, whose spelling may vary).
            let groups =
                read_row_groups_with(storage, part, &columns, PERSON_ID_COLUMN, |f, fixed| {
                    !fixed || wanted.iter().any(|w| f.check(&w[..]))
                })?;
            // Rows deleted earlier (not yet purged) are not the person's now.
            let deleted = snap.tombstone(part.id).map(|b| &**b);
            for (start, b) in groups {
                scan.collect(&b, deleted, start, &mut found, &part.path)?;
            }
        }
        for b in snap.memtable_batches(Table::Events) {
            // Buffered rows in a snapshot are already without deleted rows.
            scan.collect(b, None, 0, &mut found, "buffered rows")?;
        }
        drop(snap);
        let distinct_ids: Vec<String> = found.into_iter().collect();
        if distinct_ids.is_empty() {
            return Ok(PersonDeletion {
                distinct_ids,
                requests: Vec::new(),
            });
        }
        let requests = self.delete_many([DeleteSpec {
            project_id: project,
            distinct_ids: distinct_ids.clone(),
            cutoff: Some(cutoff),
            floor: 0,
            keeps_ids: false,
            tables: tables.to_vec(),
            kind: crate::format::RequestKind::Person,
            metadata_rows_removed: 0,
        }])?;
        tracing::info!(
            project,
            persons = wanted.len(),
            distinct_ids = distinct_ids.len(),
            "deletion by person id committed"
        );
        Ok(PersonDeletion {
            distinct_ids,
            requests,
        })
    }
}

/// What [`Store::delete_person_ids`] looks for.
struct Scan<'a> {
    project: i64,
    cutoff: u64,
    wanted: &'a BTreeSet<[u8; 16]>,
}

impl Scan<'_> {
    /// Add the distinct ids of `b`'s rows that carry a wanted person id,
    /// in the project, below the cut-off, and not in `deleted` (row
    /// positions of a part, where `b`'s first row is at `start`).
    fn collect(
        &self,
        b: &RecordBatch,
        deleted: Option<&croaring::Bitmap>,
        start: u64,
        found: &mut BTreeSet<String>,
        what: &str,
    ) -> Result<()> {
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| StoreError::corrupt(what, format!("no column {name}")))
        };
        let bad =
            |name: &str| StoreError::corrupt(what, format!("column {name} has the wrong type"));
        let dids = col(DISTINCT_ID_COLUMN)?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad(DISTINCT_ID_COLUMN))?;
        // 16 bytes, or text in parts written before (parsed: the store
        // validated it at ingest, so text that is not a UUID is damage).
        let persons_col = col(PERSON_ID_COLUMN)?;
        let parsed;
        let persons = match persons_col.as_fixed_size_binary_opt() {
            Some(bytes) if bytes.value_length() == 16 => bytes,
            _ => {
                let text = persons_col
                    .as_string_opt::<i32>()
                    .ok_or_else(|| bad(PERSON_ID_COLUMN))?;
                parsed = crate::schema::parse_uuids(text.iter()).map_err(|(row, reason)| {
                    StoreError::corrupt(what, format!("row {row} of {PERSON_ID_COLUMN}: {reason}"))
                })?;
                &parsed
            }
        };
        let projects = col(PROJECT_COLUMN)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad(PROJECT_COLUMN))?;
        let seqs = col(SEQ_COLUMN)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad(SEQ_COLUMN))?;
        for i in 0..b.num_rows() {
            if persons.is_null(i)
                || !<[u8; 16]>::try_from(persons.value(i)).is_ok_and(|k| self.wanted.contains(&k))
                || projects.value(i) != self.project
                || seqs.value(i) >= self.cutoff
                || deleted
                    .is_some_and(|d| u32::try_from(start + i as u64).is_ok_and(|p| d.contains(p)))
            {
                continue;
            }
            if !found.contains(dids.value(i)) {
                found.insert(dids.value(i).to_string());
            }
        }
        Ok(())
    }
}
