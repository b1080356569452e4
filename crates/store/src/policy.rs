//! The compaction policy: given a manifest and the clock, what to rewrite.
//!
//! This module is pure: no I/O, no clock of its own, no store handle. It is
//! the *plan* step of plan -> execute -> commit; the worker executes the
//! plan and commits each task through the one commit path. Tests drive it
//! with a fake clock.
//!
//! Two kinds of task:
//!
//! * **purge**: rewrite a part that carries tombstones, without the deleted
//!   rows (a part whose rows are all deleted is simply dropped). Only parts
//!   with deleted rows are ever purged, so the write amplification of
//!   erasure is bounded by the parts that held deleted rows.
//! * **merge**: combine the small parts of one partition (table, project,
//!   day) into parts close to [`CompactionOptions::target_part_bytes`], as
//!   ClickHouse merges do. Parts with tombstones are not merged (they are
//!   purged first), so a merge never has to carry deletions along.
//!
//!   A project with few rows a day would still keep a part per day: 90
//!   days of a small project are 90 files of a few thousand rows, and a
//!   query pays per file more than per row. So the small parts of *closed*
//!   days (before yesterday, UTC) are also merged across days: those of one
//!   (table, project, calendar month) below half of
//!   [`CompactionOptions::span_part_bytes`], in day order, into parts of at
//!   most that size ([`PartMeta::last_day`] records the span). A span stays
//!   within a month, so the rows a time filter cannot prune inside such a
//!   part are at most a month of a small project's; a project whose days
//!   are large keeps its parts per day. Rows stay sorted by
//!   (`distinct_id`, `_seq`) within the merged part, so a distinct id is
//!   still one run per part. The cost in writes: a span below half of
//!   `span_part_bytes` is merged again with the next closed day's parts,
//!   so a small project's month-to-date span is rewritten once a day until
//!   it reaches that half (at most 8 MiB a day per project by default).
//!
//! When a part is purged:
//!
//! 1. a manual run (`elide compact --now`) purges every part with deleted
//!    rows (of one project, if asked);
//! 2. inside an off-peak window (a cron expression in UTC, default
//!    `0 5 * * SUN`, each firing opening a window of
//!    [`CompactionOptions::window_budget`]), every part with deleted rows;
//! 3. outside the window, a part whose deleted fraction is at least
//!    [`CompactionOptions::min_deleted_fraction`];
//! 4. whatever the schedule says, every part that holds rows of a pending
//!    request with less than [`CompactionOptions::deadline_slack`] left
//!    before its `purge_due_by` (creation plus the erasure deadline:
//!    [`CompactionOptions::max_pending_age`], or the project's
//!    `erasure_deadline_days`). These run first, the request whose
//!    deadline comes first first: work is ordered by slack, so a due
//!    request is purged whatever the cron says. A request still pending
//!    after its `purge_due_by` is *overdue* ([`Plan::overdue_requests`]),
//!    which status, metrics and an error-level log line report.
//!
//! A pending request whose cut-off is above the manifest's `flushed_seq`
//! may still have rows in the ingest log: the plan then asks for a flush
//! first ([`Plan::flush_first`]).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::error::{Result, StoreError};
use crate::format::{days_of, month_of, DeletionRequest, Manifest, PartMeta, RequestStatus};
use crate::schema::Table;

/// PostHog's `CLEAR_CLICKHOUSE_REMOVED_DATA_SCHEDULE_CRON` default: Sunday
/// 05:00 UTC.
pub const DEFAULT_CRON: &str = "0 5 * * SUN";

/// The environment variable that overrides the schedule (empty disables
/// scheduled purges).
pub const CRON_ENV: &str = "ELIDE_COMPACTION_CRON";

/// Knobs of compaction, with their defaults.
#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Cron expression (UTC, 5 fields) of the off-peak purge windows;
    /// `None` (or an empty string from the environment) disables scheduled
    /// purges. Default [`DEFAULT_CRON`].
    pub cron: Option<String>,
    /// How long a window stays open after the cron fires. Default 4 h.
    pub window_budget: Duration,
    /// I/O rate limit of purges and merges, bytes read+written per second;
    /// `None` for unlimited. Default 64 MiB/s.
    pub io_bytes_per_sec: Option<u64>,
    /// Size a merge aims at; parts below half of it are "small". Default
    /// 256 MiB.
    pub target_part_bytes: u64,
    /// Outside a window, a part is purged when at least this fraction of
    /// its rows is deleted. Default 0.25.
    pub min_deleted_fraction: f64,
    /// The default erasure deadline: a request's `purge_due_by` is its
    /// creation plus this (a project's `erasure_deadline_days` overrides
    /// it). Default 7 days; GDPR allows one month.
    pub max_pending_age: Duration,
    /// A pending request is purged whatever the schedule once less than
    /// this remains before its `purge_due_by` (the escalation). Default
    /// 1 day.
    pub deadline_slack: Duration,
    /// Whether merges of small parts run outside windows. Default true.
    pub merge_continuously: bool,
    /// Size of a part merged across days (small parts of one project,
    /// table and calendar month, closed days only; see the module doc);
    /// parts below half of it take part. At most `target_part_bytes`; 0
    /// merges within a day only. Default 16 MiB.
    pub span_part_bytes: u64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            cron: Some(DEFAULT_CRON.to_string()),
            window_budget: Duration::from_secs(4 * 3600),
            io_bytes_per_sec: Some(64 << 20),
            target_part_bytes: 256 << 20,
            min_deleted_fraction: 0.25,
            max_pending_age: Duration::from_secs(7 * 86_400),
            deadline_slack: Duration::from_secs(86_400),
            merge_continuously: true,
            span_part_bytes: 16 << 20,
        }
    }
}

impl CompactionOptions {
    /// Apply the value of [`CRON_ENV`] if it is set (`Some`): an empty value
    /// disables scheduled purges, anything else replaces the expression.
    /// Pass `std::env::var(CRON_ENV).ok().as_deref()`.
    pub fn with_cron_env(mut self, value: Option<&str>) -> Self {
        if let Some(v) = value {
            let v = v.trim();
            self.cron = (!v.is_empty()).then(|| v.to_string());
        }
        self
    }
}

/// A parsed off-peak schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    expr: String,
    budget: Duration,
}

impl Schedule {
    /// Parse `expr` (5 fields, UTC). `Ok(None)` for `None` or an empty
    /// expression (scheduled purges disabled).
    pub fn parse(expr: Option<&str>, budget: Duration) -> Result<Option<Schedule>> {
        let Some(expr) = expr.map(str::trim).filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let cron = croner::Cron::from_str(expr).map_err(|e| {
            StoreError::InvalidInput(format!(
                "compaction schedule {expr:?} is not a valid cron expression: {e}"
            ))
        })?;
        Ok(Some(Schedule {
            cron,
            expr: expr.to_string(),
            budget,
        }))
    }

    /// The expression.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The window containing `now_us`, as (start, end) in µs, if any.
    pub fn window_at(&self, now_us: i64) -> Option<(i64, i64)> {
        let now = to_datetime(now_us)?;
        let start = self.cron.find_previous_occurrence(&now, true).ok()?;
        let start_us = start.timestamp_micros();
        let end_us = start_us.saturating_add(self.budget.as_micros() as i64);
        (now_us < end_us).then_some((start_us, end_us))
    }

    /// Start of the next window strictly after `now_us`.
    pub fn next_window_after(&self, now_us: i64) -> Option<i64> {
        let now = to_datetime(now_us)?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp_micros())
    }
}

fn to_datetime(us: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_micros(us).single()
}

/// Why a part is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PurgeReason {
    /// Asked for by hand.
    Manual,
    /// Inside the off-peak window.
    Window,
    /// Deleted fraction above the threshold.
    DeletedFraction,
    /// A pending request's deadline is near or past (less than
    /// `deadline_slack` left).
    Deadline {
        /// The request covering the part whose deadline comes first.
        request_id: u64,
    },
}

/// Rewrite one part without its deleted rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PurgeTask {
    /// The part.
    pub part_id: u64,
    /// Bytes of the part (for the I/O budget and write amplification).
    pub bytes: u64,
    /// Why.
    pub reason: PurgeReason,
}

/// Combine small parts of one partition, or of closed days of one
/// project and month.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MergeTask {
    /// Table of the parts.
    pub table: Table,
    /// Project of the parts.
    pub project_id: i64,
    /// Day of the parts (the first, for a merge across days).
    pub day: i32,
    /// The last day of the parts (`day` for a merge within a day).
    pub last_day: i32,
    /// The parts, in manifest order.
    pub part_ids: Vec<u64>,
    /// Their total size.
    pub bytes: u64,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Some pending request may still have rows in the ingest log: flush
    /// before purging.
    pub flush_first: bool,
    /// Parts to purge: those of due requests first, earliest
    /// `purge_due_by` first; then the largest deleted fraction.
    pub purges: Vec<PurgeTask>,
    /// Merges to run (after the purges).
    pub merges: Vec<MergeTask>,
    /// Whether `now` is inside an off-peak window.
    pub in_window: bool,
    /// End of the current window (µs), if inside one.
    pub window_end_us: Option<i64>,
    /// Start of the next window (µs), if a schedule is set.
    pub next_window_us: Option<i64>,
    /// Pending requests with less than `deadline_slack` left before their
    /// `purge_due_by` (purged whatever the schedule), earliest first.
    pub due_requests: Vec<u64>,
    /// Pending requests past their `purge_due_by`.
    pub overdue_requests: Vec<u64>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        !self.flush_first && self.purges.is_empty() && self.merges.is_empty()
    }
}

/// How the plan is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanRequest {
    /// A manual run: purge every part with deleted rows.
    pub manual: bool,
    /// Restrict purges and merges to one project.
    pub project_id: Option<i64>,
    /// Include merges.
    pub merges: bool,
}

/// The policy: options plus the parsed schedule.
#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    opts: CompactionOptions,
    schedule: Option<Schedule>,
}

impl CompactionPolicy {
    /// Validate the options (the cron expression, the fraction) and build
    /// the policy.
    pub fn new(opts: CompactionOptions) -> Result<CompactionPolicy> {
        if !(0.0..=1.0).contains(&opts.min_deleted_fraction) {
            return Err(StoreError::InvalidInput(format!(
                "min_deleted_fraction must be between 0 and 1, got {}",
                opts.min_deleted_fraction
            )));
        }
        if opts.target_part_bytes == 0 {
            return Err(StoreError::InvalidInput(
                "target_part_bytes must be positive".into(),
            ));
        }
        let schedule = Schedule::parse(opts.cron.as_deref(), opts.window_budget)?;
        Ok(CompactionPolicy { opts, schedule })
    }

    /// The options.
    pub fn options(&self) -> &CompactionOptions {
        &self.opts
    }

    /// The schedule, if scheduled purges are enabled.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Decide what to do at `now_us` (µs since the epoch, UTC).
    pub fn plan(&self, manifest: &Manifest, now_us: i64, req: PlanRequest) -> Plan {
        let window = self.schedule.as_ref().and_then(|s| s.window_at(now_us));
        let next_window_us = self
            .schedule
            .as_ref()
            .and_then(|s| s.next_window_after(now_us));
        let in_project = |p: i64| req.project_id.is_none_or(|want| want == p);

        let slack_us = self.opts.deadline_slack.as_micros() as i64;
        let pending: Vec<_> = manifest
            .requests
            .iter()
            .filter(|r| r.status == RequestStatus::Pending && in_project(r.project_id))
            .collect();
        let due_by = |r: &DeletionRequest| r.due_by_us(self.opts.max_pending_age);
        // Earliest deadline first: the order purges are run in.
        let mut due: Vec<&DeletionRequest> = pending
            .iter()
            .copied()
            .filter(|r| now_us >= due_by(r).saturating_sub(slack_us))
            .collect();
        due.sort_by_key(|r| (due_by(r), r.id));
        let overdue: Vec<u64> = due
            .iter()
            .filter(|r| now_us > due_by(r))
            .map(|r| r.id)
            .collect();
        let flush_first = pending.iter().any(|r| r.cutoff_seq > manifest.flushed_seq);

        // (task, deleted fraction) so that sorting needs no lookups.
        let mut purges: Vec<(PurgeTask, f64)> = Vec::new();
        for p in manifest
            .parts
            .iter()
            // Parts of an unresolved two-phase ingest are left as they
            // are until it is confirmed or voided (bulk.rs).
            .filter(|p| {
                p.deleted() > 0 && in_project(p.project_id) && !manifest.is_pending_part(p.id)
            })
        {
            // `due` is sorted: the first covering request is the most urgent.
            let deadline = due.iter().find(|r| r.parts.contains(&p.id)).map(|r| r.id);
            let fraction = deleted_fraction(p);
            let reason = if let Some(request_id) = deadline {
                Some(PurgeReason::Deadline { request_id })
            } else if req.manual {
                Some(PurgeReason::Manual)
            } else if window.is_some() {
                Some(PurgeReason::Window)
            } else if fraction >= self.opts.min_deleted_fraction {
                Some(PurgeReason::DeletedFraction)
            } else {
                None
            };
            if let Some(reason) = reason {
                let task = PurgeTask {
                    part_id: p.id,
                    bytes: p.size,
                    reason,
                };
                purges.push((task, fraction));
            }
        }
        // Deadlines first (least slack first), then the most deleted.
        let rank: HashMap<u64, usize> = due.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        purges.sort_by(|(a, fa), (b, fb)| {
            let key = |t: &PurgeTask| match t.reason {
                PurgeReason::Deadline { request_id } => {
                    (0, rank.get(&request_id).copied().unwrap_or(usize::MAX))
                }
                _ => (1, 0),
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| fb.total_cmp(fa))
                .then_with(|| a.part_id.cmp(&b.part_id))
        });
        let purges = purges.into_iter().map(|(t, _)| t).collect();

        let merges = if req.merges && (self.opts.merge_continuously || window.is_some()) {
            self.merges(manifest, now_us, &in_project)
        } else {
            Vec::new()
        };

        Plan {
            flush_first,
            purges,
            merges,
            in_window: window.is_some(),
            window_end_us: window.map(|w| w.1),
            next_window_us,
            due_requests: due.iter().map(|r| r.id).collect(),
            overdue_requests: overdue,
        }
    }

    /// Groups of at least two small parts (no tombstones, in no unresolved
    /// two-phase ingest): first of closed days of one (table, project,
    /// month), each group at most `span_part_bytes`; then, of the one-day
    /// parts left, of one partition, each group at most
    /// `target_part_bytes`.
    fn merges(
        &self,
        manifest: &Manifest,
        now_us: i64,
        in_project: &dyn Fn(i64) -> bool,
    ) -> Vec<MergeTask> {
        let clean = |p: &PartMeta| p.deleted() == 0 && !manifest.is_pending_part(p.id);
        let span = self.opts.span_part_bytes.min(self.opts.target_part_bytes);
        // Days before yesterday (UTC) are closed: new rows for them are
        // rare, so late rows seldom rewrite a span (see the module doc
        // for the month-to-date span).
        let closed_before = now_us.div_euclid(crate::MICROS_PER_DAY) as i32 - 1;
        let spans = |p: &PartMeta| {
            span > 0 && clean(p) && p.size < span / 2 && *p.days().end() < closed_before
        };
        let mut out = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for group in groups_by(&manifest.parts, |p| {
            (p.table, p.project_id, month_of(p.day))
        }) {
            if !group.first().is_some_and(|p| in_project(p.project_id)) {
                continue;
            }
            for g in pack(group.iter().copied().filter(|p| spans(p)), span, true) {
                taken.extend(g.iter().map(|p| p.id));
                out.push(merge_task(&g));
            }
        }
        let small = self.opts.target_part_bytes / 2;
        for group in groups_by(&manifest.parts, partition_key) {
            if !group.first().is_some_and(|p| in_project(p.project_id)) {
                continue;
            }
            // Parts spanning several days merge only across days (above),
            // so no part grows past `span_part_bytes` by spanning.
            let candidates = group.iter().copied().filter(|p| {
                clean(p) && p.size < small && p.last_day.is_none() && !taken.contains(&p.id)
            });
            out.extend(
                pack(candidates, self.opts.target_part_bytes, false).map(|g| merge_task(&g)),
            );
        }
        out
    }
}

/// Runs of consecutive parts with the same key (the manifest's order keeps
/// a partition's parts together, and a month's partitions).
fn groups_by<K: PartialEq>(
    parts: &[PartMeta],
    key: impl Fn(&PartMeta) -> K,
) -> impl Iterator<Item = Vec<&PartMeta>> {
    parts
        .chunk_by(move |a, b| key(a) == key(b))
        .map(|c| c.iter().collect())
}

/// The candidates, in order, packed greedily into groups of at most
/// `limit` bytes; only groups of two parts or more. With `whole_days`, the
/// parts of one day go into one group (a day's parts larger than `limit`
/// together are left out: they merge within their day).
fn pack<'a>(
    candidates: impl Iterator<Item = &'a PartMeta>,
    limit: u64,
    whole_days: bool,
) -> impl Iterator<Item = Vec<&'a PartMeta>> {
    let mut units: Vec<Vec<&PartMeta>> = Vec::new();
    for p in candidates {
        match units.last_mut() {
            Some(u) if whole_days && u.last().is_some_and(|q| q.days() == p.days()) => u.push(p),
            _ => units.push(vec![p]),
        }
    }
    let mut groups: Vec<Vec<&PartMeta>> = vec![Vec::new()];
    let mut bytes = 0u64;
    for unit in units {
        let size: u64 = unit.iter().map(|p| p.size).sum();
        if whole_days && size > limit {
            // Left out, and no group spans it.
            groups.push(Vec::new());
            bytes = 0;
            continue;
        }
        if bytes + size > limit && groups.last().is_some_and(|g| !g.is_empty()) {
            groups.push(Vec::new());
            bytes = 0;
        }
        if let Some(g) = groups.last_mut() {
            g.extend(unit);
        }
        bytes += size;
    }
    groups.into_iter().filter(|g| g.len() >= 2)
}

/// The task of a group from [`pack`] (of one table and project).
fn merge_task(group: &[&PartMeta]) -> MergeTask {
    let (table, project_id) = group
        .first()
        .map_or((Table::Events, 0), |p| (p.table, p.project_id));
    let days = days_of(group.iter().copied()).unwrap_or(0..=0);
    MergeTask {
        table,
        project_id,
        day: *days.start(),
        last_day: *days.end(),
        part_ids: group.iter().map(|p| p.id).collect(),
        bytes: group.iter().map(|p| p.size).sum(),
    }
}

fn partition_key(p: &PartMeta) -> (Table, i64, i32) {
    (p.table, p.project_id, p.day)
}

fn deleted_fraction(p: &PartMeta) -> f64 {
    if p.rows == 0 {
        0.0
    } else {
        p.deleted() as f64 / p.rows as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{DeletionRequest, TombstoneRef};

    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;

    /// 2026-11-22 is a Sunday.
    fn at(day: u32, hour: u32, min: u32) -> i64 {
        Utc.with_ymd_and_hms(2026, 11, day, hour, min, 0)
            .single()
            .map(|t| t.timestamp_micros())
            .unwrap()
    }

    fn part(id: u64, project: i64, day: i32, size: u64, rows: u64, deleted: u64) -> PartMeta {
        PartMeta {
            id,
            table: Table::Events,
            project_id: project,
            day,
            last_day: None,
            path: format!("parts/events/{project}/{day}/{id:016x}.parquet"),
            size,
            rows,
            row_groups: vec![rows],
            min_seq: id * 1000,
            max_seq: id * 1000 + rows,
            min_ts: 0,
            max_ts: 0,
            tombstone: (deleted > 0).then(|| TombstoneRef {
                file_id: 99,
                path: "tombstones/0000000000000063.tomb".into(),
                deleted,
            }),
            checksum: None,
            blake3: None,
            runs: None,
        }
    }

    fn request(id: u64, project: i64, cutoff: u64, created_at_us: i64) -> DeletionRequest {
        DeletionRequest {
            project_id: project,
            distinct_ids: vec!["x".into()],
            cutoff_seq: cutoff,
            created_at_us,
            // `parts` is filled by `manifest` from the request's scope.
            ..DeletionRequest::for_test(id)
        }
    }

    /// A manifest whose requests hold every part of their scope with rows
    /// below their cut-off.
    fn manifest(parts: Vec<PartMeta>, mut requests: Vec<DeletionRequest>) -> Manifest {
        let mut m = Manifest::empty();
        for r in &mut requests {
            r.parts = parts
                .iter()
                .filter(|p| {
                    p.project_id == r.project_id
                        && r.tables.contains(&p.table)
                        && p.min_seq < r.cutoff_seq
                })
                .map(|p| p.id)
                .collect();
        }
        m.parts = parts;
        m.requests = requests;
        m.flushed_seq = 1_000_000;
        m
    }

    fn ids(plan: &Plan) -> Vec<u64> {
        plan.purges.iter().map(|t| t.part_id).collect()
    }

    fn policy() -> CompactionPolicy {
        CompactionPolicy::new(CompactionOptions::default()).unwrap()
    }

    #[test]
    fn default_window_is_sunday_five_utc_for_the_budget() {
        let p = policy();
        let s = p.schedule().unwrap();
        assert_eq!(
            s.window_at(at(22, 5, 0)),
            Some((at(22, 5, 0), at(22, 9, 0)))
        );
        assert_eq!(s.window_at(at(22, 8, 59)).map(|w| w.0), Some(at(22, 5, 0)));
        assert_eq!(s.window_at(at(22, 9, 0)), None);
        assert_eq!(s.window_at(at(22, 4, 59)), None);
        assert_eq!(s.window_at(at(21, 5, 30)), None, "Saturday");
        // From Monday the next window is the coming Sunday.
        assert_eq!(s.next_window_after(at(23, 12, 0)), Some(at(29, 5, 0)));
    }

    #[test]
    fn inside_the_window_every_tombstoned_part_is_purged_and_only_those() {
        let m = manifest(
            vec![
                part(1, 1, 10, 100, 1000, 1),
                part(2, 1, 10, 100, 1000, 0),
                part(3, 2, 11, 100, 1000, 10),
            ],
            vec![request(1, 1, 5000, at(22, 4, 0))],
        );
        let plan = policy().plan(&m, at(22, 6, 0), PlanRequest::default());
        assert!(plan.in_window);
        assert_eq!(plan.window_end_us, Some(at(22, 9, 0)));
        // Most deleted first.
        assert_eq!(ids(&plan), vec![3, 1]);
        assert!(plan.purges.iter().all(|t| t.reason == PurgeReason::Window));
    }

    #[test]
    fn outside_the_window_only_heavily_deleted_parts_are_purged() {
        let m = manifest(
            vec![
                part(1, 1, 10, 100, 1000, 1),
                part(2, 1, 10, 100, 1000, 250),
                part(3, 1, 10, 100, 1000, 249),
            ],
            vec![request(1, 1, 5000, at(20, 0, 0))],
        );
        let plan = policy().plan(&m, at(21, 12, 0), PlanRequest::default());
        assert!(!plan.in_window);
        assert_eq!(plan.next_window_us, Some(at(22, 5, 0)));
        assert_eq!(ids(&plan), vec![2]);
        assert_eq!(plan.purges[0].reason, PurgeReason::DeletedFraction);
    }

    #[test]
    fn the_deadline_purges_whatever_the_schedule() {
        // Request 7 from project 1, cut-off 2500: parts 1 and 2 may hold
        // its rows (min_seq below the cut-off), part 3 does not, part 4 is
        // another project.
        let created = at(14, 12, 0);
        let m = manifest(
            vec![
                part(1, 1, 10, 100, 1000, 1),
                part(2, 1, 10, 100, 1000, 1),
                part(3, 1, 10, 100, 1000, 1),
                part(4, 2, 10, 100, 1000, 1),
            ],
            vec![request(7, 1, 2500, created)],
        );
        let no_cron = CompactionPolicy::new(CompactionOptions {
            cron: None,
            ..Default::default()
        })
        .unwrap();
        // Due by created + 7 days; escalated with a day (the slack) left.
        assert_eq!(
            m.requests[0].due_by_us(Duration::from_secs(7 * 86_400)),
            created + 7 * DAY
        );
        // 5 days 23 hours: not yet.
        let plan = no_cron.plan(&m, created + 6 * DAY - HOUR, PlanRequest::default());
        assert!(plan.purges.is_empty() && plan.due_requests.is_empty());
        // 6 days: due (a day of slack left), not overdue.
        let plan = no_cron.plan(&m, created + 6 * DAY, PlanRequest::default());
        assert_eq!(plan.due_requests, vec![7]);
        assert!(plan.overdue_requests.is_empty());
        assert_eq!(ids(&plan), vec![1, 2]);
        // Past 7 days: overdue as well.
        let plan = no_cron.plan(&m, created + 7 * DAY + 1, PlanRequest::default());
        assert_eq!(plan.overdue_requests, vec![7]);
        assert_eq!(ids(&plan), vec![1, 2]);
        assert!(plan
            .purges
            .iter()
            .all(|t| t.reason == PurgeReason::Deadline { request_id: 7 }));
        assert_eq!(plan.next_window_us, None);
    }

    #[test]
    fn work_is_ordered_by_slack_not_by_age() {
        // Request 1 is older but due in 30 days (its project's deadline);
        // request 2 is newer and due in 2 days: its part goes first.
        let mut r1 = request(1, 1, 5000, at(1, 0, 0));
        r1.purge_due_by_us = at(1, 0, 0) + 30 * DAY;
        let mut r2 = request(2, 2, 5000, at(10, 0, 0));
        r2.purge_due_by_us = at(10, 0, 0) + 2 * DAY;
        let m = manifest(
            vec![part(1, 1, 10, 100, 1000, 1), part(2, 2, 10, 100, 1000, 1)],
            vec![r1, r2],
        );
        let no_cron = CompactionPolicy::new(CompactionOptions {
            cron: None,
            ..Default::default()
        })
        .unwrap();
        let plan = no_cron.plan(&m, at(11, 0, 0), PlanRequest::default());
        assert_eq!(plan.due_requests, vec![2]);
        assert_eq!(ids(&plan), vec![2]);
        let plan = no_cron.plan(&m, at(30, 12, 0), PlanRequest::default());
        assert_eq!(plan.due_requests, vec![2, 1]);
        assert_eq!(plan.overdue_requests, vec![2]);
        assert_eq!(ids(&plan), vec![2, 1], "least slack first");
    }

    #[test]
    fn a_manual_run_purges_everything_or_one_project() {
        let m = manifest(
            vec![part(1, 1, 10, 100, 1000, 1), part(2, 2, 10, 100, 1000, 1)],
            vec![],
        );
        let all = policy().plan(
            &m,
            at(23, 12, 0),
            PlanRequest {
                manual: true,
                ..Default::default()
            },
        );
        assert_eq!(ids(&all), vec![1, 2]);
        let one = policy().plan(
            &m,
            at(23, 12, 0),
            PlanRequest {
                manual: true,
                project_id: Some(2),
                merges: false,
            },
        );
        assert_eq!(ids(&one), vec![2]);
        assert_eq!(one.purges[0].reason, PurgeReason::Manual);
    }

    #[test]
    fn rows_still_in_the_log_ask_for_a_flush_first() {
        let mut m = manifest(vec![], vec![request(1, 1, 5000, at(22, 0, 0))]);
        m.flushed_seq = 4000;
        let plan = policy().plan(&m, at(23, 0, 0), PlanRequest::default());
        assert!(plan.flush_first && !plan.is_empty());
        m.flushed_seq = 5000;
        let plan = policy().plan(&m, at(23, 0, 0), PlanRequest::default());
        assert!(!plan.flush_first && plan.is_empty());
    }

    #[test]
    fn merges_group_small_clean_parts_of_one_partition_up_to_the_target() {
        let opts = CompactionOptions {
            target_part_bytes: 1000,
            // Within a day only (across days: the test below).
            span_part_bytes: 0,
            ..Default::default()
        };
        let m = manifest(
            vec![
                part(1, 1, 10, 300, 10, 0),
                part(2, 1, 10, 300, 10, 0),
                part(3, 1, 10, 300, 10, 0),
                part(4, 1, 10, 300, 10, 0),
                part(5, 1, 10, 300, 10, 3), // tombstoned: purged, not merged
                part(6, 1, 10, 900, 10, 0), // not small
                part(7, 1, 11, 300, 10, 0), // alone in its partition
                part(8, 2, 10, 100, 10, 0),
                part(9, 2, 10, 100, 10, 0),
            ],
            vec![],
        );
        let p = CompactionPolicy::new(opts).unwrap();
        let req = PlanRequest {
            merges: true,
            ..Default::default()
        };
        let plan = p.plan(&m, at(23, 0, 0), req);
        let groups: Vec<Vec<u64>> = plan.merges.iter().map(|g| g.part_ids.clone()).collect();
        assert_eq!(groups, vec![vec![1, 2, 3], vec![8, 9]]);
        // Part 4 is left alone (a group of one); the merge never exceeds
        // the target.
        assert!(plan
            .merges
            .iter()
            .all(|g| g.bytes <= 1000 || g.day == g.last_day));
        let plan = p.plan(
            &m,
            at(23, 0, 0),
            PlanRequest {
                project_id: Some(2),
                ..req
            },
        );
        assert_eq!(plan.merges.len(), 1);
        assert_eq!(plan.merges[0].project_id, 2);
    }

    /// Day number of 2026-`month`-`day`.
    fn day_no(month: u32, day: u32) -> i32 {
        let d = chrono::NaiveDate::from_ymd_opt(2026, month, day).unwrap();
        d.signed_duration_since(chrono::NaiveDate::default())
            .num_days() as i32
    }

    #[test]
    fn merges_across_days_group_small_parts_of_closed_days_of_one_month() {
        let opts = CompactionOptions {
            target_part_bytes: 10_000,
            span_part_bytes: 1000,
            ..Default::default()
        };
        let mut spanning = part(13, 3, day_no(11, 1), 300, 10, 0);
        spanning.last_day = Some(day_no(11, 10));
        let mut big_span = part(17, 4, day_no(11, 1), 600, 10, 0);
        big_span.last_day = Some(day_no(11, 10));
        let m = manifest(
            vec![
                part(1, 1, day_no(10, 30), 300, 10, 0),
                part(2, 1, day_no(10, 31), 300, 10, 0),
                // November: a new month, a new group.
                part(3, 1, day_no(11, 1), 300, 10, 0),
                part(4, 1, day_no(11, 2), 300, 10, 0),
                part(5, 1, day_no(11, 3), 300, 10, 0),
                part(15, 1, day_no(11, 3), 300, 10, 0), // the 3rd's parts stay together
                part(6, 1, day_no(11, 4), 300, 10, 0),
                part(7, 1, day_no(11, 5), 600, 10, 0), // not below half the span
                part(8, 1, day_no(11, 6), 300, 10, 3), // tombstoned
                part(9, 1, day_no(11, 21), 300, 10, 0), // the last closed day
                // Yesterday (the clock is on the 23rd): within the day only.
                part(10, 1, day_no(11, 22), 300, 10, 0),
                part(11, 1, day_no(11, 22), 300, 10, 0),
                part(12, 2, day_no(11, 1), 300, 10, 0), // alone in its project
                spanning,
                part(14, 3, day_no(11, 5), 300, 10, 0),
                // A span too large to span again, and a later part of its
                // first day: not merged within that day (the span would
                // grow past `span_part_bytes`).
                big_span,
                part(18, 4, day_no(11, 1), 600, 10, 0),
                // Day 8's parts together are larger than the span: left
                // to merge within their day, and no span across them.
                part(19, 5, day_no(11, 7), 300, 10, 0),
                part(20, 5, day_no(11, 8), 400, 10, 0),
                part(21, 5, day_no(11, 8), 400, 10, 0),
                part(22, 5, day_no(11, 8), 400, 10, 0),
                part(23, 5, day_no(11, 9), 300, 10, 0),
            ],
            vec![],
        );
        let req = PlanRequest {
            merges: true,
            ..Default::default()
        };
        let p = CompactionPolicy::new(opts.clone()).unwrap();
        let plan = p.plan(&m, at(23, 0, 0), req);
        let got: Vec<(Vec<u64>, i32, i32)> = plan
            .merges
            .iter()
            .map(|g| (g.part_ids.clone(), g.day, g.last_day))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![1, 2], day_no(10, 30), day_no(10, 31)),
                (vec![3, 4], day_no(11, 1), day_no(11, 2)),
                (vec![5, 15, 6], day_no(11, 3), day_no(11, 4)),
                // 9 alone: the group would be larger than the span.
                (vec![13, 14], day_no(11, 1), day_no(11, 10)),
                (vec![10, 11], day_no(11, 22), day_no(11, 22)),
                (vec![20, 21, 22], day_no(11, 8), day_no(11, 8)),
            ]
        );
        assert!(plan
            .merges
            .iter()
            .all(|g| g.bytes <= 1000 || g.day == g.last_day));
        // A day later, the 22nd is closed too: its parts join the 21st's.
        let plan = p.plan(&m, at(24, 0, 0), req);
        assert!(
            plan.merges.iter().any(|g| g.part_ids == vec![9, 10, 11]),
            "{plan:?}"
        );
        // `span_part_bytes: 0`: within a day only.
        let p = CompactionPolicy::new(CompactionOptions {
            span_part_bytes: 0,
            ..opts
        })
        .unwrap();
        let plan = p.plan(&m, at(23, 0, 0), req);
        let groups: Vec<Vec<u64>> = plan.merges.iter().map(|g| g.part_ids.clone()).collect();
        assert_eq!(groups, vec![vec![5, 15], vec![10, 11], vec![20, 21, 22]]);
    }

    #[test]
    fn the_environment_overrides_or_disables_the_schedule() {
        let o = CompactionOptions::default().with_cron_env(Some(""));
        assert!(CompactionPolicy::new(o).unwrap().schedule().is_none());
        let o = CompactionOptions::default().with_cron_env(Some("30 2 * * *"));
        let p = CompactionPolicy::new(o).unwrap();
        assert_eq!(p.schedule().unwrap().expr(), "30 2 * * *");
        assert!(p.schedule().unwrap().window_at(at(24, 3, 0)).is_some());
        let o = CompactionOptions::default().with_cron_env(None);
        assert_eq!(o.cron.as_deref(), Some(DEFAULT_CRON));
    }

    #[test]
    fn bad_options_are_clear_errors() {
        let e = CompactionPolicy::new(CompactionOptions {
            cron: Some("every sunday".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("every sunday"), "{e}");
        assert!(CompactionPolicy::new(CompactionOptions {
            min_deleted_fraction: 1.5,
            ..Default::default()
        })
        .is_err());
    }
}
