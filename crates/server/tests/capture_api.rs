//! Capture over HTTP: every route and method, every encoding and shape,
//! token rules, timestamps, all-or-nothing validation, group commit under
//! concurrency, recordings, and the per-project capture settings.

mod common;

use std::io::Write;

use base64::Engine;
use common::{urlencode, Harness};
use serde_json::{json, Value};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

fn batch(token: &str, events: Value) -> Vec<u8> {
    json!({"api_key": token, "batch": events, "historical_migration": false})
        .to_string()
        .into_bytes()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_and_without_slash() {
    let h = Harness::new();
    let routes = ["/batch", "/e", "/i/v0/e", "/capture", "/track", "/engage"];
    let mut n = 0;
    for r in routes {
        for path in [r.to_string(), format!("{r}/")] {
            n += 1;
            let ev = json!([{"event": "e", "distinct_id": format!("route-{n}"), "properties": {"path": path}}]);
            let resp = h.capture_raw(&path, &[JSON], batch(&h.token, ev)).await;
            assert_eq!(resp.status, 200, "{path}: {}", resp.text());
            assert_eq!(resp.json, json!({"status": "Ok"}), "{path}");
            // OPTIONS (CORS preflight) answers too.
            let pre = h
                .send(
                    axum::http::Request::builder()
                        .method("OPTIONS")
                        .uri(&path)
                        .header("origin", "https://example.com")
                        .header("access-control-request-method", "POST")
                        .body(axum::body::Body::empty())
                        .expect("request"),
                )
                .await;
            assert!(pre.status.is_success(), "{path} OPTIONS: {}", pre.status);
            // A plain OPTIONS (no preflight headers) reaches the route.
            let plain = h.call_as(None, "OPTIONS", &path, None).await;
            assert_eq!(plain.status, 200, "{path} plain OPTIONS");
            assert!(plain.body.is_empty());
        }
    }
    let rows = h
        .hogql("select count() from events where distinct_id like 'route-%'")
        .await;
    assert_eq!(rows[0][0], n);

    // GET with the payload in `data` (base64 or plain JSON).
    let ev = json!({"api_key": h.token, "event": "get", "distinct_id": "getter", "properties": {}});
    let b64 = base64::engine::general_purpose::STANDARD.encode(ev.to_string());
    let r = h
        .call_as(
            None,
            "GET",
            &format!("/e/?data={}&compression=base64", urlencode(&b64)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = h
        .call_as(
            None,
            "GET",
            &format!("/e/?data={}", urlencode(&ev.to_string())),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.event_count("getter").await, 2);
    // beacon=1: 204.
    let r = h
        .capture_raw("/e/?beacon=1", &[JSON], ev.to_string().into_bytes())
        .await;
    assert_eq!(r.status, 204);
    // Other methods: 405, nothing captured.
    for method in ["DELETE", "PUT", "PATCH", "HEAD"] {
        let r = h
            .call_as(
                None,
                method,
                "/batch/",
                Some(&json!({"api_key": h.token, "event": "x", "distinct_id": "wrong-method"})),
            )
            .await;
        assert_eq!(r.status, 405, "{method}");
        if method != "HEAD" {
            r.envelope(405);
        }
    }
    assert_eq!(h.event_count("wrong-method").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_gzip_base64_and_forms() {
    let h = Harness::new();
    let ev = |id: &str| json!([{"event": "enc", "distinct_id": id, "properties": {}}]);
    // gzip by magic bytes, whatever the headers say.
    let r = h
        .capture_raw("/batch/", &[JSON], gzip(&batch(&h.token, ev("gz1"))))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = h
        .capture_raw(
            "/batch/",
            &[("content-type", "text/plain")],
            gzip(&batch(&h.token, ev("gz2"))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = h
        .capture_raw(
            "/batch/?compression=gzip-js",
            &[JSON, ("content-encoding", "gzip")],
            gzip(&batch(&h.token, ev("gz3"))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // base64 as asked, and a whole body that is base64.
    let b64 = base64::engine::general_purpose::STANDARD.encode(batch(&h.token, ev("b1")));
    let r = h
        .capture_raw(
            "/batch/?compression=base64",
            &[JSON],
            b64.clone().into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b64 = base64::engine::general_purpose::STANDARD.encode(batch(&h.token, ev("b2")));
    let r = h.capture_raw("/batch/", &[], b64.into_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A form with data= (and compression as a form field).
    let form = format!(
        "data={}&compression=base64",
        urlencode(&base64::engine::general_purpose::STANDARD.encode(batch(&h.token, ev("f1"))))
    );
    let r = h
        .capture_raw(
            "/e/",
            &[("content-type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for id in ["gz1", "gz2", "gz3", "b1", "b2", "f1"] {
        assert_eq!(h.event_count(id).await, 1, "{id}");
    }
    // lz64 is refused clearly; garbage is a 400.
    let r = h
        .capture_raw("/e/?compression=lz64", &[], b"N4Ig".to_vec())
        .await;
    assert!(r.envelope(400).contains("lz64"));
    let r = h
        .capture_raw("/e/", &[], b"%%% not anything".to_vec())
        .await;
    r.envelope(400);
    let r = h
        .capture_raw("/batch/", &[JSON], vec![0x1f, 0x8b, 0x08, 0, 1, 2])
        .await;
    r.envelope(400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_and_token_sources() {
    let h = Harness::new();
    let t = h.token.clone();
    let bodies = [
        // An array of events, the token inside each.
        json!([{"event": "s", "distinct_id": "s1", "api_key": t}]),
        // A single event with `token`.
        json!({"event": "s", "distinct_id": "s2", "token": t}),
        // `$token`, and `properties.token`.
        json!({"event": "s", "distinct_id": "s3", "$token": t}),
        json!({"event": "s", "distinct_id": "s4", "properties": {"token": t}}),
        // A batch with `token`.
        json!({"token": t, "batch": [{"event": "s", "distinct_id": "s5"}]}),
        // distinct_id under properties, and as a number.
        json!({"api_key": t, "event": "s", "properties": {"distinct_id": "s6"}}),
        json!({"api_key": t, "event": "s", "distinct_id": 77}),
    ];
    for b in &bodies {
        let r = h
            .capture_raw("/e/", &[JSON], b.to_string().into_bytes())
            .await;
        assert_eq!(r.status, 200, "{b}: {}", r.text());
    }
    for id in ["s1", "s2", "s3", "s4", "s5", "s6", "77"] {
        assert_eq!(h.event_count(id).await, 1, "{id}");
    }
    // engage: a $set through /engage/.
    let r = h
        .capture_raw(
            "/engage/",
            &[JSON],
            json!({"api_key": t, "event": "$set", "distinct_id": "s1", "$set": {"plan": "pro"}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        h.person("s1").await.expect("s1")["properties"]["plan"],
        "pro"
    );

    // Ids cut to 200 characters.
    let long = "x".repeat(300);
    h.event("long", &long, json!({})).await;
    assert_eq!(h.event_count(&long[..200]).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refusals_write_nothing() {
    let h = Harness::new();
    let (_, other, _) = h.other_project();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"batch": [{"event": "t", "distinct_id": "t1"}]}),
            "event submitted without an api_key",
        ),
        (
            json!([{"event": "t", "distinct_id": "t1", "api_key": h.token},
                   {"event": "t", "distinct_id": "t1", "api_key": other}]),
            "batch submitted with inconsistent api_key values",
        ),
        (
            json!({"api_key": h.key, "batch": [{"event": "t", "distinct_id": "t1"}]}),
            "API key is not valid",
        ),
        (
            json!({"api_key": "phc_unknown", "batch": [{"event": "t", "distinct_id": "t1"}]}),
            "API key is not valid",
        ),
    ];
    for (body, want) in cases {
        let r = h
            .capture_raw("/batch/", &[JSON], body.to_string().into_bytes())
            .await;
        let d = r.envelope(401);
        assert!(d.starts_with(want), "{d} vs {want}");
    }
    assert_eq!(h.event_count("t1").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_fail_the_whole_request() {
    let h = Harness::new();
    let t = h.token.clone();
    // PostHog's texts.
    for (b, text) in [
        (
            json!([{"event": "ok", "distinct_id": "v1"}, {"event": "no id"}]),
            "event submitted without a distinct_id",
        ),
        (
            json!([{"event": "ok", "distinct_id": "v1"}, {"event": "", "distinct_id": "v1"}]),
            "event submitted with an empty event name",
        ),
        (
            json!([{"event": "ok", "distinct_id": "v1"}, {"distinct_id": "v1"}]),
            "event submitted with an empty event name",
        ),
    ] {
        let r = h.capture_raw("/batch/", &[JSON], batch(&t, b)).await;
        assert_eq!(r.envelope(400), text);
    }
    let bad_batches = [
        json!([{"event": "ok", "distinct_id": "v1"}, {"event": "e", "distinct_id": "v1", "properties": []}]),
        json!([{"event": "ok", "distinct_id": "v1"}, {"event": "$snapshot", "distinct_id": "v1", "properties": {}}]),
        json!([{"event": "ok", "distinct_id": "v1"}, {"event": "e\u{0}", "distinct_id": "v1"}]),
        json!([]),
    ];
    for b in bad_batches {
        let r = h
            .capture_raw("/batch/", &[JSON], batch(&t, b.clone()))
            .await;
        r.envelope(400);
    }
    let r = h
        .capture_raw("/batch/", &[JSON], b"{\"batch\": [".to_vec())
        .await;
    assert!(r.envelope(400).starts_with("failed to parse request"));
    let r = h.capture_raw("/batch/", &[JSON], Vec::new()).await;
    assert_eq!(r.envelope(400), "request holds no event");
    // JSON that is neither an event, a list nor a batch says so (it was
    // read as base64 and answered "not UTF-8").
    for body in ["null", " 5", "\"text\""] {
        let r = h
            .capture_raw("/batch/", &[JSON], body.as_bytes().to_vec())
            .await;
        assert!(
            r.envelope(400).contains("expected an event"),
            "{body}: {}",
            r.text()
        );
    }
    assert_eq!(h.event_count("v1").await, 0);
    assert!(h.person("v1").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_skew_offset_and_future_clamp() {
    let h = Harness::new();
    let now = chrono::Utc::now();
    let iso = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    // The client's clock is 2 h behind: sent_at corrects the timestamp.
    let client_now = now - chrono::Duration::hours(2);
    let body = json!({"api_key": h.token, "sent_at": iso(client_now), "batch": [
        {"event": "skew", "distinct_id": "ts1", "timestamp": iso(client_now - chrono::Duration::minutes(10))},
        {"event": "skew", "distinct_id": "ts2", "timestamp": iso(client_now), "properties": {"$ignore_sent_at": true}},
        {"event": "skew", "distinct_id": "ts3", "offset": 60_000},
        {"event": "skew", "distinct_id": "ts4", "timestamp": iso(now + chrono::Duration::days(2))},
    ]});
    let r = h
        .capture_raw("/batch/", &[JSON], body.to_string().into_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &h;
    let minutes_ago = |id: &str| {
        let id = id.to_string();
        async move {
            let rows = h
                .hogql(&format!(
                    "select dateDiff('second', timestamp, now()) from events where distinct_id = '{id}'"
                ))
                .await;
            rows[0][0].as_i64().expect("seconds") as f64 / 60.0
        }
    };
    let m1 = minutes_ago("ts1").await;
    assert!((9.0..=11.5).contains(&m1), "skew-corrected: {m1} min ago");
    let m2 = minutes_ago("ts2").await;
    assert!(
        (119.0..=121.5).contains(&m2),
        "$ignore_sent_at: {m2} min ago"
    );
    let m3 = minutes_ago("ts3").await;
    assert!((0.9..=2.5).contains(&m3), "offset: {m3} min ago");
    let m4 = minutes_ago("ts4").await;
    assert!((-0.1..=1.5).contains(&m4), "clamped: {m4} min ago");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_commits_and_all_land() {
    let h = std::sync::Arc::new(Harness::new());
    let mut tasks = Vec::new();
    for c in 0..16 {
        let h = std::sync::Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            for r in 0..5 {
                let events: Vec<Value> = (0..50)
                    .map(|i| json!({"event": "burst", "distinct_id": format!("c{c}-{}", (r * 50 + i) % 7), "properties": {"i": i}}))
                    .collect();
                let resp = h.capture_raw("/batch/", &[JSON], batch(&h.token, json!(events))).await;
                assert_eq!(resp.status, 200, "{}", resp.text());
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let rows = h
        .hogql("select count() from events where event = 'burst'")
        .await;
    assert_eq!(rows[0][0], 16 * 5 * 50);
    let persons = h.hogql("select count() from persons").await;
    assert_eq!(persons[0][0], 16 * 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_go_to_recordings() {
    let h = Harness::new();
    let snap = json!({"api_key": h.token, "batch": [
        {"event": "$snapshot", "distinct_id": "r1", "properties": {"$session_id": "S", "$window_id": "W", "$snapshot_data": {"type": 2}}},
    ]});
    let r = h
        .capture_raw("/s/", &[JSON], gzip(snap.to_string().as_bytes()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = h
        .hogql("select session_id, window_id, distinct_id from recordings")
        .await;
    assert_eq!(rows, vec![json!(["S", "W", "r1"])]);
    // No $snapshot reached the events table.
    let rows = h
        .hogql("select count() from events where event = '$snapshot'")
        .await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_settings_scrub_before_writing() {
    let h = Harness::new();
    h.event("with_ip", "ip1", json!({})).await;
    let rows = h
        .hogql("select properties.$ip from events where distinct_id = 'ip1'")
        .await;
    assert_eq!(rows[0][0], "127.0.0.1");
    let r = h
        .call(
            "PATCH",
            &format!("{}/", h.api()),
            Some(&json!({"anonymize_ips": true, "drop_properties": ["secret", "$set_secret"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["anonymize_ips"], true);
    h.event(
        "scrubbed",
        "ip2",
        json!({"$ip": "10.1.2.3", "secret": "s3cr3t", "kept": 1, "$set": {"secret": "x", "email": "a@b.c"}}),
    )
    .await;
    let rows = h
        .hogql("select properties from events where distinct_id = 'ip2'")
        .await;
    let props: Value = serde_json::from_str(rows[0][0].as_str().expect("text")).expect("json");
    assert!(props.get("$ip").is_none(), "{props}");
    assert!(props.get("secret").is_none(), "{props}");
    assert_eq!(props["kept"], 1);
    let p = h.person("ip2").await.expect("person");
    assert!(p["properties"].get("secret").is_none());
    assert_eq!(p["properties"]["email"], "a@b.c");
    // The raw bytes on disk never saw the value either.
    h.state.app().store().flush().expect("flush");
    let mut found = false;
    for e in walk(h.dir.path()) {
        let bytes = std::fs::read(&e).unwrap_or_default();
        if bytes.windows(6).any(|w| w == b"s3cr3t") {
            found = true;
        }
    }
    assert!(!found, "a dropped property reached the disk");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let h = Harness::new();
    let big = "y".repeat(21 << 20);
    let body = json!({"api_key": h.token, "batch": [{"event": "big", "distinct_id": "big", "properties": {"p": big}}]});
    let r = h
        .capture_raw("/batch/", &[JSON], body.to_string().into_bytes())
        .await;
    assert_eq!(r.envelope(413), "request is larger than 20 MiB");
    // A gzip bomb: small on the wire, too big once inflated.
    let r = h
        .capture_raw("/batch/", &[JSON], gzip(body.to_string().as_bytes()))
        .await;
    r.envelope(413);
    assert_eq!(h.event_count("big").await, 0);
}
