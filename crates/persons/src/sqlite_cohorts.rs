//! The cohort tables of the SQLite metadata store (migration 4):
//! `cohorts` holds each cohort's definition, `cohort_people` the list of a
//! static cohort by person id. A person's rows in `cohort_people` go in
//! the transaction that deletes the person (`delete_person`) and move with
//! a merge, so a list never names a person who is gone.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{PersonsError, Result};
use crate::meta::CohortRow;
use crate::sqlite::parse_uuid;

const COLUMNS: &str = "id, project_id, name, description, is_static, filters, created_at, deleted";

fn row(r: &Row<'_>) -> rusqlite::Result<(CohortRow, String)> {
    Ok((
        CohortRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            name: r.get(2)?,
            description: r.get(3)?,
            is_static: r.get::<_, i64>(4)? != 0,
            filters: Value::Null,
            created_at_us: r.get(6)?,
            deleted: r.get::<_, i64>(7)? != 0,
        },
        r.get(5)?,
    ))
}

fn cook((mut c, filters): (CohortRow, String)) -> Result<CohortRow> {
    c.filters = serde_json::from_str(&filters)
        .map_err(|e| PersonsError::Corrupt(format!("cohort {}: filters: {e}", c.id)))?;
    Ok(c)
}

/// `v` as the text stored, which [`cook`] must be able to read back: a
/// definition nested past serde_json's recursion limit (128) is refused
/// here, not stored to fail every later read of the project's cohorts.
fn text(v: &Value) -> Result<String> {
    let t = serde_json::to_string(v).map_err(|e| PersonsError::Internal(e.to_string()))?;
    serde_json::from_str::<Value>(&t).map_err(|e| {
        PersonsError::InvalidInput(format!("the cohort's definition cannot be stored: {e}"))
    })?;
    Ok(t)
}

pub(crate) fn insert(tx: &Connection, c: &CohortRow) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO cohorts (project_id, name, description, is_static, filters, created_at, deleted) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        c.project_id,
        c.name,
        c.description,
        i64::from(c.is_static),
        text(&c.filters)?,
        c.created_at_us,
        i64::from(c.deleted)
    ])?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn update(tx: &Connection, c: &CohortRow) -> Result<()> {
    tx.prepare_cached(
        "UPDATE cohorts SET name = ?1, description = ?2, filters = ?3, deleted = ?4 \
         WHERE project_id = ?5 AND id = ?6",
    )?
    .execute(params![
        c.name,
        c.description,
        text(&c.filters)?,
        i64::from(c.deleted),
        c.project_id,
        c.id
    ])?;
    Ok(())
}

pub(crate) fn get(tx: &Connection, project: i64, id: i64) -> Result<Option<CohortRow>> {
    tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM cohorts WHERE project_id = ?1 AND id = ?2"
    ))?
    .query_row(params![project, id], row)
    .optional()?
    .map(cook)
    .transpose()
}

pub(crate) fn list(tx: &Connection, project: i64) -> Result<Vec<CohortRow>> {
    let mut st = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM cohorts WHERE project_id = ?1 ORDER BY id"
    ))?;
    let rows = st
        .query_map(params![project], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(cook).collect()
}

pub(crate) fn delete(tx: &Connection, project: i64, id: i64) -> Result<bool> {
    let n = tx
        .prepare_cached("DELETE FROM cohorts WHERE project_id = ?1 AND id = ?2")?
        .execute(params![project, id])?;
    if n > 0 {
        tx.prepare_cached("DELETE FROM cohort_people WHERE cohort_id = ?1")?
            .execute(params![id])?;
    }
    Ok(n > 0)
}

pub(crate) fn add_people(tx: &Connection, cohort: i64, person_ids: &[i64]) -> Result<u64> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO cohort_people (cohort_id, person_id) VALUES (?1, ?2)",
    )?;
    let mut added = 0;
    for p in person_ids {
        added += st.execute(params![cohort, p])? as u64;
    }
    Ok(added)
}

pub(crate) fn remove_people(tx: &Connection, cohort: i64, person_ids: &[i64]) -> Result<u64> {
    let mut st =
        tx.prepare_cached("DELETE FROM cohort_people WHERE cohort_id = ?1 AND person_id = ?2")?;
    let mut removed = 0;
    for p in person_ids {
        removed += st.execute(params![cohort, p])? as u64;
    }
    Ok(removed)
}

pub(crate) fn people(tx: &Connection, cohort: i64) -> Result<Vec<Uuid>> {
    let mut st = tx.prepare_cached(
        "SELECT p.uuid FROM cohort_people c JOIN persons p ON p.id = c.person_id \
         WHERE c.cohort_id = ?1 ORDER BY p.uuid",
    )?;
    let texts = st
        .query_map(params![cohort], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    texts.iter().map(|t| parse_uuid(t)).collect()
}

pub(crate) fn of_person(tx: &Connection, person_id: i64) -> Result<Vec<i64>> {
    let mut st = tx.prepare_cached(
        "SELECT cohort_id FROM cohort_people WHERE person_id = ?1 ORDER BY cohort_id",
    )?;
    let ids = st
        .query_map(params![person_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

pub(crate) fn move_people(tx: &Connection, from: i64, to: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO cohort_people (cohort_id, person_id) \
         SELECT cohort_id, ?2 FROM cohort_people WHERE person_id = ?1",
    )?
    .execute(params![from, to])?;
    tx.prepare_cached("DELETE FROM cohort_people WHERE person_id = ?1")?
        .execute(params![from])?;
    Ok(())
}
