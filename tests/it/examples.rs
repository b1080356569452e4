//! The programs under `examples/` run and do what they say: `cargo test`
//! builds them (into `target/<profile>/examples/`), these tests run them
//! and check their output. (`cargo test --test it` alone does not rebuild
//! examples: run the whole `cargo test`, as CI does.)

use std::path::PathBuf;
use std::process::Command;

/// The built example `name`, next to this test binary's directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} was not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// Run an example with its temporary files under a directory of its own.
fn run(name: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(example(name))
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn quickstart_ingests_queries_deletes_one_percent_and_purges() {
    let out = run("quickstart");
    // 100,000 events of 1,000 ids; every 100th id: 10 ids of 100 events each.
    assert!(out.contains("| 100000 | 1000 |"), "{out}");
    assert!(
        out.contains("deleted 1000 of 100000 rows (10 ids)"),
        "{out}"
    );
    assert!(out.contains("| 99000  | 990 |"), "{out}");
    // One request per project (every 100th id is odd: all in project 2).
    assert!(
        out.contains("purged 1000 rows; 1 requests verified"),
        "{out}"
    );
    assert!(out.contains("99000 rows visible, 0 tombstoned"), "{out}");
}

#[test]
fn custom_session_joins_elide_tables_with_its_own_and_drops_a_deleted_customer() {
    let out = run("custom_session");
    assert!(out.contains("enterprise"), "{out}");
    assert!(out.contains("1 plan rows after the deletion"), "{out}");
}

#[cfg(feature = "persons")]
#[test]
fn persons_example_merges_identities_and_erases_a_person() {
    let out = run("persons");
    assert!(
        out.contains("\"anon-1\""),
        "ada's ids include the anonymous one: {out}"
    );
    assert!(out.contains("deleted 1 person(s)"), "{out}");
    assert!(out.contains("1 person(s) left with events"), "{out}");
}

#[test]
fn delete_and_purge_follows_each_request_to_verified() {
    let out = run("delete_and_purge");
    // Each of the 3 ids has 100 events; one request per project.
    assert!(out.contains("request 1: 200 rows hidden"), "{out}");
    assert!(out.contains("request 2: 100 rows hidden"), "{out}");
    assert!(out.contains("awaiting purge: 300 tombstoned rows"), "{out}");
    assert!(out.contains("request 1 is pending"), "{out}");
    assert!(out.contains("300 rows removed from disk"), "{out}");
    assert!(
        out.contains("request 1 is verified") && out.contains("request 2 is verified"),
        "{out}"
    );
    assert!(out.contains("0 tombstoned rows left"), "{out}");
}
