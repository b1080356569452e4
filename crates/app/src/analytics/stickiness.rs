//! Stickiness (PostHog's `StickinessQuery`): per series, how many actors
//! did the event in exactly 1, 2, … of the range's periods (or in that
//! many or more: `computedAs: cumulative`), as PostHog's
//! `StickinessQueryRunner` counts them.
//!
//! A series is a trend's series counted per actor ([`TrendsSpec`] with a
//! per-actor math): the same range, periods, filters, identity and
//! personless actors as trends (persons through their current identity; a
//! deleted person counts nowhere). An actor's period counts when it has
//! at least one event in it, or as many as `stickinessCriteria` asks.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::personless::MAX_RUNS;
use super::stream;
use super::trends::{self, TrendsSpec};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// A stickiness query, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StickinessSpec {
    /// The series, range and filters, as a trend counted per actor.
    pub trends: TrendsSpec,
    /// Actors with that many periods or more (`computedAs: cumulative`).
    pub cumulative: bool,
    /// What makes a period count for an actor: its events compared with
    /// a number (`stickinessCriteria`; default at least one).
    pub criteria: (&'static str, i64),
}

impl StickinessSpec {
    /// Parse a `StickinessQuery` (the last 7 days by day by default).
    pub fn parse(q: &Map<String, Value>, now: chrono::DateTime<chrono::Utc>) -> Result<Self> {
        super::query_nodes::check_node(
            q,
            "StickinessQuery",
            &["series", "interval", "intervalCount", "stickinessFilter"],
        )?;
        match q.get("intervalCount") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_i64() == Some(1) => {}
            Some(v) => {
                return invalid(format!(
                    "StickinessQuery: intervalCount {v} is not supported (1)"
                ))
            }
        }
        let f = match q.get("stickinessFilter") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(f)) => f.clone(),
            Some(v) => return invalid(format!("stickinessFilter must be an object, got {v}")),
        };
        let cumulative = match f.get("computedAs") {
            None | Some(Value::Null) => false,
            Some(Value::String(c)) if c == "non_cumulative" => false,
            Some(Value::String(c)) if c == "cumulative" => true,
            Some(v) => {
                return invalid(format!(
                    "stickinessFilter.computedAs must be non_cumulative or cumulative, got {v}"
                ))
            }
        };
        let criteria = match f.get("stickinessCriteria") {
            None | Some(Value::Null) => (">=", 1),
            Some(Value::Object(c)) => {
                let op = match c.get("operator").and_then(Value::as_str) {
                    Some("gte") => ">=",
                    Some("lte") => "<=",
                    Some("gt") => ">",
                    Some("lt") => "<",
                    Some("exact") | Some("eq") => "=",
                    _ => {
                        return invalid(
                            "stickinessCriteria.operator must be gte, lte, gt, lt or exact",
                        )
                    }
                };
                let Some(value) = c.get("value").and_then(Value::as_i64) else {
                    return invalid("stickinessCriteria.value must be an integer");
                };
                (op, value)
            }
            Some(v) => return invalid(format!("stickinessCriteria must be an object, got {v}")),
        };
        // The trend counted per actor that holds the series.
        let mut t = Map::new();
        t.insert("kind".into(), json!("TrendsQuery"));
        for k in ["dateRange", "interval", "properties", "filterTestAccounts"] {
            if let Some(v) = q.get(k) {
                t.insert(k.into(), v.clone());
            }
        }
        let Some(Value::Array(series)) = q.get("series") else {
            return invalid("StickinessQuery: series must be a list of EventsNode");
        };
        let mut list = Vec::with_capacity(series.len());
        for s in series {
            let Value::Object(o) = s else {
                return invalid("StickinessQuery: each series is an object");
            };
            if let Some(m) = o.get("math").and_then(Value::as_str) {
                if m == "hogql" || m == "unique_group" {
                    return invalid(format!(
                        "StickinessQuery: math {m} is not supported (persons)"
                    ));
                }
            }
            let mut o = o.clone();
            o.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "kind" | "event" | "name" | "custom_name" | "properties"
                )
            });
            o.insert("math".into(), json!("max_count_per_actor"));
            list.push(Value::Object(o));
        }
        t.insert("series".into(), Value::Array(list));
        let trends = TrendsSpec::parse(&t, now).map_err(|e| match e {
            AppError::InvalidQuery(m) => {
                AppError::InvalidQuery(m.replace("TrendsQuery", "StickinessQuery"))
            }
            e => e,
        })?;
        Ok(StickinessSpec {
            trends,
            cumulative,
            criteria,
        })
    }

    /// The number of periods of the range: an actor sticks for 1 to that
    /// many.
    pub fn periods(&self) -> usize {
        self.trends.periods().len()
    }
}

/// Per series, the actors per number of periods (index 0: one period).
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &StickinessSpec,
    limits: &QueryLimits,
) -> Result<Vec<Vec<u64>>> {
    let mut runs = 0;
    loop {
        runs += 1;
        let (ctx, personless) = trends::prepare(persons, project, &spec.trends, limits).await?;
        let n = spec.periods();
        let (op, value) = spec.criteria;
        let mut out = Vec::new();
        for s in &spec.trends.series {
            let rows = spec.trends.actor_rows_sql(s, personless.as_ref())?;
            let sql = format!(
                "SELECT n, count(*) AS actors FROM (SELECT actor, count(*) AS n FROM \
                 (SELECT actor, period FROM ({rows}) r GROUP BY actor, period \
                 HAVING count(*) {op} {value}) i GROUP BY actor) a GROUP BY n"
            );
            let mut counts = vec![0u64; n];
            let mut batches = stream(&ctx, &sql).await?;
            while let Some(b) = batches.next().await {
                let b = b?;
                let k = b.column(0).as_primitive::<Int64Type>();
                let actors = b.column(1).as_primitive::<Int64Type>();
                for r in 0..b.num_rows() {
                    if k.is_null(r) {
                        continue;
                    }
                    // 1 to n periods (a period is counted once).
                    if let Some(c) = usize::try_from(k.value(r))
                        .ok()
                        .and_then(|k| k.checked_sub(1))
                        .and_then(|i| counts.get_mut(i))
                    {
                        *c += actors.value(r).max(0) as u64;
                    }
                }
            }
            out.push(counts);
        }
        // Again if a person was deleted while it ran.
        match personless {
            Some(p) if runs < MAX_RUNS && p.stale(persons, project)? => continue,
            _ => return Ok(out),
        }
    }
}

/// PostHog's result list: per series `{action, label, count, data, days,
/// labels}`, `data[i]` the actors of `i + 1` periods (or more, cumulative),
/// `count` their sum.
pub fn results(spec: &StickinessSpec, counts: &[Vec<u64>]) -> Value {
    let unit = spec.trends.interval.as_str();
    let more = if spec.cumulative { " or more" } else { "" };
    let out: Vec<Value> = spec
        .trends
        .series
        .iter()
        .zip(counts)
        .enumerate()
        .map(|(i, (s, c))| {
            let count: u64 = c.iter().sum();
            let data: Vec<u64> = if spec.cumulative {
                (0..c.len()).map(|k| c[k..].iter().sum()).collect()
            } else {
                c.clone()
            };
            let days: Vec<usize> = (1..=c.len()).collect();
            let labels: Vec<String> = days
                .iter()
                .map(|&d| format!("{d} {unit}{}{more}", if d == 1 { "" } else { "s" }))
                .collect();
            let name = s.event.clone().unwrap_or_else(|| "All events".into());
            json!({
                "action": {"order": i, "type": "events", "name": name, "id": s.event,
                           "custom_name": s.custom_name},
                "label": name,
                "count": count,
                "data": data,
                "days": days,
                "labels": labels,
            })
        })
        .collect();
    Value::Array(out)
}

/// The legacy parameters of `…/persons/stickiness/` as a
/// `StickinessQuery`, and which series `entity_id` names
/// ([`super::query_nodes::legacy_series`]).
pub fn legacy_query(p: &super::filter::Params) -> Result<(Map<String, Value>, usize)> {
    super::query_nodes::legacy_series(p, "StickinessQuery")
}

/// The persons (UUIDs, sorted) who did series `index`'s event in exactly
/// `n` periods of the range. Personless actors have no profile to list.
pub async fn persons_of(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &StickinessSpec,
    index: usize,
    n: usize,
    limits: &QueryLimits,
) -> Result<Vec<String>> {
    let Some(s) = spec.trends.series.get(index) else {
        return invalid("no such series");
    };
    // The persons' rows only: the cohorts, not the deleted persons.
    let ctx = super::session(persons, project, limits)?;
    super::cohorts::register_for(
        &ctx,
        persons,
        project,
        spec.trends.props.iter().chain(&s.props),
    )
    .await?;
    let rows = spec.trends.actor_rows_sql(s, None)?;
    let (op, value) = spec.criteria;
    let sql = format!(
        "SELECT actor FROM (SELECT actor, count(*) AS n FROM \
         (SELECT actor, period FROM ({rows}) r GROUP BY actor, period \
         HAVING count(*) {op} {value}) i GROUP BY actor) a WHERE n = {n} ORDER BY actor"
    );
    let mut out = Vec::new();
    let mut batches = stream(&ctx, &sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let c = c.as_string::<i32>();
        out.extend(
            (0..c.len())
                .filter(|&r| !c.is_null(r))
                .map(|r| c.value(r).to_string()),
        );
    }
    Ok(out)
}
