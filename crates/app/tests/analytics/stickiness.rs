//! Stickiness: random rows against a reference computed here (actors per
//! number of days with the event), with persons, personless events, a
//! merge and a deleted person; the cumulative form, the criteria, and the
//! parameter checks.

use std::collections::BTreeMap;

use elide_app::analytics::stickiness::{self, StickinessSpec};
use proptest::prelude::*;
use serde_json::json;

use super::*;

async fn stick(app: &App, q: Value) -> std::result::Result<Value, String> {
    let Value::Object(q) = q else {
        panic!("a query object")
    };
    let spec = StickinessSpec::parse(&q, now()).map_err(|e| e.to_string())?;
    let counts = stickiness::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(stickiness::results(&spec, &counts))
}

fn query(filter: Value) -> Value {
    json!({"kind": "StickinessQuery", "interval": "day",
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-05"},
        "series": [{"kind": "EventsNode", "event": "use"}],
        "stickinessFilter": filter})
}

const IDS: [&str; 5] = ["a", "b", "c", "anon0", "anon1"];

/// `(actor, day, hit)`: actors 3 and 4 are personless.
fn reference(rows: &[(usize, i64, bool)], at_least: usize) -> Vec<u64> {
    let mut days: BTreeMap<usize, BTreeMap<i64, usize>> = BTreeMap::new();
    for &(a, d, hit) in rows {
        if hit && (0..5).contains(&d) {
            *days.entry(a).or_default().entry(d).or_default() += 1;
        }
    }
    let mut out = vec![0u64; 5];
    for per_day in days.values() {
        let n = per_day.values().filter(|&&k| k >= at_least).count();
        if n > 0 {
            out[n - 1] += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random events over seven days (two outside the range), of persons
    /// and personless visitors: each series equals the reference, plain,
    /// cumulative and with at least two events a day.
    #[test]
    fn stickiness_matches_the_reference(
        rows in proptest::collection::vec((0usize..5, -1i64..6, any::<bool>(), 0u32..24), 1..60),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        let evs: Vec<(&str, &str, String, Value)> = rows
            .iter()
            .map(|&(a, d, hit, h)| {
                let props = if a >= 3 { json!({"$process_person_profile": false}) } else { json!({}) };
                (IDS[a], if hit { "use" } else { "other" }, iso(d, h), props)
            })
            .collect();
        capture(app.persons(), &evs);
        let plain: Vec<(usize, i64, bool)> = rows.iter().map(|&(a, d, hit, _)| (a, d, hit)).collect();
        let s = rt.block_on(stick(&app, query(Value::Null))).expect("stickiness");
        let want = reference(&plain, 1);
        prop_assert_eq!(&s[0]["data"], &json!(want));
        prop_assert_eq!(s[0]["count"].as_u64(), Some(want.iter().sum::<u64>()));
        let s = rt.block_on(stick(&app, query(json!({"computedAs": "cumulative"})))).expect("cumulative");
        let cumulative: Vec<u64> = (0..5).map(|k| want[k..].iter().sum()).collect();
        prop_assert_eq!(&s[0]["data"], &json!(cumulative));
        let s = rt
            .block_on(stick(&app, query(json!({"stickinessCriteria": {"operator": "gte", "value": 2}}))))
            .expect("criteria");
        prop_assert_eq!(&s[0]["data"], &json!(reference(&plain, 2)));
        app.close().expect("close");
    }
}

/// The answer's shape (PostHog's: `days` 1…n, `labels` "1 day", "2 days";
/// cumulative "… or more"); a merged person counts once over its ids'
/// days; a deleted person's kept events count for nobody, a person
/// filter applies.
#[tokio::test]
async fn stickiness_counts_persons_through_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = |d: &'static str, day: i64, props: Value| (d, "use", iso(day, 10), props);
    let rows = [
        ev("a", 0, json!({"$set": {"plan": "pro"}})),
        ev("a", 1, json!({})),
        ev("b", 2, json!({})),
        ev("gone", 0, json!({})),
        ev("gone", 1, json!({})),
        ev("gone", 2, json!({})),
    ];
    capture(app.persons(), &rows);
    let s = stick(&app, query(Value::Null)).await.expect("stickiness");
    assert_eq!(s[0]["data"], json!([1, 1, 1, 0, 0]));
    assert_eq!(s[0]["days"], json!([1, 2, 3, 4, 5]));
    assert_eq!(s[0]["labels"][0], "1 day");
    assert_eq!(s[0]["labels"][1], "2 days");
    assert_eq!(s[0]["label"], "use");
    // b joins a: a's days are 0, 1 and 2.
    capture(
        app.persons(),
        &[(
            "a",
            "$identify",
            &iso(3, 0),
            json!({"$anon_distinct_id": "b"}),
        )],
    );
    delete_keeping_events(&app, "gone");
    let s = stick(&app, query(Value::Null)).await.expect("stickiness");
    assert_eq!(s[0]["data"], json!([0, 0, 1, 0, 0]));
    let s = stick(&app, query(json!({"computedAs": "cumulative"})))
        .await
        .expect("cumulative");
    assert_eq!(s[0]["data"], json!([1, 1, 1, 0, 0]));
    assert_eq!(s[0]["labels"][2], "3 days or more");
    // The persons of three days, through a cohort filter: a.
    let c = app
        .persons()
        .create_cohort(P, "a", "", true, Value::Null)
        .expect("cohort");
    app.persons()
        .add_to_static_cohort(
            P,
            c.id,
            &elide_persons::cohorts::CohortPeople {
                uuids: Vec::new(),
                distinct_ids: vec!["a".into()],
            },
        )
        .expect("members");
    let mut q = query(Value::Null);
    q["properties"] = json!([{"type": "cohort", "key": "id", "value": c.id}]);
    let Value::Object(q) = q else {
        unreachable!("an object")
    };
    let spec = StickinessSpec::parse(&q, now()).expect("spec");
    let limits = QueryLimits::default();
    let listed = |n| stickiness::persons_of(app.persons(), P, &spec, 0, n, &limits);
    assert_eq!(listed(3).await.expect("persons"), vec![uuid_of(&app, "a")]);
    assert_eq!(listed(1).await.expect("persons"), Vec::<String>::new());
    let mut q = query(Value::Null);
    q["properties"] = json!([{"key": "plan", "value": "free", "type": "person"}]);
    assert_eq!(
        stick(&app, q).await.expect("filtered")[0]["data"],
        json!([0, 0, 0, 0, 0])
    );
    // By week: one week holds all of it.
    let mut q = query(Value::Null);
    q["interval"] = json!("week");
    let s = stick(&app, q).await.expect("weeks");
    assert_eq!(s[0]["labels"][0], "1 week");
    assert_eq!(s[0]["data"][0], 1);
}

/// What is not served is refused, not ignored.
#[tokio::test]
async fn stickiness_parameters_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    for (change, says) in [
        (json!({"intervalCount": 2}), "intervalCount"),
        (json!({"compareFilter": {"compare": true}}), "compareFilter"),
        (
            json!({"stickinessFilter": {"computedAs": "sum"}}),
            "computedAs",
        ),
        (
            json!({"stickinessFilter": {"stickinessCriteria": {"operator": "between", "value": 1}}}),
            "operator",
        ),
        (
            json!({"series": [{"kind": "EventsNode", "event": "use", "math": "hogql"}]}),
            "math hogql",
        ),
        (
            json!({"series": [{"kind": "ActionsNode", "id": 3}]}),
            "ActionsNode",
        ),
        (json!({"series": "use"}), "series must be a list"),
    ] {
        let mut q = query(Value::Null);
        for (k, v) in change.as_object().expect("object") {
            q[k] = v.clone();
        }
        let err = stick(&app, q).await.expect_err("refused");
        assert!(err.contains(says), "{change}: {err}");
        assert!(!err.contains("TrendsQuery"), "{err}");
    }
}
