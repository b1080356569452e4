//! PostHog's `ActorsQuery` on `POST …/query/`: a page of persons, as
//! PostHog's persons page (no `source`: the project's persons) and its
//! persons modals ask for them (`source`: the persons of one point of an
//! insight: an `InsightActorsQuery` of a `TrendsQuery`, a
//! `StickinessQuery`, a `LifecycleQuery`, a `RetentionQuery` or a
//! `PathsQuery`, or a `FunnelsActorsQuery` of a `FunnelsQuery`;
//! [`sources`]).
//!
//! PostHog compiles `select` to HogQL over its persons table; Elide takes
//! the columns PostHog's own screens select ([`Column`]) and refuses
//! others with a 400 naming them. The persons of a point are computed by
//! [`elide_app::analytics`] as the legacy persons routes compute them
//! ([`crate::analytics`]); `search`, `properties` and `fixedProperties`
//! then narrow them through the persons listing's filters. A person
//! deleted between the point's query and the page's lookup is left out
//! and counted in `missing_actors_count`, as PostHog counts actors it
//! cannot find.

use std::collections::HashMap;

use chrono::Utc;
use elide_app::analytics::actors;
use elide_app::analytics::trends::{ActorKey, TrendActor};
use elide_persons::Person;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::blocking;
use crate::AppState;

mod sources;
use sources::{listing, of_source, Narrow};

/// PostHog's `ActorsQuery` (docs/api.md lists the columns and sources
/// served).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorsQuery {
    /// Always `ActorsQuery`.
    #[schema(pattern = "^ActorsQuery$")]
    pub kind: String,
    /// Whose persons: none (the project's), `{kind: "InsightActorsQuery",
    /// source: TrendsQuery | StickinessQuery | LifecycleQuery |
    /// RetentionQuery | PathsQuery, series?, day?, breakdown?, compare?,
    /// status?, interval?}` (a trend's `compare: "previous"`: the point
    /// is of its compared period) (a `PathsQuery`'s edge or drop-off is in its
    /// `pathsFilter`: `pathStartKey`, `pathEndKey`, `pathDropoffKey`)
    /// or `{kind: "FunnelsActorsQuery", source: FunnelsQuery,
    /// funnelStep?, funnelStepBreakdown?, funnelCustomSteps?}`. A
    /// trend's `series` is the index of a query series (formulas have no
    /// persons).
    #[schema(value_type = Option<Object>)]
    pub source: Option<Value>,
    /// The columns: `person` (or `actor`), `id`, `person_display_name`,
    /// `created_at`, `person.$delete`, `properties.<key>`,
    /// `matched_recordings`, of a trend's point `event_count`,
    /// `last_seen`, `event_distinct_ids`, of a paths' edge `event_count`
    /// (its matching steps), of a retention cohort `appearances` (a
    /// ` -- label` is allowed).
    pub select: Option<Vec<String>>,
    /// `["<column> [ASC|DESC]", …]` (one text may list several, comma
    /// separated): `event_count`, `last_seen`, `id`,
    /// `length(appearances)`, `created_at DESC`.
    #[serde(rename = "orderBy")]
    pub order_by: Option<Vec<String>>,
    /// Page size, 1 to 10000 (default 100).
    pub limit: Option<u32>,
    /// Persons to skip.
    pub offset: Option<u32>,
    /// Substring of email or name, or an exact distinct id or UUID.
    pub search: Option<String>,
    /// Person property filters (and cohort filters).
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// More of them (PostHog's fixed filters of a screen).
    #[schema(value_type = Option<Vec<Object>>)]
    #[serde(rename = "fixedProperties")]
    pub fixed_properties: Option<Value>,
}

/// The answer to an `ActorsQuery`: rows of the selected columns.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorsAnswer {
    /// One row per person, the columns in `select`'s order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub results: Vec<Vec<Value>>,
    /// The columns, as selected.
    pub columns: Vec<String>,
    /// A ClickHouse type name per column.
    pub types: Vec<String>,
    /// Always empty (no HogQL is compiled).
    pub hogql: String,
    /// Whether persons follow this page.
    #[serde(rename = "hasMore")]
    pub has_more: bool,
    /// The page size.
    pub limit: usize,
    /// Persons skipped.
    pub offset: usize,
    /// Persons of the page deleted before they could be read.
    pub missing_actors_count: usize,
    /// Always false.
    pub is_cached: bool,
    /// When it was computed (ISO 8601).
    pub last_refresh: String,
    /// Always `UTC`.
    pub timezone: String,
}

/// Most persons one page lists.
const MAX_LIMIT: usize = 10_000;

/// Most persons of a point narrowed by `search` or filters (they are read
/// whole before they are narrowed and paged).
const MAX_FILTERED: usize = 100_000;

/// A column PostHog's screens select.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// `person` or `actor`: `{id, properties, is_identified, created_at,
    /// distinct_ids}`.
    Actor,
    /// `id` (`actor_id`, `person_id`): the UUID.
    Id,
    /// `person_display_name`: `{display_name, id}`.
    DisplayName,
    /// `created_at`.
    CreatedAt,
    /// `person.$delete`: PostHog's constant 1 (the delete button).
    Delete,
    /// `event_count`: the person's events the point counts.
    EventCount,
    /// `last_seen`: the last of them.
    LastSeen,
    /// `event_distinct_ids`: the distinct ids they were sent with.
    EventDistinctIds,
    /// `matched_recordings`.
    MatchedRecordings,
    /// `appearances`: of a retention cohort's person, 0 and the intervals
    /// after it they came back in.
    Appearances,
    /// `properties.<key>` or `person.properties.<key>`.
    Property(String),
}

impl Column {
    fn parse(given: &str) -> ApiResult<Column> {
        // PostHog's `expr -- Label` names a column's heading.
        let expr = given.split_once(" --").map_or(given, |(e, _)| e).trim();
        let prop = expr
            .strip_prefix("person.properties.")
            .or_else(|| expr.strip_prefix("properties."));
        Ok(match expr {
            "person" | "actor" => Column::Actor,
            "id" | "actor_id" | "person_id" => Column::Id,
            "person_display_name" => Column::DisplayName,
            "created_at" => Column::CreatedAt,
            "person.$delete" => Column::Delete,
            "event_count" => Column::EventCount,
            "last_seen" => Column::LastSeen,
            "event_distinct_ids" => Column::EventDistinctIds,
            "matched_recordings" => Column::MatchedRecordings,
            "appearances" => Column::Appearances,
            _ => match prop.map(|p| p.trim_matches('`').trim_matches('"')) {
                Some(p) if !p.is_empty() => Column::Property(p.to_string()),
                _ => {
                    return Err(invalid(
                        "select",
                        format!(
                            "column {given:?} is not supported; Elide's ActorsQuery selects person, actor, id, \
                             person_display_name, created_at, person.$delete, properties.<key>, \
                             matched_recordings, of a trend's point event_count, last_seen, \
                             event_distinct_ids, of a retention cohort appearances"
                        ),
                    ))
                }
            },
        })
    }

    /// Whether only a trend's point has it.
    fn of_trends(&self) -> bool {
        matches!(
            self,
            Column::EventCount | Column::LastSeen | Column::EventDistinctIds
        )
    }

    fn type_name(&self) -> &'static str {
        match self {
            Column::Actor | Column::DisplayName => "Tuple",
            Column::Id => "UUID",
            Column::CreatedAt | Column::LastSeen => "DateTime64(6, 'UTC')",
            Column::Delete => "UInt8",
            Column::EventCount => "UInt64",
            Column::EventDistinctIds => "Array(String)",
            Column::MatchedRecordings => "Array(Tuple)",
            Column::Appearances => "Array(UInt64)",
            Column::Property(_) => "String",
        }
    }
}

fn invalid(attr: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid_attr(attr, "invalid_input", msg.into())
}

/// What a page is ordered by.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    /// A trend's key ([`ActorKey`]), descending or not.
    Trend(ActorKey, bool),
    /// Newest first: the persons listing's order (no source).
    CreatedDesc,
    /// A retention cohort's persons by their number of appearances.
    Appearances(bool),
}

fn orders(given: &[String]) -> ApiResult<Vec<Order>> {
    let mut out = Vec::new();
    for term in given.iter().flat_map(|t| t.split(',')) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let mut words = term.split_whitespace();
        let key = words.next().unwrap_or_default();
        let desc = match words.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(_) => return Err(invalid("orderBy", format!("{term:?}: ASC or DESC"))),
        };
        if words.next().is_some() {
            return Err(invalid(
                "orderBy",
                format!("{term:?}: a column and ASC or DESC"),
            ));
        }
        out.push(match key {
            "event_count" => Order::Trend(ActorKey::EventCount, desc),
            "last_seen" => Order::Trend(ActorKey::LastSeen, desc),
            "id" | "actor_id" | "person_id" => Order::Trend(ActorKey::Id, desc),
            "created_at" if desc => Order::CreatedDesc,
            "length(appearances)" => Order::Appearances(desc),
            _ => {
                return Err(invalid(
                    "orderBy",
                    format!(
                        "ordering by {term:?} is not supported: event_count, last_seen, id, \
                         length(appearances) (ASC or DESC), created_at DESC"
                    ),
                ))
            }
        });
    }
    Ok(out)
}

/// A page of persons found by a source, before they are read.
struct Found {
    /// UUIDs in the page's order.
    uuids: Vec<String>,
    /// A trend's figures of each, by UUID.
    trend: HashMap<String, TrendActor>,
    /// A retention cohort's appearances of each, by UUID.
    appearances: HashMap<String, Vec<usize>>,
    /// Whether persons follow.
    has_more: bool,
}

/// Answer an `ActorsQuery` of `project`.
pub(crate) async fn actors_query(
    state: &AppState,
    project: i64,
    q: &Map<String, Value>,
) -> ApiResult<ActorsAnswer> {
    const KEYS: &[&str] = &[
        "kind",
        "source",
        "select",
        "orderBy",
        "limit",
        "offset",
        "search",
        "properties",
        "fixedProperties",
        "tags",
        "modifiers",
        "response",
        "version",
    ];
    if let Some(k) = q.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid(k, format!("ActorsQuery: {k} is not supported")));
    }
    let source = q.get("source").filter(|v| !v.is_null());
    let trend_source = source.is_some_and(|s| {
        s.get("kind").and_then(Value::as_str) == Some("InsightActorsQuery")
            && s.pointer("/source/kind").and_then(Value::as_str) == Some("TrendsQuery")
    });
    let select: Vec<String> = match q.get("select") {
        None | Some(Value::Null) => {
            let mut d = vec!["person".to_string(), "id".into(), "person.$delete".into()];
            if trend_source {
                d.push("event_distinct_ids".into());
            }
            d
        }
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(
                    "select",
                    format!("each column is a string, got {other}"),
                )),
            })
            .collect::<ApiResult<_>>()?,
        Some(other) => return Err(invalid("select", format!("select is a list, got {other}"))),
    };
    if select.is_empty() {
        return Err(invalid("select", "select names no column"));
    }
    let columns = select
        .iter()
        .map(|s| Column::parse(s))
        .collect::<ApiResult<Vec<_>>>()?;
    // A paths' persons have their matched steps as `event_count`.
    let paths_source = source.is_some_and(|s| {
        s.get("kind").and_then(Value::as_str) == Some("InsightActorsQuery")
            && s.pointer("/source/kind").and_then(Value::as_str) == Some("PathsQuery")
    });
    if let Some(c) = columns.iter().zip(&select).find(|(c, _)| {
        c.of_trends() && !trend_source && !(paths_source && **c == Column::EventCount)
    }) {
        return Err(invalid(
            "select",
            format!("{:?} is a column of a trend's point only (an InsightActorsQuery of a TrendsQuery; event_count also of a PathsQuery)", c.1),
        ));
    }
    let retention = source
        .and_then(|s| s.get("source"))
        .and_then(|i| i.get("kind"))
        .and_then(Value::as_str)
        == Some("RetentionQuery");
    if let Some(c) = columns
        .iter()
        .zip(&select)
        .find(|(c, _)| **c == Column::Appearances)
    {
        if !retention {
            return Err(invalid(
                "select",
                format!("{:?} is a column of a retention cohort only (an InsightActorsQuery of a RetentionQuery)", c.1),
            ));
        }
    }
    let order_by: Vec<String> = match q.get("orderBy") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(
                    "orderBy",
                    format!("each order is a string, got {other}"),
                )),
            })
            .collect::<ApiResult<_>>()?,
        Some(other) => {
            return Err(invalid(
                "orderBy",
                format!("orderBy is a list, got {other}"),
            ))
        }
    };
    let order = orders(&order_by)?;
    let limit = count(q, "limit", 100)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let offset = count(q, "offset", 0)?;
    if offset > crate::analytics::MAX_OFFSET {
        return Err(invalid("offset", "offset is too large"));
    }
    let search = match q.get("search") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(
                "search",
                format!("search is a string, got {other}"),
            ))
        }
    };
    let mut filters = Vec::new();
    for k in ["properties", "fixedProperties"] {
        match q.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => filters.extend(list.iter().cloned()),
            Some(other) => {
                return Err(invalid(k, format!("{k} is a list of filters, got {other}")))
            }
        }
    }
    let narrow = Narrow::new(search, filters)?;
    let found = match source {
        None => {
            if order.iter().any(|o| *o != Order::CreatedDesc) {
                return Err(invalid(
                    "orderBy",
                    "the project's persons are listed newest first (created_at DESC)",
                ));
            }
            return answer(
                state,
                project,
                &columns,
                select,
                listing(state, project, &narrow, limit, offset).await?,
                limit,
                offset,
            )
            .await;
        }
        Some(Value::Object(s)) => {
            if order.contains(&Order::CreatedDesc) {
                return Err(invalid(
                    "orderBy",
                    "the persons of a source are ordered by event_count, last_seen, \
                     length(appearances) or id",
                ));
            }
            let recordings = columns.contains(&Column::MatchedRecordings);
            of_source(
                state,
                project,
                s,
                &order,
                &narrow,
                (limit, offset),
                recordings,
            )
            .await?
        }
        Some(other) => {
            return Err(invalid(
                "source",
                format!("source is a query object, got {other}"),
            ))
        }
    };
    answer(state, project, &columns, select, found, limit, offset).await
}

fn count(q: &Map<String, Value>, key: &str, default: usize) -> ApiResult<usize> {
    match q.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                invalid(
                    key,
                    format!("{key} must be a non-negative integer, got {v}"),
                )
            }),
    }
}

/// The page's rows: its persons read, the columns filled.
async fn answer(
    state: &AppState,
    project: i64,
    columns: &[Column],
    select: Vec<String>,
    found: Found,
    limit: usize,
    offset: usize,
) -> ApiResult<ActorsAnswer> {
    let persons = state.app().persons().clone();
    let uuids = found.uuids.clone();
    let people = blocking(move || Ok(actors::load(&persons, project, &uuids)?)).await?;
    let by_uuid: HashMap<String, &Person> = people
        .iter()
        .map(|p| (p.uuid.hyphenated().to_string(), p))
        .collect();
    let mut results = Vec::with_capacity(found.uuids.len());
    let mut missing = 0;
    for u in &found.uuids {
        let Some(p) = by_uuid.get(u) else {
            missing += 1;
            continue;
        };
        let t = found.trend.get(u);
        let a = found.appearances.get(u);
        results.push(columns.iter().map(|c| cell(c, p, t, a)).collect());
    }
    Ok(ActorsAnswer {
        results,
        types: columns.iter().map(|c| c.type_name().to_string()).collect(),
        columns: select,
        hogql: String::new(),
        has_more: found.has_more,
        limit,
        offset,
        missing_actors_count: missing,
        is_cached: false,
        last_refresh: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        timezone: "UTC".into(),
    })
}

fn iso(us: i64) -> Value {
    chrono::DateTime::from_timestamp_micros(us).map_or(Value::Null, |d| {
        json!(d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    })
}

/// PostHog's default display name: the first of its display-name
/// properties that is set, else the first distinct id, else the UUID.
fn display_name(p: &Person) -> String {
    const KEYS: [&str; 7] = [
        "email", "Email", "name", "Name", "username", "Username", "UserName",
    ];
    KEYS.iter()
        .find_map(|k| match p.properties.get(*k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .or_else(|| p.distinct_ids.first().cloned())
        .unwrap_or_else(|| p.uuid.hyphenated().to_string())
}

fn cell(c: &Column, p: &Person, t: Option<&TrendActor>, a: Option<&Vec<usize>>) -> Value {
    let uuid = p.uuid.hyphenated().to_string();
    match c {
        Column::Actor => json!({
            "id": uuid,
            "properties": p.properties,
            "is_identified": p.is_identified,
            "created_at": p.created_at,
            "distinct_ids": p.distinct_ids,
        }),
        Column::Id => json!(uuid),
        Column::DisplayName => json!({"display_name": display_name(p), "id": uuid}),
        Column::CreatedAt => json!(p.created_at),
        Column::Delete => json!(1),
        Column::EventCount => t.map_or(Value::Null, |t| json!(t.event_count)),
        Column::LastSeen => t.map_or(Value::Null, |t| iso(t.last_seen)),
        Column::EventDistinctIds => t.map_or(Value::Null, |t| json!(t.distinct_ids)),
        // A trend's point matches its events' recorded sessions; the
        // other sources do not (docs/api.md).
        Column::MatchedRecordings => t.map_or(json!([]), |t| {
            Value::Array(
                t.recordings
                    .iter()
                    .map(|m| {
                        json!({"session_id": m.session_id, "events": m.events.iter().map(|e| json!({
                            "timestamp": iso(e.timestamp), "uuid": e.uuid, "window_id": e.window_id,
                        })).collect::<Vec<_>>()})
                    })
                    .collect(),
            )
        }),
        Column::Property(k) => p.properties.get(k).cloned().unwrap_or(Value::Null),
        Column::Appearances => a.map_or(Value::Null, |a| json!(a)),
    }
}
