//! The insight query kinds of `POST …/query/` over HTTP: trends, and
//! funnels, lifecycle, stickiness and retention as their legacy routes
//! answer them.

use serde_json::{json, Value};

use super::{capture_all, steps};
use crate::common::{urlencode, Harness};

#[tokio::test]
async fn trends_query_through_the_query_endpoint() {
    let h = Harness::new();
    let mut events = Vec::new();
    for (d, day, browser) in [
        ("a", 1, "Chrome"),
        ("a", 1, "Chrome"),
        ("b", 1, "Safari"),
        ("b", 2, "Safari"),
        ("gone", 2, "Chrome"),
    ] {
        events.push(json!({"event": "$pageview", "distinct_id": d,
            "timestamp": format!("2020-01-0{day}T12:00:00Z"), "properties": {"$browser": browser}}));
    }
    capture_all(&h, events).await;
    let body = |math: &str, breakdown: Value| {
        json!({"query": {"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-03"},
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": math}],
            "breakdownFilter": breakdown}})
    };
    let url = format!("{}/query/", h.api());
    let r = h.post(&url, &body("total", Value::Null)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["data"], json!([3.0, 2.0, 0.0]));
    assert_eq!(
        r.json["results"][0]["days"],
        json!(["2020-01-01", "2020-01-02", "2020-01-03"])
    );
    assert_eq!(r.json["is_cached"], json!(false));
    // All time: from the first event's day (PostHog's earliest timestamp).
    let mut all = body("total", Value::Null);
    all["query"]["dateRange"]["date_from"] = json!("all");
    let r = h.post(&url, &all).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["data"], json!([3.0, 2.0, 0.0]));
    let r = h.post(&url, &body("dau", Value::Null)).await;
    assert_eq!(r.json["results"][0]["data"], json!([2.0, 2.0, 0.0]));
    // A formula's row instead of the series'.
    let mut f = body("total", Value::Null);
    f["query"]["trendsFilter"] = json!({"formula": "A * 2 + 1"});
    let r = h.post(&url, &f).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["data"], json!([7.0, 5.0, 1.0]));
    assert_eq!(r.json["results"][0]["label"], "Formula (A * 2 + 1)");
    f["query"]["trendsFilter"] = json!({"formula": "A * B"});
    assert!(h.post(&url, &f).await.envelope(400).contains("series B"));
    // Compared with the previous period (12-29 to 12-31: nothing).
    let mut c = body("total", Value::Null);
    c["query"]["compareFilter"] = json!({"compare": true});
    let r = h.post(&url, &c).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["compare_label"], "current");
    assert_eq!(r.json["results"][0]["data"], json!([3.0, 2.0, 0.0]));
    assert_eq!(r.json["results"][1]["compare_label"], "previous");
    assert_eq!(r.json["results"][1]["data"], json!([0.0, 0.0, 0.0]));
    assert_eq!(
        r.json["results"][1]["days"],
        json!(["2019-12-29", "2019-12-30", "2019-12-31"])
    );
    let r = h
        .post(&url, &body("total", json!({"breakdown": "$browser"})))
        .await;
    let results = r.json["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{}", r.text());
    assert_eq!(results[0]["breakdown_value"], json!("Chrome"));
    assert_eq!(results[0]["data"], json!([2.0, 1.0, 0.0]));
    // Bad input: 400 envelopes naming the problem.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "TrendsQuery", "series": [{"event": "e", "math": "p99"}]}}),
        )
        .await;
    assert!(r.envelope(400).contains("math p99 needs a math_property"));
    // Events per person, averaged per day; sessions (none: one, "").
    let r = h
        .post(&url, &body("avg_count_per_actor", Value::Null))
        .await;
    assert_eq!(r.json["results"][0]["data"], json!([1.5, 1.0, 0.0]));
    assert_eq!(
        r.json["results"][0]["action"]["math"],
        "avg_count_per_actor"
    );
    let r = h.post(&url, &body("unique_session", Value::Null)).await;
    assert_eq!(r.json["results"][0]["data"], json!([1.0, 1.0, 0.0]));
    let r = h
        .post(&url, &json!({"query": {"kind": "FunnelsQuery"}}))
        .await;
    assert!(r
        .envelope(400)
        .contains("FunnelsQuery: series must be a list"));
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "PathsQuery", "funnelPathsFilter": {}}}),
        )
        .await;
    assert!(r.envelope(400).contains("funnelPathsFilter"));
    let r = h
        .post(&url, &json!({"query": {"kind": "SessionsTimelineQuery"}}))
        .await;
    assert!(r.envelope(400).contains("PathsQuery and ActorsQuery"));
    // A deleted person leaves DAU at once.
    let uuid = h.person("gone").await.expect("person")["uuid"]
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
    let r = h.post(&url, &body("dau", Value::Null)).await;
    assert_eq!(r.json["results"][0]["data"], json!([2.0, 1.0, 0.0]));
    let r = h.post(&url, &body("total", Value::Null)).await;
    assert_eq!(r.json["results"][0]["data"], json!([3.0, 1.0, 0.0]));
}

/// A `FunnelsQuery` and a `LifecycleQuery` through `POST …/query/` answer
/// what their legacy insights answer for the same parameters, and a
/// funnel step's persons URL lists its persons; what they cannot take is
/// a 400 naming it.
#[tokio::test]
async fn funnels_and_lifecycle_queries_answer_as_their_insights() {
    let h = Harness::new();
    let mut events = Vec::new();
    for (d, n, browser) in [
        ("a", 3, "Chrome"),
        ("b", 2, "Chrome"),
        ("c", 1, "Safari"),
        ("x", 3, "Safari"),
    ] {
        for (i, e) in ["$pageview", "signup", "purchase"]
            .iter()
            .take(n)
            .enumerate()
        {
            events.push(json!({"event": e, "distinct_id": d,
                "timestamp": format!("2020-01-0{}T1{i}:00:00Z", 2 + i),
                "properties": {"$browser": browser}}));
        }
    }
    // x cancels between its first and second step.
    events
        .push(json!({"event": "cancel", "distinct_id": "x", "timestamp": "2020-01-02T12:00:00Z"}));
    capture_all(&h, events).await;
    let url = format!("{}/query/", h.api());
    let legacy = h
        .get(&format!(
            "{}/insights/funnel/?events={}&date_from=2020-01-01&date_to=2020-01-08&breakdown=$browser\
             &funnel_window_interval=2&funnel_window_interval_unit=day\
             &exclusions={}",
            h.api(),
            steps(&["$pageview", "signup", "purchase"]),
            urlencode(
                &json!([{"id": "cancel", "type": "events", "funnel_from_step": 0, "funnel_to_step": 1}])
                    .to_string()
            ),
        ))
        .await;
    assert_eq!(legacy.status.as_u16(), 200, "{}", legacy.text());
    let node = json!({"query": {"kind": "FunnelsQuery",
        "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"},
                   {"kind": "EventsNode", "event": "purchase", "custom_name": "Bought"}],
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-08"},
        "breakdownFilter": {"breakdown": "$browser", "breakdown_type": "event"},
        "funnelsFilter": {"funnelWindowInterval": 2, "funnelWindowIntervalUnit": "day",
            "funnelVizType": "steps", "layout": "vertical",
            "exclusions": [{"kind": "EventsNode", "event": "cancel", "funnelFromStep": 0, "funnelToStep": 1}]}}});
    let r = h.post(&url, &node).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let shape = |groups: &Value| -> Vec<Vec<(Value, Value, Value)>> {
        groups
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| {
                g.as_array()
                    .expect("steps")
                    .iter()
                    .map(|s| {
                        (
                            s["breakdown_value"].clone(),
                            s["count"].clone(),
                            s["average_conversion_time"].clone(),
                        )
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(shape(&r.json["results"]), shape(&legacy.json["result"]));
    // The same with the breakdown as PostHog's current editor writes it.
    let mut listed = node.clone();
    listed["query"]["breakdownFilter"] =
        json!({"breakdowns": [{"property": "$browser", "type": "event"}]});
    let r2 = h.post(&url, &listed).await;
    assert_eq!(r2.status.as_u16(), 200, "{}", r2.text());
    assert_eq!(shape(&r2.json["results"]), shape(&r.json["results"]));
    // Chrome: a and b reach signup within two days, a not purchase (day 4).
    let chrome = r.json["results"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g[0]["breakdown_value"] == json!(["Chrome"]))
        .expect("Chrome")
        .clone();
    let counts: Vec<u64> = chrome
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(counts, vec![2, 2, 0]);
    assert_eq!(chrome[2]["custom_name"], "Bought");
    let link = chrome[1]["converted_people_url"].as_str().expect("url");
    let path = link.split_once("localhost").map_or(link, |(_, p)| p);
    let people = h.get(path).await;
    assert_eq!(people.status.as_u16(), 200, "{}", people.text());
    assert_eq!(
        people.json["results"][0]["count"],
        json!(2),
        "{}",
        people.text()
    );

    let ev = urlencode(&json!([{"id": "$pageview", "type": "events", "order": 0}]).to_string());
    let legacy = h
        .get(&format!(
            "{}/insights/trend/?shown_as=Lifecycle&date_from=2020-01-01&date_to=2020-01-06&events={ev}",
            h.api()
        ))
        .await;
    assert_eq!(legacy.status.as_u16(), 200, "{}", legacy.text());
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "LifecycleQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}],
                "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-06"},
                "lifecycleFilter": {"toggledLifecycles": ["new", "dormant"]}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"], legacy.json["result"]);
    assert_eq!(r.json["results"][0]["data"][1], json!(4.0), "{}", r.text());
    // Stickiness: each of the four did $pageview on one day, and a, b, x
    // did something on two or three.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "StickinessQuery",
                "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": null}],
                "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-05"}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["data"], json!([4, 0, 0, 0, 0]));
    assert_eq!(r.json["results"][1]["data"], json!([1, 1, 2, 0, 0]));
    assert_eq!(r.json["results"][1]["label"], "All events");
    // The legacy stickiness persons: the four of one $pageview day.
    let ev = urlencode(&json!([{"id": "$pageview", "type": "events"}]).to_string());
    let sticky = |days: &str| {
        format!(
            "{}/persons/stickiness/?events={ev}&date_from=2020-01-01&date_to=2020-01-05&stickiness_days={days}",
            h.api()
        )
    };
    let r = h.get(&sticky("1")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(4), "{}", r.text());
    // The legacy stickiness insight answers as the StickinessQuery.
    let r = h
        .get(&format!(
            "{}/insights/trend/?shown_as=Stickiness&events={ev}&date_from=2020-01-01&date_to=2020-01-05",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["result"][0]["data"], json!([4, 0, 0, 0, 0]));
    let r = h.get(&sticky("2")).await;
    assert_eq!(r.json["results"][0]["count"], json!(0), "{}", r.text());
    let r = h
        .get(&format!(
            "{}/persons/stickiness/?events={ev}&date_from=2020-01-01",
            h.api()
        ))
        .await;
    assert!(r.envelope(400).contains("stickiness_days"));
    // As every legacy route: test-account filters and actions refused.
    for (extra, says) in [
        ("&filter_test_accounts=true", "filter_test_accounts"),
        ("&actions=%5B%7B%22id%22%3A1%7D%5D", "actions"),
        ("&entity_type=actions", "entity_type"),
    ] {
        let r = h.get(&format!("{}{extra}", sticky("1"))).await;
        assert!(r.envelope(400).contains(says), "{extra}");
    }
    // Retention of $pageview into signup: of the four on 01-02, a and b
    // signed up a day later, x too (its cancel counts for nothing here).
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "RetentionQuery",
                "dateRange": {"date_from": "2020-01-02", "date_to": "2020-01-04"},
                "retentionFilter": {"targetEntity": {"id": "$pageview", "type": "events"},
                    "returningEntity": {"id": "signup", "type": "events"}, "totalIntervals": 3}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["date"], "2020-01-02T00:00:00Z");
    let day0: Vec<u64> = r.json["results"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(day0, vec![4, 3, 0]);

    for (q, says) in [
        (
            json!({"kind": "FunnelsQuery", "series": [{"kind": "ActionsNode", "id": 1}, {"event": "b"}]}),
            "ActionsNode",
        ),
        (
            json!({"kind": "FunnelsQuery", "series": [{"event": "a"}, {"event": "b"}], "compareFilter": {}}),
            "compareFilter is not supported",
        ),
        (
            json!({"kind": "FunnelsQuery", "series": [{"event": "a"}, {"event": "b"}],
                "breakdownFilter": {"breakdowns": [{"property": "x"}, {"property": "y", "type": "person"}]}}),
            "different types",
        ),
        (
            json!({"kind": "FunnelsQuery", "series": [{"event": "a"}, {"event": "b"}],
                "funnelsFilter": {"funnelVizType": "trends"}}),
            "funnel_viz_type",
        ),
        (
            json!({"kind": "FunnelsQuery", "series": [{"event": "a"}, {"event": "b"}],
                "funnelsFilter": {"exclusions": "cancel"}}),
            "exclusions must be a list",
        ),
        (
            json!({"kind": "LifecycleQuery", "series": [], "lifecycleFilter": 3}),
            "lifecycleFilter must be an object",
        ),
        (
            json!({"kind": "LifecycleQuery", "series": [{"event": "a"}], "aggregation_group_type_index": 0}),
            "groups are not supported",
        ),
    ] {
        let r = h.post(&url, &json!({"query": q.clone()})).await;
        let detail = r.envelope(400);
        assert!(detail.contains(says), "{q}: {detail}");
    }
}
