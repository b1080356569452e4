//! Product analytics over one project: funnels and their persons,
//! funnel correlation, lifecycle, trends, stickiness, retention, paths, with
//! PostHog's parameters, semantics and shapes
//! (`posthog-analytics.md`; differences in docs/api.md).
//!
//! Invariants:
//!
//! - every analytic counts **persons**, resolved through the persons
//!   layer's identity: an event belongs to the person that owns its
//!   distinct id now (`person_distinct_ids`), so merged persons count once
//!   and a split follows the ids; an event whose distinct id has no person
//!   counts for nobody, except in trends, stickiness, retention, paths,
//!   funnels and funnel correlation, which count a personless event by the person
//!   UUID it carries, as
//!   PostHog does ([`personless`]; lifecycle leaves them out, as
//!   PostHog's does);
//! - a deleted person is gone from every result the moment the deletion
//!   returns: its events are hidden inside the scan (tombstones or a
//!   logical request), its distinct ids and profile are gone from the
//!   persons tables read by the same query;
//! - queries read only the project's rows ([`session`]), under the
//!   caller's limits (memory, deadline);
//! - user values reach SQL only as escaped literals ([`lit`]).
//!
//! | module | what |
//! |---|---|
//! | [`filter`] | PostHog's `Filter` parameters: entities, dates, intervals, windows |
//! | [`properties`] | property filters and PostHog's `AND`/`OR` groups of them, and their SQL |
//! | [`query_nodes`] | `FunnelsQuery` and `LifecycleQuery` read as the legacy parameters, and the legacy persons routes' entities as query nodes (`legacy_series`) |
//! | [`funnel`] | funnels: per-person paths (`funnel_path`), step counts and conversion times, persons at a step |
//! | [`correlation`] | funnel correlation: events, event properties and person properties against conversion, and their persons |
//! | [`lifecycle`] | new / returning / resurrecting / dormant per period, and the persons of one |
//! | [`personless`] | the actors of events without a person, and the deleted persons left out of them |
//! | [`trends`] | events, active persons, sessions, property and per-actor maths per period (or over the range), broken down by an event or person property; formulas between the series; the previous period; the persons of one point |
//! | [`stickiness`] | actors per number of periods they did an event in |
//! | [`retention`] | cohorts per interval and their returns in the intervals after, and a cohort's persons |
//! | [`paths`] | the edges between the steps of the actors' sessions (also around a funnel's step), and the persons of an edge or a drop-off |
//! | [`definitions`] | the event names and the property names (and kinds) of a project's events and persons |
//! | [`cohorts`] | cohort members: static lists, dynamic definitions computed over the filtered scan |
//! | [`actors`] | the persons of a result, loaded in its order |

pub mod actors;
pub mod cohorts;
pub mod correlation;
pub mod definitions;
pub mod events;
pub mod events_query;
pub mod filter;
pub mod funnel;
mod in_set;
mod key_types;
pub mod lifecycle;
pub mod paths;
pub mod personless;
pub mod properties;
pub mod query_nodes;
pub mod retention;
pub mod stickiness;
pub mod trends;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use elide_persons::{Persons, SqliteMeta};

use crate::error::Result;
use crate::query::QueryLimits;
use crate::sql::register_person_tables;

/// A SQL string literal of `s` (quotes doubled).
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A timestamp literal of `us` (µs since the epoch, UTC).
pub fn ts_lit(us: i64) -> String {
    format!("to_timestamp_micros({us})")
}

/// A session over `project`'s rows with the persons tables and the
/// analytics functions, under `limits`.
pub fn session(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    limits: &QueryLimits,
) -> Result<SessionContext> {
    let ctx = limits.project_session(persons.store(), project)?;
    register_person_tables(&ctx, persons, Some(project))?;
    Ok(ctx)
}

/// PostHog's `labels` (`1-Jan-2024`) and `days` (`2024-01-01`, with the
/// time for hours) of period starts.
pub fn period_labels(interval: filter::Interval, periods: &[i64]) -> (Vec<String>, Vec<String>) {
    let fmt = |t: i64, f: &str| {
        chrono::DateTime::from_timestamp_micros(t)
            .map(|d| d.format(f).to_string())
            .unwrap_or_default()
    };
    let days_fmt = if interval == filter::Interval::Hour {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d"
    };
    (
        periods.iter().map(|&t| fmt(t, "%-d-%b-%Y")).collect(),
        periods.iter().map(|&t| fmt(t, days_fmt)).collect(),
    )
}

/// Run `sql` and stream its batches (for results folded as they come).
pub async fn stream(
    ctx: &SessionContext,
    sql: &str,
) -> Result<datafusion::execution::SendableRecordBatchStream> {
    tracing::debug!(sql, "analytics query");
    Ok(ctx.sql(sql).await?.execute_stream().await?)
}

/// Keys gathered one per row, sorted and deduplicated in place whenever
/// they have doubled since the last time: memory stays within about
/// twice the distinct keys, whatever the number of rows.
#[derive(Debug)]
pub struct SortedKeys<K> {
    keys: Vec<K>,
    /// The length at which they are next compacted.
    next: usize,
}

impl<K: Ord + Copy> SortedKeys<K> {
    /// No keys yet.
    pub fn new() -> Self {
        SortedKeys {
            keys: Vec::new(),
            next: 1 << 20,
        }
    }

    /// Add `key` (a repeat of the last one costs nothing).
    pub fn push(&mut self, key: K) {
        if self.keys.last() == Some(&key) {
            return;
        }
        self.keys.push(key);
        if self.keys.len() >= self.next {
            self.compact();
            self.next = (self.keys.len() * 2).max(1 << 20);
        }
    }

    fn compact(&mut self) {
        self.keys.sort_unstable();
        self.keys.dedup();
    }

    /// The distinct keys, in order.
    pub fn finish(mut self) -> Vec<K> {
        self.compact();
        self.keys
    }
}

impl<K: Ord + Copy> Default for SortedKeys<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// What `date_from: all` stands for in trends and lifecycle: the time of
/// `project`'s first visible event (RFC 3339), or `-7d` when it has none,
/// as PostHog's `get_earliest_timestamp` (whose default is a week back).
pub async fn all_time_from(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    limits: &QueryLimits,
) -> Result<String> {
    use arrow::array::{Array, AsArray};
    let ctx = session(persons, project, limits)?;
    let batches = collect(&ctx, "SELECT CAST(min(timestamp) AS BIGINT) FROM events").await?;
    let first = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
        })
        .filter(|c| c.is_valid(0))
        .and_then(|c| chrono::DateTime::from_timestamp_micros(c.value(0)));
    Ok(match first {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => "-7d".into(),
    })
}

/// Run `sql` and collect its batches.
pub async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    tracing::debug!(sql, "analytics query");
    Ok(ctx.sql(sql).await?.collect().await?)
}

#[cfg(test)]
mod tests {
    use super::SortedKeys;

    /// Past the first compaction (2^20 keys) and again after it: the
    /// distinct keys in order, with repeats next to each other and far
    /// apart.
    #[test]
    fn sorted_keys_are_the_distinct_keys_in_order() {
        let mut keys = SortedKeys::new();
        let distinct = 1_500_000u64;
        for i in 0..3 * distinct {
            let k = (i * 7_919) % distinct;
            keys.push(k);
            keys.push(k);
        }
        let got = keys.finish();
        assert_eq!(got.len() as u64, distinct);
        assert!(got.iter().enumerate().all(|(i, &k)| k == i as u64));
    }
}
