//! The functions HogQL rewrites call that DataFusion lacks:
//!
//! - [`PersonProperty`] (`elide_person_property(distinct_id, key…)`): the
//!   properties of the person a distinct id belongs to, from one read of
//!   the project's persons taken when the query starts (so a person
//!   deleted before the query began is never seen);
//! - [`DateDiff`] (`elide_date_diff(unit, start, end)`): ClickHouse's
//!   `dateDiff`, the number of `unit` boundaries crossed from `start` to
//!   `end`, in UTC;
//! - [`ToDateTime`] (`elide_to_datetime(x)`): `toDateTime` by the type of
//!   its argument, whatever the expression: a number is seconds since
//!   the epoch, text is parsed (NULL when it is no time), a date or time
//!   is converted.
//! - [`Empty`] (`elide_empty(x)`): ClickHouse's `empty`, of text or a
//!   list.
//! - [`Position`] (`elide_position(s, needle)`): ClickHouse's `position`,
//!   in bytes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::{Map, Value};

/// Name of [`PersonProperty`].
pub const PERSON_PROPERTY: &str = "elide_person_property";
/// Name of [`DateDiff`].
pub const DATE_DIFF: &str = "elide_date_diff";
/// Name of [`ToDateTime`].
pub const TO_DATETIME: &str = "elide_to_datetime";

/// Each distinct id's person properties.
pub type PersonsByDistinctId = HashMap<String, Arc<Map<String, Value>>>;

/// `elide_person_property(distinct_id, key…)`: the value at `key…` in
/// the properties of the distinct id's person, as `json_as_text` renders
/// it (strings bare, other values as JSON text, missing or null → NULL);
/// with no key, the whole properties object as JSON.
#[derive(Debug)]
pub struct PersonProperty {
    persons: Arc<PersonsByDistinctId>,
    signature: Signature,
}

impl PersonProperty {
    /// The function over one read of the persons.
    pub fn udf(persons: Arc<PersonsByDistinctId>) -> ScalarUDF {
        ScalarUDF::new_from_impl(PersonProperty {
            persons,
            signature: Signature::variadic_any(Volatility::Stable),
        })
    }
}

impl PartialEq for PersonProperty {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.persons, &other.persons)
    }
}

impl Eq for PersonProperty {}

impl Hash for PersonProperty {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.persons), state);
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl ScalarUDFImpl for PersonProperty {
    fn name(&self) -> &str {
        PERSON_PROPERTY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.is_empty() {
            return plan_err!("{PERSON_PROPERTY} needs a distinct id");
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut keys = Vec::with_capacity(args.args.len().saturating_sub(1));
        for a in &args.args[1..] {
            match a {
                ColumnarValue::Scalar(s) => match s.try_as_str() {
                    Some(Some(k)) => keys.push(k.to_string()),
                    _ => return exec_err!("person property names must be text literals"),
                },
                ColumnarValue::Array(_) => {
                    return exec_err!("person property names must be literals")
                }
            }
        }
        let ids = args.args[0].to_array(args.number_rows)?;
        let ids = arrow::compute::cast(&ids, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 8);
        for i in 0..ids.len() {
            let found = (!ids.is_null(i))
                .then(|| self.persons.get(ids.value(i)))
                .flatten()
                .and_then(|props| {
                    if keys.is_empty() {
                        return Some(Value::Object(props.as_ref().clone()).to_string());
                    }
                    let mut v = props.get(&keys[0])?;
                    for k in &keys[1..] {
                        v = match v {
                            Value::Object(m) => m.get(k)?,
                            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
                            _ => return None,
                        };
                    }
                    text(v)
                });
            out.append_option(found);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `elide_date_diff(unit, start, end)`: ClickHouse's `dateDiff`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DateDiff {
    signature: Signature,
}

impl DateDiff {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(DateDiff {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

/// A `dateDiff` unit, by any of ClickHouse's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        Some(match s.to_ascii_lowercase().as_str() {
            "second" | "seconds" | "ss" | "s" => Unit::Second,
            "minute" | "minutes" | "mi" | "n" => Unit::Minute,
            "hour" | "hours" | "hh" | "h" => Unit::Hour,
            "day" | "days" | "dd" | "d" => Unit::Day,
            "week" | "weeks" | "wk" | "ww" => Unit::Week,
            "month" | "months" | "mm" | "m" => Unit::Month,
            "quarter" | "quarters" | "qq" | "q" => Unit::Quarter,
            "year" | "years" | "yyyy" | "yy" => Unit::Year,
            _ => return None,
        })
    }

    /// The index of the unit period holding `us` (µs since the epoch,
    /// UTC); a difference of two is the boundaries crossed.
    fn period(self, us: i64) -> Option<i64> {
        use chrono::Datelike;
        const S: i64 = 1_000_000;
        let days = us.div_euclid(86_400 * S);
        let date = || chrono::DateTime::from_timestamp_micros(us).map(|t| t.date_naive());
        let month = || date().map(|d| i64::from(d.year()) * 12 + i64::from(d.month0()));
        Some(match self {
            Unit::Second => us.div_euclid(S),
            Unit::Minute => us.div_euclid(60 * S),
            Unit::Hour => us.div_euclid(3_600 * S),
            Unit::Day => days,
            // Weeks from Monday (1970-01-01 was a Thursday).
            Unit::Week => (days + 3).div_euclid(7),
            Unit::Month => month()?,
            Unit::Quarter => month()?.div_euclid(3),
            Unit::Year => i64::from(date()?.year()),
        })
    }

    /// Boundaries of the unit crossed from `a` to `b` (µs); `None` past
    /// the calendar's range.
    fn between(self, a: i64, b: i64) -> Option<i64> {
        Some(self.period(b)? - self.period(a)?)
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl ScalarUDFImpl for DateDiff {
    fn name(&self) -> &str {
        DATE_DIFF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!("dateDiff takes (unit, start, end)");
        }
        Ok(vec![DataType::Utf8, utc_micros(), utc_micros()])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = match &args.args[0] {
            ColumnarValue::Scalar(s) => match s.try_as_str() {
                Some(Some(u)) => Unit::parse(u)
                    .ok_or_else(|| {
                        datafusion::error::DataFusionError::Execution(format!(
                            "dateDiff: unknown unit '{u}' (second, minute, hour, day, week, month, quarter, year)"
                        ))
                    })?,
                _ => return exec_err!("dateDiff: the unit must be a text literal"),
            },
            ColumnarValue::Array(_) => return exec_err!("dateDiff: the unit must be a literal"),
        };
        let n = args.number_rows;
        if let (ColumnarValue::Scalar(a), ColumnarValue::Scalar(b)) = (&args.args[1], &args.args[2])
        {
            let v = match (a, b) {
                (
                    ScalarValue::TimestampMicrosecond(Some(a), _),
                    ScalarValue::TimestampMicrosecond(Some(b), _),
                ) => unit.between(*a, *b),
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(v)));
        }
        let a = args.args[1].to_array(n)?;
        let b = args.args[2].to_array(n)?;
        let (a, b) = (
            a.as_primitive::<TimestampMicrosecondType>(),
            b.as_primitive::<TimestampMicrosecondType>(),
        );
        let mut out = Int64Builder::with_capacity(n);
        for i in 0..n {
            out.append_option(
                (a.is_valid(i) && b.is_valid(i))
                    .then(|| unit.between(a.value(i), b.value(i)))
                    .flatten(),
            );
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `elide_to_datetime(x)`: HogQL's `toDateTime`, as a UTC time in µs.
/// Integers are seconds since the epoch (as ClickHouse's `toDateTime`),
/// floats seconds with a fraction; text is parsed as arrow parses times,
/// NULL when it is none (as HogQL's `parseDateTime64BestEffortOrNull`);
/// dates and times are converted. A number past the representable range
/// is NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToDateTime {
    signature: Signature,
}

impl ToDateTime {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(ToDateTime {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for ToDateTime {
    fn name(&self) -> &str {
        TO_DATETIME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            t if t.is_numeric() || t.is_temporal() => Ok(utc_micros()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                Ok(utc_micros())
            }
            t => plan_err!("toDateTime of {t}: expected a number, text, a date or a time"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::array::{Float64Array, Int64Array, TimestampMicrosecondArray};
        use arrow::compute::{cast, cast_with_options, CastOptions};
        let a = args.args[0].to_array(args.number_rows)?;
        const S: f64 = 1_000_000.0;
        let out: TimestampMicrosecondArray = match a.data_type() {
            t if t.is_integer() => {
                let s = cast(&a, &DataType::Int64)?;
                let s: &Int64Array = s.as_primitive();
                s.iter()
                    .map(|v| v.and_then(|v| v.checked_mul(1_000_000)))
                    .collect()
            }
            t if t.is_floating()
                || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
            {
                let s = cast(&a, &DataType::Float64)?;
                let s: &Float64Array = s.as_primitive();
                s.iter()
                    .map(|v| {
                        v.map(|v| (v * S).round())
                            // i64::MAX as f64 rounds up: strictly below it.
                            .filter(|us| us.is_finite() && us.abs() < i64::MAX as f64)
                            .map(|us| us as i64)
                    })
                    .collect()
            }
            _ => {
                let safe = CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let t = cast_with_options(&a, &utc_micros(), &safe)?;
                t.as_primitive::<TimestampMicrosecondType>().clone()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(out.with_timezone("UTC"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    fn diff(unit: &str, a: &str, b: &str) -> i64 {
        Unit::parse(unit).unwrap().between(us(a), us(b)).unwrap()
    }

    #[test]
    fn calendar_units_before_1970_and_past_the_range() {
        assert_eq!(
            diff("month", "1969-12-31 23:59:59", "1970-01-01 00:00:00"),
            1
        );
        assert_eq!(
            diff("year", "1969-06-01 00:00:00", "1971-06-01 00:00:00"),
            2
        );
        assert_eq!(
            diff("month", "2024-02-29 00:00:00", "2024-03-01 00:00:00"),
            1
        );
        // Past chrono's years a calendar unit has no answer (NULL), a
        // fixed-length one still does.
        assert_eq!(Unit::Month.between(0, i64::MAX), None);
        assert_eq!(Unit::Day.between(0, 86_400_000_000), Some(1));
    }

    #[test]
    fn boundaries_crossed_as_clickhouse_counts_them() {
        // ClickHouse: dateDiff('day', '2024-01-01 23:59:59', '2024-01-02 00:00:00') = 1.
        assert_eq!(diff("day", "2024-01-01 23:59:59", "2024-01-02 00:00:00"), 1);
        assert_eq!(
            diff("day", "2024-01-02 00:00:00", "2024-01-01 23:59:59"),
            -1
        );
        assert_eq!(
            diff("hour", "2024-01-01 10:59:59", "2024-01-01 11:00:00"),
            1
        );
        assert_eq!(
            diff("month", "2024-01-31 00:00:00", "2024-02-01 00:00:00"),
            1
        );
        assert_eq!(
            diff("year", "2023-12-31 00:00:00", "2024-01-01 00:00:00"),
            1
        );
        assert_eq!(
            diff("quarter", "2024-03-31 00:00:00", "2024-04-01 00:00:00"),
            1
        );
        // 2024-01-07 is a Sunday, 2024-01-08 a Monday: one week boundary.
        assert_eq!(
            diff("week", "2024-01-07 00:00:00", "2024-01-08 00:00:00"),
            1
        );
        assert_eq!(
            diff("week", "2024-01-08 00:00:00", "2024-01-14 23:00:00"),
            0
        );
        assert_eq!(
            diff("second", "1969-12-31 23:59:59", "1970-01-01 00:00:00"),
            1
        );
        assert!(Unit::parse("fortnight").is_none());
    }
}

/// Name of [`Empty`].
pub const EMPTY: &str = "elide_empty";

/// `elide_empty(x)`: ClickHouse's `empty`, whether text or a list has no
/// element (a NULL is NULL; another type is read as its text).
/// `notEmpty(x)` is `NOT elide_empty(x)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Empty {
    signature: Signature,
}

impl Empty {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Empty {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for Empty {
    fn name(&self) -> &str {
        EMPTY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::compute::kernels::length::length;
        let a = args.args[0].to_array(args.number_rows)?;
        let a = match a.data_type() {
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..) => a,
            DataType::Null => {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            }
            _ => arrow::compute::cast(&a, &DataType::Utf8)?,
        };
        let n = arrow::compute::cast(&length(&a)?, &DataType::Int64)?;
        let out: arrow::array::BooleanArray = n
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.map(|v| v == 0))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Name of [`Position`].
pub const POSITION: &str = "elide_position";

/// `elide_position(haystack, needle)`: ClickHouse's `position`, where
/// `needle` first starts in `haystack`, counted in bytes from 1 (0 when
/// absent, 1 for an empty needle); NULL when either is. One call, so the
/// rewrite never repeats its arguments (a template that did would grow
/// exponentially with nesting).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Position {
    signature: Signature,
}

impl Position {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Position {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for Position {
    fn name(&self) -> &str {
        POSITION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text = |i: usize| -> Result<ArrayRef> {
            let a = args.args[i].to_array(args.number_rows)?;
            Ok(arrow::compute::cast(&a, &DataType::Utf8)?)
        };
        let (hay, needle) = (text(0)?, text(1)?);
        let (hay, needle) = (hay.as_string::<i32>(), needle.as_string::<i32>());
        let mut out = Int64Builder::with_capacity(hay.len());
        for i in 0..hay.len() {
            if hay.is_null(i) || needle.is_null(i) {
                out.append_null();
            } else {
                let at = hay.value(i).find(needle.value(i)).map_or(0, |b| b + 1);
                out.append_value(at as i64);
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
