//! How PostHog shows a person: the listing shape (`id` is the UUID
//! string), the retrieve shape (`id` is the integer), the minimal shape of
//! batch lookups, the display name, and the order of distinct ids.

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
