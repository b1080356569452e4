//! Hidden `crash-worker` subcommand: the child process of the crash tests.
//!
//! It appends small batches and deletes distinct ids in a loop, forever,
//! and prints one line per *acknowledged* operation (after the call
//! returned), flushing stdout each time:
//!
//! ```text
//! A <uuid>|<project>|<distinct_id>,...   rows appended (all of one call)
//! D <project> <distinct_id> <cutoff>  deletion returned
//! F                              flush returned
//! O                              (--recover-only) the store opened
//! ```
//!
//! With `--recover-only` it only opens the store (recovering it) and
//! flushes, then waits to be killed: the test kills recovery itself.
//!
//! The test kills it with SIGKILL at a random moment, reopens the data
//! directory, and checks every acknowledged line against what queries see.

use std::io::Write;
use std::path::Path;

use elide_store::jsonl::{rows_to_batch, EventRow};
use elide_store::{DeleteSpec, Store, StoreOptions, Table};
use rand::{Rng, SeedableRng};

use crate::output::anyhow_lite::Result;

pub fn run(dir: &Path, seed: u64, recover_only: bool) -> Result<()> {
    let mut opts = StoreOptions {
        memtable_rows: 300,
        ..Default::default()
    };
    // A URL (`s3://bucket`) with `--local-dir`, as every command takes it.
    let dir = elide_app::wiring::locate(dir, &mut opts)?;
    let store = Store::open(&dir, opts)?;
    if recover_only {
        // Recovery runs in `open` and in the background flush of the
        // replayed rows; then wait to be killed.
        writeln!(std::io::stdout(), "O")?;
        let _ = store.flush();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = std::io::stdout().lock();
    let mut n: u64 = 0;
    loop {
        let roll: u32 = rng.random_range(0..100);
        if roll < 80 {
            let rows: Vec<EventRow> = (0..rng.random_range(1..40))
                .map(|_| {
                    n += 1;
                    EventRow {
                        uuid: Some(uuid::Uuid::from_u64_pair(seed, n).to_string()),
                        event: "$pageview".into(),
                        distinct_id: format!("d{}", rng.random_range(0..30)),
                        person_id: None,
                        project_id: rng.random_range(1..3),
                        timestamp_us: 1_790_000_000_000_000
                            + rng.random_range(0..5i64) * 86_400_000_000,
                        properties: Some(r#"{"$browser":"Firefox"}"#.into()),
                        session_id: None,
                    }
                })
                .collect();
            let batch = rows_to_batch(&rows)?;
            store.append(Table::Events, &batch)?;
            let ids: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}|{}|{}",
                        r.uuid.as_deref().unwrap_or(""),
                        r.project_id,
                        r.distinct_id
                    )
                })
                .collect();
            writeln!(out, "A {}", ids.join(","))?;
        } else if roll < 95 {
            let project = rng.random_range(1..3);
            let did = format!("d{}", rng.random_range(0..30));
            let o = store.delete(DeleteSpec::ids(project, vec![did.clone()]))?;
            writeln!(out, "D {project} {did} {}", o.cutoff)?;
        } else {
            store.flush()?;
            writeln!(out, "F")?;
        }
        out.flush()?;
    }
}
