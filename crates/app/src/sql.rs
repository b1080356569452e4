//! Persons over the query layer: a SQL session with the `persons`,
//! `person_distinct_ids` and `person_overrides` tables next to `events`,
//! and the property timeline of a person (derived from its events).

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::prelude::{col, lit, SessionContext};
use elide_persons::props::{Timeline, TimelineFold, MAX_TIMELINE_VALUES};
use elide_persons::tables::{
    distinct_ids_batches, distinct_ids_schema, overrides_batches, overrides_schema,
    persons_batches, persons_schema, Charge,
};
use elide_persons::{MetaStore, Persons, SqliteMeta};
use elide_query::{LoadedTable, Loader};
use futures::StreamExt;

use crate::Result;

/// Why a [`charged`] read failed.
pub(crate) enum Charged {
    /// The memory limit refused it (`ResourcesExhausted`, the caller's
    /// query: a client error).
    Refused(DataFusionError),
    /// The persons layer failed (its own error and status).
    Failed(elide_persons::PersonsError),
}

/// Run `read` with a charge that grows `reservation` (a query's memory
/// limit): the first refusal stops the read and is returned as it is, not
/// as a persons error.
pub(crate) fn charged<T>(
    reservation: &MemoryReservation,
    read: impl FnOnce(&mut dyn FnMut(usize) -> elide_persons::Result<()>) -> elide_persons::Result<T>,
) -> std::result::Result<T, Charged> {
    let mut refused = None;
    let out = read(&mut |bytes| {
        reservation.try_grow(bytes).map_err(|e| {
            let msg = e.to_string();
            refused = Some(e);
            elide_persons::PersonsError::InvalidInput(msg)
        })
    });
    match (out, refused) {
        (_, Some(e)) => Err(Charged::Refused(e)),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(Charged::Failed(e)),
    }
}

/// Register the persons tables on `ctx` (only `project`'s rows when
/// given). Each scan reads the metadata afresh, so a query planned after a
/// deletion returned never shows the deleted person, and counts the rows
/// against the query's memory limit batch by batch as it reads them. The
/// tables hold the persons layer weakly (a scan after it is dropped is an
/// error).
pub fn register_person_tables<M: MetaStore>(
    ctx: &SessionContext,
    persons: &Arc<Persons<M>>,
    project: Option<i64>,
) -> datafusion::error::Result<()> {
    type BatchFn<M> = fn(&M, Option<i64>, Charge<'_>) -> elide_persons::Result<Vec<RecordBatch>>;
    let tables: [(&str, arrow::datatypes::SchemaRef, BatchFn<M>); 3] = [
        ("persons", persons_schema(), persons_batches::<M>),
        (
            "person_distinct_ids",
            distinct_ids_schema(),
            distinct_ids_batches::<M>,
        ),
        (
            "person_overrides",
            overrides_schema(),
            overrides_batches::<M>,
        ),
    ];
    for (name, schema, f) in tables {
        // Weak, like the store's tables: a session never keeps the data
        // directory open.
        let p = Arc::downgrade(persons);
        let load: Loader = Arc::new(move |reservation| {
            let p = p.upgrade().ok_or_else(|| {
                DataFusionError::External(
                    "the persons layer was closed (its store was dropped); open it again".into(),
                )
            })?;
            charged(reservation, |grow| {
                f(p.meta(), project, &mut |b: &RecordBatch| {
                    grow(b.get_array_memory_size())
                })
            })
            .map_err(|e| match e {
                Charged::Refused(e) => e,
                // The store's own error, which the server maps by its kind
                // (unavailable: 503); any other persons error is Elide's.
                Charged::Failed(elide_persons::PersonsError::Store(s)) => {
                    DataFusionError::External(Box::new(s))
                }
                Charged::Failed(e) => DataFusionError::External(Box::new(e)),
            })
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

/// The filter of a person's rows ([`Persons::rows_of_person`]) on a table
/// with `distinct_id` and `_seq`: the ids whose rows are all the
/// person's in one list, the others by their `_seq` range. `None` when
/// the person has no rows.
pub fn person_rows_filter(runs: Vec<elide_persons::IdRows>) -> Option<datafusion::prelude::Expr> {
    let (whole, cut): (Vec<_>, Vec<_>) = runs
        .into_iter()
        .partition(|r| r.from_seq == 0 && r.below_seq.is_none());
    let mut any: Vec<datafusion::prelude::Expr> = Vec::new();
    if !whole.is_empty() {
        let ids = whole.into_iter().map(|r| lit(r.distinct_id)).collect();
        any.push(col("distinct_id").in_list(ids, false));
    }
    for r in cut {
        let mut e = col("distinct_id")
            .eq(lit(r.distinct_id))
            .and(col("_seq").gt_eq(lit(r.from_seq)));
        if let Some(b) = r.below_seq {
            e = e.and(col("_seq").lt(lit(b)));
        }
        any.push(e);
    }
    any.into_iter().reduce(datafusion::prelude::Expr::or)
}

/// A person's property states over time, from its events in event-time
/// order (ties in capture order): the rows its export holds, so never
/// another holder's rows of an id it had (before a reset or a split) or
/// has now. The sort of the events runs under `limits.memory_bytes`
/// (spilling past it) and stops at `limits.deadline`, as a query does;
/// the fold keeps no event.
pub async fn timeline(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    key: &str,
    limits: &crate::query::QueryLimits,
) -> Result<Timeline> {
    let Some(rows) = person_rows_filter(persons.rows_of_person(project, key)?) else {
        return Ok(Timeline::default());
    };
    let ctx = limits.project_session(persons.store(), project)?;
    let df = ctx
        .table("events")
        .await?
        .filter(col("project_id").eq(lit(project)).and(rows))?
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
