//! PostHog's events list (`GET …/events/`) and one event
//! (`GET …/events/{id}/`): a project's visible events (deletions
//! applied), filtered by event name, distinct id, person, a time window
//! and property filters (event, person or cohort), newest first or
//! oldest first.
//!
//! The order is total: time, then the event's UUID, then its place in
//! the store (`_seq`: a UUID sent twice, as an SDK's retry does, is two
//! rows). The server's `next` link continues after the last event it
//! listed, by all three ([`EventsQuery::before_uuid`]), so a page
//! boundary between events of the same time neither skips nor repeats
//! one (PostHog's `before` at the last time skips them).
//!
//! Also the values an event property takes ([`property_values`]) and the
//! project's own event names ([`event_names`]), for `events/values/`.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use elide_persons::{IdRows, Persons, SqliteMeta};
use futures::StreamExt;

use super::properties::{events_only, props_sql, Prop};
use super::{lit, session, stream, ts_lit};
use crate::error::Result;
use crate::query::QueryLimits;

/// What the events list selects.
#[derive(Debug, Clone, Default)]
pub struct EventsQuery {
    /// Only this event name.
    pub event: Option<String>,
    /// Only this distinct id.
    pub distinct_id: Option<String>,
    /// Only a person's rows ([`Persons::rows_of_person`]; empty: none).
    pub person_rows: Option<Vec<IdRows>>,
    /// Events after this time (µs, exclusive).
    pub after_us: Option<i64>,
    /// Events before this time (µs, exclusive).
    pub before_us: Option<i64>,
    /// With `before_us`: also the events at that time whose UUID sorts
    /// before this one (a `next` link's cursor, newest first).
    pub before_uuid: Option<String>,
    /// With `after_us`: also the events at that time whose UUID sorts
    /// after this one (oldest first).
    pub after_uuid: Option<String>,
    /// With a cursor's UUID: also the events of that time and UUID
    /// stored before (newest first) or after (oldest first) this `_seq`.
    pub cursor_seq: Option<u64>,
    /// Property filters (event, person, cohort), all of which hold.
    pub props: Vec<Prop>,
    /// Oldest first (default: newest first).
    pub ascending: bool,
    /// Most events listed.
    pub limit: usize,
    /// Events skipped first (PostHog's deprecated `offset`).
    pub offset: usize,
}

/// One listed event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The event's UUID.
    pub uuid: String,
    /// Its name.
    pub event: String,
    /// The distinct id that sent it.
    pub distinct_id: String,
    /// Its properties (JSON text; `{}` when it has none).
    pub properties: String,
    /// Its time (µs since the epoch, UTC).
    pub timestamp_us: i64,
    /// Its place in the store (`_seq`).
    pub seq: u64,
}

/// Up to `q.limit + 1` events (one more than a page: whether another
/// page follows), in `q`'s order.
pub async fn list(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    q: &EventsQuery,
    limits: &QueryLimits,
) -> Result<Vec<EventRow>> {
    let ctx = session(persons, project, limits)?;
    super::cohorts::register_for(&ctx, persons, project, q.props.iter()).await?;
    let mut events = ctx.table("events").await?;
    if let Some(rows) = &q.person_rows {
        match crate::sql::person_rows_filter(rows.clone()) {
            Some(f) => events = events.filter(f)?,
            None => return Ok(Vec::new()),
        }
    }
    ctx.register_table("listed_events", events.into_view())?;
    let mut filter = Vec::new();
    let id = "CAST(e.uuid AS VARCHAR)";
    // After a cursor (time, UUID, `_seq`), in the order's direction `op`
    // (`cursor_seq` belongs to the bound the order moves toward).
    let after_cursor = |t: i64, u: &str, op: &str| {
        let seq = q.cursor_seq.filter(|_| (op == ">") == q.ascending);
        let same = match seq {
            None => format!("{id} {op} {}", lit(u)),
            Some(s) => format!(
                "({id} {op} {u} OR ({id} = {u} AND e._seq {op} {s}))",
                u = lit(u)
            ),
        };
        // The plain bound first, for the scan's pruning.
        format!(
            "e.timestamp {op}= {t} AND (e.timestamp {op} {t} OR {same})",
            t = ts_lit(t)
        )
    };
    if let Some(b) = q.before_us {
        filter.push(match &q.before_uuid {
            None => format!("e.timestamp < {}", ts_lit(b)),
            Some(u) => after_cursor(b, u, "<"),
        });
    }
    if let Some(a) = q.after_us {
        filter.push(match &q.after_uuid {
            None => format!("e.timestamp > {}", ts_lit(a)),
            Some(u) => after_cursor(a, u, ">"),
        });
    }
    if let Some(e) = &q.event {
        filter.push(format!("e.event = {}", lit(e)));
    }
    if let Some(d) = &q.distinct_id {
        filter.push(format!("e.distinct_id = {}", lit(d)));
    }
    filter.push(props_sql(&q.props)?);
    // Person filters read the person owning the event's distinct id now
    // (an event without one has empty person properties).
    let join = if !q.props.iter().all(events_only) {
        " LEFT JOIN person_distinct_ids pdi ON pdi.distinct_id = e.distinct_id \
         LEFT JOIN persons p ON p.uuid = pdi.person_id"
    } else {
        ""
    };
    let dir = if q.ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {id} AS uuid, e.event, e.distinct_id, e.properties, \
         CAST(e.timestamp AS BIGINT) AS ts, e._seq AS seq FROM listed_events e{join} WHERE {} \
         ORDER BY e.timestamp {dir}, {id} {dir}, e._seq {dir} LIMIT {} OFFSET {}",
        filter.join(" AND "),
        q.limit.saturating_add(1),
        q.offset,
    );
    rows(&ctx, &sql).await
}

/// The visible event whose UUID is `uuid` (a UUID, checked by the
/// caller), if any: of a UUID stored twice, the last stored (the one the
/// list shows first).
pub async fn one(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    uuid: &str,
    limits: &QueryLimits,
) -> Result<Option<EventRow>> {
    let ctx = session(persons, project, limits)?;
    let sql = format!(
        "SELECT CAST(e.uuid AS VARCHAR) AS uuid, e.event, e.distinct_id, e.properties, \
         CAST(e.timestamp AS BIGINT) AS ts, e._seq AS seq FROM events e WHERE e.uuid = {} \
         ORDER BY e._seq DESC LIMIT 1",
        lit(uuid)
    );
    Ok(rows(&ctx, &sql).await?.into_iter().next())
}

/// Most values [`property_values`] lists (PostHog's `LIMIT 10`).
pub const MAX_VALUES: usize = 10;

/// Most event names [`event_names`] lists.
pub const MAX_EVENT_NAMES: usize = 1000;

/// The events PostHog's `custom_event` values leave out.
const SYSTEM_EVENTS: [&str; 5] = [
    "$autocapture",
    "$pageview",
    "$identify",
    "$pageleave",
    "$screen",
];

/// What `events/values/` asks of an event property.
#[derive(Debug, Clone, Default)]
pub struct ValuesQuery {
    /// The property.
    pub key: String,
    /// Only values whose text contains this, ignoring case (as text, not
    /// a LIKE pattern); then the shortest first.
    pub search: Option<String>,
    /// Only events of these names (none: all).
    pub events: Vec<String>,
    /// The window (µs, inclusive).
    pub from_us: i64,
    /// The window's end (µs, inclusive).
    pub to_us: i64,
}

/// The values `q.key` takes on the project's visible events in the
/// window, as JSON text (a string quoted), at most [`MAX_VALUES`]: the
/// most frequent first, or with `q.search` the shortest first (PostHog
/// orders by length then). Events without the property, or with a JSON
/// `null` (which HogQL reads as NULL), give nothing.
pub async fn property_values(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    q: &ValuesQuery,
    limits: &QueryLimits,
) -> Result<Vec<String>> {
    let ctx = session(persons, project, limits)?;
    let key = lit(&q.key);
    let mut filter = vec![
        format!("e.timestamp >= {}", ts_lit(q.from_us)),
        format!("e.timestamp <= {}", ts_lit(q.to_us)),
    ];
    if !q.events.is_empty() {
        let names: Vec<String> = q.events.iter().map(|e| lit(e)).collect();
        filter.push(format!("e.event IN ({})", names.join(", ")));
    }
    if let Some(s) = &q.search {
        filter.push(format!(
            "strpos(lower(json_as_text(e.properties, {key})), {}) > 0",
            lit(&s.to_lowercase())
        ));
    }
    let order = match q.search {
        Some(_) => "length(v), n DESC, v",
        None => "n DESC, v",
    };
    let sql = format!(
        "SELECT v FROM (SELECT json_get_json(e.properties, {key}) AS v, count(*) AS n \
         FROM events e WHERE {} GROUP BY 1) WHERE v IS NOT NULL AND v <> 'null' ORDER BY {order} LIMIT {MAX_VALUES}",
        filter.join(" AND ")
    );
    texts(&ctx, &sql).await
}

/// The names of the project's visible events, less PostHog's system
/// ones (`$pageview`, `$autocapture`, …): PostHog's `custom_event`
/// values. The most frequent first, at most [`MAX_EVENT_NAMES`].
pub async fn event_names(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    limits: &QueryLimits,
) -> Result<Vec<String>> {
    let ctx = session(persons, project, limits)?;
    let system: Vec<String> = SYSTEM_EVENTS.iter().map(|e| lit(e)).collect();
    let sql = format!(
        "SELECT event FROM (SELECT e.event, count(*) AS n FROM events e \
         WHERE e.event NOT IN ({}) GROUP BY 1) ORDER BY n DESC, event LIMIT {MAX_EVENT_NAMES}",
        system.join(", ")
    );
    texts(&ctx, &sql).await
}

/// The first column of a query, as text (NULLs left out).
async fn texts(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut batches = stream(ctx, sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let c = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        out.extend(c.as_string::<i32>().iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// The rows of an events query (uuid, event, distinct_id, properties,
/// ts, seq).
async fn rows(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Result<Vec<EventRow>> {
    let mut out = Vec::new();
    let mut batches = stream(ctx, sql).await?;
    while let Some(b) = batches.next().await {
        let b = b?;
        let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8);
        let (uuid, event, did, props) = (text(0)?, text(1)?, text(2)?, text(3)?);
        let (uuid, event, did, props) = (
            uuid.as_string::<i32>(),
            event.as_string::<i32>(),
            did.as_string::<i32>(),
            props.as_string::<i32>(),
        );
        let ts = b.column(4).as_primitive::<Int64Type>();
        let seq = arrow::compute::cast(b.column(5), &DataType::UInt64)?;
        let seq = seq.as_primitive::<arrow::datatypes::UInt64Type>();
        for r in 0..b.num_rows() {
            if ts.is_null(r) {
                continue;
            }
            out.push(EventRow {
                uuid: uuid.value(r).to_string(),
                event: event.value(r).to_string(),
                distinct_id: did.value(r).to_string(),
                properties: if props.is_null(r) {
                    "{}".to_string()
                } else {
                    props.value(r).to_string()
                },
                timestamp_us: ts.value(r),
                seq: seq.value(r),
            });
        }
    }
    Ok(out)
}
