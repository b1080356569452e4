//! ClickHouse functions PostHog users write in HogQL, run over HTTP.

use serde_json::json;

use crate::common::Harness;

/// Conditionals, text, dates, aggregates: each answers as ClickHouse's
/// would on these rows (lists come back as text, as every list the
/// query endpoint answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_functions_answer_as_clickhouse() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "sign up", "distinct_id": "a", "properties": {"plan": "pro", "tags": "x,y"}, "timestamp": "2024-03-04T10:20:30Z"},
        {"event": "sign up", "distinct_id": "b", "properties": {"plan": ""}, "timestamp": "2024-03-10T23:00:00Z"},
        {"event": "$pageview", "distinct_id": "a", "properties": {"$current_url": "https://x.io/blog/1"}, "timestamp": "2024-03-05T00:00:00Z"},
    ]))
    .await;
    let rows = h
        .hogql(
            "select event, if(event = 'sign up', 1, 0), multiIf(distinct_id = 'a', 'A', distinct_id = 'b', 'B', '?'), \
             ifNull(properties.plan, 'none'), notEmpty(properties.plan), toYear(timestamp), toMonth(timestamp), \
             toDayOfWeek(timestamp), toHour(timestamp), toUnixTimestamp(timestamp), \
             toStartOfDay(dateAdd(day, 1, timestamp)), match(event, '^sign'), startsWith(event, '$'), \
             toStartOfInterval(timestamp, INTERVAL 15 minute), \
             position(event, 'up'), splitByChar(',', properties.tags) \
             from events order by timestamp",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!([
                "sign up",
                1,
                "A",
                "pro",
                1,
                2024,
                3,
                1,
                10,
                1709547630i64,
                "2024-03-05T00:00:00.000000Z",
                1,
                0,
                "2024-03-04T10:15:00.000000Z",
                6,
                "[x, y]"
            ]),
            json!([
                "$pageview",
                0,
                "A",
                "none",
                null,
                2024,
                3,
                2,
                0,
                1709596800i64,
                "2024-03-06T00:00:00.000000Z",
                0,
                1,
                "2024-03-05T00:00:00.000000Z",
                0,
                null
            ]),
            json!([
                "sign up",
                1,
                "B",
                "",
                0,
                2024,
                3,
                7,
                23,
                1710111600i64,
                "2024-03-11T00:00:00.000000Z",
                1,
                0,
                "2024-03-10T23:00:00.000000Z",
                6,
                null
            ]),
        ]
    );
    let rows = h
        .hogql(
            "select argMax(event, timestamp), argMin(event, timestamp), countDistinct(distinct_id), \
             uniqIf(distinct_id, event = 'sign up'), cardinality(groupUniqArray(distinct_id)), \
             countIf(like(properties.$current_url, '%/blog/%')), \
             empty(groupArray(properties.nothing)), notEmpty(groupArray(event)), empty(''), \
             quantile(0.5)(toHour(timestamp)) from events",
        )
        .await;
    assert_eq!(
        rows,
        vec![json!(["sign up", "sign up", 2, 2, 2, 1, 1, 1, 1, 10.0])]
    );
}

/// NULLs as ClickHouse's aggregates skip them (its documentation's
/// `argMax` example), a NULL count of `dateAdd`, a `$` in a replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_and_replacements_as_clickhouse() {
    let h = Harness::new();
    let rows = h
        .hogql(
            "select argMax(a, b), argMin(a, b), any(a), anyLast(a), groupArray(a) \
             from (values ('a', 1), ('b', 2), ('c', 2), (NULL, 3), (NULL, NULL), ('d', NULL)) t(a, b)",
        )
        .await;
    let row = &rows[0];
    assert!(row[0] == json!("b") || row[0] == json!("c"), "{row}");
    assert_eq!(row[1], json!("a"));
    assert_eq!(row[2], json!("a"));
    assert_eq!(row[3], json!("d"));
    assert_eq!(row[4], json!("[a, b, c, d]"));
    let rows = h
        .hogql(
            "select toDate(dateAdd(day, n, toDate('2024-01-01'))), replaceRegexpAll('abc', 'b', '$x'), \
             replaceRegexpAll('abc', '(b)', '<\\1>') from (values (1), (NULL)) t(n) order by 1",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!(["2024-01-02", "a$xc", "a<b>c"]),
            json!([null, "a$xc", "a<b>c"])
        ]
    );
}

/// A condition in `sum` or `avg` counts as ClickHouse's 1 or 0
/// (`sum(event = 'x')`, the share of rows with `avg`), with the call's own
/// `FILTER` kept; NULL conditions count for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_sum_as_ones_and_zeros() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "sign up", "distinct_id": "a", "properties": {"plan": "pro"}, "timestamp": "2024-03-04T10:20:30Z"},
        {"event": "sign up", "distinct_id": "b", "properties": {"plan": ""}, "timestamp": "2024-03-10T23:00:00Z"},
        {"event": "$pageview", "distinct_id": "a", "timestamp": "2024-03-05T00:00:00Z"},
    ]))
    .await;
    let rows = h
        .hogql(
            "select sum(event = 'sign up'), avg(startsWith(event, '$')), \
             sum(properties.plan = 'pro') FILTER (WHERE distinct_id = 'a'), sum(notEmpty(properties.plan)) \
             from events",
        )
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], json!(2));
    assert!(
        (rows[0][1].as_f64().expect("avg") - 1.0 / 3.0).abs() < 1e-12,
        "{rows:?}"
    );
    assert_eq!(rows[0][2], json!(1));
    assert_eq!(rows[0][3], json!(1));
    // `position` counts bytes, as ClickHouse's; `positionUTF8` characters.
    let rows = h
        .hogql("select position('héllo', 'l'), positionUTF8('héllo', 'l'), position('héllo', 'z'), position(properties.nope, 'z') from events limit 1")
        .await;
    assert_eq!(rows, vec![json!([4, 3, 0, null])]);
    let rows = h
        .hogql("select position('l' in 'héllo') from events limit 1")
        .await;
    assert_eq!(rows, vec![json!([4])]);
    // Nested calls stay one call each, and nesting what sqlparser parses
    // twice is refused before the parse (each level doubled it).
    let nested = |n: usize| {
        format!(
            "select {}'x'{} from events limit 1",
            "position(".repeat(n),
            ", 'a')".repeat(n)
        )
    };
    assert_eq!(h.hogql(&nested(10)).await, vec![json!([0])]);
    let r = h
        .post(
            &format!("{}/query/", h.api()),
            &json!({"query": {"kind": "HogQLQuery", "query": nested(40)}}),
        )
        .await;
    assert!(
        r.envelope(400).contains("more than 10 deep"),
        "{}",
        r.text()
    );
    // So is HogQL's ifNull (DataFusion's coalesce names its first
    // argument twice).
    let r = h
        .post(
            &format!("{}/query/", h.api()),
            &json!({"query": {"kind": "HogQLQuery", "query": format!(
                "select {}'x'{}", "ifNull(".repeat(30), ", 'a')".repeat(30))}}),
        )
        .await;
    assert!(
        r.envelope(400).contains("more than 10 deep"),
        "{}",
        r.text()
    );
    // A condition in the result is 1 or 0 (`UInt8`), as ClickHouse's.
    let r = h
        .post(
            &format!("{}/query/", h.api()),
            &json!({"query": {"kind": "HogQLQuery", "query":
                "select event = 'sign up' as s, notEmpty(properties.plan) as p \
                 from events order by timestamp"}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.json["results"],
        json!([[1, 1], [0, null], [1, 0]]),
        "{}",
        r.text()
    );
    assert_eq!(r.json["types"][0], json!(["s", "UInt8"]), "{}", r.text());
}

/// `formatDateTime` writes ClickHouse's specifiers (`%i` minutes, `%M`
/// the month's name, `%W` the weekday's, `%r` a 12-hour time, `%f`
/// microseconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_date_time_as_clickhouse() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "e", "distinct_id": "a", "timestamp": "2024-03-04T10:20:30.123456Z"},
    ]))
    .await;
    let rows = h
        .hogql(
            "select formatDateTime(timestamp, '%Y-%m-%d %H:%i:%S'), formatDateTime(timestamp, '%M %W %c %e'), \
             formatDateTime(timestamp, '%r'), formatDateTime(timestamp, '%F %T.%f', 'UTC'), \
             formatDateTime(timestamp, '%j %u %y') from events",
        )
        .await;
    assert_eq!(
        rows,
        vec![json!([
            "2024-03-04 10:20:30",
            "March Monday 03 4",
            "10:20 AM",
            "2024-03-04 10:20:30.123456",
            "064 1 24"
        ])]
    );
}

/// PostHog's version operators through HogQL's `properties_match` and
/// the persons list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_filters_over_events_and_persons() {
    let h = Harness::new();
    let mut events = Vec::new();
    for (who, v) in [
        ("a", "1.2.3"),
        ("b", "1.10.0"),
        ("c", "2.0.0-beta"),
        ("d", "0.9"),
    ] {
        events.push(json!({"event": "$identify", "distinct_id": who,
            "properties": {"$app_version": v, "$set": {"app_version": v}}}));
    }
    h.capture(json!(events)).await;
    let filter = r#"[{"key": "$app_version", "operator": "semver_caret", "value": "1.2.0"}]"#;
    let rows = h
        .hogql(&format!(
            "select distinct_id from events where properties_match(properties, '{filter}') order by 1"
        ))
        .await;
    assert_eq!(rows, vec![json!(["a"]), json!(["b"])]);
    let props = crate::common::urlencode(
        r#"[{"key": "app_version", "operator": "semver_gte", "value": "1.10", "type": "person"}]"#,
    );
    let r = h
        .get(&format!("{}/persons/?properties={props}", h.api()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ids: Vec<String> = r.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|p| {
            p["distinct_ids"][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["b", "c"]);
    let bad = crate::common::urlencode(
        r#"[{"key": "app_version", "operator": "semver_tilde", "value": "1", "type": "person"}]"#,
    );
    h.get(&format!("{}/persons/?properties={bad}", h.api()))
        .await
        .envelope(400);
}
