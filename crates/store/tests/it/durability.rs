use crate::common::*;
use elide_store::{DeleteSpec, Store, StoreError, StoreOptions, Table};

/// A store on `fs`, with the tests' options.
fn open_failing(dir: &std::path::Path, fs: &std::sync::Arc<FailingSync>) -> Store {
    Store::open(
        dir,
        StoreOptions {
            fs: fs.clone(),
            ..opts()
        },
    )
    .unwrap()
}

#[test]
fn appends_survive_reopen_from_log_and_from_parts() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 1)]);
        store.flush().unwrap();
        append(&store, &[row(3, "a", 2, 0)]);
        let before = visible(&store);
        assert_eq!(before.len(), 3);
        store.close().unwrap(); // row 3 only in the ingest log
        let store = site.open();
        assert_eq!(visible(&store), before);
        store.flush().unwrap();
        assert_eq!(visible(&store), before);
        assert_eq!(
            store.status().unwrap().wal_segments,
            1,
            "flushed log segments are removed"
        );
        store.close().unwrap();
        let store = site.open();
        assert_eq!(visible(&store), before);
    }
}

#[test]
fn second_writer_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    match Store::open(dir.path(), opts()) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    store.close().unwrap();
    open(dir.path()).close().unwrap();
}

#[test]
fn snapshots_do_not_change_after_later_commits() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
        store.flush().unwrap();
        let snap = store.snapshot().unwrap();
        let seen = visible_in(&snap);
        append(&store, &[row(3, "c", 1, 0)]);
        store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
        store.flush().unwrap();
        assert_eq!(visible_in(&snap), seen);
        assert_eq!(visible(&store).len(), 2);
    }
}

#[test]
fn unreferenced_files_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0)]);
    store.flush().unwrap();
    store.close().unwrap();
    let orphan = dir.path().join("parts/events/1/2026-09-21");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("00000000000000ff.parquet"), b"crashed write").unwrap();
    std::fs::write(dir.path().join("tombstones.tmp"), b"x").ok();
    std::fs::create_dir_all(dir.path().join("manifest")).unwrap();
    std::fs::write(
        dir.path().join("manifest/00000000000000000099.manifest#3"),
        b"staged",
    )
    .unwrap();
    let store = open(dir.path());
    assert!(!orphan.join("00000000000000ff.parquet").exists());
    assert!(!dir
        .path()
        .join("manifest/00000000000000000099.manifest#3")
        .exists());
    assert_eq!(visible(&store).len(), 1);
}

#[test]
fn sequence_numbers_never_go_backwards_across_reopen() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &[row(1, "a", 1, 0)]);
        let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
        store.close().unwrap();
        let store = site.open();
        let a = store
            .append(
                Table::Events,
                &elide_store::jsonl::rows_to_batch(&[row(2, "a", 1, 0)]).unwrap(),
            )
            .unwrap();
        assert!(
            a.seq_start >= o.cutoff,
            "new rows must not fall under an earlier cut-off"
        );
        assert_eq!(visible(&store).len(), 1);
    }
}

#[test]
fn backpressure_without_background_flusher_flushes_inline() {
    let dir = tempfile::tempdir().unwrap();
    let opts = elide_store::StoreOptions {
        memtable_rows: 10,
        max_frozen: 1,
        background_flush: false,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    for i in 0..40 {
        append(
            &store,
            &(0..5)
                .map(|j| row(i * 5 + j, "a", 1, (j % 2) as i64))
                .collect::<Vec<_>>(),
        );
    }
    let st = store.status().unwrap();
    assert!(
        st.memtable_rows <= 20,
        "memory stays bounded: {} rows buffered",
        st.memtable_rows
    );
    assert!(st.partitions.iter().map(|p| p.rows).sum::<u64>() >= 180);
    assert_eq!(visible(&store).len(), 200);
}

#[test]
fn in_memory_object_store_backend_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mem: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let opts = || elide_store::StoreOptions {
        object_store: Some(std::sync::Arc::clone(&mem)),
        background_flush: false,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts()).unwrap();
    append(
        &store,
        &[row(1, "a", 1, 0), row(2, "b", 1, 0), row(3, "a", 2, 1)],
    );
    store.flush().unwrap();
    let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    assert_eq!(o.rows_hidden, 1);
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .visible_rows(Table::Events)
            .unwrap(),
        2
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| {
            let n = e.unwrap().file_name();
            n == "wal" || n == "LOCK" || n == "WRITER_ID"
        }),
        "parts, tombstones and manifests live in the object store"
    );
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .visible_rows(Table::Events)
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .manifest()
            .unwrap()
            .parts
            .iter()
            .map(|p| p.deleted())
            .sum::<u64>(),
        1
    );
}

/// A flush whose parts cannot be synced fails and removes every part it
/// wrote (of each partition, both files): none is left unreferenced
/// until a reopen, however often the flush is retried. Once the disk
/// recovers the same rows flush.
#[test]
fn a_failed_flush_leaves_no_part_behind() {
    let dir = tempfile::tempdir().unwrap();
    let fs = crate::common::FailingSync::files(|p| p.to_string_lossy().contains("/parts/"));
    let store = open_failing(dir.path(), &fs);
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 2, 1)]);
    store.flush().unwrap();
    let published = parts_and_tombstones_on_disk(dir.path());
    assert_eq!(published, store.manifest().unwrap().referenced_paths());
    // Three partitions: three parts written, none synced.
    append(
        &store,
        &[row(3, "a", 1, 0), row(4, "c", 1, 2), row(5, "d", 3, 0)],
    );
    fs.arm(true);
    for _ in 0..3 {
        let e = store.flush().unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        assert_eq!(parts_and_tombstones_on_disk(dir.path()), published);
    }
    fs.arm(false);
    store.flush().unwrap();
    assert_eq!(visible(&store).len(), 5);
    assert_eq!(
        parts_and_tombstones_on_disk(dir.path()),
        store.manifest().unwrap().referenced_paths()
    );
}

/// Once a flush's commit has an unknown outcome, the store refuses
/// writes until it is reopened: an append is refused (a writer would
/// otherwise wait for ever for a flusher that can never commit), and a
/// flush retried writes no part. The reopened store has every row, and
/// no file its manifest does not name.
#[test]
fn after_a_flush_with_an_unknown_outcome_writes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = crate::common::FailingSync::dirs(|p| p.ends_with("manifest"));
    let store = open_failing(dir.path(), &fs);
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 1)]);
    fs.arm(true);
    let e = store.flush().unwrap_err();
    assert!(
        matches!(e, StoreError::OutcomeUnknown(_))
            && e.to_string().contains("directory fsync failed"),
        "{e}"
    );
    fs.arm(false);
    let on_disk = parts_and_tombstones_on_disk(dir.path());
    let batch = elide_store::jsonl::rows_to_batch(&[row(3, "c", 1, 0)]).unwrap();
    let e = store.append(Table::Events, &batch).unwrap_err();
    assert!(
        matches!(e, StoreError::Unavailable(_)) && e.to_string().contains("reopen"),
        "{e}"
    );
    let e = store.flush().unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert_eq!(parts_and_tombstones_on_disk(dir.path()), on_disk);
    let why = store
        .write_failure()
        .expect("a handle that refuses writes says so");
    assert!(why.contains("reopen"), "{why}");
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(store.write_failure(), None);
    assert_eq!(visible(&store).len(), 2);
    assert_eq!(
        parts_and_tombstones_on_disk(dir.path()),
        store.manifest().unwrap().referenced_paths()
    );
}

/// A commit whose manifest landed but whose directory fsync failed has an
/// unknown outcome: the caller gets an error, every later commit is
/// refused until the store is reopened (none may build on the stale
/// base, nor rewrite receipts a manifest on disk already names), and the
/// reopened store shows the version on disk.
#[test]
fn a_commit_with_an_unknown_outcome_refuses_later_commits_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // The directory fsync of `manifest/` fails while armed: the manifest
    // is renamed into place, then the commit reports an error.
    let fs = crate::common::FailingSync::dirs(|p| p.ends_with("manifest"));
    let store = open_failing(dir.path(), &fs);
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    store.flush().unwrap();
    fs.arm(true);
    let e = store.delete(DeleteSpec::ids(1, ["a"])).unwrap_err();
    assert!(
        matches!(e, StoreError::OutcomeUnknown(_))
            && e.to_string().contains("directory fsync failed"),
        "{e}"
    );
    fs.arm(false);
    let e = store.delete(DeleteSpec::ids(1, ["b"])).unwrap_err();
    assert!(
        matches!(e, StoreError::Unavailable(_)) && e.to_string().contains("reopen"),
        "{e}"
    );
    store.close().unwrap();
    let store = open(dir.path());
    let left: Vec<String> = visible(&store).into_iter().map(|(_, d, _)| d).collect();
    assert_eq!(
        left,
        vec!["b".to_string()],
        "the landed deletion of a holds"
    );
    store.delete(DeleteSpec::ids(1, ["b"])).unwrap();
    assert!(visible(&store).is_empty());
}

/// A bulk ingest whose commit has an unknown outcome says so
/// ([`StoreError::OutcomeUnknown`], not an error that reads as "nothing
/// was ingested"): here the manifest landed, and the reopened store has
/// every row, so a caller who retried on any error would store them twice.
#[test]
fn an_ingest_whose_commit_has_an_unknown_outcome_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let fs = crate::common::FailingSync::dirs(|p| p.ends_with("manifest"));
    let store = open_failing(dir.path(), &fs);
    let batch = elide_store::jsonl::rows_to_batch(&[row(1, "a", 1, 0), row(2, "b", 1, 1)]).unwrap();
    fs.arm(true);
    let e = store
        .ingest(
            Table::Events,
            [Ok(batch)],
            elide_store::IngestOptions::new(),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::OutcomeUnknown(_)), "{e}");
    assert!(e.to_string().contains("reopen"), "{e}");
    fs.arm(false);
    assert!(store.write_failure().is_some());
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store).len(), 2, "the landed ingest holds");
}

/// A flush whose ingest-log segment cannot be removed still publishes
/// its parts, and the segment, which still holds the flushed rows, stays
/// on disk. A deletion of those rows is not purged or verified while it
/// is there (DESIGN invariant 5): the lifecycle step sweeps the log
/// first, and a sweep that fails stops it. Once the disk recovers, the
/// next compaction removes the segment and verifies the request.
#[test]
fn a_log_segment_a_flush_could_not_remove_holds_the_deletion_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = crate::common::FailingSync::removals(|p| p.extension().is_some_and(|e| e == "wal"));
    let store = open_failing(dir.path(), &fs);
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    let wal = |p: &std::path::Path| p.extension().is_some_and(|e| e == "wal");
    let flushed: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| wal(p))
        .collect();
    assert_eq!(flushed.len(), 1);
    fs.arm(true);
    store.flush().unwrap();
    let on_disk = || flushed.iter().all(|p| p.exists());
    assert!(on_disk(), "the flush could not remove its segment");
    let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    let status = || store.request(o.request_id).unwrap().unwrap().status;
    for _ in 0..2 {
        let e = store
            .compact(elide_store::CompactRequest {
                manual: true,
                merges: true,
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        assert!(on_disk());
        assert_eq!(status(), elide_store::RequestStatus::Pending);
    }
    fs.arm(false);
    let report = compact_now(&store);
    assert_eq!(report.requests_verified, vec![o.request_id]);
    assert!(flushed.iter().all(|p| !p.exists()));
    assert_eq!(status(), elide_store::RequestStatus::Verified);
    assert_eq!(visible(&store).len(), 1);
}
