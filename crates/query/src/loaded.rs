//! [`LoadedTable`]: a table whose rows come from a function called at each
//! scan, for small tables kept elsewhere (the persons metadata). Each
//! query reads the rows as they are when it is planned, so a change that
//! returned before the query began is always seen.
//!
//! The rows loaded count against the session's memory limit like its
//! operators' memory, from the scan's planning until its plan and every
//! stream executing it are dropped (the streams hold the rows; DataFusion
//! drops a plan once it is executing). The [`Loader`] is given the
//! reservation and grows it batch by batch as it reads, so a table larger
//! than the limit is refused with `ResourcesExhausted` as soon as its
//! rows pass it, not after being read whole; whatever a loader did not
//! count is counted when it returns.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream, Statistics, StatisticsArgs,
};
use futures::StreamExt;

/// Loads a table's rows, growing the reservation it is given by each
/// batch's memory as it goes (`ResourcesExhausted` from `try_grow` stops
/// the load and is returned).
pub type Loader = Arc<dyn Fn(&MemoryReservation) -> Result<Vec<RecordBatch>> + Send + Sync>;

/// A table read through a [`Loader`] at each scan.
pub struct LoadedTable {
    schema: SchemaRef,
    load: Loader,
}

/// Count `bytes`, which `what` holds until the reservation is dropped,
/// against `pool` (a session's memory limit): `ResourcesExhausted` when
/// they do not fit.
pub fn hold(pool: &Arc<dyn MemoryPool>, what: &str, bytes: usize) -> Result<MemoryReservation> {
    let r = MemoryConsumer::new(what).register(pool);
    r.try_grow(bytes)?;
    Ok(r)
}

impl std::fmt::Debug for LoadedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTable")
            .field("schema", &self.schema)
            .finish()
    }
}

impl LoadedTable {
    /// A table of `schema` whose rows `load` returns.
    pub fn new(schema: SchemaRef, load: Loader) -> LoadedTable {
        LoadedTable { schema, load }
    }
}

#[async_trait]
impl TableProvider for LoadedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let held = hold(&state.runtime_env().memory_pool, "loaded table", 0)?;
        let batches = (self.load)(&held)?;
        if let Some(b) = batches.iter().find(|b| b.schema() != self.schema) {
            return Err(DataFusionError::Internal(format!(
                "loaded batch has schema {:?}, the table {:?}",
                b.schema(),
                self.schema
            )));
        }
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        if let Some(uncounted) = bytes.checked_sub(held.size()).filter(|&b| b > 0) {
            held.try_grow(uncounted)?;
        }
        let source = MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(Arc::new(Held {
            input: source,
            held: Arc::new(held),
        }))
    }
}

/// Its input's rows, with the reservation of the memory they hold: freed
/// when the plan and its streams are dropped. Otherwise its input as it
/// is (statistics, order, partitions).
struct Held {
    input: Arc<dyn ExecutionPlan>,
    held: Arc<MemoryReservation>,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("bytes", &self.held.size())
            .finish()
    }
}

impl DisplayAs for Held {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoadedTable: {} bytes held", self.held.size())
    }
}

impl ExecutionPlan for Held {
    fn name(&self) -> &str {
        "LoadedTable"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        input_stats
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("a loaded table's node has one child".into()))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Held {
                input,
                held: Arc::clone(&self.held),
            })),
            Err(_) => Err(DataFusionError::Internal(
                "a loaded table's node has one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        // The stream holds the rows: it holds the reservation too.
        let held = Arc::clone(&self.held);
        let stream = stream.map(move |b| {
            let _ = &held;
            b
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]))
    }

    /// `rows` rows of 1 KiB.
    fn kib_rows(rows: usize) -> Result<RecordBatch> {
        let col = StringArray::from(vec!["x".repeat(1024); rows]);
        Ok(RecordBatch::try_new(schema(), vec![Arc::new(col)])?)
    }

    /// A session capped at `cap` bytes with table `t` loaded by `load`.
    fn session_with(cap: usize, load: Loader) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(cap, 1.0)
            .build_arc()
            .expect("runtime");
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        ctx.register_table("t", Arc::new(LoadedTable::new(schema(), load)))
            .expect("register");
        ctx
    }

    /// A session capped at `cap` bytes with table `t`: 1000 rows of 1 KiB,
    /// loaded whole by a loader that counts nothing itself.
    fn session(cap: usize) -> SessionContext {
        session_with(cap, Arc::new(|_| Ok(vec![kib_rows(1000)?])))
    }

    /// The rows count from planning until the last stream reading them is
    /// dropped (DataFusion drops the plan once it executes), then nothing
    /// is left reserved; rows past the cap are refused.
    #[tokio::test]
    async fn loaded_rows_are_counted_while_a_stream_reads_them() {
        let ctx = session(8 << 20);
        let pool = Arc::clone(&ctx.runtime_env().memory_pool);
        for _ in 0..3 {
            let mut stream = ctx
                .sql("SELECT v FROM t")
                .await
                .expect("plan")
                .execute_stream()
                .await
                .expect("execute");
            assert!(pool.reserved() >= 1000 * 1024, "{}", pool.reserved());
            let mut rows = 0;
            while let Some(b) = stream.next().await {
                rows += b.expect("batch").num_rows();
            }
            assert_eq!(rows, 1000);
            drop(stream);
            assert_eq!(pool.reserved(), 0);
        }
        // Its input's statistics pass through: DataFusion answers a count
        // from them (and sizes joins by them).
        let plan = ctx
            .sql("EXPLAIN SELECT count(*) FROM t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("explain");
        let text = arrow::util::pretty::pretty_format_batches(&plan)
            .expect("text")
            .to_string();
        assert!(text.contains("1000 as count(*)"), "{text}");
        count_is_refused(&session(512 << 10)).await;
    }

    /// `SELECT count(*) FROM t` fails on the session's memory cap.
    async fn count_is_refused(ctx: &SessionContext) {
        let e = ctx
            .sql("SELECT count(*) FROM t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect_err("past the cap");
        assert!(
            matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{e}"
        );
    }

    /// A loader that counts its batches as it builds them stops at the
    /// first one past the cap: the rows after it are never read.
    #[tokio::test]
    async fn a_load_stops_at_the_first_batch_past_the_cap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&built);
        // 100 batches of 10 rows of 1 KiB; the cap holds a few of them.
        let load: Loader = Arc::new(move |r| {
            let mut out = Vec::new();
            for _ in 0..100 {
                let batch = kib_rows(10)?;
                b.fetch_add(1, Ordering::SeqCst);
                r.try_grow(batch.get_array_memory_size())?;
                out.push(batch);
            }
            Ok(out)
        });
        let ctx = session_with(256 << 10, Arc::clone(&load));
        count_is_refused(&ctx).await;
        // The batches that fit, then the one refused.
        let size = kib_rows(10).expect("batch").get_array_memory_size();
        let fit = (256 << 10) / size;
        let n = built.load(Ordering::SeqCst);
        assert!(fit > 4 && n == fit + 1, "{n} batches of {size} bytes read");
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
        // With room, every batch, counted once.
        let ctx = session_with(4 << 20, load);
        let rows = ctx
            .sql("SELECT count(*) AS n FROM t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("count");
        let text = arrow::util::pretty::pretty_format_batches(&rows)
            .expect("text")
            .to_string();
        assert!(text.contains("| 1000 |"), "{text}");
    }
}
