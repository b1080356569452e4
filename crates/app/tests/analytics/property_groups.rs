//! PostHog's property groups (`{"type": "AND"|"OR", "values": [...]}`,
//! nested) in the events list, trends and funnels: random groups of
//! event, person and cohort filters against a model evaluated here on the
//! same rows, with persons, personless events and a cohort; and the
//! parameter checks.

use std::collections::{BTreeMap, BTreeSet};

use elide_app::analytics::events::{self, EventsQuery};
use elide_app::analytics::properties::props;
use elide_app::analytics::trends::{self, TrendsSpec};
use elide_persons::cohorts::CohortPeople;
use elide_store::predicate::{Comparison, PropertyFilter};
use proptest::prelude::*;
use serde_json::json;

use super::*;

/// The persons, with the properties they are given, and whether they are
/// in the cohort.
const PERSONS: [(&str, &str, bool); 4] = [
    ("a", r#"{"plan": "pro", "age": 30}"#, true),
    ("b", r#"{"plan": "free", "age": 20}"#, false),
    ("c", r#"{"age": 40}"#, true),
    ("d", r#"{}"#, false),
];

/// Distinct ids whose events have no person.
const PERSONLESS: [&str; 2] = ["v1", "v2"];

/// The filters a random group is made of: `(type, filter)`; a cohort
/// filter's value is set to the cohort's id.
fn leaf_filters() -> Vec<Value> {
    vec![
        json!({"type": "event", "key": "$browser", "value": "Chrome"}),
        json!({"type": "event", "key": "$browser", "operator": "is_not_set"}),
        json!({"type": "event", "key": "n", "value": 2, "operator": "gt"}),
        json!({"type": "event", "key": "$browser", "value": "fire", "operator": "icontains"}),
        json!({"type": "person", "key": "plan", "value": "pro"}),
        json!({"type": "person", "key": "plan", "value": "pro", "operator": "is_not"}),
        json!({"type": "person", "key": "age", "value": 35, "operator": "lt"}),
        json!({"type": "person", "key": "plan", "operator": "is_set"}),
        json!({"type": "cohort", "key": "id"}),
        json!({"type": "cohort", "key": "id", "operator": "not_in"}),
    ]
}

/// A property group as a user writes it.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(usize),
    And(Vec<Tree>),
    Or(Vec<Tree>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = (0..leaf_filters().len()).prop_map(Tree::Leaf);
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Tree::And),
            proptest::collection::vec(inner, 0..4).prop_map(Tree::Or),
        ]
    })
}

impl Tree {
    fn json(&self, cohort: i64) -> Value {
        match self {
            Tree::Leaf(i) => {
                let mut f = leaf_filters()[*i].clone();
                if f["type"] == "cohort" {
                    f["value"] = json!(cohort);
                }
                f
            }
            Tree::And(v) => {
                json!({"type": "AND", "values": v.iter().map(|t| t.json(cohort)).collect::<Vec<_>>()})
            }
            Tree::Or(v) => {
                json!({"type": "OR", "values": v.iter().map(|t| t.json(cohort)).collect::<Vec<_>>()})
            }
        }
    }

    /// Whether an event with `props` of `person` (`None`: personless)
    /// passes. A personless event's person properties are absent, and it
    /// is in no cohort (nor "not in" one); an empty group always holds.
    fn eval(&self, props: &Value, person: Option<usize>) -> bool {
        match self {
            Tree::Leaf(i) => {
                let f = &leaf_filters()[*i];
                match f["type"].as_str() {
                    Some("cohort") => person.is_some_and(|p| {
                        let member = PERSONS[p].2;
                        member == (f["operator"] != "not_in")
                    }),
                    kind => {
                        let mut o = f.clone();
                        o.as_object_mut().expect("object").remove("type");
                        if o.get("operator").is_none() {
                            o["operator"] = json!("exact");
                        }
                        let filter: PropertyFilter = serde_json::from_value(o).expect("filter");
                        let value = if kind == Some("event") {
                            props.get(&filter.key).cloned()
                        } else {
                            person.and_then(|p| {
                                let set: Value =
                                    serde_json::from_str(PERSONS[p].1).expect("person");
                                set.get(&filter.key).cloned()
                            })
                        };
                        filter.matches_value_as(value.as_ref(), Comparison::Text)
                    }
                }
            }
            Tree::And(v) => v.iter().all(|t| t.eval(props, person)),
            Tree::Or(v) => v.is_empty() || v.iter().any(|t| t.eval(props, person)),
        }
    }
}

/// One captured event: distinct id, name, time (µs), properties, person.
type Row = (String, &'static str, i64, Value, Option<usize>);

/// Events of every person and personless id on 2020-01-01, each at its
/// own second: views and clicks with a browser (or none) and a number
/// (or none). The persons get their properties on their first event, the
/// cohort is a static list of its persons.
fn load(app: &App) -> (Vec<Row>, i64) {
    let mut rows: Vec<Row> = Vec::new();
    let ids = PERSONS
        .iter()
        .enumerate()
        .map(|(i, p)| (p.0, Some(i)))
        .chain(PERSONLESS.iter().map(|d| (*d, None)));
    let mut second = 0;
    for (k, (id, person)) in ids.enumerate() {
        for i in 0..6usize {
            second += 1;
            let mut props = json!({});
            match (k + i) % 3 {
                0 => props["$browser"] = json!("Chrome"),
                1 => props["$browser"] = json!("Firefox"),
                _ => {}
            }
            if i % 4 != 0 {
                props["n"] = json!(i % 4);
            }
            match person {
                None => props["$process_person_profile"] = json!(false),
                Some(p) if i == 0 => {
                    props["$set"] = serde_json::from_str(PERSONS[p].1).expect("set")
                }
                Some(_) => {}
            }
            let event = if i % 2 == 0 { "view" } else { "click" };
            let t = day0().timestamp_micros() + second * 1_000_000;
            rows.push((id.to_string(), event, t, props, person));
        }
    }
    let list: Vec<(&str, &str, String, Value)> = rows
        .iter()
        .map(|r| {
            let t = chrono::DateTime::from_timestamp_micros(r.2).expect("time");
            (r.0.as_str(), r.1, t.to_rfc3339(), r.3.clone())
        })
        .collect();
    capture(app.persons(), &list);
    let c = app
        .persons()
        .create_cohort(P, "some", "", true, Value::Null)
        .expect("cohort");
    let members: Vec<String> = PERSONS
        .iter()
        .filter(|p| p.2)
        .map(|p| p.0.to_string())
        .collect();
    app.persons()
        .add_to_static_cohort(
            P,
            c.id,
            &CohortPeople {
                uuids: Vec::new(),
                distinct_ids: members,
            },
        )
        .expect("members");
    (rows, c.id)
}

/// The events list, trends' total and unique users, and a two-step
/// funnel's actors under `properties`, each against the model.
async fn check(app: &App, rows: &[Row], properties: Value, model: &Tree) {
    let passing: Vec<&Row> = rows.iter().filter(|r| model.eval(&r.3, r.4)).collect();
    let q = EventsQuery {
        props: props(Some(properties.clone()), "properties").expect("props"),
        limit: 1000,
        ..EventsQuery::default()
    };
    let listed = events::list(app.persons(), P, &q, &QueryLimits::default())
        .await
        .expect("list");
    let got: BTreeSet<(String, i64)> = listed
        .iter()
        .map(|e| (e.distinct_id.clone(), e.timestamp_us))
        .collect();
    let want: BTreeSet<(String, i64)> = passing.iter().map(|r| (r.0.clone(), r.2)).collect();
    assert_eq!(got, want, "events list, {properties}");

    // Actors: a person by its index, a personless id by its own.
    let actor = |r: &Row| r.4.map_or(r.0.clone(), |p| PERSONS[p].0.to_string());
    for math in ["total", "dau"] {
        let Value::Object(q) = json!({"kind": "TrendsQuery", "interval": "day",
            "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-01"},
            "series": [{"event": "view", "math": math}],
            "properties": properties.clone()})
        else {
            unreachable!("an object")
        };
        let spec = TrendsSpec::parse(&q, now()).expect("spec");
        let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
            .await
            .expect("trends");
        let got = trends::results(&spec, &counts)[0]["count"]
            .as_f64()
            .expect("count") as usize;
        let views = passing.iter().filter(|r| r.1 == "view");
        let want = if math == "total" {
            views.count()
        } else {
            views.map(|r| actor(r)).collect::<BTreeSet<_>>().len()
        };
        assert_eq!(got, want, "trends {math}, {properties}");
    }

    let p = json!({"date_from": "2020-01-01", "date_to": "2020-01-02",
        "events": events_param(&["view", "click"]), "properties": properties.clone()});
    let (_, actors) = funnel_actors(app, &p).await;
    let uuids: BTreeMap<String, String> = PERSONS
        .iter()
        .map(|p| (uuid_of(app, p.0), p.0.to_string()))
        .collect();
    let name_of = |a: &funnel::Actor| -> String {
        if a.personless {
            // The UUID a personless id's events carry.
            PERSONLESS
                .iter()
                .find(|d| elide_persons::ids::person_uuid(P, d).to_string() == a.person)
                .map_or_else(|| a.person.clone(), |d| d.to_string())
        } else {
            uuids.get(&a.person).cloned().unwrap_or_default()
        }
    };
    let got: BTreeMap<String, usize> = actors.iter().map(|a| (name_of(a), a.steps)).collect();
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for v in passing.iter().filter(|r| r.1 == "view") {
        let converted = passing
            .iter()
            .any(|c| c.1 == "click" && actor(c) == actor(v) && c.2 > v.2);
        let steps = want.entry(actor(v)).or_insert(1);
        if converted {
            *steps = 2;
        }
    }
    assert_eq!(got, want, "funnel, {properties}");

    // Strict order: the step after a view is the actor's next event of
    // those the filters let through (one they reject is no event of the
    // funnel's, not one that breaks the chain).
    let mut p = p;
    p["funnel_order_type"] = json!("strict");
    let (_, actors) = funnel_actors(app, &p).await;
    let got: BTreeMap<String, usize> = actors.iter().map(|a| (name_of(a), a.steps)).collect();
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_actor: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &passing {
        by_actor.entry(actor(r)).or_default().push(r);
    }
    for (who, mut evs) in by_actor {
        evs.sort_by_key(|r| r.2);
        if !evs.iter().any(|r| r.1 == "view") {
            continue;
        }
        let converted = evs
            .windows(2)
            .any(|w| w[0].1 == "view" && w[1].1 == "click");
        want.insert(who, if converted { 2 } else { 1 });
    }
    assert_eq!(got, want, "strict funnel, {properties}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random groups, nested three deep, of every kind of filter.
    #[test]
    fn property_groups_select_what_the_model_selects(trees in proptest::collection::vec(tree(), 1..3)) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (dir, app, rows, cohort) = fixture();
        let _ = &dir;
        let properties = Value::Array(trees.iter().map(|t| t.json(cohort)).collect());
        let model = Tree::And(trees);
        rt.block_on(check(&app, &rows, properties, &model));
    }
}

fn fixture() -> (tempfile::TempDir, App, Vec<Row>, i64) {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let (rows, cohort) = load(&app);
    (dir, app, rows, cohort)
}

/// A funnel step's own cohort filter (in the step's condition, inside the
/// funnel's aggregate): the cohort's members who viewed, and each of them
/// converts as without it.
#[tokio::test]
async fn a_funnel_steps_cohort_filter_counts_its_members() {
    let (_dir, app, rows, cohort) = fixture();
    let mut steps = events_param(&["view", "click"]);
    steps[0]["properties"] = json!([{"type": "cohort", "key": "id", "value": cohort}]);
    let p = json!({"date_from": "2020-01-01", "date_to": "2020-01-02", "events": steps});
    let (_, actors) = funnel_actors(&app, &p).await;
    let got: BTreeSet<String> = actors.iter().map(|a| a.person.clone()).collect();
    let want: BTreeSet<String> = PERSONS
        .iter()
        .filter(|p| p.2)
        .map(|p| uuid_of(&app, p.0))
        .collect();
    assert_eq!(got, want);
    assert!(actors.iter().all(|a| a.steps == 2));
    // The same as a group: members, or views from Firefox.
    let tree = Tree::Or(vec![Tree::Leaf(8), Tree::Leaf(3)]);
    check(&app, &rows, json!([tree.json(cohort)]), &tree).await;
}

/// What a group may hold: a list of values, nested at most 8 deep, 100
/// filters in all; a group of none is no condition, an `OR` of one is
/// that one.
#[test]
fn property_groups_are_checked() {
    let leaf = json!({"key": "$browser", "value": "Chrome", "type": "event"});
    let nest = |depth: usize| {
        (0..depth).fold(
            leaf.clone(),
            |v, _| json!({"type": "OR", "values": [v, leaf.clone()]}),
        )
    };
    assert!(props(Some(nest(8)), "properties").is_ok());
    let err = props(Some(nest(9)), "properties").expect_err("too deep");
    assert!(err.to_string().contains("nest at most 8 deep"), "{err}");
    let err = props(
        Some(json!({"type": "OR", "values": {"a": 1}})),
        "properties",
    )
    .expect_err("not a list");
    assert!(err.to_string().contains("values are a list"), "{err}");
    let many: Vec<Value> = (0..101).map(|_| leaf.clone()).collect();
    let err = props(
        Some(json!({"type": "AND", "values": [{"type": "OR", "values": many}]})),
        "properties",
    )
    .expect_err("too many");
    assert!(err.to_string().contains("101 property filters"), "{err}");
    for none in [
        json!({"type": "OR", "values": []}),
        json!({"type": "AND", "values": [{"type": "OR", "values": [{"type": "AND", "values": []}, leaf.clone()]}]}),
    ] {
        assert_eq!(
            props(Some(none.clone()), "properties").expect("ok"),
            vec![],
            "{none}"
        );
    }
    assert_eq!(
        props(
            Some(json!({"type": "OR", "values": [leaf.clone()]})),
            "properties"
        )
        .expect("ok"),
        props(Some(json!([leaf])), "properties").expect("ok"),
    );
    let err = props(
        Some(json!({"type": "OR", "values": [{"key": "x", "type": "element"}, {"key": "y"}]})),
        "properties",
    )
    .expect_err("element");
    assert!(err.to_string().contains("\"element\""), "{err}");
}
