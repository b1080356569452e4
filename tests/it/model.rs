//! Model-based test: random append / delete / flush / query / reopen
//! sequences against an in-memory model; every query equals the model.

use std::collections::BTreeMap;

use elide::store::DeleteSpec;
use proptest::prelude::*;

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, u8, u8)>), // (distinct id, project, day)
    Delete(u8, Vec<u8>),       // project, distinct ids
    Flush,
    Reopen,
    Query,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 1u8..3, 0u8..3), 1..30).prop_map(Op::Append),
        2 => (1u8..3, prop::collection::vec(0u8..6, 1..3)).prop_map(|(p, d)| Op::Delete(p, d)),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        2 => Just(Op::Query),
    ]
}

/// Model: uuid -> (distinct id, project, seq); rows deleted are removed.
#[derive(Default)]
struct Model {
    rows: BTreeMap<u64, (String, i64)>,
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
                        model.rows.insert(n, (format!("d{d}"), i64::from(p)));
                        row(n, &format!("d{d}"), i64::from(p), i64::from(day))
                    }).collect();
                    append(&store, &rows);
                }
                Op::Delete(p, ids) => {
                    let ids: Vec<String> = ids.into_iter().map(|d| format!("d{d}")).collect();
                    let before = model.rows.len();
                    model.rows.retain(|_, (d, proj)| !(*proj == i64::from(p) && ids.contains(d)));
                    let o = store.delete(DeleteSpec::ids(i64::from(p), ids)).unwrap();
                    prop_assert_eq!(o.rows_hidden as usize, before - model.rows.len());
                }
                Op::Flush => store.flush().unwrap(),
                Op::Reopen => {
                    store.close().unwrap();
                    store = open(dir.path());
                }
                Op::Query => {}
            }
            let ctx = ctx(&store);
            let got = strings(&sql(&rt, &ctx, "SELECT uuid FROM events"));
            let mut want: Vec<String> = model.rows.keys().map(|k| uuid_of(*k)).collect();
            want.sort();
            prop_assert_eq!(&got, &want);
            let c = count(&rt, &ctx, "SELECT count(*) FROM events");
            prop_assert_eq!(c as usize, model.rows.len());
            let p1 = count(&rt, &ctx, "SELECT count(*) FROM events WHERE project_id = 1");
            prop_assert_eq!(p1 as usize, model.rows.values().filter(|(_, p)| *p == 1).count());
        }
    }
}
