//! PostHog's legacy `Filter`: the parameters of the analytics routes, read
//! from the query string and the JSON body alike (a JSON-valued parameter
//! may arrive as JSON text in the query string or as JSON in the body), with
//! PostHog's defaults and validation messages
//! (`posthog-analytics.md` §1; docs/api.md lists the differences).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use serde_json::{Map, Value};

use super::properties::{props, Prop};
use crate::error::{AppError, Result};
use elide_query::funnel::Window;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// The raw parameters: the query string's, overlaid by the body's.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// Query-string pairs, then a JSON body (an object) on top.
    pub fn new(
        query: impl IntoIterator<Item = (String, String)>,
        body: Option<Value>,
    ) -> Result<Params> {
        let mut m: Map<String, Value> = query
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        match body {
            None | Some(Value::Null) => {}
            Some(Value::Object(b)) => m.extend(b),
            Some(_) => return invalid("the request body must be a JSON object"),
        }
        Ok(Params(m))
    }

    /// A parameter as text (numbers and booleans spelled as JSON).
    pub fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    }

    /// A boolean parameter: `true` or `false` (any case; JSON booleans
    /// too), `None` when absent; anything else is refused, naming `key`.
    pub fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self
            .text(key)
            .map(|t| t.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => invalid(format!("{key} must be true or false, got {other:?}")),
        }
    }

    /// A JSON-valued parameter (JSON text is parsed; other text is kept as
    /// a string).
    pub fn json(&self, key: &str) -> Option<Value> {
        match self.0.get(key)? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => {
                Some(serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())))
            }
            v => Some(v.clone()),
        }
    }

    /// An integer parameter; `what` names it in the error.
    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.text(key) {
            None => Ok(None),
            Some(t) => match t.trim().parse::<i64>() {
                Ok(n) => Ok(Some(n)),
                Err(_) => match t.trim().parse::<f64>() {
                    Ok(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
                    _ => invalid(format!("{key} must be an integer, got {t:?}")),
                },
            },
        }
    }

    /// A page size or offset: a non-negative integer, `default` when absent.
    pub fn count(&self, key: &str, default: usize, max: usize) -> Result<usize> {
        match self.int(key)? {
            None => Ok(default),
            Some(n) if n < 0 => invalid(format!("{key} must not be negative")),
            Some(n) => Ok((n as usize).min(max)),
        }
    }
}

/// PostHog's default `breakdown_limit` (funnels and trends).
pub const DEFAULT_BREAKDOWN_LIMIT: usize = 25;

/// Largest `breakdown_limit` accepted.
pub const MAX_BREAKDOWN_LIMIT: usize = 1000;

/// A given `breakdown_limit` (`n`; `None`: not an integer), checked from
/// 1 to [`MAX_BREAKDOWN_LIMIT`]; `given` is named in the refusal.
pub fn breakdown_limit(n: Option<i64>, given: &dyn std::fmt::Display) -> Result<usize> {
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n @ 1..=MAX_BREAKDOWN_LIMIT) => Ok(n),
        _ => invalid(format!(
            "breakdown_limit must be an integer from 1 to {MAX_BREAKDOWN_LIMIT}, got {given}"
        )),
    }
}

/// An event step (`events` entry) or an exclusion.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The event name (`id`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// `custom_name`, if any.
    pub custom_name: Option<String>,
    /// `order`.
    pub order: i64,
    /// The entity's own property filters.
    pub properties: Vec<Prop>,
}

/// An exclusion step of a funnel.
#[derive(Debug, Clone, PartialEq)]
pub struct ExclusionStep {
    /// The excluded event.
    pub entity: Entity,
    /// From this step (0-based).
    pub from: usize,
    /// To this step (0-based).
    pub to: usize,
}

/// One entity of `events` (or an exclusion) at position `index`.
pub fn entity_of(v: &Value, index: usize) -> Result<Entity> {
    let Value::Object(o) = v else {
        return invalid("events: each entity is an object with an id");
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("events");
    if ty != "events" {
        return invalid(format!("entities of type {ty:?} are not supported: Elide has no actions; list the events (type \"events\")"));
    }
    let id = match o.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | None => return invalid(
            "events: an entity needs an id (the event name); all events (null) is not supported",
        ),
        Some(v) => v.to_string(),
    };
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| id.clone(), str::to_string);
    let order = o
        .get("order")
        .and_then(Value::as_i64)
        .unwrap_or(index as i64);
    Ok(Entity {
        id,
        name,
        custom_name: o
            .get("custom_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        order,
        properties: props(o.get("properties").cloned(), "events")?,
    })
}

/// The `events` (and `actions`, refused when non-empty) parameter, sorted
/// by `order`.
pub fn entities(p: &Params) -> Result<Vec<Entity>> {
    // Silently ignored, it would count the traffic PostHog's default
    // test-account filters leave out: refused, as a TrendsQuery's
    // `filterTestAccounts` is.
    if p.flag("filter_test_accounts")? == Some(true) {
        return invalid(
            "filter_test_accounts is not supported (Elide has no test-account filters); leave it out or false",
        );
    }
    if let Some(Value::Array(a)) = p.json("actions") {
        if !a.is_empty() {
            return invalid("actions are not supported: Elide has no actions; list the events (type \"events\")");
        }
    }
    let list = match p.json("events") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return invalid("events must be a JSON list of entities"),
    };
    let mut out = list
        .iter()
        .enumerate()
        .map(|(i, v)| entity_of(v, i))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|e| e.order);
    Ok(out)
}

/// PostHog's date parameters, resolved against `now`.
///
/// Dates outside the years 1 to 9999 are refused: a period before or after
/// one of them is then always a valid date (chrono panics past its range).
pub fn parse_date(s: &str, now: DateTime<Utc>, what: &str) -> Result<DateTime<Utc>> {
    let d = parse_any_date(s, now, what)?;
    if !(1..=9999).contains(&d.year()) {
        return invalid(format!(
            "{what}: {:?} is outside the years 1 to 9999",
            s.trim()
        ));
    }
    Ok(d)
}

/// The times without an offset a date parameter may name (UTC).
const TIME_FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
];

/// A day (its start), an RFC 3339 time or a time without an offset
/// (UTC); `None` for anything else, such as a relative date.
pub(crate) fn parse_absolute(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    TIME_FORMATS.iter().find_map(|f| {
        chrono::NaiveDateTime::parse_from_str(s, f)
            .ok()
            .map(|d| Utc.from_utc_datetime(&d))
    })
}

fn parse_any_date(s: &str, now: DateTime<Utc>, what: &str) -> Result<DateTime<Utc>> {
    if let Some(d) = parse_absolute(s) {
        return Ok(d);
    }
    let s = s.trim();
    let (digits, rest) = relative_parts(s);
    let number: i64 = if digits.is_empty() {
        0
    } else {
        match digits.parse() {
            Ok(n) if n < 100_000 => n,
            _ => return invalid(format!("{what}: {s:?} is too far away")),
        }
    };
    let first_len = rest.chars().next().map_or(0, char::len_utf8);
    let (unit, position) = match rest.split_at_checked(first_len) {
        Some((unit, position)) if !unit.is_empty() => (unit, position),
        _ => return invalid(format!("{what}: {s:?} is not a date (YYYY-MM-DD, an ISO 8601 time, or relative like -7d, -24h, -1w, -3m, -1q, -30M, -1mStart)")),
    };
    if !matches!(position, "" | "Start" | "End") {
        return invalid(format!("{what}: {s:?} is not a date"));
    }
    let day_start = |d: DateTime<Utc>| {
        d.with_hour(0)
            .and_then(|d| d.with_minute(0))
            .and_then(|d| d.with_second(0))
            .and_then(|d| d.with_nanosecond(0))
            .unwrap_or(d)
    };
    let out = match unit {
        "h" => {
            let d = now - Duration::hours(number);
            d.with_minute(0).and_then(|d| d.with_second(0)).and_then(|d| d.with_nanosecond(0)).unwrap_or(d)
        }
        "d" => day_start(now - Duration::days(number)),
        "w" => day_start(now - Duration::weeks(number)),
        // PostHog's quarter is 13 weeks; minutes and seconds are not
        // rounded (a query by days or longer rounds to the day).
        "q" => day_start(now - Duration::weeks(13 * number)),
        "M" => now - Duration::minutes(number),
        "s" => now - Duration::seconds(number),
        "m" => {
            let Some(d) = now.checked_sub_months(chrono::Months::new(number as u32)) else {
                return invalid(format!("{what}: {s:?} is too far away"));
            };
            let d = day_start(d);
            match position {
                "Start" => d.with_day(1).unwrap_or(d),
                "End" => last_day_of_month(d),
                _ => d,
            }
        }
        "y" => {
            let Some(d) = now.checked_sub_months(chrono::Months::new(12 * number as u32)) else {
                return invalid(format!("{what}: {s:?} is too far away"));
            };
            let d = day_start(d);
            match position {
                "Start" => d.with_month(1).and_then(|d| d.with_day(1)).unwrap_or(d),
                "End" => d.with_month(12).and_then(|d| d.with_day(31)).unwrap_or(d),
                _ => d,
            }
        }
        _ => return invalid(format!("{what}: {s:?} is not a date (YYYY-MM-DD, an ISO 8601 time, or relative like -7d, -24h, -1w, -3m, -1q, -30M, -1mStart)")),
    };
    // `End` is the last instant of its day, as PostHog's 23:59:59.999999
    // (`-1dEnd` as a `date_to` covers all of yesterday).
    // PostHog gives `End` no meaning for weeks, quarters, minutes and
    // seconds.
    if position == "End" && matches!(unit, "d" | "m" | "y") {
        return Ok(out
            .checked_add_signed(Duration::days(1) - Duration::microseconds(1))
            .unwrap_or(out));
    }
    Ok(out)
}

/// `t` moved back by `n` of `unit`, as PostHog's `relativedelta` moves it:
/// `h` hours, `d` days, `w` weeks, `q` 13 weeks, `M` minutes, `s`
/// seconds exactly; `m` calendar months and `y` twelve of them, keeping
/// the day or the month's last. `None` for another unit or past the dates
/// chrono holds.
pub(crate) fn shift_back(t: DateTime<Utc>, n: i64, unit: &str) -> Option<DateTime<Utc>> {
    let months = |k: i64| u32::try_from(k).ok().map(chrono::Months::new);
    match unit {
        "h" => t.checked_sub_signed(Duration::try_hours(n)?),
        "d" => t.checked_sub_signed(Duration::try_days(n)?),
        "w" => t.checked_sub_signed(Duration::try_weeks(n)?),
        "q" => t.checked_sub_signed(Duration::try_weeks(n.checked_mul(13)?)?),
        "M" => t.checked_sub_signed(Duration::try_minutes(n)?),
        "s" => t.checked_sub_signed(Duration::try_seconds(n)?),
        "m" => t.checked_sub_months(months(n)?),
        "y" => t.checked_sub_months(months(n.checked_mul(12)?)?),
        _ => None,
    }
}

/// A time parameter as PostHog's `relative_date_parse` reads it without
/// truncating (`EventsQuery`'s `before` and `after`): an absolute date or
/// time, or `-N` and a unit ([`shift_back`]; no number: no shift) before
/// `now`, then `Start`/`End` as `get_delta_mapping_for` sets them: of an
/// hour its minutes, of a day its time, of a month its day (1, or its
/// last), of a year January 1st (`Start`) or the month's last day (`End`,
/// PostHog's `day=31`); other units ignore them. Years 1 to 9999.
pub fn parse_instant(s: &str, now: DateTime<Utc>, what: &str) -> Result<DateTime<Utc>> {
    let s = s.trim();
    let out = match parse_absolute(s) {
        Some(d) => Some(d),
        None => {
            let (digits, rest) = relative_parts(s);
            let (unit, position) = match rest.char_indices().nth(1) {
                Some((i, _)) => rest.split_at(i),
                None => (rest, ""),
            };
            let known = matches!(unit, "h" | "d" | "w" | "q" | "M" | "s" | "m" | "y");
            if !known || !matches!(position, "" | "Start" | "End") {
                return invalid(format!("{what}: {s:?} is not a date (YYYY-MM-DD, an ISO 8601 time, or relative like -24h, -7d, -1w, -1m, -1dStart)"));
            }
            let n: i64 = match digits {
                "" => 0,
                d => match d.parse() {
                    Ok(n) if n < 100_000 => n,
                    _ => return invalid(format!("{what}: {s:?} is too far away")),
                },
            };
            let end = position == "End";
            shift_back(now, n, unit).and_then(|d| match (unit, position) {
                (_, "") | ("w" | "q" | "M" | "s", _) => Some(d),
                ("h", _) if end => d
                    .with_minute(59)?
                    .with_second(59)?
                    .with_nanosecond(999_999_000),
                ("h", _) => d.with_minute(0)?.with_second(0)?.with_nanosecond(0),
                ("d", _) if end => d
                    .with_hour(23)?
                    .with_minute(59)?
                    .with_second(59)?
                    .with_nanosecond(999_999_000),
                ("d", _) => d
                    .with_hour(0)?
                    .with_minute(0)?
                    .with_second(0)?
                    .with_nanosecond(0),
                ("m" | "y", _) if end => Some(last_day_of_month(d)),
                ("m", _) => d.with_day(1),
                ("y", _) => d.with_day(1)?.with_month(1),
                _ => None,
            })
        }
    };
    match out {
        Some(d) if (1..=9999).contains(&d.year()) => Ok(d),
        _ => invalid(format!(
            "{what}: {s:?} is not a date Elide can read (years 1 to 9999)"
        )),
    }
}

fn last_day_of_month(d: DateTime<Utc>) -> DateTime<Utc> {
    (28..=31).rev().find_map(|day| d.with_day(day)).unwrap_or(d)
}

/// Whether a date parameter is relative in hours (`-24h`, `-48h`).
pub fn is_relative_hours(s: &str) -> bool {
    let s = s.trim();
    parse_absolute(s).is_none() && relative_parts(s).1 == "h"
}

/// A relative date `-?N?(h|d|w|m|y)(Start|End)?` split into its number's
/// digits and the rest (unit and position), as [`parse_any_date`] reads it.
fn relative_parts(s: &str) -> (&str, &str) {
    let body = s.strip_prefix('-').unwrap_or(s);
    let n = body.chars().take_while(char::is_ascii_digit).count();
    body.split_at(n)
}

/// Whether a date parameter named a day without a time.
fn is_plain_day(s: &str) -> bool {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").is_ok()
}

/// The date range of a query, in µs: `[from, to]` inclusive (`from`
/// `None` = no lower bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First instant (µs), if bounded.
    pub from: Option<i64>,
    /// `date_from` as it was parsed, before the interval rounded it
    /// (µs; a relative date is already at the start of its hour or day).
    pub given_from: Option<i64>,
    /// Last instant (µs), inclusive.
    pub to: i64,
}

/// `date_from` (default `default_from`; `all` = unbounded) and `date_to`
/// (default now), for periods of `interval`. As PostHog's
/// `QueryDateRange`: with periods longer than an hour, `date_from` is the
/// start of its day and `date_to` the end of its day, whatever time they
/// name (so is now, by default); by hours, `date_from` is what it names, a
/// relative or default `date_to` is the end of its hour and an absolute
/// one the instant it names (a plain day: the end of that day). With
/// `explicit_date` true (`dateRange.explicitDate`), neither is rounded: an
/// instant is itself, a plain day its start (`date_from`) or end
/// (`date_to`).
pub fn range(
    p: &Params,
    now: DateTime<Utc>,
    default_from: &str,
    interval: Interval,
) -> Result<Range> {
    let from = match p.text("date_from").as_deref() {
        Some("all") => None,
        Some(s) => Some(parse_date(s, now, "date_from")?),
        None => Some(parse_date(default_from, now, "date_from")?),
    };
    let given = p.text("date_to");
    let to = match &given {
        None => now,
        Some(s) => parse_date(s, now, "date_to")?,
    };
    let explicit = p.flag("explicit_date")?.unwrap_or(false);
    let from = from.map(|d| d.timestamp_micros());
    let given_from = from;
    let to = to.timestamp_micros();
    // The last instant of the day (or hour) holding `to`.
    let end_of = |unit: Interval| unit.next(unit.trunc(to)) - 1;
    let from = match (interval, from) {
        (_, from) if explicit => from,
        (Interval::Hour, from) => from,
        (_, from) => from.map(|f| Interval::Day.trunc(f)),
    };
    let to = match (interval, given.as_deref()) {
        (_, Some(s)) if is_plain_day(s) => end_of(Interval::Day),
        (_, _) if explicit => to,
        (Interval::Hour, Some(s)) if parse_absolute(s).is_some() => to,
        (Interval::Hour, _) => end_of(Interval::Hour),
        _ => end_of(Interval::Day),
    };
    if from.is_some_and(|f| f > to) {
        return invalid("date_from is after date_to");
    }
    Ok(Range {
        from,
        given_from,
        to,
    })
}

/// A period unit of lifecycle and trends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Hours.
    Hour,
    /// Days.
    Day,
    /// Weeks (starting on Sunday, as PostHog's default).
    Week,
    /// Months.
    Month,
}

impl Interval {
    /// The `interval` parameter (default `day`).
    pub fn parse(p: &Params) -> Result<Interval> {
        match p
            .text("interval")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("day") => Ok(Interval::Day),
            Some("hour") => Ok(Interval::Hour),
            Some("week") => Ok(Interval::Week),
            Some("month") => Ok(Interval::Month),
            Some(other) => invalid(format!(
                "Interval {other} does not exist (hour, day, week, month)"
            )),
        }
    }

    /// PostHog's name (`hour`, `day`, `week`, `month`).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// The start of the period holding `t` (µs, UTC).
    pub fn trunc(self, t: i64) -> i64 {
        let Some(d) = DateTime::from_timestamp_micros(t) else {
            return t;
        };
        let day = Utc.from_utc_datetime(&d.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
        let out = match self {
            Interval::Hour => d
                .with_minute(0)
                .and_then(|d| d.with_second(0))
                .and_then(|d| d.with_nanosecond(0))
                .unwrap_or(d),
            Interval::Day => day,
            Interval::Week => day
                .checked_sub_signed(Duration::days(i64::from(
                    d.weekday().num_days_from_sunday(),
                )))
                .unwrap_or(day),
            Interval::Month => day.with_day(1).unwrap_or(day),
        };
        out.timestamp_micros()
    }

    /// The start of the next period after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        let Some(d) = DateTime::from_timestamp_micros(start) else {
            return start;
        };
        let out = match self {
            Interval::Hour => d.checked_add_signed(Duration::hours(1)),
            Interval::Day => d.checked_add_signed(Duration::days(1)),
            Interval::Week => d.checked_add_signed(Duration::weeks(1)),
            Interval::Month => d.checked_add_months(chrono::Months::new(1)),
        };
        // Past chrono's last date there is no next period: the end of time
        // stops any walk over periods.
        out.map_or(i64::MAX, |d| d.timestamp_micros())
    }

    /// The start of the previous period.
    pub fn prev(self, start: i64) -> i64 {
        let Some(d) = DateTime::from_timestamp_micros(start) else {
            return start;
        };
        let out = match self {
            Interval::Hour => d.checked_sub_signed(Duration::hours(1)),
            Interval::Day => d.checked_sub_signed(Duration::days(1)),
            Interval::Week => d.checked_sub_signed(Duration::weeks(1)),
            Interval::Month => d.checked_sub_months(chrono::Months::new(1)),
        };
        out.map_or(i64::MIN, |d| d.timestamp_micros())
    }

    /// Every period start from the period of `from` to that of `to`.
    pub fn periods(self, from: i64, to: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = self.trunc(from);
        let end = self.trunc(to);
        while t <= end && out.len() < 100_000 {
            out.push(t);
            t = self.next(t);
        }
        out
    }
}

/// The conversion window: `funnel_window_days`, else
/// `funnel_window_interval` (default 14) of `funnel_window_interval_unit`
/// (default days), as PostHog's `FunnelQueryContext`: a unit without an
/// interval is 14 of that unit.
pub fn funnel_window(p: &Params) -> Result<Window> {
    let day = 86_400_000_000i64;
    if let Some(d) = p.int("funnel_window_days")? {
        if d < 0 {
            return invalid("funnel_window_days must not be negative");
        }
        if d > 0 {
            return Ok(Window {
                months: 0,
                length: d.saturating_mul(day),
            });
        }
    }
    let n = match p.int("funnel_window_interval")? {
        None | Some(0) => 14,
        Some(n) if n < 0 => return invalid("funnel_window_interval must not be negative"),
        Some(n) => n,
    };
    let unit = p
        .text("funnel_window_interval_unit")
        .map(|u| u.to_ascii_lowercase());
    let micros = match unit.as_deref() {
        Some("second") => 1_000_000,
        Some("minute") => 60_000_000,
        Some("hour") => 3_600_000_000,
        None | Some("day") => day,
        Some("week") => 7 * day,
        Some("month") => {
            return Ok(Window {
                months: u32::try_from(n).unwrap_or(u32::MAX),
                length: 0,
            })
        }
        Some(other) => return invalid(format!("{other} not supported")),
    };
    Ok(Window {
        months: 0,
        length: n.saturating_mul(micros),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostHog's `FunnelQueryContext`: 14 of the unit when no interval is
    /// given, 14 days when nothing is.
    #[test]
    fn a_funnel_window_defaults_to_fourteen_of_its_unit() {
        let w = |m: serde_json::Value| {
            let serde_json::Value::Object(m) = m else {
                unreachable!()
            };
            funnel_window(&Params(m)).expect("window")
        };
        let hour = 3_600_000_000i64;
        assert_eq!(w(serde_json::json!({})).length, 14 * 24 * hour);
        assert_eq!(
            w(serde_json::json!({"funnel_window_interval_unit": "hour"})).length,
            14 * hour
        );
        assert_eq!(
            w(serde_json::json!({"funnel_window_interval_unit": "month"})).months,
            14
        );
        assert_eq!(
            w(serde_json::json!({"funnel_window_interval": 2, "funnel_window_interval_unit": "hour"})).length,
            2 * hour
        );
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 15, 13, 45, 10)
            .single()
            .expect("valid time")
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("valid day")
    }

    /// Periods next to chrono's first and last dates: no panic; past the
    /// end there is no next period (`i64::MAX`) and before the start no
    /// previous one (`i64::MIN`); dates out of the years 1..=9999 are
    /// refused by the parser before they get there.
    #[test]
    fn periods_at_the_ends_of_time_do_not_panic() {
        let last = DateTime::<Utc>::MAX_UTC.timestamp_micros();
        let first = DateTime::<Utc>::MIN_UTC.timestamp_micros();
        for i in [
            Interval::Hour,
            Interval::Day,
            Interval::Week,
            Interval::Month,
        ] {
            assert_eq!(i.next(last), i64::MAX, "{i:?}");
            assert_eq!(i.prev(first), i64::MIN, "{i:?}");
            assert!(i.trunc(first) <= first, "{i:?}");
            assert!(!i.periods(i.trunc(last), last).is_empty(), "{i:?}");
        }
        for s in [
            "+262142-12-31",
            "-262143-01-01",
            "0000-12-31",
            "10000-01-01",
            "-99999y",
            "-99999m",
            "-99999q",
        ] {
            let e = parse_date(s, now(), "date_from").expect_err(s);
            assert!(e.to_string().contains("date_from"), "{s}: {e}");
        }
        assert_eq!(
            parse_date("0001-01-01", now(), "date_from").expect("year 1"),
            day(1, 1, 1)
        );
        assert_eq!(Interval::Week.trunc(day(1, 1, 1).timestamp_micros()), {
            // 0001-01-01 is a Monday: its week starts on Sunday, year 0.
            day(0, 12, 31).timestamp_micros()
        });
    }

    #[test]
    fn relative_dates_follow_posthog() {
        let p = |s: &str| parse_date(s, now(), "date_from").expect(s);
        assert_eq!(p("-7d"), day(2024, 3, 8));
        assert_eq!(p("-1w"), day(2024, 3, 8));
        assert_eq!(p("-1mStart"), day(2024, 2, 1));
        let end_of = |d: DateTime<Utc>| d + Duration::days(1) - Duration::microseconds(1);
        assert_eq!(p("-1mEnd"), end_of(day(2024, 2, 29)));
        assert_eq!(p("-1dStart"), day(2024, 3, 14));
        assert_eq!(p("-1dEnd"), end_of(day(2024, 3, 14)));
        assert_eq!(p("-1yEnd"), end_of(day(2023, 12, 31)));
        assert_eq!(p("-1yStart"), day(2023, 1, 1));
        assert_eq!(
            p("-3h"),
            Utc.with_ymd_and_hms(2024, 3, 15, 10, 0, 0)
                .single()
                .expect("hour")
        );
        assert_eq!(p("2024-01-02"), day(2024, 1, 2));
        // A quarter is 13 weeks; minutes and seconds are not rounded.
        assert_eq!(p("-1q"), day(2023, 12, 15));
        assert_eq!(p("-30M"), now() - Duration::minutes(30));
        assert_eq!(p("-90s"), now() - Duration::seconds(90));
        // Start and End mean nothing to them, as in PostHog.
        assert_eq!(p("-30MEnd"), now() - Duration::minutes(30));
        assert_eq!(p("-1qEnd"), day(2023, 12, 15));
        assert_eq!(p("-1wEnd"), day(2024, 3, 8));
    }

    /// PostHog's `QueryDateRange`: by days or longer, `date_to` is the end
    /// of its day (timed, relative or now) and `date_from` the start of
    /// its day; by hours, an absolute time is itself and a relative
    /// `date_to` (or now) the end of its hour.
    #[test]
    fn dates_cover_whole_days_but_by_hours() {
        let at = |h: u32, m: u32, s: u32| {
            Utc.with_ymd_and_hms(2024, 3, 15, h, m, s)
                .single()
                .expect("time")
                .timestamp_micros()
        };
        let end_of_day = at(23, 59, 59) + 999_999;
        let to = |date_to: Option<&str>, interval: Interval| {
            let mut body = serde_json::json!({"date_from": "2024-03-01"});
            if let Some(d) = date_to {
                body["date_to"] = serde_json::json!(d);
            }
            let p = Params::new(Vec::new(), Some(body)).expect("params");
            range(&p, now(), "-7d", interval).expect("range").to
        };
        for interval in [Interval::Day, Interval::Week, Interval::Month] {
            for d in [
                None,
                Some("2024-03-15"),
                Some("2024-03-15T00:00:00Z"),
                Some("2024-03-15 10:30:00"),
                Some("-0d"),
                Some("-2h"),
            ] {
                assert_eq!(to(d, interval), end_of_day, "{d:?} by {interval:?}");
            }
        }
        assert_eq!(
            to(Some("2024-03-15T10:30:00Z"), Interval::Hour),
            at(10, 30, 0)
        );
        assert_eq!(to(Some("2024-03-15"), Interval::Hour), end_of_day);
        assert_eq!(to(Some("-2h"), Interval::Hour), at(11, 59, 59) + 999_999);
        assert_eq!(to(None, Interval::Hour), at(13, 59, 59) + 999_999);
        // date_from: the start of its day, but by hours.
        let from = |date_from: &str, interval: Interval| {
            let body = serde_json::json!({"date_from": date_from});
            let p = Params::new(Vec::new(), Some(body)).expect("params");
            range(&p, now(), "-7d", interval).expect("range").from
        };
        assert_eq!(
            from("2024-03-15T10:30:00Z", Interval::Day),
            Some(at(0, 0, 0))
        );
        assert_eq!(from("-2h", Interval::Week), Some(at(0, 0, 0)));
        assert_eq!(
            from("2024-03-15T10:30:00Z", Interval::Hour),
            Some(at(10, 30, 0))
        );
        assert_eq!(from("-2h", Interval::Hour), Some(at(11, 0, 0)));
        // explicit_date: no rounding.
        let p = Params::new(
            Vec::new(),
            Some(serde_json::json!({"date_from": "2024-03-15T10:30:00Z",
                "date_to": "2024-03-15T12:00:00Z", "explicit_date": true})),
        )
        .expect("params");
        let r = range(&p, now(), "-7d", Interval::Day).expect("range");
        assert_eq!((r.from, r.to), (Some(at(10, 30, 0)), at(12, 0, 0)));
    }

    /// Boolean parameters: `true`/`false` in any case or as JSON; anything
    /// else is a 400 naming the parameter, never read as false.
    #[test]
    fn flags_are_true_false_or_refused() {
        let p = |v: serde_json::Value| {
            Params::new(Vec::new(), Some(serde_json::json!({"f": v}))).expect("params")
        };
        assert_eq!(
            p(serde_json::json!("True")).flag("f").ok(),
            Some(Some(true))
        );
        assert_eq!(
            p(serde_json::json!(false)).flag("f").ok(),
            Some(Some(false))
        );
        assert_eq!(p(serde_json::json!(null)).flag("f").ok(), Some(None));
        for bad in [serde_json::json!("yes"), serde_json::json!(1)] {
            let e = p(bad).flag("f").expect_err("refused");
            assert!(e.to_string().contains("f must be true or false"), "{e}");
        }
        // filter_test_accounts=True is refused, not ignored.
        let q = Params::new(vec![("filter_test_accounts".into(), "True".into())], None)
            .expect("params");
        assert!(entities(&q).is_err());
    }

    /// PostHog's `relative_date_parse` without truncation, as
    /// `EventsQuery` reads `after` and `before`.
    #[test]
    fn instants_follow_posthog() {
        let now = Utc
            .with_ymd_and_hms(2024, 3, 31, 15, 20, 30)
            .single()
            .expect("now");
        let at = |s: &str| {
            parse_instant(s, now, "after")
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        };
        assert_eq!(
            at("-24h").as_deref().ok(),
            Some("2024-03-30T15:20:30.000000Z")
        );
        assert_eq!(
            at("-7d").as_deref().ok(),
            Some("2024-03-24T15:20:30.000000Z")
        );
        assert_eq!(
            at("-1dStart").as_deref().ok(),
            Some("2024-03-30T00:00:00.000000Z")
        );
        assert_eq!(
            at("-1dEnd").as_deref().ok(),
            Some("2024-03-30T23:59:59.999999Z")
        );
        assert_eq!(
            at("dStart").as_deref().ok(),
            Some("2024-03-31T00:00:00.000000Z")
        );
        assert_eq!(
            at("-1hStart").as_deref().ok(),
            Some("2024-03-31T14:00:00.000000Z")
        );
        // A month before the 31st: February's last day, the time kept.
        assert_eq!(
            at("-1m").as_deref().ok(),
            Some("2024-02-29T15:20:30.000000Z")
        );
        assert_eq!(
            at("-1mStart").as_deref().ok(),
            Some("2024-02-01T15:20:30.000000Z")
        );
        assert_eq!(
            at("-1yStart").as_deref().ok(),
            Some("2023-01-01T15:20:30.000000Z")
        );
        assert_eq!(
            at("-1wStart").as_deref().ok(),
            Some("2024-03-24T15:20:30.000000Z")
        );
        assert_eq!(
            at("2024-01-05").as_deref().ok(),
            Some("2024-01-05T00:00:00.000000Z")
        );
        for bad in [
            "-5x",
            "-1dStartX",
            "é",
            "-ééd",
            "-99999999d",
            "-99999y",
            "",
            "-",
        ] {
            assert!(at(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_dates_are_refused_not_panicked_on() {
        for s in [
            "üüW",
            "-ü",
            "7ü",
            "-1ü",
            "-1dü",
            "",
            "-",
            "-99999999d",
            "-1dStartX",
            "d\u{0}",
        ] {
            let got = parse_date(s, now(), "date_from");
            assert!(
                matches!(got, Err(AppError::InvalidQuery(_))),
                "{s:?} gave {got:?}"
            );
        }
    }
}
