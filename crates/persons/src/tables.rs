//! The metadata as Arrow batches, for the query layer's `persons`,
//! `person_distinct_ids` and `person_overrides` tables. Each call reads
//! one consistent view of the metadata, so a query planned after a
//! deletion returned never sees the deleted person.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::error::{PersonsError, Result};
use crate::meta::MetaStore;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema of `persons`.
pub fn persons_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("uuid", DataType::Utf8, false),
            Field::new("project_id", DataType::Int64, false),
            Field::new("properties", DataType::Utf8, false),
            Field::new("created_at", ts(), false),
            Field::new("is_identified", DataType::Boolean, false),
            Field::new("version", DataType::Int64, false),
        ]))
    }))
}

/// Schema of `person_distinct_ids`.
pub fn distinct_ids_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Int64, false),
            Field::new("distinct_id", DataType::Utf8, false),
            Field::new("person_id", DataType::Utf8, false),
        ]))
    }))
}

/// Schema of `person_overrides`.
pub fn overrides_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Int64, false),
            Field::new("old_person_id", DataType::Utf8, false),
            Field::new("override_person_id", DataType::Utf8, false),
        ]))
    }))
}

fn batch(schema: SchemaRef, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, cols)
        .map_err(|e| PersonsError::Internal(format!("building a batch: {e}")))
}

/// All persons (of one project, or all).
pub fn persons_batch<M: MetaStore>(meta: &M, project: Option<i64>) -> Result<RecordBatch> {
    let rows = meta.read(|tx| tx.all_persons(project))?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.id).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.uuid.hyphenated().to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.project_id).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(Value::Object(r.properties.clone()).to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.created_at_us).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.is_identified))
                .collect::<BooleanArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.version).collect::<Int64Array>()),
    ];
    batch(persons_schema(), cols)
}

/// All distinct ids with their person's UUID.
pub fn distinct_ids_batch<M: MetaStore>(meta: &M, project: Option<i64>) -> Result<RecordBatch> {
    let rows = meta.read(|tx| tx.all_distinct_ids(project))?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.1.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.2.hyphenated().to_string()))
                .collect::<StringArray>(),
        ),
    ];
    batch(distinct_ids_schema(), cols)
}

/// All person overrides (merged-away UUID → the person it became).
pub fn overrides_batch<M: MetaStore>(meta: &M, project: Option<i64>) -> Result<RecordBatch> {
    let rows = meta.read(|tx| tx.overrides(project))?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.1.hyphenated().to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.2.hyphenated().to_string()))
                .collect::<StringArray>(),
        ),
    ];
    batch(overrides_schema(), cols)
}
