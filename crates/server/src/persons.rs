//! The persons API, PostHog's `PersonViewSet`, under
//! `/api/projects/{project}/persons/`, `/api/environments/{project}/persons/`
//! and the legacy `/api/person/` (the key's project). Shapes, statuses and
//! validation messages follow PostHog (`posthog-semantics.md` §1); where
//! Elide differs, `docs/api.md` says so.
//!
//! Scopes: reads `person:read`, writes `person:write`, activity
//! `activity_log:read`. Deletions count against the deletion rate limit.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elide_persons::{DeletePersons, DeletionState, PersonFilter, PropertyFilter, SplitSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::{Key, Limit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, number, page_url, present, JsonBody, Q};
use crate::views::{csv, ListedPerson, MinimalPerson, RetrievedPerson};
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
        for analytics in [
            "/funnel",
            "/funnel/correlation",
            "/lifecycle",
            "/trends",
            "/stickiness",
        ] {
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

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    distinct_id: Option<String>,
    email: Option<String>,
    search: Option<String>,
    properties: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    include_total: Option<String>,
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

async fn list(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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
    let results: Vec<ListedPerson> = page.results.iter().map(ListedPerson::from).collect();
    let mut body = json!({"results": results, "next": next, "previous": previous});
    if let Some(c) = count {
        body["count"] = json!(c);
    }
    Ok(Json(body).into_response())
}

fn csv_response(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response()
}

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

async fn create_refused(key: Key, Path(p): Path<HashMap<String, String>>) -> ApiResult<Response> {
    key.project(project_param(&p), "person:write")?;
    Err(ApiError::method_not_allowed(
        "Creating persons via this API is not allowed. Please create persons by sending an $identify event. See https://posthog.com/docs/product-analytics/identify for details.",
    ))
}

async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Json<RetrievedPerson>> {
    let project = key.project(project_param(&p), "person:read")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let app = state.app().clone();
    let person = blocking(move || Ok(app.persons().get(project, &id)?)).await?;
    Ok(Json(RetrievedPerson::from(&person)))
}

async fn update(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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

async fn destroy(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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

async fn bulk_delete(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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
    let errors: Vec<Value> = r
        .deletion_errors
        .iter()
        .map(|e| json!({"person_uuid": e.id}))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "persons_found": r.persons_found,
            "persons_deleted": r.persons_deleted,
            "events_queued_for_deletion": r.events_queued_for_deletion,
            "recordings_queued_for_deletion": r.recordings_queued_for_deletion,
            "deletion_errors": errors,
        })),
    )
        .into_response())
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

async fn delete_events(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    queue_deletion(state, key, p, true).await
}

async fn delete_recordings(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    queue_deletion(state, key, p, false).await
}

async fn delete_property(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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
    Ok((StatusCode::CREATED, Json(json!({"success": true}))).into_response())
}

async fn update_property(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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

async fn split(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
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
    Ok((StatusCode::CREATED, Json(json!({"success": true}))).into_response())
}

async fn timeline(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let project = key.project(project_param(&p), "person:read")?;
    let id = person_param(&p)?;
    check_person_id(&id)?;
    let persons = state.app().persons().clone();
    let points = elide_app::sql::timeline(&persons, project, &id).await?;
    Ok(Json(json!({ "points": points })))
}

#[derive(Debug, Default, Deserialize)]
struct ActivityQuery {
    limit: Option<String>,
    page: Option<String>,
}

async fn activity(
    state: AppState,
    key: Key,
    p: HashMap<String, String>,
    person: Option<String>,
    q: ActivityQuery,
) -> ApiResult<Json<Value>> {
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
    let results: Vec<Value> = entries
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|a| {
            json!({
                "user": null,
                "activity": a.activity,
                "scope": "Person",
                "item_id": a.person_uuid.map(|u| u.hyphenated().to_string()),
                "detail": a.detail,
                "created_at": elide_persons::persons::iso(a.created_at_us),
            })
        })
        .collect();
    Ok(Json(
        json!({"results": results, "next": more.then_some(page + 1), "previous": (page > 1).then(|| page - 1)}),
    ))
}

async fn person_activity(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    Q(q): Q<ActivityQuery>,
) -> ApiResult<Json<Value>> {
    let id = person_param(&p)?;
    check_person_id(&id)?;
    activity(state, key, p, Some(id), q).await
}

async fn project_activity(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    Q(q): Q<ActivityQuery>,
) -> ApiResult<Json<Value>> {
    activity(state, key, p, None, q).await
}

#[derive(Debug, Default, Deserialize)]
struct ResetBody {
    distinct_id: Option<Value>,
}

async fn reset(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<ResetBody>,
) -> ApiResult<Response> {
    let project = key.project(project_param(&p), "person:write")?;
    let did = match body.distinct_id {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(ApiError::invalid("distinct_id is required")),
    };
    let app = state.app().clone();
    blocking(move || {
        app.persons().reset_distinct_id(project, &did)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Debug, Default, Deserialize)]
struct StatusQuery {
    status: Option<String>,
    person_uuid: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

async fn deletion_status(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<StatusQuery>,
) -> ApiResult<Json<Value>> {
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
    let results: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| {
            json!({
                "person_uuid": d.person_uuid.hyphenated().to_string(),
                "created_at": d.requested_at,
                "status": d.status,
                "delete_verified_at": d.delete_verified_at,
            })
        })
        .collect();
    let next = (offset + limit < count).then(|| page_url(&uri, &headers, offset + limit, limit));
    let previous =
        (offset > 0).then(|| page_url(&uri, &headers, offset.saturating_sub(limit), limit));
    Ok(Json(
        json!({"count": count, "next": next, "previous": previous, "results": results}),
    ))
}

/// Most ids a batch lookup reads (PostHog ignores the rest silently).
const BATCH_CAP: usize = 200;

async fn batch_by_distinct_ids(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
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
        return Ok(Json(json!({"results": {}})));
    }
    let app = state.app().clone();
    let found = blocking(move || Ok(app.persons().by_distinct_ids(project, &ids)?)).await?;
    let results: Map<String, Value> = found
        .iter()
        .map(|(d, person)| (d.clone(), json!(MinimalPerson::from(person))))
        .collect();
    Ok(Json(json!({ "results": results })))
}

async fn batch_by_uuids(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
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
        return Ok(Json(json!({"results": {}})));
    }
    let app = state.app().clone();
    let found = blocking(move || Ok(app.persons().by_uuids(project, &uuids)?)).await?;
    let results: Map<String, Value> = found
        .iter()
        .map(|(u, person)| {
            (
                u.hyphenated().to_string(),
                json!(MinimalPerson::from(person)),
            )
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

#[derive(Debug, Default, Deserialize)]
struct ValuesQuery {
    key: Option<String>,
    value: Option<String>,
}

async fn values(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    Q(q): Q<ValuesQuery>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({"results": vals, "refreshing": false})))
}

async fn cohorts(key: Key, Path(p): Path<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    key.project(project_param(&p), "person:read")?;
    // Elide has no cohorts yet: every person belongs to none.
    Ok(Json(json!({"results": []})))
}

async fn analytics_later(key: Key, Path(p): Path<HashMap<String, String>>) -> ApiResult<Response> {
    key.project(project_param(&p), "person:read")?;
    Err(ApiError::not_implemented(
        "funnels, correlation, lifecycle and trends of persons are not served yet",
    ))
}
