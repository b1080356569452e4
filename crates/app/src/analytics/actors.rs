//! Persons as PostHog's actors (`posthog-analytics.md` §2.1): `id` is the
//! person's UUID. A UUID whose person no longer exists (deleted between
//! the query and the lookup) yields no actor.

use std::sync::Arc;

use elide_persons::{Person, Persons, SqliteMeta};
use serde_json::{json, Value};

use crate::error::Result;

/// The display name PostHog gives a person: its `email`, else its first
/// distinct id, else its UUID.
pub fn name(p: &Person) -> String {
    if let Some(Value::String(e)) = p.properties.get("email") {
        if !e.is_empty() {
            return e.clone();
        }
    }
    p.distinct_ids
        .first()
        .cloned()
        .unwrap_or_else(|| p.uuid.hyphenated().to_string())
}

/// One actor.
pub fn actor(p: &Person) -> Value {
    let uuid = p.uuid.hyphenated().to_string();
    json!({
        "type": "person",
        "id": uuid,
        "uuid": uuid,
        "created_at": p.created_at,
        "properties": p.properties,
        "is_identified": p.is_identified,
        "name": name(p),
        "distinct_ids": p.distinct_ids,
        "matched_recordings": [],
        "value_at_data_point": null,
    })
}

/// The actors of `uuids`, in that order (missing persons left out).
pub fn load(persons: &Arc<Persons<SqliteMeta>>, project: i64, uuids: &[String]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(uuids.len());
    for chunk in uuids.chunks(100) {
        let found = persons.by_uuids(project, chunk)?;
        for u in chunk {
            let Ok(parsed) = uuid::Uuid::parse_str(u) else { continue };
            if let Some(p) = found.get(&parsed) {
                out.push(actor(p));
            }
        }
    }
    Ok(out)
}

/// A person as PostHog's `PersonSerializer` has it (lifecycle persons):
/// `id` is the integer id.
pub fn serialized(p: &Person) -> Value {
    json!({
        "id": p.id,
        "uuid": p.uuid.hyphenated().to_string(),
        "name": name(p),
        "distinct_ids": p.distinct_ids,
        "properties": p.properties,
        "created_at": p.created_at,
        "is_identified": p.is_identified,
    })
}

/// The persons of `uuids` in `PersonSerializer`'s shape, in that order.
pub fn load_serialized(persons: &Arc<Persons<SqliteMeta>>, project: i64, uuids: &[String]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(uuids.len());
    for chunk in uuids.chunks(100) {
        let found = persons.by_uuids(project, chunk)?;
        for u in chunk {
            let Ok(parsed) = uuid::Uuid::parse_str(u) else { continue };
            if let Some(p) = found.get(&parsed) {
                out.push(serialized(p));
            }
        }
    }
    Ok(out)
}
