//! The persons API over HTTP: shapes, statuses and validation messages,
//! following PostHog's test scenarios (`posthog-semantics.md` §5) where
//! HTTP can see them.

mod common;

use common::{urlencode, Harness};
use serde_json::{json, Value};

/// A person with `ids` (the first identified, the others merged in) and
/// `set` properties.
async fn person_with(h: &Harness, ids: &[&str], set: Value) -> Value {
    h.event("$identify", ids[0], json!({"$set": set})).await;
    for other in &ids[1..] {
        h.event("$identify", ids[0], json!({"$anon_distinct_id": other}))
            .await;
    }
    h.person(ids[0]).await.expect("the person exists")
}

fn uuid_of(p: &Value) -> String {
    p["uuid"].as_str().expect("uuid").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_by_pk_or_uuid_and_refuse_distinct_ids() {
    let h = Harness::new();
    let p = person_with(&h, &["123456789"], json!({"email": "a@example.com"})).await;
    let uuid = uuid_of(&p);
    // The listing's id is the UUID string.
    assert_eq!(p["id"], p["uuid"]);
    assert_eq!(p["type"], "person");
    assert_eq!(p["matched_recordings"], json!([]));
    let by_uuid = h.get(&format!("{}/persons/{uuid}/", h.api())).await;
    assert_eq!(by_uuid.status, 200, "{}", by_uuid.text());
    let pk = by_uuid.json["id"]
        .as_i64()
        .expect("retrieve's id is the integer");
    assert_eq!(by_uuid.json["uuid"], uuid.as_str());
    assert_eq!(by_uuid.json["distinct_ids"], json!(["123456789"]));
    let by_pk = h.get(&format!("{}/persons/{pk}/", h.api())).await;
    assert_eq!(by_pk.json, by_uuid.json);
    // Without the trailing slash too.
    let no_slash = h.get(&format!("{}/persons/{pk}", h.api())).await;
    assert_eq!(no_slash.json, by_uuid.json);

    let r = h.get(&format!("{}/persons/NOT_A_UUID/", h.api())).await;
    assert_eq!(
        r.envelope(400),
        "The ID provided does not look like a personID. If you are using a distinctId, please use /persons?distinct_id=NOT_A_UUID instead."
    );
    let r = h
        .get(&format!("{}/persons/{}/", h.api(), uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.envelope(404), "Not found.");
    assert_eq!(r.json["type"], "invalid_request");
    assert_eq!(r.json["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_search_and_properties() {
    let h = Harness::new();
    let p1 = person_with(
        &h,
        &["did_1", "another_one"],
        json!({"email": "someone@gmail.com"}),
    )
    .await;
    let p2 = person_with(
        &h,
        &["distinct_id_2"],
        json!({"email": "another@gmail.com", "name": "james", "some_prop": "some_value"}),
    )
    .await;
    let _p3 = person_with(&h, &["distinct_id_3"], json!({"name": "jane"})).await;

    let r = h.persons("?email=another@gmail.com").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["id"], p2["uuid"]);
    assert_eq!(r[0]["distinct_ids"], json!(["distinct_id_2"]));
    assert_eq!(h.persons("?distinct_id=did_1").await[0]["uuid"], p1["uuid"]);
    assert_eq!(
        h.persons("?distinct_id=another_one").await[0]["uuid"],
        p1["uuid"]
    );
    assert!(h.persons("?email=inexistent").await.is_empty());
    assert!(h.persons("?distinct_id=inexistent").await.is_empty());

    assert_eq!(h.persons("?search=another@gm").await.len(), 1);
    assert_eq!(h.persons("?search=distinct_id_3").await.len(), 1);
    assert_eq!(
        h.persons(&format!("?search={}", uuid_of(&p1))).await.len(),
        1
    );

    let f = |v: Value| format!("?properties={}", urlencode(&v.to_string()));
    let is_set =
        json!([{"key": "email", "operator": "is_set", "value": "is_set", "type": "person"}]);
    assert_eq!(h.persons(&f(is_set)).await.len(), 2);
    let icontains =
        json!([{"key": "email", "operator": "icontains", "value": "another@gm", "type": "person"}]);
    assert_eq!(h.persons(&f(icontains)).await.len(), 1);
    // `exact` is the default operator.
    let exact = json!([{"key": "some_prop", "value": "some_value", "type": "person"}]);
    let r = h.persons(&f(exact)).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["uuid"], p2["uuid"]);
    // PostHog's other operators (sql.md, `properties_match`).
    for (v, n) in [
        (
            json!([{"key": "email", "operator": "regex", "value": "^an.*@gmail\\.com$", "type": "person"}]),
            1,
        ),
        (
            json!([{"key": "email", "operator": "not_regex", "value": "^an", "type": "person"}]),
            2,
        ),
        (
            json!([{"key": "email", "operator": "not_icontains", "value": "GMAIL", "type": "person"}]),
            1,
        ),
        (
            json!([{"key": "name", "operator": "in", "value": ["jane", "james"], "type": "person"}]),
            2,
        ),
        (
            json!([{"key": "email", "operator": "exact", "value": [], "type": "person"}]),
            3,
        ),
    ] {
        assert_eq!(h.persons(&f(v.clone())).await.len(), n, "{v}");
    }
    for v in [
        json!([{"key": "email", "operator": "regex", "value": "(", "type": "person"}]),
        json!([{"key": "age", "operator": "between", "value": [9, 1], "type": "person"}]),
        json!([{"key": "seen", "operator": "is_date_before", "value": "someday", "type": "person"}]),
        json!([{"key": "v", "operator": "flag_evaluates_to", "value": "1.0.0", "type": "person"}]),
    ] {
        let r = h
            .get(&format!("{}/persons/{}", h.api(), f(v.clone())))
            .await;
        r.envelope(400);
        assert_eq!(r.json["attr"], "properties", "{v}");
    }

    // Unparsable filters: a 400 naming the parameter.
    let r = h
        .get(&format!("{}/persons/?properties=%7Bnot-json", h.api()))
        .await;
    r.envelope(400);
    assert_eq!(r.json["attr"], "properties");
    let r = h.get(&format!("{}/persons/?limit=abc", h.api())).await;
    r.envelope(400);

    // Filters past the limits are a 400 naming the limit, never a 500; as
    // many as allowed still answer. Any key may be filtered on, NUL,
    // quotes and backslashes included.
    for key in ["em\u{0}ail", "a\"b", "a\\b"] {
        let exact = json!([{"key": key, "value": "x", "type": "person"}]);
        assert_eq!(h.persons(&f(exact)).await.len(), 0, "{key:?}");
        let is_not = json!([{"key": key, "operator": "is_not", "value": "x", "type": "person"}]);
        assert_eq!(h.persons(&f(is_not)).await.len(), 3, "{key:?}");
    }
    let values = |n: usize| -> Vec<Value> { (0..n).map(|i| json!(format!("v{i}"))).collect() };
    let many = json!([{"key": "email", "value": values(500), "type": "person"}]);
    assert_eq!(h.persons(&f(many)).await.len(), 0);
    let filters: Vec<Value> = (0..100)
        .map(|i| json!({"key": format!("k{i}"), "operator": "is_not", "value": "x", "type": "person"}))
        .collect();
    assert_eq!(h.persons(&f(json!(filters))).await.len(), 3);
    let too_many_filters: Vec<Value> = (0..101)
        .map(|i| json!({"key": format!("k{i}"), "value": "x", "type": "person"}))
        .collect();
    for (v, says) in [
        (
            json!([{"key": "email", "value": values(1001), "type": "person"}]),
            "more than the 500",
        ),
        (json!(too_many_filters), "more than the 100"),
    ] {
        for path in ["/persons/", "/persons/?include_total=true&x=1"] {
            let (path, q) = path.split_once('?').map_or((path, ""), |(p, q)| (p, q));
            let sep = if q.is_empty() {
                String::new()
            } else {
                format!("&{q}")
            };
            let r = h
                .get(&format!("{}{path}{}{sep}", h.api(), f(v.clone())))
                .await;
            let detail = r.envelope(400);
            assert!(detail.contains(says), "{detail}");
        }
        let r = h.get(&format!("/api/person.csv{}", f(v.clone()))).await;
        assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_names_and_distinct_id_order() {
    let h = Harness::new();
    let anon = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let p = person_with(&h, &[anon, "distinct_id1"], json!({})).await;
    assert_eq!(p["name"], "distinct_id1");
    // Non-anonymous ids first.
    assert_eq!(p["distinct_ids"][0], "distinct_id1");
    let q = person_with(
        &h,
        &["x1"],
        json!({"name": "Jo", "email": "jo@example.com"}),
    )
    .await;
    assert_eq!(q["name"], "jo@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_projects_persons_are_invisible() {
    let h = Harness::new();
    let (_, other_token, _) = h.other_project();
    let body = json!({"api_key": other_token, "batch": [
        {"event": "$identify", "distinct_id": "distinct_id", "properties": {}},
        {"event": "$identify", "distinct_id": "x_another_one", "properties": {}},
    ]});
    let r = h
        .capture_raw(
            "/batch/",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    let mine = person_with(&h, &["distinct_id"], json!({})).await;
    let r = h.persons("?distinct_id=distinct_id").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["uuid"], mine["uuid"]);
    assert!(h.persons("?distinct_id=x_another_one").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_with_absolute_links_and_totals() {
    let h = Harness::new();
    let events: Vec<Value> = (0..19)
        .map(|i| json!({"event": "$identify", "distinct_id": format!("p{i:02}"), "properties": {}}))
        .collect();
    h.capture(json!(events)).await;
    let r = h.get(&format!("{}/persons/?limit=10", h.api())).await;
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(10));
    assert!(r.json["previous"].is_null());
    let next = r.json["next"].as_str().expect("next").to_string();
    assert!(next.starts_with("http://"), "{next}");
    let path = &next[next.find("/api/").expect("path")..];
    let r2 = h.get(path).await;
    assert_eq!(r2.json["results"].as_array().map(Vec::len), Some(9));
    assert!(r2.json["previous"].is_string());
    let t = h
        .get(&format!("{}/persons/?limit=10&include_total", h.api()))
        .await;
    assert_eq!(t.json["count"], 19);
    // Small pages: every person exactly once.
    let mut seen = std::collections::BTreeSet::new();
    let mut offset = 0;
    loop {
        let r = h
            .get(&format!("{}/persons/?limit=2&offset={offset}", h.api()))
            .await;
        let page = r.json["results"].as_array().cloned().unwrap_or_default();
        for p in &page {
            assert!(seen.insert(p["uuid"].to_string()), "duplicate across pages");
        }
        if r.json["next"].is_null() {
            break;
        }
        offset += 2;
    }
    assert_eq!(seen.len(), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_exports() {
    let h = Harness::new();
    person_with(&h, &["w"], json!({"$os": "Windows"})).await;
    person_with(&h, &["m"], json!({"$os": "Mac"})).await;
    let r = h.get("/api/person.csv").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/csv"));
    assert_eq!(r.text().lines().count(), 3, "{}", r.text());
    let f = json!([{"key": "$os", "value": "Windows", "type": "person"}]);
    let r = h
        .get(&format!(
            "/api/person.csv?properties={}",
            urlencode(&f.to_string())
        ))
        .await;
    assert_eq!(r.text().lines().count(), 2, "{}", r.text());
    let r = h.get(&format!("{}/persons/?format=csv", h.api())).await;
    assert_eq!(r.text().lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_a_person_keeps_or_deletes_events_by_presence() {
    let h = Harness::new();
    let p = person_with(&h, &["person_1", "anonymous_id"], json!({})).await;
    for _ in 0..3 {
        h.event("e", "person_1", json!({})).await;
    }
    let u = uuid_of(&p);
    let r = h
        .call("DELETE", &format!("{}/persons/{u}/", h.api()), None)
        .await;
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty());
    assert!(h.person("person_1").await.is_none());
    let again = h
        .call("DELETE", &format!("{}/persons/{u}/", h.api()), None)
        .await;
    again.envelope(404);
    // No event deletion asked: the events stay. Elide still records the
    // erasure of the profile (PostHog lists only event deletions): done.
    assert_eq!(h.event_count("person_1").await, 3 + 2);
    let s = h
        .get(&format!("{}/persons/deletion_status/", h.api()))
        .await;
    assert_eq!(s.json["count"], 1);
    assert_eq!(s.json["results"][0]["status"], "completed");
    // Activity logged.
    let a = h.get(&format!("{}/persons/activity/", h.api())).await;
    assert!(
        a.json["results"]
            .as_array()
            .is_some_and(|v| v.iter().any(|e| e["activity"] == "deleted")),
        "{}",
        a.text()
    );

    // `?delete_events=false` still deletes the events (presence counts).
    let q = person_with(&h, &["person_2"], json!({})).await;
    h.event("e", "person_2", json!({})).await;
    let r = h
        .call(
            "DELETE",
            &format!("{}/persons/{}/?delete_events=false", h.api(), uuid_of(&q)),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    // Invisible when the 202 returns.
    assert_eq!(h.event_count("person_2").await, 0);
    let s = h
        .get(&format!("{}/persons/deletion_status/", h.api()))
        .await;
    // Newest first: this one, then the profile-only deletion above.
    assert_eq!(s.json["count"], 2);
    assert_eq!(s.json["results"][0]["person_uuid"], q["uuid"]);
    assert_eq!(s.json["results"][0]["status"], "pending");
    assert!(s.json["results"][0]["delete_verified_at"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_person_with_delete_events() {
    let h = Harness::new();
    let p = person_with(&h, &["kp"], json!({"a": 1})).await;
    h.event("e", "kp", json!({})).await;
    let r = h
        .call(
            "DELETE",
            &format!(
                "{}/persons/{}/?keep_person=true&delete_events=true",
                h.api(),
                uuid_of(&p)
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    assert!(h.person("kp").await.is_some());
    assert_eq!(h.event_count("kp").await, 0);
    let s = h
        .get(&format!("{}/persons/deletion_status/", h.api()))
        .await;
    assert_eq!(s.json["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_bodies_and_validation() {
    let h = Harness::new();
    let u1 = uuid_of(&person_with(&h, &["b1"], json!({})).await);
    let u2 = uuid_of(&person_with(&h, &["b2"], json!({})).await);
    let url = format!("{}/persons/bulk_delete/", h.api());
    let r = h
        .post(&url, &json!({"ids": [u1, u2], "delete_events": true}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.json,
        json!({"persons_found": 2, "persons_deleted": 2, "events_queued_for_deletion": true,
               "recordings_queued_for_deletion": false, "deletion_errors": [], "not_found": []})
    );
    h.call("DELETE", &format!("{}/persons/{u1}/", h.api()), None)
        .await
        .envelope(404);

    // Two persons by distinct id, events kept.
    person_with(&h, &["person_2"], json!({})).await;
    person_with(&h, &["person_3", "anonymous_id"], json!({})).await;
    h.event("e", "person_2", json!({})).await;
    let before = h.event_count("person_2").await;
    let r = h
        .post(&url, &json!({"distinct_ids": ["anonymous_id", "person_2"]}))
        .await;
    assert_eq!(r.json["persons_found"], 2);
    assert_eq!(r.json["persons_deleted"], 2);
    assert_eq!(r.json["events_queued_for_deletion"], false);
    assert_eq!(h.event_count("person_2").await, before);

    // keep_person; delete_recordings; flags through bool() ("false" is true).
    let k = uuid_of(&person_with(&h, &["keep"], json!({})).await);
    let r = h
        .post(
            &url,
            &json!({"ids": [k], "delete_events": "false", "keep_person": true}),
        )
        .await;
    assert_eq!(r.json["persons_found"], 1);
    assert_eq!(r.json["persons_deleted"], 0);
    assert_eq!(r.json["events_queued_for_deletion"], true);
    assert!(h.person("keep").await.is_some());
    let rr = uuid_of(&person_with(&h, &["rec"], json!({})).await);
    let r = h
        .post(&url, &json!({"ids": [rr], "delete_recordings": true}))
        .await;
    assert_eq!(r.json["persons_deleted"], 1);
    assert_eq!(r.json["events_queued_for_deletion"], false);
    assert_eq!(r.json["recordings_queued_for_deletion"], true);

    // Unknown ids: found 0, and Elide names them.
    let unknown = [
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    ];
    let r = h
        .post(&url, &json!({"ids": unknown, "delete_events": true}))
        .await;
    assert_eq!(
        r.json,
        json!({"persons_found": 0, "persons_deleted": 0, "events_queued_for_deletion": false,
               "recordings_queued_for_deletion": false, "deletion_errors": [],
               "not_found": unknown})
    );

    // Validation, in PostHog's order.
    let many: Vec<String> = (0..1001).map(|i| format!("d{i}")).collect();
    let d = h
        .post(&url, &json!({"distinct_ids": many}))
        .await
        .envelope(400);
    assert!(d.contains("1000"), "{d}");
    let many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let d = h.post(&url, &json!({"ids": many})).await.envelope(400);
    assert!(d.contains("1000"), "{d}");
    let d = h
        .post(&url, &json!({"delete_events": true}))
        .await
        .envelope(400);
    assert!(d.contains("distinct_ids or ids"), "{d}");
    let d = h
        .post(&url, &json!({"ids": [], "distinct_ids": []}))
        .await
        .envelope(400);
    assert!(d.contains("distinct_ids or ids"), "{d}");
    let d = h
        .post(&url, &json!({"ids": [k], "distinct_ids": ["x"]}))
        .await
        .envelope(400);
    assert!(d.contains("not both"), "{d}");
    h.post(&url, &json!({"ids": ["not-a-uuid"]}))
        .await
        .envelope(400);
    h.post(&url, &json!({"ids": "nope"})).await.envelope(400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_person_event_and_recording_deletions() {
    let h = Harness::new();
    let p = person_with(&h, &["de"], json!({})).await;
    h.event("e", "de", json!({})).await;
    let u = uuid_of(&p);
    let r = h
        .post(
            &format!("{}/persons/{u}/delete_events/", h.api()),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty());
    assert!(h.person("de").await.is_some());
    assert_eq!(h.event_count("de").await, 0);
    let s = h
        .get(&format!(
            "{}/persons/deletion_status/?status=pending",
            h.api()
        ))
        .await;
    assert_eq!(s.json["count"], 1);
    let r = h
        .post(
            &format!(
                "{}/persons/{}/delete_events/",
                h.api(),
                uuid::Uuid::new_v4()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(r.envelope(404), "Not found.");
    let r = h
        .post(
            &format!("{}/persons/{u}/delete_recordings/", h.api()),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_status_lifecycle_and_filters() {
    let h = Harness::new();
    let (_, other_token, other_key) = h.other_project();
    let u1 = uuid_of(&person_with(&h, &["s1"], json!({})).await);
    let u2 = uuid_of(&person_with(&h, &["s2"], json!({})).await);
    h.event("e", "s1", json!({})).await;
    h.event("e", "s2", json!({})).await;
    let url = format!("{}/persons/bulk_delete/", h.api());
    h.post(&url, &json!({"ids": [u1], "delete_events": true}))
        .await;
    // Purge and verify the first one.
    let store = h.state.app().store().clone();
    tokio::task::spawn_blocking(move || {
        store
            .compact(elide_store::CompactRequest {
                manual: true,
                merges: false,
                ..Default::default()
            })
            .map(|_| ())
    })
    .await
    .expect("join")
    .expect("compact");
    h.post(&url, &json!({"ids": [u2], "delete_events": true}))
        .await;
    // Another project's deletion is not counted.
    let body = json!({"api_key": other_token, "batch": [{"event": "$identify", "distinct_id": "s1", "properties": {}}]});
    h.capture_raw("/batch/", &[], body.to_string().into_bytes())
        .await;
    let r = h
        .call_as(
            Some(&other_key),
            "POST",
            "/api/projects/2/persons/bulk_delete/",
            Some(&json!({"distinct_ids": ["s1"], "delete_events": true})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());

    let base = format!("{}/persons/deletion_status/", h.api());
    let all = h.get(&base).await;
    assert_eq!(all.json["count"], 2, "{}", all.text());
    let pending = h.get(&format!("{base}?status=pending")).await;
    assert_eq!(pending.json["count"], 1);
    assert_eq!(pending.json["results"][0]["person_uuid"], u2.as_str());
    let done = h.get(&format!("{base}?status=completed")).await;
    assert_eq!(done.json["count"], 1);
    assert_eq!(done.json["results"][0]["status"], "completed");
    assert!(done.json["results"][0]["delete_verified_at"].is_string());
    let one = h.get(&format!("{base}?person_uuid={u1}")).await;
    assert_eq!(one.json["count"], 1);
    let bad = h.get(&format!("{base}?status=invalid")).await;
    bad.envelope(400);
    assert_eq!(bad.json["attr"], "status");
    let bad = h.get(&format!("{base}?person_uuid=not-a-uuid")).await;
    bad.envelope(400);
    assert_eq!(bad.json["attr"], "person_uuid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_moves_ids_to_new_persons() {
    let h = Harness::new();
    let p = person_with(&h, &["1", "2", "3"], json!({"kept": true})).await;
    let u = uuid_of(&p);
    let url = format!("{}/persons/{u}/split/", h.api());
    let d = h
        .post(&url, &json!({"distinct_ids_to_split": ["nope"]}))
        .await
        .envelope(400);
    assert!(d.contains("nope"), "{d}");
    h.post(
        &url,
        &json!({"main_distinct_id": "1", "distinct_ids_to_split": ["2"]}),
    )
    .await
    .envelope(400);
    for bad in [json!([]), json!("a"), json!([1, 2])] {
        h.post(&url, &json!({"distinct_ids_to_split": bad}))
            .await
            .envelope(400);
    }
    let r = h.post(&url, &json!({"main_distinct_id": "1"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json, json!({"success": true}));
    let one = h.person("1").await.expect("1");
    assert_eq!(one["uuid"], u.as_str());
    assert_eq!(one["properties"]["kept"], true);
    let two = h.person("2").await.expect("2");
    let three = h.person("3").await.expect("3");
    assert_ne!(two["uuid"], one["uuid"]);
    assert_ne!(two["uuid"], three["uuid"]);

    // No body: the first id stays.
    let q = person_with(&h, &["a", "b"], json!({})).await;
    let r = h
        .post(
            &format!("{}/persons/{}/split/", h.api(), uuid_of(&q)),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 201);
    let a = h.person("a").await.expect("a");
    let b = h.person("b").await.expect("b");
    assert_ne!(a["uuid"], b["uuid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_update_and_delete() {
    let h = Harness::new();
    let p = person_with(&h, &["some_distinct_id"], json!({"keep": 1})).await;
    let u = uuid_of(&p);
    let url = format!("{}/persons/{u}/", h.api());
    let r = h.call("PATCH", &url, Some(&json!({"foo": "bar"}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"type": "validation_error", "code": "This field is required.", "detail": "required", "attr": "properties"})
    );
    let r = h
        .call("PATCH", &url, Some(&json!({"properties": {"a": "b"}})))
        .await;
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty());
    let got = h.get(&url).await;
    assert_eq!(got.json["properties"]["a"], "b");
    assert_eq!(got.json["properties"]["keep"], 1);

    let up = format!("{}/persons/{u}/update_property/", h.api());
    assert_eq!(
        h.post(&up, &json!({"key": "foo", "value": "bar"}))
            .await
            .status,
        202
    );
    assert_eq!(
        h.post(&up, &json!({"key": "nul", "value": null}))
            .await
            .status,
        202
    );
    let got = h.get(&url).await;
    assert_eq!(got.json["properties"]["foo"], "bar");
    assert!(got.json["properties"]
        .as_object()
        .is_some_and(|o| o.contains_key("nul") && o["nul"].is_null()));
    let r = h.post(&up, &json!({"key": "foo"})).await;
    assert_eq!(
        r.json,
        json!({"type": "validation_error", "code": "This field is required.", "detail": "required", "attr": "value"})
    );
    let r = h.post(&up, &json!({"value": "x"})).await;
    assert_eq!(r.json["attr"], "key");
    assert_eq!(r.status, 400);

    let del = format!("{}/persons/{u}/delete_property/", h.api());
    let r = h.post(&del, &json!({"$unset": "foo"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json, json!({"success": true}));
    let got = h.get(&url).await;
    assert!(got.json["properties"].get("foo").is_none());
    h.post(&del, &json!({})).await.envelope(400);
    // Malformed JSON: a 400 envelope, nothing changed.
    let r = h
        .send(
            axum::http::Request::builder()
                .method("PATCH")
                .uri(&url)
                .header("authorization", format!("Bearer {}", h.key))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{not json"))
                .expect("request"),
        )
        .await;
    r.envelope(400);
    assert_eq!(h.get(&url).await.json["properties"], got.json["properties"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_unblocks_a_deleted_distinct_id() {
    let h = Harness::new();
    let p = person_with(&h, &["did_1"], json!({})).await;
    let url = format!("{}/persons/bulk_delete/", h.api());
    h.post(&url, &json!({"ids": [uuid_of(&p)]})).await;
    // Blocked: events of a deleted id make no person until reset.
    h.event("e", "did_1", json!({"$set": {"x": 1}})).await;
    assert!(h.person("did_1").await.is_none());
    let reset = format!("{}/persons/reset_person_distinct_id/", h.api());
    for bad in [
        json!({}),
        json!({"distinct_id": ""}),
        json!({"distinct_id": 5}),
    ] {
        assert_eq!(
            h.post(&reset, &bad).await.envelope(400),
            "distinct_id is required"
        );
    }
    let r = h.post(&reset, &json!({"distinct_id": "did_1"})).await;
    assert_eq!(r.status, 202);
    h.event("e", "did_1", json!({})).await;
    let fresh = h.person("did_1").await.expect("a new person");
    assert_ne!(fresh["uuid"], p["uuid"]);
    // Never used: still 202.
    assert_eq!(
        h.post(&reset, &json!({"distinct_id": "never-seen"}))
            .await
            .status,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_lookups() {
    let h = Harness::new();
    let (_, other_token, _) = h.other_project();
    person_with(&h, &["user_1"], json!({"email": "u1@example.com"})).await;
    person_with(&h, &["user_2"], json!({"email": "u2@example.com"})).await;
    let many: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let m = person_with(&h, &refs, json!({})).await;
    let body = json!({"api_key": other_token, "batch": [{"event": "$identify", "distinct_id": "theirs", "properties": {}}]});
    h.capture_raw("/batch/", &[], body.to_string().into_bytes())
        .await;

    let url = format!("{}/persons/batch_by_distinct_ids/", h.api());
    let r = h
        .post(
            &url,
            &json!({"distinct_ids": ["user_1", "user_2", "unknown", "theirs", "m0", "m1"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let res = r.json["results"].as_object().expect("map");
    assert_eq!(res["user_1"]["properties"]["email"], "u1@example.com");
    assert!(res.contains_key("user_2"));
    assert!(!res.contains_key("unknown"));
    assert!(!res.contains_key("theirs"));
    assert_eq!(res["m0"]["uuid"], res["m1"]["uuid"]);
    assert_eq!(res["m0"]["uuid"], m["uuid"]);
    assert!(res["m0"]["distinct_ids"].as_array().map_or(0, Vec::len) <= 10);
    assert_eq!(
        h.post(&url, &json!({"distinct_ids": []})).await.json,
        json!({"results": {}})
    );
    assert_eq!(
        h.post(&url, &json!({"distinct_ids": "not_a_list"}))
            .await
            .json,
        json!({"results": {}})
    );
    // The 201st id is ignored.
    let mut ids: Vec<String> = (0..200).map(|i| format!("none{i}")).collect();
    ids.push("user_1".into());
    assert_eq!(
        h.post(&url, &json!({"distinct_ids": ids})).await.json,
        json!({"results": {}})
    );

    let url = format!("{}/persons/batch_by_uuids/", h.api());
    let r = h.post(&url, &json!({"uuids": [m["uuid"]]})).await;
    assert!(r.json["results"]
        .get(m["uuid"].as_str().unwrap_or_default())
        .is_some());
    assert_eq!(
        h.post(&url, &json!({"uuids": ["nope"]}))
            .await
            .envelope(400),
        "One or more UUIDs are invalid."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_cohorts_activity_timeline_and_refusals() {
    let h = Harness::new();
    person_with(&h, &["v1"], json!({"random_prop": "asdf"})).await;
    person_with(&h, &["v2"], json!({"random_prop": "asdf"})).await;
    person_with(&h, &["v3"], json!({"random_prop": "qwerty"})).await;
    person_with(&h, &["v4"], json!({"other": 1})).await;
    let r = h
        .get(&format!("{}/persons/values/?key=random_prop", h.api()))
        .await;
    assert_eq!(
        r.json["results"],
        json!([{"name": "asdf", "count": 2}, {"name": "qwerty", "count": 1}])
    );
    let r = h
        .get(&format!(
            "{}/persons/values/?key=random_prop&value=qw",
            h.api()
        ))
        .await;
    assert_eq!(r.json["results"], json!([{"name": "qwerty", "count": 1}]));
    h.get(&format!("{}/persons/values/", h.api()))
        .await
        .envelope(400);

    let r = h
        .get(&format!("{}/persons/cohorts/?person_id=1", h.api()))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["results"], json!([]));

    let p = h.person("v1").await.expect("v1");
    let u = uuid_of(&p);
    h.call(
        "PATCH",
        &format!("{}/persons/{u}/", h.api()),
        Some(&json!({"properties": {"z": 1}})),
    )
    .await;
    let r = h.get(&format!("{}/persons/{u}/activity/", h.api())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json["results"].as_array().is_some_and(|a| !a.is_empty()));

    let r = h
        .get(&format!("{}/persons/{u}/properties_timeline/", h.api()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json["points"].is_array());

    // Creating persons is refused with PostHog's 405.
    let r = h.post(&format!("{}/persons/", h.api()), &json!({})).await;
    assert!(r
        .envelope(405)
        .starts_with("Creating persons via this API is not allowed."));
}

/// The properties timeline scans events like any query: it runs on the
/// query threads under the query deadline (a 504 past it), never on the
/// threads that answer capture and the rest of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_properties_timeline_runs_under_the_query_deadline() {
    let h = Harness::with_config(elide_server::ServerConfig {
        query_timeout: std::time::Duration::ZERO,
        ..Default::default()
    });
    let p = person_with(&h, &["t1"], json!({"a": 1})).await;
    let u = uuid_of(&p);
    let r = h
        .get(&format!("{}/persons/{u}/properties_timeline/", h.api()))
        .await;
    let d = r.envelope(504);
    assert!(d.contains("cancelled"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_and_legacy_routes_are_the_same_viewset() {
    let h = Harness::new();
    person_with(&h, &["env"], json!({"email": "e@example.com"})).await;
    let a = h
        .get(&format!("/api/environments/{}/persons/", h.project))
        .await;
    let b = h.get("/api/person/").await;
    let c = h.get(&format!("{}/persons/", h.api())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["results"], c.json["results"]);
    assert_eq!(b.json["results"], c.json["results"]);
    let at = h.get("/api/projects/@current/persons/").await;
    assert_eq!(at.json["results"], c.json["results"]);
}

/// The recordings list past the server's per-query memory: a 400 that
/// says so (the request's size), not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recordings_list_past_the_query_memory_is_a_400() {
    let h = Harness::with_config(elide_server::ServerConfig {
        query_memory_bytes: 1,
        ..Default::default()
    });
    let p = person_with(&h, &["rec-user"], json!({})).await;
    h.capture(json!([
        {"event": "$snapshot", "distinct_id": "rec-user",
         "properties": {"$session_id": "sess-1", "$window_id": "w", "$snapshot_data": [{"type": 2, "data": {}}]}},
    ]))
    .await;
    let r = h
        .get(&format!(
            "{}/session_recordings/?person_uuid={}",
            h.api(),
            uuid_of(&p)
        ))
        .await;
    r.envelope(400);
    assert!(r.text().contains("memory"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_listed_and_deleted() {
    let h = Harness::new();
    let p = person_with(&h, &["rec-user"], json!({})).await;
    h.capture(json!([
        {"event": "$snapshot", "distinct_id": "rec-user",
         "properties": {"$session_id": "sess-1", "$window_id": "w", "$snapshot_data": [{"type": 2, "data": {}}]}},
        {"event": "$snapshot", "distinct_id": "rec-user",
         "properties": {"$session_id": "sess-1", "$window_id": "w", "$snapshot_data": [{"type": 3, "data": {}}]}},
    ]))
    .await;
    let url = format!(
        "{}/session_recordings/?person_uuid={}",
        h.api(),
        uuid_of(&p)
    );
    let r = h.get(&url).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{}", r.text());
    assert_eq!(list[0]["id"], "sess-1");
    let r = h
        .post(
            &format!("{}/persons/{}/delete_recordings/", h.api(), uuid_of(&p)),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = h.get(&url).await;
    assert_eq!(r.json["results"], json!([]), "{}", r.text());
    h.get(&format!("{}/session_recordings/?person_uuid=bad", h.api()))
        .await
        .envelope(400);
}

/// A person's properties timeline and recordings are its own rows, as its
/// export reads them: an id reset away from it and taken by another
/// person shows each person only the rows it sent for that person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_and_recordings_of_a_shared_id_stay_with_each_holder() {
    let h = Harness::new();
    let p = person_with(&h, &["p-own", "shared"], json!({"plan": "p"})).await;
    let snapshot = |session: &str| {
        json!([{"event": "$snapshot", "distinct_id": "shared",
            "properties": {"$session_id": session, "$window_id": "w", "$snapshot_data": [{"type": 2, "data": {}}]}}])
    };
    h.event("e", "shared", json!({"$set": {"email": "p@example.com"}}))
        .await;
    h.capture(snapshot("s-p")).await;
    let reset = format!("{}/persons/reset_person_distinct_id/", h.api());
    assert_eq!(
        h.post(&reset, &json!({"distinct_id": "shared"}))
            .await
            .status,
        202
    );
    h.event("e", "shared", json!({"$set": {"email": "q@example.com"}}))
        .await;
    h.capture(snapshot("s-q")).await;
    let q = h.person("shared").await.expect("a new person");
    assert_ne!(q["uuid"], p["uuid"]);
    let emails = |v: &Value| -> Vec<String> {
        v["points"]
            .as_array()
            .expect("points")
            .iter()
            .filter_map(|pt| pt["properties"]["email"].as_str().map(str::to_string))
            .collect()
    };
    for (who, want) in [(&p, "p@example.com"), (&q, "q@example.com")] {
        let u = uuid_of(who);
        let r = h
            .get(&format!("{}/persons/{u}/properties_timeline/", h.api()))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let got = emails(&r.json);
        assert!(
            !got.is_empty() && got.iter().all(|e| e == want),
            "{u}: {got:?}"
        );
    }
    h.state.app().store().flush().expect("flush");
    for (who, want) in [(&p, "s-p"), (&q, "s-q")] {
        let u = uuid_of(who);
        let r = h
            .get(&format!("{}/session_recordings/?person_uuid={u}", h.api()))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let ids: Vec<&str> = r.json["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert_eq!(ids, [want], "{u}");
    }
}
