//! The insight query kinds of `POST …/query/` but trends and HogQL
//! (`FunnelsQuery`, `LifecycleQuery`, `StickinessQuery`,
//! `RetentionQuery`, `PathsQuery`), answered by [`elide_app::analytics`] on the query
//! runtime under the query limits: a funnel or a lifecycle as its legacy
//! insight answers the same parameters ([`crate::analytics`]).

use axum::http::HeaderMap;
use chrono::Utc;
use elide_app::analytics::funnel::{self, FunnelSpec};
use elide_app::analytics::lifecycle::{self, LifecycleSpec};
use elide_app::analytics::paths::{self, PathsSpec};
use elide_app::analytics::query_nodes;
use elide_app::analytics::retention::{self, RetentionSpec};
use elide_app::analytics::stickiness::{self, StickinessSpec};
use serde_json::Value;

use crate::analytics::{all_time, url_on};
use crate::error::ApiResult;
use crate::query::{all_time_from, run_app_query};
use crate::AppState;

/// A `FunnelsQuery` of `POST …/query/`: the steps of
/// `…/insights/funnel/` with the same parameters (their persons URLs on
/// `…/persons/funnel/`).
pub(crate) async fn funnels_query(
    state: &AppState,
    project: i64,
    q: &serde_json::Map<String, Value>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> ApiResult<Value> {
    let params = query_nodes::funnels_params(q)?;
    let spec = FunnelSpec::parse(&params, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let all = run_app_query(state, move |limits| async move {
        funnel::actors(&persons, project, &spec2, &limits).await
    })
    .await?;
    let base = url_on(uri, headers, &params, "/query", "/persons/funnel", &[]);
    Ok(funnel::steps(&spec, &all, &base))
}

/// A `PathsQuery` of `POST …/query/`: the edges between the steps of
/// the actors' sessions ([`paths`]).
pub(crate) async fn paths_query(
    state: &AppState,
    project: i64,
    q: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    let spec = PathsSpec::parse(q, Utc::now())?;
    let persons = state.app().persons().clone();
    let edges = run_app_query(state, move |limits| async move {
        paths::compute(&persons, project, &spec, &limits).await
    })
    .await?;
    Ok(paths::results(&edges))
}

/// A `LifecycleQuery` of `POST …/query/`: the series of
/// `…/insights/trend/?shown_as=Lifecycle` with the same parameters.
pub(crate) async fn lifecycle_query(
    state: &AppState,
    project: i64,
    q: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    let mut params = query_nodes::lifecycle_params(q)?;
    all_time(state, project, &mut params).await?;
    let spec = LifecycleSpec::parse(&params, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let l = run_app_query(state, move |limits| async move {
        lifecycle::compute(&persons, project, &spec2, &limits).await
    })
    .await?;
    Ok(lifecycle::series(&spec, &l))
}

/// A `StickinessQuery` of `POST …/query/`: per series, the actors per
/// number of periods they did the event in.
pub(crate) async fn stickiness_query(
    state: &AppState,
    project: i64,
    q: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    let q = with_all_time(state, project, q).await?;
    let spec = StickinessSpec::parse(&q, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let counts = run_app_query(state, move |limits| async move {
        stickiness::compute(&persons, project, &spec2, &limits).await
    })
    .await?;
    Ok(stickiness::results(&spec, &counts))
}

/// A `RetentionQuery` of `POST …/query/`: per cohort interval, its
/// actors coming back in each interval after.
pub(crate) async fn retention_query(
    state: &AppState,
    project: i64,
    q: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    let q = with_all_time(state, project, q).await?;
    let spec = RetentionSpec::parse(&q, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let counts = run_app_query(state, move |limits| async move {
        retention::compute(&persons, project, &spec2, &limits).await
    })
    .await?;
    Ok(retention::results(&spec, &counts))
}

/// `q` with `dateRange.date_from: "all"` resolved to the project's first
/// event (PostHog's earliest timestamp), as the specs need a date.
pub(crate) async fn with_all_time(
    state: &AppState,
    project: i64,
    q: &serde_json::Map<String, Value>,
) -> ApiResult<serde_json::Map<String, Value>> {
    let mut q = q.clone();
    if let Some(Value::Object(r)) = q.get_mut("dateRange") {
        if r.get("date_from").and_then(Value::as_str) == Some("all") {
            let from = all_time_from(state, project).await?;
            r.insert("date_from".into(), Value::String(from));
        }
    }
    Ok(q)
}
