//! Sorted timestamp stream with O(days) memory.
//!
//! Timestamps are `n` i.i.d. draws from a seasonal density over the time range
//! (hour-of-day curve, quieter weekends, gentle growth over the period),
//! emitted in ascending order without materialising them: we generate the
//! order statistics of `n` uniforms one at a time (the max of `r` uniforms on
//! `[0, m]` is `m * U^(1/r)`) and push each through the inverse CDF of the
//! piecewise-constant hourly density, which is monotone.

use chrono::{Datelike, NaiveDate, Weekday};
use rand::Rng;

pub(crate) const MICROS_PER_HOUR: i64 = 3_600_000_000;
pub(crate) const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Relative activity per UTC hour (peaks in the European/US afternoon).
const HOUR_WEIGHTS: [f64; 24] = [
    0.35, 0.30, 0.25, 0.22, 0.22, 0.25, 0.35, 0.50, 0.70, 0.85, 0.95, 1.00, //
    1.00, 1.00, 1.00, 1.00, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50, 0.42,
];

#[derive(Debug, Clone)]
pub(crate) struct TimeCursor {
    /// Cumulative share of the hourly buckets; `cum[0] = 0`, last = 1.
    cum: Vec<f64>,
    start_us: i64,
    /// Current bucket (only ever advances).
    bucket: usize,
    /// Events still to draw.
    remaining: u64,
    /// Current upper bound `m` of the not-yet-emitted uniforms (descending).
    upper: f64,
    /// Last emitted timestamp (output is forced non-decreasing).
    last_us: i64,
}

impl TimeCursor {
    /// `start` is the first day (UTC midnight) of a `days`-day range.
    pub(crate) fn new(start: NaiveDate, days: u32, start_us: i64, events: u64) -> Self {
        let buckets = days as usize * 24;
        let mut cum = Vec::with_capacity(buckets + 1);
        cum.push(0.0);
        let mut total = 0.0;
        let mut date = start;
        for d in 0..days {
            let weekday = match date.weekday() {
                Weekday::Sat | Weekday::Sun => 0.65,
                _ => 1.0,
            };
            let growth = 1.0 + 0.5 * f64::from(d) / f64::from(days.max(1));
            for w in HOUR_WEIGHTS {
                total += weekday * growth * w;
                cum.push(total);
            }
            date = date.succ_opt().unwrap_or(date);
        }
        for c in &mut cum {
            *c /= total;
        }
        if let Some(last) = cum.last_mut() {
            *last = 1.0;
        }
        Self {
            cum,
            start_us,
            bucket: 0,
            remaining: events,
            upper: 1.0,
            last_us: start_us,
        }
    }

    /// Next timestamp in microseconds since the epoch (non-decreasing,
    /// within `[start, start + days)`). Must be called at most `events` times.
    pub(crate) fn next_us<R: Rng + ?Sized>(&mut self, rng: &mut R) -> i64 {
        let r = self.remaining.max(1) as f64;
        self.remaining = self.remaining.saturating_sub(1);
        // u in (0, 1]; the new maximum of the remaining uniforms.
        let u = 1.0 - rng.random::<f64>();
        self.upper *= (u.ln() / r).exp();
        let x = 1.0 - self.upper;

        let buckets = self.cum.len() - 1;
        while self.bucket + 1 < buckets && x >= self.cum[self.bucket + 1] {
            self.bucket += 1;
        }
        let lo = self.cum[self.bucket];
        let hi = self.cum[self.bucket + 1];
        let frac = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
        let bucket_start = self.start_us + self.bucket as i64 * MICROS_PER_HOUR;
        let offset = ((frac * MICROS_PER_HOUR as f64) as i64).min(MICROS_PER_HOUR - 1);
        let ts = (bucket_start + offset).max(self.last_us);
        self.last_us = ts;
        ts
    }
}
