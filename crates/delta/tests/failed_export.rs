//! An export that fails before its commit leaves nothing behind: not the
//! table it was creating, not its vector file. (Its own test binary: the
//! failpoint is armed for the whole process.)

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

#[test]
fn a_failed_first_export_leaves_no_table_and_no_vectors() {
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
    store.delete(DeleteSpec::ids(1, ["user-0"])).unwrap();
    let table = dir.path().join("parts/events");

    set(Some(("delta.before_commit", Action::Error)));
    let err = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap_err();
    set(None);
    assert!(err.to_string().contains("failpoint"), "{err}");
    assert!(
        !table.join("_delta_log").exists(),
        "the created table was left behind"
    );
    assert!(
        !table.join("dv").exists(),
        "the vector file was left behind"
    );

    // The next run creates it whole.
    let r = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(r.created && r.committed && r.hidden_rows == 10);
}
