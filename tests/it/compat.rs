//! Compatibility: the data directories checked in under data/compat —
//! `v1` (made by data/compat/generate.sh) and `text-person-ids` (made by
//! data/compat/generate_text_person_ids.sh with a build of 086f9fa) — must
//! open, read and accept deletions with every later build.

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

/// A fresh copy of the fixture `name` (tests change it).
fn fixture_copy(name: &str) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/compat")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path());
    dir
}

/// A fresh copy of the v1 fixture.
fn v1_copy() -> tempfile::TempDir {
    fixture_copy("v1")
}

#[test]
fn v1_data_directory_opens_forever() {
    let dir = v1_copy();
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
    let dir = v1_copy();
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
    // Without merges: they would rewrite every part of this small
    // fixture into one per project (the next test).
    let report = store
        .compact(elide::store::CompactRequest::now().without_merges())
        .unwrap();
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

/// Compaction migrates a v1 directory, a part per (project, day), to the
/// layout of today: a small project's closed days of one month in one part.
/// The rows are the same, deletions still find their runs, and the store
/// reopens.
#[test]
fn v1_parts_of_one_project_and_month_merge_into_one() {
    let dir = v1_copy();
    let rt = rt();
    let store = open(dir.path());
    let days = |s: &elide::store::Store| -> Vec<(i64, usize)> {
        s.snapshot()
            .unwrap()
            .parts(elide::store::Table::Events)
            .map(|p| (p.project_id, p.days().count()))
            .collect()
    };
    assert_eq!(days(&store).len(), 6, "two projects over three days");
    let all = |s: &elide::store::Store| {
        let q = "SELECT uuid, distinct_id, project_id, timestamp FROM events ORDER BY uuid";
        arrow::util::pretty::pretty_format_batches(&sql(&rt, &ctx(s), q))
            .unwrap()
            .to_string()
    };
    let before = all(&store);
    // The first run purges project 1's parts (its request) and merges
    // project 2's; the second merges project 1's; the third finds nothing.
    for _ in 0..2 {
        let report = store.compact(elide::store::CompactRequest::now()).unwrap();
        assert!(report.verification_failures.is_empty(), "{report:?}");
    }
    assert_eq!(days(&store), vec![(1, 3), (2, 3)]);
    let report = store.compact(elide::store::CompactRequest::now()).unwrap();
    assert!(report.tasks.is_empty(), "{report:?}");
    assert_eq!(all(&store), before);
    let o = store
        .delete(elide::store::DeleteSpec::ids(2, ["user-2"]))
        .unwrap();
    assert_eq!(o.rows_hidden, 3);
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(count(&rt, &ctx(&store), "SELECT count(*) FROM events"), 24);
}

/// (part id, the `uuid` column's Arrow type) of every part of `events`.
fn uuid_types(store: &elide::store::Store) -> Vec<(u64, arrow::datatypes::DataType)> {
    column_types(store, "uuid")
}

/// (part id, `column`'s Arrow type) of every part of `events`.
fn column_types(
    store: &elide::store::Store,
    column: &str,
) -> Vec<(u64, arrow::datatypes::DataType)> {
    let snap = store.snapshot().unwrap();
    snap.parts(elide::store::Table::Events)
        .map(|p| {
            let path = snap.storage().local_root().unwrap().join(&p.path);
            let f = std::fs::File::open(path).unwrap();
            let r =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
            let t = r.schema().field_with_name(column).unwrap().data_type();
            (p.id, t.clone())
        })
        .collect()
}

#[test]
fn v1_text_uuids_read_as_text_and_rewritten_parts_store_16_bytes() {
    use arrow::datatypes::DataType;
    let dir = v1_copy();
    let rt = rt();
    let store = open(dir.path());
    let v1 = uuid_types(&store);
    assert!(v1.iter().all(|(_, t)| *t == DataType::Utf8));
    // generate.sh: event i has UUID 00000000-0000-4000-8000-<i, 12 digits>;
    // user-1 of project 1 (events 6, 16 and 26) is deleted.
    let q = "SELECT uuid FROM events ORDER BY uuid";
    let before = strings(&sql(&rt, &ctx(&store), q));
    assert_eq!(before.len(), 27);
    assert_eq!(before[0], "00000000-0000-4000-8000-000000000001");
    assert!(!before.contains(&"00000000-0000-4000-8000-000000000006".to_string()));
    let one = "SELECT count(*) FROM events WHERE uuid = '00000000-0000-4000-8000-000000000002'";
    assert_eq!(count(&rt, &ctx(&store), one), 1);
    // New rows next to the old parts: 16 bytes, the same text out.
    let new_uuid = "0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f";
    let mut r = row(100, "user-9", 2, 0);
    r.uuid = Some(new_uuid.to_uppercase());
    append(&store, &[r]);
    let q_new = format!("SELECT count(*) FROM events WHERE uuid = '{new_uuid}'");
    assert_eq!(count(&rt, &ctx(&store), &q_new), 1, "buffered");
    // Old text, new bytes and buffered rows in one scan: IN, LIKE, a
    // range, and a top-k on the column.
    let mixed = |store: &elide::store::Store| {
        let c = ctx(store);
        let q_in = format!(
            "SELECT count(*) FROM events WHERE uuid IN ('{new_uuid}', '00000000-0000-4000-8000-000000000002')"
        );
        assert_eq!(count(&rt, &c, &q_in), 2);
        let q_like = "SELECT count(*) FROM events WHERE uuid LIKE '0192b1c2-%' OR uuid LIKE '%-000000000003'";
        assert_eq!(count(&rt, &c, q_like), 2);
        let q_range =
            "SELECT count(*) FROM events WHERE uuid > '00000000-0000-4000-8000-000000000029'";
        assert_eq!(count(&rt, &c, q_range), 2);
        let top = strings(&sql(
            &rt,
            &c,
            "SELECT uuid FROM events ORDER BY uuid DESC LIMIT 2",
        ));
        assert_eq!(
            top,
            vec![
                "00000000-0000-4000-8000-000000000030".to_string(),
                new_uuid.to_string()
            ]
        );
    };
    mixed(&store);
    store.flush().unwrap();
    mixed(&store);
    let types = uuid_types(&store);
    let flushed: Vec<_> = types.iter().filter(|p| !v1.contains(p)).collect();
    assert_eq!(flushed.len(), 1, "{types:?}");
    assert_eq!(flushed[0].1, DataType::FixedSizeBinary(16));
    assert_eq!(count(&rt, &ctx(&store), &q_new), 1);
    // A compaction writes the parts it rewrites (the purge of user-1,
    // merges of small parts, old with new) in the current schema; parts
    // it leaves keep their text, and read the same.
    compact_now(&store);
    let types = uuid_types(&store);
    let written: Vec<_> = types
        .iter()
        .filter(|(id, _)| !v1.iter().any(|(old, _)| old == id))
        .collect();
    assert!(written.len() >= 2, "{types:?}");
    assert!(
        written
            .iter()
            .all(|(_, t)| *t == DataType::FixedSizeBinary(16)),
        "{types:?}"
    );
    let after = strings(&sql(&rt, &ctx(&store), q));
    let mut expected = before.clone();
    expected.push(new_uuid.to_string());
    expected.sort();
    assert_eq!(after, expected);
    assert_eq!(count(&rt, &ctx(&store), one), 1);
    assert_eq!(count(&rt, &ctx(&store), &q_new), 1);
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    // The store now says it may hold 16-byte UUIDs (parts spanning
    // several days, requests with a floor, predicates comparing numbers
    // exactly): builds before refuse it by its version instead of
    // failing its queries.
    let manifests = dir.path().join("manifest");
    let newest = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let bytes = std::fs::read(newest).unwrap();
    assert_eq!(bytes[8..12], 6u32.to_le_bytes());
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(count(&rt, &ctx(&store), one), 1);
}

/// Parts whose `person_id`s are text (written before person ids were
/// stored as 16 bytes): read, compared, grouped and joined like new ones;
/// a deletion by person id finds them; a compaction rewrites them as bytes.
#[test]
fn text_person_ids_read_compare_and_delete_like_16_byte_ones() {
    use arrow::datatypes::DataType;
    let dir = fixture_copy("text-person-ids");
    let rt = rt();
    let store = open(dir.path());
    let old = column_types(&store, "person_id");
    assert!(!old.is_empty() && old.iter().all(|(_, t)| *t == DataType::Utf8));
    // generate_text_person_ids.sh: event i has distinct id user-(i % 5) of
    // person 00000000-0000-4000-9000-<i % 5> (none for user-4), in project
    // 1 + i % 2; user-1 of project 1 (events 6, 16 and 26) is deleted.
    let person = |k: u32| format!("00000000-0000-4000-9000-{k:012}");
    let checks = |store: &elide::store::Store, p2_rows: i64| {
        let c = ctx(store);
        assert_eq!(
            count(&rt, &c, "SELECT count(DISTINCT person_id) FROM events"),
            4
        );
        let q = format!(
            "SELECT count(*) FROM events WHERE person_id = '{}'",
            person(2).to_uppercase()
        );
        assert_eq!(count(&rt, &c, &q), p2_rows);
        let q = format!(
            "SELECT count(*) FROM events WHERE person_id IN ('{}', '{}')",
            person(0),
            person(3)
        );
        assert_eq!(count(&rt, &c, &q), 12);
        let listed = strings(&sql(
            &rt,
            &c,
            "SELECT person_id FROM events WHERE person_id IS NOT NULL \
             GROUP BY person_id ORDER BY person_id",
        ));
        assert_eq!(listed, (0..4).map(person).collect::<Vec<_>>());
        let q = format!(
            "SELECT count(*) FROM events e JOIN (SELECT '{}' AS p) q ON e.person_id = q.p",
            person(3)
        );
        assert_eq!(count(&rt, &c, &q), 6);
    };
    checks(&store, 6);
    // Project 2's rows of person 2 (events 7, 17, 27), found in text parts.
    let d = store.delete_person_ids(2, &[person(2)], &[]).unwrap();
    assert_eq!(d.distinct_ids, vec!["user-2".to_string()]);
    assert_eq!(d.rows_hidden(), 3);
    checks(&store, 3);
    compact_now(&store);
    let types = column_types(&store, "person_id");
    let written: Vec<_> = types
        .iter()
        .filter(|(id, _)| !old.iter().any(|(o, _)| o == id))
        .collect();
    assert!(!written.is_empty(), "{types:?}");
    assert!(
        written
            .iter()
            .all(|(_, t)| *t == DataType::FixedSizeBinary(16)),
        "{types:?}"
    );
    checks(&store, 3);
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    store.close().unwrap();
    let store = open(dir.path());
    checks(&store, 3);
}
