//! The legacy persons routes of the insights: funnel persons, funnel
//! correlation persons, lifecycle, stickiness and trends persons
//! (`…/persons/funnel/`, `…/persons/funnel/correlation/`,
//! `…/persons/lifecycle/`, `…/persons/stickiness/`, `…/persons/trends/`,
//! scope `person:read`).

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use elide_app::analytics::actors;
use elide_app::analytics::correlation::{self, CorrelationSpec};
use elide_app::analytics::funnel::{self, FunnelSpec, StepSelection};
use elide_app::analytics::lifecycle::{self, LifecycleSpec};
use elide_app::analytics::stickiness::{self, StickinessSpec};
use elide_app::analytics::trends::{self, TrendsSpec};
use serde_json::{json, Value};

use super::*;
use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, url_with, JsonBody, PathParams};
use crate::query::run_app_query;
use crate::views::{ListedPerson, RetrievedPerson};
use crate::AppState;

/// The persons who reached (or dropped off at) a funnel step: PostHog's
/// `funnel_step` (1-based; `-k` = reached step `k - 1` but not `k`) or
/// `funnel_custom_steps`, optionally of one breakdown value
/// (`funnel_step_breakdown`).
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/persons/funnel/",
    operation_id = "persons_funnel",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("events" = Option<String>, Query, description = "The steps: a JSON list of `{id, type: \"events\", order, properties?}`."),
        ("funnel_step" = Option<i64>, Query, description = "1-based step: persons who reached it; negative: who dropped off before it."),
        ("funnel_custom_steps" = Option<String>, Query, description = "JSON list of steps: persons whose furthest step is one of them (overrides funnel_step)."),
        ("funnel_order_type" = Option<String>, Query, description = "`ordered` (default), `strict` or `unordered`."),
        ("funnel_window_days" = Option<i64>, Query, description = "Conversion window in days."),
        ("funnel_window_interval" = Option<i64>, Query, description = "Conversion window (with the unit below; default 14 days)."),
        ("funnel_window_interval_unit" = Option<String>, Query, description = "`second`, `minute`, `hour`, `day`, `week` or `month`."),
        ("date_from" = Option<String>, Query, description = "Start: a date, an ISO time, relative (`-7d`, the default) or `all`."),
        ("date_to" = Option<String>, Query, description = "End (default now; by days, the end of its day)."),
        ("interval" = Option<String>, Query, description = "How the dates round: `minute` or `hour` (as given), `day` (default), `week`, `month` (whole days)."),
        ("properties" = Option<String>, Query, description = "JSON list of property filters applied to every event (`type` event or person)."),
        ("exclusions" = Option<String>, Query, description = "JSON list of `{id, type, funnel_from_step, funnel_to_step}`."),
        ("breakdown" = Option<String>, Query, description = "A property name or a JSON list of them."),
        ("breakdown_type" = Option<String>, Query, description = "`event` (default) or `person`."),
        ("funnel_step_breakdown" = Option<String>, Query, description = "Only persons with this breakdown value (JSON list for several keys)."),
        ("breakdown_attribution_type" = Option<String>, Query, description = "Which event's value is a person's: `first_touch` (default), `last_touch`, `all_events`, `step`."),
        ("breakdown_attribution_value" = Option<i64>, Query, description = "With `step`: the step (0-based)."),
        ("breakdown_limit" = Option<i64>, Query, description = "Lists of this many values furthest along, the rest as `Other` (1 to 1000, default 25)."),
        ("limit" = Option<u32>, Query, description = "Page size (default 100)."),
        ("offset" = Option<u32>, Query, description = "Persons to skip."),
        ("format" = Option<String>, Query, description = "`csv` for CSV."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{results: [{people, count}], next, initial, is_cached, last_refresh}`, or CSV", body = Object),
    )
)]
pub(crate) async fn persons_funnel(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let params = params(&uri, body)?;
    let spec = FunnelSpec::parse(&params, Utc::now())?;
    let selection = StepSelection::parse(&params, spec.steps.len())?;
    let (limit, offset) = window(&params, usize::MAX)?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let all = run_app_query(&state, move |limits| async move {
        funnel::actors(&persons, project, &spec2, &limits).await
    })
    .await?;
    let page: Vec<String> = selection
        .select(&spec, &all)
        .into_iter()
        // A personless actor has no profile to list (PostHog lists only
        // persons too).
        .filter(|a| !a.personless)
        .skip(offset)
        .take(limit)
        .map(|a| a.person.clone())
        .collect();
    persons_page(
        &state,
        project,
        page,
        (limit, offset),
        &params,
        &uri,
        &headers,
    )
    .await
}

/// The persons who did the event in exactly `stickiness_days` periods of
/// the range: PostHog's legacy stickiness persons (`events`, `entity_id`
/// to choose one, `date_from`, `date_to`, `interval`, `properties`).
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/persons/stickiness/",
    operation_id = "persons_stickiness",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("stickiness_days" = Option<i64>, Query, description = "Required (here or in the body): the number of periods, from 1."),
        ("events" = Option<String>, Query, description = "JSON list of `{id, type: \"events\", properties?}`."),
        ("entity_id" = Option<String>, Query, description = "Which of the events (default the first)."),
        ("date_from" = Option<String>, Query, description = "Start (default `-7d`)."),
        ("date_to" = Option<String>, Query, description = "End (default now)."),
        ("interval" = Option<String>, Query, description = "`hour`, `day` (default), `week` or `month`."),
        ("properties" = Option<String>, Query, description = "JSON list of property filters."),
        ("limit" = Option<u32>, Query, description = "Page size (default 100)."),
        ("offset" = Option<u32>, Query, description = "Persons to skip."),
        ("format" = Option<String>, Query, description = "`csv` for CSV."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{results: [{people, count}], next, initial, is_cached, last_refresh}`, or CSV", body = Object),
        (status = 400, description = "No stickiness_days, or a bad parameter"),
    )
)]
pub(crate) async fn persons_stickiness(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let mut params = params(&uri, body)?;
    let Some(n) = params.int("stickiness_days")? else {
        return Err(missing(
            "stickiness_days",
            "stickiness_days is required (the number of periods)",
        ));
    };
    let Some(n) = usize::try_from(n).ok().filter(|&n| n >= 1) else {
        return Err(ApiError::invalid_attr(
            "stickiness_days",
            "invalid_input",
            "stickiness_days must be a positive integer",
        ));
    };
    all_time(&state, project, &mut params).await?;
    let (q, index) = stickiness::legacy_query(&params)?;
    let spec = StickinessSpec::parse(&q, Utc::now())?;
    let (limit, offset) = window(&params, usize::MAX)?;
    let persons = state.app().persons().clone();
    let all = run_app_query(&state, move |limits| async move {
        stickiness::persons_of(&persons, project, &spec, index, n, &limits).await
    })
    .await?;
    let page: Vec<String> = all.into_iter().skip(offset).take(limit).collect();
    persons_page(
        &state,
        project,
        page,
        (limit, offset),
        &params,
        &uri,
        &headers,
    )
    .await
}

/// The persons of one point of a trend: PostHog's legacy trends persons
/// (`TrendsActors`), most events first.
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/persons/trends/",
    operation_id = "persons_trends",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("events" = Option<String>, Query, description = "JSON list of `{id, type: \"events\", math?, math_property?, properties?}`."),
        ("entity_id" = Option<String>, Query, description = "Which of the events (default the first)."),
        ("entity_math" = Option<String>, Query, description = "With entity_id: the one of this math (`total` when unset)."),
        ("entity_order" = Option<i64>, Query, description = "With entity_id: the one at this place."),
        ("date_from" = Option<String>, Query, description = "The point's period: it starts here (over time), or the range's start (cumulative and total-value displays)."),
        ("date_to" = Option<String>, Query, description = "The range's end (cumulative and total-value displays; over time the period's end is taken)."),
        ("interval" = Option<String>, Query, description = "`hour`, `day` (default), `week` or `month`."),
        ("display" = Option<String>, Query, description = "The chart: `ActionsLineGraphCumulative` and the total-value displays list the whole range's persons."),
        ("properties" = Option<String>, Query, description = "JSON list of property filters."),
        ("breakdown" = Option<String>, Query, description = "The breakdown property."),
        ("breakdown_type" = Option<String>, Query, description = "`event` (default) or `person`."),
        ("breakdown_value" = Option<String>, Query, description = "Only the persons of this value (PostHog's null and Other values too)."),
        ("limit" = Option<u32>, Query, description = "Page size (default 100)."),
        ("offset" = Option<u32>, Query, description = "Persons to skip."),
        ("format" = Option<String>, Query, description = "`csv` for CSV."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{results: [{people, count}], next, initial, is_cached, last_refresh}`, or CSV", body = Object),
        (status = 400, description = "A bad parameter"),
    )
)]
pub(crate) async fn persons_trends(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let mut params = params(&uri, body)?;
    all_time(&state, project, &mut params).await?;
    let now = Utc::now();
    let (q, point) = trends::legacy_point(&params, now)?;
    let spec = TrendsSpec::parse(&q, now)?;
    let (limit, offset) = window(&params, MAX_OFFSET)?;
    let persons = state.app().persons().clone();
    let page = trends::ActorsPage {
        limit,
        offset,
        ..Default::default()
    };
    let found = run_app_query(&state, move |limits| async move {
        trends::actors(&persons, project, &spec, &point, &page, &limits).await
    })
    .await?;
    let page: Vec<String> = found.into_iter().map(|a| a.person).collect();
    persons_page(
        &state,
        project,
        page,
        (limit, offset),
        &params,
        &uri,
        &headers,
    )
    .await
}

/// The persons of one lifecycle status in one period: `target_date` and
/// `lifecycle_type` (`new`, `returning`, `resurrecting`, `dormant`), over
/// the lifecycle of `events[0]`.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/lifecycle/",
    operation_id = "persons_lifecycle",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("target_date" = String, Query, description = "A time in the period wanted."),
        ("lifecycle_type" = String, Query, description = "`new`, `returning`, `resurrecting` or `dormant`."),
        ("events" = Option<String>, Query, description = "JSON list with the one event of the lifecycle."),
        ("date_from" = Option<String>, Query, description = "Start (default `-7d`)."),
        ("date_to" = Option<String>, Query, description = "End (default now)."),
        ("interval" = Option<String>, Query, description = "`hour`, `day` (default), `week` or `month`."),
        ("properties" = Option<String>, Query, description = "JSON list of property filters."),
        ("limit" = Option<u32>, Query, description = "Page size (default 100)."),
        ("offset" = Option<u32>, Query, description = "Persons to skip."),
        ("format" = Option<String>, Query, description = "`csv` for CSV."),
    ),
    responses(
        (status = 200, description = "`{results: [{people, count}], next}`, or CSV", body = Object),
        (status = 400, description = "`target_date` or `lifecycle_type` missing, or a bad parameter"),
    )
)]
pub(crate) async fn persons_lifecycle(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let mut params = params(&uri, body)?;
    all_time(&state, project, &mut params).await?;
    let Some(target) = params.text("target_date") else {
        return Err(missing("target_date", "Must include specified date"));
    };
    let Some(status) = params.text("lifecycle_type") else {
        return Err(missing("lifecycle_type", "Must include lifecycle type"));
    };
    let now = Utc::now();
    let spec = LifecycleSpec::parse(&params, now)?;
    let (limit, offset) = window(&params, usize::MAX)?;
    // Checked before the query runs.
    lifecycle::persons_of(&spec, &Default::default(), &target, &status, now)?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let l = run_app_query(&state, move |limits| async move {
        lifecycle::compute(&persons, project, &spec2, &limits).await
    })
    .await?;
    let page: Vec<String> = lifecycle::persons_of(&spec, &l, &target, &status, now)?
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect();
    let full = page.len() >= limit;
    let persons = state.app().persons().clone();
    let people = blocking(move || Ok(actors::load(&persons, project, &page)?)).await?;
    if csv_wanted(&params) {
        return Ok(csv_response(&people));
    }
    let listed: Vec<RetrievedPerson> = people.iter().map(RetrievedPerson::from).collect();
    let next = full.then(|| url_with(&uri, &headers, &[("offset", (offset + limit).to_string())]));
    Ok(Json(json!({
        "results": [{"people": listed, "count": listed.len()}],
        "next": next,
    }))
    .into_response())
}

/// The persons of one funnel-correlation row: the funnel's actors (who
/// did step 1, or reached `funnel_step`) who did
/// `funnel_correlation_person_entity` inside their window, or whose person
/// properties match `funnel_correlation_property_values`; only those who
/// converted or dropped off with `funnel_correlation_person_converted`.
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/persons/funnel/correlation/",
    operation_id = "persons_funnel_correlation",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("events" = Option<String>, Query, description = "The funnel's steps: a JSON list of `{id, type: \"events\", order, properties?}`."),
        ("funnel_correlation_person_entity" = Option<String>, Query, description = "JSON `{id, type: \"events\", properties?}`: the event of the row."),
        ("funnel_correlation_property_values" = Option<String>, Query, description = "JSON list of person property filters: the property value of the row."),
        ("funnel_correlation_person_converted" = Option<String>, Query, description = "`true`: who converted; `false`: who dropped off; absent: both."),
        ("funnel_correlation_person_limit" = Option<u32>, Query, description = "Page size (default 100)."),
        ("funnel_correlation_person_offset" = Option<u32>, Query, description = "Persons to skip."),
        ("date_from" = Option<String>, Query, description = "Start (default `-7d`)."),
        ("date_to" = Option<String>, Query, description = "End (default now)."),
        ("funnel_window_days" = Option<i64>, Query, description = "Conversion window in days (default 14)."),
        ("format" = Option<String>, Query, description = "`csv` for CSV."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{results: [{people, count}], next, initial, is_cached, last_refresh}`, or CSV", body = Object),
        (status = 400, description = "No row selected, or a bad parameter"),
    )
)]
pub(crate) async fn persons_funnel_correlation(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let params = params(&uri, body)?;
    let spec = CorrelationSpec::parse(&params, Utc::now())?;
    let (selector, converted) = correlation::selector(&params)?;
    let limit = params
        .count("funnel_correlation_person_limit", 100, MAX_PAGE)?
        .max(1);
    let offset = params.count("funnel_correlation_person_offset", 0, usize::MAX)?;
    let persons = state.app().persons().clone();
    let all = run_app_query(&state, move |limits| async move {
        correlation::persons_of(&persons, project, &spec, &selector, converted, &limits).await
    })
    .await?;
    let page: Vec<String> = all.into_iter().skip(offset).take(limit).collect();
    let full = page.len() >= limit;
    let persons = state.app().persons().clone();
    let people = blocking(move || Ok(actors::load(&persons, project, &page)?)).await?;
    if csv_wanted(&params) {
        return Ok(csv_response(&people));
    }
    let listed: Vec<ListedPerson> = people.iter().map(ListedPerson::from).collect();
    let next = full.then(|| {
        url_with(
            &uri,
            &headers,
            &[(
                "funnel_correlation_person_offset",
                (offset + limit).to_string(),
            )],
        )
    });
    Ok(Json(json!({
        "results": [{"people": listed, "count": listed.len()}],
        "next": next,
        "initial": url_with(&uri, &headers, &[("funnel_correlation_person_offset", "0".to_string())]),
        "is_cached": false,
        "last_refresh": now_iso(),
    }))
    .into_response())
}
