//! Writing and reading parts: immutable parquet files of one table and one
//! partition (project x UTC day), rows sorted by (`distinct_id`, `_seq`).
//!
//! The sort order is what makes deletion cheap: all rows of a distinct id in
//! a part are one contiguous run, ordered by `_seq`, so "the rows of X below
//! cut-off C" is a prefix of one run. [`PartPostings`] records the runs; the
//! store's distinct-id index is built from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch};
use arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType, UInt64Type};
use bytes::Bytes;
use croaring::Treemap;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::{Result, StoreError};
use crate::format::{part_path, PartMeta};
use crate::memtable::{without_deleted, Chunk};
use crate::schema::{Table, DISTINCT_ID_COLUMN, PROJECT_COLUMN, SEQ_COLUMN, TIMESTAMP_COLUMN};
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
}

impl PartCompression {
    fn to_parquet(self) -> Compression {
        match self {
            PartCompression::None => Compression::UNCOMPRESSED,
            PartCompression::Snappy => Compression::SNAPPY,
            PartCompression::Lz4 => Compression::LZ4_RAW,
            PartCompression::Zstd(l) => {
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
            compression: PartCompression::Zstd(1),
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

/// The runs of a part, in row order.
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
pub(crate) fn write_parts(
    storage: &Storage,
    opts: &PartWriterOptions,
    chunks: &[Arc<Chunk>],
    deleted: &Treemap,
    alloc_file_id: &mut dyn FnMut() -> u64,
) -> Result<Vec<WrittenPart>> {
    let mut by_table: BTreeMap<Table, Vec<RecordBatch>> = BTreeMap::new();
    for c in chunks {
        if let Some(b) = without_deleted(&c.batch, c.seq_start, deleted)? {
            by_table.entry(c.table).or_default().push(b);
        }
    }
    let mut out = Vec::new();
    for (table, batches) in by_table {
        let all = concat_batches(&table.def().schema(), &batches)?;
        drop(batches);
        let sorted = sort_for_parts(&all)?;
        drop(all);
        let projects = col(&sorted, PROJECT_COLUMN)?
            .as_primitive::<Int64Type>()
            .clone();
        let ts = col(&sorted, TIMESTAMP_COLUMN)?
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let n = sorted.num_rows();
        let mut start = 0;
        while start < n {
            let key = (projects.value(start), day_of(ts.value(start)));
            let mut end = start + 1;
            while end < n && (projects.value(end), day_of(ts.value(end))) == key {
                end += 1;
            }
            let slice = sorted.slice(start, end - start);
            let id = alloc_file_id();
            out.push(write_one(storage, opts, table, key.0, key.1, id, &slice)?);
            start = end;
        }
    }
    Ok(out)
}

/// Day number (since the epoch, UTC) of a timestamp in µs.
pub fn day_of(ts_us: i64) -> i32 {
    ts_us.div_euclid(MICROS_PER_DAY) as i32
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| StoreError::Internal(format!("column {name} missing from stored batch")))
}

fn sort_for_parts(b: &RecordBatch) -> Result<RecordBatch> {
    let ts = col(b, TIMESTAMP_COLUMN)?.as_primitive::<TimestampMicrosecondType>();
    let days: Int32Array = ts.iter().map(|v| v.map(day_of)).collect();
    let keys = vec![
        SortColumn {
            values: Arc::clone(col(b, PROJECT_COLUMN)?),
            options: None,
        },
        SortColumn {
            values: Arc::new(days),
            options: None,
        },
        SortColumn {
            values: Arc::clone(col(b, DISTINCT_ID_COLUMN)?),
            options: None,
        },
        SortColumn {
            values: Arc::clone(col(b, SEQ_COLUMN)?),
            options: None,
        },
    ];
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(take_record_batch(b, &idx)?)
}

fn write_one(
    storage: &Storage,
    opts: &PartWriterOptions,
    table: Table,
    project_id: i64,
    day: i32,
    id: u64,
    rows: &RecordBatch,
) -> Result<WrittenPart> {
    let path = part_path(table, project_id, day, id);
    let props = WriterProperties::builder()
        .set_compression(opts.compression.to_parquet())
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by("elide".to_string())
        .build();
    let mut buf = Vec::with_capacity(rows.get_array_memory_size() / 4);
    let mut w = ArrowWriter::try_new(&mut buf, rows.schema(), Some(props)).map_err(|e| {
        StoreError::Parquet {
            path: path.clone(),
            source: e,
        }
    })?;
    w.write(rows).map_err(|e| StoreError::Parquet {
        path: path.clone(),
        source: e,
    })?;
    let md = w.close().map_err(|e| StoreError::Parquet {
        path: path.clone(),
        source: e,
    })?;
    let row_groups: Vec<u64> = md
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows() as u64)
        .collect();
    let size = buf.len() as u64;
    storage.put_new_nosync(&path, Bytes::from(buf))?;

    let seqs: Vec<u64> = col(rows, SEQ_COLUMN)?
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec();
    let ts = col(rows, TIMESTAMP_COLUMN)?.as_primitive::<TimestampMicrosecondType>();
    let dids = col(rows, DISTINCT_ID_COLUMN)?.as_string::<i32>();
    let postings = runs_of(dids, &seqs);
    let meta = PartMeta {
        id,
        table,
        project_id,
        day,
        path,
        size,
        rows: rows.num_rows() as u64,
        row_groups,
        min_seq: seqs.iter().copied().min().unwrap_or(0),
        max_seq: seqs.iter().copied().max().unwrap_or(0),
        min_ts: arrow::compute::min(ts).unwrap_or(0),
        max_ts: arrow::compute::max(ts).unwrap_or(0),
        tombstone: None,
    };
    Ok(WrittenPart {
        meta,
        seqs,
        postings,
    })
}

fn runs_of(dids: &arrow::array::StringArray, seqs: &[u64]) -> PartPostings {
    let mut runs = Vec::new();
    let n = dids.len();
    let mut start = 0;
    while start < n {
        let d = dids.value(start);
        let mut end = start + 1;
        while end < n && dids.value(end) == d {
            end += 1;
        }
        runs.push(Run {
            distinct_id: d.to_string(),
            start: start as u32,
            len: (end - start) as u32,
            min_seq: seqs[start],
            max_seq: seqs[end - 1],
        });
        start = end;
    }
    PartPostings { runs }
}

/// Read the named columns of a part, checking the file against its manifest entry.
pub(crate) fn read_columns(
    storage: &Storage,
    part: &PartMeta,
    columns: &[&str],
) -> Result<RecordBatch> {
    let perr = |e: parquet::errors::ParquetError| StoreError::Parquet {
        path: part.path.clone(),
        source: e,
    };
    // On the local backend read only the needed column chunks; otherwise fetch the object.
    let builder = match storage.local_root() {
        Some(root) => {
            let f = std::fs::File::open(root.join(&part.path))
                .map_err(|e| StoreError::io(&part.path, e))?;
            ReaderSource::File(ParquetRecordBatchReaderBuilder::try_new(f).map_err(perr)?)
        }
        None => ReaderSource::Bytes(
            ParquetRecordBatchReaderBuilder::try_new(storage.get(&part.path)?).map_err(perr)?,
        ),
    };
    match builder {
        ReaderSource::File(b) => project_and_read(b, part, columns),
        ReaderSource::Bytes(b) => project_and_read(b, part, columns),
    }
}

enum ReaderSource {
    File(ParquetRecordBatchReaderBuilder<std::fs::File>),
    Bytes(ParquetRecordBatchReaderBuilder<Bytes>),
}

fn project_and_read<T: parquet::file::reader::ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    part: &PartMeta,
    columns: &[&str],
) -> Result<RecordBatch> {
    let perr = |e: parquet::errors::ParquetError| StoreError::Parquet {
        path: part.path.clone(),
        source: e,
    };
    let rgs: Vec<u64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|r| r.num_rows() as u64)
        .collect();
    if rgs != part.row_groups {
        return Err(StoreError::corrupt(
            &part.path,
            "row groups on disk do not match the manifest",
        ));
    }
    let schema = builder.schema().clone();
    let indices: Vec<usize> = columns
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .map_err(|_| StoreError::corrupt(&part.path, format!("column {c} missing")))
        })
        .collect::<Result<_>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.clone());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    let projected = Arc::new(schema.project(&indices)?);
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    Ok(concat_batches(&projected, &batches)?)
}

/// Rebuild a part's runs from its file (used when the index is built at open).
pub(crate) fn read_postings(storage: &Storage, part: &PartMeta) -> Result<PartPostings> {
    let b = read_columns(storage, part, &[DISTINCT_ID_COLUMN, SEQ_COLUMN])?;
    if b.num_rows() as u64 != part.rows {
        return Err(StoreError::corrupt(
            &part.path,
            "row count does not match the manifest",
        ));
    }
    let dids = b.column(0).as_string::<i32>();
    let seqs = b.column(1).as_primitive::<UInt64Type>().values().to_vec();
    Ok(runs_of(dids, &seqs))
}

/// `_seq` of every row of a part, in file order.
pub(crate) fn read_seqs(storage: &Storage, part: &PartMeta) -> Result<Vec<u64>> {
    let b = read_columns(storage, part, &[SEQ_COLUMN])?;
    Ok(b.column(0).as_primitive::<UInt64Type>().values().to_vec())
}
