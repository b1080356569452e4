//! The statement of a person listing ([`MetaTx::list_persons`]): its
//! filters (a distinct id, an email, a search, property filters, UUIDs)
//! as SQL with every value bound, never spliced, and the order and page.

use super::filters::properties_clause;
use super::tx::{SqliteTx, PERSON_COLUMNS};
use crate::error::{PersonsError, Result};
#[cfg(doc)]
use crate::meta::MetaTx;
use crate::meta::PersonFilter;

impl SqliteTx<'_> {
    /// The statement of [`MetaTx::list_persons`] and its arguments. A
    /// distinct id or a list of UUIDs narrows the listing to a few
    /// persons: those are found by id (`p.id IN (…)`, the table `NOT
    /// INDEXED` but for its rowid), as SQLite would otherwise walk the
    /// project's persons in the listing's order (its index by creation)
    /// and test each, to save a sort of a few rows.
    pub(super) fn list_query(
        &self,
        project: i64,
        filter: &PersonFilter,
    ) -> Result<(String, Vec<rusqlite::types::Value>)> {
        use rusqlite::types::Value as S;
        let narrow = filter.distinct_id.is_some() || filter.uuids.is_some();
        let mut sql = format!(
            "SELECT {PERSON_COLUMNS} FROM persons p{} WHERE p.project_id = ?",
            if narrow { " NOT INDEXED" } else { "" }
        );
        let mut args: Vec<S> = vec![S::Integer(project)];
        // The person owning a distinct id (looked up by its hash).
        let owns_id = "p.id IN (SELECT d.person_id FROM distinct_ids d \
                       WHERE d.project_id = ? AND d.id_hash = ? AND d.distinct_id = ?)";
        let id_args = |did: &str| {
            [
                S::Integer(project),
                S::Blob(self.hash(project, did)),
                S::Text(did.to_string()),
            ]
        };
        if let Some(did) = &filter.distinct_id {
            sql.push_str(" AND ");
            sql.push_str(owns_id);
            args.extend(id_args(did));
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
            args.extend(id_args(s));
        }
        if !filter.properties.is_empty() {
            let (clause, arg) = properties_clause(&filter.properties)?;
            sql.push_str(" AND ");
            sql.push_str(&clause);
            args.push(arg);
        }
        // One parameter however many: a JSON list of the UUIDs' text.
        let uuid_list = |uuids: &[uuid::Uuid]| -> Result<S> {
            let list: Vec<String> = uuids.iter().map(|u| u.hyphenated().to_string()).collect();
            Ok(S::Text(serde_json::to_string(&list).map_err(|e| {
                PersonsError::Internal(format!("uuid list: {e}"))
            })?))
        };
        for (uuids, not) in [
            (filter.uuids.as_deref(), ""),
            (
                Some(filter.not_uuids.as_slice()).filter(|u| !u.is_empty()),
                "NOT ",
            ),
        ] {
            let Some(uuids) = uuids else { continue };
            sql.push_str(&format!(
                " AND p.id {not}IN (SELECT q.id FROM persons q \
                 WHERE q.project_id = ? AND q.uuid IN (SELECT value FROM json_each(?)))"
            ));
            args.push(S::Integer(project));
            args.push(uuid_list(uuids)?);
        }
        sql.push_str(" ORDER BY p.created_at DESC, p.id DESC LIMIT ? OFFSET ?");
        args.push(S::Integer(i64::try_from(filter.limit).unwrap_or(i64::MAX)));
        args.push(S::Integer(i64::try_from(filter.offset).unwrap_or(i64::MAX)));
        Ok((sql, args))
    }
}
