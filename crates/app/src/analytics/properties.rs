//! Property filters: PostHog's `properties` lists and groups as the
//! analytics routes and the events list read them ([`props`]), and their
//! SQL condition ([`props_sql`]).
//!
//! A list's conditions all hold; PostHog's `{"type": "AND"|"OR", "values":
//! [...]}` groups nest ([`MAX_GROUP_DEPTH`]) and hold at most
//! [`MAX_PROPERTY_FILTERS`] filters in all. An `AND` group, and an `OR`
//! group of one value, is read into the list around it; an `OR` group of
//! several is a [`Prop::AnyOf`], and one of no values (or with a value of
//! none) is no condition, as PostHog's.

use serde_json::{Map, Value};

use super::{cohorts, lit};
use crate::error::{AppError, Result};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// Where a property filter looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropKind {
    /// The event's `properties`.
    Event,
    /// The person's `properties`.
    Person,
    /// Membership of a cohort (`value` = cohort id; operator `exact`: its
    /// members, `is_not`: everyone else).
    Cohort,
}

/// A `type: cohort` filter, `{"value": <cohort id>, "operator"?,
/// "negation"?}`: the cohort's id and whether its members pass (`true`)
/// or everyone else (`false`). As PostHog reads it, `"operator":
/// "not_in"` or `"negation": true` asks for the persons not in the
/// cohort; `in`, `exact` or no operator for its members; any other
/// operator is refused rather than read as membership.
pub fn cohort_filter(o: &Map<String, Value>) -> std::result::Result<(i64, bool), String> {
    let id = o
        .get("value")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
    let Some(id) = id else {
        return Err("a cohort filter needs the cohort's id as its value".into());
    };
    let not_in = match o.get("operator") {
        None | Some(Value::Null) => false,
        Some(Value::String(op)) if op == "in" || op == "exact" => false,
        Some(Value::String(op)) if op == "not_in" => true,
        Some(other) => {
            return Err(format!(
                "a cohort filter's operator is in or not_in, got {other}"
            ))
        }
    };
    let negation = match o.get("negation") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "a cohort filter's negation is true or false, got {other}"
            ))
        }
    };
    Ok((id, !(not_in || negation)))
}

/// One property filter: where it looks and what it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Where it looks.
    pub kind: PropKind,
    /// The filter (key, operator, value) as the store's predicates take it.
    pub filter: elide_store::predicate::PropertyFilter,
}

/// One condition of a `properties` list (the list's conditions all hold).
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    /// One filter.
    Leaf(Leaf),
    /// PostHog's `OR` group of two or more values: at least one of these
    /// lists holds (each list's conditions all hold). Never empty: a group
    /// of none is no condition, and of one is that one's list.
    AnyOf(Vec<Vec<Prop>>),
}

impl Prop {
    /// One filter of `kind`.
    pub fn leaf(kind: PropKind, filter: elide_store::predicate::PropertyFilter) -> Prop {
        Prop::Leaf(Leaf { kind, filter })
    }
}

/// Every filter of `props`, those inside `OR` groups too.
pub fn leaves<'a>(props: impl IntoIterator<Item = &'a Prop>) -> Vec<&'a Leaf> {
    fn walk<'a>(p: &'a Prop, out: &mut Vec<&'a Leaf>) {
        match p {
            Prop::Leaf(l) => out.push(l),
            Prop::AnyOf(branches) => branches.iter().flatten().for_each(|p| walk(p, out)),
        }
    }
    let mut out = Vec::new();
    props.into_iter().for_each(|p| walk(p, &mut out));
    out
}

/// Whether any filter of `props` (inside `OR` groups too) looks at `kind`.
pub fn any_of_kind<'a>(props: impl IntoIterator<Item = &'a Prop>, kind: PropKind) -> bool {
    leaves(props).iter().any(|l| l.kind == kind)
}

/// Whether every filter of `p` (inside its `OR` groups too) looks at the
/// event alone.
pub fn events_only(p: &Prop) -> bool {
    leaves([p]).iter().all(|l| l.kind == PropKind::Event)
}

/// The `properties` parameter (or an entity's): a list of filters, or a
/// group `{type: AND|OR, values: [...]}` of filters and groups (nested at
/// most [`MAX_GROUP_DEPTH`] deep).
pub fn props(v: Option<Value>, what: &str) -> Result<Vec<Prop>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    collect_props(v, what, 0, &mut out)?;
    let all = leaves(&out);
    if all.len() > MAX_PROPERTY_FILTERS {
        return invalid(format!(
            "{what}: {} property filters; at most {MAX_PROPERTY_FILTERS}",
            all.len()
        ));
    }
    let filters: Vec<elide_store::predicate::PropertyFilter> =
        all.iter().map(|l| l.filter.clone()).collect();
    if let Err(e) = elide_store::predicate::check_patterns(&filters) {
        return invalid(format!("{what}: {e}"));
    }
    Ok(out)
}

/// How deep `AND`/`OR` groups may nest in one `properties` value
/// (PostHog's filter editor writes two levels).
pub const MAX_GROUP_DEPTH: usize = 8;

/// Most property filters one `properties` list may hold (cohort filters
/// are conditions of their own, joined by `AND`: 100,000 of them nested
/// the query's expression that deep).
pub const MAX_PROPERTY_FILTERS: usize = 100;

fn collect_props(v: Value, what: &str, depth: usize, out: &mut Vec<Prop>) -> Result<()> {
    match v {
        Value::Array(items) => {
            for i in items {
                collect_props(i, what, depth, out)?;
            }
            Ok(())
        }
        Value::Object(mut o) => {
            let ty = o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("event")
                .to_string();
            if ty == "AND" || ty == "OR" {
                if depth >= MAX_GROUP_DEPTH {
                    return invalid(format!(
                        "{what}: property groups nest at most {MAX_GROUP_DEPTH} deep"
                    ));
                }
                let values = match o.remove("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(values)) => values,
                    Some(other) => {
                        return invalid(format!(
                            "{what}: a property group's values are a list, got {other}"
                        ))
                    }
                };
                if ty == "AND" || values.len() < 2 {
                    // An empty group is no condition, as PostHog's.
                    return collect_props(Value::Array(values), what, depth + 1, out);
                }
                let mut branches = Vec::with_capacity(values.len());
                for v in values {
                    let mut branch = Vec::new();
                    collect_props(v, what, depth + 1, &mut branch)?;
                    branches.push(branch);
                }
                // A branch of no condition always holds, and so does the group.
                if branches.iter().all(|b| !b.is_empty()) {
                    out.push(Prop::AnyOf(branches));
                }
                return Ok(());
            }
            let kind = match ty.as_str() {
                "event" => PropKind::Event,
                "person" => PropKind::Person,
                "cohort" => PropKind::Cohort,
                other => return invalid(format!("{what}: property filters of type {other:?} are not supported (event, person, cohort)")),
            };
            o.remove("type");
            if kind == PropKind::Cohort {
                // {"key": "id", "value": <cohort id>, "type": "cohort"}
                let (id, members) = match cohort_filter(&o) {
                    Ok(f) => f,
                    Err(e) => return invalid(format!("{what}: {e}")),
                };
                o.insert("key".into(), Value::String("id".into()));
                o.insert("value".into(), Value::from(id));
                let op = if members { "exact" } else { "is_not" };
                o.insert("operator".into(), Value::String(op.into()));
            }
            if o.get("operator").is_none_or(Value::is_null) {
                o.insert("operator".into(), Value::String("exact".into()));
            }
            o.retain(|k, _| k == "key" || k == "value" || k == "operator");
            let filter: elide_store::predicate::PropertyFilter =
                serde_json::from_value(Value::Object(o)).map_err(|e| {
                    AppError::InvalidQuery(format!("{what}: Properties are unparsable: {e}"))
                })?;
            // Compared as text (`properties_match`): `gt`/`lt` take a
            // numeric string too.
            if let Err(e) = filter.validate_as(elide_store::predicate::Comparison::Text) {
                return invalid(format!("{what}: {e}"));
            }
            out.push(Prop::leaf(kind, filter));
            Ok(())
        }
        other => invalid(format!(
            "{what}: Properties are unparsable: expected a list of filters, got {other}"
        )),
    }
}

/// The SQL condition of property filters on events `e`, persons `p` and
/// cohorts (of `pdi.person_id`, whose members
/// [`cohorts::register_for`] put on the session; `TRUE` when there are
/// none). The filters of one list on one side are one `properties_match`
/// call (each row's properties are read once); an `OR` group is the
/// disjunction of its lists' conditions.
pub fn props_sql(props: &[Prop]) -> Result<String> {
    let mut parts = Vec::new();
    for kind in [PropKind::Event, PropKind::Person] {
        let list: Vec<&elide_store::predicate::PropertyFilter> = props
            .iter()
            .filter_map(|p| match p {
                Prop::Leaf(l) if l.kind == kind => Some(&l.filter),
                _ => None,
            })
            .collect();
        if list.is_empty() {
            continue;
        }
        let json = serde_json::to_string(&list)
            .map_err(|e| AppError::InvalidQuery(format!("property filters: {e}")))?;
        let column = if kind == PropKind::Event {
            "e.properties"
        } else {
            "p.properties"
        };
        parts.push(format!("properties_match({column}, {})", lit(&json)));
    }
    // Each cohort once (a repeated one is the same condition).
    let mut cohort_ids = std::collections::BTreeSet::new();
    for p in props {
        let Prop::Leaf(l) = p else { continue };
        if l.kind != PropKind::Cohort {
            continue;
        }
        let Some(id) = l.filter.value.as_i64() else {
            return Err(AppError::InvalidQuery(
                "a cohort filter needs the cohort's id as its value".into(),
            ));
        };
        let members = l.filter.operator != elide_store::predicate::PropertyOperator::IsNot;
        if cohort_ids.insert((id, members)) {
            parts.push(cohorts::condition(id, members));
        }
    }
    for p in props {
        let Prop::AnyOf(branches) = p else { continue };
        let any = branches
            .iter()
            .map(|b| props_sql(b).map(|c| format!("({c})")))
            .collect::<Result<Vec<_>>>()?;
        parts.push(format!("({})", any.join(" OR ")));
    }
    Ok(if parts.is_empty() {
        "TRUE".into()
    } else {
        parts.join(" AND ")
    })
}
