//! [`ElideTable`]: a DataFusion `TableProvider` over one table of a store.
//!
//! ```text
//!  scan(filters, projection)
//!   │ snapshot = store.snapshot()              (consistent; pins its files)
//!   │ keep the parts of the table's project and of `project_id = N` filters
//!   │ prune parts by project_id / timestamp / _seq min-max (PruningPredicate)
//!   │ lookups (person_id / distinct_id = or IN): drop the parts, and skip
//!   │           the row groups, whose bloom filters rule out every id
//!   │           (PartReaderFactory::row_groups_with)
//!   │ per part: PartitionedFile + ParquetAccessPlan(tombstones, skips)
//!   │           + ExpectedLayout + statistics with num_rows = rows read
//!   ▼
//!  UnionExec( DataSourceExec(ElideParquetSource(parquet, PartReaderFactory)),
//!             DataSourceExec(memtable batches) )
//! ```
//!
//! The parquet source is wrapped in [`ElideParquetSource`] so that no plan
//! serialiser takes it for a plain parquet scan (which would read the
//! deleted rows); [`crate::codec::ElideCodec`] is the one that ships it.
//!
//! Filters are pushed down as `Inexact`: they prune parts and row groups,
//! and DataFusion still applies them above the scan. Deleted rows never
//! reach that filter: they are not decoded. One is `Exact`: `project_id =
//! N` (an `Int64` literal), because a project is a partition: the scan
//! plans only that project's parts (a part holds one project's rows) and
//! filters the buffered rows by it, so DataFusion drops the filter above
//! and the column is not read for it.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use elide_store::{PartMeta, Snapshot, Store, Table, WeakStore};
use futures::StreamExt;

use crate::access::{scan_plan, ExpectedLayout, LookupValue, PartReaderFactory};
use crate::scan::ElideParquetSource;
use crate::uuid_adapter::UuidTextAdapterFactory;

/// A table of an Elide store, as DataFusion sees it.
///
/// A live table takes a fresh snapshot at each scan (each query sees the
/// last commit); a pinned table always reads one snapshot, so that several
/// queries see the same state (and the files they need stay on disk).
///
/// A table limited to one project ([`ElideTable::for_project`]) never
/// reads another project's rows: parts of other projects are not planned
/// and buffered rows of other projects are filtered out before the scan
/// returns them, whatever the SQL says.
#[derive(Debug, Clone)]
pub struct ElideTable {
    source: Source,
    table: Table,
    schema: SchemaRef,
    project: Option<i64>,
}

#[derive(Debug, Clone)]
enum Source {
    /// The latest commit at each scan; the store is not kept open.
    Live(WeakStore),
    Pinned(Arc<Snapshot>),
}

impl ElideTable {
    /// The provider of `table` in `store`, reading the latest commit at
    /// each scan. It holds a [`WeakStore`]: it does not keep the store
    /// open, and a scan after the store was closed fails with
    /// `StoreError::Closed`.
    pub fn new(store: &Store, table: Table) -> Self {
        ElideTable {
            schema: scan_schema(&table.def().schema()),
            source: Source::Live(store.downgrade()),
            table,
            project: None,
        }
    }

    /// This table limited to the rows of `project`.
    pub fn for_project(mut self, project: i64) -> Self {
        self.project = Some(project);
        self
    }

    /// The provider of `table` as of `snapshot`.
    pub fn pinned(snapshot: Arc<Snapshot>, table: Table) -> Self {
        ElideTable {
            schema: scan_schema(&table.def().schema()),
            source: Source::Pinned(snapshot),
            table,
            project: None,
        }
    }

    /// URL under which the store's object store is registered with DataFusion.
    pub fn object_store_url(store_id: &str) -> Result<ObjectStoreUrl> {
        ObjectStoreUrl::parse(format!("elide://{store_id}/"))
    }
}

/// The schema a scan returns: the table's, with its strings as
/// `Utf8View`. The parquet reader then builds views onto each page's
/// dictionary (16 bytes a row) instead of copying every string, and
/// filters, joins and `GROUP BY` on strings move views, not bytes.
/// Parts on disk are unchanged (plain parquet strings). UUID columns
/// stay 16 bytes (text in parts written before is parsed, see
/// [`crate::uuid_adapter`]; SQL reads them as text, see
/// [`crate::uuid_sql`]).
pub(crate) fn scan_schema(def: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = def
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
            }
            _ => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, def.metadata().clone()))
}

/// Buffered batches, projected, in the scan's `schema` (already
/// projected): strings cast to views. Only the columns the query reads
/// are converted.
fn in_scan_schema(
    batches: Vec<RecordBatch>,
    projection: Option<&Vec<usize>>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|b| {
            let b = match projection {
                Some(p) => b.project(p)?,
                None => b,
            };
            let cols = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| match (c.data_type(), f.data_type()) {
                    (have, want) if have == want => Ok(Arc::clone(c)),
                    (_, want) => arrow::compute::cast(c, want),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            // `count(*)` projects no column: the row count carries the rows.
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(schema),
                cols,
                &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
            )?)
        })
        .collect()
}

/// Part min/max statistics for partition pruning.
struct PartStats<'a> {
    parts: &'a [&'a PartMeta],
}

impl PruningStatistics for PartStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, true)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, false)
    }

    fn num_containers(&self) -> usize {
        self.parts.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        match column.name.as_str() {
            "project_id" | "timestamp" | "_seq" => {
                Some(Arc::new(UInt64Array::from(vec![0u64; self.parts.len()])))
            }
            _ => None,
        }
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(
            self.parts.iter().map(|p| p.rows),
        )))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

impl PartStats<'_> {
    fn values(&self, column: &Column, min: bool) -> Option<ArrayRef> {
        let ps = self.parts;
        Some(match column.name.as_str() {
            "project_id" => Arc::new(Int64Array::from_iter_values(
                ps.iter().map(|p| p.project_id),
            )),
            "timestamp" => Arc::new(
                TimestampMicrosecondArray::from_iter_values(ps.iter().map(|p| {
                    if min {
                        p.min_ts
                    } else {
                        p.max_ts
                    }
                }))
                .with_timezone("UTC"),
            ),
            "_seq" => Arc::new(UInt64Array::from_iter_values(ps.iter().map(|p| {
                if min {
                    p.min_seq
                } else {
                    p.max_seq
                }
            }))),
            _ => return None,
        })
    }
}

fn part_statistics(schema: &SchemaRef, live_rows: u64, bytes: u64) -> Statistics {
    let mut s = Statistics::new_unknown(schema);
    s.num_rows = Precision::Exact(live_rows as usize);
    s.total_byte_size = Precision::Inexact(bytes as usize);
    s
}

#[async_trait]
impl TableProvider for ElideTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // `project_id = N` is a partition: the scan applies it exactly
        // (parts of other projects are not planned, buffered rows of
        // other projects are filtered out), so no filter runs above it.
        Ok(filters
            .iter()
            .map(|f| {
                if project_equals(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = match &self.source {
            Source::Live(store) => Arc::new(
                store
                    .upgrade()
                    .and_then(|s| s.snapshot())
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            ),
            Source::Pinned(s) => Arc::clone(s),
        };
        let schema = Arc::clone(&self.schema);
        let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
        let predicate = match conjunction(filters.iter().cloned()) {
            Some(expr) => Some(state.create_physical_expr(expr, &df_schema)?),
            None => None,
        };

        // The projects the scan is limited to: the table's, and those of
        // the `project_id = N` filters it applies exactly (all must hold).
        let mut projects: Vec<i64> = self
            .project
            .into_iter()
            .chain(filters.iter().filter_map(project_equals))
            .collect();
        projects.sort_unstable();
        projects.dedup();
        let in_projects = |id: i64| projects.iter().all(|p| *p == id);

        // Partition pruning over part statistics.
        let all: Vec<&PartMeta> = snapshot
            .parts(self.table)
            .filter(|p| in_projects(p.project_id))
            .collect();
        let mut keep = vec![true; all.len()];
        if let Some(pred) = &predicate {
            let pp = PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(&schema))
                .build(Arc::clone(pred));
            if let Some(pp) = pp {
                keep = pp.prune(&PartStats { parts: &all })?;
            }
        }
        let store_err = |e: elide_store::StoreError| DataFusionError::External(Box::new(e));
        let mut candidates = Vec::new();
        for (part, keep) in all.iter().zip(keep) {
            if !keep || part.live_rows() == 0 {
                continue;
            }
            // Tombstone bits, and the rows of logical requests (an undo
            // window, a predicate being resolved), which the manifest's
            // figures do not count. (A part whose tombstone lacks rows the
            // manifest counts deleted is an error there: fail closed.)
            let hidden = hidden_rows(&snapshot, part).map_err(store_err)?;
            let live_rows = part.rows - hidden.as_ref().map_or(0, |b| b.cardinality());
            if live_rows == 0 {
                continue;
            }
            let file = PartitionedFile::new(part.path.clone(), part.size)
                .with_extension(ExpectedLayout::of(part, snapshot.store_id()));
            candidates.push((*part, hidden, live_rows, file));
        }
        let url = ElideTable::object_store_url(snapshot.store_id())?;
        let object_store = snapshot.storage().inner();
        state
            .runtime_env()
            .register_object_store(url.as_ref(), Arc::clone(&object_store));
        let factory = PartReaderFactory::cached(Arc::clone(&snapshot), state.runtime_env());
        // Lookups by person or distinct id: which row groups of each part
        // the bloom filters leave, before any tombstone is turned into a
        // row selection. A part they rule out whole is not opened at all
        // (opening a part costs more than scanning the few row groups a
        // person has).
        let lookups = predicate.as_ref().map(id_lookups).unwrap_or_default();
        let row_groups: Vec<Option<Vec<bool>>> = match lookups.is_empty() {
            true => vec![None; candidates.len()],
            false => {
                let (factory, lookups, candidates) = (&factory, &lookups, &candidates);
                futures::stream::iter(0..candidates.len())
                    .map(|i| row_groups_left(factory, lookups, &candidates[i].3))
                    .buffered(16)
                    .collect()
                    .await
            }
        };
        let mut files = Vec::new();
        for ((part, hidden, live_rows, file), left) in candidates.into_iter().zip(row_groups) {
            // (`row_groups_with` answers only for a footer whose row
            // groups are the manifest's, which the tombstones fit.)
            let left = left.filter(|l| l.len() == part.row_groups.len());
            if left.as_ref().is_some_and(|l| !l.contains(&true)) {
                continue;
            }
            let skip: Vec<usize> = left
                .iter()
                .flatten()
                .enumerate()
                .filter(|(_, l)| !**l)
                .map(|(i, _)| i)
                .collect();
            let plan = scan_plan(part, hidden.as_deref(), &skip)?;
            let mut rows = live_rows;
            if let Some(p) = plan.as_ref().filter(|_| !skip.is_empty()) {
                rows = rows_read(p, &part.row_groups);
                if rows == 0 {
                    continue;
                }
            }
            let mut file =
                file.with_statistics(Arc::new(part_statistics(&schema, rows, part.size)));
            if let Some(plan) = plan {
                file = file.with_extension(plan);
            }
            files.push(ScanFile {
                file,
                bytes: part.size,
                rows,
                order: (part.project_id, part.min_ts, part.id),
            });
        }
        tracing::debug!(table = %self.table, parts_total = all.len(), parts_scanned = files.len(), "elide scan planned");

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let target = state.config().target_partitions().max(1);
            let groups = balance(files, target, &schema);
            let total_rows: u64 = groups.iter().map(|(_, r, _)| *r).sum();
            let total_bytes: u64 = groups.iter().map(|(_, _, b)| *b).sum();
            let parquet_opts = state.default_table_options().parquet;
            let mut source = ParquetSource::new(Arc::clone(&schema))
                .with_table_parquet_options(parquet_opts)
                .with_parquet_file_reader_factory(Arc::new(factory))
                .with_enable_page_index(true);
            if let Some(pred) = &predicate {
                source = source.with_predicate(Arc::clone(pred));
            }
            let source = ElideParquetSource::new(source, self.table, Arc::clone(&snapshot));
            let config = FileScanConfigBuilder::new(url, Arc::new(source))
                .with_file_groups(groups.into_iter().map(|(g, _, _)| g).collect())
                .with_statistics(part_statistics(&schema, total_rows, total_bytes))
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .with_expr_adapter(Some(Arc::new(UuidTextAdapterFactory)))
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        let mut mem = snapshot.memtable_batches(self.table).to_vec();
        for id in &projects {
            mem = of_project(&mem, *id)?;
        }
        if !mem.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => Arc::clone(&schema),
            };
            let mem = in_scan_schema(mem, projection, &projected)?;
            inputs.push(MemorySourceConfig::try_new_exec(&[mem], projected, None)?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// [`Snapshot::hidden`] of `part`. Under a logical request its first
/// call reads the part (then it is cached): on a multi-threaded tokio
/// runtime the worker thread is handed over for that while (other tasks
/// move on); elsewhere it reads in place.
pub(crate) fn hidden_rows(
    snapshot: &elide_store::Snapshot,
    part: &PartMeta,
) -> elide_store::Result<Option<Arc<croaring::Bitmap>>> {
    // No logical request (the common case): the tombstone, no lookup.
    if !snapshot.has_logical_requests() {
        return snapshot.hidden(part);
    }
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(|| snapshot.hidden(part))
    } else {
        snapshot.hidden(part)
    }
}

/// `N` of a filter `project_id = N` (either way round, `N` an `Int64`
/// literal): a filter the scan applies exactly.
fn project_equals(filter: &Expr) -> Option<i64> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = filter
    else {
        return None;
    };
    let is_project =
        |e: &Expr| matches!(e, Expr::Column(c) if c.name == elide_store::schema::PROJECT_COLUMN);
    let value = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Int64(Some(n)), _) => Some(*n),
        _ => None,
    };
    match (left.as_ref(), right.as_ref()) {
        (l, r) if is_project(l) => value(r),
        (l, r) if is_project(r) => value(l),
        _ => None,
    }
}

/// The rows of `project` in buffered batches.
fn of_project(batches: &[RecordBatch], project: i64) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let ids = b
            .column_by_name(elide_store::schema::PROJECT_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| {
                DataFusionError::Internal("a buffered batch has no Int64 project_id".into())
            })?;
        let keep: BooleanArray = ids.iter().map(|v| Some(v == Some(project))).collect();
        let kept = arrow::compute::filter_record_batch(b, &keep)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

/// What `pred` requires of the bloom-filtered columns: for each such
/// column that must be one of a set of values for a row to match
/// (`person_id = '…'`, `distinct_id IN (…)`, under `AND`), the values,
/// each as text and, when it is a UUID, as its 16 bytes (computed once
/// here, not for each part).
fn id_lookups(
    pred: &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
) -> Vec<(String, Vec<LookupValue>)> {
    use datafusion::physical_expr::utils::{Guarantee, LiteralGuarantee};
    LiteralGuarantee::analyze(pred)
        .into_iter()
        .filter(|g| {
            g.guarantee == Guarantee::In
                && elide_store::BLOOM_FILTER_COLUMNS.contains(&g.column.name())
        })
        .filter_map(|g| {
            let values = g
                .literals
                .iter()
                .map(|v| match v {
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::Utf8View(Some(s))
                    | ScalarValue::LargeUtf8(Some(s)) => Some(LookupValue {
                        text: s.clone(),
                        uuid: uuid::Uuid::try_parse(s).ok().map(|u| *u.as_bytes()),
                    }),
                    ScalarValue::FixedSizeBinary(16, Some(b)) => {
                        uuid::Uuid::from_slice(b).ok().map(|u| LookupValue {
                            text: u.hyphenated().to_string(),
                            uuid: Some(*u.as_bytes()),
                        })
                    }
                    _ => None,
                })
                .collect::<Option<Vec<LookupValue>>>()?;
            Some((g.column.name().to_string(), values))
        })
        .collect()
}

/// Which row groups of `file` may hold a row with every lookup's column
/// one of its values, by the bloom filters; `None` when that cannot be
/// known (every row group is then read).
async fn row_groups_left(
    factory: &PartReaderFactory,
    lookups: &[(String, Vec<LookupValue>)],
    file: &PartitionedFile,
) -> Option<Vec<bool>> {
    let mut left: Option<Vec<bool>> = None;
    for (column, values) in lookups {
        let Some(these) = factory.row_groups_with(file, column, values).await else {
            continue;
        };
        left = Some(match left {
            None => these,
            Some(before) => before.iter().zip(&these).map(|(a, b)| *a && *b).collect(),
        });
    }
    left
}

/// The rows `plan` reads of row groups of `row_groups` rows each.
fn rows_read(plan: &ParquetAccessPlan, row_groups: &[u64]) -> u64 {
    plan.inner()
        .iter()
        .zip(row_groups)
        .map(|(access, &n)| match access {
            RowGroupAccess::Skip => 0,
            RowGroupAccess::Scan => n,
            RowGroupAccess::Selection(s) => s.row_count() as u64,
        })
        .sum()
}

/// A part to scan, with what [`balance`] needs to place it.
struct ScanFile {
    file: PartitionedFile,
    bytes: u64,
    rows: u64,
    /// Read order within a group: project, then time.
    order: (i64, i64, u64),
}

/// Spread files over `target` groups, largest first onto the lightest
/// group; then each group reads its files in (project, time) order, so
/// that a person's rows reach an operator roughly in time order (parts
/// keep a person's rows in time order; `window_funnel` then rarely sorts).
fn balance(
    mut files: Vec<ScanFile>,
    target: usize,
    schema: &SchemaRef,
) -> Vec<(FileGroup, u64, u64)> {
    files.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    let n = target.min(files.len()).max(1);
    let mut groups: Vec<(Vec<ScanFile>, u64, u64)> = (0..n).map(|_| (Vec::new(), 0, 0)).collect();
    for f in files {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.2) {
            g.1 += f.rows;
            g.2 += f.bytes;
            g.0.push(f);
        }
    }
    groups
        .into_iter()
        .map(|(mut files, rows, bytes)| {
            files.sort_by_key(|f| f.order);
            let g = FileGroup::new(files.into_iter().map(|f| f.file).collect())
                .with_statistics(Arc::new(part_statistics(schema, rows, bytes)));
            (g, rows, bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: u64, project: i64, min_ts: i64, id: u64) -> ScanFile {
        ScanFile {
            file: PartitionedFile::new(name.to_string(), bytes),
            bytes,
            rows: bytes,
            order: (project, min_ts, id),
        }
    }

    /// Groups are balanced by bytes, and each reads its parts in
    /// (project, time) order whatever their sizes.
    #[test]
    fn groups_are_balanced_and_read_in_project_and_time_order() {
        let schema = scan_schema(&Table::Events.def().schema());
        let files = vec![
            file("p2-d1", 50, 2, 100, 1),
            file("p1-d3", 90, 1, 300, 2),
            file("p1-d1", 10, 1, 100, 3),
            file("p1-d2", 80, 1, 200, 4),
            file("p2-d0", 20, 2, 0, 5),
            file("p1-d0", 60, 1, 0, 6),
        ];
        let groups = balance(files, 2, &schema);
        let names: Vec<Vec<String>> = groups
            .iter()
            .map(|(g, _, _)| {
                g.files()
                    .iter()
                    .map(|f| f.object_meta.location.to_string())
                    .collect()
            })
            .collect();
        // Largest first onto the lightest: 90 → a, 80 → b, 60 → b (140),
        // 50 → a (140), 20 → a (160), 10 → b (150).
        assert_eq!(
            names,
            vec![
                vec!["p1-d3", "p2-d0", "p2-d1"],
                vec!["p1-d0", "p1-d1", "p1-d2"],
            ]
        );
        let bytes: Vec<u64> = groups.iter().map(|(_, _, b)| *b).collect();
        assert_eq!(bytes, vec![160, 150]);
    }
}
