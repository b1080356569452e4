//! `elide compact`, `elide deletions`, `elide drop-project`: the command
//! line of the deletion lifecycle.

use std::io::Write;
use std::path::Path;

use elide_store::{CompactRequest, DeletionRequest, Progress, RequestStatus, TaskKind};

use crate::cli::StatusFilter;
use crate::output::anyhow_lite::Result;
use crate::output::Format;
use elide_app::wiring::{self, Access};

/// "3 d 4 h", "12 min", "40 s".
pub(crate) fn age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn when(us: Option<i64>) -> String {
    us.and_then(chrono::DateTime::from_timestamp_micros)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_string())
}

pub(crate) fn compact(dir: &Path, req: CompactRequest, format: Format) -> Result<()> {
    let store = wiring::writer(dir, Access::Write)?;
    // Retention first: expired days leave whole, other expired rows
    // become work for this run.
    for s in store.apply_retention(chrono::Utc::now().timestamp_micros())? {
        eprintln!(
            "retention: project {} rows before {} deleted: request {}, {} rows, {} parts removed whole",
            s.project_id,
            elide_store::format::us_to_rfc3339(s.before_us),
            s.request_id,
            s.rows_hidden,
            s.parts_dropped
        );
    }
    let bar = crate::cli::progress_bar(0, "compacting");
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let report = store.compact_with_progress(req, &mut |p| match p {
        Progress::Planned { bytes, .. } => bar.set_length(bytes),
        Progress::Bytes(done) => bar.set_position(done),
        Progress::Lifecycle => bar.set_message("verifying"),
    })?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(out, "kind,table,project_id,day,inputs,output,rows_in,rows_out,rows_dropped,rows_carried,bytes_in,bytes_out,elapsed_ms,outcome,last_day")?;
            for t in &report.tasks {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{:?},{}",
                    kind(t.kind),
                    t.table,
                    t.project_id,
                    t.day,
                    t.inputs.len(),
                    t.output.map_or(String::new(), |o| format!("{o:016x}")),
                    t.rows_in,
                    t.rows_out,
                    t.rows_dropped,
                    t.rows_carried,
                    t.bytes_in,
                    t.bytes_out,
                    t.elapsed_ms,
                    t.outcome,
                    t.last_day.as_deref().unwrap_or("")
                )?;
            }
        }
        Format::Table => {
            if report.flushed {
                writeln!(
                    out,
                    "flushed buffered rows first (a pending request covered them)"
                )?;
            }
            if report.tasks.is_empty() {
                writeln!(out, "nothing to rewrite")?;
            } else {
                writeln!(
                    out,
                    "{:<6} {:<8} {:>7} {:<14} {:>6} {:>10} {:>10} {:>8} {:>8} {:>12} {:>12} {:>7}",
                    "task",
                    "table",
                    "project",
                    "day",
                    "inputs",
                    "rows in",
                    "rows out",
                    "dropped",
                    "carried",
                    "bytes in",
                    "bytes out",
                    "ms"
                )?;
                for t in &report.tasks {
                    writeln!(
                        out,
                        "{:<6} {:<8} {:>7} {:<14} {:>6} {:>10} {:>10} {:>8} {:>8} {:>12} {:>12} {:>7}{}",
                        kind(t.kind),
                        t.table.name(),
                        t.project_id,
                        crate::cli::days_label(&t.day, t.last_day.as_deref()),
                        t.inputs.len(),
                        t.rows_in,
                        t.rows_out,
                        t.rows_dropped,
                        t.rows_carried,
                        t.bytes_in,
                        t.bytes_out,
                        t.elapsed_ms,
                        if t.outcome == elide_store::TaskOutcome::Abandoned {
                            "  (abandoned: input gone)"
                        } else {
                            ""
                        }
                    )?;
                }
            }
            let s = &report.summary;
            writeln!(
                out,
                "rewrote {} part(s) ({} purged, {} merged) into {}: {} deleted rows dropped, {} bytes read, {} bytes written, {} ms",
                s.parts_purged + s.parts_merged,
                s.parts_purged,
                s.parts_merged,
                s.parts_written,
                s.rows_dropped,
                s.bytes_read,
                s.bytes_written,
                s.elapsed_ms
            )?;
            if report.skipped_tasks > 0 {
                writeln!(
                    out,
                    "{} task(s) left for the next run (time budget)",
                    report.skipped_tasks
                )?;
            }
            writeln!(
                out,
                "requests purged: {:?}; verified: {:?}",
                report.requests_purged, report.requests_verified
            )?;
            for f in &report.verification_failures {
                writeln!(out, "VERIFICATION FAILED: {f}")?;
            }
        }
    }
    store.close()?;
    if !report.verification_failures.is_empty() {
        return Err("verification found rows of purged requests (see above)".into());
    }
    Ok(())
}

fn kind(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Purge => "purge",
        TaskKind::Merge => "merge",
    }
}

pub(crate) fn deletions(
    dir: &Path,
    filter: StatusFilter,
    since: Option<u64>,
    format: Format,
) -> Result<()> {
    let store = wiring::store(dir, Access::Read)?;
    let listed = match since {
        Some(c) => store.deletion_feed(None, c)?.requests,
        None => store.requests()?,
    };
    let requests: Vec<DeletionRequest> = listed
        .into_iter()
        .filter(|r| match filter {
            StatusFilter::All => true,
            StatusFilter::Pending => r.status == RequestStatus::Pending,
            StatusFilter::Purged => r.status == RequestStatus::Purged,
            StatusFilter::Verified => r.status == RequestStatus::Verified,
            StatusFilter::Cancelled => r.status == RequestStatus::Cancelled,
        })
        .collect();
    store.close()?;
    let mut out = std::io::stdout().lock();
    let ids = |r: &DeletionRequest| -> Vec<String> {
        if r.distinct_ids.is_empty() {
            r.id_hashes.clone()
        } else {
            r.distinct_ids.clone()
        }
    };
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = requests
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id,
                        "request_id": r.id,
                        "kind": r.kind.as_str(),
                        "state": r.status.as_str(),
                        "hidden_at": when(Some(r.created_at_us)),
                        "purge_due_by": when(Some(r.purge_due_by_us)),
                        "cursor": r.changed_in_version,
                        "predicate": r.predicate,
                        "project_id": r.project_id,
                        "status": r.status.as_str(),
                        "created_at": when(Some(r.created_at_us)),
                        "rows_hidden": r.rows_hidden,
                        "purged_at": r.purged_at_us.map(|u| when(Some(u))),
                        "verified_at": r.verified_at_us.map(|u| when(Some(u))),
                        "cutoff_seq": r.cutoff_seq,
                        "tables": r.tables.iter().map(|t| t.name()).collect::<Vec<_>>(),
                        "distinct_ids": r.distinct_ids,
                        "distinct_id_hashes": r.id_hashes,
                        "logical": r.logical,
                        "undo_until": r.undo_until_us.map(|u| when(Some(u))),
                        "cancelled_at": r.cancelled_at_us.map(|u| when(Some(u))),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(out, "request_id,project_id,status,created_at,rows_hidden,purged_at,verified_at,distinct_ids,kind,purge_due_by,cursor")?;
            for r in &requests {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{}",
                    r.id,
                    r.project_id,
                    r.status.as_str(),
                    when(Some(r.created_at_us)),
                    r.rows_hidden,
                    when(r.purged_at_us),
                    when(r.verified_at_us),
                    crate::output::csv_field(&ids(r).join(" ")),
                    r.kind.as_str(),
                    when(Some(r.purge_due_by_us)),
                    r.changed_in_version
                )?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:>7} {:<12} {:>8} {:<9} {:<20} {:<20} {:>11} {:<20} {:<20} scope",
                "request",
                "kind",
                "project",
                "status",
                "created_at",
                "purge_due_by",
                "rows_hidden",
                "purged_at",
                "verified_at"
            )?;
            for r in &requests {
                let shown = ids(r);
                let label = if let Some(p) = &r.predicate {
                    serde_json::to_string(p).unwrap_or_default()
                } else if r.distinct_ids.is_empty() && !shown.is_empty() {
                    format!("{} (keyed hashes)", shown.len())
                } else if shown.len() > 3 {
                    format!("{}, ... ({} ids)", shown[..3].join(", "), shown.len())
                } else {
                    shown.join(", ")
                };
                writeln!(
                    out,
                    "{:>7} {:<12} {:>8} {:<9} {:<20} {:<20} {:>11} {:<20} {:<20} {}",
                    r.id,
                    r.kind.as_str(),
                    r.project_id,
                    r.status.as_str(),
                    when(Some(r.created_at_us)),
                    when(Some(r.purge_due_by_us)),
                    r.rows_hidden,
                    when(r.purged_at_us),
                    when(r.verified_at_us),
                    label
                )?;
            }
            if requests.is_empty() {
                writeln!(out, "(no requests)")?;
            }
        }
    }
    Ok(())
}

pub(crate) fn drop_project(dir: &Path, project: i64, format: Format) -> Result<()> {
    let store = wiring::store(dir, Access::Write)?;
    let o = if wiring::has_persons(&store) {
        // The project's persons, ids, deletions and activity go too.
        let persons = wiring::persons(&store, Access::Write)?;
        let (o, meta) = persons.drop_project(project)?;
        tracing::info!(
            project,
            persons = meta.persons,
            distinct_ids = meta.distinct_ids,
            "project metadata dropped"
        );
        o
    } else {
        store.drop_project(project)?
    };
    store.close()?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer(&mut out, &o)?;
            writeln!(out)?;
        }
        Format::Csv => writeln!(
            out,
            "project_id,parts_removed,rows_removed,bytes_removed,requests_removed\n{},{},{},{},{}",
            o.project_id, o.parts_removed, o.rows_removed, o.bytes_removed, o.requests_removed
        )?,
        Format::Table => writeln!(
            out,
            "dropped project {}: {} rows, {} parts ({} bytes), {} deletion requests",
            o.project_id, o.rows_removed, o.parts_removed, o.bytes_removed, o.requests_removed
        )?,
    }
    Ok(())
}

/// `elide delete --person-id`: delete persons of data appended without
/// the persons layer, through their distinct ids (`Store::delete_person_ids`).
pub(crate) fn delete_person_ids(
    dir: &Path,
    project: i64,
    person_ids: &[String],
    format: Format,
) -> Result<()> {
    let store = wiring::writer(dir, Access::Write)?;
    let started = std::time::Instant::now();
    let d = store.delete_person_ids(project, person_ids, &[])?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    store.close()?;
    let ids: Vec<u64> = d.requests.iter().map(|r| r.request_id).collect();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({
                "request_ids": ids,
                "distinct_ids": d.distinct_ids,
                "rows_hidden": d.rows_hidden(),
                "status": if ids.is_empty() { "nothing to delete" } else { "pending" },
                "elapsed_ms": elapsed_ms,
            })
        )?,
        Format::Csv => {
            writeln!(out, "request_id,rows_hidden")?;
            for r in &d.requests {
                writeln!(out, "{},{}", r.request_id, r.rows_hidden)?;
            }
        }
        Format::Table => writeln!(
            out,
            "request_ids={ids:?} distinct_ids={} rows_hidden={} ({elapsed_ms:.1} ms)",
            d.distinct_ids.len(),
            d.rows_hidden()
        )?,
    }
    Ok(())
}
