//! `elide capture` and `elide persons ...`: the command line of persons and
//! identity. Flags named in the issue are a contract; output of `persons
//! delete` is the bulk-delete JSON (`persons_found`, `persons_deleted`,
//! `events_queued_for_deletion`, `recordings_queued_for_deletion`,
//! `deletion_errors`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use elide_persons::capture::parse_line;
use elide_persons::CaptureBatch;
use elide_persons::{
    DeletePersons, DeletionState, Person, PersonFilter, Persons, PropertyFilter, SplitSpec,
};
use serde_json::{Map, Value};

use crate::output::anyhow_lite::Result;
use elide_app::wiring::{self, Access};

/// Output of person commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewFormat {
    /// Aligned text.
    Table,
    /// JSON.
    Json,
}

/// `elide capture` arguments.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Project id (created on first use).
    #[arg(long, value_parser = crate::cli::project_id, allow_hyphen_values = true)]
    project: i64,
    /// Events per identity-resolution batch (the whole input is still one
    /// metadata transaction and one bulk ingest).
    #[arg(long, default_value_t = 50_000)]
    batch_size: usize,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = ViewFormat::Table)]
    format: ViewFormat,
    /// JSON-lines file: one PostHog capture event per line, or `{"batch": [...]}`
    /// objects; `-` reads standard input.
    file: PathBuf,
}

/// `elide persons` subcommands.
#[derive(Debug, Subcommand)]
pub enum PersonsCommand {
    /// List persons, newest first.
    List {
        #[command(flatten)]
        at: At,
        /// Only the person owning this distinct id.
        #[arg(long)]
        distinct_id: Option<String>,
        /// Only persons whose `email` property equals this.
        #[arg(long)]
        email: Option<String>,
        /// Substring of email or name, or an exact distinct id or UUID.
        #[arg(long)]
        search: Option<String>,
        /// Property filter as JSON: {"key": K, "operator": O, "value": V} with PostHog's operators (exact, is_not, icontains, not_icontains, regex, not_regex, is_set, is_not_set, gt, gte, lt, lte, between, not_between, is_date_exact, is_date_before, is_date_after, semver_eq, semver_neq, semver_gt, semver_gte, semver_lt, semver_lte, semver_tilde, semver_caret, semver_wildcard); `operator` defaults to exact; values compare as PostHog compares them (by text). Repeatable.
        #[arg(long = "property")]
        properties: Vec<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ViewFormat::Table)]
        format: ViewFormat,
    },
    /// Show one person (JSON).
    Get {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID.
        id_or_uuid: String,
    },
    /// Delete persons (and queue their events/recordings for deletion); prints the result as JSON.
    Delete {
        #[command(flatten)]
        at: At,
        /// Person UUID (repeatable, at most 1000).
        #[arg(long = "uuid")]
        uuids: Vec<String>,
        /// Distinct id naming a person (repeatable, at most 1000).
        #[arg(long = "distinct-id")]
        distinct_ids: Vec<String>,
        /// Hide now, and purge later, their events captured before the request.
        #[arg(long)]
        delete_events: bool,
        /// The same for their recordings.
        #[arg(long)]
        delete_recordings: bool,
        /// Delete the data but keep the profile.
        #[arg(long)]
        keep_person: bool,
    },
    /// Export everything held about one person (subject access): the
    /// profile, every distinct id, merged persons, activity, and every
    /// event and recording row of its ids (docs/persons.md, "Export").
    Export {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID.
        id_or_uuid: String,
        /// ndjson (one JSON object per line) or parquet (one file; the
        /// profile and activity in its metadata).
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Ndjson)]
        format: ExportFormatArg,
        /// Write here instead of standard output (required for parquet on
        /// a terminal).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Count the rows (what deleting the person would hide) and print
        /// them as JSON; write nothing else.
        #[arg(long)]
        dry_run: bool,
    },
    /// Free a distinct id: lift a deletion's block, or detach it from its person.
    Reset {
        #[command(flatten)]
        at: At,
        /// The distinct id.
        #[arg(long)]
        distinct_id: String,
    },
    /// Move distinct ids of a person to new persons (one per id).
    Split {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID.
        id: String,
        /// Keep this id; move all others.
        #[arg(long, conflicts_with = "distinct_ids")]
        main_distinct_id: Option<String>,
        /// Move these ids (repeatable).
        #[arg(long = "distinct-id")]
        distinct_ids: Vec<String>,
    },
    /// Set person properties (a `$set` event through the pipeline).
    Set {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID.
        id: String,
        /// Properties as a JSON object.
        properties: String,
    },
    /// Remove one person property (`$unset` through the pipeline).
    Unset {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID.
        id: String,
        /// Property key.
        key: String,
    },
    /// Deletion status per person: pending or completed (verified).
    Deletions {
        #[command(flatten)]
        at: At,
        /// Only this state.
        #[arg(long, value_enum)]
        status: Option<StateArg>,
        /// Only this person (UUID).
        #[arg(long)]
        person: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Activity log of a person or of the project (JSON lines, newest first).
    Activity {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID; the whole project when absent.
        id: Option<String>,
        /// Most entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// A person's property states over time, from its events (JSON).
    Timeline {
        #[command(flatten)]
        at: At,
        /// Integer id or UUID.
        id: String,
    },
    /// Make a new, empty metadata database for a store whose database was
    /// lost (persons, properties and activity are gone; the distinct ids of
    /// the store's deletion requests are blocked again, but for those that
    /// stayed in use: a detached id's run, a deletion keeping the profile).
    RebuildMetadata {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Required: confirms the old database is lost for good.
        #[arg(long, required = true)]
        confirm: bool,
    },
}

/// Where: data directory and project.
#[derive(Debug, Args)]
pub struct At {
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Project id.
    #[arg(long, value_parser = crate::cli::project_id, allow_hyphen_values = true)]
    project: i64,
}

/// Deletion state filter.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// Not yet verified.
    Pending,
    /// Verified.
    Completed,
}

/// Open the persons of `dir` for `access`, run `f`, close the store (also
/// when `f` failed, so that its error is the one reported).
fn with_persons<T>(
    dir: &Path,
    access: Access,
    f: impl FnOnce(&Arc<Persons>) -> Result<T>,
) -> Result<T> {
    let store = wiring::store(dir, access)?;
    let persons = wiring::persons(&store, access)?;
    let out = f(&persons);
    drop(persons);
    let closed = store.close();
    let out = out?;
    closed?;
    Ok(out)
}

/// `--format` of `elide persons export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// One JSON object per line.
    Ndjson,
    /// One parquet file.
    Parquet,
}

fn export(
    at: &At,
    key: &str,
    format: ExportFormatArg,
    out: Option<&Path>,
    dry_run: bool,
) -> Result<()> {
    use elide_app::export::{ExportFormat, ExportWriter};
    use std::io::IsTerminal;
    let format = match format {
        ExportFormatArg::Ndjson => ExportFormat::Ndjson,
        ExportFormatArg::Parquet => ExportFormat::Parquet,
    };
    if !dry_run
        && out.is_none()
        && format == ExportFormat::Parquet
        && std::io::stdout().is_terminal()
    {
        return Err("parquet is binary: give --out FILE, or redirect standard output".into());
    }
    with_persons(&at.data_dir, Access::Read, |p| {
        if dry_run {
            let rows = p.export_counts(at.project, key)?;
            print_json(&serde_json::json!({
                "rows": rows.total(),
                "parts": rows.parts,
                "by_table": rows.rows,
            }))?;
            return Ok(());
        }
        match out {
            Some(path) => {
                // Written beside, then renamed: a failed export leaves no
                // partial file under the name asked for.
                let tmp = path.with_extension("partial");
                let file = std::io::BufWriter::new(File::create(&tmp)?);
                let mut w = ExportWriter::new(format, file);
                let done = p
                    .export(at.project, key, &[], &mut w)
                    .map_err(crate::output::anyhow_lite::Error::from)
                    .and_then(|rows| Ok((rows, w.finish()?)));
                match done {
                    Ok((rows, mut file)) => {
                        file.flush()?;
                        drop(file);
                        std::fs::rename(&tmp, path)?;
                        eprintln!("exported {} rows to {}", rows.total(), path.display());
                        Ok(())
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            }
            None => {
                let stdout = std::io::BufWriter::new(std::io::stdout());
                let mut w = ExportWriter::new(format, stdout);
                p.export(at.project, key, &[], &mut w)?;
                w.finish()?.flush()?;
                Ok(())
            }
        }
    })
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Run `elide capture`: the whole input is one unit (one metadata
/// transaction, one bulk ingest, committed together): a bad line, a full
/// disk or a kill leaves nothing of it. Standard input and pipes are read
/// once.
pub fn capture(a: CaptureArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let name = a.file.display().to_string();
    let reader: Box<dyn BufRead> = if a.file == Path::new("-") {
        Box::new(BufReader::with_capacity(1 << 20, std::io::stdin().lock()))
    } else {
        let f = File::open(&a.file).map_err(|e| format!("cannot open {name}: {e}"))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let (stats, secs) = with_persons(&a.data_dir, Access::Create, |persons| {
        let bar = crate::cli::progress_bar(0, "capturing");
        let started = Instant::now();
        let mut lines =
            elide_store::jsonl::bounded_lines(reader, elide_store::jsonl::MAX_LINE_BYTES);
        let batch_size = a.batch_size;
        let mut failed = false;
        let mut batches = std::iter::from_fn(|| {
            if failed {
                return None;
            }
            let mut batch = CaptureBatch::default();
            let mut bytes = 0usize;
            for (i, line) in lines.by_ref() {
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        failed = true;
                        let reason = match e {
                            elide_store::StoreError::InvalidLine { reason, .. } => reason,
                            e => e.to_string(),
                        };
                        return Some(Err(elide_persons::PersonsError::InvalidLine {
                            line: i + 1,
                            reason,
                        }));
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                bytes += line.len();
                let now = chrono::Utc::now().timestamp_micros();
                match parse_line(i + 1, &line, now) {
                    Ok(evs) => {
                        batch.lines.extend(std::iter::repeat_n(i + 1, evs.len()));
                        batch.events.extend(evs);
                    }
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
                // Cut by bytes too: a batch's strings become Arrow
                // columns of at most 2 GiB.
                if batch.events.len() >= batch_size || bytes >= elide_store::jsonl::MAX_BATCH_BYTES
                {
                    return Some(Ok(batch));
                }
            }
            (!batch.events.is_empty()).then_some(Ok(batch))
        });
        let outcome = persons
            .capture_all(a.project, &mut batches, &mut |n| bar.inc(n))
            .map_err(|e| format!("{name}: {e} (nothing was captured)"))?;
        bar.finish_and_clear();
        Ok((outcome.stats, started.elapsed().as_secs_f64()))
    })?;
    match a.format {
        ViewFormat::Json => {
            let mut v = serde_json::to_value(stats)?;
            if let Value::Object(m) = &mut v {
                m.insert("project_id".into(), a.project.into());
                m.insert("elapsed_s".into(), secs.into());
            }
            print_json(&v)?;
        }
        ViewFormat::Table => println!(
            "captured {} events into project {} in {:.2} s ({:.0} events/s): {} persons created, {} updated, {} merged ({} refused, {} illegal), {} personless, {} blocked, {} property updates past the size bound, {} personless identify/alias/merge events dropped",
            stats.events,
            a.project,
            secs,
            stats.events as f64 / secs.max(1e-9),
            stats.persons_created,
            stats.persons_updated,
            stats.merges,
            stats.merges_refused,
            stats.merges_illegal,
            stats.personless,
            stats.blocked,
            stats.properties_too_large,
            stats.dropped_personless
        ),
    }
    Ok(())
}

/// Run `elide persons ...`.
pub fn run(cmd: PersonsCommand) -> Result<()> {
    match cmd {
        PersonsCommand::List {
            at,
            distinct_id,
            email,
            search,
            properties,
            limit,
            offset,
            format,
        } => {
            let properties = properties
                .iter()
                .map(|p| {
                    // `exact` when no operator is given, as the API takes it.
                    let mut v: serde_json::Value =
                        serde_json::from_str(p).map_err(|e| format!("--property {p}: {e}"))?;
                    if let Some(o) = v.as_object_mut() {
                        o.entry("operator").or_insert_with(|| "exact".into());
                    }
                    serde_json::from_value::<PropertyFilter>(v)
                        .map_err(|e| format!("--property {p}: {e}"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let filter = PersonFilter {
                distinct_id,
                email,
                search,
                properties,
                uuids: None,
                not_uuids: Vec::new(),
                limit,
                offset,
            };
            with_persons(&at.data_dir, Access::Read, |p| {
                let page = p.list(at.project, &filter)?;
                match format {
                    ViewFormat::Json => print_json(&page)?,
                    ViewFormat::Table => print_table(&page.results, page.next_offset)?,
                }
                Ok(())
            })
        }
        PersonsCommand::Get { at, id_or_uuid } => with_persons(&at.data_dir, Access::Read, |p| {
            print_json(&p.get(at.project, &id_or_uuid)?)?;
            Ok(())
        }),
        PersonsCommand::Delete {
            at,
            uuids,
            distinct_ids,
            delete_events,
            delete_recordings,
            keep_person,
        } => {
            let req = DeletePersons {
                uuids,
                distinct_ids,
                delete_events,
                delete_recordings,
                keep_person,
            };
            let r = with_persons(&at.data_dir, Access::Write, |p| {
                Ok(p.delete(at.project, &req)?)
            })?;
            print_json(&r)?;
            if r.persons_found == 0 {
                return Err("no person found for the ids given; nothing was deleted".into());
            }
            Ok(())
        }
        PersonsCommand::Export {
            at,
            id_or_uuid,
            format,
            out,
            dry_run,
        } => export(&at, &id_or_uuid, format, out.as_deref(), dry_run),
        PersonsCommand::Reset { at, distinct_id } => {
            with_persons(&at.data_dir, Access::Write, |p| {
                print_json(&p.reset_distinct_id(at.project, &distinct_id)?)?;
                Ok(())
            })
        }
        PersonsCommand::Split {
            at,
            id,
            main_distinct_id,
            distinct_ids,
        } => {
            let spec = match (main_distinct_id, distinct_ids.is_empty()) {
                (Some(m), _) => SplitSpec::Main(m),
                (None, false) => SplitSpec::Ids(distinct_ids),
                (None, true) => SplitSpec::AllButFirst,
            };
            with_persons(&at.data_dir, Access::Write, |p| {
                print_json(&p.split(at.project, &id, &spec)?)?;
                Ok(())
            })
        }
        PersonsCommand::Set { at, id, properties } => {
            let set: Map<String, Value> = serde_json::from_str(&properties)
                .map_err(|e| format!("properties must be a JSON object: {e}"))?;
            with_persons(&at.data_dir, Access::Write, |p| {
                print_json(&p.update_properties(at.project, &id, set)?)?;
                p.store().flush()?;
                Ok(())
            })
        }
        PersonsCommand::Unset { at, id, key } => with_persons(&at.data_dir, Access::Write, |p| {
            print_json(&p.delete_property(at.project, &id, &key)?)?;
            p.store().flush()?;
            Ok(())
        }),
        PersonsCommand::Deletions {
            at,
            status,
            person,
            limit,
            offset,
        } => {
            let state = status.map(|s| match s {
                StateArg::Pending => DeletionState::Pending,
                StateArg::Completed => DeletionState::Completed,
            });
            with_persons(&at.data_dir, Access::Read, |p| {
                print_json(&p.deletion_status(
                    at.project,
                    person.as_deref(),
                    state,
                    limit,
                    offset,
                )?)?;
                Ok(())
            })
        }
        PersonsCommand::Activity { at, id, limit } => {
            with_persons(&at.data_dir, Access::Read, |p| {
                print_json(&p.activity(at.project, id.as_deref(), limit)?)?;
                Ok(())
            })
        }
        PersonsCommand::Timeline { at, id } => with_persons(&at.data_dir, Access::Read, |p| {
            let rt = crate::cli::runtime()?;
            // No memory cap and no deadline on the command line, as `elide sql`.
            let limits = elide_app::query::QueryLimits {
                memory_bytes: None,
                ..Default::default()
            };
            let t = rt.block_on(elide_app::sql::timeline(p, at.project, &id, &limits))?;
            if t.left_out > 0 {
                eprintln!(
                    "the {} earliest points are left out: the states printed hold at most {} property values together",
                    t.left_out,
                    elide_persons::props::MAX_TIMELINE_VALUES
                );
            }
            print_json(&t.points)?;
            Ok(())
        }),
        PersonsCommand::RebuildMetadata { data_dir, confirm } => {
            if !confirm {
                return Err("--confirm is required".into());
            }
            let store = wiring::store(&data_dir, Access::Write)?;
            let (persons, report) = Persons::rebuild_metadata(store.clone())?;
            drop(persons);
            store.close()?;
            print_json(&report)?;
            Ok(())
        }
    }
}

fn print_table(persons: &[Person], next: Option<usize>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if persons.is_empty() {
        writeln!(out, "(no persons)")?;
        return Ok(());
    }
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let rows: Vec<[String; 6]> = persons
        .iter()
        .map(|p| {
            let mut ids = p.distinct_ids.join(",");
            if ids.chars().count() > 40 {
                ids = ids.chars().take(39).collect::<String>() + "…";
            }
            [
                p.id.to_string(),
                p.uuid.to_string(),
                p.created_at.clone(),
                text(p.properties.get("email")),
                if p.is_identified {
                    "yes".into()
                } else {
                    "no".into()
                },
                ids,
            ]
        })
        .collect();
    let head = [
        "id",
        "uuid",
        "created_at",
        "email",
        "identified",
        "distinct_ids",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6], out: &mut dyn Write| -> std::io::Result<()> {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        writeln!(out, "{}", parts.join("  ").trim_end())
    };
    line(head, &mut out)?;
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]], &mut out)?;
    }
    if let Some(n) = next {
        writeln!(out, "(more: --offset {n})")?;
    }
    Ok(())
}
