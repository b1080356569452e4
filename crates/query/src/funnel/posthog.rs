//! `funnel_path(window, options, timestamp, cond1, …)`: PostHog's funnel
//! for one person (or one person and breakdown value: whatever the
//! `GROUP BY` is).
//!
//! `options` is the order type — `ordered` (also `''`), `strict` or
//! `unordered` — followed by exclusions, separated by `;`:
//! `'ordered; exclude 0-1; exclude 1-2'`. Each `exclude F-T` (steps
//! counted from 0, as PostHog's `funnel_from_step`/`funnel_to_step`)
//! consumes one condition from the end of the argument list, in order;
//! the conditions before them are the steps.
//!
//! Every row matching step 1 is an anchor of a path (in an unordered
//! funnel, every row matching any step is an anchor of the rotation that
//! starts with that step):
//!
//! - **ordered**: step `i` is the first row after step `i - 1`'s row
//!   (rows in time order, equal timestamps in the order read) that matches
//!   it; a step counts if its timestamp is at most `window` after the
//!   anchor's (the bound is inclusive). Other rows may come between.
//! - **strict**: step `i` must be the row immediately after step `i - 1`'s
//!   (pass every row of the person, not only the steps': any other row
//!   breaks the chain), within the window.
//! - **unordered**: each other step counts when it occurs strictly after
//!   the anchor's timestamp and within the window; the path's steps are 1
//!   plus their number.
//! - **exclusions**: a path is dropped when an exclusion row lies strictly
//!   between its step `F` and its step `T` (or, if it did not reach `T`,
//!   the end of the window counted from step `F`); in an unordered funnel
//!   between the anchor and the last step (or the end of the window).
//!
//! The result is a struct: `steps`, the most steps any path reached (0
//! when no path is left); `timestamps`, the step timestamps of the first
//! path that reached them; and, per step after the first, the average and
//! the median over every path that reached `steps` of the time from the
//! previous step (`conversion_times`, `conversion_medians`, in seconds for
//! timestamps; in an unordered funnel the gaps between the sorted step
//! timestamps). That is what PostHog keeps per person: its attempts that
//! got furthest (an incomplete retry does not count).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, ListBuilder, StructArray, UInt8Array};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

use super::{
    coerce_args, mode_arg, state_fields, window_arg, Evaluate, Event, Events, Single, TimeKind,
    Window,
};

/// PostHog's funnel order types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Steps in order; other events may come between.
    Ordered,
    /// Steps in order, each the event right after the previous.
    Strict,
    /// Steps in any order.
    Unordered,
}

/// An exclusion: its condition's bit and the steps it lies between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusion {
    /// Step it starts at (0-based).
    pub from: usize,
    /// Step it ends at (0-based).
    pub to: usize,
}

/// The parsed `options` of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The order type.
    pub order: Order,
    /// The exclusions, in the order of their conditions.
    pub exclusions: Vec<Exclusion>,
}

impl Options {
    /// Parse `options` for a call with `conds` conditions in all.
    pub fn parse(s: &str, conds: usize) -> std::result::Result<Options, String> {
        let mut parts = s.split(';').map(str::trim);
        let order = match parts.next().unwrap_or("") {
            "" | "ordered" => Order::Ordered,
            "strict" => Order::Strict,
            "unordered" => Order::Unordered,
            other => {
                return Err(format!(
                    "funnel_path: unknown order type '{other}' (ordered, strict, unordered)"
                ))
            }
        };
        let mut exclusions = Vec::new();
        for p in parts.filter(|p| !p.is_empty()) {
            let range = p.strip_prefix("exclude").map(str::trim);
            let parsed = range.and_then(|r| {
                let (a, b) = r.split_once('-')?;
                Some((
                    a.trim().parse::<usize>().ok()?,
                    b.trim().parse::<usize>().ok()?,
                ))
            });
            let Some((from, to)) = parsed else {
                return Err(format!(
                    "funnel_path: '{p}' is not an exclusion (write 'exclude FROM-TO', steps counted from 0)"
                ));
            };
            exclusions.push(Exclusion { from, to });
        }
        if exclusions.len() >= conds {
            return Err("funnel_path: no condition is left for the steps".into());
        }
        let steps = conds - exclusions.len();
        for x in &exclusions {
            if x.to <= x.from {
                return Err(
                    "Exclusion event range is invalid. End of range should be greater than start."
                        .into(),
                );
            }
            if x.from >= steps {
                return Err("Exclusion event range is invalid. Start of range is greater than number of steps.".into());
            }
            if x.to >= steps {
                return Err("Exclusion event range is invalid. End of range is greater than number of steps.".into());
            }
            if order == Order::Unordered && (x.from != 0 || x.to != steps - 1) {
                return Err("Partial Exclusions not allowed in unordered funnels".into());
            }
        }
        Ok(Options { order, exclusions })
    }

    /// The number of steps.
    pub fn steps(&self, conds: usize) -> usize {
        conds - self.exclusions.len()
    }
}

/// One person's funnel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Most steps reached by a path that was not excluded.
    pub steps: usize,
    /// The step timestamps of the first path that reached `steps`.
    pub timestamps: Vec<i64>,
    /// Per step after the first: the average time from the previous step
    /// over the paths that reached `steps` (in timestamp units).
    pub conversion_times: Vec<f64>,
    /// The same, median (the midpoint of the two middle values).
    pub conversion_medians: Vec<f64>,
}

/// Scratch space reused across persons.
#[derive(Debug, Default)]
pub struct Scratch {
    next: Vec<u32>,
    excluded: Vec<Vec<i64>>,
    gaps: Vec<Vec<i64>>,
}

/// The funnel of one person. `events` are sorted by time; `window` is in
/// their unit.
pub fn person(
    events: &[Event],
    opts: &Options,
    conds: usize,
    window: Window,
    s: &mut Scratch,
) -> Outcome {
    let n = opts.steps(conds);
    let len = events.len();
    // next[i * (len + 1) + p]: the first position >= p matching step i.
    s.next.clear();
    s.next.resize(n * (len + 1), len as u32);
    for i in 0..n {
        let row = &mut s.next[i * (len + 1)..(i + 1) * (len + 1)];
        for p in (0..len).rev() {
            row[p] = if events[p].mask & (1 << i) != 0 {
                p as u32
            } else {
                row[p + 1]
            };
        }
    }
    s.excluded.resize(opts.exclusions.len(), Vec::new());
    for (k, x) in s.excluded.iter_mut().enumerate() {
        x.clear();
        let bit = 1u32 << (n + k);
        x.extend(events.iter().filter(|e| e.mask & bit != 0).map(|e| e.ts));
    }
    // Per step after the first: the gaps of the paths that got furthest.
    let mut gaps = std::mem::take(&mut s.gaps);
    gaps.resize(n.saturating_sub(1), Vec::new());
    for g in gaps.iter_mut() {
        g.clear();
    }
    let next = |i: usize, p: usize| s.next[i * (len + 1) + p] as usize;
    let between = |k: usize, a: i64, b: i64| -> bool {
        let xs = &s.excluded[k];
        let i = xs.partition_point(|&t| t <= a);
        i < xs.len() && xs[i] < b
    };

    let mut best = 0usize;
    let mut best_times: Vec<i64> = Vec::new();
    let mut times = [0i64; super::MAX_CONDITIONS];

    for p0 in 0..len {
        let m = events[p0].mask;
        let anchors: u32 = match opts.order {
            // Any of the n steps (n may be 32: a shift by 32 overflows).
            Order::Unordered => {
                m & u32::MAX
                    .checked_shr(32u32.saturating_sub(n as u32))
                    .unwrap_or(0)
            }
            _ => m & 1,
        };
        let mut a_bits = anchors;
        while a_bits != 0 {
            let first_step = a_bits.trailing_zeros() as usize;
            a_bits &= a_bits - 1;
            let t0 = events[p0].ts;
            let end = window.end(t0);
            times[0] = t0;
            let mut steps = 1usize;
            match opts.order {
                Order::Ordered => {
                    let mut p = p0;
                    for (i, t) in times.iter_mut().enumerate().take(n).skip(1) {
                        let q = next(i, p + 1);
                        if q >= len || events[q].ts > end {
                            break;
                        }
                        *t = events[q].ts;
                        p = q;
                        steps += 1;
                    }
                }
                Order::Strict => {
                    for (i, t) in times.iter_mut().enumerate().take(n).skip(1) {
                        let q = p0 + i;
                        if q >= len || events[q].mask & (1 << i) == 0 || events[q].ts > end {
                            break;
                        }
                        *t = events[q].ts;
                        steps += 1;
                    }
                }
                Order::Unordered => {
                    let after = p0 + events[p0..].partition_point(|e| e.ts <= t0);
                    for j in (0..n).filter(|&j| j != first_step) {
                        let q = next(j, after);
                        if q < len && events[q].ts <= end {
                            times[steps] = events[q].ts;
                            steps += 1;
                        }
                    }
                    times[..steps].sort_unstable();
                }
            }
            // Exclusions.
            let excluded = opts.exclusions.iter().enumerate().any(|(k, x)| {
                let (from, to) = match opts.order {
                    Order::Unordered => (0, n - 1),
                    _ => (x.from, x.to),
                };
                if steps <= from {
                    return false;
                }
                let a = times[from];
                let b = if steps > to { times[to] } else { window.end(a) };
                between(k, a, b)
            });
            if excluded || steps < best {
                continue;
            }
            if steps > best {
                best = steps;
                best_times.clear();
                best_times.extend_from_slice(&times[..steps]);
                for g in gaps.iter_mut() {
                    g.clear();
                }
            }
            for i in 1..steps {
                gaps[i - 1].push(times[i].saturating_sub(times[i - 1]));
            }
        }
    }
    let mut out = Outcome {
        steps: best,
        timestamps: best_times,
        ..Outcome::default()
    };
    for g in gaps.iter_mut().take(best.saturating_sub(1)) {
        if g.is_empty() {
            break;
        }
        let sum: f64 = g.iter().map(|&v| v as f64).sum();
        out.conversion_times.push(sum / g.len() as f64);
        g.sort_unstable();
        let mid = g.len() / 2;
        out.conversion_medians.push(if g.len() % 2 == 1 {
            g[mid] as f64
        } else {
            (g[mid - 1] as f64 + g[mid] as f64) / 2.0
        });
    }
    s.gaps = gaps;
    out
}

/// The evaluator of one call.
#[derive(Debug)]
struct Eval {
    window: Window,
    opts: Options,
    conds: usize,
    kind: TimeKind,
    return_type: DataType,
}

/// The struct `funnel_path` returns, for timestamps of type `ts`.
fn output_type(ts: &DataType) -> DataType {
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
    DataType::Struct(Fields::from(vec![
        Field::new("steps", DataType::UInt8, false),
        Field::new("timestamps", list(ts.clone()), false),
        Field::new("conversion_times", list(DataType::Float64), false),
        Field::new("conversion_medians", list(DataType::Float64), false),
    ]))
}

impl Evaluate for Eval {
    fn keep_unmatched(&self) -> bool {
        self.opts.order == Order::Strict
    }

    fn evaluate(&self, groups: &mut dyn Iterator<Item = &[Event]>, n: usize) -> Result<ArrayRef> {
        let DataType::Struct(fields) = &self.return_type else {
            return datafusion::common::exec_err!("funnel_path: the return type is a struct");
        };
        // Seconds for timestamps (a division, exact for whole seconds).
        let unit = match self.kind {
            TimeKind::Micros => 1e6,
            TimeKind::Integer => 1.0,
        };
        let mut steps = Vec::with_capacity(n);
        let mut ts = ListBuilder::new(Int64Builder::new());
        let mut avg = ListBuilder::new(Float64Builder::new());
        let mut med = ListBuilder::new(Float64Builder::new());
        let mut scratch = Scratch::default();
        for g in groups {
            let o = person(g, &self.opts, self.conds, self.window, &mut scratch);
            steps.push(o.steps as u8);
            ts.values().append_slice(&o.timestamps);
            ts.append(true);
            for v in &o.conversion_times {
                avg.values().append_value(v / unit);
            }
            avg.append(true);
            for v in &o.conversion_medians {
                med.values().append_value(v / unit);
            }
            med.append(true);
        }
        let ts: ArrayRef = Arc::new(ts.finish());
        let ts = arrow::compute::cast(&ts, fields[1].data_type())?;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from(steps)),
            ts,
            Arc::new(avg.finish()),
            Arc::new(med.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(fields.clone(), cols, None)?))
    }
}

/// The `funnel_path` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FunnelPath {
    signature: Signature,
}

impl FunnelPath {
    /// The function, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(FunnelPath {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }

    fn eval(args: &AccumulatorArgs) -> Result<Arc<Eval>> {
        let (window, kind) = window_arg(args)?;
        let conds = args.exprs.len().saturating_sub(3);
        let opts = match Options::parse(&mode_arg(args)?, conds) {
            Ok(o) => o,
            Err(e) => return plan_err!("{e}"),
        };
        Ok(Arc::new(Eval {
            window,
            opts,
            conds,
            kind,
            return_type: args.return_field.data_type().clone(),
        }))
    }
}

impl AggregateUDFImpl for FunnelPath {
    fn name(&self) -> &str {
        "funnel_path"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_args(self.name(), arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let ts = match arg_types.get(2) {
            Some(DataType::Timestamp(_, tz)) => {
                DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
            }
            Some(DataType::Date32 | DataType::Date64) => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            _ => DataType::Int64,
        };
        Ok(output_type(&ts))
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let eval = Self::eval(&args)?;
        let conds = eval.conds;
        Ok(Box::new(Single(Events::new(eval, conds))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(&args))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let eval = Self::eval(&args)?;
        let conds = eval.conds;
        Ok(Box::new(Events::new(eval, conds)))
    }
}
