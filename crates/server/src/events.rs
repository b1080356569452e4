//! PostHog's events API: `GET …/events/` lists a project's events
//! (deletions applied), newest first, filtered as PostHog's legacy
//! events list filters them; `GET …/events/{id}/` is one event by UUID.
//! Both need `query:read`, as in PostHog; so does `GET …/events/values/`,
//! the values an event property takes (a filter's value picker).
//!
//! Paging: `next` continues after the last event listed, by its time
//! (`before`, or `after` oldest first) and its UUID (`before_event_id`,
//! `after_event_id`: Elide's), so that no event is skipped or repeated at
//! a page boundary ([`elide_app::analytics::events`]).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::Json;
use elide_app::analytics::events::{self, EventRow, EventsQuery};
use elide_app::analytics::properties;
use serde_json::{json, Map, Value};

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, number, properties_json, url_with, PathParams};
use crate::query::run_app_query;
use crate::AppState;

/// Events one page lists by default, and at most (PostHog's
/// `DEFAULT_RETURNED_ROWS` and `EVENT_LIST_MAX_LIMIT`).
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The largest `offset` taken (PostHog's deprecated offset stops there).
const MAX_OFFSET: usize = 50_000;

/// The query string (the last of a repeated name).
struct Params(HashMap<String, String>);

impl Params {
    fn of(uri: &axum::http::Uri) -> Params {
        Params(
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A parameter as given (`None`: absent).
    fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter trimmed (`None`: absent or blank).
    fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|s| !s.is_empty())
    }

    /// A count parameter ([`number`]: absent is `default`, anything but
    /// a non-negative integer a 400).
    fn count(&self, name: &str, default: usize) -> ApiResult<usize> {
        number(self.get(name), name, default)
    }
}

/// A time parameter (`before`, `after`): ISO 8601 (UTC without an
/// offset) or relative to now (`-1d`), as PostHog's `parse_timestamp`.
fn time(q: &Params, name: &str, now: chrono::DateTime<chrono::Utc>) -> ApiResult<Option<i64>> {
    match q.get(name) {
        None => Ok(None),
        Some(s) => elide_store::predicate::parse_time(s, now)
            .map(Some)
            .map_err(|e| ApiError::invalid_attr(name, "invalid", format!("{name}: {e}"))),
    }
}

/// A cursor's event id (`before_event_id`, `after_event_id`): a UUID,
/// given with its time parameter `bound` (`present`).
fn event_id(q: &Params, name: &str, present: bool, bound: &str) -> ApiResult<Option<String>> {
    let Some(s) = q.get(name) else {
        return Ok(None);
    };
    if !present {
        return Err(ApiError::invalid_attr(
            name,
            "invalid",
            format!("{name} continues from `{bound}`, which is missing"),
        ));
    }
    uuid::Uuid::parse_str(s)
        .map(|u| Some(u.hyphenated().to_string()))
        .map_err(|_| {
            ApiError::invalid_attr(name, "invalid", format!("{name} must be an event UUID"))
        })
}

/// Whether a flag parameter is on (`true` or `1`, as PostHog reads
/// `include_person`).
fn flag(q: &Params, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
}

/// An event's time as PostHog's serializer writes it
/// (`datetime.isoformat()` in UTC: microseconds only when there are some).
fn iso(us: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_micros(us) else {
        return us.to_string();
    };
    if us.rem_euclid(1_000_000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// An event as PostHog's `ClickhouseEventSerializer` shows it; `person`
/// when asked for (`include_person`), else null.
fn event_json(e: &EventRow, person: Option<&elide_persons::Person>) -> Value {
    let properties: Map<String, Value> = serde_json::from_str(&e.properties).unwrap_or_default();
    let chain = properties
        .get("$elements_chain")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let person = person.map(|p| {
        let shown: Map<String, Value> = ["email", "name", "username"]
            .iter()
            .filter_map(|k| p.properties.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        json!({
            "is_identified": p.is_identified,
            "distinct_ids": p.distinct_ids.iter().take(1).collect::<Vec<_>>(),
            "properties": shown,
        })
    });
    json!({
        "id": e.uuid,
        "distinct_id": e.distinct_id,
        "properties": properties,
        "event": e.event,
        "timestamp": iso(e.timestamp_us),
        "person": person,
        "elements": [],
        "elements_chain": chain,
    })
}

/// The persons of the events' distinct ids (`include_person`).
async fn persons_of(
    state: &AppState,
    project: i64,
    rows: &[EventRow],
) -> ApiResult<BTreeMap<String, elide_persons::Person>> {
    let mut ids: Vec<String> = rows.iter().map(|r| r.distinct_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let persons = state.app().persons().clone();
    blocking(move || {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(elide_persons::persons::MAX_LOOKUP) {
            out.extend(persons.by_distinct_ids(project, chunk)?);
        }
        Ok(out)
    })
    .await
}

/// List the project's events, newest first: PostHog's legacy events list.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/events/",
    operation_id = "events_list",
    tag = "events",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("event" = Option<String>, Query, description = "Only events of this name."),
        ("distinct_id" = Option<String>, Query, description = "Only events of this distinct id."),
        ("person_id" = Option<String>, Query, description = "Only the events of this person (its integer id or UUID)."),
        ("before" = Option<String>, Query, description = "Only events before this time (ISO 8601, or relative: `-1d`). Default: none."),
        ("after" = Option<String>, Query, description = "Only events after this time. Default: none."),
        ("properties" = Option<String>, Query, description = "JSON list of property filters (event, person or cohort)."),
        ("orderBy" = Option<String>, Query, description = "`[\"-timestamp\"]` (default: newest first) or `[\"timestamp\"]`."),
        ("limit" = Option<u32>, Query, description = "Events per page (default 100, at most 1000)."),
        ("offset" = Option<u32>, Query, description = "Events to skip first (at most 50000; `next` links page without it)."),
        ("before_event_id" = Option<String>, Query, description = "With `before`: also the events at that time whose UUID sorts before this one (the cursor of `next` links)."),
        ("after_event_id" = Option<String>, Query, description = "With `after`: also the events at that time whose UUID sorts after this one (oldest first)."),
        ("cursor_seq" = Option<u64>, Query, description = "With `before_event_id` or `after_event_id`: also the events of that time and UUID stored before (after) this place: a UUID sent twice is two events."),
        ("include_person" = Option<bool>, Query, description = "Add each event's person (`is_identified`, its first distinct id, `email`/`name`/`username`)."),
    ),
    responses(
        (status = 200, description = "`{next, results: [event]}`", body = Object),
        (status = 400, description = "A parameter that does not read"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "query:read")?;
    let q = Params::of(&uri);
    for (name, why) in [
        (
            "action_id",
            "Elide has no actions: filter by `event` and `properties`",
        ),
        (
            "select",
            "`select` is not served here: use the query endpoint (HogQL)",
        ),
        (
            "where",
            "`where` is not served here: use the query endpoint (HogQL)",
        ),
        (
            "format",
            "only JSON is served here: use the query endpoint for exports",
        ),
    ] {
        if q.raw(name).is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::invalid_attr(name, "invalid", why));
        }
    }
    let now = chrono::Utc::now();
    let limit = q.count("limit", DEFAULT_LIMIT)?;
    if limit == 0 {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid",
            "limit must be at least 1",
        ));
    }
    // PostHog lowers a larger limit to its maximum.
    let limit = limit.min(MAX_LIMIT);
    let offset = q.count("offset", 0)?;
    if offset > MAX_OFFSET {
        return Err(ApiError::invalid_attr(
            "offset",
            "invalid",
            format!("Offset is deprecated. Max supported offset value is {MAX_OFFSET}"),
        ));
    }
    let ascending = match q.get("orderBy") {
        None => false,
        // The time only (PostHog orders by nothing else, and reads any
        // other list as oldest first).
        Some(s) => match serde_json::from_str::<Vec<String>>(s).as_deref() {
            Ok([by]) if by == "-timestamp" => false,
            Ok([by]) if by == "timestamp" => true,
            _ => {
                return Err(ApiError::invalid_attr(
                    "orderBy",
                    "invalid",
                    "orderBy must be a JSON list: [\"-timestamp\"] or [\"timestamp\"]",
                ))
            }
        },
    };
    let props = match q.get("properties") {
        None => Vec::new(),
        Some(s) => properties::props(Some(properties_json(s)?), "properties")
            .map_err(|e| ApiError::invalid_attr("properties", "invalid_input", e.to_string()))?,
    };
    let person_rows = match q.get("person_id") {
        None => None,
        Some(id) => {
            if id.parse::<i64>().is_err() && uuid::Uuid::parse_str(id).is_err() {
                return Err(ApiError::invalid_attr(
                    "person_id",
                    "invalid",
                    "person_id must be a person's integer id or UUID",
                ));
            }
            let persons = state.app().persons().clone();
            let id = id.to_string();
            // A person that does not exist has no events.
            Some(
                blocking(move || match persons.rows_of_person(project, &id) {
                    Err(elide_persons::PersonsError::NotFound(_)) => Ok(Vec::new()),
                    r => Ok(r?),
                })
                .await?,
            )
        }
    };
    let before_us = time(&q, "before", now)?;
    let after_us = time(&q, "after", now)?;
    let query = EventsQuery {
        // An empty `event` is no filter (PostHog's `event or None`).
        event: q.raw("event").filter(|e| !e.is_empty()).map(str::to_string),
        distinct_id: q.raw("distinct_id").map(str::to_string),
        person_rows,
        before_uuid: event_id(&q, "before_event_id", before_us.is_some(), "before")?,
        after_uuid: event_id(&q, "after_event_id", after_us.is_some(), "after")?,
        cursor_seq: match q.get("cursor_seq") {
            None => None,
            Some(_) if q.get("before_event_id").is_none() && q.get("after_event_id").is_none() => {
                return Err(ApiError::invalid_attr(
                    "cursor_seq",
                    "invalid",
                    "cursor_seq continues from before_event_id or after_event_id, which is missing",
                ))
            }
            s => Some(number::<u64>(s, "cursor_seq", 0)?),
        },
        after_us,
        before_us,
        props,
        ascending,
        limit,
        offset,
    };
    let persons = state.app().persons().clone();
    let query2 = query.clone();
    let mut rows = run_app_query(&state, move |limits| async move {
        events::list(&persons, project, &query2, &limits).await
    })
    .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match rows.last().filter(|_| more) {
        None => None,
        Some(last) => {
            // After the last event listed: its time and UUID; the offset
            // is spent.
            let (time, id) = if ascending {
                ("after", "after_event_id")
            } else {
                ("before", "before_event_id")
            };
            Some(url_with(
                &uri,
                &headers,
                &[
                    (time, iso(last.timestamp_us)),
                    (id, last.uuid.clone()),
                    ("cursor_seq", last.seq.to_string()),
                    ("offset", "0".to_string()),
                ],
            ))
        }
    };
    let people = if flag(&q, "include_person") {
        persons_of(&state, project, &rows).await?
    } else {
        BTreeMap::new()
    };
    let results: Vec<Value> = rows
        .iter()
        .map(|r| event_json(r, people.get(&r.distinct_id)))
        .collect();
    Ok(Json(json!({ "next": next, "results": results })))
}

/// One event by its UUID.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/events/{id}/",
    operation_id = "events_retrieve",
    tag = "events",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The event's UUID."),
        ("include_person" = Option<bool>, Query, description = "Add the event's person."),
    ),
    responses(
        (status = 200, description = "The event", body = Object),
        (status = 400, description = "Not a UUID"),
        (status = 404, description = "No visible event has this UUID"),
    )
)]
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let project = key.path_project(&p, "query:read")?;
    let id = p.get("id").cloned().unwrap_or_default();
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return Err(ApiError::invalid("Invalid UUID"));
    };
    let uuid = uuid.hyphenated().to_string();
    let persons = state.app().persons().clone();
    let found = run_app_query(&state, move |limits| async move {
        events::one(&persons, project, &uuid, &limits).await
    })
    .await?;
    let Some(row) = found else {
        let mut e = ApiError::not_found();
        e.detail = format!("No events exist for event UUID {id}");
        return Err(e);
    };
    let people = if flag(&Params::of(&uri), "include_person") {
        persons_of(&state, project, std::slice::from_ref(&row)).await?
    } else {
        BTreeMap::new()
    };
    Ok(Json(event_json(&row, people.get(&row.distinct_id))))
}

/// Longest property name `events/values/` takes (PostHog's property
/// names hold at most 400 characters), longest search text, and most
/// `event_name` parameters.
const MAX_VALUES_KEY: usize = 400;
const MAX_VALUES_SEARCH: usize = 1000;
const MAX_VALUES_EVENTS: usize = 100;

/// Days before today whose events `events/values/` reads (PostHog's
/// `-7d`, from the start of that day to the end of today, UTC).
const VALUES_DAYS: i64 = 7;

/// Nesting of arrays flattened into values (PostHog's `flatten`).
const MAX_FLATTEN_DEPTH: usize = 10;

/// One value an event property takes (`GET …/events/values/`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EventValue {
    /// The value: text or a number (or null inside a list); a list's elements each on its
    /// own, a boolean as `"true"`/`"false"`, an object as its JSON text.
    name: Value,
}

/// The values an event property takes, for a filter's value picker.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/events/values/",
    operation_id = "events_values",
    tag = "events",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("key" = String, Query, description = "The event property; `custom_event` lists the project's event names instead (not `$pageview`, `$autocapture`, `$identify`, `$pageleave`, `$screen`)."),
        ("value" = Option<String>, Query, description = "Only values containing this text (case-insensitive); then the shortest first."),
        ("event_name" = Option<Vec<String>>, Query, description = "Only events of these names (repeat the parameter for more)."),
    ),
    responses(
        (status = 200, description = "Up to 10 values, most frequent first, of the events of the last 7 days", body = [EventValue]),
        (status = 400, description = "No key, or a parameter past its limit"),
    )
)]
pub(crate) async fn values(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Vec<EventValue>>> {
    let project = key.path_project(&p, "query:read")?;
    let q = Params::of(&uri);
    let Some(prop) = q.raw("key").filter(|k| !k.is_empty()).map(str::to_string) else {
        return Err(ApiError::invalid_attr("key", "required", "key is required"));
    };
    if prop.chars().count() > MAX_VALUES_KEY {
        return Err(ApiError::invalid_attr(
            "key",
            "max_length",
            format!("key holds at most {MAX_VALUES_KEY} characters"),
        ));
    }
    let persons = state.app().persons().clone();
    if prop == "custom_event" {
        let names = run_app_query(&state, move |limits| async move {
            events::event_names(&persons, project, &limits).await
        })
        .await?;
        return Ok(Json(
            names
                .into_iter()
                .map(|n| EventValue {
                    name: Value::String(n),
                })
                .collect(),
        ));
    }
    let search = q.raw("value").filter(|v| !v.is_empty()).map(str::to_string);
    if search
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_VALUES_SEARCH)
    {
        return Err(ApiError::invalid_attr(
            "value",
            "max_length",
            format!("value holds at most {MAX_VALUES_SEARCH} characters"),
        ));
    }
    let names: Vec<String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, v)| k == "event_name" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
        .collect();
    if names.len() > MAX_VALUES_EVENTS {
        return Err(ApiError::invalid_attr(
            "event_name",
            "invalid",
            format!(
                "at most {MAX_VALUES_EVENTS} event names, got {}",
                names.len()
            ),
        ));
    }
    let today = chrono::Utc::now().date_naive();
    let day_us = |d: chrono::NaiveDate| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros()
    };
    let query = events::ValuesQuery {
        key: prop,
        search,
        events: names,
        from_us: day_us(today - chrono::Days::new(VALUES_DAYS as u64)),
        to_us: day_us(today + chrono::Days::new(1)) - 1,
    };
    let raw = run_app_query(&state, move |limits| async move {
        events::property_values(&persons, project, &query, &limits).await
    })
    .await?;
    let mut names = Vec::new();
    for text in &raw {
        match serde_json::from_str::<Value>(text) {
            // An object as stored, so that a filter on the value it names
            // matches (filters read an object as its JSON text).
            Ok(Value::Object(_)) => names.push(Value::String(text.clone())),
            Ok(v) => value_names(v, 0, &mut names),
            Err(_) => names.push(Value::String(text.clone())),
        }
    }
    Ok(Json(
        names.into_iter().map(|name| EventValue { name }).collect(),
    ))
}

/// `v` as names of the value picker, as PostHog's `convert_property_value`
/// over `flatten`: a list's elements each on its own (nested lists too,
/// [`MAX_FLATTEN_DEPTH`] deep), a boolean as `"true"`/`"false"`, an object
/// as its JSON text; strings, numbers and null (inside a list) as they are.
fn value_names(v: Value, depth: usize, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) if depth < MAX_FLATTEN_DEPTH => {
            for x in items {
                value_names(x, depth + 1, out);
            }
        }
        Value::Bool(b) => out.push(Value::String(b.to_string())),
        v @ (Value::Array(_) | Value::Object(_)) => out.push(Value::String(v.to_string())),
        v => out.push(v),
    }
}

/// The routes, under both project prefixes, with and without the
/// trailing slash.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let mut r = axum::Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        for (path, m) in [
            ("/events", get(list)),
            ("/events/values", get(values)),
            ("/events/{id}", get(retrieve)),
        ] {
            r = r
                .route(&format!("{prefix}{path}"), m.clone())
                .route(&format!("{prefix}{path}/"), m);
        }
    }
    r
}
