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
//! - deletion: the store's deletion requests first (rows hidden, durable
//!   in the manifest, ids kept until verified), then the metadata
//!   transaction (person and ids removed, ids blocked, deletion recorded),
//!   then the scrub. A crash between leaves rows hidden and the person
//!   still listed; repeating the deletion completes it. The other order
//!   could lose the list of ids to delete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use arrow::record_batch::RecordBatch;
use elide_store::jsonl::{EventBatchBuilder, EventFields};
use elide_store::normalize::normalize;
use elide_store::{DeleteSpec, RequestStatus, Store, Table, MAX_DELETE_IDS};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::capture::CaptureEvent;
use crate::error::{PersonsError, Result};
use crate::meta::{
    Activity, DeletionRecord, MetaStore, MetaTx, PersonFilter, PersonRow, Project, ProjectRemoval,
};
use crate::resolve::{free_uuid, CacheView, CaptureStats, IdCache, Resolver};
use crate::sqlite::SqliteMeta;

/// Most persons one deletion takes.
pub const MAX_DELETE_PERSONS: usize = 1000;
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

/// Capture result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureOutcome {
    /// Identity figures.
    #[serde(flatten)]
    pub stats: CaptureStats,
    /// `_seq` of the first event (0 for an empty batch, and for
    /// [`Persons::capture_all`], whose events are ingested in bulk).
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
/// its person (or none), built straight into Arrow arrays.
pub(crate) fn event_batch<'e>(
    r: &mut Resolver<'_, 'e>,
    events: &'e [CaptureEvent],
    project: i64,
    now: i64,
) -> Result<RecordBatch> {
    let mut b = EventBatchBuilder::with_capacity(events.len());
    let mut props = Vec::with_capacity(256);
    let (mut event_uuid, mut person_uuid) = ([0u8; 36], [0u8; 36]);
    for ev in events {
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
    Ok(b.finish()?)
}

impl<M: MetaStore> Persons<M> {
    /// Persons over `meta` and `store`. The caller makes sure no other
    /// `Persons` writes the same metadata (see [`Persons::open`]).
    pub fn with_meta(store: Store, meta: M) -> Persons<M> {
        Persons {
            store,
            meta,
            pipeline: Mutex::new(IdCache::default()),
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
            let batch = event_batch(&mut r, &events, project, now)?;
            let (mut stats, learned) = r.finish()?;
            stats.events = batch.num_rows() as u64;
            resolved_at = std::time::Instant::now();
            let batch = normalize(Table::Events, &batch)?;
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

    /// Delete persons (see [`DeletePersons`]). Ids that name no person are
    /// reported in `deletion_errors`; if none names one, nothing changes
    /// (`persons_found` is 0). Malformed requests (both lists, neither,
    /// more than [`MAX_DELETE_PERSONS`], a bad UUID) are errors.
    pub fn delete(&self, project: i64, req: &DeletePersons) -> Result<BulkDeleteResult> {
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
        // 1. Who: the persons and all their distinct ids.
        let mut errors = Vec::new();
        let found: Vec<(PersonRow, Vec<String>)> = self.meta.read(|tx| {
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
        // 2. The rows: store deletion requests, durable before the profile goes.
        let mut tables = Vec::new();
        if req.delete_events {
            tables.push(Table::Events);
        }
        if req.delete_recordings {
            tables.push(Table::Recordings);
        }
        let requests = if tables.is_empty() {
            vec![Vec::new(); found.len()]
        } else {
            self.store_requests(project, &found, &tables, req.keep_person)?
        };
        // 3. The profile: removed, ids blocked, deletion recorded.
        let now = now_us();
        let deleted = self.meta.write(|tx| {
            let mut deleted = 0;
            for ((row, ids), reqs) in found.iter().zip(&requests) {
                let deletion_id = tx.insert_deletion(&DeletionRecord {
                    id: 0,
                    project_id: project,
                    person_uuid: row.uuid,
                    created_at_us: now,
                    delete_events: req.delete_events,
                    delete_recordings: req.delete_recordings,
                    keep_person: req.keep_person,
                    store_requests: reqs.clone(),
                })?;
                if !req.keep_person {
                    for id in ids {
                        tx.block(project, id, deletion_id, now)?;
                    }
                    tx.delete_person(project, row.id)?;
                    tx.scrub_activity(project, &row.uuid)?;
                    deleted += 1;
                }
                tx.insert_activity(
                    project,
                    Some(&row.uuid),
                    "deleted",
                    Some(&json!({
                        "deletion_id": deletion_id,
                        "delete_events": req.delete_events,
                        "delete_recordings": req.delete_recordings,
                        "keep_person": req.keep_person,
                        "store_requests": reqs,
                    })),
                    now,
                )?;
            }
            Ok(deleted)
        })?;
        if !req.keep_person {
            self.meta.scrub()?;
        }
        tracing::info!(project, persons = found.len(), deleted, "persons deleted");
        Ok(BulkDeleteResult {
            persons_found: found.len(),
            persons_deleted: deleted,
            events_queued_for_deletion: req.delete_events,
            recordings_queued_for_deletion: req.delete_recordings,
            deletion_errors: errors,
        })
    }

    /// One store request per group of persons whose ids fit in
    /// [`MAX_DELETE_IDS`]; a person with more ids gets several. Returns
    /// each person's request ids. Unless `keep_person`, each request
    /// records the metadata rows (the person and its distinct ids) of the
    /// persons whose last ids it holds, for its receipt.
    fn store_requests(
        &self,
        project: i64,
        found: &[(PersonRow, Vec<String>)],
        tables: &[Table],
        keep_person: bool,
    ) -> Result<Vec<Vec<u64>>> {
        let mut out = vec![Vec::new(); found.len()];
        let mut group: Vec<usize> = Vec::new();
        let mut homes: Vec<usize> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        let metadata_rows = |i: usize| {
            if keep_person {
                0
            } else {
                1 + found[i].1.len() as u64
            }
        };
        let submit = |ids: &mut Vec<String>,
                      group: &mut Vec<usize>,
                      homes: &mut Vec<usize>,
                      out: &mut Vec<Vec<u64>>|
         -> Result<()> {
            let metadata_rows_removed = homes.drain(..).map(metadata_rows).sum();
            if ids.is_empty() {
                group.clear();
                return Ok(());
            }
            let spec = DeleteSpec {
                project_id: project,
                distinct_ids: std::mem::take(ids),
                cutoff: None,
                tables: tables.to_vec(),
                kind: elide_store::RequestKind::Person,
                metadata_rows_removed,
            };
            let o = self.store.delete(spec)?;
            for i in group.drain(..) {
                if out[i].last() != Some(&o.request_id) {
                    out[i].push(o.request_id);
                }
            }
            Ok(())
        };
        for (i, (_, pids)) in found.iter().enumerate() {
            if ids.len() + pids.len() > MAX_DELETE_IDS {
                submit(&mut ids, &mut group, &mut homes, &mut out)?;
            }
            for chunk in pids.chunks(MAX_DELETE_IDS) {
                if ids.len() + chunk.len() > MAX_DELETE_IDS {
                    group.push(i);
                    submit(&mut ids, &mut group, &mut homes, &mut out)?;
                }
                ids.extend(chunk.iter().cloned());
            }
            group.push(i);
            homes.push(i);
        }
        submit(&mut ids, &mut group, &mut homes, &mut out)?;
        Ok(out)
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
        let requests: HashMap<u64, (RequestStatus, Option<i64>, i64)> = self
            .store
            .requests()?
            .into_iter()
            .map(|r| (r.id, (r.status, r.verified_at_us, r.purge_due_by_us)))
            .collect();
        let mut out = Vec::new();
        for d in records {
            let purge_due_by = d
                .store_requests
                .iter()
                .filter_map(|id| requests.get(id).map(|r| r.2))
                .max();
            let mut verified_at = Some(d.created_at_us);
            for id in &d.store_requests {
                match requests.get(id) {
                    Some((RequestStatus::Verified, at, _)) => {
                        verified_at = verified_at.max(*at);
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

    /// Free a distinct id: lift the block a deletion put on it, or detach
    /// it from its person. Its next event creates a new person.
    pub fn reset_distinct_id(&self, project: i64, distinct_id: &str) -> Result<ResetOutcome> {
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        let now = now_us();
        self.meta.write(|tx| {
            if tx.unblock(project, distinct_id)? {
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
            tx.insert_activity(project, Some(&row.uuid), "distinct_id_reset", None, now)?;
            Ok(ResetOutcome {
                unblocked: false,
                detached_from: Some(row.uuid),
            })
        })
    }

    /// Move distinct ids of a person to new persons, one per id; the
    /// person keeps its properties and the ids not moved.
    pub fn split(&self, project: i64, key: &str, spec: &SplitSpec) -> Result<SplitOutcome> {
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        let now = now_us();
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

    /// Activity, newest first: of one person (by id or UUID) or of the project.
    pub fn activity(
        &self,
        project: i64,
        person: Option<&str>,
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
            tx.activity(project, uuid.as_ref(), limit)
        })
    }

    /// Drop a project: its data in the store, then its metadata.
    pub fn drop_project(&self, project: i64) -> Result<(elide_store::DropOutcome, ProjectRemoval)> {
        let mut g = self.lock()?;
        // Ids move or go: the cache starts over.
        g.clear();
        let data = self.store.drop_project(project)?;
        let meta = self.meta.write(|tx| tx.delete_project(project))?;
        self.meta.scrub()?;
        Ok((data, meta))
    }

    /// The distinct ids of a person (for the properties timeline).
    pub fn distinct_ids_of(&self, project: i64, key: &str) -> Result<(Uuid, Vec<String>)> {
        self.meta.read(|tx| {
            let row = find(tx, project, key)?;
            Ok((row.uuid, tx.distinct_ids(project, row.id)?))
        })
    }
}

fn check_lookup(n: usize) -> Result<()> {
    if n == 0 || n > MAX_LOOKUP {
        return Err(PersonsError::InvalidInput(format!(
            "a lookup takes 1 to {MAX_LOOKUP} keys, got {n}"
        )));
    }
    Ok(())
}
