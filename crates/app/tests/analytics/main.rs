//! Analytics over a real data directory: PostHog's scenarios for funnels,
//! funnel persons and lifecycle (`posthog-analytics.md` §5), person
//! identity (merged ids count once), and deletion (a deleted person's
//! results equal those of a dataset that never had the person, at once,
//! after purge and after reopening).

mod cohort_scenarios;
mod correlation_scenarios;
mod deletion;
mod funnel_breakdowns;
mod funnel_scenarios;
mod lifecycle_scenarios;
mod property_groups;
mod retention;
mod stickiness;
mod trends_actors;
mod trends_displays;
mod trends_first_time;
mod trends_maths;
mod trends_scenarios;
mod trends_sessions;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use elide_app::analytics::filter::Params;
use elide_app::analytics::funnel::{self, FunnelSpec, StepSelection};
use elide_app::query::QueryLimits;
use elide_app::{App, AppConfig};
use elide_persons::{Persons, SqliteMeta};
use serde_json::{json, Value};

const P: i64 = 1;

fn open(dir: &std::path::Path) -> App {
    let mut cfg = AppConfig::new(dir);
    cfg.store = elide_store::StoreOptions::default();
    let app = App::open(cfg).expect("open");
    app.persons().ensure_project(P).expect("project");
    app
}

/// Capture `(distinct id, event, ISO time, properties)` (each text
/// borrowed or owned).
fn capture<D: AsRef<str>, E: AsRef<str>, T: AsRef<str>>(
    persons: &Arc<Persons<SqliteMeta>>,
    events: &[(D, E, T, Value)],
) {
    let now = Utc::now().timestamp_micros();
    let list: Vec<_> = events
        .iter()
        .map(|(d, e, t, props)| {
            let (d, e, t) = (d.as_ref(), e.as_ref(), t.as_ref());
            elide_persons::capture::parse_event(
                json!({"event": e, "distinct_id": d, "timestamp": t, "properties": props}),
                now,
            )
            .expect("event")
        })
        .collect();
    persons.capture(P, &list).expect("capture");
}

/// The UUID of a distinct id's person.
fn uuid_of(app: &App, distinct_id: &str) -> String {
    app.persons()
        .by_distinct_ids(P, &[distinct_id.to_string()])
        .expect("lookup")
        .into_values()
        .next()
        .expect("person")
        .uuid
        .hyphenated()
        .to_string()
}

/// Delete the person of `distinct_id` and its profile, keeping its events
/// (`delete_events: false`): they stay, with no distinct id with a person.
fn delete_keeping_events(app: &App, distinct_id: &str) {
    app.persons()
        .delete(
            P,
            &elide_persons::DeletePersons {
                uuids: Vec::new(),
                distinct_ids: vec![distinct_id.into()],
                delete_events: false,
                delete_recordings: false,
                keep_person: false,
            },
        )
        .expect("delete the profile only");
}

/// Midnight of 2020-01-01 UTC, the first day of the differential tests.
fn day0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("day")
}

/// `day0() + d days + h hours` in RFC 3339 (seconds).
fn iso(d: i64, h: u32) -> String {
    (day0() + chrono::Duration::days(d) + chrono::Duration::hours(i64::from(h)))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn params(v: Value) -> Params {
    Params::new(Vec::new(), Some(v)).expect("params")
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("now")
}

async fn funnel_actors(app: &App, p: &Value) -> (FunnelSpec, Vec<funnel::Actor>) {
    let spec = FunnelSpec::parse(&params(p.clone()), now()).expect("spec");
    let actors = funnel::actors(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("actors");
    (spec, actors)
}

fn selected(spec: &FunnelSpec, actors: &[funnel::Actor], p: Value) -> Vec<String> {
    let sel = StepSelection::parse(&params(p), spec.steps.len()).expect("selection");
    sel.select(spec, actors)
        .into_iter()
        .map(|a| a.person.clone())
        .collect()
}

fn events_param(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"id": n, "type": "events", "order": i}))
            .collect(),
    )
}

/// The persons data a query loads whole (the `persons` table, HogQL's
/// `person.properties`) counts against the query's memory cap: over it the
/// query fails with the cap's error; with room, the same query answers,
/// and a query that reads no persons data runs under the small cap. The
/// memory is counted while the query runs, not while its session lives.
#[tokio::test]
async fn the_persons_data_a_query_loads_counts_against_its_memory_cap() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    let big = "x".repeat(10_000);
    let events: Vec<(String, Value)> = (0..200)
        .map(|i| {
            let props =
                json!({"$set": {"bio": big, "plan": if i % 2 == 0 { "pro" } else { "free" }}});
            (format!("user{i}"), props)
        })
        .collect();
    let list: Vec<(&str, &str, &str, Value)> = events
        .iter()
        .map(|(d, p)| (d.as_str(), "e", "2024-01-01T00:00:00Z", p.clone()))
        .collect();
    capture(app.persons(), &list);
    let limits = |bytes: usize| QueryLimits {
        memory_bytes: Some(bytes),
        ..QueryLimits::default()
    };
    let run = |sql: &'static str, bytes: usize| {
        let persons = Arc::clone(app.persons());
        async move { elide_app::query::run_hogql(&persons, P, sql, &limits(bytes)).await }
    };
    // About 2 MB of properties, against a cap of 1 MiB.
    let small = 1 << 20;
    for sql in [
        "SELECT count() FROM events WHERE person.properties.plan = 'pro'",
        "SELECT count() FROM persons",
    ] {
        let e = run(sql, small).await.expect_err(sql);
        // The limit's own error (a client error), not a persons error.
        match &e {
            elide_app::AppError::Query(q) => assert!(
                matches!(
                    q.find_root(),
                    datafusion::error::DataFusionError::ResourcesExhausted(_)
                ),
                "{sql}: {e}"
            ),
            e => panic!("{sql}: {e:?}"),
        }
        let out = run(sql, 64 << 20).await.expect(sql);
        let want = if sql.contains("pro") { 100 } else { 200 };
        assert_eq!(out.results, vec![vec![json!(want)]], "{sql}");
    }
    let out = run("SELECT count() FROM events", small)
        .await
        .expect("no persons data");
    assert_eq!(out.results, vec![vec![json!(200)]]);
    // Held while a query runs, not while its session lives: many queries
    // on one session, each with room for one load, all answer.
    let ctx = elide_app::analytics::session(app.persons(), P, &limits(8 << 20)).expect("session");
    for _ in 0..10 {
        let b = ctx
            .sql("SELECT count(*) FROM persons")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("one load at a time");
        assert_eq!(b[0].num_rows(), 1);
    }
}
