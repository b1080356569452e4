//! Reading a parquet input on several threads, in the file's order.
//!
//! A bulk ingest's reading (decompressing and decoding pages, then
//! checking each batch with [`crate::normalize`]) ran on one thread and
//! was the ingest's critical path: its part writers kept up and then
//! waited (docs/benchmarks.md, "Ingest: the input read on every core").
//! [`read_in_order`] decodes row group `g` on thread `g % threads`, runs
//! `prepare` on each batch on the thread that decoded it, and hands the
//! results to `sink` on the caller's thread **in the file's order**: the
//! sink sees the batches one reader would have produced, with the same
//! rows in the same order (batch boundaries may differ at row groups).
//!
//! Memory: while the sink takes one thread's row group, the other
//! threads read theirs ahead, each up to a row group of prepared
//! batches, but together at most [`QUEUED_ROWS`] rows (and at least two
//! batches each). Deeper queues let the threads run further ahead of a
//! sink that waits for the part writer, and measured no faster, for
//! ~350 MiB more per million rows (docs/benchmarks.md).
//!
//! **The first round.** The exception is the first row group of each
//! thread: together they may be read ahead whole (up to one row group
//! more than the sink's own). While the sink takes the file's first row
//! group, nothing else runs (a bulk ingest's first buffer is still
//! filling, no part writer has started), and with the steady-state bound
//! every thread but one waited: a 10M-row ingest kept a core idle for its
//! first 0.7 s (docs/benchmarks.md, "Ingest: the first row groups read
//! on every core"). The rows read ahead are the ones the sink takes next,
//! so the peak is that of the steady state: a full buffer being written
//! while the next one fills. Row groups larger than a buffer (1 Mi rows)
//! are read ahead only that far ([`FIRST_ROUND_ROWS`]): without the cap,
//! a file of two 64 Mi-row groups was read ahead whole.
//!
//! **Strings as views.** The columns `as_view` names that the file
//! holds as `Utf8` are read as `Utf8View`: views of the decoded pages,
//! where a `Utf8` array copies every value into a buffer that grows page
//! by page (its doublings were ~5% of an ingest's CPU, page faults
//! included). `prepare` copies them once at their exact size, or parses
//! them (docs/benchmarks.md, "Ingest: the input's strings read as
//! views").
//!
//! A failure stops the reading: a damaged row group is returned as
//! soon as the sink reaches it (row groups before it are delivered
//! first, as one reader would have); a `prepare` error is delivered to
//! the sink in its place; a sink error returns at once. Either way the
//! threads stop at their next batch, and a thread that panicked is an
//! error, not a panic of the caller.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::{Result, StoreError};

/// Most threads one input is read on.
const MAX_THREADS: usize = 4;

/// Rows all threads together may hold prepared before the sink takes
/// them (~90 MiB of the comparison's events, at the ~350 bytes a row
/// measured in docs/benchmarks.md).
const QUEUED_ROWS: usize = 256 << 10;

/// Rows each thread may read ahead in the first round, at most (the
/// module docs): a row group of the usual size (1 Mi rows, as Elide,
/// DuckDB and pyarrow write) is read ahead whole, a larger one (64 Mi rows
/// in old pyarrow files) only this far, so memory does not grow with the
/// input's row groups.
const FIRST_ROUND_ROWS: usize = 1 << 20;

/// What a reading thread sends, in its row groups' order.
enum Msg<T> {
    /// A batch, prepared (or the error `prepare` returned for it).
    Batch(Result<T>),
    /// The end of a row group.
    GroupEnd,
    /// The row group cannot be read.
    Damaged(StoreError),
}

/// Read the parquet file at `path` (named `name` in errors) in batches
/// of up to `batch_rows` rows, `prepare` each on the thread that read it
/// and pass the results to `sink` in the file's order; the `Utf8` columns
/// `as_view` names arrive as `Utf8View` (see the module docs).
pub(crate) fn read_in_order<T: Send>(
    name: &str,
    path: &Path,
    batch_rows: usize,
    as_view: &dyn Fn(&str) -> bool,
    prepare: &(dyn Fn(RecordBatch) -> Result<T> + Sync),
    sink: &mut dyn FnMut(Result<T>) -> Result<()>,
) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    read_on(cores, name, path, batch_rows, as_view, prepare, sink)
}

/// The rows row group `i` holds, if its footer entry is consistent: the
/// row count is not negative, and each column that is not nested holds a
/// value (or a null) per row. The reader takes the row count on trust (it
/// stops there, and it sized an allocation of ours): a damaged count would
/// drop rows without an error, or abort the process.
fn claimed_rows(
    name: &str,
    i: usize,
    g: &parquet::file::metadata::RowGroupMetaData,
) -> Result<usize> {
    let damaged = |why: String| {
        StoreError::InvalidInput(format!(
            "{name}: not a readable parquet file (damaged footer?): row group {i} {why}"
        ))
    };
    let rows = usize::try_from(g.num_rows())
        .map_err(|_| damaged(format!("claims {} rows", g.num_rows())))?;
    for c in g.columns() {
        if c.column_descr().max_rep_level() == 0 && c.num_values() != g.num_rows() {
            return Err(damaged(format!(
                "claims {} rows, but its column `{}` holds {} values",
                g.num_rows(),
                c.column_path(),
                c.num_values()
            )));
        }
    }
    Ok(rows)
}

/// [`read_in_order`] on at most `cores` threads.
fn read_on<T: Send>(
    cores: usize,
    name: &str,
    path: &Path,
    batch_rows: usize,
    as_view: &dyn Fn(&str) -> bool,
    prepare: &(dyn Fn(RecordBatch) -> Result<T> + Sync),
    sink: &mut dyn FnMut(Result<T>) -> Result<()>,
) -> Result<()> {
    let file = open(name, path)?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        StoreError::InvalidInput(format!(
            "{name}: not a readable parquet file (damaged footer or schema?): {e}"
        ))
    })?;
    // Chunks outside the file: parquet's reader asserts on a negative
    // offset or size (a panic on a reading thread).
    let size = file
        .metadata()
        .map_err(|e| StoreError::io(path.display(), e))?
        .len();
    crate::checksum::chunks_within(meta.metadata(), size).map_err(|why| {
        StoreError::InvalidInput(format!(
            "{name}: not a readable parquet file (damaged footer?): {why}"
        ))
    })?;
    let meta = strings_as_views(meta, as_view);
    let groups = meta.metadata().num_row_groups();
    let threads = cores.clamp(1, MAX_THREADS).min(groups.max(1));
    let mut group_rows = 0usize;
    for (i, g) in meta.metadata().row_groups().iter().enumerate() {
        group_rows = group_rows.max(claimed_rows(name, i, g)?);
    }
    let batch_rows = batch_rows.max(1);
    let group_batches = group_rows.div_ceil(batch_rows);
    // Messages (batches and group ends) a thread may have sent that the
    // sink has not taken: in the first round, its share of one row group
    // (see the module docs); after it, its share of QUEUED_ROWS.
    let queue = group_batches.min(QUEUED_ROWS / batch_rows / threads).max(2);
    let first_round = match threads {
        1 => queue,
        _ => group_batches
            .min(FIRST_ROUND_ROWS.div_ceil(batch_rows))
            .div_ceil(threads - 1)
            .saturating_add(1)
            .max(queue),
    };
    let stop = AtomicBool::new(false);
    let taken: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let reader = Reader {
        name,
        path,
        batch_rows,
        meta: &meta,
        prepare,
        stop: &stop,
    };
    std::thread::scope(|s| {
        // Set when this closure ends, by a return or by a panic of the
        // sink: a thread waiting for the sink to take its messages then
        // stops (a panic would otherwise wait on threads that wait on it).
        let _stopping = StopOnDrop(&stop);
        let mut queues = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (first, taken) in taken.iter().enumerate() {
            // Unbounded: the lane bounds what is in flight (a bound here
            // would be allocated whole, and a footer chooses it).
            let (tx, rx) = channel();
            queues.push(rx);
            let lane = Lane {
                tx,
                taken,
                sent: 0,
                limit: first_round,
            };
            let reader = &reader;
            handles.push(s.spawn(move || {
                reader.read_groups((first..groups).step_by(threads), lane, queue);
            }));
        }
        let delivered = (|| {
            for g in 0..groups {
                let t = g % threads;
                loop {
                    let msg = queues[t].recv();
                    taken[t].fetch_add(1, Ordering::Release);
                    handles[t].thread().unpark();
                    match msg {
                        Ok(Msg::Batch(b)) => sink(b)?,
                        Ok(Msg::GroupEnd) => break,
                        Ok(Msg::Damaged(e)) => return Err(e),
                        Err(_) => {
                            return Err(StoreError::Internal(format!(
                                "a thread reading {name} stopped before row group {g}"
                            )))
                        }
                    }
                }
            }
            Ok(())
        })();
        // Stop the threads (a thread blocked on a full queue wakes when
        // its receiver is dropped, a parked one when unparked) and keep a
        // panic from crossing.
        stop.store(true, Ordering::Relaxed);
        drop(queues);
        for h in &handles {
            h.thread().unpark();
        }
        // Every thread is joined (a panic left unjoined would cross the
        // scope's end).
        let panicked = handles
            .into_iter()
            .map(|h| h.join().is_err())
            .fold(false, |any, p| any | p);
        match delivered {
            Err(e) => Err(e),
            Ok(()) if panicked => Err(StoreError::Internal(format!(
                "a thread reading {name} panicked"
            ))),
            Ok(()) => Ok(()),
        }
    })
}

/// `meta` reading the top-level `Utf8` columns `as_view` names as
/// `Utf8View`, every other column as before. If the reader refuses that
/// schema, `meta` as it is (the values are the same either way).
fn strings_as_views(
    meta: ArrowReaderMetadata,
    as_view: &dyn Fn(&str) -> bool,
) -> ArrowReaderMetadata {
    let schema = meta.schema();
    let view = |f: &FieldRef| f.data_type() == &DataType::Utf8 && as_view(f.name());
    if !schema.fields().iter().any(view) {
        return meta;
    }
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match view(f) {
            true => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View)),
            false => Arc::clone(f),
        })
        .collect();
    let hint = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    match ArrowReaderMetadata::try_new(
        Arc::clone(meta.metadata()),
        ArrowReaderOptions::new().with_schema(hint),
    ) {
        Ok(views) => views,
        Err(e) => {
            tracing::debug!("strings read as they are, not as views: {e}");
            meta
        }
    }
}

/// A file being read, and what its threads share.
struct Reader<'a, T> {
    name: &'a str,
    path: &'a Path,
    batch_rows: usize,
    meta: &'a ArrowReaderMetadata,
    prepare: &'a (dyn Fn(RecordBatch) -> Result<T> + Sync),
    stop: &'a AtomicBool,
}

fn open(name: &str, path: &Path) -> Result<File> {
    File::open(path).map_err(|e| StoreError::InvalidInput(format!("cannot open {name}: {e}")))
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One thread's way to the sink: its queue, and how many of the
/// messages it sent the sink has taken.
struct Lane<'a, T> {
    tx: Sender<Msg<T>>,
    taken: &'a AtomicUsize,
    sent: usize,
    /// Most messages sent and not yet taken.
    limit: usize,
}

impl<T> Lane<'_, T> {
    /// Send `msg` once fewer than `limit` messages are waiting for the
    /// sink; false if the sink is gone or `stop` was set meanwhile.
    fn send(&mut self, msg: Msg<T>, stop: &AtomicBool) -> bool {
        while self.sent - self.taken.load(Ordering::Acquire) >= self.limit {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            // The sink unparks this thread after each message it takes;
            // the timeout only bounds a wake-up that raced the check.
            std::thread::park_timeout(std::time::Duration::from_millis(10));
        }
        self.sent += 1;
        self.tx.send(msg).is_ok()
    }
}

impl<T> Reader<'_, T> {
    /// One thread's share: each of `groups` in turn, every batch prepared
    /// and sent, then the group's end; the first group with the lane's
    /// own limit, the next ones with `queue`. Returns at the first
    /// failure (sent) or when the receiver is gone or `stop` is set.
    fn read_groups(
        &self,
        groups: impl Iterator<Item = usize>,
        mut lane: Lane<'_, T>,
        queue: usize,
    ) {
        let name = self.name;
        for (round, g) in groups.enumerate() {
            if round == 1 {
                lane.limit = queue;
            }
            let reader = open(name, self.path).and_then(|f| {
                ParquetRecordBatchReaderBuilder::new_with_metadata(f, self.meta.clone())
                    .with_row_groups(vec![g])
                    .with_batch_size(self.batch_rows)
                    .build()
                    .map_err(|e| {
                        StoreError::InvalidInput(format!(
                            "{name}: not a readable parquet file: {e}"
                        ))
                    })
            });
            let reader = match reader {
                Ok(r) => r,
                Err(e) => {
                    lane.send(Msg::Damaged(e), self.stop);
                    return;
                }
            };
            for b in reader {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let msg = match b {
                    Ok(b) => Msg::Batch((self.prepare)(b)),
                    Err(e) => Msg::Damaged(StoreError::InvalidInput(format!(
                        "{name}: damaged parquet data: {e}"
                    ))),
                };
                let last = !matches!(msg, Msg::Batch(Ok(_)));
                if !lane.send(msg, self.stop) || last {
                    return;
                }
            }
            if !lane.send(Msg::GroupEnd, self.stop) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// A file of `rows` rows 0.. in row groups of `group_rows`.
    fn file(dir: &Path, rows: i64, group_rows: usize) -> std::path::PathBuf {
        let path = dir.join(format!("in-{rows}-{group_rows}.parquet"));
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), Some(props))
            .unwrap();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    /// `path` with each row group's row count in the footer replaced by
    /// `claimed`.
    fn with_claimed_rows(path: &Path, claimed: i64) -> std::path::PathBuf {
        with_footer(path, &format!("claims-{claimed}"), &|g| {
            g.into_builder().set_num_rows(claimed).build().unwrap()
        })
    }

    /// `path` with each row group of its footer passed through `change`,
    /// as `<path>.<name>.parquet`.
    fn with_footer(
        path: &Path,
        name: &str,
        change: &dyn Fn(
            parquet::file::metadata::RowGroupMetaData,
        ) -> parquet::file::metadata::RowGroupMetaData,
    ) -> std::path::PathBuf {
        use parquet::file::metadata::{ParquetMetaDataReader, ParquetMetaDataWriter};
        let bytes = std::fs::read(path).unwrap();
        let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..][..4].try_into().unwrap());
        let data_end = bytes.len() - 8 - footer_len as usize;
        let md = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
            .unwrap();
        let groups = md.row_groups().iter().map(|g| change(g.clone())).collect();
        let md = md.into_builder().set_row_groups(groups).build();
        let mut out = bytes[..data_end].to_vec();
        ParquetMetaDataWriter::new(&mut out, &md).finish().unwrap();
        let damaged = path.with_extension(format!("{name}.parquet"));
        std::fs::write(&damaged, out).unwrap();
        damaged
    }

    /// A footer whose row groups claim a row count their columns do not
    /// hold (negative, enormous, or short) is an error, on any number of
    /// threads: the count sized an upfront allocation (the channel of a
    /// thread's first row group), and a negative one aborted the process;
    /// the reader stops at the count, so a short one dropped rows.
    #[test]
    fn a_footer_claiming_impossible_row_counts_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 200, 100);
        // (Two row groups: the footer's total must not overflow.)
        for claimed in [-1, i64::MIN / 2, i64::MAX / 2, 1 << 40, 99, 0] {
            let damaged = with_claimed_rows(&path, claimed);
            for cores in [1, 2, 4] {
                let r = read_damaged(cores, &damaged);
                let e = r.expect_err("an impossible row count is refused");
                assert!(e.to_string().contains("in:"), "{claimed} on {cores}: {e}");
            }
        }
    }

    /// Read `path` (named `in`) on `cores` threads, keeping nothing.
    fn read_damaged(cores: usize, path: &Path) -> Result<()> {
        read_on(
            cores,
            "in",
            path,
            64,
            &|_| false,
            &|b| Ok(values(&b)),
            &mut |v| v.map(drop),
        )
    }

    /// A footer whose column chunks lie outside the file (a negative
    /// offset or size, or past its end) is an error naming the input, not
    /// a panic of the parquet reader's assertion on a reading thread.
    #[test]
    fn a_footer_placing_chunks_outside_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 200, 100);
        let cases: [(&str, i64, i64); 3] = [
            ("negative-offset", -5, 100),
            ("negative-size", 4, -100),
            ("past-the-end", 4, 1 << 40),
        ];
        for (name, offset, size) in cases {
            let damaged = with_footer(&path, name, &|g| {
                let columns = g
                    .columns()
                    .iter()
                    .map(|c| {
                        c.clone()
                            .into_builder()
                            .set_data_page_offset(offset)
                            .set_dictionary_page_offset(None)
                            .set_total_compressed_size(size)
                            .build()
                            .unwrap()
                    })
                    .collect();
                g.into_builder()
                    .set_column_metadata(columns)
                    .build()
                    .unwrap()
            });
            for cores in [1, 2] {
                let r = read_damaged(cores, &damaged);
                let e = r.expect_err("chunks outside the file are refused");
                assert!(
                    matches!(&e, StoreError::InvalidInput(m) if m.starts_with("in:") && m.contains("outside the file")),
                    "{name} on {cores}: {e}"
                );
            }
        }
    }

    fn values(b: &RecordBatch) -> Vec<i64> {
        b.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    /// Every row, once, in the file's order, whatever the row groups and
    /// batch sizes.
    #[test]
    fn rows_arrive_in_the_files_order() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, group_rows, batch_rows) in [
            (0, 10, 4),
            (1, 10, 4),
            (1000, 7, 3),
            (1000, 100, 64),
            (5000, 1000, 1000),
            (999, 1000, 10_000),
        ] {
            let path = file(dir.path(), rows, group_rows);
            let mut seen = Vec::new();
            read_in_order(
                "in",
                &path,
                batch_rows,
                &|_| false,
                &|b| Ok(values(&b)),
                &mut |v| {
                    seen.extend(v?);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(
                seen,
                (0..rows).collect::<Vec<_>>(),
                "{rows} rows, groups of {group_rows}"
            );
        }
    }

    /// While the sink holds the file's first batch, the other thread
    /// reads its whole first row group ahead, beyond the steady-state
    /// bound; its next row group then waits for the sink.
    #[test]
    fn the_first_round_is_read_ahead_whole_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        // Row groups of 300k rows in batches of 1000: the steady-state
        // bound (QUEUED_ROWS over two threads) is 131 batches a thread.
        let path = file(dir.path(), 1_200_000, 300_000);
        let now = read_ahead_at_first_batch(&path, 600);
        assert!(
            now >= 600,
            "the first two row groups were not read ahead: {now} batches"
        );
        // Each thread may prepare one batch of its next row group, which
        // then waits for the sink.
        assert!(now <= 602, "read beyond the first round: {now} batches");
    }

    /// Row groups larger than [`FIRST_ROUND_ROWS`] are not read ahead
    /// whole: memory does not grow with the input's row groups.
    #[test]
    fn the_first_round_of_large_row_groups_stops_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        // Two row groups of twice the cap, in batches of 1000.
        let group = 2 * FIRST_ROUND_ROWS;
        let path = file(dir.path(), 2 * group as i64, group);
        let per_thread = FIRST_ROUND_ROWS.div_ceil(1000) + 1;
        let now = read_ahead_at_first_batch(&path, 2 * per_thread - 2);
        // (The first thread's limit counts from the batch the sink took;
        // each thread may prepare one batch more, which then waits.)
        assert!(
            now >= 2 * per_thread - 2 && now <= 2 * per_thread + 4,
            "read ahead {now} batches; the cap is {per_thread} a thread (a row group is {})",
            group / 1000
        );
    }

    /// Batches of 1000 rows of `path` prepared on 2 threads while the sink
    /// holds the first one: once `expected` are (or after 30 s), and 300
    /// ms later, so that a reader past its bound would show. Every row
    /// still arrives once.
    fn read_ahead_at_first_batch(path: &Path, expected: usize) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        let prepared = AtomicUsize::new(0);
        let mut seen = None;
        let (mut rows, mut calls) = (0usize, 0usize);
        read_on(
            2,
            "in",
            path,
            1000,
            &|_| false,
            &|b| {
                prepared.fetch_add(1, Ordering::SeqCst);
                Ok(b.num_rows())
            },
            &mut |n| {
                rows += n?;
                calls += 1;
                if calls == 1 {
                    let until = Instant::now() + Duration::from_secs(30);
                    while prepared.load(Ordering::SeqCst) < expected && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    std::thread::sleep(Duration::from_millis(300));
                    seen = Some(prepared.load(Ordering::SeqCst));
                }
                Ok(())
            },
        )
        .unwrap();
        // Batches restart at each row group.
        let groups: Vec<usize> =
            ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap()
                .metadata()
                .row_groups()
                .iter()
                .map(|g| usize::try_from(g.num_rows()).unwrap())
                .collect();
        assert_eq!(rows, groups.iter().sum::<usize>());
        assert_eq!(
            calls,
            groups.iter().map(|g| g.div_ceil(1000)).sum::<usize>()
        );
        seen.unwrap_or(0)
    }

    /// A sink that panics stops the threads (one waiting for the sink to
    /// take its batches included) and the panic reaches the caller.
    #[test]
    fn a_panicking_sink_does_not_leave_the_threads_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 1_200_000, 300_000);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_on(
                2,
                "in",
                &path,
                1000,
                &|_| false,
                &|b| Ok(b.num_rows()),
                &mut |_| panic!("the sink failed"),
            )
        }));
        assert!(r.is_err());
    }

    /// A `prepare` error reaches the sink after every batch before it, and
    /// the reading stops; a sink error is returned as it is.
    #[test]
    fn errors_stop_the_reading_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 10_000, 100);
        let mut seen = Vec::new();
        let err = read_in_order(
            "in",
            &path,
            10,
            &|_| false,
            &|b| {
                let v = values(&b);
                if v.contains(&5_555) {
                    return Err(StoreError::InvalidInput("bad".into()));
                }
                Ok(v)
            },
            &mut |v| {
                seen.extend(v?);
                Ok(())
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput(ref m) if m == "bad"),
            "{err}"
        );
        assert_eq!(seen, (0..5_550).collect::<Vec<_>>());

        let mut batches = 0;
        let err = read_in_order(
            "in",
            &path,
            10,
            &|_| false,
            &|b| Ok(b.num_rows()),
            &mut |_| {
                batches += 1;
                if batches == 3 {
                    return Err(StoreError::InvalidInput("sink".into()));
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput(ref m) if m == "sink"),
            "{err}"
        );
        assert_eq!(batches, 3);
    }

    /// A damaged row group is an error once the row groups before it are
    /// delivered; a file that is not parquet is refused before any read.
    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 10_000, 1000);
        let meta =
            ArrowReaderMetadata::load(&File::open(&path).unwrap(), ArrowReaderOptions::new())
                .unwrap();
        // Row group 5's first page header, overwritten (the footer stays intact).
        let at = meta.metadata().row_group(5).column(0).data_page_offset() as usize;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at..at + 32].fill(0xff);
        std::fs::write(&path, &bytes).unwrap();
        let mut seen = 0usize;
        let err = read_in_order(
            "in",
            &path,
            100,
            &|_| false,
            &|b| Ok(b.num_rows()),
            &mut |n| {
                seen += n?;
                Ok(())
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("damaged parquet data"), "{err}");
        assert_eq!(seen, 5_000);

        let not_parquet = dir.path().join("x.parquet");
        std::fs::write(&not_parquet, b"not parquet at all").unwrap();
        let err = read_in_order(
            "x",
            &not_parquet,
            100,
            &|_| false,
            &|b| Ok(b.num_rows()),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not a readable parquet file"),
            "{err}"
        );
    }

    /// The `Utf8` columns `as_view` names arrive as `Utf8View` with the
    /// same values (nulls, empty and long strings, plain and dictionary
    /// pages); the others, and columns of other types, as they were.
    #[test]
    fn named_string_columns_arrive_as_views_of_the_same_values() {
        use arrow::array::{Array, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strings.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("long", DataType::Utf8, true),
            Field::new("short", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let long: StringArray = (0..3000)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                _ => Some(format!(
                    "{{\"value\": {i}, \"padding\": \"{}\"}}",
                    "x".repeat(i % 50)
                )),
            })
            .collect();
        let short: StringArray = (0..3000).map(|i| Some(format!("e{}", i % 5))).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(long.clone()),
                Arc::new(short.clone()),
                Arc::new(Int64Array::from_iter_values(0..3000)),
            ],
        )
        .unwrap();
        // Dictionary pages for one column, plain for the other.
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .set_data_page_row_count_limit(128)
            .set_column_dictionary_enabled("long".into(), false)
            .build();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        for views in [false, true] {
            let mut got: Vec<RecordBatch> = Vec::new();
            let as_view = |c: &str| views && c != "n";
            read_in_order("in", &path, 333, &as_view, &|b| Ok(b), &mut |b| {
                got.push(b?);
                Ok(())
            })
            .unwrap();
            let want = if views {
                DataType::Utf8View
            } else {
                DataType::Utf8
            };
            for b in &got {
                assert_eq!(b.column(0).data_type(), &want);
                assert_eq!(b.column(1).data_type(), &want);
                assert_eq!(b.column(2).data_type(), &DataType::Int64);
            }
            let all = arrow::compute::concat_batches(&got[0].schema(), &got).unwrap();
            for (i, expected) in [&long, &short].into_iter().enumerate() {
                let c = arrow::compute::cast(all.column(i), &DataType::Utf8).unwrap();
                let c = c.as_string::<i32>();
                assert_eq!(c.len(), expected.len());
                assert_eq!(c, expected, "column {i}, views {views}");
            }
        }
    }
}
