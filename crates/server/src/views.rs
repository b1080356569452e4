//! How PostHog shows a person: the listing shape (`id` is the UUID
//! string), the retrieve shape (`id` is the integer), the minimal shape of
//! batch lookups, the display name, and the order of distinct ids; and the
//! answers and request bodies of the persons API, which the handlers
//! return (answers) and the OpenAPI document shows (both).

use std::collections::BTreeMap;

use elide_persons::Person;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Properties a person's display name is taken from, in order.
pub const DISPLAY_NAME_PROPERTIES: &[&str] = &["email", "name", "username"];

/// Whether a distinct id looks anonymous: `^([a-z0-9]+-){4}[a-z0-9]+$`
/// (UUIDs and SDK-made ids).
pub fn is_anonymous(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Distinct ids, non-anonymous first, otherwise in their stored order.
pub fn ordered_ids(ids: &[String]) -> Vec<String> {
    let mut v: Vec<&String> = ids.iter().collect();
    v.sort_by_key(|id| is_anonymous(id));
    v.into_iter().cloned().collect()
}

/// PostHog's display name: the first truthy display property, else the
/// first non-anonymous distinct id, else the integer id.
pub fn display_name(p: &Person) -> String {
    for key in DISPLAY_NAME_PROPERTIES {
        match p.properties.get(*key) {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(Value::Number(n)) => return n.to_string(),
            Some(Value::Bool(true)) => return "true".into(),
            _ => {}
        }
    }
    p.distinct_ids
        .iter()
        .find(|d| !is_anonymous(d))
        .cloned()
        .unwrap_or_else(|| p.id.to_string())
}

/// A person in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedPerson {
    /// Always `person`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The UUID (a string here, as in PostHog's listing).
    pub id: String,
    /// The UUID.
    pub uuid: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Properties.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// Whether an identify made it.
    pub is_identified: bool,
    /// Display name.
    pub name: String,
    /// Distinct ids, non-anonymous first.
    pub distinct_ids: Vec<String>,
    /// Always empty (recordings are listed by their own route).
    #[schema(value_type = Vec<Object>)]
    pub matched_recordings: Vec<Value>,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub value_at_data_point: Option<Value>,
}

impl From<&Person> for ListedPerson {
    fn from(p: &Person) -> Self {
        ListedPerson {
            kind: "person",
            id: p.uuid.hyphenated().to_string(),
            uuid: p.uuid.hyphenated().to_string(),
            created_at: p.created_at.clone(),
            properties: p.properties.clone(),
            is_identified: p.is_identified,
            name: display_name(p),
            distinct_ids: ordered_ids(&p.distinct_ids),
            matched_recordings: Vec::new(),
            value_at_data_point: None,
        }
    }
}

/// A person retrieved by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetrievedPerson {
    /// The integer id.
    pub id: i64,
    /// The UUID.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Distinct ids, non-anonymous first.
    pub distinct_ids: Vec<String>,
    /// Properties.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Whether an identify made it.
    pub is_identified: bool,
    /// Always null (Elide does not track it).
    #[schema(value_type = Option<String>)]
    pub last_seen_at: Option<String>,
}

impl From<&Person> for RetrievedPerson {
    fn from(p: &Person) -> Self {
        RetrievedPerson {
            id: p.id,
            uuid: p.uuid.hyphenated().to_string(),
            name: display_name(p),
            distinct_ids: ordered_ids(&p.distinct_ids),
            properties: p.properties.clone(),
            created_at: p.created_at.clone(),
            is_identified: p.is_identified,
            last_seen_at: None,
        }
    }
}

/// Most distinct ids a batch lookup shows per person.
pub const MINIMAL_IDS: usize = 10;

/// A person in a batch lookup.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinimalPerson {
    /// The integer id.
    pub id: i64,
    /// The UUID.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Up to ten distinct ids, non-anonymous first.
    pub distinct_ids: Vec<String>,
    /// Properties.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<&Person> for MinimalPerson {
    fn from(p: &Person) -> Self {
        let mut ids = ordered_ids(&p.distinct_ids);
        ids.truncate(MINIMAL_IDS);
        MinimalPerson {
            id: p.id,
            uuid: p.uuid.hyphenated().to_string(),
            name: display_name(p),
            distinct_ids: ids,
            properties: p.properties.clone(),
            created_at: p.created_at.clone(),
        }
    }
}

/// A page of persons (`GET …/persons/`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonPage {
    /// Persons matching the filters (only with `include_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// URL of the next page, null on the last.
    #[schema(required)]
    pub next: Option<String>,
    /// URL of the previous page, null on the first.
    #[schema(required)]
    pub previous: Option<String>,
    /// The persons.
    pub results: Vec<ListedPerson>,
}

/// Persons found by a batch lookup, by the distinct id or UUID asked for
/// (ids that name no person are absent).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchPersons {
    /// Person by id.
    pub results: BTreeMap<String, MinimalPerson>,
}

/// One person a bulk deletion could not handle.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkDeleteError {
    /// The UUID or distinct id as given.
    pub person_uuid: String,
}

/// The answer of `POST …/persons/bulk_delete/` (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkDeleteAnswer {
    /// Persons whose deletion failed while others went on. Always empty
    /// in Elide: a request deletes every person it found in one
    /// transaction, or fails as a whole (5xx) and changes nothing.
    pub deletion_errors: Vec<BulkDeleteError>,
    /// The ids (as given) that named no person of the project (an Elide
    /// addition; PostHog says only `persons_found`).
    pub not_found: Vec<String>,
    /// Whether the persons' events were queued for deletion.
    pub events_queued_for_deletion: bool,
    /// Profiles removed (0 with `keep_person`).
    pub persons_deleted: usize,
    /// Persons the ids named.
    pub persons_found: usize,
    /// Whether the persons' recordings were queued for deletion.
    pub recordings_queued_for_deletion: bool,
}

/// `{"success": true}` (201 of `delete_property` and `split`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    /// Always true.
    pub success: bool,
}

/// One step of a person's property history.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelinePoint {
    /// Event time (µs since the epoch, UTC).
    pub timestamp_us: i64,
    /// The event that changed the properties.
    pub event: String,
    /// Its UUID.
    pub event_uuid: String,
    /// Keys whose value it changed.
    pub changed: Vec<String>,
    /// The properties after it.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

impl From<elide_persons::props::TimelinePoint> for TimelinePoint {
    fn from(p: elide_persons::props::TimelinePoint) -> Self {
        TimelinePoint {
            timestamp_us: p.timestamp_us,
            event: p.event,
            event_uuid: p.event_uuid,
            changed: p.changed,
            properties: p.properties,
        }
    }
}

/// A person's property history (`GET …/persons/{id}/properties_timeline/`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    /// The steps, oldest first: the latest whose states hold at most
    /// 1,000,000 property values together.
    pub points: Vec<TimelinePoint>,
    /// Earlier steps left out to fit that bound (0 when none was).
    pub earlier_points_left_out: usize,
}

/// An activity-log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityEntry {
    /// What happened: `properties_updated`, `property_deleted`, `merged`, `split`,
    /// `created_by_split`, `deleted`, `distinct_id_reset`, `distinct_id_unblocked`,
    /// `project_created`, `metadata_rebuilt`.
    pub activity: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// Details (never person property values).
    #[schema(required)]
    pub detail: Option<Value>,
    /// The person's UUID, if the entry concerns one.
    #[schema(required)]
    pub item_id: Option<String>,
    /// Always `Person`.
    pub scope: &'static str,
    /// Always null (Elide has no users).
    #[schema(value_type = Option<Object>, required)]
    pub user: Option<Value>,
}

/// A page of the activity log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityPage {
    /// Number of the next page, null on the last.
    #[schema(required)]
    pub next: Option<usize>,
    /// Number of the previous page, null on the first.
    #[schema(required)]
    pub previous: Option<usize>,
    /// The entries, newest first.
    pub results: Vec<ActivityEntry>,
}

/// State of a person's deletion.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DeletionStateView {
    /// Rows hidden; not yet verified gone from disk.
    Pending,
    /// Verified: no row of the person left on disk.
    Completed,
}

/// The deletion status of one person.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionStatusView {
    /// When the deletion was requested (RFC 3339).
    pub created_at: String,
    /// When the store verified the rows gone (RFC 3339).
    #[schema(required)]
    pub delete_verified_at: Option<String>,
    /// The deleted person.
    pub person_uuid: String,
    /// `pending` or `completed`.
    #[schema(value_type = DeletionStateView)]
    pub status: elide_persons::DeletionState,
    /// When the rows must be gone from disk (RFC 3339; an Elide
    /// addition): null when the deletion removed no rows.
    #[schema(required)]
    pub purge_due_by: Option<String>,
}

/// A page of deletion statuses (`GET …/persons/deletion_status/`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionStatusPage {
    /// Deletions matching the filters.
    pub count: usize,
    /// URL of the next page, null on the last.
    #[schema(required)]
    pub next: Option<String>,
    /// URL of the previous page, null on the first.
    #[schema(required)]
    pub previous: Option<String>,
    /// The deletions.
    pub results: Vec<DeletionStatusView>,
}

/// One value of a person property and how many persons have it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PropertyValue {
    /// Persons with it.
    pub count: u64,
    /// The value, as text.
    pub name: String,
}

/// The values of a person property (`GET …/persons/values/`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PropertyValues {
    /// Always false.
    pub refreshing: bool,
    /// The values, most common first.
    pub results: Vec<PropertyValue>,
}

/// Request body of `PUT`/`PATCH …/persons/{id}/`.
#[derive(Debug, ToSchema)]
pub struct PersonUpdateBody {
    /// Properties to set (`$set`); other fields are ignored.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// Request body of `POST …/persons/bulk_delete/`: `ids` or
/// `distinct_ids` (not both, at most 1000).
#[derive(Debug, ToSchema)]
pub struct BulkDeleteBody {
    /// Person UUIDs.
    pub ids: Option<Vec<String>>,
    /// Distinct ids.
    pub distinct_ids: Option<Vec<String>>,
    /// Also delete the persons' events.
    pub delete_events: Option<bool>,
    /// Also delete the persons' recordings.
    pub delete_recordings: Option<bool>,
    /// Keep the profiles (delete only the data asked for).
    pub keep_person: Option<bool>,
}

/// Request body of `POST …/persons/reset_person_distinct_id/`.
#[derive(Debug, ToSchema)]
pub struct ResetDistinctIdBody {
    /// The distinct id to detach and unblock.
    pub distinct_id: String,
}

/// Request body of `POST …/persons/batch_by_distinct_ids/`.
#[derive(Debug, ToSchema)]
pub struct DistinctIdsBody {
    /// Distinct ids (the first 200 are read).
    pub distinct_ids: Vec<String>,
}

/// Request body of `POST …/persons/batch_by_uuids/`.
#[derive(Debug, ToSchema)]
pub struct UuidsBody {
    /// Person UUIDs (the first 200 are read).
    pub uuids: Vec<String>,
}

/// Request body of `POST …/persons/{id}/delete_property/`.
#[derive(Debug, ToSchema)]
pub struct DeletePropertyBody {
    /// The property to remove.
    #[schema(rename = "$unset")]
    pub unset: String,
}

/// Request body of `POST …/persons/{id}/update_property/`.
#[derive(Debug, ToSchema)]
pub struct UpdatePropertyBody {
    /// The property to set.
    pub key: String,
    /// Its new value (any JSON).
    pub value: Value,
}

/// Request body of `POST …/persons/{id}/split/`: at most one of the two
/// fields; with neither, every distinct id but the oldest moves off.
#[derive(Debug, ToSchema)]
pub struct SplitBody {
    /// Keep this distinct id, move every other to a new person.
    pub main_distinct_id: Option<String>,
    /// Move these distinct ids, each to a new person.
    pub distinct_ids_to_split: Option<Vec<String>>,
}

/// The CSV of a listing: a header, then one row per person (properties
/// as JSON text).
pub fn csv(persons: &[Person]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from("id,uuid,name,distinct_ids,created_at,properties\n");
    for p in persons {
        let props = Value::Object(p.properties.clone()).to_string();
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.id,
            p.uuid.hyphenated(),
            field(&display_name(p)),
            field(&ordered_ids(&p.distinct_ids).join(" ")),
            field(&p.created_at),
            field(&props)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ids_and_names_follow_posthog() {
        assert!(is_anonymous("0190d2c3-aaaa-bbbb-cccc-1234567890ab"));
        assert!(is_anonymous("a-b-c-d-e"));
        assert!(!is_anonymous("distinct_id1"));
        assert!(!is_anonymous("A-b-c-d-e"));
        assert_eq!(
            ordered_ids(&["a-b-c-d-e".into(), "user@x".into()]),
            vec!["user@x", "a-b-c-d-e"]
        );
    }
}
