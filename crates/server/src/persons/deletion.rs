//! Deleting persons: `DELETE …/persons/{id}/`, `bulk_delete`,
//! `delete_events`, `delete_recordings`, the deletion status and
//! `reset_person_distinct_id`. Deletions count against the deletion rate
//! limit; a deleted person's rows are invisible when the 202 returns.

use super::*;

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
pub(crate) async fn destroy(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let flags = (
        present(&uri, "delete_events"),
        present(&uri, "delete_recordings"),
        present(&uri, "keep_person"),
    );
    delete_one(state, key, p, flags).await
}

/// PostHog's `bool()` of a JSON value: `"false"` is true.
pub(super) fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

pub(super) fn string_list(v: Option<&Value>, field: &str) -> ApiResult<Vec<String>> {
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
pub(crate) async fn bulk_delete(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:write")?;
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

/// Delete the person of a `…/persons/{id}/…` path; `flags` are
/// (`delete_events`, `delete_recordings`, `keep_person`).
async fn delete_one(
    state: AppState,
    key: Key,
    p: HashMap<String, String>,
    (delete_events, delete_recordings, keep_person): (bool, bool, bool),
) -> ApiResult<Response> {
    let (project, id) = person_target(&key, &p, "person:write")?;
    state.limits().check(key.0.id, Limit::Delete)?;
    let app = state.app().clone();
    blocking(move || {
        let person = app.persons().get(project, &id)?;
        let r = app.persons().delete(
            project,
            &DeletePersons {
                uuids: vec![person.uuid.hyphenated().to_string()],
                distinct_ids: Vec::new(),
                delete_events,
                delete_recordings,
                keep_person,
            },
        )?;
        // Merged into another person or deleted between the lookup and
        // the deletion (a capture's merge runs in between): nothing was
        // deleted, so the answer is not a 202.
        if r.persons_found == 0 {
            return Err(ApiError::not_found());
        }
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
pub(crate) async fn delete_events(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    delete_one(state, key, p, (true, false, true)).await
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
pub(crate) async fn delete_recordings(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    delete_one(state, key, p, (false, true, true)).await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResetBody {
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
pub(crate) async fn reset(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<ResetBody>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:write")?;
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
pub(crate) struct StatusQuery {
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
pub(crate) async fn deletion_status(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<StatusQuery>,
) -> ApiResult<Json<DeletionStatusPage>> {
    let project = key.path_project(&p, "person:read")?;
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
            purge_due_by: d.purge_due_by,
        })
        .collect();
    let next = (offset.saturating_add(limit) < count)
        .then(|| page_url(&uri, &headers, offset.saturating_add(limit), limit));
    let previous =
        (offset > 0).then(|| page_url(&uri, &headers, offset.saturating_sub(limit), limit));
    Ok(Json(DeletionStatusPage {
        count,
        next,
        previous,
        results,
    }))
}
