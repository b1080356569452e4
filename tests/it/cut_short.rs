//! Person deletions and project drops cut short between their steps (a
//! failpoint in the `elide` binary: the process aborts, or the write
//! fails and the command ends) are finished by the next writable open
//! (`crates/persons/src/open.rs`, "Unfinished deletions and drops").

use elide::persons::meta::{DeletionScope, MetaStore, Unfinished};
use elide::persons::{DeletionState, Persons};

use crate::cli::{elide, elide_env};
use crate::common::{count, open, rt};
use crate::hardening::{capture, capture_line, count_sql, persons_count};

/// Where a person deletion can be cut short: after it recorded itself as
/// unfinished (before the store's requests), and after the requests
/// (before the metadata transaction); by a crash or by a failed write.
const DELETE_POINTS: [(&str, &str); 4] = [
    ("persons::delete::before_store", "abort"),
    ("persons::delete::before_store", "error"),
    ("persons::delete::after_store", "abort"),
    ("persons::delete::after_store", "error"),
];

#[test]
fn a_person_deletion_cut_short_is_finished_by_the_next_open() {
    for (point, action) in DELETE_POINTS {
        let at = format!("{point}={action}");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let d = data.to_str().unwrap();
        let file = dir.path().join("c.jsonl");
        let lines = [capture_line("alice", ""), capture_line("bob", "")];
        std::fs::write(&file, lines.join("\n")).unwrap();
        assert!(capture(d, &file).0, "{at}");
        let delete = [
            "persons",
            "delete",
            "--data-dir",
            d,
            "--project",
            "1",
            "--distinct-id",
            "alice",
            "--delete-events",
        ];
        let (ok, _, _) = elide_env(&delete, &[("ELIDE_FAILPOINT", &at)]);
        assert!(!ok, "{at}: the deletion succeeded");
        // A read-only view finishes nothing: alice is still listed.
        assert_eq!(persons_count(d), 2, "{at}");
        {
            let p = Persons::open(open(&data)).unwrap();
            let status = p.deletion_status(1, None, None, 10, 0).unwrap();
            assert_eq!(status.len(), 1, "{at}: {status:?}");
            assert!(status[0].delete_events && !status[0].keep_person, "{at}");
            assert!(
                p.by_distinct_ids(1, &["alice".to_string()])
                    .unwrap()
                    .is_empty(),
                "{at}: alice is still there"
            );
        }
        assert_eq!(persons_count(d), 1, "{at}");
        let alice = "SELECT count(*) FROM events WHERE distinct_id = 'alice'";
        assert_eq!(count_sql(d, alice), 0, "{at}");
        let bob = "SELECT count(*) FROM events WHERE distinct_id = 'bob'";
        assert_eq!(count_sql(d, bob), 1, "{at}");
        // Her id is blocked: her next event is stored with no person.
        std::fs::write(&file, capture_line("alice", "")).unwrap();
        assert!(capture(d, &file).0, "{at}");
        assert_eq!(persons_count(d), 1, "{at}");
        let personless =
            "SELECT count(*) FROM events WHERE distinct_id = 'alice' AND person_id IS NULL";
        assert_eq!(count_sql(d, personless), 1, "{at}");
        // Purged and verified; a later open has nothing left to finish.
        let (ok, out, err) = elide(&["compact", "--data-dir", d, "--now"]);
        assert!(ok, "{at}: {out}{err}");
        let p = Persons::open(open(&data)).unwrap();
        let status = p.deletion_status(1, None, None, 10, 0).unwrap();
        assert_eq!(status.len(), 1, "{at}: {status:?}");
        assert_eq!(status[0].status, DeletionState::Completed, "{at}");
    }
}

/// A deletion that keeps the profile, cut short, then repeated by the
/// caller: the repeat's open finishes the first and the repeat makes a
/// second; the kept person's later events stay, and a later open deletes
/// nothing more. (A repeat in the same process, which finds the first
/// still unfinished, is `open.rs`'s unit test.)
#[test]
fn a_repeated_deletion_leaves_nothing_for_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("c.jsonl");
    std::fs::write(&file, capture_line("carol", "")).unwrap();
    assert!(capture(d, &file).0);
    let delete = [
        "persons",
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "carol",
        "--delete-events",
        "--keep-person",
    ];
    let at = "persons::delete::after_store=error";
    assert!(!elide_env(&delete, &[("ELIDE_FAILPOINT", at)]).0);
    // The repeat's own writable open finishes the first deletion before
    // the repeat runs: two deletions are recorded.
    let (ok, _, err) = elide(&delete);
    assert!(ok, "{err}");
    // The kept person's next event stays.
    assert!(capture(d, &file).0);
    let p = Persons::open(open(&data)).unwrap();
    assert_eq!(p.deletion_status(1, None, None, 10, 0).unwrap().len(), 2);
    drop(p);
    let carol = "SELECT count(*) FROM events WHERE distinct_id = 'carol'";
    assert_eq!(count_sql(d, carol), 1);
    assert_eq!(persons_count(d), 1);
}

#[test]
fn a_project_drop_cut_short_is_finished_by_the_next_open() {
    for action in ["abort", "error"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let d = data.to_str().unwrap();
        let file = dir.path().join("c.jsonl");
        let lines = [capture_line("dave", ""), capture_line("erin", "")];
        std::fs::write(&file, lines.join("\n")).unwrap();
        assert!(capture(d, &file).0, "{action}");
        let drop_it = ["drop-project", "--data-dir", d, "--project", "1"];
        let at = format!("persons::drop_project::after_store={action}");
        assert!(!elide_env(&drop_it, &[("ELIDE_FAILPOINT", &at)]).0, "{at}");
        // The store's rows are gone; the metadata still lists the persons.
        assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 0, "{at}");
        assert_eq!(persons_count(d), 2, "{at}");
        let p = Persons::open(open(&data)).unwrap();
        assert!(p.project(1).is_err(), "{at}: the project is left");
        drop(p);
        assert_eq!(count_sql(d, "SELECT count(*) FROM persons"), 0, "{at}");
    }
}

/// In a process that ran on after a deletion's metadata write failed (a
/// server), the person's events captured since are not the deletion's:
/// the next open's redo takes only the rows acknowledged when it began,
/// and so does the caller's next deletion of the person in the same
/// process, when it asks for less (`repeat`).
#[test]
fn the_redo_takes_only_the_rows_stored_before_the_deletion_began() {
    for repeat in [false, true] {
        redo_or_repeat(repeat);
    }
}

fn redo_or_repeat(repeat: bool) {
    let dir = tempfile::tempdir().unwrap();
    let capture = |p: &Persons, event: &str| {
        let v = serde_json::json!({"event": event, "distinct_id": "fay"});
        let events = elide::persons::capture::parse_payload(v, 0).unwrap();
        p.capture(1, &events).unwrap();
    };
    {
        let p = Persons::open(open(dir.path())).unwrap();
        capture(&p, "before");
        let fay = p.by_distinct_ids(1, &["fay".into()]).unwrap()["fay"].uuid;
        // What the failed write left: the record (its store requests,
        // made before the failure, are left out: the redo makes its own).
        let below_seq = p.store().acknowledged_seq().unwrap();
        p.meta()
            .write(|tx| {
                let op = Unfinished::DeletePerson {
                    person_uuid: fay,
                    scope: DeletionScope {
                        delete_events: true,
                        delete_recordings: false,
                        keep_person: true,
                    },
                    below_seq,
                };
                tx.begin_unfinished(1, &op, 0)
            })
            .unwrap();
        capture(&p, "after");
        if repeat {
            // Recordings only: the unfinished deletion's events come too,
            // up to where it began.
            let req = elide::persons::DeletePersons {
                distinct_ids: vec!["fay".into()],
                delete_recordings: true,
                keep_person: true,
                ..Default::default()
            };
            let r = p.delete(1, &req).unwrap();
            assert!(r.events_queued_for_deletion && r.recordings_queued_for_deletion);
        }
    }
    let p = std::sync::Arc::new(Persons::open(open(dir.path())).unwrap());
    assert_eq!(p.deletion_status(1, None, None, 10, 0).unwrap().len(), 1);
    let left = p.meta().read(|tx| tx.unfinished()).unwrap();
    assert!(left.is_empty(), "{left:?}");
    let rt = rt();
    let ctx = elide::app::sql::session(&p).unwrap();
    let q = |e: &str| {
        format!("SELECT count(*) FROM events WHERE distinct_id = 'fay' AND event = '{e}'")
    };
    assert_eq!(count(&rt, &ctx, &q("before")), 0);
    assert_eq!(
        count(&rt, &ctx, &q("after")),
        1,
        "an event stored since is gone"
    );
}
