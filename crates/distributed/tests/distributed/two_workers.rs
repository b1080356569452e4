//! Elide's queries under datafusion-distributed with two workers, each a
//! gRPC server on 127.0.0.1 with the store opened read-only (as on
//! another machine): the same results as on one node, deleted rows
//! hidden, exact counts; a worker without Elide's codec fails the query.

use std::collections::BTreeSet;

use arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt};
use elide_distributed::{coordinator_context, serve_worker, worker, CoordinatorOptions};

use crate::common::{store_with_deletions, Backend};

/// Elide's queries: scans with and without filters, counts by a string
/// key (`CountByKeyExec`), distinct persons per day, JSON properties,
/// funnels, lookups, a join, sorting with a limit.
const QUERIES: &[&str] = &[
    "SELECT count(*) FROM events WHERE timestamp IS NOT NULL",
    "SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY event",
    "SELECT project_id, count(DISTINCT person_id) AS persons FROM events GROUP BY project_id ORDER BY project_id",
    "SELECT date_trunc('day', timestamp) AS day, count(DISTINCT person_id) AS persons FROM events \
     WHERE project_id = 1 GROUP BY day ORDER BY day",
    "SELECT properties->>'$browser' AS browser, count(*) AS n FROM events GROUP BY browser ORDER BY browser",
    "SELECT distinct_id, count(*) AS n FROM events GROUP BY distinct_id ORDER BY n DESC, distinct_id LIMIT 25",
    "SELECT level, count(*) AS persons FROM ( \
       SELECT person_id, window_funnel(INTERVAL '7 days', '', timestamp, \
              event = '$pageview', event = '$autocapture', event = 'signup') AS level \
       FROM events WHERE project_id = 2 GROUP BY person_id) \
     GROUP BY level ORDER BY level",
    "SELECT count(*) FROM events a JOIN (SELECT DISTINCT distinct_id FROM events WHERE event = 'signup') s \
     ON a.distinct_id = s.distinct_id",
    "SELECT project_id, distinct_id, event, timestamp FROM events ORDER BY timestamp DESC, distinct_id, event LIMIT 10",
    // A UUID compared with text inside a grouping set: the planner's
    // marker for the UUID's text (`planned_uuid_text`) is still in the
    // plan the workers decode.
    "SELECT person_id = distinct_id AS same, count(*) AS n FROM events \
     GROUP BY ROLLUP(person_id = distinct_id) ORDER BY same NULLS FIRST, n",
];

async fn run(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<String> {
    let out = elide_query::run_sql(ctx, sql).await?;
    Ok(pretty_format_batches(&out.batches)?.to_string())
}

/// Whether the physical plan of `sql` on `ctx` ships work to workers.
async fn is_distributed(ctx: &SessionContext, sql: &str) -> bool {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    shown.contains("DistributedExec")
}

fn quoted(ids: &[(i64, String)]) -> String {
    ids.iter()
        .map(|(_, id)| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_local_disk_two_workers_return_what_one_node_returns_without_deleted_rows() {
    let dir = tempfile::tempdir().unwrap();
    two_workers(&Backend::local(dir.path())).await;
}

/// The deployment of docs/scale.md: the store on object storage, each
/// worker with a local directory of its own. (The S3 server has a runtime
/// of its own: started and stopped outside the test's.)
#[test]
fn on_an_s3_server_two_workers_return_what_one_node_returns_without_deleted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::s3(dir.path());
    assert!(backend.objects().is_some());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(two_workers(&backend));
}

async fn two_workers(backend: &Backend) {
    let (store, ids, gone) = store_with_deletions(backend);
    let gone_set: BTreeSet<(i64, String)> = gone.iter().cloned().collect();

    let mut workers = Vec::new();
    for _ in 0..2 {
        let reader = backend.reader();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        workers.push(serve_worker(worker(&reader).unwrap(), listener).unwrap());
    }
    let urls = workers.iter().map(|w| w.url().unwrap()).collect();
    let single = elide_query::session_context(&store).unwrap();
    let distributed = coordinator_context(
        &store,
        &CoordinatorOptions {
            workers: urls,
            // A task per few bytes: even this small table spreads over both.
            bytes_per_partition: Some(1),
        },
    )
    .unwrap();

    for sql in QUERIES {
        let want = run(&single, sql).await.unwrap();
        let got = run(&distributed, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got, want, "{sql}");
    }
    // Every query that reads rows runs on the workers (the first is
    // answered from statistics).
    for sql in &QUERIES[1..] {
        assert!(is_distributed(&distributed, sql).await, "{sql}");
    }

    // Exact count: every visible row once, on the workers.
    let visible = store
        .snapshot()
        .unwrap()
        .visible_rows(elide_store::Table::Events)
        .unwrap();
    let counted = run(&distributed, QUERIES[0]).await.unwrap();
    assert!(
        counted.contains(&format!("| {visible} ")),
        "{counted} vs {visible}"
    );

    // Deleted persons: none of their rows on any worker.
    let sql = format!(
        "SELECT count(*) AS n FROM events WHERE distinct_id IN ({})",
        quoted(&gone)
    );
    assert!(run(&distributed, &sql).await.unwrap().contains("| 0 "));
    let sql = "SELECT DISTINCT project_id, distinct_id FROM events";
    let out = elide_query::run_sql(&distributed, sql).await.unwrap();
    let seen: BTreeSet<(i64, String)> = out.batches.iter().flat_map(crate::common::pairs).collect();
    assert!(seen.iter().all(|r| !gone_set.contains(r)));
    assert_eq!(seen.len(), ids.len() - gone_set.len());

    // A delete after the workers opened the store: the next query hides it.
    let more: Vec<(i64, String)> = seen.iter().step_by(5).cloned().collect();
    for (project, id) in &more {
        store
            .delete(elide_store::DeleteSpec::ids(*project, [id.clone()]))
            .unwrap();
    }
    let sql = format!(
        "SELECT count(*) AS n FROM events WHERE distinct_id IN ({})",
        quoted(&more)
    );
    assert!(run(&distributed, &sql).await.unwrap().contains("| 0 "));
    for sql in QUERIES {
        let want = run(&single, sql).await.unwrap();
        assert_eq!(run(&distributed, sql).await.unwrap(), want, "{sql}");
    }

    // A deletion by predicate inside its undo window (a logical request:
    // the workers compute its rows from the parts themselves).
    let exceptions =
        "SELECT count(*) AS n FROM events WHERE project_id = 1 AND event = '$exception'";
    assert!(!run(&single, exceptions).await.unwrap().contains("| 0 "));
    let predicate = elide_store::predicate::EventPredicate {
        events: vec!["$exception".into()],
        ..Default::default()
    };
    store
        .delete_events(elide_store::EventDeletion {
            undo_window: Some(std::time::Duration::from_secs(3600)),
            ..elide_store::EventDeletion::new(1, predicate)
        })
        .unwrap();
    assert!(store.snapshot().unwrap().has_logical_requests());
    assert!(is_distributed(&distributed, exceptions).await);
    assert!(run(&distributed, exceptions)
        .await
        .unwrap()
        .contains("| 0 "));
    for sql in QUERIES {
        let want = run(&single, sql).await.unwrap();
        assert_eq!(run(&distributed, sql).await.unwrap(), want, "{sql}");
    }

    for w in workers {
        w.shutdown().await.unwrap();
    }
}

/// A worker without Elide's codec (datafusion-distributed's default one)
/// cannot decode Elide's scan: the query fails, it never returns rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_without_elides_codec_fails_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = store_with_deletions(&Backend::local(dir.path()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = serve_worker(datafusion_distributed::Worker::default(), listener).unwrap();
    let ctx = coordinator_context(
        &store,
        &CoordinatorOptions {
            // Twice: a stage of two tasks, both on it (a single task
            // might not be shipped at all).
            workers: vec![plain.url().unwrap(), plain.url().unwrap()],
            bytes_per_partition: Some(1),
        },
    )
    .unwrap();
    let err = run(&ctx, "SELECT project_id, distinct_id FROM events")
        .await
        .expect_err("a worker without the codec returned rows");
    assert!(!err.to_string().is_empty());
    plain.shutdown().await.unwrap();
}

/// An Elide worker runs only Elide's scans: a plan built elsewhere that
/// reads the store's part files as plain parquet (which would read their
/// deleted rows) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_elide_worker_refuses_a_plain_parquet_scan_of_the_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = store_with_deletions(&Backend::local(dir.path()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = serve_worker(worker(&store).unwrap(), listener).unwrap();
    let url = running.url().unwrap();
    let part = first_parquet(&dir.path().join("data/parts")).expect("a part file");

    let state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .with_distributed_worker_resolver(elide_distributed::StaticWorkers(vec![url.clone(), url]))
        .with_distributed_planner()
        .with_distributed_file_scan_config_bytes_per_partition(1)
        .unwrap()
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_parquet(
        "raw",
        part.to_str().unwrap(),
        datafusion::prelude::ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let err = run(
        &ctx,
        "SELECT project_id, count(*) FROM raw GROUP BY project_id",
    )
    .await
    .expect_err("an Elide worker ran a plain parquet scan");
    assert!(err.to_string().contains("runs only Elide's scans"), "{err}");
    running.shutdown().await.unwrap();
}

fn first_parquet(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            if let Some(found) = first_parquet(&path) {
                return Some(found);
            }
        } else if path.extension().is_some_and(|x| x == "parquet") {
            return Some(path);
        }
    }
    None
}

/// Nor does it run a write: DataFusion's decoder builds a sink to any URL
/// the worker's runtime knows (`file://` among them), so a peer could
/// have a worker write files of its choosing. The check refuses the plan
/// before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elide_worker_refuses_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("written.csv");
    let ctx = SessionContext::new();
    let plan = ctx
        .sql(&format!(
            "COPY (VALUES (1, 'a')) TO '{}' STORED AS CSV",
            target.display()
        ))
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let err = elide_distributed::check_worker_plan(&plan).expect_err("a write passed");
    assert!(err.to_string().contains("not a write"), "{err}");
    assert!(!target.exists());
    // What it still runs: a plan without a file scan or a sink.
    let read = ctx
        .sql("SELECT * FROM (VALUES (1, 'a')) AS t(n, s)")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    elide_distributed::check_worker_plan(&read).unwrap();
}
