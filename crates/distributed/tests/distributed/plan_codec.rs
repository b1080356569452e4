//! The guard: Elide's physical plan through datafusion-proto. DataFusion's
//! default codec must refuse it (a plain parquet scan decoded elsewhere
//! reads the deleted rows) — or, should it ever encode it, the decoded
//! plan must still hide them. Elide's codec must ship it so that a
//! process with the store open reads exactly the rows the coordinator
//! would; its bytes must not decode without it.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::{
    physical_plan_from_bytes, physical_plan_from_bytes_with_extension_codec,
    physical_plan_to_bytes, physical_plan_to_bytes_with_extension_codec,
};
use elide_query::ElideCodec;
use elide_store::Store;

use crate::common::{opts, pairs, store_with_deletions, Backend};

const ROWS: &str = "SELECT project_id, distinct_id FROM events";

async fn ids_of(plan: Arc<dyn ExecutionPlan>, ctx: &SessionContext) -> Vec<(i64, String)> {
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .unwrap();
    batches.iter().flat_map(pairs).collect()
}

/// The physical plan of [`ROWS`] on `ctx`.
async fn planned(ctx: &SessionContext) -> Arc<dyn ExecutionPlan> {
    ctx.sql(ROWS)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

fn sorted(mut v: Vec<(i64, String)>) -> Vec<(i64, String)> {
    v.sort();
    v
}

/// A session as a worker has it: Elide's functions, no tables.
fn worker_session() -> SessionContext {
    let mut ctx = SessionContext::new();
    elide_query::register_functions(&mut ctx).unwrap();
    ctx
}

/// A store with deletions, a coordinator session over it, and the same
/// directory opened read-only as a worker process has it.
struct Shipping {
    _dir: tempfile::TempDir,
    store: Store,
    ids: crate::common::Ids,
    gone: BTreeSet<(i64, String)>,
    ctx: SessionContext,
    reader: Store,
    worker: SessionContext,
}

impl Shipping {
    fn new() -> Shipping {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, gone) = store_with_deletions(&Backend::local(dir.path()));
        let reader = Store::open_read_only(dir.path().join("data"), opts()).unwrap();
        Shipping {
            ctx: elide_query::session_context(&store).unwrap(),
            gone: gone.into_iter().collect(),
            _dir: dir,
            store,
            ids,
            reader,
            worker: worker_session(),
        }
    }

    /// A plan of [`ROWS`], its rows on the coordinator, and its bytes
    /// (Elide's codec). The caller keeps the plan while workers run it,
    /// as a coordinator does.
    async fn ship(&self) -> (Arc<dyn ExecutionPlan>, Vec<(i64, String)>, Vec<u8>) {
        let plan = planned(&self.ctx).await;
        let rows = sorted(ids_of(Arc::clone(&plan), &self.ctx).await);
        let bytes = physical_plan_to_bytes_with_extension_codec(
            Arc::clone(&plan),
            &ElideCodec::new(&self.store),
        )
        .unwrap();
        (plan, rows, bytes.to_vec())
    }

    /// `bytes` decoded against the read-only handle and run there.
    async fn on_worker(&self, bytes: &[u8]) -> Vec<(i64, String)> {
        let decoded = physical_plan_from_bytes_with_extension_codec(
            bytes,
            &self.worker.task_ctx(),
            &ElideCodec::new(&self.reader),
        )
        .unwrap();
        sorted(ids_of(decoded, &self.worker).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_codec_never_ships_a_scan_that_resurrects_deleted_rows() {
    let t = Shipping::new();
    let (ctx, gone) = (&t.ctx, &t.gone);
    let plan = planned(ctx).await;
    let expected = sorted(ids_of(Arc::clone(&plan), ctx).await);
    assert!(!expected.is_empty());
    assert!(expected.iter().all(|r| !gone.contains(r)));

    match physical_plan_to_bytes(Arc::clone(&plan)) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("Unsupported plan"), "{msg}");
        }
        Ok(bytes) => {
            // Encodable after all: then the decoded plan must hide the
            // deleted rows like the original. (Decoded in the planning
            // session, where the store's objects are registered: the
            // kindest place for it.)
            let decoded = physical_plan_from_bytes(&bytes, &ctx.task_ctx()).unwrap();
            let got = sorted(ids_of(decoded, ctx).await);
            let resurrected = got.iter().filter(|r| gone.contains(*r)).count();
            assert_eq!(resurrected, 0, "the decoded plan reads deleted rows");
            assert_eq!(got, expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elides_codec_ships_the_scan_with_its_deletions_and_nothing_else_decodes_it() {
    let t = Shipping::new();
    let (_plan, expected, bytes) = t.ship().await;

    // The worker: the same directory opened read-only, as another process
    // (or machine, on object storage) has it.
    let got = t.on_worker(&bytes).await;
    assert_eq!(got, expected);
    assert!(got.iter().all(|r| !t.gone.contains(r)));

    // Without Elide's codec the bytes do not decode: no plain parquet
    // scan is made of them.
    let err = physical_plan_from_bytes(&bytes, &t.worker.task_ctx())
        .expect_err("Elide's scan decoded without Elide's codec");
    assert!(!err.to_string().is_empty());

    // Against another store, the codec refuses the scan.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open(other_dir.path(), opts()).unwrap();
    let err = physical_plan_from_bytes_with_extension_codec(
        &bytes,
        &t.worker.task_ctx(),
        &ElideCodec::new(&other),
    )
    .expect_err("decoded against another store");
    assert!(err.to_string().contains("version"), "{err}");
}

/// A plan reads the version it was planned at, on the worker too: rows
/// deleted after planning are still in its result (as in a single-node
/// query that started before the delete), and the next plan hides them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reads_the_pinned_version_and_the_next_plan_sees_the_delete() {
    let t = Shipping::new();
    let (_plan, before, bytes) = t.ship().await;

    // Delete more (a newer version than the reader opened at).
    let more: BTreeSet<(i64, String)> = t
        .ids
        .iter()
        .filter(|r| !t.gone.contains(r))
        .step_by(7)
        .cloned()
        .collect();
    for (project, id) in &more {
        t.store
            .delete(elide_store::DeleteSpec::ids(*project, [id.clone()]))
            .unwrap();
    }
    assert_eq!(t.on_worker(&bytes).await, before);

    let (_plan, after, bytes) = t.ship().await;
    let got = t.on_worker(&bytes).await;
    assert_eq!(got, after);
    assert!(got.iter().all(|r| !more.contains(r)));
    assert!(got.len() < before.len());
}

#[test]
fn a_version_that_is_not_on_storage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = store_with_deletions(&Backend::local(dir.path()));
    let err = store
        .snapshot_at(store.snapshot().unwrap().version() + 1000)
        .expect_err("a snapshot of a version never written");
    assert!(err.to_string().contains("no longer on storage"), "{err}");
}

/// A purge between planning and the worker's execution: the plan's
/// version keeps its files (the coordinator's snapshot holds them against
/// the writer's GC), so the worker reads them with that version's
/// tombstones; the next plan reads the purged parts, which hold no
/// deleted row at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_while_a_plan_is_in_flight_changes_neither_its_result_nor_the_next() {
    let t = Shipping::new();
    // The coordinator keeps its plan while the workers run it.
    let (plan, before, bytes) = t.ship().await;

    let report = t.store.compact(elide_store::CompactRequest::now()).unwrap();
    assert!(!report.tasks.is_empty(), "{report:?}");

    assert_eq!(t.on_worker(&bytes).await, before);
    drop(plan);

    let (_plan, _, bytes) = t.ship().await;
    let after = t.on_worker(&bytes).await;
    assert_eq!(after, before);
    assert!(after.iter().all(|r| !t.gone.contains(r)));
}

/// The reader's last line: a plan whose files lost their access plans (a
/// plan rebuilt by hand, or by a serialiser that drops file extensions)
/// fails when it opens a part with deleted rows; it never reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_whose_files_lost_their_access_plans_fails_rather_than_read_deleted_rows() {
    use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
    use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
    use datafusion::datasource::source::DataSourceExec;
    use elide_query::{ElideParquetSource, ExpectedLayout};

    let t = Shipping::new();
    let plan = planned(&t.ctx).await;
    let mut stripped_files = 0;
    let stripped = plan
        .transform_up(|node| {
            let Some((config, _)) = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|e| e.downcast_to_file_source::<ElideParquetSource>())
            else {
                return Ok(Transformed::no(node));
            };
            let groups = config
                .file_groups
                .iter()
                .map(|g| {
                    let files = g.files().iter().map(|f| {
                        let layout = f.extensions.get::<ExpectedLayout>().unwrap().clone();
                        let mut bare = f.clone();
                        bare.extensions = datafusion::common::extensions::Extensions::new();
                        stripped_files += 1;
                        bare.with_extension(layout)
                    });
                    FileGroup::new(files.collect())
                })
                .collect();
            let config = FileScanConfigBuilder::from(config.clone())
                .with_file_groups(groups)
                .build();
            let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
            Ok(Transformed::yes(exec))
        })
        .data()
        .unwrap();
    assert!(stripped_files > 0);
    let err = datafusion::physical_plan::collect(stripped, t.ctx.task_ctx())
        .await
        .expect_err("a scan read parts with deleted rows without their access plans");
    assert!(err.to_string().contains("has no access plan"), "{err}");
}
