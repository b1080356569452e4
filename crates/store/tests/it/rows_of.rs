//! `rows_of_distinct_ids`, the store's half of a subject-access export:
//! equal to a plain scan of every visible row for the ids, from a writer
//! (through the index) and a read-only open (by a scan), rows in parts and
//! in the log; nothing after the ids are deleted.

use std::collections::BTreeSet;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use elide_store::{DeleteSpec, Store, StoreOptions, Table};

use crate::common::*;

fn exported(store: &Store, ids: &[&str]) -> BTreeSet<(String, String, u64)> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let mut out = BTreeSet::new();
    let mut width = None;
    let got = store
        .rows_of_distinct_ids(1, &ids, &[Table::Events], &mut |t, b| {
            assert_eq!(t, Table::Events);
            // Whole rows, in the stored schema.
            assert_eq!(
                b.schema().fields().len(),
                Table::Events.def().schema().fields().len()
            );
            width = Some(b.num_columns());
            let u = b.column_by_name("uuid").unwrap().as_string::<i32>();
            let d = b.column_by_name("distinct_id").unwrap().as_string::<i32>();
            let s = b
                .column_by_name("_seq")
                .unwrap()
                .as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                assert!(
                    out.insert((u.value(i).to_string(), d.value(i).to_string(), s.value(i))),
                    "a row delivered twice"
                );
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        got.rows.get(&Table::Events).copied().unwrap_or(0),
        out.len() as u64
    );
    out
}

fn reference(store: &Store, ids: &[&str]) -> BTreeSet<(String, String, u64)> {
    visible(store)
        .into_iter()
        .filter(|(_, d, _)| ids.contains(&d.as_str()))
        .collect()
}

#[test]
fn the_rows_of_some_ids_equal_a_plain_scan_writer_or_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rows = |r: std::ops::Range<u64>| -> Vec<_> {
        r.map(|n| row(n, &format!("d{}", n % 5), 1, (n % 3) as i64))
            .collect()
    };
    append(&store, &rows(0..100));
    store.flush().unwrap();
    append(&store, &rows(100..160));
    store.flush().unwrap();
    append(&store, &rows(160..200)); // in the log
                                     // Some of d1's rows hidden by an earlier deletion (below a cut-off).
    store
        .delete(DeleteSpec {
            cutoff: Some(50),
            ..DeleteSpec::ids(1, ["d1"])
        })
        .unwrap();
    for ids in [
        vec!["d1"],
        vec!["d1", "d3"],
        vec!["nobody"],
        vec!["d2", "d2"],
    ] {
        let want = reference(&store, &ids);
        assert_eq!(exported(&store, &ids), want, "{ids:?}");
    }
    assert!(!reference(&store, &["d1", "d3"]).is_empty());
    // A read-only open (no index: a scan) gives the same.
    let reader = Store::open_read_only(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        exported(&reader, &["d1", "d3"]),
        reference(&store, &["d1", "d3"])
    );
    drop(reader);
    // After a compaction (merges, purges) and after the deletion: the same
    // answer as the scan, then nothing.
    compact_now(&store);
    assert_eq!(
        exported(&store, &["d1", "d3"]),
        reference(&store, &["d1", "d3"])
    );
    store.delete(DeleteSpec::ids(1, ["d1", "d3"])).unwrap();
    assert!(exported(&store, &["d1", "d3"]).is_empty());
    assert!(!exported(&store, &["d2"]).is_empty());
}
