//! `elide events delete` (and --dry-run), `elide deletions --since`,
//! `elide projects update`: the contract of issue 12's command line.

use crate::cli::elide;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn delete_events_by_predicate_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let mut lines = String::new();
    for n in 0..40 {
        let event = if n % 4 == 0 { "click" } else { "$pageview" };
        let browser = if n % 2 == 0 { "Chrome" } else { "Safari" };
        lines.push_str(&format!(
            "{{\"event\":\"{event}\",\"distinct_id\":\"u{}\",\"project_id\":1,\"timestamp\":\"2026-11-{:02}T10:00:00Z\",\"properties\":{{\"$browser\":\"{browser}\"}}}}\n",
            n % 5,
            1 + n % 10
        ));
    }
    let file = dir.path().join("ev.jsonl");
    std::fs::write(&file, lines).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    let count = |q: &str| -> i64 {
        let (ok, out, err) = elide(&["sql", "--data-dir", d, "--format", "json", q]);
        assert!(ok, "{err}");
        json(&out)[0]["n"].as_i64().unwrap()
    };
    let clicks_chrome_before_6th =
        "SELECT count(*) AS n FROM events WHERE event = 'click' AND timestamp < '2026-11-06'";
    let want = count(clicks_chrome_before_6th);
    assert!(want > 0);
    let pred = [
        "--project",
        "1",
        "--event",
        "click",
        "--property",
        r#"{"key": "$browser", "value": "Chrome", "operator": "exact"}"#,
        "--before",
        "2026-11-06",
    ];
    // The dry run counts and changes nothing.
    let mut args = vec!["events", "delete", "--data-dir", d];
    args.extend(pred);
    args.extend(["--dry-run", "--format", "json"]);
    let (ok, out, err) = elide(&args);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["rows"], want, "{v}");
    assert_eq!(v["by_table"]["events"]["rows"], want);
    assert!(v["parts"].as_u64().unwrap() >= 1);
    assert_eq!(count(clicks_chrome_before_6th), want);
    // The deletion.
    let mut args = vec!["events", "delete", "--data-dir", d];
    args.extend(pred);
    args.extend(["--format", "json"]);
    let (ok, out, err) = elide(&args);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["rows_hidden"], want);
    assert!(v["purge_due_by"].as_str().unwrap().ends_with('Z'));
    let request = v["request_id"].as_u64().unwrap();
    assert_eq!(count(clicks_chrome_before_6th), 0);
    assert_eq!(count("SELECT count(*) AS n FROM events"), 40 - want);
    // The feed: from 0 it lists the request, with the contract's fields.
    let (ok, out, _) = elide(&[
        "deletions",
        "--data-dir",
        d,
        "--since",
        "0",
        "--format",
        "json",
    ]);
    assert!(ok);
    let rows = json(&out);
    let r = &rows.as_array().unwrap()[0];
    assert_eq!(r["id"], request);
    assert_eq!(r["kind"], "events");
    assert_eq!(r["state"], "pending");
    for f in [
        "hidden_at",
        "purge_due_by",
        "purged_at",
        "verified_at",
        "cursor",
    ] {
        assert!(r.get(f).is_some(), "{f} missing from {r}");
    }
    let cursor = r["cursor"].as_u64().unwrap().to_string();
    let (_, out, _) = elide(&[
        "deletions",
        "--data-dir",
        d,
        "--since",
        &cursor,
        "--format",
        "json",
    ]);
    assert_eq!(
        json(&out),
        serde_json::json!([]),
        "nothing after the cursor"
    );
    assert!(elide(&["compact", "--data-dir", d, "--now"]).0);
    let (_, out, _) = elide(&[
        "deletions",
        "--data-dir",
        d,
        "--since",
        &cursor,
        "--format",
        "json",
    ]);
    let rows = json(&out);
    assert_eq!(rows[0]["state"], "verified", "{rows}");
    assert!(rows[0]["verified_at"].is_string());

    // Bad input: a clear error, nothing changed.
    let version = |d: &str| {
        let (_, out, _) = elide(&["status", "--data-dir", d, "--format", "json"]);
        json(&out)["version"].as_u64().unwrap()
    };
    let before = version(d);
    for (args, needle) in [
        (vec!["--project", "1"], "at least one condition"),
        (
            vec![
                "--project",
                "1",
                "--after",
                "2026-11-05",
                "--before",
                "2026-11-01",
            ],
            "inverted",
        ),
        (
            vec![
                "--project",
                "1",
                "--property",
                r#"{"key": "a", "operator": "regex", "value": 1}"#,
            ],
            "operator",
        ),
        (vec!["--project", "1", "--before", "soon"], "ISO-8601"),
        (
            vec!["--project", "1", "--event", "x", "--table", "recordings"],
            "recordings",
        ),
        (
            vec!["--project", "1", "--event", "x", "--table", "logs"],
            "unknown table",
        ),
    ] {
        let mut a = vec!["events", "delete", "--data-dir", d];
        a.extend(args.iter().copied());
        let (ok, _, err) = elide(&a);
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(version(d), before);
}

#[test]
fn a_projects_erasure_deadline_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, out, err) = elide(&[
        "projects",
        "create",
        "--data-dir",
        d,
        "--name",
        "web",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let id = json(&out)["id"].as_i64().unwrap().to_string();
    let (ok, out, err) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        &id,
        "--erasure-deadline-days",
        "3",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["erasure_deadline_days"], 3);
    let (ok, out, err) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        &id,
        "--retention-days",
        "30",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["retention_days"], 30);
    assert_eq!(v["erasure_deadline_days"], 3, "the other setting is kept");
    let (ok, out, _) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        &id,
        "--retention-days",
        "0",
        "--format",
        "json",
    ]);
    assert!(ok);
    assert_eq!(
        json(&out)["retention_days"],
        serde_json::Value::Null,
        "0: kept forever"
    );
    // Retention per event name: set, shown, removed with 0; refused
    // without a name or a number.
    let (ok, out, err) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        &id,
        "--event-retention-days",
        "$autocapture=30",
        "--event-retention-days",
        "$pageview=90",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        json(&out)["event_retention_days"],
        serde_json::json!({"$autocapture": 30, "$pageview": 90})
    );
    let (ok, out, err) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        &id,
        "--event-retention-days",
        "$pageview=0",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        json(&out)["event_retention_days"],
        serde_json::json!({"$autocapture": 30})
    );
    for bad in ["$x", "=3", "$x=soon"] {
        let (ok, _, err) = elide(&[
            "projects",
            "update",
            "--data-dir",
            d,
            "--project",
            &id,
            "--event-retention-days",
            bad,
        ]);
        assert!(!ok && err.contains("event-retention-days"), "{bad}: {err}");
    }
    // `elide compact` sweeps retention first (nothing to expire here).
    let (ok, _, err) = elide(&["compact", "--data-dir", d, "--now"]);
    assert!(ok, "{err}");
    // Refused: zero days, an unknown project.
    let (ok, _, err) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        &id,
        "--erasure-deadline-days",
        "0",
    ]);
    assert!(!ok && err.contains("erasure-deadline-days"), "{err}");
    let (ok, _, err) = elide(&[
        "projects",
        "update",
        "--data-dir",
        d,
        "--project",
        "99",
        "--erasure-deadline-days",
        "3",
    ]);
    assert!(!ok, "{err}");
}

#[test]
fn export_a_person_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let events = dir.path().join("capture.jsonl");
    std::fs::write(
        &events,
        [
            r#"{"event": "$pageview", "distinct_id": "anon-7", "timestamp": "2026-11-01T10:00:00Z"}"#,
            r#"{"event": "$identify", "distinct_id": "ada", "timestamp": "2026-11-01T10:01:00Z", "properties": {"$anon_distinct_id": "anon-7", "$set": {"email": "ada@example.com"}}}"#,
            r#"{"event": "buy", "distinct_id": "ada", "timestamp": "2026-11-01T10:02:00Z"}"#,
            r#"{"event": "other", "distinct_id": "bob", "timestamp": "2026-11-01T10:03:00Z"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let (ok, _, err) = elide(&[
        "capture",
        "--data-dir",
        d,
        "--project",
        "1",
        events.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = elide(&["persons", "get", "--data-dir", d, "--project", "1", "1"]);
    assert!(ok, "{err}");
    let uuid = json(&out)["uuid"].as_str().unwrap().to_string();
    let (ok, out, err) = elide(&[
        "persons",
        "export",
        "--data-dir",
        d,
        "--project",
        "1",
        &uuid,
        "--dry-run",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["by_table"]["events"], 3);
    let (ok, out, err) = elide(&[
        "persons",
        "export",
        "--data-dir",
        d,
        "--project",
        "1",
        &uuid,
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert_eq!(lines[0]["type"], "person");
    assert_eq!(lines.iter().filter(|l| l["type"] == "event").count(), 3);
    assert!(!out.contains("bob"));
    let file = dir.path().join("ada.parquet");
    let (ok, _, err) = elide(&[
        "persons",
        "export",
        "--data-dir",
        d,
        "--project",
        "1",
        &uuid,
        "--format",
        "parquet",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let f = std::fs::File::open(&file).unwrap();
    let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 3);
    assert!(!dir.path().join("ada.partial").exists());
    let (ok, _, err) = elide(&[
        "persons",
        "export",
        "--data-dir",
        d,
        "--project",
        "1",
        "nobody-uuid",
    ]);
    assert!(!ok && !err.is_empty());
}

#[test]
fn an_undo_window_and_a_cancel_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let mut lines = String::new();
    for n in 0..20 {
        let event = if n % 4 == 0 { "click" } else { "$pageview" };
        lines.push_str(&format!(
            "{{\"event\":\"{event}\",\"distinct_id\":\"u{n}\",\"project_id\":1,\"timestamp\":\"2026-11-02T10:00:00Z\"}}\n"
        ));
    }
    let file = dir.path().join("ev.jsonl");
    std::fs::write(&file, lines).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    let clicks = || -> i64 {
        let q = "SELECT count(*) AS n FROM events WHERE event = 'click'";
        let (ok, out, err) = elide(&["sql", "--data-dir", d, "--format", "json", q]);
        assert!(ok, "{err}");
        json(&out)[0]["n"].as_i64().unwrap()
    };
    assert_eq!(clicks(), 5);
    let base = [
        "events",
        "delete",
        "--data-dir",
        d,
        "--project",
        "1",
        "--event",
        "click",
    ];
    for bad in ["0", "-1", "soon", "200"] {
        let mut args = base.to_vec();
        args.extend(["--undo-window-hours", bad]);
        let (ok, _, err) = elide(&args);
        assert!(!ok, "--undo-window-hours {bad} accepted");
        assert!(err.contains("hours") || err.contains("deadline"), "{err}");
    }
    assert_eq!(clicks(), 5, "refused windows change nothing");
    let mut args = base.to_vec();
    args.extend(["--undo-window-hours", "1.5", "--format", "json"]);
    let (ok, out, err) = elide(&args);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["rows_hidden"], 5, "{v}");
    assert!(v["undo_until"].as_str().unwrap().ends_with('Z'), "{v}");
    let id = v["request_id"].as_u64().unwrap().to_string();
    assert_eq!(clicks(), 0);
    let (ok, out, _) = elide(&["deletions", "--data-dir", d, "--format", "json"]);
    assert!(ok);
    let listed = json(&out);
    assert_eq!(listed[0]["logical"], true, "{listed}");
    assert!(listed[0]["undo_until"].is_string());
    let (ok, out, err) = elide(&["cancel", "--data-dir", d, "--request", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("5 row(s) visible again"), "{out}");
    assert_eq!(clicks(), 5);
    let (ok, out, _) = elide(&[
        "deletions",
        "--data-dir",
        d,
        "--status",
        "cancelled",
        "--format",
        "json",
    ]);
    assert!(ok);
    assert_eq!(json(&out)[0]["state"], "cancelled");
    let (ok, _, err) = elide(&["cancel", "--data-dir", d, "--request", &id]);
    assert!(!ok && err.contains("already cancelled"), "{err}");
    let (ok, _, err) = elide(&["cancel", "--data-dir", d, "--request", "42"]);
    assert!(!ok && err.contains("no deletion request 42"), "{err}");
}
