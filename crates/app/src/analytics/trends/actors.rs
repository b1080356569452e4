//! The persons behind one point of a trend (PostHog's
//! `TrendsActorsQueryBuilder`, the persons modal of a trends chart, and
//! the legacy `…/persons/trends/`): the persons with a matching event of
//! the series in the point's period, with how many (`event_count`), the
//! last one's time and the distinct ids they were sent with.
//!
//! The point's events are those its value counts: the series' event and
//! filters and the query's, in the period of `day` (with a total value,
//! the whole range and no day), within the query's range as the chart
//! counts it, and for weekly or monthly active persons the 7 or 30 days
//! ending with the day; for a first-time math only each person's first
//! time ([`TrendsSpec::first_times_sql`]). With a breakdown, only the events of the
//! point's value: [`BREAKDOWN_NULL`] is unset or empty, and
//! [`BREAKDOWN_OTHER`] every value the chart does not show (found by
//! counting the series as the chart does).
//!
//! Persons are found through the persons layer's identity, as the chart
//! counts them: an event belongs to the person owning its distinct id
//! now, a deleted person is nobody's, and an event without a person
//! (personless) has no profile to list, as in PostHog (whose actors query
//! joins the persons table). A cumulative chart's point lists the
//! persons of its own period, as PostHog's does.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{
    invalid, Display, TrendsSpec, BREAKDOWN_NULL, BREAKDOWN_OTHER, DAY, TOTAL_VALUE_DISPLAYS,
};
use crate::analytics::filter::{self, Interval, Params};
use crate::analytics::properties::props_sql;
use crate::analytics::query_nodes;
use crate::analytics::{lit, stream, ts_lit};
use crate::error::Result;
use crate::query::QueryLimits;

/// Which point of a trend.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The series (0-based).
    pub series: usize,
    /// A time in the point's period (µs); `None` with a total value.
    pub day: Option<i64>,
    /// The breakdown value, as the result's `breakdown_value` names it.
    pub breakdown: Option<String>,
}

/// One person of a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendActor {
    /// The person's UUID.
    pub person: String,
    /// The person's events the point counts.
    pub event_count: u64,
    /// The last of them (µs).
    pub last_seen: i64,
    /// The distinct ids they were sent with, sorted.
    pub distinct_ids: Vec<String>,
    /// The recorded sessions of those events (when asked for:
    /// [`ActorsPage::recordings`]), in the order of their first event.
    pub recordings: Vec<MatchedRecording>,
}

/// A recorded session of a person's events of a point (PostHog's
/// `matched_recordings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRecording {
    /// The session (`$session_id`), which has a recording.
    pub session_id: String,
    /// The point's events of the session, by time.
    pub events: Vec<MatchedEvent>,
}

/// One event of a [`MatchedRecording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedEvent {
    /// Its time (µs).
    pub timestamp: i64,
    /// Its UUID.
    pub uuid: String,
    /// Its `$window_id`.
    pub window_id: Option<String>,
}

/// Most events of one person a point's recordings list (PostHog's
/// `groupUniqArray(100)`).
pub const MAX_MATCHED_EVENTS: usize = 100;

/// What the persons of a point may be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKey {
    /// Their events the point counts.
    EventCount,
    /// The last of them.
    LastSeen,
    /// The person's UUID.
    Id,
}

impl ActorKey {
    fn sql(self) -> &'static str {
        match self {
            ActorKey::EventCount => "n",
            ActorKey::LastSeen => "seen",
            ActorKey::Id => "actor",
        }
    }
}

/// The order and the page of a point's persons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorsPage {
    /// Keys, each descending (`true`) or not; the UUID breaks ties last.
    pub order: Vec<(ActorKey, bool)>,
    /// Most persons.
    pub limit: usize,
    /// Persons skipped.
    pub offset: usize,
    /// Whether each person's recorded sessions are wanted.
    pub recordings: bool,
}

impl Default for ActorsPage {
    /// PostHog's persons modal: most events first, then by UUID
    /// descending; 100.
    fn default() -> Self {
        ActorsPage {
            order: vec![(ActorKey::EventCount, true), (ActorKey::Id, true)],
            limit: 100,
            offset: 0,
            recordings: false,
        }
    }
}

/// The legacy parameters of `…/persons/trends/` (PostHog's
/// `TrendsActors`: `events` with `entity_id`, `entity_math` and
/// `entity_order` to choose one, `date_from`, `date_to`, `interval`,
/// `display`, `properties`, `breakdown`, `breakdown_type`,
/// `breakdown_value`) as a `TrendsQuery` and its point, a total over a
/// range: on a chart over time from `date_from` to the end of its
/// interval (PostHog's `_handle_date_interval`: an hour, the end of its
/// day, a week or a month on), on a cumulative chart or a total value
/// the range given.
pub fn legacy_point(p: &Params, now: DateTime<Utc>) -> Result<(Map<String, Value>, Point)> {
    let (mut q, series) = query_nodes::legacy_series(p, "TrendsQuery")?;
    let display = p.text("display");
    let over_time = display
        .as_deref()
        .is_none_or(|d| d != "ActionsLineGraphCumulative" && !TOTAL_VALUE_DISPLAYS.contains(&d));
    if let Some(b) = p.json("breakdown") {
        let mut f = Map::new();
        f.insert("breakdown".into(), b);
        if let Some(t) = p.text("breakdown_type") {
            f.insert("breakdown_type".into(), Value::String(t));
        }
        q.insert("breakdownFilter".into(), Value::Object(f));
    }
    let breakdown = p.text("breakdown_value");
    if over_time {
        // PostHog's `_handle_date_interval`: from `date_from` to the end
        // of its interval, counted as one total.
        let interval = Interval::parse(p)?;
        let from = p.text("date_from").unwrap_or_else(|| "-0d".into());
        let start = filter::parse_date(&from, now, "date_from")?;
        let day = Interval::Day.trunc(start.timestamp_micros());
        let end = match interval {
            Interval::Hour => Some(start.timestamp_micros() + 3_600_000_000),
            Interval::Day => Some(Interval::Day.next(day)),
            Interval::Week => Some(day + 7 * DAY),
            Interval::Month => DateTime::<Utc>::from_timestamp_micros(day)
                .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
                .map(|d| d.timestamp_micros()),
        };
        let iso = |us: i64| {
            DateTime::<Utc>::from_timestamp_micros(us)
                .filter(|d| chrono::Datelike::year(d) <= 9999)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        };
        let (Some(from), Some(to)) = (iso(start.timestamp_micros()), end.and_then(|e| iso(e - 1)))
        else {
            return invalid("date_from: its interval ends past the year 9999");
        };
        q.insert(
            "dateRange".into(),
            json!({"date_from": from, "date_to": to, "explicitDate": true}),
        );
    }
    q.insert("trendsFilter".into(), json!({"display": "ActionsTable"}));
    Ok((
        q,
        Point {
            series,
            day: None,
            breakdown,
        },
    ))
}

/// A point's events: the session that reads them, the condition on
/// [`FROM_PERSONS`]'s rows, and their times (from `lo` to before `hi`).
struct PointEvents {
    ctx: datafusion::prelude::SessionContext,
    /// [`FROM_PERSONS`], with a first-time math only each person's first
    /// time ([`TrendsSpec::first_times_sql`]).
    from: String,
    where_: String,
    lo: i64,
    hi: i64,
}

/// The events `point` of `spec` counts.
async fn point_events(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    point: &Point,
    limits: &QueryLimits,
) -> Result<PointEvents> {
    let Some(s) = spec.series.get(point.series) else {
        return invalid(format!(
            "series {} is none of the query's {} series",
            point.series,
            spec.series.len()
        ));
    };
    // The events the point counts, from `lo` to before `hi`.
    let (lo, hi) = match (spec.display, point.day) {
        (Display::TotalValue, Some(_)) => {
            return invalid("a day is not taken for a total value: its persons are the range's")
        }
        // As the chart reads it (`series_sql`): weekly and monthly active
        // persons of the range, or of the 6 or 29 days before it.
        (Display::TotalValue, None) => match s.math.days() {
            Some(d) => (spec.first - (d - 1) * DAY, spec.to.saturating_add(1)),
            None => (spec.from, spec.to.saturating_add(1)),
        },
        (_, None) => return invalid("a day is required: the period of the point"),
        (_, Some(day)) => {
            let start = spec.interval.trunc(day);
            let end = spec.interval.next(start);
            match spec.math_of(s).days() {
                Some(d) => (start - (d - 1) * DAY, end),
                None => (start.max(spec.from), end),
            }
        }
    };
    let hi = hi.min(spec.to.saturating_add(1));
    let mut filter = vec![
        format!("e.timestamp >= {}", ts_lit(lo)),
        format!("e.timestamp < {}", ts_lit(hi)),
        props_sql(&spec.props)?,
        props_sql(&s.props)?,
    ];
    if let Some(e) = &s.event {
        filter.push(format!("e.event = {}", lit(e)));
    }
    let ctx = crate::analytics::session(persons, project, limits)?;
    crate::analytics::cohorts::register_for(
        &ctx,
        persons,
        project,
        spec.props.iter().chain(&s.props),
    )
    .await?;
    match (&spec.breakdown, &point.breakdown) {
        (None, Some(_)) => return invalid("a breakdown value is given but the query has none"),
        (_, None) => {}
        (Some(_), Some(v)) => {
            let bd = format!("nullif({}, '')", spec.breakdown_sql(false));
            if v == BREAKDOWN_OTHER && !spec.breakdown_other {
                return invalid(
                    "the breakdown value Other is hidden (breakdown_hide_other_aggregation)",
                );
            }
            // "" is the null value too (the chart folds them).
            if v == BREAKDOWN_NULL || v.is_empty() {
                filter.push(format!("{bd} IS NULL"));
            } else if v == BREAKDOWN_OTHER {
                // What the chart shows, counted as it counts.
                let mut one = spec.clone();
                one.series = vec![s.clone()];
                one.previous = None;
                let counts = super::compute(persons, project, &one, limits).await?;
                let periods = super::compute::shown_periods(spec);
                let shown: Vec<String> = counts
                    .first()
                    .map(|c| super::compute::ranked(spec, c, &periods).0)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(v, _)| v.as_deref())
                    .map(lit)
                    .collect();
                if !shown.is_empty() {
                    filter.push(format!(
                        "coalesce({bd}, {}) NOT IN ({})",
                        lit(BREAKDOWN_NULL),
                        shown.join(", ")
                    ));
                }
            } else {
                filter.push(format!("{bd} = {}", lit(v)));
            }
        }
    }
    // A first-time math's point: each person's first time, when it is
    // in the point (its period and breakdown value are those of that
    // event). (Simultaneous first events: each that the point's filters
    // take.)
    let from = if matches!(s.math, super::Math::FirstTime { .. }) {
        format!(
            "{FROM_PERSONS} JOIN ({}) f ON f.actor = pdi.person_id \
             AND f.t0 = CAST(e.timestamp AS BIGINT)",
            spec.first_times_sql(s)?
        )
    } else {
        FROM_PERSONS.to_string()
    };
    Ok(PointEvents {
        ctx,
        from,
        where_: filter.join(" AND "),
        lo,
        hi,
    })
}

/// The persons of `point` of `spec`, in `page`'s order and window.
pub async fn actors(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    point: &Point,
    page: &ActorsPage,
    limits: &QueryLimits,
) -> Result<Vec<TrendActor>> {
    let events = point_events(persons, project, spec, point, limits).await?;
    let mut order: Vec<String> = page
        .order
        .iter()
        .map(|(k, desc)| format!("{} {}", k.sql(), if *desc { "DESC" } else { "ASC" }))
        .collect();
    if !page.order.iter().any(|(k, _)| *k == ActorKey::Id) {
        order.push("actor DESC".into());
    }
    let where_ = &events.where_;
    let sql = format!(
        "SELECT actor, n, seen, ids FROM (SELECT CAST(pdi.person_id AS VARCHAR) AS actor, \
         count(*) AS n, CAST(max(e.timestamp) AS BIGINT) AS seen, \
         array_agg(DISTINCT e.distinct_id) AS ids FROM {} WHERE {where_} \
         GROUP BY pdi.person_id) a ORDER BY {} LIMIT {} OFFSET {}",
        events.from,
        order.join(", "),
        page.limit,
        page.offset
    );
    let mut out = Vec::new();
    let mut batches = stream(&events.ctx, &sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let who = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let who = who.as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        let seen = b.column(2).as_primitive::<Int64Type>();
        let ids = b.column(3).as_list::<i32>();
        for r in 0..b.num_rows() {
            if who.is_null(r) {
                continue;
            }
            let list = ids.value(r);
            let list = arrow::compute::cast(&list, &DataType::Utf8)?;
            let list = list.as_string::<i32>();
            let mut distinct_ids: Vec<String> = (0..list.len())
                .filter(|&i| !list.is_null(i))
                .map(|i| list.value(i).to_string())
                .collect();
            distinct_ids.sort();
            out.push(TrendActor {
                person: who.value(r).to_string(),
                event_count: u64::try_from(n.value(r)).unwrap_or(0),
                last_seen: seen.value(r),
                distinct_ids,
                recordings: Vec::new(),
            });
        }
    }
    if page.recordings {
        recordings_of(&events, &mut out).await?;
    }
    Ok(out)
}

/// Fill the recorded sessions of `found`, persons of `point` of `spec`
/// (a page narrowed after [`actors`] read it).
pub async fn recordings(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    point: &Point,
    found: &mut [TrendActor],
    limits: &QueryLimits,
) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let events = point_events(persons, project, spec, point, limits).await?;
    recordings_of(&events, found).await
}

/// The persons tables joined to their events, as the chart reads them.
const FROM_PERSONS: &str = "person_distinct_ids pdi JOIN persons p ON p.uuid = pdi.person_id \
     JOIN events e ON e.distinct_id = pdi.distinct_id";

/// Fill each of `found`'s recorded sessions: the sessions (`$session_id`)
/// of its events of the point that have a recording (one within a day
/// of the point's events), with at most [`MAX_MATCHED_EVENTS`] of those
/// events, the first by time. PostHog takes 100 of all the person's
/// events of the point, then keeps those of recorded sessions.
async fn recordings_of(events: &PointEvents, found: &mut [TrendActor]) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let (ctx, where_) = (&events.ctx, &events.where_);
    let who: Vec<String> = found.iter().map(|a| lit(&a.person)).collect();
    let session = "json_as_text(e.properties, '$session_id')";
    let recorded = format!(
        "SELECT session_id FROM recordings WHERE timestamp >= {} AND timestamp < {}",
        ts_lit(events.lo.saturating_sub(DAY)),
        ts_lit(events.hi.saturating_add(DAY))
    );
    let sql = format!(
        "SELECT actor, s, t, u, w FROM (SELECT CAST(pdi.person_id AS VARCHAR) AS actor, \
         {session} AS s, CAST(e.timestamp AS BIGINT) AS t, CAST(e.uuid AS VARCHAR) AS u, \
         json_as_text(e.properties, '$window_id') AS w, \
         row_number() OVER (PARTITION BY pdi.person_id ORDER BY e.timestamp, e.uuid) AS k \
         FROM {} WHERE {where_} AND CAST(pdi.person_id AS VARCHAR) IN ({}) \
         AND {session} IN ({recorded})) r \
         WHERE k <= {MAX_MATCHED_EVENTS} ORDER BY actor, t, u",
        events.from,
        who.join(", ")
    );
    let index: std::collections::HashMap<String, usize> = found
        .iter()
        .enumerate()
        .map(|(i, a)| (a.person.clone(), i))
        .collect();
    let mut batches = stream(ctx, &sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8);
        let (actor, sid, uuid, window) = (text(0)?, text(1)?, text(3)?, text(4)?);
        let (actor, sid, uuid, window) = (
            actor.as_string::<i32>(),
            sid.as_string::<i32>(),
            uuid.as_string::<i32>(),
            window.as_string::<i32>(),
        );
        let t = b.column(2).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            if actor.is_null(r) || sid.is_null(r) || t.is_null(r) {
                continue;
            }
            let Some(&i) = index.get(actor.value(r)) else {
                continue;
            };
            let event = MatchedEvent {
                timestamp: t.value(r),
                uuid: if uuid.is_null(r) {
                    String::new()
                } else {
                    uuid.value(r).to_string()
                },
                window_id: (!window.is_null(r)).then(|| window.value(r).to_string()),
            };
            let list = &mut found[i].recordings;
            match list.iter_mut().find(|m| m.session_id == sid.value(r)) {
                Some(m) => m.events.push(event),
                None => list.push(MatchedRecording {
                    session_id: sid.value(r).to_string(),
                    events: vec![event],
                }),
            }
        }
    }
    Ok(())
}
