//! The command line on malformed input: clear errors, nothing written.

use std::process::Command;

pub fn elide(args: &[&str]) -> (bool, String, String) {
    elide_env(args, &[])
}

/// Run `elide` with more environment variables: (success, stdout, stderr).
pub fn elide_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn malformed_inputs_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let good = r#"{"event":"$pageview","distinct_id":"u1","project_id":1,"timestamp":"2026-11-01T00:00:00Z"}"#;
    let jsonl = dir.path().join("bad.jsonl");
    std::fs::write(&jsonl, format!("{good}\n{good}\n{{\"event\":\"x\",\"distinct_id\":\"u2\",\"project_id\":1,\"timestamp\":\"soon\"}}\n")).unwrap();
    let (ok, _, err) = elide(&["ingest", "--data-dir", d, jsonl.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("line 3") && err.contains("timestamp"), "{err}");
    let parquet = dir.path().join("bad.parquet");
    std::fs::write(&parquet, b"PAR1 this is not really parquet").unwrap();
    let (ok, _, err) = elide(&["ingest", "--data-dir", d, parquet.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.parquet"), "{err}");
    // Nothing was written by either attempt.
    let (ok, out, err) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM events",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "n\n0");
    // A good file goes in; a bad SQL statement is a clear error.
    let good_file = dir.path().join("good.jsonl");
    std::fs::write(&good_file, format!("{good}\n")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, good_file.to_str().unwrap()]).0);
    let (ok, _, err) = elide(&["sql", "--data-dir", d, "SELEC 1"]);
    assert!(!ok && err.contains("error"), "{err}");
    // --repeat: the result once on stdout, each run and the median on
    // stderr; out of range is refused.
    let (ok, out, err) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "--repeat",
        "3",
        "SELECT count(*) AS n, min(distinct_id) AS d FROM events",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "n,d\n1,u1");
    for line in ["run 1: ", "run 2: ", "run 3: ", "median: "] {
        assert!(err.contains(line), "{err}");
    }
    assert!(!err.contains("run 4: "), "{err}");
    let (ok, out, err) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--repeat",
        "2",
        "--allow-writes",
        "SELECT 1",
    ]);
    assert!(
        !ok && out.is_empty() && err.contains("--allow-writes"),
        "{err}"
    );
    for bad in ["0", "1001", "x"] {
        let (ok, out, err) = elide(&["sql", "--data-dir", d, "--repeat", bad, "SELECT 1"]);
        assert!(
            !ok && out.is_empty() && err.contains("--repeat"),
            "{bad}: {err}"
        );
    }
    let (ok, out, _) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "u1",
        "--format",
        "json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows_hidden"], 1);
    let (ok, out, _) = elide(&["status", "--data-dir", d, "--format", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pending_requests"].as_array().unwrap().len(), 1);
}

#[test]
fn another_writer_is_locked_out_while_the_store_is_open_but_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let store = crate::common::open(dir.path());
    let delete = [
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "x",
    ];
    let (ok, _, err) = elide(&delete);
    assert!(!ok, "a second writer process must be refused");
    assert!(err.contains("LOCK") || err.contains("lock"), "{err}");
    // Commands that only read take no writer lock.
    for args in [
        vec!["status", "--data-dir", d],
        vec!["deletions", "--data-dir", d],
        vec!["sql", "--data-dir", d, "SELECT count(*) FROM events"],
        vec!["scrub", "--data-dir", d],
    ] {
        let (ok, out, err) = elide(&args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    store.close().unwrap();
    // Closing releases the directory at once, for this process and others.
    let again = crate::common::open(dir.path());
    drop(again);
    let (ok, out, err) = elide(&delete);
    assert!(ok, "{out}{err}");
}

#[test]
fn compact_deletions_and_drop_project_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let line = |did: &str, p: i64| {
        format!(
            r#"{{"event":"$pageview","distinct_id":"{did}","project_id":{p},"timestamp":"2026-11-01T00:00:00Z"}}"#
        )
    };
    let file = dir.path().join("in.jsonl");
    let body: Vec<String> = (0..10)
        .map(|i| line(if i % 2 == 0 { "gone" } else { "kept" }, 1 + i % 3))
        .collect();
    std::fs::write(&file, body.join("\n")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    let (ok, out, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "gone",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("status=pending"), "{out}");
    let (ok, out, _) = elide(&[
        "deletions",
        "--data-dir",
        d,
        "--status",
        "pending",
        "--format",
        "json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["status"], "pending");
    assert_eq!(v[0]["distinct_ids"][0], "gone");
    // Bad flags are clear errors.
    let (ok, _, err) = elide(&["deletions", "--data-dir", d, "--status", "done"]);
    assert!(!ok && err.contains("done"), "{err}");
    let (ok, out, err) = elide(&["compact", "--data-dir", d, "--now"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("purge") && out.contains("verified: [1]"),
        "{out}"
    );
    let (ok, out, _) = elide(&["deletions", "--data-dir", d, "--format", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["status"], "verified");
    assert!(v[0]["verified_at"].is_string() && v[0]["purged_at"].is_string());
    assert_eq!(v[0]["distinct_ids"].as_array().unwrap().len(), 0);
    assert_eq!(v[0]["distinct_id_hashes"].as_array().unwrap().len(), 1);
    assert!(
        !out.contains("gone"),
        "a verified request names the id: {out}"
    );
    let (ok, out, _) = elide(&["status", "--data-dir", d]);
    assert!(ok);
    assert!(
        out.contains("last compaction:") && out.contains("1 verified"),
        "{out}"
    );
    let (ok, out, err) = elide(&[
        "drop-project",
        "--data-dir",
        d,
        "--project",
        "2",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows_removed"], 3);
    let (ok, out, _) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM events",
    ]);
    assert!(ok);
    // 10 rows - 2 of "gone" in project 1 - 3 of project 2.
    assert_eq!(out.trim(), "n\n5");
}

/// `elide capture` and `elide persons`: the contract flags and output, and
/// malformed input (bad JSON line, both id lists, 1001 ids, unknown ids)
/// rejected with nothing changed.
#[test]
fn capture_and_persons_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("events.jsonl");
    let good = [
        r#"{"event":"$pageview","distinct_id":"anon-1","properties":{"$set":{"email":"ann@example.com"}},"timestamp":"2026-11-20T10:00:00Z"}"#,
        r#"{"batch":[{"event":"$identify","distinct_id":"user-1","properties":{"$anon_distinct_id":"anon-1"}},{"event":"$pageview","distinct_id":"bob","$set":{"email":"bob@example.com"}}]}"#,
    ];
    // A bad last line: nothing is captured, the line is named.
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n{{\"event\": \"x\", \"distinct_id\": \n",
            good[0], good[1]
        ),
    )
    .unwrap();
    let (ok, _, err) = elide(&[
        "capture",
        "--data-dir",
        d,
        "--project",
        "1",
        file.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("line 3")
            && err.contains("invalid JSON")
            && err.contains("nothing was captured"),
        "{err}"
    );
    let (ok, out, _) = elide(&["persons", "list", "--data-dir", d, "--project", "1"]);
    assert!(ok);
    assert_eq!(out.trim(), "(no persons)");

    std::fs::write(&file, format!("{}\n\n{}\n", good[0], good[1])).unwrap();
    let (ok, out, err) = elide(&[
        "capture",
        "--data-dir",
        d,
        "--project",
        "1",
        "--format",
        "json",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"], 3);
    assert_eq!(v["persons_created"], 2);
    let (ok, out, _) = elide(&[
        "persons",
        "list",
        "--data-dir",
        d,
        "--project",
        "1",
        "--email",
        "ann@example.com",
        "--format",
        "json",
    ]);
    assert!(ok);
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ann = &page["results"][0];
    assert_eq!(ann["distinct_ids"], serde_json::json!(["anon-1", "user-1"]));
    let uuid = ann["uuid"].as_str().unwrap().to_string();
    // A property filter without an operator is `exact`, as in the API.
    let (ok, out, err) = elide(&[
        "persons",
        "list",
        "--data-dir",
        d,
        "--project",
        "1",
        "--property",
        r#"{"key": "email", "value": "ann@example.com"}"#,
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["results"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(page["results"][0]["uuid"], uuid.as_str());
    let (ok, out, _) = elide(&["persons", "get", "--data-dir", d, "--project", "1", &uuid]);
    assert!(ok);
    assert!(out.contains("ann@example.com"));

    // Bad deletions change nothing.
    let many: Vec<String> = (0..1001)
        .flat_map(|i| ["--distinct-id".to_string(), format!("x{i}")])
        .collect();
    let mut args: Vec<&str> = vec!["persons", "delete", "--data-dir", d, "--project", "1"];
    args.extend(many.iter().map(String::as_str));
    let (ok, _, err) = elide(&args);
    assert!(!ok && err.contains("at most 1000"), "{err}");
    let (ok, _, err) = elide(&[
        "persons",
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--uuid",
        &uuid,
        "--distinct-id",
        "bob",
    ]);
    assert!(!ok && err.contains("not both"), "{err}");
    let (ok, out, _) = elide(&[
        "persons",
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "nobody",
    ]);
    assert!(!ok);
    assert!(out.contains("\"persons_found\": 0"), "{out}");
    let (ok, out, _) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM persons",
    ]);
    assert!(ok);
    assert_eq!(out.trim(), "n\n2");

    // The real deletion, with its contract output.
    let (ok, out, err) = elide(&[
        "persons",
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--uuid",
        &uuid,
        "--delete-events",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["persons_found"], 1);
    assert_eq!(r["persons_deleted"], 1);
    assert_eq!(r["events_queued_for_deletion"], true);
    assert_eq!(r["recordings_queued_for_deletion"], false);
    assert_eq!(r["deletion_errors"], serde_json::json!([]));
    let (ok, out, _) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM events e JOIN persons p ON e.person_id = p.uuid",
    ]);
    assert!(ok);
    assert_eq!(out.trim(), "n\n1");
    // Reset frees the blocked id; split needs a person with two ids.
    let (ok, out, _) = elide(&[
        "persons",
        "reset",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "user-1",
    ]);
    assert!(ok && out.contains("\"unblocked\": true"), "{out}");
    let (ok, _, err) = elide(&[
        "persons",
        "split",
        "--data-dir",
        d,
        "--project",
        "1",
        "1",
        "--main-distinct-id",
        "x",
    ]);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[test]
fn delete_by_person_id_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let p = "0b9f4c5e-6d1a-4f5e-9a51-8c7f1f0e2a11";
    let line = |did: &str, person: &str| {
        format!(
            r#"{{"event":"e","distinct_id":"{did}","person_id":{person},"project_id":1,"timestamp":"2026-11-01T00:00:00Z"}}"#
        )
    };
    let file = dir.path().join("in.jsonl");
    let rows = [
        line("anon", &format!("\"{p}\"")),
        line("ada", &format!("\"{p}\"")),
        line("ada", "null"),
        line("grace", "null"),
    ];
    std::fs::write(&file, rows.join("\n")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    let (ok, out, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--person-id",
        p,
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["distinct_ids"], serde_json::json!(["ada", "anon"]));
    assert_eq!(v["rows_hidden"], 3);
    assert_eq!(v["status"], "pending");
    let (_, out, _) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT distinct_id FROM events",
    ]);
    assert_eq!(out.trim(), "distinct_id\ngrace");
    // Both kinds of id at once, or a bad UUID: refused, nothing changed.
    let (ok, _, _) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--person-id",
        p,
        "--distinct-id",
        "grace",
    ]);
    assert!(!ok);
    let (ok, _, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--person-id",
        "nope",
    ]);
    assert!(!ok && err.contains("not a UUID"), "{err}");
    let (_, out, _) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM events",
    ]);
    assert_eq!(out.trim(), "n\n1");
}

#[test]
fn export_delta_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let rows: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"event":"e","distinct_id":"user-{}","project_id":1,"timestamp":"2026-11-0{}T00:00:00Z"}}"#,
                i % 4,
                1 + i % 3
            )
        })
        .collect();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, rows.join("\n")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    // A Delta table outside the data directory is refused, and nothing is written.
    let elsewhere = dir.path().join("delta");
    let (ok, _, err) = elide(&[
        "export",
        "delta",
        "--data-dir",
        d,
        "--out",
        elsewhere.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("not inside --data-dir"), "{err}");
    assert!(!elsewhere.exists());
    let (ok, out, err) = elide(&["export", "delta", "--data-dir", d, "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["created"].clone(),
            v["rows"].clone(),
            v["hidden_rows"].clone()
        ),
        (true.into(), 40.into(), 0.into())
    );
    assert!(dir.path().join("data/parts/events/_delta_log").is_dir());
    let (ok, _, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "user-0",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = elide(&["export", "delta", "--data-dir", d, "--format", "json"]);
    assert!(ok, "{err}");
    // The writer's open sweeps the directories: not a word about the
    // export's own files.
    assert!(!err.contains("did not write"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["committed"].clone(), v["hidden_rows"].clone()),
        (true.into(), 10.into())
    );
    let (ok, _, err) = elide(&["export", "delta", "--data-dir", d, "--retention-secs", "0"]);
    assert!(!ok && err.contains("retention"), "{err}");
}

/// `elide bench` end to end on a small store, so that the harness keeps
/// running as the engine changes (it once stopped at its first query: a
/// session copied from Elide's had no default catalog). Its own checks
/// hold: every query returns the rows a plain `ListingTable` of the same
/// files returns, and the full scan after the deletions is short by
/// exactly the rows they hid.
#[test]
fn bench_harness_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("bench");
    let (ok, out, err) = elide(&[
        "bench",
        "--data-dir",
        d.to_str().unwrap(),
        "--events",
        "3000",
        "--persons",
        "100",
        "--projects",
        "2",
        "--repeat",
        "1",
        "--delete-fraction",
        "0.05",
        "--no-compaction",
        "--json",
    ]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["events"], 3000);
    let hidden = report["rows_hidden_at_queries"].as_u64().unwrap();
    assert!(hidden > 0, "{report}");
    let queries = report["queries"].as_array().unwrap();
    assert!(queries.len() >= 3, "{report}");
    let full = queries
        .iter()
        .find(|q| q["name"] == "full_row_scan")
        .unwrap();
    assert_eq!(full["rows_before"], 3000);
    assert_eq!(full["rows_after"].as_u64().unwrap(), 3000 - hidden);
}

/// The other harnesses, each on a small store, for the same reason: they
/// run to the end and their own checks hold (`bench-http`: every
/// deletion's earlier events gone when the 202 returns; `bench-analytics`:
/// `window_funnel` agrees with the same funnel in window functions;
/// `bench-embed` and `bench-erasure`: the purge verified). `bench-http`
/// refuses more deletions than its persons allow (it once deleted persons
/// twice and waited for their person-less events in vain).
#[test]
fn bench_harnesses_run_on_small_stores() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| -> String {
        let (ok, out, err) = elide(args);
        assert!(ok, "{args:?}: {err}");
        out
    };

    let (ok, _, err) = elide(&[
        "bench-http",
        "--data-dir",
        &at("refused"),
        "--persons",
        "250",
        "--deletes",
        "3",
    ]);
    assert!(
        !ok && err.contains("--persons (250) must be at least 100 x --deletes (3)"),
        "{err}"
    );
    assert!(
        !dir.path().join("refused").exists(),
        "a refused run writes nothing"
    );

    let http: serde_json::Value = serde_json::from_str(&run(&[
        "bench-http",
        "--data-dir",
        &at("http"),
        "--clients",
        "2",
        "--seconds",
        "1",
        "--persons",
        "300",
        "--deletes",
        "3",
        "--json",
    ]))
    .unwrap();
    assert_eq!(http["bulk_deletes"], 3, "{http}");
    assert_eq!(http["deletes_visible_after_202"], 0, "{http}");

    let persons: serde_json::Value = serde_json::from_str(&run(&[
        "bench-persons",
        "--data-dir",
        &at("persons"),
        "--events",
        "3000",
        "--persons",
        "200",
        "--bulk",
        "50",
        "--merges",
        "500",
        "--json",
    ]))
    .unwrap();
    assert_eq!(persons["mix"]["events"], 3000, "{persons}");
    // Each device's person is merged into the known person it identifies as.
    assert_eq!(persons["merges"]["events"], 1000, "{persons}");
    assert_eq!(persons["merges"]["stats"]["merges"], 500, "{persons}");

    let funnels = run(&[
        "bench-analytics",
        "--data-dir",
        &at("analytics"),
        "--events",
        "3000",
        "--persons",
        "200",
        "--projects",
        "2",
        "--json",
    ]);
    let funnels: serde_json::Value = serde_json::from_str(funnels.lines().last().unwrap()).unwrap();
    assert_eq!(funnels["window_functions_agree"], true, "{funnels}");

    let embed = run(&[
        "bench-embed",
        "--data-dir",
        &at("embed"),
        "--events",
        "3000",
    ]);
    assert!(embed.contains(" 0 failures"), "{embed}");
    let erasure = run(&[
        "bench-erasure",
        "--data-dir",
        &at("erasure"),
        "--events",
        "3000",
        "--persons",
        "200",
        "--projects",
        "2",
    ]);
    assert!(erasure.contains("verified"), "{erasure}");
}

/// `deletions --format csv` quotes an id with a comma or a quote (RFC
/// 4180): the row keeps its columns.
#[test]
fn deletions_as_csv_quote_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    crate::common::open(dir.path()).close().unwrap();
    let (ok, _, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "a,\"b",
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = elide(&["deletions", "--data-dir", d, "--format", "csv"]);
    assert!(ok);
    let mut lines = out.lines();
    let header = lines.next().expect("header");
    let row = lines.next().expect("the request's row");
    assert!(row.contains(r#""a,""b""#), "{out}");
    let columns = |l: &str| {
        let (mut n, mut quoted) = (1, false);
        for c in l.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => n += 1,
                _ => {}
            }
        }
        n
    };
    assert_eq!(columns(row), columns(header), "{out}");
}
