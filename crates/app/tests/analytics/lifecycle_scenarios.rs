//! Lifecycle: PostHog scenarios 12–15, and a merged person counted once.

use serde_json::json;

use elide_app::analytics::lifecycle::{self, LifecycleSpec};

use super::*;

fn lifecycle_data() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let mut v = Vec::new();
    for d in ["11", "12", "13", "15", "17", "19"] {
        v.push(("p1", "$pageview", d, json!({"$number": 1})));
    }
    v.push(("p2", "$pageview", "09", json!({})));
    v.push(("p2", "$pageview", "12", json!({})));
    v.push(("p3", "$pageview", "12", json!({})));
    v.push(("p4", "$pageview", "15", json!({})));
    v
}

fn lifecycle_capture(app: &App, data: &[(&str, &str, &str, Value)]) {
    let owned: Vec<(String, String, String, Value)> = data
        .iter()
        .map(|(d, e, day, p)| {
            (
                d.to_string(),
                e.to_string(),
                format!("2020-01-{day}T12:00:00Z"),
                p.clone(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str, Value)> = owned
        .iter()
        .map(|(a, b, c, p)| (a.as_str(), b.as_str(), c.as_str(), p.clone()))
        .collect();
    capture(app.persons(), &refs);
}

pub(crate) async fn lifecycle_of(
    app: &App,
    extra: Value,
) -> (LifecycleSpec, lifecycle::Lifecycle, Value) {
    let mut p = json!({"date_from": "2020-01-12T00:00:00Z", "date_to": "2020-01-19T00:00:00Z",
        "events": [{"id": "$pageview", "type": "events", "order": 0}], "shown_as": "Lifecycle"});
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    let spec = LifecycleSpec::parse(&params(p), now()).expect("spec");
    let l = lifecycle::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("lifecycle");
    let s = lifecycle::series(&spec, &l);
    (spec, l, s)
}

fn data_of(series: &Value, status: &str) -> Vec<i64> {
    series
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["status"] == status)
        .expect("status")["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as i64)
        .collect()
}

#[tokio::test]
async fn lifecycle_scenarios() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    lifecycle_capture(&app, &lifecycle_data());
    // Scenario 12.
    let (spec, l, s) = lifecycle_of(&app, json!({})).await;
    assert_eq!(data_of(&s, "new"), vec![1, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "returning"), vec![1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "resurrecting"), vec![1, 0, 0, 1, 0, 1, 0, 1]);
    assert_eq!(data_of(&s, "dormant"), vec![0, -2, -1, 0, -2, 0, -1, 0]);
    assert_eq!(s[0]["labels"][0], json!("12-Jan-2020"));
    assert_eq!(s[0]["days"][0], json!("2020-01-12"));
    assert_eq!(s[0]["label"], json!("$pageview - new"));
    // Scenario 15: persons of one period and status.
    let uuid = |d: &str| uuid_of(&app, d);
    let who = |t: &str, st: &str| lifecycle::persons_of(&spec, &l, t, st, now()).expect("persons");
    assert_eq!(who("2020-01-13T00:00:00Z", "returning"), vec![uuid("p1")]);
    assert_eq!(who("2020-01-13T00:00:00Z", "dormant").len(), 2);
    assert_eq!(who("2020-01-14T00:00:00Z", "dormant"), vec![uuid("p1")]);
    assert!(lifecycle::persons_of(&spec, &l, "2020-01-13", "zombie", now()).is_err());
    // Scenario 13: a global property filter.
    let (_, _, s) = lifecycle_of(
        &app,
        json!({"properties": [{"key": "$number", "value": 1}]}),
    )
    .await;
    assert_eq!(data_of(&s, "new"), vec![0; 8]);
    assert_eq!(data_of(&s, "returning"), vec![1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "resurrecting"), vec![0, 0, 0, 1, 0, 1, 0, 1]);
    assert_eq!(data_of(&s, "dormant"), vec![0, 0, -1, 0, -1, 0, -1, 0]);
    app.close().expect("close");
}

#[tokio::test]
async fn lifecycle_counts_a_merged_person_once() {
    // Scenario 14: p1 and another_p1 are one person.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            ("p1", "$pageview", "2020-01-12T12:00:00Z", json!({})),
            ("another_p1", "$pageview", "2020-01-14T12:00:00Z", json!({})),
            (
                "p1",
                "$identify",
                "2020-01-14T12:30:00Z",
                json!({"$anon_distinct_id": "another_p1"}),
            ),
            ("p1", "$pageview", "2020-01-15T12:00:00Z", json!({})),
            ("p1", "$pageview", "2020-01-17T12:00:00Z", json!({})),
            ("p1", "$pageview", "2020-01-19T12:00:00Z", json!({})),
        ],
    );
    let (_, _, s) = lifecycle_of(&app, json!({})).await;
    assert_eq!(data_of(&s, "new"), vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "returning"), vec![0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "resurrecting"), vec![0, 0, 1, 0, 0, 1, 0, 1]);
    assert_eq!(data_of(&s, "dormant"), vec![0, -1, 0, 0, -1, 0, -1, 0]);
    app.close().expect("close");
}
