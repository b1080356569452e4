//! Person property filters in SQLite: `elide_properties_match(p.properties,
//! ?)`, a function of this module run by SQLite on each person it walks,
//! with the filters bound as one JSON parameter (never spliced into the
//! text). It evaluates them with the store's matcher, comparing as
//! PostHog's text ([`Comparison::Text`]: `"5"` equals `5`, JSON null is
//! unset): the same code, and so the same answer, as the query layer's
//! `properties_match` that analytics and cohorts run over events and
//! persons.

use elide_store::predicate::{Comparison, PropertiesMatcher};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde_json::Value;

use crate::error::{PersonsError, Result};
use crate::meta::PropertyFilter;

/// The function's name.
const FUNCTION: &str = "elide_properties_match";

/// Most values one filter may list.
pub(crate) const MAX_FILTER_VALUES: usize = 500;

/// Most property filters one listing may apply.
pub(crate) const MAX_FILTERS: usize = 100;

/// Register [`FUNCTION`] on `conn` (each connection that lists persons).
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        FUNCTION,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            // Parsed and prepared once per statement: SQLite keeps it
            // with the constant parameter.
            let matcher = ctx.get_or_create_aux(1, |v| -> std::result::Result<_, String> {
                let text = v.as_str().map_err(|e| e.to_string())?;
                let filters: Vec<PropertyFilter> =
                    serde_json::from_str(text).map_err(|e| format!("property filters: {e}"))?;
                Ok(PropertiesMatcher::owning(filters, Comparison::Text))
            })?;
            let props = match ctx.get_raw(0) {
                ValueRef::Text(t) => std::str::from_utf8(t).ok(),
                _ => None,
            };
            Ok(matcher.matches(props))
        },
    )
}

/// The listing's condition on `filters` and its one parameter, after
/// checking them as text compares (a `gt`/`lt` value may be a numeric
/// string, as PostHog's persons list takes it).
pub(super) fn properties_clause(
    filters: &[PropertyFilter],
) -> Result<(String, rusqlite::types::Value)> {
    if filters.len() > MAX_FILTERS {
        return Err(PersonsError::InvalidInput(format!(
            "{} property filters, more than the {MAX_FILTERS} one listing may apply",
            filters.len()
        )));
    }
    for f in filters {
        if let Value::Array(items) = &f.value {
            if items.len() > MAX_FILTER_VALUES {
                return Err(PersonsError::InvalidInput(format!(
                    "filter on {:?}: {} values, more than the {MAX_FILTER_VALUES} one filter may list",
                    f.key,
                    items.len()
                )));
            }
        }
    }
    elide_store::predicate::validate_text_list(filters).map_err(PersonsError::InvalidInput)?;
    let json = serde_json::to_string(filters)
        .map_err(|e| PersonsError::Internal(format!("encoding property filters: {e}")))?;
    Ok((
        format!("{FUNCTION}(p.properties, ?)"),
        rusqlite::types::Value::Text(json),
    ))
}
