//! A trend compared with its previous period (`compareFilter.compare`):
//! the same series over the range before, as PostHog's
//! `get_compare_period_dates` places it: as long as the current range,
//! ending where it starts, its bounds at the current ones' times of day
//! (by hours: at their minutes); and for days from `-7d`, `-14d`, … (a
//! multiple of 7 days, with no relative `date_to`) a day later, as
//! PostHog corrects the extra day those ranges hold.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use super::filter::Interval;
use super::DAY;

/// `compareFilter`'s previous range of the current one (`from`, `to`:
/// the first and the last instant counted, µs), `None` past the dates
/// chrono can hold.
pub(super) fn previous_range(
    (from, to): (i64, i64),
    interval: Interval,
    date_from: Option<&str>,
    date_to: Option<&str>,
) -> Option<(i64, i64)> {
    let (f, t) = (
        DateTime::<Utc>::from_timestamp_micros(from)?,
        DateTime::<Utc>::from_timestamp_micros(to)?,
    );
    let diff = t - f;
    let start = f.checked_sub_signed(diff)?;
    let (start, end) = if interval == Interval::Hour {
        let start = start
            .with_hour(f.hour())?
            .with_minute(f.minute())?
            .with_second(f.second())?
            .with_nanosecond(f.nanosecond())?;
        let end = start
            .checked_add_signed(diff)?
            .with_minute(t.minute())?
            .with_second(t.second())?
            .with_nanosecond(t.nanosecond())?;
        (start, end)
    } else {
        let mut start = start.date_naive().and_time(f.time()).and_utc();
        let weeks_of_days = interval == Interval::Day
            && matches!(relative_delta(date_from), Some((d, 'd')) if d > 0 && d % 7 == 0)
            && relative_delta(date_to).is_none();
        if weeks_of_days {
            start = start.checked_add_signed(Duration::microseconds(DAY))?;
        }
        let end = start.checked_add_signed(diff)?;
        let end = end.date_naive().and_time(t.time()).and_utc();
        (start, end)
    };
    // (Before the year 1 there are no dates to show.)
    if start.year() < 1 {
        return None;
    }
    Some((start.timestamp_micros(), end.timestamp_micros()))
}

/// PostHog's delta of a relative date (`relative_date_parse_with_delta_mapping`:
/// `-?(number)?(unit)(Start|End)?`): the number and the unit, when it
/// has a number (`-7d` → 7 days; `-7dStart` too; `d`, `mStart` have
/// none, and absolute dates neither).
fn relative_delta(s: Option<&str>) -> Option<(i64, char)> {
    let s = s?.trim();
    let s = s.strip_prefix('-').unwrap_or(s);
    let s = s
        .strip_suffix("Start")
        .or_else(|| s.strip_suffix("End"))
        .unwrap_or(s);
    let unit = s.chars().last().filter(char::is_ascii_lowercase)?;
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
            .timestamp_micros()
    }

    fn iso(t: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(t)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    fn prev(from: &str, to: &str, i: Interval, df: &str, dt: Option<&str>) -> (String, String) {
        let (a, b) = previous_range((us(from), us(to)), i, Some(df), dt).expect("range");
        (iso(a), iso(b))
    }

    /// PostHog's `get_compare_period_dates`, case by case.
    #[test]
    fn previous_periods_are_posthogs() {
        // -7d by day: 8 days (today's too); the previous starts a day
        // later than 8 days before, and is as long.
        assert_eq!(
            prev(
                "2024-01-08T00:00:00Z",
                "2024-01-15T23:59:59.999999Z",
                Interval::Day,
                "-7d",
                None
            ),
            (
                "2024-01-01T00:00:00.000000Z".into(),
                "2024-01-08T23:59:59.999999Z".into()
            )
        );
        // -10d: no correction.
        assert_eq!(
            prev(
                "2024-01-05T00:00:00Z",
                "2024-01-15T23:59:59.999999Z",
                Interval::Day,
                "-10d",
                None
            ),
            (
                "2023-12-25T00:00:00.000000Z".into(),
                "2024-01-04T23:59:59.999999Z".into()
            )
        );
        // Absolute days: as long, ending the day it starts.
        assert_eq!(
            prev(
                "2024-01-10T00:00:00Z",
                "2024-01-12T23:59:59.999999Z",
                Interval::Day,
                "2024-01-10",
                Some("2024-01-12")
            ),
            (
                "2024-01-07T00:00:00.000000Z".into(),
                "2024-01-09T23:59:59.999999Z".into()
            )
        );
        // A relative date_to: no correction.
        assert_eq!(
            prev(
                "2024-01-08T00:00:00Z",
                "2024-01-14T23:59:59.999999Z",
                Interval::Day,
                "-7d",
                Some("-1d")
            ),
            (
                "2024-01-01T00:00:00.000000Z".into(),
                "2024-01-07T23:59:59.999999Z".into()
            )
        );
        // PostHog's own case: -48h by day, now 2021-08-25T00:00.
        assert_eq!(
            prev(
                "2021-08-23T00:00:00Z",
                "2021-08-25T23:59:59.999999Z",
                Interval::Day,
                "-48h",
                None
            ),
            (
                "2021-08-20T00:00:00.000000Z".into(),
                "2021-08-22T23:59:59.999999Z".into()
            )
        );
        // -7dStart is seven days too; -14d with a date_to of no number
        // (`d`: today) also corrected.
        assert_eq!(
            prev(
                "2024-01-08T00:00:00Z",
                "2024-01-15T23:59:59.999999Z",
                Interval::Day,
                "-7dStart",
                None
            ),
            (
                "2024-01-01T00:00:00.000000Z".into(),
                "2024-01-08T23:59:59.999999Z".into()
            )
        );
        assert_eq!(
            prev(
                "2024-01-01T00:00:00Z",
                "2024-01-15T23:59:59.999999Z",
                Interval::Day,
                "-14d",
                Some("d")
            ),
            (
                "2023-12-18T00:00:00.000000Z".into(),
                "2024-01-01T23:59:59.999999Z".into()
            )
        );
        // Weeks: no correction (by days only).
        assert_eq!(
            prev(
                "2024-01-08T00:00:00Z",
                "2024-01-15T23:59:59.999999Z",
                Interval::Week,
                "-7d",
                None
            ),
            (
                "2023-12-31T00:00:00.000000Z".into(),
                "2024-01-07T23:59:59.999999Z".into()
            )
        );
        // Before the year 1: none.
        assert_eq!(
            previous_range(
                (us("0001-01-02T00:00:00Z"), us("0001-01-10T23:59:59Z")),
                Interval::Day,
                Some("0001-01-02"),
                None
            ),
            None
        );
        // Hours: a day from 10:00 to 10:59; the previous day at the
        // same hours.
        assert_eq!(
            prev(
                "2024-01-14T10:00:00Z",
                "2024-01-15T10:59:59.999999Z",
                Interval::Hour,
                "-24h",
                None
            ),
            (
                "2024-01-13T10:00:00.000000Z".into(),
                "2024-01-14T10:59:59.999999Z".into()
            )
        );
    }
}
