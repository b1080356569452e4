//! Funnel correlation (`posthog-analytics.md` §3.3): which events, event
//! properties or person properties go with converting or dropping off.
//!
//! The funnel's actors (every person who did step 1 in the range; with
//! `funnel_step = k`, those who reached step `k`) are split into
//! successes (reached the last step) and failures. Each actor has a
//! window: strictly after its first step, strictly before its last step
//! when it converted, else before the end of the conversion window, and
//! inside the date range. For each candidate — an event name, an event
//! name with one of its property values, or a person property value —
//! the distinct successes `s` and failures `f` who had it give PostHog's
//! odds ratio with a prior of one,
//! `(s + 1)(F − f + 1) / ((S − s + 1)(f + 1))`, against the totals `S`
//! and `F`. Candidates seen by fewer than `min(25, 2% of S + F)` actors
//! are dropped; the ten strongest of each direction are kept.
//!
//! Actors are resolved through the persons layer like every funnel, so a
//! deleted person is neither an actor nor counted for any candidate; a
//! personless actor (events with `$process_person_profile: false`, by the
//! UUID they carry) counts for events and event properties, has no person
//! properties, and is not listed among a row's persons.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::Value;

use super::filter::{entity_of, Entity, Params};
use super::funnel::{actors_in, Actor, FunnelSpec};
use super::personless::NO_PERSON;
use super::properties::{any_of_kind, leaves, props, props_sql, Prop, PropKind};
use super::{collect, lit, session, stream, ts_lit};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// PostHog's `MIN_PERSON_COUNT`.
pub const MIN_PERSON_COUNT: f64 = 25.0;
/// PostHog's `MIN_PERSON_PERCENTAGE`.
pub const MIN_PERSON_PERCENTAGE: f64 = 0.02;
/// PostHog's `PRIOR_COUNT`.
pub const PRIOR_COUNT: f64 = 1.0;
/// Results kept per direction.
pub const TOP: usize = 10;

/// What is correlated (`funnel_correlation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Event names (the default, also for an unknown type, as PostHog).
    Events,
    /// Person property values.
    Properties,
    /// Property values of chosen events.
    EventWithProperties,
}

impl Kind {
    /// The name PostHog uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Properties => "properties",
            Kind::EventWithProperties => "event_with_properties",
        }
    }
}

/// A correlation request, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationSpec {
    /// The funnel.
    pub funnel: FunnelSpec,
    /// The actors: those who reached at least this step (1-based).
    pub from_step: usize,
    /// What is correlated.
    pub kind: Kind,
    /// `funnel_correlation_exclude_event_names`.
    pub exclude_events: Vec<String>,
    /// `funnel_correlation_names` (`$all` = every key).
    pub property_names: Vec<String>,
    /// `funnel_correlation_exclude_names`.
    pub exclude_property_names: Vec<String>,
    /// `funnel_correlation_event_names`.
    pub event_names: Vec<String>,
    /// `funnel_correlation_event_exclude_property_names`.
    pub event_exclude_property_names: Vec<String>,
}

fn names(p: &Params, key: &str) -> Result<Vec<String>> {
    match p.json(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v => invalid(format!("{key}: names are strings, got {v}")),
            })
            .collect(),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(v) => invalid(format!("{key} must be a JSON list of names, got {v}")),
    }
}

impl CorrelationSpec {
    /// Parse a correlation's parameters (the funnel's, then PostHog's
    /// `funnel_correlation_*`).
    pub fn parse(p: &Params, now: chrono::DateTime<chrono::Utc>) -> Result<CorrelationSpec> {
        // A correlation counts persons, not breakdown groups: a breakdown
        // (of all events, an actor for each value) is not read.
        let mut funnel = FunnelSpec::parse(p, now)?;
        funnel.breakdown = None;
        let from_step = match p.int("funnel_step")? {
            None => 1,
            Some(k) if k >= 1 => k as usize,
            Some(k) => {
                return invalid(format!(
                    "funnel_step {k}: correlation takes the persons who reached a step (1-based)"
                ))
            }
        };
        let kind = match p.text("funnel_correlation_type").as_deref() {
            Some("properties") => Kind::Properties,
            Some("event_with_properties") => Kind::EventWithProperties,
            _ => Kind::Events,
        };
        let spec = CorrelationSpec {
            funnel,
            from_step,
            kind,
            exclude_events: names(p, "funnel_correlation_exclude_event_names")?,
            property_names: names(p, "funnel_correlation_names")?,
            exclude_property_names: names(p, "funnel_correlation_exclude_names")?,
            event_names: names(p, "funnel_correlation_event_names")?,
            event_exclude_property_names: names(
                p,
                "funnel_correlation_event_exclude_property_names",
            )?,
        };
        if kind == Kind::Properties && spec.property_names.is_empty() {
            return invalid(
                "Property Correlation expects atleast one Property to run correlation on",
            );
        }
        if kind == Kind::EventWithProperties && spec.event_names.is_empty() {
            return invalid(
                "Event Property Correlation expects atleast one event name to run correlation on",
            );
        }
        Ok(spec)
    }
}

/// One candidate of the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `event`, `event::key::value` or `key::value`.
    pub name: String,
    /// For the persons of this row: the event (events and
    /// event_with_properties).
    pub event: Option<String>,
    /// For the persons of this row: the property and its value
    /// (event_with_properties and properties).
    pub property: Option<(String, Value)>,
    /// Successes who had it.
    pub success_count: u64,
    /// Failures who had it.
    pub failure_count: u64,
    /// The odds ratio with the prior.
    pub odds_ratio: f64,
    /// `odds_ratio > 1`.
    pub success: bool,
}

/// A correlation's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// The strongest successes (odds descending), then the strongest
    /// failures (odds ascending).
    pub rows: Vec<Row>,
    /// One outcome outnumbers the other more than ten to one (or one of
    /// them is empty).
    pub skewed: bool,
}

/// A candidate before scoring: its name, what it points at, and the
/// distinct successes and failures who had it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// What the persons of the row select.
    pub event: Option<String>,
    /// What the persons of the row select.
    pub property: Option<(String, Value)>,
    /// Distinct successes.
    pub success: u64,
    /// Distinct failures.
    pub failure: u64,
}

/// PostHog's `_run`: totals, the skew flag, the significance filter, the
/// odds ratio, the top ten per direction.
pub fn score(seen: BTreeMap<String, Seen>, successes: u64, failures: u64) -> Correlation {
    if successes == 0 || failures == 0 {
        return Correlation {
            rows: Vec::new(),
            skewed: true,
        };
    }
    let (s_total, f_total) = (successes as f64, failures as f64);
    let skewed = s_total / f_total > 10.0 || f_total / s_total > 10.0;
    let min = MIN_PERSON_COUNT.min(MIN_PERSON_PERCENTAGE * (s_total + f_total));
    let mut rows: Vec<Row> = seen
        .into_iter()
        .filter(|(_, v)| (v.success + v.failure) as f64 >= min)
        .map(|(name, v)| {
            let (s, f) = (v.success as f64, v.failure as f64);
            let odds = ((s + PRIOR_COUNT) * (f_total - f + PRIOR_COUNT))
                / ((s_total - s + PRIOR_COUNT) * (f + PRIOR_COUNT));
            Row {
                name,
                event: v.event,
                property: v.property,
                success_count: v.success,
                failure_count: v.failure,
                odds_ratio: odds,
                success: odds > 1.0,
            }
        })
        .collect();
    let (mut good, mut bad): (Vec<Row>, Vec<Row>) = rows.drain(..).partition(|r| r.success);
    good.sort_by(|a, b| {
        b.odds_ratio
            .total_cmp(&a.odds_ratio)
            .then(a.name.cmp(&b.name))
    });
    bad.sort_by(|a, b| {
        a.odds_ratio
            .total_cmp(&b.odds_ratio)
            .then(a.name.cmp(&b.name))
    });
    good.truncate(TOP);
    bad.truncate(TOP);
    good.extend(bad);
    Correlation { rows: good, skewed }
}

/// The actors with their outcome and window, as table `funnel_actors
/// (actor, success, first_ts, end_ts)` on `ctx`.
fn register_actors(ctx: &SessionContext, spec: &CorrelationSpec, actors: &[&Actor]) -> Result<()> {
    let n = spec.funnel.steps.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("actor", DataType::Utf8, false),
        Field::new("success", DataType::Boolean, false),
        Field::new("personless", DataType::Boolean, false),
        Field::new(
            "first_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "end_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let first = |a: &Actor| a.timestamps.first().copied().unwrap_or(i64::MIN);
    let end = |a: &Actor| {
        if a.steps >= n {
            a.timestamps.iter().copied().max().unwrap_or(i64::MIN)
        } else {
            spec.funnel.window.end(first(a))
        }
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            actors
                .iter()
                .map(|a| Some(a.person.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            actors
                .iter()
                .map(|a| Some(a.steps >= n))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            actors
                .iter()
                .map(|a| Some(a.personless))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(actors.iter().map(|a| first(a)).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(actors.iter().map(|a| end(a)).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), cols)?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    ctx.register_table("funnel_actors", Arc::new(table))?;
    Ok(())
}

/// The events of the actors inside their windows (`e`, `a`, and the
/// person `p` when `with_persons`), selecting `select`, with `extra`
/// conditions. With `personless`, the events of personless actors too
/// (found by the UUID they carry), as a second branch of a `UNION ALL`
/// whose actors are disjoint from the first's; `extra` must then not
/// name `pdi` or `p` (a cohort or a person property).
fn windowed_events_sql(
    spec: &CorrelationSpec,
    select: &str,
    extra: &[String],
    with_persons: bool,
    personless: bool,
) -> String {
    let r = &spec.funnel.range;
    let mut filter = vec![
        format!("e.timestamp <= {}", ts_lit(r.to)),
        "e.timestamp > a.first_ts".to_string(),
        "e.timestamp < a.end_ts".to_string(),
    ];
    if let Some(from) = r.from {
        filter.push(format!("e.timestamp >= {}", ts_lit(from)));
    }
    filter.extend(extra.iter().cloned());
    let persons = if with_persons {
        " JOIN persons p ON p.uuid = a.actor"
    } else {
        ""
    };
    // The actors and persons tables first: DataFusion builds its hash
    // joins on the left side, and with `events` first the second join
    // would build on every event.
    let filter = filter.join(" AND ");
    let with_person = format!(
        "SELECT {select} FROM funnel_actors a JOIN person_distinct_ids pdi ON a.actor = pdi.person_id{persons} \
         JOIN events e ON e.distinct_id = pdi.distinct_id WHERE {filter}"
    );
    if !personless || with_persons {
        return with_person;
    }
    format!(
        "{with_person} UNION ALL SELECT {select} FROM funnel_actors a \
         JOIN events e ON e.person_id = a.actor \
         WHERE a.personless AND {NO_PERSON} AND {filter}"
    )
}

/// A property value's text in a candidate's name, as PostHog names it (a
/// string as itself, anything else as JSON), appended to `out` with no copy of its own.
fn push_value_text(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        v => {
            use std::fmt::Write;
            // Writing to a String does not fail.
            let _ = write!(out, "{v}");
        }
    }
}

/// The funnel's actors and a session holding them as `funnel_actors`.
async fn prepare(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &CorrelationSpec,
    limits: &QueryLimits,
) -> Result<(SessionContext, Vec<Actor>)> {
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(&ctx, persons, project, spec.funnel.all_props()).await?;
    let all = actors_in(&ctx, persons, project, &spec.funnel).await?;
    let actors: Vec<Actor> = all
        .into_iter()
        .filter(|a| a.steps >= spec.from_step)
        .collect();
    register_actors(&ctx, spec, &actors.iter().collect::<Vec<_>>())?;
    Ok((ctx, actors))
}

/// The correlation.
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &CorrelationSpec,
    limits: &QueryLimits,
) -> Result<Correlation> {
    if spec.funnel.steps.is_empty() {
        return Ok(Correlation {
            rows: Vec::new(),
            skewed: false,
        });
    }
    let (ctx, actors) = prepare(persons, project, spec, limits).await?;
    let n = spec.funnel.steps.len();
    let successes = actors.iter().filter(|a| a.steps >= n).count() as u64;
    let failures = actors.len() as u64 - successes;
    if successes == 0 || failures == 0 {
        return Ok(score(BTreeMap::new(), successes, failures));
    }
    // Whether any actor's events are found by the UUID they carry.
    let personless = actors.iter().any(|a| a.personless);
    let seen = match spec.kind {
        Kind::Events => events(&ctx, spec, personless).await?,
        Kind::EventWithProperties => event_properties(&ctx, spec, personless).await?,
        Kind::Properties => person_properties(&ctx, spec).await?,
    };
    Ok(score(seen, successes, failures))
}

/// Event names other than the funnel's steps (and the excluded ones).
async fn events(
    ctx: &SessionContext,
    spec: &CorrelationSpec,
    personless: bool,
) -> Result<BTreeMap<String, Seen>> {
    let mut skip: BTreeSet<&str> = spec.funnel.steps.iter().map(|s| s.id.as_str()).collect();
    skip.extend(spec.exclude_events.iter().map(String::as_str));
    let skip: Vec<String> = skip.iter().map(|s| lit(s)).collect();
    let inner = windowed_events_sql(
        spec,
        "e.event AS name, a.actor AS actor, a.success AS success",
        &[format!("e.event NOT IN ({})", skip.join(", "))],
        false,
        personless,
    );
    let sql = format!(
        "SELECT name, count(DISTINCT actor) FILTER (WHERE success), count(DISTINCT actor) FILTER (WHERE NOT success) \
         FROM ({inner}) GROUP BY name"
    );
    let mut out = BTreeMap::new();
    for b in collect(ctx, &sql).await? {
        let name = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let name = name.as_string::<i32>();
        let s = arrow::compute::cast(b.column(1), &DataType::UInt64)?;
        let f = arrow::compute::cast(b.column(2), &DataType::UInt64)?;
        let (s, f) = (
            s.as_primitive::<arrow::datatypes::UInt64Type>(),
            f.as_primitive::<arrow::datatypes::UInt64Type>(),
        );
        for i in 0..b.num_rows() {
            if name.is_null(i) {
                continue;
            }
            out.insert(
                name.value(i).to_string(),
                Seen {
                    event: Some(name.value(i).to_string()),
                    property: None,
                    success: s.value(i),
                    failure: f.value(i),
                },
            );
        }
    }
    Ok(out)
}

/// Most bytes one property correlation's tally may hold (names, actors,
/// pairs and their tables' overhead, estimated): it is held outside the
/// query's memory pool, and properties that are unique per event
/// (`$insert_id`, `$time`, URLs) make about one name of every event. Past
/// it the request is refused (400), naming what narrows it.
const MAX_TALLY_BYTES: usize = 256 << 20;

/// What a table entry costs beyond its text: the `String` header, the
/// hash table's slot and control byte, the index.
const ENTRY_OVERHEAD: usize = 64;

/// Distinct actors per name, from (name, actor, success) triples. Names
/// and actors are kept once each, numbered; a pair is two numbers.
struct Tally {
    names: HashMap<String, u32>,
    seen: Vec<Seen>,
    actors: HashMap<String, u32>,
    pairs: HashSet<(u32, u32)>,
    /// Estimated bytes held.
    bytes: usize,
    limit: usize,
    overflowed: bool,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::with_limit(MAX_TALLY_BYTES)
    }
}

impl Tally {
    fn with_limit(limit: usize) -> Self {
        Tally {
            names: HashMap::new(),
            seen: Vec::new(),
            actors: HashMap::new(),
            pairs: HashSet::new(),
            bytes: 0,
            limit,
            overflowed: false,
        }
    }

    /// Count `actor` for `name` once; `make` gives a new name's entry.
    /// False once past the limit (the caller stops reading).
    fn add(&mut self, name: &str, actor: &str, success: bool, make: impl FnOnce() -> Seen) -> bool {
        if self.overflowed {
            return false;
        }
        let n = match self.names.get(name) {
            Some(&n) => n,
            None => {
                let entry = make();
                // The name, the property it names (key and value, whose
                // parsed form may take several times its text) and the
                // entry.
                self.bytes += 4 * name.len() + std::mem::size_of::<Seen>() + 2 * ENTRY_OVERHEAD;
                let Ok(n) = u32::try_from(self.seen.len()) else {
                    return self.overflow();
                };
                self.names.insert(name.to_string(), n);
                self.seen.push(entry);
                n
            }
        };
        let a = match self.actors.get(actor) {
            Some(&a) => a,
            None => {
                self.bytes += actor.len() + ENTRY_OVERHEAD;
                let Ok(a) = u32::try_from(self.actors.len()) else {
                    return self.overflow();
                };
                self.actors.insert(actor.to_string(), a);
                a
            }
        };
        if !self.pairs.insert((n, a)) {
            return true;
        }
        self.bytes += 2 * std::mem::size_of::<(u32, u32)>();
        if self.bytes > self.limit {
            return self.overflow();
        }
        let e = &mut self.seen[n as usize];
        if success {
            e.success += 1;
        } else {
            e.failure += 1;
        }
        true
    }

    /// Let go of everything held; the request is refused.
    fn overflow(&mut self) -> bool {
        self.overflowed = true;
        self.names = HashMap::new();
        self.seen = Vec::new();
        self.actors = HashMap::new();
        self.pairs = HashSet::new();
        self.bytes = 0;
        false
    }

    /// The names seen, or the refusal once past the limit.
    fn finish(self) -> Result<BTreeMap<String, Seen>> {
        if self.overflowed {
            return Err(AppError::InvalidQuery(format!(
                "the property correlation passed {} MiB of distinct (property value, person) pairs; \
                 leave out properties with a value per event (funnel_correlation_event_exclude_property_names, \
                 funnel_correlation_exclude_names) or narrow the date range",
                self.limit >> 20
            )));
        }
        let mut seen: Vec<Option<Seen>> = self.seen.into_iter().map(Some).collect();
        Ok(self
            .names
            .into_iter()
            .filter_map(|(name, n)| Some((name, seen.get_mut(n as usize)?.take()?)))
            .collect())
    }
}

fn text_at(c: &StringArray, i: usize) -> Option<&str> {
    (!c.is_null(i)).then(|| c.value(i))
}

/// The rows of `sql`, as they come: (actor, success, properties JSON,
/// event), until `f` returns false.
async fn actor_rows(
    ctx: &SessionContext,
    sql: &str,
    mut f: impl FnMut(&str, bool, Option<&str>, Option<&str>) -> bool,
) -> Result<()> {
    let mut rows = stream(ctx, sql).await?;
    while let Some(b) = rows.next().await {
        let b = b?;
        let actor = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let props = arrow::compute::cast(b.column(2), &DataType::Utf8)?;
        let event = arrow::compute::cast(b.column(3), &DataType::Utf8)?;
        let (actor, props, event) = (
            actor.as_string::<i32>(),
            props.as_string::<i32>(),
            event.as_string::<i32>(),
        );
        let Some(success) = b.column(1).as_boolean_opt() else {
            return Err(AppError::InvalidQuery("success is not a boolean".into()));
        };
        for i in 0..b.num_rows() {
            if !f(
                actor.value(i),
                success.value(i),
                text_at(props, i),
                text_at(event, i),
            ) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `event::key::value` for the chosen events' properties; kept when more
/// than two actors had it.
async fn event_properties(
    ctx: &SessionContext,
    spec: &CorrelationSpec,
    personless: bool,
) -> Result<BTreeMap<String, Seen>> {
    let wanted: Vec<String> = spec.event_names.iter().map(|s| lit(s)).collect();
    let sql = windowed_events_sql(
        spec,
        "DISTINCT a.actor, a.success, e.properties, e.event",
        &[format!("e.event IN ({})", wanted.join(", "))],
        false,
        personless,
    );
    let skip: HashSet<&str> = spec
        .event_exclude_property_names
        .iter()
        .map(String::as_str)
        .collect();
    let mut tally = Tally::default();
    let mut name = String::new();
    actor_rows(ctx, &sql, |actor, success, props, event| {
        let (Some(props), Some(event)) = (props, event) else {
            return true;
        };
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(props) else {
            return true;
        };
        for (k, v) in o {
            if skip.contains(k.as_str()) {
                continue;
            }
            name.clear();
            name.push_str(event);
            name.push_str("::");
            name.push_str(&k);
            name.push_str("::");
            push_value_text(&mut name, &v);
            let more = tally.add(&name, actor, success, || Seen {
                event: Some(event.to_string()),
                property: Some((k.clone(), v.clone())),
                ..Seen::default()
            });
            if !more {
                return false;
            }
        }
        true
    })
    .await?;
    let mut seen = tally.finish()?;
    seen.retain(|_, v| v.success + v.failure > 2);
    Ok(seen)
}

/// `key::value` of the actors' person properties.
async fn person_properties(
    ctx: &SessionContext,
    spec: &CorrelationSpec,
) -> Result<BTreeMap<String, Seen>> {
    let sql = "SELECT a.actor, a.success, p.properties, CAST(NULL AS VARCHAR) \
               FROM funnel_actors a JOIN persons p ON p.uuid = a.actor";
    let all = spec.property_names.iter().any(|n| n == "$all");
    let wanted: HashSet<&str> = spec.property_names.iter().map(String::as_str).collect();
    let skip: HashSet<&str> = spec
        .exclude_property_names
        .iter()
        .map(String::as_str)
        .collect();
    let mut tally = Tally::default();
    let mut name = String::new();
    actor_rows(ctx, sql, |actor, success, props, _| {
        let Some(Ok(Value::Object(o))) = props.map(serde_json::from_str::<Value>) else {
            return true;
        };
        for (k, v) in o {
            if (!all && !wanted.contains(k.as_str())) || skip.contains(k.as_str()) {
                continue;
            }
            name.clear();
            name.push_str(&k);
            name.push_str("::");
            push_value_text(&mut name, &v);
            let more = tally.add(&name, actor, success, || Seen {
                event: None,
                property: Some((k.clone(), v.clone())),
                ..Seen::default()
            });
            if !more {
                return false;
            }
        }
        true
    })
    .await?;
    tally.finish()
}

/// Whose persons a correlation-persons request wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Actors who did this event (with its property filters) in their
    /// window (`funnel_correlation_person_entity`).
    Event(Entity),
    /// Actors whose person properties match
    /// (`funnel_correlation_property_values`).
    Properties(Vec<Prop>),
}

/// A correlation-persons request: the selector and
/// `funnel_correlation_person_converted` (`None`: both outcomes).
pub fn selector(p: &Params) -> Result<(Selector, Option<bool>)> {
    let converted = p.flag("funnel_correlation_person_converted")?;
    if let Some(v) = p.json("funnel_correlation_person_entity") {
        return Ok((Selector::Event(entity_of(&v, 0)?), converted));
    }
    if let Some(v) = p.json("funnel_correlation_property_values") {
        let list = props(Some(v), "funnel_correlation_property_values")?;
        if list.is_empty() {
            return invalid("funnel_correlation_property_values is empty");
        }
        if leaves(&list).iter().any(|l| l.kind != PropKind::Person) {
            return invalid(
                "funnel_correlation_property_values: only person properties (type \"person\")",
            );
        }
        return Ok((Selector::Properties(list), converted));
    }
    invalid(
        "funnel_correlation_person_entity or funnel_correlation_property_values is required \
         (the correlation itself is …/insights/funnel/correlation/)",
    )
}

/// The persons of one correlation row, ordered by UUID.
pub async fn persons_of(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &CorrelationSpec,
    selector: &Selector,
    converted: Option<bool>,
    limits: &QueryLimits,
) -> Result<Vec<String>> {
    if spec.funnel.steps.is_empty() {
        return Ok(Vec::new());
    }
    let (ctx, _) = prepare(persons, project, spec, limits).await?;
    if let Selector::Event(e) = selector {
        super::cohorts::register_for(&ctx, persons, project, &e.properties).await?;
    }
    let outcome = match converted {
        None => "TRUE".to_string(),
        Some(true) => "a.success".to_string(),
        Some(false) => "NOT a.success".to_string(),
    };
    let sql = match selector {
        Selector::Event(e) => {
            let own = props_sql(&e.properties)?;
            windowed_events_sql(
                spec,
                "DISTINCT a.actor",
                &[format!("e.event = {}", lit(&e.id)), own, outcome],
                any_of_kind(&e.properties, PropKind::Person),
                // Personless actors have no profile to list.
                false,
            )
        }
        Selector::Properties(list) => format!(
            "SELECT a.actor FROM funnel_actors a JOIN persons p ON p.uuid = a.actor WHERE {} AND {outcome}",
            props_sql(list)?
        ),
    };
    let mut out = Vec::new();
    for b in collect(&ctx, &format!("SELECT actor FROM ({sql}) ORDER BY actor")).await? {
        let c = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let c = c.as_string::<i32>();
        out.extend(
            (0..c.len())
                .filter(|&i| !c.is_null(i))
                .map(|i| c.value(i).to_string()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(s: u64, f: u64) -> Seen {
        Seen {
            success: s,
            failure: f,
            ..Seen::default()
        }
    }

    #[test]
    fn a_tally_past_its_limit_is_refused_and_lets_go_of_what_it_held() {
        let mut t = Tally::with_limit(usize::MAX);
        for (name, actor) in [("a", "p1"), ("a", "p1"), ("a", "p2"), ("b", "p1")] {
            assert!(t.add(name, actor, true, Seen::default));
        }
        assert_eq!(t.pairs.len(), 3, "a pair seen twice counts once");
        assert_eq!((t.names.len(), t.actors.len()), (2, 2), "each kept once");
        t.limit = t.bytes;
        assert!(
            t.add("a", "p2", true, Seen::default),
            "a pair seen again at the limit is no new pair"
        );
        assert_eq!(t.pairs.len(), 3);
        // A new pair of known names and actors still costs its bytes.
        assert!(!t.add("b", "p2", false, Seen::default));
        assert!(t.pairs.is_empty() && t.seen.is_empty() && t.names.is_empty());
        assert!(!t.add("a", "p1", true, Seen::default), "stays refused");
        let e = t.finish().expect_err("past the limit");
        assert!(e.to_string().contains("exclude"), "{e}");
        let mut t = Tally::with_limit(usize::MAX);
        t.add("a", "p1", true, Seen::default);
        t.add("a", "p2", false, Seen::default);
        t.add("b", "p2", true, Seen::default);
        let seen = t.finish().expect("within");
        assert_eq!((seen["a"].success, seen["a"].failure), (1, 1));
        assert_eq!((seen["b"].success, seen["b"].failure), (1, 0));
    }

    #[test]
    fn a_value_is_appended_as_its_text() {
        for v in [
            json!("x y"),
            json!(1.5),
            json!(true),
            json!(null),
            json!({"a": [1]}),
        ] {
            let mut out = "k::".to_string();
            push_value_text(&mut out, &v);
            let text = match &v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            assert_eq!(out, format!("k::{text}"));
        }
    }

    #[test]
    fn odds_ratio_prior_and_significance_follow_posthog() {
        // Scenario 10: S = F = 10; s = 5, f = 0 → 11; s = 0, f = 5 → 1/11.
        let mut m = BTreeMap::new();
        m.insert("positively_related".to_string(), seen(5, 0));
        m.insert("negatively_related".to_string(), seen(0, 5));
        let c = score(m, 10, 10);
        assert!(!c.skewed);
        assert_eq!(c.rows.len(), 2);
        assert_eq!(c.rows[0].name, "positively_related");
        assert!((c.rows[0].odds_ratio - 11.0).abs() < 1e-12);
        assert!(c.rows[0].success);
        assert!((c.rows[1].odds_ratio - 1.0 / 11.0).abs() < 1e-12);
        assert!(!c.rows[1].success);
        // S + F = 2000: a candidate needs 25 actors; S + F = 100 needs 2.
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), seen(20, 4));
        m.insert("b".to_string(), seen(20, 5));
        let c = score(m, 1000, 1000);
        assert_eq!(
            c.rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), seen(1, 0));
        m.insert("b".to_string(), seen(1, 1));
        let c = score(m, 50, 50);
        assert_eq!(
            c.rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        // An odds ratio of exactly one is a failure.
        assert!(!c.rows[0].success);
        assert!((c.rows[0].odds_ratio - 1.0).abs() < 1e-12);
    }

    #[test]
    fn skew_and_empty_outcomes() {
        assert!(score(BTreeMap::new(), 0, 10).skewed);
        assert!(score(BTreeMap::new(), 10, 0).skewed);
        assert!(score(BTreeMap::new(), 1, 11).skewed);
        assert!(!score(BTreeMap::new(), 1, 10).skewed);
    }

    #[test]
    fn ten_per_direction_strongest_first() {
        let mut m = BTreeMap::new();
        for i in 0..15u64 {
            m.insert(format!("good{i:02}"), seen(10 + i, 1));
            m.insert(format!("bad{i:02}"), seen(1, 10 + i));
        }
        let c = score(m, 100, 100);
        assert_eq!(c.rows.len(), 20);
        assert_eq!(c.rows[0].name, "good14");
        assert_eq!(c.rows[9].name, "good05");
        assert_eq!(c.rows[10].name, "bad14");
        assert!(c.rows[..10]
            .windows(2)
            .all(|w| w[0].odds_ratio >= w[1].odds_ratio));
        assert!(c.rows[10..]
            .windows(2)
            .all(|w| w[0].odds_ratio <= w[1].odds_ratio));
    }
}
