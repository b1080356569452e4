//! Retention: random rows against a reference computed here (cohorts per
//! day, returns per day after), recurring and first time, cumulative, with
//! a minimum of occurrences, persons and personless visitors, a merge and
//! a deleted person; the answer's shape and the parameter checks.

use std::collections::{BTreeMap, BTreeSet};

use elide_app::analytics::retention::{self, RetentionSpec};
use proptest::prelude::*;
use serde_json::json;

use super::*;

async fn retain(app: &App, q: Value) -> std::result::Result<Value, String> {
    let Value::Object(q) = q else {
        panic!("a query object")
    };
    let spec = RetentionSpec::parse(&q, now()).map_err(|e| e.to_string())?;
    let counts = retention::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(retention::results(&spec, &counts))
}

/// The counts of an answer: per cohort, per interval after.
fn counts(v: &Value) -> Vec<Vec<u64>> {
    v.as_array()
        .expect("cohorts")
        .iter()
        .map(|c| {
            c["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x["count"].as_u64().expect("count"))
                .collect()
        })
        .collect()
}

fn query(filter: Value) -> Value {
    json!({"kind": "RetentionQuery",
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-07"},
        "retentionFilter": filter})
}

const IDS: [&str; 5] = ["a", "b", "c", "anon0", "anon1"];

/// Rows `(actor, day, event)` (0 `start`, 1 `back`, 2 `other`); the range
/// is days 0 to 6.
fn reference(
    rows: &[(usize, i64, u8)],
    same: bool,
    lookahead: usize,
    first_time: bool,
    cumulative: bool,
    minimum: usize,
) -> Vec<Vec<u64>> {
    let is_back = |e: u8| if same { e == 0 } else { e == 1 };
    let mut out = vec![vec![0u64; lookahead]; 7];
    for a in 0..IDS.len() {
        let mine: Vec<&(usize, i64, u8)> = rows.iter().filter(|r| r.0 == a).collect();
        let starts: BTreeSet<i64> = if first_time {
            match mine.iter().filter(|r| r.2 == 0).map(|r| r.1).min() {
                Some(d) if (0..7).contains(&d) => [d].into(),
                _ => BTreeSet::new(),
            }
        } else {
            mine.iter()
                .filter(|r| r.2 == 0 && (0..7).contains(&r.1))
                .map(|r| r.1)
                .collect()
        };
        let mut per_day: BTreeMap<i64, usize> = BTreeMap::new();
        for r in mine
            .iter()
            .filter(|r| is_back(r.2) && (0..7).contains(&r.1))
        {
            *per_day.entry(r.1).or_default() += 1;
        }
        let returns: Vec<i64> = per_day
            .into_iter()
            .filter(|&(_, n)| n >= minimum)
            .map(|(d, _)| d)
            .collect();
        for &i in &starts {
            let ks: Vec<usize> = returns
                .iter()
                .filter(|&&r| r > i && ((r - i) as usize) < lookahead)
                .map(|&r| (r - i) as usize)
                .collect();
            let row = &mut out[i as usize];
            if cumulative {
                let far = ks.iter().copied().max().unwrap_or(0);
                for c in row.iter_mut().take(far + 1) {
                    *c += 1;
                }
            } else {
                row[0] += 1;
                for k in ks {
                    row[k] += 1;
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Random events from three days before the range to two after it:
    /// every form equals the reference.
    #[test]
    fn retention_matches_the_reference(
        rows in proptest::collection::vec((0usize..5, -3i64..9, 0u8..3, 0u32..24), 1..60),
        lookahead in 1usize..9,
        same in any::<bool>(),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        let names = ["start", "back", "other"];
        let evs: Vec<(&str, &str, String, Value)> = rows
            .iter()
            .map(|&(a, d, e, h)| {
                let props = if a >= 3 { json!({"$process_person_profile": false}) } else { json!({}) };
                (IDS[a], names[e as usize], iso(d, h), props)
            })
            .collect();
        capture(app.persons(), &evs);
        let plain: Vec<(usize, i64, u8)> = rows.iter().map(|&(a, d, e, _)| (a, d, e)).collect();
        for (first_time, cumulative, minimum) in
            [(false, false, 1), (true, false, 1), (false, true, 1), (true, true, 2), (false, false, 2)]
        {
            let filter = json!({
                "targetEntity": {"id": "start", "type": "events"},
                "returningEntity": {"id": if same { "start" } else { "back" }, "type": "events"},
                "totalIntervals": lookahead,
                "retentionType": if first_time { "retention_first_time" } else { "retention_recurring" },
                "cumulative": cumulative,
                "minimumOccurrences": minimum,
                "period": "Day",
            });
            let got = counts(&rt.block_on(retain(&app, query(filter.clone()))).expect("retention"));
            let want = reference(&plain, same, lookahead, first_time, cumulative, minimum);
            prop_assert_eq!(got, want, "first_time={} cumulative={} minimum={}", first_time, cumulative, minimum);
            // Each cohort's persons (the visitors have no profile): as
            // many with each appearance as the persons' reference counts.
            if !cumulative {
                let persons_only: Vec<(usize, i64, u8)> = plain.iter().copied().filter(|r| r.0 < 3).collect();
                let want = reference(&persons_only, same, lookahead, first_time, false, minimum);
                let Value::Object(q) = query(filter) else { unreachable!("an object") };
                let spec = RetentionSpec::parse(&q, now()).expect("spec");
                for (i, row) in want.iter().enumerate() {
                    let got = rt
                        .block_on(retention::persons_of(app.persons(), P, &spec, (i, None), (&[], 10_000, 0), &QueryLimits::default()))
                        .expect("persons");
                    let per_k: Vec<u64> = (0..lookahead)
                        .map(|k| got.iter().filter(|(_, ks)| ks.contains(&k)).count() as u64)
                        .collect();
                    prop_assert_eq!(&per_k, row, "cohort {} first_time={} minimum={}", i, first_time, minimum);
                    prop_assert!(got.windows(2).all(|w| w[0].1.len() >= w[1].1.len()), "most appearances first");
                    // Paged in SQL, one at a time: the same list.
                    for (j, want) in got.iter().enumerate() {
                        let one = rt
                            .block_on(retention::persons_of(app.persons(), P, &spec, (i, None), (&[], 1, j), &QueryLimits::default()))
                            .expect("page");
                        prop_assert_eq!(one.as_slice(), std::slice::from_ref(want));
                    }
                }
            }
        }
        app.close().expect("close");
    }
}

/// The answer's shape (PostHog's: a cohort per interval, labelled
/// `Day i` with its date, `totalIntervals` values labelled `Day k`); a
/// merged person is one actor, a deleted one is nobody; weeks from
/// Sunday; without `date_from`, `totalIntervals` intervals up to the end of
/// `date_to`'s.
#[tokio::test]
async fn retention_counts_persons_through_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = |d: &'static str, day: i64| (d, "$pageview", iso(day, 10), json!({}));
    let rows = [
        ev("a", 0),
        ev("a", 2),
        ev("b", 1),
        ev("gone", 0),
        ev("gone", 1),
    ];
    capture(app.persons(), &rows);
    let q = query(json!({"totalIntervals": 3}));
    let s = retain(&app, q.clone()).await.expect("retention");
    assert_eq!(s.as_array().map(Vec::len), Some(7));
    assert_eq!(s[0]["label"], "Day 0");
    assert_eq!(s[1]["date"], "2020-01-02T00:00:00Z");
    assert_eq!(s[0]["values"][2]["label"], "Day 2");
    assert_eq!(counts(&s)[0], vec![2, 1, 1]);
    assert_eq!(counts(&s)[1], vec![2, 0, 0]);
    // Day 0's persons: a and gone, each back once.
    let Value::Object(spec) = q.clone() else {
        unreachable!("an object")
    };
    let spec = RetentionSpec::parse(&spec, now()).expect("spec");
    let cohort = |app: &App| {
        let (persons, spec) = (app.persons().clone(), spec.clone());
        async move {
            retention::persons_of(
                &persons,
                P,
                &spec,
                (0, None),
                (&[], 100, 0),
                &QueryLimits::default(),
            )
            .await
            .expect("persons")
        }
    };
    let (a, gone) = (uuid_of(&app, "a"), uuid_of(&app, "gone"));
    let mut before = cohort(&app).await;
    before.sort();
    let mut want = vec![(a.clone(), vec![0, 2]), (gone, vec![0, 1])];
    want.sort();
    assert_eq!(before, want);
    // b joins a (day 1 is a's too); gone is deleted.
    capture(
        app.persons(),
        &[(
            "a",
            "$identify",
            &iso(5, 0),
            json!({"$anon_distinct_id": "b"}),
        )],
    );
    delete_keeping_events(&app, "gone");
    let s = retain(&app, q).await.expect("retention");
    assert_eq!(counts(&s)[0], vec![1, 1, 1]);
    assert_eq!(counts(&s)[1], vec![1, 1, 0]);
    // The deleted person is in no cohort's persons at once; a came back
    // on days 1 (as b) and 2.
    assert_eq!(cohort(&app).await, vec![(a, vec![0, 1, 2])]);
    // By week, the range 2020-01-01 (a Wednesday) to the 7th: the weeks
    // of Sunday 2019-12-29 and 2020-01-05.
    let s = retain(&app, query(json!({"period": "Week", "totalIntervals": 2})))
        .await
        .expect("weeks");
    assert_eq!(s[0]["date"], "2019-12-29T00:00:00Z");
    assert_eq!(s[0]["label"], "Week 0");
    assert_eq!(counts(&s), vec![vec![1, 0], vec![0, 0]]);
    // No date_from: 4 days up to the end of 2020-01-03.
    let s = retain(
        &app,
        json!({"kind": "RetentionQuery", "dateRange": {"date_to": "2020-01-03"},
            "retentionFilter": {"totalIntervals": 4}}),
    )
    .await
    .expect("no date_from");
    assert_eq!(s[0]["date"], "2019-12-31T00:00:00Z");
    assert_eq!(s.as_array().map(Vec::len), Some(4));
}

/// What is not served is refused, not ignored.
#[tokio::test]
async fn retention_parameters_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    for (filter, says) in [
        (json!({"period": "Year"}), "period"),
        (json!({"totalIntervals": 0}), "totalIntervals"),
        (json!({"totalIntervals": 5000}), "totalIntervals"),
        (
            json!({"retentionType": "retention_first_ever_occurrence"}),
            "retentionType",
        ),
        (
            json!({"targetEntity": {"id": 3, "type": "actions"}}),
            "actions",
        ),
        (json!({"minimumOccurrences": 0}), "minimumOccurrences"),
        (json!({"cumulative": "yes"}), "cumulative"),
        (
            json!({"timeWindowMode": "24_hour_windows"}),
            "timeWindowMode",
        ),
        (json!("Day"), "retentionFilter must be an object"),
    ] {
        let err = retain(&app, query(filter.clone()))
            .await
            .expect_err("refused");
        assert!(err.contains(says), "{filter}: {err}");
    }
    for (q, says) in [
        (
            json!({"kind": "RetentionQuery", "breakdownFilter": {"breakdown": 7}}),
            "breakdownFilter.breakdown",
        ),
        (
            json!({"kind": "RetentionQuery", "breakdownFilter": {"breakdown": "x", "breakdown_type": "cohort"}}),
            "breakdown_type",
        ),
        (
            json!({"kind": "RetentionQuery", "breakdownFilter": {"breakdowns": [
                {"property": "x"}, {"property": "y"}]}}),
            "one breakdown",
        ),
        (
            json!({"kind": "RetentionQuery", "breakdownFilter": {"breakdown": "x",
                "breakdown_histogram_bin_count": 10}}),
            "breakdown_histogram_bin_count",
        ),
        (
            json!({"kind": "RetentionQuery", "breakdownFilter": {"breakdown": "x", "breakdown_limit": 0}}),
            "breakdown_limit",
        ),
        (
            json!({"kind": "RetentionQuery", "compareFilter": {}}),
            "compareFilter",
        ),
        (
            json!({"kind": "RetentionQuery", "dateRange": {"date_from": "2000-01-01"},
                "retentionFilter": {"period": "Hour"}}),
            "intervals",
        ),
    ] {
        let err = retain(&app, q.clone()).await.expect_err("refused");
        assert!(err.contains(says), "{q}: {err}");
    }
}

/// Months (calendar months) and hours index their intervals as days do.
#[tokio::test]
async fn retention_by_month_and_by_hour() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            ("a", "$pageview", "2020-01-15T10:00:00Z", json!({})),
            ("a", "$pageview", "2020-01-15T11:30:00Z", json!({})),
            ("a", "$pageview", "2020-01-15T13:00:00Z", json!({})),
            ("b", "$pageview", "2020-02-10T00:00:00Z", json!({})),
            ("a", "$pageview", "2020-03-02T00:00:00Z", json!({})),
        ],
    );
    let s = retain(
        &app,
        json!({"kind": "RetentionQuery",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-03-31"},
            "retentionFilter": {"period": "Month", "totalIntervals": 3}}),
    )
    .await
    .expect("months");
    assert_eq!(
        counts(&s),
        vec![vec![1, 0, 1], vec![1, 0, 0], vec![1, 0, 0]]
    );
    assert_eq!(s[1]["date"], "2020-02-01T00:00:00Z");
    assert_eq!(s[2]["values"][1]["label"], "Month 1");
    let s = retain(
        &app,
        json!({"kind": "RetentionQuery",
            "dateRange": {"date_from": "2020-01-15T10:00:00Z", "date_to": "2020-01-15T13:00:00Z"},
            "retentionFilter": {"period": "Hour", "totalIntervals": 4}}),
    )
    .await
    .expect("hours");
    assert_eq!(counts(&s)[0], vec![1, 1, 0, 1]);
    assert_eq!(s.as_array().map(Vec::len), Some(4));
    assert_eq!(s[3]["label"], "Hour 3");
}

/// A breakdown test's row: (actor, day, event, hour, value index).
type BdRow = (usize, i64, u8, u32, usize);

/// A row's breakdown value.
type ValueOf<'a> = dyn Fn(&BdRow) -> &'static str + 'a;

/// A breakdown: each (actor, value) is an actor of its own (an event
/// breakdown's cohorts and returns are the events with that value, "" for
/// unset), as PostHog's actor query groups by `actor_id,
/// breakdown_value`; the values ranked by their cohorts' sizes, the rest
/// summed into Other. A person breakdown: the person's value now, a
/// visitor's "".
#[test]
fn breakdowns_match_the_reference() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    let rows = proptest::collection::vec((0usize..5, -3i64..9, 0u8..3, 0u32..24, 0usize..3), 1..60);
    runner
        .run(&(rows, 1usize..6, any::<bool>(), any::<bool>()), |(rows, lookahead, first_time, cumulative)| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let dir = tempfile::tempdir().expect("dir");
            let app = open(dir.path());
            let names = ["start", "back", "other"];
            let values = ["", "x", "y"];
            // The persons' plan: a pro, b free, c none.
            let plans = [Some("pro"), Some("free"), None];
            let mut evs: Vec<(&str, &str, String, Value)> = (0..3)
                .map(|a| {
                    let set = plans[a].map_or(json!({}), |p| json!({"$set": {"plan": p}}));
                    (IDS[a], "$identify", iso(-10, 0), set)
                })
                .collect();
            evs.extend(rows.iter().map(|&(a, d, e, h, v)| {
                let mut props = if a >= 3 { json!({"$process_person_profile": false}) } else { json!({}) };
                if v > 0 {
                    props["k"] = json!(values[v]);
                }
                (IDS[a], names[e as usize], iso(d, h), props)
            }));
            capture(app.persons(), &evs);
            let filter = json!({
                "targetEntity": {"id": "start", "type": "events"},
                "returningEntity": {"id": "back", "type": "events"},
                "totalIntervals": lookahead,
                "retentionType": if first_time { "retention_first_time" } else { "retention_recurring" },
                "cumulative": cumulative,
                "period": "Day",
            });
            // Per value: the reference of that value's rows alone.
            let by_value = |value_of: &ValueOf<'_>| {
                let mut out: BTreeMap<&str, Vec<Vec<u64>>> = BTreeMap::new();
                for v in ["", "x", "y", "pro", "free"] {
                    let mine: Vec<(usize, i64, u8)> = rows
                        .iter()
                        .filter(|r| value_of(r) == v)
                        .map(|&(a, d, e, _, _)| (a, d, e))
                        .collect();
                    let want = reference(&mine, false, lookahead, first_time, cumulative, 1);
                    if want.iter().any(|r| r[0] > 0) {
                        out.insert(v, want);
                    }
                }
                out
            };
            let answer = |q: Value| {
                let s = rt.block_on(retain(&app, q)).expect("retention");
                let mut out: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
                let mut order: Vec<String> = Vec::new();
                for row in s.as_array().expect("rows") {
                    let v = row["breakdown_value"].as_str().expect("value").to_string();
                    if order.last() != Some(&v) {
                        order.push(v.clone());
                    }
                    let counts: Vec<u64> = row["values"]
                        .as_array()
                        .expect("values")
                        .iter()
                        .map(|x| x["count"].as_u64().expect("count"))
                        .collect();
                    out.entry(v).or_default().push(counts);
                }
                (out, order)
            };
            let event_value = |r: &BdRow| values[r.4];
            let person_value = |r: &BdRow| {
                if r.0 < 3 { plans[r.0].unwrap_or("") } else { "" }
            };
            for (kind, value_of) in [
                ("event", &event_value as &ValueOf<'_>),
                ("person", &person_value),
            ] {
                let want = by_value(value_of);
                let mut q = query(filter.clone());
                q["breakdownFilter"] = json!({"breakdown": if kind == "event" { "k" } else { "plan" },
                    "breakdown_type": kind});
                let (got, order) = answer(q.clone());
                let want_owned: BTreeMap<String, Vec<Vec<u64>>> =
                    want.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                prop_assert_eq!(&got, &want_owned, "{} breakdown", kind);
                // Ranked by the sum of the cohort sizes, then by value.
                let total = |v: &str| -> u64 { want_owned[v].iter().map(|r| r[0]).sum() };
                let mut ranked: Vec<String> = want_owned.keys().cloned().collect();
                ranked.sort_by(|a, b| total(b).cmp(&total(a)).then_with(|| a.cmp(b)));
                prop_assert_eq!(&order, &ranked);
                // A limit of one: the first value, then the rest summed.
                q["breakdownFilter"]["breakdown_limit"] = json!(1);
                let (got, order) = answer(q);
                if ranked.len() > 1 {
                    let mut other = vec![vec![0u64; lookahead]; 7];
                    for v in &ranked[1..] {
                        for (o, r) in other.iter_mut().zip(&want_owned[v]) {
                            for (x, y) in o.iter_mut().zip(r) {
                                *x += y;
                            }
                        }
                    }
                    prop_assert_eq!(&order, &vec![ranked[0].clone(), retention::BREAKDOWN_OTHER.to_string()]);
                    prop_assert_eq!(&got[retention::BREAKDOWN_OTHER], &other);
                } else {
                    prop_assert_eq!(&order, &ranked);
                }
            }
            // A value's cohort's persons: those of that value's reference
            // (their appearances: not cumulative).
            let mut filter = filter.clone();
            filter["cumulative"] = json!(false);
            let mut q = query(filter.clone());
            q["breakdownFilter"] = json!({"breakdown": "k"});
            let Value::Object(q) = q else { unreachable!("an object") };
            let spec = RetentionSpec::parse(&q, now()).expect("spec");
            for v in ["", "x"] {
                let mine: Vec<(usize, i64, u8)> = rows
                    .iter()
                    .filter(|r| r.0 < 3 && values[r.4] == v)
                    .map(|&(a, d, e, _, _)| (a, d, e))
                    .collect();
                let want = reference(&mine, false, lookahead, first_time, false, 1);
                for (i, row) in want.iter().enumerate() {
                    let got = rt
                        .block_on(retention::persons_of(app.persons(), P, &spec, (i, Some(v)), (&[], 10_000, 0), &QueryLimits::default()))
                        .expect("persons");
                    let per_k: Vec<u64> = (0..lookahead)
                        .map(|k| got.iter().filter(|(_, ks)| ks.contains(&k)).count() as u64)
                        .collect();
                    prop_assert_eq!(&per_k, row, "value {:?} cohort {}", v, i);
                }
            }
            app.close().expect("close");
            Ok(())
        })
        .expect("breakdowns match the reference");
}
