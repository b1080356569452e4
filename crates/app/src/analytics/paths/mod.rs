//! Paths (PostHog's `PathsQuery`): the edges between the steps of each
//! actor's sessions, `1_/home → 2_/pricing`, with how many sessions took
//! each and the average time between its two steps, computed as PostHog's
//! `PathsQueryRunner` computes them.
//!
//! What a path is, step by step (each as the runner's ClickHouse arrays):
//!
//! 1. An event's path item: a `$pageview`'s `$current_url` without one
//!    trailing `/` (`/` itself stays), a `$screen`'s `$screen_name`, any
//!    other event's name ([`Item`]); then the local cleaning rules in
//!    order, then the grouping whose wildcard pattern's match ends first
//!    in it takes its place.
//! 2. An actor's events in time order are cut into sessions where 30
//!    minutes or more pass between two of them.
//! 3. In a session, of each run of one item repeated only the last is
//!    kept, and an empty last item is dropped.
//! 4. With a start point the path begins at its first occurrence, with an
//!    end point it ends at its first; a session without it has no path.
//!    Of what is left the first `stepLimit` steps are kept (with only an
//!    end point the last; with both, a path longer than that keeps half
//!    of them at each end around a `...` step).
//! 5. Each step after the first is an edge from the step before it,
//!    keyed `N_item`; the edges are counted over all sessions, those
//!    under `minEdgeWeight` or over `maxEdgeWeight` dropped, the largest
//!    `edgeLimit` kept (ties by source, then target), and of those only
//!    the ones reachable from a first step.
//!
//! Actors are those of the other insights: a person through its current
//! identity, and the events sent without a person by the UUID they carry
//! ([`super::personless`]); a deleted person's events are gone, and its
//! personless events count for no one.
//!
//! Around a funnel's step (`funnelPathsFilter`, [`FunnelPaths`]): only
//! the step's actors, each with its events after, before or between the
//! steps of its funnel path, in sessions cut at the funnel's window.
//!
//! Not served (a 400 naming it): `hogql` path items, a funnel with a
//! breakdown, sampling.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::execution::memory_pool::MemoryReservation;
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::{json, Value};

use super::personless::{personless_can_match, personless_props_sql, Personless, MAX_RUNS};
use super::properties::props_sql;
use super::{lit, stream, ts_lit};
use crate::error::Result;
use crate::query::QueryLimits;

mod spec;
pub use spec::{
    ActorKeys, FunnelPathKind, FunnelPaths, Include, PathsSpec, DEFAULT_EDGE_LIMIT,
    DEFAULT_STEP_LIMIT, MAX_EDGE_LIMIT, MAX_STEP_LIMIT,
};

/// A pause this long or longer (µs) starts a new session (PostHog's 30
/// minutes).
const SESSION_GAP: i64 = 30 * 60 * 1_000_000;
/// Memory charged per edge, on top of its keys.
const EDGE_OVERHEAD: usize = 64;

/// One step of a session's path, as PostHog's per-person rows have it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a> {
    /// 1-based place in the path.
    pub index: usize,
    /// The item.
    pub item: &'a str,
    /// The step before's item (`None` for the first).
    pub prev: Option<&'a str>,
    /// Time since the step before (µs; 0 for the first).
    pub since_prev: i64,
    /// The path's last step (`N_item`): where its actor dropped off.
    pub dropoff: (usize, &'a str),
}

/// The steps of one actor's `events` (time, item), in time order: each
/// session's limited path (steps 2–4 of the module's list), through
/// `visit`.
pub fn walk<'a>(spec: &PathsSpec, events: &'a [(i64, String)], mut visit: impl FnMut(Step<'a>)) {
    let gap = spec
        .funnel
        .as_ref()
        .map_or(SESSION_GAP, FunnelPaths::session_gap);
    let mut start = 0;
    for i in 1..=events.len() {
        if i == events.len() || events[i].0 - events[i - 1].0 >= gap {
            session(spec, &events[start..i], &mut visit);
            start = i;
        }
    }
}

/// The `...` step of a path cut in the middle.
const ELLIPSIS: &str = "...";

fn session<'a>(spec: &PathsSpec, events: &'a [(i64, String)], visit: &mut impl FnMut(Step<'a>)) {
    // Of each run of one item, the last; an empty last item goes too.
    let compact: Vec<(i64, &str)> = events
        .iter()
        .enumerate()
        .filter(|(i, (_, item))| match events.get(i + 1) {
            Some((_, next)) => next != item,
            None => !item.is_empty(),
        })
        .map(|(_, (t, item))| (*t, item.as_str()))
        .collect();
    let find = |path: &[(i64, &str)], what: &str| path.iter().position(|(_, s)| *s == what);
    let limit = spec.step_limit;
    let limited: Vec<(i64, &str)> = match (&spec.start, &spec.end) {
        (Some(start), Some(end)) => {
            // Both points as given (PostHog strips a trailing `/` only
            // from a single point).
            let Some(s) = find(&compact, start) else {
                return;
            };
            let from_start = &compact[s..];
            let Some(e) = find(from_start, end) else {
                return;
            };
            let path = &from_start[..=e];
            if path.len() > limit {
                let half = limit / 2;
                let mut out = path[..half].to_vec();
                out.push((path[half].0, ELLIPSIS));
                out.extend_from_slice(&path[path.len() - half..]);
                out
            } else {
                path.to_vec()
            }
        }
        (start, end) => {
            let target = end.as_ref().or(start.as_ref()).map(|t| {
                if t.len() > 1 && t.ends_with('/') {
                    &t[..t.len() - 1]
                } else {
                    t.as_str()
                }
            });
            match target {
                None => compact[..compact.len().min(limit)].to_vec(),
                Some(t) => {
                    let Some(at) = find(&compact, t) else {
                        return;
                    };
                    if end.is_some() {
                        let path = &compact[..=at];
                        path[path.len().saturating_sub(limit)..].to_vec()
                    } else {
                        let path = &compact[at..];
                        path[..path.len().min(limit)].to_vec()
                    }
                }
            }
        }
    };
    let Some(last) = limited.last() else {
        return;
    };
    let dropoff = (limited.len(), last.1);
    for (i, &(t, item)) in limited.iter().enumerate() {
        visit(Step {
            index: i + 1,
            item,
            prev: i.checked_sub(1).map(|p| limited[p].1),
            since_prev: i.checked_sub(1).map_or(0, |p| t - limited[p].0),
            dropoff,
        });
    }
}

/// One edge of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// `N_item` of the step before.
    pub source: String,
    /// `N+1_item` of the step.
    pub target: String,
    /// Sessions that took it.
    pub value: u64,
    /// Average time between the two steps (ms).
    pub average_conversion_time: f64,
}

/// The edges of `spec` over the project's events (step 5 of the
/// module's list).
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &PathsSpec,
    limits: &QueryLimits,
) -> Result<Vec<Edge>> {
    each_actor(
        persons,
        project,
        spec,
        limits,
        Tally::default,
        |t, reservation, _, events| {
            let grown = t.add(spec, events);
            reservation.try_grow(grown)?;
            Ok(())
        },
        |t, reservation| {
            // The keys are written out once each: charged first.
            reservation.try_grow(t.key_bytes())?;
            Ok(edges(spec, t.into_counts()))
        },
    )
    .await
}

/// The edges counted over the actors' sessions. Items are counted by
/// number: a step is a lookup, not two texts.
#[derive(Default)]
struct Tally {
    ids: HashMap<String, u32>,
    names: Vec<String>,
    edges: HashMap<(usize, u32, u32), (u64, i128)>,
}

impl Tally {
    fn id(&mut self, item: &str, grown: &mut usize) -> u32 {
        if let Some(&id) = self.ids.get(item) {
            return id;
        }
        let id = self.names.len() as u32;
        *grown += 2 * item.len() + EDGE_OVERHEAD;
        self.ids.insert(item.to_string(), id);
        self.names.push(item.to_string());
        id
    }

    /// Count one actor's `events` (time, item, in time order); the bytes
    /// it added.
    fn add(&mut self, spec: &PathsSpec, events: &[(i64, String)]) -> usize {
        let mut grown = 0;
        walk(spec, events, |s| {
            let Some(prev) = s.prev else { return };
            let key = (
                s.index,
                self.id(prev, &mut grown),
                self.id(s.item, &mut grown),
            );
            let e = self.edges.entry(key).or_insert_with(|| {
                grown += EDGE_OVERHEAD;
                (0, 0)
            });
            e.0 += 1;
            e.1 += i128::from(s.since_prev);
        });
        grown
    }

    /// The bytes [`Tally::into_counts`] writes.
    fn key_bytes(&self) -> usize {
        let len = |id: u32| self.names.get(id as usize).map_or(0, String::len);
        self.edges
            .keys()
            .map(|&(_, prev, item)| len(prev) + len(item) + 2 * 24 + EDGE_OVERHEAD)
            .sum()
    }

    /// (source key, target key) → (sessions, the sum of their times in µs).
    fn into_counts(self) -> HashMap<(String, String), (u64, i128)> {
        let names = self.names;
        let name = |id: u32| names.get(id as usize).map_or("", String::as_str);
        self.edges
            .into_iter()
            .map(|((index, prev, item), v)| {
                (
                    (
                        format!("{}_{}", index - 1, name(prev)),
                        format!("{index}_{}", name(item)),
                    ),
                    v,
                )
            })
            .collect()
    }
}

/// The counted edges as the answer: weights, order, limit, and only those
/// reachable from a first step (PostHog's `validate_results`).
fn edges(spec: &PathsSpec, tally: HashMap<(String, String), (u64, i128)>) -> Vec<Edge> {
    let mut all: Vec<Edge> = tally
        .into_iter()
        .filter(|(_, (n, _))| {
            let n = i128::from(*n);
            spec.min_weight.is_none_or(|m| n >= i128::from(m))
                && spec.max_weight.is_none_or(|m| n <= i128::from(m))
        })
        .map(|((source, target), (n, sum))| Edge {
            source,
            target,
            value: n,
            // µs to ms.
            average_conversion_time: sum as f64 / n as f64 / 1000.0,
        })
        .collect();
    all.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then_with(|| a.source.cmp(&b.source))
            .then_with(|| a.target.cmp(&b.target))
    });
    all.truncate(spec.edge_limit);
    let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut stack = Vec::new();
    for e in &all {
        next.entry(&e.source).or_default().push(&e.target);
        if e.source.starts_with("1_") {
            stack.push(e.source.as_str());
        }
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(node) = stack.pop() {
        seen.insert(node);
        for t in next.get(node).into_iter().flatten() {
            if !seen.contains(t) {
                stack.push(t);
            }
        }
    }
    let keep: std::collections::HashSet<String> = seen.into_iter().map(str::to_string).collect();
    all.retain(|e| keep.contains(&e.source));
    all
}

/// PostHog's result list: `{source, target, value, average_conversion_time}`.
pub fn results(edges: &[Edge]) -> Value {
    Value::Array(
        edges
            .iter()
            .map(|e| {
                json!({
                    "source": e.source,
                    "target": e.target,
                    "value": e.value,
                    "average_conversion_time": e.average_conversion_time,
                })
            })
            .collect(),
    )
}

/// One actor of a paths' persons list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathActor {
    /// The person's UUID (a personless actor's: the UUID its events carry).
    pub actor: String,
    /// Whether the actor has no person.
    pub personless: bool,
    /// Its steps that matched.
    pub steps: u64,
}

/// The actors with a step that matches `spec.keys`, as PostHog's
/// `to_actors_query`: with `dropoff`, the last step of a path that is
/// that step; else the steps keyed `end` (any, when not given) whose step
/// before is keyed `start` (when given). Sorted by steps (most first),
/// then actor.
pub async fn actors(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &PathsSpec,
    limits: &QueryLimits,
) -> Result<Vec<PathActor>> {
    let keys = &spec.keys;
    each_actor(
        persons,
        project,
        spec,
        limits,
        Vec::new,
        |out, reservation, who, events| {
            let mut n = 0u64;
            walk(spec, events, |s| {
                let hit = match &keys.dropoff {
                    Some(d) => {
                        s.index == s.dropoff.0 && *d == format!("{}_{}", s.dropoff.0, s.dropoff.1)
                    }
                    None => {
                        keys.start.as_ref().is_none_or(|k| {
                            s.prev.is_some_and(|p| *k == format!("{}_{p}", s.index - 1))
                        }) && keys
                            .end
                            .as_ref()
                            .is_none_or(|k| *k == format!("{}_{}", s.index, s.item))
                    }
                };
                n += u64::from(hit);
            });
            if n > 0 {
                reservation.try_grow(who.0.len() + EDGE_OVERHEAD)?;
                out.push(PathActor {
                    actor: who.0.to_string(),
                    personless: who.1,
                    steps: n,
                });
            }
            Ok(())
        },
        |mut out, _| {
            out.sort_by(|a, b| b.steps.cmp(&a.steps).then_with(|| a.actor.cmp(&b.actor)));
            Ok(out)
        },
    )
    .await
}

/// The query of the events that make path items, one row per event:
/// (actor, personless, time µs, event, `$current_url`, `$screen_name`),
/// by actor and time: the persons' events, and (unless the filters need
/// a person) the events without one, by the UUID they carry.
fn rows_sql(spec: &PathsSpec, personless: &Personless) -> Result<String> {
    let mut filter = vec![format!("e.timestamp <= {}", ts_lit(spec.to))];
    if let Some(from) = spec.from {
        filter.push(format!("e.timestamp >= {}", ts_lit(from)));
    }
    if let Some(inc) = spec.include.filter(|i| i.any()) {
        let mut any = Vec::new();
        if inc.pageview {
            any.push("e.event = '$pageview'".to_string());
        }
        if inc.screen {
            any.push("e.event = '$screen'".to_string());
        }
        if inc.custom {
            any.push("NOT starts_with(e.event, '$')".to_string());
        }
        filter.push(format!("({})", any.join(" OR ")));
    }
    // A property is read only of the events whose item it makes.
    let text = |event: &str, key: &str| {
        if spec.reads(event) {
            format!(
                "CASE WHEN e.event = {} THEN json_as_text(e.properties, {}) END",
                lit(event),
                lit(key)
            )
        } else {
            "CAST(NULL AS VARCHAR)".to_string()
        }
    };
    let cols = format!(
        "CAST(e.timestamp AS BIGINT) AS ts, e.uuid AS id, e.event AS event, {} AS url, {} AS screen",
        text("$pageview", "$current_url"),
        text("$screen", "$screen_name")
    );
    // Actors as their 16 bytes, which sort faster than their text (the
    // statement's output is text again).
    let persons_part = format!(
        "SELECT uuid_from_text(pdi.person_id) AS actor, FALSE AS personless, {cols} FROM person_distinct_ids pdi \
         JOIN persons p ON p.uuid = pdi.person_id JOIN events e ON e.distinct_id = pdi.distinct_id \
         WHERE {} AND {}",
        filter.join(" AND "),
        props_sql(&spec.props)?
    );
    let mut parts = vec![persons_part];
    if personless_can_match(&spec.props) {
        parts.push(format!(
            "SELECT e.person_id AS actor, TRUE AS personless, {cols} FROM events e \
             WHERE {} AND {} AND {}",
            filter.join(" AND "),
            personless_props_sql(&spec.props)?,
            personless.actor_sql(true)
        ));
    }
    Ok(format!(
        "SELECT actor, personless, ts, event, url, screen FROM ({}) r ORDER BY actor, ts, id",
        parts.join(" UNION ALL ")
    ))
}

/// Each actor's events (time, path item), in time order, through
/// `each(state, reservation, (actor, personless), events)`, into a state
/// made by `init`; what `each` keeps is charged to `reservation`, the
/// query's memory (one actor's events are held at a time), and the last
/// run's state goes through `finish` while that memory is still held. Run
/// again on a fresh state when a person was deleted meanwhile (at most
/// [`MAX_RUNS`] runs): its personless events may have counted. With a
/// funnel, only its actors of the step, and of each only the events its
/// funnel path bounds ([`FunnelPaths::bounds`]).
async fn each_actor<S, T>(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &PathsSpec,
    limits: &QueryLimits,
    init: impl Fn() -> S,
    mut each: impl FnMut(&mut S, &mut MemoryReservation, (&str, bool), &[(i64, String)]) -> Result<()>,
    finish: impl FnOnce(S, &mut MemoryReservation) -> Result<T>,
) -> Result<T> {
    let mut runs = 0;
    loop {
        runs += 1;
        let ctx = super::session(persons, project, limits)?;
        super::cohorts::register_for(&ctx, persons, project, &spec.props).await?;
        let p = Personless::read(persons, project)?;
        p.register(&ctx);
        let funnel_held = elide_query::hold(&ctx.runtime_env().memory_pool, "paths funnel", 0)?;
        // With a funnel: its actors of the step, and the times of each one's
        // events that count.
        let bounds: Option<HashMap<String, (i64, i64)>> = match &spec.funnel {
            None => None,
            Some(f) => {
                let all = super::funnel::actors(persons, project, &f.funnel, limits).await?;
                let map: HashMap<String, (i64, i64)> = f
                    .selection
                    .select(&f.funnel, &all)
                    .into_iter()
                    .filter_map(|a| f.bounds(&a.timestamps).map(|b| (a.person.clone(), b)))
                    .collect();
                // Held for the whole run: charged to the query's memory.
                funnel_held.try_grow(map.keys().map(|k| k.len() + 64).sum())?;
                Some(map)
            }
        };
        let pool = &ctx.runtime_env().memory_pool;
        let mut state = init();
        let mut reservation = elide_query::hold(pool, "paths tally", 0)?;
        let held = elide_query::hold(pool, "paths actor", 0)?;
        // The actor being read: (actor, personless, its events).
        let mut current: Option<(String, bool)> = None;
        let mut events: Vec<(i64, String)> = Vec::new();
        let mut batches = stream(&ctx, &rows_sql(spec, &p)?).await?;
        while let Some(b) = batches.next().await {
            let b = b?;
            let actor = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
            let actor = actor.as_string::<i32>();
            let Some(personless) = b.column(1).as_boolean_opt() else {
                return Err(datafusion::error::DataFusionError::Internal(
                    "paths: personless is not a boolean".into(),
                )
                .into());
            };
            let ts = b.column(2).as_primitive::<Int64Type>();
            let texts: Vec<_> = (3..6)
                .map(|i| arrow::compute::cast(b.column(i), &DataType::Utf8))
                .collect::<std::result::Result<_, _>>()?;
            let (event, url, screen) = (
                texts[0].as_string::<i32>(),
                texts[1].as_string::<i32>(),
                texts[2].as_string::<i32>(),
            );
            fn opt(a: &arrow::array::StringArray, r: usize) -> Option<&str> {
                (!a.is_null(r)).then(|| a.value(r))
            }
            for r in 0..b.num_rows() {
                // Cleaning rules can make a batch long: its deadline is
                // looked at within it too.
                if r % 1024 == 1023 {
                    if let Some(d) = &limits.deadline {
                        d.check()?;
                    }
                }
                if actor.is_null(r) || ts.is_null(r) || event.is_null(r) {
                    continue;
                }
                let who = actor.value(r);
                if let Some(b) = &bounds {
                    match b.get(who) {
                        Some(&(lo, hi)) if (lo..=hi).contains(&ts.value(r)) => {}
                        _ => continue,
                    }
                }
                // (A deleted person's kept events are left out by the SQL.)
                let is_personless = personless.is_valid(r) && personless.value(r);
                let item = spec.item(event.value(r), opt(url, r), opt(screen, r))?;
                if spec.excluded(&item) {
                    continue;
                }
                if current.as_ref().is_none_or(|(c, _)| c != who) {
                    if let Some((c, pl)) = current.take() {
                        each(&mut state, &mut reservation, (&c, pl), &events)?;
                    }
                    // A new vector: the last one's slots are not charged.
                    events = Vec::new();
                    held.resize(0);
                    current = Some((who.to_string(), is_personless));
                }
                held.try_grow(item.len() + 32)?;
                events.push((ts.value(r), item));
            }
        }
        if let Some((c, pl)) = current.take() {
            each(&mut state, &mut reservation, (&c, pl), &events)?;
        }
        if runs < MAX_RUNS && p.stale(persons, project)? {
            continue;
        }
        // Still under the query's memory: what `finish` builds is charged
        // to the same reservation.
        return finish(state, &mut reservation);
    }
}

#[cfg(test)]
mod tests;
