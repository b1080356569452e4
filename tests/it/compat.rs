//! Compatibility: the v1 data directory checked in under data/compat/v1
//! (made by data/compat/generate.sh) must open, read and accept deletions
//! with every later build.

use crate::common::*;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn v1_data_directory_opens_forever() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/compat/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path());
    let rt = rt();
    let store = open(dir.path());
    let ctx = ctx(&store);
    // 30 rows, user-1 of project 1 (3 rows) deleted by request 1.
    assert_eq!(count(&rt, &ctx, "SELECT count(*) FROM events"), 27);
    assert_eq!(
        count(
            &rt,
            &ctx,
            "SELECT count(*) FROM events WHERE distinct_id = 'user-1' AND project_id = 1"
        ),
        0
    );
    assert_eq!(
        count(
            &rt,
            &ctx,
            "SELECT count(*) FROM events WHERE distinct_id = 'user-1'"
        ),
        3
    );
    let reqs = store.requests().unwrap();
    assert_eq!((reqs.len(), reqs[0].rows_hidden), (1, 3));
    let o = store
        .delete(elide::store::DeleteSpec::ids(2, ["user-2"]))
        .unwrap();
    assert_eq!(o.rows_hidden, 3);
}

#[test]
fn v1_parts_get_runs_files_from_compaction_and_deletions_then_use_them() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/compat/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path());
    let store = open(dir.path());
    let runs_of = |s: &elide::store::Store| -> Vec<bool> {
        s.snapshot()
            .unwrap()
            .parts(elide::store::Table::Events)
            .map(|p| p.runs.is_some())
            .collect()
    };
    let before = runs_of(&store);
    assert!(
        !before.is_empty() && before.iter().all(|r| !r),
        "v1 parts have no .runs file"
    );
    let report = store.compact(elide::store::CompactRequest::now()).unwrap();
    let after = runs_of(&store);
    assert!(after.iter().all(|r| *r), "{after:?}");
    // Parts the purge rewrote got theirs from the rewrite, the others here.
    let rewritten = report.summary.parts_written as usize;
    assert_eq!(
        report.runs_files_written + rewritten,
        after.len(),
        "{report:?}"
    );
    assert!(report.runs_files_written > 0);
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    store.close().unwrap();
    // Without the in-memory index, deletions now read the files.
    let store = elide::store::Store::open(
        dir.path(),
        elide::store::StoreOptions {
            in_memory_index: false,
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        },
    )
    .unwrap();
    let o = store
        .delete(elide::store::DeleteSpec::ids(2, ["user-2"]))
        .unwrap();
    assert_eq!(o.rows_hidden, 3);
    let rt = rt();
    let ctx = ctx(&store);
    assert_eq!(count(&rt, &ctx, "SELECT count(*) FROM events"), 24);
}
