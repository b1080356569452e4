//! A funnel's breakdown: its parameters ([`breakdown`]: the keys, the
//! limit, which event's value is an actor's, [`Attribution`]) and the
//! groups the insight shows ([`groups`]: the values furthest along, the
//! rest as [`OTHER`]). The query that gives each actor its value is
//! [`super::FunnelSpec::sql`]'s.

use std::collections::BTreeMap;

use elide_query::funnel::MAX_CONDITIONS;
use serde_json::Value;

use super::super::filter::{breakdown_limit, Params, DEFAULT_BREAKDOWN_LIMIT};
use super::super::properties::PropKind;
use super::{invalid, Actor, FunnelSpec};
use crate::error::Result;

/// A breakdown: event or person property keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// `event` or `person`.
    pub kind: PropKind,
    /// The property keys.
    pub keys: Vec<String>,
    /// The insight shows the values of this many groups, those furthest
    /// along (`breakdown_limit`, PostHog's default 25); the others are
    /// one group, [`OTHER`].
    pub limit: usize,
    /// Which event's value is an actor's.
    pub attribution: Attribution,
}

/// Which event's breakdown value is an actor's
/// (`breakdown_attribution_type`, PostHog's funnels). An event's value
/// is its property as text, `""` when it has none; with several keys, the
/// values of one event together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The value of the actor's first event in the funnel's query (any
    /// step's or exclusion's; any event of a strict funnel) that has one
    /// (not all `""`); else `""` (the default).
    FirstTouch,
    /// As `FirstTouch`, the last such event.
    LastTouch,
    /// Each value of the actor's events: a funnel of its own over the
    /// events of that value, so an actor counts once for each value whose
    /// events reach the first step.
    AllEvents,
    /// The value of the event of this step (0-based): for each value the
    /// actor's events of this step have, a funnel whose step it is must
    /// be reached with that value. An actor without such an event is in
    /// no group.
    Step(usize),
}

/// The group of the values past `breakdown_limit` (PostHog's funnels
/// name it so, where trends write `$$_posthog_breakdown_other_$$`).
pub const OTHER: &str = "Other";

/// Most properties one funnel breakdown may name (each adds a column, and
/// with first or last touch an aggregate over the funnel's conditions).
pub const MAX_BREAKDOWN_KEYS: usize = 10;

/// The breakdown parameters (`breakdown`, `breakdowns`, `breakdown_type`).
pub fn breakdown(p: &Params) -> Result<Option<Breakdown>> {
    let keys: Vec<String> = match p.json("breakdown") {
        None => return Ok(None),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v => invalid(format!("breakdown: property names are strings, got {v}")),
            })
            .collect::<Result<_>>()?,
        Some(Value::String(s)) => vec![s],
        Some(v) => vec![v.to_string()],
    };
    if keys.is_empty() {
        return Ok(None);
    }
    if keys.len() > MAX_BREAKDOWN_KEYS {
        return invalid(format!(
            "breakdown: {} properties; at most {MAX_BREAKDOWN_KEYS}",
            keys.len()
        ));
    }
    let kind = match p.text("breakdown_type").as_deref() {
        None | Some("event") => PropKind::Event,
        Some("person") => PropKind::Person,
        Some(other) => {
            return invalid(format!(
                "breakdown_type {other:?} is not supported (event, person)"
            ))
        }
    };
    let limit = match p.int("breakdown_limit")? {
        None => DEFAULT_BREAKDOWN_LIMIT,
        Some(n) => breakdown_limit(Some(n), &n)?,
    };
    let attribution = match p.text("breakdown_attribution_type").as_deref() {
        None | Some("first_touch") => Attribution::FirstTouch,
        Some("last_touch") => Attribution::LastTouch,
        Some("all_events") => Attribution::AllEvents,
        Some("step") => match p.int("breakdown_attribution_value")? {
            Some(k) if (0..MAX_CONDITIONS as i64).contains(&k) => Attribution::Step(k as usize),
            Some(k) => {
                return invalid(format!(
                    "breakdown_attribution_value {k} is not a step (0-based)"
                ))
            }
            None => {
                return invalid(
                    "breakdown_attribution_value is required with breakdown_attribution_type step",
                )
            }
        },
        Some(other) => {
            return invalid(format!(
                "breakdown_attribution_type {other:?} is not one of first_touch, last_touch, all_events, step"
            ))
        }
    };
    Ok(Some(Breakdown {
        kind,
        keys,
        limit,
        attribution,
    }))
}

/// The actors of a broken-down funnel by value, as PostHog's funnels
/// show them: the `breakdown_limit` values furthest along (by the count
/// at the last step, then at the one before, …, then by value), and the
/// others together as [`OTHER`]; all ordered so. Without a breakdown, one
/// group of all.
pub fn groups<'a>(spec: &FunnelSpec, actors: &'a [Actor]) -> Vec<(Vec<String>, Vec<&'a Actor>)> {
    let Some(b) = &spec.breakdown else {
        return vec![(Vec::new(), actors.iter().collect())];
    };
    let mut by_value: BTreeMap<&[String], Vec<&Actor>> = BTreeMap::new();
    for a in actors {
        by_value.entry(&a.breakdown).or_default().push(a);
    }
    let n = spec.steps.len();
    // Persons at each step, last step first, each largest first.
    let rank = |members: &[&Actor]| -> Vec<std::cmp::Reverse<usize>> {
        (0..n)
            .rev()
            .map(|i| std::cmp::Reverse(members.iter().filter(|a| a.steps > i).count()))
            .collect()
    };
    let ranked = |value: Vec<String>, members: Vec<&'a Actor>| Group {
        rank: rank(&members),
        value,
        members,
    };
    let mut all: Vec<Group> = by_value
        .into_iter()
        .map(|(k, members)| ranked(k.to_vec(), members))
        .collect();
    all.sort_by(Group::order);
    let other: Vec<&Actor> = all
        .split_off(b.limit.min(all.len()))
        .into_iter()
        .flat_map(|g| g.members)
        .collect();
    if !other.is_empty() {
        // A value that is itself "Other" and kept is one list with the
        // folded ones, as PostHog groups them.
        let other_value = vec![OTHER.to_string()];
        let mut members = other;
        if let Some(i) = all.iter().position(|g| g.value == other_value) {
            members.extend(all.remove(i).members);
        }
        all.push(ranked(other_value, furthest_per_person(members)));
        all.sort_by(Group::order);
    }
    all.into_iter().map(|g| (g.value, g.members)).collect()
}

/// One actor per person (with all-events or step attribution a person
/// may be one for each of several values folded together): its furthest
/// path. PostHog relabels the events `Other` and runs one funnel, which a
/// path across two of the values can also complete; here it does not.
fn furthest_per_person(members: Vec<&Actor>) -> Vec<&Actor> {
    let mut best: BTreeMap<(&str, bool), &Actor> = BTreeMap::new();
    for a in members {
        best.entry((a.person.as_str(), a.personless))
            .and_modify(|b| {
                if a.steps > b.steps {
                    *b = a;
                }
            })
            .or_insert(a);
    }
    best.into_values().collect()
}

/// A group of [`groups`], with what it is ranked by.
struct Group<'a> {
    /// Persons at each step, last step first, each largest first.
    rank: Vec<std::cmp::Reverse<usize>>,
    value: Vec<String>,
    members: Vec<&'a Actor>,
}

impl Group<'_> {
    /// Furthest along first, then by value.
    fn order(x: &Self, y: &Self) -> std::cmp::Ordering {
        (&x.rank, &x.value).cmp(&(&y.rank, &y.value))
    }
}
