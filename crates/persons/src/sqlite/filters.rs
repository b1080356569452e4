//! Person property filters as SQL over `json_extract` of the properties'
//! JSON ([`property_clause`]), with the filter's values bound as
//! parameters, never spliced into the text.

use serde_json::Value;

use crate::error::{PersonsError, Result};
use crate::meta::{PropertyFilter, PropertyOperator};

/// JSON path of a top-level key, for `json_extract`.
fn json_path(key: &str) -> Result<String> {
    if key.contains('"') || key.contains('\\') || key.contains('\0') {
        return Err(PersonsError::InvalidInput(format!(
            "property key {key:?}: keys with quotes, backslashes or NUL cannot be filtered on"
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

/// Most values one filter may list: each is a term of an `OR`, and SQLite
/// refuses an expression deeper than 1,000 (or more than 32,766 bound
/// values), which would be a 500 rather than this 400.
pub(crate) const MAX_FILTER_VALUES: usize = 500;

/// Most property filters one listing may apply (each is a term of an
/// `AND`).
pub(crate) const MAX_FILTERS: usize = 100;

/// Most values a listing's filters may bind in all (SQLite refuses more
/// than 32,766).
pub(crate) const MAX_BOUND_VALUES: usize = 30_000;

pub(super) fn property_clause(
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
        if values.len() > MAX_FILTER_VALUES {
            return Err(PersonsError::InvalidInput(format!(
                "filter on {:?}: {} values, more than the {MAX_FILTER_VALUES} one filter may list",
                f.key,
                values.len()
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
            sql.push_str("instr(lower(CAST(json_extract(p.properties, ?) AS TEXT)), lower(?)) > 0");
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
