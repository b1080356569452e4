//! `elide bench-erasure`: deletion of events by predicate at scale, behind
//! the figures in `docs/benchmarks.md` ("Erasure by predicate"):
//!
//! 1. `Store::ingest_files` of a generated parquet file, then a reopen and
//!    `ready()`, as an embedder does;
//! 2. the baseline: a SQL query finding the same rows (`count(*)` with the
//!    same conditions), and a scan reading every main column of the
//!    project's partitions (median of 3 each);
//! 3. the dry run (`preview_events`) and the deletion (`delete_events`,
//!    time to hidden) of one event name in one project, then of an event
//!    name with a property filter in another project;
//! 4. the purge and verification of both (`compact(CompactRequest::now())`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use elide_store::predicate::{EventPredicate, PropertyFilter, PropertyOperator};
use elide_store::{CompactRequest, EventDeletion, IngestOptions, Store, StoreOptions, Table};

use crate::bench::median;
use crate::cli::{progress_bar, run_sql};
use crate::output::anyhow_lite::Result;

/// Arguments of `elide bench-erasure`.
#[derive(Debug, clap::Args)]
pub struct BenchErasureArgs {
    /// Work directory (must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Events to generate.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Persons in them.
    #[arg(long, default_value_t = 100_000)]
    persons: u64,
    /// Projects.
    #[arg(long, default_value_t = 5)]
    projects: u32,
}

fn timed_sql(store: &Store, sql: &str) -> Result<(Duration, i64)> {
    let mut times = Vec::new();
    let mut value = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let b = run_sql(store, sql)?;
        times.push(t.elapsed());
        value = b
            .first()
            .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>())
            .map_or(0, |a| a.value(0));
    }
    Ok((median(times), value))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `elide bench-erasure`.
pub fn run(a: BenchErasureArgs) -> Result<()> {
    if a.data_dir.exists() && std::fs::read_dir(&a.data_dir)?.next().is_some() {
        return Err(format!("{} is not empty", a.data_dir.display()).into());
    }
    std::fs::create_dir_all(&a.data_dir)?;
    let input = a.data_dir.join("input.parquet");
    let cfg = elide_gen::GenConfig {
        events: a.events,
        persons: a.persons,
        projects: a.projects,
        ..Default::default()
    };
    let bar = progress_bar(a.events, "generating");
    elide_gen::write_parquet(cfg, &input, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let dir = a.data_dir.join("store");
    let opts = || StoreOptions {
        background_compaction: false,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir, opts())?;
    let bar = progress_bar(a.events, "ingesting");
    store.ingest_files(
        Table::Events,
        &[&input],
        IngestOptions::new().progress(|p| bar.set_position(p.rows)),
    )?;
    bar.finish_and_clear();
    store.close()?;
    let store = Store::open(&dir, opts())?;
    store.ready()?;
    let status = store.status()?;
    let project_rows = |p: i64| -> u64 {
        status
            .partitions
            .iter()
            .filter(|s| s.project_id == p)
            .map(|s| s.rows)
            .sum()
    };
    let project_parts = |p: i64| -> usize {
        status
            .partitions
            .iter()
            .filter(|s| s.project_id == p)
            .map(|s| s.parts)
            .sum()
    };

    // 1. One event name in project 1.
    let event = "$feature_flag_called";
    let (find_t, want) = timed_sql(
        &store,
        &format!("SELECT count(*) FROM events WHERE project_id = 1 AND event = '{event}'"),
    )?;
    let (scan_t, _) = timed_sql(
        &store,
        "SELECT sum(length(uuid) + length(event) + length(distinct_id) + length(coalesce(properties, '')) + length(coalesce(session_id, ''))) FROM events WHERE project_id = 1",
    )?;
    let d = EventDeletion::new(
        1,
        EventPredicate {
            events: vec![event.into()],
            ..Default::default()
        },
    );
    let t = Instant::now();
    let preview = store.preview_events(&d)?;
    let preview_t = t.elapsed();
    let t = Instant::now();
    let out = store.delete_events(d)?;
    let delete_t = t.elapsed();
    if out.rows_hidden as i64 != want || preview.rows as i64 != want {
        return Err(format!(
            "hid {} rows (dry run {}), SQL counts {want}",
            out.rows_hidden, preview.rows
        )
        .into());
    }

    // 2. An event name and a property in project 2.
    let (find2_t, want2) = timed_sql(
        &store,
        "SELECT count(*) FROM events WHERE project_id = 2 AND event = '$autocapture' AND properties LIKE '%\"$browser\":\"Chrome\"%'",
    )?;
    let d2 = EventDeletion::new(
        2,
        EventPredicate {
            events: vec!["$autocapture".into()],
            properties: vec![PropertyFilter {
                key: "$browser".into(),
                operator: PropertyOperator::Exact,
                value: serde_json::json!("Chrome"),
            }],
            ..Default::default()
        },
    );
    let t = Instant::now();
    let out2 = store.delete_events(d2)?;
    let delete2_t = t.elapsed();

    // 3. Purge and verify.
    let t = Instant::now();
    let report = store.compact(CompactRequest::now())?;
    let purge_t = t.elapsed();
    store.close()?;

    println!(
        "project 1: {} rows in {} parts; {event}: {want} rows",
        project_rows(1),
        project_parts(1)
    );
    println!(
        "baseline: SQL count of the same rows {:.1} ms; scan of every main column of the project {:.1} ms",
        ms(find_t),
        ms(scan_t)
    );
    println!(
        "dry run {:.1} ms; delete_events (time to hidden) {:.1} ms: {:.2}x the SQL count, {:.2}x the scan",
        ms(preview_t),
        ms(delete_t),
        ms(delete_t) / ms(find_t).max(1e-9),
        ms(delete_t) / ms(scan_t).max(1e-9)
    );
    println!(
        "project 2, $autocapture with $browser = Chrome: {} rows hidden in {:.1} ms (SQL count with LIKE {:.1} ms, {want2} rows)",
        out2.rows_hidden,
        ms(delete2_t),
        ms(find2_t)
    );
    println!(
        "purge: {} parts rewritten, {} rows removed, {} bytes read, {} written, {} requests verified, {} failures, {:.2} s",
        report.summary.parts_purged,
        report.summary.rows_dropped,
        report.summary.bytes_read,
        report.summary.bytes_written,
        report.requests_verified.len(),
        report.verification_failures.len(),
        purge_t.as_secs_f64()
    );
    Ok(())
}
