//! The Delta export read back by the Delta kernel's own scan (an
//! independent reader: it applies the deletion vectors itself), on local
//! disk and on an S3 server: every visible row and no hidden one, through
//! new parts, new deletions, a no-op run, a purge and a reopen; an old
//! version fails once its files are gone; no distinct id in the log.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::schema::{DataType, StructField, StructType};
use delta_kernel::snapshot::Snapshot;
use delta_kernel::Engine;
use delta_kernel_default_engine::DefaultEngineBuilder;
use elide_delta::{export_delta, ExportOptions};
use elide_store::{CompactRequest, DeleteSpec, Store, StoreOptions, Table};
use object_store::ObjectStore;
use url::Url;

const BUCKET: &str = "elide";

fn opts() -> StoreOptions {
    StoreOptions::foreground()
}

/// Append generated events (`seed` picks which); returns their
/// (project, distinct id) pairs.
fn ingest(store: &Store, events: u64, seed: u64) -> BTreeSet<(i64, String)> {
    let cfg = elide_gen::GenConfig {
        events,
        persons: 400,
        projects: 3,
        days: 6,
        seed,
        batch_rows: 8192,
        ..Default::default()
    };
    let mut ids = BTreeSet::new();
    for batch in elide_gen::Generator::new(cfg).unwrap() {
        let p = batch.column_by_name("project_id").unwrap();
        let p = p.as_primitive::<Int64Type>();
        let d = arrow::compute::cast(
            batch.column_by_name("distinct_id").unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let d = d.as_string::<i32>();
        for i in 0..batch.num_rows() {
            ids.insert((p.value(i), d.value(i).to_string()));
        }
        store.append(Table::Events, &batch).unwrap();
    }
    ids
}

/// Delete every `nth` of `ids`; returns the deleted.
fn delete_some(store: &Store, ids: &BTreeSet<(i64, String)>, nth: usize) -> Vec<(i64, String)> {
    let gone: Vec<(i64, String)> = ids.iter().step_by(nth).cloned().collect();
    for (project, id) in &gone {
        store
            .delete(DeleteSpec::ids(*project, [id.clone()]))
            .unwrap();
    }
    gone
}

/// An export that removes every vector file the new version does not
/// reference, however young.
fn export_sweeping(store: &Store) -> elide_delta::DeltaExport {
    let opts = ExportOptions {
        retention: Some(std::time::Duration::ZERO),
        ..ExportOptions::new(Table::Events)
    };
    export_delta(store, &opts).unwrap()
}

/// Where the kernel reads the export, and through which store.
struct Reader {
    url: Url,
    engine: Arc<dyn Engine>,
}

impl Reader {
    fn local(data_dir: &Path) -> Reader {
        let dir = std::fs::canonicalize(data_dir)
            .unwrap()
            .join("parts/events");
        Reader {
            url: Url::from_directory_path(dir).unwrap(),
            engine: Arc::new(
                DefaultEngineBuilder::new(Arc::new(object_store::local::LocalFileSystem::new()))
                    .build(),
            ),
        }
    }

    fn s3(os: Arc<dyn ObjectStore>) -> Reader {
        Reader {
            url: Url::parse("s3://elide-data-directory/parts/events/").unwrap(),
            engine: Arc::new(DefaultEngineBuilder::new(os).build()),
        }
    }

    /// (project, distinct id) of every row the table shows at `version`.
    /// `uuid` and `person_id` are left out of the projection: the kernel's
    /// reader refuses a `FIXED_LEN_BYTE_ARRAY` column declared `binary`.
    fn rows(&self, version: Option<u64>) -> delta_kernel::KernelResult<Vec<(i64, String)>> {
        let mut b = Snapshot::builder_for(self.url.as_str());
        if let Some(v) = version {
            b = b.at_version(v);
        }
        let snapshot = b.build(self.engine.as_ref())?;
        let schema = Arc::new(StructType::try_new([
            StructField::nullable("project_id", DataType::LONG),
            StructField::nullable("distinct_id", DataType::STRING),
        ])?);
        let scan = snapshot.scan_builder().with_schema(schema).build()?;
        let mut out = Vec::new();
        for data in scan.execute(Arc::clone(&self.engine))? {
            let batch: RecordBatch = ArrowEngineData::try_from_engine_data(data?)?
                .record_batch()
                .clone();
            let p = batch.column(0).as_primitive::<Int64Type>();
            let d = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                out.push((p.value(i), d.value(i).to_string()));
            }
        }
        Ok(out)
    }
}

/// The table the Delta reader shows equals Elide's visible rows, and holds
/// none of `gone`.
fn check(store: &Store, reader: &Reader, gone: &[(i64, String)]) {
    let rows = reader.rows(None).unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(rows.len() as u64, snap.visible_rows(Table::Events).unwrap());
    let gone: BTreeSet<&(i64, String)> = gone.iter().collect();
    let leaked = rows.iter().filter(|r| gone.contains(r)).count();
    assert_eq!(leaked, 0, "rows of deleted distinct ids in the export");
}

fn log_text(files: &[std::path::PathBuf]) -> String {
    let mut all = String::new();
    for f in files {
        if f.to_string_lossy().contains("_delta_log") && f.extension().is_some_and(|e| e == "json")
        {
            all.push_str(&std::fs::read_to_string(f).unwrap());
        }
    }
    all
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The whole life of an export, against `open` (a store on one backend)
/// and `reader`; `files` lists what the backend holds on disk.
fn lifecycle(
    open: &dyn Fn() -> Store,
    reader: &Reader,
    files: &dyn Fn() -> Vec<std::path::PathBuf>,
) {
    let store = open();
    let ids = ingest(&store, 20_000, 1);
    let first = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(first.created && first.committed);
    assert_eq!(first.rows, 20_000);
    assert_eq!(first.hidden_rows, 0);
    check(&store, reader, &[]);

    // Deletions: the next export gives the affected files vectors.
    let mut gone = delete_some(&store, &ids, 50);
    let second = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(second.committed && !second.created);
    assert!(second.deletion_vectors > 0 && second.hidden_rows > 0);
    assert_eq!(second.added, 0);
    check(&store, reader, &gone);
    // Before the purge, the version before the deletions still reads.
    assert_eq!(reader.rows(Some(first.version)).unwrap().len(), 20_000);

    // New parts that already have deleted rows enter with their vectors.
    let more = ingest(&store, 6_000, 2);
    store.flush().unwrap();
    // An id deleted before has rows again if it came back in the new
    // events (a deletion hides the rows appended before it).
    gone.retain(|g| !more.contains(g));
    gone.extend(delete_some(&store, &more, 40));
    // Retention zero: only vector files the latest version no longer
    // references may go; the first run's file may still serve parts the
    // new deletions did not touch (the check below reads through it).
    let third = export_sweeping(&store);
    assert!(third.added > 0);
    check(&store, reader, &gone);

    // Nothing changed: no commit.
    let idle = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(!idle.committed);
    assert_eq!(idle.version, third.version);

    // The purge rewrites the parts; the export swaps the files.
    store
        .compact(CompactRequest {
            manual: true,
            merges: true,
            ..Default::default()
        })
        .unwrap();
    let fourth = export_sweeping(&store);
    assert!(fourth.removed > 0 && fourth.added > 0);
    assert_eq!(fourth.hidden_rows, 0);
    // Both runs' vector files are no longer referenced: removed (the
    // first run's by the third run, if the new deletions gave every part of
    // it a new vector; the check above read the table after it).
    assert_eq!(third.vectors_removed + fourth.vectors_removed, 2);
    assert!(!files()
        .iter()
        .any(|f| f.to_string_lossy().contains("deletion_vector_")));
    check(&store, reader, &gone);
    // The purged files are gone: the old versions fail instead of showing
    // the deleted rows.
    for v in [first.version, second.version, third.version] {
        let old = reader.rows(Some(v));
        assert!(
            old.is_err(),
            "version {v} read after the purge: {:?} rows",
            old.map(|r| r.len())
        );
    }
    store.close().unwrap();

    // Reopened: the next export finds its table and changes nothing.
    let store = open();
    let again = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(!again.committed);
    check(&store, reader, &gone);

    // No distinct id anywhere in the log.
    let log = log_text(&files());
    assert!(!log.is_empty());
    for (_, id) in ids.iter().chain(more.iter()) {
        assert!(!log.contains(id.as_str()), "distinct id {id} in _delta_log");
    }
    store.close().unwrap();
}

#[test]
fn export_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let reader = Reader::local(&path);
    lifecycle(&|| Store::open(&path, opts()).unwrap(), &reader, &|| {
        files_under(&path)
    });
}

#[test]
fn export_on_an_s3_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = elide_store::s3_server::S3Server::start(&dir.path().join("s3"), BUCKET).unwrap();
    let os = server.store(BUCKET).unwrap();
    let local = dir.path().join("local");
    let reader = Reader::s3(server.store(BUCKET).unwrap());
    let bucket = server.root().join(BUCKET);
    lifecycle(
        &|| {
            Store::open(
                &local,
                StoreOptions {
                    object_store: Some(Arc::clone(&os)),
                    object_retention: std::time::Duration::ZERO,
                    ..opts()
                },
            )
            .unwrap()
        },
        &reader,
        &|| files_under(&bucket),
    );
}

/// A Delta table elsewhere than the data directory, `parts` or
/// `parts/<table>` is refused: the log could only name the parts by
/// absolute paths, which the readers do not follow.
#[test]
fn a_root_outside_the_parts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    for root in ["delta/events", "parts/recordings", "../x"] {
        let err = export_delta(
            &store,
            &ExportOptions {
                root: Some(root.into()),
                ..ExportOptions::new(Table::Events)
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, elide_delta::Error::InvalidInput(_)),
            "{root}: {err}"
        );
    }
    // The data directory itself and `parts` are fine.
    ingest(&store, 1_000, 3);
    for root in ["", "parts"] {
        let r = export_delta(
            &store,
            &ExportOptions {
                root: Some(root.into()),
                ..ExportOptions::new(Table::Events)
            },
        )
        .unwrap();
        assert_eq!(r.rows, 1_000);
    }
    // Another table's export at the same place is refused.
    let err = export_delta(
        &store,
        &ExportOptions {
            root: Some("parts".into()),
            ..ExportOptions::new(Table::Recordings)
        },
    )
    .unwrap_err();
    assert!(matches!(err, elide_delta::Error::InvalidInput(_)), "{err}");
}

/// A deletion with an undo window hides its rows in the export at once;
/// cancelled, the rows come back at the next export (the file is
/// re-added without its vector).
#[test]
fn an_undone_deletion_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ids = ingest(&store, 5_000, 4);
    let reader = Reader::local(dir.path());
    let (project, id) = ids.iter().next().unwrap().clone();
    let out = store
        .delete_events(elide_store::EventDeletion {
            undo_window: Some(std::time::Duration::from_secs(3600)),
            ..elide_store::EventDeletion::new(
                project,
                elide_store::predicate::EventPredicate {
                    distinct_ids: vec![id.clone()],
                    ..Default::default()
                },
            )
        })
        .unwrap();
    assert!(out.logical && out.rows_hidden > 0);
    let hidden = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert_eq!(hidden.hidden_rows, out.rows_hidden);
    check(&store, &reader, &[(project, id.clone())]);
    store.cancel_request(out.request_id).unwrap();
    let back = export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    assert!(back.committed);
    assert_eq!(back.hidden_rows, 0);
    let rows = reader.rows(None).unwrap();
    assert_eq!(rows.len(), 5_000);
    assert!(rows.contains(&(project, id)));
}

/// Every tenth version is checkpointed, and the table reads the same
/// through the checkpoint.
#[test]
fn checkpoints_every_ten_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let reader = Reader::local(dir.path());
    let mut version = 0;
    for seed in 0..10 {
        ingest(&store, 300, 10 + seed);
        version = export_delta(&store, &ExportOptions::new(Table::Events))
            .unwrap()
            .version;
    }
    assert_eq!(version, 10);
    let checkpoint = dir
        .path()
        .join("parts/events/_delta_log/00000000000000000010.checkpoint.parquet");
    assert!(checkpoint.exists(), "no checkpoint at version 10");
    check(&store, &reader, &[]);
}

/// An export of an older snapshot than the Delta table already holds (a
/// read-only open made before a deletion another export carried) is
/// refused: it would give the files their older, smaller vectors.
#[test]
fn an_export_of_an_older_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ids = ingest(&store, 3_000, 5);
    store.flush().unwrap();
    let stale = Store::open_read_only(dir.path(), opts()).unwrap();
    let gone = delete_some(&store, &ids, 10);
    export_delta(&store, &ExportOptions::new(Table::Events)).unwrap();
    let err = export_delta(&stale, &ExportOptions::new(Table::Events)).unwrap_err();
    assert!(matches!(err, elide_delta::Error::Conflict(_)), "{err}");
    check(&store, &Reader::local(dir.path()), &gone);
}

/// On an object store, the table may also be at the data directory's root.
#[test]
fn export_at_the_root_of_an_s3_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = elide_store::s3_server::S3Server::start(&dir.path().join("s3"), BUCKET).unwrap();
    let store = Store::open(
        dir.path().join("local"),
        StoreOptions {
            object_store: Some(server.store(BUCKET).unwrap()),
            object_retention: std::time::Duration::ZERO,
            ..opts()
        },
    )
    .unwrap();
    ingest(&store, 2_000, 6);
    let r = export_delta(
        &store,
        &ExportOptions {
            root: Some(String::new()),
            ..ExportOptions::new(Table::Events)
        },
    )
    .unwrap();
    assert_eq!(r.rows, 2_000);
    assert!(server.root().join(BUCKET).join("_delta_log").is_dir());
    let reader = Reader {
        url: Url::parse("s3://elide-data-directory/").unwrap(),
        engine: Arc::new(DefaultEngineBuilder::new(server.store(BUCKET).unwrap()).build()),
    };
    assert_eq!(reader.rows(None).unwrap().len(), 2_000);
    store.close().unwrap();
}

/// A vector file older than the retention, replaced by a newer one, stays
/// until the retention has passed since the commit that replaced it: a
/// reader on the version before can still read through it.
#[test]
fn a_replaced_vector_stays_for_the_retention_after_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let reader = Reader::local(dir.path());
    let ids = ingest(&store, 5_000, 3);
    store.flush().unwrap();
    let retention = std::time::Duration::from_secs(2);
    let with_retention = || ExportOptions {
        retention: Some(retention),
        ..ExportOptions::new(Table::Events)
    };
    export_delta(&store, &with_retention()).unwrap();
    delete_some(&store, &ids, 20);
    let second = export_delta(&store, &with_retention()).unwrap();
    assert!(second.deletion_vectors > 0);
    let before = reader.rows(Some(second.version)).unwrap();
    // The second run's vector files grow older than the retention; then
    // new deletions give their parts new vectors.
    std::thread::sleep(retention + std::time::Duration::from_millis(500));
    delete_some(&store, &ids, 7);
    let third = export_delta(&store, &with_retention()).unwrap();
    assert!(third.committed && third.deletion_vectors > 0);
    assert_eq!(third.vectors_removed, 0, "{third:?}");
    assert_eq!(reader.rows(Some(second.version)).unwrap(), before);
}
