//! The metadata database's schema: numbered migrations, applied in order
//! and counted in `PRAGMA user_version`; a database from a newer elide is
//! refused.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{PersonsError, Result};

/// The schema version from which `deletion_versions` exists.
pub(super) const DELETION_VERSIONS: i64 = 6;
/// The first schema with `detached_ids` (migration 7) ...
pub(super) const DETACHED_IDS: i64 = 7;
/// ... and with their hashes (migration 8).
pub(super) const DETACHED_HASHES: i64 = 8;

/// Migrations, in order; `user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        api_token TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE persons (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        properties TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        is_identified INTEGER NOT NULL,
        version INTEGER NOT NULL,
        UNIQUE (project_id, uuid)
    );
    CREATE INDEX persons_by_created ON persons (project_id, created_at DESC, id DESC);
    CREATE TABLE distinct_ids (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        id_hash BLOB NOT NULL,
        distinct_id TEXT NOT NULL,
        person_id INTEGER NOT NULL REFERENCES persons (id)
    );
    CREATE UNIQUE INDEX distinct_ids_by_hash ON distinct_ids (project_id, id_hash);
    CREATE INDEX distinct_ids_by_person ON distinct_ids (person_id, id);
    CREATE TABLE blocked_distinct_ids (
        project_id INTEGER NOT NULL,
        id_hash BLOB NOT NULL,
        deletion_id INTEGER NOT NULL,
        blocked_at INTEGER NOT NULL,
        PRIMARY KEY (project_id, id_hash)
    ) WITHOUT ROWID;
    CREATE TABLE person_overrides (
        project_id INTEGER NOT NULL,
        old_person_uuid TEXT NOT NULL,
        override_person_uuid TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project_id, old_person_uuid)
    ) WITHOUT ROWID;
    CREATE TABLE deletions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        person_uuid TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        delete_events INTEGER NOT NULL,
        delete_recordings INTEGER NOT NULL,
        keep_person INTEGER NOT NULL,
        store_requests TEXT NOT NULL
    );
    CREATE INDEX deletions_by_person ON deletions (project_id, person_uuid);
    CREATE TABLE activity (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        person_uuid TEXT,
        activity TEXT NOT NULL,
        detail TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX activity_by_person ON activity (project_id, person_uuid, id);
    "#,
    // 2: tokens of two-phase captures (crash recovery of capture).
    r#"
    CREATE TABLE ingest_tokens (token TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
    "#,
    // 3: project settings and personal API keys (only their hashes).
    r#"
    ALTER TABLE projects ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        label TEXT NOT NULL,
        scopes TEXT NOT NULL,
        key_hash BLOB NOT NULL UNIQUE,
        mask TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX api_keys_by_project ON api_keys (project_id, id);
    "#,
    // 4: cohorts, and the lists of static ones (by person id: removed in
    // the transaction that deletes the person).
    r#"
    CREATE TABLE cohorts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        is_static INTEGER NOT NULL,
        filters TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX cohorts_by_project ON cohorts (project_id, id);
    CREATE TABLE cohort_people (
        cohort_id INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        PRIMARY KEY (cohort_id, person_id)
    ) WITHOUT ROWID;
    CREATE INDEX cohort_people_by_person ON cohort_people (person_id, cohort_id);
    "#,
    // 5: overrides by the person they point to: a merge repoints the
    // overrides that pointed to the merged person, which scanned every
    // override of the project (a batch of merges was quadratic).
    r#"
    CREATE INDEX person_overrides_by_override ON person_overrides (project_id, override_person_uuid);
    "#,
    // 6: a per-project version of what the analytics read of deleted
    // persons (their deletion records and blocked ids), bumped by triggers
    // on every write to either table, so that a cache of them is checked by
    // one lookup and no write path can forget to invalidate it.
    r#"
    CREATE TABLE deletion_versions (
        project_id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    );
    CREATE TRIGGER deletions_insert_version AFTER INSERT ON deletions BEGIN
        INSERT INTO deletion_versions (project_id, version) VALUES (NEW.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER deletions_update_version AFTER UPDATE ON deletions BEGIN
        INSERT INTO deletion_versions (project_id, version) VALUES (OLD.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
        INSERT INTO deletion_versions (project_id, version) VALUES (NEW.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER deletions_delete_version AFTER DELETE ON deletions BEGIN
        INSERT INTO deletion_versions (project_id, version) VALUES (OLD.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER blocked_insert_version AFTER INSERT ON blocked_distinct_ids BEGIN
        INSERT INTO deletion_versions (project_id, version) VALUES (NEW.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER blocked_update_version AFTER UPDATE ON blocked_distinct_ids BEGIN
        INSERT INTO deletion_versions (project_id, version) VALUES (OLD.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
        INSERT INTO deletion_versions (project_id, version) VALUES (NEW.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER blocked_delete_version AFTER DELETE ON blocked_distinct_ids BEGIN
        INSERT INTO deletion_versions (project_id, version) VALUES (OLD.project_id, 1)
            ON CONFLICT (project_id) DO UPDATE SET version = version + 1;
    END;
    "#,
    // 7: distinct ids a reset or a split detached from a live person, with
    // the `_seq` cut-off then: the rows of the id below it are that person's
    // (stored with its person id), so the person's deletion deletes them.
    // Indexed by person, never by the id's text (see `distinct_ids`).
    r#"
    CREATE TABLE detached_ids (
        project_id INTEGER NOT NULL,
        person_uuid TEXT NOT NULL,
        distinct_id TEXT NOT NULL,
        cutoff_seq INTEGER NOT NULL,
        detached_at INTEGER NOT NULL
    );
    CREATE INDEX detached_ids_by_person ON detached_ids (project_id, person_uuid);
    "#,
    // 8: the detached ids' keyed hashes, so a deletion finds who held an
    // id before (the floor of its request) by an index that never holds
    // the id's text; `SqliteMeta::open` hashes the records made before.
    r#"
    ALTER TABLE detached_ids ADD COLUMN id_hash BLOB;
    CREATE INDEX detached_ids_by_hash ON detached_ids (project_id, id_hash);
    "#,
    // 9: operations begun and not finished (a person's deletion, a
    // project's drop): written before the store's step, removed by the
    // metadata transaction that finishes them; an open finishes any a
    // crash left (`open.rs`). Person UUIDs only, never distinct ids.
    r#"
    CREATE TABLE unfinished (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        op TEXT NOT NULL,
        person_uuid TEXT,
        delete_events INTEGER NOT NULL DEFAULT 0,
        delete_recordings INTEGER NOT NULL DEFAULT 0,
        keep_person INTEGER NOT NULL DEFAULT 0,
        below_seq INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX unfinished_by_person ON unfinished (project_id, person_uuid);
    "#,
];

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(PersonsError::Corrupt(format!(
            "{} has schema version {version}, newer than this elide knows ({known}); upgrade elide",
            path.display()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = i + 1, "metadata schema migrated");
    }
    Ok(())
}
