//! `elide events delete` (deletion of events by predicate, and its dry
//! run) and `elide projects update` (a project's erasure settings): the
//! command line of erasure beyond whole persons. Flags and JSON output
//! are a contract (issue 12, docs/deletion-lifecycle.md).

use std::io::Write;
use std::path::PathBuf;

use elide_store::predicate::{EventPredicate, PropertyFilter};
use elide_store::{EventDeletion, Table};

use crate::output::anyhow_lite::Result;
use crate::output::Format;
use elide_app::wiring::{self, Access};

/// `elide events …`.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Delete the events a predicate matches (hidden when the command
    /// returns; purged and verified like any deletion). At least one
    /// condition is required: there is no "delete everything".
    Delete(DeleteArgs),
}

/// `elide receipts …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReceiptsCommand {
    /// Print the receipt of a verified deletion request (JSON: its signed
    /// `body` and the `signature`).
    Show {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The request's id.
        #[arg(long)]
        request: u64,
    },
    /// Check every receipt's signature and the hash chain (exit 0 and a
    /// count), or one exported receipt (--receipt) against a public key.
    /// Non-zero, naming the first bad receipt, otherwise.
    Verify {
        /// Data directory (every receipt and the chain).
        #[arg(long, required_unless_present = "receipt", conflicts_with = "receipt")]
        data_dir: Option<PathBuf>,
        /// One receipt file, checked alone (needs --public-key).
        #[arg(long, requires = "public_key")]
        receipt: Option<PathBuf>,
        /// The public key(s), hex, one per line (as in
        /// `receipts/public.key`), kept apart from the data directory;
        /// default: the keys the data directory lists.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Flags of `elide events delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The project.
    #[arg(long, value_parser = crate::cli::stored_project_id, allow_hyphen_values = true)]
    project: i64,
    /// An event name (repeatable: any of them).
    #[arg(long = "event")]
    events: Vec<String>,
    /// A property filter as in the persons list (repeatable: all of
    /// them), e.g. '{"key": "$browser", "value": "Chrome", "operator":
    /// "exact"}'; operators exact, is_not, icontains, is_set, is_not_set,
    /// gt, lt.
    #[arg(long = "property", value_parser = property_filter)]
    properties: Vec<PropertyFilter>,
    /// Only events at or after this time (ISO-8601; a date is midnight UTC).
    #[arg(long, value_parser = timestamp)]
    after: Option<i64>,
    /// Only events before this time (ISO-8601; a date is midnight UTC).
    #[arg(long, value_parser = timestamp)]
    before: Option<i64>,
    /// A distinct id (repeatable: any of them).
    #[arg(long = "distinct-id")]
    distinct_ids: Vec<String>,
    /// Tables (repeatable; default events). Recordings take only
    /// --after, --before and --distinct-id.
    #[arg(long = "table", value_parser = crate::output::parse_table)]
    tables: Vec<Table>,
    /// Count what would be hidden, per table; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep the deletion cancellable (`elide cancel --request ID`) for
    /// this many hours: hidden at once, purged only after the window. At
    /// most the erasure deadline less one day.
    #[arg(long, value_parser = undo_hours, allow_hyphen_values = true)]
    undo_window_hours: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn property_filter(s: &str) -> std::result::Result<PropertyFilter, String> {
    let example = r#"expected e.g. {"key": "$browser", "value": "Chrome", "operator": "exact"}"#;
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| format!("not JSON ({e}); {example}"))?;
    PropertyFilter::strict(&v).map_err(|e| format!("{e}; {example}"))
}

fn undo_hours(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(h) if h > 0.0 && h <= 24.0 * 3650.0 => Ok(h),
        _ => Err(format!("{s:?} is not a positive number of hours")),
    }
}

fn timestamp(s: &str) -> std::result::Result<i64, String> {
    elide_store::normalize::parse_timestamp(s)
}

/// Run `elide events …`.
pub fn events(cmd: EventsCommand) -> Result<()> {
    match cmd {
        EventsCommand::Delete(a) => delete(a),
    }
}

fn delete(a: DeleteArgs) -> Result<()> {
    let d = EventDeletion {
        project_id: a.project,
        predicate: EventPredicate {
            events: a.events,
            properties: a.properties,
            after_us: a.after,
            before_us: a.before,
            distinct_ids: a.distinct_ids,
            ..Default::default()
        },
        tables: a.tables,
        cutoff: None,
        undo_window: a
            .undo_window_hours
            .map(|h| std::time::Duration::from_secs_f64(h * 3600.0)),
    };
    let mut out = std::io::stdout().lock();
    if a.dry_run {
        let store = wiring::store(&a.data_dir, Access::Read)?;
        let p = store.preview_events(&d)?;
        store.close()?;
        match a.format {
            // The preview's own shape: {"rows", "parts", "by_table"}.
            Format::Json => writeln!(out, "{}", serde_json::json!(p))?,
            Format::Csv => {
                writeln!(out, "table,rows,parts")?;
                for (t, v) in &p.by_table {
                    writeln!(out, "{},{},{}", t.name(), v.rows, v.parts)?;
                }
            }
            Format::Table => {
                writeln!(
                    out,
                    "dry run: would hide {} row(s) in {} part(s); nothing changed",
                    p.rows, p.parts
                )?;
                for (t, v) in &p.by_table {
                    writeln!(
                        out,
                        "  {:<10} {:>10} rows {:>6} parts",
                        t.name(),
                        v.rows,
                        v.parts
                    )?;
                }
            }
        }
        return Ok(());
    }
    let store = wiring::writer(&a.data_dir, Access::Write)?;
    let started = std::time::Instant::now();
    let o = store.delete_events(d)?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let r = store.request(o.request_id)?;
    store.close()?;
    let due = r.map_or(String::new(), |r| {
        elide_store::format::us_to_rfc3339(r.purge_due_by_us)
    });
    let undo_until = o.undo_until_us.map(elide_store::format::us_to_rfc3339);
    match a.format {
        Format::Json => {
            let mut v = serde_json::json!({
                "request_id": o.request_id,
                "rows_hidden": o.rows_hidden,
                "purge_due_by": due,
                "cutoff_seq": o.cutoff,
                "elapsed_ms": elapsed_ms,
            });
            if let Some(u) = &undo_until {
                v["undo_until"] = serde_json::json!(u);
            }
            writeln!(out, "{v}")?
        }
        Format::Csv => writeln!(
            out,
            "request_id,rows_hidden,purge_due_by,undo_until\n{},{},{},{}",
            o.request_id,
            o.rows_hidden,
            due,
            undo_until.as_deref().unwrap_or("")
        )?,
        Format::Table => writeln!(
            out,
            "request_id={} rows_hidden={} purge_due_by={}{} ({elapsed_ms:.1} ms)",
            o.request_id,
            o.rows_hidden,
            due,
            undo_until
                .as_deref()
                .map(|u| format!(" undo_until={u} (elide cancel --request {})", o.request_id))
                .unwrap_or_default()
        )?,
    }
    Ok(())
}

/// `elide cancel`: cancel a deletion inside its undo window.
pub(crate) fn cancel(data_dir: &std::path::Path, request: u64, format: Format) -> Result<()> {
    let store = wiring::writer(data_dir, Access::Write)?;
    let o = store.cancel_request(request)?;
    store.close()?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::json!(o))?,
        Format::Csv => writeln!(
            out,
            "request_id,rows_restored\n{},{}",
            o.request_id, o.rows_restored
        )?,
        Format::Table => writeln!(
            out,
            "request {} cancelled: {} row(s) visible again",
            o.request_id, o.rows_restored
        )?,
    }
    Ok(())
}

/// `elide projects update`: a project's erasure deadline and retention.
pub(crate) fn update_project(
    data_dir: &std::path::Path,
    project: i64,
    erasure_deadline_days: Option<u32>,
    retention_days: Option<u32>,
    event_retention_days: Vec<(String, u32)>,
    format: Format,
) -> Result<()> {
    let store = wiring::writer(data_dir, Access::Write)?;
    if wiring::has_persons(&store) {
        // A data directory with projects: the project must be one of them.
        wiring::persons(&store, Access::Write)?.project(project)?;
    }
    let s = store.update_project_settings(project, |s| -> elide_store::Result<()> {
        if let Some(d) = erasure_deadline_days {
            s.erasure_deadline_days = Some(d);
        }
        if let Some(d) = retention_days {
            s.retention_days = (d > 0).then_some(d);
        }
        for (event, d) in event_retention_days {
            if d > 0 {
                s.event_retention_days.insert(event, d);
            } else {
                s.event_retention_days.remove(&event);
            }
        }
        Ok(())
    })?;
    store.close()?;
    let v = serde_json::json!({
        "project_id": project,
        "erasure_deadline_days": s.erasure_deadline_days,
        "retention_days": s.retention_days,
        "event_retention_days": s.event_retention_days,
    });
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{v}")?,
        _ => writeln!(
            out,
            "project {project}: erasure deadline {}; retention {}",
            s.erasure_deadline_days
                .map_or("the default".to_string(), |d| format!("{d} day(s)")),
            s.retention_days
                .map_or("none (rows kept)".to_string(), |d| format!("{d} day(s)"))
        )?,
    }
    if format != Format::Json {
        for (e, d) in &s.event_retention_days {
            writeln!(out, "  events {e:?}: kept {d} day(s)")?;
        }
    }
    Ok(())
}

/// `EVENT=DAYS` of `--event-retention-days`.
pub(crate) fn event_days(s: &str) -> std::result::Result<(String, u32), String> {
    let (e, d) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?} is not EVENT=DAYS"))?;
    let d: u32 = d
        .parse()
        .ok()
        .filter(|d| *d <= 36_500)
        .ok_or_else(|| format!("{d:?} is not a number of days (0 to 36500)"))?;
    if e.is_empty() {
        return Err("the event name is empty".into());
    }
    Ok((e.to_string(), d))
}

/// Run `elide receipts …`.
pub fn receipts(cmd: ReceiptsCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ReceiptsCommand::Show { data_dir, request } => {
            let store = wiring::store(&data_dir, Access::Read)?;
            let r = store.receipt(request)?;
            let known = store.request(request)?;
            store.close()?;
            match r {
                Some(bytes) => out.write_all(&bytes)?,
                None => {
                    let why = match known {
                        Some(r) => format!(
                            "request {request} is {} (a receipt is written when it is verified)",
                            r.status.as_str()
                        ),
                        None => format!("no deletion request {request}"),
                    };
                    return Err(elide_store::StoreError::InvalidInput(why).into());
                }
            }
        }
        ReceiptsCommand::Verify {
            data_dir,
            receipt,
            public_key,
            format,
        } => {
            let keys = match &public_key {
                Some(f) => {
                    let text = std::fs::read_to_string(f)
                        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                    Some(elide_store::receipt::parse_public_keys(
                        &f.display().to_string(),
                        &text,
                    )?)
                }
                None => None,
            };
            let (count, what) = if let Some(file) = receipt {
                let bytes = std::fs::read(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let body =
                    elide_store::receipt::verify_one(&bytes, keys.as_deref()).map_err(|e| {
                        elide_store::StoreError::InvalidInput(format!(
                            "receipt {}: {e}",
                            file.display()
                        ))
                    })?;
                (
                    1,
                    format!("receipt {} of request {}", body.seq, body.request_id),
                )
            } else {
                let dir = data_dir.ok_or_else(|| {
                    elide_store::StoreError::InvalidInput(
                        "--data-dir or --receipt is required".into(),
                    )
                })?;
                let store = wiring::store(&dir, Access::Read)?;
                let report = store.verify_receipts(keys);
                store.close()?;
                let report = report?;
                (
                    report.receipts,
                    format!(
                        "receipt(s), public key(s) {}",
                        report.public_keys.join(", ")
                    ),
                )
            };
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({"verified": count, "ok": true})
                )?,
                Format::Csv => writeln!(out, "verified\n{count}")?,
                Format::Table => writeln!(out, "{count} verified: {what}")?,
            }
        }
    }
    Ok(())
}
