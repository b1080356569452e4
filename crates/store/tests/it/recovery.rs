//! Recovery and refusal rules (docs/format.md, "Recovery"): each test
//! builds the state a crash, a full disk, a careless cleanup or a damaged
//! disk leaves, and checks that opening neither loses acknowledged rows,
//! nor wipes anything, nor returns changed bytes as data.

use std::io::Write;
use std::path::Path;

use elide_store::{Store, StoreError, StoreOptions, Table};

use crate::common::*;

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A store whose acknowledged rows are only in the ingest log, the last
/// segment ending in a torn record (a process killed mid-write).
fn torn_store(dir: &Path) -> std::collections::BTreeSet<(String, String, u64)> {
    let store = open(dir);
    for n in 0..3 {
        append(&store, &[row(n, "a", 1, 0), row(100 + n, "b", 1, 1)]);
    }
    let rows = visible(&store);
    store.close().unwrap();
    let last = segments(dir).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    // A record header claiming 4096 bytes, then only 10 of them.
    f.write_all(&4096u32.to_le_bytes()).unwrap();
    f.write_all(&[7u8; 14]).unwrap();
    rows
}

/// Rewrite a segment in format 1 (no `synced` field), as an earlier
/// version wrote it.
fn rewrite_as_v1(path: &Path) {
    rewrite_as_v1_with(path, |b| b)
}

/// [`rewrite_as_v1`], each record's batch changed by `f` first.
fn rewrite_as_v1_with(
    path: &Path,
    f: impl Fn(arrow::record_batch::RecordBatch) -> arrow::record_batch::RecordBatch,
) {
    let read = elide_store::wal::read_segment(path).unwrap();
    let mut out = b"ELIDEWAL".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    for mut r in read.records {
        r.batch = f(r.batch);
        let mut payload = vec![1u8, r.table.id()];
        payload.extend_from_slice(&r.seq_start.to_le_bytes());
        payload.extend_from_slice(&(r.batch.num_rows() as u64).to_le_bytes());
        let mut w =
            arrow::ipc::writer::StreamWriter::try_new(&mut payload, r.batch.schema_ref()).unwrap();
        w.write(&r.batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn log_records_with_uuids_as_text_replay_as_16_bytes_and_read_the_same() {
    // Rows only in the ingest log, written by a build that stored event
    // UUIDs as their text.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 1)]);
    append(&store, &[row(3, "a", 2, 0)]);
    let before = visible(&store);
    store.close().unwrap();
    // Segments holding 16-byte UUIDs (`uuid` and `person_id`) are version
    // 4: builds before refuse them by their version.
    let last = std::fs::read(segments(dir.path()).pop().unwrap()).unwrap();
    assert_eq!(last[8..12], 4u32.to_le_bytes());
    for s in segments(dir.path()) {
        rewrite_as_v1_with(&s, |b| {
            let text = elide_store::schema::with_uuid_text(b).unwrap();
            assert_eq!(
                text.schema().field(0).data_type(),
                &arrow::datatypes::DataType::Utf8
            );
            text
        });
    }
    let store = open(dir.path());
    assert_eq!(visible(&store), before);
    let snap = store.snapshot().unwrap();
    for b in snap.memtable_batches(Table::Events) {
        assert_eq!(
            b.schema(),
            Table::Events.def().schema(),
            "upgraded at replay"
        );
    }
    drop(snap);
    store.flush().unwrap();
    assert_eq!(visible(&store), before);
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), before);
    // A record whose text is not a UUID is damage, not a silently dropped
    // row.
    append(&store, &[row(4, "c", 1, 0)]);
    store.close().unwrap();
    let last = segments(dir.path()).pop().unwrap();
    rewrite_as_v1_with(&last, |b| {
        let mut cols = b.columns().to_vec();
        cols[0] = std::sync::Arc::new(arrow::array::StringArray::from(vec!["nope"; b.num_rows()]));
        let mut fields: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[0] = arrow::datatypes::Field::new("uuid", arrow::datatypes::DataType::Utf8, false);
        arrow::record_batch::RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            cols,
        )
        .unwrap()
    });
    match Store::open(dir.path(), opts()) {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("not a UUID"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_second_crash_after_recovering_a_torn_log_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rows = torn_store(dir.path());
    // The recovering process: opens (cuts the tail, starts a new segment)
    // and dies before any flush.
    let store = open(dir.path());
    assert_eq!(visible(&store), rows);
    drop(store);
    // Every later open works and has every acknowledged row.
    for i in 0..3 {
        let store = open(dir.path());
        assert!(rows.is_subset(&visible(&store)));
        assert_eq!(visible(&store).len(), rows.len() + i as usize);
        append(&store, &[row(50 + i, "c", 1, 0)]);
        drop(store);
    }
    let store = open(dir.path());
    assert_eq!(visible(&store).len(), rows.len() + 3);
}

#[test]
fn an_empty_segment_left_by_a_full_disk_does_not_close_a_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let rows = torn_store(dir.path());
    let last = segments(dir.path()).pop().unwrap();
    let name = last.file_stem().unwrap().to_str().unwrap();
    let next = format!("{:020}.wal", name.parse::<u64>().unwrap() + 1);
    // A new segment that could not even get its header.
    std::fs::write(dir.path().join("wal").join(&next), b"").unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), rows);
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(visible(&store), rows);
}

#[test]
fn a_torn_segment_an_earlier_recovery_left_behind_a_newer_one_is_cut_not_fatal() {
    // The state the bug left: torn segment N (its valid records
    // acknowledged), then segment N+1 with rows a later process appended.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..3 {
        append(&store, &[row(n, "a", 1, 0)]);
    }
    store.close().unwrap();
    let store = open(dir.path());
    append(&store, &[row(10, "b", 1, 0)]);
    let rows = visible(&store);
    store.close().unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 2);
    let older = segs[segs.len() - 2].clone();
    // That state exists only in segments of format 1 (this version cuts
    // torn tails before it creates a segment).
    for s in &segs {
        rewrite_as_v1(s);
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&older)
        .unwrap();
    f.write_all(&9999u32.to_le_bytes()).unwrap();
    f.write_all(&[1, 2, 3]).unwrap();
    drop(f);
    let store = open(dir.path());
    assert_eq!(visible(&store), rows);
    assert_eq!(rows.len(), 4);
}

#[test]
fn a_header_only_segment_left_by_a_crashed_open_does_not_close_a_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let rows = torn_store(dir.path());
    let last = segments(dir.path()).pop().unwrap();
    let name = last.file_stem().unwrap().to_str().unwrap();
    let next = dir
        .path()
        .join("wal")
        .join(format!("{:020}.wal", name.parse::<u64>().unwrap() + 1));
    // What an open that died right after creating its segment leaves.
    let mut header = b"ELIDEWAL".to_vec();
    header.extend_from_slice(&2u32.to_le_bytes());
    std::fs::write(&next, &header).unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), rows);
}

/// A power loss may keep a later unsynced record and lose an earlier one
/// (disks write back out of order): the bad region is then followed by a
/// valid record, but one written before the region was ever synced. That
/// is a torn tail, cut; only a record written after the region was synced
/// proves damage.
#[test]
fn an_unsynced_region_lost_out_of_order_is_a_torn_tail_not_damage() {
    // A valid record from a fresh segment, to append after a lost region.
    let fresh = tempfile::tempdir().unwrap();
    let s = open(fresh.path());
    append(&s, &[row(7, "z", 1, 0)]);
    s.close().unwrap();
    let fseg = std::fs::read(segments(fresh.path()).pop().unwrap()).unwrap();
    let len = u32::from_le_bytes(fseg[12..16].try_into().unwrap()) as usize;
    let record = fseg[12..12 + 8 + len].to_vec();
    // `synced`: how far the segment was durable when the record was written.
    let with_synced = |synced: u64| {
        let mut r = record.clone();
        r[8 + 18..8 + 26].copy_from_slice(&synced.to_le_bytes());
        let crc = crc32fast::hash(&r[8..]);
        r[4..8].copy_from_slice(&crc.to_le_bytes());
        r
    };
    for (damage, what) in [
        (false, "written before any sync"),
        (true, "written after the region was synced"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(&store, &[row(0, "a", 1, 0)]);
        let synced = visible(&store);
        store.close().unwrap();
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let lost_at = bytes.len();
        // A record-sized region that never reached the disk (zeros), then
        // a later record that did, with a _seq past the lost one.
        bytes.extend(std::iter::repeat_n(0u8, record.len()));
        let claim = if damage { (lost_at + 1) as u64 } else { 12 };
        bytes.extend_from_slice(&with_synced(claim));
        std::fs::write(&seg, &bytes).unwrap();
        match Store::open(dir.path(), opts()) {
            Ok(store) => {
                assert!(!damage, "{what}: opened");
                assert_eq!(
                    visible(&store),
                    synced,
                    "{what}: the unsynced records are cut"
                );
                drop(store);
                assert_eq!(
                    std::fs::read(&seg).unwrap().len(),
                    lost_at,
                    "{what}: cut back durably"
                );
            }
            Err(e) => {
                assert!(damage, "{what}: {e}");
                assert!(e.to_string().contains(&format!("byte {lost_at}")), "{e}");
            }
        }
    }
}

/// A torn record whose rows hold long runs of `\x01` bytes (a distinct
/// id may hold them) opens at once. Read from any offset in those runs, a
/// record header claims 16 MiB of an append to a valid table: the scan for
/// a valid record after the torn one hashed 16 MiB at each of millions of
/// offsets, and an open took hours. Such a candidate claims a `synced`
/// past its own offset, which no record written can.
#[test]
fn a_torn_record_full_of_header_like_bytes_opens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(0, "a", 1, 0)]);
    let before = visible(&store);
    let id = "\u{1}".repeat(200);
    let many: Vec<_> = (1..170_000).map(|n| row(n, &id, 1, 0)).collect();
    append(&store, &many);
    store.close().unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > 2 * 0x0101_0101, "{len}");
    // The last record cut short by a byte: a write never acknowledged.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store), before);
}

#[test]
fn damage_in_the_middle_of_the_log_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..4 {
        append(&store, &[row(n, "a", 1, 0)]);
    }
    store.close().unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip one byte inside the second record's payload.
    let first_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let second = 12 + 8 + first_len;
    bytes[second + 8 + 40] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Store::open(dir.path(), opts()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{msg}");
    assert!(msg.contains(&format!("byte {second}")), "{msg}");
    assert!(
        msg.contains(seg.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
    // Nothing was cut: the bytes are as they were.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    assert!(Store::open_read_only(dir.path(), opts()).is_err());
}

#[test]
fn a_missing_manifest_is_refused_and_nothing_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0)]);
    store.flush().unwrap();
    append(&store, &[row(2, "b", 1, 0)]);
    store.close().unwrap();
    let before = files_under(dir.path());
    for f in std::fs::read_dir(dir.path().join("manifest")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    for _ in 0..2 {
        let err = Store::open(dir.path(), opts()).unwrap_err();
        assert!(matches!(err, StoreError::MissingManifest { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("parts/") && msg.contains("wal/"), "{msg}");
    }
    let after = files_under(dir.path());
    for f in before
        .iter()
        .filter(|f| !f.starts_with(dir.path().join("manifest")))
    {
        assert!(after.contains(f), "{} was removed", f.display());
    }
}

#[test]
fn the_sweep_leaves_files_elide_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0)]);
    store.flush().unwrap();
    store.close().unwrap();
    let foreign = [
        dir.path().join("parts/events/1/README.txt"),
        dir.path().join("parts/backup.parquet"),
        dir.path().join("tombstones/notes"),
        dir.path().join("manifest/keep-me"),
    ];
    for f in &foreign {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"mine").unwrap();
    }
    let ours = dir
        .path()
        .join("parts/events/1/2026-09-21/00000000000000ff.parquet");
    std::fs::create_dir_all(ours.parent().unwrap()).unwrap();
    std::fs::write(&ours, b"a crashed write").unwrap();
    let store = open(dir.path());
    assert_eq!(visible(&store).len(), 1);
    for f in &foreign {
        assert!(f.exists(), "{} was removed", f.display());
    }
    assert!(!ours.exists(), "an unreferenced part of Elide's stays");
}

#[test]
fn only_creating_opens_make_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let no_create = StoreOptions {
        create_if_missing: false,
        ..opts()
    };
    for r in [
        Store::open(&missing, no_create.clone()),
        Store::open_read_only(&missing, opts()),
    ] {
        assert!(matches!(r, Err(StoreError::NoStore { .. })), "{r:?}");
    }
    assert!(!missing.exists(), "a refused open created the directory");
    std::fs::create_dir(&missing).unwrap();
    let r = Store::open(&missing, no_create.clone());
    assert!(matches!(r, Err(StoreError::NoStore { .. })), "{r:?}");
    assert_eq!(
        std::fs::read_dir(&missing).unwrap().count(),
        0,
        "a refused open leaves nothing behind"
    );
    // A file where a directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file, opts()).unwrap_err().to_string();
    assert!(err.contains("not a directory"), "{err}");
    // Creating works, and then the store opens without creating.
    open(&missing).close().unwrap();
    Store::open(&missing, no_create).unwrap().close().unwrap();
}

#[test]
fn a_read_only_store_does_not_block_the_writer_and_pins_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    store.flush().unwrap();
    append(&store, &[row(3, "a", 1, 0)]);
    let reader = Store::open_read_only(dir.path(), opts()).unwrap();
    assert!(reader.is_read_only());
    let seen = visible(&reader);
    assert_eq!(seen, visible(&store), "buffered rows are read from the log");
    // The writer deletes and purges while the reader lives.
    store
        .delete(elide_store::DeleteSpec::ids(1, ["a"]))
        .unwrap();
    compact_now(&store);
    assert_eq!(visible(&store).len(), 1);
    // The reader's version and its files are still there.
    assert_eq!(visible(&reader), seen);
    assert!(matches!(
        reader.append(
            Table::Events,
            &elide_store::jsonl::rows_to_batch(&[row(9, "x", 1, 0)]).unwrap()
        ),
        Err(StoreError::ReadOnly(_))
    ));
    assert!(reader
        .delete(elide_store::DeleteSpec::ids(1, ["b"]))
        .is_err());
    // The request cannot be purged while the reader pins the old part.
    assert!(store
        .requests()
        .unwrap()
        .iter()
        .all(|r| r.status == elide_store::RequestStatus::Pending));
    drop(reader);
    compact_now(&store);
    assert!(store
        .requests()
        .unwrap()
        .iter()
        .all(|r| r.status == elide_store::RequestStatus::Verified));
}

#[test]
fn bad_column_sets_are_refused_by_name() {
    // On each backend: local files and an S3 server.
    for backend in BACKENDS {
        use arrow::array::{ArrayRef, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let site = Site::new(backend);
        let store = site.open();
        let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let schema = Schema::new(vec![
            Field::new("event", DataType::Utf8, false),
            Field::new("distinct_id", DataType::Utf8, false),
            Field::new("distinct_id", DataType::Utf8, false),
            Field::new("project_id", DataType::Int64, false),
            Field::new("timestamp", DataType::Utf8, false),
        ]);
        let b = arrow::record_batch::RecordBatch::try_new(
            Arc::new(schema),
            vec![
                s("e"),
                s("a"),
                s("b"),
                Arc::new(Int64Array::from(vec![1])),
                s("2026-01-01"),
            ],
        )
        .unwrap();
        let err = store.append(Table::Events, &b).unwrap_err().to_string();
        assert!(err.contains("appears more than once"), "{err}");
        let mut nul = row(1, "a\0b", 1, 0);
        let err = store
            .append(
                Table::Events,
                &elide_store::jsonl::rows_to_batch(&[nul.clone()]).unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("NUL"), "{err}");
        nul.distinct_id = "a".into();
        nul.project_id = -1;
        let err = store
            .append(
                Table::Events,
                &elide_store::jsonl::rows_to_batch(&[nul]).unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("positive"), "{err}");
        assert!(visible(&store).is_empty());
    }
}

use std::sync::Arc;

/// Readers open while a writer appends and flushes (removing log segments
/// whose rows went into parts): every reader sees every row acknowledged
/// before it opened, never a view that has lost the rows of a flush.
#[test]
fn read_only_opens_racing_flushes_see_every_acknowledged_row() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acked, done) = (store.clone(), Arc::clone(&acked), Arc::clone(&done));
        std::thread::spawn(move || {
            for n in 0..400u64 {
                let r = row(n, &format!("d{}", n % 7), 1, (n % 3) as i64);
                append(&store, std::slice::from_ref(&r));
                acked.lock().unwrap().push(r.uuid.unwrap());
                if n % 4 == 3 {
                    store.flush().unwrap();
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut opens = 0;
    while !done.load(Ordering::Acquire) || opens < 5 {
        let before: Vec<String> = acked.lock().unwrap().clone();
        let reader = Store::open_read_only(dir.path(), opts()).unwrap();
        let seen: std::collections::BTreeSet<String> =
            visible(&reader).into_iter().map(|(u, _, _)| u).collect();
        for u in &before {
            assert!(seen.contains(u), "reader {opens} lost acknowledged row {u}");
        }
        opens += 1;
    }
    writer.join().unwrap();
    assert!(opens > 5, "{opens} reader opens");
}
