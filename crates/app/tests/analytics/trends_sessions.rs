//! Trends' `math_property: "$session_duration"` (PostHog's sessions
//! table): each session of a period's matching events counts once in that
//! period, with its duration from all its events (any event, any
//! properties) in whole seconds, as `dateDiff('second', …)` counts them;
//! events without a `$session_id` are in no session. Random rows against
//! a reference computed here.

use std::collections::{BTreeMap, BTreeSet};

use elide_app::analytics::trends::{self, TrendsSpec, BREAKDOWN_NULL};
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

/// (actor, day from -1 to 3, event is `buy` (else `view`), milliseconds
/// into the day, session, breakdown value `k`).
type Row = (
    usize,
    i64,
    bool,
    i64,
    Option<&'static str>,
    Option<&'static str>,
);

const ACTORS: [&str; 4] = ["p0", "p1", "p2", "anon0"];

fn row() -> impl Strategy<Value = Row> {
    (
        0usize..ACTORS.len(),
        -1i64..4,
        prop_oneof![3 => Just(true), 1 => Just(false)],
        0i64..86_400_000,
        prop_oneof![
            Just(None),
            Just(Some("")),
            Just(Some("s1")),
            Just(Some("s2")),
            Just(Some("s3"))
        ],
        prop_oneof![Just(None), Just(Some("x")), Just(Some("y"))],
    )
}

fn micros(r: &Row) -> i64 {
    (day0() + chrono::Duration::days(r.1) + chrono::Duration::milliseconds(r.3)).timestamp_micros()
}

fn load(app: &App, rows: &[Row]) {
    let evs: Vec<(String, &str, String, Value)> = rows
        .iter()
        .map(|r| {
            let mut props = json!({});
            if let Some(s) = r.4 {
                props["$session_id"] = json!(s);
            }
            if let Some(k) = r.5 {
                props["k"] = json!(k);
            }
            if r.0 == 3 {
                props["$process_person_profile"] = json!(false);
            }
            let t = chrono::DateTime::from_timestamp_micros(micros(r))
                .expect("time")
                .to_rfc3339();
            let event = if r.2 { "buy" } else { "view" };
            (ACTORS[r.0].to_string(), event, t, props)
        })
        .collect();
    capture(app.persons(), &evs);
}

fn aggregate(math: &str, mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    match math {
        "sum" => v.iter().sum(),
        "avg" => v.iter().sum::<f64>() / v.len() as f64,
        "min" => v[0],
        "max" => v[v.len() - 1],
        // Linear between the two nearest, as ClickHouse's `quantile`.
        _ => {
            let pos = 0.5 * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        }
    }
}

/// Per breakdown value (`None`: none) the math over days 0..=2 of the
/// durations of the sessions of `buy` events that day (and value).
fn reference(rows: &[Row], math: &str, breakdown: bool) -> BTreeMap<Option<String>, Vec<f64>> {
    // A session's first and last second, over all its events.
    let mut span: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for r in rows {
        let Some(s) = r.4.filter(|s| !s.is_empty()) else {
            continue;
        };
        let sec = micros(r).div_euclid(1_000_000);
        let e = span.entry(s).or_insert((sec, sec));
        e.0 = e.0.min(sec);
        e.1 = e.1.max(sec);
    }
    let mut sessions: BTreeMap<Option<String>, [BTreeSet<&str>; 3]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.2 && (0..3).contains(&r.1)) {
        let Some(s) = r.4.filter(|s| !s.is_empty()) else {
            continue;
        };
        let value = breakdown.then(|| r.5.unwrap_or(BREAKDOWN_NULL).to_string());
        sessions.entry(value).or_default()[r.1 as usize].insert(s);
    }
    sessions
        .into_iter()
        .map(|(v, days)| {
            let data = days
                .iter()
                .map(|set| {
                    let d = set.iter().map(|s| (span[s].1 - span[s].0) as f64).collect();
                    aggregate(math, d)
                })
                .collect();
            (v, data)
        })
        .collect()
}

fn query(math: &str, breakdown: bool) -> Value {
    let mut q = json!({"kind": "TrendsQuery", "interval": "day",
        "dateRange": {"date_from": iso(0, 0)[..10].to_string(), "date_to": iso(2, 0)[..10].to_string()},
        "series": [{"event": "buy", "math": math, "math_property": "$session_duration"}]});
    if breakdown {
        q["breakdownFilter"] = json!({"breakdown": "k"});
    }
    q
}

fn rows_of(s: &Value) -> BTreeMap<Option<String>, Vec<f64>> {
    s.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let data = r["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            let value = r
                .get("breakdown_value")
                .and_then(|v| v.as_str())
                .map(String::from);
            (value, data)
        })
        .collect()
}

fn close(a: &BTreeMap<Option<String>, Vec<f64>>, b: &BTreeMap<Option<String>, Vec<f64>>) -> bool {
    // A value of no session is all zeros: a row the chart may have or not.
    let nonzero = |m: &BTreeMap<Option<String>, Vec<f64>>| -> BTreeMap<Option<String>, Vec<f64>> {
        m.iter()
            .filter(|(_, d)| d.iter().any(|&x| x != 0.0))
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect()
    };
    let (a, b) = (nonzero(a), nonzero(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|((ka, da), (kb, db))| {
            ka == kb
                && da.len() == db.len()
                && da
                    .iter()
                    .zip(db)
                    .all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn session_durations_match_the_reference(rows in proptest::collection::vec(row(), 1..40)) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        load(&app, &rows);
        for math in ["avg", "sum", "max", "min", "median"] {
            for breakdown in [false, true] {
                let s = rt.block_on(trend(&app, &query(math, breakdown)));
                let (got, want) = (rows_of(&s), reference(&rows, math, breakdown));
                prop_assert!(close(&got, &want), "{} breakdown={}: {:?} != {:?}", math, breakdown, got, want);
            }
        }
        app.close().expect("close");
    }
}

/// A session across midnight counts on both days with its whole
/// duration; a total value counts each session of the range once.
#[tokio::test]
async fn a_session_counts_once_per_period_with_its_whole_duration() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = |event: &'static str, t: &str, s: &str| {
        ("a", event, t.to_string(), json!({"$session_id": s}))
    };
    capture(
        app.persons(),
        &[
            // s1: 23:59:30 on day 0 to 00:00:40 on day 1 (70 s), a view
            // last; s2: 10 s on day 1.
            ev("buy", "2020-01-01T23:59:30Z", "s1"),
            ev("buy", "2020-01-02T00:00:20Z", "s1"),
            ev("view", "2020-01-02T00:00:40.900Z", "s1"),
            ev("buy", "2020-01-02T10:00:00Z", "s2"),
            ev("buy", "2020-01-02T10:00:10Z", "s2"),
            // s3: on day 2, then a view the next day (inside the day
            // after the range: counted) and one two days after (outside:
            // cut), so 1 day and 10 s.
            ev("buy", "2020-01-03T10:00:00Z", "s3"),
            ev("view", "2020-01-04T10:00:10Z", "s3"),
            ev("view", "2020-01-05T10:00:00Z", "s3"),
            ("a", "buy", "2020-01-02T11:00:00Z".to_string(), json!({})),
        ],
    );
    let s = trend(&app, &query("avg", false)).await;
    assert_eq!(s[0]["data"], json!([70.0, 40.0, 86410.0]), "{s}");
    let mut q = query("sum", false);
    q["trendsFilter"] = json!({"display": "BoldNumber"});
    let s = trend(&app, &q).await;
    assert_eq!(s[0]["aggregated_value"], json!(86490.0), "{s}");
    // As PostHog's UI sends it: a session property.
    let mut q = query("avg", false);
    q["series"][0]["math_property_type"] = json!("session_properties");
    let s = trend(&app, &q).await;
    assert_eq!(s[0]["data"], json!([70.0, 40.0, 86410.0]), "{s}");
    // A person property of that name is a person property.
    let mut q = query("sum", false);
    q["series"][0]["math_property_type"] = json!("person_properties");
    let s = trend(&app, &q).await;
    assert_eq!(s[0]["data"], json!([0.0, 0.0, 0.0]), "{s}");
    app.close().expect("close");
}
