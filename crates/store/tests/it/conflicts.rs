//! The conflict matrix of `elide_store::commit`, as a table: a compaction
//! task (purge or merge) is prepared — read and written, not yet committed
//! — then another operation commits, then the task commits. After each
//! pair, and again after a reopen, the visible rows must equal a model.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use elide_store::{DeleteSpec, Store, TaskOutcome};

#[derive(Debug, Clone, Copy)]
enum InFlight {
    Purge,
    Merge,
}

#[derive(Debug, Clone, Copy)]
enum Concurrent {
    Append,
    DeleteRowsOfTheInputs,
    DeleteElsewhere,
    Flush,
    Drop,
    OtherCompaction,
    GcWithSnapshot,
}

/// The project whose parts the in-flight task reads.
const P: i64 = 1;
/// Another project.
const Q: i64 = 2;

struct Model {
    rows: BTreeMap<String, (String, i64)>,
    next: u64,
}

impl Model {
    fn append(&mut self, store: &Store, project: i64, ids: &[&str], days: i64) {
        let batch: Vec<_> = (0..30)
            .map(|i| {
                let n = self.next + i;
                row(n, ids[n as usize % ids.len()], project, n as i64 % days)
            })
            .collect();
        self.next += 30;
        for r in &batch {
            self.rows.insert(
                r.uuid.clone().unwrap(),
                (r.distinct_id.clone(), r.project_id),
            );
        }
        append(store, &batch);
    }

    fn delete(&mut self, store: &Store, project: i64, did: &str) {
        store.delete(DeleteSpec::ids(project, [did])).unwrap();
        self.rows.retain(|_, (d, p)| !(d == did && *p == project));
    }

    fn expected(&self) -> BTreeSet<(String, String)> {
        self.rows
            .iter()
            .map(|(u, (d, _))| (u.clone(), d.clone()))
            .collect()
    }
}

fn seen(store: &Store) -> BTreeSet<(String, String)> {
    visible(store).into_iter().map(|(u, d, _)| (u, d)).collect()
}

fn run_case(inflight: InFlight, concurrent: Concurrent, expect: TaskOutcome) {
    let case = format!("{inflight:?} x {concurrent:?}");
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut m = Model {
        rows: BTreeMap::new(),
        next: 0,
    };
    // Two flushes of P (two parts in its one partition), one of Q.
    m.append(&store, P, &["a", "b", "c"], 1);
    store.flush().unwrap();
    m.append(&store, P, &["a", "b", "c"], 1);
    store.flush().unwrap();
    m.append(&store, Q, &["a", "b", "c"], 1);
    store.flush().unwrap();
    if matches!(inflight, InFlight::Purge) {
        m.delete(&store, P, "a");
    }
    m.delete(&store, Q, "c"); // gives the other compaction work
    let p_parts: Vec<u64> = store
        .manifest()
        .unwrap()
        .parts
        .iter()
        .filter(|p| p.project_id == P)
        .map(|p| p.id)
        .collect();
    let prepared = match inflight {
        InFlight::Purge => store.prepare_purge(p_parts[0]).unwrap().unwrap(),
        InFlight::Merge => store.prepare_merge(&p_parts).unwrap().unwrap(),
    };
    let mut snapshot = None;
    match concurrent {
        Concurrent::Append => m.append(&store, P, &["a", "d"], 1),
        Concurrent::DeleteRowsOfTheInputs => m.delete(&store, P, "b"),
        Concurrent::DeleteElsewhere => m.delete(&store, Q, "a"),
        Concurrent::Flush => {
            m.append(&store, P, &["b", "e"], 1);
            store.flush().unwrap();
        }
        Concurrent::Drop => {
            store.drop_project(P).unwrap();
            m.rows.retain(|_, (_, p)| *p != P);
        }
        Concurrent::OtherCompaction => {
            let r = store
                .compact(elide_store::CompactRequest {
                    manual: true,
                    project_id: Some(Q),
                    merges: false,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(r.tasks.len(), 1, "{case}");
        }
        Concurrent::GcWithSnapshot => {
            snapshot = Some(store.snapshot().unwrap());
            store.advance_requests().unwrap();
        }
    }
    let output = prepared.output();
    let report = store.commit_rewrite(prepared).unwrap();
    assert_eq!(report.outcome, expect, "{case}");
    assert_eq!(
        seen(&store),
        m.expected(),
        "{case}: visible rows after the swap"
    );
    if let Some(snap) = snapshot {
        // The snapshot taken before the swap still reads its files.
        let before: BTreeSet<_> = visible_in(&snap)
            .into_iter()
            .map(|(u, d, _)| (u, d))
            .collect();
        assert_eq!(before, m.expected(), "{case}: old snapshot");
    }
    if expect == TaskOutcome::Abandoned {
        let path = files_under(dir.path());
        let out = format!("{:016x}.parquet", output.unwrap());
        assert!(
            !path.iter().any(|p| p.ends_with(&out)),
            "{case}: abandoned output left on disk"
        );
    }
    // A full compaction afterwards, and a reopen, change nothing visible.
    compact_now(&store);
    assert_eq!(seen(&store), m.expected(), "{case}: after compaction");
    let pending: Vec<_> = store
        .requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.status != elide_store::RequestStatus::Verified)
        .collect();
    assert!(
        pending.is_empty(),
        "{case}: requests not verified: {pending:?}"
    );
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(seen(&store), m.expected(), "{case}: after reopen");
}

#[test]
fn conflict_matrix() {
    use Concurrent::*;
    use TaskOutcome::*;
    let table = [
        (Append, Committed),
        (DeleteRowsOfTheInputs, Committed),
        (DeleteElsewhere, Committed),
        (Flush, Committed),
        (Drop, Abandoned),
        (OtherCompaction, Committed),
        (GcWithSnapshot, Committed),
    ];
    for inflight in [InFlight::Purge, InFlight::Merge] {
        for (concurrent, expect) in table.clone() {
            run_case(inflight, concurrent, expect);
        }
    }
}

/// Deletes and appends on one thread, compactions (purge and merge) in a
/// loop on another: no deleted row comes back, no live row is lost.
#[test]
fn deletes_and_appends_race_compactions_on_threads() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = {
            let store = store.clone();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut carried = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = compact_now(&store);
                    assert!(r.verification_failures.is_empty());
                    carried += r.tasks.iter().map(|t| t.rows_carried).sum::<u64>();
                }
                carried
            })
        };
        let mut m = Model {
            rows: BTreeMap::new(),
            next: 0,
        };
        let ids = ["a", "b", "c", "d", "e", "f"];
        for round in 0..60usize {
            m.append(&store, 1 + (round % 2) as i64, &ids, 2);
            if round % 3 == 0 {
                store.flush().unwrap();
            }
            if round % 2 == 1 {
                m.delete(&store, 1 + (round % 2) as i64, ids[round % ids.len()]);
            }
            if round % 10 == 9 {
                assert_eq!(seen(&store), m.expected(), "round {round}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        compactor.join().unwrap();
        assert_eq!(seen(&store), m.expected());
        compact_now(&store);
        assert!(store
            .requests()
            .unwrap()
            .iter()
            .all(|r| r.status == elide_store::RequestStatus::Verified));
        store.close().unwrap();
        let store = site.open();
        assert_eq!(seen(&store), m.expected());
    }
}
