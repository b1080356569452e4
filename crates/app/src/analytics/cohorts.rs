//! Cohorts: who is in one, computed when asked, never stored for a
//! dynamic cohort (`posthog-analytics.md` §2.5; docs/api.md "Cohorts").
//!
//! - A **static** cohort is a list of persons kept by the persons layer
//!   (a deleted person leaves every list in the transaction that deletes
//!   it).
//! - A **dynamic** cohort is a definition, PostHog's `filters`:
//!   `{"properties": {"type": "OR"|"AND", "values": [...]}}`, nested
//!   groups of leaves, each leaf one of
//!   - `{"type": "person", "key", "value", "operator"}`: a person property;
//!   - `{"type": "behavioral", "key": "<event>", "value":
//!     "performed_event" | "performed_event_multiple", "time_value": N,
//!     "time_interval": "hour"|"day"|"week"|"month", "operator":
//!     "gte"|"lte"|"exact"|"gt"|"lt", "operator_value": K, "negation"?}`:
//!     did the event (at least once, or K times by the operator) in the
//!     last N intervals;
//!   - `{"type": "cohort", "value": <id>, "negation"?}`: in another cohort.
//!
//!   or PostHog's legacy `groups`: `[{"properties": [...]} | {"event_id",
//!   "days", "count"?, "count_operator"?}]`, OR-ed.
//!
//! A definition becomes one SQL query of set operations (`UNION`,
//! `INTERSECT`, `EXCEPT` over person UUIDs) run over the persons tables
//! and the filtered scan of the events, so a deleted person is never a
//! member after its deletion returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{DateTime, Utc};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use elide_persons::{CohortRow, Persons, SqliteMeta};
use serde_json::{json, Map, Value};

use super::in_set;
use super::properties::{leaves, props, props_sql, Prop, PropKind};
use super::{collect, lit, session, ts_lit};
use crate::error::{AppError, Result};
use crate::query::QueryLimits;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// How deep cohorts may refer to cohorts.
const MAX_DEPTH: usize = 5;
/// Most leaves in one definition.
const MAX_LEAVES: usize = 100;

/// A definition, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    /// All of them.
    And(Vec<Def>),
    /// Any of them.
    Or(Vec<Def>),
    /// Not this one (among the project's persons).
    Not(Box<Def>),
    /// Person properties.
    Person(Vec<Prop>),
    /// Did `event` a number of times in the last `micros`.
    Behavioral {
        /// The event.
        event: String,
        /// How far back, µs.
        micros: i64,
        /// The comparison of the count (`gte` 1 for `performed_event`).
        operator: String,
        /// What the count is compared with.
        count: i64,
    },
    /// In another cohort.
    Cohort(i64),
}

fn interval_micros(unit: &str, n: i64) -> Result<i64> {
    let hour = 3_600_000_000i64;
    let per = match unit {
        "hour" => hour,
        "day" => 24 * hour,
        "week" => 7 * 24 * hour,
        "month" => 30 * 24 * hour,
        "year" => 365 * 24 * hour,
        other => {
            return invalid(format!(
                "time_interval {other:?} is not one of hour, day, week, month, year"
            ))
        }
    };
    if !(1..=36_500).contains(&n) {
        return invalid("time_value must be from 1 to 36500");
    }
    Ok(per * n)
}

fn count_operator(op: &str) -> Result<&'static str> {
    Ok(match op {
        "gte" => ">=",
        "gt" => ">",
        "lte" => "<=",
        "lt" => "<",
        "exact" | "eq" => "=",
        other => {
            return invalid(format!(
                "operator {other:?} is not one of gte, gt, lte, lt, exact"
            ))
        }
    })
}

fn leaf(o: &Map<String, Value>, leaves: &mut usize) -> Result<Def> {
    *leaves += 1;
    if *leaves > MAX_LEAVES {
        return invalid(format!(
            "a cohort definition has at most {MAX_LEAVES} filters"
        ));
    }
    let negate = o.get("negation").and_then(Value::as_bool).unwrap_or(false);
    let def = match o.get("type").and_then(Value::as_str) {
        Some("person") => Def::Person(props(Some(Value::Object(o.clone())), "cohort filters")?),
        Some("behavioral") => {
            let event = match o.get("key") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return invalid("a behavioral filter needs the event name as its key"),
            };
            if o.get("event_type")
                .and_then(Value::as_str)
                .is_some_and(|t| t != "events")
            {
                return invalid(
                    "behavioral filters on actions are not supported (event_type events)",
                );
            }
            let n = o
                .get("time_value")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
            let Some(n) = n else {
                return invalid(
                    "a behavioral filter needs time_value (how many time_interval back)",
                );
            };
            let unit = o
                .get("time_interval")
                .and_then(Value::as_str)
                .unwrap_or("day");
            let micros = interval_micros(unit, n)?;
            let (operator, count) = match o.get("value").and_then(Value::as_str) {
                Some("performed_event") => (">=".to_string(), 1),
                Some("performed_event_multiple") => {
                    let op = count_operator(o.get("operator").and_then(Value::as_str).unwrap_or("gte"))?;
                    let k = o.get("operator_value").and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                    let Some(k) = k.filter(|k| (0..=1_000_000_000).contains(k)) else {
                        return invalid("performed_event_multiple needs operator_value, a count");
                    };
                    (op.to_string(), k)
                }
                other => {
                    return invalid(format!(
                        "behavioral value {} is not supported (performed_event, performed_event_multiple)",
                        other.unwrap_or("null")
                    ))
                }
            };
            Def::Behavioral {
                event,
                micros,
                operator,
                count,
            }
        }
        Some("cohort") => {
            // As a filter reads it: `not_in` or `negation` is not in it
            // (the negation read there, not again below).
            return match super::properties::cohort_filter(o) {
                Ok((id, true)) => Ok(Def::Cohort(id)),
                Ok((id, false)) => Ok(Def::Not(Box::new(Def::Cohort(id)))),
                Err(e) => invalid(e),
            };
        }
        other => {
            return invalid(format!(
                "cohort filters of type {} are not supported (person, behavioral, cohort)",
                other.unwrap_or("null")
            ))
        }
    };
    Ok(if negate { Def::Not(Box::new(def)) } else { def })
}

fn group(v: &Value, leaves: &mut usize, depth: usize) -> Result<Def> {
    if depth > 10 {
        return invalid("a cohort definition nests too deep");
    }
    let Value::Object(o) = v else {
        return invalid("a cohort filter is an object");
    };
    match o.get("type").and_then(Value::as_str) {
        Some(t @ ("AND" | "OR")) => {
            let Some(Value::Array(values)) = o.get("values") else {
                return invalid(format!("an {t} group needs values"));
            };
            let parts = values
                .iter()
                .map(|v| group(v, leaves, depth + 1))
                .collect::<Result<Vec<_>>>()?;
            if parts.is_empty() {
                return invalid(format!("an {t} group needs at least one filter"));
            }
            Ok(if t == "AND" {
                Def::And(parts)
            } else {
                Def::Or(parts)
            })
        }
        _ => leaf(o, leaves),
    }
}

/// Parse a dynamic cohort's definition: `filters` (PostHog's current
/// shape) or `groups` (its legacy one).
pub fn parse(filters: Option<&Value>, groups: Option<&Value>) -> Result<Def> {
    let def = parse_leaves(filters, groups)?;
    // Each is compiled wherever the cohort is read: a bound for the whole
    // definition, not per leaf.
    let n = patterns(&def);
    if n > elide_store::predicate::MAX_PATTERNS {
        return invalid(format!(
            "a cohort definition holds at most {} regular expressions in all, got {n}",
            elide_store::predicate::MAX_PATTERNS
        ));
    }
    Ok(def)
}

/// The regular expressions of a definition's person filters.
fn patterns(d: &Def) -> usize {
    match d {
        Def::And(v) | Def::Or(v) => v.iter().map(patterns).sum(),
        Def::Not(d) => patterns(d),
        Def::Person(props) => {
            elide_store::predicate::pattern_count(leaves(props).into_iter().map(|l| &l.filter))
        }
        Def::Behavioral { .. } | Def::Cohort(_) => 0,
    }
}

/// [`parse`] before the bound on regular expressions.
fn parse_leaves(filters: Option<&Value>, groups: Option<&Value>) -> Result<Def> {
    let mut leaves = 0;
    if let Some(p) = filters.and_then(|f| f.get("properties")) {
        return group(p, &mut leaves, 0);
    }
    let Some(Value::Array(gs)) = groups else {
        return invalid("a dynamic cohort needs filters ({\"properties\": {\"type\": \"OR\", \"values\": [...]}}) or groups");
    };
    let mut any = Vec::new();
    for g in gs {
        let Value::Object(o) = g else {
            return invalid("each of groups is an object");
        };
        let mut all = Vec::new();
        if let Some(Value::Array(ps)) = o.get("properties") {
            for p in ps {
                let Value::Object(po) = p else {
                    return invalid("group properties are objects");
                };
                all.push(leaf(po, &mut leaves)?);
            }
        }
        if let Some(e) = o.get("event_id") {
            let mut b = Map::new();
            b.insert("type".into(), json!("behavioral"));
            b.insert("key".into(), e.clone());
            b.insert(
                "time_value".into(),
                o.get("days").cloned().unwrap_or(json!(30)),
            );
            b.insert("time_interval".into(), json!("day"));
            b.insert("value".into(), json!("performed_event_multiple"));
            b.insert(
                "operator".into(),
                o.get("count_operator").cloned().unwrap_or(json!("gte")),
            );
            b.insert(
                "operator_value".into(),
                o.get("count").cloned().unwrap_or(json!(1)),
            );
            all.push(leaf(&b, &mut leaves)?);
        }
        if o.get("action_id").is_some_and(|v| !v.is_null()) {
            return invalid("cohorts of actions are not supported: Elide has no actions");
        }
        if all.is_empty() {
            return invalid("a cohort group needs properties or an event_id");
        }
        any.push(Def::And(all));
    }
    if any.is_empty() {
        return invalid("a dynamic cohort needs at least one group");
    }
    Ok(Def::Or(any))
}

/// The name of the session table holding a cohort's members.
fn table_name(id: i64) -> String {
    format!("cohort_members_{id}")
}

/// The SQL of a definition: one column `person_id` (UUID text).
fn def_sql(def: &Def, now: DateTime<Utc>, refs: &mut BTreeSet<i64>) -> Result<String> {
    Ok(match def {
        Def::And(parts) | Def::Or(parts) => {
            let op = if matches!(def, Def::And(_)) {
                " INTERSECT "
            } else {
                " UNION "
            };
            let sqls = parts
                .iter()
                .map(|p| def_sql(p, now, refs).map(|s| format!("({s})")))
                .collect::<Result<Vec<_>>>()?;
            format!("SELECT person_id FROM ({}) AS g", sqls.join(op))
        }
        Def::Not(inner) => format!(
            "SELECT CAST(uuid AS VARCHAR) AS person_id FROM persons EXCEPT ({})",
            def_sql(inner, now, refs)?
        ),
        Def::Person(list) => format!(
            "SELECT CAST(p.uuid AS VARCHAR) AS person_id FROM persons p WHERE {}",
            props_sql(list)?
        ),
        Def::Behavioral {
            event,
            micros,
            operator,
            count,
        } => {
            let since = now.timestamp_micros().saturating_sub(*micros);
            let having = format!("count(*) {operator} {count}");
            let done = format!(
                "SELECT CAST(pdi.person_id AS VARCHAR) AS person_id FROM events e \
                 JOIN person_distinct_ids pdi ON e.distinct_id = pdi.distinct_id \
                 WHERE e.event = {} AND e.timestamp >= {} GROUP BY pdi.person_id HAVING {having}",
                lit(event),
                ts_lit(since),
            );
            // A person who never did it counts 0: a member when 0
            // satisfies the comparison.
            let zero_ok = match operator.as_str() {
                "<=" => true,
                "<" => *count > 0,
                "=" | ">=" => *count == 0,
                _ => false,
            };
            if zero_ok {
                let any = format!(
                    "SELECT CAST(pdi.person_id AS VARCHAR) AS person_id FROM events e \
                     JOIN person_distinct_ids pdi ON e.distinct_id = pdi.distinct_id \
                     WHERE e.event = {} AND e.timestamp >= {}",
                    lit(event),
                    ts_lit(since),
                );
                format!(
                    "({done}) UNION (SELECT CAST(uuid AS VARCHAR) AS person_id FROM persons EXCEPT ({any}))"
                )
            } else {
                done
            }
        }
        Def::Cohort(id) => {
            refs.insert(*id);
            format!("SELECT person_id FROM {}", table_name(*id))
        }
    })
}

/// Register, on `ctx`, the members of cohort `id` as table
/// `cohort_members_{id}` (and of every cohort it refers to).
fn register<'a>(
    ctx: &'a SessionContext,
    persons: &'a Arc<Persons<SqliteMeta>>,
    project: i64,
    id: i64,
    now: DateTime<Utc>,
    path: &'a mut Vec<i64>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        let name = table_name(id);
        if ctx.table_exist(name.as_str())? {
            return Ok(());
        }
        if path.contains(&id) {
            return invalid(format!("cohort {id} refers to itself"));
        }
        if path.len() >= MAX_DEPTH {
            return invalid(format!(
                "cohorts refer to cohorts more than {MAX_DEPTH} deep"
            ));
        }
        // Short metadata reads, as the persons tables' scans do.
        let c = persons.cohort(project, id)?;
        let Some(c) = c.filter(|c| !c.deleted) else {
            return invalid(format!("cohort {id} does not exist"));
        };
        let members: Vec<String> = if c.is_static {
            persons
                .static_cohort_people(project, id)?
                .iter()
                .map(|u| u.hyphenated().to_string())
                .collect()
        } else {
            path.push(id);
            let members =
                dynamic_members(ctx, persons, project, &definition(&c)?, now, path).await?;
            path.pop();
            members
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            "person_id",
            DataType::Utf8,
            false,
        )]));
        // Sorted, and one copy: the table's column is the function's.
        let mut members = members;
        members.sort_unstable();
        members.dedup();
        let col = Arc::new(StringArray::from(members));
        let sorted = Arc::clone(&col);
        ctx.register_udf(in_set::udf(
            member_fn(id),
            Arc::new(move |person| is_member(&sorted, person)),
            None,
        ));
        let col: ArrayRef = col;
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![col])?;
        ctx.register_table(
            name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        )?;
        Ok(())
    })
}

/// The members (UUID text, each once) of a dynamic cohort defined by
/// `def`, after registering the cohorts it refers to on `ctx` (`path`:
/// the cohorts being registered around it, for cycles and depth).
async fn dynamic_members(
    ctx: &SessionContext,
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    def: &Def,
    now: DateTime<Utc>,
    path: &mut Vec<i64>,
) -> Result<Vec<String>> {
    let mut refs = BTreeSet::new();
    let sql = def_sql(def, now, &mut refs)?;
    for r in refs {
        register(ctx, persons, project, r, now, path).await?;
    }
    let mut out = Vec::new();
    for b in collect(ctx, &format!("SELECT DISTINCT person_id FROM ({sql}) AS m")).await? {
        let col = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let col = col.as_string::<i32>();
        out.extend(
            (0..col.len())
                .filter(|&i| !col.is_null(i))
                .map(|i| col.value(i).to_string()),
        );
    }
    Ok(out)
}

/// A dynamic cohort's definition as stored: `{"filters": …, "groups": …}`
/// (what the cohort was made with).
pub fn stored(v: &Value) -> Result<Def> {
    parse(v.get("filters").filter(|f| !f.is_null()), v.get("groups"))
}

/// The cohorts `def` refers to, directly.
pub fn refs(def: &Def) -> BTreeSet<i64> {
    fn walk(def: &Def, out: &mut BTreeSet<i64>) {
        match def {
            Def::And(parts) | Def::Or(parts) => parts.iter().for_each(|d| walk(d, out)),
            Def::Not(d) => walk(d, out),
            Def::Cohort(id) => {
                out.insert(*id);
            }
            Def::Person(_) | Def::Behavioral { .. } => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(def, &mut out);
    out
}

/// Whether `change` — cohort `id` defined by `def` (`None`: removed) —
/// leaves every other live cohort of the project readable: none of them
/// then refers to a cohort that does not exist, nor through more than
/// [`MAX_DEPTH`] cohorts. The cohort's own definition is checked by
/// [`check`]; this is the check of the cohorts that refer to it, which
/// would otherwise fail on every read from then on.
pub fn check_dependents(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    id: i64,
    def: Option<&Def>,
) -> Result<()> {
    let mut graph: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for c in persons
        .cohorts(project)?
        .iter()
        .filter(|c| !c.deleted && c.id != id)
    {
        // A cohort whose stored definition no longer parses is already
        // unreadable: it constrains nothing here.
        let r = if c.is_static {
            BTreeSet::new()
        } else {
            match definition(c) {
                Ok(d) => refs(&d),
                Err(_) => continue,
            }
        };
        graph.insert(c.id, r);
    }
    if let Some(d) = def {
        graph.insert(id, refs(d));
    }
    let referring: Vec<i64> = graph
        .iter()
        .filter(|(c, r)| **c != id && r.contains(&id))
        .map(|(c, _)| *c)
        .collect();
    if def.is_none() {
        if let Some(first) = referring.first() {
            return invalid(format!(
                "cohort {id} is used by cohort {first}{}: change {} first",
                if referring.len() > 1 {
                    " and others"
                } else {
                    ""
                },
                if referring.len() > 1 { "them" } else { "it" }
            ));
        }
        return Ok(());
    }
    // The longest chain of cohorts from each one (1: no reference),
    // computed from `id` outwards to every cohort that reaches it.
    fn depth(
        c: i64,
        graph: &BTreeMap<i64, BTreeSet<i64>>,
        memo: &mut BTreeMap<i64, usize>,
        on_path: &mut Vec<i64>,
    ) -> usize {
        if let Some(&d) = memo.get(&c) {
            return d;
        }
        if on_path.contains(&c) || on_path.len() > MAX_DEPTH {
            // A cycle, or deeper than any reader goes: too deep either way.
            return MAX_DEPTH + 1;
        }
        on_path.push(c);
        let d = 1 + graph
            .get(&c)
            .map(|r| {
                r.iter()
                    .map(|x| depth(*x, graph, memo, on_path))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        on_path.pop();
        memo.insert(c, d);
        d
    }
    let mut memo = BTreeMap::new();
    for c in graph.keys().copied().filter(|c| *c != id) {
        if reaches(c, id, &graph) && depth(c, &graph, &mut memo, &mut Vec::new()) > MAX_DEPTH {
            return invalid(format!(
                "cohort {c} refers to this one: with this definition it would refer to cohorts more than {MAX_DEPTH} deep"
            ));
        }
    }
    Ok(())
}

/// Whether cohort `from` refers to `to`, directly or through others.
fn reaches(from: i64, to: i64, graph: &BTreeMap<i64, BTreeSet<i64>>) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        if let Some(r) = graph.get(&c) {
            if r.contains(&to) {
                return true;
            }
            stack.extend(r.iter().copied());
        }
    }
    false
}

/// A dynamic cohort's definition.
pub fn definition(c: &CohortRow) -> Result<Def> {
    stored(&c.filters)
}

/// Register the members of every cohort that `props` filter on, so that
/// [`props_sql`]'s cohort conditions can run on `ctx`.
pub async fn register_for<'p>(
    ctx: &SessionContext,
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    props: impl IntoIterator<Item = &'p Prop>,
) -> Result<()> {
    let ids: BTreeSet<i64> = leaves(props)
        .into_iter()
        .filter(|l| l.kind == PropKind::Cohort)
        .filter_map(|l| l.filter.value.as_i64())
        .collect();
    let now = Utc::now();
    for id in ids {
        register(ctx, persons, project, id, now, &mut Vec::new()).await?;
    }
    Ok(())
}

/// The SQL condition of a cohort filter on the person `pdi.person_id`:
/// in the cohort (`members`) or not; NULL when there is no person, as
/// `IN` would be. A function of the row ([`is_member`]), not a subquery: it
/// may stand anywhere, in an `OR` and in an aggregate's argument (a
/// funnel's step conditions), where DataFusion cannot plan a subquery.
pub fn condition(id: i64, members: bool) -> String {
    format!(
        "{}{}(pdi.person_id)",
        if members { "" } else { "NOT " },
        member_fn(id)
    )
}

/// The name of the session function whether a person is in a cohort.
fn member_fn(id: i64) -> String {
    format!("cohort_member_{id}")
}

/// Whether `person` is one of `members` (sorted): a binary search of
/// the members' table column, the one copy of them.
fn is_member(members: &StringArray, person: &str) -> bool {
    // The first member not below `person`.
    let (mut lo, mut hi) = (0, members.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if members.value(mid) < person {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo < members.len() && members.value(lo) == person
}

/// The members of a cohort (UUIDs, sorted).
pub async fn members(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    id: i64,
    limits: &QueryLimits,
) -> Result<Vec<String>> {
    let ctx = session(persons, project, limits)?;
    register(&ctx, persons, project, id, Utc::now(), &mut Vec::new()).await?;
    let mut out = Vec::new();
    for b in collect(
        &ctx,
        &format!(
            "SELECT person_id FROM {} ORDER BY person_id",
            table_name(id)
        ),
    )
    .await?
    {
        let col = b.column(0).as_string::<i32>();
        out.extend((0..col.len()).map(|i| col.value(i).to_string()));
    }
    Ok(out)
}

/// The live cohorts of the project that hold `person` (UUID text), each
/// with its number of members. A cohort whose definition cannot be
/// evaluated now (it refers to a cohort since removed) holds nobody; it is
/// logged and left out, not an error of the whole answer.
pub async fn cohorts_of(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    person: &str,
    limits: &QueryLimits,
) -> Result<Vec<(CohortRow, u64)>> {
    let all = persons.cohorts(project)?;
    let ctx = session(persons, project, limits)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for c in all.into_iter().filter(|c| !c.deleted) {
        match register(&ctx, persons, project, c.id, now, &mut Vec::new()).await {
            Ok(()) => {}
            Err(AppError::InvalidQuery(e)) => {
                tracing::warn!(cohort = c.id, error = %e, "cohort definition cannot be evaluated");
                continue;
            }
            Err(e) => return Err(e),
        }
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE person_id = {}) FROM {}",
            lit(person),
            table_name(c.id),
        );
        let mut counts = (0, 0);
        for b in collect(&ctx, &sql).await? {
            let col = |i: usize| {
                b.column(i)
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()
                    .filter(|a| !a.is_empty())
                    .map_or(0, |a| a.value(0))
            };
            counts = (col(0), col(1));
        }
        if counts.1 > 0 {
            out.push((c, counts.0.max(0) as u64));
        }
    }
    Ok(out)
}

/// Check a dynamic cohort's stored definition (`{"filters", "groups"}`),
/// and that the cohorts it refers to exist, by computing its members once;
/// returns their number (as [`members`] would count them). `itself`: the
/// cohort the definition is for, when it exists already (a change): a
/// reference to it, directly or through other cohorts, is a cycle.
pub async fn check(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    filters: &Value,
    itself: Option<i64>,
    limits: &QueryLimits,
) -> Result<usize> {
    let def = stored(filters)?;
    let ctx = session(persons, project, limits)?;
    let now = Utc::now();
    // The cohort itself is on the path (a new one as an id no cohort
    // has), so that its references are as deep as a reader's are.
    let mut path: Vec<i64> = vec![itself.unwrap_or(i64::MIN)];
    let members = dynamic_members(&ctx, persons, project, &def, now, &mut path).await?;
    Ok(members.len())
}
