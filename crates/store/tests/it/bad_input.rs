use crate::common::*;
use elide_store::{Store, StoreError, Table};

#[test]
fn invalid_batch_is_rejected_whole() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        let site = Site::new(backend);
        let store = site.open();
        let mut rows = vec![row(1, "a", 1, 0), row(2, "b", 1, 0)];
        rows[1].properties = Some("not json".into());
        let e = store.append(
            Table::Events,
            &elide_store::jsonl::rows_to_batch(&rows).unwrap(),
        );
        assert!(
            matches!(e, Err(StoreError::InvalidRow { row: 1, ref column, .. }) if column == "properties"),
            "{e:?}"
        );
        assert_eq!(visible(&store).len(), 0);
        assert_eq!(store.status().unwrap().next_seq, 1);
    }
}

#[test]
fn corrupt_manifest_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0)]);
    store.flush().unwrap();
    store.close().unwrap();
    let mut latest = std::fs::read_dir(dir.path().join("manifest"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    latest.sort();
    let path = latest.pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    match Store::open(dir.path(), opts()) {
        Err(StoreError::Corrupt { path: p, reason }) => {
            assert!(p.contains("manifest/"), "{p}");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn corrupt_tombstone_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    store.flush().unwrap();
    store
        .delete(elide_store::DeleteSpec::ids(1, ["a"]))
        .unwrap();
    store.close().unwrap();
    let t = std::fs::read_dir(dir.path().join("tombstones"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&t).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&t, &bytes).unwrap();
    match Store::open(dir.path(), opts()) {
        Err(StoreError::Corrupt { path, .. }) => assert!(path.contains("tombstones/")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A missing tombstone file is an error too, never "no deletions".
    std::fs::remove_file(&t).unwrap();
    assert!(Store::open(dir.path(), opts()).is_err());
}

#[test]
fn torn_log_tail_is_ignored_but_acknowledged_rows_remain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0)]);
    append(&store, &[row(2, "b", 1, 0)]);
    store.close().unwrap();
    let seg = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[200, 1, 0, 0, 9, 9]).unwrap();
    drop(f);
    let store: Store = open(dir.path());
    assert_eq!(visible(&store).len(), 2);
}

/// A store whose `_seq`s are at their end (a damaged manifest could claim
/// so) refuses the rows that would pass 2^64, whole, with an error; the
/// rows that fit are taken; nothing wraps around below older cut-offs.
#[test]
fn rows_past_the_last_seq_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &rows(0..2));
    store.flush().unwrap();
    store.close().unwrap();
    let newest = std::fs::read_dir(dir.path().join("manifest"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    let mut m = elide_store::format::decode_manifest("test", &bytes).unwrap();
    m.next_seq = u64::MAX - 1;
    m.flushed_seq = u64::MAX - 1;
    std::fs::write(&newest, elide_store::format::encode_manifest(&m).unwrap()).unwrap();
    let store = open(dir.path());
    let batch = |r| elide_store::jsonl::rows_to_batch(&rows(r)).unwrap();
    let e = store.append(Table::Events, &batch(10..15)).unwrap_err();
    assert!(e.to_string().contains("2^64"), "{e}");
    let ok = store.append(Table::Events, &batch(10..11)).unwrap();
    assert_eq!(ok.seq_end, u64::MAX);
    assert!(store.append(Table::Events, &batch(11..12)).is_err());
    assert_eq!(visible_ns(&store), vec![0, 1, 10]);
}
