//! The persons of a trend's point ([`trends::actors`]): they are what
//! the point counts (unique users: as many persons as the value; total:
//! their events add up to it), through breakdown values, `Other`, the
//! null value, weekly active persons and a total value.

use elide_app::analytics::trends::{
    self, ActorKey, ActorsPage, Point, TrendActor, TrendsSpec, BREAKDOWN_NULL, BREAKDOWN_OTHER,
};
use elide_app::query::QueryLimits;
use proptest::prelude::*;
use serde_json::json;

use super::trends_scenarios::trend;
use super::*;

fn spec(q: &Value) -> TrendsSpec {
    let Value::Object(q) = q else {
        panic!("a query object")
    };
    TrendsSpec::parse(q, now()).expect("spec")
}

async fn actors_of(app: &App, q: &Value, point: Point) -> Result<Vec<TrendActor>, String> {
    let page = ActorsPage {
        limit: 10_000,
        ..ActorsPage::default()
    };
    trends::actors(
        app.persons(),
        P,
        &spec(q),
        &point,
        &page,
        &QueryLimits::default(),
    )
    .await
    .map_err(|e| e.to_string())
}

fn day_us(d: i64) -> i64 {
    (day0() + chrono::Duration::days(d)).timestamp_micros()
}

fn query(math: &str, display: Option<&str>, breakdown: Value) -> Value {
    json!({"kind": "TrendsQuery", "interval": "day",
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-03"},
        "series": [{"event": "buy", "math": math}],
        "trendsFilter": {"display": display},
        "breakdownFilter": breakdown})
}

/// a (pro) buys on days 0 and 1 (twice on 1, once from another id),
/// b (free) on day 1, c (no plan) on day 2, a personless visitor on
/// days 0 and 1.
fn load(app: &App) {
    let ev = |d: &'static str, day: i64, h: u32, props: Value| (d, "buy", iso(day, h), props);
    let anon = json!({"$process_person_profile": false});
    let rows = [
        ev("a", 0, 1, json!({"$set": {"plan": "pro"}, "color": "red"})),
        ev("anon", 0, 2, anon.clone()),
        ev("a", 1, 1, json!({"color": "red"})),
        ev(
            "a2",
            1,
            2,
            json!({"$anon_distinct_id": "a", "color": "blue"}),
        ),
        ev(
            "b",
            1,
            3,
            json!({"$set": {"plan": "free"}, "color": "blue"}),
        ),
        ev("anon", 1, 4, anon),
        ev("c", 2, 1, json!({"color": ""})),
    ];
    capture(app.persons(), &rows);
    // a2 is a's id too.
    capture(
        app.persons(),
        &[(
            "a2",
            "$identify",
            iso(1, 5),
            json!({"$anon_distinct_id": "a"}),
        )],
    );
}

fn who(app: &App, list: &[TrendActor]) -> Vec<(String, u64)> {
    let names = ["a", "b", "c"];
    list.iter()
        .map(|t| {
            let name = names
                .iter()
                .find(|n| uuid_of(app, n) == t.person)
                .map_or_else(|| t.person.clone(), |n| n.to_string());
            (name, t.event_count)
        })
        .collect()
}

#[tokio::test]
async fn a_points_persons_are_what_it_counts() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let at = |day: i64, breakdown: Option<&str>| Point {
        series: 0,
        day: Some(day_us(day)),
        breakdown: breakdown.map(str::to_string),
    };
    // Day 1: a twice (from two of its ids), b once; the personless
    // visitor has no profile to list.
    let q = query("dau", None, Value::Null);
    let s = trend(&app, q.clone()).await;
    assert_eq!(s[0]["data"][1], 3.0, "two persons and the visitor");
    let got = actors_of(&app, &q, at(1, None)).await.expect("actors");
    assert_eq!(who(&app, &got), [("a".into(), 2), ("b".into(), 1)]);
    assert_eq!(got[0].distinct_ids, ["a", "a2"]);
    assert_eq!(got[0].last_seen, day_us(1) + 2 * 3_600_000_000);
    // A time inside the period names it.
    let mid = Point {
        day: Some(day_us(1) + 5_000_000),
        ..at(1, None)
    };
    assert_eq!(actors_of(&app, &q, mid).await.expect("actors"), got);

    // By an event property: blue on day 1 is a (from a2) and b.
    let q = query("total", None, json!({"breakdown": "color"}));
    let sorted = |mut v: Vec<(String, u64)>| {
        v.sort();
        v
    };
    let got = actors_of(&app, &q, at(1, Some("blue")))
        .await
        .expect("blue");
    assert_eq!(sorted(who(&app, &got)), [("a".into(), 1), ("b".into(), 1)]);
    // "" and unset are the null value: c on day 2.
    let got = actors_of(&app, &q, at(2, Some(BREAKDOWN_NULL)))
        .await
        .expect("null");
    assert_eq!(who(&app, &got), [("c".into(), 1)]);
    // With one value shown, Other is the rest: blue and red tie at 2,
    // blue is shown (by value), so Other on day 1 is red's a, and on day
    // 2 the null value's c.
    let q = query(
        "total",
        None,
        json!({"breakdown": "color", "breakdown_limit": 1}),
    );
    let s = trend(&app, q.clone()).await;
    assert_eq!(s[0]["breakdown_value"], "blue");
    assert_eq!(s[1]["breakdown_value"], BREAKDOWN_OTHER);
    let got = actors_of(&app, &q, at(1, Some(BREAKDOWN_OTHER)))
        .await
        .expect("other");
    assert_eq!(who(&app, &got), [("a".into(), 1)]);
    let got = actors_of(&app, &q, at(2, Some(BREAKDOWN_OTHER)))
        .await
        .expect("other");
    assert_eq!(who(&app, &got), [("c".into(), 1)]);
    let got = actors_of(&app, &q, at(1, Some("blue")))
        .await
        .expect("blue");
    assert_eq!(sorted(who(&app, &got)), [("a".into(), 1), ("b".into(), 1)]);

    // By a person property: pro is a.
    let q = query(
        "dau",
        None,
        json!({"breakdown": "plan", "breakdown_type": "person"}),
    );
    let got = actors_of(&app, &q, at(0, Some("pro"))).await.expect("pro");
    assert_eq!(who(&app, &got), [("a".into(), 1)]);

    // Weekly active on day 2: everyone active in the 7 days ending then.
    let q = query("weekly_active", None, Value::Null);
    let got = actors_of(&app, &q, at(2, None)).await.expect("wau");
    assert_eq!(
        sorted(who(&app, &got)),
        [("a".into(), 3), ("b".into(), 1), ("c".into(), 1)]
    );

    // A total value: the whole range, and no day.
    let q = query("dau", Some("BoldNumber"), Value::Null);
    let all = Point {
        series: 0,
        day: None,
        breakdown: None,
    };
    let got = actors_of(&app, &q, all.clone()).await.expect("total value");
    assert_eq!(who(&app, &got)[0], ("a".into(), 3));
    assert_eq!(got.len(), 3);
    assert!(actors_of(&app, &q, at(1, None))
        .await
        .expect_err("a day with a total value")
        .contains("day"));
    let q = query("dau", None, Value::Null);
    assert!(actors_of(&app, &q, all.clone())
        .await
        .expect_err("no day")
        .contains("day"));
    assert!(actors_of(&app, &q, at(1, Some("red")))
        .await
        .expect_err("no breakdown")
        .contains("breakdown"));
    assert!(actors_of(
        &app,
        &q,
        Point {
            series: 1,
            ..all.clone()
        }
    )
    .await
    .expect_err("no series 1")
    .contains("series"));

    // A total value of weekly active persons: those of the range and of
    // the 6 days before it, as the chart counts them (a and b were
    // active before 01-03 only; the visitor has no profile).
    let mut q = query("weekly_active", Some("BoldNumber"), Value::Null);
    q["dateRange"] = json!({"date_from": "2020-01-03", "date_to": "2020-01-03"});
    let s = trend(&app, q.clone()).await;
    assert_eq!(s[0]["aggregated_value"], 4.0);
    let got = actors_of(&app, &q, all.clone())
        .await
        .expect("weekly total");
    assert_eq!(
        sorted(who(&app, &got)),
        [("a".into(), 3), ("b".into(), 1), ("c".into(), 1)]
    );
    // "" is the null value; a hidden Other is refused.
    let q = query("total", None, json!({"breakdown": "color"}));
    let got = actors_of(&app, &q, at(2, Some(""))).await.expect("empty");
    assert_eq!(who(&app, &got), [("c".into(), 1)]);
    let q = query(
        "total",
        None,
        json!({"breakdown": "color", "breakdown_limit": 1, "breakdown_hide_other_aggregation": true}),
    );
    assert!(actors_of(&app, &q, at(1, Some(BREAKDOWN_OTHER)))
        .await
        .expect_err("hidden Other")
        .contains("Other"));
    // An explicit range counts from its instant: on day 0 from 02:00,
    // the visitor's event and not a's (01:00).
    let mut q = query("total", None, Value::Null);
    q["dateRange"] = json!({"date_from": "2020-01-01T02:00:00Z", "date_to": "2020-01-03T23:00:00Z", "explicitDate": true});
    let s = trend(&app, q.clone()).await;
    assert_eq!(s[0]["data"][0], 1.0);
    assert!(actors_of(&app, &q, at(0, None))
        .await
        .expect("explicit")
        .is_empty());

    // Paging: by UUID ascending, one at a time.
    let q = query("dau", None, Value::Null);
    let page = |offset| ActorsPage {
        order: vec![(ActorKey::Id, false)],
        limit: 1,
        offset,
        recordings: false,
    };
    let mut seen = Vec::new();
    for offset in 0..4 {
        let got = trends::actors(
            app.persons(),
            P,
            &spec(&q),
            &at(1, None),
            &page(offset),
            &QueryLimits::default(),
        )
        .await
        .expect("page");
        seen.extend(got.into_iter().map(|t| t.person));
    }
    let mut want = vec![uuid_of(&app, "a"), uuid_of(&app, "b")];
    want.sort();
    assert_eq!(seen, want);

    // A deleted person is nobody's.
    delete_keeping_events(&app, "b");
    let got = actors_of(&app, &q, at(1, None)).await.expect("after");
    assert_eq!(who(&app, &got), [("a".into(), 2)]);
    app.close().expect("close");
}

/// `(distinct id, day, hour, color)` of a random event; ids `p*` have a
/// person, `v*` are personless.
fn row() -> impl Strategy<Value = (String, i64, u32, Option<&'static str>)> {
    (
        prop_oneof![
            4 => (0..6u8).prop_map(|i| format!("p{i}")),
            1 => (0..3u8).prop_map(|i| format!("v{i}")),
        ],
        0..5i64,
        0..24u32,
        proptest::option::of(prop_oneof![Just(""), Just("x"), Just("y"), Just("z")]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// At every point of random trends: a breakdown value's (not
    /// Other's) unique users are as many as its persons, less the
    /// personless visitors; every point's total is its persons' events
    /// and the visitors'.
    #[test]
    fn every_points_persons_add_up_to_it(
        rows in proptest::collection::vec(row(), 1..40),
        limit in 1..4usize,
        by_color: bool,
        weekly: bool,
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        let events: Vec<(String, &str, String, Value)> = rows
            .iter()
            .map(|(d, day, h, color)| {
                let mut props = json!({});
                if let Some(c) = color {
                    props["color"] = json!(c);
                }
                if d.starts_with('v') {
                    props["$process_person_profile"] = json!(false);
                }
                (d.clone(), "buy", iso(*day, *h), props)
            })
            .collect();
        capture(app.persons(), &events);
        let breakdown = if by_color {
            json!({"breakdown": "color", "breakdown_limit": limit})
        } else {
            Value::Null
        };
        let (unique, total) = (if weekly { "weekly_active" } else { "dau" }, "total");
        let mut q = query(unique, None, breakdown.clone());
        q["dateRange"] = json!({"date_from": "2020-01-02", "date_to": "2020-01-05"});
        let mut qt = query(total, None, breakdown);
        qt["dateRange"] = q["dateRange"].clone();
        let su = rt.block_on(trend(&app, q.clone()));
        let st = rt.block_on(trend(&app, qt.clone()));
        let days = ["2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"];
        // The visitors' (unique, events) per (day, color value) as the
        // chart buckets them.
        let bucket = |c: &Option<&str>| match c {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => BREAKDOWN_NULL.to_string(),
        };
        for (i, _) in days.iter().enumerate() {
            let d = i as i64 + 1;
            for row in st.as_array().expect("rows") {
                let bd = row["breakdown_value"].as_str().map(str::to_string);
                let point = Point { series: 0, day: Some(day_us(d)), breakdown: bd.clone() };
                let got = rt.block_on(actors_of(&app, &qt, point)).expect("actors");
                let visitors: u64 = rows.iter().filter(|(w, day, _, c)| {
                    w.starts_with('v') && *day == d && match bd.as_deref() {
                        None => true,
                        Some(BREAKDOWN_OTHER) => !st.as_array().expect("rows").iter().any(|r| r["breakdown_value"] == json!(bucket(c))),
                        Some(v) => bucket(c) == v,
                    }
                }).count() as u64;
                let sum: u64 = got.iter().map(|t| t.event_count).sum();
                prop_assert_eq!((sum + visitors) as f64, row["data"][i].as_f64().expect("value"), "total {:?} day {}", bd, d);
            }
            for row in su.as_array().expect("rows") {
                let bd = row["breakdown_value"].as_str().map(str::to_string);
                if bd.as_deref() == Some(BREAKDOWN_OTHER) {
                    continue;
                }
                let point = Point { series: 0, day: Some(day_us(d)), breakdown: bd.clone() };
                let got = rt.block_on(actors_of(&app, &q, point)).expect("actors");
                let lo = if weekly { d - 6 } else { d };
                let mut visitors: Vec<&String> = rows.iter().filter(|(w, day, _, c)| {
                    w.starts_with('v') && (lo..=d).contains(day)
                        && bd.as_deref().is_none_or(|v| bucket(c) == v)
                }).map(|(w, ..)| w).collect();
                visitors.sort();
                visitors.dedup();
                prop_assert_eq!((got.len() + visitors.len()) as f64, row["data"][i].as_f64().expect("value"), "unique {:?} day {}", bd, d);
            }
        }
        app.close().expect("close");
    }
}
