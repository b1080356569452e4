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
//!   manifest's CRC, decoded once into metadata that is cached (so a scan
//!   never trusts footer bytes read unchecked, and pays for the footer
//!   once per process), and each range DataFusion fetches against the
//!   block list in that footer (ranges widened to whole blocks and merged,
//!   each block verified once per fetch). A changed byte fails the query
//!   with an error naming the file; it never becomes a changed value.

use std::collections::HashMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use croaring::Bitmap;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetAccessPlan, RowGroupAccess,
};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use elide_store::checksum::{blocks_in_tail, check_tail, BlockList};
use elide_store::format::PartChecksum;
use elide_store::{PartMeta, Snapshot};
use futures::future::BoxFuture;
use futures::FutureExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::bloom_filter::Sbbf;
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

impl ExpectedLayout {
    /// The layout of `part`, a part of the store `store_id`.
    pub fn of(part: &PartMeta, store_id: &str) -> Self {
        ExpectedLayout {
            part_id: part.id,
            row_groups: part.row_groups.clone(),
            size: part.size,
            checksum: part.checksum,
            store_id: store_id.to_string(),
        }
    }
}

/// What a scan of `part` reads: its `hidden` rows left out (tombstone
/// and logical requests, [`access_plan`]) and the row groups `skip` ruled
/// out whole; `None` when it reads the whole part. A row group the part
/// does not have is an error.
pub(crate) fn scan_plan(
    part: &PartMeta,
    hidden: Option<&Bitmap>,
    skip: &[usize],
) -> Result<Option<ParquetAccessPlan>> {
    // The tombstones of the row groups ruled out are not looked at: a
    // lookup of a few persons rules out most row groups, and walking their
    // deleted positions one by one was work for nothing
    // (docs/benchmarks.md, "One person after a delete").
    let mut plan = match hidden {
        Some(bits) => Some(access_plan(part, bits, skip)?),
        None => None,
    };
    if !skip.is_empty() {
        let groups = part.row_groups.len();
        let p = plan.get_or_insert_with(|| ParquetAccessPlan::new_all(groups));
        for &i in skip {
            if i >= groups {
                return Err(DataFusionError::Plan(format!(
                    "part {} has no row group {i}",
                    part.id
                )));
            }
            p.skip(i);
        }
    }
    Ok(plan)
}

/// A part's footer, decoded from its verified footer region: the parquet
/// metadata (with the page index) and the block list, and the region's
/// bytes (bloom filters are read from them without another read or
/// check).
#[derive(Debug)]
struct VerifiedFooter {
    metadata: Arc<ParquetMetaData>,
    blocks: Arc<BlockList>,
    tail: Bytes,
}

/// Verified footers by store, path and footer checksum. Parts are
/// immutable, so an entry never goes stale; and since the metadata was
/// decoded from verified bytes, a scan that uses it never trusts bytes that
/// changed on disk afterwards (the pages it reads are verified each time).
/// Bounded by the footers' memory, oldest out first.
struct FooterCache {
    map: HashMap<String, Arc<VerifiedFooter>>,
    order: std::collections::VecDeque<(String, usize)>,
    bytes: usize,
}

/// Memory the footer cache may hold.
const FOOTER_CACHE_BYTES: usize = 256 << 20;

fn footer_cache() -> &'static Mutex<FooterCache> {
    static CACHE: OnceLock<Mutex<FooterCache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(FooterCache {
            map: HashMap::new(),
            order: Default::default(),
            bytes: 0,
        })
    })
}

/// The footer cache's key of the part at `path`: its store, path and
/// footer CRC (a part rewritten in place would not match).
fn footer_key(expected: &ExpectedLayout, path: &str) -> String {
    let crc = expected.checksum.map_or(0, |c| c.tail_crc32);
    format!("{}/{path}/{crc:08x}", expected.store_id)
}

fn cached_footer(key: &str) -> Option<Arc<VerifiedFooter>> {
    footer_cache().lock().ok()?.map.get(key).cloned()
}

fn remember(key: String, footer: Arc<VerifiedFooter>) {
    let Ok(mut c) = footer_cache().lock() else {
        return;
    };
    let size = footer.metadata.memory_size() + footer.tail.len();
    if c.map.insert(key.clone(), footer).is_none() {
        c.order.push_back((key, size));
        c.bytes += size;
    }
    while c.bytes > FOOTER_CACHE_BYTES {
        let Some((old, n)) = c.order.pop_front() else {
            break;
        };
        c.map.remove(&old);
        c.bytes -= n;
    }
}

/// The footer region of a part as a (sparse) parquet file, to decode its
/// metadata and page index from verified bytes only.
struct TailOnly {
    len: u64,
    start: u64,
    tail: Bytes,
}

impl parquet::file::reader::Length for TailOnly {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for TailOnly {
    type T = std::io::Cursor<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let from = start
            .checked_sub(self.start)
            .filter(|f| *f <= self.tail.len() as u64)
            .ok_or_else(|| ParquetError::General(format!("footer read at byte {start}")))?;
        Ok(std::io::Cursor::new(self.tail.slice(from as usize..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start
            .checked_sub(self.start)
            .map(|f| f as usize)
            .filter(|f| f + length <= self.tail.len())
            .ok_or_else(|| ParquetError::General(format!("footer read at byte {start}")))?;
        Ok(self.tail.slice(from..from + length))
    }
}

/// Build the access plan of a part from its tombstone bitmap.
///
/// Errors when the bitmap does not fit the part (a position past its last
/// row, or row groups that do not add up to its row count): the scan must
/// not run with tombstones it cannot apply.
///
/// The row groups `skip` are skipped whole, their tombstones not looked
/// at (an index the part does not have is ignored here; [`scan_plan`]
/// refuses it).
pub fn access_plan(part: &PartMeta, deleted: &Bitmap, skip: &[usize]) -> Result<ParquetAccessPlan> {
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
    for (i, &n) in part.row_groups.iter().enumerate() {
        let (start, end) = (offset as u32, (offset + n) as u32);
        offset += n;
        if skip.contains(&i) {
            groups.push(RowGroupAccess::Skip);
            continue;
        }
        let dead = deleted.range_cardinality(start..end);
        groups.push(if dead == 0 {
            RowGroupAccess::Scan
        } else if dead == n {
            RowGroupAccess::Skip
        } else {
            RowGroupAccess::Selection(selection(deleted, start, end))
        });
    }
    Ok(ParquetAccessPlan::new(groups))
}

/// Row selection over rows `[start, end)` keeping those not in `deleted`.
///
/// The deleted positions are read as runs (`read_many_ranges`, a run per
/// deleted person in a part sorted by person) rather than one by one: a
/// scan plans this for every part it reads, on every query, and walking
/// each position was half of what a delete added to a whole-project count
/// (docs/benchmarks.md, "The tombstones read as runs").
fn selection(deleted: &Bitmap, start: u32, end: u32) -> RowSelection {
    let mut selectors = Vec::new();
    // Rows before `at` are covered by the selectors so far.
    let mut at = start;
    let mut cursor = deleted.cursor();
    cursor.reset_at_or_after(start);
    let mut runs = [croaring::RangeInclusive::default(); 256];
    'read: loop {
        let n = cursor.read_many_ranges(&mut runs);
        for run in &runs[..n] {
            if run.start >= end {
                break 'read;
            }
            // A run never starts before `start` (the cursor was moved
            // there) and is cut at the row group's end.
            let last = run.last.min(end - 1);
            selectors.push(RowSelector::select((run.start - at) as usize));
            selectors.push(RowSelector::skip((last + 1 - run.start) as usize));
            at = last + 1;
        }
        if n < runs.len() {
            break;
        }
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
    /// Keeps the snapshot (and so its files) alive while the plan lives;
    /// each reader counts itself in its store's scan activity.
    snapshot: Arc<Snapshot>,
}

impl PartReaderFactory {
    /// Wrap `inner` for reads of `snapshot`'s parts.
    pub fn new(inner: Arc<dyn ParquetFileReaderFactory>, snapshot: Arc<Snapshot>) -> Self {
        PartReaderFactory { inner, snapshot }
    }

    /// Reads of `snapshot`'s parts from its storage, their footers kept
    /// in `runtime`'s metadata cache.
    pub fn cached(snapshot: Arc<Snapshot>, runtime: &RuntimeEnv) -> Self {
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let inner = CachedParquetFileReaderFactory::new(snapshot.storage().inner(), cache);
        PartReaderFactory::new(Arc::new(inner), snapshot)
    }
}

/// A value a lookup looks for in a bloom-filtered column: its text, and
/// its 16 bytes when it is a UUID (what a 16-byte column's filter hashes).
#[derive(Debug, Clone)]
pub(crate) struct LookupValue {
    pub(crate) text: String,
    pub(crate) uuid: Option<[u8; 16]>,
}

impl PartReaderFactory {
    /// Which row groups of the part `file` may hold a row whose `column`
    /// is one of `values`, by the bloom filters in its verified footer
    /// (cached like every footer): a row group is ruled out only when its
    /// filter rules every value out. `None` when that cannot be known: a
    /// part written before checksums (its footer would be read unchecked)
    /// or before bloom filters, a column without one, a footer that cannot
    /// be read (the scan reports that error when it opens the part), row
    /// groups that differ from the manifest's (the scan must fail on that
    /// part, not skip it).
    pub(crate) async fn row_groups_with(
        &self,
        file: &PartitionedFile,
        column: &str,
        values: &[LookupValue],
    ) -> Option<Vec<bool>> {
        let expected = file.extensions.get::<ExpectedLayout>()?;
        let sum = expected.checksum?;
        // A footer verified before (the common case: a lookup plans over
        // parts it has seen) needs no reader.
        let key = footer_key(expected, file.object_meta.location.as_ref());
        let footer = match cached_footer(&key) {
            Some(f) => f,
            None => self
                .checked_reader(0, file.clone(), None, &ExecutionPlanMetricsSet::new())
                .ok()?
                .footer(sum)
                .await
                .ok()?,
        };
        let on_disk = footer
            .metadata
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows() as u64);
        if !on_disk.eq(expected.row_groups.iter().copied()) {
            return None;
        }
        let tail = TailOnly {
            len: expected.size,
            start: sum.data_len,
            tail: footer.tail.clone(),
        };
        let mut kept = Vec::with_capacity(footer.metadata.num_row_groups());
        for rg in footer.metadata.row_groups() {
            let chunk = rg
                .columns()
                .iter()
                .find(|c| c.column_path().parts() == [column])?;
            // 16-byte UUIDs are hashed as their bytes; text as its text
            // (parts written before UUIDs were stored as bytes).
            let bytes =
                chunk.column_descr().physical_type() == parquet::basic::Type::FIXED_LEN_BYTE_ARRAY;
            let filter = Sbbf::read_from_column_chunk(chunk, &tail).ok()??;
            kept.push(values.iter().any(|v| match bytes {
                true => v.uuid.is_some_and(|u| filter.check(&u[..])),
                false => filter.check(v.text.as_str()),
            }));
        }
        Some(kept)
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
        self.refuse_without_access_plan(&file)?;
        Ok(Box::new(self.checked_reader(
            partition_index,
            file,
            metadata_size_hint,
            metrics,
        )?))
    }
}

impl PartReaderFactory {
    /// A part with hidden rows (its tombstone, or an undo window) is read
    /// only with a row selection: a plan that lost its access plans (one
    /// rebuilt without them) fails here instead of reading those rows.
    /// Files that carry an access plan (every part with hidden rows, in
    /// Elide's own plans) pay nothing.
    fn refuse_without_access_plan(&self, file: &PartitionedFile) -> Result<()> {
        if file.extensions.get::<ParquetAccessPlan>().is_some() {
            return Ok(());
        }
        let Some(expected) = file.extensions.get::<ExpectedLayout>() else {
            return Ok(()); // `checked_reader` refuses it
        };
        let hides = |b: &Arc<Bitmap>| !b.is_empty();
        let mut hidden = self.snapshot.tombstone(expected.part_id).is_some_and(hides);
        if !hidden && self.snapshot.has_logical_requests() {
            if let Some(part) = self.snapshot.manifest().part(expected.part_id) {
                let bits = self
                    .snapshot
                    .hidden(part)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                hidden = bits.as_ref().is_some_and(hides);
            }
        }
        if hidden {
            return Err(DataFusionError::Internal(format!(
                "part {} ({}) has deleted rows but its scan has no access plan; refusing to scan it",
                expected.part_id, file.object_meta.location
            )));
        }
        Ok(())
    }

    /// A reader of `file` that checks it against its manifest entry.
    fn checked_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<CheckedReader> {
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
        Ok(CheckedReader {
            inner,
            expected,
            path,
            footer: None,
            _scan: self.snapshot.scan_guard(),
        })
    }
}

struct CheckedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    expected: ExpectedLayout,
    path: String,
    /// Set once the footer is verified (parts with checksums).
    footer: Option<Arc<VerifiedFooter>>,
    /// Counts this file as being read while the reader lives (a throttled
    /// compaction yields the CPU meanwhile).
    _scan: elide_store::ScanGuard,
}

impl CheckedReader {
    fn corrupt(&self, what: impl std::fmt::Display) -> ParquetError {
        ParquetError::General(format!(
            "part {} ({}) is corrupt: {what}; refusing to scan it",
            self.expected.part_id, self.path
        ))
    }

    fn cache_key(&self) -> String {
        footer_key(&self.expected, &self.path)
    }

    /// The footer region, verified against the manifest's CRC.
    async fn verified_tail(&mut self, sum: PartChecksum) -> parquet::errors::Result<Bytes> {
        let size = self.expected.size;
        let tail = self.inner.get_bytes(sum.data_len.min(size)..size).await?;
        check_tail(&sum, size, &tail).map_err(|e| self.corrupt(e))?;
        Ok(tail)
    }

    /// The part's verified footer: this reader's, the process cache's, or
    /// read from the footer region (verified) and decoded now.
    async fn footer(&mut self, sum: PartChecksum) -> parquet::errors::Result<Arc<VerifiedFooter>> {
        if let Some(f) = &self.footer {
            return Ok(Arc::clone(f));
        }
        let key = self.cache_key();
        let footer = match cached_footer(&key) {
            Some(f) => f,
            None => {
                let tail = self.verified_tail(sum).await?;
                let blocks = Arc::new(blocks_in_tail(&sum, &tail).map_err(|e| self.corrupt(e))?);
                let file = TailOnly {
                    len: self.expected.size,
                    start: sum.data_len,
                    tail: tail.clone(),
                };
                let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                    .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
                    .parse_and_finish(&file)
                    .map_err(|e| self.corrupt(format!("footer: {e}")))?;
                let f = Arc::new(VerifiedFooter {
                    metadata: Arc::new(metadata),
                    blocks,
                    tail,
                });
                remember(key, Arc::clone(&f));
                f
            }
        };
        self.footer = Some(Arc::clone(&footer));
        Ok(footer)
    }

    /// Fetch `ranges`, checking each against the checksums. The ranges
    /// are widened to whole blocks and merged, so that each block is read
    /// and verified once per call (DataFusion asks for a row group's
    /// column chunks in one call, and neighbours share blocks).
    async fn fetch_checked(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> parquet::errors::Result<Vec<Bytes>> {
        let Some(sum) = self.expected.checksum else {
            // A part written before checksums: read as it is.
            return self.inner.get_byte_ranges(ranges).await;
        };
        let footer = self.footer(sum).await?;
        let blocks = &footer.blocks;
        if ranges.iter().any(|r| r.end > sum.data_len) {
            // Outside the pages (page indexes, footer): rare; check the
            // whole footer region for each such range.
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(self.fetch_one_checked(r, blocks, sum).await?);
            }
            return Ok(out);
        }
        let mut merged: Vec<Range<u64>> = ranges
            .iter()
            .map(|r| {
                blocks.aligned(r).ok_or_else(|| {
                    self.corrupt(format!(
                        "a read of bytes {}..{} lies outside the column chunks",
                        r.start, r.end
                    ))
                })
            })
            .collect::<parquet::errors::Result<_>>()?;
        merged.sort_by_key(|r| r.start);
        merged.dedup_by(|next, prev| {
            if next.start <= prev.end {
                prev.end = prev.end.max(next.end);
                true
            } else {
                false
            }
        });
        let fetched = self.inner.get_byte_ranges(merged.clone()).await?;
        if fetched.len() != merged.len() {
            return Err(self.corrupt("the reader returned fewer ranges than asked"));
        }
        for (m, bytes) in merged.iter().zip(&fetched) {
            blocks.verify(m, bytes).map_err(|e| self.corrupt(e))?;
        }
        ranges
            .iter()
            .map(|r| {
                let i = merged.partition_point(|m| m.end <= r.start);
                match (merged.get(i), fetched.get(i)) {
                    (Some(m), Some(bytes)) if m.start <= r.start && r.end <= m.end => {
                        let from = (r.start - m.start) as usize;
                        Ok(bytes.slice(from..from + (r.end - r.start) as usize))
                    }
                    _ => Err(self.corrupt("a fetched range does not cover the read")),
                }
            })
            .collect()
    }

    async fn fetch_one_checked(
        &mut self,
        r: Range<u64>,
        blocks: &BlockList,
        sum: PartChecksum,
    ) -> parquet::errors::Result<Bytes> {
        let mut buf = Vec::with_capacity((r.end - r.start) as usize);
        if r.start < sum.data_len {
            let a = blocks
                .aligned(&(r.start..r.end.min(sum.data_len)))
                .ok_or_else(|| self.corrupt("a read lies outside the column chunks"))?;
            let bytes = self.inner.get_bytes(a.clone()).await?;
            blocks.verify(&a, &bytes).map_err(|e| self.corrupt(e))?;
            let from = (r.start - a.start) as usize;
            let to = (r.end.min(sum.data_len) - a.start) as usize;
            buf.extend_from_slice(&bytes[from..to]);
        }
        if r.end > sum.data_len {
            let tail = self.footer(sum).await?.tail.clone();
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
            // A part with checksums: its metadata is decoded from its
            // verified footer region (cached), never from bytes read
            // unchecked. A part without: DataFusion's reader, as it is.
            let md = match self.expected.checksum {
                Some(sum) => Arc::clone(&self.footer(sum).await?.metadata),
                None => self.inner.get_metadata(options).await.map_err(|e| {
                    ParquetError::General(format!(
                        "part {} ({}) does not match the manifest or cannot be read: {e}; refusing to scan it",
                        self.expected.part_id, self.path
                    ))
                })?,
            };
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
            last_day: None,
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
            blake3: None,
            runs: None,
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
            let plan = access_plan(&p, &b, &[]).unwrap();
            let expect: Vec<u32> = (0..25).filter(|i| !deleted.contains(i)).collect();
            assert_eq!(kept(&plan, &rgs), expect, "deleted {deleted:?}");
        }
        let full = access_plan(&p, &Bitmap::from_range(10..20), &[]).unwrap();
        assert!(matches!(full.inner()[1], RowGroupAccess::Skip));
    }

    proptest::proptest! {
        /// Against a model (the positions not deleted, one by one): any
        /// row groups, deleted positions alone and in runs (more than one
        /// read of runs, runs across row groups), whether or not the
        /// bitmap is stored as runs.
        #[test]
        fn plan_keeps_the_live_rows_of_any_tombstone(
            rgs in proptest::collection::vec(1u64..700, 1..6),
            runs in proptest::collection::vec((0u32..4000, 1u32..40), 0..600),
            optimize in proptest::bool::ANY,
        ) {
            let p = part(rgs.clone());
            let rows = p.rows as u32;
            let mut b = Bitmap::new();
            for (at, len) in runs {
                let at = at % rows;
                b.add_range(at..(at + len).min(rows));
            }
            if optimize {
                b.run_optimize();
            }
            let plan = access_plan(&p, &b, &[]).unwrap();
            let expect: Vec<u32> = (0..rows).filter(|i| !b.contains(*i)).collect();
            proptest::prop_assert_eq!(kept(&plan, &rgs), expect);
        }
    }

    /// Row groups ruled out are skipped whatever their tombstones; the
    /// others keep exactly their live rows; an index past the part's row
    /// groups is an error; with nothing hidden, only the skips.
    #[test]
    fn scan_plan_skips_ruled_out_groups_and_hides_the_rest() {
        let rgs = vec![10, 10, 5];
        let p = part(rgs.clone());
        let deleted = vec![0, 2, 12, 13, 24];
        let b = Bitmap::of(&deleted);
        for skip in [vec![], vec![0], vec![1], vec![0, 2], vec![0, 1, 2]] {
            let plan = scan_plan(&p, Some(&b), &skip).unwrap().unwrap();
            let expect: Vec<u32> = (0..25u32)
                .filter(|i| !deleted.contains(i))
                .filter(|i| !skip.contains(&((i / 10) as usize)))
                .collect();
            assert_eq!(kept(&plan, &rgs), expect, "skip {skip:?}");
            for &i in &skip {
                assert!(matches!(plan.inner()[i], RowGroupAccess::Skip));
            }
        }
        assert!(scan_plan(&p, Some(&b), &[3]).is_err());
        assert!(scan_plan(&p, None, &[3]).is_err());
        assert!(scan_plan(&p, None, &[]).unwrap().is_none());
        let only = scan_plan(&p, None, &[1]).unwrap().unwrap();
        assert_eq!(
            kept(&only, &rgs),
            (0..10).chain(20..25).collect::<Vec<u32>>()
        );
    }

    #[test]
    fn plan_fails_closed_on_mismatch() {
        let p = part(vec![10]);
        assert!(access_plan(&p, &Bitmap::of(&[10]), &[]).is_err());
        let mut bad = part(vec![10]);
        bad.rows = 11;
        assert!(access_plan(&bad, &Bitmap::of(&[1]), &[]).is_err());
    }
}
