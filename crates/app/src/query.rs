//! Running one project's HogQL query: what `POST /api/projects/{id}/query/`
//! answers, written here so that any front end runs it the same way.
//!
//! Invariants:
//!
//! - the session's tables hold only the project's rows (the providers
//!   filter: [`elide_query::project_session_context`], and the persons
//!   tables read with the project's filter), whatever the SQL says;
//! - deleted rows are never read (tombstones inside the scan), and the
//!   persons read when the query starts never include a person deleted
//!   before it;
//! - nothing is written: only a query statement parses
//!   ([`crate::hogql::rewrite`]) and its plan is verified to hold no DDL,
//!   DML or statement;
//! - a query stops within one batch of its deadline, if it has one;
//! - at most `max_rows` rows come back (`default_rows` without a
//!   `LIMIT`), and `has_more` says whether more were there.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type};
use arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use elide_persons::{Persons, SqliteMeta};
use serde_json::Value;

use crate::error::{AppError, Result};
use crate::hogql::functions::{DateDiff, PersonProperty, ToDateTime};
use crate::hogql::rewrite;

/// Bounds of one query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Rows returned when the query has no `LIMIT`.
    pub default_rows: usize,
    /// Most rows returned, `LIMIT` or not.
    pub max_rows: usize,
    /// Memory the query's operators may hold (bytes), if capped.
    pub memory_bytes: Option<usize>,
    /// When the query must stop (checked between batches at every
    /// operator), if ever.
    pub deadline: Option<Arc<elide_query::deadline::QueryDeadline>>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            default_rows: 10_000,
            max_rows: 100_000,
            memory_bytes: Some(2 << 30),
            deadline: None,
        }
    }
}

impl QueryLimits {
    /// A session over `project`'s rows, its operators held to
    /// `memory_bytes` and stopped at `deadline`.
    pub fn project_session(
        &self,
        store: &elide_store::Store,
        project: i64,
    ) -> Result<datafusion::prelude::SessionContext> {
        let ctx = elide_query::project_session_context(store, project, self.memory_bytes)?;
        Ok(match &self.deadline {
            Some(d) => elide_query::deadline::with_deadline(ctx, Arc::clone(d)),
            None => ctx,
        })
    }
}

/// A query's answer, as PostHog's `HogQLQueryResponse` has it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueryOutput {
    /// Column names.
    pub columns: Vec<String>,
    /// `[name, type]` per column, with ClickHouse's type names.
    pub types: Vec<(String, String)>,
    /// Rows, each an array of JSON values in column order.
    pub results: Vec<Vec<Value>>,
    /// Whether rows beyond `limit` were left out.
    #[serde(rename = "hasMore")]
    pub has_more: bool,
    /// The row limit applied.
    pub limit: usize,
    /// Always 0 (no paging of query results).
    pub offset: usize,
}

/// Run HogQL `sql` over `project`'s rows.
pub async fn run_hogql(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    sql: &str,
    limits: &QueryLimits,
) -> Result<QueryOutput> {
    let ctx = crate::analytics::session(persons, project, limits)?;
    run_hogql_in(ctx, persons, project, (sql, None), limits).await
}

/// A view of `events` a caller's HogQL reads by name ([`run_hogql_in`]):
/// its name and its SQL (over `events`, as the query sees them).
pub(crate) type Narrowed<'a> = Option<(&'a str, &'a str)>;

/// Run HogQL `sql` in `ctx`, a session of `project`'s rows
/// ([`crate::analytics::session`]), with `narrowed` registered too
/// (PostHog's `EventsQuery`: its filters as a view its query reads, while
/// a subquery of `events` reads them all, as in PostHog).
pub(crate) async fn run_hogql_in(
    ctx: datafusion::prelude::SessionContext,
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    (sql, narrowed): (&str, Narrowed<'_>),
    limits: &QueryLimits,
) -> Result<QueryOutput> {
    let rw = rewrite(sql)?;
    if rw.uses_person_id {
        override_person_ids(&ctx).await?;
    }
    // Over `events` as the query reads them (its person ids overridden).
    if let Some((name, view)) = narrowed {
        let view = ctx.sql(view).await?;
        ctx.register_table(name, view.into_view())?;
    }
    ctx.register_udf(DateDiff::udf());
    // The user's own calls of properties_match: a bounded number of
    // regular expressions in all.
    ctx.register_udf(elide_query::PropertiesMatch::udf_with_budget(
        elide_query::MAX_QUERY_PATTERNS,
    ));
    ctx.register_udf(ToDateTime::udf());
    ctx.register_udf(crate::hogql::functions::Empty::udf());
    ctx.register_udf(crate::hogql::functions::Position::udf());
    // Held for the whole query, counted against its memory limit as it is
    // read (a project too large for the limit is refused part way).
    let people_held = elide_query::hold(&ctx.runtime_env().memory_pool, "person properties", 0)?;
    let people = if rw.uses_person {
        crate::sql::charged(&people_held, |grow| {
            persons.properties_by_distinct_id(project, grow)
        })
        .map_err(|e| match e {
            crate::sql::Charged::Refused(e) => AppError::Query(e),
            crate::sql::Charged::Failed(e) => AppError::Persons(e),
        })?
    } else {
        HashMap::new()
    };
    ctx.register_udf(PersonProperty::udf(Arc::new(people)));
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            rw.statement,
        )))
        .await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| AppError::InvalidQuery(format!("the query endpoint is read-only: {e}")))?;
    let limit = if rw.has_limit {
        limits.max_rows
    } else {
        limits.default_rows.min(limits.max_rows)
    };
    let df = ctx
        .execute_logical_plan(plan)
        .await?
        .limit(0, Some(limit.saturating_add(1)))?;
    // The schema of the rows (UUID columns as text), not the plan's before
    // the analyzer ran.
    let (schema, batches) =
        elide_query::collect_with_schema_within(df, result_budget(limits)).await?;
    let fields: Vec<(String, DataType, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    let mut results = rows(&batches)?;
    let has_more = results.len() > limit;
    results.truncate(limit);
    Ok(QueryOutput {
        columns: fields.iter().map(|f| f.0.clone()).collect(),
        types: fields
            .iter()
            .map(|(n, t, nullable)| (n.clone(), clickhouse_type(t, *nullable)))
            .collect(),
        results,
        has_more,
        limit,
        offset: 0,
    })
}

/// Replace the session's `events` with a view whose `person_id` is the
/// person that owns the event's distinct id now, or the UUID the event
/// carries when no person does (personless events, a deleted person's
/// kept events): PostHog's `events.person_id` with its person overrides,
/// so that the events of merged persons name one person. Still 16 bytes
/// (the persons' UUID text is converted once per distinct id, not per
/// event; a `CASE` of two UUIDs stays one, where a function's arguments
/// would become text), but no longer a column the scan can prune by.
async fn override_person_ids(ctx: &datafusion::prelude::SessionContext) -> Result<()> {
    use datafusion::common::{Column, JoinType};
    use datafusion::prelude::{col, when, Expr};

    let events = ctx.table("events").await?;
    let ids = ctx.table("person_distinct_ids").await?.select(vec![
        col("distinct_id").alias("__override_distinct_id"),
        Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
            elide_query::uuid_sql::uuid_from_text_udf(),
            vec![col("person_id")],
        ))
        .alias("__override_person_id"),
    ])?;
    let columns: Vec<Expr> = events
        .schema()
        .columns()
        .into_iter()
        .map(|c| {
            if c.name == "person_id" {
                when(
                    col("__override_person_id").is_null(),
                    Expr::Column(Column::new(c.relation.clone(), c.name.clone())),
                )
                .otherwise(col("__override_person_id"))
                .map(|e| e.alias("person_id"))
            } else {
                // The column itself, not aliased to its own name: the
                // optimizer may drop such an alias, and a projection
                // above then names the column both ways (DataFusion's
                // "ambiguous" error, seen with `json_as_text(properties,
                // …)` beside `person_id`).
                Ok(Expr::Column(c))
            }
        })
        .collect::<datafusion::error::Result<_>>()?;
    let view = events
        .join(
            ids,
            JoinType::Left,
            &["distinct_id"],
            &["__override_distinct_id"],
            None,
        )?
        .select(columns)?
        .into_view();
    ctx.deregister_table("events")?;
    ctx.register_table("events", view)?;
    Ok(())
}

/// ClickHouse's name of an Arrow type (what PostHog's `types` shows).
pub fn clickhouse_type(t: &DataType, nullable: bool) -> String {
    let base = match t {
        DataType::Null => return "Nullable(Nothing)".into(),
        // Conditions are ClickHouse's `UInt8` (values 1 and 0).
        DataType::Boolean => "UInt8".to_string(),
        DataType::Int8 => "Int8".into(),
        DataType::Int16 => "Int16".into(),
        DataType::Int32 => "Int32".into(),
        DataType::Int64 => "Int64".into(),
        DataType::UInt8 => "UInt8".into(),
        DataType::UInt16 => "UInt16".into(),
        DataType::UInt32 => "UInt32".into(),
        DataType::UInt64 => "UInt64".into(),
        DataType::Float16 | DataType::Float32 => "Float32".into(),
        DataType::Float64 => "Float64".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "String".into(),
        DataType::Date32 | DataType::Date64 => "Date".into(),
        DataType::Timestamp(unit, tz) => {
            let digits = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            match tz {
                Some(tz) => format!("DateTime64({digits}, '{tz}')"),
                None => format!("DateTime64({digits})"),
            }
        }
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("Decimal({p}, {s})"),
        // A list prints as Arrow's text, booleans as `true`/`false`.
        DataType::List(f) | DataType::LargeList(f) if f.data_type() == &DataType::Boolean => {
            "Array(Bool)".to_string()
        }
        DataType::List(f) | DataType::LargeList(f) => {
            format!("Array({})", clickhouse_type(f.data_type(), f.is_nullable()))
        }
        other => other.to_string(),
    };
    if nullable {
        format!("Nullable({base})")
    } else {
        base
    }
}

/// Most bytes of Arrow arrays a query's result may hold: a quarter of its
/// operators' memory, at most 256 MiB. The result is held outside the
/// memory pool, and then copied into JSON values and serialised (about
/// three times its size in all): without a bound, one `query:read` key
/// could take the server's memory with a few wide rows
/// (`select repeat('x', 130000) … limit 100000`).
pub const MAX_RESULT_BYTES: usize = 256 << 20;

fn result_budget(limits: &QueryLimits) -> usize {
    limits
        .memory_bytes
        .map_or(MAX_RESULT_BYTES, |m| (m / 4).min(MAX_RESULT_BYTES))
}

/// The rows of `batches` as JSON arrays.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<Vec<Value>> = b
            .columns()
            .iter()
            .map(column_values)
            .collect::<Result<_>>()?;
        for i in 0..b.num_rows() {
            out.push(cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    Ok(out)
}

/// One column's values as JSON: numbers and text as such, booleans as 1
/// and 0 (ClickHouse's conditions), timestamps as RFC 3339 text in UTC,
/// anything else as Arrow displays it (a list of booleans as
/// `[true, false]`).
fn column_values(a: &ArrayRef) -> Result<Vec<Value>> {
    use arrow::compute::cast;
    let n = a.len();
    let each = |f: &dyn Fn(usize) -> Value| -> Vec<Value> {
        (0..n)
            .map(|i| if a.is_null(i) { Value::Null } else { f(i) })
            .collect()
    };
    Ok(match a.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let v = a.as_boolean();
            // 1 and 0, as ClickHouse answers a condition.
            each(&|i| Value::from(u8::from(v.value(i))))
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let c = cast(a, &DataType::Int64)?;
            let v = c.as_primitive::<Int64Type>();
            each(&|i| Value::from(v.value(i)))
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let c = cast(a, &DataType::UInt64)?;
            let v = c.as_primitive::<UInt64Type>();
            each(&|i| Value::from(v.value(i)))
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let c = cast(a, &DataType::Float64)?;
            let v = c.as_primitive::<arrow::datatypes::Float64Type>();
            each(&|i| serde_json::Number::from_f64(v.value(i)).map_or(Value::Null, Value::Number))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let c = cast(a, &DataType::Utf8)?;
            let v = c.as_string::<i32>();
            each(&|i| Value::String(v.value(i).to_string()))
        }
        DataType::Timestamp(_, _) => {
            let c = cast(
                a,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )?;
            let v = c.as_primitive::<TimestampMicrosecondType>();
            // A time past what microseconds hold is null once cast.
            each(&|i| {
                if v.is_null(i) {
                    Value::Null
                } else {
                    Value::String(elide_persons::persons::iso(v.value(i)))
                }
            })
        }
        _ => {
            let fmt = arrow::util::display::ArrayFormatter::try_new(
                a.as_ref(),
                &arrow::util::display::FormatOptions::default(),
            )?;
            each(&|i| Value::String(fmt.value(i).to_string()))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, TimestampSecondArray};
    use serde_json::Value;

    /// A time that microseconds cannot hold is null, not the epoch (the
    /// cast to microseconds makes it null).
    #[test]
    fn a_time_past_microseconds_is_null() {
        let a: ArrayRef = Arc::new(TimestampSecondArray::from(vec![
            Some(9_223_372_036_854_775),
            Some(0),
            None,
        ]));
        let got = super::column_values(&a).expect("values");
        assert_eq!(
            got,
            vec![
                Value::Null,
                Value::String("1970-01-01T00:00:00.000000Z".into()),
                Value::Null
            ]
        );
    }
}
