//! `elide_query::count_by_key`: `count(*) … GROUP BY <string>` through
//! `CountByKeyExec` returns what DataFusion's own aggregate returns, for
//! random keys (short, exactly 12 bytes, long, empty, null) over several
//! batches and partitions; the rule replaces only the aggregates it can.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8View, true),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn batch(keys: &[Option<String>]) -> RecordBatch {
    let k: ArrayRef = Arc::new(StringViewArray::from_iter(keys.iter().cloned()));
    let v: ArrayRef = Arc::new(Int64Array::from_iter(
        (0..keys.len() as i64).map(|i| (i % 3 != 0).then_some(i)),
    ));
    RecordBatch::try_new(schema(), vec![k, v]).unwrap()
}

/// Like [`batch`], the keys cast from a dictionary, as the parquet reader
/// makes them: rows of one value share one view (into the same bytes).
fn dict_batch(keys: &[Option<String>]) -> RecordBatch {
    let dict: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> =
        keys.iter().map(|k| k.as_deref()).collect();
    let k = arrow::compute::cast(&dict, &DataType::Utf8View).unwrap();
    let v: ArrayRef = Arc::new(Int64Array::from_iter(
        (0..keys.len() as i64).map(|i| (i % 3 != 0).then_some(i)),
    ));
    RecordBatch::try_new(schema(), vec![k, v]).unwrap()
}

/// The same table in a plain session and in one with Elide's rules.
fn sessions(partitions: Vec<Vec<RecordBatch>>) -> (SessionContext, SessionContext) {
    let plain = SessionContext::new();
    let mut elide = SessionContext::new();
    elide_query::register_functions(&mut elide).unwrap();
    for ctx in [&plain, &elide] {
        let t = MemTable::try_new(schema(), partitions.clone()).unwrap();
        ctx.register_table("t", Arc::new(t)).unwrap();
    }
    (plain, elide)
}

fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let rows = df.collect().await.unwrap();
        (pretty_format_batches(&rows).unwrap().to_string(), shown)
    })
}

const COUNTS: &str =
    "SELECT k, count(*) AS n, count(1) AS m FROM t GROUP BY k ORDER BY k NULLS FIRST";

#[test]
fn counts_by_key_equal_datafusions_and_only_counts_are_replaced() {
    let keys = |n: usize| -> Vec<Option<String>> {
        (0..n)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                2 => Some("$pageview".into()),
                3 => Some("twelve-bytes".into()), // exactly 12: inline
                4 => Some("thirteen-byte".into()), // 13: in a buffer
                5 => Some(format!("a-longer-event-name-{}", i % 5)),
                _ => Some(format!("e{}", i % 11)),
            })
            .collect()
    };
    let (plain, elide) = sessions(vec![
        vec![batch(&keys(500)), dict_batch(&keys(333))],
        vec![dict_batch(&keys(71)), batch(&keys(90))],
    ]);
    let (want, plain_plan) = run(&plain, COUNTS);
    let (got, plan) = run(&elide, COUNTS);
    assert_eq!(got, want);
    assert!(plan.contains("CountByKeyExec"), "{plan}");
    assert!(!plain_plan.contains("CountByKeyExec"));
    // Aggregates it cannot stand for keep DataFusion's.
    for sql in [
        "SELECT k, count(v) FROM t GROUP BY k ORDER BY k",
        "SELECT k, count(DISTINCT v) FROM t GROUP BY k ORDER BY k",
        "SELECT k, sum(v) FROM t GROUP BY k ORDER BY k",
        "SELECT k, v, count(*) FROM t GROUP BY k, v ORDER BY k, v",
        "SELECT k, count(*) FILTER (WHERE v > 3) FROM t GROUP BY k ORDER BY k",
        "SELECT k, count(*) FROM t GROUP BY GROUPING SETS ((k), ()) ORDER BY k",
        "SELECT count(*) FROM t",
    ] {
        let (want, _) = run(&plain, sql);
        let (got, plan) = run(&elide, sql);
        assert_eq!(got, want, "{sql}");
        assert!(!plan.contains("CountByKeyExec"), "{sql}: {plan}");
    }
    // Empty input: no group.
    let (plain, elide) = sessions(vec![vec![batch(&[])]]);
    assert_eq!(run(&elide, COUNTS).0, run(&plain, COUNTS).0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_keys_count_as_datafusion_counts(
        keys in proptest::collection::vec(
            proptest::option::weighted(0.9, "[a-c]{0,14}"),
            0..400,
        ),
        split in 0usize..400,
    ) {
        let split = split.min(keys.len());
        let (plain, elide) = sessions(vec![
            vec![batch(&keys[..split]), dict_batch(&keys[split..])],
            vec![dict_batch(&keys[..split]), batch(&keys[split..])],
        ]);
        prop_assert_eq!(run(&elide, COUNTS).0, run(&plain, COUNTS).0);
    }
}

/// The groups count against the session's memory limit: a key of many
/// values past it fails the query with DataFusion's resources error.
#[test]
fn the_groups_are_held_against_the_memory_limit() {
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(1 << 20, 1.0)
        .build_arc()
        .unwrap();
    let mut ctx = SessionContext::new_with_config_rt(Default::default(), runtime);
    elide_query::register_functions(&mut ctx).unwrap();
    let keys: Vec<Option<String>> = (0..200_000)
        .map(|i| Some(format!("a-distinct-id-{i:08}")))
        .collect();
    let t = MemTable::try_new(schema(), vec![vec![batch(&keys)]]).unwrap();
    ctx.register_table("t", Arc::new(t)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(async { ctx.sql(COUNTS).await?.collect().await })
        .unwrap_err()
        .to_string();
    assert!(err.contains("Resources exhausted"), "{err}");
    assert!(err.contains("CountByKeyExec"), "{err}");
}
