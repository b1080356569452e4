//! Analytics over a real data directory: PostHog's scenarios for funnels,
//! funnel persons and lifecycle (`posthog-analytics.md` §5), person
//! identity (merged ids count once), and deletion (a deleted person's
//! results equal those of a dataset that never had the person, at once,
//! after purge and after reopening).

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use elide_app::analytics::filter::Params;
use elide_app::analytics::funnel::{self, FunnelSpec, StepSelection};
use elide_app::analytics::lifecycle::{self, LifecycleSpec};
use elide_app::query::QueryLimits;
use elide_app::{App, AppConfig};
use elide_persons::{DeletePersons, Persons, SqliteMeta};
use serde_json::{json, Value};

const P: i64 = 1;

fn open(dir: &std::path::Path) -> App {
    let mut cfg = AppConfig::new(dir);
    cfg.store = elide_store::StoreOptions::default();
    let app = App::open(cfg).expect("open");
    app.persons().ensure_project(P).expect("project");
    app
}

/// Capture `(distinct id, event, ISO time, properties)`.
fn capture(persons: &Arc<Persons<SqliteMeta>>, events: &[(&str, &str, &str, Value)]) {
    let now = Utc::now().timestamp_micros();
    let list: Vec<_> = events
        .iter()
        .map(|(d, e, t, props)| {
            elide_persons::capture::parse_event(
                json!({"event": e, "distinct_id": d, "timestamp": t, "properties": props}),
                now,
            )
            .expect("event")
        })
        .collect();
    persons.capture(P, &list).expect("capture");
}

/// The UUID of a distinct id's person.
fn uuid_of(app: &App, distinct_id: &str) -> String {
    app.persons()
        .by_distinct_ids(P, &[distinct_id.to_string()])
        .expect("lookup")
        .into_values()
        .next()
        .expect("person")
        .uuid
        .hyphenated()
        .to_string()
}

fn params(v: Value) -> Params {
    Params::new(Vec::new(), Some(v)).expect("params")
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("now")
}

async fn funnel_actors(app: &App, p: &Value) -> (FunnelSpec, Vec<funnel::Actor>) {
    let spec = FunnelSpec::parse(&params(p.clone()), now()).expect("spec");
    let actors = funnel::actors(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("actors");
    (spec, actors)
}

fn selected(actors: &[funnel::Actor], p: Value, n: usize) -> Vec<String> {
    let sel = StepSelection::parse(&params(p), n).expect("selection");
    actors
        .iter()
        .filter(|a| sel.wants(a))
        .map(|a| a.person.clone())
        .collect()
}

fn events_param(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"id": n, "type": "events", "order": i}))
            .collect(),
    )
}

#[tokio::test]
async fn funnel_persons_scenarios() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    let names: Vec<String> = (0..35).map(|u| format!("user_{u}")).collect();
    for (u, n) in names.iter().enumerate() {
        evs.push((n.as_str(), "step one", "2021-05-01T00:00:00Z", json!({})));
        if u < 15 {
            evs.push((n.as_str(), "step two", "2021-05-03T00:00:00Z", json!({})));
        }
        if u < 5 {
            evs.push((n.as_str(), "step three", "2021-05-05T00:00:00Z", json!({})));
        }
    }
    capture(app.persons(), &evs);
    let p = json!({
        "date_from": "2021-05-01 00:00:00", "date_to": "2021-05-07 00:00:00",
        "interval": "day", "funnel_window_days": 7,
        "events": events_param(&["step one", "step two", "step three"]),
    });
    let (spec, actors) = funnel_actors(&app, &p).await;
    let n = spec.steps.len();
    let count = |sel: Value| selected(&actors, sel, n).len();
    // Scenarios 1-4.
    assert_eq!(count(json!({"funnel_step": 1})), 35);
    assert_eq!(count(json!({"funnel_step": 3})), 5);
    assert_eq!(count(json!({"funnel_step": -2})), 20);
    assert_eq!(count(json!({"funnel_step": -3})), 10);
    // Scenario 5.
    for (step, custom, want) in [
        (1, vec![1, 2, 3], 35),
        (2, vec![2, 3], 15),
        (3, vec![3], 5),
        (-2, vec![1], 20),
        (-3, vec![2], 10),
    ] {
        assert_eq!(count(json!({"funnel_step": step})), want);
        assert_eq!(count(json!({"funnel_custom_steps": custom})), want);
    }
    assert_eq!(count(json!({"funnel_custom_steps": [1, 2]})), 30);
    assert_eq!(count(json!({"funnel_custom_steps": [1, 3]})), 25);
    assert_eq!(count(json!({"funnel_custom_steps": [3, 1]})), 25);
    assert_eq!(count(json!({"funnel_custom_steps": "[1, 3, 3, 1]"})), 25);
    assert_eq!(
        count(json!({"funnel_step": 1, "funnel_custom_steps": [3]})),
        5
    );
    // Errors.
    for (sel, msg) in [
        (
            json!({}),
            "Missing both funnel_step and funnel_custom_steps",
        ),
        (
            json!({"funnel_step": -1}),
            "To request dropoff of initial step use -2",
        ),
    ] {
        let e = StepSelection::parse(&params(sel), n).expect_err("refused");
        assert!(e.to_string().contains(msg), "{e}");
    }
    // The insight: counts and URLs.
    let steps = funnel::steps(&spec, &actors, "/api/person/funnel/?");
    let counts: Vec<u64> = steps
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(counts, vec![35, 15, 5]);
    assert_eq!(steps[0]["dropped_people_url"], Value::Null);
    assert!(steps[1]["dropped_people_url"]
        .as_str()
        .expect("url")
        .ends_with("funnel_step=-2"));
    app.close().expect("close");
}

#[tokio::test]
async fn funnel_breakdowns_strict_and_conversion_times() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    // Scenario 7 (and 18): breakdown by $browser, by two keys, by a person property.
    capture(
        app.persons(),
        &[
            (
                "person1",
                "sign up",
                "2020-01-01T12:00:00Z",
                json!({"$browser": "Chrome", "$browser_version": 95, "$set": {"$country": "PL"}}),
            ),
            (
                "person1",
                "play movie",
                "2020-01-01T13:00:00Z",
                json!({"$browser": "Chrome", "$browser_version": 95}),
            ),
            (
                "person1",
                "buy",
                "2020-01-01T15:00:00Z",
                json!({"$browser": "Chrome", "$browser_version": 95}),
            ),
            (
                "person2",
                "sign up",
                "2020-01-02T14:00:00Z",
                json!({"$browser": "Safari", "$browser_version": 14, "$set": {"$country": "EE"}}),
            ),
            (
                "person2",
                "play movie",
                "2020-01-02T16:00:00Z",
                json!({"$browser": "Safari", "$browser_version": 14}),
            ),
        ],
    );
    let base = json!({"date_from": "2020-01-01", "date_to": "2020-01-08", "funnel_window_days": 7,
        "events": events_param(&["sign up", "play movie", "buy"])});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };
    let person = |app: &App, d: &str| uuid_of(app, d);
    let (p1, p2) = (person(&app, "person1"), person(&app, "person2"));
    let (spec, actors) = funnel_actors(
        &app,
        &with(json!({"breakdown_type": "event", "breakdown": "$browser"})),
    )
    .await;
    let n = spec.steps.len();
    let mut both = vec![p1.clone(), p2.clone()];
    both.sort();
    assert_eq!(selected(&actors, json!({"funnel_step": 1}), n), both);
    assert_eq!(
        selected(
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": "Chrome"}),
            n
        ),
        vec![p1.clone()]
    );
    assert_eq!(
        selected(
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": "Safari"}),
            n
        ),
        vec![p2.clone()]
    );
    let (_, actors) = funnel_actors(
        &app,
        &with(json!({"breakdown": ["$browser", "$browser_version"]})),
    )
    .await;
    assert_eq!(
        selected(
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": ["Chrome", "95"]}),
            n
        ),
        vec![p1.clone()]
    );
    let (_, actors) = funnel_actors(
        &app,
        &with(json!({"breakdown_type": "person", "breakdown": "$country"})),
    )
    .await;
    assert_eq!(
        selected(
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": "EE"}),
            n
        ),
        vec![p2.clone()]
    );

    // Scenario 20: conversion times, in every order type (person3 added).
    capture(
        app.persons(),
        &[
            ("person3", "sign up", "2020-01-02T14:00:00Z", json!({})),
            ("person3", "play movie", "2020-01-02T16:00:00Z", json!({})),
            ("person3", "buy", "2020-01-02T17:00:00Z", json!({})),
        ],
    );
    for order in ["ordered", "strict", "unordered"] {
        let (spec, actors) = funnel_actors(&app, &with(json!({"funnel_order_type": order}))).await;
        let steps = funnel::steps(&spec, &actors, "");
        assert_eq!(steps[0]["average_conversion_time"], Value::Null, "{order}");
        assert_eq!(
            steps[1]["average_conversion_time"],
            json!(6000.0),
            "{order}"
        );
        assert_eq!(steps[1]["median_conversion_time"], json!(7200.0), "{order}");
        assert_eq!(
            steps[2]["average_conversion_time"],
            json!(5400.0),
            "{order}"
        );
        assert_eq!(steps[2]["median_conversion_time"], json!(5400.0), "{order}");
        if order == "unordered" {
            assert_eq!(steps[1]["name"], json!("Completed 2 steps"));
        }
    }

    // Scenario 18: strict, with a breakdown: an event between breaks the chain.
    capture(
        app.persons(),
        &[
            (
                "s1",
                "sign up",
                "2020-01-03T12:00:00Z",
                json!({"$browser": "Firefox"}),
            ),
            (
                "s1",
                "blah",
                "2020-01-03T13:00:00Z",
                json!({"$browser": "Firefox"}),
            ),
            (
                "s1",
                "play movie",
                "2020-01-03T14:00:00Z",
                json!({"$browser": "Firefox"}),
            ),
        ],
    );
    let p = json!({"date_from": "2020-01-03", "date_to": "2020-01-04", "funnel_window_days": 7,
        "funnel_order_type": "strict", "breakdown": "$browser", "events": events_param(&["sign up", "play movie"])});
    let (spec, actors) = funnel_actors(&app, &p).await;
    let steps = funnel::steps(&spec, &actors, "");
    assert_eq!(steps[0][0]["breakdown_value"], json!(["Firefox"]));
    assert_eq!(
        (steps[0][0]["count"].as_u64(), steps[0][1]["count"].as_u64()),
        (Some(1), Some(0))
    );
    app.close().expect("close");
}

#[tokio::test]
async fn funnel_parameters_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = events_param(&["a", "b"]);
    for (p, msg) in [
        (
            json!({"events": ev, "funnel_order_type": "sideways"}),
            "funnel_order_type",
        ),
        (
            json!({"events": ev, "funnel_window_interval": 3, "funnel_window_interval_unit": "fortnight"}),
            "fortnight not supported",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "x", "type": "events"}]}),
            "Exclusion event needs to define funnel steps",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "x", "funnel_from_step": 1, "funnel_to_step": 1}]}),
            "End of range should be greater than start",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "x", "funnel_from_step": 0, "funnel_to_step": 2}]}),
            "End of range is greater than number of steps",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "a", "funnel_from_step": 0, "funnel_to_step": 1}]}),
            "can't be the same as funnel step",
        ),
        (
            json!({"events": events_param(&["a", "b", "c"]), "funnel_order_type": "unordered", "exclusions": [{"id": "x", "funnel_from_step": 0, "funnel_to_step": 1}]}),
            "Partial Exclusions not allowed",
        ),
        (
            json!({"events": ev, "actions": [{"id": 3, "type": "actions"}]}),
            "actions",
        ),
        (
            json!({"events": ev, "date_from": "yesterday-ish"}),
            "date_from",
        ),
        (
            json!({"events": ev, "properties": "{not json"}),
            "Properties are unparsable",
        ),
        (
            json!({"events": ev, "properties": [{"key": "n", "value": "x", "operator": "gt"}]}),
            "needs a number",
        ),
    ] {
        let e = FunnelSpec::parse(&params(p.clone()), now()).expect_err(&p.to_string());
        assert!(e.to_string().contains(msg), "{p}: {e}");
    }
    // Relative dates: -7d is midnight seven days ago.
    let spec = FunnelSpec::parse(&params(json!({"events": ev})), now()).expect("spec");
    assert_eq!(
        spec.range.from,
        Some(
            Utc.with_ymd_and_hms(2025, 12, 25, 0, 0, 0)
                .single()
                .expect("t")
                .timestamp_micros()
        )
    );
    app.close().expect("close");
}

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

async fn lifecycle_of(app: &App, extra: Value) -> (LifecycleSpec, lifecycle::Lifecycle, Value) {
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

/// Funnel steps and lifecycle series of the current data (persons'
/// UUIDs are left out: they identify the same persons in both datasets
/// only through their distinct ids).
async fn analytics_of(app: &App) -> (Value, Value, Vec<Vec<String>>) {
    let p = json!({"date_from": "2020-01-01", "date_to": "2020-01-20", "funnel_window_days": 3,
        "events": events_param(&["$pageview", "signup", "purchase"])});
    let (spec, actors) = funnel_actors(app, &p).await;
    let steps = funnel::steps(&spec, &actors, "");
    let mut at_step: Vec<Vec<String>> = Vec::new();
    for k in 1..=3 {
        let mut ids: Vec<String> = actors
            .iter()
            .filter(|a| a.steps >= k)
            .flat_map(|a| {
                app.persons()
                    .by_uuids(P, std::slice::from_ref(&a.person))
                    .expect("lookup")
                    .into_values()
                    .flat_map(|p| p.distinct_ids)
            })
            .collect();
        ids.sort();
        at_step.push(ids);
    }
    let (_, _, s) = lifecycle_of(
        app,
        json!({"date_from": "2020-01-02T00:00:00Z", "date_to": "2020-01-19T00:00:00Z"}),
    )
    .await;
    (steps, s, at_step)
}

fn generated() -> Vec<(String, &'static str, String, Value)> {
    let mut v = Vec::new();
    for u in 0..40u32 {
        let d = format!("user{u}");
        let day = 1 + (u % 15);
        let names = ["$pageview", "signup", "purchase"];
        let k = 1 + (u as usize * 7) % 3;
        for (i, n) in names.iter().take(k).enumerate() {
            let hour = 8 + i * ((u as usize % 4) + 1) * 7;
            v.push((
                d.clone(),
                *n,
                format!(
                    "2020-01-{:02}T{:02}:00:00Z",
                    day + (hour / 24) as u32,
                    hour % 24
                ),
                json!({}),
            ));
        }
        if u % 3 == 0 {
            v.push((
                d.clone(),
                "$pageview",
                format!("2020-01-{:02}T09:00:00Z", day + 2),
                json!({}),
            ));
        }
    }
    v
}

#[tokio::test]
async fn a_deleted_person_leaves_every_result_at_once_after_purge_and_after_reopen() {
    let all = generated();
    let deleted = ["user3", "user7", "user12"];
    let refs =
        |rows: &[(String, &'static str, String, Value)]| -> Vec<(String, String, String, Value)> {
            rows.iter()
                .map(|(a, b, c, d)| (a.clone(), b.to_string(), c.clone(), d.clone()))
                .collect()
        };
    let cap = |app: &App, rows: &[(String, String, String, Value)]| {
        let r: Vec<(&str, &str, &str, Value)> = rows
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.clone()))
            .collect();
        capture(app.persons(), &r);
    };
    // The dataset that never had them.
    let without_dir = tempfile::tempdir().expect("dir");
    let without = open(without_dir.path());
    let kept: Vec<_> = all
        .iter()
        .filter(|r| !deleted.contains(&r.0.as_str()))
        .cloned()
        .collect();
    cap(&without, &refs(&kept));
    let want = analytics_of(&without).await;
    without.close().expect("close");

    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    cap(&app, &refs(&all));
    app.store().flush().expect("flush");
    let before = analytics_of(&app).await;
    assert_ne!(before, want, "the deleted persons matter to the results");
    let r = app
        .persons()
        .delete(
            P,
            &DeletePersons {
                uuids: Vec::new(),
                distinct_ids: deleted.iter().map(|s| s.to_string()).collect(),
                delete_events: true,
                delete_recordings: false,
                keep_person: false,
            },
        )
        .expect("delete");
    assert_eq!(r.persons_deleted, 3);
    assert_eq!(analytics_of(&app).await, want, "at once");
    app.store()
        .compact(elide_store::CompactRequest::now())
        .expect("purge");
    assert_eq!(analytics_of(&app).await, want, "after purge");
    app.close().expect("close");
    let app = open(dir.path());
    assert_eq!(analytics_of(&app).await, want, "after reopening");
    app.close().expect("close");
}
