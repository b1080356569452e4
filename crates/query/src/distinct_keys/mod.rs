//! [`DistinctKeys`]: a physical optimizer rule that runs the final phase of
//! a `GROUP BY` with no aggregate function over narrow fixed-width keys by
//! radix partitioning: rows are dealt by hash into [`BUCKETS`] buckets as
//! they arrive, then each bucket (split again while it holds more than
//! [`BUCKET_ROWS`]) is deduplicated in a hash set small enough to stay in
//! the core's cache.
//!
//! `count(DISTINCT person_id) … GROUP BY day` is planned as `GROUP BY day,
//! person_id` and then a count per day. [`crate::distinct_runs`] makes the
//! first phase cheap; the final phase then interns every (day, person) pair
//! the partitions pass on — over the comparison's 30 days of one project,
//! 295k rows into 256k groups, ~29% of the query's CPU in DataFusion's
//! `GroupValuesColumn`, whose table of a partition's groups outgrows the
//! core's cache, so that nearly every row costs a miss. Here a row's keys
//! are copied side by side into one 32-byte array and appended to its
//! bucket (sequential writes to one of 16 places); once the input has
//! ended, one bucket at a time goes through a set of at most
//! [`BUCKET_ROWS`] rows (the comparison's ~9k rows per bucket: 512 KiB),
//! and its distinct keys are output. The final phase's compute went from
//! DataFusion's 48–59 ms to 19–29 ms for the same rows, measured in the
//! same hour (docs/benchmarks.md, "the final phase in cache-sized
//! buckets").
//!
//! The rule replaces an `AggregateExec` in `Final` or `FinalPartitioned`
//! mode with no aggregate function, no grouping sets, no limit and an
//! unsorted input (`Linear`), whose keys are integers, dates, timestamps
//! or `FixedSizeBinary` of at most [`KEY_BYTES`] bytes together, with a
//! [`DistinctKeysExec`] of the same input, schema and partitioning.
//!
//! Invariant: the output is each distinct row of keys of a partition once
//! (nulls equal nulls, as in a group), which is what the final phase of a
//! `GROUP BY` without aggregates outputs; only the order of the groups
//! differs, which SQL leaves unspecified. Two keys are equal when their
//! bytes and null flags are: the types admitted have one representation
//! per value, and a key's bytes past the last column are zero. A row goes
//! to one bucket by its hash, so equal rows meet in the same bucket.
//!
//! Memory: the buckets' bytes are reserved from the session's memory pool
//! as they grow. They cannot spill; when the pool refuses, or under a
//! pool with a limit (the server's per-query `query_memory_bytes`) once
//! a partition's buckets reach its share of a quarter of the pool, the
//! rows dealt so far and then the rest of the input are handed to
//! DataFusion's own aggregate, which can spill (the metric
//! `rows_handed_over`). The rows handed over are then held as batches, as
//! any operator's input in flight, not reserved.

use std::fmt;
use std::sync::Arc;

use arrow::array::{make_array, ArrayData};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::HashSet;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

/// The widest row of keys, in bytes: a timestamp and a UUID, with room.
/// The four bytes after them hold the null flags.
pub const KEY_BYTES: usize = 28;

/// How many buckets the rows of a partition are dealt into, and a bucket
/// of more than [`BUCKET_ROWS`] rows again before it is deduplicated: few
/// enough that each bucket's appends stay sequential to the CPU (its
/// prefetchers follow a few dozen streams; with 256 buckets, the stores
/// into them were the hottest instructions of the dealing).
pub const BUCKETS: usize = 16;

/// The most rows a bucket is deduplicated in one set: 16,384 rows make a
/// table of 32,768 slots, 1 MiB, within the second-level cache (2 MiB a
/// core here). (64 in unit tests, so that their few thousand rows take
/// the path of buckets split level after level.)
pub const BUCKET_ROWS: usize = if cfg!(test) { 64 } else { 16_384 };

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DistinctKeys;

impl PhysicalOptimizerRule for DistinctKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match DistinctKeysExec::replacing(&node) {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .data()
    }

    fn name(&self) -> &str {
        "elide_distinct_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The bytes a value of `t` takes in a key, if `t` is admitted.
fn key_width(t: &DataType) -> Option<usize> {
    match t {
        DataType::Int8 | DataType::UInt8 => Some(1),
        DataType::Int16 | DataType::UInt16 => Some(2),
        DataType::Int32 | DataType::UInt32 | DataType::Date32 => Some(4),
        DataType::Int64 | DataType::UInt64 | DataType::Date64 | DataType::Timestamp(_, _) => {
            Some(8)
        }
        DataType::FixedSizeBinary(n) => usize::try_from(*n).ok().filter(|n| *n > 0),
        _ => None,
    }
}

/// The final phase of a `GROUP BY` without aggregates, over buckets of the
/// keys' bytes (see the module documentation).
#[derive(Debug)]
pub struct DistinctKeysExec {
    /// The aggregate it stands for (handed the rows when the memory pool
    /// refuses more, and shipped by [`crate::codec::ElideCodec`]).
    agg: Arc<dyn ExecutionPlan>,
    /// The aggregate's input (whose columns are the keys).
    input: Arc<dyn ExecutionPlan>,
    /// Each key's bytes in a row of keys.
    widths: Vec<usize>,
    metrics: ExecutionPlanMetricsSet,
}

impl DistinctKeysExec {
    /// The aggregate it stands for (over its input).
    pub(crate) fn aggregate(&self) -> &Arc<dyn ExecutionPlan> {
        &self.agg
    }

    /// The exec that can stand for `node`, if `node` is such a final
    /// aggregate.
    pub(crate) fn replacing(node: &Arc<dyn ExecutionPlan>) -> Option<DistinctKeysExec> {
        let agg = node.downcast_ref::<AggregateExec>()?;
        let group_by = agg.group_expr();
        if !matches!(
            agg.mode(),
            AggregateMode::Final | AggregateMode::FinalPartitioned
        ) || agg.limit_options().is_some()
            || *agg.input_order_mode() != InputOrderMode::Linear
            || !group_by.is_single()
            || group_by.expr().is_empty()
            || !agg.aggr_expr().is_empty()
        {
            return None;
        }
        let schema = agg.schema();
        if schema.fields().len() != group_by.expr().len() {
            return None;
        }
        let input_schema = agg.input().schema();
        if input_schema.fields().len() != schema.fields().len() {
            return None;
        }
        let mut widths = Vec::with_capacity(schema.fields().len());
        for (i, ((expr, _), field)) in group_by.expr().iter().zip(schema.fields()).enumerate() {
            // The keys are the input's columns, in order (as a final phase
            // reads the partial phase's groups), of the output's types: so
            // rows of keys are rows of the input too (see `hand_over`).
            let column = expr.downcast_ref::<Column>()?;
            if column.index() != i || input_schema.field(i).data_type() != field.data_type() {
                return None;
            }
            widths.push(key_width(field.data_type())?);
        }
        if widths.iter().sum::<usize>() > KEY_BYTES {
            return None;
        }
        Some(DistinctKeysExec {
            agg: Arc::clone(node),
            input: Arc::clone(agg.input()),
            widths,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for DistinctKeysExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::distinct_runs::fmt_keys(f, "DistinctKeysExec", &self.schema())
    }
}

impl ExecutionPlan for DistinctKeysExec {
    fn name(&self) -> &str {
        "DistinctKeysExec"
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
        let agg = replace_children_if_necessary(Arc::clone(&self.agg), children)?;
        match DistinctKeysExec::replacing(&agg) {
            Some(exec) => Ok(Arc::new(exec)),
            None => Err(DataFusionError::Internal(
                "DistinctKeysExec: the new children no longer make a final GROUP BY of narrow keys"
                    .into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let reservation = MemoryConsumer::new(format!("DistinctKeysExec[{partition}]"))
            .register(context.memory_pool());
        let state = Partition {
            baseline: BaselineMetrics::new(&self.metrics, partition),
            rows_dealt: MetricBuilder::new(&self.metrics).counter("rows_dealt", partition),
            rows_handed_over: MetricBuilder::new(&self.metrics)
                .counter("rows_handed_over", partition),
            input: self.input.execute(partition, Arc::clone(&context))?,
            agg: Arc::clone(&self.agg),
            partition,
            context: Arc::clone(&context),
            input_properties: Arc::clone(self.input.properties()),
            delegate: None,
            widths: self.widths.clone(),
            schema: self.schema(),
            batch_size: context.session_config().batch_size().max(1),
            dealer: ahash::RandomState::with_seeds(
                DEALER_SEEDS[0],
                DEALER_SEEDS[1],
                DEALER_SEEDS[2],
                DEALER_SEEDS[3],
            ),
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
            ended: false,
            todo: Vec::new(),
            set: HashSet::default(),
            pending: Vec::new(),
            done: 0,
            most_bytes: match context.memory_pool().memory_limit() {
                MemoryLimit::Finite(pool) => {
                    pool / (POOL_SHARE * self.properties().partitioning.partition_count().max(1))
                }
                _ => usize::MAX,
            },
            reservation,
        };
        let batches = futures::stream::unfold(state, |mut st| async move {
            let out = st.next().await?;
            Some((out, st))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }

    /// Its own: `output_rows`, `elapsed_compute`, `rows_dealt` (the rows
    /// dealt into buckets) and `rows_handed_over` (the rows given to
    /// DataFusion's aggregate once the pool, or the partition's share of
    /// it, ran out).
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Under a pool with a limit, the partitions' buckets take at most this
/// fraction of it together (each partition its share) before handing
/// their rows over: they cannot spill, so a pool they filled would leave
/// DataFusion's own operators (which can) nothing to work in.
const POOL_SHARE: usize = 4;

/// The dealer's seeds: fixed, so that a query's buckets (and the memory
/// they take) are the same from one run to the next. (A crafted input
/// could crowd one bucket; that costs time, not correctness: a bucket is
/// split again, or deduplicated as it is.)
const DEALER_SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// One partition's execution.
struct Partition {
    baseline: BaselineMetrics,
    rows_dealt: Count,
    rows_handed_over: Count,
    input: SendableRecordBatchStream,
    /// The aggregate, its partition and context: what the rows are handed
    /// to when the memory pool refuses more.
    agg: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
    input_properties: Arc<PlanProperties>,
    /// Once the rows are handed over: the aggregate's output.
    delegate: Option<SendableRecordBatchStream>,
    widths: Vec<usize>,
    schema: SchemaRef,
    batch_size: usize,
    /// Picks a row's bucket (independent of the set's own hashing, whose
    /// bits would otherwise be the same for every row of a bucket).
    dealer: ahash::RandomState,
    /// The rows received, by bucket (level 0).
    buckets: Vec<Bucket>,
    /// Whether the input has ended.
    ended: bool,
    /// Once it has: the buckets left to deduplicate, each with its level
    /// (a bucket too big for one set is split into the next level's).
    todo: Vec<(Bucket, u32)>,
    /// The set a bucket is deduplicated in (kept, to reuse its table).
    set: HashSet<Key>,
    /// Distinct keys: those from `done` on are not yet output.
    pending: Vec<Key>,
    done: usize,
    reservation: MemoryReservation,
    /// The most bytes this partition's buckets may take before it hands
    /// its rows over, the pool willing or not (see [`POOL_SHARE`]).
    most_bytes: usize,
}

impl Partition {
    /// The next output batch once the input has ended; `None` after the
    /// last.
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        if let Some(delegate) = self.delegate.as_mut() {
            return delegate.next().await;
        }
        if !self.ended {
            while let Some(batch) = self.input.next().await {
                let elapsed = self.baseline.elapsed_compute().clone();
                let timer = elapsed.timer();
                let added = batch.and_then(|b| self.add(&b));
                timer.done();
                match added {
                    Ok(true) => {}
                    Ok(false) => {
                        return match self.hand_over() {
                            Ok(()) => self.delegate.as_mut()?.next().await,
                            Err(e) => {
                                self.ended = true;
                                Some(Err(e))
                            }
                        };
                    }
                    Err(e) => {
                        self.ended = true;
                        self.buckets.clear();
                        return Some(Err(e));
                    }
                }
            }
            self.ended = true;
            self.todo = std::mem::take(&mut self.buckets)
                .into_iter()
                .map(|b| (b, 0))
                .collect();
        }
        let elapsed = self.baseline.elapsed_compute().clone();
        let timer = elapsed.timer();
        // Deduplicate buckets until a batch's worth is pending or none is
        // left.
        if self.done > 0 {
            self.pending.drain(..self.done);
            self.done = 0;
        }
        while self.pending.len() < self.batch_size {
            let Some((bucket, level)) = self.todo.pop() else {
                break;
            };
            let mut split_up = false;
            if bucket.rows > BUCKET_ROWS && level + 1 < LEVELS {
                let mut split: Vec<Bucket> = (0..BUCKETS).map(|_| Bucket::default()).collect();
                let mut held = 0;
                for row in bucket.iter() {
                    held += split[bucket_of(self.dealer.hash_one(row), level + 1)].push(*row);
                }
                // Rows that all go to one bucket again agree in these bits
                // of their hash too: most likely one key, repeated. They are
                // deduplicated as they are rather than split level after
                // level.
                split_up = split.iter().all(|b| b.rows < bucket.rows);
                if split_up {
                    // The split's chunks are held until its buckets are
                    // done; the bucket's are freed below.
                    self.reservation.grow(held);
                    self.todo.extend(split.into_iter().map(|b| (b, level + 1)));
                }
            }
            if !split_up {
                self.set.clear();
                self.set.reserve(bucket.rows.min(BUCKET_ROWS));
                self.set.extend(bucket.iter().copied());
                self.pending.extend(self.set.iter().copied());
            }
            let freed = bucket.bytes();
            self.reservation.shrink(freed.min(self.reservation.size()));
        }
        if self.pending.is_empty() {
            self.set = HashSet::default();
            self.reservation.free();
            return None;
        }
        let end = self.batch_size.min(self.pending.len());
        let batch = self.batch(&self.pending[..end]);
        self.done = end;
        timer.done();
        Some(batch.map(|b| b.record_output(&self.baseline)))
    }

    /// The memory pool, or this partition's share of it, ran out: hands
    /// the rows dealt so far, then the rest of the input, to DataFusion's
    /// aggregate (which can spill), and outputs what it outputs from now on.
    fn hand_over(&mut self) -> Result<()> {
        let schema = self.input.schema();
        let mut batches = Vec::new();
        for bucket in std::mem::take(&mut self.buckets) {
            for chunk in bucket.chunks {
                self.rows_handed_over.add(chunk.len());
                batches.push(self.columns(&chunk, &schema));
            }
        }
        self.reservation.free();
        let input = std::mem::replace(
            &mut self.input,
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                futures::stream::empty(),
            )),
        );
        let rows = futures::stream::iter(batches).chain(input.inspect({
            let handed = self.rows_handed_over.clone();
            move |b| {
                if let Ok(b) = b {
                    handed.add(b.num_rows());
                }
            }
        }));
        let handover = Handover::new(
            Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), rows)),
            Arc::clone(&self.input_properties),
        );
        let agg = replace_children_if_necessary(Arc::clone(&self.agg), vec![Arc::new(handover)])?;
        self.delegate = Some(agg.execute(self.partition, Arc::clone(&self.context))?);
        Ok(())
    }

    /// Deals `batch`'s rows of keys into the buckets; `false` when the
    /// bytes this took are past the partition's share or the pool refused
    /// them (the rows are dealt all the same, then handed over).
    fn add(&mut self, batch: &RecordBatch) -> Result<bool> {
        let n = batch.num_rows();
        let columns = batch.columns();
        let mut rows = vec![Key([0; KEY_BYTES + 4]); n];
        let mut at = 0;
        for (k, (column, &width)) in columns.iter().zip(&self.widths).enumerate() {
            let data = column.to_data();
            let values = data.buffers().first().ok_or_else(|| {
                DataFusionError::Internal("DistinctKeysExec: a key without values".into())
            })?;
            let start = data.offset() * width;
            let values = values
                .as_slice()
                .get(start..start + n * width)
                .ok_or_else(|| {
                    DataFusionError::Internal("DistinctKeysExec: a short key column".into())
                })?;
            put(&mut rows, at, width, values);
            if let Some(nulls) = data.nulls() {
                let flag = (1u32 << k).to_le_bytes();
                for (row, valid) in rows.iter_mut().zip(nulls.iter()) {
                    if !valid {
                        row.0[at..at + width].fill(0);
                        for (b, f) in row.0[KEY_BYTES..].iter_mut().zip(flag) {
                            *b |= f;
                        }
                    }
                }
            }
            at += width;
        }
        self.rows_dealt.add(n);
        let mut held = 0;
        for row in rows {
            held += self.buckets[bucket_of(self.dealer.hash_one(row), 0)].push(row);
        }
        if self.reservation.size() + held > self.most_bytes {
            return Ok(false);
        }
        Ok(self.reservation.try_grow(held).is_ok())
    }

    /// `keys` as a batch of the output schema.
    fn batch(&self, keys: &[Key]) -> Result<RecordBatch> {
        self.columns(keys, &self.schema)
    }

    /// `keys` as a batch of `schema` (the output's or the input's: their
    /// fields are the keys, of the same types).
    fn columns(&self, keys: &[Key], schema: &SchemaRef) -> Result<RecordBatch> {
        let mut at = 0;
        let mut columns = Vec::with_capacity(self.widths.len());
        for (k, (field, &width)) in schema.fields().iter().zip(&self.widths).enumerate() {
            let mut values = Vec::with_capacity(keys.len() * width);
            get(keys, at, width, &mut values);
            let flag = 1 << k;
            let nulls = keys.iter().any(|key| key.nulls() & flag != 0).then(|| {
                NullBuffer::new(BooleanBuffer::collect_bool(keys.len(), |i| {
                    keys[i].nulls() & flag == 0
                }))
            });
            let data = ArrayData::builder(field.data_type().clone())
                .len(keys.len())
                .add_buffer(Buffer::from_vec(values))
                .nulls(nulls)
                .build()?;
            columns.push(make_array(data));
            at += width;
        }
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

mod buckets;
mod handover;
#[cfg(test)]
mod tests;

use buckets::{bucket_of, get, put, Bucket, Key, LEVELS};
use handover::Handover;
