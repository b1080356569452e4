//! The persons of an analytic's result, loaded by UUID in the result's
//! order. A UUID whose person no longer exists (deleted between the query
//! and the lookup) yields nothing: a deleted person is never listed.

use std::sync::Arc;

use elide_persons::{Person, Persons, SqliteMeta};

use crate::error::Result;

/// The persons of `uuids`, in that order (missing ones left out).
pub fn load(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    uuids: &[String],
) -> Result<Vec<Person>> {
    let mut out = Vec::with_capacity(uuids.len());
    for chunk in uuids.chunks(100) {
        let mut found = persons.by_uuids(project, chunk)?;
        for u in chunk {
            let Ok(parsed) = uuid::Uuid::parse_str(u) else {
                continue;
            };
            if let Some(p) = found.remove(&parsed) {
                out.push(p);
            }
        }
    }
    Ok(out)
}
