//! The object-store commit path (`remote/`) against a real S3 server
//! (s3s-fs on 127.0.0.1) and fault-injecting wrappers around it: put-if-
//! absent probed at open, a commit whose answer is lost settled exactly
//! once, two writers kept apart by the lease, and racing writers that
//! lose no deletion.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use elide_store::remote::{LATEST_HINT, WRITER_LEASE};
use elide_store::{DeleteSpec, Store, StoreError, StoreOptions};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::common::*;

/// How a [`Faulty`] store misbehaves on puts of manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Write, then answer an error (a 503 after the write landed).
    FailAfterWrite,
    /// Answer an error without writing (the request was lost).
    FailBeforeWrite,
    /// Every manifest put fails without writing, and so do reads of it.
    Unreachable,
    /// `PutMode::Create` is ignored (a server without put-if-absent).
    NoConditionalPut,
    /// Every PUT answers a version id (a versioned bucket).
    Versioned,
}

/// A wrapper that injects one kind of fault into the next `budget`
/// manifest puts, and serialises every put (so that the S3 server's
/// check-then-write is atomic across two handles).
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    fault: Mutex<Fault>,
    budget: AtomicUsize,
    manifest_puts: AtomicUsize,
    serial: tokio::sync::Mutex<()>,
    /// Keys this handle sees renamed (hides the writer lease from a second handle).
    rename_lease: Option<&'static str>,
    /// Listings of `manifest/`: whole, and from an offset.
    manifest_lists: AtomicUsize,
    manifest_offset_lists: AtomicUsize,
}

impl Faulty {
    fn new(inner: Arc<dyn ObjectStore>) -> Arc<Faulty> {
        Faulty::renaming_lease(inner, None)
    }

    /// A store that sees the writer lease under another key (`to`).
    fn renaming_lease(inner: Arc<dyn ObjectStore>, to: Option<&'static str>) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            fault: Mutex::new(Fault::None),
            budget: AtomicUsize::new(0),
            manifest_puts: AtomicUsize::new(0),
            serial: tokio::sync::Mutex::new(()),
            rename_lease: to,
            manifest_lists: AtomicUsize::new(0),
            manifest_offset_lists: AtomicUsize::new(0),
        })
    }

    fn arm(&self, fault: Fault, times: usize) {
        *self.fault.lock().unwrap() = fault;
        self.budget.store(times, Ordering::SeqCst);
    }

    fn fault_for(&self, location: &Path) -> Fault {
        let f = *self.fault.lock().unwrap();
        if matches!(f, Fault::NoConditionalPut | Fault::Versioned) {
            return f;
        }
        if !location.as_ref().starts_with("manifest/") {
            return Fault::None;
        }
        if f == Fault::Unreachable {
            return f;
        }
        match self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
        {
            Ok(_) => f,
            Err(_) => Fault::None,
        }
    }

    fn map(&self, location: &Path) -> Path {
        match self.rename_lease {
            Some(to) if location.as_ref() == WRITER_LEASE => Path::from(to),
            _ => location.clone(),
        }
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: "injected: 503 Slow Down".into(),
    }
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Faulty")
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let location = &self.map(location);
        let _serial = self.serial.lock().await;
        if location.as_ref().starts_with("manifest/") {
            self.manifest_puts.fetch_add(1, Ordering::SeqCst);
        }
        match self.fault_for(location) {
            Fault::None => self.inner.put_opts(location, payload, opts).await,
            Fault::FailAfterWrite => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected())
            }
            Fault::FailBeforeWrite | Fault::Unreachable => Err(injected()),
            Fault::Versioned => {
                let mut r = self.inner.put_opts(location, payload, opts).await?;
                r.version = Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into());
                Ok(r)
            }
            Fault::NoConditionalPut => {
                let opts = PutOptions {
                    mode: match opts.mode {
                        PutMode::Create => PutMode::Overwrite,
                        m => m,
                    },
                    ..opts
                };
                self.inner.put_opts(location, payload, opts).await
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner
            .put_multipart_opts(&self.map(location), opts)
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if *self.fault.lock().unwrap() == Fault::Unreachable
            && location.as_ref().starts_with("manifest/")
        {
            return Err(injected());
        }
        self.inner.get_opts(&self.map(location), options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(&self.map(location), ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if prefix.is_some_and(|p| p.as_ref() == "manifest") {
            self.manifest_lists.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if prefix.is_some_and(|p| p.as_ref() == "manifest") {
            self.manifest_offset_lists.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn s3_opts(os: Arc<dyn ObjectStore>) -> StoreOptions {
    on_object_store(opts(), os)
}

/// A store on `site` through a fault-injecting wrapper, with rows of "a"
/// and "b" in a part; and its version then.
fn faulty_store(site: &Site) -> (Arc<Faulty>, Store, u64) {
    let faulty = Faulty::new(site.server.as_ref().unwrap().store(BUCKET).unwrap());
    let store = Store::open(site.path(), s3_opts(faulty.clone())).unwrap();
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    store.flush().unwrap();
    let version = store.manifest().unwrap().version;
    (faulty, store, version)
}

fn manifests(server: &elide_store::s3_server::S3Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(server.root().join(BUCKET).join("manifest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".manifest"))
        .collect();
    v.sort();
    v
}

fn ids_visible(store: &Store) -> BTreeSet<String> {
    visible(store).into_iter().map(|(_, d, _)| d).collect()
}

use std::collections::BTreeSet;

#[test]
fn a_store_on_s3_round_trips_and_keeps_only_its_log_locally() {
    let site = Site::new(Backend::S3);
    let opts = site.opts(opts());
    let store = Store::open(site.path(), opts.clone()).unwrap();
    append(
        &store,
        &[row(1, "a", 1, 0), row(2, "b", 1, 0), row(3, "a", 1, 1)],
    );
    store.flush().unwrap();
    append(&store, &[row(4, "c", 1, 0)]);
    let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    assert_eq!(o.rows_hidden, 2);
    assert_eq!(
        ids_visible(&store),
        BTreeSet::from(["b".into(), "c".into()])
    );
    store.close().unwrap();
    let mut local: Vec<String> = std::fs::read_dir(site.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    local.sort();
    assert!(
        local
            .iter()
            .all(|n| ["LOCK", "WRITER_ID", "wal", "tmp", "readers"].contains(&n.as_str())),
        "only the log and the lock are local: {local:?}"
    );
    let server = site.server.as_ref().unwrap();
    assert!(!manifests(server).is_empty());
    assert!(server.root().join(BUCKET).join(LATEST_HINT).is_file());
    // Reopened: the logged row is replayed, the deletion still applies.
    let store = Store::open(site.path(), opts).unwrap();
    assert_eq!(
        ids_visible(&store),
        BTreeSet::from(["b".into(), "c".into()])
    );
    compact_now(&store);
    assert_eq!(
        ids_visible(&store),
        BTreeSet::from(["b".into(), "c".into()])
    );
    assert!(store.scrub(&mut |_, _| {}).unwrap().findings.is_empty());
}

/// A writer that opens a store on an object store hands out file ids far
/// past any it can see: a writer before it that has not stopped (a paused
/// process whose lease lapsed) may hold ids it has not written yet, and
/// two files must never share a path.
#[test]
fn a_writer_on_an_object_store_starts_its_file_ids_past_the_last_writers() {
    let site = Site::new(Backend::S3);
    let opts = site.opts(opts());
    let max_id = |store: &Store| store.manifest().unwrap().parts.iter().map(|p| p.id).max();
    let store = Store::open(site.path(), opts.clone()).unwrap();
    append(&store, &[row(1, "a", 1, 0)]);
    store.flush().unwrap();
    let first = max_id(&store).unwrap();
    store.close().unwrap();
    let store = Store::open(site.path(), opts).unwrap();
    append(&store, &[row(2, "b", 1, 0)]);
    store.flush().unwrap();
    let second = max_id(&store).unwrap();
    assert!(second > first + (1 << 32) - 1, "{first} then {second}");
    assert_eq!(
        ids_visible(&store),
        BTreeSet::from(["a".into(), "b".into()])
    );
}

#[test]
fn a_server_without_put_if_absent_is_refused_by_name() {
    let site = Site::new(Backend::S3);
    let faulty = Faulty::new(site.server.as_ref().unwrap().store(BUCKET).unwrap());
    faulty.arm(Fault::NoConditionalPut, usize::MAX);
    let err = Store::open(site.path(), s3_opts(faulty)).unwrap_err();
    assert!(matches!(err, StoreError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("put-if-absent"), "{err}");
    assert!(err.to_string().contains("If-None-Match"), "{err}");
}

/// A 503 after the manifest landed, and a request lost before it did:
/// either way the commit happens exactly once and the caller is told so.
#[test]
fn a_commit_whose_answer_is_lost_is_settled_exactly_once() {
    for fault in [Fault::FailAfterWrite, Fault::FailBeforeWrite] {
        let site = Site::new(Backend::S3);
        let (faulty, store, before) = faulty_store(&site);
        faulty.arm(fault, 1);
        let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
        assert_eq!(o.rows_hidden, 1, "{fault:?}");
        let after = store.manifest().unwrap().version;
        assert_eq!(after, before + 1, "{fault:?}: one version");
        // The store goes on committing after a settled publish.
        store.delete(DeleteSpec::ids(1, ["b"])).unwrap();
        assert_eq!(store.manifest().unwrap().version, before + 2);
        store.close().unwrap();
        let store = Store::open(site.path(), s3_opts(faulty.clone())).unwrap();
        assert_eq!(store.manifest().unwrap().version, before + 2, "{fault:?}");
        assert!(ids_visible(&store).is_empty(), "{fault:?}");
        assert_eq!(store.manifest().unwrap().requests.len(), 2);
    }
}

/// When no answer can be had, the caller is told the outcome is unknown
/// and the handle refuses commits; a reopen reads the truth.
#[test]
fn an_unknowable_commit_is_reported_and_the_handle_stops_committing() {
    let site = Site::new(Backend::S3);
    let (faulty, store, before) = faulty_store(&site);
    faulty.arm(Fault::Unreachable, usize::MAX);
    let err = store.delete(DeleteSpec::ids(1, ["a"])).unwrap_err();
    assert!(err.to_string().contains("unknown"), "{err}");
    faulty.arm(Fault::None, 0);
    let again = store.delete(DeleteSpec::ids(1, ["b"])).unwrap_err();
    assert!(again.to_string().contains("reopen"), "{again}");
    drop(store);
    let store = Store::open(site.path(), s3_opts(faulty)).unwrap();
    assert_eq!(store.manifest().unwrap().version, before);
    // The deletion did not happen: the rows are visible, and a new
    // request hides them.
    assert_eq!(ids_visible(&store).len(), 2);
    store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    assert_eq!(ids_visible(&store), BTreeSet::from(["b".into()]));
}

#[test]
fn a_second_writer_is_refused_while_the_lease_is_held() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let other = tempfile::tempdir().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    let err = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap_err();
    assert!(matches!(err, StoreError::RemoteLocked { .. }), "{err}");
    // Released on close: the next writer need not wait for the expiry.
    a.close().unwrap();
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    drop(b);
    // A lease a crashed writer left expires by itself.
    let os = server.store(BUCKET).unwrap();
    let expired =
        serde_json::json!({"holder": "crashed", "host": "h", "pid": 1, "expires_at_us": 1});
    let live =
        serde_json::json!({"holder": "alive", "host": "h", "pid": 1, "expires_at_us": i64::MAX});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let put = |v: &serde_json::Value| {
        let bytes = serde_json::to_vec(v).unwrap();
        rt.block_on(os.put(&Path::from(WRITER_LEASE), bytes.into()))
            .unwrap();
    };
    put(&expired);
    drop(Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap());
    put(&live);
    let err = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap_err();
    assert!(err.to_string().contains("alive"), "{err}");
    // A live lease of a writer of this boot and local directory (its
    // WRITER_ID) that was killed: whoever holds the directory's LOCK now
    // takes it over at once; a writer elsewhere is still refused, and so
    // is the same directory's writer under another boot id (a cloned
    // machine).
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let writer = std::fs::read_to_string(site.path().join("WRITER_ID")).unwrap();
    let killed = serde_json::json!({
        "holder": "killed", "host": "h", "pid": 1, "expires_at_us": i64::MAX,
        "writer_id": writer.trim(), "boot_id": boot.trim(),
        "local_dir": site.path().canonicalize().unwrap().display().to_string(),
    });
    put(&killed);
    let err = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap_err();
    assert!(err.to_string().contains("killed"), "{err}");
    drop(Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap());
    let cloned = serde_json::json!({
        "holder": "cloned", "host": "h", "pid": 1, "expires_at_us": i64::MAX,
        "writer_id": writer.trim(), "boot_id": "another-boot",
        "local_dir": site.path().canonicalize().unwrap().display().to_string(),
    });
    put(&cloned);
    let err = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap_err();
    assert!(err.to_string().contains("cloned"), "{err}");
    // A copy of the directory (same WRITER_ID, same boot) at another
    // path is another live writer.
    let copied = serde_json::json!({
        "holder": "copied", "host": "h", "pid": 1, "expires_at_us": i64::MAX,
        "writer_id": writer.trim(), "boot_id": boot.trim(),
        "local_dir": "/somewhere/else",
    });
    put(&copied);
    let err = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap_err();
    assert!(err.to_string().contains("copied"), "{err}");
}

/// Two handles that both believe they are the writer (the lease hidden
/// from one, as a clock gone wrong would) race 200 deletions through a
/// serialising wrapper. Put-if-absent lets one win each version: every
/// deletion that returned `Ok` is in the final store, and the loser of a
/// version is told and reopens.
#[test]
fn racing_writers_lose_no_deletion() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let ids: Vec<String> = (0..200).map(|i| format!("person-{i:03}")).collect();
    {
        let store = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
        let rows: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, d)| row(i as u64, d, 1, 0))
            .collect();
        append(&store, &rows);
        store.flush().unwrap();
        store.close().unwrap();
    }
    let serial = Faulty::new(server.store(BUCKET).unwrap());
    let hidden = Faulty::renaming_lease(
        Arc::clone(&serial) as Arc<dyn ObjectStore>,
        Some("_elide/writer.lease.second"),
    );
    let other = tempfile::tempdir().unwrap();
    let handles: Vec<(std::path::PathBuf, Arc<dyn ObjectStore>)> = vec![
        (site.path(), serial as Arc<dyn ObjectStore>),
        (other.path().to_path_buf(), hidden as Arc<dyn ObjectStore>),
    ];
    let confirmed = Mutex::new(Vec::new());
    let conflicts = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for (w, (dir, os)) in handles.iter().enumerate() {
            let ids = &ids;
            let confirmed = &confirmed;
            let conflicts = &conflicts;
            s.spawn(move || {
                // GC keeps unreferenced objects for the default window:
                // the other writer's objects in flight are among them.
                let open = || {
                    let opts = StoreOptions {
                        object_retention: StoreOptions::default().object_retention,
                        ..s3_opts(Arc::clone(os))
                    };
                    Store::open(dir, opts).unwrap()
                };
                let mut store = open();
                for id in ids.iter().skip(w).step_by(2) {
                    loop {
                        match store.delete(DeleteSpec::ids(1, [id.as_str()])) {
                            Ok(_) => {
                                confirmed.lock().unwrap().push(id.clone());
                                break;
                            }
                            // The other handle won this version (or a
                            // file id both chose): nothing of this
                            // request was committed; reopen on the latest.
                            Err(_) => {
                                conflicts.fetch_add(1, Ordering::SeqCst);
                                drop(store);
                                store = open();
                            }
                        }
                    }
                }
            });
        }
    });
    let confirmed = confirmed.into_inner().unwrap();
    assert_eq!(confirmed.len(), 200);
    let store = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap()));
    // The first handle's lease is released; the second's was hidden.
    let store = store.unwrap();
    let visible = ids_visible(&store);
    let m = store.manifest().unwrap();
    for id in &confirmed {
        assert!(
            !visible.contains(id),
            "{id}'s deletion was lost (version {}, {} requests)",
            m.version,
            m.requests.len()
        );
    }
    let requests = store.manifest().unwrap().requests.len();
    assert_eq!(requests, 200, "each confirmed deletion is one request");
    eprintln!(
        "racing writers: {} commits lost to the other handle, reopened",
        conflicts.load(Ordering::SeqCst)
    );
}

/// With old versions kept for the retention window, an open still finds
/// the latest with listings from the hint, never a listing of them all.
#[test]
fn the_latest_version_is_found_by_listing_from_the_hint() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let keep = StoreOptions {
        object_retention: StoreOptions::default().object_retention,
        ..s3_opts(server.store(BUCKET).unwrap())
    };
    let store = Store::open(site.path(), keep).unwrap();
    let ids: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let rows: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, d)| row(i as u64, d, 1, 0))
        .collect();
    append(&store, &rows);
    store.flush().unwrap();
    for id in &ids[..25] {
        store.delete(DeleteSpec::ids(1, [id.as_str()])).unwrap();
    }
    let latest = store.manifest().unwrap().version;
    store.close().unwrap();
    assert!(
        manifests(server).len() > 25,
        "old versions are kept for the window"
    );
    let counting = Faulty::new(server.store(BUCKET).unwrap());
    let reader = Store::open_read_only(site.path(), s3_opts(counting.clone())).unwrap();
    assert_eq!(reader.manifest().unwrap().version, latest);
    assert_eq!(ids_visible(&reader).len(), 5);
    assert_eq!(
        counting.manifest_lists.load(Ordering::SeqCst),
        0,
        "no listing of every version"
    );
    assert!(counting.manifest_offset_lists.load(Ordering::SeqCst) >= 1);
}

/// A purged part stays on the bucket for the retention window (a reader
/// on another machine may be reading it), the request waits for its
/// removal, and the window is kept across processes: the manifest records
/// when each object was retired, so a reopen inside the window keeps it
/// and one after the window removes it. The parts are written a window
/// before they are retired: dating them by their writing would remove
/// them at once.
#[test]
fn a_purge_waits_out_the_retention_window_across_reopens() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let window = std::time::Duration::from_secs(5);
    let opts = || StoreOptions {
        object_retention: window,
        ..s3_opts(server.store(BUCKET).unwrap())
    };
    let parts = || -> BTreeSet<std::path::PathBuf> {
        files_under(&server.root().join(BUCKET).join("parts"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect()
    };
    let store = Store::open(site.path(), opts()).unwrap();
    append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    store.flush().unwrap();
    let before = parts();
    std::thread::sleep(window);
    let retired = std::time::Instant::now();
    let o = store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    compact_now(&store);
    let status = |s: &Store| {
        s.manifest()
            .unwrap()
            .requests
            .iter()
            .find(|r| r.id == o.request_id)
            .unwrap()
            .status
    };
    assert_eq!(ids_visible(&store), BTreeSet::from(["b".into()]));
    assert!(parts().is_superset(&before), "removed inside the window");
    assert_eq!(status(&store), elide_store::RequestStatus::Pending);
    assert!(!store.manifest().unwrap().retired.is_empty());
    store.close().unwrap();
    let store = Store::open(site.path(), opts()).unwrap();
    assert!(
        parts().is_superset(&before),
        "a reopen inside the window removed it"
    );
    assert!(
        retired.elapsed() < window,
        "the machine was too slow for this test's window"
    );
    store.close().unwrap();
    std::thread::sleep(
        window.saturating_sub(retired.elapsed()) + std::time::Duration::from_millis(200),
    );
    let store = Store::open(site.path(), opts()).unwrap();
    assert!(parts().is_disjoint(&before), "the window is over");
    compact_now(&store);
    assert_eq!(status(&store), elide_store::RequestStatus::Verified);
}

/// A handle whose GC has objects due does not remove them once another
/// writer has published a later version (the lease failed: that version
/// may reference them).
#[test]
fn gc_removes_nothing_past_a_version_it_does_not_know() {
    // Without the foreign version (the control) the same run removes
    // them: the check, not a run that never collected, keeps them.
    for foreign_version in [false, true] {
        let site = Site::new(Backend::S3);
        let server = site.server.as_ref().unwrap();
        let opts = || StoreOptions {
            object_retention: std::time::Duration::from_secs(1),
            ..s3_opts(server.store(BUCKET).unwrap())
        };
        let store = Store::open(site.path(), opts()).unwrap();
        append(&store, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
        store.flush().unwrap();
        store.delete(DeleteSpec::ids(1, ["a"])).unwrap();
        compact_now(&store); // retires the old part and tombstones
        let retired: Vec<String> = store
            .manifest()
            .unwrap()
            .retired
            .iter()
            .map(|r| r.path.clone())
            .collect();
        assert!(!retired.is_empty());
        if foreign_version {
            // Another writer publishes the next version (here: this
            // one's manifest again, under the next number, with another
            // token).
            let mut foreign = store.manifest().unwrap();
            foreign.version += 1;
            foreign.commit_token = "another-writer".into();
            let bytes = elide_store::format::encode_manifest(&foreign).unwrap();
            let rt = tokio::runtime::Runtime::new().unwrap();
            let os = server.store(BUCKET).unwrap();
            rt.block_on(os.put(
                &Path::from(elide_store::format::manifest_path(foreign.version)),
                bytes.into(),
            ))
            .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // A compaction run collects first (its own commit then conflicts
        // with the foreign version: its result is not the point here).
        let _ = store.compact(elide_store::CompactRequest {
            manual: true,
            ..Default::default()
        });
        for p in &retired {
            assert_eq!(
                server.root().join(BUCKET).join(p).exists(),
                foreign_version,
                "{p}: kept past a foreign version, removed otherwise"
            );
        }
    }
}

/// A local directory whose log holds rows is not replayed into a store
/// that another local directory's writer has committed to since.
#[test]
fn a_log_is_not_replayed_after_another_writer_committed() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    append(&a, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    // The directory as a crash would leave it: rows only in its log.
    let crashed = site.dir.path().join("crashed");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(site.path())
        .arg(&crashed)
        .status()
        .unwrap();
    assert!(copy.success());
    a.flush().unwrap();
    a.close().unwrap();
    let other = tempfile::tempdir().unwrap();
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    b.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    b.close().unwrap();
    let bucket = || -> BTreeSet<std::path::PathBuf> {
        files_under(&server.root().join(BUCKET))
            .into_iter()
            .collect()
    };
    let objects = bucket();
    let err = Store::open(&crashed, s3_opts(server.store(BUCKET).unwrap())).unwrap_err();
    assert!(matches!(err, StoreError::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("record"), "{err}");
    // Nothing of the store was changed (the lease object aside: taken
    // and released), and it opens from a directory with no log.
    let lease = server.root().join(BUCKET).join(WRITER_LEASE);
    let mut after = bucket();
    after.remove(&lease);
    let mut before = objects;
    before.remove(&lease);
    assert_eq!(before, after);
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&b), BTreeSet::from(["b".into()]));
}

/// A reader of a directory whose log holds rows that another directory's
/// writer never saw shows none of them: that writer handed their `_seq`s
/// out again, and its deletions' cut-offs do not cover them (the writer
/// of the directory refuses the log for the same reason).
#[test]
fn a_reader_does_not_replay_a_log_another_writer_made_stale() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    let mut rows: Vec<_> = (1..=5).map(|n| row(n, "b", 1, 0)).collect();
    rows.push(row(6, "a", 1, 0));
    append(&a, &rows);
    // As a crash leaves it: the rows only in this directory's log.
    drop(a);
    let other = tempfile::tempdir().unwrap();
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    append(&b, &[row(7, "c", 1, 0)]);
    b.flush().unwrap();
    b.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    b.close().unwrap();
    let r = Store::open_read_only(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&r), BTreeSet::from(["c".into()]));
}

/// A writer that takes over from another directory's and stops before
/// its first flush finds its own log again when it reopens: its first
/// append committed a version naming it before the row was logged.
#[test]
fn a_writer_that_took_over_replays_its_own_log_after_a_crash() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    append(&a, &[row(1, "a", 1, 0)]);
    a.flush().unwrap();
    a.close().unwrap();
    let other = tempfile::tempdir().unwrap();
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    append(&b, &[row(2, "b", 1, 0)]);
    // As a crash leaves it: the row only in this directory's log.
    drop(b);
    let both = BTreeSet::from(["a".to_string(), "b".to_string()]);
    let r = Store::open_read_only(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&r), both);
    drop(r);
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&b), both);
    b.close().unwrap();
    // The first writer's directory, whose log is empty, opens again.
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&a), both);
}

/// A writer open from another directory that logs nothing (an export, a
/// status check) commits nothing: the last writer's own log, left by a
/// crash, is still replayed when it comes back.
#[test]
fn a_writer_open_that_logs_nothing_leaves_the_last_writers_log_replayable() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    append(&a, &[row(1, "a", 1, 0)]);
    a.flush().unwrap();
    append(&a, &[row(2, "b", 1, 0)]);
    // As a crash leaves it: "b" only in this directory's log.
    drop(a);
    let other = tempfile::tempdir().unwrap();
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    let version = b.status().unwrap().version;
    b.close().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert!(a.status().unwrap().version >= version);
    assert_eq!(
        ids_visible(&a),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
}

/// `elide doctor`'s checks: all pass on the S3 server; a server without
/// put-if-absent fails; a versioned bucket is a warning naming the fix.
#[test]
fn the_doctor_checks_what_erasure_needs_of_the_bucket() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let status = |checks: &[elide_store::remote::Check], name: &str| {
        checks
            .iter()
            .find(|c| c.check == name)
            .map(|c| (c.status, c.detail.clone()))
            .unwrap()
    };
    let checks = elide_store::remote::doctor(&server.store(BUCKET).unwrap(), "s3://elide").unwrap();
    for name in [
        "put-if-absent",
        "versioning",
        "conditional replace",
        "writer lease",
    ] {
        assert_eq!(status(&checks, name).0, "ok", "{name}: {checks:?}");
    }
    assert_eq!(status(&checks, "manifest").0, "warn", "no store yet");
    assert_eq!(status(&checks, "lifecycle rules").0, "note");
    // A store and its writer: the lease is reported with its holder.
    let store = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    let checks = elide_store::remote::doctor(&server.store(BUCKET).unwrap(), "s3://elide").unwrap();
    assert!(
        status(&checks, "writer lease").1.contains("held by"),
        "{checks:?}"
    );
    assert!(status(&checks, "manifest").1.contains("latest version"));
    store.close().unwrap();
    let faulty = Faulty::new(server.store(BUCKET).unwrap());
    faulty.arm(Fault::NoConditionalPut, usize::MAX);
    let checks =
        elide_store::remote::doctor(&(faulty.clone() as Arc<dyn ObjectStore>), "x").unwrap();
    assert_eq!(status(&checks, "put-if-absent").0, "fail");
    faulty.arm(Fault::Versioned, usize::MAX);
    let checks = elide_store::remote::doctor(&(faulty as Arc<dyn ObjectStore>), "x").unwrap();
    let (st, detail) = status(&checks, "versioning");
    assert_eq!(st, "warn");
    assert!(detail.contains("non-current"), "{detail}");
}

/// Closing a store on an object store puts its logged rows into parts: a
/// writer in another local directory (a failover after a clean stop) sees
/// them, and the first directory reopens without a refusal.
#[test]
fn a_clean_close_leaves_nothing_for_another_directory_to_miss() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    append(&a, &[row(1, "a", 1, 0), row(2, "b", 1, 0)]);
    a.close().unwrap();
    let other = tempfile::tempdir().unwrap();
    let b = Store::open(other.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&b), BTreeSet::from(["a".into(), "b".into()]));
    b.delete(DeleteSpec::ids(1, ["a"])).unwrap();
    b.close().unwrap();
    let a = Store::open(site.path(), s3_opts(server.store(BUCKET).unwrap())).unwrap();
    assert_eq!(ids_visible(&a), BTreeSet::from(["b".into()]));
}

/// A writer whose lease another writer took: its next flush writes parts,
/// then cannot commit. Nothing was published, so the parts are removed
/// at once (they used to stay until a reopen, a memtable's worth per
/// attempt, and no request could become purged meanwhile), and the
/// handle refuses writes until it is reopened.
#[test]
fn a_writer_that_lost_its_lease_leaves_no_parts_and_stops_writing() {
    let site = Site::new(Backend::S3);
    let server = site.server.as_ref().unwrap();
    let mut o = s3_opts(server.store(BUCKET).unwrap());
    o.object_lease_ttl = std::time::Duration::from_millis(1500);
    let a = Store::open(site.path(), o).unwrap();
    append(&a, &[row(1, "a", 1, 0)]);
    a.flush().unwrap();
    let parts = || -> BTreeSet<std::path::PathBuf> {
        files_under(&server.root().join(BUCKET).join("parts"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect()
    };
    assert_eq!(parts().len(), 1);
    // Another writer takes the lease (as after this one stalled past it).
    let taken =
        serde_json::json!({"holder": "usurper", "host": "h", "pid": 1, "expires_at_us": i64::MAX});
    let os = server.store(BUCKET).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(os.put(
            &Path::from(WRITER_LEASE),
            serde_json::to_vec(&taken).unwrap().into(),
        ))
        .unwrap();
    // The renewal (every half second here) finds it taken.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (err, before) = loop {
        append(&a, &[row(2, "b", 1, 0)]);
        let before = parts();
        match a.flush() {
            Err(e) => break (e, before),
            Ok(()) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lease was never found taken"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("another writer"), "{err}");
    assert_eq!(parts(), before, "the parts of the failed flush stayed");
    let e = a.delete(DeleteSpec::ids(1, ["a"])).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
}
