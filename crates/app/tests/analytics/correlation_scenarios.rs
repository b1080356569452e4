//! Funnel correlation: PostHog scenarios 8–10 (9 with step properties in
//! place of actions), person-property and event-property correlation,
//! the persons of a row, and the checks of the parameters.

use elide_app::analytics::correlation::{self, Correlation, CorrelationSpec};
use serde_json::json;

use super::*;

async fn correlate(app: &App, p: Value) -> Correlation {
    let spec = CorrelationSpec::parse(&params(p), now()).expect("spec");
    correlation::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("correlation")
}

async fn persons_of(app: &App, p: Value) -> Vec<String> {
    let ps = params(p);
    let spec = CorrelationSpec::parse(&ps, now()).expect("spec");
    let (sel, converted) = correlation::selector(&ps).expect("selector");
    correlation::persons_of(
        app.persons(),
        P,
        &spec,
        &sel,
        converted,
        &QueryLimits::default(),
    )
    .await
    .expect("persons")
}

/// `(name, success, failure, odds ratio, success?)` of every row.
fn rows(c: &Correlation) -> Vec<(String, u64, u64, f64, bool)> {
    c.rows
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.success_count,
                r.failure_count,
                r.odds_ratio,
                r.success,
            )
        })
        .collect()
}

fn with(base: &Value, extra: Value) -> Value {
    let mut p = base.clone();
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    p
}

/// Scenario 8's data, with person property `plan` (pro for those who pay)
/// and `source: ad` on the positively related events.
fn scenario_8(app: &App) {
    let mut evs = Vec::new();
    let names: Vec<String> = (0..20).map(|u| format!("user_{u}")).collect();
    for (u, n) in names.iter().enumerate() {
        let plan = if u < 10 { "pro" } else { "free" };
        evs.push((
            n.as_str(),
            "user signed up",
            "2020-01-02T14:00:00Z",
            json!({"$set": {"plan": plan}}),
        ));
        if u < 10 {
            if u % 2 == 0 {
                evs.push((
                    n.as_str(),
                    "positively_related",
                    "2020-01-03T14:00:00Z",
                    json!({"source": "ad"}),
                ));
            }
            evs.push((n.as_str(), "paid", "2020-01-04T14:00:00Z", json!({})));
        } else if u % 2 == 0 {
            evs.push((
                n.as_str(),
                "negatively_related",
                "2020-01-03T14:00:00Z",
                json!({}),
            ));
        }
    }
    capture(app.persons(), &evs);
}

#[tokio::test]
async fn correlation_scenarios() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    scenario_8(&app);
    let base = json!({"date_from": "2020-01-01", "date_to": "2020-01-14",
        "events": events_param(&["user signed up", "paid"])});
    // Scenario 8 (and 10's arithmetic).
    let c = correlate(
        &app,
        with(&base, json!({"funnel_correlation_type": "events"})),
    )
    .await;
    assert!(!c.skewed);
    assert_eq!(
        rows(&c),
        vec![
            ("positively_related".into(), 5, 0, 11.0, true),
            ("negatively_related".into(), 0, 5, 1.0 / 11.0, false),
        ]
    );
    let who = |entity: &str, converted: &str| {
        persons_of(
            &app,
            with(
                &base,
                json!({"funnel_correlation_person_entity": {"id": entity, "type": "events"},
                       "funnel_correlation_person_converted": converted}),
            ),
        )
    };
    assert_eq!(who("positively_related", "true").await.len(), 5);
    assert_eq!(who("positively_related", "false").await.len(), 0);
    assert_eq!(who("negatively_related", "false").await.len(), 5);
    assert_eq!(who("negatively_related", "TRUE").await.len(), 0);
    let mut evens: Vec<String> = (0..10)
        .step_by(2)
        .map(|u| uuid_of(&app, &format!("user_{u}")))
        .collect();
    evens.sort();
    assert_eq!(
        who("positively_related", "true").await,
        evens,
        "ordered by UUID"
    );
    let c = correlate(
        &app,
        with(
            &base,
            json!({"funnel_correlation_exclude_event_names": ["positively_related"]}),
        ),
    )
    .await;
    assert_eq!(
        rows(&c),
        vec![("negatively_related".into(), 0, 5, 1.0 / 11.0, false)]
    );

    // Person properties.
    let c = correlate(
        &app,
        with(
            &base,
            json!({"funnel_correlation_type": "properties", "funnel_correlation_names": ["plan"]}),
        ),
    )
    .await;
    assert_eq!(
        rows(&c),
        vec![
            ("plan::pro".into(), 10, 0, 121.0, true),
            ("plan::free".into(), 0, 10, 1.0 / 121.0, false),
        ]
    );
    let all = correlate(
        &app,
        with(
            &base,
            json!({"funnel_correlation_type": "properties", "funnel_correlation_names": ["$all"]}),
        ),
    )
    .await;
    assert_eq!(rows(&all), rows(&c));
    let none = correlate(
        &app,
        with(
            &base,
            json!({"funnel_correlation_type": "properties", "funnel_correlation_names": ["$all"],
            "funnel_correlation_exclude_names": ["plan"]}),
        ),
    )
    .await;
    assert!(none.rows.is_empty());
    let pro = persons_of(
        &app,
        with(
            &base,
            json!({"funnel_correlation_property_values":
            [{"key": "plan", "value": "pro", "type": "person", "operator": "exact"}],
            "funnel_correlation_person_converted": "true"}),
        ),
    )
    .await;
    assert_eq!(pro.len(), 10);

    // Event properties.
    let c = correlate(
        &app,
        with(
            &base,
            json!({"funnel_correlation_type": "event_with_properties",
            "funnel_correlation_event_names": ["positively_related"]}),
        ),
    )
    .await;
    assert_eq!(
        rows(&c),
        vec![("positively_related::source::ad".into(), 5, 0, 11.0, true)]
    );
    let ad = persons_of(
        &app,
        with(&base, json!({"funnel_correlation_person_entity": {"id": "positively_related", "type": "events",
            "properties": [{"key": "source", "value": "ad", "type": "event"}]}})),
    )
    .await;
    assert_eq!(ad, evens);
    let c = correlate(
        &app,
        with(
            &base,
            json!({"funnel_correlation_type": "event_with_properties",
            "funnel_correlation_event_names": ["positively_related"],
            "funnel_correlation_event_exclude_property_names": ["source"]}),
        ),
    )
    .await;
    assert!(c.rows.is_empty());

    // Everyone converts: skewed, nothing to correlate.
    let c = correlate(
        &app,
        json!({"date_from": "2020-01-01", "date_to": "2020-01-14",
        "events": events_param(&["user signed up"])}),
    )
    .await;
    assert!(c.skewed && c.rows.is_empty());
    // No steps: nothing, not skewed.
    let c = correlate(
        &app,
        json!({"date_from": "2020-01-01", "date_to": "2020-01-14"}),
    )
    .await;
    assert!(!c.skewed && c.rows.is_empty());
    app.close().expect("close");
}

#[tokio::test]
async fn step_events_are_excluded_whatever_their_properties() {
    // Scenario 9, with step properties where PostHog has actions.
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let mut evs = Vec::new();
    for u in 0..3 {
        let d: &'static str = ["u0", "u1", "u2"][u];
        evs.push((
            d,
            "user signed up",
            "2020-01-02T14:00:00Z",
            json!({"key": "val"}),
        ));
        if u != 1 {
            evs.push((d, "positively_related", "2020-01-03T14:00:00Z", json!({})));
        }
        evs.push((d, "paid", "2020-01-04T14:00:00Z", json!({"key": "val"})));
    }
    evs.push((
        "u3",
        "user signed up",
        "2020-01-02T14:00:00Z",
        json!({"key": "val"}),
    ));
    evs.push(("u3", "user signed up", "2020-01-03T14:00:00Z", json!({})));
    capture(app.persons(), &evs);
    let step = |id: &str, order: i64| {
        json!({"id": id, "type": "events", "order": order,
               "properties": [{"key": "key", "value": "val", "type": "event"}]})
    };
    let c = correlate(
        &app,
        json!({"date_from": "2020-01-01", "date_to": "2020-01-14",
               "events": [step("user signed up", 0), step("paid", 1)]}),
    )
    .await;
    assert_eq!(
        rows(&c),
        vec![("positively_related".into(), 2, 0, 3.0, true)]
    );
    app.close().expect("close");
}

#[tokio::test]
async fn correlation_parameters_are_checked() {
    let base = json!({"events": events_param(&["a", "b"])});
    let err = |p: Value| {
        CorrelationSpec::parse(&params(p), now())
            .expect_err("refused")
            .to_string()
    };
    assert!(err(with(
        &base,
        json!({"funnel_correlation_type": "properties"})
    ))
    .contains("Property Correlation expects atleast one Property"));
    assert!(err(with(
        &base,
        json!({"funnel_correlation_type": "event_with_properties"})
    ))
    .contains("Event Property Correlation expects atleast one event name"));
    assert!(err(with(
        &base,
        json!({"funnel_correlation_exclude_event_names": [1]})
    ))
    .contains("names are strings"));
    assert!(err(with(&base, json!({"funnel_step": -2}))).contains("reached a step"));
    // An unknown type is events, as in PostHog.
    let s = CorrelationSpec::parse(
        &params(with(&base, json!({"funnel_correlation_type": "nonsense"}))),
        now(),
    )
    .expect("spec");
    assert_eq!(s.kind, correlation::Kind::Events);
    let sel = |p: Value| {
        correlation::selector(&params(p))
            .map(|_| ())
            .expect_err("refused")
            .to_string()
    };
    assert!(sel(json!({}))
        .contains("funnel_correlation_person_entity or funnel_correlation_property_values"));
    assert!(sel(
        json!({"funnel_correlation_property_values": [{"key": "a", "value": 1, "type": "event"}]})
    )
    .contains("only person properties"));
    assert!(
        sel(json!({"funnel_correlation_person_entity": {"type": "events"}}))
            .contains("needs an id")
    );
}

/// Personless actors (events with `$process_person_profile: false`) count
/// in the totals and for the events they did, found by the UUID their
/// events carry; they have no person properties and are not listed among
/// a row's persons.
#[tokio::test]
async fn personless_actors_are_correlated_by_their_events() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let anon = json!({"$process_person_profile": false});
    let names: Vec<String> = (0..10).map(|u| format!("anon_{u}")).collect();
    let mut evs = Vec::new();
    for (u, n) in names.iter().enumerate() {
        evs.push((
            n.as_str(),
            "user signed up",
            "2020-01-02T14:00:00Z",
            anon.clone(),
        ));
        if u < 5 {
            evs.push((
                n.as_str(),
                "watched video",
                "2020-01-03T14:00:00Z",
                anon.clone(),
            ));
            evs.push((n.as_str(), "paid", "2020-01-04T14:00:00Z", anon.clone()));
        }
    }
    // One person who signs up and drops off, after watching the video.
    evs.push(("p", "user signed up", "2020-01-02T14:00:00Z", json!({})));
    evs.push(("p", "watched video", "2020-01-03T14:00:00Z", json!({})));
    capture(app.persons(), &evs);
    let p = json!({
        "events": events_param(&["user signed up", "paid"]),
        "date_from": "2020-01-01", "date_to": "2020-01-14",
        "funnel_correlation_type": "events",
    });
    let c = correlate(&app, p.clone()).await;
    // 5 successes (all personless) and 6 failures (5 personless, the
    // person); the video: 5 successes and 1 failure.
    let video = rows(&c)
        .into_iter()
        .find(|r| r.0 == "watched video")
        .expect("the video is correlated");
    assert_eq!((video.1, video.2), (5, 1), "{:?}", rows(&c));
    let want = (5.0 + 1.0) * (6.0 - 1.0 + 1.0) / ((5.0 - 5.0 + 1.0) * (1.0 + 1.0));
    assert!((video.3 - want).abs() < 1e-9, "{} against {want}", video.3);
    // The row's persons: only the one with a profile.
    let listed = persons_of(
        &app,
        with(
            &p,
            json!({"funnel_correlation_person_entity": {"id": "watched video", "type": "events"}}),
        ),
    )
    .await;
    assert_eq!(listed, vec![uuid_of(&app, "p")]);
}
