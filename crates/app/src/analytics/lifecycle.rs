//! Lifecycle (`posthog-analytics.md` §3.4, §2.7): per period, the persons
//! who did the event and were **new** (created in that period),
//! **returning** (active in the period before too), **resurrecting**
//! (active now, not in the period before), and the persons **dormant**
//! (active in the period before, not in this one; counted negative).
//!
//! Per person (all its distinct ids together): its active periods in
//! `[period(date_from) − 1, period(date_to)]`, sorted; the "previous
//! activity" of the first is the period of the person's `created_at`.
//! Periods are UTC; weeks start on Sunday. Events sent personless
//! (`$process_person_profile: false`) are left out, as PostHog's
//! `LifecycleQueryRunner` does, also when their distinct id has a person
//! now ([`sent_with_person`]).
//!
//! Memory, outside the query's memory pool: 8 bytes per (person, active
//! period), twice that at most while they are gathered ([`SortedKeys`]),
//! then per person seen its UUID, and 4 bytes per status it takes.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, Utc};
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::{json, Value};

use super::filter::{entities, parse_date, range, Entity, Interval, Params};
use super::personless::sent_with_person;
use super::properties::{props, props_sql, Prop};
use super::{lit, period_labels, session, stream, ts_lit, SortedKeys};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

/// The four statuses, in PostHog's order.
pub const STATUSES: [&str; 4] = ["new", "returning", "resurrecting", "dormant"];

/// A lifecycle, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleSpec {
    /// The event (`events[0]`).
    pub event: Entity,
    /// Global property filters.
    pub props: Vec<Prop>,
    /// The period unit.
    pub interval: Interval,
    /// The first period's start (µs).
    pub first: i64,
    /// The last period's start (µs).
    pub last: i64,
}

impl LifecycleSpec {
    /// Parse (PostHog's defaults: `date_from` −7d, interval `day`).
    pub fn parse(p: &Params, now: DateTime<Utc>) -> Result<LifecycleSpec> {
        let mut list = entities(p)?;
        if list.is_empty() {
            return Err(AppError::InvalidQuery(
                "lifecycle needs one event in events".into(),
            ));
        }
        let event = list.remove(0);
        let interval = Interval::parse(p)?;
        let r = range(p, now, "-7d", interval)?;
        let Some(from) = r.from else {
            return Err(AppError::InvalidQuery(
                "lifecycle needs a date_from: resolve `all` first (analytics::all_time_from)"
                    .into(),
            ));
        };
        let (first, last) = (interval.trunc(from), interval.trunc(r.to));
        if interval.periods(first, last).len() >= 100_000 {
            return Err(AppError::InvalidQuery(
                "the date range holds too many periods of this interval".into(),
            ));
        }
        Ok(LifecycleSpec {
            event,
            props: props(p.json("properties"), "properties")?,
            interval,
            first,
            last,
        })
    }

    /// Every event of the lifecycle's range: the person's row id and the
    /// event's time (µs). The persons tables come first, so that the
    /// joins build on them and stream the events through (DataFusion
    /// builds a hash join on its left side).
    fn sql(&self) -> Result<String> {
        let from = self.interval.prev(self.first);
        let to = self.interval.next(self.last);
        // The step's filters, the global ones and the personless check:
        // the event filters among them read the properties once.
        let filters: Vec<Prop> = self
            .event
            .properties
            .iter()
            .chain(&self.props)
            .cloned()
            .chain([sent_with_person()])
            .collect();
        Ok(format!(
            "SELECT p.id AS actor, CAST(e.timestamp AS BIGINT) AS t \
             FROM person_distinct_ids pdi JOIN persons p ON p.uuid = pdi.person_id \
             JOIN events e ON e.distinct_id = pdi.distinct_id \
             WHERE e.event = {} AND {} AND e.timestamp >= {} AND e.timestamp < {}",
            lit(&self.event.id),
            props_sql(&filters)?,
            ts_lit(from),
            ts_lit(to),
        ))
    }
}

/// The lifecycle of a range: per period and status, its persons.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// The period starts: the one before the range, then the range's.
    starts: Vec<i64>,
    /// Per (period index × 4 + status index): the persons, as indexes
    /// into `uuids`.
    cells: Vec<Vec<u32>>,
    /// The persons' UUIDs.
    uuids: Vec<String>,
}

impl Lifecycle {
    /// The persons of the period starting at `start` with `status`, as
    /// indexes into `uuids` (none for a period outside the range).
    fn cell(&self, start: i64, status: &str) -> &[u32] {
        let (Ok(k), Some(s)) = (
            self.starts.binary_search(&start),
            STATUSES.iter().position(|x| *x == status),
        ) else {
            return &[];
        };
        self.cells.get(k * 4 + s).map_or(&[], Vec::as_slice)
    }

    /// How many persons had `status` in the period starting at `start`.
    pub fn count(&self, start: i64, status: &str) -> usize {
        self.cell(start, status).len()
    }

    /// The persons (UUIDs, sorted) who had `status` in the period
    /// starting at `start`.
    pub fn persons(&self, start: i64, status: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .cell(start, status)
            .iter()
            .filter_map(|&i| self.uuids.get(i as usize))
            // Empty for a person deleted between the two queries.
            .filter(|u| !u.is_empty())
            .cloned()
            .collect();
        out.sort();
        out
    }
}

/// Compute the lifecycle.
///
/// The query streams one row per event. Each row becomes one integer,
/// (person's row id, period index), gathered in a flat vector that is
/// then sorted: a person's active periods come out together and in
/// order, with no per-person collection and no random access per row.
/// Then the persons seen have their UUID and `created_at` read from the
/// same session's `persons` table.
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &LifecycleSpec,
    limits: &QueryLimits,
) -> Result<Lifecycle> {
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(
        &ctx,
        persons,
        project,
        spec.props.iter().chain(&spec.event.properties),
    )
    .await?;
    let i = spec.interval;
    // starts[0] is the period before the range, starts[1] its first.
    let starts = i.periods(i.prev(spec.first), spec.last);
    let n = starts.len() as u64;
    // id × n + period index, per event (repeats next to each other
    // dropped at once).
    let mut keys = SortedKeys::new();
    let mut rows = stream(&ctx, &spec.sql()?).await?;
    while let Some(b) = rows.next().await {
        let b = b?;
        let actor = b.column(0).as_primitive::<Int64Type>();
        let t = b.column(1).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            if actor.is_null(r) || t.is_null(r) {
                continue;
            }
            // The last period starting at or before the event.
            let Some(k) = starts.partition_point(|&s| s <= t.value(r)).checked_sub(1) else {
                continue;
            };
            let key = u64::try_from(actor.value(r))
                .ok()
                .and_then(|id| id.checked_mul(n))
                .and_then(|x| x.checked_add(k as u64))
                .ok_or_else(too_many)?;
            keys.push(key);
        }
    }
    // The join's tables go with the stream.
    drop(rows);
    let keys = keys.finish();
    // The persons seen, in id order, with their created_at and UUID.
    let mut ids: Vec<u64> = keys.iter().map(|k| k / n).collect();
    ids.dedup();
    let mut created = vec![i64::MIN; ids.len()];
    let mut uuids = vec![String::new(); ids.len()];
    let mut rows = stream(
        &ctx,
        "SELECT id, uuid, CAST(created_at AS BIGINT) FROM persons",
    )
    .await?;
    while let Some(b) = rows.next().await {
        let b = b?;
        let id = b.column(0).as_primitive::<Int64Type>();
        let uuid = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let uuid = uuid.as_string::<i32>();
        let at = b.column(2).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let Ok(x) = u64::try_from(id.value(r)) else {
                continue;
            };
            if let Ok(w) = ids.binary_search(&x) {
                created[w] = i.trunc(at.value(r));
                uuids[w] = uuid.value(r).to_string();
            }
        }
    }
    if ids.len() > u32::MAX as usize {
        return Err(too_many());
    }
    let mut cells: Vec<Vec<u32>> = vec![Vec::new(); starts.len() * 4];
    let [new, returning, resurrecting, dormant] = [0, 1, 2, 3];
    let mut put = |k: usize, status: usize, who: usize| {
        // Only the range's periods are reported, not the one before.
        if k >= 1 && k < starts.len() {
            // `who` < ids.len() ≤ u32::MAX (checked above).
            cells[k * 4 + status].push(who as u32);
        }
    };
    let (mut who, mut prev): (usize, Option<(u64, usize)>) = (0, None);
    for (at, &key) in keys.iter().enumerate() {
        let (id, k) = (key / n, (key % n) as usize);
        let first = prev.is_none_or(|(p, _)| p != id);
        if first && prev.is_some() {
            who += 1;
        }
        let status = if first && starts[k] == created[who] {
            new
        } else if !first && prev.is_some_and(|(_, pk)| pk + 1 == k) {
            returning
        } else {
            resurrecting
        };
        prev = Some((id, k));
        // A person deleted between the two queries counts nowhere (as in
        // the next response), so that counts and lists agree.
        if uuids[who].is_empty() {
            continue;
        }
        put(k, status, who);
        // Dormant in the next period unless active in it.
        if keys.get(at + 1) != key.checked_add(1).as_ref() || k + 1 == starts.len() {
            put(k + 1, dormant, who);
        }
    }
    Ok(Lifecycle {
        starts,
        cells,
        uuids,
    })
}

fn too_many() -> AppError {
    AppError::InvalidQuery("the lifecycle holds too many persons or periods".into())
}

/// The lifecycle insight: one series per status (PostHog's shape),
/// zero-filled over every period.
pub fn series(spec: &LifecycleSpec, l: &Lifecycle) -> Value {
    let periods = spec.interval.periods(spec.first, spec.last);
    let (labels, days) = period_labels(spec.interval, &periods);
    let out: Vec<Value> = STATUSES
        .iter()
        .map(|&status| {
            let sign = if status == "dormant" { -1.0 } else { 1.0 };
            let data: Vec<f64> = periods
                .iter()
                .map(|&t| sign * l.count(t, status) as f64)
                .collect();
            json!({
                "action": {"id": spec.event.id, "name": spec.event.name, "type": "events", "order": 0, "math": "total"},
                "data": data,
                "count": data.iter().sum::<f64>(),
                "labels": labels,
                "days": days,
                "label": format!("{} - {status}", spec.event.name),
                "status": status,
            })
        })
        .collect();
    Value::Array(out)
}

/// The persons of one (`target_date`, `lifecycle_type`), sorted by UUID.
pub fn persons_of(
    spec: &LifecycleSpec,
    l: &Lifecycle,
    target: &str,
    status: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let Some(&status) = STATUSES.iter().find(|s| **s == status) else {
        return Err(AppError::InvalidQuery(format!(
            "lifecycle_type {status:?} is not one of new, returning, resurrecting, dormant"
        )));
    };
    let t = parse_date(target, now, "target_date")?;
    let period = spec.interval.trunc(t.timestamp_micros());
    Ok(l.persons(period, status))
}
