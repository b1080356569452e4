//! `PathsQuery` on `POST …/query/` over HTTP: PostHog's own scenarios
//! (`test_current_url_paths_and_logic`, `test_custom_event_paths`), a
//! personless visitor and a deleted person, the persons of an edge and of
//! a drop-off, and what is refused.

use serde_json::{json, Value};

use super::capture_all;
use crate::common::Harness;

fn view(d: &str, url: &str, t: &str) -> Value {
    json!({"event": "$pageview", "distinct_id": d, "timestamp": t,
        "properties": {"$current_url": url}})
}

/// PostHog's `test_current_url_paths_and_logic`: `fake` only before the
/// range; `person_2a` and `person_2b` one person (merged by an
/// `$identify` before the range).
async fn load(h: &Harness) {
    capture_all(
        h,
        vec![
            view("fake", "/", "2012-01-01T03:21:34Z"),
            view("fake", "/about", "2012-01-01T03:21:34Z"),
            json!({"event": "$identify", "distinct_id": "person_2b", "timestamp": "2011-12-01T00:00:00Z",
                "properties": {"$anon_distinct_id": "person_2a"}}),
            view("person_1", "/", "2012-01-14T03:21:34Z"),
            view("person_1", "/about", "2012-01-14T03:28:34Z"),
            view("person_2a", "/", "2012-01-14T03:21:34Z"),
            view("person_2b", "/pricing", "2012-01-14T03:28:34Z"),
            view("person_2a", "/about", "2012-01-14T03:29:34Z"),
            view("person_3", "/pricing", "2012-01-14T03:21:34Z"),
            view("person_3", "/", "2012-01-14T03:28:34Z"),
            view("person_4", "/", "2012-01-14T03:21:34Z"),
            view("person_4", "/pricing/", "2012-01-14T03:28:34Z"),
        ],
    )
    .await;
}

fn paths(filter: Value) -> Value {
    json!({"query": {"kind": "PathsQuery",
        "dateRange": {"date_from": "2012-01-08", "date_to": "2012-01-15"},
        "pathsFilter": filter}})
}

fn edges(r: &Value) -> Vec<(String, String, u64)> {
    r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|e| {
            (
                e["source"].as_str().expect("source").to_string(),
                e["target"].as_str().expect("target").to_string(),
                e["value"].as_u64().expect("value"),
            )
        })
        .collect()
}

fn e(s: &str, t: &str, n: u64) -> (String, String, u64) {
    (s.to_string(), t.to_string(), n)
}

#[tokio::test]
async fn posthogs_current_url_paths() {
    let h = Harness::new();
    load(&h).await;
    let url = format!("{}/query/", h.api());
    let r = h.post(&url, &paths(json!({}))).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_/", "2_/pricing", 2),
            e("1_/", "2_/about", 1),
            e("1_/pricing", "2_/", 1),
            e("2_/pricing", "3_/about", 1),
        ],
        "{}",
        r.text()
    );
    // Seven minutes from `/` to `/pricing` for both; one minute on.
    assert_eq!(r.json["results"][0]["average_conversion_time"], 420_000.0);
    assert_eq!(r.json["results"][3]["average_conversion_time"], 60_000.0);
    // Out of range: nothing.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "PathsQuery",
                "dateRange": {"date_from": "2012-01-16", "date_to": "2012-01-20"}}}),
        )
        .await;
    assert_eq!(r.json["results"], json!([]), "{}", r.text());
    // A start point (its trailing `/` ignored), an end point.
    let r = h
        .post(&url, &paths(json!({"startPoint": "/pricing/"})))
        .await;
    assert_eq!(
        edges(&r.json),
        vec![e("1_/pricing", "2_/", 1), e("1_/pricing", "2_/about", 1)]
    );
    let r = h.post(&url, &paths(json!({"endPoint": "/about"}))).await;
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_/", "2_/about", 1),
            e("1_/", "2_/pricing", 1),
            e("2_/pricing", "3_/about", 1)
        ]
    );
    // Weights: only the edge of two.
    let r = h.post(&url, &paths(json!({"minEdgeWeight": 2}))).await;
    assert_eq!(edges(&r.json), vec![e("1_/", "2_/pricing", 2)]);
    // Groupings and cleaning rules.
    let r = h
        .post(
            &url,
            &paths(json!({"pathGroupings": ["/pri*"],
                "localPathCleaningFilters": [{"regex": "^/about$", "alias": "/company"}]})),
        )
        .await;
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_/", "2_/pri*", 2),
            e("1_/", "2_/company", 1),
            e("1_/pri*", "2_/", 1),
            e("2_/pri*", "3_/company", 1),
        ]
    );
    // The persons of an edge, and of a drop-off.
    let ask = |filter: Value| {
        json!({"query": {"kind": "ActorsQuery", "select": ["person"],
            "source": {"kind": "InsightActorsQuery", "source": paths(filter)["query"].clone()}}})
    };
    let ids = |r: &Value| -> Vec<String> {
        let mut v: Vec<String> = r["results"]
            .as_array()
            .expect("rows")
            .iter()
            .flat_map(|row| {
                row[0]["distinct_ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|d| d.as_str().expect("id").to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    let r = h
        .post(
            &url,
            &ask(json!({"pathStartKey": "1_/", "pathEndKey": "2_/pricing"})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(ids(&r.json), ["person_2a", "person_2b", "person_4"]);
    let r = h
        .post(&url, &ask(json!({"pathDropoffKey": "2_/pricing"})))
        .await;
    assert_eq!(ids(&r.json), ["person_4"], "{}", r.text());
    // As PostHog's persons modal asks: the matched steps as `event_count`,
    // most first, then by UUID descending.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery",
                "select": ["actor", "event_count", "matched_recordings"],
                "orderBy": ["event_count DESC, actor_id DESC"],
                "source": {"kind": "InsightActorsQuery", "source": paths(json!({"pathStartKey": "1_/"}))["query"].clone()}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let rows = r.json["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{}", r.text());
    assert!(rows.iter().all(|row| row[1] == json!(1)), "{}", r.text());
    let uuids: Vec<&str> = rows
        .iter()
        .map(|row| row[0]["id"].as_str().expect("id"))
        .collect();
    let mut sorted = uuids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(uuids, sorted);
    // A paths' persons have no `last_seen` to order by.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery", "select": ["person"], "orderBy": ["last_seen DESC"],
                "source": {"kind": "InsightActorsQuery", "source": paths(json!({}))["query"].clone()}}}),
        )
        .await;
    assert!(
        r.envelope(400).contains("event_count or id"),
        "{}",
        r.text()
    );
    // A deleted person leaves the paths at once.
    let uuid = h.person("person_4").await.expect("person")["uuid"]
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
    let r = h.post(&url, &paths(json!({}))).await;
    assert_eq!(r.json["results"][0]["value"], json!(1), "{}", r.text());
    let r = h
        .post(&url, &ask(json!({"pathDropoffKey": "2_/pricing"})))
        .await;
    assert_eq!(r.json["results"], json!([]), "{}", r.text());
}

/// PostHog's `test_custom_event_paths`, with a personless visitor who
/// counts (by the UUID its events carry) and a `$pageview` left out.
#[tokio::test]
async fn posthogs_custom_event_paths_and_a_personless_visitor() {
    let h = Harness::new();
    let mut events = Vec::new();
    let mut t = 0;
    let mut ev = |d: &str, name: &str, anon: bool| {
        t += 1;
        let props = if anon {
            json!({"$process_person_profile": false})
        } else {
            json!({"$current_url": "/"})
        };
        events.push(json!({"event": name, "distinct_id": d,
            "timestamp": format!("2012-01-14T03:{t:02}:00Z"), "properties": props}));
    };
    ev("person_1", "custom_event_1", false);
    ev("person_1", "custom_event_3", false);
    ev("person_1", "$pageview", false);
    ev("person_2", "custom_event_1", false);
    ev("person_2", "custom_event_2", false);
    ev("person_2", "custom_event_3", false);
    ev("person_3", "custom_event_2", false);
    ev("person_3", "custom_event_1", false);
    ev("person_4", "custom_event_1", false);
    ev("person_4", "custom_event_2", false);
    ev("visitor", "custom_event_2", true);
    ev("visitor", "custom_event_1", true);
    capture_all(&h, events).await;
    let url = format!("{}/query/", h.api());
    let r = h
        .post(&url, &paths(json!({"includeEventTypes": ["custom_event"]})))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_custom_event_1", "2_custom_event_2", 2),
            e("1_custom_event_2", "2_custom_event_1", 2),
            e("1_custom_event_1", "2_custom_event_3", 1),
            e("2_custom_event_2", "3_custom_event_3", 1),
        ],
        "{}",
        r.text()
    );
    // Excluded items leave the paths (with the types given).
    let r = h
        .post(
            &url,
            &paths(
                json!({"includeEventTypes": ["custom_event"], "excludeEvents": ["custom_event_2"]}),
            ),
        )
        .await;
    assert_eq!(
        edges(&r.json),
        vec![e("1_custom_event_1", "2_custom_event_3", 2)],
        "{}",
        r.text()
    );
    // The visitor is no person to list.
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "ActorsQuery", "select": ["person"],
                "source": {"kind": "InsightActorsQuery", "source": paths(json!({
                    "includeEventTypes": ["custom_event"], "pathStartKey": "1_custom_event_2"}))["query"]}}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn what_paths_refuse() {
    let h = Harness::new();
    // An item for the cleaning rules to grow.
    capture_all(&h, vec![view("u", "/a", "2012-01-14T00:00:00Z")]).await;
    let url = format!("{}/query/", h.api());
    for (filter, says) in [
        (json!({"includeEventTypes": ["hogql"]}), "hogql"),
        (
            json!({"includeEventTypes": ["$autocapture"]}),
            "$autocapture",
        ),
        (json!({"stepLimit": 101}), "stepLimit"),
        (json!({"edgeLimit": "x"}), "edgeLimit"),
        (
            json!({"localPathCleaningFilters": [{"regex": "(", "alias": "x"}]}),
            "localPathCleaningFilters",
        ),
        (json!({"pathGroupings": [1]}), "pathGroupings"),
        (
            json!({"pathsHogQLExpression": "event"}),
            "pathsHogQLExpression",
        ),
        (json!({"unknownKey": true}), "unknownKey"),
        (
            json!({"localPathCleaningFilters": [{"regex": "(a)", "alias": "\\2"}]}),
            "group",
        ),
        (
            json!({"localPathCleaningFilters": (0..20).map(|_| json!({"regex": ".", "alias": "\\0\\0"})).collect::<Vec<_>>()}),
            "longer than",
        ),
        (json!({"startPoint": ["/"]}), "startPoint"),
    ] {
        let r = h.post(&url, &paths(filter.clone())).await;
        let d = r.envelope(400);
        assert!(d.contains(says), "{filter}: {d}");
    }
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "PathsQuery", "samplingFactor": 0.1}}),
        )
        .await;
    assert!(r.envelope(400).contains("samplingFactor"));
    let r = h
        .post(
            &url,
            &json!({"query": {"kind": "PathsQuery", "filterTestAccounts": true}}),
        )
        .await;
    assert!(r.envelope(400).contains("filterTestAccounts"));
}

/// Paths around a funnel's step (`funnelPathsFilter`): after, before and
/// between its steps for those who converted, and after the window for
/// those who dropped off.
#[tokio::test]
async fn paths_around_a_funnels_step() {
    let h = Harness::new();
    let at = |d: &str, event: &str, hm: &str, url: Option<&str>| {
        let props = url.map_or(json!({}), |u| json!({"$current_url": u}));
        json!({"event": event, "distinct_id": d, "timestamp": format!("2012-01-14T{hm}:00Z"),
            "properties": props})
    };
    capture_all(
        &h,
        vec![
            at("p1", "$pageview", "01:00", Some("/home")),
            at("p1", "signup", "01:05", None),
            at("p1", "$pageview", "01:10", Some("/welcome")),
            at("p1", "$pageview", "01:20", Some("/docs")),
            at("p2", "$pageview", "01:00", Some("/home")),
            at("p2", "$pageview", "01:05", Some("/pricing")),
            at("p2", "$pageview", "03:00", Some("/docs")),
            at("p2", "$pageview", "03:10", Some("/blog")),
            at("p3", "opened_app", "00:40", None),
            at("p3", "$pageview", "00:50", Some("/landing")),
            at("p3", "$pageview", "01:00", Some("/home")),
            at("p3", "signup", "01:30", None),
            at("p3", "$pageview", "01:40", Some("/welcome")),
        ],
    )
    .await;
    let url = format!("{}/query/", h.api());
    let funnel = json!({"kind": "FunnelsQuery",
        "dateRange": {"date_from": "2012-01-14", "date_to": "2012-01-15"},
        "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}],
        "funnelsFilter": {"funnelWindowInterval": 1, "funnelWindowIntervalUnit": "hour"}});
    let around = |kind: &str, step: i64| {
        json!({"query": {"kind": "PathsQuery",
            "dateRange": {"date_from": "2012-01-08", "date_to": "2012-01-15"},
            "pathsFilter": {"includeEventTypes": ["$pageview", "custom_event"]},
            "funnelPathsFilter": {"funnelPathType": kind, "funnelStep": step, "funnelSource": funnel}}})
    };
    let r = h.post(&url, &around("funnel_path_after_step", 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_signup", "2_/welcome", 2),
            e("2_/welcome", "3_/docs", 1)
        ]
    );
    let r = h.post(&url, &around("funnel_path_before_step", 2)).await;
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_/home", "2_signup", 1),
            e("1_opened_app", "2_/landing", 1),
            e("2_/landing", "3_/home", 1),
            e("3_/home", "4_signup", 1),
        ],
        "{}",
        r.text()
    );
    let r = h.post(&url, &around("funnel_path_between_steps", 2)).await;
    assert_eq!(
        edges(&r.json),
        vec![
            e("1_/home", "2_signup", 1),
            e("1_/landing", "2_/home", 1),
            e("2_/home", "3_signup", 1),
        ],
        "{}",
        r.text()
    );
    // Who dropped off: from the end of the window after their last step
    // (p2's first view at 01:00, so from 02:00); sessions cut at the
    // window's length.
    let r = h.post(&url, &around("funnel_path_after_step", -2)).await;
    assert_eq!(
        edges(&r.json),
        vec![e("1_/docs", "2_/blog", 1)],
        "{}",
        r.text()
    );
    // Between of the first step is before it (PostHog's preceding time
    // is then the epoch).
    let before = h.post(&url, &around("funnel_path_before_step", 1)).await;
    let r = h.post(&url, &around("funnel_path_between_steps", 1)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json["results"], before.json["results"]);
    let r = h.post(&url, &around("funnel_path_sideways", 2)).await;
    assert!(r.envelope(400).contains("funnelPathType"), "{}", r.text());
    let r = h.post(&url, &around("funnel_path_after_step", 3)).await;
    assert!(r.envelope(400).contains("funnelStep"), "{}", r.text());
}
