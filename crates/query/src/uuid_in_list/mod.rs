//! [`UuidInLists`]: a physical optimizer rule that evaluates `c IN (…)`
//! over a 16-byte column (`person_id`, `uuid`: a UUID) with a hash set of
//! 128-bit integers, in filters.
//!
//! DataFusion's `IN` list of a `FixedSizeBinary` column falls to its
//! generic set: every row is hashed as bytes and compared through a
//! dynamic comparator. `SELECT count(*) FROM events WHERE person_id IN
//! (<100 UUIDs>)` reads every row of `person_id` (100 random persons have
//! rows in every row group, so neither statistics nor bloom filters prune),
//! and at 10M events the filter's compute was 47–58 ms of a query of
//! 56–105 ms on two cores (docs/benchmarks.md, "Lookups by person"). The person's activity, a subject-access export and the
//! verification after a purge all ask this.
//!
//! The rule replaces, inside the predicate of a `FilterExec`, an
//! `InListExpr` whose expression is a `FixedSizeBinary(16)` and whose list
//! holds only non-null 16-byte literals (what `person_id IN ('…', …)`
//! becomes once [`crate::uuid_sql`] has turned the text into bytes) with a
//! [`UuidInList`] of the same values: a set of `u128` behind a bitmap of
//! 65,536 slots, so a row not in the list costs one bit. So is a
//! comparison `=` or `<>` of such a column with one such literal (one
//! person's rows, and lists of up to 3 values, which DataFusion turns into
//! `OR`s of `=`), where DataFusion calls `memcmp` for every row. The scan's
//! own predicate, which prunes parts, row groups and pages, is left alone.
//!
//! Invariant: the same answer as the `IN` list (or the comparison), row
//! for row — true where the value is one of the list's, false where it is
//! not (negated for `NOT IN` and `<>`), null where the value is null (the
//! list holds no null, so a value not found is false, never null). A list
//! with a null, with values of another width or with anything but
//! literals is left to DataFusion. Shipped to another process
//! ([`crate::codec`]), it is encoded as the expression it replaced (the
//! whole list, also after its children were replaced), which the other
//! side evaluates with DataFusion's own kernels.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{HashSet, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, InListExpr, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::ExecutionPlan;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct UuidInLists;

impl PhysicalOptimizerRule for UuidInLists {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let schema = filter.input().schema();
            let predicate = Arc::clone(filter.predicate()).transform_up(|e| {
                Ok(match UuidInList::replacing(&e, &schema)? {
                    Some(set) => Transformed::yes(Arc::new(set) as Arc<dyn PhysicalExpr>),
                    None => Transformed::no(e),
                })
            })?;
            if !predicate.transformed {
                return Ok(Transformed::no(node));
            }
            let filter = FilterExecBuilder::from(filter)
                .with_predicate(predicate.data)
                .build()?;
            Ok(Transformed::yes(Arc::new(filter) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "elide_uuid_in_lists"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `expr IN (…)` (or `NOT IN`, `=`, `<>`) of 16-byte values, answered from
/// a hash set (see the module documentation).
#[derive(Debug)]
pub struct UuidInList {
    /// The `InListExpr` or `BinaryExpr` it stands for: its identity, its
    /// SQL and what is shipped to another process.
    original: Arc<dyn PhysicalExpr>,
    /// Which of `original`'s children is `expr` (kept: once children are
    /// replaced, a literal may stand on both sides).
    expr_at: usize,
    /// The value looked up, a `FixedSizeBinary(16)`.
    expr: Arc<dyn PhysicalExpr>,
    /// The list's values, each 16 bytes read as a little-endian integer.
    set: HashSet<u128>,
    /// One bit per [`slot`], set for the slots of the list's values: most
    /// rows (not in the list) are answered by one bit, without probing
    /// the set.
    slots: Vec<u64>,
    negated: bool,
}

/// Bits of a value's [`slot`]: 2^16 slots, 8 KiB of bits. A value not in
/// a list of `n` passes with a probability of about `n / 65536`.
const SLOT_BITS: u32 = 16;

/// The set's key of a 16-byte value.
fn key(bytes: &[u8]) -> Option<u128> {
    <[u8; 16]>::try_from(bytes).ok().map(u128::from_le_bytes)
}

/// A key's slot: its halves folded and multiplied, the top bits (UUIDs of
/// version 7 begin with a timestamp, so no byte of theirs is used alone).
fn slot(key: u128) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize
}

/// The bits of `set`'s slots.
fn slots_of(set: &HashSet<u128>) -> Vec<u64> {
    let mut slots = vec![0u64; (1usize << SLOT_BITS) / 64];
    for k in set {
        let s = slot(*k);
        if let Some(word) = slots.get_mut(s / 64) {
            *word |= 1 << (s % 64);
        }
    }
    slots
}

impl UuidInList {
    /// The set that can stand for `e`, if `e` is such an `IN` list over
    /// `schema`.
    pub fn replacing(e: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Option<UuidInList>> {
        if let Some(b) = e.downcast_ref::<BinaryExpr>() {
            return Self::replacing_equality(e, b, schema);
        }
        let Some(in_list) = e.downcast_ref::<InListExpr>() else {
            return Ok(None);
        };
        if in_list.expr().data_type(schema)? != DataType::FixedSizeBinary(16) {
            return Ok(None);
        }
        let mut set = HashSet::default();
        for item in in_list.list() {
            let value = item
                .downcast_ref::<Literal>()
                .and_then(|l| match l.value() {
                    ScalarValue::FixedSizeBinary(16, Some(bytes)) => key(bytes),
                    _ => None,
                });
            match value {
                Some(v) => {
                    set.insert(v);
                }
                None => return Ok(None),
            }
        }
        Ok(Some(UuidInList {
            original: Arc::clone(e),
            expr_at: 0,
            expr: Arc::clone(in_list.expr()),
            slots: slots_of(&set),
            set,
            negated: in_list.negated(),
        }))
    }

    /// The set of one value that can stand for `e` (`b`), if `b` compares a
    /// `FixedSizeBinary(16)` with `=` or `<>` to a non-null 16-byte
    /// literal, on either side. DataFusion compares such values with a
    /// `memcmp` per row.
    fn replacing_equality(
        e: &Arc<dyn PhysicalExpr>,
        b: &BinaryExpr,
        schema: &Schema,
    ) -> Result<Option<UuidInList>> {
        let negated = match b.op() {
            Operator::Eq => false,
            Operator::NotEq => true,
            _ => return Ok(None),
        };
        let literal = |x: &Arc<dyn PhysicalExpr>| {
            x.downcast_ref::<Literal>().and_then(|l| match l.value() {
                ScalarValue::FixedSizeBinary(16, Some(bytes)) => key(bytes),
                _ => None,
            })
        };
        let (expr_at, expr, value) = match (literal(b.left()), literal(b.right())) {
            (None, Some(v)) => (0, b.left(), v),
            (Some(v), None) => (1, b.right(), v),
            _ => return Ok(None),
        };
        if expr.data_type(schema)? != DataType::FixedSizeBinary(16) {
            return Ok(None);
        }
        let set: HashSet<u128> = [value].into_iter().collect();
        Ok(Some(UuidInList {
            original: Arc::clone(e),
            expr_at,
            expr: Arc::clone(expr),
            slots: slots_of(&set),
            set,
            negated,
        }))
    }

    /// Whether `key` is one of the list's values.
    fn listed(&self, key: u128) -> bool {
        let s = slot(key);
        self.slots
            .get(s / 64)
            .is_some_and(|word| word & (1 << (s % 64)) != 0)
            && self.set.contains(&key)
    }

    /// The answer for a row whose value is the integer `key`.
    fn answer(&self, key: u128) -> bool {
        self.listed(key) != self.negated
    }
}

impl PartialEq for UuidInList {
    fn eq(&self, other: &Self) -> bool {
        self.original.eq(&other.original)
    }
}

impl Eq for UuidInList {}

impl Hash for UuidInList {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.original.hash(state);
    }
}

impl fmt::Display for UuidInList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.original.downcast_ref::<BinaryExpr>().is_some() {
            return write!(f, "{} (as a 128-bit integer)", self.original);
        }
        write!(
            f,
            "{} {}IN (set of {} UUIDs)",
            self.expr,
            if self.negated { "NOT " } else { "" },
            self.set.len()
        )
    }
}

impl PhysicalExpr for UuidInList {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.expr.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.expr.evaluate(batch)? {
            ColumnarValue::Array(values) => {
                let values = values.as_fixed_size_binary_opt().ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "UuidInList: the value is {}, not FixedSizeBinary(16)",
                        values.data_type()
                    ))
                })?;
                // A null row's bytes are read too (they are there, of the
                // same width); the null mask makes its answer null.
                let (rows, _) = values.value_data().as_chunks::<16>();
                let rows = rows
                    .get(..values.len())
                    .filter(|_| values.value_length() == 16)
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "UuidInList: {} values of {} bytes in {} bytes",
                            values.len(),
                            values.value_length(),
                            values.value_data().len()
                        ))
                    })?;
                let answers = BooleanBuffer::collect_bool(rows.len(), |i| {
                    rows.get(i)
                        .is_some_and(|v| self.answer(u128::from_le_bytes(*v)))
                });
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
                    answers,
                    values.logical_nulls(),
                ))))
            }
            ColumnarValue::Scalar(ScalarValue::FixedSizeBinary(_, value)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(value.map(
                    |v| key(&v).map_or(self.negated, |k| self.answer(k)),
                ))))
            }
            ColumnarValue::Scalar(other) => Err(DataFusionError::Internal(format!(
                "UuidInList: the value is {}, not FixedSizeBinary(16)",
                other.data_type()
            ))),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.expr]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [expr] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("UuidInList takes one child".into()))?;
        // The original's other children (the list's values, the literal)
        // stay as they were.
        let mut children: Vec<Arc<dyn PhysicalExpr>> =
            self.original.children().into_iter().cloned().collect();
        let slot = children.get_mut(self.expr_at).ok_or_else(|| {
            DataFusionError::Internal("UuidInList: the original lost its value".into())
        })?;
        *slot = Arc::clone(&expr);
        let original = Arc::clone(&self.original).with_new_children(children)?;
        Ok(Arc::new(UuidInList {
            original,
            expr_at: self.expr_at,
            expr,
            set: self.set.clone(),
            slots: self.slots.clone(),
            negated: self.negated,
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt_sql(f)
    }

    fn try_to_proto(
        &self,
        ctx: &PhysicalExprEncodeCtx<'_>,
    ) -> Result<Option<datafusion_proto::protobuf::PhysicalExprNode>> {
        // The IN list it replaced: the other side evaluates it with
        // DataFusion's set.
        self.original.try_to_proto(ctx)
    }
}

#[cfg(test)]
mod tests;
