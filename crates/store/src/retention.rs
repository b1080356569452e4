//! Retention: a project setting `retention_days`, applied by sweeps that
//! are ordinary deletion requests (kind `retention`), so the same
//! lifecycle, compaction and verification apply.
//!
//! A sweep at time `now` deletes the project's rows (events and
//! recordings) whose `timestamp` is before the UTC midnight `retention_days`
//! days before today's: a row is kept at least `retention_days` days and
//! at most one day more. Because the bound is a UTC midnight and parts are
//! partitioned by UTC day, an expired day's parts are covered whole: the
//! commit that records the request removes them from the manifest at once
//! (their files are retired to GC, never rewritten), and only rows still
//! in the ingest log are hidden in memory (and left out by the flush).
//! Parts written before that layout, or holding rows on both sides of the
//! bound (a small project's part merged across the days of a month, see
//! [`crate::policy`]), are tombstoned and purged by the compaction like
//! any request.
//!
//! `event_retention_days` limits events of one name the same way (events
//! table only): a sweep per (project, event name), whose parts are
//! tombstoned and purged (a day's part holds other events too). Such a
//! sweep must read the event column of every older part, so it is checked
//! on a pinned version first (no lock) and repeated at most hourly for
//! the same bound.
//!
//! A sweep that finds nothing visible to expire records nothing. The
//! background worker sweeps before each plan (so at most a minute after
//! midnight); `elide compact` sweeps first too; [`Store::apply_retention`]
//! takes the clock as an argument for tests and embedders.

use crate::commit::Transaction;
use crate::error::Result;
use crate::format::RequestKind;
use crate::predicate::EventPredicate;
use crate::schema::Table;
use crate::store::Store;
use crate::MICROS_PER_DAY;

/// How long a sweep of one event's rows that found nothing stands for
/// the same bound (µs): rows that arrive late with old timestamps are
/// expired within the hour.
const RESWEEP_US: i64 = 3_600_000_000;

/// One project's sweep that deleted something.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionSweep {
    /// Project.
    pub project_id: i64,
    /// The event name, for a sweep of `event_retention_days`; `None` for
    /// the project's `retention_days`.
    pub event: Option<String>,
    /// Rows with `timestamp` before this were deleted (µs, a UTC midnight).
    pub before_us: i64,
    /// The request (kind `retention`).
    pub request_id: u64,
    /// Rows it hid.
    pub rows_hidden: u64,
    /// Parts it removed whole (no rewrite).
    pub parts_dropped: usize,
}

/// The retention bound at `now_us` for `days`: the UTC midnight `days`
/// days before today's.
pub fn retention_bound(now_us: i64, days: u32) -> i64 {
    let today = now_us.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY;
    today.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY))
}

impl Store {
    /// Sweep every project with a `retention_days` setting at `now_us`
    /// (µs since the epoch): one request per project with expired rows,
    /// each its own commit. Returns the sweeps that deleted something.
    pub fn apply_retention(&self, now_us: i64) -> Result<Vec<RetentionSweep>> {
        self.inner().writable()?;
        // (project, event name or the whole project, days)
        let settings: Vec<(i64, Option<String>, u32)> = self
            .inner()
            .current_version()?
            .manifest
            .projects
            .iter()
            .flat_map(|(p, s)| {
                let whole = s.retention_days.map(|d| (*p, None, d));
                let events = s
                    .event_retention_days
                    .iter()
                    .map(|(e, d)| (*p, Some(e.clone()), *d));
                whole.into_iter().chain(events)
            })
            .collect();
        let mut out = Vec::new();
        for (project, event, days) in settings {
            let before_us = retention_bound(now_us, days);
            let (pred, tables) = match &event {
                None => (
                    EventPredicate {
                        before_us: Some(before_us),
                        ..Default::default()
                    },
                    Table::ALL.to_vec(),
                ),
                Some(e) => (
                    EventPredicate {
                        events: vec![e.clone()],
                        before_us: Some(before_us),
                        ..Default::default()
                    },
                    vec![Table::Events],
                ),
            };
            if let Some(e) = &event {
                // A sweep of one event's rows reads every older part of
                // the project (a day's part holds other events too): it
                // runs at most hourly for a given bound, and reads a
                // pinned version first, so that the commit lock is taken
                // only when something expired.
                let key = (project, e.clone());
                let recent = self
                    .inner()
                    .retention_swept
                    .lock()
                    .map_err(crate::store::poisoned)?
                    .get(&key)
                    .is_some_and(|(b, at)| *b == before_us && now_us - at < RESWEEP_US);
                if recent {
                    continue;
                }
                let preview = self.preview_events(&crate::EventDeletion {
                    tables: tables.clone(),
                    ..crate::EventDeletion::new(project, pred.clone())
                })?;
                self.inner()
                    .retention_swept
                    .lock()
                    .map_err(crate::store::poisoned)?
                    .insert(key, (before_us, now_us));
                if preview.rows == 0 {
                    continue;
                }
            }
            let mut tx = Transaction::begin(self.inner())?;
            // The setting may have changed since it was read.
            let now_set = tx
                .manifest()
                .projects
                .get(&project)
                .and_then(|s| match &event {
                    None => s.retention_days,
                    Some(e) => s.event_retention_days.get(e).copied(),
                });
            if now_set != Some(days) {
                continue;
            }
            let parts_before = tx
                .manifest()
                .parts
                .iter()
                .filter(|p| p.project_id == project)
                .count();
            let o = self.inner().resolve_events(
                &mut tx,
                RequestKind::Retention,
                project,
                pred,
                tables,
                None,
            )?;
            if o.rows_hidden == 0 {
                // Nothing visible expired: the transaction is dropped
                // uncommitted, and no request is recorded.
                continue;
            }
            let v = tx.commit()?;
            let parts_after = v
                .manifest
                .parts
                .iter()
                .filter(|p| p.project_id == project)
                .count();
            let sweep = RetentionSweep {
                project_id: project,
                event,
                before_us,
                request_id: o.request_id,
                rows_hidden: o.rows_hidden,
                parts_dropped: parts_before.saturating_sub(parts_after),
            };
            tracing::info!(?sweep, "retention sweep");
            out.push(sweep);
        }
        Ok(out)
    }
}
