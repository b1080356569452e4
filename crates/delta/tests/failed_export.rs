//! An export that fails before its commit leaves no vector file behind,
//! and the table it created stays, empty (removing it raced with another
//! export committing on it); one whose commit was attempted removes
//! nothing. (Its own test binary: a failpoint or hook
//! is armed for the whole process, so its tests run one at a time.)

use elide_delta::{export_delta, ExportOptions};
use elide_store::failpoint::{set, Action};
use elide_store::jsonl::{rows_to_batch, EventRow};
use elide_store::{DeleteSpec, Store, StoreOptions, Table};

fn rows(n: u64) -> Vec<EventRow> {
    (0..n)
        .map(|i| EventRow {
            uuid: None,
            event: "e".into(),
            distinct_id: format!("user-{}", i % 5),
            person_id: None,
            project_id: 1,
            timestamp_us: 1_790_000_000_000_000 + i as i64,
            properties: None,
            session_id: None,
        })
        .collect()
}

/// A store with 50 rows of five users in parts.
fn flushed_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        },
    )
    .unwrap();
    store
        .append(Table::Events, &rows_to_batch(&rows(50)).unwrap())
        .unwrap();
    store.flush().unwrap();
    (dir, store)
}

/// The tests of this binary one at a time (each arms the process's
/// failpoint or hook at `delta.before_commit`).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_failed_first_export_leaves_an_empty_table_and_no_vectors() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, store) = flushed_store();
    store.delete(DeleteSpec::ids(1, ["user-0"])).unwrap();
    let table = dir.path().join("parts/events");

    set(Some(("delta.before_commit", Action::Error)));
    let err = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap_err();
    set(None);
    assert!(err.to_string().contains("failpoint"), "{err}");
    // The first version stays, alone: another export may have read it
    // and be committing the next one on it.
    let log = table.join("_delta_log");
    let mut versions: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    versions.sort();
    assert_eq!(versions, [format!("{:020}.json", 0)]);
    let first = std::fs::read_to_string(log.join(&versions[0])).unwrap();
    assert!(!first.contains("\"add\""), "{first}");
    assert!(
        !table.join("dv").exists(),
        "the vector file was left behind"
    );

    // The next run builds on it: every file and the deletion.
    let r = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(!r.created && r.committed && r.hidden_rows == 10);
    assert_eq!(r.version, 1);
}

/// Another export creating a table at the same root between this one's
/// look and its create (here the recordings', at `parts`): this one is
/// refused, and the table holds nothing of it. The kernel's create
/// refuses a table it finds; a create that loses the race on version 0
/// itself (after that look, inside the kernel, where no hook reaches)
/// reads the table back and checks it is this table's export.
#[test]
fn a_table_another_export_created_meanwhile_is_checked() {
    use elide_store::failpoint::{set_hook, Hook};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, store) = flushed_store();
    let at_parts = |table| ExportOptions {
        root: Some("parts".into()),
        ..ExportOptions::new(table)
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, d) = (store.clone(), std::sync::Arc::clone(&done));
    let other: Hook = std::sync::Arc::new(move || {
        // Once: the other export passes this failpoint too.
        if !d.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let r = export_delta(&s, &at_parts(Table::Recordings)).unwrap();
            assert!(r.created);
        }
    });
    set_hook("delta.before_create", Some(other));
    let r = export_delta(&store, &at_parts(Table::Events));
    set_hook("delta.before_create", None);
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("already exists") || err.contains("not an export of `events`"),
        "{err}"
    );
    for e in std::fs::read_dir(dir.path().join("parts/_delta_log")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(!log.contains("events/"), "{log}");
        }
    }
}

/// A commit whose answer says it failed, after the attempt: here another
/// writer's version takes the number first (a conflict). The same answer
/// comes from an object store whose retried put-if-absent met its own
/// first attempt, whose version then names the vector file; so nothing
/// written is removed once the commit was attempted. The table stays
/// readable, and the next run exports the deletion.
#[test]
fn a_commit_that_answers_failed_keeps_its_vector_file() {
    use elide_store::failpoint::{set_hook, Hook};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, store) = flushed_store();
    let first = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(first.created && first.committed);
    store.delete(DeleteSpec::ids(1, ["user-0"])).unwrap();
    let table = dir.path().join("parts/events");
    let log = table.join("_delta_log");
    let next = first.version + 1;
    let foreign = log.join(format!("{next:020}.json"));
    let f = foreign.clone();
    let other_writer: Hook = std::sync::Arc::new(move || {
        std::fs::write(
            &f,
            "{\"commitInfo\":{\"timestamp\":1790000000000,\"operation\":\"WRITE\"}}\n",
        )
        .unwrap();
    });
    set_hook("delta.before_commit", Some(other_writer));
    let err = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap_err();
    set_hook("delta.before_commit", None);
    assert!(err.to_string().contains("another writer"), "{err}");
    let vectors: Vec<_> = std::fs::read_dir(table.join("dv"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert_eq!(vectors.len(), 1, "the vector file of the attempted commit");
    // The next run commits the deletion on top of the other version.
    let r = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(r.committed && r.hidden_rows == 10, "{r:?}");
    assert_eq!(r.version, next + 1);
}
