//! `elide-gen`: a deterministic generator of PostHog-like product-analytics
//! events, used to feed Elide's storage engine in tests and benchmarks.
//!
//! The crate owns:
//! - the canonical event schema ([`events_schema`]),
//! - the synthetic population model (persons, their projects, their distinct
//!   ids and person UUIDs — see [`person_distinct_id`], [`person_project`],
//!   [`person_uuid`]),
//! - a streaming [`Generator`] yielding Arrow [`RecordBatch`]es in timestamp
//!   order with O(batch) memory (plus one bit per person to count the persons
//!   seen), and
//! - [`write_parquet`], which writes the whole stream into one ZSTD Parquet
//!   file.
//!
//! # Determinism
//!
//! All randomness comes from a single `ChaCha8Rng` seeded with
//! [`GenConfig::seed`] and consumed in a fixed order, plus pure hash functions
//! of `(seed, person)`; nothing reads the wall clock, the environment, thread
//! RNGs or hash-map iteration order. The same [`GenConfig`] therefore yields
//! the same batches, and [`write_parquet`] produces a byte-identical file
//! (fixed `created_by`, no time-dependent metadata) on every run with the same
//! crate versions.
//!
//! # Population model
//!
//! Person `i` (0-based, `i < persons`) belongs to exactly one project
//! ([`person_project`], skewed so project 1 is the largest). Activity follows a
//! Zipf law over person indices with exponent 1.1: person 0 is the most active,
//! person 1 the next, and so on. About 30% of persons also send some events
//! under an anonymous id `anon-{project}-{idx}`; their person id is still set.
//! About 2% of events are "personless" (null `person_id`, a throwaway
//! `guest-…` distinct id).
//!
//! [`RecordBatch`]: arrow::record_batch::RecordBatch

mod generator;
mod persons;
mod props;
mod time;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

pub use generator::Generator;
pub use persons::{person_anon_id, person_distinct_id, person_project, person_uuid};

/// Largest supported number of projects (the project table is held in memory).
pub const MAX_PROJECTS: u32 = 1_000_000;
/// Largest supported number of persons (the generator keeps one bit per person).
pub const MAX_PERSONS: u64 = 1 << 32;
/// Largest supported time span in days (~270 years).
pub const MAX_DAYS: u32 = 100_000;

/// `created_by` written into every Parquet footer (keeps files reproducible).
pub const PARQUET_CREATED_BY: &str = "elide-gen";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    /// Total number of events (rows) to generate.
    pub events: u64,
    /// Number of distinct persons in the population.
    pub persons: u64,
    /// Number of projects; project ids are `1..=projects`.
    pub projects: u32,
    /// Seed for all randomness.
    pub seed: u64,
    /// Number of days covered by the timestamps.
    pub days: u32,
    /// Timestamps lie in `[end_day - days, end_day)` (UTC midnights).
    pub end_day: NaiveDate,
    /// Maximum rows per generated batch.
    pub batch_rows: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            persons: 100_000,
            projects: 10,
            seed: 42,
            days: 90,
            end_day: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or(NaiveDate::MIN),
            batch_rows: 65_536,
        }
    }
}

/// Outcome of [`write_parquet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Rows written.
    pub events: u64,
    /// Distinct persons that appear with a non-null `person_id`.
    pub persons_seen: u64,
    /// Size of the written file in bytes.
    pub bytes: u64,
}

/// Errors from configuring the generator or writing its output.
#[derive(thiserror::Error, Debug)]
pub enum GenError {
    /// The [`GenConfig`] cannot be generated.
    #[error("invalid generator config: {0}")]
    InvalidConfig(String),
    /// Filesystem error while writing output.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Parquet encoding error.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow error while assembling a batch.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Internal failure formatting a value (should not happen).
    #[error("encoding error: {0}")]
    Encode(String),
}

impl From<std::fmt::Error> for GenError {
    fn from(e: std::fmt::Error) -> Self {
        Self::Encode(e.to_string())
    }
}

impl From<serde_json::Error> for GenError {
    fn from(e: serde_json::Error) -> Self {
        Self::Encode(e.to_string())
    }
}

impl From<std::str::Utf8Error> for GenError {
    fn from(e: std::str::Utf8Error) -> Self {
        Self::Encode(e.to_string())
    }
}

/// The schema of generated events. Field names and types are a contract with
/// the rest of Elide.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("uuid", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new("person_id", DataType::Utf8, true),
        Field::new("project_id", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("properties", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, true),
    ]))
}

/// Parquet writer properties used by [`write_parquet`]: ZSTD, fixed
/// `created_by`, no key/value metadata beyond the Arrow schema, and no
/// dictionary for the always-unique `uuid` column.
pub fn parquet_writer_properties() -> Result<WriterProperties, GenError> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by(PARQUET_CREATED_BY.to_string())
        .set_column_dictionary_enabled(ColumnPath::from("uuid"), false)
        .build())
}

/// Generate `cfg` into a new Parquet file at `out` (overwriting it).
///
/// `progress` is called after every batch with the number of rows written so
/// far. The file is byte-identical for identical configs.
pub fn write_parquet(
    cfg: GenConfig,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<GenSummary, GenError> {
    let mut generator = Generator::new(cfg)?;
    let file = File::create(out)?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, file),
        events_schema(),
        Some(parquet_writer_properties()?),
    )?;
    let mut rows = 0u64;
    while let Some(batch) = generator.try_next_batch()? {
        writer.write(&batch)?;
        rows += batch.num_rows() as u64;
        progress(rows);
    }
    let mut buffered = writer.into_inner()?;
    buffered.flush()?;
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    Ok(GenSummary {
        events: rows,
        persons_seen: generator.persons_seen(),
        bytes,
    })
}
