//! Table definitions: the columns of `events` and `recordings`, as ingested
//! and as stored.
//!
//! Every table is keyed by `project_id` and `distinct_id` and partitioned by
//! (`project_id`, UTC day of `timestamp`). The store appends two columns of
//! its own to every row: `_seq` (u64, strictly increasing per store; the
//! version that deletion cut-offs compare against) and `inserted_at`.
//!
//! The UUID columns ([`ColumnKind::Uuid`]: `uuid` of both tables and
//! `events.person_id`) are stored as 16 bytes (`FixedSizeBinary(16)`,
//! tagged with Arrow's canonical `arrow.uuid` extension) and read through
//! SQL as their lowercase, hyphenated text. Parts and log records written
//! by earlier builds may hold them as that text (each batch's own schema
//! says which, not a format version):
//! [`upgrade_batch`] converts such batches wherever the store reads rows
//! to keep them (replay of the ingest log, compaction, scrub), so every
//! part a compaction rewrites is in the current form; query scans read
//! both forms (see `elide_query`'s `uuid_adapter`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, StringArray,
    StringBuilder, StringViewArray, StringViewBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::{Result, StoreError};

/// The column the store adds: the row's sequence number.
pub const SEQ_COLUMN: &str = "_seq";
/// The column the store adds: when the row was appended (µs, UTC).
pub const INSERTED_AT_COLUMN: &str = "inserted_at";
/// Partitioning / key columns shared by every table.
pub const PROJECT_COLUMN: &str = "project_id";
/// The identity column deletions match on.
pub const DISTINCT_ID_COLUMN: &str = "distinct_id";
/// The person a row of `events` belongs to (nullable: personless events).
pub const PERSON_ID_COLUMN: &str = "person_id";
/// The event-time column that partitions by day.
pub const TIMESTAMP_COLUMN: &str = "timestamp";

/// The tables a store holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Product-analytics events.
    Events,
    /// Session-recording snapshots.
    Recordings,
}

impl Table {
    /// All tables, in id order.
    pub const ALL: [Table; 2] = [Table::Events, Table::Recordings];

    /// The table's name, as used in SQL, paths and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Recordings => "recordings",
        }
    }

    /// Parse a table name.
    pub fn from_name(name: &str) -> Option<Table> {
        match name {
            "events" => Some(Table::Events),
            "recordings" => Some(Table::Recordings),
            _ => None,
        }
    }

    /// Stable one-byte id used by the ingest log.
    pub fn id(self) -> u8 {
        match self {
            Table::Events => 0,
            Table::Recordings => 1,
        }
    }

    /// Inverse of [`Table::id`].
    pub fn from_id(id: u8) -> Option<Table> {
        match id {
            0 => Some(Table::Events),
            1 => Some(Table::Recordings),
            _ => None,
        }
    }

    /// The table's definition.
    pub fn def(self) -> &'static TableDef {
        static EVENTS: OnceLock<TableDef> = OnceLock::new();
        static RECORDINGS: OnceLock<TableDef> = OnceLock::new();
        match self {
            Table::Events => EVENTS.get_or_init(|| TableDef::new(Table::Events, EVENTS_COLUMNS)),
            Table::Recordings => {
                RECORDINGS.get_or_init(|| TableDef::new(Table::Recordings, RECORDINGS_COLUMNS))
            }
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a column holds, which decides how input is validated and coerced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A UUID, stored as its 16 bytes ([`uuid_field`]); input may be its
    /// text in any case or form `uuid` parses, or 16 bytes.
    Uuid,
    /// Any string.
    Str,
    /// A non-empty string (identifiers).
    NonEmptyStr,
    /// A 64-bit integer (any integer input type is accepted when it fits).
    Int64,
    /// A timestamp, µs UTC; input may be any Arrow timestamp or an ISO-8601 string.
    Timestamp,
    /// A JSON object serialized as a string.
    JsonObject,
}

/// One ingested column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    /// Column name.
    pub name: &'static str,
    /// What it holds.
    pub kind: ColumnKind,
    /// Must be present and non-null.
    pub required: bool,
    /// Generated (a random UUID) when absent or null.
    pub generated: bool,
}

const fn col(name: &'static str, kind: ColumnKind, required: bool) -> ColumnDef {
    ColumnDef {
        name,
        kind,
        required,
        generated: false,
    }
}

const fn generated_uuid(name: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        kind: ColumnKind::Uuid,
        required: true,
        generated: true,
    }
}

const EVENTS_COLUMNS: &[ColumnDef] = &[
    generated_uuid("uuid"),
    col("event", ColumnKind::NonEmptyStr, true),
    col(DISTINCT_ID_COLUMN, ColumnKind::NonEmptyStr, true),
    col("person_id", ColumnKind::Uuid, false),
    col(PROJECT_COLUMN, ColumnKind::Int64, true),
    col(TIMESTAMP_COLUMN, ColumnKind::Timestamp, true),
    col("properties", ColumnKind::JsonObject, false),
    col("session_id", ColumnKind::Str, false),
];

const RECORDINGS_COLUMNS: &[ColumnDef] = &[
    generated_uuid("uuid"),
    col("session_id", ColumnKind::NonEmptyStr, true),
    col("window_id", ColumnKind::Str, false),
    col(DISTINCT_ID_COLUMN, ColumnKind::NonEmptyStr, true),
    col(PROJECT_COLUMN, ColumnKind::Int64, true),
    col(TIMESTAMP_COLUMN, ColumnKind::Timestamp, true),
    col("snapshot_data", ColumnKind::Str, true),
];

/// A table's ingested columns and its stored Arrow schema.
#[derive(Debug)]
pub struct TableDef {
    /// Which table.
    pub table: Table,
    /// Ingested columns, in stored order.
    pub columns: &'static [ColumnDef],
    schema: SchemaRef,
}

/// The Arrow type of a timestamp column as stored.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl TableDef {
    fn new(table: Table, columns: &'static [ColumnDef]) -> Self {
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let dt = match c.kind {
                    ColumnKind::Uuid => return uuid_field(c.name, !c.required),
                    ColumnKind::Str | ColumnKind::NonEmptyStr => DataType::Utf8,
                    ColumnKind::JsonObject => DataType::Utf8,
                    ColumnKind::Int64 => DataType::Int64,
                    ColumnKind::Timestamp => timestamp_type(),
                };
                Field::new(c.name, dt, !c.required)
            })
            .collect();
        fields.push(Field::new(SEQ_COLUMN, DataType::UInt64, false));
        fields.push(Field::new(INSERTED_AT_COLUMN, timestamp_type(), false));
        TableDef {
            table,
            columns,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The stored schema: ingested columns followed by `_seq` and `inserted_at`.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Index of a column in the stored schema.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.schema.index_of(name).ok()
    }
}

/// The metadata key of an Arrow extension type's name.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Arrow's canonical extension name for UUIDs over `FixedSizeBinary(16)`.
pub const UUID_EXTENSION: &str = "arrow.uuid";

/// A field holding UUIDs as 16 bytes, tagged `arrow.uuid`.
pub fn uuid_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::FixedSizeBinary(16), nullable).with_metadata(HashMap::from([(
        EXTENSION_NAME_KEY.to_string(),
        UUID_EXTENSION.to_string(),
    )]))
}

/// Whether `field` holds 16-byte UUIDs ([`uuid_field`]).
pub fn is_uuid_field(field: &Field) -> bool {
    field.data_type() == &DataType::FixedSizeBinary(16)
        && field.metadata().get(EXTENSION_NAME_KEY).map(String::as_str) == Some(UUID_EXTENSION)
}

/// The field of a UUID column as users read it: its text.
pub fn text_field(f: &Field) -> Field {
    Field::new(f.name(), DataType::Utf8, f.is_nullable())
}

/// Each value of `a` as lowercase, hyphenated text (or `None`), to `push`.
fn each_uuid_text(a: &FixedSizeBinaryArray, mut push: impl FnMut(Option<&str>)) {
    let mut buf = uuid::Uuid::encode_buffer();
    for v in a.iter() {
        match v.and_then(|v| uuid::Uuid::from_slice(v).ok()) {
            Some(u) => push(Some(u.hyphenated().encode_lower(&mut buf))),
            None => push(None),
        }
    }
}

/// The lowercase, hyphenated text of 16-byte UUIDs (nulls stay null).
pub fn uuid_text(a: &FixedSizeBinaryArray) -> StringArray {
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 36);
    each_uuid_text(a, |v| b.append_option(v));
    b.finish()
}

/// [`uuid_text`] as string views (what query scans return).
pub fn uuid_text_view(a: &FixedSizeBinaryArray) -> StringViewArray {
    let mut b = StringViewBuilder::with_capacity(a.len());
    each_uuid_text(a, |v| b.append_option(v));
    b.finish()
}

/// Parse UUID text (any form `uuid` accepts) into 16 bytes; nulls stay
/// null. `Err((row, reason))` for the first value that is not a UUID.
pub fn parse_uuids<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a str>>,
) -> std::result::Result<FixedSizeBinaryArray, (usize, String)> {
    let mut b = FixedSizeBinaryBuilder::with_capacity(values.len(), 16);
    for (row, v) in values.enumerate() {
        match v {
            None => b.append_null(),
            Some(v) => {
                let u = uuid::Uuid::try_parse(v)
                    .map_err(|e| (row, format!("not a UUID ({v:?}): {e}")))?;
                b.append_value(u.as_bytes())
                    .map_err(|e| (row, e.to_string()))?;
            }
        }
    }
    Ok(b.finish())
}

/// `batch` (rows of `table` as some version of the store wrote them) in
/// the current stored schema: UUID text where 16 bytes are stored now is
/// parsed. A batch already in the stored schema is returned as is. Any
/// other difference, or text that is not a UUID, is corruption of `what`.
pub fn upgrade_batch(table: Table, batch: RecordBatch, what: &str) -> Result<RecordBatch> {
    let stored = table.def().schema();
    if batch.schema_ref() == &stored {
        return Ok(batch);
    }
    // A part's reader adds the file's key-value metadata to the schema:
    // the same fields are the same rows.
    if batch.schema_ref().fields() == stored.fields() {
        return Ok(RecordBatch::try_new_with_options(
            stored,
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?);
    }
    let got = batch.schema();
    let mismatch = || StoreError::corrupt(what, "rows do not match the table's schema");
    // Only whole batches of the table (every column, in order) are
    // upgraded; a projection keeps its own types.
    if got.fields().len() != stored.fields().len() {
        return Err(mismatch());
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(stored.fields().len());
    for ((want, have), col) in stored
        .fields()
        .iter()
        .zip(got.fields())
        .zip(batch.columns())
    {
        if want.name() != have.name() {
            return Err(mismatch());
        }
        if want.data_type() == have.data_type() {
            columns.push(Arc::clone(col));
        } else if is_uuid_field(want) && have.data_type() == &DataType::Utf8 {
            let parsed = parse_uuids(col.as_string::<i32>().iter()).map_err(|(row, reason)| {
                StoreError::corrupt(
                    what,
                    format!("row {row}, column `{}`: {reason}", want.name()),
                )
            })?;
            columns.push(Arc::new(parsed));
        } else {
            return Err(mismatch());
        }
    }
    Ok(RecordBatch::try_new_with_options(
        stored,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// `batch` with every 16-byte UUID column ([`is_uuid_field`]) as its
/// text (`Utf8`): rows as users read them (exports, JSON). Other columns,
/// and UUID columns already text, are unchanged.
pub fn with_uuid_text(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_uuid_field(f)) {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if is_uuid_field(f) {
            fields.push(text_field(f));
            columns.push(Arc::new(uuid_text(c.as_fixed_size_binary())) as ArrayRef);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(Arc::clone(c));
        }
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray, UInt64Array};

    /// A batch of `Events` as a store before 16-byte UUIDs wrote it.
    fn legacy_events(uuids: Vec<Option<&str>>) -> RecordBatch {
        let n = uuids.len();
        let stored = Table::Events.def().schema();
        let fields: Vec<Field> = stored
            .fields()
            .iter()
            .map(|f| match is_uuid_field(f) {
                true => text_field(f),
                false => f.as_ref().clone(),
            })
            .collect();
        let text = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
        let ts = || {
            Arc::new(TimestampMicrosecondArray::from(vec![0; n]).with_timezone("UTC")) as ArrayRef
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(uuids)),
            text("e"),
            text("d"),
            Arc::new(StringArray::new_null(n)),
            Arc::new(Int64Array::from(vec![1; n])),
            ts(),
            Arc::new(StringArray::new_null(n)),
            Arc::new(StringArray::new_null(n)),
            Arc::new(UInt64Array::from_iter_values(0..n as u64)),
            ts(),
        ];
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn legacy_text_uuids_upgrade_to_16_bytes_and_read_back_as_the_same_text() {
        let a = "0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f";
        let b = "ffffffff-0000-4000-8000-000000000001";
        let up = upgrade_batch(Table::Events, legacy_events(vec![Some(a), Some(b)]), "t").unwrap();
        assert_eq!(up.schema(), Table::Events.def().schema());
        assert!(is_uuid_field(up.schema().field(0)));
        // Already current: returned as is.
        let again = upgrade_batch(Table::Events, up.clone(), "t").unwrap();
        assert_eq!(again, up);
        // Users read the text they wrote.
        let text = with_uuid_text(up).unwrap();
        assert_eq!(text.schema().field(0).data_type(), &DataType::Utf8);
        let got: Vec<_> = text.column(0).as_string::<i32>().iter().collect();
        assert_eq!(got, vec![Some(a), Some(b)]);
        let view = uuid_text_view(
            upgrade_batch(Table::Events, legacy_events(vec![Some(b)]), "t")
                .unwrap()
                .column(0)
                .as_fixed_size_binary(),
        );
        assert_eq!(view.value(0), b);
    }

    #[test]
    fn a_legacy_batch_that_is_not_the_table_is_corruption() {
        let bad = legacy_events(vec![Some("not a uuid")]);
        assert!(matches!(
            upgrade_batch(Table::Events, bad, "p"),
            Err(StoreError::Corrupt { .. })
        ));
        let wrong_table = legacy_events(vec![Some("0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f")]);
        assert!(matches!(
            upgrade_batch(Table::Recordings, wrong_table, "p"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
