//! Persons end to end: deletion from capture to verified erasure (checked
//! byte by byte, SQLite file included), capture racing deletion of the
//! same person, bad input through the library and the command line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use elide::persons::capture::parse_payload;
use elide::persons::{DeletePersons, DeletionState, PersonFilter, Persons, PersonsError};
use elide::store::{PartCompression, PartWriterOptions, Store, StoreOptions, Table};
use serde_json::{json, Value};

use crate::common::{files_containing, rt, sql, strings};

fn options(compression: PartCompression) -> StoreOptions {
    StoreOptions {
        background_flush: false,
        background_compaction: false,
        part: PartWriterOptions {
            compression,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn open(dir: &std::path::Path, compression: PartCompression) -> Arc<Persons> {
    let store = Store::open(dir, options(compression)).unwrap();
    Arc::new(Persons::open(store).unwrap())
}

fn capture(p: &Persons, project: i64, v: Value) -> elide::persons::CaptureOutcome {
    p.capture(project, &parse_payload(v, 0).unwrap()).unwrap()
}

/// Delete the person of `uuid` in project 1, with its events.
fn delete_with_events(p: &Persons, uuid: &str) -> elide::persons::BulkDeleteResult {
    let req = DeletePersons {
        uuids: vec![uuid.to_string()],
        delete_events: true,
        ..Default::default()
    };
    p.delete(1, &req).unwrap()
}

fn compact_now(store: &Store) -> elide::store::CompactionReport {
    store
        .compact(elide::store::CompactRequest {
            manual: true,
            merges: false,
            ..Default::default()
        })
        .unwrap()
}

/// Capture → delete the person with its events → invisible at once (SQL
/// over events and the persons tables) → purge → verified → no byte of the
/// person in any file under the data directory (parts uncompressed, the
/// SQLite database and its log included); the other person's bytes remain.
#[test]
fn person_deletion_end_to_end_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), PartCompression::None);
    let gone = ["anon-erase-7f3a9c", "user-erase-7f3a9c"];
    let gone_email = "erase.7f3a9c@example.com";
    let gone_name = "Erasmus Sevenfold";
    let kept = "keep-51d2e0";
    let kept_email = "keep.51d2e0@example.com";
    let ev = |did: &str, day: u32, props: Value| {
        json!({"event": "$pageview", "distinct_id": did, "properties": props,
               "timestamp": format!("2026-11-{day:02}T12:00:00Z")})
    };
    // Day 1 in parts, day 2 in parts, day 3 in the ingest log only.
    capture(
        &p,
        1,
        json!({"batch": [
            ev(gone[0], 1, json!({"$set": {"email": gone_email, "name": gone_name}})),
            ev(kept, 1, json!({"$set": {"email": kept_email}})),
            ev(gone[0], 1, json!({})),
        ]}),
    );
    p.store().flush().unwrap();
    capture(
        &p,
        1,
        json!({"event": "$identify", "distinct_id": gone[1],
                          "properties": {"$anon_distinct_id": gone[0]}, "timestamp": "2026-11-02T00:00:00Z"}),
    );
    capture(&p, 1, ev(kept, 2, json!({})));
    p.store().flush().unwrap();
    capture(&p, 1, ev(gone[1], 3, json!({"$set": {"plan": "pro"}})));
    capture(&p, 1, ev(kept, 3, json!({})));
    let person = p.by_distinct_ids(1, &[gone[1].to_string()]).unwrap()[gone[1]].clone();
    assert_eq!(person.distinct_ids, gone.map(String::from).to_vec());

    let rt = rt();
    let ctx = elide::app::sql::session(&p).unwrap();
    let join = "SELECT json_get_str(p.properties, 'email') AS email, count(*) AS n \
                FROM events e JOIN persons p ON e.person_id = p.uuid GROUP BY 1";
    assert_eq!(strings(&sql(&rt, &ctx, join)), vec![gone_email, kept_email]);
    assert!(
        !files_containing(dir.path(), gone_email).is_empty(),
        "the data is on disk to begin with"
    );

    let r = delete_with_events(&p, &person.uuid.to_string());
    assert_eq!((r.persons_found, r.persons_deleted), (1, 1));
    assert!(r.events_queued_for_deletion && r.deletion_errors.is_empty());

    // Invisible at once, through every table.
    assert_eq!(strings(&sql(&rt, &ctx, join)), vec![kept_email]);
    let q = format!(
        "SELECT count(*) FROM events WHERE distinct_id IN ('{}', '{}')",
        gone[0], gone[1]
    );
    assert_eq!(crate::common::count(&rt, &ctx, &q), 0);
    let q = format!(
        "SELECT count(*) FROM persons WHERE uuid = '{}'",
        person.uuid
    );
    assert_eq!(crate::common::count(&rt, &ctx, &q), 0);
    let q = format!(
        "SELECT count(*) FROM person_distinct_ids WHERE person_id = '{}'",
        person.uuid
    );
    assert_eq!(crate::common::count(&rt, &ctx, &q), 0);
    assert!(p
        .list(
            1,
            &PersonFilter {
                search: Some(gone_email.into()),
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap()
        .results
        .is_empty());
    // Gone from the metadata files at once (secure_delete + checkpoint).
    for needle in [gone[0], gone[1], gone_email, gone_name] {
        let hits: Vec<String> = files_containing(dir.path(), needle)
            .into_iter()
            .filter(|f| f.contains("metadata.sqlite3"))
            .collect();
        assert_eq!(hits, Vec::<String>::new(), "{needle} left in the metadata");
    }
    let status = p.deletion_status(1, None, None, 10, 0).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].status, DeletionState::Pending);

    // Purge, verify.
    let report = compact_now(p.store());
    assert_eq!(report.requests_verified.len(), 1);
    // The receipt states the metadata rows removed (the person and its
    // distinct ids) and the rows per table.
    let bytes = p
        .store()
        .receipt(report.requests_verified[0])
        .unwrap()
        .unwrap();
    let receipt: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(receipt["body"]["kind"], "person");
    assert_eq!(
        receipt["body"]["metadata_rows_removed"],
        1 + gone.len() as u64
    );
    assert!(
        receipt["body"]["rows_hidden_by_table"]["events"]
            .as_u64()
            .unwrap()
            > 0
    );
    let status = p
        .deletion_status(1, Some(&person.uuid.to_string()), None, 10, 0)
        .unwrap();
    assert_eq!(status[0].status, DeletionState::Completed);
    assert!(status[0].delete_verified_at.is_some());
    for needle in [gone[0], gone[1], gone_email, gone_name] {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} left on disk"
        );
    }
    assert!(!files_containing(dir.path(), kept).is_empty());
    assert!(!files_containing(dir.path(), kept_email).is_empty());
    assert_eq!(strings(&sql(&rt, &ctx, join)), vec![kept_email]);
}

/// An id a reset detached from a person leaves every file with the
/// person's deletion: its record (which holds its text) is erased to a
/// hash at once, its rows after the purge, which verifies both requests.
#[test]
fn a_detached_ids_text_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), PartCompression::None);
    let (main, old) = ("main-3c1d8e", "detached-3c1d8e");
    capture(
        &p,
        1,
        json!({"event": "$identify", "distinct_id": main,
               "properties": {"$anon_distinct_id": old}, "timestamp": "2026-11-01T00:00:00Z"}),
    );
    capture(
        &p,
        1,
        json!({"event": "$pageview", "distinct_id": old, "properties": {},
               "timestamp": "2026-11-01T01:00:00Z"}),
    );
    p.store().flush().unwrap();
    let person = p.by_distinct_ids(1, &[main.to_string()]).unwrap()[main].clone();
    let r = p.reset_distinct_id(1, old).unwrap();
    assert_eq!(r.detached_from, Some(person.uuid));
    let in_metadata = |needle: &str| -> Vec<String> {
        files_containing(dir.path(), needle)
            .into_iter()
            .filter(|f| f.contains("metadata.sqlite3"))
            .collect()
    };
    assert!(!in_metadata(old).is_empty(), "the record holds the id");
    let r = delete_with_events(&p, &person.uuid.to_string());
    assert_eq!(r.persons_deleted, 1);
    assert_eq!(
        in_metadata(old),
        Vec::<String>::new(),
        "left in the metadata"
    );
    let report = compact_now(p.store());
    assert_eq!(report.requests_verified.len(), 2, "{report:?}");
    for needle in [main, old] {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} left on disk"
        );
    }
}

/// Capture racing deletion of the same person: every event whose capture
/// returned before the deletion began is gone; every event captured after
/// it is kept (stored with no person); the other person's events are all
/// kept.
#[test]
fn capture_racing_deletion_of_the_same_person() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), PartWriterOptions::default().compression);
    capture(
        &p,
        1,
        json!({"event": "e", "distinct_id": "victim", "properties": {"$set": {"email": "v@example.com"}}}),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["victim", "victim", "bystander"]
        .into_iter()
        .enumerate()
        .map(|(w, did)| {
            let p = Arc::clone(&p);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                // (seq_start, seq_end) of each capture call, in order.
                let mut calls = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || calls.len() < 20 {
                    let batch: Vec<Value> = (0..5)
                        .map(|i| json!({"event": "e", "distinct_id": did, "properties": {"w": w, "n": n + i}}))
                        .collect();
                    n += 5;
                    let o = capture(&p, 1, json!({"batch": batch}));
                    calls.push((o.seq_start, o.seq_end));
                    if calls.len() % 7 == 0 {
                        p.store().flush().unwrap();
                    }
                }
                (did, calls)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let r = p
        .delete(
            1,
            &DeletePersons {
                distinct_ids: vec!["victim".into()],
                delete_events: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.persons_deleted, 1);
    let cutoff = p.store().requests().unwrap()[0].cutoff_seq;
    std::thread::sleep(std::time::Duration::from_millis(150));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    let check = |phase: &str| {
        let rt = rt();
        let ctx = elide::query::session_context(p.store()).unwrap();
        let seqs = |did: &str| -> Vec<u64> {
            let b = sql(
                &rt,
                &ctx,
                &format!("SELECT _seq FROM events WHERE distinct_id = '{did}'"),
            );
            let mut v: Vec<u64> = b
                .iter()
                .flat_map(|b| {
                    use arrow::array::AsArray;
                    b.column(0)
                        .as_primitive::<arrow::datatypes::UInt64Type>()
                        .values()
                        .to_vec()
                })
                .collect();
            v.sort();
            v
        };
        let victim = seqs("victim");
        assert!(
            victim.iter().all(|s| *s >= cutoff),
            "{phase}: a victim event from before the deletion survived"
        );
        let mut expected_victim: Vec<u64> = Vec::new();
        let mut expected_bystander: Vec<u64> = Vec::new();
        for (did, calls) in &results {
            for (a, b) in calls {
                // The pipeline lock: no capture straddles the cut-off.
                assert!(
                    *b <= cutoff || *a >= cutoff,
                    "{phase}: a capture straddles the cut-off"
                );
                match *did {
                    "victim" if *a >= cutoff => expected_victim.extend(*a..*b),
                    "bystander" => expected_bystander.extend(*a..*b),
                    _ => {}
                }
            }
        }
        expected_victim.sort();
        assert_eq!(
            victim, expected_victim,
            "{phase}: victim events after the deletion"
        );
        assert_eq!(
            seqs("bystander"),
            expected_bystander,
            "{phase}: bystander events"
        );
        assert!(
            !expected_victim.is_empty(),
            "the race produced events after the deletion"
        );
        // Events after the deletion carry no person.
        let n = crate::common::count(
            &rt,
            &ctx,
            "SELECT count(*) FROM events WHERE distinct_id = 'victim' AND person_id IS NOT NULL",
        );
        assert_eq!(n, 0, "{phase}");
    };
    check("before purge");
    compact_now(p.store());
    check("after purge");
    assert!(p.by_distinct_ids(1, &["victim".into()]).unwrap().is_empty());
}

/// Bad requests through the library: clear errors, nothing changed.
#[test]
fn bad_person_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), PartWriterOptions::default().compression);
    capture(
        &p,
        1,
        json!({"event": "e", "distinct_id": "a", "properties": {"$set": {"email": "a@x"}}}),
    );
    let persons = |p: &Persons| {
        serde_json::to_string(
            &p.list(
                1,
                &PersonFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .unwrap()
    };
    let before = (
        persons(&p),
        p.store().requests().unwrap().len(),
        p.store()
            .snapshot()
            .unwrap()
            .visible_rows(Table::Events)
            .unwrap(),
    );
    let del = |uuids: Vec<String>, ids: Vec<String>| {
        p.delete(
            1,
            &DeletePersons {
                uuids,
                distinct_ids: ids,
                delete_events: true,
                ..Default::default()
            },
        )
    };
    let many: Vec<String> = (0..1001).map(|i| format!("id-{i}")).collect();
    let cases = [
        (
            del(vec![], many.clone()).unwrap_err().to_string(),
            "at most 1000",
        ),
        (
            del(
                vec!["00000000-0000-4000-8000-000000000001".into()],
                vec!["a".into()],
            )
            .unwrap_err()
            .to_string(),
            "not both",
        ),
        (del(vec![], vec![]).unwrap_err().to_string(), "at least one"),
        (
            del(vec!["not-a-uuid".into()], vec![])
                .unwrap_err()
                .to_string(),
            "not a UUID",
        ),
        (
            p.by_distinct_ids(1, &many[..201]).unwrap_err().to_string(),
            "1 to 200",
        ),
        (p.get(1, "12345").unwrap_err().to_string(), "not found"),
        (p.get(1, "nope").unwrap_err().to_string(), "not a UUID"),
        (
            p.list(
                1,
                &PersonFilter {
                    limit: 0,
                    ..Default::default()
                },
            )
            .unwrap_err()
            .to_string(),
            "limit",
        ),
        (
            p.update_properties(1, "999", serde_json::Map::new())
                .unwrap_err()
                .to_string(),
            "no properties",
        ),
        (
            p.reset_distinct_id(1, "nobody").unwrap_err().to_string(),
            "not found",
        ),
    ];
    for (err, needle) in cases {
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
    // Unknown ids: reported per id, nothing deleted.
    let r = del(vec![], vec!["ghost-1".into(), "ghost-2".into()]).unwrap();
    assert_eq!(r.persons_found, 0);
    assert_eq!(r.deletion_errors.len(), 2);
    assert!(!r.events_queued_for_deletion);
    let bad_filter = elide::persons::PropertyFilter {
        key: "n".into(),
        operator: elide::persons::PropertyOperator::Gt,
        value: json!("many"),
    };
    let e = p
        .list(
            1,
            &PersonFilter {
                properties: vec![bad_filter],
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("needs a number"), "{e}");
    let after = (
        persons(&p),
        p.store().requests().unwrap().len(),
        p.store()
            .snapshot()
            .unwrap()
            .visible_rows(Table::Events)
            .unwrap(),
    );
    assert_eq!(before, after);
}

/// Property filters and search of `list`.
#[test]
fn list_filters() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), PartWriterOptions::default().compression);
    let people = [
        (
            "u1",
            json!({"email": "ann@example.com", "name": "Ann Lee", "age": 31, "plan": "pro"}),
        ),
        (
            "u2",
            json!({"email": "bob@example.com", "name": "Bob", "age": 25, "plan": "free"}),
        ),
        // A JSON null is unset, as in PostHog.
        ("u3", json!({"name": "Cy", "age": 40, "plan": null})),
        // And so is a missing key.
        ("u4", json!({"name": "Di"})),
    ];
    for (i, (did, props)) in people.iter().enumerate() {
        capture(
            &p,
            1,
            json!({"event": "e", "distinct_id": did, "properties": {"$set": props},
                              "timestamp": format!("2026-11-0{}T00:00:00Z", i + 1)}),
        );
    }
    let ids = |f: PersonFilter| -> Vec<String> {
        let f = PersonFilter {
            limit: if f.limit == 0 { 100 } else { f.limit },
            ..f
        };
        p.list(1, &f)
            .unwrap()
            .results
            .into_iter()
            .map(|p| p.distinct_ids[0].clone())
            .collect()
    };
    let prop = |key: &str, op: &str, value: Value| PersonFilter {
        properties: vec![serde_json::from_value(
            json!({"key": key, "operator": op, "value": value}),
        )
        .unwrap()],
        ..Default::default()
    };
    assert_eq!(
        ids(PersonFilter::default()),
        vec!["u4", "u3", "u2", "u1"],
        "newest first"
    );
    assert_eq!(
        ids(PersonFilter {
            distinct_id: Some("u2".into()),
            ..Default::default()
        }),
        vec!["u2"]
    );
    assert_eq!(
        ids(PersonFilter {
            email: Some("ann@example.com".into()),
            ..Default::default()
        }),
        vec!["u1"]
    );
    assert_eq!(
        ids(PersonFilter {
            search: Some("EXAMPLE".into()),
            ..Default::default()
        }),
        vec!["u2", "u1"]
    );
    assert_eq!(
        ids(PersonFilter {
            search: Some("lee".into()),
            ..Default::default()
        }),
        vec!["u1"]
    );
    assert_eq!(
        ids(PersonFilter {
            search: Some("u3".into()),
            ..Default::default()
        }),
        vec!["u3"]
    );
    let u3 = elide::persons::ids::person_uuid(1, "u3").to_string();
    assert_eq!(
        ids(PersonFilter {
            search: Some(u3.to_uppercase()),
            ..Default::default()
        }),
        vec!["u3"]
    );
    assert_eq!(ids(prop("plan", "exact", json!("pro"))), vec!["u1"]);
    assert_eq!(
        ids(prop("plan", "exact", json!(["pro", "free"]))),
        vec!["u2", "u1"]
    );
    assert_eq!(
        ids(prop("plan", "is_not", json!("pro"))),
        vec!["u4", "u3", "u2"]
    );
    assert_eq!(ids(prop("name", "icontains", json!("b"))), vec!["u2"]);
    assert_eq!(ids(prop("plan", "is_set", Value::Null)), vec!["u2", "u1"]);
    assert_eq!(
        ids(prop("plan", "is_not_set", Value::Null)),
        vec!["u4", "u3"]
    );
    assert_eq!(ids(prop("age", "gt", json!(30))), vec!["u3", "u1"]);
    assert_eq!(ids(prop("age", "lt", json!("30"))), vec!["u2"]);
    assert_eq!(ids(prop("age", "exact", json!(25))), vec!["u2"]);
    // Values compare by their text, as PostHog compares them: the string
    // "25" matches the number 25; numbers also by value.
    assert_eq!(ids(prop("age", "exact", json!("25"))), vec!["u2"]);
    assert_eq!(
        ids(prop("age", "exact", json!(["40.0", 31]))),
        vec!["u3", "u1"]
    );
    assert_eq!(ids(prop("age", "icontains", json!(3))), vec!["u1"]);
    assert_eq!(ids(prop("plan", "exact", Value::Null)), vec!["u4", "u3"]);
    // Paging.
    let page = p
        .list(
            1,
            &PersonFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.results.len(), 2);
    assert_eq!(page.next_offset, Some(2));
    let page = p
        .list(
            1,
            &PersonFilter {
                limit: 2,
                offset: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.results.len(), 2, "the last page, full");
    assert_eq!(page.next_offset, None);
}

/// Dropping a project removes its metadata too; other projects stay.
#[test]
fn drop_project_removes_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), PartCompression::None);
    capture(
        &p,
        1,
        json!({"event": "e", "distinct_id": "drop-me-93ab", "properties": {"$set": {"email": "drop.93ab@x"}}}),
    );
    capture(&p, 2, json!({"event": "e", "distinct_id": "stay-11cd"}));
    p.store().flush().unwrap();
    let (data, meta) = p.drop_project(1).unwrap();
    assert_eq!(data.project_id, 1);
    assert_eq!((meta.persons, meta.distinct_ids), (1, 1));
    assert!(p.project(1).is_err());
    assert!(p.project(2).is_ok());
    assert_eq!(
        p.list(
            2,
            &PersonFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap()
        .results
        .len(),
        1
    );
    // A capture that passed its token check before the drop does not
    // bring the project back (new data under a new token, with default
    // settings), nor do rows that need no resolution; ids above the
    // highest dropped one are still created by a capture.
    let late = parse_payload(json!({"event": "e", "distinct_id": "late-77"}), 0).unwrap();
    let e = p.capture(1, &late).unwrap_err();
    assert!(matches!(e, PersonsError::NotFound(_)), "{e}");
    let rows =
        elide::store::jsonl::rows_to_batch(&[crate::common::row(900, "late-77", 1, 0)]).unwrap();
    let e = p.append_unresolved(1, Table::Events, &rows).unwrap_err();
    assert!(matches!(e, PersonsError::NotFound(_)), "{e}");
    assert!(p.project(1).is_err());
    p.store().flush().unwrap();
    assert!(files_containing(dir.path(), "late-77").is_empty());
    capture(&p, 3, json!({"event": "e", "distinct_id": "new-3"}));
    assert!(p.project(3).is_ok());
    let meta_hits: Vec<String> = files_containing(dir.path(), "drop-me-93ab")
        .into_iter()
        .filter(|f| f.contains("metadata"))
        .collect();
    assert_eq!(meta_hits, Vec::<String>::new());
}

/// A crash inside a person deletion, between its two steps: the store's
/// deletion requests are durable, the metadata transaction never ran.
/// After reopening, the rows stay hidden and the person is still listed;
/// repeating the deletion completes it, and both the orphan request and the
/// new one end verified with nothing of the person left on disk.
#[test]
fn crash_between_store_requests_and_metadata_is_repaired_by_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["crash-anon-42c1", "crash-user-42c1"];
    let email = "crash.42c1@example.com";
    {
        let p = open(dir.path(), PartCompression::None);
        capture(
            &p,
            1,
            json!({"event": "e", "distinct_id": ids[0], "properties": {"$set": {"email": email}}}),
        );
        capture(
            &p,
            1,
            json!({"event": "$identify", "distinct_id": ids[1], "properties": {"$anon_distinct_id": ids[0]}}),
        );
        capture(
            &p,
            1,
            json!({"event": "e", "distinct_id": "bystander-42c1"}),
        );
        p.store().flush().unwrap();
        // Step 1 of `Persons::delete`, exactly: one request for all the
        // person's ids, events only, cut-off "now". Then the process dies.
        let spec = elide::store::DeleteSpec {
            tables: vec![Table::Events],
            ..elide::store::DeleteSpec::ids(1, ids)
        };
        p.store().delete(spec).unwrap();
    }
    let p = open(dir.path(), PartCompression::None);
    let rt = rt();
    let ctx = elide::app::sql::session(&p).unwrap();
    let q = format!(
        "SELECT count(*) FROM events WHERE distinct_id IN ('{}', '{}')",
        ids[0], ids[1]
    );
    assert_eq!(
        crate::common::count(&rt, &ctx, &q),
        0,
        "rows stay hidden after the crash"
    );
    let listed = p.by_distinct_ids(1, &[ids[1].to_string()]).unwrap();
    assert_eq!(
        listed[ids[1]].distinct_ids,
        ids.map(String::from).to_vec(),
        "the profile is still there"
    );
    assert!(p.deletion_status(1, None, None, 10, 0).unwrap().is_empty());

    let r = p
        .delete(
            1,
            &DeletePersons {
                distinct_ids: vec![ids[1].into()],
                delete_events: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((r.persons_found, r.persons_deleted), (1, 1));
    assert!(p
        .by_distinct_ids(1, &[ids[0].to_string()])
        .unwrap()
        .is_empty());
    let report = compact_now(p.store());
    assert_eq!(
        report.requests_verified.len(),
        2,
        "the orphan request and the repeat"
    );
    let status = p.deletion_status(1, None, None, 10, 0).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].status, DeletionState::Completed);
    for needle in [ids[0], ids[1], email] {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} left on disk"
        );
    }
    assert!(!files_containing(dir.path(), "bystander-42c1").is_empty());
}
