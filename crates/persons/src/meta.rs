//! The metadata store: what it holds and the operations the persons layer
//! needs from it, behind two small traits so that a PostgreSQL
//! implementation can follow the SQLite one ([`crate::sqlite`]).
//!
//! [`MetaStore`] hands out transactions; [`MetaTx`] is the set of
//! primitive reads and writes inside one. All identity logic (merges,
//! property updates, deletion) lives above, in [`crate::persons`], and is
//! written once against these traits.
//!
//! Invariants an implementation keeps:
//! - a `write` transaction is atomic: all of its changes or none;
//! - a person's distinct ids are unique per project: one id, one person;
//! - [`MetaStore::scrub`] leaves no byte of rows deleted before it in the
//!   store's files (SQLite: `secure_delete` plus a truncating checkpoint).

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::Result;

/// A project (a PostHog team).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// Id (the store's `project_id`).
    pub id: i64,
    /// Display name.
    pub name: String,
    /// The capture token (`phc_...`).
    pub api_token: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// What capture does before anything is written.
    pub settings: ProjectSettings,
}

/// A project's capture settings, applied before anything is written
/// (block sensitive data before capture).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ProjectSettings {
    /// Drop the `$ip` property of every event (and of `$set`).
    pub anonymize_ips: bool,
    /// Property names dropped from every event (and from `$set`,
    /// `$set_once`) before it is stored.
    pub drop_properties: Vec<String>,
}

/// A personal API key, as stored: never the key itself, only its hash
/// (kept apart) and a mask to recognise it by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: i64,
    /// The project it may act on.
    pub project_id: i64,
    /// A label for people.
    pub label: String,
    /// Scopes (`person:read`, ..., or `*` for all).
    pub scopes: Vec<String>,
    /// The first and last characters of the key (`phx_ab...yz`).
    pub mask: String,
    /// Creation time, µs.
    pub created_at_us: i64,
    /// Last use (updated at most hourly), µs.
    pub last_used_at_us: Option<i64>,
    /// Revocation time, µs.
    pub revoked_at_us: Option<i64>,
}

/// A person row as stored, its UUID and properties as their text (the
/// `persons` table reads these: no parse of the properties into a map
/// and no formatting of the UUID, only checks that they are what they
/// should be).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonText<'a> {
    /// Integer id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// UUID, hyphenated lowercase (as stored, or formatted so when it is
    /// stored in another form).
    pub uuid: std::borrow::Cow<'a, str>,
    /// Properties, a JSON object's compact text.
    pub properties: &'a str,
    /// First seen, µs.
    pub created_at_us: i64,
    /// Identified.
    pub is_identified: bool,
    /// Bumped by every change.
    pub version: i64,
}

/// A person row.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRow {
    /// Integer id, never reused.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// UUID (events' `person_id`).
    pub uuid: Uuid,
    /// Properties (a JSON object).
    pub properties: Map<String, Value>,
    /// The length of `properties` as stored (compact JSON text), so that
    /// the capture path's size bound need not serialise them to know it.
    pub properties_len: usize,
    /// First seen: the earliest event time, µs.
    pub created_at_us: i64,
    /// Identified by `$identify`/`$create_alias`/`$merge_dangerously`.
    pub is_identified: bool,
    /// Bumped by every change.
    pub version: i64,
}

/// A person to insert.
#[derive(Debug, Clone)]
pub struct NewPerson {
    /// Project.
    pub project_id: i64,
    /// UUID.
    pub uuid: Uuid,
    /// Properties.
    pub properties: Map<String, Value>,
    /// First seen, µs.
    pub created_at_us: i64,
    /// Identified.
    pub is_identified: bool,
}

/// Comparison and filter of person properties: the same types (and
/// operators) as the store's event predicates.
pub use elide_store::predicate::{PropertyFilter, PropertyOperator};

/// Filters and paging of a person listing. All filters must hold.
#[derive(Debug, Clone, Default)]
pub struct PersonFilter {
    /// Owns this distinct id (exact).
    pub distinct_id: Option<String>,
    /// `properties.email` equals this.
    pub email: Option<String>,
    /// Substring of email or name (case-insensitive), or exact distinct id or UUID.
    pub search: Option<String>,
    /// Property filters.
    pub properties: Vec<PropertyFilter>,
    /// Only these persons (by UUID), when given: a cohort's members.
    pub uuids: Option<Vec<Uuid>>,
    /// Not these persons (by UUID): the members of a cohort filtered out.
    pub not_uuids: Vec<Uuid>,
    /// Page size.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
}

/// A deletion as users see it: one per person and request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletionRecord {
    /// Id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// The deleted person.
    pub person_uuid: Uuid,
    /// When it was requested, µs.
    pub created_at_us: i64,
    /// Events queued for deletion.
    pub delete_events: bool,
    /// Recordings queued for deletion.
    pub delete_recordings: bool,
    /// The profile was kept.
    pub keep_person: bool,
    /// The store's deletion requests that carry the person's rows.
    pub store_requests: Vec<u64>,
}

/// What a deletion of a person takes: the flags of [`DeletionRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeletionScope {
    /// Events queued for deletion.
    pub delete_events: bool,
    /// Recordings queued for deletion.
    pub delete_recordings: bool,
    /// The profile is kept.
    pub keep_person: bool,
}

impl DeletionScope {
    /// Whether a deletion of this scope does all that one of `other`'s
    /// does: every table it deletes, and the profile unless `other` kept it.
    pub fn covers(&self, other: &DeletionScope) -> bool {
        (self.delete_events || !other.delete_events)
            && (self.delete_recordings || !other.delete_recordings)
            && (other.keep_person || !self.keep_person)
    }
}

/// An operation begun and not yet finished: recorded before its store
/// step, removed by the metadata transaction that finishes it (see
/// `Persons::open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// The deletion of one person.
    DeletePerson {
        /// The person.
        person_uuid: Uuid,
        /// What it deletes.
        scope: DeletionScope,
        /// The store's acknowledged `_seq` when it began: its redo
        /// deletes no row at or above it.
        below_seq: u64,
    },
    /// The drop of a project.
    DropProject,
}

/// An activity-log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// Id (increasing).
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// The person concerned, if any.
    #[serde(serialize_with = "crate::ids::ser_opt_uuid")]
    pub person_uuid: Option<Uuid>,
    /// What happened (`created`, `merged`, `updated`, `deleted`, ...).
    pub activity: String,
    /// Details. Never person property values; erased with the person.
    pub detail: Option<Value>,
    /// When, µs.
    pub created_at_us: i64,
}

/// What a distinct id is, as [`MetaTx::lookup_distinct_id`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdLookup {
    /// Owned by the person with this id and UUID.
    Person(i64, Uuid),
    /// No person owns it; `blocked` if a deletion blocked it.
    Absent {
        /// Blocked by a deletion (until reset).
        blocked: bool,
    },
}

/// Counts of what [`MetaTx::delete_project`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProjectRemoval {
    /// Persons.
    pub persons: u64,
    /// Distinct ids.
    pub distinct_ids: u64,
    /// Deletion records.
    pub deletions: u64,
    /// Activity entries.
    pub activity: u64,
}

/// A cohort: a static list of persons, or a definition (`filters`)
/// evaluated whenever it is read.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortRow {
    /// Id (increasing).
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// A list of persons (true) or a definition.
    pub is_static: bool,
    /// The definition of a dynamic cohort (`null` for a static one).
    pub filters: Value,
    /// When it was made, µs.
    pub created_at_us: i64,
    /// Soft-deleted (hidden, kept).
    pub deleted: bool,
}

/// Primitive reads and writes inside one transaction.
pub trait MetaTx {
    /// A project by id.
    fn project(&mut self, id: i64) -> Result<Option<Project>>;
    /// A project by capture token.
    fn project_by_token(&mut self, token: &str) -> Result<Option<Project>>;
    /// All projects, by id.
    fn projects(&mut self) -> Result<Vec<Project>>;
    /// Insert a project.
    fn insert_project(&mut self, p: &Project) -> Result<()>;
    /// Change a project's name and settings.
    fn update_project(&mut self, p: &Project) -> Result<()>;
    /// The largest project id used (0 if none).
    fn max_project_id(&mut self) -> Result<i64>;
    /// The highest id of a dropped project (0 if none was dropped).
    fn max_dropped_project_id(&mut self) -> Result<i64>;
    /// Store a key (only its hash); returns its id.
    fn insert_api_key(&mut self, k: &ApiKey, hash: &[u8; 32]) -> Result<i64>;
    /// The key with this hash, and the stored hash (for a constant-time
    /// comparison).
    fn api_key_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<(ApiKey, Vec<u8>)>>;
    /// A project's keys, revoked ones included.
    fn api_keys(&mut self, project: i64) -> Result<Vec<ApiKey>>;
    /// Revoke a key; false if no live key of the project has that id.
    fn revoke_api_key(&mut self, project: i64, id: i64, now_us: i64) -> Result<bool>;
    /// Record a key's use.
    fn touch_api_key(&mut self, id: i64, now_us: i64) -> Result<()>;
    /// Remove a project and everything of it.
    fn delete_project(&mut self, id: i64) -> Result<ProjectRemoval>;

    /// The person owning `distinct_id`.
    fn person_by_distinct_id(
        &mut self,
        project: i64,
        distinct_id: &str,
    ) -> Result<Option<PersonRow>>;
    /// The (id, UUID) of the person owning `distinct_id` (without its
    /// properties), or whether it is blocked: the capture path's one read
    /// per new distinct id.
    fn lookup_distinct_id(&mut self, project: i64, distinct_id: &str) -> Result<IdLookup>;
    /// A person by integer id.
    fn person_by_id(&mut self, project: i64, id: i64) -> Result<Option<PersonRow>>;
    /// A person by UUID.
    fn person_by_uuid(&mut self, project: i64, uuid: &Uuid) -> Result<Option<PersonRow>>;
    /// True if a live person, a deletion record or a person override holds `uuid`.
    fn uuid_taken(&mut self, project: i64, uuid: &Uuid) -> Result<bool>;
    /// Insert a person; returns it with its id.
    fn insert_person(&mut self, p: &NewPerson) -> Result<PersonRow>;
    /// Write a person's properties, created_at, is_identified and version.
    fn update_person(&mut self, p: &PersonRow) -> Result<()>;
    /// Remove a person and its distinct ids.
    fn delete_person(&mut self, project: i64, id: i64) -> Result<()>;
    /// A person's distinct ids, oldest first.
    fn distinct_ids(&mut self, project: i64, person_id: i64) -> Result<Vec<String>>;
    /// Attach `distinct_id` (new) to a person.
    fn add_distinct_id(&mut self, project: i64, distinct_id: &str, person_id: i64) -> Result<()>;
    /// Move an existing distinct id to another person.
    fn move_distinct_id(&mut self, project: i64, distinct_id: &str, person_id: i64) -> Result<()>;
    /// Move all distinct ids of `from` to `to`.
    fn move_all_distinct_ids(&mut self, project: i64, from: i64, to: i64) -> Result<()>;
    /// Detach a distinct id from its person; true if it was attached.
    fn remove_distinct_id(&mut self, project: i64, distinct_id: &str) -> Result<bool>;
    /// Persons matching `filter`, newest first (created_at, then id).
    fn list_persons(&mut self, project: i64, filter: &PersonFilter) -> Result<Vec<PersonRow>>;
    /// Every person of a project (or of all projects) in id order, one at
    /// a time: an error from `f` stops the read and is returned (the query
    /// tables stop at their memory limit this way).
    fn each_person(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(PersonRow) -> Result<()>,
    ) -> Result<()>;
    /// Every person of a project (or of all projects), in id order.
    fn all_persons(&mut self, project: Option<i64>) -> Result<Vec<PersonRow>> {
        let mut all = Vec::new();
        self.each_person(project, &mut |r| {
            all.push(r);
            Ok(())
        })?;
        Ok(all)
    }
    /// [`MetaTx::each_person`], each person as its stored text
    /// ([`PersonText`]).
    fn each_person_text(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(PersonText<'_>) -> Result<()>,
    ) -> Result<()>;
    /// Every (project, distinct id, person UUID), one at a time, as
    /// [`MetaTx::each_person`].
    fn each_distinct_id(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(i64, String, Uuid) -> Result<()>,
    ) -> Result<()>;
    /// Every (project, distinct id, person UUID).
    fn all_distinct_ids(&mut self, project: Option<i64>) -> Result<Vec<(i64, String, Uuid)>> {
        let mut all = Vec::new();
        self.each_distinct_id(project, &mut |p, d, u| {
            all.push((p, d, u));
            Ok(())
        })?;
        Ok(all)
    }

    /// Block a deleted person's distinct id (only its keyed hash is kept).
    fn block(
        &mut self,
        project: i64,
        distinct_id: &str,
        deletion_id: i64,
        now_us: i64,
    ) -> Result<()>;
    /// Block a distinct id known only by its keyed hash (the first 16
    /// bytes of the hash the store keeps for a verified deletion, when the
    /// database shares the store's key).
    fn block_hash(
        &mut self,
        project: i64,
        hash: &[u8; 16],
        deletion_id: i64,
        now_us: i64,
    ) -> Result<()>;
    /// Lift a block; true if there was one.
    fn unblock(&mut self, project: i64, distinct_id: &str) -> Result<bool>;

    /// The project's [`crate::deleted::DeletionStamp`]: it changes whenever
    /// its deletion records or blocked ids do.
    fn deletion_stamp(&mut self, project: i64) -> Result<crate::deleted::DeletionStamp>;
    /// Their UUIDs, one per deletion record.
    fn deleted_person_uuids(&mut self, project: i64) -> Result<Vec<Uuid>>;
    /// The project's blocked ids ([`crate::ids::BlockedIds`]).
    fn blocked_ids(&mut self, project: i64) -> Result<crate::ids::BlockedIds>;

    /// Record that a reset or a split detached `distinct_id` from
    /// `person` when the store's acknowledged `_seq` was `cutoff_seq`: its
    /// rows below it are that person's, which the person's deletion
    /// deletes. With `person` the nil UUID (a reset lifting a deletion's
    /// block), a boundary of no one's: the id's hash only, no text.
    fn insert_detached(
        &mut self,
        project: i64,
        person: &Uuid,
        distinct_id: &str,
        cutoff_seq: u64,
        now_us: i64,
    ) -> Result<()>;
    /// The ids detached from any of `persons`, with their cut-offs.
    fn detached(&mut self, project: i64, persons: &[Uuid]) -> Result<Vec<(String, u64)>>;
    /// When `persons` are deleted: their records of detached ids become
    /// boundaries of no one's (holder the nil UUID, the id's text erased,
    /// its hash and cut-off kept), so the rows below each stay no one's
    /// and no later holder of the id takes them.
    fn erase_detached(&mut self, project: i64, persons: &[Uuid]) -> Result<()>;
    /// Every record of `ids` detached from any person: (id, person,
    /// cut-off), in the order they were made. The id's rows below a
    /// cut-off and at or above the one before are that person's (a
    /// deletion's floor).
    fn detached_holders(
        &mut self,
        project: i64,
        ids: &[String],
    ) -> Result<Vec<(String, Uuid, u64)>>;
    /// The persons merged into `person`, transitively.
    fn merged_into(&mut self, project: i64, person: &Uuid) -> Result<Vec<Uuid>>;

    /// Record that `old` was merged into `new` (events stamped `old` belong to `new`).
    fn insert_override(&mut self, project: i64, old: &Uuid, new: &Uuid, now_us: i64) -> Result<()>;
    /// Overrides `(project, old, new)` of a project (or of all), one at a
    /// time, as [`MetaTx::each_person`].
    fn each_override(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(i64, Uuid, Uuid) -> Result<()>,
    ) -> Result<()>;
    /// Overrides `(project, old, new)` of a project (or of all).
    fn overrides(&mut self, project: Option<i64>) -> Result<Vec<(i64, Uuid, Uuid)>> {
        let mut all = Vec::new();
        self.each_override(project, &mut |p, o, n| {
            all.push((p, o, n));
            Ok(())
        })?;
        Ok(all)
    }
    /// Record a deletion; returns its id.
    fn insert_deletion(&mut self, d: &DeletionRecord) -> Result<i64>;
    /// Deletion records, newest first, optionally of one person.
    fn deletions(&mut self, project: i64, person: Option<&Uuid>) -> Result<Vec<DeletionRecord>>;

    /// Append an activity entry.
    fn insert_activity(
        &mut self,
        project: i64,
        person: Option<&Uuid>,
        activity: &str,
        detail: Option<&Value>,
        now_us: i64,
    ) -> Result<()>;
    /// Drop the details of a person's entries (on erasure).
    fn scrub_activity(&mut self, project: i64, person: &Uuid) -> Result<()>;
    /// Activity entries, newest first, optionally of one person: `limit`
    /// of them after skipping `offset` (only those are read).
    fn activity(
        &mut self,
        project: i64,
        person: Option<&Uuid>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Activity>>;

    /// Store a new cohort (its `id` is ignored); returns its id.
    fn insert_cohort(&mut self, c: &CohortRow) -> Result<i64>;
    /// Write a cohort's name, description, filters and deleted flag.
    fn update_cohort(&mut self, c: &CohortRow) -> Result<()>;
    /// A cohort of a project.
    fn cohort(&mut self, project: i64, id: i64) -> Result<Option<CohortRow>>;
    /// A project's cohorts, by id (soft-deleted ones included).
    fn cohorts(&mut self, project: i64) -> Result<Vec<CohortRow>>;
    /// Remove a cohort and its list; false if the project has no such
    /// cohort.
    fn delete_cohort(&mut self, project: i64, id: i64) -> Result<bool>;
    /// Put persons (integer ids) on a static cohort's list; returns how
    /// many were not on it yet.
    fn add_cohort_people(&mut self, cohort: i64, person_ids: &[i64]) -> Result<u64>;
    /// Take persons off a static cohort's list; returns how many were on it.
    fn remove_cohort_people(&mut self, cohort: i64, person_ids: &[i64]) -> Result<u64>;
    /// The UUIDs of the persons on a static cohort's list, sorted.
    fn cohort_people(&mut self, cohort: i64) -> Result<Vec<Uuid>>;
    /// The static cohorts whose list holds a person (integer id).
    fn static_cohorts_of(&mut self, person_id: i64) -> Result<Vec<i64>>;
    /// Move the static cohort memberships of `from` to `to` (a merge).
    fn move_cohort_people(&mut self, from: i64, to: i64) -> Result<()>;

    /// Record an operation begun in `project` (see [`Unfinished`]).
    fn begin_unfinished(&mut self, project: i64, op: &Unfinished, now_us: i64) -> Result<()>;
    /// The operations begun and not finished, oldest first: (id, project,
    /// operation).
    fn unfinished(&mut self) -> Result<Vec<(i64, i64, Unfinished)>>;
    /// The unfinished operations of `person` in `project`.
    fn unfinished_of(&mut self, project: i64, person: &Uuid)
        -> Result<Vec<(i64, i64, Unfinished)>>;
    /// Forget unfinished operations by id.
    fn forget_unfinished(&mut self, ids: &[i64]) -> Result<()>;
    /// Forget the unfinished deletions of `person` that a deletion of
    /// `scope` covers ([`DeletionScope::covers`]): that deletion is
    /// committing.
    fn finish_person_deletion(
        &mut self,
        project: i64,
        person: &Uuid,
        scope: &DeletionScope,
    ) -> Result<()>;

    /// Record the token of a two-phase capture (the store holds its events
    /// as a pending ingest under the same token; see `Persons::open`).
    fn insert_ingest_token(&mut self, token: &str, now_us: i64) -> Result<()>;
    /// Whether a capture token was recorded.
    fn has_ingest_token(&mut self, token: &str) -> Result<bool>;
    /// Forget every recorded token not in `keep` (resolved in the store).
    fn retain_ingest_tokens(&mut self, keep: &[String]) -> Result<()>;
}

/// A metadata database.
pub trait MetaStore: Send + Sync + 'static {
    /// Run `f` in a write transaction, committed if it returns `Ok`.
    fn write<R>(&self, f: impl FnOnce(&mut dyn MetaTx) -> Result<R>) -> Result<R>;
    /// Run `f` in a read transaction (one consistent view).
    fn read<R>(&self, f: impl FnOnce(&mut dyn MetaTx) -> Result<R>) -> Result<R>;
    /// Make rows deleted so far unrecoverable from the database's files.
    fn scrub(&self) -> Result<()>;
}
