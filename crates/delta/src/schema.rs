//! The Delta schema of an Elide table, and the per-file statistics the
//! export writes.
//!
//! Columns map by their stored Arrow type: strings to `string`, 64-bit
//! integers to `long`, µs UTC timestamps to `timestamp`, and the 16-byte
//! UUID columns (`uuid`, `person_id`) to `binary` (Delta has no UUID or
//! fixed-size type; readers read the parquet `FIXED_LEN_BYTE_ARRAY(16)` as
//! binary). `_seq` is left out: it is Elide's own (an unsigned integer
//! Delta cannot name), and readers read only the columns the schema names.
//!
//! Statistics name only `project_id` and `timestamp`
//! (`delta.dataSkippingStatsColumns`): no identifier of a person is ever
//! written to the log.

use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowType, TimeUnit};
use delta_kernel::schema::{DataType, SchemaRef, StructField, StructType};
use elide_store::format::PartMeta;
use elide_store::schema::{PROJECT_COLUMN, SEQ_COLUMN, TIMESTAMP_COLUMN};
use elide_store::Table;

use crate::{Error, Result};

/// The columns whose statistics the log carries.
pub(crate) const STATS_COLUMNS: [&str; 2] = [PROJECT_COLUMN, TIMESTAMP_COLUMN];

/// The Delta schema of `table`.
pub(crate) fn delta_schema(table: Table) -> Result<SchemaRef> {
    let stored = table.def().schema();
    let mut fields = Vec::new();
    for f in stored.fields() {
        if f.name() == SEQ_COLUMN {
            continue;
        }
        let ty = match f.data_type() {
            ArrowType::Utf8 | ArrowType::Utf8View | ArrowType::LargeUtf8 => DataType::STRING,
            ArrowType::Int64 => DataType::LONG,
            ArrowType::FixedSizeBinary(_) | ArrowType::Binary => DataType::BINARY,
            ArrowType::Timestamp(TimeUnit::Microsecond, Some(_)) => DataType::TIMESTAMP,
            other => {
                return Err(Error::Unsupported(format!(
                    "column `{}` of {table}: no Delta type for {other}",
                    f.name()
                )))
            }
        };
        fields.push(StructField::new(f.name(), ty, f.is_nullable()));
    }
    Ok(Arc::new(StructType::try_new(fields)?))
}

/// `timestamp` bounds in the form Delta's statistics use (ISO-8601, ms):
/// the minimum rounded down and the maximum rounded up, so the bounds
/// still hold every row's µs value.
fn ts_bound(us: i64, up: bool) -> String {
    let ms = if up {
        us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
    } else {
        us.div_euclid(1000)
    };
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The statistics of one part, as the JSON object of `add.stats`.
/// `tightBounds` is false: the time bounds are widened to milliseconds,
/// and a part with a deletion vector has bounds over its deleted rows too.
pub(crate) fn part_stats(part: &PartMeta) -> serde_json::Value {
    serde_json::json!({
        "numRecords": part.rows,
        "minValues": {PROJECT_COLUMN: part.project_id, TIMESTAMP_COLUMN: ts_bound(part.min_ts, false)},
        "maxValues": {PROJECT_COLUMN: part.project_id, TIMESTAMP_COLUMN: ts_bound(part.max_ts, true)},
        "nullCount": {PROJECT_COLUMN: 0, TIMESTAMP_COLUMN: 0},
        "tightBounds": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_hold_every_microsecond() {
        assert_eq!(ts_bound(1_000_000, false), "1970-01-01T00:00:01.000Z");
        assert_eq!(ts_bound(1_000_001, false), "1970-01-01T00:00:01.000Z");
        assert_eq!(ts_bound(1_000_001, true), "1970-01-01T00:00:01.001Z");
        assert_eq!(ts_bound(1_000_000, true), "1970-01-01T00:00:01.000Z");
        assert_eq!(ts_bound(-1, false), "1969-12-31T23:59:59.999Z");
        assert_eq!(ts_bound(-1, true), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn schemas_leave_out_seq_and_map_uuids_to_binary() {
        let s = delta_schema(Table::Events).unwrap();
        assert!(s.field(SEQ_COLUMN).is_none());
        assert_eq!(s.field("uuid").unwrap().data_type(), &DataType::BINARY);
        assert_eq!(s.field("person_id").unwrap().data_type(), &DataType::BINARY);
        assert_eq!(
            s.field("timestamp").unwrap().data_type(),
            &DataType::TIMESTAMP
        );
        assert_eq!(s.field("project_id").unwrap().data_type(), &DataType::LONG);
        delta_schema(Table::Recordings).unwrap();
    }
}
