//! Tombstones inside the parquet scan, failing closed.
//!
//! * [`access_plan`] turns a part's tombstone bitmap into DataFusion's
//!   [`ParquetAccessPlan`]: a row group with no deleted row is scanned whole,
//!   a fully deleted one is skipped, others get a `RowSelection` so that the
//!   parquet decoder skips deleted rows (and whole pages of them, with the
//!   page index) instead of decoding and filtering them.
//! * [`PartReaderFactory`] wraps DataFusion's cached parquet reader and, when
//!   a part's footer is read, checks the file's row groups against the
//!   layout recorded in the manifest. If they differ — the file was replaced,
//!   truncated, or rewritten behind the manifest's back — row positions no
//!   longer mean what the tombstones say, and the query fails instead of
//!   returning deleted rows. It also holds the query's [`Snapshot`], so the
//!   files the plan reads are not garbage-collected while it runs.

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use croaring::Bitmap;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use elide_store::{PartMeta, Snapshot};
use futures::future::BoxFuture;
use futures::FutureExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

/// The layout a part must have on disk, attached to its `PartitionedFile`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedLayout {
    /// Part id.
    pub part_id: u64,
    /// Rows per row group, as in the manifest.
    pub row_groups: Vec<u64>,
}

/// Build the access plan of a part from its tombstone bitmap.
///
/// Errors when the bitmap does not fit the part (a position past its last
/// row, or row groups that do not add up to its row count): the scan must
/// not run with tombstones it cannot apply.
pub fn access_plan(part: &PartMeta, deleted: &Bitmap) -> Result<ParquetAccessPlan> {
    let total: u64 = part.row_groups.iter().sum();
    if total != part.rows {
        return Err(DataFusionError::Execution(format!(
            "part {} ({}): row groups add up to {total} rows, manifest says {}; refusing to scan without its tombstones",
            part.id, part.path, part.rows
        )));
    }
    if let Some(max) = deleted.maximum() {
        if u64::from(max) >= part.rows {
            return Err(DataFusionError::Execution(format!(
                "part {} ({}): tombstone position {max} is past its {} rows; refusing to scan",
                part.id, part.path, part.rows
            )));
        }
    }
    let mut groups = Vec::with_capacity(part.row_groups.len());
    let mut offset: u64 = 0;
    for &n in &part.row_groups {
        let (start, end) = (offset as u32, (offset + n) as u32);
        let dead = deleted.range_cardinality(start..end);
        groups.push(if dead == 0 {
            RowGroupAccess::Scan
        } else if dead == n {
            RowGroupAccess::Skip
        } else {
            RowGroupAccess::Selection(selection(deleted, start, end))
        });
        offset += n;
    }
    Ok(ParquetAccessPlan::new(groups))
}

/// Row selection over rows `[start, end)` keeping those not in `deleted`.
fn selection(deleted: &Bitmap, start: u32, end: u32) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = start;
    let mut it = deleted.iter();
    it.reset_at_or_after(start);
    let mut run_start: Option<u32> = None;
    let mut prev = 0u32;
    for pos in it {
        if pos >= end {
            break;
        }
        match run_start {
            Some(_) if pos == prev + 1 => {}
            Some(rs) => {
                selectors.push(RowSelector::select((rs - at) as usize));
                selectors.push(RowSelector::skip((prev + 1 - rs) as usize));
                at = prev + 1;
                run_start = Some(pos);
            }
            None => run_start = Some(pos),
        }
        prev = pos;
    }
    if let Some(rs) = run_start {
        selectors.push(RowSelector::select((rs - at) as usize));
        selectors.push(RowSelector::skip((prev + 1 - rs) as usize));
        at = prev + 1;
    }
    if at < end {
        selectors.push(RowSelector::select((end - at) as usize));
    }
    selectors.retain(|s| s.row_count > 0);
    RowSelection::from(selectors)
}

/// Creates readers for parts that verify each file against the manifest.
#[derive(Debug)]
pub struct PartReaderFactory {
    inner: Arc<dyn ParquetFileReaderFactory>,
    /// Keeps the snapshot (and so its files) alive while the plan lives.
    snapshot: Arc<Snapshot>,
}

impl PartReaderFactory {
    /// Wrap `inner` for reads of `snapshot`'s parts.
    pub fn new(inner: Arc<dyn ParquetFileReaderFactory>, snapshot: Arc<Snapshot>) -> Self {
        PartReaderFactory { inner, snapshot }
    }

    /// Version of the snapshot the plan reads.
    pub fn snapshot_version(&self) -> u64 {
        self.snapshot.version()
    }
}

impl ParquetFileReaderFactory for PartReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let Some(expected) = file.extensions.get::<ExpectedLayout>().cloned() else {
            return Err(DataFusionError::Internal(format!(
                "part file {} has no expected layout attached; refusing to scan it",
                file.object_meta.location
            )));
        };
        let path = file.object_meta.location.to_string();
        let inner = self
            .inner
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(CheckedReader {
            inner,
            expected,
            path,
        }))
    }
}

struct CheckedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    expected: ExpectedLayout,
    path: String,
}

impl AsyncFileReader for CheckedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let md = self.inner.get_metadata(options).await.map_err(|e| {
                ParquetError::General(format!(
                    "part {} ({}) does not match the manifest or cannot be read: {e}; refusing to scan it",
                    self.expected.part_id, self.path
                ))
            })?;
            let on_disk: Vec<u64> = md.row_groups().iter().map(|rg| rg.num_rows() as u64).collect();
            if on_disk != self.expected.row_groups {
                return Err(ParquetError::General(format!(
                    "part {} ({}) does not match the manifest: row groups on disk {:?}, expected {:?}; \
                     refusing to scan it (its tombstones could not be applied)",
                    self.expected.part_id, self.path, on_disk, self.expected.row_groups
                )));
            }
            Ok(md)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(row_groups: Vec<u64>) -> PartMeta {
        PartMeta {
            id: 1,
            table: elide_store::Table::Events,
            project_id: 1,
            day: 0,
            path: "p".into(),
            size: 0,
            rows: row_groups.iter().sum(),
            row_groups,
            min_seq: 0,
            max_seq: 0,
            min_ts: 0,
            max_ts: 0,
            tombstone: None,
        }
    }

    fn kept(plan: &ParquetAccessPlan, rg_rows: &[u64]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut offset = 0u32;
        for (i, access) in plan.inner().iter().enumerate() {
            let n = rg_rows[i] as u32;
            match access {
                RowGroupAccess::Skip => {}
                RowGroupAccess::Scan => out.extend(offset..offset + n),
                RowGroupAccess::Selection(sel) => {
                    let mut at = offset;
                    for s in sel.iter() {
                        if !s.skip {
                            out.extend(at..at + s.row_count as u32);
                        }
                        at += s.row_count as u32;
                    }
                    assert_eq!(at, offset + n, "selection must cover the row group");
                }
            }
            offset += n;
        }
        out
    }

    #[test]
    fn plan_keeps_exactly_the_live_rows() {
        let rgs = vec![10, 10, 5];
        let p = part(rgs.clone());
        for deleted in [
            vec![],
            vec![0],
            vec![9, 10],
            vec![10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
            vec![0, 2, 4, 24],
            (0..25).collect::<Vec<u32>>(),
        ] {
            let b = Bitmap::of(&deleted);
            let plan = access_plan(&p, &b).unwrap();
            let expect: Vec<u32> = (0..25).filter(|i| !deleted.contains(i)).collect();
            assert_eq!(kept(&plan, &rgs), expect, "deleted {deleted:?}");
        }
        let full = access_plan(&p, &Bitmap::from_range(10..20)).unwrap();
        assert!(matches!(full.inner()[1], RowGroupAccess::Skip));
    }

    #[test]
    fn plan_fails_closed_on_mismatch() {
        let p = part(vec![10]);
        assert!(access_plan(&p, &Bitmap::of(&[10])).is_err());
        let mut bad = part(vec![10]);
        bad.rows = 11;
        assert!(access_plan(&bad, &Bitmap::of(&[1])).is_err());
    }
}
