//! Cohorts, PostHog's `CohortViewSet`: `GET/POST /api/projects/{id}/cohorts/`,
//! `GET/PATCH/DELETE …/cohorts/{cid}/`, `GET …/cohorts/{cid}/persons/`,
//! `PATCH …/cohorts/{cid}/add_persons_to_static_cohort/` and
//! `…/remove_person_from_static_cohort/`, and `GET
//! …/persons/cohorts/?person_id=` (the cohorts holding one person).
//!
//! Scopes: `cohort:read`, `cohort:write`; a cohort's persons are personal
//! data and need `person:read` as well. Static cohorts are lists kept by
//! the persons layer (made from a CSV of distinct ids or person UUIDs, or
//! through the API); dynamic ones are definitions whose members
//! [`elide_app::analytics::cohorts`] computes on each request over the
//! filtered scan, so a deleted person is never a member after its
//! deletion returns. `count` is computed the same way.

pub(crate) mod write;

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use elide_app::analytics::cohorts;
use elide_persons::CohortRow;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, number, page_url, PathParams};
use crate::query::run_app_query;
use crate::views::{csv, ListedPerson};
use crate::AppState;

/// Most cohorts one page lists.
const MAX_PAGE: usize = 1000;

/// A cohort as PostHog's `CohortSerializer` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CohortView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Legacy definition (`[]` when none).
    #[schema(value_type = Vec<Object>)]
    pub groups: Value,
    /// Definition (`null` for a static cohort).
    #[schema(value_type = Option<Object>)]
    pub filters: Value,
    /// Always null (no HogQL cohorts).
    #[schema(value_type = Option<Object>)]
    pub query: Value,
    /// Soft-deleted.
    pub deleted: bool,
    /// A list (true) or a definition.
    pub is_static: bool,
    /// Always false: members are computed when asked.
    pub is_calculating: bool,
    /// When `count` was computed (this answer).
    pub last_calculation: String,
    /// 1 when `count` could not be computed now (the definition refers to
    /// a cohort since removed), else 0.
    pub errors_calculating: u32,
    /// Members now.
    pub count: Option<u64>,
    /// Always null (keys make cohorts).
    #[schema(value_type = Option<Object>)]
    pub created_by: Value,
    /// When it was made.
    pub created_at: String,
}

fn view(c: &CohortRow, count: Option<u64>) -> CohortView {
    CohortView {
        id: c.id,
        name: c.name.clone(),
        description: c.description.clone(),
        groups: c
            .filters
            .get("groups")
            .filter(|g| !g.is_null())
            .cloned()
            .unwrap_or_else(|| json!([])),
        filters: c
            .filters
            .get("filters")
            .filter(|f| !f.is_null())
            .cloned()
            .unwrap_or(Value::Null),
        query: Value::Null,
        deleted: c.deleted,
        is_static: c.is_static,
        is_calculating: false,
        last_calculation: elide_persons::persons::iso(chrono::Utc::now().timestamp_micros()),
        errors_calculating: u32::from(count.is_none() && !c.deleted),
        count,
        created_by: Value::Null,
        created_at: elide_persons::persons::iso(c.created_at_us),
    }
}

/// The members of each cohort now (a static one's list, a dynamic one's
/// definition evaluated now); none for a soft-deleted one, or for one
/// whose definition cannot be evaluated now (it refers to a cohort since
/// removed: `errors_calculating` says so, the rest of the list still
/// answers).
async fn counts(state: &AppState, project: i64, list: &[CohortRow]) -> ApiResult<Vec<Option<u64>>> {
    let ids: Vec<(i64, bool)> = list.iter().map(|c| (c.id, c.deleted)).collect();
    let persons = state.app().persons().clone();
    run_app_query(state, move |limits| async move {
        let mut out = Vec::new();
        for (id, deleted) in ids {
            out.push(if deleted {
                None
            } else {
                match cohorts::members(&persons, project, id, &limits).await {
                    Ok(m) => Some(m.len() as u64),
                    Err(elide_app::AppError::InvalidQuery(e)) => {
                        tracing::warn!(cohort = id, error = %e, "cohort definition cannot be evaluated");
                        None
                    }
                    Err(e) => return Err(e),
                }
            });
        }
        Ok(out)
    })
    .await
}

fn cohort_id(p: &std::collections::HashMap<String, String>) -> ApiResult<i64> {
    p.get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(ApiError::not_found)
}

async fn live_cohort(state: &AppState, project: i64, id: i64) -> ApiResult<CohortRow> {
    let persons = state.app().persons().clone();
    blocking(move || Ok(persons.cohort(project, id)?))
        .await?
        .ok_or_else(ApiError::not_found)
}

/// The project's cohorts (soft-deleted ones left out), oldest first, with
/// their member counts now.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/cohorts/",
    operation_id = "cohorts_list",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("limit" = Option<u32>, Query, description = "Page size (default 100, at most 1000)."),
        ("offset" = Option<u32>, Query, description = "Cohorts to skip."),
    ),
    responses(
        (status = 200, description = "`{count, next, previous, results: [cohort]}`", body = Object),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "cohort:read")?;
    let q: Map<String, Value> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let text = |k: &str| q.get(k).and_then(Value::as_str);
    let limit: usize = number(text("limit"), "limit", 100)?;
    let offset: usize = number(text("offset"), "offset", 0)?;
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let persons = state.app().persons().clone();
    let all: Vec<CohortRow> = blocking(move || Ok(persons.cohorts(project)?))
        .await?
        .into_iter()
        .filter(|c| !c.deleted)
        .collect();
    let total = all.len();
    let page: Vec<CohortRow> = all.into_iter().skip(offset).take(limit).collect();
    let n = counts(&state, project, &page).await?;
    let results: Vec<CohortView> = page.iter().zip(n).map(|(c, n)| view(c, n)).collect();
    let next = (offset.saturating_add(limit) < total)
        .then(|| page_url(&uri, &headers, offset.saturating_add(limit), limit));
    let previous =
        (offset > 0).then(|| page_url(&uri, &headers, offset.saturating_sub(limit), limit));
    Ok(Json(
        json!({"count": total, "next": next, "previous": previous, "results": results}),
    ))
}

/// One cohort, with its member count now.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/cohorts/{id}/",
    operation_id = "cohorts_retrieve",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = i64, Path, description = "The cohort's id."),
    ),
    responses(
        (status = 200, description = "The cohort", body = CohortView),
        (status = 404, description = "No such cohort"),
    )
)]
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<CohortView>> {
    let project = key.path_project(&p, "cohort:read")?;
    let c = live_cohort(&state, project, cohort_id(&p)?).await?;
    let n = counts(&state, project, std::slice::from_ref(&c)).await?;
    Ok(Json(view(&c, n.first().copied().flatten())))
}

/// The persons of a cohort now, ordered by UUID, paged (`limit`, default
/// 100; `offset`), or as CSV with `format=csv`.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/cohorts/{id}/persons/",
    operation_id = "cohorts_persons",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = i64, Path, description = "The cohort's id."),
        ("limit" = Option<u32>, Query, description = "Page size (default 100, at most 10000)."),
        ("offset" = Option<u32>, Query, description = "Persons to skip."),
        ("format" = Option<String>, Query, description = "`csv` for CSV."),
    ),
    responses(
        (status = 200, description = "`{results: [person], next, previous}`, or CSV", body = Object),
        (status = 404, description = "No such cohort"),
    )
)]
pub(crate) async fn persons(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "cohort:read")?;
    key.path_project(&p, "person:read")?;
    let id = cohort_id(&p)?;
    live_cohort(&state, project, id).await?;
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit: usize = number(get("limit"), "limit", 100)?;
    let offset: usize = number(get("offset"), "offset", 0)?;
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
    let persons = state.app().persons().clone();
    let all = run_app_query(&state, move |limits| async move {
        cohorts::members(&persons, project, id, &limits).await
    })
    .await?;
    let total = all.len();
    let page: Vec<String> = all.into_iter().skip(offset).take(limit).collect();
    let persons = state.app().persons().clone();
    let people = blocking(move || {
        Ok(elide_app::analytics::actors::load(
            &persons, project, &page,
        )?)
    })
    .await?;
    if get("format") == Some("csv") {
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&people),
        )
            .into_response());
    }
    let next = (offset.saturating_add(limit) < total)
        .then(|| page_url(&uri, &headers, offset.saturating_add(limit), limit));
    let previous =
        (offset > 0).then(|| page_url(&uri, &headers, offset.saturating_sub(limit), limit));
    let listed: Vec<ListedPerson> = people.iter().map(ListedPerson::from).collect();
    Ok(Json(json!({"results": listed, "next": next, "previous": previous})).into_response())
}

/// The cohorts holding one person now: `person_id` is the person's UUID
/// (or its integer id).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/cohorts/",
    operation_id = "persons_cohorts",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("person_id" = String, Query, description = "The person's UUID or integer id."),
    ),
    responses(
        (status = 200, description = "`{results: [cohort]}`", body = Object),
        (status = 400, description = "`person_id` missing"),
        (status = 404, description = "No such person"),
    )
)]
pub(crate) async fn of_person(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    // Cohorts' names and definitions: both scopes, as in PostHog.
    let project = key.path_project(&p, "person:read")?;
    key.path_project(&p, "cohort:read")?;
    let person = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "person_id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::required("person_id"))?;
    let persons = state.app().persons().clone();
    let found = blocking(move || Ok(persons.get(project, person.trim())?)).await?;
    let uuid = found.uuid.hyphenated().to_string();
    let persons = state.app().persons().clone();
    let list = run_app_query(&state, move |limits| async move {
        cohorts::cohorts_of(&persons, project, &uuid, &limits).await
    })
    .await?;
    let results: Vec<CohortView> = list.iter().map(|(c, n)| view(c, Some(*n))).collect();
    Ok(Json(json!({"results": results})))
}

/// The cohort routes under both prefixes.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        for (path, m) in [
            ("/cohorts", get(list).post(write::create)),
            (
                "/cohorts/{id}",
                get(retrieve).patch(write::update).delete(write::destroy),
            ),
            ("/cohorts/{id}/persons", get(persons)),
            (
                "/cohorts/{id}/add_persons_to_static_cohort",
                patch(write::add_persons),
            ),
            (
                "/cohorts/{id}/remove_person_from_static_cohort",
                patch(write::remove_person),
            ),
        ] {
            r = r
                .route(&format!("{prefix}{path}"), m.clone())
                .route(&format!("{prefix}{path}/"), m);
        }
    }
    r
}
