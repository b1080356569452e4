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
//!
//! This module holds the store's state (`Inner`, `State`, [`Version`])
//! and the append path; the rest is split by responsibility:
//! `opening` ([`Store::open`], [`Store::open_read_only`]), `flush` (a
//! frozen memtable written as parts), `delete` (deletion by distinct id,
//! project drops, and the request resolution every deletion shares),
//! `options` ([`StoreOptions`]) and `scans` ([`ScanActivity`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use croaring::{Bitmap, Treemap};

use crate::commit::{CommitState, Transaction};
use crate::error::{Result, StoreError};
use crate::format::{DeletionRequest, Manifest};
use crate::gc::Gc;
use crate::index::BackgroundBuild;
use crate::lease::Lease;
use crate::lock::DirLock;
use crate::memtable::{Chunk, Memtable};
use crate::normalize::{normalize, NormalizedBatch};
use crate::open;
use crate::policy::CompactionPolicy;
use crate::schema::Table;
use crate::storage::Storage;
use crate::wal::{self, Wal};
use crate::worker::{stop_worker, Worker};

mod delete;
mod flush;
mod opening;
mod options;
mod scans;

pub(crate) use delete::{add_hidden_request, check_project};
pub use delete::{DeleteOutcome, DeleteSpec, DropOutcome, MAX_DELETE_IDS};
pub use options::{StoreOptions, COMPACTOR_POLL};
pub use scans::{ScanActivity, ScanGuard};

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
            take_over: std::sync::atomic::AtomicBool::new(false),
            take_over_lock: Mutex::new(()),
        }
    }

    /// Before the first row this writer logs on an object store another
    /// directory's writer committed to last: commit a version naming this
    /// writer (`writer_id`), so that its log, should it crash before its
    /// first flush, is not taken for one written before another writer
    /// committed (and refused as `Diverged`). Lazy: a writer that never
    /// appends (an export) commits nothing, and so leaves the last
    /// writer's own log replayable. Every other commit names the writer
    /// anyway.
    fn take_over(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if !self.take_over.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.take_over_lock.lock().map_err(poisoned)?;
        if !self.take_over.load(Ordering::Acquire) {
            return Ok(());
        }
        let named =
            self.current_version()?.manifest.writer_id.as_deref() == Some(self.writer_id.as_str());
        if !named {
            let v = crate::commit::Transaction::begin(self)?.commit()?;
            tracing::info!(version = v.manifest.version, writer = %self.writer_id, "took over the object store's writes");
        }
        self.take_over.store(false, Ordering::Release);
        Ok(())
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
    /// On an object store another directory's writer (or none) committed
    /// last: the first append commits a version naming this writer before
    /// it is logged ([`Inner::take_over`]). Set at open.
    pub take_over: std::sync::atomic::AtomicBool,
    /// Serializes [`Inner::take_over`]'s commit among appends.
    take_over_lock: Mutex<()>,
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

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(crate) fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("a store lock is poisoned (a thread panicked)".into())
}

impl Store {
    /// Whether this store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.wal.is_none()
    }

    /// Why this handle refuses writes until the store is reopened, if it
    /// does: a write to the ingest log failed, or a commit's outcome is
    /// unknown (its manifest may be on disk). Reads go on; a server should
    /// report itself not ready and be restarted.
    pub fn write_failure(&self) -> Option<String> {
        self.inner.state.lock().ok()?.failed.clone()
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

    /// How this store writes its parts.
    pub fn part_options(&self) -> &crate::part::PartWriterOptions {
        &self.inner.opts.part
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
        if rows > 0 {
            inner.take_over()?;
        }
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
        // `_seq`s are never reused: a store at the end of them (a damaged
        // manifest or log could claim it) takes no more rows.
        let seq_end = seq_start.checked_add(rows).ok_or_else(|| {
            StoreError::Internal(format!(
                "_seq would pass 2^64 ({seq_start} + {rows} rows): the store takes no more rows"
            ))
        })?;
        let batch = n.finish(seq_start, now_us())?;
        let buffer = std::mem::take(&mut st.wal_buffer);
        let mut record = wal::encode_record_into(buffer, n.table, seq_start, &batch)?;
        let written = inner.wal()?.write(&mut record, seq_end);
        st.wal_buffer = record.into_buffer();
        let lsn = match written {
            Ok(l) => l,
            Err(e) => {
                st.failed = Some(format!("ingest log write failed: {e}"));
                return Err(e);
            }
        };
        st.next_seq = seq_end;
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
        Ok(Appended { seq_start, seq_end })
    }

    /// Write every buffered row into parts and commit; afterwards the ingest
    /// log holds nothing.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    /// Deletion requests, oldest first.
    pub fn requests(&self) -> Result<Vec<DeletionRequest>> {
        Ok(self.inner.current_version()?.manifest.requests.clone())
    }

    /// A `_seq` above every row acknowledged before the call (an append
    /// that returned: durable in the ingest log; a committed ingest) that
    /// a reopened store never hands out again: the larger of the logged
    /// rows' end and the published manifest's `next_seq`. Unlike the
    /// in-memory next `_seq`, which also counts `_seq`s reserved by bulk
    /// ingests that may never commit and restarts lower after a crash, it
    /// is a cut-off ([`DeleteSpec::cutoff`]) for "the rows so far" that
    /// rows appended after a restart stay above.
    pub fn acknowledged_seq(&self) -> Result<u64> {
        let durable = self
            .inner
            .durable_seq
            .load(std::sync::atomic::Ordering::Acquire);
        Ok(durable.max(self.inner.current_version()?.manifest.next_seq))
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
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        self.index_build.cancel();
        stop_worker(&self.compactor);
        stop_worker(&self.flusher);
    }
}
