//! Writing cohorts: create (JSON, or a multipart form with a CSV of
//! distinct ids or person UUIDs), change, soft and hard delete, and the
//! lists of static cohorts.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use elide_app::analytics::cohorts;
use elide_persons::cohorts::{CohortPatch, CohortPeople};
use elide_persons::CohortRow;
use serde_json::{json, Map, Value};

use super::{cohort_id, counts, live_cohort, view, CohortView};
use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, JsonBody, PathParams};
use crate::query::run_app_query;
use crate::AppState;

/// The distinct ids (or person UUIDs) of an uploaded CSV: a header row
/// naming `distinct_id` or `person_id` picks that column; without one,
/// the first column of every row is a distinct id.
fn csv_people(bytes: &[u8]) -> ApiResult<CohortPeople> {
    let bad = |e: csv::Error| {
        ApiError::invalid_attr(
            "csv",
            "invalid_input",
            format!("the CSV is unreadable: {e}"),
        )
    };
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes)
        .into_records();
    let mut out = CohortPeople::default();
    let Some(first) = rows.next().transpose().map_err(bad)? else {
        return Ok(out);
    };
    let header = first.iter().position(|h| {
        let h = h.trim().to_ascii_lowercase();
        h == "distinct_id" || h == "distinct id" || h == "person_id"
    });
    let (column, uuids) = match header {
        Some(i) => (
            i,
            first
                .get(i)
                .is_some_and(|h| h.trim().eq_ignore_ascii_case("person_id")),
        ),
        None => {
            if let Some(v) = first.get(0).map(str::trim).filter(|v| !v.is_empty()) {
                out.distinct_ids.push(v.to_string());
            }
            (0, false)
        }
    };
    for r in rows {
        let r = r.map_err(bad)?;
        if let Some(v) = r.get(column).map(str::trim).filter(|v| !v.is_empty()) {
            if uuids {
                out.uuids.push(v.to_string());
            } else {
                out.distinct_ids.push(v.to_string());
            }
        }
    }
    Ok(out)
}

/// What a create or update request asks for.
#[derive(Debug, Default)]
struct CohortInput {
    fields: Map<String, Value>,
    people: Option<CohortPeople>,
}

/// A JSON body, or a multipart form (PostHog's CSV upload: a `csv` file
/// and text fields).
async fn input(state: &AppState, req: Request) -> ApiResult<CohortInput> {
    let multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/form-data"));
    if !multipart {
        let JsonBody(body) = JsonBody::<Value>::from_request(req, state).await?;
        let Value::Object(fields) = body else {
            return Err(ApiError::invalid(
                "Invalid data. Expected a dictionary, but got a different type.",
            ));
        };
        let people = match (fields.get("person_ids"), fields.get("distinct_ids")) {
            (None, None) => None,
            (u, d) => Some(CohortPeople {
                uuids: strings(u, "person_ids")?,
                distinct_ids: strings(d, "distinct_ids")?,
            }),
        };
        return Ok(CohortInput { fields, people });
    }
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::invalid(format!("the form is unreadable: {}", e.body_text())))?;
    let mut out = CohortInput::default();
    let unreadable = |e: axum::extract::multipart::MultipartError| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::body_too_large(),
        _ => ApiError::invalid(format!("the form is unreadable: {}", e.body_text())),
    };
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(unreadable)?;
        if name == "csv" {
            // Bounded by the request's limit (a 413 past it).
            out.people = Some(csv_people(&bytes)?);
        } else {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid_attr(&name, "invalid_input", "not UTF-8 text"))?;
            let v = match name.as_str() {
                "is_static" => Value::Bool(text.eq_ignore_ascii_case("true")),
                "filters" | "groups" => serde_json::from_str(&text).map_err(|e| {
                    ApiError::invalid_attr(&name, "invalid_input", format!("not JSON: {e}"))
                })?,
                _ => Value::String(text),
            };
            out.fields.insert(name, v);
        }
    }
    Ok(out)
}

fn strings(v: Option<&Value>, attr: &str) -> ApiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::invalid_attr(
                    attr,
                    "invalid_input",
                    "a list of strings",
                )),
            })
            .collect(),
        Some(_) => Err(ApiError::invalid_attr(
            attr,
            "invalid_input",
            "a list of strings",
        )),
    }
}

fn text_field(f: &Map<String, Value>, k: &str) -> ApiResult<Option<String>> {
    match f.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_attr(
            k,
            "invalid_input",
            "Not a valid string.",
        )),
    }
}

/// The stored definition of a dynamic cohort from `filters`/`groups`,
/// checked by computing its members once (`itself`: the cohort it
/// replaces the definition of, which it must not refer to).
async fn definition(
    state: &AppState,
    project: i64,
    f: &Map<String, Value>,
    itself: Option<i64>,
) -> ApiResult<(Value, u64)> {
    let stored = json!({
        "filters": f.get("filters").cloned().unwrap_or(Value::Null),
        "groups": f.get("groups").cloned().unwrap_or(Value::Null),
    });
    cohorts::stored(&stored)
        .map_err(|e| ApiError::invalid_attr("filters", "invalid_input", e.to_string()))?;
    let persons = state.app().persons().clone();
    let check = stored.clone();
    let members = run_app_query(state, move |limits| async move {
        cohorts::check(&persons, project, &check, itself, &limits).await
    })
    .await?;
    Ok((stored, members as u64))
}

/// Refuse a change of cohort `id` (its new stored definition, or `None`:
/// its deletion) that would leave a cohort referring to it unreadable:
/// referring to a cohort that is gone, or through more than the depth
/// limit ([`cohorts::check_dependents`]).
async fn dependents(
    state: &AppState,
    project: i64,
    id: i64,
    stored: Option<&Value>,
) -> ApiResult<()> {
    let def = stored
        .map(cohorts::stored)
        .transpose()
        .map_err(|e| ApiError::invalid_attr("filters", "invalid_input", e.to_string()))?;
    let persons = state.app().persons().clone();
    blocking(move || {
        cohorts::check_dependents(&persons, project, id, def.as_ref())
            .map_err(|e| ApiError::invalid_attr("filters", "invalid_input", e.to_string()))
    })
    .await
}

/// The count of a cohort this request has just written. The write is
/// done, so a count that cannot be made now (past the query deadline, over
/// the memory cap) is logged and answered as none (`count: null`,
/// `errors_calculating: 1`), rather than as an error for a change that
/// was made (a client would retry it).
async fn count_after_write(state: &AppState, project: i64, c: &CohortRow) -> Option<u64> {
    if c.deleted {
        // A soft-deleted cohort has no count (and needs no query slot).
        return None;
    }
    match counts(state, project, std::slice::from_ref(c)).await {
        Ok(n) => n.first().copied().flatten(),
        Err(e) => {
            tracing::warn!(cohort = c.id, error = %e.detail, "the cohort was written but its count could not be made");
            None
        }
    }
}

/// Make a cohort: static (`is_static: true`, persons from a CSV upload —
/// multipart field `csv` — or `person_ids` / `distinct_ids`), or dynamic
/// (`filters` or `groups`).
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/cohorts/",
    operation_id = "cohorts_create",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = Object, description = "`{name, description?, is_static?, filters?, groups?, person_ids?, distinct_ids?}` as JSON, or a multipart form with the same text fields and a `csv` file", content_type = "application/json"),
    responses(
        (status = 201, description = "The cohort", body = CohortView),
        (status = 400, description = "A bad definition or field"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    req: Request,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "cohort:write")?;
    let CohortInput { fields, people } = input(&state, req).await?;
    let name = text_field(&fields, "name")?.ok_or_else(|| ApiError::required("name"))?;
    let description = text_field(&fields, "description")?.unwrap_or_default();
    let is_static = match fields.get("is_static") {
        None | Some(Value::Null) => people.is_some(),
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "is_static",
                "invalid_input",
                "Must be a valid boolean.",
            ))
        }
    };
    if !is_static && people.is_some() {
        return Err(ApiError::invalid_attr(
            "is_static",
            "invalid_input",
            "persons are given only to a static cohort (is_static: true)",
        ));
    }
    // A dynamic cohort's members are counted once, by the check of its
    // definition; checked and written under the definitions' lock.
    let defining = match is_static {
        true => None,
        false => Some(state.cohort_definitions(project).await),
    };
    let (filters, members) = if is_static {
        (Value::Null, None)
    } else {
        let (f, n) = definition(&state, project, &fields, None).await?;
        (f, Some(n))
    };
    let persons = state.app().persons().clone();
    let c = blocking(move || {
        // Released when the write is done, even if the request is gone.
        let _defining = defining;
        // The list is checked first: a bad one refuses the request before
        // the cohort exists (the two writes are not one transaction).
        if let Some(who) = &people {
            who.check()?;
        }
        let c = persons.create_cohort(project, &name, &description, is_static, filters)?;
        if let Some(who) = people {
            persons.add_to_static_cohort(project, c.id, &who)?;
        }
        Ok(c)
    })
    .await?;
    let n = match members {
        Some(n) => Some(n),
        None => count_after_write(&state, project, &c).await,
    };
    Ok((StatusCode::CREATED, Json(view(&c, n))).into_response())
}

/// Change a cohort: `name`, `description`, `filters`/`groups` (dynamic),
/// `deleted` (soft delete and restore); for a static one, a `csv` upload,
/// `person_ids` or `distinct_ids` add persons.
#[utoipa::path(
    patch,
    path = "/api/projects/{project_id}/cohorts/{id}/",
    operation_id = "cohorts_partial_update",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = i64, Path, description = "The cohort's id."),
    ),
    request_body(content = Object, description = "The fields to change (JSON or a multipart form)", content_type = "application/json"),
    responses(
        (status = 200, description = "The cohort", body = CohortView),
        (status = 400, description = "A bad field"),
        (status = 404, description = "No such cohort"),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    req: Request,
) -> ApiResult<Json<CohortView>> {
    let project = key.path_project(&p, "cohort:write")?;
    let id = cohort_id(&p)?;
    let current = live_cohort(&state, project, id).await?;
    let CohortInput { fields, people } = input(&state, req).await?;
    if fields
        .get("is_static")
        .and_then(Value::as_bool)
        .is_some_and(|s| s != current.is_static)
    {
        return Err(ApiError::invalid_attr(
            "is_static",
            "invalid_input",
            "a cohort stays static or dynamic; make a new one",
        ));
    }
    let deleted = match fields.get("deleted") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "deleted",
                "invalid_input",
                "Must be a valid boolean.",
            ))
        }
    };
    let defines = fields.contains_key("filters") || fields.contains_key("groups");
    // Checked and written under the definitions' lock (see `AppState`):
    // a new definition, a deletion (another cohort may be given a
    // reference to this one meanwhile) and a restore (its references come
    // back); the cohort is read again under it.
    let (defining, current) = if (defines && !current.is_static) || deleted.is_some() {
        let guard = state.cohort_definitions(project).await;
        (Some(guard), live_cohort(&state, project, id).await?)
    } else {
        (None, current)
    };
    let deleting = deleted == Some(true) && !current.deleted;
    let restoring = deleted == Some(false) && current.deleted;
    let filters = if defines {
        if current.is_static {
            return Err(ApiError::invalid_attr(
                "filters",
                "invalid_input",
                "a static cohort has no filters: change its persons",
            ));
        }
        Some(definition(&state, project, &fields, Some(id)).await?)
    } else {
        None
    };
    let (filters, members) = match filters {
        Some((f, n)) => (Some(f), Some(n)),
        None => (None, None),
    };
    if deleting {
        dependents(&state, project, id, None).await?;
    } else if let Some(f) = &filters {
        dependents(&state, project, id, Some(f)).await?;
    } else if restoring && !current.is_static {
        // Its definition may refer to cohorts removed, or grown deeper,
        // while it was deleted: checked as a new one would be.
        let stored = current.filters.clone();
        let persons = state.app().persons().clone();
        let check = stored.clone();
        run_app_query(&state, move |limits| async move {
            cohorts::check(&persons, project, &check, Some(id), &limits).await
        })
        .await?;
        dependents(&state, project, id, Some(&stored)).await?;
    }
    if people.is_some() && !current.is_static {
        return Err(ApiError::invalid_attr(
            "person_ids",
            "invalid_input",
            "only a static cohort has a list of persons",
        ));
    }
    let patch = CohortPatch {
        name: text_field(&fields, "name")?,
        description: text_field(&fields, "description")?,
        filters,
        deleted,
    };
    let persons = state.app().persons().clone();
    let c = blocking(move || {
        // Released when the write is done, even if the request is gone.
        let _defining = defining;
        // Everything that can refuse the request runs before the list
        // changes (the two writes are not one transaction): the list's
        // checks, then the patch (its name, filters on a static cohort).
        if let Some(who) = &people {
            who.check()?;
        }
        let Some(c) = persons.update_cohort(project, id, &patch)? else {
            return Ok(None);
        };
        if let Some(who) = people {
            persons.add_to_static_cohort(project, id, &who)?;
        }
        Ok(Some(c))
    })
    .await?
    .ok_or_else(ApiError::not_found)?;
    // The members the new definition's check counted, unless the cohort
    // is soft-deleted now (a deleted one has no count).
    let n = match members {
        Some(n) if !c.deleted => Some(n),
        _ => count_after_write(&state, project, &c).await,
    };
    Ok(Json(view(&c, n)))
}

/// Remove a cohort and its list (PostHog soft-deletes with `PATCH
/// {"deleted": true}`, also served).
#[utoipa::path(
    delete,
    path = "/api/projects/{project_id}/cohorts/{id}/",
    operation_id = "cohorts_destroy",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = i64, Path, description = "The cohort's id."),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such cohort"),
    )
)]
pub(crate) async fn destroy(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<StatusCode> {
    let project = key.path_project(&p, "cohort:write")?;
    let id = cohort_id(&p)?;
    // Under the definitions' lock: no cohort gets a reference to this
    // one between the check and the removal.
    let defining = state.cohort_definitions(project).await;
    dependents(&state, project, id, None).await?;
    let persons = state.app().persons().clone();
    if blocking(move || {
        let _defining = defining;
        Ok(persons.delete_cohort(project, id)?)
    })
    .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Add persons to a static cohort: `{"person_ids": [uuid, …]}` (PostHog's)
/// or `{"distinct_ids": […]}`.
#[utoipa::path(
    patch,
    path = "/api/projects/{project_id}/cohorts/{id}/add_persons_to_static_cohort/",
    operation_id = "cohorts_add_persons_to_static_cohort",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = i64, Path, description = "The cohort's id."),
    ),
    request_body(content = Object, description = "`{person_ids?: [uuid], distinct_ids?: [string]}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`{success: true, added, not_found}`", body = Object),
        (status = 400, description = "Not a static cohort, or bad ids"),
        (status = 404, description = "No such cohort"),
    )
)]
pub(crate) async fn add_persons(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    change_persons(state, key, p, body, true).await
}

/// Take one person off a static cohort: `{"person_id": uuid}`.
#[utoipa::path(
    patch,
    path = "/api/projects/{project_id}/cohorts/{id}/remove_person_from_static_cohort/",
    operation_id = "cohorts_remove_person_from_static_cohort",
    tag = "cohorts",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = i64, Path, description = "The cohort's id."),
    ),
    request_body(content = Object, description = "`{person_id: uuid}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`{success: true, removed, not_found}`", body = Object),
        (status = 400, description = "Not a static cohort, or a bad id"),
        (status = 404, description = "No such cohort"),
    )
)]
pub(crate) async fn remove_person(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    change_persons(state, key, p, body, false).await
}

async fn change_persons(
    state: AppState,
    key: Key,
    p: std::collections::HashMap<String, String>,
    body: Value,
    add: bool,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "cohort:write")?;
    let id = cohort_id(&p)?;
    let who = if add {
        CohortPeople {
            uuids: strings(body.get("person_ids"), "person_ids")?,
            distinct_ids: strings(body.get("distinct_ids"), "distinct_ids")?,
        }
    } else {
        match body.get("person_id") {
            Some(Value::String(u)) => CohortPeople {
                uuids: vec![u.clone()],
                distinct_ids: Vec::new(),
            },
            _ => return Err(ApiError::required("person_id")),
        }
    };
    let persons = state.app().persons().clone();
    let r = blocking(move || {
        Ok(if add {
            persons.add_to_static_cohort(project, id, &who)?
        } else {
            persons.remove_from_static_cohort(project, id, &who)?
        })
    })
    .await?;
    let verb = if add { "added" } else { "removed" };
    Ok(Json(
        json!({"success": true, verb: r.changed, "not_found": r.not_found}),
    ))
}
