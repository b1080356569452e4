//! [`LoadedTable`]: a table whose rows come from a function called at each
//! scan, for small tables kept elsewhere (the persons metadata). Each
//! query reads the rows as they are when it is planned, so a change that
//! returned before the query began is always seen.
//!
//! The rows loaded count against the session's memory limit ([`hold`])
//! like its operators' memory, from the scan's planning until its plan
//! and every stream executing it are dropped (the streams hold the rows;
//! DataFusion drops a plan once it is executing): a query whose loaded
//! rows alone pass the limit fails with `ResourcesExhausted` (the rows are
//! loaded whole first, then refused).

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

/// Loads a table's rows.
pub type Loader = Arc<dyn Fn() -> std::result::Result<Vec<RecordBatch>, String> + Send + Sync>;

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
        let batches = (self.load)().map_err(|e| DataFusionError::External(e.into()))?;
        if let Some(b) = batches.iter().find(|b| b.schema() != self.schema) {
            return Err(DataFusionError::Internal(format!(
                "loaded batch has schema {:?}, the table {:?}",
                b.schema(),
                self.schema
            )));
        }
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let held = hold(&state.runtime_env().memory_pool, "loaded table", bytes)?;
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

    /// A session capped at `cap` bytes with table `t`: 1000 rows of 1 KiB.
    fn session(cap: usize) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
        let s = Arc::clone(&schema);
        let load: Loader = Arc::new(move || {
            let col = StringArray::from(vec!["x".repeat(1024); 1000]);
            RecordBatch::try_new(Arc::clone(&s), vec![Arc::new(col)])
                .map(|b| vec![b])
                .map_err(|e| e.to_string())
        });
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(cap, 1.0)
            .build_arc()
            .expect("runtime");
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        ctx.register_table("t", Arc::new(LoadedTable::new(schema, load)))
            .expect("register");
        ctx
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
        let e = session(512 << 10)
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
}
