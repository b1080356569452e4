//! Compaction: the *execute* and *commit* steps of plan -> execute ->
//! commit (the plan is [`crate::policy`]), and the deletion-request
//! lifecycle that follows a run.
//!
//! ```text
//!  plan ──► [flush first] ──► for each task (purge, then merge):
//!            pin the version it reads (GC keeps its files)
//!            read the input part(s), skipping rows deleted *as of that version*
//!            write the output part (sorted by distinct_id, _seq); fsync
//!            ── commit lock ──
//!            inputs still live?  no ─► abandon: the output is discarded
//!            deletions committed since the read ─► carried onto the output
//!                                                 through the old→new row map
//!            swap: inputs leave the manifest, the output joins; commit
//!        ──► lifecycle: GC; pending ─► purged ─► (verification scan) ─► verified
//! ```
//!
//! The row map of a purge is implicit: the output keeps the input's rows
//! in order minus the rows deleted at read time, so old row `i` (not
//! deleted then) is new row `i - rank(deleted, i)`. A merge re-sorts, so
//! its map is explicit (one `u32` per input row).
//!
//! Invariants: a compaction never aborts because of a deletion, never
//! resurrects a deleted row (late deletions are carried over in the same
//! commit as the swap), and never loses a live row (the output holds every
//! row not deleted at read time; commits are atomic). A crash before the
//! swap's manifest leaves the old state (the output file is swept at open),
//! after it the new one.
//!
//! Lifecycle (see docs/deletion-lifecycle.md): a request is `purged` when
//! no live part holds its rows (`parts` empty), every file that held them
//! is gone from disk (`awaiting_removal` checked against storage), and
//! every row below its cut-off has been flushed (the ingest log holding
//! them is removed with the flush). It is `verified` when a scan of the
//! `distinct_id` and `_seq` columns of every live part of its project
//! finds no row of its distinct ids below its cut-off; its distinct ids
//! are then replaced by keyed hashes.
//!
//! Here: the run ([`Store::compact`]), its reports, and the swap. The
//! execute step is `rewrite`, the pace of a throttled run `throttle`, and
//! the lifecycle after a run `advance`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croaring::Bitmap;

use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::{CompactionSummary, PartMeta};
use crate::gc::LiveGuard;
use crate::part::WrittenPart;
use crate::policy::{Plan, PlanRequest, PurgeReason};
use crate::store::{now_us, Inner, Store, Version};
use crate::Table;

mod advance;
mod rewrite;
mod throttle;

use advance::advance_requests;
use rewrite::{prepare_merge, prepare_purge};
use throttle::Throttle;

/// One planned task.
enum Job<'a> {
    Purge(&'a crate::policy::PurgeTask),
    Merge(&'a crate::policy::MergeTask),
}

/// Most prepared rewrites swapped in by one commit.
const SWAP_BATCH: usize = 32;
/// Longest a prepared rewrite waits for its batch's commit.
const SWAP_INTERVAL: Duration = Duration::from_secs(2);

/// How a compaction run is asked for. Build one with a named
/// constructor, which means what the command line's flags mean:
///
/// | constructor | `elide compact` | does |
/// |---|---|---|
/// | [`CompactRequest::scheduled`] (= `Default`) | no flag | what the policy plans at this time: purges in the off-peak window, by the erasure deadline or over the deleted-fraction threshold, and merges of small parts |
/// | [`CompactRequest::now`] | `--now` | purge every part with deleted rows now (and merge) |
///
/// then narrow it with [`project`](CompactRequest::project),
/// [`without_merges`](CompactRequest::without_merges) (`--no-merge`) or
/// [`io_limit`](CompactRequest::io_limit) (`--io-limit-mib`).
#[derive(Debug, Clone)]
pub struct CompactRequest {
    /// Purge every part with deleted rows now (`elide compact --now`);
    /// otherwise do what the policy says at this time.
    pub manual: bool,
    /// Only this project.
    pub project_id: Option<i64>,
    /// Also run merges of small parts.
    pub merges: bool,
    /// Throttle reads+writes to this many bytes per second.
    pub io_bytes_per_sec: Option<u64>,
    /// Start no new task after this instant (the window's time budget).
    pub deadline: Option<Instant>,
    /// The clock, for tests (µs since the epoch, UTC); `None` = now.
    pub now_us: Option<i64>,
    /// Tasks prepared at once, each on a thread of its own (reading,
    /// rewriting and compressing a part is CPU-bound); commits stay on
    /// the calling thread. [`CompactRequest::scheduled`] (the background
    /// worker): 1, which leaves the other cores to queries;
    /// [`CompactRequest::now`]: the machine's cores, at most 4 (each task
    /// holds its part in memory). 0 counts as 1.
    pub threads: usize,
}

impl Default for CompactRequest {
    /// [`CompactRequest::scheduled`].
    fn default() -> Self {
        CompactRequest::scheduled()
    }
}

impl CompactRequest {
    /// Do what the compaction policy plans at this time, merges included
    /// (`elide compact`; what the background worker runs).
    pub fn scheduled() -> CompactRequest {
        CompactRequest {
            manual: false,
            project_id: None,
            merges: true,
            io_bytes_per_sec: None,
            deadline: None,
            now_us: None,
            threads: 1,
        }
    }

    /// Purge every part with deleted rows now, whatever the schedule,
    /// and merge small parts (`elide compact --now`).
    pub fn now() -> CompactRequest {
        CompactRequest {
            manual: true,
            // At most 4: each task holds its inputs' batches and its
            // output in memory until it is committed.
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            ..CompactRequest::scheduled()
        }
    }

    /// Only `project_id`'s parts (`--project`).
    pub fn project(mut self, project_id: i64) -> CompactRequest {
        self.project_id = Some(project_id);
        self
    }

    /// Run no merges of small parts (`--no-merge`).
    pub fn without_merges(mut self) -> CompactRequest {
        self.merges = false;
        self
    }

    /// Throttle reads and writes to `bytes_per_sec` (`--io-limit-mib`).
    pub fn io_limit(mut self, bytes_per_sec: u64) -> CompactRequest {
        self.io_bytes_per_sec = Some(bytes_per_sec);
        self
    }
}

/// What kind of rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Rewrite one part without its deleted rows.
    Purge,
    /// Combine small parts of one partition, or of several days of one
    /// project and month.
    Merge,
}

/// What happened to one task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    /// The swap committed.
    Committed,
    /// An input left the manifest meanwhile (project dropped, part removed):
    /// the output was discarded.
    Abandoned,
}

/// One executed task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskReport {
    /// Purge or merge.
    pub kind: TaskKind,
    /// Why a purge ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<PurgeReason>,
    /// Table of the parts.
    pub table: Table,
    /// Project of the parts.
    pub project_id: i64,
    /// Day of the parts (`YYYY-MM-DD`); the first of them for a merge
    /// that spans several days.
    pub day: String,
    /// The last day of a merge that spans several days (`YYYY-MM-DD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_day: Option<String>,
    /// Parts read.
    pub inputs: Vec<u64>,
    /// Part written (`None` when every row was deleted).
    pub output: Option<u64>,
    /// Rows in the inputs (deleted included).
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Deleted rows removed.
    pub rows_dropped: u64,
    /// Deletions committed during the rewrite, carried onto the output.
    pub rows_carried: u64,
    /// Bytes of the inputs.
    pub bytes_in: u64,
    /// Bytes of the output.
    pub bytes_out: u64,
    /// Wall time of the read and write (the swap is committed with its
    /// batch; see [`CompactionReport::swap_commit_ms`]).
    pub elapsed_ms: u64,
    /// Committed or abandoned.
    pub outcome: TaskOutcome,
}

/// Result of [`Store::compact`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompactionReport {
    /// The plan that was executed.
    pub plan: Plan,
    /// Whether buffered rows were flushed first.
    pub flushed: bool,
    /// Executed tasks, in order.
    pub tasks: Vec<TaskReport>,
    /// Tasks not started because the time budget ran out or the store closed.
    pub skipped_tasks: usize,
    /// Commits that swapped the tasks in (one per batch).
    pub swap_commits: usize,
    /// Wall time of those commits.
    pub swap_commit_ms: f64,
    /// Requests that became `purged` in this run.
    pub requests_purged: Vec<u64>,
    /// Requests that became `verified` in this run.
    pub requests_verified: Vec<u64>,
    /// Purged requests whose verification found rows (should never happen;
    /// reported, and the request stays `purged`).
    pub verification_failures: Vec<String>,
    /// The summary kept in the manifest.
    pub summary: CompactionSummary,
    /// Parts written before `.runs` files existed that were given one
    /// (see `runs_backfill.rs`).
    pub runs_files_written: usize,
    /// Time the run's threads slept to leave the CPU to queries reading
    /// parts (a throttled run only; summed over threads).
    pub yielded_to_queries_ms: f64,
}

/// Progress of a run, for progress bars.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// The plan is known: this many tasks and input bytes.
    Planned {
        /// Tasks.
        tasks: usize,
        /// Bytes of the input parts.
        bytes: u64,
    },
    /// Input bytes processed so far.
    Bytes(u64),
    /// Checking requests (GC, purged, verification scan).
    Lifecycle,
}

/// Position map from an input's rows to the output's.
enum RowMap {
    /// New = old - rank(deleted at read, old).
    Rank,
    /// One entry per input row (`u32::MAX`: not in the output).
    Explicit(Vec<u32>),
}

struct RewriteInput {
    meta: PartMeta,
    read_deleted: Bitmap,
    map: RowMap,
}

/// A rewrite whose output is written and durable, waiting for its swap.
pub struct PreparedRewrite {
    kind: TaskKind,
    reason: Option<PurgeReason>,
    inputs: Vec<RewriteInput>,
    output: Option<WrittenPart>,
    first_late_request: u64,
    /// Wall time of the read and write.
    prepare: Duration,
    _pin: LiveGuard,
}

impl std::fmt::Debug for PreparedRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRewrite")
            .field("kind", &self.kind)
            .field(
                "inputs",
                &self.inputs.iter().map(|i| i.meta.id).collect::<Vec<_>>(),
            )
            .field("output", &self.output.as_ref().map(|o| o.meta.id))
            .finish()
    }
}

#[cfg(feature = "testing")]
impl PreparedRewrite {
    /// Id of the part written, if any row survived.
    pub fn output(&self) -> Option<u64> {
        self.output.as_ref().map(|o| o.meta.id)
    }
}

impl Store {
    /// Run one compaction: plan, flush if a pending request still has rows
    /// in the ingest log, purge and merge, then advance the deletion
    /// requests (purged, verified). One run at a time per store.
    ///
    /// ```no_run
    /// # fn f(store: &elide_store::Store) -> elide_store::Result<()> {
    /// use elide_store::CompactRequest;
    /// let report = store.compact(CompactRequest::now())?; // `elide compact --now`
    /// println!("{} deleted rows removed", report.summary.rows_dropped);
    /// # Ok(()) }
    /// ```
    pub fn compact(&self, req: CompactRequest) -> Result<CompactionReport> {
        run(self.inner(), req, &mut |_| {})
    }

    /// [`Store::compact`], calling `progress` as tasks start and finish
    /// (the command line draws its progress bar from it).
    pub fn compact_with_progress(
        &self,
        req: CompactRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<CompactionReport> {
        run(self.inner(), req, progress)
    }

    /// Read and write a purge of one part without committing it (the first
    /// half of a task; tests use it to interleave other operations).
    /// `Ok(None)` if the part is not live.
    #[cfg(feature = "testing")]
    pub fn prepare_purge(&self, part_id: u64) -> Result<Option<PreparedRewrite>> {
        prepare_purge(self.inner(), part_id, None, &Throttle::none(), &|| false)
    }

    /// Read and write a merge of parts (of one table, project and month)
    /// without committing.
    #[cfg(feature = "testing")]
    pub fn prepare_merge(&self, part_ids: &[u64]) -> Result<Option<PreparedRewrite>> {
        prepare_merge(self.inner(), part_ids, &Throttle::none(), &|| false)
    }

    /// Swap a prepared rewrite in (the second half of a task).
    #[cfg(feature = "testing")]
    pub fn commit_rewrite(&self, prepared: PreparedRewrite) -> Result<TaskReport> {
        commit_rewrite(self.inner(), prepared)
    }

    /// Advance deletion requests: collect garbage, mark `purged` and run
    /// the verification scan. Part of every [`Store::compact`].
    pub fn advance_requests(&self) -> Result<(Vec<u64>, Vec<u64>, Vec<String>)> {
        let inner = self.inner();
        let _one = inner.compaction_lock.lock().map_err(|_| {
            StoreError::Internal("compaction lock poisoned (a compaction panicked)".into())
        })?;
        advance_requests(inner, None)
    }
}

pub(crate) fn run(
    inner: &Inner,
    req: CompactRequest,
    progress: &mut dyn FnMut(Progress),
) -> Result<CompactionReport> {
    let _one = inner.compaction_lock.lock().map_err(|_| {
        StoreError::Internal("compaction lock poisoned (a compaction panicked)".into())
    })?;
    let started = Instant::now();
    // Take the distinct-id index first: the build started at open pins
    // the version it reads, which would keep the purged files on disk
    // (and the requests pending) until it finishes.
    // The wait happens before the commit lock is taken, so deletions meanwhile
    // do not queue behind it (they read `.runs` files).
    if inner.index_build.wait_done() {
        Transaction::begin(inner)?.index()?;
    }
    let now = req.now_us.unwrap_or_else(now_us);
    // Logical requests whose undo window has ended (and bridged ones)
    // get their bits first, so that this run can purge them.
    if let Err(e) = inner.resolve_logical_locked(now) {
        tracing::warn!(error = %e, "resolving logical deletion requests failed; will retry");
    }
    let plan_req = PlanRequest {
        manual: req.manual,
        project_id: req.project_id,
        merges: req.merges,
    };
    let mut plan = inner
        .policy
        .plan(&inner.current_version()?.manifest, now, plan_req);
    let mut flushed = false;
    if plan.flush_first {
        inner.flush_all()?;
        flushed = true;
        // The flush may have carried late deletions onto new parts.
        plan = inner
            .policy
            .plan(&inner.current_version()?.manifest, now, plan_req);
    }
    let total: u64 = plan.purges.iter().map(|t| t.bytes).sum::<u64>()
        + plan.merges.iter().map(|t| t.bytes).sum::<u64>();
    progress(Progress::Planned {
        tasks: plan.purges.len() + plan.merges.len(),
        bytes: total,
    });
    tracing::info!(
        purges = plan.purges.len(),
        merges = plan.merges.len(),
        bytes = total,
        manual = req.manual,
        "compaction started"
    );
    let throttle = Throttle::new(
        req.io_bytes_per_sec,
        Some(inner.scans.clone()),
        Some(&inner.closing),
    );
    let cancelled = || inner.closing.load(Ordering::Acquire);
    let mut tasks = Vec::new();
    let mut skipped = 0;
    let mut done_bytes = 0u64;
    let over_budget = || cancelled() || req.deadline.is_some_and(|d| Instant::now() >= d);
    // Prepared rewrites are swapped in batches: one commit (one manifest
    // write and fsync) per SWAP_BATCH tasks or SWAP_INTERVAL, whichever
    // comes first, so that many small parts do not pay a commit each.
    let mut batch: Vec<PreparedRewrite> = Vec::new();
    let mut batch_started = Instant::now();
    let mut swap_commits = 0;
    let mut swap_time = Duration::ZERO;
    let mut flush_batch = |batch: &mut Vec<PreparedRewrite>, tasks: &mut Vec<TaskReport>| {
        if batch.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(batch);
        let t = Instant::now();
        tasks.extend(commit_rewrites(inner, ready)?);
        swap_time += t.elapsed();
        swap_commits += 1;
        Ok::<(), StoreError>(())
    };
    // Purges first, then merges. Up to `threads` tasks are prepared at
    // once, each taken in plan order by the next free thread; the calling
    // thread receives them as they finish and commits them in batches.
    // Tasks are independent: each reads the version it pins, and a swap
    // whose input left the manifest meanwhile (a merge of a part another
    // task purged) is abandoned at commit, as with any concurrent change.
    let jobs: Vec<(u64, Job)> = plan
        .purges
        .iter()
        .map(|t| (t.bytes, Job::Purge(t)))
        .chain(plan.merges.iter().map(|t| (t.bytes, Job::Merge(t))))
        .collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut first_error: Option<StoreError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..req.threads.clamp(1, jobs.len().max(1)) {
            let tx = tx.clone();
            let (jobs, next, failed, throttle) = (&jobs, &next, &failed, &throttle);
            let (over_budget, cancelled) = (&over_budget, &cancelled);
            // A task stops early when the store closes or another failed.
            let stop = move || cancelled() || failed.load(Ordering::Acquire);
            scope.spawn(move || {
                Throttle::start_slice();
                while let Some((bytes, job)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // After a failure the remaining tasks are not started.
                    let prepared = if failed.load(Ordering::Acquire) || over_budget() {
                        None
                    } else {
                        // A panic is this task's error, not the run's end:
                        // the caller still discards what was prepared. An
                        // output written before the panic has no handle
                        // left to discard it by: GC is told that an
                        // unreferenced file may be on disk.
                        let task = std::panic::AssertUnwindSafe(|| match job {
                            Job::Purge(t) => {
                                prepare_purge(inner, t.part_id, Some(t.reason), throttle, &stop)
                            }
                            Job::Merge(t) => prepare_merge(inner, &t.part_ids, throttle, &stop),
                        });
                        Some(std::panic::catch_unwind(task).unwrap_or_else(|_| {
                            inner.gc.mark_orphans();
                            Err(StoreError::Internal("a compaction task panicked".into()))
                        }))
                    };
                    if tx.send((*bytes, prepared)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (bytes, prepared) in rx {
            let prepared = match prepared {
                None => {
                    skipped += 1;
                    continue;
                }
                Some(p) if first_error.is_some() => {
                    // Never published: remove what a task finished after
                    // another failed.
                    if let Ok(Some(p)) = p {
                        discard(inner, p);
                    }
                    continue;
                }
                Some(p) => p,
            };
            let committed = match discard_on_error(inner, &mut batch, prepared) {
                Ok(Some(p)) => {
                    if batch.is_empty() {
                        batch_started = Instant::now();
                    }
                    batch.push(p);
                    if batch.len() >= SWAP_BATCH || batch_started.elapsed() >= SWAP_INTERVAL {
                        flush_batch(&mut batch, &mut tasks)
                    } else {
                        Ok(())
                    }
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                failed.store(true, Ordering::Release);
                first_error = Some(e);
                continue;
            }
            done_bytes += bytes;
            progress(Progress::Bytes(done_bytes));
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    flush_batch(&mut batch, &mut tasks)?;
    let runs_files_written = if over_budget() {
        0
    } else {
        crate::runs_backfill::backfill(inner, &over_budget).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "writing .runs files for older parts failed; will retry");
            0
        })
    };
    progress(Progress::Lifecycle);
    let committed = || tasks.iter().filter(|t| t.outcome == TaskOutcome::Committed);
    let mut summary = CompactionSummary {
        finished_at_us: 0,
        elapsed_ms: 0,
        parts_purged: committed().filter(|t| t.kind == TaskKind::Purge).count() as u64,
        parts_merged: committed()
            .filter(|t| t.kind == TaskKind::Merge)
            .map(|t| t.inputs.len() as u64)
            .sum(),
        parts_written: committed().filter(|t| t.output.is_some()).count() as u64,
        rows_dropped: committed().map(|t| t.rows_dropped).sum(),
        bytes_read: committed().map(|t| t.bytes_in).sum(),
        bytes_written: committed().map(|t| t.bytes_out).sum(),
        requests_purged: 0,
        requests_verified: 0,
    };
    // Sets the summary's wall time too (the manifest records it).
    let (purged, verified, failures) = advance_requests(inner, Some((&mut summary, started)))?;
    tracing::info!(
        tasks = tasks.len(),
        skipped,
        rows_dropped = summary.rows_dropped,
        bytes_read = summary.bytes_read,
        bytes_written = summary.bytes_written,
        purged = purged.len(),
        verified = verified.len(),
        elapsed_ms = summary.elapsed_ms,
        "compaction finished"
    );
    Ok(CompactionReport {
        plan,
        flushed,
        tasks,
        skipped_tasks: skipped,
        swap_commits,
        swap_commit_ms: swap_time.as_secs_f64() * 1e3,
        requests_purged: purged,
        requests_verified: verified,
        verification_failures: failures,
        summary,
        runs_files_written,
        yielded_to_queries_ms: throttle.yielded().as_secs_f64() * 1e3,
    })
}

/// On a failed task, the outputs of the batch waiting for its commit are
/// removed (they were never published) before the error is returned.
fn discard_on_error(
    inner: &Inner,
    batch: &mut Vec<PreparedRewrite>,
    r: Result<Option<PreparedRewrite>>,
) -> Result<Option<PreparedRewrite>> {
    if r.is_err() {
        for p in batch.drain(..) {
            discard(inner, p);
        }
    }
    r
}

/// Remove the output of a rewrite that will not be committed.
fn discard(inner: &Inner, p: PreparedRewrite) {
    if let Some(o) = &p.output {
        inner.gc.discard_part(&inner.storage, &o.meta);
    }
}

fn after_write_failpoint() -> Result<()> {
    crate::failpoint!("compact::after_write");
    Ok(())
}

fn cancelled_err() -> StoreError {
    StoreError::Unavailable("the store is closing; compaction stopped".into())
}

/// Pin the current version: its files stay on disk while the guard lives.
fn pin(inner: &Inner) -> Result<(Arc<Version>, LiveGuard)> {
    inner.pinned_version()
}

#[cfg(feature = "testing")]
fn commit_rewrite(inner: &Inner, p: PreparedRewrite) -> Result<TaskReport> {
    let mut reports = commit_rewrites(inner, vec![p])?;
    reports
        .pop()
        .ok_or_else(|| StoreError::Internal("a swap produced no report".into()))
}

fn report_of(p: &PreparedRewrite) -> TaskReport {
    let first = &p.inputs[0].meta;
    let days =
        crate::format::days_of(p.inputs.iter().map(|i| &i.meta)).unwrap_or(first.day..=first.day);
    let (first_day, last_day) = (*days.start(), *days.end());
    let rows_in: u64 = p.inputs.iter().map(|i| i.meta.rows).sum();
    let rows_out = p.output.as_ref().map_or(0, |o| o.meta.rows);
    TaskReport {
        kind: p.kind,
        reason: p.reason,
        table: first.table,
        project_id: first.project_id,
        day: crate::format::day_to_string(first_day),
        last_day: (last_day > first_day).then(|| crate::format::day_to_string(last_day)),
        inputs: p.inputs.iter().map(|i| i.meta.id).collect(),
        output: p.output.as_ref().map(|o| o.meta.id),
        rows_in,
        rows_out,
        rows_dropped: rows_in.saturating_sub(rows_out),
        rows_carried: 0,
        bytes_in: p.inputs.iter().map(|i| i.meta.size).sum(),
        bytes_out: p.output.as_ref().map_or(0, |o| o.meta.size),
        elapsed_ms: 0,
        outcome: TaskOutcome::Committed,
    }
}

/// Swap several prepared rewrites in with one commit (one manifest write
/// and fsync for the batch). Each is checked on its own: one whose inputs
/// left the manifest is abandoned, the others commit.
fn commit_rewrites(inner: &Inner, batch: Vec<PreparedRewrite>) -> Result<Vec<TaskReport>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let outputs: Vec<String> = batch
        .iter()
        .filter_map(|p| p.output.as_ref().map(|o| o.meta.files()))
        .flatten()
        .collect();
    let discard_all = |e: StoreError| {
        for path in &outputs {
            inner.gc.discard(&inner.storage, path);
        }
        e
    };
    before_commit_failpoint().map_err(discard_all)?;
    let mut tx = Transaction::begin(inner).map_err(discard_all)?;
    let mut reports = Vec::with_capacity(batch.len());
    let mut discard = Vec::new();
    for p in batch {
        let mut report = report_of(&p);
        if p.inputs.iter().any(|i| tx.part_index(i.meta.id).is_none()) {
            if let Some(o) = &p.output {
                discard.extend(o.meta.files());
            }
            tracing::info!(inputs = ?report.inputs, "compaction task abandoned: an input left the manifest");
            report.outcome = TaskOutcome::Abandoned;
            report.elapsed_ms = p.prepare.as_millis() as u64;
            reports.push(report);
            continue;
        }
        // Deletions committed since the read, carried onto the output.
        let mut late = Bitmap::new();
        for input in &p.inputs {
            let Some(now) = tx.bitmap(input.meta.id) else {
                continue;
            };
            let added = now.andnot(&input.read_deleted);
            for old in added.iter() {
                let new = match &input.map {
                    RowMap::Rank => old as u64 - input.read_deleted.rank(old),
                    RowMap::Explicit(m) => m.get(old as usize).copied().map_or(u64::MAX, u64::from),
                };
                if new >= u64::from(u32::MAX)
                    || p.output.as_ref().is_none_or(|o| new >= o.meta.rows)
                {
                    drop(tx);
                    return Err(discard_all(StoreError::Internal(format!(
                        "late deletion of row {old} of part {} has no place in the output",
                        input.meta.id
                    ))));
                }
                late.add(new as u32);
            }
        }
        report.rows_carried = late.cardinality();
        for input in &p.inputs {
            tx.remove_part(input.meta.id);
        }
        if let Some(out) = p.output {
            let id = out.meta.id;
            for input in &p.inputs {
                tx.record_replacement(input.meta.id, id);
            }
            // The requests that hid the carried rows hold rows in the
            // output (and only they: a request whose rows the rewrite
            // dropped does not).
            let holders =
                (!late.is_empty()).then(|| tx.requests_holding(&out, &late, p.first_late_request));
            tx.add_part(out);
            if let Some(holders) = holders {
                tx.set_bitmap(id, late);
                tx.list_part(id, &holders);
            }
        }
        report.elapsed_ms = p.prepare.as_millis() as u64;
        reports.push(report);
    }
    if let Err(e) = tx.commit() {
        // Outputs of a commit that may have been published stay (the
        // sweep at the next open removes them if unreferenced, and no
        // request is marked purged until then); otherwise they go.
        return Err(inner.gc.after_failed_commit(&inner.storage, e, &outputs));
    }
    for path in discard {
        inner.gc.discard(&inner.storage, &path);
    }
    crate::failpoint!("compact::after_commit");
    tracing::debug!(tasks = reports.len(), "compaction swaps committed");
    Ok(reports)
}

/// The `compact::before_commit` failpoint, as a function so that its error
/// goes through the caller's discard path (a no-op without the feature).
fn before_commit_failpoint() -> Result<()> {
    crate::failpoint!("compact::before_commit");
    Ok(())
}
