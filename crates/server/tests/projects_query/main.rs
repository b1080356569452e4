//! Projects, personal API keys and the query endpoint over HTTP, and the
//! operability routes; the events API in [`events`].

#[path = "../common/mod.rs"]
mod common;
mod events;
mod events_query;
mod hogql;

use common::Harness;
use elide_server::ServerConfig;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_list_get_patch() {
    let h = Harness::new();
    let r = h.get("/api/projects/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["count"], 1);
    assert_eq!(r.json["results"][0]["id"], h.project);
    assert_eq!(r.json["results"][0]["api_token"], h.token.as_str());
    let cur = h.get("/api/projects/@current/").await;
    assert_eq!(cur.json["id"], h.project);
    let one = h.get(&format!("{}/", h.api())).await;
    assert_eq!(one.json, cur.json);
    let env = h.get(&format!("/api/environments/{}/", h.project)).await;
    assert_eq!(env.json, cur.json);

    let r = h
        .call(
            "PATCH",
            &format!("{}/", h.api()),
            Some(&json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["name"], "Renamed");
    for bad in [
        json!({"name": ""}),
        json!({"name": 5}),
        json!({"anonymize_ips": "yes"}),
        json!({"drop_properties": "x"}),
        json!({"drop_properties": [1]}),
        json!([1]),
    ] {
        let r = h.call("PATCH", &format!("{}/", h.api()), Some(&bad)).await;
        r.envelope(400);
    }
    assert_eq!(
        h.get(&format!("{}/", h.api())).await.json["name"],
        "Renamed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_projects() {
    let h = Harness::new();
    let r = h.post("/api/projects/", &json!({"name": "Second"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json["id"].as_i64().expect("id");
    let token = r.json["api_token"].as_str().expect("token").to_string();
    let key = r.json["personal_api_key"]
        .as_str()
        .expect("key")
        .to_string();
    assert!(token.starts_with("phc_"));
    assert!(key.starts_with("phx_"));
    h.post("/api/projects/", &json!({})).await.envelope(400);
    h.post("/api/projects/", &json!({"name": "  "}))
        .await
        .envelope(400);

    // The new project captures and lists its own persons.
    let body = json!({"api_key": token, "batch": [{"event": "$identify", "distinct_id": "np", "properties": {}}]});
    let c = h
        .capture_raw(
            "/batch/",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(c.status, 200);
    let list = h
        .call_as(
            Some(&key),
            "GET",
            &format!("/api/projects/{id}/persons/"),
            None,
        )
        .await;
    assert_eq!(list.json["results"].as_array().map(Vec::len), Some(1));
    // The first key cannot see it.
    h.get(&format!("/api/projects/{id}/persons/"))
        .await
        .envelope(404);

    // Delete: 204; rows invisible, metadata and keys gone.
    let r = h
        .call_as(Some(&key), "DELETE", &format!("/api/projects/{id}/"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let again = h
        .call_as(Some(&key), "GET", &format!("/api/projects/{id}/"), None)
        .await;
    again.envelope(401);
    let c = h
        .capture_raw(
            "/batch/",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await;
    c.envelope(401);
    let n = h.state.app().persons().projects().expect("projects").len();
    assert_eq!(n, 1);
    // Ids are never reused.
    let r = h.post("/api/projects/", &json!({"name": "Third"})).await;
    assert_eq!(r.json["id"], id + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_api_keys() {
    let h = Harness::new();
    let url = format!("{}/personal_api_keys/", h.api());
    let r = h
        .post(&url, &json!({"label": "ci", "scopes": ["person:read"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let secret = r.json["value"].as_str().expect("value").to_string();
    let id = r.json["id"].as_i64().expect("id");
    let list = h.get(&url).await;
    let text = list.text();
    assert!(!text.contains(&secret), "listing shows a secret");
    assert!(text.contains("\"ci\""));
    // The new key reads and may not write.
    let ok = h
        .call_as(Some(&secret), "GET", &format!("{}/persons/", h.api()), None)
        .await;
    assert_eq!(ok.status, 200);
    let no = h
        .call_as(
            Some(&secret),
            "POST",
            &format!("{}/persons/bulk_delete/", h.api()),
            Some(&json!({"distinct_ids": ["x"]})),
        )
        .await;
    assert_eq!(
        no.envelope(403),
        "API key missing required scope 'person:write'"
    );
    // It cannot mint a key with more than it has.
    let esc = h
        .call_as(Some(&secret), "POST", &url, Some(&json!({"scopes": ["*"]})))
        .await;
    assert!(esc.status == 403 || esc.status == 400, "{}", esc.text());
    h.post(&url, &json!({"scopes": ["person:fly"]}))
        .await
        .envelope(400);
    h.post(&url, &json!({})).await.envelope(400);
    // Revoke: 204, then 401.
    let r = h.call("DELETE", &format!("{url}{id}/"), None).await;
    assert_eq!(r.status, 204);
    h.call_as(Some(&secret), "GET", &format!("{}/persons/", h.api()), None)
        .await
        .envelope(401);
    h.call("DELETE", &format!("{url}{id}/"), None)
        .await
        .envelope(404);
}

fn query_body(sql: &str) -> Value {
    json!({"query": {"kind": "HogQLQuery", "query": sql}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hogql_forms_over_events_and_persons() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "$identify", "distinct_id": "u1", "properties": {"$set": {"email": "u1@example.com"}}},
        {"event": "$pageview", "distinct_id": "u1", "properties": {"$browser": "Chrome", "n": 3}, "timestamp": "2024-01-01T10:00:00Z"},
        {"event": "$pageview", "distinct_id": "u1", "properties": {"$browser": "Firefox"}, "timestamp": "2024-01-03T10:00:00Z"},
        {"event": "purchase", "distinct_id": "u2", "properties": {"$browser": "Chrome"}, "timestamp": "2024-01-02T23:59:59Z"},
    ]))
    .await;
    let r = h
        .post(
            &format!("{}/query/", h.api()),
            &query_body("select event, count() from events group by event order by event"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["columns"], json!(["event", "count()"]));
    assert_eq!(r.json["types"][1][0], "count()");
    assert_eq!(r.json["hasMore"], false);
    assert_eq!(
        r.json["results"],
        json!([["$identify", 1], ["$pageview", 2], ["purchase", 1]])
    );
    let rows = h
        .hogql("select properties.$browser, properties['$browser'], count() from events where event != '$identify' group by 1, 2 order by 1")
        .await;
    assert_eq!(
        rows,
        vec![
            json!(["Chrome", "Chrome", 2]),
            json!(["Firefox", "Firefox", 1])
        ]
    );
    let rows = h
        .hogql("select properties.n from events where properties.n is not null")
        .await;
    assert_eq!(rows, vec![json!(["3"])]);
    // As PostHog's (accurateCastOrNull): what is not a number is NULL,
    // the query still runs.
    let rows = h
        .hogql("select sum(toFloat(properties.$browser)), sum(toInt(properties.n)), count(toInt(properties.$browser)) from events")
        .await;
    assert_eq!(rows, vec![json!([null, 3, 0])]);
    let rows = h
        .hogql("select distinct person.properties.email from events where event = '$pageview'")
        .await;
    assert_eq!(rows, vec![json!(["u1@example.com"])]);
    let rows = h
        .hogql("select toDate(timestamp) as d, countIf(event = 'purchase') from events where event != '$identify' group by d order by d")
        .await;
    assert_eq!(
        rows,
        vec![
            json!(["2024-01-01", 0]),
            json!(["2024-01-02", 1]),
            json!(["2024-01-03", 0])
        ]
    );
    let rows = h
        .hogql("select toStartOfDay(timestamp), dateDiff('day', toDateTime('2024-01-01 23:00:00'), timestamp), JSONExtractString(properties, '$browser'), JSONExtractString(properties, 'missing') from events where event = 'purchase'")
        .await;
    assert_eq!(
        rows,
        vec![json!(["2024-01-02T00:00:00.000000Z", 1, "Chrome", ""])]
    );
    // Week, month, quarter and year starts are dates, as ClickHouse's;
    // the week from Sunday, or from Monday in an odd mode (2024-01-02 is
    // a Tuesday).
    let rows = h
        .hogql("select toStartOfWeek(timestamp), toStartOfWeek(timestamp, 1), toStartOfWeek(timestamp, 3), toMonday(timestamp), toStartOfMonth(timestamp), toStartOfQuarter(timestamp), toStartOfYear(timestamp), toStartOfWeek(timestamp) <= timestamp from events where event = 'purchase'")
        .await;
    assert_eq!(
        rows,
        vec![json!([
            "2023-12-31",
            "2024-01-01",
            "2024-01-01",
            "2024-01-01",
            "2024-01-01",
            "2024-01-01",
            "2024-01-01",
            1
        ])]
    );
    // A property compared with a number is read as one (n is 3 on one
    // event, absent elsewhere; $browser is no number anywhere).
    let rows = h
        .hogql("select countIf(properties.n > 2.5), countIf(properties.n = 3), countIf(properties.$browser > 0) from events")
        .await;
    assert_eq!(rows, vec![json!([1, 1, 0])]);
    // Text that is not a date is NULL (toDateOrNull).
    let rows = h.hogql("select toDate('soon'), toDate('2024-01-02')").await;
    assert_eq!(rows, vec![json!([null, "2024-01-02"])]);
    // An integer is seconds since the epoch, as ClickHouse's toDateTime.
    let rows = h.hogql("select toDateTime(1700000000)").await;
    assert_eq!(rows, vec![json!(["2023-11-14T22:13:20.000000Z"])]);
    // By type, not spelling: an expression or a column of numbers is
    // seconds too; text is parsed, NULL when it is no time.
    let rows = h
        .hogql("select toDateTime(1700000000 + 0), toDateTime(toInt('1700000000')), toDateTime(1.5), toDateTime('2024-01-02 03:04:05'), toDateTime('soon'), toDateTime(max(timestamp)) = max(timestamp) from events")
        .await;
    assert_eq!(
        rows,
        vec![json!([
            "2023-11-14T22:13:20.000000Z",
            "2023-11-14T22:13:20.000000Z",
            "1970-01-01T00:00:01.500000Z",
            "2024-01-02T03:04:05.000000Z",
            null,
            1
        ])]
    );
    // Array indices count from 1, as ClickHouse's; 0 is no element.
    let rows = h
        .hogql(r#"select JSONExtractString('{"items": ["a", "b"]}', 'items', 1), JSONExtractString('{"items": ["a", "b"]}', 'items', 0)"#)
        .await;
    assert_eq!(rows, vec![json!(["a", ""])]);
    let rows = h.hogql("select now() > max(timestamp) from events").await;
    assert_eq!(rows, vec![json!([1])]);
    let rows = h
        .hogql("select count() from events e join person_distinct_ids p on p.distinct_id = e.distinct_id")
        .await;
    assert_eq!(rows[0][0], 4);
}

/// HogQL's `person_id` is the person that owns the event's distinct id
/// now (PostHog's person overrides): after a merge, the events the merged
/// id sent before name the person it joined. An anonymous visitor's
/// personless events keep the UUID they carry until the id gets a person.
#[tokio::test]
async fn hogql_person_id_follows_merges() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "$pageview", "distinct_id": "anon", "timestamp": "2024-01-01T10:00:00Z"},
        {"event": "$pageview", "distinct_id": "user", "timestamp": "2024-01-01T11:00:00Z"},
        {"event": "$pageview", "distinct_id": "visitor", "timestamp": "2024-01-01T12:00:00Z",
         "properties": {"$process_person_profile": false}},
    ]))
    .await;
    // Three persons until `anon` identifies as `user`.
    let distinct = "select count(distinct person_id) from events where event = '$pageview'";
    assert_eq!(h.hogql(distinct).await, vec![json!([3])]);
    h.capture(json!([
        {"event": "$identify", "distinct_id": "user", "timestamp": "2024-01-01T13:00:00Z",
         "properties": {"$anon_distinct_id": "anon"}},
    ]))
    .await;
    assert_eq!(h.hogql(distinct).await, vec![json!([2])]);
    // `anon` and `user` name one person now; the personless visitor keeps
    // the UUID its events carry, which is no person's.
    let rows = h
        .hogql("select distinct_id, toString(person_id) from events where event = '$pageview' order by distinct_id")
        .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0][1], rows[1][1], "{rows:?}");
    assert_ne!(rows[0][1], rows[2][1], "{rows:?}");
    let visitor = rows[2][1].as_str().expect("uuid").to_string();
    let persons = h
        .hogql(&format!(
            "select count() from persons where uuid = '{visitor}'"
        ))
        .await;
    assert_eq!(persons, vec![json!([0])]);
    // A property of that name is still a property.
    let rows = h
        .hogql("select count(properties.person_id) from events")
        .await;
    assert_eq!(rows, vec![json!([0])]);
    // A property read beside person_id (this was DataFusion's
    // "ambiguous field name" 400: the view kept each column under an
    // alias of its own name).
    let rows = h
        .hogql("select properties.$browser, person_id from events where event = '$pageview'")
        .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let rows = h
        .hogql("select count() from events e join person_distinct_ids p on p.person_id = e.person_id where e.distinct_id = 'anon' and p.distinct_id = 'user'")
        .await;
    assert_eq!(rows, vec![json!([1])]);
    // The persons tables and a filter on the overridden column still work.
    let user = h
        .hogql("select person_id from person_distinct_ids where distinct_id = 'user'")
        .await;
    let user = user[0][0].as_str().expect("uuid").to_string();
    let rows = h
        .hogql(&format!(
            "select distinct_id from events where person_id = '{user}' and event = '$pageview' order by 1"
        ))
        .await;
    assert_eq!(rows, vec![json!(["anon"]), json!(["user"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_only_their_project_and_never_deleted_rows() {
    let h = Harness::new();
    let (other, other_token, other_key) = h.other_project();
    h.capture(json!([
        {"event": "$identify", "distinct_id": "mine", "properties": {"$set": {"email": "me@example.com"}}},
        {"event": "e", "distinct_id": "gone"},
        {"event": "e", "distinct_id": "gone"},
    ]))
    .await;
    let body = json!({"api_key": other_token, "batch": [
        {"event": "$identify", "distinct_id": "theirs", "properties": {"$set": {"email": "them@example.com"}}},
        {"event": "e", "distinct_id": "mine"},
    ]});
    h.capture_raw(
        "/batch/",
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await;
    // Even a query that asks for another project sees nothing of it.
    let rows = h
        .hogql(&format!(
            "select count() from events where project_id = {other}"
        ))
        .await;
    assert_eq!(rows[0][0], 0);
    let rows = h
        .hogql("select count(), count(distinct project_id) from events")
        .await;
    assert_eq!(rows[0], json!([3, 1]));
    // Every event makes a person: `mine` and `gone`.
    let rows = h.hogql("select count() from persons").await;
    assert_eq!(rows[0][0], 2);
    let rows = h.hogql("select count() from person_distinct_ids").await;
    assert_eq!(rows[0][0], 2);
    let rows = h
        .hogql("select person.properties.email from events where distinct_id = 'mine'")
        .await;
    assert_eq!(rows, vec![json!(["me@example.com"])]);
    // The other project sees its own.
    let r = h
        .call_as(
            Some(&other_key),
            "POST",
            &format!("/api/projects/{other}/query/"),
            Some(&query_body("select count() from events")),
        )
        .await;
    assert_eq!(r.json["results"], json!([[2]]));

    // Deleted rows are gone when the 202 returns.
    let r = h
        .post(
            &format!("{}/persons/bulk_delete/", h.api()),
            &json!({"distinct_ids": ["gone"], "delete_events": true}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(h.event_count("gone").await, 0);
    let rows = h.hogql("select count() from persons").await;
    assert_eq!(rows[0][0], 1);
    let rows = h.hogql("select distinct_id from person_distinct_ids").await;
    assert_eq!(rows, vec![json!(["mine"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_is_read_only_bounded_and_validated() {
    let h = Harness::with_config(ServerConfig {
        query_default_limit: 5,
        query_max_limit: 8,
        ..ServerConfig::default()
    });
    let events: Vec<Value> = (0..12)
        .map(|i| json!({"event": "row", "distinct_id": format!("r{i}")}))
        .collect();
    h.capture(json!(events)).await;
    let url = format!("{}/query/", h.api());
    let r = h
        .post(&url, &query_body("select distinct_id from events"))
        .await;
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(5));
    assert_eq!(r.json["hasMore"], true);
    let r = h
        .post(&url, &query_body("select distinct_id from events limit 3"))
        .await;
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(3));
    assert_eq!(r.json["hasMore"], false);
    let r = h
        .post(
            &url,
            &query_body("select distinct_id from events limit 100"),
        )
        .await;
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(8));
    assert_eq!(r.json["hasMore"], true);

    for sql in [
        "delete from events",
        "insert into events (event) values ('x')",
        "copy events to '/tmp/elide-copy-test'",
        "create table t as select 1",
        "create external table t stored as parquet location '/etc'",
        "drop table events",
        "set datafusion.execution.batch_size = 1",
        "select 1; select 2",
        "select * from nope",
        "select nope from events",
        "select toDate() from events",
        "select dateDiff('fortnight', timestamp, now()) from events",
        "select",
        // Regular expressions that do not compile, and a function given
        // an argument it does not expect (a DataFusion internal error).
        "select regexp_like('x', '(')",
        "select regexp_replace(event, '(', 'y') from events",
        "select count() from events where event ~ '('",
        "select regexp_replace('x', 'a', 'b', 'zz')",
        "select regexp_replace('x', 'a{100000}{100000}', 'y')",
        "select array_resize(make_array(1), -1)",
        // A pattern that changes from row to row and compiles large
        // (minutes of a core per batch before the guard).
        r"select count() from events where regexp_like(event, concat(distinct_id, '\w{1,200}'))",
        r"select count() from events where event ~ concat(distinct_id, '(a|\w){1,200}')",
    ] {
        let r = h.post(&url, &query_body(sql)).await;
        assert_eq!(r.status.as_u16(), 400, "{sql}: {}", r.text());
        r.envelope(400);
    }
    for body in [
        json!({}),
        json!({"query": "select 1"}),
        json!({"query": {"kind": "EventsQuery", "select": [5]}}),
        json!({"query": {"kind": "EventsQuery", "select": ["event FROM events UNION SELECT 1"]}}),
        json!({"query": {"kind": "HogQLQuery"}}),
        json!({"query": {"kind": "HogQLQuery", "query": 5}}),
    ] {
        h.post(&url, &body).await.envelope(400);
    }
    // Nothing was written.
    let rows = h.hogql("select count() from events").await;
    assert_eq!(rows[0][0], 12);
    assert!(!std::path::Path::new("/tmp/elide-copy-test").exists());
}

/// Expressions may nest `MAX_EXPR_DEPTH` (1000) deep and run; deeper is
/// a 400, however deep (a chain of ~2,000 once aborted the server), and
/// the server answers after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_expressions_are_refused_not_a_crash() {
    let h = Harness::new();
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"event": format!("e{i}"), "distinct_id": "d"}))
        .collect();
    h.capture(json!(events)).await;
    let url = format!("{}/query/", h.api());
    // `a OR b OR …` of n comparisons nests n + 1 levels: n - 1 ORs, the
    // first comparison, its operands. `length(event) + 1 … > 0` with n
    // additions nests n + 3: the `>`, n additions, `length`, `event`.
    let ors = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("event = 'e{i}'")).collect();
        format!("select count() from events where {}", terms.join(" or "))
    };
    let rows = h.hogql(&ors(998)).await;
    assert_eq!(rows[0][0], 3);
    let sums = |n: usize| {
        format!(
            "select count() from events where length(event){} > 0",
            " + 1".repeat(n)
        )
    };
    let rows = h.hogql(&sums(997)).await;
    assert_eq!(rows[0][0], 3);
    let unions = format!(
        "select count() from (select 1 as x{})",
        " union all select 1".repeat(900)
    );
    assert_eq!(h.hogql(&unions).await[0][0], 901);
    for sql in [
        ors(1000),
        sums(1000),
        sums(24_000),
        // Refused the same when the parse fails after building the chain.
        format!("select 1{} +", " + 1".repeat(24_000)),
        format!("select {}1{}", "(".repeat(60), ")".repeat(60)),
        // Set operations chain as expressions do (6 600 fit the size limit).
        format!("select 1{}", " union select 1".repeat(6_600)),
    ] {
        let r = h.post(&url, &query_body(&sql)).await;
        let detail = r.envelope(400);
        assert!(
            detail.contains("deep") || detail.contains("syntax error"),
            "{detail}"
        );
    }
    let rows = h.hogql("select count() from events").await;
    assert_eq!(rows[0][0], 3);
}

/// A body that cannot be read (gzip that is not gzip) is a 400, not the
/// 413 of a body past the size limit.
#[tokio::test]
async fn an_unreadable_body_is_a_400() {
    let h = Harness::new();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("{}/query/", h.api()))
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(axum::body::Body::from("this is not gzip"))
        .expect("request");
    let r = h.send(req).await;
    assert!(r.envelope(400).contains("unreadable"), "{}", r.text());
}

/// A body in an encoding the server does not read is a 415 with the
/// envelope naming it (the middleware's own answer has no body); a
/// handler's own error with a body passes untouched.
#[tokio::test]
async fn an_unsupported_encoding_is_a_415_with_the_envelope() {
    let h = Harness::new();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("{}/query/", h.api()))
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(axum::body::Body::from("{}"))
        .expect("request");
    let r = h.send(req).await;
    let detail = r.envelope(415);
    assert!(detail.contains("\"br\""), "{detail}");
    assert_eq!(r.json["code"], "unsupported_media_type");
    assert_eq!(r.headers["content-type"], "application/json");
    // The decompression's hint of what it reads is kept.
    assert!(r.headers.contains_key("accept-encoding"), "{:?}", r.headers);
    // The body's length is the envelope's.
    if let Some(len) = r.headers.get("content-length") {
        assert_eq!(len.to_str().ok(), Some(r.body.len().to_string().as_str()));
    }
    // A handler's own 4xx with its envelope is not rewritten.
    let r = h
        .post(
            &format!("{}/query/", h.api()),
            &serde_json::json!({"query": {"kind": "Nope"}}),
        )
        .await;
    assert!(r.envelope(400).contains("Nope"), "{}", r.text());
}

/// A request past the request timeout (here a body that never ends) is a
/// 408 with the envelope, not the middleware's empty answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_request_timeout_is_a_408_with_the_envelope() {
    let h = Harness::with_config(ServerConfig {
        request_timeout: std::time::Duration::from_millis(200),
        ..ServerConfig::default()
    });
    let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("{}/query/", h.api()))
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(never))
        .expect("request");
    let r = h.send(req).await;
    let detail = r.envelope(408);
    assert!(detail.contains("0.2 s"), "{detail}");
    assert_eq!(r.json["code"], "request_timeout");
    assert_eq!(r.json["type"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_time_is_504() {
    // One query thread: a query that went on after its 504 would hold it.
    let h = Harness::with_config(ServerConfig {
        query_timeout: std::time::Duration::from_millis(200),
        query_threads: 1,
        ..ServerConfig::default()
    });
    let sql = "select sum(a.value * b.value) from generate_series(1, 1000000) a, generate_series(1, 1000000) b";
    let r = h
        .post(&format!("{}/query/", h.api()), &query_body(sql))
        .await;
    let d = r.envelope(504);
    assert!(d.contains("cancelled"), "{d}");
    // The work stopped too: the thread answers again (the cross join,
    // left running, would hold it for minutes; a few tries absorb a slow
    // machine).
    let mut answered = false;
    for _ in 0..20 {
        let r = h
            .post(&format!("{}/query/", h.api()), &query_body("select 1"))
            .await;
        if r.status == 200 {
            answered = true;
            break;
        }
        r.envelope(504);
    }
    assert!(answered, "the cancelled query still holds the query thread");
    // An error of the query itself stays a 400, whatever the deadline.
    h.post(
        &format!("{}/query/", h.api()),
        &query_body("select nope from events"),
    )
    .await
    .envelope(400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics() {
    let h = Harness::new();
    let r = h.call_as(None, "GET", "/_health", None).await;
    assert_eq!(r.status, 200);
    let r = h.call_as(None, "GET", "/_ready", None).await;
    assert_eq!(r.status, 200);
    h.event("m", "m1", json!({})).await;
    let r = h.call_as(None, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    let t = r.text();
    for name in [
        "elide_deletion_requests_pending",
        "elide_deletion_oldest_pending_age_seconds",
        "elide_bytes_awaiting_purge",
    ] {
        assert!(t.contains(name), "{name} missing from /metrics");
    }
    // Unknown routes and methods: the envelope, never an empty body.
    h.get("/api/nope/").await.envelope(404);
    let r = h.call_as(None, "DELETE", "/_health", None).await;
    r.envelope(405);
    // A method that is not HTTP's is counted as `other`: any token is a
    // method, and each label value would be a series kept for ever.
    h.call_as(None, "XQ7ZKMETHOD", "/_health", None).await;
    let t = h.call_as(None, "GET", "/metrics", None).await.text();
    assert!(!t.contains("XQ7ZKMETHOD"), "{t}");
    assert!(t.contains("method=\"other\""), "{t}");
    // Request ids are echoed.
    let r = h
        .send(
            axum::http::Request::builder()
                .uri("/_health")
                .header("x-request-id", "abc-123")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
    let r = h.call_as(None, "GET", "/_health", None).await;
    assert!(r.headers.contains_key("x-request-id"));
}

/// After a flush whose commit has an unknown outcome the store refuses
/// writes until it is reopened: `/_ready` says 503 (a load balancer takes
/// the node out), capture answers 503 with the envelope, `/_health` stays
/// 200 (the process answers), and reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_store_refuses_writes() {
    // The directory fsync of `manifest/` fails while armed: the
    // commit's manifest lands, then the commit reports an error.
    let fs = elide_store::failing_fs::FailingSync::dirs(|p| p.ends_with("manifest"));
    let h = Harness::with_app_config(ServerConfig::default(), |c| {
        c.store.fs = fs.clone();
        // The test flushes itself, with the fault armed.
        c.store.background_flush = false;
    });
    h.event("m", "m1", json!({})).await;
    assert_eq!(h.call_as(None, "GET", "/_ready", None).await.status, 200);
    fs.arm(true);
    let store = h.state.app().store().clone();
    let e = tokio::task::spawn_blocking(move || store.flush())
        .await
        .expect("flush task")
        .expect_err("the flush's commit fails");
    assert!(e.to_string().contains("directory fsync failed"), "{e}");
    fs.arm(false);

    h.call_as(None, "GET", "/_ready", None).await.envelope(503);
    assert_eq!(h.call_as(None, "GET", "/_health", None).await.status, 200);
    h.post_batch(&json!({"api_key": h.token, "batch": [{"event": "m", "distinct_id": "m2"}]}))
        .await
        .envelope(503);
    assert_eq!(h.event_count("m1").await, 1);
}

/// A result is held outside the query's memory pool (and then copied to
/// JSON): one past a quarter of the pool (at most 256 MiB) is a 400, not
/// the server's memory. A narrower one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_past_its_budget_is_a_400() {
    let h = Harness::with_config(ServerConfig {
        query_memory_bytes: 64 << 20,
        ..ServerConfig::default()
    });
    let wide = "select repeat('x', 10000) from generate_series(1, 5000) limit 5000";
    let r = h
        .post(&format!("{}/query/", h.api()), &query_body(wide))
        .await;
    let d = r.envelope(400);
    assert!(d.contains("the result holds more than 16 MiB"), "{d}");
    let narrow = "select repeat('x', 10) from generate_series(1, 5000) limit 5000";
    let r = h
        .post(&format!("{}/query/", h.api()), &query_body(narrow))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(5000));
}
