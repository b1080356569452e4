use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use elide::store::jsonl::{rows_to_batch, EventRow};
use elide::store::{Store, StoreOptions, Table};

pub const DAY: i64 = 86_400_000_000;
pub const T0: i64 = 1_790_000_000_000_000;

pub fn row(n: u64, did: &str, project: i64, day: i64) -> EventRow {
    EventRow {
        uuid: Some(uuid_of(n)),
        event: if n.is_multiple_of(3) {
            "signup".into()
        } else {
            "$pageview".into()
        },
        distinct_id: did.into(),
        person_id: None,
        project_id: project,
        timestamp_us: T0 + day * DAY + n as i64,
        properties: Some(format!(
            r#"{{"$browser":"{}","n":{n}}}"#,
            if n.is_multiple_of(2) {
                "Chrome"
            } else {
                "Safari"
            }
        )),
        session_id: None,
    }
}

pub fn uuid_of(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Open with the background flusher and compactor off, and predicates
/// always resolved in the call (no bridge: a loaded machine must not
/// change what a test sees).
pub fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::foreground()).unwrap()
}

pub fn append(store: &Store, rows: &[EventRow]) {
    store
        .append(Table::Events, &rows_to_batch(rows).unwrap())
        .unwrap();
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn sql(rt: &tokio::runtime::Runtime, ctx: &SessionContext, q: &str) -> Vec<RecordBatch> {
    rt.block_on(async { ctx.sql(q).await?.collect().await })
        .unwrap()
}

/// First column of a result as strings, sorted.
pub fn strings(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        for i in 0..c.len() {
            out.push(c.value(i).to_string());
        }
    }
    out.sort();
    out
}

pub fn count(rt: &tokio::runtime::Runtime, ctx: &SessionContext, q: &str) -> i64 {
    let b = sql(rt, ctx, q);
    b[0].column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

pub fn ctx(store: &Store) -> Arc<SessionContext> {
    Arc::new(elide::query::session_context(store).unwrap())
}

/// A manual compaction: every part with deleted rows purged, small parts
/// merged.
pub fn compact_now(store: &Store) {
    store
        .compact(elide::store::CompactRequest {
            manual: true,
            merges: true,
            ..Default::default()
        })
        .unwrap();
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}
