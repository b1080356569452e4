//! Rows appended but not yet in parts.
//!
//! A [`Memtable`] is a list of immutable chunks (one per append) covering a
//! contiguous `_seq` range, plus a hash index from (table, project,
//! distinct id) to the `_seq`s of its rows, so that a deletion finds its
//! rows here without scanning. Deleted memtable rows are not removed from
//! the chunks; the store keeps their `_seq`s in one set (`mem_deleted`) that
//! queries apply and that the flush honours by not writing those rows.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use croaring::Treemap;

use crate::schema::{Table, DISTINCT_ID_COLUMN, PROJECT_COLUMN};

/// One appended batch, in stored schema.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub table: Table,
    pub seq_start: u64,
    pub batch: RecordBatch,
}

impl Chunk {
    pub fn seq_end(&self) -> u64 {
        self.seq_start + self.batch.num_rows() as u64
    }
}

/// Rows of a contiguous `_seq` range, in append order.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    pub id: u64,
    pub chunks: Vec<Arc<Chunk>>,
    pub rows: usize,
    pub bytes: usize,
    pub seq_start: u64,
    pub seq_end: u64,
    /// Ingest-log segments holding these rows.
    pub wal_segments: Vec<u64>,
    index: HashMap<u64, Vec<u64>>,
}

pub(crate) fn key_hash(table: Table, project: i64, distinct_id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    table.id().hash(&mut h);
    project.hash(&mut h);
    distinct_id.hash(&mut h);
    h.finish()
}

impl Memtable {
    pub fn new(id: u64, seq_start: u64, wal_segment: Option<u64>) -> Self {
        Memtable {
            id,
            seq_start,
            seq_end: seq_start,
            wal_segments: wal_segment.into_iter().collect(),
            ..Default::default()
        }
    }

    pub fn push(&mut self, chunk: Arc<Chunk>) {
        let b = &chunk.batch;
        if let (Some(p), Some(d)) = (
            b.column_by_name(PROJECT_COLUMN),
            b.column_by_name(DISTINCT_ID_COLUMN),
        ) {
            let p = p.as_primitive::<Int64Type>();
            let d = d.as_string::<i32>();
            for i in 0..b.num_rows() {
                let k = key_hash(chunk.table, p.value(i), d.value(i));
                self.index
                    .entry(k)
                    .or_default()
                    .push(chunk.seq_start + i as u64);
            }
        }
        if self.chunks.is_empty() {
            self.seq_start = chunk.seq_start;
        }
        self.rows += b.num_rows();
        self.bytes += b.get_array_memory_size();
        self.seq_end = chunk.seq_end();
        self.chunks.push(chunk);
    }

    fn locate(&self, seq: u64) -> Option<(&Chunk, usize)> {
        let i = self.chunks.partition_point(|c| c.seq_end() <= seq);
        let c = self.chunks.get(i)?;
        (seq >= c.seq_start).then(|| (&**c, (seq - c.seq_start) as usize))
    }

    /// `_seq`s of every row of `project` (any table) below `cutoff`, by a
    /// scan of the chunks' project column (project drops; no index).
    pub fn rows_of_project(
        &self,
        project: i64,
        cutoff: u64,
        hits: &mut Vec<u64>,
    ) -> crate::error::Result<()> {
        for c in &self.chunks {
            let projects = c
                .batch
                .column_by_name(PROJECT_COLUMN)
                .and_then(|a| a.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| {
                    crate::error::StoreError::Internal("buffered rows without project_id".into())
                })?;
            for (i, p) in projects.values().iter().enumerate() {
                let seq = c.seq_start + i as u64;
                if *p == project && seq < cutoff {
                    hits.push(seq);
                }
            }
        }
        Ok(())
    }

    /// `_seq`s in `range` of rows of `distinct_id` in `project` / `table`.
    pub fn find(
        &self,
        table: Table,
        project: i64,
        distinct_id: &str,
        range: std::ops::Range<u64>,
        out: &mut Vec<u64>,
    ) {
        let Some(seqs) = self.index.get(&key_hash(table, project, distinct_id)) else {
            return;
        };
        for &seq in seqs {
            if !range.contains(&seq) {
                continue;
            }
            // Verify: the index is keyed by a hash.
            if let Some((c, i)) = self.locate(seq) {
                if c.table != table {
                    continue;
                }
                let b = &c.batch;
                let p = b
                    .column_by_name(PROJECT_COLUMN)
                    .map(|a| a.as_primitive::<Int64Type>().value(i));
                let d = b
                    .column_by_name(DISTINCT_ID_COLUMN)
                    .map(|a| a.as_string::<i32>().value(i) == distinct_id);
                if p == Some(project) && d == Some(true) {
                    out.push(seq);
                }
            }
        }
    }
}

impl Memtable {
    /// The rows with `_seq`s `seqs` (ascending), as slices of their
    /// chunks' batches, with each chunk's table.
    pub fn rows_at(&self, seqs: &[u64]) -> arrow::error::Result<Vec<(Table, RecordBatch)>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < seqs.len() {
            let Some((c, _)) = self.locate(seqs[i]) else {
                i += 1;
                continue;
            };
            let mut idx = Vec::new();
            while i < seqs.len() && seqs[i] >= c.seq_start && seqs[i] < c.seq_end() {
                idx.push((seqs[i] - c.seq_start) as u32);
                i += 1;
            }
            let take = arrow::array::UInt32Array::from(idx);
            let cols = c
                .batch
                .columns()
                .iter()
                .map(|a| arrow::compute::take(a, &take, None))
                .collect::<arrow::error::Result<Vec<_>>>()?;
            out.push((c.table, RecordBatch::try_new(c.batch.schema(), cols)?));
        }
        Ok(out)
    }
}

/// Members of `set` in `[start, end)`.
pub(crate) fn range_count(set: &Treemap, start: u64, end: u64) -> u64 {
    if end <= start || set.is_empty() {
        return 0;
    }
    let upto_end = set.rank(end - 1);
    let below_start = if start == 0 { 0 } else { set.rank(start - 1) };
    upto_end - below_start
}

/// `batch` without the rows whose `_seq` (consecutive from `seq_start`) is in `deleted`.
pub(crate) fn without_deleted(
    batch: &RecordBatch,
    seq_start: u64,
    deleted: &Treemap,
) -> arrow::error::Result<Option<RecordBatch>> {
    let n = batch.num_rows() as u64;
    if n == 0 {
        return Ok(None);
    }
    let seq_end = seq_start + n;
    if range_count(deleted, seq_start, seq_end) == 0 {
        return Ok(Some(batch.clone()));
    }
    let mask: BooleanArray = (0..n)
        .map(|i| Some(!deleted.contains(seq_start + i)))
        .collect();
    let out = arrow::compute::filter_record_batch(batch, &mask)?;
    Ok((out.num_rows() > 0).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_deleted_filters_by_seq() {
        use arrow::array::UInt64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new(
            "_seq",
            DataType::UInt64,
            false,
        )]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(UInt64Array::from(vec![10u64, 11, 12]))],
        )
        .unwrap();
        let mut d = Treemap::new();
        d.add(11);
        d.add(99);
        let out = without_deleted(&b, 10, &d).unwrap().unwrap();
        assert_eq!(out.num_rows(), 2);
        let mut all = Treemap::new();
        all.add_range(10..13);
        assert!(without_deleted(&b, 10, &all).unwrap().is_none());
        assert_eq!(
            without_deleted(&b, 10, &Treemap::new())
                .unwrap()
                .unwrap()
                .num_rows(),
            3
        );
    }
}
