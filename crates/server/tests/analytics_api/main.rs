//! The analytics routes over HTTP: funnel persons (paging, CSV, errors),
//! lifecycle persons (scenarios 15–16: missing parameters, paging), the
//! funnel, correlation and lifecycle insights with the persons their URLs
//! lead to, and a deleted person leaving them at once; the insight query
//! kinds of `POST …/query/` in [`queries`].

mod actors;
#[path = "../common/mod.rs"]
mod common;
mod paths;
mod queries;

use common::{urlencode, Harness};
use serde_json::{json, Value};

fn steps(names: &[&str]) -> String {
    let v: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": n, "type": "events", "order": i}))
        .collect();
    urlencode(&Value::Array(v).to_string())
}

async fn capture_all(h: &Harness, events: Vec<Value>) {
    for chunk in events.chunks(500) {
        h.capture(Value::Array(chunk.to_vec())).await;
    }
}

#[tokio::test]
async fn funnel_persons_page_with_next_and_csv() {
    // Scenario 6: 110 persons completing all three steps.
    let h = Harness::new();
    let mut events = Vec::new();
    for u in 0..110 {
        let d = format!("user_{u}");
        for (i, e) in ["step one", "step two", "step three"].iter().enumerate() {
            events.push(json!({"event": e, "distinct_id": d, "timestamp": format!("2021-05-0{}T00:00:00Z", 1 + 2 * i)}));
        }
    }
    capture_all(&h, events).await;
    let q = format!(
        "{}/persons/funnel/?events={}&date_from=2021-05-01&date_to=2021-05-07&funnel_window_days=7&funnel_step=1",
        h.api(),
        steps(&["step one", "step two", "step three"])
    );
    let r = h.get(&q).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(100));
    let people = r.json["results"][0]["people"].as_array().expect("people");
    assert_eq!(people.len(), 100);
    assert_eq!(people[0]["type"], json!("person"));
    let ids: Vec<&str> = people
        .iter()
        .map(|p| p["id"].as_str().expect("uuid"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ordered by person UUID");
    let next = r.json["next"].as_str().expect("next").to_string();
    assert!(next.contains("offset=100"), "{next}");
    let path = next
        .split_once("localhost")
        .map_or(next.as_str(), |(_, p)| p)
        .to_string();
    let r2 = h.get(&path).await;
    assert_eq!(r2.json["results"][0]["count"], json!(10));
    assert_eq!(r2.json["next"], Value::Null);
    // The same through POST with a JSON body.
    let body = json!({"events": [{"id": "step one", "order": 0}, {"id": "step two", "order": 1}, {"id": "step three", "order": 2}],
        "date_from": "2021-05-01", "date_to": "2021-05-07", "funnel_window_days": 7, "funnel_step": 3, "limit": 500});
    let r3 = h.post(&format!("{}/persons/funnel/", h.api()), &body).await;
    assert_eq!(r3.json["results"][0]["count"], json!(110), "{}", r3.text());
    // CSV.
    let r4 = h.get(&format!("{q}&format=csv&limit=5")).await;
    assert_eq!(r4.status.as_u16(), 200);
    assert_eq!(r4.text().lines().count(), 6, "{}", r4.text());
    // Errors are 400 envelopes.
    for (query, msg) in [
        (
            format!("events={}", steps(&["a"])),
            "Missing both funnel_step and funnel_custom_steps",
        ),
        (
            format!("events={}&funnel_step=-1", steps(&["a"])),
            "To request dropoff of initial step use -2",
        ),
        (
            format!("events={}&funnel_step=1&funnel_order_type=x", steps(&["a"])),
            "funnel_order_type",
        ),
        ("events=%5Bnot%20json&funnel_step=1".to_string(), "events"),
        (
            format!("events={}&funnel_step=1&limit=-3", steps(&["a"])),
            "limit",
        ),
    ] {
        let r = h.get(&format!("{}/persons/funnel/?{query}", h.api())).await;
        assert!(r.envelope(400).contains(msg), "{query}: {}", r.text());
    }
}

#[tokio::test]
async fn lifecycle_persons_and_insight() {
    let h = Harness::new();
    let mut events = Vec::new();
    // Scenario 16: 150 persons with one $pageview on 2020-01-15.
    for u in 0..150 {
        events.push(json!({"event": "$pageview", "distinct_id": format!("p{u}"), "timestamp": "2020-01-15T12:00:00Z"}));
    }
    capture_all(&h, events).await;
    let ev = urlencode(&json!([{"id": "$pageview", "type": "events", "order": 0}]).to_string());
    let base = format!(
        "{}/persons/lifecycle/?date_from=2020-01-12T00:00:00Z&date_to=2020-01-19T00:00:00Z&events={ev}",
        h.api()
    );
    let r = h
        .get(&format!(
            "{base}&lifecycle_type=new&target_date=2020-01-15T00:00:00Z"
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(100));
    assert!(
        r.json["results"][0]["people"][0]["id"].is_i64(),
        "PersonSerializer's integer id"
    );
    let next = r.json["next"].as_str().expect("next").to_string();
    let path = next
        .split_once("localhost")
        .map_or(next.as_str(), |(_, p)| p)
        .to_string();
    let r2 = h.get(&path).await;
    assert_eq!(r2.json["results"][0]["count"], json!(50));
    // Missing parameters.
    let r = h.get(&format!("{base}&lifecycle_type=new")).await;
    assert!(
        r.envelope(400).contains("Must include specified date"),
        "{}",
        r.text()
    );
    let r = h.get(&format!("{base}&target_date=2020-01-15")).await;
    assert!(
        r.envelope(400).contains("Must include lifecycle type"),
        "{}",
        r.text()
    );
    let r = h
        .get(&format!(
            "{base}&target_date=2020-01-15&lifecycle_type=zombie"
        ))
        .await;
    assert!(r.envelope(400).contains("lifecycle_type"), "{}", r.text());
    // The insight.
    let r = h
        .get(&format!(
            "{}/insights/trend/?shown_as=Lifecycle&date_from=2020-01-12T00:00:00Z&date_to=2020-01-19T00:00:00Z&events={ev}",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let new = r.json["result"]
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["status"] == "new")
        .expect("new")
        .clone();
    assert_eq!(
        new["data"],
        json!([0.0, 0.0, 0.0, 150.0, 0.0, 0.0, 0.0, 0.0])
    );
    let dormant = r.json["result"]
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["status"] == "dormant")
        .expect("dormant")
        .clone();
    assert_eq!(dormant["data"][4], json!(-150.0));
    // All time: from the first event's day (PostHog's earliest timestamp).
    let r = h
        .get(&format!(
            "{}/insights/trend/?shown_as=Lifecycle&date_from=all&date_to=2020-01-16&events={ev}",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let new = r.json["result"]
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["status"] == "new")
        .expect("new")
        .clone();
    assert_eq!(new["days"], json!(["2020-01-15", "2020-01-16"]));
    assert_eq!(new["data"], json!([150.0, 0.0]));
    let r = h
        .get(&format!(
            "{}/persons/lifecycle/?date_from=all&date_to=2020-01-16&events={ev}&lifecycle_type=new&target_date=2020-01-15",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"][0]["count"], json!(100));
    let r = h
        .get(&format!("{}/insights/trend/?events={ev}", h.api()))
        .await;
    assert!(r.envelope(400).contains("Lifecycle"), "{}", r.text());
}

/// With a breakdown, each value's step links list that value's persons
/// only (PostHog's `funnel_step_breakdown`), as many as its count.
#[tokio::test]
async fn funnel_breakdown_links_list_their_values_persons() {
    let h = Harness::new();
    let mut events = Vec::new();
    for (d, browser, n) in [
        ("a", "Chrome", 2),
        ("b", "Chrome", 1),
        ("c", "Safari", 2),
        ("d", "Safari", 2),
        ("e", "Safari", 1),
    ] {
        for (i, e) in ["$pageview", "signup"].iter().take(n).enumerate() {
            events.push(
                json!({"event": e, "distinct_id": d, "timestamp": format!("2020-01-02T1{i}:00:00Z"),
                "properties": {"$browser": browser}}),
            );
        }
    }
    capture_all(&h, events).await;
    let r = h
        .get(&format!(
            "{}/insights/funnel/?events={}&date_from=2020-01-01&date_to=2020-01-05&breakdown=$browser",
            h.api(),
            steps(&["$pageview", "signup"])
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let groups = r.json["result"].as_array().expect("groups").clone();
    assert_eq!(groups.len(), 2, "{}", r.text());
    for g in &groups {
        for step in g.as_array().expect("steps") {
            for (link, count) in [
                (
                    "converted_people_url",
                    step["count"].as_u64().expect("count"),
                ),
                ("dropped_people_url", 0),
            ] {
                let Some(url) = step[link].as_str() else {
                    continue;
                };
                let path = url.split_once("localhost").map_or(url, |(_, p)| p);
                let people = h.get(path).await;
                assert_eq!(people.status.as_u16(), 200, "{}", people.text());
                let listed = people.json["results"][0]["count"].as_u64().expect("count");
                if link == "converted_people_url" {
                    assert_eq!(
                        listed,
                        count,
                        "{} {link}: {}",
                        step["breakdown_value"],
                        people.text()
                    );
                }
            }
        }
    }
    // Safari's second step dropped e only.
    let safari = groups
        .iter()
        .find(|g| g[0]["breakdown_value"] == json!(["Safari"]))
        .expect("Safari");
    let url = safari[1]["dropped_people_url"].as_str().expect("url");
    let path = url.split_once("localhost").map_or(url, |(_, p)| p);
    let people = h.get(path).await;
    assert_eq!(
        people.json["results"][0]["count"],
        json!(1),
        "{}",
        people.text()
    );
}

#[tokio::test]
async fn funnel_insight_and_a_deleted_person() {
    let h = Harness::new();
    let mut events = Vec::new();
    for (d, n) in [("a", 3), ("b", 2), ("c", 1), ("gone", 3)] {
        for (i, e) in ["$pageview", "signup", "purchase"]
            .iter()
            .take(n)
            .enumerate()
        {
            events.push(json!({"event": e, "distinct_id": d, "timestamp": format!("2020-01-02T1{i}:00:00Z")}));
        }
    }
    capture_all(&h, events).await;
    let q = format!(
        "{}/insights/funnel/?events={}&date_from=2020-01-01&date_to=2020-01-05",
        h.api(),
        steps(&["$pageview", "signup", "purchase"])
    );
    let counts = |v: &Value| -> Vec<u64> {
        v["result"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["count"].as_u64().expect("count"))
            .collect()
    };
    let r = h.get(&q).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(counts(&r.json), vec![4, 3, 2]);
    assert_eq!(
        r.json["result"][1]["average_conversion_time"],
        json!(3600.0)
    );
    let url = r.json["result"][2]["converted_people_url"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(
        url.contains("/persons/funnel/") && url.ends_with("funnel_step=3"),
        "{url}"
    );
    let path = url
        .split_once("localhost")
        .map_or(url.as_str(), |(_, p)| p)
        .to_string();
    let people = h.get(&path).await;
    assert_eq!(
        people.json["results"][0]["count"],
        json!(2),
        "{}",
        people.text()
    );

    let uuid = h.person("gone").await.expect("person")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    let r = h
        .call(
            "DELETE",
            &format!("{}/persons/{uuid}/?delete_events=true", h.api()),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = h.get(&q).await;
    assert_eq!(
        counts(&r.json),
        vec![3, 2, 1],
        "a deleted person is gone at once"
    );
    let people = h.get(&path).await;
    assert_eq!(people.json["results"][0]["count"], json!(1));
    assert!(!people.text().contains(&uuid));
}

#[tokio::test]
async fn funnel_correlation_links_its_persons_and_forgets_the_deleted() {
    // Scenario 8 over HTTP.
    let h = Harness::new();
    let mut events = Vec::new();
    for u in 0..20 {
        let d = format!("user_{u}");
        events.push(json!({"event": "user signed up", "distinct_id": d, "timestamp": "2020-01-02T14:00:00Z"}));
        if u < 10 {
            if u % 2 == 0 {
                events.push(json!({"event": "positively_related", "distinct_id": d, "timestamp": "2020-01-03T14:00:00Z"}));
            }
            events.push(
                json!({"event": "paid", "distinct_id": d, "timestamp": "2020-01-04T14:00:00Z"}),
            );
        } else if u % 2 == 0 {
            events.push(json!({"event": "negatively_related", "distinct_id": d, "timestamp": "2020-01-03T14:00:00Z"}));
        }
    }
    capture_all(&h, events).await;
    let q = format!(
        "{}/insights/funnel/correlation/?events={}&date_from=2020-01-01&date_to=2020-01-14&funnel_correlation_type=events",
        h.api(),
        steps(&["user signed up", "paid"])
    );
    let r = h.get(&q).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let rows = r.json["result"]["events"]
        .as_array()
        .expect("events")
        .clone();
    assert_eq!(r.json["result"]["skewed"], json!(false));
    assert_eq!(rows.len(), 2, "{}", r.text());
    assert_eq!(rows[0]["event"]["event"], json!("positively_related"));
    assert_eq!(rows[0]["event"]["properties"], json!({}));
    assert_eq!(rows[0]["success_count"], json!(5));
    assert_eq!(rows[0]["failure_count"], json!(0));
    assert_eq!(rows[0]["odds_ratio"], json!(11.0));
    assert_eq!(rows[0]["correlation_type"], json!("success"));
    assert_eq!(rows[1]["event"]["event"], json!("negatively_related"));
    assert_eq!(rows[1]["correlation_type"], json!("failure"));
    let follow = |url: &Value| {
        let url = url.as_str().expect("url").to_string();
        assert!(url.contains("/persons/funnel/correlation/?"), "{url}");
        url.split_once("localhost")
            .map_or(url.clone(), |(_, p)| p.to_string())
    };
    let success = h.get(&follow(&rows[0]["success_people_url"])).await;
    assert_eq!(success.status.as_u16(), 200, "{}", success.text());
    assert_eq!(success.json["results"][0]["count"], json!(5));
    let failure = h.get(&follow(&rows[1]["failure_people_url"])).await;
    assert_eq!(failure.json["results"][0]["count"], json!(5));
    let none = h.get(&follow(&rows[1]["success_people_url"])).await;
    assert_eq!(none.json["results"][0]["count"], json!(0));
    // Paging by the correlation's own parameters.
    let page = h
        .get(&format!(
            "{}&funnel_correlation_person_limit=2",
            follow(&rows[0]["success_people_url"])
        ))
        .await;
    assert_eq!(page.json["results"][0]["count"], json!(2));
    let next = page.json["next"].as_str().expect("next");
    assert!(
        next.contains("funnel_correlation_person_offset=2"),
        "{next}"
    );
    // No row selected: a 400 naming what is missing; the persons route
    // wants person:read, the insight insight:read (security.rs).
    let r = h
        .get(&format!(
            "{}/persons/funnel/correlation/?events={}",
            h.api(),
            steps(&["user signed up", "paid"])
        ))
        .await;
    assert!(r
        .envelope(400)
        .contains("funnel_correlation_person_entity or funnel_correlation_property_values"));
    let r = h
        .post(
            &format!("{}/insights/funnel/correlation/", h.api()),
            &json!({"events": [{"id": "a"}, {"id": "b"}], "funnel_correlation_type": "properties"}),
        )
        .await;
    assert!(r.envelope(400).contains("Property Correlation expects"));

    // A deleted converter leaves the counts at once: s = 4 of S = 9.
    let uuid = h.person("user_0").await.expect("person")["uuid"]
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
    let r = h.get(&q).await;
    let rows = r.json["result"]["events"].as_array().expect("events");
    assert_eq!(rows[0]["success_count"], json!(4), "{}", r.text());
    // (4 + 1)(10 − 0 + 1) / ((9 − 4 + 1)(0 + 1))
    assert_eq!(rows[0]["odds_ratio"], json!(55.0 / 6.0));
    let success = h.get(&follow(&rows[0]["success_people_url"])).await;
    assert_eq!(success.json["results"][0]["count"], json!(4));
}

/// A person-property row whose value is a list: its persons' links list
/// exactly the row's actors (the value compared by its text, not read as
/// a list of alternatives).
#[tokio::test]
async fn correlation_links_of_a_list_value_list_its_actors() {
    let h = Harness::new();
    let mut events = Vec::new();
    for u in 0..20 {
        let d = format!("user_{u}");
        let tags = match u % 4 {
            0 => json!(["a", "b"]),
            1 => json!("a"),
            2 => json!("b"),
            _ => json!(["c"]),
        };
        events.push(
            json!({"event": "user signed up", "distinct_id": d, "timestamp": "2020-01-02T14:00:00Z",
            "properties": {"$set": {"tags": tags}}}),
        );
        if u < 10 {
            events.push(
                json!({"event": "paid", "distinct_id": d, "timestamp": "2020-01-04T14:00:00Z"}),
            );
        }
    }
    capture_all(&h, events).await;
    let q = format!(
        "{}/insights/funnel/correlation/?events={}&date_from=2020-01-01&date_to=2020-01-14&funnel_correlation_type=properties&funnel_correlation_names={}",
        h.api(),
        steps(&["user signed up", "paid"]),
        urlencode(&json!(["tags"]).to_string())
    );
    let r = h.get(&q).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let rows = r.json["result"]["events"]
        .as_array()
        .expect("events")
        .clone();
    assert!(!rows.is_empty(), "{}", r.text());
    for row in &rows {
        for (link, count) in [
            ("success_people_url", "success_count"),
            ("failure_people_url", "failure_count"),
        ] {
            let url = row[link].as_str().expect("url");
            let path = url.split_once("localhost").map_or(url, |(_, p)| p);
            let people = h.get(path).await;
            assert_eq!(people.status.as_u16(), 200, "{}", people.text());
            assert_eq!(
                people.json["results"][0]["count"],
                row[count],
                "{} {link}: {}",
                row["event"]["event"],
                people.text()
            );
        }
    }
}

/// Dates at the ends of what the date parser reads (years ±262,143) are a
/// 400 naming the parameter on every analytics route, never a 500 (they
/// once overflowed chrono's arithmetic), and the server answers after.
#[tokio::test]
async fn dates_out_of_range_are_a_400() {
    let h = Harness::new();
    let url = format!("{}/query/", h.api());
    for (interval, from, to) in [
        ("day", "+262142-12-30", "+262142-12-31"),
        ("week", "-262143-01-01", "-262143-01-05"),
        ("hour", "+262142-12-31T00:00:00", "+262142-12-31T12:00:00"),
        ("month", "2020-01-01", "10000-01-01"),
        ("day", "0000-12-31", "2020-01-01"),
        ("day", "-99999y", "2020-01-01"),
    ] {
        let r = h
            .post(
                &url,
                &json!({"query": {"kind": "TrendsQuery", "interval": interval,
                    "series": [{"event": "x"}],
                    "dateRange": {"date_from": from, "date_to": to}}}),
            )
            .await;
        let detail = r.envelope(400);
        assert!(detail.contains("date_"), "{from}..{to}: {detail}");
    }
    let one = steps(&["a"]);
    let two = steps(&["a", "b"]);
    for path in [
        format!("insights/funnel/?events={two}&date_to=%2B262142-12-31"),
        format!("insights/trend/?shown_as=Lifecycle&events={one}&date_from=-262143-01-01&date_to=-262143-01-02"),
        format!("persons/lifecycle/?events={one}&date_from=%2B262142-12-30&date_to=%2B262142-12-31&target_date=%2B262142-12-31&lifecycle_type=new"),
        format!("persons/funnel/?events={two}&date_from=-262143-01-01&funnel_step=1"),
    ] {
        let r = h.get(&format!("{}/{path}", h.api())).await;
        let detail = r.envelope(400);
        assert!(detail.contains("date_") || detail.contains("year"), "{path}: {detail}");
    }
    let r = h.get(&format!("{}/persons/", h.api())).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
}

/// Numbers at their limits: a 32-step unordered funnel (the most steps;
/// its mask of steps once overflowed a shift), `funnel_step` of
/// `i64::MIN`, a window of `i32::MAX` days, an offset of `u64::MAX`:
/// answered or refused with a 400, never a 500.
#[tokio::test]
async fn numbers_at_their_limits() {
    let h = Harness::new();
    let names: Vec<String> = (0..32).map(|i| format!("s{i}")).collect();
    // One person doing the 32 steps in reverse order, a minute apart.
    let events: Vec<Value> = names
        .iter()
        .rev()
        .enumerate()
        .map(|(i, n)| {
            json!({"event": n, "distinct_id": "p1",
                "timestamp": format!("2020-01-02T00:{i:02}:00Z")})
        })
        .collect();
    capture_all(&h, events).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = h
        .get(&format!(
            "{}/insights/funnel/?funnel_order_type=unordered&events={}&date_from=2020-01-01&date_to=2020-01-05",
            h.api(),
            steps(&refs)
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let result = r.json["result"].as_array().expect("steps");
    assert_eq!(result.len(), 32);
    assert_eq!(result[31]["count"], 1, "{}", r.text());

    let r = h
        .get(&format!(
            "{}/persons/funnel/?events={}&date_from=2020-01-01&funnel_step=-9223372036854775808",
            h.api(),
            steps(&["s0", "s1"])
        ))
        .await;
    assert!(r.envelope(400).contains("funnel_step"));

    let r = h
        .post(
            &format!("{}/query/", h.api()),
            &json!({"query": {"kind": "HogQLQuery", "query":
                "select funnel_path(INTERVAL '2147483647 days', 'ordered', timestamp, event = 's0', event = 's1') from events group by distinct_id"}}),
        )
        .await;
    assert!(r.envelope(400).contains("too long"), "{}", r.text());

    for path in ["cohorts/", "persons/deletion_status/"] {
        let r = h
            .get(&format!("{}/{path}?offset=18446744073709551615", h.api()))
            .await;
        assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.text());
        assert!(r.json["next"].is_null(), "{path}: {}", r.text());
    }
}

/// What a request can make an analytics answer hold is bounded: at most
/// 100 series and 1,000,000 values (series × breakdown_limit × periods)
/// in a trends result, 100 property filters in a list, 10 funnel
/// breakdown properties; past them a 400 naming the limit. A breakdown
/// by a property with a value per event keeps the largest values by
/// total, chosen before any row is zero-filled.
#[tokio::test]
async fn result_sizes_are_bounded() {
    let h = Harness::new();
    let mut events = Vec::new();
    for (value, n) in [("a", 5), ("b", 3), ("c", 2)] {
        for i in 0..n {
            events.push(
                json!({"event": "$pageview", "distinct_id": format!("{value}{i}"),
                "timestamp": "2020-01-02T12:00:00Z", "properties": {"k": value}}),
            );
        }
    }
    for i in 0..30 {
        events.push(json!({"event": "$pageview", "distinct_id": "u",
            "timestamp": "2020-01-02T13:00:00Z", "properties": {"k": format!("u{i:02}")}}));
    }
    capture_all(&h, events).await;
    let url = format!("{}/query/", h.api());
    let trends = |series: Value, interval: &str, to: &str, extra: Value| {
        let mut q = json!({"kind": "TrendsQuery", "interval": interval, "series": series,
            "dateRange": {"date_from": "2020-01-01", "date_to": to}});
        if let (Value::Object(q), Value::Object(extra)) = (&mut q, extra) {
            q.extend(extra);
        }
        json!({ "query": q })
    };
    let one = json!([{"event": "$pageview"}]);
    // By `k`, its 3 largest values, with `breakdownFilter`'s `extra` keys.
    let by_k = |extra: Value| {
        let mut b = json!({"breakdown": "k", "breakdown_limit": 3});
        if let (Value::Object(b), Value::Object(extra)) = (&mut b, extra) {
            b.extend(extra);
        }
        trends(
            one.clone(),
            "day",
            "2020-01-03",
            json!({"breakdownFilter": b}),
        )
    };
    let r = h.post(&url, &by_k(json!({}))).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let rows: Vec<(Value, Value)> = r.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|row| (row["breakdown_value"].clone(), row["data"].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (json!("a"), json!([0.0, 5.0, 0.0])),
            (json!("b"), json!([0.0, 3.0, 0.0])),
            (json!("c"), json!([0.0, 2.0, 0.0])),
            // The 30 values past the limit, summed (PostHog's Other).
            (
                json!("$$_posthog_breakdown_other_$$"),
                json!([0.0, 30.0, 0.0])
            ),
        ]
    );
    let r = h
        .post(
            &url,
            &by_k(json!({"breakdown_hide_other_aggregation": true})),
        )
        .await;
    assert_eq!(
        r.json["results"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r.text()
    );

    let many: Vec<Value> = (0..101).map(|_| json!({"event": "$pageview"})).collect();
    let r = h
        .post(&url, &trends(json!(many), "day", "2020-01-03", json!({})))
        .await;
    assert!(r.envelope(400).contains("at most 100"), "{}", r.text());
    // 9,600 hours × 1,000 breakdown values.
    let r = h
        .post(
            &url,
            &trends(
                one.clone(),
                "hour",
                "2021-02-04",
                json!({"breakdownFilter": {"breakdown": "k", "breakdown_limit": 1000}}),
            ),
        )
        .await;
    assert!(r.envelope(400).contains("at most 1000000"), "{}", r.text());
    let filters: Vec<Value> = (0..101)
        .map(
            |i| json!({"key": format!("p{i}"), "value": "x", "operator": "exact", "type": "event"}),
        )
        .collect();
    let r = h
        .post(
            &url,
            &trends(one, "day", "2020-01-03", json!({"properties": filters})),
        )
        .await;
    assert!(r.envelope(400).contains("at most 100"), "{}", r.text());
    let keys: Vec<Value> = (0..11).map(|i| json!(format!("p{i}"))).collect();
    let r = h
        .get(&format!(
            "{}/insights/funnel/?events={}&date_from=2020-01-01&breakdown={}",
            h.api(),
            steps(&["a", "b"]),
            urlencode(&Value::Array(keys).to_string())
        ))
        .await;
    assert!(r.envelope(400).contains("at most 10"), "{}", r.text());
    let r = h.get(&format!("{}/persons/", h.api())).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
}

/// Anonymous visitors (posthog-js's `identified_only`: events with
/// `$process_person_profile: false`) count in the funnel's steps by the
/// person UUID their events carry; the step's persons list only those
/// with a profile, and a page is filled with them.
#[tokio::test]
async fn personless_visitors_count_in_the_funnel_but_are_not_listed() {
    let h = Harness::new();
    let mut events = Vec::new();
    for u in 0..4 {
        let anon = json!({"$process_person_profile": false});
        for (e, t) in [
            ("$pageview", "2021-05-01T00:00:00Z"),
            ("signed up", "2021-05-02T00:00:00Z"),
        ] {
            events.push(json!({"event": e, "distinct_id": format!("anon_{u}"), "timestamp": t, "properties": anon}));
            events.push(json!({"event": e, "distinct_id": format!("user_{u}"), "timestamp": t}));
        }
    }
    capture_all(&h, events).await;
    let query = format!(
        "events={}&date_from=2021-05-01&date_to=2021-05-07&funnel_window_days=7",
        steps(&["$pageview", "signed up"])
    );
    let r = h
        .get(&format!("{}/insights/funnel/?{query}", h.api()))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["result"][0]["count"], json!(8), "{}", r.text());
    assert_eq!(r.json["result"][1]["count"], json!(8), "{}", r.text());
    let r = h
        .get(&format!(
            "{}/persons/funnel/?{query}&funnel_step=2&limit=3",
            h.api()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let people = r.json["results"][0]["people"].as_array().expect("people");
    assert_eq!(people.len(), 3, "{}", r.text());
    assert!(
        people.iter().all(|p| p["distinct_ids"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("user_"))),
        "{}",
        r.text()
    );
    assert!(r.json["next"].is_string());
}
