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
//! * The same reader checks every byte it returns against the part's
//!   checksums (`elide_store::checksum`): the footer region against the
//!   manifest's CRC before the footer is trusted, and each range DataFusion
//!   fetches against the block list in that footer (the range widened to
//!   whole blocks). A changed byte fails the query with an error naming the
//!   file; it never becomes a changed value.

use std::collections::HashMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use croaring::Bitmap;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use elide_store::checksum::{blocks_in_tail, blocks_of, check_tail, BlockList};
use elide_store::format::PartChecksum;
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
    /// File size, as in the manifest.
    pub size: u64,
    /// The part's checksums (`None`: a part written before them).
    pub checksum: Option<PartChecksum>,
    /// The store the part belongs to (part paths repeat across stores).
    pub store_id: String,
}

/// Decoded block lists of parts, by store, path and footer checksum
/// (parts are immutable, so an entry never goes stale; the footer itself
/// is verified at every open).
fn verified_footers() -> &'static Mutex<HashMap<String, Arc<BlockList>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<BlockList>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Most entries kept in [`verified_footers`] (then it starts over).
const MAX_VERIFIED_FOOTERS: usize = 100_000;

fn remember(key: String, blocks: Arc<BlockList>) {
    if let Ok(mut c) = verified_footers().lock() {
        if c.len() >= MAX_VERIFIED_FOOTERS {
            c.clear();
        }
        c.insert(key, blocks);
    }
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
            blocks: None,
        }))
    }
}

struct CheckedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    expected: ExpectedLayout,
    path: String,
    /// Set once the footer is verified (parts with checksums).
    blocks: Option<Arc<BlockList>>,
}

impl CheckedReader {
    fn corrupt(&self, what: impl std::fmt::Display) -> ParquetError {
        ParquetError::General(format!(
            "part {} ({}) is corrupt: {what}; refusing to scan it",
            self.expected.part_id, self.path
        ))
    }

    fn cache_key(&self) -> String {
        let crc = self.expected.checksum.map_or(0, |c| c.tail_crc32);
        format!("{}/{}/{crc:08x}", self.expected.store_id, self.path)
    }

    /// The footer region, verified against the manifest's CRC.
    async fn verified_tail(&mut self, sum: PartChecksum) -> parquet::errors::Result<Bytes> {
        let size = self.expected.size;
        let tail = self.inner.get_bytes(sum.data_len.min(size)..size).await?;
        check_tail(&sum, size, &tail).map_err(|e| self.corrupt(e))?;
        Ok(tail)
    }

    /// The part's block list: this reader's, the process cache's, or read
    /// from the footer region (verified) now. DataFusion may read data
    /// through a reader other than the one that loaded the metadata.
    async fn blocks(&mut self, sum: PartChecksum) -> parquet::errors::Result<Arc<BlockList>> {
        if let Some(b) = &self.blocks {
            return Ok(Arc::clone(b));
        }
        let key = self.cache_key();
        if let Some(b) = verified_footers()
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            self.blocks = Some(Arc::clone(&b));
            return Ok(b);
        }
        let tail = self.verified_tail(sum).await?;
        let b = Arc::new(blocks_in_tail(&sum, &tail).map_err(|e| self.corrupt(e))?);
        remember(key, Arc::clone(&b));
        self.blocks = Some(Arc::clone(&b));
        Ok(b)
    }

    /// Fetch `ranges`, checking each against the checksums.
    async fn fetch_checked(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> parquet::errors::Result<Vec<Bytes>> {
        let Some(sum) = self.expected.checksum else {
            // A part written before checksums: read as it is.
            return self.inner.get_byte_ranges(ranges).await;
        };
        let blocks = self.blocks(sum).await?;
        if ranges.iter().any(|r| r.end > sum.data_len) {
            // Outside the pages (page indexes, footer): rare; check the
            // whole footer region for each such range.
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(self.fetch_one_checked(r, &blocks, sum).await?);
            }
            return Ok(out);
        }
        let aligned: Vec<Range<u64>> = ranges.iter().map(|r| blocks.aligned(r)).collect();
        let fetched = self.inner.get_byte_ranges(aligned.clone()).await?;
        let mut out = Vec::with_capacity(ranges.len());
        if fetched.len() != ranges.len() {
            return Err(self.corrupt("the reader returned fewer ranges than asked"));
        }
        for ((r, a), bytes) in ranges.iter().zip(&aligned).zip(fetched) {
            blocks.verify(a, &bytes).map_err(|e| self.corrupt(e))?;
            let from = (r.start - a.start) as usize;
            out.push(bytes.slice(from..from + (r.end - r.start) as usize));
        }
        Ok(out)
    }

    async fn fetch_one_checked(
        &mut self,
        r: Range<u64>,
        blocks: &BlockList,
        sum: PartChecksum,
    ) -> parquet::errors::Result<Bytes> {
        let mut buf = Vec::with_capacity((r.end - r.start) as usize);
        if r.start < sum.data_len {
            let a = blocks.aligned(&(r.start..r.end.min(sum.data_len)));
            let bytes = self.inner.get_bytes(a.clone()).await?;
            blocks.verify(&a, &bytes).map_err(|e| self.corrupt(e))?;
            let from = (r.start - a.start) as usize;
            let to = (r.end.min(sum.data_len) - a.start) as usize;
            buf.extend_from_slice(&bytes[from..to]);
        }
        if r.end > sum.data_len {
            let tail = self.verified_tail(sum).await?;
            let from = r.start.max(sum.data_len) - sum.data_len;
            let to = (r.end - sum.data_len) as usize;
            let slice = tail
                .get(from as usize..to)
                .ok_or_else(|| self.corrupt("read past the end of the file"))?;
            buf.extend_from_slice(slice);
        }
        Ok(Bytes::from(buf))
    }
}

impl AsyncFileReader for CheckedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let mut v = self.fetch_checked(vec![range]).await?;
            v.pop()
                .ok_or_else(|| ParquetError::General("no bytes fetched".into()))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.fetch_checked(ranges).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            // The footer region is checked at every open of the file (one
            // small read): DataFusion may hold the footer in its cache, but
            // a file damaged since must still fail the query.
            if let Some(sum) = self.expected.checksum {
                self.verified_tail(sum).await?;
            }
            let key = self.cache_key();
            let cached = self
                .expected
                .checksum
                .and_then(|_| verified_footers().lock().ok()?.get(&key).cloned());
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
            if let Some(sum) = self.expected.checksum {
                let blocks = match cached {
                    Some(b) => b,
                    None => {
                        let b = Arc::new(
                            blocks_of(&md, &sum)
                                .ok_or_else(|| self.corrupt("the footer has no valid block checksum list"))?,
                        );
                        remember(key, Arc::clone(&b));
                        b
                    }
                };
                self.blocks = Some(blocks);
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
            checksum: None,
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
