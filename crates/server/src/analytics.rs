//! The analytics routes: PostHog's funnel persons, funnel-correlation
//! persons, lifecycle persons, stickiness persons and trends persons
//! (`…/persons/funnel/`, `…/persons/funnel/correlation/`,
//! `…/persons/lifecycle/`, `…/persons/stickiness/`, `…/persons/trends/`,
//! scope `person:read`) and the legacy insights
//! they link from (`…/insights/funnel/`, `…/insights/funnel/correlation/`,
//! `…/insights/trend/?shown_as=Lifecycle|Stickiness`, scope
//! `insight:read`), computed by [`elide_app::analytics`] on the query
//! runtime under the query limits. The insight query kinds of
//! `POST …/query/` are [`crate::query_insights`].
//!
//! Parameters come from the query string and the JSON body alike
//! (PostHog's legacy `Filter`); a bad one is a 400 envelope with PostHog's
//! message, before any query runs. Persons lists are ordered by person
//! UUID (trends persons: most events first, as PostHog's) and paged with
//! `limit` (default 100) and `offset`; `next` is the request's URL with
//! the next offset when the page is full; `format=csv` answers the page's
//! persons as CSV.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use elide_app::analytics::actors;
use elide_app::analytics::correlation::{self, CorrelationSpec};
use elide_app::analytics::filter::Params;
use elide_app::analytics::funnel::{self, FunnelSpec, StepSelection};
use elide_app::analytics::lifecycle::{self, LifecycleSpec};
use elide_app::analytics::stickiness::{self, StickinessSpec};
use elide_app::analytics::trends::{self, TrendsSpec};
use serde_json::{json, Value};

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, url_with, JsonBody, PathParams};
use crate::query::{all_time_from, run_app_query};
use crate::views::{csv, ListedPerson, RetrievedPerson};
use crate::AppState;

/// Most persons one page lists.
const MAX_PAGE: usize = 10_000;

/// Most persons a page may skip, where the query pages them in SQL.
pub(crate) const MAX_OFFSET: usize = 1_000_000_000;

fn params(uri: &axum::http::Uri, body: Value) -> ApiResult<Params> {
    let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect::<Vec<_>>();
    let body = match body {
        Value::Object(o) if o.is_empty() => None,
        v => Some(v),
    };
    Ok(Params::new(query, body)?)
}

fn csv_wanted(p: &Params) -> bool {
    p.text("format").as_deref() == Some("csv")
}

fn csv_response(persons: &[elide_persons::Person]) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv(persons),
    )
        .into_response()
}

/// One page of persons (`page`, UUIDs in the result's order, at
/// `offset`, at most `limit`: `window`) as PostHog's persons routes
/// answer it:
/// `{results: [{people, count}], next, initial, is_cached, last_refresh}`
/// (`next` when the page is full), or CSV with `format=csv`.
async fn persons_page(
    state: &AppState,
    project: i64,
    page: Vec<String>,
    (limit, offset): (usize, usize),
    params: &Params,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let full = page.len() >= limit;
    let persons = state.app().persons().clone();
    let people = blocking(move || Ok(actors::load(&persons, project, &page)?)).await?;
    if csv_wanted(params) {
        return Ok(csv_response(&people));
    }
    let listed: Vec<ListedPerson> = people.iter().map(ListedPerson::from).collect();
    let next = full.then(|| url_with(uri, headers, &[("offset", (offset + limit).to_string())]));
    Ok(Json(json!({
        "results": [{"people": listed, "count": listed.len()}],
        "next": next,
        "initial": url_with(uri, headers, &[("offset", "0".to_string())]),
        "is_cached": false,
        "last_refresh": now_iso(),
    }))
    .into_response())
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

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
    let limit = params.count("limit", 100, MAX_PAGE)?.max(1);
    let offset = params.count("offset", 0, usize::MAX)?;
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
    let limit = params.count("limit", 100, MAX_PAGE)?.max(1);
    let offset = params.count("offset", 0, usize::MAX)?;
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
    let limit = params.count("limit", 100, MAX_PAGE)?.max(1);
    let offset = params.count("offset", 0, MAX_OFFSET)?;
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
    let limit = params.count("limit", 100, MAX_PAGE)?.max(1);
    let offset = params.count("offset", 0, usize::MAX)?;
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

/// The 400 for a missing lifecycle parameter: PostHog's `detail`, in the
/// envelope every other error has (PostHog answers
/// `{"message": "Missing parameter", "detail": …}` here).
fn missing(attr: &str, detail: &str) -> ApiError {
    ApiError::invalid_attr(attr, "required", detail)
}

/// A funnel's steps: per step its count of persons, average and median
/// conversion time (seconds) and the URLs of its persons; with a
/// breakdown, one list of steps per value.
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/insights/funnel/",
    operation_id = "insights_funnel",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("events" = Option<String>, Query, description = "The steps: a JSON list of `{id, type: \"events\", order, properties?}`."),
        ("funnel_order_type" = Option<String>, Query, description = "`ordered` (default), `strict` or `unordered`."),
        ("funnel_window_days" = Option<i64>, Query, description = "Conversion window in days (default 14)."),
        ("date_from" = Option<String>, Query, description = "Start (default `-7d`)."),
        ("date_to" = Option<String>, Query, description = "End (default now)."),
        ("breakdown" = Option<String>, Query, description = "A property name or a JSON list of them."),
        ("breakdown_type" = Option<String>, Query, description = "`event` (default) or `person`."),
        ("breakdown_attribution_type" = Option<String>, Query, description = "Which event's value is a person's: `first_touch` (default), `last_touch`, `all_events`, `step`."),
        ("breakdown_attribution_value" = Option<i64>, Query, description = "With `step`: the step (0-based)."),
        ("breakdown_limit" = Option<i64>, Query, description = "Lists of this many values furthest along, the rest as `Other` (1 to 1000, default 25)."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{result: [steps], last_refresh, is_cached, timezone}`", body = Object),
    )
)]
pub(crate) async fn insights_funnel(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "insight:read")?;
    let params = params(&uri, body)?;
    let spec = FunnelSpec::parse(&params, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let all = run_app_query(&state, move |limits| async move {
        funnel::actors(&persons, project, &spec2, &limits).await
    })
    .await?;
    // The persons URLs: this funnel's parameters on the persons route.
    let base = url_on(
        &uri,
        &headers,
        &params,
        "/insights/funnel",
        "/persons/funnel",
        &[
            "funnel_step",
            "funnel_custom_steps",
            "funnel_step_breakdown",
            "format",
        ],
    );
    Ok(Json(json!({
        "result": funnel::steps(&spec, &all, &base),
        "last_refresh": now_iso(),
        "is_cached": false,
        "timezone": "UTC",
    })))
}

/// Trends of persons; served for `shown_as=Lifecycle`: one series per
/// status (new, returning, resurrecting, dormant), zero-filled per
/// period; and for `shown_as=Stickiness`: per event, the persons per
/// number of periods (a `StickinessQuery`'s answer).
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/insights/trend/",
    operation_id = "insights_trend",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("shown_as" = String, Query, description = "`Lifecycle` or `Stickiness` (the forms served)."),
        ("events" = Option<String>, Query, description = "JSON list with the one event of the lifecycle (stickiness: its events)."),
        ("date_from" = Option<String>, Query, description = "Start (default `-7d`)."),
        ("date_to" = Option<String>, Query, description = "End (default now)."),
        ("interval" = Option<String>, Query, description = "`hour`, `day` (default), `week` or `month`."),
        ("properties" = Option<String>, Query, description = "JSON list of property filters."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{result: [series], last_refresh, is_cached, timezone}`", body = Object),
        (status = 400, description = "Not a lifecycle nor stickiness, or a bad parameter"),
    )
)]
pub(crate) async fn insights_trend(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "insight:read")?;
    let mut params = params(&uri, body)?;
    match params.text("shown_as").as_deref() {
        Some("Lifecycle") => {}
        Some("Stickiness") => {
            let (q, _) = stickiness::legacy_query(&params)?;
            return Ok(Json(json!({
                "result": crate::query_insights::stickiness_query(&state, project, &q).await?,
                "last_refresh": now_iso(),
                "is_cached": false,
                "timezone": "UTC",
            })));
        }
        _ => {
            return Err(ApiError::invalid_attr(
                "shown_as",
                "invalid_input",
                "only shown_as=Lifecycle or Stickiness is served here; trends are POST …/query/ with a TrendsQuery",
            ))
        }
    }
    all_time(&state, project, &mut params).await?;
    let spec = LifecycleSpec::parse(&params, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let l = run_app_query(&state, move |limits| async move {
        lifecycle::compute(&persons, project, &spec2, &limits).await
    })
    .await?;
    Ok(Json(json!({
        "result": lifecycle::series(&spec, &l),
        "last_refresh": now_iso(),
        "is_cached": false,
        "timezone": "UTC",
    })))
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

/// The request's parameters on another route, as a URL ending in `&` (or
/// `?`) ready for more, without `drop`'s keys.
pub(crate) fn url_on(
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    params: &Params,
    from: &str,
    to: &str,
    drop: &[&str],
) -> String {
    let other: axum::http::Uri = uri
        .path()
        .replace(from, to)
        .parse()
        .unwrap_or_else(|_| uri.clone());
    let base = url_with(&other, headers, &[]);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.0.iter() {
        if !drop.contains(&k.as_str()) {
            let text = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            q.append_pair(k, &text);
        }
    }
    let q = q.finish();
    let base = base.split('?').next().unwrap_or_default().to_string();
    if q.is_empty() {
        format!("{base}?")
    } else {
        format!("{base}?{q}&")
    }
}

/// Which events (`funnel_correlation_type=events`, the default), event
/// property values (`event_with_properties`) or person property values
/// (`properties`) go with converting: PostHog's odds ratios, the ten
/// strongest each way, and the URLs of each row's persons.
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/insights/funnel/correlation/",
    operation_id = "insights_funnel_correlation",
    tag = "analytics",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("events" = Option<String>, Query, description = "The funnel's steps: a JSON list of `{id, type: \"events\", order, properties?}`."),
        ("funnel_correlation_type" = Option<String>, Query, description = "`events` (default), `properties` or `event_with_properties`."),
        ("funnel_correlation_names" = Option<String>, Query, description = "JSON list of person property names (or `[\"$all\"]`), for `properties`."),
        ("funnel_correlation_exclude_names" = Option<String>, Query, description = "JSON list of person property names to leave out."),
        ("funnel_correlation_event_names" = Option<String>, Query, description = "JSON list of events whose properties are correlated, for `event_with_properties`."),
        ("funnel_correlation_exclude_event_names" = Option<String>, Query, description = "JSON list of events to leave out."),
        ("funnel_correlation_event_exclude_property_names" = Option<String>, Query, description = "JSON list of event properties to leave out."),
        ("date_from" = Option<String>, Query, description = "Start (default `-7d`)."),
        ("date_to" = Option<String>, Query, description = "End (default now)."),
        ("funnel_window_days" = Option<i64>, Query, description = "Conversion window in days (default 14)."),
    ),
    request_body(content = Object, description = "The same parameters as JSON (optional)", content_type = "application/json"),
    responses(
        (status = 200, description = "`{result: {events: [{event, success_count, success_people_url, failure_count, failure_people_url, odds_ratio, correlation_type}], skewed}, last_refresh, is_cached}`", body = Object),
        (status = 400, description = "A bad parameter"),
    )
)]
pub(crate) async fn insights_funnel_correlation(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "insight:read")?;
    let params = params(&uri, body)?;
    let spec = CorrelationSpec::parse(&params, Utc::now())?;
    let persons = state.app().persons().clone();
    let spec2 = spec.clone();
    let c = run_app_query(&state, move |limits| async move {
        correlation::compute(&persons, project, &spec2, &limits).await
    })
    .await?;
    let base = url_on(
        &uri,
        &headers,
        &params,
        "/insights/funnel/correlation",
        "/persons/funnel/correlation",
        &[
            "funnel_correlation_person_entity",
            "funnel_correlation_property_values",
            "funnel_correlation_person_converted",
            "format",
        ],
    );
    // A row's value as its persons' filter takes it: a list or an object
    // by its JSON text (compared as text, as the tally named it), not
    // as a list of alternatives or a value the filter refuses.
    let as_filter_value = |v: &Value| match v {
        Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
        other => other.clone(),
    };
    let events: Vec<Value> = c
        .rows
        .iter()
        .map(|r| {
            let property = r.property.as_ref().map(|(k, v)| (k, as_filter_value(v)));
            let selector = match (&r.event, &property) {
                (Some(e), None) => {
                    ("funnel_correlation_person_entity", json!({"id": e, "type": "events"}))
                }
                (Some(e), Some((k, v))) => (
                    "funnel_correlation_person_entity",
                    json!({"id": e, "type": "events",
                           "properties": [{"key": k, "value": v, "type": "event", "operator": "exact"}]}),
                ),
                (None, Some((k, v))) => (
                    "funnel_correlation_property_values",
                    json!([{"key": k, "value": v, "type": "person", "operator": "exact"}]),
                ),
                (None, None) => ("funnel_correlation_person_entity", Value::Null),
            };
            let people = |converted: bool| {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair(selector.0, &selector.1.to_string());
                q.append_pair("funnel_correlation_person_converted", if converted { "true" } else { "false" });
                format!("{base}{}", q.finish())
            };
            json!({
                "event": {"event": r.name, "properties": {}, "elements": []},
                "success_count": r.success_count,
                "success_people_url": people(true),
                "failure_count": r.failure_count,
                "failure_people_url": people(false),
                "odds_ratio": r.odds_ratio,
                "correlation_type": if r.success { "success" } else { "failure" },
            })
        })
        .collect();
    Ok(Json(json!({
        "result": {"events": events, "skewed": c.skewed},
        "last_refresh": now_iso(),
        "is_cached": false,
    })))
}

/// The insights routes under both prefixes.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let mut r = axum::Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        for (path, m) in [
            (
                "/insights/funnel",
                get(insights_funnel).post(insights_funnel),
            ),
            ("/insights/trend", get(insights_trend).post(insights_trend)),
            (
                "/insights/funnel/correlation",
                get(insights_funnel_correlation).post(insights_funnel_correlation),
            ),
        ] {
            r = r
                .route(&format!("{prefix}{path}"), m.clone())
                .route(&format!("{prefix}{path}/"), m);
        }
    }
    r
}

/// Lifecycle's `date_from=all`: from the project's first event, as
/// PostHog's (funnels and correlation read `all` as no lower bound).
pub(crate) async fn all_time(state: &AppState, project: i64, params: &mut Params) -> ApiResult<()> {
    if params.text("date_from").as_deref() == Some("all") {
        let from = all_time_from(state, project).await?;
        params.0.insert("date_from".into(), Value::String(from));
    }
    Ok(())
}
