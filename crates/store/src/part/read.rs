//! Reading parts: columns, row groups and rows of a part file, each file
//! checked against its manifest entry and every byte read against its
//! checksums; the live rows of a part (tombstones applied); its runs.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{str_col, u64_col, PartPostings, RunsCollector};
use crate::checksum::VerifiedPart;
use crate::error::{Result, StoreError};
use crate::format::PartMeta;
use crate::schema::{DISTINCT_ID_COLUMN, SEQ_COLUMN};
use crate::storage::Storage;

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
