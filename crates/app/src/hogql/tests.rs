use super::*;

fn sql(q: &str) -> String {
    rewrite(q)
        .map(|r| r.statement.to_string())
        .unwrap_or_else(|e| format!("ERR {e}"))
}

/// The rewrite of one expression (aliased, so that no name is added).
fn expr(e: &str) -> String {
    let out = sql(&format!("SELECT {e} AS c FROM events"));
    out.strip_prefix("SELECT ")
        .and_then(|s| s.strip_suffix(" AS c FROM events"))
        .map_or(out.clone(), str::to_string)
}

/// ClickHouse's week modes: an odd one starts weeks on Monday; a mode
/// that is not a literal 0 to 9 is refused.
#[test]
fn week_starts_by_mode() {
    let sunday =
        "CAST(date_trunc('week', timestamp + INTERVAL '1 day') - INTERVAL '1 day' AS DATE)";
    let monday = "CAST(date_trunc('week', timestamp) AS DATE)";
    assert_eq!(expr("toStartOfWeek(timestamp)"), sunday);
    assert_eq!(expr("toStartOfWeek(timestamp, 0)"), sunday);
    assert_eq!(expr("toStartOfWeek(timestamp, 1)"), monday);
    assert_eq!(expr("toStartOfWeek(timestamp, 3)"), monday);
    assert_eq!(expr("toMonday(timestamp)"), monday);
    for bad in [
        "toStartOfWeek(timestamp, 10)",
        "toStartOfWeek(timestamp, -1)",
        "toStartOfWeek(timestamp, 'x')",
        "toStartOfWeek(timestamp, event)",
        "toStartOfWeek(timestamp, 1, 'UTC')",
    ] {
        assert!(expr(bad).starts_with("ERR"), "{bad}: {}", expr(bad));
    }
}

#[test]
fn property_forms() {
    assert_eq!(
        expr("properties.$browser"),
        "json_as_text(properties, '$browser')"
    );
    assert_eq!(expr("properties['$os']"), "json_as_text(properties, '$os')");
    assert_eq!(
        expr("events.properties.a.b"),
        "json_as_text(events.properties, 'a', 'b')"
    );
    assert_eq!(expr("properties"), "properties");
    assert_eq!(expr("e.properties"), "e.properties");
    // Compared with a number, a property is read as one; with a
    // boolean, the boolean is its JSON text; with text, as it is.
    assert_eq!(
        expr("properties.amount > 6"),
        "TRY_CAST(json_as_text(properties, 'amount') AS DOUBLE) > 6"
    );
    assert_eq!(
        expr("-1.5 <= properties.amount"),
        "-1.5 <= TRY_CAST(json_as_text(properties, 'amount') AS DOUBLE)"
    );
    assert_eq!(
        expr("properties.paid = true"),
        "json_as_text(properties, 'paid') = 'true'"
    );
    assert_eq!(
        expr("properties.plan = 'pro'"),
        "json_as_text(properties, 'plan') = 'pro'"
    );
}

#[test]
fn output_columns_keep_the_hogql_names() {
    assert_eq!(
        sql("select properties.$browser, count(), event from events e"),
        "SELECT json_as_text(properties, '$browser') AS \"properties.$browser\", \
         count(*) AS \"count()\", event FROM events e"
    );
    assert_eq!(
        sql("select count() as n from events union all select count() from events"),
        "SELECT count(*) AS n FROM events UNION ALL SELECT count(*) FROM events"
    );
}

#[test]
fn person_properties_go_through_the_distinct_id() {
    let r = rewrite(
        "select person.properties.email as a, e.person.properties['plan'] as b from events e",
    )
    .unwrap();
    assert!(r.uses_person);
    assert_eq!(
        r.statement.to_string(),
        "SELECT elide_person_property(distinct_id, 'email') AS a, \
         elide_person_property(e.distinct_id, 'plan') AS b FROM events e"
    );
    assert!(!rewrite("select event from events").unwrap().uses_person);
    assert!(!rewrite("select event from events").unwrap().uses_person_id);
    for q in [
        "select count(distinct person_id) from events",
        "select e.person_id from events e",
        "select 1 from events where events.person_id = 'x'",
    ] {
        assert!(rewrite(q).unwrap().uses_person_id, "{q}");
    }
    // A property of that name is a property.
    for q in [
        "select properties.person_id from events",
        "select e.properties.person_id from events e",
        "select person.properties.person_id from events",
    ] {
        assert!(!rewrite(q).unwrap().uses_person_id, "{q}");
    }
    assert_eq!(
        expr("properties.person_id"),
        "json_as_text(properties, 'person_id')"
    );
}

#[test]
fn functions() {
    assert_eq!(expr("count()"), "count(*)");
    assert_eq!(
        expr("countIf(event = 'a')"),
        "count(*) FILTER (WHERE event = 'a')"
    );
    assert_eq!(
        expr("sumIf(1, event = 'a')"),
        "sum(1) FILTER (WHERE event = 'a')"
    );
    assert_eq!(expr("uniq(distinct_id)"), "count(DISTINCT distinct_id)");
    assert_eq!(expr("toDate(timestamp)"), "TRY_CAST(timestamp AS DATE)");
    assert_eq!(expr("toInt(x)"), "TRY_CAST(x AS BIGINT)");
    assert_eq!(expr("toFloat(x)"), "TRY_CAST(x AS DOUBLE)");
    assert_eq!(
        expr("toStartOfDay(timestamp)"),
        "date_trunc('day', timestamp)"
    );
    assert_eq!(
        expr("dateDiff('day', timestamp, now())"),
        "elide_date_diff('day', timestamp, now())"
    );
    assert_eq!(
        expr("JSONExtractString(properties, '$browser')"),
        "coalesce(json_get_str(properties, '$browser'), '')"
    );
    // Array indices count from 1, as ClickHouse's.
    assert_eq!(
        expr("JSONExtractString(properties, 'items', 1)"),
        "coalesce(json_get_str(properties, 'items', 0), '')"
    );
    assert_eq!(
        expr("JSONExtractInt(properties, 'items', 0)"),
        "coalesce(json_get_int(properties, 'items', 9223372036854775807), 0)"
    );
    assert_eq!(expr("today()"), "current_date()");
    assert!(expr("toDate()").starts_with("ERR"));
    assert!(expr("countIf()").starts_with("ERR"));
    assert!(expr("dateDiff('day', timestamp)").starts_with("ERR"));
    // DataFusion's own functions are left alone.
    assert_eq!(
        expr("date_trunc('day', timestamp)"),
        "date_trunc('day', timestamp)"
    );
}

#[test]
fn nested_rewrites() {
    assert_eq!(
        expr("toDate(JSONExtractString(properties.$set, 'at'))"),
        "TRY_CAST(coalesce(json_get_str(json_as_text(properties, '$set'), 'at'), '') AS DATE)"
    );
}

#[test]
fn only_queries() {
    for q in [
        "delete from events",
        "insert into events values (1)",
        "copy events to '/tmp/x'",
        "create table t as select 1",
        "drop table events",
        "set datafusion.execution.batch_size = 1",
        "select 1; select 2",
        "",
    ] {
        assert!(rewrite(q).is_err(), "{q}");
    }
    assert!(rewrite("with a as (select 1) select * from a union all select 2").is_ok());
}

#[test]
fn limit_is_seen() {
    assert!(rewrite("select 1 limit 5").unwrap().has_limit);
    assert!(
        !rewrite("select * from (select 1 limit 5)")
            .unwrap()
            .has_limit
    );
}

/// ClickHouse functions PostHog users write, rewritten to DataFusion's.
#[test]
fn clickhouse_functions() {
    for (hogql, want) in [
        (
            "if(event = 'a', 1, 2)",
            "CASE WHEN event = 'a' THEN 1 ELSE 2 END",
        ),
        (
            "multiIf(event = 'a', 1, event = 'b', 2, 3)",
            "CASE WHEN event = 'a' THEN 1 WHEN event = 'b' THEN 2 ELSE 3 END",
        ),
        ("ifNull(distinct_id, 'x')", "coalesce(distinct_id, 'x')"),
        ("match(event, '^sign')", "regexp_like(event, '^sign')"),
        ("like(event, 'a%')", "event LIKE 'a%'"),
        ("notILike(event, 'a%')", "event NOT ILIKE 'a%'"),
        ("startsWith(event, '$')", "starts_with(event, '$')"),
        ("position(event, 'up')", "elide_position(event, 'up')"),
        ("positionUTF8(event, 'up')", "strpos(event, 'up')"),
        ("notEmpty(distinct_id)", "NOT elide_empty(distinct_id)"),
        ("splitByChar(',', event)", "string_to_array(event, ',')"),
        (
            "toYear(timestamp)",
            "CAST(date_part('year', timestamp) AS BIGINT)",
        ),
        (
            "toDayOfWeek(timestamp)",
            "(CAST(date_part('dow', timestamp) AS BIGINT) + 6) % 7 + 1",
        ),
        (
            "dateAdd(day, 7, timestamp)",
            "timestamp + CAST(CAST(CAST(7 AS BIGINT) AS VARCHAR) || ' day' AS INTERVAL)",
        ),
        (
            "dateSub('hours', 2, timestamp)",
            "timestamp - CAST(CAST(CAST(2 AS BIGINT) AS VARCHAR) || ' hour' AS INTERVAL)",
        ),
        ("toTimeZone(timestamp, 'UTC')", "timestamp"),
        (
            "toStartOfInterval(timestamp, INTERVAL 15 minute)",
            "date_bin(INTERVAL 15 MINUTE, timestamp, TIMESTAMP '1970-01-01 00:00:00')",
        ),
        (
            "argMax(event, timestamp)",
            "first_value(event ORDER BY timestamp DESC NULLS LAST) IGNORE NULLS",
        ),
        (
            "groupArray(event)",
            "coalesce(array_agg(event) IGNORE NULLS, [])",
        ),
        (
            "uniqIf(distinct_id, event = 'a')",
            "count(DISTINCT distinct_id) FILTER (WHERE event = 'a')",
        ),
        ("any(event)", "any_value(event)"),
        (
            "uniq(event) FILTER (WHERE distinct_id = 'a')",
            "count(DISTINCT event) FILTER (WHERE distinct_id = 'a')",
        ),
    ] {
        assert_eq!(expr(hogql), want, "{hogql}");
    }
    for bad in [
        "if(event = 'a', 1)",
        "multiIf(event = 'a', 1)",
        "multiIf(event = 'a', 1, 2, 3)",
        "dateAdd(fortnight, 1, timestamp)",
        "dateAdd(event, 1, timestamp)",
        "toTimeZone(timestamp, 'Europe/Paris')",
        "now64(1, 2)",
        // What the rewrite would drop is refused, not ignored.
        "groupArray(event) FILTER (WHERE event = 'a')",
        "argMax(event, timestamp) FILTER (WHERE event = 'a')",
        "countIf(event = 'a') FILTER (WHERE event = 'b')",
        "groupArray(1)(event)",
        "any(event) IGNORE NULLS",
        "toYear(1)(timestamp)",
        "uniq(10)(event)",
        "count(10)(event)",
    ] {
        assert!(expr(bad).starts_with("ERR"), "{bad}: {}", expr(bad));
    }
}

/// Every template names each argument once: nested calls grow the query
/// by a constant each, not twice over (a 240-character query once grew
/// to gigabytes).
#[test]
fn nested_rewrites_grow_linearly() {
    for f in [
        "groupArray",
        "groupUniqArray",
        "argMax",
        "if",
        "multiIf",
        "dateAdd",
    ] {
        let call = |inner: &str| match f {
            "argMax" => format!("{f}({inner}, timestamp)"),
            "if" | "multiIf" => format!("{f}(event = 'a', {inner}, 'b')"),
            "dateAdd" => format!("{f}(day, 1, {inner})"),
            _ => format!("{f}({inner})"),
        };
        let mut e = "event".to_string();
        for _ in 0..30 {
            e = call(&e);
        }
        let out = expr(&e);
        assert!(out.len() < 30 * 120, "{f}: {} bytes", out.len());
    }
}

/// A condition summed or averaged is ClickHouse's 1 or 0: cast, the call
/// keeping its own clauses; a number is left alone.
#[test]
fn conditions_are_summed_as_ones_and_zeros() {
    assert_eq!(expr("sum(event = 'x')"), "sum(CAST(event = 'x' AS BIGINT))");
    assert_eq!(
        expr("avg(startsWith(event, '$'))"),
        "avg(CAST(starts_with(event, '$') AS BIGINT))"
    );
    assert_eq!(
        expr("sum(event IN ('a', 'b')) FILTER (WHERE distinct_id = 'u')"),
        "sum(CAST(event IN ('a', 'b') AS BIGINT)) FILTER (WHERE distinct_id = 'u')"
    );
    assert_eq!(expr("sum(notEmpty(event))").matches("CAST(NOT").count(), 1);
    assert_eq!(expr("sum(1 + 2)"), "sum(1 + 2)");
    assert_eq!(
        expr("sumIf(event = 'x', distinct_id = 'u')"),
        "sum(CAST(event = 'x' AS BIGINT)) FILTER (WHERE distinct_id = 'u')"
    );
    assert!(!expr("avg(toFloat(properties.x))").contains("AS BIGINT"));
}

/// `formatDateTime` with ClickHouse's specifiers, as chrono's for
/// `to_char`; what has no counterpart, or is not a literal, is refused.
#[test]
fn format_date_time_speaks_clickhouse() {
    assert_eq!(
        expr("formatDateTime(timestamp, '%Y-%m-%d %H:%i:%S')"),
        "to_char(timestamp, '%Y-%m-%d %H:%M:%S')"
    );
    assert_eq!(
        expr("formatDateTime(timestamp, '%M %W %c %F %T.%f 100%%', 'UTC')"),
        "to_char(timestamp, '%B %A %m %Y-%m-%d %H:%M:%S.%6f 100%%')"
    );
    for bad in [
        "formatDateTime(timestamp, '%Q')",
        "formatDateTime(timestamp, '%Y%')",
        "formatDateTime(timestamp, event)",
        "formatDateTime(timestamp, '%Y', 'Europe/Paris')",
        "formatDateTime(timestamp)",
    ] {
        assert!(expr(bad).starts_with("ERR"), "{bad}: {}", expr(bad));
    }
}
