//! # elide-query: Elide through Apache DataFusion
//!
//! This crate owns the bridge from the storage engine to SQL: one
//! [`ElideTable`] (a `TableProvider`) per table, and [`session_context`],
//! which registers `events` and `recordings` together with JSON functions
//! (`json_get_str(properties, '$browser')`, ...).
//!
//! The contract with the store: a scan reads one [`elide_store::Snapshot`];
//! tombstones become parquet row selections ([`access`]); the statistics
//! reported to DataFusion count live rows only, so `count(*)` answered from
//! statistics never brings deleted rows back; and the scan fails closed when
//! a part's tombstones cannot be applied to its file.
//!
//! It depends on `elide-store` and DataFusion, never on HTTP or SQLite.

pub mod access;
pub mod loaded;
pub mod provider;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use elide_store::{Snapshot, Store, Table};

pub use loaded::{LoadedTable, Loader};
pub use provider::ElideTable;

/// A `SessionContext` with every table of `store` registered and JSON
/// functions available.
pub fn session_context(store: &Store) -> Result<SessionContext> {
    let ctx = base_context()?;
    for table in Table::ALL {
        ctx.register_table(
            table.name(),
            Arc::new(ElideTable::new(store.clone(), table)),
        )?;
    }
    Ok(ctx)
}

fn base_context() -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx)?;
    Ok(ctx)
}

/// A `SessionContext` whose tables all read `snapshot` (consistent reads
/// across several queries; see [`ElideTable::pinned`]).
pub fn session_context_at(snapshot: Arc<Snapshot>) -> Result<SessionContext> {
    let ctx = base_context()?;
    for table in Table::ALL {
        ctx.register_table(
            table.name(),
            Arc::new(ElideTable::pinned(Arc::clone(&snapshot), table)),
        )?;
    }
    Ok(ctx)
}

/// Run one SQL statement and collect its result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}
