//! Ingesting whole inputs: [`Store::ingest`] (any iterator of Arrow
//! batches, such as a `RecordBatchReader`) and [`Store::ingest_files`]
//! (parquet and JSON-lines files, standard input).
//!
//! Both are one [`BulkIngest`]: every batch is validated as it arrives,
//! parts are written as the buffer fills (memory stays bounded by the
//! memtable limits, whatever the input's size), and everything is
//! published by one commit at the end. A bad row anywhere, a failed read,
//! a full disk or a kill leaves the store as it was: **all or nothing**,
//! the guarantee of `elide ingest`, which is built on this module. The
//! one error after which the caller cannot know which it was is
//! [`StoreError::OutcomeUnknown`] (the commit's manifest may have landed):
//! reopen the store and look before retrying.
//!
//! **Column mapping.** Inputs written by other tools name columns their
//! way (`$session_id`, `distinct_id_str`...). [`IngestOptions::rename`]
//! maps an input column to an Elide column before validation; a mapped
//! column the input does not have is an error (a typo never silently
//! drops data), and so is any input column that is neither an Elide
//! column nor mapped to one. Renames apply to Arrow batches and parquet
//! files; JSON-lines files name their fields as Elide does
//! ([`crate::jsonl`]), and their renames are not applied.
//!
//! **Timestamps.** A `timestamp` column may be an Arrow timestamp of any
//! unit or an ISO-8601 string. A timestamp with a time zone is an instant
//! and is stored as that instant. A *naive* timestamp (an Arrow timestamp
//! without a time zone, as pandas and Spark write `datetime64` columns,
//! or a string without an offset) is read as UTC wall-clock time: no
//! local time zone is ever applied. Values outside 1970-01-01 ..
//! 9999-12-31 are refused with the row named.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::bulk::{BulkIngest, IngestOutcome};
use crate::error::{Result, StoreError};
use crate::normalize::{normalize, NormalizedBatch};
use crate::schema::{ColumnKind, Table};
use crate::store::Store;

/// Rows per batch read from a file.
const FILE_BATCH_ROWS: usize = 64 * 1024;

/// How far an ingest has got, passed to [`IngestOptions::progress`] after
/// each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestProgress {
    /// Rows validated so far, over every input.
    pub rows: u64,
    /// Index of the input being read (0 for [`Store::ingest`]).
    pub input: usize,
}

/// Options of [`Store::ingest`] and [`Store::ingest_files`].
///
/// ```
/// use elide_store::IngestOptions;
/// let opts = IngestOptions::new()
///     .rename("$session_id", "session_id")
///     .progress(|p| eprintln!("{} rows", p.rows));
/// ```
#[derive(Default)]
pub struct IngestOptions<'a> {
    renames: Vec<(String, String)>,
    progress: Option<Box<dyn FnMut(IngestProgress) + 'a>>,
}

impl std::fmt::Debug for IngestOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("renames", &self.renames)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl<'a> IngestOptions<'a> {
    /// No renames, no progress callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read the input column `from` as the Elide column `to`.
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.push((from.into(), to.into()));
        self
    }

    /// Call `f` after each batch is validated.
    pub fn progress(mut self, f: impl FnMut(IngestProgress) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Check the renames against `table` (before anything is read).
    fn check(&self, table: Table) -> Result<()> {
        let mut targets = HashSet::new();
        let mut sources = HashSet::new();
        for (from, to) in &self.renames {
            if !table.def().columns.iter().any(|c| c.name == to) {
                return Err(StoreError::InvalidInput(format!(
                    "column map: `{from}` is mapped to `{to}`, which is not a column of table {table}"
                )));
            }
            if !targets.insert(to.as_str()) {
                return Err(StoreError::InvalidInput(format!(
                    "column map: two input columns are mapped to `{to}`"
                )));
            }
            if !sources.insert(from.as_str()) {
                return Err(StoreError::InvalidInput(format!(
                    "column map: `{from}` is mapped twice"
                )));
            }
        }
        Ok(())
    }

    fn report(&mut self, rows: u64, input: usize) {
        if let Some(f) = &mut self.progress {
            f(IngestProgress { rows, input });
        }
    }
}

/// `batch` with the columns `renames` maps renamed.
fn rename_columns(renames: &[(String, String)], batch: RecordBatch) -> Result<RecordBatch> {
    if renames.is_empty() {
        return Ok(batch);
    }
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
    for (from, to) in renames {
        let i = schema.index_of(from).map_err(|_| {
            StoreError::InvalidInput(format!(
                "column map: the input has no column `{from}` (its columns: {})",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if schema.index_of(to).is_ok() && !renames.iter().any(|(f, _)| f == to) {
            return Err(StoreError::InvalidInput(format!(
                "column map: `{from}` is mapped to `{to}`, but the input already has a column `{to}`"
            )));
        }
        fields[i] = fields[i].clone().with_name(to.clone());
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(RecordBatch::try_new(schema, batch.columns().to_vec())?)
}

impl Store {
    /// Ingest every batch of `batches` (a parquet `RecordBatchReader`, an
    /// IPC reader, a `Vec` of `Ok(batch)`...) into `table` as one unit:
    /// when this returns `Ok`, every row is durable and visible; on an
    /// error nothing is, except after [`StoreError::OutcomeUnknown`] (see
    /// the [module docs](crate::ingest)). An invalid
    /// row is [`StoreError::InvalidInputRow`], its row counted from the
    /// start of the input.
    ///
    /// ```no_run
    /// # fn f(store: &elide_store::Store) -> Result<(), Box<dyn std::error::Error>> {
    /// use elide_store::{IngestOptions, Table};
    /// let file = std::fs::File::open("events.parquet")?;
    /// let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
    ///     .build()?;
    /// let out = store.ingest(Table::Events, reader, IngestOptions::new())?;
    /// println!("{} rows", out.rows);
    /// # Ok(()) }
    /// ```
    pub fn ingest<I>(
        &self,
        table: Table,
        batches: I,
        mut opts: IngestOptions<'_>,
    ) -> Result<IngestOutcome>
    where
        I: IntoIterator<Item = std::result::Result<RecordBatch, ArrowError>>,
    {
        opts.check(table)?;
        let mut bulk = self.bulk_ingest(table)?;
        let mut rows = 0u64;
        for b in batches {
            let b = b.map_err(|e| {
                StoreError::InvalidInput(format!("reading the input after row {rows}: {e}"))
            })?;
            let n = prepare(table, &opts.renames, b, true);
            rows = add(&mut bulk, &mut opts, n, rows, "input", 0)?;
        }
        bulk.commit()
    }

    /// Ingest files into `table` as one unit (all of them or nothing).
    ///
    /// Each path is a parquet file (recognised by its magic bytes) or a
    /// JSON-lines file (one event object per line; see [`crate::jsonl`]).
    /// `-` reads standard input once; a path that is not a regular file
    /// (a pipe) is read as a stream, and a parquet stream is spooled to
    /// the data directory's `tmp/` first (parquet needs random access;
    /// the spool is removed when done, or at the next open after a kill).
    /// Errors name the file, and for a bad row its 0-based index in it.
    pub fn ingest_files<P: AsRef<Path>>(
        &self,
        table: Table,
        files: &[P],
        mut opts: IngestOptions<'_>,
    ) -> Result<IngestOutcome> {
        opts.check(table)?;
        if files
            .iter()
            .filter(|f| f.as_ref() == Path::new("-"))
            .count()
            > 1
        {
            return Err(StoreError::InvalidInput(
                "standard input (-) can be read only once".into(),
            ));
        }
        let mut bulk = self.bulk_ingest(table)?;
        for (i, f) in files.iter().enumerate() {
            let f = f.as_ref();
            let name = f.display().to_string();
            let (input, _spool) = open_input(f, self.dir())?;
            let mut first = 0u64;
            // JSON lines name their fields as Elide does (unknown keys are
            // refused by the line reader): renames apply to parquet only.
            let rename = matches!(input, Input::Parquet(_));
            let renames = opts.renames.clone();
            let prepare = |b| prepare(table, &renames, b, rename);
            let as_view = |c: &str| read_as_view(table, &renames, c);
            read_input(&name, input, &as_view, &prepare, &mut |n| {
                first = add(&mut bulk, &mut opts, n, first, &name, i)?;
                Ok(())
            })?;
        }
        bulk.commit()
    }
}

/// A batch of the input renamed (if `rename`) and validated for `table`:
/// the part of reading an input that may run on any thread.
fn prepare(
    table: Table,
    renames: &[(String, String)],
    batch: RecordBatch,
    rename: bool,
) -> Result<NormalizedBatch> {
    let batch = if rename {
        rename_columns(renames, batch)?
    } else {
        batch
    };
    normalize(table, &batch)
}

/// Whether the input's string column `name` is read as views of the
/// decoded pages ([`crate::read_parquet`]): when it becomes a string,
/// JSON, UUID or timestamp column of `table` (which copy it once or parse
/// it). An integer column's type error names the input's type, and an
/// unknown column is refused, so both are read as they are.
fn read_as_view(table: Table, renames: &[(String, String)], name: &str) -> bool {
    let target = renames
        .iter()
        .find(|(from, _)| from == name)
        .map_or(name, |(_, to)| to.as_str());
    table
        .def()
        .columns
        .iter()
        .any(|c| c.name == target && c.kind != ColumnKind::Int64)
}

/// Buffer one prepared batch whose first row is row `first` of `input`
/// (or return its error, with the row counted from the input's start);
/// returns the number of rows of the input read so far.
fn add(
    bulk: &mut BulkIngest,
    opts: &mut IngestOptions<'_>,
    prepared: Result<NormalizedBatch>,
    first: u64,
    input: &str,
    index: usize,
) -> Result<u64> {
    let locate = |e| match e {
        StoreError::InvalidRow {
            row,
            column,
            reason,
        } => StoreError::InvalidInputRow {
            input: input.to_string(),
            row: first + row as u64,
            column,
            reason,
        },
        StoreError::InvalidInput(m) => StoreError::InvalidInput(format!("{input}: {m}")),
        other => other,
    };
    let batch = prepared.map_err(locate)?;
    let n = batch.num_rows() as u64;
    bulk.write_normalized(batch).map_err(locate)?;
    opts.report(bulk.rows(), index);
    Ok(first + n)
}

/// One input: a parquet file (read from its path) or a stream of JSON lines.
enum Input {
    Parquet(PathBuf),
    JsonLines(Box<dyn BufRead>),
}

/// A copy of a parquet stream inside the data directory's spool area;
/// removed on drop, and by the store's next open if the process dies first.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Open an input: `-` is standard input; a path that is not a regular
/// file (a pipe) is read once, as a stream. Parquet is recognised by its
/// magic; a stream of parquet is spooled under `data_dir`.
fn open_input(path: &Path, data_dir: &Path) -> Result<(Input, Option<Spool>)> {
    let name = path.display().to_string();
    let io =
        |what: &str, e: std::io::Error| StoreError::InvalidInput(format!("{what} {name}: {e}"));
    let (mut stream, regular): (Box<dyn Read>, bool) = if path == Path::new("-") {
        (Box::new(std::io::stdin().lock()), false)
    } else {
        let f = File::open(path).map_err(|e| io("cannot open", e))?;
        let regular = f.metadata().map(|m| m.is_file()).unwrap_or(false);
        (Box::new(f), regular)
    };
    let mut head = Vec::with_capacity(4);
    (&mut stream)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|e| io("cannot read", e))?;
    let rest = std::io::Cursor::new(head.clone()).chain(stream);
    if head == b"PAR1" {
        if regular {
            return Ok((Input::Parquet(path.to_path_buf()), None));
        }
        let spool = crate::open::spool_file(data_dir).map_err(|e| io("spooling", e))?;
        let guard = Spool(spool.clone());
        let mut out = File::create(&spool).map_err(|e| io("spooling", e))?;
        std::io::copy(&mut { rest }, &mut out).map_err(|e| io("spooling", e))?;
        return Ok((Input::Parquet(spool), Some(guard)));
    }
    if path.extension().and_then(|e| e.to_str()) == Some("parquet") {
        return Err(StoreError::InvalidInput(format!(
            "{name} is not a parquet file (no PAR1 magic)"
        )));
    }
    Ok((
        Input::JsonLines(Box::new(BufReader::with_capacity(1 << 20, rest))),
        None,
    ))
}

/// Read a whole input as batches, `prepare` each and call `sink` with
/// the results in the input's order. A parquet file is read and prepared
/// on several threads ([`crate::read_parquet`]); JSON lines on this one.
fn read_input(
    name: &str,
    input: Input,
    as_view: &dyn Fn(&str) -> bool,
    prepare: &(dyn Fn(RecordBatch) -> Result<NormalizedBatch> + Sync),
    sink: &mut dyn FnMut(Result<NormalizedBatch>) -> Result<()>,
) -> Result<()> {
    match input {
        Input::Parquet(file) => {
            crate::read_parquet::read_in_order(name, &file, FILE_BATCH_ROWS, as_view, prepare, sink)
        }
        Input::JsonLines(r) => {
            // The sink's own error is kept whole (the line reader would
            // otherwise wrap it).
            let mut inner: Option<StoreError> = None;
            let res = crate::jsonl::read_json_lines(r, FILE_BATCH_ROWS, &mut |b| {
                sink(prepare(b)).map_err(|e| {
                    let msg = e.to_string();
                    inner = Some(e);
                    StoreError::InvalidInput(msg)
                })
            });
            match (res, inner) {
                (Ok(_), _) => Ok(()),
                (Err(_), Some(e)) => Err(e),
                (Err(e), None) => Err(StoreError::InvalidInput(format!("{name}: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings are read as views for the columns that become string,
    /// JSON, UUID or timestamp columns, after renames; not for one that
    /// becomes an integer column (its type error names the input's type),
    /// whether by its name or by a rename, nor for an unknown one.
    #[test]
    fn strings_are_read_as_views_for_the_columns_that_copy_or_parse_them() {
        let renames = vec![
            ("props".to_string(), "properties".to_string()),
            ("proj".to_string(), "project_id".to_string()),
            ("event".to_string(), "distinct_id".to_string()),
        ];
        for name in ["uuid", "timestamp", "person_id", "props", "event"] {
            assert!(read_as_view(Table::Events, &renames, name), "{name}");
        }
        for name in ["project_id", "proj", "properties_x", "nope"] {
            assert!(!read_as_view(Table::Events, &renames, name), "{name}");
        }
        assert!(!read_as_view(Table::Events, &[], "project_id"));
        assert!(read_as_view(Table::Events, &[], "properties"));
    }
}
