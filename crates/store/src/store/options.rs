//! [`StoreOptions`]: what a store is opened with, its defaults, and the
//! environment variables a command-line process reads them from.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;

use crate::error::{Result, StoreError};
use crate::io::{FileSystem, StdFs};
use crate::part::PartWriterOptions;
use crate::policy::{CompactionOptions, CRON_ENV};
#[cfg(doc)]
use crate::Store;

/// Options of [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Freeze and flush the memtable when it holds this many rows.
    pub memtable_rows: usize,
    /// ... or this many bytes of Arrow memory.
    pub memtable_bytes: usize,
    /// Appends wait when this many frozen memtables are waiting for their flush.
    pub max_frozen: usize,
    /// How parts are written.
    pub part: PartWriterOptions,
    /// Object store for parts, tombstones and manifests; `None` = the local
    /// filesystem under the data directory. With an object store the data
    /// directory holds only what stays local: the ingest log, the lock,
    /// the persons metadata (see [`crate::location`]).
    pub object_store: Option<Arc<dyn ObjectStore>>,
    /// On an object store, how long an unreferenced object is kept before
    /// GC removes it (readers on other machines may still read it). At
    /// most half the erasure deadline (`compaction.max_pending_age`).
    pub object_retention: Duration,
    /// On an object store, how long the writer's lease lasts unless
    /// renewed (it is renewed every third of it).
    pub object_lease_ttl: Duration,
    /// Environment variables [`StoreOptions::from_env`] could not read
    /// (with why): the open refuses them rather than run with a default
    /// the operator did not ask for.
    pub env_problems: Vec<String>,
    /// Run the flusher on a background thread (otherwise only `flush()` flushes).
    pub background_flush: bool,
    /// Compaction knobs (schedule, thresholds, erasure deadline, I/O limit).
    pub compaction: CompactionOptions,
    /// Run the compaction worker on a background thread: it wakes every
    /// [`COMPACTOR_POLL`] (and at each window's start) and executes what
    /// the policy plans. Off, compaction runs only through
    /// [`Store::compact`].
    pub background_compaction: bool,
    /// Create the store if the directory holds none (or does not exist).
    /// Off, opening such a directory is [`StoreError::NoStore`]: a
    /// mistyped path must not become an empty store that a deletion then
    /// "succeeds" on.
    pub create_if_missing: bool,
    /// Return from [`Store::open`] only once the in-memory distinct-id
    /// index is built (see [`Store::ready`]). Off, `open` returns as soon
    /// as the directory is recovered; deletions meanwhile read the parts'
    /// `.runs` files (and wait for the build only in a project with a part
    /// that has none).
    pub wait_ready: bool,
    /// Keep every part's distinct-id runs in memory (built on a
    /// background thread at open, kept current by commits): the fastest
    /// deletions, for memory that grows with the number of (distinct id,
    /// part) pairs. Off, deletions and exports read the parts' `.runs`
    /// files instead (a head per part of the project, a block per part
    /// that may hold an id; nothing held between calls). A part without a
    /// usable `.runs` file (written before they existed, until the next
    /// compaction writes it, or damaged) makes the next deletion build the
    /// whole index and keep it for the store's lifetime: memory is then no
    /// longer bounded. Either way a deletion right after open does not
    /// wait for the build when every part of the project has its `.runs`
    /// file.
    pub in_memory_index: bool,
    /// The file-system seam of the local backend (tests record durability
    /// through it; see `io.rs`).
    pub fs: Arc<dyn FileSystem>,
    /// How long a deletion by predicate may read parts before it stops
    /// and commits the predicate itself as a logical tombstone, resolved
    /// by the background worker (`undo.rs`); the rows are hidden either
    /// way when the call returns. `None`: always resolve in the call.
    pub predicate_resolve_bound: Option<Duration>,
    /// The Ed25519 key that signs deletion receipts: a file holding its
    /// 32-byte seed in hex. `None`: the data directory's
    /// (`receipts/signing.key`, created with the first receipt).
    /// [`StoreOptions::from_env`] reads it from `ELIDE_RECEIPT_KEY`.
    pub receipt_key: Option<std::path::PathBuf>,
}

/// The environment variable naming the receipt signing key's file
/// ([`StoreOptions::receipt_key`]).
pub const RECEIPT_KEY_ENV: &str = "ELIDE_RECEIPT_KEY";

/// The environment variable setting [`StoreOptions::object_retention`]
/// (whole seconds).
pub const OBJECT_RETENTION_ENV: &str = "ELIDE_OBJECT_RETENTION_SECS";

/// How often the background compaction worker asks the policy.
pub const COMPACTOR_POLL: Duration = Duration::from_secs(60);

impl Default for StoreOptions {
    /// The options of a long-lived process (an embedder, the server): a
    /// background flusher and a background compaction worker (so that
    /// purges run off-peak and by the erasure deadline without the caller
    /// asking), the store created if missing. Reads no environment
    /// variable; [`StoreOptions::from_env`] does.
    fn default() -> Self {
        StoreOptions {
            memtable_rows: 1_000_000,
            memtable_bytes: 512 << 20,
            max_frozen: 2,
            part: PartWriterOptions::default(),
            object_store: None,
            object_retention: Duration::from_secs(15 * 60),
            object_lease_ttl: crate::remote::WRITER_LEASE_TTL,
            env_problems: Vec::new(),
            background_flush: true,
            compaction: CompactionOptions::default(),
            background_compaction: true,
            create_if_missing: true,
            wait_ready: false,
            in_memory_index: true,
            fs: Arc::new(StdFs),
            predicate_resolve_bound: Some(Duration::from_secs(1)),
            receipt_key: None,
        }
    }
}

impl StoreOptions {
    /// [`StoreOptions::default`], then what the environment sets:
    /// `ELIDE_COMPACTION_CRON` ([`CRON_ENV`]; empty turns scheduled purges
    /// off). What the `elide` binary uses.
    pub fn from_env() -> Self {
        let mut o = StoreOptions::default();
        o.compaction = o
            .compaction
            .with_cron_env(std::env::var(CRON_ENV).ok().as_deref());
        o.receipt_key = std::env::var_os(RECEIPT_KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(Into::into);
        if let Ok(v) = std::env::var(OBJECT_RETENTION_ENV) {
            match v.trim().parse::<u64>() {
                Ok(secs) => o.object_retention = Duration::from_secs(secs),
                Err(_) => o.env_problems.push(format!(
                    "{OBJECT_RETENTION_ENV}={v:?} is not a whole number of seconds"
                )),
            }
        }
        o
    }

    /// Refuse the environment problems [`StoreOptions::from_env`] found.
    pub(super) fn check_env(&self) -> Result<()> {
        match self.env_problems.is_empty() {
            true => Ok(()),
            false => Err(StoreError::InvalidInput(self.env_problems.join("; "))),
        }
    }

    /// The options of a short-lived command (`elide ingest`, `elide
    /// delete`, ...): no background compaction worker (compaction runs
    /// when [`Store::compact`] is called), the environment applied as
    /// [`StoreOptions::from_env`] does.
    pub fn one_shot() -> Self {
        StoreOptions {
            background_compaction: false,
            // Nothing would resolve a bridged request before the next
            // compaction: the command waits for the resolution instead.
            predicate_resolve_bound: None,
            ..StoreOptions::from_env()
        }
    }

    /// Nothing the caller does not call: no background flush or
    /// compaction, and predicates always resolved in the deletion's own
    /// call (no bridge), whatever the environment. What tests use, so
    /// that a loaded machine does not change what they see.
    pub fn foreground() -> Self {
        StoreOptions {
            background_flush: false,
            background_compaction: false,
            predicate_resolve_bound: None,
            ..Default::default()
        }
    }
}
