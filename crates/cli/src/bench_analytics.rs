//! `elide bench-analytics`: the funnel benchmark behind
//! `docs/benchmarks.md` ("Funnels"):
//!
//! 1. `Store::ingest_files` of a generated parquet file (kept as
//!    `input.parquet` in the work directory for the peers), then a reopen
//!    and `ready()`, as an embedder does;
//! 2. the 3-step funnel `$pageview → signup → purchase`, 7-day window,
//!    strictly increasing, per `person_id`, as a level histogram: with
//!    `window_funnel` (median of 5 after a warm-up) and written with SQL window functions
//!    (median of 3); both must give the same histogram;
//! 3. 1% of persons deleted (every distinct id of every 100th person, one
//!    `delete_many`), the funnel again; then the purge, and again.
//!
//! With `--json` the last line is one JSON object with every figure, for
//! `benches/funnel_vs_clickhouse.py`, which runs ClickHouse's
//! `windowFunnel` (chdb) on the same file in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use elide_store::{CompactRequest, DeleteSpec, Store};

use crate::bench::median;
use crate::cli::run_sql;
use crate::output::anyhow_lite::Result;

/// Arguments of `elide bench-analytics`.
#[derive(Debug, clap::Args)]
pub struct BenchAnalyticsArgs {
    /// Work directory (must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Persons in them.
    #[arg(long, default_value_t = 100_000)]
    persons: u64,
    /// Projects.
    #[arg(long, default_value_t = 5)]
    projects: u32,
    /// End with one line of JSON holding every figure.
    #[arg(long)]
    json: bool,
}

/// The funnel with `window_funnel`.
pub const FUNNEL_UDAF: &str = "SELECT level, count(*) AS persons FROM (
  SELECT person_id, window_funnel(INTERVAL '7 days', 'strict_increase', timestamp,
    event = '$pageview', event = 'signup', event = 'purchase') AS level
  FROM events WHERE event IN ('$pageview', 'signup', 'purchase') AND person_id IS NOT NULL
  GROUP BY person_id
) GROUP BY level ORDER BY level";

/// The same funnel with SQL window functions: for each step-1 row the
/// earliest later signup, then the earliest purchase after that signup
/// (PostHog's legacy construction), the level the best step-1 row
/// reaches within 7 days, strictly increasing.
pub const FUNNEL_WINDOWS: &str = "WITH e AS (
  SELECT person_id, timestamp AS ts, event = '$pageview' AS c1, event = 'signup' AS c2, event = 'purchase' AS c3
  FROM events WHERE event IN ('$pageview', 'signup', 'purchase') AND person_id IS NOT NULL
), l1 AS (
  SELECT person_id, ts, c1,
    MIN(CASE WHEN c2 THEN ts END) OVER w AS t2,
    MIN(CASE WHEN c3 THEN ts END) OVER w AS t3
  FROM e
  WINDOW w AS (PARTITION BY person_id ORDER BY ts ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
), l2 AS (
  SELECT person_id, ts, c1, t2, CASE WHEN t3 <= t2 THEN NULL ELSE t3 END AS t3 FROM l1
), l3 AS (
  SELECT person_id, ts, c1, t2,
    MIN(t3) OVER (PARTITION BY person_id ORDER BY ts ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS t3
  FROM l2
), levels AS (
  SELECT person_id, MAX(CASE
      WHEN t2 IS NOT NULL AND t2 > ts AND t2 <= ts + INTERVAL '7 days' THEN
        CASE WHEN t3 IS NOT NULL AND t3 > t2 AND t3 <= ts + INTERVAL '7 days' THEN 3 ELSE 2 END
      ELSE 1 END) AS level
  FROM l3 WHERE c1 GROUP BY person_id
), everyone AS (
  SELECT DISTINCT person_id FROM e
)
SELECT COALESCE(levels.level, 0) AS level, count(*) AS persons
FROM everyone LEFT JOIN levels ON everyone.person_id = levels.person_id
GROUP BY 1 ORDER BY 1";

/// Level → persons.
type Histogram = BTreeMap<i64, i64>;

fn histogram(store: &Store, sql: &str) -> Result<Histogram> {
    let mut out = Histogram::new();
    for b in run_sql(store, sql)? {
        let l = arrow::compute::cast(b.column(0), &DataType::Int64)?;
        let n = arrow::compute::cast(b.column(1), &DataType::Int64)?;
        let (l, n) = (l.as_primitive::<Int64Type>(), n.as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            out.insert(l.value(i), n.value(i));
        }
    }
    Ok(out)
}

/// The median of `runs` timed runs after one untimed warm-up (as the
/// ClickHouse side of benches/funnel_vs_clickhouse.py is timed).
fn timed(store: &Store, sql: &str, runs: usize) -> Result<(Duration, Histogram)> {
    let mut times = Vec::new();
    let mut h = histogram(store, sql)?;
    for _ in 0..runs {
        let t = Instant::now();
        h = histogram(store, sql)?;
        times.push(t.elapsed());
    }
    Ok((median(times), h))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every distinct id of every 100th person, by project.
fn one_percent_of_persons(store: &Store) -> Result<BTreeMap<i64, Vec<String>>> {
    let sql = "SELECT DISTINCT e.project_id, e.distinct_id FROM events e JOIN (
        SELECT person_id FROM (SELECT person_id, row_number() OVER (ORDER BY person_id) AS n
          FROM (SELECT DISTINCT person_id FROM events WHERE person_id IS NOT NULL)) WHERE n % 100 = 0
      ) chosen ON e.person_id = chosen.person_id";
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for b in run_sql(store, sql)? {
        let d = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let (Some(p), d) = (
            b.column(0).as_primitive_opt::<Int64Type>(),
            d.as_string::<i32>(),
        ) else {
            return Err("unexpected column types".into());
        };
        for i in 0..b.num_rows() {
            out.entry(p.value(i))
                .or_default()
                .push(d.value(i).to_string());
        }
    }
    Ok(out)
}

/// `elide bench-analytics`.
pub fn run(a: BenchAnalyticsArgs) -> Result<()> {
    let ingested = crate::bench_embed::generate_and_ingest(
        &a.data_dir,
        a.events,
        a.persons,
        a.projects,
        crate::bench_embed::bench_store_options(),
    )?;
    let store = Store::open(&ingested.dir, crate::bench_embed::bench_store_options())?;
    store.ready()?;
    eprintln!(
        "ingested {} rows in {:.1} s",
        ingested.rows, ingested.ingest_s
    );

    let (udaf, levels) = timed(&store, FUNNEL_UDAF, 5)?;
    let (windows, levels_windows) = timed(&store, FUNNEL_WINDOWS, 3)?;
    // They differ only where a person has two step events with the same
    // timestamp (rows of equal time are taken in the order read).
    let agree = levels == levels_windows;
    if !agree {
        eprintln!(
            "warning: the two funnels disagree: window_funnel {levels:?}, window functions {levels_windows:?}"
        );
    }
    let chosen = one_percent_of_persons(&store)?;
    let ids: usize = chosen.values().map(Vec::len).sum();
    let t = Instant::now();
    let mut hidden = 0;
    for (p, list) in &chosen {
        for chunk in list.chunks(elide_store::MAX_DELETE_IDS) {
            hidden += store.delete(DeleteSpec::ids(*p, chunk.iter()))?.rows_hidden;
        }
    }
    let delete_ms = ms(t.elapsed());
    let (after_delete, levels_deleted) = timed(&store, FUNNEL_UDAF, 5)?;
    let t = Instant::now();
    store.compact(CompactRequest::now())?;
    let purge_s = t.elapsed().as_secs_f64();
    let (after_purge, levels_purged) = timed(&store, FUNNEL_UDAF, 5)?;
    if levels_deleted != levels_purged {
        return Err(format!(
            "the funnel changed with the purge: {levels_deleted:?} before, {levels_purged:?} after"
        )
        .into());
    }
    store.close()?;

    println!(
        "funnel $pageview → signup → purchase, 7 days, strict_increase, per person_id ({} events):",
        ingested.rows
    );
    println!(
        "  window_funnel                 {:>9.1} ms (median of 5 after a warm-up)",
        ms(udaf)
    );
    println!(
        "  SQL window functions          {:>9.1} ms (median of 3 after a warm-up) = {:.1}x window_funnel",
        ms(windows),
        ms(windows) / ms(udaf)
    );
    println!("  levels {levels:?}");
    println!(
        "  1% of persons deleted ({ids} distinct ids, {hidden} rows, {delete_ms:.0} ms): {:.1} ms = {:.3}x before",
        ms(after_delete),
        ms(after_delete) / ms(udaf)
    );
    println!(
        "  after the purge ({purge_s:.1} s): {:.1} ms = {:.3}x before",
        ms(after_purge),
        ms(after_purge) / ms(udaf)
    );
    if a.json {
        let levels_json: Vec<[i64; 2]> = levels.iter().map(|(l, n)| [*l, *n]).collect();
        let deleted_json: Vec<[i64; 2]> = levels_deleted.iter().map(|(l, n)| [*l, *n]).collect();
        println!(
            "{}",
            serde_json::json!({
                "events": ingested.rows,
                "input": a.data_dir.join("input.parquet"),
                "sql": FUNNEL_UDAF,
                "window_funnel_ms": ms(udaf),
                "sql_window_functions_ms": ms(windows),
                "after_delete_ms": ms(after_delete),
                "after_purge_ms": ms(after_purge),
                "deleted_distinct_ids": ids,
                "levels": levels_json,
                "window_functions_agree": agree,
                "levels_after_delete": deleted_json,
            })
        );
    }
    Ok(())
}
