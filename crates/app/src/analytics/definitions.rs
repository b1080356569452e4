//! Event definitions (PostHog's `event_definitions`): the event names a
//! project's events carry, each with when it was first and last seen and
//! its events in the last 30 days — read from the events themselves
//! (deletions applied), so a name whose events are all deleted is gone,
//! and nothing is kept beside the events to drift from them.
//!
//! A definition's id is a UUID derived from the project and the name
//! ([`definition_id`]): the same name keeps its id, and a retrieve by id
//! finds it without a table of ids.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use uuid::Uuid;

use super::{lit, stream, ts_lit};
use crate::error::Result;
use crate::query::QueryLimits;

/// One event name of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDefinition {
    /// [`definition_id`] of the project and the name.
    pub id: Uuid,
    /// The event name.
    pub name: String,
    /// Its first event's time (µs).
    pub first_seen: i64,
    /// Its last event's time (µs).
    pub last_seen: i64,
    /// Its events in the 30 days before the request.
    pub volume_30_day: u64,
}

/// Which names a listing keeps (PostHog's `event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Every name.
    All,
    /// Names not starting with `$` (`event_custom`).
    Custom,
    /// Names starting with `$`, PostHog's own (`event_posthog`).
    PostHog,
}

/// The namespace of definition ids (a v5 UUID of Elide's own).
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1e_4e0a_7c2b_5f3e_9a41_0c8d_2b7e_51f4);

/// The id of event name `name` in `project`: a v5 UUID of both.
pub fn definition_id(project: i64, name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{project}\u{0}{name}").as_bytes())
}

const DAY: i64 = 86_400_000_000;

/// The project's event names containing `search` (case-insensitive; all
/// when `None`), of `kind`, sorted by name; `now` (µs) ends the 30 days
/// of `volume_30_day`.
pub async fn event_definitions(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    search: Option<&str>,
    kind: EventKind,
    now: i64,
    limits: &QueryLimits,
) -> Result<Vec<EventDefinition>> {
    let mut filter = Vec::new();
    if let Some(s) = search.filter(|s| !s.is_empty()) {
        filter.push(format!("strpos(lower(event), lower({})) > 0", lit(s)));
    }
    match kind {
        EventKind::All => {}
        EventKind::Custom => filter.push("NOT starts_with(event, '$')".into()),
        EventKind::PostHog => filter.push("starts_with(event, '$')".into()),
    }
    let where_ = if filter.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filter.join(" AND "))
    };
    let sql = format!(
        "SELECT event, CAST(min(timestamp) AS BIGINT), CAST(max(timestamp) AS BIGINT), \
         count(*) FILTER (WHERE timestamp >= {}) FROM events {where_} GROUP BY event ORDER BY event",
        ts_lit(now.saturating_sub(30 * DAY))
    );
    let ctx = super::session(persons, project, limits)?;
    let mut out = Vec::new();
    let mut batches = stream(&ctx, &sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let name = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let name = name.as_string::<i32>();
        let first = b.column(1).as_primitive::<Int64Type>();
        let last = b.column(2).as_primitive::<Int64Type>();
        let recent = b.column(3).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            if name.is_null(r) || first.is_null(r) || last.is_null(r) {
                continue;
            }
            let n = name.value(r).to_string();
            out.push(EventDefinition {
                id: definition_id(project, &n),
                name: n,
                first_seen: first.value(r),
                last_seen: last.value(r),
                volume_30_day: u64::try_from(recent.value(r)).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Whose properties a [`property_definitions`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyOwner {
    /// Events' (`properties` of the events).
    Event,
    /// Persons' (their current properties).
    Person,
}

impl PropertyOwner {
    /// PostHog's name of it (`event`, `person`).
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyOwner::Event => "event",
            PropertyOwner::Person => "person",
        }
    }
}

/// One property name of a project's events or persons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyDefinition {
    /// [`property_definition_id`] of the project, owner and name.
    pub id: Uuid,
    /// The property name.
    pub name: String,
    /// PostHog's `property_type`: `Numeric` when every value is a JSON
    /// number, `Boolean` when every one is true or false, `String` when
    /// any is text (or numbers and booleans mix); `None` when all are
    /// objects, lists or null.
    pub property_type: Option<&'static str>,
    /// Whether an event of the asked names has it (`None` when no names
    /// were asked; persons: always `None`).
    pub seen_on_events: Option<bool>,
}

/// The id of property `name` of `owner` in `project`: a v5 UUID of them.
pub fn property_definition_id(project: i64, owner: PropertyOwner, name: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{project}\u{0}{}\u{0}{name}", owner.as_str()).as_bytes(),
    )
}

/// What PostHog's ingestion keeps out of event property definitions: the
/// person updates an event carries.
const NOT_EVENT_PROPERTIES: [&str; 3] = ["$set", "$set_once", "$unset"];

/// The property names of the project's events (or persons), sorted by
/// name; with `event_names`, whether events of those names have each
/// (and with `only_those`, only theirs).
pub async fn property_definitions(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    owner: PropertyOwner,
    event_names: &[String],
    only_those: bool,
    limits: &QueryLimits,
) -> Result<Vec<PropertyDefinition>> {
    let names: Vec<String> = event_names.iter().map(|e| lit(e)).collect();
    let (table, seen, filter) = match owner {
        PropertyOwner::Event => {
            let seen = if names.is_empty() {
                "CAST(NULL AS BOOLEAN)".to_string()
            } else {
                format!("bool_or(event IN ({}))", names.join(", "))
            };
            let filter = if only_those && !names.is_empty() {
                format!("WHERE event IN ({})", names.join(", "))
            } else {
                String::new()
            };
            ("events", seen, filter)
        }
        PropertyOwner::Person => (
            "persons",
            "CAST(NULL AS BOOLEAN)".to_string(),
            String::new(),
        ),
    };
    // Each value's JSON type: text, a number (not text, read as a
    // float), true or false.
    let sql = format!(
        "SELECT k, count(*) FILTER (WHERE s) AS texts, \
         count(*) FILTER (WHERE NOT s AND f) AS numbers, \
         count(*) FILTER (WHERE NOT s AND b) AS bools, {seen} AS seen FROM \
         (SELECT k, {event} json_get_str(properties, k) IS NOT NULL AS s, \
          json_get_float(properties, k) IS NOT NULL AS f, \
          json_get_bool(properties, k) IS NOT NULL AS b \
          FROM (SELECT unnest(json_object_keys(properties)) AS k, properties{event_col} FROM {table} {filter}) u) t \
         GROUP BY k ORDER BY k",
        event = if owner == PropertyOwner::Event { "event," } else { "" },
        event_col = if owner == PropertyOwner::Event { ", event" } else { "" },
    );
    let ctx = super::session(persons, project, limits)?;
    let mut out = Vec::new();
    let mut batches = stream(&ctx, &sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let name = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let name = name.as_string::<i32>();
        let count = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
        let (texts, numbers, bools) = (count(1), count(2), count(3));
        let seen = b.column(4).as_boolean();
        for r in 0..b.num_rows() {
            if name.is_null(r) {
                continue;
            }
            let key = name.value(r);
            if owner == PropertyOwner::Event && NOT_EVENT_PROPERTIES.contains(&key) {
                continue;
            }
            let property_type = if texts.value(r) > 0 {
                Some("String")
            } else if numbers.value(r) > 0 && bools.value(r) == 0 {
                Some("Numeric")
            } else if bools.value(r) > 0 && numbers.value(r) == 0 {
                Some("Boolean")
            } else if numbers.value(r) > 0 {
                Some("String")
            } else {
                None
            };
            out.push(PropertyDefinition {
                id: property_definition_id(project, owner, key),
                name: key.to_string(),
                property_type,
                seen_on_events: (!seen.is_null(r)).then(|| seen.value(r)),
            });
        }
    }
    Ok(out)
}
