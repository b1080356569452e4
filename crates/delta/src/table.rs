//! The Delta table as the kernel sees it: where it is and which engine
//! reaches it, opening, creating and checking it, its files and their
//! deletion vectors, the rows the kernel's write calls take, and the
//! removal of vector files no version needs.
//!
//! `export.rs` decides what a run commits; everything here is one call to
//! the kernel or one shape of its data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Field, Int32Type, Int64Type, Schema as ArrowSchema};
use bytes::Bytes;
use croaring::Bitmap;
use delta_kernel::actions::deletion_vector::{DeletionVectorDescriptor, DeletionVectorStorageType};
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromKernel;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::scan::scan_row_schema;
use delta_kernel::snapshot::{Snapshot, SnapshotRef};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::CommitResult;
use delta_kernel::{Engine, EngineData};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::DefaultEngineBuilder;
use elide_store::format::PartMeta;
use elide_store::{Store, Table};
use object_store::ObjectStore;
use url::Url;

use crate::schema::{delta_schema, part_stats, STATS_COLUMNS};
use crate::{Error, Result};

/// What the commits record as the writer.
pub(crate) const ENGINE_INFO: &str = concat!("elide/", env!("CARGO_PKG_VERSION"));
/// The table property naming the Elide table a Delta table exports.
pub const TABLE_PROPERTY: &str = "elide.table";
/// The application id of the export's `txn` action: its version is the
/// store version exported, so an export of an older snapshot than the
/// table already holds is refused.
pub(crate) const APP_ID: &str = "elide-export";
/// Where the deletion-vector files go, under the table.
pub(crate) const DV_PREFIX: &str = "dv";

/// A file of the table's latest version.
pub(crate) struct Have {
    /// Rows its deletion vector hides (0: none).
    pub(crate) cardinality: u64,
    pub(crate) descriptor: Option<DeletionVectorDescriptor>,
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

/// The table's URL and the object store the kernel reads and writes it
/// through. On local disk: the directory's `file://` URL and the local
/// file system. On an object store: the store's own client (rooted at the
/// data directory) and a URL whose path is the table's path in it; the
/// URL is only the kernel's handle (the log holds relative paths only).
pub(crate) fn locate(store: &Store, root: &str) -> Result<(Url, Arc<dyn ObjectStore>)> {
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
pub(crate) fn latest(engine: &dyn Engine, url: &Url) -> Result<Option<SnapshotRef>> {
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

/// Create the table (true: this call created it; false: another export
/// did meanwhile): its schema, deletion vectors on, statistics only of
/// `project_id` and `timestamp`, log and file retention within the
/// erasure deadline, and which table it exports.
pub(crate) fn create(
    engine: &dyn Engine,
    url: &Url,
    table: Table,
    deadline: Duration,
) -> Result<bool> {
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
        CommitResult::Committed(_) => {
            sync_commit(url, 0)?;
            Ok(true)
        }
        // Another export created it meanwhile (the caller checks it is
        // ours), or a run before whose fsync failed: made durable here.
        CommitResult::Conflicted(_) => {
            sync_commit(url, 0)?;
            Ok(false)
        }
        CommitResult::Retryable(_) => Err(Error::Conflict(format!(
            "creating the Delta table at {url} failed with an I/O error; run the export again"
        ))),
    }
}

/// Refuse a Delta table that is not this store's export of `table`.
pub(crate) fn check_table(snapshot: &SnapshotRef, table: Table) -> Result<()> {
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

pub(crate) type ScanBatches = Vec<(RecordBatch, Vec<bool>)>;

/// The files of `snapshot` by path, and the scan rows they came in (kept
/// for `remove_files` and `update_deletion_vectors`).
pub(crate) fn files_of(
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
pub(crate) fn same_rows(
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
pub(crate) fn scan_rows(paths: &[&str], parts: &[&PartMeta]) -> Result<RecordBatch> {
    let schema = Arc::new(ArrowSchema::try_from_kernel(scan_row_schema().as_ref())?);
    let now = now_ms();
    let lines = paths.iter().zip(parts).map(|(path, part)| {
        serde_json::json!({
            "path": path,
            "size": part.size,
            "modificationTime": now,
            "stats": part_stats(part).to_string(),
            "deletionVector": null,
            "fileConstantValues": {"partitionValues": {}},
        })
    });
    decode(schema, lines)
}

/// Add-file rows (the kernel's `add_files_schema`, statistics typed as the
/// table's statistics schema) for parts without hidden rows.
pub(crate) fn add_rows(
    add_schema: &delta_kernel::schema::SchemaRef,
    stats_type: ArrowType,
    paths: &[&str],
    parts: &[&PartMeta],
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
    let lines = paths.iter().zip(parts).map(|(path, part)| {
        serde_json::json!({
            "path": path,
            "partitionValues": {},
            "size": part.size,
            "modificationTime": now,
            "stats": part_stats(part),
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

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Remove the vector files under `dv/` that no version committed within
/// `retention` references (neither the latest, named by `referenced`, nor
/// a file a recent commit added or removed: a reader that began on the
/// version before may still read those), that are older than `retention`
/// themselves, and staged copies a crashed write left. Returns how many.
pub(crate) fn vacuum(
    engine: &dyn Engine,
    url: &Url,
    referenced: &BTreeSet<String>,
    retention: Duration,
) -> Result<usize> {
    let dir = url
        .join(&format!("{DV_PREFIX}/"))
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut referenced = referenced.clone();
    referenced.extend(recently_named_vectors(engine, url, cutoff)?);
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

/// The vector files that the `add` and `remove` actions of the commits
/// written since `since_ms` name: the versions a reader may still be on
/// hold those (a file's old vector is named by the `remove` that replaced
/// it).
fn recently_named_vectors(
    engine: &dyn Engine,
    url: &Url,
    since_ms: i64,
) -> Result<BTreeSet<String>> {
    #[derive(serde::Deserialize)]
    struct FileAction {
        #[serde(rename = "deletionVector")]
        deletion_vector: Option<DeletionVectorDescriptor>,
    }
    #[derive(serde::Deserialize)]
    struct Line {
        add: Option<FileAction>,
        remove: Option<FileAction>,
    }
    let log = url
        .join("_delta_log/")
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    let listing = match engine.storage_handler().list_from(&log) {
        Ok(l) => l,
        Err(delta_kernel::KernelError::FileNotFound(_)) => return Ok(BTreeSet::new()),
        Err(e) => return Err(e.into()),
    };
    let mut recent = Vec::new();
    for file in listing {
        let file = match file {
            Ok(f) => f,
            Err(delta_kernel::KernelError::FileNotFound(_)) => break,
            Err(e) => return Err(e.into()),
        };
        if !file.location.as_str().starts_with(log.as_str()) {
            break;
        }
        if file_name(&file.location).ends_with(".json") && file.last_modified > since_ms {
            recent.push((file.location, None));
        }
    }
    let mut descriptors = Vec::new();
    if !recent.is_empty() {
        for bytes in engine.storage_handler().read_files(recent)? {
            let bytes = bytes?;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                // A line of another action, or one this cannot read, names
                // no vector it must keep.
                let Ok(l) = serde_json::from_slice::<Line>(line) else {
                    continue;
                };
                descriptors.extend(
                    [l.add, l.remove]
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.deletion_vector),
                );
            }
        }
    }
    vector_file_names(url, descriptors.iter())
}

/// The file names of the vector files `descriptors` point to (by name: the
/// names are unique, a UUID each, and URLs built two ways may differ in
/// their escaping). Inline vectors have no file.
pub(crate) fn vector_file_names<'a>(
    url: &Url,
    descriptors: impl Iterator<Item = &'a DeletionVectorDescriptor>,
) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for d in descriptors {
        if let Some(path) = d.absolute_path(url)? {
            names.insert(file_name(&path).to_string());
        }
    }
    Ok(names)
}

pub(crate) fn file_name(url: &Url) -> &str {
    url.path().rsplit('/').next().unwrap_or_default()
}

/// Size of commit `version`'s log file.
pub(crate) fn log_bytes(engine: &dyn Engine, url: &Url, version: u64) -> Result<u64> {
    let path = url
        .join(&format!("_delta_log/{version:020}.json"))
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    Ok(engine.storage_handler().head(&path).map_or(0, |m| m.size))
}

/// On local disk, make the file at `url` durable: the file, its directory
/// (its entry) and the directory above (the entry of a directory the
/// export may have just made, `_delta_log/` or the vectors'). The
/// kernel's local storage writes without fsyncs, so without this a power
/// loss could keep a commit and lose the vector file it names, or tear the
/// commit itself. Elsewhere (an object store) a write is durable when it
/// returns: nothing to do.
pub(crate) fn sync_local(url: &Url) -> Result<()> {
    let Ok(path) = url.to_file_path() else {
        return Ok(());
    };
    let sync = |p: &std::path::Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::Io(format!("cannot make {} durable: {e}", p.display())))
    };
    sync(&path)?;
    let mut dirs = path.ancestors().skip(1).take(2);
    dirs.try_for_each(sync)
}

/// On local disk, [`sync_local`] of `name` in the `_delta_log/` of the
/// table at `url`.
fn sync_log_file(url: &Url, name: &str) -> Result<()> {
    let file = url
        .join(&format!("_delta_log/{name}"))
        .map_err(|e| Error::InvalidInput(format!("{url}: {e}")))?;
    sync_local(&file)
}

/// On local disk, [`sync_local`] of commit `version`'s file.
pub(crate) fn sync_commit(url: &Url, version: u64) -> Result<()> {
    sync_log_file(url, &format!("{version:020}.json"))
}

/// On local disk, [`sync_local`] of the (classic, single-file) checkpoint
/// of `version` and of `_last_checkpoint`, which names it.
pub(crate) fn sync_checkpoint(url: &Url, version: u64) -> Result<()> {
    sync_log_file(url, &format!("{version:020}.checkpoint.parquet"))?;
    sync_log_file(url, "_last_checkpoint")
}

/// Undo what a failed run wrote before committing anything: its vector
/// file. Best effort: a leftover vector file is removed by a later run
/// anyway.
///
/// The table's first commit, when this run created the table, stays: an
/// empty table, which the next run builds on. Removing it raced with
/// another export that had read it and was committing the next version
/// on it (the check that no version follows and the removal are two
/// calls, on an object store too), which would leave that export's commit
/// in a log with no first version: no reader could open the table.
pub(crate) fn discard(engine: &dyn Engine, vectors: Option<&Url>) {
    if let Some(v) = vectors {
        if let Err(e) = engine.storage_handler().delete(v) {
            tracing::warn!(path = %v, error = %e, "Delta export: could not remove an unused vector file");
        }
        // On local disk, the directory of vectors, if the run made it.
        if let Some(dir) = v
            .to_file_path()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On local disk the file and the directories above it are synced (a
    /// file that is not there is an error, not skipped); on an object
    /// store nothing is to do.
    #[test]
    fn sync_local_syncs_local_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).unwrap();
        let commit = log.join(format!("{:020}.json", 3));
        std::fs::write(&commit, b"{}\n").unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        sync_commit(&root, 3).unwrap();
        let e = sync_commit(&root, 4).unwrap_err();
        assert!(matches!(e, Error::Io(_)), "{e}");
        assert!(e.to_string().contains("00000000000000000004.json"), "{e}");
        let remote = Url::parse("s3://bucket/table/").unwrap();
        sync_commit(&remote, 4).unwrap();
    }
}
