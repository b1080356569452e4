//! A store with parts, tombstones and buffered rows, and what its queries
//! should return.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use elide_store::{DeleteSpec, Store, StoreOptions, Table};

/// (project, distinct id) pairs.
pub type Ids = BTreeSet<(i64, String)>;

/// Where a store lives: a local directory every process shares, or a
/// bucket of an S3 server (s3s-fs on 127.0.0.1) with a local directory
/// per process, as on separate machines.
pub enum Backend {
    Local(PathBuf),
    S3 {
        server: elide_store::s3_server::S3Server,
        dir: PathBuf,
        readers: AtomicUsize,
    },
}

const BUCKET: &str = "elide";

impl Backend {
    pub fn local(dir: &Path) -> Backend {
        Backend::Local(dir.join("data"))
    }

    pub fn s3(dir: &Path) -> Backend {
        let server = elide_store::s3_server::S3Server::start(&dir.join("s3"), BUCKET).unwrap();
        Backend::S3 {
            server,
            dir: dir.to_path_buf(),
            readers: AtomicUsize::new(0),
        }
    }

    fn s3_opts(server: &elide_store::s3_server::S3Server) -> StoreOptions {
        StoreOptions {
            object_store: Some(server.store(BUCKET).unwrap()),
            ..opts()
        }
    }

    /// The writer.
    pub fn writer(&self) -> Store {
        match self {
            Backend::Local(dir) => Store::open(dir, opts()).unwrap(),
            Backend::S3 { server, dir, .. } => {
                Store::open(dir.join("writer"), Self::s3_opts(server)).unwrap()
            }
        }
    }

    /// A read-only handle, as another process opens it.
    pub fn reader(&self) -> Store {
        match self {
            Backend::Local(dir) => Store::open_read_only(dir, opts()).unwrap(),
            Backend::S3 {
                server,
                dir,
                readers,
            } => {
                let n = readers.fetch_add(1, Ordering::Relaxed);
                let local = dir.join(format!("reader-{n}"));
                std::fs::create_dir_all(&local).unwrap();
                Store::open_read_only(local, Self::s3_opts(server)).unwrap()
            }
        }
    }

    /// The bucket's objects (S3 only).
    pub fn objects(&self) -> Option<Arc<dyn object_store::ObjectStore>> {
        match self {
            Backend::Local(_) => None,
            Backend::S3 { server, .. } => Some(server.store(BUCKET).unwrap()),
        }
    }
}

pub fn opts() -> StoreOptions {
    StoreOptions::foreground()
}

/// Append generated events (`seed` picks which); returns their
/// (project, distinct id) pairs.
pub fn ingest(store: &Store, events: u64, seed: u64) -> BTreeSet<(i64, String)> {
    let cfg = elide_gen::GenConfig {
        events,
        persons: 300,
        projects: 3,
        days: 6,
        seed,
        batch_rows: 4096,
        ..Default::default()
    };
    let mut ids = BTreeSet::new();
    for batch in elide_gen::Generator::new(cfg).unwrap() {
        ids.extend(pairs(&batch));
        store.append(Table::Events, &batch).unwrap();
    }
    ids
}

/// The (project, distinct id) of each row of `batch`.
pub fn pairs(batch: &RecordBatch) -> Vec<(i64, String)> {
    let p = batch.column_by_name("project_id").unwrap();
    let p = p.as_primitive::<Int64Type>();
    let d = arrow::compute::cast(
        batch.column_by_name("distinct_id").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let d = d.as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| (p.value(i), d.value(i).to_string()))
        .collect()
}

/// Delete every `nth` of `ids` (from `offset`); returns the deleted.
pub fn delete_some(
    store: &Store,
    ids: &BTreeSet<(i64, String)>,
    nth: usize,
    offset: usize,
) -> Vec<(i64, String)> {
    let gone: Vec<(i64, String)> = ids.iter().skip(offset).step_by(nth).cloned().collect();
    for (project, id) in &gone {
        store
            .delete(DeleteSpec::ids(*project, [id.clone()]))
            .unwrap();
    }
    gone
}

/// A store in `dir` with two flushes of parts and rows still buffered,
/// then a tenth of its ids deleted (tombstones in parts, buffered rows
/// dropped); returns it with the ids it ever held and those deleted.
pub fn store_with_deletions(backend: &Backend) -> (Store, Ids, Vec<(i64, String)>) {
    let store = backend.writer();
    let mut ids = ingest(&store, 12_000, 1);
    store.flush().unwrap();
    ids.extend(ingest(&store, 8_000, 2));
    store.flush().unwrap();
    // Buffered: not in parts, shipped inside the plan.
    ids.extend(ingest(&store, 1_000, 3));
    let gone = delete_some(&store, &ids, 10, 0);
    (store, ids, gone)
}
