//! A deleted person leaves every analytic (funnel steps and persons,
//! lifecycle, correlation, trends) at once, after purge and after
//! reopening.

use elide_app::analytics::correlation::{self, Correlation, CorrelationSpec};
use elide_app::analytics::trends::{self, TrendsSpec};
use elide_persons::DeletePersons;
use serde_json::json;

use super::lifecycle_scenarios::lifecycle_of;
use super::*;

/// Funnel steps, lifecycle series and funnel correlation of the current
/// data (persons' UUIDs are left out: they identify the same persons in
/// both datasets only through their distinct ids).
async fn analytics_of(app: &App) -> (Value, Value, Vec<Vec<String>>, Correlation, Value) {
    let p = json!({"date_from": "2020-01-01", "date_to": "2020-01-20", "funnel_window_days": 3,
        "events": events_param(&["$pageview", "signup", "purchase"])});
    let (spec, actors) = funnel_actors(app, &p).await;
    let steps = funnel::steps(&spec, &actors, "");
    let mut at_step: Vec<Vec<String>> = Vec::new();
    for k in 1..=3 {
        let mut ids: Vec<String> = actors
            .iter()
            .filter(|a| a.steps >= k)
            .flat_map(|a| {
                app.persons()
                    .by_uuids(P, std::slice::from_ref(&a.person))
                    .expect("lookup")
                    .into_values()
                    .flat_map(|p| p.distinct_ids)
            })
            .collect();
        ids.sort();
        at_step.push(ids);
    }
    let (_, _, s) = lifecycle_of(
        app,
        json!({"date_from": "2020-01-02T00:00:00Z", "date_to": "2020-01-19T00:00:00Z"}),
    )
    .await;
    // Which events go with reaching purchase from a pageview: signup.
    let cp = json!({"date_from": "2020-01-01", "date_to": "2020-01-20", "funnel_window_days": 3,
        "events": events_param(&["$pageview", "purchase"])});
    let spec = CorrelationSpec::parse(&params(cp), now()).expect("spec");
    let c = correlation::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("correlation");
    assert!(!c.rows.is_empty(), "the correlation has rows to lose");
    // Trends: events, daily and monthly active persons.
    let Value::Object(q) = json!({"kind": "TrendsQuery", "interval": "day",
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-20"},
        "series": [{"event": "$pageview"}, {"event": "$pageview", "math": "dau"},
                   {"event": null, "math": "monthly_active"}]})
    else {
        unreachable!("an object")
    };
    let spec = TrendsSpec::parse(&q, now()).expect("trends");
    let counts = trends::compute(app.persons(), P, &spec, &QueryLimits::default())
        .await
        .expect("trends");
    (steps, s, at_step, c, trends::results(&spec, &counts))
}

fn generated() -> Vec<(String, &'static str, String, Value)> {
    let mut v = Vec::new();
    for u in 0..40u32 {
        let d = format!("user{u}");
        let day = 1 + (u % 15);
        let names = ["$pageview", "signup", "purchase"];
        let k = 1 + (u as usize * 7) % 3;
        for (i, n) in names.iter().take(k).enumerate() {
            let hour = 8 + i * ((u as usize % 4) + 1) * 7;
            v.push((
                d.clone(),
                *n,
                format!(
                    "2020-01-{:02}T{:02}:00:00Z",
                    day + (hour / 24) as u32,
                    hour % 24
                ),
                json!({}),
            ));
        }
        if u % 3 == 0 {
            v.push((
                d.clone(),
                "$pageview",
                format!("2020-01-{:02}T09:00:00Z", day + 2),
                json!({}),
            ));
        }
    }
    v
}

#[tokio::test]
async fn a_deleted_person_leaves_every_result_at_once_after_purge_and_after_reopen() {
    let all = generated();
    let deleted = ["user3", "user7", "user12"];
    let refs =
        |rows: &[(String, &'static str, String, Value)]| -> Vec<(String, String, String, Value)> {
            rows.iter()
                .map(|(a, b, c, d)| (a.clone(), b.to_string(), c.clone(), d.clone()))
                .collect()
        };
    let cap = |app: &App, rows: &[(String, String, String, Value)]| {
        let r: Vec<(&str, &str, &str, Value)> = rows
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.clone()))
            .collect();
        capture(app.persons(), &r);
    };
    // The dataset that never had them.
    let without_dir = tempfile::tempdir().expect("dir");
    let without = open(without_dir.path());
    let kept: Vec<_> = all
        .iter()
        .filter(|r| !deleted.contains(&r.0.as_str()))
        .cloned()
        .collect();
    cap(&without, &refs(&kept));
    let want = analytics_of(&without).await;
    without.close().expect("close");

    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    cap(&app, &refs(&all));
    app.store().flush().expect("flush");
    let before = analytics_of(&app).await;
    assert_ne!(before, want, "the deleted persons matter to the results");
    let r = app
        .persons()
        .delete(
            P,
            &DeletePersons {
                uuids: Vec::new(),
                distinct_ids: deleted.iter().map(|s| s.to_string()).collect(),
                delete_events: true,
                delete_recordings: false,
                keep_person: false,
            },
        )
        .expect("delete");
    assert_eq!(r.persons_deleted, 3);
    assert_eq!(analytics_of(&app).await, want, "at once");
    app.store()
        .compact(elide_store::CompactRequest::now())
        .expect("purge");
    assert_eq!(analytics_of(&app).await, want, "after purge");
    app.close().expect("close");
    let app = open(dir.path());
    assert_eq!(analytics_of(&app).await, want, "after reopening");
    app.close().expect("close");
}
