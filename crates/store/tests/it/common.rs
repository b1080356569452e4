use std::collections::BTreeSet;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use elide_store::jsonl::{rows_to_batch, EventRow};
use elide_store::predicate::{EventPredicate, PropertyFilter, PropertyOperator};
use elide_store::{Snapshot, Store, StoreOptions, Table};
use serde_json::json;

pub const DAY: i64 = 86_400_000_000;
pub const T0: i64 = 1_790_000_000_000_000;

pub fn row(n: u64, did: &str, project: i64, day: i64) -> EventRow {
    EventRow {
        uuid: Some(uuid::Uuid::from_u64_pair(7, n).to_string()),
        event: "$pageview".into(),
        distinct_id: did.into(),
        person_id: None,
        project_id: project,
        timestamp_us: T0 + day * DAY + n as i64,
        properties: Some(format!(r#"{{"n":{n}}}"#)),
        session_id: None,
    }
}

/// No background threads, and predicates always resolved in the call (no
/// bridge: a loaded machine must not change what a test sees).
pub fn opts() -> StoreOptions {
    StoreOptions::foreground()
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, opts()).unwrap()
}

pub fn append(store: &Store, rows: &[EventRow]) {
    store
        .append(Table::Events, &rows_to_batch(rows).unwrap())
        .unwrap();
}

/// Visible (uuid, distinct_id, _seq) of events, read straight from a
/// snapshot: parts through parquet with tombstones applied, plus memtable.
pub fn visible(store: &Store) -> BTreeSet<(String, String, u64)> {
    let snap = store.snapshot().unwrap();
    visible_in(&snap)
}

pub fn visible_in(snap: &Snapshot) -> BTreeSet<(String, String, u64)> {
    let mut out = BTreeSet::new();
    let mut add =
        |b: &arrow::record_batch::RecordBatch, dead: Option<&croaring::Bitmap>, base: u32| {
            // UUIDs as users read them (parts hold 16 bytes).
            let b = &elide_store::schema::with_uuid_text(b.clone()).unwrap();
            let u = b.column_by_name("uuid").unwrap().as_string::<i32>();
            let d = b.column_by_name("distinct_id").unwrap().as_string::<i32>();
            let s = b
                .column_by_name("_seq")
                .unwrap()
                .as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                if dead.is_some_and(|x| x.contains(base + i as u32)) {
                    continue;
                }
                assert!(
                    out.insert((u.value(i).to_string(), d.value(i).to_string(), s.value(i))),
                    "duplicate row"
                );
            }
        };
    for p in snap.parts(Table::Events) {
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            read_object(snap.storage(), &p.path),
        )
        .unwrap()
        .build()
        .unwrap();
        let mut base = 0u32;
        // Tombstones and logical requests (an undo window, a bridged
        // predicate) alike.
        let hidden = snap.hidden(p).unwrap();
        for b in r {
            let b = b.unwrap();
            add(&b, hidden.as_deref(), base);
            base += b.num_rows() as u32;
        }
    }
    for b in snap.memtable_batches(Table::Events) {
        add(b, None, 0);
    }
    out
}

/// Run a manual compaction (purge everything, merges too).
pub fn compact_now(store: &Store) -> elide_store::CompactionReport {
    store
        .compact(elide_store::CompactRequest {
            manual: true,
            merges: true,
            ..Default::default()
        })
        .unwrap()
}

/// The part and tombstone files under `dir`, relative to it.
pub fn parts_and_tombstones_on_disk(dir: &std::path::Path) -> BTreeSet<String> {
    files_under(dir)
        .iter()
        .filter_map(|p| p.strip_prefix(dir).ok())
        .map(|p| p.to_string_lossy().to_string())
        .filter(|p| p.starts_with("parts/") || p.starts_with("tombstones/"))
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
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

/// Rows of the predicate and undo tests. Row `n`: event `click` when
/// `n % 3 == 0`, else `$pageview`; property `plan` is `pro` when
/// `n % 2 == 0`, else `free`; distinct id `d{n % 4}`; day `n % 3`; a marker `row-NNNN-x` in its properties (found on disk
/// with compression off).
pub fn ev(n: u64) -> EventRow {
    let mut r = row(n, &format!("d{}", n % 4), 1, (n % 3) as i64);
    if n.is_multiple_of(3) {
        r.event = "click".into();
    }
    let plan = if n.is_multiple_of(2) { "pro" } else { "free" };
    r.properties = Some(format!(
        r#"{{"plan":"{plan}","n":{n},"marker":"row-{n:04}-x"}}"#
    ));
    r
}

pub fn rows(r: std::ops::Range<u64>) -> Vec<EventRow> {
    r.map(ev).collect()
}

/// Visible row numbers (from the uuid's low half).
pub fn visible_ns(store: &Store) -> Vec<u64> {
    let mut out: Vec<u64> = visible(store)
        .into_iter()
        .map(|(u, _, _)| uuid::Uuid::parse_str(&u).unwrap().as_u64_pair().1)
        .collect();
    out.sort();
    out
}

/// `click` events of plan `pro`: rows with `n % 6 == 0`.
pub fn pro_clicks() -> EventPredicate {
    EventPredicate {
        events: vec!["click".into()],
        properties: vec![PropertyFilter {
            key: "plan".into(),
            operator: PropertyOperator::Exact,
            value: json!("pro"),
        }],
        ..Default::default()
    }
}

/// Where a test's store keeps its objects: the suite's tests that take a
/// `Backend` run once on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Files under the data directory.
    Local,
    /// An S3 server (s3s-fs on 127.0.0.1) holding the objects; the data
    /// directory keeps the ingest log and the lock.
    S3,
}

pub const BACKENDS: [Backend; 2] = [Backend::Local, Backend::S3];

/// A data directory on a backend (and its S3 server, running while this lives).
pub struct Site {
    pub dir: tempfile::TempDir,
    pub server: Option<elide_store::s3_server::S3Server>,
    object_store: Option<std::sync::Arc<dyn object_store::ObjectStore>>,
}

pub const BUCKET: &str = "elide";

/// `base` with its objects in `os`, and GC without a retention window (so
/// that tests see removals at once).
pub fn on_object_store(
    base: StoreOptions,
    os: std::sync::Arc<dyn object_store::ObjectStore>,
) -> StoreOptions {
    StoreOptions {
        object_store: Some(os),
        object_retention: std::time::Duration::ZERO,
        ..base
    }
}

impl Site {
    pub fn new(backend: Backend) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (server, object_store) = match backend {
            Backend::Local => (None, None),
            Backend::S3 => {
                let server =
                    elide_store::s3_server::S3Server::start(&dir.path().join("s3"), BUCKET)
                        .unwrap();
                let os = server.store(BUCKET).unwrap();
                (Some(server), Some(os))
            }
        };
        Site {
            dir,
            server,
            object_store,
        }
    }

    /// The directory `Store::open` takes.
    pub fn path(&self) -> std::path::PathBuf {
        match self.server {
            None => self.dir.path().to_path_buf(),
            Some(_) => self.dir.path().join("local"),
        }
    }

    /// `base` on this site's backend (an object store's GC without a
    /// retention window, so that tests see removals at once).
    pub fn opts(&self, base: StoreOptions) -> StoreOptions {
        match &self.object_store {
            None => base,
            Some(os) => on_object_store(base, std::sync::Arc::clone(os)),
        }
    }

    /// The directory holding the store's objects as files (`parts/...`).
    pub fn objects(&self) -> std::path::PathBuf {
        match &self.server {
            None => self.dir.path().to_path_buf(),
            Some(s) => s.root().join(BUCKET),
        }
    }

    /// Open the store with the suite's options ([`opts`]) on this backend.
    pub fn open(&self) -> Store {
        Store::open(self.path(), self.opts(opts())).unwrap()
    }

    /// Every file of the store on disk: the data directory's and the S3 server's.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        files_under(self.dir.path())
    }
}

/// The bytes of object `path` of a store, on either backend.
pub fn read_object(storage: &elide_store::Storage, path: &str) -> bytes::Bytes {
    use object_store::ObjectStoreExt;
    if let Some(root) = storage.local_root() {
        return std::fs::read(root.join(path)).unwrap().into();
    }
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap());
    let store = storage.inner();
    let p = object_store::path::Path::from(path);
    rt.block_on(async move { store.get(&p).await.unwrap().bytes().await.unwrap() })
}

pub use elide_store::failing_fs::FailingSync;
