//! Elide on an S3 server against local disk, in one run: ingest, a
//! deletion until visible, two queries and the purge, with the object
//! store's requests counted per operation.
//!
//!     cargo bench --bench object_store -- [--events 1000000] [--persons 10000]
//!
//! The S3 server is `s3s-fs` (a real S3 protocol server storing objects as
//! files) on 127.0.0.1 in this process, over loopback: the figures are the
//! protocol's and the client's overhead, not a network's. Recorded in
//! docs/benchmarks.md ("Object storage").

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use elide::arrow::array::{AsArray, RecordBatchReader};
use elide::arrow::datatypes::Int64Type;
use elide::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use elide::{CompactRequest, DeleteSpec, IngestOptions, Store, StoreOptions, Table};
use elide_store::s3_server::S3Server;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

type Error = Box<dyn std::error::Error>;

const Q1: &str = "SELECT event, count(*) AS n FROM events WHERE project_id = 1 GROUP BY event";
const Q2: &str = "SELECT date_trunc('day', timestamp) AS d, count(DISTINCT person_id) AS n FROM events GROUP BY 1";
/// Every 100th (project, distinct id): 1% of the persons.
const ONE_PERCENT: &str = "SELECT project_id, distinct_id FROM (SELECT project_id, distinct_id,
    row_number() OVER (ORDER BY distinct_id, project_id) AS n
    FROM (SELECT DISTINCT project_id, distinct_id FROM events)) WHERE n % 100 = 0";

/// Requests by kind.
#[derive(Default)]
struct Counts {
    put: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
}

impl Counts {
    fn take(&self) -> [u64; 5] {
        [
            self.put.swap(0, Ordering::SeqCst),
            self.get.swap(0, Ordering::SeqCst),
            self.head.swap(0, Ordering::SeqCst),
            self.list.swap(0, Ordering::SeqCst),
            self.delete.swap(0, Ordering::SeqCst),
        ]
    }
}

/// An object store that counts the requests it passes on.
struct Counting {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<Counts>,
}

impl fmt::Debug for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counting")
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        l: &Path,
        p: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.inner.put_opts(l, p, o).await
    }

    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.inner.put_multipart_opts(l, o).await
    }

    async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        match o.head {
            true => self.counts.head.fetch_add(1, Ordering::Relaxed),
            false => self.counts.get.fetch_add(1, Ordering::Relaxed),
        };
        self.inner.get_opts(l, o).await
    }

    async fn get_ranges(&self, l: &Path, r: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        // object_store fetches coalesced ranges with one GET each.
        self.counts.get.fetch_add(r.len() as u64, Ordering::Relaxed);
        self.inner.get_ranges(l, r).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.counts.delete.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_stream(locations)
    }

    fn list(&self, p: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list(p)
    }

    fn list_with_offset(
        &self,
        p: Option<&Path>,
        o: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_offset(p, o)
    }

    async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<ListResult> {
        self.counts.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_delimiter(p).await
    }

    async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.inner.copy_opts(f, t, o).await
    }
}

/// One backend's figures: (operation, time, requests).
type Figures = Vec<(&'static str, Duration, [u64; 5])>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(
    input: &FsPath,
    dir: &FsPath,
    object_store: Option<Arc<dyn ObjectStore>>,
    counts: &Counts,
) -> Result<Figures, Error> {
    let mut out = Figures::new();
    let opts = StoreOptions {
        object_store,
        background_compaction: false,
        ..StoreOptions::default()
    };
    let t = Instant::now();
    let store = Store::open(dir, opts)?;
    out.push(("open (new store)", t.elapsed(), counts.take()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(input)?)?.build()?;
    let mut ingest = IngestOptions::new();
    if reader.schema().index_of("$session_id").is_ok() {
        ingest = ingest.rename("$session_id", "session_id");
    }
    let t = Instant::now();
    store.ingest(Table::Events, reader, ingest)?;
    out.push(("ingest", t.elapsed(), counts.take()));
    store.ready()?;
    let rt = elide::tokio::runtime::Runtime::new()?;
    let ctx = elide::session_context(&store)?;
    let picked = rt.block_on(elide::run_sql(&ctx, ONE_PERCENT))?.concat()?;
    let projects = picked.column(0).as_primitive::<Int64Type>();
    let ids = picked.column(1).as_string_view();
    let mut by_project = BTreeMap::<i64, Vec<String>>::new();
    for i in 0..picked.num_rows() {
        by_project
            .entry(projects.value(i))
            .or_default()
            .push(ids.value(i).into());
    }
    counts.take();
    let timed_query = |name: &'static str, sql: &str, out: &mut Figures| -> Result<(), Error> {
        rt.block_on(elide::run_sql(&ctx, sql))?;
        counts.take();
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            rt.block_on(elide::run_sql(&ctx, sql))?;
            times.push(t.elapsed());
        }
        let c = counts.take().map(|n| n / 5);
        out.push((name, median(times), c));
        Ok(())
    };
    timed_query("Q1 count by event, project 1", Q1, &mut out)?;
    timed_query("Q2 distinct persons by day", Q2, &mut out)?;
    let t = Instant::now();
    let outcomes = store.delete_many(by_project.into_iter().map(|(p, v)| DeleteSpec::ids(p, v)))?;
    out.push(("delete 1% of persons (visible)", t.elapsed(), counts.take()));
    let hidden: u64 = outcomes.iter().map(|o| o.rows_hidden).sum();
    assert!(hidden > 0);
    timed_query("Q1 after the delete", Q1, &mut out)?;
    let t = Instant::now();
    let report = store.compact(CompactRequest::now())?;
    out.push(("purge (compact now)", t.elapsed(), counts.take()));
    assert!(!report.requests_verified.is_empty() || report.summary.rows_dropped > 0);
    timed_query("Q2 after the purge", Q2, &mut out)?;
    store.close()?;
    Ok(out)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Error> {
    let events = arg("--events", 1_000_000);
    let persons = arg("--persons", 10_000);
    let work: PathBuf =
        std::env::temp_dir().join(format!("elide-bench-objects-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let input = work.join("events.parquet");
    let cfg = elide_gen::GenConfig {
        events,
        persons,
        projects: 5,
        ..Default::default()
    };
    elide_gen::write_parquet(cfg, &input, &mut |_| {})?;
    let local_counts = Counts::default();
    let local = run(&input, &work.join("local"), None, &local_counts)?;
    let server = S3Server::start(&work.join("s3"), "bench")?;
    let counts = Arc::new(Counts::default());
    let counting: Arc<dyn ObjectStore> = Arc::new(Counting {
        inner: server.store("bench")?,
        counts: Arc::clone(&counts),
    });
    let s3 = run(&input, &work.join("s3-local"), Some(counting), &counts)?;
    println!(
        "{events} events, {persons} persons, 5 projects; S3 = s3s-fs on 127.0.0.1 in this process"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>7}   {:>6} {:>6} {:>5} {:>5} {:>6}",
        "operation", "local", "S3", "ratio", "PUT", "GET", "HEAD", "LIST", "DELETE"
    );
    for ((name, l, _), (_, s, c)) in local.iter().zip(&s3) {
        println!(
            "{:<34} {:>8.1}ms {:>8.1}ms {:>6.2}x   {:>6} {:>6} {:>5} {:>5} {:>6}",
            name,
            l.as_secs_f64() * 1e3,
            s.as_secs_f64() * 1e3,
            s.as_secs_f64() / l.as_secs_f64().max(1e-9),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4]
        );
    }
    println!("(requests per run of the operation; a query's are the mean of 5 runs)");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
