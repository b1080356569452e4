//! [`Store`]: open/recover a data directory, append, flush, delete, snapshot.
//!
//! ```text
//!   append ─► normalize ─► [state lock] _seq, ingest log, memtable ─► group fsync ─► ack
//!                                             │ memtable full: freeze + rotate log
//!                                             ▼
//!   flusher thread ─► write parts (sorted, one per partition) ─► commit ─► remove log segment
//!
//!   delete ─► [commit lock] cut-off; memtable hits (hash index); part runs (distinct-id index)
//!             ─► one tombstone file ─► commit ─► rows hidden for every later snapshot
//! ```
//!
//! Durability: an append returns after its ingest-log record is fsynced; a
//! delete returns after its tombstone file and manifest are fsynced.
//! Visibility: a snapshot sees parts of the published version plus memtable
//! rows whose log record is durable, minus hidden rows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use croaring::{Bitmap, Treemap};
use object_store::ObjectStore;

use crate::commit::{CommitState, Transaction};
use crate::error::{Result, StoreError};
use crate::format::{DeletionRequest, Manifest, PartMeta, RequestKind};
use crate::gc::{Gc, LiveGuard};
use crate::index::BackgroundBuild;
use crate::io::{FileSystem, StdFs};
use crate::lease::Lease;
use crate::lock::DirLock;
use crate::memtable::{Chunk, Memtable};
use crate::normalize::{normalize, NormalizedBatch};
use crate::open;
use crate::part::{read_seqs, write_parts, PartWriterOptions};
use crate::policy::{CompactionOptions, CompactionPolicy, CRON_ENV};
use crate::schema::Table;
use crate::storage::Storage;
use crate::wal::{self, Wal};
use crate::worker::{
    compactor_loop, flusher_loop, spawn_worker, start_index_build, stop_worker, FlushMsg, Worker,
};

/// Most distinct ids one deletion call accepts.
pub const MAX_DELETE_IDS: usize = 1000;

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
    fn check_env(&self) -> Result<()> {
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

/// A published state: a manifest and the tombstone bitmaps it references.
#[derive(Debug)]
pub struct Version {
    /// The manifest.
    pub manifest: Manifest,
    /// Current bitmap of every part that has deleted rows.
    pub tombstones: HashMap<u64, Arc<Bitmap>>,
}

impl State {
    /// The state right after recovery: the replayed rows (if any) are the
    /// one frozen memtable, waiting for their flush.
    fn recovered(
        manifest: Manifest,
        tombstones: HashMap<u64, Arc<Bitmap>>,
        replayed: open::Replayed,
        next_seq: u64,
        wal_segment: Option<u64>,
    ) -> State {
        let mut frozen = VecDeque::new();
        if replayed.memtable.rows > 0 {
            frozen.push_back(Arc::new(replayed.memtable));
        }
        State {
            version: Arc::new(Version {
                manifest,
                tombstones,
            }),
            active: Memtable::new(2, next_seq, wal_segment),
            frozen,
            mem_deleted: Arc::new(replayed.hidden),
            next_seq,
            next_memtable_id: 3,
            next_wal_segment: wal_segment.map_or(0, |s| s + 1),
            failed: None,
            wal_buffer: Vec::new(),
        }
    }
}

/// Read every ingest-log segment without changing any (a read-only open):
/// a torn tail is skipped, damage is an error, a segment removed meanwhile
/// is a not-found error (the caller starts over).
fn read_log(wal_dir: &Path) -> Result<Vec<(u64, Vec<wal::WalRecord>)>> {
    if !wal_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for id in wal::list_segments(wal_dir)? {
        let read = wal::read_segment(&wal::segment_path(wal_dir, id))?;
        out.push((id, read.records));
    }
    Ok(out)
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    fn new(
        dir: PathBuf,
        wal_dir: PathBuf,
        storage: Storage,
        opts: StoreOptions,
        (lock, lease, wal, writer_lease, writer_id): (
            Option<DirLock>,
            Option<Lease>,
            Option<Wal>,
            Option<crate::remote::WriterLease>,
            String,
        ),
        state: State,
        gc: Arc<Gc>,
        durable_seq: Arc<AtomicU64>,
        policy: CompactionPolicy,
    ) -> Inner {
        let file_ids = AtomicU64::new(state.version.manifest.next_file_id);
        Inner {
            dir,
            wal_dir,
            storage,
            opts,
            _lock: lock,
            _lease: lease,
            writer_lease,
            writer_id,
            wal,
            state: Mutex::new(state),
            flushed: Condvar::new(),
            commit: Mutex::new(CommitState::default()),
            flush_lock: Mutex::new(()),
            gc,
            durable_seq,
            file_ids,
            flusher: Mutex::new(None),
            compactor: Mutex::new(None),
            store_id: uuid::Uuid::new_v4().simple().to_string(),
            index_build: Arc::default(),
            compaction_lock: Mutex::new(()),
            logical: Arc::default(),
            read_versions: Mutex::default(),
            scans: ScanActivity::default(),
            retention_swept: Mutex::default(),
            policy,
            closing: std::sync::atomic::AtomicBool::new(false),
            reservations: Mutex::default(),
            next_reservation: AtomicU64::new(1),
        }
    }

    /// Reserve `rows` `_seq`s for a bulk ingest, registering it as in
    /// flight (`inflight` keeps its registration). Returns the first
    /// `_seq` and the next request id at this moment.
    pub(crate) fn reserve_seqs(&self, rows: u64, inflight: &mut Option<u64>) -> Result<(u64, u64)> {
        let mut st = self.state.lock().map_err(poisoned)?;
        if let Some(f) = &st.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        let start = st.next_seq;
        st.next_seq = start
            .checked_add(rows)
            .ok_or_else(|| StoreError::Internal("_seq overflow".into()))?;
        if inflight.is_none() {
            let id = self.next_reservation.fetch_add(1, Ordering::Relaxed);
            self.reservations
                .lock()
                .map_err(poisoned)?
                .insert(id, start);
            *inflight = Some(id);
        }
        Ok((start, st.version.manifest.next_request_id))
    }

    /// A bulk ingest is no longer in flight.
    pub(crate) fn end_reservation(&self, id: u64) {
        if let Ok(mut r) = self.reservations.lock() {
            r.remove(&id);
        }
    }

    /// The first `_seq` of the oldest bulk ingest in flight.
    pub(crate) fn oldest_reservation(&self) -> Option<u64> {
        self.reservations
            .lock()
            .ok()
            .and_then(|r| r.values().min().copied())
    }

    /// The ingest log, or [`StoreError::ReadOnly`].
    pub(crate) fn wal(&self) -> Result<&Wal> {
        self.wal.as_ref().ok_or_else(read_only)
    }

    /// Fails with [`StoreError::ReadOnly`] on a read-only store.
    pub(crate) fn writable(&self) -> Result<()> {
        self.wal().map(|_| ())
    }
}

fn read_only() -> StoreError {
    StoreError::ReadOnly("this store was opened read-only".into())
}

impl State {
    /// Every memtable, oldest first (the frozen ones, then the active one).
    pub fn memtables(&self) -> impl Iterator<Item = &Memtable> {
        self.frozen
            .iter()
            .map(|m| &**m)
            .chain(std::iter::once(&self.active))
    }
}

pub(crate) struct State {
    pub version: Arc<Version>,
    pub active: Memtable,
    pub frozen: VecDeque<Arc<Memtable>>,
    pub mem_deleted: Arc<Treemap>,
    pub next_seq: u64,
    pub next_memtable_id: u64,
    pub next_wal_segment: u64,
    /// Set when the store is closed or a write failed (the log may be torn).
    pub failed: Option<String>,
    /// The ingest log's encoding buffer, kept between appends.
    pub wal_buffer: Vec<u8>,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub wal_dir: PathBuf,
    pub storage: Storage,
    pub opts: StoreOptions,
    /// The writer lock (`None`: a read-only store).
    _lock: Option<DirLock>,
    /// The reader lease of a read-only store.
    _lease: Option<Lease>,
    /// The writer's lease on an object store (`None`: local or read-only).
    pub writer_lease: Option<crate::remote::WriterLease>,
    /// The local directory's writer id on an object store (empty: local).
    pub writer_id: String,
    /// The ingest log being written (`None`: a read-only store).
    wal: Option<Wal>,
    pub state: Mutex<State>,
    pub flushed: Condvar,
    pub commit: Mutex<CommitState>,
    flush_lock: Mutex<()>,
    pub gc: Arc<Gc>,
    /// Matches of logical requests per part (undo.rs).
    pub logical: Arc<crate::undo::LogicalCache>,
    /// Versions other than the current one read back from storage by
    /// `Store::snapshot_at` (snapshot.rs), the most recent last: the
    /// tasks of a distributed query decode the same version many times.
    pub read_versions: Mutex<Vec<Arc<Version>>>,
    /// Part files being read by queries right now (see [`ScanActivity`]):
    /// a throttled compaction yields the CPU while any is, and shortly
    /// after.
    pub scans: ScanActivity,
    /// Per-event retention sweeps of this process: (project, event) ->
    /// (bound, when) of the last one (retention.rs).
    pub retention_swept: Mutex<HashMap<(i64, String), (i64, i64)>>,
    pub durable_seq: Arc<AtomicU64>,
    file_ids: AtomicU64,
    flusher: Worker,
    compactor: Worker,
    pub store_id: String,
    pub index_build: Arc<BackgroundBuild>,
    /// One compaction run at a time.
    pub compaction_lock: Mutex<()>,
    pub policy: CompactionPolicy,
    /// Set when the store closes: compaction stops between batches.
    pub closing: std::sync::atomic::AtomicBool,
    /// `_seq` ranges reserved by bulk ingests in flight: id -> first `_seq`.
    reservations: Mutex<BTreeMap<u64, u64>>,
    next_reservation: AtomicU64,
}

/// An Elide data directory, open for writing (or read-only, see
/// [`Store::open_read_only`]). Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// A handle on a [`Store`] that does not keep it open: what long-lived
/// readers (DataFusion table providers, caches) hold, so that dropping or
/// [closing](Store::close) the last [`Store`] releases the data
/// directory whatever sessions are still around. [`WeakStore::upgrade`]
/// then fails with [`StoreError::Closed`].
#[derive(Clone)]
pub struct WeakStore {
    inner: Weak<Inner>,
    dir: PathBuf,
}

impl std::fmt::Debug for WeakStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakStore").field("dir", &self.dir).finish()
    }
}

impl WeakStore {
    /// The store, if it is still open.
    pub fn upgrade(&self) -> Result<Store> {
        self.inner
            .upgrade()
            .map(|inner| Store { inner })
            .ok_or_else(|| StoreError::Closed {
                path: self.dir.clone(),
            })
    }
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// `_seq` of the first row.
    pub seq_start: u64,
    /// One past the `_seq` of the last row.
    pub seq_end: u64,
}

/// What to delete.
#[derive(Debug, Clone)]
pub struct DeleteSpec {
    /// Project of the distinct ids.
    pub project_id: i64,
    /// The distinct ids: up to [`MAX_DELETE_IDS`] for [`Store::delete`],
    /// any number for [`Store::delete_many`].
    pub distinct_ids: Vec<String>,
    /// Delete rows with `_seq` below this; `None` = everything appended before the call.
    pub cutoff: Option<u64>,
    /// Tables to delete from; empty = all tables.
    pub tables: Vec<Table>,
    /// What the request is recorded as: [`RequestKind::DistinctIds`]
    /// (the default) or [`RequestKind::Person`] (the persons layer's
    /// deletions). Deletions of events by predicate go through
    /// [`Store::delete_events`].
    pub kind: RequestKind,
    /// Rows of the persons metadata removed with this deletion (the
    /// persons layer's count, stated by the request's receipt); 0
    /// otherwise. With several requests (more ids than
    /// [`MAX_DELETE_IDS`]) the first one carries it.
    pub metadata_rows_removed: u64,
}

impl DeleteSpec {
    /// Delete every row of `distinct_ids` in `project_id` appended before
    /// the call, in all tables (the common case; set `cutoff` or `tables`
    /// on the result for the others).
    pub fn ids<S: Into<String>>(
        project_id: i64,
        distinct_ids: impl IntoIterator<Item = S>,
    ) -> DeleteSpec {
        DeleteSpec {
            project_id,
            distinct_ids: distinct_ids.into_iter().map(Into::into).collect(),
            cutoff: None,
            tables: Vec::new(),
            kind: RequestKind::DistinctIds,
            metadata_rows_removed: 0,
        }
    }
}

/// Result of a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The recorded request.
    pub request_id: u64,
    /// Rows newly hidden by this request (for a bridged predicate,
    /// `logical` without `undo_until_us`: those found before the bound).
    pub rows_hidden: u64,
    /// The cut-off used.
    pub cutoff: u64,
    /// When the rows must be gone from disk (µs since the epoch, UTC).
    pub purge_due_by_us: i64,
    /// Hidden by its predicate when read, not yet by tombstone bits (an
    /// undo window, or a predicate resolved in the background; see
    /// `undo.rs`).
    pub logical: bool,
    /// End of the undo window, if the request has one.
    pub undo_until_us: Option<i64>,
}

/// Result of [`Store::drop_project`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropOutcome {
    /// The project.
    pub project_id: i64,
    /// Parts that left the manifest.
    pub parts_removed: usize,
    /// Visible rows removed (parts and buffered rows).
    pub rows_removed: u64,
    /// Bytes of the removed parts.
    pub bytes_removed: u64,
    /// Deletion requests removed.
    pub requests_removed: usize,
}

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(crate) fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("a store lock is poisoned (a thread panicked)".into())
}

impl Store {
    /// Open the data directory `path` for writing, creating the store if
    /// the directory holds none and `opts.create_if_missing` is set. Takes
    /// the writer lock, recovers (see `open.rs`), and starts the
    /// background workers the options ask for.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let dir = path.as_ref().to_path_buf();
        opts.check_env()?;
        let policy = CompactionPolicy::new(opts.compaction.clone())?;
        if let Some(k) = &opts.receipt_key {
            // A receipt key that cannot be used is found now, not when
            // the first request is verified.
            crate::receipt::load_key_file(k)?;
        }
        let fs = Arc::clone(&opts.fs);
        open::prepare_dir(&*fs, &dir, opts.create_if_missing)?;
        if opts.object_store.is_none() && !opts.create_if_missing && !open::has_manifest_dir(&dir) {
            return Err(StoreError::NoStore {
                path: dir,
                reason: "it holds no manifest/ (not an Elide data directory)".into(),
            });
        }
        let lock = DirLock::acquire(&dir)?;
        let writer_id = match &opts.object_store {
            Some(_) => crate::location::writer_id(&dir)?,
            None => String::new(),
        };
        let (storage, writer_lease) = match &opts.object_store {
            Some(os) => {
                let what = format!("object store {os}");
                let deadline = opts.compaction.max_pending_age;
                if opts.object_retention > deadline / 2 {
                    return Err(StoreError::InvalidInput(format!(
                        "the object retention window ({:?}) must be at most half the erasure deadline ({:?}): a purged part is removed only after it",
                        opts.object_retention, deadline
                    )));
                }
                if !opts.create_if_missing && crate::remote::latest_manifest(os)?.is_none() {
                    // Refused before anything is written to the bucket.
                    return Err(StoreError::NoStore {
                        path: dir,
                        reason: format!("{what} holds no manifest/ (not an Elide store)"),
                    });
                }
                crate::remote::probe_put_if_absent(os, &what)?;
                let lease = crate::remote::WriterLease::acquire(
                    Arc::clone(os),
                    &what,
                    opts.object_lease_ttl,
                    &dir,
                    &writer_id,
                )?;
                (Storage::object_store(Arc::clone(os)), Some(lease))
            }
            None => (Storage::local(&dir, Arc::clone(&fs))?, None),
        };
        let wal_dir = dir.join("wal");
        let (mut manifest, from_disk) =
            open::writer_manifest(&storage, &dir, &wal_dir, opts.create_if_missing)?;
        if !wal_dir.is_dir() {
            fs.create_dir_all(&wal_dir)
                .map_err(|e| StoreError::io(wal_dir.display(), e))?;
        }
        // Also when it exists: a process killed before syncing it may
        // have created it.
        crate::storage::sync_dir(&*fs, &dir)?;
        // Recover the ingest log, and refuse it before anything is removed
        // if another directory's writer has committed since.
        let recovered = wal::recover(&*fs, &wal_dir)?;
        if let Some(other) = manifest
            .writer_id
            .as_deref()
            .filter(|w| storage.is_remote() && *w != writer_id)
        {
            let records: usize = recovered.segments.iter().map(|(_, r)| r.len()).sum();
            if records > 0 {
                // Its rows' sequence numbers may have been handed out
                // again by that writer (its flush would make replay skip
                // them), and its deletions' cut-offs do not cover them.
                return Err(StoreError::Diverged {
                    path: dir,
                    reason: format!(
                        "its ingest log holds {records} record(s) this directory's writer logged, but writer {other} (another local directory) has committed to the store since; replaying them could lose them or escape that writer's deletions. Ingest them again from their source and remove {}",
                        wal_dir.display()
                    ),
                });
            }
        }
        let tombstones = open::load_tombstones(&storage, &manifest)?;
        let gc = Arc::new(match storage.local_root() {
            Some(_) => Gc::new(Some(dir.clone())),
            None => Gc::remote(opts.object_retention),
        });
        gc.note_version(manifest.version);
        let mut swept = 0;
        if from_disk {
            let leased = match storage.local_root() {
                Some(_) => crate::lease::pinned_versions(&dir),
                None => Vec::new(),
            };
            let pinned = open::leased_paths(&storage, &leased)?;
            let report = gc.sweep_unreferenced(&storage, &manifest, pinned.as_ref())?;
            swept = report.removed;
            if let Some(id) = report.max_file_id {
                // A crashed commit's files the sweep left in place keep
                // their ids: new files get larger ones.
                manifest.next_file_id = manifest.next_file_id.max(id + 1);
            }
            if !report.foreign.is_empty() {
                tracing::warn!(count = report.foreign.len(), first = %report.foreign[0], "files Elide did not write are in its directories; left alone");
            }
        }
        open::sweep_spool(&*fs, &dir);
        // Replay the ingest log (recovered above).
        let wal_segment = recovered.segments.last().map_or(0, |s| s.0) + 1;
        let replayed = open::replay(&manifest, recovered.segments, &wal_dir)?;
        gc.remove_wal_segments(&*fs, &wal_dir, &replayed.obsolete)?;
        let next_seq = manifest.next_seq.max(replayed.memtable.seq_end);
        let durable_seq = Arc::new(AtomicU64::new(next_seq));
        let wal = Wal::create(
            Arc::clone(&fs),
            &wal_dir,
            wal_segment,
            Arc::clone(&durable_seq),
        )?;
        let replayed_rows = replayed.memtable.rows;
        tracing::info!(dir = %dir.display(), version = manifest.version, parts = manifest.parts.len(), replayed_rows, swept, "opened store");
        crate::lifecycle::fill_legacy_deadlines(&mut manifest, opts.compaction.max_pending_age);
        let state = State::recovered(manifest, tombstones, replayed, next_seq, Some(wal_segment));
        let inner = Arc::new(Inner::new(
            dir,
            wal_dir,
            storage,
            opts,
            (Some(lock), None, Some(wal), writer_lease, writer_id),
            state,
            gc,
            durable_seq,
            policy,
        ));
        if inner.opts.in_memory_index {
            start_index_build(&inner)?;
        }
        if inner.opts.background_flush {
            let tx = spawn_worker(&inner, &inner.flusher, "elide-flusher", flusher_loop)?;
            if replayed_rows > 0 {
                let _ = tx.send(FlushMsg::Wake);
            }
        }
        if inner.opts.background_compaction {
            spawn_worker(&inner, &inner.compactor, "elide-compactor", compactor_loop)?;
        }
        let store = Store { inner };
        if store.inner.opts.wait_ready {
            store.ready()?;
        }
        Ok(store)
    }

    /// Open the data directory `path` for reading only: no writer lock (a
    /// writer in another process keeps appending, deleting and
    /// compacting), no background work, nothing removed or rewritten. The
    /// store reads the latest manifest and the rows of the ingest log not
    /// yet in parts (deletion requests and drops applied), and pins the
    /// files of that version against the writer's GC with a reader lease
    /// (`lease.rs`). Every write returns [`StoreError::ReadOnly`].
    ///
    /// The view is fixed at open; open again to see later commits.
    pub fn open_read_only(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let dir = path.as_ref().to_path_buf();
        opts.check_env()?;
        let policy = CompactionPolicy::new(opts.compaction.clone())?;
        open::prepare_dir(&*opts.fs, &dir, false)?;
        let storage = match &opts.object_store {
            Some(os) => Storage::object_store(Arc::clone(os)),
            None => Storage::local(&dir, Arc::clone(&opts.fs))?,
        };
        let wal_dir = dir.join("wal");
        let mut lease = match storage.local_root() {
            Some(_) => match Lease::acquire(&dir) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take a reader lease; a concurrent writer may remove files this reader needs");
                    None
                }
            },
            None => None,
        };
        // A writer may flush (and remove log segments) between our read of
        // the manifest and of the log: then the rows are in a newer
        // version, and we start over from it.
        let mut attempt = 0;
        let (manifest, tombstones, replayed) = loop {
            attempt += 1;
            let Some((version, path)) = open::latest_manifest(&storage)? else {
                return Err(StoreError::NoStore {
                    path: dir.clone(),
                    reason: "it holds no manifest/ (not an Elide data directory)".into(),
                });
            };
            if let Some(l) = lease.as_mut() {
                l.set_version(version)?;
            }
            let read = open::read_manifest(&storage, &path)
                .and_then(|m| Ok((open::load_tombstones(&storage, &m)?, m)))
                .and_then(|(t, m)| {
                    let segments = read_log(&wal_dir)?;
                    Ok((t, m, segments))
                });
            // A flush may have committed (and removed the log segments of
            // rows above this manifest's `flushed_seq`) after we read the
            // manifest: then those rows are in neither; start over.
            let moved_on = |m: &Manifest| -> Result<bool> {
                Ok(open::latest_manifest(&storage)?.is_some_and(|(v, _)| v != m.version))
            };
            match read {
                Ok((t, m, segments)) if moved_on(&m)? => {
                    drop((t, m, segments));
                    if attempt >= 20 {
                        return Err(StoreError::Unavailable(
                            "the writer committed during each of 20 attempts to read a consistent view; try again".into(),
                        ));
                    }
                    continue;
                }
                Ok((t, m, segments)) => {
                    let r = open::replay(&m, segments, &wal_dir)?;
                    break (m, t, r);
                }
                Err(e) if attempt < 20 && e.is_not_found() => {
                    tracing::debug!(error = %e, "the writer moved on while we read; retrying");
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        let next_seq = manifest.next_seq.max(replayed.memtable.seq_end);
        let durable_seq = Arc::new(AtomicU64::new(next_seq));
        let mut manifest = manifest;
        crate::lifecycle::fill_legacy_deadlines(&mut manifest, opts.compaction.max_pending_age);
        let state = State::recovered(manifest, tombstones, replayed, next_seq, None);
        let opts = StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..opts
        };
        let inner = Arc::new(Inner::new(
            dir,
            wal_dir,
            storage,
            opts,
            (None, lease, None, None, String::new()),
            state,
            Arc::new(Gc::read_only()),
            durable_seq,
            policy,
        ));
        Ok(Store { inner })
    }

    /// Whether this store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.wal.is_none()
    }

    /// A handle on an open store (the background threads hold a weak
    /// one and upgrade it for a run).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Store {
        Store { inner }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The compaction policy (options and parsed schedule).
    pub fn policy(&self) -> &CompactionPolicy {
        &self.inner.policy
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Storage of parts, tombstones and manifests.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// A unique id of this open store (used to register its object store).
    pub fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// Append a batch to `table`. When this returns, the rows are durable and
    /// visible. An invalid batch is rejected whole.
    pub fn append(&self, table: Table, batch: &RecordBatch) -> Result<Appended> {
        let n = normalize(table, batch)?;
        self.append_normalized(n)
    }

    /// Append a batch already validated by [`normalize`].
    pub fn append_normalized(&self, n: NormalizedBatch) -> Result<Appended> {
        self.inner.writable()?;
        let rows = n.num_rows() as u64;
        let inner = &*self.inner;
        let mut st = inner.state.lock().map_err(poisoned)?;
        // Back-pressure: bound memory by waiting for the flusher (or, without
        // a background flusher, flushing here).
        while st.frozen.len() >= inner.opts.max_frozen.max(1) && st.failed.is_none() {
            if !inner.opts.background_flush {
                drop(st);
                inner.flush_frozen()?;
                st = inner.state.lock().map_err(poisoned)?;
                continue;
            }
            inner.wake_flusher();
            let (g, _) = inner
                .flushed
                .wait_timeout(st, Duration::from_millis(200))
                .map_err(poisoned)?;
            st = g;
        }
        if let Some(f) = &st.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        if rows == 0 {
            return Ok(Appended {
                seq_start: st.next_seq,
                seq_end: st.next_seq,
            });
        }
        let seq_start = st.next_seq;
        let batch = n.finish(seq_start, now_us())?;
        let buffer = std::mem::take(&mut st.wal_buffer);
        let mut record = wal::encode_record_into(buffer, n.table, seq_start, &batch)?;
        let written = inner.wal()?.write(&mut record, seq_start + rows);
        st.wal_buffer = record.into_buffer();
        let lsn = match written {
            Ok(l) => l,
            Err(e) => {
                st.failed = Some(format!("ingest log write failed: {e}"));
                return Err(e);
            }
        };
        st.next_seq += rows;
        st.active.push(Arc::new(Chunk {
            table: n.table,
            seq_start,
            batch,
        }));
        let full = st.active.rows >= inner.opts.memtable_rows
            || st.active.bytes >= inner.opts.memtable_bytes;
        if full {
            inner.freeze_locked(&mut st)?;
        }
        drop(st);
        if full {
            inner.wake_flusher();
        }
        if let Err(e) = inner.wal()?.sync_to(lsn) {
            if let Ok(mut st) = inner.state.lock() {
                st.failed = Some(format!("ingest log fsync failed: {e}"));
            }
            return Err(e);
        }
        Ok(Appended {
            seq_start,
            seq_end: seq_start + rows,
        })
    }

    /// Write every buffered row into parts and commit; afterwards the ingest
    /// log holds nothing.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    /// Hide the rows of `spec.distinct_ids` below the cut-off, in every part and
    /// in buffered rows. Durable and visible to every later snapshot when it returns.
    /// At most [`MAX_DELETE_IDS`] ids; [`Store::delete_many`] takes any number.
    pub fn delete(&self, spec: DeleteSpec) -> Result<DeleteOutcome> {
        self.inner.writable()?;
        let (project, ids, tables) = validate_spec(&spec)?;
        let kind = spec.kind;
        if ids.len() > MAX_DELETE_IDS {
            return Err(StoreError::InvalidInput(format!(
                "a deletion takes at most {MAX_DELETE_IDS} distinct ids, got {}",
                ids.len()
            )));
        }
        let mut tx = Transaction::begin(&self.inner)?;
        let out = self
            .inner
            .resolve_deletion(&mut tx, kind, project, ids, tables, spec.cutoff)?;
        tx.set_metadata_rows_removed(out.request_id, spec.metadata_rows_removed);
        tx.commit()?;
        tracing::info!(
            request_id = out.request_id,
            rows_hidden = out.rows_hidden,
            project,
            "deletion committed"
        );
        Ok(out)
    }

    /// Delete any number of distinct ids, of any number of projects, in
    /// **one commit** (one tombstone file, one manifest fsync): when it
    /// returns, every row of every spec is hidden from later snapshots;
    /// on an error (a bad spec anywhere is found before anything is
    /// resolved) none is.
    ///
    /// Each spec becomes one deletion request per [`MAX_DELETE_IDS`] ids
    /// (requests are tracked, purged and verified separately); the
    /// outcomes are returned in order, chunk by chunk. Ids are resolved a
    /// chunk at a time, so memory grows with the rows hidden (as bitmaps),
    /// not with the product of ids and parts. Empty input commits nothing.
    /// Specs without a cut-off of their own share one: rows appended
    /// before the call.
    ///
    /// ```no_run
    /// # fn f(store: &elide_store::Store) -> elide_store::Result<()> {
    /// use elide_store::DeleteSpec;
    /// let outcomes = store.delete_many([
    ///     DeleteSpec::ids(1, ["user-1", "user-2"]),
    ///     DeleteSpec::ids(2, (0..5000).map(|i| format!("anon-{i}"))), // 5 requests
    /// ])?;
    /// let hidden: u64 = outcomes.iter().map(|o| o.rows_hidden).sum();
    /// # Ok(()) }
    /// ```
    pub fn delete_many(
        &self,
        specs: impl IntoIterator<Item = DeleteSpec>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.inner.writable()?;
        let mut checked = Vec::new();
        for spec in specs {
            let (project, ids, tables) = validate_spec(&spec)?;
            checked.push((
                spec.kind,
                project,
                ids,
                tables,
                spec.cutoff,
                spec.metadata_rows_removed,
            ));
        }
        if checked.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = Transaction::begin(&self.inner)?;
        // One cut-off for the whole call ("appended before it").
        let now_seq = self.inner.next_seq()?;
        let mut out = Vec::new();
        for (kind, project, ids, tables, cutoff, metadata_rows) in checked {
            let cutoff = Some(cutoff.unwrap_or(now_seq));
            for (i, chunk) in ids.chunks(MAX_DELETE_IDS).enumerate() {
                let o = self.inner.resolve_deletion(
                    &mut tx,
                    kind,
                    project,
                    chunk.to_vec(),
                    tables.clone(),
                    cutoff,
                )?;
                if i == 0 {
                    tx.set_metadata_rows_removed(o.request_id, metadata_rows);
                }
                out.push(o);
            }
        }
        tx.commit()?;
        tracing::info!(
            requests = out.len(),
            rows_hidden = out.iter().map(|o| o.rows_hidden).sum::<u64>(),
            "deletions committed together"
        );
        Ok(out)
    }

    /// Drop a project: every row of it appended before the call becomes
    /// invisible at once, its parts and deletion requests leave the
    /// manifest, and its files are removed by GC (after the snapshots that
    /// read them). Buffered rows are flushed first and again after, so the
    /// ingest log keeps none of the project's rows either.
    pub fn drop_project(&self, project_id: i64) -> Result<DropOutcome> {
        self.inner.writable()?;
        check_project(project_id)?;
        let inner = &*self.inner;
        let f = inner.flush_lock.lock().map_err(poisoned)?;
        inner.freeze_for_flush()?;
        inner.flush_frozen_locked(&f)?;
        let mut tx = Transaction::begin(inner)?;
        // Rows appended since the flush above (active memtable only: the
        // flush lock keeps new memtables from being flushed meanwhile).
        let mem_hits = {
            let st = inner.state.lock().map_err(poisoned)?;
            let mut hits = Vec::new();
            for m in st.memtables() {
                m.rows_of_project(project_id, u64::MAX, &mut hits)?;
            }
            hits.retain(|s| !st.mem_deleted.contains(*s));
            hits
        };
        let dropped: Vec<(u64, u64, u64)> = tx
            .manifest()
            .parts
            .iter()
            .filter(|p| p.project_id == project_id)
            .map(|p| (p.id, p.live_rows(), p.size))
            .collect();
        for (id, _, _) in &dropped {
            tx.remove_part(*id);
        }
        tx.note_drop(project_id, inner.next_seq()?, inner.oldest_reservation());
        let requests_removed = tx.remove_project_requests(project_id);
        tx.set_project_settings(project_id, Default::default());
        tx.hide_mem_rows(&mem_hits);
        if !mem_hits.is_empty() {
            // Replay must hide these rows if the process stops before the
            // flush below removes them from the ingest log.
            let cutoff = mem_hits.iter().max().map_or(0, |m| m + 1);
            tx.add_dropped(project_id, cutoff);
        }
        tx.commit()?;
        // Flush what was appended meanwhile without the hidden rows, so
        // the log segment that held them is removed.
        inner.freeze_for_flush()?;
        inner.flush_frozen_locked(&f)?;
        let out = DropOutcome {
            project_id,
            parts_removed: dropped.len(),
            rows_removed: dropped.iter().map(|d| d.1).sum::<u64>() + mem_hits.len() as u64,
            bytes_removed: dropped.iter().map(|d| d.2).sum(),
            requests_removed,
        };
        tracing::info!(?out, "project dropped");
        Ok(out)
    }

    /// Deletion requests, oldest first.
    pub fn requests(&self) -> Result<Vec<DeletionRequest>> {
        Ok(self.inner.current_version()?.manifest.requests.clone())
    }

    /// The published manifest.
    pub fn manifest(&self) -> Result<Manifest> {
        Ok(self.inner.current_version()?.manifest.clone())
    }

    /// Bulk ingests committed under a token and not yet resolved (bulk.rs).
    pub fn pending_ingests(&self) -> Result<Vec<crate::format::PendingIngest>> {
        Ok(self
            .inner
            .current_version()?
            .manifest
            .pending_ingests
            .clone())
    }

    /// Confirm (`true`) or void (`false`) the ingest pending under
    /// `token`: voiding removes its parts from the manifest at once.
    /// Returns whether such an ingest was pending.
    pub fn resolve_ingest(&self, token: &str, confirm: bool) -> Result<bool> {
        let mut tx = Transaction::begin(&self.inner)?;
        if !tx.resolve_pending_ingest(token, confirm) {
            return Ok(false);
        }
        tx.commit()?;
        tracing::info!(token, confirm, "pending ingest resolved");
        Ok(true)
    }

    /// Whether any event row (buffered or in a part) carries a person id.
    /// Reads only part footers (column statistics); a part without them
    /// counts as having some.
    pub fn has_person_ids(&self) -> Result<bool> {
        let snap = self.snapshot()?;
        for b in snap.memtable_batches(Table::Events) {
            if let Some(c) = b.column_by_name("person_id") {
                if c.null_count() < c.len() {
                    return Ok(true);
                }
            }
        }
        for p in snap.parts(Table::Events) {
            let md = crate::checksum::VerifiedPart::footer(self.storage(), p)?;
            let Ok(i) = md.schema().index_of("person_id") else {
                continue;
            };
            for rg in md.metadata().row_groups() {
                let nulls = rg
                    .columns()
                    .get(i)
                    .and_then(|c| c.statistics())
                    .and_then(|s| s.null_count_opt());
                if nulls.is_none_or(|n| n < rg.num_rows() as u64) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The identity of the metadata database bound to this store.
    pub fn metadata_id(&self) -> Result<Option<String>> {
        Ok(self.inner.current_version()?.manifest.metadata_id.clone())
    }

    /// Bind a metadata database to this store (see
    /// [`Manifest::metadata_id`]); `None` unbinds.
    pub fn set_metadata_id(&self, id: Option<&str>) -> Result<()> {
        let mut tx = Transaction::begin(&self.inner)?;
        tx.set_metadata_id(id.map(str::to_string));
        tx.commit()?;
        Ok(())
    }

    /// Wait until the store is ready for deletions, and return.
    ///
    /// [`Store::open`] returns once the data directory is recovered:
    /// appends, snapshots, queries and deletions work at once. `open`
    /// also starts building the in-memory distinct-id index on a
    /// background thread (from each part's `.runs` file, or its
    /// `distinct_id` and `_seq` columns: about 0.5 s at 10M events here);
    /// until it is built, deletions read the parts' `.runs` files instead
    /// (a few small reads per part of the project), and wait for the build
    /// only in a project with a part written before those files existed.
    /// This call waits for the build (or builds the index, if the
    /// background build failed), so that every later deletion uses it.
    /// Cheap once ready; a read-only store, or one opened without the
    /// in-memory index ([`StoreOptions::in_memory_index`]), is always
    /// ready. The same as opening with [`StoreOptions::wait_ready`].
    pub fn ready(&self) -> Result<()> {
        // Without the in-memory index there is nothing to wait for.
        if self.inner.writable().is_err() || !self.inner.opts.in_memory_index {
            return Ok(());
        }
        let mut tx = Transaction::begin(&self.inner)?;
        tx.index()?;
        Ok(())
    }

    /// A handle that does not keep the store open (see [`WeakStore`]).
    pub fn downgrade(&self) -> WeakStore {
        WeakStore {
            inner: Arc::downgrade(&self.inner),
            dir: self.inner.dir.clone(),
        }
    }

    /// Stop the background workers and drop this handle. The data
    /// directory is released when the last [`Store`] handle (this one and
    /// its clones, including those a persons layer holds) is gone; query
    /// sessions made by `elide-query` hold only [`WeakStore`]s, so they
    /// never keep it locked (their next scan fails with
    /// [`StoreError::Closed`]). Closing while other clones are alive logs
    /// a warning. Buffered rows stay in the ingest log and are replayed at
    /// the next open.
    pub fn close(self) -> Result<()> {
        if self.inner.storage.is_remote() && self.inner.writer_lease.is_some() {
            // On an object store the next writer may be on another
            // machine, which cannot replay this directory's log: its rows
            // go to the store now. (A failure leaves them in the log.)
            if let Err(e) = self.flush() {
                tracing::warn!(error = %e, "could not flush the ingest log's rows at close; they stay in the local log");
            }
        }
        self.inner.closing.store(true, Ordering::Release);
        stop_worker(&self.inner.compactor);
        stop_worker(&self.inner.flusher);
        // Counted once the workers are stopped (they hold the store while
        // they work); a scan that is running also counts.
        let others = Arc::strong_count(&self.inner) - 1;
        if others == 0 {
            // Nobody is left to use the index being built at open.
            self.inner.index_build.cancel();
        } else {
            tracing::warn!(
                dir = %self.inner.dir.display(),
                others,
                "store closed while other handles are alive: the directory stays locked until they are dropped"
            );
        }
        Ok(())
    }
}

impl Inner {
    /// Resolve one deletion request into `tx`: hide the rows of `ids`
    /// (sorted, unique, at most [`MAX_DELETE_IDS`]) of `project` below the
    /// cut-off in `tables`, in parts (through the distinct-id index) and
    /// in buffered rows, and record the request. Nothing is published
    /// until `tx` commits.
    fn resolve_deletion(
        &self,
        tx: &mut Transaction<'_>,
        kind: RequestKind,
        project: i64,
        ids: Vec<String>,
        tables: Vec<Table>,
        cutoff: Option<u64>,
    ) -> Result<DeleteOutcome> {
        let inner = self;
        let (cutoff, mem_hits) = self.cutoff_and_buffered(tx, cutoff, |m, cutoff, hits| {
            for t in &tables {
                for d in &ids {
                    m.find(*t, project, d, cutoff, hits);
                }
            }
            Ok(())
        })?;

        // Resolve part rows through the distinct-id index.
        let mut additions: BTreeMap<u64, Bitmap> = BTreeMap::new();
        let mut slow: Vec<(u64, u32, u32)> = Vec::new();
        // Parts holding rows of this request (hidden now or earlier).
        let mut holding: std::collections::BTreeSet<u64> = Default::default();
        {
            let live: std::collections::HashSet<u64> =
                tx.manifest().parts.iter().map(|p| p.id).collect();
            for p in tx.find_runs(project, &ids, &tables)? {
                if !live.contains(&p.part_id) || cutoff <= p.min_seq {
                    continue;
                }
                if cutoff > p.max_seq {
                    holding.insert(p.part_id);
                    additions
                        .entry(p.part_id)
                        .or_default()
                        .add_range(p.start..p.start + p.len);
                } else {
                    slow.push((p.part_id, p.start, p.len));
                }
            }
        }
        // Runs that straddle the cut-off: read the part's `_seq` column.
        let mut seq_cache: HashMap<u64, Vec<u64>> = HashMap::new();
        for (part_id, start, len) in slow {
            let i = tx
                .part_index(part_id)
                .ok_or_else(|| StoreError::Internal("part vanished".into()))?;
            if let std::collections::hash_map::Entry::Vacant(v) = seq_cache.entry(part_id) {
                v.insert(read_seqs(&inner.storage, &tx.manifest().parts[i])?);
            }
            let seqs = &seq_cache[&part_id];
            let run = seqs
                .get(start as usize..(start + len) as usize)
                .ok_or_else(|| {
                    StoreError::corrupt(&tx.manifest().parts[i].path, "run outside the part")
                })?;
            let below = run.partition_point(|s| *s < cutoff) as u32;
            if below > 0 {
                holding.insert(part_id);
                additions
                    .entry(part_id)
                    .or_default()
                    .add_range(start..start + below);
            }
        }
        let mut by_table = self.buffered_tables(&mem_hits)?;
        for (part_id, add) in additions {
            let new = match tx.bitmap(part_id) {
                Some(old) => old.or(&add),
                None => add,
            };
            let before = tx.bitmap(part_id).map_or(0, |b| b.cardinality());
            let gained = new.cardinality() - before;
            if gained > 0 {
                if let Some(t) = tx.part_table(part_id) {
                    *by_table.entry(t).or_default() += gained;
                }
                tx.set_bitmap(part_id, new);
            }
        }
        let rows_hidden = by_table.values().sum();
        let mut request = self.new_request(tx, kind, project, tables, cutoff);
        request.distinct_ids = ids;
        request.rows_hidden = rows_hidden;
        request.rows_hidden_by_table = by_table;
        request.parts = holding.into_iter().collect();
        let purge_due_by_us = request.purge_due_by_us;
        let request_id = tx.add_request(request);
        tx.hide_mem_rows(&mem_hits);
        Ok(DeleteOutcome {
            request_id,
            rows_hidden,
            cutoff,
            purge_due_by_us,
            logical: false,
            undo_until_us: None,
        })
    }
}

impl Inner {
    /// Under the state lock: the cut-off of a deletion (`cutoff`, or
    /// everything appended so far; never above it) and the `_seq`s of the
    /// buffered rows `find` reports below it that nothing hides yet (nor
    /// an earlier request of `tx`).
    pub(crate) fn cutoff_and_buffered(
        &self,
        tx: &Transaction<'_>,
        cutoff: Option<u64>,
        mut find: impl FnMut(&Memtable, u64, &mut Vec<u64>) -> Result<()>,
    ) -> Result<(u64, Vec<u64>)> {
        let st = self.state.lock().map_err(poisoned)?;
        if let Some(f) = &st.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        let cutoff = cutoff.unwrap_or(st.next_seq);
        if cutoff > st.next_seq {
            return Err(StoreError::InvalidInput(format!(
                "cut-off {cutoff} is above the next sequence number {}; a deletion cannot cover rows not yet appended",
                st.next_seq
            )));
        }
        let mut hits = Vec::new();
        for m in st.memtables() {
            find(m, cutoff, &mut hits)?;
        }
        hits.retain(|s| !st.mem_deleted.contains(*s) && !tx.hides_mem_row(*s));
        Ok((cutoff, hits))
    }

    /// The tables of buffered rows by `_seq` (each counted once per
    /// table).
    pub(crate) fn buffered_tables(&self, seqs: &[u64]) -> Result<BTreeMap<Table, u64>> {
        let mut out = BTreeMap::new();
        if seqs.is_empty() {
            return Ok(out);
        }
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        let st = self.state.lock().map_err(poisoned)?;
        let mut chunks: Vec<&Chunk> = st
            .memtables()
            .flat_map(|m| m.chunks.iter().map(|c| &**c))
            .collect();
        chunks.sort_by_key(|c| c.seq_start);
        let mut i = 0;
        for s in sorted {
            while i < chunks.len() && chunks[i].seq_end() <= s {
                i += 1;
            }
            match chunks.get(i) {
                Some(c) if c.seq_start <= s => *out.entry(c.table).or_default() += 1,
                _ => {
                    return Err(StoreError::Internal(format!(
                        "buffered row {s} is in no memtable chunk"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// A pending request of `kind` created now, due by the project's
    /// erasure deadline; the caller fills in what it covers.
    pub(crate) fn new_request(
        &self,
        tx: &Transaction<'_>,
        kind: RequestKind,
        project: i64,
        tables: Vec<Table>,
        cutoff: u64,
    ) -> DeletionRequest {
        let now = now_us();
        let due = crate::lifecycle::due_by(
            tx.manifest(),
            project,
            now,
            self.policy.options().max_pending_age,
        );
        DeletionRequest::new(kind, project, tables, cutoff, now, due)
    }
}

/// Project ids are never negative.
pub(crate) fn check_project(project: i64) -> Result<()> {
    if project < 0 {
        return Err(StoreError::InvalidInput(format!(
            "project ids are never negative, got {project}"
        )));
    }
    Ok(())
}

/// Check a [`DeleteSpec`]: (project, sorted unique ids, sorted tables).
/// The number of ids is not limited here.
fn validate_spec(spec: &DeleteSpec) -> Result<(i64, Vec<String>, Vec<Table>)> {
    let mut ids: Vec<String> = spec.distinct_ids.clone();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(StoreError::InvalidInput(
            "a deletion needs at least one distinct id".into(),
        ));
    }
    if ids.iter().any(|d| d.is_empty()) {
        return Err(StoreError::InvalidInput(
            "distinct ids must not be empty".into(),
        ));
    }
    check_project(spec.project_id)?;
    if spec.kind == RequestKind::Events {
        return Err(StoreError::InvalidInput(
            "a deletion of events by predicate goes through delete_events".into(),
        ));
    }
    let tables: Vec<Table> = if spec.tables.is_empty() {
        Table::ALL.to_vec()
    } else {
        let mut t = spec.tables.clone();
        t.sort();
        t.dedup();
        t
    };
    Ok((spec.project_id, ids, tables))
}

impl Inner {
    pub(crate) fn current_version(&self) -> Result<Arc<Version>> {
        Ok(Arc::clone(&self.state.lock().map_err(poisoned)?.version))
    }

    pub(crate) fn mem_deleted(&self) -> Result<Arc<Treemap>> {
        Ok(Arc::clone(
            &self.state.lock().map_err(poisoned)?.mem_deleted,
        ))
    }

    pub(crate) fn next_seq(&self) -> Result<u64> {
        Ok(self.state.lock().map_err(poisoned)?.next_seq)
    }

    /// The `_seq` of the oldest row still only in the ingest log (in a
    /// memtable), or `next_seq` when none is: every logged row below it is
    /// in a committed part.
    pub(crate) fn oldest_unflushed_seq(&self) -> Result<u64> {
        let st = self.state.lock().map_err(poisoned)?;
        Ok(st
            .memtables()
            .filter_map(|m| m.chunks.first().map(|c| c.seq_start))
            .min()
            .unwrap_or(st.next_seq))
    }

    pub(crate) fn alloc_file_id(&self) -> u64 {
        self.file_ids.fetch_add(1, Ordering::AcqRel)
    }

    pub(crate) fn peek_file_id(&self) -> u64 {
        self.file_ids.load(Ordering::Acquire)
    }

    /// Swap in a committed version (the commit's publication step).
    pub(crate) fn publish(
        &self,
        version: Arc<Version>,
        hide: &Treemap,
        flushed_memtable: Option<u64>,
    ) -> Result<()> {
        let mut st = self.state.lock().map_err(poisoned)?;
        let flushed_seq = version.manifest.flushed_seq;
        self.gc.note_version(version.manifest.version);
        st.version = version;
        if !hide.is_empty() {
            Arc::make_mut(&mut st.mem_deleted).or_inplace(hide);
        }
        if let Some(id) = flushed_memtable {
            match st.frozen.front() {
                Some(m) if m.id == id => {
                    st.frozen.pop_front();
                }
                _ => {
                    return Err(StoreError::Internal(format!(
                        "flushed memtable {id} is not the oldest frozen one"
                    )))
                }
            }
            if st.mem_deleted.minimum().is_some_and(|m| m < flushed_seq) {
                Arc::make_mut(&mut st.mem_deleted).remove_range(..flushed_seq);
            }
        }
        drop(st);
        self.flushed.notify_all();
        Ok(())
    }

    fn freeze_locked(&self, st: &mut MutexGuard<'_, State>) -> Result<()> {
        if st.active.rows == 0 {
            return Ok(());
        }
        let seg = st.next_wal_segment;
        if let Err(e) = self.wal()?.rotate(seg) {
            st.failed = Some(format!("ingest log rotation failed: {e}"));
            return Err(e);
        }
        st.next_wal_segment += 1;
        let id = st.next_memtable_id;
        st.next_memtable_id += 1;
        let next_seq = st.next_seq;
        let old = std::mem::replace(&mut st.active, Memtable::new(id, next_seq, Some(seg)));
        st.frozen.push_back(Arc::new(old));
        Ok(())
    }

    /// The flush lock: held, no flush is in flight.
    pub(crate) fn flush_lock(&self) -> &Mutex<()> {
        &self.flush_lock
    }

    /// Wake the background compaction worker (if any) now.
    pub(crate) fn wake_compactor(&self) {
        if let Ok(f) = self.compactor.lock() {
            if let Some((tx, _)) = &*f {
                let _ = tx.send(FlushMsg::Wake);
            }
        }
    }

    fn wake_flusher(&self) {
        if let Ok(f) = self.flusher.lock() {
            if let Some((tx, _)) = &*f {
                let _ = tx.send(FlushMsg::Wake);
            }
        }
    }

    /// Freeze the active memtable and flush everything buffered.
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.writable()?;
        let f = self.flush_lock.lock().map_err(poisoned)?;
        self.freeze_for_flush()?;
        self.flush_frozen_locked(&f)
    }

    fn freeze_for_flush(&self) -> Result<()> {
        let mut st = self.state.lock().map_err(poisoned)?;
        if let Some(f) = &st.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        self.freeze_locked(&mut st)
    }

    /// The current version, registered with GC: its files stay on disk
    /// while the guard lives.
    pub(crate) fn pinned_version(&self) -> Result<(Arc<Version>, LiveGuard)> {
        let st = self.state.lock().map_err(poisoned)?;
        let guard = self.gc.register(st.version.manifest.version);
        Ok((Arc::clone(&st.version), guard))
    }

    /// Remove ingest-log segments no memtable references (their rows are
    /// in committed parts; a failed removal after a flush leaves them).
    pub(crate) fn sweep_wal(&self) -> Result<usize> {
        let st = self.state.lock().map_err(poisoned)?;
        let live: std::collections::HashSet<u64> = st
            .memtables()
            .flat_map(|m| m.wal_segments.iter().copied())
            .collect();
        let stale: Vec<u64> = wal::list_segments(&self.wal_dir)?
            .into_iter()
            .filter(|s| !live.contains(s))
            .collect();
        self.gc
            .remove_wal_segments(&*self.opts.fs, &self.wal_dir, &stale)?;
        Ok(stale.len())
    }

    /// Flush every frozen memtable, oldest first.
    pub(crate) fn flush_frozen(&self) -> Result<()> {
        let f = self.flush_lock.lock().map_err(poisoned)?;
        self.flush_frozen_locked(&f)
    }

    /// [`Inner::flush_frozen`] with the flush lock already held.
    pub(crate) fn flush_frozen_locked(&self, _flush_lock: &MutexGuard<'_, ()>) -> Result<()> {
        loop {
            // The hidden rows and the next request id are read together:
            // requests published later hide rows only through `mem_deleted`
            // changes this flush's commit sees as late.
            let (mem, deleted, first_late_request) = {
                let st = self.state.lock().map_err(poisoned)?;
                match st.frozen.front() {
                    None => return Ok(()),
                    Some(m) => (
                        Arc::clone(m),
                        Arc::clone(&st.mem_deleted),
                        st.version.manifest.next_request_id,
                    ),
                }
            };
            let started = std::time::Instant::now();
            let parts = write_parts(
                &self.storage,
                &self.opts.part,
                &mem.chunks,
                &deleted,
                &mut || self.alloc_file_id(),
            )?;
            crate::failpoint!("flush::after_write_parts");
            let metas: Vec<&PartMeta> = parts.iter().map(|p| &p.meta).collect();
            self.storage.sync_parts(&metas)?;
            let n_parts = parts.len();
            let mut tx = Transaction::begin(self)?;
            tx.add_flushed(&mem, parts, &deleted, first_late_request)?;
            tx.commit()?;
            tracing::debug!(
                rows = mem.rows,
                parts = n_parts,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "flushed memtable"
            );
        }
    }
}

/// How many part files queries are reading right now, and when the last
/// read ended, shared by a store and the readers its snapshots hand out.
/// A [`ScanGuard`] counts one file while it lives.
///
/// A query reads its files one after another on each of its threads, and
/// back-to-back queries leave a gap of a few milliseconds between them
/// (planning): the count drops to zero for such moments while queries are
/// still running. [`ScanActivity::busy`] therefore also counts the
/// moments shortly after a read ended.
#[derive(Debug, Clone)]
pub struct ScanActivity(Arc<ScanCounts>);

#[derive(Debug)]
struct ScanCounts {
    active: std::sync::atomic::AtomicUsize,
    /// When the last read ended, in nanoseconds after `epoch` (0: never).
    last_end_ns: AtomicU64,
    epoch: Instant,
}

impl ScanCounts {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for ScanActivity {
    fn default() -> Self {
        ScanActivity(Arc::new(ScanCounts {
            active: Default::default(),
            last_end_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }
}

impl ScanActivity {
    /// Count a file being read until the guard is dropped.
    pub fn guard(&self) -> ScanGuard {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        ScanGuard(Arc::clone(&self.0))
    }

    /// Files being read now.
    pub fn active(&self) -> usize {
        self.0.active.load(Ordering::Acquire)
    }

    /// Whether a file is being read now or the last read ended less than
    /// `quiet` ago.
    pub fn busy(&self, quiet: Duration) -> bool {
        if self.active() > 0 {
            return true;
        }
        match self.0.last_end_ns.load(Ordering::Acquire) {
            0 => false,
            end => Duration::from_nanos(self.0.now_ns().saturating_sub(end)) < quiet,
        }
    }
}

/// One part file being read (see [`ScanActivity`]).
#[derive(Debug)]
pub struct ScanGuard(Arc<ScanCounts>);

impl Drop for ScanGuard {
    fn drop(&mut self) {
        // The end first: whoever then sees no file being read sees it
        // (the latest of the ends when guards are dropped together).
        let now = self.0.now_ns().max(1);
        self.0.last_end_ns.fetch_max(now, Ordering::AcqRel);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        self.index_build.cancel();
        stop_worker(&self.compactor);
        stop_worker(&self.flusher);
    }
}
