//! PostHog's version operators (`semver_eq` … `semver_wildcard`), as its
//! HogQL compares versions (`posthog/hogql/property.py`).
//!
//! A version is read as PostHog's `sortableSemver` reads text: the
//! integers of the first run of dot-separated numbers in it
//! (`\d+(\.\d+)+`: `v1.2.3-beta` is `[1, 2, 3]`), compared as lists, so
//! `1.2 < 1.2.0 < 1.10`. Text without such a run, an unset value and
//! JSON null are `[0]` (ClickHouse's `assumeNotNull` of NULL is the empty
//! text), which is below every version: an unset version passes
//! `semver_lt`. A number too large for 64 bits reads as 0
//! (`toInt64OrZero`).
//!
//! A comparison (`semver_eq` … `semver_lte`) reads its value the same
//! way, whatever the text (`"v1.2"`, `"7"`: version 0). `semver_tilde`,
//! `semver_caret` and `semver_wildcard` are ranges, lower bound included,
//! upper bound excluded, whose bounds PostHog writes as text from the
//! value's parts (`parse_semver`: the part before the first `-`, one to
//! three integers) and then reads as versions:
//!
//! - `~1.2.3` is `[1.2.3, 1.3.0)` (at least major.minor);
//! - `^1.2.3` is `[1.2.3, 2.0.0)`, `^0.2.3` `[0.2.3, 0.3.0)`, `^0.0.3`
//!   `[0.0.3, 0.0.4)`;
//! - `1.*` is `[1.0.0, 2.0.0)`, `1.2.*` `[1.2.0, 1.3.0)`, `1.2.3.*`
//!   `[1.2.3.0, 1.2.4.0)`: as in PostHog, `1.2.3` itself is below it and
//!   `1.2.4` within it (a shorter list sorts before its extensions).

use std::cmp::Ordering;

use super::filter::PropertyOperator;

/// A version as [`sortable`] reads it.
pub(super) type Version = Vec<i64>;

/// PostHog's `sortableSemver`: the integers of the first run of
/// dot-separated numbers (two or more) in `text`, else `[0]`.
pub(super) fn sortable(text: &str) -> Version {
    let b = text.as_bytes();
    let digits_from = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = 0;
    while i < b.len() {
        let n = digits_from(i);
        if n == 0 {
            i += 1;
            continue;
        }
        // A run of digits, then (`.` digits)+.
        let mut parts = vec![&text[i..i + n]];
        let mut j = i + n;
        while j + 1 < b.len() && b[j] == b'.' {
            let m = digits_from(j + 1);
            if m == 0 {
                break;
            }
            parts.push(&text[j + 1..j + 1 + m]);
            j += 1 + m;
        }
        if parts.len() >= 2 {
            return parts
                .iter()
                .map(|p| p.parse::<i64>().unwrap_or(0))
                .collect();
        }
        i += n;
    }
    vec![0]
}

/// PostHog's `parse_semver`: major, minor and patch of `value` (before
/// its first `-`), as written (missing ones `"0"`), each an integer.
/// Python reads more as integers (any length, `_` separators, other
/// scripts' digits); those are refused here.
fn parse(value: &str) -> Result<[&str; 3], String> {
    let base = value.split('-').next().unwrap_or_default();
    let mut parts = base.split('.');
    let not = || format!("{value:?} is not a version (major.minor.patch)");
    let major = parts.next().filter(|p| !p.is_empty()).ok_or_else(not)?;
    let minor = parts.next().unwrap_or("0");
    let patch = parts.next().unwrap_or("0");
    for p in [major, minor, patch] {
        int(p).map_err(|_| not())?;
    }
    Ok([major, minor, patch])
}

/// A part of a version as Python's `int()` reads it (spaces around and a
/// sign allowed), within 64 bits.
fn int(p: &str) -> Result<i64, std::num::ParseIntError> {
    p.trim().parse::<i64>()
}

/// `p + 1` as text (PostHog's `str(int(p) + 1)`).
fn next(p: &str, value: &str) -> Result<String, String> {
    int(p)
        .ok()
        .and_then(|n| n.checked_add(1))
        .map(|n| n.to_string())
        .ok_or_else(|| format!("{value:?}: a version part is too large"))
}

/// The `[lower, upper)` of a range operator's `value`: PostHog's bounds,
/// written as text from the value's own parts, then read as versions.
fn range(op: PropertyOperator, value: &str) -> Result<[Version; 2], String> {
    use PropertyOperator::*;
    let [lo, hi] = match op {
        SemverTilde => {
            let base = value.split('-').next().unwrap_or_default();
            if base.split('.').count() < 2 {
                return Err(format!(
                    "{value:?}: semver_tilde needs at least major.minor"
                ));
            }
            let [major, minor, patch] = parse(value)?;
            [
                format!("{major}.{minor}.{patch}"),
                format!("{major}.{}.0", next(minor, value)?),
            ]
        }
        SemverCaret => {
            let [major, minor, patch] = parse(value)?;
            let upper = if int(major).unwrap_or(0) > 0 {
                format!("{}.0.0", next(major, value)?)
            } else if int(minor).unwrap_or(0) > 0 {
                format!("0.{}.0", next(minor, value)?)
            } else {
                format!("0.0.{}", next(patch, value)?)
            };
            [format!("{major}.{minor}.{patch}"), upper]
        }
        SemverWildcard => {
            let not = || format!("{value:?} is not a version pattern (1.2.*)");
            let trimmed = value.trim_end_matches(['.', '*']);
            if trimmed.is_empty() {
                return Err(not());
            }
            let base = trimmed.split('-').next().unwrap_or_default();
            // As PostHog: the first three parts only.
            let parts: Vec<&str> = base.split('.').take(3).collect();
            if parts.iter().any(|p| int(p).is_err()) {
                return Err(not());
            }
            match parts.as_slice() {
                [major] => [
                    format!("{major}.0.0"),
                    format!("{}.0.0", next(major, value)?),
                ],
                [major, minor] => [
                    format!("{major}.{minor}.0"),
                    format!("{major}.{}.0", next(minor, value)?),
                ],
                [major, minor, patch] => [
                    format!("{major}.{minor}.{patch}.0"),
                    format!("{major}.{minor}.{}.0", next(patch, value)?),
                ],
                _ => return Err(not()),
            }
        }
        _ => return Err(format!("{} is not a version range", op.as_str())),
    };
    Ok([sortable(&lo), sortable(&hi)])
}

/// Whether `op` is a version operator.
pub(super) fn is_version(op: PropertyOperator) -> bool {
    use PropertyOperator::*;
    matches!(
        op,
        SemverEq
            | SemverNeq
            | SemverGt
            | SemverGte
            | SemverLt
            | SemverLte
            | SemverTilde
            | SemverCaret
            | SemverWildcard
    )
}

/// What a version operator compares with, for each of the filter's
/// values (a list means any of them): the value's version, or a range's
/// two bounds. `Err` says why a value is refused: a comparison takes any
/// text (PostHog's `sortableSemver` of it), a range a version it can
/// bound.
pub(super) fn versions(
    op: PropertyOperator,
    items: &[serde_json::Value],
) -> Result<Vec<Vec<Version>>, String> {
    use PropertyOperator::*;
    items
        .iter()
        .map(|value| {
            let Some(text) = value.as_str() else {
                return Err(format!(
                    "{} needs a version as a string (\"1.2.3\"), got {value}",
                    op.as_str()
                ));
            };
            match op {
                SemverTilde | SemverCaret | SemverWildcard => Ok(range(op, text)?.to_vec()),
                _ => Ok(vec![sortable(text)]),
            }
        })
        .collect()
}

/// Whether a row's version `x` satisfies `op` against `versions` (from
/// [`versions`]).
pub(super) fn holds(op: PropertyOperator, x: &Version, versions: &[Version]) -> bool {
    use PropertyOperator::*;
    match (op, versions) {
        (SemverTilde | SemverCaret | SemverWildcard, [lo, hi]) => x >= lo && x < hi,
        (_, [w]) => {
            let o = x.cmp(w);
            match op {
                SemverEq => o == Ordering::Equal,
                SemverNeq => o != Ordering::Equal,
                SemverGt => o == Ordering::Greater,
                SemverGte => o != Ordering::Less,
                SemverLt => o == Ordering::Less,
                SemverLte => o != Ordering::Greater,
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PropertyOperator::*;

    #[test]
    fn versions_read_as_posthog_reads_them() {
        assert_eq!(sortable("1.2.3"), [1, 2, 3]);
        assert_eq!(sortable("v1.2.3-beta.4"), [1, 2, 3]);
        assert_eq!(sortable("app 10.0"), [10, 0]);
        assert_eq!(sortable("7"), [0]);
        assert_eq!(sortable("1."), [0]);
        assert_eq!(sortable(""), [0]);
        assert_eq!(sortable("99999999999999999999.1"), [0, 1]);
        assert!(sortable("1.2") < sortable("1.2.0"));
        assert!(sortable("1.9") < sortable("1.10"));
        assert_eq!(
            range(SemverTilde, "1.2.3"),
            Ok([vec![1, 2, 3], vec![1, 3, 0]])
        );
        assert!(range(SemverTilde, "1").is_err());
        assert_eq!(
            range(SemverCaret, "1.2.3"),
            Ok([vec![1, 2, 3], vec![2, 0, 0]])
        );
        assert_eq!(
            range(SemverCaret, "0.2.3"),
            Ok([vec![0, 2, 3], vec![0, 3, 0]])
        );
        assert_eq!(
            range(SemverCaret, "0.0.3"),
            Ok([vec![0, 0, 3], vec![0, 0, 4]])
        );
        assert_eq!(
            range(SemverWildcard, "1.*"),
            Ok([vec![1, 0, 0], vec![2, 0, 0]])
        );
        assert_eq!(
            range(SemverWildcard, "1.2.*"),
            Ok([vec![1, 2, 0], vec![1, 3, 0]])
        );
        assert_eq!(
            range(SemverWildcard, "1.2.3.*"),
            Ok([vec![1, 2, 3, 0], vec![1, 2, 4, 0]])
        );
        for bad in ["", "*", "x.1", "1.x.*"] {
            assert!(range(SemverWildcard, bad).is_err(), "{bad}");
        }
        for bad in ["", "x", "1.x", "-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(range(SemverCaret, "9223372036854775807.0.0").is_err());
        // PostHog's bounds are text from the value's parts: spaces and a
        // sign stay in them, parts past the third of a pattern are not
        // read.
        assert_eq!(range(SemverCaret, "1.2 "), Ok([vec![1, 2], vec![2, 0, 0]]));
        assert_eq!(
            range(SemverWildcard, "1.2.3 "),
            Ok([vec![1, 2, 3], vec![1, 2, 4, 0]])
        );
        assert_eq!(
            range(SemverCaret, "1.+2.3"),
            Ok([vec![2, 3], vec![2, 0, 0]])
        );
        assert_eq!(
            range(SemverWildcard, "1.2.3.x.*"),
            Ok([vec![1, 2, 3, 0], vec![1, 2, 4, 0]])
        );
    }
}
