//! Writing and reading parts: immutable parquet files of one table and one
//! partition (project x UTC day, or x several UTC days of one month for a
//! merge of small parts), rows sorted by (`distinct_id`, `_seq`).
//!
//! The sort order is what makes deletion cheap: all rows of a distinct id in
//! a part are one contiguous run, ordered by `_seq`, so "the rows of X below
//! cut-off C" is a prefix of one run. [`PartPostings`] records the runs; the
//! store's distinct-id index is built from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType, UInt64Type};
use bytes::Bytes;
use croaring::Treemap;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{
    BloomFilterPosition, EnabledStatistics, WriterProperties, WriterVersion,
};
use parquet::schema::types::ColumnPath;

use crate::checksum::VerifiedPart;
use crate::error::{Result, StoreError};
use crate::format::{part_path, PartChecksum, PartMeta};
use crate::memtable::{range_count, Chunk};
use crate::schema::{
    Table, DISTINCT_ID_COLUMN, PERSON_ID_COLUMN, PROJECT_COLUMN, SEQ_COLUMN, TIMESTAMP_COLUMN,
};
use crate::storage::Storage;

/// Microseconds per day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Compression of part files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartCompression {
    /// No compression (tests that look for bytes on disk).
    None,
    /// Snappy.
    Snappy,
    /// LZ4 (raw).
    Lz4,
    /// Zstandard at the given level.
    Zstd(i32),
    /// LZ4 for the columns every analytic scan decodes
    /// ([`SCAN_COLUMNS`]: cheap to decompress on each query), Zstandard at
    /// the given level for the others (`uuid`, `properties`, `session_id`,
    /// `_seq`, …: most of the bytes, rarely read whole).
    Tiered(i32),
}

/// The columns whose parts carry a bloom filter per row group (the query
/// layer prunes lookups by them).
pub const BLOOM_FILTER_COLUMNS: [&str; 2] = [DISTINCT_ID_COLUMN, PERSON_ID_COLUMN];

/// The columns [`PartCompression::Tiered`] keeps in LZ4.
pub const SCAN_COLUMNS: [&str; 5] = [
    PROJECT_COLUMN,
    TIMESTAMP_COLUMN,
    "event",
    DISTINCT_ID_COLUMN,
    PERSON_ID_COLUMN,
];

impl PartCompression {
    fn to_parquet(self) -> Compression {
        match self {
            PartCompression::None => Compression::UNCOMPRESSED,
            PartCompression::Snappy => Compression::SNAPPY,
            PartCompression::Lz4 => Compression::LZ4_RAW,
            PartCompression::Zstd(l) | PartCompression::Tiered(l) => {
                Compression::ZSTD(ZstdLevel::try_new(l).unwrap_or_default())
            }
        }
    }
}

/// How parts are written.
#[derive(Debug, Clone)]
pub struct PartWriterOptions {
    /// Compression codec.
    pub compression: PartCompression,
    /// Maximum rows per parquet row group.
    pub row_group_rows: usize,
}

impl Default for PartWriterOptions {
    fn default() -> Self {
        PartWriterOptions {
            // Measured at 10M events (docs/benchmarks.md, "Against DuckDB
            // and ClickHouse"): ZSTD everywhere writes 40% fewer bytes
            // than LZ4 but costs a funnel over 10M rows ~12% more CPU;
            // tiered keeps most of the saving at LZ4's query cost.
            compression: PartCompression::Tiered(1),
            row_group_rows: 128 * 1024,
        }
    }
}

/// A run of one distinct id's rows inside a part.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub distinct_id: String,
    pub start: u32,
    pub len: u32,
    pub min_seq: u64,
    pub max_seq: u64,
}

/// The runs of a part (in row order when collected while writing).
#[derive(Debug, Clone, Default)]
pub(crate) struct PartPostings {
    pub runs: Vec<Run>,
}

/// A part written but not yet committed.
#[derive(Debug)]
pub(crate) struct WrittenPart {
    pub meta: PartMeta,
    /// `_seq` of each row in file order (maps late deletions onto positions).
    pub seqs: Vec<u64>,
    pub postings: PartPostings,
}

/// Write the rows of `chunks` that are not in `deleted` as parts, one per
/// (table, project, day). Files are written but not synced.
///
/// The chunks are never concatenated: the rows are ordered through a vector
/// of sort keys that borrow from the chunks, grouped by partition
/// ([`partition_keys`]) and sorted a part at a time by the part's writer,
/// and each part's rows are gathered straight from the chunks
/// ([`crate::gather`]), a row group at a time, as the part is written.
/// Peak memory is the chunks plus the keys plus, per worker, the part's
/// keys, one row group and the part's encoded bytes. Parts are encoded on
/// up to `available_parallelism` threads.
pub(crate) fn write_parts(
    storage: &Storage,
    opts: &PartWriterOptions,
    chunks: &[Arc<Chunk>],
    deleted: &Treemap,
    alloc_file_id: &mut dyn FnMut() -> u64,
) -> Result<Vec<WrittenPart>> {
    let mut by_table: BTreeMap<Table, Vec<&Chunk>> = BTreeMap::new();
    for c in chunks {
        by_table.entry(c.table).or_default().push(c);
    }
    let mut out = Vec::new();
    for (table, chunks) in by_table {
        // The rows grouped by (project, day) in key order; each part's
        // group is sorted by its writer.
        let (keys, partitions) = partition_keys(&chunks, deleted)?;
        let mut groups: Vec<PartJob> = Vec::with_capacity(partitions.len());
        let mut start = 0;
        for ((project, day), rows) in partitions {
            groups.push(PartJob {
                project,
                day,
                rows: start..start + rows,
                id: alloc_file_id(),
            });
            start += rows;
        }
        let batches: Vec<&RecordBatch> = chunks.iter().map(|c| &c.batch).collect();
        let ids: Vec<&arrow::array::StringArray> = chunks
            .iter()
            .map(|c| Ok(col(&c.batch, DISTINCT_ID_COLUMN)?.as_string::<i32>()))
            .collect::<Result<_>>()?;
        let job = |g: &PartJob| -> Result<WrittenPart> {
            let mut mine = keys[g.rows.clone()].to_vec();
            let id = |k: &SortKey| ids[k.chunk as usize].value(k.row as usize);
            mine.sort_unstable_by(|a, b| {
                cmp_ids((a.prefix, a.len), (b.prefix, b.len), || id(a).cmp(id(b)))
                    .then(a.seq.cmp(&b.seq))
            });
            let idx: Vec<(usize, usize)> = mine
                .iter()
                .map(|k| (k.chunk as usize, k.row as usize))
                .collect();
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| StoreError::Internal("a part with no input".into()))?;
            let mut b = PartBuilder::new(opts, table, g.project, g.day..=g.day, g.id, schema)?;
            b.write_gathered(&batches, &idx, &|| Ok(()))?;
            b.finish(storage)?
                .ok_or_else(|| StoreError::Internal("flush wrote an empty part".into()))
        };
        out.extend(crate::parallel::try_map(&groups, "part writer", job)?);
    }
    Ok(out)
}

struct PartJob {
    project: i64,
    day: i32,
    rows: std::ops::Range<usize>,
    id: u64,
}

/// Sort key of one live row within its partition (project, day): distinct
/// id, then `_seq`.
///
/// The distinct id is held as `prefix`, its first 16 bytes big-endian
/// and padded with zeros, and `len`, its length: comparing the prefixes
/// orders two ids as comparing the ids does unless they are equal, and
/// then two ids of at most 16 bytes differ only in length (the shorter
/// sorts first, as a prefix does). Only longer ids with equal prefixes
/// are compared whole, read from their chunk. Most comparisons (ids such
/// as `user-1-12345`, or repeats of one id within a day) so never follow
/// a pointer, and a key is 48 bytes.
#[derive(Clone, Copy, Default)]
struct SortKey {
    prefix: u128,
    seq: u64,
    len: u32,
    chunk: u32,
    row: u32,
}

/// The first 16 bytes of `s` as a big-endian number, padded with zeros.
fn id_prefix(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Orders two distinct ids, given as prefix and length ([`SortKey`]);
/// `whole` compares the ids themselves, asked only when the prefixes
/// and lengths cannot tell.
fn cmp_ids(
    a: (u128, u32),
    b: (u128, u32),
    whole: impl FnOnce() -> std::cmp::Ordering,
) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| {
        if a.1 <= 16 && b.1 <= 16 {
            a.1.cmp(&b.1)
        } else {
            whole()
        }
    })
}

/// A partition, (project, day), and its number of live rows.
type Partition = ((i64, i32), usize);

/// The live rows of `chunks` (not in `deleted`) grouped by partition:
/// the keys of each (project, day) together, partitions in order and rows
/// within one in chunk order, with the partitions and their row counts.
///
/// A counting sort: one pass numbers each row's partition, one places
/// its key. Each partition's rows are then sorted on their own (by the
/// part's writer): ~20k keys (~1 MB) at a time on average at 10M events,
/// in the cache, instead of one sort of every key of the flush (measured
/// in docs/benchmarks.md, "Ingest: each partition sorted on its own").
fn partition_keys(chunks: &[&Chunk], deleted: &Treemap) -> Result<(Vec<SortKey>, Vec<Partition>)> {
    let total: usize = chunks.iter().map(|c| c.batch.num_rows()).sum();
    // Each row's partition number (in order of first sight), or NONE for
    // a deleted row; rows of one partition mostly come together, so the
    // last one is tried before the map.
    const NONE: u32 = u32::MAX;
    let mut numbers: std::collections::HashMap<(i64, i32), u32> = Default::default();
    let mut counts: Vec<usize> = Vec::new();
    let mut part_of: Vec<u32> = Vec::with_capacity(total);
    let mut last: Option<((i64, i32), u32)> = None;
    for c in chunks {
        let b = &c.batch;
        let n = b.num_rows() as u64;
        let projects = col(b, PROJECT_COLUMN)?.as_primitive::<Int64Type>();
        let ts = col(b, TIMESTAMP_COLUMN)?.as_primitive::<TimestampMicrosecondType>();
        let any_deleted = range_count(deleted, c.seq_start, c.seq_start + n) > 0;
        for i in 0..b.num_rows() {
            if any_deleted && deleted.contains(c.seq_start + i as u64) {
                part_of.push(NONE);
                continue;
            }
            let key = (projects.value(i), day_of(ts.value(i)));
            let g = match last {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *numbers.entry(key).or_insert_with(|| {
                        counts.push(0);
                        (counts.len() - 1) as u32
                    });
                    last = Some((key, g));
                    g
                }
            };
            counts[g as usize] += 1;
            part_of.push(g);
        }
    }
    let mut order: Vec<((i64, i32), u32)> = numbers.into_iter().collect();
    order.sort_unstable();
    // Each partition's next free slot.
    let mut next = vec![0usize; counts.len()];
    let mut at = 0;
    for &(_, g) in &order {
        next[g as usize] = at;
        at += counts[g as usize];
    }
    let mut keys = vec![SortKey::default(); at];
    let mut j = 0;
    for (ci, c) in chunks.iter().enumerate() {
        let dids = col(&c.batch, DISTINCT_ID_COLUMN)?.as_string::<i32>();
        for i in 0..c.batch.num_rows() {
            let g = part_of[j];
            j += 1;
            if g == NONE {
                continue;
            }
            let did = dids.value(i);
            keys[next[g as usize]] = SortKey {
                prefix: id_prefix(did),
                len: u32::try_from(did.len()).unwrap_or(u32::MAX),
                seq: c.seq_start + i as u64,
                chunk: ci as u32,
                row: i as u32,
            };
            next[g as usize] += 1;
        }
    }
    let partitions = order
        .into_iter()
        .map(|(k, g)| (k, counts[g as usize]))
        .collect();
    Ok((keys, partitions))
}

/// Day number (since the epoch, UTC) of a timestamp in µs.
pub fn day_of(ts_us: i64) -> i32 {
    ts_us.div_euclid(MICROS_PER_DAY) as i32
}

/// Column `name` as a string array; a stored file of another type is
/// corrupt (never a panic).
pub(crate) fn str_col<'a>(
    b: &'a RecordBatch,
    name: &str,
    path: &str,
) -> Result<&'a arrow::array::StringArray> {
    col(b, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| StoreError::corrupt(path, format!("column {name} is not a string column")))
}

/// Column `name` as a `u64` array (see [`str_col`]).
pub(crate) fn u64_col<'a>(
    b: &'a RecordBatch,
    name: &str,
    path: &str,
) -> Result<&'a arrow::array::UInt64Array> {
    col(b, name)?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| StoreError::corrupt(path, format!("column {name} is not a u64 column")))
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| StoreError::Internal(format!("column {name} missing from stored batch")))
}

/// Parquet writer settings of a part.
///
/// Statistics are kept at page level for the columns queries filter and
/// prune on (`project_id`, `timestamp`, `_seq`, `distinct_id`, `event`) and
/// at column-chunk level elsewhere, except for `uuid` and `properties`,
/// whose min/max is useless and costly. Dictionary encoding is off for the
/// columns that are unique or nearly so (`uuid`, `properties`, `_seq`,
/// `timestamp`, `inserted_at`): building a dictionary only to abandon it
/// costs time.
///
/// Pages are written in Parquet's writer version 2 (data page v2): it is
/// what lets the parquet crate dictionary-encode a `FIXED_LEN_BYTE_ARRAY`
/// column (`person_id`, whose rows repeat in runs of a distinct id), and
/// its integers without a dictionary (`timestamp`, `_seq`, `inserted_at`)
/// are DELTA_BINARY_PACKED. Byte arrays are never delta-encoded: `uuid`
/// and `properties` are PLAIN, and the others fall back to PLAIN when
/// their dictionary overflows, so an identifier stays whole in the file.
/// Measured: parts 8.4% smaller, ingest and purge faster
/// (docs/benchmarks.md).
///
/// `distinct_id` and `person_id` carry a bloom filter per row group (1%
/// false positives; the writer sizes it for the row group and folds it
/// down to the values it saw): lookups of a few persons (`person_id IN
/// (…)`: a person's activity, a subject-access export, the verification
/// scan) skip the row groups that hold none of them without decoding a
/// page. `person_id` is not in any sort order of a part, so its min/max
/// cannot do that.
pub(crate) fn writer_properties(opts: &PartWriterOptions) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(opts.compression.to_parquet())
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_created_by("elide".to_string());
    for c in [
        PROJECT_COLUMN,
        TIMESTAMP_COLUMN,
        SEQ_COLUMN,
        DISTINCT_ID_COLUMN,
        "event",
    ] {
        b = b.set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::Page);
    }
    for c in ["uuid", "properties"] {
        b = b.set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
    }
    for c in [
        "uuid",
        "properties",
        SEQ_COLUMN,
        TIMESTAMP_COLUMN,
        "inserted_at",
    ] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    // Writer version 2 would give byte arrays DELTA_BYTE_ARRAY (for
    // `uuid` and `properties`, and for the others when their dictionary
    // overflows), which stores each value as a suffix of the one before:
    // nothing to share between random UUIDs, slower to decode for the
    // JSON that property filters read, and an identifier no longer whole
    // in the file, where a byte-level check of an erasure looks for it.
    // Every byte-array column of every table, from the schemas: a column
    // added later is covered too.
    for t in Table::ALL {
        for f in t.def().schema().fields() {
            if matches!(
                f.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::FixedSizeBinary(_)
            ) {
                b = b.set_column_encoding(ColumnPath::from(f.name().as_str()), Encoding::PLAIN);
            }
        }
    }
    // At the end, with the page indexes: in the part's tail, which its
    // checksum covers (crate::checksum); after each row group they would
    // lie between column chunks, in no checksummed block.
    b = b.set_bloom_filter_position(BloomFilterPosition::End);
    if let PartCompression::Tiered(_) = opts.compression {
        for c in SCAN_COLUMNS {
            b = b.set_column_compression(ColumnPath::from(c), Compression::LZ4_RAW);
        }
    }
    for c in BLOOM_FILTER_COLUMNS {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(c), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(c), 0.01);
    }
    b.build()
}

/// Writes one part from batches already in part order (sorted by
/// (`distinct_id`, `_seq`)), collecting what the manifest and the
/// distinct-id index need as it goes. Used by the flush and by compaction
/// (a stream of batches, a row group each).
pub(crate) struct PartBuilder {
    /// Rows gathered at a time by [`PartBuilder::write_gathered`].
    row_group_rows: usize,
    table: Table,
    project_id: i64,
    days: std::ops::RangeInclusive<i32>,
    id: u64,
    path: String,
    writer: ArrowWriter<Vec<u8>>,
    seqs: Vec<u64>,
    runs: RunsCollector,
    min_ts: i64,
    max_ts: i64,
    rows: u64,
}

impl PartBuilder {
    /// A part of `table` and `project_id` whose rows are in the UTC days
    /// `days` (one day but for merges of small parts, see
    /// [`PartMeta::last_day`]); its file goes under the first day.
    pub fn new(
        opts: &PartWriterOptions,
        table: Table,
        project_id: i64,
        days: std::ops::RangeInclusive<i32>,
        id: u64,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<Self> {
        let path = part_path(table, project_id, *days.start(), id);
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties(opts)))
            .map_err(|e| StoreError::Parquet {
                path: path.clone(),
                source: e,
            })?;
        Ok(PartBuilder {
            row_group_rows: opts.row_group_rows.clamp(1, 128 * 1024),
            table,
            project_id,
            days,
            id,
            path,
            writer,
            seqs: Vec::new(),
            runs: RunsCollector::default(),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            rows: 0,
        })
    }

    /// Append the rows `idx` ((batch, row) pairs, in part order) of
    /// `batches`, gathered a row group at a time, so that no copy of the
    /// whole part is ever held; `stop` is asked before each row group, and
    /// its error ends the write.
    pub fn write_gathered(
        &mut self,
        batches: &[&RecordBatch],
        idx: &[(usize, usize)],
        stop: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        for rows in idx.chunks(self.row_group_rows) {
            stop()?;
            self.write(&crate::gather::gather(batches, rows)?)?;
        }
        Ok(())
    }

    /// Append rows (in part order, continuing the previous batch).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let seqs = u64_col(batch, SEQ_COLUMN, &self.path)?.values();
        let ts = col(batch, TIMESTAMP_COLUMN)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| StoreError::corrupt(&self.path, "timestamp is not a µs timestamp"))?;
        let dids = str_col(batch, DISTINCT_ID_COLUMN, &self.path)?;
        self.runs.push(dids, seqs);
        if let Some(m) = arrow::compute::min(ts) {
            self.min_ts = self.min_ts.min(m);
        }
        if let Some(m) = arrow::compute::max(ts) {
            self.max_ts = self.max_ts.max(m);
        }
        self.seqs.extend_from_slice(seqs);
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|e| StoreError::Parquet {
            path: self.path.clone(),
            source: e,
        })
    }

    /// Close the file and store it (not synced). `None`, and nothing
    /// stored, when no row was written.
    pub fn finish(mut self, storage: &Storage) -> Result<Option<WrittenPart>> {
        if self.rows == 0 {
            return Ok(None);
        }
        let perr = |path: &str, e| StoreError::Parquet {
            path: path.to_string(),
            source: e,
        };
        self.writer.flush().map_err(|e| perr(&self.path, e))?;
        let row_groups: Vec<u64> = self
            .writer
            .flushed_row_groups()
            .iter()
            .map(|rg| rg.num_rows() as u64)
            .collect();
        // Every page is in the buffer now; the page indexes and the footer
        // (which will carry the block list) are written at close.
        self.writer
            .sync()
            .map_err(|e| StoreError::io(&self.path, e))?;
        let data_len = self.writer.inner().len();
        let chunks = crate::checksum::chunk_ranges_of(self.writer.flushed_row_groups());
        let blocks = crate::checksum::block_crcs(self.writer.inner(), &chunks);
        self.writer.append_key_value_metadata(KeyValue::new(
            crate::checksum::BLOCKS_KEY.to_string(),
            crate::checksum::encode_blocks(&blocks),
        ));
        let buf = self.writer.into_inner().map_err(|e| perr(&self.path, e))?;
        let size = buf.len() as u64;
        let checksum = PartChecksum {
            data_len: data_len as u64,
            tail_crc32: crc32fast::hash(buf.get(data_len..).unwrap_or_default()),
        };
        let blake3 = blake3::hash(&buf).to_hex().to_string();
        // The `.runs` file first: if it cannot be written, nothing was.
        let runs = crate::runs_file::write(storage, &self.path, &self.runs.runs)?;
        if let Err(e) = storage.put_new_nosync(&self.path, Bytes::from(buf)) {
            let runs_path = crate::runs_file::runs_path(&self.path);
            if let Err(d) = storage.delete(&runs_path) {
                tracing::warn!(path = %runs_path, error = %d, "could not remove the .runs file of a part that was not written; the next open removes it");
            }
            return Err(e);
        }
        let meta = PartMeta {
            id: self.id,
            table: self.table,
            project_id: self.project_id,
            day: *self.days.start(),
            last_day: (self.days.end() > self.days.start()).then_some(*self.days.end()),
            path: self.path,
            size,
            rows: self.rows,
            row_groups,
            min_seq: self.seqs.iter().copied().min().unwrap_or(0),
            max_seq: self.seqs.iter().copied().max().unwrap_or(0),
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            tombstone: None,
            checksum: Some(checksum),
            blake3: Some(blake3),
            runs: Some(runs),
        };
        Ok(Some(WrittenPart {
            meta,
            seqs: self.seqs,
            postings: self.runs.finish(),
        }))
    }
}

/// The runs of consecutive equal distinct ids of a part's rows, fed
/// batch by batch in part order (a run may continue across batches).
#[derive(Debug, Default)]
pub(crate) struct RunsCollector {
    runs: Vec<Run>,
    rows: u32,
}

impl RunsCollector {
    /// The next rows: their distinct ids and `_seq`s (of one length).
    pub fn push(&mut self, dids: &arrow::array::StringArray, seqs: &[u64]) {
        for (i, &s) in seqs.iter().enumerate().take(dids.len()) {
            let d = dids.value(i);
            match self.runs.last_mut() {
                Some(r) if r.distinct_id == d => {
                    r.len += 1;
                    r.min_seq = r.min_seq.min(s);
                    r.max_seq = r.max_seq.max(s);
                }
                _ => self.runs.push(Run {
                    distinct_id: d.to_string(),
                    start: self.rows + i as u32,
                    len: 1,
                    min_seq: s,
                    max_seq: s,
                }),
            }
        }
        self.rows += dids.len().min(seqs.len()) as u32;
    }

    /// The runs collected, in row order.
    pub fn finish(self) -> PartPostings {
        PartPostings { runs: self.runs }
    }
}

/// Read the named columns of a part, checking the file against its
/// manifest entry and every byte read against its checksums.
pub(crate) fn read_columns(
    storage: &Storage,
    part: &PartMeta,
    columns: &[&str],
) -> Result<RecordBatch> {
    read_columns_at(storage, part, columns, None)
}

/// Like [`read_columns`], but only the rows at the positions of `rows`
/// (in file order; the i-th row out is the i-th position), or all rows
/// for `None`. Rows not selected are not decoded.
pub(crate) fn read_columns_at(
    storage: &Storage,
    part: &PartMeta,
    columns: &[&str],
    rows: Option<&croaring::Bitmap>,
) -> Result<RecordBatch> {
    let perr = parquet_error(part);
    let (builder, schema, indices) = open_columns(storage, part, columns)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.clone());
    let mut builder = builder.with_projection(mask).with_batch_size(64 * 1024);
    if let Some(rows) = rows {
        if rows.maximum().is_some_and(|m| u64::from(m) >= part.rows) {
            return Err(StoreError::Internal(format!(
                "row selection beyond the end of {}",
                part.path
            )));
        }
        let ranges: Vec<std::ops::Range<usize>> =
            rows.iter().map(|r| r as usize..r as usize + 1).collect();
        builder = builder.with_row_selection(
            parquet::arrow::arrow_reader::RowSelection::from_consecutive_ranges(
                ranges.into_iter(),
                part.rows as usize,
            ),
        );
    }
    let reader = builder.build().map_err(perr)?;
    let projected = Arc::new(schema.project(&indices)?);
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| StoreError::corrupt(&part.path, format!("decoding: {e}")))?;
    Ok(concat_batches(&projected, &batches)?)
}

/// Like [`read_columns`], but only the row groups whose bloom filter of
/// `column` may hold a wanted value, by `may_hold(filter, fixed)` (`fixed`:
/// the column is stored as fixed-length bytes, not text); a row group with
/// no filter for it is read. One batch per row group read, with the
/// position of its first row in the part, in file order.
pub(crate) fn read_row_groups_with(
    storage: &Storage,
    part: &PartMeta,
    columns: &[&str],
    column: &str,
    may_hold: impl Fn(&parquet::bloom_filter::Sbbf, bool) -> bool,
) -> Result<Vec<(u64, RecordBatch)>> {
    let perr = parquet_error(part);
    let (builder, schema, indices) = open_columns(storage, part, columns)?;
    let leaf = builder
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [column]);
    let mut kept = Vec::new();
    let mut start = 0u64;
    for (i, rg) in builder.metadata().row_groups().iter().enumerate() {
        let may = match leaf {
            None => true,
            Some(c) => {
                let fixed = rg.column(c).column_descr().physical_type()
                    == parquet::basic::Type::FIXED_LEN_BYTE_ARRAY;
                match builder
                    .get_row_group_column_bloom_filter(i, c)
                    .map_err(perr)?
                {
                    Some(filter) => may_hold(&filter, fixed),
                    None => true,
                }
            }
        };
        let rows = rg.num_rows() as u64;
        if may {
            kept.push((i, start, rows));
        }
        start += rows;
    }
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.clone());
    let reader = builder
        .with_projection(mask)
        .with_row_groups(kept.iter().map(|(i, _, _)| *i).collect())
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    let projected = Arc::new(schema.project(&indices)?);
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| StoreError::corrupt(&part.path, format!("decoding: {e}")))?;
    // Batches may span row groups: one batch, cut at their bounds.
    let all = concat_batches(&projected, &batches)?;
    let read: u64 = kept.iter().map(|(_, _, n)| n).sum();
    if all.num_rows() as u64 != read {
        return Err(StoreError::corrupt(
            &part.path,
            format!("{} rows decoded from row groups of {read}", all.num_rows()),
        ));
    }
    let mut at = 0usize;
    Ok(kept
        .into_iter()
        .map(|(_, start, n)| {
            let b = all.slice(at, n as usize);
            at += n as usize;
            (start, b)
        })
        .collect())
}

/// A reader of `part` (checked against its manifest entry, every byte
/// read against its checksums), its arrow schema, and the indices of
/// `columns` in file order (the order the reader returns them in).
fn open_columns(
    storage: &Storage,
    part: &PartMeta,
    columns: &[&str],
) -> Result<(
    ParquetRecordBatchReaderBuilder<VerifiedPart>,
    arrow::datatypes::SchemaRef,
    Vec<usize>,
)> {
    let (file, md, mut indices) = VerifiedPart::open(storage, part, Some(columns))?;
    indices.sort_unstable();
    check_row_groups(md.metadata(), part)?;
    let schema = md.schema().clone();
    Ok((
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, md),
        schema,
        indices,
    ))
}

/// A parquet error of `part` as the store reports it.
fn parquet_error(
    part: &PartMeta,
) -> impl Fn(parquet::errors::ParquetError) -> StoreError + Copy + '_ {
    |e| StoreError::Parquet {
        path: part.path.clone(),
        source: e,
    }
}

/// The file's row groups must be the ones the manifest recorded.
fn check_row_groups(md: &parquet::file::metadata::ParquetMetaData, part: &PartMeta) -> Result<()> {
    let on_disk = md.row_groups().iter().map(|r| r.num_rows() as u64);
    if !on_disk.eq(part.row_groups.iter().copied()) {
        return Err(StoreError::corrupt(
            &part.path,
            "row groups on disk do not match the manifest",
        ));
    }
    Ok(())
}

/// A part's runs (in no particular order), for the index built at open:
/// from its `.runs` file, or from its `distinct_id` and `_seq` columns if
/// it has none or the file fails its checks.
pub(crate) fn read_postings(storage: &Storage, part: &PartMeta) -> Result<PartPostings> {
    if part.runs.is_some() {
        match crate::runs_file::read_all(storage, part) {
            Ok(p) => return Ok(p),
            Err(e) => tracing::warn!(
                path = %part.path,
                error = %e,
                "unusable .runs file: reading the part's columns instead"
            ),
        }
    }
    postings_from_columns(storage, part)
}

/// A part's runs, in row order, from its `distinct_id` and `_seq` columns.
pub(crate) fn postings_from_columns(storage: &Storage, part: &PartMeta) -> Result<PartPostings> {
    let b = read_columns(storage, part, &[DISTINCT_ID_COLUMN, SEQ_COLUMN])?;
    if b.num_rows() as u64 != part.rows {
        return Err(StoreError::corrupt(
            &part.path,
            "row count does not match the manifest",
        ));
    }
    let dids = str_col(&b, DISTINCT_ID_COLUMN, &part.path)?;
    let seqs = u64_col(&b, SEQ_COLUMN, &part.path)?.values();
    let mut runs = RunsCollector::default();
    runs.push(dids, seqs);
    Ok(runs.finish())
}

/// `_seq` of every row of a part, in file order.
pub(crate) fn read_seqs(storage: &Storage, part: &PartMeta) -> Result<Vec<u64>> {
    let b = read_columns(storage, part, &[SEQ_COLUMN])?;
    Ok(u64_col(&b, SEQ_COLUMN, &part.path)?.values().to_vec())
}

/// Stream every row of a part not in `deleted`, in file order, in batches
/// of up to `batch_rows`. Deleted rows are skipped by a parquet row
/// selection (not decoded), as the query path does. The file is checked
/// against its manifest entry and its checksums first.
pub(crate) fn scan_live_rows(
    storage: &Storage,
    part: &PartMeta,
    deleted: Option<&croaring::Bitmap>,
    batch_rows: usize,
    f: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let (file, md, _) = VerifiedPart::open(storage, part, None)?;
    check_row_groups(md.metadata(), part)?;
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, md)
        .with_batch_size(batch_rows.max(1));
    if let Some(d) = deleted.filter(|d| !d.is_empty()) {
        if d.maximum().is_some_and(|m| u64::from(m) >= part.rows) {
            return Err(StoreError::corrupt(
                &part.path,
                "tombstone beyond the end of the part",
            ));
        }
        builder = builder.with_row_selection(live_selection(d, part.rows as usize));
    }
    let reader = builder.build().map_err(|e| StoreError::Parquet {
        path: part.path.clone(),
        source: e,
    })?;
    for b in reader {
        let b = b.map_err(|e| StoreError::corrupt(&part.path, format!("decoding: {e}")))?;
        // Parts written before UUIDs were stored as 16 bytes: the rows
        // kept (by a compaction) are written in the current schema.
        f(crate::schema::upgrade_batch(part.table, b, &part.path)?)?;
    }
    Ok(())
}

/// The rows of `0..rows` not in `deleted`, as a parquet row selection.
pub(crate) fn live_selection(
    deleted: &croaring::Bitmap,
    rows: usize,
) -> parquet::arrow::arrow_reader::RowSelection {
    let mut ranges = Vec::new();
    let mut next = 0usize;
    for d in deleted.iter() {
        let d = d as usize;
        if d > next {
            ranges.push(next..d);
        }
        next = d + 1;
    }
    if next < rows {
        ranges.push(next..rows);
    }
    parquet::arrow::arrow_reader::RowSelection::from_consecutive_ranges(ranges.into_iter(), rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;

    /// A chunk of rows (project, day, distinct id) from `seq_start`.
    fn chunk(seq_start: u64, rows: &[(i64, i32, String)]) -> Chunk {
        let schema = Arc::new(Schema::new(vec![
            Field::new(PROJECT_COLUMN, DataType::Int64, false),
            Field::new(TIMESTAMP_COLUMN, crate::schema::timestamp_type(), false),
            Field::new(DISTINCT_ID_COLUMN, DataType::Utf8, false),
        ]));
        let projects = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        // Any moment of the day, some before the epoch.
        let ts =
            TimestampMicrosecondArray::from_iter_values(rows.iter().enumerate().map(|(i, r)| {
                i64::from(r.1) * MICROS_PER_DAY + (i as i64 * 7_919_000_000) % MICROS_PER_DAY
            }))
            .with_timezone("UTC");
        let ids = StringArray::from_iter_values(rows.iter().map(|r| r.2.as_str()));
        Chunk {
            table: Table::Events,
            seq_start,
            batch: RecordBatch::try_new(
                schema,
                vec![Arc::new(projects), Arc::new(ts), Arc::new(ids)],
            )
            .expect("batch"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The partitions come in (project, day) order with their row
        /// counts; each holds exactly the live rows of its partition, in
        /// `_seq` order; deleted rows are in none.
        #[test]
        fn partition_keys_groups_the_live_rows(
            chunks in proptest::collection::vec(
                proptest::collection::vec((1i64..4, -2i32..3, "[ab]{0,3}"), 0..30),
                1..4,
            ),
            deleted in proptest::collection::vec(0u64..100, 0..20),
        ) {
            let mut seq = 0;
            let chunks: Vec<Chunk> = chunks
                .iter()
                .map(|rows| {
                    let c = chunk(seq, rows);
                    seq += rows.len() as u64;
                    c
                })
                .collect();
            let refs: Vec<&Chunk> = chunks.iter().collect();
            let deleted = Treemap::from_iter(deleted.iter().copied());
            let (keys, partitions) = partition_keys(&refs, &deleted).expect("partition");
            prop_assert!(partitions.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert_eq!(partitions.iter().map(|p| p.1).sum::<usize>(), keys.len());
            let mut at = 0;
            for &(part, rows) in &partitions {
                let mine = &keys[at..at + rows];
                at += rows;
                prop_assert!(mine.windows(2).all(|w| w[0].seq < w[1].seq));
                for k in mine {
                    let c = &chunks[k.chunk as usize];
                    prop_assert_eq!(c.seq_start + u64::from(k.row), k.seq);
                    let b = &c.batch;
                    let project = b.column(0).as_primitive::<Int64Type>().value(k.row as usize);
                    let ts = b.column(1).as_primitive::<TimestampMicrosecondType>().value(k.row as usize);
                    let id = b.column(2).as_string::<i32>().value(k.row as usize);
                    prop_assert_eq!((project, day_of(ts)), part);
                    prop_assert_eq!((k.prefix, k.len), (id_prefix(id), id.len() as u32));
                }
            }
            let live: Vec<u64> = (0..seq).filter(|s| !deleted.contains(*s)).collect();
            let mut got: Vec<u64> = keys.iter().map(|k| k.seq).collect();
            got.sort_unstable();
            prop_assert_eq!(got, live);
        }
    }

    proptest! {
        /// Comparing prefixes and lengths orders ids exactly as comparing
        /// the ids does: ids shorter and longer than 16 bytes, zero bytes,
        /// shared beginnings and characters of several bytes.
        #[test]
        fn the_prefix_keeps_the_ids_order(
            a in "[a\\x00é]{0,20}",
            b in "[a\\x00é]{0,20}",
            shared in "[ab\\x00]{0,18}",
        ) {
            for (x, y) in [(a.clone(), b.clone()), (format!("{shared}{a}"), format!("{shared}{b}"))] {
                let key = |s: &str| (id_prefix(s), s.len() as u32);
                let got = cmp_ids(key(&x), key(&y), || x.cmp(&y));
                prop_assert_eq!(got, x.cmp(&y), "{:?} {:?}", x, y);
            }
        }
    }
}
