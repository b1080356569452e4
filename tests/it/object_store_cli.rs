//! Every command on a data directory on an object store (`--data-dir
//! s3://bucket/prefix`, configured from the environment as object_store's
//! `AmazonS3Builder::from_env` reads it), against an S3 server (s3s-fs on
//! 127.0.0.1): ingest, query, delete, compact (purge and verify), the
//! lifecycle, and the refusals.

use std::collections::BTreeSet;
use std::path::PathBuf;

use elide_store::s3_server::S3Server;

struct Cli {
    env: Vec<(&'static str, String)>,
    local: String,
}

impl Cli {
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut args = args.to_vec();
        args.extend(["--local-dir", &self.local]);
        let mut all: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(env);
        crate::cli::elide_env(&args, &all)
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_env(args, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "{args:?}: {err}");
        out
    }
}

const URL: &str = "s3://bucket/events-store";

#[test]
fn every_command_works_on_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"), "bucket").unwrap();
    let local = dir.path().join("local");
    let cli = Cli {
        env: s3.env(),
        local: local.to_str().unwrap().to_string(),
    };
    let mut lines = String::new();
    for (i, id) in ["alice", "bob", "carol"].iter().enumerate() {
        for d in 1..=3 {
            lines.push_str(&format!(
                "{{\"event\":\"$pageview\",\"distinct_id\":\"{id}\",\"project_id\":1,\"timestamp\":\"2026-11-0{d}T00:00:0{i}Z\",\"properties\":{{\"email\":\"{id}@example.com\"}}}}\n"
            ));
        }
    }
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines).unwrap();
    cli.ok(&["ingest", "--data-dir", URL, input.to_str().unwrap()]);
    let count = |sql: &str| -> String {
        cli.ok(&["sql", "--data-dir", URL, "--format", "csv", sql])
            .trim()
            .to_string()
    };
    assert_eq!(count("SELECT count(*) AS n FROM events"), "n\n9");
    cli.ok(&[
        "delete",
        "--data-dir",
        URL,
        "--project",
        "1",
        "--distinct-id",
        "bob",
    ]);
    assert_eq!(count("SELECT count(*) AS n FROM events"), "n\n6");
    assert_eq!(
        count("SELECT count(*) AS n FROM events WHERE distinct_id = 'bob'"),
        "n\n0"
    );
    let status = cli.ok(&["status", "--data-dir", URL, "--format", "json"]);
    assert!(
        status.contains("\"project_id\":1") || status.contains("project"),
        "{status}"
    );
    // Every part holds bob's rows: the purge rewrites them all.
    let objects = s3.root().join("bucket").join("events-store");
    let parts = || -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut stack = vec![objects.join("parts")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    out.insert(p);
                }
            }
        }
        out
    };
    let before = parts();
    assert!(!before.is_empty());
    // Within the retention window the old parts stay (a reader elsewhere
    // may read them) and the request waits for their removal.
    cli.ok(&["compact", "--data-dir", URL]);
    assert!(parts().is_superset(&before), "removed within the window");
    let deletions = cli.ok(&["deletions", "--data-dir", URL, "--format", "json"]);
    assert!(deletions.contains("\"pending\""), "{deletions}");
    // Once the window is over (0 s here), the next run removes them and
    // the request is purged and verified.
    let (ok, _, err) = cli.run_env(
        &["compact", "--data-dir", URL],
        &[("ELIDE_OBJECT_RETENTION_SECS", "0")],
    );
    assert!(ok, "{err}");
    let after = parts();
    assert!(
        before.is_disjoint(&after),
        "old parts left: {before:?} / {after:?}"
    );
    let deletions = cli.ok(&["deletions", "--data-dir", URL, "--format", "json"]);
    assert!(deletions.contains("\"verified\""), "{deletions}");
    // Its receipt was signed with a key of the local directory; only the
    // public half is in the bucket.
    assert!(local.join("receipt-signing.key").is_file());
    assert!(!objects.join("receipts").join("signing.key").exists());
    assert!(objects.join("receipts").join("public.key").is_file());
    assert_eq!(count("SELECT count(*) AS n FROM events"), "n\n6");
    // The objects are in the bucket under the prefix; nothing of them is local.
    assert!(objects.join("manifest").is_dir(), "manifests are objects");
    assert!(!local.join("manifest").exists() && !local.join("parts").exists());
    assert_eq!(
        std::fs::read_to_string(local.join("OBJECT_STORE"))
            .unwrap()
            .trim(),
        URL
    );

    let doctor = cli.ok(&["doctor", "--data-dir", URL, "--format", "csv"]);
    assert!(doctor.contains("put-if-absent,ok"), "{doctor}");
    assert!(doctor.contains("versioning,ok"), "{doctor}");

    // Refusals, each changing nothing.
    let (ok, _, err) = cli.run(&["sql", "--data-dir", "s3://bucket/other-store", "SELECT 1"]);
    assert!(
        !ok && err.contains("belongs to"),
        "another URL on this local dir: {err}"
    );
    let (ok, _, err) = cli.run_env(
        &["compact", "--data-dir", URL],
        &[("ELIDE_OBJECT_RETENTION_SECS", "soon")],
    );
    assert!(
        !ok && err.contains("ELIDE_OBJECT_RETENTION_SECS"),
        "a malformed retention is refused, not ignored: {err}"
    );
    let (ok, _, err) = cli.run(&["scrub", "--data-dir", URL]);
    assert!(!ok && err.contains("object store"), "{err}");
    let (ok, _, err) = cli.run(&["sql", "--data-dir", "gs://bucket/x", "SELECT 1"]);
    assert!(!ok && err.contains("not supported"), "{err}");
    let fresh = Cli {
        env: s3.env(),
        local: dir.path().join("fresh").to_str().unwrap().to_string(),
    };
    let (ok, _, err) = fresh.run(&["sql", "--data-dir", "s3://bucket/nothing-here", "SELECT 1"]);
    assert!(!ok && err.contains("no Elide store"), "{err}");
    let (ok, _, err) = fresh.run(&["sql", "--data-dir", "s3://no-such-bucket/x", "SELECT 1"]);
    assert!(!ok, "a missing bucket is an error: {err}");
    assert!(
        !dir.path().join("fresh").exists(),
        "a refused open leaves no local directory behind"
    );
    assert_eq!(count("SELECT count(*) AS n FROM events"), "n\n6");
}
