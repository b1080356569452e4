//! The error of the application layer: any library's, with its kind kept
//! so that the command line prints it and the server maps it to a status.

use elide_persons::PersonsError;
use elide_store::StoreError;

/// Result with [`AppError`].
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// Every error the application layer passes on.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From the persons layer.
    #[error(transparent)]
    Persons(#[from] PersonsError),
    /// From Arrow (building or casting batches).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// From DataFusion (SQL).
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
    /// A query refused before it ran (not one read-only statement, an
    /// unknown HogQL form): the caller's mistake.
    #[error("{0}")]
    InvalidQuery(String),
}
