//! Identity resolution of one capture batch, inside one metadata
//! transaction: which person each event belongs to, which persons are
//! created, merged or changed.
//!
//! Rules (PostHog's, see docs/persons.md):
//! - a new distinct id creates a person with a UUID derived from
//!   (project, distinct id) (an alternative derivation if a deleted or
//!   split-off person already used it);
//! - `$identify` (with `$anon_distinct_id`), `$create_alias` and
//!   `$merge_dangerously` (with `alias`) merge the other id's person into
//!   the event's: properties merged with the event's person winning,
//!   `created_at` the earlier, the other person removed, the result
//!   identified. An identified person is merged away only by
//!   `$merge_dangerously`. Illegal ids never merge;
//! - then `$set_once`, `$set`, `$unset` apply to the event's person;
//! - personless events (`$process_person_profile: false`) create and
//!   change nothing; they carry the existing person's UUID, or the one the
//!   id would get;
//! - a blocked id (its person was deleted and it was not reset) gets no
//!   person: its events are stored with no `person_id`, and never merge.
//!
//! Persons a batch changes are read once and written once at the end
//! ([`Resolver::finish`]); merges write through at once. Events of known
//! persons that change nothing need only the (person id, UUID) of their
//! distinct id, which [`IdCache`] keeps across batches.
//!
//! The maps keyed by distinct ids (client-chosen text) hash with aHash
//! keyed from the OS's random source once per process (`runtime-rng`, the
//! feature arrow already builds it with): as resistant to chosen
//! collisions as std's SipHash for this use, and about twice as fast on
//! short ids, which capture hashes several times per event.

use std::collections::HashMap;

use serde_json::{json, Map};
use uuid::Uuid;

use crate::capture::CaptureEvent;
use crate::error::{PersonsError, Result};
use crate::ids::{
    is_illegal_for_merge, person_uuid, person_uuid_alternative, validate_distinct_id,
};
use crate::meta::{MetaTx, NewPerson, PersonRow};
use crate::props::merge_properties;

/// What a capture did to identities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Events appended.
    pub events: u64,
    /// Persons created.
    pub persons_created: u64,
    /// Persons whose properties or flags changed.
    pub persons_updated: u64,
    /// Persons merged into another.
    pub merges: u64,
    /// Merges refused: the other person was already identified.
    pub merges_refused: u64,
    /// Merges skipped: an illegal or blocked id.
    pub merges_illegal: u64,
    /// Personless events.
    pub personless: u64,
    /// Events dropped, not stored: a personless `$identify`,
    /// `$create_alias`, `$merge_dangerously` or `$groupidentify`
    /// ([`crate::CaptureEvent::is_dropped_when_personless`]).
    pub dropped_personless: u64,
    /// Events of blocked (deleted, not reset) distinct ids.
    pub blocked: u64,
    /// Property updates not applied: the person's properties would have
    /// passed [`crate::props::MAX_PERSON_PROPERTIES_BYTES`] (the event
    /// itself is stored).
    pub properties_too_large: u64,
}

/// Distinct id → its person (id, UUID), or no person (blocked or not), as
/// last committed, kept across batches so that an event of a known person
/// (or a personless or blocked id seen before) needs no metadata read.
/// Guarded by the pipeline lock; a batch's discoveries are added only
/// after its transaction commits, and every operation that moves, removes
/// or unblocks a distinct id (a merge, a deletion, a reset, a split, a
/// project drop) clears it. Persons are only created by capture, which
/// records what it creates, so a cached "no person" stays true until then.
#[derive(Debug, Default)]
pub(crate) struct IdCache {
    map: HashMap<i64, IdMap<String, Known>>,
    len: usize,
}

/// What the cache knows of a distinct id.
use crate::meta::IdLookup as Known;

/// A map keyed by distinct ids (or keyed per batch): aHash with
/// per-process random keys (see the module docs).
type IdMap<K, V> = HashMap<K, V, ahash::RandomState>;

impl IdCache {
    /// Entries kept before the cache starts over.
    const CAP: usize = 1 << 20;

    fn get(&self, project: i64, did: &str) -> Option<Known> {
        self.map.get(&project)?.get(did).copied()
    }

    /// Forget everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }

    /// Add what a committed batch learned (or forget all, if it merged).
    pub(crate) fn apply(&mut self, project: i64, learned: Learned) {
        if learned.invalidate {
            self.clear();
            return;
        }
        if self.len + learned.ids.len() > Self::CAP {
            self.clear();
        }
        let m = self.map.entry(project).or_default();
        for (did, r) in learned.ids {
            if m.insert(did, r).is_none() {
                self.len += 1;
            }
        }
    }
}

impl std::ops::AddAssign for CaptureStats {
    fn add_assign(&mut self, o: CaptureStats) {
        self.events += o.events;
        self.persons_created += o.persons_created;
        self.persons_updated += o.persons_updated;
        self.merges += o.merges;
        self.merges_refused += o.merges_refused;
        self.merges_illegal += o.merges_illegal;
        self.personless += o.personless;
        self.dropped_personless += o.dropped_personless;
        self.blocked += o.blocked;
        self.properties_too_large += o.properties_too_large;
    }
}

/// The caches a batch may consult: the process-wide one (`base`, of
/// committed batches) and, inside a transaction spanning several batches,
/// what the earlier batches of that transaction learned (`overlay`).
/// `base_stale`: an earlier batch of the transaction merged persons, so
/// `base` may be wrong until the transaction commits.
#[derive(Clone, Copy)]
pub(crate) struct CacheView<'c> {
    pub base: &'c IdCache,
    pub overlay: Option<&'c IdCache>,
    pub base_stale: bool,
}

impl<'c> CacheView<'c> {
    /// Only the committed cache.
    pub(crate) fn committed(base: &'c IdCache) -> CacheView<'c> {
        CacheView {
            base,
            overlay: None,
            base_stale: false,
        }
    }

    fn get(&self, project: i64, did: &str) -> Option<Known> {
        if let Some(k) = self.overlay.and_then(|o| o.get(project, did)) {
            return Some(k);
        }
        if self.base_stale {
            return None;
        }
        self.base.get(project, did)
    }
}

/// What a batch learned about distinct ids, for [`IdCache::apply`].
#[derive(Debug, Default)]
pub(crate) struct Learned {
    ids: Vec<(String, Known)>,
    invalidate: bool,
}

impl Learned {
    /// Whether the batch merged persons (every cached id may be stale).
    pub(crate) fn invalidates(&self) -> bool {
        self.invalidate
    }

    /// Append what a later batch learned.
    pub(crate) fn extend(&mut self, later: Learned) {
        self.invalidate |= later.invalidate;
        self.ids.extend(later.ids);
    }

    /// A copy (for the overlay of a multi-batch transaction).
    pub(crate) fn copy(&self) -> Learned {
        Learned {
            ids: self.ids.clone(),
            invalidate: self.invalidate,
        }
    }
}

struct Cached {
    row: PersonRow,
    dirty: bool,
}

impl Cached {
    /// Apply `ops` unless the properties would then pass
    /// [`crate::props::MAX_PERSON_PROPERTIES_BYTES`] and grow (`None`:
    /// not applied); `Some(changed)` otherwise. The length after is
    /// computed from the keys the operations touch, against the length
    /// the row carries (`properties_len`, as stored, kept exact here): no
    /// copy of the properties, and no measure of all of them, per event.
    fn apply_bounded(&mut self, ops: &crate::props::PropertyOps) -> Option<bool> {
        use crate::props::MAX_PERSON_PROPERTIES_BYTES as MAX;
        let now = self.row.properties_len;
        let after = ops.len_after(&self.row.properties, now);
        if after > MAX && after > now {
            return None;
        }
        let changed = ops.apply(&mut self.row.properties);
        self.row.properties_len = after;
        Some(changed)
    }
}

/// What a batch knows of one of its distinct ids.
#[derive(Debug, Clone, Copy)]
struct IdState {
    /// Its person, as of this batch.
    person: Option<i64>,
    /// Blocked (its person was deleted and it was not reset).
    blocked: bool,
}

/// Resolves identities of one batch (see the module docs). Every distinct
/// id it handles is borrowed from the batch's events (`'e`): the per-batch
/// maps copy no id text.
pub(crate) struct Resolver<'t, 'e> {
    tx: &'t mut dyn MetaTx,
    cache: CacheView<'t>,
    project: i64,
    now_us: i64,
    /// Distinct ids seen in this batch.
    ids: IdMap<&'e str, IdState>,
    uuids: IdMap<i64, Uuid>,
    /// Full rows of the persons this batch changes.
    rows: IdMap<i64, Cached>,
    learned: Learned,
    /// UUIDs stamped on personless events of ids with no person.
    personless: IdMap<&'e str, Uuid>,
    /// A merge moved ids the cache may hold: read the metadata instead.
    cache_stale: bool,
    /// Persons merged away in this batch, each to the person it went into
    /// (which may have been merged away since): [`Resolver::state`]
    /// follows them for the ids seen before the merge. (Rewriting every
    /// id seen at each merge made a batch of chained merges quadratic.)
    merged: IdMap<i64, i64>,
    pub(crate) stats: CaptureStats,
}

impl<'t, 'e> Resolver<'t, 'e> {
    pub(crate) fn new(
        tx: &'t mut dyn MetaTx,
        cache: CacheView<'t>,
        project: i64,
        now_us: i64,
    ) -> Resolver<'t, 'e> {
        Resolver {
            tx,
            cache,
            project,
            now_us,
            ids: IdMap::default(),
            uuids: IdMap::default(),
            rows: IdMap::default(),
            learned: Learned::default(),
            personless: IdMap::default(),
            cache_stale: false,
            merged: IdMap::default(),
            stats: CaptureStats::default(),
        }
    }

    /// Whether `ev` is dropped, not stored (counted).
    pub(crate) fn drops(&mut self, ev: &CaptureEvent) -> bool {
        let drop = ev.is_dropped_when_personless();
        self.stats.dropped_personless += u64::from(drop);
        drop
    }

    /// The person UUID to stamp on `ev` (`None` for blocked ids).
    pub(crate) fn resolve(&mut self, ev: &'e CaptureEvent) -> Result<Option<Uuid>> {
        let did = ev.distinct_id.as_str();
        let ts = ev.timestamp_us.unwrap_or(self.now_us);
        // One lookup of the id serves the common event (a known person,
        // no merge).
        let state = self.state(did)?;
        if state.blocked {
            self.stats.blocked += 1;
            return Ok(None);
        }
        if !ev.processes_person() {
            self.stats.personless += 1;
            return Ok(Some(match state.person {
                Some(pid) => self.uuid(pid)?,
                None => self.personless_uuid(did)?,
            }));
        }
        let pid = match (ev.merge_with(), state.person) {
            (Some((other, dangerous)), _) => self.merge(other, did, dangerous, ts)?,
            (None, Some(pid)) => pid,
            (None, None) => self.get_or_create(did, ts, false)?,
        };
        if !ev.ops.is_empty() && ev.updates_person_properties() {
            let c = self.row(pid)?;
            match c.apply_bounded(&ev.ops) {
                Some(true) => c.dirty = true,
                Some(false) => {}
                // Logged once per batch ([`Resolver::finish`]).
                None => self.stats.properties_too_large += 1,
            }
        }
        Ok(Some(self.uuid(pid)?))
    }

    /// The UUID a person created for `did` now would get (see [`free_uuid`]),
    /// once per batch.
    fn personless_uuid(&mut self, did: &'e str) -> Result<Uuid> {
        if let Some(u) = self.personless.get(did) {
            return Ok(*u);
        }
        let u = free_uuid(self.tx, self.project, did)?;
        self.personless.insert(did, u);
        Ok(u)
    }

    /// Write the changed persons; returns the stats and what the batch
    /// learned (to apply to the cache once the transaction commits).
    pub(crate) fn finish(mut self) -> Result<(CaptureStats, Learned)> {
        if self.stats.dropped_personless > 0 {
            tracing::warn!(
                project = self.project,
                events = self.stats.dropped_personless,
                "personless $identify, $create_alias, $merge_dangerously or $groupidentify events dropped (invalid_event_when_process_person_profile_is_false)"
            );
        }
        if self.stats.properties_too_large > 0 {
            tracing::warn!(
                project = self.project,
                events = self.stats.properties_too_large,
                "person properties would pass {} bytes: these events' updates are not applied",
                crate::props::MAX_PERSON_PROPERTIES_BYTES
            );
        }
        let mut dirty: Vec<&mut Cached> = self.rows.values_mut().filter(|c| c.dirty).collect();
        dirty.sort_by_key(|c| c.row.id);
        for c in dirty {
            c.row.version += 1;
            self.tx.update_person(&c.row)?;
            self.stats.persons_updated += 1;
        }
        Ok((self.stats, self.learned))
    }

    fn uuid(&self, pid: i64) -> Result<Uuid> {
        self.uuids.get(&pid).copied().ok_or_else(|| {
            PersonsError::Internal(format!("person {pid} resolved without its UUID"))
        })
    }

    /// The full row of a person, read once per batch.
    fn row(&mut self, pid: i64) -> Result<&mut Cached> {
        if !self.rows.contains_key(&pid) {
            let row = self.tx.person_by_id(self.project, pid)?.ok_or_else(|| {
                PersonsError::Internal(format!("person {pid} resolved but not in the metadata"))
            })?;
            self.rows.insert(pid, Cached { row, dirty: false });
        }
        self.rows
            .get_mut(&pid)
            .ok_or_else(|| PersonsError::Internal(format!("person {pid} not cached")))
    }

    fn is_blocked(&mut self, did: &'e str) -> Result<bool> {
        Ok(self.state(did)?.blocked)
    }

    fn person_of(&mut self, did: &'e str) -> Result<Option<i64>> {
        Ok(self.state(did)?.person)
    }

    /// What this batch knows of `did`: from its own earlier events, the
    /// committed cache, or the metadata (read once per batch).
    fn state(&mut self, did: &'e str) -> Result<IdState> {
        if let Some(&s) = self.ids.get(did) {
            return Ok(match s.person {
                Some(p) if self.merged.contains_key(&p) => {
                    let now = IdState {
                        person: Some(self.merged_into(p)),
                        ..s
                    };
                    self.ids.insert(did, now);
                    now
                }
                _ => s,
            });
        }
        let cached = if self.cache_stale {
            None
        } else {
            self.cache.get(self.project, did)
        };
        let known = match cached {
            Some(k) => k,
            None => {
                let k = self.tx.lookup_distinct_id(self.project, did)?;
                self.learned.ids.push((did.to_string(), k));
                k
            }
        };
        // An id with a person is not blocked (blocks are only written
        // when the person and its ids go).
        let state = match known {
            Known::Person(pid, uuid) => {
                self.uuids.insert(pid, uuid);
                IdState {
                    person: Some(pid),
                    blocked: false,
                }
            }
            Known::Absent { blocked } => IdState {
                person: None,
                blocked,
            },
        };
        self.ids.insert(did, state);
        Ok(state)
    }

    /// The person `pid` is now: itself, or where the merges of this batch
    /// took it. Every person on the way is pointed straight at it. (A merge
    /// goes into a live person, so the chain ends; it is bounded anyway.)
    fn merged_into(&mut self, pid: i64) -> i64 {
        let mut last = pid;
        for _ in 0..=self.merged.len() {
            match self.merged.get(&last) {
                Some(&next) => last = next,
                None => break,
            }
        }
        let mut p = pid;
        while p != last {
            match self.merged.insert(p, last) {
                Some(next) => p = next,
                None => break,
            }
        }
        last
    }

    fn get_or_create(&mut self, did: &'e str, ts: i64, identified: bool) -> Result<i64> {
        let state = self.state(did)?;
        if let Some(pid) = state.person {
            return Ok(pid);
        }
        let uuid = free_uuid(self.tx, self.project, did)?;
        let row = self.tx.insert_person(&NewPerson {
            project_id: self.project,
            uuid,
            properties: Map::new(),
            created_at_us: ts,
            is_identified: identified,
        })?;
        self.tx.add_distinct_id(self.project, did, row.id)?;
        let id = row.id;
        self.rows.insert(id, Cached { row, dirty: false });
        self.uuids.insert(id, uuid);
        self.ids.insert(
            did,
            IdState {
                person: Some(id),
                ..state
            },
        );
        self.learned
            .ids
            .push((did.to_string(), Known::Person(id, uuid)));
        self.stats.persons_created += 1;
        Ok(id)
    }

    fn identify(&mut self, pid: i64) -> Result<()> {
        let c = self.row(pid)?;
        if !c.row.is_identified {
            c.row.is_identified = true;
            c.dirty = true;
        }
        Ok(())
    }

    fn attach(&mut self, did: &'e str, pid: i64) -> Result<()> {
        self.tx.add_distinct_id(self.project, did, pid)?;
        self.ids.insert(
            did,
            IdState {
                person: Some(pid),
                blocked: false,
            },
        );
        let uuid = self.uuid(pid)?;
        self.learned
            .ids
            .push((did.to_string(), Known::Person(pid, uuid)));
        Ok(())
    }

    /// Merge `other`'s person into `target`'s; returns the event's person.
    fn merge(&mut self, other: &'e str, target: &'e str, dangerous: bool, ts: i64) -> Result<i64> {
        if other == target {
            return self.get_or_create(target, ts, false);
        }
        if is_illegal_for_merge(other)
            || validate_distinct_id(other).is_err()
            || is_illegal_for_merge(target)
            || self.is_blocked(other)?
        {
            self.stats.merges_illegal += 1;
            return self.get_or_create(target, ts, false);
        }
        let op = self.person_of(other)?;
        let tp = self.person_of(target)?;
        let pid = match (op, tp) {
            (Some(o), Some(t)) if o == t => t,
            (Some(o), None) => {
                self.attach(target, o)?;
                o
            }
            (None, Some(t)) => {
                self.attach(other, t)?;
                t
            }
            (None, None) => {
                let t = self.get_or_create(target, ts, true)?;
                self.attach(other, t)?;
                t
            }
            (Some(o), Some(t)) => {
                if self.row(o)?.row.is_identified && !dangerous {
                    // Refused, but the event still identifies its own
                    // person, as PostHog's merge service does (it marks
                    // the person identified before it looks at either).
                    self.stats.merges_refused += 1;
                    self.identify(t)?;
                    return Ok(t);
                }
                self.merge_persons(o, t)?;
                t
            }
        };
        self.identify(pid)?;
        Ok(pid)
    }

    fn merge_persons(&mut self, from: i64, into: i64) -> Result<()> {
        self.row(from)?;
        self.row(into)?;
        let gone = self
            .rows
            .remove(&from)
            .ok_or_else(|| PersonsError::Internal(format!("merged person {from} not cached")))?
            .row;
        let c = self.row(into)?;
        merge_properties(&mut c.row.properties, &gone.properties);
        // The merged-away keys count (a merge is rare: measured whole).
        c.row.properties_len = crate::props::json_len(&c.row.properties);
        c.row.created_at_us = c.row.created_at_us.min(gone.created_at_us);
        c.dirty = true;
        let into_uuid = c.row.uuid;
        self.tx.move_all_distinct_ids(self.project, from, into)?;
        self.tx.move_cohort_people(from, into)?;
        self.tx.delete_person(self.project, from)?;
        self.tx
            .insert_override(self.project, &gone.uuid, &into_uuid, self.now_us)?;
        self.tx.insert_activity(
            self.project,
            Some(&into_uuid),
            "merged",
            Some(&json!({ "merged_person_uuid": gone.uuid.to_string() })),
            self.now_us,
        )?;
        self.merged.insert(from, into);
        // Ids of `from` not yet seen in this batch may sit in the cache.
        self.cache_stale = true;
        self.learned.invalidate = true;
        self.stats.merges += 1;
        Ok(())
    }
}

/// The UUID for a new person of `did`: the deterministic one, or the first
/// alternative no live or deleted person used.
pub(crate) fn free_uuid(tx: &mut dyn MetaTx, project: i64, did: &str) -> Result<Uuid> {
    let first = person_uuid(project, did);
    if !tx.uuid_taken(project, &first)? {
        return Ok(first);
    }
    for n in 1..=1000 {
        let u = person_uuid_alternative(project, did, n);
        if !tx.uuid_taken(project, &u)? {
            return Ok(u);
        }
    }
    Err(PersonsError::Internal(format!(
        "no free person UUID for a distinct id after 1000 alternatives (project {project})"
    )))
}
