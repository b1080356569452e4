//! Table definitions: the columns of `events` and `recordings`, as ingested
//! and as stored.
//!
//! Every table is keyed by `project_id` and `distinct_id` and partitioned by
//! (`project_id`, UTC day of `timestamp`). The store appends two columns of
//! its own to every row: `_seq` (u64, strictly increasing per store; the
//! version that deletion cut-offs compare against) and `inserted_at`.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

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
    /// A UUID string, stored lowercase-hyphenated.
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
                    ColumnKind::Uuid | ColumnKind::Str | ColumnKind::NonEmptyStr => DataType::Utf8,
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
