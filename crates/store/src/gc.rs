//! Garbage collection: the only code that removes files.
//!
//! A file is garbage when the current manifest no longer references it
//! (a superseded tombstone version, an old manifest) or when its rows are in
//! committed parts (an ingest-log segment). Objects are *retired* by the
//! commit that stopped referencing them, tagged with that commit's version
//! `V`: every snapshot older than `V` may still read them. [`Gc::collect`]
//! removes a retired object once no live snapshot has a version below `V`.
//!
//! ```text
//!   commit V retires f ──► pending (f, V) ──► no snapshot < V alive ──► delete f
//! ```
//!
//! The race this prevents: a query takes snapshot V-1 and is about to open
//! part f while commit V retires f. Snapshots register their version under
//! the same lock that publishes versions, so either the query registered
//! V-1 first (and f waits for it) or it sees V (and never asks for f).
//!
//! At open, [`Gc::sweep_unreferenced`] removes every object under
//! `manifest/`, `parts/` and `tombstones/` that the recovered manifest does
//! not reference: leftovers of commits that crashed before publishing. It
//! runs only against a manifest read from disk (a store with no manifest
//! is either new, and has nothing to sweep, or damaged, and is refused),
//! removes only names Elide writes, and spares what reader leases pin
//! (see `lease.rs`).
//!
//! On an object store ([`Gc::remote`]) readers on other machines hold no
//! lease here, so an object is removed only after it has been
//! unreferenced for a retention window. Its age: since the commit that
//! retired it (recorded in the manifest's `retired` list, so that a later
//! process knows it), else, for an old manifest, since its successor was
//! written, else since it was written (a crashed commit's leftover). The
//! window is bounded by the erasure deadline
//! ([`crate::StoreOptions::object_retention`]): a purged part's bytes are
//! gone within the deadline all the same. Nothing is removed once a
//! version this handle did not publish exists (another writer's may
//! reference it), and a path referenced again leaves the list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::format::{classify_object, manifest_path, Manifest, PartMeta};
use crate::io::FileSystem;
use crate::storage::Storage;
use crate::wal;

#[derive(Debug, Default)]
struct GcState {
    /// Live snapshot versions with their reference counts.
    live: BTreeMap<u64, usize>,
    /// Retired objects: path, version of the commit that retired it, and
    /// when (for an object store's retention window).
    pending: Vec<Retired>,
    /// Leftovers of crashed writes that the open-time sweep could not
    /// remove yet (a reader lease pinned them), and unpublished files
    /// whose removal failed ([`Gc::discard`]): until they are gone, a
    /// copy of deleted rows may be on disk unreferenced.
    leftovers: std::collections::HashSet<String>,
    /// Paths a [`Gc::collect`] has taken from `pending` and is removing.
    removing: std::collections::HashSet<String>,
}

/// A retired object waiting for removal.
#[derive(Debug)]
struct Retired {
    path: String,
    /// The commit that retired it: snapshots and leases older than it
    /// hold it back, and [`Gc::retired_before`] compares requests with it.
    version: u64,
    /// Its removal failed: retried at every pass, whatever is leased.
    retry: bool,
    /// Written and never published ([`Gc::discard`]): no reader anywhere
    /// can read it, so no retention window holds it.
    unpublished: bool,
    /// When, for an object store's retention window.
    at: std::time::Instant,
    /// When, as µs since the epoch (for [`Gc::retired_before`]).
    at_us: i64,
}

/// Tracks live snapshots and retired files.
#[derive(Debug, Default)]
pub struct Gc {
    state: Mutex<GcState>,
    /// Set when a written file whose path is not known may be left on
    /// disk unreferenced (a commit whose outcome is unknown, a compaction
    /// task that panicked): until the sweep at the next open, no deletion
    /// request may be marked purged, since such a file can hold copies of
    /// rows. A failed discard, whose path is known, is a leftover
    /// instead, retried by GC.
    orphans: std::sync::atomic::AtomicBool,
    /// The data directory whose reader leases pin versions (local stores).
    leases: Option<std::path::PathBuf>,
    /// A read-only store never removes anything.
    read_only: bool,
    /// On an object store, how long a retired or unreferenced object is
    /// kept before it is removed: a reader on another machine, which no
    /// lease of this directory announces, may still be reading it.
    retention: Option<std::time::Duration>,
    /// The latest version this handle published or opened: on an object
    /// store nothing is removed once a later version exists (another
    /// writer's, which may reference what this one retired).
    known_version: std::sync::atomic::AtomicU64,
}

/// Keeps a snapshot's version registered while alive.
#[derive(Debug)]
pub struct LiveGuard {
    gc: Arc<Gc>,
    version: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.gc.state.lock() {
            if let Some(c) = s.live.get_mut(&self.version) {
                *c -= 1;
                if *c == 0 {
                    s.live.remove(&self.version);
                }
            }
        }
    }
}

impl Gc {
    /// GC of a writer whose data directory `leases` may hold reader leases.
    pub fn new(leases: Option<std::path::PathBuf>) -> Gc {
        Gc {
            leases,
            ..Gc::default()
        }
    }

    /// GC of a writer on an object store: removes an object only once it
    /// has been unreferenced for `retention`.
    pub fn remote(retention: std::time::Duration) -> Gc {
        Gc {
            retention: Some(retention),
            ..Gc::default()
        }
    }

    /// GC of a read-only store: tracks snapshots, removes nothing.
    pub fn read_only() -> Gc {
        Gc {
            read_only: true,
            ..Gc::default()
        }
    }

    /// The oldest version a reader process pins through its lease.
    pub fn oldest_leased(&self) -> Option<u64> {
        self.leases
            .as_deref()
            .and_then(|d| crate::lease::pinned_versions(d).into_iter().min())
    }

    /// Register a snapshot of `version`. Call under the lock that publishes versions.
    pub fn register(self: &Arc<Self>, version: u64) -> LiveGuard {
        if let Ok(mut s) = self.state.lock() {
            *s.live.entry(version).or_default() += 1;
        }
        LiveGuard {
            gc: Arc::clone(self),
            version,
        }
    }

    /// Retire objects no longer referenced as of commit `version`.
    pub fn retire(&self, paths: impl IntoIterator<Item = String>, version: u64) {
        if let Ok(mut s) = self.state.lock() {
            let (at, at_us) = (std::time::Instant::now(), crate::store::now_us());
            s.pending.extend(paths.into_iter().map(|path| Retired {
                path,
                version,
                retry: false,
                unpublished: false,
                at,
                at_us,
            }));
        }
    }

    /// Forget retired objects that `referenced` (the manifest just
    /// published) references again: a path rewritten in place (a `.runs`
    /// file) must not be removed as the leftover it was.
    pub fn keep_referenced(&self, referenced: &BTreeSet<String>) {
        if let Ok(mut s) = self.state.lock() {
            if s.pending.is_empty() {
                return;
            }
            s.pending.retain(|r| !referenced.contains(&r.path));
            s.leftovers.retain(|p| !referenced.contains(p));
        }
    }

    /// Whether an object that `under` accepts was retired at or before
    /// `at_us` (µs since the epoch) and is still waiting for removal (a
    /// snapshot or reader pins it, an object store's retention window
    /// keeps it, or its removal failed). A deletion request made at
    /// `at_us` is not purged while one of its project's part files is:
    /// it may hold the request's rows, and no live part leads to it.
    ///
    /// `version` is the manifest version from which the request lists its
    /// parts (its creation, or its resolution for one that was logical:
    /// until then it listed none, so a part merged away in between is in
    /// no list of it); an object retired at or before it counts too, also
    /// when the wall clock stepped back. `0` (a request recorded before
    /// versions were) leaves the time alone to decide.
    pub fn retired_before(&self, at_us: i64, version: u64, under: impl Fn(&str) -> bool) -> bool {
        self.state.lock().map_or(true, |s| {
            s.pending.iter().any(|r| {
                (r.at_us <= at_us || (version > 0 && r.version <= version)) && under(&r.path)
            })
        })
    }

    /// Whether GC may still remove `path` (it waits in its list, or a pass
    /// is removing it now): a writer must not write a file there that it
    /// means to keep, or GC may remove it after the write.
    pub fn holds(&self, path: &str) -> bool {
        self.state.lock().map_or(true, |s| {
            s.removing.contains(path) || s.pending.iter().any(|r| r.path == path)
        })
    }

    /// Number of retired objects still waiting for old snapshots.
    pub fn pending(&self) -> usize {
        self.state.lock().map_or(0, |s| s.pending.len())
    }

    /// Record the latest version this handle published or opened.
    pub fn note_version(&self, version: u64) {
        self.known_version
            .fetch_max(version, std::sync::atomic::Ordering::AcqRel);
    }

    /// Remove every retired object no live snapshot can read.
    pub fn collect(&self, storage: &Storage) -> Result<usize> {
        if self.read_only || self.pending() == 0 {
            return Ok(0);
        }
        if let Some(retention) = self.retention {
            let due = self.state.lock().is_ok_and(|s| {
                s.pending
                    .iter()
                    .any(|r| r.unpublished || r.at.elapsed() >= retention)
            });
            if !due {
                return Ok(0);
            }
            // Another writer (a lease that failed) may have published a
            // version that references what this handle retired: remove
            // nothing past a version this handle does not know.
            let known = self
                .known_version
                .load(std::sync::atomic::Ordering::Acquire);
            if let Some((latest, _)) = crate::remote::latest_manifest(&storage.inner())? {
                if latest > known {
                    // (Or this handle's own commit, published but not
                    // yet noted: the next collect removes them.)
                    tracing::warn!(latest, known, "a version this handle does not know exists (another writer?); nothing removed");
                    return Ok(0);
                }
            }
        }
        let leased = self.oldest_leased();
        let ready: Vec<Retired> = {
            let Ok(mut s) = self.state.lock() else {
                return Ok(0);
            };
            let oldest = match (s.live.keys().next().copied(), leased) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let retention = self.retention;
            let (ready, keep): (Vec<_>, Vec<_>) = s.pending.drain(..).partition(|r| {
                (r.retry || oldest.is_none_or(|o| o >= r.version))
                    && (r.unpublished || retention.is_none_or(|w| r.at.elapsed() >= w))
            });
            s.pending = keep;
            s.removing.extend(ready.iter().map(|r| r.path.clone()));
            ready
        };
        if ready.is_empty() {
            return Ok(0);
        }
        let before_delete = || -> Result<()> {
            crate::failpoint!("gc::before_delete");
            Ok(())
        };
        if let Err(e) = before_delete() {
            if let Ok(mut s) = self.state.lock() {
                for r in &ready {
                    s.removing.remove(&r.path);
                }
                s.pending.extend(ready);
            }
            return Err(e);
        }
        let attempted = ready.len();
        let paths: Vec<String> = ready.iter().map(|r| r.path.clone()).collect();
        let failed = storage.delete_all(&paths);
        for (p, e) in &failed {
            tracing::warn!(path = %p, error = %e, "gc: could not remove file; will retry");
        }
        if let Ok(mut s) = self.state.lock() {
            let now = std::time::Instant::now();
            for r in &ready {
                s.removing.remove(&r.path);
            }
            for r in ready {
                if failed.iter().any(|(f, _)| *f == r.path) {
                    // Retried at the next pass, whatever is leased; it
                    // keeps its retirement time and commit, which decide
                    // the requests it holds back (`retired_before`).
                    s.pending.push(Retired {
                        retry: true,
                        at: now,
                        ..r
                    });
                } else {
                    s.leftovers.remove(&r.path);
                }
            }
        }
        Ok(attempted - failed.len())
    }

    /// Remove a file that was written but never published (the output of
    /// an abandoned compaction task). No manifest references it, so no
    /// snapshot can read it. A failure is logged, and the file becomes a
    /// leftover that every GC pass tries to remove again (at once: nothing
    /// reads it), and so does the sweep at the next open. Until it is
    /// gone, no request is marked purged (it may hold a copy of rows).
    pub fn discard(&self, storage: &Storage, path: &str) {
        if let Err(e) = storage.delete(path) {
            tracing::warn!(path, error = %e, "could not remove an unpublished file; retried at each GC pass");
            let Ok(mut s) = self.state.lock() else {
                self.mark_orphans();
                return;
            };
            s.leftovers.insert(path.to_string());
            s.pending.push(Retired {
                path: path.to_string(),
                // Published by no version: it holds back every request
                // of its project (`retired_before`), whenever made.
                version: 0,
                retry: true,
                unpublished: true,
                at: std::time::Instant::now(),
                at_us: i64::MIN,
            });
        }
    }

    /// [`Gc::discard`] each file of a part that will not be published.
    pub fn discard_part(&self, storage: &Storage, part: &PartMeta) {
        for f in part.files() {
            self.discard(storage, &f);
        }
    }

    /// What becomes of the files a caller wrote for a commit that failed
    /// with `e` ([`crate::commit::Transaction::commit`]): when the new
    /// version may have been published (`OutcomeUnknown`) they stay, and
    /// no request is marked purged until the next open has swept the
    /// unreferenced ones; otherwise nothing references them and they are
    /// removed now. (A commit that failed for certain used to be treated
    /// as a possible publication: a writer whose object-store lease could
    /// not be renewed for a while left a memtable's worth of parts on
    /// every flush attempt, and purges stopped until a restart.)
    pub fn after_failed_commit(
        &self,
        storage: &Storage,
        e: crate::error::StoreError,
        written: &[String],
    ) -> crate::error::StoreError {
        if matches!(e, crate::error::StoreError::OutcomeUnknown(_)) {
            self.mark_orphans();
        } else {
            for f in written {
                self.discard(storage, f);
            }
        }
        e
    }

    /// Record that an unreferenced file may be on disk until the next open.
    pub fn mark_orphans(&self) {
        self.orphans
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether an unreferenced file may be on disk (see [`Gc::mark_orphans`],
    /// and leftovers the open-time sweep had to leave to GC).
    pub fn orphans_possible(&self) -> bool {
        self.orphans.load(std::sync::atomic::Ordering::Acquire)
            || self.state.lock().map_or(true, |s| !s.leftovers.is_empty())
    }

    /// Remove ingest-log segments whose rows are all in committed parts
    /// (durably: the directory is synced).
    pub fn remove_wal_segments(&self, fs: &dyn FileSystem, dir: &Path, ids: &[u64]) -> Result<()> {
        for id in ids {
            let p = wal::segment_path(dir, *id);
            match fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::StoreError::io(p.display(), e)),
            }
        }
        if !ids.is_empty() {
            crate::storage::sync_dir(fs, dir)?;
        }
        Ok(())
    }

    /// At open, against a manifest read from disk (never one just
    /// created): remove what crashed writes left, i.e. objects with
    /// Elide's names (parts, tombstone files, manifests, staged writes)
    /// that `manifest` does not reference. Those a reader lease pins
    /// (`pinned`; `None`: a lease pins everything) are retired to GC
    /// instead, which removes them once no lease needs them. Anything
    /// else under those directories was not made by Elide: it is left
    /// alone and reported.
    pub fn sweep_unreferenced(
        &self,
        storage: &Storage,
        manifest: &Manifest,
        pinned: Option<&BTreeSet<String>>,
    ) -> Result<SweepReport> {
        let referenced = manifest.referenced_paths();
        let current = manifest_path(manifest.version);
        let mut report = SweepReport::default();
        let mut doomed = Vec::new();
        // Unreferenced objects left for later, with how long ago they
        // stopped being referenced (µs; 0 = now).
        let mut deferred: Vec<(String, i64)> = Vec::new();
        let retired_at: std::collections::HashMap<&str, i64> = manifest
            .retired
            .iter()
            .map(|r| (r.path.as_str(), r.at_us))
            .collect();
        let now_us = chrono::Utc::now().timestamp_micros();
        let listed: Vec<(&str, Vec<crate::storage::Listed>)> = ["parts", "tombstones", "manifest"]
            .into_iter()
            .map(|prefix| Ok((prefix, storage.list(prefix)?)))
            .collect::<Result<_>>()?;
        // A manifest stopped being the latest when its successor was written.
        let manifest_written: std::collections::HashMap<u64, i64> = listed
            .iter()
            .flat_map(|(_, objs)| objs.iter())
            .filter_map(|o| Some((crate::format::parse_manifest_path(&o.path)?, o.modified_us?)))
            .collect();
        // File ids of everything there, referenced or not: a leftover the
        // sweep leaves (a lease pins it, or an object store's window) must
        // never have its id handed out again.
        report.max_file_id = listed
            .iter()
            .flat_map(|(_, objs)| objs.iter())
            .filter(|o| classify_object(&o.path).is_some())
            .filter_map(|o| crate::format::file_id_of(&o.path))
            .max();
        for (_, objects) in listed {
            for obj in objects {
                let p = obj.path;
                if p == current || referenced.contains(&p) {
                    continue;
                }
                if crate::format::parse_manifest_path(&p).is_some_and(|v| v > manifest.version) {
                    // Published after the manifest this open read: another
                    // writer's commit (the lease or lock should have kept
                    // it out). Never remove a newer version.
                    tracing::warn!(path = %p, version = manifest.version, "a newer manifest appeared while opening; left alone");
                    continue;
                }
                // On an object store, a young object may be read by a
                // reader elsewhere (or be a commit in flight of a writer
                // whose lease just expired): it waits out the window.
                // Its age: since its retirement where the manifest
                // recorded it, else since it was written (a crashed
                // commit's leftover).
                let superseded = crate::format::parse_manifest_path(&p)
                    .and_then(|v| manifest_written.get(&(v + 1)).copied());
                let age_us = retired_at
                    .get(p.as_str())
                    .copied()
                    .or(superseded)
                    .or(obj.modified_us)
                    .map_or(0, |since| (now_us - since).max(0));
                let young = self
                    .retention
                    .is_some_and(|r| age_us < i64::try_from(r.as_micros()).unwrap_or(i64::MAX));
                match classify_object(&p) {
                    Some(_) if !young && pinned.is_some_and(|pin| !pin.contains(&p)) => {
                        tracing::info!(path = %p, "removing unreferenced file");
                        doomed.push(p);
                    }
                    Some(_) if young => deferred.push((p, age_us)),
                    Some(_) => deferred.push((p, 0)),
                    // The Delta export's log and vectors: its own to manage.
                    None if crate::format::is_export_object(&p) => {}
                    None => {
                        tracing::warn!(path = %p, "not a file Elide writes; left alone");
                        report.foreign.push(p);
                    }
                }
            }
        }
        let failed = storage.delete_all(&doomed);
        if let Some((p, e)) = failed.into_iter().next() {
            return Err(crate::error::StoreError::Internal(format!(
                "could not remove unreferenced file {p}: {e}"
            )));
        }
        report.removed = doomed.len();
        report.deferred = deferred.len();
        if !deferred.is_empty() {
            tracing::info!(
                count = deferred.len(),
                "unreferenced files a reader may still read are left to GC"
            );
            if let Ok(mut s) = self.state.lock() {
                s.leftovers.extend(deferred.iter().map(|(p, _)| p.clone()));
                let now_us = crate::store::now_us();
                s.pending
                    .extend(deferred.into_iter().map(|(path, age_us)| Retired {
                        path,
                        version: manifest.version,
                        retry: false,
                        unpublished: false,
                        at: instant_ago(age_us),
                        at_us: now_us.saturating_sub(age_us),
                    }));
            }
        }
        Ok(report)
    }
}

/// The `retired` list of a new manifest on an object store: the base's
/// entries still within two retention windows of `now_us` (GC removes an
/// object after one; an entry that outlives a failed removal is left to
/// the open-time sweep, which finds the object old by then), minus any
/// path referenced again, plus `retired` now.
pub(crate) fn carry_retired(
    base: &[crate::format::RetiredObject],
    retired: &[String],
    referenced: &BTreeSet<String>,
    retention: std::time::Duration,
    now_us: i64,
) -> Vec<crate::format::RetiredObject> {
    let keep_us = 2 * i64::try_from(retention.as_micros()).unwrap_or(i64::MAX / 4);
    let mut out: Vec<crate::format::RetiredObject> = base
        .iter()
        .filter(|r| now_us - r.at_us < keep_us && !referenced.contains(&r.path))
        .cloned()
        .collect();
    let known: std::collections::HashSet<String> = out.iter().map(|r| r.path.clone()).collect();
    // Old manifests are not listed (one per commit would make every
    // manifest carry thousands): the sweep dates a manifest by its
    // successor's last modification.
    out.extend(
        retired
            .iter()
            .filter(|p| !known.contains(*p) && crate::format::parse_manifest_path(p).is_none())
            .map(|p| crate::format::RetiredObject {
                path: p.clone(),
                at_us: now_us,
            }),
    );
    out
}

/// The instant `age_us` microseconds ago (now, if the clock cannot go back that far).
fn instant_ago(age_us: i64) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_sub(std::time::Duration::from_micros(
        u64::try_from(age_us).unwrap_or(0),
    ))
    .unwrap_or(now)
}

/// What the open-time sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Unreferenced files removed.
    pub removed: usize,
    /// Unreferenced files left to GC because a reader lease pins them.
    pub deferred: usize,
    /// Files under `parts/`, `tombstones/` or `manifest/` whose names
    /// Elide does not write: left alone.
    pub foreign: Vec<String>,
    /// The largest file id of any part, `.runs` or tombstone file found.
    pub max_file_id: Option<u64>,
}
