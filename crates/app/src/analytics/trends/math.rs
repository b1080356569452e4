//! What a trends series counts per period: PostHog's `math` (with
//! `math_property` and `math_property_type` for the property maths), as
//! its `AggregationOperations` computes it.

use serde_json::{Map, Value};

use super::invalid;
use crate::analytics::lit;
use crate::error::Result;

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
    /// Distinct `$session_id`s.
    UniqueSession,
    /// An aggregate of a numeric property ([`MathProperty`]).
    Property(PropertyMath),
    /// An aggregate of each actor's number of events.
    PerActor(PropertyMath),
    /// Each actor once, in the first period it is active in: what a
    /// cumulative chart of unique users sums (PostHog counts a user once
    /// per query there, not once a day). Not a `math` of its own.
    FirstPeriod,
    /// Actors whose first event of the series falls in the range, each
    /// counted once, in that event's period (PostHog's
    /// `first_time_for_user`, its `FirstTimeForUserEventsQueryAlternator`):
    /// the first event ever (up to the range's end) must itself match
    /// the filters; with `matching`
    /// (`first_matching_event_for_user`), the first event that matches
    /// them. The breakdown value is that event's.
    FirstTime {
        /// Whether the first event matching the filters counts, not the
        /// first event.
        matching: bool,
    },
}

/// The aggregates of the property and per-actor maths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyMath {
    /// Sum (not of the per-actor maths).
    Sum,
    /// Mean.
    Avg,
    /// Least.
    Min,
    /// Greatest.
    Max,
    /// A quantile (`median` 0.5, `p75`, `p90`, `p95`, `p99`): linear
    /// between the two nearest values, as ClickHouse's `quantile` is on up
    /// to 8,192 values.
    Quantile(Percent),
}

/// A quantile's level in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u8);

/// The property a property math reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MathProperty {
    /// Its key.
    pub key: String,
    /// The person's property (PostHog's `person_properties`; the person
    /// owning the event's distinct id now), not the event's.
    pub person: bool,
}

const PROPERTY_MATHS: [(&str, PropertyMath); 9] = [
    ("sum", PropertyMath::Sum),
    ("avg", PropertyMath::Avg),
    ("min", PropertyMath::Min),
    ("max", PropertyMath::Max),
    ("median", PropertyMath::Quantile(Percent(50))),
    ("p75", PropertyMath::Quantile(Percent(75))),
    ("p90", PropertyMath::Quantile(Percent(90))),
    ("p95", PropertyMath::Quantile(Percent(95))),
    ("p99", PropertyMath::Quantile(Percent(99))),
];

const PER_ACTOR_MATHS: [(&str, PropertyMath); 8] = [
    ("avg_count_per_actor", PropertyMath::Avg),
    ("min_count_per_actor", PropertyMath::Min),
    ("max_count_per_actor", PropertyMath::Max),
    (
        "median_count_per_actor",
        PropertyMath::Quantile(Percent(50)),
    ),
    ("p75_count_per_actor", PropertyMath::Quantile(Percent(75))),
    ("p90_count_per_actor", PropertyMath::Quantile(Percent(90))),
    ("p95_count_per_actor", PropertyMath::Quantile(Percent(95))),
    ("p99_count_per_actor", PropertyMath::Quantile(Percent(99))),
];

const SUPPORTED: &str = "total, dau, weekly_active, monthly_active, unique_session, \
     first_time_for_user, first_matching_event_for_user, \
     sum, avg, min, max, median, p75, p90, p95, p99 (with math_property), \
     avg_count_per_actor, min_count_per_actor, max_count_per_actor, median_count_per_actor, \
     p75_count_per_actor, p90_count_per_actor, p95_count_per_actor, p99_count_per_actor";

impl Math {
    /// A series' `math`, and `math_property` for the property maths.
    pub(super) fn parse(o: &Map<String, Value>) -> Result<(Math, Option<MathProperty>)> {
        let name = match o.get("math") {
            None | Some(Value::Null) => "total",
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return invalid(format!("math must be a string, got {v}")),
        };
        let math = match name {
            "total" => Math::Total,
            "dau" => Math::Dau,
            "weekly_active" => Math::WeeklyActive,
            "monthly_active" => Math::MonthlyActive,
            "unique_session" => Math::UniqueSession,
            "first_time_for_user" => Math::FirstTime { matching: false },
            "first_matching_event_for_user" => Math::FirstTime { matching: true },
            _ => match (
                PROPERTY_MATHS.iter().find(|(n, _)| *n == name),
                PER_ACTOR_MATHS.iter().find(|(n, _)| *n == name),
            ) {
                (Some((_, m)), _) => Math::Property(*m),
                (_, Some((_, m))) => Math::PerActor(*m),
                _ => return invalid(format!("math {name:?} is not supported ({SUPPORTED})")),
            },
        };
        let property = match o.get("math_property") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
            Some(v) => return invalid(format!("math_property must be a property name, got {v}")),
        };
        if !matches!(math, Math::Property(_)) {
            // PostHog reads it only for the property maths.
            return Ok((math, None));
        }
        let Some(key) = property else {
            return invalid(format!(
                "math {name} needs a math_property (the numeric property it aggregates)"
            ));
        };
        let person = match o.get("math_property_type") {
            None | Some(Value::Null) => false,
            Some(Value::String(t)) if t == "event_properties" => false,
            Some(Value::String(t)) if t == "person_properties" => true,
            // PostHog's UI sends the session duration as a session
            // property (the one session property served).
            Some(Value::String(t)) if t == "session_properties" && key == SESSION_DURATION => false,
            Some(v) => {
                return invalid(format!(
                    "math_property_type {v} is not supported (event_properties, person_properties; session_properties for $session_duration)"
                ))
            }
        };
        if o.get("math_property_revenue_currency")
            .is_some_and(|v| !v.is_null())
        {
            return invalid(
                "math_property_revenue_currency is not supported (no currency conversion)",
            );
        }
        Ok((math, Some(MathProperty { key, person })))
    }

    /// PostHog's name.
    pub fn as_str(self) -> &'static str {
        let named = |list: &[(&'static str, PropertyMath)], m: PropertyMath| {
            list.iter().find(|(_, x)| *x == m).map_or("", |(n, _)| n)
        };
        match self {
            Math::Total => "total",
            Math::Dau => "dau",
            Math::WeeklyActive => "weekly_active",
            Math::MonthlyActive => "monthly_active",
            Math::UniqueSession => "unique_session",
            Math::Property(m) => named(&PROPERTY_MATHS, m),
            Math::PerActor(m) => named(&PER_ACTOR_MATHS, m),
            Math::FirstPeriod => "dau",
            Math::FirstTime { matching: false } => "first_time_for_user",
            Math::FirstTime { matching: true } => "first_matching_event_for_user",
        }
    }

    /// Days an active person counts for (weekly and monthly active).
    pub(super) fn days(self) -> Option<i64> {
        match self {
            Math::WeeklyActive => Some(7),
            Math::MonthlyActive => Some(30),
            _ => None,
        }
    }

    /// Whether the math counts every event whatever its person: without
    /// person or cohort filters it reads the events alone.
    pub(super) fn of_events(self) -> bool {
        matches!(self, Math::Total | Math::UniqueSession | Math::Property(_))
    }

    /// Whether the series is computed in SQL over its rows
    /// ([`super::TrendsSpec::rows_sql`]): one aggregate per (period,
    /// breakdown value) over the events of persons and of personless
    /// actors together.
    pub(super) fn over_rows(self) -> bool {
        matches!(
            self,
            Math::UniqueSession
                | Math::Property(_)
                | Math::PerActor(_)
                | Math::FirstPeriod
                | Math::FirstTime { .. }
        )
    }
}

impl PropertyMath {
    /// The SQL aggregate of `x` (a DOUBLE), NULL over no value.
    pub(super) fn sql(self, x: &str) -> String {
        match self {
            PropertyMath::Sum => format!("sum({x})"),
            PropertyMath::Avg => format!("avg({x})"),
            PropertyMath::Min => format!("min({x})"),
            PropertyMath::Max => format!("max({x})"),
            PropertyMath::Quantile(Percent(p)) => format!(
                "percentile_cont({}) WITHIN GROUP (ORDER BY {x})",
                f64::from(p) / 100.0
            ),
        }
    }
}

/// PostHog's session property a property math may aggregate (of the
/// sessions table: [`MathProperty::is_session_duration`]).
pub const SESSION_DURATION: &str = "$session_duration";

impl MathProperty {
    /// Whether the math aggregates the duration of the events' sessions
    /// (PostHog's `math_property: "$session_duration"`, of its sessions
    /// table), not a property of the events: once per session and
    /// period ([`super::TrendsSpec::rows_sql`]).
    pub fn is_session_duration(&self) -> bool {
        !self.person && self.key == SESSION_DURATION
    }

    /// The property's value as a number on a row of events `e` and
    /// persons `p` (NULL when unset or not a number, as PostHog's
    /// `toFloat`, and when not finite); `personless`: on an event with no
    /// person, whose person properties are empty.
    pub(super) fn sql(&self, personless: bool) -> String {
        match (self.person, personless) {
            (true, true) => "CAST(NULL AS DOUBLE)".into(),
            (true, false) => finite(&format!(
                "TRY_CAST(json_as_text(p.properties, {}) AS DOUBLE)",
                lit(&self.key)
            )),
            (false, _) => finite(&format!(
                "TRY_CAST(json_as_text(e.properties, {}) AS DOUBLE)",
                lit(&self.key)
            )),
        }
    }
}

/// `x` when it is a finite number, else NULL: text such as `"NaN"` or
/// `"inf"` parses as a float but is no value to add up (one would make the
/// period's sum NaN, which JSON cannot hold).
fn finite(x: &str) -> String {
    format!("CASE WHEN abs({x}) <= 1.7976931348623157e308 THEN {x} END")
}
