//! Trends' property maths (`sum`, `avg`, `min`, `max`, `median`, `p75`
//! … `p99` of `math_property`), `unique_session` and the per-actor maths
//! (`avg_count_per_actor` …): random rows against a reference computed
//! here, with persons, personless events and a deleted person, and the
//! parameter checks.

use std::collections::{BTreeMap, BTreeSet};

use elide_app::analytics::trends::{self, TrendsSpec};
use proptest::prelude::*;
use serde_json::json;

use super::*;

async fn trend(app: &App, q: Value) -> std::result::Result<Value, String> {
    let Value::Object(q) = q else {
        panic!("a query object")
    };
    let spec = TrendsSpec::parse(&q, now()).map_err(|e| e.to_string())?;
    let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(trends::results(&spec, &counts))
}

fn floats(series: &Value, i: usize) -> Vec<f64> {
    series[i]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

/// A property's value as PostHog's `toFloat` reads it: a number, or text
/// that is one.
fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// ClickHouse's `quantile` on few values: linear between the nearest two.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// `math` over `values` (0 over none), as PostHog's `ifNull(…, 0)`.
fn aggregate(math: &str, values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    match math.trim_end_matches("_count_per_actor") {
        "sum" => values.iter().sum(),
        "avg" => values.iter().sum::<f64>() / n,
        "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "median" => quantile(values, 0.5),
        p => quantile(
            values,
            f64::from(p[1..].parse::<u8>().expect("pNN")) / 100.0,
        ),
    }
}

/// One event: actor (a person's distinct id, or a personless one), day,
/// `amount`, `$session_id`.
type Row = (usize, i64, Option<Value>, Option<&'static str>);

const ACTORS: [&str; 6] = ["p0", "p1", "p2", "p3", "anon0", "anon1"];

/// The persons' `score` (person property).
fn score(actor: usize) -> Option<f64> {
    (actor < 4 && actor != 2).then_some(10.0 * (actor as f64 + 1.0))
}

fn amount() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        (-50i64..200).prop_map(|n| Some(json!(n))),
        (0u32..1000).prop_map(|n| Some(json!(f64::from(n) / 8.0))),
        (0u32..100).prop_map(|n| Some(json!(format!("{n}.5")))),
        Just(Some(json!("abc"))),
        Just(Some(json!(true))),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        0usize..ACTORS.len(),
        0i64..3,
        amount(),
        prop_oneof![
            Just(None),
            Just(Some("s1")),
            Just(Some("s2")),
            Just(Some("s3"))
        ],
    )
}

/// The reference: per day, `math` over the events `keep` lets through.
fn reference(rows: &[Row], math: &str, person_property: bool) -> Vec<f64> {
    (0..3)
        .map(|d| {
            let day: Vec<&Row> = rows.iter().filter(|r| r.1 == d).collect();
            if math == "unique_session" {
                let s: BTreeSet<&str> = day.iter().map(|r| r.3.unwrap_or("")).collect();
                return s.len() as f64;
            }
            if math.ends_with("_count_per_actor") {
                let mut per: BTreeMap<usize, f64> = BTreeMap::new();
                for r in &day {
                    *per.entry(r.0).or_default() += 1.0;
                }
                return aggregate(math, per.into_values().collect());
            }
            let values = day
                .iter()
                .filter_map(|r| {
                    if person_property {
                        score(r.0)
                    } else {
                        number(r.2.as_ref())
                    }
                })
                .collect();
            aggregate(math, values)
        })
        .collect()
}

fn load(app: &App, rows: &[Row]) {
    // The persons first, with their score.
    let mut evs: Vec<(String, &str, String, Value)> = (0..4)
        .map(|a| {
            let set = match score(a) {
                Some(s) => json!({"$set": {"score": s}}),
                None => json!({}),
            };
            (ACTORS[a].to_string(), "$identify", iso(-1, 0), set)
        })
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let mut props = json!({});
        if let Some(a) = &r.2 {
            props["amount"] = a.clone();
        }
        if let Some(s) = r.3 {
            props["$session_id"] = json!(s);
        }
        if r.0 >= 4 {
            props["$process_person_profile"] = json!(false);
        }
        let t = (day0() + chrono::Duration::days(r.1) + chrono::Duration::seconds(i as i64))
            .to_rfc3339();
        evs.push((ACTORS[r.0].to_string(), "buy", t, props));
    }
    capture(app.persons(), &evs);
}

const MATHS: [&str; 15] = [
    "sum",
    "avg",
    "min",
    "max",
    "median",
    "p75",
    "p90",
    "p95",
    "p99",
    "unique_session",
    "avg_count_per_actor",
    "min_count_per_actor",
    "max_count_per_actor",
    "median_count_per_actor",
    "p90_count_per_actor",
];

/// Equal but for rounding; a quantile within a millionth of the gap
/// between the two values it lies between (DataFusion's `percentile_cont`
/// truncates its interpolation weight to six decimals; the values here
/// are at most 250 apart).
fn close(math: &str, got: &[f64], want: &[f64]) -> bool {
    let quantile = math.starts_with('p') || math.starts_with("median");
    let slack = if quantile { 250e-6 } else { 0.0 };
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() <= 1e-9 * w.abs().max(1.0) + slack)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Every math over random rows equals the reference: over the events
    /// alone, and with a person filter that every actor passes (the
    /// persons' events and the personless ones, read apart and
    /// aggregated together); the person-property maths over the persons'
    /// score (personless events have none).
    #[test]
    fn maths_match_the_reference(rows in proptest::collection::vec(row(), 1..50)) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        load(&app, &rows);
        let everyone = json!([{"key": "score", "value": "x", "operator": "is_not", "type": "person"}]);
        for math in MATHS {
            for filtered in [false, true] {
                let mut series = json!({"event": "buy", "math": math, "math_property": "amount"});
                if filtered {
                    series["properties"] = everyone.clone();
                }
                let q = json!({"kind": "TrendsQuery", "interval": "day",
                    "dateRange": {"date_from": iso(0, 0)[..10].to_string(), "date_to": iso(2, 0)[..10].to_string()},
                    "series": [series]});
                let s = rt.block_on(trend(&app, q)).expect("trend");
                let want = reference(&rows, math, false);
                prop_assert!(close(math, &floats(&s, 0), &want), "{} filtered={}: {:?} != {:?}", math, filtered, floats(&s, 0), want);
                prop_assert_eq!(s[0]["action"]["math"].as_str(), Some(math));
            }
        }
        for math in ["sum", "avg", "max", "p90"] {
            let q = json!({"kind": "TrendsQuery", "interval": "day",
                "dateRange": {"date_from": iso(0, 0)[..10].to_string(), "date_to": iso(2, 0)[..10].to_string()},
                "series": [{"event": "buy", "math": math, "math_property": "score",
                            "math_property_type": "person_properties"}]});
            let s = rt.block_on(trend(&app, q)).expect("trend");
            let want = reference(&rows, math, true);
            prop_assert!(close(math, &floats(&s, 0), &want), "person {}: {:?} != {:?}", math, floats(&s, 0), want);
        }
        app.close().expect("close");
    }
}

/// A breakdown ranks its values by their total, and sums the rest in
/// Other per period (as PostHog's `arrayFold` sums the rows past the
/// limit, whatever the math); the action names the math property.
#[tokio::test]
async fn a_property_math_breaks_down_and_folds_into_other() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = |d: &'static str, plan: &str, amount: f64, h: u32| {
        (d, "buy", iso(0, h), json!({"plan": plan, "amount": amount}))
    };
    let rows = [
        ev("a", "pro", 100.0, 1),
        ev("a", "pro", 50.0, 2),
        ev("b", "free", 5.0, 3),
        ev("b", "team", 20.0, 4),
        ev("c", "team", 10.0, 5),
    ];
    capture(app.persons(), &rows);
    let q = |math: &str, limit: usize| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [{"event": "buy", "math": math, "math_property": "amount"}],
            "breakdownFilter": {"breakdown": "plan", "breakdown_limit": limit}})
    };
    let s = trend(&app, q("avg", 1)).await.expect("avg");
    let got: Vec<(String, f64)> = s
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["breakdown_value"].as_str().expect("value").to_string(),
                r["data"][0].as_f64().expect("number"),
            )
        })
        .collect();
    // pro 75, team 15, free 5: Other is 15 + 5.
    assert_eq!(
        got,
        vec![
            ("pro".to_string(), 75.0),
            (trends::BREAKDOWN_OTHER.to_string(), 20.0)
        ]
    );
    assert_eq!(s[0]["action"]["math_property"], "amount");
    assert_eq!(s[0]["count"], 75.0);
    let s = trend(&app, q("sum", 5)).await.expect("sum");
    assert_eq!(s.as_array().map(Vec::len), Some(3));
    assert_eq!(s[0]["breakdown_value"], "pro");
    assert_eq!(s[0]["data"], json!([150.0]));
}

/// A deleted person's kept events: a math of every event counts them
/// (as `total` does) until a person filter makes the series read
/// persons, as `total` then leaves them out too; a person-property math
/// never reads them.
#[tokio::test]
async fn a_deleted_persons_kept_events_count_as_total_counts_them() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            (
                "a",
                "buy",
                "2020-01-01T10:00:00Z",
                json!({"amount": 10, "$set": {"score": 1}}),
            ),
            (
                "gone",
                "buy",
                "2020-01-01T11:00:00Z",
                json!({"amount": 100, "$set": {"score": 2}}),
            ),
            (
                "anon",
                "buy",
                "2020-01-01T12:00:00Z",
                json!({"amount": 1, "$process_person_profile": false}),
            ),
        ],
    );
    delete_keeping_events(&app, "gone");
    let q = |math: &str, filter: bool, person: bool| {
        let mut series = json!({"event": "buy", "math": math,
            "math_property": if person { "score" } else { "amount" }});
        if person {
            series["math_property_type"] = json!("person_properties");
        }
        if filter {
            series["properties"] =
                json!([{"key": "score", "value": "x", "operator": "is_not", "type": "person"}]);
        }
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [series]})
    };
    let one = |v: Value| floats(&v, 0)[0];
    assert_eq!(
        one(trend(&app, q("sum", false, false)).await.expect("sum")),
        111.0
    );
    assert_eq!(
        one(trend(&app, q("total", false, false)).await.expect("total")),
        3.0
    );
    assert_eq!(
        one(trend(&app, q("sum", true, false)).await.expect("sum")),
        11.0
    );
    assert_eq!(
        one(trend(&app, q("total", true, false)).await.expect("total")),
        2.0
    );
    assert_eq!(
        one(trend(&app, q("sum", false, true)).await.expect("score")),
        1.0
    );
    assert_eq!(
        one(trend(&app, q("max_count_per_actor", false, false))
            .await
            .expect("per actor")),
        1.0
    );
    // gone's id reset: its events are no blocked id's any more, but they
    // carry a deleted person's UUID, and count for nobody still.
    app.persons().reset_distinct_id(P, "gone").expect("reset");
    assert_eq!(
        one(trend(&app, q("sum", true, false)).await.expect("sum")),
        11.0
    );
    assert_eq!(
        one(trend(&app, q("total", true, false)).await.expect("total")),
        2.0
    );
    // Text that parses as no finite number is no value.
    capture(
        app.persons(),
        &[
            ("a", "buy", "2020-01-01T13:00:00Z", json!({"amount": "NaN"})),
            ("a", "buy", "2020-01-01T14:00:00Z", json!({"amount": "inf"})),
            (
                "a",
                "buy",
                "2020-01-01T15:00:00Z",
                json!({"amount": "-infinity"}),
            ),
        ],
    );
    assert_eq!(
        one(trend(&app, q("sum", false, false)).await.expect("sum")),
        111.0
    );
    assert_eq!(
        one(trend(&app, q("max", false, false)).await.expect("max")),
        100.0
    );
}

/// What a property math needs, and what is refused rather than ignored.
#[tokio::test]
async fn maths_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    for (series, says) in [
        (
            json!({"event": "buy", "math": "sum"}),
            "needs a math_property",
        ),
        (
            json!({"event": "buy", "math": "avg", "math_property": "$session_id", "math_property_type": "session_properties"}),
            "math_property_type",
        ),
        (
            json!({"event": "buy", "math": "avg", "math_property": "x", "math_property_type": "session_properties"}),
            "math_property_type",
        ),
        (
            json!({"event": "buy", "math": "sum", "math_property": "x",
                   "math_property_revenue_currency": {"static": "USD"}}),
            "currency",
        ),
        (
            json!({"event": "buy", "math": "unique_group"}),
            "not supported",
        ),
        (json!({"event": "buy", "math": "hogql"}), "not supported"),
        (
            json!({"event": "buy", "math": "sum", "math_property": 5}),
            "property name",
        ),
    ] {
        let q = json!({"kind": "TrendsQuery", "series": [series.clone()]});
        let err = trend(&app, q).await.expect_err("refused");
        assert!(err.contains(says), "{series}: {err}");
    }
}
