//! Where an `ActorsQuery`'s persons come from: the project's listing,
//! or one point of an insight (a trend's, stickiness', lifecycle's,
//! funnel's or retention cohort's, or a paths' edge or drop-off),
//! computed by
//! [`elide_app::analytics`] as the legacy persons routes compute them,
//! and narrowed by `search` and person filters through the persons
//! listing.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use elide_app::analytics::funnel::{self, FunnelSpec, StepSelection};
use elide_app::analytics::lifecycle::{self, LifecycleSpec};
use elide_app::analytics::paths::{self, PathsSpec};
use elide_app::analytics::query_nodes;
use elide_app::analytics::retention::{self, RetentionSpec};
use elide_app::analytics::stickiness::{self, StickinessSpec};
use elide_app::analytics::trends::{self, ActorKey, ActorsPage, Point, TrendActor, TrendsSpec};
use elide_persons::PersonFilter;
use serde_json::{Map, Value};

use super::{invalid, Found, Order, MAX_FILTERED};
use crate::error::ApiResult;
use crate::extract::blocking;
use crate::query::run_app_query;
use crate::query_insights::with_all_time;
use crate::AppState;

/// `search` and the person filters a page is narrowed by.
pub(super) struct Narrow {
    search: Option<String>,
    filter: PersonFilter,
    cohorts: Vec<crate::persons::read::CohortFilter>,
}

impl Narrow {
    pub(super) fn new(search: Option<String>, filters: Vec<Value>) -> ApiResult<Narrow> {
        let (properties, cohorts) = if filters.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            crate::persons::read::parse_property_filters(&Value::Array(filters).to_string())?
        };
        Ok(Narrow {
            filter: PersonFilter {
                search: search.clone(),
                properties,
                ..Default::default()
            },
            search,
            cohorts,
        })
    }

    fn is_some(&self) -> bool {
        self.search.is_some() || !self.filter.properties.is_empty() || !self.cohorts.is_empty()
    }

    /// The listing's filter, limited by the cohorts.
    async fn filter(&self, state: &AppState, project: i64) -> ApiResult<PersonFilter> {
        let mut f = self.filter.clone();
        crate::persons::read::limit_to_cohorts(state, project, &mut f, self.cohorts.clone())
            .await?;
        Ok(f)
    }

    /// Those of `uuids` that pass (in `uuids`' order).
    async fn keep(
        &self,
        state: &AppState,
        project: i64,
        uuids: Vec<String>,
    ) -> ApiResult<Vec<String>> {
        if uuids.len() > MAX_FILTERED {
            return Err(invalid(
                "search",
                format!(
                    "the point has more than {MAX_FILTERED} persons to search: narrow the query"
                ),
            ));
        }
        let base = self.filter(state, project).await?;
        let within: Option<HashSet<uuid::Uuid>> =
            base.uuids.as_ref().map(|w| w.iter().copied().collect());
        let app = state.app().clone();
        blocking(move || {
            let mut pass = HashSet::new();
            for chunk in uuids.chunks(elide_persons::persons::MAX_LIST_LIMIT) {
                let mut f = base.clone();
                let ids: Vec<uuid::Uuid> = chunk
                    .iter()
                    .filter_map(|u| uuid::Uuid::parse_str(u).ok())
                    .filter(|u| within.as_ref().is_none_or(|w| w.contains(u)))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                f.uuids = Some(ids);
                f.limit = elide_persons::persons::MAX_LIST_LIMIT;
                f.offset = 0;
                for p in app.persons().list(project, &f)?.results {
                    pass.insert(p.uuid.hyphenated().to_string());
                }
            }
            Ok(uuids.into_iter().filter(|u| pass.contains(u)).collect())
        })
        .await
    }
}

/// A page of the project's persons, newest first.
pub(super) async fn listing(
    state: &AppState,
    project: i64,
    narrow: &Narrow,
    limit: usize,
    offset: usize,
) -> ApiResult<Found> {
    let mut f = narrow.filter(state, project).await?;
    f.limit = limit;
    f.offset = offset;
    let app = state.app().clone();
    let page = blocking(move || Ok(app.persons().list(project, &f)?)).await?;
    Ok(Found {
        uuids: page
            .results
            .iter()
            .map(|p| p.uuid.hyphenated().to_string())
            .collect(),
        trend: HashMap::new(),
        appearances: HashMap::new(),
        has_more: page.next_offset.is_some(),
    })
}

/// The persons of a source's point, paged.
pub(super) async fn of_source(
    state: &AppState,
    project: i64,
    s: &Map<String, Value>,
    order: &[Order],
    narrow: &Narrow,
    (limit, offset): (usize, usize),
    recordings: bool,
) -> ApiResult<Found> {
    let outer = s.get("kind").and_then(Value::as_str);
    if !matches!(outer, Some("InsightActorsQuery" | "FunnelsActorsQuery")) {
        return Err(invalid(
            "source",
            format!(
                "source kind {} is not supported (InsightActorsQuery, FunnelsActorsQuery)",
                outer.map_or("(none)".to_string(), |k| format!("{k:?}"))
            ),
        ));
    }
    let inner = match s.get("source") {
        Some(Value::Object(i)) => i,
        _ => {
            return Err(invalid(
                "source",
                "the source needs its insight query: source.source",
            ))
        }
    };
    let inner_kind = inner.get("kind").and_then(Value::as_str).unwrap_or("");
    let by_id = |what: &str| -> ApiResult<Option<bool>> {
        match order {
            [] => Ok(None),
            [Order::Trend(ActorKey::Id, desc)] => Ok(Some(*desc)),
            _ => Err(invalid(
                "orderBy",
                format!("these persons are ordered by id{what}"),
            )),
        }
    };
    match (outer, inner_kind) {
        (Some("InsightActorsQuery"), "TrendsQuery") => {
            let keys: Vec<(ActorKey, bool)> = order
                .iter()
                .map(|o| match o {
                    Order::Trend(k, d) => Ok((*k, *d)),
                    _ => Err(invalid(
                        "orderBy",
                        "a trend's persons are ordered by event_count, last_seen or id",
                    )),
                })
                .collect::<ApiResult<_>>()?;
            of_trend(
                state,
                project,
                (s, inner),
                &keys,
                narrow,
                (limit, offset),
                recordings,
            )
            .await
        }
        (Some("InsightActorsQuery"), "PathsQuery") => {
            of_paths(state, project, (s, inner), order, narrow, (limit, offset)).await
        }
        (Some("InsightActorsQuery"), "StickinessQuery" | "LifecycleQuery")
        | (Some("FunnelsActorsQuery"), "FunnelsQuery") => {
            let desc = by_id("")?;
            let mut all = sorted_source(state, project, s, inner).await?;
            if desc == Some(true) {
                all.reverse();
            }
            if narrow.is_some() {
                all = narrow.keep(state, project, all).await?;
            }
            let has_more = all.len() > offset.saturating_add(limit);
            Ok(Found {
                uuids: all.into_iter().skip(offset).take(limit).collect(),
                trend: HashMap::new(),
                appearances: HashMap::new(),
                has_more,
            })
        }
        (Some("InsightActorsQuery"), "RetentionQuery") => {
            check_source(s, &["interval", "breakdown"])?;
            // Most appearances first (PostHog's modal), then by id; or as
            // asked, by the number of appearances and the id.
            let mut keys = Vec::new();
            for o in order {
                match o {
                    Order::Appearances(desc) => keys.push((true, *desc)),
                    Order::Trend(ActorKey::Id, desc) => keys.push((false, *desc)),
                    _ => {
                        return Err(invalid(
                            "orderBy",
                            "a retention cohort's persons are ordered by length(appearances) or id",
                        ))
                    }
                }
            }
            let interval = match s.get("interval") {
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        invalid("interval", format!("interval is a cohort's index, got {v}"))
                    })?,
                None => {
                    return Err(invalid(
                        "interval",
                        "interval is required: the cohort's index",
                    ))
                }
            };
            // A breakdown value's cohort: PostHog's modal sends the value
            // as a list (of one: Elide breaks down by one property).
            let value = breakdown_value(s)?;
            let inner = with_all_time(state, project, inner).await?;
            let spec = RetentionSpec::parse(&inner, Utc::now())?;
            let persons = state.app().persons().clone();
            // Ordered and paged in SQL; narrowed ones read whole first
            // (at most MAX_FILTERED), as a trend's.
            let (want, skip) = if narrow.is_some() {
                (MAX_FILTERED + 1, 0)
            } else {
                (limit + 1, offset)
            };
            let mut all = run_app_query(state, move |limits| async move {
                retention::persons_of(
                    &persons,
                    project,
                    &spec,
                    (interval, value.as_deref()),
                    (&keys, want, skip),
                    &limits,
                )
                .await
            })
            .await?;
            if narrow.is_some() {
                if all.len() > MAX_FILTERED {
                    return Err(invalid(
                        "search",
                        format!("the cohort has more than {MAX_FILTERED} persons to search: narrow the query"),
                    ));
                }
                let keep: HashSet<String> = narrow
                    .keep(state, project, all.iter().map(|a| a.0.clone()).collect())
                    .await?
                    .into_iter()
                    .collect();
                all.retain(|a| keep.contains(&a.0));
                all = all.into_iter().skip(offset).collect();
            }
            let has_more = all.len() > limit;
            all.truncate(limit);
            Ok(Found {
                uuids: all.iter().map(|a| a.0.clone()).collect(),
                trend: HashMap::new(),
                appearances: all.into_iter().collect(),
                has_more,
            })
        }
        (k, other) => Err(invalid(
            "source",
            format!(
                "{} of {other:?} is not supported (InsightActorsQuery of TrendsQuery, \
                 StickinessQuery, LifecycleQuery, RetentionQuery or PathsQuery; FunnelsActorsQuery \
                 of FunnelsQuery)",
                k.unwrap_or_default()
            ),
        )),
    }
}

/// Checks the keys of a source besides its query's.
fn check_source(s: &Map<String, Value>, own: &[&str]) -> ApiResult<()> {
    const COMMON: &[&str] = &[
        "kind",
        "source",
        "includeRecordings",
        "modifiers",
        "response",
        "version",
        "tags",
    ];
    match s
        .iter()
        .find(|(k, v)| !v.is_null() && !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        Some((k, _)) => Err(invalid(
            k,
            format!(
                "{} of this source: {k} is not supported",
                s.get("kind").and_then(Value::as_str).unwrap_or("source")
            ),
        )),
        None => Ok(()),
    }
}

/// The `series` index of an `InsightActorsQuery` (default 0).
fn series_of(s: &Map<String, Value>) -> ApiResult<usize> {
    match s.get("series") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                invalid(
                    "series",
                    format!("series is the index of a series, got {v}"),
                )
            }),
    }
}

/// A point's `breakdown` value: text, or PostHog's list form of one
/// value (its modal's; Elide breaks down by one property); none when
/// absent, null or an empty list.
fn breakdown_value(s: &Map<String, Value>) -> ApiResult<Option<String>> {
    match s.get("breakdown") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) if list.len() == 1 && list[0].is_null() => Err(invalid(
            "breakdown",
            "a breakdown value is text (an unset value is \"\")",
        )),
        Some(Value::Array(list)) if list.len() == 1 => Ok(text_of(&list[0])),
        Some(Value::Array(list)) if list.is_empty() => Ok(None),
        Some(Value::Array(_)) => Err(invalid(
            "breakdown",
            "one breakdown value (Elide breaks down by one property)",
        )),
        Some(v) => Ok(text_of(v)),
    }
}

/// A value given as text or a number, as text.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The persons of a trend's point (`s`, of the `TrendsQuery` `inner`),
/// with their recorded sessions when `recordings`.
async fn of_trend(
    state: &AppState,
    project: i64,
    (s, inner): (&Map<String, Value>, &Map<String, Value>),
    order: &[(ActorKey, bool)],
    narrow: &Narrow,
    (limit, offset): (usize, usize),
    recordings: bool,
) -> ApiResult<Found> {
    check_source(s, &["series", "day", "breakdown", "compare"])?;
    // The persons of a point of the compared period (PostHog's
    // `compare: "previous"`) are those of the query over that period.
    let previous = match s.get("compare") {
        None | Some(Value::Null) => false,
        Some(Value::String(c)) if c == "current" => false,
        Some(Value::String(c)) if c == "previous" => true,
        Some(other) => {
            return Err(invalid(
                "compare",
                format!("compare is current or previous, got {other}"),
            ))
        }
    };
    let now = Utc::now();
    let inner = with_all_time(state, project, inner).await?;
    let mut spec = TrendsSpec::parse(&inner, now)?;
    if previous {
        spec = match spec.previous.take() {
            Some(p) => *p,
            None => {
                return Err(invalid(
                    "compare",
                    "compare is previous but the query is not compared (compareFilter.compare)",
                ))
            }
        };
    }
    let day = match s.get("day") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let t = text_of(v).unwrap_or_default();
            Some(
                elide_app::analytics::filter::parse_date(&t, now, "day")
                    .map_err(|e| invalid("day", e.to_string()))?
                    .timestamp_micros(),
            )
        }
    };
    let breakdown = breakdown_value(s)?;
    let point = Point {
        series: series_of(s)?,
        day,
        breakdown,
    };
    let mut page = ActorsPage {
        order: if order.is_empty() {
            ActorsPage::default().order
        } else {
            order.to_vec()
        },
        limit: limit + 1,
        offset,
        // Read for the page alone, below.
        recordings: false,
    };
    if narrow.is_some() {
        page.limit = MAX_FILTERED + 1;
        page.offset = 0;
    }
    let persons = state.app().persons().clone();
    let (spec2, point2) = (spec.clone(), point.clone());
    let mut list = run_app_query(state, move |limits| async move {
        trends::actors(&persons, project, &spec2, &point2, &page, &limits).await
    })
    .await?;
    if narrow.is_some() {
        if list.len() > MAX_FILTERED {
            return Err(invalid(
                "search",
                format!(
                    "the point has more than {MAX_FILTERED} persons to search: narrow the query"
                ),
            ));
        }
        let keep: HashSet<String> = narrow
            .keep(
                state,
                project,
                list.iter().map(|a| a.person.clone()).collect(),
            )
            .await?
            .into_iter()
            .collect();
        list.retain(|a| keep.contains(&a.person));
        list = list.into_iter().skip(offset).collect();
    }
    let has_more = list.len() > limit;
    list.truncate(limit);
    if recordings && !list.is_empty() {
        let persons = state.app().persons().clone();
        list = run_app_query(state, move |limits| async move {
            trends::recordings(&persons, project, &spec, &point, &mut list, &limits).await?;
            Ok(list)
        })
        .await?;
    }
    Ok(Found {
        uuids: list.iter().map(|a| a.person.clone()).collect(),
        trend: list.into_iter().map(|a| (a.person.clone(), a)).collect(),
        appearances: HashMap::new(),
        has_more,
    })
}

/// The persons of a paths' edge or drop-off (`s`, of the `PathsQuery`
/// `inner`: its `pathStartKey`, `pathEndKey`, `pathDropoffKey`), with
/// their matched steps as `event_count`; by it, most first, then by UUID
/// descending (PostHog's modal's `event_count DESC, actor_id DESC`), or
/// as asked by `event_count` and `id`.
async fn of_paths(
    state: &AppState,
    project: i64,
    (s, inner): (&Map<String, Value>, &Map<String, Value>),
    order: &[Order],
    narrow: &Narrow,
    (limit, offset): (usize, usize),
) -> ApiResult<Found> {
    check_source(s, &[])?;
    let mut keys: Vec<(ActorKey, bool)> = order
        .iter()
        .map(|o| match o {
            Order::Trend(k @ (ActorKey::EventCount | ActorKey::Id), d) => Ok((*k, *d)),
            _ => Err(invalid(
                "orderBy",
                "a paths' persons are ordered by event_count or id",
            )),
        })
        .collect::<ApiResult<_>>()?;
    if keys.is_empty() {
        keys = vec![(ActorKey::EventCount, true), (ActorKey::Id, true)];
    }
    let spec = PathsSpec::parse(inner, Utc::now())?;
    let persons = state.app().persons().clone();
    let all = run_app_query(state, move |limits| async move {
        paths::actors(&persons, project, &spec, &limits).await
    })
    .await?;
    // Personless actors have no profile to list.
    let mut all: Vec<paths::PathActor> = all.into_iter().filter(|a| !a.personless).collect();
    all.sort_by(|a, b| {
        keys.iter()
            .map(|(k, desc)| {
                let o = match k {
                    ActorKey::EventCount => a.steps.cmp(&b.steps),
                    _ => a.actor.cmp(&b.actor),
                };
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.actor.cmp(&b.actor))
    });
    if narrow.is_some() {
        if all.len() > MAX_FILTERED {
            return Err(invalid(
                "search",
                format!(
                    "the edge has more than {MAX_FILTERED} persons to search: narrow the query"
                ),
            ));
        }
        let keep: HashSet<String> = narrow
            .keep(
                state,
                project,
                all.iter().map(|a| a.actor.clone()).collect(),
            )
            .await?
            .into_iter()
            .collect();
        all.retain(|a| keep.contains(&a.actor));
    }
    let has_more = all.len() > offset.saturating_add(limit);
    let page: Vec<paths::PathActor> = all.into_iter().skip(offset).take(limit).collect();
    Ok(Found {
        uuids: page.iter().map(|a| a.actor.clone()).collect(),
        trend: page
            .into_iter()
            .map(|a| {
                (
                    a.actor.clone(),
                    TrendActor {
                        person: a.actor,
                        event_count: a.steps,
                        last_seen: 0,
                        distinct_ids: Vec::new(),
                        recordings: Vec::new(),
                    },
                )
            })
            .collect(),
        appearances: HashMap::new(),
        has_more,
    })
}

/// Every person of a stickiness, lifecycle or funnel point, by UUID.
async fn sorted_source(
    state: &AppState,
    project: i64,
    s: &Map<String, Value>,
    inner: &Map<String, Value>,
) -> ApiResult<Vec<String>> {
    let now = Utc::now();
    let persons = state.app().persons().clone();
    match inner.get("kind").and_then(Value::as_str) {
        Some("StickinessQuery") => {
            check_source(s, &["series", "day"])?;
            let inner = with_all_time(state, project, inner).await?;
            let spec = StickinessSpec::parse(&inner, now)?;
            let index = series_of(s)?;
            let n = s
                .get("day")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| invalid("day", "day is the number of periods, from 1"))?;
            Ok(run_app_query(state, move |limits| async move {
                stickiness::persons_of(&persons, project, &spec, index, n, &limits).await
            })
            .await?)
        }
        Some("LifecycleQuery") => {
            check_source(s, &["day", "status", "series"])?;
            let mut params = query_nodes::lifecycle_params(inner)?;
            crate::analytics::all_time(state, project, &mut params).await?;
            let spec = LifecycleSpec::parse(&params, now)?;
            let day = s
                .get("day")
                .and_then(text_of)
                .ok_or_else(|| invalid("day", "day is required: the period of the point"))?;
            let status = s
                .get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "status",
                        "status is required: new, returning, resurrecting or dormant",
                    )
                })?
                .to_string();
            // Checked before the query runs.
            lifecycle::persons_of(&spec, &Default::default(), &day, &status, now)?;
            let spec2 = spec.clone();
            let l = run_app_query(state, move |limits| async move {
                lifecycle::compute(&persons, project, &spec2, &limits).await
            })
            .await?;
            Ok(lifecycle::persons_of(&spec, &l, &day, &status, now)?)
        }
        _ => {
            check_source(
                s,
                &["funnelStep", "funnelStepBreakdown", "funnelCustomSteps"],
            )?;
            let mut params = query_nodes::funnels_params(inner)?;
            for (from, to) in [
                ("funnelStep", "funnel_step"),
                ("funnelStepBreakdown", "funnel_step_breakdown"),
                ("funnelCustomSteps", "funnel_custom_steps"),
            ] {
                if let Some(v) = s.get(from).filter(|v| !v.is_null()) {
                    params.0.insert(to.into(), v.clone());
                }
            }
            let spec = FunnelSpec::parse(&params, now)?;
            let selection = StepSelection::parse(&params, spec.steps.len())?;
            let spec2 = spec.clone();
            let all = run_app_query(state, move |limits| async move {
                funnel::actors(&persons, project, &spec2, &limits).await
            })
            .await?;
            let mut out: Vec<String> = selection
                .select(&spec, &all)
                .into_iter()
                .filter(|a| !a.personless)
                .map(|a| a.person.clone())
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        }
    }
}
