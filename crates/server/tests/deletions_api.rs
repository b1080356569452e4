//! `POST …/events/delete/`, `GET …/deletions/`, `GET …/deletions/{id}/`:
//! events deleted by predicate are invisible when the 202 returns, the dry
//! run changes nothing, the feed lists every kind with a cursor, and the
//! persons deletion status carries `purge_due_by`.

mod common;

use common::Harness;
use serde_json::json;

async fn count(h: &Harness, q: &str) -> i64 {
    h.hogql(q).await[0][0].as_i64().unwrap()
}

/// A dry run reads the project's parts under the query time, as a query
/// does: past it, a 504 (and no part is read after it), never a scan that
/// goes on for as long as the project is large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_stops_at_the_query_time() {
    let h = Harness::with_config(elide_server::ServerConfig {
        query_timeout: std::time::Duration::ZERO,
        ..Default::default()
    });
    h.capture(
        json!([{"event": "checkout", "distinct_id": "u1", "timestamp": "2026-11-01T12:00:00Z"}]),
    )
    .await;
    h.state.app().store().flush().expect("flush");
    let r = h
        .post(
            &format!("{}/events/delete/", h.api()),
            &json!({"event": "checkout", "dry_run": true}),
        )
        .await;
    let d = r.envelope(504);
    assert!(d.contains("dry run"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_events_by_predicate_and_follow_the_feed() {
    let h = Harness::new();
    let pp = h.api();
    let mut batch = Vec::new();
    for n in 0..30 {
        let event = if n % 3 == 0 { "checkout" } else { "$pageview" };
        let plan = if n % 2 == 0 { "pro" } else { "free" };
        batch.push(json!({
            "event": event,
            "distinct_id": format!("u{}", n % 4),
            "timestamp": format!("2026-11-{:02}T12:00:00Z", 1 + n % 10),
            "properties": {"plan": plan, "n": n},
        }));
    }
    h.capture(json!(batch)).await;
    let q = "select count() from events where event = 'checkout' and properties.plan = 'pro'";
    let want = count(&h, q).await;
    assert_eq!(want, 5);
    let body = json!({
        "event": "checkout",
        "properties": [{"key": "plan", "value": "pro", "operator": "exact"}],
    });
    // A misspelt or missing value is refused (read leniently, `is_not`
    // with no value became `is_not null` and hid every checkout), and
    // so is an unknown field of a filter; nothing is hidden.
    for bad in [
        json!({"key": "plan", "operator": "is_not", "valeu": "free"}),
        json!({"key": "plan", "operator": "is_not"}),
        json!({"key": "plan", "operator": "exact", "value": "pro", "negation": true}),
        json!({"key": "plan", "operator": "exact", "value": "pro", "type": "person"}),
    ] {
        let r = h
            .post(
                &format!("{pp}/events/delete/"),
                &json!({"event": "checkout", "properties": [bad]}),
            )
            .await;
        r.envelope(400);
    }
    assert_eq!(count(&h, "select count() from events").await, 30);
    // PostHog's `"type": "event"` is accepted.
    let mut typed = body.clone();
    typed["properties"][0]["type"] = json!("event");
    typed["dry_run"] = json!(true);
    let r = h.post(&format!("{pp}/events/delete/"), &typed).await;
    assert_eq!(r.json["rows"], want, "{}", r.text());
    // Dry run: counts, 200, nothing hidden.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let r = h.post(&format!("{pp}/events/delete/"), &dry).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["rows"], want);
    assert_eq!(r.json["by_table"]["events"]["rows"], want);
    assert_eq!(count(&h, q).await, want);
    // The deletion: 202, and the rows are gone from queries at once.
    let r = h.post(&format!("{pp}/events/delete/"), &body).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json["rows_hidden"], want);
    let id = r.json["request_id"].as_u64().unwrap();
    assert!(r.json["purge_due_by"].as_str().unwrap().ends_with('Z'));
    assert_eq!(count(&h, q).await, 0);
    assert_eq!(count(&h, "select count() from events").await, 30 - want);
    // A person deletion is in the feed too, as kind "person".
    let r = h
        .post(
            &format!("{pp}/persons/bulk_delete/"),
            &json!({"distinct_ids": ["u1"], "delete_events": true}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = h.get(&format!("{pp}/deletions/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json["results"].as_array().unwrap().clone();
    let kinds: Vec<&str> = results
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["events", "person"]);
    assert_eq!(results[0]["id"], id);
    assert_eq!(results[0]["state"], "pending");
    assert_eq!(results[0]["overdue"], false);
    assert_eq!(results[0]["predicate"]["events"], json!(["checkout"]));
    let cursor = r.json["cursor"].as_u64().unwrap();
    assert!(r.json["next"]
        .as_str()
        .unwrap()
        .ends_with(&format!("since={cursor}")));
    let r = h.get(&format!("{pp}/deletions/?since={cursor}")).await;
    assert_eq!(r.json["results"], json!([]));
    // A page at a time (the two were made by two commits): `next` keeps
    // the limit.
    let r = h.get(&format!("{pp}/deletions/?limit=1")).await;
    assert_eq!(
        r.json["results"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );
    assert_eq!(r.json["results"][0]["kind"], "events");
    let next = r.json["next"].as_str().unwrap().to_string();
    let path = &next[next.find("/api/").unwrap()..];
    assert!(path.contains("limit=1"), "{path}");
    let r = h.get(path).await;
    assert_eq!(r.json["results"][0]["kind"], "person", "{}", r.text());
    assert_eq!(r.json["cursor"].as_u64().unwrap(), cursor);
    for bad in ["0", "10001", "x"] {
        h.get(&format!("{pp}/deletions/?limit={bad}"))
            .await
            .envelope(400);
    }
    // One request.
    let r = h.get(&format!("{pp}/deletions/{id}/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["kind"], "events");
    assert!(r.json["purged_at"].is_null());
    // The persons deletion status keeps PostHog's shape, plus purge_due_by.
    let r = h.get(&format!("{pp}/persons/deletion_status/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = &r.json["results"][0];
    assert!(
        first["purge_due_by"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    // No receipt before verification.
    h.get(&format!("{pp}/deletions/{id}/receipt/"))
        .await
        .envelope(404);
    // After the purge, the feed shows the change from the old cursor.
    h.state
        .app()
        .store()
        .compact(elide_store::CompactRequest::now())
        .unwrap();
    let r = h.get(&format!("{pp}/deletions/?since={cursor}")).await;
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{}", r.text());
    assert!(results.iter().all(|v| v["state"] == "verified"));
    // The signed receipt, as stored; verifiable with the public key alone.
    let r = h.get(&format!("{pp}/deletions/{id}/receipt/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["body"]["request_id"], id);
    assert_eq!(r.json["body"]["kind"], "events");
    assert!(!r.text().contains("\"pro\""), "a property value in clear");
    let public = std::fs::read_to_string(h.dir.path().join("receipts/public.key")).unwrap();
    let key = elide_store::receipt::parse_public_key("public.key", &public).unwrap();
    elide_store::receipt::verify_one(&r.body, Some(&[key])).unwrap();
    assert!(results.iter().all(|v| v["predicate"].is_null()
        || v["predicate"]["properties"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("keyed-hash:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_erasure_deadline_is_set_through_patch() {
    let h = Harness::new();
    let pp = h.api();
    let r = h.get(&format!("{pp}/")).await;
    assert_eq!(r.json["erasure_deadline_days"], serde_json::Value::Null);
    let r = h
        .call(
            "PATCH",
            &format!("{pp}/"),
            Some(&json!({"erasure_deadline_days": 2})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["erasure_deadline_days"], 2);
    h.event("e", "u1", json!({})).await;
    let r = h
        .post(
            &format!("{pp}/events/delete/"),
            &json!({"distinct_ids": ["u1"]}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json["request_id"].as_u64().unwrap();
    let v = h.get(&format!("{pp}/deletions/{id}/")).await.json;
    let at = |s: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    assert_eq!(at(&v["purge_due_by"]) - at(&v["hidden_at"]), 2 * 86_400);
    for bad in [json!(0), json!(-1), json!(1.5), json!("3"), json!(4000)] {
        let r = h
            .call(
                "PATCH",
                &format!("{pp}/"),
                Some(&json!({"erasure_deadline_days": bad})),
            )
            .await;
        r.envelope(400);
    }
    let r = h
        .call(
            "PATCH",
            &format!("{pp}/"),
            Some(&json!({"erasure_deadline_days": null})),
        )
        .await;
    assert_eq!(r.json["erasure_deadline_days"], serde_json::Value::Null);
    // Retention: set, shown, refused when out of range, cleared.
    let set = |field: &'static str, v: serde_json::Value| {
        let h = &h;
        let pp = pp.clone();
        async move {
            h.call("PATCH", &format!("{pp}/"), Some(&json!({ field: v })))
                .await
        }
    };
    let patch = |v| set("retention_days", v);
    let r = patch(json!(30)).await;
    assert_eq!(r.json["retention_days"], 30, "{}", r.text());
    assert_eq!(h.get(&format!("{pp}/")).await.json["retention_days"], 30);
    for bad in [json!(0), json!(40000), json!("30")] {
        patch(bad).await.envelope(400);
    }
    let r = patch(serde_json::Value::Null).await;
    assert_eq!(r.json["retention_days"], serde_json::Value::Null);
    // Retention per event name: set, kept when not named, removed by null.
    let ev = |v| set("event_retention_days", v);
    let r = ev(json!({"$autocapture": 30, "$pageview": 90})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = ev(json!({"$pageview": null})).await;
    assert_eq!(r.json["event_retention_days"], json!({"$autocapture": 30}));
    // At most 1000 names of at most 400 bytes, in a request and in all.
    let many = |from: usize, n: usize| {
        serde_json::Value::Object(
            (from..from + n)
                .map(|i| (format!("e{i}"), json!(7)))
                .collect(),
        )
    };
    for bad in [
        json!({"$x": 0}),
        json!({"": 3}),
        json!([1]),
        json!({"$x": "3"}),
        json!({"x".repeat(401): 3}),
        many(0, 1001),
    ] {
        ev(bad).await.envelope(400);
    }
    assert_eq!(ev(many(0, 999)).await.status, 200);
    ev(many(999, 2)).await.envelope(400);
    // A refused change of the store's settings changes no other field.
    let name = h.get(&format!("{pp}/")).await.json["name"].clone();
    for bad in [
        json!({"name": "renamed", "event_retention_days": many(999, 2)}),
        json!({"name": "renamed", "retention_days": 0}),
        json!({"anonymize_ips": true, "erasure_deadline_days": 0}),
        json!({"name": "x".repeat(201), "retention_days": 30}),
    ] {
        h.call("PATCH", &format!("{pp}/"), Some(&bad))
            .await
            .envelope(400);
    }
    let now = h.get(&format!("{pp}/")).await.json;
    assert_eq!(
        (&now["name"], &now["anonymize_ips"]),
        (&name, &json!(false))
    );
    assert_eq!(now["retention_days"], serde_json::Value::Null);
    let mut undo = many(0, 999);
    for v in undo.as_object_mut().expect("object").values_mut() {
        *v = serde_json::Value::Null;
    }
    assert_eq!(ev(undo).await.status, 200);
    assert_eq!(
        h.get(&format!("{pp}/")).await.json["event_retention_days"],
        json!({"$autocapture": 30})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_export_holds_everything_and_is_the_deletions_dry_run() {
    let h = Harness::new();
    let pp = h.api();
    // A person with two ids (one merged in through $identify), events,
    // a recording; and a bystander.
    h.capture(json!([
        {"event": "$pageview", "distinct_id": "anon-1", "properties": {"n": 1}},
        {"event": "$identify", "distinct_id": "ada", "properties": {"$anon_distinct_id": "anon-1", "$set": {"email": "ada@example.com"}}},
        {"event": "buy", "distinct_id": "ada", "properties": {"n": 2}},
        {"event": "$snapshot", "distinct_id": "ada", "properties": {"$session_id": "S1", "$snapshot_data": {"t": 1}}},
        {"event": "other", "distinct_id": "bob", "properties": {}},
    ]))
    .await;
    let uuid = h.person("ada").await.unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    // An activity entry: a change through the API (which also stores a
    // `$set` event, as PostHog does).
    let r = h
        .call(
            "PATCH",
            &format!("{pp}/persons/{uuid}/"),
            Some(&json!({"properties": {"plan": "pro"}})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let url = format!("{pp}/persons/{uuid}/export/");
    let r = h.get(&format!("{url}?dry_run=true")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["by_table"]["events"], 4);
    assert_eq!(r.json["by_table"]["recordings"], 1);
    let r = h.get(&url).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Spooled whole before it is sent (its length is known), and nothing
    // of it stays on disk.
    assert_eq!(
        r.headers["content-length"].to_str().unwrap(),
        r.body.len().to_string()
    );
    let spool = h.dir.path().join(elide_store::SPOOL_DIR);
    let left: Vec<_> = std::fs::read_dir(&spool).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "{left:?}");
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "person");
    assert_eq!(lines[0]["uuid"], uuid.as_str());
    let mut ids: Vec<&str> = lines[0]["distinct_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["ada", "anon-1"]);
    assert!(lines.iter().any(|l| l["type"] == "activity"));
    let events: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    let mut names: Vec<&str> = events
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["$identify", "$pageview", "$set", "buy"]);
    assert_eq!(lines.iter().filter(|l| l["type"] == "recording").count(), 1);
    assert!(!r.text().contains("bob"), "another person's rows leaked");
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert_eq!(lines.last().unwrap()["rows"]["events"], 4);
    // Parquet: one file, the rows of both tables, the person in metadata.
    let r = h.get(&format!("{url}?format=parquet")).await;
    assert_eq!(r.status, 200);
    let bytes = r.body.clone();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    let person = kv.iter().find(|k| k.key == "elide.person").unwrap();
    assert!(person.value.as_ref().unwrap().contains(&uuid));
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 5);
    // Bad parameters.
    h.get(&format!("{url}?format=xml")).await.envelope(400);
    h.get(&format!("{url}?dry_run=maybe")).await.envelope(400);
    h.get(&format!("{pp}/persons/not-a-person/export/"))
        .await
        .envelope(400);
    h.get(&format!("{pp}/persons/{}/export/", uuid::Uuid::new_v4()))
        .await
        .envelope(404);
    // After the person's deletion: gone.
    let r = h
        .call(
            "DELETE",
            &format!("{pp}/persons/{uuid}/?delete_events&delete_recordings"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    h.get(&url).await.envelope(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_window_keeps_a_deletion_cancellable_and_cancel_brings_the_rows_back() {
    let h = Harness::new();
    let pp = h.api();
    for i in 0..6 {
        h.event("checkout", &format!("u{i}"), json!({"n": i})).await;
    }
    h.event("other", "u0", json!({})).await;
    let q = "select count() from events where event = 'checkout'";
    let body = json!({"event": "checkout", "undo_window_hours": 2});
    let r = h.post(&format!("{pp}/events/delete/"), &body).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json["rows_hidden"], 6);
    let until = r.json["undo_until"].as_str().unwrap().to_string();
    let id = r.json["request_id"].as_u64().unwrap();
    assert_eq!(count(&h, q).await, 0, "hidden at once");
    let v = h.get(&format!("{pp}/deletions/{id}/")).await.json;
    assert_eq!(v["undo_until"], until.as_str());
    assert_eq!(v["logical"], true);
    let metrics = h.get("/metrics").await.text();
    assert!(
        metrics.contains("\nelide_deletion_requests_logical 1\n"),
        "{metrics}"
    );
    // Another project's key cannot cancel it (404, nothing changed).
    let (_, _, other_key) = h.other_project();
    let r = h
        .call_as(
            Some(&other_key),
            "POST",
            &format!("{pp}/deletions/{id}/cancel/"),
            None,
        )
        .await;
    r.envelope(404);
    assert_eq!(count(&h, q).await, 0);
    // Cancel: 200, the request as it is now, the rows back.
    let r = h
        .post(&format!("{pp}/deletions/{id}/cancel/"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["state"], "cancelled");
    assert!(r.json["cancelled_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(count(&h, q).await, 6);
    // Twice, a request without a window, an unknown one: refused.
    let r = h
        .post(&format!("{pp}/deletions/{id}/cancel/"), &json!({}))
        .await;
    assert!(
        r.envelope(400).contains("already cancelled"),
        "{}",
        r.text()
    );
    let r = h
        .post(&format!("{pp}/events/delete/"), &json!({"event": "other"}))
        .await;
    let plain = r.json["request_id"].as_u64().unwrap();
    assert!(r.json.get("undo_until").is_none(), "{}", r.text());
    let r = h
        .post(&format!("{pp}/deletions/{plain}/cancel/"), &json!({}))
        .await;
    assert!(
        r.envelope(400).contains("without an undo window"),
        "{}",
        r.text()
    );
    h.post(&format!("{pp}/deletions/999/cancel/"), &json!({}))
        .await
        .envelope(404);
    // Bad windows change nothing.
    for bad in [json!(0), json!(-2), json!("2"), json!(24 * 30)] {
        let r = h
            .post(
                &format!("{pp}/events/delete/"),
                &json!({"event": "checkout", "undo_window_hours": bad}),
            )
            .await;
        r.envelope(400);
    }
    assert_eq!(count(&h, q).await, 6);
}

/// An events deletion by distinct ids counts them in the feed's
/// `distinct_ids`, and shows them in its predicate (a consumer that
/// replicates it needs them); a person deletion counts its ids only.
#[tokio::test]
async fn the_feed_counts_the_ids_of_an_events_deletion() {
    let h = Harness::new();
    let pp = h.api();
    h.capture(json!([{"event": "e", "distinct_id": "a"}, {"event": "e", "distinct_id": "b"}]))
        .await;
    let r = h
        .post(
            &format!("{pp}/events/delete/"),
            &json!({"distinct_ids": ["a"]}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json["request_id"].as_u64().expect("id");
    let v = h.get(&format!("{pp}/deletions/{id}/")).await.json;
    assert_eq!(v["distinct_ids"], json!(1), "{v}");
    assert_eq!(v["predicate"]["distinct_ids"], json!(["a"]), "{v}");
    let r = h
        .post(
            &format!("{pp}/persons/bulk_delete/"),
            &json!({"distinct_ids": ["b"], "delete_events": true}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let feed = h.get(&format!("{pp}/deletions/")).await.json;
    let person = &feed["results"][1];
    assert_eq!(person["kind"], json!("person"), "{feed}");
    assert_eq!(person["distinct_ids"], json!(1), "{feed}");
    assert!(person["predicate"].is_null(), "{feed}");
}
