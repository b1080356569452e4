//! `elide bench-compare`: Elide's side of `benches/compare.py`, which runs
//! the same steps on the same file in DuckDB and in ClickHouse (chdb), each
//! in a process of its own, and prints the ratios (docs/benchmarks.md,
//! "Against DuckDB and ClickHouse").
//!
//! In one long-lived process, as an embedder uses the library:
//!
//! 1. generate events with `elide gen`'s model (skewed projects, 90 days)
//!    and `Store::ingest_files` them (timed); reopen (`open`, `ready()`
//!    timed); the merges a background compaction would run next
//!    (`compact`, timed apart like the peers' `OPTIMIZE FINAL`);
//! 2. the queries of [`QUERIES`] on one session context (one warm-up, then
//!    the median of `--runs`);
//! 3. delete 1% of the persons (every distinct id of every 100th person,
//!    one `delete_many`): the time until the rows are hidden; the queries
//!    again;
//! 4. the purge (`compact(CompactRequest::now())`, with its verification),
//!    timed; the queries again; bytes on disk before and after.
//!
//! The store as it was before the delete and after it is kept beside it
//! (`stage-before`, `stage-after-delete`, hard-linked), with each query's
//! SQL in the JSON, so that `benches/compare.py --pairs N` can time the
//! three stages against each other in alternating fresh processes.
//!
//! The last line of stdout is one JSON object: every figure, every query's
//! result rows (for the peers to compare with), and the *spec* the peers
//! need to do the same — the input file, the time range, the persons and
//! distinct ids looked up, the persons deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;
use elide_store::{CompactRequest, DeleteSpec, PartCompression, Store};
use serde_json::{json, Value};

use crate::bench::median;
use crate::output::anyhow_lite::Result;

/// Arguments of `elide bench-compare`.
#[derive(Debug, clap::Args)]
pub struct BenchCompareArgs {
    /// Work directory (must be empty or absent): `input.parquet` and the
    /// store (`store/`) go under it.
    #[arg(long)]
    data_dir: PathBuf,
    /// Events to generate (over 90 days).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Persons in them.
    #[arg(long, default_value_t = 100_000)]
    persons: u64,
    /// Projects (person counts skewed 1/p: project 1 is the largest).
    #[arg(long, default_value_t = 5)]
    projects: u32,
    /// Timed runs of each query (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Codec of the parts (`lz4`, `zstd`, `zstd:LEVEL`, `tiered`,
    /// `tiered:LEVEL`, `snappy`, `none`);
    /// the store's default when absent.
    #[arg(long, value_parser = parse_compression)]
    compression: Option<PartCompression>,
}

fn parse_compression(s: &str) -> std::result::Result<PartCompression, String> {
    match s.split_once(':') {
        None if s == "lz4" => Ok(PartCompression::Lz4),
        None if s == "snappy" => Ok(PartCompression::Snappy),
        None if s == "none" => Ok(PartCompression::None),
        None if s == "zstd" => Ok(PartCompression::Zstd(1)),
        None if s == "tiered" => Ok(PartCompression::Tiered(1)),
        Some(("tiered", level)) => match level.parse::<i32>() {
            Ok(l) if (1..=22).contains(&l) => Ok(PartCompression::Tiered(l)),
            _ => Err(format!("zstd level {level:?} is not in 1..=22")),
        },
        Some(("zstd", level)) => match level.parse::<i32>() {
            Ok(l) if (1..=22).contains(&l) => Ok(PartCompression::Zstd(l)),
            _ => Err(format!("zstd level {level:?} is not in 1..=22")),
        },
        _ => Err(format!(
            "unknown codec {s:?} (lz4, zstd, zstd:LEVEL, tiered, tiered:LEVEL, snappy, none)"
        )),
    }
}

/// The compared queries: (name, SQL). `{start}`/`{end}` are the 30-day
/// range's bounds (RFC 3339, UTC), `{person_ids}` and `{distinct_ids}` the
/// looked-up lists, quoted and comma-separated, `{person_id}` the first of
/// the persons. Each returns (key, count)
/// rows; `benches/compare.py` holds the same queries in the peers' dialects.
pub const QUERIES: [(&str, &str); 5] = [
    (
        "count_by_event",
        "SELECT event, count(*) FROM events WHERE project_id = 1 GROUP BY event ORDER BY event",
    ),
    (
        "distinct_persons_by_day",
        "SELECT date_trunc('day', timestamp) AS day, count(DISTINCT person_id) FROM events
         WHERE project_id = 1 AND timestamp >= '{start}' AND timestamp < '{end}'
         GROUP BY day ORDER BY day",
    ),
    (
        "lookup_person_ids",
        "SELECT 'rows', count(*) FROM events WHERE person_id IN ({person_ids})",
    ),
    (
        "lookup_one_person",
        "SELECT 'rows', count(*) FROM events WHERE person_id = '{person_id}'",
    ),
    (
        "lookup_distinct_ids",
        "SELECT 'rows', count(*) FROM events WHERE project_id = 1 AND distinct_id IN ({distinct_ids})",
    ),
];

/// One long-lived session and the runtime it runs on.
struct Session {
    rt: tokio::runtime::Runtime,
    ctx: SessionContext,
}

impl Session {
    /// The rows of `sql` as (key, count) pairs; a key that is a timestamp
    /// is written as its UTC date.
    fn rows(&self, sql: &str) -> Result<Vec<(String, i64)>> {
        let batches = self.rt.block_on(async {
            elide_query::run_sql_checked(&self.ctx, sql, elide_query::SqlWrites::None).await
        })?;
        let mut out = Vec::new();
        for b in batches.batches {
            let key = b.column(0);
            let keys: Vec<String> = match key.data_type() {
                DataType::Timestamp(..) => {
                    let k = arrow::compute::cast(
                        key,
                        &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                    )?;
                    let k = k.as_primitive::<TimestampMicrosecondType>();
                    (0..k.len())
                        .map(|i| {
                            chrono::DateTime::from_timestamp_micros(k.value(i))
                                .map(|d| d.format("%Y-%m-%d").to_string())
                                .unwrap_or_default()
                        })
                        .collect()
                }
                _ => {
                    let k = arrow::compute::cast(key, &DataType::Utf8)?;
                    let k = k.as_string::<i32>();
                    (0..k.len()).map(|i| k.value(i).to_string()).collect()
                }
            };
            let n = arrow::compute::cast(b.column(1), &DataType::Int64)?;
            let n = n.as_primitive::<Int64Type>();
            out.extend(keys.into_iter().zip(n.values().iter().copied()));
        }
        Ok(out)
    }

    /// One column of strings.
    fn strings(&self, sql: &str) -> Result<Vec<String>> {
        Ok(self
            .rows(&format!("SELECT x, 0 FROM ({sql}) ORDER BY x"))?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// One warm-up, then the median of `runs`; the rows of the last run.
    fn timed(&self, sql: &str, runs: u32) -> Result<(Duration, Vec<(String, i64)>)> {
        let mut rows = self.rows(sql)?;
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            rows = self.rows(sql)?;
            times.push(t.elapsed());
        }
        Ok((median(times), rows))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// A copy of the store directory `from` as it is now, for the fresh-process
/// pairs of `benches/compare.py`: the immutable files (under `parts/`,
/// `tombstones/` and `manifest/`: parts, `.runs` files, tombstones,
/// manifests) hard-linked, everything else copied. The store must not be
/// writing meanwhile (background work is off here).
fn link_copy(from: &Path, to: &Path) -> Result<()> {
    copy_tree(from, to, None)
}

/// [`link_copy`] below the store's top level (`link`: `None` at the top,
/// then whether this tree is one of the immutable ones).
fn copy_tree(from: &Path, to: &Path, link: Option<bool>) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            let immutable = link.unwrap_or_else(|| {
                ["parts", "tombstones", "manifest"]
                    .iter()
                    .any(|d| e.file_name() == *d)
            });
            copy_tree(&src, &dst, Some(immutable))?;
        } else if link == Some(true) {
            std::fs::hard_link(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Every query of [`QUERIES`], timed: `{name: {"ms": …, "rows": […]}}`.
fn run_queries(s: &Session, sqls: &[(String, String)], runs: u32) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for (name, sql) in sqls {
        let (t, rows) = s.timed(sql, runs)?;
        eprintln!("  {name:<24} {:>9.1} ms", ms(t));
        out.insert(name.clone(), json!({ "ms": ms(t), "rows": rows }));
    }
    Ok(Value::Object(out))
}

/// `elide bench-compare`.
pub fn run(a: BenchCompareArgs) -> Result<()> {
    let opts = || {
        let mut o = crate::bench_embed::bench_store_options();
        if let Some(c) = a.compression {
            o.part.compression = c;
        }
        o
    };
    let ingested = crate::bench_embed::generate_and_ingest(
        &a.data_dir,
        a.events,
        a.persons,
        a.projects,
        opts(),
    )?;
    eprintln!(
        "ingested {} rows in {:.1} s",
        ingested.rows, ingested.ingest_s
    );
    let t = Instant::now();
    let store = Store::open(&ingested.dir, opts())?;
    let open_ms = ms(t.elapsed());
    let t = Instant::now();
    store.ready()?;
    let ready_ms = ms(t.elapsed());
    // The merges the background compaction runs after a load (a small
    // project's closed days of one month into one part; docs/format.md,
    // "Parts that span several days"), as the peers' OPTIMIZE FINAL: timed
    // apart, not in the load time.
    let parts_loaded = store.status()?.totals.parts;
    let t = Instant::now();
    store.compact(CompactRequest::now())?;
    let merge_s = t.elapsed().as_secs_f64();
    let session = Session {
        rt: crate::cli::runtime()?,
        ctx: elide_query::session_context(&store)?,
    };
    let status = store.status()?;
    let (parts, part_bytes) = (status.totals.parts, status.totals.bytes);
    eprintln!("merged {parts_loaded} parts into {parts} in {merge_s:.2} s");
    let store_bytes = dir_bytes(&ingested.dir)?;

    // The 30 days before the day after the last event.
    let last = session.rows("SELECT 'max', CAST(max(timestamp) AS BIGINT) FROM events")?;
    let last_us = last.first().map(|(_, v)| *v).ok_or("no events")?;
    let day_us = elide_store::MICROS_PER_DAY;
    let end_us = (last_us.div_euclid(day_us) + 1) * day_us;
    let rfc = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .ok_or("timestamp out of range")
    };
    let (start, end) = (rfc(end_us - 30 * day_us)?, rfc(end_us)?);

    // Persons in person_id order: every 100th deleted, 100 others (never
    // deleted: 501 is not a multiple of 100) looked up.
    let numbered = "SELECT person_id AS x, row_number() OVER (ORDER BY person_id) AS n
        FROM (SELECT DISTINCT person_id FROM events WHERE person_id IS NOT NULL)";
    let deleted = session.strings(&format!(
        "SELECT x FROM ({numbered}) WHERE n % 100 = 0 ORDER BY x"
    ))?;
    let looked_up = session.strings(&format!(
        "SELECT x FROM ({numbered}) WHERE n % 1000 = 501 ORDER BY x LIMIT 100"
    ))?;
    let distinct_ids = session.strings(
        "SELECT x FROM (SELECT distinct_id AS x, row_number() OVER (ORDER BY distinct_id) AS n
           FROM (SELECT DISTINCT distinct_id FROM events WHERE project_id = 1))
         WHERE n % 1000 = 7 ORDER BY x LIMIT 100",
    )?;
    if looked_up.is_empty() || distinct_ids.is_empty() || deleted.is_empty() {
        return Err(format!(
            "too few persons to look up and delete ({} found); generate more (--persons, --events)",
            deleted.len()
        )
        .into());
    }
    let sqls: Vec<(String, String)> = QUERIES
        .iter()
        .map(|(name, sql)| {
            let sql = sql
                .replace("{start}", &start)
                .replace("{end}", &end)
                .replace("{person_ids}", &quoted(&looked_up))
                .replace("{person_id}", looked_up.first().map_or("", String::as_str))
                .replace("{distinct_ids}", &quoted(&distinct_ids));
            (name.to_string(), sql)
        })
        .collect();

    eprintln!("queries ({} runs each, median):", a.runs);
    let before = run_queries(&session, &sqls, a.runs)?;
    let stage_before = a.data_dir.join("stage-before");
    link_copy(&ingested.dir, &stage_before)?;

    // The deleted persons' distinct ids, by project: timed with the
    // delete, as the peers' `DELETE … WHERE person_id IN (…)` finds its
    // rows too.
    let t = Instant::now();
    let to_delete = session.rows(&format!(
        "SELECT DISTINCT distinct_id, project_id FROM events WHERE person_id IN ({})",
        quoted(&deleted)
    ))?;
    let mut by_project: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    for (d, p) in to_delete {
        by_project.entry(p).or_default().push(d);
    }
    let specs: Vec<DeleteSpec> = by_project
        .iter()
        .flat_map(|(p, ids)| {
            ids.chunks(elide_store::MAX_DELETE_IDS)
                .map(|c| DeleteSpec::ids(*p, c.iter()))
        })
        .collect();
    let distinct_ids_deleted: usize = by_project.values().map(Vec::len).sum();
    let find_ms = ms(t.elapsed());
    let outcomes = store.delete_many(specs)?;
    let delete_ms = ms(t.elapsed());
    let rows_deleted: u64 = outcomes.iter().map(|o| o.rows_hidden).sum();
    eprintln!(
        "deleted {} persons ({distinct_ids_deleted} distinct ids, {rows_deleted} rows) in {delete_ms:.1} ms ({find_ms:.1} ms of it finding their distinct ids); queries:",
        deleted.len()
    );
    let after_delete = run_queries(&session, &sqls, a.runs)?;
    let stage_after_delete = a.data_dir.join("stage-after-delete");
    link_copy(&ingested.dir, &stage_after_delete)?;

    let t = Instant::now();
    let report = store.compact(CompactRequest::now())?;
    let purge_s = t.elapsed().as_secs_f64();
    if !report.verification_failures.is_empty() {
        return Err(format!(
            "the purge's verification failed: {:?}",
            report.verification_failures
        )
        .into());
    }
    eprintln!(
        "purged in {purge_s:.2} s ({} parts rewritten); queries:",
        report.tasks.len()
    );
    let after_purge = run_queries(&session, &sqls, a.runs)?;
    let status = store.status()?;
    let purged_part_bytes = status.totals.bytes;
    store.close()?;
    let purged_store_bytes = dir_bytes(&ingested.dir)?;

    println!(
        "{}",
        json!({
            "engine": "elide",
            "events": ingested.rows,
            "input": a.data_dir.join("input.parquet"),
            "runs": a.runs,
            "compression": format!("{:?}", opts().part.compression),
            "start": start,
            "end": end,
            "person_ids": looked_up,
            "distinct_ids": distinct_ids,
            "deleted_person_ids": deleted,
            "load_s": ingested.ingest_s,
            "open_ms": open_ms,
            "ready_ms": ready_ms,
            "parts_loaded": parts_loaded,
            "merge_s": merge_s,
            "parts": parts,
            "bytes": part_bytes,
            "store_bytes": store_bytes,
            "before": before,
            "delete_ms": delete_ms,
            "delete_find_ids_ms": find_ms,
            "rows_deleted": rows_deleted,
            "after_delete": after_delete,
            "purge_s": purge_s,
            "after_purge": after_purge,
            "bytes_after_purge": purged_part_bytes,
            "store_bytes_after_purge": purged_store_bytes,
            "stage_dirs": {
                "before": stage_before,
                "after_delete": stage_after_delete,
                "after_purge": ingested.dir,
            },
            "sqls": sqls.iter().map(|(n, s)| (n.clone(), Value::from(s.as_str()))).collect::<serde_json::Map<String, Value>>(),
        })
    );
    Ok(())
}
