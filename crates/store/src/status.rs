//! [`Store::status`]: per-partition figures (parts, rows, tombstoned rows,
//! bytes awaiting purge), buffered rows, and the deletion requests'
//! lifecycle at a glance (pending, overdue, next purge due, next window,
//! last compaction) — what `elide status`, the server's `/metrics` and
//! embedders read. Counts tombstone bits only: rows of logical requests
//! (`undo.rs`) are not among the tombstoned rows until resolved.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Result;
use crate::format::{DeletionRequest, RequestStatus};
use crate::schema::Table;
use crate::store::{now_us, poisoned, Store};
use crate::wal;

/// Per-partition figures for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStatus {
    /// Table.
    pub table: Table,
    /// Project.
    pub project_id: i64,
    /// Day (`YYYY-MM-DD`); the first day of parts merged across days.
    pub day: String,
    /// The last day of parts merged across days (`YYYY-MM-DD`): a
    /// partition of their own (they are listed apart from the parts of
    /// `day` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_day: Option<String>,
    /// Number of parts.
    pub parts: usize,
    /// Rows in the parts (deleted included).
    pub rows: u64,
    /// Rows hidden by tombstones.
    pub tombstoned_rows: u64,
    /// `tombstoned_rows / rows`.
    pub tombstoned_fraction: f64,
    /// Bytes of the parts.
    pub bytes: u64,
    /// Bytes of the parts that carry tombstones (what a purge rewrites).
    pub bytes_awaiting_purge: u64,
}

/// Totals over every partition of [`StoreStatus`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StatusTotals {
    /// Parts in the manifest.
    pub parts: usize,
    /// Parts that carry tombstones (what a purge would rewrite).
    pub parts_with_tombstones: usize,
    /// Rows in the parts (deleted included).
    pub rows: u64,
    /// Rows of the parts hidden by tombstones.
    pub tombstoned_rows: u64,
    /// Rows a query sees: part rows not tombstoned, plus buffered rows not
    /// hidden.
    pub visible_rows: u64,
    /// Bytes of the parts.
    pub bytes: u64,
    /// Bytes of the parts that carry tombstones.
    pub bytes_awaiting_purge: u64,
}

/// A summary of the store's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    /// Manifest version.
    pub version: u64,
    /// Totals over every partition and the buffered rows.
    pub totals: StatusTotals,
    /// Next `_seq`.
    pub next_seq: u64,
    /// Partitions.
    pub partitions: Vec<PartitionStatus>,
    /// Rows in memtables (not yet in parts).
    pub memtable_rows: u64,
    /// Memtable rows hidden by deletions.
    pub memtable_deleted_rows: u64,
    /// Deletion requests not yet purged.
    pub pending_requests: Vec<DeletionRequest>,
    /// Number of ingest-log segments on disk.
    pub wal_segments: usize,
    /// Requests by status.
    pub requests_pending: usize,
    /// Requests purged, not yet verified.
    pub requests_purged: usize,
    /// Requests verified.
    pub requests_verified: usize,
    /// Age of the oldest pending request, in seconds.
    pub oldest_pending_age_s: Option<u64>,
    /// The earliest `purge_due_by` of a pending request (µs since the
    /// epoch, UTC).
    pub next_purge_due_us: Option<i64>,
    /// Pending requests past their `purge_due_by`.
    pub requests_overdue: Vec<u64>,
    /// Pending requests still hidden by their predicate only (an undo
    /// window open, or a resolution in the background; `undo.rs`): not
    /// counted in `tombstoned_rows`.
    pub requests_logical: usize,
    /// Requests cancelled inside their undo window.
    pub requests_cancelled: usize,
    /// The off-peak schedule (cron, UTC), if scheduled purges are on.
    pub schedule: Option<String>,
    /// Start of the next off-peak window (µs since the epoch, UTC).
    pub next_window_us: Option<i64>,
    /// Figures of the last compaction run.
    pub last_compaction: Option<crate::format::CompactionSummary>,
}

impl Store {
    /// Partition figures, buffered rows and pending requests.
    pub fn status(&self) -> Result<StoreStatus> {
        let (version, memtable_rows, memtable_deleted_rows) = {
            let st = self.inner().state.lock().map_err(poisoned)?;
            let rows = st.active.rows + st.frozen.iter().map(|m| m.rows).sum::<usize>();
            (
                Arc::clone(&st.version),
                rows as u64,
                st.mem_deleted.cardinality(),
            )
        };
        let m = &version.manifest;
        let mut parts: BTreeMap<(Table, i64, i32, Option<i32>), PartitionStatus> = BTreeMap::new();
        for p in &m.parts {
            let e = parts
                .entry((p.table, p.project_id, p.day, p.last_day))
                .or_insert_with(|| PartitionStatus {
                    table: p.table,
                    project_id: p.project_id,
                    day: crate::format::day_to_string(p.day),
                    last_day: p.last_day.map(crate::format::day_to_string),
                    parts: 0,
                    rows: 0,
                    tombstoned_rows: 0,
                    tombstoned_fraction: 0.0,
                    bytes: 0,
                    bytes_awaiting_purge: 0,
                });
            e.parts += 1;
            e.rows += p.rows;
            e.tombstoned_rows += p.deleted();
            e.bytes += p.size;
            if p.deleted() > 0 {
                e.bytes_awaiting_purge += p.size;
            }
        }
        let mut totals = StatusTotals::default();
        for e in parts.values_mut() {
            e.tombstoned_fraction = e.tombstoned_rows as f64 / e.rows.max(1) as f64;
            totals.rows += e.rows;
            totals.tombstoned_rows += e.tombstoned_rows;
            totals.bytes += e.bytes;
            totals.bytes_awaiting_purge += e.bytes_awaiting_purge;
        }
        totals.parts = m.parts.len();
        totals.parts_with_tombstones = m.parts.iter().filter(|p| p.deleted() > 0).count();
        totals.visible_rows = totals.rows.saturating_sub(totals.tombstoned_rows)
            + memtable_rows.saturating_sub(memtable_deleted_rows);
        let now = now_us();
        let count = |s: RequestStatus| m.requests.iter().filter(|r| r.status == s).count();
        Ok(StoreStatus {
            version: m.version,
            totals,
            next_seq: m.next_seq.max(self.inner().next_seq()?),
            partitions: parts.into_values().collect(),
            memtable_rows,
            memtable_deleted_rows,
            pending_requests: m
                .requests
                .iter()
                .filter(|r| r.status == RequestStatus::Pending)
                .cloned()
                .collect(),
            wal_segments: wal::list_segments(&self.inner().wal_dir)?.len(),
            requests_pending: count(RequestStatus::Pending),
            requests_purged: count(RequestStatus::Purged),
            requests_verified: count(RequestStatus::Verified),
            oldest_pending_age_s: m
                .requests
                .iter()
                .filter(|r| r.status == RequestStatus::Pending)
                .map(|r| (now.saturating_sub(r.created_at_us).max(0) / 1_000_000) as u64)
                .max(),
            next_purge_due_us: m
                .requests
                .iter()
                .filter(|r| r.status == RequestStatus::Pending)
                .map(|r| r.due_by_us(self.inner().policy.options().max_pending_age))
                .min(),
            requests_overdue: m
                .requests
                .iter()
                .filter(|r| {
                    r.status == RequestStatus::Pending
                        && now > r.due_by_us(self.inner().policy.options().max_pending_age)
                })
                .map(|r| r.id)
                .collect(),
            requests_logical: m.requests.iter().filter(|r| r.logical).count(),
            requests_cancelled: count(RequestStatus::Cancelled),
            schedule: self.inner().policy.schedule().map(|s| s.expr().to_string()),
            next_window_us: self
                .inner()
                .policy
                .schedule()
                .and_then(|s| s.next_window_after(now)),
            last_compaction: m.last_compaction.clone(),
        })
    }
}
