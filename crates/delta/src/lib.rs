//! The Delta Lake export of Elide's tables (`elide export delta`).
//!
//! A Delta table that references Elide's part files where they are (no
//! parquet is rewritten) and carries each part's hidden rows as a Delta
//! deletion vector, written with `delta_kernel`, the Delta project's own
//! Rust kernel. Spark, Trino, Databricks, DuckDB and delta-rs read it with
//! the deletions honoured.
//!
//! What this crate owns, and its invariants:
//!
//! * **No version shows a hidden row.** Every commit gives each file the
//!   deletion vector of the snapshot it exports; a new part with hidden
//!   rows enters the table with its vector in the same commit
//!   (`export.rs`).
//! * **A purged part leaves the table** at the next export, and the file
//!   itself is gone once Elide's GC removes it: a reader of an older version
//!   then fails rather than returning the purged rows.
//! * **No identifier of a person is written to the log**: statistics
//!   name only `project_id` and `timestamp`; paths name project and day.
//! * **Zero-copy**: the log names the part files by paths relative to the
//!   table, so the table lives at the data directory, at `parts`, or at
//!   `parts/<table>` (the default).
//!
//! Deletions reach the Delta table when it is exported: a deletion made
//! after an export is honoured by Elide at once, by Delta readers at the
//! next export (docs/interop.md).

mod dv;
mod export;
mod schema;
mod table;

pub use export::{export_delta, DeltaExport, ExportOptions};
pub use table::TABLE_PROPERTY;

/// What an export can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] elide_store::StoreError),
    /// The Delta kernel refused or failed.
    #[error("delta: {0}")]
    Delta(#[from] delta_kernel::KernelError),
    /// Arrow failed to build the kernel's rows.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Bad arguments, or a Delta table that is not this store's export.
    #[error("{0}")]
    InvalidInput(String),
    /// Something the export does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Another writer committed to the Delta table meanwhile.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A file on local disk could not be made durable.
    #[error("{0}")]
    Io(String),
}

/// A result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
