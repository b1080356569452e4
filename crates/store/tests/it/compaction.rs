//! Compaction: purges, merges, the request lifecycle, byte-level erasure,
//! GC against live snapshots, project drop.

use std::collections::BTreeSet;

use crate::common::*;
use elide_store::format::distinct_id_hash;
use elide_store::{
    DeleteSpec, PartCompression, PartWriterOptions, RequestStatus, Store, StoreOptions, Table,
    TaskKind, TaskOutcome,
};

fn ids_of(v: &BTreeSet<(String, String, u64)>, did: &str) -> usize {
    v.iter().filter(|(_, d, _)| d == did).count()
}

fn rows(
    range: std::ops::Range<u64>,
    ids: &[&str],
    project: i64,
    days: i64,
) -> Vec<elide_store::jsonl::EventRow> {
    range
        .map(|n| row(n, ids[n as usize % ids.len()], project, n as i64 % days))
        .collect()
}

#[test]
fn purge_drops_deleted_rows_keeps_the_rest_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &rows(0..300, &["a", "b", "c"], 1, 5));
    store.flush().unwrap();
    append(&store, &rows(300..330, &["a", "b", "c"], 2, 1)); // project 2: untouched
    store.flush().unwrap();
    let before = visible(&store);
    let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    assert_eq!(o.rows_hidden, 100);
    // Project 1's "a" rows are n = 0, 3, 6, ... < 300.
    let gone: BTreeSet<String> = (0..300)
        .filter(|n| n % 3 == 0)
        .map(|n| uuid::Uuid::from_u64_pair(7, n).to_string())
        .collect();
    let expect: BTreeSet<_> = before
        .iter()
        .filter(|(u, _, _)| !gone.contains(u))
        .cloned()
        .collect();
    let untouched: Vec<_> = store
        .manifest()
        .unwrap()
        .parts
        .iter()
        .filter(|p| p.project_id == 2)
        .map(|p| p.path.clone())
        .collect();

    let r = compact_now(&store);
    let purges: Vec<_> = r
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Purge)
        .collect();
    assert_eq!(purges.len(), 5, "one purge per part of project 1: {r:?}");
    assert!(purges.iter().all(|t| t.outcome == TaskOutcome::Committed));
    assert_eq!(purges.iter().map(|t| t.rows_dropped).sum::<u64>(), 100);
    assert_eq!(visible(&store), expect);
    let m = store.manifest().unwrap();
    assert!(m.parts.iter().all(|p| p.deleted() == 0));
    for p in &untouched {
        assert!(
            m.parts.iter().any(|q| &q.path == p),
            "untouched part {p} was rewritten"
        );
    }
    // Lifecycle: verified, with a keyed hash instead of the id.
    assert_eq!(r.requests_purged, vec![o.request_id]);
    assert_eq!(r.requests_verified, vec![o.request_id]);
    let req = &store.requests().unwrap()[0];
    assert_eq!(req.status, RequestStatus::Verified);
    assert!(req.purged_at_us.is_some() && req.verified_at_us.is_some());
    assert!(req.distinct_ids.is_empty());
    assert_eq!(
        req.id_hashes,
        vec![distinct_id_hash(&m.hash_key, 1, "a").unwrap()]
    );
    assert_eq!(m.last_compaction.as_ref().unwrap().rows_dropped, 100);
    // Old parts and tombstone files are gone from disk.
    assert_eq!(
        parts_and_tombstones_on_disk(dir.path()),
        m.referenced_paths()
    );
    // Reopen: same rows, same lifecycle.
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), expect);
    assert_eq!(store.requests().unwrap()[0].status, RequestStatus::Verified);
}

#[test]
fn a_delete_committed_during_a_purge_is_carried_onto_the_new_part() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..400, &["a", "b", "c", "d"], 1, 1));
        store.flush().unwrap();
        let ra = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
        let part = store.manifest().unwrap().parts[0].id;
        let prepared = store.prepare_purge(part).unwrap().unwrap();
        // Deletes race the rewrite: one of rows in the part, one of rows
        // already dropped by the rewrite.
        let rb = store.delete(DeleteSpec::ids(1, ["b"])).unwrap();
        assert_eq!(rb.rows_hidden, 100);
        let report = store.commit_rewrite(prepared).unwrap();
        assert_eq!(report.outcome, TaskOutcome::Committed);
        assert_eq!(report.rows_dropped, 100, "a's rows");
        assert_eq!(report.rows_carried, 100, "b's rows carried over");
        let v = visible(&store);
        assert_eq!(ids_of(&v, "a"), 0);
        assert_eq!(ids_of(&v, "b"), 0, "a deleted row became visible again");
        assert_eq!(ids_of(&v, "c") + ids_of(&v, "d"), 200);
        // a is purged (its part was rewritten), b still waits: the new part holds its rows.
        let (purged, verified, failures) = store.advance_requests().unwrap();
        assert_eq!(purged, vec![ra.request_id]);
        assert_eq!(verified, vec![ra.request_id]);
        assert!(failures.is_empty());
        let b_req = store
            .requests()
            .unwrap()
            .into_iter()
            .find(|r| r.id == rb.request_id)
            .unwrap();
        assert_eq!(b_req.status, RequestStatus::Pending);
        assert_eq!(b_req.parts, vec![report.output.unwrap()]);
        // Reopen, then the next compaction purges b.
        store.close().unwrap();
        let store = site.open();
        assert_eq!(ids_of(&visible(&store), "b"), 0);
        let r = compact_now(&store);
        assert_eq!(r.requests_verified, vec![rb.request_id]);
        assert_eq!(ids_of(&visible(&store), "c"), 100);
    }
}

#[test]
fn a_delete_committed_during_a_merge_is_carried_onto_the_merged_part() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        for k in 0..3 {
            append(&store, &rows(k * 90..(k + 1) * 90, &["x", "y", "z"], 1, 1));
            store.flush().unwrap();
        }
        let parts: Vec<u64> = store
            .manifest()
            .unwrap()
            .parts
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(parts.len(), 3);
        let before = visible(&store);
        let prepared = store.prepare_merge(&parts).unwrap().unwrap();
        let ry = store.delete(DeleteSpec::ids(1, ["y"])).unwrap();
        assert_eq!(ry.rows_hidden, 90);
        let report = store.commit_rewrite(prepared).unwrap();
        assert_eq!(report.rows_carried, 90);
        let m = store.manifest().unwrap();
        assert_eq!(m.parts.len(), 1);
        let expect: BTreeSet<_> = before.into_iter().filter(|(_, d, _)| d != "y").collect();
        assert_eq!(visible(&store), expect);
        // The merged part is sorted by (distinct_id, _seq): y's rows are one run.
        let r = compact_now(&store);
        assert_eq!(r.requests_verified, vec![ry.request_id]);
        assert_eq!(visible(&store), expect);
    }
}

#[test]
fn merges_combine_small_parts_of_a_partition() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        for k in 0..4 {
            append(&store, &rows(k * 50..(k + 1) * 50, &["p", "q"], 1, 2));
            store.flush().unwrap();
        }
        assert_eq!(store.manifest().unwrap().parts.len(), 8);
        let before = visible(&store);
        let r = compact_now(&store);
        let merges: Vec<_> = r
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Merge)
            .collect();
        // Two closed days of one month and project, small: one part.
        assert_eq!(merges.len(), 1, "{r:?}");
        assert!(merges[0].last_day.is_some(), "{r:?}");
        let m = store.manifest().unwrap();
        assert_eq!(m.parts.len(), 1);
        let p = &m.parts[0];
        assert_eq!(p.days().count(), 2);
        assert_eq!(
            (elide_store::day_of(p.min_ts), elide_store::day_of(p.max_ts)),
            (*p.days().start(), *p.days().end())
        );
        assert_eq!(visible(&store), before);
        // Deletion still resolves through the index after the swap.
        let o = store.delete(DeleteSpec::ids(1, ["p"])).unwrap();
        assert_eq!(o.rows_hidden, 100);
        store.close().unwrap();
        let store = site.open();
        assert_eq!(ids_of(&visible(&store), "p"), 0);
        assert_eq!(ids_of(&visible(&store), "q"), 100);
    }
}

/// A small project's parts of closed days merge across days, never across
/// a month: fewer parts, the same rows, every row inside its part's days;
/// deletions find a distinct id's run through the index and through the
/// `.runs` files; a purge keeps the span; a retention sweep drops a span
/// before its bound whole and tombstones one that straddles it; scrub is
/// clean; the same after a reopen.
#[test]
fn small_parts_of_closed_days_merge_across_days_within_a_month() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Project 1: 40 days from 2026-09-21 (10 in September, 30 in
    // October), two flushes, so two parts a day; project 2: three days.
    for k in 0..2 {
        append(
            &store,
            &rows(k * 400..(k + 1) * 400, &["a", "b", "c"], 1, 40),
        );
        store.flush().unwrap();
    }
    append(&store, &rows(1000..1030, &["x"], 2, 3));
    store.flush().unwrap();
    assert_eq!(store.manifest().unwrap().parts.len(), 83);
    let before = visible(&store);
    let r = compact_now(&store);
    assert!(r.tasks.iter().all(|t| t.kind == TaskKind::Merge), "{r:?}");
    let month = |day: i32| elide_store::format::day_to_string(day)[..7].to_string();
    let check_parts = |store: &Store| {
        let m = store.manifest().unwrap();
        for p in &m.parts {
            let (first, last) = (*p.days().start(), *p.days().end());
            assert!(
                p.days().contains(&elide_store::day_of(p.min_ts))
                    && p.days().contains(&elide_store::day_of(p.max_ts)),
                "{p:?}"
            );
            assert_eq!(month(first), month(last), "{p:?}");
            assert_eq!(p.last_day.is_some(), last > first);
            assert!(p.path.contains(&elide_store::format::day_to_string(first)));
        }
        m
    };
    let m = check_parts(&store);
    let spans: Vec<(i64, String, usize)> = m
        .parts
        .iter()
        .map(|p| (p.project_id, month(p.day), p.days().count()))
        .collect();
    assert_eq!(
        spans,
        vec![
            (1, "2026-09".into(), 10),
            (1, "2026-10".into(), 30),
            (2, "2026-09".into(), 3)
        ]
    );
    assert_eq!(visible(&store), before);
    // The run is recorded with its wall time (it was always 0).
    let last = store.status().unwrap().last_compaction.unwrap();
    assert_eq!((last.parts_merged, last.parts_written), (83, 3));
    assert!(
        last.elapsed_ms > 0 && last.elapsed_ms == r.summary.elapsed_ms,
        "{last:?}"
    );
    // Nothing more to merge: the next run is a no-op.
    assert!(compact_now(&store).tasks.is_empty());

    // A deletion through the index, then a purge: the span is kept.
    let of = |v: &BTreeSet<(String, String, u64)>, who: &str| ids_of(v, who);
    let o = store.delete(DeleteSpec::ids(1, ["b"])).unwrap();
    assert_eq!(o.rows_hidden as usize, of(&before, "b"));
    let r = compact_now(&store);
    assert_eq!(r.requests_verified, vec![o.request_id], "{r:?}");
    let m = check_parts(&store);
    assert_eq!(m.parts.len(), 3);
    assert!(m
        .parts
        .iter()
        .filter(|p| p.project_id == 1)
        .all(|p| p.last_day.is_some()));
    store.close().unwrap();

    // Without the in-memory index: the `.runs` files of merged parts.
    let store = Store::open(
        dir.path(),
        StoreOptions {
            in_memory_index: false,
            wait_ready: false,
            ..opts()
        },
    )
    .unwrap();
    let o = store.delete(DeleteSpec::ids(1, ["c"])).unwrap();
    assert_eq!(o.rows_hidden as usize, of(&before, "c"));
    assert_eq!(of(&visible(&store), "a"), of(&before, "a"));
    assert_eq!(of(&visible(&store), "c"), 0);

    // Retention: now 2026-10-16 15:00, 3 days kept: rows before
    // 2026-10-13 expire. September's part leaves whole; October's is
    // tombstoned up to the bound and purged.
    let t0_day = T0.div_euclid(DAY) * DAY;
    store
        .set_project_settings(
            1,
            elide_store::ProjectSettings {
                retention_days: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    let now = t0_day + 25 * DAY + 15 * 3_600_000_000;
    let bound = elide_store::retention::retention_bound(now, 3);
    assert_eq!(bound, t0_day + 22 * DAY);
    let sweeps = store.apply_retention(now).unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(sweeps[0].parts_dropped, 1, "September's span leaves whole");
    let expect: BTreeSet<_> = before
        .iter()
        .filter(|(u, d, _)| {
            let n = uuid::Uuid::parse_str(u).unwrap().as_u64_pair().1;
            d == "x" || (d == "a" && (n % 40) >= 22)
        })
        .cloned()
        .collect();
    assert_eq!(visible(&store), expect);
    let r = compact_now(&store);
    assert!(r.verification_failures.is_empty(), "{r:?}");
    let m = check_parts(&store);
    assert_eq!(m.parts.len(), 2);
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), expect);
    check_parts(&store);
}

/// Purges and merges prepared on several threads at once: every task
/// commits, the rows are exactly the live ones, the requests verify, and
/// no file is left that the manifest does not name; again after a reopen.
#[test]
fn purges_and_merges_on_several_threads_keep_exactly_the_live_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Three flushes over six days: 18 parts, so merges too.
    for k in 0..3 {
        // 5 ids over 6 days: every id on every day.
        append(
            &store,
            &rows(k * 240..(k + 1) * 240, &["a", "b", "c", "d", "e"], 1, 6),
        );
        store.flush().unwrap();
    }
    let before = visible(&store);
    let a = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    let c = store.delete(DeleteSpec::ids(1, ["c"])).unwrap();
    assert_eq!(a.rows_hidden + c.rows_hidden, 288);
    let expect: BTreeSet<_> = before
        .into_iter()
        .filter(|(_, d, _)| d != "a" && d != "c")
        .collect();
    let r = store
        .compact(elide_store::CompactRequest {
            threads: 4,
            ..elide_store::CompactRequest::now()
        })
        .unwrap();
    assert!(!r.tasks.is_empty() && r.skipped_tasks == 0, "{r:?}");
    let committed = |k: TaskKind| {
        r.tasks
            .iter()
            .filter(|t| t.kind == k && t.outcome == TaskOutcome::Committed)
            .count()
    };
    assert!(committed(TaskKind::Purge) > 0, "{r:?}");
    assert_eq!(r.summary.rows_dropped, 288);
    let mut verified = r.requests_verified.clone();
    verified.sort_unstable();
    assert_eq!(verified, vec![a.request_id, c.request_id]);
    assert_eq!(visible(&store), expect);
    let m = store.manifest().unwrap();
    assert!(m.parts.iter().all(|p| p.deleted() == 0));
    assert_eq!(
        parts_and_tombstones_on_disk(dir.path()),
        m.referenced_paths()
    );
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), expect);
}

#[test]
fn files_of_a_live_snapshot_outlive_the_compaction_and_the_request_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &rows(0..200, &["a", "b"], 1, 1));
    store.flush().unwrap();
    let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    let snap = store.snapshot().unwrap();
    let seen_before = visible_in(&snap);
    let old_path = snap.parts(Table::Events).next().unwrap().path.clone();
    let r = compact_now(&store);
    assert_eq!(r.tasks.len(), 1);
    // The old part is still on disk and the old snapshot still reads it.
    assert!(dir.path().join(&old_path).exists());
    assert_eq!(visible_in(&snap), seen_before);
    let req = store.requests().unwrap()[0].clone();
    assert_eq!(req.status, RequestStatus::Pending, "old file still on disk");
    // The part and its `.runs` file (which holds the distinct ids).
    let old_runs = elide_store::runs_file::runs_path(&old_path);
    assert_eq!(
        req.awaiting_removal,
        vec![old_path.clone(), old_runs.clone()]
    );
    drop(snap);
    let (purged, verified, _) = store.advance_requests().unwrap();
    assert_eq!((purged, verified), (vec![o.request_id], vec![o.request_id]));
    assert!(!dir.path().join(&old_path).exists());
    assert!(!dir.path().join(&old_runs).exists());
}

#[test]
fn a_delete_that_covers_a_whole_part_removes_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(
        &store,
        &[
            row(1, "solo", 1, 0),
            row(2, "solo", 1, 0),
            row(3, "other", 1, 1),
        ],
    );
    store.flush().unwrap();
    let m = store.manifest().unwrap();
    assert_eq!(m.parts.len(), 2);
    let solo_path = m
        .parts
        .iter()
        .find(|p| p.day == m.parts[0].day)
        .unwrap()
        .path
        .clone();
    store.delete(DeleteSpec::ids(1, ["solo"])).unwrap();
    let m = store.manifest().unwrap();
    assert_eq!(m.parts.len(), 1);
    assert!(!dir.path().join(&solo_path).exists());
    let req = &m.requests[0];
    assert_eq!(req.parts, Vec::<u64>::new());
    let (purged, verified, _) = store.advance_requests().unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(verified.len(), 1);
}

#[test]
fn a_request_made_while_rows_are_buffered_goes_through_the_same_lifecycle() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..60, &["m", "n"], 1, 1));
        let o = store.delete(DeleteSpec::ids(1, ["m"])).unwrap();
        assert_eq!(o.rows_hidden, 30);
        // Nothing flushed yet: the plan flushes first, then the request is purged.
        let r = compact_now(&store);
        assert!(r.flushed);
        assert_eq!(r.requests_verified, vec![o.request_id]);
        assert_eq!(ids_of(&visible(&store), "m"), 0);
        assert_eq!(ids_of(&visible(&store), "n"), 30);
    }
}

#[test]
fn drop_project_removes_its_rows_parts_requests_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &rows(0..100, &["a", "b"], 7, 3));
    append(&store, &rows(100..150, &["a", "b"], 8, 1));
    store.flush().unwrap();
    store.delete(DeleteSpec::ids(7, ["a"])).unwrap();
    append(&store, &rows(150..160, &["a"], 7, 1)); // buffered
    let paths: Vec<String> = store
        .manifest()
        .unwrap()
        .parts
        .iter()
        .filter(|p| p.project_id == 7)
        .map(|p| p.path.clone())
        .collect();
    let out = store.drop_project(7).unwrap();
    assert_eq!(
        out.parts_removed, 4,
        "three days, plus the buffered rows flushed first"
    );
    assert_eq!(out.rows_removed, 50 + 10);
    assert_eq!(out.requests_removed, 1);
    let m = store.manifest().unwrap();
    assert!(m.parts.iter().all(|p| p.project_id == 8));
    assert!(m.requests.is_empty());
    for p in &paths {
        assert!(!dir.path().join(p).exists(), "{p} left on disk");
    }
    assert_eq!(visible(&store).len(), 50);
    // The project can be used again.
    append(&store, &rows(200..205, &["a"], 7, 1));
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store).len(), 55);
}

/// Invariant 5, literally: with compression off, after verification no
/// file under the data directory holds the bytes of the deleted distinct
/// id, of its email property or of its person id (stored as 16 bytes);
/// another person's still do. Once with a part per day, once with the
/// days merged into one part that spans them (its purge rewrites rows of
/// both days).
#[test]
fn after_verification_no_byte_of_the_deleted_person_is_on_disk() {
    for backend in BACKENDS {
        no_byte_of_the_deleted_person_is_left(false, backend);
        no_byte_of_the_deleted_person_is_left(true, backend);
    }
}

/// On S3, every file of the S3 server's directory is searched too.
fn no_byte_of_the_deleted_person_is_left(spanning: bool, backend: Backend) {
    let site = Site::new(backend);
    let opts = site.opts(StoreOptions {
        part: PartWriterOptions {
            compression: PartCompression::None,
            ..Default::default()
        },
        ..opts()
    });
    let store = Store::open(site.path(), opts.clone()).unwrap();
    let gone_id = "erase-me-7f3a9c";
    let gone_email = "erase.me.7f3a9c@example.com";
    let kept_id = "keep-me-51d2e0";
    let kept_email = "keep.me.51d2e0@example.com";
    let gone_person = uuid::Uuid::from_u64_pair(0x7f3a_9c00, 1);
    let kept_person = uuid::Uuid::from_u64_pair(0x51d2_e000, 2);
    let ev = |n: u64, did: &str, email: &str| {
        let mut r = row(n, did, 1, (n % 2) as i64);
        r.properties = Some(format!(r#"{{"email":"{email}","n":{n}}}"#));
        let person = match did == gone_id {
            true => gone_person,
            false => kept_person,
        };
        r.person_id = Some(person.to_string());
        r
    };
    // Even rows are the deleted person's, odd rows the kept one's.
    let batch = |r: std::ops::Range<u64>| -> Vec<_> {
        r.map(|n| match n % 2 {
            0 => ev(n, gone_id, gone_email),
            _ => ev(n, kept_id, kept_email),
        })
        .collect()
    };
    // Rows in parts (two flushes) and in the ingest log.
    append(&store, &batch(0..40));
    store.flush().unwrap();
    append(&store, &batch(40..60));
    store.flush().unwrap();
    if spanning {
        compact_now(&store);
        let m = store.manifest().unwrap();
        assert_eq!(m.parts.len(), 1);
        assert_eq!(m.parts[0].days().count(), 2);
    }
    append(&store, &batch(60..70));
    let grep_bytes = |needle: &[u8]| -> Vec<String> {
        site.files()
            .into_iter()
            .filter(|p| {
                let bytes = std::fs::read(p).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            })
            .map(|p| p.display().to_string())
            .collect()
    };
    let grep = |needle: &str| grep_bytes(needle.as_bytes());
    assert!(
        !grep(gone_id).is_empty() && !grep_bytes(gone_person.as_bytes()).is_empty(),
        "the test data is on disk to begin with"
    );
    let o = store.delete(DeleteSpec::ids(1, [gone_id])).unwrap();
    assert_eq!(o.rows_hidden, 35);
    let r = compact_now(&store);
    assert_eq!(r.requests_verified, vec![o.request_id]);
    assert_eq!(
        grep(gone_id),
        Vec::<String>::new(),
        "deleted distinct id left on disk"
    );
    assert_eq!(
        grep(gone_email),
        Vec::<String>::new(),
        "deleted email left on disk"
    );
    assert_eq!(
        grep_bytes(gone_person.as_bytes()),
        Vec::<String>::new(),
        "deleted person id left on disk"
    );
    assert!(!grep(kept_id).is_empty());
    assert!(!grep(kept_email).is_empty());
    assert!(!grep_bytes(kept_person.as_bytes()).is_empty());
    // `.runs` files front-code ids (a byte search could miss one after an
    // id sharing its prefix): every one on disk belongs to a live part and
    // scrub finds it equal to that part's columns, searched above.
    let referenced: std::collections::BTreeSet<String> = store
        .manifest()
        .unwrap()
        .parts
        .iter()
        .flat_map(|p| p.files())
        .collect();
    for f in files_under(&site.objects()) {
        let rel = f
            .strip_prefix(site.objects())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.ends_with(".runs") {
            assert!(referenced.contains(&rel), "{rel} is not a live part's");
        }
    }
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    // Still true after a reopen (which replays and sweeps).
    store.close().unwrap();
    let store = Store::open(site.path(), opts).unwrap();
    assert_eq!(grep(gone_id), Vec::<String>::new());
    assert_eq!(ids_of(&visible(&store), kept_id), 35);
}

#[test]
fn the_schedule_and_the_time_budget_decide_what_a_background_run_does() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..100, &["a", "b", "c", "d", "e"], 1, 1));
        store.flush().unwrap();
        store.delete(DeleteSpec::ids(1, ["a"])).unwrap(); // 20% deleted: below the threshold
        let run = |now_us: i64, deadline: Option<std::time::Instant>| {
            store
                .compact(elide_store::CompactRequest {
                    now_us: Some(now_us),
                    deadline,
                    merges: false,
                    ..Default::default()
                })
                .unwrap()
        };
        // Wednesday 2026-11-25 12:00 UTC: outside the window, nothing to purge.
        let wednesday = 1_795_608_000_000_000;
        let r = run(wednesday, None);
        assert!(r.tasks.is_empty() && !r.plan.in_window, "{r:?}");
        // Sunday 2026-11-29 05:30 UTC: inside the default window, but the
        // time budget is already spent: the task waits for the next run.
        let sunday = 1_795_930_200_000_000;
        let r = run(sunday, Some(std::time::Instant::now()));
        assert!(r.plan.in_window);
        assert_eq!((r.tasks.len(), r.skipped_tasks), (0, 1));
        let r = run(sunday, None);
        assert_eq!(r.tasks.len(), 1);
        assert_eq!(r.requests_verified.len(), 1);
    }
}

/// The state a crash between a project drop's commit and its second flush
/// leaves: the manifest carries a drop marker while the ingest log still
/// holds rows of the project. Replay must hide them; the next flush
/// leaves them out and retires the marker.
#[test]
fn replay_hides_rows_of_a_dropped_project_still_in_the_ingest_log() {
    use elide_store::format::{encode_manifest, manifest_path, DroppedProject};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &rows(0..20, &["a", "b"], 7, 1));
    append(&store, &rows(20..30, &["a"], 8, 1));
    let mut m = store.manifest().unwrap();
    let next_seq = store.status().unwrap().next_seq;
    store.close().unwrap();
    // Write the manifest the drop's commit would have published.
    m.version += 1;
    m.dropped.push(DroppedProject {
        project_id: 7,
        cutoff_seq: next_seq,
    });
    std::fs::write(
        dir.path().join(manifest_path(m.version)),
        encode_manifest(&m).unwrap(),
    )
    .unwrap();
    let store = open(dir.path());
    let seen = visible(&store);
    assert_eq!(seen.len(), 10, "only project 8's rows: {seen:?}");
    store.flush().unwrap();
    assert_eq!(visible(&store).len(), 10);
    assert!(
        store.manifest().unwrap().dropped.is_empty(),
        "marker retired by the flush"
    );
    assert!(store
        .manifest()
        .unwrap()
        .parts
        .iter()
        .all(|p| p.project_id == 8));
}

#[test]
fn a_throttled_purge_still_finishes_while_queries_read_parts_without_a_pause() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        // A throttled run yields the CPU while any part file is being read;
        // under a query load that never stops it must still progress (each
        // pause is bounded) and purge exactly what it would have.
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..400, &["a", "b", "c"], 1, 4));
        store.flush().unwrap();
        let o = store.delete(DeleteSpec::ids(1, ["a", "c"])).unwrap();
        let expect = visible(&store);
        let snap = store.snapshot().unwrap();
        let reading = snap.scan_guard();
        let r = store
            .compact(elide_store::CompactRequest {
                manual: true,
                io_bytes_per_sec: Some(1 << 40),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.summary.parts_purged, 4);
        assert!(
            r.yielded_to_queries_ms > 0.0,
            "it slept while a part was being read"
        );
        assert_eq!(
            r.requests_verified,
            Vec::<u64>::new(),
            "the snapshot pins the old files"
        );
        drop(reading);
        drop(snap);
        assert_eq!(visible(&store), expect);
        let (_, verified, _) = store.advance_requests().unwrap();
        assert_eq!(verified, vec![o.request_id]);
    }
}

/// A manual compaction, limited to a (never reached) byte rate when
/// `throttled`, while a snapshot's scan guard says parts are being read
/// when `reading`.
fn compact_while_reading(
    store: &Store,
    throttled: bool,
    reading: bool,
) -> elide_store::CompactionReport {
    let snap = store.snapshot().unwrap();
    let guard = reading.then(|| snap.scan_guard());
    let r = store
        .compact(elide_store::CompactRequest {
            manual: true,
            io_bytes_per_sec: throttled.then_some(1 << 40),
            ..Default::default()
        })
        .unwrap();
    drop(guard);
    r
}

#[test]
fn only_a_throttled_run_with_parts_being_read_yields() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let run = |throttled: bool, reading: bool| {
            let site = Site::new(backend);
            let store = site.open();
            append(&store, &rows(0..300, &["a", "b", "c"], 1, 2));
            store.flush().unwrap();
            store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
            let r = compact_while_reading(&store, throttled, reading);
            assert_eq!(r.summary.parts_purged, 2);
            r.yielded_to_queries_ms
        };
        assert!(run(true, true) > 0.0);
        assert_eq!(run(true, false), 0.0, "no part being read");
        assert_eq!(run(false, true), 0.0, "an unthrottled run never yields");
    }
}

#[test]
fn a_yielding_purge_reads_in_short_batches_but_writes_the_same_part() {
    // While it yields to queries a purge reads 2048 rows at a time (short
    // slices of work), otherwise a row group's worth; its output must not
    // depend on that.
    let purge = |yielding: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.part.row_group_rows = 5000;
        let store = Store::open(dir.path(), o).unwrap();
        append(&store, &rows(0..9000, &["a", "b", "c"], 1, 1));
        store.flush().unwrap();
        store.delete(DeleteSpec::ids(1, ["b"])).unwrap();
        let expect = visible(&store);
        let r = compact_while_reading(&store, yielding, yielding);
        assert_eq!(r.summary.parts_purged, 1);
        assert_eq!(r.yielded_to_queries_ms > 0.0, yielding);
        assert_eq!(visible(&store), expect);
        let m = store.manifest().unwrap();
        let parts: Vec<(u64, Vec<u64>)> = m
            .parts
            .iter()
            .map(|p| (p.rows, p.row_groups.clone()))
            .collect();
        parts
    };
    let (yielding, not) = (purge(true), purge(false));
    assert_eq!(yielding, not);
    assert_eq!(yielding, vec![(6000, vec![5000, 1000])]);
}
