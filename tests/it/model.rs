//! Model-based test: random append / delete / delete_many / delete by
//! predicate (event, property, day window; with or without an undo
//! window) / cancel / end of the undo windows / retention sweep / flush /
//! compact (purge and merge) / GC / drop project / query / reopen
//! sequences against an in-memory model; every query equals the model,
//! and after a manual compaction every deletion request is verified
//! (those inside an undo window excepted).

use std::collections::{BTreeMap, BTreeSet};

use elide::store::DeleteSpec;
use proptest::prelude::*;

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, u8, u8)>),                    // (distinct id, project, day)
    Delete(u8, Vec<u8>),                          // project, distinct ids
    DeleteMany(Vec<(u8, Vec<u8>)>), // several specs (projects may repeat, ids overlap), one commit
    DeleteEvents(u8, bool, u8, Option<u8>, bool), // project, event = signup?, $browser (none / = Chrome / is_not Chrome), day, undo window?
    Cancel(u8),                                   // the n-th (mod count) request in its undo window
    UndoWindowsEnd, // every undo window ends: those requests become tombstones
    Flush,
    Compact,
    CompactProject(u8),
    Gc,
    Drop(u8),
    Reopen,
    Retention(u8, u8), // project, days kept (the clock is T0 + 3 days: 0 expires days 0..3)
    Query,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 1u8..3, 0u8..3), 1..30).prop_map(Op::Append),
        2 => (1u8..3, prop::collection::vec(0u8..6, 1..3)).prop_map(|(p, d)| Op::Delete(p, d)),
        1 => prop::collection::vec((1u8..3, prop::collection::vec(0u8..6, 1..3)), 1..4).prop_map(Op::DeleteMany),
        3 => (1u8..3, any::<bool>(), 0u8..3, prop::option::of(0u8..3), any::<bool>()).prop_map(|(p, e, b, d, u)| {
            // At least one condition: an empty predicate is refused.
            Op::DeleteEvents(p, e || (b == 0 && d.is_none()), b, d, u)
        }),
        1 => any::<u8>().prop_map(Op::Cancel),
        1 => Just(Op::UndoWindowsEnd),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => (1u8..3).prop_map(Op::CompactProject),
        1 => Just(Op::Gc),
        1 => (1u8..3).prop_map(Op::Drop),
        1 => Just(Op::Reopen),
        1 => (1u8..3, 0u8..4).prop_map(|(p, d)| Op::Retention(p, d)),
        2 => Just(Op::Query),
    ]
}

/// Model: row number -> (distinct id, project, day); rows deleted are
/// removed. Row n's event is `signup` when 3 divides n and its `$browser`
/// is `Chrome` when n is even (`common::row`). Requests in their undo
/// window hold their rows apart (request id -> project and rows): a row
/// is visible when it is in `rows` and no such request holds it.
#[derive(Default)]
struct Model {
    rows: BTreeMap<u64, (String, i64, i64)>,
    held: BTreeMap<u64, (i64, BTreeSet<u64>)>,
}

impl Model {
    fn visible(&self) -> impl Iterator<Item = (&u64, &(String, i64, i64))> {
        self.rows
            .iter()
            .filter(|(n, _)| !self.held.values().any(|(_, h)| h.contains(n)))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let mut store = open(dir.path());
        let mut model = Model::default();
        let mut n = 0u64;
        for op in ops {
            match op {
                Op::Append(rows) => {
                    let rows: Vec<_> = rows.into_iter().map(|(d, p, day)| {
                        n += 1;
                        model.rows.insert(n, (format!("d{d}"), i64::from(p), i64::from(day)));
                        row(n, &format!("d{d}"), i64::from(p), i64::from(day))
                    }).collect();
                    append(&store, &rows);
                }
                Op::Delete(p, ids) => {
                    let ids: Vec<String> = ids.into_iter().map(|d| format!("d{d}")).collect();
                    let before = model.rows.len();
                    model.rows.retain(|_, (d, proj, _)| !(*proj == i64::from(p) && ids.contains(d)));
                    let o = store.delete(DeleteSpec::ids(i64::from(p), ids)).unwrap();
                    prop_assert_eq!(o.rows_hidden as usize, before - model.rows.len());
                }
                Op::DeleteMany(specs) => {
                    let before = model.rows.len();
                    let version = store.status().unwrap().version;
                    let specs: Vec<DeleteSpec> = specs.into_iter().map(|(p, ids)| {
                        let ids: Vec<String> = ids.into_iter().map(|d| format!("d{d}")).collect();
                        model.rows.retain(|_, (d, proj, _)| !(*proj == i64::from(p) && ids.contains(d)));
                        DeleteSpec::ids(i64::from(p), ids)
                    }).collect();
                    let n_specs = specs.len();
                    let out = store.delete_many(specs).unwrap();
                    prop_assert_eq!(out.len(), n_specs);
                    prop_assert_eq!(out.iter().map(|o| o.rows_hidden as usize).sum::<usize>(), before - model.rows.len());
                    prop_assert_eq!(store.status().unwrap().version, version + 1, "one commit");
                }
                Op::DeleteEvents(p, signup, browser, day, undo) => {
                    use elide::store::predicate::{EventPredicate, PropertyFilter, PropertyOperator};
                    let mut pred = EventPredicate::default();
                    if signup {
                        pred.events = vec!["signup".into()];
                    }
                    if browser > 0 {
                        pred.properties = vec![PropertyFilter {
                            key: "$browser".into(),
                            operator: if browser == 1 { PropertyOperator::Exact } else { PropertyOperator::IsNot },
                            value: serde_json::json!("Chrome"),
                        }];
                    }
                    if let Some(d) = day {
                        pred.after_us = Some(T0 + i64::from(d) * DAY);
                        pred.before_us = Some(T0 + i64::from(d + 1) * DAY);
                    }
                    let matches = |n: u64, day_of: i64| {
                        (!signup || n.is_multiple_of(3))
                            && match browser { 1 => n.is_multiple_of(2), 2 => !n.is_multiple_of(2), _ => true }
                            && day.is_none_or(|d| i64::from(d) == day_of)
                    };
                    // Rows without tombstone bits (held by an undo window
                    // or not hidden at all) are what a request newly hides.
                    let matched: BTreeSet<u64> = model.rows.iter()
                        .filter(|(n, (_, proj, day_of))| *proj == i64::from(p) && matches(**n, *day_of))
                        .map(|(n, _)| *n)
                        .collect();
                    let mut d = elide::store::EventDeletion::new(i64::from(p), pred);
                    // The dry run counts visible rows (not those an undo
                    // window holds); the request, rows it gives bits to.
                    let preview = store.preview_events(&d).unwrap();
                    let held = matched.iter().filter(|n| model.held.values().any(|(_, h)| h.contains(n))).count();
                    prop_assert_eq!(preview.rows as usize, matched.len() - held, "dry run");
                    if undo {
                        d.undo_window = Some(std::time::Duration::from_secs(7200));
                    }
                    let o = store.delete_events(d).unwrap();
                    prop_assert_eq!(o.rows_hidden as usize, matched.len());
                    prop_assert_eq!(o.logical, undo);
                    if undo {
                        model.held.insert(o.request_id, (i64::from(p), matched));
                    } else {
                        model.rows.retain(|n, _| !matched.contains(n));
                    }
                }
                Op::Cancel(i) => {
                    if let Some(id) = model.held.keys().nth(usize::from(i) % model.held.len().max(1)).copied() {
                        let o = store.cancel_request(id).unwrap();
                        let (_, rows) = model.held.remove(&id).unwrap();
                        prop_assert_eq!(o.rows_restored as usize, rows.len());
                    }
                }
                Op::UndoWindowsEnd => {
                    let in_a_year = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64 + 365 * DAY;
                    let mut resolved = store.resolve_logical_requests(in_a_year).unwrap();
                    resolved.sort();
                    let want: Vec<u64> = model.held.keys().copied().collect();
                    prop_assert_eq!(resolved, want);
                    for (_, (_, rows)) in std::mem::take(&mut model.held) {
                        model.rows.retain(|n, _| !rows.contains(n));
                    }
                }
                Op::Flush => store.flush().unwrap(),
                Op::Compact | Op::CompactProject(_) => {
                    let project = match op {
                        Op::CompactProject(p) => Some(i64::from(p)),
                        _ => None,
                    };
                    let r = store.compact(elide::store::CompactRequest {
                        manual: true,
                        merges: true,
                        project_id: project,
                        ..Default::default()
                    }).unwrap();
                    prop_assert!(r.verification_failures.is_empty());
                    let m = store.manifest().unwrap();
                    for req in m.requests.iter().filter(|r| project.is_none_or(|p| p == r.project_id)) {
                        if req.logical || req.status == elide::store::RequestStatus::Cancelled {
                            // Inside its undo window (or cancelled): never purged.
                            prop_assert!(req.parts.is_empty());
                            continue;
                        }
                        prop_assert_eq!(req.status, elide::store::RequestStatus::Verified, "{:?}", req);
                        prop_assert!(req.distinct_ids.is_empty());
                    }
                    prop_assert!(m.parts.iter().filter(|p| project.is_none_or(|q| q == p.project_id)).all(|p| p.deleted() == 0));
                }
                Op::Gc => {
                    store.advance_requests().unwrap();
                }
                Op::Drop(p) => {
                    model.rows.retain(|_, (_, proj, _)| *proj != i64::from(p));
                    model.held.retain(|_, (proj, _)| *proj != i64::from(p));
                    store.drop_project(i64::from(p)).unwrap();
                    prop_assert!(store.requests().unwrap().iter().all(|r| r.project_id != i64::from(p)));
                }
                Op::Reopen => {
                    store.close().unwrap();
                    store = open(dir.path());
                }
                Op::Retention(p, days) => {
                    // Rows are on days 0..3 after T0's UTC midnight; "now"
                    // is day 3, so keeping `days` days expires days
                    // before 3 - days (all of them for 0, stored as
                    // 1 day kept one day later).
                    let (kept, now_day) = if days == 0 { (1, 4) } else { (u32::from(days), 3) };
                    let t0_day = T0.div_euclid(DAY) * DAY;
                    store.set_project_settings(i64::from(p), elide::store::ProjectSettings {
                        retention_days: Some(kept),
                        ..Default::default()
                    }).unwrap();
                    let bound_day = i64::from(now_day) - i64::from(kept);
                    let before = model.rows.len();
                    model.rows.retain(|_, (_, proj, day)| !(*proj == i64::from(p) && *day < bound_day));
                    let sweeps = store.apply_retention(t0_day + i64::from(now_day) * DAY + 1).unwrap();
                    let hidden: u64 = sweeps.iter().map(|s| s.rows_hidden).sum();
                    prop_assert_eq!(hidden as usize, before - model.rows.len());
                    // Off again, so that later appends are not expired by
                    // a sweep the model does not know of.
                    store.set_project_settings(i64::from(p), Default::default()).unwrap();
                }
                Op::Query => {}
            }
            let manifest = store.manifest().unwrap();
            prop_assert_eq!(manifest.check_invariants(), Ok(()));
            let ctx = ctx(&store);
            let got = strings(&sql(&rt, &ctx, "SELECT uuid FROM events"));
            let mut want: Vec<String> = model.visible().map(|(k, _)| uuid_of(*k)).collect();
            want.sort();
            prop_assert_eq!(&got, &want);
            let c = count(&rt, &ctx, "SELECT count(*) FROM events");
            prop_assert_eq!(c as usize, want.len());
            let p1 = count(&rt, &ctx, "SELECT count(*) FROM events WHERE project_id = 1");
            prop_assert_eq!(p1 as usize, model.visible().filter(|(_, (_, p, _))| *p == 1).count());
        }
    }
}
