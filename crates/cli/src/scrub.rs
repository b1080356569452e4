//! `elide scrub`: check every file of a data directory, change nothing.
//!
//! The store's files are checked by `elide_store::scrub::scrub_dir`
//! (no writer lock, so a running writer is not blocked; no open, so a
//! store too damaged to open is still reported on); the persons metadata
//! by SQLite's `integrity_check`. Exit status 1 when anything is damaged.

use std::io::Write;
use std::path::Path;

use elide_store::scrub::{ScrubFinding, ScrubReport};

use elide_persons::sqlite::METADATA_FILE;
use elide_persons::SqliteMeta;

use crate::output::anyhow_lite::Result;
use crate::output::Format;

/// Run `elide scrub`.
pub fn run(dir: &Path, format: Format) -> Result<()> {
    if dir.to_str().is_some_and(elide_store::location::is_url) {
        return Err(format!(
            "scrub reads a local data directory file by file; {} is on an object store (its parts are checked by the store's ETags and checksums as they are read; `elide status` and `elide deletions` work there)",
            dir.display()
        )
        .into());
    }
    let bar = crate::cli::progress_bar(0, "scrubbing");
    // Not through an open of the store: a store too damaged to open is
    // still reported on, file by file.
    let mut report: ScrubReport = elide_store::scrub::scrub_dir(dir, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let db = dir.join(METADATA_FILE);
    if db.exists() {
        report.files_checked += 1;
        let problems = SqliteMeta::open_read_only(&db).and_then(|m| m.integrity_check());
        match problems {
            Ok(found) => {
                for problem in found {
                    report.findings.push(ScrubFinding {
                        path: METADATA_FILE.to_string(),
                        severity: "damaged",
                        problem,
                    });
                }
            }
            Err(e) => report.findings.push(ScrubFinding {
                path: METADATA_FILE.to_string(),
                severity: "damaged",
                problem: e.to_string(),
            }),
        }
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({
                    "files_checked": report.files_checked,
                    "bytes_checked": report.bytes_checked,
                    "parts_checked": report.parts_checked,
                    "damaged": report.damaged(),
                    "findings": report.findings,
                }),
            )?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(out, "path,severity,problem")?;
            for f in &report.findings {
                writeln!(
                    out,
                    "{},{},{}",
                    crate::output::csv_field(&f.path),
                    f.severity,
                    crate::output::csv_field(&f.problem)
                )?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "checked {} files ({} bytes; {} parts block by block)",
                report.files_checked, report.bytes_checked, report.parts_checked
            )?;
            for f in &report.findings {
                writeln!(out, "{:<9} {}: {}", f.severity, f.path, f.problem)?;
            }
            if !report.damaged() {
                writeln!(out, "no damage found")?;
            }
        }
    }
    if report.damaged() {
        return Err(format!(
            "{} damaged file(s) in {}",
            report
                .findings
                .iter()
                .filter(|f| f.severity == "damaged")
                .count(),
            dir.display()
        )
        .into());
    }
    Ok(())
}
