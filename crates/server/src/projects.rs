//! Projects (PostHog's teams) under `/api/projects/` and
//! `/api/environments/`, and the project's personal API keys under
//! `/api/projects/{id}/personal_api_keys/`.
//!
//! A personal API key belongs to one project: listing shows that project
//! only, `@current` names it, and another id is a 404 whether or not it
//! exists. Scopes: reads `project:read`, changes `project:write`.
//!
//! `POST /api/projects/` makes a project and, since a key reaches only its
//! own project, a key for the new one with the caller's scopes, returned
//! once (`personal_api_key`; an Elide addition). `DELETE` drops the
//! project: its rows are invisible when the 204 returns, its metadata and
//! keys (the caller's too) are gone, and its files are purged by the
//! store's garbage collection.
//!
//! The handlers carry their OpenAPI operations under `/api/projects/…`;
//! [`crate::openapi`] copies them to `/api/environments/…`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use elide_persons::admin::{ProjectUpdate, MAX_PROJECT_NAME};
use elide_persons::{ApiKey, Project};
use elide_store::format::ProjectSettings as StoreSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Key, Limit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, JsonBody, PathParams};
use crate::AppState;

/// The project routes.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/api/projects", "/api/environments"] {
        let both = |r: Router<AppState>, path: String, m: axum::routing::MethodRouter<AppState>| {
            r.route(&path, m.clone()).route(&format!("{path}/"), m)
        };
        r = both(r, prefix.to_string(), get(list).post(create));
        r = both(
            r,
            format!("{prefix}/{{project}}"),
            get(retrieve).patch(update).put(update).delete(destroy),
        );
        r = both(
            r,
            format!("{prefix}/{{project}}/personal_api_keys"),
            get(list_keys).post(create_key),
        );
        r = both(
            r,
            format!("{prefix}/{{project}}/personal_api_keys/{{key}}"),
            delete(revoke_key),
        );
    }
    r
}

/// A project as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The capture token (`phc_…`): public, sent by SDKs.
    pub api_token: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Time zone of dates in queries (always UTC).
    pub timezone: &'static str,
    /// Whether capture drops `$ip`.
    pub anonymize_ips: bool,
    /// Property names capture drops (an Elide addition).
    pub drop_properties: Vec<String>,
    /// Days from a deletion request to its `purge_due_by`; null for the
    /// server's default (an Elide addition).
    #[schema(required)]
    pub erasure_deadline_days: Option<u32>,
    /// Whole days rows are kept; null: forever (an Elide addition).
    #[schema(required)]
    pub retention_days: Option<u32>,
    /// Whole days events of a name are kept, by event name (an Elide
    /// addition).
    pub event_retention_days: std::collections::BTreeMap<String, u32>,
}

impl ProjectView {
    /// The view of `p` with the store's settings of it.
    pub fn of(p: &Project, store: &elide_store::Store) -> ApiResult<ProjectView> {
        let mut v = ProjectView::from(p);
        let s = store.project_settings(p.id)?;
        v.erasure_deadline_days = s.erasure_deadline_days;
        v.retention_days = s.retention_days;
        v.event_retention_days = s.event_retention_days;
        Ok(v)
    }
}

impl From<&Project> for ProjectView {
    fn from(p: &Project) -> Self {
        ProjectView {
            id: p.id,
            name: p.name.clone(),
            api_token: p.api_token.clone(),
            created_at: elide_persons::persons::iso(p.created_at_us),
            timezone: "UTC",
            anonymize_ips: p.settings.anonymize_ips,
            drop_properties: p.settings.drop_properties.clone(),
            erasure_deadline_days: None,
            retention_days: None,
            event_retention_days: Default::default(),
        }
    }
}

/// A page of projects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectPage {
    /// How many.
    pub count: usize,
    /// Always null (one page).
    #[schema(required)]
    pub next: Option<String>,
    /// Always null.
    #[schema(required)]
    pub previous: Option<String>,
    /// The projects.
    pub results: Vec<ProjectView>,
}

/// Body of `POST /api/projects/`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProject {
    /// Name (1 to 200 characters).
    pub name: String,
}

/// Body of `PATCH /api/projects/{id}/`: the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ProjectChange {
    /// New name.
    pub name: Option<String>,
    /// Drop `$ip` from events before they are written.
    pub anonymize_ips: Option<bool>,
    /// Property names to drop from events (and `$set`, `$set_once`)
    /// before they are written.
    pub drop_properties: Option<Vec<String>>,
    /// Days from a deletion request to its `purge_due_by` (1 to 3650), or
    /// null for the server's default; applies to requests made from then
    /// on.
    #[schema(value_type = Option<u32>)]
    pub erasure_deadline_days: Option<Option<u32>>,
    /// Days rows are kept (1 to 36500), or null to keep them forever;
    /// older rows are deleted by retention sweeps.
    #[schema(value_type = Option<u32>)]
    pub retention_days: Option<Option<u32>>,
    /// Days events of a name are kept, by name (1 to 36500, or null to
    /// remove that limit); names not given keep their setting.
    #[schema(value_type = Option<Object>)]
    pub event_retention_days: Option<std::collections::BTreeMap<String, Option<u32>>>,
}

/// A new project, its capture token and a key for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedProject {
    /// The project.
    #[serde(flatten)]
    pub project: ProjectView,
    /// A personal API key for the new project, with the caller's scopes;
    /// shown once.
    pub personal_api_key: String,
}

/// Most property names a project drops.
const MAX_DROPPED: usize = 1000;

/// Most events a project gives a retention of their own (the map is in
/// the store's manifest, rewritten by every commit, and each entry is a
/// sweep of the project's older parts).
const MAX_EVENT_RETENTIONS: usize = StoreSettings::MAX_EVENT_RETENTIONS;
const MAX_RETENTION_DAYS: u64 = StoreSettings::MAX_RETENTION_DAYS as u64;
const MAX_DEADLINE_DAYS: u64 = StoreSettings::MAX_ERASURE_DEADLINE_DAYS as u64;
const MAX_EVENT_NAME_BYTES: usize = StoreSettings::MAX_EVENT_NAME_BYTES;

/// The projects the key may see: its own.
#[utoipa::path(
    get,
    path = "/api/projects/",
    operation_id = "projects_list",
    tag = "projects",
    responses(
        (status = 200, description = "The key's project", body = ProjectPage),
    )
)]
async fn list(State(state): State<AppState>, key: Key) -> ApiResult<Json<ProjectPage>> {
    key.scope("project:read")?;
    let id = key.0.project_id;
    let app = state.app().clone();
    let p = blocking(move || ProjectView::of(&app.persons().project(id)?, app.store())).await?;
    Ok(Json(ProjectPage {
        count: 1,
        next: None,
        previous: None,
        results: vec![p],
    }))
}

/// One project.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/",
    operation_id = "projects_retrieve",
    tag = "projects",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 200, description = "The project", body = ProjectView),
    )
)]
async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<ProjectView>> {
    let id = key.path_project(&p, "project:read")?;
    let app = state.app().clone();
    let p = blocking(move || ProjectView::of(&app.persons().project(id)?, app.store())).await?;
    Ok(Json(p))
}

/// Make a project, and a key for it with the caller's scopes.
#[utoipa::path(
    post,
    path = "/api/projects/",
    operation_id = "projects_create",
    tag = "projects",
    request_body(content = NewProject, content_type = "application/json"),
    responses(
        (status = 201, description = "The project, with its new key (shown once)", body = CreatedProject),
    )
)]
async fn create(
    State(state): State<AppState>,
    key: Key,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    key.scope("project:write")?;
    let name = match body.get("name") {
        Some(v) => parse_name(v)?,
        None => return Err(ApiError::required("name")),
    };
    let scopes = key.0.scopes.clone();
    let app = state.app().clone();
    let (project, secret) = blocking(move || {
        let (p, _, secret) =
            app.persons()
                .create_project_with_key(&name, &scopes, "made with the project")?;
        Ok((p, secret))
    })
    .await?;
    tracing::info!(project = project.id, "project created");
    let body = CreatedProject {
        project: ProjectView::from(&project),
        personal_api_key: secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Change a project's name or capture settings.
#[utoipa::path(
    method(patch, put),
    path = "/api/projects/{project_id}/",
    operation_id = "projects_update",
    tag = "projects",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = ProjectChange, content_type = "application/json"),
    responses(
        (status = 200, description = "The project as changed", body = ProjectView),
    )
)]
async fn update(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<ProjectView>> {
    let id = key.path_project(&p, "project:write")?;
    let change = parse_change(&body)?;
    let app = state.app().clone();
    let p = blocking(move || {
        // The store's settings first: they are the ones with checks that
        // depend on what is stored (a 400 there changes nothing). Each
        // side reads and writes in one commit, so changes of different
        // fields made at once all land. A project that is gone, or whose
        // drop has begun, is a 404 before anything is written.
        let stored = change.erasure_deadline_days.is_some()
            || change.retention_days.is_some()
            || change.event_retention_days.is_some();
        app.persons().while_project_exists(id, || -> ApiResult<()> {
            if !stored {
                return Ok(());
            }
            app.store()
                .update_project_settings(id, |s| -> ApiResult<()> {
                    for (e, days) in change.event_retention_days.iter().flatten() {
                        match days {
                            Some(d) => s.event_retention_days.insert(e.clone(), *d),
                            None => s.event_retention_days.remove(e),
                        };
                    }
                    if s.event_retention_days.len() > MAX_EVENT_RETENTIONS {
                        return Err(ApiError::invalid_attr(
                            "event_retention_days",
                            "invalid",
                            format!(
                                "A project gives at most {MAX_EVENT_RETENTIONS} events a retention of their own; remove some (null) first."
                            ),
                        ));
                    }
                    if let Some(days) = change.erasure_deadline_days {
                        s.erasure_deadline_days = days;
                    }
                    if let Some(days) = change.retention_days {
                        s.retention_days = days;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
        let p = app.persons().update_project(
            id,
            &ProjectUpdate {
                name: change.name.clone(),
                anonymize_ips: change.anonymize_ips,
                drop_properties: change.drop_properties.clone(),
            },
        )?;
        ProjectView::of(&p, app.store())
    })
        .await?;
    Ok(Json(p))
}

/// A project name as sent, checked with DRF's messages (the same rule as
/// `elide_persons::admin::checked_name`, so a refused name is refused
/// before anything is written).
fn parse_name(v: &Value) -> ApiResult<String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err(ApiError::invalid_attr(
            "name",
            "blank",
            "This field may not be blank.",
        )),
        Value::String(s) if s.trim().chars().count() > MAX_PROJECT_NAME => {
            Err(ApiError::invalid_attr(
                "name",
                "max_length",
                format!("Ensure this field has no more than {MAX_PROJECT_NAME} characters."),
            ))
        }
        Value::String(s) => Ok(s.clone()),
        _ => Err(ApiError::invalid_attr(
            "name",
            "invalid",
            "Not a valid string.",
        )),
    }
}

/// The fields of a change, each checked with PostHog-style messages;
/// fields Elide does not keep are ignored, as PostHog ignores read-only
/// ones.
fn parse_change(body: &Value) -> ApiResult<ProjectChange> {
    let Value::Object(o) = body else {
        return Err(ApiError::invalid(
            "Invalid data. Expected a dictionary, but got a different type.",
        ));
    };
    let mut c = ProjectChange::default();
    if let Some(v) = o.get("name") {
        c.name = Some(parse_name(v)?);
    }
    if let Some(v) = o.get("anonymize_ips") {
        c.anonymize_ips = Some(v.as_bool().ok_or_else(|| {
            ApiError::invalid_attr("anonymize_ips", "invalid", "Must be a valid boolean.")
        })?);
    }
    if let Some(v) = o.get("drop_properties") {
        let bad = || {
            ApiError::invalid_attr(
                "drop_properties",
                "invalid",
                format!("Expected a list of at most {MAX_DROPPED} non-empty property names."),
            )
        };
        let items = v.as_array().ok_or_else(bad)?;
        if items.len() > MAX_DROPPED {
            return Err(bad());
        }
        let mut names = Vec::with_capacity(items.len());
        for i in items {
            match i.as_str() {
                Some(s) if !s.is_empty() && s.len() <= 400 => names.push(s.to_string()),
                _ => return Err(bad()),
            }
        }
        names.sort();
        names.dedup();
        c.drop_properties = Some(names);
    }
    if let Some(v) = o.get("retention_days") {
        c.retention_days = Some(match v {
            Value::Null => None,
            v => Some(
                v.as_u64()
                    .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
                    .map(|d| d as u32)
                    .ok_or_else(|| {
                        ApiError::invalid_attr(
                            "retention_days",
                            "invalid",
                            format!("Must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null."),
                        )
                    })?,
            ),
        });
    }
    if let Some(v) = o.get("event_retention_days") {
        let bad = || {
            ApiError::invalid_attr(
                "event_retention_days",
                "invalid",
                format!("Must be an object of at most {MAX_EVENT_RETENTIONS} event names (of at most {MAX_EVENT_NAME_BYTES} bytes) to a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null."),
            )
        };
        let Value::Object(m) = v else {
            return Err(bad());
        };
        if m.len() > MAX_EVENT_RETENTIONS {
            return Err(bad());
        }
        let mut out = std::collections::BTreeMap::new();
        for (e, d) in m {
            if e.is_empty() || e.len() > MAX_EVENT_NAME_BYTES {
                return Err(bad());
            }
            let d = match d {
                Value::Null => None,
                d => Some(
                    d.as_u64()
                        .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
                        .map(|d| d as u32)
                        .ok_or_else(bad)?,
                ),
            };
            out.insert(e.clone(), d);
        }
        c.event_retention_days = Some(out);
    }
    if let Some(v) = o.get("erasure_deadline_days") {
        c.erasure_deadline_days = Some(match v {
            Value::Null => None,
            v => Some(
                v.as_u64()
                    .filter(|d| (1..=MAX_DEADLINE_DAYS).contains(d))
                    .map(|d| d as u32)
                    .ok_or_else(|| {
                        ApiError::invalid_attr(
                            "erasure_deadline_days",
                            "invalid",
                            format!("Must be a whole number of days from 1 to {MAX_DEADLINE_DAYS}, or null."),
                        )
                    })?,
            ),
        });
    }
    Ok(c)
}

/// Drop a project: its rows, persons, deletion requests and keys.
#[utoipa::path(
    delete,
    path = "/api/projects/{project_id}/",
    operation_id = "projects_destroy",
    tag = "projects",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 204, description = "Dropped"),
    )
)]
async fn destroy(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    let id = key.path_project(&p, "project:write")?;
    state.limits().check(key.0.id, Limit::Delete)?;
    let app = state.app().clone();
    let (data, meta) = blocking(move || Ok(app.persons().drop_project(id)?)).await?;
    tracing::info!(
        project = id,
        rows = data.rows_removed,
        parts = data.parts_removed,
        persons = meta.persons,
        "project dropped"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A personal API key as listed (never the key itself).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Id.
    pub id: i64,
    /// Label.
    pub label: String,
    /// Scopes (`*` is all).
    pub scopes: Vec<String>,
    /// First and last characters of the key.
    pub mask_value: String,
    /// Creation time.
    pub created_at: String,
    /// Last use (to the hour).
    #[schema(required)]
    pub last_used_at: Option<String>,
    /// Revocation time, if revoked.
    #[schema(required)]
    pub revoked_at: Option<String>,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPage {
    /// How many.
    pub count: usize,
    /// Always null (one page).
    #[schema(required)]
    pub next: Option<String>,
    /// Always null.
    #[schema(required)]
    pub previous: Option<String>,
    /// The keys.
    pub results: Vec<KeyView>,
}

/// A new key: the listing's fields and the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key as listed.
    #[serde(flatten)]
    pub key: KeyView,
    /// The key (`phx_…`), shown once.
    pub value: String,
}

/// Body of `POST /api/projects/{id}/personal_api_keys/`.
#[derive(Debug, ToSchema)]
pub struct NewKey {
    /// Label.
    pub label: Option<String>,
    /// Scopes (`*`, or `object:read` / `object:write`), at most the
    /// caller's.
    pub scopes: Vec<String>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        KeyView {
            id: k.id,
            label: k.label.clone(),
            scopes: k.scopes.clone(),
            mask_value: k.mask.clone(),
            created_at: elide_persons::persons::iso(k.created_at_us),
            last_used_at: k.last_used_at_us.map(elide_persons::persons::iso),
            revoked_at: k.revoked_at_us.map(elide_persons::persons::iso),
        }
    }
}

/// The project's personal API keys (never the keys themselves).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/personal_api_keys/",
    operation_id = "personal_api_keys_list",
    tag = "personal API keys",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 200, description = "The keys", body = KeyPage),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<KeyPage>> {
    let id = key.path_project(&p, "project:read")?;
    let app = state.app().clone();
    let keys = blocking(move || Ok(app.persons().api_keys(id)?)).await?;
    let results: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    Ok(Json(KeyPage {
        count: results.len(),
        next: None,
        previous: None,
        results,
    }))
}

/// Make a personal API key, with at most the caller's scopes.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/personal_api_keys/",
    operation_id = "personal_api_keys_create",
    tag = "personal API keys",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key, with its value (shown once)", body = CreatedKey),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let id = key.path_project(&p, "project:write")?;
    let label = match body.get("label") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "label",
                "invalid",
                "Not a valid string.",
            ))
        }
    };
    let scopes: Vec<String> = match body.get("scopes") {
        None => return Err(ApiError::required("scopes")),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid_attr("scopes", "invalid", "Expected a list of scope names.")
            })?,
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "scopes",
                "invalid",
                "Expected a list of scope names.",
            ))
        }
    };
    let parsed = elide_persons::admin::parse_scopes(&scopes)
        .map_err(|e| ApiError::invalid_attr("scopes", "invalid_input", e.to_string()))?;
    // A key never makes a key that may do more than itself.
    if let Some(s) = parsed.iter().find(|s| !key.0.allows(s)) {
        return Err(ApiError::invalid_attr(
            "scopes",
            "invalid_input",
            format!("scope '{s}' is not among this key's scopes"),
        ));
    }
    let app = state.app().clone();
    let (made, secret) =
        blocking(move || Ok(app.persons().create_api_key(id, &parsed, &label)?)).await?;
    let body = CreatedKey {
        key: KeyView::from(&made),
        value: secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revoke a personal API key.
#[utoipa::path(
    delete,
    path = "/api/projects/{project_id}/personal_api_keys/{key_id}/",
    operation_id = "personal_api_keys_destroy",
    tag = "personal API keys",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("key_id" = i64, Path, description = "The key's id."),
    ),
    responses(
        (status = 204, description = "Revoked"),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    let id = key.path_project(&p, "project:write")?;
    let which: i64 = p
        .get("key")
        .and_then(|k| k.parse().ok())
        .ok_or_else(ApiError::not_found)?;
    let app = state.app().clone();
    blocking(move || Ok(app.persons().revoke_api_key(id, which)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
