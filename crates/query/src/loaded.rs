//! [`LoadedTable`]: a table whose rows come from a function called at each
//! scan, for small tables kept elsewhere (the persons metadata). Each
//! query reads the rows as they are when it is planned, so a change that
//! returned before the query began is always seen.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Loads a table's rows.
pub type Loader = Arc<dyn Fn() -> std::result::Result<Vec<RecordBatch>, String> + Send + Sync>;

/// A table read through a [`Loader`] at each scan.
#[derive(Clone)]
pub struct LoadedTable {
    schema: SchemaRef,
    load: Loader,
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
        _state: &dyn Session,
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
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}
