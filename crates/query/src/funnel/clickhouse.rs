//! `window_funnel(window, mode, timestamp, cond1, …, condN)`: ClickHouse's
//! `windowFunnel`, as its documentation and source define it.
//!
//! Rows are taken in time order (rows with equal timestamps in the order
//! they were read; a row matching several conditions counts as one event
//! per condition, the highest condition first, so it cannot advance two
//! levels at once). Level `k` records the first timestamp of the chain
//! that reached it and the timestamp it was reached at. An event of
//! condition 1 starts a chain (overwriting level 1); an event of
//! condition `i > 1` extends the chain at level `i - 1` when it lies within
//! `window` of that chain's first event (inclusive). The result is the
//! highest level reached, 0 when condition 1 never matched.
//!
//! Modes (comma-separated, any combination):
//! - `strict_deduplication`: an event whose level was already reached
//!   ends the scan; the result is the level of the event before it.
//! - `strict_order`: no other event may come between the chain's events:
//!   after the first condition-1 event, an event matching no condition
//!   ends the scan, and so does an event whose previous level is not
//!   reached (the result is then the first unreached level).
//! - `strict_increase`: consecutive steps need strictly increasing
//!   timestamps.
//!
//! ClickHouse's `strict_once` and `allow_reentry` are refused, as is its
//! old `strict` (as ClickHouse does).

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt8Array};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

use super::{
    coerce_args, mode_arg, state_fields, window_arg, Evaluate, Event, Events, Single, Window,
};

/// The modes of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modes {
    /// `strict_deduplication`.
    pub strict_deduplication: bool,
    /// `strict_order`.
    pub strict_order: bool,
    /// `strict_increase`.
    pub strict_increase: bool,
}

impl Modes {
    /// Parse the mode string (`''` is the default; options separated by
    /// commas or spaces).
    pub fn parse(s: &str) -> std::result::Result<Modes, String> {
        let mut m = Modes::default();
        for opt in s.split([',', ' ']).map(str::trim).filter(|o| !o.is_empty()) {
            match opt {
                "strict_deduplication" => m.strict_deduplication = true,
                "strict_order" => m.strict_order = true,
                "strict_increase" => m.strict_increase = true,
                "strict" => {
                    return Err(
                        "window_funnel: 'strict' is replaced with 'strict_deduplication'".into(),
                    )
                }
                "strict_once" | "allow_reentry" => {
                    return Err(format!(
                        "window_funnel: mode '{opt}' is not supported (modes: strict_order, strict_deduplication, strict_increase)"
                    ))
                }
                other => {
                    return Err(format!(
                        "window_funnel: unknown mode '{other}' (modes: strict_order, strict_deduplication, strict_increase)"
                    ))
                }
            }
        }
        Ok(m)
    }
}

/// The level one group reached. `events` are sorted by time; `n` is the
/// number of conditions.
pub fn level(events: &[Event], n: usize, window: Window, modes: Modes) -> u8 {
    if events.is_empty() {
        return 0;
    }
    if n == 1 && !modes.strict_order {
        return 1; // only rows that matched condition 1 are kept
    }
    // (first timestamp of the chain, timestamp of this level)
    let mut reached: [Option<(i64, i64)>; super::MAX_CONDITIONS] = [None; super::MAX_CONDITIONS];
    let mut first_event = false;
    let mut previous_type: usize = 0; // 1-based condition of the previous event, 0 = none
    let first_unreached = |reached: &[Option<(i64, i64)>]| -> u8 {
        (0..n).find(|&l| reached[l].is_none()).unwrap_or(n) as u8
    };
    for e in events {
        // One event per condition the row matched, highest first; an
        // unmatched row (kept for strict_order) is one event of type 0.
        let mut bits = e.mask;
        let unmatched = bits == 0;
        loop {
            let idx: Option<usize> = if unmatched {
                None
            } else if bits == 0 {
                break;
            } else {
                let hi = 31 - bits.leading_zeros() as usize;
                bits &= !(1u32 << hi);
                Some(hi)
            };
            let this_type = idx.map_or(0, |i| i + 1);
            match idx {
                None => {
                    if modes.strict_order && first_event {
                        return highest(&reached, n);
                    }
                }
                Some(0) => {
                    reached[0] = Some((e.ts, e.ts));
                    first_event = true;
                }
                Some(i) if modes.strict_deduplication && reached[i].is_some() => {
                    return previous_type as u8;
                }
                Some(i) if modes.strict_order && first_event && reached[i - 1].is_none() => {
                    return first_unreached(&reached);
                }
                Some(i) => {
                    if let Some((first, prev)) = reached[i - 1] {
                        let mut ok = e.ts <= window.end(first);
                        if modes.strict_increase {
                            ok = ok && prev < e.ts;
                        }
                        if ok {
                            reached[i] = Some((first, e.ts));
                            if i + 1 == n {
                                return n as u8;
                            }
                        }
                    }
                }
            }
            previous_type = this_type;
            if unmatched {
                break;
            }
        }
    }
    highest(&reached, n)
}

fn highest(reached: &[Option<(i64, i64)>], n: usize) -> u8 {
    (0..n)
        .rev()
        .find(|&l| reached[l].is_some())
        .map_or(0, |l| l as u8 + 1)
}

/// The evaluator of one call.
#[derive(Debug)]
struct Eval {
    window: Window,
    modes: Modes,
    conds: usize,
}

impl Evaluate for Eval {
    fn keep_unmatched(&self) -> bool {
        self.modes.strict_order
    }

    fn evaluate(&self, groups: &mut dyn Iterator<Item = &[Event]>, n: usize) -> Result<ArrayRef> {
        let mut out = Vec::with_capacity(n);
        for g in groups {
            out.push(level(g, self.conds, self.window, self.modes));
        }
        Ok(Arc::new(UInt8Array::from(out)))
    }
}

/// The `window_funnel` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnel {
    signature: Signature,
}

impl WindowFunnel {
    /// The function, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(WindowFunnel {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }

    fn eval(args: &AccumulatorArgs) -> Result<Arc<Eval>> {
        let (window, _) = window_arg(args)?;
        let modes = match Modes::parse(&mode_arg(args)?) {
            Ok(m) => m,
            Err(e) => return plan_err!("{e}"),
        };
        Ok(Arc::new(Eval {
            window,
            modes,
            conds: args.exprs.len().saturating_sub(3),
        }))
    }
}

impl AggregateUDFImpl for WindowFunnel {
    fn name(&self) -> &str {
        "window_funnel"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_args(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt8)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, _data_type: &DataType) -> Result<datafusion::common::ScalarValue> {
        Ok(datafusion::common::ScalarValue::UInt8(Some(0)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, ListArray, TimestampMicrosecondArray};
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::{DataType, Field};
    use datafusion::logical_expr::EmitTo;

    /// Two conditions, a window of 10, default modes.
    fn two_steps_within_10() -> Arc<Eval> {
        Arc::new(Eval {
            window: Window {
                months: 0,
                length: 10,
            },
            modes: Modes::default(),
            conds: 2,
        })
    }

    /// Emitting the first groups leaves the others intact (renumbered).
    #[test]
    fn emit_first_keeps_the_remaining_groups() {
        let eval = two_steps_within_10();
        let mut acc = Events::new(eval, 2);
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3, 4, 30]));
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![true, true, false, true, false]));
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![false, false, true, false, true]));
        let unused: ArrayRef = Arc::new(BooleanArray::from(vec![false; 5]));
        // groups: 0 = rows 0 and 2 (a then b: 2), 1 = row 1 (a: 1),
        // 2 = rows 3 and 4 (a, then b too late: 1)
        acc.update_batch(
            &[Arc::clone(&unused), unused, ts, a, b],
            &[0, 1, 0, 2, 2],
            None,
            3,
        )
        .expect("update");
        let first = acc.evaluate(EmitTo::First(1)).expect("first");
        assert_eq!(levels(&first), Some(vec![2]));
        let rest = acc.evaluate(EmitTo::All).expect("rest");
        assert_eq!(levels(&rest), Some(vec![1, 1]));
    }

    fn levels(a: &ArrayRef) -> Option<Vec<u8>> {
        a.as_any()
            .downcast_ref::<UInt8Array>()
            .map(|a| a.values().to_vec())
    }

    /// States merged from two partial accumulators (kept as spans until
    /// taken) give the levels of one accumulator that saw every row,
    /// emitted in two steps; a malformed state is refused and adds nothing.
    #[test]
    fn merged_states_emit_in_steps_and_bad_states_change_nothing() {
        let eval = two_steps_within_10();
        let batch = |ts: Vec<i64>, a: Vec<bool>, b: Vec<bool>| -> Vec<ArrayRef> {
            let n = ts.len();
            let unused: ArrayRef = Arc::new(BooleanArray::from(vec![false; n]));
            vec![
                Arc::clone(&unused),
                unused,
                Arc::new(TimestampMicrosecondArray::from(ts)),
                Arc::new(BooleanArray::from(a)),
                Arc::new(BooleanArray::from(b)),
            ]
        };
        // Partial 1 sees group 0's step 1 and group 1's step 1; partial 2
        // sees group 0's step 2 (in time, level 2) and group 1's step 2
        // (too late, level 1), and group 2's step 1 only.
        let mut p1 = Events::new(Arc::clone(&eval), 2);
        p1.update_batch(
            &batch(vec![5, 1], vec![true, true], vec![false, false]),
            &[0, 1],
            None,
            2,
        )
        .expect("update 1");
        let mut p2 = Events::new(Arc::clone(&eval), 2);
        p2.update_batch(
            &batch(
                vec![30, 9, 3],
                vec![false, false, true],
                vec![true, true, false],
            ),
            &[0, 1, 2],
            None,
            3,
        )
        .expect("update 2");
        let s1 = p1.state(EmitTo::All).expect("state 1");
        let s2 = p2.state(EmitTo::All).expect("state 2");
        // In the final stage, p2's group 0 is p1's group 1 and vice versa.
        let mut fin = Events::new(Arc::clone(&eval), 2);
        fin.merge_batch(&s1, &[0, 1], 2).expect("merge 1");
        fin.merge_batch(&s2, &[1, 0, 2], 3).expect("merge 2");
        // A state whose lists differ in length is refused, and adds no row.
        let bad_mask = Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::UInt32, false)),
            OffsetBuffer::new(vec![0, 1].into()),
            Arc::new(arrow::array::UInt32Array::from(vec![1u32])),
            None,
        )) as ArrayRef;
        let two_ts = Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Int64, false)),
            OffsetBuffer::new(vec![0, 2].into()),
            Arc::new(arrow::array::Int64Array::from(vec![100i64, 101])),
            None,
        )) as ArrayRef;
        assert!(fin.merge_batch(&[two_ts, bad_mask], &[0], 3).is_err());
        // group 0 = p1's group 0 (5) + p2's group 1 (9, step 2): level 2;
        // group 1 = p1's group 1 (1) + p2's group 0 (30, too late): 1;
        // group 2 = p2's group 2: 1.
        let first = fin.evaluate(EmitTo::First(1)).expect("first");
        assert_eq!(levels(&first), Some(vec![2]));
        let rest = fin.evaluate(EmitTo::All).expect("rest");
        assert_eq!(levels(&rest), Some(vec![1, 1]));
    }
}
