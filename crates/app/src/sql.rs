//! Persons over the query layer: a SQL session with the `persons`,
//! `person_distinct_ids` and `person_overrides` tables next to `events`,
//! and the property timeline of a person (derived from its events).

use std::sync::Arc;

use datafusion::prelude::{col, lit, SessionContext};
use elide_persons::props::{Timeline, TimelineFold, MAX_TIMELINE_VALUES};
use elide_persons::tables::{
    distinct_ids_batch, distinct_ids_schema, overrides_batch, overrides_schema, persons_batch,
    persons_schema,
};
use elide_persons::{MetaStore, Persons, SqliteMeta};
use elide_query::{LoadedTable, Loader};
use futures::StreamExt;

use crate::Result;

/// Register the persons tables on `ctx` (only `project`'s rows when
/// given). Each scan reads the metadata afresh, so a query planned after a
/// deletion returned never shows the deleted person. The tables hold the
/// persons layer weakly (a scan after it is dropped is an error).
pub fn register_person_tables<M: MetaStore>(
    ctx: &SessionContext,
    persons: &Arc<Persons<M>>,
    project: Option<i64>,
) -> datafusion::error::Result<()> {
    type BatchFn<M> =
        fn(&M, Option<i64>) -> elide_persons::Result<arrow::record_batch::RecordBatch>;
    let tables: [(&str, arrow::datatypes::SchemaRef, BatchFn<M>); 3] = [
        ("persons", persons_schema(), persons_batch::<M>),
        (
            "person_distinct_ids",
            distinct_ids_schema(),
            distinct_ids_batch::<M>,
        ),
        ("person_overrides", overrides_schema(), overrides_batch::<M>),
    ];
    for (name, schema, f) in tables {
        // Weak, like the store's tables: a session never keeps the data
        // directory open.
        let p = Arc::downgrade(persons);
        let load: Loader = Arc::new(move || {
            let p = p
                .upgrade()
                .ok_or("the persons layer was closed (its store was dropped); open it again")?;
            f(p.meta(), project)
                .map(|b| vec![b])
                .map_err(|e| e.to_string())
        });
        ctx.register_table(name, Arc::new(LoadedTable::new(schema, load)))?;
    }
    Ok(())
}

/// A session with the store's tables and the persons tables.
pub fn session(persons: &Arc<Persons<SqliteMeta>>) -> Result<SessionContext> {
    let ctx = elide_query::session_context(persons.store())?;
    register_person_tables(&ctx, persons, None)?;
    Ok(ctx)
}

/// A person's property states over time, from the events of its current
/// distinct ids in event-time order (ties in capture order). The sort of
/// the events runs under `limits.memory_bytes` (spilling past it) and
/// stops at `limits.deadline`, as a query does; the fold keeps no event.
pub async fn timeline(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    key: &str,
    limits: &crate::query::QueryLimits,
) -> Result<Timeline> {
    let (_, ids) = persons.distinct_ids_of(project, key)?;
    if ids.is_empty() {
        return Ok(Timeline::default());
    }
    let ctx = limits.project_session(persons.store(), project)?;
    let df = ctx
        .table("events")
        .await?
        .filter(
            col("project_id")
                .eq(lit(project))
                .and(col("distinct_id").in_list(ids.into_iter().map(lit).collect(), false)),
        )?
        .sort(vec![
            col("timestamp").sort(true, true),
            col("_seq").sort(true, true),
        ])?
        .select_columns(&["timestamp", "event", "uuid", "properties"])?;
    // Streamed through the fold: the events are never held together
    // outside the sort, which spills past `memory_limit`.
    let mut stream = df.execute_stream().await?;
    let mut fold = TimelineFold::new(MAX_TIMELINE_VALUES);
    while let Some(b) = stream.next().await {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::DataType;
        use arrow::datatypes::TimestampMicrosecondType;
        let b = b?;
        // Whatever string layout the scan produced, read it as Utf8.
        let utf8 = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8);
        let (ev, id, pr) = (utf8(1)?, utf8(2)?, utf8(3)?);
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let (ev, id, pr) = (
            ev.as_string::<i32>(),
            id.as_string::<i32>(),
            pr.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let props = if pr.is_null(i) { "{}" } else { pr.value(i) };
            fold.push(ts.value(i), ev.value(i), id.value(i), props);
        }
    }
    Ok(fold.finish())
}
