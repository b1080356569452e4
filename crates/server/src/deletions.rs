//! Erasure beyond whole persons (Elide additions, not PostHog routes):
//!
//! | route | scope |
//! |---|---|
//! | `POST …/events/delete/`: delete the events a predicate matches, or count them (`dry_run`) | `event:write` |
//! | `GET …/deletions/?since=CURSOR`: every deletion request of the project, in the order of their changes (the deletion feed) | `person:read` |
//! | `GET …/deletions/{id}/`: one request | `person:read` |
//! | `POST …/deletions/{id}/cancel/`: cancel a request inside its undo window | `event:write` |
//! | `GET …/deletions/{id}/receipt/`: the signed receipt of a verified request | `person:read` |
//!
//! under `/api/projects/{id}/` and `/api/environments/{id}/`. A deletion
//! counts against the deletion rate limit; its rows are invisible when
//! the 202 returns. Bad input is a 400 envelope naming the field, and
//! changes nothing.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elide_store::predicate::{EventPredicate, PropertyFilter};
use elide_store::{DeletionRequest, EventDeletion, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Key, Limit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, JsonBody, PathParams, Q};
use crate::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        let both = |r: Router<AppState>, path: String, m: axum::routing::MethodRouter<AppState>| {
            r.route(&path, m.clone()).route(&format!("{path}/"), m)
        };
        r = both(r, format!("{prefix}/events/delete"), post(delete_events));
        r = both(r, format!("{prefix}/deletions"), get(list));
        r = both(r, format!("{prefix}/deletions/{{request}}"), get(retrieve));
        r = both(
            r,
            format!("{prefix}/deletions/{{request}}/cancel"),
            post(cancel),
        );
        r = both(
            r,
            format!("{prefix}/deletions/{{request}}/receipt"),
            get(receipt),
        );
    }
    r
}

/// Body of `POST …/events/delete/`. At least one of `event`,
/// `properties`, `after`, `before`, `distinct_ids` is required.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // the schema of the body; the handler reads it as JSON
pub struct EventsDeleteBody {
    /// An event name, or a list (any of them).
    event: Option<Vec<String>>,
    /// Property filters as in the persons list (all of them), e.g.
    /// `{"key": "$browser", "value": "Chrome", "operator": "exact"}`.
    properties: Option<Vec<Value>>,
    /// Only events at or after this time (ISO-8601).
    after: Option<String>,
    /// Only events before this time (ISO-8601).
    before: Option<String>,
    /// Only these distinct ids.
    distinct_ids: Option<Vec<String>>,
    /// `events` (default) and/or `recordings`.
    tables: Option<Vec<String>>,
    /// Count what would be hidden; change nothing.
    dry_run: Option<bool>,
    /// Keep the deletion cancellable this many hours
    /// (`POST …/deletions/{id}/cancel/`); its rows are hidden at once
    /// and purged only after the window. At most the erasure deadline
    /// less one day.
    undo_window_hours: Option<f64>,
}

/// Answer of a deletion (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsDeleted {
    /// The deletion request.
    pub request_id: u64,
    /// Rows hidden by it.
    pub rows_hidden: u64,
    /// When its rows will be gone from disk (RFC 3339).
    pub purge_due_by: String,
    /// End of the undo window (RFC 3339), if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_until: Option<String>,
    /// The predicate was too slow to resolve in the call: its rows are
    /// hidden by the predicate itself and resolved in the background;
    /// `rows_hidden` counts only those found so far.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resolving: bool,
}

/// A deletion request as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionView {
    /// Id.
    pub id: u64,
    /// `distinct_ids`, `person` or `events`.
    pub kind: &'static str,
    /// `pending` (hidden), `purged`, `verified` or `cancelled`.
    pub state: &'static str,
    /// Tables it covers.
    pub tables: Vec<&'static str>,
    /// Rows it hid.
    pub rows_hidden: u64,
    /// When its rows were hidden (RFC 3339).
    pub hidden_at: String,
    /// When its rows must be gone from disk.
    pub purge_due_by: String,
    /// When they were (`null` until then).
    #[schema(required)]
    pub purged_at: Option<String>,
    /// When a scan found none left.
    #[schema(required)]
    pub verified_at: Option<String>,
    /// When it was cancelled (`null` unless it was).
    #[schema(required)]
    pub cancelled_at: Option<String>,
    /// End of its undo window (`null`: none); cancellable until then.
    #[schema(required)]
    pub undo_until: Option<String>,
    /// Hidden by its predicate when read, its tombstones not written yet
    /// (undo window open, or resolution in the background).
    pub logical: bool,
    /// Whether it is pending past `purge_due_by`.
    pub overdue: bool,
    /// For kind `events`: the predicate (after verification its values
    /// are keyed hashes).
    #[schema(value_type = Option<Object>)]
    pub predicate: Option<EventPredicate>,
    /// Number of distinct ids it names (in clear until verified, then as
    /// keyed hashes): a person's or a `distinct_ids` request's are never
    /// listed here; an `events` request's are its predicate's, shown
    /// with it.
    pub distinct_ids: usize,
    /// The feed position of its last change: pass the largest seen as
    /// `since`.
    pub cursor: u64,
}

impl DeletionView {
    fn new(r: &DeletionRequest, now_us: i64) -> Self {
        let iso = elide_store::format::us_to_rfc3339;
        DeletionView {
            id: r.id,
            kind: r.kind.as_str(),
            state: r.status.as_str(),
            tables: r.tables.iter().map(|t| t.name()).collect(),
            rows_hidden: r.rows_hidden,
            hidden_at: iso(r.created_at_us),
            purge_due_by: iso(r.purge_due_by_us),
            purged_at: r.purged_at_us.map(iso),
            verified_at: r.verified_at_us.map(iso),
            cancelled_at: r.cancelled_at_us.map(iso),
            undo_until: r.undo_until_us.map(iso),
            logical: r.logical,
            overdue: r.status == elide_store::RequestStatus::Pending && now_us > r.purge_due_by_us,
            predicate: r.predicate.clone(),
            distinct_ids: r.distinct_ids.len()
                + r.id_hashes.len()
                + r.predicate.as_ref().map_or(0, |p| p.distinct_ids.len()),
            cursor: r.changed_in_version,
        }
    }
}

/// A page of the deletion feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionPage {
    /// Requests changed after `since`, in the order of their changes.
    pub results: Vec<DeletionView>,
    /// Pass as `since` for what changes next.
    pub cursor: u64,
    /// The URL of the next page (always the feed from `cursor`).
    pub next: String,
}

/// The route's `{request}`: a request id, or 404.
fn request_id(p: &std::collections::HashMap<String, String>) -> ApiResult<u64> {
    p.get("request")
        .and_then(|s| s.parse().ok())
        .ok_or_else(ApiError::not_found)
}

/// Request `id` if it is `project`'s (another project's is not found).
fn of_project(app: &elide_app::App, id: u64, project: i64) -> ApiResult<Option<DeletionRequest>> {
    Ok(app.store().request(id)?.filter(|r| r.project_id == project))
}

fn strings(v: &Value, field: &str) -> ApiResult<Vec<String>> {
    let bad = || {
        ApiError::invalid_attr(
            field,
            "invalid_input",
            format!("{field} must be a string or a list of non-empty strings"),
        )
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if !s.is_empty() => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

fn time(v: Option<&Value>, field: &str) -> ApiResult<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => elide_store::normalize::parse_timestamp(s)
            .map(Some)
            .map_err(|e| ApiError::invalid_attr(field, "invalid_input", e)),
        Some(_) => Err(ApiError::invalid_attr(
            field,
            "invalid_input",
            format!("{field} must be an ISO-8601 timestamp"),
        )),
    }
}

/// Read and check a body (unknown fields are refused: a misspelt
/// condition must not widen a deletion).
fn parse_body(project: i64, body: &Value) -> ApiResult<(EventDeletion, bool)> {
    let Value::Object(o) = body else {
        return Err(ApiError::invalid(
            "Invalid data. Expected a dictionary, but got a different type.",
        ));
    };
    const FIELDS: &[&str] = &[
        "event",
        "properties",
        "after",
        "before",
        "distinct_ids",
        "tables",
        "dry_run",
        "undo_window_hours",
    ];
    if let Some(k) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let detail = format!("unknown field {k:?}; expected one of {}", FIELDS.join(", "));
        return Err(ApiError::invalid_attr(k, "invalid_input", detail));
    }
    let null = Value::Null;
    let events = strings(o.get("event").unwrap_or(&null), "event")?;
    let distinct_ids = strings(o.get("distinct_ids").unwrap_or(&null), "distinct_ids")?;
    let properties = match o.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                PropertyFilter::strict(i)
                    .map_err(|e| ApiError::invalid_attr("properties", "invalid_input", e))
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "properties",
                "invalid_input",
                "properties must be a list of property filters",
            ))
        }
    };
    let tables = strings(o.get("tables").unwrap_or(&null), "tables")?
        .iter()
        .map(|t| {
            Table::from_name(t).ok_or_else(|| {
                ApiError::invalid_attr(
                    "tables",
                    "invalid_input",
                    format!("unknown table {t:?} (events or recordings)"),
                )
            })
        })
        .collect::<ApiResult<_>>()?;
    let dry_run = match o.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "dry_run",
                "invalid",
                "Must be a valid boolean.",
            ))
        }
    };
    let undo_window = match o.get("undo_window_hours") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|h| h > 0.0 && h <= 24.0 * 3650.0) => n
            .as_f64()
            .map(|h| std::time::Duration::from_secs_f64(h * 3600.0)),
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "undo_window_hours",
                "invalid_input",
                "undo_window_hours must be a positive number of hours",
            ))
        }
    };
    let d = EventDeletion {
        undo_window,
        project_id: project,
        predicate: EventPredicate {
            events,
            properties,
            after_us: time(o.get("after"), "after")?,
            before_us: time(o.get("before"), "before")?,
            distinct_ids,
            ..Default::default()
        },
        tables,
        cutoff: None,
    };
    Ok((d, dry_run))
}

/// Delete the events a predicate matches (or count them).
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/events/delete/",
    operation_id = "events_delete",
    tag = "deletions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = EventsDeleteBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Rows hidden; purge queued", body = EventsDeleted),
        (status = 200, description = "Dry run: what would be hidden (rows, parts, by_table)"),
        (status = 504, description = "The dry run took longer than the query timeout and was stopped"),
    )
)]
pub(crate) async fn delete_events(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "event:write")?;
    let (d, dry_run) = parse_body(project, &body)?;
    let app = state.app().clone();
    if dry_run {
        // A read of the project's parts, bounded as a query is: no part
        // is started past the query time (the blocking call cannot be
        // cancelled when the client goes away).
        let timeout = state.config().query_timeout;
        let until = std::time::Instant::now() + timeout;
        let p = blocking(move || Ok(app.store().preview_events_until(&d, Some(until))?))
            .await?
            .ok_or_else(|| {
                ApiError::timeout(format!(
                    "the dry run read the project's parts for longer than {} s and was stopped",
                    timeout.as_secs()
                ))
            })?;
        // The preview's own shape: {"rows", "parts", "by_table"}.
        return Ok(Json(p).into_response());
    }
    state.limits().check(key.0.id, Limit::Delete)?;
    let (o, r) = blocking(move || {
        // Not into a project whose drop has begun (its requests would
        // outlive it).
        let o = app
            .persons()
            .while_project_exists(project, || -> ApiResult<_> {
                Ok(app.store().delete_events(d)?)
            })?;
        let r = app.store().request(o.request_id)?;
        Ok((o, r))
    })
    .await?;
    let body = EventsDeleted {
        request_id: o.request_id,
        rows_hidden: o.rows_hidden,
        purge_due_by: r.map_or(String::new(), |r| {
            elide_store::format::us_to_rfc3339(r.purge_due_by_us)
        }),
        undo_until: o.undo_until_us.map(elide_store::format::us_to_rfc3339),
        resolving: o.logical && o.undo_until_us.is_none(),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Cancel a deletion inside its undo window: its rows are visible again
/// when this returns (rows another request also hides stay hidden).
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/deletions/{request_id}/cancel/",
    operation_id = "deletions_cancel",
    tag = "deletions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("request_id" = u64, Path, description = "The request's id."),
    ),
    responses(
        (status = 200, description = "Cancelled: the request as it is now", body = DeletionView),
        (status = 400, description = "No undo window, or the window has ended"),
        (status = 404, description = "No such request in the project"),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<DeletionView>> {
    let project = key.path_project(&p, "event:write")?;
    let id = request_id(&p)?;
    let app = state.app().clone();
    let r = blocking(move || {
        // Another project's request is not found, never cancelled.
        if of_project(&app, id, project)?.is_none() {
            return Ok(None);
        }
        if let Err(e) = app.store().cancel_request(id) {
            // Gone meanwhile (its project dropped): not found, as before.
            if of_project(&app, id, project)?.is_none() {
                return Ok(None);
            }
            return Err(e.into());
        }
        Ok(app.store().request(id)?)
    })
    .await?;
    match r {
        Some(r) => Ok(Json(DeletionView::new(
            &r,
            chrono::Utc::now().timestamp_micros(),
        ))),
        None => Err(ApiError::not_found()),
    }
}

/// Requests per page of the deletion feed, by default and at most.
const FEED_PAGE: usize = 1000;
const MAX_FEED_PAGE: usize = 10_000;

/// Paging of the deletion feed.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// A cursor from an earlier page (default 0: from the beginning).
    #[param(value_type = Option<u64>)]
    since: Option<String>,
    /// About this many requests per page, 1 to 10000 (default 1000); a
    /// page ends between two changes, so the requests one commit changed
    /// come together.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// The deletion feed: the project's requests changed after `since`.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/deletions/",
    operation_id = "deletions_list",
    tag = "deletions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        FeedQuery,
    ),
    responses(
        (status = 200, description = "Requests in the order of their changes", body = DeletionPage),
        (status = 400, description = "`since` or `limit` is not a valid number, or `limit` is outside 1 to 10000"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: axum::http::HeaderMap,
    Q(q): Q<FeedQuery>,
) -> ApiResult<Json<DeletionPage>> {
    let project = key.path_project(&p, "person:read")?;
    let since = crate::extract::number(q.since.as_deref(), "since", 0u64)?;
    let limit = crate::extract::number(q.limit.as_deref(), "limit", FEED_PAGE)?;
    if !(1..=MAX_FEED_PAGE).contains(&limit) {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            format!("limit must be between 1 and {MAX_FEED_PAGE}"),
        ));
    }
    let app = state.app().clone();
    let feed = blocking(move || {
        Ok(app
            .store()
            .deletion_feed_page(Some(project), since, limit)?)
    })
    .await?;
    let now = chrono::Utc::now().timestamp_micros();
    let next = crate::extract::url_with(&uri, &headers, &[("since", feed.cursor.to_string())]);
    Ok(Json(DeletionPage {
        results: feed
            .requests
            .iter()
            .map(|r| DeletionView::new(r, now))
            .collect(),
        cursor: feed.cursor,
        next,
    }))
}

/// One deletion request of the project.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/deletions/{request_id}/",
    operation_id = "deletions_retrieve",
    tag = "deletions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("request_id" = u64, Path, description = "The request's id."),
    ),
    responses(
        (status = 200, description = "The request", body = DeletionView),
    )
)]
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<DeletionView>> {
    let project = key.path_project(&p, "person:read")?;
    let id = request_id(&p)?;
    let app = state.app().clone();
    let r = blocking(move || of_project(&app, id, project)).await?;
    match r {
        Some(r) => Ok(Json(DeletionView::new(
            &r,
            chrono::Utc::now().timestamp_micros(),
        ))),
        _ => Err(ApiError::not_found()),
    }
}

/// The signed receipt of a verified request: `{"body": {...}, "signature"}`
/// exactly as stored (verifiable offline with the public key:
/// `elide receipts verify --receipt FILE --public-key KEY`).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/deletions/{request_id}/receipt/",
    operation_id = "deletions_receipt",
    tag = "deletions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("request_id" = u64, Path, description = "The request's id."),
    ),
    responses(
        (status = 200, description = "The receipt (JSON: `body` and `signature`)"),
        (status = 404, description = "No such request in the project, or not verified yet"),
    )
)]
pub(crate) async fn receipt(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let id = request_id(&p)?;
    let app = state.app().clone();
    let bytes = blocking(move || {
        if of_project(&app, id, project)?.is_none() {
            return Ok(None);
        }
        Ok(app.store().receipt(id)?)
    })
    .await?;
    match bytes {
        Some(b) => {
            Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], b).into_response())
        }
        None => Err(ApiError::not_found()),
    }
}
