//! Regression tests of the crash-and-corruption hardening (one per
//! failure found by a hostile run; each reproduces its sequence): failed
//! commands leave nothing, a lost metadata database is refused, parts are
//! checksummed, big integer ids stay distinct, pipes work, SQL is
//! read-only, and bad flags get clear errors.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use elide::persons::Persons;
use elide::store::{Store, StoreOptions};

use crate::cli::{elide, elide_env};
use crate::common::*;

fn elide_stdin(args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub(crate) fn count_sql(d: &str, q: &str) -> i64 {
    let (ok, out, err) = elide(&["sql", "--data-dir", d, "--format", "csv", q]);
    assert!(ok, "{q}: {err}");
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// `elide capture --data-dir d --project 1 FILE`.
pub(crate) fn capture(d: &str, file: &Path) -> (bool, String, String) {
    elide(&[
        "capture",
        "--data-dir",
        d,
        "--project",
        "1",
        file.to_str().unwrap(),
    ])
}

fn event_line(did: &str, ts: &str) -> String {
    format!(r#"{{"event":"$pageview","distinct_id":"{did}","project_id":1,"timestamp":"{ts}"}}"#)
}

pub(crate) fn capture_line(did: &str, extra: &str) -> String {
    format!(
        r#"{{"event":"$pageview","distinct_id":"{did}","properties":{{"$set":{{"email":"{did}@example.com"}}}}{extra}}}"#
    )
}

pub(crate) fn persons_count(d: &str) -> usize {
    let (ok, out, err) = elide(&[
        "persons",
        "list",
        "--data-dir",
        d,
        "--project",
        "1",
        "--format",
        "json",
        "--limit",
        "10000",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["results"].as_array().unwrap().len()
}

#[test]
fn an_ingest_that_fails_after_writing_parts_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("ok.jsonl");
    let lines: Vec<String> = (0..300)
        .map(|i| event_line(&format!("u{i}"), "2026-11-01T00:00:00Z"))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    // The failure comes after every part is written and synced (the
    // moment a full disk would hit the commit), or on the thread that
    // writes a full buffer's parts.
    for point in ["bulk::before_commit", "bulk::write_parts"] {
        for action in ["error", "abort"] {
            let (ok, _, err) = elide_env(
                &["ingest", "--data-dir", d, file.to_str().unwrap()],
                &[("ELIDE_FAILPOINT", &format!("{point}={action}"))],
            );
            assert!(!ok, "{point} {action}: {err}");
            if action == "error" {
                assert!(err.contains(point), "{err}");
            }
            assert_eq!(
                count_sql(d, "SELECT count(*) FROM events"),
                0,
                "{point} {action}"
            );
        }
    }
    // The next writer's open sweeps the unpublished parts.
    let store = open(&data);
    assert!(
        files_under(&data.join("parts")).is_empty(),
        "unpublished parts are removed"
    );
    drop(store);
    // The same file goes in whole, once.
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 300);
}

#[test]
fn a_capture_refused_late_in_the_file_stores_no_person_and_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let mut lines: Vec<String> = (0..120)
        .map(|i| capture_line(&format!("u{i}"), ""))
        .collect();
    // Valid JSON and a valid ISO date, but before 1970 (and via offset).
    for (bad, needle) in [
        (
            capture_line("late", r#","timestamp":"1969-12-31T23:59:59Z""#),
            "1970",
        ),
        (
            capture_line("late", r#","timestamp":"9999-12-31T23:59:59Z","x":1"#),
            "",
        ),
        (
            capture_line("late", r#","offset":9000000000000000"#),
            "offset",
        ),
    ] {
        lines.push(bad);
        let file = dir.path().join("c.jsonl");
        std::fs::write(&file, lines.join("\n")).unwrap();
        let (ok, _, err) = elide(&[
            "capture",
            "--data-dir",
            d,
            "--project",
            "1",
            "--batch-size",
            "50",
            file.to_str().unwrap(),
        ]);
        if needle.is_empty() {
            // The last second of 9999 is accepted; drop it and go on.
            assert!(ok, "{err}");
            lines.pop();
            continue;
        }
        assert!(!ok);
        assert!(err.contains("line 121") && err.contains(needle), "{err}");
        lines.pop();
    }
    // Only the one accepted run left anything: its 121 events.
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 121);
    assert_eq!(persons_count(d), 121);
}

#[test]
fn a_capture_that_fails_or_dies_between_its_two_commits_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("c.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| capture_line(&format!("p{i}"), ""))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let args = [
        "capture",
        "--data-dir",
        d,
        "--project",
        "1",
        file.to_str().unwrap(),
    ];
    // The store committed the events; the metadata transaction then fails
    // (error) or the process dies (abort) before it commits.
    for action in ["error", "abort"] {
        let (ok, _, _) = elide_env(
            &args,
            &[(
                "ELIDE_FAILPOINT",
                &format!("capture::after_store_commit={action}"),
            )],
        );
        assert!(!ok, "{action}");
        assert_eq!(persons_count(d), 0, "{action}: persons left");
        assert_eq!(
            count_sql(d, "SELECT count(*) FROM events"),
            0,
            "{action}: events left"
        );
    }
    // Both committed, the process dies before confirming: the next open
    // confirms, and everything is there.
    let (ok, _, _) = elide_env(&args, &[("ELIDE_FAILPOINT", "capture::before_confirm")]);
    assert!(!ok);
    let store = open(&data);
    assert_eq!(store.pending_ingests().unwrap().len(), 1);
    let p = Persons::open(store.clone()).unwrap();
    assert!(store.pending_ingests().unwrap().is_empty());
    drop(p);
    drop(store);
    assert_eq!(persons_count(d), 200);
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 200);
    assert_eq!(
        count_sql(d, "SELECT count(*) FROM events WHERE person_id IS NULL"),
        0
    );
}

#[test]
fn a_lost_or_replaced_metadata_database_is_refused_and_can_be_rebuilt_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("c.jsonl");
    std::fs::write(
        &file,
        [capture_line("alice", ""), capture_line("bob", "")].join("\n"),
    )
    .unwrap();
    assert!(capture(d, &file).0);
    // alice's deletion is verified (the store keeps only a keyed hash of
    // her id), bob's is pending (the store still names his id).
    for (who, compact) in [("alice", true), ("bob", false)] {
        let (ok, _, err) = elide(&[
            "persons",
            "delete",
            "--data-dir",
            d,
            "--project",
            "1",
            "--distinct-id",
            who,
            "--delete-events",
        ]);
        assert!(ok, "{err}");
        if compact {
            let (ok, out, err) = elide(&["compact", "--data-dir", d, "--now"]);
            assert!(ok && out.contains("verified: [1]"), "{out}{err}");
        }
    }
    let db = data.join("metadata.sqlite3");
    let saved = dir.path().join("saved.sqlite3");
    std::fs::copy(&db, &saved).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // Every command that needs persons refuses, naming the way out.
    for args in [
        vec![
            "capture",
            "--data-dir",
            d,
            "--project",
            "1",
            file.to_str().unwrap(),
        ],
        vec!["persons", "list", "--data-dir", d, "--project", "1"],
        vec!["sql", "--data-dir", d, "SELECT count(*) FROM persons"],
    ] {
        let (ok, _, err) = elide(&args);
        assert!(!ok, "{args:?}");
        assert!(
            err.contains("missing or empty") && err.contains("rebuild-metadata"),
            "{args:?}: {err}"
        );
    }
    assert!(!db.exists() || std::fs::metadata(&db).unwrap().len() == 0);
    // An empty file in its place is refused too; another database as well.
    std::fs::write(&db, b"").unwrap();
    assert!(!elide(&["persons", "list", "--data-dir", d, "--project", "1"]).0);
    std::fs::remove_file(&db).unwrap();
    let other = tempfile::tempdir().unwrap();
    {
        let s = open(other.path());
        drop(Persons::open(s).unwrap());
    }
    std::fs::copy(other.path().join("metadata.sqlite3"), &db).unwrap();
    let (ok, _, err) = elide(&["persons", "list", "--data-dir", d, "--project", "1"]);
    assert!(!ok && err.contains("not the one"), "{err}");
    std::fs::remove_file(&db).unwrap();
    // The deliberate rebuild: alice's id stays blocked, so capturing it
    // again creates no person.
    let (ok, out, err) = elide(&["persons", "rebuild-metadata", "--data-dir", d, "--confirm"]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ids_blocked"], 2, "{r}");
    assert_eq!(r["requests_not_blocked"], 0, "{r}");
    std::fs::write(
        &file,
        [capture_line("alice", ""), capture_line("bob", "")].join("\n"),
    )
    .unwrap();
    assert!(capture(d, &file).0);
    assert_eq!(
        persons_count(d),
        0,
        "a deleted person came back after the rebuild"
    );
    // Restoring the saved database is refused now: the store is bound to
    // the rebuilt one.
    std::fs::remove_file(&db).unwrap();
    std::fs::copy(&saved, &db).unwrap();
    assert!(!elide(&["persons", "list", "--data-dir", d, "--project", "1"]).0);
}

#[test]
fn integer_ids_keep_their_digits_and_fractions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("c.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"event":"a","distinct_id":12345678901234567890123}"#,
            r#"{"event":"a","distinct_id":12345678901234567890124}"#,
            r#"{"batch":[{"event":"$identify","distinct_id":7,"properties":{"$anon_distinct_id":99999999999999999999999}}]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    assert!(capture(d, &file).0);
    let (ok, out, _) = elide(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT distinct_id FROM events ORDER BY distinct_id",
    ]);
    assert!(ok);
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        ["12345678901234567890123", "12345678901234567890124", "7"]
    );
    assert_eq!(persons_count(d), 3);
    let (ok, out, _) = elide(&["persons", "get", "--data-dir", d, "--project", "1", "7"]);
    let _ = (ok, out);
    let (_, out, _) = elide(&[
        "persons",
        "list",
        "--data-dir",
        d,
        "--project",
        "1",
        "--distinct-id",
        "99999999999999999999999",
        "--format",
        "json",
    ]);
    assert!(
        out.contains("\"7\""),
        "the identify merged the literal id: {out}"
    );
    for bad in [
        r#"{"event":"a","distinct_id":1.5}"#,
        r#"{"event":"a","distinct_id":1e3}"#,
        r#"{"event":"$identify","distinct_id":"x","properties":{"$anon_distinct_id":2.5}}"#,
    ] {
        std::fs::write(&file, bad).unwrap();
        let (ok, _, err) = capture(d, &file);
        assert!(!ok && err.contains("line 1"), "{bad}: {err}");
    }
    // JSON-lines ingest keeps the digits too.
    let jl = dir.path().join("e.jsonl");
    std::fs::write(
        &jl,
        [
            r#"{"event":"b","distinct_id":12345678901234567890123,"project_id":2,"timestamp":"2026-01-01"}"#,
            r#"{"event":"b","distinct_id":12345678901234567890124,"project_id":2,"timestamp":"2026-01-01"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    assert!(elide(&["ingest", "--data-dir", d, jl.to_str().unwrap()]).0);
    assert_eq!(
        count_sql(
            d,
            "SELECT count(DISTINCT distinct_id) FROM events WHERE project_id = 2"
        ),
        2
    );
    std::fs::write(
        &jl,
        r#"{"event":"b","distinct_id":3.25,"project_id":2,"timestamp":"2026-01-01"}"#,
    )
    .unwrap();
    let (ok, _, err) = elide(&["ingest", "--data-dir", d, jl.to_str().unwrap()]);
    assert!(
        !ok && err.contains("line 1") && err.contains("3.25"),
        "{err}"
    );
}

#[test]
fn commands_that_only_read_or_delete_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    let t = typo.to_str().unwrap();
    for args in [
        vec![
            "delete",
            "--data-dir",
            t,
            "--project",
            "1",
            "--distinct-id",
            "x",
        ],
        vec!["status", "--data-dir", t],
        vec!["sql", "--data-dir", t, "SELECT 1"],
        vec!["compact", "--data-dir", t, "--now"],
        vec!["deletions", "--data-dir", t],
        vec!["drop-project", "--data-dir", t, "--project", "1"],
        vec!["scrub", "--data-dir", t],
        vec!["persons", "list", "--data-dir", t, "--project", "1"],
        vec![
            "persons",
            "delete",
            "--data-dir",
            t,
            "--project",
            "1",
            "--distinct-id",
            "x",
        ],
    ] {
        let (ok, _, err) = elide(&args);
        assert!(!ok, "{args:?} succeeded on a directory with no store");
        assert!(err.contains("no Elide store"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created the directory");
    }
    // An existing empty directory is no store either.
    std::fs::create_dir(&typo).unwrap();
    let (ok, _, err) = elide(&[
        "delete",
        "--data-dir",
        t,
        "--project",
        "1",
        "--distinct-id",
        "x",
    ]);
    assert!(!ok && err.contains("no Elide store"), "{err}");
    // A file given as the data directory.
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let (ok, _, err) = elide(&["status", "--data-dir", file.to_str().unwrap()]);
    assert!(!ok && err.contains("not a directory"), "{err}");
}

#[test]
fn pipes_and_standard_input_are_read_once_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let lines: Vec<String> = (0..50)
        .map(|i| capture_line(&format!("s{i}"), ""))
        .collect();
    let (ok, _, err) = elide_stdin(
        &["capture", "--data-dir", d, "--project", "1", "-"],
        lines.join("\n").as_bytes(),
    );
    assert!(ok, "{err}");
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 50);
    assert_eq!(persons_count(d), 50);
    // JSON lines with a byte-order mark, from standard input.
    let mut jl = "\u{feff}".to_string();
    jl.push_str(&event_line("bom", "2026-01-01"));
    let (ok, _, err) = elide_stdin(&["ingest", "--data-dir", d, "-"], jl.as_bytes());
    assert!(ok, "{err}");
    // Parquet from a pipe (spooled, then removed).
    let pq = dir.path().join("g.parquet");
    let cfg = elide_gen::GenConfig {
        events: 1000,
        persons: 10,
        projects: 1,
        seed: 3,
        ..Default::default()
    };
    elide_gen::write_parquet(cfg, &pq, &mut |_| {}).unwrap();
    let (ok, _, err) = elide_stdin(
        &["ingest", "--data-dir", d, "-"],
        &std::fs::read(&pq).unwrap(),
    );
    assert!(ok, "{err}");
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 1051);
    assert!(
        files_under(&data)
            .iter()
            .all(|p| !p.to_string_lossy().contains("spool-")),
        "the spooled copy is removed"
    );
}

#[test]
fn sql_is_read_only_unless_asked_and_never_writes_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("e.jsonl");
    std::fs::write(&file, event_line("a", "2026-01-01")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    let out = dir.path().join("out.csv");
    let copy = format!("COPY (SELECT * FROM events) TO '{}'", out.display());
    let (ok, _, err) = elide(&["sql", "--data-dir", d, &copy]);
    assert!(!ok && err.contains("read-only"), "{err}");
    assert!(!out.exists());
    let (ok, _, err) = elide(&["sql", "--data-dir", d, "--allow-writes", &copy]);
    assert!(ok, "{err}");
    assert!(out.exists());
    let inside = format!(
        "COPY (SELECT * FROM events) TO '{}'",
        data.join("wal/x.csv").display()
    );
    let (ok, _, err) = elide(&["sql", "--data-dir", d, "--allow-writes", &inside]);
    assert!(!ok && err.contains("inside the data directory"), "{err}");
    assert!(!data.join("wal/x.csv").exists());
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 1);
}

#[test]
fn bad_flags_and_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("e.jsonl");
    std::fs::write(&file, event_line("a", "2026-01-01")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    for args in [
        vec![
            "delete",
            "--data-dir",
            d,
            "--project",
            "-1",
            "--distinct-id",
            "a",
        ],
        vec!["persons", "list", "--data-dir", d, "--project", "0"],
        vec!["persons", "list", "--data-dir", d, "--project", "-1"],
        vec!["drop-project", "--data-dir", d, "--project", "-5"],
    ] {
        let (ok, _, err) = elide(&args);
        assert!(!ok && err.contains("positive"), "{args:?}: {err}");
    }
    // Stores written before the rule may hold project 0: its rows can
    // still be deleted.
    let (ok, _, err) = elide(&[
        "delete",
        "--data-dir",
        d,
        "--project",
        "0",
        "--distinct-id",
        "a",
    ]);
    assert!(ok, "{err}");
    let big = (1u64 << 44).to_string();
    let (ok, _, err) = elide(&["compact", "--data-dir", d, "--io-limit-mib", &big]);
    assert!(!ok && err.contains("io-limit-mib"), "{err}");
    // NUL in a distinct id: refused by the store's own ingest; capture
    // replaces it with U+FFFD, as PostHog's capture does.
    std::fs::write(&file, event_line("a\\u0000b", "2026-01-01")).unwrap();
    let (ok, _, err) = elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]);
    assert!(!ok && err.contains("NUL"), "{err}");
    std::fs::write(&file, capture_line("a\\u0000b", "")).unwrap();
    let (ok, _, err) = capture(d, &file);
    assert!(ok, "{err}");
    // A parquet file with a damaged footer.
    let pq = dir.path().join("g.parquet");
    let cfg = elide_gen::GenConfig {
        events: 100,
        persons: 5,
        projects: 1,
        seed: 1,
        ..Default::default()
    };
    elide_gen::write_parquet(cfg, &pq, &mut |_| {}).unwrap();
    let mut bytes = std::fs::read(&pq).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 60..n - 8] {
        *b = 0;
    }
    std::fs::write(&pq, &bytes).unwrap();
    let (ok, _, err) = elide(&["ingest", "--data-dir", d, pq.to_str().unwrap()]);
    assert!(
        !ok && err.contains("g.parquet") && err.contains("not a readable parquet"),
        "{err}"
    );
    // The first good event, and the capture with the NUL replaced.
    assert_eq!(count_sql(d, "SELECT count(*) FROM events"), 2);
    assert_eq!(
        count_sql(
            d,
            "SELECT count(*) FROM events WHERE distinct_id = 'a\u{FFFD}b'"
        ),
        1
    );
}

/// Flip one bit at 101 offsets spread over a part: no flip may return
/// changed values; every flip among the pages fails the scan naming the
/// file, and the scrub reports every flip.
#[test]
fn a_flipped_bit_anywhere_in_a_part_is_an_error_never_a_changed_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        },
    )
    .unwrap();
    let rows: Vec<_> = (0..6000)
        .map(|n| row(n, &format!("d{}", n % 40), 1, 0))
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    let part = snap
        .parts(elide::store::Table::Events)
        .next()
        .unwrap()
        .clone();
    drop(snap);
    let path = dir.path().join(&part.path);
    let original = std::fs::read(&path).unwrap();
    let rt = rt();
    let q = "SELECT uuid, event, distinct_id, person_id, project_id, timestamp, properties, session_id, _seq FROM events ORDER BY _seq";
    let expected = sql(&rt, &ctx(&store), q);
    // The footer region is verified when a part is first opened and its
    // decoded metadata kept; a flip there later is not read by scans (it
    // cannot change a value), and neither is one in the leading magic; the
    // scrub finds both. A flip among the pages is found by every scan
    // that reads it.
    let data_len = part.checksum.unwrap().data_len as usize;
    let mut detected = 0;
    let mut in_pages = 0;
    for i in 0..101u64 {
        let at = (i * (original.len() as u64 - 1) / 100) as usize;
        let mut bytes = original.clone();
        bytes[at] ^= 1 << (i % 8);
        std::fs::write(&path, &bytes).unwrap();
        let c = ctx(&store);
        let r = rt.block_on(async { c.sql(q).await?.collect().await });
        // Bytes 0..4 (the magic) are in no column chunk: no read uses them.
        if (4..data_len).contains(&at) {
            in_pages += 1;
            assert!(
                r.is_err(),
                "a flip at byte {at} among the pages was not detected"
            );
        }
        match r {
            Ok(b) => {
                assert_eq!(
                    arrow::util::pretty::pretty_format_batches(&b)
                        .unwrap()
                        .to_string(),
                    arrow::util::pretty::pretty_format_batches(&expected)
                        .unwrap()
                        .to_string(),
                    "flip at byte {at} returned changed values"
                );
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(&part.path), "flip at {at}: {msg}");
                detected += 1;
            }
        }
        let report = store.scrub(&mut |_, _| {}).unwrap();
        assert!(report.damaged(), "scrub missed a flip at byte {at}");
        assert!(report.findings.iter().any(|f| f.path == part.path));
    }
    assert_eq!(
        detected, in_pages,
        "every flip among the pages fails the scan"
    );
    assert!(in_pages > 80, "{in_pages} of 101 flips hit the pages");
    std::fs::write(&path, &original).unwrap();
    assert!(!store.scrub(&mut |_, _| {}).unwrap().damaged());
    let _ = Path::new("");
}

#[test]
fn scrub_reports_on_a_store_too_damaged_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("e.jsonl");
    std::fs::write(&file, event_line("a", "2026-01-01")).unwrap();
    assert!(elide(&["ingest", "--data-dir", d, file.to_str().unwrap()]).0);
    let (ok, out, err) = elide(&["scrub", "--data-dir", d, "--format", "json"]);
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["damaged"], false);
    assert_eq!(v["parts_checked"], 1);
    // Damage the only tombstone-free part's footer region and the latest
    // manifest: the store no longer opens, scrub still reports both.
    let part = files_under(&data.join("parts")).pop().unwrap();
    let mut bytes = std::fs::read(&part).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0x40;
    std::fs::write(&part, &bytes).unwrap();
    let manifest = files_under(&data.join("manifest"))
        .into_iter()
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&manifest).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    std::fs::write(&manifest, &bytes).unwrap();
    assert!(
        !elide(&["status", "--data-dir", d]).0,
        "the store should not open"
    );
    let (ok, out, _) = elide(&["scrub", "--data-dir", d, "--format", "json"]);
    assert!(!ok, "scrub exits 1 on damage");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let damaged: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "damaged")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(damaged.iter().any(|p| p.starts_with("manifest/")), "{v}");
}

/// A subject-access export with a merge of many parts committed from
/// inside it (its failpoint, before it takes the commit lock): the index
/// forgets the merged parts at once (more than 16 went together). The
/// export once pinned a version, released the lock, and looked that
/// version's parts up in the index after the merge, missing every row of
/// them; it now reads the version and the index under one hold of the
/// commit lock, which is what publishes versions, so no commit lands in
/// between (and the hook cannot run there: the merge would wait for that
/// lock). This checks that the export finds every row after the merge.
#[test]
fn an_export_after_a_merge_of_many_parts_misses_no_row() {
    use elide::store::failpoint::{set_hook, Hook};
    use elide::store::{CompactRequest, Table};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..20u64 {
        append(
            &store,
            &[row(n, "subject", 1, 0), row(100 + n, "other", 1, 0)],
        );
        store.flush().unwrap();
    }
    // The index is in use (a deletion looked in it).
    store
        .delete(elide::store::DeleteSpec::ids(1, ["nobody"]))
        .unwrap();
    let parts = store.manifest().unwrap().parts.len();
    assert_eq!(parts, 20);
    let here = std::thread::current().id();
    let s = store.clone();
    let merge: Hook = std::sync::Arc::new(move || {
        if std::thread::current().id() == here {
            s.compact(CompactRequest {
                manual: true,
                merges: true,
                ..Default::default()
            })
            .unwrap();
        }
    });
    set_hook("export::before_index", Some(merge));
    let mut rows = 0;
    let got = store.rows_of_distinct_ids(
        1,
        &["subject".to_string()],
        &[Table::Events],
        &mut |_, b| {
            rows += b.num_rows();
            Ok(())
        },
    );
    set_hook("export::before_index", None);
    got.unwrap();
    assert!(
        store.manifest().unwrap().parts.len() < parts,
        "the merge ran during the export"
    );
    assert_eq!(rows, 20, "every row of the subject");
}

/// A request lists the parts that hold its rows (its receipt names the
/// files it erased from them), also for rows hidden while a flush or a
/// rewrite was writing the part that now holds them. Such a part once
/// went to every pending request of the project published meanwhile:
/// here `elsewhere`'s request, whose rows are all in another part, would
/// have listed the flush's part, and `far`'s the rewrite's output.
#[test]
fn rows_hidden_during_a_write_list_the_new_part_in_their_request_only() {
    use elide::store::failpoint::{set_hook, Hook};
    use elide::store::{CompactRequest, DeleteSpec, Manifest};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Part Q (day 5): `elsewhere`, `far`, `other` and `anchor` (which
    // no one deletes: a part whose every row is deleted leaves at once).
    // Part P (day 0): `gone`, `late`, `kept`.
    append(
        &store,
        &[
            row(1, "elsewhere", 1, 5),
            row(2, "far", 1, 5),
            row(3, "other", 1, 5),
            row(10, "anchor", 1, 5),
        ],
    );
    store.flush().unwrap();
    let q = store.manifest().unwrap().parts[0].id;
    append(
        &store,
        &[
            row(4, "gone", 1, 0),
            row(5, "late", 1, 0),
            row(6, "kept", 1, 0),
        ],
    );
    store.flush().unwrap();
    fn parts_of(m: &Manifest, id: u64) -> Vec<u64> {
        let r = m.requests.iter().find(|r| r.id == id).unwrap();
        let mut p = r.parts.clone();
        p.sort();
        p
    }
    let here = std::thread::current().id();
    let ours = move || std::thread::current().id() == here;

    // A flush: `fresh`, `picked` and `stays` are written, then `fresh`
    // is deleted (its rows become the new part's tombstones) and so is
    // `elsewhere`; and by predicate `picked` (in the part) and `other`
    // (in Q only).
    append(
        &store,
        &[
            row(7, "fresh", 1, 0),
            row(8, "stays", 1, 0),
            row(9, "picked", 1, 0),
        ],
    );
    let ids = Arc::new(Mutex::new(Vec::new()));
    let (s, got) = (store.clone(), Arc::clone(&ids));
    let during_flush: Hook = Arc::new(move || {
        if ours() {
            for id in ["fresh", "elsewhere"] {
                let out = s.delete(DeleteSpec::ids(1, [id])).unwrap();
                got.lock().unwrap().push(out.request_id);
            }
            for id in ["picked", "other"] {
                let pred = elide::store::predicate::EventPredicate {
                    distinct_ids: vec![id.to_string()],
                    ..Default::default()
                };
                let out = s
                    .delete_events(elide::store::EventDeletion::new(1, pred))
                    .unwrap();
                got.lock().unwrap().push(out.request_id);
            }
        }
    });
    set_hook("flush::after_write_parts", Some(during_flush));
    let flushed = store.flush();
    set_hook("flush::after_write_parts", None);
    flushed.unwrap();
    let (fresh, elsewhere, picked, other) = {
        let ids = ids.lock().unwrap();
        assert_eq!(ids.len(), 4, "the hook ran");
        (ids[0], ids[1], ids[2], ids[3])
    };
    let m = store.manifest().unwrap();
    let known = [q];
    let new_parts: Vec<u64> = m
        .parts
        .iter()
        .map(|p| p.id)
        .filter(|id| !known.contains(id) && parts_of(&m, fresh).contains(id))
        .collect();
    assert_eq!(new_parts.len(), 1, "fresh's rows are in the flushed part");
    assert_eq!(
        parts_of(&m, elsewhere),
        vec![q],
        "elsewhere's are in Q only"
    );
    assert_eq!(parts_of(&m, picked), new_parts, "picked's are in the part");
    assert_eq!(parts_of(&m, other), vec![q], "other's are in Q only");

    // Those two are purged first, so that only `gone` is pending at the
    // rewrite below.
    let purge = || CompactRequest {
        manual: true,
        merges: false,
        ..Default::default()
    };
    store.compact(purge()).unwrap();
    let pending: Vec<u64> = store
        .manifest()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.status == elide::store::RequestStatus::Pending)
        .map(|r| r.id)
        .collect();
    assert!(pending.is_empty(), "{pending:?} still pending");

    // A rewrite: purging `gone` rewrites P; meanwhile `late` (in P) and
    // `far` (in Q, which is not rewritten) are deleted. The output holds
    // `late`'s rows, hidden by carried tombstones, and none of `far`'s.
    let gone = store
        .delete(DeleteSpec::ids(1, ["gone"]))
        .unwrap()
        .request_id;
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen: Arc<Mutex<Option<Manifest>>> = Arc::new(Mutex::new(None));
    let (s, got) = (store.clone(), Arc::clone(&ids));
    let during_rewrite: Hook = Arc::new(move || {
        if ours() && got.lock().unwrap().is_empty() {
            for id in ["late", "far"] {
                let out = s.delete(DeleteSpec::ids(1, [id])).unwrap();
                let m = s.manifest().unwrap();
                got.lock()
                    .unwrap()
                    .push((out.request_id, parts_of(&m, out.request_id)));
            }
        }
    });
    let (s, at) = (store.clone(), Arc::clone(&seen));
    let after_swap: Hook = Arc::new(move || {
        let mut at = at.lock().unwrap();
        if ours() && at.is_none() {
            *at = Some(s.manifest().unwrap());
        }
    });
    set_hook("compact::before_commit", Some(during_rewrite));
    set_hook("compact::after_commit", Some(after_swap));
    let compacted = store.compact(purge());
    set_hook("compact::before_commit", None);
    set_hook("compact::after_commit", None);
    compacted.unwrap();
    let (late, (far, far_parts)) = {
        let ids = ids.lock().unwrap();
        assert_eq!(ids.len(), 2, "the hook ran");
        (ids[0].0, ids[1].clone())
    };
    let m = seen.lock().unwrap().take().expect("a swap was committed");
    assert!(
        parts_of(&m, gone).is_empty(),
        "gone holds no row in the output"
    );
    let output: Vec<u64> = parts_of(&m, late)
        .into_iter()
        .filter(|id| m.parts.iter().any(|p| p.id == *id))
        .collect();
    assert_eq!(output.len(), 1, "late's rows are in the rewrite's output");
    assert_eq!(far_parts.len(), 1);
    assert_eq!(parts_of(&m, far), far_parts, "far's are in Q only");
    assert!(!parts_of(&m, elsewhere).contains(&output[0]));
}
