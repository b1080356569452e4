//! Trends: total, DAU, weekly and monthly active persons per period, with
//! a breakdown, merged persons counted once; and a differential test
//! against a reference computed here from the same rows.

use std::collections::{BTreeMap, BTreeSet};

use elide_app::analytics::trends::{self, TrendsSpec, BREAKDOWN_NULL, BREAKDOWN_OTHER};
use proptest::prelude::*;
use serde_json::json;

use super::*;

/// The results of a `TrendsQuery` (it must parse and run).
pub(super) async fn trend(app: &App, q: Value) -> Value {
    let Value::Object(q) = q else {
        panic!("a query object")
    };
    let spec = TrendsSpec::parse(&q, now()).expect("spec");
    let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("trends");
    trends::results(&spec, &counts)
}

fn data(series: &Value, i: usize) -> Vec<i64> {
    series[i]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as i64)
        .collect()
}

#[tokio::test]
async fn counts_per_period_breakdown_and_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            (
                "a",
                "$pageview",
                "2020-01-01T10:00:00Z",
                json!({"$browser": "Chrome"}),
            ),
            (
                "a",
                "$pageview",
                "2020-01-01T11:00:00Z",
                json!({"$browser": "Chrome"}),
            ),
            (
                "b",
                "$pageview",
                "2020-01-01T12:00:00Z",
                json!({"$browser": "Safari"}),
            ),
            ("anon", "$pageview", "2020-01-03T12:00:00Z", json!({})),
            // anon becomes a: one person from now on.
            (
                "a",
                "$identify",
                "2020-01-03T12:30:00Z",
                json!({"$anon_distinct_id": "anon"}),
            ),
            (
                "a",
                "$pageview",
                "2020-01-03T13:00:00Z",
                json!({"$browser": "Chrome"}),
            ),
            ("b", "signup", "2020-01-09T09:00:00Z", json!({})),
        ],
    );
    let q = |math: &str, extra: Value| {
        let mut q = json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-10"},
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": math}]});
        for (k, v) in extra.as_object().expect("object") {
            q[k] = v.clone();
        }
        q
    };
    let s = trend(&app, q("total", json!({}))).await;
    assert_eq!(data(&s, 0), vec![3, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(s[0]["count"], json!(5.0));
    assert_eq!(s[0]["labels"][0], json!("1-Jan-2020"));
    assert_eq!(s[0]["days"][9], json!("2020-01-10"));
    assert_eq!(s[0]["action"]["math"], json!("total"));
    // anon's pageview and a's are one person's.
    let s = trend(&app, q("dau", json!({}))).await;
    assert_eq!(data(&s, 0), vec![2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    let s = trend(&app, q("weekly_active", json!({}))).await;
    assert_eq!(data(&s, 0), vec![2, 2, 2, 2, 2, 2, 2, 1, 1, 0]);
    let s = trend(&app, q("monthly_active", json!({}))).await;
    assert_eq!(data(&s, 0), vec![2; 10]);
    // Breakdown by an event property: the largest first, unset named.
    let s = trend(
        &app,
        q(
            "total",
            json!({"breakdownFilter": {"breakdown": "$browser"}}),
        ),
    )
    .await;
    let by: BTreeMap<String, Vec<i64>> = (0..3)
        .map(|i| {
            (
                s[i]["breakdown_value"].as_str().expect("value").to_string(),
                data(&s, i),
            )
        })
        .collect();
    assert_eq!(s[0]["breakdown_value"], json!("Chrome"));
    assert_eq!(by["Chrome"], vec![2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(by["Safari"], vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(by[BREAKDOWN_NULL], vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    let s = trend(
        &app,
        q(
            "total",
            json!({"breakdownFilter": {"breakdown": "$browser", "breakdown_limit": 1}}),
        ),
    )
    .await;
    // The rest (Safari and the unset value) summed per day, as PostHog's
    // Other; hidden on request.
    assert_eq!(s.as_array().map(Vec::len), Some(2));
    assert_eq!(s[1]["breakdown_value"], json!(BREAKDOWN_OTHER));
    assert_eq!(data(&s, 1), vec![1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    let s = trend(
        &app,
        q(
            "dau",
            json!({"breakdownFilter": {"breakdown": "$browser", "breakdown_limit": 1,
                "breakdown_hide_other_aggregation": true}}),
        ),
    )
    .await;
    assert_eq!(s.as_array().map(Vec::len), Some(1));
    // Weeks start on Sunday (2019-12-29 and 2020-01-05); all events.
    let s = trend(
        &app,
        json!({"kind": "TrendsQuery", "interval": "week",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-10"},
            "series": [{"event": null}, {"event": "$pageview", "math": "dau",
                "properties": [{"key": "$browser", "value": "Chrome"}]}]}),
    )
    .await;
    assert_eq!(s[0]["days"], json!(["2019-12-29", "2020-01-05"]));
    assert_eq!(data(&s, 0), vec![6, 1]);
    assert_eq!(s[0]["label"], json!("All events"));
    assert_eq!(data(&s, 1), vec![1, 0]);
    app.close().expect("close");
}

#[tokio::test]
async fn trends_parameters_are_checked() {
    let err = |q: Value| {
        let Value::Object(q) = q else {
            panic!("object")
        };
        TrendsSpec::parse(&q, now())
            .expect_err("refused")
            .to_string()
    };
    let series = json!([{"kind": "EventsNode", "event": "e"}]);
    for (q, msg) in [
        (json!({"kind": "TrendsQuery"}), "series must be a list"),
        (
            json!({"kind": "TrendsQuery", "series": []}),
            "series is empty",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [{"kind": "ActionsNode", "id": 1}]}),
            "ActionsNode",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [{"event": "e", "math": "p99"}]}),
            "math p99 needs a math_property",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "interval": "week",
            "dateRange": {"date_from": "-30d"}, "trendsFilter": {}, "breakdownFilter": null,
            "compareFilter": {"compare": true, "compare_to": "-1yEnd"}}),
            "compareFilter.compare_to",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [{"event": "e", "math": "weekly_active"}], "interval": "hour"}),
            "use interval day",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "breakdownFilter": {"breakdown_type": "cohort", "breakdown": "x"}}),
            "breakdown_type \"cohort\"",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "breakdownFilter": {"breakdown": "x", "breakdown_limit": 0}}),
            "breakdown_limit",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "breakdownFilter": {"breakdown": "x", "breakdown_hide_other_aggregation": "yes"}}),
            "breakdown_hide_other_aggregation",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "dateRange": {"date_from": "üü"}}),
            "not a date",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "interval": "hour", "dateRange": {"date_from": "2000-01-01"}}),
            "too many periods",
        ),
        (
            json!({"kind": "TrendsQuery", "series": series, "filterTestAccounts": true}),
            "filterTestAccounts",
        ),
    ] {
        let e = err(q.clone());
        assert!(e.contains(msg), "{q}: {e}");
    }
}

/// The reference: per day of `days`, from the rows `(person, day, event)`.
fn reference(
    rows: &[(usize, i64, bool)],
    math: &str,
    days: std::ops::RangeInclusive<i64>,
) -> Vec<i64> {
    days.map(|d| match math {
        "total" => rows.iter().filter(|r| r.2 && r.1 == d).count() as i64,
        "dau" => rows
            .iter()
            .filter(|r| r.2 && r.1 == d)
            .map(|r| r.0)
            .collect::<BTreeSet<_>>()
            .len() as i64,
        _ => {
            let n = if math == "weekly_active" { 7 } else { 30 };
            rows.iter()
                .filter(|r| r.2 && r.1 <= d && r.1 > d - n)
                .map(|r| r.0)
                .collect::<BTreeSet<_>>()
                .len() as i64
        }
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random rows over 40 days of January–February 2020: every math's
    /// series over a random range equals the reference.
    #[test]
    fn trends_match_the_reference(
        rows in proptest::collection::vec((0usize..6, 0i64..40, any::<bool>(), 0u32..24), 1..60),
        from in 0i64..35,
        len in 0i64..10,
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        let names: Vec<String> = (0..6).map(|p| format!("person{p}")).collect();
        let evs: Vec<(String, &str, String)> = rows
            .iter()
            .map(|&(p, d, hit, h)| (names[p].clone(), if hit { "hit" } else { "miss" }, iso(d, h)))
            .collect();
        let refs: Vec<(&str, &str, &str, Value)> =
            evs.iter().map(|(a, b, c)| (a.as_str(), *b, c.as_str(), json!({}))).collect();
        capture(app.persons(), &refs);
        let to = (from + len).min(39);
        let plain: Vec<(usize, i64, bool)> = rows.iter().map(|&(p, d, hit, _)| (p, d, hit)).collect();
        for math in ["total", "dau", "weekly_active", "monthly_active"] {
            let q = json!({"kind": "TrendsQuery", "interval": "day",
                "dateRange": {"date_from": iso(from, 0), "date_to": iso(to, 0)[..10].to_string()},
                "series": [{"event": "hit", "math": math}]});
            let s = rt.block_on(trend(&app, q));
            prop_assert_eq!(data(&s, 0), reference(&plain, math, from..=to), "{}", math);
        }
        app.close().expect("close");
    }
}

/// PostHog's `test_trends_breakdown_empty_null_properties`: null, an empty
/// string and a missing property are one bucket.
#[tokio::test]
async fn a_breakdown_puts_empty_null_and_missing_in_one_bucket() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            (
                "a",
                "$pageview",
                "2020-01-01T10:00:00Z",
                json!({"key": null}),
            ),
            ("b", "$pageview", "2020-01-01T11:00:00Z", json!({"key": ""})),
            ("c", "$pageview", "2020-01-01T12:00:00Z", json!({})),
            (
                "d",
                "$pageview",
                "2020-01-01T13:00:00Z",
                json!({"key": "actual_value"}),
            ),
        ],
    );
    let s = trend(
        &app,
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": "total"}],
            "breakdownFilter": {"breakdown": "key"}}),
    )
    .await;
    let by: BTreeMap<String, Vec<i64>> = (0..s.as_array().map_or(0, Vec::len))
        .map(|i| {
            (
                s[i]["breakdown_value"].as_str().expect("value").to_string(),
                data(&s, i),
            )
        })
        .collect();
    assert_eq!(by.len(), 2, "{by:?}");
    assert_eq!(by[BREAKDOWN_NULL], vec![3]);
    assert_eq!(by["actual_value"], vec![1]);
}

/// Events without a person profile (`$process_person_profile: false`, what
/// posthog-js sends for anonymous visitors under `identified_only`) count
/// as unique users by the person UUID they carry, as in PostHog; an id
/// that later gets a person counts once, as that person.
#[tokio::test]
async fn personless_events_count_as_unique_users() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let anon = json!({"$process_person_profile": false});
    capture(
        app.persons(),
        &[
            ("v1", "$pageview", "2020-01-01T10:00:00Z", anon.clone()),
            ("v1", "$pageview", "2020-01-01T11:00:00Z", anon.clone()),
            ("v2", "$pageview", "2020-01-01T12:00:00Z", anon.clone()),
            ("v3", "$pageview", "2020-01-02T12:00:00Z", anon.clone()),
            ("u", "$pageview", "2020-01-01T13:00:00Z", json!({})),
            // v3 gets a person: its personless event is that person's.
            ("v3", "$pageview", "2020-01-02T13:00:00Z", json!({})),
        ],
    );
    let q = |math: &str| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-03"},
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": math}]})
    };
    assert_eq!(data(&trend(&app, q("total")).await, 0), vec![4, 2, 0]);
    assert_eq!(data(&trend(&app, q("dau")).await, 0), vec![3, 1, 0]);
    assert_eq!(
        data(&trend(&app, q("weekly_active")).await, 0),
        vec![3, 4, 4]
    );
    // Person property filters see a personless event's person properties
    // as absent (as PostHog's empty ones): `is_not` keeps it, `exact`
    // does not, in unique users and in events alike.
    for (math, operator, want) in [
        ("dau", "is_not", vec![3, 1, 0]),
        ("dau", "exact", vec![0, 0, 0]),
        ("total", "is_not", vec![4, 2, 0]),
        ("total", "exact", vec![0, 0, 0]),
        ("weekly_active", "is_not", vec![3, 4, 4]),
    ] {
        let mut with_prop = q(math);
        with_prop["properties"] =
            json!([{"key": "email", "value": "x", "operator": operator, "type": "person"}]);
        assert_eq!(
            data(&trend(&app, with_prop).await, 0),
            want,
            "{math} {operator}"
        );
    }
}

/// A person deleted without its events: the events it kept carry its UUID
/// and no distinct id with a person, as personless events do, but a
/// deleted person counts nowhere.
#[tokio::test]
async fn a_deleted_persons_kept_events_are_not_personless_users() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            ("gone", "$pageview", "2020-01-01T10:00:00Z", json!({})),
            (
                "v1",
                "$pageview",
                "2020-01-01T11:00:00Z",
                json!({"$process_person_profile": false}),
            ),
            ("kept", "$pageview", "2020-01-01T12:00:00Z", json!({})),
        ],
    );
    delete_keeping_events(&app, "gone");
    let q = |math: &str| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": math}]})
    };
    assert_eq!(data(&trend(&app, q("total")).await, 0), vec![3]);
    assert_eq!(data(&trend(&app, q("dau")).await, 0), vec![2]);
    assert_eq!(data(&trend(&app, q("weekly_active")).await, 0), vec![2]);
}

/// A timed `date_to` covers the rest of its day by days (PostHog's
/// `QueryDateRange`), and is the instant it names by hours.
#[tokio::test]
async fn a_timed_date_to_covers_its_day() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            ("u", "$pageview", "2020-01-01T10:00:00Z", json!({})),
            ("u", "$pageview", "2020-01-01T20:00:00Z", json!({})),
            ("u", "$pageview", "2020-01-02T01:00:00Z", json!({})),
        ],
    );
    let q = |interval: &str| {
        json!({"kind": "TrendsQuery", "interval": interval,
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01T12:00:00Z"},
            "series": [{"kind": "EventsNode", "event": "$pageview"}]})
    };
    assert_eq!(data(&trend(&app, q("day")).await, 0), vec![2]);
    let hours = data(&trend(&app, q("hour")).await, 0);
    assert_eq!(hours.iter().sum::<i64>(), 1, "{hours:?}");
}

/// Unique users after the cases that leave events without a person: a
/// person deleted without its events counts nowhere, also by the events
/// its id sent personless before it identified; an id reset away from a
/// live person counts for nobody, and the person once.
#[tokio::test]
async fn no_personless_user_for_the_deleted_nor_a_second_time_for_a_person() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let anon = json!({"$process_person_profile": false});
    capture(
        app.persons(),
        &[
            ("anon", "$pageview", "2020-01-01T10:00:00Z", anon.clone()),
            (
                "user",
                "$identify",
                "2020-01-01T10:30:00Z",
                json!({"$anon_distinct_id": "anon"}),
            ),
            ("user", "$pageview", "2020-01-01T11:00:00Z", json!({})),
            ("a", "$pageview", "2020-01-01T12:00:00Z", json!({})),
            (
                "a",
                "$identify",
                "2020-01-01T12:10:00Z",
                json!({"$anon_distinct_id": "b"}),
            ),
            ("b", "$pageview", "2020-01-01T12:20:00Z", json!({})),
        ],
    );
    let q = |math: &str| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": math}]})
    };
    assert_eq!(data(&trend(&app, q("dau")).await, 0), vec![2]);
    delete_keeping_events(&app, "user");
    app.persons().reset_distinct_id(P, "b").expect("reset b");
    for math in ["dau", "weekly_active", "monthly_active"] {
        assert_eq!(data(&trend(&app, q(math)).await, 0), vec![1], "{math}");
    }
    let mut is_not = q("dau");
    is_not["properties"] =
        json!([{"key": "email", "value": "x", "operator": "is_not", "type": "person"}]);
    assert_eq!(data(&trend(&app, is_not).await, 0), vec![1]);
}

/// A breakdown by a property unique to each event makes about one value
/// of every event: what the trend holds of them counts against the
/// query's memory cap (its own error past it), and with room the counts
/// are right, for events (`total`) and for persons (`dau`,
/// `weekly_active`).
#[tokio::test]
async fn a_breakdown_of_unique_values_counts_against_the_memory_cap() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let rows: Vec<(String, Value)> = (0..20_000)
        .map(|i| {
            (
                format!("u{}", i % 50),
                json!({"$insert_id": format!("{i:08}-{}", "x".repeat(100))}),
            )
        })
        .collect();
    let list: Vec<(&str, &str, &str, Value)> = rows
        .iter()
        .map(|(d, p)| (d.as_str(), "e", "2025-12-30T12:00:00Z", p.clone()))
        .collect();
    capture(app.persons(), &list);
    for math in ["total", "dau", "weekly_active"] {
        let Value::Object(q) = json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2025-12-30", "date_to": "2025-12-30"},
            "series": [{"event": "e", "math": math}],
            "breakdownFilter": {"breakdown": "$insert_id", "breakdown_limit": 5}})
        else {
            unreachable!("an object")
        };
        let spec = TrendsSpec::parse(&q, now()).expect("spec");
        let limits = |bytes: usize| QueryLimits {
            memory_bytes: Some(bytes),
            ..QueryLimits::default()
        };
        // 20,000 values of ~110 bytes: past 2 MiB with what each holds.
        let e = match trends::compute(app.persons(), P, &spec, &limits(2 << 20)).await {
            Ok(c) => panic!("{math}: answered {} values under the cap", c[0].len()),
            Err(e) => e,
        };
        match &e {
            elide_app::AppError::Query(q) => assert!(
                matches!(
                    q.find_root(),
                    datafusion::error::DataFusionError::ResourcesExhausted(_)
                ),
                "{math}: {e}"
            ),
            e => panic!("{math}: {e:?}"),
        }
        // Persons over time group by person, not by value: there the
        // refusal is the trend's own tally's, not an operator's.
        if math == "weekly_active" {
            assert!(e.to_string().contains("trends"), "{math}: {e}");
        }
        let counts = trends::compute(app.persons(), P, &spec, &limits(512 << 20))
            .await
            .expect(math);
        assert_eq!(counts[0].len(), 20_000, "{math}");
        assert!(
            counts[0]
                .values()
                .all(|by_day| by_day.values().sum::<f64>() == 1.0),
            "{math}"
        );
    }
}

/// Where a chart starts counting, as PostHog's
/// `date_from_with_adjusted_start_of_interval`: weeks from the start of
/// `date_from`'s day (the first week, labelled by its Sunday, holds only
/// what follows it), days from a relative `date_from` in hours from that
/// hour; days from any other `date_from` from the start of its day.
#[tokio::test]
async fn a_chart_counts_from_date_from_not_from_its_first_period() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            // Monday 2020-01-06 and Thursday 2020-01-09.
            ("a", "wk", "2020-01-06T10:00:00Z", json!({})),
            ("a", "wk", "2020-01-09T10:00:00Z", json!({})),
            ("a", "wk", "2020-01-13T10:00:00Z", json!({})),
            ("b", "hr", "2020-01-01T10:00:00Z", json!({})),
            ("b", "hr", "2020-01-01T13:00:00Z", json!({})),
            ("b", "hr", "2020-01-02T11:00:00Z", json!({})),
        ],
    );
    let run = |q: Value, now: chrono::DateTime<Utc>| {
        let app = &app;
        async move {
            let Value::Object(q) = q else {
                panic!("object")
            };
            let spec = TrendsSpec::parse(&q, now).expect("spec");
            let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
                .await
                .expect("trends");
            trends::results(&spec, &counts)
        }
    };
    // From Wednesday 2020-01-08: the week of Sunday 2020-01-05 holds
    // Thursday's event only.
    let s = run(
        json!({"kind": "TrendsQuery", "interval": "week",
            "dateRange": {"date_from": "2020-01-08", "date_to": "2020-01-15"},
            "series": [{"kind": "EventsNode", "event": "wk"}]}),
        now(),
    )
    .await;
    assert_eq!(s[0]["days"], json!(["2020-01-05", "2020-01-12"]));
    assert_eq!(data(&s, 0), vec![1, 1]);
    // -24h at 2020-01-02 12:00, by day: from 2020-01-01 12:00.
    let noon = Utc
        .with_ymd_and_hms(2020, 1, 2, 12, 0, 0)
        .single()
        .expect("t");
    let by_day = |from: &str| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": from},
            "series": [{"kind": "EventsNode", "event": "hr"}]})
    };
    let s = run(by_day("-24h"), noon).await;
    assert_eq!(s[0]["days"], json!(["2020-01-01", "2020-01-02"]));
    assert_eq!(data(&s, 0), vec![1, 1]);
    let s = run(by_day("-1d"), noon).await;
    assert_eq!(data(&s, 0), vec![2, 1]);
    app.close().expect("close");
}

/// Breakdown values are ranked as PostHog ranks them: every value before
/// the null one, then by total, then by value; `breakdown_limit` keeps
/// the first.
#[tokio::test]
async fn the_null_breakdown_value_ranks_last() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut events = Vec::new();
    for (i, browser) in [
        None,
        None,
        None,
        Some("Safari"),
        Some("Safari"),
        Some("Chrome"),
    ]
    .into_iter()
    .enumerate()
    {
        let props = browser.map_or(json!({}), |b| json!({"$browser": b}));
        events.push((format!("p{i}"), props));
    }
    let rows: Vec<(&str, &str, &str, Value)> = events
        .iter()
        .map(|(d, p)| (d.as_str(), "$pageview", "2020-01-01T10:00:00Z", p.clone()))
        .collect();
    capture(app.persons(), &rows);
    let q = |limit: Value| {
        json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [{"kind": "EventsNode", "event": "$pageview"}],
            "breakdownFilter": {"breakdown": "$browser", "breakdown_limit": limit}})
    };
    let values = |s: &Value| -> Vec<String> {
        (0..s.as_array().map_or(0, Vec::len))
            .map(|i| s[i]["breakdown_value"].as_str().expect("value").to_string())
            .collect()
    };
    let s = trend(&app, q(Value::Null)).await;
    assert_eq!(values(&s), vec!["Safari", "Chrome", BREAKDOWN_NULL]);
    let s = trend(&app, q(json!(1))).await;
    assert_eq!(values(&s), vec!["Safari", BREAKDOWN_OTHER]);
    assert_eq!(s[1]["data"], json!([4.0]));
    app.close().expect("close");
}
