//! Tests of the rule against DataFusion's own plan over a MemTable (the
//! same rows, random keys with nulls), and of the fallback under a memory
//! limit.

use super::*;
use arrow::array::{
    FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;

use crate::test_support::{executed, rows_and_plan as run};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("d", DataType::Int64, true),
        Field::new("p", DataType::FixedSizeBinary(16), true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("i", DataType::Int32, false),
        Field::new("s", DataType::Utf8, true),
        Field::new("f", DataType::Float64, true),
    ]))
}

/// `n` rows from `seed`: few distinct values per column, nulls in the
/// nullable ones, so that groups repeat across batches and partitions.
fn batch(seed: u64, n: usize) -> RecordBatch {
    batch_of(seed, n, 9)
}

/// As [`batch`], with `persons` distinct values of `p`.
fn batch_of(seed: u64, n: usize, persons: u64) -> RecordBatch {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let rows: Vec<u64> = (0..n).map(|_| next()).collect();
    let d = Int64Array::from_iter(
        rows.iter()
            .map(|r| (r % 7 != 0).then_some((r >> 8) as i64 % 5 - 2)),
    );
    let p = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        rows.iter()
            .map(|r| (r % 11 != 0).then_some(u128::from((r >> 16) % persons).to_le_bytes())),
        16,
    )
    .unwrap();
    let ts = TimestampMicrosecondArray::from_iter(
        rows.iter()
            .map(|r| (r % 13 != 0).then_some(((r >> 24) % 4) as i64 * 86_400_000_000 + 1)),
    )
    .with_timezone("UTC");
    let i = Int32Array::from_iter_values(rows.iter().map(|r| ((r >> 32) % 3) as i32));
    let s = StringArray::from_iter(rows.iter().map(|r| (r % 5 != 0).then_some("a")));
    let f = Float64Array::from_iter(rows.iter().map(|r| (r % 5 != 0).then_some(1.5)));
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(d),
            Arc::new(p),
            Arc::new(ts),
            Arc::new(i),
            Arc::new(s),
            Arc::new(f),
        ],
    )
    .unwrap()
}

/// A session without this rule and one with Elide's rules, on the same
/// table; `limit`: the memory pool's limit in bytes.
fn sessions(
    partitions: Vec<Vec<RecordBatch>>,
    limit: Option<usize>,
) -> (SessionContext, SessionContext) {
    // Four partitions whatever the machine: a two-phase aggregate.
    let mut config = SessionConfig::new().with_target_partitions(4);
    // The final sort keeps no 10 MB in reserve: the limits below are for
    // the aggregates.
    config.options_mut().execution.sort_spill_reservation_bytes = 0;
    let mut elide = match limit {
        None => SessionContext::new_with_config(config),
        Some(bytes) => SessionContext::new_with_config_rt(
            config,
            RuntimeEnvBuilder::new()
                .with_memory_limit(bytes, 1.0)
                .build_arc()
                .unwrap(),
        ),
    };
    crate::register_functions(&mut elide).unwrap();
    let t = MemTable::try_new(schema(), partitions).unwrap();
    elide.register_table("t", Arc::new(t)).unwrap();
    let plain = crate::test_support::without_physical_rule(&elide, DistinctKeys.name());
    (plain, elide)
}

/// Queries whose final phase is a `GROUP BY` of narrow keys without
/// aggregates (each ordered on every output column: the groups' order is
/// not the rule's to keep).
const REPLACED: [&str; 5] = [
    "SELECT d, count(DISTINCT p) AS n FROM t GROUP BY d ORDER BY d NULLS FIRST",
    "SELECT DISTINCT d, p FROM t ORDER BY d NULLS FIRST, p NULLS FIRST",
    "SELECT date_trunc('day', ts) AS day, count(DISTINCT p) AS n FROM t GROUP BY 1 ORDER BY 1 NULLS FIRST",
    "SELECT count(DISTINCT i) AS n FROM t",
    "SELECT DISTINCT i, d, ts FROM t ORDER BY i, d NULLS FIRST, ts NULLS FIRST",
];

/// Queries it leaves to DataFusion: keys it does not admit, keys wider
/// than [`KEY_BYTES`], an aggregate function.
const LEFT: [&str; 4] = [
    "SELECT DISTINCT s FROM t ORDER BY s NULLS FIRST",
    "SELECT DISTINCT f FROM t ORDER BY f NULLS FIRST",
    "SELECT DISTINCT p, ts, d, i FROM t ORDER BY p NULLS FIRST, ts NULLS FIRST, d NULLS FIRST, i",
    "SELECT d, count(*) AS n FROM t GROUP BY d ORDER BY d NULLS FIRST",
];

/// The metric `name` of `plan`'s `DistinctKeysExec` (summed over
/// partitions).
fn sum_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    crate::test_support::node_metric(plan, "DistinctKeysExec", name)
}

/// Runs `sql` and reads the metric `name` of its `DistinctKeysExec`.
fn metric(ctx: &SessionContext, sql: &str, name: &str) -> usize {
    sum_metric(&executed(ctx, sql).unwrap().1, name)
}

#[test]
fn final_phases_of_narrow_keys_answer_as_datafusions() {
    let (plain, elide) = sessions(
        vec![
            vec![batch(1, 300), batch(2, 10)],
            vec![batch(3, 390)],
            vec![batch(4, 200), batch(5, 0)],
        ],
        None,
    );
    for sql in REPLACED {
        let (want, plain_plan) = run(&plain, sql);
        let (got, plan) = run(&elide, sql);
        assert_eq!(got, want, "{sql}");
        assert!(plan.contains("DistinctKeysExec"), "{sql}: {plan}");
        assert!(!plain_plan.contains("DistinctKeysExec"));
    }
    for sql in LEFT {
        let (want, _) = run(&plain, sql);
        let (got, plan) = run(&elide, sql);
        assert_eq!(got, want, "{sql}");
        assert!(!plan.contains("DistinctKeysExec"), "{sql}: {plan}");
    }
    // The buckets did the work: every row the partial phase passed on was
    // dealt into them.
    assert!(metric(&elide, REPLACED[1], "rows_dealt") > 0);
    // No row at all.
    let (plain, elide) = sessions(vec![vec![batch(6, 0)], vec![]], None);
    for sql in REPLACED {
        assert_eq!(run(&elide, sql).0, run(&plain, sql).0, "{sql}");
    }
}

/// Under a memory limit the operator deals rows while the pool grants
/// their bytes (up to its share of the pool); then the rows go to
/// DataFusion's aggregate, which can spill. At every limit its answer is
/// the answer without a limit, or a clear "resources exhausted" error (at
/// the smallest limits DataFusion's own plan fails too, or not, depending
/// on how its partitions interleave); from 8 MiB on it always answers, as
/// DataFusion's plan does.
#[test]
fn when_the_memory_pool_refuses_the_rows_go_to_datafusions_aggregate() {
    // Many distinct (d, p) pairs: the final phase holds most rows.
    let tables = || {
        vec![
            vec![batch_of(7, 30_000, 50_000), batch_of(9, 30_000, 50_000)],
            vec![batch_of(8, 30_000, 50_000)],
        ]
    };
    let (unlimited, _) = sessions(tables(), None);
    let mut handed_over = 0;
    for limit in [1 << 20, 2 << 20, 4 << 20, 8 << 20, 64 << 20] {
        let (plain, elide) = sessions(tables(), Some(limit));
        for sql in REPLACED {
            match executed(&elide, sql) {
                Ok((got, plan)) => {
                    assert_eq!(got, run(&unlimited, sql).0, "{sql} under {limit}");
                    let n = sum_metric(&plan, "rows_handed_over");
                    if limit == 64 << 20 {
                        assert_eq!(n, 0, "{sql}: room enough, nothing handed over");
                        assert!(sum_metric(&plan, "rows_dealt") > 0, "{sql}");
                    }
                    handed_over += n;
                }
                Err(e) => {
                    assert!(
                        matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)),
                        "{sql} under {limit}: {e}"
                    );
                    assert!(limit < 8 << 20, "{sql} under {limit}: {e}");
                    // From 4 MiB on, only where DataFusion's plan fails too.
                    assert!(
                        limit < 4 << 20 || executed(&plain, sql).is_err(),
                        "{sql} under {limit}: {e}, where DataFusion's plan answers"
                    );
                }
            }
        }
    }
    assert!(
        handed_over > 0,
        "no limit made the operator hand its rows over"
    );
}

/// Shipped to another process by Elide's codec as the final aggregate it
/// stands for, and replaced again there.
#[test]
fn shipped_it_comes_back_as_itself() {
    use datafusion::physical_plan::ExecutionPlanProperties;
    use datafusion_proto::physical_plan::{DefaultPhysicalProtoConverter, PhysicalExtensionCodec};
    let dir = tempfile::tempdir().unwrap();
    let store =
        elide_store::Store::open(dir.path(), elide_store::StoreOptions::one_shot()).unwrap();
    let codec = crate::codec::ElideCodec::new(&store);
    let (_, elide) = sessions(vec![vec![batch(1, 50)], vec![batch(2, 50)]], None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plan = rt
        .block_on(async { elide.sql(REPLACED[1]).await?.create_physical_plan().await })
        .unwrap();
    let node = crate::test_support::find_node(&plan, &|p| p.name() == "DistinctKeysExec")
        .expect("DistinctKeysExec in the plan");
    let mut bytes = Vec::new();
    let conv = DefaultPhysicalProtoConverter {};
    codec
        .try_encode(Arc::clone(&node), &mut bytes, &conv)
        .unwrap();
    let inputs: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
    let back = codec
        .try_decode(&bytes, &inputs, &elide.task_ctx(), &conv)
        .unwrap();
    assert_eq!(back.name(), "DistinctKeysExec");
    assert_eq!(back.schema(), node.schema());
    assert_eq!(
        back.output_partitioning().partition_count(),
        node.output_partitioning().partition_count()
    );
}

/// The final phase over rows as a partial phase that stopped aggregating
/// passes them on: one key repeated far past [`BUCKET_ROWS`] (which cannot
/// be split apart), among a few hundred others.
#[test]
fn a_key_repeated_past_a_buckets_rows_is_output_once() {
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::aggregates::PhysicalGroupBy;
    use datafusion::physical_plan::collect;
    let schema = Arc::new(Schema::new(vec![
        Field::new("d", DataType::Int64, true),
        Field::new("p", DataType::FixedSizeBinary(16), true),
    ]));
    let n = 5_000u64;
    let d = Int64Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(1)));
    let p = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        (0..n).map(|i| Some(u128::from(if i % 5 == 0 { i % 400 } else { 7 }).to_le_bytes())),
        16,
    )
    .unwrap();
    let rows = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(d), Arc::new(p)]).unwrap();
    let input = MemorySourceConfig::try_new_exec(&[vec![rows]], Arc::clone(&schema), None).unwrap();
    let group_by = PhysicalGroupBy::new_single(
        ["d", "p"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>,
                    name.to_string(),
                )
            })
            .collect(),
    );
    let agg: Arc<dyn ExecutionPlan> = Arc::new(
        AggregateExec::try_new(
            AggregateMode::Final,
            group_by,
            vec![],
            vec![],
            input,
            schema,
        )
        .unwrap(),
    );
    let exec: Arc<dyn ExecutionPlan> = Arc::new(DistinctKeysExec::replacing(&agg).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sorted = |plan: Arc<dyn ExecutionPlan>| {
        let batches = rt
            .block_on(collect(plan, Arc::new(TaskContext::default())))
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = shown.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let got = sorted(exec);
    assert_eq!(got, sorted(agg));
    // 80 keys with a null day (every fifth row), (1, 7) once, and the
    // table's 4 frame lines.
    assert_eq!(got.len(), 80 + 1 + 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_keys_group_as_datafusion_groups(
        seed in any::<u64>(),
        sizes in proptest::collection::vec(0usize..1500, 1..6),
        persons in 1u64..3000,
    ) {
        // Batches of random sizes, dealt to three partitions in turn; with
        // many persons, buckets past `BUCKET_ROWS` (64 in tests) are split.
        let mut partitions = vec![vec![], vec![], vec![]];
        for (i, n) in sizes.iter().enumerate() {
            partitions[i % 3].push(batch_of(seed.wrapping_add(i as u64), *n, persons));
        }
        let (plain, elide) = sessions(partitions, None);
        for sql in REPLACED {
            prop_assert_eq!(run(&elide, sql).0, run(&plain, sql).0, "{}", sql);
        }
    }
}
