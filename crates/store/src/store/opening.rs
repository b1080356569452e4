//! Opening a store: [`Store::open`] (the writer: lock, recovery,
//! background workers) and [`Store::open_read_only`] (a reader beside a
//! writer in another process). What is found on disk and what is refused
//! is `crate::open`'s.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::{read_log, Inner, State, Store, StoreOptions};
use crate::error::{Result, StoreError};
use crate::format::Manifest;
use crate::gc::Gc;
use crate::lease::Lease;
use crate::lock::DirLock;
use crate::open;
use crate::policy::CompactionPolicy;
use crate::storage::Storage;
use crate::wal::{self, Wal};
use crate::worker::{compactor_loop, flusher_loop, spawn_worker, start_index_build, FlushMsg};

/// How far past every id it can see a writer that opens a store on an
/// object store starts handing out file ids: more than a writer before
/// it can have handed out and not yet written.
const TAKEOVER_FILE_ID_GAP: u64 = 1 << 32;

/// On an object store, the writer that committed `m` when it is another
/// local directory's than `dir`'s and `dir`'s ingest log holds records:
/// a reader must not replay them (the writer refuses them too).
fn foreign_log(
    storage: &Storage,
    dir: &Path,
    m: &Manifest,
    segments: &[(u64, Vec<wal::WalRecord>)],
) -> Option<String> {
    let other = m.writer_id.as_deref().filter(|_| storage.is_remote())?;
    if segments.iter().all(|(_, r)| r.is_empty()) {
        return None;
    }
    let ours = std::fs::read_to_string(dir.join(crate::location::WRITER_ID_FILE)).ok();
    (ours.as_deref().map(str::trim) != Some(other)).then(|| other.to_string())
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
        // A writer taking over an object store from another directory's
        // (or from one that never committed) commits once, naming itself,
        // before it logs anything (`Inner::take_over`): a crash before its
        // first flush must not leave a log that looks like one written
        // before another writer committed (refused above).
        let take_over =
            from_disk && storage.is_remote() && manifest.writer_id.as_deref() != Some(&writer_id);
        let tombstones = open::load_tombstones(&storage, &manifest)?;
        crate::receipt::restrict_local_key(&storage);
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
                manifest.next_file_id = manifest.next_file_id.max(id.saturating_add(1));
            }
            if storage.local_root().is_none() {
                // On an object store the writer before this one may not
                // have stopped (a paused process whose lease lapsed): ids
                // it handed out but has not written yet are in no listing.
                // Starting far past them, no file of this writer's can
                // share a path with one of that writer's, whose failed
                // write would then remove this writer's file.
                manifest.next_file_id = manifest
                    .next_file_id
                    .checked_add(TAKEOVER_FILE_ID_GAP)
                    .ok_or_else(|| {
                        StoreError::corrupt(
                            "manifest",
                            format!(
                                "next_file_id {} leaves no room for new files",
                                manifest.next_file_id
                            ),
                        )
                    })?;
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
        inner
            .take_over
            .store(take_over, std::sync::atomic::Ordering::Release);
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
                    let segments = match foreign_log(&storage, &dir, &m, &segments) {
                        Some(other) => {
                            // As the writer would refuse it (`Diverged`):
                            // its deletions' cut-offs do not cover these
                            // rows, so showing them could show deleted ones.
                            tracing::warn!(writer = %other, log = %wal_dir.display(), "this directory's ingest log was written before another directory's writer committed; its rows are not shown");
                            Vec::new()
                        }
                        None => segments,
                    };
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
}
