//! Retention (PostHog's `RetentionQuery`): of the actors who did the
//! target event in each interval of the range (the cohort of that
//! interval), how many did the returning event 1, 2, … intervals later,
//! as PostHog's `RetentionQueryRunner` counts them.
//!
//! - The range is whole intervals: from the start of `date_from`'s
//!   interval (or `totalIntervals` intervals before the end) to the end of
//!   `date_to`'s (PostHog's `QueryDateRangeWithIntervals`); each interval
//!   of it starts a cohort, and each cohort is followed `totalIntervals`
//!   intervals (interval 0 included), inside the range.
//! - `retention_recurring` (default): an actor is in the cohort of every
//!   interval with a target event; `retention_first_time`: only of the
//!   interval of its first target event ever (it must fall in the range).
//! - Interval 0 is the cohort's size; interval `k` counts its actors with a
//!   returning event (at least `minimumOccurrences` of them) in the
//!   interval `k` after. `cumulative`: those returning in interval `k` or
//!   later.
//! - Actors as in every analytic: persons through their current identity,
//!   personless events by the UUID they carry, a deleted person nowhere.
//!   Weeks start on Sunday, in UTC.
//! - A breakdown (`breakdownFilter`, an event or a person property) makes
//!   each (actor, value) an actor of its own, as PostHog's actor query
//!   groups by `actor_id, breakdown_value`: an event breakdown's cohort
//!   and returns are the events with that value (unset is `""`). The
//!   values are ranked by their cohorts' sizes summed, the largest
//!   `breakdown_limit` kept and the rest summed into Other
//!   ([`results`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, Datelike, Utc};
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::filter::{range, Interval, Params};
use super::personless::{personless_can_match, personless_props_sql, Personless, MAX_RUNS};
use super::properties::{any_of_kind, props, props_sql, Prop, PropKind};
use super::{lit, session, stream, ts_lit};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

mod breakdown;
use breakdown::breakdown;
pub use breakdown::{RetentionBreakdown, BREAKDOWN_OTHER};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// PostHog's default `totalIntervals`.
pub const DEFAULT_TOTAL_INTERVALS: usize = 11;

/// Most intervals a cohort is followed for, and most cohorts.
pub const MAX_INTERVALS: usize = 1_000;

/// Most values (cohorts × intervals) one answer holds.
pub const MAX_VALUES: usize = 100_000;

/// The target or the returning event.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionEntity {
    /// The event; `None`: every event.
    pub event: Option<String>,
    /// Its own property filters.
    pub props: Vec<Prop>,
}

/// The counts of [`compute`]: per breakdown value (`""` for every actor
/// without a breakdown, and for an unset value), per cohort interval, the
/// actors per interval after it.
pub type RetentionCounts = BTreeMap<String, Vec<Vec<u64>>>;

/// A retention query, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSpec {
    /// What puts an actor in a cohort.
    pub target: RetentionEntity,
    /// What counts as coming back.
    pub returning: RetentionEntity,
    /// Filters on every event.
    pub props: Vec<Prop>,
    /// The interval.
    pub interval: Interval,
    /// The start of each interval of the range (µs): one cohort each.
    pub starts: Vec<i64>,
    /// The end of the range (µs, exclusive).
    pub end: i64,
    /// Intervals each cohort is followed for (`totalIntervals`).
    pub lookahead: usize,
    /// `retention_first_time`.
    pub first_time: bool,
    /// Returning in interval `k` or later counts for `k`.
    pub cumulative: bool,
    /// Returning events an interval needs to count.
    pub minimum_occurrences: i64,
    /// The breakdown, if any.
    pub breakdown: Option<RetentionBreakdown>,
}

impl RetentionSpec {
    /// Parse a `RetentionQuery` (PostHog's defaults: `$pageview` both ways,
    /// by day, 11 intervals ending today).
    pub fn parse(q: &Map<String, Value>, now: DateTime<Utc>) -> Result<RetentionSpec> {
        super::query_nodes::check_node(
            q,
            "RetentionQuery",
            &["retentionFilter", "breakdownFilter"],
        )?;
        let breakdown = breakdown(q.get("breakdownFilter"))?;
        let f = match q.get("retentionFilter") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(f)) => f.clone(),
            Some(v) => return invalid(format!("retentionFilter must be an object, got {v}")),
        };
        let interval = match f.get("period") {
            None | Some(Value::Null) => Interval::Day,
            Some(Value::String(p)) => match p.to_ascii_lowercase().as_str() {
                "hour" => Interval::Hour,
                "day" => Interval::Day,
                "week" => Interval::Week,
                "month" => Interval::Month,
                _ => {
                    return invalid(format!(
                        "retentionFilter.period {p:?} is not one of Hour, Day, Week, Month"
                    ))
                }
            },
            Some(v) => return invalid(format!("retentionFilter.period must be a string, got {v}")),
        };
        let lookahead = match f.get("totalIntervals") {
            None | Some(Value::Null) => DEFAULT_TOTAL_INTERVALS,
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n @ 1..=MAX_INTERVALS) => n,
                _ => {
                    return invalid(format!(
                        "retentionFilter.totalIntervals must be an integer from 1 to {MAX_INTERVALS}, got {v}"
                    ))
                }
            },
        };
        let first_time = match f.get("retentionType") {
            None | Some(Value::Null) => false,
            Some(Value::String(t)) if t == "retention_recurring" => false,
            Some(Value::String(t)) if t == "retention_first_time" => true,
            Some(v) => {
                return invalid(format!(
                    "retentionFilter.retentionType {v} is not supported (retention_recurring, retention_first_time)"
                ))
            }
        };
        let cumulative = match f.get("cumulative") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return invalid(format!(
                    "retentionFilter.cumulative must be true or false, got {v}"
                ))
            }
        };
        let minimum_occurrences = match f.get("minimumOccurrences") {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_i64() {
                Some(n @ 1..=1_000_000) => n,
                _ => {
                    return invalid(format!(
                        "retentionFilter.minimumOccurrences must be a positive integer, got {v}"
                    ))
                }
            },
        };
        if f.get("timeWindowMode")
            .is_some_and(|v| !v.is_null() && v != "strict_calendar_dates")
        {
            return invalid(
                "retentionFilter.timeWindowMode is not supported (strict_calendar_dates)",
            );
        }
        let target = entity(f.get("targetEntity"), "targetEntity")?;
        let returning = entity(f.get("returningEntity"), "returningEntity")?;
        // The range: whole intervals, through the end of date_to's.
        let mut m = Map::new();
        super::query_nodes::date_range(q, &mut m)?;
        // Without date_from, the range is counted back from its end.
        let given_from = m.contains_key("date_from");
        if !given_from {
            m.insert("date_from".into(), json!("all"));
        }
        let p = Params(m);
        let r = range(&p, now, "-7d", interval)?;
        let end = interval.next(interval.trunc(r.to));
        let from =
            match (given_from, r.from) {
                (true, Some(from)) => interval.trunc(from),
                (true, None) => return invalid(
                    "retention needs a date_from: resolve `all` first (analytics::all_time_from)",
                ),
                (false, _) => (0..lookahead).fold(end, |t, _| interval.prev(t)),
            };
        if end == i64::MAX || from == i64::MIN {
            return invalid("the date range reaches past the dates Elide can count");
        }
        let starts: Vec<i64> = interval
            .periods(from, end.saturating_sub(1))
            .into_iter()
            .filter(|&t| t < end)
            .collect();
        if starts.len() > MAX_INTERVALS {
            return invalid(format!(
                "the date range holds {} intervals; at most {MAX_INTERVALS}",
                starts.len()
            ));
        }
        // With a breakdown, a row per value shown and Other.
        let rows = breakdown.as_ref().map_or(1, |b| b.limit.saturating_add(1));
        let values = starts.len().saturating_mul(lookahead).saturating_mul(rows);
        if values > MAX_VALUES {
            return invalid(format!(
                "the answer would hold {values} values (intervals × totalIntervals × \
                 (breakdown_limit + 1)); at most {MAX_VALUES}"
            ));
        }
        Ok(RetentionSpec {
            target,
            returning,
            props: props(q.get("properties").cloned(), "properties")?,
            interval,
            starts,
            end,
            lookahead,
            first_time,
            cumulative,
            minimum_occurrences,
            breakdown,
        })
    }

    fn all_props(&self) -> impl Iterator<Item = &Prop> {
        self.props
            .iter()
            .chain(&self.target.props)
            .chain(&self.returning.props)
    }

    /// The first instant of the range (µs).
    fn from(&self) -> i64 {
        self.starts.first().copied().unwrap_or(self.end)
    }

    /// The index of the interval of `ts` (a timestamp column at or after
    /// the range's start).
    fn index_sql(&self, ts: &str) -> String {
        let from = self.from();
        let len: i64 = match self.interval {
            Interval::Hour => 3_600_000_000,
            Interval::Day => 86_400_000_000,
            Interval::Week => 7 * 86_400_000_000,
            Interval::Month => {
                let d = DateTime::from_timestamp_micros(from).unwrap_or_default();
                let base = i64::from(d.year()) * 12 + i64::from(d.month());
                return format!(
                    "(CAST(date_part('year', {ts}) AS BIGINT) * 12 + CAST(date_part('month', {ts}) AS BIGINT) - {base})"
                );
            }
        };
        format!("((CAST({ts} AS BIGINT) - {from}) / {len})")
    }

    /// The events of the query, `(actor, ts, is_start, is_return)`: the
    /// persons' and, when the filters can hold of them, the personless
    /// actors' (never the same actor).
    fn events_sql(&self, personless: Option<&Personless>) -> Result<String> {
        let names = |e: &RetentionEntity| e.event.clone();
        let mut events: Vec<Option<String>> = vec![names(&self.target), names(&self.returning)];
        events.sort();
        events.dedup();
        let by_name = if events.iter().any(Option::is_none) {
            "TRUE".to_string()
        } else {
            let list: Vec<String> = events.iter().flatten().map(|e| lit(e)).collect();
            format!("e.event IN ({})", list.join(", "))
        };
        let mut bounds = format!("e.timestamp < {}", ts_lit(self.end));
        if !self.first_time {
            bounds.push_str(&format!(" AND e.timestamp >= {}", ts_lit(self.from())));
        }
        let cond =
            |e: &RetentionEntity, own: &dyn Fn(&[Prop]) -> Result<String>| -> Result<String> {
                let name = match &e.event {
                    Some(n) => format!("e.event = {}", lit(n)),
                    None => "TRUE".into(),
                };
                Ok(format!("({name} AND {})", own(&e.props)?))
            };
        let person_bd = self.breakdown.as_ref().is_some_and(|b| b.person);
        let persons_join = if person_bd || any_of_kind(self.all_props(), PropKind::Person) {
            " JOIN persons p ON p.uuid = pdi.person_id"
        } else {
            ""
        };
        // The breakdown value, "" when unset (PostHog's
        // `ifNull(toString(…), '')`); a personless actor has no person
        // properties.
        let bd = |personless: bool| match &self.breakdown {
            None => String::new(),
            Some(b) if b.person && personless => ", '' AS bd".to_string(),
            Some(b) => format!(
                ", coalesce(json_as_text({}.properties, {}), '') AS bd",
                if b.person { "p" } else { "e" },
                lit(&b.key)
            ),
        };
        let (s, r) = (
            cond(&self.target, &props_sql)?,
            cond(&self.returning, &props_sql)?,
        );
        let mut parts = vec![format!(
            "SELECT pdi.person_id AS actor, e.timestamp AS ts, {s} AS is_s, {r} AS is_r{} \
             FROM person_distinct_ids pdi{persons_join} JOIN events e ON e.distinct_id = pdi.distinct_id \
             WHERE {bounds} AND {by_name} AND {} AND ({s} OR {r})",
            bd(false),
            props_sql(&self.props)?
        )];
        if let Some(p) = personless.filter(|_| personless_can_match(&self.props)) {
            let (s, r) = (
                cond(&self.target, &personless_props_sql)?,
                cond(&self.returning, &personless_props_sql)?,
            );
            parts.push(format!(
                "SELECT CAST(e.person_id AS VARCHAR) AS actor, e.timestamp AS ts, {s} AS is_s, {r} AS is_r{} \
                 FROM events e WHERE {bounds} AND {by_name} AND {} AND ({s} OR {r}) AND {}",
                bd(true),
                personless_props_sql(&self.props)?,
                p.actor_sql(true)
            ));
        }
        Ok(parts.join(" UNION ALL "))
    }

    /// The query: `(cohort interval, k, actors, breakdown value)`: for
    /// cumulative, `k` is the furthest interval each actor came back in
    /// (0: none).
    fn sql(&self, personless: Option<&Personless>) -> Result<String> {
        let (with, hits) = self.cohorts_sql(personless)?;
        // With a breakdown, `bd` is one more key of every grouping and
        // join; without, the value is "".
        let (b, value) = if self.breakdown.is_some() {
            (", bd", "bd")
        } else {
            ("", "'' AS bd")
        };
        let counts = if self.cumulative {
            // (`st.bd`: `h` has a `bd` too.)
            let (st_bd, on_bd) = if b.is_empty() {
                ("", "")
            } else {
                (", st.bd", " AND h.bd = st.bd")
            };
            format!(
                "SELECT i, k, count(*) AS n, {value} FROM (SELECT st.actor{st_bd}, st.i, coalesce(max(h.k), 0) AS k \
                 FROM st LEFT JOIN ({hits}) h ON h.actor = st.actor{on_bd} AND h.i = st.i \
                 GROUP BY st.actor{st_bd}, st.i) a GROUP BY i, k{b}"
            )
        } else {
            format!(
                "SELECT i, 0 AS k, count(*) AS n, {value} FROM st GROUP BY i{b} \
                 UNION ALL SELECT i, k, count(*) AS n, {value} FROM ({hits}) h GROUP BY i, k{b}"
            )
        };
        Ok(format!("{with} {counts}"))
    }

    /// The cohorts and the returns: a `WITH` of `ev` (the events), `st`
    /// (`actor, i`: each actor's cohort intervals) and `rt` (`actor, r`:
    /// the intervals it came back in), and the query of the hits
    /// (`actor, i, k`: back `k` intervals after cohort `i`).
    fn cohorts_sql(&self, personless: Option<&Personless>) -> Result<(String, String)> {
        let events = self.events_sql(personless)?;
        let (from, end) = (ts_lit(self.from()), ts_lit(self.end));
        // The breakdown value goes with the actor everywhere: (actor,
        // value) is the actor of a breakdown.
        let b = if self.breakdown.is_some() { ", bd" } else { "" };
        let starts = if self.first_time {
            format!(
                "SELECT actor{b}, {} AS i FROM (SELECT actor{b}, min(ts) AS f0 FROM ev WHERE is_s GROUP BY actor{b}) f \
                 WHERE f0 >= {from} AND f0 < {end}",
                self.index_sql("f0")
            )
        } else {
            format!(
                "SELECT DISTINCT actor{b}, {} AS i FROM ev WHERE is_s AND ts >= {from} AND ts < {end}",
                self.index_sql("ts")
            )
        };
        let returns = format!(
            "SELECT actor{b}, {idx} AS r FROM ev WHERE is_r AND ts >= {from} AND ts < {end} \
             GROUP BY actor{b}, {idx} HAVING count(*) >= {}",
            self.minimum_occurrences,
            idx = self.index_sql("ts")
        );
        // Each cohort row with the intervals it is followed for, joined
        // with the returns on (actor, interval): one probe per (cohort,
        // k), whatever the actor's number of active intervals.
        let l = self.lookahead;
        // (The interval is computed in a derived table and joined on: a
        // `CROSS JOIN` followed by `JOIN … ON a = b AND r = i + k` lost
        // its second condition in DataFusion 55.)
        // (The intervals come first: a cross join holds its left side in
        // memory and streams the right, and the cohorts' rows are many.)
        let (xb, stb, on_bd) = if self.breakdown.is_some() {
            (", x.bd", ", st.bd", " AND rt.bd = x.bd")
        } else {
            ("", "", "")
        };
        let hits = format!(
            "SELECT x.actor{xb}, x.i, x.k FROM (SELECT st.actor{stb}, st.i, ks.k, st.i + ks.k AS r \
             FROM (SELECT unnest(range(1, {l})) AS k) ks CROSS JOIN st) x \
             JOIN rt ON rt.actor = x.actor{on_bd} AND rt.r = x.r"
        );
        Ok((
            format!("WITH ev AS ({events}), st AS ({starts}), rt AS ({returns})"),
            hits,
        ))
    }
}

/// How a cohort's persons are ordered: by their number of appearances
/// (`true`) or their UUID (`false`), each descending or not; the UUID
/// breaks ties.
pub type CohortOrder = [(bool, bool)];

/// The persons of cohort `interval` (0-based) with their appearances:
/// 0 and each interval after it they came back in (PostHog's retention
/// actors' `appearances`), in `order` (default: most appearances first,
/// then by UUID), `limit` of them after `offset`, ordered and paged in
/// SQL (under the query's memory limit). Personless actors have no
/// profile to list. With a breakdown, `value` is the breakdown value
/// whose cohort it is (none: the cohort's persons of every value, their
/// appearances together, as PostHog's actors query groups them).
pub async fn persons_of(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &RetentionSpec,
    (interval, value): (usize, Option<&str>),
    (order, limit, offset): (&CohortOrder, usize, usize),
    limits: &QueryLimits,
) -> Result<Vec<(String, Vec<usize>)>> {
    if interval >= spec.starts.len() {
        return invalid(format!(
            "interval {interval} is none of the query's {} cohorts",
            spec.starts.len()
        ));
    }
    let of_value = match (value, &spec.breakdown) {
        (None, _) => String::new(),
        (Some(_), None) => return invalid("a breakdown value is given but the query has none"),
        (Some(v), Some(_)) => format!(" AND bd = {}", lit(v)),
    };
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(&ctx, persons, project, spec.all_props()).await?;
    let (with, hits) = spec.cohorts_sql(None)?;
    let mut keys: Vec<String> = order
        .iter()
        .map(|&(appearances, desc)| {
            let key = if appearances {
                "cardinality(ks)"
            } else {
                "actor"
            };
            format!("{key} {}", if desc { "DESC" } else { "ASC" })
        })
        .collect();
    if order.is_empty() {
        keys.push("cardinality(ks) DESC".into());
    }
    keys.push("actor ASC".into());
    let sql = format!(
        "{with} SELECT actor, ks FROM (SELECT CAST(actor AS VARCHAR) AS actor, \
         array_agg(DISTINCT k) AS ks FROM \
         (SELECT actor, 0 AS k FROM st WHERE i = {interval}{of_value} \
          UNION ALL SELECT actor, k FROM ({hits}) h WHERE i = {interval}{of_value}) a GROUP BY 1) p \
         ORDER BY {} LIMIT {limit} OFFSET {offset}",
        keys.join(", ")
    );
    let mut out = Vec::new();
    let mut batches = stream(&ctx, &sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let who = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let who = who.as_string::<i32>();
        let ks = b.column(1).as_list::<i32>();
        for r in 0..b.num_rows() {
            if who.is_null(r) {
                continue;
            }
            let list = ks.value(r);
            let list = arrow::compute::cast(&list, &arrow::datatypes::DataType::Int64)?;
            let list = list.as_primitive::<Int64Type>();
            let mut appearances: Vec<usize> = (0..list.len())
                .filter(|&i| !list.is_null(i))
                .filter_map(|i| usize::try_from(list.value(i)).ok())
                .collect();
            appearances.sort_unstable();
            out.push((who.value(r).to_string(), appearances));
        }
    }
    Ok(out)
}

/// A `targetEntity` or `returningEntity` (default `$pageview`).
fn entity(v: Option<&Value>, what: &str) -> Result<RetentionEntity> {
    let o = match v {
        None | Some(Value::Null) => {
            return Ok(RetentionEntity {
                event: Some("$pageview".into()),
                props: Vec::new(),
            })
        }
        Some(Value::Object(o)) => o,
        Some(v) => return invalid(format!("retentionFilter.{what} must be an object, got {v}")),
    };
    match o.get("type").and_then(Value::as_str) {
        None | Some("events") => {}
        Some(t) => {
            return invalid(format!(
                "retentionFilter.{what} of type {t:?} is not supported: Elide has no actions (type \"events\")"
            ))
        }
    }
    let event = match o.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return invalid(format!(
                "retentionFilter.{what}.id must be an event name, got {v}"
            ))
        }
    };
    Ok(RetentionEntity {
        event,
        props: props(o.get("properties").cloned(), what)?,
    })
}

/// Per breakdown value ([`RetentionCounts`]), per cohort interval, the
/// actors per interval after it (index 0: the cohort's size).
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &RetentionSpec,
    limits: &QueryLimits,
) -> Result<RetentionCounts> {
    let mut runs = 0;
    loop {
        runs += 1;
        let ctx = session(persons, project, limits)?;
        super::cohorts::register_for(&ctx, persons, project, spec.all_props()).await?;
        let personless = if personless_can_match(&spec.props) {
            let p = Personless::read(persons, project)?;
            p.register(&ctx);
            Some(p)
        } else {
            None
        };
        // What the values' counts hold is charged to the query's memory
        // pool: a breakdown by a property unique per event makes a value
        // of about every event.
        let tally = elide_query::hold(&ctx.runtime_env().memory_pool, "retention tally", 0)?;
        // A value's rows: a vector per cohort, each `lookahead` counts.
        let row_bytes = spec.starts.len()
            * (std::mem::size_of::<Vec<u64>>() + spec.lookahead * std::mem::size_of::<u64>());
        let mut out: RetentionCounts = BTreeMap::new();
        if spec.breakdown.is_none() {
            out.insert(
                String::new(),
                vec![vec![0u64; spec.lookahead]; spec.starts.len()],
            );
        }
        let mut batches = stream(&ctx, &spec.sql(personless.as_ref())?).await?;
        while let Some(b) = batches.next().await {
            let b = b?;
            let cohort = b.column(0).as_primitive::<Int64Type>();
            let after = b.column(1).as_primitive::<Int64Type>();
            let n = b.column(2).as_primitive::<Int64Type>();
            let value = arrow::compute::cast(b.column(3), &arrow::datatypes::DataType::Utf8)?;
            let value = value.as_string::<i32>();
            for r in 0..b.num_rows() {
                if cohort.is_null(r) || after.is_null(r) {
                    continue;
                }
                let (Ok(i), Ok(k)) = (
                    usize::try_from(cohort.value(r)),
                    usize::try_from(after.value(r)),
                ) else {
                    continue;
                };
                let v = if value.is_null(r) { "" } else { value.value(r) };
                let rows = match out.get_mut(v) {
                    Some(rows) => rows,
                    None => {
                        tally.try_grow(row_bytes + v.len() + 64)?;
                        out.entry(v.to_string())
                            .or_insert_with(|| vec![vec![0u64; spec.lookahead]; spec.starts.len()])
                    }
                };
                let Some(row) = rows.get_mut(i) else { continue };
                let n = n.value(r).max(0) as u64;
                if spec.cumulative {
                    // Came back as far as `k`: counts for 0 to `k`.
                    for c in row.iter_mut().take(k + 1) {
                        *c += n;
                    }
                } else if let Some(c) = row.get_mut(k) {
                    *c += n;
                }
            }
        }
        match personless {
            Some(p) if runs < MAX_RUNS && p.stale(persons, project)? => continue,
            _ => return Ok(out),
        }
    }
}

/// PostHog's result list: per cohort `{values: [{count, label}], label,
/// date}`, labels `"Day 0"`, `"Day 1"` (`Hour`, `Week`, `Month`). With a
/// breakdown, the cohorts of each value in turn, each row with its
/// `breakdown_value`, as PostHog's `RetentionQueryRunner` ranks them: by
/// the sum of the value's cohort sizes, largest first, then by value;
/// past `breakdown_limit`, the values' counts summed into one
/// [`BREAKDOWN_OTHER`] value, last. A value with no cohort is not shown.
pub fn results(spec: &RetentionSpec, counts: &RetentionCounts) -> Value {
    let unit = match spec.interval {
        Interval::Hour => "Hour",
        Interval::Day => "Day",
        Interval::Week => "Week",
        Interval::Month => "Month",
    };
    let rows = |cohorts: &[Vec<u64>], value: Option<&str>| -> Vec<Value> {
        spec.starts
            .iter()
            .zip(cohorts)
            .enumerate()
            .map(|(i, (&start, row))| {
                let date = DateTime::from_timestamp_micros(start)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                let values: Vec<Value> = row
                    .iter()
                    .enumerate()
                    .map(|(k, n)| json!({"count": n, "label": format!("{unit} {k}")}))
                    .collect();
                let mut out =
                    json!({"values": values, "label": format!("{unit} {i}"), "date": date});
                if let Some(v) = value {
                    out["breakdown_value"] = json!(v);
                }
                out
            })
            .collect()
    };
    let Some(b) = &spec.breakdown else {
        let none = vec![vec![0u64; spec.lookahead]; spec.starts.len()];
        return Value::Array(rows(counts.get("").unwrap_or(&none), None));
    };
    let mut out = Vec::new();
    for (v, cohorts) in breakdown::ranked(counts, b.limit, (spec.starts.len(), spec.lookahead)) {
        out.extend(rows(&cohorts, Some(&v)));
    }
    Value::Array(out)
}
