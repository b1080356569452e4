//! Opening the persons layer of a data directory: the metadata database
//! bound to the store, the recovery of two-phase captures, and the
//! deliberate rebuild of a lost database.
//!
//! **Binding.** The store's manifest records the identity of its metadata
//! database (`Manifest::metadata_id`, a random id the database makes at
//! its creation). Events carry person UUIDs; deletion blocks, deletion
//! records and the UUIDs of deleted persons live only in the database. A
//! missing, emptied or replaced database must therefore never be silently
//! recreated: a new one would hand a deleted person's UUID out again and
//! let their blocked ids create persons. Opening refuses it and names
//! [`Persons::rebuild_metadata`], the deliberate way out, which blocks the
//! ids of every deletion request again (by text while the store still has
//! it, by keyed hash once verified: the new database takes the store's
//! hash key, with which the store hashed them).
//!
//! **Two-phase captures.** [`Persons::capture_all`] commits its events to
//! the store as a pending ingest under a token, then its metadata
//! transaction with the same token, then confirms the ingest. A crash in
//! between leaves a pending ingest; opening settles it: confirmed if the
//! database has the token (its metadata committed), voided otherwise.
//!
//! **Unfinished deletions and drops.** [`Persons::delete`] and
//! [`Persons::drop_project`] record each person's deletion (by UUID, with
//! its flags and the store's acknowledged `_seq` then) or the drop in
//! `unfinished` before their store step, and remove the record in the
//! metadata transaction that finishes them. A record left (a crash, or a
//! failed write, between the two) is finished by the next writable open,
//! after the captures are settled and before anything else runs:
//! - the drop is made again (the store's drop of a dropped project
//!   removes nothing);
//! - each person still present is deleted again by UUID, all its records
//!   at once: each record's tables up to the `_seq` it recorded (a process
//!   that ran on after a failed write stored the person's later events,
//!   which are not the deletion's), the profile kept only if every record
//!   kept it; the redo records nothing new;
//! - a person no longer present (deleted since, or merged into another)
//!   is logged and its records forgotten: if the store step had run, its
//!   requests hide the rows;
//! - one that fails is logged and kept for the next open; the open goes on.
//!
//! Before that, in the same process, the caller's next deletion of the
//! person also does what the record asked, up to where it began
//! ([`Persons::delete`]), and forgets it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use elide_store::{RequestStatus, Store};
use uuid::Uuid;

use crate::error::{PersonsError, Result};
use crate::meta::{DeletionRecord, MetaStore, Unfinished};
use crate::persons::{now_us, DeletePersons, Persons, Registration, MAX_DELETE_PERSONS};
use crate::sqlite::{SqliteMeta, METADATA_FILE};

/// What [`Persons::rebuild_metadata`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// The new database's identity.
    pub database_id: String,
    /// Distinct ids blocked again: by their text (pending and purged
    /// requests still name them) or by their keyed hash (verified requests
    /// keep only that).
    pub ids_blocked: usize,
    /// Deletion requests whose ids could not be blocked again (verified
    /// requests written with a hash key the store no longer has; none in
    /// practice).
    pub requests_not_blocked: usize,
}

/// Whether the database at `path` holds nothing: missing, empty, or a file
/// no schema was ever written to.
fn is_blank(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Err(_) => true,
        Ok(m) if m.len() == 0 => true,
        Ok(_) => {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            rusqlite::Connection::open_with_flags(path, flags)
                .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)))
                .is_ok_and(|v| v == 0)
        }
    }
}

fn missing(path: &Path, why: String) -> PersonsError {
    PersonsError::MetadataMissing {
        path: path.to_path_buf(),
        reason: why,
    }
}

/// Refuse a blank database where the store says there must be one.
fn check_present(store: &Store, path: &Path, bound: Option<&str>) -> Result<()> {
    if !is_blank(path) {
        return Ok(());
    }
    if let Some(id) = bound {
        return Err(missing(
            path,
            format!("the store's events were captured with metadata database {id}"),
        ));
    }
    if store.has_person_ids()? {
        return Err(missing(
            path,
            "the store holds events stamped with persons".into(),
        ));
    }
    Ok(())
}

fn check_same(path: &Path, bound: Option<&str>, found: &str) -> Result<()> {
    match bound {
        Some(b) if b != found => Err(PersonsError::MetadataReplaced {
            path: path.to_path_buf(),
            expected: b.to_string(),
            found: found.to_string(),
        }),
        _ => Ok(()),
    }
}

impl Persons<SqliteMeta> {
    /// Open the persons layer of `store` (which must be writable): the
    /// metadata database, created and bound to the store if neither has
    /// persons yet; refused if the store is bound to a database that is
    /// missing, blank or another one. Settles two-phase captures a crash
    /// left pending, then finishes the person deletions and project drops
    /// one cut short (see the module docs).
    pub fn open(store: Store) -> Result<Persons<SqliteMeta>> {
        if store.is_read_only() {
            return Err(PersonsError::InvalidInput(
                "the store is open read-only; use Persons::open_read_only".into(),
            ));
        }
        let registration = Registration::take(store.dir())?;
        let path = store.dir().join(METADATA_FILE);
        let bound = store.metadata_id()?;
        check_present(&store, &path, bound.as_deref())?;
        let meta = SqliteMeta::open(&path)?;
        let id = meta.database_id()?;
        check_same(&path, bound.as_deref(), &id)?;
        if bound.is_none() {
            store.set_metadata_id(Some(&id))?;
        }
        let mut p = Persons::with_meta(store, meta);
        p._registration = Some(registration);
        p.settle_pending_captures()?;
        p.finish_unfinished()?;
        Ok(p)
    }

    /// Open the persons layer of a read-only store: the metadata database
    /// read-only (a writer in another process may hold it). A store with
    /// no metadata database is [`PersonsError::NotFound`].
    pub fn open_read_only(store: Store) -> Result<Persons<SqliteMeta>> {
        let path = store.dir().join(METADATA_FILE);
        let bound = store.metadata_id()?;
        check_present(&store, &path, bound.as_deref())?;
        if is_blank(&path) {
            return Err(PersonsError::NotFound(format!(
                "no persons metadata in {}",
                store.dir().display()
            )));
        }
        let meta = SqliteMeta::open_read_only(&path)?;
        // A store not yet bound (written before bindings) has a database
        // that may predate its id too: the first writer binds both.
        if bound.is_some() {
            check_same(&path, bound.as_deref(), &meta.database_id()?)?;
        }
        Ok(Persons::with_meta(store, meta))
    }

    /// Make a new, empty metadata database for a store whose database was
    /// lost, on purpose. The lost database's persons, properties and
    /// activity are gone; the store's deletion requests block their
    /// distinct ids again (by text while they name them, by keyed hash
    /// once verified), so that no erased person comes back through them,
    /// except a request whose ids stayed in use (`keeps_ids`: a detached
    /// id's run, whose id went on for another holder, and a deletion that
    /// kept the profile). Verified requests hashed with a key
    /// the store no longer has cannot be blocked again (reported).
    /// Refused while a database is present: move it away first.
    pub fn rebuild_metadata(store: Store) -> Result<(Persons<SqliteMeta>, RebuildReport)> {
        let path: PathBuf = store.dir().join(METADATA_FILE);
        if !is_blank(&path) {
            return Err(PersonsError::InvalidInput(format!(
                "{} exists; a rebuild replaces a lost database only (move it away first)",
                path.display()
            )));
        }
        let registration = Registration::take(store.dir())?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let f = PathBuf::from(format!("{}{suffix}", path.display()));
            if f.exists() {
                std::fs::remove_file(&f).map_err(|e| {
                    PersonsError::InvalidInput(format!("cannot remove {}: {e}", f.display()))
                })?;
            }
        }
        store.set_metadata_id(None)?;
        // The store's hash key becomes the database's id-hash key, so that
        // the hashes verified requests keep block their ids again.
        let manifest = store.manifest()?;
        let store_key = elide_store::format::decode_hash_key(&manifest.hash_key);
        let meta = match store_key {
            Some(key) => SqliteMeta::create_with_key(&path, key)?,
            None => SqliteMeta::open(&path)?,
        };
        let id = meta.database_id()?;
        let now = now_us();
        let mut blocked = 0;
        let mut not_blocked = 0;
        meta.write(|tx| {
            for r in &manifest.requests {
                let hashes: Vec<[u8; 16]> = r
                    .id_hashes
                    .iter()
                    .filter_map(|h| elide_store::format::decode_hash_key(h))
                    .map(|full| {
                        let mut short = [0u8; 16];
                        short.copy_from_slice(&full[..16]);
                        short
                    })
                    .collect();
                if r.distinct_ids.is_empty() && hashes.is_empty() {
                    if r.status == RequestStatus::Verified {
                        not_blocked += 1;
                    }
                    continue;
                }
                if store_key.is_none() && !r.id_hashes.is_empty() && !r.keeps_ids {
                    not_blocked += 1;
                }
                crate::persons::ensure_project(tx, r.project_id, now)?;
                let rec = tx.insert_deletion(&DeletionRecord {
                    id: 0,
                    project_id: r.project_id,
                    person_uuid: Uuid::nil(),
                    created_at_us: r.created_at_us,
                    delete_events: true,
                    delete_recordings: r.tables.len() > 1,
                    keep_person: false,
                    store_requests: vec![r.id],
                })?;
                if r.keeps_ids {
                    // The ids went on (another holder's after a detached
                    // id's run, or the kept person's), and their events
                    // must keep getting a person.
                    tx.insert_activity(r.project_id, None, "metadata_rebuilt", None, now)?;
                    continue;
                }
                for d in &r.distinct_ids {
                    tx.block(r.project_id, d, rec, now)?;
                    blocked += 1;
                }
                if store_key.is_some() {
                    for h in &hashes {
                        tx.block_hash(r.project_id, h, rec, now)?;
                        blocked += 1;
                    }
                }
                tx.insert_activity(r.project_id, None, "metadata_rebuilt", None, now)?;
            }
            Ok(())
        })?;
        store.set_metadata_id(Some(&id))?;
        tracing::warn!(database_id = %id, blocked, not_blocked, "metadata database rebuilt");
        let mut p = Persons::with_meta(store, meta);
        p._registration = Some(registration);
        // Pending captures of the lost database never committed in it.
        p.settle_pending_captures()?;
        Ok((
            p,
            RebuildReport {
                database_id: id,
                ids_blocked: blocked,
                requests_not_blocked: not_blocked,
            },
        ))
    }
}

impl<M: MetaStore> Persons<M> {
    /// Settle the store's pending ingests (see the module docs) and forget
    /// tokens that are settled.
    pub(crate) fn settle_pending_captures(&self) -> Result<()> {
        for pi in self.store().pending_ingests()? {
            let committed = self.meta().read(|tx| tx.has_ingest_token(&pi.token))?;
            self.store().resolve_ingest(&pi.token, committed)?;
            if committed {
                tracing::info!(token = %pi.token, "confirmed a capture whose metadata had committed");
            } else {
                tracing::warn!(token = %pi.token, parts = pi.parts.len(), "voided a capture whose metadata never committed");
            }
        }
        let still: Vec<String> = self
            .store()
            .pending_ingests()?
            .into_iter()
            .map(|p| p.token)
            .collect();
        self.meta().write(|tx| tx.retain_ingest_tokens(&still))
    }

    /// Finish the deletions and drops recorded as unfinished (see the
    /// module docs). One that fails is logged and left for the next open:
    /// the rest of the open goes on.
    pub(crate) fn finish_unfinished(&self) -> Result<()> {
        let left = match self.meta().read(|tx| tx.unfinished()) {
            Ok(left) => left,
            Err(e) => {
                tracing::error!(error = %e, "the unfinished deletions could not be read; the next open tries again");
                return Ok(());
            }
        };
        let mut drops = BTreeSet::new();
        // Each person with its records' ids, by project.
        let mut persons: BTreeMap<i64, BTreeMap<Uuid, Vec<i64>>> = BTreeMap::new();
        for (id, project, op) in left {
            match op {
                Unfinished::DropProject => {
                    drops.insert(project);
                }
                Unfinished::DeletePerson { person_uuid, .. } => persons
                    .entry(project)
                    .or_default()
                    .entry(person_uuid)
                    .or_default()
                    .push(id),
            }
        }
        for &project in &drops {
            tracing::warn!(project, "finishing a project drop that was cut short");
            // Its metadata transaction forgets every record of the project.
            if let Err(e) = self.drop_project(project) {
                tracing::error!(project, error = %e, "a project drop cut short could not be finished; the next open tries again");
            }
        }
        for (project, of_project) in persons {
            if drops.contains(&project) {
                continue;
            }
            let members: Vec<(Uuid, Vec<i64>)> = of_project.into_iter().collect();
            for chunk in members.chunks(MAX_DELETE_PERSONS) {
                // Each person's records say what goes ([`Persons::delete_as`]).
                let req = DeletePersons {
                    uuids: chunk.iter().map(|(u, _)| u.to_string()).collect(),
                    keep_person: true,
                    ..DeletePersons::default()
                };
                let r = match self.delete_as(project, &req, true) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(project, persons = chunk.len(), error = %e, "person deletions cut short could not be finished; the next open tries again");
                        continue;
                    }
                };
                for gone in &r.deletion_errors {
                    tracing::warn!(project, person = %gone.id, "a person whose deletion was cut short is no longer present (deleted or merged into another since); its record is forgotten");
                }
                tracing::warn!(
                    project,
                    persons = chunk.len(),
                    found = r.persons_found,
                    "finished person deletions that were cut short"
                );
                // Those it found forgot their records as it committed;
                // those it did not find have nothing left to delete.
                let ids: Vec<i64> = chunk
                    .iter()
                    .flat_map(|(_, ids)| ids.iter().copied())
                    .collect();
                if let Err(e) = self.meta().write(|tx| tx.forget_unfinished(&ids)) {
                    tracing::error!(project, error = %e, "finished deletions could not be forgotten; the next open finds nothing to do for them");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use elide_store::StoreOptions;

    use super::*;
    use crate::capture::parse_payload;
    use crate::meta::DeletionScope;

    fn scope(delete_events: bool, delete_recordings: bool, keep_person: bool) -> DeletionScope {
        DeletionScope {
            delete_events,
            delete_recordings,
            keep_person,
        }
    }

    #[test]
    fn a_deletion_covers_one_that_does_no_more() {
        let events_only = scope(true, false, false);
        let both = scope(true, true, false);
        let kept = scope(true, false, true);
        assert!(events_only.covers(&events_only));
        assert!(both.covers(&events_only));
        assert!(!events_only.covers(&both), "the recordings are left");
        assert!(events_only.covers(&kept), "the profile goes too");
        assert!(!kept.covers(&events_only), "the profile is left");
        assert!(!scope(false, true, false).covers(&events_only));
    }

    fn open(dir: &Path) -> Persons<SqliteMeta> {
        let opts = StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..StoreOptions::default()
        };
        Persons::open(Store::open(dir, opts).unwrap()).unwrap()
    }

    fn left(p: &Persons<SqliteMeta>) -> Vec<(i64, i64, Unfinished)> {
        p.meta().read(|tx| tx.unfinished()).unwrap()
    }

    /// What a deletion whose metadata write failed leaves behind, in a
    /// process that runs on (the store's requests are left out: each
    /// finish makes its own).
    fn fail(p: &Persons<SqliteMeta>, person: Uuid, s: DeletionScope) {
        p.meta()
            .write(|tx| {
                let op = Unfinished::DeletePerson {
                    person_uuid: person,
                    scope: s,
                    below_seq: p.store().acknowledged_seq()?,
                };
                tx.begin_unfinished(1, &op, now_us())
            })
            .unwrap()
    }

    fn capture(p: &Persons<SqliteMeta>, id: &str) -> Uuid {
        let events =
            parse_payload(serde_json::json!({"event": "e", "distinct_id": id}), 0).unwrap();
        p.capture(1, &events).unwrap();
        p.by_distinct_ids(1, &[id.into()]).unwrap()[id].uuid
    }

    /// The caller's repeat of a deletion left unfinished does what both
    /// ask (the tables of either, the profile kept only if both keep it)
    /// and forgets the record.
    #[test]
    fn a_repeat_also_does_what_the_unfinished_deletion_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path());
        let carol = capture(&p, "carol");
        let repeat = |s: DeletionScope| {
            let req = DeletePersons {
                distinct_ids: vec!["carol".into()],
                delete_events: s.delete_events,
                delete_recordings: s.delete_recordings,
                keep_person: s.keep_person,
                ..DeletePersons::default()
            };
            let r = p.delete(1, &req).unwrap();
            assert_eq!(r.persons_found, 1);
            let newest = p.deletion_status(1, None, None, 1, 0).unwrap();
            (r, newest[0].clone())
        };
        let kept = scope(true, false, true);
        fail(&p, carol, kept);
        let (r, d) = repeat(kept);
        assert!(!r.recordings_queued_for_deletion && d.keep_person);
        assert_eq!(left(&p), vec![], "the same deletion again");
        fail(&p, carol, scope(true, true, true));
        let (r, d) = repeat(kept);
        assert!(r.recordings_queued_for_deletion && d.delete_recordings && d.keep_person);
        assert_eq!(left(&p), vec![], "the repeat deleted the recordings too");
        fail(&p, carol, scope(true, false, false));
        let (r, d) = repeat(kept);
        assert_eq!(r.persons_deleted, 1, "the first asked for the profile");
        assert!(!d.keep_person);
        assert_eq!(left(&p), vec![]);
        assert!(p.by_distinct_ids(1, &["carol".into()]).unwrap().is_empty());
    }

    /// The next open finishes a person's records as one: a record that
    /// removes the profile does not leave another's tables undone.
    #[test]
    fn the_open_finishes_all_of_a_persons_records_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path());
        let dan = capture(&p, "dan");
        fail(&p, dan, scope(true, false, false));
        fail(&p, dan, scope(false, true, true));
        drop(p);
        let p = open(dir.path());
        assert_eq!(left(&p), vec![]);
        let done = p.deletion_status(1, None, None, 10, 0).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].delete_events && done[0].delete_recordings && !done[0].keep_person);
        assert!(p.by_distinct_ids(1, &["dan".into()]).unwrap().is_empty());
        // The metadata rows removed (the profile and its one id) are on
        // the redo's receipts once, over its two capped groups.
        let requests = p.store().manifest().unwrap().requests;
        assert_eq!(requests.len(), 2, "{requests:?}");
        let rows: u64 = requests.iter().map(|r| r.metadata_rows_removed).sum();
        assert_eq!(rows, 2);
    }

    /// A store-only write of a project runs while it exists: a drop waits
    /// for one under way, and none runs once the project is dropped.
    #[test]
    fn a_drop_waits_for_a_write_of_its_project_and_refuses_later_ones() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path());
        capture(&p, "gus");
        let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
        std::thread::scope(|s| {
            s.spawn(|| {
                p.while_project_exists(1, || -> Result<()> {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    done.store(true, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap()
            });
            while !started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            p.drop_project(1).unwrap();
            assert!(done.load(Ordering::SeqCst), "the drop ran inside the write");
        });
        let ran = AtomicBool::new(false);
        let r = p.while_project_exists(1, || -> Result<()> {
            ran.store(true, Ordering::SeqCst);
            Ok(())
        });
        assert!(matches!(r, Err(PersonsError::NotFound(_))), "{r:?}");
        assert!(!ran.load(Ordering::SeqCst));
    }

    /// A record the open cannot finish is left for the next open, and the
    /// open goes on.
    #[test]
    fn a_record_that_cannot_be_finished_does_not_stop_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path());
        p.meta()
            .write(|tx| tx.begin_unfinished(-1, &Unfinished::DropProject, now_us()))
            .unwrap();
        drop(p);
        let p = open(dir.path());
        assert_eq!(left(&p).len(), 1);
        capture(&p, "erin");
    }
}
