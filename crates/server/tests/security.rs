//! Every `/api/` route refuses a request without a key, with a wrong key,
//! with the capture token as Bearer, with another project's key, and with
//! a key lacking the route's scope; hostile and malformed input is a 4xx
//! with the envelope. After each, a target person's profile, ids and
//! event count are checked unchanged.

mod common;

use common::{urlencode, Harness};
use serde_json::{json, Value};

/// What must not change: the target's profile, ids and event count.
async fn snapshot(h: &Harness) -> (Value, i64, Value) {
    let p = h.person("target").await.expect("target exists");
    let n = h.event_count("target").await;
    let status = h
        .get(&format!("{}/persons/deletion_status/", h.api()))
        .await
        .json;
    (
        json!({"properties": p["properties"], "distinct_ids": p["distinct_ids"], "uuid": p["uuid"]}),
        n,
        status,
    )
}

async fn setup() -> (Harness, String) {
    let h = Harness::new();
    h.capture(json!([
        {"event": "$identify", "distinct_id": "target", "properties": {"$set": {"email": "t@example.com"}, "$anon_distinct_id": "target-anon"}},
        {"event": "e", "distinct_id": "target", "properties": {"x": 1}},
        {"event": "$snapshot", "distinct_id": "target", "properties": {"$session_id": "S1", "$snapshot_data": {"t": 1}}},
        {"event": "$identify", "distinct_id": "bystander", "properties": {"$set": {"email": "b@example.com"}}},
    ]))
    .await;
    let uuid = h.person("target").await.expect("target")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    (h, uuid)
}

/// (method, path, scope, body) of every `/api/` route acting on the
/// harness's project.
fn routes(p: i64, u: &str) -> Vec<(&'static str, String, &'static str, Option<Value>)> {
    let pp = format!("/api/projects/{p}");
    let ids = json!({"distinct_ids": ["target"], "delete_events": true});
    let mut r = vec![
        ("GET", format!("{pp}/persons/"), "person:read", None),
        (
            "POST",
            format!("{pp}/persons/"),
            "person:write",
            Some(json!({})),
        ),
        ("GET", format!("{pp}/persons/{u}/"), "person:read", None),
        (
            "PATCH",
            format!("{pp}/persons/{u}/"),
            "person:write",
            Some(json!({"properties": {"email": "evil"}})),
        ),
        (
            "PUT",
            format!("{pp}/persons/{u}/"),
            "person:write",
            Some(json!({"properties": {"email": "evil"}})),
        ),
        (
            "DELETE",
            format!("{pp}/persons/{u}/?delete_events"),
            "person:write",
            None,
        ),
        (
            "POST",
            format!("{pp}/persons/bulk_delete/"),
            "person:write",
            Some(ids.clone()),
        ),
        (
            "GET",
            format!("{pp}/persons/deletion_status/"),
            "person:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/persons/reset_person_distinct_id/"),
            "person:write",
            Some(json!({"distinct_id": "target"})),
        ),
        (
            "POST",
            format!("{pp}/persons/batch_by_distinct_ids/"),
            "person:read",
            Some(json!({"distinct_ids": ["target"]})),
        ),
        (
            "POST",
            format!("{pp}/persons/batch_by_uuids/"),
            "person:read",
            Some(json!({"uuids": [u]})),
        ),
        (
            "GET",
            format!("{pp}/persons/values/?key=email"),
            "person:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/persons/cohorts/?person_id={u}"),
            "person:read",
            None,
        ),
        ("GET", format!("{pp}/cohorts/"), "cohort:read", None),
        (
            "POST",
            format!("{pp}/cohorts/"),
            "cohort:write",
            Some(json!({"name": "x", "is_static": true, "distinct_ids": ["target"]})),
        ),
        ("GET", format!("{pp}/cohorts/1/"), "cohort:read", None),
        (
            "PATCH",
            format!("{pp}/cohorts/1/"),
            "cohort:write",
            Some(json!({"name": "y"})),
        ),
        ("DELETE", format!("{pp}/cohorts/1/"), "cohort:write", None),
        ("GET", format!("{pp}/cohorts/1/persons/"), "cohort:read", None),
        (
            "PATCH",
            format!("{pp}/cohorts/1/add_persons_to_static_cohort/"),
            "cohort:write",
            Some(json!({"distinct_ids": ["target"]})),
        ),
        (
            "PATCH",
            format!("{pp}/cohorts/1/remove_person_from_static_cohort/"),
            "cohort:write",
            Some(json!({"person_id": u})),
        ),
        (
            "GET",
            format!("{pp}/persons/activity/"),
            "activity_log:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/event_definitions/"),
            "event_definition:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/event_definitions/{u}/"),
            "event_definition:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/property_definitions/"),
            "property_definition:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/persons/funnel/?funnel_step=1&events=%5B%7B%22id%22%3A%22e%22%7D%5D"),
            "person:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/persons/funnel/"),
            "person:read",
            Some(json!({"events": [{"id": "e"}], "funnel_step": 1})),
        ),
        (
            "GET",
            format!("{pp}/persons/lifecycle/?target_date=2020-01-01&lifecycle_type=new&events=%5B%7B%22id%22%3A%22e%22%7D%5D"),
            "person:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/persons/stickiness/?stickiness_days=1&events=%5B%7B%22id%22%3A%22e%22%7D%5D"),
            "person:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/persons/stickiness/"),
            "person:read",
            Some(json!({"events": [{"id": "e"}], "stickiness_days": 1})),
        ),
        (
            "POST",
            format!("{pp}/insights/trend/"),
            "insight:read",
            Some(json!({"shown_as": "Stickiness", "events": [{"id": "e"}]})),
        ),
        (
            "GET",
            format!("{pp}/persons/trends/?date_from=2020-01-01&events=%5B%7B%22id%22%3A%22e%22%7D%5D"),
            "person:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/persons/trends/"),
            "person:read",
            Some(json!({"events": [{"id": "e"}], "date_from": "2020-01-01"})),
        ),
        (
            "GET",
            format!("{pp}/insights/funnel/?events=%5B%7B%22id%22%3A%22e%22%7D%5D"),
            "insight:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/insights/trend/"),
            "insight:read",
            Some(json!({"shown_as": "Lifecycle", "events": [{"id": "e"}]})),
        ),
        (
            "GET",
            format!("{pp}/persons/funnel/correlation/?events=%5B%7B%22id%22%3A%22e%22%7D%5D&funnel_correlation_person_entity=%7B%22id%22%3A%22x%22%7D"),
            "person:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/insights/funnel/correlation/"),
            "insight:read",
            Some(json!({"events": [{"id": "e"}, {"id": "f"}], "funnel_correlation_type": "events"})),
        ),
        (
            "POST",
            format!("{pp}/persons/{u}/delete_events/"),
            "person:write",
            Some(json!({})),
        ),
        (
            "POST",
            format!("{pp}/persons/{u}/delete_recordings/"),
            "person:write",
            Some(json!({})),
        ),
        (
            "POST",
            format!("{pp}/persons/{u}/delete_property/"),
            "person:write",
            Some(json!({"$unset": "email"})),
        ),
        (
            "POST",
            format!("{pp}/persons/{u}/update_property/"),
            "person:write",
            Some(json!({"key": "email", "value": "evil"})),
        ),
        (
            "POST",
            format!("{pp}/persons/{u}/split/"),
            "person:write",
            Some(json!({})),
        ),
        (
            "GET",
            format!("{pp}/persons/{u}/properties_timeline/"),
            "person:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/persons/{u}/activity/"),
            "activity_log:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/session_recordings/?person_uuid={u}"),
            "person:read",
            None,
        ),
        ("GET", format!("{pp}/"), "project:read", None),
        (
            "PATCH",
            format!("{pp}/"),
            "project:write",
            Some(json!({"drop_properties": ["email"]})),
        ),
        ("DELETE", format!("{pp}/"), "project:write", None),
        (
            "GET",
            format!("{pp}/personal_api_keys/"),
            "project:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/personal_api_keys/"),
            "project:write",
            Some(json!({"scopes": ["*"]})),
        ),
        (
            "DELETE",
            format!("{pp}/personal_api_keys/1/"),
            "project:write",
            None,
        ),
        (
            "POST",
            format!("{pp}/query/"),
            "query:read",
            Some(json!({"query": {"kind": "HogQLQuery", "query": "select count() from events"}})),
        ),
        (
            "POST",
            format!("{pp}/events/delete/"),
            "event:write",
            Some(json!({"event": "e", "distinct_ids": ["target"]})),
        ),
        ("GET", format!("{pp}/events/"), "query:read", None),
        ("GET", format!("{pp}/events/values/?key=x"), "query:read", None),
        (
            "GET",
            format!("{pp}/events/values/?key=custom_event"),
            "query:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/events/?person_id={u}&include_person=true"),
            "query:read",
            None,
        ),
        (
            "GET",
            format!("{pp}/events/00000000-0000-0000-0000-000000000001/"),
            "query:read",
            None,
        ),
        (
            "POST",
            format!("{pp}/events/delete/"),
            "event:write",
            Some(json!({"distinct_ids": ["target"], "dry_run": true})),
        ),
        ("GET", format!("{pp}/deletions/"), "person:read", None),
        (
            "GET",
            format!("{pp}/persons/{u}/export/"),
            "person:read",
            None,
        ),
        ("GET", format!("{pp}/deletions/1/"), "person:read", None),
        (
            "POST",
            format!("{pp}/deletions/1/cancel/"),
            "event:write",
            None,
        ),
        (
            "GET",
            format!("{pp}/deletions/1/receipt/"),
            "person:read",
            None,
        ),
    ];
    // The same under /api/environments/.
    let env: Vec<_> = r
        .iter()
        .map(|(m, path, s, b)| {
            (
                *m,
                path.replacen("/api/projects/", "/api/environments/", 1),
                *s,
                b.clone(),
            )
        })
        .collect();
    r.extend(env);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_wrong_key_capture_token_other_project_missing_scope() {
    let (h, u) = setup().await;
    let before = snapshot(&h).await;
    let (other, _, other_key) = h.other_project();
    let token = h.token.clone();
    let wrong = "phx_0000000000000000000000000000000000000000".to_string();
    for (method, path, scope, body) in routes(h.project, &u) {
        let b = body.as_ref();
        let r = h.call_as(None, method, &path, b).await;
        assert_eq!(
            r.envelope(401),
            "Authentication credentials were not provided.",
            "{method} {path}"
        );
        h.call_as(Some(&wrong), method, &path, b)
            .await
            .envelope(401);
        h.call_as(Some("not even a key"), method, &path, b)
            .await
            .envelope(401);
        // The capture token is no personal key.
        h.call_as(Some(&token), method, &path, b)
            .await
            .envelope(401);
        // Another project's key: 404, as for a project that does not exist.
        let r = h.call_as(Some(&other_key), method, &path, b).await;
        assert_eq!(r.envelope(404), "Not found.", "{method} {path}");
        // A key of this project without the scope: 403.
        let lacking = if scope == "query:read" {
            "person:read"
        } else {
            "query:read"
        };
        let k = h.key_with(&[lacking]);
        let r = h.call_as(Some(&k), method, &path, b).await;
        assert_eq!(
            r.envelope(403),
            format!("API key missing required scope '{scope}'"),
            "{method} {path}"
        );
        assert_eq!(
            snapshot(&h).await,
            before,
            "{method} {path} changed something"
        );
    }
    // Listing projects with another key shows only its own.
    let r = h
        .call_as(Some(&other_key), "GET", "/api/projects/", None)
        .await;
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.json["results"][0]["id"], other);
    // A read-only key on write routes.
    let ro = h.key_with(&[
        "person:read",
        "query:read",
        "project:read",
        "activity_log:read",
    ]);
    for (method, path, scope, body) in routes(h.project, &u) {
        if scope.ends_with(":write") {
            let r = h.call_as(Some(&ro), method, &path, body.as_ref()).await;
            r.envelope(403);
        }
    }
    // A route that needs two scopes refuses a key holding one of them
    // (a person's cohorts are cohorts' names and definitions).
    let one = h.key_with(&["person:read"]);
    for path in [
        format!("{}/persons/cohorts/?person_id={u}", h.api()),
        format!("{}/cohorts/1/persons/", h.api()),
    ] {
        let r = h.call_as(Some(&one), "GET", &path, None).await;
        assert_eq!(
            r.envelope(403),
            "API key missing required scope 'cohort:read'",
            "{path}"
        );
    }
    // As in PostHog, a write scope grants the matching read, nothing else.
    let w = h.key_with(&["person:write"]);
    let r = h
        .call_as(Some(&w), "GET", &format!("{}/persons/", h.api()), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let q = json!({"query": {"kind": "HogQLQuery", "query": "select 1"}});
    let r = h
        .call_as(Some(&w), "POST", &format!("{}/query/", h.api()), Some(&q))
        .await;
    assert_eq!(
        r.envelope(403),
        "API key missing required scope 'query:read'"
    );
    // The legacy routes act on the key's own project only.
    let r = h
        .call_as(Some(&other_key), "GET", "/api/person/", None)
        .await;
    assert_eq!(r.json["results"], json!([]));
    assert_eq!(snapshot(&h).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_input_is_refused_and_changes_nothing() {
    let (h, u) = setup().await;
    let before = snapshot(&h).await;
    let pp = h.api();
    // Malformed JSON and wrong types.
    for (method, path) in [
        ("PATCH", format!("{pp}/persons/{u}/")),
        ("POST", format!("{pp}/persons/bulk_delete/")),
        ("POST", format!("{pp}/persons/{u}/split/")),
        ("POST", format!("{pp}/persons/{u}/update_property/")),
        ("POST", format!("{pp}/persons/reset_person_distinct_id/")),
        ("POST", format!("{pp}/query/")),
        ("PATCH", format!("{pp}/")),
        ("POST", "/api/projects/".to_string()),
        ("POST", format!("{pp}/events/delete/")),
    ] {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(&path)
            .header("authorization", format!("Bearer {}", h.key))
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{\"truncated"))
            .expect("request");
        let r = h.send(req).await;
        r.envelope(400);
        assert_eq!(r.json["code"], "parse_error", "{method} {path}");
    }
    for body in [
        json!({"properties": "evil"}),
        json!({"properties": ["evil"]}),
        json!({"properties": 5}),
        json!([]),
    ] {
        let r = h
            .call("PATCH", &format!("{pp}/persons/{u}/"), Some(&body))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
    }
    for body in [
        json!({"distinct_ids": "target"}),
        json!({"distinct_ids": [{"$ne": ""}]}),
        json!({"ids": [1, 2]}),
        json!({"ids": ["' OR 1=1 --"]}),
        json!({"distinct_ids": (0..1001).map(|i| format!("x{i}")).collect::<Vec<_>>()}),
        json!({"ids": (0..1001).map(|_| uuid::Uuid::new_v4().to_string()).collect::<Vec<_>>()}),
    ] {
        let r = h.post(&format!("{pp}/persons/bulk_delete/"), &body).await;
        r.envelope(400);
    }
    // Deletions of events: never "everything", never a guess.
    for body in [
        json!({}),
        json!([]),
        json!({"event": 5}),
        json!({"event": ""}),
        json!({"after": "yesterday-ish"}),
        json!({"after": "2026-11-05", "before": "2026-11-01"}),
        json!({"properties": [{"key": "x", "operator": "regex", "value": "."}]}),
        json!({"properties": [{"key": "x", "operator": "gt", "value": "a"}]}),
        json!({"properties": {"key": "x"}}),
        json!({"event": "e", "tables": ["recordings"]}),
        json!({"event": "e", "tables": ["logs"]}),
        json!({"evnt": "e"}),
        json!({"event": "e", "undo_window_hours": 0}),
        json!({"event": "e", "undo_window_hours": 24 * 365}),
        json!({"event": "e", "dry_run": "yes"}),
    ] {
        let r = h.post(&format!("{pp}/events/delete/"), &body).await;
        r.envelope(400);
    }
    h.get(&format!("{pp}/deletions/?since=abc"))
        .await
        .envelope(400);
    h.get(&format!("{pp}/deletions/abc/")).await.envelope(404);
    h.get(&format!("{pp}/deletions/999/")).await.envelope(404);
    // Hostile filter values: answered (no match) or refused, never a 5xx.
    let hostile = [
        format!("{pp}/persons/?search={}", urlencode("' OR 1=1 --")),
        format!("{pp}/persons/?search={}", urlencode("%")),
        format!("{pp}/persons/?search={}", urlencode("_")),
        format!(
            "{pp}/persons/?distinct_id={}",
            urlencode("target' OR '1'='1")
        ),
        format!("{pp}/persons/?email={}", urlencode("\" OR \"\"=\"")),
        format!(
            "{pp}/persons/?properties={}",
            urlencode(r#"[{"key":"email' OR '1'='1","value":"x"}]"#)
        ),
        format!(
            "{pp}/persons/?properties={}",
            urlencode(r#"[{"key":"email","value":{"$gt":""}}]"#)
        ),
        format!(
            "{pp}/persons/?properties={}",
            urlencode(r#"[{"key":"email","value":"x","operator":"; DROP TABLE persons"}]"#)
        ),
        format!("{pp}/persons/?properties={}", urlencode(r#"{"key":null}"#)),
        format!("{pp}/persons/?limit=-1"),
        format!("{pp}/persons/?limit=99999999999999999999"),
        format!("{pp}/persons/?offset=-5"),
        format!("{pp}/persons/values/?key={}", urlencode("email') --")),
        format!(
            "{pp}/events/values/?key={}&value={}&event_name={}",
            urlencode("x') --"),
            urlencode("%' OR 1=1 --"),
            urlencode("'); DROP TABLE events; --")
        ),
        format!("{pp}/persons/deletion_status/?limit=0"),
        format!(
            "{pp}/session_recordings/?person_uuid={}",
            urlencode("' OR 1=1")
        ),
        format!("{pp}/persons/activity/?limit=abc"),
        format!(
            "{pp}/events/?event={}&distinct_id={}",
            urlencode("e' OR '1'='1"),
            urlencode("x'); DROP TABLE events; --")
        ),
        format!(
            "{pp}/events/?properties={}",
            urlencode(r#"[{"key":"x' OR '1'='1","value":"'","operator":"regex"}]"#)
        ),
        format!("{pp}/events/?before=soon&after=-99999999y"),
        format!("{pp}/events/?limit=-1&offset=99999999999999999999"),
        format!("{pp}/events/?orderBy={}", urlencode("[\"timestamp; DROP\"]")),
        format!("{pp}/events/?person_id={}", urlencode("' OR 1=1")),
        format!("{pp}/events/{}/", urlencode("' OR 1=1")),
        format!(
            "{pp}/persons/funnel/?funnel_step=1&events={}",
            urlencode(r#"[{"id":"e' OR '1'='1"},{"id":"x'); DROP TABLE events; --"}]"#)
        ),
        format!(
            "{pp}/insights/funnel/?events={}&breakdown={}",
            urlencode(r#"[{"id":"e"}]"#),
            urlencode("x') OR 1=1 --")
        ),
        format!(
            "{pp}/insights/funnel/?events={}&properties={}",
            urlencode(r#"[{"id":"e"}]"#),
            urlencode(r#"[{"key":"x' OR '1'='1","value":"'"}]"#)
        ),
        format!(
            "{pp}/insights/funnel/?events={}&date_from=-99999999y&funnel_window_interval=99999999999999",
            urlencode(r#"[{"id":"e"}]"#)
        ),
        format!(
            "{pp}/insights/funnel/correlation/?events={}&funnel_correlation_type=properties&funnel_correlation_names={}",
            urlencode(r#"[{"id":"e"},{"id":"f"}]"#),
            urlencode(r#"["x' OR '1'='1", "$all"]"#)
        ),
        format!(
            "{pp}/persons/funnel/correlation/?events={}&funnel_correlation_person_entity={}&funnel_correlation_person_limit=-1",
            urlencode(r#"[{"id":"e"},{"id":"f"}]"#),
            urlencode(r#"{"id":"x') OR 1=1 --","properties":[{"key":"'","value":"\u0000"}]}"#)
        ),
        format!(
            "{pp}/persons/funnel/correlation/?events={}&funnel_correlation_property_values={}",
            urlencode(r#"[{"id":"e"},{"id":"f"}]"#),
            urlencode(r#"[{"key":"a","value":"'","type":"person","operator":"icontains"}]"#)
        ),
        format!(
            "{pp}/persons/lifecycle/?target_date=2020-01-01&lifecycle_type=new&interval=hour&date_from=1970-01-01&events={}",
            urlencode(r#"[{"id":"e"}]"#)
        ),
    ];
    for path in hostile {
        let r = h.get(&path).await;
        assert!(
            r.status.is_success() || r.status.is_client_error(),
            "{path}: {}",
            r.status
        );
        if r.status.is_client_error() {
            r.envelope(r.status.as_u16());
        } else if let Some(res) = r.json["results"].as_array() {
            // Only a plain search may match the target; injection never
            // widens a result.
            assert!(res.len() <= 1, "{path}: {}", r.text());
        }
    }
    // Injection through the query endpoint stays inside the project.
    let all = h.hogql("select count() from events").await;
    let rows = h
        .hogql("select count() from events where distinct_id = 'x' or 1=1")
        .await;
    assert_eq!(rows[0][0], all[0][0]);
    assert_eq!(all[0][0], 3);
    // Oversized bodies.
    let big = "z".repeat(21 << 20);
    let r = h
        .post(
            &format!("{pp}/persons/bulk_delete/"),
            &json!({"distinct_ids": [big]}),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.envelope(413), "request is larger than 20 MiB");
    assert_eq!(snapshot(&h).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_rate_limited_per_key_with_retry_after() {
    let (h, _) = setup().await;
    let url = format!("{}/persons/bulk_delete/", h.api());
    let body = json!({"distinct_ids": ["nobody"]});
    let mut limited = None;
    let started = std::time::Instant::now();
    for i in 0..(elide_server::auth::DELETES_PER_MINUTE + 100) {
        let r = h.post(&url, &body).await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, 202);
    }
    let (i, r) = limited.expect("a 429");
    // The whole burst passes; meanwhile the quota refills one deletion
    // per 60/480 s, so a slow run may pass a few more, never fewer.
    let refilled = (started.elapsed().as_millis() / 125) as u32 + 1;
    assert!(
        (elide_server::auth::DELETES_PER_MINUTE
            ..=elide_server::auth::DELETES_PER_MINUTE + refilled)
            .contains(&i),
        "limited after {i} deletions"
    );
    r.envelope(429);
    let wait: u64 = r.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds");
    assert!(wait >= 1);
    // Another key is not limited by this one.
    let k = h.key_with(&["person:write"]);
    let r = h.call_as(Some(&k), "POST", &url, Some(&body)).await;
    assert_eq!(r.status, 202);
    // Reads of the same key still pass.
    assert_eq!(h.get(&format!("{}/persons/", h.api())).await.status, 200);
}
