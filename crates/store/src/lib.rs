//! # elide-store: the storage engine
//!
//! Elide stores product-analytics events as immutable parquet **parts**,
//! partitioned by (project, UTC day), and forgets a person on request:
//! instantly and logically (roaring **tombstone** bitmaps over part row
//! positions, applied at query time), later physically ([`compact`]:
//! purges rewrite the parts without the deleted rows, GC removes the old
//! files, a verification scan proves nothing is left).
//!
//! This crate owns the data directory. It knows nothing of HTTP, SQLite or
//! SQL; the query layer reads [`Snapshot`]s.
//!
//! ```text
//!  data dir/
//!    LOCK                          one writer process (fcntl record lock, see lock.rs)
//!    wal/NNNN.wal                  ingest log: acknowledged rows not yet in parts
//!    manifest/NNNN.manifest        published versions (the latest wins)
//!    parts/<table>/<project>/<day>/<id>.parquet
//!    tombstones/<id>.tomb          bitmaps of deleted row positions
//! ```
//!
//! ## Invariants
//!
//! 1. An acknowledged append is never lost: it is in the fsynced ingest log
//!    until a committed manifest covers it with parts.
//! 2. A deleted row is never visible to a snapshot taken after the deletion
//!    returned: its bitmap (or memtable hiding) is published with the
//!    manifest, and late deletions of rows being flushed are remapped.
//! 3. A snapshot is immutable; files it references are not removed while it
//!    lives ([`gc`]).
//! 4. Rows outside a deletion are never hidden: matches are exact (project,
//!    distinct id or predicate, `_seq` < cut-off), never by hash alone.
//! 6. Bad input is rejected whole, with the row and column named.
//!
//! Module map: `store` (the API: open, append, delete, snapshot),
//! `ingest` and `bulk` (whole inputs as one commit), `by_person`,
//! [`predicate`] and `by_predicate` (deletion of events by predicate),
//! [`retention`] (retention sweeps), `requests` (the deletion feed,
//! project settings), `export` (every row of some distinct ids),
//! `lifecycle` (request states and transitions), `undo` (logical
//! requests: undo windows, cancel, the bridge for slow predicates),
//! [`receipt`] (signed, hash-chained receipts of verified requests),
//! `parallel`,
//! `compact` (purges, merges, verification), [`policy`] (what compaction
//! should do, pure), [`schema`] (tables), [`normalize`] (input
//! validation), [`format`] (on-disk types), `storage` (object-store
//! I/O), `wal` (the ingest log), `memtable`, `part`, `gather` (a part's
//! rows from several batches), `index`, `commit`
//! (the one commit path), `gc` (the only file removal). Only the types
//! re-exported here and the public modules are the API; the command line,
//! the server and embedders all use the same.

#![warn(missing_docs)]

// The API: types re-exported below; the modules themselves are private.
mod bulk;
mod by_person;
mod by_predicate;
mod compact;
mod error;
mod export;
mod ingest;
mod store;

// Public modules: types an embedder names (on-disk formats, table
// definitions, row input, policy knobs, the file-system seam of
// `StoreOptions::fs`, the scrub report).
pub mod format;
pub mod io;
pub mod jsonl;
pub mod normalize;
pub mod policy;
pub mod predicate;
pub mod schema;
pub mod scrub;

// Internals. `checksum` and `failpoint` are public only for Elide's own
// crates (the query layer verifies the parts it reads; the persons layer
// arms failpoints); the ingest log is public under the `testing` feature
// (tests read its segments), as is the recording file system.
#[doc(hidden)]
pub mod checksum;
mod commit;
#[cfg(feature = "testing")]
pub mod crash_fs;
#[cfg(feature = "testing")]
pub mod failing_fs;
#[doc(hidden)]
pub mod failpoint;
mod gather;
mod gc;
mod index;
mod lease;
mod lifecycle;
pub mod location;
mod lock;
mod memtable;
mod open;
mod parallel;
pub mod receipt;
pub mod remote;
#[cfg(feature = "testing")]
pub mod s3_server;
pub use ed25519_dalek::VerifyingKey;
mod part;
mod read_parquet;
mod requests;
pub mod retention;
mod runs_backfill;
pub mod runs_file;
mod snapshot;
mod status;
mod storage;
mod undo;
#[cfg(feature = "testing")]
pub mod wal;
#[cfg(not(feature = "testing"))]
mod wal;
mod worker;

pub use bulk::{BulkIngest, IngestOutcome};
pub use by_person::PersonDeletion;
pub use by_predicate::{DeletionPreview, EventDeletion, TablePreview};
#[cfg(feature = "testing")]
pub use compact::PreparedRewrite;
pub use compact::{CompactRequest, CompactionReport, Progress, TaskKind, TaskOutcome, TaskReport};
pub use error::{Result, StoreError};
pub use export::RowsOf;
pub use format::CompactionSummary;
pub use format::{
    DeletionRequest, Manifest, PartMeta, ProjectSettings, RequestKind, RequestStatus,
};
pub use ingest::{IngestOptions, IngestProgress};
pub use open::{spool_file, SPOOL_DIR};
pub use part::{
    day_of, PartCompression, PartWriterOptions, BLOOM_FILTER_COLUMNS, MICROS_PER_DAY, SCAN_COLUMNS,
};
pub use requests::{DeletionFeed, RequestState};
pub use retention::RetentionSweep;
pub use schema::Table;
pub use snapshot::Snapshot;
pub use status::{PartitionStatus, StatusTotals, StoreStatus};
pub use storage::Storage;
pub use store::{
    Appended, DeleteOutcome, DeleteSpec, DropOutcome, Store, StoreOptions, Version, WeakStore,
    MAX_DELETE_IDS,
};
pub use store::{ScanActivity, ScanGuard};
pub use undo::CancelOutcome;
