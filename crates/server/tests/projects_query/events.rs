//! PostHog's events API: the list, one event, and the values of an event
//! property.

use serde_json::{json, Value};

use crate::common::{self, Harness};

/// Every event of an events list, following `next` from `url` (a path
/// with its query) to the last page.
async fn follow(h: &Harness, url: String) -> Vec<Value> {
    let mut out = Vec::new();
    let mut at = url.clone();
    for _ in 0..100 {
        let r = h.get(&at).await;
        assert_eq!(r.status, 200, "{at}: {}", r.text());
        out.extend(
            r.json["results"]
                .as_array()
                .expect("results")
                .iter()
                .cloned(),
        );
        match r.json["next"].as_str() {
            Some(next) => {
                at = next
                    .split_once("/api/")
                    .map(|(_, p)| format!("/api/{p}"))
                    .expect("a path")
            }
            None => return out,
        }
    }
    panic!("more than 100 pages from {url}")
}

/// PostHog's events list and one event: filters, both orders, pages that
/// neither skip nor repeat events of the same time, persons, deletions
/// applied, and the 400s and 404s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_and_one_event() {
    let h = Harness::new();
    let mut batch = Vec::new();
    // Five events at one time, then one a minute later each.
    // Stored in this order; their UUIDs sort the other way.
    for i in 0..5 {
        batch.push(
            json!({"event": "tick", "distinct_id": "a", "timestamp": "2024-01-01T10:00:00Z",
            "uuid": format!("00000000-0000-4000-8000-00000000000{}", 4 - i),
            "properties": {"i": i, "$elements_chain": "a:href=\"/x\""}}),
        );
    }
    for i in 5..8 {
        batch.push(
            json!({"event": if i == 7 { "tock" } else { "tick" }, "distinct_id": "b",
            "timestamp": format!("2024-01-01T10:0{}:00Z", i - 4), "properties": {"i": i}}),
        );
    }
    batch.push(json!({"event": "$identify", "distinct_id": "a",
        "timestamp": "2024-01-01T09:00:00Z", "properties": {"$set": {"email": "a@example.com"}}}));
    h.capture(json!(batch)).await;
    let list = |q: String| {
        let h = &h;
        async move {
            let r = h.get(&format!("{}/events/{q}", h.api())).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r.json
        }
    };
    let is = |page: &Value| -> Vec<i64> {
        page["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|e| e["properties"]["i"].as_i64().unwrap_or(-1))
            .collect()
    };
    // Newest first by default; the shape of an event.
    let all = list("?event=tick".into()).await;
    assert_eq!(all["next"], Value::Null);
    let got = is(&all);
    assert_eq!(got[..2], [6, 5]);
    assert_eq!(got.len(), 7);
    let e = &all["results"][6];
    assert_eq!(e["event"], "tick");
    assert_eq!(e["distinct_id"], "a");
    assert_eq!(e["timestamp"], "2024-01-01T10:00:00+00:00");
    assert_eq!(e["person"], Value::Null);
    assert_eq!(e["elements"], json!([]));
    assert_eq!(e["elements_chain"], "a:href=\"/x\"");
    // Pages of two, following `next`: every event once, in order, also
    // across the five of the same time.
    let seen: Vec<i64> = follow(&h, format!("{}/events/?event=tick&limit=2", h.api()))
        .await
        .iter()
        .map(|e| e["properties"]["i"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(seen, got);
    // Oldest first, the same way.
    let asc = list("?orderBy=%5B%22timestamp%22%5D&limit=3".into()).await;
    assert_eq!(is(&asc)[0], -1);
    assert!(asc["next"].is_string());
    // Filters: distinct id, person, time window, properties.
    assert_eq!(is(&list("?distinct_id=b".into()).await), vec![7, 6, 5]);
    let person = h.person("a").await.expect("person a");
    let by_person = list(format!(
        "?person_id={}&include_person=true",
        person["uuid"].as_str().expect("uuid")
    ))
    .await;
    assert_eq!(by_person["results"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        by_person["results"][0]["person"],
        json!({"is_identified": false, "distinct_ids": ["a"], "properties": {"email": "a@example.com"}})
    );
    assert_eq!(
        is(&list("?after=2024-01-01T10:01:00Z&before=2024-01-01T10:03:00Z".into()).await),
        vec![6]
    );
    let props = common::urlencode(r#"[{"key": "i", "operator": "gte", "value": 6}]"#);
    assert_eq!(is(&list(format!("?properties={props}")).await), vec![7, 6]);
    let props =
        common::urlencode(r#"[{"key": "email", "value": "a@example.com", "type": "person"}]"#);
    assert_eq!(
        list(format!("?properties={props}&event=tick")).await["results"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    // PostHog's filter groups: an OR of an event filter and a person
    // filter (b's events with i >= 6, and a's), as its filter editor
    // writes them.
    let props = common::urlencode(
        r#"{"type": "AND", "values": [{"type": "OR", "values": [
            {"type": "AND", "values": [{"key": "i", "operator": "gte", "value": 6}]},
            {"type": "AND", "values": [{"key": "email", "value": "a@example.com", "type": "person"}]}]}]}"#,
    );
    let mut either = is(&list(format!("?properties={props}&event=tick")).await);
    either.sort_unstable();
    assert_eq!(either, vec![0, 1, 2, 3, 4, 6]);
    assert_eq!(list("?person_id=999999".into()).await["results"], json!([]));
    // One event by UUID; deleted events are gone from both.
    let id = all["results"][0]["id"].as_str().expect("id").to_string();
    let one = h.get(&format!("{}/events/{id}/", h.api())).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json, all["results"][0]);
    let r = h
        .post(
            &format!("{}/events/delete/", h.api()),
            &json!({"event": "tock", "distinct_ids": ["b"]}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(is(&list("?distinct_id=b".into()).await), vec![6, 5]);
    let tock = list("?event=tock&before=2030-01-01".into()).await;
    assert_eq!(tock["results"], json!([]));
    // Bad input: 400 naming the parameter; an unknown event: 404.
    for (q, attr) in [
        ("?limit=abc", "limit"),
        ("?limit=0", "limit"),
        ("?offset=50001", "offset"),
        ("?before=soon", "before"),
        ("?orderBy=timestamp", "orderBy"),
        ("?properties=%5Bnot", "properties"),
        ("?person_id=nobody", "person_id"),
        ("?action_id=1", "action_id"),
        (
            "?before_event_id=00000000-0000-0000-0000-000000000001",
            "before_event_id",
        ),
        ("?before=2024-01-01&before_event_id=x", "before_event_id"),
        ("?cursor_seq=3", "cursor_seq"),
    ] {
        let r = h.get(&format!("{}/events/{q}", h.api())).await;
        r.envelope(400);
        assert_eq!(r.json["attr"], attr, "{q}");
    }
    assert_eq!(
        h.get(&format!("{}/events/not-a-uuid/", h.api()))
            .await
            .envelope(400),
        "Invalid UUID"
    );
    let missing = "00000000-0000-0000-0000-000000000001";
    assert_eq!(
        h.get(&format!("{}/events/{missing}/", h.api()))
            .await
            .envelope(404),
        format!("No events exist for event UUID {missing}")
    );
    // An empty `event` is no filter, as in PostHog.
    assert_eq!(
        list("?event=".into()).await["results"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
    // A UUID sent twice (an SDK's retry) is two events: paging one at a
    // time lists each once, the last stored first; one event by UUID is
    // that one.
    let twin = "22222222-3333-4444-8555-666666666666";
    for v in [1, 2] {
        h.capture(json!([{"event": "dup", "distinct_id": "c", "uuid": twin,
            "timestamp": "2024-01-02T00:00:00Z", "properties": {"v": v}}]))
            .await;
    }
    let vs: Vec<i64> = follow(&h, format!("{}/events/?event=dup&limit=1", h.api()))
        .await
        .iter()
        .map(|e| e["properties"]["v"].as_i64().expect("v"))
        .collect();
    assert_eq!(vs, vec![2, 1]);
    // Oldest first under a `before` cursor of its own: the cursor's seq
    // belongs to `after` (the bound the pages move toward), so paging
    // never brings back the event `before_event_id` left out (the first
    // stored at 10:00, whose UUID sorts last there).
    let ticks = list("?event=tick&orderBy=%5B%22timestamp%22%5D".into()).await;
    let fifth = ticks["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|e| e["properties"]["i"] == 0)
        .expect("i 0")
        .clone();
    let fifth = &fifth;
    let bound = format!(
        "?event=tick&orderBy=%5B%22timestamp%22%5D&before={}&before_event_id={}",
        common::urlencode(fifth["timestamp"].as_str().expect("time")),
        fifth["id"].as_str().expect("id")
    );
    let whole: Vec<Value> = list(bound.clone()).await["results"]
        .as_array()
        .expect("results")
        .clone();
    let paged = follow(&h, format!("{}/events/{bound}&limit=1", h.api())).await;
    assert_eq!(paged, whole);
    assert!(!whole.iter().any(|e| e["id"] == fifth["id"]));
    let one = h.get(&format!("{}/events/{twin}/", h.api())).await;
    assert_eq!(one.json["properties"]["v"], 2, "{}", one.text());
    // Another project's events stay its own: its person's id names no
    // person here, its event's UUID no event, with this project's key.
    let (_, other_token, other_key) = h.other_project();
    let r = h
        .post_batch(&json!({"api_key": other_token, "batch": [
            {"event": "theirs", "distinct_id": "a", "timestamp": "2024-01-01T10:00:00Z",
             "properties": {"$set": {"email": "them@example.com"}}}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let theirs = h
        .call_as(
            Some(&other_key),
            "GET",
            "/api/projects/@current/events/?include_person=true",
            None,
        )
        .await;
    assert_eq!(theirs.status, 200, "{}", theirs.text());
    let their_event = theirs.json["results"][0]["id"]
        .as_str()
        .expect("their event")
        .to_string();
    let their_person = h
        .call_as(
            Some(&other_key),
            "GET",
            "/api/projects/@current/persons/?distinct_id=a",
            None,
        )
        .await;
    let their_uuid = their_person.json["results"][0]["uuid"]
        .as_str()
        .expect("their person")
        .to_string();
    assert_ne!(Some(their_uuid.as_str()), person["uuid"].as_str());
    assert_eq!(
        list(format!("?person_id={their_uuid}")).await["results"],
        json!([])
    );
    assert_eq!(list("?event=theirs".into()).await["results"], json!([]));
    h.get(&format!("{}/events/{their_event}/", h.api()))
        .await
        .envelope(404);
}

/// `events/values/`: the values an event property takes on the last 7
/// days' events, most frequent first, lists flattened, booleans as text,
/// a JSON null left out;
/// a search, event names; `custom_event`; the 400s; another project's
/// values stay its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_property_values() {
    let h = Harness::new();
    let mut batch = Vec::new();
    for (i, plan) in ["pro", "pro", "pro", "free", "free", "Team Pro"]
        .iter()
        .enumerate()
    {
        batch.push(
            json!({"event": if i < 5 { "signed up" } else { "upgraded" },
            "distinct_id": format!("u{i}"), "properties": {"plan": plan}}),
        );
    }
    for v in [
        json!(3),
        json!(true),
        json!(["a", ["b"]]),
        json!({"y": 1}),
        json!(null),
    ] {
        batch.push(json!({"event": "odd", "distinct_id": "o", "properties": {"v": v}}));
    }
    // Older than 7 days: not read.
    batch.push(json!({"event": "signed up", "distinct_id": "old",
        "timestamp": "2024-01-01T00:00:00Z", "properties": {"plan": "legacy"}}));
    batch.push(json!({"event": "$pageview", "distinct_id": "o"}));
    h.capture(json!(batch)).await;
    let values = |q: &str| {
        let h = &h;
        let url = format!("{}/events/values/?{q}", h.api());
        async move {
            let r = h.get(&url).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text());
            r.json
        }
    };
    let names = |v: &Value| -> Vec<Value> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|x| x["name"].clone())
            .collect()
    };
    assert_eq!(
        names(&values("key=plan").await),
        [json!("pro"), json!("free"), json!("Team Pro")]
    );
    // A search: case-insensitive text, not a pattern; the shortest first.
    assert_eq!(
        names(&values("key=plan&value=PRO").await),
        [json!("pro"), json!("Team Pro")]
    );
    assert_eq!(
        names(&values("key=plan&value=%25").await),
        Vec::<Value>::new()
    );
    assert_eq!(
        names(&values("key=plan&event_name=upgraded&event_name=nothing").await),
        [json!("Team Pro")]
    );
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|x| x.to_string());
        v
    };
    assert_eq!(
        sorted(names(&values("key=v").await)),
        sorted(vec![
            json!("a"),
            json!("b"),
            json!("true"),
            json!("{\"y\":1}"),
            json!(3),
        ])
    );
    assert_eq!(names(&values("key=nothing").await), Vec::<Value>::new());
    assert_eq!(
        sorted(names(&values("key=custom_event").await)),
        [json!("odd"), json!("signed up"), json!("upgraded")]
    );
    for q in ["", "key=", &format!("key={}", "k".repeat(401))] {
        h.get(&format!("{}/events/values/?{q}", h.api()))
            .await
            .envelope(400);
    }
    // Another project's values are its own.
    let (_, other_token, other_key) = h.other_project();
    let r = h
        .post_batch(&json!({"api_key": other_token, "batch": [
            {"event": "theirs", "distinct_id": "t", "properties": {"plan": "secret"}}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!names(&values("key=plan").await).contains(&json!("secret")));
    let theirs = h
        .call_as(
            Some(&other_key),
            "GET",
            "/api/projects/@current/events/values/?key=plan",
            None,
        )
        .await;
    assert_eq!(names(&theirs.json), [json!("secret")]);
}

/// PostHog's event definitions: the names of the project's events with
/// their first and last times and 30-day volume, searched, filtered by
/// kind, ordered and paged; one by id; a name whose events are all
/// deleted is gone; the 400s and 404s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_definitions_are_the_events_names() {
    let h = Harness::new();
    let now = chrono::Utc::now();
    let at = |days: i64| (now - chrono::Duration::days(days)).to_rfc3339();
    h.capture(json!([
        {"event": "signup", "distinct_id": "a", "timestamp": at(40)},
        {"event": "signup", "distinct_id": "b", "timestamp": at(2)},
        {"event": "$pageview", "distinct_id": "a", "timestamp": at(1)},
        {"event": "$pageview", "distinct_id": "a", "timestamp": at(1)},
        {"event": "$pageview", "distinct_id": "b", "timestamp": at(1)},
        {"event": "Purchase", "distinct_id": "gone", "timestamp": at(3)},
    ]))
    .await;
    let list = |q: &str| {
        let h = &h;
        let q = q.to_string();
        async move {
            let r = h.get(&format!("{}/event_definitions/{q}", h.api())).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r.json
        }
    };
    let names = |page: &Value| -> Vec<String> {
        page["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|d| d["name"].as_str().expect("name").to_string())
            .collect()
    };
    // PostHog's default order: the last day seen, newest first.
    assert_eq!(names(&list("").await), ["$pageview", "signup", "Purchase"]);
    let all = list("?ordering=name").await;
    assert_eq!(all["count"], 3);
    assert_eq!(names(&all), ["$pageview", "Purchase", "signup"]);
    let signup = &all["results"][2];
    assert_eq!(signup["volume_30_day"], 1, "the 40-day-old one is older");
    assert!(
        signup["created_at"].as_str().expect("created")
            < signup["last_seen_at"].as_str().expect("last")
    );
    assert_eq!(all["results"][0]["volume_30_day"], 3);
    assert_eq!(all["next"], Value::Null);
    // Searched (any case, every word), by kind, by names, ordered
    // (unknown keys dropped), paged.
    assert_eq!(names(&list("?search=UP").await), ["signup"]);
    assert_eq!(names(&list("?search=sign%20UP").await), ["signup"]);
    assert!(names(&list("?search=sign%20xyz").await).is_empty());
    assert!(names(&list("?search=it%27s").await).is_empty());
    assert_eq!(
        names(&list("?names=%5B%22signup%22%2C%22nope%22%5D").await),
        ["signup"]
    );
    assert_eq!(
        names(&list("?names=Purchase,signup&ordering=name").await),
        ["Purchase", "signup"]
    );
    assert_eq!(
        names(&list("?ordering=created_at").await),
        ["signup", "Purchase", "$pageview"]
    );
    assert_eq!(
        names(&list("?ordering=event").await),
        names(&list("").await),
        "an unknown key is dropped"
    );
    assert_eq!(
        names(&list("?ordering=-volume_30_day,name").await),
        ["$pageview", "Purchase", "signup"],
        "1 and 1: by name"
    );
    assert!(names(&list("?event_type=action_event").await).is_empty());
    assert_eq!(list("?event_type=all").await["count"], 3);
    assert_eq!(
        names(&list("?event_type=event_custom").await),
        ["signup", "Purchase"]
    );
    assert_eq!(
        names(&list("?event_type=event_posthog").await),
        ["$pageview"]
    );
    assert_eq!(
        names(&list("?ordering=-last_seen_at").await),
        ["$pageview", "signup", "Purchase"]
    );
    let page = list("?limit=2&offset=1&ordering=name").await;
    assert_eq!(names(&page), ["Purchase", "signup"]);
    assert!(page["previous"]
        .as_str()
        .expect("previous")
        .contains("offset=0"));
    let page = list("?limit=2").await;
    assert!(page["next"].as_str().expect("next").contains("offset=2"));
    // One by id; an id of no name is a 404.
    let id = all["results"][1]["id"].as_str().expect("id").to_string();
    let one = h.get(&format!("{}/event_definitions/{id}/", h.api())).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json["name"], "Purchase");
    assert_eq!(one.json["id"], id.as_str());
    let r = h
        .get(&format!(
            "{}/event_definitions/{}/",
            h.api(),
            uuid::Uuid::new_v4()
        ))
        .await;
    r.envelope(404);
    let r = h.get(&format!("{}/event_definitions/nope/", h.api())).await;
    assert!(r.envelope(400).contains("UUID"));
    for (q, says) in [("?limit=0", "limit"), ("?event_type=group", "event_type")] {
        let r = h.get(&format!("{}/event_definitions/{q}", h.api())).await;
        assert!(r.envelope(400).contains(says), "{q}");
    }
    // The only Purchase was gone's: deleted with its events, the name is
    // gone at once (and its id finds nothing).
    let uuid = h.person("gone").await.expect("gone")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    let d = h
        .call(
            "DELETE",
            &format!("{}/persons/{uuid}/?delete_events=true", h.api()),
            None,
        )
        .await;
    assert!(d.status.is_success(), "{}", d.text());
    assert_eq!(
        names(&list("?ordering=name").await),
        ["$pageview", "signup"]
    );
    let r = h.get(&format!("{}/event_definitions/{id}/", h.api())).await;
    r.envelope(404);
}

/// PostHog's property definitions: the property names of the project's
/// events (their JSON types, those of asked events first, filters) and
/// of its persons; a property only a deleted person's events had is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_definitions_are_the_properties_names() {
    let h = Harness::new();
    h.capture(json!([
        {"event": "$pageview", "distinct_id": "a", "timestamp": "2024-01-01T10:00:00Z",
         "properties": {"$browser": "Chrome", "mixed": 1, "obj": {"x": 1}, "$set": {"email": "a@x.io"}}},
        {"event": "purchase", "distinct_id": "a", "timestamp": "2024-01-01T11:00:00Z",
         "properties": {"amount": 3.5, "flag": true, "mixed": "x"}},
        {"event": "purchase", "distinct_id": "b", "timestamp": "2024-01-01T12:00:00Z",
         "properties": {"amount": 7, "flag": false, "$set": {"plan": "pro"}}},
        {"event": "secret", "distinct_id": "gone", "timestamp": "2024-01-01T13:00:00Z",
         "properties": {"only_gone": 1}},
    ]))
    .await;
    let list = |q: &str| {
        let h = &h;
        let q = q.to_string();
        async move {
            let r = h
                .get(&format!("{}/property_definitions/{q}", h.api()))
                .await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r.json
        }
    };
    let rows = |page: &Value| -> Vec<(String, Value, Value)> {
        page["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().expect("name").to_string(),
                    d["property_type"].clone(),
                    d["is_seen_on_filtered_events"].clone(),
                )
            })
            .collect()
    };
    let all = list("").await;
    assert_eq!(
        rows(&all),
        vec![
            ("$browser".into(), json!("String"), Value::Null),
            ("$ip".into(), json!("String"), Value::Null),
            ("amount".into(), json!("Numeric"), Value::Null),
            ("flag".into(), json!("Boolean"), Value::Null),
            ("mixed".into(), json!("String"), Value::Null),
            ("obj".into(), Value::Null, Value::Null),
            ("only_gone".into(), json!("Numeric"), Value::Null),
        ]
    );
    assert_eq!(all["count"], 7);
    assert_eq!(all["results"][2]["is_numerical"], true);
    assert_eq!(all["results"][2]["type"], "event");
    let names = |page: &Value| -> Vec<String> { rows(page).into_iter().map(|r| r.0).collect() };
    // Those of purchase first ($ip: the server's, on every event); only
    // those; numeric; searched; chosen.
    let ev = "event_names=%5B%22purchase%22%5D";
    let seen = list(&format!("?{ev}")).await;
    assert_eq!(
        rows(&seen)[..4],
        [
            ("$ip".into(), json!("String"), json!(true)),
            ("amount".into(), json!("Numeric"), json!(true)),
            ("flag".into(), json!("Boolean"), json!(true)),
            ("mixed".into(), json!("String"), json!(true)),
        ]
    );
    assert_eq!(rows(&seen)[4].2, json!(false));
    assert_eq!(
        names(&list(&format!("?{ev}&filter_by_event_names=true")).await),
        ["$ip", "amount", "flag", "mixed"]
    );
    assert_eq!(
        names(&list("?is_numerical=true").await),
        ["amount", "only_gone"]
    );
    assert_eq!(
        names(&list("?is_numerical=false").await),
        ["$browser", "$ip", "flag", "mixed", "obj"]
    );
    assert_eq!(
        names(&list("?properties=%5B%22flag%22%2C%22amount%22%5D").await),
        ["amount", "flag"]
    );
    assert_eq!(names(&list("?search=i%20x").await), ["mixed"]);
    assert!(names(&list("?is_feature_flag=true").await).is_empty());
    assert_eq!(names(&list("?search=BRO").await), ["$browser"]);
    assert_eq!(names(&list("?properties=flag,obj").await), ["flag", "obj"]);
    assert_eq!(
        names(&list("?excluded_properties=%5B%22obj%22%2C%22mixed%22%5D").await),
        ["$browser", "$ip", "amount", "flag", "only_gone"]
    );
    let page = list("?limit=2&offset=2").await;
    assert_eq!(names(&page), ["amount", "flag"]);
    assert!(page["next"].as_str().expect("next").contains("offset=4"));
    // Persons' properties.
    let people = list("?type=person").await;
    assert_eq!(names(&people), ["email", "plan"]);
    assert_eq!(people["results"][0]["type"], "person");
    for (q, says) in [
        ("?type=group", "type"),
        ("?is_numerical=maybe", "is_numerical"),
        ("?event_names=purchase", "event_names"),
        ("?limit=0", "limit"),
    ] {
        let r = h
            .get(&format!("{}/property_definitions/{q}", h.api()))
            .await;
        assert!(r.envelope(400).contains(says), "{q}");
    }
    // gone's events deleted: only_gone is gone at once.
    let uuid = h.person("gone").await.expect("gone")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    let d = h
        .call(
            "DELETE",
            &format!("{}/persons/{uuid}/?delete_events=true", h.api()),
            None,
        )
        .await;
    assert!(d.status.is_success(), "{}", d.text());
    assert!(!names(&list("").await).contains(&"only_gone".to_string()));
}
