//! [`Persons::capture_all`]: a whole input captured as one unit.
//!
//! ```text
//!  metadata transaction ─────────────────────────────────────────────┐
//!   for each batch: resolve identities ─► rows ─► validate ─► bulk    │
//!   bulk.commit_pending(token)   events durable, pending in the store │
//!   insert token                                                      │
//!  commit ◄───────────────────────────────────────────────────────────┘
//!  store.resolve_ingest(token, confirm)
//! ```
//!
//! An error before the store's commit rolls back both; a failed metadata
//! commit after it voids the events; a crash anywhere is settled at the
//! next open (the token decides). Earlier batches' identities are seen by
//! later ones through the transaction and a transaction-local cache.

use elide_store::normalize::normalize;
use elide_store::{StoreError, Table};

use crate::capture::CaptureEvent;
use crate::error::{PersonsError, Result};
use crate::meta::MetaStore;
use crate::persons::{
    ensure_project, event_batch, now_us, row_among_events, scrub_all, CaptureOutcome, Persons,
};
use crate::resolve::{CacheView, CaptureStats, IdCache, Learned, Resolver};

/// Events to capture, with the input line each came from (for errors;
/// empty when there are no lines).
#[derive(Debug, Clone, Default)]
pub struct CaptureBatch {
    /// The events.
    pub events: Vec<CaptureEvent>,
    /// `lines[i]` is the 1-based line of `events[i]`.
    pub lines: Vec<usize>,
}

/// Where event `row` of `batch` came from, for an error message.
fn locate(e: StoreError, batch: &CaptureBatch, first_event: u64) -> PersonsError {
    match e {
        StoreError::InvalidRow {
            row,
            column,
            reason,
        } => {
            let reason = format!("column `{column}`: {reason}");
            match batch.lines.get(row) {
                Some(&line) => PersonsError::InvalidLine { line, reason },
                None => PersonsError::InvalidInput(format!(
                    "event {}: {reason}",
                    first_event + row as u64
                )),
            }
        }
        other => other.into(),
    }
}

impl<M: MetaStore> Persons<M> {
    /// Capture every event of `batches` into `project` (created if new)
    /// as one unit: when this returns `Ok`, all are durable and visible
    /// with their persons; on an error, nothing of them is left (events,
    /// persons, merges, properties). A crash at any point leaves all or
    /// nothing once the data directory is opened again. `progress` is told
    /// how many events each batch held.
    pub fn capture_all(
        &self,
        project: i64,
        batches: &mut dyn Iterator<Item = Result<CaptureBatch>>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CaptureOutcome> {
        let mut guard = self.lock()?;
        let cache: &mut IdCache = &mut guard;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now = now_us();
        let mut learned_all = Learned::default();
        let mut overlay = IdCache::default();
        let mut stats = CaptureStats::default();
        let mut bulk = Some(self.store().bulk_ingest(Table::Events)?);
        let mut store_committed = false;
        let base: &IdCache = cache;
        let result = self.meta().write(|tx| {
            let settings = ensure_project(tx, project, now)?.settings;
            let mut events = 0u64;
            for batch in batches {
                let batch = batch?;
                if batch.events.is_empty() {
                    continue;
                }
                let view = CacheView {
                    base,
                    overlay: Some(&overlay),
                    base_stale: learned_all.invalidates(),
                };
                let stored = scrub_all(&batch.events, &settings);
                let mut r = Resolver::new(tx, view, project, now);
                let (built, dropped) = event_batch(&mut r, &stored, project, now)?;
                let (s, learned) = r.finish()?;
                stats += s;
                if learned.invalidates() {
                    overlay.clear();
                } else {
                    overlay.apply(project, learned.copy());
                }
                learned_all.extend(learned);
                let normalized = normalize(Table::Events, &built)
                    .map_err(|e| locate(row_among_events(e, &dropped), &batch, events))?;
                bulk.as_mut()
                    .ok_or_else(|| PersonsError::Internal("bulk ingest gone".into()))?
                    .write_normalized(normalized)?;
                events += batch.events.len() as u64;
                progress(batch.events.len() as u64);
            }
            let ingest = bulk
                .take()
                .ok_or_else(|| PersonsError::Internal("bulk ingest gone".into()))?;
            ingest.commit_pending(&token)?;
            store_committed = true;
            elide_store::failpoint!("capture::after_store_commit");
            tx.insert_ingest_token(&token, now)?;
            Ok(events)
        });
        drop(bulk);
        let events = match result {
            Ok(n) => n,
            Err(e) => {
                if store_committed {
                    if let Err(v) = self.store().resolve_ingest(&token, false) {
                        tracing::error!(error = %v, "could not void a capture whose metadata failed; the next open voids it");
                    }
                }
                return Err(e);
            }
        };
        elide_store::failpoint!("capture::before_confirm");
        if let Err(e) = self.store().resolve_ingest(&token, true) {
            tracing::warn!(error = %e, "could not confirm a committed capture; the next open confirms it");
        }
        cache.apply(project, learned_all);
        // Those stored.
        stats.events = events - stats.dropped_personless;
        Ok(CaptureOutcome {
            stats,
            seq_start: 0,
            seq_end: 0,
        })
    }
}
