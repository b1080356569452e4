//! The persons of an insight's point over HTTP: `ActorsQuery` on
//! `POST …/query/` (PostHog's persons modal and persons page) for
//! trends, stickiness, lifecycle and funnels, and the legacy
//! `…/persons/trends/`; what they cannot take is a 400 naming it.

use serde_json::{json, Value};

use super::capture_all;
use crate::common::{urlencode, Harness};

/// a (a@x.io, pro) views on 01-01 twice and 01-02, then signs up on
/// 01-02; b (free) views on 01-01 and signs up on 01-03; c views on
/// 01-02; a personless visitor views on 01-01.
async fn load(h: &Harness) {
    let ev = |d: &str, e: &str, day: u32, h: u32, props: Value| {
        json!({"event": e, "distinct_id": d,
            "timestamp": format!("2020-01-0{day}T{h:02}:00:00Z"), "properties": props})
    };
    capture_all(
        h,
        vec![
            ev(
                "a",
                "$pageview",
                1,
                1,
                json!({"$set": {"email": "a@x.io", "plan": "pro"}, "$browser": "Chrome",
                    "$session_id": "S1", "$window_id": "W1"}),
            ),
            ev(
                "a",
                "$snapshot",
                1,
                1,
                json!({"$session_id": "S1", "$window_id": "W1", "$snapshot_data": {"type": 2}}),
            ),
            ev("a", "$pageview", 1, 2, json!({"$browser": "Chrome"})),
            ev(
                "b",
                "$pageview",
                1,
                3,
                json!({"$set": {"plan": "free"}, "$browser": "Safari", "$session_id": "S2"}),
            ),
            ev(
                "v",
                "$pageview",
                1,
                4,
                json!({"$process_person_profile": false, "$browser": "Chrome"}),
            ),
            ev(
                "a",
                "$pageview",
                2,
                1,
                json!({"$browser": "Chrome", "$session_id": "S1"}),
            ),
            ev("c", "$pageview", 2, 2, json!({"$browser": "Firefox"})),
            ev("a", "signup", 2, 3, json!({})),
            ev("b", "signup", 3, 1, json!({})),
        ],
    )
    .await;
}

fn trends(extra: Value) -> Value {
    let mut q = json!({"kind": "TrendsQuery", "interval": "day",
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-03"},
        "series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}]});
    if let (Value::Object(q), Value::Object(e)) = (&mut q, extra) {
        q.extend(e);
    }
    q
}

/// The persons modal's query of one point of `source`.
fn modal(source: Value, point: Value) -> Value {
    let mut s = json!({"kind": "InsightActorsQuery", "source": source});
    if let (Value::Object(s), Value::Object(p)) = (&mut s, point) {
        s.extend(p);
    }
    json!({"query": {"kind": "ActorsQuery", "source": s,
        "select": ["actor", "event_count", "matched_recordings"],
        "orderBy": ["event_count DESC, actor_id DESC"]}})
}

fn emails(r: &Value) -> Vec<Value> {
    r["results"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0]["properties"]["email"].clone())
        .collect()
}

#[tokio::test]
async fn the_persons_of_a_trends_point() {
    let h = Harness::new();
    load(&h).await;
    let url = format!("{}/query/", h.api());
    // 01-01: a twice, b once (the visitor has no profile).
    let r = h
        .post(
            &url,
            &modal(trends(json!({})), json!({"day": "2020-01-01", "series": 0})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.json["columns"],
        json!(["actor", "event_count", "matched_recordings"])
    );
    let rows = r.json["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{}", r.text());
    assert_eq!(rows[0][0]["properties"]["email"], "a@x.io");
    assert_eq!(rows[0][0]["distinct_ids"], json!(["a"]));
    assert_eq!(rows[0][1], json!(2));
    assert_eq!(rows[1][0]["properties"]["plan"], "free");
    assert_eq!(rows[1][1], json!(1));
    assert_eq!(r.json["hasMore"], json!(false));
    assert_eq!(r.json["missing_actors_count"], json!(0));
    // a's recorded session S1 (b's S2 has no recording).
    assert_eq!(rows[0][2][0]["session_id"], "S1", "{}", r.text());
    let events = rows[0][2][0]["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{}", r.text());
    assert_eq!(events[0]["window_id"], "W1");
    assert_eq!(events[0]["timestamp"], "2020-01-01T01:00:00.000000Z");
    assert_eq!(events[0]["uuid"].as_str().map(str::len), Some(36));
    assert_eq!(rows[0][2].as_array().map(Vec::len), Some(1));
    assert_eq!(rows[1][2], json!([]));
    // A breakdown value: Chrome on 01-01 is a.
    let q = trends(json!({"breakdownFilter": {"breakdown": "$browser"}}));
    let r = h
        .post(
            &url,
            &modal(
                q.clone(),
                json!({"day": "2020-01-01", "breakdown": "Chrome"}),
            ),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(emails(&r.json), [json!("a@x.io")]);
    // The modal's list form of it, and a null in it (an unset value is "").
    let r = h
        .post(
            &url,
            &modal(
                q.clone(),
                json!({"day": "2020-01-01", "breakdown": ["Chrome"]}),
            ),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(emails(&r.json), [json!("a@x.io")]);
    let r = h
        .post(
            &url,
            &modal(q, json!({"day": "2020-01-01", "breakdown": [null]})),
        )
        .await;
    assert!(
        r.envelope(400).contains("breakdown value is text"),
        "{}",
        r.text()
    );
    // A total value: everyone of the range, by the default columns.
    let q = trends(json!({"trendsFilter": {"display": "BoldNumber"}}));
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "source": {"kind": "InsightActorsQuery", "source": q}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.json["columns"],
        json!(["person", "id", "person.$delete", "event_distinct_ids"])
    );
    assert_eq!(r.json["results"].as_array().expect("rows").len(), 3);
    assert_eq!(r.json["results"][0][2], json!(1));
    // Paging: one a page, the first has more; a search narrows.
    let mut one = modal(trends(json!({})), json!({"day": "2020-01-01"}));
    one["query"]["limit"] = json!(1);
    let r = h.post(&url, &one).await;
    assert_eq!(emails(&r.json), [json!("a@x.io")]);
    assert_eq!(r.json["hasMore"], json!(true));
    one["query"]["offset"] = json!(1);
    let r = h.post(&url, &one).await;
    assert_eq!(r.json["results"][0][0]["properties"]["plan"], "free");
    assert_eq!(r.json["hasMore"], json!(false));
    let mut searched = modal(trends(json!({})), json!({"day": "2020-01-01"}));
    searched["query"]["search"] = json!("A@X");
    let r = h.post(&url, &searched).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(emails(&r.json), [json!("a@x.io")]);
    // The page's recordings, read after the search narrowed it.
    assert_eq!(
        r.json["results"][0][2][0]["session_id"],
        "S1",
        "{}",
        r.text()
    );
    let mut filtered = modal(trends(json!({})), json!({"day": "2020-01-01"}));
    filtered["query"]["properties"] =
        json!([{"key": "plan", "value": "free", "operator": "exact", "type": "person"}]);
    let r = h.post(&url, &filtered).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"].as_array().expect("rows").len(), 1);
    assert_eq!(r.json["results"][0][0]["properties"]["plan"], "free");

    // The legacy trends persons: the period starting at date_from.
    let ev = urlencode(&json!([{"id": "$pageview", "type": "events", "math": "dau"}]).to_string());
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={ev}&date_from=2020-01-02&interval=day",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(2), "{}", r.text());
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={ev}&date_from=2020-01-01&breakdown=%24browser&breakdown_value=Safari",
            h.api()
        ))
        .await;
    assert_eq!(r.json["results"][0]["count"], json!(1), "{}", r.text());
    // An hour: a's first view; entity_math picks the entity of that
    // math among those of one event.
    let both = urlencode(
        &json!([{"id": "$pageview", "type": "events", "math": "total"},
                {"id": "$pageview", "type": "events", "math": "dau", "properties": [{"key": "$browser", "value": "Safari"}]}])
        .to_string(),
    );
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={both}&entity_id=%24pageview&entity_math=total&date_from=2020-01-01T01:00:00Z&interval=hour",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(1), "{}", r.text());
    assert_eq!(
        r.json["results"][0]["people"][0]["properties"]["email"],
        "a@x.io"
    );
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={both}&entity_id=%24pageview&entity_math=dau&date_from=2020-01-01",
            h.api()
        ))
        .await;
    assert_eq!(r.json["results"][0]["count"], json!(1), "{}", r.text());
    assert_eq!(
        r.json["results"][0]["people"][0]["properties"]["plan"],
        "free"
    );
    // The stickiness persons take entity_math and ignore it.
    let r = h
        .get(&format!(
            "{}/persons/stickiness/?events={ev}&entity_id=%24pageview&entity_math=dau&date_from=2020-01-01&date_to=2020-01-03&stickiness_days=2",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(1), "{}", r.text());
    // A date_from whose interval would end past the year 9999.
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={ev}&date_from=9999-12-15&interval=month",
            h.api()
        ))
        .await;
    assert!(r.envelope(400).contains("9999"), "{}", r.text());
    // Weekly active persons by week are the week's unique users, as the
    // chart counts them (no one in the week from 01-05), not the 6 days
    // before too (a, b, c).
    let wau = urlencode(
        &json!([{"id": "$pageview", "type": "events", "math": "weekly_active"}]).to_string(),
    );
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={wau}&date_from=2020-01-05&interval=week",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(0), "{}", r.text());
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={wau}&date_from=2020-01-05&interval=day",
            h.api()
        ))
        .await;
    assert_eq!(
        r.json["results"][0]["count"],
        json!(3),
        "by day: {}",
        r.text()
    );
    // A total-value display: the range given.
    let r = h
        .get(&format!(
            "{}/persons/trends/?events={ev}&date_from=2020-01-01&date_to=2020-01-03&display=ActionsTable",
            h.api()
        ))
        .await;
    assert_eq!(r.json["results"][0]["count"], json!(3), "{}", r.text());

    // A deleted person leaves at once.
    let uuid = h.person("b").await.expect("b")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    let d = h
        .call("DELETE", &format!("{}/persons/{uuid}/", h.api()), None)
        .await;
    assert!(d.status.is_success(), "{}", d.text());
    let r = h
        .post(
            &url,
            &modal(trends(json!({})), json!({"day": "2020-01-01"})),
        )
        .await;
    assert_eq!(emails(&r.json), [json!("a@x.io")]);
}

/// The persons of a point of a compared trend's previous period
/// (`compare: "previous"`): the query's over that period, the previous
/// period as the chart places it (with `compare_to`, at its offset).
#[tokio::test]
async fn the_persons_of_a_compared_trends_point() {
    let h = Harness::new();
    load(&h).await;
    let url = format!("{}/query/", h.api());
    let compared = |compare: Value, display: Option<&str>| {
        let mut q = trends(json!({"compareFilter": compare}));
        q["dateRange"] = json!({"date_from": "2020-01-02", "date_to": "2020-01-03"});
        if let Some(d) = display {
            q["trendsFilter"] = json!({"display": d});
        }
        q
    };
    // The chart: the previous period of 01-02..01-03 is 12-31..01-01;
    // with compare_to -1d it is 01-01..01-02 (01-01: a, b and the
    // personless visitor; 01-02: a and c).
    let r = h
        .post(
            &url,
            &json!({"query": compared(json!({"compare": true, "compare_to": "-1d"}), None)}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][1]["compare_label"], "previous");
    assert_eq!(
        r.json["results"][1]["days"],
        json!(["2020-01-01", "2020-01-02"])
    );
    assert_eq!(r.json["results"][1]["data"], json!([3.0, 2.0]));
    // 01-01 of the previous period: a (twice) and b.
    let point = json!({"day": "2020-01-01", "compare": "previous"});
    let r = h
        .post(
            &url,
            &modal(compared(json!({"compare": true}), None), point.clone()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(emails(&r.json), [json!("a@x.io"), Value::Null]);
    assert_eq!(r.json["results"][0][1], json!(2));
    // The same day as a point of the current period: outside its range,
    // nobody.
    let current = json!({"day": "2020-01-01", "compare": "current"});
    let r = h
        .post(
            &url,
            &modal(compared(json!({"compare": true}), None), current),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"], json!([]));
    // compare_to -1d: 01-02 of the previous period is a and c.
    let day2 = json!({"day": "2020-01-02", "compare": "previous"});
    let r = h
        .post(
            &url,
            &modal(
                compared(json!({"compare": true, "compare_to": "-1d"}), None),
                day2,
            ),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let ids: Vec<Value> = r.json["results"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0]["distinct_ids"].clone())
        .collect();
    assert_eq!(ids, [json!(["a"]), json!(["c"])], "{}", r.text());
    // A total value: everyone of the previous range (12-31..01-01: a, b).
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": compared(json!({"compare": true}), Some("BoldNumber")),
                "compare": "previous"}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.json["results"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn the_persons_of_stickiness_lifecycle_and_funnels_and_the_projects() {
    let h = Harness::new();
    load(&h).await;
    let url = format!("{}/query/", h.api());
    let range = json!({"date_from": "2020-01-01", "date_to": "2020-01-03"});
    let ask = |source: Value| {
        json!({"query": {"kind": "ActorsQuery", "source": source,
            "select": ["id", "person_display_name -- Person", "properties.plan"]}})
    };
    let names = |r: &Value| -> Vec<String> {
        let mut v: Vec<String> = r["results"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| row[1]["display_name"].as_str().expect("name").to_string())
            .collect();
        v.sort();
        v
    };
    // Stickiness: a viewed on two days, b and c on one.
    let sticky = json!({"kind": "StickinessQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}]});
    let r = h
        .post(
            &url,
            &ask(json!({"kind": "InsightActorsQuery", "source": sticky, "day": 2})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(names(&r.json), ["a@x.io"]);
    assert_eq!(r.json["results"][0][2], "pro");
    let r = h
        .post(
            &url,
            &ask(json!({"kind": "InsightActorsQuery", "source": sticky, "day": 1})),
        )
        .await;
    assert_eq!(names(&r.json), ["b", "c"]);
    // Lifecycle: c is new on 01-02.
    let life = json!({"kind": "LifecycleQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}]});
    let r = h
        .post(
            &url,
            &ask(json!({"kind": "InsightActorsQuery", "source": life,
                "day": "2020-01-02", "status": "new"})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(names(&r.json), ["c"]);
    // Funnels: a and b reach signup; c drops off.
    let funnel = json!({"kind": "FunnelsQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]});
    let r = h
        .post(
            &url,
            &ask(json!({"kind": "FunnelsActorsQuery", "source": funnel, "funnelStep": 2})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(names(&r.json), ["a@x.io", "b"]);
    let r = h
        .post(
            &url,
            &ask(json!({"kind": "FunnelsActorsQuery", "source": funnel, "funnelStep": -2})),
        )
        .await;
    assert_eq!(names(&r.json), ["c"]);
    // Retention of $pageview into signup by day: of 01-01's cohort (a,
    // b), a signed up a day later, b two days later.
    let retention = json!({"kind": "RetentionQuery", "dateRange": range,
        "retentionFilter": {"targetEntity": {"id": "$pageview", "type": "events"},
            "returningEntity": {"id": "signup", "type": "events"}, "totalIntervals": 3}});
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "source": {"kind": "InsightActorsQuery", "source": retention, "interval": 0},
                "select": ["person", "appearances"], "orderBy": ["length(appearances) DESC", "id"]}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let rows = r.json["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{}", r.text());
    // Both came back once: by id, ascending, then as asked.
    let ids = |r: &Value| -> Vec<String> {
        r["results"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| row[0]["id"].as_str().expect("id").to_string())
            .collect()
    };
    let asc = ids(&r.json);
    assert!(asc[0] < asc[1], "{asc:?}");
    let desc = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "source": {"kind": "InsightActorsQuery", "source": retention, "interval": 0},
                "select": ["person", "appearances"], "orderBy": ["length(appearances) DESC, id DESC"]}}),
        )
        .await;
    assert_eq!(ids(&desc.json), [asc[1].clone(), asc[0].clone()]);
    // By the persons' plan: a cohort per plan (a pro, b free; c and the
    // visitor have none: ""), each row naming its value, the values by
    // their cohorts' sizes ("" and pro 2, free 1), ties by value; the
    // persons of pro's first cohort are a.
    let mut by_plan = retention.clone();
    by_plan["breakdownFilter"] = json!({"breakdown": "plan", "breakdown_type": "person"});
    let r = h.post(&url, &json!({"query": by_plan})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let values: Vec<&str> = r.json["results"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["breakdown_value"].as_str())
        .collect();
    assert_eq!(
        values,
        ["", "", "", "pro", "pro", "pro", "free", "free", "free"],
        "{}",
        r.text()
    );
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "source": {"kind": "InsightActorsQuery", "source": by_plan, "interval": 0,
                    "breakdown": ["pro"]},
                "select": ["id", "person_display_name -- Person", "appearances"]}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(names(&r.json), ["a@x.io"]);
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "source": {"kind": "InsightActorsQuery", "source": by_plan, "interval": 0,
                    "breakdown": [null]},
                "select": ["id"]}}),
        )
        .await;
    assert!(
        r.envelope(400).contains("breakdown value is text"),
        "{}",
        r.text()
    );
    let mut by_plan: Vec<(String, Value)> = rows
        .iter()
        .map(|row| (row[0]["properties"]["plan"].to_string(), row[1].clone()))
        .collect();
    by_plan.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_plan,
        vec![
            ("\"free\"".into(), json!([0, 2])),
            ("\"pro\"".into(), json!([0, 1]))
        ]
    );
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "source": {"kind": "InsightActorsQuery", "source": retention, "interval": 9}}}),
        )
        .await;
    assert!(r.envelope(400).contains("interval 9"), "{}", r.text());
    // No source: the project's persons, newest first, searched and
    // filtered as the persons listing.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "select": ["person_display_name -- Person", "id", "created_at", "person.$delete"]}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"].as_array().expect("rows").len(), 3);
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery", "select": ["id", "person_display_name"],
                "properties": [{"key": "plan", "value": "pro", "type": "person"}]}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(names(&r.json), ["a@x.io"]);

    // What is not served: a 400 naming it.
    for (q, says) in [
        (
            json!({"kind": "ActorsQuery", "select": ["sum(1)"]}),
            "sum(1)",
        ),
        (
            json!({"kind": "ActorsQuery", "select": ["event_count"]}),
            "trend's point",
        ),
        (
            json!({"kind": "ActorsQuery", "select": ["appearances"], "source": {"kind": "InsightActorsQuery",
                "source": sticky, "day": 1}}),
            "retention cohort",
        ),
        (
            json!({"kind": "ActorsQuery", "select": ["appearances"]}),
            "retention cohort",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": trends(json!({})), "day": "2020-01-01", "compare": true}}),
            "current or previous",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": trends(json!({})), "day": "2020-01-01", "compare": "previous"}}),
            "not compared",
        ),
        (
            json!({"kind": "ActorsQuery", "orderBy": ["id"]}),
            "newest first",
        ),
        (json!({"kind": "ActorsQuery", "limit": 0}), "limit"),
        (json!({"kind": "ActorsQuery", "groupBy": []}), "groupBy"),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "HogQLQuery", "query": "select 1"}}),
            "HogQLQuery",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": {"kind": "RetentionQuery"}}}),
            "interval is required",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": {"kind": "PathsQuery", "pathsFilter": {"includeEventTypes": ["hogql"]}}}}),
            "hogql is not supported",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": trends(json!({}))}}),
            "day is required",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": trends(json!({})), "day": "2020-01-01", "breakdown": "x"}}),
            "breakdown",
        ),
        (
            json!({"kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery",
                "source": sticky, "day": 0}}),
            "day",
        ),
    ] {
        let r = h.post(&url, &json!({"query": q})).await;
        assert!(r.envelope(400).contains(says), "{q}: {}", r.text());
    }
}
