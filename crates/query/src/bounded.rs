//! Scalar functions whose output size the query chooses, bounded.
//!
//! `repeat('x', 1000000000000)` asks DataFusion's `repeat` for a terabyte
//! in one allocation; its failure aborts the process (no panic to catch),
//! and the session's memory pool does not see a scalar function's output.
//! A `query:read` key could stop the server that way. The functions below
//! are wrapped: before the inner function runs, the size of what it would
//! build for the batch is computed from its arguments, and past
//! [`MAX_OUTPUT_BYTES`] the query fails with an error instead.
//!
//! A call on constants only counts as a whole batch of rows: its result
//! is a constant that other functions copy into every row. Not bounded:
//! functions that grow text without a count (`replace`, `concat`), and
//! lists nested two deep inside an element (an inner list counts as one
//! element).
//!
//! Invariant: the wrapper changes nothing else (name, aliases, signature,
//! types, simplification are the inner function's); it only refuses.
//!
//! Bounded: `repeat`, `lpad`, `rpad` (bytes of text), `array_repeat`,
//! `array_resize`, `range`, `generate_series` (elements of lists, of
//! integers, dates or timestamps).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::kernels::length::length;
use arrow::compute::{cast, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalUnit};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Most bytes a bounded function may build for one batch (an estimate of
/// its output: text bytes, or 16 bytes a list element).
pub const MAX_OUTPUT_BYTES: u64 = 1 << 30;

/// Bytes one list element is counted as (an estimate for any type).
const ELEMENT_BYTES: u64 = 16;

/// A day in nanoseconds.
const DAY_NS: i128 = 86_400_000_000_000;

/// What a function would build for a batch, from its arguments.
type Size = fn(&[ColumnarValue], usize) -> Result<u64>;

/// A function of DataFusion's, refused when [`Size`] says its output
/// would pass [`MAX_OUTPUT_BYTES`].
#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    size: Size,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Bounded {}

impl Hash for Bounded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // A call on constants only (constant folding: one row) makes a
        // constant that other functions may copy into every row of a
        // batch: it counts as a whole batch of rows.
        let rows = match args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            true => args
                .number_rows
                .max(usize::from(args.config_options.execution.batch_size)),
            false => args.number_rows,
        };
        let bytes = (self.size)(&args.args, rows)?;
        if bytes > MAX_OUTPUT_BYTES {
            return exec_err!(
                "{} would build about {bytes} bytes for {rows} rows; at most {MAX_OUTPUT_BYTES} may be",
                self.inner.name()
            );
        }
        self.inner.invoke_with_args(args)
    }
}

/// Replace the session's functions that build outputs of a size the query
/// chooses by bounded ones (see the module docs). Idempotent.
pub(crate) fn register(ctx: &SessionContext) {
    let sized: [(&str, Size); 7] = [
        ("repeat", repeat_size),
        ("lpad", pad_size),
        ("rpad", pad_size),
        ("array_repeat", array_repeat_size),
        ("array_resize", array_resize_size),
        ("range", series_size),
        ("generate_series", series_size),
    ];
    let state = ctx.state();
    let functions = state.scalar_functions();
    for (name, size) in sized {
        let Some(inner) = functions.get(name) else {
            continue;
        };
        if inner.inner().downcast_ref::<Bounded>().is_some() {
            continue;
        }
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner: Arc::clone(inner),
            size,
        }));
    }
}

/// `a` as Int64 (NULL where it is not a number).
fn int64(a: &ArrayRef) -> Result<Int64Array> {
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    Ok(cast_with_options(a, &DataType::Int64, &safe)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// `v` as `rows` values of Int64 (a count: small, so a constant may be
/// copied).
fn ints(v: &ColumnarValue, rows: usize) -> Result<Int64Array> {
    int64(&v.to_array(rows)?)
}

/// Row `i` of `a` as a size: NULL and negative values are 0.
fn at(a: &Int64Array, i: usize) -> u64 {
    match a.is_valid(i) {
        true => u64::try_from(a.value(i)).unwrap_or(0),
        false => 0,
    }
}

/// Bytes of each value of `v` (text or binary), `None` for other types.
/// A constant is measured once, never copied into `rows` values.
fn lengths(v: &ColumnarValue, rows: usize) -> Result<Option<Int64Array>> {
    let a = match v {
        ColumnarValue::Scalar(s) => {
            use datafusion::common::ScalarValue as S;
            let len = match s {
                S::Utf8(v) | S::LargeUtf8(v) | S::Utf8View(v) => v.as_ref().map(String::len),
                S::Binary(v) | S::LargeBinary(v) | S::BinaryView(v) => v.as_ref().map(Vec::len),
                _ => return Ok(None),
            };
            let len = i64::try_from(len.unwrap_or(0)).unwrap_or(i64::MAX);
            return Ok(Some(Int64Array::from_value(len, rows)));
        }
        ColumnarValue::Array(a) => Arc::clone(a),
    };
    let a = match a.data_type() {
        // A view's low 32 bits are its value's length.
        DataType::Utf8View => {
            let views = a.as_string_view();
            return Ok(Some(
                views
                    .views()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| views.is_valid(i).then_some(i64::from(*v as u32)))
                    .collect(),
            ));
        }
        DataType::BinaryView => cast(&a, &DataType::LargeBinary)?,
        _ => a,
    };
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary => {
            Ok(Some(int64(&length(&a)?)?))
        }
        _ => Ok(None),
    }
}

/// Σ over rows of `count(row) × weight(row)`.
fn total(counts: &Int64Array, weight: impl Fn(usize) -> u64) -> u64 {
    (0..counts.len())
        .map(|i| at(counts, i).saturating_mul(weight(i)))
        .fold(0u64, u64::saturating_add)
}

/// `repeat(text, n)`: the text's bytes `n` times.
fn repeat_size(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let [s, n] = args else { return Ok(0) };
    let each = element_bytes(s, rows)?;
    Ok(total(&ints(n, rows)?, |i| each[i]))
}

/// `lpad(text, n [, fill])`: `n` characters of up to 4 bytes.
fn pad_size(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let Some(n) = args.get(1) else { return Ok(0) };
    Ok(total(&ints(n, rows)?, |_| 4))
}

/// Bytes of each of the `rows` values of `v`: text's bytes, a list's
/// elements at [`ELEMENT_BYTES`] each (at least one), anything else
/// [`ELEMENT_BYTES`]. A constant is measured once.
fn element_bytes(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    if let Some(lens) = lengths(v, rows)? {
        return Ok((0..rows).map(|i| at(&lens, i)).collect());
    }
    let list_len = |a: &dyn Array, i: usize| -> u64 {
        let n = match a.data_type() {
            _ if !a.is_valid(i) => 0,
            DataType::List(_) => i64::from(a.as_list::<i32>().value_length(i)),
            DataType::LargeList(_) => a.as_list::<i64>().value_length(i),
            DataType::FixedSizeList(_, n) => i64::from(*n),
            _ => 1,
        };
        u64::try_from(n)
            .unwrap_or(0)
            .saturating_mul(ELEMENT_BYTES)
            .max(ELEMENT_BYTES)
    };
    Ok(match v {
        ColumnarValue::Scalar(s) => vec![list_len(s.to_array_of_size(1)?.as_ref(), 0); rows],
        ColumnarValue::Array(a) => (0..rows).map(|i| list_len(a.as_ref(), i)).collect(),
    })
}

/// `array_repeat(element, n)`: `n` copies of the element.
fn array_repeat_size(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let [e, n] = args else { return Ok(0) };
    let each = element_bytes(e, rows)?;
    Ok(total(&ints(n, rows)?, |i| each[i].max(ELEMENT_BYTES)))
}

/// `array_resize(list, n [, fill])`: `n` elements, of the fill's size.
fn array_resize_size(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let Some(n) = args.get(1) else { return Ok(0) };
    let each = match args.get(2) {
        Some(fill) => element_bytes(fill, rows)?,
        None => vec![ELEMENT_BYTES; rows],
    };
    Ok(total(&ints(n, rows)?, |i| each[i].max(ELEMENT_BYTES)))
}

/// `range(stop)`, `range(start, stop [, step])` of integers, dates or
/// timestamps: (stop - start) / step elements. A NULL argument makes a
/// NULL list and a step away from the stop an empty one (a step of 0 is
/// DataFusion's error).
fn series_size(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let (start, stop, step) = match args {
        [stop] => (None, stop, None),
        [start, stop] => (Some(start), stop, None),
        [start, stop, step] => (Some(start), stop, Some(step)),
        _ => return Ok(0),
    };
    let stop = points(stop, rows)?;
    let start = match start {
        Some(s) => points(s, rows)?,
        None => vec![Some(0); rows],
    };
    let step = match step {
        Some(s) => steps(s, rows)?,
        None => vec![Some(1); rows],
    };
    let mut elements = 0u64;
    for ((from, to), step) in start.iter().zip(&stop).zip(&step) {
        let (Some(from), Some(to), Some(step)) = (*from, *to, *step) else {
            continue;
        };
        if (to > from && step < 0) || (to < from && step > 0) {
            continue;
        }
        let n = to.abs_diff(from) / step.unsigned_abs().max(1);
        elements = elements.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok(elements.saturating_mul(ELEMENT_BYTES))
}

/// Each row of a `range` bound as an integer in the unit its step counts
/// in: integers as they are, dates and timestamps in nanoseconds.
fn points(v: &ColumnarValue, rows: usize) -> Result<Vec<Option<i128>>> {
    use arrow::datatypes::TimeUnit;
    let a = v.to_array(rows)?;
    let (a, scale): (ArrayRef, i128) = match a.data_type() {
        // Days since the epoch.
        DataType::Date32 | DataType::Date64 => (
            cast(&cast(&a, &DataType::Date32)?, &DataType::Int32)?,
            DAY_NS,
        ),
        DataType::Timestamp(unit, _) => {
            let scale = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            (a, scale)
        }
        _ => (a, 1),
    };
    Ok(int64(&a)?
        .iter()
        .map(|v| v.map(|v| i128::from(v).saturating_mul(scale)))
        .collect())
}

/// Each row of a `range` step in the unit of [`points`]: integers as they
/// are, intervals in nanoseconds (a month as 28 days, its shortest).
fn steps(v: &ColumnarValue, rows: usize) -> Result<Vec<Option<i128>>> {
    use arrow::datatypes::{IntervalDayTimeType, IntervalMonthDayNanoType, IntervalYearMonthType};
    let a = v.to_array(rows)?;
    let ns = |days: i128, nanos: i128| days * DAY_NS + nanos;
    Ok(match a.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => a
            .as_primitive::<IntervalMonthDayNanoType>()
            .iter()
            .map(|v| {
                v.map(|v| {
                    ns(
                        i128::from(v.months) * 28 + i128::from(v.days),
                        i128::from(v.nanoseconds),
                    )
                })
            })
            .collect(),
        DataType::Interval(IntervalUnit::DayTime) => a
            .as_primitive::<IntervalDayTimeType>()
            .iter()
            .map(|v| v.map(|v| ns(i128::from(v.days), i128::from(v.milliseconds) * 1_000_000)))
            .collect(),
        DataType::Interval(IntervalUnit::YearMonth) => a
            .as_primitive::<IntervalYearMonthType>()
            .iter()
            .map(|v| v.map(|m| ns(i128::from(m) * 28, 0)))
            .collect(),
        _ => int64(&a)?.iter().map(|v| v.map(i128::from)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok(text
            .lines()
            .nth(3)
            .unwrap_or_default()
            .trim_matches(|c| c == '|' || c == ' ')
            .to_string())
    }

    /// Outputs past the bound are an error, not an allocation that aborts
    /// the process; small ones are the inner function's.
    #[tokio::test]
    async fn functions_that_build_what_the_query_asks_are_bounded() {
        let mut ctx = SessionContext::new();
        crate::register_functions(&mut ctx).unwrap();
        crate::register_functions(&mut ctx).unwrap();
        for sql in [
            "SELECT repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000)",
            "SELECT repeat('abc', 2000000000)",
            "SELECT lpad('a', 2000000000)",
            "SELECT rpad('a', 2000000000, '-')",
            "SELECT array_repeat(1, 2000000000)",
            "SELECT array_resize([1], 2000000000)",
            "SELECT range(0, 100000000000)",
            "SELECT generate_series(-100000000000, 100000000000, 2)",
            "SELECT range(DATE '1970-01-01', DATE '9999-01-01', INTERVAL '1 second')",
            "SELECT range(TIMESTAMP '1970-01-01', TIMESTAMP '2100-01-01', INTERVAL '1 millisecond')",
            "SELECT max(length(repeat('abc', v))) FROM (VALUES (1), (2000000000)) t(v)",
            // A constant counts as a batch of rows (others copy it into
            // each), and a constant argument is measured, not copied.
            "SELECT repeat('x', 1000000)",
            "SELECT array_repeat(range(0, v), w) FROM (VALUES (100000, 2000)) t(v, w)",
            "SELECT array_resize([], v, repeat('y', 100000)) FROM (VALUES (100000)) t(v)",
            "SELECT max(length(repeat(arrow_cast(repeat('x', 100000), 'LargeUtf8'), v))) FROM (VALUES (100000)) t(v)",
        ] {
            let e = one(&ctx, sql).await.expect_err(sql);
            assert!(e.to_string().contains("at most"), "{sql}: {e}");
        }
        for (sql, want) in [
            ("SELECT repeat('ab', 3)", "ababab"),
            ("SELECT lpad('a', 3, '-')", "--a"),
            ("SELECT rpad('a', 3)", "a"),
            ("SELECT array_repeat(1, 3)", "[1, 1, 1]"),
            ("SELECT array_resize([1], 3, 0)", "[1, 0, 0]"),
            ("SELECT range(0, 3)", "[0, 1, 2]"),
            ("SELECT generate_series(1, 3)", "[1, 2, 3]"),
            (
                "SELECT cardinality(range(DATE '2026-01-01', DATE '2026-02-01', INTERVAL '1 day'))",
                "31",
            ),
            ("SELECT length(repeat('x', 100000))", "100000"),
            // NULL arguments and steps away from the stop build nothing.
            (
                "SELECT count(range(TIMESTAMP '1970-01-01', TIMESTAMP '2100-01-01', s)) FROM (VALUES (CAST(NULL AS INTERVAL))) t(s)",
                "0",
            ),
            ("SELECT cardinality(range(0, 100000000000, -1))", "0"),
        ] {
            assert_eq!(one(&ctx, sql).await.expect(sql), want, "{sql}");
        }
    }
}
