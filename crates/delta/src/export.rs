//! One export run: bring the Delta table up to the store's current
//! snapshot in at most one commit.
//!
//! The run compares the parts of the snapshot (with each part's hidden
//! rows: tombstones and rows of logical requests) with the files of the
//! Delta table's latest version, and commits the difference as one
//! version:
//!
//! * a part the table lacks is added, with its deletion vector when it
//!   has hidden rows. A new file cannot carry a deletion vector through
//!   the kernel's `add_files`, so such a part goes through
//!   `update_deletion_vectors` with a scan row of its own: the commit then
//!   holds a `remove` of a path no version added (which readers ignore)
//!   and the `add` with the vector. No version ever shows the part
//!   without it.
//! * a file whose part is gone (purged, merged, dropped) is removed;
//! * a file whose hidden rows changed gets a new deletion vector (or none,
//!   when an undo restored every row): compared by cardinality, then, when
//!   the counts agree, row by row.
//!
//! All vectors of a run go into one file, `dv/deletion_vector_<uuid>.bin`
//! under the table, written before the commit; a run that fails before
//! committing leaves at most that file, unreferenced, which a later run
//! removes. Vector files the latest version no longer references are
//! removed once older than the retention window (a reader that began on
//! the previous version may still read them). An old version stops being
//! readable when the part files it names are purged and removed by
//! Elide's GC, not before.
//!
//! Each commit records the store version it exports (a `txn` action,
//! application id `elide-export`); an export of an older snapshot than
//! the table already holds is refused, so two exports racing can never
//! bring back rows the newer one hid, and an export of the version the
//! table holds has nothing to compare (a manifest version fixes parts,
//! tombstones and logical requests).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Field, Int32Type, Int64Type, Schema as ArrowSchema};
use bytes::Bytes;
use croaring::Bitmap;
use delta_kernel::actions::deletion_vector::{DeletionVectorDescriptor, DeletionVectorStorageType};
use delta_kernel::actions::deletion_vector_writer::StreamingDeletionVectorWriter;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromKernel;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::engine_data::FilteredEngineData;
use delta_kernel::scan::scan_row_schema;
use delta_kernel::snapshot::{Snapshot, SnapshotRef};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel::{Engine, EngineData};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::DefaultEngineBuilder;
use elide_store::format::PartMeta;
use elide_store::{Store, Table};
use object_store::ObjectStore;
use url::Url;

use crate::dv::PartDeletionVector;
use crate::schema::{delta_schema, part_stats, STATS_COLUMNS};
use crate::{Error, Result};

/// What the commits record as the writer.
const ENGINE_INFO: &str = concat!("elide/", env!("CARGO_PKG_VERSION"));
/// The table property naming the Elide table a Delta table exports.
pub const TABLE_PROPERTY: &str = "elide.table";
/// The application id of the export's `txn` action: its version is the
/// store version exported, so an export of an older snapshot than the
/// table already holds is refused.
const APP_ID: &str = "elide-export";
/// Where the deletion-vector files go, under the table.
const DV_PREFIX: &str = "dv";
/// How long an unreferenced deletion-vector file is kept by default: as
/// long as Elide keeps an unreferenced object on an object store.
const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 60);
/// A checkpoint every this many versions keeps a reader's log replay short.
const CHECKPOINT_INTERVAL: u64 = 10;

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The table.
    pub table: Table,
    /// The Delta table's directory relative to the data directory: the
    /// data directory itself (`""`), `parts`, or `parts/<table>` (the
    /// default). It must hold the part files, because the log names them
    /// by relative paths: the readers tested (deltalake 1.6, DuckDB's
    /// delta extension 1.5) do not read absolute paths.
    pub root: Option<String>,
    /// How long a deletion-vector file no version references any more is
    /// kept (a reader that began on an older version may still read it).
    /// Default 15 minutes (Elide's own object retention); at most half the
    /// erasure deadline.
    pub retention: Option<Duration>,
    /// Flush a writable store's buffered rows into parts first (default),
    /// so the export holds every acknowledged row. A server exporting on
    /// a timer leaves this to its background flush: flushing every few
    /// seconds would write many small parts.
    pub flush: bool,
}

impl ExportOptions {
    /// Export `table` to its default location, `parts/<table>`.
    pub fn new(table: Table) -> Self {
        Self {
            table,
            root: None,
            retention: None,
            flush: true,
        }
    }
}

/// What an export run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeltaExport {
    /// The Delta table's location.
    pub table_url: String,
    /// The table's version after the run.
    pub version: u64,
    /// Whether the run created the table.
    pub created: bool,
    /// Whether the run committed a version (false: nothing had changed).
    pub committed: bool,
    /// The Elide store version exported.
    pub store_version: u64,
    /// Files of the table after the run (= parts of the Elide table).
    pub files: usize,
    /// Files added by the run.
    pub added: usize,
    /// Files removed by the run (their parts were purged or merged).
    pub removed: usize,
    /// Deletion vectors written by the run (new and changed).
    pub deletion_vectors: usize,
    /// Rows of the files (deleted or not).
    pub rows: u64,
    /// Rows the deletion vectors hide.
    pub hidden_rows: u64,
    /// Bytes of the parquet files referenced (not copied).
    pub data_bytes: u64,
    /// Bytes written: the commit (and checkpoint) plus the vector file.
    pub bytes_written: u64,
    /// Unreferenced deletion-vector files removed.
    pub vectors_removed: usize,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// What the export wants for one file.
struct Want<'a> {
    part: &'a PartMeta,
    hidden: Option<Arc<Bitmap>>,
}

impl Want<'_> {
    fn hidden_count(&self) -> u64 {
        self.hidden.as_ref().map_or(0, |b| b.cardinality())
    }
}

/// A file of the table's latest version.
struct Have {
    /// Rows its deletion vector hides (0: none).
    cardinality: u64,
    descriptor: Option<DeletionVectorDescriptor>,
}

/// Export `opts.table` of `store` as a Delta table: create it on the first
/// run, then commit what changed since the last. A writable store is
/// flushed first, so buffered rows are in the export.
pub fn export_delta(store: &Store, opts: &ExportOptions) -> Result<DeltaExport> {
    let started = Instant::now();
    if opts.flush && !store.is_read_only() {
        store.flush()?;
    }
    let snap = store.snapshot()?;
    let table = opts.table;
    let root = table_root(opts)?;
    let (url, object_store) = locate(store, &root)?;
    let engine = engine(object_store)?;

    let mut want: BTreeMap<String, Want<'_>> = BTreeMap::new();
    for part in snap.parts(table) {
        let rel = relative_path(&part.path, &root)?;
        let hidden = snap.hidden(part)?;
        // As the query path does: a part with deleted rows must have their
        // bitmap, or it is exported not at all.
        if part.deleted() > 0
            && hidden
                .as_ref()
                .is_none_or(|b| b.cardinality() < part.deleted())
        {
            return Err(Error::Store(elide_store::StoreError::Corrupt {
                path: part.path.clone(),
                reason: format!(
                    "the manifest counts {} deleted rows but the tombstone holds fewer",
                    part.deleted()
                ),
            }));
        }
        want.insert(rel, Want { part, hidden });
    }

    let mut report = DeltaExport {
        table_url: url.to_string(),
        store_version: snap.version(),
        ..Default::default()
    };
    let deadline = store.policy().options().max_pending_age;
    let snapshot = match latest(&engine, &url)? {
        Some(s) => {
            check_table(&s, table)?;
            s
        }
        None => {
            create(&engine, &url, table, deadline)?;
            report.created = true;
            latest(&engine, &url)?.ok_or_else(|| {
                Error::Unsupported(format!(
                    "the Delta table created at {url} cannot be read back"
                ))
            })?
        }
    };

    // An export of an older snapshot than the table holds (a read-only open
    // that began before another export's) would bring back rows deleted
    // since: refused. The commit records the version it exports, and the
    // put-if-absent of the commit makes the check race-free.
    let ours = i64::try_from(snap.version()).unwrap_or(i64::MAX);
    let exported = snapshot.get_app_id_version(APP_ID, &engine)?;
    if let Some(exported) = exported.filter(|&v| v > ours) {
        return Err(Error::Conflict(format!(
            "the Delta table at {url} already holds store version {exported}, newer than this \
             export's {ours}: run the export again"
        )));
    }
    if exported == Some(ours) {
        // The table holds this very store version: the same parts, the
        // same tombstones and logical requests (each change of them is a
        // new version). Nothing to compare (a server exporting on a timer
        // reads no vector file while the store is idle).
        for w in want.values() {
            report.rows += w.part.rows;
            report.hidden_rows += w.hidden_count();
            report.data_bytes += w.part.size;
        }
        report.files = want.len();
        report.version = snapshot.version();
        report.elapsed_ms = elapsed_ms(started);
        return Ok(report);
    }
    let (have, batches) = files_of(&engine, &snapshot)?;
    let mut remove: BTreeSet<&str> = BTreeSet::new();
    let mut readd: BTreeSet<&str> = BTreeSet::new();
    let mut new_dv: BTreeMap<&str, &Bitmap> = BTreeMap::new();
    let mut fresh: Vec<&str> = Vec::new();
    let mut fresh_with_dv: Vec<&str> = Vec::new();
    let mut vector_files: HashMap<Url, Bytes> = HashMap::new();
    for (path, h) in &have {
        match want.get(path.as_str()) {
            None => {
                remove.insert(path);
            }
            Some(w) => {
                let ours = w.hidden_count();
                let same = ours == h.cardinality
                    && (ours == 0
                        || same_rows(&engine, &url, &mut vector_files, h, w.hidden.as_deref())?);
                if same {
                    continue;
                }
                match w.hidden.as_deref().filter(|b| !b.is_empty()) {
                    Some(bits) => {
                        new_dv.insert(path, bits);
                    }
                    // An undo restored every hidden row: the file again, without a vector.
                    None => {
                        readd.insert(path);
                    }
                }
            }
        }
    }
    for (path, w) in &want {
        if have.contains_key(path) {
            continue;
        }
        match w.hidden.as_deref().filter(|b| !b.is_empty()) {
            Some(bits) => {
                new_dv.insert(path, bits);
                fresh_with_dv.push(path);
            }
            None => fresh.push(path),
        }
    }
    for w in want.values() {
        report.rows += w.part.rows;
        report.hidden_rows += w.hidden_count();
        report.data_bytes += w.part.size;
    }
    report.files = want.len();
    report.added = fresh.len() + fresh_with_dv.len();
    report.removed = remove.len();
    report.deletion_vectors = new_dv.len();

    let retention = retention(opts, deadline);
    if remove.is_empty() && readd.is_empty() && new_dv.is_empty() && fresh.is_empty() {
        report.version = snapshot.version();
        report.vectors_removed = vacuum(&engine, &url, &snapshot, retention)?;
        report.elapsed_ms = elapsed_ms(started);
        tracing::info!(table = %table, version = report.version, "Delta export: nothing changed");
        return Ok(report);
    }

    let mut txn = snapshot
        .clone()
        .update_table(UpdateTableOperation::Write, ENGINE_INFO, true)
        .build(&engine, Box::new(FileSystemCommitter::new()))?
        .with_transaction_id(
            APP_ID.to_string(),
            i64::try_from(snap.version()).unwrap_or(i64::MAX),
        )
        .with_operation_metrics([
            ("elide.store_version", Some(snap.version().to_string())),
            ("elide.files_added", Some(report.added.to_string())),
            ("elide.files_removed", Some(report.removed.to_string())),
        ]);

    // The vectors first: a commit must never name a file not yet written.
    if !new_dv.is_empty() {
        let context = txn.write_state()?.write_context_builder().build()?;
        let dv_path = context.new_deletion_vector_path(DV_PREFIX.to_string());
        let mut buf: Vec<u8> = Vec::new();
        let mut descriptors: HashMap<String, DeletionVectorDescriptor> = HashMap::new();
        {
            let mut writer = StreamingDeletionVectorWriter::new(&mut buf);
            for (path, bits) in &new_dv {
                let written = writer.write_deletion_vector(PartDeletionVector::new(bits))?;
                descriptors.insert((*path).to_string(), written.to_descriptor(&dv_path));
            }
            writer.finalize()?;
        }
        report.bytes_written += buf.len() as u64;
        engine
            .storage_handler()
            .put(&dv_path.absolute_path()?, Bytes::from(buf), false)?;
        let existing = batches.iter().map(|(batch, selection)| {
            FilteredEngineData::try_new(
                Box::new(ArrowEngineData::new(batch.clone())),
                selection.clone(),
            )
        });
        let mut files: Vec<delta_kernel::KernelResult<FilteredEngineData>> = existing.collect();
        if !fresh_with_dv.is_empty() {
            let rows: Vec<&Want<'_>> = fresh_with_dv.iter().map(|p| &want[*p]).collect();
            let paths: Vec<&str> = fresh_with_dv.clone();
            let batch = scan_rows(&paths, &rows)?;
            let n = batch.num_rows();
            files.push(FilteredEngineData::try_new(
                Box::new(ArrowEngineData::new(batch)),
                vec![true; n],
            ));
        }
        txn.update_deletion_vectors(descriptors, files.into_iter())?;
    }
    if !remove.is_empty() || !readd.is_empty() {
        for (batch, selection) in &batches {
            let paths = batch
                .column_by_name("path")
                .ok_or_else(|| Error::Unsupported("scan rows without `path`".into()))?
                .as_string::<i32>();
            let picked: Vec<bool> = (0..batch.num_rows())
                .map(|i| {
                    selection.get(i).copied().unwrap_or(true)
                        && (remove.contains(paths.value(i)) || readd.contains(paths.value(i)))
                })
                .collect();
            if picked.iter().any(|&p| p) {
                txn.remove_files(FilteredEngineData::try_new(
                    Box::new(ArrowEngineData::new(batch.clone())),
                    picked,
                )?);
            }
        }
    }
    let plain: Vec<&str> = fresh.iter().copied().chain(readd.iter().copied()).collect();
    if !plain.is_empty() {
        let rows: Vec<&Want<'_>> = plain.iter().map(|p| &want[*p]).collect();
        let stats_type =
            ArrowType::try_from_kernel(&delta_kernel::schema::DataType::from(txn.stats_schema()?))?;
        txn.add_files(add_rows(txn.add_files_schema(), stats_type, &plain, &rows)?);
    }

    let committed = match txn.commit(&engine)? {
        CommitResult::Committed(c) => c,
        CommitResult::Conflicted(c) => {
            return Err(Error::Conflict(format!(
                "another writer committed version {} of {url} during the export; run it again",
                c.conflict_version()
            )))
        }
        CommitResult::Retryable(_) => {
            return Err(Error::Conflict(format!(
            "the commit to {url} failed with an I/O error and may be retried; run the export again"
        )))
        }
    };
    report.committed = true;
    report.version = committed.commit_version();
    let after = match committed.post_commit_snapshot() {
        Some(s) => Arc::clone(s),
        None => latest(&engine, &url)?
            .ok_or_else(|| Error::Unsupported(format!("{url} vanished after a commit")))?,
    };
    // The version is committed: what follows is upkeep, and its failure
    // does not undo the export (the next run tries again).
    if report.version.is_multiple_of(CHECKPOINT_INTERVAL) {
        if let Err(e) = after.checkpoint(&engine, None) {
            tracing::warn!(version = report.version, error = %e, "Delta export: checkpoint failed");
        }
    }
    match vacuum(&engine, &url, &after, retention) {
        Ok(n) => report.vectors_removed = n,
        Err(e) => tracing::warn!(error = %e, "Delta export: removing unreferenced vectors failed"),
    }
    report.bytes_written += log_bytes(&engine, &url, report.version)?;
    report.elapsed_ms = elapsed_ms(started);
    tracing::info!(
        table = %table,
        version = report.version,
        added = report.added,
        removed = report.removed,
        deletion_vectors = report.deletion_vectors,
        "Delta export committed"
    );
    Ok(report)
}

/// The kernel's default engine over `object_store`, on a multi-threaded
/// runtime of the crate's own, shared by every export (never dropped, so
/// the library may be called from anywhere). (Its default single-threaded
/// executor deadlocks
/// when writing a checkpoint: the parquet writer blocks on the executor
/// while pulling the actions from it.)
pub(crate) fn engine(object_store: Arc<dyn ObjectStore>) -> Result<impl Engine> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_name("elide-delta")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Unsupported(format!("the Delta export's runtime: {e}")))?;
    let executor = TokioMultiThreadExecutor::new(runtime.handle().clone());
    Ok(DefaultEngineBuilder::new(object_store)
        .with_task_executor(Arc::new(executor))
        .build())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn retention(opts: &ExportOptions, deadline: Duration) -> Duration {
    opts.retention
        .unwrap_or(DEFAULT_RETENTION)
        .min(deadline / 2)
}

/// The table's directory relative to the data directory, checked.
fn table_root(opts: &ExportOptions) -> Result<String> {
    let default = format!("parts/{}", opts.table.name());
    let root = opts
        .root
        .as_deref()
        .map(|r| r.trim_matches('/').to_string())
        .unwrap_or(default.clone());
    if root.is_empty() || root == "parts" || root == default {
        Ok(root)
    } else {
        Err(Error::InvalidInput(format!(
            "the Delta table must be at the data directory, its `parts` directory or `{default}` \
             (it names the part files by paths relative to itself, and readers do not follow \
             absolute paths); got {root:?}"
        )))
    }
}

/// `path` (relative to the data directory) relative to the table root.
fn relative_path(path: &str, root: &str) -> Result<String> {
    if root.is_empty() {
        return Ok(path.to_string());
    }
    path.strip_prefix(root)
        .and_then(|p| p.strip_prefix('/'))
        .map(str::to_string)
        .ok_or_else(|| Error::Unsupported(format!("part {path} is not under {root}")))
}

/// The table's URL and the object store the kernel reads and writes it
/// through. On local disk: the directory's `file://` URL and the local
/// file system. On an object store: the store's own client (rooted at the
/// data directory) and a URL whose path is the table's path in it; the
/// URL is only the kernel's handle (the log holds relative paths only).
fn locate(store: &Store, root: &str) -> Result<(Url, Arc<dyn ObjectStore>)> {
    let storage = store.storage();
    match storage.local_root() {
        Some(dir) => {
            let dir = std::fs::canonicalize(dir).map_err(|e| {
                Error::InvalidInput(format!("data directory {}: {e}", dir.display()))
            })?;
            let dir = if root.is_empty() { dir } else { dir.join(root) };
            let url = Url::from_directory_path(&dir).map_err(|()| {
                Error::InvalidInput(format!("{} is not an absolute path", dir.display()))
            })?;
            Ok((url, Arc::new(object_store::local::LocalFileSystem::new())))
        }
        None => {
            let path = if root.is_empty() {
                String::new()
            } else {
                format!("{root}/")
            };
            let url = Url::parse(&format!("s3://elide-data-directory/{path}"))
                .map_err(|e| Error::InvalidInput(format!("table path {root:?}: {e}")))?;
            Ok((url, storage.inner()))
        }
    }
}

/// The table's latest version, or `None` when there is no table there.
fn latest(engine: &dyn Engine, url: &Url) -> Result<Option<SnapshotRef>> {
    let log = url
        .join("_delta_log/")
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    let mut listing = match engine.storage_handler().list_from(&log) {
        Ok(l) => l,
        Err(delta_kernel::KernelError::FileNotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match listing.next() {
        None | Some(Err(delta_kernel::KernelError::FileNotFound(_))) => return Ok(None),
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(_)) => {}
    }
    Ok(Some(Snapshot::builder_for(url.as_str()).build(engine)?))
}

/// Create the table: its schema, deletion vectors on, statistics only of
/// `project_id` and `timestamp`, log and file retention within the
/// erasure deadline, and which table it exports.
fn create(engine: &dyn Engine, url: &Url, table: Table, deadline: Duration) -> Result<()> {
    let retention = format!("interval {} seconds", deadline.as_secs().max(1));
    let created = create_table(url.as_str(), delta_schema(table)?, ENGINE_INFO, true)
        .with_table_properties([
            ("delta.enableDeletionVectors", "true".to_string()),
            ("delta.dataSkippingStatsColumns", STATS_COLUMNS.join(",")),
            ("delta.logRetentionDuration", retention.clone()),
            ("delta.deletedFileRetentionDuration", retention),
            (TABLE_PROPERTY, table.name().to_string()),
        ])
        .build(engine, Box::new(FileSystemCommitter::new()))?
        .commit(engine)?;
    match created {
        // Another export created it meanwhile: the caller checks it is ours.
        CommitResult::Committed(_) | CommitResult::Conflicted(_) => Ok(()),
        CommitResult::Retryable(_) => Err(Error::Conflict(format!(
            "creating the Delta table at {url} failed with an I/O error; run the export again"
        ))),
    }
}

/// Refuse a Delta table that is not this store's export of `table`.
fn check_table(snapshot: &SnapshotRef, table: Table) -> Result<()> {
    let config = snapshot.table_configuration().metadata().configuration();
    let theirs = config.get(TABLE_PROPERTY).map(String::as_str);
    if theirs != Some(table.name()) {
        return Err(Error::InvalidInput(format!(
            "the Delta table at {} is not an export of `{table}` (its {TABLE_PROPERTY} is {theirs:?})",
            snapshot.table_root()
        )));
    }
    if snapshot.schema() != delta_schema(table)? {
        return Err(Error::Unsupported(format!(
            "the Delta table at {} has another schema than `{table}` has now; export to a new location",
            snapshot.table_root()
        )));
    }
    Ok(())
}

type ScanBatches = Vec<(RecordBatch, Vec<bool>)>;

/// The files of `snapshot` by path, and the scan rows they came in (kept
/// for `remove_files` and `update_deletion_vectors`).
fn files_of(
    engine: &dyn Engine,
    snapshot: &SnapshotRef,
) -> Result<(BTreeMap<String, Have>, ScanBatches)> {
    let scan = Arc::clone(snapshot).scan_builder().build()?;
    let mut have = BTreeMap::new();
    let mut batches = Vec::new();
    for metadata in scan.scan_metadata(engine)? {
        let (data, selection) = metadata?.scan_files.into_parts();
        let batch = ArrowEngineData::try_from_engine_data(data)?
            .record_batch()
            .clone();
        let paths = column(&batch, "path")?.as_string::<i32>();
        let dvs = column(&batch, "deletionVector")?.as_struct();
        for i in 0..batch.num_rows() {
            if !selection.get(i).copied().unwrap_or(true) {
                continue;
            }
            let descriptor = descriptor_at(dvs, i)?;
            have.insert(
                paths.value(i).to_string(),
                Have {
                    cardinality: descriptor
                        .as_ref()
                        .map_or(0, |d| u64::try_from(d.cardinality).unwrap_or(0)),
                    descriptor,
                },
            );
        }
        batches.push((batch, selection));
    }
    Ok((have, batches))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Unsupported(format!("the kernel's scan rows have no `{name}`")))
}

/// Row `i`'s deletion vector descriptor, if it has one.
fn descriptor_at(
    dvs: &arrow::array::StructArray,
    i: usize,
) -> Result<Option<DeletionVectorDescriptor>> {
    if dvs.is_null(i) {
        return Ok(None);
    }
    let field = |name: &str| {
        dvs.column_by_name(name)
            .ok_or_else(|| Error::Unsupported(format!("deletion vector without `{name}`")))
    };
    let storage = field("storageType")?.as_string::<i32>().value(i);
    let storage_type = match storage {
        "u" => DeletionVectorStorageType::PersistedRelative,
        "p" => DeletionVectorStorageType::PersistedAbsolute,
        "i" => DeletionVectorStorageType::Inline,
        other => {
            return Err(Error::Unsupported(format!(
                "deletion vector storage type {other:?}"
            )))
        }
    };
    let offset = field("offset")?.as_primitive::<Int32Type>();
    Ok(Some(DeletionVectorDescriptor {
        storage_type,
        path_or_inline_dv: field("pathOrInlineDv")?
            .as_string::<i32>()
            .value(i)
            .to_string(),
        offset: (!offset.is_null(i)).then(|| offset.value(i)),
        size_in_bytes: field("sizeInBytes")?.as_primitive::<Int32Type>().value(i),
        cardinality: field("cardinality")?.as_primitive::<Int64Type>().value(i),
    }))
}

/// Whether the file's vector hides exactly `ours`. A vector file holds a
/// whole run's vectors: each is read once (`files`) and sliced.
fn same_rows(
    engine: &dyn Engine,
    url: &Url,
    files: &mut HashMap<Url, Bytes>,
    have: &Have,
    ours: Option<&Bitmap>,
) -> Result<bool> {
    let (Some(d), Some(ours)) = (&have.descriptor, ours) else {
        return Ok(have.descriptor.is_none() && ours.is_none_or(Bitmap::is_empty));
    };
    let theirs = match (d.absolute_path(url)?, d.offset) {
        (Some(path), Some(offset)) => {
            if !files.contains_key(&path) {
                let mut read = engine
                    .storage_handler()
                    .read_files(vec![(path.clone(), None)])?;
                let bytes = read
                    .next()
                    .ok_or_else(|| Error::Unsupported(format!("{path}: no bytes read")))??;
                files.insert(path.clone(), bytes);
            }
            let bytes = files.get(&path).map(|b| b.as_ref()).unwrap_or_default();
            vector_at(bytes, offset, d.size_in_bytes).ok_or_else(|| {
                Error::Unsupported(format!("{path}: no deletion vector at {offset}"))
            })?
        }
        _ => d.read(engine.storage_handler(), url)?,
    };
    Ok(theirs.len() == ours.cardinality() && ours.iter().all(|r| theirs.contains(u64::from(r))))
}

/// The vector at `offset` of a vector file: a big-endian size, the magic,
/// the portable `RoaringTreemap` (the size counts magic and bitmap).
fn vector_at(bytes: &[u8], offset: i32, size: i32) -> Option<roaring::RoaringTreemap> {
    const MAGIC: u32 = 1_681_511_377;
    let start = usize::try_from(offset).ok()?;
    let size = usize::try_from(size).ok()?;
    let stated = u32::from_be_bytes(bytes.get(start..start + 4)?.try_into().ok()?);
    let magic = u32::from_le_bytes(bytes.get(start + 4..start + 8)?.try_into().ok()?);
    if usize::try_from(stated).ok()? != size || magic != MAGIC || size < 4 {
        return None;
    }
    roaring::RoaringTreemap::deserialize_from(bytes.get(start + 8..start + 4 + size)?).ok()
}

/// Scan rows (the kernel's `scan_row_schema`) for parts the table does not
/// have yet, to give them a deletion vector as they are added.
fn scan_rows(paths: &[&str], wants: &[&Want<'_>]) -> Result<RecordBatch> {
    let schema = Arc::new(ArrowSchema::try_from_kernel(scan_row_schema().as_ref())?);
    let now = now_ms();
    let lines = paths.iter().zip(wants).map(|(path, w)| {
        serde_json::json!({
            "path": path,
            "size": w.part.size,
            "modificationTime": now,
            "stats": part_stats(w.part).to_string(),
            "deletionVector": null,
            "fileConstantValues": {"partitionValues": {}},
        })
    });
    decode(schema, lines)
}

/// Add-file rows (the kernel's `add_files_schema`, statistics typed as the
/// table's statistics schema) for parts without hidden rows.
fn add_rows(
    add_schema: &delta_kernel::schema::SchemaRef,
    stats_type: ArrowType,
    paths: &[&str],
    wants: &[&Want<'_>],
) -> Result<Box<dyn EngineData>> {
    let base = ArrowSchema::try_from_kernel(add_schema.as_ref())?;
    let fields: Vec<Field> = base
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "stats" {
                Field::new("stats", stats_type.clone(), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let now = now_ms();
    let lines = paths.iter().zip(wants).map(|(path, w)| {
        serde_json::json!({
            "path": path,
            "partitionValues": {},
            "size": w.part.size,
            "modificationTime": now,
            "stats": part_stats(w.part),
        })
    });
    let batch = decode(Arc::new(ArrowSchema::new(fields)), lines)?;
    Ok(Box::new(ArrowEngineData::new(batch)))
}

/// Rows given as JSON objects, decoded into `schema`.
fn decode(
    schema: Arc<ArrowSchema>,
    rows: impl Iterator<Item = serde_json::Value>,
) -> Result<RecordBatch> {
    let mut text = String::new();
    let mut n = 0;
    for row in rows {
        text.push_str(&row.to_string());
        text.push('\n');
        n += 1;
    }
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(n.max(1))
        .build_decoder()?;
    let consumed = decoder.decode(text.as_bytes())?;
    if consumed != text.len() {
        return Err(Error::Unsupported(format!(
            "the kernel's rows were decoded in part ({consumed} of {} bytes)",
            text.len()
        )));
    }
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Remove deletion-vector files under `dv/` that `snapshot` does not
/// reference and that are older than `retention`. Returns how many.
fn vacuum(
    engine: &dyn Engine,
    url: &Url,
    snapshot: &SnapshotRef,
    retention: Duration,
) -> Result<usize> {
    let (have, _) = files_of(engine, snapshot)?;
    // By file name: the names are unique (a UUID each), and URLs built two
    // ways may differ in their escaping.
    let mut referenced = BTreeSet::new();
    for h in have.values() {
        if let Some(d) = &h.descriptor {
            if let Some(path) = d.absolute_path(url)? {
                referenced.insert(file_name(&path).to_string());
            }
        }
    }
    let dir = url
        .join(&format!("{DV_PREFIX}/"))
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let listing = match engine.storage_handler().list_from(&dir) {
        Ok(l) => l,
        Err(delta_kernel::KernelError::FileNotFound(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut stale = Vec::new();
    for file in listing {
        let file = match file {
            Ok(f) => f,
            Err(delta_kernel::KernelError::FileNotFound(_)) => break,
            Err(e) => return Err(e.into()),
        };
        if !file.location.as_str().starts_with(dir.as_str()) {
            break;
        }
        let name = file_name(&file.location);
        // A crashed write's staged copy (`….bin#N`) goes too.
        let base = name.rsplit_once('#').map_or(name, |(b, _)| b);
        if base.starts_with("deletion_vector_")
            && base.ends_with(".bin")
            && file.last_modified < cutoff
            && (base != name || !referenced.contains(name))
        {
            stale.push(file.location);
        }
    }
    for location in &stale {
        engine.storage_handler().delete(location)?;
    }
    if !stale.is_empty() {
        tracing::info!(
            removed = stale.len(),
            "Delta export: unreferenced deletion vectors removed"
        );
    }
    Ok(stale.len())
}

fn file_name(url: &Url) -> &str {
    url.path().rsplit('/').next().unwrap_or_default()
}

/// Size of commit `version`'s log file.
fn log_bytes(engine: &dyn Engine, url: &Url, version: u64) -> Result<u64> {
    let path = url
        .join(&format!("_delta_log/{version:020}.json"))
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    Ok(engine.storage_handler().head(&path).map_or(0, |m| m.size))
}
