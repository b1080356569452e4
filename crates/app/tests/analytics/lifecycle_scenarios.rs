//! Lifecycle: PostHog scenarios 12–15, a merged person counted once, and
//! a differential test against each status's definition.

use std::collections::BTreeMap;

use serde_json::json;

use elide_app::analytics::filter::Interval;
use elide_app::analytics::lifecycle::{self, LifecycleSpec};

use super::*;

fn lifecycle_data() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let mut v = Vec::new();
    for d in ["11", "12", "13", "15", "17", "19"] {
        v.push(("p1", "$pageview", d, json!({"$number": 1})));
    }
    v.push(("p2", "$pageview", "09", json!({})));
    v.push(("p2", "$pageview", "12", json!({})));
    v.push(("p3", "$pageview", "12", json!({})));
    v.push(("p4", "$pageview", "15", json!({})));
    v
}

fn lifecycle_capture(app: &App, data: &[(&str, &str, &str, Value)]) {
    let owned: Vec<(String, String, String, Value)> = data
        .iter()
        .map(|(d, e, day, p)| {
            (
                d.to_string(),
                e.to_string(),
                format!("2020-01-{day}T12:00:00Z"),
                p.clone(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str, Value)> = owned
        .iter()
        .map(|(a, b, c, p)| (a.as_str(), b.as_str(), c.as_str(), p.clone()))
        .collect();
    capture(app.persons(), &refs);
}

pub(crate) async fn lifecycle_of(
    app: &App,
    extra: Value,
) -> (LifecycleSpec, lifecycle::Lifecycle, Value) {
    let mut p = json!({"date_from": "2020-01-12T00:00:00Z", "date_to": "2020-01-19T00:00:00Z",
        "events": [{"id": "$pageview", "type": "events", "order": 0}], "shown_as": "Lifecycle"});
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    let spec = LifecycleSpec::parse(&params(p), now()).expect("spec");
    let l = lifecycle::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("lifecycle");
    let s = lifecycle::series(&spec, &l);
    (spec, l, s)
}

fn data_of(series: &Value, status: &str) -> Vec<i64> {
    series
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["status"] == status)
        .expect("status")["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as i64)
        .collect()
}

#[tokio::test]
async fn lifecycle_scenarios() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    lifecycle_capture(&app, &lifecycle_data());
    // Scenario 12.
    let (spec, l, s) = lifecycle_of(&app, json!({})).await;
    assert_eq!(data_of(&s, "new"), vec![1, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "returning"), vec![1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "resurrecting"), vec![1, 0, 0, 1, 0, 1, 0, 1]);
    assert_eq!(data_of(&s, "dormant"), vec![0, -2, -1, 0, -2, 0, -1, 0]);
    assert_eq!(s[0]["labels"][0], json!("12-Jan-2020"));
    assert_eq!(s[0]["days"][0], json!("2020-01-12"));
    assert_eq!(s[0]["label"], json!("$pageview - new"));
    // Scenario 15: persons of one period and status.
    let uuid = |d: &str| uuid_of(&app, d);
    let who = |t: &str, st: &str| lifecycle::persons_of(&spec, &l, t, st, now()).expect("persons");
    assert_eq!(who("2020-01-13T00:00:00Z", "returning"), vec![uuid("p1")]);
    assert_eq!(who("2020-01-13T00:00:00Z", "dormant").len(), 2);
    assert_eq!(who("2020-01-14T00:00:00Z", "dormant"), vec![uuid("p1")]);
    assert!(lifecycle::persons_of(&spec, &l, "2020-01-13", "zombie", now()).is_err());
    // Scenario 13: a global property filter.
    let (_, _, s) = lifecycle_of(
        &app,
        json!({"properties": [{"key": "$number", "value": 1}]}),
    )
    .await;
    assert_eq!(data_of(&s, "new"), vec![0; 8]);
    assert_eq!(data_of(&s, "returning"), vec![1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "resurrecting"), vec![0, 0, 0, 1, 0, 1, 0, 1]);
    assert_eq!(data_of(&s, "dormant"), vec![0, 0, -1, 0, -1, 0, -1, 0]);
    app.close().expect("close");
}

#[tokio::test]
async fn lifecycle_counts_a_merged_person_once() {
    // Scenario 14: p1 and another_p1 are one person.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            ("p1", "$pageview", "2020-01-12T12:00:00Z", json!({})),
            ("another_p1", "$pageview", "2020-01-14T12:00:00Z", json!({})),
            (
                "p1",
                "$identify",
                "2020-01-14T12:30:00Z",
                json!({"$anon_distinct_id": "another_p1"}),
            ),
            ("p1", "$pageview", "2020-01-15T12:00:00Z", json!({})),
            ("p1", "$pageview", "2020-01-17T12:00:00Z", json!({})),
            ("p1", "$pageview", "2020-01-19T12:00:00Z", json!({})),
        ],
    );
    let (_, _, s) = lifecycle_of(&app, json!({})).await;
    assert_eq!(data_of(&s, "new"), vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "returning"), vec![0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "resurrecting"), vec![0, 0, 1, 0, 0, 1, 0, 1]);
    assert_eq!(data_of(&s, "dormant"), vec![0, -1, 0, 0, -1, 0, -1, 0]);
    app.close().expect("close");
}

/// Events sent personless are left out by their property, as PostHog's
/// lifecycle does, also once their distinct id has a person: x browsed
/// personless on the 12th and 13th and got a person on the 15th, so it is
/// new on the 15th (not active on the 12th and resurrecting on the 15th).
#[tokio::test]
async fn lifecycle_leaves_out_events_sent_personless() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let anon = json!({"$process_person_profile": false});
    capture(
        app.persons(),
        &[
            ("x", "$pageview", "2020-01-12T12:00:00Z", anon.clone()),
            ("x", "$pageview", "2020-01-13T12:00:00Z", anon.clone()),
            ("x", "$pageview", "2020-01-15T12:00:00Z", json!({})),
            // Only `false` is personless: another value is a person's event.
            (
                "x",
                "$pageview",
                "2020-01-17T12:00:00Z",
                json!({"$process_person_profile": true}),
            ),
        ],
    );
    let (_, _, s) = lifecycle_of(&app, json!({})).await;
    assert_eq!(data_of(&s, "new"), vec![0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(data_of(&s, "returning"), vec![0; 8]);
    assert_eq!(data_of(&s, "resurrecting"), vec![0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(data_of(&s, "dormant"), vec![0, 0, 0, 0, -1, 0, -1, 0]);
    app.close().expect("close");
}

/// Per status, its count in each period (dormant negative).
type Series = BTreeMap<&'static str, Vec<i64>>;

/// Per (period start, status), the persons (indexes).
type Members = BTreeMap<(i64, &'static str), Vec<usize>>;

/// The lifecycle per `interval` of `rows` `(person, day, hit)` from
/// each status's definition, over the periods holding days `first..=last`
/// (days after `day0()`): active in period `P` and in the one before is
/// returning; active in `P`, created in `P`, and not active since the
/// period before the first is new; any other activity is resurrecting;
/// active in the period before and not in `P` is dormant (negative).
fn lifecycle_reference(
    rows: &[(usize, i64, bool)],
    created: &[Option<i64>],
    first: i64,
    last: i64,
    interval: Interval,
) -> (Series, Members) {
    let period = |d: i64| interval.trunc((day0() + chrono::Duration::days(d)).timestamp_micros());
    let active = |p: usize, at: i64| rows.iter().any(|r| r.0 == p && r.2 && period(r.1) == at);
    let periods = interval.periods(period(first), period(last));
    let before = interval.prev(periods[0]);
    let mut out = Series::new();
    let mut members = Members::new();
    for &at in &periods {
        let mut n = BTreeMap::new();
        for (p, c) in created.iter().enumerate() {
            let Some(c) = c else { continue };
            let earlier = rows
                .iter()
                .any(|r| r.0 == p && r.2 && (before..at).contains(&period(r.1)));
            let status = if active(p, at) {
                if active(p, interval.prev(at)) {
                    Some("returning")
                } else if period(*c) == at && !earlier {
                    Some("new")
                } else {
                    Some("resurrecting")
                }
            } else if active(p, interval.prev(at)) {
                Some("dormant")
            } else {
                None
            };
            if let Some(s) = status {
                *n.entry(s).or_insert(0i64) += 1;
                members.entry((at, s)).or_default().push(p);
            }
        }
        for s in ["new", "returning", "resurrecting", "dormant"] {
            let v = n.get(s).copied().unwrap_or(0);
            out.entry(s)
                .or_default()
                .push(if s == "dormant" { -v } else { v });
        }
    }
    (out, members)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Random rows over 30 days: the lifecycle of a random range by day,
    /// week or month equals the definitions computed here.
    #[test]
    fn lifecycle_matches_the_definitions(
        rows in proptest::collection::vec((0usize..6, 0i64..30, proptest::prelude::any::<bool>(), 0u32..24), 1..50),
        from in 1i64..25,
        len in 0i64..8,
        unit in proptest::sample::select(vec!["day", "week", "month"]),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let app = open(dir.path());
        let day0 = day0();
        // Each person's events in time order, so that it is created at its
        // first event.
        let mut sorted = rows.clone();
        sorted.sort_by_key(|r| (r.1, r.3));
        let evs: Vec<(String, &str, String)> = sorted
            .iter()
            .map(|&(p, d, hit, h)| (format!("person{p}"), if hit { "$pageview" } else { "other" }, iso(d, h)))
            .collect();
        let refs: Vec<(&str, &str, &str, Value)> =
            evs.iter().map(|(a, b, c)| (a.as_str(), *b, c.as_str(), json!({}))).collect();
        capture(app.persons(), &refs);
        let created: Vec<Option<i64>> = (0..6)
            .map(|p| {
                app.persons()
                    .by_distinct_ids(P, &[format!("person{p}")])
                    .expect("lookup")
                    .into_values()
                    .next()
                    .map(|person| {
                        let t = chrono::DateTime::parse_from_rfc3339(&person.created_at).expect("created_at");
                        (t.with_timezone(&Utc) - day0).num_days()
                    })
            })
            .collect();
        let to = (from + len).min(29);
        let (spec, l, s) = rt.block_on(lifecycle_of(
            &app,
            json!({"date_from": iso(from, 0), "date_to": iso(to, 0)[..10].to_string(),
                   "interval": unit}),
        ));
        let plain: Vec<(usize, i64, bool)> = rows.iter().map(|&(p, d, hit, _)| (p, d, hit)).collect();
        let interval = match unit {
            "week" => Interval::Week,
            "month" => Interval::Month,
            _ => Interval::Day,
        };
        let (want, members) = lifecycle_reference(&plain, &created, from, to, interval);
        for status in ["new", "returning", "resurrecting", "dormant"] {
            proptest::prop_assert_eq!(&data_of(&s, status), &want[status], "{}", status);
        }
        // The persons of each (period, status): the reference's, by UUID.
        let uuid = |p: usize| uuid_of(&app, &format!("person{p}"));
        for at in spec.interval.periods(spec.first, spec.last) {
            let target = chrono::DateTime::from_timestamp_micros(at).expect("time").to_rfc3339();
            for status in ["new", "returning", "resurrecting", "dormant"] {
                let mut want: Vec<String> = members
                    .get(&(at, status))
                    .map(|ps| ps.iter().map(|&p| uuid(p)).collect())
                    .unwrap_or_default();
                want.sort();
                let got = lifecycle::persons_of(&spec, &l, &target, status, now()).expect("persons");
                proptest::prop_assert_eq!(got, want, "{} {}", target, status);
            }
        }
        app.close().expect("close");
    }
}
