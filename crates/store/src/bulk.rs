//! Bulk ingest: many rows, one durable unit.
//!
//! An append is acknowledged row batch by row batch through the ingest
//! log; a command that ingests a file must instead leave either all of it
//! or nothing (a failure half way, a full disk, a kill). [`BulkIngest`]
//! does that by writing parts directly, the way Delta and Iceberg load
//! data, and publishing them in one commit:
//!
//! ```text
//!  write(batch) ─► validate (normalize) ─► buffer
//!       │ buffer full: reserve a _seq range (state lock) ─► hand it to the writer thread
//!       │          writer: sort ─► write parts (unpublished) ─► stage their runs
//!       │ written: fsync the parts on a thread of their own
//!       ▼
//!  commit() ─► write the rest ─► wait for the fsyncs ─► one commit adds them all
//!              (merging the staged runs into the distinct-id index)
//!  drop without commit ─► the unpublished parts are removed (or swept at the next open)
//! ```
//!
//! A full buffer is written by a thread of its own while the caller reads
//! and validates the next one (in turn, a 2-core machine idled a core
//! half the time).
//! At most one buffer is being written: a buffer that fills meanwhile
//! waits for it, so memory holds at most two buffers. A failure to write
//! is returned by the next `write` that fills a buffer, or by the commit,
//! and fails the ingest: every later call returns it (rows were lost).
//!
//! Nothing of a bulk ingest is visible, or durable, before its commit; the
//! ingest log never holds its rows (so it also costs no log bytes).
//!
//! **Deletions and drops that land meanwhile.** `_seq`s are reserved when
//! a buffer is written, so a deletion (or project drop) committed while the
//! ingest is in flight may have a cut-off above some of its rows: those
//! rows were "appended before" it. The commit applies such requests to the
//! new parts (through the parts' runs, as the flush does for late
//! deletions) and leaves out parts of dropped projects. A request is not
//! marked purged while a bulk ingest that reserved `_seq`s below its
//! cut-off is in flight, so it can never be verified and then have rows
//! arrive under it.
//!
//! **Two-phase commit with another store** ([`BulkIngest::commit_pending`]).
//! The persons layer commits its metadata (SQLite) and its events
//! together: the events are committed first, as *pending* under a token
//! recorded in the manifest (durable, but invisible to queries and left
//! alone by compaction), then the metadata transaction records the same
//! token; then [`Store::resolve_ingest`] confirms them, which makes them
//! visible at once. If the process dies between the
//! two, the next open of the persons layer finds the token in the manifest
//! but not in its database and voids the ingest (its parts leave the
//! manifest whole).

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use croaring::{Bitmap, Treemap};

use crate::error::{Result, StoreError};
use crate::format::{PartMeta, PendingIngest};
use crate::index::DistinctIdIndex;
use crate::memtable::Chunk;
use crate::normalize::{normalize, NormalizedBatch};
use crate::part::{write_parts, WrittenPart};
use crate::schema::Table;
use crate::store::{now_us, Store};

/// Result of a committed bulk ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Rows ingested.
    pub rows: u64,
    /// Parts written.
    pub parts: usize,
    /// Rows hidden at commit by deletions committed while the ingest ran.
    pub rows_hidden: u64,
    /// Rows left out because their project was dropped meanwhile.
    pub rows_dropped: u64,
    /// Manifest version that published them.
    pub version: u64,
}

/// A bulk ingest in progress (see the module docs). Dropping it without
/// [`BulkIngest::commit`] leaves nothing.
pub struct BulkIngest {
    store: Store,
    table: Table,
    buffer: Vec<NormalizedBatch>,
    buffered_rows: usize,
    buffered_bytes: usize,
    written: Vec<WrittenPart>,
    /// The runs of the written parts as an index of their own, built by
    /// the writer thread, merged into the store's index at the commit
    /// (`None` while the writer has it, or with the in-memory index off).
    staged: Option<DistinctIdIndex>,
    /// The buffer being written as parts (their runs added to the staged
    /// index), on a thread of its own.
    writing: Option<std::thread::JoinHandle<Result<Written>>>,
    /// Threads syncing written buffers' parts (waited for at the commit).
    syncing: Vec<std::thread::JoinHandle<Result<()>>>,
    /// Why writing a buffer failed: rows were lost, so the ingest can only
    /// be dropped (every later call returns this).
    failed: Option<String>,
    rows: u64,
    /// Registration of the in-flight reservation (`None` before the first).
    inflight: Option<u64>,
    /// The next request id when the first `_seq`s were reserved.
    first_request: u64,
}

/// What the writer thread returns: a buffer's parts, written, and the
/// staged index with their runs.
type Written = (Vec<WrittenPart>, Option<DistinctIdIndex>);

impl std::fmt::Debug for BulkIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkIngest")
            .field("table", &self.table)
            .field("rows", &self.rows)
            .field("parts", &self.written.len())
            .finish()
    }
}

impl Store {
    /// Start a bulk ingest into `table` (see [`BulkIngest`]).
    pub fn bulk_ingest(&self, table: Table) -> Result<BulkIngest> {
        self.inner().writable()?;
        Ok(BulkIngest {
            store: self.clone(),
            table,
            buffer: Vec::new(),
            buffered_rows: 0,
            buffered_bytes: 0,
            written: Vec::new(),
            staged: self
                .inner()
                .opts
                .in_memory_index
                .then(DistinctIdIndex::default),
            writing: None,
            syncing: Vec::new(),
            failed: None,
            rows: 0,
            inflight: None,
            first_request: 0,
        })
    }
}

impl BulkIngest {
    /// Validate and add a batch. An invalid batch is an error naming the
    /// row (0-based, within the batch) and column; the ingest can go on
    /// or be dropped. An error writing a full buffer's parts (here or in
    /// a later call: they are written on a thread of their own) fails the
    /// ingest: every later call, the commit included, returns it.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = normalize(self.table, batch)?;
        self.write_normalized(n)
    }

    /// Add a batch already validated by [`normalize`] (for this table).
    pub fn write_normalized(&mut self, n: NormalizedBatch) -> Result<()> {
        self.check_failed()?;
        if n.table != self.table {
            return Err(StoreError::InvalidInput(format!(
                "a batch for table {} in a bulk ingest into {}",
                n.table, self.table
            )));
        }
        if n.num_rows() == 0 {
            return Ok(());
        }
        self.buffered_rows += n.num_rows();
        self.buffered_bytes += n.memory_size();
        self.buffer.push(n);
        let opts = &self.store.inner().opts;
        if self.buffered_rows >= opts.memtable_rows || self.buffered_bytes >= opts.memtable_bytes {
            self.spill_or_fail()?;
        }
        Ok(())
    }

    /// [`BulkIngest::spill`]; a failure marks the ingest failed.
    fn spill_or_fail(&mut self) -> Result<()> {
        let r = self.spill();
        if let Err(e) = &r {
            self.failed = Some(e.to_string());
        }
        r
    }

    /// The error of an earlier failed write, if any.
    fn check_failed(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(StoreError::Internal(format!(
                "this bulk ingest failed earlier and can only be dropped: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Rows written so far (buffered or in unpublished parts).
    pub fn rows(&self) -> u64 {
        self.rows + self.buffered_rows as u64
    }

    /// Reserve `_seq`s for the buffer and write it as unpublished parts.
    fn spill(&mut self) -> Result<()> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        // One buffer in writing at a time; and if it failed, this one is
        // not taken.
        self.wait_for_writer()?;
        let inner = self.store.inner();
        let rows = self.buffered_rows as u64;
        let (seq_start, first_request) = inner.reserve_seqs(rows, &mut self.inflight)?;
        if self.rows == 0 {
            self.first_request = first_request;
        }
        let now = now_us();
        let mut chunks = Vec::with_capacity(self.buffer.len());
        let mut seq = seq_start;
        for n in self.buffer.drain(..) {
            let batch = n.finish(seq, now)?;
            chunks.push(Arc::new(Chunk {
                table: self.table,
                seq_start: seq,
                batch,
            }));
            seq += n.num_rows() as u64;
        }
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        let store = self.store.clone();
        let mut staged = self.staged.take();
        let writer = std::thread::Builder::new()
            .name("bulk-ingest-writer".into())
            .spawn(move || -> Result<Written> {
                crate::failpoint!("bulk::write_parts");
                let inner = store.inner();
                let parts = write_parts(
                    &inner.storage,
                    &inner.gc,
                    &inner.opts.part,
                    &chunks,
                    &Treemap::new(),
                    &mut || inner.alloc_file_id(),
                )?;
                if let Some(idx) = staged.as_mut() {
                    for p in &parts {
                        idx.add(p.meta.table, p.meta.project_id, p.meta.id, &p.postings);
                    }
                }
                Ok((parts, staged))
            })
            .map_err(|e| StoreError::Internal(format!("cannot start a part writer: {e}")))?;
        self.writing = Some(writer);
        self.rows += rows;
        Ok(())
    }

    /// Wait for the buffer being written, if any, and keep its parts.
    fn wait_for_writer(&mut self) -> Result<()> {
        let Some(writer) = self.writing.take() else {
            return Ok(());
        };
        let parts = writer
            .join()
            .unwrap_or_else(|_| Err(StoreError::Internal("a part writer panicked".into())));
        match parts {
            Ok((p, staged)) => {
                // Synced on a thread of their own while the ingest goes
                // on, rather than all at the commit (where a 10M-row
                // ingest waited ~0.6 s on its writeback) or by the writer
                // (whose next buffer would wait).
                let metas: Vec<PartMeta> = p.iter().map(|p| p.meta.clone()).collect();
                let store = self.store.clone();
                let syncer = std::thread::Builder::new()
                    .name("bulk-ingest-sync".into())
                    .spawn(move || {
                        let metas: Vec<&PartMeta> = metas.iter().collect();
                        store.inner().storage.sync_parts(&metas)
                    });
                self.written.extend(p);
                self.staged = staged;
                let syncer = syncer.map_err(|e| {
                    StoreError::Internal(format!("cannot start a thread syncing parts: {e}"))
                })?;
                self.syncing.push(syncer);
                self.reap_syncs()
            }
            // What write_parts wrote before failing it has discarded.
            Err(e) => Err(e),
        }
    }

    /// Join the syncers that are done (a failed fsync fails the ingest
    /// now rather than at the commit; a long ingest keeps no finished
    /// threads unjoined).
    fn reap_syncs(&mut self) -> Result<()> {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.syncing)
            .into_iter()
            .partition(|h| h.is_finished());
        self.syncing = running;
        for h in done {
            h.join()
                .unwrap_or_else(|_| Err(StoreError::Internal("a part syncer panicked".into())))?;
        }
        Ok(())
    }

    /// Wait for every buffer's parts to be synced.
    fn wait_for_syncs(&mut self) -> Result<()> {
        let mut first = Ok(());
        for h in self.syncing.drain(..) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(StoreError::Internal("a part syncer panicked".into())));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Write what is buffered, make every part durable and publish them
    /// all in one commit. When this returns, every row is durable and
    /// visible; on an error, none is, except after
    /// [`StoreError::OutcomeUnknown`]: the commit may have landed.
    pub fn commit(self) -> Result<IngestOutcome> {
        self.finish(None)
    }

    /// Like [`BulkIngest::commit`], recording the ingest as pending under
    /// `token` until [`Store::resolve_ingest`] (see the module docs).
    pub fn commit_pending(self, token: &str) -> Result<IngestOutcome> {
        if token.is_empty() {
            return Err(StoreError::InvalidInput(
                "an ingest token must not be empty".into(),
            ));
        }
        self.finish(Some(token))
    }

    fn finish(mut self, token: Option<&str>) -> Result<IngestOutcome> {
        self.check_failed()?;
        self.spill()?;
        self.wait_for_writer()?;
        self.wait_for_syncs()?;
        let inner = self.store.inner();
        crate::failpoint!("bulk::before_commit");
        let paths: Vec<String> = self.written.iter().flat_map(|p| p.meta.files()).collect();
        let parts = std::mem::take(&mut self.written);
        let n_parts = parts.len();
        // Until the commit writes its manifest, the parts are ours to
        // remove.
        let discard = |e: StoreError| {
            for p in &paths {
                inner.gc.discard(&inner.storage, p);
            }
            e
        };
        let mut tx = crate::commit::Transaction::begin(inner).map_err(discard)?;
        let added = tx
            .add_bulk(parts, self.first_request, self.staged.take())
            .map_err(discard)?;
        if let Some(token) = token {
            tx.add_pending_ingest(PendingIngest {
                token: token.to_string(),
                parts: added.part_ids.clone(),
                created_at_us: now_us(),
            })
            .map_err(discard)?;
        }
        let version = match tx.commit() {
            Ok(v) => v,
            // When the manifest may reference the parts, they stay for the
            // next open's sweep, and until then no request may be marked
            // purged (a copy may be orphaned); otherwise they go now.
            Err(e) => return Err(inner.gc.after_failed_commit(&inner.storage, e, &paths)),
        };
        crate::failpoint!("bulk::after_commit");
        let out = IngestOutcome {
            rows: self.rows - added.rows_dropped,
            parts: n_parts,
            rows_hidden: added.rows_hidden,
            rows_dropped: added.rows_dropped,
            version: version.manifest.version,
        };
        tracing::info!(?out, "bulk ingest committed");
        Ok(out)
    }
}

impl Drop for BulkIngest {
    fn drop(&mut self) {
        // Its parts are discarded with the others (an error: already
        // orphans for the next open's sweep).
        if let Err(e) = self.wait_for_writer() {
            tracing::debug!(error = %e, "a dropped bulk ingest's last buffer failed to write");
        }
        // Nothing is removed while a syncer may still open it.
        if let Err(e) = self.wait_for_syncs() {
            tracing::debug!(error = %e, "a dropped bulk ingest's parts failed to sync");
        }
        let inner = self.store.inner();
        for p in self.written.drain(..) {
            inner.gc.discard_part(&inner.storage, &p.meta);
        }
        if let Some(id) = self.inflight.take() {
            inner.end_reservation(id);
        }
    }
}

/// What [`crate::commit::Transaction::add_bulk`] did.
#[derive(Debug, Default)]
pub(crate) struct BulkAdded {
    pub part_ids: Vec<u64>,
    pub rows_hidden: u64,
    pub rows_dropped: u64,
}

/// Rows of `part` with `distinct_id` and `_seq` in `range`, as positions.
pub(crate) fn rows_in(
    part: &WrittenPart,
    distinct_id: &str,
    range: std::ops::Range<u64>,
    out: &mut Bitmap,
) {
    let runs = &part.postings.runs;
    // Runs are in file order, which is distinct-id order.
    let i = runs.partition_point(|r| r.distinct_id.as_str() < distinct_id);
    let Some(run) = runs.get(i).filter(|r| r.distinct_id == distinct_id) else {
        return;
    };
    if run.min_seq >= range.end {
        return;
    }
    let (s, e) = (run.start as usize, (run.start + run.len) as usize);
    // A run's `_seq`s are sorted.
    let (from, below) = part.seqs.get(s..e).map_or((0, 0), |seqs| {
        (
            seqs.partition_point(|q| *q < range.start),
            seqs.partition_point(|q| *q < range.end),
        )
    });
    if below > from {
        out.add_range(run.start + from as u32..run.start + below as u32);
    }
}
