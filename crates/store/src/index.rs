//! The distinct-id index: where each distinct id's rows are in the parts.
//!
//! Resolving a deletion must not scan part data. Parts are sorted by
//! (`distinct_id`, `_seq`), so a distinct id occupies one run per part; the
//! index maps (table, project, distinct id) to its runs. It lives in memory
//! and is kept up to date by the commit path as parts are added (a bulk
//! ingest's writer stages its parts' runs in an index of their own, which
//! the commit merges: [`DistinctIdIndex::merge`]). A new
//! store starts with an empty index; opening a store with parts starts a
//! [`BackgroundBuild`] (reading each part's `.runs` file, or its
//! `distinct_id` and `_seq` columns, on all but one core). Until it is
//! taken, lookups read the parts' `.runs` files ([`runs_from_files`]); the
//! first lookup after the build takes it and catches up with the parts
//! committed meanwhile. Runs of parts that are no longer live are ignored
//! by lookups.
//!
//! Cost: memory grows with the number of (distinct id, part) runs (about
//! 107 MB for 1.95M runs at 10M events); `StoreOptions::in_memory_index`
//! off keeps none and reads `.runs` files for every lookup.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use crate::error::Result;
use crate::format::Manifest;
use crate::part::{read_postings, PartPostings};
use crate::schema::Table;
use crate::storage::Storage;

/// One run of a distinct id in one part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Posting {
    pub part_id: u64,
    pub start: u32,
    pub len: u32,
    pub min_seq: u64,
    pub max_seq: u64,
}

/// (table, project) -> distinct id -> runs.
#[derive(Debug, Default)]
pub(crate) struct DistinctIdIndex {
    map: HashMap<(Table, i64), HashMap<Box<str>, Vec<Posting>>>,
    /// Parts that left the manifest whose runs are still in `map`.
    dead: HashSet<u64>,
}

impl DistinctIdIndex {
    /// Build from every part of `manifest`, on every core (up to 8).
    pub fn build(storage: &Storage, manifest: &Manifest) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::build_until(storage, manifest, cores, &|| false)
    }

    /// [`DistinctIdIndex::build`] on `threads` threads (1 to 8), giving up
    /// with an error as soon as `cancelled` says so (checked before each
    /// part).
    pub fn build_until(
        storage: &Storage,
        manifest: &Manifest,
        threads: usize,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Self> {
        let parts = &manifest.parts;
        let threads = threads.clamp(1, 8);
        let chunk = parts.len().div_ceil(threads).max(1);
        let results: Vec<Result<Vec<(usize, PartPostings)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .chunks(chunk)
                .enumerate()
                .map(|(ci, ps)| {
                    s.spawn(move || {
                        ps.iter()
                            .enumerate()
                            .map(|(i, p)| {
                                if cancelled() {
                                    return Err(crate::error::StoreError::Internal(
                                        "index build cancelled: the store is closing".into(),
                                    ));
                                }
                                Ok((ci * chunk + i, read_postings(storage, p)?))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(crate::error::StoreError::Internal(
                            "index builder panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let mut idx = DistinctIdIndex::default();
        for r in results {
            for (i, postings) in r? {
                let p = &parts[i];
                idx.add(p.table, p.project_id, p.id, &postings);
            }
        }
        Ok(idx)
    }

    /// Add the runs of a new part.
    pub fn add(&mut self, table: Table, project: i64, part_id: u64, postings: &PartPostings) {
        let ids = self.map.entry((table, project)).or_default();
        for r in &postings.runs {
            let posting = Posting {
                part_id,
                start: r.start,
                len: r.len,
                min_seq: r.min_seq,
                max_seq: r.max_seq,
            };
            match ids.get_mut(r.distinct_id.as_str()) {
                Some(v) => v.push(posting),
                None => {
                    ids.insert(r.distinct_id.as_str().into(), vec![posting]);
                }
            }
        }
    }

    /// Add every run of `other` (runs of parts committed after this
    /// index's, as [`DistinctIdIndex::add`] of each of its parts in turn
    /// would). One map operation per distinct id, not per run; into an
    /// empty map, none.
    pub fn merge(&mut self, other: DistinctIdIndex) {
        for (key, theirs) in other.map {
            let ours = self.map.entry(key).or_default();
            if ours.is_empty() {
                *ours = theirs;
                continue;
            }
            for (id, runs) in theirs {
                match ours.get_mut(&id) {
                    Some(v) => v.extend(runs),
                    None => {
                        ours.insert(id, runs);
                    }
                }
            }
        }
        self.dead.extend(other.dead);
    }

    /// Forget parts that left the manifest. Their runs are dropped lazily,
    /// in one pass over the index once the dead parts reach a quarter of
    /// the live ones (so a compaction that replaces many parts one by one
    /// costs one pass, not one per part).
    pub fn retire_parts(&mut self, ids: impl IntoIterator<Item = u64>, live_parts: usize) {
        self.dead.extend(ids);
        if self.dead.len() > 16 && self.dead.len() * 4 >= live_parts {
            let dead = std::mem::take(&mut self.dead);
            for ids in self.map.values_mut() {
                ids.retain(|_, runs| {
                    runs.retain(|p| !dead.contains(&p.part_id));
                    !runs.is_empty()
                });
            }
            self.map.retain(|_, ids| !ids.is_empty());
        }
    }

    /// Runs of a distinct id (some may belong to parts no longer live).
    pub fn lookup(&self, table: Table, project: i64, distinct_id: &str) -> &[Posting] {
        self.map
            .get(&(table, project))
            .and_then(|ids| ids.get(distinct_id))
            .map_or(&[], |v| v.as_slice())
    }

    /// Number of keys (for status and tests).
    pub fn len(&self) -> usize {
        self.map.values().map(|ids| ids.len()).sum()
    }

    /// Approximate heap bytes held: per key its bytes, the box, the map
    /// slot and the runs' vector; per run a [`Posting`].
    pub fn approx_bytes(&self) -> usize {
        self.map
            .values()
            .flat_map(|ids| ids.iter())
            .map(|(k, v)| {
                k.len()
                    + std::mem::size_of::<(Box<str>, Vec<Posting>)>()
                    + 8
                    + v.capacity() * std::mem::size_of::<Posting>()
            })
            .sum()
    }
}

/// The runs of `ids` in the parts of `manifest` of `project` and
/// `tables`, read from the parts' `.runs` files: per part one read of
/// the head and one per block that may hold an id (none where the part's
/// filter rules every id out). `None` when a part has no `.runs` file
/// (written before they existed) or one fails its checks (logged): the
/// caller then uses the in-memory index.
pub(crate) fn runs_from_files(
    storage: &Storage,
    manifest: &Manifest,
    project: i64,
    ids: &[String],
    tables: &[Table],
) -> Option<Vec<Posting>> {
    let parts: Vec<_> = manifest
        .parts
        .iter()
        .filter(|p| p.project_id == project && tables.contains(&p.table))
        .collect();
    if parts.iter().any(|p| p.runs.is_none()) {
        return None;
    }
    let started = std::time::Instant::now();
    let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    for p in &parts {
        let runs = crate::runs_file::read_head(storage, p)
            .and_then(|head| crate::runs_file::lookup(storage, p, &head, &wanted));
        match runs {
            Ok(runs) => found.extend(runs.into_iter().map(|r| Posting {
                part_id: p.id,
                start: r.start,
                len: r.len,
                min_seq: r.min_seq,
                max_seq: r.max_seq,
            })),
            Err(e) => {
                tracing::warn!(path = %p.path, error = %e, "unusable .runs file: using the distinct-id index");
                return None;
            }
        }
    }
    tracing::debug!(
        parts = parts.len(),
        runs = found.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "found runs through .runs files"
    );
    Some(found)
}

/// The index being built in the background since open.
#[derive(Debug, Default)]
pub(crate) struct BackgroundBuild {
    slot: Mutex<BuildSlot>,
    done: Condvar,
    /// Set when the store closes: a running build stops at its next part.
    cancel: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
enum BuildSlot {
    /// No build was started (or its result was already taken).
    #[default]
    Idle,
    Running,
    /// The index, and the ids of the parts it covers.
    Built(DistinctIdIndex, HashSet<u64>),
}

impl BackgroundBuild {
    /// Mark a build as started; [`BackgroundBuild::wait`] now blocks until
    /// [`BackgroundBuild::finish`].
    pub fn start(&self) {
        if let Ok(mut s) = self.slot.lock() {
            *s = BuildSlot::Running;
        }
    }

    /// Stop a running build (the store is closing); it publishes a failure.
    pub fn cancel(&self) {
        self.cancel
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether [`BackgroundBuild::cancel`] was called.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wait until no build is running, leaving its result for
    /// [`BackgroundBuild::wait`]; true if a result is waiting.
    pub fn wait_done(&self) -> bool {
        let Ok(mut s) = self.slot.lock() else {
            return false;
        };
        while matches!(*s, BuildSlot::Running) {
            s = match self.done.wait(s) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
        matches!(*s, BuildSlot::Built(..))
    }

    /// Whether a build is running (its result not yet published).
    pub fn is_running(&self) -> bool {
        self.slot
            .lock()
            .is_ok_and(|s| matches!(*s, BuildSlot::Running))
    }

    /// Publish the result of the build (`None` if it failed).
    pub fn finish(&self, result: Option<(DistinctIdIndex, HashSet<u64>)>) {
        if let Ok(mut s) = self.slot.lock() {
            *s = match result {
                Some((idx, covered)) => BuildSlot::Built(idx, covered),
                None => BuildSlot::Idle,
            };
        }
        self.done.notify_all();
    }

    /// Wait for a running build and take its result; `None` if there was
    /// none or it failed.
    pub fn wait(&self) -> Option<(DistinctIdIndex, HashSet<u64>)> {
        let mut s = self.slot.lock().ok()?;
        while matches!(*s, BuildSlot::Running) {
            s = self.done.wait(s).ok()?;
        }
        match std::mem::take(&mut *s) {
            BuildSlot::Built(idx, covered) => Some((idx, covered)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::part::Run;

    fn postings(ids: &[(&str, u64)]) -> PartPostings {
        PartPostings {
            runs: ids
                .iter()
                .enumerate()
                .map(|(i, (id, seq))| Run {
                    distinct_id: id.to_string(),
                    start: i as u32,
                    len: 1,
                    min_seq: *seq,
                    max_seq: *seq,
                })
                .collect(),
        }
    }

    fn sorted(idx: &DistinctIdIndex) -> Vec<(Table, i64, String, Vec<Posting>)> {
        let mut out: Vec<_> = idx
            .map
            .iter()
            .flat_map(|((t, p), ids)| {
                ids.iter()
                    .map(move |(id, runs)| (*t, *p, id.to_string(), runs.clone()))
            })
            .collect();
        out.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        out
    }

    /// Merging an index of later parts gives what adding those parts one
    /// by one gives, runs in the same order, into an empty index or not.
    #[test]
    fn merge_is_adding_the_parts_in_turn() {
        let parts: Vec<(Table, i64, u64, PartPostings)> = vec![
            (Table::Events, 1, 10, postings(&[("a", 1), ("b", 2)])),
            (Table::Events, 2, 11, postings(&[("a", 3)])),
            (Table::Events, 1, 12, postings(&[("b", 4), ("c", 5)])),
            (Table::Events, 1, 13, postings(&[("a", 6), ("c", 7)])),
            (Table::Events, 3, 14, postings(&[("d", 8)])),
        ];
        for split in 0..=parts.len() {
            let mut one_by_one = DistinctIdIndex::default();
            for (t, p, id, ps) in &parts {
                one_by_one.add(*t, *p, *id, ps);
            }
            let mut base = DistinctIdIndex::default();
            let mut later = DistinctIdIndex::default();
            for (i, (t, p, id, ps)) in parts.iter().enumerate() {
                if i < split {
                    base.add(*t, *p, *id, ps);
                } else {
                    later.add(*t, *p, *id, ps);
                }
            }
            later.dead.insert(99);
            base.merge(later);
            assert_eq!(sorted(&base), sorted(&one_by_one), "split at {split}");
            assert!(base.dead.contains(&99));
            assert_eq!(base.lookup(Table::Events, 1, "a").len(), 2);
        }
    }
}
