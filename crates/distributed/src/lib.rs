//! # elide-distributed: Elide's SQL across several processes
//!
//! [datafusion-distributed](https://github.com/datafusion-contrib/datafusion-distributed)
//! (datafusion-contrib, on DataFusion 55) cuts a physical plan into stages
//! and runs each stage's tasks on workers, gRPC services that receive the
//! stage's plan serialised with datafusion-proto. This crate makes that
//! safe for Elide's tables:
//!
//! - the **coordinator** ([`coordinator_context`]) is Elide's session (its
//!   tables, functions and optimizer rules) with the distributed planner
//!   and [`ElideCodec`] on top. It plans against the store's latest
//!   snapshot, as a single-node query does;
//! - a **worker** ([`worker`], [`serve_worker`]) has the same store open
//!   (read-only, on the same object storage or directory) and
//!   [`ElideCodec`]: it decodes each Elide scan against the snapshot
//!   version the coordinator pinned and reloads that version's tombstones
//!   itself, so the rows it reads are the coordinator's, deletions
//!   included;
//! - a worker without the codec cannot decode an Elide scan and fails the
//!   query; nothing falls back to a plain parquet scan (which would read
//!   the deleted rows). A plan can never be shipped without the codec
//!   either: DataFusion's default codec refuses Elide's scan. And a
//!   worker of this crate refuses any plan with a file scan that is not
//!   Elide's, whoever built it (a plain parquet scan of the store's parts
//!   would read deleted rows).
//!
//! What stays on the coordinator: planning, the snapshot choice, and the
//! buffered rows not yet in parts (they travel inside the plan, deletions
//! already applied). One writer per store, as always; workers only read.
//! docs/scale.md says how a deployment runs it.

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{
    DistributedExt, SessionStateBuilderExt, Worker, WorkerPlanRewriteEvent,
    WorkerPlanRewriteEventResponse, WorkerQueryContext, WorkerResolver,
};
use elide_query::{ElideCodec, ElideParquetSource};
use elide_store::Store;
use url::Url;

pub use datafusion_distributed;

/// Workers at fixed addresses (`http://host:port`).
#[derive(Debug, Clone)]
pub struct StaticWorkers(pub Vec<Url>);

impl WorkerResolver for StaticWorkers {
    fn get_urls(&self) -> Result<Vec<Url>> {
        if self.0.is_empty() {
            return Err(DataFusionError::Configuration(
                "a distributed session needs at least one worker".into(),
            ));
        }
        Ok(self.0.clone())
    }
}

/// How the coordinator spreads a query.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// The workers' URLs.
    pub workers: Vec<Url>,
    /// Bytes of parquet a task of a scan stage reads (datafusion-distributed's
    /// `file_scan_config_bytes_per_partition`); `None` keeps its default.
    /// Small values spread even a small table over every worker.
    pub bytes_per_partition: Option<usize>,
}

impl CoordinatorOptions {
    /// Spread over `workers` with datafusion-distributed's defaults.
    pub fn new(workers: Vec<Url>) -> Self {
        CoordinatorOptions {
            workers,
            bytes_per_partition: None,
        }
    }
}

/// A session over `store`'s tables (as `elide_query::session_context`)
/// whose queries run on `opts.workers`.
pub fn coordinator_context(store: &Store, opts: &CoordinatorOptions) -> Result<SessionContext> {
    let ctx = elide_query::session_context(store)?;
    let mut builder = SessionStateBuilder::new_from_existing(ctx.state())
        .with_distributed_worker_resolver(StaticWorkers(opts.workers.clone()))
        .with_distributed_planner()
        .with_distributed_user_codec(ElideCodec::new(store));
    if let Some(bytes) = opts.bytes_per_partition {
        builder = builder.with_distributed_file_scan_config_bytes_per_partition(bytes)?;
    }
    Ok(SessionContext::new_with_state(builder.build()))
}

/// The functions Elide's sessions have (DataFusion's and Elide's): a
/// worker needs them to decode the expressions of a plan.
#[derive(Debug, Clone)]
struct Functions {
    scalar: Vec<Arc<ScalarUDF>>,
    aggregate: Vec<Arc<AggregateUDF>>,
    window: Vec<Arc<WindowUDF>>,
}

impl Functions {
    fn of_elide() -> Result<Functions> {
        let mut ctx = SessionContext::new();
        elide_query::register_functions(&mut ctx)?;
        let state = ctx.state();
        // And the planner's marker for a UUID's text, which no SQL session
        // registers but which a plan keeps inside `GROUPING SETS`.
        let marker = elide_query::uuid_sql::planned_uuid_text_udf();
        Ok(Functions {
            scalar: state
                .scalar_functions()
                .values()
                .cloned()
                .chain([marker])
                .collect(),
            aggregate: state.aggregate_functions().values().cloned().collect(),
            window: state.window_functions().values().cloned().collect(),
        })
    }
}

/// A datafusion-distributed worker that executes stages over `store`
/// (opened by this process; read-only is enough): Elide's functions, and
/// [`ElideCodec`] decoding Elide's scans against it. The worker keeps the
/// store open while it lives.
pub fn worker(store: &Store) -> Result<Worker> {
    let functions = Functions::of_elide()?;
    let store = store.clone();
    Ok(Worker::from_session_builder(
        move |ctx: WorkerQueryContext| -> std::future::Ready<Result<SessionState>> {
            let state = ctx
                .builder
                .with_scalar_functions(functions.scalar.clone())
                .with_aggregate_functions(functions.aggregate.clone())
                .with_window_functions(functions.window.clone())
                .with_distributed_user_codec(ElideCodec::new(&store))
                .with_distributed_worker_plan_rewrite_handler(only_elide_scans)
                .build();
            std::future::ready(Ok(state))
        },
    ))
}

/// The check a worker runs on every plan it receives, before executing
/// it ([`check_worker_plan`]).
fn only_elide_scans(ev: WorkerPlanRewriteEvent<'_>) -> Result<WorkerPlanRewriteEventResponse> {
    check_worker_plan(&ev.plan)?;
    Ok(WorkerPlanRewriteEventResponse::new(ev.plan))
}

/// Refuse a plan a worker must not run, whoever sent it:
///
/// - a file scan that is not Elide's (decoded by [`ElideCodec`], with the
///   pinned version's deletions): a plain parquet scan of the store's
///   parts, which DataFusion's own decoder would build without the
///   deletions, or of any file the worker can read;
/// - a write (`DataSinkExec`): DataFusion's decoder builds CSV, JSON and
///   parquet sinks to any URL the worker's runtime knows (`file://`
///   included), and an Elide query never writes.
pub fn check_worker_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let mut refused: Option<String> = None;
    plan.apply(|node| {
        if node.downcast_ref::<DataSinkExec>().is_some() {
            refused = Some("an Elide worker runs only queries, not a write".into());
            return Ok(TreeNodeRecursion::Stop);
        }
        if let Some(exec) = node.downcast_ref::<DataSourceExec>() {
            if let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() {
                if config
                    .file_source()
                    .downcast_ref::<ElideParquetSource>()
                    .is_none()
                {
                    refused = Some(format!(
                        "an Elide worker runs only Elide's scans, not a {} scan of {}",
                        config.file_source().file_type(),
                        config.object_store_url.as_str()
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match refused {
        Some(why) => Err(DataFusionError::Plan(why)),
        None => Ok(()),
    }
}

/// A worker serving gRPC on a listener of its own, until dropped or
/// [`RunningWorker::shutdown`].
#[derive(Debug)]
pub struct RunningWorker {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl RunningWorker {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a coordinator reaches it at.
    pub fn url(&self) -> Result<Url> {
        Url::parse(&format!("http://{}", self.addr))
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// Stop serving and wait for the server to finish.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(DataFusionError::External(Box::new(e))),
                Err(e) => Err(DataFusionError::External(Box::new(e))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serve `worker` on `listener` (on the current tokio runtime).
pub fn serve_worker(worker: Worker, listener: tokio::net::TcpListener) -> Result<RunningWorker> {
    let addr = listener
        .local_addr()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(worker.into_worker_server())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "distributed worker listening");
    Ok(RunningWorker {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}
