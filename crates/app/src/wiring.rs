//! Opening a data directory for a command, in one place: whether the
//! command may create a store, whether it writes or only reads, and when
//! the persons layer comes along.
//!
//! | access | store | persons |
//! |---|---|---|
//! | [`Access::Create`] (`ingest`, `capture`, `demo`, `bench`) | writer; creates the store if the directory holds none | writer (created and bound on first use) |
//! | [`Access::Write`] (`delete`, `compact`, `drop-project`, `persons delete/reset/split/set/unset`) | writer; a directory without a store is refused | writer, if the store has persons |
//! | [`Access::Read`] (`sql`, `status`, `deletions`, `scrub`, `persons list/get/deletions/activity/timeline`) | read-only: no writer lock, a reader lease pins its files | read-only |
//!
//! A writer that finds persons metadata opens it, which settles captures
//! a crash left half-committed (elide-persons `open.rs`) before the
//! command runs.

use std::path::Path;
use std::sync::Arc;

use elide_persons::sqlite::METADATA_FILE;
use elide_persons::Persons;
use elide_store::{Store, StoreOptions};

use crate::Result;

/// What a command does to the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Changes an existing store.
    Write,
    /// Adds data, creating the store if needed.
    Create,
}

/// Store options of a one-shot command ([`StoreOptions::one_shot`]): no
/// background compaction (the command line compacts through `elide
/// compact`), the environment applied.
pub fn command_options() -> StoreOptions {
    StoreOptions::one_shot()
}

/// Open the store of `dir` for `access`.
pub fn store(dir: &Path, access: Access) -> Result<Store> {
    let opts = command_options();
    Ok(match access {
        Access::Read => Store::open_read_only(dir, opts)?,
        Access::Write => Store::open(
            dir,
            StoreOptions {
                create_if_missing: false,
                ..opts
            },
        )?,
        Access::Create => Store::open(dir, opts)?,
    })
}

/// Whether the store has a persons layer (a metadata database, or a
/// binding to one that may have gone missing, which opening reports).
pub fn has_persons(store: &Store) -> bool {
    store.dir().join(METADATA_FILE).exists() || matches!(store.metadata_id(), Ok(Some(_)))
}

/// The persons layer over `store` (opened for `access`).
pub fn persons(store: &Store, access: Access) -> Result<Arc<Persons>> {
    Ok(Arc::new(match access {
        Access::Read => Persons::open_read_only(store.clone())?,
        Access::Write | Access::Create => Persons::open(store.clone())?,
    }))
}

/// Open a writer and, if it has persons, settle what a crash left of
/// two-phase captures before a store-only command runs.
pub fn writer(dir: &Path, access: Access) -> Result<Store> {
    let store = store(dir, access)?;
    if access != Access::Read && has_persons(&store) {
        drop(persons(&store, access)?);
    }
    Ok(store)
}
