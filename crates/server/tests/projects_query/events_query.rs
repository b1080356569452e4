//! PostHog's `EventsQuery` on `POST …/query/` (the events explorer): its
//! columns (`*`, `person`, `person_display_name`, HogQL expressions with
//! labels), conditions, property filters, a person's events, time
//! bounds, aggregation, ordering, pages, deletions applied, and the 400s.

use serde_json::{json, Value};

use crate::common::Harness;

fn events_query(extra: Value) -> Value {
    let mut q = json!({"kind": "EventsQuery", "after": "2024-01-01", "before": "2024-02-01"});
    if let (Value::Object(q), Value::Object(e)) = (&mut q, extra) {
        q.extend(e);
    }
    json!({"query": q})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_explorer() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "$identify", "distinct_id": "a", "timestamp": "2024-01-01T09:00:00Z",
            "properties": {"$set": {"email": "a@example.com", "plan": "pro"}}},
        {"event": "$pageview", "distinct_id": "a", "timestamp": "2024-01-02T10:00:00Z",
            "properties": {"$current_url": "https://x.io/a", "$lib": "web", "$elements_chain": "a:href=\"/x\""}},
        {"event": "$screen", "distinct_id": "b", "timestamp": "2024-01-03T10:00:00Z",
            "properties": {"$screen_name": "Home", "$lib": "ios"}},
        {"event": "$pageview", "distinct_id": "v", "timestamp": "2024-01-04T10:00:00Z",
            "properties": {"$current_url": "https://x.io/v", "$process_person_profile": false}},
        {"event": "$pageview", "distinct_id": "b", "timestamp": "2023-12-01T10:00:00Z",
            "properties": {"$current_url": "https://x.io/old"}},
    ]))
    .await;
    let url = format!("{}/query/", h.api());
    // The explorer's default columns, newest first.
    let cols = json!([
        "*",
        "event",
        "person_display_name -- Person",
        "coalesce(properties.$current_url, properties.$screen_name) -- Url / Screen",
        "properties.$lib",
        "timestamp"
    ]);
    let r = h
        .post(
            &url,
            &events_query(json!({"select": cols, "orderBy": ["timestamp DESC"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["columns"], cols);
    assert_eq!(r.json["types"].as_array().map(Vec::len), Some(6));
    let rows = r.json["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{}", r.text());
    assert_eq!(r.json["hasMore"], false);
    assert_eq!(r.json["limit"], 100);
    let events: Vec<&str> = rows.iter().map(|r| r[1].as_str().expect("event")).collect();
    assert_eq!(events, ["$pageview", "$screen", "$pageview", "$identify"]);
    // `*`: the event as an object.
    let star = &rows[2][0];
    assert_eq!(star["event"], "$pageview");
    assert_eq!(star["distinct_id"], "a");
    assert_eq!(star["properties"]["$current_url"], "https://x.io/a");
    assert_eq!(star["elements_chain"], "a:href=\"/x\"");
    assert_eq!(star["person_mode"], "full");
    assert_eq!(star["team_id"], json!(h.project));
    assert_eq!(star["uuid"].as_str().map(str::len), Some(36));
    assert!(star["timestamp"]
        .as_str()
        .expect("time")
        .starts_with("2024-01-02T10:00:00"));
    assert!(star["created_at"].is_string());
    assert_eq!(rows[0][0]["person_mode"], "propertyless");
    // The display name: a's email; b's distinct id; the visitor's id.
    assert_eq!(rows[2][2]["display_name"], "a@example.com");
    assert_eq!(rows[2][2]["distinct_id"], "a");
    let a_uuid = rows[2][2]["id"].as_str().expect("id").to_string();
    assert_eq!(a_uuid.len(), 36);
    assert_eq!(rows[1][2]["display_name"], "b");
    assert_eq!(rows[0][2]["display_name"], "v");
    assert_eq!(rows[0][2]["id"].as_str().map(str::len), Some(36));
    // The labelled expressions.
    assert_eq!(rows[1][3], "Home");
    assert_eq!(rows[2][3], "https://x.io/a");
    assert_eq!(rows[1][4], "ios");
    // `person`: the person now, or the distinct id alone.
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["person", "event"], "event": "$pageview"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = r.json["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{}", r.text());
    let a = rows
        .iter()
        .find(|r| r[0]["distinct_id"] == "a")
        .expect("a's");
    assert_eq!(a[0]["uuid"], json!(a_uuid));
    assert_eq!(a[0]["properties"]["plan"], "pro");
    let v = rows
        .iter()
        .find(|r| r[0]["distinct_id"] == "v")
        .expect("v's");
    assert_eq!(v[0], json!({"distinct_id": "v"}));
    // Conditions, property filters (a person's property too), a person.
    let count = |r: &crate::common::Resp| r.json["results"].as_array().map_or(0, Vec::len);
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["event"], "where": ["properties.$lib = 'ios'"]})),
        )
        .await;
    assert_eq!(count(&r), 1, "{}", r.text());
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["event"], "properties": [
                {"key": "plan", "value": "pro", "operator": "exact", "type": "person"}]})),
        )
        .await;
    assert_eq!(count(&r), 2, "{}", r.text());
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["event"], "personId": a_uuid})),
        )
        .await;
    assert_eq!(count(&r), 2, "{}", r.text());
    // Time bounds: all of time, and the default of the last 24 hours.
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["event"], "after": "all"})),
        )
        .await;
    assert_eq!(count(&r), 5, "{}", r.text());
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "EventsQuery", "select": ["event"]}}),
        )
        .await;
    assert_eq!(count(&r), 0, "{}", r.text());
    // Aggregation: grouped by the other columns, largest count first.
    let r = h
        .post(
            &url,
            &events_query(
                json!({"select": ["event", "count()"], "where": ["count() > 0"],
                "orderBy": ["count() DESC", "event"]}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json["results"],
        json!([["$pageview", 2], ["$identify", 1], ["$screen", 1]])
    );
    // The explorer's columns with a count: each grouped once (`*` and
    // `event` both read `event`); an aggregate in a subquery is a plain
    // condition.
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["*", "event", "person", "person_display_name", "count()"],
                "where": ["distinct_id IN (SELECT distinct_id FROM events GROUP BY distinct_id HAVING count() > 1)"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // a's two events and b's one in the range (b has one before it):
    // each event is its own group.
    assert_eq!(count(&r), 3, "{}", r.text());
    // An aliased column.
    let r = h
        .post(
            &url,
            &events_query(
                json!({"select": ["event AS e", "count() AS n"], "orderBy": ["n DESC", "e"]}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["columns"], json!(["event AS e", "count() AS n"]));
    assert_eq!(r.json["results"][0], json!(["$pageview", 2]));
    // Pages.
    let r = h
        .post(
            &url,
            &events_query(
                json!({"select": ["event", "timestamp"], "orderBy": ["timestamp ASC"],
                "limit": 2, "offset": 1}),
            ),
        )
        .await;
    assert_eq!(r.json["hasMore"], true, "{}", r.text());
    assert_eq!(r.json["offset"], 1);
    let events: Vec<&str> = r.json["results"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_str().expect("event"))
        .collect();
    assert_eq!(events, ["$pageview", "$screen"]);
    // Pages by time, read from the page's last time on (three events at
    // one instant, across page boundaries): the same rows as the HogQL
    // of the whole range.
    h.capture(json!([
        {"event": "tie", "distinct_id": "t", "timestamp": "2024-01-05T10:00:00Z"},
        {"event": "tie", "distinct_id": "t", "timestamp": "2024-01-05T10:00:00Z"},
        {"event": "tie", "distinct_id": "t", "timestamp": "2024-01-05T10:00:00Z"},
    ]))
    .await;
    for dir in ["DESC", "ASC"] {
        let all = h
            .hogql(&format!(
                "select toString(uuid) from events where timestamp > '2024-01-01' and timestamp < '2024-02-01' \
                 order by timestamp {dir}, toString(uuid)"
            ))
            .await;
        for (limit, offset) in [(1, 0), (1, 1), (2, 1), (3, 2), (10, 0), (2, 6)] {
            let r = h
                .post(
                    &url,
                    &events_query(json!({"select": ["toString(uuid)"],
                        "orderBy": [format!("timestamp {dir}"), "toString(uuid)"],
                        "limit": limit, "offset": offset})),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let want: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(r.json["results"], json!(want), "{dir} {limit} {offset}");
            assert_eq!(
                r.json["hasMore"],
                json!(all.len() > offset + limit),
                "{dir} {limit} {offset}"
            );
        }
    }
    // A window reads every row of the range, and ORDER BY timestamp
    // reads a column named so: neither page is found by the events'
    // times first.
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["event", "count(*) OVER () AS n"],
                "orderBy": ["timestamp DESC"], "limit": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["results"], json!([["tie", 7]]));
    let r = h
        .post(
            &url,
            &events_query(
                json!({"select": ["event", "0 - toUnixTimestamp(timestamp) AS timestamp"],
                "orderBy": ["timestamp DESC"], "limit": 1}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["results"][0][0], "$identify", "{}", r.text());
    // Ordered by the display name, as the explorer sorts its Person
    // column (by time, v's event would come first).
    let r = h
        .post(
            &url,
            &events_query(json!({"select": ["person_display_name -- Person"],
                "orderBy": ["person_display_name -- Person ASC"], "event": "$pageview"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["results"][0][0]["display_name"], "a@example.com");
    // A deleted person's events are gone at once.
    let d = h
        .call(
            "DELETE",
            &format!("{}/persons/{a_uuid}/?delete_events=true", h.api()),
            None,
        )
        .await;
    assert!(d.status.is_success(), "{}", d.text());
    let r = h
        .post(&url, &events_query(json!({"select": ["distinct_id"]})))
        .await;
    assert!(
        r.json["results"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r[0] != "a"),
        "{}",
        r.text()
    );
    // What does not read is a 400 naming it.
    for (q, says) in [
        (
            json!({"select": ["event FROM events UNION SELECT 1"]}),
            "not one expression",
        ),
        (
            json!({"select": ["X''' AS c0, properties AS c1 FROM persons --'"]}),
            "select",
        ),
        (json!({"where": ["event = 'a' AS named"]}), "no name"),
        (json!({"dateRange": {"date_from": "-7d"}}), "dateRange"),
        (json!({"select": "event"}), "select must be a list"),
        (json!({"where": ["1; DROP TABLE events"]}), "where"),
        (json!({"orderBy": ["timestamp DESC, event"]}), "orderBy"),
        (
            json!({"orderBy": ["person_display_name -- Person SIDEWAYS"]}),
            "person_display_name",
        ),
        (json!({"actionId": 3}), "actionId"),
        (json!({"after": "yesterday-ish"}), "after"),
        (json!({"limit": -1}), "limit"),
        (json!({"limit": 50001}), "limit"),
        (json!({"select": ["nosuchcolumn"]}), "nosuchcolumn"),
        (json!({"filterTestAccounts": true}), "filterTestAccounts"),
        (json!({"frobnicate": 1}), "frobnicate"),
    ] {
        let r = h.post(&url, &events_query(q.clone())).await;
        assert!(r.envelope(400).contains(says), "{q}: {}", r.text());
    }
}
