//! Funnels (`posthog-analytics.md` §3.1–3.2): one `funnel_path` per
//! person over the project's events in the date range, then step counts,
//! conversion times and the persons at a step.
//!
//! Per person: the furthest step of its best path (`ordered`, `strict` or
//! `unordered`; a path dropped if an exclusion event falls inside it), the
//! path's step timestamps, and the average and median time per step over
//! the paths that got furthest. A step's count is the number of persons
//! that reached at least that step; its average conversion time the mean
//! of those persons' averages, its median the median of their medians.
//! With a breakdown, each value is a funnel of its own, and which event's
//! value is an actor's is PostHog's `breakdown_attribution_type`
//! ([`Attribution`]): by default the first event of the funnel's query
//! that has one (first touch), an unset value being `""`. The insight
//! shows the `breakdown_limit` values furthest along and the others
//! together as `Other` ([`groups`]).
//!
//! Personless events (`$process_person_profile: false`, which posthog-js
//! sends for anonymous visitors by default) make an actor of the person
//! UUID they carry, as in PostHog, with empty person properties (they
//! pass the person filters that hold of an unset value, such as `is_not`
//! and `is_not_set`, no other, and are in no cohort); a deleted person's kept events make none.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt8Type};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use elide_persons::{Persons, SqliteMeta};
use elide_query::funnel::posthog::Order;
use elide_query::funnel::{Window, MAX_CONDITIONS};
use serde_json::Value;

use super::filter::{
    entities, funnel_window, range, Entity, ExclusionStep, Interval, Params, Range,
};
use super::personless::{personless_can_match, Personless, MAX_RUNS};
use super::properties::{any_of_kind, events_only, props, props_sql, Prop, PropKind};
use super::{collect, lit, session, ts_lit};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

mod breakdown;
mod steps;

pub use breakdown::{breakdown, groups, Attribution, Breakdown, MAX_BREAKDOWN_KEYS, OTHER};
pub use steps::{steps, StepSelection};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// A funnel, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelSpec {
    /// The steps, in order.
    pub steps: Vec<Entity>,
    /// Exclusions.
    pub exclusions: Vec<ExclusionStep>,
    /// Global property filters.
    pub props: Vec<Prop>,
    /// The date range.
    pub range: Range,
    /// The conversion window.
    pub window: Window,
    /// The order type.
    pub order: Order,
    /// The breakdown, if any.
    pub breakdown: Option<Breakdown>,
}

/// The funnel's `interval`, which only rounds its dates ([`range`]):
/// PostHog's intervals, `minute` rounding as `hour` does.
fn funnel_interval(p: &Params) -> Result<Interval> {
    match p
        .text("interval")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some("minute") => Ok(Interval::Hour),
        _ => Interval::parse(p),
    }
}

impl FunnelSpec {
    /// Parse a funnel's parameters (PostHog's defaults: `date_from` −7d,
    /// a 14-day window, `ordered`).
    pub fn parse(p: &Params, now: DateTime<Utc>) -> Result<FunnelSpec> {
        let steps = entities(p)?;
        let order = match p.text("funnel_order_type").as_deref() {
            None | Some("ordered") => Order::Ordered,
            Some("strict") => Order::Strict,
            Some("unordered") => Order::Unordered,
            Some(other) => {
                return invalid(format!(
                    "funnel_order_type {other:?} is not one of ordered, strict, unordered"
                ))
            }
        };
        if let Some(v) = p.text("funnel_viz_type") {
            if v != "steps" {
                return invalid(format!("funnel_viz_type {v:?} is not supported (steps)"));
            }
        }
        let n = steps.len();
        let mut exclusions = Vec::new();
        if let Some(v) = p.json("exclusions") {
            let Value::Array(items) = v else {
                return invalid("exclusions must be a JSON list");
            };
            for (i, x) in items.iter().enumerate() {
                let entity = super::filter::entity_of(x, i)?;
                let from = x.get("funnel_from_step").and_then(Value::as_i64);
                let to = x.get("funnel_to_step").and_then(Value::as_i64);
                let (Some(from), Some(to)) = (from, to) else {
                    return invalid("Exclusion event needs to define funnel steps");
                };
                if from >= to {
                    return invalid("Exclusion event range is invalid. End of range should be greater than start.");
                }
                if from < 0 || from as usize >= n {
                    return invalid("Exclusion event range is invalid. Start of range is greater than number of steps.");
                }
                if to as usize >= n {
                    return invalid("Exclusion event range is invalid. End of range is greater than number of steps.");
                }
                if steps
                    .iter()
                    .any(|s| s.id == entity.id && s.properties == entity.properties)
                {
                    return invalid("Exclusion event can't be the same as funnel step");
                }
                if order == Order::Unordered && (from != 0 || to as usize != n - 1) {
                    return invalid("Partial Exclusions not allowed in unordered funnels");
                }
                exclusions.push(ExclusionStep {
                    entity,
                    from: from as usize,
                    to: to as usize,
                });
            }
        }
        if n + exclusions.len() > MAX_CONDITIONS {
            return invalid(format!(
                "a funnel takes at most {} steps and exclusions together",
                MAX_CONDITIONS
            ));
        }
        // A funnel counts from `date_from` as parsed, whatever its
        // interval: PostHog's funnel query compares `timestamp >=
        // date_from` where trends round it to the period.
        let mut range = range(p, now, "-7d", funnel_interval(p)?)?;
        range.from = range.given_from;
        let breakdown = breakdown(p)?;
        if let Some(Attribution::Step(k)) = breakdown.as_ref().map(|b| b.attribution) {
            if k >= n {
                return invalid(format!(
                    "breakdown_attribution_value {k} is not a step of this funnel of {n} (0-based)"
                ));
            }
            if order == Order::Unordered && k != 0 {
                return invalid(
                    "Only the first step can be used for breakdown attribution in unordered funnels",
                );
            }
        }
        Ok(FunnelSpec {
            steps,
            exclusions,
            props: props(p.json("properties"), "properties")?,
            range,
            window: funnel_window(p)?,
            order,
            breakdown,
        })
    }

    fn cond(e: &Entity) -> Result<String> {
        let own = props_sql(&e.properties)?;
        Ok(format!("(e.event = {} AND {own})", lit(&e.id)))
    }

    /// Every property filter: global, the steps' and the exclusions'.
    pub fn all_props(&self) -> impl Iterator<Item = &Prop> {
        self.props
            .iter()
            .chain(self.steps.iter().flat_map(|s| &s.properties))
            .chain(self.exclusions.iter().flat_map(|x| &x.entity.properties))
    }

    fn needs_persons(&self) -> bool {
        any_of_kind(self.all_props(), PropKind::Person)
            || self
                .breakdown
                .as_ref()
                .is_some_and(|b| b.kind == PropKind::Person)
    }

    /// Whether the funnel counts personless actors ([`FunnelSpec::sql`]):
    /// not when a global cohort or person property filter that needs a
    /// person filters it ([`personless_can_match`]). A step's or an
    /// exclusion's person filter reads their properties as absent, and a
    /// cohort there is false for them. Broken down by a person property,
    /// they have none.
    pub fn counts_personless(&self) -> bool {
        personless_can_match(&self.props)
    }

    /// The query: one row per actor (and nothing for actors who never did
    /// step 1): `actor`, `personless`, the breakdown values, the path.
    ///
    /// An actor is a person, or, when the funnel
    /// [counts them](FunnelSpec::counts_personless) and `personless` is
    /// given, the person UUID that events with no person carry
    /// ([`super::personless`]), as PostHog aggregates them. Those come
    /// through the events' outer join with the persons tables, with no
    /// person row: their person properties are absent, which the person
    /// filters then see. Left out here: the events of blocked ids (a
    /// deleted person's), and a UUID that is a live person's (its id was
    /// reset away from the person; grouped apart from the person's own
    /// events, so never counting it twice). The caller leaves out the
    /// UUIDs of deleted persons.
    ///
    /// Above the outer join, the `WHERE` names only the events: every
    /// condition on the persons' side (the global filters that are not on
    /// the event alone, and whether an event without a person counts) is
    /// the aggregates' `FILTER` instead, so that an event failing them is
    /// no event of the funnel's (not one that breaks a strict funnel's
    /// chain). DataFusion 55's physical filter pushdown matches columns by
    /// name, and would move a filter on `pdi.person_id` above the join
    /// onto the events' own `person_id`.
    pub fn sql(&self, personless: Option<&Personless>) -> Result<String> {
        let personless = personless.filter(|_| self.counts_personless());
        // With personless actors, what a row must meet to count, on the
        // persons' side.
        let ok = match personless {
            None => None,
            Some(p) => {
                let person_side: Vec<Prop> = self
                    .props
                    .iter()
                    .filter(|p| !events_only(p))
                    .cloned()
                    .collect();
                Some(format!(
                    "{} AND CASE WHEN pdi.person_id IS NULL THEN e.person_id IS NOT NULL AND {} ELSE TRUE END",
                    props_sql(&person_side)?,
                    p.not_blocked_sql()
                ))
            }
        };
        // Each aggregate's `FILTER`: the row is one of the funnel's.
        let filter_ok = |c: &str| match &ok {
            Some(ok) => format!("({ok}) AND ({c})"),
            None => c.to_string(),
        };
        let mut conds: Vec<String> = self.steps.iter().map(Self::cond).collect::<Result<_>>()?;
        for x in &self.exclusions {
            conds.push(Self::cond(&x.entity)?);
        }
        let mut options = match self.order {
            Order::Ordered => "ordered".to_string(),
            Order::Strict => "strict".to_string(),
            Order::Unordered => "unordered".to_string(),
        };
        for x in &self.exclusions {
            options.push_str(&format!("; exclude {}-{}", x.from, x.to));
        }
        let window = format!(
            "INTERVAL '{} months {} microseconds'",
            self.window.months, self.window.length
        );
        // With personless actors: grouped by (person, UUID of a personless
        // event), then named.
        let keys: Vec<&str> = if personless.is_some() {
            vec![
                "pdi.person_id",
                "CASE WHEN pdi.person_id IS NULL THEN e.person_id END",
            ]
        } else {
            vec!["pdi.person_id"]
        };
        let mut select = if personless.is_some() {
            vec![
                format!("{} AS person", keys[0]),
                format!("{} AS uuid", keys[1]),
            ]
        } else {
            vec![
                format!("{} AS actor", keys[0]),
                "FALSE AS personless".to_string(),
            ]
        };
        let mut group_by = if personless.is_some() {
            vec!["1".to_string(), "2".to_string()]
        } else {
            vec!["1".to_string()]
        };
        let mut filter = vec![format!("e.timestamp <= {}", ts_lit(self.range.to))];
        if let Some(from) = self.range.from {
            filter.push(format!("e.timestamp >= {}", ts_lit(from)));
        }
        if self.order != Order::Strict {
            let mut names: Vec<String> = self.steps.iter().map(|s| lit(&s.id)).collect();
            names.extend(self.exclusions.iter().map(|x| lit(&x.entity.id)));
            names.sort();
            names.dedup();
            filter.push(format!("e.event IN ({})", names.join(", ")));
        }
        let persons_join = if self.needs_persons() {
            " JOIN persons p ON p.uuid = pdi.person_id"
        } else {
            ""
        };
        // The persons tables first: DataFusion builds its hash joins on
        // the left side, and with `events` first the second join would
        // build on every event. A right join (with personless actors)
        // keeps the events whose distinct id has no person; the global
        // event filters stay in the `WHERE`.
        // With personless actors, the conditions on the event alone (the
        // others are in `ok`).
        let (join, props) = match personless {
            None => ("JOIN", props_sql(&self.props)?),
            Some(_) => {
                let events: Vec<Prop> = self
                    .props
                    .iter()
                    .filter(|p| events_only(p))
                    .cloned()
                    .collect();
                ("RIGHT JOIN", props_sql(&events)?)
            }
        };
        filter.push(props);
        let tables = format!(
            "person_distinct_ids pdi{persons_join} {join} events e ON e.distinct_id = pdi.distinct_id"
        );
        let mut candidates = None;
        if let Some(b) = &self.breakdown {
            let column = if b.kind == PropKind::Person {
                "p.properties"
            } else {
                "e.properties"
            };
            // An event's value: its property as text, "" when unset.
            let vals: Vec<String> = b
                .keys
                .iter()
                .map(|k| format!("COALESCE(json_as_text({column}, {}), '')", lit(k)))
                .collect();
            let start = select.len() + 1;
            match b.attribution {
                Attribution::FirstTouch | Attribution::LastTouch => {
                    let dir = if b.attribution == Attribution::FirstTouch {
                        "ASC"
                    } else {
                        "DESC"
                    };
                    // The events of the funnel's query: any step's or
                    // exclusion's (a strict funnel's: all).
                    let in_query = match self.order {
                        Order::Strict => "TRUE".to_string(),
                        _ => conds.join(" OR "),
                    };
                    let any: Vec<String> = vals.iter().map(|v| format!("{v} <> ''")).collect();
                    for (i, v) in vals.iter().enumerate() {
                        select.push(format!(
                            "COALESCE(first_value({v} ORDER BY e.timestamp {dir}, e.uuid {dir}, e._seq {dir}) \
                             FILTER (WHERE {}), '') AS bd{i}",
                            filter_ok(&format!("({in_query}) AND ({})", any.join(" OR ")))
                        ));
                    }
                }
                Attribution::AllEvents => {
                    for (i, v) in vals.iter().enumerate() {
                        select.push(format!("{v} AS bd{i}"));
                        group_by.push((start + i).to_string());
                    }
                }
                Attribution::Step(k) => {
                    // Each value of the actor's events of step `k`: the
                    // actor's events once for each, and step `k` reached
                    // only with it. The candidates are grouped with the
                    // step's condition as an aggregate, not a `WHERE` above
                    // the persons' join (see `ok` above).
                    let mut cand: Vec<String> = keys
                        .iter()
                        .enumerate()
                        .map(|(i, key)| format!("{key} AS ck{i}"))
                        .collect();
                    cand.extend(
                        vals.iter()
                            .enumerate()
                            .map(|(i, v)| format!("{v} AS bd{i}")),
                    );
                    let cand_names: Vec<String> = (0..keys.len())
                        .map(|i| format!("ck{i}"))
                        .chain((0..vals.len()).map(|i| format!("bd{i}")))
                        .collect();
                    let same_value: Vec<String> = vals
                        .iter()
                        .enumerate()
                        .map(|(i, v)| format!("{v} = c.bd{i}"))
                        .collect();
                    let on: Vec<String> = keys
                        .iter()
                        .enumerate()
                        // Parenthesized: the parser reads all that follows
                        // `IS NOT DISTINCT FROM`, `AND`s included.
                        .map(|(i, key)| format!("(c.ck{i} IS NOT DISTINCT FROM ({key}))"))
                        .collect();
                    candidates = Some((
                        format!(
                            "(SELECT {names} FROM (SELECT {}, bool_or({}) AS hit FROM {tables} WHERE {} \
                             GROUP BY {}) WHERE hit) c",
                            cand.join(", "),
                            filter_ok(&conds[k]),
                            filter.join(" AND "),
                            (1..=cand.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
                            names = cand_names.join(", "),
                        ),
                        on.join(" AND "),
                    ));
                    conds[k] = format!("({} AND {})", conds[k], same_value.join(" AND "));
                    for i in 0..vals.len() {
                        select.push(format!("c.bd{i} AS bd{i}"));
                        group_by.push((start + i).to_string());
                    }
                }
            }
        }
        select.push(format!(
            "funnel_path({window}, {}, e.timestamp, {}){} AS f",
            lit(&options),
            conds.join(", "),
            ok.as_ref()
                .map_or(String::new(), |ok| format!(" FILTER (WHERE {ok})"))
        ));
        // The candidates first, the build side of their hash join: they
        // are few, the events many.
        let from = match &candidates {
            None => format!("FROM {tables}"),
            Some((c, on)) => format!("FROM {c} JOIN ({tables}) ON {on}"),
        };
        let inner = format!(
            "SELECT {} {from} WHERE {} GROUP BY {}",
            select.join(", "),
            filter.join(" AND "),
            group_by.join(", ")
        );
        if personless.is_none() {
            return Ok(inner);
        }
        let mut outer = vec![
            "COALESCE(g.person, CAST(g.uuid AS VARCHAR)) AS actor".to_string(),
            "g.person IS NULL AS personless".to_string(),
        ];
        if let Some(b) = &self.breakdown {
            outer.extend((0..b.keys.len()).map(|i| format!("g.bd{i}")));
        }
        outer.push("g.f".to_string());
        Ok(format!(
            "SELECT {} FROM ({inner}) g \
             LEFT JOIN (SELECT DISTINCT uuid_from_text(person_id) AS live_uuid FROM person_distinct_ids) live \
             ON live.live_uuid = g.uuid WHERE g.person IS NOT NULL OR live.live_uuid IS NULL",
            outer.join(", ")
        ))
    }
}

/// One person's funnel.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// The person's UUID (for a personless actor, the UUID its events
    /// carry).
    pub person: String,
    /// Whether the actor has no person: its events are personless
    /// (`$process_person_profile: false`), it has no profile to list, and
    /// its events are found by the UUID they carry.
    pub personless: bool,
    /// The breakdown values (one per key; `""` when unset). With
    /// [`Attribution::AllEvents`] or [`Attribution::Step`] a person is an
    /// actor once for each of its values.
    pub breakdown: Vec<String>,
    /// Furthest step reached (1-based; at least 1).
    pub steps: usize,
    /// The step timestamps of the best path (µs).
    pub timestamps: Vec<i64>,
    /// Average seconds per step after the first.
    pub conversion_times: Vec<f64>,
    /// Median seconds per step after the first.
    pub conversion_medians: Vec<f64>,
}

/// Every person who entered the funnel, ordered by UUID.
pub async fn actors(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &FunnelSpec,
    limits: &QueryLimits,
) -> Result<Vec<Actor>> {
    if spec.steps.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(&ctx, persons, project, spec.all_props()).await?;
    actors_in(&ctx, persons, project, spec).await
}

/// [`actors`] in a session made by [`session`] (with the cohorts of the
/// spec's filters registered).
pub async fn actors_in(
    ctx: &SessionContext,
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &FunnelSpec,
) -> Result<Vec<Actor>> {
    if spec.steps.is_empty() {
        return Ok(Vec::new());
    }
    if !spec.counts_personless() {
        return read_actors(spec, &collect(ctx, &spec.sql(None)?).await?, None);
    }
    let mut runs = 0;
    loop {
        runs += 1;
        let p = Personless::read(persons, project)?;
        p.register(ctx);
        let batches = collect(ctx, &spec.sql(Some(&p))?).await?;
        if runs >= MAX_RUNS || !p.stale(persons, project)? {
            return read_actors(spec, &batches, Some(&p));
        }
    }
}

/// The actors of the funnel query's `batches`, less the personless ones
/// that carry a deleted person's UUID.
fn read_actors(
    spec: &FunnelSpec,
    batches: &[arrow::record_batch::RecordBatch],
    personless: Option<&Personless>,
) -> Result<Vec<Actor>> {
    // A deleted person's kept events carry its UUID: those are left out.
    let deleted = |who: &str| personless.is_some_and(|p| p.is_deleted(who));
    let nb = spec.breakdown.as_ref().map_or(0, |b| b.keys.len());
    let mut out = Vec::new();
    for b in batches {
        let actor = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let actor = actor.as_string::<i32>();
        let Some(personless) = b.column(1).as_boolean_opt() else {
            return invalid("funnel: personless is not a boolean");
        };
        let bds: Vec<_> = (0..nb)
            .map(|i| arrow::compute::cast(b.column(2 + i), &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        let f = b.column(2 + nb).as_struct();
        let steps = f.column(0).as_primitive::<UInt8Type>();
        let ts = f.column(1).as_list::<i32>();
        let avg = f.column(2).as_list::<i32>();
        let med = f.column(3).as_list::<i32>();
        for r in 0..b.num_rows() {
            let personless = personless.is_valid(r) && personless.value(r);
            if steps.value(r) == 0 || actor.is_null(r) || (personless && deleted(actor.value(r))) {
                continue;
            }
            let t = arrow::compute::cast(&ts.value(r), &DataType::Int64)?;
            let floats = |l: &arrow::array::ListArray| -> Vec<f64> {
                l.value(r).as_primitive::<Float64Type>().values().to_vec()
            };
            out.push(Actor {
                person: actor.value(r).to_string(),
                personless,
                breakdown: bds
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        match c.is_null(r) {
                            true => String::new(),
                            false => c.value(r).to_string(),
                        }
                    })
                    .collect(),
                steps: steps.value(r) as usize,
                timestamps: t.as_primitive::<Int64Type>().values().to_vec(),
                conversion_times: floats(avg),
                conversion_medians: floats(med),
            });
        }
    }
    out.sort_by(|a, b| (&a.person, &a.breakdown).cmp(&(&b.person, &b.breakdown)));
    Ok(out)
}
