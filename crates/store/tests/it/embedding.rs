//! The embedding API: ingest helpers, readiness, status totals, the named
//! compaction requests and pure defaults.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use elide_store::{CompactRequest, DeleteSpec, IngestOptions, StoreError, StoreOptions, Table};

use crate::common::{
    append, open, opts, parts_and_tombstones_on_disk, row, rows, visible, visible_ns, Site,
    BACKENDS, T0,
};

/// A batch as another tool writes it: `$session_id` instead of
/// `session_id`, a naive (zone-less) timestamp, no uuid.
fn foreign_batch(first: i64, n: i64, bad_row: Option<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event", DataType::Utf8, false),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new("project_id", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("$session_id", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (first..first + n).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "e"))),
        Arc::new(StringArray::from_iter_values(ids.iter().map(|i| {
            if Some(*i) == bad_row {
                String::new() // distinct ids must not be empty
            } else {
                format!("u{}", i % 7)
            }
        }))),
        Arc::new(Int64Array::from_iter_values(ids.iter().map(|_| 1))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            ids.iter().map(|i| T0 + i),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("s{i}")),
        )),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

#[test]
fn ingest_renames_columns_reports_progress_and_reads_naive_timestamps_as_utc() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        let batches = (0..3).map(|i| Ok(foreign_batch(i * 100, 100, None)));
        let mut seen = Vec::new();
        let out = store
            .ingest(
                Table::Events,
                batches,
                IngestOptions::new()
                    .rename("$session_id", "session_id")
                    .progress(|p| seen.push(p.rows)),
            )
            .unwrap();
        assert_eq!(out.rows, 300);
        assert_eq!(seen, vec![100, 200, 300]);
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.visible_rows(Table::Events).unwrap(), 300);
        // The naive timestamp is UTC wall-clock time: stored unchanged.
        let parts: Vec<_> = snap.parts(Table::Events).collect();
        assert!(!parts.is_empty());
        assert_eq!(parts.iter().map(|p| p.min_ts).min(), Some(T0));
        assert_eq!(parts.iter().map(|p| p.max_ts).max(), Some(T0 + 299));
    }
}

#[test]
fn a_bad_row_anywhere_leaves_nothing_and_is_named_from_the_start_of_the_input() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        let before = store.status().unwrap().totals;
        // Row 250 (batch 2) is bad, after two batches were accepted.
        let batches = (0..4).map(|i| Ok(foreign_batch(i * 100, 100, Some(250))));
        let err = store
            .ingest(
                Table::Events,
                batches,
                IngestOptions::new().rename("$session_id", "session_id"),
            )
            .unwrap_err();
        match &err {
            StoreError::InvalidInputRow { row, column, .. } => {
                assert_eq!((*row, column.as_str()), (250, "distinct_id"), "{err}")
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(err.is_invalid_input());
        assert_eq!(store.status().unwrap().totals, before);
        assert!(visible(&store).is_empty());

        // Without the rename, the foreign column is refused by name.
        let err = store
            .ingest(
                Table::Events,
                [Ok(foreign_batch(0, 10, None))],
                IngestOptions::new(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("`$session_id`"), "{err}");
        // A rename of a column the input lacks, or to a column Elide lacks.
        for (opts, needle) in [
            (
                IngestOptions::new().rename("$sid", "session_id"),
                "no column `$sid`",
            ),
            (
                IngestOptions::new().rename("$session_id", "sid"),
                "not a column",
            ),
            (
                IngestOptions::new()
                    .rename("$session_id", "session_id")
                    .rename("event", "session_id"),
                "two input columns",
            ),
            (
                IngestOptions::new().rename("$session_id", "event"),
                "already has a column `event`",
            ),
        ] {
            let err = store
                .ingest(Table::Events, [Ok(foreign_batch(0, 10, None))], opts)
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        // A reader that fails half way.
        let failing = vec![
            Ok(foreign_batch(0, 10, None)),
            Err(arrow::error::ArrowError::IoError(
                "disk gone".into(),
                std::io::Error::other("disk gone"),
            )),
        ];
        let err = store
            .ingest(
                Table::Events,
                failing,
                IngestOptions::new().rename("$session_id", "session_id"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("after row 10"), "{err}");
        assert_eq!(store.status().unwrap().totals, before);
    }
}

/// A parquet file of ten row groups is read on several threads: every
/// row arrives, and a bad row in any row group is named by its row in the
/// file (row 750 is in row group 7, read by another thread than row 50's).
#[test]
fn ingest_files_reads_row_groups_in_parallel_and_names_a_bad_row_in_the_file() {
    let inputs = tempfile::tempdir().unwrap();
    let write = |bad: Option<i64>| {
        let path = inputs.path().join(format!("groups-{bad:?}.parquet"));
        let b = foreign_batch(0, 1000, bad);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            b.schema(),
            Some(props),
        )
        .unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        path
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = || IngestOptions::new().rename("$session_id", "session_id");
    for bad in [50, 750, 999] {
        let path = write(Some(bad));
        let err = store
            .ingest_files(Table::Events, &[&path], opts())
            .unwrap_err();
        match &err {
            StoreError::InvalidInputRow {
                input, row, column, ..
            } => {
                assert!(
                    input.ends_with(&format!("groups-Some({bad}).parquet")),
                    "{err}"
                );
                assert_eq!(
                    (*row, column.as_str()),
                    (bad as u64, "distinct_id"),
                    "{err}"
                );
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(visible(&store).is_empty());
    }
    let path = write(None);
    let out = store.ingest_files(Table::Events, &[&path], opts()).unwrap();
    assert_eq!(out.rows, 1000);
    let seen = visible(&store);
    assert_eq!(seen.len(), 1000);
    for k in 0..7 {
        let id = format!("u{k}");
        let expected = (0..1000).filter(|i| i % 7 == k).count();
        assert_eq!(
            seen.iter().filter(|(_, d, _)| *d == id).count(),
            expected,
            "{id}"
        );
    }
}

#[test]
fn ingest_files_reads_parquet_and_json_lines_as_one_unit() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let inputs = tempfile::tempdir().unwrap();
        let pq = inputs.path().join("a.parquet");
        {
            let b = foreign_batch(0, 50, None);
            let mut w = parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(&pq).unwrap(),
                b.schema(),
                None,
            )
            .unwrap();
            w.write(&b).unwrap();
            w.close().unwrap();
        }
        let bad = inputs.path().join("c.jsonl");
        std::fs::write(
            &bad,
            "{\"event\":\"e\",\"distinct_id\":\"j2\",\"project_id\":1,\"timestamp\":\"yesterday\"}\n",
        )
        .unwrap();

        let store = site.open();
        // JSON lines name their fields as Elide does; the map applies to parquet only here.
        let err = store
            .ingest_files(
                Table::Events,
                &[&pq, &bad],
                IngestOptions::new().rename("$session_id", "session_id"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("c.jsonl"), "{err}");
        assert!(visible(&store).is_empty(), "nothing of a.parquet either");

        let out = store
            .ingest_files(
                Table::Events,
                &[&pq],
                IngestOptions::new().rename("$session_id", "session_id"),
            )
            .unwrap();
        assert_eq!(out.rows, 50);
        let err = store
            .ingest_files(Table::Events, &["-", "-"], IngestOptions::new())
            .unwrap_err();
        assert!(err.to_string().contains("only once"), "{err}");
    }
}

#[test]
fn ready_builds_the_index_so_the_first_delete_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        crate::common::append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
        store.flush().unwrap();
        store.close().unwrap();
    }
    let store = elide_store::Store::open(
        dir.path(),
        StoreOptions {
            wait_ready: true,
            ..crate::common::opts()
        },
    )
    .unwrap();
    store.ready().unwrap();
    store.ready().unwrap(); // cheap and idempotent
    let out = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    assert_eq!(out.rows_hidden, 1);
    let t = store.status().unwrap().totals;
    assert_eq!(
        (
            t.parts,
            t.parts_with_tombstones,
            t.rows,
            t.tombstoned_rows,
            t.visible_rows
        ),
        (1, 1, 2, 1, 1)
    );
    crate::common::append(&store, &[row(3, "c", 1, 0)]);
    assert_eq!(store.status().unwrap().totals.visible_rows, 2);
    store.compact(CompactRequest::now()).unwrap();
    let t = store.status().unwrap().totals;
    assert_eq!(
        (t.parts_with_tombstones, t.tombstoned_rows, t.visible_rows),
        (0, 0, 2)
    );
    // A read-only store is always ready.
    store.close().unwrap();
    let ro = elide_store::Store::open_read_only(dir.path(), crate::common::opts()).unwrap();
    ro.ready().unwrap();
}

#[test]
fn named_compaction_requests_mean_what_the_command_line_flags_mean() {
    let s = CompactRequest::scheduled();
    assert!(!s.manual && s.merges && s.project_id.is_none() && s.io_bytes_per_sec.is_none());
    let d = CompactRequest::default();
    assert_eq!((d.manual, d.merges), (s.manual, s.merges));
    let n = CompactRequest::now()
        .project(3)
        .without_merges()
        .io_limit(1 << 20);
    assert!(n.manual && !n.merges);
    assert_eq!((n.project_id, n.io_bytes_per_sec), (Some(3), Some(1 << 20)));
}

#[test]
fn default_options_read_no_environment() {
    // This test binary reads ELIDE_COMPACTION_CRON nowhere else.
    std::env::set_var(elide_store::policy::CRON_ENV, "5 4 * * *");
    let d = StoreOptions::default();
    let e = StoreOptions::from_env();
    let o = StoreOptions::one_shot();
    std::env::remove_var(elide_store::policy::CRON_ENV);
    assert_ne!(d.compaction.cron.as_deref(), Some("5 4 * * *"));
    assert_eq!(e.compaction.cron.as_deref(), Some("5 4 * * *"));
    assert_eq!(o.compaction.cron.as_deref(), Some("5 4 * * *"));
    assert!(d.background_compaction && e.background_compaction && !o.background_compaction);
}

#[test]
fn delete_many_commits_any_number_of_ids_of_several_projects_once() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        // 2,500 ids in project 1 (in parts) and 3 in project 2 (buffered).
        let rows: Vec<_> = (0..2500u64)
            .map(|i| row(i, &format!("p1-{i}"), 1, 0))
            .collect();
        crate::common::append(&store, &rows);
        store.flush().unwrap();
        crate::common::append(
            &store,
            &[
                row(9001, "x", 2, 0),
                row(9002, "y", 2, 0),
                row(9003, "z", 2, 1),
            ],
        );
        let version = store.status().unwrap().version;
        let outcomes = store
            .delete_many([
                DeleteSpec::ids(1, (0..2500).map(|i| format!("p1-{i}"))),
                // The same rows twice in one call are hidden (and counted) once.
                DeleteSpec::ids(2, ["x", "y"]),
                DeleteSpec::ids(2, ["y", "z"]),
            ])
            .unwrap();
        // 3 requests for the 2,500 ids, one per small spec; one commit.
        assert_eq!(outcomes.len(), 5);
        assert_eq!(store.status().unwrap().version, version + 1);
        assert_eq!(outcomes.iter().map(|o| o.rows_hidden).sum::<u64>(), 2503);
        assert!(outcomes.windows(2).all(|w| w[0].cutoff == w[1].cutoff));
        assert!(visible(&store).is_empty());
        let m = store.manifest().unwrap();
        assert_eq!(m.requests.len(), 5);
        assert!(m.requests.iter().all(|r| r.distinct_ids.len() <= 1000));

        // A bad spec anywhere: nothing of the call is committed.
        crate::common::append(&store, &[row(9100, "w", 3, 0)]);
        let err = store
            .delete_many([DeleteSpec::ids(3, ["w"]), DeleteSpec::ids(-1, ["w"])])
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert_eq!(store.manifest().unwrap().requests.len(), 5);
        assert_eq!(visible(&store).len(), 1);
        assert!(store.delete_many(Vec::new()).unwrap().is_empty());
        // The single-request call keeps its limit.
        let err = store
            .delete(DeleteSpec::ids(1, (0..1001).map(|i| format!("p1-{i}"))))
            .unwrap_err();
        assert!(err.to_string().contains("at most 1000"), "{err}");

        // Purged and verified like any request.
        let r = store.compact(CompactRequest::now()).unwrap();
        assert!(r.verification_failures.is_empty());
        store.flush().unwrap();
        store.compact(CompactRequest::now()).unwrap();
        let m = store.manifest().unwrap();
        assert!(
            m.requests
                .iter()
                .all(|r| r.status == elide_store::RequestStatus::Verified),
            "{:?}",
            m.requests.iter().map(|r| r.status).collect::<Vec<_>>()
        );
    }
}

#[test]
fn delete_person_ids_deletes_every_row_of_the_persons_distinct_ids() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        const P: &str = "0b9f4c5e-6d1a-4f5e-9a51-8c7f1f0e2a11";
        const Q: &str = "7d3e2a10-1111-4c2b-8f00-aa00bb11cc22";
        let with_person = |n: u64, did: &str, project: i64, person: Option<&str>| {
            let mut r = row(n, did, project, 0);
            r.person_id = person.map(str::to_string);
            r
        };
        let site = Site::new(backend);
        let store = site.open();
        // In parts: P under two distinct ids (one also has a row without a
        // person id), Q under its own, P in another project.
        crate::common::append(
            &store,
            &[
                with_person(1, "anon", 1, Some(P)),
                with_person(2, "ada", 1, Some(P)),
                with_person(3, "ada", 1, None),
                with_person(4, "grace", 1, Some(Q)),
                with_person(5, "ada", 2, Some(P)),
            ],
        );
        store.flush().unwrap();
        // Buffered: a third distinct id of P.
        crate::common::append(&store, &[with_person(6, "ada-phone", 1, Some(P))]);

        let out = store
            .delete_person_ids(1, &[P.to_uppercase()], &[])
            .unwrap();
        assert_eq!(out.distinct_ids, vec!["ada", "ada-phone", "anon"]);
        assert_eq!(out.rows_hidden(), 4);
        assert_eq!(out.requests.len(), 1);
        // Q's rows and P's row in project 2 stay.
        let mut left: Vec<String> = visible(&store).into_iter().map(|(_, d, _)| d).collect();
        left.sort();
        assert_eq!(left, vec!["ada", "grace"]);

        // Nothing carries the person id: nothing is committed.
        let version = store.status().unwrap().version;
        let none = store
            .delete_person_ids(1, &["00000000-0000-4000-8000-000000000000"], &[])
            .unwrap();
        assert!(none.requests.is_empty() && none.distinct_ids.is_empty());
        assert_eq!(store.status().unwrap().version, version);
        // Bad input changes nothing.
        for (project, ids) in [(1, vec!["not-a-uuid"]), (-1, vec![P]), (1, vec![])] {
            let err = store.delete_person_ids(project, &ids, &[]).unwrap_err();
            assert!(err.is_invalid_input(), "{err}");
        }
        assert_eq!(store.status().unwrap().version, version);

        // Purged and verified like any request.
        store.flush().unwrap();
        let r = store.compact(CompactRequest::now()).unwrap();
        assert!(r.verification_failures.is_empty());
        assert_eq!(r.requests_verified.len(), 1);
    }
}

#[test]
fn delete_person_ids_ignores_rows_deleted_earlier() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        const P: &str = "0b9f4c5e-6d1a-4f5e-9a51-8c7f1f0e2a11";
        let site = Site::new(backend);
        let store = site.open();
        let mut first = row(1, "shared-device", 1, 0);
        first.person_id = Some(P.into());
        crate::common::append(&store, &[first]);
        store.flush().unwrap();
        // That row is deleted (not yet purged); the id is then reused by
        // someone else.
        store.delete(DeleteSpec::ids(1, ["shared-device"])).unwrap();
        crate::common::append(&store, &[row(2, "shared-device", 1, 0)]);
        store.flush().unwrap();
        let out = store.delete_person_ids(1, &[P], &[]).unwrap();
        assert!(out.distinct_ids.is_empty(), "{:?}", out.distinct_ids);
        assert_eq!(visible(&store).len(), 1, "the new owner's row stays");
    }
}

/// `delete_person_ids` reads only the row groups whose bloom filter may
/// hold one of the persons: compared with a model of the rows over parts
/// of many small row groups, with rows deleted earlier at positions in
/// every row group, for random sets of persons (some never seen).
#[test]
fn delete_person_ids_over_many_row_groups_matches_a_model() {
    use std::collections::{BTreeMap, BTreeSet};
    let dir = tempfile::tempdir().unwrap();
    let store = elide_store::Store::open(
        dir.path(),
        StoreOptions {
            part: elide_store::PartWriterOptions {
                row_group_rows: 40,
                ..Default::default()
            },
            ..crate::common::opts()
        },
    )
    .unwrap();
    let person = |p: u64| format!("00000000-0000-4000-8000-{p:012x}");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // 60 distinct ids over 3 days; most rows carry their id's person,
    // some another person's (merged ids) or none.
    let mut rows = Vec::new();
    let mut model: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for n in 0..3000u64 {
        let d = next(60);
        let did = format!("d{d:02}");
        let p = match next(10) {
            0 => None,
            1 => Some(next(30)),
            _ => Some(d / 2),
        };
        let mut r = row(n, &did, 1, (n % 3) as i64);
        r.person_id = p.map(person);
        if let Some(p) = p {
            model.entry(did.clone()).or_default().insert(p);
        }
        model.entry(did).or_default();
        rows.push(r);
    }
    append(&store, &rows);
    store.flush().unwrap();
    let manifest = store.manifest().unwrap();
    assert!(manifest.parts.iter().all(|p| p.row_groups.len() > 10));
    // Some ids deleted first: their rows are tombstoned in every part.
    let gone = ["d03", "d17", "d31", "d44", "d58"];
    store.delete(DeleteSpec::ids(1, gone)).unwrap();
    for d in gone {
        model.remove(d);
    }
    for round in 0..12 {
        let persons: Vec<u64> = (0..1 + next(4)).map(|_| next(34)).collect();
        let ids: Vec<String> = persons.iter().map(|p| person(*p)).collect();
        let want: Vec<String> = model
            .iter()
            .filter(|(_, ps)| persons.iter().any(|p| ps.contains(p)))
            .map(|(d, _)| d.clone())
            .collect();
        let out = store.delete_person_ids(1, &ids, &[]).unwrap();
        assert_eq!(out.distinct_ids, want, "round {round}, persons {persons:?}");
        for d in &want {
            model.remove(d);
        }
        let left: BTreeSet<String> = visible(&store).into_iter().map(|(_, d, _)| d).collect();
        assert_eq!(left, model.keys().cloned().collect(), "round {round}");
    }
}

/// A store whose buffers hold 100 rows (a bulk ingest spills often).
fn open_small_buffers(dir: &std::path::Path) -> elide_store::Store {
    let small = StoreOptions {
        memtable_rows: 100,
        ..opts()
    };
    elide_store::Store::open(dir, small).unwrap()
}

/// Rows `50k..50(k+1)` as one batch.
fn fifty_rows(k: u64) -> RecordBatch {
    elide_store::jsonl::rows_to_batch(&rows(k * 50..(k + 1) * 50)).unwrap()
}

/// Write `fifty_rows(k)` for each of `ks` until a write fails: that `k`
/// and its error, or `None`.
fn write_until_error(
    bulk: &mut elide_store::BulkIngest,
    ks: std::ops::Range<u64>,
) -> Option<(u64, String)> {
    ks.into_iter()
        .find_map(|k| bulk.write(&fifty_rows(k)).err().map(|e| (k, e.to_string())))
}

/// The store of `dir` (closed), opened again with small buffers, after
/// checking that no part or tombstone file the manifest does not name is
/// left on disk.
fn reopen_without_orphans(dir: &std::path::Path) -> elide_store::Store {
    let store = open_small_buffers(dir);
    assert_eq!(
        parts_and_tombstones_on_disk(dir),
        store.manifest().unwrap().referenced_paths()
    );
    store
}

/// A bulk ingest whose buffer fills twenty times: each full buffer is
/// written on the writer thread while the next one fills. The commit has
/// every row once; a bulk ingest dropped with a buffer in writing leaves
/// no row and, after a reopen, no file the manifest does not name.
#[test]
fn a_bulk_ingest_writes_a_full_buffer_while_the_next_fills() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_buffers(dir.path());
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    for k in 0..40 {
        bulk.write(&fifty_rows(k)).unwrap();
    }
    assert_eq!(bulk.rows(), 2000);
    let out = bulk.commit().unwrap();
    assert_eq!(out.rows, 2000);
    assert_eq!(visible_ns(&store), (0..2000).collect::<Vec<u64>>());
    // 20 buffers of 100 rows over 3 days: a part per buffer and day.
    assert_eq!(out.parts, 60);

    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    for k in 40..45 {
        bulk.write(&fifty_rows(k)).unwrap();
    }
    drop(bulk);
    assert_eq!(visible_ns(&store).len(), 2000);
    store.close().unwrap();
    let store = reopen_without_orphans(dir.path());
    assert_eq!(visible_ns(&store), (0..2000).collect::<Vec<u64>>());
}

/// A bulk ingest whose writer thread fails (project 1's partition
/// directory is a file): the error comes back from a later write, every
/// call after it (the commit included) fails too, and nothing is visible.
#[test]
fn a_bulk_ingest_whose_writer_failed_can_only_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_buffers(dir.path());
    let blocker = dir.path().join("parts/events/1");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    let (k, _) = write_until_error(&mut bulk, 0..10).expect("a write reports the writer's failure");
    assert!(k >= 2, "the first buffer is written in the background");
    // Going on is refused, and so is the commit.
    let e = bulk.write(&fifty_rows(20)).unwrap_err().to_string();
    assert!(e.contains("failed earlier"), "{e}");
    let e = bulk.commit().unwrap_err().to_string();
    assert!(e.contains("failed earlier"), "{e}");
    assert!(visible_ns(&store).is_empty());
    std::fs::remove_file(&blocker).unwrap();
    store.close().unwrap();
    let store = open_small_buffers(dir.path());
    assert!(visible_ns(&store).is_empty());
    assert!(store.manifest().unwrap().parts.is_empty());
}

/// Parts are fsynced on threads of their own while a bulk ingest goes
/// on: a failed fsync fails the ingest (at a later write or at the
/// commit, never silently), nothing is published, and after a reopen no
/// file the manifest does not name is left.
#[test]
fn a_bulk_ingest_whose_parts_fail_to_sync_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = crate::common::FailingSync::files(|p| p.to_string_lossy().contains("/parts/"));
    let store = elide_store::Store::open(
        dir.path(),
        StoreOptions {
            memtable_rows: 100,
            fs: fs.clone(),
            ..opts()
        },
    )
    .unwrap();
    append(&store, &rows(0..10));
    fs.arm(true);
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    let failed_at = write_until_error(&mut bulk, 0..20);
    let e = bulk.commit().unwrap_err().to_string();
    match &failed_at {
        Some((_, first)) => {
            assert!(first.contains("injected"), "{first}");
            assert!(e.contains("failed earlier"), "{e}");
        }
        None => assert!(e.contains("injected"), "{e}"),
    }
    assert_eq!(visible_ns(&store), (0..10).collect::<Vec<u64>>());
    fs.arm(false);
    store.close().unwrap();
    let store = reopen_without_orphans(dir.path());
    assert_eq!(visible_ns(&store), (0..10).collect::<Vec<u64>>());
}

/// A bulk ingest's runs reach the distinct-id index at its commit (its
/// writer stages them in an index of their own, merged at the commit):
/// deleting an id afterwards hides exactly its rows, in the parts flushed
/// before and in the parts of two ingests. A project dropped while an
/// ingest of its rows is in flight loses the rows whose `_seq`s were
/// reserved before the drop; the rest are committed, and a delete finds
/// them.
#[test]
fn a_bulk_ingests_runs_reach_the_index_at_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_buffers(dir.path());
    append(&store, &rows(0..200));
    store.flush().unwrap();
    for ks in [4..24, 24..30] {
        let mut bulk = store.bulk_ingest(Table::Events).unwrap();
        for k in ks {
            bulk.write(&fifty_rows(k)).unwrap();
        }
        bulk.commit().unwrap();
    }
    let out = store.delete(DeleteSpec::ids(1, ["d1"])).unwrap();
    assert_eq!(out.rows_hidden, 375);
    let kept: Vec<u64> = (0..1500).filter(|n| n % 4 != 1).collect();
    assert_eq!(visible_ns(&store), kept);

    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    for k in 0..5 {
        // Buffers of 100 rows: the first 200 are reserved and written.
        bulk.write(&project_2(10_000 + k * 50..10_050 + k * 50))
            .unwrap();
    }
    store.drop_project(2).unwrap();
    let out = bulk.commit().unwrap();
    assert_eq!((out.rows, out.rows_dropped), (50, 200));
    let out = store.delete(DeleteSpec::ids(2, ["e0"])).unwrap();
    assert_eq!(out.rows_hidden, 25);
    let mut kept = kept;
    kept.extend((10_200..10_250).filter(|n| n % 2 == 1));
    assert_eq!(visible_ns(&store), kept);
}

/// `acknowledged_seq` is a cut-off for "the rows so far" that holds across
/// a crash: above every acknowledged row, not counting the `_seq`s a bulk
/// ingest reserved and never committed, so a reopened store (which hands
/// those out again) puts the rows appended after it above it. (The
/// persons layer records it when a reset detaches an id.)
#[test]
fn the_acknowledged_seq_stays_below_rows_appended_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_buffers(dir.path());
    append(&store, &[row(0, "x", 1, 0), row(1, "x", 1, 0)]);
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    for k in 0..3 {
        // Buffers of 100 rows: 100 `_seq`s reserved, never committed.
        bulk.write(&fifty_rows(k)).unwrap();
    }
    let cut = store.acknowledged_seq().unwrap();
    drop(bulk);
    // A crash: no close, nothing flushed; the two rows are in the log.
    drop(store);
    let store = open_small_buffers(dir.path());
    append(&store, &[row(2, "x", 1, 0)]);
    let out = store
        .delete(DeleteSpec {
            cutoff: Some(cut),
            ..DeleteSpec::ids(1, ["x"])
        })
        .unwrap();
    assert_eq!(
        out.rows_hidden, 2,
        "the cut-off ({cut}) is not between them"
    );
    assert_eq!(visible_ns(&store), vec![2]);
}

/// Rows `ns` of project 2, ids `e0` and `e1`.
fn project_2(ns: std::ops::Range<u64>) -> RecordBatch {
    let rows: Vec<_> = ns.map(|n| row(n, &format!("e{}", n % 2), 2, 0)).collect();
    elide_store::jsonl::rows_to_batch(&rows).unwrap()
}

/// A project drop whose commit failed did not happen: a bulk ingest of
/// the project in flight keeps every row at its commit (the drop joined
/// the ingests' list only once published). The parts an ingest leaves out
/// for a drop that did happen leave nothing on disk, their `.runs` files
/// (which name their distinct ids) included.
#[test]
fn a_failed_drop_spares_an_ingest_and_a_real_one_leaves_no_file_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = crate::common::FailingSync::files(|p| p.to_string_lossy().contains("/manifest/"));
    let options = StoreOptions {
        memtable_rows: 100,
        fs: fs.clone(),
        ..opts()
    };
    let store = elide_store::Store::open(dir.path(), options).unwrap();
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    for k in 0..5 {
        // Buffers of 100 rows: the first 200 are reserved and written.
        bulk.write(&project_2(10_000 + k * 50..10_050 + k * 50))
            .unwrap();
    }
    fs.arm(true);
    let e = store.drop_project(2).unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    fs.arm(false);
    let out = bulk.commit().unwrap();
    assert_eq!((out.rows, out.rows_dropped), (250, 0), "a drop that failed");
    assert_eq!(visible_ns(&store), (10_000..10_250).collect::<Vec<u64>>());

    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    for k in 0..5 {
        bulk.write(&project_2(20_000 + k * 50..20_050 + k * 50))
            .unwrap();
    }
    store.drop_project(2).unwrap();
    let out = bulk.commit().unwrap();
    assert_eq!((out.rows, out.rows_dropped), (50, 200));
    assert_eq!(visible_ns(&store), (20_200..20_250).collect::<Vec<u64>>());
    assert_eq!(
        parts_and_tombstones_on_disk(dir.path()),
        store.manifest().unwrap().referenced_paths(),
        "a left-out part's files stayed on disk"
    );
}

/// Rows `ns` of distinct id `x`, project 1, as one batch.
fn rows_of_x(ns: std::ops::Range<u64>) -> RecordBatch {
    let rows: Vec<_> = ns.map(|n| row(n, "x", 1, 0)).collect();
    elide_store::jsonl::rows_to_batch(&rows).unwrap()
}

/// A deletion with a floor covers the rows of its ids from the floor to
/// below the cut-off, and no other: in a run of a part that straddles the
/// floor, in buffered rows, in a bulk ingest in flight across it (rows
/// reserved before the floor stay, those after it are hidden at its
/// commit), after a crash (the ingest log's replay, with rows on both
/// sides of a floor), and through the
/// purge, whose verification looks for the request's rows only (the rows
/// below the floor are on disk) and whose receipt states the floor. A
/// floor above the cut-off is refused.
#[test]
fn a_deletion_with_a_floor_leaves_the_rows_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_buffers(dir.path());
    append(&store, &[row(0, "x", 1, 0), row(1, "x", 1, 0)]);
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    // Buffers of 100 rows: these are reserved and written now.
    bulk.write(&rows_of_x(100..200)).unwrap();
    let floor = store.status().unwrap().next_seq;
    append(&store, &[row(2, "x", 1, 0), row(3, "y", 1, 0)]);
    store.flush().unwrap();
    bulk.write(&rows_of_x(200..300)).unwrap();
    append(&store, &[row(4, "x", 1, 0)]); // buffered
    let refused = store.delete(DeleteSpec {
        cutoff: Some(floor - 1),
        floor,
        ..DeleteSpec::ids(1, ["x"])
    });
    assert!(
        matches!(refused, Err(elide_store::StoreError::InvalidInput(_))),
        "{refused:?}"
    );
    let out = store
        .delete(DeleteSpec {
            floor,
            ..DeleteSpec::ids(1, ["x"])
        })
        .unwrap();
    assert_eq!(out.rows_hidden, 2, "row 2 in the part, row 4 buffered");
    bulk.commit().unwrap();
    let mut kept: Vec<u64> = vec![0, 1, 3];
    kept.extend(100..200);
    assert_eq!(visible_ns(&store), kept);
    // Rows on both sides of a floor in the ingest log only.
    append(&store, &[row(6, "x", 1, 0)]);
    let second_floor = store.status().unwrap().next_seq;
    append(&store, &[row(7, "x", 1, 0)]);
    let second = store
        .delete(DeleteSpec {
            floor: second_floor,
            ..DeleteSpec::ids(1, ["x"])
        })
        .unwrap();
    assert_eq!(second.rows_hidden, 1);
    kept.push(6);
    kept.sort();
    assert_eq!(visible_ns(&store), kept);
    // A crash: rows 6 and 7 are in the ingest log only.
    drop(store);
    let store = open_small_buffers(dir.path());
    assert_eq!(visible_ns(&store), kept);
    crate::common::compact_now(&store);
    let requests = store.requests().unwrap();
    for (id, floor) in [(out.request_id, floor), (second.request_id, second_floor)] {
        let req = requests.iter().find(|r| r.id == id).unwrap();
        assert_eq!(req.status, elide_store::RequestStatus::Verified);
        assert_eq!(req.floor_seq, floor);
    }
    assert_eq!(visible_ns(&store), kept);
    let receipt = store.receipt(out.request_id).unwrap().unwrap();
    let receipt: serde_json::Value = serde_json::from_slice(&receipt).unwrap();
    assert_eq!(receipt["body"]["floor_seq"], floor, "{receipt}");
}

/// `DeleteSpec::keeps_ids` is recorded on the request by `delete` and
/// `delete_many` alike, and survives a reopen (a metadata rebuild reads
/// it from the manifest).
#[test]
fn a_deletions_keeps_ids_mark_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &rows(0..8));
    let spec = |keeps_ids| DeleteSpec {
        keeps_ids,
        ..DeleteSpec::ids(1, ["d1"])
    };
    let a = store.delete(spec(true)).unwrap();
    let b = store.delete_many([spec(false), spec(true)]).unwrap();
    store.close().unwrap();
    let store = open(dir.path());
    for (id, want) in [
        (a.request_id, true),
        (b[0].request_id, false),
        (b[1].request_id, true),
    ] {
        assert_eq!(store.request(id).unwrap().unwrap().keeps_ids, want, "{id}");
    }
}
