//! What a part's columns are encoded as (docs/format.md, "Parts").

use arrow::array::AsArray;
use parquet::basic::Encoding;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::common::*;
use elide_store::jsonl::EventRow;
use elide_store::Table;

/// `rows` appended to a new store and flushed into one part: the store
/// (its directory kept alive with it) and the part's first row group.
fn one_part(
    rows: &[EventRow],
) -> (
    tempfile::TempDir,
    elide_store::Store,
    parquet::file::metadata::RowGroupMetaData,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, rows);
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    let part = snap.parts(Table::Events).next().unwrap().clone();
    let file = std::fs::File::open(dir.path().join(&part.path)).unwrap();
    let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
    let rg = meta.row_group(0).clone();
    (dir, store, rg)
}

/// The column chunk `name` of `rg`.
fn chunk<'a>(
    rg: &'a parquet::file::metadata::RowGroupMetaData,
    name: &str,
) -> &'a parquet::file::metadata::ColumnChunkMetaData {
    rg.columns()
        .iter()
        .find(|c| c.column_path().string() == name)
        .unwrap()
}

/// Data pages of writer version 2: `person_id` (16 bytes) dictionary
/// encoded, integers delta encoded, `uuid` and `properties` plain (no
/// prefix sharing to gain from, and faster to decode).
#[test]
fn parts_encode_each_column_as_chosen() {
    let rows: Vec<_> = (0..2000u64)
        .map(|n| {
            let mut r = row(n, &format!("d{}", n % 50), 1, 0);
            r.person_id = Some(uuid::Uuid::from_u64_pair(9, n % 50).to_string());
            r
        })
        .collect();
    let (_dir, store, rg) = one_part(&rows);
    let encodings = |name: &str| chunk(&rg, name).encodings().collect::<Vec<_>>();
    assert!(encodings("person_id").contains(&Encoding::RLE_DICTIONARY));
    for c in ["timestamp", "_seq", "inserted_at"] {
        assert!(
            encodings(c).contains(&Encoding::DELTA_BINARY_PACKED),
            "{c}: {:?}",
            encodings(c)
        );
    }
    for c in ["uuid", "properties"] {
        let e = encodings(c);
        assert!(e.contains(&Encoding::PLAIN), "{c}: {e:?}");
        assert!(!e.contains(&Encoding::DELTA_BYTE_ARRAY), "{c}: {e:?}");
    }
    assert!(!encodings("person_id").contains(&Encoding::DELTA_BYTE_ARRAY));
    // Read back alike.
    assert_eq!(visible(&store).len(), 2000);
}

/// An identifier column whose dictionary overflows (more than a page of
/// distinct values) falls back to PLAIN data pages, never to
/// DELTA_BYTE_ARRAY: each text id stays whole in the file, where a
/// byte-level check of an erasure looks (16-byte `person_id`s have an
/// encoder of their own in the parquet crate, so both are tried).
#[test]
fn identifiers_stay_whole_when_the_dictionary_overflows() {
    // 120,000 distinct values (one row group): past a 1 MiB dictionary
    // page even at 16 bytes a value.
    let rows: Vec<_> = (0..120_000u64)
        .map(|n| {
            let mut r = row(n, &format!("someone-with-a-long-id-{n:012}"), 1, 0);
            r.person_id = Some(uuid::Uuid::from_u64_pair(9, n).to_string());
            r
        })
        .collect();
    let (_dir, _store, rg) = one_part(&rows);
    for name in ["distinct_id", "person_id"] {
        // The encodings of the data pages (not the dictionary page's).
        let pages = chunk(&rg, name).page_encoding_stats_mask().unwrap();
        assert!(pages.is_set(Encoding::RLE_DICTIONARY), "{name}: {pages:?}");
        assert!(
            pages.is_set(Encoding::PLAIN),
            "{name}: no PLAIN data page (no overflow, or another fallback): {pages:?}"
        );
        assert!(
            !pages.is_set(Encoding::DELTA_BYTE_ARRAY),
            "{name}: {pages:?}"
        );
    }
}

/// A flushed part's rows are in (`distinct_id`, `_seq`) order, so that each
/// distinct id's rows are one run (docs/format.md): ids shorter and longer
/// than the flush sort's 16-byte prefix, ids that begin alike past it,
/// ids that are prefixes of others and characters of several bytes,
/// appended out of order in several batches, over two projects and two
/// days (the flush groups rows by partition, then sorts each part's).
#[test]
fn a_flushed_part_is_in_distinct_id_order() {
    let long = "0123456789abcdef-shared-";
    let ids: Vec<String> = [
        "a",
        "ab",
        "abc",
        "0123456789abcde",
        "0123456789abcdef",
        "0123456789abcdeg",
        "é",
        "éa",
        "user-1-10",
        "user-1-2",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["", "x", "xx", "y"].iter().map(|t| format!("{long}{t}")))
    .collect();
    let rows: Vec<EventRow> = (0..1400u64)
        .map(|n| {
            let id = &ids[(n * 7919 % ids.len() as u64) as usize];
            // Every id in each of the four parts.
            row(n, id, 1 + ((n / 2) % 2) as i64, ((n / 4) % 2) as i64)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for batch in rows.chunks(250) {
        append(&store, batch);
    }
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    let parts: Vec<_> = snap.parts(Table::Events).cloned().collect();
    assert_eq!(parts.len(), 4);
    let mut all = 0;
    for part in &parts {
        let file = std::fs::File::open(dir.path().join(&part.path)).unwrap();
        let mut got: Vec<(String, u64)> = Vec::new();
        for b in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let d = b.column_by_name("distinct_id").unwrap().as_string::<i32>();
            let s = b
                .column_by_name("_seq")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>();
            got.extend((0..b.num_rows()).map(|i| (d.value(i).to_string(), s.value(i))));
        }
        assert_eq!(got.len() as u64, part.rows, "{}", part.path);
        all += got.len();
        for w in got.windows(2) {
            assert!(w[0] < w[1], "{}: {:?} before {:?}", part.path, w[0], w[1]);
        }
        let seen: std::collections::BTreeSet<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(seen.len(), ids.len(), "{}", part.path);
    }
    assert_eq!(all, rows.len());
}
