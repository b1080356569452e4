//! The SQLite metadata store (rusqlite, bundled SQLite).
//!
//! One file, `metadata.sqlite3`, in the data directory, opened in WAL mode
//! with `synchronous=FULL` (a committed change survives power loss) and
//! `secure_delete=ON` (deleted content is overwritten with zeros in the
//! pages that held it). After an erasure, [`MetaStore::scrub`] runs a
//! truncating WAL checkpoint, so the old page images in the log are gone
//! too.
//!
//! Distinct ids are looked up by a keyed hash (`ids::id_hash`), never by
//! an index on the id's text: SQLite keeps copies of index keys in
//! interior b-tree pages, which `secure_delete` does not rewrite when a
//! leaf row goes. Hashes in those pages reveal nothing; the id text lives
//! only in table leaf cells, which it does zero. No index is built over
//! person properties for the same reason.
//!
//! Schema changes are numbered migrations (`PRAGMA user_version`); a
//! database from a newer elide is refused rather than guessed at.
//!
//! Here: opening the database and its key, and [`MetaStore`]'s
//! transactions. The schema is in `sqlite/schema.rs`, every read and
//! write of a transaction in `sqlite/tx.rs`, and the SQL of person
//! property filters in `sqlite/filters.rs`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{PersonsError, Result};
use crate::meta::{MetaStore, MetaTx};
use crate::sqlite_checkpoint::{Checkpointer, BACKSTOP_PAGES};

mod filters;
mod listing;
mod schema;
mod tx;
mod unfinished;

use schema::{migrate, MIGRATIONS};
pub(crate) use tx::parse_uuid;
use tx::SqliteTx;

/// File name of the metadata database inside the data directory.
pub const METADATA_FILE: &str = "metadata.sqlite3";

/// The SQLite metadata store.
pub struct SqliteMeta {
    conn: Mutex<Connection>,
    key: [u8; 32],
    path: PathBuf,
    /// Checkpoints the log after commits (none for a read-only handle).
    pub(crate) checkpointer: Option<Checkpointer>,
    /// The schema's version (always the latest for a writer, which
    /// migrates; a read-only handle reads it again in each transaction).
    schema: i64,
}

impl std::fmt::Debug for SqliteMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMeta")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteMeta {
    /// Open the database at `path` for reading only: no migration, no
    /// scrub, no write (a writer in another process may hold it).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteMeta> {
        use rusqlite::OpenFlags;
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        filters::register(&conn)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 || version > MIGRATIONS.len() as i64 {
            return Err(PersonsError::Corrupt(format!(
                "{} has schema version {version}; open it once with a writer of this elide",
                path.display()
            )));
        }
        let key: Vec<u8> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'id_hash_key'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| PersonsError::Corrupt(format!("{}: no id hash key", path.display())))?;
        let key = <[u8; 32]>::try_from(key.as_slice())
            .map_err(|_| PersonsError::Corrupt("id hash key is not 32 bytes".into()))?;
        Ok(SqliteMeta {
            conn: Mutex::new(conn),
            key,
            path,
            checkpointer: None,
            schema: version,
        })
    }

    /// The identity of this database (random, made at its creation): the
    /// store records it, so that a replaced or recreated database is
    /// noticed (see `Persons::open`).
    pub fn database_id(&self) -> Result<String> {
        let conn = self.conn()?;
        let v: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'database_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match v {
            Some(v) => String::from_utf8(v)
                .map_err(|_| PersonsError::Corrupt("database id is not text".into())),
            None => Err(PersonsError::Corrupt(format!(
                "{} has no database id",
                self.path.display()
            ))),
        }
    }

    /// SQLite's own check of every page and index; the problems found.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// Create a new database at `path` whose id-hash key is `key` (the
    /// store's hash key, so that the hashes a verified deletion keeps can
    /// block ids again; see `Persons::rebuild_metadata`). `path` must hold
    /// no database.
    pub fn create_with_key(path: impl AsRef<Path>, key: [u8; 32]) -> Result<SqliteMeta> {
        let path = path.as_ref().to_path_buf();
        {
            let mut conn = Connection::open(&path)?;
            migrate(&mut conn, &path)?;
            let n: i64 = conn.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?;
            if n != 0 {
                return Err(PersonsError::InvalidInput(format!(
                    "{} is not a new database",
                    path.display()
                )));
            }
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('id_hash_key', ?1)",
                params![key.as_slice()],
            )?;
        }
        SqliteMeta::open(path)
    }

    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteMeta> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(PersonsError::Corrupt(format!(
                "{}: could not switch to WAL mode (got {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        // 128 MiB of page cache: capture looks persons up at random, and a
        // cache miss is a read system call per b-tree level.
        conn.pragma_update(None, "cache_size", -131_072)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints run on their own thread (see `sqlite_checkpoint`);
        // a commit checkpoints itself only past this backstop.
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
        filters::register(&conn)?;
        migrate(&mut conn, &path)?;
        let key = load_key(&mut conn)?;
        hash_detached_ids(&mut conn, &key)?;
        let checkpointer = Some(Checkpointer::start(&path)?);
        let meta = SqliteMeta {
            conn: Mutex::new(conn),
            key,
            path,
            checkpointer,
            schema: MIGRATIONS.len() as i64,
        };
        // Finish a scrub an earlier process could not (see `scrub`).
        meta.scrub()?;
        Ok(meta)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| PersonsError::Internal("the metadata connection lock is poisoned".into()))
    }
}

/// Give the detached ids recorded before migration 8 their keyed hash
/// (one transaction, once: a mark in `meta` says it is done; none are
/// left once a writer has opened).
fn hash_detached_ids(conn: &mut Connection, key: &[u8; 32]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'detached_ids_hashed'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if done.is_some() {
        return Ok(());
    }
    let unhashed: Vec<(i64, i64, String)> = tx
        .prepare("SELECT rowid, project_id, distinct_id FROM detached_ids WHERE id_hash IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if !unhashed.is_empty() {
        let mut st = tx.prepare("UPDATE detached_ids SET id_hash = ?1 WHERE rowid = ?2")?;
        for (rowid, project, id) in &unhashed {
            st.execute(params![
                crate::ids::id_hash(key, *project, id).to_vec(),
                rowid
            ])?;
        }
        drop(st);
        tracing::info!(records = unhashed.len(), "detached ids hashed");
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('detached_ids_hashed', x'01')",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

fn load_key(conn: &mut Connection) -> Result<[u8; 32]> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'id_hash_key'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let key = match existing {
        Some(v) => <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
            PersonsError::Corrupt(format!("id hash key has {} bytes, not 32", v.len()))
        })?,
        None => {
            let key: [u8; 32] = rand::random();
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('id_hash_key', ?1)",
                params![key.as_slice()],
            )?;
            key
        }
    };
    // Older databases get their identity here, once.
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', ?1)",
        params![id.as_bytes()],
    )?;
    tx.commit()?;
    Ok(key)
}

impl MetaStore for SqliteMeta {
    fn write<R>(&self, f: impl FnOnce(&mut dyn MetaTx) -> Result<R>) -> Result<R> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut SqliteTx {
            tx: &tx,
            key: &self.key,
            schema: self.schema,
        })?;
        tx.commit()?;
        drop(conn);
        if let Some(c) = &self.checkpointer {
            c.nudge();
        }
        Ok(out)
    }

    fn read<R>(&self, f: impl FnOnce(&mut dyn MetaTx) -> Result<R>) -> Result<R> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        // A read-only handle (no checkpointer) reads the schema of the
        // transaction: a writer may have migrated it since the open.
        let schema = if self.checkpointer.is_none() {
            tx.query_row("PRAGMA user_version", [], |r| r.get(0))?
        } else {
            self.schema
        };
        let out = f(&mut SqliteTx {
            tx: &tx,
            key: &self.key,
            schema,
        });
        // Nothing to keep: a read transaction ends by rolling back.
        drop(tx);
        out
    }

    fn scrub(&self) -> Result<()> {
        let conn = self.conn()?;
        // A reader on another connection (this process holds the only
        // writer), or the checkpoint thread's passive checkpoint, blocks
        // the truncation: retry briefly, then leave it to the checkpoint
        // thread (and to the scrub every open runs).
        for attempt in 0..20 {
            let (busy, log, done): (i64, i64, i64) =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            if busy == 0 {
                return Ok(());
            }
            if attempt == 19 {
                tracing::warn!(
                    log,
                    done,
                    "metadata log not truncated: another connection holds a read or a checkpoint; the checkpoint thread retries until it can"
                );
                match &self.checkpointer {
                    Some(c) => c.scrub_later(),
                    None => tracing::error!(
                        "no checkpoint thread: erased rows stay in the metadata log until the next scrub or open"
                    ),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement plans of a merge that a new SQLite version could
    /// change into a scan of the project (see [`tx::REPOINT_OVERRIDES`]).
    #[test]
    fn a_merge_repoints_overrides_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(dir.path().join("m.sqlite3")).unwrap();
        let conn = meta.conn().unwrap();
        let mut st = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", tx::REPOINT_OVERRIDES))
            .unwrap();
        let plan: Vec<String> = st
            .query_map(params!["b", 1, "a"], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.len() == 1 && plan[0].contains("USING INDEX person_overrides_by_override"),
            "{plan:?}"
        );
    }

    /// A listing narrowed by a distinct id or by UUIDs finds its persons by
    /// id; without them it walks the index by creation (its order).
    #[test]
    fn a_narrowed_person_listing_finds_its_persons_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(dir.path().join("m.sqlite3")).unwrap();
        let conn = meta.conn().unwrap();
        let tx = tx::SqliteTx {
            tx: &conn,
            key: &meta.key,
            schema: MIGRATIONS.len() as i64,
        };
        let plan = |f: &crate::meta::PersonFilter| -> Vec<String> {
            let (sql, args) = tx.list_query(1, f).unwrap();
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            st.query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let by_id = "SEARCH p USING INTEGER PRIMARY KEY (rowid=?)";
        let base = crate::meta::PersonFilter {
            limit: 100,
            ..Default::default()
        };
        let did = crate::meta::PersonFilter {
            distinct_id: Some("user-1".into()),
            ..base.clone()
        };
        assert_eq!(plan(&did)[0], by_id, "{:?}", plan(&did));
        let uuids = crate::meta::PersonFilter {
            uuids: Some(vec![uuid::Uuid::nil()]),
            ..base.clone()
        };
        assert_eq!(plan(&uuids)[0], by_id, "{:?}", plan(&uuids));
        assert!(
            plan(&base)[0].contains("persons_by_created"),
            "{:?}",
            plan(&base)
        );
    }

    /// The deletion stamp changes with every write to the deletion records
    /// or the blocked ids of its project, and only of its project; a
    /// database of schema 5 opened read-only counts the records, and a
    /// writer migrates it to versions.
    /// Detached records: read per person (and persons merged into it) and
    /// per id (by its hash; records made before migration 8 are hashed at
    /// the next open), erased per person to boundaries of no one's, per
    /// project; a read-only handle of schema 7 finds them by text, one of
    /// schema 6 finds none.
    #[test]
    fn detached_ids_are_kept_per_person_and_id_and_erased_per_person() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite3");
        let meta = SqliteMeta::open(&path).unwrap();
        let (p, q, r) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        meta.write(|tx| {
            tx.insert_detached(1, &p, "x", 10, 0)?;
            tx.insert_detached(1, &p, "y", 20, 0)?;
            tx.insert_detached(1, &q, "x", 30, 0)?;
            tx.insert_detached(2, &p, "z", 40, 0)?;
            tx.insert_override(1, &r, &p, 0)
        })
        .unwrap();
        let read =
            |project: i64, who: &[uuid::Uuid]| meta.read(|tx| tx.detached(project, who)).unwrap();
        assert_eq!(read(1, &[p]), vec![("x".into(), 10), ("y".into(), 20)]);
        assert_eq!(read(2, &[p]), vec![("z".into(), 40)]);
        assert_eq!(meta.read(|tx| tx.merged_into(1, &p)).unwrap(), vec![r]);
        let holders = |meta: &SqliteMeta, ids: &[&str]| {
            let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            let mut h = meta.read(|tx| tx.detached_holders(1, &ids)).unwrap();
            h.sort();
            h
        };
        let mut x = vec![("x".to_string(), p, 10), ("x".to_string(), q, 30)];
        x.sort();
        assert_eq!(holders(&meta, &["x", "w"]), x);
        // A record made before migration 8 has no hash until the next
        // open: found by its text meanwhile.
        meta.conn()
            .unwrap()
            .execute_batch(
                "UPDATE detached_ids SET id_hash = NULL; \
                 DELETE FROM meta WHERE key = 'detached_ids_hashed';",
            )
            .unwrap();
        assert_eq!(holders(&meta, &["x", "w"]), x);
        // Both halves of the lookup by the hash's index, no scan.
        let plan: Vec<String> = meta
            .conn()
            .unwrap()
            .prepare(&format!("EXPLAIN QUERY PLAN {}", tx::DETACHED_BY_HASH))
            .unwrap()
            .query_map(rusqlite::params![1, vec![0u8; 16], "x"], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let searches: Vec<&String> = plan.iter().filter(|l| l.contains("detached_ids")).collect();
        assert_eq!(searches.len(), 2, "{plan:?}");
        assert!(
            searches
                .iter()
                .all(|l| l.starts_with("SEARCH") && l.contains("detached_ids_by_hash")),
            "{plan:?}"
        );
        drop(meta);
        let meta = SqliteMeta::open(&path).unwrap();
        let unhashed: i64 = meta
            .conn()
            .unwrap()
            .query_row(
                "SELECT count(*) FROM detached_ids WHERE id_hash IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unhashed, 0);
        assert_eq!(holders(&meta, &["x", "w"]), x);
        let read =
            |project: i64, who: &[uuid::Uuid]| meta.read(|tx| tx.detached(project, who)).unwrap();
        meta.write(|tx| tx.erase_detached(1, &[p])).unwrap();
        assert_eq!(read(1, &[p, q]), vec![("x".into(), 30)]);
        let nil = uuid::Uuid::nil();
        let mut x = vec![("x".to_string(), nil, 10), ("x".to_string(), q, 30)];
        x.sort();
        assert_eq!(holders(&meta, &["x"]), x);
        assert_eq!(read(2, &[p]), vec![("z".into(), 40)]);
        let texts: Vec<String> = meta
            .conn()
            .unwrap()
            .prepare("SELECT distinct_id FROM detached_ids WHERE person_uuid = ?1")
            .unwrap()
            .query_map([nil.to_string()], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(texts, vec!["", ""], "an erased record keeps the id's text");
        // Schema 7, read-only: no hashes; the records of x by its text.
        meta.conn()
            .unwrap()
            .execute_batch(
                "DROP INDEX detached_ids_by_hash; ALTER TABLE detached_ids DROP COLUMN id_hash; \
                 PRAGMA user_version = 7;",
            )
            .unwrap();
        drop(meta);
        let old = SqliteMeta::open_read_only(&path).unwrap();
        assert_eq!(holders(&old, &["x"]), vec![("x".to_string(), q, 30)]);
        drop(old);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE detached_ids; PRAGMA user_version = 6;")
            .unwrap();
        drop(conn);
        let old = SqliteMeta::open_read_only(&path).unwrap();
        assert!(holders(&old, &["x"]).is_empty());
        assert!(old.read(|tx| tx.detached(1, &[q])).unwrap().is_empty());

        // A read-only handle of schema 7 reads by text until a writer
        // migrates the database; then by hash, boundaries included.
        let path = dir.path().join("m2.sqlite3");
        let meta = SqliteMeta::open(&path).unwrap();
        meta.write(|tx| {
            tx.insert_detached(1, &p, "x", 10, 0)?;
            tx.insert_detached(1, &q, "x", 30, 0)
        })
        .unwrap();
        meta.conn()
            .unwrap()
            .execute_batch(
                "DROP INDEX detached_ids_by_hash; ALTER TABLE detached_ids DROP COLUMN id_hash; \
                 DELETE FROM meta WHERE key = 'detached_ids_hashed'; DROP TABLE unfinished; \
                 PRAGMA user_version = 7;",
            )
            .unwrap();
        drop(meta);
        let old = SqliteMeta::open_read_only(&path).unwrap();
        let mut both = vec![("x".to_string(), p, 10), ("x".to_string(), q, 30)];
        both.sort();
        assert_eq!(holders(&old, &["x"]), both);
        let meta = SqliteMeta::open(&path).unwrap();
        meta.write(|tx| tx.erase_detached(1, &[p])).unwrap();
        let mut erased = vec![("x".to_string(), nil, 10), ("x".to_string(), q, 30)];
        erased.sort();
        assert_eq!(
            holders(&old, &["x"]),
            erased,
            "the handle read the old schema"
        );
    }

    #[test]
    fn the_deletion_stamp_follows_every_write_of_its_project() {
        use crate::deleted::DeletionStamp;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite3");
        let meta = SqliteMeta::open(&path).unwrap();
        let stamp = |p: i64| meta.read(|tx| tx.deletion_stamp(p)).unwrap();
        assert_eq!(stamp(1), DeletionStamp::Version(0));
        let mut seen = vec![stamp(1)];
        let mut changed = |s: DeletionStamp| {
            assert!(!seen.contains(&s), "{s:?} again after {seen:?}");
            seen.push(s);
        };
        meta.write(|tx| tx.block(1, "a", 1, 0)).unwrap();
        changed(stamp(1));
        // Blocking it again (INSERT OR REPLACE) is a write too.
        meta.write(|tx| tx.block(1, "a", 2, 0)).unwrap();
        changed(stamp(1));
        assert_eq!(stamp(2), DeletionStamp::Version(0));
        assert!(meta.write(|tx| tx.unblock(1, "a")).unwrap());
        changed(stamp(1));
        let add_record = |project: i64| {
            meta.conn()
                .unwrap()
                .execute(
                    "INSERT INTO deletions (project_id, person_uuid, created_at, delete_events, \
                     delete_recordings, keep_person, store_requests) VALUES (?1, 'u', 0, 0, 0, 0, '[]')",
                    params![project],
                )
                .unwrap()
        };
        add_record(1);
        changed(stamp(1));
        meta.conn()
            .unwrap()
            .execute("UPDATE deletions SET keep_person = 1", [])
            .unwrap();
        changed(stamp(1));
        meta.conn()
            .unwrap()
            .execute("DELETE FROM deletions", [])
            .unwrap();
        changed(stamp(1));
        assert_eq!(stamp(2), DeletionStamp::Version(0));
        // Schema 5: no versions. Read-only, the records are counted.
        add_record(1);
        meta.conn()
            .unwrap()
            .execute_batch(
                "DROP TABLE deletion_versions; DROP TRIGGER deletions_insert_version; \
                 DROP TRIGGER deletions_update_version; DROP TRIGGER deletions_delete_version; \
                 DROP TRIGGER blocked_insert_version; DROP TRIGGER blocked_update_version; \
                 DROP TRIGGER blocked_delete_version; DROP TABLE detached_ids; \
                 DROP TABLE unfinished; PRAGMA user_version = 5;",
            )
            .unwrap();
        drop(meta);
        let old = SqliteMeta::open_read_only(&path).unwrap();
        assert_eq!(
            old.read(|tx| tx.deletion_stamp(1)).unwrap(),
            DeletionStamp::Count(1)
        );
        drop(old);
        let meta = SqliteMeta::open(&path).unwrap();
        assert_eq!(
            meta.read(|tx| tx.deletion_stamp(1)).unwrap(),
            DeletionStamp::Version(0)
        );
        meta.write(|tx| tx.block(1, "b", 1, 0)).unwrap();
        assert_eq!(
            meta.read(|tx| tx.deletion_stamp(1)).unwrap(),
            DeletionStamp::Version(1)
        );
    }
}
