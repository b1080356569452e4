//! [`ElideParquetSource`]: the file source of every Elide scan — DataFusion's
//! `ParquetSource` with Elide's reader ([`PartReaderFactory`]), marked as
//! Elide's so that no plan serialiser can mistake it for a plain parquet
//! scan.
//!
//! Elide's scan is a `DataSourceExec` over a `FileScanConfig` whose files
//! carry the deletion plan (an `ExpectedLayout` and a `ParquetAccessPlan`
//! per part, as `PartitionedFile` extensions) and whose reader fails
//! closed. DataFusion's plan serialisation (datafusion-proto) encodes a
//! `ParquetSource` without any of that: the reader factory is rebuilt
//! from defaults and the extensions are dropped, so a plain parquet scan
//! shipped to another process reads every deleted row. Wrapping the
//! source in a type of Elide's own makes the default codec refuse the
//! plan ("Unsupported plan"), and only [`crate::codec::ElideCodec`]
//! encodes it: with the snapshot version and the part ids, so that the
//! process that decodes it reloads the tombstones of that version.
//!
//! Invariant: every method that returns a new source returns an
//! `ElideParquetSource` again (never the inner `ParquetSource`), so no
//! optimizer rewrite — projection, filter or sort pushdown, a new batch
//! size — unwraps it. Everything else is the inner source's behaviour:
//! the scan reads, prunes and pushes down exactly as before.

use std::fmt::{self, Formatter};
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileOpener, FileScanConfig, FileSource, ParquetSource,
};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr};
use datafusion::physical_expr_common::sort_expr::PhysicalSortExpr;
use datafusion::physical_plan::filter_pushdown::FilterPushdownPropagation;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::{DisplayFormatType, SortOrderPushdownResult};
use datafusion_datasource::morsel::Morselizer;
use elide_store::{Snapshot, Table};
use object_store::ObjectStore;

/// The parquet source of an Elide scan: which table and which snapshot it
/// reads, around the `ParquetSource` that reads it (whose reader factory
/// is Elide's [`crate::access::PartReaderFactory`]).
#[derive(Clone)]
pub struct ElideParquetSource {
    inner: ParquetSource,
    table: Table,
    snapshot: Arc<Snapshot>,
}

impl fmt::Debug for ElideParquetSource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElideParquetSource")
            .field("table", &self.table)
            .field("version", &self.snapshot.version())
            .field("store_id", &self.snapshot.store_id())
            .finish()
    }
}

impl ElideParquetSource {
    /// `inner` (whose reader must be Elide's) reading `table` of `snapshot`.
    pub(crate) fn new(inner: ParquetSource, table: Table, snapshot: Arc<Snapshot>) -> Self {
        ElideParquetSource {
            inner,
            table,
            snapshot,
        }
    }

    /// The parquet source inside.
    pub fn parquet(&self) -> &ParquetSource {
        &self.inner
    }

    /// This source with `inner` instead (same table and snapshot).
    pub(crate) fn with_parquet(&self, inner: ParquetSource) -> Self {
        ElideParquetSource {
            inner,
            table: self.table,
            snapshot: Arc::clone(&self.snapshot),
        }
    }

    /// The table it reads.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The snapshot it reads.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// `source`, a source the inner `ParquetSource` returned, wrapped again.
    fn rewrap(&self, source: Arc<dyn FileSource>) -> Result<Arc<dyn FileSource>> {
        match source.downcast_ref::<ParquetSource>() {
            Some(p) => Ok(Arc::new(self.with_parquet(p.clone()))),
            None => Err(DataFusionError::Internal(format!(
                "the parquet source of an Elide scan turned into a {} source; refusing to plan it without Elide's reader",
                source.file_type()
            ))),
        }
    }
}

impl FileSource for ElideParquetSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        self.inner
            .create_file_opener(object_store, base_config, partition)
    }

    fn create_morselizer(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Box<dyn Morselizer>> {
        self.inner
            .create_morselizer(object_store, base_config, partition)
    }

    fn table_schema(&self) -> &TableSchema {
        self.inner.table_schema()
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        // `ParquetSource::with_batch_size` returns a `ParquetSource`, so the
        // second arm is not reached; it keeps Elide's reader rather than
        // hand back the unwrapped source.
        let resized = self.inner.with_batch_size(batch_size);
        match resized.downcast_ref::<ParquetSource>() {
            Some(p) => Arc::new(self.with_parquet(p.clone())),
            None => Arc::new(self.clone()),
        }
    }

    fn filter(&self) -> Option<Arc<dyn PhysicalExpr>> {
        self.inner.filter()
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        self.inner.projection()
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        self.inner.metrics()
    }

    fn file_type(&self) -> &str {
        self.inner.file_type()
    }

    fn fmt_extra(&self, t: DisplayFormatType, f: &mut Formatter) -> fmt::Result {
        self.inner.fmt_extra(t, f)?;
        write!(
            f,
            ", elide_table={}, elide_version={}",
            self.table,
            self.snapshot.version()
        )
    }

    fn supports_repartitioning(&self) -> bool {
        self.inner.supports_repartitioning()
    }

    fn repartitioned(
        &self,
        target_partitions: usize,
        repartition_file_min_size: usize,
        output_ordering: Option<LexOrdering>,
        config: &FileScanConfig,
    ) -> Result<Option<FileScanConfig>> {
        // The configuration returned keeps `config`'s source: this one.
        self.inner.repartitioned(
            target_partitions,
            repartition_file_min_size,
            output_ordering,
            config,
        )
    }

    fn try_pushdown_filters(
        &self,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn FileSource>>> {
        let pushed = self.inner.try_pushdown_filters(filters, config)?;
        let updated_node = match pushed.updated_node {
            Some(n) => Some(self.rewrap(n)?),
            None => None,
        };
        Ok(FilterPushdownPropagation {
            filters: pushed.filters,
            updated_node,
        })
    }

    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
        eq_properties: &EquivalenceProperties,
    ) -> Result<SortOrderPushdownResult<Arc<dyn FileSource>>> {
        Ok(match self.inner.try_pushdown_sort(order, eq_properties)? {
            SortOrderPushdownResult::Exact { inner } => SortOrderPushdownResult::Exact {
                inner: self.rewrap(inner)?,
            },
            SortOrderPushdownResult::Inexact { inner } => SortOrderPushdownResult::Inexact {
                inner: self.rewrap(inner)?,
            },
            SortOrderPushdownResult::Unsupported => SortOrderPushdownResult::Unsupported,
        })
    }

    fn reorder_files(&self, files: Vec<PartitionedFile>) -> Vec<PartitionedFile> {
        self.inner.reorder_files(files)
    }

    fn try_pushdown_projection(
        &self,
        projection: &ProjectionExprs,
    ) -> Result<Option<Arc<dyn FileSource>>> {
        match self.inner.try_pushdown_projection(projection)? {
            Some(s) => Ok(Some(self.rewrap(s)?)),
            None => Ok(None),
        }
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }
}
