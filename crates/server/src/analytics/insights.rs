//! The legacy insight routes (`…/insights/funnel/`,
//! `…/insights/funnel/correlation/`, `…/insights/trend/?shown_as=Lifecycle|Stickiness`,
//! scope `insight:read`).

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::Utc;
use elide_app::analytics::correlation::{self, CorrelationSpec};
use elide_app::analytics::funnel::{self, FunnelSpec};
use elide_app::analytics::lifecycle::{self, LifecycleSpec};
use elide_app::analytics::stickiness;
use serde_json::{json, Value};

use super::*;
use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, PathParams};
use crate::query::run_app_query;
use crate::AppState;

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
