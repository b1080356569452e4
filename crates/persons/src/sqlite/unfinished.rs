//! The `unfinished` table (migration 9): person deletions and project
//! drops begun and not finished. A row is written before the operation's
//! store step and removed by the metadata transaction that finishes it,
//! so a row outlives its operation only if a crash or a failed write came
//! between them; `Persons::open` finishes what is left. Rows name person
//! UUIDs, never distinct ids.

use rusqlite::{params, Connection};
use uuid::Uuid;

use super::tx::parse_uuid;
use crate::error::{PersonsError, Result};
use crate::meta::{DeletionScope, Unfinished};

const DELETE_PERSON: &str = "delete_person";
const DROP_PROJECT: &str = "drop_project";

pub(super) fn begin(tx: &Connection, project: i64, op: &Unfinished, now_us: i64) -> Result<()> {
    let (kind, person, scope, below) = match op {
        Unfinished::DeletePerson {
            person_uuid,
            scope,
            below_seq,
        } => (
            DELETE_PERSON,
            Some(person_uuid.to_string()),
            *scope,
            Some(seq_value(*below_seq)?),
        ),
        Unfinished::DropProject => (
            DROP_PROJECT,
            None,
            DeletionScope {
                delete_events: false,
                delete_recordings: false,
                keep_person: false,
            },
            None,
        ),
    };
    tx.prepare_cached(
        "INSERT INTO unfinished (project_id, op, person_uuid, delete_events, delete_recordings, \
         keep_person, below_seq, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        project,
        kind,
        person,
        scope.delete_events,
        scope.delete_recordings,
        scope.keep_person,
        below,
        now_us
    ])?;
    Ok(())
}

/// A `_seq` as SQLite's signed integer.
fn seq_value(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| PersonsError::Internal(format!("_seq {seq} out of range")))
}

type Row = (
    i64,
    i64,
    String,
    Option<String>,
    bool,
    bool,
    bool,
    Option<i64>,
);

fn decode((id, project, kind, person, e, r, k, below): Row) -> Result<(i64, i64, Unfinished)> {
    let op = match (kind.as_str(), person, below.map(u64::try_from)) {
        (DELETE_PERSON, Some(p), Some(Ok(below_seq))) => Unfinished::DeletePerson {
            person_uuid: parse_uuid(&p)?,
            scope: DeletionScope {
                delete_events: e,
                delete_recordings: r,
                keep_person: k,
            },
            below_seq,
        },
        (DROP_PROJECT, None, None) => Unfinished::DropProject,
        (other, p, b) => {
            return Err(PersonsError::Corrupt(format!(
                "unfinished operation {id}: {other:?} with person {p:?} and _seq {b:?}"
            )))
        }
    };
    Ok((id, project, op))
}

fn rows(tx: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Row>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<std::result::Result<Vec<Row>, _>>()?;
    Ok(rows)
}

const COLUMNS: &str =
    "id, project_id, op, person_uuid, delete_events, delete_recordings, keep_person, below_seq";

/// Every record, oldest first. One that cannot be read (damaged) is
/// logged and left out: it must not stop every deletion and open.
pub(super) fn all(tx: &Connection) -> Result<Vec<(i64, i64, Unfinished)>> {
    let rows = rows(
        tx,
        &format!("SELECT {COLUMNS} FROM unfinished ORDER BY id"),
        [],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match decode(row) {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::error!(error = %e, "an unfinished operation's record is damaged; left out")
            }
        }
    }
    Ok(out)
}

pub(super) fn forget(tx: &Connection, ids: &[i64]) -> Result<()> {
    let mut stmt = tx.prepare_cached("DELETE FROM unfinished WHERE id = ?1")?;
    for id in ids {
        stmt.execute(params![id])?;
    }
    Ok(())
}

/// The records of `person` (by the index on it), damaged ones left out
/// as in [`all`].
pub(super) fn of_person(
    tx: &Connection,
    project: i64,
    person: &Uuid,
) -> Result<Vec<(i64, i64, Unfinished)>> {
    let mine = rows(
        tx,
        &format!("SELECT {COLUMNS} FROM unfinished WHERE project_id = ?1 AND person_uuid = ?2"),
        params![project, person.to_string()],
    )?;
    Ok(mine.into_iter().filter_map(|r| decode(r).ok()).collect())
}

pub(super) fn finish_person(
    tx: &Connection,
    project: i64,
    person: &Uuid,
    scope: &DeletionScope,
) -> Result<()> {
    let mut covered = Vec::new();
    // A damaged record is left out here too: it must not fail the
    // deletion after its store step.
    for (id, _, op) in of_person(tx, project, person)? {
        if let Unfinished::DeletePerson { scope: s, .. } = op {
            if scope.covers(&s) {
                covered.push(id);
            }
        }
    }
    forget(tx, &covered)
}
