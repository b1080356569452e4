//! Cohorts: static lists (by UUID and distinct id, moved by a merge, left
//! by a deleted person at once), dynamic definitions (person properties,
//! behaviour counted over the last N days, negation, OR/AND groups,
//! PostHog's legacy groups, cohorts of cohorts), and cohorts as filters
//! of funnels and trends.

use elide_app::analytics::cohorts;
use elide_app::analytics::trends::{self, TrendsSpec};
use elide_persons::cohorts::CohortPeople;
use elide_persons::DeletePersons;
use serde_json::json;

use super::*;

fn ago(hours: i64) -> String {
    (Utc::now() - chrono::Duration::hours(hours)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn members(app: &App, id: i64) -> Vec<String> {
    let mut m = cohorts::members(app.persons(), P, id, &QueryLimits::default())
        .await
        .expect("members");
    m.sort();
    m
}

fn uuids(app: &App, ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|d| uuid_of(app, d)).collect();
    v.sort();
    v
}

fn dynamic(app: &App, filters: Value) -> i64 {
    app.persons()
        .create_cohort(P, "dynamic", "", false, json!({"filters": filters}))
        .expect("cohort")
        .id
}

/// a: pro, 3 pageviews in the last day; b: pro, 1 pageview; c: free, 2
/// pageviews; d: free, a pageview 40 days ago.
fn people(app: &App) {
    let (t1, t2, t3) = (ago(2), ago(3), ago(4));
    let old = ago(40 * 24);
    capture(
        app.persons(),
        &[
            ("a", "$pageview", &t1, json!({"$set": {"plan": "pro"}})),
            ("a", "$pageview", &t2, json!({})),
            ("a", "$pageview", &t3, json!({})),
            ("b", "$pageview", &t1, json!({"$set": {"plan": "pro"}})),
            ("c", "$pageview", &t1, json!({"$set": {"plan": "free"}})),
            ("c", "$pageview", &t2, json!({})),
            ("d", "$pageview", &old, json!({"$set": {"plan": "free"}})),
        ],
    );
}

#[tokio::test]
async fn dynamic_cohorts_follow_their_definition() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    people(&app);
    let pro = json!({"type": "person", "key": "plan", "value": "pro"});
    let twice = json!({"type": "behavioral", "key": "$pageview", "value": "performed_event_multiple",
        "operator": "gte", "operator_value": 2, "time_value": 30, "time_interval": "day"});
    let c = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [pro]}}),
    );
    assert_eq!(members(&app, c).await, uuids(&app, &["a", "b"]));
    let c = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [twice]}}),
    );
    assert_eq!(members(&app, c).await, uuids(&app, &["a", "c"]));
    let both = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [pro, twice]}}),
    );
    assert_eq!(members(&app, both).await, uuids(&app, &["a"]));
    let either = dynamic(
        &app,
        json!({"properties": {"type": "OR", "values": [
        {"type": "AND", "values": [pro]}, {"type": "AND", "values": [twice]}]}}),
    );
    assert_eq!(members(&app, either).await, uuids(&app, &["a", "b", "c"]));
    // Did not view a page in the last 30 days (d's was 40 days ago).
    let idle = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [
        {"type": "behavioral", "key": "$pageview", "value": "performed_event", "time_value": 30,
         "time_interval": "day", "negation": true}]}}),
    );
    assert_eq!(members(&app, idle).await, uuids(&app, &["d"]));
    // At most once: b (1) and d (0 in the window).
    let rare = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [
        {"type": "behavioral", "key": "$pageview", "value": "performed_event_multiple", "operator": "lte",
         "operator_value": 1, "time_value": 30, "time_interval": "day"}]}}),
    );
    assert_eq!(members(&app, rare).await, uuids(&app, &["b", "d"]));
    // PostHog's legacy groups: OR of (properties AND event counts).
    let legacy = app
        .persons()
        .create_cohort(
            P,
            "legacy",
            "",
            false,
            json!({"groups": [
            {"properties": [{"key": "plan", "value": "free", "type": "person"}]},
            {"event_id": "$pageview", "days": 1, "count": 3, "count_operator": "gte"}]}),
        )
        .expect("cohort")
        .id;
    assert_eq!(members(&app, legacy).await, uuids(&app, &["a", "c", "d"]));
    // A cohort of cohorts: in `both`, not in `legacy`'s free persons.
    let nested = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [
        {"type": "cohort", "value": either}, {"type": "cohort", "value": legacy, "negation": true}]}}),
    );
    assert_eq!(members(&app, nested).await, uuids(&app, &["b"]));
    // `"operator": "not_in"` reads as the negation does, as in filters.
    let not_in = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [
        {"type": "cohort", "value": either}, {"type": "cohort", "value": legacy, "operator": "not_in"}]}}),
    );
    assert_eq!(members(&app, not_in).await, uuids(&app, &["b"]));
    let selfish = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [{"type": "cohort", "value": 0}]}}),
    );
    app.persons()
        .update_cohort(P, selfish, &elide_persons::cohorts::CohortPatch {
            filters: Some(json!({"filters": {"properties": {"type": "AND", "values": [{"type": "cohort", "value": selfish}]}}})),
            ..Default::default()
        })
        .expect("update");
    let err = cohorts::members(app.persons(), P, selfish, &QueryLimits::default())
        .await
        .expect_err("a cycle");
    assert!(err.to_string().contains("refers to itself"), "{err}");
    // The person's cohorts: a cohort that cannot be evaluated (the cycle)
    // holds nobody and does not fail the answer.
    let of = |with: Vec<(elide_persons::CohortRow, u64)>| -> Vec<i64> {
        with.iter().map(|(c, _)| c.id).collect()
    };
    let of_a = of(cohorts::cohorts_of(
        app.persons(),
        P,
        &uuid_of(&app, "a"),
        &QueryLimits::default(),
    )
    .await
    .expect("cohorts"));
    assert!(!of_a.contains(&selfish), "{of_a:?}");
    app.persons().delete_cohort(P, selfish).expect("delete");
    let with = cohorts::cohorts_of(
        app.persons(),
        P,
        &uuid_of(&app, "a"),
        &QueryLimits::default(),
    )
    .await
    .expect("cohorts");
    assert!(
        with.iter().any(|(c, n)| c.id == both && *n == 1),
        "{with:?}"
    );
    let of_a = of(with);
    assert!(
        of_a.contains(&both) && of_a.contains(&legacy) && !of_a.contains(&idle),
        "{of_a:?}"
    );

    // Deleting a person: gone from every dynamic cohort at once.
    app.persons()
        .delete(
            P,
            &DeletePersons {
                uuids: Vec::new(),
                distinct_ids: vec!["a".into()],
                delete_events: true,
                delete_recordings: false,
                keep_person: false,
            },
        )
        .expect("delete");
    assert_eq!(members(&app, either).await, uuids(&app, &["b", "c"]));
    assert_eq!(members(&app, both).await, Vec::<String>::new());
    app.close().expect("close");
}

#[tokio::test]
async fn static_cohorts_are_lists_that_follow_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    people(&app);
    let c = app
        .persons()
        .create_cohort(P, "vips", "our best", true, Value::Null)
        .expect("cohort");
    let r = app
        .persons()
        .add_to_static_cohort(
            P,
            c.id,
            &CohortPeople {
                uuids: vec![uuid_of(&app, "a")],
                distinct_ids: vec!["b".into(), "nobody".into(), "a".into()],
            },
        )
        .expect("add");
    assert_eq!(r.changed, 2);
    assert_eq!(r.not_found, vec!["nobody".to_string()]);
    assert_eq!(members(&app, c.id).await, uuids(&app, &["a", "b"]));
    // A merge moves the membership: b becomes part of c's person.
    capture(
        app.persons(),
        &[("c", "$identify", &ago(1), json!({"$anon_distinct_id": "b"}))],
    );
    assert_eq!(members(&app, c.id).await, uuids(&app, &["a", "c"]));
    // Trends filtered on the cohort: only its persons' events.
    let Value::Object(q) = json!({"kind": "TrendsQuery", "interval": "day", "dateRange": {"date_from": "-2d"},
        "series": [{"event": "$pageview"}],
        "properties": [{"type": "cohort", "key": "id", "value": c.id}]})
    else {
        unreachable!("an object")
    };
    let spec = TrendsSpec::parse(&q, Utc::now()).expect("spec");
    let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("trends");
    let total: f64 = trends::results(&spec, &counts)[0]["count"]
        .as_f64()
        .expect("count");
    assert_eq!(
        total, 6.0,
        "the pageviews of a (3), and of c (2) with b's (1)"
    );
    // A funnel filtered on it.
    let p = json!({"date_from": "-2d", "events": events_param(&["$pageview"]),
        "properties": [{"type": "cohort", "key": "id", "value": c.id}]});
    let spec = FunnelSpec::parse(&params(p), Utc::now()).expect("spec");
    let actors = funnel::actors(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("actors");
    assert_eq!(actors.len(), 2);
    // Filtered on not being in it: another person's pageview only (an
    // event sent personless passes no cohort filter).
    capture(
        app.persons(),
        &[
            ("e", "$pageview", &ago(1), json!({})),
            (
                "anon",
                "$pageview",
                &ago(1),
                json!({"$process_person_profile": false}),
            ),
        ],
    );
    let p = json!({"date_from": "-2d", "events": events_param(&["$pageview"]),
        "properties": [{"type": "cohort", "key": "id", "value": c.id, "operator": "not_in"}]});
    let spec = FunnelSpec::parse(&params(p), Utc::now()).expect("spec");
    let actors = funnel::actors(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("a funnel not in a cohort");
    assert_eq!(actors.len(), 1);
    let steps = funnel::steps(
        &spec,
        &funnel::actors(app.persons(), P, &spec, &QueryLimits::default())
            .await
            .expect("actors"),
        "",
    );
    assert_eq!(steps[0]["count"], json!(1), "{steps}");
    // Removing and deleting.
    let r = app
        .persons()
        .remove_from_static_cohort(
            P,
            c.id,
            &CohortPeople {
                uuids: vec![uuid_of(&app, "a")],
                distinct_ids: vec![],
            },
        )
        .expect("remove");
    assert_eq!(r.changed, 1);
    app.persons()
        .delete(
            P,
            &DeletePersons {
                uuids: Vec::new(),
                distinct_ids: vec!["c".into()],
                delete_events: true,
                delete_recordings: false,
                keep_person: false,
            },
        )
        .expect("delete");
    assert_eq!(
        members(&app, c.id).await,
        Vec::<String>::new(),
        "the deleted person left the list"
    );
    assert!(app
        .persons()
        .static_cohort_people(P, c.id)
        .expect("list")
        .is_empty());
    // Bad requests.
    assert!(app
        .persons()
        .create_cohort(P, " ", "", true, Value::Null)
        .is_err());
    let dynamic_id = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [{"type": "person", "key": "plan", "value": "pro"}]}}),
    );
    assert!(app
        .persons()
        .add_to_static_cohort(P, dynamic_id, &CohortPeople::default())
        .is_err());
    for bad in [
        json!({"filters": {"properties": {"type": "AND", "values": []}}}),
        json!({"filters": {"properties": {"type": "AND", "values": [{"type": "behavioral", "key": "x", "value": "performed_event"}]}}}),
        json!({"filters": {"properties": {"type": "AND", "values": [{"type": "behavioral", "key": "x", "value": "first_time", "time_value": 1}]}}}),
        json!({"filters": {"properties": {"type": "AND", "values": [{"type": "element", "key": "x"}]}}}),
        json!({"groups": [{"action_id": 3}]}),
        json!({}),
    ] {
        assert!(cohorts::stored(&bad).is_err(), "{bad}");
    }
    let missing = dynamic(
        &app,
        json!({"properties": {"type": "AND", "values": [{"type": "cohort", "value": 9999}]}}),
    );
    let err = cohorts::members(app.persons(), P, missing, &QueryLimits::default())
        .await
        .expect_err("missing");
    assert!(
        err.to_string().contains("cohort 9999 does not exist"),
        "{err}"
    );
    app.close().expect("close");
}

/// A definition's regular expressions are bounded in all, not per leaf:
/// each is compiled wherever the cohort is read.
#[test]
fn a_definition_holds_at_most_twenty_regular_expressions() {
    let leaf = |n: usize| {
        json!({"type": "person", "key": "plan", "operator": "regex",
            "value": (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>()})
    };
    let def = |leaves: Vec<serde_json::Value>| json!({"properties": {"type": "OR", "values": [{"type": "AND", "values": leaves}]}});
    assert!(cohorts::parse(Some(&def(vec![leaf(10), leaf(10)])), None).is_ok());
    let e = cohorts::parse(Some(&def(vec![leaf(10), leaf(11)])), None).unwrap_err();
    assert!(
        e.to_string()
            .contains("at most 20 regular expressions in all"),
        "{e}"
    );
}
