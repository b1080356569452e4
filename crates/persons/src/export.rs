//! A subject-access export: everything held about one person, in one call
//! ([`Persons::export`]): the profile with all its distinct ids, the UUIDs
//! of persons merged into it (through the overrides), its activity
//! entries, and every visible event and recording row of its distinct ids
//! (the store finds them through its distinct-id index, not a scan). The
//! same rows are what deleting the person would hide, so an export that
//! skips the rows (`f` doing nothing) is the dry run of the deletion.

use arrow::record_batch::RecordBatch;
use elide_store::{RowsOf, Table};

use crate::error::Result;
use crate::meta::{Activity, MetaStore};
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
        self.meta().read(|tx| {
            let row = find(tx, project, key)?;
            let person = view(tx, row)?;
            let merged = tx.merged_into(project, &person.uuid)?;
            let mut activity = tx.activity(project, Some(&person.uuid), 0, usize::MAX)?;
            activity.reverse();
            Ok(PersonExport {
                person,
                merged_person_uuids: merged.iter().map(|u| u.hyphenated().to_string()).collect(),
                activity,
            })
        })
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
        let meta = self.export_meta(project, key)?;
        sink.person(&meta)?;
        let rows = self.store().rows_of_distinct_ids(
            project,
            &meta.person.distinct_ids,
            tables,
            &mut |t, b| sink.rows(t, b),
        )?;
        Ok(rows)
    }

    /// The rows an export of person `key` would hold, counted without
    /// reading them out: the dry run of deleting the person's events and
    /// recordings.
    pub fn export_counts(&self, project: i64, key: &str) -> Result<RowsOf> {
        struct CountOnly;
        impl ExportSink for CountOnly {
            fn person(&mut self, _: &PersonExport) -> Result<()> {
                Ok(())
            }
            fn rows(&mut self, _: Table, _: RecordBatch) -> elide_store::Result<()> {
                Ok(())
            }
        }
        self.export(project, key, &[], &mut CountOnly)
    }
}
