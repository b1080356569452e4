//! Trends (`posthog-analytics.md` §3.5): per series and period, the
//! number of events (`total`), of distinct persons (`dau`), or of persons
//! active in the 7 or 30 days ending that day (`weekly_active`,
//! `monthly_active`), optionally broken down by an event property; the
//! body of PostHog's `TrendsQuery`.
//!
//! Periods are UTC, zero-filled from the period of `date_from` to that of
//! `date_to`; weeks start on Sunday. Persons are counted through the
//! persons layer's identity (an event belongs to the person owning its
//! distinct id now), so merged persons count once and a deleted person
//! counts nowhere; an event without a person (personless) counts by the
//! person UUID it carries; `total` counts every event, with a person or
//! not.
//!
//! Weekly and monthly active persons hold 16 bytes per (breakdown value,
//! person, active day) outside the query's memory pool, twice that at
//! most while they are gathered ([`super::SortedKeys`]), and the text of
//! each personless actor's UUID once (to number it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, Utc};
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::filter::{self, is_relative_hours, range, Interval, Params, DEFAULT_BREAKDOWN_LIMIT};
use super::personless::{
    personless_can_match, personless_props_sql, Personless, MAX_RUNS, NOT_A_PERSONS_UUID, NO_PERSON,
};
use super::properties::props_sql;
use super::properties::{any_of_kind, events_only, props, Prop, PropKind};
use super::{lit, period_labels, session, stream, ts_lit, SortedKeys};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

const DAY: i64 = 86_400_000_000;

/// PostHog's value for a breakdown whose property is unset.
pub const BREAKDOWN_NULL: &str = "$$_posthog_breakdown_null_$$";

/// PostHog's value for the row that sums the breakdown values past
/// `breakdown_limit`.
pub const BREAKDOWN_OTHER: &str = "$$_posthog_breakdown_other_$$";

/// What a series counts per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Math {
    /// Events.
    Total,
    /// Distinct persons.
    Dau,
    /// Persons active in the 7 days ending on the day.
    WeeklyActive,
    /// Persons active in the 30 days ending on the day.
    MonthlyActive,
}

impl Math {
    fn parse(v: Option<&Value>) -> Result<Math> {
        match v.and_then(Value::as_str) {
            None | Some("total") => Ok(Math::Total),
            Some("dau") => Ok(Math::Dau),
            Some("weekly_active") => Ok(Math::WeeklyActive),
            Some("monthly_active") => Ok(Math::MonthlyActive),
            Some(other) => invalid(format!(
                "math {other:?} is not supported (total, dau, weekly_active, monthly_active)"
            )),
        }
    }

    /// PostHog's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Math::Total => "total",
            Math::Dau => "dau",
            Math::WeeklyActive => "weekly_active",
            Math::MonthlyActive => "monthly_active",
        }
    }

    /// Days an active person counts for (weekly and monthly active).
    fn days(self) -> Option<i64> {
        match self {
            Math::WeeklyActive => Some(7),
            Math::MonthlyActive => Some(30),
            Math::Total | Math::Dau => None,
        }
    }
}

/// One series: an event (or every event), what to count, its filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The event; `None` = all events.
    pub event: Option<String>,
    /// Display name.
    pub name: String,
    /// `custom_name`, if any.
    pub custom_name: Option<String>,
    /// What to count.
    pub math: Math,
    /// The series' own property filters.
    pub props: Vec<Prop>,
}

/// A trends query, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendsSpec {
    /// The series, in order.
    pub series: Vec<Series>,
    /// Global property filters.
    pub props: Vec<Prop>,
    /// The period unit.
    pub interval: Interval,
    /// The first period's start (µs).
    pub first: i64,
    /// The first instant counted (µs): the first period's start, but for
    /// weeks the start of `date_from`'s day and for days from a
    /// relative `date_from` in hours (`-24h`) its hour, as PostHog counts
    /// (`date_from_with_adjusted_start_of_interval`); the first period
    /// then holds only what follows it.
    pub from: i64,
    /// The last instant counted (µs, inclusive).
    pub to: i64,
    /// The event property to break down by.
    pub breakdown: Option<String>,
    /// Most breakdown values kept per series (the largest).
    pub breakdown_limit: usize,
    /// Whether the values past `breakdown_limit` are summed into an
    /// `Other` row ([`BREAKDOWN_OTHER`]), as PostHog does unless
    /// `breakdown_hide_other_aggregation` is true.
    pub breakdown_other: bool,
}

/// Keys of a `TrendsQuery` Elide reads; any other key is refused rather
/// than ignored, unless it only changes presentation.
const KNOWN: &[&str] = &[
    "kind",
    "series",
    "dateRange",
    "interval",
    "properties",
    "breakdownFilter",
    "trendsFilter",
    "filterTestAccounts",
    "aggregation_group_type_index",
    "samplingFactor",
    "modifiers",
    "response",
    "version",
    "tags",
];

impl TrendsSpec {
    /// Parse a `TrendsQuery` (PostHog's defaults: the last 7 days, by
    /// day, `total`).
    pub fn parse(q: &Map<String, Value>, now: DateTime<Utc>) -> Result<TrendsSpec> {
        if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return invalid(format!("TrendsQuery: {k} is not supported"));
        }
        if q.get("filterTestAccounts") == Some(&Value::Bool(true)) {
            return invalid("TrendsQuery: filterTestAccounts is not supported (Elide has no test-account filters)");
        }
        if q.get("aggregation_group_type_index")
            .is_some_and(|v| !v.is_null())
        {
            return invalid("TrendsQuery: groups are not supported");
        }
        if q.get("trendsFilter")
            .and_then(|f| f.get("formula"))
            .is_some_and(|v| !v.is_null())
        {
            return invalid("TrendsQuery: formulas are not supported");
        }
        // The legacy parameters the shared parsers read.
        let mut m = Map::new();
        if let Some(r) = q.get("dateRange") {
            let Value::Object(r) = r else {
                return invalid("dateRange must be an object {date_from, date_to}");
            };
            for k in ["date_from", "date_to"] {
                if let Some(v) = r.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            if let Some(v) = r.get("explicitDate") {
                m.insert("explicit_date".into(), v.clone());
            }
        }
        if let Some(v) = q.get("interval") {
            m.insert("interval".into(), v.clone());
        }
        let p = Params(m);
        let interval = Interval::parse(&p)?;
        let r = range(&p, now, "-7d", interval)?;
        let Some(from) = r.from else {
            return invalid(
                "trends need a date_from: resolve `all` first (analytics::all_time_from)",
            );
        };
        let first = interval.trunc(from);
        let hours = p.text("date_from").is_some_and(|s| is_relative_hours(&s));
        let counted_from = match interval {
            Interval::Week => Interval::Day.trunc(from),
            Interval::Day if hours => r.given_from.unwrap_or(first),
            _ => first,
        };
        let n_periods = interval.periods(first, r.to).len();
        if n_periods >= 10_000 {
            return invalid("the date range holds too many periods of this interval");
        }
        let Some(Value::Array(list)) = q.get("series") else {
            return invalid("TrendsQuery: series must be a list of EventsNode");
        };
        if list.is_empty() {
            return invalid("TrendsQuery: series is empty");
        }
        if list.len() > MAX_SERIES {
            return invalid(format!(
                "TrendsQuery: {} series; at most {MAX_SERIES}",
                list.len()
            ));
        }
        let mut series = Vec::new();
        for s in list {
            let Value::Object(o) = s else {
                return invalid("TrendsQuery: each series is an object");
            };
            match o.get("kind").and_then(Value::as_str) {
                None | Some("EventsNode") => {}
                Some(other) => {
                    return invalid(format!(
                        "series of kind {other} are not supported (EventsNode)"
                    ))
                }
            }
            let event = match o.get("event") {
                None | Some(Value::Null) => None,
                Some(Value::String(e)) => Some(e.clone()),
                Some(v) => return invalid(format!("series event must be a string, got {v}")),
            };
            let math = Math::parse(o.get("math"))?;
            if math.days().is_some() && interval != Interval::Day {
                return invalid(format!(
                    "math {} is counted per day: use interval day",
                    math.as_str()
                ));
            }
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| event.clone())
                .unwrap_or_else(|| "All events".into());
            series.push(Series {
                event,
                name,
                custom_name: o
                    .get("custom_name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                math,
                props: props(o.get("properties").cloned(), "series properties")?,
            });
        }
        let (mut breakdown, mut breakdown_limit) = (None, DEFAULT_BREAKDOWN_LIMIT);
        let mut breakdown_other = true;
        if let Some(b) = q.get("breakdownFilter").filter(|b| !b.is_null()) {
            let Value::Object(b) = b else {
                return invalid("breakdownFilter must be an object");
            };
            match b.get("breakdown_type").and_then(Value::as_str) {
                None | Some("event") => {}
                Some(other) => {
                    return invalid(format!("breakdown_type {other:?} is not supported (event)"))
                }
            }
            breakdown = match b.get("breakdown") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(v) => return invalid(format!("breakdown must be a property name, got {v}")),
            };
            if let Some(l) = b.get("breakdown_limit").filter(|v| !v.is_null()) {
                breakdown_limit = filter::breakdown_limit(l.as_i64(), l)?;
            }
            match b.get("breakdown_hide_other_aggregation") {
                None | Some(Value::Null) => {}
                Some(Value::Bool(hide)) => breakdown_other = !hide,
                Some(v) => {
                    return invalid(format!(
                        "breakdown_hide_other_aggregation must be true or false, got {v}"
                    ))
                }
            }
        }
        // Each result row holds a value, a label and a day per period
        // (with a breakdown, one row more: Other).
        let rows = series.len()
            * if breakdown.is_some() {
                breakdown_limit + 1
            } else {
                1
            };
        if rows.saturating_mul(n_periods) > MAX_RESULT_VALUES {
            return invalid(format!(
                "the result could hold {} values (series × breakdown_limit × periods); at most \
                 {MAX_RESULT_VALUES}: narrow the date range, the interval, the series or the \
                 breakdown_limit",
                rows.saturating_mul(n_periods)
            ));
        }
        Ok(TrendsSpec {
            series,
            props: props(q.get("properties").cloned(), "properties")?,
            interval,
            first,
            from: counted_from,
            to: r.to,
            breakdown,
            breakdown_limit,
            breakdown_other,
        })
    }

    /// The period starts.
    pub fn periods(&self) -> Vec<i64> {
        self.interval.periods(self.first, self.to)
    }

    /// The SQL expression of an event's period start (µs), weeks from
    /// Sunday.
    fn period_sql(&self) -> String {
        let trunc = match self.interval {
            Interval::Hour => "date_trunc('hour', e.timestamp)".to_string(),
            Interval::Day => "date_trunc('day', e.timestamp)".to_string(),
            Interval::Week => {
                "date_trunc('week', e.timestamp + INTERVAL '1 day') - INTERVAL '1 day'".to_string()
            }
            Interval::Month => "date_trunc('month', e.timestamp)".to_string(),
        };
        format!("CAST({trunc} AS BIGINT)")
    }

    /// One series' query: (period, breakdown, count) for total and daily
    /// active; (event time in µs, breakdown, person's row id) per event
    /// for weekly and monthly active.
    fn sql(&self, s: &Series) -> Result<String> {
        self.series_sql(s, None)
    }

    /// The same for the events with no person (personless, `$process_person_profile:
    /// false`: their distinct id has none), counted as PostHog counts
    /// them, by the person UUID they carry: (period, breakdown, that UUID's
    /// text, events) once each for daily active and total, per event for
    /// weekly and monthly active. The caller leaves out the UUIDs of
    /// deleted persons (whose kept events also have no distinct id with a
    /// person; the query leaves out their blocked ids' events). `None`
    /// when [`TrendsSpec::counts_personless`] is false or `personless` is
    /// not given. The two sets of actors are disjoint: an id with a person
    /// has a row in `person_distinct_ids`, and a live person's UUID is left
    /// out here ([`super::personless`]). (The two queries read the
    /// persons tables each: a capture between them can move an id from one
    /// set to the other for that request.)
    fn personless_sql(
        &self,
        s: &Series,
        personless: Option<&Personless>,
    ) -> Result<Option<String>> {
        if !self.counts_personless(s) {
            return Ok(None);
        }
        let Some(p) = personless else {
            return Ok(None);
        };
        self.series_sql(s, Some(p)).map(Some)
    }

    /// Whether series `s` counts personless actors
    /// ([`TrendsSpec::personless_sql`]): their person properties are empty,
    /// so not when a cohort or a person filter that needs a person filters
    /// the series ([`personless_can_match`]). `total` without a
    /// person or cohort filter reads every event in its own query.
    fn counts_personless(&self, s: &Series) -> bool {
        personless_can_match(&self.props)
            && personless_can_match(&s.props)
            && (s.math != Math::Total || !self.props.iter().chain(&s.props).all(events_only))
    }

    /// One series' query over persons, or with `personless` over the
    /// events with no person ([`TrendsSpec::personless_sql`]).
    fn series_sql(&self, s: &Series, personless: Option<&Personless>) -> Result<String> {
        let from = match s.math.days() {
            Some(d) => self.first - (d - 1) * DAY,
            None => self.from,
        };
        let own = if personless.is_some() {
            personless_props_sql
        } else {
            props_sql
        };
        let mut filter = vec![
            format!("e.timestamp >= {}", ts_lit(from)),
            format!("e.timestamp <= {}", ts_lit(self.to)),
            own(&self.props)?,
            own(&s.props)?,
        ];
        if let Some(e) = &s.event {
            filter.push(format!("e.event = {}", lit(e)));
        }
        let bd = match &self.breakdown {
            Some(k) => format!("json_as_text(e.properties, {})", lit(k)),
            None => "CAST(NULL AS VARCHAR)".to_string(),
        };
        let person_props = any_of_kind(self.props.iter().chain(&s.props), PropKind::Person);
        let cohort = any_of_kind(self.props.iter().chain(&s.props), PropKind::Cohort);
        // Persons are counted by their row id (`p.id`, an integer, not
        // the UUID's text). The persons tables come first, so that the
        // joins build on them and stream the events through.
        let persons = personless.is_none() && (person_props || cohort || s.math != Math::Total);
        if let Some(p) = personless {
            // Not a blocked id's (a deleted person's), nor a live person's
            // UUID (an id reset away from that person: nobody's).
            filter.push(format!(
                "e.person_id IS NOT NULL AND {NO_PERSON} AND {NOT_A_PERSONS_UUID} AND {}",
                p.not_blocked_sql()
            ));
        }
        let from_sql = if persons {
            "person_distinct_ids pdi JOIN persons p ON p.uuid = pdi.person_id \
             JOIN events e ON e.distinct_id = pdi.distinct_id"
        } else {
            "events e"
        };
        let period = self.period_sql();
        let where_ = filter.join(" AND ");
        Ok(match s.math {
            Math::Total | Math::Dau if personless.is_some() => format!(
                "SELECT {period} AS period, {bd} AS bd, CAST(e.person_id AS VARCHAR) AS person, count(*) AS n \
                 FROM {from_sql} WHERE {where_} GROUP BY 1, 2, 3"
            ),
            Math::Total => format!(
                "SELECT {period} AS period, {bd} AS bd, count(*) AS n FROM {from_sql} WHERE {where_} GROUP BY 1, 2"
            ),
            Math::Dau => format!(
                "SELECT {period} AS period, {bd} AS bd, count(DISTINCT p.id) AS n FROM {from_sql} WHERE {where_} GROUP BY 1, 2"
            ),
            Math::WeeklyActive | Math::MonthlyActive if personless.is_some() => format!(
                "SELECT CAST(e.timestamp AS BIGINT) AS t, {bd} AS bd, CAST(e.person_id AS VARCHAR) AS person \
                 FROM {from_sql} WHERE {where_}"
            ),
            Math::WeeklyActive | Math::MonthlyActive => format!(
                "SELECT CAST(e.timestamp AS BIGINT) AS t, {bd} AS bd, p.id AS person \
                 FROM {from_sql} WHERE {where_}"
            ),
        })
    }
}

/// Per breakdown value (`None` without a breakdown): the count per
/// period start.
pub type Counts = BTreeMap<Option<String>, BTreeMap<i64, u64>>;

/// Most series one trends query may have.
pub const MAX_SERIES: usize = 100;

/// Most values (rows × periods) a trends result may hold: each comes with
/// its period's label and day, so 1,000,000 values are ~50 MB of JSON.
pub const MAX_RESULT_VALUES: usize = 1_000_000;

/// Compute every series.
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    limits: &QueryLimits,
) -> Result<Vec<Counts>> {
    let mut runs = 0;
    loop {
        runs += 1;
        let (out, personless) = compute_once(persons, project, spec, limits).await?;
        // Again if a person was deleted while it ran ([`Personless::stale`]).
        match personless {
            Some(p) if runs < MAX_RUNS && p.stale(persons, project)? => continue,
            _ => return Ok(out),
        }
    }
}

/// [`compute`] once, with what it read of the deleted persons.
async fn compute_once(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    limits: &QueryLimits,
) -> Result<(Vec<Counts>, Option<Personless>)> {
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(
        &ctx,
        persons,
        project,
        spec.props
            .iter()
            .chain(spec.series.iter().flat_map(|s| &s.props)),
    )
    .await?;
    // Read once for every series that counts personless actors.
    let personless = if spec.series.iter().any(|s| spec.counts_personless(s)) {
        let p = Personless::read(persons, project)?;
        p.register(&ctx);
        Some(p)
    } else {
        None
    };
    let deleted = |who: &str| personless.as_ref().is_some_and(|p| p.is_deleted(who));
    // What the counts, the breakdown values and the personless actors'
    // numbers hold is charged to the query's memory pool: a breakdown by
    // a property unique per event (`$insert_id`) makes about one value of
    // every event, and is refused at the query's memory limit.
    let tally = elide_query::hold(&ctx.runtime_env().memory_pool, "trends tally", 0)?;
    let mut out = Vec::new();
    for s in &spec.series {
        let mut counts: Counts = BTreeMap::new();
        let bd_of = |c: &arrow::array::StringArray, r: usize| -> Option<String> {
            spec.breakdown.as_ref().map(|_| {
                // An empty string is PostHog's null bucket too.
                if c.is_null(r) || c.value(r).is_empty() {
                    BREAKDOWN_NULL.to_string()
                } else {
                    c.value(r).to_string()
                }
            })
        };
        match s.math.days() {
            None => {
                // Personless actors: one row per (period, value, UUID)
                // with its events, less the UUIDs of deleted persons.
                if let Some(sql) = spec.personless_sql(s, personless.as_ref())? {
                    let mut rows = stream(&ctx, &sql).await?;
                    while let Some(b) = rows.next().await {
                        let b = b?;
                        let period = b.column(0).as_primitive::<Int64Type>();
                        let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                        let bd = bd.as_string::<i32>();
                        let who = arrow::compute::cast(b.column(2), &DataType::Utf8)?;
                        let who = who.as_string::<i32>();
                        let events = b.column(3).as_primitive::<Int64Type>();
                        for r in 0..b.num_rows() {
                            if period.is_null(r) || who.is_null(r) || deleted(who.value(r)) {
                                continue;
                            }
                            let n = if s.math == Math::Total {
                                events.value(r).max(0) as u64
                            } else {
                                1
                            };
                            add(&mut counts, &tally, bd_of(bd, r), period.value(r), n)?;
                        }
                    }
                }
                let mut rows = stream(&ctx, &spec.sql(s)?).await?;
                while let Some(b) = rows.next().await {
                    let b = b?;
                    let period = b.column(0).as_primitive::<Int64Type>();
                    let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                    let bd = bd.as_string::<i32>();
                    let n = b.column(2).as_primitive::<Int64Type>();
                    for r in 0..b.num_rows() {
                        if period.is_null(r) {
                            continue;
                        }
                        let n = n.value(r).max(0) as u64;
                        add(&mut counts, &tally, bd_of(bd, r), period.value(r), n)?;
                    }
                }
            }
            Some(days) => {
                // One integer per event, (breakdown value, person's row
                // id, day), in a flat vector then sorted: each (value,
                // person)'s active days come out together and in order,
                // with no per-person collection and no random access per
                // row. Breakdown values are numbered (`names`), so that a
                // row costs no allocation.
                // This series' numbering of values and personless actors,
                // charged while the series is counted (the counts stay, on
                // `tally`).
                let series = elide_query::hold(&ctx.runtime_env().memory_pool, "trends series", 0)?;
                let mut values: Vec<Option<String>> = Vec::new();
                let mut names: HashMap<String, usize> = HashMap::new();
                if spec.breakdown.is_none() {
                    values.push(None);
                }
                let mut keys = SortedKeys::new();
                let base_day = (spec.first - (days - 1) * DAY).div_euclid(DAY);
                // Personless actors (their UUID's text) are numbered from
                // 2^62, above every person's row id.
                let queries = [
                    Some(spec.sql(s)?),
                    spec.personless_sql(s, personless.as_ref())?,
                ];
                let mut numbered: HashMap<String, i64> = HashMap::new();
                for sql in queries.iter().flatten() {
                    let mut rows = stream(&ctx, sql).await?;
                    while let Some(b) = rows.next().await {
                        let b = b?;
                        let t = b.column(0).as_primitive::<Int64Type>();
                        let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                        let bd = bd.as_string::<i32>();
                        let person: Int64Array = match b.column(2).data_type() {
                            DataType::Int64 => b.column(2).as_primitive::<Int64Type>().clone(),
                            _ => {
                                let text = arrow::compute::cast(b.column(2), &DataType::Utf8)?;
                                let text = text.as_string::<i32>();
                                (0..text.len())
                                    .map(|r| -> Result<Option<i64>> {
                                        let who = text.value(r);
                                        if text.is_null(r) || deleted(who) {
                                            return Ok(None);
                                        }
                                        // A UUID seen before costs no copy.
                                        if let Some(&n) = numbered.get(who) {
                                            return Ok(Some(n));
                                        }
                                        series.try_grow(who.len() + ENTRY_OVERHEAD)?;
                                        let n = (1i64 << 62) + numbered.len() as i64;
                                        numbered.insert(who.to_string(), n);
                                        Ok(Some(n))
                                    })
                                    .collect::<Result<Int64Array>>()?
                            }
                        };
                        for r in 0..b.num_rows() {
                            if t.is_null(r) || person.is_null(r) {
                                continue;
                            }
                            let value = if spec.breakdown.is_none() {
                                0
                            } else {
                                // An empty string is the null bucket
                                // (as `bd_of`).
                                let v = if bd.is_null(r) || bd.value(r).is_empty() {
                                    BREAKDOWN_NULL
                                } else {
                                    bd.value(r)
                                };
                                match names.get(v) {
                                    Some(&k) => k,
                                    None if values.len() >= u32::MAX as usize => {
                                        return invalid("the breakdown has too many values");
                                    }
                                    None => {
                                        series.try_grow(2 * (v.len() + ENTRY_OVERHEAD))?;
                                        names.insert(v.to_string(), values.len());
                                        values.push(Some(v.to_string()));
                                        values.len() - 1
                                    }
                                }
                            };
                            // Row ids are positive; days are counted from the
                            // first the query reads.
                            let (Ok(id), Ok(day)) = (
                                u64::try_from(person.value(r)),
                                u32::try_from(t.value(r).div_euclid(DAY) - base_day),
                            ) else {
                                continue;
                            };
                            let key =
                                (value as u128) << 96 | u128::from(id) << 32 | u128::from(day);
                            keys.push(key);
                        }
                    }
                    drop(rows);
                }
                let keys = keys.finish();
                let mut ds: Vec<i64> = Vec::new();
                for (at, &key) in keys.iter().enumerate() {
                    ds.push((base_day + i64::from(key as u32)) * DAY);
                    if keys.get(at + 1).is_some_and(|next| next >> 32 == key >> 32) {
                        continue;
                    }
                    // The last day of this (value, person): the person
                    // counts on every day d with an active day in
                    // (d - days, d]: merged runs [a, b + days).
                    let value = (key >> 96) as usize;
                    let c = periods_of(&mut counts, &tally, values[value].clone())?;
                    let mut k = 0;
                    while k < ds.len() {
                        let start = ds[k];
                        let mut end = ds[k] + days * DAY;
                        while k + 1 < ds.len() && ds[k + 1] < end {
                            k += 1;
                            end = ds[k] + days * DAY;
                        }
                        let mut d = start.max(spec.first);
                        while d < end && d <= spec.to {
                            bump(c, &tally, d, 1)?;
                            d += DAY;
                        }
                        k += 1;
                    }
                    ds.clear();
                }
            }
        }
        out.push(counts);
    }
    Ok((out, personless))
}

/// What an entry of the tally holds beyond its text: a `String` header,
/// a map's node or slot.
const ENTRY_OVERHEAD: usize = 64;

/// `value`'s counts per period, made (and charged to `tally`) if new.
fn periods_of<'c>(
    counts: &'c mut Counts,
    tally: &datafusion::execution::memory_pool::MemoryReservation,
    value: Option<String>,
) -> Result<&'c mut BTreeMap<i64, u64>> {
    use std::collections::btree_map::Entry;
    Ok(match counts.entry(value) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => {
            tally.try_grow(v.key().as_ref().map_or(0, String::len) + ENTRY_OVERHEAD)?;
            v.insert(BTreeMap::new())
        }
    })
}

/// Add `n` to the count of `period`, charging `tally` for a new entry.
fn bump(
    periods: &mut BTreeMap<i64, u64>,
    tally: &datafusion::execution::memory_pool::MemoryReservation,
    period: i64,
    n: u64,
) -> Result<()> {
    use std::collections::btree_map::Entry;
    match periods.entry(period) {
        Entry::Occupied(mut o) => *o.get_mut() += n,
        Entry::Vacant(v) => {
            tally.try_grow(ENTRY_OVERHEAD)?;
            v.insert(n);
        }
    }
    Ok(())
}

/// Add `n` to `value`'s count in `period` ([`periods_of`], [`bump`]).
fn add(
    counts: &mut Counts,
    tally: &datafusion::execution::memory_pool::MemoryReservation,
    value: Option<String>,
    period: i64,
    n: u64,
) -> Result<()> {
    bump(periods_of(counts, tally, value)?, tally, period, n)
}

/// PostHog's result list: per series (and breakdown value, the largest
/// `breakdown_limit` by total, then `Other`: the sum of the rest per
/// period, as PostHog sums them whatever the math, unless hidden),
/// `{action, label, count, data, labels, days, breakdown_value?}`,
/// zero-filled.
pub fn results(spec: &TrendsSpec, counts: &[Counts]) -> Value {
    let periods = spec.periods();
    let (labels, days) = period_labels(spec.interval, &periods);
    let mut out = Vec::new();
    for (i, (s, c)) in spec.series.iter().zip(counts).enumerate() {
        let rows: Vec<(Option<String>, Vec<f64>)> = if spec.breakdown.is_none() {
            let by = c.get(&None);
            vec![(
                None,
                periods
                    .iter()
                    .map(|p| by.and_then(|m| m.get(p)).copied().unwrap_or(0) as f64)
                    .collect(),
            )]
        } else {
            // The largest breakdown_limit values by their total over the
            // periods, chosen before any is zero-filled (a breakdown by
            // a property unique per event has as many values as events).
            let in_range = |p: &i64| periods.binary_search(p).is_ok();
            let mut totals: Vec<(&Option<String>, u64, &BTreeMap<i64, u64>)> = c
                .iter()
                .map(|(bd, m)| {
                    let total = m.iter().filter(|(p, _)| in_range(p)).map(|(_, n)| *n).sum();
                    (bd, total, m)
                })
                .collect();
            // As PostHog ranks them: values before the null one, then
            // by total, largest first, then by value.
            let null = |v: &Option<String>| v.as_deref() == Some(BREAKDOWN_NULL);
            totals.sort_by(|a, b| (null(a.0), b.1, a.0).cmp(&(null(b.0), a.1, b.0)));
            let rest = totals.split_off(spec.breakdown_limit.min(totals.len()));
            let mut rows: Vec<(Option<String>, Vec<f64>)> = totals
                .into_iter()
                .map(|(bd, _, m)| {
                    (
                        bd.clone(),
                        periods
                            .iter()
                            .map(|p| m.get(p).copied().unwrap_or(0) as f64)
                            .collect(),
                    )
                })
                .collect();
            // Values past the limit with nothing in the range make no
            // Other row.
            if spec.breakdown_other && rest.iter().any(|(_, total, _)| *total > 0) {
                rows.push((
                    Some(BREAKDOWN_OTHER.to_string()),
                    periods
                        .iter()
                        .map(|p| {
                            rest.iter()
                                .map(|(_, _, m)| m.get(p).copied().unwrap_or(0))
                                .sum::<u64>() as f64
                        })
                        .collect(),
                ));
            }
            rows
        };
        for (bd, data) in rows {
            let label = match &bd {
                Some(v) => v.clone(),
                None => s.custom_name.clone().unwrap_or_else(|| s.name.clone()),
            };
            let mut o = json!({
                "action": {"id": s.event, "type": "events", "order": i, "name": s.name,
                           "custom_name": s.custom_name, "math": s.math.as_str()},
                "label": label,
                "count": data.iter().sum::<f64>(),
                "data": data,
                "labels": labels,
                "days": days,
            });
            if let (Some(v), Some(obj)) = (bd, o.as_object_mut()) {
                obj.insert("breakdown_value".into(), json!(v));
            }
            out.push(o);
        }
    }
    Value::Array(out)
}
