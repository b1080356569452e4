//! # elide-persons: persons and identity
//!
//! Elide's users think in persons: a person owns several distinct ids,
//! has properties, and is what they delete. This crate owns that model:
//!
//! - [`meta`]: the metadata store's contents and its two traits
//!   ([`MetaStore`], [`MetaTx`]); [`sqlite`] implements them over one
//!   SQLite file in the data directory.
//! - [`capture`]: events in PostHog's capture shape, validated.
//! - `resolve`: identity resolution of a capture batch (person creation,
//!   merges, property operations, personless and blocked ids).
//! - [`persons`]: the API ([`Persons`]): capture, lookups, updates,
//!   deletion through the store's deletion requests, reset, split,
//!   deletion status, activity, project drop.
//! - [`deleted`]: what the analytics read of deleted persons, cached per
//!   project until a deletion or reset changes it.
//! - [`cohorts`]: cohort definitions and the lists of static cohorts
//!   (a deleted person leaves every list in its deletion's transaction).
//! - [`export`]: the subject-access export of one person (profile,
//!   merged persons, activity, every row of its ids).
//! - [`props`]: property operations and the property timeline fold.
//! - [`tables`]: the metadata as Arrow batches for the query layer.
//!
//! It depends on the store, never on the query layer or HTTP.
//!
//! ## Invariants
//!
//! 1. One distinct id belongs to at most one person per project.
//! 2. A deleted person leaves no distinct id, property or activity detail
//!    in the metadata files once [`MetaStore::scrub`] returns; only keyed
//!    hashes of its ids (the block list), its UUID and the deletion record
//!    remain.
//! 3. An event acknowledged before a deletion of its person began is
//!    deleted with it; an event captured after it is never deleted by it
//!    (one pipeline lock orders the two; see [`persons`]).
//! 4. Bad input changes nothing: a capture batch is validated whole before
//!    its metadata transaction commits.

pub mod admin;
pub mod capture;
mod capture_all;
pub mod cohorts;
pub mod deleted;
pub mod error;
pub mod export;
pub mod ids;
pub mod meta;
mod open;
pub mod persons;
pub mod props;
pub mod reads;
mod resolve;
pub mod sqlite;
mod sqlite_checkpoint;
mod sqlite_cohorts;
pub mod tables;

pub use capture::CaptureEvent;
pub use capture_all::CaptureBatch;
pub use error::{PersonsError, Result};
pub use export::{ExportSink, PersonExport};
pub use meta::{ApiKey, CohortRow, Project, ProjectSettings};
pub use meta::{MetaStore, MetaTx, PersonFilter, PropertyFilter, PropertyOperator};
pub use open::RebuildReport;
pub use persons::{
    BulkDeleteResult, CaptureOutcome, DeletePersons, DeletionState, DeletionStatus, IdRows, Person,
    PersonPage, Persons, ResetOutcome, SplitOutcome, SplitSpec,
};
pub use resolve::CaptureStats;
pub use sqlite::SqliteMeta;
