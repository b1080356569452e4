//! [`MetaTx`] over one SQLite transaction: every read and write of the
//! metadata, distinct ids looked up by their keyed hash.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{PersonsError, Result};
use crate::ids::id_hash;
use crate::meta::{
    Activity, ApiKey, CohortRow, DeletionRecord, DeletionScope, IdLookup, MetaTx, NewPerson,
    PersonFilter, PersonRow, PersonText, Project, ProjectRemoval, ProjectSettings, Unfinished,
};

pub(super) struct SqliteTx<'a> {
    pub(super) tx: &'a Connection,
    pub(super) key: &'a [u8; 32],
    /// The schema's version (a read-only handle may read an old one).
    pub(super) schema: i64,
}

/// The records of an id, by its hash (both halves by the hash's index):
/// those a crash left unhashed too, by their text (none once a writer
/// has opened the database).
pub(super) const DETACHED_BY_HASH: &str =
    "SELECT rowid, distinct_id, person_uuid, cutoff_seq FROM detached_ids \
     WHERE project_id = ?1 AND id_hash = ?2 \
     UNION ALL \
     SELECT rowid, distinct_id, person_uuid, cutoff_seq FROM detached_ids \
     WHERE project_id = ?1 AND id_hash IS NULL AND distinct_id = ?3 \
     ORDER BY 1";

pub(super) const PERSON_COLUMNS: &str =
    "p.id, p.project_id, p.uuid, p.properties, p.created_at, p.is_identified, p.version";

/// A merge repoints the overrides that pointed to the merged person.
/// `INDEXED BY`: without statistics, SQLite 3.50 plans this update by the
/// primary key's `project_id` (it avoids the index on the column it
/// changes), so each merge read every override of the project and a batch
/// of merges was quadratic; with the clause the statement uses the index
/// or fails to prepare.
pub(super) const REPOINT_OVERRIDES: &str =
    "UPDATE person_overrides INDEXED BY person_overrides_by_override \
     SET override_person_uuid = ?1 WHERE project_id = ?2 AND override_person_uuid = ?3";

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
    /// The row as its text, checked: a UUID (in its hyphenated lowercase
    /// form, as stored; another form is formatted so), properties a JSON
    /// object.
    fn checked(&self) -> Result<PersonText<'_>> {
        let mut buf = Uuid::encode_buffer();
        let canonical = parse_uuid(&self.uuid)?.hyphenated().encode_lower(&mut buf);
        let uuid = if *canonical == *self.uuid {
            std::borrow::Cow::Borrowed(self.uuid.as_str())
        } else {
            std::borrow::Cow::Owned(canonical.to_string())
        };
        elide_store::normalize::validate_json_object(&self.properties)
            .map_err(|e| PersonsError::Corrupt(format!("properties of person {}: {e}", self.id)))?;
        Ok(PersonText {
            id: self.id,
            project_id: self.project_id,
            uuid,
            properties: &self.properties,
            created_at_us: self.created_at_us,
            is_identified: self.is_identified,
            version: self.version,
        })
    }

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
            properties_len: self.properties.len(),
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

impl SqliteTx<'_> {
    pub(super) fn hash(&self, project: i64, distinct_id: &str) -> Vec<u8> {
        id_hash(self.key, project, distinct_id).to_vec()
    }

    /// Rows of (integer, text, text) of a query taking an optional project.
    /// The rows of `sql` (three columns, `?1` the project), one at a time.
    fn each_triple(
        &self,
        sql: &str,
        project: Option<i64>,
        f: &mut dyn FnMut(i64, String, String) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.tx.prepare_cached(sql)?;
        let mut rows = st.query(params![project])?;
        while let Some(r) = rows.next()? {
            f(r.get(0)?, r.get(1)?, r.get(2)?)?;
        }
        Ok(())
    }

    fn one_person(&self, sql: &str, params: impl rusqlite::Params) -> Result<Option<PersonRow>> {
        let raw = self
            .tx
            .prepare_cached(sql)?
            .query_row(params, raw_person)
            .optional()?;
        raw.map(RawPerson::cook).transpose()
    }

    /// Every person of a project (or of all projects) in id order, as
    /// read, one at a time (see [`MetaTx::each_person`]).
    fn each_raw_person(
        &self,
        project: Option<i64>,
        f: &mut dyn FnMut(RawPerson) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {PERSON_COLUMNS} FROM persons p WHERE ?1 IS NULL OR p.project_id = ?1 ORDER BY p.id"
        ))?;
        let mut rows = st.query(params![project])?;
        while let Some(r) = rows.next()? {
            f(raw_person(r)?)?;
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

    fn max_dropped_project_id(&mut self) -> Result<i64> {
        Ok(self.tx.query_row(
            "SELECT coalesce((SELECT value FROM meta WHERE key = 'max_dropped_project_id'), 0)",
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
        tx.execute(
            "DELETE FROM detached_ids WHERE project_id = ?1",
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
        // The drop itself, and the project's deletions left unfinished:
        // nothing of the project is left for them to delete.
        tx.execute("DELETE FROM unfinished WHERE project_id = ?1", params![id])?;
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
        let properties = props_text(&p.properties);
        self.tx
            .prepare_cached(
                "INSERT INTO persons (project_id, uuid, properties, created_at, is_identified, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )?
            .execute(params![
                p.project_id,
                p.uuid.to_string(),
                properties,
                p.created_at_us,
                p.is_identified
            ])?;
        Ok(PersonRow {
            id: self.tx.last_insert_rowid(),
            project_id: p.project_id,
            uuid: p.uuid,
            properties: p.properties.clone(),
            properties_len: properties.len(),
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
        let (sql, args) = self.list_query(project, filter)?;
        let mut st = self.tx.prepare(&sql)?;
        let raws = st
            .query_map(params_from_iter(args), raw_person)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawPerson::cook).collect()
    }

    fn each_person(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(PersonRow) -> Result<()>,
    ) -> Result<()> {
        self.each_raw_person(project, &mut |r| f(r.cook()?))
    }

    fn each_person_text(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(PersonText<'_>) -> Result<()>,
    ) -> Result<()> {
        self.each_raw_person(project, &mut |r| f(r.checked()?))
    }

    fn each_distinct_id(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(i64, String, Uuid) -> Result<()>,
    ) -> Result<()> {
        self.each_triple(
            "SELECT d.project_id, d.distinct_id, p.uuid FROM distinct_ids d JOIN persons p ON p.id = d.person_id \
             WHERE ?1 IS NULL OR d.project_id = ?1 ORDER BY d.id",
            project,
            &mut |p, d, u| f(p, d, parse_uuid(&u)?),
        )
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
        self.tx.prepare_cached(REPOINT_OVERRIDES)?.execute(params![
            new.to_string(),
            project,
            old.to_string()
        ])?;
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO person_overrides (project_id, old_person_uuid, override_person_uuid, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![project, old.to_string(), new.to_string(), now_us])?;
        Ok(())
    }

    fn insert_detached(
        &mut self,
        project: i64,
        person: &Uuid,
        distinct_id: &str,
        cutoff_seq: u64,
        now_us: i64,
    ) -> Result<()> {
        let cutoff = i64::try_from(cutoff_seq).map_err(|_| {
            PersonsError::Internal(format!("a cut-off past SQLite's integers: {cutoff_seq}"))
        })?;
        let hash = self.hash(project, distinct_id);
        // A boundary of no one's keeps the id's hash only.
        let text = if person.is_nil() { "" } else { distinct_id };
        self.tx
            .prepare_cached(
                "INSERT INTO detached_ids (project_id, person_uuid, distinct_id, cutoff_seq, detached_at, id_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![project, person.to_string(), text, cutoff, now_us, hash])?;
        Ok(())
    }

    fn detached_holders(
        &mut self,
        project: i64,
        ids: &[String],
    ) -> Result<Vec<(String, Uuid, u64)>> {
        use super::schema::{DETACHED_HASHES, DETACHED_IDS};
        if self.schema < DETACHED_IDS {
            return Ok(Vec::new());
        }
        // By the hash's index; a read-only handle of schema 7 has no
        // hashes and scans the project's records by text.
        let sql = if self.schema < DETACHED_HASHES {
            "SELECT rowid, distinct_id, person_uuid, cutoff_seq FROM detached_ids \
             WHERE project_id = ?1 AND distinct_id = ?3 ORDER BY rowid"
        } else {
            DETACHED_BY_HASH
        };
        let mut out = Vec::new();
        let mut st = self.tx.prepare_cached(sql)?;
        for id in ids {
            let hash = self.hash(project, id);
            let rows = st.query_map(params![project, hash, id], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            for row in rows {
                let (text, person, cutoff) = row?;
                // The hash finds it; the text, where kept, confirms it (a
                // boundary of no one's has none).
                if !text.is_empty() && &text != id {
                    continue;
                }
                let person = Uuid::parse_str(&person).map_err(|e| {
                    PersonsError::Corrupt(format!("a bad person UUID in detached_ids: {e}"))
                })?;
                let cutoff = u64::try_from(cutoff).map_err(|_| {
                    PersonsError::Corrupt(format!("a negative cut-off in detached_ids: {cutoff}"))
                })?;
                out.push((id.clone(), person, cutoff));
            }
        }
        Ok(out)
    }

    fn detached(&mut self, project: i64, persons: &[Uuid]) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        if self.schema < super::schema::DETACHED_IDS {
            return Ok(out);
        }
        let mut st = self.tx.prepare_cached(
            "SELECT distinct_id, cutoff_seq FROM detached_ids WHERE project_id = ?1 AND person_uuid = ?2 \
             ORDER BY rowid",
        )?;
        for p in persons {
            let rows = st.query_map(params![project, p.to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (id, cutoff) = row?;
                let cutoff = u64::try_from(cutoff).map_err(|_| {
                    PersonsError::Corrupt(format!("a negative cut-off in detached_ids: {cutoff}"))
                })?;
                out.push((id, cutoff));
            }
        }
        Ok(out)
    }

    fn erase_detached(&mut self, project: i64, persons: &[Uuid]) -> Result<()> {
        let mut st = self.tx.prepare_cached(
            "UPDATE detached_ids SET person_uuid = ?3, distinct_id = '' \
             WHERE project_id = ?1 AND person_uuid = ?2",
        )?;
        for p in persons {
            st.execute(params![project, p.to_string(), Uuid::nil().to_string()])?;
        }
        Ok(())
    }

    fn merged_into(&mut self, project: i64, person: &Uuid) -> Result<Vec<Uuid>> {
        let mut st = self.tx.prepare_cached(
            "SELECT old_person_uuid FROM person_overrides WHERE project_id = ?1 AND override_person_uuid = ?2",
        )?;
        let mut merged: Vec<Uuid> = Vec::new();
        let mut frontier = vec![*person];
        while let Some(u) = frontier.pop() {
            let olds = st
                .query_map(params![project, u.to_string()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for o in olds {
                let o = parse_uuid(&o)?;
                if o != *person && !merged.contains(&o) {
                    merged.push(o);
                    frontier.push(o);
                }
            }
        }
        Ok(merged)
    }

    fn each_override(
        &mut self,
        project: Option<i64>,
        f: &mut dyn FnMut(i64, Uuid, Uuid) -> Result<()>,
    ) -> Result<()> {
        self.each_triple(
            "SELECT project_id, old_person_uuid, override_person_uuid FROM person_overrides \
             WHERE ?1 IS NULL OR project_id = ?1",
            project,
            &mut |p, o, n| f(p, parse_uuid(&o)?, parse_uuid(&n)?),
        )
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

    fn deletion_stamp(&mut self, project: i64) -> Result<crate::deleted::DeletionStamp> {
        use crate::deleted::DeletionStamp;
        // A database opened read-only keeps the schema it has: before
        // migration 6 there is no version, and the records are counted.
        if self.schema < super::schema::DELETION_VERSIONS {
            let n: i64 = self
                .tx
                .prepare_cached(
                    "SELECT count(*) FROM deletions WHERE project_id = ?1 AND keep_person = 0",
                )?
                .query_row(params![project], |r| r.get(0))?;
            return Ok(DeletionStamp::Count(u64::try_from(n).unwrap_or(0)));
        }
        let v: Option<i64> = self
            .tx
            .prepare_cached("SELECT version FROM deletion_versions WHERE project_id = ?1")?
            .query_row(params![project], |r| r.get(0))
            .optional()?;
        Ok(DeletionStamp::Version(
            v.map_or(0, |v| u64::try_from(v).unwrap_or(0)),
        ))
    }

    fn deleted_person_uuids(&mut self, project: i64) -> Result<Vec<Uuid>> {
        let mut st = self.tx.prepare_cached(
            "SELECT person_uuid FROM deletions WHERE project_id = ?1 AND keep_person = 0",
        )?;
        let rows = st.query_map(params![project], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for u in rows {
            out.push(parse_uuid(&u?)?);
        }
        Ok(out)
    }

    fn blocked_ids(&mut self, project: i64) -> Result<crate::ids::BlockedIds> {
        let mut st = self
            .tx
            .prepare_cached("SELECT id_hash FROM blocked_distinct_ids WHERE project_id = ?1")?;
        let rows = st.query_map(params![project], |r| r.get::<_, Vec<u8>>(0))?;
        let mut hashes = Vec::new();
        for h in rows {
            // A hash of another length is no id's: it can match nothing.
            if let Ok(h) = <[u8; 16]>::try_from(h?.as_slice()) {
                hashes.push(h);
            }
        }
        Ok(crate::ids::BlockedIds::new(*self.key, project, hashes))
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

    fn begin_unfinished(&mut self, project: i64, op: &Unfinished, now_us: i64) -> Result<()> {
        super::unfinished::begin(self.tx, project, op, now_us)
    }

    fn unfinished(&mut self) -> Result<Vec<(i64, i64, Unfinished)>> {
        super::unfinished::all(self.tx)
    }

    fn unfinished_of(
        &mut self,
        project: i64,
        person: &Uuid,
    ) -> Result<Vec<(i64, i64, Unfinished)>> {
        super::unfinished::of_person(self.tx, project, person)
    }

    fn forget_unfinished(&mut self, ids: &[i64]) -> Result<()> {
        super::unfinished::forget(self.tx, ids)
    }

    fn finish_person_deletion(
        &mut self,
        project: i64,
        person: &Uuid,
        scope: &DeletionScope,
    ) -> Result<()> {
        super::unfinished::finish_person(self.tx, project, person, scope)
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
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, project_id, person_uuid, activity, detail, created_at FROM activity \
             WHERE project_id = ?1 AND (?2 IS NULL OR person_uuid = ?2) ORDER BY id DESC \
             LIMIT ?3 OFFSET ?4",
        )?;
        let rows = st
            .query_map(
                params![
                    project,
                    person.map(|u| u.to_string()),
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    i64::try_from(offset).unwrap_or(i64::MAX)
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
