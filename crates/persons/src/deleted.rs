//! What the analytics read of a project's deleted persons: their UUIDs and
//! blocked ids ([`DeletedActors`]), which leave a deleted person's kept
//! events out of the personless actors. Read once per project and kept
//! ([`DeletedCache`]) until the project's [`DeletionStamp`] changes, so a
//! request reads one version however many persons were deleted.
//!
//! Invariants:
//!
//! - a [`DeletedActors`] is one transaction's view: its stamp, UUIDs and
//!   blocked ids are read together;
//! - the stamp is a per-project version that triggers on the deletion
//!   records and the blocked ids bump on every write (schema migration 6):
//!   no write path, in this process or another, can change either without
//!   changing it, so an entry whose stamp equals the current one is
//!   current;
//! - only [`DeletionStamp::Version`] entries are kept (a database opened
//!   read-only before migration 6 is counted, which misses a reset);
//! - the cache holds at most [`DeletedCache::MAX_PROJECTS`] projects and
//!   [`DeletedCache::MAX_IDS`] UUIDs and ids in all: a project with more is
//!   read per request, as it was before the cache.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::ids::BlockedIds;

/// Which state of a project's deletion records and blocked ids a
/// [`DeletedActors`] was read at: equal stamps, equal contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionStamp {
    /// The version the triggers keep (0: never written).
    Version(u64),
    /// The number of deletion records, on a database without versions.
    Count(u64),
}

/// A project's deleted persons as the analytics need them: the UUIDs of
/// persons deleted without keeping the profile (the events they kept carry
/// them), and their blocked ids (events sent before an id joined the
/// person carry another UUID).
#[derive(Debug)]
pub struct DeletedActors {
    pub(crate) stamp: DeletionStamp,
    pub(crate) uuids: HashSet<Uuid>,
    pub(crate) blocked: Arc<BlockedIds>,
}

impl DeletedActors {
    /// The state this was read at.
    pub fn stamp(&self) -> DeletionStamp {
        self.stamp
    }

    /// Whether `uuid` (as text, any form the `uuid` crate parses) is a
    /// deleted person's. Text that is no UUID is no one's.
    pub fn is_deleted(&self, uuid: &str) -> bool {
        !self.uuids.is_empty() && Uuid::try_parse(uuid).is_ok_and(|u| self.uuids.contains(&u))
    }

    /// How many deleted persons there are.
    pub fn deleted_count(&self) -> usize {
        self.uuids.len()
    }

    /// The project's blocked ids.
    pub fn blocked(&self) -> &Arc<BlockedIds> {
        &self.blocked
    }

    /// UUIDs and blocked ids held, the measure of [`DeletedCache::MAX_IDS`].
    fn size(&self) -> usize {
        self.uuids.len() + self.blocked.len()
    }
}

/// The last [`DeletedActors`] read of each recently asked project, with
/// the tick of its last use (the least recently used goes first).
#[derive(Debug, Default)]
pub(crate) struct DeletedCache {
    entries: HashMap<i64, (u64, Arc<DeletedActors>)>,
    tick: u64,
    size: usize,
}

impl DeletedCache {
    /// Most projects kept.
    pub const MAX_PROJECTS: usize = 256;
    /// Most UUIDs and blocked ids kept, over all projects (about 40 bytes
    /// each with the sets' overhead: some 40 MB).
    pub const MAX_IDS: usize = 1 << 20;

    /// The entry of `project` if it was read at `stamp`.
    pub(crate) fn get(&mut self, project: i64, stamp: DeletionStamp) -> Option<Arc<DeletedActors>> {
        self.tick += 1;
        let tick = self.tick;
        let (used, d) = self.entries.get_mut(&project)?;
        if d.stamp != stamp {
            return None;
        }
        *used = tick;
        Some(Arc::clone(d))
    }

    /// Keep `d` as `project`'s entry, evicting the least recently used
    /// entries to stay within the bounds.
    pub(crate) fn put(&mut self, project: i64, d: &Arc<DeletedActors>) {
        // Two requests that missed together finish in either order: the
        // one that read the older state does not replace the newer.
        if let (Some((_, old)), DeletionStamp::Version(new)) = (self.entries.get(&project), d.stamp)
        {
            if matches!(old.stamp, DeletionStamp::Version(v) if v > new) {
                return;
            }
        }
        if let Some((_, old)) = self.entries.remove(&project) {
            self.size -= old.size();
        }
        if !matches!(d.stamp, DeletionStamp::Version(_)) || d.size() > Self::MAX_IDS {
            return;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= Self::MAX_PROJECTS || self.size + d.size() > Self::MAX_IDS)
        {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, (used, _))| *used) else {
                break;
            };
            if let Some((_, old)) = self.entries.remove(&oldest) {
                self.size -= old.size();
            }
        }
        self.tick += 1;
        self.size += d.size();
        self.entries.insert(project, (self.tick, Arc::clone(d)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actors(stamp: DeletionStamp, n: usize) -> Arc<DeletedActors> {
        Arc::new(DeletedActors {
            stamp,
            uuids: (0..n as u128).map(Uuid::from_u128).collect(),
            blocked: Arc::new(BlockedIds::new([0; 32], 1, Vec::new())),
        })
    }

    #[test]
    fn an_entry_serves_only_its_own_stamp() {
        let mut c = DeletedCache::default();
        c.put(1, &actors(DeletionStamp::Version(3), 2));
        assert!(c.get(1, DeletionStamp::Version(3)).is_some());
        assert!(c.get(1, DeletionStamp::Version(4)).is_none());
        assert!(c.get(2, DeletionStamp::Version(3)).is_none());
        // Counts are never kept: a count misses a reset.
        c.put(3, &actors(DeletionStamp::Count(0), 0));
        assert!(c.get(3, DeletionStamp::Count(0)).is_none());
    }

    #[test]
    fn the_bounds_evict_the_least_recently_used() {
        let mut c = DeletedCache::default();
        let half = DeletedCache::MAX_IDS / 2;
        c.put(1, &actors(DeletionStamp::Version(1), half));
        c.put(2, &actors(DeletionStamp::Version(1), half));
        assert!(c.get(1, DeletionStamp::Version(1)).is_some());
        // Project 2 is the least recently used: it makes room for 3.
        c.put(3, &actors(DeletionStamp::Version(1), 1));
        assert!(c.get(2, DeletionStamp::Version(1)).is_none());
        assert!(c.get(1, DeletionStamp::Version(1)).is_some());
        assert!(c.get(3, DeletionStamp::Version(1)).is_some());
        assert_eq!(c.size, half + 1);
        // Too large to keep at all; what was kept stays.
        c.put(
            4,
            &actors(DeletionStamp::Version(1), DeletedCache::MAX_IDS + 1),
        );
        assert!(c.get(4, DeletionStamp::Version(1)).is_none());
        assert_eq!(c.entries.len(), 2);
        // A replaced entry gives its room back.
        c.put(1, &actors(DeletionStamp::Version(2), 1));
        assert_eq!(c.size, 2);
        // An older read does not replace a newer one.
        c.put(1, &actors(DeletionStamp::Version(1), 1));
        assert!(c.get(1, DeletionStamp::Version(2)).is_some());
        for p in 10..10 + DeletedCache::MAX_PROJECTS as i64 {
            c.put(p, &actors(DeletionStamp::Version(1), 0));
        }
        assert_eq!(c.entries.len(), DeletedCache::MAX_PROJECTS);
    }

    #[test]
    fn text_that_is_no_uuid_is_no_ones() {
        let d = actors(DeletionStamp::Version(1), 2);
        assert!(d.is_deleted(&Uuid::from_u128(1).hyphenated().to_string()));
        assert!(d.is_deleted(&Uuid::from_u128(1).simple().to_string()));
        assert!(!d.is_deleted(&Uuid::from_u128(7).hyphenated().to_string()));
        assert!(!d.is_deleted("not a uuid"));
    }
}
