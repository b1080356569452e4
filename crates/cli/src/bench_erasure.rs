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
//! 4. the purge and verification of both (`compact(CompactRequest::now())`);
//! 5. the subject-access export of the most active distinct id
//!    (`rows_of_distinct_ids`, through the index) against a SQL query
//!    reading the same rows (a scan with a filter);
//! 6. a retention sweep of 30 of the 90 days (`retention_days` 60 at the
//!    generator's end day), and the compaction after it;
//! 7. undo: a deletion of one event name in project 3 with an undo window
//!    (time to hidden), a count of the project while it is logical, the
//!    cancel, the same deletion again resolved to bits after its window,
//!    and the count then.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use elide_store::predicate::{EventPredicate, PropertyFilter, PropertyOperator};
use elide_store::{CompactRequest, EventDeletion, Store};

use crate::bench::median;
use crate::cli::run_sql;
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
    let ingested = crate::bench_embed::generate_and_ingest(
        &a.data_dir,
        a.events,
        a.persons,
        a.projects,
        crate::bench_embed::bench_store_options(),
    )?;
    let store = Store::open(&ingested.dir, crate::bench_embed::bench_store_options())?;
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
        "SELECT sum(length(CAST(uuid AS VARCHAR)) + length(event) + length(distinct_id) + length(coalesce(properties, '')) + length(coalesce(session_id, ''))) FROM events WHERE project_id = 1",
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

    // 2b. Undo, in project 3: hidden by the predicate, cancelled, then
    // resolved after its window.
    let count3 = "SELECT count(*) FROM events WHERE project_id = 3";
    let (q3_before, rows3) = timed_sql(&store, count3)?;
    let undoable = EventDeletion {
        undo_window: Some(Duration::from_secs(3600)),
        ..EventDeletion::new(
            3,
            EventPredicate {
                events: vec!["$pageview".into()],
                ..Default::default()
            },
        )
    };
    let t = Instant::now();
    let u = store.delete_events(undoable.clone())?;
    let undo_t = t.elapsed();
    let t = Instant::now();
    let first = run_sql(&store, count3)?;
    let q3_first = t.elapsed();
    drop(first);
    let (q3_logical, rows3_logical) = timed_sql(&store, count3)?;
    let t = Instant::now();
    store.cancel_request(u.request_id)?;
    let cancel_t = t.elapsed();
    let (_, rows3_back) = timed_sql(&store, count3)?;
    if rows3_logical != rows3 - u.rows_hidden as i64 || rows3_back != rows3 {
        return Err(format!(
            "undo: {rows3} rows, {rows3_logical} while hidden ({} hidden), {rows3_back} after the cancel",
            u.rows_hidden
        )
        .into());
    }
    let u2 = store.delete_events(undoable)?;
    let t = Instant::now();
    let resolved = store.resolve_logical_requests(u2.undo_until_us.unwrap_or(0))?;
    let resolve_t = t.elapsed();
    let (q3_bits, rows3_bits) = timed_sql(&store, count3)?;
    if resolved != vec![u2.request_id] || rows3_bits != rows3_logical {
        return Err(format!("undo: resolved {resolved:?}, {rows3_bits} rows after").into());
    }

    // 3. Purge and verify.
    let t = Instant::now();
    let report = store.compact(CompactRequest::now())?;
    let purge_t = t.elapsed();

    // 4. Export of the most active distinct id, against SQL.
    let top = run_sql(
        &store,
        "SELECT project_id, distinct_id, count(*) AS n FROM events GROUP BY project_id, distinct_id ORDER BY n DESC LIMIT 1",
    )?;
    let (top_project, top_id) = top
        .first()
        .and_then(|b| {
            let p = b.column(0).as_primitive_opt::<Int64Type>()?;
            let d = b.column(1).as_string_view_opt()?;
            (b.num_rows() > 0).then(|| (p.value(0), d.value(0).to_string()))
        })
        .ok_or("no rows")?;
    let mut export_times = Vec::new();
    let mut exported = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = store.rows_of_distinct_ids(
            top_project,
            std::slice::from_ref(&top_id),
            &[],
            &mut |_, _| Ok(()),
        )?;
        export_times.push(t.elapsed());
        exported = r.rows.values().sum::<u64>();
    }
    let export_t = median(export_times);
    // SQL reading the same rows' columns (pruned by DataFusion through
    // the parts' statistics on distinct_id; the value is a checksum).
    let (sql_export_t, _) = timed_sql(
        &store,
        &format!(
            "SELECT sum(length(CAST(uuid AS VARCHAR)) + length(event) + length(distinct_id) + length(coalesce(CAST(person_id AS VARCHAR), '')) + length(coalesce(properties, '')) + length(coalesce(session_id, ''))) + count(timestamp) + count(_seq) FROM events WHERE project_id = {top_project} AND distinct_id = '{}'",
            top_id.replace('\'', "''")
        ),
    )?;

    // 5. Retention: 60 days at the generator's end day expires 30 of 90.
    let end_day = elide_gen::GenConfig::default()
        .end_day
        .and_hms_opt(1, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
        .ok_or("end day")?;
    let parts_before = store.status()?.totals.parts;
    for p in 1..=i64::from(a.projects) {
        store.set_project_settings(
            p,
            elide_store::ProjectSettings {
                retention_days: Some(60),
                ..Default::default()
            },
        )?;
    }
    let t = Instant::now();
    let sweeps = store.apply_retention(end_day)?;
    let sweep_t = t.elapsed();
    let parts_dropped: usize = sweeps.iter().map(|s| s.parts_dropped).sum();
    let rows_expired: u64 = sweeps.iter().map(|s| s.rows_hidden).sum();
    let t = Instant::now();
    let after = store.compact(CompactRequest::now())?;
    let after_t = t.elapsed();
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
        "undo, project 3 ({rows3} rows), $pageview ({} rows) with a 1 h window: hidden in {:.1} ms; count(*) of the project {:.1} ms before, {:.1} ms first and {:.1} ms after while hidden by the predicate ({:.2}x), {:.1} ms once resolved to bits ({:.2}x); cancel {:.1} ms; resolution after the window {:.1} ms",
        u.rows_hidden,
        ms(undo_t),
        ms(q3_before),
        ms(q3_first),
        ms(q3_logical),
        ms(q3_logical) / ms(q3_before).max(1e-9),
        ms(q3_bits),
        ms(q3_bits) / ms(q3_before).max(1e-9),
        ms(cancel_t),
        ms(resolve_t)
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
    println!(
        "export of the most active distinct id ({exported} rows, project {top_project}): {:.1} ms through the index; SQL reading the same rows' columns {:.1} ms: {:.2}x",
        ms(export_t),
        ms(sql_export_t),
        ms(export_t) / ms(sql_export_t).max(1e-9)
    );
    println!(
        "retention 60 days at the generator's end day: {} sweeps, {rows_expired} rows, {parts_dropped} of {parts_before} parts removed whole in {:.1} ms; the compaction after it: {} parts rewritten, {} bytes written, {} requests verified in {:.2} s",
        sweeps.len(),
        ms(sweep_t),
        after.summary.parts_purged,
        after.summary.bytes_written,
        after.requests_verified.len(),
        after_t.as_secs_f64()
    );
    Ok(())
}
