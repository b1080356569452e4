//! Trends: what `trendsFilter.display` changes (a running sum; one value
//! over the whole range), and breakdowns by a person property.

use elide_app::analytics::trends::{TrendsSpec, BREAKDOWN_NULL, BREAKDOWN_OTHER};

use super::trends_scenarios::trend;
use serde_json::json;

use super::*;

/// Three days: a (plan pro) on days 0 and 1, b (plan free) on days 1 and
/// 2 twice, c (no plan) on day 2, a personless visitor on day 0; every
/// event has an `amount`.
fn load(app: &App) {
    let ev = |d: &'static str, day: i64, h: u32, props: Value| (d, "buy", iso(day, h), props);
    let anon = json!({"$process_person_profile": false, "amount": 7});
    let rows = [
        ev("a", 0, 1, json!({"amount": 10, "$set": {"plan": "pro"}})),
        ev("anon", 0, 2, anon),
        ev("a", 1, 1, json!({"amount": 20})),
        ev("b", 1, 2, json!({"amount": 1, "$set": {"plan": "free"}})),
        ev("b", 2, 1, json!({"amount": 2})),
        ev("b", 2, 2, json!({"amount": 3})),
        ev("c", 2, 3, json!({"amount": 4})),
    ];
    capture(app.persons(), &rows);
}

fn query(math: &str, display: Option<&str>, breakdown: Value) -> Value {
    json!({"kind": "TrendsQuery", "interval": "day",
        "dateRange": {"date_from": "2020-01-01", "date_to": "2020-01-03"},
        "series": [{"event": "buy", "math": math, "math_property": "amount"}],
        "trendsFilter": {"display": display, "showLegend": true},
        "breakdownFilter": breakdown})
}

fn rows(s: &Value, field: &str) -> Vec<(String, Value)> {
    s.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["breakdown_value"].as_str().unwrap_or("").to_string(),
                r[field].clone(),
            )
        })
        .collect()
}

/// `ActionsLineGraphCumulative`: per day the sum up to it, `count` the
/// last, as PostHog's window `sum`; unique users count once each, on
/// their first day (PostHog's `min(day_start)` per actor).
#[tokio::test]
async fn a_cumulative_display_sums_the_days_up_to_each() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let c = Some("ActionsLineGraphCumulative");
    let s = trend(&app, query("total", c, Value::Null)).await;
    assert_eq!(s[0]["data"], json!([2.0, 4.0, 7.0]));
    assert_eq!(s[0]["count"], 7.0);
    let s = trend(&app, query("dau", c, Value::Null)).await;
    assert_eq!(s[0]["data"], json!([2.0, 3.0, 4.0]));
    let s = trend(
        &app,
        query(
            "dau",
            c,
            json!({"breakdown": "plan", "breakdown_type": "person"}),
        ),
    )
    .await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("free".into(), json!([0.0, 1.0, 1.0])),
            ("pro".into(), json!([1.0, 1.0, 1.0])),
            (BREAKDOWN_NULL.into(), json!([1.0, 1.0, 2.0])),
        ]
    );
    let s = trend(
        &app,
        query(
            "sum",
            c,
            json!({"breakdown": "plan", "breakdown_type": "person"}),
        ),
    )
    .await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("pro".into(), json!([10.0, 30.0, 30.0])),
            ("free".into(), json!([0.0, 1.0, 6.0])),
            (BREAKDOWN_NULL.into(), json!([7.0, 7.0, 11.0])),
        ]
    );
}

/// The total-value displays: one `aggregated_value` over the range, no
/// data, as PostHog's: unique users over the range (not the sum of the
/// days'), a property math over all its events, weekly active persons
/// over the range and the six days before; a breakdown ranked by it, the
/// rest summed in Other; the interval is days whatever is asked.
#[tokio::test]
async fn a_total_value_is_one_value_over_the_range() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let bold = Some("BoldNumber");
    let s = trend(&app, query("total", bold, Value::Null)).await;
    assert_eq!(s[0]["aggregated_value"], 7.0);
    assert_eq!(s[0]["data"], json!([]));
    assert_eq!(s[0]["count"], 0);
    assert_eq!(
        s[0]["days"],
        json!(["2020-01-01", "2020-01-02", "2020-01-03"])
    );
    for (math, want) in [
        ("dau", 4.0),
        ("weekly_active", 4.0),
        ("avg", 47.0 / 7.0),
        ("max", 20.0),
        ("median", 4.0),
        ("unique_session", 1.0),
        ("max_count_per_actor", 3.0),
    ] {
        let s = trend(&app, query(math, Some("ActionsTable"), Value::Null)).await;
        assert_eq!(s[0]["aggregated_value"], want, "{math}");
    }
    // Weekly active persons over 2020-01-03 alone: active from 12-28 on.
    let mut q = query("weekly_active", bold, Value::Null);
    q["dateRange"] = json!({"date_from": "2020-01-03", "date_to": "2020-01-03"});
    q["interval"] = json!("hour");
    assert_eq!(trend(&app, q).await[0]["aggregated_value"], 4.0);
    let mut q = query("dau", bold, Value::Null);
    q["dateRange"] = json!({"date_from": "2020-01-03", "date_to": "2020-01-03"});
    assert_eq!(trend(&app, q).await[0]["aggregated_value"], 2.0);
    let s = trend(
        &app,
        query(
            "total",
            Some("ActionsPie"),
            json!({"breakdown": "plan", "breakdown_type": "person", "breakdown_limit": 1}),
        ),
    )
    .await;
    assert_eq!(
        rows(&s, "aggregated_value"),
        vec![
            ("free".into(), json!(3.0)),
            (BREAKDOWN_OTHER.into(), json!(4.0))
        ]
    );
    // Ranked by the value alone, the unset one too (PostHog's
    // `row_number() OVER (ORDER BY total DESC)`).
    let s = trend(
        &app,
        query(
            "sum",
            Some("ActionsPie"),
            json!({"breakdown": "plan", "breakdown_type": "person", "breakdown_limit": 1}),
        ),
    )
    .await;
    assert_eq!(
        rows(&s, "aggregated_value"),
        vec![
            ("pro".into(), json!(30.0)),
            (BREAKDOWN_OTHER.into(), json!(17.0))
        ]
    );
    // Weekly active persons by week are a week's unique users, as
    // PostHog converts them.
    let mut q = query("weekly_active", None, Value::Null);
    q["interval"] = json!("week");
    let s = trend(&app, q).await;
    assert_eq!(s[0]["data"], json!([4.0]));
    let mut q = query("weekly_active", bold, Value::Null);
    q["interval"] = json!("week");
    q["dateRange"] = json!({"date_from": "2020-01-03", "date_to": "2020-01-03"});
    assert_eq!(trend(&app, q).await[0]["aggregated_value"], 2.0);
}

/// A breakdown by a person property reads the person owning the event's
/// distinct id now: a merge gives the merged person's; personless events
/// and persons without it are the null value.
#[tokio::test]
async fn a_person_property_breakdown_reads_the_person_now() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let by_plan = json!({"breakdown": "plan", "breakdown_type": "person"});
    let s = trend(&app, query("total", None, by_plan.clone())).await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("free".into(), json!([0.0, 1.0, 2.0])),
            ("pro".into(), json!([1.0, 1.0, 0.0])),
            (BREAKDOWN_NULL.into(), json!([1.0, 0.0, 1.0])),
        ]
    );
    // c becomes part of a: its event counts under a's plan.
    capture(
        app.persons(),
        &[(
            "a",
            "$identify",
            &iso(3, 0),
            json!({"$anon_distinct_id": "c"}),
        )],
    );
    let s = trend(&app, query("dau", None, by_plan)).await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("pro".into(), json!([1.0, 1.0, 1.0])),
            ("free".into(), json!([0.0, 1.0, 1.0])),
            (BREAKDOWN_NULL.into(), json!([1.0, 0.0, 0.0])),
        ]
    );
}

/// An empty value and an unset one are one (PostHog's null) before
/// unique users are counted: a person with both counts once; options of
/// a breakdown that is not set, and an interval a total value does not
/// use, are no error.
#[tokio::test]
async fn empty_and_unset_breakdown_values_are_one_actor_once() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    capture(
        app.persons(),
        &[
            ("a", "buy", &iso(0, 1), json!({"$browser": ""})),
            ("a", "buy", &iso(1, 1), json!({})),
            ("b", "buy", &iso(1, 2), json!({"$browser": "Chrome"})),
        ],
    );
    let s = trend(
        &app,
        query(
            "dau",
            Some("ActionsLineGraphCumulative"),
            json!({"breakdown": "$browser"}),
        ),
    )
    .await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("Chrome".into(), json!([0.0, 1.0, 1.0])),
            (BREAKDOWN_NULL.into(), json!([1.0, 1.0, 1.0])),
        ]
    );
    let s = trend(
        &app,
        query("dau", Some("BoldNumber"), json!({"breakdown": "$browser"})),
    )
    .await;
    assert_eq!(
        rows(&s, "aggregated_value"),
        vec![
            (BREAKDOWN_NULL.into(), json!(1.0)),
            ("Chrome".into(), json!(1.0))
        ]
    );
    let mut q = query(
        "total",
        Some("BoldNumber"),
        json!({"breakdown": null, "breakdown_normalize_url": true, "breakdown_histogram_bin_count": 10}),
    );
    q["interval"] = json!("minute");
    assert_eq!(trend(&app, q).await[0]["aggregated_value"], 3.0);
}

/// What changes the values and is not served is refused, not ignored;
/// so is a formula that is not arithmetic between the series.
#[test]
fn displays_that_are_not_served_are_refused() {
    for (filter, says) in [
        (json!({"smoothingIntervals": 7}), "smoothingIntervals"),
        (json!({"formula": "A+B"}), "only 1 series is defined (A)"),
        (json!({"formulaNodes": [{"formula": "A"}]}), ""),
        (
            json!({"formulaNodes": [{"custom_name": "x"}]}),
            "needs its formula",
        ),
        (json!({"formula": "A > 1"}), "'>'"),
        (json!({"display": 5}), "display must be a string"),
        (json!("BoldNumber"), "trendsFilter must be an object"),
        (json!({"breakdown_type": "cohort"}), ""),
    ] {
        let mut q = query("total", None, Value::Null);
        q["trendsFilter"] = filter.clone();
        let Value::Object(q) = q else {
            unreachable!("an object")
        };
        match TrendsSpec::parse(&q, now()) {
            Err(e) => assert!(
                !says.is_empty() && e.to_string().contains(says),
                "{filter}: {e}"
            ),
            Ok(_) => assert!(says.is_empty(), "{filter} was accepted"),
        }
    }
    let Value::Object(q) = query(
        "total",
        None,
        json!({"breakdown": "x", "breakdown_type": "cohort"}),
    ) else {
        unreachable!("an object")
    };
    let e = TrendsSpec::parse(&q, now()).expect_err("cohort breakdown");
    assert!(e.to_string().contains("(event, person)"), "{e}");
    let Value::Object(q) = query(
        "total",
        None,
        json!({"breakdowns": [{"property": "plan", "type": "person"}, {"property": "$browser"}]}),
    ) else {
        unreachable!("an object")
    };
    let e = TrendsSpec::parse(&q, now()).expect_err("breakdowns");
    assert!(e.to_string().contains("2 breakdowns; one is served"), "{e}");
}

/// PostHog's current editor writes `breakdowns: [{property, type}]`: one
/// entry is that breakdown.
#[tokio::test]
async fn a_breakdowns_list_of_one_is_that_breakdown() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let old = trend(
        &app,
        query(
            "dau",
            None,
            json!({"breakdown": "plan", "breakdown_type": "person"}),
        ),
    )
    .await;
    let new = trend(
        &app,
        query(
            "dau",
            None,
            json!({"breakdowns": [{"property": "plan", "type": "person"}], "breakdown_limit": 25}),
        ),
    )
    .await;
    assert_eq!(new, old);
    assert_eq!(new.as_array().map(Vec::len), Some(3));
}

/// Formulas, as PostHog's `apply_formula`: per day over the series'
/// data; per breakdown value (a value a series lacks counts 0 there);
/// over a total value's one values; several with their names; a
/// cumulative chart's running sums, `count` their sum.
#[tokio::test]
async fn formulas_compute_between_the_series() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let two = |display: Option<&str>, breakdown: Value, filter: Value| {
        let mut q = query("total", display, breakdown);
        q["series"] = json!([{"event": "buy"}, {"event": "buy", "math": "dau"}]);
        if let (Some(Value::Object(f)), Value::Object(extra)) = (q.get_mut("trendsFilter"), filter)
        {
            f.extend(extra);
        }
        q
    };
    // Events per unique user: day 0 2/2, day 1 2/2, day 2 3/2.
    let s = trend(&app, two(None, Value::Null, json!({"formula": "A / B"}))).await;
    assert_eq!(s.as_array().map(Vec::len), Some(1));
    assert_eq!(s[0]["data"], json!([1.0, 1.0, 1.5]));
    assert_eq!(s[0]["count"], 3.5);
    assert_eq!(s[0]["label"], "Formula (A / B)");
    assert_eq!(s[0]["action"], Value::Null);
    assert_eq!(
        s[0]["days"],
        json!(["2020-01-01", "2020-01-02", "2020-01-03"])
    );
    // Two formulas, one named; a division by zero is 0.
    let s = trend(
        &app,
        two(
            None,
            Value::Null,
            json!({"formulaNodes": [{"formula": "a - b"}, {"formula": "(A - 2) / (B - 2)", "custom_name": "odd"}]}),
        ),
    )
    .await;
    assert_eq!(s[0]["data"], json!([0.0, 0.0, 1.0]));
    assert_eq!(s[1]["label"], "odd");
    assert_eq!(s[1]["data"], json!([0.0, 0.0, 0.0]));
    // By plan: pro's a (2 events, 1 user), free's b (3, 1), and the null
    // value (c and the visitor: 2, 2) last.
    let s = trend(
        &app,
        two(
            Some("BoldNumber"),
            json!({"breakdown": "plan", "breakdown_type": "person"}),
            json!({"formula": "A / B"}),
        ),
    )
    .await;
    assert_eq!(
        rows(&s, "aggregated_value"),
        vec![
            ("free".into(), json!(3.0)),
            ("pro".into(), json!(2.0)),
            (BREAKDOWN_NULL.into(), json!(1.0)),
        ]
    );
    assert_eq!(s[0]["data"], Value::Null);
    assert_eq!(s[0]["count"], 0);
    // A value one series lacks: B filtered to pro counts 0 for free.
    let mut q = two(
        None,
        json!({"breakdown": "plan", "breakdown_type": "person"}),
        json!({"formula": "A + 10 * B"}),
    );
    q["series"][1]["properties"] = json!([{"key": "plan", "value": "pro", "type": "person"}]);
    let s = trend(&app, q).await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("pro".into(), json!([11.0, 11.0, 0.0])),
            ("free".into(), json!([0.0, 1.0, 2.0])),
            (BREAKDOWN_NULL.into(), json!([1.0, 0.0, 1.0])),
        ]
    );
    // Values only B has (A filtered to free; B's Other): A counts 0
    // there.
    let mut q = two(
        None,
        json!({"breakdown": "plan", "breakdown_type": "person", "breakdown_limit": 1}),
        json!({"formula": "B * 100 + A"}),
    );
    q["series"][0]["properties"] = json!([{"key": "plan", "value": "free", "type": "person"}]);
    let s = trend(&app, q).await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("free".into(), json!([0.0, 101.0, 102.0])),
            (BREAKDOWN_OTHER.into(), json!([200.0, 100.0, 100.0])),
        ]
    );
    // The null value (A: only its events) after the values, though its
    // total is the largest; pro and free tie on total and count, and go
    // by their data, largest first (PostHog's sort key).
    let mut q = two(
        None,
        json!({"breakdown": "plan", "breakdown_type": "person"}),
        json!({"formula": "A * 1000 + B"}),
    );
    q["series"][0]["properties"] =
        json!([{"key": "plan", "operator": "is_not_set", "type": "person"}]);
    let s = trend(&app, q).await;
    assert_eq!(
        rows(&s, "data"),
        vec![
            ("pro".into(), json!([1.0, 1.0, 0.0])),
            ("free".into(), json!([0.0, 1.0, 1.0])),
            (BREAKDOWN_NULL.into(), json!([1001.0, 0.0, 1001.0])),
        ]
    );
    // Cumulative: the formula of the running sums; count their sum.
    let s = trend(
        &app,
        two(
            Some("ActionsLineGraphCumulative"),
            Value::Null,
            json!({"formula": "A - B"}),
        ),
    )
    .await;
    // (A: 2, 4, 7 events; B: 2, 3, 4 users, each once from their first
    // day.)
    assert_eq!(s[0]["data"], json!([0.0, 1.0, 3.0]));
    assert_eq!(s[0]["count"], 4.0);
}

/// `compareFilter.compare`: the series over the current range, then over
/// the previous one (as long, ending where the current starts), each row
/// marked; formulas and total values per period; `compare_to`'s offset.
#[tokio::test]
async fn a_comparison_adds_the_previous_period() {
    let dir = tempfile::tempdir().expect("dir");
    let app = open(dir.path());
    load(&app);
    let compared = |display: Option<&str>, filter: Value| {
        let mut q = query("total", display, Value::Null);
        q["dateRange"] = json!({"date_from": "2020-01-02", "date_to": "2020-01-03"});
        q["compareFilter"] = json!({"compare": true});
        if let (Some(Value::Object(f)), Value::Object(extra)) = (q.get_mut("trendsFilter"), filter)
        {
            f.extend(extra);
        }
        q
    };
    // Days 1 and 2 (2 and 3 buys); before them 12-31 and day 0 (0, 2).
    let s = trend(&app, compared(None, json!({}))).await;
    assert_eq!(s.as_array().map(Vec::len), Some(2));
    assert_eq!(s[0]["compare_label"], "current");
    assert_eq!(s[0]["compare"], true);
    assert_eq!(s[0]["data"], json!([2.0, 3.0]));
    assert_eq!(s[0]["days"], json!(["2020-01-02", "2020-01-03"]));
    assert_eq!(s[1]["compare_label"], "previous");
    assert_eq!(s[1]["data"], json!([0.0, 2.0]));
    assert_eq!(s[1]["days"], json!(["2019-12-31", "2020-01-01"]));
    assert_eq!(s[1]["label"], "buy");
    // A formula per period; a total value per period.
    let s = trend(&app, compared(None, json!({"formula": "A * 2"}))).await;
    assert_eq!(s[0]["data"], json!([4.0, 6.0]));
    assert_eq!(s[1]["data"], json!([0.0, 4.0]));
    assert_eq!(s[1]["compare_label"], "previous");
    let s = trend(&app, compared(Some("BoldNumber"), json!({}))).await;
    assert_eq!(s[0]["aggregated_value"], 5.0);
    assert_eq!(s[1]["aggregated_value"], 2.0);
    // By month: PostHog's bounds are the dates given (01-02 to 01-03),
    // so the previous period is 12-31 to 01-01, counted from its month's
    // start as the current one is: December (none) and January's first
    // day (2).
    let mut q = compared(None, json!({}));
    q["interval"] = json!("month");
    let s = trend(&app, q).await;
    assert_eq!(s[0]["days"], json!(["2020-01-01"]));
    assert_eq!(s[0]["data"], json!([7.0]));
    assert_eq!(s[1]["days"], json!(["2019-12-01", "2020-01-01"]));
    assert_eq!(s[1]["data"], json!([0.0, 2.0]));
    // Not compared: no marks; a compare_to kept while off is no matter.
    let mut q = compared(None, json!({}));
    q["compareFilter"] = json!({"compare": false, "compare_to": "-1y"});
    assert_eq!(trend(&app, q).await.as_array().map(Vec::len), Some(1));
    let mut q = compared(None, json!({}));
    q["compareFilter"] = json!({"compare": false});
    let s = trend(&app, q).await;
    assert_eq!(s.as_array().map(Vec::len), Some(1));
    assert!(s[0].get("compare_label").is_none());
    // compare_to: the period at that offset, as long as the current
    // one (a day before: 01-01 and 01-02, 2 and 2 buys; a week before:
    // none), marked as the previous period is.
    let mut q = compared(None, json!({}));
    q["compareFilter"] = json!({"compare": true, "compare_to": "-1d"});
    let s = trend(&app, q).await;
    assert_eq!(s[0]["data"], json!([2.0, 3.0]));
    assert_eq!(s[1]["compare_label"], "previous");
    assert_eq!(s[1]["days"], json!(["2020-01-01", "2020-01-02"]));
    assert_eq!(s[1]["data"], json!([2.0, 2.0]));
    let mut q = compared(Some("BoldNumber"), json!({}));
    q["compareFilter"] = json!({"compare": true, "compare_to": "-1w"});
    let s = trend(&app, q).await;
    assert_eq!(s[0]["aggregated_value"], 5.0);
    assert_eq!(s[1]["aggregated_value"], 0.0);
    assert_eq!(s[1]["days"], json!(["2019-12-26", "2019-12-27"]));
    // A date_from in hours by day counts from its hour, and so does the
    // compared period, a week before (not from its day's start).
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_micros()
    };
    let q = json!({"kind": "TrendsQuery", "interval": "day", "dateRange": {"date_from": "-48h"},
        "series": [{"event": "buy"}], "compareFilter": {"compare": true, "compare_to": "-1w"}});
    let Value::Object(q) = q else {
        unreachable!("an object")
    };
    let at_1520 = chrono::DateTime::parse_from_rfc3339("2026-01-10T15:20:00Z")
        .expect("now")
        .with_timezone(&chrono::Utc);
    let spec = TrendsSpec::parse(&q, at_1520).expect("spec");
    assert_eq!(spec.from, at("2026-01-08T15:00:00Z"));
    let prev = spec.previous.as_ref().expect("compared");
    assert_eq!(prev.from, at("2026-01-01T15:00:00Z"));
    assert_eq!(prev.first, at("2026-01-01T00:00:00Z"));
    // Not compared: a compare_to of any kind is no matter.
    let mut q = compared(None, json!({}));
    q["compareFilter"] = json!({"compare": false, "compare_to": 7});
    assert_eq!(trend(&app, q).await.as_array().map(Vec::len), Some(1));
    for bad in [json!("-1x"), json!("-1dStart"), json!(7), json!("-20000y")] {
        let mut q = compared(None, json!({}));
        q["compareFilter"] = json!({"compare": true, "compare_to": bad});
        let Value::Object(q) = q else {
            unreachable!("an object")
        };
        let e = TrendsSpec::parse(&q, now()).expect_err("compare_to");
        assert!(e.to_string().contains("compareFilter.compare_to"), "{e}");
    }
}
