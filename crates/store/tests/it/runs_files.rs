//! Deletions through the parts' `.runs` files (no in-memory index) hide
//! exactly what deletions through the index hide, and a damaged `.runs`
//! file never makes a deletion miss a row.

use std::path::Path;

use crate::common::*;
use elide_store::{DeleteSpec, Store, StoreOptions};
use proptest::prelude::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn open_with(dir: &Path, in_memory_index: bool) -> Store {
    Store::open(
        dir,
        StoreOptions {
            in_memory_index,
            wait_ready: in_memory_index,
            ..opts()
        },
    )
    .unwrap()
}

/// Rows a deletion of `ids` hides in a copy of the store at `dir`, through
/// the in-memory index (built before the deletion).
fn hidden_on_a_copy(dir: &Path, project: i64, ids: &[&str]) -> u64 {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let s = open_with(copy.path(), true);
    s.delete(DeleteSpec::ids(project, ids.iter().copied()))
        .unwrap()
        .rows_hidden
}

fn runs_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("parts")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "runs") {
                out.push(p);
            }
        }
    }
    out
}

/// A store of `rows` events (distinct ids `d0..d{ids}`, 2 projects, 3
/// days), flushed in `flushes` batches so that an id has several runs and
/// explicit cut-offs fall inside runs.
fn build(dir: &Path, rows: u64, ids: u64, flushes: u64) {
    let store = open(dir);
    let per = rows.div_ceil(flushes);
    for f in 0..flushes {
        let batch: Vec<_> = (f * per..((f + 1) * per).min(rows))
            .map(|i| {
                row(
                    i,
                    &format!("d{}", (i * 7) % ids),
                    1 + (i % 2) as i64,
                    (i % 3) as i64,
                )
            })
            .collect();
        append(&store, &batch);
        store.flush().unwrap();
    }
    store.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn deletions_through_runs_files_hide_what_the_index_hides(
        rows in 50u64..1500,
        ids in 2u64..400,
        flushes in 1u64..4,
        deletions in prop::collection::vec(
            (1i64..3, prop::collection::vec(0u64..420, 1..12), prop::option::of(0u64..1500)),
            1..5,
        ),
    ) {
        let base = tempfile::tempdir().unwrap();
        build(base.path(), rows, ids, flushes);
        prop_assert!(!runs_files(base.path()).is_empty());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        copy_dir(base.path(), a.path());
        copy_dir(base.path(), b.path());
        let files = open_with(a.path(), false);
        let index = open_with(b.path(), true);
        for (project, dids, cutoff) in deletions {
            let dids: Vec<String> = dids.iter().map(|d| format!("d{d}")).collect();
            let spec = || DeleteSpec {
                cutoff: cutoff.map(|c| 1 + c % rows),
                ..DeleteSpec::ids(project, dids.iter().cloned())
            };
            let x = files.delete(spec()).unwrap();
            let y = index.delete(spec()).unwrap();
            prop_assert_eq!(x.rows_hidden, y.rows_hidden);
            prop_assert_eq!(visible(&files), visible(&index));
        }
        // Exports of a person's rows take the same path.
        for project in 1..3 {
            let all: Vec<String> = (0..ids).map(|d| format!("d{d}")).collect();
            let (mut xs, mut ys) = (0usize, 0usize);
            let x = files
                .rows_of_distinct_ids(project, &all, &[], &mut |_, b| {
                    xs += b.num_rows();
                    Ok(())
                })
                .unwrap();
            let y = index
                .rows_of_distinct_ids(project, &all, &[], &mut |_, b| {
                    ys += b.num_rows();
                    Ok(())
                })
                .unwrap();
            prop_assert_eq!(x.rows, y.rows);
            prop_assert_eq!(xs, ys);
        }
    }
}

#[test]
fn a_damaged_runs_file_falls_back_to_the_part_and_scrub_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 400, 20, 2);
    let expected = hidden_on_a_copy(dir.path(), 1, &["d0", "d1", "d10"]);
    assert!(expected > 0);
    let victims = runs_files(dir.path());
    assert!(!victims.is_empty());
    for f in &victims {
        let mut bytes = std::fs::read(f).unwrap();
        // The first block: the runs of the smallest ids.
        bytes[6] ^= 0x40;
        std::fs::write(f, bytes).unwrap();
    }
    for in_memory in [false, true] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let s = open_with(copy.path(), in_memory);
        let o = s.delete(DeleteSpec::ids(1, ["d0", "d1", "d10"])).unwrap();
        assert_eq!(o.rows_hidden, expected, "in_memory_index={in_memory}");
        let report = s.scrub(&mut |_, _| {}).unwrap();
        assert!(report.damaged());
        let damaged: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity == "damaged")
            .collect();
        assert_eq!(damaged.len(), victims.len(), "{damaged:?}");
        assert!(damaged.iter().all(|f| f.path.ends_with(".runs")));
    }
}

#[test]
fn runs_files_are_written_with_parts_and_removed_with_them() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300, 10, 3);
    let parts_before = runs_files(dir.path()).len();
    assert!(parts_before >= 6, "{parts_before}");
    let s = open_with(dir.path(), false);
    s.delete(DeleteSpec::ids(1, ["d1", "d3"])).unwrap();
    s.compact(elide_store::CompactRequest::now()).unwrap();
    let snap = s.snapshot().unwrap();
    let mut want: Vec<String> = snap
        .parts(elide_store::Table::Events)
        .map(|p| {
            assert!(p.runs.is_some(), "{} has no .runs file", p.path);
            elide_store::runs_file::runs_path(&p.path)
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = runs_files(dir.path())
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "exactly the live parts' .runs files are on disk");
    assert!(!s.scrub(&mut |_, _| {}).unwrap().damaged());
}

#[test]
fn a_clone_outliving_close_still_finds_every_row() {
    // `close` with other handles alive leaves the build started at open
    // running (it is cancelled only when no handle is left); the clone's
    // deletions find every row either way.
    for in_memory in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 600, 30, 3);
        let expected = hidden_on_a_copy(dir.path(), 2, &["d1", "d7", "d29"]);
        assert!(expected > 0);
        let s = Store::open(
            dir.path(),
            StoreOptions {
                in_memory_index: in_memory,
                ..opts()
            },
        )
        .unwrap();
        let clone = s.clone();
        s.close().unwrap();
        let o = clone
            .delete(DeleteSpec::ids(2, ["d1", "d7", "d29"]))
            .unwrap();
        assert_eq!(o.rows_hidden, expected, "in_memory_index={in_memory}");
        clone.ready().unwrap();
        let again = clone
            .delete(DeleteSpec::ids(2, ["d1", "d7", "d29"]))
            .unwrap();
        assert_eq!(again.rows_hidden, 0, "already hidden");
    }
}

#[test]
fn without_the_in_memory_index_deletions_read_only_runs_files() {
    // With every parquet file gone, a deletion can only have found its
    // rows through the `.runs` files (the index reads the parts).
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 900, 200, 2);
    let expected = hidden_on_a_copy(dir.path(), 1, &["d3", "d150", "d199"]);
    assert!(expected > 0);
    for f in runs_files(dir.path()) {
        std::fs::remove_file(f.with_extension("parquet")).unwrap();
    }
    let s = open_with(dir.path(), false);
    let o = s
        .delete(DeleteSpec::ids(1, ["d3", "d150", "d199"]))
        .unwrap();
    assert_eq!(o.rows_hidden, expected);
}

#[test]
fn an_unreferenced_runs_file_is_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, 5, 1);
    let some = runs_files(dir.path()).pop().unwrap();
    let orphan = some.with_file_name("00000000000fffff.runs");
    std::fs::write(&orphan, b"left by a crash").unwrap();
    let s = open(dir.path());
    assert!(!orphan.exists(), "orphan .runs file left on disk");
    assert!(some.exists());
    assert!(!s.scrub(&mut |_, _| {}).unwrap().damaged());
}
