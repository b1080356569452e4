//! `elide bench`: the benchmark harness behind `docs/benchmarks.md`.
//!
//! One run, one process, so that every figure that is a ratio compares two
//! measurements taken minutes apart on the same machine:
//!
//! 1. ingest: generated batches through `Store::append` (generation not
//!    timed), then the final flush; peak RSS of the process;
//! 2. baseline queries (no deletion) on Elide and on DataFusion's own
//!    `ListingTable` over the same part files;
//! 3. deletion latency: one distinct id (median of many), then 1000 in one
//!    call, repeated until about 1% of persons are deleted;
//! 4. the same queries again, with tombstones.

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
    /// Fraction of distinct ids to delete before the "after" queries.
    #[arg(long, default_value_t = 0.01)]
    delete_fraction: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Run a query to completion, streaming (full scans are not materialized).
async fn time_query(ctx: &SessionContext, sql: &str, repeat: usize) -> Result<(Duration, u64)> {
    let mut times = Vec::new();
    let mut rows = 0;
    for i in 0..=repeat {
        let started = Instant::now();
        let mut stream = ctx.sql(sql).await?.execute_stream().await?;
        let mut n = 0u64;
        while let Some(b) = stream.next().await {
            n += b?.num_rows() as u64;
        }
        if i > 0 {
            times.push(started.elapsed());
        }
        rows = n;
    }
    Ok((median(times), rows))
}

#[derive(Debug, serde::Serialize)]
struct QueryFigures {
    name: String,
    elide_ms: f64,
    listing_ms: f64,
    elide_over_listing: f64,
    after_delete_ms: f64,
    after_over_before: f64,
    rows_before: u64,
    rows_after: u64,
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
    peak_rss_mib: Option<f64>,
    index_build_ms: f64,
    delete_one_median_ms: f64,
    delete_one_p90_ms: f64,
    delete_1000_ms: Vec<f64>,
    distinct_ids_deleted: usize,
    rows_hidden: u64,
    queries: Vec<QueryFigures>,
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
    let store = Store::open(dir, StoreOptions::default())?;
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
    let rss = peak_rss_mib();
    let status = store.status()?;
    let parts: usize = status.partitions.iter().map(|p| p.parts).sum();
    let bytes: u64 = status.partitions.iter().map(|p| p.bytes).sum();

    // 2. Baseline queries, Elide and ListingTable.
    let ctx = elide_query::session_context(&store)?;
    let listing = SessionContext::new_with_config(ctx.copied_config());
    register_listing(&rt, &listing, &dir.join("parts").join("events"))?;
    let mut before = Vec::new();
    for (name, q) in QUERIES {
        let e = rt.block_on(time_query(&ctx, &q.replace("{t}", "events"), args.repeat))?;
        let l = rt.block_on(time_query(
            &listing,
            &q.replace("{t}", "listing"),
            args.repeat,
        ))?;
        eprintln!("{name}: elide {:.1} ms, listing {:.1} ms", ms(e.0), ms(l.0));
        before.push((name, e, l));
    }

    // 3. Deletions.
    let ids = rt.block_on(async {
        let b = ctx
            .sql("SELECT project_id, distinct_id FROM events GROUP BY 1, 2 ORDER BY 1, 2")
            .await?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in b {
            let p = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let d = b.column(1).as_string::<i32>();
            for i in 0..b.num_rows() {
                out.push((p.value(i), d.value(i).to_string()));
            }
        }
        Ok::<_, datafusion::error::DataFusionError>(out)
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut pool = ids.clone();
    pool.shuffle(&mut rng);
    let target = ((ids.len() as f64) * args.delete_fraction).ceil() as usize;
    let mut rows_hidden = 0;
    let mut deleted = 0;
    // The first deletion builds the distinct-id index.
    let (p0, d0) = pool.pop().ok_or("no data")?;
    let t = Instant::now();
    rows_hidden += store
        .delete(DeleteSpec {
            project_id: p0,
            distinct_ids: vec![d0],
            cutoff: None,
            tables: vec![],
        })?
        .rows_hidden;
    let index_build = t.elapsed();
    deleted += 1;
    let mut ones = Vec::new();
    for _ in 0..50.min(target.saturating_sub(1)).max(10) {
        let Some((p, d)) = pool.pop() else { break };
        let t = Instant::now();
        rows_hidden += store
            .delete(DeleteSpec {
                project_id: p,
                distinct_ids: vec![d],
                cutoff: None,
                tables: vec![],
            })?
            .rows_hidden;
        ones.push(t.elapsed());
        deleted += 1;
    }
    ones.sort();
    let p90 = ones.get(ones.len() * 9 / 10).copied().unwrap_or_default();
    let one_median = median(ones.clone());
    let mut thousands = Vec::new();
    while deleted < target || thousands.is_empty() {
        // 1000 ids of one project in one call.
        let project = match pool.last() {
            Some((p, _)) => *p,
            None => break,
        };
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        while let Some((p, d)) = pool.pop() {
            if p == project && batch.len() < 1000 {
                batch.push(d)
            } else {
                rest.push((p, d))
            }
            if batch.len() == 1000 {
                break;
            }
        }
        pool.extend(rest.into_iter().rev());
        let n = batch.len();
        let t = Instant::now();
        rows_hidden += store
            .delete(DeleteSpec {
                project_id: project,
                distinct_ids: batch,
                cutoff: None,
                tables: vec![],
            })?
            .rows_hidden;
        let el = t.elapsed();
        if n == 1000 {
            thousands.push(ms(el));
        }
        deleted += n;
    }
    eprintln!("delete: index build {:.1} ms, one id median {:.2} ms (p90 {:.2}), 1000 ids {:?} ms; {deleted} ids, {rows_hidden} rows hidden", ms(index_build), ms(one_median), ms(p90), thousands);

    // 4. Queries after the deletions.
    let mut queries = Vec::new();
    for (name, e, l) in before {
        let q = QUERIES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, q)| *q)
            .unwrap_or_default();
        let a = rt.block_on(time_query(&ctx, &q.replace("{t}", "events"), args.repeat))?;
        eprintln!(
            "{name}: after deletion {:.1} ms ({:.3}x)",
            ms(a.0),
            ms(a.0) / ms(e.0)
        );
        queries.push(QueryFigures {
            name: name.to_string(),
            elide_ms: ms(e.0),
            listing_ms: ms(l.0),
            elide_over_listing: ms(e.0) / ms(l.0),
            after_delete_ms: ms(a.0),
            after_over_before: ms(a.0) / ms(e.0),
            rows_before: e.1,
            rows_after: a.1,
        });
    }
    let report = Report {
        events: args.events,
        persons: args.persons,
        projects: args.projects,
        parts,
        bytes,
        ingest_seconds: ingest_secs,
        ingest_events_per_sec: args.events as f64 / ingest_secs,
        append_only_events_per_sec: args.events as f64 / in_append.as_secs_f64(),
        peak_rss_mib: rss,
        index_build_ms: ms(index_build),
        delete_one_median_ms: ms(one_median),
        delete_one_p90_ms: ms(p90),
        delete_1000_ms: thousands,
        distinct_ids_deleted: deleted,
        rows_hidden,
        queries,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    store.close()?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
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

fn print_report(r: &Report) {
    println!(
        "events {}  persons {}  projects {}  parts {}  bytes {}",
        r.events, r.persons, r.projects, r.parts, r.bytes
    );
    println!(
        "ingest: {:.2} s, {:.0} events/s (append calls only: {:.0} events/s), peak RSS {:.0} MiB",
        r.ingest_seconds,
        r.ingest_events_per_sec,
        r.append_only_events_per_sec,
        r.peak_rss_mib.unwrap_or(f64::NAN)
    );
    println!("delete: index build (first delete) {:.1} ms; one distinct id median {:.2} ms, p90 {:.2} ms; 1000 ids in one call {:?} ms", r.index_build_ms, r.delete_one_median_ms, r.delete_one_p90_ms, r.delete_1000_ms);
    println!(
        "deleted {} distinct ids, {} rows hidden",
        r.distinct_ids_deleted, r.rows_hidden
    );
    println!(
        "{:<26} {:>10} {:>10} {:>8} {:>12} {:>8}",
        "query", "elide ms", "listing", "ratio", "after del.", "ratio"
    );
    for q in &r.queries {
        println!(
            "{:<26} {:>10.1} {:>10.1} {:>8.3} {:>12.1} {:>8.3}",
            q.name,
            q.elide_ms,
            q.listing_ms,
            q.elide_over_listing,
            q.after_delete_ms,
            q.after_over_before
        );
    }
}
