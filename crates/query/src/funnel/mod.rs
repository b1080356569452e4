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
//! Both keep the rows that matched a condition (every row for the strict
//! modes) as `(group, timestamp, condition bits)` in one buffer, in the
//! order read ([`Events`]), never a `ScalarValue` per row: `update_batch`
//! turns the condition columns into a bit mask per row with one pass per
//! column and appends each row; emitting groups puts each group's rows
//! together once (a counting sort by group, keeping the read order);
//! evaluation sorts a group by timestamp only when it is not already in
//! order (parts keep a person's rows in time order and scans read a
//! project's parts in time order), with a stable sort, so rows with equal
//! timestamps keep the order they were read in, as in ClickHouse.
//!
//! The intermediate state (two-phase aggregation, and DataFusion's
//! skipping of partial aggregation when groups are many) is two lists per
//! group: the timestamps and the condition bits. Merging records where
//! each group's list lies in the incoming state arrays (which are kept
//! until their groups are emitted; emitting only the first groups copies
//! the others' rows into the buffer and drops the arrays); the result does
//! not depend on how rows were split between partial states, except for
//! the order of rows with equal timestamps, which no order defines.
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

/// `days` and `micros` as µs (an error past ±292,000 years).
fn micros(name: &str, days: i32, micros: i64) -> Result<i64> {
    match i64::from(days)
        .checked_mul(86_400_000_000)
        .and_then(|d| d.checked_add(micros))
    {
        Some(m) => Ok(m),
        None => plan_err!("{name}: the window is too long"),
    }
}

/// The window argument, in the unit of the timestamps.
pub(crate) fn window_arg(args: &AccumulatorArgs) -> Result<(Window, TimeKind)> {
    let name = args.name;
    let v = literal(args, 0, "window")?;
    let (window, kind) = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => (
            (i.months, micros(name, i.days, i.nanoseconds / 1000)?),
            TimeKind::Micros,
        ),
        ScalarValue::IntervalDayTime(Some(i)) => (
            (0, micros(name, i.days, i64::from(i.milliseconds) * 1000)?),
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

/// One buffered row with its group.
#[derive(Debug, Clone, Copy)]
struct Row {
    group: u32,
    mask: u32,
    ts: i64,
}

/// Rows per chunk of the buffer (1 MiB): the buffer grows by chunks, so
/// that growing never copies what was read.
const CHUNK_ROWS: usize = 1 << 16;

/// The buffered rows of every group, in the order read.
///
/// Rows are appended to one buffer (chunks of [`CHUNK_ROWS`]) with their
/// group index, never to a vector per group: appending is sequential
/// whatever the group, nothing is reallocated, and 100k groups cost no
/// 100k allocations. Grouping happens once, when groups are emitted
/// ([`Events::take`], a counting sort by group that keeps the read order
/// within a group).
#[derive(Debug)]
pub(crate) struct Events<E: Evaluate> {
    eval: Arc<E>,
    chunks: Vec<Vec<Row>>,
    /// Merged states' values (timestamps, condition bits), kept as they
    /// came: a merge records where each group's list is ([`Span`]) and
    /// copies nothing until the groups are taken.
    states: Vec<StateValues>,
    /// Bytes of the kept states' rows that spans refer to.
    state_bytes: usize,
    spans: Vec<Span>,
    /// Groups known (the highest `total_num_groups` seen).
    groups: usize,
    conds: usize,
}

/// Bytes of a state's row (timestamp and bits), for [`Events::size`].
const ROW_STATE_BYTES: usize = std::mem::size_of::<i64>() + std::mem::size_of::<u32>();

/// One merged list: `len` rows of group `group` at `ts_at` / `mask_at` of
/// `states[state]`.
#[derive(Debug, Clone, Copy)]
struct Span {
    group: u32,
    state: u32,
    ts_at: u32,
    mask_at: u32,
    len: u32,
}

/// A merged state's values: timestamps and condition bits.
type StateValues = (PrimitiveArray<Int64Type>, PrimitiveArray<UInt32Type>);

/// The timestamps and bits `sp` refers to in `states` (`None` only if the
/// span and its state disagree, which [`Events::merge`] rules out).
fn span_values<'a>(states: &'a [StateValues], sp: &Span) -> Option<(&'a [i64], &'a [u32])> {
    let (t0, m0, len) = (sp.ts_at as usize, sp.mask_at as usize, sp.len as usize);
    let (ts, mask) = states.get(sp.state as usize)?;
    Some((
        ts.values().get(t0..t0 + len)?,
        mask.values().get(m0..m0 + len)?,
    ))
}

/// Taken groups: group `g`'s rows are `rows[offsets[g]..offsets[g + 1]]`
/// of the placement `P` (events to evaluate, or a state's columns).
struct Grouped<P> {
    offsets: Vec<usize>,
    rows: P,
}

/// Where [`Events::take`] puts each group's rows.
trait Placement {
    /// Room for `n` rows.
    fn with_rows(n: usize) -> Self;
    /// Row `i` (< n).
    fn set(&mut self, i: usize, ts: i64, mask: u32);
    /// Rows `at..at + ts.len()` (`ts` and `mask` of one length).
    fn set_from(&mut self, at: usize, ts: &[i64], mask: &[u32]);
}

impl Placement for Vec<Event> {
    fn with_rows(n: usize) -> Self {
        vec![Event::new(0, 0); n]
    }

    fn set(&mut self, i: usize, ts: i64, mask: u32) {
        if let Some(e) = self.get_mut(i) {
            *e = Event::new(ts, mask);
        }
    }

    fn set_from(&mut self, at: usize, ts: &[i64], mask: &[u32]) {
        if let Some(out) = self.get_mut(at..at + ts.len()) {
            for ((e, &t), &m) in out.iter_mut().zip(ts).zip(mask) {
                *e = Event::new(t, m);
            }
        }
    }
}

/// A state's two list columns' values.
struct Columns {
    ts: Vec<i64>,
    mask: Vec<u32>,
}

impl Placement for Columns {
    fn with_rows(n: usize) -> Self {
        Columns {
            ts: vec![0; n],
            mask: vec![0; n],
        }
    }

    fn set(&mut self, i: usize, ts: i64, mask: u32) {
        if let (Some(t), Some(m)) = (self.ts.get_mut(i), self.mask.get_mut(i)) {
            *t = ts;
            *m = mask;
        }
    }

    fn set_from(&mut self, at: usize, ts: &[i64], mask: &[u32]) {
        let end = at + ts.len();
        if let (Some(t), Some(m)) = (self.ts.get_mut(at..end), self.mask.get_mut(at..end)) {
            t.copy_from_slice(ts);
            m.copy_from_slice(mask);
        }
    }
}

impl Grouped<Vec<Event>> {
    fn group_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn slices(&self) -> impl Iterator<Item = &[Event]> {
        self.offsets
            .windows(2)
            .map(|w| self.rows.get(w[0]..w[1]).unwrap_or_default())
    }
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
            chunks: Vec::new(),
            states: Vec::new(),
            state_bytes: 0,
            spans: Vec::new(),
            groups: 0,
            conds,
        }
    }

    /// Make room for `n` groups.
    fn reserve_groups(&mut self, n: usize) -> Result<()> {
        if n > u32::MAX as usize {
            return exec_err!("funnel: more than 2^32 groups");
        }
        self.groups = self.groups.max(n);
        Ok(())
    }

    /// Append a row (its group < `self.groups`, checked by the callers).
    fn push(&mut self, row: Row) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < c.capacity() => c.push(row),
            _ => {
                let mut c = Vec::with_capacity(CHUNK_ROWS);
                c.push(row);
                self.chunks.push(c);
            }
        }
    }

    fn group_of(&self, g: usize) -> Result<usize> {
        if g < self.groups {
            Ok(g)
        } else {
            exec_err!("funnel: group {g} out of range")
        }
    }

    /// Append a batch's rows (`values` = all the function's arguments).
    fn add(
        &mut self,
        values: &[ArrayRef],
        group: impl Fn(usize) -> usize,
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
            let g = self.group_of(group(r))?;
            self.push(Row {
                group: g as u32,
                mask: m,
                ts: ts.value(r),
            });
        }
        Ok(())
    }

    /// Take the groups `emit_to` names, each with its rows in the order
    /// read (the others stay, renumbered from 0). A counting sort: count
    /// each group's rows, then place each row after its group's earlier
    /// ones.
    fn take<P: Placement>(&mut self, emit_to: EmitTo) -> Grouped<P> {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(k) => k.min(self.groups),
        };
        let mut offsets = vec![0usize; n + 1];
        for r in self.chunks.iter().flatten() {
            if let Some(c) = offsets.get_mut(r.group as usize + 1) {
                *c += 1;
            }
        }
        for sp in &self.spans {
            if let Some(c) = offsets.get_mut(sp.group as usize + 1) {
                *c += sp.len as usize;
            }
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let total = offsets.last().copied().unwrap_or(0);
        let mut rows = P::with_rows(total);
        let mut next = offsets.clone();
        for r in self.chunks.iter().flatten() {
            if let Some(i) = next
                .get_mut(r.group as usize)
                .filter(|_| (r.group as usize) < n)
            {
                rows.set(*i, r.ts, r.mask);
                *i += 1;
            }
        }
        for sp in &self.spans {
            let g = sp.group as usize;
            if let (Some(i), Some((ts, mask))) = (
                next.get_mut(g).filter(|_| g < n),
                span_values(&self.states, sp),
            ) {
                rows.set_from(*i, ts, mask);
                *i += ts.len();
            }
        }
        if n == self.groups {
            self.chunks = Vec::new();
            self.states = Vec::new();
            self.state_bytes = 0;
            self.spans = Vec::new();
            self.groups = 0;
        } else {
            // Keep the later groups' rows, renumbered, and copy the rows
            // of their merged lists in after them (the order `take`
            // places them in), so that no state array outlives the
            // groups that refer to it.
            let n32 = n as u32;
            let chunks = std::mem::take(&mut self.chunks);
            for r in chunks.iter().flatten().filter(|r| r.group >= n32) {
                self.push(Row {
                    group: r.group - n32,
                    ..*r
                });
            }
            let (spans, states) = (
                std::mem::take(&mut self.spans),
                std::mem::take(&mut self.states),
            );
            for sp in spans.iter().filter(|sp| sp.group >= n32) {
                let Some((ts, mask)) = span_values(&states, sp) else {
                    continue;
                };
                for (&ts, &mask) in ts.iter().zip(mask) {
                    self.push(Row {
                        group: sp.group - n32,
                        mask,
                        ts,
                    });
                }
            }
            self.state_bytes = 0;
            self.groups -= n;
        }
        Grouped { offsets, rows }
    }

    /// The result of each taken group, its rows sorted by time first
    /// (stable: equal timestamps keep the order read).
    fn evaluate_taken(&self, mut taken: Grouped<Vec<Event>>) -> Result<ArrayRef> {
        for w in taken.offsets.windows(2) {
            if let Some(g) = taken.rows.get_mut(w[0]..w[1]) {
                if !g.is_sorted_by_key(|e| e.ts) {
                    g.sort_by_key(|e| e.ts);
                }
            }
        }
        let mut it = taken.slices();
        self.eval.evaluate(&mut it, taken.group_count())
    }

    fn state_of(taken: Grouped<Columns>) -> Result<Vec<ArrayRef>> {
        let Grouped { offsets, rows } = taken;
        list_pair(
            Int64Array::from(rows.ts),
            UInt32Array::from(rows.mask),
            &offsets,
        )
    }

    fn merge(&mut self, values: &[ArrayRef], group: impl Fn(usize) -> usize) -> Result<()> {
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
        if mask.len() != ts.len() {
            return exec_err!("funnel: a state's two columns differ in length");
        }
        let (to, mo) = (ts.value_offsets(), mask.value_offsets());
        let too_long = || {
            datafusion::error::DataFusionError::Execution(
                "funnel: a state holds more than 2^32 rows".into(),
            )
        };
        let state = u32::try_from(self.states.len()).map_err(|_| too_long())?;
        // The batch's spans are kept only when the whole batch is valid.
        let mut spans = Vec::with_capacity(ts.len());
        let mut rows = 0usize;
        for r in 0..ts.len() {
            if ts.is_null(r) {
                continue;
            }
            let (a, b) = (to[r] as usize, to[r + 1] as usize);
            let m0 = mo[r] as usize;
            if b < a
                || mo[r + 1] as usize != m0 + (b - a)
                || b > tv.len()
                || m0 + (b - a) > mv.len()
            {
                return exec_err!("funnel: a state's lists differ in length");
            }
            if a == b {
                continue;
            }
            spans.push(Span {
                group: self.group_of(group(r))? as u32,
                state,
                ts_at: u32::try_from(a).map_err(|_| too_long())?,
                mask_at: u32::try_from(m0).map_err(|_| too_long())?,
                len: u32::try_from(b - a).map_err(|_| too_long())?,
            });
            rows += b - a;
        }
        if !spans.is_empty() {
            self.spans.extend(spans);
            self.states.push((tv.clone(), mv.clone()));
            // The rows referenced (a state batch may be a slice of a larger
            // array, which is not ours to count many times over).
            self.state_bytes += rows * ROW_STATE_BYTES;
        }
        Ok(())
    }

    /// Every buffered row, as one group's (for [`Single`]).
    fn rows(&self) -> impl Iterator<Item = Event> + '_ {
        let merged = self.spans.iter().flat_map(|sp| {
            span_values(&self.states, sp)
                .into_iter()
                .flat_map(|(ts, mask)| ts.iter().zip(mask).map(|(&t, &m)| Event::new(t, m)))
        });
        self.chunks
            .iter()
            .flatten()
            .map(|r| Event::new(r.ts, r.mask))
            .chain(merged)
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
        self.reserve_groups(total_num_groups)?;
        self.add(values, |r| group_indices[r], opt_filter)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.take(emit_to);
        self.evaluate_taken(taken)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Self::state_of(self.take(emit_to))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.reserve_groups(total_num_groups)?;
        self.merge(values, |r| group_indices[r])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row its own group: a list of one row, or empty.
        let rows = values.first().map_or(0, |v| v.len());
        let mut one = Events::new(Arc::clone(&self.eval), self.conds);
        one.reserve_groups(rows)?;
        one.add(values, |r| r, opt_filter)?;
        Self::state_of(one.take(EmitTo::All))
    }

    fn size(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Row>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Row>>()
            + self.spans.capacity() * std::mem::size_of::<Span>()
            + self.state_bytes
            + std::mem::size_of::<Self>()
    }
}

/// The same buffer for an aggregate without `GROUP BY` (one group).
#[derive(Debug)]
pub(crate) struct Single<E: Evaluate>(pub(crate) Events<E>);

impl<E: Evaluate> Accumulator for Single<E> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0.reserve_groups(1)?;
        self.0.add(values, |_| 0, None)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.reserve_groups(1)?;
        let taken = self.0.take(EmitTo::All);
        let a = self.0.evaluate_taken(taken)?;
        ScalarValue::try_from_array(&a, 0)
    }

    fn size(&self) -> usize {
        self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // The rows stay: state() may be followed by more updates.
        let (ts, mask): (Vec<i64>, Vec<u32>) = self.0.rows().map(|e| (e.ts, e.mask)).unzip();
        let taken = Grouped {
            offsets: vec![0, ts.len()],
            rows: Columns { ts, mask },
        };
        let cols = Events::<E>::state_of(taken)?;
        cols.iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0.reserve_groups(1)?;
        self.0.merge(states, |_| 0)
    }
}

/// Register `window_funnel` and `funnel_path` on a session.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udaf(clickhouse::WindowFunnel::udaf());
    ctx.register_udaf(posthog::FunnelPath::udaf());
}
