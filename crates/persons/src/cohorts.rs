//! Cohorts in the metadata: their definitions, and the lists of static
//! cohorts. What a dynamic cohort's definition means, and who is in it,
//! is the application's business (it evaluates the definition over the
//! events and persons when asked); this module only keeps definitions and
//! lists, with the rule that a list never outlives a person: a deleted
//! person's memberships go in its deletion's transaction, a merged
//! person's move to the person it was merged into.

use serde_json::Value;
use uuid::Uuid;

use crate::error::{PersonsError, Result};
use crate::meta::{CohortRow, IdLookup, MetaStore};
use crate::persons::{now_us, parse_uuid_input, Persons};

/// Most persons one call adds to or removes from a static cohort.
pub const MAX_COHORT_CHANGE: usize = 100_000;

/// A change of a cohort (absent fields are kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CohortPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New definition (dynamic cohorts only).
    pub filters: Option<Value>,
    /// Soft-delete or restore.
    pub deleted: Option<bool>,
}

/// What [`Persons::add_to_static_cohort`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CohortChange {
    /// Persons newly on the list (or newly off it, for a removal).
    pub changed: u64,
    /// Inputs that named no person (UUIDs or distinct ids as given).
    pub not_found: Vec<String>,
}

/// Who to add or remove: person UUIDs and distinct ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CohortPeople {
    /// Person UUIDs.
    pub uuids: Vec<String>,
    /// Distinct ids (each names the person owning it now).
    pub distinct_ids: Vec<String>,
}

impl CohortPeople {
    /// The checks a change of a static cohort's list makes before it
    /// touches anything (how many, UUIDs that parse): a caller that makes
    /// other changes in the same request runs them first, so that a bad
    /// list refuses the whole request.
    pub fn check(&self) -> Result<Vec<(&String, Uuid)>> {
        if self.uuids.len() + self.distinct_ids.len() > MAX_COHORT_CHANGE {
            return Err(PersonsError::InvalidInput(format!(
                "at most {MAX_COHORT_CHANGE} persons per change of a cohort"
            )));
        }
        self.uuids
            .iter()
            .map(|u| parse_uuid_input(u).map(|p| (u, p)))
            .collect()
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(PersonsError::InvalidInput("a cohort needs a name".into()));
    }
    if name.len() > 400 {
        return Err(PersonsError::InvalidInput(
            "a cohort's name is at most 400 bytes".into(),
        ));
    }
    Ok(())
}

impl<M: MetaStore> Persons<M> {
    /// Make a cohort: static (a list, empty at first) or dynamic (with its
    /// definition, checked by the caller).
    pub fn create_cohort(
        &self,
        project: i64,
        name: &str,
        description: &str,
        is_static: bool,
        filters: Value,
    ) -> Result<CohortRow> {
        check_name(name)?;
        let mut c = CohortRow {
            id: 0,
            project_id: project,
            name: name.to_string(),
            description: description.to_string(),
            is_static,
            filters: if is_static { Value::Null } else { filters },
            created_at_us: now_us(),
            deleted: false,
        };
        self.meta().write(|tx| {
            if tx.project(project)?.is_none() {
                return Err(PersonsError::NotFound(format!("project {project}")));
            }
            c.id = tx.insert_cohort(&c)?;
            Ok(c)
        })
    }

    /// A cohort (soft-deleted ones too).
    pub fn cohort(&self, project: i64, id: i64) -> Result<Option<CohortRow>> {
        self.meta().read(|tx| tx.cohort(project, id))
    }

    /// A project's cohorts, by id (soft-deleted ones too).
    pub fn cohorts(&self, project: i64) -> Result<Vec<CohortRow>> {
        self.meta().read(|tx| tx.cohorts(project))
    }

    /// Change a cohort; `None` if there is none with that id.
    pub fn update_cohort(
        &self,
        project: i64,
        id: i64,
        patch: &CohortPatch,
    ) -> Result<Option<CohortRow>> {
        if let Some(n) = &patch.name {
            check_name(n)?;
        }
        self.meta().write(|tx| {
            let Some(mut c) = tx.cohort(project, id)? else {
                return Ok(None);
            };
            if let Some(f) = &patch.filters {
                if c.is_static {
                    return Err(PersonsError::InvalidInput(
                        "a static cohort has no filters: change its persons".into(),
                    ));
                }
                c.filters = f.clone();
            }
            if let Some(n) = &patch.name {
                c.name = n.clone();
            }
            if let Some(d) = &patch.description {
                c.description = d.clone();
            }
            if let Some(d) = patch.deleted {
                c.deleted = d;
            }
            tx.update_cohort(&c)?;
            Ok(Some(c))
        })
    }

    /// Remove a cohort and its list; false if there was none.
    pub fn delete_cohort(&self, project: i64, id: i64) -> Result<bool> {
        self.meta().write(|tx| tx.delete_cohort(project, id))
    }

    fn change_static(
        &self,
        project: i64,
        id: i64,
        who: &CohortPeople,
        add: bool,
    ) -> Result<CohortChange> {
        let uuids = who.check()?;
        self.meta().write(|tx| {
            let Some(c) = tx.cohort(project, id)? else {
                return Err(PersonsError::NotFound(format!("cohort {id}")));
            };
            if !c.is_static {
                return Err(PersonsError::InvalidInput(
                    "only a static cohort has a list of persons".into(),
                ));
            }
            let mut ids = Vec::new();
            let mut not_found = Vec::new();
            for (text, u) in &uuids {
                match tx.person_by_uuid(project, u)? {
                    Some(p) => ids.push(p.id),
                    None => not_found.push((*text).clone()),
                }
            }
            for d in &who.distinct_ids {
                match tx.lookup_distinct_id(project, d)? {
                    IdLookup::Person(p, _) => ids.push(p),
                    IdLookup::Absent { .. } => not_found.push(d.clone()),
                }
            }
            ids.sort_unstable();
            ids.dedup();
            let changed = if add {
                tx.add_cohort_people(id, &ids)?
            } else {
                tx.remove_cohort_people(id, &ids)?
            };
            Ok(CohortChange { changed, not_found })
        })
    }

    /// Put persons on a static cohort's list (those already on it stay).
    pub fn add_to_static_cohort(
        &self,
        project: i64,
        id: i64,
        who: &CohortPeople,
    ) -> Result<CohortChange> {
        self.change_static(project, id, who, true)
    }

    /// Take persons off a static cohort's list.
    pub fn remove_from_static_cohort(
        &self,
        project: i64,
        id: i64,
        who: &CohortPeople,
    ) -> Result<CohortChange> {
        self.change_static(project, id, who, false)
    }

    /// The persons on a static cohort's list (UUIDs, sorted).
    pub fn static_cohort_people(&self, project: i64, id: i64) -> Result<Vec<Uuid>> {
        self.meta().read(|tx| match tx.cohort(project, id)? {
            Some(c) if c.is_static => tx.cohort_people(id),
            Some(_) => Err(PersonsError::InvalidInput(
                "only a static cohort has a list of persons".into(),
            )),
            None => Err(PersonsError::NotFound(format!("cohort {id}"))),
        })
    }

    /// The static cohorts whose list holds the person with this UUID.
    pub fn static_cohorts_of(&self, project: i64, person: &Uuid) -> Result<Vec<i64>> {
        self.meta()
            .read(|tx| match tx.person_by_uuid(project, person)? {
                Some(p) => tx.static_cohorts_of(p.id),
                None => Ok(Vec::new()),
            })
    }
}
