//! `elide bench-embed`: the embedding API as an embedder uses it, behind
//! the figures in `docs/benchmarks.md` ("Embedding API"):
//!
//! 1. `Store::ingest_files` of a generated parquet file (one commit);
//! 2. a reopen: how long `open` takes, a deletion of one id at once (while
//!    the in-memory distinct-id index is being built: through the parts'
//!    `.runs` files), then how long `ready()` waits for the index;
//! 3. deleting 1% of the persons with one `delete_many` (one commit),
//!    against another 1% deleted with one `delete` per project (the best
//!    the API allowed before: one commit per project and 1,000 ids), and a
//!    third 1% with one `delete` per person (one commit each; last, since
//!    it adds a request per person to the manifest), on the same store;
//! 4. the same store reopened without the in-memory index
//!    (`StoreOptions::in_memory_index` off): one id, then another 1% in
//!    one `delete_many`, both through `.runs` files;
//! 5. the purge of all (`compact(CompactRequest::now())`) and its
//!    verification.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use elide_store::{CompactRequest, DeleteSpec, IngestOptions, Store, StoreOptions, Table};

use crate::bench::median;
use crate::cli::{progress_bar, run_sql};
use crate::output::anyhow_lite::Result;

/// Arguments of `elide bench-embed`.
#[derive(Debug, clap::Args)]
pub struct BenchEmbedArgs {
    /// Work directory (must be empty or absent): the generated input and
    /// the store go under it.
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

/// Every 100th (project, distinct id) in id order, from `offset`: 1% of
/// the persons.
fn one_percent(store: &Store, offset: u32) -> Result<Vec<(i64, String)>> {
    let sql = format!(
        "SELECT project_id, distinct_id FROM (SELECT project_id, distinct_id,
           row_number() OVER (ORDER BY distinct_id, project_id) AS n
           FROM (SELECT DISTINCT project_id, distinct_id FROM events)) WHERE n % 100 = {offset}"
    );
    let mut out = Vec::new();
    for b in run_sql(store, &sql)? {
        let p = b.column(0).as_primitive_opt::<Int64Type>();
        let d = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)?;
        let d = d.as_string_opt::<i32>();
        let (Some(p), Some(d)) = (p, d) else {
            return Err("unexpected column types".into());
        };
        for i in 0..b.num_rows() {
            out.push((p.value(i), d.value(i).to_string()));
        }
    }
    Ok(out)
}

/// The distinct ids of `pairs`, by project.
fn by_project(pairs: &[(i64, String)]) -> BTreeMap<i64, Vec<String>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (p, d) in pairs {
        out.entry(*p).or_default().push(d.clone());
    }
    out
}

/// The store options of the embedding benchmarks: background work off, so
/// that every step is the caller's.
pub(crate) fn bench_store_options() -> StoreOptions {
    StoreOptions {
        background_compaction: false,
        ..StoreOptions::default()
    }
}

/// What [`generate_and_ingest`] made.
pub(crate) struct Ingested {
    /// The store's directory (closed).
    pub dir: PathBuf,
    /// Rows ingested.
    pub rows: u64,
    /// Seconds `ingest_files` took.
    pub ingest_s: f64,
}

/// Generate `events` (in an empty or absent `work`) and ingest them with
/// `Store::ingest_files` as an embedder does; the store is closed after.
pub(crate) fn generate_and_ingest(
    work: &std::path::Path,
    events: u64,
    persons: u64,
    projects: u32,
    opts: StoreOptions,
) -> Result<Ingested> {
    if work.exists() && std::fs::read_dir(work)?.next().is_some() {
        return Err(format!("{} is not empty", work.display()).into());
    }
    std::fs::create_dir_all(work)?;
    let input = work.join("input.parquet");
    let cfg = elide_gen::GenConfig {
        events,
        persons,
        projects,
        ..Default::default()
    };
    let bar = progress_bar(events, "generating");
    elide_gen::write_parquet(cfg, &input, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    // On disk before anything is timed: otherwise the kernel writes the
    // file back (some 30 s after it was written) during the timings.
    std::fs::File::open(&input)?.sync_all()?;
    let dir = work.join("store");
    let store = Store::open(&dir, opts)?;
    let bar = progress_bar(events, "ingesting");
    let t = Instant::now();
    let ingested = store.ingest_files(
        Table::Events,
        &[&input],
        IngestOptions::new().progress(|p| bar.set_position(p.rows)),
    )?;
    let ingest_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    store.close()?;
    Ok(Ingested {
        dir,
        rows: ingested.rows,
        ingest_s,
    })
}

/// `elide bench-embed`.
pub fn run(a: BenchEmbedArgs) -> Result<()> {
    // 1. Ingest.
    let Ingested {
        dir,
        rows: ingested_rows,
        ingest_s,
    } = generate_and_ingest(
        &a.data_dir,
        a.events,
        a.persons,
        a.projects,
        bench_store_options(),
    )?;
    let opts = bench_store_options;

    // The ids of every step, chosen before the timings (a query after the
    // reopen would give the index build time to finish).
    let (many, single, per_project, files_many, first) = {
        let store = Store::open(&dir, opts())?;
        let ids = (
            one_percent(&store, 0)?,
            one_percent(&store, 50)?,
            one_percent(&store, 25)?,
            one_percent(&store, 75)?,
            one_percent(&store, 10)?,
        );
        store.close()?;
        ids
    };
    const REOPENS: usize = 5;
    let Some(files_first) = first.get(REOPENS) else {
        return Err("too few persons to choose from".into());
    };

    // 2. Reopen: open, one deletion at once (the index is being built),
    // five times; then ready().
    let (mut open_times, mut first_times, mut first_rows) = (Vec::new(), Vec::new(), 0);
    let mut reopened = None;
    for (p, d) in first.iter().take(REOPENS) {
        if let Some(s) = reopened.take() {
            Store::close(s)?;
        }
        let t = Instant::now();
        let store = Store::open(&dir, opts())?;
        open_times.push(t.elapsed());
        let t = Instant::now();
        first_rows += store.delete(DeleteSpec::ids(*p, [d.as_str()]))?.rows_hidden;
        first_times.push(t.elapsed());
        reopened = Some(store);
    }
    let store = reopened.ok_or("no reopen")?;
    let all_ms = |v: &[std::time::Duration]| {
        v.iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (open_all, first_all) = (all_ms(&open_times), all_ms(&first_times));
    let open_ms = median(open_times).as_secs_f64() * 1e3;
    let first_ms = median(first_times).as_secs_f64() * 1e3;
    let t = Instant::now();
    store.ready()?;
    let ready_ms = t.elapsed().as_secs_f64() * 1e3;
    let parts = store.status()?.totals.parts;

    // 3. 1% in one call, another 1% one call per person.
    let t = Instant::now();
    let outcomes = store.delete_many(
        by_project(&many)
            .into_iter()
            .map(|(p, ids)| DeleteSpec::ids(p, ids)),
    )?;
    let many_ms = t.elapsed().as_secs_f64() * 1e3;
    let many_rows: u64 = outcomes.iter().map(|o| o.rows_hidden).sum();
    // A third 1% the best way before delete_many: one `delete` per project
    // (per 1,000 ids), each its own commit.
    let (mut project_calls, mut project_rows) = (0, 0);
    let t = Instant::now();
    for (p, ids) in by_project(&per_project) {
        for chunk in ids.chunks(elide_store::MAX_DELETE_IDS) {
            project_rows += store.delete(DeleteSpec::ids(p, chunk.iter()))?.rows_hidden;
            project_calls += 1;
        }
    }
    let project_ms = t.elapsed().as_secs_f64() * 1e3;
    // Last, as it adds a request per person to the manifest.
    let mut calls = Vec::with_capacity(single.len());
    let mut single_rows = 0;
    let t = Instant::now();
    for (p, d) in &single {
        let c = Instant::now();
        single_rows += store.delete(DeleteSpec::ids(*p, [d.as_str()]))?.rows_hidden;
        calls.push(c.elapsed());
    }
    let single_ms = t.elapsed().as_secs_f64() * 1e3;

    // Without the in-memory index: every deletion through `.runs` files.
    store.close()?;
    let t = Instant::now();
    let store = Store::open(
        &dir,
        StoreOptions {
            in_memory_index: false,
            ..opts()
        },
    )?;
    let files_open_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let files_first_rows = store
        .delete(DeleteSpec::ids(files_first.0, [files_first.1.as_str()]))?
        .rows_hidden;
    let files_first_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let files_outcomes = store.delete_many(
        by_project(&files_many)
            .into_iter()
            .map(|(p, ids)| DeleteSpec::ids(p, ids)),
    )?;
    let files_many_ms = t.elapsed().as_secs_f64() * 1e3;
    let files_many_rows: u64 = files_outcomes.iter().map(|o| o.rows_hidden).sum();
    store.close()?;
    let store = Store::open(&dir, opts())?;

    // 4. Purge and verify.
    let t = Instant::now();
    let report = store.compact(CompactRequest::now())?;
    let purge_s = t.elapsed().as_secs_f64();
    store.close()?;

    println!(
        "ingest_files: {ingested_rows} rows in {ingest_s:.2} s ({:.0} rows/s), {parts} parts",
        ingested_rows as f64 / ingest_s.max(1e-9)
    );
    println!("reopen x {REOPENS}: open median {open_ms:.1} ms ({open_all}); a deletion of 1 id at once (through .runs files while the index builds; {first_rows} rows in all) median {first_ms:.1} ms ({first_all}); then ready() {ready_ms:.1} ms (the in-memory distinct-id index)");
    println!(
        "delete_many: {} ids ({many_rows} rows) in {} requests, one commit: {many_ms:.1} ms",
        many.len(),
        outcomes.len()
    );
    println!(
        "delete per project x {project_calls}: {} ids ({project_rows} rows), one commit each: {project_ms:.1} ms; {:.1}x the single call",
        per_project.len(),
        project_ms / many_ms.max(1e-9)
    );
    println!(
        "delete per person x {}: {} ids ({single_rows} rows), one commit each: {single_ms:.1} ms (p50 {:.2} ms per call); {:.1}x the single call",
        single.len(),
        single.len(),
        median(calls).as_secs_f64() * 1e3,
        single_ms / many_ms.max(1e-9)
    );
    println!(
        "without the in-memory index: open {files_open_ms:.1} ms; 1 id ({files_first_rows} rows) {files_first_ms:.1} ms; delete_many of another 1%: {} ids ({files_many_rows} rows) {files_many_ms:.1} ms ({:.1}x the call with the index)",
        files_many.len(),
        files_many_ms / many_ms.max(1e-9)
    );
    println!(
        "purge: {} rows removed, {} requests verified, {} failures, {purge_s:.2} s",
        report.summary.rows_dropped,
        report.requests_verified.len(),
        report.verification_failures.len()
    );
    Ok(())
}
