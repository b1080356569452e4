//! The paths' unit tests, and a model of PostHog's array pipeline that
//! the walk is compared with over random sessions.
use super::*;
use crate::error::AppError;

fn spec(f: Value) -> PathsSpec {
    let q = json!({"kind": "PathsQuery", "pathsFilter": f});
    let Value::Object(q) = q else { unreachable!() };
    PathsSpec::parse(&q, chrono::Utc::now()).expect("spec")
}

fn item(s: &PathsSpec, event: &str, url: Option<&str>, screen: Option<&str>) -> String {
    s.item(event, url, screen).expect("item")
}

fn evs(items: &[(i64, &str)]) -> Vec<(i64, String)> {
    items
        .iter()
        .map(|(t, s)| (t * 1_000_000, s.to_string()))
        .collect()
}

fn steps(spec: &PathsSpec, items: &[(i64, &str)]) -> Vec<Vec<String>> {
    let e = evs(items);
    let mut out: Vec<Vec<String>> = Vec::new();
    walk(spec, &e, |s| {
        if s.index == 1 {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push(s.item.to_string());
        }
    });
    out
}

#[test]
fn items_as_posthog_makes_them() {
    let s = spec(json!({}));
    assert_eq!(
        item(&s, "$pageview", Some("https://a.com/x/"), None),
        "https://a.com/x"
    );
    // `.` matches a line break in ClickHouse's pattern too.
    assert_eq!(item(&s, "$pageview", Some("a\n/"), None), "a\n");
    assert_eq!(item(&s, "$pageview", Some("/"), None), "/");
    assert_eq!(item(&s, "$pageview", Some("//"), None), "/");
    assert_eq!(item(&s, "$pageview", None, None), "");
    assert_eq!(item(&s, "$screen", None, Some("Home")), "Home");
    assert_eq!(item(&s, "$screen", None, None), "");
    assert_eq!(item(&s, "signup", Some("/x"), None), "signup");
    // Only the asked types make their items.
    let s = spec(json!({"includeEventTypes": ["custom_event"]}));
    assert_eq!(item(&s, "$pageview", Some("/x"), None), "$pageview");
    // Excluded with no types: the pageview is its name.
    let s = spec(json!({"excludeEvents": ["$pageview"]}));
    assert_eq!(item(&s, "$pageview", Some("/x"), None), "$pageview");
    assert!(!s.excluded("$pageview"));
    let s = spec(json!({"includeEventTypes": ["$pageview"], "excludeEvents": ["/x"]}));
    assert!(s.excluded("/x"));
    // Cleaning in order, then the first grouping that matches anywhere.
    let s = spec(json!({
        "localPathCleaningFilters": [
            {"regex": "/user/\\d+", "alias": "/user/<id>"},
            {"regex": "(\\w+)\\.com", "alias": "\\1.org $"},
        ],
        "pathGroupings": ["*/pricing*", "/user/*"],
    }));
    assert_eq!(item(&s, "$pageview", Some("/user/42/"), None), "/user/*");
    assert_eq!(item(&s, "$pageview", Some("a.com/x"), None), "a.org $/x");
    assert_eq!(
        item(&s, "$pageview", Some("x/pricing/y"), None),
        "*/pricing*"
    );
    // Of two groupings that match, the one whose match ends first.
    let s = spec(json!({"pathGroupings": ["*/api*", "/docs/*"]}));
    assert_eq!(item(&s, "$pageview", Some("/docs/api/x"), None), "/docs/*");
    // Wildcards in the middle; the parts in order; no regex syntax.
    let s = spec(json!({"pathGroupings": ["/a*c", "x.y", "/q*"]}));
    assert_eq!(item(&s, "$pageview", Some("/abbc/z"), None), "/a*c");
    assert_eq!(item(&s, "$pageview", Some("/cba"), None), "/cba");
    assert_eq!(item(&s, "$pageview", Some("/xzy"), None), "/xzy");
    assert_eq!(item(&s, "$pageview", Some("/x.y"), None), "x.y");
    assert_eq!(item(&s, "$pageview", Some("/q\n"), None), "/q*");
}

#[test]
fn sessions_runs_and_limits() {
    let s = spec(json!({}));
    // Repeats collapse to their last; a 30-minute pause splits.
    assert_eq!(
        steps(
            &s,
            &[(0, "/"), (1, "/"), (2, "/a"), (1802, "/b"), (1803, "/c")]
        ),
        vec![vec!["/", "/a"], vec!["/b", "/c"]]
    );
    // Just under 30 minutes stays one session.
    assert_eq!(steps(&s, &[(0, "/"), (1799, "/a")]), vec![vec!["/", "/a"]]);
    // An empty last item is dropped; an empty one inside stays.
    assert_eq!(
        steps(&s, &[(0, "/"), (1, ""), (2, "/a"), (3, "")]),
        vec![vec!["/", "", "/a"]]
    );
    // The first five steps.
    let long: Vec<(i64, &str)> = ["1", "2", "3", "4", "5", "6", "7"]
        .iter()
        .enumerate()
        .map(|(i, s)| (i as i64, *s))
        .collect();
    assert_eq!(steps(&s, &long), vec![vec!["1", "2", "3", "4", "5"]]);
    // An end point: the five steps up to its first occurrence.
    let e = spec(json!({"endPoint": "7"}));
    assert_eq!(steps(&e, &long), vec![vec!["3", "4", "5", "6", "7"]]);
    // A start point: from its first occurrence; a trailing `/` of a
    // single point is not part of it.
    let st = spec(json!({"startPoint": "3/"}));
    assert_eq!(steps(&st, &long), vec![vec!["3", "4", "5", "6", "7"]]);
    let none = spec(json!({"startPoint": "9"}));
    assert!(steps(&none, &long).is_empty());
    // Both: cut in the middle when longer than the limit.
    let both = spec(json!({"startPoint": "1", "endPoint": "7"}));
    assert_eq!(steps(&both, &long), vec![vec!["1", "2", "...", "6", "7"]]);
    let both = spec(json!({"startPoint": "2", "endPoint": "4"}));
    assert_eq!(steps(&both, &long), vec![vec!["2", "3", "4"]]);
    // The end is looked for after the start.
    let both = spec(json!({"startPoint": "4", "endPoint": "2"}));
    assert!(steps(&both, &long).is_empty());
}

#[test]
fn edges_ordered_limited_and_reachable() {
    let mut s = spec(json!({}));
    let mut tally = HashMap::new();
    let mut add = |a: &str, b: &str, n: u64| {
        tally.insert((a.to_string(), b.to_string()), (n, 1_000_000 * n as i128));
    };
    add("1_/", "2_/a", 3);
    add("1_/", "2_/b", 3);
    add("2_/a", "3_/c", 1);
    add("2_/x", "3_/y", 5);
    let e = edges(&s, tally.clone());
    let names: Vec<(&str, &str, u64)> = e
        .iter()
        .map(|e| (e.source.as_str(), e.target.as_str(), e.value))
        .collect();
    // `2_/x` is not reachable from a first step.
    assert_eq!(
        names,
        vec![("1_/", "2_/a", 3), ("1_/", "2_/b", 3), ("2_/a", "3_/c", 1)]
    );
    assert_eq!(e[0].average_conversion_time, 1000.0);
    s.min_weight = Some(2);
    assert_eq!(edges(&s, tally.clone()).len(), 2);
    s.min_weight = None;
    // The limit comes before the reachability check, as PostHog's: the
    // largest edge alone is unreachable, so nothing is left.
    s.edge_limit = 1;
    assert!(edges(&s, tally.clone()).is_empty());
    s.edge_limit = 2;
    let e = edges(&s, tally);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].source.as_str(), e[0].value), ("1_/", 3));
}

#[test]
fn bad_filters_are_refused() {
    for (f, says) in [
        (json!({"includeEventTypes": ["hogql"]}), "hogql"),
        (json!({"includeEventTypes": ["nope"]}), "nope"),
        (json!({"stepLimit": 1000}), "stepLimit"),
        (json!({"edgeLimit": -1}), "edgeLimit"),
        (
            json!({"localPathCleaningFilters": [{"regex": "("}]}),
            "localPathCleaningFilters",
        ),
        (json!({"unknown": 1}), "unknown"),
        (json!({"startPoint": 3}), "startPoint"),
    ] {
        let q = json!({"kind": "PathsQuery", "pathsFilter": f});
        let Value::Object(q) = q else { unreachable!() };
        match PathsSpec::parse(&q, chrono::Utc::now()) {
            Err(AppError::InvalidQuery(m)) => assert!(m.contains(says), "{f}: {m}"),
            other => panic!("{f}: {other:?}"),
        }
    }
    let q = json!({"kind": "PathsQuery", "funnelPathsFilter": {"funnelStep": 1}});
    let Value::Object(q) = q else { unreachable!() };
    match PathsSpec::parse(&q, chrono::Utc::now()) {
        Err(AppError::InvalidQuery(m)) => assert!(m.contains("funnelPathType"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn clickhouse_replacements() {
    assert_eq!(spec::replacement("\\1-x", 2).expect("ok"), "${1}-x");
    assert_eq!(spec::replacement("a$b", 1).expect("ok"), "a$$b");
    assert_eq!(spec::replacement("a\\\\b", 1).expect("ok"), "a\\b");
    assert_eq!(spec::replacement("\\x\\$", 1).expect("ok"), "x$$");
    assert_eq!(spec::replacement("<id>", 1).expect("ok"), "<id>");
    // A group the pattern does not have.
    assert!(spec::replacement("\\2", 2).is_err());
}

#[test]
fn a_cleaning_rule_cannot_grow_an_item_without_bound() {
    // Each rule doubles every character: 2^20 times the item.
    let rules: Vec<Value> = (0..20)
        .map(|_| json!({"regex": ".", "alias": "\\0\\0"}))
        .collect();
    let s = spec(json!({"localPathCleaningFilters": rules}));
    match s.item("$pageview", Some("/a/b/c"), None) {
        Err(AppError::InvalidQuery(m)) => assert!(m.contains("longer than"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Under the cap it applies; an empty pattern changes nothing, as
    // ClickHouse's.
    let s = spec(json!({"localPathCleaningFilters": [
        {"regex": ".", "alias": "\\0\\0"}, {"regex": "", "alias": "x"}]}));
    assert_eq!(item(&s, "$pageview", Some("/ab"), None), "//aabb");
    // An item already longer than the cap may stay as long.
    let long = format!("/{}", "a".repeat(super::spec::MAX_ITEM_BYTES));
    let s = spec(json!({"localPathCleaningFilters": [{"regex": "a", "alias": "b"}]}));
    assert_eq!(item(&s, "$pageview", Some(&long), None).len(), long.len());
    // A hogql expression is refused where it would make the items.
    let q = json!({"kind": "PathsQuery", "pathsFilter": {"pathsHogQLExpression": "event"}});
    let Value::Object(q) = q else { unreachable!() };
    assert!(PathsSpec::parse(&q, chrono::Utc::now()).is_err());
    // Not where it is read by nothing.
    spec(json!({"pathsHogQLExpression": "event", "includeEventTypes": ["$pageview"]}));
    spec(json!({"pathsHogQLExpression": "event", "excludeEvents": ["hogql"]}));
}

/// PostHog's per-person query, function by function as ClickHouse
/// computes it (1-based arrays, `arraySlice`'s negative offsets), for the
/// comparison below: (index, item, previous item, µs since it, drop-off
/// key) of each row.
mod model {
    type Row = (usize, String, Option<String>, i64, String);

    fn difference(t: &[i64]) -> Vec<i64> {
        (0..t.len())
            .map(|i| if i == 0 { 0 } else { t[i] - t[i - 1] })
            .collect()
    }

    /// `arraySlice(a, offset, length)`.
    fn slice<T: Clone>(a: &[T], offset: i64, length: Option<i64>) -> Vec<T> {
        let n = a.len() as i64;
        let start = if offset > 0 {
            offset - 1
        } else if offset < 0 {
            (n + offset).max(0)
        } else {
            return Vec::new();
        };
        let end = match length {
            None => n,
            Some(l) if l >= 0 => (start + l).min(n),
            Some(l) => (n + l).max(start),
        };
        if start >= n {
            return Vec::new();
        }
        a[start as usize..end as usize].to_vec()
    }

    /// `indexOf`: 1-based, 0 when absent.
    fn index_of(a: &[String], x: &str) -> usize {
        a.iter().position(|s| s == x).map_or(0, |i| i + 1)
    }

    pub fn rows(
        events: &[(i64, String)],
        start: Option<&str>,
        end: Option<&str>,
        limit: usize,
    ) -> Vec<Row> {
        let times: Vec<i64> = events.iter().map(|e| e.0).collect();
        let diffs = difference(&times);
        // arraySplit(x -> if(x.3 < 1800, 0, 1), paths_tuple)
        let mut sessions: Vec<Vec<(String, i64)>> = Vec::new();
        for (i, (t, item)) in events.iter().enumerate() {
            if i == 0 || diffs[i] >= 1_800_000_000 {
                sessions.push(Vec::new());
            }
            if let Some(s) = sessions.last_mut() {
                s.push((item.clone(), *t));
            }
        }
        let target = end.or(start).map(|t| {
            if t.len() > 1 && t.ends_with('/') {
                t[..t.len() - 1].to_string()
            } else {
                t.to_string()
            }
        });
        let l = limit as i64;
        let mut out = Vec::new();
        for s in sessions {
            let path_basic: Vec<String> = s.iter().map(|x| x.0.clone()).collect();
            let time: Vec<i64> = s.iter().map(|x| x.1).collect();
            // arrayPopFront(arrayPushBack(path_basic, ''))
            let mut shifted = path_basic.clone();
            shifted.push(String::new());
            shifted.remove(0);
            let mapping: Vec<bool> = path_basic
                .iter()
                .zip(&shifted)
                .map(|(x, y)| x != y)
                .collect();
            let compact: Vec<String> = path_basic
                .iter()
                .zip(&mapping)
                .filter(|(_, m)| **m)
                .map(|(x, _)| x.clone())
                .collect();
            let timings: Vec<i64> = time
                .iter()
                .zip(&mapping)
                .filter(|(_, m)| **m)
                .map(|(x, _)| *x)
                .collect();
            let (path, times) = match (start, end) {
                (Some(st), Some(en)) => {
                    let si = index_of(&compact, st);
                    let (sp, stt) = if si > 0 {
                        (
                            slice(&compact, si as i64, None),
                            slice(&timings, si as i64, None),
                        )
                    } else {
                        (compact.clone(), timings.clone())
                    };
                    let ei = index_of(&sp, en);
                    if si == 0 || ei == 0 {
                        continue;
                    }
                    // arrayResize(start_filtered, end_target_index)
                    let fp: Vec<String> = sp[..ei].to_vec();
                    let ft: Vec<i64> = stt[..ei].to_vec();
                    if fp.len() as i64 > l {
                        let h = l / 2;
                        let mut p = slice(&fp, 1, Some(h));
                        p.push("...".to_string());
                        p.extend(slice(&fp, -h, Some(h)));
                        let mut t = slice(&ft, 1, Some(h));
                        t.push(ft[h as usize]);
                        t.extend(slice(&ft, -h, Some(h)));
                        (p, t)
                    } else {
                        (fp, ft)
                    }
                }
                _ => {
                    let ti = target.as_deref().map_or(0, |t| index_of(&compact, t));
                    if target.is_some() && ti == 0 {
                        continue;
                    }
                    let (fp, ft) = if ti > 0 {
                        if end.is_some() {
                            (compact[..ti].to_vec(), timings[..ti].to_vec())
                        } else {
                            (
                                slice(&compact, ti as i64, None),
                                slice(&timings, ti as i64, None),
                            )
                        }
                    } else {
                        (compact.clone(), timings.clone())
                    };
                    if end.is_some() {
                        (slice(&fp, -l, None), slice(&ft, -l, None))
                    } else {
                        (slice(&fp, 1, Some(l)), slice(&ft, 1, Some(l)))
                    }
                }
            };
            let Some(last) = path.last() else { continue };
            let dropoff = format!("{}_{last}", path.len());
            let diffs = difference(&times);
            // arrayPopBack(arrayPushFront(limited_path, ''))
            let mut prev = vec![String::new()];
            prev.extend(path.iter().cloned());
            prev.pop();
            for (i, p) in path.iter().enumerate() {
                let idx = i + 1;
                out.push((
                    idx,
                    p.clone(),
                    (idx > 1).then(|| prev[i].clone()),
                    diffs[i],
                    dropoff.clone(),
                ));
            }
        }
        out
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

    /// The walk gives PostHog's rows for any session, start, end and
    /// limit.
    #[test]
    fn the_walk_is_posthogs_pipeline(
        gaps in proptest::collection::vec(
            (proptest::sample::select(vec![0i64, 1, 60, 1_799, 1_800, 4_000]), 0usize..6),
            0..14,
        ),
        start in proptest::sample::select(vec![None, Some("/a"), Some("/b"), Some("/a/"), Some("/")]),
        end in proptest::sample::select(vec![None, Some("/b"), Some("/c"), Some("/"), Some("/c/")]),
        limit in 1usize..8,
    ) {
        let items = ["", "/", "/a", "/b", "/c", "..."];
        let mut t = 0;
        let events: Vec<(i64, String)> = gaps
            .iter()
            .map(|(g, i)| {
                t += g * 1_000_000;
                (t, items[*i].to_string())
            })
            .collect();
        let mut f = serde_json::Map::new();
        if let Some(s) = start {
            f.insert("startPoint".into(), json!(s));
        }
        if let Some(e) = end {
            f.insert("endPoint".into(), json!(e));
        }
        f.insert("stepLimit".into(), json!(limit));
        let s = spec(Value::Object(f));
        let mut got = Vec::new();
        walk(&s, &events, |st| {
            got.push((
                st.index,
                st.item.to_string(),
                st.prev.map(str::to_string),
                st.since_prev,
                format!("{}_{}", st.dropoff.0, st.dropoff.1),
            ));
        });
        proptest::prop_assert_eq!(got, model::rows(&events, start, end, limit));
    }
}

#[test]
fn a_funnels_step_bounds_its_actors_events() {
    let funnel = |kind: &str, step: i64| {
        let q = json!({"kind": "PathsQuery", "funnelPathsFilter": {
            "funnelPathType": kind, "funnelStep": step,
            "funnelSource": {"kind": "FunnelsQuery",
                "series": [{"kind": "EventsNode", "event": "a"}, {"kind": "EventsNode", "event": "b"},
                           {"kind": "EventsNode", "event": "c"}],
                "funnelsFilter": {"funnelWindowInterval": 2, "funnelWindowIntervalUnit": "day"}}}});
        let Value::Object(q) = q else { unreachable!() };
        PathsSpec::parse(&q, chrono::Utc::now()).map(|s| s.funnel.expect("funnel"))
    };
    let day = 86_400_000_000i64;
    let times = [10, 20, 30];
    let f = funnel("funnel_path_after_step", 2).expect("after");
    assert_eq!(f.bounds(&times), Some((20, i64::MAX)));
    assert_eq!(f.session_gap(), 2 * day);
    // Dropped off before step 3: from the window's end after step 2.
    let f = funnel("funnel_path_after_step", -3).expect("dropoff");
    assert_eq!(f.bounds(&times[..2]), Some((20 + 2 * day, i64::MAX)));
    let f = funnel("funnel_path_before_step", 3).expect("before");
    assert_eq!(f.bounds(&times), Some((i64::MIN, 30)));
    let f = funnel("funnel_path_between_steps", 3).expect("between");
    assert_eq!(f.bounds(&times), Some((20, 30)));
    // An actor without the step has no bounds.
    assert_eq!(f.bounds(&times[..2]), None);
    // Between of the first step: from the epoch, as PostHog's.
    let f = funnel("funnel_path_between_steps", 1).expect("between 1");
    assert_eq!(f.bounds(&times), Some((0, 10)));
    let f = funnel("funnel_path_between_steps", -2).expect("between -2");
    assert_eq!(f.bounds(&times[..1]), Some((0, 10)));
    // A unit without a length: the funnel's window is 14 hours, the
    // paths' sessions are cut at 14 days, as PostHog's.
    let q = json!({"kind": "PathsQuery", "funnelPathsFilter": {
        "funnelPathType": "funnel_path_after_step", "funnelStep": 1,
        "funnelSource": {"kind": "FunnelsQuery",
            "series": [{"kind": "EventsNode", "event": "a"}, {"kind": "EventsNode", "event": "b"}],
            "funnelsFilter": {"funnelWindowIntervalUnit": "hour"}}}});
    let Value::Object(q) = q else { unreachable!() };
    let f = PathsSpec::parse(&q, chrono::Utc::now())
        .expect("spec")
        .funnel
        .expect("funnel");
    assert_eq!(f.funnel.window.length, 14 * 3_600_000_000);
    assert_eq!(f.session_gap(), 14 * day);
    assert!(funnel("funnel_path_after_step", 4).is_err());
    assert!(funnel("funnel_path_after_step", -1).is_err());
    assert!(funnel("funnel_path_after_step", 0).is_err());
}

/// PostHog's `to_query` and `validate_results` over the model's rows:
/// edges grouped, weighed, ordered, limited, then kept when reachable from
/// a first step.
fn model_edges(
    actors: &[Vec<(i64, String)>],
    (start, end, limit): (Option<&str>, Option<&str>, usize),
    (min, max, edge_limit): (Option<i64>, Option<i64>, usize),
) -> Vec<(String, String, u64, f64)> {
    let mut groups: Vec<((String, String), (u64, i64))> = Vec::new();
    for a in actors {
        for (idx, item, prev, diff, _) in model::rows(a, start, end, limit) {
            let Some(prev) = prev.filter(|_| idx > 1) else {
                continue;
            };
            let key = (format!("{}_{prev}", idx - 1), format!("{idx}_{item}"));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => {
                    v.0 += 1;
                    v.1 += diff;
                }
                None => groups.push((key, (1, diff))),
            }
        }
    }
    let mut rows: Vec<(String, String, u64, f64)> = groups
        .into_iter()
        .filter(|(_, (n, _))| {
            min.is_none_or(|m| *n as i64 >= m) && max.is_none_or(|m| *n as i64 <= m)
        })
        .map(|((s, t), (n, sum))| (s, t, n, sum as f64 / n as f64 / 1000.0))
        .collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    rows.truncate(edge_limit);
    // validate_results, as written in Python.
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<String> = rows
        .iter()
        .filter(|r| r.0.starts_with("1_"))
        .map(|r| r.0.clone())
        .collect();
    while let Some(node) = stack.pop() {
        seen.insert(node.clone());
        for r in rows.iter().filter(|r| r.0 == node) {
            if !seen.contains(&r.1) {
                stack.push(r.1.clone());
            }
        }
    }
    rows.retain(|r| seen.contains(&r.0));
    rows
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// The counted edges of several actors are PostHog's, whatever the
    /// weights and limits.
    #[test]
    fn the_edges_are_posthogs(
        actors in proptest::collection::vec(
            proptest::collection::vec(
                (proptest::sample::select(vec![0i64, 1, 60, 1_800]), 0usize..5),
                0..10,
            ),
            1..6,
        ),
        start in proptest::sample::select(vec![None, Some("/a")]),
        end in proptest::sample::select(vec![None, Some("/c")]),
        limit in 1usize..6,
        min in proptest::sample::select(vec![None, Some(2i64)]),
        max in proptest::sample::select(vec![None, Some(2i64), Some(-1)]),
        edge_limit in 1usize..8,
    ) {
        let items = ["", "/", "/a", "/b", "/c"];
        let actors: Vec<Vec<(i64, String)>> = actors
            .iter()
            .map(|evs| {
                let mut t = 0;
                evs.iter()
                    .map(|(g, i)| {
                        t += g * 1_000_000;
                        (t, items[*i].to_string())
                    })
                    .collect()
            })
            .collect();
        let mut f = serde_json::Map::new();
        if let Some(s) = start {
            f.insert("startPoint".into(), json!(s));
        }
        if let Some(e) = end {
            f.insert("endPoint".into(), json!(e));
        }
        f.insert("stepLimit".into(), json!(limit));
        f.insert("edgeLimit".into(), json!(edge_limit));
        if let Some(m) = min {
            f.insert("minEdgeWeight".into(), json!(m));
        }
        if let Some(m) = max {
            f.insert("maxEdgeWeight".into(), json!(m));
        }
        let s = spec(Value::Object(f));
        let mut t = Tally::default();
        for a in &actors {
            t.add(&s, a);
        }
        let got: Vec<(String, String, u64, f64)> = edges(&s, t.into_counts())
            .into_iter()
            .map(|e| (e.source, e.target, e.value, e.average_conversion_time))
            .collect();
        proptest::prop_assert_eq!(got, model_edges(&actors, (start, end, limit), (min, max, edge_limit)));
    }
}
