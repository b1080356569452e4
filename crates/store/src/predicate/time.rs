//! The times of the date operators (`is_date_exact`, `is_date_before`,
//! `is_date_after`): a filter's value, absolute or relative to now as
//! PostHog's `relative_date_parse` reads it, and a row's value read as a
//! time as HogQL's `toDateTime` reads text.

use chrono::{DateTime, Datelike, Duration, Months, TimeZone, Timelike, Utc};
use serde_json::Value;

/// The instant (µs since the epoch, UTC) a date filter's value names:
/// relative to `now` (`-7d`, `-1mStart`, `-2h`, `-30M`), absolute (a
/// day, an ISO 8601 / RFC 3339 time, a time without an offset in UTC),
/// or seconds since the epoch (a number, or numeric text: ClickHouse's
/// best-effort parse reads them so). `Err` says why it names none.
pub(super) fn filter_time(v: &Value, now: DateTime<Utc>) -> Result<i64, String> {
    let s = match v {
        Value::String(s) => s.trim(),
        Value::Number(_) => {
            return row_time(v).ok_or_else(|| format!("{v} is not a time in seconds"))
        }
        v => {
            return Err(format!(
                "a date operator needs a date as text (\"2024-05-01\", \"-7d\"), got {v}"
            ))
        }
    };
    if let Some(t) = relative(s, now)? {
        return Ok(t.timestamp_micros());
    }
    if let Some(t) = absolute(s) {
        return Ok(t);
    }
    row_time(&Value::String(s.to_string())).ok_or_else(|| {
        format!(
            "{s:?} is not a date: expected a day (2024-05-01), an ISO 8601 time, or a relative date such as -7d, -2h, -1mStart"
        )
    })
}

/// A time as PostHog's `parse_timestamp` reads a parameter (the events
/// list's `before` and `after`): an absolute time ([`filter_time`]'s
/// forms, UTC without an offset) or a date relative to `now`, not
/// rounded (µs since the epoch).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<i64, String> {
    filter_time(&Value::String(s.to_string()), now)
}

/// A relative date of a filter's value (`-7d`) as the absolute time it
/// names at `now` (RFC 3339, µs, UTC); `None` when `v` is no relative
/// date (or none that reads).
pub(super) fn resolved(v: &Value, now: DateTime<Utc>) -> Option<Value> {
    let t = relative(v.as_str()?.trim(), now).ok()??;
    Some(Value::String(
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ))
}

/// A row's value as a time (µs since the epoch, UTC), as HogQL's
/// `toDateTime(toString(…))` reads it: text in the forms arrow's cast
/// reads (a day, an RFC 3339 time, with a space or a `T`, with or without
/// an offset: UTC), a number (or numeric text) as seconds since the epoch;
/// `None` for anything else (no time: the filter does not hold).
pub(super) fn row_time(v: &Value) -> Option<i64> {
    let seconds = |x: f64| {
        let us = (x * 1e6).round();
        // i64::MAX as f64 rounds up: strictly below it.
        (us.is_finite() && us.abs() < i64::MAX as f64).then_some(us as i64)
    };
    match v {
        Value::Number(n) => n.as_f64().and_then(seconds),
        Value::String(s) => absolute(s.trim()).or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|_| !s.trim().is_empty())
                .and_then(seconds)
        }),
        _ => None,
    }
}

/// An absolute time in the forms arrow's cast reads (µs, UTC).
fn absolute(s: &str) -> Option<i64> {
    arrow::compute::kernels::cast_utils::string_to_datetime(&Utc, s)
        .ok()
        .map(|d| d.timestamp_micros())
}

/// A relative date as PostHog's `relative_date_parse` reads one, without
/// truncation: `-?N` then one of `h` (hours), `d` (days), `w` (weeks), `m`
/// (months), `q` (13 weeks), `y` (years), `M` (minutes), `s` (seconds),
/// then `Start` or `End` (`h`: the hour's start or end, `d`: the day's,
/// `m`: the month's first or last day, `y`: January 1st (`Start`) or the
/// 31st of the month, as far as it has one (`End`), at the same time of
/// day). The upper-case `H`, `D`, `W`, `Q`, `Y` are now, as PostHog's
/// pattern takes them and its mapping gives them no period. `Ok(None)`:
/// not a relative date (then the text may be an absolute one).
fn relative(s: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = body.split_at(digits);
    let mut chars = rest.chars();
    let (Some(kind), false) = (chars.next(), number.is_empty()) else {
        return Ok(None);
    };
    if !"hdwmqysHDWMQY".contains(kind) {
        return Ok(None);
    }
    let position = chars.as_str();
    if !matches!(position, "" | "Start" | "End") {
        return Err(format!(
            "{s:?} is not a relative date: after the unit only Start or End may follow"
        ));
    }
    let far = || format!("{s:?} is too far away");
    let n: i64 = match number.parse() {
        Ok(n) if n <= 1_000_000 => n,
        _ => return Err(far()),
    };
    let months = |d: DateTime<Utc>, m: i64| {
        u32::try_from(m)
            .ok()
            .and_then(|m| d.checked_sub_months(Months::new(m)))
            .ok_or_else(far)
    };
    let minus = |d: DateTime<Utc>, by: Option<Duration>| {
        by.and_then(|by| d.checked_sub_signed(by)).ok_or_else(far)
    };
    let at = |d: DateTime<Utc>, h: u32, m: u32, sec: u32, us: u32| {
        Utc.with_ymd_and_hms(d.year(), d.month(), d.day(), h, m, sec)
            .single()
            .and_then(|d| d.with_nanosecond(us * 1000))
            .ok_or_else(far)
    };
    // The last day of `d`'s month when it has no `day`th.
    let day_at_most = |d: DateTime<Utc>, day: u32| {
        (1..=day)
            .rev()
            .find_map(|day| d.with_day(day))
            .ok_or_else(far)
    };
    let end = position == "End";
    let start = position == "Start";
    let out = match kind {
        'h' => {
            let d = minus(now, Duration::try_hours(n))?;
            match (start, end) {
                (true, _) => at(d, d.hour(), 0, 0, 0)?,
                (_, true) => at(d, d.hour(), 59, 59, 999_999)?,
                _ => d,
            }
        }
        'd' => {
            let d = minus(now, Duration::try_days(n))?;
            match (start, end) {
                (true, _) => at(d, 0, 0, 0, 0)?,
                (_, true) => at(d, 23, 59, 59, 999_999)?,
                _ => d,
            }
        }
        'w' => minus(now, Duration::try_weeks(n))?,
        'q' => minus(now, n.checked_mul(13).and_then(Duration::try_weeks))?,
        'M' => minus(now, Duration::try_minutes(n))?,
        's' => minus(now, Duration::try_seconds(n))?,
        'm' => {
            let d = months(now, n)?;
            match (start, end) {
                (true, _) => day_at_most(d, 1)?,
                (_, true) => day_at_most(d, 31)?,
                _ => d,
            }
        }
        'y' => {
            let d = months(now, n.checked_mul(12).ok_or_else(far)?)?;
            match (start, end) {
                (true, _) => d
                    .with_day(1)
                    .and_then(|d| d.with_month(1))
                    .ok_or_else(far)?,
                (_, true) => day_at_most(d, 31)?,
                _ => d,
            }
        }
        // PostHog's pattern takes the upper-case letters; its mapping
        // gives them no period.
        _ => now,
    };
    // Within the years every reader of a time takes (as the analytics
    // dates): a resolved value must read again.
    if !(1..=9999).contains(&out.year()) {
        return Err(far());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rel(s: &str, now: &str) -> String {
        relative(s, t(now))
            .unwrap()
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// As PostHog's `relative_date_parse` (`relativedelta`: the month and
    /// year first, then the day clamped to the month, then the time).
    #[test]
    fn relative_dates_as_posthog_reads_them() {
        let now = "2026-03-31T10:20:30.5Z";
        for (s, want) in [
            ("-7d", "2026-03-24T10:20:30.500000Z"),
            ("7d", "2026-03-24T10:20:30.500000Z"),
            ("-1dStart", "2026-03-30T00:00:00.000000Z"),
            ("-1dEnd", "2026-03-30T23:59:59.999999Z"),
            ("-2h", "2026-03-31T08:20:30.500000Z"),
            ("-2hStart", "2026-03-31T08:00:00.000000Z"),
            ("-2hEnd", "2026-03-31T08:59:59.999999Z"),
            ("-1w", "2026-03-24T10:20:30.500000Z"),
            ("-1m", "2026-02-28T10:20:30.500000Z"),
            ("-1mStart", "2026-02-01T10:20:30.500000Z"),
            ("-1mEnd", "2026-02-28T10:20:30.500000Z"),
            ("-1q", "2025-12-30T10:20:30.500000Z"),
            ("-1y", "2025-03-31T10:20:30.500000Z"),
            ("-1yStart", "2025-01-01T10:20:30.500000Z"),
            ("-30M", "2026-03-31T09:50:30.500000Z"),
            ("-30s", "2026-03-31T10:20:00.500000Z"),
            ("-3D", "2026-03-31T10:20:30.500000Z"),
        ] {
            assert_eq!(rel(s, now), want, "{s}");
        }
        assert_eq!(
            rel("-1yEnd", "2026-06-06T00:00:00Z"),
            "2025-06-30T00:00:00.000000Z"
        );
        for s in ["2024-05-01", "abc", "d", "-d", "", "-7x"] {
            assert_eq!(relative(s, t(now)), Ok(None), "{s}");
        }
        for s in ["-7dStartx", "-7days", "-99999999999d", "-9999999y"] {
            assert!(relative(s, t(now)).is_err(), "{s}");
        }
    }

    #[test]
    fn a_filters_date_is_relative_or_absolute() {
        let now = t("2026-03-31T10:20:30Z");
        let us = |s: &str| t(s).timestamp_micros();
        assert_eq!(
            filter_time(&json!("-1dStart"), now),
            Ok(us("2026-03-30T00:00:00Z"))
        );
        assert_eq!(
            filter_time(&json!("2024-05-01"), now),
            Ok(us("2024-05-01T00:00:00Z"))
        );
        assert_eq!(
            filter_time(&json!(" 2024-05-01 10:00:00 "), now),
            Ok(us("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            filter_time(&json!("2024-05-01T10:00:00+02:00"), now),
            Ok(us("2024-05-01T08:00:00Z"))
        );
        // Seconds since the epoch, as ClickHouse's best-effort parse.
        assert_eq!(
            filter_time(&json!(1714557600), now),
            Ok(us("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            filter_time(&json!("1714557600"), now),
            Ok(us("2024-05-01T10:00:00Z"))
        );
        // Past the years 1 to 9999 a relative date names no time (a
        // resolved one must read again).
        for s in ["-800000d", "-1000000w", "-100000y", "-30000m"] {
            assert!(filter_time(&json!(s), now).is_err(), "{s}");
        }
        for v in [
            json!("soon"),
            json!(true),
            json!(null),
            json!(["-1d"]),
            json!(""),
        ] {
            assert!(filter_time(&v, now).is_err(), "{v}");
        }
    }

    #[test]
    fn a_rows_value_is_read_as_todatetime_reads_it() {
        let us = |s: &str| Some(t(s).timestamp_micros());
        assert_eq!(row_time(&json!("2024-05-01")), us("2024-05-01T00:00:00Z"));
        assert_eq!(
            row_time(&json!("2024-05-01T10:00:00.25Z")),
            us("2024-05-01T10:00:00.25Z")
        );
        assert_eq!(
            row_time(&json!("2024-05-01 10:00:00")),
            us("2024-05-01T10:00:00Z")
        );
        assert_eq!(row_time(&json!(1714557600)), us("2024-05-01T10:00:00Z"));
        assert_eq!(row_time(&json!("1714557600")), us("2024-05-01T10:00:00Z"));
        assert_eq!(row_time(&json!(1714557600.5)), us("2024-05-01T10:00:00.5Z"));
        for v in [
            json!("yesterday"),
            json!(""),
            json!(true),
            json!(null),
            json!({"a": 1}),
            json!(1e300),
        ] {
            assert_eq!(row_time(&v), None, "{v}");
        }
    }
}
