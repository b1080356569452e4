//! Deletion of events by predicate: what is hidden (and only that), in
//! parts and in the ingest log, across a reopen, through compaction and
//! verification down to the bytes, and what is refused.

use elide_store::predicate::{EventPredicate, Numbers, PropertyFilter, PropertyOperator};
use elide_store::{
    EventDeletion, PartCompression, PartWriterOptions, RequestKind, RequestStatus, Store,
    StoreError, StoreOptions, Table,
};
use serde_json::json;

use crate::common::*;

#[test]
fn a_predicate_hides_exactly_its_rows_in_parts_and_log_and_the_preview_agrees() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..60));
        store.flush().unwrap();
        append(&store, &rows(60..90)); // still in the ingest log
        let d = EventDeletion::new(1, pro_clicks());
        let version = store.status().unwrap().version;
        let preview = store.preview_events(&d).unwrap();
        assert_eq!(
            store.status().unwrap().version,
            version,
            "a dry run commits nothing"
        );
        assert_eq!(visible_ns(&store).len(), 90, "and hides nothing");
        let want_gone: Vec<u64> = (0..90).filter(|n| n % 6 == 0).collect();
        assert_eq!(preview.rows, want_gone.len() as u64);
        assert_eq!(
            preview.by_table[&Table::Events].rows,
            want_gone.len() as u64
        );
        assert!(preview.parts >= 1 && !preview.by_table.contains_key(&Table::Recordings));

        let out = store.delete_events(d.clone()).unwrap();
        assert_eq!(out.rows_hidden, want_gone.len() as u64);
        // Appended after the request: not covered, even though it matches.
        append(&store, &rows(90..96));
        let want: Vec<u64> = (0..96).filter(|n| n >= &90 || n % 6 != 0).collect();
        assert_eq!(visible_ns(&store), want);
        let r = store
            .requests()
            .unwrap()
            .into_iter()
            .find(|r| r.id == out.request_id)
            .unwrap();
        assert_eq!(r.kind, RequestKind::Events);
        assert_eq!(r.predicate, Some(pro_clicks()));
        assert!(r.purge_due_by_us > r.created_at_us);
        // Nothing left to hide: the preview now finds only the new rows'
        // match (90), which the request does not cover.
        assert_eq!(store.preview_events(&d).unwrap().rows, 1);

        // The log's rows stay hidden across a reopen (replay applies the
        // predicate), and so do the parts'.
        store.close().unwrap();
        let store = site.open();
        assert_eq!(visible_ns(&store), want);
        assert_eq!(store.manifest().unwrap().check_invariants(), Ok(()));
    }
}

/// A deletion compares two integers exactly, also past 2^53 where one
/// double holds several (`2^53` and `2^53 + 1`): in parts and in the log,
/// across a reopen, and through verification, which finds its rows gone
/// and leaves the neighbour's. The request records that it compares so.
/// (A fraction is a double: `9007199254740992.0` stands for both.)
#[test]
fn a_deletion_compares_large_integers_exactly() {
    const BIG: u64 = 1 << 53;
    let row_of = |n: u64, account: &str| {
        let mut r = ev(n);
        r.properties = Some(format!(r#"{{"account":{account},"n":{n}}}"#));
        r
    };
    // Rows 0..4 hold 2^53, 2^53 + 1, 2^53 written as a fraction, 2^53 +
    // 2; rows 4..8 the same, still in the log.
    let accounts = [
        BIG.to_string(),
        (BIG + 1).to_string(),
        format!("{BIG}.0"),
        (BIG + 2).to_string(),
    ];
    let batch = |from: u64| -> Vec<_> {
        (0..4)
            .map(|i| row_of(from + i, &accounts[i as usize]))
            .collect()
    };
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &batch(0));
        store.flush().unwrap();
        append(&store, &batch(4));
        let filter = |operator, value: u64| EventPredicate {
            properties: vec![PropertyFilter {
                key: "account".into(),
                operator,
                value: json!(value),
            }],
            ..Default::default()
        };
        // Asked for as doubles: a new request compares exactly all the
        // same (only requests recorded before read numbers as doubles).
        let exact = EventPredicate {
            numbers: Numbers::Double,
            ..filter(PropertyOperator::Exact, BIG + 1)
        };
        let preview = |p: EventPredicate| {
            store
                .preview_events(&EventDeletion::new(1, p))
                .unwrap()
                .rows
        };
        // 2^53 + 1 and the fraction (a double, which 2^53 + 1 rounds to)
        // in both batches; as doubles, 2^53 too.
        assert_eq!(preview(exact.clone()), 4);
        assert_eq!(
            preview(filter(PropertyOperator::Gt, BIG)),
            4,
            "2^53 + 1 and 2^53 + 2 are above 2^53"
        );
        assert_eq!(
            preview(filter(PropertyOperator::Lt, BIG + 1)),
            2,
            "2^53 is below 2^53 + 1 (the fraction is not)"
        );
        let out = store
            .delete_events(EventDeletion::new(1, exact.clone()))
            .unwrap();
        assert_eq!(out.rows_hidden, 4);
        let want = vec![0, 3, 4, 7];
        assert_eq!(visible_ns(&store), want);
        let r = store
            .requests()
            .unwrap()
            .into_iter()
            .find(|r| r.id == out.request_id)
            .unwrap();
        let stored = r.predicate.unwrap();
        assert_eq!(stored.numbers, Numbers::Exact);
        assert!(serde_json::to_string(&stored)
            .unwrap()
            .contains(r#""numbers":"exact""#));
        store.close().unwrap();
        let store = site.open();
        assert_eq!(visible_ns(&store), want, "the log's replay reads it alike");
        let c = compact_now(&store);
        assert_eq!(c.requests_verified, vec![out.request_id]);
        assert_eq!(visible_ns(&store), want);
    }
}

/// A request recorded before deletions compared numbers exactly (its
/// predicate written without `numbers`, as builds before manifest
/// version 6 wrote it) keeps reading numbers as doubles: the log's replay
/// hides for it what such a build hid when it recorded the request, 2^53's
/// row as well as 2^53 + 1's. Here the request is recorded by this build,
/// then its predicate written back as an older build wrote it.
#[test]
fn a_request_recorded_before_keeps_comparing_numbers_as_doubles() {
    const BIG: u64 = 1 << 53;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rows: Vec<_> = (0..3)
        .map(|n| {
            let mut r = ev(n);
            r.properties = Some(format!(r#"{{"account":{}}}"#, BIG + n));
            r
        })
        .collect();
    append(&store, &rows); // in the log
    let pred = EventPredicate {
        properties: vec![PropertyFilter {
            key: "account".into(),
            operator: PropertyOperator::Exact,
            value: json!(BIG + 1),
        }],
        ..Default::default()
    };
    let out = store.delete_events(EventDeletion::new(1, pred)).unwrap();
    assert_eq!(out.rows_hidden, 1);
    assert_eq!(visible_ns(&store), vec![0, 2]);
    store.close().unwrap();

    let manifests = dir.path().join("manifest");
    let newest = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    let mut m = elide_store::format::decode_manifest("test", &bytes).unwrap();
    let r = m
        .requests
        .iter_mut()
        .find(|r| r.id == out.request_id)
        .unwrap();
    let p = r.predicate.as_mut().unwrap();
    assert_eq!(p.numbers, Numbers::Exact);
    p.numbers = Numbers::Double;
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("numbers"), "{text}");
    std::fs::write(&newest, elide_store::format::encode_manifest(&m).unwrap()).unwrap();

    let store = open(dir.path());
    assert_eq!(
        visible_ns(&store),
        vec![2],
        "the replay reads the old request as doubles"
    );
}

#[test]
fn windows_ids_and_operators_combine_as_a_conjunction() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..48));
        store.flush().unwrap();
        // Day 1 only (row n is on day n % 3), distinct id d1 or d2, n > 20.
        let pred = EventPredicate {
            after_us: Some(T0 + DAY),
            before_us: Some(T0 + 2 * DAY),
            distinct_ids: vec!["d1".into(), "d2".into()],
            properties: vec![PropertyFilter {
                key: "n".into(),
                operator: PropertyOperator::Gt,
                value: json!(20),
            }],
            ..Default::default()
        };
        let gone = |n: &u64| n % 3 == 1 && matches!(n % 4, 1 | 2) && *n > 20;
        let out = store.delete_events(EventDeletion::new(1, pred)).unwrap();
        assert_eq!(out.rows_hidden, (0..48).filter(gone).count() as u64);
        assert_eq!(
            visible_ns(&store),
            (0..48).filter(|n| !gone(n)).collect::<Vec<_>>()
        );
        // icontains and is_not_set on the same rows.
        let pred = EventPredicate {
            properties: vec![
                PropertyFilter {
                    key: "marker".into(),
                    operator: PropertyOperator::Icontains,
                    value: json!("ROW-000"),
                },
                PropertyFilter {
                    key: "absent".into(),
                    operator: PropertyOperator::IsNotSet,
                    value: json!(null),
                },
            ],
            ..Default::default()
        };
        let out = store.delete_events(EventDeletion::new(1, pred)).unwrap();
        // row-0000 … row-0009, minus those already hidden (none: n <= 20).
        assert_eq!(out.rows_hidden, 10);
    }
}

#[test]
fn bad_predicates_are_refused_and_change_nothing() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        append(&store, &rows(0..10));
        let version = store.status().unwrap().version;
        let bad = [
            EventDeletion::new(1, EventPredicate::default()),
            EventDeletion::new(
                1,
                EventPredicate {
                    after_us: Some(T0 + DAY),
                    before_us: Some(T0),
                    ..Default::default()
                },
            ),
            EventDeletion {
                tables: vec![Table::Recordings],
                ..EventDeletion::new(1, pro_clicks())
            },
            EventDeletion::new(-1, pro_clicks()),
            EventDeletion {
                cutoff: Some(u64::MAX),
                ..EventDeletion::new(1, pro_clicks())
            },
        ];
        for d in bad {
            let e = store.delete_events(d.clone()).unwrap_err();
            assert!(matches!(e, StoreError::InvalidInput(_)), "{d:?}: {e}");
        }
        assert_eq!(store.status().unwrap().version, version);
        assert_eq!(visible_ns(&store).len(), 10);
        assert!(store.requests().unwrap().is_empty());
    }
}

/// DESIGN invariant 5 for a predicate request: with compression off, after
/// verification no file holds a byte of a matched row, while rows outside
/// the predicate and rows appended after the cut-off are intact; the
/// verified request keeps its predicate's shape but no value in clear.
#[test]
fn after_verification_no_byte_of_a_matched_row_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        part: PartWriterOptions {
            compression: PartCompression::None,
            ..Default::default()
        },
        ..opts()
    };
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    append(&store, &rows(0..40));
    store.flush().unwrap();
    append(&store, &rows(40..60)); // in the log at the deletion
    let pred = EventPredicate {
        distinct_ids: vec!["d0".into()],
        ..pro_clicks()
    };
    let out = store.delete_events(EventDeletion::new(1, pred)).unwrap();
    // n % 6 == 0 and n % 4 == 0: n % 12 == 0.
    let gone: Vec<u64> = (0..60).filter(|n| n % 12 == 0).collect();
    assert_eq!(out.rows_hidden, gone.len() as u64);
    append(&store, &rows(60..61)); // matches, but after the cut-off
    let grep = |needle: &str| -> bool {
        files_under(dir.path()).into_iter().any(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
    };
    assert!(grep("row-0012-x"), "the data is on disk to begin with");
    let r = compact_now(&store);
    assert_eq!(r.requests_verified, vec![out.request_id]);
    for n in 0..61 {
        let marker = format!("row-{n:04}-x");
        let is_gone = n % 12 == 0 && n < 60;
        assert_eq!(grep(&marker), !is_gone, "row {n}");
    }
    let req = store.requests().unwrap().pop().unwrap();
    assert_eq!(req.status, RequestStatus::Verified);
    let p = req.predicate.unwrap();
    assert_eq!(p.events, vec!["click".to_string()]);
    assert!(p.distinct_ids.is_empty() && req.id_hashes.len() == 1);
    assert!(p.properties[0]
        .value
        .as_str()
        .unwrap()
        .starts_with("keyed-hash:"));
    // The manifest, which outlives the rows, never held "pro" for it after
    // verification: only its hash.
    let m = serde_json::to_string(&store.manifest().unwrap().requests).unwrap();
    assert!(!m.contains("\"pro\"") && !m.contains("\"d0\""), "{m}");
    store.close().unwrap();
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(visible_ns(&store).len(), 61 - gone.len());
}

#[test]
fn a_bulk_ingest_in_flight_across_a_predicate_deletion_is_covered() {
    let dir = tempfile::tempdir().unwrap();
    // Small buffers: the bulk ingest spills (reserves its _seqs and
    // writes its parts) at the write.
    let store = Store::open(
        dir.path(),
        StoreOptions {
            memtable_rows: 10,
            ..opts()
        },
    )
    .unwrap();
    append(&store, &rows(0..12));
    // Reserve _seqs below the deletion's cut-off, commit after it.
    let mut bulk = store.bulk_ingest(Table::Events).unwrap();
    bulk.write(&elide_store::jsonl::rows_to_batch(&rows(12..36)).unwrap())
        .unwrap();
    let out = store
        .delete_events(EventDeletion::new(1, pro_clicks()))
        .unwrap();
    assert_eq!(out.rows_hidden, 2, "rows 0 and 6 are visible at the call");
    bulk.commit().unwrap();
    let want: Vec<u64> = (0..36).filter(|n| n % 6 != 0).collect();
    assert_eq!(visible_ns(&store), want);
    let r = compact_now(&store);
    assert_eq!(r.requests_verified, vec![out.request_id]);
    assert_eq!(visible_ns(&store), want);
}
