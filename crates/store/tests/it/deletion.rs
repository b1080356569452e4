use crate::common::*;
use elide_store::{DeleteSpec, RequestStatus, StoreError};

fn del(
    store: &elide_store::Store,
    project: i64,
    ids: &[&str],
    cutoff: Option<u64>,
) -> elide_store::DeleteOutcome {
    store
        .delete(DeleteSpec {
            cutoff,
            ..DeleteSpec::ids(project, ids.iter().copied())
        })
        .unwrap()
}

#[test]
fn delete_hides_rows_in_parts_and_memtable_only_below_cutoff() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(
            &store,
            &[
                row(1, "a", 1, 0),
                row(2, "b", 1, 0),
                row(3, "a", 1, 1),
                row(4, "a", 2, 0),
            ],
        );
        store.flush().unwrap();
        append(&store, &[row(5, "a", 1, 0), row(6, "b", 1, 0)]); // memtable
        let o = del(&store, 1, &["a"], None);
        assert_eq!(o.rows_hidden, 3, "two in parts, one buffered");
        append(&store, &[row(7, "a", 1, 0)]); // after the cut-off: stays
        let a_rows: Vec<_> = visible(&store)
            .into_iter()
            .filter(|(_, d, _)| d == "a")
            .collect();
        assert_eq!(
            a_rows.len(),
            2,
            "project 2's 'a' and the row after the cut-off remain: {a_rows:?}"
        );
        // Deleting again hides nothing new but is recorded.
        let again = del(&store, 1, &["a"], Some(o.cutoff));
        assert_eq!(again.rows_hidden, 0);
        // Survives flush and reopen.
        store.flush().unwrap();
        let after_flush = visible(&store);
        store.close().unwrap();
        let store = site.open();
        assert_eq!(visible(&store), after_flush);
        let reqs = store.requests().unwrap();
        assert_eq!(reqs.len(), 2);
        assert!(reqs.iter().all(|r| r.status == RequestStatus::Pending));
        assert_eq!(reqs[0].rows_hidden, 3);
    }
}

#[test]
fn explicit_cutoff_inside_a_part_hides_only_older_rows() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &[row(1, "a", 1, 0)]);
        let mid = store.status().unwrap().next_seq;
        append(&store, &[row(2, "a", 1, 0), row(3, "a", 1, 0)]);
        store.flush().unwrap();
        let o = del(&store, 1, &["a"], Some(mid));
        assert_eq!(o.rows_hidden, 1);
        assert_eq!(visible(&store).len(), 2);
        let err = store.delete(DeleteSpec {
            cutoff: Some(u64::MAX),
            ..DeleteSpec::ids(1, ["a"])
        });
        assert!(matches!(err, Err(StoreError::InvalidInput(_))));
    }
}

#[test]
fn deletes_of_rows_being_flushed_are_not_lost() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        // A deletion racing a flush of the same rows: whether it lands before the
        // freeze, while the parts are written, or after the commit, the rows stay
        // hidden (late deletions are remapped onto the new parts).
        for round in 0..20 {
            let site = Site::new(backend);
            let store = site.open();
            let rows: Vec<_> = (0..2000)
                .map(|i| row(i, &format!("d{}", i % 50), 1, (i % 3) as i64))
                .collect();
            append(&store, &rows);
            let s2 = store.clone();
            let flusher = std::thread::spawn(move || s2.flush().unwrap());
            let o = del(&store, 1, &["d7", "d8"], None);
            flusher.join().unwrap();
            assert_eq!(o.rows_hidden, 80, "round {round}");
            let v = visible(&store);
            assert_eq!(v.len(), 2000 - 80, "round {round}");
            assert!(v.iter().all(|(_, d, _)| d != "d7" && d != "d8"));
            store.close().unwrap();
            let store = site.open();
            assert_eq!(
                visible(&store).len(),
                2000 - 80,
                "round {round} after reopen"
            );
        }
    }
}

#[test]
fn delete_limits_are_enforced_and_change_nothing() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &[row(1, "a", 1, 0)]);
        let too_many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
        let e = store.delete(DeleteSpec::ids(1, too_many));
        assert!(matches!(e, Err(StoreError::InvalidInput(m)) if m.contains("1000")));
        let e = store.delete(DeleteSpec::ids(1, Vec::<String>::new()));
        assert!(matches!(e, Err(StoreError::InvalidInput(_))));
        let e = store.delete(DeleteSpec::ids(1, vec![String::new()]));
        assert!(matches!(e, Err(StoreError::InvalidInput(_))));
        assert!(store.requests().unwrap().is_empty());
        assert_eq!(visible(&store).len(), 1);
        let ok: Vec<String> = (0..1000).map(|i| format!("x{i}")).collect();
        store.delete(DeleteSpec::ids(1, ok)).unwrap();
    }
}

#[test]
fn index_built_at_first_delete_after_reopen_finds_rows() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        let rows: Vec<_> = (0..500)
            .map(|i| {
                row(
                    i,
                    &format!("d{}", i % 20),
                    1 + (i % 2) as i64,
                    (i % 4) as i64,
                )
            })
            .collect();
        append(&store, &rows);
        store.flush().unwrap();
        store.close().unwrap();
        let store = site.open();
        let o = del(&store, 1, &["d2", "d4"], None);
        assert_eq!(o.rows_hidden, 50);
        // Parts added after the index was built are indexed too.
        append(
            &store,
            &rows
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.uuid = None;
                    r
                })
                .collect::<Vec<_>>(),
        );
        store.flush().unwrap();
        let o = del(&store, 1, &["d2"], None);
        assert_eq!(o.rows_hidden, 25);
    }
}

#[test]
fn parts_flushed_while_the_index_builds_at_open_are_found() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        // Opening a store with parts builds the distinct-id index in the
        // background. A flush that commits before the first deletion (while the
        // build may still run) must be covered too: the deletion catches up with
        // the parts the build did not see. Repeated to hit both orders.
        for round in 0..5 {
            let site = Site::new(backend);
            let store = site.open();
            let rows: Vec<_> = (0..2000)
                .map(|i| row(i, &format!("d{}", i % 40), 1, (i % 7) as i64))
                .collect();
            append(&store, &rows);
            store.flush().unwrap();
            store.close().unwrap();
            let store = site.open();
            let fresh: Vec<_> = (0..400)
                .map(|i| row(10_000 + i, &format!("d{}", i % 40), 1, 8))
                .collect();
            append(&store, &fresh);
            store.flush().unwrap();
            let o = del(&store, 1, &["d3", "d5"], None);
            assert_eq!(o.rows_hidden, 100 + 20, "round {round}");
        }
    }
}

/// A deleted person's rows are contiguous in a part: a commit stores the
/// tombstone as runs, and the store keeps it as runs in memory (what a
/// scan reads), after the delete and after a reopen; the rows hidden stay
/// exactly the person's.
#[test]
fn tombstones_are_stored_and_kept_as_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 40 distinct ids, the first with one row and the others with 20;
    // every other one deleted. Its runs reach the tombstone one range at a
    // time, and a container begun with a single position stays an array
    // container through the ranges added to it: only the commit's
    // `run_optimize` makes it runs.
    let ids: Vec<String> = (0..40).map(|i| format!("d{i:02}")).collect();
    let rows: Vec<_> = (0..781u64)
        .map(|n| {
            let i = if n == 0 { 0 } else { 1 + (n - 1) % 39 };
            row(n, &ids[i as usize], 1, 0)
        })
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    let gone: Vec<&str> = ids.iter().step_by(2).map(String::as_str).collect();
    let o = del(&store, 1, &gone, None);
    assert_eq!(o.rows_hidden, 1 + 19 * 20);
    let runs_in_memory = |store: &elide_store::Store| -> u32 {
        let snap = store.snapshot().unwrap();
        let parts: Vec<_> = snap.parts(elide_store::Table::Events).cloned().collect();
        assert!(!parts.is_empty());
        parts
            .iter()
            .filter_map(|p| snap.hidden(p).unwrap())
            .map(|b| b.statistics().n_run_containers)
            .sum()
    };
    assert!(runs_in_memory(&store) > 0);
    let files: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tomb"))
        .collect();
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(&files[0]).unwrap();
    let stored = elide_store::format::decode_tombstones("t", &bytes).unwrap();
    assert!(!stored.is_empty());
    for b in stored.values() {
        assert!(b.statistics().n_run_containers > 0, "stored as runs");
    }
    let want = visible(&store);
    assert!(want.iter().all(|(_, d, _)| !gone.contains(&d.as_str())));
    assert_eq!(want.len(), 20 * 20);
    store.close().unwrap();
    let store = open(dir.path());
    assert!(runs_in_memory(&store) > 0);
    assert_eq!(visible(&store), want);
}
