//! `elide export delta`: the Delta Lake export of a table
//! (`elide_delta::export_delta`).
//!
//! `--out` is where the Delta table goes; it must be the data directory,
//! its `parts` directory or `parts/<table>` (the default), because the log
//! names the part files by paths relative to the table. The store is
//! opened as its writer (buffered rows are flushed into the export); when
//! a running server holds it, read-only, and the rows that server still
//! buffers are left for the next export.

use std::io::Write;
use std::path::{Path, PathBuf};

use elide_app::wiring::{self, Access};
use elide_store::{StoreError, Table};

use crate::output::anyhow_lite::Result;
use crate::output::Format;

/// Arguments of `elide export delta`.
#[derive(Debug, clap::Args)]
pub struct DeltaArgs {
    /// Data directory (a path or an s3:// URL).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The table to export.
    #[arg(long, value_parser = crate::output::parse_table, default_value = "events")]
    pub table: Table,
    /// Where the Delta table goes: the data directory, `<data-dir>/parts`
    /// or `<data-dir>/parts/<table>` (the default).
    #[arg(long)]
    pub out: Option<String>,
    /// How long a deletion-vector file the latest version no longer
    /// references is kept, in seconds (default 900, at least 60: another
    /// export may be about to commit one; at most half the erasure deadline).
    #[arg(long, value_parser = clap::value_parser!(u64).range(60..))]
    pub retention_secs: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `out` relative to `data_dir`, both as given (paths or URLs).
fn root_of(data_dir: &Path, out: &str) -> Result<String> {
    let data = data_dir.to_string_lossy();
    if elide_store::location::is_url(&data) || elide_store::location::is_url(out) {
        let base = data.trim_end_matches('/');
        let rest = out
            .trim_end_matches('/')
            .strip_prefix(base)
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| format!("--out {out} is not inside --data-dir {data}"))?;
        return Ok(rest.trim_start_matches('/').to_string());
    }
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let (base, target) = (abs(data_dir)?, abs(Path::new(out))?);
    let rel = target.strip_prefix(&base).map_err(|_| {
        format!(
            "--out {out} is not inside --data-dir {}",
            data_dir.display()
        )
    })?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// Run `elide export delta`.
pub fn run(a: DeltaArgs) -> Result<()> {
    let root = a
        .out
        .as_deref()
        .map(|o| root_of(&a.data_dir, o))
        .transpose()?;
    let (store, note) = match wiring::store(&a.data_dir, Access::Write) {
        Ok(s) => (s, None),
        // Held by a writer: the local directory's lock, or an object
        // store's lease taken by a writer elsewhere.
        Err(elide_app::AppError::Store(
            StoreError::Locked { .. } | StoreError::RemoteLocked { .. },
        )) => (
            wiring::store(&a.data_dir, Access::Read)?,
            Some("another process writes this store: exported its parts read-only; rows it still buffers go out with the next export"),
        ),
        Err(e) => return Err(e.into()),
    };
    let opts = elide_delta::ExportOptions {
        root,
        retention: a.retention_secs.map(std::time::Duration::from_secs),
        ..elide_delta::ExportOptions::new(a.table)
    };
    let report = elide_delta::export_delta(&store, &opts)?;
    // The version is committed: a failure to close the store (its flush
    // of nothing new, its lock) is reported, not made the export's.
    if !store.is_read_only() {
        if let Err(e) = store.close() {
            eprintln!("warning: the export is committed, but closing the store failed: {e}");
        }
    }
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(out, "table_url,version,created,committed,store_version,files,added,removed,deletion_vectors,rows,hidden_rows,data_bytes,bytes_written,vectors_removed,elapsed_ms")?;
            let r = &report;
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                crate::output::csv_field(&r.table_url),
                r.version,
                r.created,
                r.committed,
                r.store_version,
                r.files,
                r.added,
                r.removed,
                r.deletion_vectors,
                r.rows,
                r.hidden_rows,
                r.data_bytes,
                r.bytes_written,
                r.vectors_removed,
                r.elapsed_ms
            )?;
        }
        Format::Table => {
            let r = &report;
            let what = match (r.created, r.committed) {
                (true, _) => "created",
                (false, true) => "committed",
                (false, false) => "unchanged",
            };
            writeln!(
                out,
                "Delta table {} {what} at version {}",
                r.table_url, r.version
            )?;
            writeln!(
                out,
                "  {} files ({} rows, {} hidden by deletion vectors, {} parquet bytes referenced in place)",
                r.files, r.rows, r.hidden_rows, r.data_bytes
            )?;
            writeln!(
                out,
                "  this run: {} added, {} removed, {} deletion vectors written, {} stale vector files removed, {} bytes written, {} ms",
                r.added, r.removed, r.deletion_vectors, r.vectors_removed, r.bytes_written, r.elapsed_ms
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_is_taken_relative_to_the_data_directory() {
        let d = Path::new("/data/elide");
        assert_eq!(root_of(d, "/data/elide").unwrap(), "");
        assert_eq!(
            root_of(d, "/data/elide/parts/events/").unwrap(),
            "parts/events"
        );
        assert!(root_of(d, "/data/elsewhere").is_err());
        let u = Path::new("s3://bucket/prefix");
        assert_eq!(root_of(u, "s3://bucket/prefix/parts").unwrap(), "parts");
        assert_eq!(root_of(u, "s3://bucket/prefix/").unwrap(), "");
        assert!(root_of(u, "s3://bucket/prefix2/parts").is_err());
        assert!(root_of(u, "s3://other/prefix/parts").is_err());
    }
}
