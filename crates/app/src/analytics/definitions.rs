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

/// The project's event names that contain every word of `search` (any
/// case), of `kind`, among `names` when given, sorted by name; `now` (µs)
/// ends the 30 days of `volume_30_day`.
pub async fn event_definitions(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    (search, names): (&[String], Option<&[String]>),
    kind: EventKind,
    now: i64,
    limits: &QueryLimits,
) -> Result<Vec<EventDefinition>> {
    let mut filter = Vec::new();
    for w in search {
        filter.push(format!("strpos(lower(event), lower({})) > 0", lit(w)));
    }
    if let Some(names) = names {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = names.iter().map(|n| lit(n)).collect();
        filter.push(format!("event IN ({})", list.join(", ")));
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

/// What PostHog keeps out of event property definitions: the person and
/// group updates an event carries (its ingestion's `SKIP_PROPERTIES`),
/// and what its API hides.
const NOT_EVENT_PROPERTIES: [&str; 14] = [
    "$set",
    "$set_once",
    "$unset",
    "$group_0",
    "$group_1",
    "$group_2",
    "$group_3",
    "$group_4",
    "$groups",
    "distinct_id",
    "$group_type",
    "$group_key",
    "$group_set",
    "timestamp",
];

/// Which property names a [`property_definitions`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyFilter {
    /// Event names: whether events of them have each property (and with
    /// `only_those`, only their properties).
    pub event_names: Vec<String>,
    /// Only the properties of `event_names`' events.
    pub only_those: bool,
    /// Words each name must contain (any case).
    pub search: Vec<String>,
    /// Only these names.
    pub names: Option<Vec<String>>,
    /// Not these names.
    pub excluded: Vec<String>,
    /// Only feature flags' (`$feature/…`, `true`) or only the others.
    pub feature_flags: Option<bool>,
}

/// The property names of the project's events (or persons) that pass
/// `f`, sorted by name, each with its kinds of values read in one pass
/// over each row's properties ([`super::key_types`]).
pub async fn property_definitions(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    owner: PropertyOwner,
    f: &PropertyFilter,
    limits: &QueryLimits,
) -> Result<Vec<PropertyDefinition>> {
    let list = |v: &[String]| v.iter().map(|e| lit(e)).collect::<Vec<_>>().join(", ");
    let key = "substr(kt, 3)";
    let mut keep = Vec::new();
    for w in &f.search {
        keep.push(format!("strpos(lower({key}), lower({})) > 0", lit(w)));
    }
    if let Some(names) = &f.names {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        keep.push(format!("{key} IN ({})", list(names)));
    }
    let mut excluded = f.excluded.clone();
    if owner == PropertyOwner::Event {
        excluded.extend(NOT_EVENT_PROPERTIES.iter().map(|s| s.to_string()));
    }
    if !excluded.is_empty() {
        keep.push(format!("{key} NOT IN ({})", list(&excluded)));
    }
    match f.feature_flags {
        Some(true) => keep.push(format!("starts_with({key}, '$feature/')")),
        Some(false) => keep.push(format!("NOT starts_with({key}, '$feature/')")),
        None => {}
    }
    let (table, seen, mut rows) = match owner {
        PropertyOwner::Event => {
            let seen = if f.event_names.is_empty() {
                "CAST(NULL AS BOOLEAN)".to_string()
            } else {
                format!("bool_or(event IN ({}))", list(&f.event_names))
            };
            let rows = if f.only_those && !f.event_names.is_empty() {
                vec![format!("event IN ({})", list(&f.event_names))]
            } else {
                Vec::new()
            };
            ("events", seen, rows)
        }
        PropertyOwner::Person => ("persons", "CAST(NULL AS BOOLEAN)".to_string(), Vec::new()),
    };
    let event_col = if owner == PropertyOwner::Event {
        ", event"
    } else {
        ""
    };
    rows.retain(|r| !r.is_empty());
    let rows = if rows.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", rows.join(" AND "))
    };
    let keep = if keep.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", keep.join(" AND "))
    };
    let sql = format!(
        "SELECT {key} AS k, count(*) FILTER (WHERE left(kt, 1) = 's') AS texts, \
         count(*) FILTER (WHERE left(kt, 1) = 'n') AS numbers, \
         count(*) FILTER (WHERE left(kt, 1) = 'b') AS bools, {seen} AS seen FROM \
         (SELECT unnest({}(properties)) AS kt{event_col} FROM {table} {rows}) u {keep} \
         GROUP BY 1 ORDER BY 1",
        super::key_types::NAME
    );
    let ctx = super::session(persons, project, limits)?;
    ctx.register_udf(super::key_types::udf());
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
