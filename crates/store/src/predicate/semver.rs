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
//! The filter's value is checked as PostHog checks it (`parse_semver`): a
//! string whose part before the first `-` is one to three integers.
//! `semver_tilde`, `semver_caret` and `semver_wildcard` are ranges,
//! lower bound included, upper bound excluded:
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
/// its first `-`), missing ones 0.
fn parse(value: &str) -> Result<[i64; 3], String> {
    let base = value.split('-').next().unwrap_or_default();
    let parts: Vec<&str> = base.split('.').collect();
    let int = |i: usize| -> Result<i64, String> {
        match parts.get(i) {
            None => Ok(0),
            Some(p) => p
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("{value:?} is not a version (major.minor.patch)")),
        }
    };
    if parts.first().is_none_or(|p| p.is_empty()) {
        return Err(format!("{value:?} is not a version (major.minor.patch)"));
    }
    Ok([int(0)?, int(1)?, int(2)?])
}

fn next(n: i64, value: &str) -> Result<i64, String> {
    n.checked_add(1)
        .ok_or_else(|| format!("{value:?}: a version part is too large"))
}

/// The `[lower, upper)` of a range operator's `value`.
fn range(op: PropertyOperator, value: &str) -> Result<[Version; 2], String> {
    use PropertyOperator::*;
    let v = |parts: &[i64]| parts.to_vec();
    match op {
        SemverTilde => {
            let base = value.split('-').next().unwrap_or_default();
            if base.split('.').count() < 2 {
                return Err(format!(
                    "{value:?}: semver_tilde needs at least major.minor"
                ));
            }
            let [major, minor, patch] = parse(value)?;
            Ok([
                v(&[major, minor, patch]),
                v(&[major, next(minor, value)?, 0]),
            ])
        }
        SemverCaret => {
            let [major, minor, patch] = parse(value)?;
            let upper = if major > 0 {
                v(&[next(major, value)?, 0, 0])
            } else if minor > 0 {
                v(&[0, next(minor, value)?, 0])
            } else {
                v(&[0, 0, next(patch, value)?])
            };
            Ok([v(&[major, minor, patch]), upper])
        }
        SemverWildcard => {
            let trimmed = value.trim_end_matches(['.', '*']);
            if trimmed.is_empty() {
                return Err(format!("{value:?} is not a version pattern (1.2.*)"));
            }
            let base = trimmed.split('-').next().unwrap_or_default();
            let parts: Vec<i64> = base
                .split('.')
                .map(|p| p.trim().parse::<i64>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("{value:?} is not a version pattern (1.2.*)"))?;
            match parts.as_slice() {
                [major] => Ok([v(&[*major, 0, 0]), v(&[next(*major, value)?, 0, 0])]),
                [major, minor] => Ok([
                    v(&[*major, *minor, 0]),
                    v(&[*major, next(*minor, value)?, 0]),
                ]),
                [major, minor, patch, ..] => Ok([
                    v(&[*major, *minor, *patch, 0]),
                    v(&[*major, *minor, next(*patch, value)?, 0]),
                ]),
                [] => Err(format!("{value:?} is not a version pattern (1.2.*)")),
            }
        }
        _ => Err(format!("{} is not a version range", op.as_str())),
    }
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

/// What a version operator compares with: the value's version, or a
/// range's two bounds. `Err` says why the value is refused.
pub(super) fn versions(
    op: PropertyOperator,
    value: &serde_json::Value,
) -> Result<Vec<Version>, String> {
    use PropertyOperator::*;
    let Some(text) = value.as_str() else {
        return Err(format!(
            "{} needs a version as a string (\"1.2.3\"), got {value}",
            op.as_str()
        ));
    };
    match op {
        SemverTilde | SemverCaret | SemverWildcard => Ok(range(op, text)?.to_vec()),
        _ => {
            parse(text)?;
            Ok(vec![sortable(text)])
        }
    }
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
    }
}
