//! The one commit path. Every change of state — an ingest flush, a deletion,
//! (later) a compaction swap, a project drop — builds a [`Transaction`] and
//! ends in [`Transaction::commit`]; nothing else writes a manifest.
//!
//! ```text
//!  begin()                     take the commit lock; base = current version
//!   │  op-specific changes      new parts, new bitmaps, requests, flushed_seq
//!   ▼
//!  commit()
//!   1. write the tombstone file (one file, one bitmap per changed part); fsync
//!   2. write manifest version base+1 (create-only); fsync file and directory
//!      ── the commit point: a crash before it leaves the base version, after
//!         it the new one; files of a crashed commit are swept at open
//!   3. publish: under the state lock, swap the version, hide memtable rows,
//!      drop the flushed memtable — one step, so snapshots see all or nothing
//!   4. retire what the new version no longer references; GC
//! ```
//!
//! Commits are serialized by the commit lock. Lock order: commit lock, then
//! state lock; never the reverse.
//!
//! Besides the operation's own changes, every commit applies three rules:
//!
//! * a part whose rows are all deleted leaves the manifest (its file is
//!   retired, so a deletion of a whole part is physical at once);
//! * a part that leaves the manifest leaves each deletion request's `parts`
//!   list and its path joins the request's `awaiting_removal` (the
//!   lifecycle then waits until the file is gone);
//! * every file the base version referenced, or this transaction wrote,
//!   that the new version does not reference is retired to GC.
//!
//! ## Conflict matrix
//!
//! Append, delete and drop are atomic under locks; flush, purge and merge
//! read and write for a while *before* taking the commit lock, so the
//! question for each pair is what happens when the other operation commits
//! while they are in flight. "Compaction" is purge or merge.
//!
//! | in flight ↓ / commits meanwhile → | append | delete | flush | compaction | drop | GC |
//! |---|---|---|---|---|---|---|
//! | **append** (state lock) | ordered by `_seq` | cut-off read under the state lock: later rows are never hidden | goes to the new memtable | never touches memtables | rows below the drop's cut-off are hidden; later rows start the project anew | ingest log removed only after its rows are in committed parts |
//! | **delete** (commit lock) | see append | serialized | see flush | see compaction | serialized; a drop removes the request | superseded tombstone files removed after the snapshots that read them |
//! | **flush** | — | rows hidden after the parts were written are remapped onto them through `_seq`; the requests published meanwhile that hid some of them list the new parts | flush lock | disjoint parts: flush adds, compaction replaces what it read | drop holds the flush lock: no flush is in flight | parts are not retired before they are committed; the log after |
//! | **compaction** | — | deletes committed between the read and the swap are carried onto the output through the old→new row map; the requests published meanwhile that hid some of them list the output; never aborts | see flush | compaction lock (one at a time); the swap re-checks its inputs | the swap finds its inputs gone and is abandoned; the output is discarded through GC | inputs stay on disk: the rewrite holds a registered snapshot |
//! | **drop** (flush + commit lock) | see append | serialized | excluded by the flush lock | see compaction | serialized | files retired, removed after older snapshots |
//! | **GC** | — | — | — | — | — | one pass at a time per file list; removing a missing file is not an error |
//!
//! Queries read a snapshot (a published version registered with GC) and
//! are unaffected by any of these. `tests/it/conflicts.rs` (store crate)
//! runs each pair.
//!
//! Here: the transaction, its rules and its commit; the operations'
//! own changes (requests, parts, bitmaps, a flush's or a bulk ingest's
//! rows) are in `commit/changes.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

use croaring::{Bitmap, Treemap};

use crate::error::{Result, StoreError};
use crate::format::{
    encode_manifest, encode_tombstones, manifest_path, tombstone_path, Manifest, TombstoneRef,
};
use crate::index::{DistinctIdIndex, Posting};
use crate::part::{read_postings, WrittenPart};
use crate::schema::Table;
use crate::store::{now_us, Inner, Version};

mod changes;

/// State guarded by the commit lock.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    /// The distinct-id index once a deletion (or an empty store at open)
    /// has installed it; from then on every commit that adds parts adds
    /// their runs, and every commit that removes parts marks them dead.
    pub index: Option<DistinctIdIndex>,
    /// Project drops of this process as (project, `next_seq` at the drop),
    /// for bulk ingests in flight across them (bulk.rs). Pruned when no
    /// reservation is older than an entry.
    pub drops: Vec<(i64, u64)>,
    /// Set when a commit failed after its manifest may have been
    /// published: every later commit is refused until the store is
    /// reopened (its base would no longer be the last version).
    pub failed: Option<String>,
}

/// The runs of a bulk ingest's parts in an index of their own, merged
/// into the store's index at the commit instead of adding those parts'
/// runs one by one (one map operation per distinct id, not per run).
struct StagedRuns {
    index: DistinctIdIndex,
    /// The parts whose runs `index` holds.
    parts: HashSet<u64>,
    /// Those of them the commit leaves out (their project was dropped).
    left_out: Vec<u64>,
}

struct FlushPublish {
    memtable_id: u64,
    wal_segments: Vec<u64>,
}

/// A change of state being built under the commit lock.
pub(crate) struct Transaction<'a> {
    inner: &'a Inner,
    guard: MutexGuard<'a, CommitState>,
    base: Arc<Version>,
    /// The manifest being built. Private: every change goes through one of
    /// the typed edits below, and [`Transaction::commit`] checks the
    /// result's invariants ([`Manifest::check_invariants`]) in debug builds.
    manifest: Manifest,
    changed: BTreeMap<u64, Bitmap>,
    mem_hide: Treemap,
    flush: Option<FlushPublish>,
    /// Parts written by this transaction's operation (flush or compaction).
    added: Vec<WrittenPart>,
    part_pos: Option<HashMap<u64, usize>>,
    /// Files written for this transaction that it does not publish.
    extra_retired: Vec<String>,
    /// A bulk ingest's runs, already in an index of their own (bulk.rs).
    staged: Option<StagedRuns>,
    /// Part id -> the parts this transaction wrote in its place (a purge's
    /// or merge's output), for the receipts of the requests it erases.
    replaced_by: HashMap<u64, Vec<u64>>,
    /// A project drop this transaction records (project, first `_seq`
    /// after it), which bulk ingests in flight must honour: it joins
    /// the commit state's drops only once the manifest is published, so
    /// a drop whose commit failed never leaves out an ingest's rows.
    drop_noted: Option<(i64, u64)>,
}

/// `Err(Unavailable)` once a commit with an unknown outcome made the
/// store refuse commits until it is reopened (what
/// [`Transaction::begin`] would say; the commit lock is released at
/// once).
pub(crate) fn commits_allowed(inner: &Inner) -> Result<()> {
    let guard = inner
        .commit
        .lock()
        .map_err(|_| StoreError::Internal("commit lock poisoned".into()))?;
    match &guard.failed {
        Some(f) => Err(StoreError::Unavailable(f.clone())),
        None => Ok(()),
    }
}

impl<'a> Transaction<'a> {
    /// The error of a commit that certainly published nothing: the
    /// tombstone file it wrote is removed, and a writer whose object-store
    /// lease another writer took refuses writes until it is reopened
    /// (its appends would otherwise go on into a log no commit can flush).
    fn not_published(&mut self, e: StoreError, tomb_written: &Option<String>) -> StoreError {
        if let Some(path) = tomb_written {
            self.inner.gc.discard(&self.inner.storage, path);
        }
        if let Some(why) = self.inner.writer_lease.as_ref().and_then(|l| l.lost()) {
            self.refuse_until_reopen(why);
        }
        e
    }

    /// The error of a commit whose manifest was published but whose
    /// in-memory state did not follow: `OutcomeUnknown` (its files are
    /// referenced), and the store refuses writes until it is reopened.
    fn published_but(&mut self, version: u64, e: StoreError) -> StoreError {
        let why =
            format!("manifest version {version} was published but its commit failed ({e}); reopen the store");
        self.refuse_until_reopen(why.clone());
        StoreError::OutcomeUnknown(why)
    }

    /// Refuse every later commit until the store is reopened, and every
    /// append too: rows appended now could never be flushed, and a writer
    /// waiting for the flusher to make room would wait for ever. Logged.
    fn refuse_until_reopen(&mut self, why: String) {
        tracing::error!(%why, "the store refuses commits until it is reopened");
        if let Ok(mut st) = self.inner.state.lock() {
            st.failed.get_or_insert_with(|| why.clone());
        }
        self.inner.flushed.notify_all();
        self.guard.failed = Some(why);
    }

    pub fn begin(inner: &'a Inner) -> Result<Self> {
        inner.writable()?;
        let guard = inner
            .commit
            .lock()
            .map_err(|_| StoreError::Internal("commit lock poisoned".into()))?;
        if let Some(f) = &guard.failed {
            return Err(StoreError::Unavailable(f.clone()));
        }
        let base = inner.current_version()?;
        let manifest = base.manifest.clone();
        Ok(Transaction {
            inner,
            guard,
            base,
            manifest,
            changed: BTreeMap::new(),
            mem_hide: Treemap::new(),
            flush: None,
            added: Vec::new(),
            part_pos: None,
            extra_retired: Vec::new(),
            staged: None,
            replaced_by: HashMap::new(),
            drop_noted: None,
        })
    }

    /// The manifest as this transaction has changed it so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Remove fully deleted parts, move parts that left the manifest from
    /// the requests' lists to their `awaiting_removal`. Returns the ids of
    /// the parts that left.
    fn apply_rules(&mut self) -> HashSet<u64> {
        let rows: HashMap<u64, u64> = if self.changed.is_empty() {
            HashMap::new()
        } else {
            self.manifest.parts.iter().map(|p| (p.id, p.rows)).collect()
        };
        let full: Vec<u64> = self
            .changed
            .iter()
            .filter(|(id, b)| rows.get(id).is_some_and(|r| b.cardinality() >= *r))
            .map(|(id, _)| *id)
            .collect();
        for id in full {
            tracing::debug!(part = id, "every row of the part is deleted; removing it");
            self.remove_part(id);
        }
        let live: HashSet<u64> = self.manifest.parts.iter().map(|p| p.id).collect();
        for pi in &mut self.manifest.pending_ingests {
            pi.parts.retain(|id| live.contains(id));
        }
        let mut metas: HashMap<u64, &crate::format::PartMeta> = HashMap::new();
        for p in &self.base.manifest.parts {
            metas.insert(p.id, p);
        }
        for p in &self.added {
            metas.insert(p.meta.id, &p.meta);
        }
        let gone: HashSet<u64> = metas
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        // What replaced a part that left: the output of the rewrite that
        // read it (recorded by `record_replacement`), if still live; none
        // for a part dropped whole.
        let file = |p: &crate::format::PartMeta| crate::receipt::FileHash {
            path: p.path.clone(),
            blake3: p.blake3.clone(),
            size: p.size,
        };
        for r in &mut self.manifest.requests {
            r.parts.retain(|id| {
                if !gone.contains(id) {
                    return true;
                }
                if let Some(p) = metas.get(id) {
                    // The parquet file and its `.runs` file (which holds
                    // the distinct ids): the request waits for both.
                    for f in p.files() {
                        if !r.awaiting_removal.contains(&f) {
                            r.awaiting_removal.push(f);
                        }
                    }
                    let outputs = self.replaced_by.get(id);
                    let replaced_by = self
                        .added
                        .iter()
                        .map(|a| &a.meta)
                        .filter(|a| {
                            live.contains(&a.id) && outputs.is_some_and(|o| o.contains(&a.id))
                        })
                        .map(file)
                        .collect();
                    r.erased_files.push(crate::receipt::ErasedFile {
                        file: file(p),
                        replaced_by,
                    });
                }
                false
            });
        }
        gone
    }

    /// Everything of [`Transaction::commit`] before the manifest is
    /// published: the tombstone file (its path in `tomb_written` once
    /// written), the new manifest's bytes and the files it retires. An
    /// error here means nothing was published.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &mut self,
        gone: &HashSet<u64>,
        tomb_written: &mut Option<String>,
    ) -> Result<(u64, Vec<u8>, String, HashMap<u64, Arc<Bitmap>>, Vec<String>)> {
        let inner = self.inner;
        // Rows below the oldest buffered row (or below `next_seq` when
        // nothing is buffered) are all in parts: bulk ingests write theirs
        // directly, so `flushed_seq` also moves without a flush.
        self.manifest.flushed_seq = self.manifest.flushed_seq.max(inner.oldest_unflushed_seq()?);
        let flushed = self.manifest.flushed_seq;
        self.manifest.dropped.retain(|d| d.cutoff_seq > flushed);
        let mut tombstones = self.base.tombstones.clone();
        tombstones.retain(|id, _| !gone.contains(id));
        if !self.changed.is_empty() {
            let file_id = inner.alloc_file_id();
            let path = tombstone_path(file_id);
            // A deleted person's rows are contiguous in a part, but a
            // container begun with a one-row run stays an array container
            // as more runs are added: made runs here, a tombstone is
            // smaller and a scan reads its runs without walking each
            // position (access::selection).
            for bitmap in self.changed.values_mut() {
                bitmap.run_optimize();
            }
            let refs: BTreeMap<u64, &Bitmap> = self.changed.iter().map(|(k, v)| (*k, v)).collect();
            inner
                .storage
                .put_new(&path, encode_tombstones(&refs).into())?;
            *tomb_written = Some(path.clone());
            crate::failpoint!("commit::after_tombstones");
            let changed = std::mem::take(&mut self.changed);
            for (part_id, bitmap) in changed {
                let i = self.part_index(part_id).ok_or_else(|| {
                    StoreError::Internal(format!("tombstone for unknown part {part_id}"))
                })?;
                self.manifest.parts[i].tombstone = Some(TombstoneRef {
                    file_id,
                    path: path.clone(),
                    deleted: bitmap.cardinality(),
                });
                tombstones.insert(part_id, Arc::new(bitmap));
            }
        }
        let version = self.base.manifest.version + 1;
        self.manifest.version = version;
        self.manifest.committed_at_us = now_us();
        self.manifest.next_file_id = self.manifest.next_file_id.max(inner.peek_file_id());
        self.manifest.next_seq = self.manifest.next_seq.max(inner.next_seq()?);
        debug_assert_eq!(self.manifest.check_invariants(), Ok(()));
        let retired: Vec<String> = {
            let new_refs = self.manifest.referenced_paths();
            let old: BTreeSet<String> = self
                .base
                .manifest
                .referenced_paths()
                .into_iter()
                .chain(self.added.iter().flat_map(|p| p.meta.files()))
                .collect();
            let mut r: Vec<String> = old.into_iter().filter(|p| !new_refs.contains(p)).collect();
            r.append(&mut self.extra_retired);
            r.push(manifest_path(self.base.manifest.version));
            r
        };
        if inner.storage.is_remote() {
            // The retention window of an object store's GC runs from
            // here, durably: a later process (a one-shot command) removes
            // them when it is over (gc.rs).
            self.manifest.retired = crate::gc::carry_retired(
                &self.base.manifest.retired,
                &retired,
                &self.manifest.referenced_paths(),
                inner.opts.object_retention,
                self.manifest.committed_at_us,
            );
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.manifest.commit_token.clone_from(&token);
        if inner.storage.is_remote() {
            self.manifest.writer_id = Some(inner.writer_id.clone());
        }
        let bytes = encode_manifest(&self.manifest)?;
        crate::failpoint!("commit::before_manifest");
        if let Some(lease) = &inner.writer_lease {
            // An object store's writer lease must outlast this commit.
            lease.check()?;
        }
        Ok((version, bytes, token, tombstones, retired))
    }

    /// Write, publish and clean up. Returns the new version.
    ///
    /// An error is [`StoreError::OutcomeUnknown`] when the new version may
    /// have been published (the store then refuses writes until it is
    /// reopened); any other error means it certainly was not, and the
    /// tombstone file this commit wrote is removed. A caller that wrote
    /// files for the commit removes them on such an error, and marks
    /// possible orphans ([`crate::gc::Gc::mark_orphans`]) only on
    /// `OutcomeUnknown` (see [`crate::gc::Gc::after_failed_commit`]).
    pub fn commit(mut self) -> Result<Arc<Version>> {
        let inner = self.inner;
        let gone = self.apply_rules();
        let mut tomb_written: Option<String> = None;
        let (version, bytes, token, tombstones, retired) =
            match self.prepare(&gone, &mut tomb_written) {
                Ok(p) => p,
                Err(e) => return Err(self.not_published(e, &tomb_written)),
            };
        let still_writer = || -> Result<Option<std::time::Duration>> {
            inner.writer_lease.as_ref().map(|l| l.check()).transpose()
        };
        let published = inner.storage.publish_manifest(
            &manifest_path(version),
            bytes.into(),
            &token,
            &still_writer,
        );
        if let Ok(crate::remote::Published::Conflict) = published {
            let why = format!(
                "manifest version {version} was published by another writer; this handle's commit did not happen; reopen the store"
            );
            self.refuse_until_reopen(why.clone());
            return Err(self.not_published(StoreError::Unavailable(why), &tomb_written));
        }
        if let Err(e) = published {
            // A failure after the rename (the directory's fsync) leaves
            // the manifest in place: the commit may have happened. Every
            // later commit would build on a base that is no longer the
            // last version (and receipts past it would be rewritten), so
            // the store refuses writes until it is reopened. On an object
            // store the error already means the outcome is unknown.
            if inner.storage.is_remote()
                || inner
                    .storage
                    .exists(&manifest_path(version))
                    .unwrap_or(true)
            {
                let why = format!(
                    "manifest version {version} may be published but its commit failed ({e}); reopen the store"
                );
                self.refuse_until_reopen(why.clone());
                return Err(StoreError::OutcomeUnknown(why));
            }
            return Err(self.not_published(e, &tomb_written));
        }
        // From here the version is published: an error is OutcomeUnknown
        // to the caller, whose files it references.
        let after_manifest = || -> Result<()> {
            crate::failpoint!("commit::after_manifest");
            Ok(())
        };
        if let Err(e) = after_manifest() {
            return Err(self.published_but(version, e));
        }

        let new_version = Arc::new(Version {
            manifest: std::mem::replace(&mut self.manifest, Manifest::empty()),
            tombstones,
        });
        let flush = self.flush.take();
        if let Err(e) = inner.publish(
            Arc::clone(&new_version),
            &self.mem_hide,
            flush.as_ref().map(|f| f.memtable_id),
        ) {
            return Err(self.published_but(version, e));
        }
        if let Some(idx) = self.guard.index.as_mut() {
            let staged = self.staged.take();
            let is_staged = |id: &u64| staged.as_ref().is_some_and(|s| s.parts.contains(id));
            for p in self
                .added
                .iter()
                .filter(|p| !gone.contains(&p.meta.id) && !is_staged(&p.meta.id))
            {
                idx.add(p.meta.table, p.meta.project_id, p.meta.id, &p.postings);
            }
            let mut dead: Vec<u64> = gone.iter().copied().collect();
            if let Some(s) = staged {
                idx.merge(s.index);
                dead.extend(s.left_out);
            }
            let live = new_version.manifest.parts.len();
            idx.retire_parts(dead, live);
        }
        // A path referenced again (a `.runs` file rewritten at its part's
        // path by a backfill) must leave GC's list of what to remove. The
        // files this commit retired are GC's before the commit lock is
        // released: a request made by the next commit sees them as
        // retired before it (`Gc::retired_before`).
        if inner.gc.pending() > 0 {
            inner
                .gc
                .keep_referenced(&new_version.manifest.referenced_paths());
        }
        inner.gc.retire(retired, version);
        if let Some(d) = self.drop_noted.take() {
            self.guard.drops.push(d);
        }
        drop(self.guard);
        if let Some(f) = &flush {
            if let Err(e) =
                inner
                    .gc
                    .remove_wal_segments(&*inner.opts.fs, &inner.wal_dir, &f.wal_segments)
            {
                tracing::warn!(error = %e, "could not remove flushed ingest-log segments; they are removed at next open");
            }
        }
        if let Err(e) = inner.gc.collect(&inner.storage) {
            tracing::warn!(error = %e, "gc failed; will retry after the next commit");
        }
        Ok(new_version)
    }
}

/// The runs of `ids` of `project` in `tables` (some may be of parts no
/// longer in `manifest`: callers keep the live ones). Without an
/// in-memory index — while the one started at open is being built, or
/// with [`crate::StoreOptions::in_memory_index`] off — from the parts'
/// `.runs` files, so that a deletion right after open does not wait;
/// from the index otherwise, or when a part has no usable `.runs` file
/// (it is then built or waited for here).
pub(crate) fn find_runs(
    inner: &Inner,
    guard: &mut MutexGuard<'_, CommitState>,
    manifest: &Manifest,
    project: i64,
    ids: &[String],
    tables: &[Table],
) -> Result<Vec<Posting>> {
    if files_first(inner, guard) {
        if let Some(found) =
            crate::index::runs_from_files(&inner.storage, manifest, project, ids, tables)
        {
            return Ok(found);
        }
    }
    index_runs(inner, guard, manifest, project, ids, tables)
}

/// [`find_runs`] through the in-memory index only (built or waited for
/// here, covering `manifest`).
pub(crate) fn index_runs(
    inner: &Inner,
    guard: &mut MutexGuard<'_, CommitState>,
    manifest: &Manifest,
    project: i64,
    ids: &[String],
    tables: &[Table],
) -> Result<Vec<Posting>> {
    let index = ensure_index(inner, guard, manifest)?;
    let mut found = Vec::new();
    for t in tables {
        for d in ids {
            found.extend_from_slice(index.lookup(*t, project, d));
        }
    }
    Ok(found)
}

/// Whether runs are looked up in `.runs` files before the in-memory
/// index: there is none yet, and none is wanted or the one started at
/// open is still being built.
pub(crate) fn files_first(inner: &Inner, guard: &MutexGuard<'_, CommitState>) -> bool {
    guard.index.is_none() && (!inner.opts.in_memory_index || inner.index_build.is_running())
}

/// The distinct-id index, under the commit lock (`guard`), covering the
/// parts of `manifest` (the version being built or the current one): the
/// one built at open (caught up with the parts committed since), or one
/// built here if there was no build or it failed. Kept in `guard`.
pub(crate) fn ensure_index<'g>(
    inner: &Inner,
    guard: &'g mut MutexGuard<'_, CommitState>,
    manifest: &Manifest,
) -> Result<&'g DistinctIdIndex> {
    if guard.index.is_none() {
        let started = std::time::Instant::now();
        let idx = match inner.index_build.wait() {
            Some((mut idx, covered)) => {
                let missing: Vec<_> = manifest
                    .parts
                    .iter()
                    .filter(|p| !covered.contains(&p.id))
                    .collect();
                for p in &missing {
                    let postings = read_postings(&inner.storage, p)?;
                    idx.add(p.table, p.project_id, p.id, &postings);
                }
                tracing::info!(
                    keys = idx.len(),
                    caught_up_parts = missing.len(),
                    waited_ms = started.elapsed().as_millis() as u64,
                    "took the distinct-id index built at open"
                );
                idx
            }
            None => {
                let idx = DistinctIdIndex::build(&inner.storage, manifest)?;
                tracing::info!(
                    keys = idx.len(),
                    parts = manifest.parts.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "built distinct-id index"
                );
                idx
            }
        };
        guard.index = Some(idx);
    }
    guard
        .index
        .as_ref()
        .ok_or_else(|| StoreError::Internal("index missing after build".into()))
}
