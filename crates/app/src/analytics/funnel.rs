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

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt8Type};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use elide_persons::{Persons, SqliteMeta};
use elide_query::funnel::posthog::Order;
use elide_query::funnel::{Window, MAX_CONDITIONS};
use serde_json::{json, Value};

use super::filter::{
    breakdown_limit, entities, funnel_window, props, range, Entity, ExclusionStep, Interval,
    Params, Prop, PropKind, Range, DEFAULT_BREAKDOWN_LIMIT,
};
use super::personless::{personless_can_match, personless_props_sql, Personless, MAX_RUNS};
use super::{collect, lit, props_sql, session, ts_lit};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// A breakdown: event or person property keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// `event` or `person`.
    pub kind: PropKind,
    /// The property keys.
    pub keys: Vec<String>,
    /// The insight shows the values of this many groups, those furthest
    /// along (`breakdown_limit`, PostHog's default 25); the others are
    /// one group, [`OTHER`].
    pub limit: usize,
    /// Which event's value is an actor's.
    pub attribution: Attribution,
}

/// Which event's breakdown value is an actor's
/// (`breakdown_attribution_type`, PostHog's funnels). An event's value
/// is its property as text, `""` when it has none; with several keys, the
/// values of one event together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The value of the actor's first event in the funnel's query (any
    /// step's or exclusion's; any event of a strict funnel) that has one
    /// (not all `""`); else `""` (the default).
    FirstTouch,
    /// As `FirstTouch`, the last such event.
    LastTouch,
    /// Each value of the actor's events: a funnel of its own over the
    /// events of that value, so an actor counts once for each value whose
    /// events reach the first step.
    AllEvents,
    /// The value of the event of this step (0-based): for each value the
    /// actor's events of this step have, a funnel whose step it is must
    /// be reached with that value. An actor without such an event is in
    /// no group.
    Step(usize),
}

/// The group of the values past `breakdown_limit` (PostHog's funnels
/// name it so, where trends write `$$_posthog_breakdown_other_$$`).
pub const OTHER: &str = "Other";

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

/// Most properties one funnel breakdown may name (each adds a column that
/// repeats the first step's condition).
pub const MAX_BREAKDOWN_KEYS: usize = 10;

/// The breakdown parameters (`breakdown`, `breakdowns`, `breakdown_type`).
pub fn breakdown(p: &Params) -> Result<Option<Breakdown>> {
    let keys: Vec<String> = match p.json("breakdown") {
        None => return Ok(None),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v => invalid(format!("breakdown: property names are strings, got {v}")),
            })
            .collect::<Result<_>>()?,
        Some(Value::String(s)) => vec![s],
        Some(v) => vec![v.to_string()],
    };
    if keys.is_empty() {
        return Ok(None);
    }
    if keys.len() > MAX_BREAKDOWN_KEYS {
        return invalid(format!(
            "breakdown: {} properties; at most {MAX_BREAKDOWN_KEYS}",
            keys.len()
        ));
    }
    let kind = match p.text("breakdown_type").as_deref() {
        None | Some("event") => PropKind::Event,
        Some("person") => PropKind::Person,
        Some(other) => {
            return invalid(format!(
                "breakdown_type {other:?} is not supported (event, person)"
            ))
        }
    };
    let limit = match p.int("breakdown_limit")? {
        None => DEFAULT_BREAKDOWN_LIMIT,
        Some(n) => breakdown_limit(Some(n), &n)?,
    };
    let attribution = match p.text("breakdown_attribution_type").as_deref() {
        None | Some("first_touch") => Attribution::FirstTouch,
        Some("last_touch") => Attribution::LastTouch,
        Some("all_events") => Attribution::AllEvents,
        Some("step") => match p.int("breakdown_attribution_value")? {
            Some(k) if (0..MAX_CONDITIONS as i64).contains(&k) => Attribution::Step(k as usize),
            Some(k) => {
                return invalid(format!(
                    "breakdown_attribution_value {k} is not a step (0-based)"
                ))
            }
            None => {
                return invalid(
                    "breakdown_attribution_value is required with breakdown_attribution_type step",
                )
            }
        },
        Some(other) => {
            return invalid(format!(
                "breakdown_attribution_type {other:?} is not one of first_touch, last_touch, all_events, step"
            ))
        }
    };
    Ok(Some(Breakdown {
        kind,
        keys,
        limit,
        attribution,
    }))
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
        let person = |ps: &[Prop]| ps.iter().any(|p| p.kind == PropKind::Person);
        person(&self.props)
            || self.steps.iter().any(|s| person(&s.properties))
            || self.exclusions.iter().any(|x| person(&x.entity.properties))
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
    /// condition on the persons' side (the global person and cohort
    /// filters, and whether an event without a person counts) is a part of
    /// each step's condition instead. DataFusion 55's physical filter
    /// pushdown matches columns by name, and would move a filter on
    /// `pdi.person_id` above the join onto the events' own `person_id`.
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
                    .filter(|p| p.kind != PropKind::Event)
                    .cloned()
                    .collect();
                Some(format!(
                    "{} AND CASE WHEN pdi.person_id IS NULL THEN e.person_id IS NOT NULL AND {} ELSE TRUE END",
                    props_sql(&person_side)?,
                    p.not_blocked_sql()
                ))
            }
        };
        // `ok` first: DataFusion's common subexpression elimination
        // computes an expression the step conditions share once, below
        // the aggregate, only where it is not on the right of an `AND`
        // (evaluated conditionally). Second, the blocked-id check ran in
        // every step's condition.
        let with_ok = |c: String| match &ok {
            Some(ok) => format!("({ok} AND {c})"),
            None => c,
        };
        let mut conds: Vec<String> = self
            .steps
            .iter()
            .map(|s| Self::cond(s).map(with_ok))
            .collect::<Result<_>>()?;
        for x in &self.exclusions {
            conds.push(with_ok(Self::cond(&x.entity)?));
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
        let (join, props) = match personless {
            None => ("JOIN", props_sql(&self.props)?),
            Some(_) => ("RIGHT JOIN", personless_props_sql(&self.props)?),
        };
        filter.push(props);
        let from = format!(
            "FROM person_distinct_ids pdi{persons_join} {join} events e ON e.distinct_id = pdi.distinct_id"
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
                             FILTER (WHERE ({in_query}) AND ({})), '') AS bd{i}",
                            any.join(" OR ")
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
                    // only with it.
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
                            "(SELECT DISTINCT {} {from} WHERE {} AND {}) c",
                            cand.join(", "),
                            filter.join(" AND "),
                            conds[k]
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
            "funnel_path({window}, {}, e.timestamp, {}) AS f",
            lit(&options),
            conds.join(", ")
        ));
        let from = match &candidates {
            None => from,
            Some((c, on)) => format!("{from} JOIN {c} ON {on}"),
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

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The steps of one funnel (one breakdown value), PostHog's shape.
fn format_steps(
    spec: &FunnelSpec,
    actors: &[&Actor],
    breakdown: Option<&[String]>,
    base_url: &str,
) -> Vec<Value> {
    let unordered = spec.order == Order::Unordered;
    // A breakdown value's lists hold only its persons.
    let only = breakdown.map_or(String::new(), |bd| {
        let v: Vec<Value> = bd.iter().map(|x| json!(x)).collect();
        let text = Value::Array(v).to_string();
        let enc: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
        format!("&funnel_step_breakdown={enc}")
    });
    spec.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let reached: Vec<&&Actor> = actors.iter().filter(|a| a.steps > i).collect();
            let (avg, med) = if i == 0 {
                (Value::Null, Value::Null)
            } else {
                let avgs: Vec<f64> = reached.iter().filter_map(|a| a.conversion_times.get(i - 1).copied()).collect();
                let mut meds: Vec<f64> = reached.iter().filter_map(|a| a.conversion_medians.get(i - 1).copied()).collect();
                let avg = (!avgs.is_empty()).then(|| avgs.iter().sum::<f64>() / avgs.len() as f64);
                (json!(avg), json!(median(&mut meds)))
            };
            let (name, action_id, custom) = if unordered {
                let n = i + 1;
                (format!("Completed {n} step{}", if n == 1 { "" } else { "s" }), Value::Null, Value::Null)
            } else {
                (s.name.clone(), json!(s.id), json!(s.custom_name))
            };
            let url = |step: i64| format!("{base_url}funnel_step={step}{only}");
            let mut o = json!({
                "action_id": action_id,
                "name": name,
                "custom_name": custom,
                "order": i,
                "people": [],
                "count": reached.len(),
                "type": "events",
                "average_conversion_time": avg,
                "median_conversion_time": med,
                "converted_people_url": url(i as i64 + 1),
                "dropped_people_url": if i == 0 { Value::Null } else { json!(url(-(i as i64 + 1))) },
            });
            if let (Some(bd), Some(obj)) = (breakdown, o.as_object_mut()) {
                let v: Vec<Value> = bd.iter().map(|x| json!(x)).collect();
                obj.insert("breakdown".into(), json!(v));
                obj.insert("breakdown_value".into(), json!(v));
            }
            o
        })
        .collect()
}

/// The funnel insight: the list of steps, or with a breakdown one list per
/// group ([`groups`]).
pub fn steps(spec: &FunnelSpec, actors: &[Actor], base_url: &str) -> Value {
    if spec.steps.is_empty() {
        return json!([]);
    }
    match &spec.breakdown {
        None => {
            let all: Vec<&Actor> = actors.iter().collect();
            Value::Array(format_steps(spec, &all, None, base_url))
        }
        Some(_) => Value::Array(
            groups(spec, actors)
                .into_iter()
                .map(|(k, members)| Value::Array(format_steps(spec, &members, Some(&k), base_url)))
                .collect(),
        ),
    }
}

/// The actors of a broken-down funnel by value, as PostHog's funnels
/// show them: the `breakdown_limit` values furthest along (by the count
/// at the last step, then at the one before, …, then by value), and the
/// others together as [`OTHER`]; all ordered so. Without a breakdown, one
/// group of all.
pub fn groups<'a>(spec: &FunnelSpec, actors: &'a [Actor]) -> Vec<(Vec<String>, Vec<&'a Actor>)> {
    let Some(b) = &spec.breakdown else {
        return vec![(Vec::new(), actors.iter().collect())];
    };
    let mut by_value: BTreeMap<&[String], Vec<&Actor>> = BTreeMap::new();
    for a in actors {
        by_value.entry(&a.breakdown).or_default().push(a);
    }
    let n = spec.steps.len();
    // Persons at each step, last step first, each largest first.
    let rank = |members: &[&Actor]| -> Vec<std::cmp::Reverse<usize>> {
        (0..n)
            .rev()
            .map(|i| std::cmp::Reverse(members.iter().filter(|a| a.steps > i).count()))
            .collect()
    };
    let ranked = |value: Vec<String>, members: Vec<&'a Actor>| Group {
        rank: rank(&members),
        value,
        members,
    };
    let mut all: Vec<Group> = by_value
        .into_iter()
        .map(|(k, members)| ranked(k.to_vec(), members))
        .collect();
    all.sort_by(Group::order);
    let other: Vec<&Actor> = all
        .split_off(b.limit.min(all.len()))
        .into_iter()
        .flat_map(|g| g.members)
        .collect();
    if !other.is_empty() {
        all.push(ranked(vec![OTHER.to_string()], other));
        all.sort_by(Group::order);
    }
    all.into_iter().map(|g| (g.value, g.members)).collect()
}

/// A group of [`groups`], with what it is ranked by.
struct Group<'a> {
    /// Persons at each step, last step first, each largest first.
    rank: Vec<std::cmp::Reverse<usize>>,
    value: Vec<String>,
    members: Vec<&'a Actor>,
}

impl Group<'_> {
    /// Furthest along first, then by value.
    fn order(x: &Self, y: &Self) -> std::cmp::Ordering {
        (&x.rank, &x.value).cmp(&(&y.rank, &y.value))
    }
}

/// Which persons a funnel-persons request wants: `funnel_custom_steps`
/// (the persons whose furthest step is one of them) overrides
/// `funnel_step` (`k > 0`: reached at least step `k`; `-k`: reached step
/// `k - 1` but not `k`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSelection {
    /// Furthest steps wanted.
    pub steps: Vec<usize>,
    /// Only this breakdown value (`funnel_step_breakdown`), if given
    /// (`["Other"]`: the group of the values past the limit).
    pub breakdown: Option<Vec<String>>,
}

impl StepSelection {
    /// Parse `funnel_step`, `funnel_custom_steps` and
    /// `funnel_step_breakdown` for a funnel of `n` steps.
    pub fn parse(p: &Params, n: usize) -> Result<StepSelection> {
        let steps: Vec<usize> = if let Some(v) = p.json("funnel_custom_steps") {
            let Value::Array(items) = v else {
                return invalid("funnel_custom_steps must be a JSON list of step numbers");
            };
            let mut out = Vec::new();
            for i in items {
                match i
                    .as_i64()
                    .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                {
                    // A step past the funnel's last is nobody's furthest
                    // step: left out, so the list a person is looked up
                    // in has at most `n` entries whatever was sent.
                    Some(k) if k >= 1 => {
                        if k as u64 <= n as u64 {
                            out.push(k as usize);
                        }
                    }
                    _ => {
                        return invalid(format!(
                            "funnel_custom_steps: {i} is not a step number (1-based)"
                        ))
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
            out
        } else {
            match p.int("funnel_step")? {
                None => return invalid("Missing both funnel_step and funnel_custom_steps"),
                Some(0) => return invalid("funnel_step is 1-based: 0 is not a step"),
                Some(-1) => return invalid("To request dropoff of initial step use -2"),
                Some(k) if k > 0 => ((k as usize)..=n.max(k as usize)).collect(),
                Some(k) => match k.checked_neg().and_then(|k| usize::try_from(k - 1).ok()) {
                    Some(step) => vec![step],
                    None => return invalid(format!("funnel_step {k} is not a step")),
                },
            }
        };
        let breakdown = match p.json("funnel_step_breakdown") {
            None => None,
            Some(Value::Array(a)) => Some(a.iter().map(json_text).collect()),
            Some(v) => Some(vec![json_text(&v)]),
        };
        Ok(StepSelection { steps, breakdown })
    }

    /// The actors wanted, once each (an actor of several values is listed
    /// once when no value is asked for).
    pub fn select<'a>(&self, spec: &FunnelSpec, actors: &'a [Actor]) -> Vec<&'a Actor> {
        let in_group: Vec<&Actor> = match &self.breakdown {
            None => actors.iter().collect(),
            Some(want) => groups(spec, actors)
                .into_iter()
                .find(|(k, _)| k == want)
                .map(|(_, members)| members)
                .unwrap_or_default(),
        };
        let mut seen = std::collections::HashSet::new();
        in_group
            .into_iter()
            .filter(|a| self.steps.contains(&a.steps))
            .filter(|a| seen.insert((&a.person, a.personless)))
            .collect()
    }
}

/// A requested breakdown value as text (`null`, once Elide's value of an
/// unset property, is `""` as in PostHog's funnels).
fn json_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}
