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

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{PersonsError, Result};
use crate::ids::id_hash;
use crate::meta::{
    Activity, ApiKey, CohortRow, DeletionRecord, IdLookup, MetaStore, MetaTx, NewPerson,
    PersonFilter, PersonRow, Project, ProjectRemoval, ProjectSettings, PropertyFilter,
    PropertyOperator,
};
use crate::sqlite_checkpoint::{Checkpointer, BACKSTOP_PAGES};

/// File name of the metadata database inside the data directory.
pub const METADATA_FILE: &str = "metadata.sqlite3";

/// Migrations, in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
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
];

/// The SQLite metadata store.
pub struct SqliteMeta {
    conn: Mutex<Connection>,
    key: [u8; 32],
    path: PathBuf,
    /// Checkpoints the log after commits (none for a read-only handle).
    pub(crate) checkpointer: Option<Checkpointer>,
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
        migrate(&mut conn, &path)?;
        let key = load_key(&mut conn)?;
        let checkpointer = Some(Checkpointer::start(&path)?);
        let meta = SqliteMeta {
            conn: Mutex::new(conn),
            key,
            path,
            checkpointer,
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

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
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
        let out = f(&mut SqliteTx {
            tx: &tx,
            key: &self.key,
        });
        // Nothing to keep: a read transaction ends by rolling back.
        drop(tx);
        out
    }

    fn scrub(&self) -> Result<()> {
        let conn = self.conn()?;
        // A reader on another connection (this process holds the only
        // writer), or the checkpoint thread's passive checkpoint, blocks
        // the truncation: retry briefly, then leave it to the next scrub
        // or the one every open runs.
        for attempt in 0..20 {
            let (busy, log, done): (i64, i64, i64) =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            if busy == 0 {
                return Ok(());
            }
            if attempt == 19 {
                tracing::error!(
                    log,
                    done,
                    "metadata log not truncated: another connection holds a read or a checkpoint; erased rows stay in the log until the next scrub or open"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }
}

struct SqliteTx<'a> {
    tx: &'a Connection,
    key: &'a [u8; 32],
}

const PERSON_COLUMNS: &str =
    "p.id, p.project_id, p.uuid, p.properties, p.created_at, p.is_identified, p.version";

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| PersonsError::Corrupt(format!("bad UUID {s:?} in metadata: {e}")))
}

/// A person row as read: converted in a second step so that JSON and UUID
/// errors become [`PersonsError::Corrupt`], not SQLite errors.
struct RawPerson {
    id: i64,
    project_id: i64,
    uuid: String,
    properties: String,
    created_at_us: i64,
    is_identified: bool,
    version: i64,
}

fn raw_person(r: &Row<'_>) -> rusqlite::Result<RawPerson> {
    Ok(RawPerson {
        id: r.get(0)?,
        project_id: r.get(1)?,
        uuid: r.get(2)?,
        properties: r.get(3)?,
        created_at_us: r.get(4)?,
        is_identified: r.get(5)?,
        version: r.get(6)?,
    })
}

impl RawPerson {
    fn cook(self) -> Result<PersonRow> {
        let properties = match serde_json::from_str::<Value>(&self.properties) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(PersonsError::Corrupt(format!(
                    "properties of person {} are not a JSON object",
                    self.id
                )))
            }
        };
        Ok(PersonRow {
            id: self.id,
            project_id: self.project_id,
            uuid: parse_uuid(&self.uuid)?,
            properties,
            created_at_us: self.created_at_us,
            is_identified: self.is_identified,
            version: self.version,
        })
    }
}

fn props_text(m: &Map<String, Value>) -> String {
    // A map of JSON values always serializes.
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

/// JSON path of a top-level key, for `json_extract`.
fn json_path(key: &str) -> Result<String> {
    if key.contains('"') || key.contains('\\') {
        return Err(PersonsError::InvalidInput(format!(
            "property key {key:?}: keys with quotes or backslashes cannot be filtered on"
        )));
    }
    Ok(format!("$.\"{key}\""))
}

/// SQL values a JSON filter value compares equal to, as `json_extract` returns them.
fn sql_value(v: &Value) -> Result<rusqlite::types::Value> {
    use rusqlite::types::Value as S;
    Ok(match v {
        Value::String(s) => S::Text(s.clone()),
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => S::Integer(i),
            None => S::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Null => S::Null,
        _ => {
            return Err(PersonsError::InvalidInput(format!(
                "filter value {v} must be a string, number, boolean or a list of those"
            )))
        }
    })
}

fn number(v: &Value, key: &str) -> Result<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        PersonsError::InvalidInput(format!("filter on {key:?}: gt/lt need a number, got {v}"))
    })
}

impl SqliteTx<'_> {
    fn hash(&self, project: i64, distinct_id: &str) -> Vec<u8> {
        id_hash(self.key, project, distinct_id).to_vec()
    }

    /// Rows of (integer, text, text) of a query taking an optional project.
    fn triples(&self, sql: &str, project: Option<i64>) -> Result<Vec<(i64, String, String)>> {
        let mut st = self.tx.prepare_cached(sql)?;
        let rows = st
            .query_map(params![project], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn one_person(&self, sql: &str, params: impl rusqlite::Params) -> Result<Option<PersonRow>> {
        let raw = self
            .tx
            .prepare_cached(sql)?
            .query_row(params, raw_person)
            .optional()?;
        raw.map(RawPerson::cook).transpose()
    }

    fn property_clause(
        &self,
        f: &PropertyFilter,
        sql: &mut String,
        args: &mut Vec<rusqlite::types::Value>,
    ) -> Result<()> {
        use rusqlite::types::Value as S;
        let path = json_path(&f.key)?;
        let values: Vec<&Value> = match &f.value {
            Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        let any_of = |sql: &mut String, args: &mut Vec<S>| -> Result<()> {
            if values.is_empty() {
                return Err(PersonsError::InvalidInput(format!(
                    "filter on {:?}: empty list of values",
                    f.key
                )));
            }
            sql.push('(');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                if v.is_null() {
                    sql.push_str("json_type(p.properties, ?) = 'null'");
                    args.push(S::Text(path.clone()));
                } else {
                    sql.push_str("json_extract(p.properties, ?) = ?");
                    args.push(S::Text(path.clone()));
                    args.push(sql_value(v)?);
                }
            }
            sql.push(')');
            Ok(())
        };
        match f.operator {
            PropertyOperator::Exact => any_of(sql, args)?,
            PropertyOperator::IsNot => {
                sql.push_str("(json_type(p.properties, ?) IS NULL OR NOT ");
                args.push(S::Text(path.clone()));
                any_of(sql, args)?;
                sql.push(')');
            }
            PropertyOperator::Icontains => {
                let needle = match &f.value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    v => {
                        return Err(PersonsError::InvalidInput(format!(
                            "filter on {:?}: icontains needs a string, got {v}",
                            f.key
                        )))
                    }
                };
                sql.push_str(
                    "instr(lower(CAST(json_extract(p.properties, ?) AS TEXT)), lower(?)) > 0",
                );
                args.push(S::Text(path));
                args.push(S::Text(needle));
            }
            PropertyOperator::IsSet => {
                sql.push_str("json_type(p.properties, ?) IS NOT NULL");
                args.push(S::Text(path));
            }
            PropertyOperator::IsNotSet => {
                sql.push_str("json_type(p.properties, ?) IS NULL");
                args.push(S::Text(path));
            }
            PropertyOperator::Gt | PropertyOperator::Lt => {
                let op = if f.operator == PropertyOperator::Gt {
                    ">"
                } else {
                    "<"
                };
                sql.push_str(&format!(
                    "(json_type(p.properties, ?) IN ('integer', 'real') AND json_extract(p.properties, ?) {op} ?)"
                ));
                args.push(S::Text(path.clone()));
                args.push(S::Text(path));
                args.push(S::Real(number(&f.value, &f.key)?));
            }
        }
        Ok(())
    }
}

impl MetaTx for SqliteTx<'_> {
    fn project(&mut self, id: i64) -> Result<Option<Project>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id, name, api_token, created_at, settings FROM projects WHERE id = ?1",
            )?
            .query_row(params![id], project_row)
            .optional()?)
    }

    fn project_by_token(&mut self, token: &str) -> Result<Option<Project>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id, name, api_token, created_at, settings FROM projects WHERE api_token = ?1",
            )?
            .query_row(params![token], project_row)
            .optional()?)
    }

    fn projects(&mut self) -> Result<Vec<Project>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, name, api_token, created_at, settings FROM projects ORDER BY id",
        )?;
        let rows = st.query_map([], project_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_project(&mut self, p: &Project) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO projects (id, name, api_token, created_at, settings) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                p.id,
                p.name,
                p.api_token,
                p.created_at_us,
                settings_text(&p.settings)?
            ])?;
        Ok(())
    }

    fn update_project(&mut self, p: &Project) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE projects SET name = ?2, settings = ?3 WHERE id = ?1")?
            .execute(params![p.id, p.name, settings_text(&p.settings)?])?;
        Ok(())
    }

    fn max_project_id(&mut self) -> Result<i64> {
        // Never reuse a dropped project's id: scripts and logs that
        // name it must not come to mean another project.
        Ok(self.tx.query_row(
            "SELECT max(coalesce((SELECT max(id) FROM projects), 0), \
                        coalesce((SELECT value FROM meta WHERE key = 'max_dropped_project_id'), 0))",
            [],
            |r| r.get(0),
        )?)
    }

    fn insert_api_key(&mut self, k: &ApiKey, hash: &[u8; 32]) -> Result<i64> {
        self.tx
            .prepare_cached(
                "INSERT INTO api_keys (project_id, label, scopes, key_hash, mask, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                k.project_id,
                k.label,
                k.scopes.join(","),
                hash.as_slice(),
                k.mask,
                k.created_at_us
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    fn api_key_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<(ApiKey, Vec<u8>)>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id, project_id, label, scopes, mask, created_at, last_used_at, revoked_at, key_hash \
                 FROM api_keys WHERE key_hash = ?1",
            )?
            .query_row(params![hash.as_slice()], |r| {
                Ok((api_key_row(r)?, r.get::<_, Vec<u8>>(8)?))
            })
            .optional()?)
    }

    fn api_keys(&mut self, project: i64) -> Result<Vec<ApiKey>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, project_id, label, scopes, mask, created_at, last_used_at, revoked_at \
             FROM api_keys WHERE project_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![project], api_key_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_api_key(&mut self, project: i64, id: i64, now_us: i64) -> Result<bool> {
        Ok(self.tx.execute(
            "UPDATE api_keys SET revoked_at = ?3 WHERE project_id = ?1 AND id = ?2 AND revoked_at IS NULL",
            params![project, id, now_us],
        )? > 0)
    }

    fn touch_api_key(&mut self, id: i64, now_us: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
            params![id, now_us],
        )?;
        Ok(())
    }

    fn delete_project(&mut self, id: i64) -> Result<ProjectRemoval> {
        let tx = self.tx;
        let distinct_ids = tx.execute(
            "DELETE FROM distinct_ids WHERE project_id = ?1",
            params![id],
        )? as u64;
        let persons = tx.execute("DELETE FROM persons WHERE project_id = ?1", params![id])? as u64;
        tx.execute(
            "DELETE FROM blocked_distinct_ids WHERE project_id = ?1",
            params![id],
        )?;
        tx.execute(
            "DELETE FROM person_overrides WHERE project_id = ?1",
            params![id],
        )?;
        let deletions =
            tx.execute("DELETE FROM deletions WHERE project_id = ?1", params![id])? as u64;
        let activity =
            tx.execute("DELETE FROM activity WHERE project_id = ?1", params![id])? as u64;
        tx.execute("DELETE FROM api_keys WHERE project_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM cohort_people WHERE cohort_id IN (SELECT id FROM cohorts WHERE project_id = ?1)",
            params![id],
        )?;
        tx.execute("DELETE FROM cohorts WHERE project_id = ?1", params![id])?;
        tx.execute("DELETE FROM projects WHERE id = ?1", params![id])?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('max_dropped_project_id', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            params![id],
        )?;
        Ok(ProjectRemoval {
            persons,
            distinct_ids,
            deletions,
            activity,
        })
    }

    fn person_by_distinct_id(
        &mut self,
        project: i64,
        distinct_id: &str,
    ) -> Result<Option<PersonRow>> {
        let h = self.hash(project, distinct_id);
        self.one_person(
            &format!(
                "SELECT {PERSON_COLUMNS} FROM distinct_ids d JOIN persons p ON p.id = d.person_id \
                 WHERE d.project_id = ?1 AND d.id_hash = ?2 AND d.distinct_id = ?3"
            ),
            params![project, h, distinct_id],
        )
    }

    fn lookup_distinct_id(&mut self, project: i64, distinct_id: &str) -> Result<IdLookup> {
        let h = self.hash(project, distinct_id);
        let (id, uuid, blocked): (Option<i64>, Option<String>, bool) = self
            .tx
            .prepare_cached(
                "SELECT p.id, p.uuid, EXISTS (SELECT 1 FROM blocked_distinct_ids b \
                     WHERE b.project_id = ?1 AND b.id_hash = ?2) \
                 FROM (SELECT 1) \
                 LEFT JOIN distinct_ids d ON d.project_id = ?1 AND d.id_hash = ?2 AND d.distinct_id = ?3 \
                 LEFT JOIN persons p ON p.id = d.person_id",
            )?
            .query_row(params![project, h, distinct_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        Ok(match (id, uuid) {
            (Some(id), Some(u)) => IdLookup::Person(id, parse_uuid(&u)?),
            _ => IdLookup::Absent { blocked },
        })
    }

    fn person_by_id(&mut self, project: i64, id: i64) -> Result<Option<PersonRow>> {
        self.one_person(
            &format!(
                "SELECT {PERSON_COLUMNS} FROM persons p WHERE p.project_id = ?1 AND p.id = ?2"
            ),
            params![project, id],
        )
    }

    fn person_by_uuid(&mut self, project: i64, uuid: &Uuid) -> Result<Option<PersonRow>> {
        self.one_person(
            &format!(
                "SELECT {PERSON_COLUMNS} FROM persons p WHERE p.project_id = ?1 AND p.uuid = ?2"
            ),
            params![project, uuid.to_string()],
        )
    }

    fn uuid_taken(&mut self, project: i64, uuid: &Uuid) -> Result<bool> {
        let u = uuid.to_string();
        let n: i64 = self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM persons WHERE project_id = ?1 AND uuid = ?2) \
                     OR EXISTS (SELECT 1 FROM deletions WHERE project_id = ?1 AND person_uuid = ?2) \
                     OR EXISTS (SELECT 1 FROM person_overrides WHERE project_id = ?1 AND old_person_uuid = ?2)",
            )?
            .query_row(params![project, u], |r| r.get(0))?;
        Ok(n != 0)
    }

    fn insert_person(&mut self, p: &NewPerson) -> Result<PersonRow> {
        self.tx
            .prepare_cached(
                "INSERT INTO persons (project_id, uuid, properties, created_at, is_identified, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )?
            .execute(params![
                p.project_id,
                p.uuid.to_string(),
                props_text(&p.properties),
                p.created_at_us,
                p.is_identified
            ])?;
        Ok(PersonRow {
            id: self.tx.last_insert_rowid(),
            project_id: p.project_id,
            uuid: p.uuid,
            properties: p.properties.clone(),
            created_at_us: p.created_at_us,
            is_identified: p.is_identified,
            version: 0,
        })
    }

    fn update_person(&mut self, p: &PersonRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE persons SET properties = ?1, created_at = ?2, is_identified = ?3, version = ?4 \
                 WHERE id = ?5",
            )?
            .execute(params![
                props_text(&p.properties),
                p.created_at_us,
                p.is_identified,
                p.version,
                p.id
            ])?;
        Ok(())
    }

    fn delete_person(&mut self, project: i64, id: i64) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM distinct_ids WHERE project_id = ?1 AND person_id = ?2")?
            .execute(params![project, id])?;
        self.tx
            .prepare_cached("DELETE FROM cohort_people WHERE person_id = ?1")?
            .execute(params![id])?;
        self.tx
            .prepare_cached("DELETE FROM persons WHERE project_id = ?1 AND id = ?2")?
            .execute(params![project, id])?;
        Ok(())
    }

    fn distinct_ids(&mut self, project: i64, person_id: i64) -> Result<Vec<String>> {
        let mut st = self.tx.prepare_cached(
            "SELECT distinct_id FROM distinct_ids WHERE person_id = ?1 AND project_id = ?2 ORDER BY id",
        )?;
        let rows = st.query_map(params![person_id, project], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_distinct_id(&mut self, project: i64, distinct_id: &str, person_id: i64) -> Result<()> {
        let h = self.hash(project, distinct_id);
        self.tx
            .prepare_cached(
                "INSERT INTO distinct_ids (project_id, id_hash, distinct_id, person_id) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![project, h, distinct_id, person_id])?;
        Ok(())
    }

    fn move_distinct_id(&mut self, project: i64, distinct_id: &str, person_id: i64) -> Result<()> {
        let h = self.hash(project, distinct_id);
        self.tx
            .prepare_cached(
                "UPDATE distinct_ids SET person_id = ?1 WHERE project_id = ?2 AND id_hash = ?3 AND distinct_id = ?4",
            )?
            .execute(params![person_id, project, h, distinct_id])?;
        Ok(())
    }

    fn move_all_distinct_ids(&mut self, project: i64, from: i64, to: i64) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE distinct_ids SET person_id = ?1 WHERE project_id = ?2 AND person_id = ?3",
            )?
            .execute(params![to, project, from])?;
        Ok(())
    }

    fn remove_distinct_id(&mut self, project: i64, distinct_id: &str) -> Result<bool> {
        let h = self.hash(project, distinct_id);
        let n = self
            .tx
            .prepare_cached(
                "DELETE FROM distinct_ids WHERE project_id = ?1 AND id_hash = ?2 AND distinct_id = ?3",
            )?
            .execute(params![project, h, distinct_id])?;
        Ok(n > 0)
    }

    fn list_persons(&mut self, project: i64, filter: &PersonFilter) -> Result<Vec<PersonRow>> {
        use rusqlite::types::Value as S;
        let mut sql = format!("SELECT {PERSON_COLUMNS} FROM persons p WHERE p.project_id = ?");
        let mut args: Vec<S> = vec![S::Integer(project)];
        let owns_id = "EXISTS (SELECT 1 FROM distinct_ids d WHERE d.person_id = p.id \
                       AND d.project_id = ? AND d.id_hash = ? AND d.distinct_id = ?)";
        if let Some(did) = &filter.distinct_id {
            sql.push_str(" AND ");
            sql.push_str(owns_id);
            args.extend([
                S::Integer(project),
                S::Blob(self.hash(project, did)),
                S::Text(did.clone()),
            ]);
        }
        if let Some(email) = &filter.email {
            sql.push_str(" AND json_extract(p.properties, '$.email') = ?");
            args.push(S::Text(email.clone()));
        }
        if let Some(s) = &filter.search {
            sql.push_str(
                " AND (instr(lower(CAST(json_extract(p.properties, '$.email') AS TEXT)), lower(?)) > 0 \
                 OR instr(lower(CAST(json_extract(p.properties, '$.name') AS TEXT)), lower(?)) > 0 \
                 OR p.uuid = lower(?) OR ",
            );
            args.extend([S::Text(s.clone()), S::Text(s.clone()), S::Text(s.clone())]);
            sql.push_str(owns_id);
            sql.push(')');
            args.extend([
                S::Integer(project),
                S::Blob(self.hash(project, s)),
                S::Text(s.clone()),
            ]);
        }
        for f in &filter.properties {
            sql.push_str(" AND ");
            self.property_clause(f, &mut sql, &mut args)?;
        }
        if let Some(uuids) = &filter.uuids {
            // One parameter however many: a JSON list of the UUIDs' text.
            let list: Vec<String> = uuids.iter().map(|u| u.hyphenated().to_string()).collect();
            sql.push_str(" AND p.uuid IN (SELECT value FROM json_each(?))");
            args.push(S::Text(
                serde_json::to_string(&list)
                    .map_err(|e| PersonsError::Internal(format!("uuid list: {e}")))?,
            ));
        }
        sql.push_str(" ORDER BY p.created_at DESC, p.id DESC LIMIT ? OFFSET ?");
        args.push(S::Integer(i64::try_from(filter.limit).unwrap_or(i64::MAX)));
        args.push(S::Integer(i64::try_from(filter.offset).unwrap_or(i64::MAX)));
        let mut st = self.tx.prepare(&sql)?;
        let raws = st
            .query_map(params_from_iter(args), raw_person)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawPerson::cook).collect()
    }

    fn all_persons(&mut self, project: Option<i64>) -> Result<Vec<PersonRow>> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {PERSON_COLUMNS} FROM persons p WHERE ?1 IS NULL OR p.project_id = ?1 ORDER BY p.id"
        ))?;
        let raws = st
            .query_map(params![project], raw_person)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawPerson::cook).collect()
    }

    fn all_distinct_ids(&mut self, project: Option<i64>) -> Result<Vec<(i64, String, Uuid)>> {
        self.triples(
            "SELECT d.project_id, d.distinct_id, p.uuid FROM distinct_ids d JOIN persons p ON p.id = d.person_id \
             WHERE ?1 IS NULL OR d.project_id = ?1 ORDER BY d.id",
            project,
        )?
        .into_iter()
        .map(|(p, d, u)| Ok((p, d, parse_uuid(&u)?)))
        .collect()
    }

    fn block(
        &mut self,
        project: i64,
        distinct_id: &str,
        deletion_id: i64,
        now_us: i64,
    ) -> Result<()> {
        let h = self.hash(project, distinct_id);
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO blocked_distinct_ids (project_id, id_hash, deletion_id, blocked_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![project, h, deletion_id, now_us])?;
        Ok(())
    }

    fn unblock(&mut self, project: i64, distinct_id: &str) -> Result<bool> {
        let h = self.hash(project, distinct_id);
        let n = self
            .tx
            .prepare_cached(
                "DELETE FROM blocked_distinct_ids WHERE project_id = ?1 AND id_hash = ?2",
            )?
            .execute(params![project, h])?;
        Ok(n > 0)
    }

    fn insert_override(&mut self, project: i64, old: &Uuid, new: &Uuid, now_us: i64) -> Result<()> {
        // Overrides that pointed at `old` now point at `new`: one hop always.
        self.tx
            .prepare_cached(
                "UPDATE person_overrides SET override_person_uuid = ?1 \
                 WHERE project_id = ?2 AND override_person_uuid = ?3",
            )?
            .execute(params![new.to_string(), project, old.to_string()])?;
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO person_overrides (project_id, old_person_uuid, override_person_uuid, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![project, old.to_string(), new.to_string(), now_us])?;
        Ok(())
    }

    fn overrides(&mut self, project: Option<i64>) -> Result<Vec<(i64, Uuid, Uuid)>> {
        self.triples(
            "SELECT project_id, old_person_uuid, override_person_uuid FROM person_overrides \
             WHERE ?1 IS NULL OR project_id = ?1",
            project,
        )?
        .into_iter()
        .map(|(p, o, n)| Ok((p, parse_uuid(&o)?, parse_uuid(&n)?)))
        .collect()
    }

    fn insert_deletion(&mut self, d: &DeletionRecord) -> Result<i64> {
        let requests = serde_json::to_string(&d.store_requests)
            .map_err(|e| PersonsError::Internal(format!("encoding request ids: {e}")))?;
        self.tx
            .prepare_cached(
                "INSERT INTO deletions (project_id, person_uuid, created_at, delete_events, delete_recordings, \
                 keep_person, store_requests) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                d.project_id,
                d.person_uuid.to_string(),
                d.created_at_us,
                d.delete_events,
                d.delete_recordings,
                d.keep_person,
                requests
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    fn deletions(&mut self, project: i64, person: Option<&Uuid>) -> Result<Vec<DeletionRecord>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, project_id, person_uuid, created_at, delete_events, delete_recordings, keep_person, \
             store_requests FROM deletions WHERE project_id = ?1 AND (?2 IS NULL OR person_uuid = ?2) \
             ORDER BY id DESC",
        )?;
        let rows = st
            .query_map(params![project, person.map(|u| u.to_string())], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, bool>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, project_id, u, at, ev, rec, keep, reqs)| {
                Ok(DeletionRecord {
                    id,
                    project_id,
                    person_uuid: parse_uuid(&u)?,
                    created_at_us: at,
                    delete_events: ev,
                    delete_recordings: rec,
                    keep_person: keep,
                    store_requests: serde_json::from_str(&reqs).map_err(|e| {
                        PersonsError::Corrupt(format!("request ids of deletion {id}: {e}"))
                    })?,
                })
            })
            .collect()
    }

    fn insert_activity(
        &mut self,
        project: i64,
        person: Option<&Uuid>,
        activity: &str,
        detail: Option<&Value>,
        now_us: i64,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO activity (project_id, person_uuid, activity, detail, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                project,
                person.map(|u| u.to_string()),
                activity,
                detail.map(|d| d.to_string()),
                now_us
            ])?;
        Ok(())
    }

    fn block_hash(
        &mut self,
        project: i64,
        hash: &[u8; 16],
        deletion_id: i64,
        now_us: i64,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO blocked_distinct_ids (project_id, id_hash, deletion_id, blocked_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![project, hash.as_slice(), deletion_id, now_us])?;
        Ok(())
    }

    fn insert_cohort(&mut self, c: &CohortRow) -> Result<i64> {
        crate::sqlite_cohorts::insert(self.tx, c)
    }

    fn update_cohort(&mut self, c: &CohortRow) -> Result<()> {
        crate::sqlite_cohorts::update(self.tx, c)
    }

    fn cohort(&mut self, project: i64, id: i64) -> Result<Option<CohortRow>> {
        crate::sqlite_cohorts::get(self.tx, project, id)
    }

    fn cohorts(&mut self, project: i64) -> Result<Vec<CohortRow>> {
        crate::sqlite_cohorts::list(self.tx, project)
    }

    fn delete_cohort(&mut self, project: i64, id: i64) -> Result<bool> {
        crate::sqlite_cohorts::delete(self.tx, project, id)
    }

    fn add_cohort_people(&mut self, cohort: i64, person_ids: &[i64]) -> Result<u64> {
        crate::sqlite_cohorts::add_people(self.tx, cohort, person_ids)
    }

    fn remove_cohort_people(&mut self, cohort: i64, person_ids: &[i64]) -> Result<u64> {
        crate::sqlite_cohorts::remove_people(self.tx, cohort, person_ids)
    }

    fn cohort_people(&mut self, cohort: i64) -> Result<Vec<Uuid>> {
        crate::sqlite_cohorts::people(self.tx, cohort)
    }

    fn static_cohorts_of(&mut self, person_id: i64) -> Result<Vec<i64>> {
        crate::sqlite_cohorts::of_person(self.tx, person_id)
    }

    fn move_cohort_people(&mut self, from: i64, to: i64) -> Result<()> {
        crate::sqlite_cohorts::move_people(self.tx, from, to)
    }

    fn insert_ingest_token(&mut self, token: &str, now_us: i64) -> Result<()> {
        self.tx.execute(
            "INSERT INTO ingest_tokens (token, created_at) VALUES (?1, ?2)",
            params![token, now_us],
        )?;
        Ok(())
    }

    fn has_ingest_token(&mut self, token: &str) -> Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM ingest_tokens WHERE token = ?1",
                params![token],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn retain_ingest_tokens(&mut self, keep: &[String]) -> Result<()> {
        let all: Vec<String> = {
            let mut stmt = self.tx.prepare("SELECT token FROM ingest_tokens")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<std::result::Result<_, _>>()?;
            rows
        };
        for t in all.iter().filter(|t| !keep.contains(t)) {
            self.tx
                .execute("DELETE FROM ingest_tokens WHERE token = ?1", params![t])?;
        }
        Ok(())
    }

    fn scrub_activity(&mut self, project: i64, person: &Uuid) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE activity SET detail = NULL WHERE project_id = ?1 AND person_uuid = ?2",
            )?
            .execute(params![project, person.to_string()])?;
        Ok(())
    }

    fn activity(
        &mut self,
        project: i64,
        person: Option<&Uuid>,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, project_id, person_uuid, activity, detail, created_at FROM activity \
             WHERE project_id = ?1 AND (?2 IS NULL OR person_uuid = ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st
            .query_map(
                params![
                    project,
                    person.map(|u| u.to_string()),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, project_id, u, activity, detail, at)| {
                Ok(Activity {
                    id,
                    project_id,
                    person_uuid: u.as_deref().map(parse_uuid).transpose()?,
                    activity,
                    detail: detail
                        .map(|d| serde_json::from_str(&d))
                        .transpose()
                        .map_err(|e| PersonsError::Corrupt(format!("activity {id} detail: {e}")))?,
                    created_at_us: at,
                })
            })
            .collect()
    }
}

fn project_row(r: &Row<'_>) -> rusqlite::Result<Project> {
    let settings: String = r.get(4)?;
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        api_token: r.get(2)?,
        created_at_us: r.get(3)?,
        // A setting this version does not know, or a damaged text, falls
        // back to the defaults rather than making the project unreadable.
        settings: serde_json::from_str(&settings).unwrap_or_default(),
    })
}

fn settings_text(s: &ProjectSettings) -> Result<String> {
    serde_json::to_string(s).map_err(|e| PersonsError::Internal(format!("project settings: {e}")))
}

fn api_key_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = r.get(3)?;
    Ok(ApiKey {
        id: r.get(0)?,
        project_id: r.get(1)?,
        label: r.get(2)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        mask: r.get(4)?,
        created_at_us: r.get(5)?,
        last_used_at_us: r.get(6)?,
        revoked_at_us: r.get(7)?,
    })
}
