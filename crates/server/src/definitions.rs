//! PostHog's event definitions: `GET …/event_definitions/` lists the
//! event names of a project's events, `GET …/event_definitions/{id}/` is
//! one by id (scope `event_definition:read`), computed from the events
//! on each request by [`elide_app::analytics::definitions`] (deletions
//! applied; nothing is stored beside the events).
//!
//! Paging is PostHog's limit/offset: `count` is the number of names,
//! `next` and `previous` the request's URL at the neighbouring offsets.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::Utc;
use elide_app::analytics::definitions::{self, EventDefinition, EventKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{number, url_with, PathParams, Q};
use crate::query::run_app_query;
use crate::AppState;

/// Most definitions one page lists.
const MAX_LIMIT: usize = 10_000;

/// Longest search text.
const MAX_SEARCH: usize = 1_000;

/// An event name as PostHog's definitions API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventDefinitionView {
    /// A UUID of the project and the name (the same name keeps it).
    id: String,
    /// The event name.
    name: String,
    /// Its first event's time (RFC 3339).
    created_at: String,
    /// Its last event's time.
    last_seen_at: String,
    /// Its last event's time too (Elide's definitions are the events').
    last_updated_at: String,
    /// Its events in the last 30 days.
    volume_30_day: u64,
    /// Always null (Elide does not count the queries that use it).
    #[schema(value_type = Option<u64>)]
    query_usage_30_day: Option<u64>,
    /// Always empty (no tags).
    tags: Vec<String>,
    /// Always null (no descriptions).
    description: Option<String>,
    /// Always false (Elide has no actions).
    is_action: bool,
}

impl From<&EventDefinition> for EventDefinitionView {
    fn from(d: &EventDefinition) -> Self {
        let last = elide_persons::persons::iso(d.last_seen);
        EventDefinitionView {
            id: d.id.hyphenated().to_string(),
            name: d.name.clone(),
            created_at: elide_persons::persons::iso(d.first_seen),
            last_seen_at: last.clone(),
            last_updated_at: last,
            volume_30_day: d.volume_30_day,
            query_usage_30_day: None,
            tags: Vec::new(),
            description: None,
            is_action: false,
        }
    }
}

/// A page of event definitions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DefinitionPage {
    /// Names in all (after `search` and `event_type`).
    count: usize,
    /// The next page's URL.
    next: Option<String>,
    /// The previous page's URL.
    previous: Option<String>,
    /// The page.
    results: Vec<EventDefinitionView>,
}

/// The filters, order and page of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only names containing this text (case-insensitive).
    search: Option<String>,
    /// `event` (default: all), `event_custom` (not `$…`) or
    /// `event_posthog` (`$…`).
    event_type: Option<String>,
    /// `name` (default), `last_seen_at`, `created_at` or `volume_30_day`,
    /// `-` first for descending.
    ordering: Option<String>,
    /// Page size, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Names to skip.
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
}

async fn all(
    state: &AppState,
    project: i64,
    search: Option<String>,
    kind: EventKind,
) -> ApiResult<Vec<EventDefinition>> {
    let persons = state.app().persons().clone();
    let now = Utc::now().timestamp_micros();
    run_app_query(state, move |limits| async move {
        definitions::event_definitions(&persons, project, search.as_deref(), kind, now, &limits)
            .await
    })
    .await
}

/// List the project's event names.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/event_definitions/",
    operation_id = "event_definitions_list",
    tag = "definitions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ListQuery,
    ),
    responses(
        (status = 200, description = "A page of event names", body = DefinitionPage),
        (status = 400, description = "A bad parameter"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<DefinitionPage>> {
    let project = key.path_project(&p, "event_definition:read")?;
    let limit: usize = number(q.limit.as_deref(), "limit", 100)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let offset: usize = number(q.offset.as_deref(), "offset", 0)?;
    let kind = match q.event_type.as_deref() {
        None | Some("") | Some("event") => EventKind::All,
        Some("event_custom") => EventKind::Custom,
        Some("event_posthog") => EventKind::PostHog,
        Some(other) => {
            return Err(ApiError::invalid_attr(
                "event_type",
                "invalid_input",
                format!(
                    "event_type {other:?} is not supported: event, event_custom or event_posthog (Elide has no actions)"
                ),
            ))
        }
    };
    let ordering = q.ordering.as_deref().unwrap_or("name");
    let (desc, by) = match ordering.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, ordering),
    };
    if !matches!(by, "name" | "last_seen_at" | "created_at" | "volume_30_day") {
        return Err(ApiError::invalid_attr(
            "ordering",
            "invalid_input",
            format!("ordering {ordering:?} is not supported: name, last_seen_at, created_at or volume_30_day, - first for descending"),
        ));
    }
    let search = q.search.filter(|s| !s.trim().is_empty());
    if search.as_ref().is_some_and(|s| s.len() > MAX_SEARCH) {
        return Err(ApiError::invalid_attr(
            "search",
            "invalid_input",
            format!("search is at most {MAX_SEARCH} bytes"),
        ));
    }
    let mut defs = all(&state, project, search, kind).await?;
    // By the key, then by name (the name breaks ties, either way).
    defs.sort_by(|a, b| {
        let o = match by {
            "last_seen_at" => a.last_seen.cmp(&b.last_seen),
            "created_at" => a.first_seen.cmp(&b.first_seen),
            "volume_30_day" => a.volume_30_day.cmp(&b.volume_30_day),
            _ => std::cmp::Ordering::Equal,
        };
        let o = o.then_with(|| a.name.cmp(&b.name));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let count = defs.len();
    let page: Vec<EventDefinitionView> = defs
        .iter()
        .skip(offset)
        .take(limit)
        .map(EventDefinitionView::from)
        .collect();
    let next = (offset.saturating_add(limit) < count).then(|| {
        url_with(
            &uri,
            &headers,
            &[
                ("offset", (offset + limit).to_string()),
                ("limit", limit.to_string()),
            ],
        )
    });
    let previous = (offset > 0).then(|| {
        url_with(
            &uri,
            &headers,
            &[
                ("offset", offset.saturating_sub(limit).to_string()),
                ("limit", limit.to_string()),
            ],
        )
    });
    Ok(Json(DefinitionPage {
        count,
        next,
        previous,
        results: page,
    }))
}

/// One event name by its id.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/event_definitions/{id}/",
    operation_id = "event_definitions_retrieve",
    tag = "definitions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The definition's UUID."),
    ),
    responses(
        (status = 200, description = "The event name", body = EventDefinitionView),
        (status = 400, description = "Not a UUID"),
        (status = 404, description = "No event of the project has a name of this id"),
    )
)]
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<EventDefinitionView>> {
    let project = key.path_project(&p, "event_definition:read")?;
    let id = p.get("id").cloned().unwrap_or_default();
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return Err(ApiError::invalid_attr(
            "id",
            "invalid",
            "Must be a valid UUID.",
        ));
    };
    let defs = all(&state, project, None, EventKind::All).await?;
    match defs.iter().find(|d| d.id == id) {
        Some(d) => Ok(Json(EventDefinitionView::from(d))),
        None => Err(ApiError::not_found()),
    }
}

/// The event definitions routes.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let mut r = axum::Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        for (path, m) in [
            ("/event_definitions", get(list)),
            ("/event_definitions/{id}", get(retrieve)),
        ] {
            r = r
                .route(&format!("{prefix}{path}"), m.clone())
                .route(&format!("{prefix}{path}/"), m);
        }
    }
    r
}
