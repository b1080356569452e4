//! `elide` subcommands. Names, flags and output formats are a contract.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use elide_store::{DeleteSpec, Store, Table};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::anyhow_lite::Result;
use crate::output::{write_batches, Format};
use elide_app::wiring::{self, Access};

/// Elide: a columnar event store with deferred deletion.
#[derive(Debug, Parser)]
#[command(name = "elide", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// With a data directory on an object store (`--data-dir
    /// s3://bucket/prefix`, configured from AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, ...): the local directory that holds the ingest
    /// log, the lock and the persons metadata. Default: a directory named
    /// after the URL under the user's data directory.
    #[arg(long, global = true, env = "ELIDE_LOCAL_DIR")]
    local_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate deterministic PostHog-like events into a parquet file.
    Gen {
        /// Number of events.
        #[arg(long)]
        events: u64,
        /// Number of persons.
        #[arg(long)]
        persons: u64,
        /// Number of projects.
        #[arg(long, default_value_t = 1)]
        projects: u32,
        /// Random seed; the same seed gives the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output parquet file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ingest parquet or JSON-lines files of events, all or nothing.
    Ingest {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Target table.
        #[arg(long, default_value = "events")]
        table: String,
        /// Files (parquet, or JSON lines); `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run SQL against the tables, deletions applied (read-only: no
    /// writer lock, so it never blocks deletions or compaction).
    Sql {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Allow `COPY ... TO` files outside the data directory (SQL is
        /// otherwise read-only).
        #[arg(long)]
        allow_writes: bool,
        /// Run the statement N times in this process and print each run's
        /// time and the median on stderr (the result is printed once).
        /// For timing queries without the cost of opening the store; not
        /// with `--allow-writes` (a `COPY` would be written N times).
        #[arg(long, value_name = "N", conflicts_with = "allow_writes", value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: Option<u32>,
        /// Run the statement's stages on these workers (`elide worker`;
        /// comma-separated http://host:port). Only the store's tables
        /// (`events`, `recordings`) are queried then, not the persons tables.
        #[arg(long, value_name = "URLS", value_parser = crate::distributed::parse_workers, conflicts_with = "allow_writes")]
        workers: Option<crate::distributed::Workers>,
        /// With `--workers`: bytes of parquet per partition of a scan
        /// task (default 16 MiB; a task has a partition per core). A
        /// smaller value spreads a small table over more workers.
        #[arg(long, value_name = "BYTES", requires = "workers", value_parser = clap::value_parser!(u64).range(1..))]
        bytes_per_task: Option<u64>,
        /// The statement.
        sql: String,
    },
    /// Delete the rows of distinct ids (appended before this call).
    Delete {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Project of the distinct ids.
        #[arg(long, value_parser = stored_project_id, allow_hyphen_values = true)]
        project: i64,
        /// A distinct id to delete (repeatable, at most 1000).
        #[arg(long = "distinct-id", required_unless_present = "person_ids")]
        distinct_ids: Vec<String>,
        /// Instead: a person id (UUID, repeatable) of data appended without
        /// the persons layer; every row of every distinct id seen with it
        /// is deleted (docs/embedding.md, "Deleting").
        #[arg(long = "person-id", conflicts_with = "distinct_ids")]
        person_ids: Vec<String>,
        /// Output format (table: one line of text).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Events by predicate: `elide events delete` (and its --dry-run).
    Events {
        #[command(subcommand)]
        command: crate::erasure::EventsCommand,
    },
    /// Receipts of verified deletions: `elide receipts show` and `verify`.
    Receipts {
        #[command(subcommand)]
        command: crate::erasure::ReceiptsCommand,
    },
    /// Partitions, tombstoned rows, bytes and pending deletion requests.
    Status {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Purge deleted rows from disk (and merge small parts) now, then
    /// advance deletion requests (purged, verified).
    Compact {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Purge every part with deleted rows, whatever the schedule says.
        /// Without it, do what the compaction policy plans at this time
        /// (window, deleted-fraction threshold, erasure deadline, merges).
        #[arg(long)]
        now: bool,
        /// Only this project.
        #[arg(long, value_parser = stored_project_id, allow_hyphen_values = true)]
        project: Option<i64>,
        /// Skip merges of small parts.
        #[arg(long)]
        no_merge: bool,
        /// Limit reads+writes to this many MiB/s (1 to 1048576; default: unlimited).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        io_limit_mib: Option<u64>,
        /// Output format of the report.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cancel a deletion inside its undo window (`elide events delete
    /// --undo-window-hours N`): its rows are visible again when this
    /// returns. Refused, changing nothing, without a window or after it.
    Cancel {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The request's id.
        #[arg(long)]
        request: u64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List deletion requests and their lifecycle.
    Deletions {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Which requests.
        #[arg(long, value_enum, default_value_t = StatusFilter::All)]
        status: StatusFilter,
        /// Only requests whose state changed after this cursor (the
        /// deletion feed): pass the largest `cursor` of the rows already
        /// applied. Rows come in the order of their changes.
        #[arg(long)]
        since: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drop a project: its rows become invisible at once; its parts,
    /// deletion requests and files are removed.
    DropProject {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The project.
        #[arg(long, value_parser = stored_project_id, allow_hyphen_values = true)]
        project: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Check every file of a store (parts, tombstones, manifests, ingest
    /// log, metadata) and report what is damaged (exit 1 if anything is).
    Scrub {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Check what erasure needs of where the data lives: on an object
    /// store (`--data-dir s3://…`), put-if-absent, conditional replace,
    /// versioning off, the writer lease (exit 1 if a check fails).
    Doctor {
        /// Data directory (a path or an s3:// URL).
        #[arg(long)]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Export a table for other engines: `elide export delta` writes a
    /// Delta Lake table over the part files in place, deletions as
    /// deletion vectors (Spark, Trino, DuckDB, delta-rs read it).
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
    /// Capture PostHog events (JSON lines) through identity resolution.
    Capture(crate::persons_cli::CaptureArgs),
    /// Persons: list, get, delete, reset, split, set, unset, deletions, activity, timeline.
    Persons {
        #[command(subcommand)]
        command: crate::persons_cli::PersonsCommand,
    },
    /// Serve the PostHog-compatible HTTP API over a data directory.
    Serve(crate::serve::ServeArgs),
    /// Serve a worker of distributed SQL (datafusion-distributed, gRPC)
    /// over a data directory, read-only: `elide sql --workers` and
    /// `elide_distributed` coordinators run their stages on it.
    Worker(crate::distributed::WorkerArgs),
    /// Projects of a data directory no server holds: create, list, delete.
    Projects {
        #[command(subcommand)]
        command: crate::serve::ProjectsCommand,
    },
    /// Personal API keys of a data directory no server holds: create,
    /// list, revoke.
    Keys {
        #[command(subcommand)]
        command: crate::serve::KeysCommand,
    },
    /// Generate a sample, ingest it, delete persons, query before and after.
    Demo {
        /// Data directory (must be empty or absent).
        #[arg(long, default_value = "elide-demo-data")]
        data_dir: PathBuf,
        /// Events to generate.
        #[arg(long, default_value_t = 500_000)]
        events: u64,
    },
    /// Benchmark harness (see docs/benchmarks.md).
    Bench(crate::bench::BenchArgs),
    /// Benchmark the persons pipeline and person deletion end to end.
    BenchPersons(crate::bench_persons::BenchPersonsArgs),
    /// Benchmark the HTTP server over loopback: capture throughput, persons
    /// list and bulk delete latency under load, deletion visibility.
    BenchHttp(crate::bench_http::BenchHttpArgs),
    /// Benchmark the embedding API: ingest_files, open and ready(), one
    /// delete_many against one delete per person, the purge.
    BenchEmbed(crate::bench_embed::BenchEmbedArgs),
    /// Benchmark deletion of events by predicate: time to hidden against
    /// a scan of the same partitions, the dry run, the purge.
    BenchErasure(crate::bench_erasure::BenchErasureArgs),
    /// Benchmark funnels: window_funnel against the same funnel in SQL
    /// window functions, before and after deleting 1% of persons and the
    /// purge (benches/funnel_vs_clickhouse.py adds ClickHouse).
    BenchAnalytics(crate::bench_analytics::BenchAnalyticsArgs),
    /// Elide's side of benches/compare.py (against DuckDB and ClickHouse):
    /// ingest, queries, delete 1% of persons, purge, bytes, as JSON.
    BenchCompare(crate::bench_compare::BenchCompareArgs),
    /// Test helper: appends and deletes until killed, printing acknowledgements.
    #[command(hide = true)]
    CrashWorker {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Random seed.
        #[arg(long)]
        seed: u64,
        /// Only open (recover) and flush, then wait to be killed.
        #[arg(long)]
        recover_only: bool,
    },
}

/// Entry point of the `elide` binary.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // A server logs its requests; one-shot commands only their problems.
    let default = match cli.command {
        Command::Serve(_) | Command::Worker(_) => "info",
        _ => "warn",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ELIDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    wiring::set_local_dir(cli.local_dir);
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Gen {
            events,
            persons,
            projects,
            seed,
            out,
        } => gen(events, persons, projects, seed, &out),
        Command::Ingest {
            data_dir,
            table,
            files,
        } => ingest(&data_dir, &table, &files),
        Command::Sql {
            data_dir,
            format,
            allow_writes,
            repeat,
            workers,
            bytes_per_task,
            sql,
        } => {
            let store = wiring::store(&data_dir, Access::Read)?;
            // The persons tables too, when there is a metadata database
            // (kept here: a session holds it only weakly).
            let persons = if wiring::has_persons(&store) && workers.is_none() {
                Some(wiring::persons(&store, Access::Read)?)
            } else {
                None
            };
            let ctx = match (&persons, workers) {
                (_, Some(workers)) => elide_distributed::coordinator_context(
                    &store,
                    &elide_distributed::CoordinatorOptions {
                        bytes_per_partition: bytes_per_task
                            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
                        ..elide_distributed::CoordinatorOptions::new(workers.0)
                    },
                )?,
                (Some(p), None) => elide_app::sql::session(p)?,
                (None, None) => elide_query::session_context(&store)?,
            };
            let writes = if allow_writes {
                // The directory that holds files (an object store's local one).
                elide_query::SqlWrites::CopyOutside(store.dir())
            } else {
                elide_query::SqlWrites::None
            };
            let rt = runtime()?;
            let mut times = Vec::new();
            let mut result = None;
            for run in 1..=repeat.unwrap_or(1) {
                let t = std::time::Instant::now();
                result = Some(rt.block_on(elide_query::run_sql_checked(&ctx, &sql, writes))?);
                times.push(t.elapsed());
                if repeat.is_some() {
                    eprintln!("run {run}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
                }
            }
            if repeat.is_some() {
                eprintln!(
                    "median: {:.1} ms",
                    crate::bench::median(times).as_secs_f64() * 1e3
                );
            }
            let Some(result) = result else {
                return Err("no run".into());
            };
            // An empty result still has its columns (a CSV header).
            let batches = if result.batches.is_empty() {
                vec![arrow::record_batch::RecordBatch::new_empty(result.schema)]
            } else {
                result.batches
            };
            let mut out = std::io::stdout().lock();
            write_batches(&mut out, &batches, format)?;
            Ok(())
        }
        Command::Delete {
            data_dir,
            project,
            person_ids,
            format,
            ..
        } if !person_ids.is_empty() => {
            crate::lifecycle::delete_person_ids(&data_dir, project, &person_ids, format)
        }
        Command::Delete {
            data_dir,
            project,
            distinct_ids,
            format,
            ..
        } => {
            let store = wiring::writer(&data_dir, Access::Write)?;
            let started = Instant::now();
            let outcome = store.delete(DeleteSpec::ids(project, distinct_ids))?;
            let elapsed = started.elapsed();
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "request_id": outcome.request_id,
                        "rows_hidden": outcome.rows_hidden,
                        "cutoff_seq": outcome.cutoff,
                        "status": "pending",
                        "elapsed_ms": elapsed.as_secs_f64() * 1e3,
                    })
                )?,
                Format::Csv => writeln!(
                    out,
                    "request_id,rows_hidden,cutoff_seq\n{},{},{}",
                    outcome.request_id, outcome.rows_hidden, outcome.cutoff
                )?,
                Format::Table => writeln!(
                    out,
                    "request_id={} rows_hidden={} cutoff_seq={} status=pending ({:.1} ms)",
                    outcome.request_id,
                    outcome.rows_hidden,
                    outcome.cutoff,
                    elapsed.as_secs_f64() * 1e3
                )?,
            }
            store.close()?;
            Ok(())
        }
        Command::Status { data_dir, format } => {
            let store = wiring::store(&data_dir, Access::Read)?;
            let status = store.status()?;
            let mut out = std::io::stdout().lock();
            print_status(&mut out, &status, format)?;
            Ok(())
        }
        Command::Scrub { data_dir, format } => crate::scrub::run(&data_dir, format),
        Command::Doctor { data_dir, format } => crate::doctor::run(&data_dir, format),
        Command::Export {
            what: ExportCommand::Delta(a),
        } => crate::export_delta::run(a),
        Command::Compact {
            data_dir,
            now,
            project,
            no_merge,
            io_limit_mib,
            format,
        } => crate::lifecycle::compact(
            &data_dir,
            {
                let mut req = if now {
                    elide_store::CompactRequest::now()
                } else {
                    elide_store::CompactRequest::scheduled()
                };
                if let Some(p) = project {
                    req = req.project(p);
                }
                if no_merge {
                    req = req.without_merges();
                }
                // At most 2^20 MiB/s (clap checks), so this never overflows.
                if let Some(m) = io_limit_mib {
                    req = req.io_limit(m << 20);
                }
                req
            },
            format,
        ),
        Command::Deletions {
            data_dir,
            status,
            since,
            format,
        } => crate::lifecycle::deletions(&data_dir, status, since, format),
        Command::Events { command } => crate::erasure::events(command),
        Command::Receipts { command } => crate::erasure::receipts(command),
        Command::Cancel {
            data_dir,
            request,
            format,
        } => crate::erasure::cancel(&data_dir, request, format),
        Command::DropProject {
            data_dir,
            project,
            format,
        } => crate::lifecycle::drop_project(&data_dir, project, format),
        Command::Capture(args) => crate::persons_cli::capture(args),
        Command::Persons { command } => crate::persons_cli::run(command),
        Command::Demo { data_dir, events } => crate::demo::run(&data_dir, events),
        Command::Serve(args) => crate::serve::serve(args),
        Command::Worker(args) => crate::distributed::worker(args),
        Command::Projects { command } => crate::serve::projects(command),
        Command::Keys { command } => crate::serve::keys(command),
        Command::Bench(args) => crate::bench::run(args),
        Command::BenchPersons(args) => crate::bench_persons::run(args),
        Command::BenchHttp(args) => crate::bench_http::run(args),
        Command::BenchEmbed(args) => crate::bench_embed::run(args),
        Command::BenchErasure(args) => crate::bench_erasure::run(args),
        Command::BenchAnalytics(args) => crate::bench_analytics::run(args),
        Command::BenchCompare(args) => crate::bench_compare::run(args),
        Command::CrashWorker {
            data_dir,
            seed,
            recover_only,
        } => crate::crash_worker::run(&data_dir, seed, recover_only),
    }
}

/// A project id on the command line: a positive integer, as everywhere.
pub(crate) fn project_id(s: &str) -> std::result::Result<i64, String> {
    match s.parse::<i64>() {
        Ok(p) if p >= 1 => Ok(p),
        Ok(p) => Err(format!("project ids are positive integers, got {p}")),
        Err(_) => Err(format!("project ids are positive integers, got {s:?}")),
    }
}

/// What `elide export` writes.
#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// A Delta Lake table referencing the part files (no parquet is
    /// copied), each part's deleted rows as a deletion vector; run again to
    /// commit what changed (new parts, deletions, purges).
    Delta(crate::export_delta::DeltaArgs),
}

/// A project id naming rows already stored: positive, or 0, which stores
/// written before project ids had to be positive may hold (so that their
/// rows can still be deleted, dropped and compacted).
pub(crate) fn stored_project_id(s: &str) -> std::result::Result<i64, String> {
    match s.parse::<i64>() {
        Ok(p) if p >= 0 => Ok(p),
        Ok(p) => Err(format!(
            "project ids are positive integers (0 only in older stores), got {p}"
        )),
        Err(_) => Err(format!("project ids are positive integers, got {s:?}")),
    }
}

/// Which deletion requests `elide deletions` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Rows hidden, bytes still on disk.
    Pending,
    /// Parts rewritten, old files removed.
    Purged,
    /// Verified: nothing left on disk.
    Verified,
    /// Cancelled inside their undo window.
    Cancelled,
    /// Every request.
    All,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        // User SQL may nest its expressions MAX_EXPR_DEPTH deep (see
        // elide_query::sql_depth).
        .thread_stack_size(elide_query::sql_depth::QUERY_STACK)
        .enable_all()
        .build()?)
}

/// Run SQL on a fresh session over `store`.
pub(crate) fn run_sql(store: &Store, sql: &str) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let rt = runtime()?;
    let ctx = elide_query::session_context(store)?;
    Ok(rt
        .block_on(elide_query::run_sql_checked(
            &ctx,
            sql,
            elide_query::SqlWrites::None,
        ))?
        .batches)
}

pub(crate) fn print_status(
    out: &mut dyn Write,
    s: &elide_store::StoreStatus,
    format: Format,
) -> Result<()> {
    print_status_limited(out, s, format, usize::MAX)
}

/// A partition's days for a table: `2026-08-01`, or `2026-08-01..14` for
/// parts merged across days of one month.
pub(crate) fn days_label(day: &str, last_day: Option<&str>) -> String {
    match last_day {
        Some(last) => format!("{day}..{}", last.get(8..).unwrap_or(last)),
        None => day.to_string(),
    }
}

/// Like [`print_status`], showing at most `max_rows` partitions in the table format.
pub(crate) fn print_status_limited(
    out: &mut dyn Write,
    s: &elide_store::StoreStatus,
    format: Format,
    max_rows: usize,
) -> Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, s)?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(
                out,
                "table,project_id,day,parts,rows,tombstoned_rows,tombstoned_fraction,bytes,bytes_awaiting_purge,last_day"
            )?;
            for p in &s.partitions {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{:.6},{},{},{}",
                    p.table,
                    p.project_id,
                    p.day,
                    p.parts,
                    p.rows,
                    p.tombstoned_rows,
                    p.tombstoned_fraction,
                    p.bytes,
                    p.bytes_awaiting_purge,
                    p.last_day.as_deref().unwrap_or("")
                )?;
            }
        }
        Format::Table => {
            writeln!(out, "manifest version {}, next _seq {}, buffered rows {} ({} hidden), ingest-log segments {}", s.version, s.next_seq, s.memtable_rows, s.memtable_deleted_rows, s.wal_segments)?;
            let t = &s.totals;
            writeln!(out, "{} visible rows; {} parts ({} with tombstones), {} rows ({} tombstoned), {} bytes ({} awaiting purge)", t.visible_rows, t.parts, t.parts_with_tombstones, t.rows, t.tombstoned_rows, t.bytes, t.bytes_awaiting_purge)?;
            writeln!(
                out,
                "{:<11} {:>8} {:<14} {:>6} {:>12} {:>12} {:>7} {:>14} {:>14}",
                "table",
                "project",
                "day",
                "parts",
                "rows",
                "tombstoned",
                "dead%",
                "bytes",
                "await purge"
            )?;
            let (mut parts, mut rows, mut dead, mut bytes, mut awaiting) = (0, 0, 0, 0, 0);
            for (i, p) in s.partitions.iter().enumerate() {
                if i == max_rows {
                    writeln!(
                        out,
                        "...         ({} more partitions)",
                        s.partitions.len() - max_rows
                    )?;
                }
                parts += p.parts;
                rows += p.rows;
                dead += p.tombstoned_rows;
                bytes += p.bytes;
                awaiting += p.bytes_awaiting_purge;
                if i >= max_rows {
                    continue;
                }
                writeln!(
                    out,
                    "{:<11} {:>8} {:<14} {:>6} {:>12} {:>12} {:>6.2}% {:>14} {:>14}",
                    p.table.name(),
                    p.project_id,
                    days_label(&p.day, p.last_day.as_deref()),
                    p.parts,
                    p.rows,
                    p.tombstoned_rows,
                    p.tombstoned_fraction * 100.0,
                    p.bytes,
                    p.bytes_awaiting_purge
                )?;
            }
            writeln!(
                out,
                "{:<11} {:>8} {:<10} {:>6} {:>12} {:>12} {:>6.2}% {:>14} {:>14}",
                "total",
                "",
                format!("{} part.", s.partitions.len()),
                parts,
                rows,
                dead,
                dead as f64 * 100.0 / rows.max(1) as f64,
                bytes,
                awaiting
            )?;
            let when = |us: i64| {
                chrono::DateTime::from_timestamp_micros(us)
                    .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default()
            };
            match (&s.schedule, s.next_window_us) {
                (Some(cron), Some(next)) => writeln!(
                    out,
                    "purge schedule: {cron:?} (UTC), next window {}",
                    when(next)
                )?,
                _ => writeln!(
                    out,
                    "purge schedule: off (manual, deadline and threshold purges only)"
                )?,
            }
            writeln!(
                out,
                "deletion requests: {} pending, {} purged, {} verified; oldest pending: {}",
                s.requests_pending,
                s.requests_purged,
                s.requests_verified,
                s.oldest_pending_age_s
                    .map_or("none".to_string(), crate::lifecycle::age)
            )?;
            if s.requests_logical + s.requests_cancelled > 0 {
                writeln!(
                    out,
                    "requests hidden by their predicate (undo window open or resolving): {}; cancelled: {}",
                    s.requests_logical, s.requests_cancelled
                )?;
            }
            if let Some(due) = s.next_purge_due_us {
                writeln!(
                    out,
                    "next purge due by: {}; overdue requests: {}",
                    when(due),
                    if s.requests_overdue.is_empty() {
                        "none".to_string()
                    } else {
                        format!("{:?}", s.requests_overdue)
                    }
                )?;
            }
            match &s.last_compaction {
                Some(c) => writeln!(
                    out,
                    "last compaction: {} ({} ms): {} parts purged, {} merged, {} written; {} rows dropped; {} bytes read, {} written; {} requests purged, {} verified",
                    when(c.finished_at_us),
                    c.elapsed_ms,
                    c.parts_purged,
                    c.parts_merged,
                    c.parts_written,
                    c.rows_dropped,
                    c.bytes_read,
                    c.bytes_written,
                    c.requests_purged,
                    c.requests_verified
                )?,
                None => writeln!(out, "last compaction: never")?,
            }
            for r in &s.pending_requests {
                let created = chrono::DateTime::from_timestamp_micros(r.created_at_us)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default();
                writeln!(out, "  request {:>5}  {:<12}  project {:>6}  distinct ids {:>4}  rows hidden {:>9}  cut-off _seq {}  created {}  due by {}", r.id, r.kind.as_str(), r.project_id, r.distinct_ids.len(), r.rows_hidden, r.cutoff_seq, created, when(r.purge_due_by_us))?;
            }
        }
    }
    Ok(())
}

fn gen(events: u64, persons: u64, projects: u32, seed: u64, out: &Path) -> Result<()> {
    let cfg = elide_gen::GenConfig {
        events,
        persons,
        projects,
        seed,
        ..Default::default()
    };
    let bar = progress_bar(events, "generating");
    let started = Instant::now();
    let summary = elide_gen::write_parquet(cfg, out, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} events ({} persons seen) to {} ({} bytes) in {:.1} s",
        summary.events,
        summary.persons_seen,
        out.display(),
        summary.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) fn progress_bar(len: u64, msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar
}

/// `elide ingest`: every file in one bulk ingest, committed once. A bad
/// row anywhere, a full disk or a kill leaves the store as it was.
fn ingest(dir: &Path, table: &str, files: &[PathBuf]) -> Result<()> {
    let table = Table::from_name(table)
        .ok_or_else(|| format!("unknown table {table:?} (expected events or recordings)"))?;
    let store = wiring::writer(dir, Access::Create)?;
    let bar = progress_bar(0, "ingesting");
    let started = Instant::now();
    let out = store
        .ingest_files(
            table,
            files,
            elide_store::IngestOptions::new().progress(|p| bar.set_position(p.rows)),
        )
        .map_err(|e| match e {
            elide_store::StoreError::OutcomeUnknown(_) => format!(
                "{e} (the ingest may or may not be in the store: check with `elide status` before retrying)"
            ),
            e => format!("{e} (nothing was ingested)"),
        })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ingested {} rows from {} file(s) into {table} in {secs:.2} s ({:.0} rows/s)",
        out.rows,
        files.len(),
        out.rows as f64 / secs.max(1e-9)
    );
    store.close()?;
    Ok(())
}
