//! Trends (`posthog-analytics.md` §3.5): per series and period, the
//! number of events (`total`), of distinct persons (`dau`), of persons
//! active in the 7 or 30 days ending that day (`weekly_active`,
//! `monthly_active`), of sessions (`unique_session`), an aggregate of a
//! numeric property (`sum` … `p99`) or of each actor's events
//! (`avg_count_per_actor` …), of actors whose first event falls in the
//! period (`first_time_for_user`, `first_matching_event_for_user`)
//! ([`Math`]), optionally broken down by an
//! event or a person property; the body of PostHog's `TrendsQuery`.
//! Formulas between the series ([`formula`]), the same rows over the
//! previous period ([`compare`]) and the persons of one point
//! ([`actors`]) are in their modules.
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

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::filter::{self, is_relative_hours, range, Interval, Params, DEFAULT_BREAKDOWN_LIMIT};
use super::personless::{personless_can_match, personless_props_sql, Personless};
use super::properties::props_sql;
use super::properties::{events_only, props, Prop};
use super::query_nodes;
use super::{lit, ts_lit};
use crate::error::{AppError, Result};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

const DAY: i64 = 86_400_000_000;

/// PostHog's value for a breakdown whose property is unset.
pub const BREAKDOWN_NULL: &str = "$$_posthog_breakdown_null_$$";

/// PostHog's value for the row that sums the breakdown values past
/// `breakdown_limit`.
pub const BREAKDOWN_OTHER: &str = "$$_posthog_breakdown_other_$$";

mod math;
pub use math::{Math, MathProperty, Percent, PropertyMath};

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
    /// The property a property math aggregates.
    pub math_property: Option<MathProperty>,
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
    /// weeks the start of `date_from`'s day, for days from a relative
    /// `date_from` in hours (`-24h`) its hour, as PostHog counts
    /// (`date_from_with_adjusted_start_of_interval`), and with
    /// `explicitDate` `date_from` itself; the first period then holds
    /// only what follows it.
    pub from: i64,
    /// The last instant counted (µs, inclusive).
    pub to: i64,
    /// The event property to break down by.
    pub breakdown: Option<String>,
    /// Whether `breakdown` is a person property (of the person owning the
    /// event's distinct id now; personless events have none), not an
    /// event property.
    pub breakdown_person: bool,
    /// Most breakdown values kept per series (the largest).
    pub breakdown_limit: usize,
    /// Whether the values past `breakdown_limit` are summed into an
    /// `Other` row ([`BREAKDOWN_OTHER`]), as PostHog does unless
    /// `breakdown_hide_other_aggregation` is true.
    pub breakdown_other: bool,
    /// How the values are shown: per period, a running sum, or one
    /// value over the whole range.
    pub display: Display,
    /// Formulas between the series: when given, the result is their rows
    /// instead of the series'.
    pub formulas: Vec<Formula>,
    /// With `compareFilter.compare`: the same query over the previous
    /// period ([`compare::previous_range`], or with `compare_to` the
    /// period at that offset: [`compare::compare_to_range`]), counted
    /// after this one.
    pub previous: Option<Box<TrendsSpec>>,
}

/// `trendsFilter.display`, as it changes the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A value per period (the line, bar and area charts).
    Series,
    /// Per period, the sum of the values up to it
    /// (`ActionsLineGraphCumulative`).
    Cumulative,
    /// One value over the whole range, `aggregated_value` (PostHog's
    /// total-value displays: `BoldNumber`, `ActionsPie`,
    /// `ActionsBarValue`, `ActionsTable`, `WorldMap`, `Progress`,
    /// `CalendarHeatmap`).
    TotalValue,
}

/// PostHog's displays that show one value over the range
/// (`TrendsDisplay::is_total_value`).
const TOTAL_VALUE_DISPLAYS: [&str; 7] = [
    "BoldNumber",
    "ActionsPie",
    "ActionsBarValue",
    "ActionsTable",
    "WorldMap",
    "Progress",
    "CalendarHeatmap",
];

impl Display {
    /// From `trendsFilter`: its `display`; what would change the values
    /// and is not served (smoothing) is refused, presentation is ignored
    /// (formulas are [`formula::parse_all`]'s).
    fn parse(f: Option<&Value>) -> Result<Display> {
        let f = match f {
            None | Some(Value::Null) => return Ok(Display::Series),
            Some(Value::Object(f)) => f,
            Some(v) => return invalid(format!("trendsFilter must be an object, got {v}")),
        };
        match f.get("smoothingIntervals") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_i64() == Some(1) => {}
            Some(v) => {
                return invalid(format!(
                    "TrendsQuery: smoothingIntervals {v} is not supported (1: no smoothing)"
                ))
            }
        }
        Ok(match f.get("display") {
            None | Some(Value::Null) => Display::Series,
            Some(Value::String(d)) if d == "ActionsLineGraphCumulative" => Display::Cumulative,
            Some(Value::String(d)) if TOTAL_VALUE_DISPLAYS.contains(&d.as_str()) => {
                Display::TotalValue
            }
            Some(Value::String(_)) => Display::Series,
            Some(v) => return invalid(format!("trendsFilter.display must be a string, got {v}")),
        })
    }
}

impl TrendsSpec {
    /// Parse a `TrendsQuery` (PostHog's defaults: the last 7 days, by
    /// day, `total`).
    pub fn parse(q: &Map<String, Value>, now: DateTime<Utc>) -> Result<TrendsSpec> {
        query_nodes::check_node(
            q,
            "TrendsQuery",
            &[
                "series",
                "interval",
                "breakdownFilter",
                "trendsFilter",
                "compareFilter",
            ],
        )?;
        let display = Display::parse(q.get("trendsFilter"))?;
        // The legacy parameters the shared parsers read.
        let mut m = Map::new();
        query_nodes::date_range(q, &mut m)?;
        if let Some(v) = q.get("interval") {
            m.insert("interval".into(), v.clone());
        }
        let p = Params(m);
        // A total value is over days, whatever the interval (PostHog's).
        // (An interval a total value would not use is no error.)
        let asked = match (display, Interval::parse(&p)) {
            (Display::TotalValue, Err(_)) => Interval::Day,
            (_, asked) => asked?,
        };
        let interval = match display {
            Display::TotalValue => Interval::Day,
            _ => asked,
        };
        let r = range(&p, now, "-7d", interval)?;
        let Some(from) = r.from else {
            return invalid(
                "trends need a date_from: resolve `all` first (analytics::all_time_from)",
            );
        };
        let first = interval.trunc(from);
        let hours = p.text("date_from").is_some_and(|s| is_relative_hours(&s));
        // `explicitDate`: the range as given, to the microsecond (PostHog's
        // `exact_timerange`).
        let explicit = p.flag("explicit_date")?.unwrap_or(false);
        let counted_from = match interval {
            _ if explicit => from,
            Interval::Week => Interval::Day.trunc(from),
            Interval::Day if hours => r.given_from.unwrap_or(first),
            _ => first,
        };
        let n_periods = interval.periods(first, r.to).len();
        // A total value is one value per row (and the range's days).
        let most = if display == Display::TotalValue {
            100_000
        } else {
            10_000
        };
        if n_periods >= most {
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
            let (math, math_property) = Math::parse(o)?;
            // As PostHog's `convert_active_user_math_based_on_interval`:
            // the persons active in a week are a week's unique users.
            let math = match (math, asked) {
                (Math::WeeklyActive, Interval::Week | Interval::Month)
                | (Math::MonthlyActive, Interval::Month) => Math::Dau,
                (m, _) => m,
            };
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
                math_property,
                props: props(o.get("properties").cloned(), "series properties")?,
            });
        }
        let (mut breakdown, mut breakdown_limit) = (None, DEFAULT_BREAKDOWN_LIMIT);
        let mut breakdown_other = true;
        let mut breakdown_person = false;
        if let Some(b) = q.get("breakdownFilter").filter(|b| !b.is_null()) {
            let Value::Object(b) = b else {
                return invalid("breakdownFilter must be an object");
            };
            let b = &super::query_nodes::fold_breakdowns(b, false)?;
            match b.get("breakdown_type") {
                None | Some(Value::Null) => {}
                Some(Value::String(t)) if t == "event" => {}
                Some(Value::String(t)) if t == "person" => breakdown_person = true,
                Some(other) => {
                    return invalid(format!(
                        "breakdown_type {other} is not supported (event, person)"
                    ))
                }
            }
            // What changes the breakdown and is not served is refused
            // (the options of one only when it is set: a saved insight
            // keeps them when its breakdown is removed).
            let set = b.get("breakdown").is_some_and(|v| !v.is_null());
            let options: &[&str] = if set {
                &[
                    "breakdown_histogram_bin_count",
                    "breakdown_normalize_url",
                    "breakdown_group_type_index",
                ]
            } else {
                &[]
            };
            for &k in options {
                if b.get(k).is_some_and(|v| {
                    !v.is_null() && v != &Value::Array(Vec::new()) && v != &Value::Bool(false)
                }) {
                    return invalid(format!(
                        "breakdownFilter.{k} is not supported (one breakdown property: breakdown, breakdown_type)"
                    ));
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
        let formulas = match q.get("trendsFilter") {
            Some(Value::Object(f)) => formula::parse_all(f, series.len())?,
            _ => Vec::new(),
        };
        // `Some(compare_to)` when compared.
        let compare = match q.get("compareFilter") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => {
                let compare = match c.get("compare") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => {
                        return invalid(format!(
                            "compareFilter.compare must be true or false, got {v}"
                        ))
                    }
                };
                // (Kept by a saved insight whose comparison is off: no
                // matter then, as in PostHog.)
                let compare_to = match c.get("compare_to") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(_) if !compare => None,
                    Some(v) => {
                        return invalid(format!(
                            "compareFilter.compare_to must be an offset like -1w, got {v}"
                        ))
                    }
                };
                compare.then_some(compare_to)
            }
            Some(v) => return invalid(format!("compareFilter must be an object, got {v}")),
        };
        // Each result row holds a value, a label and a day per period
        // (with a breakdown, one row more: Other); a formula's rows are
        // one per breakdown value of any series.
        let per_series = if breakdown.is_some() {
            breakdown_limit + 1
        } else {
            1
        };
        let rows = series.len() * per_series
            + formulas.len()
                * if breakdown.is_some() {
                    series.len() * per_series
                } else {
                    1
                };
        let rows = if compare.is_some() { rows * 2 } else { rows };
        if rows.saturating_mul(n_periods) > MAX_RESULT_VALUES {
            return invalid(format!(
                "the result could hold {} values (series × breakdown_limit × periods); at most \
                 {MAX_RESULT_VALUES}: narrow the date range, the interval, the series or the \
                 breakdown_limit",
                rows.saturating_mul(n_periods)
            ));
        }
        let mut spec = TrendsSpec {
            previous: None,
            formulas,
            series,
            props: props(q.get("properties").cloned(), "properties")?,
            interval,
            first,
            from: counted_from,
            to: r.to,
            breakdown,
            breakdown_person,
            breakdown_limit,
            breakdown_other,
            display,
        };
        if let Some(compare_to) = compare {
            let (from, to) = match compare_to {
                // PostHog's `QueryCompareToDateRange`: from its
                // `date_from` (`from`: the start of its day, unless by
                // hours or explicit; a relative `date_from` in hours is
                // not rounded to its day, `use_start_of_interval`).
                Some(offset) => {
                    let base = if hours {
                        r.given_from.unwrap_or(from)
                    } else {
                        from
                    };
                    compare::compare_to_range((base, r.to), &offset).map_err(|e| {
                        AppError::InvalidQuery(format!("compareFilter.compare_to: {e}"))
                    })?
                }
                // PostHog's bounds: `date_from` as given (not its
                // period's start), the query's own interval (not a total
                // value's days).
                None => compare::previous_range(
                    (r.given_from.unwrap_or(from), r.to),
                    asked,
                    p.text("date_from").as_deref(),
                    p.text("date_to").as_deref(),
                )
                .ok_or_else(|| {
                    AppError::InvalidQuery(
                        "compareFilter: the previous period is out of range".into(),
                    )
                })?,
            };
            let mut prev = spec.clone();
            prev.first = interval.trunc(from);
            // Counted from as the current period is.
            prev.from = match interval {
                _ if explicit => from,
                Interval::Week => Interval::Day.trunc(from),
                Interval::Day if hours => from,
                _ => prev.first,
            };
            prev.to = to;
            let n = interval.periods(prev.first, prev.to).len();
            if n >= most || rows.saturating_mul(n) > MAX_RESULT_VALUES {
                return invalid("compareFilter: the previous period holds too many values");
            }
            spec.previous = Some(Box::new(prev));
        }
        Ok(spec)
    }

    /// The period starts.
    pub fn periods(&self) -> Vec<i64> {
        self.interval.periods(self.first, self.to)
    }

    /// What series `s` computes: its math, but over the whole range a
    /// total value of weekly or monthly active persons is the persons
    /// active in it or in the 7 or 30 days before its end, as PostHog's
    /// (`count(DISTINCT actor_id)` over its lookback windows).
    pub(super) fn math_of(&self, s: &Series) -> Math {
        match (self.display, s.math) {
            (Display::TotalValue, m) if m.days().is_some() => Math::Dau,
            (Display::Cumulative, Math::Dau) => Math::FirstPeriod,
            (_, m) => m,
        }
    }

    /// The SQL expression of an event's period start (µs), weeks from
    /// Sunday; with a total value, the first day's for every event.
    fn period_sql(&self) -> String {
        if self.display == Display::TotalValue {
            return format!("CAST({} AS BIGINT)", self.first);
        }
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
    /// the series ([`personless_can_match`]). A math of every event
    /// ([`Math::of_events`]) without a person or cohort filter, and not
    /// of a person property, reads every event in its own query.
    pub(crate) fn counts_personless(&self, s: &Series) -> bool {
        personless_can_match(&self.props) && personless_can_match(&s.props) && self.reads_persons(s)
    }

    /// Whether series `s` reads the persons tables (and counts the events
    /// with no person apart).
    fn reads_persons(&self, s: &Series) -> bool {
        !s.math.of_events()
            || (self.breakdown.is_some() && self.breakdown_person)
            || !self.props.iter().chain(&s.props).all(events_only)
            || s.math_property.as_ref().is_some_and(|m| m.person)
    }

    /// The rows of a math over rows ([`Math::over_rows`]): (period,
    /// breakdown, actor, value) of each event, the persons' and the
    /// personless actors' (the person's UUID, or the UUID a personless
    /// event carries: never the same actor in both).
    pub(crate) fn actor_rows_sql(
        &self,
        s: &Series,
        personless: Option<&Personless>,
    ) -> Result<String> {
        if !self.math_of(s).over_rows() {
            return invalid(format!(
                "math {} is not computed over rows",
                s.math.as_str()
            ));
        }
        let mut parts = vec![self.series_sql(s, None)?];
        parts.extend(self.personless_sql(s, personless)?);
        Ok(parts.join(" UNION ALL "))
    }

    /// The query of a math computed over its rows ([`Math::over_rows`]):
    /// (period, breakdown, value), one aggregate over the events of
    /// persons and of personless actors together (a session, or an actor,
    /// may have both), as PostHog's `ifNull(…, 0)`: 0 over no value.
    fn rows_sql(&self, s: &Series, personless: Option<&Personless>) -> Result<String> {
        let rows = self.actor_rows_sql(s, personless)?;
        let value = |agg: String| format!("coalesce(CAST({agg} AS DOUBLE), 0)");
        let bd = self.breakdown.as_ref().map(|_| "bd");
        let keys = self.keys_sql("period", bd);
        let by = |extra: &[&str]| self.group_by("period", bd, extra);
        Ok(match self.math_of(s) {
            Math::UniqueSession => format!(
                "SELECT {keys}, {} AS n FROM ({rows}) r {}",
                value("count(DISTINCT v)".into()),
                by(&[])
            ),
            Math::PerActor(m) => format!(
                "SELECT {keys}, {} AS n FROM (SELECT {keys}, actor, \
                 CAST(count(*) AS DOUBLE) AS c FROM ({rows}) r {}) a {}",
                value(m.sql("c")),
                by(&["actor"]),
                by(&[])
            ),
            // PostHog's `$session_duration`: each session of the period's
            // events once (`any(session.$session_duration)` by session),
            // its duration from all its events ([`TrendsSpec::durations_sql`]).
            Math::Property(m) if s.math_property.as_ref().is_some_and(|p| p.is_session_duration()) => {
                let sessions = format!(
                    "SELECT {keys}, v AS sid FROM ({rows}) r WHERE v IS NOT NULL AND v <> '' {}",
                    by(&["v"])
                );
                format!(
                    "SELECT {keys}, {} AS n FROM ({sessions}) s JOIN ({}) d ON d.sid = s.sid {}",
                    value(m.sql("CAST(d.duration AS DOUBLE)")),
                    self.durations_sql(),
                    by(&[])
                )
            }
            Math::Property(m) => format!(
                "SELECT {keys}, {} AS n FROM ({rows}) r {}",
                value(m.sql("v")),
                by(&[])
            ),
            // (A running sum is over time: its period is no constant.)
            Math::FirstPeriod => format!(
                "SELECT period, {key}, CAST(count(*) AS DOUBLE) AS n FROM \
                 (SELECT min(period) AS period, {key}, actor FROM ({rows}) r {}) a GROUP BY period{}",
                self.group_by("", bd, &["actor"]),
                if bd.is_some() { ", bd" } else { "" },
                key = self.keys_sql("", bd),
            ),
            // Each actor's first event (`t0`) counts when it matches the
            // filters (the first matching one, `t1`, is the same) and is in
            // the range, in its period and with its breakdown value
            // (PostHog's `argMin`; `period` grows with `t`). Ties of the
            // first time: it counts if any of them matches, as PostHog's
            // `min_timestamp = min_timestamp_with_condition`.
            Math::FirstTime { .. } => format!(
                "SELECT {keys}, CAST(count(*) AS DOUBLE) AS n FROM {} {}",
                self.first_times_from(
                    &rows,
                    // (Of simultaneous first events, a matching one's value.)
                    if bd.is_some() {
                        ", min(period) AS period, first_value(bd ORDER BY t, c DESC NULLS LAST) AS bd"
                    } else {
                        ", min(period) AS period"
                    }
                ),
                by(&[])
            ),
            other => return invalid(format!("math {} is not computed over rows", other.as_str())),
        })
    }

    /// The duration of every session (`$session_id`) with events from a
    /// day before the range to a day after it, in whole seconds as
    /// ClickHouse's `dateDiff('second', first, last)` counts them (the
    /// seconds boundaries crossed): PostHog's sessions table's
    /// `$session_duration`, from all of the session's events whatever
    /// their event or properties. (`sid`, `duration`.) A session longer
    /// than the day around the range is cut there (posthog-js starts a
    /// new session after 24 hours).
    fn durations_sql(&self) -> String {
        let sid = "json_as_text(e.properties, '$session_id')";
        format!(
            "SELECT {sid} AS sid, \
             floor(CAST(max(CAST(e.timestamp AS BIGINT)) AS DOUBLE) / 1000000) - \
             floor(CAST(min(CAST(e.timestamp AS BIGINT)) AS DOUBLE) / 1000000) AS duration \
             FROM events e WHERE e.timestamp >= {} AND e.timestamp <= {} \
             AND {sid} IS NOT NULL AND {sid} <> '' GROUP BY {sid}",
            ts_lit(self.from.saturating_sub(DAY)),
            ts_lit(self.to.saturating_add(DAY))
        )
    }

    /// The persons of a first-time math (`s`, [`Math::FirstTime`]): each
    /// person's first time as [`TrendsSpec::rows_sql`] finds it, `(actor,
    /// t0)` (µs), for the persons of a point.
    pub(super) fn first_times_sql(&self, s: &Series) -> Result<String> {
        Ok(format!(
            "SELECT actor, t0 FROM {}",
            self.first_times_from(&self.series_sql(s, None)?, "")
        ))
    }

    /// Each actor of `rows` (`actor`, `t`, and `c`: whether the row
    /// matches) with its first time `t0`, kept when that first event
    /// matches and is in the range, as a table `a` to select from, with
    /// `more` (`, <aggregate> AS <name>`…) per actor.
    fn first_times_from(&self, rows: &str, more: &str) -> String {
        format!(
            "(SELECT actor, min(t) AS t0, min(CASE WHEN c THEN t END) AS t1{more} \
             FROM ({rows}) r GROUP BY actor) a WHERE t0 = t1 AND t0 >= {}",
            self.from
        )
    }

    /// The keys of an aggregate, `period` and `bd` (`period` left out
    /// when empty; `bd` `None` when it is NULL for every row): each as
    /// itself, or when it is the same for every row (a total value's
    /// period, no breakdown, a personless event's person property) as
    /// that constant, which is
    /// no grouping key: DataFusion 55 aggregates by a constant key on its
    /// partially sorted path, 15–20x slower over millions of groups
    /// (docs/benchmarks.md).
    fn keys_sql(&self, period: &str, bd: Option<&str>) -> String {
        let mut out = Vec::new();
        if !period.is_empty() {
            out.push(if self.display == Display::TotalValue {
                format!("CAST({} AS BIGINT) AS period", self.first)
            } else {
                format!("{period} AS period")
            });
        }
        out.push(match bd {
            Some(bd) => format!("{bd} AS bd"),
            None => "CAST(NULL AS VARCHAR) AS bd".to_string(),
        });
        out.join(", ")
    }

    /// `GROUP BY` the keys of [`TrendsSpec::keys_sql`] that are no
    /// constants, and `extra` (nothing when none is left).
    fn group_by(&self, period: &str, bd: Option<&str>, extra: &[&str]) -> String {
        let mut keys: Vec<&str> = Vec::new();
        if !period.is_empty() && self.display != Display::TotalValue {
            keys.push(period);
        }
        keys.extend(bd);
        keys.extend(extra);
        if keys.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {}", keys.join(", "))
        }
    }

    /// The SQL of an event's breakdown value (NULL without a
    /// breakdown): of the event (`e`), or of its person (`p`); a
    /// personless event has no person properties (unset).
    fn breakdown_sql(&self, personless: bool) -> String {
        match &self.breakdown {
            Some(_) if self.breakdown_person && personless => "CAST(NULL AS VARCHAR)".to_string(),
            Some(k) if self.breakdown_person => format!("json_as_text(p.properties, {})", lit(k)),
            Some(k) => format!("json_as_text(e.properties, {})", lit(k)),
            None => "CAST(NULL AS VARCHAR)".to_string(),
        }
    }

    /// One series' query over persons, or with `personless` over the
    /// events with no person ([`TrendsSpec::personless_sql`]).
    fn series_sql(&self, s: &Series, personless: Option<&Personless>) -> Result<String> {
        let own = if personless.is_some() {
            personless_props_sql
        } else {
            props_sql
        };
        let filters = format!("{} AND {}", own(&self.props)?, own(&s.props)?);
        let mut filter = vec![format!("e.timestamp <= {}", ts_lit(self.to))];
        match s.math {
            // A first time is looked for over all the events before the
            // range's end; the first event ever must match the filters
            // (`c`, [`TrendsSpec::rows_sql`]), or with `matching` only the
            // matching events are read.
            Math::FirstTime { matching } => {
                if matching {
                    filter.push(filters.clone());
                }
            }
            m => {
                let from = match m.days() {
                    Some(d) => self.first - (d - 1) * DAY,
                    None => self.from,
                };
                filter.insert(0, format!("e.timestamp >= {}", ts_lit(from)));
                filter.push(filters.clone());
            }
        }
        if let Some(e) = &s.event {
            filter.push(format!("e.event = {}", lit(e)));
        }
        let bd = self.breakdown_sql(personless.is_some());
        // "" and unset are one value (PostHog's null): folded before a
        // count of distinct actors or an aggregate groups them (events
        // counted apart add up alike, and `total` keeps its plain key).
        let bd = if self.breakdown.is_some() && self.math_of(s) != Math::Total {
            format!("nullif({bd}, '')")
        } else {
            bd
        };
        // Persons are counted by their row id (`p.id`, an integer, not
        // the UUID's text). The persons tables come first, so that the
        // joins build on them and stream the events through.
        let persons = personless.is_none() && self.reads_persons(s);
        if let Some(p) = personless {
            // Counted in SQL, not by actor: not a deleted person's UUID
            // either.
            filter.push(p.actor_sql(self.math_of(s).over_rows()));
        }
        let from_sql = if persons {
            "person_distinct_ids pdi JOIN persons p ON p.uuid = pdi.person_id \
             JOIN events e ON e.distinct_id = pdi.distinct_id"
        } else {
            "events e"
        };
        let period = self.period_sql();
        // NULL for every row without a breakdown, and for the personless
        // events of a person breakdown.
        let bd_key = (self.breakdown.is_some() && !(self.breakdown_person && personless.is_some()))
            .then_some(bd.as_str());
        let keys = self.keys_sql(&period, bd_key);
        let where_ = filter.join(" AND ");
        // The rows of a math over rows: (period, breakdown, actor, value).
        let actor = if personless.is_some() {
            "CAST(e.person_id AS VARCHAR)"
        } else if persons {
            "pdi.person_id"
        } else {
            "CAST(NULL AS VARCHAR)"
        };
        let rows = |v: String| {
            format!(
                "SELECT {period} AS period, {bd} AS bd, {actor} AS actor, {v} AS v \
                 FROM {from_sql} WHERE {where_}"
            )
        };
        Ok(match self.math_of(s) {
            // PostHog's `$session_id` column: the property's text, "" when
            // unset (one session of every event without one).
            Math::UniqueSession => {
                rows("coalesce(json_as_text(e.properties, '$session_id'), '')".into())
            }
            Math::Property(_) => {
                let Some(mp) = &s.math_property else {
                    return invalid("a property math needs a math_property");
                };
                if mp.is_session_duration() {
                    // The event's session, whose duration
                    // [`TrendsSpec::rows_sql`] aggregates once.
                    rows("json_as_text(e.properties, '$session_id')".into())
                } else {
                    rows(mp.sql(personless.is_some()))
                }
            }
            Math::PerActor(_) | Math::FirstPeriod => rows("CAST(NULL AS DOUBLE)".into()),
            // The event's time and whether it matches the filters.
            Math::FirstTime { matching } => format!(
                "SELECT {period} AS period, {bd} AS bd, {actor} AS actor, \
                 CAST(e.timestamp AS BIGINT) AS t, {} AS c FROM {from_sql} WHERE {where_}",
                if matching { "TRUE" } else { filters.as_str() }
            ),
            Math::Total | Math::Dau if personless.is_some() => format!(
                "SELECT {keys}, CAST(e.person_id AS VARCHAR) AS person, count(*) AS n \
                 FROM {from_sql} WHERE {where_} {}",
                self.group_by(&period, bd_key, &["CAST(e.person_id AS VARCHAR)"])
            ),
            Math::Total => format!(
                "SELECT {keys}, count(*) AS n FROM {from_sql} WHERE {where_} {}",
                self.group_by(&period, bd_key, &[])
            ),
            Math::Dau => format!(
                "SELECT {keys}, count(DISTINCT p.id) AS n FROM {from_sql} WHERE {where_} {}",
                self.group_by(&period, bd_key, &[])
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

/// Per breakdown value (`None` without a breakdown): the count (or the
/// property math's value) per
/// period start.
pub type Counts = BTreeMap<Option<String>, BTreeMap<i64, f64>>;

/// Most series one trends query may have.
pub const MAX_SERIES: usize = 100;

/// Most values (rows × periods) a trends result may hold: each comes with
/// its period's label and day, so 1,000,000 values are ~50 MB of JSON.
pub const MAX_RESULT_VALUES: usize = 1_000_000;

mod actors;
mod compare;
mod compute;
mod formula;
pub use actors::{
    actors, legacy_point, recordings, ActorKey, ActorsPage, MatchedEvent, MatchedRecording, Point,
    TrendActor, MAX_MATCHED_EVENTS,
};
pub(crate) use compute::prepare;
pub use compute::{compute, results};
pub use formula::Formula;
