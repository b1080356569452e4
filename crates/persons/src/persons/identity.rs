//! Changing a person's identity: [`Persons::reset_distinct_id`] frees a
//! distinct id, [`Persons::split`] moves distinct ids to new persons.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{json, Map};
use uuid::Uuid;

use super::{find, now_us, Persons};
use crate::error::{PersonsError, Result};
use crate::meta::MetaStore;
use crate::resolve::free_uuid;

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetOutcome {
    /// The id was blocked by a deletion; it is free again.
    pub unblocked: bool,
    /// The person the id was detached from.
    #[serde(serialize_with = "crate::ids::ser_opt_uuid")]
    pub detached_from: Option<Uuid>,
}

/// Which distinct ids a split moves off.
#[derive(Debug, Clone)]
pub enum SplitSpec {
    /// Keep this id on the person, move every other to a new person.
    Main(String),
    /// Move these ids, each to a new person.
    Ids(Vec<String>),
    /// Keep the oldest id, move every other.
    AllButFirst,
}

/// What a split did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitOutcome {
    /// The person split.
    #[serde(serialize_with = "crate::ids::ser_uuid")]
    pub person_uuid: Uuid,
    /// The new persons, one per moved id.
    pub new_persons: Vec<SplitPerson>,
}

/// A person created by a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitPerson {
    /// Its UUID.
    #[serde(serialize_with = "crate::ids::ser_uuid")]
    pub uuid: Uuid,
    /// Its one distinct id.
    pub distinct_id: String,
}

impl<M: MetaStore> Persons<M> {
    /// Free a distinct id: lift the block a deletion put on it, or detach
    /// it from its person. Its next event creates a new person. The rows a
    /// detached id sent until now stay its person's (they carry its person
    /// id): the person's deletion deletes them, through the cut-off
    /// recorded here. An unblocked id's rows until now are no one's (a
    /// boundary with no holder): its next person's deletion leaves them.
    pub fn reset_distinct_id(&self, project: i64, distinct_id: &str) -> Result<ResetOutcome> {
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        let now = now_us();
        // Under the pipeline lock no capture appends meanwhile: every row
        // the id sent for its person is below this (acknowledged), and no
        // row it sends later is, even after a crash.
        let cutoff = self.store().acknowledged_seq()?;
        self.meta.write(|tx| {
            if tx.unblock(project, distinct_id)? {
                // The id's rows so far (its deleted person's, and those
                // it sent while blocked) are no one's: its next person's
                // deletion starts here.
                tx.insert_detached(project, &Uuid::nil(), distinct_id, cutoff, now)?;
                tx.insert_activity(project, None, "distinct_id_unblocked", None, now)?;
                return Ok(ResetOutcome {
                    unblocked: true,
                    detached_from: None,
                });
            }
            let Some(row) = tx.person_by_distinct_id(project, distinct_id)? else {
                return Err(PersonsError::NotFound(format!(
                    "distinct id {distinct_id:?} in project {project}"
                )));
            };
            tx.remove_distinct_id(project, distinct_id)?;
            tx.insert_detached(project, &row.uuid, distinct_id, cutoff, now)?;
            tx.insert_activity(project, Some(&row.uuid), "distinct_id_reset", None, now)?;
            Ok(ResetOutcome {
                unblocked: false,
                detached_from: Some(row.uuid),
            })
        })
    }

    /// Move distinct ids of a person to new persons, one per id; the
    /// person keeps its properties and the ids not moved. The rows a moved
    /// id sent until now stay the person's, as after a reset.
    pub fn split(&self, project: i64, key: &str, spec: &SplitSpec) -> Result<SplitOutcome> {
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        let now = now_us();
        let cutoff = self.store().acknowledged_seq()?;
        self.meta.write(|tx| {
            let row = find(tx, project, key)?;
            let ids = tx.distinct_ids(project, row.id)?;
            let owned: HashSet<&str> = ids.iter().map(String::as_str).collect();
            let moving: Vec<String> = match spec {
                SplitSpec::Main(main) => {
                    if !owned.contains(main.as_str()) {
                        return Err(PersonsError::InvalidInput(format!(
                            "main distinct id {main:?} is not one of person {key}'s"
                        )));
                    }
                    ids.iter().filter(|d| *d != main).cloned().collect()
                }
                SplitSpec::Ids(list) => {
                    let mut seen = HashSet::new();
                    for d in list {
                        if !owned.contains(d.as_str()) {
                            return Err(PersonsError::InvalidInput(format!(
                                "distinct id {d:?} is not one of person {key}'s"
                            )));
                        }
                        seen.insert(d.as_str());
                    }
                    if seen.len() == ids.len() {
                        return Err(PersonsError::InvalidInput(
                            "a split must leave the person at least one distinct id".into(),
                        ));
                    }
                    ids.iter()
                        .filter(|d| seen.contains(d.as_str()))
                        .cloned()
                        .collect()
                }
                SplitSpec::AllButFirst => ids.iter().skip(1).cloned().collect(),
            };
            if moving.is_empty() {
                return Err(PersonsError::InvalidInput(format!(
                    "person {key} has no distinct id to split off"
                )));
            }
            let mut new_persons = Vec::new();
            for did in moving {
                let uuid = free_uuid(tx, project, &did)?;
                let p = tx.insert_person(&crate::meta::NewPerson {
                    project_id: project,
                    uuid,
                    properties: Map::new(),
                    created_at_us: now,
                    is_identified: false,
                })?;
                tx.move_distinct_id(project, &did, p.id)?;
                tx.insert_detached(project, &row.uuid, &did, cutoff, now)?;
                tx.insert_activity(
                    project,
                    Some(&uuid),
                    "created_by_split",
                    Some(&json!({ "from": row.uuid.to_string() })),
                    now,
                )?;
                new_persons.push(SplitPerson {
                    uuid,
                    distinct_id: did,
                });
            }
            let mut row = row;
            row.version += 1;
            tx.update_person(&row)?;
            let uuids: Vec<String> = new_persons.iter().map(|p| p.uuid.to_string()).collect();
            tx.insert_activity(
                project,
                Some(&row.uuid),
                "split",
                Some(&json!({ "new_persons": uuids })),
                now,
            )?;
            Ok(SplitOutcome {
                person_uuid: row.uuid,
                new_persons,
            })
        })
    }
}
