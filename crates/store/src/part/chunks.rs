//! Writing buffered rows as parts ([`write_parts`]): a memtable's chunks
//! at a flush, a bulk ingest's buffer as it fills. The rows are grouped
//! by partition, each part's rows sorted by (`distinct_id`, `_seq`) on
//! its own, and gathered from the chunks a row group at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use croaring::Treemap;

use super::{col, day_of, PartBuilder, PartWriterOptions, WrittenPart};
use crate::error::{Result, StoreError};
use crate::gc::Gc;
use crate::memtable::{range_count, Chunk};
use crate::runs_file::runs_path;
use crate::schema::{Table, DISTINCT_ID_COLUMN, PROJECT_COLUMN, TIMESTAMP_COLUMN};
use crate::storage::Storage;

/// Write the rows of `chunks` that are not in `deleted` as parts, one per
/// (table, project, day). Files are written but not synced.
///
/// The chunks are never concatenated: the rows are ordered through a vector
/// of sort keys that borrow from the chunks, grouped by partition
/// ([`partition_keys`]) and sorted a part at a time by the part's writer,
/// and each part's rows are gathered straight from the chunks
/// ([`crate::gather`]), a row group at a time, as the part is written.
/// Peak memory is the chunks plus the keys plus, per worker, the part's
/// keys, one row group and the part's encoded bytes. Parts are encoded on
/// up to `available_parallelism` threads.
///
/// On failure nothing it wrote is left: the files of every part it wrote
/// are discarded through `gc` (which, if a removal fails, marks orphans
/// for the next open's sweep), and a part whose write failed discards
/// what it made itself, never a file that was at its path already. A flush retried under a failing
/// disk so leaks nothing, and no unreferenced part holds rows a deletion
/// could be verified without.
pub(crate) fn write_parts(
    storage: &Storage,
    gc: &Gc,
    opts: &PartWriterOptions,
    chunks: &[Arc<Chunk>],
    deleted: &Treemap,
    alloc_file_id: &mut dyn FnMut() -> u64,
) -> Result<Vec<WrittenPart>> {
    let done = std::sync::Mutex::new(Vec::new());
    let written = write_planned(storage, gc, opts, chunks, deleted, alloc_file_id, &done);
    if written.is_err() {
        // The parts written before the error; one whose write failed has
        // discarded what it made itself (never a path that was there
        // already: `PartBuilder::finish`).
        let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        for path in &done {
            gc.discard(storage, &runs_path(path));
            gc.discard(storage, path);
        }
    }
    written
}

/// [`write_parts`], naming in `done` the path of each part written.
fn write_planned(
    storage: &Storage,
    gc: &Gc,
    opts: &PartWriterOptions,
    chunks: &[Arc<Chunk>],
    deleted: &Treemap,
    alloc_file_id: &mut dyn FnMut() -> u64,
    done: &std::sync::Mutex<Vec<String>>,
) -> Result<Vec<WrittenPart>> {
    let mut by_table: BTreeMap<Table, Vec<&Chunk>> = BTreeMap::new();
    for c in chunks {
        by_table.entry(c.table).or_default().push(c);
    }
    let mut out = Vec::new();
    for (table, chunks) in by_table {
        // The rows grouped by (project, day) in key order; each part's
        // group is sorted by its writer.
        let (keys, partitions) = partition_keys(&chunks, deleted)?;
        let mut groups: Vec<PartJob> = Vec::with_capacity(partitions.len());
        let mut start = 0;
        for ((project, day), rows) in partitions {
            let id = alloc_file_id();
            groups.push(PartJob {
                project,
                day,
                rows: start..start + rows,
                id,
            });
            start += rows;
        }
        let batches: Vec<&RecordBatch> = chunks.iter().map(|c| &c.batch).collect();
        let ids: Vec<&arrow::array::StringArray> = chunks
            .iter()
            .map(|c| Ok(col(&c.batch, DISTINCT_ID_COLUMN)?.as_string::<i32>()))
            .collect::<Result<_>>()?;
        let job = |g: &PartJob| -> Result<WrittenPart> {
            let mut mine = keys[g.rows.clone()].to_vec();
            let id = |k: &SortKey| ids[k.chunk as usize].value(k.row as usize);
            mine.sort_unstable_by(|a, b| {
                cmp_ids((a.prefix, a.len), (b.prefix, b.len), || id(a).cmp(id(b)))
                    .then(a.seq.cmp(&b.seq))
            });
            let idx: Vec<(usize, usize)> = mine
                .iter()
                .map(|k| (k.chunk as usize, k.row as usize))
                .collect();
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| StoreError::Internal("a part with no input".into()))?;
            let mut b = PartBuilder::new(opts, table, g.project, g.day..=g.day, g.id, schema)?;
            b.write_gathered(&batches, &idx, &|| Ok(()))?;
            let part = b
                .finish(storage, gc)?
                .ok_or_else(|| StoreError::Internal("flush wrote an empty part".into()))?;
            done.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(part.meta.path.clone());
            Ok(part)
        };
        out.extend(crate::parallel::try_map(&groups, "part writer", job)?);
    }
    Ok(out)
}

struct PartJob {
    project: i64,
    day: i32,
    rows: std::ops::Range<usize>,
    id: u64,
}

/// Sort key of one live row within its partition (project, day): distinct
/// id, then `_seq`.
///
/// The distinct id is held as `prefix`, its first 16 bytes big-endian
/// and padded with zeros, and `len`, its length: comparing the prefixes
/// orders two ids as comparing the ids does unless they are equal, and
/// then two ids of at most 16 bytes differ only in length (the shorter
/// sorts first, as a prefix does). Only longer ids with equal prefixes
/// are compared whole, read from their chunk. Most comparisons (ids such
/// as `user-1-12345`, or repeats of one id within a day) so never follow
/// a pointer, and a key is 48 bytes.
#[derive(Clone, Copy, Default)]
struct SortKey {
    prefix: u128,
    seq: u64,
    len: u32,
    chunk: u32,
    row: u32,
}

/// The first 16 bytes of `s` as a big-endian number, padded with zeros.
fn id_prefix(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Orders two distinct ids, given as prefix and length ([`SortKey`]);
/// `whole` compares the ids themselves, asked only when the prefixes
/// and lengths cannot tell.
fn cmp_ids(
    a: (u128, u32),
    b: (u128, u32),
    whole: impl FnOnce() -> std::cmp::Ordering,
) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| {
        if a.1 <= 16 && b.1 <= 16 {
            a.1.cmp(&b.1)
        } else {
            whole()
        }
    })
}

/// A partition, (project, day), and its number of live rows.
type Partition = ((i64, i32), usize);

/// The live rows of `chunks` (not in `deleted`) grouped by partition:
/// the keys of each (project, day) together, partitions in order and rows
/// within one in chunk order, with the partitions and their row counts.
///
/// A counting sort: one pass numbers each row's partition, one places
/// its key. Each partition's rows are then sorted on their own (by the
/// part's writer): ~20k keys (~1 MB) at a time on average at 10M events,
/// in the cache, instead of one sort of every key of the flush (measured
/// in docs/benchmarks.md, "Ingest: each partition sorted on its own").
fn partition_keys(chunks: &[&Chunk], deleted: &Treemap) -> Result<(Vec<SortKey>, Vec<Partition>)> {
    let total: usize = chunks.iter().map(|c| c.batch.num_rows()).sum();
    // Each row's partition number (in order of first sight), or NONE for
    // a deleted row; rows of one partition mostly come together, so the
    // last one is tried before the map.
    const NONE: u32 = u32::MAX;
    let mut numbers: std::collections::HashMap<(i64, i32), u32> = Default::default();
    let mut counts: Vec<usize> = Vec::new();
    let mut part_of: Vec<u32> = Vec::with_capacity(total);
    let mut last: Option<((i64, i32), u32)> = None;
    for c in chunks {
        let b = &c.batch;
        let n = b.num_rows() as u64;
        let projects = col(b, PROJECT_COLUMN)?.as_primitive::<Int64Type>();
        let ts = col(b, TIMESTAMP_COLUMN)?.as_primitive::<TimestampMicrosecondType>();
        let any_deleted = range_count(deleted, c.seq_start, c.seq_start + n) > 0;
        for i in 0..b.num_rows() {
            if any_deleted && deleted.contains(c.seq_start + i as u64) {
                part_of.push(NONE);
                continue;
            }
            let key = (projects.value(i), day_of(ts.value(i)));
            let g = match last {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *numbers.entry(key).or_insert_with(|| {
                        counts.push(0);
                        (counts.len() - 1) as u32
                    });
                    last = Some((key, g));
                    g
                }
            };
            counts[g as usize] += 1;
            part_of.push(g);
        }
    }
    let mut order: Vec<((i64, i32), u32)> = numbers.into_iter().collect();
    order.sort_unstable();
    // Each partition's next free slot.
    let mut next = vec![0usize; counts.len()];
    let mut at = 0;
    for &(_, g) in &order {
        next[g as usize] = at;
        at += counts[g as usize];
    }
    let mut keys = vec![SortKey::default(); at];
    let mut j = 0;
    for (ci, c) in chunks.iter().enumerate() {
        let dids = col(&c.batch, DISTINCT_ID_COLUMN)?.as_string::<i32>();
        for i in 0..c.batch.num_rows() {
            let g = part_of[j];
            j += 1;
            if g == NONE {
                continue;
            }
            let did = dids.value(i);
            keys[next[g as usize]] = SortKey {
                prefix: id_prefix(did),
                len: u32::try_from(did.len()).unwrap_or(u32::MAX),
                seq: c.seq_start + i as u64,
                chunk: ci as u32,
                row: i as u32,
            };
            next[g as usize] += 1;
        }
    }
    let partitions = order
        .into_iter()
        .map(|(k, g)| (k, counts[g as usize]))
        .collect();
    Ok((keys, partitions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::part::MICROS_PER_DAY;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::DataType;
    use arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;

    /// A chunk of rows (project, day, distinct id) from `seq_start`.
    fn chunk(seq_start: u64, rows: &[(i64, i32, String)]) -> Chunk {
        let schema = Arc::new(Schema::new(vec![
            Field::new(PROJECT_COLUMN, DataType::Int64, false),
            Field::new(TIMESTAMP_COLUMN, crate::schema::timestamp_type(), false),
            Field::new(DISTINCT_ID_COLUMN, DataType::Utf8, false),
        ]));
        let projects = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        // Any moment of the day, some before the epoch.
        let ts =
            TimestampMicrosecondArray::from_iter_values(rows.iter().enumerate().map(|(i, r)| {
                i64::from(r.1) * MICROS_PER_DAY + (i as i64 * 7_919_000_000) % MICROS_PER_DAY
            }))
            .with_timezone("UTC");
        let ids = StringArray::from_iter_values(rows.iter().map(|r| r.2.as_str()));
        Chunk {
            table: Table::Events,
            seq_start,
            batch: RecordBatch::try_new(
                schema,
                vec![Arc::new(projects), Arc::new(ts), Arc::new(ids)],
            )
            .expect("batch"),
        }
    }

    /// A flush whose part meets a file already at its path (on an object
    /// store, a stale writer's id meeting a live one's) fails, leaves that
    /// file as it was, and removes the parts it wrote itself.
    #[test]
    fn a_flush_refused_at_an_existing_path_removes_only_its_own_parts() {
        let ts = 1_790_000_000_000_000;
        let batch = crate::part::test_events(&[("a", ts), ("b", ts + MICROS_PER_DAY)]);
        let chunk = Arc::new(Chunk {
            table: Table::Events,
            seq_start: 0,
            batch,
        });
        let dir = tempfile::tempdir().expect("dir");
        let storage = Storage::local(dir.path(), Arc::new(crate::io::StdFs)).expect("storage");
        let gc = Gc::default();
        let day = day_of(ts);
        let theirs = crate::format::part_path(Table::Events, 1, day, 7);
        let full = dir.path().join(&theirs);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("dirs");
        std::fs::write(&full, b"another writer's part").expect("theirs");
        let mut next = 7;
        let mut alloc = || {
            next += 1;
            next - 1
        };
        let e = write_parts(
            &storage,
            &gc,
            &PartWriterOptions::default(),
            &[chunk],
            &Treemap::new(),
            &mut alloc,
        )
        .unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(
            std::fs::read(&full).expect("kept"),
            b"another writer's part"
        );
        let ours = crate::format::part_path(Table::Events, 1, day + 1, 8);
        assert!(!dir.path().join(&ours).exists(), "{ours} left");
        assert!(!dir.path().join(runs_path(&ours)).exists());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The partitions come in (project, day) order with their row
        /// counts; each holds exactly the live rows of its partition, in
        /// `_seq` order; deleted rows are in none.
        #[test]
        fn partition_keys_groups_the_live_rows(
            chunks in proptest::collection::vec(
                proptest::collection::vec((1i64..4, -2i32..3, "[ab]{0,3}"), 0..30),
                1..4,
            ),
            deleted in proptest::collection::vec(0u64..100, 0..20),
        ) {
            let mut seq = 0;
            let chunks: Vec<Chunk> = chunks
                .iter()
                .map(|rows| {
                    let c = chunk(seq, rows);
                    seq += rows.len() as u64;
                    c
                })
                .collect();
            let refs: Vec<&Chunk> = chunks.iter().collect();
            let deleted = Treemap::from_iter(deleted.iter().copied());
            let (keys, partitions) = partition_keys(&refs, &deleted).expect("partition");
            prop_assert!(partitions.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert_eq!(partitions.iter().map(|p| p.1).sum::<usize>(), keys.len());
            let mut at = 0;
            for &(part, rows) in &partitions {
                let mine = &keys[at..at + rows];
                at += rows;
                prop_assert!(mine.windows(2).all(|w| w[0].seq < w[1].seq));
                for k in mine {
                    let c = &chunks[k.chunk as usize];
                    prop_assert_eq!(c.seq_start + u64::from(k.row), k.seq);
                    let b = &c.batch;
                    let project = b.column(0).as_primitive::<Int64Type>().value(k.row as usize);
                    let ts = b.column(1).as_primitive::<TimestampMicrosecondType>().value(k.row as usize);
                    let id = b.column(2).as_string::<i32>().value(k.row as usize);
                    prop_assert_eq!((project, day_of(ts)), part);
                    prop_assert_eq!((k.prefix, k.len), (id_prefix(id), id.len() as u32));
                }
            }
            let live: Vec<u64> = (0..seq).filter(|s| !deleted.contains(*s)).collect();
            let mut got: Vec<u64> = keys.iter().map(|k| k.seq).collect();
            got.sort_unstable();
            prop_assert_eq!(got, live);
        }
    }

    proptest! {
        /// Comparing prefixes and lengths orders ids exactly as comparing
        /// the ids does: ids shorter and longer than 16 bytes, zero bytes,
        /// shared beginnings and characters of several bytes.
        #[test]
        fn the_prefix_keeps_the_ids_order(
            a in "[a\\x00é]{0,20}",
            b in "[a\\x00é]{0,20}",
            shared in "[ab\\x00]{0,18}",
        ) {
            for (x, y) in [(a.clone(), b.clone()), (format!("{shared}{a}"), format!("{shared}{b}"))] {
                let key = |s: &str| (id_prefix(s), s.len() as u32);
                let got = cmp_ids(key(&x), key(&y), || x.cmp(&y));
                prop_assert_eq!(got, x.cmp(&y), "{:?} {:?}", x, y);
            }
        }
    }
}
