//! # elide-query: Elide through Apache DataFusion
//!
//! This crate owns the bridge from the storage engine to SQL: one
//! [`ElideTable`] (a `TableProvider`) per table, and [`session_context`],
//! which registers `events` and `recordings` together with JSON functions
//! (`json_get_str(properties, '$browser')`, ...) and the analytics
//! functions ([`funnel`]).
//!
//! The contract with the store: a scan reads one [`elide_store::Snapshot`];
//! tombstones become parquet row selections ([`access`]); the statistics
//! reported to DataFusion count live rows only, so `count(*)` answered from
//! statistics never brings deleted rows back; and the scan fails closed when
//! a part's tombstones cannot be applied to its file. The scan's file
//! source is [`ElideParquetSource`], which DataFusion's default plan codec
//! refuses; [`ElideCodec`] ships it to another process, where the
//! tombstones of the same snapshot version are reloaded ([`codec`]).
//!
//! It depends on `elide-store` and DataFusion, never on HTTP or SQLite.

#![warn(missing_docs)]

mod access;
mod bounded;
pub mod codec;
pub mod count_by_key;
pub mod deadline;
pub mod distinct_keys;
pub mod distinct_runs;
pub mod funnel;
mod loaded;
mod props;
mod provider;
pub mod row_patterns;
pub mod scan;
mod scan_predicate;
pub mod sql_depth;
#[cfg(test)]
mod test_support;
mod utc_trunc;
pub mod uuid_adapter;
pub mod uuid_in_list;
pub mod uuid_sql;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::{SessionConfig, SessionContext};
use elide_store::{Snapshot, Store, Table};

pub use access::ExpectedLayout;
pub use codec::ElideCodec;
pub use loaded::{hold, LoadedTable, Loader};
pub use props::{parse_filters, PropertiesMatch, MAX_QUERY_PATTERNS, PROPERTIES_MATCH};
pub use provider::ElideTable;
pub use scan::ElideParquetSource;
pub use utc_trunc::UtcDateTrunc;

/// A `SessionContext` with every table of `store` registered and JSON
/// functions available.
pub fn session_context(store: &Store) -> Result<SessionContext> {
    let ctx = base_context()?;
    register_tables(&ctx, store, None)?;
    Ok(ctx)
}

/// A `SessionContext` for one project's queries: its tables hold only
/// that project's rows ([`ElideTable::for_project`]), and the memory its
/// operators may hold is capped at `memory_limit` bytes when given (a
/// query over the cap fails with `ResourcesExhausted` rather than growing
/// the process).
pub fn project_session_context(
    store: &Store,
    project: i64,
    memory_limit: Option<usize>,
) -> Result<SessionContext> {
    let config = session_config();
    let mut ctx = match memory_limit {
        None => SessionContext::new_with_config(config),
        Some(bytes) => {
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_limit(bytes, 1.0)
                .build_arc()?;
            SessionContext::new_with_config_rt(config, runtime)
        }
    };
    register_functions(&mut ctx)?;
    register_tables(&ctx, store, Some(project))?;
    Ok(ctx)
}

fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
}

fn base_context() -> Result<SessionContext> {
    let mut ctx = SessionContext::new_with_config(session_config());
    register_functions(&mut ctx)?;
    Ok(ctx)
}

/// Add the functions Elide's sessions have to a session of the caller's:
/// the JSON functions (`json_get_str(properties, '$browser')`,
/// `properties->>'$browser'`, ...) and the analytics functions
/// (`window_funnel`, `funnel_path`; see [`funnel`] and docs/sql.md) and
/// `properties_match(properties, filters)` ([`PropertiesMatch`]), and
/// `date_trunc` replaced by [`UtcDateTrunc`] (the same function, fast on
/// UTC timestamps); the analyzer rule that gives 16-byte UUID columns the
/// SQL of text ([`uuid_sql`]), the physical optimizer rule that leaves
/// Elide scans' parquet readers only the predicate they can use (the
/// `scan_predicate` module), and the one that counts rows by a string key
/// with the key's view as the hash key ([`count_by_key`]), and the one
/// that drops repeated rows before a `GROUP BY` with no aggregate function
/// ([`distinct_runs`], the first phase of `count(DISTINCT …)`), and the
/// one that runs the final phase of such a `GROUP BY` over narrow keys in
/// cache-sized buckets ([`distinct_keys`]), and the one that answers a filter's `IN` list of UUIDs from a set of 128-bit
/// integers ([`uuid_in_list`]); and the analyzer pass that bounds the
/// compiling of regex and LIKE patterns that change from row to row
/// ([`row_patterns`]). Installing the
/// rules builds the session's state anew: `*ctx` is replaced by a session
/// with the same configuration, tables and functions (and a new session
/// id), so clones of `ctx` taken before do not have them.
pub fn register_functions(ctx: &mut SessionContext) -> Result<()> {
    // UUID columns of 16 bytes with the SQL of text: before type coercion.
    // Then, after DataFusion's physical rules, Elide's: scans' parquet
    // readers get only the predicate they can use; counts by a string key;
    // repeated rows dropped before a GROUP BY without aggregates, and its
    // final phase in buckets; IN lists of UUIDs in filters answered from a
    // set of integers.
    let state = ctx.state();
    let has_uuid_sql = state
        .analyzer()
        .rules
        .iter()
        .any(|r| r.name() == "uuid_sql");
    let physical: [Arc<dyn PhysicalOptimizerRule + Send + Sync>; 5] = [
        Arc::new(scan_predicate::TrimScanPredicates),
        Arc::new(count_by_key::CountByKey),
        Arc::new(distinct_runs::DistinctRuns),
        Arc::new(distinct_keys::DistinctKeys),
        Arc::new(uuid_in_list::UuidInLists),
    ];
    let missing: Vec<_> = physical
        .into_iter()
        .filter(|r| {
            !state
                .physical_optimizers()
                .iter()
                .any(|h| h.name() == r.name())
        })
        .collect();
    if !has_uuid_sql || !missing.is_empty() {
        let mut rules = state.analyzer().rules.clone();
        let mut builder = datafusion::execution::SessionStateBuilder::new_from_existing(state);
        if !has_uuid_sql {
            rules.insert(0, Arc::new(uuid_sql::UuidSql));
            builder = builder.with_analyzer_rules(rules);
        }
        for rule in missing {
            builder = builder.with_physical_optimizer_rule(rule);
        }
        *ctx = SessionContext::new_with_state(builder.build());
    }
    // Once per session (registering again would only add a second pass).
    let planners = ctx.state().expr_planners().to_vec();
    let ours = format!("{:?}", uuid_sql::UuidLiterals);
    if !planners.iter().any(|p| format!("{p:?}") == ours) {
        use datafusion::execution::FunctionRegistry;
        ctx.register_expr_planner(Arc::new(uuid_sql::UuidLiterals))?;
    }
    ctx.register_udf(uuid_sql::uuid_text_udf().as_ref().clone());
    ctx.register_udf(uuid_sql::uuid_from_text_udf().as_ref().clone());
    datafusion_functions_json::register_all(ctx)?;
    funnel::register(ctx);
    ctx.register_udf(UtcDateTrunc::udf());
    ctx.register_udf(PropertiesMatch::udf());
    bounded::register(ctx);
    row_patterns::register(ctx)?;
    Ok(())
}

/// Register every table of `store` (`events`, `recordings`) on a session
/// of the caller's, next to its own tables; with `project`, each holds
/// only that project's rows. The tables read the latest commit at each
/// scan and hold the store weakly (see [`ElideTable::new`]).
///
/// ```no_run
/// # fn f(store: &elide_store::Store) -> datafusion::error::Result<()> {
/// use datafusion::prelude::SessionContext;
/// let mut ctx = SessionContext::new();
/// elide_query::register_functions(&mut ctx)?;
/// elide_query::register_tables(&ctx, store, Some(1))?;
/// # Ok(()) }
/// ```
pub fn register_tables(ctx: &SessionContext, store: &Store, project: Option<i64>) -> Result<()> {
    for table in Table::ALL {
        let provider = ElideTable::new(store, table);
        let provider = match project {
            Some(p) => provider.for_project(p),
            None => provider,
        };
        ctx.register_table(table.name(), Arc::new(provider))?;
    }
    Ok(())
}

/// A `SessionContext` whose tables all read `snapshot` (consistent reads
/// across several queries; see [`ElideTable::pinned`]).
pub fn session_context_at(snapshot: Arc<Snapshot>) -> Result<SessionContext> {
    let ctx = base_context()?;
    for table in Table::ALL {
        ctx.register_table(
            table.name(),
            Arc::new(ElideTable::pinned(Arc::clone(&snapshot), table)),
        )?;
    }
    Ok(ctx)
}

/// The result of a statement: its schema (known even when no row came
/// back, so an empty result can still be written as a typed file) and its
/// batches.
#[derive(Debug, Clone)]
pub struct SqlOutput {
    /// The result's schema.
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    /// The rows, in batches (possibly none).
    pub batches: Vec<RecordBatch>,
}

impl SqlOutput {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// One batch holding every row (typed by the schema, also when empty).
    pub fn concat(&self) -> Result<RecordBatch> {
        Ok(datafusion::arrow::compute::concat_batches(
            &self.schema,
            &self.batches,
        )?)
    }
}

async fn collect(df: datafusion::dataframe::DataFrame) -> Result<SqlOutput> {
    let (schema, batches) = collect_with_schema(df).await?;
    Ok(SqlOutput { schema, batches })
}

/// Run `df` and return its rows with the schema they have. Not
/// `df.schema()`: that is the plan's before the analyzer ran, in which UUID
/// columns are still 16 bytes where the rows hold text (see [`uuid_sql`]).
pub async fn collect_with_schema(
    df: datafusion::dataframe::DataFrame,
) -> Result<(datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    collect_with_schema_within(df, usize::MAX).await
}

/// [`collect_with_schema`], refusing (`ResourcesExhausted`) once the rows
/// hold more than `budget` bytes of arrays. Collected rows are outside
/// the memory pool: a caller that hands them on (the query route copies
/// them to JSON) bounds them here.
pub async fn collect_with_schema_within(
    df: datafusion::dataframe::DataFrame,
    budget: usize,
) -> Result<(datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    use futures::StreamExt;
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let schema = plan.schema();
    let mut stream = datafusion::physical_plan::execute_stream(plan, task)?;
    let (mut batches, mut bytes) = (Vec::new(), 0usize);
    while let Some(b) = stream.next().await {
        let b = b?;
        bytes = bytes.saturating_add(b.get_array_memory_size());
        if bytes > budget {
            return Err(datafusion::error::DataFusionError::ResourcesExhausted(format!(
                "the result holds more than {} MiB; select fewer or narrower columns, or fewer rows (LIMIT)",
                budget >> 20
            )));
        }
        batches.push(b);
    }
    Ok((schema, batches))
}

/// Run one SQL statement and collect its result (any statement the
/// session allows; see [`run_sql_checked`] for user-facing SQL).
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<SqlOutput> {
    let df = ctx.sql(sql).await.map_err(uuid_sql::with_uuid_hint)?;
    collect(df).await
}

/// What user SQL may write.
#[derive(Debug, Clone, Copy)]
pub enum SqlWrites<'a> {
    /// Nothing: `COPY ... TO`, `INSERT` and other writes are refused.
    None,
    /// `COPY ... TO` files outside this data directory (which holds the
    /// store's own files: a write there could corrupt it); no `INSERT`.
    CopyOutside(&'a std::path::Path),
}

/// Run user SQL: reads always; writes only as `writes` allows. Session
/// statements (`SET`, `SHOW`) and in-session DDL (`CREATE VIEW`,
/// `CREATE EXTERNAL TABLE`, which only read) are allowed.
pub async fn run_sql_checked(
    ctx: &SessionContext,
    sql: &str,
    writes: SqlWrites<'_>,
) -> Result<SqlOutput> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::error::DataFusionError;
    use datafusion::execution::context::SQLOptions;
    use datafusion::logical_expr::LogicalPlan;
    let state = ctx.state();
    let statement = sql_depth::parse_checked(&state, sql).map_err(uuid_sql::with_uuid_hint)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(uuid_sql::with_uuid_hint)?;
    let mut refused: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        let why = match (node, writes) {
            (LogicalPlan::Copy(_) | LogicalPlan::Dml(_), SqlWrites::None) => Some(
                "SQL here is read-only: COPY, INSERT, UPDATE and DELETE are refused \
                 (elide sql --allow-writes permits COPY ... TO files outside the data directory)"
                    .to_string(),
            ),
            (LogicalPlan::Dml(d), SqlWrites::CopyOutside(_)) => {
                Some(format!("{} is refused: only COPY ... TO may write", d.op))
            }
            (LogicalPlan::Copy(c), SqlWrites::CopyOutside(dir)) => {
                inside(dir, &c.output_url).then(|| {
                    format!(
                        "COPY TO {} is refused: it is inside the data directory {}",
                        c.output_url,
                        dir.display()
                    )
                })
            }
            _ => None,
        };
        if let Some(w) = why {
            refused = Some(w);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if let Some(why) = refused {
        return Err(DataFusionError::Plan(why));
    }
    SQLOptions::new()
        .with_allow_dml(!matches!(writes, SqlWrites::None))
        .verify_plan(&plan)?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(uuid_sql::with_uuid_hint)?;
    collect(df).await
}

/// Whether a local output location lies inside `dir` (when in doubt, yes).
fn inside(dir: &std::path::Path, url: &str) -> bool {
    let path = match url.split_once("://") {
        Some(("file", rest)) => rest,
        Some(_) => return false, // another object store, not this disk
        None => url,
    };
    match (
        elide_store::io::canonical_lenient(std::path::Path::new(path)),
        dir.canonicalize(),
    ) {
        (Some(target), Ok(dir)) => target.starts_with(dir),
        _ => true,
    }
}
