//! Funnels and funnel persons: PostHog scenarios 1–7, 17, 18, 20–22,
//! and parameter checks.

use arrow::array::AsArray;
use elide_app::analytics::personless::Personless;
use serde_json::json;

use super::*;

#[tokio::test]
async fn funnel_persons_scenarios() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    let names: Vec<String> = (0..35).map(|u| format!("user_{u}")).collect();
    for (u, n) in names.iter().enumerate() {
        evs.push((n.as_str(), "step one", "2021-05-01T00:00:00Z", json!({})));
        if u < 15 {
            evs.push((n.as_str(), "step two", "2021-05-03T00:00:00Z", json!({})));
        }
        if u < 5 {
            evs.push((n.as_str(), "step three", "2021-05-05T00:00:00Z", json!({})));
        }
    }
    capture(app.persons(), &evs);
    let p = json!({
        "date_from": "2021-05-01 00:00:00", "date_to": "2021-05-07 00:00:00",
        "interval": "day", "funnel_window_days": 7,
        "events": events_param(&["step one", "step two", "step three"]),
    });
    let (spec, actors) = funnel_actors(&app, &p).await;
    let n = spec.steps.len();
    let count = |sel: Value| selected(&spec, &actors, sel).len();
    // Scenarios 1-4.
    assert_eq!(count(json!({"funnel_step": 1})), 35);
    assert_eq!(count(json!({"funnel_step": 3})), 5);
    assert_eq!(count(json!({"funnel_step": -2})), 20);
    assert_eq!(count(json!({"funnel_step": -3})), 10);
    // Scenario 5.
    for (step, custom, want) in [
        (1, vec![1, 2, 3], 35),
        (2, vec![2, 3], 15),
        (3, vec![3], 5),
        (-2, vec![1], 20),
        (-3, vec![2], 10),
    ] {
        assert_eq!(count(json!({"funnel_step": step})), want);
        assert_eq!(count(json!({"funnel_custom_steps": custom})), want);
    }
    assert_eq!(count(json!({"funnel_custom_steps": [1, 2]})), 30);
    assert_eq!(count(json!({"funnel_custom_steps": [1, 3]})), 25);
    assert_eq!(count(json!({"funnel_custom_steps": [3, 1]})), 25);
    assert_eq!(count(json!({"funnel_custom_steps": "[1, 3, 3, 1]"})), 25);
    // Steps past the funnel's last are nobody's: the same count, and the
    // selection keeps none of them (a long list costs no lookup per person).
    let far: Vec<u64> = (4..100_000).chain([1, 3]).collect();
    assert_eq!(count(json!({"funnel_custom_steps": far.clone()})), 25);
    let sel = StepSelection::parse(&params(json!({"funnel_custom_steps": far})), n).expect("ok");
    assert_eq!(sel.steps, vec![1, 3]);
    assert_eq!(
        count(json!({"funnel_step": 1, "funnel_custom_steps": [3]})),
        5
    );
    // Errors.
    for (sel, msg) in [
        (
            json!({}),
            "Missing both funnel_step and funnel_custom_steps",
        ),
        (
            json!({"funnel_step": -1}),
            "To request dropoff of initial step use -2",
        ),
    ] {
        let e = StepSelection::parse(&params(sel), n).expect_err("refused");
        assert!(e.to_string().contains(msg), "{e}");
    }
    // The insight: counts and URLs.
    let steps = funnel::steps(&spec, &actors, "/api/person/funnel/?");
    let counts: Vec<u64> = steps
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(counts, vec![35, 15, 5]);
    assert_eq!(steps[0]["dropped_people_url"], Value::Null);
    assert!(steps[1]["dropped_people_url"]
        .as_str()
        .expect("url")
        .ends_with("funnel_step=-2"));
    app.close().expect("close");
}

#[tokio::test]
async fn funnel_breakdowns_strict_and_conversion_times() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    // Scenario 7 (and 18): breakdown by $browser, by two keys, by a person property.
    capture(
        app.persons(),
        &[
            (
                "person1",
                "sign up",
                "2020-01-01T12:00:00Z",
                json!({"$browser": "Chrome", "$browser_version": 95, "$set": {"$country": "PL"}}),
            ),
            (
                "person1",
                "play movie",
                "2020-01-01T13:00:00Z",
                json!({"$browser": "Chrome", "$browser_version": 95}),
            ),
            (
                "person1",
                "buy",
                "2020-01-01T15:00:00Z",
                json!({"$browser": "Chrome", "$browser_version": 95}),
            ),
            (
                "person2",
                "sign up",
                "2020-01-02T14:00:00Z",
                json!({"$browser": "Safari", "$browser_version": 14, "$set": {"$country": "EE"}}),
            ),
            (
                "person2",
                "play movie",
                "2020-01-02T16:00:00Z",
                json!({"$browser": "Safari", "$browser_version": 14}),
            ),
        ],
    );
    let base = json!({"date_from": "2020-01-01", "date_to": "2020-01-08", "funnel_window_days": 7,
        "events": events_param(&["sign up", "play movie", "buy"])});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };
    let person = |app: &App, d: &str| uuid_of(app, d);
    let (p1, p2) = (person(&app, "person1"), person(&app, "person2"));
    let (spec, actors) = funnel_actors(
        &app,
        &with(json!({"breakdown_type": "event", "breakdown": "$browser"})),
    )
    .await;
    // Two values, one list each; `breakdown_limit` keeps those furthest
    // along (by the last step first), the others are `Other`.
    assert_eq!(
        funnel::steps(&spec, &actors, "").as_array().map(Vec::len),
        Some(2)
    );
    let (limited, limited_actors) = funnel_actors(
        &app,
        &with(json!({"breakdown_type": "event", "breakdown": "$browser", "breakdown_limit": 1})),
    )
    .await;
    let counts = |v: &Value| -> Vec<(Value, Vec<i64>)> {
        v.as_array()
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
                )
            })
            .collect()
    };
    assert_eq!(
        counts(&funnel::steps(&limited, &limited_actors, "")),
        [
            (json!(["Chrome"]), vec![1, 1, 1]),
            (json!(["Other"]), vec![1, 1, 0])
        ]
    );
    // With one more Safari person, Chrome (one at the last step) is still
    // the one kept: more persons at the first step do not outrank it.
    let mut more = limited_actors.clone();
    let safari = more
        .iter()
        .find(|a| a.breakdown == ["Safari"])
        .expect("a Safari person")
        .clone();
    more.push(funnel::Actor {
        person: "another".into(),
        ..safari
    });
    assert_eq!(
        counts(&funnel::steps(&limited, &more, "")),
        [
            (json!(["Chrome"]), vec![1, 1, 1]),
            (json!(["Other"]), vec![2, 2, 0])
        ]
    );
    // `Other`'s persons are those of the values it holds.
    let mut others = selected(
        &limited,
        &more,
        json!({"funnel_step": 1, "funnel_step_breakdown": ["Other"]}),
    );
    others.sort();
    let mut want = vec![p2.clone(), "another".to_string()];
    want.sort();
    assert_eq!(others, want);
    let mut both = vec![p1.clone(), p2.clone()];
    both.sort();
    assert_eq!(selected(&spec, &actors, json!({"funnel_step": 1})), both);
    assert_eq!(
        selected(
            &spec,
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": "Chrome"}),
        ),
        vec![p1.clone()]
    );
    assert_eq!(
        selected(
            &spec,
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": "Safari"}),
        ),
        vec![p2.clone()]
    );
    let (spec, actors) = funnel_actors(
        &app,
        &with(json!({"breakdown": ["$browser", "$browser_version"]})),
    )
    .await;
    assert_eq!(
        selected(
            &spec,
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": ["Chrome", "95"]}),
        ),
        vec![p1.clone()]
    );
    let (spec, actors) = funnel_actors(
        &app,
        &with(json!({"breakdown_type": "person", "breakdown": "$country"})),
    )
    .await;
    assert_eq!(
        selected(
            &spec,
            &actors,
            json!({"funnel_step": 1, "funnel_step_breakdown": "EE"}),
        ),
        vec![p2.clone()]
    );

    // Scenario 20: conversion times, in every order type (person3 added).
    capture(
        app.persons(),
        &[
            ("person3", "sign up", "2020-01-02T14:00:00Z", json!({})),
            ("person3", "play movie", "2020-01-02T16:00:00Z", json!({})),
            ("person3", "buy", "2020-01-02T17:00:00Z", json!({})),
        ],
    );
    for order in ["ordered", "strict", "unordered"] {
        let (spec, actors) = funnel_actors(&app, &with(json!({"funnel_order_type": order}))).await;
        let steps = funnel::steps(&spec, &actors, "");
        assert_eq!(steps[0]["average_conversion_time"], Value::Null, "{order}");
        assert_eq!(
            steps[1]["average_conversion_time"],
            json!(6000.0),
            "{order}"
        );
        assert_eq!(steps[1]["median_conversion_time"], json!(7200.0), "{order}");
        assert_eq!(
            steps[2]["average_conversion_time"],
            json!(5400.0),
            "{order}"
        );
        assert_eq!(steps[2]["median_conversion_time"], json!(5400.0), "{order}");
        if order == "unordered" {
            assert_eq!(steps[1]["name"], json!("Completed 2 steps"));
        }
    }

    // Scenario 18: strict, with a breakdown: an event between breaks the chain.
    capture(
        app.persons(),
        &[
            (
                "s1",
                "sign up",
                "2020-01-03T12:00:00Z",
                json!({"$browser": "Firefox"}),
            ),
            (
                "s1",
                "blah",
                "2020-01-03T13:00:00Z",
                json!({"$browser": "Firefox"}),
            ),
            (
                "s1",
                "play movie",
                "2020-01-03T14:00:00Z",
                json!({"$browser": "Firefox"}),
            ),
        ],
    );
    let p = json!({"date_from": "2020-01-03", "date_to": "2020-01-04", "funnel_window_days": 7,
        "funnel_order_type": "strict", "breakdown": "$browser", "events": events_param(&["sign up", "play movie"])});
    let (spec, actors) = funnel_actors(&app, &p).await;
    let steps = funnel::steps(&spec, &actors, "");
    assert_eq!(steps[0][0]["breakdown_value"], json!(["Firefox"]));
    assert_eq!(
        (steps[0][0]["count"].as_u64(), steps[0][1]["count"].as_u64()),
        (Some(1), Some(0))
    );
    app.close().expect("close");
}

#[tokio::test]
async fn funnel_parameters_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let ev = events_param(&["a", "b"]);
    for (p, msg) in [
        (
            json!({"events": ev, "funnel_order_type": "sideways"}),
            "funnel_order_type",
        ),
        (
            json!({"events": ev, "funnel_window_interval": 3, "funnel_window_interval_unit": "fortnight"}),
            "fortnight not supported",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "x", "type": "events"}]}),
            "Exclusion event needs to define funnel steps",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "x", "funnel_from_step": 1, "funnel_to_step": 1}]}),
            "End of range should be greater than start",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "x", "funnel_from_step": 0, "funnel_to_step": 2}]}),
            "End of range is greater than number of steps",
        ),
        (
            json!({"events": ev, "exclusions": [{"id": "a", "funnel_from_step": 0, "funnel_to_step": 1}]}),
            "can't be the same as funnel step",
        ),
        (
            json!({"events": events_param(&["a", "b", "c"]), "funnel_order_type": "unordered", "exclusions": [{"id": "x", "funnel_from_step": 0, "funnel_to_step": 1}]}),
            "Partial Exclusions not allowed",
        ),
        (
            json!({"events": ev, "actions": [{"id": 3, "type": "actions"}]}),
            "actions",
        ),
        (
            json!({"events": ev, "filter_test_accounts": true}),
            "filter_test_accounts is not supported",
        ),
        (
            json!({"events": ev, "breakdown": "$browser", "breakdown_limit": 0}),
            "breakdown_limit must be an integer from 1 to 1000",
        ),
        (
            json!({"events": ev, "filter_test_accounts": "true"}),
            "filter_test_accounts is not supported",
        ),
        (
            json!({"events": ev, "date_from": "yesterday-ish"}),
            "date_from",
        ),
        (
            json!({"events": ev, "properties": "{not json"}),
            "Properties are unparsable",
        ),
        (
            json!({"events": ev, "properties": [{"key": "n", "value": "x", "operator": "gt"}]}),
            "needs a number",
        ),
    ] {
        let e = FunnelSpec::parse(&params(p.clone()), now()).expect_err(&p.to_string());
        assert!(e.to_string().contains(msg), "{p}: {e}");
    }
    // Relative dates: -7d is midnight seven days ago.
    let spec = FunnelSpec::parse(&params(json!({"events": ev})), now()).expect("spec");
    assert_eq!(
        spec.range.from,
        Some(
            Utc.with_ymd_and_hms(2025, 12, 25, 0, 0, 0)
                .single()
                .expect("t")
                .timestamp_micros()
        )
    );
    // A funnel counts from `date_from` as parsed, by days too, as
    // PostHog's funnel query does: -24h is the start of the hour a day
    // ago, and a time is itself (trends round both to the day).
    let at = |h, m| {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, 0)
            .single()
            .expect("t")
    };
    for (from, want) in [
        (
            "-24h",
            Utc.with_ymd_and_hms(2025, 12, 31, 15, 0, 0)
                .single()
                .expect("t"),
        ),
        (
            "2025-12-31T10:30:00Z",
            Utc.with_ymd_and_hms(2025, 12, 31, 10, 30, 0)
                .single()
                .expect("t"),
        ),
        (
            "2025-12-31",
            Utc.with_ymd_and_hms(2025, 12, 31, 0, 0, 0)
                .single()
                .expect("t"),
        ),
    ] {
        let p = json!({"events": ev, "date_from": from, "interval": "day"});
        let spec = FunnelSpec::parse(&params(p), at(15, 42)).expect("spec");
        assert_eq!(spec.range.from, Some(want.timestamp_micros()), "{from}");
    }
    app.close().expect("close");
}

/// Events without a person profile (`$process_person_profile: false`, what
/// posthog-js sends for anonymous visitors under `identified_only`) make
/// funnel actors of the person UUID they carry, as in PostHog; an id that
/// later gets a person is that person; a deleted person's kept events make
/// no actor; person property filters see their properties as absent.
#[tokio::test]
async fn personless_events_are_funnel_actors() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let anon = json!({"$process_person_profile": false});
    capture(
        app.persons(),
        &[
            // v1 converts anonymously, v2 drops off.
            ("v1", "$pageview", "2021-05-01T10:00:00Z", anon.clone()),
            ("v1", "signed up", "2021-05-01T11:00:00Z", anon.clone()),
            ("v2", "$pageview", "2021-05-01T12:00:00Z", anon.clone()),
            // v3 views anonymously and converts once it has a person.
            ("v3", "$pageview", "2021-05-02T10:00:00Z", anon.clone()),
            ("v3", "signed up", "2021-05-02T11:00:00Z", json!({})),
            // A person who converts, and one deleted with its events kept.
            ("u", "$pageview", "2021-05-02T12:00:00Z", json!({})),
            ("u", "signed up", "2021-05-02T13:00:00Z", json!({})),
            ("gone", "$pageview", "2021-05-02T12:00:00Z", json!({})),
        ],
    );
    delete_keeping_events(&app, "gone");
    let p = json!({
        "date_from": "2021-05-01", "date_to": "2021-05-03",
        "funnel_window_days": 7,
        "events": events_param(&["$pageview", "signed up"]),
    });
    let (spec, actors) = funnel_actors(&app, &p).await;
    let steps = funnel::steps(&spec, &actors, "");
    assert_eq!(steps[0]["count"], json!(4), "{steps}");
    assert_eq!(steps[1]["count"], json!(3), "{steps}");
    let mut personless: Vec<bool> = actors.iter().map(|a| a.personless).collect();
    personless.sort();
    assert_eq!(personless, vec![false, false, true, true]);
    let v3 = uuid_of(&app, "v3");
    let a3 = actors
        .iter()
        .find(|a| a.person == v3)
        .expect("v3 is a person");
    assert_eq!((a3.steps, a3.personless), (2, false));
    // Person property filters see a personless actor's properties as
    // absent: `is_not` and `is_not_set` keep it, `exact` does not.
    for (operator, value, want) in [
        ("is_not", json!("x"), 4),
        ("is_not_set", json!(null), 4),
        ("exact", json!("x"), 0),
        ("icontains", json!("x"), 0),
    ] {
        let mut with_prop = p.clone();
        with_prop["properties"] =
            json!([{"key": "email", "value": value, "operator": operator, "type": "person"}]);
        let (_, actors) = funnel_actors(&app, &with_prop).await;
        assert_eq!(actors.len(), want, "{operator}");
    }
    // Broken down by a person property, a personless actor has none.
    let mut by_plan = p.clone();
    by_plan["breakdown"] = json!("plan");
    by_plan["breakdown_type"] = json!("person");
    let (_, actors) = funnel_actors(&app, &by_plan).await;
    assert_eq!(actors.len(), 4);
    assert!(actors.iter().all(|a| a.breakdown == [""]));
}

/// The audit's cases around personless actors:
/// - a person deleted without its events, whose id sent personless events
///   before it identified: those events carry another UUID than the
///   person's, and still count for nobody (its ids are blocked);
/// - an id reset away from a live person: its events carry the person's
///   UUID and count for nobody, never for the person a second time, and
///   the person stays listed as a person;
/// - a person filter on a later step only: personless visitors still
///   enter the funnel.
#[tokio::test]
async fn personless_actors_never_bring_back_the_deleted_nor_double_a_person() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let anon = json!({"$process_person_profile": false});
    capture(
        app.persons(),
        &[
            ("anon", "$pageview", "2021-05-01T10:00:00Z", anon.clone()),
            (
                "user",
                "$identify",
                "2021-05-01T10:30:00Z",
                json!({"$anon_distinct_id": "anon"}),
            ),
            ("user", "signed up", "2021-05-01T11:00:00Z", json!({})),
            ("a", "$pageview", "2021-05-02T10:00:00Z", json!({})),
            (
                "a",
                "$identify",
                "2021-05-02T10:10:00Z",
                json!({"$anon_distinct_id": "b"}),
            ),
            ("b", "$pageview", "2021-05-02T10:20:00Z", json!({})),
            ("v", "$pageview", "2021-05-02T12:00:00Z", anon.clone()),
        ],
    );
    let p = json!({
        "date_from": "2021-05-01", "date_to": "2021-05-03",
        "funnel_window_days": 7,
        "events": events_param(&["$pageview", "signed up"]),
    });
    let (spec, before) = funnel_actors(&app, &p).await;
    assert_eq!(funnel::steps(&spec, &before, "")[0]["count"], json!(3));
    // What a query read is stale exactly when a person was deleted since.
    let read = Personless::read(app.persons(), P).expect("read");
    assert!(!read.stale(app.persons(), P).expect("stale"));
    delete_keeping_events(&app, "user");
    assert!(read.stale(app.persons(), P).expect("stale"));
    let read = Personless::read(app.persons(), P).expect("read");
    assert!(!read.stale(app.persons(), P).expect("stale"));
    // Broken down, with every attribution (the step's through its own
    // candidates query), the actors are the same: the deleted person's
    // kept events bring back nobody.
    let (_, plain) = funnel_actors(&app, &p).await;
    assert!(plain.iter().any(|a| a.personless) && plain.iter().any(|a| !a.personless));
    let people = |actors: &[funnel::Actor]| {
        let mut v: Vec<(String, bool)> = actors
            .iter()
            .map(|a| (a.person.clone(), a.personless))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for attribution in [
        json!({"breakdown_attribution_type": "first_touch"}),
        json!({"breakdown_attribution_type": "all_events"}),
        json!({"breakdown_attribution_type": "step", "breakdown_attribution_value": 0}),
        json!({"breakdown_attribution_type": "step", "breakdown_attribution_value": 1}),
    ] {
        let mut q = p.clone();
        q["breakdown"] = json!("plan");
        for (k, v) in attribution.as_object().expect("object") {
            q[k] = v.clone();
        }
        let (_, broken) = funnel_actors(&app, &q).await;
        let want: Vec<(String, bool)> = match attribution.get("breakdown_attribution_value") {
            // Step 1's persons are those who reached it.
            Some(v) if v == 1 => people(
                &plain
                    .iter()
                    .filter(|a| a.steps >= 2)
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            _ => people(&plain),
        };
        assert_eq!(people(&broken), want, "{attribution}");
    }
    // With ids blocked, the check runs once per event, in the
    // aggregate's FILTER, not once in each step's condition.
    let ctx =
        elide_app::analytics::session(app.persons(), P, &QueryLimits::default()).expect("session");
    read.register(&ctx);
    let sql = spec.sql(Some(&read)).expect("sql");
    let explained = elide_app::analytics::collect(&ctx, &format!("EXPLAIN {sql}"))
        .await
        .expect("explain");
    let mut physical = String::new();
    for b in &explained {
        let (kind, plan) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for r in 0..b.num_rows() {
            if kind.value(r) == "physical_plan" {
                physical.push_str(plan.value(r));
            }
        }
    }
    assert_eq!(sql.matches("elide_blocked_id(").count(), 1, "{sql}");
    assert!(
        physical.contains("aggr=[funnel_path(") && physical.contains("FILTER (WHERE"),
        "{physical}"
    );
    let a = uuid_of(&app, "a");
    app.persons().reset_distinct_id(P, "b").expect("reset b");
    let (spec, actors) = funnel_actors(&app, &p).await;
    let steps = funnel::steps(&spec, &actors, "");
    // a (a person, once) and v (personless).
    assert_eq!(steps[0]["count"], json!(2), "{steps} {actors:?}");
    let of_a: Vec<&funnel::Actor> = actors.iter().filter(|x| x.person == a).collect();
    assert_eq!(of_a.len(), 1, "{actors:?}");
    assert!(!of_a[0].personless);
    assert_eq!(actors.iter().filter(|x| x.personless).count(), 1);
    // A person filter on step 2 only: v still enters at step 1.
    let mut later = p.clone();
    later["events"] = json!([
        {"id": "$pageview", "type": "events", "order": 0},
        {"id": "signed up", "type": "events", "order": 1,
         "properties": [{"key": "email", "value": "x", "operator": "exact", "type": "person"}]},
    ]);
    let (spec, actors) = funnel_actors(&app, &later).await;
    assert_eq!(funnel::steps(&spec, &actors, "")[0]["count"], json!(2));
    // A global person filter reads the persons' properties, not the
    // events': w's and z's only events say `plan: free` (no person has a
    // plan), and the person x, whose plan is free, is left out.
    capture(
        app.persons(),
        &[
            (
                "w",
                "$pageview",
                "2021-05-02T13:00:00Z",
                json!({"plan": "free"}),
            ),
            (
                "z",
                "$pageview",
                "2021-05-02T13:00:00Z",
                json!({"plan": "free", "$process_person_profile": false}),
            ),
            (
                "x",
                "$pageview",
                "2021-05-02T13:00:00Z",
                json!({"$set": {"plan": "free"}}),
            ),
        ],
    );
    let (spec, actors) = funnel_actors(&app, &p).await;
    assert_eq!(
        funnel::steps(&spec, &actors, "")[0]["count"],
        json!(5),
        "{actors:?}"
    );
    let mut by_person = p.clone();
    by_person["properties"] =
        json!([{"key": "plan", "value": "free", "operator": "is_not", "type": "person"}]);
    let (spec, actors) = funnel_actors(&app, &by_person).await;
    assert_eq!(
        funnel::steps(&spec, &actors, "")[0]["count"],
        json!(4),
        "{actors:?}"
    );
    let x = uuid_of(&app, "x");
    assert!(actors.iter().all(|a| a.person != x), "{actors:?}");
    // Resetting the deleted person's blocked id makes it a fresh id: its
    // personless event counts again, as an anonymous visitor's. What the
    // requests above read of the deleted persons is kept between requests
    // (`Persons::deleted_actors`) and must not outlive the reset.
    let kept = Personless::read(app.persons(), P).expect("read");
    assert!(
        app.persons()
            .reset_distinct_id(P, "anon")
            .expect("reset anon")
            .unblocked
    );
    assert!(kept.stale(app.persons(), P).expect("stale"));
    let (spec, actors) = funnel_actors(&app, &p).await;
    assert_eq!(
        funnel::steps(&spec, &actors, "")[0]["count"],
        json!(6),
        "{actors:?}"
    );
}
