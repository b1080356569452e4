//! Crash tests: a child process appends and deletes; we SIGKILL it at
//! random moments, reopen, and check every acknowledged operation.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::AsArray;
use rand::{Rng, SeedableRng};

use crate::common::*;

type Acked = BTreeMap<String, (i64, String)>;
type Deletes = Vec<(i64, String, u64)>;

/// Run `elide crash-worker` with `extra` arguments, SIGKILL it after
/// `sleep`, and record what it acknowledged.
fn run_worker(
    dir: &std::path::Path,
    seed: u64,
    extra: &[&str],
    sleep: Duration,
    acked: &mut Acked,
    deletes: &mut Deletes,
) {
    run_worker_env(dir, seed, extra, &[], sleep, acked, deletes);
}

/// [`run_worker`] with more environment variables (an S3 server's).
fn run_worker_env(
    dir: &std::path::Path,
    seed: u64,
    extra: &[&str],
    env: &[(&str, String)],
    sleep: Duration,
    acked: &mut Acked,
    deletes: &mut Deletes,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(["crash-worker", "--data-dir"])
        .arg(dir)
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained on a thread (a full pipe would block the worker).
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    std::thread::sleep(sleep);
    // `Child::kill` is SIGKILL on Unix. The worker loops forever, so it
    // must still be running: an early exit would be a worker failure.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(9),
        "seed {seed}: worker exited on its own: {status}: {stderr}"
    );
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let complete = if out.ends_with('\n') {
        out.as_str()
    } else {
        out.rsplit_once('\n').map_or("", |(a, _)| a)
    };
    for line in complete.lines() {
        let mut it = line.splitn(2, ' ');
        match (it.next(), it.next()) {
            (Some("A"), Some(ids)) => {
                for r in ids.split(',') {
                    let f: Vec<&str> = r.split('|').collect();
                    acked.insert(f[0].to_string(), (f[1].parse().unwrap(), f[2].to_string()));
                }
            }
            (Some("D"), Some(rest)) => {
                let f: Vec<&str> = rest.split(' ').collect();
                deletes.push((
                    f[0].parse().unwrap(),
                    f[1].to_string(),
                    f[2].parse().unwrap(),
                ));
            }
            _ => {}
        }
    }
}

/// Reopen and check every acknowledged operation.
fn check(dir: &std::path::Path, what: &str, acked: &Acked, deletes: &Deletes) {
    check_store(open(dir), what, acked, deletes);
}

fn check_store(store: elide::store::Store, what: &str, acked: &Acked, deletes: &Deletes) {
    let rt = rt();
    let ctx = ctx(&store);
    let b = sql(
        &rt,
        &ctx,
        "SELECT uuid, project_id, distinct_id, _seq FROM events",
    );
    let mut seen: BTreeMap<String, (i64, String, u64)> = BTreeMap::new();
    for b in &b {
        let u = b.column(0).as_string_view();
        let p = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        let d = b.column(2).as_string_view();
        let s = b.column(3).as_primitive::<arrow::datatypes::UInt64Type>();
        for i in 0..b.num_rows() {
            let prev = seen.insert(
                u.value(i).to_string(),
                (p.value(i), d.value(i).to_string(), s.value(i)),
            );
            assert!(prev.is_none(), "{what}: row {} visible twice", u.value(i));
        }
    }
    for (p, d, cutoff) in deletes {
        for (u, (rp, rd, rs)) in &seen {
            assert!(
                !(rp == p && rd == d && rs < cutoff),
                "{what}: deleted row {u} ({d}, _seq {rs} < {cutoff}) visible"
            );
        }
    }
    // Every acknowledged row that is not visible must be covered by a
    // recorded deletion of its (project, distinct id).
    let requests = store.requests().unwrap();
    for (u, (p, d)) in acked.iter().filter(|(u, _)| !seen.contains_key(*u)) {
        assert!(
            requests
                .iter()
                .any(|r| r.project_id == *p && r.distinct_ids.contains(d)),
            "{what}: acknowledged row {u} ({p}, {d}) lost"
        );
    }
    let _ = store.status().unwrap();
    store.close().unwrap();
}

#[test]
fn acknowledged_appends_and_deletes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1234);
    let mut acked = Acked::new();
    let mut deletes = Deletes::new();
    for round in 0..12u64 {
        let sleep = Duration::from_millis(rng.random_range(150..900));
        run_worker(dir.path(), round + 1, &[], sleep, &mut acked, &mut deletes);
        check(dir.path(), &format!("round {round}"), &acked, &deletes);
    }
    assert!(
        acked.len() > 100,
        "the worker made progress ({} acked rows)",
        acked.len()
    );
}

/// The same on an object store (an S3 server, s3s-fs, in this process):
/// the worker's parts, tombstones and manifests are objects, its log is
/// in the local directory, and a kill can land inside any request. The
/// next process, on the same host and local directory, takes over the
/// dead writer's lease at once.
#[test]
fn acknowledged_appends_and_deletes_survive_sigkill_on_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = elide_store::s3_server::S3Server::start(&dir.path().join("s3"), "crash").unwrap();
    let local = dir.path().join("local");
    let local_arg = local.to_str().unwrap();
    let env = s3.env();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(777);
    let mut acked = Acked::new();
    let mut deletes = Deletes::new();
    for round in 0..8u64 {
        let sleep = Duration::from_millis(rng.random_range(300..1200));
        run_worker_env(
            std::path::Path::new("s3://crash"),
            round + 1,
            &["--local-dir", local_arg],
            &env,
            sleep,
            &mut acked,
            &mut deletes,
        );
        let store = elide::store::Store::open(
            &local,
            elide::store::StoreOptions {
                object_store: Some(s3.store("crash").unwrap()),
                ..elide::store::StoreOptions::foreground()
            },
        )
        .unwrap();
        check_store(store, &format!("round {round}"), &acked, &deletes);
    }
    assert!(
        acked.len() > 50,
        "the worker made progress ({} acked rows)",
        acked.len()
    );
    assert!(
        s3.root().join("crash").join("manifest").is_dir(),
        "the worker committed to the object store"
    );
}

/// Recovery itself is killed, again and again: the process that opens a
/// store whose log ends in a torn record (cutting the tail, starting a new
/// segment, flushing the replayed rows, removing the old segment) dies at
/// random points, several times in a row, with appending rounds (new torn
/// tails) in between. The store always reopens with every row.
#[test]
fn killing_the_recovering_process_again_and_again_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4321);
    let mut acked = Acked::new();
    let mut deletes = Deletes::new();
    for round in 0..4u64 {
        let sleep = Duration::from_millis(rng.random_range(300..800));
        run_worker(
            dir.path(),
            100 + round,
            &[],
            sleep,
            &mut acked,
            &mut deletes,
        );
        for k in 0..6u64 {
            // 0 ms kills before the open ends; later ones during the flush.
            let sleep = Duration::from_millis(rng.random_range(0..120));
            run_worker(
                dir.path(),
                200 + round * 10 + k,
                &["--recover-only"],
                sleep,
                &mut acked,
                &mut deletes,
            );
        }
        check(dir.path(), &format!("round {round}"), &acked, &deletes);
    }
    assert!(
        acked.len() > 50,
        "the worker made progress ({} acked rows)",
        acked.len()
    );
}
