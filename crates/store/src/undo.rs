//! Logical requests: deletions hidden by their predicate when read, not
//! by tombstone bits. Two things need them:
//!
//! * **Undo.** A deletion of events with an undo window
//!   ([`EventDeletion::undo_window`](crate::EventDeletion)) stays
//!   cancellable until the window ends. Its rows must come back exactly
//!   on cancel, and another request's rows never; so it writes no bits
//!   into the parts' shared tombstones at all. It keeps its own predicate
//!   and cut-off, and every read leaves out what they match.
//! * **The bridge.** A predicate whose resolution would make the caller
//!   wait longer than [`StoreOptions::predicate_resolve_bound`] is
//!   committed the same way, so that its rows are hidden when the call
//!   returns, and resolved to bits in the background.
//!
//! A logical request is resolved ([`Store::resolve_logical_requests`];
//! the background worker and every compaction call it) once its undo
//! window has ended (at once for the bridge): one commit sets its bits and
//! hides its buffered rows, and from then on it is an ordinary pending
//! request. A cancel ([`Store::cancel_request`]) is one commit that marks
//! it cancelled; its rows are visible from that version on.
//!
//! Invariants (checked by `Manifest::check_invariants` and the tests):
//!
//! * a logical request is pending, has a predicate and lists no parts;
//!   nothing on disk depends on it, so compaction never purges its rows
//!   (purges and merges copy them like any live row) and a crash at any
//!   point leaves it either logical or resolved, never half of each;
//! * every read applies it: [`Snapshot`](crate::Snapshot)s (parts through
//!   [`Snapshot::hidden`](crate::Snapshot::hidden), buffered rows when the
//!   snapshot is taken), the subject-access export; replay at open, a bulk
//!   ingest's commit and the flush leave its rows alone (they are hidden
//!   when read);
//! * resolution holds the compaction and flush locks, so no rewrite or
//!   flush in flight can miss the request's new bits or parts.
//!
//! A part's matches are computed once per (request, part) and cached
//! ([`LogicalCache`]); parts are immutable and a logical request never
//! changes, so an entry is valid until the request leaves the logical
//! state, when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use croaring::{Bitmap, Treemap};

use crate::by_predicate::{match_chunk, match_part, match_parts, Matched};
use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::{us_to_rfc3339, DeletionRequest, PartMeta, RequestKind};
use crate::memtable::Chunk;
use crate::predicate::EventPredicate;
use crate::schema::Table;
use crate::storage::Storage;
use crate::store::{now_us, poisoned, DeleteOutcome, Inner, Store};

/// The rows each logical request matches in each part, computed on first
/// use.
#[derive(Debug, Default)]
pub(crate) struct LogicalCache {
    bits: Mutex<HashMap<(u64, u64), Arc<Bitmap>>>,
}

impl LogicalCache {
    fn get(&self, request: u64, part: u64) -> Option<Arc<Bitmap>> {
        self.bits.lock().ok()?.get(&(request, part)).cloned()
    }

    fn put(&self, request: u64, part: u64, bits: Arc<Bitmap>) {
        if let Ok(mut m) = self.bits.lock() {
            m.insert((request, part), bits);
        }
    }

    /// Drop the entries of a request that left the logical state.
    fn forget(&self, request: u64) {
        if let Ok(mut m) = self.bits.lock() {
            m.retain(|(r, _), _| *r != request);
        }
    }

    /// Keep only the entries of `logical` requests (others left the
    /// state without passing here: dropped with their project).
    fn retain_requests(&self, logical: &[u64]) {
        if let Ok(mut m) = self.bits.lock() {
            m.retain(|(r, _), _| logical.contains(r));
        }
    }

    /// The rows of `part` that logical request `r` hides.
    pub(crate) fn bits(
        &self,
        storage: &Storage,
        r: &DeletionRequest,
        part: &PartMeta,
    ) -> Result<Arc<Bitmap>> {
        if let Some(b) = self.get(r.id, part.id) {
            return Ok(b);
        }
        let pred = r.predicate.as_ref().ok_or_else(|| {
            StoreError::Internal(format!("logical request {} has no predicate", r.id))
        })?;
        let b = Arc::new(match_part(storage, part, pred, r.cutoff_seq)?);
        self.put(r.id, part.id, Arc::clone(&b));
        Ok(b)
    }
}

/// Whether logical request `r` may hide rows of `part`.
fn may_hide(r: &DeletionRequest, part: &PartMeta) -> bool {
    r.project_id == part.project_id
        && r.covers_table(part.table)
        && r.cutoff_seq > part.min_seq
        && r.predicate.as_ref().is_some_and(|p| p.may_match_part(part))
}

/// The logical requests of `requests` (a snapshot keeps its own copy).
pub(crate) fn logical_requests(requests: &[DeletionRequest]) -> Vec<DeletionRequest> {
    requests.iter().filter(|r| r.logical).cloned().collect()
}

/// The rows of `part` hidden when read: its tombstone bits (`bits`) and
/// what the `logical` requests match. `None` when nothing is hidden.
pub(crate) fn hidden_in_part(
    storage: &Storage,
    cache: &LogicalCache,
    logical: &[DeletionRequest],
    part: &PartMeta,
    bits: Option<&Arc<Bitmap>>,
) -> Result<Option<Arc<Bitmap>>> {
    let mut covering = logical.iter().filter(|r| may_hide(r, part)).peekable();
    if covering.peek().is_none() {
        return Ok(bits.cloned());
    }
    let mut out = bits.map(|b| (**b).clone()).unwrap_or_default();
    for r in covering {
        out.or_inplace(&*cache.bits(storage, r, part)?);
    }
    Ok((!out.is_empty()).then(|| Arc::new(out)))
}

/// Add to `hidden` the `_seq`s of buffered rows in `chunks` that the
/// `logical` requests match.
pub(crate) fn hide_buffered<'a>(
    logical: &[DeletionRequest],
    chunks: impl Iterator<Item = &'a Arc<Chunk>> + Clone,
    hidden: &mut Treemap,
) -> Result<()> {
    let mut hits = Vec::new();
    for r in logical {
        let Some(pred) = &r.predicate else { continue };
        for c in chunks.clone() {
            match_chunk(c, r.project_id, &r.tables, pred, r.cutoff_seq, &mut hits)?;
        }
    }
    for s in hits {
        hidden.add(s);
    }
    Ok(())
}

/// Result of [`Store::cancel_request`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CancelOutcome {
    /// The cancelled request.
    pub request_id: u64,
    /// Rows it had hidden, visible again unless another request hides
    /// them too.
    pub rows_restored: u64,
}

impl Store {
    /// Cancel a deletion inside its undo window: from the version this
    /// commits, its rows are visible again (those another request also
    /// hides stay hidden). Refused, changing nothing, for an unknown id, a
    /// request made without an undo window, or one whose window has ended
    /// ([`StoreError::InvalidInput`]).
    pub fn cancel_request(&self, request_id: u64) -> Result<CancelOutcome> {
        let inner = self.inner();
        inner.writable()?;
        let mut tx = Transaction::begin(inner)?;
        let before = tx.cancel_request(request_id, now_us())?;
        crate::failpoint!("undo::before_cancel_commit");
        tx.commit()?;
        inner.logical.forget(request_id);
        let out = CancelOutcome {
            request_id,
            rows_restored: before.rows_hidden,
        };
        tracing::info!(?out, "deletion request cancelled");
        Ok(out)
    }

    /// Resolve every logical request whose undo window has ended by
    /// `now_us` (and every bridged one) to tombstone bits, one commit
    /// each; returns their ids. The background worker and every
    /// compaction call this; it waits for a compaction in flight.
    pub fn resolve_logical_requests(&self, now_us: i64) -> Result<Vec<u64>> {
        let inner = self.inner();
        inner.writable()?;
        let _one = inner.compaction_lock.lock().map_err(|_| {
            StoreError::Internal("compaction lock poisoned (a compaction panicked)".into())
        })?;
        inner.resolve_logical_locked(now_us)
    }
}

impl Inner {
    /// Compute (on every core) and cache the matches of logical request
    /// `id` in the parts of a pinned version, holding no lock that
    /// writers wait for.
    fn prefill(&self, id: u64) -> Result<()> {
        let (version, _pin) = self.pinned_version()?;
        let Some(r) = version
            .manifest
            .requests
            .iter()
            .find(|r| r.id == id && r.logical)
        else {
            return Ok(());
        };
        let Some(pred) = &r.predicate else {
            return Ok(());
        };
        let unread: Vec<&PartMeta> = crate::by_predicate::candidates(
            &version.manifest.parts,
            r.project_id,
            &r.tables,
            pred,
            r.cutoff_seq,
        )
        .filter(|p| self.logical.get(id, p.id).is_none())
        .collect();
        let read = match_parts(&self.storage, &unread, pred, r.cutoff_seq)?;
        for (p, bits) in unread.iter().zip(read) {
            self.logical.put(id, p.id, Arc::new(bits));
        }
        Ok(())
    }

    /// The end of an undo window of `window` opened now for a request of
    /// `project`, or why the window is refused: empty, or too long for
    /// the request's purge deadline (the window plus the compaction's
    /// `deadline_slack` must end before `purge_due_by`).
    pub(crate) fn undo_until(
        &self,
        tx: &Transaction<'_>,
        project: i64,
        window: Duration,
    ) -> Result<i64> {
        let now = now_us();
        let opts = self.policy.options();
        let due = crate::lifecycle::due_by(tx.manifest(), project, now, opts.max_pending_age);
        let until = now.saturating_add(window.as_micros().min(i64::MAX as u128) as i64);
        if window.is_zero() {
            return Err(StoreError::InvalidInput(
                "an undo window must be longer than zero".into(),
            ));
        }
        let latest = due.saturating_sub(opts.deadline_slack.as_micros() as i64);
        if until > latest {
            return Err(StoreError::InvalidInput(format!(
                "an undo window of {} hours ends after {}, too late for the purge deadline {} (the window must end at least {} hours before it)",
                window.as_secs() / 3600,
                us_to_rfc3339(latest),
                us_to_rfc3339(due),
                opts.deadline_slack.as_secs() / 3600,
            )));
        }
        Ok(until)
    }

    /// Commit a logical request of kind `events` (`tx` holds nothing
    /// else): hidden by its predicate from the version this publishes.
    /// With `undo_until_us`, `matched` is complete and its count is the
    /// answer; without (the bridge), the request is resolved in the
    /// background and `rows_hidden` is what the parts read so far and the
    /// buffered rows hold. The bits already computed seed the cache.
    pub(crate) fn record_logical(
        &self,
        mut tx: Transaction<'_>,
        project: i64,
        pred: EventPredicate,
        tables: Vec<Table>,
        matched: Matched,
        undo_until_us: Option<i64>,
    ) -> Result<DeleteOutcome> {
        let by_table = matched.newly_hidden(self, &mut tx)?;
        let rows_hidden = by_table.values().sum();
        let mut request =
            self.new_request(&tx, RequestKind::Events, project, tables, matched.cutoff);
        request.predicate = Some(pred);
        request.rows_hidden = rows_hidden;
        request.rows_hidden_by_table = by_table;
        request.logical = true;
        request.undo_until_us = undo_until_us;
        let purge_due_by_us = request.purge_due_by_us;
        let cutoff = request.cutoff_seq;
        let request_id = tx.add_request(request);
        tx.commit()?;
        // Only after the commit: a failed one leaves the id unused, and
        // the next request would get it with another predicate.
        for (part, bits) in matched.parts {
            if let Some(b) = bits {
                self.logical.put(request_id, part, Arc::new(b));
            }
        }
        if undo_until_us.is_none() {
            self.wake_compactor();
        }
        Ok(DeleteOutcome {
            request_id,
            rows_hidden,
            cutoff,
            purge_due_by_us,
            logical: true,
            undo_until_us,
        })
    }

    /// [`Store::resolve_logical_requests`] under the compaction lock.
    pub(crate) fn resolve_logical_locked(&self, now_us: i64) -> Result<Vec<u64>> {
        let version = self.current_version()?;
        let logical: Vec<u64> = version
            .manifest
            .requests
            .iter()
            .filter(|r| r.logical)
            .map(|r| r.id)
            .collect();
        self.logical.retain_requests(&logical);
        let due: Vec<u64> = version
            .manifest
            .requests
            .iter()
            .filter(|r| crate::lifecycle::resolvable(r, now_us))
            .map(|r| r.id)
            .collect();
        drop(version);
        let mut done = Vec::new();
        for id in due {
            // Read the parts outside the flush and commit locks first
            // (parts never change: the matches stay valid); under them,
            // only parts committed meanwhile are read.
            self.prefill(id)?;
            // No flush in flight: its parts would not list the request.
            let f = self.flush_lock().lock().map_err(poisoned)?;
            let mut tx = Transaction::begin(self)?;
            let Some(r) = tx
                .manifest()
                .requests
                .iter()
                .find(|r| r.id == id && crate::lifecycle::resolvable(r, now_us))
                .cloned()
            else {
                continue;
            };
            let pred = r.predicate.clone().ok_or_else(|| {
                StoreError::Internal(format!("logical request {id} has no predicate"))
            })?;
            let (cutoff, mem_hits) =
                self.cutoff_and_buffered(&tx, Some(r.cutoff_seq), |m, cutoff, hits| {
                    crate::by_predicate::match_memtable(
                        m,
                        r.project_id,
                        &r.tables,
                        &pred,
                        cutoff,
                        hits,
                    )
                })?;
            let candidates: Vec<&PartMeta> = crate::by_predicate::candidates(
                &tx.manifest().parts,
                r.project_id,
                &r.tables,
                &pred,
                cutoff,
            )
            .collect();
            let unread: Vec<&PartMeta> = candidates
                .iter()
                .filter(|p| self.logical.get(id, p.id).is_none())
                .copied()
                .collect();
            let read = match_parts(&self.storage, &unread, &pred, cutoff)?;
            let mut fresh: HashMap<u64, Bitmap> = unread.iter().map(|p| p.id).zip(read).collect();
            let parts: Vec<(u64, Option<Bitmap>)> = candidates
                .iter()
                .map(|p| {
                    let bits = fresh
                        .remove(&p.id)
                        .or_else(|| self.logical.get(id, p.id).map(|b| (*b).clone()));
                    (p.id, bits)
                })
                .collect();
            let matched = Matched {
                cutoff,
                mem_hits,
                complete: parts.iter().all(|(_, b)| b.is_some()),
                parts,
            };
            if !matched.complete {
                return Err(StoreError::Internal(format!(
                    "request {id}: a part's matches went missing while resolving"
                )));
            }
            let (by_table, holding) = matched.apply(self, &mut tx)?;
            let rows: u64 = by_table.values().sum();
            tx.resolve_logical(id, now_us, by_table, holding)?;
            crate::failpoint!("undo::before_resolve_commit");
            tx.commit()?;
            drop(f);
            self.logical.forget(id);
            tracing::info!(
                request_id = id,
                rows_hidden = rows,
                "logical deletion request resolved to tombstones"
            );
            done.push(id);
        }
        Ok(done)
    }
}
