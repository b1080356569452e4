//! `elide doctor`: what erasure needs of where the data lives.
//!
//! On an object store (`--data-dir s3://…`) it runs
//! `elide_store::remote::doctor` (put-if-absent, conditional replace,
//! versioning, the writer lease, the latest manifest; lifecycle rules are
//! a reminder, the data API does not show them). A local data directory
//! has nothing of the kind to check: it says so. Exit 1 when a check fails.

use std::io::Write;
use std::path::Path;

use elide_store::remote::Check;

use crate::output::anyhow_lite::Result;
use crate::output::Format;

/// Run `elide doctor`.
pub fn run(dir: &Path, format: Format) -> Result<()> {
    let checks: Vec<Check> = match dir.to_str().filter(|d| elide_store::location::is_url(d)) {
        Some(url) => {
            let store = elide_store::location::object_store_from_url(url)?;
            elide_store::remote::doctor(&store, url)?
        }
        None => vec![Check {
            check: "location",
            status: "ok",
            detail: format!(
                "{} is a local directory: a removed file's bytes are gone with it (the object-store checks do not apply; `elide scrub` checks the files)",
                dir.display()
            ),
        }],
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &checks)?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(out, "check,status,detail")?;
            for c in &checks {
                writeln!(
                    out,
                    "{},{},{}",
                    c.check,
                    c.status,
                    crate::output::csv_field(&c.detail)
                )?;
            }
        }
        Format::Table => {
            for c in &checks {
                writeln!(out, "{:<6} {:<20} {}", c.status, c.check, c.detail)?;
            }
        }
    }
    let failed = checks.iter().filter(|c| c.status == "fail").count();
    if failed > 0 {
        return Err(format!("{failed} check(s) failed for {}", dir.display()).into());
    }
    Ok(())
}
