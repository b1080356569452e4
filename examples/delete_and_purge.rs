//! The deletion lifecycle of an embedded store: delete (hidden at once),
//! see what awaits a purge, purge with progress, and follow each request
//! from `pending` to `verified`.
//!
//!     cargo run --example delete_and_purge
mod common;

use elide::{CompactRequest, DeleteSpec, IngestOptions, Store, StoreOptions, Table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::temp_dir().join(format!("elide-lifecycle-{}", std::process::id()));
    let input = common::generate(&work)?;
    // No background compaction: this program decides when to purge.
    let opts = StoreOptions {
        background_compaction: false,
        ..StoreOptions::default()
    };
    let store = Store::open(work.join("data"), opts)?;
    let rename = IngestOptions::new().rename("$session_id", "session_id");
    store.ingest_files(Table::Events, &[input], rename)?;

    // Two projects' persons in one commit (one request per project).
    let outcomes = store.delete_many([
        DeleteSpec::ids(1, ["user-0000", "user-0002"]),
        DeleteSpec::ids(2, ["user-0001"]),
    ])?;
    for o in &outcomes {
        println!("request {}: {} rows hidden", o.request_id, o.rows_hidden);
    }
    let t = store.status()?.totals;
    println!(
        "awaiting purge: {} tombstoned rows in {} of {} parts ({} bytes)",
        t.tombstoned_rows, t.parts_with_tombstones, t.parts, t.bytes_awaiting_purge
    );
    for r in store.requests()? {
        println!("request {} is {}", r.id, r.status.as_str());
    }

    // Purge now (what the background worker does off-peak or by the
    // deadline), with progress, then verify.
    let report = store.compact_with_progress(CompactRequest::now(), &mut |p| {
        if let elide::Progress::Planned { tasks, bytes } = p {
            println!("purging: {tasks} tasks over {bytes} bytes");
        }
    })?;
    println!("{} rows removed from disk", report.summary.rows_dropped);
    for r in store.requests()? {
        println!("request {} is {}", r.id, r.status.as_str());
    }
    let t = store.status()?.totals;
    println!("{} tombstoned rows left", t.tombstoned_rows);
    store.close()?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
