//! `elide bench-persons`: the persons pipeline and person deletion, end to
//! end, behind the figures in `docs/benchmarks.md`.
//!
//! 1. warm-up: every person's first events (an anonymous pageview with
//!    `$set_once`; for most, an `$identify` with `$set`), timed as the
//!    "new persons" rate;
//! 2. the realistic mix, timed: events from known persons (some carrying
//!    `$set`), new anonymous ids, identifies of new anonymous ids into
//!    known persons, personless events. Generation of the JSON text is not
//!    timed; parsing and the pipeline (`Persons::capture`: identity
//!    resolution, one metadata transaction, one append) are timed apart, so
//!    the report gives both the library figure and the from-JSON figure;
//! 3. merges, timed the same way: returning users on new devices (an
//!    anonymous pageview, then an `$identify` that merges that new person
//!    into a known one), so that each merge meets the overrides of every
//!    merge before it (a merge that read them all made this phase
//!    quadratic);
//! 4. deletion: one person with its events (median of several), then a
//!    bulk of up to 1000 persons; then a manual purge of the project and
//!    the time from the first request to `completed` (verified).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elide_persons::capture::parse_line;
use elide_persons::{CaptureEvent, CaptureStats, DeletePersons, DeletionState, Persons};
use elide_store::{Store, StoreOptions};

use crate::bench::median;
use crate::cli::progress_bar;
use crate::output::anyhow_lite::Result;
use crate::sample::Mix;

/// Arguments of `elide bench-persons`.
#[derive(Debug, clap::Args)]
pub struct BenchPersonsArgs {
    /// Data directory (must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Events of the timed mix.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Persons created in the warm-up (at least 100: the deletions pick
    /// persons by stride among them).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    persons: u64,
    /// Merges of a new device's person into a known person (two events
    /// each), after the mix.
    #[arg(long, default_value_t = 100_000)]
    merges: u64,
    /// Events per pipeline call.
    #[arg(long, default_value_t = 50_000)]
    batch_size: usize,
    /// Persons in the bulk deletion (at most 1000).
    #[arg(long, default_value_t = 1000)]
    bulk: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

const PROJECT: i64 = 1;
#[derive(Debug, Default, serde::Serialize)]
struct Phase {
    events: u64,
    parse_s: f64,
    pipeline_s: f64,
    pipeline_events_per_s: f64,
    from_json_events_per_s: f64,
    stats: CaptureStats,
}

fn run_phase(
    persons: &Persons,
    lines: &mut dyn Iterator<Item = String>,
    total: u64,
    batch: usize,
    msg: &'static str,
) -> Result<Phase> {
    let bar = progress_bar(total, msg);
    let mut ph = Phase::default();
    let (mut parse, mut pipe) = (Duration::ZERO, Duration::ZERO);
    loop {
        let chunk: Vec<String> = lines.take(batch).collect();
        if chunk.is_empty() {
            break;
        }
        let t = Instant::now();
        let mut evs: Vec<CaptureEvent> = Vec::with_capacity(chunk.len());
        for (i, l) in chunk.iter().enumerate() {
            evs.extend(parse_line(i + 1, l, 0)?);
        }
        parse += t.elapsed();
        let t = Instant::now();
        let o = persons.capture(PROJECT, &evs)?;
        pipe += t.elapsed();
        ph.stats += o.stats;
        bar.inc(evs.len() as u64);
    }
    bar.finish_and_clear();
    ph.events = ph.stats.events;
    ph.parse_s = parse.as_secs_f64();
    ph.pipeline_s = pipe.as_secs_f64();
    ph.pipeline_events_per_s = ph.events as f64 / ph.pipeline_s.max(1e-9);
    ph.from_json_events_per_s = ph.events as f64 / (ph.pipeline_s + ph.parse_s).max(1e-9);
    Ok(ph)
}

#[derive(Debug, serde::Serialize)]
struct Report {
    persons: u64,
    batch_size: usize,
    warmup: Phase,
    mix: Phase,
    merges: Phase,
    delete_one_ms_median: f64,
    delete_one_ms_all: Vec<f64>,
    bulk_persons: usize,
    bulk_ms: f64,
    bulk_rows_queued: bool,
    purge_s: f64,
    requests_verified: usize,
    delete_to_completed_s: f64,
    metadata_bytes: u64,
}

/// Run `elide bench-persons`.
pub fn run(a: BenchPersonsArgs) -> Result<()> {
    if a.data_dir.exists() && std::fs::read_dir(&a.data_dir)?.next().is_some() {
        return Err(format!("{} is not empty", a.data_dir.display()).into());
    }
    if a.bulk == 0 || a.bulk > elide_persons::persons::MAX_DELETE_PERSONS || a.batch_size == 0 {
        return Err("--bulk must be 1..=1000 and --batch-size at least 1".into());
    }
    let store = Store::open(
        &a.data_dir,
        StoreOptions {
            background_compaction: false,
            ..Default::default()
        },
    )?;
    let persons = Arc::new(Persons::open(store)?);
    let mut mix = Mix::new(
        a.seed,
        a.persons,
        chrono::Utc::now().timestamp_micros() - 86_400_000_000,
        1000,
    );
    // 1. Warm-up: create the persons.
    let warm_lines: Vec<String> = (0..a.persons).flat_map(|i| mix.warmup(i)).collect();
    let n = warm_lines.len() as u64;
    let warmup = run_phase(
        &persons,
        &mut warm_lines.into_iter(),
        n,
        a.batch_size,
        "warm-up",
    )?;
    // 2. The timed mix, generated lazily batch by batch: `run_phase`
    // collects each batch of lines before it starts its timers.
    let mut remaining = a.events;
    let mut gen = std::iter::from_fn(|| {
        (remaining > 0).then(|| {
            remaining -= 1;
            mix.next()
        })
    });
    let mix_phase = run_phase(&persons, &mut gen, a.events, a.batch_size, "mix")?;
    // 3. Merges, also generated batch by batch.
    let mut n = 0u64;
    let mut pending: std::collections::VecDeque<String> = Default::default();
    let mut gen = std::iter::from_fn(|| {
        if pending.is_empty() && n < a.merges {
            pending.extend(mix.device_merge(n));
            n += 1;
        }
        pending.pop_front()
    });
    let merge_phase = run_phase(
        &persons,
        &mut gen,
        a.merges.saturating_mul(2),
        a.batch_size,
        "merges",
    )?;
    persons.store().flush()?;

    // 4. Deletion: single persons, then a bulk.
    let mut singles = Vec::new();
    let first_request = Instant::now();
    for i in 0..7u64 {
        let did = Mix::known_id(a.persons - 1 - i * 13);
        let t = Instant::now();
        let r = persons.delete(
            PROJECT,
            &DeletePersons {
                distinct_ids: vec![did],
                delete_events: true,
                ..Default::default()
            },
        )?;
        singles.push(t.elapsed());
        if r.persons_deleted != 1 {
            return Err(format!("single deletion deleted {} persons", r.persons_deleted).into());
        }
    }
    let bulk_ids: Vec<String> = (0..a.bulk as u64)
        .map(|i| Mix::known_id(i * 3 + 1))
        .collect();
    let t = Instant::now();
    let bulk = persons.delete(
        PROJECT,
        &DeletePersons {
            distinct_ids: bulk_ids,
            delete_events: true,
            ..Default::default()
        },
    )?;
    let bulk_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let report = persons.store().compact(elide_store::CompactRequest {
        manual: true,
        project_id: Some(PROJECT),
        merges: false,
        ..Default::default()
    })?;
    let purge_s = t.elapsed().as_secs_f64();
    let statuses = persons.deletion_status(PROJECT, None, None, 10_000, 0)?;
    let pending = statuses
        .iter()
        .filter(|s| s.status == DeletionState::Pending)
        .count();
    if pending > 0 {
        return Err(format!("{pending} deletions still pending after the purge").into());
    }
    let delete_to_completed_s = first_request.elapsed().as_secs_f64();
    let metadata_bytes = std::fs::metadata(persons.meta().path())?.len();
    let r = Report {
        persons: a.persons,
        batch_size: a.batch_size,
        warmup,
        mix: mix_phase,
        merges: merge_phase,
        delete_one_ms_median: median(singles.clone()).as_secs_f64() * 1e3,
        delete_one_ms_all: singles.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        bulk_persons: bulk.persons_deleted,
        bulk_ms,
        bulk_rows_queued: bulk.events_queued_for_deletion,
        purge_s,
        requests_verified: report.requests_verified.len(),
        delete_to_completed_s,
        metadata_bytes,
    };
    let store = persons.store().clone();
    drop(persons);
    store.close()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let phase = |name: &str, p: &Phase| {
        println!(
            "{name:>8}: {} events; pipeline {:.2} s = {:.0} events/s; with JSON parsing {:.0} events/s; persons created {}, updated {}, merges {}, personless {}",
            p.events, p.pipeline_s, p.pipeline_events_per_s, p.from_json_events_per_s,
            p.stats.persons_created, p.stats.persons_updated, p.stats.merges, p.stats.personless
        )
    };
    phase("warm-up", &r.warmup);
    phase("mix", &r.mix);
    phase("merges", &r.merges);
    println!(
        "delete one person with events: median {:.2} ms (of {:?})",
        r.delete_one_ms_median,
        r.delete_one_ms_all
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
    );
    println!(
        "bulk delete of {} persons: {:.1} ms",
        r.bulk_persons, r.bulk_ms
    );
    println!(
        "purge of the project: {:.2} s ({} requests verified); first request to all completed: {:.2} s",
        r.purge_s, r.requests_verified, r.delete_to_completed_s
    );
    println!("metadata database: {} bytes", r.metadata_bytes);
    Ok(())
}
