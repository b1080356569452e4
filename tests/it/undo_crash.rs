//! Undo and cancel across crashes, and their command line: `elide cancel
//! --request ID` and the compaction that resolves a request whose undo
//! window has ended, each killed (a failpoint aborts the process) or
//! failed at every step of its commit. After each, the reopened store
//! hides the request's rows or shows each of them exactly once (never a
//! mix, never a row of another request), and a second attempt completes.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use elide::store::predicate::EventPredicate;
use elide::store::{CompactRequest, DeleteSpec, EventDeletion, RequestStatus, Store};

use crate::common::*;

/// Rows 0..180 over 3 days in projects 1 and 2 (ids d0..d5), two flushed
/// batches and one in the ingest log; request A hides d1 of project 1
/// (bits), request B (undo window `window`) the `signup` events of
/// project 2. Returns (B's id, rows visible with B, B's rows).
fn setup(store: &Store, window: Duration) -> (u64, BTreeSet<String>, BTreeSet<String>) {
    let (mut keep, mut b_rows) = (BTreeSet::new(), BTreeSet::new());
    for batch in 0..3u64 {
        let rows: Vec<_> = (0..60u64)
            .map(|i| {
                let n = batch * 60 + i;
                let (d, p) = (n % 6, 1 + (n % 2) as i64);
                if d == 1 && p == 1 {
                    // A's
                } else if n.is_multiple_of(3) && p == 2 {
                    b_rows.insert(uuid_of(n));
                } else {
                    keep.insert(uuid_of(n));
                }
                row(n, &format!("d{d}"), p, (n % 3) as i64)
            })
            .collect();
        append(store, &rows);
        if batch < 2 {
            store.flush().unwrap();
        }
    }
    store.delete(DeleteSpec::ids(1, ["d1"])).unwrap();
    let b = store
        .delete_events(EventDeletion {
            undo_window: Some(window),
            ..EventDeletion::new(
                2,
                EventPredicate {
                    events: vec!["signup".into()],
                    ..Default::default()
                },
            )
        })
        .unwrap();
    assert!(b.logical);
    (b.request_id, keep, b_rows)
}

/// Visible uuids, each once (a duplicate fails).
fn visible_uuids(store: &Store) -> BTreeSet<String> {
    let rt = rt();
    let ctx = ctx(store);
    let all = strings(&sql(&rt, &ctx, "SELECT uuid FROM events"));
    let set: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(set.len(), all.len(), "a row is visible twice");
    set
}

fn run(args: &[&str], dir: &std::path::Path, failpoint: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("ELIDE_FAILPOINT", failpoint)
        .output()
        .unwrap()
}

fn must_fail(out: &std::process::Output, case: &str, abort: bool) {
    assert!(
        !out.status.success(),
        "{case}: the failpoint was not reached: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    if abort {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "{case}: expected SIGABRT");
    }
}

#[test]
fn a_cancel_killed_at_any_step_restores_all_of_its_rows_or_none() {
    // (failpoint, whether the cancel is committed when it fires)
    for (point, committed) in [
        ("undo::before_cancel_commit", false),
        ("commit::before_manifest", false),
        ("commit::after_manifest", true),
        ("undo::before_cancel_commit=error", false),
        ("commit::before_manifest=error", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (b, keep, b_rows) = {
            let store = open(dir.path());
            let s = setup(&store, Duration::from_secs(7200));
            store.close().unwrap();
            s
        };
        let out = run(&["cancel", "--request", &b.to_string()], dir.path(), point);
        must_fail(&out, point, !point.ends_with("=error"));
        let store = open(dir.path());
        let restored: BTreeSet<String> = keep.union(&b_rows).cloned().collect();
        let want = if committed { &restored } else { &keep };
        assert_eq!(&visible_uuids(&store), want, "{point}: after the crash");
        assert_eq!(store.manifest().unwrap().check_invariants(), Ok(()));
        store.close().unwrap();
        // A second cancel completes it (or is refused, changing nothing,
        // if the first one was committed).
        let out = run(
            &["cancel", "--request", &b.to_string(), "--format", "json"],
            dir.path(),
            "",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if committed {
            assert!(!out.status.success(), "{point}: cancelled twice");
            assert!(stderr.contains("already cancelled"), "{point}: {stderr}");
        } else {
            assert!(out.status.success(), "{point}: {stderr}");
            let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(v["request_id"], b);
            assert_eq!(v["rows_restored"], b_rows.len() as u64);
        }
        let store = open(dir.path());
        assert_eq!(visible_uuids(&store), restored, "{point}: after the cancel");
        // Compaction purges A; B stays cancelled with its rows.
        let r = store
            .compact(CompactRequest {
                manual: true,
                merges: true,
                ..Default::default()
            })
            .unwrap();
        assert!(r.verification_failures.is_empty());
        assert_eq!(visible_uuids(&store), restored, "{point}: after compaction");
        let m = store.manifest().unwrap();
        assert_eq!(
            m.requests.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![RequestStatus::Verified, RequestStatus::Cancelled],
            "{point}"
        );
        store.close().unwrap();
    }
}

#[test]
fn a_resolution_killed_at_any_step_never_shows_the_rows_and_then_completes() {
    for point in [
        "undo::before_resolve_commit",
        "commit::before_manifest",
        "commit::after_manifest",
        "undo::before_resolve_commit=error",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (b, keep, _) = {
            let store = open(dir.path());
            let s = setup(&store, Duration::from_millis(300));
            store.close().unwrap();
            s
        };
        std::thread::sleep(Duration::from_millis(400)); // the window ends
        let out = run(&["compact", "--now"], dir.path(), point);
        if point.ends_with("=error") {
            // A failed resolution is logged; the compaction goes on and
            // purges what it can (A), leaving B logical.
            assert!(
                out.status.success(),
                "{point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            must_fail(&out, point, true);
        }
        let store = open(dir.path());
        assert_eq!(
            visible_uuids(&store),
            keep,
            "{point}: B's rows are never shown"
        );
        assert_eq!(store.manifest().unwrap().check_invariants(), Ok(()));
        // Cancel is too late whatever state B is in.
        let late = store.cancel_request(b).unwrap_err().to_string();
        assert!(late.contains("undo window ended"), "{point}: {late}");
        let r = store
            .compact(CompactRequest {
                manual: true,
                merges: true,
                ..Default::default()
            })
            .unwrap();
        assert!(r.verification_failures.is_empty(), "{point}");
        let m = store.manifest().unwrap();
        assert!(
            m.requests
                .iter()
                .all(|r| r.status == RequestStatus::Verified),
            "{point}: {:?}",
            m.requests
        );
        assert_eq!(visible_uuids(&store), keep, "{point}: after the purge");
        store.close().unwrap();
    }
}
