//! Tests of [`UuidInList`]: the same rows as DataFusion's `IN` list, in a
//! session with all of Elide's rules but this one; shipped as the `IN`
//! list it replaced.

use super::*;
use arrow::array::{ArrayRef, FixedSizeBinaryArray, Int64Array};
use arrow::datatypes::Field;
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;

/// The `i`-th UUID of the pool, as text.
fn uuid(i: u8) -> String {
    format!("0192b1c2-d3e4-4f56-8789-0a1b2c3d4e{i:02x}")
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        elide_store::schema::uuid_field("p", true),
        Field::new("n", DataType::Int64, false),
    ]))
}

/// Rows `n = 0..`, `p` the pool's UUID of each index (or null).
fn batch(ids: &[Option<u8>], first_n: i64) -> RecordBatch {
    let bytes = |i: u8| uuid::Uuid::parse_str(&uuid(i)).unwrap().into_bytes();
    let p =
        FixedSizeBinaryArray::try_from_sparse_iter_with_size(ids.iter().map(|i| i.map(bytes)), 16)
            .unwrap();
    let n = Int64Array::from_iter_values(first_n..first_n + ids.len() as i64);
    RecordBatch::try_new(schema(), vec![Arc::new(p) as ArrayRef, Arc::new(n)]).unwrap()
}

/// A session with Elide's rules, and one with all of them but this one.
fn sessions(ids: &[Option<u8>]) -> (SessionContext, SessionContext) {
    let config = || SessionConfig::new().with_target_partitions(2);
    let mut with = SessionContext::new_with_config(config());
    crate::register_functions(&mut with).unwrap();
    let (a, b) = ids.split_at(ids.len() / 2);
    let parts = vec![vec![batch(a, 0)], vec![batch(b, a.len() as i64)]];
    let t = MemTable::try_new(schema(), parts).unwrap();
    with.register_table("t", Arc::new(t)).unwrap();
    // The same catalog, so the same table.
    let without = crate::test_support::without_physical_rule(&with, UuidInLists.name());
    (with, without)
}

use crate::test_support::rows_and_plan as run;

/// `IN (…)` of the pool's UUIDs `list`, the text in the forms a user may
/// write it.
fn list(list: &[u8]) -> String {
    let forms = list.iter().enumerate().map(|(k, &i)| match k % 3 {
        0 => format!("'{}'", uuid(i)),
        1 => format!("'{}'", uuid(i).to_uppercase()),
        _ => format!("'{{{}}}'", uuid(i)),
    });
    format!("({})", forms.collect::<Vec<_>>().join(", "))
}

/// Filters whose `IN` lists the rule replaces, over the list `l`.
fn replaced(l: &str) -> Vec<String> {
    vec![
        format!("SELECT count(*) FROM t WHERE p IN {l}"),
        format!("SELECT n FROM t WHERE p NOT IN {l} ORDER BY n"),
        format!("SELECT n FROM t WHERE p IN {l} OR n < 3 ORDER BY n"),
        format!("SELECT n FROM t WHERE NOT (p IN {l}) ORDER BY n"),
        format!("SELECT n FROM t WHERE (p IN {l}) IS NULL ORDER BY n"),
        format!("SELECT n FROM t WHERE (p NOT IN {l}) IS NOT TRUE ORDER BY n"),
    ]
}

/// Comparisons with the pool's UUID `i` that the rule replaces (lists of
/// up to 3 values become `=` … `OR`).
fn equalities(i: u8) -> Vec<String> {
    let u = uuid(i);
    vec![
        format!("SELECT count(*) FROM t WHERE p = '{u}'"),
        format!(
            "SELECT n FROM t WHERE p <> '{}' ORDER BY n",
            u.to_uppercase()
        ),
        format!("SELECT n FROM t WHERE '{u}' = p ORDER BY n"),
        format!("SELECT n FROM t WHERE (p = '{u}') IS NULL ORDER BY n"),
        format!(
            "SELECT n FROM t WHERE p IN ('{u}', '{}') ORDER BY n",
            uuid(i ^ 1)
        ),
        format!("SELECT n FROM t WHERE p = '{u}' OR n > 400 ORDER BY n"),
        format!("SELECT n FROM t WHERE NOT (p = '{u}' OR n > 400) ORDER BY n"),
    ]
}

/// The plans of `sql` with the rule and without it, once both sessions
/// gave the same rows.
fn same_rows(with: &SessionContext, without: &SessionContext, sql: &str) -> (String, String) {
    let (want, plain_plan) = run(without, sql);
    let (got, plan) = run(with, sql);
    assert_eq!(got, want, "{sql}");
    (plan, plain_plan)
}

#[test]
fn in_lists_of_uuids_answer_as_datafusions() {
    let ids: Vec<Option<u8>> = (0..500u32)
        .map(|i| (i % 9 != 4).then_some((i * 7 % 40) as u8))
        .collect();
    let (with, without) = sessions(&ids);
    // Present and absent values (the pool in the table is 0..40).
    for sql in replaced(&list(&[1, 5, 39, 77, 200, 5])) {
        let (plan, plain_plan) = same_rows(&with, &without, &sql);
        assert!(plan.contains("IN (set of 5 UUIDs)"), "{sql}: {plan}");
        assert!(!plain_plan.contains("set of"), "{plain_plan}");
    }
    // A list with a null, a projection (not a filter), a list of columns:
    // DataFusion's.
    for sql in [
        format!(
            "SELECT n FROM t WHERE p IN ('{}', '{}', '{}', '{}', NULL) ORDER BY n",
            uuid(1),
            uuid(2),
            uuid(3),
            uuid(4)
        ),
        "SELECT n FROM t WHERE p IN (p, p, p, p) ORDER BY n".to_string(),
        format!(
            "SELECT n, p IN {} AS hit FROM t ORDER BY n",
            list(&[1, 2, 3, 4])
        ),
    ] {
        let (plan, _) = same_rows(&with, &without, &sql);
        assert!(!plan.contains("set of"), "{sql}: {plan}");
    }
    // Equalities, present and absent values.
    for i in [5, 39, 200] {
        for sql in equalities(i) {
            let (plan, plain_plan) = same_rows(&with, &without, &sql);
            assert!(plan.contains("(as a 128-bit integer)"), "{sql}: {plan}");
            assert!(!plain_plan.contains("128-bit"), "{plain_plan}");
        }
    }
    // A comparison of two columns, or of other operators: DataFusion's.
    for sql in [
        "SELECT n FROM t WHERE p = p ORDER BY n".to_string(),
        format!("SELECT n FROM t WHERE p < '{}' ORDER BY n", uuid(9)),
    ] {
        let (plan, _) = same_rows(&with, &without, &sql);
        assert!(!plan.contains("128-bit"), "{sql}: {plan}");
    }
}

/// Plans `sql`, whose plan shows `replaced`, ships it through
/// datafusion-proto and back: the plan back shows `shipped` and not
/// `replaced`, and both give the same rows.
fn ships_as(with: &SessionContext, sql: &str, replaced: &str, shipped: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let df = with.sql(sql).await.unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let shown = |p: &Arc<dyn ExecutionPlan>| {
            datafusion::physical_plan::displayable(p.as_ref())
                .indent(true)
                .to_string()
        };
        assert!(shown(&plan).contains(replaced), "{}", shown(&plan));
        let bytes = datafusion_proto::bytes::physical_plan_to_bytes(Arc::clone(&plan)).unwrap();
        let back =
            datafusion_proto::bytes::physical_plan_from_bytes(&bytes, &with.task_ctx()).unwrap();
        assert!(!shown(&back).contains(replaced), "{}", shown(&back));
        assert!(shown(&back).contains(shipped), "{}", shown(&back));
        let rows = |p| async {
            let b = datafusion::physical_plan::collect(p, with.task_ctx())
                .await
                .unwrap();
            pretty_format_batches(&b).unwrap().to_string()
        };
        assert_eq!(rows(back).await, rows(plan).await);
    });
}

#[test]
fn shipped_it_is_the_in_list_it_replaced() {
    let ids: Vec<Option<u8>> = (0..100).map(|i| (i % 5 != 0).then_some(i % 10)).collect();
    let (with, _) = sessions(&ids);
    // (DataFusion turns lists of up to 3 values into `=` … `OR`.)
    let sql = format!(
        "SELECT n FROM t WHERE p IN {} ORDER BY n",
        list(&[1, 2, 3, 4])
    );
    ships_as(&with, &sql, "set of 4 UUIDs", " IN (");
}

#[test]
fn a_scalar_and_new_children_keep_the_answer() {
    let ids: Vec<Option<u8>> = vec![Some(1)];
    let (with, _) = sessions(&ids);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plan = rt.block_on(async {
        let sql = format!("SELECT n FROM t WHERE p NOT IN {}", list(&[1, 2, 7, 8]));
        with.sql(&sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    });
    let filter =
        crate::test_support::find_node(&plan, &|p| p.downcast_ref::<FilterExec>().is_some());
    let predicate = filter
        .as_ref()
        .and_then(|f| f.downcast_ref::<FilterExec>())
        .map(|f| Arc::clone(f.predicate()))
        .expect("a filter");
    let set = predicate.downcast_ref::<UuidInList>().expect("the set");
    let scalar = |i: Option<u8>| {
        let bytes = i.map(|i| uuid::Uuid::parse_str(&uuid(i)).unwrap().as_bytes().to_vec());
        Arc::new(Literal::new(ScalarValue::FixedSizeBinary(16, bytes))) as Arc<dyn PhysicalExpr>
    };
    let answer = |e: Arc<dyn PhysicalExpr>| match e.evaluate(&batch(&[Some(0)], 0)).unwrap() {
        ColumnarValue::Scalar(ScalarValue::Boolean(b)) => b,
        other => panic!("not a boolean scalar: {other:?}"),
    };
    let with_child = |i| {
        Arc::clone(&predicate)
            .with_new_children(vec![scalar(i)])
            .unwrap()
    };
    // On a slice of a batch (an offset into the values), the set answers
    // as the IN list it replaced.
    let ids: Vec<Option<u8>> = (0..40).map(|i| (i % 6 != 0).then_some(i % 11)).collect();
    let sliced = batch(&ids, 0).slice(7, 25);
    let answers = |e: &Arc<dyn PhysicalExpr>| match e.evaluate(&sliced).unwrap() {
        ColumnarValue::Array(a) => a.as_boolean().clone(),
        other => panic!("not an array: {other:?}"),
    };
    assert_eq!(answers(&predicate), answers(&set.original));
    // NOT IN (1, 2, 7, 8): 1 is in the list, 3 is not, null is null.
    assert_eq!(answer(with_child(Some(1))), Some(false));
    assert_eq!(answer(with_child(Some(3))), Some(true));
    assert_eq!(answer(with_child(None)), None);
    assert!(set.to_string().contains("NOT IN (set of 4 UUIDs)"), "{set}");
    // New children leave the list it stands for (and ships) whole.
    let renewed = with_child(Some(1));
    let renewed = renewed.downcast_ref::<UuidInList>().expect("still the set");
    assert_eq!(renewed.original.children().len(), 1 + 4);
    assert_eq!(renewed.set, set.set);
}

/// An equality is shipped as the comparison it replaced.
#[test]
fn an_equality_is_shipped_as_the_comparison() {
    let ids: Vec<Option<u8>> = (0..60).map(|i| (i % 5 != 0).then_some(i % 10)).collect();
    let (with, _) = sessions(&ids);
    let sql = format!("SELECT n FROM t WHERE '{}' <> p ORDER BY n", uuid(3));
    ships_as(&with, &sql, "(as a 128-bit integer)", " != ");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_lists_answer_as_datafusions(
        ids in proptest::collection::vec(proptest::option::weighted(0.8, 0u8..24), 0..300),
        l in proptest::collection::vec(0u8..32, 1..12),
    ) {
        let (with, without) = sessions(&ids);
        for sql in replaced(&list(&l)).into_iter().chain(equalities(l[0])) {
            prop_assert_eq!(run(&with, &sql).0, run(&without, &sql).0, "{}", sql);
        }
    }
}
