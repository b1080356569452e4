//! Errors of the storage engine.
//!
//! Policy (after DataFusion's `error.rs`): variants fall in two groups.
//!
//! * **Expected errors** are caused by the caller or by the environment:
//!   invalid input ([`StoreError::InvalidRow`], [`StoreError::InvalidInput`],
//!   ...), a data directory locked by another process, an I/O failure, a file
//!   on disk that is corrupt. They carry enough context (row, column, path,
//!   part) to be acted on, and the operation that returned them changed
//!   nothing.
//! * **Internal errors** ([`StoreError::Internal`]) mean a bug in Elide: an
//!   invariant did not hold. They are reported, never turned into a panic.

use std::path::PathBuf;

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Every error the storage engine returns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row of an appended batch is invalid; nothing of the batch was written.
    #[error("invalid row {row}, column `{column}`: {reason}")]
    InvalidRow {
        /// Zero-based row index inside the batch (or line number for JSON lines, 1-based).
        row: usize,
        /// Column name.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A row of an ingested input ([`crate::Store::ingest`],
    /// [`crate::Store::ingest_files`]) is invalid; nothing of the ingest
    /// was written.
    #[error("{input}: row {row} (0-based), column `{column}`: {reason}")]
    InvalidInputRow {
        /// The input (a file name, or `input` for a stream of batches).
        input: String,
        /// Zero-based row index from the start of the input.
        row: u64,
        /// Column name (as the store names it, after any renaming).
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a JSON-lines input is invalid; nothing of the input was written.
    #[error("line {line}: {reason}")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it (names the field).
        reason: String,
    },
    /// A batch or request is invalid as a whole (missing or unknown column, wrong type, limits).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Another process holds the data directory's writer lock.
    #[error("data directory {path} is locked by another writer process (lock file {lock})")]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A file on disk failed validation (magic, version, checksum, structure).
    #[error("corrupt file {path}: {reason}")]
    Corrupt {
        /// The file (data-directory relative or absolute).
        path: String,
        /// What failed.
        reason: String,
    },
    /// An operating-system I/O error, with the path involved.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An object-store error (parts, tombstones, manifests).
    #[error("object store error on {path}: {source}")]
    ObjectStore {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// A parquet encoding / decoding error of a part.
    #[error("parquet error on {path}: {source}")]
    Parquet {
        /// The part's path.
        path: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An Arrow error while building or transforming batches.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The directory holds no store, and the caller did not ask to create one.
    #[error("no Elide store at {path}: {reason} (only commands that create data, such as `ingest`, `capture` or `demo`, create a store)")]
    NoStore {
        /// The data directory.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The directory holds a store's files but no manifest.
    #[error("data directory {path} has no manifest but holds {found}: the manifest/ directory was lost (a partial restore or a cleanup?); refusing to open, which would discard these files. Restore manifest/ from a backup")]
    MissingManifest {
        /// The data directory.
        path: PathBuf,
        /// What was found.
        found: String,
    },
    /// Every [`crate::Store`] handle was dropped or closed; a
    /// [`crate::WeakStore`] (a query session's table) outlived them.
    #[error("the store at {path} was closed (its last handle was dropped); open it again")]
    Closed {
        /// The data directory.
        path: PathBuf,
    },
    /// Another writer holds the object store's writer lease.
    #[error("{what} is held by another writer: {holder}, lease valid until {expires_at_us} µs since the epoch (it is renewed while that writer lives; a crashed writer's lease expires by itself)")]
    RemoteLocked {
        /// The store (its URL).
        what: String,
        /// Who holds it.
        holder: String,
        /// When its lease expires unless renewed.
        expires_at_us: i64,
    },
    /// A local directory whose ingest log cannot be replayed into its
    /// object store: another writer has committed since its rows were
    /// logged (they would reuse sequence numbers that writer handed out,
    /// or escape its deletions).
    #[error("the local directory {path} cannot be opened with its object store: {reason}")]
    Diverged {
        /// The local directory.
        path: PathBuf,
        /// What was found, and what to do.
        reason: String,
    },
    /// The object store lacks a capability the commit path needs.
    #[error("refusing {what}: the object store does not support {capability}")]
    Unsupported {
        /// The store (its URL).
        what: String,
        /// What it lacks, and why it is needed.
        capability: String,
    },
    /// A write on a store opened read-only.
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// The store was closed or its background worker failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A commit whose manifest may have been published although the
    /// commit failed (the `manifest/` directory's fsync, or an object
    /// store's ambiguous answer): what it wrote may or may not be in the
    /// store. Unlike every other error of a write, this one does not say
    /// "nothing changed": reopen the store to see which it was before
    /// retrying (a retried ingest could store its rows twice). The handle
    /// refuses writes from then on ([`StoreError::Unavailable`]).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A bug: an internal invariant did not hold.
    #[error("internal error (a bug in elide): {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_row(row: usize, column: &str, reason: impl Into<String>) -> Self {
        StoreError::InvalidRow {
            row,
            column: column.to_string(),
            reason: reason.into(),
        }
    }

    /// True when a write refused to replace a file or object that exists
    /// (put-if-absent): what is there is not this write's.
    pub fn is_already_exists(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::AlreadyExists,
            StoreError::ObjectStore { source, .. } => matches!(
                source,
                object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
            ),
            _ => false,
        }
    }

    /// True when a file or object was not found (a concurrent writer may
    /// have removed it).
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            StoreError::ObjectStore { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
            _ => false,
        }
    }

    /// True when the error was caused by the caller's input (4xx-style).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidRow { .. }
                | StoreError::InvalidInputRow { .. }
                | StoreError::InvalidLine { .. }
                | StoreError::InvalidInput(_)
        )
    }
}
