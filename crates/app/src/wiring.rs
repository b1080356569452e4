//! Opening a data directory for a command, in one place: whether the
//! command may create a store, whether it writes or only reads, and when
//! the persons layer comes along.
//!
//! | access | store | persons |
//! |---|---|---|
//! | [`Access::Create`] (`ingest`, `capture`, `demo`, `bench`, `projects create`; `serve` opens through `App::open`, which also creates) | writer; creates the store if the directory holds none | writer (created and bound on first use) |
//! | [`Access::Write`] (`delete`, `compact`, `drop-project`, `persons delete/reset/split/set/unset`) | writer; a directory without a store is refused | writer, if the store has persons |
//! | [`Access::Read`] (`sql`, `status`, `deletions`, `scrub`, `persons list/get/deletions/activity/timeline`) | read-only: no writer lock, a reader lease pins its files | read-only |
//!
//! A writer that finds persons metadata opens it, which settles captures
//! a crash left half-committed (elide-persons `open.rs`) before the
//! command runs.

use std::path::{Path, PathBuf};
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

/// The `--local-dir` of this process (see [`set_local_dir`]).
static LOCAL_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Set the local directory used with a data directory on an object store
/// (`--local-dir`); once per process, before any store is opened.
pub fn set_local_dir(dir: Option<PathBuf>) {
    let _ = LOCAL_DIR.set(dir);
}

/// Resolve a data directory (a path, or a URL such as
/// `s3://bucket/prefix`) with this process's `--local-dir`.
fn resolve(data_dir: &Path) -> Result<elide_store::location::Location> {
    let local = LOCAL_DIR.get().and_then(Option::as_deref);
    Ok(elide_store::location::resolve(data_dir, local)?)
}

/// Resolve a data directory for `opts`: sets `opts.object_store` for a
/// URL and returns the directory to open (the data directory itself, or
/// the object store's local directory; `elide_store::location`).
pub fn locate(data_dir: &Path, opts: &mut StoreOptions) -> Result<PathBuf> {
    Ok(resolve(data_dir)?.apply(opts)?.to_path_buf())
}

/// Open the store of `dir` (a path or an object store's URL) for `access`.
/// An object store's local directory that this call created is removed
/// again if the open fails: a refused command leaves nothing behind.
pub fn store(dir: &Path, access: Access) -> Result<Store> {
    let mut opts = command_options();
    let loc = resolve(dir)?;
    let created = loc.url.is_some() && !loc.local_dir.exists();
    let opened = loc
        .apply(&mut opts)
        .map_err(Into::into)
        .and_then(|dir| open_at(dir, access, opts));
    if opened.is_err() && created {
        if let Err(e) = std::fs::remove_dir_all(&loc.local_dir) {
            tracing::warn!(dir = %loc.local_dir.display(), error = %e, "could not remove the local directory of a refused open");
        }
    }
    opened
}

fn open_at(dir: &Path, access: Access, opts: StoreOptions) -> Result<Store> {
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
