//! PostHog's `EventsQuery` (the events explorer, a person's events tab):
//! a table of a project's events whose columns and conditions are HogQL
//! expressions given one by one, as PostHog's `EventsQueryRunner` builds
//! it.
//!
//! - `select` (default `["*"]`): each an expression ([`hogql::pieces`]),
//!   or PostHog's special columns: `*` (the event as an object),
//!   `person` (the event's person as an object) and
//!   `person_display_name` (`{display_name, id, distinct_id}`), each
//!   computed after the query from a few plain columns ([`Column`]). A
//!   label after `--` names a column and changes nothing.
//! - Conditions: `where` (expressions; one that aggregates is a `HAVING`),
//!   `properties` and `fixedProperties` (property filters: event, person,
//!   cohort), `event`/`events`, `personId` (the events of that person's
//!   distinct ids), `after` (default `-24h`; `all`: none) and `before`
//!   (default five seconds from now), relative times read as PostHog's
//!   `relative_date_parse` reads them ([`filter::parse_instant`]).
//! - With an aggregating column, the other columns are the `GROUP BY`;
//!   `orderBy` as given, else `count()` first, else the first aggregate,
//!   else `timestamp`, newest first, else the first column.
//!
//! Invariant: the user's pieces reach SQL only as the parser printed each
//! one alone, as one expression; the filters are applied to a view of
//! `events` in the query's own session (deletions applied, the project's
//! rows only), which the HogQL reads in place of `events`
//! ([`crate::query::run_hogql_in`]); a piece's own subquery of `events`
//! reads all of them, as PostHog's.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::prelude::SessionContext;
use elide_persons::{Persons, SqliteMeta};
use serde_json::{json, Map, Value};

use super::filter;
use super::properties::{events_only, props, props_sql, Prop};
use super::query_nodes::check_node;
use super::{lit, session, ts_lit};
use crate::error::{AppError, Result};
use crate::hogql::pieces::{self, Piece};
use crate::query::{QueryLimits, QueryOutput};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// Rows one page holds by default, and at most (PostHog's query limit
/// context: `DEFAULT_RETURNED_ROWS`, `MAX_SELECT_RETURNED_ROWS`).
pub const DEFAULT_LIMIT: usize = 100;
/// Most rows of one page.
pub const MAX_LIMIT: usize = 50_000;
/// Most columns, conditions or orderings of one query.
pub const MAX_PIECES: usize = 200;
/// Most events names in `events`.
pub const MAX_EVENTS: usize = 1_000;
/// Largest `offset`.
pub const MAX_OFFSET: usize = 1_000_000_000;

/// The fields of a `*` column read from the events (PostHog's
/// `SELECT_STAR_FROM_EVENTS_FIELDS`; `team_id`, `elements_chain` and
/// `person_mode` are added from the project and the properties), each as
/// the plain column it is read from.
const STAR: [(&str, &str); 6] = [
    ("uuid", "uuid"),
    ("event", "event"),
    ("properties", "properties"),
    ("timestamp", "timestamp"),
    ("distinct_id", "distinct_id"),
    ("created_at", "inserted_at"),
];

/// The view of the filtered events the query reads (`events` stays whole
/// for a piece's subquery, as in PostHog).
const NARROWED: &str = "__events_query_events";

/// What a person shown costs beyond its properties (bytes).
const ENTRY_BYTES: usize = 256;

/// PostHog's display name properties, in order
/// (`PERSON_DEFAULT_DISPLAY_NAME_PROPERTIES`).
const DISPLAY_NAME_PROPERTIES: [&str; 3] = ["email", "name", "username"];

/// What one asked column is, and where its plain columns are.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// An expression: plain column `i`.
    Expr(usize),
    /// `*`: the [`STAR`] fields from plain column `i` on.
    Star(usize),
    /// `person`: the distinct id at plain column `i`.
    Person(usize),
    /// `person_display_name`: the distinct id at `i`, the event's person
    /// at `i + 1`.
    DisplayName(usize),
}

/// An `EventsQuery`, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsQuerySpec {
    /// The columns as asked (the answer's `columns`).
    pub asked: Vec<String>,
    columns: Vec<Column>,
    /// The plain columns the query selects.
    plain: Vec<Piece>,
    conditions: Vec<Piece>,
    props: Vec<Prop>,
    events: Vec<String>,
    person: Option<String>,
    before: i64,
    after: Option<i64>,
    order: Vec<String>,
    /// Whether `orderBy` was given (`order` then replaces the default).
    ordered: bool,
    /// Whether an ordering aggregates or reads other rows (a window).
    order_spans_rows: bool,
    /// Rows of one page.
    pub limit: usize,
    /// Rows skipped first.
    pub offset: usize,
}

/// The text before a column's `--` label, trimmed.
fn bare(c: &str) -> &str {
    c.split("--").next().unwrap_or("").trim()
}

fn texts(v: Option<&Value>, what: &str) -> Result<Vec<String>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(v) => return invalid(format!("{what} must be a list of texts, got {v}")),
    };
    if list.len() > MAX_PIECES {
        return invalid(format!(
            "{what}: {} items; at most {MAX_PIECES}",
            list.len()
        ));
    }
    list.iter()
        .map(|x| match x {
            Value::String(s) => Ok(s.clone()),
            other => invalid(format!("{what} must be a list of texts, got {other}")),
        })
        .collect()
}

fn count(q: &Map<String, Value>, key: &str, default: usize, most: usize) -> Result<usize> {
    match q.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n <= most => Ok(n),
            _ => invalid(format!(
                "{key} must be an integer from 0 to {most}, got {v}"
            )),
        },
    }
}

impl EventsQuerySpec {
    /// Parse an `EventsQuery` (`now` resolves its relative times).
    pub fn parse(q: &Map<String, Value>, now: DateTime<Utc>) -> Result<EventsQuerySpec> {
        check_node(
            q,
            "EventsQuery",
            &[
                "select",
                "where",
                "properties",
                "fixedProperties",
                "event",
                "events",
                "personId",
                "before",
                "after",
                "orderBy",
                "limit",
                "offset",
                "source",
                "actionId",
                "actionSteps",
            ],
        )?;
        if q.get("dateRange").is_some_and(|v| !v.is_null()) {
            return invalid("EventsQuery: dateRange is not read: give after and before");
        }
        for key in ["source", "actionId"] {
            if q.get(key).is_some_and(|v| !v.is_null()) {
                return invalid(format!(
                    "EventsQuery: {key} is not supported (Elide has no actions, and takes no source)"
                ));
            }
        }
        if q.get("actionSteps")
            .is_some_and(|v| !v.is_null() && v != &json!([]))
        {
            return invalid("EventsQuery: actionSteps is not supported (Elide has no actions)");
        }
        let mut asked = texts(q.get("select"), "select")?;
        if asked.is_empty() {
            asked.push("*".into());
        }
        let mut plain: Vec<Piece> = Vec::new();
        let mut columns = Vec::new();
        let mut push = |text: &str| {
            plain.push(Piece {
                text: text.to_string(),
                alias: None,
                aggregates: false,
                spans_rows: false,
            });
            plain.len() - 1
        };
        let mut exprs: Vec<(usize, Piece)> = Vec::new();
        for c in &asked {
            columns.push(match bare(c) {
                "*" => {
                    let at = push(STAR[0].1);
                    for (_, col) in &STAR[1..] {
                        push(col);
                    }
                    Column::Star(at)
                }
                "person" => Column::Person(push("distinct_id")),
                "person_display_name" => {
                    let at = push("distinct_id");
                    push("person_id");
                    Column::DisplayName(at)
                }
                _ => {
                    let piece = pieces::expression(c, "select")?;
                    let at = push("");
                    exprs.push((at, piece));
                    Column::Expr(at)
                }
            });
        }
        for (at, piece) in exprs {
            plain[at] = piece;
        }
        let conditions = texts(q.get("where"), "where")?
            .iter()
            .map(|w| match pieces::expression(w, "where")? {
                p if p.alias.is_some() => invalid(format!("where {w:?}: a condition has no name")),
                p => Ok(p),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut all_props = props(q.get("properties").cloned(), "properties")?;
        all_props.extend(props(q.get("fixedProperties").cloned(), "fixedProperties")?);
        let mut events = Vec::new();
        match q.get("event") {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) if e.is_empty() => {}
            Some(Value::String(e)) => events.push(e.clone()),
            Some(v) => return invalid(format!("event must be an event name, got {v}")),
        }
        events.extend(
            texts(q.get("events"), "events")?
                .into_iter()
                .filter(|e| !e.is_empty()),
        );
        if events.len() > MAX_EVENTS {
            return invalid(format!(
                "events: {} names; at most {MAX_EVENTS}",
                events.len()
            ));
        }
        let person = match q.get("personId") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(v) => return invalid(format!("personId must be a person's id or UUID, got {v}")),
        };
        let time = |key: &str| -> Result<Option<String>> {
            match q.get(key) {
                None | Some(Value::Null) => Ok(None),
                // PostHog's `or`: an empty one is the default.
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => invalid(format!("{key} must be a date, got {v}")),
            }
        };
        // Not future events by default (PostHog: five seconds ahead).
        let before = match time("before")? {
            Some(b) => filter::parse_instant(&b, now, "before")?,
            None => now + chrono::Duration::seconds(5),
        };
        let after = match time("after")?.as_deref().unwrap_or("-24h") {
            "all" => None,
            a => Some(filter::parse_instant(a, now, "after")?.timestamp_micros()),
        };
        // Given (even empty: no ordering, as PostHog's `is not None`), or
        // PostHog's default ([`EventsQuerySpec::hogql`]).
        let ordered = q.get("orderBy").is_some_and(|v| !v.is_null());
        let mut order = Vec::new();
        let mut order_spans_rows = false;
        for o in texts(q.get("orderBy"), "orderBy")? {
            // PostHog orders the display name (`person_display_name --
            // Person [ASC|DESC]`, the column as the explorer names it) by
            // the person's display name properties, then the person's id.
            match o.trim().strip_prefix("person_display_name") {
                Some(rest) => {
                    let rest = rest.trim_start();
                    let rest = rest.strip_prefix("-- Person").unwrap_or(rest).trim();
                    let dir = match rest.to_ascii_uppercase().as_str() {
                        "" | "ASC" => "ASC",
                        "DESC" => "DESC",
                        _ => {
                            return invalid(format!(
                                "orderBy {o:?}: person_display_name is ordered ASC or DESC"
                            ))
                        }
                    };
                    order.push(format!("{} {dir}", display_name_sql()));
                    order.push(format!("CAST(person_id AS VARCHAR) {dir}"));
                }
                None => {
                    let o = pieces::ordering(&o, "orderBy")?;
                    order_spans_rows |= o.aggregates || o.spans_rows;
                    order.push(o.text);
                }
            }
        }
        Ok(EventsQuerySpec {
            asked,
            columns,
            plain,
            conditions,
            props: all_props,
            events,
            person,
            before: before.timestamp_micros(),
            after,
            order,
            ordered,
            order_spans_rows,
            // PostHog's `limit or default`: 0 is the default.
            limit: match count(q, "limit", DEFAULT_LIMIT, MAX_LIMIT)? {
                0 => DEFAULT_LIMIT,
                n => n,
            },
            offset: count(q, "offset", 0, MAX_OFFSET)?,
        })
    }

    /// The name of plain column `i` in the query: its own `AS` name (which
    /// `orderBy` may use), else `__c{i}`.
    fn output_name(&self, i: usize) -> String {
        match self.plain.get(i).and_then(|p| p.alias.as_deref()) {
            Some(a) => ast_ident(a),
            None => format!("__c{i}"),
        }
    }

    /// The query's orderings: `orderBy`, else PostHog's default.
    fn ordering(&self) -> Vec<String> {
        let aggregates = self.plain.iter().any(|p| p.aggregates);
        if self.ordered {
            self.order.clone()
        } else if self.asked.iter().any(|c| bare(c) == "count()") {
            vec!["count() DESC".into()]
        } else if let Some(a) = self.plain.iter().find(|p| p.aggregates) {
            vec![format!("{} DESC", a.text)]
        } else if self.asked.iter().any(|c| bare(c) == "timestamp") {
            vec!["timestamp DESC".into()]
        } else {
            match self.columns.first() {
                Some(Column::Expr(i)) => vec![format!("{} ASC", self.output_name(*i))],
                _ if !aggregates => vec!["timestamp DESC".into()],
                _ => Vec::new(),
            }
        }
    }

    /// When the rows come newest (or oldest) first, each row of the page
    /// is an event of its own (nothing aggregates, no window or
    /// set-returning call), `timestamp` is the events' time (no column
    /// is named so) and no piece reads the narrowed view itself (it is
    /// narrowed further in the page's query): the direction, and the
    /// comparison that keeps the rows from the page's last on
    /// ([`EventsQuerySpec::threshold_hogql`]).
    fn by_time(&self) -> Option<(&'static str, &'static str)> {
        let pieces = || self.plain.iter().chain(&self.conditions);
        let names_view = |t: &str| t.to_ascii_lowercase().contains(NARROWED);
        if self.order_spans_rows
            || pieces().any(|p| p.aggregates || p.spans_rows || names_view(&p.text))
            || self.order.iter().any(|o| names_view(o))
            // ORDER BY reads an output name before a column.
            || self
                .plain
                .iter()
                .any(|p| p.alias.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("timestamp")))
        {
            return None;
        }
        match self.ordering().first().map(String::as_str) {
            Some("timestamp DESC") => Some(("DESC", ">=")),
            Some("timestamp ASC" | "timestamp") => Some(("ASC", "<=")),
            _ => None,
        }
    }

    /// The time of the last row a page of `limit` rows (and the one after
    /// it, for `hasMore`) needs, found over the narrow `timestamp` alone:
    /// PostHog's runner sorts the `uuid` first for the same reason, so
    /// that the wide columns are read only for the rows kept.
    fn threshold_hogql(&self, dir: &str, limit: usize) -> String {
        let where_: Vec<String> = self
            .conditions
            .iter()
            .map(|c| format!("({})", c.text))
            .collect();
        let mut sql = format!("SELECT CAST(timestamp AS BIGINT) AS t FROM {NARROWED} AS events");
        if !where_.is_empty() {
            sql.push_str(&format!(" WHERE {}", where_.join(" AND ")));
        }
        sql.push_str(&format!(
            " ORDER BY timestamp {dir} LIMIT 1 OFFSET {}",
            limit.saturating_add(self.offset)
        ));
        sql
    }

    /// The HogQL of the query over the narrowed `events`
    /// ([`EventsQuerySpec::view_sql`]).
    fn hogql(&self, limit: usize) -> String {
        // Each piece in parentheses, as [`pieces`] asks.
        let select: Vec<String> = self
            .plain
            .iter()
            .enumerate()
            .map(|(i, p)| format!("({}) AS {}", p.text, self.output_name(i)))
            .collect();
        let aggregates = self.plain.iter().any(|p| p.aggregates);
        // Each grouped expression once (DataFusion refuses a repeated one).
        let mut group: Vec<String> = Vec::new();
        for p in self.plain.iter().filter(|p| !p.aggregates) {
            let g = format!("({})", p.text);
            if !group.contains(&g) {
                group.push(g);
            }
        }
        let (having, where_): (Vec<&Piece>, Vec<&Piece>) =
            self.conditions.iter().partition(|c| c.aggregates);
        let joined = |list: Vec<&Piece>| {
            list.iter()
                .map(|c| format!("({})", c.text))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let mut sql = format!("SELECT {} FROM {NARROWED} AS events", select.join(", "));
        if !where_.is_empty() {
            sql.push_str(&format!(" WHERE {}", joined(where_)));
        }
        if aggregates && !group.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
        }
        if !having.is_empty() {
            sql.push_str(&format!(" HAVING {}", joined(having)));
        }
        let order = self.ordering();
        if !order.is_empty() {
            sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        sql.push_str(&format!(
            " LIMIT {} OFFSET {}",
            limit.saturating_add(1),
            self.offset
        ));
        sql
    }

    /// The events the query may read: its filters as a view of `events`
    /// (`e`), the person's distinct ids given.
    fn view_sql(&self, columns: &[String], person: Option<Option<String>>) -> Result<String> {
        let mut filter = vec![format!("e.timestamp < {}", ts_lit(self.before))];
        if let Some(a) = self.after {
            filter.push(format!("e.timestamp > {}", ts_lit(a)));
        }
        if !self.events.is_empty() {
            let list: Vec<String> = self.events.iter().map(|e| lit(e)).collect();
            filter.push(format!("e.event IN ({})", list.join(", ")));
        }
        match person {
            None => {}
            Some(None) => filter.push("FALSE".into()),
            // The person's distinct ids, read in the query (however many).
            Some(Some(uuid)) => filter.push(format!(
                "e.distinct_id IN (SELECT ids.distinct_id FROM person_distinct_ids ids \
                 WHERE ids.person_id = {})",
                lit(&uuid)
            )),
        }
        filter.push(props_sql(&self.props)?);
        // Person filters read the person owning the event's distinct id
        // now (an event without one has empty person properties).
        let join = if self.props.iter().all(events_only) {
            ""
        } else {
            " LEFT JOIN person_distinct_ids pdi ON pdi.distinct_id = e.distinct_id \
             LEFT JOIN persons p ON p.uuid = pdi.person_id"
        };
        // Each column by its own name (not `e.…`: the HogQL runner's
        // views of `events` take its columns unqualified).
        let select: Vec<String> = columns
            .iter()
            .map(|c| format!("e.\"{c}\" AS \"{c}\""))
            .collect();
        Ok(format!(
            "SELECT {} FROM events e{join} WHERE {}",
            select.join(", "),
            filter.join(" AND ")
        ))
    }
}

/// `name` as a quoted identifier (its quotes doubled).
fn ast_ident(name: &str) -> String {
    datafusion::sql::sqlparser::ast::Ident::with_quote('"', name).to_string()
}

/// PostHog's display name of the event's person, in HogQL: the first of
/// its display name properties, else the distinct id.
fn display_name_sql() -> String {
    let props: Vec<String> = DISPLAY_NAME_PROPERTIES
        .iter()
        .map(|k| format!("person.properties.{k}"))
        .collect();
    format!("coalesce({}, distinct_id)", props.join(", "))
}

/// PostHog's `EventsQueryResponse`: the asked columns, their types, the
/// rows with the special columns as objects.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventsAnswer {
    /// The columns as asked.
    pub columns: Vec<String>,
    /// Each column's ClickHouse type.
    pub types: Vec<String>,
    /// The rows.
    pub results: Vec<Vec<Value>>,
    /// Whether more rows follow this page.
    #[serde(rename = "hasMore")]
    pub has_more: bool,
    /// The rows of a page.
    pub limit: usize,
    /// The rows skipped first.
    pub offset: usize,
}

/// Run `spec` over `project`'s events.
pub async fn run(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &EventsQuerySpec,
    limits: &QueryLimits,
) -> Result<EventsAnswer> {
    let person = match &spec.person {
        None => None,
        Some(key) => Some(match persons.get(project, key) {
            Ok(p) => Some(p.uuid.hyphenated().to_string()),
            Err(elide_persons::PersonsError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        }),
    };
    let ctx = cohort_session(persons, project, spec, limits).await?;
    let columns: Vec<String> = ctx
        .table("events")
        .await?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let view = spec.view_sql(&columns, person)?;
    // The server's own row cap holds too.
    let limit = spec.limit.min(limits.max_rows.saturating_sub(1).max(1));
    // Newest (or oldest) first: the rows from the page's last one on, by
    // a first query over the times alone.
    let bound = match spec.by_time() {
        None => None,
        Some((dir, keep)) => {
            let first = cohort_session(persons, project, spec, limits).await?;
            let t = crate::query::run_hogql_in(
                first,
                persons,
                project,
                (&spec.threshold_hogql(dir, limit), Some((NARROWED, &view))),
                limits,
            )
            .await?;
            t.results
                .first()
                .and_then(|r| r.first())
                .and_then(Value::as_i64)
                .map(|t| format!("{view} AND e.timestamp {keep} {}", ts_lit(t)))
        }
    };
    let (out, pool) = match bound {
        Some(from_t) => {
            let (out, pool) =
                read_page(ctx, persons, project, spec, &from_t, limit, limits).await?;
            // The first query found a row after the page, so the page
            // holds it too, unless the rows changed between the two (a
            // deletion, a condition such as `rand()`): then the page is
            // read again without the bound.
            if out.results.len() > limit {
                (out, pool)
            } else {
                tracing::debug!("events query: the rows changed after the page's bound was found");
                let ctx = cohort_session(persons, project, spec, limits).await?;
                read_page(ctx, persons, project, spec, &view, limit, limits).await?
            }
        }
        None => read_page(ctx, persons, project, spec, &view, limit, limits).await?,
    };
    // What the answer holds beyond the rows' text (their properties as
    // objects, the persons shown) is charged as it is built.
    let held = elide_query::hold(&pool, "events query answer", 0)?;
    let mut rows = out.results;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    // The persons of the distinct ids the special columns show.
    let mut wanted: Vec<String> = Vec::new();
    for c in &spec.columns {
        if let Column::Person(i) | Column::DisplayName(i) = c {
            wanted.extend(
                rows.iter()
                    .filter_map(|r| r.get(*i)?.as_str().map(String::from)),
            );
        }
    }
    wanted.sort();
    wanted.dedup();
    let mut found: BTreeMap<String, elide_persons::Person> = BTreeMap::new();
    for chunk in wanted.chunks(elide_persons::persons::MAX_LOOKUP) {
        for (d, p) in persons.by_distinct_ids(project, chunk)? {
            let bytes = serde_json::to_string(&p.properties).map_or(0, |t| 2 * t.len());
            held.try_grow(bytes + d.len() + ENTRY_BYTES)?;
            found.insert(d, p);
        }
    }
    // A `*` cell's properties, as an object: about twice its text.
    for c in &spec.columns {
        if let Column::Star(i) = c {
            let text: usize = rows
                .iter()
                .filter_map(|r| r.get(i + 2)?.as_str().map(str::len))
                .sum();
            held.try_grow(2 * text)?;
        }
    }
    let types = spec
        .columns
        .iter()
        .map(|c| match c {
            Column::Expr(i) => out.types.get(*i).map(|t| t.1.clone()).unwrap_or_default(),
            Column::Star(_) => {
                "Tuple(UUID, String, String, DateTime64(6, 'UTC'), String, DateTime64(6, 'UTC'))"
                    .into()
            }
            Column::Person(_) => "String".into(),
            Column::DisplayName(_) => "Tuple(String, String, String)".into(),
        })
        .collect();
    let results = rows
        .iter()
        .map(|r| {
            spec.columns
                .iter()
                .map(|c| shown(c, r, project, &found))
                .collect()
        })
        .collect();
    Ok(EventsAnswer {
        columns: spec.asked.clone(),
        types,
        results,
        has_more,
        limit,
        offset: spec.offset,
    })
}

/// A session of `project`'s rows with the cohorts `spec`'s filters name.
async fn cohort_session(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &EventsQuerySpec,
    limits: &QueryLimits,
) -> Result<SessionContext> {
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(&ctx, persons, project, spec.props.iter()).await?;
    Ok(ctx)
}

/// A page of `spec`'s rows (and the one after it, for `hasMore`) over
/// `view`, in `ctx`; and the session's memory pool, which the answer is
/// charged to as it is built.
async fn read_page(
    ctx: SessionContext,
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &EventsQuerySpec,
    view: &str,
    limit: usize,
    limits: &QueryLimits,
) -> Result<(QueryOutput, Arc<dyn MemoryPool>)> {
    let pool = Arc::clone(&ctx.runtime_env().memory_pool);
    let out = crate::query::run_hogql_in(
        ctx,
        persons,
        project,
        (&spec.hogql(limit), Some((NARROWED, view))),
        &QueryLimits {
            default_rows: limit.saturating_add(1),
            max_rows: limit.saturating_add(1),
            ..limits.clone()
        },
    )
    .await?;
    Ok((out, pool))
}

/// Column `c` of plain row `r`, as PostHog's runner shows it.
fn shown(
    c: &Column,
    r: &[Value],
    project: i64,
    found: &BTreeMap<String, elide_persons::Person>,
) -> Value {
    let at = |i: usize| r.get(i).cloned().unwrap_or(Value::Null);
    match c {
        Column::Expr(i) => at(*i),
        Column::Star(i) => {
            let mut o = Map::new();
            for (k, (name, _)) in STAR.iter().enumerate() {
                let v = at(i + k);
                match *name {
                    // The stored text, as the object it is.
                    "properties" => {
                        let props = v
                            .as_str()
                            .and_then(|t| serde_json::from_str::<Value>(t).ok())
                            .unwrap_or_else(|| json!({}));
                        let propertyless = props
                            .get("$process_person_profile")
                            .is_some_and(|p| p == &json!(false));
                        let chain = props
                            .get("$elements_chain")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        o.insert("properties".into(), props);
                        o.insert("elements_chain".into(), json!(chain));
                        o.insert(
                            "person_mode".into(),
                            json!(if propertyless { "propertyless" } else { "full" }),
                        );
                    }
                    _ => {
                        o.insert(name.to_string(), v);
                    }
                }
            }
            o.insert("team_id".into(), json!(project));
            Value::Object(o)
        }
        Column::Person(i) => {
            let d = at(*i);
            match d.as_str().and_then(|d| found.get(d)) {
                Some(p) => json!({"uuid": p.uuid.hyphenated().to_string(),
                    "created_at": p.created_at, "properties": p.properties, "distinct_id": d}),
                None => json!({"distinct_id": d}),
            }
        }
        Column::DisplayName(i) => {
            let d = at(*i);
            let person = d.as_str().and_then(|d| found.get(d));
            let name = person
                .and_then(|p| {
                    DISPLAY_NAME_PROPERTIES
                        .iter()
                        .find_map(|k| p.properties.get(*k).filter(|v| !v.is_null()))
                })
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .or_else(|| d.as_str().map(String::from))
                .unwrap_or_default();
            let id = match person {
                Some(p) => p.uuid.hyphenated().to_string(),
                None => at(i + 1).as_str().unwrap_or_default().to_string(),
            };
            json!({"display_name": name, "id": id, "distinct_id": d})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(q: Value) -> EventsQuerySpec {
        let q = q.as_object().cloned().unwrap_or_default();
        EventsQuerySpec::parse(&q, Utc::now()).expect("a query")
    }

    #[test]
    fn a_page_is_found_by_time_only_when_its_rows_are_events_of_their_own() {
        // PostHog's default: newest first.
        assert_eq!(
            spec(json!({"kind": "EventsQuery"})).by_time(),
            Some(("DESC", ">="))
        );
        let asc = spec(
            json!({"kind": "EventsQuery", "select": ["event", "timestamp"],
            "orderBy": ["timestamp ASC", "event"]}),
        );
        assert_eq!(asc.by_time(), Some(("ASC", "<=")));
        for select in [
            json!(["event", "count()"]),
            // A window reads other rows than the page's.
            json!(["event", "count() OVER () AS n"]),
            json!(["event", "lag(event) OVER (ORDER BY timestamp)"]),
            // A row may give none or several.
            json!(["unnest(x)"]),
            // `ORDER BY timestamp` would read this column.
            json!(["event", "0 - toUnixTimestamp(timestamp) AS timestamp"]),
        ] {
            let s = spec(json!({"kind": "EventsQuery", "select": select,
                "orderBy": ["timestamp DESC"]}));
            assert_eq!(s.by_time(), None, "{select}");
        }
        for (key, piece) in [
            ("where", "count() OVER () > 1"),
            ("where", "(SELECT count() FROM __events_query_events) < 50"),
            ("orderBy", "count() OVER (PARTITION BY event) DESC"),
        ] {
            let mut q = json!({"kind": "EventsQuery", "select": ["event"],
                "where": [], "orderBy": ["timestamp DESC"]});
            q[key].as_array_mut().expect("a list").push(json!(piece));
            assert_eq!(spec(q).by_time(), None, "{piece}");
        }
        // The first query reads the time of the row after the page.
        let s = spec(json!({"kind": "EventsQuery", "select": ["event"],
            "where": ["event = 'a'"], "orderBy": ["timestamp DESC"], "offset": 5}));
        let sql = s.threshold_hogql("DESC", 10);
        assert!(
            sql.ends_with("WHERE (event = 'a') ORDER BY timestamp DESC LIMIT 1 OFFSET 15"),
            "{sql}"
        );
    }
}
