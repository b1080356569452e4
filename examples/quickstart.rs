//! The life of an embedded store: ingest a parquet file, query it through
//! DataFusion, delete 1% of the persons, purge them from disk and verify.
//!
//!     cargo run --example quickstart [-- events.parquet [data-dir]]
//!
//! Without a file it generates one (`common/mod.rs`: 100k events of 1,000
//! persons, with a `$session_id` column as PostHog exports name it).
mod common;

use std::collections::BTreeMap;

use elide::arrow::array::{AsArray, RecordBatchReader};
use elide::arrow::datatypes::Int64Type;
use elide::arrow::util::pretty::print_batches;
use elide::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use elide::{CompactRequest, DeleteSpec, IngestOptions, Store, StoreOptions, Table};

const COUNT: &str = "SELECT count(*) AS events, count(DISTINCT distinct_id) AS ids FROM events";
/// Every 100th (project, distinct id): 1% of the persons.
const ONE_PERCENT: &str = "SELECT project_id, distinct_id FROM (SELECT project_id, distinct_id,
    row_number() OVER (ORDER BY distinct_id, project_id) AS n
    FROM (SELECT DISTINCT project_id, distinct_id FROM events)) WHERE n % 100 = 0";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::temp_dir().join(format!("elide-quickstart-{}", std::process::id()));
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .map_or_else(|| common::generate(&work), |p| Ok(p.into()))?;
    let data = args.next().map_or_else(|| work.join("data"), Into::into);
    let store = Store::open(&data, StoreOptions::default())?;

    // Ingest the file as one unit (all rows or none), renaming PostHog's column.
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&input)?)?.build()?;
    let mut opts = IngestOptions::new().progress(|p| eprint!("\ringested {} rows", p.rows));
    if reader.schema().index_of("$session_id").is_ok() {
        opts = opts.rename("$session_id", "session_id");
    }
    let ingested = store.ingest(Table::Events, reader, opts)?;
    eprintln!(" into {}", data.display());

    // Query through DataFusion.
    let rt = elide::tokio::runtime::Runtime::new()?;
    let ctx = elide::session_context(&store)?;
    print_batches(&rt.block_on(elide::run_sql(&ctx, COUNT))?.batches)?;

    // Delete 1% of the persons in one commit: gone from every query at once.
    let picked = rt.block_on(elide::run_sql(&ctx, ONE_PERCENT))?.concat()?;
    let projects = picked.column(0).as_primitive::<Int64Type>();
    let ids = picked.column(1).as_string_view(); // strings are read as Utf8View
    let mut by_project = BTreeMap::<i64, Vec<String>>::new();
    for i in 0..picked.num_rows() {
        let p = by_project.entry(projects.value(i)).or_default();
        p.push(ids.value(i).into());
    }
    let specs = by_project.into_iter().map(|(p, v)| DeleteSpec::ids(p, v));
    store.ready()?; // (optional) the index a deletion needs is built
    let outcomes = store.delete_many(specs)?;
    let hidden: u64 = outcomes.iter().map(|o| o.rows_hidden).sum();
    let n = picked.num_rows();
    println!("deleted {hidden} of {} rows ({n} ids)", ingested.rows);
    print_batches(&rt.block_on(elide::run_sql(&ctx, COUNT))?.batches)?;

    // Purge: rewrite the parts without those rows, then verify nothing is left.
    let report = store.compact(CompactRequest::now())?;
    let (dropped, verified) = (report.summary.rows_dropped, report.requests_verified.len());
    println!("purged {dropped} rows; {verified} requests verified");
    let t = store.status()?.totals;
    println!(
        "{} rows visible, {} tombstoned",
        t.visible_rows, t.tombstoned_rows
    );
    store.close()?;
    Ok(())
}
