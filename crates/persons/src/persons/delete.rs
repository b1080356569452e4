//! Deleting persons ([`Persons::delete`]) and what users see of it
//! ([`Persons::deletion_status`]). The order of the writes, and what a
//! crash between them leaves, is in the parent module's docs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use elide_store::{DeleteSpec, RequestStatus, Table, MAX_DELETE_IDS};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::runs::{holders, Detached, Span};
use super::{iso, now_us, parse_uuid_input, Persons};
use crate::deleted::{DeletedActors, DeletedCache, DeletionStamp};
use crate::error::{PersonsError, Result};
use crate::meta::{DeletionRecord, DeletionScope, MetaStore, PersonRow, Unfinished};

/// Most persons one deletion takes.
pub const MAX_DELETE_PERSONS: usize = 1000;

/// Which persons a deletion names: UUIDs or distinct ids, not both.
#[derive(Debug, Clone, Default)]
pub struct DeletePersons {
    /// Person UUIDs.
    pub uuids: Vec<String>,
    /// Distinct ids (each names its person).
    pub distinct_ids: Vec<String>,
    /// Hide now and purge later the persons' events captured before the request.
    pub delete_events: bool,
    /// The same for their recordings.
    pub delete_recordings: bool,
    /// Delete the data but keep the profile (and its distinct ids).
    pub keep_person: bool,
}

/// One person a deletion could not handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletionError {
    /// The UUID or distinct id as given.
    pub id: String,
    /// Why.
    pub error: String,
}

/// The result of a deletion (field names are a contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkDeleteResult {
    /// Persons the ids named.
    pub persons_found: usize,
    /// Profiles removed (0 with `keep_person`).
    pub persons_deleted: usize,
    /// Events queued for deletion.
    pub events_queued_for_deletion: bool,
    /// Recordings queued for deletion.
    pub recordings_queued_for_deletion: bool,
    /// Ids not handled, with the reason.
    pub deletion_errors: Vec<DeletionError>,
}

/// Deletion status as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletionState {
    /// Rows hidden; not yet verified gone from disk.
    Pending,
    /// Verified: no row of the person below the cut-off in any file.
    Completed,
}

/// The deletion status of one person's deletion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletionStatus {
    /// Deletion id.
    pub id: i64,
    /// The deleted person.
    #[serde(serialize_with = "crate::ids::ser_uuid")]
    pub person_uuid: Uuid,
    /// `pending` or `completed`.
    pub status: DeletionState,
    /// When it was requested (RFC 3339).
    pub requested_at: String,
    /// When the store verified the rows gone (RFC 3339).
    pub delete_verified_at: Option<String>,
    /// Events queued.
    pub delete_events: bool,
    /// Recordings queued.
    pub delete_recordings: bool,
    /// Profile kept.
    pub keep_person: bool,
    /// When the rows must be gone from disk (RFC 3339): the latest
    /// `purge_due_by` of its store requests; `None` when it deleted no
    /// rows.
    pub purge_due_by: Option<String>,
}

impl<M: MetaStore> Persons<M> {
    /// Delete persons (see [`DeletePersons`]). Ids that name no person are
    /// reported in `deletion_errors`; if none names one, nothing changes
    /// (`persons_found` is 0). Malformed requests (both lists, neither,
    /// more than [`MAX_DELETE_PERSONS`], a bad UUID) are errors.
    ///
    /// A person with a deletion left unfinished (see `open.rs`) that this
    /// one does not cover is deleted as both ask: this one's tables up to
    /// now, and the other tables of the unfinished one up to where it
    /// began; the profile kept only if both keep it.
    pub fn delete(&self, project: i64, req: &DeletePersons) -> Result<BulkDeleteResult> {
        self.delete_as(project, req, false)
    }

    /// [`Persons::delete`]; with `redo`, the redo of the persons'
    /// unfinished deletions (`open.rs`): `req` then names no table and
    /// keeps the profile, and each person's records say what goes (the
    /// rows each took when it began, not those stored since) and are not
    /// recorded again.
    pub(crate) fn delete_as(
        &self,
        project: i64,
        req: &DeletePersons,
        redo: bool,
    ) -> Result<BulkDeleteResult> {
        let (keys, by_uuid) = match (req.uuids.is_empty(), req.distinct_ids.is_empty()) {
            (false, false) => {
                return Err(PersonsError::InvalidInput(
                    "give person UUIDs or distinct ids, not both".into(),
                ))
            }
            (true, true) => {
                return Err(PersonsError::InvalidInput(
                    "give at least one person UUID or distinct id".into(),
                ))
            }
            (false, true) => (&req.uuids, true),
            (true, false) => (&req.distinct_ids, false),
        };
        if keys.len() > MAX_DELETE_PERSONS {
            return Err(PersonsError::InvalidInput(format!(
                "a deletion takes at most {MAX_DELETE_PERSONS} persons, got {}",
                keys.len()
            )));
        }
        let parsed: Vec<Option<Uuid>> = if by_uuid {
            keys.iter()
                .map(|k| parse_uuid_input(k).map(Some))
                .collect::<Result<_>>()?
        } else {
            vec![None; keys.len()]
        };
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        // 1. Who: the persons and all their distinct ids; and the ids a
        // reset or a split detached from them or from the persons merged
        // into them, whose rows before it are theirs.
        let asked = DeletionScope {
            delete_events: req.delete_events,
            delete_recordings: req.delete_recordings,
            keep_person: req.keep_person,
        };
        let mut errors = Vec::new();
        let mut detached: Vec<Detached> = Vec::new();
        // What each person's deletion does: what was asked, and what its
        // unfinished deletions this one does not cover asked.
        let mut plans: Vec<Plan> = Vec::new();
        let found: Vec<(PersonRow, Vec<String>)> = self.meta.read(|tx| {
            detached.clear();
            plans.clear();
            let mut seen = HashSet::new();
            let mut found = Vec::new();
            for (key, uuid) in keys.iter().zip(&parsed) {
                let row = match uuid {
                    Some(u) => tx.person_by_uuid(project, u)?,
                    None => tx.person_by_distinct_id(project, key)?,
                };
                match row {
                    Some(row) => {
                        if seen.insert(row.id) {
                            let ids = tx.distinct_ids(project, row.id)?;
                            let mut uuids = vec![row.uuid];
                            uuids.extend(tx.merged_into(project, &row.uuid)?);
                            detached.push(holders(tx, project, uuids, &ids)?);
                            let left = tx.unfinished_of(project, &row.uuid)?;
                            plans.push(plan(asked, project, &row.uuid, &left));
                            found.push((row, ids));
                        }
                    }
                    None => errors.push(DeletionError {
                        id: key.clone(),
                        error: format!(
                            "no person with this {} in project {project}",
                            if by_uuid { "UUID" } else { "distinct id" }
                        ),
                    }),
                }
            }
            Ok(found)
        })?;
        if found.is_empty() {
            // Nothing to do, nothing changed: every id is in the errors.
            return Ok(BulkDeleteResult {
                persons_found: 0,
                persons_deleted: 0,
                events_queued_for_deletion: false,
                recordings_queued_for_deletion: false,
                deletion_errors: errors,
            });
        }
        let scopes: Vec<DeletionScope> = plans.iter().map(|p| p.scope).collect();
        if !redo && scopes.iter().any(|s| *s != asked) {
            tracing::warn!(
                project,
                "a deletion also does what an unfinished one of the same person asked"
            );
        }
        // 2. The rows: store deletion requests, durable before the profile goes.
        if !redo && !tables_of(&asked).is_empty() {
            // Begun: recorded before the store's step, so that a crash or
            // a failed write between it and step 3 is finished at the next
            // open (`open.rs`), up to the rows acknowledged now. Without a
            // store step, step 3 alone is the deletion. (A redo's records
            // are there already.)
            let begun = now_us();
            let below_seq = self.store.acknowledged_seq()?;
            self.meta.write(|tx| {
                for (row, _) in &found {
                    let op = Unfinished::DeletePerson {
                        person_uuid: row.uuid,
                        scope: asked,
                        below_seq,
                    };
                    tx.begin_unfinished(project, &op, begun)?;
                }
                Ok(())
            })?;
            elide_store::failpoint!("persons::delete::before_store");
        }
        // Each id's rows that are the person's: all of them (most ids),
        // or runs bounded by who else held the id.
        let (mut whole, mut bounded) = (Vec::new(), Vec::new());
        for ((_, current), d) in found.iter().zip(&detached) {
            let (w, b): (Vec<Span>, Vec<Span>) =
                d.spans(current).into_iter().partition(Span::is_whole);
            whole.push(w.into_iter().map(|s| s.id).collect::<Vec<_>>());
            bounded.push(b);
        }
        // The metadata rows each person's deletion removes (its profile
        // and ids; its detached records), for the receipts: on its
        // bounded runs' first request when it has one, else on its ids'
        // (of its first group below).
        let (mut by_ids, mut by_runs) = (Vec::new(), Vec::new());
        for (i, (_, ids)) in found.iter().enumerate() {
            let (profile, records) = if scopes[i].keep_person {
                (0, 0)
            } else {
                (1 + ids.len() as u64, detached[i].records as u64)
            };
            let (w, r) = if bounded[i].is_empty() {
                (profile + records, 0)
            } else {
                (0, profile + records)
            };
            by_ids.push(w);
            by_runs.push(r);
        }
        // The specs of each group of persons whose deletions do the same:
        // the same tables, up to the same `_seq`, the profile kept or not.
        // Uncapped groups first, so that a person's metadata rows go on
        // what it was asked for when it was asked for anything.
        type Group = (bool, Vec<Table>, bool, Option<u64>);
        let mut groups: BTreeMap<Group, Vec<usize>> = BTreeMap::new();
        for (i, p) in plans.iter().enumerate() {
            for (tables, below) in &p.parts {
                groups
                    .entry((below.is_some(), tables.clone(), p.scope.keep_person, *below))
                    .or_default()
                    .push(i);
            }
        }
        let had_store_step = !groups.is_empty();
        let (mut specs, mut owners) = (Vec::new(), Vec::<Vec<usize>>::new());
        for ((_, tables, keep_person, below), members) in groups {
            // Capped at `below`: no run that lies wholly at or above it
            // (none of an id's rows when nothing was below it).
            let whole_g: Vec<Vec<String>> = members
                .iter()
                .map(|&i| match below {
                    Some(0) => Vec::new(),
                    _ => whole[i].clone(),
                })
                .collect();
            let bounded_g: Vec<Vec<Span>> = members
                .iter()
                .map(|&i| {
                    bounded[i]
                        .iter()
                        .filter(|s| below.is_none_or(|b| s.floor < b))
                        .cloned()
                        .collect()
                })
                .collect();
            let has = |k: usize| !whole_g[k].is_empty() || !bounded_g[k].is_empty();
            if below.is_some() && !(0..members.len()).any(has) {
                continue;
            }
            // A person's metadata rows go on its first group's specs: an
            // uncapped group's (what it was asked, as before unfinished
            // deletions), else the first capped group with rows of it.
            let pick = |v: &mut [u64]| {
                (0..members.len())
                    .map(|k| match below.is_none() || has(k) {
                        true => std::mem::take(&mut v[members[k]]),
                        false => 0,
                    })
                    .collect::<Vec<_>>()
            };
            let (mut specs_g, owners_g, left) =
                whole_specs(project, &whole_g, &pick(&mut by_ids), &tables);
            // On the group's first request of runs, if any (else nothing
            // of it reaches the store).
            if let Some(k) = (0..members.len()).find(|&k| !bounded_g[k].is_empty()) {
                by_runs[members[k]] += left;
            }
            let (runs, run_owners) = run_specs(project, &bounded_g, &pick(&mut by_runs), &tables);
            specs_g.extend(runs);
            let owners_g: Vec<Vec<usize>> = owners_g
                .into_iter()
                .chain(run_owners)
                .map(|o| o.into_iter().map(|k| members[k]).collect())
                .collect();
            for (mut spec, o) in specs_g.into_iter().zip(owners_g) {
                if keep_person {
                    // The person and its ids stay: a rebuild must not block them.
                    spec.keeps_ids = true;
                }
                if let Some(below) = below {
                    // An unfinished deletion's part: no row stored after it
                    // began (a run wholly above that goes).
                    let cut = spec.cutoff.map_or(below, |c| c.min(below));
                    if spec.floor >= cut {
                        continue;
                    }
                    spec.cutoff = Some(cut);
                }
                specs.push(spec);
                owners.push(o);
            }
        }
        let mut requests = vec![Vec::new(); found.len()];
        if !specs.is_empty() {
            // All of them in one store commit.
            let outcomes = self.store.delete_many(specs)?;
            if outcomes.len() != owners.len() {
                return Err(PersonsError::Internal(format!(
                    "{} store requests for {} specs",
                    outcomes.len(),
                    owners.len()
                )));
            }
            for (persons, o) in owners.iter().zip(outcomes) {
                for &i in persons {
                    if requests[i].last() != Some(&o.request_id) {
                        requests[i].push(o.request_id);
                    }
                }
            }
        }
        if had_store_step {
            elide_store::failpoint!("persons::delete::after_store");
        }
        // 3. The profile: removed, ids blocked, deletion recorded, and the
        // deletion no longer unfinished (with any earlier one of the person
        // this one does all of).
        let now = now_us();
        let deleted = self.meta.write(|tx| {
            let mut deleted = 0;
            let each = found.iter().zip(&requests).zip(&detached).zip(&scopes);
            for ((((row, ids), reqs), d), scope) in each {
                tx.finish_person_deletion(project, &row.uuid, scope)?;
                let deletion_id = tx.insert_deletion(&DeletionRecord {
                    id: 0,
                    project_id: project,
                    person_uuid: row.uuid,
                    created_at_us: now,
                    delete_events: scope.delete_events,
                    delete_recordings: scope.delete_recordings,
                    keep_person: scope.keep_person,
                    store_requests: reqs.clone(),
                })?;
                if !scope.keep_person {
                    for id in ids {
                        tx.block(project, id, deletion_id, now)?;
                    }
                    tx.delete_person(project, row.id)?;
                    // Its records keep their boundaries only (no holder, no
                    // text); another person's records of its ids stay: that
                    // person's rows of them are still there, for its own
                    // deletion.
                    tx.erase_detached(project, &d.uuids)?;
                    // Its activity, and that of the persons merged into
                    // it (logged under their own UUIDs before the merge).
                    for u in &d.uuids {
                        tx.scrub_activity(project, u)?;
                    }
                    deleted += 1;
                }
                tx.insert_activity(
                    project,
                    Some(&row.uuid),
                    "deleted",
                    Some(&json!({
                        "deletion_id": deletion_id,
                        "delete_events": scope.delete_events,
                        "delete_recordings": scope.delete_recordings,
                        "keep_person": scope.keep_person,
                        "store_requests": reqs,
                    })),
                    now,
                )?;
            }
            Ok(deleted)
        })?;
        if deleted > 0 {
            self.meta.scrub()?;
        }
        tracing::info!(project, persons = found.len(), deleted, "persons deleted");
        Ok(BulkDeleteResult {
            persons_found: found.len(),
            persons_deleted: deleted,
            events_queued_for_deletion: scopes.iter().any(|s| s.delete_events),
            recordings_queued_for_deletion: scopes.iter().any(|s| s.delete_recordings),
            deletion_errors: errors,
        })
    }

    /// The state of the project's deletion records and blocked ids: it
    /// changes whenever either does (one lookup).
    pub fn deletion_stamp(&self, project: i64) -> Result<DeletionStamp> {
        self.meta.read(|tx| tx.deletion_stamp(project))
    }

    /// The project's deleted persons as the analytics read them: kept
    /// from the last request while [`Persons::deletion_stamp`] has not
    /// changed ([`crate::deleted`]), else read in one transaction.
    pub fn deleted_actors(&self, project: i64) -> Result<Arc<DeletedActors>> {
        let stamp = self.deletion_stamp(project)?;
        if let Some(d) = self.deleted_cache()?.get(project, stamp) {
            return Ok(d);
        }
        let d = Arc::new(self.meta.read(|tx| {
            Ok(DeletedActors {
                stamp: tx.deletion_stamp(project)?,
                uuids: tx.deleted_person_uuids(project)?.into_iter().collect(),
                blocked: Arc::new(tx.blocked_ids(project)?),
            })
        })?);
        self.deleted_cache()?.put(project, &d);
        Ok(d)
    }

    fn deleted_cache(&self) -> Result<std::sync::MutexGuard<'_, DeletedCache>> {
        self.deleted
            .lock()
            .map_err(|_| PersonsError::Internal("the deleted-persons cache is poisoned".into()))
    }

    /// Deletion statuses, newest first, optionally of one person or one state.
    pub fn deletion_status(
        &self,
        project: i64,
        person: Option<&str>,
        state: Option<DeletionState>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DeletionStatus>> {
        let person = person.map(parse_uuid_input).transpose()?;
        let records = self
            .meta
            .read(|tx| tx.deletions(project, person.as_ref()))?;
        let requests = self.store.request_states(project)?;
        let mut out = Vec::new();
        for d in records {
            let purge_due_by = d
                .store_requests
                .iter()
                .filter_map(|id| requests.get(id).map(|r| r.purge_due_by_us))
                .max();
            let mut verified_at = Some(d.created_at_us);
            for id in &d.store_requests {
                match requests.get(id) {
                    Some(r) if r.status == RequestStatus::Verified => {
                        verified_at = verified_at.max(r.verified_at_us);
                    }
                    _ => verified_at = None,
                }
                if verified_at.is_none() {
                    break;
                }
            }
            let status = if verified_at.is_some() {
                DeletionState::Completed
            } else {
                DeletionState::Pending
            };
            if state.is_some_and(|s| s != status) {
                continue;
            }
            out.push(DeletionStatus {
                id: d.id,
                person_uuid: d.person_uuid,
                status,
                requested_at: iso(d.created_at_us),
                delete_verified_at: verified_at.map(iso),
                delete_events: d.delete_events,
                delete_recordings: d.delete_recordings,
                keep_person: d.keep_person,
                purge_due_by: purge_due_by.map(iso),
            });
        }
        Ok(out.into_iter().skip(offset).take(limit).collect())
    }
}

/// The tables a deletion of `scope` deletes rows from.
fn tables_of(scope: &DeletionScope) -> Vec<Table> {
    let mut tables = Vec::new();
    if scope.delete_events {
        tables.push(Table::Events);
    }
    if scope.delete_recordings {
        tables.push(Table::Recordings);
    }
    tables
}

/// What a deletion does for one person: the tables it deletes, each up
/// to a `_seq` (`None`: all rows so far), and its scope as recorded.
struct Plan {
    parts: Vec<(Vec<Table>, Option<u64>)>,
    scope: DeletionScope,
}

/// The plan of a deletion `asked` for `person`, whose unfinished
/// deletions are among `left`: what was asked, up to now; and of each
/// unfinished deletion it does not cover, the tables `asked` leaves out,
/// up to where that one began. The scope has every table of them, the
/// profile kept only if all keep it.
fn plan(
    asked: DeletionScope,
    project: i64,
    person: &Uuid,
    left: &[(i64, i64, Unfinished)],
) -> Plan {
    let mut plan = Plan {
        parts: Vec::new(),
        scope: asked,
    };
    let own = tables_of(&asked);
    if !own.is_empty() {
        plan.parts.push((own.clone(), None));
    }
    for (_, p, op) in left {
        let Unfinished::DeletePerson {
            person_uuid,
            scope,
            below_seq,
        } = op
        else {
            continue;
        };
        if *p != project || person_uuid != person || asked.covers(scope) {
            continue;
        }
        let s = &mut plan.scope;
        s.delete_events |= scope.delete_events;
        s.delete_recordings |= scope.delete_recordings;
        s.keep_person &= scope.keep_person;
        let more: Vec<Table> = tables_of(scope)
            .into_iter()
            .filter(|t| !own.contains(t))
            .collect();
        if !more.is_empty() {
            plan.parts.push((more, Some(*below_seq)));
        }
    }
    plan
}

/// One spec per group of persons whose `whole` ids (all their rows go)
/// fit in [`MAX_DELETE_IDS`]; a person with more ids gets several, a
/// person with none gets none. Returns the specs, the persons each one
/// holds ids of, and the metadata rows no spec records. Each spec records
/// the `metadata_rows` (for its receipt) of the persons whose last ids it
/// holds, and of persons with no such id waiting before it.
fn whole_specs(
    project: i64,
    whole: &[Vec<String>],
    metadata_rows: &[u64],
    tables: &[Table],
) -> (Vec<DeleteSpec>, Vec<Vec<usize>>, u64) {
    let mut specs = Vec::new();
    let mut owners: Vec<Vec<usize>> = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let mut homes: Vec<usize> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut submit = |ids: &mut Vec<String>, group: &mut Vec<usize>, homes: &mut Vec<usize>| {
        if ids.is_empty() {
            // The persons waiting ride on the next spec.
            return;
        }
        specs.push(DeleteSpec {
            project_id: project,
            distinct_ids: std::mem::take(ids),
            cutoff: None,
            floor: 0,
            keeps_ids: false,
            tables: tables.to_vec(),
            kind: elide_store::RequestKind::Person,
            metadata_rows_removed: homes.drain(..).map(|i| metadata_rows[i]).sum(),
        });
        owners.push(std::mem::take(group));
    };
    for (i, pids) in whole.iter().enumerate() {
        if pids.is_empty() {
            homes.push(i);
            continue;
        }
        if ids.len() + pids.len() > MAX_DELETE_IDS {
            submit(&mut ids, &mut group, &mut homes);
        }
        for chunk in pids.chunks(MAX_DELETE_IDS) {
            if ids.len() + chunk.len() > MAX_DELETE_IDS {
                group.push(i);
                submit(&mut ids, &mut group, &mut homes);
            }
            ids.extend(chunk.iter().cloned());
        }
        group.push(i);
        homes.push(i);
    }
    submit(&mut ids, &mut group, &mut homes);
    let left = homes.into_iter().map(|i| metadata_rows[i]).sum();
    (specs, owners, left)
}

/// One spec per run of rows of the persons' ids that another holder (or
/// a boundary of no one's) bounds, with its cut-off and floor, and the
/// person each belongs to. A person's first spec records its
/// `metadata_rows`, for its receipt.
fn run_specs(
    project: i64,
    bounded: &[Vec<Span>],
    metadata_rows: &[u64],
    tables: &[Table],
) -> (Vec<DeleteSpec>, Vec<Vec<usize>>) {
    let mut specs = Vec::new();
    let mut owners = Vec::new();
    for (i, spans) in bounded.iter().enumerate() {
        let mut metadata = metadata_rows[i];
        for s in spans {
            specs.push(DeleteSpec {
                project_id: project,
                distinct_ids: vec![s.id.clone()],
                cutoff: s.cutoff,
                floor: s.floor,
                // A detached id's run: a rebuild must not block the id.
                keeps_ids: s.cutoff.is_some(),
                tables: tables.to_vec(),
                kind: elide_store::RequestKind::Person,
                metadata_rows_removed: std::mem::take(&mut metadata),
            });
            owners.push(vec![i]);
        }
    }
    (specs, owners)
}
