//! [`DistinctRuns`]: a physical optimizer rule that drops, before the first
//! phase of a `GROUP BY` with no aggregate function, every row whose group
//! keys repeat the row before it.
//!
//! `count(DISTINCT person_id) … GROUP BY day` is planned by DataFusion as
//! `GROUP BY day, person_id` (no aggregate function) and then a count per
//! day. The first phase interns every row's pair of keys in a hash table:
//! about 44% of that query's time over 10M events. Elide's parts hold a
//! distinct id's rows as one run, in the order they were captured, so a
//! person's rows of one day mostly follow one another: over the comparison's
//! 30 days of one project, 1.28M rows hold 259k (day, person) pairs. Dropping
//! a row equal to the one before it (a vectorised comparison of the keys
//! with the keys shifted by one row) leaves the hash table a fraction of
//! the rows.
//!
//! The rule replaces an `AggregateExec` in `Partial` mode with no aggregate
//! function, no grouping sets, no limit and an unsorted input (`Linear`),
//! whose keys are all of types arrow's comparison kernels compare (no
//! nested types), with a [`DistinctRunsExec`]: the same aggregate, its keys
//! read as columns, over an operator that evaluates the keys and drops the
//! repeats. Its output schema and partitioning are the aggregate's.
//!
//! Invariant: a `GROUP BY` with no aggregate function outputs each group
//! once whatever the number of its rows, so dropping a row whose keys equal
//! another row's (the one before it, in the same partition) changes no
//! result. Two rows are equal when arrow's `distinct` says they are not
//! distinct: nulls equal nulls, as in a group; floats compare by their
//! total order, so only identical values are dropped. When a partition's
//! first rows hold few repeats (under a tenth of the first
//! [`PROBE_ROWS`]), the operator stops comparing and only evaluates the
//! keys, so data without runs pays one comparison pass over those rows.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBufferBuilder, FixedSizeBinaryArray};
use arrow::buffer::BooleanBuffer;
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::boolean::or;
use arrow::compute::kernels::cmp::distinct;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

/// Rows of a partition after which the operator stops comparing if fewer
/// than a tenth of them were repeats.
pub const PROBE_ROWS: usize = 100_000;

/// Rows after which the partial aggregate behind the operator decides
/// whether to stop aggregating and pass its rows on, as DataFusion's
/// aggregates do when under 20% of their rows are repeats: after
/// DataFusion's `skip_partial_aggregation_probe_rows_threshold` (100,000 by
/// default) if lower. The rows reaching it are what is left once the runs
/// are dropped, mostly distinct: over the comparison's 30 days of one
/// project, 298k rows of 262k groups, where aggregating the first 100k
/// rows of each partition cost 30 ms of CPU for a 16% reduction that the
/// final phase makes anyway.
pub const SKIP_PROBE_ROWS: usize = 8_192;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DistinctRuns;

impl PhysicalOptimizerRule for DistinctRuns {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match DistinctRunsExec::replacing(&node)? {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .data()
    }

    fn name(&self) -> &str {
        "elide_distinct_runs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A partial `GROUP BY` with no aggregate function whose input's repeated
/// rows are dropped first (see the module documentation).
#[derive(Debug)]
pub struct DistinctRunsExec {
    /// The partial aggregate it stands for (to plan it again over new
    /// children, and for [`crate::codec::ElideCodec`]).
    agg: Arc<dyn ExecutionPlan>,
    /// The aggregate's input.
    input: Arc<dyn ExecutionPlan>,
    /// The same aggregate over `drop`.
    inner: Arc<dyn ExecutionPlan>,
    /// The operator under `inner` that drops the repeats, for its metrics.
    drop: Arc<DropRepeatsExec>,
}

impl DistinctRunsExec {
    /// The partial aggregate it stands for (over its input).
    pub(crate) fn aggregate(&self) -> &Arc<dyn ExecutionPlan> {
        &self.agg
    }

    /// The exec that can stand for `node`, if `node` is such a partial
    /// aggregate.
    pub(crate) fn replacing(node: &Arc<dyn ExecutionPlan>) -> Result<Option<DistinctRunsExec>> {
        let Some(agg) = node.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let group_by = agg.group_expr();
        if *agg.mode() != AggregateMode::Partial
            || agg.limit_options().is_some()
            || *agg.input_order_mode() != InputOrderMode::Linear
            || !group_by.is_single()
            || group_by.expr().is_empty()
            || !agg.aggr_expr().is_empty()
        {
            return Ok(None);
        }
        let input = agg.input();
        let input_schema = input.schema();
        // The keys as the aggregate outputs them: names, types,
        // nullability and metadata.
        let keys_schema = group_by.group_schema(&input_schema)?;
        if keys_schema
            .fields()
            .iter()
            .any(|f| f.data_type().is_nested())
        {
            return Ok(None);
        }
        let drop = Arc::new(DropRepeatsExec::new(
            Arc::clone(input),
            group_by.expr().iter().map(|(e, _)| Arc::clone(e)).collect(),
            Arc::clone(&keys_schema),
        ));
        let columns = PhysicalGroupBy::new_single(
            keys_schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>,
                        f.name().clone(),
                    )
                })
                .collect(),
        );
        let inner = AggregateExec::try_new(
            AggregateMode::Partial,
            columns,
            vec![],
            vec![],
            Arc::clone(&drop) as Arc<dyn ExecutionPlan>,
            keys_schema,
        )?;
        if inner.schema() != agg.schema() {
            return Ok(None);
        }
        Ok(Some(DistinctRunsExec {
            agg: Arc::clone(node),
            input: Arc::clone(input),
            inner: Arc::new(inner),
            drop,
        }))
    }
}

/// `NAME: keys=[a, b]`, how the operators standing for a `GROUP BY`
/// without aggregates (this one and `DistinctKeysExec`) show in a plan.
pub(crate) fn fmt_keys(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    schema: &arrow::datatypes::Schema,
) -> fmt::Result {
    let keys: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    write!(f, "{name}: keys=[{}]", keys.join(", "))
}

impl DisplayAs for DistinctRunsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_keys(f, "DistinctRunsExec", &self.schema())
    }
}

impl ExecutionPlan for DistinctRunsExec {
    fn name(&self) -> &str {
        "DistinctRunsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        // The aggregate's: the same groups in the same partitions.
        self.agg.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.agg.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let agg = datafusion::physical_plan::execution_plan::replace_children_if_necessary(
            Arc::clone(&self.agg),
            children,
        )?;
        match DistinctRunsExec::replacing(&agg)? {
            Some(exec) => Ok(Arc::new(exec)),
            None => Err(DataFusionError::Internal(
                "DistinctRunsExec: the new children no longer make a partial GROUP BY".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, probing_sooner(&context))
    }

    /// The aggregate's metrics (its rows are the rows left), and the
    /// count of rows dropped as repeats (`repeats_dropped`).
    fn metrics(&self) -> Option<MetricsSet> {
        let mut set = self.inner.metrics().unwrap_or_default();
        for m in self.drop.metrics.clone_inner().iter() {
            set.push(Arc::clone(m));
        }
        Some(set)
    }
}

/// `context` with the partial aggregate's probe for skipping aggregation
/// ended after [`SKIP_PROBE_ROWS`] rows (if the session's ends later). The
/// rest of the session's configuration is unchanged, so a session that
/// turned skipping off (a ratio threshold of 1) keeps it off.
fn probing_sooner(context: &Arc<TaskContext>) -> Arc<TaskContext> {
    let rows = SKIP_PROBE_ROWS;
    let config = context.session_config();
    if config
        .options()
        .execution
        .skip_partial_aggregation_probe_rows_threshold
        <= rows
    {
        return Arc::clone(context);
    }
    let mut config = config.clone();
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_rows_threshold = rows;
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        config,
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        context.runtime_env(),
    ))
}

/// Evaluates a partial aggregate's keys and drops the rows that repeat the
/// row before them; its output is the keys.
#[derive(Debug)]
struct DropRepeatsExec {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DropRepeatsExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    ) -> Self {
        let of_input = input.properties();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            // The input's partition count; a partitioning by the input's
            // columns does not name this schema's.
            datafusion::physical_plan::Partitioning::UnknownPartitioning(
                of_input.output_partitioning().partition_count(),
            ),
            EmissionType::Incremental,
            of_input.boundedness,
        );
        DropRepeatsExec {
            input,
            keys,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for DropRepeatsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DropRepeatsExec")
    }
}

impl ExecutionPlan for DropRepeatsExec {
    fn name(&self) -> &str {
        "DropRepeatsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for key in &self.keys {
            if f(key)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(DropRepeatsExec::new(
                input,
                self.keys.clone(),
                Arc::clone(&self.schema),
            ))),
            Err(_) => Err(DataFusionError::Internal(
                "DropRepeatsExec takes one input".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let mut repeats = Repeats {
            keys: self.keys.clone(),
            schema: Arc::clone(&self.schema),
            last: None,
            rows_in: 0,
            comparing: true,
            dropped: MetricBuilder::new(&self.metrics).counter("repeats_dropped", partition),
        };
        let batches = input.map(move |batch| batch.and_then(|b| repeats.drop_from(&b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}

/// One partition's state: the keys of the last row passed on.
struct Repeats {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// The keys of the row before the next batch's first, one row each.
    last: Option<Vec<ArrayRef>>,
    /// Rows compared so far.
    rows_in: usize,
    /// Off once the first [`PROBE_ROWS`] showed few repeats.
    comparing: bool,
    /// Rows dropped so far, in the operator's metrics.
    dropped: Count,
}

impl Repeats {
    /// `batch`'s keys without the rows that repeat the row before them.
    fn drop_from(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let columns = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let keys = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        if n == 0 || !self.comparing {
            return Ok(keys);
        }
        // Row i against row i - 1, for i in 1..n: repeated where no key
        // differs.
        let mut differs: Option<BooleanArray> = None;
        for c in keys.columns() {
            let d = differs_from_previous(c)?;
            differs = Some(match differs {
                None => d,
                Some(before) => or(&before, &d)?,
            });
        }
        // The first row against the last of the batch before.
        let mut first_differs = true;
        if let Some(last) = &self.last {
            first_differs = false;
            for (c, l) in keys.columns().iter().zip(last) {
                first_differs |= distinct(&c.slice(0, 1), l)?.value(0);
            }
        }
        self.last = Some(keys.columns().iter().map(|c| c.slice(n - 1, 1)).collect());
        let mut keep = BooleanBufferBuilder::new(n);
        keep.append(first_differs);
        if let Some(d) = &differs {
            keep.append_buffer(d.values());
        }
        let keep = BooleanArray::new(keep.finish(), None);
        let kept = keep.true_count();
        self.rows_in += n;
        self.dropped.add(n - kept);
        if self.rows_in >= PROBE_ROWS && self.dropped.value() * 10 < self.rows_in {
            self.comparing = false;
            self.last = None;
        }
        if kept == n {
            Ok(keys)
        } else {
            Ok(filter_record_batch(&keys, &keep)?)
        }
    }
}

/// Row `i` of `c` against row `i - 1`, for `i` in `1..len`: whether
/// they are distinct (nulls equal nulls), as arrow's `distinct` of the
/// column shifted by one row says. A column of 16-byte values (UUIDs) is
/// compared as 128-bit integers, where arrow's kernel calls `memcmp` per
/// row.
fn differs_from_previous(c: &ArrayRef) -> Result<BooleanArray> {
    let n = c.len();
    if n < 2 {
        return Ok(BooleanArray::new(BooleanBuffer::new_unset(0), None));
    }
    if let Some(a) = c
        .as_any()
        .downcast_ref::<FixedSizeBinaryArray>()
        .filter(|a| a.value_length() == 16 && a.value_data().len() >= n * 16)
    {
        let data = a.value_data();
        let word = |i: usize| {
            let mut w = [0; 16];
            w.copy_from_slice(&data[i * 16..i * 16 + 16]);
            u128::from_ne_bytes(w)
        };
        // 64 rows to a word of the result; the validity is only read when
        // there are nulls.
        let differs = if a.null_count() == 0 {
            BooleanBuffer::collect_bool(n - 1, |i| word(i + 1) != word(i))
        } else {
            BooleanBuffer::collect_bool(n - 1, |i| match (a.is_valid(i + 1), a.is_valid(i)) {
                (true, true) => word(i + 1) != word(i),
                (this, before) => this != before,
            })
        };
        return Ok(BooleanArray::new(differs, None));
    }
    Ok(distinct(&c.slice(1, n - 1), &c.slice(0, n - 1))?)
}

#[cfg(test)]
mod tests;
