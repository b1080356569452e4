//! Deletion requests as records: deadlines (the store's default and a
//! project's own), the deletion feed and its cursor, project settings.

use elide_store::predicate::EventPredicate;
use elide_store::{
    DeleteSpec, EventDeletion, ProjectSettings, RequestKind, RequestStatus, StoreError,
};

use crate::common::*;

#[test]
fn every_request_is_due_by_its_projects_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 2, 0)]);
    store
        .set_project_settings(
            2,
            ProjectSettings {
                erasure_deadline_days: Some(2),
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
    // Refused: a zero deadline, a negative project; nothing changes.
    let version = store.status().unwrap().version;
    for (p, days) in [(1, Some(0)), (-1, Some(3))] {
        let e = store
            .set_project_settings(
                p,
                ProjectSettings {
                    erasure_deadline_days: days,
                },
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
    }
    assert_eq!(store.status().unwrap().version, version);
    // Settings survive a reopen; a dropped project's go with it.
    store.close().unwrap();
    let store = open(dir.path());
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

#[test]
fn the_feed_lists_each_change_once_in_order_from_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    // Per project.
    assert!(store.deletion_feed(Some(2), 0).unwrap().requests.is_empty());
    assert_eq!(store.deletion_feed(Some(1), 0).unwrap().requests.len(), 2);
}
