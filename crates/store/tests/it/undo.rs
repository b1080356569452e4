//! Logical requests (undo windows, the bridge for slow predicates): hidden
//! at once, never purged inside the window, cancelled exactly, resolved
//! to bits after it, and what is refused.

use std::time::Duration;

use elide_store::predicate::EventPredicate;
use elide_store::{
    EventDeletion, PartCompression, PartWriterOptions, RequestStatus, Store, StoreError,
    StoreOptions,
};

use crate::common::*;

/// `click` events of `d0`: rows with `n % 12 == 0` (a subset of
/// [`pro_clicks`]'s).
fn d0_clicks() -> EventPredicate {
    EventPredicate {
        events: vec!["click".into()],
        distinct_ids: vec!["d0".into()],
        ..Default::default()
    }
}

fn with_undo(pred: EventPredicate, window: Duration) -> EventDeletion {
    EventDeletion {
        undo_window: Some(window),
        ..EventDeletion::new(1, pred)
    }
}

fn uncompressed() -> StoreOptions {
    StoreOptions {
        part: PartWriterOptions {
            compression: PartCompression::None,
            ..Default::default()
        },
        ..opts()
    }
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    files_under(dir).into_iter().any(|p| {
        let bytes = std::fs::read(p).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

/// Rows 0..60 in parts, 60..90 still in the ingest log.
fn parts_and_log(store: &Store) {
    append(store, &rows(0..60));
    store.flush().unwrap();
    append(store, &rows(60..90));
}

#[test]
fn cancel_restores_exactly_its_rows_and_never_another_requests() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..60));
        store.flush().unwrap();
        append(&store, &rows(60..90)); // in the ingest log
                                       // A: bits, no undo. B: undo window, overlapping A on n % 12 == 0.
        let a = store
            .delete_events(EventDeletion::new(1, d0_clicks()))
            .unwrap();
        assert!(!a.logical);
        let version = store.status().unwrap().version;
        let b = store
            .delete_events(with_undo(pro_clicks(), Duration::from_secs(7200)))
            .unwrap();
        assert!(b.logical && b.undo_until_us.is_some());
        assert_eq!(store.status().unwrap().version, version + 1, "one commit");
        let a_rows: Vec<u64> = (0..90).filter(|n| n % 12 == 0).collect();
        let b_only: Vec<u64> = (0..90).filter(|n| n % 6 == 0 && n % 12 != 0).collect();
        assert_eq!(a.rows_hidden, a_rows.len() as u64);
        assert_eq!(b.rows_hidden, b_only.len() as u64, "what A did not hide");
        let want_hidden: Vec<u64> = (0..90).filter(|n| n % 6 == 0 && *n < 90).collect();
        let visible_now = visible_ns(&store);
        assert_eq!(
            visible_now,
            (0..90)
                .filter(|n| !want_hidden.contains(n))
                .collect::<Vec<_>>()
        );
        // Appended after B: not covered.
        append(&store, &rows(90..96));
        assert!(visible_ns(&store).contains(&90));
        let r = store.request(b.request_id).unwrap().unwrap();
        assert!(r.logical && r.parts.is_empty() && r.status == RequestStatus::Pending);
        assert_eq!(store.manifest().unwrap().check_invariants(), Ok(()));
        assert_eq!(store.status().unwrap().requests_logical, 1);

        let c = store.cancel_request(b.request_id).unwrap();
        assert_eq!(c.rows_restored, b_only.len() as u64);
        let want: Vec<u64> = (0..96).filter(|n| !a_rows.contains(n)).collect();
        assert_eq!(visible_ns(&store), want, "B's rows back, A's still hidden");
        let r = store.request(b.request_id).unwrap().unwrap();
        assert_eq!(r.status, RequestStatus::Cancelled);
        let st = store.status().unwrap();
        assert_eq!((st.requests_logical, st.requests_cancelled), (0, 1));
        assert!(r.cancelled_at_us.is_some() && !r.logical);
        // Twice is refused and changes nothing.
        let v = store.status().unwrap().version;
        let again = store.cancel_request(b.request_id).unwrap_err();
        assert!(matches!(again, StoreError::InvalidInput(_)), "{again}");
        assert_eq!(store.status().unwrap().version, v);
        // The cancelled request stays cancelled across a reopen, compaction
        // purges A only, and B's rows survive it.
        store.close().unwrap();
        let store = site.open();
        assert_eq!(visible_ns(&store), want);
        let report = compact_now(&store);
        assert_eq!(report.requests_verified, vec![a.request_id]);
        assert_eq!(visible_ns(&store), want);
        assert_eq!(
            store.request(b.request_id).unwrap().unwrap().status,
            RequestStatus::Cancelled
        );
    }
}

/// Inside the window the rows stay on disk whatever compaction does
/// (another request's purge rewrites the same parts, a flush writes the
/// logged rows into parts, a reopen replays the log), stay hidden
/// throughout, and come back exactly once on cancel.
#[test]
fn inside_the_window_compaction_flush_and_reopen_keep_the_rows_for_a_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    parts_and_log(&store);
    let b = store
        .delete_events(with_undo(pro_clicks(), Duration::from_secs(7200)))
        .unwrap();
    // Another request hides every row of d1 (odd rows: disjoint from B),
    // in the same parts.
    let c = store.delete_events(every_row_of_d1()).unwrap();
    let b_rows: Vec<u64> = (0..90).filter(|n| n % 6 == 0).collect();
    let c_rows: Vec<u64> = (0..90).filter(|n| n % 4 == 1).collect();
    let want: Vec<u64> = (0..90)
        .filter(|n| !b_rows.contains(n) && !c_rows.contains(n))
        .collect();
    assert_eq!(visible_ns(&store), want);
    let report = compact_now(&store); // flushes the log first
    assert!(report.requests_verified.contains(&c.request_id));
    assert_eq!(visible_ns(&store), want);
    for n in &b_rows {
        assert!(
            on_disk(dir.path(), &format!("row-{n:04}-x")),
            "row {n} of the undoable request was purged inside its window"
        );
    }
    assert!(!on_disk(dir.path(), "row-0001-x"), "C's rows are purged");
    store.close().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    assert_eq!(visible_ns(&store), want, "after a reopen");
    let r = store.request(b.request_id).unwrap().unwrap();
    assert!(r.logical, "still logical");
    store.cancel_request(b.request_id).unwrap();
    let back: Vec<u64> = (0..90).filter(|n| !c_rows.contains(n)).collect();
    assert_eq!(visible_ns(&store), back, "each of B's rows exactly once");
    store.close().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    assert_eq!(visible_ns(&store), back);
}

/// After its window a request is resolved to bits (not before), purged,
/// verified down to the bytes, and can no longer be cancelled.
#[test]
fn after_the_window_it_becomes_bits_is_purged_and_cannot_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    parts_and_log(&store);
    let b = store
        .delete_events(with_undo(pro_clicks(), Duration::from_secs(3600)))
        .unwrap();
    let until = b.undo_until_us.unwrap();
    assert!(store
        .resolve_logical_requests(until - 1)
        .unwrap()
        .is_empty());
    assert!(store.request(b.request_id).unwrap().unwrap().logical);
    let hidden: Vec<u64> = (0..90).filter(|n| n % 6 == 0).collect();
    let want: Vec<u64> = (0..90).filter(|n| !hidden.contains(n)).collect();
    assert_eq!(
        store.resolve_logical_requests(until).unwrap(),
        vec![b.request_id]
    );
    let r = store.request(b.request_id).unwrap().unwrap();
    assert!(!r.logical && r.status == RequestStatus::Pending);
    assert_eq!(r.rows_hidden, hidden.len() as u64);
    assert!(!r.parts.is_empty(), "it now holds bits in parts");
    assert_eq!(visible_ns(&store), want);
    let late = store.cancel_request(b.request_id).unwrap_err().to_string();
    assert!(late.contains("undo window ended"), "{late}");
    let report = compact_now(&store);
    assert_eq!(report.requests_verified, vec![b.request_id]);
    for n in 0..90 {
        let marker = format!("row-{n:04}-x");
        assert_eq!(
            on_disk(dir.path(), &marker),
            !hidden.contains(&n),
            "row {n}"
        );
    }
    assert_eq!(visible_ns(&store), want);
}

/// The part files the next test's file system cannot remove (paths'
/// endings; the filter is a plain `fn`, so it reads them from here).
static UNREMOVABLE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// A part that held a logical request's rows and was rewritten inside
/// its undo window (another request's purge) is in no list of the
/// request: when it resolves, it lists only the rewrite. While the old
/// file is still on disk (its removal failed and GC retries it), the
/// request is not verified (DESIGN invariant 5), though the rewrite it
/// lists is purged and gone; once GC removed the old file, it is.
#[test]
fn a_part_rewritten_inside_the_window_holds_the_request_back_while_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fs = elide_store::failing_fs::FailingSync::removals(|p| {
        let p = p.to_string_lossy();
        UNREMOVABLE
            .get()
            .is_some_and(|u| u.iter().any(|u| p.ends_with(u.as_str())))
    });
    let store = Store::open(
        dir.path(),
        StoreOptions {
            fs: fs.clone(),
            ..uncompressed()
        },
    )
    .unwrap();
    append(&store, &rows(0..60));
    store.flush().unwrap();
    let m = store.manifest().unwrap();
    let old: Vec<String> = m.parts.iter().map(|p| p.path.clone()).collect();
    UNREMOVABLE.set(old.clone()).unwrap();
    let on_disk_still = || old.iter().any(|p| dir.path().join(p).exists());
    let b = store
        .delete_events(with_undo(pro_clicks(), Duration::from_secs(3600)))
        .unwrap();
    let c = store.delete_events(every_row_of_d1()).unwrap();
    fs.arm(true);
    let report = compact_now(&store);
    assert!(
        report.requests_verified.is_empty(),
        "C verified while {old:?} hold its rows"
    );
    assert!(on_disk_still(), "their removal failed");
    let until = b.undo_until_us.unwrap();
    assert_eq!(
        store.resolve_logical_requests(until).unwrap(),
        vec![b.request_id]
    );
    let r = store.request(b.request_id).unwrap().unwrap();
    assert!(!r.parts.is_empty());
    assert!(m.parts.iter().all(|p| !r.parts.contains(&p.id)));
    let status = |s: &Store| s.request(b.request_id).unwrap().unwrap().status;
    compact_now(&store);
    compact_now(&store);
    assert!(on_disk_still(), "their removal still fails");
    assert_ne!(
        status(&store),
        RequestStatus::Verified,
        "verified while {old:?}, rewritten inside the window, hold its rows"
    );
    fs.arm(false);
    compact_now(&store);
    compact_now(&store);
    assert!(!on_disk_still());
    assert_eq!(status(&store), RequestStatus::Verified);
    let c = store.request(c.request_id).unwrap().unwrap();
    assert_eq!(c.status, RequestStatus::Verified);
    for n in (0..60).filter(|n| n % 6 == 0 || n % 4 == 1) {
        assert!(!on_disk(dir.path(), &format!("row-{n:04}-x")), "row {n}");
    }
}

/// The bridge: a predicate that cannot be resolved within the bound is
/// committed as a logical tombstone (hidden at once, not cancellable) and
/// resolved by the background worker.
#[test]
fn a_predicate_past_the_bound_is_hidden_at_once_and_resolved_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        append(&store, &rows(0..60));
        store.flush().unwrap();
        store.close().unwrap();
    }
    let store = Store::open(
        dir.path(),
        StoreOptions {
            predicate_resolve_bound: Some(Duration::ZERO),
            background_compaction: true,
            ..opts()
        },
    )
    .unwrap();
    append(&store, &rows(60..90));
    let out = store
        .delete_events(EventDeletion::new(1, pro_clicks()))
        .unwrap();
    assert!(out.logical && out.undo_until_us.is_none());
    let hidden: Vec<u64> = (0..90).filter(|n| n % 6 == 0).collect();
    let want: Vec<u64> = (0..90).filter(|n| !hidden.contains(n)).collect();
    // Hidden when the call returns, whether or not the worker got to it.
    assert_eq!(visible_ns(&store), want);
    let refused = store
        .cancel_request(out.request_id)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("without an undo window"), "{refused}");
    // The worker was woken by the deletion; wait for it (no timing is
    // asserted: only that it happens).
    let mut resolved = None;
    for _ in 0..600 {
        let r = store.request(out.request_id).unwrap().unwrap();
        if !r.logical {
            resolved = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = resolved.expect("the background worker never resolved the request");
    assert_eq!(r.rows_hidden, hidden.len() as u64);
    assert_eq!(visible_ns(&store), want);
    assert_eq!(store.manifest().unwrap().check_invariants(), Ok(()));
}

#[test]
fn bad_undo_windows_and_cancels_are_refused_and_change_nothing() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..30));
        store.flush().unwrap();
        let v = store.status().unwrap().version;
        for (window, needle) in [
            (Duration::ZERO, "longer than zero"),
            // Default deadline 7 days, slack 1 day: 6 days at most.
            (
                Duration::from_secs(6 * 86_400 + 60),
                "too late for the purge deadline",
            ),
        ] {
            let e = store
                .delete_events(with_undo(pro_clicks(), window))
                .unwrap_err();
            assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = store.cancel_request(99).unwrap_err();
        assert!(e.to_string().contains("no deletion request 99"), "{e}");
        // A request without a window cannot be cancelled.
        let plain = store
            .delete_events(EventDeletion::new(1, d0_clicks()))
            .unwrap();
        let v2 = store.status().unwrap().version;
        assert_eq!(v2, v + 1);
        let e = store.cancel_request(plain.request_id).unwrap_err();
        assert!(e.to_string().contains("without an undo window"), "{e}");
        assert_eq!(store.status().unwrap().version, v2);
        assert_eq!(visible_ns(&store).len(), 30 - 3);
        let ok = store.delete_events(with_undo(d0_clicks(), Duration::from_secs(6 * 86_400 - 60)));
        assert!(ok.is_ok(), "6 days less a minute fits: {ok:?}");
    }
}

/// Every read leaves a logical request's rows out: the subject-access
/// export (parts and buffered rows, writer and read-only handles) and the
/// dry run of another deletion.
#[test]
fn exports_and_dry_runs_leave_out_what_an_undo_window_hides() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    parts_and_log(&store);
    let export_rows = |s: &Store| {
        s.rows_of_distinct_ids(1, &["d0".to_string()], &[], &mut |_, _| Ok(()))
            .unwrap()
            .total()
    };
    let d0: u64 = (0..90).filter(|n| n % 4 == 0).count() as u64;
    assert_eq!(export_rows(&store), d0);
    store
        .delete_events(with_undo(d0_clicks(), Duration::from_secs(7200)))
        .unwrap();
    let d0_clicks_n: u64 = (0..90).filter(|n| n % 12 == 0).count() as u64;
    assert_eq!(export_rows(&store), d0 - d0_clicks_n, "parts and log");
    let ro = Store::open_read_only(dir.path(), opts()).unwrap();
    assert_eq!(export_rows(&ro), d0 - d0_clicks_n, "read-only handle");
    drop(ro);
    // A dry run of an overlapping deletion counts only visible rows.
    let p = store
        .preview_events(&EventDeletion::new(1, pro_clicks()))
        .unwrap();
    let visible_pro_clicks = (0..90).filter(|n| n % 6 == 0 && n % 12 != 0).count() as u64;
    assert_eq!(p.rows, visible_pro_clicks);
}

/// The bridge across a flush: a bridged request's buffered rows are
/// written into parts (still hidden by the predicate), and its later
/// resolution gives them bits there; the purge then verifies.
#[test]
fn a_bridged_request_survives_a_flush_and_a_reopen_before_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let bridged = StoreOptions {
        predicate_resolve_bound: Some(Duration::ZERO),
        ..uncompressed()
    };
    let store = Store::open(dir.path(), bridged.clone()).unwrap();
    parts_and_log(&store);
    let out = store
        .delete_events(EventDeletion::new(1, pro_clicks()))
        .unwrap();
    assert!(out.logical);
    let hidden: Vec<u64> = (0..90).filter(|n| n % 6 == 0).collect();
    let want: Vec<u64> = (0..90).filter(|n| !hidden.contains(n)).collect();
    store.flush().unwrap();
    assert_eq!(visible_ns(&store), want, "after the flush");
    store.close().unwrap();
    let store = Store::open(dir.path(), bridged).unwrap();
    assert_eq!(visible_ns(&store), want, "after a reopen");
    assert!(store.request(out.request_id).unwrap().unwrap().logical);
    let report = compact_now(&store); // resolves first, then purges
    assert_eq!(report.requests_verified, vec![out.request_id]);
    let r = store.request(out.request_id).unwrap().unwrap();
    assert_eq!(r.rows_hidden, hidden.len() as u64);
    assert_eq!(visible_ns(&store), want);
    for n in 0..90 {
        let marker = format!("row-{n:04}-x");
        assert_eq!(
            on_disk(dir.path(), &marker),
            !hidden.contains(&n),
            "row {n}"
        );
    }
}

/// A deletion of every row of `d1` (odd rows: disjoint from the
/// `pro_clicks` rows).
fn every_row_of_d1() -> EventDeletion {
    EventDeletion::new(
        1,
        EventPredicate {
            distinct_ids: vec!["d1".into()],
            ..Default::default()
        },
    )
}
