//! The persons API, PostHog's `PersonViewSet`, under
//! `/api/projects/{project}/persons/`, `/api/environments/{project}/persons/`
//! and the legacy `/api/person/` (the key's project). Shapes, statuses and
//! validation messages follow PostHog (`posthog-semantics.md` §1); where
//! Elide differs, `docs/api.md` says so.
//!
//! Scopes: reads `person:read`, writes `person:write`, activity
//! `activity_log:read`. Deletions count against the deletion rate limit.
//!
//! Each handler carries its OpenAPI operation (`#[utoipa::path]`) under
//! `/api/projects/{project_id}/persons/…`; [`crate::openapi`] copies them
//! to `/api/environments/…`. The legacy `/api/person/…` routes (the key's
//! project, same handlers) are served but left out of the document; only
//! `/api/person.csv`, which has no other form, is in it.

use std::collections::HashMap;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elide_persons::{DeletePersons, DeletionState, PersonFilter, PropertyFilter, SplitSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::IntoParams;

use crate::auth::{Key, Limit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, number, page_url, present, JsonBody, PathParams, Q};
use crate::views::{
    csv, ActivityEntry, ActivityPage, BatchPersons, BulkDeleteAnswer, BulkDeleteBody, Cohorts,
    DeletePropertyBody, DeletionStatusPage, DeletionStatusView, DistinctIdsBody, ListedPerson,
    MinimalPerson, PersonPage, PersonUpdateBody, PropertyValue, PropertyValues,
    ResetDistinctIdBody, RetrievedPerson, SplitBody, Success, Timeline, UpdatePropertyBody,
    UuidsBody,
};
use crate::AppState;

/// Route paths of a person collection, relative to a prefix, with and
/// without PostHog's trailing slash.
fn both(
    r: Router<AppState>,
    path: &str,
    m: axum::routing::MethodRouter<AppState>,
) -> Router<AppState> {
    r.route(path, m.clone()).route(&format!("{path}/"), m)
}

/// The analytics routes of a person collection, all [`analytics_later`]
/// (GET and POST).
pub(crate) const ANALYTICS_ROUTES: &[&str] = &[
    "/funnel",
    "/funnel/correlation",
    "/lifecycle",
    "/trends",
    "/stickiness",
];

/// The persons routes under every prefix.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in [
        "/api/projects/{project}/persons",
        "/api/environments/{project}/persons",
        "/api/person",
    ] {
        let p = |s: &str| format!("{prefix}{s}");
        r = both(r, &p(""), get(list).post(create_refused));
        r = both(r, &p("/bulk_delete"), post(bulk_delete));
        r = both(r, &p("/deletion_status"), get(deletion_status));
        r = both(r, &p("/reset_person_distinct_id"), post(reset));
        r = both(r, &p("/batch_by_distinct_ids"), post(batch_by_distinct_ids));
        r = both(r, &p("/batch_by_uuids"), post(batch_by_uuids));
        r = both(r, &p("/values"), get(values));
        r = both(r, &p("/cohorts"), get(cohorts));
        r = both(r, &p("/activity"), get(project_activity));
        for &analytics in ANALYTICS_ROUTES {
            r = both(r, &p(analytics), get(analytics_later).post(analytics_later));
        }
        r = both(
            r,
            &p("/{id}"),
            get(retrieve).put(update).patch(update).delete(destroy),
        );
        r = both(r, &p("/{id}/delete_events"), post(delete_events));
        r = both(r, &p("/{id}/delete_recordings"), post(delete_recordings));
        r = both(r, &p("/{id}/delete_property"), post(delete_property));
        r = both(r, &p("/{id}/update_property"), post(update_property));
        r = both(r, &p("/{id}/split"), post(split));
        r = both(r, &p("/{id}/properties_timeline"), get(timeline));
        r = both(r, &p("/{id}/activity"), get(person_activity));
    }
    r = r.route("/api/person.csv", get(list_csv));
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        r = both(
            r,
            &format!("{prefix}/session_recordings"),
            get(crate::recordings::list),
        );
    }
    r
}

/// The project path parameter (`@current` on the legacy routes).
pub(crate) fn project_param(p: &HashMap<String, String>) -> &str {
    p.get("project").map_or("@current", String::as_str)
}

fn person_param(p: &HashMap<String, String>) -> ApiResult<String> {
    p.get("id").cloned().ok_or_else(ApiError::not_found)
}

/// A person path id must be an integer id or a UUID (PostHog's 400).
fn check_person_id(id: &str) -> ApiResult<()> {
    if id.parse::<i64>().is_ok() || uuid::Uuid::parse_str(id).is_ok() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "The ID provided does not look like a personID. If you are using a distinctId, please use /persons?distinct_id={id} instead."
        )))
    }
}

/// Filters and paging of a person listing (all filters must hold).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only the person that owns this distinct id.
    distinct_id: Option<String>,
    /// Only persons whose `email` property is this.
    email: Option<String>,
    /// Substring of email or name (case-insensitive), or an exact distinct
    /// id or UUID.
    search: Option<String>,
    /// Property filters: a JSON list of `{"key", "value", "operator"}`
    /// (`exact` by default; `type: cohort` is refused).
    properties: Option<String>,
    /// Page size, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Persons to skip (default 0).
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
    /// Any value but `false` or `0`: the answer has `count`.
    include_total: Option<String>,
    /// `csv`: answer CSV text instead of JSON.
    format: Option<String>,
}

fn filter_of(q: &ListQuery) -> ApiResult<PersonFilter> {
    let limit: usize = number(q.limit.as_deref(), "limit", 100)?;
    let offset: usize = number(q.offset.as_deref(), "offset", 0)?;
    if limit == 0 || limit > elide_persons::persons::MAX_LIST_LIMIT {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            format!(
                "limit must be between 1 and {}",
                elide_persons::persons::MAX_LIST_LIMIT
            ),
        ));
    }
    let properties: Vec<PropertyFilter> = match q.properties.as_deref() {
        None | Some("") => Vec::new(),
        Some(s) => parse_property_filters(s)?,
    };
    Ok(PersonFilter {
        distinct_id: q.distinct_id.clone(),
        email: q.email.clone(),
        search: q.search.clone(),
        properties,
        limit,
        offset,
    })
}

/// PostHog's `properties` parameter: a JSON list of filters (`type` and
/// the default `exact` operator allowed; `type: cohort` refused).
fn parse_property_filters(s: &str) -> ApiResult<Vec<PropertyFilter>> {
    let v: Value = serde_json::from_str(s).map_err(|e| {
        ApiError::invalid_attr(
            "properties",
            "invalid_input",
            format!("Properties are unparsable: {e}"),
        )
    })?;
    let items = match v {
        Value::Array(items) => items,
        Value::Object(_) => vec![v],
        _ => {
            return Err(ApiError::invalid_attr(
                "properties",
                "invalid_input",
                "Properties are unparsable: expected a list of filters",
            ))
        }
    };
    items
        .into_iter()
        .map(|mut f| {
            if let Value::Object(o) = &mut f {
                if o.get("type").and_then(Value::as_str) == Some("cohort") {
                    return Err(ApiError::invalid_attr(
                        "properties",
                        "invalid_input",
                        "cohort filters are not supported yet",
                    ));
                }
                o.remove("type");
                o.entry("operator").or_insert_with(|| json!("exact"));
            }
            serde_json::from_value(f).map_err(|e| {
                ApiError::invalid_attr(
                    "properties",
                    "invalid_input",
                    format!("Properties are unparsable: {e}"),
                )
            })
        })
        .collect()
}

/// List the project's persons, newest first, filtered and paged (or as
/// CSV with `format=csv`).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/",
    operation_id = "persons_list",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ListQuery,
    ),
    responses(
        (status = 200, description = "A page of persons (JSON), or every person of the page as CSV with `format=csv`", content((PersonPage = "application/json"), (String = "text/csv"))),
    )
)]
async fn list(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<ListQuery>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:read")?;
    let filter = filter_of(&q)?;
    let csv_wanted = q.format.as_deref() == Some("csv");
    let total = q
        .include_total
        .as_deref()
        .is_some_and(|v| v != "false" && v != "0");
    let app = state.app().clone();
    let f = filter.clone();
    let (page, count) = blocking(move || {
        let page = app.persons().list(project, &f)?;
        let count = if total {
            Some(app.persons().count(project, &f)?)
        } else {
            None
        };
        Ok((page, count))
    })
    .await?;
    if csv_wanted {
        return Ok(csv_response(csv(&page.results)));
    }
    let next = page
        .next_offset
        .map(|o| page_url(&uri, &headers, o, filter.limit));
    let previous = (filter.offset > 0).then(|| {
        page_url(
            &uri,
            &headers,
            filter.offset.saturating_sub(filter.limit),
            filter.limit,
        )
    });
    Ok(Json(PersonPage {
        count,
        next,
        previous,
        results: page.results.iter().map(ListedPerson::from).collect(),
    })
    .into_response())
}

fn csv_response(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The key's project's persons as CSV (at most 10000), filtered as the
/// listing.
#[utoipa::path(
    get,
    path = "/api/person.csv",
    operation_id = "persons_csv",
    tag = "persons",
    params(ListQuery),
    responses(
        (status = 200, description = "One row per person", content((String = "text/csv"))),
    )
)]
async fn list_csv(
    State(state): State<AppState>,
    key: Key,
    Q(q): Q<ListQuery>,
) -> ApiResult<Response> {
    let project = key.project("@current", "person:read")?;
    let mut filter = filter_of(&q)?;
    filter.limit = elide_persons::persons::MAX_LIST_LIMIT;
    let app = state.app().clone();
    let page = blocking(move || Ok(app.persons().list(project, &filter)?)).await?;
    Ok(csv_response(csv(&page.results)))
}

/// Refused: persons are made by `$identify` events (405, as PostHog).
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/",
    operation_id = "persons_create",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 405, description = "Creating persons through the API is not allowed"),
    )
)]
async fn create_refused(key: Key, PathParams(p): PathParams) -> ApiResult<Response> {
    key.project(project_param(&p), "person:write")?;
    Err(ApiError::method_not_allowed(
        "Creating persons via this API is not allowed. Please create persons by sending an $identify event. See https://posthog.com/docs/product-analytics/identify for details.",
    ))
}

/// One person, by integer id or UUID.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/",
    operation_id = "persons_retrieve",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    responses(
        (status = 200, description = "The person", body = RetrievedPerson),
    )
)]
async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<RetrievedPerson>> {
    let project = key.project(project_param(&p), "person:read")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let app = state.app().clone();
    let person = blocking(move || Ok(app.persons().get(project, &id)?)).await?;
    Ok(Json(RetrievedPerson::from(&person)))
}

/// Set properties of a person (`$set` of the body's `properties`).
#[utoipa::path(
    method(put, patch),
    path = "/api/projects/{project_id}/persons/{id}/",
    operation_id = "persons_update",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    request_body(content = PersonUpdateBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Properties set"),
    )
)]
async fn update(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let props = match body.get("properties") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "properties",
                "invalid_input",
                "properties must be an object",
            ))
        }
        // PostHog's body, with its code and detail swapped.
        None => {
            return Err(ApiError::invalid_attr(
                "properties",
                "This field is required.",
                "required",
            ))
        }
    };
    let app = state.app().clone();
    blocking(move || {
        // PostHog reads only the properties, and sets them ($set).
        if !props.is_empty() {
            app.persons().update_properties(project, &id, props)?;
        } else {
            app.persons().get(project, &id)?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Delete a person; `delete_events`, `delete_recordings` and
/// `keep_person` count by presence.
#[utoipa::path(
    delete,
    path = "/api/projects/{project_id}/persons/{id}/",
    operation_id = "persons_destroy",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
        ("delete_events" = Option<String>, Query, description = "Present (whatever its value): also delete the person's events."),
        ("delete_recordings" = Option<String>, Query, description = "Present: also delete the person's recordings."),
        ("keep_person" = Option<String>, Query, description = "Present: keep the profile, delete only the data asked for."),
    ),
    responses(
        (status = 202, description = "Deletion queued"),
    )
)]
async fn destroy(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    state.limits().check(key.0.id, Limit::Delete)?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let req = DeletePersons {
        uuids: Vec::new(),
        distinct_ids: Vec::new(),
        delete_events: present(&uri, "delete_events"),
        delete_recordings: present(&uri, "delete_recordings"),
        keep_person: present(&uri, "keep_person"),
    };
    let app = state.app().clone();
    blocking(move || {
        let person = app.persons().get(project, &id)?;
        let mut req = req;
        req.uuids = vec![person.uuid.hyphenated().to_string()];
        app.persons().delete(project, &req)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// PostHog's `bool()` of a JSON value: `"false"` is true.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

fn string_list(v: Option<&Value>, field: &str) -> ApiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(ApiError::invalid_attr(
                    field,
                    "invalid_input",
                    format!("{field} must be a list of strings"),
                )),
            })
            .collect(),
        Some(_) => Err(ApiError::invalid_attr(
            field,
            "invalid_input",
            format!("{field} must be a list"),
        )),
    }
}

/// Delete up to 1000 persons by UUID or distinct id.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/bulk_delete/",
    operation_id = "persons_bulk_delete",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = BulkDeleteBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Deletion queued", body = BulkDeleteAnswer),
    )
)]
async fn bulk_delete(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    state.limits().check(key.0.id, Limit::Delete)?;
    let ids = string_list(body.get("ids"), "ids")?;
    let dids = string_list(body.get("distinct_ids"), "distinct_ids")?;
    // PostHog's checks, in its order.
    if !ids.is_empty() && !dids.is_empty() {
        return Err(ApiError::invalid(
            "You must provide either distinct_ids or ids, not both",
        ));
    }
    if dids.len() > 1000 {
        return Err(ApiError::invalid(
            "You can only pass 1000 distinct_ids in one call",
        ));
    }
    if ids.len() > 1000 {
        return Err(ApiError::invalid("You can only pass 1000 ids in one call"));
    }
    if ids.is_empty() && dids.is_empty() {
        return Err(ApiError::invalid(
            "You need to specify either distinct_ids or ids",
        ));
    }
    for u in &ids {
        if uuid::Uuid::parse_str(u).is_err() {
            return Err(ApiError::invalid_attr(
                "ids",
                "invalid_input",
                format!("{u:?} is not a valid UUID"),
            ));
        }
    }
    let req = DeletePersons {
        uuids: ids,
        distinct_ids: dids,
        delete_events: truthy(body.get("delete_events")),
        delete_recordings: truthy(body.get("delete_recordings")),
        keep_person: truthy(body.get("keep_person")),
    };
    let app = state.app().clone();
    let r = blocking(move || Ok(app.persons().delete(project, &req)?)).await?;
    let answer = BulkDeleteAnswer {
        // The persons layer reports the ids that named nobody as its
        // errors; PostHog's `deletion_errors` are persons that failed.
        deletion_errors: Vec::new(),
        not_found: r.deletion_errors.into_iter().map(|e| e.id).collect(),
        events_queued_for_deletion: r.events_queued_for_deletion,
        persons_deleted: r.persons_deleted,
        persons_found: r.persons_found,
        recordings_queued_for_deletion: r.recordings_queued_for_deletion,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

async fn queue_deletion(
    state: AppState,
    key: Key,
    p: HashMap<String, String>,
    events: bool,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    state.limits().check(key.0.id, Limit::Delete)?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let app = state.app().clone();
    blocking(move || {
        let person = app.persons().get(project, &id)?;
        app.persons().delete(
            project,
            &DeletePersons {
                uuids: vec![person.uuid.hyphenated().to_string()],
                distinct_ids: Vec::new(),
                delete_events: events,
                delete_recordings: !events,
                keep_person: true,
            },
        )?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Delete a person's events, keeping the profile.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/{id}/delete_events/",
    operation_id = "persons_delete_events",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    responses(
        (status = 202, description = "Deletion queued"),
    )
)]
async fn delete_events(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    queue_deletion(state, key, p, true).await
}

/// Delete a person's recordings, keeping the profile.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/{id}/delete_recordings/",
    operation_id = "persons_delete_recordings",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    responses(
        (status = 202, description = "Deletion queued"),
    )
)]
async fn delete_recordings(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    queue_deletion(state, key, p, false).await
}

/// Remove one property of a person.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/{id}/delete_property/",
    operation_id = "persons_delete_property",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    request_body(content = DeletePropertyBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Property removed", body = Success),
    )
)]
async fn delete_property(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let prop = match body.get("$unset") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::invalid_attr(
                "$unset",
                "This field is required.",
                "required",
            ))
        }
    };
    let app = state.app().clone();
    blocking(move || {
        app.persons().delete_property(project, &id, &prop)?;
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Success { success: true })).into_response())
}

/// Set one property of a person.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/{id}/update_property/",
    operation_id = "persons_update_property",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    request_body(content = UpdatePropertyBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Property set"),
    )
)]
async fn update_property(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let Some(value) = body.get("value").cloned() else {
        return Err(ApiError::invalid_attr(
            "value",
            "This field is required.",
            "required",
        ));
    };
    let prop = match body.get("key") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::invalid_attr(
                "key",
                "This field is required.",
                "required",
            ))
        }
    };
    let app = state.app().clone();
    blocking(move || {
        let mut set = Map::new();
        set.insert(prop, value);
        app.persons().update_properties(project, &id, set)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Split distinct ids off a person, each to a new person.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/{id}/split/",
    operation_id = "persons_split",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    request_body(content = SplitBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Split done", body = Success),
    )
)]
async fn split(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let main = body.get("main_distinct_id").filter(|v| !v.is_null());
    let ids = body.get("distinct_ids_to_split").filter(|v| !v.is_null());
    let spec = match (main, ids) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Provide either main_distinct_id or distinct_ids_to_split, not both",
            ))
        }
        (Some(Value::String(m)), None) => SplitSpec::Main(m.clone()),
        (Some(_), None) => {
            return Err(ApiError::invalid_attr(
                "main_distinct_id",
                "invalid_input",
                "main_distinct_id must be a string",
            ))
        }
        (None, Some(Value::Array(items))) => {
            let ids: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect();
            match ids {
                Some(ids) if !ids.is_empty() => SplitSpec::Ids(ids),
                _ => {
                    return Err(ApiError::invalid_attr(
                        "distinct_ids_to_split",
                        "invalid_input",
                        "distinct_ids_to_split must be a non-empty list of strings",
                    ))
                }
            }
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_attr(
                "distinct_ids_to_split",
                "invalid_input",
                "distinct_ids_to_split must be a non-empty list of strings",
            ))
        }
        (None, None) => SplitSpec::AllButFirst,
    };
    let app = state.app().clone();
    blocking(move || {
        app.persons().split(project, &id, &spec)?;
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Success { success: true })).into_response())
}

/// A person's property history, from its events.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/properties_timeline/",
    operation_id = "persons_properties_timeline",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    responses(
        (status = 200, description = "The history", body = Timeline),
    )
)]
async fn timeline(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<Timeline>> {
    let project = key.project(project_param(&p), "person:read")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let persons = state.app().persons().clone();
    let points = elide_app::sql::timeline(&persons, project, &id).await?;
    Ok(Json(Timeline {
        points: points.into_iter().map(Into::into).collect(),
    }))
}

/// Paging of the activity log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ActivityQuery {
    /// Entries per page, 1 to 1000 (default 10).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Page number, from 1.
    #[param(value_type = Option<u32>)]
    page: Option<String>,
}

async fn activity(
    state: AppState,
    key: Key,
    p: HashMap<String, String>,
    person: Option<String>,
    q: ActivityQuery,
) -> ApiResult<Json<ActivityPage>> {
    let project = key.project(project_param(&p), "activity_log:read")?;
    let limit: usize = number(q.limit.as_deref(), "limit", 10)?;
    let page: usize = number(q.page.as_deref(), "page", 1)?;
    if limit == 0 || limit > 1000 || page == 0 || page > 1_000_000 {
        return Err(ApiError::invalid(
            "limit must be 1..1000 and page at least 1",
        ));
    }
    let app = state.app().clone();
    let want = limit * page + 1;
    let entries =
        blocking(move || Ok(app.persons().activity(project, person.as_deref(), want)?)).await?;
    let start = limit * (page - 1);
    let more = entries.len() > limit * page;
    let results: Vec<ActivityEntry> = entries
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|a| ActivityEntry {
            activity: a.activity,
            created_at: elide_persons::persons::iso(a.created_at_us),
            detail: a.detail,
            item_id: a.person_uuid.map(|u| u.hyphenated().to_string()),
            scope: "Person",
            user: None,
        })
        .collect();
    Ok(Json(ActivityPage {
        next: more.then_some(page + 1),
        previous: (page > 1).then(|| page - 1),
        results,
    }))
}

/// The activity log of one person.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/activity/",
    operation_id = "persons_activity_retrieve",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
        ActivityQuery,
    ),
    responses(
        (status = 200, description = "A page of entries", body = ActivityPage),
    )
)]
async fn person_activity(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    Q(q): Q<ActivityQuery>,
) -> ApiResult<Json<ActivityPage>> {
    let id = person_param(&p)?;
    check_person_id(&id)?;
    activity(state, key, p, Some(id), q).await
}

/// The activity log of the project's persons.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/activity/",
    operation_id = "persons_activity",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ActivityQuery,
    ),
    responses(
        (status = 200, description = "A page of entries", body = ActivityPage),
    )
)]
async fn project_activity(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    Q(q): Q<ActivityQuery>,
) -> ApiResult<Json<ActivityPage>> {
    activity(state, key, p, None, q).await
}

#[derive(Debug, Default, Deserialize)]
struct ResetBody {
    distinct_id: Option<Value>,
}

/// Detach a distinct id from its person and lift a deletion's block on it.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/reset_person_distinct_id/",
    operation_id = "persons_reset_person_distinct_id",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = ResetDistinctIdBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Reset done"),
    )
)]
async fn reset(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<ResetBody>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    let did = match body.distinct_id {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(ApiError::invalid("distinct_id is required")),
    };
    let app = state.app().clone();
    blocking(
        move || match app.persons().reset_distinct_id(project, &did) {
            // PostHog answers 202 whether or not the id was known.
            Ok(_) | Err(elide_persons::PersonsError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        },
    )
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Filters and paging of the deletion statuses.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// `pending`, `completed` or `all` (the default).
    status: Option<String>,
    /// Only the deletion of this person (UUID).
    person_uuid: Option<String>,
    /// Page size, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Deletions to skip (default 0).
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
}

/// Status of the project's person deletions (an Elide addition).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/deletion_status/",
    operation_id = "persons_deletion_status",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        StatusQuery,
    ),
    responses(
        (status = 200, description = "A page of deletions", body = DeletionStatusPage),
    )
)]
async fn deletion_status(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<StatusQuery>,
) -> ApiResult<Json<DeletionStatusPage>> {
    let project = key.project(project_param(&p), "person:read")?;
    let state_filter = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some("pending") => Some(DeletionState::Pending),
        Some("completed") => Some(DeletionState::Completed),
        Some(other) => {
            return Err(ApiError::invalid_attr(
                "status",
                "invalid_choice",
                format!("\"{other}\" is not a valid choice."),
            ))
        }
    };
    if let Some(u) = q.person_uuid.as_deref().filter(|u| !u.is_empty()) {
        if uuid::Uuid::parse_str(u).is_err() {
            return Err(ApiError::invalid_attr(
                "person_uuid",
                "invalid",
                "Must be a valid UUID.",
            ));
        }
    }
    let limit: usize = number(q.limit.as_deref(), "limit", 100)?;
    let offset: usize = number(q.offset.as_deref(), "offset", 0)?;
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            "limit must be between 1 and 10000",
        ));
    }
    let app = state.app().clone();
    let person = q.person_uuid.clone().filter(|u| !u.is_empty());
    let all = blocking(move || {
        Ok(app.persons().deletion_status(
            project,
            person.as_deref(),
            state_filter,
            usize::MAX,
            0,
        )?)
    })
    .await?;
    let count = all.len();
    let results: Vec<DeletionStatusView> = all
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|d| DeletionStatusView {
            created_at: d.requested_at,
            delete_verified_at: d.delete_verified_at,
            person_uuid: d.person_uuid.hyphenated().to_string(),
            status: d.status,
        })
        .collect();
    let next = (offset + limit < count).then(|| page_url(&uri, &headers, offset + limit, limit));
    let previous =
        (offset > 0).then(|| page_url(&uri, &headers, offset.saturating_sub(limit), limit));
    Ok(Json(DeletionStatusPage {
        count,
        next,
        previous,
        results,
    }))
}

/// Most ids a batch lookup reads (PostHog ignores the rest silently).
const BATCH_CAP: usize = 200;

/// Persons of up to 200 distinct ids.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/batch_by_distinct_ids/",
    operation_id = "persons_batch_by_distinct_ids",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = DistinctIdsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The persons found, by distinct id", body = BatchPersons),
    )
)]
async fn batch_by_distinct_ids(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<BatchPersons>> {
    let project = key.project(project_param(&p), "person:read")?;
    let ids: Vec<String> = match body.get("distinct_ids") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .take(BATCH_CAP)
            .collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Ok(Json(BatchPersons {
            results: Default::default(),
        }));
    }
    let app = state.app().clone();
    let found = blocking(move || Ok(app.persons().by_distinct_ids(project, &ids)?)).await?;
    let results = found
        .iter()
        .map(|(d, person)| (d.clone(), MinimalPerson::from(person)))
        .collect();
    Ok(Json(BatchPersons { results }))
}

/// Persons of up to 200 UUIDs.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/batch_by_uuids/",
    operation_id = "persons_batch_by_uuids",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = UuidsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The persons found, by UUID", body = BatchPersons),
    )
)]
async fn batch_by_uuids(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<BatchPersons>> {
    let project = key.project(project_param(&p), "person:read")?;
    let uuids: Vec<String> = match body.get("uuids") {
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for i in items.iter().take(BATCH_CAP) {
                match i.as_str().filter(|s| uuid::Uuid::parse_str(s).is_ok()) {
                    Some(s) => out.push(s.to_string()),
                    None => return Err(ApiError::invalid("One or more UUIDs are invalid.")),
                }
            }
            out
        }
        _ => Vec::new(),
    };
    if uuids.is_empty() {
        return Ok(Json(BatchPersons {
            results: Default::default(),
        }));
    }
    let app = state.app().clone();
    let found = blocking(move || Ok(app.persons().by_uuids(project, &uuids)?)).await?;
    let results = found
        .iter()
        .map(|(u, person)| (u.hyphenated().to_string(), MinimalPerson::from(person)))
        .collect();
    Ok(Json(BatchPersons { results }))
}

/// Which property's values.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ValuesQuery {
    /// The property (required).
    key: Option<String>,
    /// Only values containing this (case-insensitive).
    value: Option<String>,
}

/// The values a person property takes, most common first.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/values/",
    operation_id = "persons_values",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ValuesQuery,
    ),
    responses(
        (status = 200, description = "The values", body = PropertyValues),
    )
)]
async fn values(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    Q(q): Q<ValuesQuery>,
) -> ApiResult<Json<PropertyValues>> {
    let project = key.project(project_param(&p), "person:read")?;
    let Some(prop) = q.key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::invalid_attr("key", "required", "key is required"));
    };
    let app = state.app().clone();
    let vals = blocking(move || {
        Ok(app
            .persons()
            .property_values(project, &prop, q.value.as_deref())?)
    })
    .await?;
    Ok(Json(PropertyValues {
        refreshing: false,
        results: vals
            .into_iter()
            .map(|v| PropertyValue {
                count: v.count,
                name: v.name,
            })
            .collect(),
    }))
}

/// A person's cohorts: always none (Elide has no cohorts yet).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/cohorts/",
    operation_id = "persons_cohorts",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 200, description = "No cohorts", body = Cohorts),
    )
)]
async fn cohorts(key: Key, PathParams(p): PathParams) -> ApiResult<Json<Cohorts>> {
    key.project(project_param(&p), "person:read")?;
    // Elide has no cohorts yet: every person belongs to none.
    Ok(Json(Cohorts {
        results: Vec::new(),
    }))
}

/// Funnels, correlation, lifecycle, trends and stickiness of persons: not
/// served yet (501). Documented at `trends/`; [`crate::openapi`] copies the
/// operation to `funnel/`, `funnel/correlation/`, `lifecycle/` and
/// `stickiness/`.
#[utoipa::path(
    method(get, post),
    path = "/api/projects/{project_id}/persons/trends/",
    operation_id = "persons_trends",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 501, description = "Not served yet"),
    )
)]
async fn analytics_later(key: Key, PathParams(p): PathParams) -> ApiResult<Response> {
    key.project(project_param(&p), "person:read")?;
    Err(ApiError::not_implemented(
        "funnels, correlation, lifecycle and trends of persons are not served yet",
    ))
}
