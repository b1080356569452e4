//! Tests of [`Repeats`] on batches, and of the rule against DataFusion's
//! own plan over a MemTable (the same rows, random runs).

use super::*;
use arrow::array::{FixedSizeBinaryArray, Float64Array, Int64Array, StringViewArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::physical_expr::expressions::col;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("d", DataType::Int64, true),
        Field::new("p", DataType::FixedSizeBinary(16), true),
        Field::new("s", DataType::Utf8View, true),
        Field::new("f", DataType::Float64, true),
    ]))
}

/// One row: day, person (a byte repeated), string, float.
type Row = (Option<i64>, Option<u8>, Option<&'static str>, Option<f64>);

fn batch(rows: &[Row]) -> RecordBatch {
    let d = Int64Array::from_iter(rows.iter().map(|r| r.0));
    let p = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        rows.iter().map(|r| r.1.map(|b| [b; 16])),
        16,
    )
    .unwrap();
    let s = StringViewArray::from_iter(rows.iter().map(|r| r.2));
    let f = Float64Array::from_iter(rows.iter().map(|r| r.3));
    RecordBatch::try_new(
        schema(),
        vec![Arc::new(d), Arc::new(p), Arc::new(s), Arc::new(f)],
    )
    .unwrap()
}

/// A `Repeats` of the columns `names`.
fn repeats(names: &[&str]) -> Repeats {
    let keys: Vec<Arc<dyn PhysicalExpr>> =
        names.iter().map(|n| col(n, &schema()).unwrap()).collect();
    let fields: Vec<Field> = names
        .iter()
        .map(|n| schema().field_with_name(n).unwrap().clone())
        .collect();
    Repeats {
        keys,
        schema: Arc::new(Schema::new(fields)),
        last: None,
        rows_in: 0,
        comparing: true,
        dropped: Count::new(),
    }
}

fn shown(b: &RecordBatch) -> String {
    pretty_format_batches(std::slice::from_ref(b))
        .unwrap()
        .to_string()
}

#[test]
fn repeats_are_dropped_within_and_across_batches() {
    let mut r = repeats(&["d", "p"]);
    let first = r
        .drop_from(&batch(&[
            (Some(1), Some(7), None, None),
            (Some(1), Some(7), Some("x"), None), // repeats the keys: dropped
            (Some(1), Some(8), None, None),
            (None, Some(8), None, None),
            (None, Some(8), None, None), // nulls equal nulls: dropped
            (Some(2), None, None, None),
            (Some(2), None, None, None), // dropped
        ]))
        .unwrap();
    assert_eq!(first.num_rows(), 4, "{}", shown(&first));
    assert_eq!(first.schema().fields().len(), 2);
    // The next batch's first row repeats the last row before it.
    let second = r
        .drop_from(&batch(&[
            (Some(2), None, None, None),
            (Some(2), Some(7), None, None),
            (Some(1), Some(7), None, None), // not the row before: kept
        ]))
        .unwrap();
    assert_eq!(second.num_rows(), 2, "{}", shown(&second));
    let d = second
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(d.values().to_vec(), vec![2, 1]);
    // An empty batch, and a batch of one row equal to the last.
    assert_eq!(r.drop_from(&batch(&[])).unwrap().num_rows(), 0);
    let one = r
        .drop_from(&batch(&[(Some(1), Some(7), None, None)]))
        .unwrap();
    assert_eq!(one.num_rows(), 0);
}

#[test]
fn only_identical_floats_are_repeats() {
    let mut r = repeats(&["f"]);
    let out = r
        .drop_from(&batch(&[
            (None, None, None, Some(0.0)),
            (None, None, None, Some(-0.0)),
            (None, None, None, Some(f64::NAN)),
            (None, None, None, Some(f64::NAN)),
            (None, None, None, None),
            (None, None, None, Some(1.5)),
            (None, None, None, Some(1.5)),
        ]))
        .unwrap();
    let f = out
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let got: Vec<String> = f.iter().map(|v| format!("{v:?}")).collect();
    assert_eq!(
        got,
        ["Some(0.0)", "Some(-0.0)", "Some(NaN)", "None", "Some(1.5)"]
    );
}

#[test]
fn a_partition_without_repeats_stops_comparing_after_the_probe() {
    let mut r = repeats(&["d"]);
    let distinct_rows: Vec<Row> = (0..PROBE_ROWS as i64)
        .map(|i| (Some(i), None, None, None))
        .collect();
    let out = r.drop_from(&batch(&distinct_rows)).unwrap();
    assert_eq!(out.num_rows(), PROBE_ROWS);
    assert!(!r.comparing);
    // From now on every row is passed on, repeats included.
    let out = r
        .drop_from(&batch(&[
            (Some(3), None, None, None),
            (Some(3), None, None, None),
        ]))
        .unwrap();
    assert_eq!(out.num_rows(), 2);

    // With repeats in the probe, it keeps comparing.
    let mut r = repeats(&["d"]);
    let runs: Vec<Row> = (0..PROBE_ROWS as i64)
        .map(|i| (Some(i / 2), None, None, None))
        .collect();
    assert_eq!(
        r.drop_from(&batch(&runs)).unwrap().num_rows(),
        PROBE_ROWS / 2
    );
    assert!(r.comparing);
}

/// A session without this rule and one with Elide's rules, on the same
/// table.
fn sessions(partitions: Vec<Vec<RecordBatch>>) -> (SessionContext, SessionContext) {
    // Four partitions whatever the machine: a partial aggregate is planned.
    let mut elide = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    crate::register_functions(&mut elide).unwrap();
    let t = MemTable::try_new(schema(), partitions).unwrap();
    elide.register_table("t", Arc::new(t)).unwrap();
    // The same catalog, so the same table.
    let plain = crate::test_support::without_physical_rule(&elide, DistinctRuns.name());
    (plain, elide)
}

use crate::test_support::rows_and_plan as run;

/// Runs `sql` and reads the `repeats_dropped` of its `DistinctRunsExec`.
fn repeats_dropped(ctx: &SessionContext, sql: &str) -> usize {
    metric(ctx, sql, "repeats_dropped")
}

/// Runs `sql` and reads the metric `name` of its `DistinctRunsExec`
/// (summed over partitions).
fn metric(ctx: &SessionContext, sql: &str, name: &str) -> usize {
    let (_, plan) = crate::test_support::executed(ctx, sql).unwrap();
    crate::test_support::node_metric(&plan, "DistinctRunsExec", name)
}

/// Queries whose first phase is a `GROUP BY` without aggregates.
const REPLACED: [&str; 5] = [
    "SELECT d, count(DISTINCT p) AS n FROM t GROUP BY d ORDER BY d NULLS FIRST",
    "SELECT DISTINCT d, p FROM t ORDER BY d NULLS FIRST, p NULLS FIRST",
    "SELECT d + 1 AS e, s FROM t GROUP BY d + 1, s ORDER BY e NULLS FIRST, s NULLS FIRST",
    "SELECT f, count(DISTINCT d) AS n FROM t GROUP BY f ORDER BY f NULLS FIRST",
    "SELECT count(DISTINCT p) AS n FROM t",
];

/// `n` rows in runs: each run repeats one (d, p, s, f), as a part's rows
/// of one person on one day do.
fn runs(seed: u64, n: usize) -> Vec<Row> {
    const S: [Option<&str>; 4] = [None, Some("a"), Some("a-string-longer-than-12"), Some("")];
    const F: [Option<f64>; 5] = [None, Some(0.0), Some(-0.0), Some(f64::NAN), Some(2.5)];
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let r = next();
        let row: Row = (
            (r % 7 != 0).then_some((r >> 8) as i64 % 5),
            (r % 11 != 0).then_some((r >> 16) as u8 % 9),
            S[(r >> 24) as usize % S.len()],
            F[(r >> 32) as usize % F.len()],
        );
        let len = 1 + (r >> 40) as usize % 6;
        rows.extend(std::iter::repeat_n(row, len.min(n - rows.len())));
    }
    rows
}

#[test]
fn group_bys_without_aggregates_answer_as_datafusions() {
    let rows = runs(42, 900);
    let (plain, elide) = sessions(vec![
        vec![batch(&rows[..300]), batch(&rows[300..310])],
        vec![batch(&rows[310..700])],
        vec![batch(&rows[700..]), batch(&[])],
    ]);
    for sql in REPLACED {
        let (want, plain_plan) = run(&plain, sql);
        let (got, plan) = run(&elide, sql);
        assert_eq!(got, want, "{sql}");
        assert!(plan.contains("DistinctRunsExec"), "{sql}: {plan}");
        assert!(!plain_plan.contains("DistinctRunsExec"));
    }
    // Aggregates it cannot stand for keep DataFusion's.
    for sql in [
        "SELECT d, count(*) FROM t GROUP BY d ORDER BY d",
        "SELECT d, count(DISTINCT p), count(*) FROM t GROUP BY d ORDER BY d",
        "SELECT d, p FROM t GROUP BY GROUPING SETS ((d), (d, p)) ORDER BY d, p",
    ] {
        let (want, _) = run(&plain, sql);
        let (got, plan) = run(&elide, sql);
        assert_eq!(got, want, "{sql}");
        assert!(!plan.contains("DistinctRunsExec"), "{sql}: {plan}");
    }
    // The runs were dropped before the hash table: the operator's metrics
    // count them (the data's runs are 1 to 6 rows long).
    let dropped = repeats_dropped(&elide, REPLACED[0]);
    assert!((300..900).contains(&dropped), "{dropped} rows dropped");
    // No row at all.
    let (plain, elide) = sessions(vec![vec![batch(&[])], vec![batch(&[])]]);
    for sql in REPLACED {
        assert_eq!(run(&elide, sql).0, run(&plain, sql).0, "{sql}");
    }
}

/// Rows left distinct once the runs are dropped: the partial aggregate
/// behind the operator stops aggregating after [`SKIP_PROBE_ROWS`] rows
/// of a partition (DataFusion's own probe would wait for 100,000), and
/// the answers are DataFusion's. A session that turned skipping off keeps
/// it off.
#[test]
fn distinct_rows_skip_the_partial_aggregation_early() {
    let rows: Vec<Row> = (0..8 * SKIP_PROBE_ROWS as i64)
        .map(|i| (Some(i), Some((i % 7) as u8), None, None))
        .collect();
    // Four partitions (the sessions' four: no repartition between the
    // table and the aggregate), each of batches of 1,024 rows: the probe
    // decides between batches.
    let tables = || {
        rows.chunks(rows.len() / 4)
            .map(|p| p.chunks(1024).map(batch).collect())
            .collect()
    };
    let (plain, elide) = sessions(tables());
    let sql = REPLACED[1];
    assert_eq!(run(&elide, sql).0, run(&plain, sql).0);
    let skipped = metric(&elide, sql, "skipped_aggregation_rows");
    assert!(
        skipped >= rows.len() - 4 * SKIP_PROBE_ROWS,
        "{skipped} rows skipped"
    );
    assert_eq!(metric(&elide, sql, "repeats_dropped"), 0);

    let (_, elide) = sessions(tables());
    let state = elide.state();
    let mut config = state.config().clone();
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 1.0;
    let no_skipping = SessionContext::new_with_state(
        datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build(),
    );
    assert_eq!(run(&no_skipping, sql).0, run(&plain, sql).0);
    assert_eq!(metric(&no_skipping, sql, "skipped_aggregation_rows"), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// 16-byte values compared as integers answer as arrow's `distinct`:
    /// few values, nulls, and slices at an offset.
    #[test]
    fn uuids_differ_from_the_row_before_as_arrow_says(
        values in proptest::collection::vec(proptest::option::of(0u8..3), 0..80),
        offset in 0usize..80,
        nulls in any::<bool>(),
    ) {
        // Without nulls the comparison takes a path of its own.
        let values = values.into_iter().map(|v| if nulls { v } else { Some(v.unwrap_or(1)) });
        let a = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            values.map(|v| v.map(|b| {
                let mut w = [7u8; 16];
                w[15] = b;
                w
            })),
            16,
        );
        // An array of only nulls has no width to infer: nothing to compare.
        let Ok(a) = a else { return Ok(()) };
        let offset = offset.min(a.len());
        let c: ArrayRef = Arc::new(a.slice(offset, a.len() - offset));
        if c.len() < 2 {
            return Ok(());
        }
        let n = c.len();
        let want = distinct(&c.slice(1, n - 1), &c.slice(0, n - 1)).unwrap();
        prop_assert_eq!(differs_from_previous(&c).unwrap(), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn random_runs_group_as_datafusion_groups(
        seed in any::<u64>(),
        n in 0usize..600,
        cuts in proptest::collection::vec(0usize..600, 0..5),
    ) {
        let rows = runs(seed, n);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(n)).collect();
        cuts.push(0);
        cuts.push(n);
        cuts.sort_unstable();
        // Batches cut at random, dealt to two partitions in turn.
        let mut partitions = vec![vec![batch(&[])], vec![batch(&[])]];
        for (i, w) in cuts.windows(2).enumerate() {
            partitions[i % 2].push(batch(&rows[w[0]..w[1]]));
        }
        let (plain, elide) = sessions(partitions);
        for sql in REPLACED {
            prop_assert_eq!(run(&elide, sql).0, run(&plain, sql).0, "{}", sql);
        }
    }
}
