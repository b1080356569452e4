//! [`LoadedTable`]: a table whose rows come from a function called at each
//! scan, for small tables kept elsewhere (the persons metadata). Each
//! query reads the rows as they are when it is planned, so a change that
//! returned before the query began is always seen.
//!
//! The rows loaded are held while the query's plan lives, so they count
//! against the session's memory limit ([`hold`]) like its operators'
//! memory, until the plan is dropped: a query whose loaded rows alone
//! pass the limit fails with `ResourcesExhausted` (the rows are loaded
//! whole first, then refused).

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
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream,
};

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
/// when the plan is dropped.
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
        self.input.execute(partition, context)
    }
}
