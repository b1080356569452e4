//! Sample input for the examples: a parquet file shaped like a PostHog
//! export (not part of the programs themselves).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use elide::arrow::array::TimestampMicrosecondArray;
use elide::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use elide::parquet::arrow::ArrowWriter;

/// Events written by [`generate`].
pub const EVENTS: i64 = 100_000;
/// Persons (distinct ids) in them.
pub const PERSONS: i64 = 1_000;

/// Write `events.parquet` under `dir`: [`EVENTS`] events of [`PERSONS`]
/// persons in projects 1 and 2, one a minute, with a `$session_id` column.
pub fn generate(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let strings = |f: &dyn Fn(i64) -> String| {
        Arc::new(StringArray::from_iter_values((0..EVENTS).map(f))) as ArrayRef
    };
    let names = ["$pageview", "$autocapture", "signup"];
    let batch = RecordBatch::try_from_iter([
        ("event", strings(&|i| names[(i % 3) as usize].to_string())),
        (
            "distinct_id",
            strings(&|i| format!("user-{:04}", i % PERSONS)),
        ),
        (
            "project_id",
            Arc::new(Int64Array::from_iter_values(
                (0..EVENTS).map(|i| 1 + i % PERSONS % 2),
            )) as _,
        ),
        (
            "timestamp",
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..EVENTS).map(|i| 1_790_000_000_000_000 + i * 60_000_000),
            )) as _,
        ),
        ("$session_id", strings(&|i| format!("s-{}", i / 20))),
    ])?;
    let path = dir.join("events.parquet");
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path)?, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    Ok(path)
}
