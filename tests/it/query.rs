//! SQL-level tests: tombstones inside the scan, statistics, fail-closed,
//! pruning, JSON functions, and snapshot consistency under concurrency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::physical_plan::{collect, displayable, ExecutionPlan};

use elide::store::{DeleteSpec, PartWriterOptions, Store, StoreOptions, Table};

use crate::common::*;

fn small_row_groups(dir: &std::path::Path) -> Store {
    let part = PartWriterOptions {
        row_group_rows: 50,
        ..Default::default()
    };
    Store::open(
        dir,
        StoreOptions {
            background_flush: false,
            background_compaction: false,
            part,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A metric of the parquet DataSourceExec, read from the plan's metrics
/// display (values like `300`, `7.54 K`, `1.2 M`).
fn scan_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> f64 {
    let text =
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
            .indent(true)
            .to_string();
    let line = text
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains("parquet"))
        .unwrap_or_else(|| panic!("no parquet scan in\n{text}"));
    let at = line
        .find(&format!(" {name}="))
        .or_else(|| line.find(&format!("[{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    let value: String = line[at..]
        .chars()
        .take_while(|c| *c != ',' && *c != ']')
        .collect();
    let mut parts = value.split_whitespace();
    let n: f64 = parts.next().unwrap().parse().unwrap();
    n * match parts.next() {
        Some("K") => 1e3,
        Some("M") => 1e6,
        _ => 1.0,
    }
}

fn run_plan(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    q: &str,
) -> (Arc<dyn ExecutionPlan>, usize) {
    let ctx = ctx(store);
    rt.block_on(async {
        let df = ctx.sql(q).await.unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        (plan, batches.iter().map(|b| b.num_rows()).sum())
    })
}

#[test]
fn deleted_rows_are_skipped_by_the_scan_not_filtered() {
    let rt = rt();
    let mk = |delete: bool| {
        let dir = tempfile::tempdir().unwrap();
        let store = small_row_groups(dir.path());
        // 200 rows of "a" then 100 of "b", one partition: "a" fills 4 row groups.
        let rows: Vec<_> = (0..300)
            .map(|i| row(i, if i < 200 { "a" } else { "b" }, 1, 0))
            .collect();
        append(&store, &rows);
        store.flush().unwrap();
        if delete {
            let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
            assert_eq!(o.rows_hidden, 200);
        }
        let (plan, rows) = run_plan(&rt, &store, "SELECT * FROM events");
        let text = displayable(plan.as_ref()).indent(true).to_string();
        assert!(
            !text.contains("FilterExec"),
            "no filter removes deleted rows above the scan:\n{text}"
        );
        (
            rows,
            scan_metric(&plan, "output_rows"),
            scan_metric(&plan, "bytes_scanned"),
            dir,
        )
    };
    let (rows_full, out_full, bytes_full, _d1) = mk(false);
    let (rows_del, out_del, bytes_del, _d2) = mk(true);
    assert_eq!((rows_full, out_full), (300, 300.0));
    // The parquet scan itself produced only the live rows...
    assert_eq!((rows_del, out_del), (100, 100.0));
    // ...and read fewer bytes: the fully deleted row groups were never fetched.
    assert!(
        bytes_del < bytes_full,
        "bytes scanned with deletions {bytes_del} >= without {bytes_full}"
    );
}

#[test]
fn count_star_from_statistics_subtracts_deleted_rows() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rows: Vec<_> = (0..100)
        .map(|i| row(i, &format!("d{}", i % 10), 1, i as i64 % 2))
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    store.delete(DeleteSpec::ids(1, ["d3"])).unwrap();
    let (plan, _) = run_plan(&rt, &store, "SELECT count(*) FROM events");
    let text = displayable(plan.as_ref()).indent(true).to_string();
    assert!(
        !text.contains("DataSourceExec"),
        "count(*) is answered from statistics, without a scan:\n{text}"
    );
    let ctx = ctx(&store);
    assert_eq!(count(&rt, &ctx, "SELECT count(*) FROM events"), 90);
}

#[test]
fn scan_fails_closed_when_a_part_does_not_match_its_manifest() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = small_row_groups(dir.path());
    let rows: Vec<_> = (0..120)
        .map(|i| row(i, if i < 60 { "a" } else { "b" }, 1, 0))
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    // Replace the part behind the manifest's back with a file of another layout.
    let part = store.manifest().unwrap().parts[0].clone();
    let path = dir.path().join(&part.path);
    let other = tempfile::tempdir().unwrap();
    let s2 = open(other.path());
    append(
        &s2,
        &(0..120)
            .map(|i| row(1000 + i, "a", 1, 0))
            .collect::<Vec<_>>(),
    );
    s2.flush().unwrap();
    let p2 = s2.manifest().unwrap().parts[0].clone();
    std::fs::copy(other.path().join(&p2.path), &path).unwrap();
    let ctx = ctx(&store);
    let res = rt.block_on(async { ctx.sql("SELECT uuid FROM events").await?.collect().await });
    let err = res
        .expect_err("the scan must refuse a file whose layout does not match")
        .to_string();
    // Parts carry checksums, which catch the swap first.
    assert!(
        err.contains("is corrupt") && err.contains(&part.path) && err.contains("refusing to scan"),
        "{err}"
    );
    // A lookup whose id no file holds must not skip the swapped part by
    // its bloom filters either: it fails the same way.
    let res = rt.block_on(async {
        ctx.sql("SELECT uuid FROM events WHERE distinct_id = 'nobody'")
            .await?
            .collect()
            .await
    });
    let err = res
        .expect_err("a lookup must refuse the swapped part, not skip it")
        .to_string();
    assert!(
        err.contains("is corrupt") && err.contains(&part.path),
        "{err}"
    );
    // Nor a long list, which the parquet reader never sees (the provider's
    // bloom check alone decides what is read).
    let list: Vec<String> = (0..30).map(|i| format!("'nobody-{i}'")).collect();
    let q = format!(
        "SELECT uuid FROM events WHERE distinct_id IN ({})",
        list.join(", ")
    );
    let res = rt.block_on(async { ctx.sql(&q).await?.collect().await });
    let err = res
        .expect_err("a long lookup must refuse the swapped part, not skip it")
        .to_string();
    assert!(
        err.contains("is corrupt") && err.contains(&part.path),
        "{err}"
    );
    // A part written before checksums (no `checksum` in its manifest
    // entry) meets the row-group check instead.
    drop(ctx);
    store.close().unwrap();
    let latest = std::fs::read_dir(dir.path().join("manifest"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let name = latest
        .strip_prefix(dir.path())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut m =
        elide::store::format::decode_manifest(&name, &std::fs::read(&latest).unwrap()).unwrap();
    for p in &mut m.parts {
        p.checksum = None;
    }
    std::fs::write(&latest, elide::store::format::encode_manifest(&m).unwrap()).unwrap();
    let store = open(dir.path());
    let c = crate::common::ctx(&store);
    let res = rt.block_on(async { c.sql("SELECT uuid FROM events").await?.collect().await });
    let err = res
        .expect_err("the scan must refuse a file whose layout does not match")
        .to_string();
    assert!(err.contains("does not match the manifest"), "{err}");
}

#[test]
fn partition_pruning_shows_in_explain_and_json_functions_work() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rows: Vec<_> = (0..60)
        .map(|i| {
            row(
                i,
                &format!("d{}", i % 5),
                1 + (i % 3) as i64,
                (i % 4) as i64,
            )
        })
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    let ctx = ctx(&store);
    let plan = sql(
        &rt,
        &ctx,
        "EXPLAIN SELECT count(*) FROM events WHERE project_id = 2 AND distinct_id = 'd1'",
    );
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("parts/events/2/"), "{text}");
    assert!(
        !text.contains("parts/events/1/") && !text.contains("parts/events/3/"),
        "other projects pruned:\n{text}"
    );
    let day = elide::store::format::day_to_string(elide::store::day_of(T0 + DAY));
    let q = format!("EXPLAIN SELECT * FROM events WHERE timestamp >= TIMESTAMP '{day}T00:00:00Z' AND timestamp < TIMESTAMP '{day}T00:00:00Z' + INTERVAL '1 day'");
    let text = arrow::util::pretty::pretty_format_batches(&sql(&rt, &ctx, &q))
        .unwrap()
        .to_string();
    let other_days = (0..4)
        .filter(|d| *d != 1)
        .map(|d| elide::store::format::day_to_string(elide::store::day_of(T0 + d * DAY)));
    for d in other_days {
        assert!(!text.contains(&d), "day {d} pruned:\n{text}");
    }
    let browsers = strings(&sql(
        &rt,
        &ctx,
        "SELECT DISTINCT json_get_str(properties, '$browser') FROM events",
    ));
    assert_eq!(browsers, vec!["Chrome".to_string(), "Safari".to_string()]);
}

/// A lookup by `person_id` or `distinct_id` opens only the parts whose
/// bloom filters may hold one of the ids, and counts exactly what a scan
/// of every part counts (the same filter, written so that no part can be
/// ruled out); a deleted id counts nothing.
#[test]
fn lookups_by_person_or_distinct_id_open_only_the_parts_that_may_hold_them() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 16 distinct ids, two per person; id k is active only on day k % 8.
    let person = |k: u64| format!("00000000-0000-4000-9000-{:012x}", k / 2);
    let rows: Vec<_> = (0..640u64)
        .map(|i| {
            let k = i % 16;
            let mut r = row(i, &format!("d{k}"), 1, (k % 8) as i64);
            r.person_id = Some(person(k));
            r
        })
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    assert_eq!(store.manifest().unwrap().parts.len(), 8);
    let ctx = ctx(&store);
    let day = |d: i64| elide::store::format::day_to_string(elide::store::day_of(T0 + d * DAY));
    let explain = |q: &str| {
        arrow::util::pretty::pretty_format_batches(&sql(&rt, &ctx, &format!("EXPLAIN {q}")))
            .unwrap()
            .to_string()
    };
    // Person of d3 and d2 (days 3 and 2); d11 is on day 3 too.
    let p = person(3);
    let q = format!("SELECT count(*) FROM events WHERE person_id = '{p}'");
    let text = explain(&q);
    for d in 0..8 {
        assert_eq!(
            text.contains(&day(d)),
            d == 2 || d == 3,
            "day {d} in the plan of {q}:\n{text}"
        );
    }
    assert_eq!(count(&rt, &ctx, &q), 80);
    let unpruned = format!("SELECT count(*) FROM events WHERE concat(person_id, '') = '{p}'");
    assert!(explain(&unpruned).contains(&day(0)));
    assert_eq!(count(&rt, &ctx, &unpruned), 80);

    let q = "SELECT count(*) FROM events WHERE distinct_id IN ('d5', 'd13', 'nobody') AND project_id = 1";
    let text = explain(q);
    for d in 0..8 {
        assert_eq!(text.contains(&day(d)), d == 5, "day {d}:\n{text}");
    }
    assert_eq!(count(&rt, &ctx, q), 80);
    // Nobody: no part is read, nothing is counted.
    let none = "SELECT count(*) FROM events WHERE distinct_id = 'nobody'";
    assert!(!explain(none).contains(".parquet"), "{}", explain(none));
    assert_eq!(count(&rt, &ctx, none), 0);
    // A deleted id: its part may still be opened, its rows never count.
    store.delete(DeleteSpec::ids(1, ["d5"])).unwrap();
    assert_eq!(count(&rt, &ctx, q), 40);
}

/// In a part the bloom filters rule row groups out as well as whole
/// parts; a long IN list is then left out of the parquet reader's
/// predicate (the filter above the scan applies it), unless the reader
/// filters rows itself (`pushdown_filters`).
#[test]
fn lookups_skip_the_row_groups_the_bloom_filters_rule_out() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = small_row_groups(dir.path());
    // One part of 8 row groups of 50 rows: rows sorted by distinct id, so
    // row group k holds only d{k}, whose person is person(k).
    let person = |k: u64| format!("00000000-0000-4000-9000-{k:012x}");
    let rows: Vec<_> = (0..400u64)
        .map(|i| {
            let k = i % 8;
            let mut r = row(i, &format!("d{k}"), 1, 0);
            r.person_id = Some(person(k));
            r
        })
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    let part = &store.manifest().unwrap().parts[0];
    assert_eq!(part.row_groups, vec![50; 8]);
    // Lists of more than 4 values count as long here (DataFusion writes
    // a list of at most 3 as ORs).
    let ctx = ctx(&store);
    sql(
        &rt,
        &ctx,
        "SET datafusion.execution.parquet.max_in_list_size = 4",
    );
    let run = |q: &str| {
        rt.block_on(async {
            let plan = ctx
                .sql(q)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
            let n = batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0);
            let text = displayable(plan.as_ref()).indent(true).to_string();
            // No part left to read: no parquet scan, nothing scanned.
            let Some(scan) = text
                .lines()
                .find(|l| l.contains("DataSourceExec") && l.contains("parquet"))
            else {
                return (n, 0.0, String::new(), text);
            };
            let scan = scan.to_string();
            (n, scan_metric(&plan, "output_rows"), scan, text)
        })
    };
    let q = "SELECT count(*) FROM events WHERE distinct_id IN ('d3', 'd6', 'x1', 'x2', 'x3')";
    let (n, scanned, scan, text) = run(q);
    assert_eq!((n, scanned), (100, 100.0), "{text}");
    assert!(
        !scan.contains("d6"),
        "the long list is not the reader's: {scan}"
    );
    assert!(text.contains("d6"), "the filter above applies it: {text}");
    let q = format!(
        "SELECT count(*) FROM events WHERE person_id IN ('{}', '{}', '{}', '{}', '{}') AND project_id = 1",
        person(2),
        person(5),
        person(7),
        person(100),
        person(101)
    );
    let (n, scanned, scan, _) = run(&q);
    assert_eq!((n, scanned), (150, 150.0), "{scan}");
    assert!(scan.contains("project_id"), "short conjuncts stay: {scan}");
    // Both lookups: only d5's row group may hold a row of both lists.
    let both = &format!(
        "SELECT count(*) FROM events WHERE distinct_id IN ('d5', 'd6', 'x1', 'x2', 'x3') \
         AND person_id IN ('{}', '{}', '{}', '{}', '{}')",
        person(5),
        person(7),
        person(1),
        person(100),
        person(101)
    );
    assert_eq!(run(both).0, 50);
    assert_eq!(run(both).1, 50.0);
    // Deleted rows never count; a part left with no row group to read is
    // not read at all.
    store.delete(DeleteSpec::ids(1, ["d6", "d5"])).unwrap();
    let (n, scanned, _, _) =
        run("SELECT count(*) FROM events WHERE distinct_id IN ('d3', 'd6', 'x1', 'x2', 'x3')");
    assert_eq!((n, scanned), (50, 50.0));
    let (n, _, scan, text) = run(both);
    assert_eq!(n, 0);
    assert!(scan.is_empty(), "{text}");
    // Through Elide's IN list of UUIDs (the filter above the scan) and its
    // distinct count: the deleted rows are hidden below both.
    let (n, _, _, text) = run(&q);
    assert_eq!(n, 100, "d5's rows of person(5) are deleted: {text}");
    assert!(text.contains("IN (set of 5 UUIDs)"), "{text}");
    // One person through `=`: person(5)'s rows (all d5's) are gone, so
    // its parts are not even read; person(7)'s are found through the
    // 16 bytes compared as a 128-bit integer.
    let one = |p: u64| {
        format!(
            "SELECT count(*) FROM events WHERE person_id = '{}'",
            person(p)
        )
    };
    assert_eq!(run(&one(5)).0, 0);
    let (n, _, _, text) = run(&one(7));
    assert_eq!(n, 50, "{text}");
    assert!(text.contains("(as a 128-bit integer)"), "{text}");
    let distinct = "SELECT count(DISTINCT person_id) FROM events";
    let (n, _, _, text) = run(distinct);
    assert_eq!(n, 6, "person(5) and person(6) are deleted: {text}");
    assert!(text.contains("DistinctRunsExec"), "{text}");
    // The final phase too is Elide's: the deleted rows stay hidden below
    // both of its operators.
    assert!(text.contains("DistinctKeysExec"), "{text}");
    // A reader that filters rows itself keeps the list.
    sql(
        &rt,
        &ctx,
        "SET datafusion.execution.parquet.pushdown_filters = true",
    );
    let (n, _, scan, _) =
        run("SELECT count(*) FROM events WHERE distinct_id IN ('d3', 'd6', 'd1', 'x1', 'x2')");
    assert_eq!(n, 100);
    assert!(scan.contains("d6"), "{scan}");
}

#[test]
fn queries_see_consistent_snapshots_while_appends_deletes_and_compactions_commit() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            memtable_rows: 500,
            background_compaction: false,
            ..Default::default()
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Writer: batches of 37 rows, one distinct id per batch; deletes earlier batches.
    let writer = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            for b in 0..150u64 {
                let rows: Vec<_> = (0..37)
                    .map(|_| {
                        n += 1;
                        row(n, &format!("batch{b}"), 1, (b % 3) as i64)
                    })
                    .collect();
                store
                    .append(
                        Table::Events,
                        &elide::store::jsonl::rows_to_batch(&rows).unwrap(),
                    )
                    .unwrap();
                if b % 4 == 3 {
                    store
                        .delete(DeleteSpec::ids(1, vec![format!("batch{}", b - 2)]))
                        .unwrap();
                }
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    // Compaction: purges and merges, each followed by GC, in a loop.
    let compactor = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                compact_now(&store);
                runs += 1;
            }
            runs
        })
    };
    let ctx = ctx(&store);
    let mut checks = 0;
    while !stop.load(Ordering::SeqCst) || checks < 3 {
        let b = sql(&rt, &ctx, "SELECT distinct_id, count(*) AS n, count(DISTINCT uuid) AS u FROM events GROUP BY distinct_id");
        for b in &b {
            let n = b
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            let u = b
                .column(2)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            for i in 0..b.num_rows() {
                assert_eq!(n.value(i), 37, "a batch is visible whole or not at all");
                assert_eq!(u.value(i), 37, "no row is visible twice");
            }
        }
        checks += 1;
    }
    writer.join().unwrap();
    assert!(compactor.join().unwrap() > 0);
    store.flush().unwrap();
    let total = count(&rt, &ctx, "SELECT count(*) FROM events");
    assert_eq!(total, (150 - 37) * 37, "150 batches, 37 deleted");
}

#[test]
fn a_query_streaming_across_a_compaction_and_its_gc_finishes_correctly() {
    use futures::StreamExt;
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = small_row_groups(dir.path());
    let rows: Vec<_> = (0..600u64)
        .map(|n| row(n, &format!("d{}", n % 6), 1, (n % 2) as i64))
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    store.delete(DeleteSpec::ids(1, ["d0"])).unwrap();
    let ctx = ctx(&store);
    let (first, rest) = rt.block_on(async {
        let mut stream = ctx
            .sql("SELECT uuid, distinct_id FROM events")
            .await
            .unwrap()
            .execute_stream()
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap().num_rows();
        // Meanwhile: the parts the stream reads are purged and collected.
        let r = store
            .compact(elide::store::CompactRequest {
                manual: true,
                merges: false,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.tasks.len(), 1, "d0 rows are all on day 0");
        let mut rest = 0;
        while let Some(b) = stream.next().await {
            rest += b.unwrap().num_rows();
        }
        (first, rest)
    });
    assert_eq!(
        first + rest,
        500,
        "the old snapshot's rows, all of them once"
    );
    // The request becomes purged once the stream (and its snapshot) is gone.
    drop(ctx);
    let (purged, verified, _) = store.advance_requests().unwrap();
    assert_eq!((purged.len(), verified.len()), (1, 1));
    assert_eq!(
        count(
            &rt,
            &crate::common::ctx(&store),
            "SELECT count(*) FROM events"
        ),
        500
    );
}

/// A project-scoped session (what the server's query endpoint runs on)
/// never reads another project's rows — in parts or still buffered —
/// whatever the SQL asks, and never a deleted row of its own.
#[test]
fn a_project_session_reads_only_its_project() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rows: Vec<_> = (0..300u64)
        .map(|n| row(n, &format!("d{}", n % 7), 1 + (n % 3) as i64, 0))
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    // More, left in the buffer.
    let more: Vec<_> = (300..360u64)
        .map(|n| row(n, &format!("d{}", n % 7), 1 + (n % 3) as i64, 1))
        .collect();
    append(&store, &more);
    let rt = rt();
    let all = ctx(&store);
    let d0_of_2 = "select count(*) from events where distinct_id = 'd0' and project_id = 2";
    assert!(count(&rt, &all, d0_of_2) > 0);
    store.delete(DeleteSpec::ids(2, ["d0"])).unwrap();
    for project in 1..=3i64 {
        let scoped = elide::query::project_session_context(&store, project, None).unwrap();
        let expected = count(
            &rt,
            &all,
            &format!("select count(*) from events where project_id = {project}"),
        );
        assert!(expected > 0);
        assert_eq!(count(&rt, &scoped, "select count(*) from events"), expected);
        for other in (1..=3i64).filter(|o| *o != project) {
            assert_eq!(
                count(
                    &rt,
                    &scoped,
                    &format!("select count(*) from events where project_id = {other}")
                ),
                0,
                "project {project} read project {other}"
            );
        }
        assert_eq!(
            count(
                &rt,
                &scoped,
                "select count(distinct project_id) from events"
            ),
            1
        );
    }
    let two = elide::query::project_session_context(&store, 2, None).unwrap();
    assert_eq!(
        count(
            &rt,
            &two,
            "select count(*) from events where distinct_id = 'd0'"
        ),
        0,
        "a deleted row came back"
    );
}

/// A session outliving its store neither keeps the data directory locked
/// nor reads a closed store: closing releases the directory, a reopen in
/// the same process works, and the old session's next query is a clear
/// error.
#[test]
fn a_session_does_not_keep_a_closed_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0)]);
    let old = ctx(&store);
    assert_eq!(count(&rt, &old, "SELECT count(*) FROM events"), 1);
    store.close().unwrap();

    let reopened = open(dir.path());
    assert_eq!(
        count(&rt, &ctx(&reopened), "SELECT count(*) FROM events"),
        1
    );
    let err = rt
        .block_on(async {
            old.sql("SELECT count(*) FROM events")
                .await?
                .collect()
                .await
        })
        .unwrap_err();
    assert!(err.to_string().contains("was closed"), "{err}");
    reopened.close().unwrap();
}

/// `project_id = N` is a partition: the scan applies it exactly (parts of
/// other projects are not planned, buffered rows of other projects are
/// left out), so no `FilterExec` runs above the scan for it. Other shapes
/// of the filter keep the filter above.
#[test]
fn project_id_equality_is_applied_by_the_scan_exactly() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Parts of projects 1 and 2 over two days, then buffered rows of both.
    let rows: Vec<_> = (0..60)
        .map(|i| {
            row(
                i,
                &format!("d{}", i % 4),
                1 + (i % 2) as i64,
                (i % 2) as i64,
            )
        })
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    let later: Vec<_> = (60..90)
        .map(|i| row(i, "late", 1 + (i % 3) as i64, 0))
        .collect();
    append(&store, &later);
    let count = |q: &str| -> (usize, String) {
        let ctx = ctx(&store);
        rt.block_on(async {
            let plan = ctx.sql(q).await?.create_physical_plan().await?;
            let text = displayable(plan.as_ref()).indent(true).to_string();
            let batches = collect(plan, ctx.task_ctx()).await?;
            let n = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(
                batches[0].column(0),
            )
            .value(0);
            Ok::<_, datafusion::error::DataFusionError>((n as usize, text))
        })
        .unwrap()
    };
    let filters_project = |plan: &str| {
        plan.lines()
            .any(|l| l.contains("FilterExec") && l.contains("project_id"))
    };
    // 30 flushed rows of project 1, and 10 buffered (i % 3 == 0).
    assert_eq!(
        count("SELECT count(*) FROM events WHERE project_id = 1").0,
        40
    );
    for q in [
        "SELECT count(*) FROM events WHERE project_id = 1",
        "SELECT count(*) FROM events WHERE 1 = project_id",
        "SELECT count(*) FROM events WHERE project_id = 1 AND event = '$pageview'",
    ] {
        let (n, plan) = count(q);
        assert!(!filters_project(&plan), "{q}:\n{plan}");
        // The same filter in a shape the scan does not apply exactly.
        let reference = q
            .replace("1 = project_id", "project_id = 1")
            .replace("project_id = 1", "project_id + 0 = 1");
        let (want, plan) = count(&reference);
        assert!(filters_project(&plan), "{reference}:\n{plan}");
        assert_eq!(n, want, "{q}");
    }
    let (n, plan) = count("SELECT count(*) FROM events WHERE project_id = 1");
    assert_eq!(n, 40);
    assert!(!plan.contains("FilterExec"), "{plan}");
    // Both: nothing. Either: the filter stays above the scan.
    assert_eq!(
        count("SELECT count(*) FROM events WHERE project_id = 1 AND project_id = 2").0,
        0
    );
    let (n, plan) = count("SELECT count(*) FROM events WHERE project_id = 1 OR project_id = 3");
    assert_eq!(n, 40 + 10);
    assert!(plan.contains("FilterExec"), "{plan}");
    assert_eq!(
        count("SELECT count(*) FROM events WHERE project_id = 2").0,
        30 + 10
    );
    assert_eq!(count("SELECT count(*) FROM events").0, 90);
}
