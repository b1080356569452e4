//! `properties_match` through SQL: PostHog's operators (the default
//! `exact` included), rows without properties, and the errors for a
//! malformed or non-constant filter list.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

async fn session() -> SessionContext {
    session_of(&[
        Some(r#"{"$browser": "Chrome", "$screen_width": 1280}"#),
        Some(r#"{"$browser": "Firefox", "$screen_width": 800.0}"#),
        Some(r#"{"$browser": "Safari"}"#),
        Some(r#"{"plan": "pro", "$screen_width": "wide"}"#),
        None,
        Some("not json"),
    ])
    .await
}

/// Table `t`: one row per `props`, `id` its position.
async fn session_of(props: &[Option<&str>]) -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("properties", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..props.len() as i64)),
        Arc::new(props.iter().copied().collect::<StringArray>()),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), cols).expect("batch");
    let mut ctx = SessionContext::new();
    elide_query::register_functions(&mut ctx).expect("functions");
    let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
    ctx.register_table("t", Arc::new(table)).expect("register");
    ctx
}

/// The ids of the rows matching `filters`, in order.
async fn ids(ctx: &SessionContext, filters: &str) -> Vec<i64> {
    let sql = format!(
        "SELECT id FROM t WHERE properties_match(properties, '{}') ORDER BY id",
        filters.replace('\'', "''")
    );
    let batches = ctx
        .sql(&sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// Values compare by their text, as PostHog's queries compare a
/// property (numbers also by value), and JSON null is unset.
#[tokio::test]
async fn values_compare_as_text_and_null_is_unset() {
    let ctx = session_of(&[
        Some(r#"{"n": 5, "b": true, "z": null}"#),
        Some(r#"{"n": "5", "b": "true", "z": 1}"#),
        Some(r#"{"n": "5.0", "b": "yes"}"#),
        Some(r#"{"n": "ten"}"#),
    ])
    .await;
    let cases = [
        (r#"[{"key": "n", "value": 5}]"#, vec![0, 1, 2]),
        (r#"[{"key": "n", "value": "5"}]"#, vec![0, 1, 2]),
        (
            r#"[{"key": "n", "value": 4, "operator": "gt"}]"#,
            vec![0, 1, 2],
        ),
        (r#"[{"key": "b", "value": true}]"#, vec![0, 1]),
        (r#"[{"key": "b", "value": "TRUE"}]"#, vec![]),
        (r#"[{"key": "z", "operator": "is_set"}]"#, vec![1]),
        (r#"[{"key": "z", "operator": "is_not_set"}]"#, vec![0, 2, 3]),
        (r#"[{"key": "z", "value": null}]"#, vec![0, 2, 3]),
        (
            r#"[{"key": "z", "value": "nul", "operator": "icontains"}]"#,
            vec![],
        ),
    ];
    for (filters, want) in cases {
        assert_eq!(ids(&ctx, filters).await, want, "{filters}");
    }
}

#[tokio::test]
async fn operators_follow_posthog() {
    let ctx = session().await;
    // No operator: exact; a list value: any of.
    assert_eq!(
        ids(&ctx, r#"[{"key": "$browser", "value": "Chrome"}]"#).await,
        [0]
    );
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$browser", "value": ["Chrome", "Firefox"]}]"#
        )
        .await,
        [0, 1]
    );
    // Numbers by value; a text value is not a number.
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$screen_width", "value": 800, "operator": "exact"}]"#
        )
        .await,
        [1]
    );
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$screen_width", "value": 1000, "operator": "gt"}]"#
        )
        .await,
        [0]
    );
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$screen_width", "value": 1000, "operator": "lt"}]"#
        )
        .await,
        [1]
    );
    // is_not matches rows without the key, null properties included.
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$browser", "value": "Chrome", "operator": "is_not"}]"#
        )
        .await,
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids(&ctx, r#"[{"key": "plan", "operator": "is_set"}]"#).await,
        [3]
    );
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$screen_width", "operator": "is_not_set"}]"#
        )
        .await,
        [2, 4, 5]
    );
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$browser", "value": "FOX", "operator": "icontains"}]"#
        )
        .await,
        [1]
    );
    // All filters must hold; an empty list matches everything.
    assert_eq!(
        ids(
            &ctx,
            r#"[{"key": "$browser", "value": ["Chrome", "Firefox"]},
                {"key": "$screen_width", "value": 1000, "operator": "gt"}]"#
        )
        .await,
        [0]
    );
    assert_eq!(ids(&ctx, "[]").await, [0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn bad_filters_are_errors_naming_the_problem() {
    let ctx = session().await;
    for (filters, expect) in [
        ("not json", "not a JSON list"),
        (r#"{"key": "a"}"#, "not a JSON list"),
        (
            r#"[{"key": "a", "value": "1.0.0", "operator": "flag_evaluates_to"}]"#,
            "not a JSON list",
        ),
        (
            r#"[{"key": "a", "value": 1, "operator": "regex"}]"#,
            "regular expression as text",
        ),
        (
            r#"[{"key": "a", "value": "(", "operator": "regex"}]"#,
            "not a regular expression",
        ),
        (r#"[{"key": "", "value": 1}]"#, "needs a key"),
    ] {
        let sql = format!("SELECT count(*) FROM t WHERE properties_match(properties, '{filters}')");
        let err = match ctx.sql(&sql).await {
            Err(e) => e.to_string(),
            Ok(df) => df.collect().await.expect_err(filters).to_string(),
        };
        assert!(err.contains(expect), "{filters}: {err}");
    }
    let err = ctx
        .sql("SELECT count(*) FROM t WHERE properties_match(properties, properties)")
        .await
        .expect("plan")
        .collect()
        .await
        .expect_err("a column as filters");
    assert!(err.to_string().contains("must be a constant"), "{err}");
    let err = ctx
        .sql("SELECT properties_match(id, '[]') FROM t")
        .await
        .map(|_| ())
        .expect_err("an integer as properties");
    assert!(err.to_string().contains("must be text"), "{err}");
}

/// The query operators past the deletable seven, through SQL; a relative
/// date is resolved when the query is planned (the plan names the time,
/// not `-1d`).
#[tokio::test]
async fn query_operators_and_relative_dates_through_sql() {
    let now = chrono::Utc::now();
    let ago = |days: i64| (now - chrono::Duration::days(days)).to_rfc3339();
    let rows = [
        format!(r#"{{"url": "/pricing", "n": 5, "seen": "{}"}}"#, ago(3)),
        format!(r#"{{"url": "/admin/users", "n": 9, "seen": "{}"}}"#, ago(0)),
        r#"{"n": "7"}"#.to_string(),
    ];
    let rows: Vec<Option<&str>> = rows.iter().map(|r| Some(r.as_str())).collect();
    let ctx = session_of(&rows).await;
    let cases = [
        (
            r#"[{"key": "url", "operator": "regex", "value": "^/admin"}]"#,
            vec![1],
        ),
        (
            r#"[{"key": "url", "operator": "not_regex", "value": "^/admin"}]"#,
            vec![0, 2],
        ),
        (
            r#"[{"key": "url", "operator": "not_icontains", "value": "PRICING"}]"#,
            vec![1, 2],
        ),
        (
            r#"[{"key": "n", "operator": "between", "value": [5, 7]}]"#,
            vec![0, 2],
        ),
        (
            r#"[{"key": "n", "operator": "gte", "value": 7}]"#,
            vec![1, 2],
        ),
        (
            r#"[{"key": "seen", "operator": "is_date_after", "value": "-1d"}]"#,
            vec![1],
        ),
        (
            r#"[{"key": "seen", "operator": "is_date_before", "value": "-1d"}]"#,
            vec![0],
        ),
        (
            r#"[{"key": "n", "operator": "exact", "value": []}]"#,
            vec![0, 1, 2],
        ),
    ];
    for (filters, want) in cases {
        assert_eq!(ids(&ctx, filters).await, want, "{filters}");
    }
    let plan = ctx
        .sql(r#"EXPLAIN SELECT id FROM t WHERE properties_match(properties, '[{"key": "seen", "operator": "is_date_after", "value": "-1d"}]')"#)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("explain");
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .expect("format")
        .to_string();
    assert!(!text.contains("-1d"), "{text}");
    // The day the query resolved `-1d` to (the query started between
    // `now` and this moment, across midnight perhaps).
    let days = [now, chrono::Utc::now()].map(|t| {
        (t - chrono::Duration::days(1))
            .format("%Y-%m-%dT")
            .to_string()
    });
    assert!(days.iter().any(|d| text.contains(d)), "{text}");
}

/// A user's query's `properties_match` calls compile at most 100 regular
/// expressions in all (each list holds at most 20), also those a
/// relative date made the planner rewrite; a list used twice counts once.
#[tokio::test]
async fn a_query_compiles_a_bounded_number_of_regular_expressions() {
    let ctx = session().await;
    let call = |k: usize| {
        let patterns: Vec<String> = (0..20).map(|i| format!("c{k}p{i}")).collect();
        let mut list =
            serde_json::json!([{"key": "$browser", "operator": "regex", "value": patterns}]);
        // Every other list also has a relative date (rewritten by the
        // planner into a call of its own).
        if k % 2 == 1 {
            list.as_array_mut().expect("list").push(
                serde_json::json!({"key": "seen", "operator": "is_date_after", "value": "-7d"}),
            );
        }
        format!("properties_match(properties, '{list}')")
    };
    let sql = |calls: usize| {
        let ors: Vec<String> = (0..calls).map(call).collect();
        format!("SELECT count(*) FROM t WHERE {}", ors.join(" OR "))
    };
    let run = |s: String| {
        let ctx = ctx.clone();
        async move {
            // One query, one budget (as a server's session is per query).
            ctx.register_udf(elide_query::PropertiesMatch::udf_with_budget(
                elide_query::MAX_QUERY_PATTERNS,
            ));
            match ctx.sql(&s).await {
                Err(e) => Err(e.to_string()),
                Ok(df) => df.collect().await.map(drop).map_err(|e| e.to_string()),
            }
        }
    };
    assert_eq!(run(sql(5)).await, Ok(()));
    // The same five lists twice: still 100.
    let twice = format!("{} UNION ALL {}", sql(5), sql(5));
    assert_eq!(run(twice).await, Ok(()));
    let e = run(sql(6)).await.unwrap_err();
    assert!(e.contains("at most 100 regular expressions"), "{e}");
}
