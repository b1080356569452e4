//! Tests of the UUID rule over a MemTable.

use super::*;
use arrow::array::{ArrayRef, FixedSizeBinaryArray, StringArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::prelude::SessionContext;

const A: &str = "0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f";
const B: &str = "11111111-d3e4-4f56-8789-0a1b2c3d4e5f";

fn ctx() -> SessionContext {
    let bytes = |s: &str| uuid::Uuid::parse_str(s).unwrap().as_bytes().to_vec();
    let ids =
        FixedSizeBinaryArray::try_from_iter([bytes(A), bytes(B), bytes(A)].into_iter()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        elide_store::schema::uuid_field("person_id", false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(ids) as ArrayRef,
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let mut rules = Analyzer::new().rules;
    rules.insert(0, Arc::new(UuidSql));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_analyzer_rules(rules)
        .build();
    let mut ctx = SessionContext::new_with_state(state);
    {
        use datafusion::execution::FunctionRegistry;
        ctx.register_expr_planner(Arc::new(UuidLiterals)).unwrap();
    }
    ctx.register_udf(uuid_from_text_udf().as_ref().clone());
    ctx.register_udf(uuid_text_udf().as_ref().clone());
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    let texts = StringArray::from(vec![A, "x"]);
    let s2 = Arc::new(Schema::new(vec![Field::new("p", DataType::Utf8, false)]));
    let b2 = RecordBatch::try_new(Arc::clone(&s2), vec![Arc::new(texts) as ArrayRef]).unwrap();
    ctx.register_table(
        "p",
        Arc::new(MemTable::try_new(s2, vec![vec![b2]]).unwrap()),
    )
    .unwrap();
    ctx
}

async fn rows(ctx: &SessionContext, q: &str) -> Result<Vec<String>> {
    let b = ctx.sql(q).await?.collect().await?;
    let text = arrow::util::pretty::pretty_format_batches(&b)?.to_string();
    Ok(text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect())
}

#[tokio::test]
async fn uuid_columns_read_and_compare_as_text() {
    let ctx = ctx();
    let q = |s: &'static str| s;
    let cases: Vec<(&str, Vec<String>)> = vec![
        (q("SELECT count(*) FROM t WHERE person_id = '0192B1C2-D3E4-4F56-8789-0A1B2C3D4E5F'"), vec!["2".into()]),
        (q("SELECT count(*) FROM t WHERE '0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f' <> person_id"), vec!["1".into()]),
        (q("SELECT count(*) FROM t WHERE person_id IN ('0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f', '11111111-d3e4-4f56-8789-0a1b2c3d4e5f')"), vec!["3".into()]),
        (q("SELECT count(DISTINCT person_id) FROM t"), vec!["2".into()]),
        (q("SELECT person_id, count(*) FROM t GROUP BY person_id ORDER BY person_id"), vec![format!("{A},2"), format!("{B},1")]),
        (q("SELECT CAST(person_id AS VARCHAR) FROM t WHERE name = 'b'"), vec![B.into()]),
        (q("SELECT count(*) FROM t WHERE person_id LIKE '0192%'"), vec!["2".into()]),
        (q("SELECT count(*) FROM t JOIN p ON t.person_id = p.p"), vec!["2".into()]),
        (q("SELECT count(*) FROM t WHERE person_id > '0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f'"), vec!["1".into()]),
        (q("SELECT person_id FROM t WHERE person_id IN (SELECT person_id FROM t WHERE name = 'b')"), vec![B.into()]),
        (q("SELECT count(*) FROM t WHERE person_id BETWEEN '0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f' AND '11111111-D3E4-4F56-8789-0A1B2C3D4E5F'"), vec!["3".into()]),
        (q("SELECT count(*) FROM t CROSS JOIN (SELECT '1' AS lo) b WHERE person_id BETWEEN lo AND 'z'"), vec!["1".into()]),
        (q("SELECT count(*) FROM t WHERE person_id IN (SELECT p FROM p)"), vec!["2".into()]),
        (q("SELECT count(*) FROM p WHERE p IN (SELECT person_id FROM t)"), vec!["1".into()]),
        (q("SELECT x FROM (SELECT person_id AS x FROM t WHERE name = 'b' UNION ALL SELECT p FROM p) ORDER BY x"), vec![A.into(), B.into(), "x".into()]),
        (q("SELECT CASE WHEN name = 'b' THEN person_id ELSE 'none' END AS c FROM t ORDER BY c"), vec![B.into(), "none".into(), "none".into()]),
        (q("SELECT CASE person_id WHEN '0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f' THEN 'yes' ELSE 'no' END AS c, count(*) FROM t GROUP BY 1 ORDER BY 1"), vec!["no,1".into(), "yes,2".into()]),
        (q("SELECT count(*) FROM t JOIN (SELECT p AS person_id FROM p) q USING (person_id)"), vec!["2".into()]),
        (q("SELECT string_agg(person_id, ';') FROM t WHERE name = 'b'"), vec![B.into()]),
        (q("SELECT min(person_id), max(person_id) FROM t"), vec![format!("{A},{B}")]),
        (q("SELECT p, (SELECT count(*) FROM t WHERE t.person_id = p.p) AS n FROM p ORDER BY p"), vec![format!("{A},2"), "x,0".into()]),
        (q("SELECT count(*) FROM t CROSS JOIN (SELECT 'zzz' AS z) q WHERE person_id NOT IN ('0192B1C2-D3E4-4F56-8789-0A1B2C3D4E5F', z)"), vec!["1".into()]),
        (q("SELECT count(*) FROM t WHERE person_id IN ('11111111-d3e4-4f56-8789-0a1b2c3d4e5f', person_id)"), vec!["3".into()]),
        (q("SELECT count(*) FROM p WHERE '{0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f}' IN (SELECT person_id FROM t)"), vec!["2".into()]),
        (q("SELECT count(*) FROM p WHERE p NOT IN (SELECT person_id FROM t)"), vec!["1".into()]),
        (q("SELECT count(*) FROM (SELECT person_id, grouping(person_id) AS g FROM t GROUP BY ROLLUP(person_id)) WHERE g = 1"), vec!["1".into()]),
        (q("SELECT c FROM (SELECT CASE WHEN name = 'b' THEN person_id ELSE 'none' END AS c FROM t UNION ALL SELECT CASE WHEN name = 'a' THEN person_id ELSE 'none' END FROM t) ORDER BY c"), vec![A.into(), B.into(), "none".into(), "none".into(), "none".into(), "none".into()]),
        (q("SELECT count(*) FROM t, p WHERE t.person_id = p.p AND t.name <> 'zz'"), vec!["2".into()]),
        (q("SELECT count(*) FROM t WHERE NOT (person_id = uuid_from_text('nope'))"), vec!["0".into()]),
        // A comparison with text directly under NOT (typed by the SQL
        // planner before the analyzer runs: `UuidLiterals`).
        (q("SELECT count(*) FROM t WHERE NOT (person_id = '0192B1C2-D3E4-4F56-8789-0A1B2C3D4E5F')"), vec!["1".into()]),
        (q("SELECT count(*) FROM t WHERE NOT ('0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f' = person_id AND name = 'a')"), vec!["2".into()]),
        (q("SELECT count(*) FROM t WHERE NOT (person_id < '11111111-d3e4-4f56-8789-0a1b2c3d4e5f' OR name = 'x')"), vec!["1".into()]),
        // ... and with text that is not a literal: compared as text.
        (q("SELECT count(*) FROM t, p WHERE NOT (t.person_id = p.p)"), vec!["4".into()]),
        (q("SELECT count(*) FROM t CROSS JOIN p WHERE NOT (p.p = t.person_id OR t.name = 'c')"), vec!["3".into()]),
        (q("SELECT count(*) FROM t, p WHERE NOT (t.person_id < p.p)"), vec!["3".into()]),
        (q("SELECT count(*) FROM t, p WHERE NOT (t.person_id <> p.p AND t.name = 'a')"), vec!["5".into()]),
        (q("SELECT count(*) FROM t WHERE NOT (person_id = name)"), vec!["3".into()]),
        // ... and with an outer query's text: `=` parses it (as anywhere in
        // a correlated subquery: text that is not a UUID matches nothing,
        // so its `NOT` is NULL), other comparisons are of text. (A scalar
        // subquery correlated by anything but `=` is DataFusion's limit,
        // with text as with UUIDs.)
        (q("SELECT p FROM p WHERE EXISTS (SELECT 1 FROM t WHERE NOT (p.p = t.person_id OR t.name = 'b'))"), Vec::<String>::new()),
        (q("SELECT p FROM p WHERE EXISTS (SELECT 1 FROM t WHERE NOT (p.p = t.person_id AND t.name = 'a')) ORDER BY p"), vec![A.into(), "x".into()]),
        (q("SELECT p FROM p WHERE EXISTS (SELECT 1 FROM t WHERE NOT (t.person_id < p.p))"), vec![A.into()]),
        // A side that types as a UUID while the SQL is planned and as
        // text after the rule (a UNION of a UUID and text, a CASE whose
        // first branch is a UUID): compared as text.
        (q("SELECT count(*) FROM (SELECT person_id AS x FROM t UNION ALL SELECT p FROM p) u, p WHERE u.x <> p.p"), vec!["6".into()]),
        (q("SELECT count(*) FROM (SELECT person_id AS x FROM t UNION ALL SELECT p FROM p) u, p WHERE u.x = p.p"), vec!["4".into()]),
        (q("SELECT count(*) FROM t WHERE (CASE WHEN name = 'b' THEN person_id ELSE 'none' END) = name"), vec!["0".into()]),
        (q("SELECT count(*) FROM t WHERE NOT ((CASE WHEN name = 'b' THEN person_id ELSE 'none' END) = name)"), vec!["3".into()]),
        // INTERSECT / EXCEPT (NULL matches NULL): text that is not a UUID
        // is not a NULL there; compared as text.
        (q("SELECT p FROM p INTERSECT SELECT person_id FROM t ORDER BY 1"), vec![A.into()]),
        (q("SELECT p FROM p INTERSECT SELECT t2.person_id FROM p LEFT JOIN t t2 ON p.p = t2.name"), Vec::<String>::new()),
        (q("SELECT p FROM p EXCEPT SELECT t2.person_id FROM p LEFT JOIN t t2 ON p.p = t2.name ORDER BY 1"), vec![A.into(), "x".into()]),
        (q("SELECT count(*) FROM (SELECT person_id FROM t EXCEPT SELECT p FROM p)"), vec!["1".into()]),
        // A literal IN a list of UUIDs: as bytes, as `=` is.
        (q("SELECT count(*) FROM t WHERE '0192B1C2-D3E4-4F56-8789-0A1B2C3D4E5F' IN (person_id)"), vec!["2".into()]),
        (q("SELECT count(*) FROM t WHERE '{11111111-d3e4-4f56-8789-0a1b2c3d4e5f}' NOT IN (person_id, '0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f')"), vec!["2".into()]),
        // ... and among text: compared as text, the literal canonical.
        (q("SELECT count(*) FROM t WHERE '0192B1C2-D3E4-4F56-8789-0A1B2C3D4E5F' IN (person_id, name)"), vec!["2".into()]),
        // Inside a grouping set, which the rule leaves alone.
        (q("SELECT count(*) FROM (SELECT person_id = name AS s FROM t GROUP BY ROLLUP(person_id = name))"), vec!["2".into()]),
        // A `uuid_text` the user wrote stays a comparison of text.
        (q("SELECT count(*) FROM t, p WHERE uuid_text(t.person_id) = upper(p.p)"), vec!["0".into()]),
        (q("SELECT person_id, row_number() OVER (ORDER BY person_id, name) AS n FROM t ORDER BY n"), vec![format!("{A},1"), format!("{A},2"), format!("{B},3")]),
        (q("SELECT name, count(*) OVER (ORDER BY person_id) AS n FROM t ORDER BY name"), vec!["a,2".into(), "b,3".into(), "c,2".into()]),
        (q("SELECT name, count(*) OVER (ORDER BY person_id DESC RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS n FROM t ORDER BY name"), vec!["a,2".into(), "b,3".into(), "c,2".into()]),
        (q("SELECT concat(CAST(person_id AS VARCHAR), '!') FROM t WHERE name = 'b'"), vec![format!("{B}!")]),
        (q("SELECT count(*) FROM t WHERE length(person_id) = 36 AND starts_with(person_id, '0192')"), vec!["2".into()]),
    ];
    for (sql, want) in cases {
        assert_eq!(rows(&ctx, sql).await.unwrap(), want, "{sql}");
    }
    for bad in [
        "SELECT count(*) FROM t WHERE person_id = 'nope'",
        "SELECT count(*) FROM t WHERE person_id IN ('nope')",
        "SELECT count(*) FROM t WHERE person_id BETWEEN 'a' AND 'b'",
        "SELECT count(*) FROM t WHERE NOT (person_id = 'nope')",
        "SELECT count(*) FROM t WHERE 'nope' IN (person_id)",
    ] {
        let err = rows(&ctx, bad).await.unwrap_err();
        assert!(err.to_string().contains("not a UUID"), "{bad}: {err}");
    }
    let err = rows(
        &ctx,
        "SELECT count(*) OVER (ORDER BY person_id RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.find_root(), DataFusionError::Plan(m) if m.contains("RANGE frame")),
        "{err}"
    );
}

#[tokio::test]
async fn a_string_function_given_a_uuid_fails_with_a_hint() {
    let ctx = ctx();
    let err = ctx
        .sql("SELECT concat(person_id, '!') FROM t")
        .await
        .unwrap_err();
    let err = with_uuid_hint(err).to_string();
    assert!(err.contains("CAST(person_id AS VARCHAR)"), "{err}");
}

#[tokio::test]
async fn results_have_the_schema_of_their_rows() {
    let ctx = ctx();
    let df = ctx.sql("SELECT person_id, name FROM t").await.unwrap();
    let (schema, batches) = crate::collect_with_schema(df).await.unwrap();
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8View);
    for b in &batches {
        assert_eq!(b.schema(), schema);
    }
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    assert_eq!(all.num_rows(), 3);
}

#[tokio::test]
async fn copy_writes_uuids_as_text() {
    let ctx = ctx();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let sql = format!(
        "COPY (SELECT person_id, name FROM t ORDER BY name) TO '{}' STORED AS CSV",
        out.display()
    );
    ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        format!("person_id,name\n{A},a\n{B},b\n{A},c\n"),
        "{text}"
    );
}

/// An equality of a UUID with text at the top of a filter or a join
/// compares bytes, though the SQL planner gives the UUID as its text
/// (`UuidLiterals`, so that the same comparison under `NOT` plans).
#[tokio::test]
async fn an_equality_with_text_in_a_filter_or_a_join_compares_bytes() {
    let ctx = ctx();
    for q in [
        "SELECT count(*) FROM t JOIN p ON t.person_id = p.p",
        "SELECT count(*) FROM t, p WHERE t.person_id = p.p AND t.name <> 'zz'",
        "SELECT count(*) FROM t, p WHERE p.p = t.person_id",
    ] {
        let plan = ctx.sql(q).await.unwrap().into_optimized_plan().unwrap();
        let shown = plan.display_indent().to_string();
        assert!(
            shown.contains("uuid_from_text(p.p)") && !shown.contains("uuid_text("),
            "{q}:\n{shown}"
        );
    }
}

/// A comparison of a UUID with text keeps the name it had before the
/// planner gave the UUID as its text.
#[tokio::test]
async fn a_comparison_with_text_keeps_its_name() {
    let ctx = ctx();
    let df = ctx.sql("SELECT person_id = name FROM t").await.unwrap();
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["t.person_id = t.name"]);
    let b = df.collect().await.unwrap();
    assert_eq!(b[0].schema().field(0).name(), "t.person_id = t.name");
}
