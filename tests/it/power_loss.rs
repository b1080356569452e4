//! Power loss, not only process death. A SIGKILL keeps the page cache, so
//! it cannot catch a missing `fsync`; these tests run the store on the
//! recording file system (`elide_store::crash_fs`), which keeps what a
//! power loss would leave (file contents as of their last fsync, directory
//! entries as of their directory's last fsync), and reopen from that
//! durable image only, at many cut points across bulk ingest, appends,
//! deletes, flushes, compaction and capture (the persons' SQLite files are
//! copied as they are: SQLite makes its commits durable itself). Some
//! images are then reopened on the recording file system again and cut
//! during their own recovery.
//!
//! Each image must open, show every row acknowledged before the cut
//! unless an acknowledged deletion covers it, show no row such a deletion
//! covers, and show each whole-input capture all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::AsArray;
use elide::persons::{CaptureBatch, CaptureEvent, Persons};
use elide::store::crash_fs::{CrashFs, CrashFsHandle};
use elide::store::jsonl::rows_to_batch;
use elide::store::{DeleteSpec, Store, StoreOptions, Table};
use rand::{Rng, SeedableRng};

use crate::common::*;

/// One acknowledged operation of the workload.
#[derive(Debug, Clone)]
enum Op {
    /// Rows (uuid, project, distinct id) became durable.
    Rows { rows: Vec<(String, i64, String)> },
    /// Rows of (project, distinct id) acknowledged earlier were deleted.
    Delete { project: i64, did: String },
}

struct Log {
    /// (operation count when it returned, position in the workload, op)
    acked: Vec<(u64, usize, Op)>,
    /// Deletions started: (operation count when it started, position,
    /// project, distinct id). One that started before a cut but returned
    /// after it may or may not have hidden its rows in that image.
    started_deletes: Vec<(u64, usize, i64, String)>,
    /// Whole-input captures started (acknowledged or not): their rows.
    units: Vec<Vec<String>>,
}

fn opts(fs: Option<Arc<CrashFs>>) -> StoreOptions {
    let mut o = StoreOptions {
        background_flush: false,
        background_compaction: false,
        memtable_rows: 120,
        ..Default::default()
    };
    if let Some(fs) = fs {
        o.fs = Arc::new(CrashFsHandle(fs));
    }
    o
}

fn sqlite_files(p: &Path) -> bool {
    p.to_str()
        .is_some_and(|s| s.starts_with("metadata.sqlite3"))
}

fn capture_events(rng: &mut impl Rng, n: &mut u64) -> Vec<CaptureEvent> {
    (0..rng.random_range(1..6))
        .map(|_| {
            *n += 1;
            let did = format!("c{}", rng.random_range(0..8));
            let mut props = serde_json::Map::new();
            props.insert(
                "$set".into(),
                serde_json::json!({"email": format!("{did}@x.io")}),
            );
            let mut e = CaptureEvent::new("$pageview", did, props).unwrap();
            e.uuid = Some(uuid_of(1_000_000 + *n));
            e.timestamp_us = Some(T0);
            e
        })
        .collect()
}

/// Run the workload on `dir` through `fs`, planning cuts; returns the log.
fn workload(dir: &Path, fs: &Arc<CrashFs>, seed: u64) -> Log {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut log = Log {
        acked: Vec::new(),
        started_deletes: Vec::new(),
        units: Vec::new(),
    };
    let store = Store::open(dir, opts(Some(Arc::clone(fs)))).unwrap();
    let persons = Persons::open(store.clone()).unwrap();
    let mut n = 0u64;
    let mut pos = 0usize;
    let ack = |log: &mut Log, pos: &mut usize, op: Op| {
        *pos += 1;
        log.acked.push((fs.ops(), *pos, op));
    };
    // A bulk ingest first: parts written directly, one commit.
    let rows: Vec<_> = (0..300)
        .map(|_| {
            n += 1;
            row(
                n,
                &format!("d{}", n % 12),
                1 + (n % 2) as i64,
                (n % 3) as i64,
            )
        })
        .collect();
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    bulk.write(&rows_to_batch(&rows).unwrap()).unwrap();
    bulk.commit().unwrap();
    let acked: Vec<_> = rows
        .iter()
        .map(|r| (r.uuid.clone().unwrap(), r.project_id, r.distinct_id.clone()))
        .collect();
    ack(&mut log, &mut pos, Op::Rows { rows: acked });
    for _ in 0..70 {
        match rng.random_range(0..100) {
            0..=44 => {
                let rows: Vec<_> = (0..rng.random_range(1..25))
                    .map(|_| {
                        n += 1;
                        let d = rng.random_range(0..12);
                        row(
                            n,
                            &format!("d{d}"),
                            rng.random_range(1..3),
                            rng.random_range(0..3),
                        )
                    })
                    .collect();
                store
                    .append(Table::Events, &rows_to_batch(&rows).unwrap())
                    .unwrap();
                let acked = rows
                    .iter()
                    .map(|r| (r.uuid.clone().unwrap(), r.project_id, r.distinct_id.clone()))
                    .collect();
                ack(&mut log, &mut pos, Op::Rows { rows: acked });
            }
            45..=64 => {
                let project = rng.random_range(1..3);
                let did = format!("d{}", rng.random_range(0..12));
                log.started_deletes
                    .push((fs.ops(), pos + 1, project, did.clone()));
                store
                    .delete(DeleteSpec::ids(project, [did.clone()]))
                    .unwrap();
                ack(&mut log, &mut pos, Op::Delete { project, did });
            }
            65..=72 => {
                store.flush().unwrap();
            }
            73..=79 => {
                compact_now(&store);
            }
            80..=89 => {
                let evs = capture_events(&mut rng, &mut n);
                let uuids: Vec<String> = evs.iter().map(|e| e.uuid.clone().unwrap()).collect();
                log.units.push(uuids);
                let rows = evs
                    .iter()
                    .map(|e| (e.uuid.clone().unwrap(), 3, e.distinct_id.clone()))
                    .collect();
                let mut batches = std::iter::once(Ok(CaptureBatch {
                    events: evs,
                    lines: Vec::new(),
                }));
                persons.capture_all(3, &mut batches, &mut |_| {}).unwrap();
                ack(&mut log, &mut pos, Op::Rows { rows });
            }
            _ => {
                let evs = capture_events(&mut rng, &mut n);
                let rows = evs
                    .iter()
                    .map(|e| (e.uuid.clone().unwrap(), 3, e.distinct_id.clone()))
                    .collect();
                persons.capture(3, &evs).unwrap();
                ack(&mut log, &mut pos, Op::Rows { rows });
            }
        }
    }
    drop(persons);
    store.close().unwrap();
    log
}

/// Open an image and check it against what was acknowledged before `cut`.
/// `fs`: open it on a recording file system (to cut its recovery).
fn check_image(image: &Path, cut: u64, log: &Log, fs: Option<Arc<CrashFs>>) {
    let ctx_msg = format!("image {} (cut at op {cut})", image.display());
    let store = Store::open(image, opts(fs)).unwrap_or_else(|e| panic!("{ctx_msg}: {e}"));
    if image.join("metadata.sqlite3").exists() || store.metadata_id().unwrap().is_some() {
        // Settles two-phase captures; keep it open while checking.
        let p = Persons::open(store.clone()).unwrap_or_else(|e| panic!("{ctx_msg}: {e}"));
        drop(p);
    }
    store
        .flush()
        .unwrap_or_else(|e| panic!("{ctx_msg}: flush: {e}"));
    let rt = rt();
    let batches = sql(&rt, &ctx(&store), "SELECT uuid FROM events");
    let mut seen = BTreeSet::new();
    for b in &batches {
        let u = b.column(0).as_string_view();
        for i in 0..b.num_rows() {
            assert!(
                seen.insert(u.value(i).to_string()),
                "{ctx_msg}: duplicate row"
            );
        }
    }
    // Rows acknowledged before the cut, with the position that acked them.
    let mut rows: BTreeMap<String, (usize, i64, String)> = BTreeMap::new();
    let mut deletes: Vec<(usize, i64, String)> = Vec::new();
    for (at, pos, op) in &log.acked {
        if *at > cut {
            continue;
        }
        match op {
            Op::Rows { rows: r } => {
                for (u, p, d) in r {
                    rows.insert(u.clone(), (*pos, *p, d.clone()));
                }
            }
            Op::Delete { project, did } => deletes.push((*pos, *project, did.clone())),
        }
    }
    let hidden = |pos: usize, p: i64, d: &str| {
        deletes
            .iter()
            .any(|(dp, proj, did)| *dp > pos && *proj == p && did == d)
    };
    // A deletion in flight at the cut may have hidden its rows already.
    let maybe_hidden = |pos: usize, p: i64, d: &str| {
        log.started_deletes
            .iter()
            .any(|(at, dp, proj, did)| *at < cut && *dp > pos && *proj == p && did == d)
    };
    for (u, (pos, p, d)) in &rows {
        if maybe_hidden(*pos, *p, d) && !hidden(*pos, *p, d) {
            continue;
        }
        if hidden(*pos, *p, d) {
            assert!(
                !seen.contains(u),
                "{ctx_msg}: deleted row {u} ({p}, {d}) visible"
            );
        } else {
            if !seen.contains(u) {
                let acked_by = log
                    .acked
                    .iter()
                    .find(|(_, ps, _)| ps == pos)
                    .map(|(at, _, op)| format!("op at {at}: {op:?}"))
                    .unwrap_or_default();
                let shown: String = acked_by.chars().take(300).collect();
                if std::env::var("PL_DEBUG").is_ok() {
                    let st = Store::open_read_only(image, opts(None)).unwrap();
                    let m = st.manifest().unwrap();
                    eprintln!(
                        "manifest v{} next_seq {} flushed_seq {}",
                        m.version, m.next_seq, m.flushed_seq
                    );
                    for p in &m.parts {
                        eprintln!(
                            "  part {} {} seq {}..={} rows {}",
                            p.id, p.path, p.min_seq, p.max_seq, p.rows
                        );
                    }
                    for r in &m.requests {
                        eprintln!(
                            "  req {} {:?} {:?} cutoff {}",
                            r.id, r.distinct_ids, r.status, r.cutoff_seq
                        );
                    }
                    for e in std::fs::read_dir(image.join("wal")).unwrap() {
                        let e = e.unwrap();
                        let rd = elide::store::wal::read_segment(&e.path()).unwrap();
                        let ranges: Vec<_> = rd
                            .records
                            .iter()
                            .map(|r| (r.seq_start, r.batch.num_rows()))
                            .collect();
                        eprintln!(
                            "  wal {:?} len {} end {:?} {:?}",
                            e.file_name(),
                            rd.len,
                            rd.end,
                            ranges
                        );
                    }
                    for (at, ps, op) in &log.acked {
                        if *at > cut {
                            break;
                        }
                        let kind = match op {
                            Op::Rows { rows } => format!("rows {}", rows.len()),
                            Op::Delete { project, did } => format!("delete {project} {did}"),
                        };
                        eprintln!("  ack at {at} pos {ps}: {kind}");
                    }
                }
                panic!("{ctx_msg}: acknowledged row {u} ({p}, {d}) lost; acked by {shown}");
            }
        }
    }
    for unit in &log.units {
        let present = unit.iter().filter(|u| seen.contains(*u)).count();
        assert!(
            present == 0 || present == unit.len(),
            "{ctx_msg}: a whole-input capture is half there ({present} of {})",
            unit.len()
        );
    }
    // Every `.runs` file the manifest names survived the crash whole (it
    // is synced before the manifest names it) and equals its part's
    // columns.
    let damaged_runs: Vec<_> = store
        .scrub(&mut |_, _| {})
        .unwrap_or_else(|e| panic!("{ctx_msg}: scrub: {e}"))
        .findings
        .into_iter()
        .filter(|f| f.path.ends_with(".runs"))
        .collect();
    assert!(damaged_runs.is_empty(), "{ctx_msg}: {damaged_runs:?}");
    for p in store.manifest().unwrap().parts {
        for f in p.files() {
            assert!(image.join(&f).exists(), "{ctx_msg}: {f} is named but lost");
        }
    }
    store.close().unwrap();
}

#[test]
fn every_power_loss_image_reopens_with_every_acknowledged_row_and_deletion() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let fs = CrashFs::with_passthrough(&dir, sqlite_files).unwrap();
    // Unsynced pages may survive out of order, as on a real disk.
    fs.reorder_unsynced(77);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let images = root.path().join("images");
    // Cut points spread over the run (the run makes a few thousand
    // operations; cuts past its end are never taken).
    let mut at = 0u64;
    let mut planned = 0;
    while at < 6_000 {
        at += rng.random_range(3..40);
        fs.plan_cut(at, images.join(format!("{at:06}")));
        planned += 1;
    }
    let log = workload(&dir, &fs, 5);
    assert!(fs.errors().is_empty(), "{:?}", fs.errors());
    let taken = fs.images();
    assert!(
        taken.len() >= 30,
        "only {} of {planned} cuts were reached in {} operations",
        taken.len(),
        fs.ops()
    );
    let nested_root = root.path().join("nested");
    let mut nested_taken = 0;
    for (i, (cut, image)) in taken.iter().enumerate() {
        if i % 6 == 0 {
            // Reopen on a recording file system and cut its recovery (the
            // open, the flush of replayed rows, a compaction) at a few points.
            let copy = nested_root.join(format!("{cut:06}"));
            copy_tree(image, &copy);
            let nfs = CrashFs::with_passthrough(&copy, sqlite_files).unwrap();
            for k in [1u64, 3, 6, 10, 17, 28, 45] {
                nfs.plan_cut(k, nested_root.join(format!("{cut:06}-{k:03}")));
            }
            nfs.reorder_unsynced(*cut);
            check_image(&copy, *cut, &log, Some(Arc::clone(&nfs)));
            assert!(nfs.errors().is_empty(), "{:?}", nfs.errors());
            for (_, nested) in nfs.images() {
                check_image(&nested, *cut, &log, None);
                nested_taken += 1;
            }
        }
        check_image(image, *cut, &log, None);
    }
    assert!(
        nested_taken >= 10,
        "only {nested_taken} cuts during recovery were reached"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A project drop whose process stops after its commit, before the flush
/// that removes the project's buffered rows from the ingest log: replay
/// hides every one of them, also a row that a request of the project hid
/// when the drop began. The request leaves the manifest with the drop, so
/// only the drop's own replay cut-off can hide that row.
#[test]
fn a_project_drop_cut_before_its_last_flush_keeps_every_buffered_row_hidden() {
    use elide::store::failpoint::{set_hook, Hook};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let fs = CrashFs::with_passthrough(&dir, sqlite_files).unwrap();
    let store = Store::open(&dir, opts(Some(Arc::clone(&fs)))).unwrap();
    append(&store, &[row(1, "kept", 1, 0), row(2, "gone", 2, 0)]);
    store.flush().unwrap();
    // Between the drop's first flush and its commit: a row of project 2
    // is appended and deleted (a pending request hides it in memory).
    // Hooks are the process's: they act only on this test's thread (the
    // drop runs on it), not in another test's drop.
    let here = std::thread::current().id();
    let ours = move || std::thread::current().id() == here;
    let s = store.clone();
    let during: Hook = Arc::new(move || {
        if ours() {
            append(&s, &[row(3, "late", 2, 0), row(4, "later", 1, 0)]);
            s.delete(DeleteSpec::ids(2, ["late"])).unwrap();
        }
    });
    let image = root.path().join("image");
    let (f, at) = (Arc::clone(&fs), image.clone());
    let after: Hook = Arc::new(move || {
        if ours() {
            f.image(&at).unwrap();
        }
    });
    set_hook("drop::after_first_flush", Some(during));
    set_hook("drop::after_commit", Some(after));
    let dropped = store.drop_project(2);
    set_hook("drop::after_first_flush", None);
    set_hook("drop::after_commit", None);
    dropped.unwrap();
    drop(store);
    assert!(image.join("manifest").exists(), "the image was not taken");
    let reopened = Store::open(&image, opts(None)).unwrap();
    let rt = rt();
    let ctx = ctx(&reopened);
    let visible = strings(&sql(
        &rt,
        &ctx,
        "SELECT distinct_id FROM events ORDER BY distinct_id",
    ));
    assert_eq!(visible, ["kept", "later"]);
}
