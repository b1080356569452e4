//! The background threads of a writable store: the flusher (writes
//! frozen memtables into parts), the compaction worker (retention sweeps,
//! logical requests past their window, what the policy plans) and the
//! build of the distinct-id index at open. Each holds only a weak handle
//! on the store between runs, so it never keeps the directory open; the
//! store stops them when it closes.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Result, StoreError};
use crate::index::{BackgroundBuild, DistinctIdIndex};
use crate::store::{now_us, poisoned, Inner, Store, COMPACTOR_POLL};

pub(crate) enum FlushMsg {
    Wake,
    Shutdown,
}

pub(crate) type Worker = Mutex<Option<(Sender<FlushMsg>, std::thread::JoinHandle<()>)>>;

/// Start a background thread running `body` with a weak handle on the
/// store (so it never keeps the directory open) and a message channel.
pub(crate) fn spawn_worker(
    inner: &Arc<Inner>,
    slot: &Worker,
    name: &str,
    body: fn(Weak<Inner>, Receiver<FlushMsg>),
) -> Result<Sender<FlushMsg>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let weak = Arc::downgrade(inner);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(weak, rx))
        .map_err(|e| StoreError::io(name, e))?;
    *slot.lock().map_err(poisoned)? = Some((tx.clone(), handle));
    Ok(tx)
}

pub(crate) fn stop_worker(w: &Worker) {
    let taken = w.lock().ok().and_then(|mut f| f.take());
    if let Some((tx, handle)) = taken {
        let _ = tx.send(FlushMsg::Shutdown);
        if handle.thread().id() != std::thread::current().id() {
            let _ = handle.join();
        }
    }
}

/// The background compaction worker: every [`COMPACTOR_POLL`] (or at the
/// start of the next window, if sooner) it asks the policy and runs what it
/// plans, with the configured I/O limit and, inside a window, the window's
/// end as the time budget. Holds no strong handle between runs.
pub(crate) fn compactor_loop(inner: Weak<Inner>, rx: Receiver<FlushMsg>) {
    let mut wait = COMPACTOR_POLL;
    // Overdue requests last logged (logged again when the set changes).
    let mut overdue_logged: Vec<u64> = Vec::new();
    loop {
        match rx.recv_timeout(wait) {
            Ok(FlushMsg::Shutdown) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return
            }
            Ok(FlushMsg::Wake) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        // Files retired while snapshots were open wait for the next GC.
        if let Err(e) = inner.gc.collect(&inner.storage) {
            tracing::warn!(error = %e, "gc failed; will retry");
        }
        let now = now_us();
        let store = Store::from_inner(Arc::clone(&inner));
        // Logical requests past their undo window (and bridged ones) get
        // their bits; then retention: its whole expired days leave
        // without a rewrite, its other rows become work for the plan.
        if let Err(e) = store.resolve_logical_requests(now) {
            tracing::warn!(error = %e, "resolving logical deletion requests failed; will retry");
        }
        if let Err(e) = store.apply_retention(now) {
            tracing::warn!(error = %e, "retention sweep failed; will retry");
        }
        drop(store);
        let version = match inner.current_version() {
            Ok(v) => v,
            Err(_) => return,
        };
        let req = crate::policy::PlanRequest {
            manual: false,
            project_id: None,
            merges: true,
        };
        let plan = inner.policy.plan(&version.manifest, now, req);
        drop(version);
        if plan.overdue_requests != overdue_logged {
            if !plan.overdue_requests.is_empty() {
                tracing::error!(
                    requests = ?plan.overdue_requests,
                    "deletion requests are past their purge_due_by; purging them now without the I/O limit"
                );
            }
            overdue_logged = plan.overdue_requests.clone();
        }
        // Requests that may advance without a rewrite: purged ones awaiting
        // verification, pending ones with no part left (waiting for GC).
        // Parts written before `.runs` files get theirs (runs_backfill.rs).
        let has_work = !plan.is_empty()
            || inner
                .current_version()
                .map(|v| {
                    v.manifest
                        .requests
                        .iter()
                        .any(crate::lifecycle::may_advance_without_rewrite)
                        || v.manifest.parts.iter().any(|p| p.runs.is_none())
                })
                .unwrap_or(false);
        if has_work {
            let deadline = plan.window_end_us.map(|end| {
                std::time::Instant::now()
                    + Duration::from_micros(end.saturating_sub(now).max(0) as u64)
            });
            if !plan.due_requests.is_empty() {
                tracing::info!(
                    requests = ?plan.due_requests,
                    "deletion requests near their purge_due_by: purging at full speed"
                );
            }
            let io_limit = io_limit(&plan, inner.opts.compaction.io_bytes_per_sec);
            let creq = crate::compact::CompactRequest {
                io_bytes_per_sec: io_limit,
                deadline,
                ..crate::compact::CompactRequest::scheduled()
            };
            if let Err(e) = crate::compact::run(&inner, creq, &mut |_| {}) {
                tracing::warn!(error = %e, "background compaction failed; will retry");
            }
        }
        wait = match plan.next_window_us {
            Some(next) if next > now => {
                COMPACTOR_POLL.min(Duration::from_micros((next - now) as u64))
            }
            _ => COMPACTOR_POLL,
        };
    }
}

/// The I/O limit of a background run, which also makes it yield to
/// queries (`compact/throttle.rs`, `Throttle`): the configured one, except that a
/// request near (within `deadline_slack`) or past its deadline escalates
/// the run to full speed, with no limit and no yielding.
fn io_limit(plan: &crate::policy::Plan, configured: Option<u64>) -> Option<u64> {
    if plan.overdue_requests.is_empty() && plan.due_requests.is_empty() {
        configured
    } else {
        None
    }
}

/// Give the store its distinct-id index without making the first deletion
/// pay for it: empty for a store without parts, else built on a background
/// thread. The thread holds no handle on the store (so it never keeps the
/// data directory locked), only the shared build slot, the storage and a GC
/// registration of the version it reads.
pub(crate) fn start_index_build(inner: &Arc<Inner>) -> Result<()> {
    let version = inner.current_version()?;
    if version.manifest.parts.is_empty() {
        inner.commit.lock().map_err(poisoned)?.index = Some(DistinctIdIndex::default());
        return Ok(());
    }
    inner.index_build.start();
    let build = Arc::clone(&inner.index_build);
    let storage = inner.storage.clone();
    // Files of this version stay on disk while the build reads them.
    let guard = inner.gc.register(version.manifest.version);
    let spawned = std::thread::Builder::new()
        .name("elide-index".into())
        .spawn(move || {
            // Publishes a failure if the build panics, so that the first
            // deletion never waits forever.
            let mut finish = FinishOnDrop(Some(&build));
            let started = std::time::Instant::now();
            let manifest = &version.manifest;
            // One core is left to the caller: deletions do not wait for
            // this build (they read `.runs` files meanwhile), and should
            // not queue behind it for CPU either.
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1);
            let result = match DistinctIdIndex::build_until(&storage, manifest, threads, &|| {
                build.cancelled()
            }) {
                Ok(idx) => {
                    tracing::info!(
                        keys = idx.len(),
                        approx_bytes = idx.approx_bytes(),
                        parts = manifest.parts.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "built distinct-id index in the background"
                    );
                    Some((idx, manifest.parts.iter().map(|p| p.id).collect()))
                }
                Err(_) if build.cancelled() => {
                    tracing::debug!("background index build stopped: the store is closing");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "background index build failed; the next deletion builds it");
                    None
                }
            };
            drop(guard);
            if let Some(b) = finish.0.take() {
                b.finish(result);
            }
        });
    if let Err(e) = spawned {
        inner.index_build.finish(None);
        tracing::warn!(error = %e, "could not start the index builder; the first deletion builds the index");
    }
    Ok(())
}

struct FinishOnDrop<'a>(Option<&'a BackgroundBuild>);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish(None);
        }
    }
}

pub(crate) fn flusher_loop(inner: Weak<Inner>, rx: Receiver<FlushMsg>) {
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(FlushMsg::Shutdown) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return
            }
            Ok(FlushMsg::Wake) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let has_work = inner
            .state
            .lock()
            .map(|s| !s.frozen.is_empty())
            .unwrap_or(false);
        if has_work {
            if let Err(e) = inner.flush_frozen() {
                tracing::error!(error = %e, "background flush failed; will retry");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_near_or_past_its_deadline_lifts_the_limit_and_the_yield() {
        let limit = Some(64 << 20);
        let plan = crate::policy::Plan::default();
        assert_eq!(io_limit(&plan, limit), limit, "nothing due: throttled");
        let due = crate::policy::Plan {
            due_requests: vec![7],
            ..Default::default()
        };
        assert_eq!(io_limit(&due, limit), None, "near its deadline");
        let overdue = crate::policy::Plan {
            overdue_requests: vec![7],
            ..Default::default()
        };
        assert_eq!(io_limit(&overdue, limit), None, "past its deadline");
    }
}
