//! Lifecycle (`posthog-analytics.md` §3.4, §2.7): per period, the persons
//! who did the event and were **new** (created in that period),
//! **returning** (active in the period before too), **resurrecting**
//! (active now, not in the period before), and the persons **dormant**
//! (active in the period before, not in this one; counted negative).
//!
//! Per person (all its distinct ids together): its active periods in
//! `[period(date_from) − 1, period(date_to)]`, sorted; the "previous
//! activity" of the first is the period of the person's `created_at`.
//! Periods are UTC; weeks start on Sunday.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, Utc};
use elide_persons::{Persons, SqliteMeta};
use serde_json::{json, Value};

use super::filter::{entities, parse_date, props, range, Entity, Interval, Params, Prop};
use super::{collect, lit, period_labels, props_sql, session, ts_lit};
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
        let r = range(p, now, "-7d")?;
        let Some(from) = r.from else {
            return Err(AppError::InvalidQuery(
                "lifecycle needs a date_from (not all)".into(),
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

    fn sql(&self) -> Result<String> {
        let unit = match self.interval {
            Interval::Hour => "hour",
            Interval::Day | Interval::Week => "day",
            Interval::Month => "month",
        };
        let from = self.interval.prev(self.first);
        let to = self.interval.next(self.last);
        Ok(format!(
            "SELECT pdi.person_id AS actor, CAST(p.created_at AS BIGINT) AS created, \
             CAST(date_trunc({}, e.timestamp) AS BIGINT) AS period \
             FROM events e JOIN person_distinct_ids pdi ON e.distinct_id = pdi.distinct_id \
             JOIN persons p ON p.uuid = pdi.person_id \
             WHERE e.event = {} AND {} AND {} AND e.timestamp >= {} AND e.timestamp < {} \
             GROUP BY 1, 2, 3",
            lit(unit),
            lit(&self.event.id),
            props_sql(&self.event.properties)?,
            props_sql(&self.props)?,
            ts_lit(from),
            ts_lit(to),
        ))
    }
}

/// Per (period start, status): the persons (UUIDs, sorted).
pub type Lifecycle = BTreeMap<(i64, &'static str), BTreeSet<String>>;

/// Compute the lifecycle.
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
    let batches = collect(&ctx, &spec.sql()?).await?;
    // person → (created, active periods)
    let mut people: BTreeMap<String, (i64, BTreeSet<i64>)> = BTreeMap::new();
    for b in &batches {
        let actor = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let actor = actor.as_string::<i32>();
        let created = b.column(1).as_primitive::<Int64Type>();
        let period = b.column(2).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            if actor.is_null(r) || created.is_null(r) || period.is_null(r) {
                continue;
            }
            // The SQL truncated to hours, days or months; weeks here.
            let start = spec.interval.trunc(period.value(r));
            let e = people
                .entry(actor.value(r).to_string())
                .or_insert_with(|| (created.value(r), BTreeSet::new()));
            e.1.insert(start);
        }
    }
    let i = spec.interval;
    let mut out: Lifecycle = BTreeMap::new();
    let mut put = |period: i64, status: &'static str, who: &str| {
        if period >= spec.first && period <= spec.last {
            out.entry((period, status))
                .or_default()
                .insert(who.to_string());
        }
    };
    for (who, (created, active)) in &people {
        let active: Vec<i64> = active.iter().copied().collect();
        let mut prev = i.trunc(*created);
        for (k, &cur) in active.iter().enumerate() {
            let status = if prev == cur {
                "new"
            } else if i.prev(cur) == prev && k != 0 {
                "returning"
            } else {
                "resurrecting"
            };
            put(cur, status, who);
            let next = i.next(cur);
            if active.get(k + 1) != Some(&next) {
                put(next, "dormant", who);
            }
            prev = cur;
        }
    }
    Ok(out)
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
                .map(|&t| sign * l.get(&(t, status)).map_or(0, BTreeSet::len) as f64)
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
    Ok(l.get(&(period, status))
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default())
}
