//! The cohorts API over HTTP: static cohorts from a CSV upload and from
//! ids, dynamic cohorts from a definition, their persons, a person's
//! cohorts, cohorts as filters of the persons list and of analytics, soft
//! and hard deletion, bad input, and a deleted person leaving every cohort
//! at once.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{urlencode, Harness};
use serde_json::{json, Value};

async fn people(h: &Harness) {
    let mut events = Vec::new();
    for (d, plan, n) in [
        ("alice", "pro", 3),
        ("bob", "pro", 1),
        ("carol", "free", 2),
        ("dave", "free", 0),
    ] {
        events.push(
            json!({"event": "$identify", "distinct_id": d, "properties": {"$set": {"plan": plan}}}),
        );
        for _ in 0..n {
            events.push(json!({"event": "$pageview", "distinct_id": d}));
        }
    }
    h.capture(Value::Array(events)).await;
}

fn multipart(fields: &[(&str, &str)], csv: &str) -> (String, Vec<u8>) {
    let boundary = "elide-test-boundary";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csv\"; filename=\"people.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    ));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

/// The person UUID of a distinct id, as the API shows it.
async fn uuid_of(h: &Harness, distinct_id: &str) -> String {
    h.person(distinct_id).await.expect("a person")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string()
}

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .expect("persons")
        .iter()
        .map(|p| p["distinct_ids"][0].as_str().expect("id").to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn cohorts_crud_members_filters_and_deletion() {
    let h = Harness::new();
    people(&h).await;
    let api = h.api();

    // Static, from a CSV upload (a header naming distinct_id).
    let (ct, body) = multipart(
        &[("name", "uploaded"), ("is_static", "true")],
        "distinct_id,note\nalice,x\n\"bob\",y\nnobody,z\n",
    );
    let req = Request::builder()
        .method("POST")
        .uri(format!("{api}/cohorts/"))
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("request");
    let r = h.send(req).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert_eq!(r.json["is_static"], json!(true));
    assert_eq!(r.json["count"], json!(2));
    let uploaded = r.json["id"].as_i64().expect("id");

    // Static, from ids; then more added and one removed.
    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "vips", "is_static": true, "distinct_ids": ["carol"]}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let vips = r.json["id"].as_i64().expect("id");
    let alice = uuid_of(&h, "alice").await;
    let r = h
        .call(
            "PATCH",
            &format!("{api}/cohorts/{vips}/add_persons_to_static_cohort/"),
            Some(&json!({"person_ids": [alice]})),
        )
        .await;
    assert_eq!(r.json["added"], json!(1), "{}", r.text());
    let r = h.get(&format!("{api}/cohorts/{vips}/persons/")).await;
    assert_eq!(names(&r.json["results"]), ["alice", "carol"]);
    let r = h
        .call(
            "PATCH",
            &format!("{api}/cohorts/{vips}/remove_person_from_static_cohort/"),
            Some(&json!({"person_id": alice})),
        )
        .await;
    assert_eq!(r.json["removed"], json!(1), "{}", r.text());

    // Dynamic: pro, and viewed a page at least twice in the last 30 days.
    let def = json!({"properties": {"type": "AND", "values": [
        {"type": "person", "key": "plan", "value": "pro"},
        {"type": "behavioral", "key": "$pageview", "value": "performed_event_multiple", "operator": "gte",
         "operator_value": 2, "time_value": 30, "time_interval": "day"}]}});
    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "engaged pros", "filters": def}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert_eq!(r.json["is_static"], json!(false));
    assert_eq!(r.json["count"], json!(1));
    assert_eq!(r.json["filters"], def);
    let engaged = r.json["id"].as_i64().expect("id");
    // Legacy groups: free persons.
    let r = h
        .post(&format!("{api}/cohorts/"), &json!({"name": "free", "groups": [{"properties": [{"key": "plan", "value": "free", "type": "person"}]}]}))
        .await;
    assert_eq!(r.json["count"], json!(2), "{}", r.text());
    let free = r.json["id"].as_i64().expect("id");

    // The list, one cohort, a person's cohorts.
    let r = h.get(&format!("{api}/cohorts/")).await;
    assert_eq!(r.json["count"], json!(4), "{}", r.text());
    assert_eq!(r.json["results"][0]["name"], json!("uploaded"));
    let r = h.get(&format!("{api}/cohorts/{engaged}/")).await;
    assert_eq!(r.json["name"], json!("engaged pros"));
    let r = h
        .get(&format!("{api}/persons/cohorts/?person_id={alice}"))
        .await;
    let mut ids: Vec<i64> = r.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![uploaded, engaged], "{}", r.text());

    // The persons list filtered by cohorts (all must hold).
    let filter = |ids: &[i64]| {
        let v: Vec<Value> = ids
            .iter()
            .map(|i| json!({"type": "cohort", "key": "id", "value": i}))
            .collect();
        urlencode(&Value::Array(v).to_string())
    };
    let r = h
        .get(&format!(
            "{api}/persons/?properties={}",
            filter(&[uploaded])
        ))
        .await;
    assert_eq!(names(&r.json["results"]), ["alice", "bob"], "{}", r.text());
    let r = h
        .get(&format!(
            "{api}/persons/?properties={}",
            filter(&[uploaded, engaged])
        ))
        .await;
    assert_eq!(names(&r.json["results"]), ["alice"]);
    // Not in a cohort, as PostHog reads `not_in` or `negation`: everyone
    // else, never the members.
    let listed = |filters: Value| {
        let url = format!(
            "{api}/persons/?properties={}",
            urlencode(&filters.to_string())
        );
        let h = &h;
        async move { h.get(&url).await }
    };
    for not_uploaded in [
        json!({"type": "cohort", "key": "id", "value": uploaded, "operator": "not_in"}),
        json!({"type": "cohort", "key": "id", "value": uploaded, "negation": true}),
    ] {
        let r = listed(json!([not_uploaded.clone()])).await;
        assert_eq!(names(&r.json["results"]), ["carol", "dave"], "{}", r.text());
        let r = listed(
            json!([not_uploaded.clone(), {"type": "cohort", "key": "id", "value": engaged}]),
        )
        .await;
        assert_eq!(
            names(&r.json["results"]),
            Vec::<String>::new(),
            "{}",
            r.text()
        );
        let r = listed(json!([not_uploaded, {"type": "cohort", "key": "id", "value": free}])).await;
        assert_eq!(names(&r.json["results"]), ["carol", "dave"], "{}", r.text());
    }
    let r =
        listed(json!([{"type": "cohort", "key": "id", "value": uploaded, "operator": "gt"}])).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    // Analytics filtered by a cohort, and by not being in it.
    let r = h
        .post(&format!("{api}/query/"), &json!({"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-1d"},
            "series": [{"event": "$pageview"}], "properties": [{"type": "cohort", "value": free}]}}))
        .await;
    assert_eq!(r.json["results"][0]["count"], json!(2.0), "{}", r.text());
    let r = h
        .post(&format!("{api}/query/"), &json!({"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-1d"},
            "series": [{"event": "$pageview"}], "properties": [{"type": "cohort", "value": free, "operator": "not_in"}]}}))
        .await;
    assert_eq!(
        r.json["results"][0]["count"],
        json!(4.0),
        "alice's 3 and bob's 1: {}",
        r.text()
    );
    let r = h
        .post(&format!("{api}/query/"), &json!({"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-1d"},
            "series": [{"event": "$pageview"}], "properties": [{"type": "cohort", "value": free, "operator": "lt"}]}}))
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());

    // Renaming, soft deletion, restoring, hard deletion.
    let r = h
        .call(
            "PATCH",
            &format!("{api}/cohorts/{free}/"),
            Some(&json!({"name": "free tier", "deleted": true})),
        )
        .await;
    assert_eq!(r.json["name"], json!("free tier"), "{}", r.text());
    assert_eq!(
        h.get(&format!("{api}/cohorts/")).await.json["count"],
        json!(3)
    );
    h.call(
        "PATCH",
        &format!("{api}/cohorts/{free}/"),
        Some(&json!({"deleted": false})),
    )
    .await;
    let r = h
        .call("DELETE", &format!("{api}/cohorts/{free}/"), None)
        .await;
    assert_eq!(r.status.as_u16(), 204);
    assert_eq!(
        h.get(&format!("{api}/cohorts/{free}/"))
            .await
            .status
            .as_u16(),
        404
    );

    // Bad input: 400 envelopes, nothing made.
    for (body, msg) in [
        (json!({"is_static": true}), "This field is required."),
        (json!({"name": "x"}), "a dynamic cohort needs filters"),
        (
            json!({"name": "x", "filters": {"properties": {"type": "AND", "values": [{"type": "behavioral", "key": "e", "value": "performed_event"}]}}}),
            "time_value",
        ),
        (
            json!({"name": "x", "filters": {"properties": {"type": "AND", "values": [{"type": "cohort", "value": 9999}]}}}),
            "cohort 9999 does not exist",
        ),
        (
            json!({"name": "x", "distinct_ids": ["alice"], "is_static": false}),
            "only to a static cohort",
        ),
        (json!({"name": "x", "is_static": "yes"}), "valid boolean"),
    ] {
        let r = h.post(&format!("{api}/cohorts/"), &body).await;
        let detail = r.envelope(400);
        assert!(detail.contains(msg), "{body}: {detail}");
    }
    let r = h
        .call(
            "PATCH",
            &format!("{api}/cohorts/{vips}/"),
            Some(&json!({"filters": def})),
        )
        .await;
    assert!(r.envelope(400).contains("static cohort has no filters"));
    let r = h
        .call(
            "PATCH",
            &format!("{api}/cohorts/{engaged}/add_persons_to_static_cohort/"),
            Some(&json!({"person_ids": []})),
        )
        .await;
    assert!(r.envelope(400).contains("only a static cohort"));
    assert_eq!(
        h.get(&format!("{api}/cohorts/{engaged}x/"))
            .await
            .status
            .as_u16(),
        404
    );
    assert!(h
        .get(&format!("{api}/persons/cohorts/"))
        .await
        .envelope(400)
        .contains("required"));
    assert_eq!(
        h.get(&format!("{api}/cohorts/")).await.json["count"],
        json!(3)
    );

    // A deleted person leaves every cohort at once.
    let r = h
        .call(
            "DELETE",
            &format!("{api}/persons/{alice}/?delete_events=true"),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = h.get(&format!("{api}/cohorts/{uploaded}/persons/")).await;
    assert_eq!(names(&r.json["results"]), ["bob"]);
    assert_eq!(
        h.get(&format!("{api}/cohorts/{engaged}/")).await.json["count"],
        json!(0)
    );
    assert_eq!(
        h.get(&format!("{api}/cohorts/{uploaded}/")).await.json["count"],
        json!(1)
    );
    let r = h
        .get(&format!("{api}/persons/cohorts/?person_id={alice}"))
        .await;
    assert_eq!(r.status.as_u16(), 404);
    // CSV of a cohort's persons.
    let r = h
        .get(&format!("{api}/cohorts/{uploaded}/persons/?format=csv"))
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(
        r.text().contains("bob") && !r.text().contains("alice"),
        "{}",
        r.text()
    );

    // A cohort whose definition refers to a cohort since removed (the API
    // refuses to remove a cohort another refers to, but the library, or a
    // directory written before that check, may leave one): the list and a
    // person's cohorts still answer; it counts nobody, flagged.
    let r = h
        .post(&format!("{api}/cohorts/"), &json!({"name": "of uploaded",
            "filters": {"properties": {"type": "AND", "values": [{"type": "cohort", "value": uploaded}]}}}))
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let dangling = r.json["id"].as_i64().expect("id");
    let r = h
        .call("DELETE", &format!("{api}/cohorts/{uploaded}/"), None)
        .await;
    assert!(r.envelope(400).contains("used by cohort"), "{}", r.text());
    assert!(h
        .state
        .app()
        .persons()
        .delete_cohort(1, uploaded)
        .expect("removed"));
    let r = h.get(&format!("{api}/cohorts/")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let row = r.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|c| c["id"] == json!(dangling))
        .cloned()
        .expect("listed");
    assert_eq!(row["count"], Value::Null);
    assert_eq!(row["errors_calculating"], json!(1));
    let bob = uuid_of(&h, "bob").await;
    let r = h
        .get(&format!("{api}/persons/cohorts/?person_id={bob}"))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert!(r.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .all(|c| c["id"] != json!(dangling)));
    assert_eq!(
        h.get(&format!("{api}/cohorts/{dangling}/persons/"))
            .await
            .status
            .as_u16(),
        400
    );
}

/// A form's `filters` nested just below the JSON parser's limit: stored
/// inside the cohort's definition they are one level deeper, past it. The
/// request is refused (400) or stored readably, never stored to fail
/// every later read of the project's cohorts with a 500.
#[tokio::test]
async fn a_form_cohort_nested_near_the_json_limit_never_breaks_the_cohort_list() {
    let h = Harness::new();
    let api = h.api();
    for depth in 120..=128 {
        let junk = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let filters = format!(
            r#"{{"properties":{{"type":"AND","values":[{{"type":"person","key":"a","value":"b"}}]}},"junk":{junk}}}"#
        );
        // A form without a CSV (with one, the cohort is static and its
        // filters are not kept).
        let boundary = "elide-test-boundary";
        let body: String = [("name", "deep"), ("filters", filters.as_str())]
            .iter()
            .map(|(k, v)| {
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
            })
            .chain([format!("--{boundary}--\r\n")])
            .collect();
        let ct = format!("multipart/form-data; boundary={boundary}");
        let req = Request::builder()
            .method("POST")
            .uri(format!("{api}/cohorts/"))
            .header("authorization", format!("Bearer {}", h.key))
            .header("content-type", ct)
            .body(Body::from(body))
            .expect("request");
        let r = h.send(req).await;
        assert!(
            [201, 400].contains(&r.status.as_u16()),
            "depth {depth}: {} {}",
            r.status,
            r.text()
        );
        let r = h.get(&format!("{api}/cohorts/")).await;
        assert_eq!(r.status.as_u16(), 200, "depth {depth}: {}", r.text());
    }
}

/// A request refused with a 400 changes nothing: a static cohort whose
/// list is bad is not created, and a patch whose name is blank adds no
/// one to the list (the cohort and its list are two writes).
#[tokio::test]
async fn a_refused_cohort_request_changes_nothing() {
    let h = Harness::new();
    people(&h).await;
    let api = h.api();
    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "bad list", "is_static": true, "person_ids": ["nope"]}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    let r = h.get(&format!("{api}/cohorts/")).await;
    assert_eq!(r.json["count"], json!(0), "{}", r.text());

    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "list", "is_static": true, "distinct_ids": ["carol"]}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let id = r.json["id"].as_i64().expect("id");
    let alice = uuid_of(&h, "alice").await;
    let r = h
        .call(
            "PATCH",
            &format!("{api}/cohorts/{id}/"),
            Some(&json!({"name": " ", "person_ids": [alice]})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    let r = h.get(&format!("{api}/cohorts/{id}/persons/")).await;
    assert_eq!(names(&r.json["results"]), ["carol"]);
}

/// An uploaded CSV past the request's limit is a 413 in PostHog's
/// envelope, and no cohort is made.
#[tokio::test]
async fn a_csv_past_the_request_limit_is_a_413() {
    let h = Harness::new();
    let api = h.api();
    let csv = "distinct_id\n".to_string() + &"someone-with-a-long-id\n".repeat(1 << 20);
    let (ct, body) = multipart(&[("name", "huge"), ("is_static", "true")], &csv);
    let req = Request::builder()
        .method("POST")
        .uri(format!("{api}/cohorts/"))
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("request");
    let r = h.send(req).await;
    r.envelope(413);
    let r = h.get(&format!("{api}/cohorts/")).await;
    assert_eq!(r.json["count"], json!(0), "{}", r.text());
}

/// Two changes at once that would each make one cohort refer to the
/// other: at most one lands, so no cycle is ever stored (each checks its
/// definition and writes it under one lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_patches_never_store_a_cycle() {
    let h = Harness::new();
    people(&h).await;
    let api = h.api();
    let pros = json!({"properties": {"type": "AND", "values": [{"type": "person", "key": "plan", "value": "pro"}]}});
    let on = |id: i64| json!({"properties": {"type": "AND", "values": [{"type": "cohort", "value": id}]}});
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let body = json!({"name": name, "filters": pros});
        let r = h.post(&format!("{api}/cohorts/"), &body).await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
        ids.push(r.json["id"].as_i64().expect("id"));
    }
    let (a, b) = (ids[0], ids[1]);
    for round in 0..12 {
        let (to_b, to_a) = (json!({"filters": on(b)}), json!({"filters": on(a)}));
        let (url_a, url_b) = (format!("{api}/cohorts/{a}/"), format!("{api}/cohorts/{b}/"));
        let (ra, rb) = tokio::join!(
            h.call("PATCH", &url_a, Some(&to_b)),
            h.call("PATCH", &url_b, Some(&to_a)),
        );
        let landed = [&ra, &rb]
            .iter()
            .filter(|r| r.status.as_u16() == 200)
            .count();
        assert!(landed <= 1, "round {round}: {} / {}", ra.text(), rb.text());
        for id in [a, b] {
            let r = h.get(&format!("{api}/cohorts/{id}/")).await;
            assert_eq!(r.json["count"], json!(2), "round {round}: {}", r.text());
            let reset = json!({"filters": pros});
            let r = h
                .call("PATCH", &format!("{api}/cohorts/{id}/"), Some(&reset))
                .await;
            assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        }
    }
}

/// A change that would make a cohort refer to itself, directly or
/// through another cohort, is a 400 and changes nothing.
#[tokio::test]
async fn a_patch_that_makes_a_cycle_is_refused() {
    let h = Harness::new();
    people(&h).await;
    let api = h.api();
    let pros = json!({"properties": {"type": "AND", "values": [{"type": "person", "key": "plan", "value": "pro"}]}});
    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "a", "filters": pros}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let a = r.json["id"].as_i64().expect("id");
    let on = |id: i64| json!({"properties": {"type": "AND", "values": [{"type": "cohort", "value": id}]}});
    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "b", "filters": on(a)}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let b = r.json["id"].as_i64().expect("id");
    for target in [a, b] {
        let r = h
            .call(
                "PATCH",
                &format!("{api}/cohorts/{a}/"),
                Some(&json!({"filters": on(target)})),
            )
            .await;
        assert!(r.envelope(400).contains("refers to itself"), "{}", r.text());
    }
    let r = h.get(&format!("{api}/cohorts/{a}/")).await;
    assert_eq!(r.json["filters"], pros, "{}", r.text());
    assert_eq!(r.json["count"], json!(2), "{}", r.text());
    let r = h.get(&format!("{api}/cohorts/{b}/persons/")).await;
    assert_eq!(names(&r.json["results"]), ["alice", "bob"], "{}", r.text());
}

/// A change of one cohort never leaves another unreadable: a cohort that
/// others refer to is not deleted (hard or soft), and a new definition
/// that would take a cohort referring to it past the depth limit is
/// refused; each is a 400 that changes nothing.
#[tokio::test]
async fn a_change_that_would_break_a_referring_cohort_is_refused() {
    let h = Harness::new();
    people(&h).await;
    let api = h.api();
    let pros = json!({"properties": {"type": "AND", "values": [{"type": "person", "key": "plan", "value": "pro"}]}});
    let on = |id: i64| json!({"properties": {"type": "AND", "values": [{"type": "cohort", "value": id}]}});
    let make = |filters: Value| {
        let h = &h;
        let api = api.clone();
        async move {
            let r = h
                .post(
                    &format!("{api}/cohorts/"),
                    &json!({"name": "c", "filters": filters}),
                )
                .await;
            assert_eq!(r.status.as_u16(), 201, "{}", r.text());
            r.json["id"].as_i64().expect("id")
        }
    };
    // A chain of five: top → … → bottom, as deep as references go.
    let bottom = make(pros.clone()).await;
    let mut chain = vec![bottom];
    for _ in 0..4 {
        let below = *chain.last().expect("chain");
        chain.push(make(on(below)).await);
    }
    let top = *chain.last().expect("top");
    let readable = |id: i64| {
        let h = &h;
        let api = api.clone();
        async move {
            let r = h.get(&format!("{api}/cohorts/{id}/persons/")).await;
            assert_eq!(r.status.as_u16(), 200, "cohort {id}: {}", r.text());
        }
    };
    // A PATCH or a DELETE of cohort `id`.
    let patch = |id: i64, body: Value| {
        let h = &h;
        let api = api.clone();
        async move {
            h.call("PATCH", &format!("{api}/cohorts/{id}/"), Some(&body))
                .await
        }
    };
    let delete = |id: i64| {
        let h = &h;
        let api = api.clone();
        async move {
            h.call("DELETE", &format!("{api}/cohorts/{id}/"), None)
                .await
        }
    };
    readable(top).await;
    // A new cohort on top of the chain would be six deep.
    let r = h
        .post(
            &format!("{api}/cohorts/"),
            &json!({"name": "c", "filters": on(top)}),
        )
        .await;
    assert!(r.envelope(400).contains("deep"), "{}", r.text());
    // The bottom one referring to one more would make the top six deep.
    let extra = make(pros.clone()).await;
    let r = patch(bottom, json!({"filters": on(extra)})).await;
    assert!(r.envelope(400).contains("deep"), "{}", r.text());
    readable(top).await;
    // Referred to: neither removed nor soft-deleted.
    let r = delete(bottom).await;
    assert!(r.envelope(400).contains("used by cohort"), "{}", r.text());
    let r = patch(bottom, json!({"deleted": true})).await;
    assert!(r.envelope(400).contains("used by cohort"), "{}", r.text());
    readable(top).await;
    // The top one, which nothing refers to, goes; then the next.
    let r = delete(top).await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    let next = chain[chain.len() - 2];
    let r = patch(next, json!({"deleted": true})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // With the top gone, the bottom may refer to one more.
    let r = patch(bottom, json!({"filters": on(extra)})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    readable(chain[chain.len() - 3]).await;
    // A soft-deleted cohort whose reference was removed meanwhile is not
    // restored (it would fail every read).
    let referred = make(pros.clone()).await;
    let referring = make(on(referred)).await;
    let r = patch(referring, json!({"deleted": true})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let r = delete(referred).await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    let r = patch(referring, json!({"deleted": false})).await;
    assert!(r.envelope(400).contains("does not exist"), "{}", r.text());
}
