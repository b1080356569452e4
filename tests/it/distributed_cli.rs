//! `elide worker` and `elide sql --workers` as processes: two workers on
//! 127.0.0.1 over the data directory a writer keeps changing; the
//! distributed statement answers what the single-node one does, and never
//! shows a deleted person.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::elide;

/// A running `elide worker` and its URL.
struct Worker {
    child: Child,
    url: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker(dir: &str) -> Worker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(["worker", "--listen", "127.0.0.1:0", "--data-dir", dir])
        .env("ELIDE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn elide worker");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .expect("the worker printed its address")
        .expect("stdout");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Worker { child, url }
}

fn sql(d: &str, workers: Option<&str>, statement: &str) -> String {
    let mut args = vec!["sql", "--data-dir", d, "--format", "csv"];
    if let Some(w) = workers {
        // A task per byte: this small table spreads over both workers.
        args.extend(["--workers", w, "--bytes-per-task", "1"]);
    }
    args.push(statement);
    let (ok, out, err) = elide(&args);
    assert!(ok, "{statement}: {err}");
    out
}

#[test]
fn a_statement_on_two_workers_answers_what_one_node_does_without_deleted_persons() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("events.parquet");
    let f = file.to_str().unwrap();
    let (ok, _, err) = elide(&["gen", "--events", "20000", "--persons", "200", "--out", f]);
    assert!(ok, "{err}");
    let (ok, _, err) = elide(&["ingest", "--data-dir", d, f]);
    assert!(ok, "{err}");
    let victim = sql(
        d,
        None,
        "SELECT project_id, distinct_id FROM events ORDER BY project_id, distinct_id LIMIT 1",
    );
    let (project, id) = victim
        .lines()
        .nth(1)
        .and_then(|l| l.split_once(','))
        .map(|(p, i)| (p.to_string(), i.to_string()))
        .expect("a row");

    let workers = [start_worker(d), start_worker(d)];
    let urls = format!("{},{}", workers[0].url, workers[1].url);
    // Deleted after the workers opened the store: they read the newer
    // version's tombstones from the directory.
    let (ok, _, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        &project,
        "--distinct-id",
        &id,
    ]);
    assert!(ok, "{err}");
    let of_victim = format!("SELECT count(*) AS n FROM events WHERE distinct_id = '{id}'");
    assert_eq!(sql(d, Some(&urls), &of_victim), "n\n0\n");
    let t = Instant::now();
    for statement in [
        "SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY event",
        "SELECT project_id, count(DISTINCT person_id) AS persons FROM events GROUP BY project_id ORDER BY project_id",
        "SELECT count(*) AS n FROM events WHERE timestamp IS NOT NULL",
    ] {
        assert_eq!(sql(d, Some(&urls), statement), sql(d, None, statement), "{statement}");
    }
    assert!(t.elapsed() < Duration::from_secs(600));

    // A worker that is not there fails the statement.
    let (ok, _, err) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--workers",
        "http://127.0.0.1:9,http://127.0.0.1:9",
        "--bytes-per-task",
        "1",
        "SELECT event, count(*) FROM events GROUP BY event",
    ]);
    assert!(!ok && !err.is_empty());
}
