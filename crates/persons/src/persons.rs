//! [`Persons`]: the library API of persons and identity, over a metadata
//! store ([`MetaStore`]) and the event store ([`Store`]).
//!
//! Capture and deletion are serialized by one pipeline lock, held across
//! the metadata transaction and the store call of each. That gives the
//! deletion guarantee in both directions: an event whose capture returned
//! before a deletion began has `_seq` below the deletion's cut-off and is
//! deleted with the person; an event captured after it sees the block and
//! is stored with no person, and no deletion hides it.
//!
//! Order of writes, and what a crash between them leaves:
//! - capture of a batch ([`Persons::capture`]): the metadata transaction
//!   resolves the persons, the append runs inside it, then it commits. A
//!   failed append (a full disk) rolls the person changes back; bad input
//!   is refused before either. A crash between the append and the commit
//!   leaves the (unacknowledged) events naming persons the metadata lacks
//!   (the `person_overrides`/`persons` joins then find no person for them).
//! - capture of a whole input ([`Persons::capture_all`]): one metadata
//!   transaction and one bulk ingest, committed together by a two-phase
//!   commit that survives a crash at any point (`open.rs`): all or nothing.
//! - deletion: a metadata transaction records each person's deletion as
//!   unfinished (`unfinished`, by UUID), then the store's deletion
//!   requests (rows hidden, durable in the manifest, ids kept until
//!   verified), then the metadata transaction (person and ids removed, ids
//!   blocked, deletion recorded, no longer unfinished), then the scrub. A
//!   crash or a failed write after the first step leaves the deletion
//!   unfinished: repeating it completes it, and so does the next writable
//!   open (`open.rs`), which repeats it by UUID. The store's requests
//!   cannot come after the metadata's: that could lose the list of ids to
//!   delete. A deletion with no table to delete records nothing
//!   unfinished and, unless the person has an unfinished deletion naming
//!   tables (whose requests it then makes, capped), has no store step and
//!   is the one transaction.
//! - project drop ([`Persons::drop_project`]): recorded as unfinished,
//!   then the store's drop, then the metadata transaction (which removes
//!   the record); an open finishes one a crash cut short.
//!
//! Deletion ([`Persons::delete`], [`Persons::deletion_status`]) is in
//! `persons/delete.rs`; the reset and split of a person's identity in
//! `persons/identity.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard, RwLock};

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use elide_store::jsonl::{EventBatchBuilder, EventFields};
use elide_store::normalize::normalize;
use elide_store::{Store, StoreError, Table};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::capture::CaptureEvent;
use crate::error::{PersonsError, Result};
use crate::meta::{
    Activity, MetaStore, MetaTx, PersonFilter, PersonRow, Project, ProjectRemoval, Unfinished,
};
use crate::resolve::{CacheView, CaptureStats, IdCache, Resolver};
use crate::sqlite::SqliteMeta;

mod delete;
mod identity;
pub(crate) mod runs;

pub use delete::{
    BulkDeleteResult, DeletePersons, DeletionError, DeletionState, DeletionStatus,
    MAX_DELETE_PERSONS,
};
pub use identity::{ResetOutcome, SplitOutcome, SplitPerson, SplitSpec};

/// Most keys one batch lookup takes.
pub const MAX_LOOKUP: usize = 200;
/// Largest page of a listing.
pub const MAX_LIST_LIMIT: usize = 10_000;

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// RFC 3339 text of a µs timestamp.
pub fn iso(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| us.to_string())
}

/// A person as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Person {
    /// Integer id.
    pub id: i64,
    /// UUID (events' `person_id`).
    #[serde(serialize_with = "crate::ids::ser_uuid")]
    pub uuid: Uuid,
    /// Distinct ids, oldest first.
    pub distinct_ids: Vec<String>,
    /// Properties.
    pub properties: Map<String, Value>,
    /// First seen (RFC 3339).
    pub created_at: String,
    /// Identified.
    pub is_identified: bool,
    /// Version, bumped by every change.
    pub version: i64,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct PersonPage {
    /// The persons.
    pub results: Vec<Person>,
    /// Offset of the next page, if there is one.
    pub next_offset: Option<usize>,
}

/// Capture result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureOutcome {
    /// Identity figures.
    #[serde(flatten)]
    pub stats: CaptureStats,
    /// `_seq` of the first event stored (0 for an empty batch, and for
    /// [`Persons::capture_all`], whose events are ingested in bulk; equal
    /// to `seq_end` when every event was dropped).
    pub seq_start: u64,
    /// One past the last.
    pub seq_end: u64,
}

/// Persons and identity over a metadata store and the event store.
pub struct Persons<M: MetaStore = SqliteMeta> {
    store: Store,
    meta: M,
    /// The pipeline lock (see the module docs), with the distinct-id cache
    /// it guards.
    pipeline: Mutex<IdCache>,
    /// Held for writing by a project drop, for reading by a store-only
    /// write of a project ([`Persons::while_project_exists`]), so that
    /// none lands between the drop's store step and its metadata's.
    drops: RwLock<()>,
    /// The deleted persons the analytics read, per project
    /// ([`crate::deleted`]).
    pub(crate) deleted: Mutex<crate::deleted::DeletedCache>,
    /// Held while open: one `Persons` per data directory per process.
    pub(crate) _registration: Option<Registration>,
}

/// Data directories whose persons are open in this process: a second
/// `Persons` over the same directory would have its own pipeline lock and
/// cache, and the ordering guarantees would not hold. (Other processes are
/// kept out by the store's directory lock.)
fn open_dirs() -> &'static Mutex<HashSet<std::path::PathBuf>> {
    static OPEN: std::sync::OnceLock<Mutex<HashSet<std::path::PathBuf>>> =
        std::sync::OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashSet::new()))
}

#[derive(Debug)]
pub(crate) struct Registration(std::path::PathBuf);

impl Registration {
    pub(crate) fn take(dir: &std::path::Path) -> Result<Registration> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut open = open_dirs().lock().map_err(|_| {
            PersonsError::Internal("the open-directories registry is poisoned".into())
        })?;
        if !open.insert(dir.clone()) {
            return Err(PersonsError::InvalidInput(format!(
                "persons of {} are already open in this process; share that `Persons`",
                dir.display()
            )));
        }
        Ok(Registration(dir))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = open_dirs().lock() {
            open.remove(&self.0);
        }
    }
}

impl<M: MetaStore> std::fmt::Debug for Persons<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persons")
            .field("store", &self.store)
            .finish()
    }
}

pub(crate) fn parse_uuid_input(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim())
        .map_err(|e| PersonsError::InvalidInput(format!("{s:?} is not a UUID: {e}")))
}

pub(crate) fn view(tx: &mut dyn MetaTx, row: PersonRow) -> Result<Person> {
    let distinct_ids = tx.distinct_ids(row.project_id, row.id)?;
    Ok(Person {
        id: row.id,
        uuid: row.uuid,
        distinct_ids,
        properties: row.properties,
        created_at: iso(row.created_at_us),
        is_identified: row.is_identified,
        version: row.version,
    })
}

/// A person named by integer id or UUID.
pub(crate) fn find(tx: &mut dyn MetaTx, project: i64, key: &str) -> Result<PersonRow> {
    let row = match key.trim().parse::<i64>() {
        Ok(id) => tx.person_by_id(project, id)?,
        Err(_) => tx.person_by_uuid(project, &parse_uuid_input(key)?)?,
    };
    row.ok_or_else(|| PersonsError::NotFound(format!("person {key} in project {project}")))
}

pub(crate) fn ensure_project(tx: &mut dyn MetaTx, project: i64, now: i64) -> Result<Project> {
    if let Some(p) = tx.project(project)? {
        return Ok(p);
    }
    if project <= 0 {
        return Err(PersonsError::InvalidInput(format!(
            "project id must be a positive integer, got {project}"
        )));
    }
    // A capture that passed its token check before the project was
    // dropped must not bring it back (with new data, a new token and
    // default settings): ids up to the highest dropped one are never
    // created implicitly, as they are never reused.
    let dropped = tx.max_dropped_project_id()?;
    if project <= dropped {
        return Err(PersonsError::NotFound(format!(
            "project {project} does not exist, and ids up to {dropped} (the highest of a deleted project) are not created by a capture"
        )));
    }
    let p = Project {
        id: project,
        name: format!("Project {project}"),
        api_token: crate::admin::new_capture_token(),
        created_at_us: now,
        settings: Default::default(),
    };
    tx.insert_project(&p)?;
    tx.insert_activity(project, None, "project_created", None, now)?;
    Ok(p)
}

/// `events` as the project's settings let them be stored (borrowed when
/// the settings change nothing).
pub(crate) fn scrub_all<'e>(
    events: &'e [CaptureEvent],
    settings: &crate::meta::ProjectSettings,
) -> std::borrow::Cow<'e, [CaptureEvent]> {
    if *settings == crate::meta::ProjectSettings::default() {
        return std::borrow::Cow::Borrowed(events);
    }
    // One pass: each event scrubbed at most once, copied only if needed.
    let scrubbed: Vec<Option<CaptureEvent>> = events.iter().map(|e| e.scrubbed(settings)).collect();
    if scrubbed.iter().all(Option::is_none) {
        return std::borrow::Cow::Borrowed(events);
    }
    std::borrow::Cow::Owned(
        events
            .iter()
            .zip(scrubbed)
            .map(|(e, s)| s.unwrap_or_else(|| e.clone()))
            .collect(),
    )
}

/// The stored events batch (input schema) of `events`, each resolved to
/// its person (or none), built straight into Arrow arrays, with the
/// indices of the events dropped ([`Resolver::drops`]; ascending, usually
/// none).
pub(crate) fn event_batch<'e>(
    r: &mut Resolver<'_, 'e>,
    events: &'e [CaptureEvent],
    project: i64,
    now: i64,
) -> Result<(RecordBatch, Vec<usize>)> {
    let mut b = EventBatchBuilder::with_capacity(events.len());
    let mut props = Vec::with_capacity(256);
    let (mut event_uuid, mut person_uuid) = ([0u8; 36], [0u8; 36]);
    let mut dropped = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if r.drops(ev) {
            dropped.push(i);
            continue;
        }
        let person = r.resolve(ev)?;
        props.clear();
        serde_json::to_writer(&mut props, &ev.properties)
            .map_err(|e| PersonsError::InvalidInput(format!("event properties: {e}")))?;
        let properties = std::str::from_utf8(&props)
            .map_err(|e| PersonsError::Internal(format!("event properties: {e}")))?;
        b.push(&EventFields {
            // Generated here from the thread's RNG, not by the store (one
            // system call per row there).
            uuid: Some(match &ev.uuid {
                Some(u) => u.as_str(),
                None => uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .hyphenated()
                    .encode_lower(&mut event_uuid),
            }),
            event: &ev.event,
            distinct_id: &ev.distinct_id,
            person_id: match person {
                Some(u) => Some(u.hyphenated().encode_lower(&mut person_uuid)),
                None => None,
            },
            project_id: project,
            timestamp_us: ev.timestamp_us.unwrap_or(now),
            properties: Some(properties),
            session_id: ev.session_id(),
        });
    }
    Ok((b.finish()?, dropped))
}

/// `e`, a row of a batch built without the `dropped` events (ascending),
/// with its row counted among all the events.
pub(crate) fn row_among_events(e: StoreError, dropped: &[usize]) -> StoreError {
    match e {
        StoreError::InvalidRow {
            mut row,
            column,
            reason,
        } => {
            for &d in dropped {
                if d <= row {
                    row += 1;
                }
            }
            StoreError::InvalidRow {
                row,
                column,
                reason,
            }
        }
        other => other,
    }
}

impl<M: MetaStore> Persons<M> {
    /// Persons over `meta` and `store`. The caller makes sure no other
    /// `Persons` writes the same metadata (see [`Persons::open`]).
    pub fn with_meta(store: Store, meta: M) -> Persons<M> {
        Persons {
            store,
            meta,
            pipeline: Mutex::new(IdCache::default()),
            drops: RwLock::new(()),
            deleted: Mutex::default(),
            _registration: None,
        }
    }

    /// The event store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metadata store.
    pub fn meta(&self) -> &M {
        &self.meta
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, IdCache>> {
        self.pipeline
            .lock()
            .map_err(|_| PersonsError::Internal("the capture pipeline lock is poisoned".into()))
    }

    /// Run `write`, a write of `project`'s in the store alone (its
    /// settings, a deletion of events), while the project exists: a drop
    /// of it waits for `write`, and `write` does not run once a drop has
    /// begun (the project is then [`PersonsError::NotFound`]). Writes
    /// through the persons layer need not: the pipeline lock orders them
    /// with the drop.
    pub fn while_project_exists<R, E: From<PersonsError>>(
        &self,
        project: i64,
        write: impl FnOnce() -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let _drops = self
            .drops
            .read()
            .map_err(|_| PersonsError::Internal("the project drop lock is poisoned".into()))?;
        self.project(project)?;
        write()
    }

    /// The project, created (with a fresh capture token) if new.
    pub fn ensure_project(&self, project: i64) -> Result<Project> {
        self.meta.write(|tx| ensure_project(tx, project, now_us()))
    }

    /// A project.
    pub fn project(&self, project: i64) -> Result<Project> {
        self.meta
            .read(|tx| tx.project(project))?
            .ok_or_else(|| PersonsError::NotFound(format!("project {project}")))
    }

    /// The project a capture token belongs to.
    pub fn project_by_token(&self, token: &str) -> Result<Option<Project>> {
        self.meta.read(|tx| tx.project_by_token(token))
    }

    /// All projects.
    pub fn projects(&self) -> Result<Vec<Project>> {
        self.meta.read(|tx| tx.projects())
    }

    /// Capture events into `project` (created if new): identity resolution,
    /// then one append. All or nothing: a bad event fails the whole batch
    /// before anything is written.
    pub fn capture(&self, project: i64, events: &[CaptureEvent]) -> Result<CaptureOutcome> {
        let mut g = self.lock()?;
        self.capture_locked(&mut g, project, events)
    }

    fn capture_locked(
        &self,
        cache: &mut IdCache,
        project: i64,
        events: &[CaptureEvent],
    ) -> Result<CaptureOutcome> {
        if events.is_empty() {
            return Ok(CaptureOutcome {
                stats: CaptureStats::default(),
                seq_start: 0,
                seq_end: 0,
            });
        }
        let now = now_us();
        let started = std::time::Instant::now();
        let mut resolved_at = started;
        let mut built_at = started;
        let mut appended = None;
        let result = self.meta.write(|tx| {
            let settings = ensure_project(tx, project, now)?.settings;
            let events = scrub_all(events, &settings);
            let mut r = Resolver::new(tx, CacheView::committed(cache), project, now);
            let (batch, dropped) = event_batch(&mut r, &events, project, now)?;
            let (mut stats, learned) = r.finish()?;
            stats.events = batch.num_rows() as u64;
            resolved_at = std::time::Instant::now();
            let batch =
                normalize(Table::Events, &batch).map_err(|e| row_among_events(e, &dropped))?;
            built_at = std::time::Instant::now();
            // The append happens inside the metadata transaction: if it
            // fails (a full disk), the person changes roll back with it.
            appended = Some(self.store.append_normalized(batch)?);
            Ok((stats, learned))
        });
        let (stats, learned) = match result {
            Ok(r) => r,
            Err(e) => {
                if let Some(a) = appended {
                    // The events are durable but the metadata commit
                    // failed: they name persons that were not written.
                    tracing::error!(error = %e, seq_start = a.seq_start, seq_end = a.seq_end,
                        "the metadata commit failed after the events were appended; they carry person ids the metadata lacks");
                }
                return Err(e);
            }
        };
        // Committed: the cache may learn from the batch.
        cache.apply(project, learned);
        let appended = appended
            .ok_or_else(|| PersonsError::Internal("capture committed without its append".into()))?;
        tracing::debug!(
            events = events.len(),
            resolve_us = (resolved_at - started).as_micros() as u64,
            build_us = (built_at - resolved_at).as_micros() as u64,
            commit_and_append_us = built_at.elapsed().as_micros() as u64,
            "captured a batch"
        );
        Ok(CaptureOutcome {
            stats,
            seq_start: appended.seq_start,
            seq_end: appended.seq_end,
        })
    }

    /// A person by integer id or UUID.
    pub fn get(&self, project: i64, key: &str) -> Result<Person> {
        self.meta.read(|tx| {
            let row = find(tx, project, key)?;
            view(tx, row)
        })
    }

    /// Persons matching `filter`, newest first.
    pub fn list(&self, project: i64, filter: &PersonFilter) -> Result<PersonPage> {
        if filter.limit == 0 || filter.limit > MAX_LIST_LIMIT {
            return Err(PersonsError::InvalidInput(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}, got {}",
                filter.limit
            )));
        }
        let mut probe = filter.clone();
        probe.limit = filter.limit + 1;
        self.meta.read(|tx| {
            let mut rows = tx.list_persons(project, &probe)?;
            let more = rows.len() > filter.limit;
            rows.truncate(filter.limit);
            let results = rows
                .into_iter()
                .map(|r| view(tx, r))
                .collect::<Result<Vec<_>>>()?;
            Ok(PersonPage {
                results,
                next_offset: more.then_some(filter.offset.saturating_add(filter.limit)),
            })
        })
    }

    /// The persons of up to [`MAX_LOOKUP`] distinct ids (absent ids are left out).
    pub fn by_distinct_ids(
        &self,
        project: i64,
        ids: &[String],
    ) -> Result<BTreeMap<String, Person>> {
        check_lookup(ids.len())?;
        self.meta.read(|tx| {
            let mut out = BTreeMap::new();
            for id in ids {
                if let Some(row) = tx.person_by_distinct_id(project, id)? {
                    out.insert(id.clone(), view(tx, row)?);
                }
            }
            Ok(out)
        })
    }

    /// The persons of up to [`MAX_LOOKUP`] UUIDs (absent ones are left out).
    pub fn by_uuids(&self, project: i64, uuids: &[String]) -> Result<BTreeMap<Uuid, Person>> {
        check_lookup(uuids.len())?;
        let parsed = uuids
            .iter()
            .map(|u| parse_uuid_input(u))
            .collect::<Result<Vec<_>>>()?;
        self.meta.read(|tx| {
            let mut out = BTreeMap::new();
            for u in parsed {
                if let Some(row) = tx.person_by_uuid(project, &u)? {
                    out.insert(u, view(tx, row)?);
                }
            }
            Ok(out)
        })
    }

    /// Set properties of a person, as a `$set` event through the pipeline
    /// (so the change is in the event history too).
    pub fn update_properties(
        &self,
        project: i64,
        key: &str,
        set: Map<String, Value>,
    ) -> Result<Person> {
        if set.is_empty() {
            return Err(PersonsError::InvalidInput("no properties to set".into()));
        }
        let keys: Vec<String> = set.keys().cloned().collect();
        let mut props = Map::new();
        props.insert("$set".into(), Value::Object(set));
        self.person_event(
            project,
            key,
            "$set",
            props,
            "properties_updated",
            json!({ "keys": keys }),
        )
    }

    /// Remove one property of a person, as a `$delete_person_property`
    /// event with `$unset` through the pipeline.
    pub fn delete_property(&self, project: i64, key: &str, property: &str) -> Result<Person> {
        let mut props = Map::new();
        props.insert("$unset".into(), json!([property]));
        self.person_event(
            project,
            key,
            "$delete_person_property",
            props,
            "property_deleted",
            json!({ "keys": [property] }),
        )
    }

    fn person_event(
        &self,
        project: i64,
        key: &str,
        event: &str,
        props: Map<String, Value>,
        activity: &str,
        detail: Value,
    ) -> Result<Person> {
        let mut g = self.lock()?;
        let (uuid, did) = self.meta.read(|tx| {
            let row = find(tx, project, key)?;
            let ids = tx.distinct_ids(project, row.id)?;
            let did = ids.into_iter().next().ok_or_else(|| {
                PersonsError::InvalidInput(format!(
                    "person {key} has no distinct id to attribute the change to"
                ))
            })?;
            Ok((row.uuid, did))
        })?;
        let ev = CaptureEvent::new(event, did, props)?;
        self.capture_locked(&mut g, project, &[ev])?;
        self.meta.write(|tx| {
            tx.insert_activity(project, Some(&uuid), activity, Some(&detail), now_us())?;
            let row = find(tx, project, &uuid.to_string())?;
            view(tx, row)
        })
    }

    /// Activity, newest first: of one person (by id or UUID) or of the project.
    pub fn activity(
        &self,
        project: i64,
        person: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        self.activity_page(project, person, 0, limit)
    }

    /// [`Persons::activity`] after skipping `offset` entries: a page is
    /// read alone, however deep it is.
    pub fn activity_page(
        &self,
        project: i64,
        person: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        self.meta.read(|tx| {
            let uuid = match person {
                None => None,
                // A deleted person's entries remain (scrubbed): look up by
                // UUID without requiring the person to exist.
                Some(k) => Some(match parse_uuid_input(k) {
                    Ok(u) => u,
                    Err(_) => find(tx, project, k)?.uuid,
                }),
            };
            tx.activity(project, uuid.as_ref(), offset, limit)
        })
    }

    /// Append rows that need no person resolution (session recordings) to
    /// `table` for an existing `project`. Under the pipeline's lock, as a
    /// capture: rows that reach the store before a drop of the project
    /// are dropped with it, and after it are refused (`NotFound`).
    pub fn append_unresolved(&self, project: i64, table: Table, batch: &RecordBatch) -> Result<()> {
        let _g = self.lock()?;
        self.append_unresolved_locked(project, table, batch)
    }

    /// [`Persons::capture`] of `events`, then [`Persons::append_unresolved`]
    /// of `batch`, under one hold of the pipeline's lock: no reset or
    /// split of a distinct id comes between the two, so the rows of one
    /// capture request are all on the same side of its cut-off.
    pub fn capture_and_append(
        &self,
        project: i64,
        events: &[CaptureEvent],
        table: Table,
        batch: &RecordBatch,
    ) -> Result<CaptureOutcome> {
        let mut g = self.lock()?;
        let out = self.capture_locked(&mut g, project, events)?;
        self.append_unresolved_locked(project, table, batch)?;
        Ok(out)
    }

    fn append_unresolved_locked(
        &self,
        project: i64,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<()> {
        self.meta.read(|tx| match tx.project(project)? {
            Some(_) => Ok(()),
            None => Err(PersonsError::NotFound(format!("project {project}"))),
        })?;
        // The rows are `project`'s: its existence was what was checked.
        let projects = batch
            .column_by_name(elide_store::schema::PROJECT_COLUMN)
            .and_then(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).ok());
        let only_ours = projects.is_some_and(|c| {
            let c = c.as_primitive::<arrow::datatypes::Int64Type>();
            c.null_count() == 0 && c.values().iter().all(|&p| p == project)
        });
        if !only_ours {
            return Err(PersonsError::InvalidInput(format!(
                "every row appended to project {project} must have project_id {project}"
            )));
        }
        self.store.append(table, batch)?;
        Ok(())
    }

    /// Drop a project: recorded as unfinished, its data in the store,
    /// then its metadata (see the module docs).
    pub fn drop_project(&self, project: i64) -> Result<(elide_store::DropOutcome, ProjectRemoval)> {
        if project < 0 {
            // Refused before it is recorded: no open would finish it.
            return Err(PersonsError::InvalidInput(format!(
                "project ids are never negative, got {project}"
            )));
        }
        let _no_writes = self
            .drops
            .write()
            .map_err(|_| PersonsError::Internal("the project drop lock is poisoned".into()))?;
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        self.meta
            .write(|tx| tx.begin_unfinished(project, &Unfinished::DropProject, now_us()))?;
        let data = self.store.drop_project(project)?;
        elide_store::failpoint!("persons::drop_project::after_store");
        let meta = self.meta.write(|tx| tx.delete_project(project))?;
        self.meta.scrub()?;
        Ok((data, meta))
    }

    /// The rows that are person `key`'s, as its export and its deletion
    /// read them ([`runs`]): each of its ids' rows, and the rows of ids
    /// it held before (a reset, a split), cut by `_seq` where another
    /// holder had the id before or after it. A reader that filters by
    /// these never shows another holder's rows of a shared id.
    pub fn rows_of_person(&self, project: i64, key: &str) -> Result<Vec<IdRows>> {
        self.meta.read(|tx| {
            let row = find(tx, project, key)?;
            let ids = tx.distinct_ids(project, row.id)?;
            let mut uuids = vec![row.uuid];
            uuids.extend(tx.merged_into(project, &row.uuid)?);
            Ok(runs::holders(tx, project, uuids, &ids)?
                .spans(&ids)
                .into_iter()
                .map(|s| IdRows {
                    distinct_id: s.id,
                    from_seq: s.floor,
                    below_seq: s.cutoff,
                })
                .collect())
        })
    }
}

/// Rows of one distinct id that are one person's: `_seq` from
/// `from_seq` and below `below_seq` (`None`: every later row too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRows {
    /// The distinct id.
    pub distinct_id: String,
    /// First `_seq` (0: from the id's first row).
    pub from_seq: u64,
    /// `_seq` the rows stop below, if they stop.
    pub below_seq: Option<u64>,
}

fn check_lookup(n: usize) -> Result<()> {
    if n == 0 || n > MAX_LOOKUP {
        return Err(PersonsError::InvalidInput(format!(
            "a lookup takes 1 to {MAX_LOOKUP} keys, got {n}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of a batch built without some events is named by its place
    /// among all the events (for an error that names the line or event).
    #[test]
    fn a_row_is_counted_among_the_events_dropped_before_it() {
        let row = |r: usize, dropped: &[usize]| {
            let e = StoreError::InvalidRow {
                row: r,
                column: "c".into(),
                reason: "bad".into(),
            };
            match row_among_events(e, dropped) {
                StoreError::InvalidRow { row, .. } => row,
                other => panic!("{other}"),
            }
        };
        assert_eq!(row(0, &[]), 0);
        assert_eq!(row(0, &[0]), 1);
        assert_eq!(row(0, &[1]), 0);
        assert_eq!(row(1, &[0, 1, 3]), 4);
        assert_eq!(row(2, &[0, 1, 3]), 5);
    }
}
