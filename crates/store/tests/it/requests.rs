//! Deletion requests as records: deadlines (the store's default and a
//! project's own), the deletion feed and its cursor, project settings.

use elide_store::predicate::EventPredicate;
use elide_store::{
    DeleteSpec, EventDeletion, ProjectSettings, RequestKind, RequestStatus, StoreError,
};

use crate::common::*;

#[test]
fn every_request_is_due_by_its_projects_deadline() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &[row(1, "a", 1, 0), row(2, "b", 2, 0)]);
        store
            .set_project_settings(
                2,
                ProjectSettings {
                    erasure_deadline_days: Some(2),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            store.project_settings(2).unwrap().erasure_deadline_days,
            Some(2)
        );
        assert_eq!(
            store.project_settings(1).unwrap(),
            ProjectSettings::default()
        );
        let a = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
        let b = store.delete(DeleteSpec::ids(2, ["b"])).unwrap();
        let ra = store.request(a.request_id).unwrap().unwrap();
        let rb = store.request(b.request_id).unwrap().unwrap();
        assert_eq!(
            ra.purge_due_by_us - ra.created_at_us,
            7 * DAY,
            "the default"
        );
        assert_eq!(
            rb.purge_due_by_us - rb.created_at_us,
            2 * DAY,
            "the project's"
        );
        let s = store.status().unwrap();
        assert_eq!(s.next_purge_due_us, Some(rb.purge_due_by_us));
        assert!(s.requests_overdue.is_empty());
        // Refused: a zero or oversized deadline or retention (a retention
        // of 106,751,992 days overflowed the sweep's bound into "every
        // row"), a negative project, too many or too long event names;
        // nothing changes.
        let version = store.status().unwrap().version;
        let deadline = |d| ProjectSettings {
            erasure_deadline_days: Some(d),
            ..Default::default()
        };
        let retention = |d| ProjectSettings {
            retention_days: Some(d),
            ..Default::default()
        };
        let events = |names: Vec<String>, d| ProjectSettings {
            event_retention_days: names.into_iter().map(|n| (n, d)).collect(),
            ..Default::default()
        };
        for (p, settings) in [
            (1, deadline(0)),
            (1, deadline(3651)),
            (-1, deadline(3)),
            (1, retention(0)),
            (1, retention(36_501)),
            (1, retention(106_751_992)),
            (1, events(vec!["pageview".into()], 106_751_992)),
            (1, events(vec![String::new()], 3)),
            (1, events(vec!["e".repeat(401)], 3)),
            (1, events((0..1001).map(|i| format!("e{i}")).collect(), 3)),
        ] {
            let e = store.set_project_settings(p, settings).unwrap_err();
            assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
        }
        assert_eq!(store.status().unwrap().version, version);
        assert_eq!(
            store.apply_retention(i64::MAX / 2).unwrap().len(),
            0,
            "no retention was set"
        );
        // Settings survive a reopen; a dropped project's go with it.
        store.close().unwrap();
        let store = site.open();
        assert_eq!(
            store.project_settings(2).unwrap().erasure_deadline_days,
            Some(2)
        );
        store.drop_project(2).unwrap();
        assert_eq!(
            store.project_settings(2).unwrap(),
            ProjectSettings::default()
        );
    }
}

/// Changes of a project's settings made at once from several threads,
/// each naming an event of its own, all land: each reads the settings
/// under the commit lock. A change that fails, in its closure or in the
/// settings' check, commits nothing.
#[test]
fn settings_changed_at_once_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..25 {
                    store
                        .update_project_settings(1, |p| -> Result<(), StoreError> {
                            p.event_retention_days.insert(format!("e{t}-{i}"), 7);
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        store
            .project_settings(1)
            .unwrap()
            .event_retention_days
            .len(),
        100
    );
    let version = store.status().unwrap().version;
    let e = store
        .update_project_settings(1, |p| -> Result<(), StoreError> {
            p.retention_days = Some(0);
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
    let e = store
        .update_project_settings(1, |p| {
            p.retention_days = Some(30);
            Err(StoreError::InvalidInput("no".into()))
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
    assert_eq!(store.status().unwrap().version, version);
    assert_eq!(store.project_settings(1).unwrap().retention_days, None);
}

#[test]
fn the_feed_lists_each_change_once_in_order_from_a_cursor() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(
            &store,
            &(0..12)
                .map(|n| row(n, &format!("d{}", n % 3), 1, 0))
                .collect::<Vec<_>>(),
        );
        store.flush().unwrap();
        let feed = store.deletion_feed(None, 0).unwrap();
        assert!(feed.requests.is_empty());
        let a = store.delete(DeleteSpec::ids(1, ["d0"])).unwrap();
        let b = store
            .delete_events(EventDeletion::new(
                1,
                EventPredicate {
                    distinct_ids: vec!["d1".into()],
                    ..Default::default()
                },
            ))
            .unwrap();
        let feed = store.deletion_feed(None, feed.cursor).unwrap();
        let ids: Vec<u64> = feed.requests.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![a.request_id, b.request_id]);
        assert_eq!(feed.requests[1].kind, RequestKind::Events);
        // A page at a time: one request each (they changed in two
        // commits), then nothing.
        let one = store.deletion_feed_page(None, 0, 1).unwrap();
        assert_eq!(one.requests.len(), 1);
        assert_eq!(one.requests[0].id, a.request_id);
        assert_eq!(one.cursor, one.requests[0].changed_in_version);
        let two = store.deletion_feed_page(None, one.cursor, 1).unwrap();
        assert_eq!(two.requests.len(), 1);
        assert_eq!(two.requests[0].id, b.request_id);
        assert_eq!(two.cursor, feed.cursor);
        assert!(store
            .deletion_feed_page(None, two.cursor, 1)
            .unwrap()
            .requests
            .is_empty());
        // Nothing new: an empty page, the same cursor.
        let again = store.deletion_feed(None, feed.cursor).unwrap();
        assert!(again.requests.is_empty());
        assert_eq!(again.cursor, feed.cursor);
        // The purge and verification change both: they come again, verified.
        compact_now(&store);
        let after = store.deletion_feed(None, feed.cursor).unwrap();
        assert_eq!(after.requests.len(), 2);
        assert!(after
            .requests
            .iter()
            .all(|r| r.status == RequestStatus::Verified));
        assert!(after.cursor > feed.cursor);
        // One commit changed both: a page holds them whole, past its limit.
        let whole = store.deletion_feed_page(None, feed.cursor, 1).unwrap();
        assert_eq!(whole.requests.len(), 2);
        assert_eq!(whole.cursor, after.cursor);
        // Per project.
        assert!(store.deletion_feed(Some(2), 0).unwrap().requests.is_empty());
        assert_eq!(store.deletion_feed(Some(1), 0).unwrap().requests.len(), 2);
        // A project's cursor is its own last change: the other project's
        // writes (its own deletion, a flush) do not move it.
        let own = store.deletion_feed(Some(1), 0).unwrap().cursor;
        assert_eq!(own, after.cursor);
        assert_eq!(store.deletion_feed(Some(2), 0).unwrap().cursor, 1);
        append(&store, &[row(100, "e", 2, 0)]);
        store.flush().unwrap();
        store.delete(DeleteSpec::ids(2, ["e"])).unwrap();
        let mine = store.deletion_feed(Some(1), own).unwrap();
        assert!(mine.requests.is_empty());
        assert_eq!(mine.cursor, own);
        assert_eq!(store.deletion_feed(Some(1), 0).unwrap().cursor, own);
        assert!(store.deletion_feed(None, 0).unwrap().cursor > own);
    }
}

/// Retention with a fake clock: rows older than the bound are hidden at
/// the sweep, whole expired days leave without a rewrite, nothing is
/// recorded when nothing expired, and the request is purged and verified.
#[test]
fn retention_sweeps_drop_whole_days_and_go_through_the_lifecycle() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        // Project 1: one row a day on days 0..10 (T0 is a UTC midnight plus
        // less than a day), two flushes so each day has parts; a late row of
        // day 1 still in the log. Project 2 has no retention.
        let t0_day = T0.div_euclid(DAY) * DAY;
        let mut rows: Vec<_> = (0..10).map(|d| row(d as u64, "a", 1, d)).collect();
        rows.extend((0..10).map(|d| row(100 + d as u64, "b", 2, d)));
        append(&store, &rows[..5]);
        store.flush().unwrap();
        append(&store, &rows[5..]);
        store.flush().unwrap();
        append(&store, &[row(50, "late", 1, 1)]);
        store
            .set_project_settings(
                1,
                ProjectSettings {
                    retention_days: Some(3),
                    ..Default::default()
                },
            )
            .unwrap();
        // "Now" is day 7, 15:00: keep days 4.. (the midnight 3 days before
        // today's), expire days 0..4 and the late row.
        let now = t0_day + 7 * DAY + 15 * 3_600_000_000;
        assert_eq!(
            elide_store::retention::retention_bound(now, 3),
            t0_day + 4 * DAY
        );
        let version = store.status().unwrap().version;
        let parts_of_1 = |s: &elide_store::Store| {
            s.manifest()
                .unwrap()
                .parts
                .iter()
                .filter(|p| p.project_id == 1)
                .count()
        };
        let before = parts_of_1(&store);
        let sweeps = store.apply_retention(now).unwrap();
        assert_eq!(sweeps.len(), 1);
        let s = &sweeps[0];
        assert_eq!((s.project_id, s.rows_hidden), (1, 5));
        assert_eq!(s.parts_dropped, 4, "days 0..4 leave whole");
        assert_eq!(parts_of_1(&store), before - 4);
        assert_eq!(store.status().unwrap().version, version + 1, "one commit");
        // No part was rewritten: none of the dropped ones carried tombstones,
        // and the remaining ones of project 1 carry none either.
        assert!(store
            .manifest()
            .unwrap()
            .parts
            .iter()
            .all(|p| p.deleted() == 0));
        let visible_of = |s: &elide_store::Store, who: &str| {
            visible(s).into_iter().filter(|(_, d, _)| d == who).count()
        };
        assert_eq!(visible_of(&store, "a"), 6);
        assert_eq!(visible_of(&store, "late"), 0);
        assert_eq!(visible_of(&store, "b"), 10, "another project is untouched");
        let r = store.request(s.request_id).unwrap().unwrap();
        assert_eq!(r.kind, elide_store::RequestKind::Retention);
        // The same day again: nothing new expired, nothing recorded.
        assert!(store
            .apply_retention(now + 3_600_000_000)
            .unwrap()
            .is_empty());
        assert_eq!(store.status().unwrap().version, version + 1);
        // The next day: day 4 expires.
        let next = store.apply_retention(now + DAY).unwrap();
        assert_eq!(next[0].rows_hidden, 1);
        // The lifecycle: purged (flush, GC) and verified.
        let report = compact_now(&store);
        assert!(report.verification_failures.is_empty());
        for id in [s.request_id, next[0].request_id] {
            let r = store.request(id).unwrap().unwrap();
            assert_eq!(r.status, elide_store::RequestStatus::Verified, "{r:?}");
        }
        assert_eq!(visible_of(&store, "a"), 5);
        // Bad settings are refused.
        let e = store
            .set_project_settings(
                1,
                ProjectSettings {
                    retention_days: Some(0),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
    }
}

/// DESIGN invariant 5 for retention: with compression off, after the
/// sweep and the compaction no file holds a byte of an expired row (in
/// parts or in the log), while every kept row's bytes are there.
#[test]
fn after_a_retention_sweep_no_byte_of_an_expired_row_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = elide_store::StoreOptions {
        part: elide_store::PartWriterOptions {
            compression: elide_store::PartCompression::None,
            ..Default::default()
        },
        ..opts()
    };
    let store = elide_store::Store::open(dir.path(), opts).unwrap();
    let t0_day = T0.div_euclid(DAY) * DAY;
    let ev = |n: u64, day: i64| {
        let mut r = row(n, "a", 1, day);
        r.properties = Some(format!(r#"{{"marker":"ret-{n:03}-x"}}"#));
        r
    };
    // Days 0..7 in parts; a late row of day 0 in the log.
    append(&store, &(0..7).map(|d| ev(d as u64, d)).collect::<Vec<_>>());
    store.flush().unwrap();
    append(&store, &[ev(100, 0)]);
    store
        .set_project_settings(
            1,
            ProjectSettings {
                retention_days: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    let grep = |needle: &str| -> bool {
        files_under(dir.path()).into_iter().any(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
    };
    assert!(
        grep("ret-000-x") && grep("ret-100-x"),
        "on disk to begin with"
    );
    // Day 7: keep days 4.., expire 0..4 and the late row.
    let sweeps = store.apply_retention(t0_day + 7 * DAY).unwrap();
    assert_eq!(sweeps[0].rows_hidden, 5);
    let report = compact_now(&store);
    assert_eq!(report.requests_verified, vec![sweeps[0].request_id]);
    for n in [0u64, 1, 2, 3, 100] {
        assert!(
            !grep(&format!("ret-{n:03}-x")),
            "expired row {n} left on disk"
        );
    }
    for n in [4u64, 5, 6] {
        assert!(grep(&format!("ret-{n:03}-x")), "kept row {n} lost");
    }
}

/// Retention per event name: only that event's expired rows go (events
/// table only), by the same lifecycle, with a receipt.
#[test]
fn retention_per_event_name_expires_only_that_event() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        let t0_day = T0.div_euclid(DAY) * DAY;
        // Days 0..6, two rows a day: `$autocapture` and `$pageview`.
        let rows: Vec<_> = (0..12u64)
            .map(|n| {
                let mut r = row(n, "a", 1, (n / 2) as i64);
                if n % 2 == 0 {
                    r.event = "$autocapture".into();
                }
                r
            })
            .collect();
        append(&store, &rows);
        store.flush().unwrap();
        let mut s = ProjectSettings::default();
        s.event_retention_days.insert("$autocapture".into(), 2);
        store.set_project_settings(1, s).unwrap();
        // Now: day 6; keep days 4.. of `$autocapture` (days 0..4 expire).
        let sweeps = store.apply_retention(t0_day + 6 * DAY + 1).unwrap();
        assert_eq!(sweeps.len(), 1);
        assert_eq!(sweeps[0].event.as_deref(), Some("$autocapture"));
        assert_eq!(sweeps[0].rows_hidden, 4);
        assert_eq!(sweeps[0].parts_dropped, 0, "other events share the parts");
        let left: Vec<_> = visible(&store).into_iter().collect();
        assert_eq!(left.len(), 8);
        let r = store.request(sweeps[0].request_id).unwrap().unwrap();
        assert_eq!(r.kind, RequestKind::Retention);
        assert_eq!(
            r.predicate.as_ref().unwrap().events,
            vec!["$autocapture".to_string()]
        );
        let report = compact_now(&store);
        assert_eq!(report.requests_verified, vec![sweeps[0].request_id]);
        assert!(store.receipt(sweeps[0].request_id).unwrap().is_some());
        assert_eq!(visible(&store).len(), 8);
        // Bad settings are refused.
        for (e, d) in [("", 3), ("$x", 0)] {
            let mut s = ProjectSettings::default();
            s.event_retention_days.insert(e.into(), d);
            let err = store.set_project_settings(1, s).unwrap_err();
            assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
        }
    }
}

/// A request whose rows are only in a file that left the manifest before
/// it was made (a part a retention sweep dropped whole), which a snapshot
/// still pins: the request is not verified while that file is on disk,
/// and is once the snapshot ends and GC removed it (DESIGN invariant 5).
#[test]
fn a_request_waits_for_retired_files_that_may_hold_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = elide_store::Store::open(dir.path(), opts()).unwrap();
    append(&store, &[row(1, "x", 1, 0), row(2, "y", 1, 0)]);
    store.flush().unwrap();
    let part = store.manifest().unwrap().parts[0].path.clone();
    let pinned = store.snapshot().unwrap();
    store
        .set_project_settings(
            1,
            ProjectSettings {
                retention_days: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let sweeps = store.apply_retention(T0 + 30 * DAY).unwrap();
    assert_eq!(sweeps[0].parts_dropped, 1);
    assert!(store.manifest().unwrap().parts.is_empty());
    assert!(dir.path().join(&part).exists(), "the snapshot pins it");
    let o = store.delete(DeleteSpec::ids(1, ["y"])).unwrap();
    assert_eq!(o.rows_hidden, 0, "no live row of y");
    let status = |s: &elide_store::Store| s.request(o.request_id).unwrap().unwrap().status;
    compact_now(&store);
    assert_eq!(
        status(&store),
        RequestStatus::Pending,
        "verified while {part} holds y's rows"
    );
    drop(pinned);
    compact_now(&store);
    assert!(!dir.path().join(&part).exists());
    compact_now(&store);
    assert_eq!(status(&store), RequestStatus::Verified);
}
