//! Errors of the persons layer.

use elide_store::StoreError;

/// Result with [`PersonsError`].
pub type Result<T> = std::result::Result<T, PersonsError>;

/// What went wrong. `InvalidInput` and `NotFound` are the caller's to fix
/// (HTTP 400 / 404); the others are the system's.
#[derive(Debug, thiserror::Error)]
pub enum PersonsError {
    /// Bad input: nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A line of a capture file is bad: nothing was changed.
    #[error("line {line}: {reason}")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The thing named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The metadata database failed.
    #[error("metadata database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The metadata database holds something it should not.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The store's metadata database is missing or blank.
    #[error("the metadata database {path} is missing or empty, but {reason}; refusing to create a new one, which would forget deleted persons and their blocked ids. Restore it from a backup, or rebuild it on purpose with `elide persons rebuild-metadata` (docs/persons.md)")]
    MetadataMissing {
        /// The database file.
        path: std::path::PathBuf,
        /// Why one must exist.
        reason: String,
    },
    /// The metadata database is not the one the store was used with.
    #[error("the metadata database {path} is not the one this store's events were captured with (expected {expected}, found {found}); refusing to open it")]
    MetadataReplaced {
        /// The database file.
        path: std::path::PathBuf,
        /// The id the store recorded.
        expected: String,
        /// The id the database holds.
        found: String,
    },
    /// The event store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A lock was poisoned by a panicking thread.
    #[error("internal error (a bug in elide): {0}")]
    Internal(String),
}

impl PersonsError {
    /// True when the caller's input was at fault (HTTP 4xx).
    pub fn is_client_error(&self) -> bool {
        match self {
            PersonsError::InvalidInput(_)
            | PersonsError::InvalidLine { .. }
            | PersonsError::NotFound(_) => true,
            PersonsError::Store(e) => e.is_invalid_input(),
            _ => false,
        }
    }
}
