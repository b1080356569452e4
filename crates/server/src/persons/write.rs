//! Changing a person: properties (PATCH/PUT, `update_property`,
//! `delete_property`) and `split`. Each is applied before the answer and
//! recorded as PostHog's events would record it.

use super::*;

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
pub(crate) async fn update(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let (project, id) = person_target(&key, &p, "person:write")?;
    let props = match body.get("properties") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "properties",
                "invalid_input",
                "properties must be an object",
            ))
        }
        None => return Err(ApiError::required_swapped("properties")),
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
pub(crate) async fn delete_property(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let (project, id) = person_target(&key, &p, "person:write")?;
    let prop = match body.get("$unset") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiError::required_swapped("$unset")),
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
pub(crate) async fn update_property(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let (project, id) = person_target(&key, &p, "person:write")?;
    let Some(value) = body.get("value").cloned() else {
        return Err(ApiError::required_swapped("value"));
    };
    let prop = match body.get("key") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiError::required_swapped("key")),
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
pub(crate) async fn split(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let (project, id) = person_target(&key, &p, "person:write")?;
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
