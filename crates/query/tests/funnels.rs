//! `window_funnel` and `funnel_path` through SQL: the scenarios of
//! ClickHouse's documentation and PostHog's tests, bad arguments, and
//! differential tests against references written here without the
//! functions' code (a brute-force search, a naive per-person scan, and
//! the same funnel written with SQL window functions).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, UInt8Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;

/// One row: (person, timestamp in seconds, event name).
type Row = (String, i64, String);

const SEC: i64 = 1_000_000;

/// A session with `rows` as table `t(person, ts, event)`, split into
/// `partitions` partitions (so partial states get merged).
async fn session(rows: &[Row], partitions: usize) -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("person", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("event", DataType::Utf8, false),
    ]));
    let mut parts = vec![Vec::new(); partitions.max(1)];
    for (i, r) in rows.iter().enumerate() {
        parts[i % partitions.max(1)].push(r.clone());
    }
    let batches: Vec<Vec<RecordBatch>> = parts
        .iter()
        .map(|p| {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(p.iter().map(|r| Some(r.0.clone())).collect::<StringArray>()),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        p.iter().map(|r| r.1 * SEC).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(p.iter().map(|r| Some(r.2.clone())).collect::<StringArray>()),
            ];
            vec![RecordBatch::try_new(Arc::clone(&schema), cols).expect("batch")]
        })
        .collect();
    let mut config = SessionConfig::new().with_target_partitions(partitions.max(1));
    if partitions >= 3 {
        // Skip partial aggregation at once: each row becomes its own
        // state (convert_to_state), merged in the final phase.
        let e = &mut config.options_mut().execution;
        e.skip_partial_aggregation_probe_rows_threshold = 1;
        e.skip_partial_aggregation_probe_ratio_threshold = 0.0;
    }
    let mut ctx = SessionContext::new_with_config(config);
    elide_query::register_functions(&mut ctx).expect("functions");
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, batches).expect("table")),
    )
    .expect("register");
    ctx
}

/// `SELECT person, <expr> FROM t GROUP BY person` as a map.
async fn per_person_u8(ctx: &SessionContext, expr: &str) -> BTreeMap<String, u8> {
    let sql = format!("SELECT person, {expr} AS v FROM t GROUP BY person");
    let batches = ctx
        .sql(&sql)
        .await
        .expect(&sql)
        .collect()
        .await
        .expect(&sql);
    let mut out = BTreeMap::new();
    for b in batches {
        let p = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
        let p = p.as_string::<i32>();
        let v = arrow::compute::cast(b.column(1), &DataType::UInt8).expect("cast");
        let v = v.as_primitive::<UInt8Type>();
        for i in 0..b.num_rows() {
            out.insert(p.value(i).to_string(), v.value(i));
        }
    }
    out
}

fn rows(person: &str, events: &[(i64, &str)]) -> Vec<Row> {
    events
        .iter()
        .map(|(t, e)| (person.to_string(), *t, e.to_string()))
        .collect()
}

fn conds(steps: &[&str]) -> String {
    steps
        .iter()
        .map(|s| format!("event = '{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------- ClickHouse

#[tokio::test]
async fn clickhouse_documentation_examples() {
    // Scenario 19: 1003 → 1009 → 1007 → 1010 over four days, a huge window.
    let day = 86_400;
    let data = rows(
        "u",
        &[
            (0, "1003"),
            (day, "1009"),
            (2 * day, "1007"),
            (3 * day, "1010"),
        ],
    );
    let ctx = session(&data, 1).await;
    let got = per_person_u8(
        &ctx,
        "window_funnel(INTERVAL '70000 days', '', ts, event = '1003', event = '1009', event = '1007', event = '1010')",
    )
    .await;
    assert_eq!(got["u"], 4);
    // A window of one day reaches 2 (1003 + 1 day = 1009, not 1007).
    let got = per_person_u8(
        &ctx,
        "window_funnel(INTERVAL '1 day', '', ts, event = '1003', event = '1009', event = '1007', event = '1010')",
    )
    .await;
    assert_eq!(got["u"], 2);

    // strict_order: A → B → D → C for (A, B, C) gives 2.
    let data = rows("u", &[(1, "A"), (2, "B"), (3, "D"), (4, "C")]);
    let ctx = session(&data, 1).await;
    let c = conds(&["A", "B", "C"]);
    assert_eq!(
        per_person_u8(
            &ctx,
            &format!("window_funnel(INTERVAL '1 hour', 'strict_order', ts, {c})")
        )
        .await["u"],
        2
    );
    assert_eq!(
        per_person_u8(
            &ctx,
            &format!("window_funnel(INTERVAL '1 hour', '', ts, {c})")
        )
        .await["u"],
        3
    );

    // strict_deduplication: A → B → C → B → D for (A, B, C, D) gives 3.
    let data = rows("u", &[(1, "A"), (2, "B"), (3, "C"), (4, "B"), (5, "D")]);
    let ctx = session(&data, 1).await;
    let c = conds(&["A", "B", "C", "D"]);
    assert_eq!(
        per_person_u8(
            &ctx,
            &format!("window_funnel(INTERVAL '1 hour', 'strict_deduplication', ts, {c})")
        )
        .await["u"],
        3
    );
    assert_eq!(
        per_person_u8(
            &ctx,
            &format!("window_funnel(INTERVAL '1 hour', '', ts, {c})")
        )
        .await["u"],
        4
    );
}

#[tokio::test]
async fn clickhouse_window_bounds_ties_and_modes() {
    // The window is inclusive at its end and counted from the chain's
    // first event, not from the previous step.
    let data = [
        rows("edge", &[(0, "a"), (5, "b"), (10, "c")]),
        rows("late", &[(0, "a"), (5, "b"), (11, "c")]),
        // A later restart gives the chain more room.
        rows("restart", &[(0, "a"), (8, "a"), (9, "b"), (15, "c")]),
        // Equal timestamps chain without strict_increase only.
        rows("tie", &[(3, "a"), (3, "b"), (4, "c")]),
        // No first step: 0.
        rows("none", &[(1, "b"), (2, "c")]),
    ]
    .concat();
    let ctx = session(&data, 1).await;
    let c = conds(&["a", "b", "c"]);
    let got = per_person_u8(
        &ctx,
        &format!("window_funnel(INTERVAL '10 seconds', '', ts, {c})"),
    )
    .await;
    assert_eq!(got["edge"], 3);
    assert_eq!(got["late"], 2);
    assert_eq!(got["restart"], 3);
    assert_eq!(got["tie"], 3);
    assert_eq!(got["none"], 0);
    let got = per_person_u8(
        &ctx,
        &format!("window_funnel(INTERVAL '10 seconds', 'strict_increase', ts, {c})"),
    )
    .await;
    assert_eq!(got["tie"], 1);
    assert_eq!(got["edge"], 3);

    // Integer timestamps with an integer window, and no GROUP BY.
    let ctx = session(&rows("u", &[(100, "a"), (150, "b")]), 1).await;
    let b = ctx
        .sql("SELECT window_funnel(50000000, '', CAST(ts AS BIGINT), event = 'a', event = 'b') FROM t")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    assert_eq!(b[0].column(0).as_primitive::<UInt8Type>().value(0), 2);
    // An empty input: 0, not null.
    let b = ctx
        .sql("SELECT window_funnel(INTERVAL '1 day', '', ts, event = 'a') FROM t WHERE event = 'zzz'")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    assert_eq!(b[0].column(0).as_primitive::<UInt8Type>().value(0), 0);
}

#[tokio::test]
async fn bad_arguments_are_plan_errors() {
    let ctx = session(&rows("u", &[(1, "a")]), 1).await;
    let cases = [
        ("window_funnel(INTERVAL '1 day', 'strict', ts, event = 'a')", "strict_deduplication"),
        ("window_funnel(INTERVAL '1 day', 'bogus', ts, event = 'a')", "unknown mode"),
        ("window_funnel(INTERVAL '1 day', '', ts)", "at least one condition"),
        ("window_funnel(7, '', ts, event = 'a')", "INTERVAL"),
        ("window_funnel(INTERVAL '1 day', '', event, event = 'a')", "timestamp"),
        ("window_funnel(INTERVAL '1 day', '', ts, event)", "condition 1"),
        ("funnel_path(INTERVAL '1 day', 'sideways', ts, event = 'a')", "order type"),
        ("funnel_path(INTERVAL '1 day', 'ordered; exclude 1-0', ts, event = 'a', event = 'b', event = 'x')", "End of range should be greater"),
        ("funnel_path(INTERVAL '1 day', 'unordered; exclude 0-1', ts, event = 'a', event = 'b', event = 'c', event = 'x')", "Partial Exclusions"),
        ("funnel_path(INTERVAL '1 day', 'ordered; exclude 0-1', ts, event = 'x')", "no condition is left"),
    ];
    for (expr, want) in cases {
        let sql = format!("SELECT person, {expr} FROM t GROUP BY person");
        let err = match ctx.sql(&sql).await {
            Err(e) => e.to_string(),
            Ok(df) => match df.collect().await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{expr} was accepted"),
            },
        };
        assert!(err.contains(want), "{expr}: {err}");
    }
    let many = (0..33)
        .map(|i| format!("event = '{i}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT window_funnel(INTERVAL '1 day', '', ts, {many}) FROM t");
    let err = ctx
        .sql(&sql)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("at most 32"), "{err}");
}

// ---------------------------------------------------------------- PostHog

/// `funnel_path` per person: (steps, timestamps in seconds, average and
/// median conversion times).
type Path = (u8, Vec<i64>, Vec<f64>, Vec<f64>);

async fn paths(
    ctx: &SessionContext,
    window: &str,
    options: &str,
    c: &str,
) -> BTreeMap<String, Path> {
    let sql = format!(
        "SELECT person, f['steps'], f['timestamps'], f['conversion_times'], f['conversion_medians'] \
         FROM (SELECT person, funnel_path(INTERVAL '{window}', '{options}', ts, {c}) AS f FROM t GROUP BY person)"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .expect(&sql)
        .collect()
        .await
        .expect(&sql);
    let mut out = BTreeMap::new();
    for b in batches {
        let p = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
        let p = p.as_string::<i32>();
        let steps = b.column(1).as_primitive::<UInt8Type>();
        let ts = b.column(2).as_list::<i32>();
        let avg = b.column(3).as_list::<i32>();
        let med = b.column(4).as_list::<i32>();
        for i in 0..b.num_rows() {
            let t = arrow::compute::cast(&ts.value(i), &DataType::Int64).expect("cast");
            let t: &Int64Array = t.as_primitive();
            let f = |l: ArrayRef| -> Vec<f64> {
                l.as_primitive::<arrow::datatypes::Float64Type>()
                    .values()
                    .to_vec()
            };
            out.insert(
                p.value(i).to_string(),
                (
                    steps.value(i),
                    t.values().iter().map(|v| v / SEC).collect(),
                    f(avg.value(i)),
                    f(med.value(i)),
                ),
            );
        }
    }
    out
}

fn count_at_least(p: &BTreeMap<String, Path>, k: u8) -> usize {
    p.values().filter(|v| v.0 >= k).count()
}

#[tokio::test]
async fn posthog_funnel_persons_scenarios() {
    // Scenarios 1-5: 35 persons; 0-4 do all three steps, 5-14 two, 15-34 one.
    let day = 86_400;
    let mut data = Vec::new();
    for u in 0..35 {
        let p = format!("user_{u}");
        data.push((p.clone(), day, "step one".to_string()));
        if u < 15 {
            data.push((p.clone(), 3 * day, "step two".to_string()));
        }
        if u < 5 {
            data.push((p.clone(), 5 * day, "step three".to_string()));
        }
    }
    let ctx = session(&data, 3).await;
    let c = conds(&["step one", "step two", "step three"]);
    let p = paths(&ctx, "7 days", "ordered", &c).await;
    assert_eq!(count_at_least(&p, 1), 35);
    assert_eq!(count_at_least(&p, 3), 5);
    assert_eq!(p.values().filter(|v| v.0 == 1).count(), 20); // funnel_step = -2
    assert_eq!(p.values().filter(|v| v.0 == 2).count(), 10); // funnel_step = -3
}

#[tokio::test]
async fn posthog_strict_funnel_scenario() {
    // Scenario 17.
    let (s, pv, iv, bl) = (
        "user signed up",
        "$pageview",
        "insight viewed",
        "blaah blaa",
    );
    let people: Vec<(&str, Vec<&str>)> = vec![
        ("p1", vec![s]),
        ("p2", vec![pv, s]),
        ("p3", vec![s, pv, bl, iv]),
        ("p4", vec![iv, bl, pv, s]),
        ("p5", vec![pv, s, bl, pv, iv]),
        ("p6", vec![bl, s, bl, pv]),
        ("p7", vec![bl, s, pv, iv, bl]),
        ("p8", vec![iv, pv]),
    ];
    let mut data = Vec::new();
    for (p, evs) in &people {
        for (i, e) in evs.iter().enumerate() {
            data.push((p.to_string(), 1000 + 60 * i as i64, e.to_string()));
        }
    }
    let ctx = session(&data, 2).await;
    let c = conds(&[s, pv, iv]);
    let p = paths(&ctx, "14 days", "strict", &c).await;
    let at = |k: u8| -> Vec<&str> {
        p.iter()
            .filter(|(_, v)| v.0 >= k)
            .map(|(k, _)| k.as_str())
            .collect()
    };
    assert_eq!(at(1), vec!["p1", "p2", "p3", "p4", "p5", "p6", "p7"]);
    assert_eq!(at(2), vec!["p3", "p7"]);
    assert_eq!(at(3), vec!["p7"]);
}

#[tokio::test]
async fn posthog_conversion_time_scenarios() {
    // Scenario 20, in every order type.
    let h = 3600;
    let d1 = 0;
    let d2 = 86_400;
    let data = [
        rows(
            "person1",
            &[
                (d1 + 12 * h, "sign up"),
                (d1 + 13 * h, "play movie"),
                (d1 + 15 * h, "buy"),
            ],
        ),
        rows(
            "person2",
            &[(d2 + 14 * h, "sign up"), (d2 + 16 * h, "play movie")],
        ),
        rows(
            "person3",
            &[
                (d2 + 14 * h, "sign up"),
                (d2 + 16 * h, "play movie"),
                (d2 + 17 * h, "buy"),
            ],
        ),
    ]
    .concat();
    let ctx = session(&data, 2).await;
    let c = conds(&["sign up", "play movie", "buy"]);
    for order in ["ordered", "strict", "unordered"] {
        let p = paths(&ctx, "7 days", order, &c).await;
        // Step 2: the average over persons of their average.
        let step = |i: usize| -> Vec<f64> {
            p.values()
                .filter(|v| v.2.len() > i)
                .map(|v| v.2[i])
                .collect()
        };
        let s1 = step(0);
        assert_eq!(s1.len(), 3, "{order}");
        assert_eq!(s1.iter().sum::<f64>() / 3.0, 6000.0, "{order}");
        let s2 = step(1);
        assert_eq!(s2.iter().sum::<f64>() / 2.0, 5400.0, "{order}");
        assert_eq!(p["person1"].1, vec![12 * h, 13 * h, 15 * h], "{order}");
    }

    // Scenario 21: incomplete retries do not count.
    let d = 86_400;
    let data = rows(
        "person1",
        &[
            (h, "user signed up"),
            (2 * h, "$pageview"),
            (3 * h, "something else"),
            (2 * d + 4 * h, "user signed up"),
            (2 * d + 5 * h, "$pageview"),
            (3 * d + 7 * h, "user signed up"),
            (3 * d + 10 * h, "$pageview"),
        ],
    );
    let ctx = session(&data, 1).await;
    let c = conds(&["user signed up", "$pageview", "something else"]);
    let p = paths(&ctx, "1 day", "ordered", &c).await;
    assert_eq!(p["person1"].0, 3);
    assert_eq!(p["person1"].2, vec![3600.0, 3600.0]);
    assert_eq!(p["person1"].3, vec![3600.0, 3600.0]);

    // Scenario 22: the window's end is inclusive, in any unit.
    let m = 60;
    let data = [
        rows(
            "A",
            &[(14 * h, "user signed up"), (14 * h + 5 * m, "pageview")],
        ),
        rows("B", &[(14 * h + 3 * m, "user signed up")]),
        rows(
            "C",
            &[(12 * h, "user signed up"), (12 * h + 15 * m, "pageview")],
        ),
    ]
    .concat();
    let ctx = session(&data, 1).await;
    let c = conds(&["user signed up", "pageview"]);
    let p = paths(&ctx, "14 days", "ordered", &c).await;
    assert_eq!((count_at_least(&p, 1), count_at_least(&p, 2)), (3, 2));
    assert_eq!((p["A"].2[0] + p["C"].2[0]) / 2.0, 600.0);
    let p = paths(&ctx, "5 minutes", "ordered", &c).await;
    assert_eq!((count_at_least(&p, 1), count_at_least(&p, 2)), (3, 1));
    assert_eq!(p["A"].2, vec![300.0]);
}

#[tokio::test]
async fn posthog_exclusions_and_months() {
    let data = [
        // Excluded between step 0 and 1: the whole path goes.
        rows("x", &[(0, "a"), (5, "x"), (10, "b")]),
        // The exclusion after the last step does not count.
        rows("ok", &[(0, "a"), (10, "b"), (11, "x")]),
        // A second attempt without the exclusion still counts.
        rows(
            "retry",
            &[(0, "a"), (5, "x"), (10, "b"), (20, "a"), (30, "b")],
        ),
        // Not reaching step 1: the exclusion is looked for until the end of the window.
        rows("open", &[(0, "a"), (50, "x")]),
        rows("outside", &[(0, "a"), (200, "x")]),
    ]
    .concat();
    let ctx = session(&data, 1).await;
    let c = format!("{}, event = 'x'", conds(&["a", "b"]));
    let p = paths(&ctx, "100 seconds", "ordered; exclude 0-1", &c).await;
    assert_eq!(p["x"].0, 0);
    assert_eq!(p["ok"].0, 2);
    assert_eq!(p["retry"].0, 2);
    assert_eq!(p["retry"].1, vec![20, 30]);
    assert_eq!(p["open"].0, 0);
    assert_eq!(p["outside"].0, 1);

    // A window of one month is a calendar month: 2024-01-31 + 1 month =
    // 2024-02-29 (the end is inclusive).
    let jan31 = 1_706_659_200; // 2024-01-31T00:00:00Z
    let feb29 = 1_709_164_800;
    let data = [
        rows("in", &[(jan31, "a"), (feb29, "b")]),
        rows("out", &[(jan31, "a"), (feb29 + 1, "b")]),
    ]
    .concat();
    let ctx = session(&data, 1).await;
    let p = paths(&ctx, "1 month", "ordered", &conds(&["a", "b"])).await;
    assert_eq!((p["in"].0, p["out"].0), (2, 1));
}

// ---------------------------------------------------------------- differential

/// Level by brute force: the longest chain of distinct rows in time order
/// matching conditions 1..k, the last within `window` of the first
/// (timestamps distinct per person).
fn brute_level(events: &[(i64, usize)], steps: &[usize], window: i64) -> u8 {
    fn extend(
        events: &[(i64, usize)],
        steps: &[usize],
        window: i64,
        first: i64,
        from: usize,
        k: usize,
    ) -> usize {
        if k == steps.len() {
            return k;
        }
        let mut best = k;
        for (i, &(t, e)) in events.iter().enumerate().skip(from) {
            if e == steps[k] && t <= first + window {
                best = best.max(extend(events, steps, window, first, i + 1, k + 1));
            }
        }
        best
    }
    let mut best = 0;
    for (i, &(t, e)) in events.iter().enumerate() {
        if e == steps[0] {
            best = best.max(extend(events, steps, window, t, i + 1, 1));
        }
    }
    best as u8
}

/// PostHog's funnel for one person, naively: every anchor, every step by a
/// linear scan; then the best paths' steps and gaps.
fn naive_path(
    events: &[(i64, usize)],
    steps: &[usize],
    window: i64,
    order: &str,
    excl: Option<usize>,
) -> (u8, Vec<f64>) {
    let n = steps.len();
    let mut paths: Vec<Vec<i64>> = Vec::new();
    for (p0, &(t0, e0)) in events.iter().enumerate() {
        let firsts: Vec<usize> = match order {
            "unordered" => (0..n).filter(|&s| steps[s] == e0).collect(),
            _ => {
                if steps[0] == e0 {
                    vec![0]
                } else {
                    vec![]
                }
            }
        };
        for first in firsts {
            let mut times = vec![t0];
            match order {
                "ordered" => {
                    let mut pos = p0;
                    for &s in &steps[1..] {
                        match (pos + 1..events.len()).find(|&q| events[q].1 == s) {
                            Some(q) if events[q].0 <= t0 + window => {
                                times.push(events[q].0);
                                pos = q;
                            }
                            _ => break,
                        }
                    }
                }
                "strict" => {
                    for (i, &s) in steps.iter().enumerate().skip(1) {
                        match events.get(p0 + i) {
                            Some(&(t, e)) if e == s && t <= t0 + window => times.push(t),
                            _ => break,
                        }
                    }
                }
                _ => {
                    for (j, &s) in steps.iter().enumerate() {
                        if j == first {
                            continue;
                        }
                        if let Some(&(t, _)) = events.iter().find(|&&(t, e)| e == s && t > t0) {
                            if t <= t0 + window {
                                times.push(t);
                            }
                        }
                    }
                    times.sort();
                }
            }
            // One exclusion over the whole funnel.
            if let Some(x) = excl {
                let a = times[0];
                let b = if times.len() == n {
                    times[n - 1]
                } else {
                    a + window
                };
                if events.iter().any(|&(t, e)| e == x && t > a && t < b) {
                    continue;
                }
            }
            paths.push(times);
        }
    }
    let best = paths.iter().map(|p| p.len()).max().unwrap_or(0);
    let kept: Vec<&Vec<i64>> = paths.iter().filter(|p| p.len() == best).collect();
    let avgs = (1..best)
        .map(|i| kept.iter().map(|p| (p[i] - p[i - 1]) as f64).sum::<f64>() / kept.len() as f64)
        .collect();
    (best as u8, avgs)
}

/// Generated persons: per person a list of (seconds, event index) with
/// distinct, increasing timestamps.
fn persons() -> impl Strategy<Value = Vec<Vec<(i64, usize)>>> {
    prop::collection::vec(
        prop::collection::vec((1i64..20, 0usize..4), 0..12).prop_map(|evs| {
            let mut t = 0;
            evs.into_iter()
                .map(|(dt, e)| {
                    t += dt;
                    (t, e)
                })
                .collect()
        }),
        1..8,
    )
}

fn table(people: &[Vec<(i64, usize)>]) -> Vec<Row> {
    let mut out = Vec::new();
    for (p, evs) in people.iter().enumerate() {
        for &(t, e) in evs {
            out.push((format!("p{p}"), t, format!("e{e}")));
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// window_funnel (default and strict_increase) against brute force,
    /// through one and several partitions (merged partial states).
    #[test]
    fn window_funnel_matches_brute_force(
        people in persons(),
        steps in prop::collection::vec(0usize..4, 1..5),
        window in 0i64..60,
        partitions in 1usize..4,
        increase in any::<bool>(),
    ) {
        let rt = runtime();
        let data = table(&people);
        let got = rt.block_on(async {
            let ctx = session(&data, partitions).await;
            let c = steps.iter().map(|s| format!("event = 'e{s}'")).collect::<Vec<_>>().join(", ");
            let mode = if increase { "strict_increase" } else { "" };
            per_person_u8(&ctx, &format!("window_funnel(INTERVAL '{window} seconds', '{mode}', ts, {c})")).await
        });
        for (p, evs) in people.iter().enumerate() {
            if evs.is_empty() { continue; }
            let want = brute_level(evs, &steps, window);
            prop_assert_eq!(got[&format!("p{p}")], want, "person {} events {:?}", p, evs);
        }
    }

    /// funnel_path in every order type, with and without an exclusion,
    /// against the naive scan.
    #[test]
    fn funnel_path_matches_naive(
        people in persons(),
        steps in prop::collection::vec(0usize..4, 1..5),
        window in 0i64..60,
        order in prop::sample::select(vec!["ordered", "strict", "unordered"]),
        exclude in any::<bool>(),
        partitions in 1usize..4,
    ) {
        // The exclusion is an event that is not a step (PostHog refuses one that is).
        let excl = (0..4).find(|e| !steps.contains(e)).filter(|_| exclude && steps.len() > 1);
        let rt = runtime();
        let data = table(&people);
        let got = rt.block_on(async {
            let ctx = session(&data, partitions).await;
            let mut c = steps.iter().map(|s| format!("event = 'e{s}'")).collect::<Vec<_>>();
            let mut options = order.to_string();
            if let Some(x) = excl {
                c.push(format!("event = 'e{x}'"));
                options.push_str(&format!("; exclude 0-{}", steps.len() - 1));
            }
            paths(&ctx, &format!("{window} seconds"), &options, &c.join(", ")).await
        });
        for (p, evs) in people.iter().enumerate() {
            if evs.is_empty() { continue; }
            let (want_steps, want_avgs) = naive_path(evs, &steps, window, order, excl);
            let g = &got[&format!("p{p}")];
            prop_assert_eq!(g.0, want_steps, "person {} events {:?}", p, evs);
            prop_assert_eq!(g.2.len(), want_avgs.len(), "person {} events {:?}", p, evs);
            for (a, b) in g.2.iter().zip(&want_avgs) {
                prop_assert!((a - b).abs() < 1e-9, "person {} events {:?}: {:?} vs {:?}", p, evs, g.2, want_avgs);
            }
        }
    }
}

/// The 3-step funnel written with SQL window functions, as PostHog's
/// legacy queries do (the earliest next step after each step-1 row), the
/// baseline of the benchmark; equal to window_funnel with
/// `strict_increase` on generated data.
pub const SQL_WINDOW_FUNNEL: &str = "
WITH e AS (
  SELECT person, ts, event = 'e0' AS c1, event = 'e1' AS c2, event = 'e2' AS c3
  FROM t WHERE event IN ('e0', 'e1', 'e2')
), l1 AS (
  SELECT person, ts, c1,
    MIN(CASE WHEN c2 THEN ts END) OVER w AS t2,
    MIN(CASE WHEN c3 THEN ts END) OVER w AS t3
  FROM e
  WINDOW w AS (PARTITION BY person ORDER BY ts ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
), l2 AS (
  SELECT person, ts, c1, t2, CASE WHEN t3 <= t2 THEN NULL ELSE t3 END AS t3 FROM l1
), l3 AS (
  SELECT person, ts, c1, t2,
    MIN(t3) OVER (PARTITION BY person ORDER BY ts ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS t3
  FROM l2
)
SELECT person, MAX(CASE
    WHEN t2 IS NOT NULL AND t2 <= ts + INTERVAL '30 seconds' THEN
      CASE WHEN t3 IS NOT NULL AND t3 > t2 AND t3 <= ts + INTERVAL '30 seconds' THEN 3 ELSE 2 END
    ELSE 1 END) AS level
FROM l3 WHERE c1 GROUP BY person";

#[test]
fn window_funnel_matches_the_sql_window_function_funnel() {
    let rt = runtime();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&persons(), |people| {
            let data = table(&people);
            let (got, want) = rt.block_on(async {
                let ctx = session(&data, 2).await;
                let got = per_person_u8(
                    &ctx,
                    "window_funnel(INTERVAL '30 seconds', 'strict_increase', ts, event = 'e0', event = 'e1', event = 'e2')",
                )
                .await;
                let b = ctx.sql(SQL_WINDOW_FUNNEL).await.expect("plan").collect().await.expect("run");
                let mut want = BTreeMap::new();
                for b in b {
                    let p = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
                    let l = arrow::compute::cast(b.column(1), &DataType::UInt8).expect("cast");
                    for i in 0..b.num_rows() {
                        want.insert(p.as_string::<i32>().value(i).to_string(), l.as_primitive::<UInt8Type>().value(i));
                    }
                }
                (got, want)
            });
            for (p, level) in &got {
                prop_assert_eq!(*level, want.get(p).copied().unwrap_or(0), "person {}", p);
            }
            Ok(())
        })
        .expect("differential");
}
