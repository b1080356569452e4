//! Rendering query results and reports as table, CSV or JSON.

use std::io::Write;

use arrow::record_batch::RecordBatch;

/// Output format of `sql`, `status`, `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// A JSON array of row objects.
    Json,
}

/// Write batches to `out` in `format`.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: Format,
) -> anyhow_lite::Result<()> {
    match format {
        Format::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                writeln!(out, "(no rows)")?;
            } else {
                let s = arrow::util::pretty::pretty_format_batches(batches)?;
                writeln!(out, "{s}")?;
            }
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// A table name given on the command line (`--table`).
pub fn parse_table(s: &str) -> std::result::Result<elide_store::Table, String> {
    elide_store::Table::from_name(s)
        .ok_or_else(|| format!("unknown table {s:?} (events or recordings)"))
}

/// `s` as one CSV field (quoted when it must be).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A minimal boxed error for the command line.
pub mod anyhow_lite {
    /// Any error, with its message.
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
    /// Result with [`Error`].
    pub type Result<T> = std::result::Result<T, Error>;
}
