//! Step 6 of `elide bench`: compaction figures, all in the same process
//! and moments apart, so that ratios compare like with like.
//!
//! 1. A plain arrow/parquet rewrite (read every column, filter the deleted
//!    rows with a boolean mask, write with the parts' writer settings,
//!    fsync) of project 1's parts that carry tombstones, then Elide's purge
//!    of the same parts: throughput ratio = plain time / purge time (the purge
//!    tasks' read, write and fsync, plus the commits that swap them in).
//! 2. Query latency (a GROUP BY over every event) while a throttled purge
//!    of the other projects runs on another thread, against idle: the
//!    purge runs in slices of [`PURGE_SLICE`], each after an idle window
//!    of queries, and each slice's median is divided by its idle
//!    window's (paired ratios; their median is the figure).
//! 3. Write amplification: bytes of the parts rewritten / bytes of the
//!    parts that held deleted rows, for the deletes spread over every
//!    project (steps 1+2), then for deletes concentrated in project 1.
//! 4. Time from a deletion to `verified`, the purge triggered by hand.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use elide_store::{CompactRequest, DeleteSpec, RequestStatus, Store, Table, TaskKind};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::bench::{median, ms, run_query};
use crate::output::anyhow_lite::Result;

const QUERY: &str = "SELECT event, count(*) AS n FROM events GROUP BY event";

/// Bytes rewritten against bytes that held deleted rows.
#[derive(Debug, serde::Serialize)]
pub struct WriteAmplification {
    /// Parts in the table.
    pub parts: usize,
    /// Parts with deleted rows.
    pub parts_with_deletes: usize,
    /// Bytes of the table.
    pub table_bytes: u64,
    /// Bytes of the parts with deleted rows.
    pub bytes_with_deletes: u64,
    /// Bytes of the parts the purge read and rewrote.
    pub bytes_rewritten: u64,
    /// `bytes_rewritten / bytes_with_deletes` (target <= 1.0).
    pub amplification: f64,
    /// `bytes_rewritten / table_bytes`.
    pub table_fraction_rewritten: f64,
    /// Deleted rows the purge dropped.
    pub rows_dropped: u64,
}

/// Figures of step 6.
#[derive(Debug, serde::Serialize)]
pub struct CompactionFigures {
    /// Parts of project 1 rewritten by both.
    pub rewrite_parts: usize,
    /// Bytes of those parts.
    pub rewrite_bytes: u64,
    /// Plain rewrite, ms.
    pub plain_rewrite_ms: f64,
    /// Elide's purge of the same parts (sum of the tasks), ms.
    pub purge_ms: f64,
    /// `plain_rewrite_ms / purge_ms`: purge speed relative to the plain
    /// rewrite (target >= 0.8).
    pub purge_speed_vs_plain: f64,
    /// Median latency of the query, idle (all idle windows).
    pub idle_query_ms: f64,
    /// Median latency of the query while the throttled purge runs (all
    /// purge slices).
    pub during_purge_query_ms: f64,
    /// The median of [`CompactionFigures::window_ratios`] (target <= 1.1).
    pub during_over_idle: f64,
    /// Per purge slice: its queries' median over the median of the idle
    /// window just before it.
    pub window_ratios: Vec<f64>,
    /// Queries that ran during the throttled purge.
    pub queries_during_purge: usize,
    /// The throttle, bytes/s.
    pub throttle_bytes_per_sec: u64,
    /// Wall time of the throttled purge's slices and the idle windows
    /// between them, ms.
    pub throttled_purge_ms: f64,
    /// Deletes spread over every project.
    pub spread: WriteAmplification,
    /// Deletes concentrated in project 1.
    pub concentrated: WriteAmplification,
    /// Persons deleted for the concentrated figure.
    pub concentrated_persons: usize,
    /// Delete one person, then `compact --now --project P`: ms from the
    /// start of the deletion to `verified`.
    pub delete_to_verified_ms: f64,
    /// Of which the deletion call.
    pub delete_ms: f64,
}

struct Tombstoned {
    parts: usize,
    with_deletes: usize,
    table_bytes: u64,
    bytes_with_deletes: u64,
}

fn tombstoned(store: &Store, project: Option<i64>) -> Result<Tombstoned> {
    let m = store.manifest()?;
    let parts: Vec<_> = m
        .parts
        .iter()
        .filter(|p| p.table == Table::Events)
        .collect();
    let hit: Vec<_> = parts
        .iter()
        .filter(|p| p.deleted() > 0 && project.is_none_or(|q| q == p.project_id))
        .collect();
    Ok(Tombstoned {
        parts: parts.len(),
        with_deletes: hit.len(),
        table_bytes: parts.iter().map(|p| p.size).sum(),
        bytes_with_deletes: hit.iter().map(|p| p.size).sum(),
    })
}

fn amplification(t: &Tombstoned, rewritten: u64, dropped: u64) -> WriteAmplification {
    WriteAmplification {
        parts: t.parts,
        parts_with_deletes: t.with_deletes,
        table_bytes: t.table_bytes,
        bytes_with_deletes: t.bytes_with_deletes,
        bytes_rewritten: rewritten,
        amplification: rewritten as f64 / t.bytes_with_deletes.max(1) as f64,
        table_fraction_rewritten: rewritten as f64 / t.table_bytes.max(1) as f64,
        rows_dropped: dropped,
    }
}

/// Read, mask-filter and write each of project `project`'s parts with
/// deleted rows, as a user of arrow/parquet would without Elide.
fn plain_rewrite(
    store: &Store,
    dir: &Path,
    project: i64,
    props: &WriterProperties,
) -> Result<(Duration, usize, u64)> {
    let snap = store.snapshot()?;
    let root = snap
        .storage()
        .local_root()
        .ok_or("the benchmark needs a local data directory")?
        .to_path_buf();
    let out_dir = dir.join("bench-plain-rewrite");
    std::fs::create_dir_all(&out_dir)?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0, 0);
    for p in snap
        .parts(Table::Events)
        .filter(|p| p.project_id == project && p.deleted() > 0)
    {
        let Some(dead) = snap.tombstone(p.id) else {
            continue;
        };
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(root.join(&p.path))?)?
                .with_batch_size(64 * 1024)
                .build()?;
        let out_path = out_dir.join(format!("{:016x}.parquet", p.id));
        let file = std::fs::File::create(&out_path)?;
        let mut w: Option<ArrowWriter<std::fs::File>> = None;
        let mut base = 0u32;
        let mut file = Some(file);
        for b in reader {
            let b = b?;
            let keep: BooleanArray = (0..b.num_rows() as u32)
                .map(|i| Some(!dead.contains(base + i)))
                .collect();
            base += b.num_rows() as u32;
            let kept = filter_record_batch(&b, &keep)?;
            if w.is_none() {
                if let Some(f) = file.take() {
                    w = Some(ArrowWriter::try_new(f, kept.schema(), Some(props.clone()))?);
                }
            }
            if let Some(w) = w.as_mut() {
                w.write(&kept)?;
            }
        }
        if let Some(w) = w {
            let f = w.into_inner()?;
            f.sync_all()?;
        }
        n += 1;
        bytes += p.size;
    }
    let elapsed = started.elapsed();
    std::fs::remove_dir_all(&out_dir)?;
    Ok((elapsed, n, bytes))
}

/// How long each slice of the throttled purge starts tasks for.
const PURGE_SLICE: Duration = Duration::from_secs(2);

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A manual purge (of `project`, or all), at `io` bytes/s, starting no
/// task after `until`.
fn purge(
    store: &Store,
    project: Option<i64>,
    io: Option<u64>,
    until: Option<Instant>,
) -> Result<elide_store::CompactionReport> {
    Ok(store.compact(CompactRequest {
        manual: true,
        project_id: project,
        merges: false,
        io_bytes_per_sec: io,
        deadline: until,
        ..Default::default()
    })?)
}

/// (bytes read, rows dropped, ms): the tasks' reads and writes plus the
/// commits that swapped them in (the lifecycle step is not counted).
fn purged(r: &elide_store::CompactionReport) -> (u64, u64, f64) {
    let p = r.tasks.iter().filter(|t| t.kind == TaskKind::Purge);
    (
        p.clone().map(|t| t.bytes_in).sum(),
        p.clone().map(|t| t.rows_dropped).sum(),
        p.map(|t| t.elapsed_ms as f64).sum::<f64>() + r.swap_commit_ms,
    )
}

fn delete_persons(store: &Store, persons: &[(i64, Vec<String>)]) -> Result<()> {
    let mut i = 0;
    while i < persons.len() {
        let project = persons[i].0;
        let mut ids: Vec<String> = Vec::new();
        while i < persons.len()
            && persons[i].0 == project
            && ids.len() + persons[i].1.len() <= elide_store::MAX_DELETE_IDS
        {
            ids.extend(persons[i].1.iter().cloned());
            i += 1;
        }
        if ids.is_empty() {
            i += 1;
            continue;
        }
        store.delete(DeleteSpec::ids(project, ids))?;
    }
    Ok(())
}

pub(crate) fn run(
    store: &Store,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    untouched: &[(i64, Vec<String>)],
    fraction: f64,
    repeat: usize,
    throttle: u64,
) -> Result<CompactionFigures> {
    let spread_before = tombstoned(store, None)?;

    // 1. Plain rewrite vs purge, project 1.
    let (plain, rewrite_parts, rewrite_bytes) =
        plain_rewrite(store, dir, 1, &store.part_options().writer_properties())?;
    let r1 = purge(store, Some(1), None, None)?;
    let (bytes1, dropped1, purge_ms) = purged(&r1);
    if bytes1 != rewrite_bytes {
        return Err(format!(
            "the purge read {bytes1} bytes, the plain rewrite {rewrite_bytes}: not the same parts"
        )
        .into());
    }
    eprintln!(
        "compaction: plain rewrite of {rewrite_parts} parts ({rewrite_bytes} bytes) {:.0} ms, purge {:.0} ms",
        ms(plain),
        purge_ms
    );

    // 2. Query latency during a throttled purge of the rest, paired with
    // idle: the purge runs in slices (no task starts after the slice's
    // deadline), each preceded by an idle window of queries, so that each
    // ratio compares moments seconds apart rather than minutes.
    let ctx = elide_query::session_context(store)?;
    rt.block_on(run_query(&ctx, QUERY))?;
    let (mut idle, mut during, mut window_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bytes2, mut dropped2) = (0u64, 0u64);
    let started = Instant::now();
    let mut stalled = 0;
    loop {
        // The first query after a slice reads the new parts' footers: a
        // cost of the purge, not of idle, so it is left out.
        rt.block_on(run_query(&ctx, QUERY))?;
        let mut idle_window = Vec::new();
        for _ in 0..repeat.max(3) {
            idle_window.push(rt.block_on(run_query(&ctx, QUERY))?.0);
        }
        let done = AtomicBool::new(false);
        let mut during_window = Vec::new();
        let slice = std::thread::scope(|s| -> Result<elide_store::CompactionReport> {
            let h = s.spawn(|| {
                let r = purge(
                    store,
                    None,
                    Some(throttle),
                    Some(Instant::now() + PURGE_SLICE),
                );
                done.store(true, Ordering::Release);
                r
            });
            // Every query that *finishes* during the slice counts.
            while !done.load(Ordering::Acquire) {
                let (t, _) = rt.block_on(run_query(&ctx, QUERY))?;
                if !done.load(Ordering::Acquire) {
                    during_window.push(t);
                }
            }
            h.join()
                .map_err(|_| "the purge thread panicked")?
                .map_err(|e| e.to_string().into())
        })?;
        let (b, d, _) = purged(&slice);
        bytes2 += b;
        dropped2 += d;
        if !during_window.is_empty() {
            window_ratios.push(
                median(during_window.clone()).as_secs_f64()
                    / median(idle_window.clone()).as_secs_f64().max(1e-9),
            );
            idle.extend(idle_window);
            during.extend(during_window);
        }
        // Done when a slice had nothing to start; a slice that started
        // nothing but skipped tasks (its deadline passed first) is retried.
        match (slice.tasks.is_empty(), slice.skipped_tasks) {
            (true, 0) => break,
            (true, _) => {
                stalled += 1;
                if stalled > 5 {
                    return Err("the throttled purge started no task in six slices in a row".into());
                }
            }
            (false, _) => stalled = 0,
        }
    }
    let throttled_ms = ms(started.elapsed());
    let queries_during = during.len();
    let (idle_ms, during_ms) = (ms(median(idle)), ms(median(during)));
    let paired = median_f64(&window_ratios);
    eprintln!(
        "compaction: query idle {idle_ms:.1} ms, during throttled purge {during_ms:.1} ms ({queries_during} queries, purge and idle windows {throttled_ms:.0} ms); paired ratio {paired:.3} over {} windows",
        window_ratios.len()
    );
    let spread = amplification(&spread_before, bytes1 + bytes2, dropped1 + dropped2);

    // 3. Concentrated in project 1.
    let p1: Vec<(i64, Vec<String>)> = untouched.iter().filter(|(p, _)| *p == 1).cloned().collect();
    let all = untouched.len().max(1);
    let n = ((all as f64 * fraction).ceil() as usize).clamp(1, p1.len().max(1));
    let chosen: Vec<(i64, Vec<String>)> = p1.into_iter().take(n).collect();
    delete_persons(store, &chosen)?;
    let conc_before = tombstoned(store, None)?;
    let r3 = purge(store, Some(1), None, None)?;
    let (bytes3, dropped3, _) = purged(&r3);
    let concentrated = amplification(&conc_before, bytes3, dropped3);

    // 4. Delete one person of project 2, purge by hand, until verified.
    let one = untouched
        .iter()
        .find(|(p, _)| *p == 2)
        .or_else(|| untouched.iter().find(|(p, _)| *p != 1))
        .cloned()
        .ok_or("no person left for the delete-to-verified figure")?;
    let t0 = Instant::now();
    let o = store.delete(DeleteSpec::ids(one.0, one.1.clone()))?;
    let delete_ms = ms(t0.elapsed());
    let r4 = purge(store, Some(one.0), None, None)?;
    let to_verified = ms(t0.elapsed());
    if !r4.requests_verified.contains(&o.request_id) {
        let st = store
            .requests()?
            .into_iter()
            .find(|r| r.id == o.request_id)
            .map(|r| r.status);
        if st != Some(RequestStatus::Verified) {
            return Err(format!(
                "request {} not verified after the purge: {st:?}",
                o.request_id
            )
            .into());
        }
    }
    eprintln!("compaction: delete to verified {to_verified:.0} ms (delete {delete_ms:.1} ms)");

    Ok(CompactionFigures {
        rewrite_parts,
        rewrite_bytes,
        plain_rewrite_ms: ms(plain),
        purge_ms,
        purge_speed_vs_plain: ms(plain) / purge_ms.max(1e-9),
        idle_query_ms: idle_ms,
        during_purge_query_ms: during_ms,
        during_over_idle: paired,
        window_ratios,
        queries_during_purge: queries_during,
        throttle_bytes_per_sec: throttle,
        throttled_purge_ms: throttled_ms,
        spread,
        concentrated,
        concentrated_persons: chosen.len(),
        delete_to_verified_ms: to_verified,
        delete_ms,
    })
}

pub(crate) fn print(c: &CompactionFigures) {
    println!(
        "purge vs plain arrow/parquet rewrite of the same {} parts ({} bytes): plain {:.0} ms, purge {:.0} ms, purge speed {:.2}x of plain",
        c.rewrite_parts, c.rewrite_bytes, c.plain_rewrite_ms, c.purge_ms, c.purge_speed_vs_plain
    );
    let ratios: Vec<String> = c.window_ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "query during a purge throttled to {} MiB/s: idle {:.1} ms, during {:.1} ms ({} queries); paired ratio {:.3} (median of {} slices: {}); purge and idle windows took {:.0} ms",
        c.throttle_bytes_per_sec >> 20,
        c.idle_query_ms,
        c.during_purge_query_ms,
        c.queries_during_purge,
        c.during_over_idle,
        c.window_ratios.len(),
        ratios.join(" "),
        c.throttled_purge_ms
    );
    for (name, w) in [("spread", &c.spread), ("concentrated", &c.concentrated)] {
        println!(
            "write amplification ({name}): {} of {} parts held deleted rows ({} of {} bytes); rewrote {} bytes: {:.3}x of those parts, {:.1}% of the table; {} rows dropped",
            w.parts_with_deletes,
            w.parts,
            w.bytes_with_deletes,
            w.table_bytes,
            w.bytes_rewritten,
            w.amplification,
            w.table_fraction_rewritten * 100.0,
            w.rows_dropped
        );
    }
    println!(
        "delete one person -> verified (manual purge of its project): {:.0} ms (the delete call {:.1} ms)",
        c.delete_to_verified_ms, c.delete_ms
    );
}
