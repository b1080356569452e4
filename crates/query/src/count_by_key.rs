//! [`CountByKey`]: a physical optimizer rule that runs the first phase of
//! `SELECT key, count(*) … GROUP BY key` — the most common product
//! analytics query, events by name — with a hash table keyed by the string
//! view itself.
//!
//! DataFusion's partial aggregate of a `Utf8View` key interns every row's
//! value (`ArrowBytesViewMap::insert_if_new`, 22% of `count(*) GROUP BY
//! event` over 10M events, the hashing another 7%), and then feeds a
//! `count` accumulator per row through group indices. An event name is a
//! short string: a view of at most 12 bytes holds the whole value, so the
//! 16-byte view is the key (with the bytes past its length masked, which
//! the format does not promise to be zero). Longer values are keyed by
//! their bytes. Each row adds one to its group's count.
//!
//! The rule replaces an `AggregateExec` in `Partial` mode whose only group
//! key is a `Utf8View` column (no grouping sets) and whose aggregates are
//! all `count` of a non-null literal (`count(*)`, `count(1)`), without
//! `DISTINCT`, `FILTER` or `ORDER BY`, with a [`CountByKeyExec`] of the
//! same input and output schema. The final phase above it is DataFusion's.
//!
//! Invariant: the output is the partial aggregate's state (a row per key
//! of the partition, nulls one group, each count the group's rows), so the
//! result of the query is unchanged; only the order of the groups within
//! a partition differs, which no consumer of a partial aggregate relies
//! on. The aggregate is recognised by its implementation (DataFusion's
//! `Count`), not its name. A partial aggregate
//! with a limit, or with its input sorted on the key (streaming), is left
//! alone. The groups are held against the session's memory pool: past its
//! limit they are handed on early, as DataFusion's partial aggregate does
//! (then a key may have several partial rows, which the final phase adds
//! up).

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringViewArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::HashMap;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::functions_aggregate::count::Count;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct CountByKey;

impl PhysicalOptimizerRule for CountByKey {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match CountByKeyExec::replacing(&node) {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .data()
    }

    fn name(&self) -> &str {
        "elide_count_by_key"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The partial `count(*) … GROUP BY key` of one `Utf8View` key (see the
/// module documentation).
#[derive(Debug)]
pub struct CountByKeyExec {
    /// The partial aggregate it stands for (to plan it again over new
    /// children).
    agg: Arc<dyn ExecutionPlan>,
    input: Arc<dyn ExecutionPlan>,
    /// Index of the key column in the input.
    key: usize,
    /// The replaced aggregate's output schema: the key, then one count
    /// per aggregate.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl CountByKeyExec {
    /// The partial aggregate it stands for (over its input): what
    /// [`crate::codec::ElideCodec`] serialises in its place.
    pub(crate) fn aggregate(&self) -> &Arc<dyn ExecutionPlan> {
        &self.agg
    }

    /// The exec that can stand for `agg`, if `agg` is such a partial
    /// aggregate.
    pub(crate) fn replacing(node: &Arc<dyn ExecutionPlan>) -> Option<CountByKeyExec> {
        let agg = node.downcast_ref::<AggregateExec>()?;
        if *agg.mode() != AggregateMode::Partial
            || agg.limit_options().is_some()
            || *agg.input_order_mode() != InputOrderMode::Linear
            || !agg.group_expr().is_single()
            || agg.filter_expr().iter().any(Option::is_some)
            || agg.aggr_expr().is_empty()
        {
            return None;
        }
        let [(key, _)] = agg.group_expr().expr() else {
            return None;
        };
        let key = key.downcast_ref::<Column>()?;
        let input_schema = agg.input().schema();
        if input_schema.field(key.index()).data_type() != &DataType::Utf8View {
            return None;
        }
        let counts_only = agg.aggr_expr().iter().all(|a| {
            let udaf: &dyn std::any::Any = a.fun().inner().as_ref();
            udaf.is::<Count>()
                && !a.is_distinct()
                && a.order_bys().is_empty()
                && a.expressions().iter().all(|e| {
                    e.downcast_ref::<Literal>()
                        .is_some_and(|l| !l.value().is_null())
                })
        });
        let schema = agg.schema();
        let shape_ok = schema.fields().len() == 1 + agg.aggr_expr().len()
            && schema.field(0).data_type() == &DataType::Utf8View
            && schema
                .fields()
                .iter()
                .skip(1)
                .all(|f| f.data_type() == &DataType::Int64);
        if !counts_only || !shape_ok {
            return None;
        }
        let of_agg = agg.properties();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            of_agg.output_partitioning().clone(),
            of_agg.emission_type,
            of_agg.boundedness,
        );
        Some(CountByKeyExec {
            agg: Arc::clone(node),
            input: Arc::clone(agg.input()),
            key: key.index(),
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for CountByKeyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CountByKeyExec: key={}, counts={}",
            self.input.schema().field(self.key).name(),
            self.schema.fields().len() - 1
        )
    }
}

impl ExecutionPlan for CountByKeyExec {
    fn name(&self) -> &str {
        "CountByKeyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // Its key is a column index, not an expression.
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The aggregate over the new children, replaced again (its
        // partitioning and schema follow the children).
        let agg = datafusion::physical_plan::execution_plan::replace_children_if_necessary(
            Arc::clone(&self.agg),
            children,
        )?;
        match CountByKeyExec::replacing(&agg) {
            Some(exec) => Ok(Arc::new(exec)),
            None => Err(DataFusionError::Internal(
                "CountByKeyExec: the new children no longer make a count by one string key".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // The groups are held against the session's memory pool. Past its
        // limit they are handed on and a new set begins, as DataFusion's
        // partial aggregate emits early: the final phase adds up a key's
        // partial counts.
        let reservation = MemoryConsumer::new(format!("CountByKeyExec[{partition}]"))
            .register(context.memory_pool());
        let state = Partition {
            input: self.input.execute(partition, context)?,
            key: self.key,
            schema: Arc::clone(&self.schema),
            groups: Groups::default(),
            reservation,
            done: false,
        };
        let batches = futures::stream::unfold(state, |mut st| async move {
            let out = st.next().await?;
            Some((out, st))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}

/// One partition's execution: its input, and the groups so far.
struct Partition {
    input: SendableRecordBatchStream,
    key: usize,
    schema: SchemaRef,
    groups: Groups,
    reservation: MemoryReservation,
    done: bool,
}

impl Partition {
    /// The next output batch: the groups once the input ends, or earlier
    /// when they outgrow the memory pool; `None` after the last.
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        while let Some(batch) = self.input.next().await {
            let added = batch.and_then(|b| match b.columns().get(self.key) {
                Some(column) => self.groups.add(column),
                None => Err(DataFusionError::Internal(
                    "CountByKeyExec: a batch without its key column".into(),
                )),
            });
            if let Err(e) = added {
                self.done = true;
                return Some(Err(e));
            }
            if self.reservation.try_resize(self.groups.size()).is_err() {
                return Some(self.emit());
            }
        }
        self.done = true;
        Some(self.emit())
    }

    /// The groups so far as a batch; the next start empty.
    fn emit(&mut self) -> Result<RecordBatch> {
        let groups = std::mem::take(&mut self.groups);
        self.reservation.free();
        groups.finish(&self.schema)
    }
}

/// Slots of the per-batch cache of views.
const CACHE_SLOTS: usize = 64;
/// A view no array holds (its length would be 2^32 - 1 bytes, past the
/// format's 2^31 - 1): the empty cache slot.
const EMPTY_VIEW: u128 = u128::MAX;

/// The cache slot of a view: its two halves mixed, the top 6 bits.
fn cache_slot(view: u128) -> usize {
    let mixed = (view as u64) ^ ((view >> 64) as u64).rotate_left(29);
    (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

/// The groups of one partition, in the order they were met.
#[derive(Default)]
struct Groups {
    /// Values of at most 12 bytes: their view, the bytes past the length
    /// masked off.
    short: HashMap<u128, usize>,
    /// Longer values, by their bytes.
    long: HashMap<Box<[u8]>, usize>,
    /// The group of nulls.
    null: Option<usize>,
    keys: Vec<Option<String>>,
    /// Bytes of the values in `keys` (and again in `long`'s keys).
    key_bytes: usize,
    counts: Vec<i64>,
}

impl Groups {
    /// Memory held, roughly: the tables, the keys and the counts.
    fn size(&self) -> usize {
        use std::mem::size_of;
        self.short.capacity() * (size_of::<(u128, usize)>() + 1)
            + self.long.capacity() * (size_of::<(Box<[u8]>, usize)>() + 1)
            + self.keys.capacity() * size_of::<Option<String>>()
            + 2 * self.key_bytes
            + self.counts.capacity() * size_of::<i64>()
    }

    fn new_group(&mut self, key: Option<&str>) -> usize {
        self.key_bytes += key.map_or(0, str::len);
        self.keys.push(key.map(str::to_string));
        self.counts.push(0);
        self.counts.len() - 1
    }

    fn add(&mut self, column: &ArrayRef) -> Result<()> {
        let values = column.as_string_view_opt().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "CountByKeyExec: the key is {}, not Utf8View",
                column.data_type()
            ))
        })?;
        let views = values.views();
        let nulls = values.null_count() > 0;
        // Rows read from a parquet dictionary repeat the same few views (a
        // long value's view points at the same bytes of the batch's
        // buffers), so a small direct-mapped cache of this batch's views
        // answers most rows without hashing the value.
        let mut cache = [(EMPTY_VIEW, 0usize); CACHE_SLOTS];
        for (i, view) in views.iter().enumerate() {
            let group = if nulls && values.is_null(i) {
                self.null_group()
            } else {
                let slot = cache_slot(*view);
                match cache.get(slot) {
                    Some((v, g)) if v == view => *g,
                    _ => {
                        let g = self.group_of(*view, values.value(i));
                        if let Some(c) = cache.get_mut(slot) {
                            *c = (*view, g);
                        }
                        g
                    }
                }
            };
            if let Some(c) = self.counts.get_mut(group) {
                *c += 1;
            }
        }
        Ok(())
    }

    fn null_group(&mut self) -> usize {
        match self.null {
            Some(g) => g,
            None => {
                let g = self.new_group(None);
                self.null = Some(g);
                g
            }
        }
    }

    /// The group of the non-null `value`, whose view is `view`.
    fn group_of(&mut self, view: u128, value: &str) -> usize {
        let len = view as u32;
        if len <= 12 {
            // The length (low 32 bits) and the value's bytes.
            let key = if len == 12 {
                view
            } else {
                view & ((1u128 << (32 + 8 * len)) - 1)
            };
            match self.short.get(&key) {
                Some(g) => *g,
                None => {
                    let g = self.new_group(Some(value));
                    self.short.insert(key, g);
                    g
                }
            }
        } else {
            match self.long.get(value.as_bytes()) {
                Some(g) => *g,
                None => {
                    let g = self.new_group(Some(value));
                    self.long.insert(value.as_bytes().into(), g);
                    g
                }
            }
        }
    }

    fn finish(self, schema: &SchemaRef) -> Result<RecordBatch> {
        let keys: ArrayRef = Arc::new(StringViewArray::from_iter(self.keys));
        let counts: ArrayRef = Arc::new(Int64Array::from(self.counts));
        let mut columns = vec![keys];
        columns.extend((1..schema.fields().len()).map(|_| Arc::clone(&counts)));
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}
