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
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::DataType as ArrowType;
use bytes::Bytes;
use croaring::Bitmap;
use delta_kernel::actions::deletion_vector::DeletionVectorDescriptor;
use delta_kernel::actions::deletion_vector_writer::StreamingDeletionVectorWriter;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromKernel;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::engine_data::FilteredEngineData;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel::Engine;
use elide_store::format::PartMeta;
use elide_store::{Store, Table};
use url::Url;

use crate::dv::PartDeletionVector;
use crate::table::{
    add_rows, check_table, create, discard, engine, file_name, files_of, latest, locate, log_bytes,
    same_rows, scan_rows, sync_checkpoint, sync_commit, sync_local, vacuum, vector_file_names,
    APP_ID, DV_PREFIX, ENGINE_INFO,
};
use crate::{Error, Result};

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
    /// Bytes written: the commit's JSON plus the vector file (a
    /// checkpoint written every ten versions is not counted).
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

/// Export `opts.table` of `store` as a Delta table: create it on the first
/// run, then commit what changed since the last. A writable store is
/// flushed first, so buffered rows are in the export.
pub fn export_delta(store: &Store, opts: &ExportOptions) -> Result<DeltaExport> {
    let started = Instant::now();
    if opts.flush && !store.is_read_only() {
        store.flush()?;
    }
    let snap = store.snapshot()?;
    let root = table_root(opts)?;
    let (url, object_store) = locate(store, &root)?;
    let engine = engine(object_store)?;
    let mut written = Written::default();
    let result = run(
        opts,
        started,
        store,
        &snap,
        &root,
        &url,
        &engine,
        &mut written,
    );
    if result.is_err() {
        discard(&engine, written.vectors.as_ref());
    }
    result
}

/// What a run wrote before its commit, to undo if it fails (the table it
/// created stays, [`discard`]).
#[derive(Default)]
struct Written {
    /// This run wrote its vector file.
    vectors: Option<Url>,
}

/// The run itself; [`export_delta`] undoes what it wrote if it fails.
#[allow(clippy::too_many_arguments)]
fn run(
    opts: &ExportOptions,
    started: Instant,
    store: &Store,
    snap: &elide_store::Snapshot,
    root: &str,
    url: &Url,
    engine: &impl Engine,
    written: &mut Written,
) -> Result<DeltaExport> {
    let table = opts.table;

    let mut want: BTreeMap<String, Want<'_>> = BTreeMap::new();
    for part in snap.parts(table) {
        let rel = relative_path(&part.path, root)?;
        // (Fails closed, as for queries: a part with deleted rows whose
        // tombstone lacks them is an error, not exported.)
        let hidden = snap.hidden(part)?;
        want.insert(rel, Want { part, hidden });
    }

    let mut report = DeltaExport {
        table_url: url.to_string(),
        store_version: snap.version(),
        ..Default::default()
    };
    let deadline = store.policy().options().max_pending_age;
    let snapshot = match latest(engine, url)? {
        Some(s) => {
            check_table(&s, table)?;
            s
        }
        None => {
            elide_store::failpoint!("delta.before_create");
            report.created = create(engine, url, table, deadline)?;
            let s = latest(engine, url)?.ok_or_else(|| {
                Error::Unsupported(format!(
                    "the Delta table created at {url} cannot be read back"
                ))
            })?;
            // Another export may have created it meanwhile, of another
            // table (the events and the recordings under one root).
            check_table(&s, table)?;
            s
        }
    };

    // An export of an older snapshot than the table holds (a read-only open
    // that began before another export's) would bring back rows deleted
    // since: refused. The commit records the version it exports, and the
    // put-if-absent of the commit makes the check race-free.
    let ours = i64::try_from(snap.version()).unwrap_or(i64::MAX);
    let exported = snapshot.get_app_id_version(APP_ID, engine)?;
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
        // reads no vector file while the store is idle). Its commit is
        // made durable again: a run whose fsync failed after the commit
        // (an error, "may not survive a power loss") finds it here.
        sync_commit(url, snapshot.version())?;
        totals(&mut report, &want);
        report.version = snapshot.version();
        report.elapsed_ms = elapsed_ms(started);
        return Ok(report);
    }
    let (have, batches) = files_of(engine, &snapshot)?;
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
                        || same_rows(engine, url, &mut vector_files, h, w.hidden.as_deref())?);
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
    totals(&mut report, &want);
    report.added = fresh.len() + fresh_with_dv.len();
    report.removed = remove.len();
    report.deletion_vectors = new_dv.len();

    let retention = retention(opts, deadline);
    // The vector files the table references after this run: those of the
    // files whose vector stays, and this run's (derived, not read again).
    let mut referenced = vector_file_names(
        url,
        have.iter()
            .filter(|(p, _)| {
                let p = p.as_str();
                !remove.contains(p) && !readd.contains(p) && !new_dv.contains_key(p)
            })
            .filter_map(|(_, h)| h.descriptor.as_ref()),
    )?;
    if remove.is_empty() && readd.is_empty() && new_dv.is_empty() && fresh.is_empty() {
        sync_commit(url, snapshot.version())?;
        report.version = snapshot.version();
        report.vectors_removed = vacuum(engine, url, &referenced, retention)?;
        report.elapsed_ms = elapsed_ms(started);
        tracing::info!(table = %table, version = report.version, "Delta export: nothing changed");
        return Ok(report);
    }

    let mut txn = snapshot
        .clone()
        .update_table(UpdateTableOperation::Write, ENGINE_INFO, true)
        .build(engine, Box::new(FileSystemCommitter::new()))?
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
        let dv_url = dv_path.absolute_path()?;
        engine
            .storage_handler()
            .put(&dv_url, Bytes::from(buf), false)?;
        written.vectors = Some(dv_url.clone());
        sync_local(&dv_url)?;
        referenced.insert(file_name(&dv_url).to_string());
        let existing = batches.iter().map(|(batch, selection)| {
            FilteredEngineData::try_new(
                Box::new(ArrowEngineData::new(batch.clone())),
                selection.clone(),
            )
        });
        let mut files: Vec<delta_kernel::KernelResult<FilteredEngineData>> = existing.collect();
        if !fresh_with_dv.is_empty() {
            let parts: Vec<&PartMeta> = fresh_with_dv.iter().map(|p| want[*p].part).collect();
            let batch = scan_rows(&fresh_with_dv, &parts)?;
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
        let parts: Vec<&PartMeta> = plain.iter().map(|p| want[*p].part).collect();
        let stats_type =
            ArrowType::try_from_kernel(&delta_kernel::schema::DataType::from(txn.stats_schema()?))?;
        txn.add_files(add_rows(
            txn.add_files_schema(),
            stats_type,
            &plain,
            &parts,
        )?);
    }

    elide_store::failpoint!("delta.before_commit");
    let outcome = txn.commit(engine);
    // From the attempt on, nothing written is discarded, whatever the
    // answer: a version that reads as failed may have landed (an object
    // store retries a put-if-absent whose first attempt landed, and the
    // retry's 412 reads as a conflict; a timed-out put may land later),
    // and it would name the vector file. A file no version names is a
    // leftover that a later run's cleanup removes; a missing one would
    // break every reader of the table.
    *written = Written::default();
    let committed = match outcome? {
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
    // Committed, but on local disk not yet durable: an error here says so
    // (a run again finds the version committed, or commits it again).
    sync_commit(url, report.version).map_err(|e| {
        Error::Io(format!(
            "version {} of {url} is committed but may not survive a power loss: {e}",
            report.version
        ))
    })?;
    // The version is committed: what follows is upkeep, and its failure
    // does not undo the export (the next run tries again).
    if report.version.is_multiple_of(CHECKPOINT_INTERVAL) {
        let after = match committed.post_commit_snapshot() {
            Some(s) => Ok(Arc::clone(s)),
            None => latest(engine, url).and_then(|s| {
                s.ok_or_else(|| Error::Unsupported(format!("{url} vanished after a commit")))
            }),
        };
        let checkpointed = after
            .and_then(|s| Ok(s.checkpoint(engine, None)?))
            .and_then(|_| sync_checkpoint(url, report.version));
        if let Err(e) = checkpointed {
            tracing::warn!(version = report.version, error = %e, "Delta export: checkpoint failed");
        }
    }
    match vacuum(engine, url, &referenced, retention) {
        Ok(n) => report.vectors_removed = n,
        Err(e) => tracing::warn!(error = %e, "Delta export: removing unreferenced vectors failed"),
    }
    match log_bytes(engine, url, report.version) {
        Ok(n) => report.bytes_written += n,
        Err(e) => tracing::warn!(error = %e, "Delta export: cannot size the commit"),
    }
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

/// The report's figures of the files a run leaves: every part exported.
fn totals(report: &mut DeltaExport, want: &BTreeMap<String, Want<'_>>) {
    for w in want.values() {
        report.rows += w.part.rows;
        report.hidden_rows += w.hidden_count();
        report.data_bytes += w.part.size;
    }
    report.files = want.len();
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
