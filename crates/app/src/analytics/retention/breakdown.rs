//! A retention breakdown (`breakdownFilter` of a `RetentionQuery`): what
//! it asks ([`RetentionBreakdown`], [`breakdown`]) and how its values are
//! ranked and folded into Other ([`ranked`]), as PostHog's
//! `RetentionQueryRunner` does. The cohorts of each value are computed
//! with the rest of retention, each (actor, value) as an actor
//! ([`super::RetentionSpec`]).

use std::borrow::Cow;

use serde_json::{json, Value};

use super::{invalid, RetentionCounts};
use crate::error::Result;

/// A retention breakdown: one property, of the events or of the person.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionBreakdown {
    /// The property.
    pub key: String,
    /// A person property (the person's now; a personless actor's is
    /// unset), not the events'.
    pub person: bool,
    /// Most values shown; the rest are summed into Other.
    pub limit: usize,
}

/// PostHog's label of the values past `breakdown_limit`.
pub const BREAKDOWN_OTHER: &str = "$$_posthog_breakdown_other_$$";

/// `breakdownFilter` of a `RetentionQuery`: one event or person
/// property (`breakdown` and `breakdown_type`, or a `breakdowns` list of
/// one `{property, type}`), `breakdown_limit` (default 25). Cohorts,
/// groups, histograms, URL normalisation and several properties are a
/// 400; `breakdown_hide_other_aggregation` is ignored, as PostHog's
/// retention does.
pub(super) fn breakdown(v: Option<&Value>) -> Result<Option<RetentionBreakdown>> {
    let b = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(b)) => b,
        Some(v) => return invalid(format!("breakdownFilter must be an object, got {v}")),
    };
    let set = |k: &str| b.get(k).filter(|v| !v.is_null());
    for k in [
        "breakdown_histogram_bin_count",
        "breakdown_normalize_url",
        "breakdown_group_type_index",
    ] {
        if set(k).is_some_and(|v| v != &json!(false))
            && (set("breakdown").is_some() || set("breakdowns").is_some())
        {
            return invalid(format!(
                "breakdownFilter.{k} is not supported in a retention breakdown"
            ));
        }
    }
    // With both, `breakdown` (PostHog's runner makes `breakdowns` of it).
    let (key, kind) = match (set("breakdown"), set("breakdowns")) {
        (Some(Value::String(k)), _) => (k.clone(), set("breakdown_type").cloned()),
        (Some(v), _) => {
            return invalid(format!(
                "breakdownFilter.breakdown must be a property name (one), got {v}"
            ))
        }
        (None, None) => return Ok(None),
        (None, Some(Value::Array(list))) if list.is_empty() => return Ok(None),
        (None, Some(Value::Array(list))) if list.len() == 1 => {
            let Some(one) = list[0].as_object() else {
                return invalid("breakdownFilter.breakdowns holds {property, type} objects");
            };
            for k in ["histogram_bin_count", "normalize_url", "group_type_index"] {
                if one
                    .get(k)
                    .is_some_and(|v| !v.is_null() && v != &json!(false))
                {
                    return invalid(format!(
                        "breakdownFilter.breakdowns[0].{k} is not supported in a retention breakdown"
                    ));
                }
            }
            match one.get("property") {
                Some(Value::String(k)) => (k.clone(), one.get("type").cloned()),
                other => {
                    return invalid(format!(
                        "breakdownFilter.breakdowns[0].property must be a property name, got {}",
                        other.unwrap_or(&Value::Null)
                    ))
                }
            }
        }
        (None, Some(_)) => {
            return invalid(
                "breakdownFilter.breakdowns: one breakdown property (Elide breaks down by one)",
            )
        }
    };
    if key.is_empty() {
        return invalid("breakdownFilter.breakdown is empty");
    }
    let person = match kind {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "event" => false,
        Some(Value::String(t)) if t == "person" => true,
        Some(t) => {
            return invalid(format!(
                "breakdown_type {t} is not supported in a retention breakdown (event, person)"
            ))
        }
    };
    let limit = match set("breakdown_limit") {
        None => crate::analytics::filter::DEFAULT_BREAKDOWN_LIMIT,
        Some(l) => crate::analytics::filter::breakdown_limit(l.as_i64(), l)?,
    };
    Ok(Some(RetentionBreakdown { key, person, limit }))
}

/// The values [`super::results`] shows, in order with their cohorts: the
/// values with a cohort, by the sum of their cohorts' sizes, largest
/// first, then by value; past `limit`, the rest's counts summed (cohort by
/// cohort, interval by interval) into one [`BREAKDOWN_OTHER`], last.
/// `shape`: (cohorts, intervals after each).
pub(super) fn ranked(
    counts: &RetentionCounts,
    limit: usize,
    (cohorts, lookahead): (usize, usize),
) -> Vec<(String, Cow<'_, [Vec<u64>]>)> {
    let mut ranked: Vec<(&String, u64, &Vec<Vec<u64>>)> = counts
        .iter()
        .map(|(v, rows)| (v, rows.iter().filter_map(|r| r.first()).sum(), rows))
        .filter(|(_, total, _)| *total > 0)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let rest = ranked.split_off(limit.min(ranked.len()));
    let mut out: Vec<(String, Cow<'_, [Vec<u64>]>)> = ranked
        .into_iter()
        .map(|(v, _, rows)| (v.clone(), Cow::Borrowed(rows.as_slice())))
        .collect();
    if !rest.is_empty() {
        let mut other = vec![vec![0u64; lookahead]; cohorts];
        for (_, _, rows) in &rest {
            for (sum, row) in other.iter_mut().zip(rows.iter()) {
                for (s, n) in sum.iter_mut().zip(row) {
                    *s += n;
                }
            }
        }
        out.push((BREAKDOWN_OTHER.to_string(), Cow::Owned(other)));
    }
    out
}
