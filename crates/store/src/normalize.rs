//! Validation and coercion of appended rows into a table's stored schema.
//!
//! Input batches may use loose types (any integer type for `project_id`,
//! `LargeUtf8`/`Utf8View` strings, timestamps of any unit and zone or
//! ISO-8601 strings). [`normalize`] either returns columns in exactly the
//! stored types, or an error naming the first bad row and column; it never
//! writes anything, so a rejected batch changes nothing.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, Int64Array,
    StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::{Result, StoreError};
use crate::schema::{ColumnDef, ColumnKind, Table};

/// Maximum number of rows accepted in one appended batch.
pub const MAX_BATCH_ROWS: usize = 4 * 1024 * 1024;

/// An appended batch after validation, in stored types, before the store
/// assigns `_seq` and `inserted_at`.
#[derive(Debug, Clone)]
pub struct NormalizedBatch {
    pub(crate) table: Table,
    pub(crate) columns: Vec<ArrayRef>,
    pub(crate) rows: usize,
}

impl NormalizedBatch {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Arrow memory of the columns.
    pub fn memory_size(&self) -> usize {
        self.columns.iter().map(|c| c.get_array_memory_size()).sum()
    }

    /// The table it was validated for.
    pub fn table(&self) -> Table {
        self.table
    }

    /// Attach `_seq` (consecutive from `seq_start`) and `inserted_at`.
    pub(crate) fn finish(&self, seq_start: u64, inserted_at_us: i64) -> Result<RecordBatch> {
        let mut columns = self.columns.clone();
        let seqs: UInt64Array = (0..self.rows as u64).map(|i| seq_start + i).collect();
        columns.push(Arc::new(seqs));
        let inserted =
            TimestampMicrosecondArray::from(vec![inserted_at_us; self.rows]).with_timezone("UTC");
        columns.push(Arc::new(inserted));
        Ok(RecordBatch::try_new_with_options(
            self.table.def().schema(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )?)
    }
}

/// Validate `batch` against `table`'s definition and coerce it to stored types.
pub fn normalize(table: Table, batch: &RecordBatch) -> Result<NormalizedBatch> {
    let def = table.def();
    let rows = batch.num_rows();
    if rows > MAX_BATCH_ROWS {
        return Err(StoreError::InvalidInput(format!(
            "batch of {rows} rows exceeds the limit of {MAX_BATCH_ROWS} rows per append"
        )));
    }
    let schema = batch.schema();
    let mut seen = std::collections::HashSet::new();
    for field in schema.fields() {
        if !seen.insert(field.name().as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "column `{}` appears more than once",
                field.name()
            )));
        }
        let known = def.columns.iter().any(|c| c.name == field.name());
        if !known {
            let expected: Vec<&str> = def.columns.iter().map(|c| c.name).collect();
            return Err(StoreError::InvalidInput(format!(
                "unknown column `{}` for table {table} (expected a subset of: {})",
                field.name(),
                expected.join(", ")
            )));
        }
    }
    let mut columns = Vec::with_capacity(def.columns.len());
    for c in def.columns {
        let input = schema
            .index_of(c.name)
            .ok()
            .map(|i| Arc::clone(batch.column(i)));
        columns.push(normalize_column(c, input, rows)?);
    }
    Ok(NormalizedBatch {
        table,
        columns,
        rows,
    })
}

fn normalize_column(c: &ColumnDef, input: Option<ArrayRef>, rows: usize) -> Result<ArrayRef> {
    let Some(input) = input else {
        if c.generated {
            return Ok(generate_uuids(rows, None));
        }
        if c.required {
            return Err(StoreError::InvalidInput(format!(
                "missing required column `{}`",
                c.name
            )));
        }
        return Ok(arrow::array::new_null_array(&stored_type(c.kind), rows));
    };
    let out = match c.kind {
        ColumnKind::Uuid => match input.data_type() {
            // The same bytes (the stored field's tag is on the schema).
            DataType::FixedSizeBinary(16) => Arc::clone(&input),
            text => {
                let parsed = match text {
                    // Parsed from the views, without copying the text first.
                    DataType::Utf8View => crate::schema::parse_uuids(input.as_string_view().iter()),
                    _ => crate::schema::parse_uuids(to_utf8(c, &input)?.iter()),
                };
                let parsed =
                    parsed.map_err(|(row, reason)| StoreError::invalid_row(row, c.name, reason))?;
                Arc::new(parsed) as ArrayRef
            }
        },
        ColumnKind::Str => Arc::new(to_utf8(c, &input)?) as ArrayRef,
        ColumnKind::NonEmptyStr => {
            let s = to_utf8(c, &input)?;
            for (row, v) in s.iter().enumerate() {
                if let Some(v) = v {
                    if v.is_empty() {
                        return Err(StoreError::invalid_row(row, c.name, "must not be empty"));
                    }
                    // No command line, URL or deletion request can name it.
                    if v.contains('\0') {
                        return Err(StoreError::invalid_row(
                            row,
                            c.name,
                            "must not contain a NUL character (U+0000)",
                        ));
                    }
                }
            }
            Arc::new(s) as ArrayRef
        }
        ColumnKind::JsonObject => {
            let s = to_utf8(c, &input)?;
            for (row, v) in s.iter().enumerate() {
                if let Some(v) = v {
                    validate_json_object(v)
                        .map_err(|reason| StoreError::invalid_row(row, c.name, reason))?;
                }
            }
            Arc::new(s) as ArrayRef
        }
        ColumnKind::Int64 => to_int64(c, &input)?,
        ColumnKind::Timestamp => to_timestamp(c, &input)?,
    };
    if c.required && out.null_count() > 0 {
        if c.generated {
            // Fill the nulls of a generated column.
            return Ok(generate_uuids(rows, Some(out.as_fixed_size_binary())));
        }
        let row = (0..out.len()).find(|&i| out.is_null(i)).unwrap_or(0);
        return Err(StoreError::invalid_row(
            row,
            c.name,
            "required value is null",
        ));
    }
    Ok(out)
}

fn stored_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Uuid => DataType::FixedSizeBinary(16),
        ColumnKind::Int64 => DataType::Int64,
        ColumnKind::Timestamp => crate::schema::timestamp_type(),
        _ => DataType::Utf8,
    }
}

/// Bytes of text the non-null values of `a` hold, as a `Utf8` array would
/// (views may share their bytes, so the views' buffers do not say).
fn view_text_bytes(a: &arrow::array::StringViewArray) -> u64 {
    // A view's low 32 bits are its value's length.
    let len = |v: &u128| u64::from(*v as u32);
    match a.nulls() {
        None => a.views().iter().map(len).sum(),
        Some(n) => a
            .views()
            .iter()
            .zip(n.iter())
            .filter(|(_, valid)| *valid)
            .map(|(v, _)| len(v))
            .sum(),
    }
}

fn to_utf8(c: &ColumnDef, input: &ArrayRef) -> Result<StringArray> {
    match input.data_type() {
        DataType::Utf8 => Ok(input.as_string::<i32>().clone()),
        DataType::Utf8View if view_text_bytes(input.as_string_view()) > i32::MAX as u64 => {
            // arrow's cast would panic on the offset overflow.
            Err(StoreError::InvalidInput(format!(
                "column `{}`: a batch of {} rows holds {} bytes of text, more than a string \
                 column holds (2 GiB); send smaller batches",
                c.name,
                input.len(),
                view_text_bytes(input.as_string_view())
            )))
        }
        DataType::LargeUtf8 | DataType::Utf8View => {
            let out = cast_with_options(input, &DataType::Utf8, &CastOptions::default())?;
            Ok(out.as_string::<i32>().clone())
        }
        DataType::Dictionary(_, v)
            if matches!(
                **v,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            let out = cast_with_options(input, &DataType::Utf8, &CastOptions::default())?;
            Ok(out.as_string::<i32>().clone())
        }
        DataType::Null => Ok(StringArray::new_null(input.len())),
        other if c.kind == ColumnKind::Uuid => Err(StoreError::InvalidInput(format!(
            "column `{}` must be a UUID string or 16 bytes (FixedSizeBinary(16)), got {other}",
            c.name
        ))),
        other => Err(StoreError::InvalidInput(format!(
            "column `{}` must be a string, got {other}",
            c.name
        ))),
    }
}

/// Random (v4) UUIDs as 16 bytes, keeping the values `existing` has.
fn generate_uuids(rows: usize, existing: Option<&FixedSizeBinaryArray>) -> ArrayRef {
    let mut b = FixedSizeBinaryBuilder::with_capacity(rows, 16);
    for i in 0..rows {
        let r = match existing {
            Some(e) if e.is_valid(i) => b.append_value(e.value(i)),
            _ => b.append_value(uuid::Uuid::new_v4().as_bytes()),
        };
        // Every value is 16 bytes.
        debug_assert!(r.is_ok());
    }
    Arc::new(b.finish())
}

/// Check that `v` is a JSON object. Returns the reason when it is not.
pub fn validate_json_object(v: &str) -> std::result::Result<(), String> {
    if !v.trim_start().starts_with('{') {
        return Err("must be a JSON object".to_string());
    }
    serde_json::from_str::<serde::de::IgnoredAny>(v)
        .map(|_| ())
        .map_err(|e| format!("invalid JSON object: {e}"))
}

fn to_int64(c: &ColumnDef, input: &ArrayRef) -> Result<ArrayRef> {
    if !input.data_type().is_integer() {
        return Err(StoreError::InvalidInput(format!(
            "column `{}` must be an integer, got {}",
            c.name,
            input.data_type()
        )));
    }
    let safe = cast_with_options(input, &DataType::Int64, &CastOptions::default())?;
    if safe.null_count() != input.null_count() {
        let row = (0..input.len())
            .find(|&i| input.is_valid(i) && safe.is_null(i))
            .unwrap_or(0);
        return Err(StoreError::invalid_row(
            row,
            c.name,
            "value does not fit in int64",
        ));
    }
    let ints = safe.as_primitive::<arrow::datatypes::Int64Type>();
    if c.name == crate::schema::PROJECT_COLUMN {
        if let Some(row) = (0..ints.len()).find(|&i| ints.is_valid(i) && ints.value(i) < 1) {
            return Err(StoreError::invalid_row(
                row,
                c.name,
                format!("project ids are positive integers, got {}", ints.value(row)),
            ));
        }
    }
    Ok(Arc::new(Int64Array::from(ints.to_data())))
}

/// Smallest and largest accepted event time: years 1970 through 9999.
const MIN_TS_US: i64 = 0;
const MAX_TS_US: i64 = 253_402_300_799_999_999;

/// Whether an event time (µs since the epoch) is one the store accepts;
/// the reason when not. Input layers check it up front with this.
pub fn check_timestamp_us(v: i64) -> std::result::Result<(), String> {
    if (MIN_TS_US..=MAX_TS_US).contains(&v) {
        Ok(())
    } else {
        Err(OUT_OF_RANGE.into())
    }
}

/// Text, plain or dictionary-encoded ([`to_utf8`] reads them all).
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

const OUT_OF_RANGE: &str = "timestamp outside 1970-01-01 .. 9999-12-31";

/// The first row of a timestamp array (of `unit`) before 1970, if any.
fn first_negative(input: &ArrayRef, unit: &TimeUnit) -> Option<usize> {
    use arrow::datatypes::{
        TimestampMicrosecondType as Us, TimestampMillisecondType as Ms,
        TimestampNanosecondType as Ns, TimestampSecondType as S,
    };
    let values = match unit {
        TimeUnit::Second => input.as_primitive::<S>().values(),
        TimeUnit::Millisecond => input.as_primitive::<Ms>().values(),
        TimeUnit::Microsecond => input.as_primitive::<Us>().values(),
        TimeUnit::Nanosecond => input.as_primitive::<Ns>().values(),
    };
    (0..values.len()).find(|&i| values[i] < 0 && input.is_valid(i))
}

fn to_timestamp(c: &ColumnDef, input: &ArrayRef) -> Result<ArrayRef> {
    let micros: TimestampMicrosecondArray = match input.data_type() {
        DataType::Timestamp(unit, _) => {
            // Before 1970 whatever the unit: a nanosecond in
            // -999..=-1 would otherwise become 0 µs (the cast truncates
            // toward zero) and pass for 1970-01-01.
            if let Some(row) = first_negative(input, unit) {
                return Err(StoreError::invalid_row(row, c.name, OUT_OF_RANGE));
            }
            let target = DataType::Timestamp(TimeUnit::Microsecond, None);
            let cast = cast_with_options(input, &target, &CastOptions::default())?;
            if cast.null_count() != input.null_count() {
                let row = (0..input.len())
                    .find(|&i| input.is_valid(i) && cast.is_null(i))
                    .unwrap_or(0);
                return Err(StoreError::invalid_row(
                    row,
                    c.name,
                    "timestamp out of range",
                ));
            }
            cast.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .clone()
        }
        t if is_text(t) => {
            let s = to_utf8(c, input)?;
            let mut out = Vec::with_capacity(s.len());
            for (row, v) in s.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(v) => Some(
                        parse_timestamp(v)
                            .map_err(|reason| StoreError::invalid_row(row, c.name, reason))?,
                    ),
                });
            }
            TimestampMicrosecondArray::from(out)
        }
        other => {
            return Err(StoreError::InvalidInput(format!(
                "column `{}` must be a timestamp or an ISO-8601 string, got {other}",
                c.name
            )))
        }
    };
    for (row, v) in micros.iter().enumerate() {
        if let Some(v) = v {
            check_timestamp_us(v).map_err(|r| StoreError::invalid_row(row, c.name, r))?;
        }
    }
    Ok(Arc::new(micros.with_timezone("UTC")))
}

/// Parse an ISO-8601 / RFC 3339 timestamp to µs since the epoch (UTC).
///
/// Accepts `2026-11-01T12:00:00Z`, offsets (`+02:00`), fractional seconds, a
/// space instead of `T`, and zone-less forms (taken as UTC).
pub fn parse_timestamp(v: &str) -> std::result::Result<i64, String> {
    let t = v.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(t, fmt) {
            return Ok(dt.timestamp_micros());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    Err(format!("not an ISO-8601 timestamp: {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn good() -> Vec<(&'static str, ArrayRef)> {
        vec![
            (
                "event",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            ("distinct_id", Arc::new(StringArray::from(vec!["x", "y"]))),
            ("project_id", Arc::new(Int32Array::from(vec![1, 2]))),
            (
                "timestamp",
                Arc::new(StringArray::from(vec![
                    "2026-11-01T10:00:00Z",
                    "2026-11-02 11:00:00",
                ])),
            ),
        ]
    }

    /// A `Utf8View` column whose values add up to more than a `Utf8`
    /// array holds is an error, not arrow's panic (the views here share
    /// one buffer of 1 MiB).
    #[test]
    fn text_views_past_two_gib_are_an_error_not_a_panic() {
        use arrow::array::StringViewArray;
        use arrow::buffer::{Buffer, ScalarBuffer};
        let value = vec![b'a'; 1 << 20];
        let buffer = Buffer::from_vec(value);
        let n = 2100usize;
        // A view of a value longer than 12 bytes: length, prefix, buffer
        // index 0, offset 0.
        let view = (1u128 << 20) | (u128::from(u32::from_le_bytes(*b"aaaa")) << 32);
        let views = ScalarBuffer::from(vec![view; n]);
        let big = StringViewArray::try_new(views, vec![buffer], None).unwrap();
        let mut cols = good();
        cols[0].1 = Arc::new(StringArray::from(vec!["a"; n]));
        cols[1].1 = Arc::new(StringArray::from(vec!["x"; n]));
        cols[2].1 = Arc::new(Int32Array::from(vec![1; n]));
        cols[3].1 = Arc::new(StringArray::from(vec!["2026-11-01T10:00:00Z"; n]));
        cols.push(("properties", Arc::new(big)));
        let e = normalize(Table::Events, &batch(cols)).unwrap_err();
        assert!(
            matches!(&e, StoreError::InvalidInput(m) if m.contains("`properties`") && m.contains("2 GiB")),
            "{e}"
        );
    }

    /// Timestamps before 1970 are refused in every unit (a nanosecond
    /// before the epoch used to become 0 µs and pass), and text
    /// timestamps may be dictionary-encoded as other text columns may.
    #[test]
    fn timestamps_before_1970_are_refused_in_every_unit_and_dictionaries_parse() {
        use arrow::array::{DictionaryArray, TimestampNanosecondArray, TimestampSecondArray};
        use arrow::datatypes::Int32Type;
        for ts in [
            Arc::new(TimestampNanosecondArray::from(vec![1_000, -1])) as ArrayRef,
            Arc::new(TimestampNanosecondArray::from(vec![1_000, -999]).with_timezone("UTC")),
            Arc::new(TimestampSecondArray::from(vec![1, -1])),
        ] {
            let mut cols = good();
            cols[3].1 = ts;
            let e = normalize(Table::Events, &batch(cols)).unwrap_err();
            assert!(
                matches!(&e, StoreError::InvalidRow { row: 1, column, reason }
                    if column == "timestamp" && reason.contains("1970")),
                "{e}"
            );
        }
        let mut cols = good();
        cols[3].1 = Arc::new(
            vec!["2026-11-01T10:00:00Z", "2026-11-01T10:00:00Z"]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        let out = normalize(Table::Events, &batch(cols)).unwrap();
        assert_eq!(out.rows, 2);
    }

    #[test]
    fn coerces_loose_types_and_generates_uuids() {
        let n = normalize(Table::Events, &batch(good())).unwrap();
        let out = n.finish(10, 0).unwrap();
        assert_eq!(out.num_rows(), 2);
        assert_eq!(out.schema(), Table::Events.def().schema());
        let uuids = out.column(0).as_fixed_size_binary();
        assert_eq!(uuids.null_count(), 0);
        assert_ne!(uuids.value(0), uuids.value(1));
        let seq = out
            .column_by_name("_seq")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(seq.values().to_vec(), vec![10, 11]);
    }

    #[test]
    fn event_uuids_are_stored_as_16_bytes_from_any_text_or_bytes() {
        let u = uuid::Uuid::parse_str("0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f").unwrap();
        // Upper case, braced, simple and URN forms are one UUID, as `Utf8`
        // or as views (how a parquet input's strings are read); a null is
        // generated.
        for (text, view) in [
            "0192B1C2-D3E4-4F56-8789-0A1B2C3D4E5F",
            "{0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f}",
            "0192b1c2d3e44f5687890a1b2c3d4e5f",
            "urn:uuid:0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f",
        ]
        .into_iter()
        .flat_map(|t| [(t, false), (t, true)])
        {
            let mut cols = good();
            let values = vec![Some(text), None];
            let array: ArrayRef = match view {
                false => Arc::new(StringArray::from(values)),
                true => Arc::new(arrow::array::StringViewArray::from(values)),
            };
            cols.push(("uuid", array));
            let out = normalize(Table::Events, &batch(cols))
                .unwrap()
                .finish(0, 0)
                .unwrap();
            let got = out.column(0).as_fixed_size_binary();
            assert_eq!(got.value(0), u.as_bytes(), "{text}");
            assert!(got.is_valid(1));
            assert_ne!(got.value(1), u.as_bytes());
        }
        // 16 bytes are taken as they are.
        let mut cols = good();
        let bytes = arrow::array::FixedSizeBinaryArray::try_from_iter(
            [u.as_bytes().to_vec(), vec![7u8; 16]].into_iter(),
        )
        .unwrap();
        cols.push(("uuid", Arc::new(bytes)));
        let out = normalize(Table::Events, &batch(cols))
            .unwrap()
            .finish(0, 0)
            .unwrap();
        assert_eq!(out.schema(), Table::Events.def().schema());
        assert_eq!(out.column(0).as_fixed_size_binary().value(1), &[7u8; 16]);
        // Text that is not a UUID names its row, in either form; other
        // widths are refused.
        let text = u.hyphenated().to_string();
        let values = vec![Some(text.as_str()), Some("nope")];
        let arrays: [ArrayRef; 2] = [
            Arc::new(StringArray::from(values.clone())),
            Arc::new(arrow::array::StringViewArray::from(values)),
        ];
        for array in arrays {
            let mut cols = good();
            cols.push(("uuid", array));
            match normalize(Table::Events, &batch(cols)) {
                Err(StoreError::InvalidRow {
                    row,
                    column,
                    reason,
                }) => {
                    assert_eq!((row, column.as_str()), (1, "uuid"));
                    assert!(reason.contains("not a UUID (\"nope\")"), "{reason}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut cols = good();
        let wide =
            arrow::array::FixedSizeBinaryArray::try_from_iter([[0u8; 8], [1u8; 8]].into_iter())
                .unwrap();
        cols.push(("uuid", Arc::new(wide)));
        assert!(normalize(Table::Events, &batch(cols)).is_err());
    }

    #[test]
    fn rejects_bad_rows_naming_row_and_column() {
        let mut cols = good();
        cols[3].1 = Arc::new(StringArray::from(vec!["2026-11-01T10:00:00Z", "yesterday"]));
        match normalize(Table::Events, &batch(cols)) {
            Err(StoreError::InvalidRow { row, column, .. }) => {
                assert_eq!((row, column.as_str()), (1, "timestamp"))
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut cols = good();
        cols.push((
            "properties",
            Arc::new(StringArray::from(vec![Some("{}"), Some("[1]")])),
        ));
        assert!(matches!(
            normalize(Table::Events, &batch(cols)),
            Err(StoreError::InvalidRow { row: 1, .. })
        ));
        let mut cols = good();
        cols[1].1 = Arc::new(StringArray::from(vec![Some("x"), None]));
        assert!(matches!(
            normalize(Table::Events, &batch(cols)),
            Err(StoreError::InvalidRow { row: 1, .. })
        ));
    }

    #[test]
    fn rejects_missing_unknown_and_mistyped_columns() {
        let mut cols = good();
        cols.remove(1);
        assert!(
            matches!(normalize(Table::Events, &batch(cols)), Err(StoreError::InvalidInput(m)) if m.contains("distinct_id"))
        );
        let mut cols = good();
        cols.push(("colour", Arc::new(StringArray::from(vec!["a", "b"]))));
        assert!(
            matches!(normalize(Table::Events, &batch(cols)), Err(StoreError::InvalidInput(m)) if m.contains("colour"))
        );
        let mut cols = good();
        cols[2].1 = Arc::new(StringArray::from(vec!["1", "2"]));
        assert!(
            matches!(normalize(Table::Events, &batch(cols)), Err(StoreError::InvalidInput(m)) if m.contains("project_id"))
        );
    }

    #[test]
    fn parses_timestamp_forms() {
        let z = parse_timestamp("2026-11-01T00:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-11-01 00:00:00").unwrap(), z);
        assert_eq!(parse_timestamp("2026-11-01T02:00:00+02:00").unwrap(), z);
        assert_eq!(parse_timestamp("2026-11-01").unwrap(), z);
        assert_eq!(
            parse_timestamp("2026-11-01T00:00:00.5Z").unwrap(),
            z + 500_000
        );
        assert!(parse_timestamp("nope").is_err());
    }
}
