//! Elide's tables in a DataFusion session of your own, next to your own
//! tables: here a join of one project's events with an in-memory table of
//! customer plans. Deleted persons never appear, whatever the SQL.
//!
//!     cargo run --example custom_session
mod common;

use std::sync::Arc;

use elide::arrow::array::{RecordBatch, StringArray};
use elide::arrow::util::pretty::print_batches;
use elide::datafusion::datasource::MemTable;
use elide::datafusion::prelude::SessionContext;
use elide::{DeleteSpec, IngestOptions, Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::temp_dir().join(format!("elide-session-{}", std::process::id()));
    let input = common::generate(&work)?;
    let store = Store::open(work.join("data"), StoreOptions::default())?;
    let opts = IngestOptions::new().rename("$session_id", "session_id");
    store.ingest_files(elide::Table::Events, &[input], opts)?;

    // Your session: your configuration, your tables, Elide's functions and
    // tables (only project 1's rows; the tables hold the store weakly).
    let mut ctx = SessionContext::new();
    elide::register_functions(&mut ctx)?;
    elide::register_tables(&ctx, &store, Some(1))?;
    let plans = RecordBatch::try_from_iter([
        (
            "distinct_id",
            Arc::new(StringArray::from(vec!["user-0002", "user-0004"])) as _,
        ),
        (
            "plan",
            Arc::new(StringArray::from(vec!["enterprise", "startup"])) as _,
        ),
    ])?;
    let table = MemTable::try_new(plans.schema(), vec![vec![plans]])?;
    ctx.register_table("plans", Arc::new(table))?;

    let sql = "SELECT p.plan, e.distinct_id, count(*) AS events
               FROM events e JOIN plans p ON p.distinct_id = e.distinct_id
               GROUP BY 1, 2 ORDER BY 1";
    let rt = elide::tokio::runtime::Runtime::new()?;
    print_batches(&rt.block_on(elide::run_sql(&ctx, sql))?.batches)?;

    // The enterprise customer asks to be forgotten: the same session no
    // longer sees them at its next query.
    store.delete(DeleteSpec::ids(1, ["user-0002"]))?;
    let after = rt.block_on(elide::run_sql(&ctx, sql))?;
    print_batches(&after.batches)?;
    println!("{} plan rows after the deletion", after.num_rows());
    store.close()?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
