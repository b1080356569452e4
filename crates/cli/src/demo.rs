//! `elide demo`: the README's main job on an embedded default.

use std::path::Path;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use elide_store::{DeleteSpec, Table};

use crate::cli::{print_status_limited, progress_bar, run_sql};
use crate::output::anyhow_lite::Result;
use crate::output::{write_batches, Format};
use elide_app::wiring::{self, Access};

pub fn run(dir: &Path, events: u64) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(format!(
            "{} is not empty; the demo needs an empty or new directory (pass another --data-dir)",
            dir.display()
        )
        .into());
    }
    let persons = (events / 100).max(10);
    println!(
        "== Elide demo: {events} generated events, {persons} persons, 2 projects, data dir {}\n",
        dir.display()
    );
    let store = wiring::store(dir, Access::Create)?;
    let cfg = elide_gen::GenConfig {
        events,
        persons,
        projects: 2,
        seed: 42,
        ..Default::default()
    };
    let bar = progress_bar(events, "ingesting");
    let started = Instant::now();
    for batch in elide_gen::Generator::new(cfg)? {
        store.append(Table::Events, &batch)?;
        bar.inc(batch.num_rows() as u64);
    }
    store.flush()?;
    bar.finish_and_clear();
    println!("1. Ingested {events} events in {:.2} s into immutable parquet parts, one per (project, day).\n", started.elapsed().as_secs_f64());

    // Pick the three most active distinct ids of project 1.
    let top = run_sql(&store, "SELECT distinct_id, count(*) AS n FROM events WHERE project_id = 1 GROUP BY distinct_id ORDER BY n DESC, distinct_id LIMIT 3")?;
    let mut ids = Vec::new();
    for b in &top {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let col = col.as_string::<i32>();
        for i in 0..col.len() {
            ids.push(col.value(i).to_string());
        }
    }
    let query = format!(
        "SELECT distinct_id, count(*) AS events, count(DISTINCT session_id) AS sessions FROM events WHERE project_id = 1 AND distinct_id IN ({}) GROUP BY distinct_id ORDER BY distinct_id",
        ids.iter().map(|d| format!("'{}'", d.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
    );
    println!("2. The three most active persons of project 1, before deletion:\n   {query}");
    write_batches(
        &mut std::io::stdout(),
        &run_sql(&store, &query)?,
        Format::Table,
    )?;

    let started = Instant::now();
    let outcome = store.delete(DeleteSpec::ids(1, ids.clone()))?;
    println!(
        "\n3. Deleted them: request {} hid {} rows in {:.1} ms (tombstone bitmaps written and fsynced, manifest committed).\n",
        outcome.request_id,
        outcome.rows_hidden,
        started.elapsed().as_secs_f64() * 1e3
    );
    println!("4. The same query after the deletion:");
    write_batches(
        &mut std::io::stdout(),
        &run_sql(&store, &query)?,
        Format::Table,
    )?;
    println!("\n   ...while everyone else is untouched:");
    write_batches(
        &mut std::io::stdout(),
        &run_sql(&store, "SELECT event, count(*) AS n FROM events WHERE project_id = 1 GROUP BY event ORDER BY n DESC LIMIT 5")?,
        Format::Table,
    )?;
    println!("\n5. Store status:");
    print_status_limited(&mut std::io::stdout(), &store.status()?, Format::Table, 6)?;
    println!(
        "\n6. The bytes are still inside the parquet parts listed above as 'tombstoned'; the request is\n   \
         'pending'. Compaction (off-peak by default, here by hand) rewrites those parts without the rows,\n   \
         removes the old files, then a verification scan proves nothing of the persons is left:"
    );
    let started = Instant::now();
    let report = store.compact(elide_store::CompactRequest {
        manual: true,
        project_id: Some(1),
        merges: false,
        ..Default::default()
    })?;
    let s = &report.summary;
    println!(
        "   rewrote {} parts ({} bytes) dropping {} deleted rows in {:.2} s; requests purged {:?}, verified {:?}.",
        s.parts_purged,
        s.bytes_read,
        s.rows_dropped,
        started.elapsed().as_secs_f64(),
        report.requests_purged,
        report.requests_verified
    );
    for r in store.requests()? {
        println!(
            "   request {}: status {}, {} distinct ids kept only as keyed hashes",
            r.id,
            r.status.as_str(),
            r.id_hashes.len()
        );
    }
    println!(
        "\nNext: elide deletions --data-dir {dir}   (the lifecycle of every request; docs/deletion-lifecycle.md)\n\
         Try: elide sql --data-dir {dir} \"SELECT json_get_str(properties, '$browser') AS browser, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC\"",
        dir = dir.display()
    );
    store.close()?;
    Ok(())
}
