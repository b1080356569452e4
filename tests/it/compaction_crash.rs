//! A crash at every step of a compaction: `elide compact --now` runs with
//! a failpoint armed (the `failpoints` feature, on in tests) that aborts
//! the process there, or makes the step fail with an error. After each,
//! the reopened store shows exactly the rows it should (no deleted row
//! back, no live row lost), and a clean compaction then completes the
//! lifecycle and leaves only referenced files on disk.

use std::collections::BTreeSet;
use std::process::Command;

use elide::store::{CompactRequest, DeleteSpec, RequestStatus, Store};

use crate::common::*;

/// Every failpoint a manual compaction passes, in order.
const POINTS: &[&str] = &[
    "compact::after_write",
    "compact::before_commit",
    "commit::before_manifest",
    "commit::after_manifest",
    "compact::after_commit",
    "gc::before_delete",
    "lifecycle::before_commit",
];

/// Appends rows of ids d0..d3 over 3 days in two projects (two ids in
/// every part), flushes, then deletes d1 of project 2 (tombstones in its
/// parts of days 1 and 2, purged) and, by predicate, the `signup` events
/// of project 2 (every third row, `common::row`: its day-0 parts, dropped
/// whole), and returns the uuids that must stay visible. Project 1's parts
/// are clean, so the compaction merges them (across days).
fn setup(store: &Store) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    for batch in 0..3u64 {
        let rows: Vec<_> = (0..60u64)
            .map(|i| {
                let n = batch * 60 + i;
                let (d, p) = (n % 4, 1 + (n % 2) as i64);
                let signup = n.is_multiple_of(3);
                let deleted = p == 2 && (d == 1 || signup);
                if !deleted {
                    keep.insert(uuid_of(n));
                }
                row(n, &format!("d{d}"), p, (n % 3) as i64)
            })
            .collect();
        append(store, &rows);
        store.flush().unwrap();
    }
    store.delete(DeleteSpec::ids(2, ["d1"])).unwrap();
    store
        .delete_events(elide::store::EventDeletion::new(
            2,
            elide::store::predicate::EventPredicate {
                events: vec!["signup".into()],
                ..Default::default()
            },
        ))
        .unwrap();
    keep
}

fn visible_uuids(store: &Store) -> BTreeSet<String> {
    let rt = rt();
    let ctx = ctx(store);
    strings(&sql(&rt, &ctx, "SELECT uuid FROM events"))
        .into_iter()
        .collect()
}

fn files(dir: &std::path::Path, sub: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.join(sub)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_string_lossy().to_string());
            }
        }
    }
    out
}

fn crash_at(point: &str, action: &str) {
    let case = format!("{point}={action}");
    let dir = tempfile::tempdir().unwrap();
    let keep = {
        let store = open(dir.path());
        let keep = setup(&store);
        store.close().unwrap();
        keep
    };
    let spec = if action == "abort" {
        point.to_string()
    } else {
        format!("{point}=error")
    };
    let out = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(["compact", "--now", "--data-dir"])
        .arg(dir.path())
        .env("ELIDE_FAILPOINT", spec)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{case}: the failpoint was not reached: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    if action == "abort" {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "{case}: expected SIGABRT");
    }
    // Reopen: old state or new state, never a mix.
    let store = open(dir.path());
    assert_eq!(
        visible_uuids(&store),
        keep,
        "{case}: visible rows after the crash"
    );
    // A clean compaction completes the lifecycle.
    let r = store
        .compact(CompactRequest {
            manual: true,
            merges: false,
            ..Default::default()
        })
        .unwrap();
    assert!(r.verification_failures.is_empty(), "{case}");
    let m = store.manifest().unwrap();
    assert!(
        m.requests
            .iter()
            .all(|r| r.status == RequestStatus::Verified),
        "{case}: {:?}",
        m.requests
    );
    assert_eq!(
        visible_uuids(&store),
        keep,
        "{case}: after the second compaction"
    );
    let on_disk: BTreeSet<String> = files(dir.path(), "parts")
        .into_iter()
        .chain(files(dir.path(), "tombstones"))
        .collect();
    assert_eq!(
        on_disk,
        m.referenced_paths(),
        "{case}: unreferenced files left"
    );
    let manifests = files(dir.path(), "manifest");
    assert_eq!(
        manifests.len(),
        1,
        "{case}: old manifests left: {manifests:?}"
    );
    store.close().unwrap();
}

/// The compaction the crashes interrupt purges and merges, and one of its
/// merges spans several days (project 1's parts of three closed days):
/// the crashes below cover both kinds of rewrite.
#[test]
fn the_interrupted_compaction_purges_and_merges_across_days() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let keep = setup(&store);
    let r = store.compact(CompactRequest::now()).unwrap();
    let kinds = |k: elide::store::TaskKind| r.tasks.iter().filter(|t| t.kind == k).count();
    assert!(kinds(elide::store::TaskKind::Purge) > 0, "{r:?}");
    assert!(
        r.tasks
            .iter()
            .any(|t| t.kind == elide::store::TaskKind::Merge && t.last_day.is_some()),
        "{r:?}"
    );
    assert_eq!(visible_uuids(&store), keep);
}

#[test]
fn a_crash_at_any_step_of_a_compaction_leaves_old_or_new_state() {
    for point in POINTS {
        crash_at(point, "abort");
    }
}

#[test]
fn a_failing_step_of_a_compaction_changes_nothing_visible() {
    for point in [
        "compact::after_write",
        "compact::before_commit",
        "commit::before_manifest",
        "lifecycle::before_commit",
    ] {
        crash_at(point, "error");
    }
}
