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
    // Four partitions whatever the machine: a partial aggregate is planned.
    let config = || datafusion::prelude::SessionConfig::new().with_target_partitions(4);
    let plain = SessionContext::new_with_config(config());
    let mut elide = SessionContext::new_with_config(config());
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
        "SELECT k, count(NULL) FROM t GROUP BY k ORDER BY k",
        "SELECT k, count(CAST(NULL AS INT)) FROM t GROUP BY k ORDER BY k",
        "SELECT k, count(*) FROM t GROUP BY ROLLUP (k) ORDER BY k",
    ] {
        let (want, _) = run(&plain, sql);
        let (got, plan) = run(&elide, sql);
        assert_eq!(got, want, "{sql}");
        assert!(!plan.contains("CountByKeyExec"), "{sql}: {plan}");
    }
    // A partition of nulls only, and an empty one.
    let (plain, elide) = sessions(vec![
        vec![batch(&[None, None])],
        vec![batch(&[])],
        vec![batch(&keys(40))],
    ]);
    let (got, plan) = run(&elide, COUNTS);
    assert_eq!(got, run(&plain, COUNTS).0);
    assert!(plan.contains("CountByKeyExec"), "{plan}");
    // No row at all (planned without a partial phase or with: the same).
    let (plain, elide) = sessions(vec![vec![batch(&[])], vec![batch(&[])]]);
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

/// The groups count against the memory pool: past its limit a partition
/// hands its groups on early (a key may then have several partial rows,
/// which the final phase adds up), and the partial counts still add up to
/// each key's rows.
#[test]
fn past_the_memory_limit_the_groups_are_handed_on_early() {
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::ExecutionPlan;
    // 20,000 keys, each twice, in one partition of 8 batches.
    let keys: Vec<Option<String>> = (0..40_000)
        .map(|i| Some(format!("a-distinct-id-{:08}", i % 20_000)))
        .collect();
    let (_, elide) = sessions(vec![keys.chunks(5_000).map(batch).collect()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plan = rt
        .block_on(async { ctx_plan(&elide).await })
        .expect("a plan");
    fn find(p: &std::sync::Arc<dyn ExecutionPlan>) -> Option<std::sync::Arc<dyn ExecutionPlan>> {
        if p.name() == "CountByKeyExec" {
            return Some(std::sync::Arc::clone(p));
        }
        p.children().into_iter().find_map(find)
    }
    let exec = find(&plan).expect("CountByKeyExec in the plan");
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(256 << 10, 1.0)
        .build_arc()
        .unwrap();
    let task = Arc::new(TaskContext::default().with_runtime(runtime));
    let parts = rt
        .block_on(datafusion::physical_plan::collect_partitioned(exec, task))
        .unwrap();
    let batches: Vec<&RecordBatch> = parts.iter().flatten().collect();
    assert!(
        batches.len() > 2,
        "emitted early: {} batches",
        batches.len()
    );
    let mut sums = std::collections::HashMap::<String, i64>::new();
    for b in &batches {
        let k = b
            .column(0)
            .as_any()
            .downcast_ref::<StringViewArray>()
            .unwrap();
        let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            *sums.entry(k.value(i).to_string()).or_default() += n.value(i);
        }
    }
    assert_eq!(sums.len(), 20_000);
    assert!(sums.values().all(|n| *n == 2));
}

async fn ctx_plan(
    ctx: &SessionContext,
) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    ctx.sql(COUNTS).await?.create_physical_plan().await
}
