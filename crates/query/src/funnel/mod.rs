//! Funnels as DataFusion aggregate functions.
//!
//! Two functions, one buffer:
//!
//! - `window_funnel(window, mode, timestamp, cond1, …, condN)` — ClickHouse's
//!   `windowFunnel`: the number of consecutive conditions of the chain
//!   reached within `window` of the chain's first event (`UInt8`, 0..=N),
//!   with its modes `strict_order`, `strict_deduplication` and
//!   `strict_increase` ([`clickhouse`]).
//! - `funnel_path(window, options, timestamp, cond1, …)` — PostHog's funnel
//!   for one person: the furthest step reached in the `ordered`, `strict` or
//!   `unordered` order type, with exclusion steps, that path's step
//!   timestamps and the conversion times PostHog averages ([`posthog`]).
//!
//! Both keep, per group, the rows that matched a condition (every row for
//! the strict modes) as `(timestamp, condition bits)` in a vector of the
//! group's own ([`Events`]), never a `ScalarValue` per row: `update_batch`
//! turns the condition columns into a bit mask per row with one pass per
//! column and appends each row to its group; evaluation sorts a group by
//! timestamp only when it is not already in order (parts keep a person's
//! rows in time order), with a stable sort, so rows with equal timestamps
//! keep the order they were read in, as in ClickHouse. Small per-group
//! vectors come from the allocator's reused heap: a query does not fault
//! in fresh pages for one large buffer and its copies.
//!
//! The intermediate state (two-phase aggregation, and DataFusion's
//! skipping of partial aggregation when groups are many) is two lists per
//! group: the timestamps and the condition bits. Merging appends; the
//! result does not depend on how rows were split between partial states,
//! except for the order of rows with equal timestamps, which no order
//! defines.
//!
//! Invariants: the window and the mode are literals checked when the
//! accumulator is made (a bad one is a plan error naming the function, not
//! a panic); a row with a null timestamp is ignored; a null condition is
//! false.

pub mod clickhouse;
pub mod posthog;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, PrimitiveArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit, UInt32Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::expressions::Literal;

/// Most conditions (steps and exclusions together) a funnel takes, as in
/// ClickHouse.
pub const MAX_CONDITIONS: usize = 32;

/// A conversion window: whole calendar months, then a fixed length in the
/// timestamp's unit (microseconds for timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Calendar months (PostHog's `month` unit; ClickHouse's `INTERVAL n
    /// MONTH`).
    pub months: u32,
    /// The rest, in the timestamp's unit.
    pub length: i64,
}

impl Window {
    /// The last instant still inside the window of a chain that started
    /// at `first` (the bound is inclusive).
    pub fn end(&self, first: i64) -> i64 {
        let base = if self.months == 0 {
            first
        } else {
            match chrono::DateTime::from_timestamp_micros(first)
                .and_then(|d| d.checked_add_months(chrono::Months::new(self.months)))
            {
                Some(d) => d.timestamp_micros(),
                None => return i64::MAX,
            }
        };
        base.saturating_add(self.length)
    }
}

/// The time type the functions work in, after coercion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeKind {
    /// `Timestamp(Microsecond, _)`: windows are intervals.
    Micros,
    /// `Int64`: windows are integers in the same unit.
    Integer,
}

/// The coerced argument types: `(window, mode, timestamp, conds…)`.
pub(crate) fn coerce_args(name: &str, args: &[DataType]) -> Result<Vec<DataType>> {
    if args.len() < 4 {
        return plan_err!(
            "{name} takes (window, mode, timestamp, cond1[, cond2, …]): at least one condition"
        );
    }
    if args.len() - 3 > MAX_CONDITIONS {
        return plan_err!(
            "{name} takes at most {MAX_CONDITIONS} conditions, got {}",
            args.len() - 3
        );
    }
    let ts = match &args[2] {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Date32 | DataType::Date64 => DataType::Timestamp(TimeUnit::Microsecond, None),
        t if t.is_integer() => DataType::Int64,
        t => {
            return plan_err!(
                "{name}: the timestamp must be a timestamp, a date or an integer, not {t}"
            )
        }
    };
    let window = match (&args[0], &ts) {
        (DataType::Interval(u), DataType::Timestamp(..)) => DataType::Interval(*u),
        (t, DataType::Int64) if t.is_integer() => DataType::Int64,
        (t, DataType::Timestamp(..)) => {
            return plan_err!(
                "{name}: the window must be an INTERVAL (e.g. INTERVAL '7 days') when the timestamp is a timestamp, not {t}"
            )
        }
        (t, _) => {
            return plan_err!("{name}: the window must be an integer when the timestamp is an integer, not {t}")
        }
    };
    let mode = match &args[1] {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            DataType::Utf8
        }
        t => return plan_err!("{name}: the mode must be a string, not {t}"),
    };
    let mut out = vec![window, mode, ts];
    for (i, t) in args[3..].iter().enumerate() {
        match t {
            DataType::Boolean | DataType::Null => out.push(DataType::Boolean),
            t if t.is_integer() => out.push(DataType::Boolean),
            t => {
                return plan_err!(
                    "{name}: condition {} must be a boolean (or an integer), not {t}",
                    i + 1
                )
            }
        }
    }
    Ok(out)
}

/// The literal value of argument `i` (the window and the mode must be
/// constants).
pub(crate) fn literal(args: &AccumulatorArgs, i: usize, what: &str) -> Result<ScalarValue> {
    match args.exprs.get(i).and_then(|e| e.downcast_ref::<Literal>()) {
        Some(l) => Ok(l.value().clone()),
        None => plan_err!("{}: the {what} must be a constant", args.name),
    }
}

/// The window argument, in the unit of the timestamps.
pub(crate) fn window_arg(args: &AccumulatorArgs) -> Result<(Window, TimeKind)> {
    let name = args.name;
    let v = literal(args, 0, "window")?;
    let (window, kind) = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => (
            (
                i.months,
                i64::from(i.days) * 86_400_000_000 + i.nanoseconds / 1000,
            ),
            TimeKind::Micros,
        ),
        ScalarValue::IntervalDayTime(Some(i)) => (
            (
                0,
                i64::from(i.days) * 86_400_000_000 + i64::from(i.milliseconds) * 1000,
            ),
            TimeKind::Micros,
        ),
        ScalarValue::IntervalYearMonth(Some(m)) => ((m, 0), TimeKind::Micros),
        v if !v.is_null() && v.data_type().is_integer() => match v.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(n)) => ((0, n), TimeKind::Integer),
            _ => return plan_err!("{name}: the window is not an integer"),
        },
        v => {
            return plan_err!("{name}: the window must be a non-null INTERVAL or integer, not {v}")
        }
    };
    let (months, length) = window;
    if months < 0 || length < 0 {
        return plan_err!("{name}: the window must not be negative");
    }
    Ok((
        Window {
            months: months.unsigned_abs(),
            length,
        },
        kind,
    ))
}

/// The mode argument (`''` or null for the default).
pub(crate) fn mode_arg(args: &AccumulatorArgs) -> Result<String> {
    let v = literal(args, 1, "mode")?;
    if v.is_null() {
        return Ok(String::new());
    }
    match v.try_as_str() {
        Some(Some(s)) => Ok(s.to_string()),
        _ => plan_err!("{}: the mode must be a string", args.name),
    }
}

/// One buffered row: its timestamp and which conditions it matched (bit
/// `i` for condition `i + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The timestamp (microseconds, or the integer given).
    pub ts: i64,
    /// Bit `i` set when condition `i + 1` was true.
    pub mask: u32,
}

impl Event {
    /// A row (for calling the per-group functions directly).
    pub fn new(ts: i64, mask: u32) -> Event {
        Event { ts, mask }
    }
}

/// How a funnel turns one group's rows (sorted by time) into its result.
pub(crate) trait Evaluate: Send + Sync + std::fmt::Debug + 'static {
    /// Whether rows matching no condition are kept (the strict modes).
    fn keep_unmatched(&self) -> bool;
    /// The result for each group, in group order; `events` are each
    /// group's rows sorted by timestamp.
    fn evaluate(&self, groups: &mut dyn Iterator<Item = &[Event]>, n: usize) -> Result<ArrayRef>;
}

/// The buffered rows of every group.
#[derive(Debug)]
pub(crate) struct Events<E: Evaluate> {
    eval: Arc<E>,
    /// Each group's rows, in the order read.
    groups: Vec<Vec<Event>>,
    /// Bytes the groups' vectors hold (kept as they grow, for `size`).
    bytes: usize,
    conds: usize,
}

/// The state's fields: timestamps and condition bits, a list per group.
pub(crate) fn state_fields(args: &StateFieldsArgs) -> Vec<FieldRef> {
    let item = |t: DataType| Arc::new(Field::new_list_field(t, false));
    vec![
        Arc::new(Field::new(
            format!("{}[timestamps]", args.name),
            DataType::List(item(DataType::Int64)),
            true,
        )),
        Arc::new(Field::new(
            format!("{}[conditions]", args.name),
            DataType::List(item(DataType::UInt32)),
            true,
        )),
    ]
}

/// The timestamps of a batch as raw `i64` (microseconds, or the integer).
fn timestamps(a: &ArrayRef) -> Result<PrimitiveArray<Int64Type>> {
    let raw = match a.data_type() {
        DataType::Int64 => Arc::clone(a),
        DataType::Timestamp(TimeUnit::Microsecond, _) => arrow::compute::cast(a, &DataType::Int64)?,
        t => return exec_err!("funnel: unexpected timestamp type {t} after coercion"),
    };
    Ok(raw.as_primitive::<Int64Type>().clone())
}

/// Each row's condition bits.
fn masks(conds: &[ArrayRef], rows: usize) -> Result<Vec<u32>> {
    let mut mask = vec![0u32; rows];
    for (i, c) in conds.iter().enumerate() {
        let b: &BooleanArray = match c.as_boolean_opt() {
            Some(b) => b,
            None => return exec_err!("funnel: condition {} is not boolean", i + 1),
        };
        let bit = 1u32 << i;
        // Set bits of (value AND valid): nulls are false.
        let values = match b.nulls() {
            Some(n) => b.values() & n.inner(),
            None => b.values().clone(),
        };
        for r in values.set_indices() {
            mask[r] |= bit;
        }
    }
    Ok(mask)
}

impl<E: Evaluate> Events<E> {
    pub(crate) fn new(eval: Arc<E>, conds: usize) -> Self {
        Events {
            eval,
            groups: Vec::new(),
            bytes: 0,
            conds,
        }
    }

    /// Make room for `n` groups.
    fn reserve_groups(&mut self, n: usize) {
        if self.groups.len() < n {
            self.groups.resize_with(n, Vec::new);
        }
    }

    /// Append `e` to group `g`.
    fn push(&mut self, g: usize, e: Event) -> Result<()> {
        let Some(v) = self.groups.get_mut(g) else {
            return exec_err!("funnel: group {g} out of range");
        };
        let before = v.capacity();
        v.push(e);
        self.bytes += (v.capacity() - before) * std::mem::size_of::<Event>();
        Ok(())
    }

    /// Append a batch's rows (`values` = all the function's arguments).
    fn add(
        &mut self,
        values: &[ArrayRef],
        group: &dyn Fn(usize) -> usize,
        filter: Option<&BooleanArray>,
    ) -> Result<()> {
        let Some(ts_col) = values.get(2) else {
            return exec_err!("funnel: missing the timestamp argument");
        };
        let ts = timestamps(ts_col)?;
        let conds = &values[3..];
        if conds.len() != self.conds {
            return exec_err!(
                "funnel: {} conditions, expected {}",
                conds.len(),
                self.conds
            );
        }
        let mask = masks(conds, ts.len())?;
        let keep_all = self.eval.keep_unmatched();
        for (r, &m) in mask.iter().enumerate() {
            if (m == 0 && !keep_all) || ts.is_null(r) {
                continue;
            }
            if let Some(f) = filter {
                if !f.is_valid(r) || !f.value(r) {
                    continue;
                }
            }
            self.push(group(r), Event::new(ts.value(r), m))?;
        }
        Ok(())
    }

    /// Take the groups `emit_to` names (the others are renumbered from 0),
    /// in the order their rows were read (a state is merged and sorted
    /// later; [`Events::evaluate_taken`] sorts).
    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<Event>> {
        let taken = emit_to.take_needed(&mut self.groups);
        let freed: usize = taken.iter().map(Vec::capacity).sum();
        self.bytes = self
            .bytes
            .saturating_sub(freed * std::mem::size_of::<Event>());
        taken
    }

    /// The result of each taken group, its rows sorted by time first.
    fn evaluate_taken(&self, mut groups: Vec<Vec<Event>>) -> Result<ArrayRef> {
        for g in &mut groups {
            if !g.is_sorted_by_key(|e| e.ts) {
                g.sort_by_key(|e| e.ts); // stable
            }
        }
        let mut it = groups.iter().map(Vec::as_slice);
        self.eval.evaluate(&mut it, groups.len())
    }

    fn state_of(groups: &[Vec<Event>]) -> Result<Vec<ArrayRef>> {
        let mut offsets = Vec::with_capacity(groups.len() + 1);
        offsets.push(0);
        let mut rows = 0;
        for g in groups {
            rows += g.len();
            offsets.push(rows);
        }
        let ts = Int64Array::from_iter_values(groups.iter().flatten().map(|e| e.ts));
        let mask = UInt32Array::from_iter_values(groups.iter().flatten().map(|e| e.mask));
        list_pair(ts, mask, &offsets)
    }

    fn merge(&mut self, values: &[ArrayRef], group: &dyn Fn(usize) -> usize) -> Result<()> {
        let (Some(ts), Some(mask)) = (values.first(), values.get(1)) else {
            return exec_err!("funnel: a state has two columns");
        };
        let (Some(ts), Some(mask)) = (ts.as_list_opt::<i32>(), mask.as_list_opt::<i32>()) else {
            return exec_err!("funnel: a state's columns are lists");
        };
        let (Some(tv), Some(mv)) = (
            ts.values().as_primitive_opt::<Int64Type>(),
            mask.values().as_primitive_opt::<UInt32Type>(),
        ) else {
            return exec_err!("funnel: a state's lists hold Int64 and UInt32");
        };
        let (to, mo) = (ts.value_offsets(), mask.value_offsets());
        for r in 0..ts.len() {
            if ts.is_null(r) {
                continue;
            }
            let (a, b) = (to[r] as usize, to[r + 1] as usize);
            if mo[r + 1] - mo[r] != to[r + 1] - to[r] {
                return exec_err!("funnel: a state's lists differ in length");
            }
            let m0 = mo[r] as usize;
            let g = group(r);
            let Some(v) = self.groups.get_mut(g) else {
                return exec_err!("funnel: group {g} out of range");
            };
            let before = v.capacity();
            let (ts, masks) = (&tv.values()[a..b], &mv.values()[m0..m0 + (b - a)]);
            v.extend(ts.iter().zip(masks).map(|(&t, &m)| Event::new(t, m)));
            self.bytes += (v.capacity() - before) * std::mem::size_of::<Event>();
        }
        Ok(())
    }
}

/// Two list columns sharing `offsets`.
fn list_pair(ts: Int64Array, mask: UInt32Array, offsets: &[usize]) -> Result<Vec<ArrayRef>> {
    let offs: Vec<i32> = offsets
        .iter()
        .map(|&o| i32::try_from(o))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            datafusion::error::DataFusionError::Execution(
                "funnel: a state holds more than 2^31 rows".into(),
            )
        })?;
    let offs = OffsetBuffer::new(offs.into());
    let ts = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Int64, false)),
        offs.clone(),
        Arc::new(ts),
        None,
    )?;
    let mask = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::UInt32, false)),
        offs,
        Arc::new(mask),
        None,
    )?;
    Ok(vec![Arc::new(ts), Arc::new(mask)])
}

impl<E: Evaluate> GroupsAccumulator for Events<E> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.reserve_groups(total_num_groups);
        self.add(values, &|r| group_indices[r], opt_filter)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.take(emit_to);
        self.evaluate_taken(groups)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.take(emit_to);
        Self::state_of(&groups)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.reserve_groups(total_num_groups);
        self.merge(values, &|r| group_indices[r])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row its own group: a list of one row, or empty.
        let rows = values.first().map_or(0, |v| v.len());
        let mut one = Events::new(Arc::clone(&self.eval), self.conds);
        one.reserve_groups(rows);
        one.add(values, &|r| r, opt_filter)?;
        Self::state_of(&one.groups)
    }

    fn size(&self) -> usize {
        self.bytes
            + self.groups.capacity() * std::mem::size_of::<Vec<Event>>()
            + std::mem::size_of::<Self>()
    }
}

/// The same buffer for an aggregate without `GROUP BY` (one group).
#[derive(Debug)]
pub(crate) struct Single<E: Evaluate>(pub(crate) Events<E>);

impl<E: Evaluate> Accumulator for Single<E> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0.reserve_groups(1);
        self.0.add(values, &|_| 0, None)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.reserve_groups(1);
        let groups = self.0.take(EmitTo::All);
        let a = self.0.evaluate_taken(groups)?;
        ScalarValue::try_from_array(&a, 0)
    }

    fn size(&self) -> usize {
        self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.reserve_groups(1);
        let groups = self.0.take(EmitTo::All);
        let cols = Events::<E>::state_of(&groups)?;
        // Keep the rows: state() may be followed by more updates.
        self.0.bytes = groups
            .iter()
            .map(|g| g.capacity() * std::mem::size_of::<Event>())
            .sum();
        self.0.groups = groups;
        cols.iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0.reserve_groups(1);
        self.0.merge(states, &|_| 0)
    }
}

/// Register `window_funnel` and `funnel_path` on a session.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udaf(clickhouse::WindowFunnel::udaf());
    ctx.register_udaf(posthog::FunnelPath::udaf());
}
