//! A trend compared with its previous period (`compareFilter.compare`):
//! the same series over the range before, as PostHog's
//! `get_compare_period_dates` places it: as long as the current range,
//! ending where it starts, its bounds at the current ones' times of day
//! (by hours: at their minutes); and for days from `-7d`, `-14d`, … (a
//! multiple of 7 days, with no relative `date_to`) a day later, as
//! PostHog corrects the extra day those ranges hold.
//!
//! With `compareFilter.compare_to` (`-1w`, `-1m`, `-1y`, …) the range
//! at that offset instead ([`compare_to_range`]), as PostHog's
//! `QueryCompareToDateRange`: it starts that much before the current
//! start and is as long as the current range.

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

/// Longest offset of `compare_to`, in its unit (as the date parameters').
const MAX_OFFSET: i64 = 100_000;

/// `compareFilter.compare_to`'s range of the current one (`from`, `to`:
/// the first and the last instant counted, µs; `from` as PostHog's
/// `QueryDateRange.date_from`, at the start of its day unless by hours or
/// explicit), as PostHog's `QueryCompareToDateRange`: it starts at
/// `compare_to` read as a date relative to `from` (`-1w` a week before,
/// `-1m` a calendar month before, the day kept or the month's last;
/// `-1y` twelve months; `-1q` 13 weeks; `-2h`, `-3d`, `-30M`, `-10s`
/// exactly that; the leading `-` optional) or at the absolute date it
/// names, and is as long as the current range (`to - from`). The reason
/// as text when `compare_to` is none of those or the range leaves the
/// years 1 to 9999.
pub(super) fn compare_to_range(
    (from, to): (i64, i64),
    compare_to: &str,
) -> Result<(i64, i64), String> {
    let f = DateTime::<Utc>::from_timestamp_micros(from).ok_or("the range is out of bounds")?;
    let s = compare_to.trim();
    let start = match super::filter::parse_absolute(s) {
        Some(d) => Some(d),
        None => {
            let body = s.strip_prefix('-').unwrap_or(s);
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            let (number, unit) = body.split_at(digits);
            let n: i64 = match number.parse() {
                Ok(n) if n <= MAX_OFFSET => n,
                Ok(_) => return Err(format!("{s:?} is too far away")),
                Err(_) => {
                    return Err(format!(
                        "{s:?} is not an offset like -1d, -1w, -1m, -1q, -1y or -24h, nor a date"
                    ))
                }
            };
            if !matches!(unit, "h" | "d" | "w" | "q" | "M" | "s" | "m" | "y") {
                return Err(format!(
                    "{s:?} is not an offset like -1d, -1w, -1m, -1q, -1y or -24h, nor a date"
                ));
            }
            // (A calendar month, or twelve: the same day, or the month's
            // last when it has fewer, as dateutil's relativedelta.)
            super::filter::shift_back(f, n, unit)
        }
    };
    let start = start.filter(|d| (1..=9999).contains(&d.year()));
    let end = start.and_then(|d| d.checked_add_signed(Duration::microseconds(to - from)));
    match (start, end) {
        (Some(a), Some(b)) if b.year() <= 9999 => Ok((a.timestamp_micros(), b.timestamp_micros())),
        _ => Err(format!("{s:?} puts the period outside the years 1 to 9999")),
    }
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

    fn to(from: &str, to: &str, compare_to: &str) -> Result<(String, String), String> {
        compare_to_range((us(from), us(to)), compare_to).map(|(a, b)| (iso(a), iso(b)))
    }

    /// PostHog's `test_query_compare_to_date_range.py`, case by case
    /// (now 2021-08-25T00:00, `-48h` by day: the current range is
    /// 08-23T00:00 to the end of 08-25).
    #[test]
    fn offsets_are_posthogs() {
        let (f, t) = ("2021-08-23T00:00:00Z", "2021-08-25T23:59:59.999999Z");
        let ok = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
        assert_eq!(
            to(f, t, "-0d"),
            ok("2021-08-23T00:00:00.000000Z", "2021-08-25T23:59:59.999999Z")
        );
        assert_eq!(
            to(f, t, "-1m"),
            ok("2021-07-23T00:00:00.000000Z", "2021-07-25T23:59:59.999999Z")
        );
        assert_eq!(
            to(f, t, "-1y"),
            ok("2020-08-23T00:00:00.000000Z", "2020-08-25T23:59:59.999999Z")
        );
        // test_feb: now 2021-03-31; a month before 03-29 is February's
        // last day, and the period as long as the current one.
        assert_eq!(
            to("2021-03-29T00:00:00Z", "2021-03-31T23:59:59.999999Z", "-1m"),
            ok("2021-02-28T00:00:00.000000Z", "2021-03-02T23:59:59.999999Z")
        );
        // The other units, and the sign optional.
        assert_eq!(
            to(f, t, "-1w"),
            ok("2021-08-16T00:00:00.000000Z", "2021-08-18T23:59:59.999999Z")
        );
        assert_eq!(to(f, t, "1w"), to(f, t, "-1w"));
        assert_eq!(
            to(f, t, "-1q"),
            ok("2021-05-24T00:00:00.000000Z", "2021-05-26T23:59:59.999999Z")
        );
        assert_eq!(
            to(f, t, "-3h"),
            ok("2021-08-22T21:00:00.000000Z", "2021-08-25T20:59:59.999999Z")
        );
        assert_eq!(
            to(f, t, "-30M"),
            ok("2021-08-22T23:30:00.000000Z", "2021-08-25T23:29:59.999999Z")
        );
        assert_eq!(
            to(f, t, "-10s"),
            ok("2021-08-22T23:59:50.000000Z", "2021-08-25T23:59:49.999999Z")
        );
        // A leap day a year later: February's last.
        assert_eq!(
            to("2024-02-29T00:00:00Z", "2024-02-29T23:59:59.999999Z", "-1y"),
            ok("2023-02-28T00:00:00.000000Z", "2023-02-28T23:59:59.999999Z")
        );
        // An absolute date: the period starts there.
        assert_eq!(
            to(f, t, "2021-01-01"),
            ok("2021-01-01T00:00:00.000000Z", "2021-01-03T23:59:59.999999Z")
        );
        // Refused: no number, a position, another unit or sign, past the
        // years or the offset bound.
        for bad in [
            "-d", "-1dStart", "-1x", "+1d", "", "-1 d", "-1W", "-100001d", "-9999y", "week",
        ] {
            assert!(to(f, t, bad).is_err(), "{bad:?}");
        }
        assert!(to("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z", "-0d").is_ok());
        assert!(to("0001-01-02T00:00:00Z", "0001-01-03T00:00:00Z", "-2d").is_err());
    }
}
