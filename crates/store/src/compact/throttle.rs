//! The pace of a compaction run: its byte rate, and how it yields the CPU
//! to queries ([`Throttle`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::ScanActivity;

/// The pace of a run, shared by its threads. With a rate (a throttled
/// run: the background worker's, unless a request is near or past its
/// deadline): after `n` bytes in all, sleep until `n / rate` seconds of
/// running (time yielded to queries not counted) have passed; and while
/// queries read parts ([`ScanActivity::busy`]: a part is being read, or
/// one was less than [`QUIET`] ago), after each slice of a thread's work
/// sleep up to [`YIELD_RATIO`] times as long as the slice took (at most
/// [`YIELD_MAX`]), or until queries are quiet, so that a thread
/// of the purge takes about a twentieth of a core from queries (slices of a
/// merge can be longer than the cap allows for) yet still advances under a
/// constant query load. Such a run reads [`YIELDING_BATCH_ROWS`] rows per
/// purge batch of a part whose purge starts while queries read, so that
/// each slice is short. Without a rate (`compact --now`, a request near
/// its deadline), no sleep at all.
pub(super) struct Throttle<'a> {
    rate: Option<u64>,
    start: Instant,
    bytes: AtomicU64,
    scans: Option<ScanActivity>,
    /// Nanoseconds slept yielding to queries, by all threads.
    yielded_ns: AtomicU64,
    /// The store is closing: stop yielding.
    closing: Option<&'a AtomicBool>,
}

/// Sleep per unit of work while queries read parts (see [`Throttle`]):
/// measured, queries took 1.08–1.12x of idle at 9, 1.03–1.06x at 19
/// (docs/benchmarks.md).
const YIELD_RATIO: u32 = 19;
/// The longest such sleep.
const YIELD_MAX: Duration = Duration::from_secs(1);
/// How long after the last part read ended a yielding run still yields:
/// longer than the gaps between the files of a query and between
/// back-to-back queries (measured at a [`YIELD_RATIO`] of 9: with no such
/// time, queries during a throttled purge took 1.12x of idle, with 10 ms
/// 1.08–1.12x; docs/benchmarks.md).
const QUIET: Duration = Duration::from_millis(10);
/// Rows per batch of a purge that yields to queries.
const YIELDING_BATCH_ROWS: usize = 2 * 1024;

thread_local! {
    /// When this thread's current slice of compaction work started.
    static SLICE_START: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

impl<'a> Throttle<'a> {
    pub(super) fn new(
        rate: Option<u64>,
        scans: Option<ScanActivity>,
        closing: Option<&'a AtomicBool>,
    ) -> Self {
        let rate = rate.filter(|r| *r > 0);
        Throttle {
            rate,
            start: Instant::now(),
            bytes: AtomicU64::new(0),
            scans: scans.filter(|_| rate.is_some()),
            yielded_ns: AtomicU64::new(0),
            closing,
        }
    }

    /// Unlimited and never yielding.
    #[cfg(feature = "testing")]
    pub(super) fn none() -> Self {
        Throttle::new(None, None, None)
    }

    /// Rows per batch of a part's purge read: short slices when this run
    /// yields to queries and a part is being read as it starts (so each
    /// slice overlaps a query for less time), `default` otherwise. The
    /// output's row groups do not depend on it.
    pub(super) fn batch_rows(&self, default: usize) -> usize {
        match &self.scans {
            Some(scans) if scans.busy(QUIET) => YIELDING_BATCH_ROWS.min(default),
            _ => default,
        }
    }

    /// Time slept yielding to queries so far.
    pub(super) fn yielded(&self) -> Duration {
        Duration::from_nanos(self.yielded_ns.load(Ordering::Relaxed))
    }

    /// Start timing this thread's work (when a worker thread starts).
    pub(super) fn start_slice() {
        SLICE_START.with(|s| s.set(Some(Instant::now())));
    }

    pub(super) fn spend(&self, n: u64) {
        // The slice just done is work; the sleeps below are not.
        self.yield_to_queries();
        let bytes = self.bytes.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
            let running = self.start.elapsed().saturating_sub(self.yielded());
            if due > running {
                // In slices, so that closing the store does not wait out
                // a whole large input's time at a low limit (the caller
                // sees the close after this returns).
                let until = Instant::now() + (due - running);
                let closing = || self.closing.is_some_and(|c| c.load(Ordering::Acquire));
                while !closing() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
        }
        Self::start_slice();
    }

    pub(super) fn yield_to_queries(&self) {
        let Some(scans) = &self.scans else {
            return;
        };
        let now = Instant::now();
        let worked = SLICE_START.with(|s| s.get()).map(|t| now - t);
        let (Some(worked), true) = (worked, scans.busy(QUIET)) else {
            return;
        };
        let until = now + (worked * YIELD_RATIO).min(YIELD_MAX);
        let closing = || self.closing.is_some_and(|c| c.load(Ordering::Acquire));
        while scans.busy(QUIET) && !closing() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        let slept = u64::try_from(now.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.yielded_ns.fetch_add(slept, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_batches_are_short_only_for_a_yielding_run_while_a_part_is_read() {
        let scans = ScanActivity::default();
        let yielding = Throttle::new(Some(1 << 20), Some(scans.clone()), None);
        let unlimited = Throttle::new(None, Some(scans.clone()), None);
        assert_eq!(yielding.batch_rows(65_536), 65_536, "no part being read");
        let reading = scans.guard();
        assert_eq!(yielding.batch_rows(65_536), YIELDING_BATCH_ROWS);
        assert_eq!(yielding.batch_rows(1_000), 1_000, "never above the default");
        assert_eq!(
            unlimited.batch_rows(65_536),
            65_536,
            "an unlimited run never yields"
        );
        drop(reading);
        std::thread::sleep(QUIET);
        assert_eq!(yielding.batch_rows(65_536), 65_536, "quiet since");
    }

    /// At 1 byte/s, 100,000 bytes are due in a day; closing the store
    /// ends the wait (it used to be one sleep of the whole time).
    #[test]
    fn the_rate_limit_wait_ends_when_the_store_closes() {
        let closing: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            Throttle::new(Some(1), None, Some(closing)).spend(100_000);
            let _ = done.send(());
        });
        std::thread::sleep(Duration::from_millis(100));
        closing.store(true, Ordering::Release);
        assert!(
            finished.recv_timeout(Duration::from_secs(60)).is_ok(),
            "the wait went on after the close"
        );
    }
}
