//! `elide bench`: the benchmark harness behind `docs/benchmarks.md`.
//!
//! One run, one process, so that every figure that is a ratio compares
//! measurements taken moments apart on the same machine:
//!
//! 1. ingest: generated batches through `Store::append` (generation not
//!    timed), then the final flush; peak RSS of the process;
//! 2. a snapshot is pinned (the "before" state);
//! 3. deletion latency: persons (all their distinct ids) one per call
//!    (median of many), then the rest of `--delete-fraction` of the persons
//!    packed into calls of up to 1000 distinct ids;
//! 4. queries, interleaved round by round on three tables over the same
//!    part files: DataFusion's own `ListingTable`, Elide as of the pinned
//!    snapshot (no deletion) and Elide now (with tombstones). Row counts are
//!    checked: the deleted rows are exactly the ones missing;
//! 5. close, reopen, and the first deletions after open (the distinct-id
//!    index is built in the background at open);
//! 6. compaction (see `bench_compaction.rs`): purge throughput against a
//!    plain arrow/parquet rewrite of the same parts, write amplification
//!    (deletes spread over all projects, then concentrated in one), query
//!    latency while a throttled purge runs against idle, and the time from
//!    a deletion to `verified`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use elide_store::{DeleteSpec, Store, StoreOptions, Table};
use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::cli::progress_bar;
use crate::output::anyhow_lite::Result;

/// Arguments of `elide bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Data directory for the benchmark store (must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Persons.
    #[arg(long, default_value_t = 100_000)]
    persons: u64,
    /// Projects.
    #[arg(long, default_value_t = 3)]
    projects: u32,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timed repetitions of each query (median reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Fraction of persons to delete before the "after" queries.
    #[arg(long, default_value_t = 0.01)]
    delete_fraction: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Skip the compaction figures (step 6).
    #[arg(long)]
    no_compaction: bool,
    /// I/O limit of the throttled purge of step 6, MiB/s.
    #[arg(long, default_value_t = 64)]
    throttle_mib: u64,
}

const QUERIES: &[(&str, &str)] = &[
    ("count_by_event_p1", "SELECT event, count(*) AS n FROM {t} WHERE project_id = 1 GROUP BY event"),
    ("distinct_persons_by_day", "SELECT date_trunc('day', timestamp) AS d, count(DISTINCT person_id) AS n FROM {t} GROUP BY 1"),
    ("full_row_scan", "SELECT * FROM {t}"),
];

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Run a query to completion, streaming (full scans are not materialized).
pub(crate) async fn run_query(ctx: &SessionContext, sql: &str) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    let mut n = 0u64;
    while let Some(b) = stream.next().await {
        n += b?.num_rows() as u64;
    }
    Ok((started.elapsed(), n))
}

#[derive(Debug, serde::Serialize)]
struct QueryFigures {
    name: String,
    sql: String,
    listing_ms: f64,
    elide_ms: f64,
    elide_over_listing: f64,
    after_delete_ms: f64,
    after_over_before: f64,
    rows_before: u64,
    rows_after: u64,
}

#[derive(Debug, serde::Serialize)]
struct DeleteCall {
    persons: usize,
    distinct_ids: usize,
    rows_hidden: u64,
    ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    events: u64,
    persons: u64,
    projects: u32,
    parts: usize,
    bytes: u64,
    ingest_seconds: f64,
    ingest_events_per_sec: f64,
    append_only_events_per_sec: f64,
    peak_rss_after_ingest_mib: Option<f64>,
    delete_one_person_median_ms: f64,
    delete_one_person_p90_ms: f64,
    delete_calls: Vec<DeleteCall>,
    delete_1000_ids_one_call_ms: Option<f64>,
    persons_deleted: usize,
    distinct_ids_deleted: usize,
    /// Rows hidden by the `persons_deleted` persons (what the "after"
    /// queries miss).
    rows_hidden_at_queries: u64,
    /// All rows hidden in the run (with the 1000-id call and after reopen).
    rows_hidden: u64,
    queries: Vec<QueryFigures>,
    reopen_ms: f64,
    first_delete_after_reopen_ms: f64,
    second_delete_after_reopen_ms: f64,
    compaction: Option<crate::bench_compaction::CompactionFigures>,
    peak_rss_mib: Option<f64>,
}

fn delete_ids(store: &Store, project_id: i64, ids: Vec<String>) -> Result<(u64, Duration)> {
    let t = Instant::now();
    let o = store.delete(DeleteSpec::ids(project_id, ids))?;
    Ok((o.rows_hidden, t.elapsed()))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let dir = &args.data_dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(format!(
            "{} is not empty; the benchmark needs a fresh directory",
            dir.display()
        )
        .into());
    }
    if args.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.delete_fraction) {
        return Err("--delete-fraction must be between 0 and 1".into());
    }
    let opts = StoreOptions {
        background_compaction: false,
        ..StoreOptions::default()
    };
    let store = Store::open(dir, opts.clone())?;
    let rt = crate::cli::runtime()?;

    // 1. Ingest.
    let cfg = elide_gen::GenConfig {
        events: args.events,
        persons: args.persons,
        projects: args.projects,
        seed: args.seed,
        ..Default::default()
    };
    let bar = progress_bar(args.events, "ingesting");
    let mut in_append = Duration::ZERO;
    let started = Instant::now();
    let mut gen_time = Duration::ZERO;
    let mut generator = elide_gen::Generator::new(cfg)?;
    loop {
        let g = Instant::now();
        let Some(batch) = generator.next() else { break };
        gen_time += g.elapsed();
        let a = Instant::now();
        store.append(Table::Events, &batch)?;
        in_append += a.elapsed();
        bar.inc(batch.num_rows() as u64);
    }
    let f = Instant::now();
    store.flush()?;
    let flush_time = f.elapsed();
    bar.finish_and_clear();
    let ingest = started.elapsed() - gen_time;
    let ingest_secs = ingest.as_secs_f64();
    eprintln!(
        "ingest: {:.2} s ({:.0} events/s; append calls {:.2} s, final flush {:.2} s)",
        ingest_secs,
        args.events as f64 / ingest_secs,
        in_append.as_secs_f64(),
        flush_time.as_secs_f64()
    );
    let rss_ingest = peak_rss_mib();
    let status = store.status()?;
    let parts: usize = status.partitions.iter().map(|p| p.parts).sum();
    let bytes: u64 = status.partitions.iter().map(|p| p.bytes).sum();

    // 2. The state before any deletion, pinned.
    let before = Arc::new(store.snapshot()?);
    let ctx_before = elide_query::session_context_at(Arc::clone(&before))?;

    // 3. Deletions: whole persons (every distinct id seen with their person_id).
    let persons = rt.block_on(async {
        let b = ctx_before
            .sql(
                "SELECT project_id, person_id, distinct_id FROM events \
                 WHERE person_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
            .await?
            .collect()
            .await?;
        let mut out: std::collections::BTreeMap<(i64, String), Vec<String>> = Default::default();
        for b in b {
            let p = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let utf8 =
                |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8);
            let (person, d) = (utf8(1)?, utf8(2)?);
            let (person, d) = (person.as_string::<i32>(), d.as_string::<i32>());
            for i in 0..b.num_rows() {
                out.entry((p.value(i), person.value(i).to_string()))
                    .or_default()
                    .push(d.value(i).to_string());
            }
        }
        Ok::<_, datafusion::error::DataFusionError>(out)
    })?;
    let mut pool: Vec<(i64, Vec<String>)> = persons
        .into_iter()
        .map(|((project, _), ids)| (project, ids))
        .collect();
    let total_persons = pool.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    pool.shuffle(&mut rng);
    let target = ((total_persons as f64) * args.delete_fraction).ceil() as usize;
    // Two persons are kept back for the deletions after reopen.
    let reserve: Vec<(i64, Vec<String>)> = pool.split_off(pool.len().saturating_sub(2));
    let rest: Vec<(i64, Vec<String>)> = pool.split_off(target.min(pool.len()));
    let mut rows_hidden = 0;
    let mut ids_deleted = 0;
    let persons_deleted = pool.len();
    let singles = pool.len().min(50);
    let mut ones = Vec::new();
    for (project, ids) in pool.drain(..singles) {
        ids_deleted += ids.len();
        let (n, t) = delete_ids(&store, project, ids)?;
        rows_hidden += n;
        ones.push(t);
    }
    ones.sort();
    let p90 = ones.get(ones.len() * 9 / 10).copied().unwrap_or_default();
    let one_median = median(ones);
    // The rest, per project, in calls of at most 1000 distinct ids.
    pool.sort_by_key(|(p, _)| *p);
    let mut calls = Vec::new();
    let mut i = 0;
    while i < pool.len() {
        let project = pool[i].0;
        let mut ids: Vec<String> = Vec::new();
        let mut n_persons = 0;
        while i < pool.len() && pool[i].0 == project && ids.len() + pool[i].1.len() <= 1000 {
            ids.extend(pool[i].1.iter().cloned());
            n_persons += 1;
            i += 1;
        }
        if n_persons == 0 {
            // A person with more than 1000 distinct ids: not in this workload.
            return Err("a generated person has more than 1000 distinct ids".into());
        }
        let n_ids = ids.len();
        ids_deleted += n_ids;
        let (n, t) = delete_ids(&store, project, ids)?;
        rows_hidden += n;
        calls.push(DeleteCall {
            persons: n_persons,
            distinct_ids: n_ids,
            rows_hidden: n,
            ms: ms(t),
        });
    }
    eprintln!(
        "delete: one person median {:.2} ms (p90 {:.2}); {} calls of up to 1000 ids: {:?} ms; {persons_deleted} persons, {ids_deleted} ids, {rows_hidden} rows hidden",
        ms(one_median),
        ms(p90),
        calls.len(),
        calls.iter().map(|c| c.ms).collect::<Vec<_>>()
    );
    let ctx_after = elide_query::session_context(&store)?;
    let hidden_at_queries = rows_hidden;

    // 4. Queries, interleaved: ListingTable, before, after.
    // Parts live in nested partition directories; ListingTable skips
    // subdirectories unless told otherwise. The copied configuration
    // says not to create the default catalog (Elide's session was built
    // from an existing state that had one); this new session needs it.
    let listing = SessionContext::new_with_config(
        ctx_after
            .copied_config()
            .with_create_default_catalog_and_schema(true)
            .set_bool(
                "datafusion.execution.listing_table_ignore_subdirectory",
                false,
            ),
    );
    register_listing(&rt, &listing, &dir.join("parts").join("events"))?;
    let mut queries = Vec::new();
    for (name, q) in QUERIES {
        let mut times: [Vec<Duration>; 3] = Default::default();
        let mut rows = [0u64; 3];
        for round in 0..=args.repeat {
            for (k, (ctx, table)) in [
                (&listing, "listing"),
                (&ctx_before, "events"),
                (&ctx_after, "events"),
            ]
            .into_iter()
            .enumerate()
            {
                let (t, n) = rt.block_on(run_query(ctx, &q.replace("{t}", table)))?;
                rows[k] = n;
                if round > 0 {
                    times[k].push(t);
                }
            }
        }
        let [l, b, a] = times.map(median);
        eprintln!(
            "{name}: listing {:.1} ms, elide {:.1} ms, after deletion {:.1} ms",
            ms(l),
            ms(b),
            ms(a)
        );
        if rows[0] != rows[1] {
            return Err(format!(
                "{name}: Elide returned {} rows, ListingTable {}",
                rows[1], rows[0]
            )
            .into());
        }
        if *name == "full_row_scan" && rows[1].checked_sub(rows[2]) != Some(rows_hidden) {
            return Err(format!(
                "full scan: {} rows before the deletions, {} after; the deletions hid {rows_hidden}",
                rows[1], rows[2]
            )
            .into());
        }
        queries.push(QueryFigures {
            name: name.to_string(),
            sql: q.replace("{t}", "events"),
            listing_ms: ms(l),
            elide_ms: ms(b),
            elide_over_listing: ms(b) / ms(l),
            after_delete_ms: ms(a),
            after_over_before: ms(a) / ms(b),
            rows_before: rows[1],
            rows_after: rows[2],
        });
    }
    drop((ctx_before, ctx_after, listing, before));

    // 4b. 1000 distinct ids of one project in one call (persons not yet
    // deleted), after the queries so that they do not change them.
    let mut by_project: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    for (project, ids) in &rest {
        by_project
            .entry(*project)
            .or_default()
            .extend(ids.iter().cloned());
    }
    let mut thousand_ms = None;
    let mut taken: std::collections::HashSet<(i64, String)> = Default::default();
    if let Some((project, mut ids)) = by_project
        .iter()
        .max_by_key(|(_, v)| v.len())
        .map(|(p, v)| (*p, v.clone()))
    {
        ids.truncate(1000);
        if ids.len() == 1000 {
            taken.extend(ids.iter().map(|d| (project, d.clone())));
            let (n, t) = delete_ids(&store, project, ids)?;
            rows_hidden += n;
            ids_deleted += 1000;
            thousand_ms = Some(ms(t));
            eprintln!(
                "delete: 1000 distinct ids in one call {:.2} ms ({n} rows)",
                ms(t)
            );
        }
    }

    // 5. Reopen; the first deletions after open.
    store.close()?;
    let t = Instant::now();
    let store = Store::open(dir, opts)?;
    let reopen = t.elapsed();
    let mut after_open = Vec::new();
    for (project, ids) in reserve {
        let (n, t) = delete_ids(&store, project, ids)?;
        rows_hidden += n;
        after_open.push(ms(t));
    }
    eprintln!(
        "reopen {:.1} ms; deletions right after: {after_open:?} ms",
        ms(reopen)
    );
    // 6. Compaction. Persons for the concentrated deletes and the
    // delete-to-verified timing come from those not deleted yet (the
    // 1000-id call above took the first 1000 ids of its project).
    let compaction = if args.no_compaction {
        None
    } else {
        let untouched: Vec<(i64, Vec<String>)> = rest
            .into_iter()
            .filter(|(p, ids)| !ids.iter().any(|d| taken.contains(&(*p, d.clone()))))
            .collect();
        Some(crate::bench_compaction::run(
            &store,
            &rt,
            dir,
            &untouched,
            args.delete_fraction,
            args.repeat,
            args.throttle_mib << 20,
        )?)
    };
    let report = Report {
        events: args.events,
        persons: args.persons,
        projects: args.projects,
        parts,
        bytes,
        ingest_seconds: ingest_secs,
        ingest_events_per_sec: args.events as f64 / ingest_secs,
        append_only_events_per_sec: args.events as f64 / in_append.as_secs_f64(),
        peak_rss_after_ingest_mib: rss_ingest,
        delete_one_person_median_ms: ms(one_median),
        delete_one_person_p90_ms: ms(p90),
        delete_calls: calls,
        delete_1000_ids_one_call_ms: thousand_ms,
        persons_deleted,
        distinct_ids_deleted: ids_deleted,
        rows_hidden_at_queries: hidden_at_queries,
        rows_hidden,
        queries,
        reopen_ms: ms(reopen),
        first_delete_after_reopen_ms: after_open.first().copied().unwrap_or(f64::NAN),
        second_delete_after_reopen_ms: after_open.get(1).copied().unwrap_or(f64::NAN),
        compaction,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    store.close()?;
    Ok(())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn register_listing(rt: &tokio::runtime::Runtime, ctx: &SessionContext, dir: &Path) -> Result<()> {
    let url = ListingTableUrl::parse(format!("{}/", dir.canonicalize()?.display()))?;
    let opts =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let state = ctx.state();
    let schema = rt.block_on(opts.infer_schema(&state, &url))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .with_schema(schema);
    ctx.register_table("listing", Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.0}"))
}

fn print_report(r: &Report) {
    println!(
        "events {}  persons {}  projects {}  parts {}  bytes {}",
        r.events, r.persons, r.projects, r.parts, r.bytes
    );
    println!(
        "ingest: {:.2} s, {:.0} events/s (append calls only: {:.0} events/s), peak RSS after ingest {} MiB",
        r.ingest_seconds,
        r.ingest_events_per_sec,
        r.append_only_events_per_sec,
        opt(r.peak_rss_after_ingest_mib)
    );
    println!(
        "delete one person: median {:.2} ms, p90 {:.2} ms",
        r.delete_one_person_median_ms, r.delete_one_person_p90_ms
    );
    for c in &r.delete_calls {
        println!(
            "delete call: {} persons, {} distinct ids, {} rows hidden: {:.2} ms",
            c.persons, c.distinct_ids, c.rows_hidden, c.ms
        );
    }
    println!(
        "delete 1000 distinct ids in one call: {} ms",
        r.delete_1000_ids_one_call_ms
            .map_or("n/a".into(), |v| format!("{v:.2}"))
    );
    println!(
        "queries after deleting {} persons: {} rows hidden ({:.2}% of events); {} distinct ids and {} rows deleted in the whole run",
        r.persons_deleted,
        r.rows_hidden_at_queries,
        100.0 * r.rows_hidden_at_queries as f64 / r.events.max(1) as f64,
        r.distinct_ids_deleted,
        r.rows_hidden
    );
    println!(
        "{:<26} {:>10} {:>10} {:>8} {:>12} {:>8}",
        "query", "listing ms", "elide ms", "ratio", "after del.", "ratio"
    );
    for q in &r.queries {
        println!(
            "{:<26} {:>10.1} {:>10.1} {:>8.3} {:>12.1} {:>8.3}",
            q.name,
            q.listing_ms,
            q.elide_ms,
            q.elide_over_listing,
            q.after_delete_ms,
            q.after_over_before
        );
    }
    println!(
        "reopen {:.1} ms; first deletion after reopen {:.2} ms, second {:.2} ms; peak RSS {} MiB",
        r.reopen_ms,
        r.first_delete_after_reopen_ms,
        r.second_delete_after_reopen_ms,
        opt(r.peak_rss_mib)
    );
    if let Some(c) = &r.compaction {
        crate::bench_compaction::print(c);
    }
}
