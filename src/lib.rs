//! # Elide
//!
//! A columnar event store with deferred deletion: product-analytics events
//! in parquet parts, queried through Apache DataFusion, and a deleted
//! person's rows hidden the moment the deletion returns, then removed from
//! disk by a compaction that verifies nothing is left.
//!
//! **This crate is the one dependency an embedder adds.** It re-exports the
//! engine's API at the top level, the DataFusion integration, and the
//! ecosystem crates that API exposes — [`arrow`], [`parquet`],
//! [`datafusion`], [`object_store`] and [`tokio`] — so that an embedder
//! never pins matching versions by hand:
//!
//! ```toml
//! [dependencies]
//! # The library alone (no HTTP server, no command line):
//! elide = { version = "0.1", default-features = false }
//! # ... with the persons layer (identity, PostHog-style capture, SQLite):
//! # elide = { version = "0.1", default-features = false, features = ["persons"] }
//! ```
//!
//! Features: `persons` (the [`persons`] layer and the [`app`] wiring),
//! `server` (the HTTP API, [`server`]), `cli` (the `elide` binary,
//! [`cli`]; on by default so that `cargo run -- serve` works in this
//! repository).
//!
//! ## Ingest, query, delete, purge
//!
//! ```
//! use elide::{CompactRequest, DeleteSpec, IngestOptions, Store, StoreOptions, Table};
//! use elide::arrow::array::{Int64Array, RecordBatch, StringArray};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! // Open (or create) a data directory. `Default` reads no environment
//! // and runs the background flusher and compaction worker.
//! let store = Store::open(dir.path(), StoreOptions::default())?;
//!
//! // Ingest any Arrow batches (a parquet reader, a Vec...) as one unit.
//! let batch = RecordBatch::try_from_iter([
//!     ("event", Arc::new(StringArray::from(vec!["$pageview", "signup"])) as _),
//!     ("distinct_id", Arc::new(StringArray::from(vec!["alice", "bob"])) as _),
//!     ("project_id", Arc::new(Int64Array::from(vec![1, 1])) as _),
//!     ("timestamp", Arc::new(StringArray::from(vec!["2026-11-30T10:00:00Z"; 2])) as _),
//! ])?;
//! store.ingest(Table::Events, [Ok(batch)], IngestOptions::new())?;
//!
//! // Query through DataFusion.
//! let rt = elide::tokio::runtime::Runtime::new()?;
//! let ctx = elide::session_context(&store)?;
//! let out = rt.block_on(elide::run_sql(&ctx, "SELECT count(*) FROM events"))?;
//! assert_eq!(out.num_rows(), 1);
//!
//! // Delete a person's rows: invisible to every query from now on.
//! store.ready()?; // (optional) the first deletion no longer waits for the index
//! store.delete(DeleteSpec::ids(1, ["alice"]))?;
//!
//! // Remove them from disk now (otherwise: off-peak, or by the deadline).
//! let report = store.compact(CompactRequest::now())?;
//! assert!(report.verification_failures.is_empty());
//! store.close()?;
//! # Ok(()) }
//! ```
//!
//! See `docs/embedding.md` for the lifetime of a store and its sessions,
//! what `open` returns before the store is ready, defaults, and the
//! examples under `examples/`.

#![warn(missing_docs)]

pub use arrow;
pub use datafusion;
pub use object_store;
pub use parquet;
pub use tokio;

pub use elide_query as query;
pub use elide_store as store;

pub use elide_query::{
    project_session_context, register_functions, register_tables, run_sql, session_context,
    session_context_at, ElideTable, SqlOutput,
};
pub use elide_store::{
    CompactRequest, CompactionReport, DeleteOutcome, DeleteSpec, DeletionRequest, DropOutcome,
    IngestOptions, IngestOutcome, IngestProgress, PersonDeletion, Progress, RequestStatus, Result,
    Snapshot, StatusTotals, Store, StoreError, StoreOptions, StoreStatus, Table, WeakStore,
    MAX_DELETE_IDS,
};

#[cfg(feature = "persons")]
pub use elide_app as app;
#[cfg(feature = "persons")]
pub use elide_persons as persons;

#[cfg(feature = "cli")]
pub use elide_cli as cli;
#[cfg(feature = "server")]
pub use elide_server as server;
