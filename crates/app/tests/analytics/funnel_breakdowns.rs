//! Funnel breakdowns as PostHog's funnels break down
//! (`posthog/hogql_queries/insights/funnels/test/breakdown_cases.py`):
//! which event's value is a person's (`breakdown_attribution_type`:
//! first touch, last touch, all events, a step), an unset value as `""`,
//! and `breakdown_limit` keeping the values furthest along with the rest
//! as `Other`.

use super::*;

/// A broken-down funnel's groups: value, count per step, and the second
/// step's average conversion time; sorted by value.
type Group = (Value, Vec<i64>, Value);

async fn groups(app: &App, p: Value) -> Vec<Group> {
    let (spec, actors) = funnel_actors(app, &p).await;
    let v = funnel::steps(&spec, &actors, "");
    let mut out: Vec<Group> = v
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let steps = g.as_array().expect("steps");
            (
                steps[0]["breakdown_value"].clone(),
                steps
                    .iter()
                    .map(|s| s["count"].as_i64().expect("count"))
                    .collect(),
                steps[1]["average_conversion_time"].clone(),
            )
        })
        .collect();
    out.sort_by_key(|g| g.0.to_string());
    out
}

fn funnel(steps: &[&str], extra: Value) -> Value {
    let mut p = json!({"date_from": "2020-01-01", "date_to": "2020-01-08",
        "funnel_window_days": 7, "events": events_param(steps),
        "breakdown_type": "event", "breakdown": ["$browser"]});
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    p
}

/// PostHog's five persons: the browser on one of their two events, or
/// on neither (`$browser: 0` is the text "0").
fn five_persons(app: &App, with_p5: bool, buys: &[&str]) {
    let mut evs = vec![
        browser("p1", "sign up", "2020-01-01T12:00:00Z", json!("Chrome")),
        ("p1", "buy", "2020-01-01T13:00:00Z", json!({})),
        ("p2", "sign up", "2020-01-01T13:00:00Z", json!({})),
        browser("p2", "buy", "2020-01-02T13:00:00Z", json!("Safari")),
        browser("p3", "sign up", "2020-01-02T14:00:00Z", json!("Mac")),
        ("p3", "buy", "2020-01-02T15:00:00Z", json!({})),
        browser("p4", "sign up", "2020-01-02T15:00:00Z", json!(0)),
        browser("p4", "buy", "2020-01-02T16:00:00Z", json!("alakazam")),
    ];
    if with_p5 {
        evs.push(("p5", "sign up", "2020-01-02T15:00:00Z", json!({})));
        evs.push(("p5", "buy", "2020-01-02T16:00:00Z", json!({})));
    }
    evs.retain(|(d, e, _, _)| *e != "buy" || buys.contains(d));
    capture(app.persons(), &evs);
}

/// An event whose `$browser` is `b`.
fn browser<'a>(
    id: &'a str,
    event: &'a str,
    time: &'a str,
    b: Value,
) -> (&'a str, &'a str, &'a str, Value) {
    (id, event, time, json!({ "$browser": b }))
}

const ALL: [&str; 5] = ["p1", "p2", "p3", "p4", "p5"];

fn g(value: Value, counts: &[i64], time: Value) -> Group {
    (value, counts.to_vec(), time)
}

/// First touch (the default): the first value of any of the person's
/// events in the funnel, not only its first step's; none is `""`. Last
/// touch: the last.
#[tokio::test]
async fn first_and_last_touch() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    five_persons(&app, true, &ALL);
    let hour = json!(3600.0);
    assert_eq!(
        groups(&app, funnel(&["sign up", "buy"], json!({}))).await,
        [
            g(json!([""]), &[1, 1], hour.clone()),
            g(json!(["0"]), &[1, 1], hour.clone()),
            g(json!(["Chrome"]), &[1, 1], hour.clone()),
            g(json!(["Mac"]), &[1, 1], hour.clone()),
            g(json!(["Safari"]), &[1, 1], json!(86400.0)),
        ]
    );
    assert_eq!(
        groups(
            &app,
            funnel(
                &["sign up", "buy"],
                json!({"breakdown_attribution_type": "last_touch"})
            )
        )
        .await,
        [
            g(json!([""]), &[1, 1], hour.clone()),
            g(json!(["Chrome"]), &[1, 1], hour.clone()),
            g(json!(["Mac"]), &[1, 1], hour.clone()),
            g(json!(["Safari"]), &[1, 1], json!(86400.0)),
            g(json!(["alakazam"]), &[1, 1], hour.clone()),
        ]
    );
    // Two keys: both values of one event (one of them may be unset).
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            (
                "p1",
                "sign up",
                "2020-01-01T12:00:00Z",
                json!({"$browser": "Chrome", "$version": "xyz"}),
            ),
            ("p1", "buy", "2020-01-01T13:00:00Z", json!({})),
            ("p2", "sign up", "2020-01-01T13:00:00Z", json!({})),
            (
                "p2",
                "buy",
                "2020-01-02T13:00:00Z",
                json!({"$browser": "Safari", "$version": "xyz"}),
            ),
            browser("p3", "sign up", "2020-01-02T14:00:00Z", json!("Mac")),
            (
                "p3",
                "buy",
                "2020-01-02T15:00:00Z",
                json!({"$version": "no-mac"}),
            ),
            (
                "p4",
                "sign up",
                "2020-01-02T15:00:00Z",
                json!({"$browser": 0, "$version": 0}),
            ),
            browser("p4", "buy", "2020-01-02T16:00:00Z", json!("alakazam")),
            ("p5", "sign up", "2020-01-02T15:00:00Z", json!({})),
            ("p5", "buy", "2020-01-02T16:00:00Z", json!({})),
        ],
    );
    let values: Vec<Value> = groups(
        &app,
        funnel(
            &["sign up", "buy"],
            json!({"breakdown": ["$browser", "$version"]}),
        ),
    )
    .await
    .into_iter()
    .map(|g| g.0)
    .collect();
    assert_eq!(
        values,
        [
            json!(["", ""]),
            json!(["0", "0"]),
            json!(["Chrome", "xyz"]),
            json!(["Mac", ""]),
            json!(["Safari", "xyz"]),
        ]
    );
}

/// Step attribution: the value of the event of that step; a person
/// without one is in no group, and a person with several values of it
/// is in each.
#[tokio::test]
async fn step_attribution() {
    let hour = json!(3600.0);
    let at =
        |k: usize| json!({"breakdown_attribution_type": "step", "breakdown_attribution_value": k});
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    five_persons(&app, false, &ALL);
    assert_eq!(
        groups(&app, funnel(&["sign up", "buy"], at(1))).await,
        [
            g(json!([""]), &[2, 2], hour.clone()),
            g(json!(["Safari"]), &[1, 1], json!(86400.0)),
            g(json!(["alakazam"]), &[1, 1], hour.clone()),
        ]
    );
    assert_eq!(
        groups(&app, funnel(&["sign up", "buy"], at(0))).await,
        [
            g(json!([""]), &[1, 1], json!(86400.0)),
            g(json!(["0"]), &[1, 1], hour.clone()),
            g(json!(["Chrome"]), &[1, 1], hour.clone()),
            g(json!(["Mac"]), &[1, 1], hour.clone()),
        ]
    );
    // The same through the persons' join (a global person filter: no
    // personless actors), with a person the filter leaves out.
    capture(
        app.persons(),
        &[
            (
                "p1",
                "$identify",
                "2020-01-01T00:00:00Z",
                json!({"$set": {"plan": "x"}}),
            ),
            (
                "p2",
                "$identify",
                "2020-01-01T00:00:00Z",
                json!({"$set": {"plan": "x"}}),
            ),
            (
                "p3",
                "$identify",
                "2020-01-01T00:00:00Z",
                json!({"$set": {"plan": "x"}}),
            ),
        ],
    );
    let mut by_person = funnel(&["sign up", "buy"], at(1));
    by_person["properties"] = json!([{"key": "plan", "value": "x", "type": "person"}]);
    assert_eq!(
        groups(&app, by_person).await,
        [
            g(json!([""]), &[2, 2], hour.clone()),
            g(json!(["Safari"]), &[1, 1], json!(86400.0)),
        ]
    );
    // p2 and p3 never buy: not in any group, not even at the first step.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    five_persons(&app, false, &["p1", "p4"]);
    assert_eq!(
        groups(&app, funnel(&["sign up", "buy"], at(1))).await,
        [
            g(json!([""]), &[1, 1], hour.clone()),
            g(json!(["alakazam"]), &[1, 1], hour.clone()),
        ]
    );
    // One person signing up with four browsers is in four groups.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            browser("p1", "sign up", "2020-01-01T12:00:00Z", json!("Chrome")),
            browser("p1", "sign up", "2020-01-01T13:00:00Z", json!("Safari")),
            browser("p1", "sign up", "2020-01-02T14:00:00Z", json!("Mac")),
            browser("p1", "sign up", "2020-01-02T15:00:00Z", json!(0)),
        ],
    );
    let values: Vec<(Value, Vec<i64>)> = groups(&app, funnel(&["sign up", "other event"], at(0)))
        .await
        .into_iter()
        .map(|g| (g.0, g.1))
        .collect();
    assert_eq!(
        values,
        [
            (json!(["0"]), vec![1, 0]),
            (json!(["Chrome"]), vec![1, 0]),
            (json!(["Mac"]), vec![1, 0]),
            (json!(["Safari"]), vec![1, 0]),
        ]
    );
    // The persons of one value: the person once, whatever its values.
    let (spec, actors) = funnel_actors(&app, &funnel(&["sign up", "other event"], at(0))).await;
    assert_eq!(actors.len(), 4);
    let p1 = uuid_of(&app, "p1");
    assert_eq!(
        selected(&spec, &actors, json!({"funnel_step": 1})),
        std::slice::from_ref(&p1)
    );
    assert_eq!(
        selected(
            &spec,
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": ["Mac"]})
        ),
        [p1]
    );
    // A step past the funnel, or any but the first in an unordered one,
    // is refused.
    for (steps, extra) in [
        (vec!["sign up", "buy"], at(2)),
        (
            vec!["sign up", "buy"],
            json!({"breakdown_attribution_type": "step"}),
        ),
        (
            vec!["sign up", "buy"],
            json!({"breakdown_attribution_type": "middle"}),
        ),
        (
            vec!["sign up", "buy"],
            json!({"breakdown_attribution_type": "step", "breakdown_attribution_value": 1,
                "funnel_order_type": "unordered"}),
        ),
    ] {
        let p = funnel(&steps, extra.clone());
        assert!(
            FunnelSpec::parse(&params(p), now()).is_err(),
            "{extra} was taken"
        );
    }
}

/// All events: each value a funnel of its own, over the events of that
/// value only.
#[tokio::test]
async fn all_events_attribution() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            browser("p1", "sign up", "2020-01-01T12:00:00Z", json!("Chrome")),
            browser("p1", "play movie", "2020-01-02T12:30:00Z", json!("Safari")),
            browser("p1", "sign up", "2020-01-02T13:00:00Z", json!("Safari")),
            browser("p1", "play movie", "2020-01-02T14:00:00Z", json!("Safari")),
        ],
    );
    assert_eq!(
        groups(
            &app,
            funnel(
                &["sign up", "play movie"],
                json!({"breakdown_attribution_type": "all_events"})
            )
        )
        .await,
        [
            g(json!(["Chrome"]), &[1, 0], Value::Null),
            g(json!(["Safari"]), &[1, 1], json!(3600.0)),
        ]
    );
}

/// `breakdown_limit` keeps the values with the most persons at the last
/// step (then the one before, …); the others are one group, `Other`,
/// ordered among them by the same counts.
#[tokio::test]
async fn the_limit_keeps_those_furthest_along_and_the_rest_is_other() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    let ids: Vec<String> = (0..10)
        .flat_map(|num| (0..num).map(move |i| format!("n{num}-{i}")))
        .collect();
    for id in &ids {
        let num = &id[1..id.find('-').unwrap_or(1)];
        for (e, t) in [
            ("sign up", "2020-01-01T12:00:00Z"),
            ("play movie", "2020-01-01T13:00:00Z"),
            ("buy", "2020-01-01T15:00:00Z"),
        ] {
            evs.push((id.as_str(), e, t, json!({"some_breakdown_val": num})));
        }
    }
    capture(app.persons(), &evs);
    let p = funnel(
        &["sign up", "play movie", "buy"],
        json!({"breakdown": ["some_breakdown_val"], "breakdown_limit": 5}),
    );
    let (spec, actors) = funnel_actors(&app, &p).await;
    let order: Vec<(Value, i64)> = funnel::steps(&spec, &actors, "")
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g[0]["breakdown_value"].clone(),
                g[2]["count"].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (json!(["Other"]), 10),
            (json!(["9"]), 9),
            (json!(["8"]), 8),
            (json!(["7"]), 7),
            (json!(["6"]), 6),
            (json!(["5"]), 5),
        ]
    );
    let others = selected(
        &spec,
        &actors,
        json!({"funnel_step": 3, "funnel_step_breakdown": ["Other"]}),
    );
    assert_eq!(others.len(), 10);
    // A value folded into `Other` still lists its own persons.
    assert_eq!(
        selected(
            &spec,
            &actors,
            json!({"funnel_step": 3, "funnel_step_breakdown": ["3"]}),
        )
        .len(),
        3
    );
    // A kept value that is itself "Other" is one list with the folded.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    for (id, v) in [("a", "Other"), ("b", "Other"), ("c", "x"), ("d", "y")] {
        evs.push((
            id,
            "sign up",
            "2020-01-01T12:00:00Z",
            json!({"some_breakdown_val": v}),
        ));
    }
    capture(app.persons(), &evs);
    let values: Vec<(Value, Vec<i64>)> = groups(
        &app,
        funnel(
            &["sign up", "buy"],
            json!({"breakdown": ["some_breakdown_val"], "breakdown_limit": 1}),
        ),
    )
    .await
    .into_iter()
    .map(|g| (g.0, g.1))
    .collect();
    assert_eq!(values, [(json!(["Other"]), vec![4, 0])]);
    // All events: a person of two folded values is one in `Other`.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    for (id, v) in [("a", "k"), ("b", "k"), ("c", "x"), ("c", "y")] {
        evs.push((
            id,
            "sign up",
            "2020-01-01T12:00:00Z",
            json!({"some_breakdown_val": v}),
        ));
    }
    capture(app.persons(), &evs);
    let values: Vec<(Value, Vec<i64>)> = groups(
        &app,
        funnel(
            &["sign up", "buy"],
            json!({"breakdown": ["some_breakdown_val"], "breakdown_limit": 1,
                "breakdown_attribution_type": "all_events"}),
        ),
    )
    .await
    .into_iter()
    .map(|g| (g.0, g.1))
    .collect();
    assert_eq!(
        values,
        [(json!(["Other"]), vec![1, 0]), (json!(["k"]), vec![2, 0])]
    );
    // Under the limit: no `Other`; an unset value is a value.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    for (id, props) in [
        ("a", json!({"some_breakdown_val": "1"})),
        ("b", json!({"some_breakdown_val": "2"})),
        ("c", json!({"some_breakdown_val": "3"})),
        ("d", json!({"some_breakdown_val": "4"})),
        ("e", json!({})),
    ] {
        evs.push((id, "sign up", "2020-01-01T12:00:00Z", props));
    }
    capture(app.persons(), &evs);
    let values: Vec<Value> = groups(
        &app,
        funnel(
            &["sign up", "buy"],
            json!({"breakdown": ["some_breakdown_val"], "breakdown_limit": 6}),
        ),
    )
    .await
    .into_iter()
    .map(|g| g.0)
    .collect();
    assert_eq!(
        values,
        [
            json!([""]),
            json!(["1"]),
            json!(["2"]),
            json!(["3"]),
            json!(["4"])
        ]
    );
}
