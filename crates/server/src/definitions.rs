//! PostHog's event and property definitions: `GET …/event_definitions/`
//! lists the event names of a project's events, `GET
//! …/event_definitions/{id}/` is one by id (scope
//! `event_definition:read`); `GET …/property_definitions/` lists the
//! property names of its events or persons (scope
//! `property_definition:read`). All are computed from the events (and
//! persons) on each request by [`elide_app::analytics::definitions`]
//! (deletions applied; nothing is stored beside them).
//!
//! Paging is PostHog's limit/offset: `count` is the number of names,
//! `next` and `previous` the request's URL at the neighbouring offsets.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::Utc;
use elide_app::analytics::definitions::{
    self, EventDefinition, EventKind, PropertyFilter, PropertyOwner,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{number, page_url, PathParams, Q};
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
    /// Words (separated by spaces) each name contains, any case.
    search: Option<String>,
    /// `event` or `all` (default: every name), `event_custom` (not `$…`),
    /// `event_posthog` (`$…`) or `action_event` (none: Elide has no
    /// actions).
    event_type: Option<String>,
    /// Keys separated by commas, `-` first for descending: `name`,
    /// `last_seen_at`, `created_at` (with `::date`: by the day),
    /// `volume_30_day`; unknown keys are dropped (default
    /// `-last_seen_at::date,name`).
    ordering: Option<String>,
    /// Only these names (a JSON list, or comma-separated).
    names: Option<String>,
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
    (search, names): (Vec<String>, Option<Vec<String>>),
    kind: EventKind,
) -> ApiResult<Vec<EventDefinition>> {
    let persons = state.app().persons().clone();
    let now = Utc::now().timestamp_micros();
    run_app_query(state, move |limits| async move {
        definitions::event_definitions(
            &persons,
            project,
            (&search, names.as_deref()),
            kind,
            now,
            &limits,
        )
        .await
    })
    .await
}

/// What event definitions may be ordered by (`::date`: by the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderKey {
    Name,
    LastSeen { day: bool },
    Created { day: bool },
    Volume,
}

impl OrderKey {
    fn cmp(self, a: &EventDefinition, b: &EventDefinition) -> std::cmp::Ordering {
        const DAY: i64 = 86_400_000_000;
        let by_day = |t: i64, day: bool| if day { t.div_euclid(DAY) } else { t };
        match self {
            OrderKey::Name => a.name.cmp(&b.name),
            OrderKey::LastSeen { day } => by_day(a.last_seen, day).cmp(&by_day(b.last_seen, day)),
            OrderKey::Created { day } => by_day(a.first_seen, day).cmp(&by_day(b.first_seen, day)),
            OrderKey::Volume => a.volume_30_day.cmp(&b.volume_30_day),
        }
    }
}

/// PostHog's `ordering`: keys separated by commas, `-` first for
/// descending; keys it does not know are dropped, as PostHog drops them
/// (its own events table sends `ordering=event`). Default: the last day
/// seen, newest first, then the name.
fn orders(given: Option<&str>) -> ApiResult<Vec<(OrderKey, bool)>> {
    let given = given.map(str::trim).filter(|g| !g.is_empty());
    let text = given.unwrap_or("-last_seen_at::date,name");
    if text.len() > MAX_SEARCH {
        return Err(ApiError::invalid_attr(
            "ordering",
            "invalid_input",
            format!("ordering is at most {MAX_SEARCH} bytes"),
        ));
    }
    let known: Vec<(OrderKey, bool)> = text
        .split(',')
        .filter_map(|term| {
            let term = term.trim();
            let (desc, key) = match term.strip_prefix('-') {
                Some(k) => (true, k),
                None => (false, term),
            };
            let key = match key {
                "name" => OrderKey::Name,
                "last_seen_at" => OrderKey::LastSeen { day: false },
                "last_seen_at::date" => OrderKey::LastSeen { day: true },
                "created_at" => OrderKey::Created { day: false },
                "created_at::date" => OrderKey::Created { day: true },
                "volume_30_day" => OrderKey::Volume,
                _ => return None,
            };
            Some((key, desc))
        })
        .collect();
    Ok(if known.is_empty() {
        vec![
            (OrderKey::LastSeen { day: true }, true),
            (OrderKey::Name, false),
        ]
    } else {
        known
    })
}

/// PostHog's `search`: words separated by spaces, each of which a name
/// must contain (any case).
fn words(search: Option<&str>) -> ApiResult<Vec<String>> {
    let s = search.unwrap_or("");
    if s.len() > MAX_SEARCH {
        return Err(ApiError::invalid_attr(
            "search",
            "invalid_input",
            format!("search is at most {MAX_SEARCH} bytes"),
        ));
    }
    Ok(s.split_whitespace().map(str::to_string).collect())
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
    let (limit, offset) = page_of(q.limit.as_deref(), q.offset.as_deref())?;
    let kind = match q.event_type.as_deref() {
        None | Some("") | Some("event") | Some("all") => Some(EventKind::All),
        Some("event_custom") => Some(EventKind::Custom),
        Some("event_posthog") => Some(EventKind::PostHog),
        // Elide has no actions: none to list.
        Some("action_event") => None,
        Some(other) => {
            return Err(ApiError::invalid_attr(
                "event_type",
                "invalid_input",
                format!(
                    "event_type {other:?} is not supported: event, all, event_custom, event_posthog or action_event"
                ),
            ))
        }
    };
    let order = orders(q.ordering.as_deref())?;
    let search = words(q.search.as_deref())?;
    let names = names_of(q.names.as_deref(), "names", true)?;
    if names.as_ref().is_some_and(|n| n.len() > 1_000) {
        return Err(ApiError::invalid_attr(
            "names",
            "invalid_input",
            "at most 1000 names",
        ));
    }
    let mut defs = match kind {
        Some(kind) => all(&state, project, (search, names), kind).await?,
        None => Vec::new(),
    };
    defs.sort_by(|a, b| {
        order
            .iter()
            .map(|(key, desc)| {
                let o = key.cmp(a, b);
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.name.cmp(&b.name))
    });
    let count = defs.len();
    let page: Vec<EventDefinitionView> = defs
        .iter()
        .skip(offset)
        .take(limit)
        .map(EventDefinitionView::from)
        .collect();
    let (next, previous) = neighbours(&uri, &headers, (limit, offset), count);
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
    let defs = all(&state, project, (Vec::new(), None), EventKind::All).await?;
    match defs.iter().find(|d| d.id == id) {
        Some(d) => Ok(Json(EventDefinitionView::from(d))),
        None => Err(ApiError::not_found()),
    }
}

/// A property name as PostHog's definitions API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PropertyDefinitionView {
    /// A UUID of the project, the owner (`event`, `person`) and the name.
    id: String,
    /// The property name.
    name: String,
    /// Whether every value is a number.
    is_numerical: bool,
    /// `Numeric`, `Boolean`, `String`, or null (only objects, lists or
    /// nulls).
    property_type: Option<String>,
    /// `event` or `person`.
    #[serde(rename = "type")]
    kind: String,
    /// With `event_names`: whether an event of those names has it.
    is_seen_on_filtered_events: Option<bool>,
    /// Always empty (no tags).
    tags: Vec<String>,
    /// Always null (no descriptions).
    description: Option<String>,
}

/// A page of property definitions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PropertyPage {
    /// Names in all (after the filters).
    count: usize,
    /// The next page's URL.
    next: Option<String>,
    /// The previous page's URL.
    previous: Option<String>,
    /// The page.
    results: Vec<PropertyDefinitionView>,
}

/// The filters and page of a property listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PropertyQuery {
    /// `event` (default) or `person`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Words (separated by spaces) each name contains, any case.
    search: Option<String>,
    /// JSON list of event names: `is_seen_on_filtered_events` says
    /// whether their events have each property, and those come first.
    event_names: Option<String>,
    /// `true`: only the properties of those events.
    filter_by_event_names: Option<String>,
    /// `true`: only numeric properties; `false`: only the others.
    is_numerical: Option<String>,
    /// JSON list (or comma-separated) of names: only these.
    properties: Option<String>,
    /// JSON list of names to leave out.
    excluded_properties: Option<String>,
    /// `true`: only feature flags' properties (`$feature/…`); `false`:
    /// only the others.
    is_feature_flag: Option<String>,
    /// Page size, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Names to skip.
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
}

/// A list of names given as JSON (or, for `properties`, comma-separated).
fn names_of(v: Option<&str>, attr: &str, commas: bool) -> ApiResult<Option<Vec<String>>> {
    let Some(t) = v.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(list)) => list
            .into_iter()
            .map(|x| match x {
                serde_json::Value::String(s) => Ok(s),
                other => Err(ApiError::invalid_attr(
                    attr,
                    "invalid_input",
                    format!("{attr} must list names (text), got {other}"),
                )),
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        _ if commas => Ok(Some(t.split(',').map(|s| s.trim().to_string()).collect())),
        _ => Err(ApiError::invalid_attr(
            attr,
            "invalid_input",
            format!("{attr} must be a JSON list of names"),
        )),
    }
}

fn flag_of(v: Option<&str>, attr: &str) -> ApiResult<Option<bool>> {
    match v.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(None),
        Some("true") | Some("1") => Ok(Some(true)),
        Some("false") | Some("0") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid_attr(
            attr,
            "invalid_input",
            format!("{attr} must be true or false, got {other:?}"),
        )),
    }
}

/// List the property names of the project's events or persons.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/property_definitions/",
    operation_id = "property_definitions_list",
    tag = "definitions",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        PropertyQuery,
    ),
    responses(
        (status = 200, description = "A page of property names", body = PropertyPage),
        (status = 400, description = "A bad parameter"),
    )
)]
pub(crate) async fn properties(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<PropertyQuery>,
) -> ApiResult<Json<PropertyPage>> {
    let project = key.path_project(&p, "property_definition:read")?;
    let (limit, offset) = page_of(q.limit.as_deref(), q.offset.as_deref())?;
    let owner = match q.kind.as_deref() {
        None | Some("") | Some("event") => PropertyOwner::Event,
        Some("person") => PropertyOwner::Person,
        Some(other) => {
            return Err(ApiError::invalid_attr(
                "type",
                "invalid_input",
                format!("type {other:?} is not supported: event or person (Elide has no groups or sessions table)"),
            ))
        }
    };
    let event_names = names_of(q.event_names.as_deref(), "event_names", false)?.unwrap_or_default();
    if event_names.len() > 1_000 {
        return Err(ApiError::invalid_attr(
            "event_names",
            "invalid_input",
            "at most 1000 event names",
        ));
    }
    let only_those =
        flag_of(q.filter_by_event_names.as_deref(), "filter_by_event_names")?.unwrap_or(false);
    let numerical = flag_of(q.is_numerical.as_deref(), "is_numerical")?;
    let wanted = names_of(q.properties.as_deref(), "properties", true)?;
    let excluded = names_of(
        q.excluded_properties.as_deref(),
        "excluded_properties",
        false,
    )?
    .unwrap_or_default();
    let filter = PropertyFilter {
        event_names,
        only_those,
        search: words(q.search.as_deref())?,
        names: wanted,
        excluded,
        feature_flags: flag_of(q.is_feature_flag.as_deref(), "is_feature_flag")?,
    };
    if filter.names.as_ref().is_some_and(|n| n.len() > 1_000) || filter.excluded.len() > 1_000 {
        return Err(ApiError::invalid_attr(
            "properties",
            "invalid_input",
            "at most 1000 names in properties and in excluded_properties",
        ));
    }
    let persons = state.app().persons().clone();
    let mut defs = run_app_query(&state, move |limits| async move {
        definitions::property_definitions(&persons, project, owner, &filter, &limits).await
    })
    .await?;
    defs.retain(|d| numerical.is_none_or(|n| (d.property_type == Some("Numeric")) == n));
    // Those seen on the asked events first (PostHog's), then by name.
    defs.sort_by(|a, b| {
        b.seen_on_events
            .unwrap_or(false)
            .cmp(&a.seen_on_events.unwrap_or(false))
            .then_with(|| a.name.cmp(&b.name))
    });
    let count = defs.len();
    let results = defs
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| PropertyDefinitionView {
            id: d.id.hyphenated().to_string(),
            name: d.name.clone(),
            is_numerical: d.property_type == Some("Numeric"),
            property_type: d.property_type.map(str::to_string),
            kind: owner.as_str().to_string(),
            is_seen_on_filtered_events: d.seen_on_events,
            tags: Vec::new(),
            description: None,
        })
        .collect();
    let (next, previous) = neighbours(&uri, &headers, (limit, offset), count);
    Ok(Json(PropertyPage {
        count,
        next,
        previous,
        results,
    }))
}

/// A listing's `limit` (1 to [`MAX_LIMIT`], default 100) and `offset`.
fn page_of(limit: Option<&str>, offset: Option<&str>) -> ApiResult<(usize, usize)> {
    let limit: usize = number(limit, "limit", 100)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok((limit, number(offset, "offset", 0)?))
}

/// The URLs of the pages after and before `(limit, offset)` of `count`.
fn neighbours(
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    (limit, offset): (usize, usize),
    count: usize,
) -> (Option<String>, Option<String>) {
    let at = |o: usize| page_url(uri, headers, o, limit);
    (
        (offset.saturating_add(limit) < count).then(|| at(offset + limit)),
        (offset > 0).then(|| at(offset.saturating_sub(limit))),
    )
}

/// The event definitions routes.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let mut r = axum::Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        for (path, m) in [
            ("/event_definitions", get(list)),
            ("/event_definitions/{id}", get(retrieve)),
            ("/property_definitions", get(properties)),
        ] {
            r = r
                .route(&format!("{prefix}{path}"), m.clone())
                .route(&format!("{prefix}{path}/"), m);
        }
    }
    r
}
