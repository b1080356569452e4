//! A store with parts, tombstones and buffered rows, and what its queries
//! should return.

use std::collections::BTreeSet;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use elide_store::{DeleteSpec, Store, StoreOptions, Table};

/// (project, distinct id) pairs.
pub type Ids = BTreeSet<(i64, String)>;

pub fn opts() -> StoreOptions {
    StoreOptions {
        background_flush: false,
        background_compaction: false,
        predicate_resolve_bound: None,
        ..Default::default()
    }
}

/// Append generated events (`seed` picks which); returns their
/// (project, distinct id) pairs.
pub fn ingest(store: &Store, events: u64, seed: u64) -> BTreeSet<(i64, String)> {
    let cfg = elide_gen::GenConfig {
        events,
        persons: 300,
        projects: 3,
        days: 6,
        seed,
        batch_rows: 4096,
        ..Default::default()
    };
    let mut ids = BTreeSet::new();
    for batch in elide_gen::Generator::new(cfg).unwrap() {
        ids.extend(pairs(&batch));
        store.append(Table::Events, &batch).unwrap();
    }
    ids
}

/// The (project, distinct id) of each row of `batch`.
pub fn pairs(batch: &RecordBatch) -> Vec<(i64, String)> {
    let p = batch.column_by_name("project_id").unwrap();
    let p = p.as_primitive::<Int64Type>();
    let d = arrow::compute::cast(
        batch.column_by_name("distinct_id").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let d = d.as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| (p.value(i), d.value(i).to_string()))
        .collect()
}

/// Delete every `nth` of `ids` (from `offset`); returns the deleted.
pub fn delete_some(
    store: &Store,
    ids: &BTreeSet<(i64, String)>,
    nth: usize,
    offset: usize,
) -> Vec<(i64, String)> {
    let gone: Vec<(i64, String)> = ids.iter().skip(offset).step_by(nth).cloned().collect();
    for (project, id) in &gone {
        store
            .delete(DeleteSpec::ids(*project, [id.clone()]))
            .unwrap();
    }
    gone
}

/// A store in `dir` with two flushes of parts and rows still buffered,
/// then a tenth of its ids deleted (tombstones in parts, buffered rows
/// dropped); returns it with the ids it ever held and those deleted.
pub fn store_with_deletions(dir: &Path) -> (Store, Ids, Vec<(i64, String)>) {
    let store = Store::open(dir, opts()).unwrap();
    let mut ids = ingest(&store, 12_000, 1);
    store.flush().unwrap();
    ids.extend(ingest(&store, 8_000, 2));
    store.flush().unwrap();
    // Buffered: not in parts, shipped inside the plan.
    ids.extend(ingest(&store, 1_000, 3));
    let gone = delete_some(&store, &ids, 10, 0);
    (store, ids, gone)
}
