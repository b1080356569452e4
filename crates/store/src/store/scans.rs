//! [`ScanActivity`]: how many part files queries are reading, which a
//! throttled compaction yields to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many part files queries are reading right now, and when the last
/// read ended, shared by a store and the readers its snapshots hand out.
/// A [`ScanGuard`] counts one file while it lives.
///
/// A query reads its files one after another on each of its threads, and
/// back-to-back queries leave a gap of a few milliseconds between them
/// (planning): the count drops to zero for such moments while queries are
/// still running. [`ScanActivity::busy`] therefore also counts the
/// moments shortly after a read ended.
#[derive(Debug, Clone)]
pub struct ScanActivity(Arc<ScanCounts>);

#[derive(Debug)]
struct ScanCounts {
    active: std::sync::atomic::AtomicUsize,
    /// When the last read ended, in nanoseconds after `epoch` (0: never).
    last_end_ns: AtomicU64,
    epoch: Instant,
}

impl ScanCounts {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for ScanActivity {
    fn default() -> Self {
        ScanActivity(Arc::new(ScanCounts {
            active: Default::default(),
            last_end_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }
}

impl ScanActivity {
    /// Count a file being read until the guard is dropped.
    pub fn guard(&self) -> ScanGuard {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        ScanGuard(Arc::clone(&self.0))
    }

    /// Files being read now.
    pub fn active(&self) -> usize {
        self.0.active.load(Ordering::Acquire)
    }

    /// Whether a file is being read now or the last read ended less than
    /// `quiet` ago.
    pub fn busy(&self, quiet: Duration) -> bool {
        if self.active() > 0 {
            return true;
        }
        match self.0.last_end_ns.load(Ordering::Acquire) {
            0 => false,
            end => Duration::from_nanos(self.0.now_ns().saturating_sub(end)) < quiet,
        }
    }
}

/// One part file being read (see [`ScanActivity`]).
#[derive(Debug)]
pub struct ScanGuard(Arc<ScanCounts>);

impl Drop for ScanGuard {
    fn drop(&mut self) {
        // The end first: whoever then sees no file being read sees it
        // (the latest of the ends when guards are dropped together).
        let now = self.0.now_ns().max(1);
        self.0.last_end_ns.fetch_max(now, Ordering::AcqRel);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_count_as_busy_for_a_quiet_time_after_the_last_read() {
        // Between the files of a query, and between back-to-back queries,
        // no file is being read for a moment: that is not yet quiet.
        let scans = ScanActivity::default();
        let hour = Duration::from_secs(3600);
        assert!(!scans.busy(hour), "nothing was ever read");
        let (a, b) = (scans.guard(), scans.guard());
        assert!(scans.busy(Duration::ZERO));
        drop(a);
        assert!(scans.busy(Duration::ZERO), "one file is still being read");
        drop(b);
        assert_eq!(scans.active(), 0);
        assert!(scans.busy(hour), "the last read ended just now");
        assert!(!scans.busy(Duration::ZERO));
    }
}
