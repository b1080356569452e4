//! Trends' first-time maths (`first_time_for_user`,
//! `first_matching_event_for_user`): random rows against a reference
//! written from PostHog's `FirstTimeForUserEventsQueryAlternator` (each
//! actor's first event before the range's end, `min_timestamp`, counts
//! when the first event matching the filters in the range,
//! `min_timestamp_with_condition`, is the same; its breakdown value is
//! that event's, `argMin`), with persons, personless events, events
//! before and after the range and of another event; and the persons of a
//! point.

use std::collections::BTreeMap;

use elide_app::analytics::trends::{
    self, ActorsPage, Point, TrendsSpec, BREAKDOWN_NULL, BREAKDOWN_OTHER,
};
use proptest::prelude::*;
use serde_json::json;

use super::*;

async fn trend(app: &App, q: &Value) -> Value {
    let Value::Object(q) = q else {
        panic!("a query object")
    };
    let spec = TrendsSpec::parse(q, now()).expect("spec");
    let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("trend");
    trends::results(&spec, &counts)
}

/// (actor, day from -2 to 3, event is `buy` (else `view`), amount,
/// breakdown value `k`).
type Row = (usize, i64, bool, Option<i64>, Option<&'static str>);

const ACTORS: [&str; 5] = ["p0", "p1", "p2", "anon0", "anon1"];

fn row() -> impl Strategy<Value = Row> {
    (
        0usize..ACTORS.len(),
        -2i64..4,
        prop_oneof![4 => Just(true), 1 => Just(false)],
        prop_oneof![Just(None), (0i64..100).prop_map(Some)],
        prop_oneof![Just(None), Just(Some("x")), Just(Some("y")), Just(Some(""))],
    )
}

fn load(app: &App, rows: &[Row]) {
    let mut evs: Vec<(String, &str, String, Value)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let mut props = json!({});
        if let Some(a) = r.3 {
            props["amount"] = json!(a);
        }
        if let Some(k) = r.4 {
            props["k"] = json!(k);
        }
        if r.0 >= 3 {
            props["$process_person_profile"] = json!(false);
        }
        // Distinct times: row i at its day's i-th second.
        let t = (day0() + chrono::Duration::days(r.1) + chrono::Duration::seconds(i as i64))
            .to_rfc3339();
        let event = if r.2 { "buy" } else { "view" };
        evs.push((ACTORS[r.0].to_string(), event, t, props));
    }
    capture(app.persons(), &evs);
}

/// PostHog's counts per breakdown value (`None`: no breakdown) and day
/// 0..=2, over `buy` with `amount > 50` as the filter.
fn reference(rows: &[Row], matching: bool, breakdown: bool) -> BTreeMap<Option<String>, [f64; 3]> {
    let matches = |r: &Row| r.3.is_some_and(|a| a > 50);
    let mut out: BTreeMap<Option<String>, [f64; 3]> = BTreeMap::new();
    for actor in 0..ACTORS.len() {
        // Rows in time order: by day, then by their index.
        let mine: Vec<&Row> = {
            let mut v: Vec<(i64, usize, &Row)> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.0 == actor && r.2 && r.1 <= 2)
                .map(|(i, r)| (r.1, i, r))
                .collect();
            v.sort();
            v.into_iter().map(|(_, _, r)| r).collect()
        };
        let first = if matching {
            mine.iter().find(|r| matches(r))
        } else {
            mine.first().filter(|r| matches(r))
        };
        let Some(first) = first else { continue };
        if first.1 < 0 {
            continue;
        }
        let value = breakdown.then(|| match first.4 {
            None | Some("") => BREAKDOWN_NULL.to_string(),
            Some(k) => k.to_string(),
        });
        out.entry(value).or_insert([0.0; 3])[first.1 as usize] += 1.0;
    }
    out
}

fn query(math: &str, breakdown: bool, display: Option<&str>) -> Value {
    let mut q = json!({"kind": "TrendsQuery", "interval": "day",
        "dateRange": {"date_from": iso(0, 0)[..10].to_string(), "date_to": iso(2, 0)[..10].to_string()},
        "series": [{"event": "buy", "math": math,
            "properties": [{"key": "amount", "value": 50, "operator": "gt", "type": "event"}]}]});
    if breakdown {
        q["breakdownFilter"] = json!({"breakdown": "k"});
    }
    if let Some(d) = display {
        q["trendsFilter"] = json!({"display": d});
    }
    q
}

fn counted(s: &Value) -> BTreeMap<Option<String>, [f64; 3]> {
    let mut out = BTreeMap::new();
    for r in s.as_array().expect("rows") {
        let data: Vec<f64> = r["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        if data.iter().all(|&n| n == 0.0) {
            continue;
        }
        let value = r
            .get("breakdown_value")
            .and_then(|v| v.as_str())
            .map(String::from);
        out.insert(value, [data[0], data[1], data[2]]);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Both maths, with and without a breakdown, and as a total value,
    /// equal the reference.
    #[test]
    fn first_times_match_the_reference(rows in proptest::collection::vec(row(), 1..40)) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        load(&app, &rows);
        for (math, matching) in [("first_time_for_user", false), ("first_matching_event_for_user", true)] {
            for breakdown in [false, true] {
                let s = rt.block_on(trend(&app, &query(math, breakdown, None)));
                let want = reference(&rows, matching, breakdown);
                prop_assert_eq!(counted(&s), want, "{} breakdown={}", math, breakdown);
                if let Some(first) = s.get(0) {
                    prop_assert_eq!(first["action"]["math"].as_str(), Some(math));
                }
            }
            let s = rt.block_on(trend(&app, &query(math, false, Some("BoldNumber"))));
            let want: f64 = reference(&rows, matching, false).values().flatten().sum();
            prop_assert_eq!(s[0]["aggregated_value"].as_f64(), Some(want), "{} total", math);
        }
        app.close().expect("close");
    }
}

/// a buys on day -1 (before the range) and 1; b first on day 1 with a
/// small amount, then on day 2 with a large one; c on day 2; a
/// personless visitor on day 0. The persons of a point are those whose
/// first time it counts, each with that one event.
#[tokio::test]
async fn the_persons_of_a_first_time_point() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = |d: &'static str, day: i64, props: Value| (d, "buy", iso(day, 1), props);
    capture(
        app.persons(),
        &[
            ev("a", -1, json!({"k": "x"})),
            ev("a", 1, json!({"k": "y"})),
            ev("b", 1, json!({"amount": 1, "k": "x"})),
            ev("b", 2, json!({"amount": 90, "k": "y"})),
            ev("c", 2, json!({"k": "y"})),
            ev("c", 2, json!({"k": "y"})),
            ev("v", 0, json!({"$process_person_profile": false})),
        ],
    );
    let q = |math: &str, props: Value| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": iso(0, 0)[..10].to_string(), "date_to": iso(2, 0)[..10].to_string()},
            "series": [{"event": "buy", "math": math, "properties": props}],
            "breakdownFilter": {"breakdown": "k"}})
    };
    let persons_of = |q: Value, day: i64, value: &str| {
        let Value::Object(q) = q else {
            panic!("a query object")
        };
        let spec = TrendsSpec::parse(&q, now()).expect("spec");
        let point = Point {
            series: 0,
            day: Some((day0() + chrono::Duration::days(day)).timestamp_micros()),
            breakdown: Some(value.to_string()),
        };
        let app = &app;
        async move {
            let mut found: Vec<(String, u64)> = trends::actors(
                app.persons(),
                P,
                &spec,
                &point,
                &ActorsPage::default(),
                &QueryLimits::default(),
            )
            .await
            .expect("actors")
            .into_iter()
            .map(|a| (a.distinct_ids.join(","), a.event_count))
            .collect();
            found.sort();
            found
        }
    };
    // First times: the visitor on day 0 (no k), b on day 1 (x), c on
    // day 2 (y); a's first buy is before the range. The visitor counts
    // but has no profile to list.
    let all = q("first_time_for_user", json!([]));
    let s = trend(&app, &all).await;
    let got = counted(&s);
    assert_eq!(got.get(&Some("x".into())), Some(&[0.0, 1.0, 0.0]), "{s}");
    let null = Some(BREAKDOWN_NULL.to_string());
    assert_eq!(got.get(&null), Some(&[1.0, 0.0, 0.0]), "{s}");
    assert_eq!(got.get(&Some("y".into())), Some(&[0.0, 0.0, 1.0]), "{s}");
    assert_eq!(
        persons_of(all.clone(), 1, "x").await,
        [("b".to_string(), 1)]
    );
    // c's two events are at the same instant: both are its first time.
    assert_eq!(
        persons_of(all.clone(), 2, "y").await,
        [("c".to_string(), 2)]
    );
    assert_eq!(persons_of(all.clone(), 1, "y").await, []);
    // Other and the null value are points too (none here).
    assert_eq!(persons_of(all.clone(), 0, BREAKDOWN_NULL).await, []);
    assert_eq!(persons_of(all, 2, BREAKDOWN_OTHER).await, []);
    // With one value shown (x, before y at a tie), y and the null value
    // are Other: on day 2, c.
    let mut one = q("first_time_for_user", json!([]));
    one["breakdownFilter"]["breakdown_limit"] = json!(1);
    assert_eq!(
        persons_of(one.clone(), 2, BREAKDOWN_OTHER).await,
        [("c".to_string(), 2)]
    );
    assert_eq!(persons_of(one, 1, "x").await, [("b".to_string(), 1)]);
    // With amount > 50: b's first buy does not match (nobody counts it
    // for first_time_for_user); its first matching one is on day 2.
    let big = json!([{"key": "amount", "value": 50, "operator": "gt", "type": "event"}]);
    let s = trend(&app, &q("first_time_for_user", big.clone())).await;
    assert_eq!(counted(&s), BTreeMap::new(), "{s}");
    let matching = q("first_matching_event_for_user", big);
    let s = trend(&app, &matching).await;
    assert_eq!(
        counted(&s),
        BTreeMap::from([(Some("y".to_string()), [0.0, 0.0, 1.0])]),
        "{s}"
    );
    assert_eq!(persons_of(matching, 2, "y").await, [("b".to_string(), 1)]);
    app.close().expect("close");
}
