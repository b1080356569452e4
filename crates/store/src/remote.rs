//! What an object store (S3 and S3-compatible servers) needs of the commit
//! path beyond a local directory, where a rename and a lock file do the
//! work. delta-rs and Lance commit the same way.
//!
//! * **Put-if-absent publishes a version.** A manifest version is written
//!   with `PutMode::Create` (`If-None-Match: *`), never by rename, so two
//!   writers can never both publish version `V`. Each manifest carries a
//!   per-commit token ([`crate::format::Manifest::commit_token`]). A
//!   publish whose answer is lost (a timeout, a 5xx after the write landed,
//!   the client's own retry answered `412`) is settled by reading version
//!   `V` back ([`publish_manifest`]): our token, committed; another token,
//!   another writer's commit (the handle refuses commits); absent, the same
//!   bytes are put again, so a delayed first request and the retry cannot
//!   both land. Only when no answer can be had is the outcome reported as
//!   unknown, and the handle refuses commits until it is reopened (which
//!   reads the truth).
//! * **The server must enforce it.** [`probe_put_if_absent`] writes a
//!   probe object twice at open; a server that accepts the second write is
//!   refused with an error naming the missing capability.
//! * **The latest version in O(1) listings.** After each commit a hint
//!   object ([`LATEST_HINT`]) records the version; the open lists manifests
//!   from that version on ([`latest_manifest`]), one LIST call however many
//!   old versions the retention window keeps. The hint only ever trails
//!   the truth (it is written after the manifest), so listing from it
//!   cannot miss the latest version.
//! * **One writer per store across machines.** [`WriterLease`]: an object
//!   holding a holder token and an expiry, taken with put-if-absent (or, if
//!   expired, replaced conditionally on its ETag), renewed by a thread, and
//!   checked before every commit, which is refused once the lease may have
//!   lapsed. The local `LOCK` file still guards the local directory.
//!
//! Every call here blocks its caller; the futures run on one small tokio
//! runtime of the process ([`wait`]), since the HTTP client needs one and
//! the store's callers may be on any thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::format::{decode_manifest, parse_manifest_path, MANIFEST_DIR};

/// Where the hint of the latest manifest version lives.
pub const LATEST_HINT: &str = "_elide/latest-manifest";
/// The writer lease object.
pub const WRITER_LEASE: &str = "_elide/writer.lease";
/// Prefix of the put-if-absent probes.
const PROBE_PREFIX: &str = "_elide/probe";

/// How long a writer lease lasts without renewal.
pub const WRITER_LEASE_TTL: Duration = Duration::from_secs(30);
/// A commit is refused when less than this is left of the lease: the
/// commit itself must finish before another writer may take over.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("elide-objects")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError::Unavailable(format!("cannot start the object-store runtime: {e}")))
}

/// The object-store runtime's handle: S3 clients do their HTTP I/O on it
/// (`SpawnedReqwestConnector`), whichever runtime awaits them, so that a
/// connection never belongs to a runtime that is blocked or gone.
pub fn runtime_handle() -> Result<tokio::runtime::Handle> {
    Ok(runtime()?.handle().clone())
}

/// Run `fut` to completion on the object-store runtime and wait for it
/// from this (blocking) thread. Safe to call from inside another tokio
/// runtime's worker: the future runs on this module's own threads.
pub(crate) fn wait<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
    let handle = runtime()?.spawn(fut);
    futures::executor::block_on(handle)
        .map_err(|e| StoreError::Internal(format!("object-store task failed: {e}")))
}

fn os_err(path: &str, source: object_store::Error) -> StoreError {
    StoreError::ObjectStore {
        path: path.to_string(),
        source,
    }
}

fn put(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    bytes: Bytes,
    mode: PutMode,
) -> Result<std::result::Result<object_store::PutResult, object_store::Error>> {
    let store = Arc::clone(store);
    let p = Path::from(path);
    wait(async move {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        store
            .put_opts(&p, PutPayload::from_bytes(bytes), opts)
            .await
    })
}

fn get(
    store: &Arc<dyn ObjectStore>,
    path: &str,
) -> Result<std::result::Result<(Bytes, Option<String>), object_store::Error>> {
    let store = Arc::clone(store);
    let p = Path::from(path);
    wait(async move {
        let r = store.get(&p).await?;
        let e_tag = r.meta.e_tag.clone();
        Ok((r.bytes().await?, e_tag))
    })
}

/// Check that `store` refuses a second put-if-absent of one path.
pub(crate) fn probe_put_if_absent(store: &Arc<dyn ObjectStore>, what: &str) -> Result<()> {
    let path = format!("{PROBE_PREFIX}/{}", uuid::Uuid::new_v4().simple());
    let body = Bytes::from_static(b"elide put-if-absent probe");
    put(store, &path, body.clone(), PutMode::Create)?.map_err(|e| os_err(&path, e))?;
    let second = put(store, &path, body, PutMode::Create)?;
    let removed = {
        let store = Arc::clone(store);
        let p = Path::from(path.as_str());
        wait(async move { store.delete(&p).await })?
    };
    if let Err(e) = removed {
        tracing::warn!(path, error = %e, "could not remove the put-if-absent probe");
    }
    match second {
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(()),
        Ok(_) => Err(StoreError::Unsupported {
            what: what.to_string(),
            capability:
                "put-if-absent (a PUT with `If-None-Match: *` must fail when the object exists); \
                         without it two writers could both publish one manifest version"
                    .into(),
        }),
        Err(e) => Err(os_err(&path, e)),
    }
}

/// The latest manifest version, listing from the hint on.
pub(crate) fn latest_manifest(store: &Arc<dyn ObjectStore>) -> Result<Option<(u64, String)>> {
    let hint = match get(store, LATEST_HINT)? {
        Ok((bytes, _)) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(os_err(LATEST_HINT, e)),
    };
    let list = |offset: Option<u64>| -> Result<Option<(u64, String)>> {
        let store = Arc::clone(store);
        let objects = wait(async move {
            let prefix = Path::from(MANIFEST_DIR);
            match offset {
                // Keys strictly after the one below the hint: the hint's
                // version and every later one.
                Some(v) => {
                    let from = Path::from(crate::format::manifest_path(v));
                    store
                        .list_with_offset(Some(&prefix), &from)
                        .try_collect::<Vec<_>>()
                        .await
                }
                None => store.list(Some(&prefix)).try_collect::<Vec<_>>().await,
            }
        })?
        .map_err(|e| os_err(MANIFEST_DIR, e))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let path = o.location.to_string();
                parse_manifest_path(&path).map(|v| (v, path))
            })
            .max())
    };
    if let Some(h) = hint.filter(|h| *h > 0) {
        // The hint only trails the truth: its version exists or a later
        // one does, unless the store was tampered with.
        if let Some(found) = list(Some(h - 1))? {
            return Ok(Some(found));
        }
        tracing::warn!(
            hint = h,
            "the latest-manifest hint is ahead of every manifest; listing them all"
        );
    }
    list(None)
}

/// Record `version` as the latest (best effort: a failure only costs the
/// next open a longer listing).
pub(crate) fn write_hint(store: &Arc<dyn ObjectStore>, version: u64) {
    match put(
        store,
        LATEST_HINT,
        Bytes::from(version.to_string()),
        PutMode::Overwrite,
    ) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(version, error = %e, "could not update the latest-manifest hint")
        }
        Err(e) => tracing::warn!(version, error = %e, "could not update the latest-manifest hint"),
    }
}

/// How a publish ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// Version `V` is ours.
    Committed,
    /// Version `V` holds another writer's commit: nothing of ours is.
    Conflict,
}

/// Publish manifest `path` (`bytes`, carrying `token`) with put-if-absent,
/// settling a lost or ambiguous answer by reading the version back. An
/// `Err` means the outcome could not be learnt.
///
/// `still_writer` is asked before every attempt: how long the writer
/// lease is certainly held (`None`: no lease to outlive). Each PUT is cut
/// off when that time is over, and once the lease may have lapsed no
/// further attempt is made (the outcome is then unknown).
pub(crate) fn publish_manifest(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    bytes: Bytes,
    token: &str,
    still_writer: &dyn Fn() -> Result<Option<Duration>>,
) -> Result<Published> {
    const ATTEMPTS: usize = 4;
    let mut last: Option<StoreError> = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(50 << attempt));
        }
        let limit = match still_writer() {
            Ok(l) => l,
            Err(e) => {
                last = Some(e);
                break;
            }
        };
        let answer = match limit {
            None => put(store, path, bytes.clone(), PutMode::Create)?,
            Some(limit) => {
                let (store, p, b) = (Arc::clone(store), Path::from(path), bytes.clone());
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                wait(async move {
                    tokio::time::timeout(limit, store.put_opts(&p, PutPayload::from_bytes(b), opts))
                        .await
                })?
                .unwrap_or_else(|_| {
                    Err(object_store::Error::Generic {
                        store: "elide",
                        source: "the PUT outlasted the writer lease; cut off".into(),
                    })
                })
            }
        };
        match answer {
            Ok(_) => return Ok(Published::Committed),
            // A version is there: ours (a retry of a write that landed)
            // or another writer's.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {}
            Err(e) => {
                tracing::warn!(path, attempt, error = %e, "publishing a manifest failed; reading the version back");
                last = Some(os_err(path, e));
            }
        }
        match get(store, path)? {
            Ok((found, _)) => {
                // Not our token, or not even a manifest we can read:
                // either way not our commit.
                let ours = decode_manifest(path, &found).is_ok_and(|m| m.commit_token == token);
                return Ok(if ours {
                    Published::Committed
                } else {
                    Published::Conflict
                });
            }
            // Not published (yet): put the same bytes again. A delayed
            // first request and this one cannot both land.
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => last = Some(os_err(path, e)),
        }
    }
    Err(StoreError::Unavailable(format!(
        "the outcome of publishing {path} is unknown: the object store did not answer ({}); reopen the store to read it",
        last.map_or_else(|| "no answer".to_string(), |e| e.to_string())
    )))
}

/// The writer lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    host: String,
    pid: u32,
    expires_at_us: i64,
    /// The writer's local directory (canonical path).
    #[serde(default)]
    local_dir: String,
    /// The local directory's writer id (`WRITER_ID`) and the kernel's boot
    /// id: a lease with both (and `local_dir`) equal to the opener's was
    /// left by a process of this boot on this directory, which is dead
    /// since the opener holds the directory's `LOCK` (a cloned machine has
    /// another boot id, a copied directory another path).
    #[serde(default)]
    writer_id: String,
    #[serde(default)]
    boot_id: String,
}

/// This boot of this machine (Linux), or empty where unknown: then no
/// lease is ever taken over before it expires.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[derive(Debug)]
struct LeaseState {
    e_tag: Option<String>,
}

/// The writer's lease on an object store (see the module docs). Renewed
/// by a thread until dropped; dropping releases it (it is rewritten as
/// expired, so the next writer need not wait out the TTL).
#[derive(Debug)]
pub struct WriterLease {
    store: Arc<dyn ObjectStore>,
    holder: String,
    ttl: Duration,
    /// Expiry of the last successful renewal (µs since the epoch).
    expires_at_us: Arc<AtomicI64>,
    lost: Arc<AtomicBool>,
    state: Arc<Mutex<LeaseState>>,
    stop: Option<crossbeam_channel::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl WriterLease {
    /// Take the lease of `store` (`what` names it in errors), or fail
    /// with [`StoreError::RemoteLocked`] if another writer holds it.
    ///
    /// Call with the local directory's `LOCK` held: a live lease of this
    /// directory's `writer_id` and this boot is then a dead writer's (a
    /// killed process), and is taken over at once.
    pub(crate) fn acquire(
        store: Arc<dyn ObjectStore>,
        what: &str,
        ttl: Duration,
        local_dir: &std::path::Path,
        writer_id: &str,
    ) -> Result<WriterLease> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let local = local_dir
            .canonicalize()
            .unwrap_or_else(|_| local_dir.to_path_buf())
            .display()
            .to_string();
        let boot = boot_id();
        let body = {
            let local = local.clone();
            let writer_id = writer_id.to_string();
            let boot = boot.clone();
            move |holder: &str| -> Result<(Bytes, i64)> {
                let expires = now_us() + i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
                let b = LeaseBody {
                    holder: holder.to_string(),
                    host: host_name(),
                    pid: std::process::id(),
                    expires_at_us: expires,
                    local_dir: local.clone(),
                    writer_id: writer_id.clone(),
                    boot_id: boot.clone(),
                };
                let bytes = serde_json::to_vec(&b)
                    .map_err(|e| StoreError::Internal(format!("lease serialization: {e}")))?;
                Ok((Bytes::from(bytes), expires))
            }
        };
        let mode = match get(&store, WRITER_LEASE)? {
            Err(object_store::Error::NotFound { .. }) => PutMode::Create,
            Err(e) => return Err(os_err(WRITER_LEASE, e)),
            Ok((bytes, e_tag)) => {
                let current: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
                // A copy of the directory (same WRITER_ID, same boot) at
                // another path is another live writer: not ours.
                let ours = |c: &LeaseBody| {
                    !boot.is_empty()
                        && c.boot_id == boot
                        && !writer_id.is_empty()
                        && c.writer_id == writer_id
                        && c.local_dir == local
                };
                if let Some(c) = current.filter(|c| c.expires_at_us > now_us() && !ours(c)) {
                    return Err(StoreError::RemoteLocked {
                        what: what.to_string(),
                        holder: format!("{} (pid {}, host {:?})", c.holder, c.pid, c.host),
                        expires_at_us: c.expires_at_us,
                    });
                }
                PutMode::Update(UpdateVersion {
                    e_tag,
                    version: None,
                })
            }
        };
        let (bytes, expires) = body(&holder)?;
        let put_result = match put(&store, WRITER_LEASE, bytes, mode)? {
            Ok(r) => r,
            // Another writer took it between our read and our write.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                return Err(StoreError::RemoteLocked {
                    what: what.to_string(),
                    holder: "another writer (it took the lease while this one was taking it)"
                        .into(),
                    expires_at_us: expires,
                })
            }
            Err(e) => return Err(os_err(WRITER_LEASE, e)),
        };
        let expires_at_us = Arc::new(AtomicI64::new(expires));
        let lost = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(LeaseState {
            e_tag: put_result.e_tag,
        }));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let renewer = {
            let store = Arc::clone(&store);
            let holder = holder.clone();
            let expires_at_us = Arc::clone(&expires_at_us);
            let lost = Arc::clone(&lost);
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("elide-lease".into())
                .spawn(move || loop {
                    match stopped.recv_timeout(ttl / 3) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let Ok((bytes, expires)) = body(&holder) else {
                        continue;
                    };
                    let e_tag = state.lock().ok().and_then(|s| s.e_tag.clone());
                    let mode = PutMode::Update(UpdateVersion {
                        e_tag,
                        version: None,
                    });
                    match put(&store, WRITER_LEASE, bytes, mode) {
                        Ok(Ok(r)) => {
                            if let Ok(mut s) = state.lock() {
                                s.e_tag = r.e_tag;
                            }
                            expires_at_us.store(expires, Ordering::SeqCst);
                        }
                        Ok(Err(object_store::Error::Precondition { .. })) => {
                            // Our own renewal may have landed with its
                            // answer lost (then the client's retry met
                            // our new ETag): read it back.
                            match get(&store, WRITER_LEASE) {
                                Ok(Ok((bytes, e_tag)))
                                    if serde_json::from_slice::<LeaseBody>(&bytes)
                                        .is_ok_and(|b| b.holder == holder) =>
                                {
                                    if let Ok(mut s) = state.lock() {
                                        s.e_tag = e_tag;
                                    }
                                    if let Ok(b) = serde_json::from_slice::<LeaseBody>(&bytes) {
                                        expires_at_us.store(b.expires_at_us, Ordering::SeqCst);
                                    }
                                }
                                Ok(Ok(_)) => {
                                    tracing::error!("the writer lease was taken by another writer; this store refuses commits");
                                    lost.store(true, Ordering::SeqCst);
                                    return;
                                }
                                _ => tracing::warn!("could not read the writer lease back; retrying"),
                            }
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the writer lease; retrying"),
                        Err(e) => tracing::warn!(error = %e, "could not renew the writer lease; retrying"),
                    }
                })
                .map_err(|e| StoreError::Unavailable(format!("cannot start the lease thread: {e}")))?
        };
        Ok(WriterLease {
            store,
            holder,
            ttl,
            expires_at_us,
            lost,
            state,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }

    /// `Ok` while the lease is certainly held for long enough to commit.
    /// `Ok(t)`: the lease is certainly held for `t` more (a request made
    /// now must be over by then: the lease's time left, less half the
    /// margin). An error once less than the margin is left.
    pub(crate) fn check(&self) -> Result<Duration> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the writer lease on the object store was taken by another writer; reopen the store".into(),
            ));
        }
        let margin = i64::try_from(LEASE_MARGIN.min(self.ttl / 3).as_micros()).unwrap_or(0);
        let left = self.expires_at_us.load(Ordering::SeqCst) - now_us();
        if left < margin {
            return Err(StoreError::Unavailable(format!(
                "the writer lease on the object store could not be renewed ({} ms left); refusing to commit",
                left / 1000
            )));
        }
        Ok(Duration::from_micros(
            u64::try_from(left - margin / 2).unwrap_or(0),
        ))
    }

    /// The holder token (for tests and status).
    pub fn holder(&self) -> &str {
        &self.holder
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        if self.lost.load(Ordering::SeqCst) {
            return;
        }
        // Release: rewrite it expired, on our ETag only.
        let e_tag = self.state.lock().ok().and_then(|s| s.e_tag.clone());
        let body = LeaseBody {
            holder: self.holder.clone(),
            host: host_name(),
            pid: std::process::id(),
            expires_at_us: 0,
            local_dir: String::new(),
            writer_id: String::new(),
            boot_id: String::new(),
        };
        let Ok(bytes) = serde_json::to_vec(&body) else {
            return;
        };
        let mode = PutMode::Update(UpdateVersion {
            e_tag,
            version: None,
        });
        match put(&self.store, WRITER_LEASE, Bytes::from(bytes), mode) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the writer lease; it expires by itself")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the writer lease; it expires by itself")
            }
        }
    }
}

/// One finding of [`doctor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: &'static str,
    /// `ok`, `note` (not checkable here: a reminder), `warn` (erasure may
    /// be weakened; act on it) or `fail` (Elide cannot run correctly, or
    /// erasure is not honoured).
    pub status: &'static str,
    /// What was found, and what to do.
    pub detail: String,
}

fn check(check: &'static str, status: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
    }
}

/// Check an object store's settings that erasure depends on, as far as
/// the S3 data API shows them (docs/object-storage.md, "Bucket settings
/// erasure needs"): put-if-absent and conditional replace are enforced;
/// versioning is off (a PUT answers no version id, or `null`); the writer
/// lease and the latest-manifest hint. Bucket lifecycle rules (non-current
/// version expiry, aborting incomplete multipart uploads) are not visible
/// through the data API: reported as a reminder, not checked.
pub fn doctor(store: &Arc<dyn ObjectStore>, what: &str) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    out.push(match probe_put_if_absent(store, what) {
        Ok(()) => check(
            "put-if-absent",
            "ok",
            "a second PUT with If-None-Match: * is refused",
        ),
        Err(e) => check("put-if-absent", "fail", e.to_string()),
    });
    // Versioning and conditional replace, on a scratch object.
    let path = format!("{PROBE_PREFIX}/doctor-{}", uuid::Uuid::new_v4().simple());
    let first = put(store, &path, Bytes::from_static(b"1"), PutMode::Create)?;
    match first {
        Ok(r) => {
            out.push(match r.version.as_deref() {
                None | Some("null") => check(
                    "versioning",
                    "ok",
                    "PUT answers no version id: versioning is off (or suspended), so a DELETE removes the bytes",
                ),
                Some(v) => check(
                    "versioning",
                    "warn",
                    format!(
                        "PUT answered version id {v:?}: the bucket keeps versions, and a purged part's bytes stay as a non-current version; turn versioning off, or add a lifecycle rule expiring non-current versions within the erasure deadline"
                    ),
                ),
            });
            let stale = UpdateVersion {
                e_tag: Some("\"not-the-current-etag\"".into()),
                version: None,
            };
            let wrong = put(
                store,
                &path,
                Bytes::from_static(b"2"),
                PutMode::Update(stale),
            )?;
            let right = put(
                store,
                &path,
                Bytes::from_static(b"3"),
                PutMode::Update(UpdateVersion {
                    e_tag: r.e_tag.clone(),
                    version: None,
                }),
            )?;
            out.push(match (wrong, right) {
                (Err(object_store::Error::Precondition { .. }), Ok(_)) => check(
                    "conditional replace",
                    "ok",
                    "If-Match on an ETag is enforced (the writer lease relies on it)",
                ),
                (w, r) => check(
                    "conditional replace",
                    "fail",
                    format!(
                        "If-Match is not enforced as S3 does (a stale ETag: {}; the current one: {}); the writer lease cannot keep writers apart",
                        w.map_or_else(|e| e.to_string(), |_| "accepted".into()),
                        r.map_or_else(|e| e.to_string(), |_| "accepted".into())
                    ),
                ),
            });
        }
        Err(e) => out.push(check(
            "versioning",
            "fail",
            format!("cannot write a probe object: {e}"),
        )),
    }
    let removed = {
        let store = Arc::clone(store);
        let p = Path::from(path.as_str());
        wait(async move { store.delete(&p).await })?
    };
    if let Err(e) = removed {
        out.push(check(
            "delete",
            "fail",
            format!("cannot delete a probe object ({e}): GC could not remove purged parts"),
        ));
    }
    out.push(match get(store, WRITER_LEASE)? {
        Err(object_store::Error::NotFound { .. }) => {
            check("writer lease", "ok", "no writer has held this store")
        }
        Err(e) => check("writer lease", "fail", e.to_string()),
        Ok((bytes, _)) => match serde_json::from_slice::<LeaseBody>(&bytes) {
            Ok(l) if l.expires_at_us > now_us() => check(
                "writer lease",
                "ok",
                format!(
                    "held by {} (pid {}, host {:?}, local dir {:?}) for {} s more",
                    l.holder,
                    l.pid,
                    l.host,
                    l.local_dir,
                    (l.expires_at_us - now_us()) / 1_000_000
                ),
            ),
            Ok(_) => check(
                "writer lease",
                "ok",
                "free (the last writer released it or its lease expired)",
            ),
            Err(e) => check(
                "writer lease",
                "warn",
                format!(
                    "{WRITER_LEASE} is not a lease Elide wrote ({e}); the next writer replaces it"
                ),
            ),
        },
    });
    out.push(match latest_manifest(store)? {
        Some((v, _)) => check("manifest", "ok", format!("latest version {v}")),
        None => check("manifest", "warn", "no manifest: not an Elide store (yet)"),
    });
    out.push(check(
        "lifecycle rules",
        "note",
        "not visible through the S3 data API: check that incomplete multipart uploads are aborted and, if versioning was ever on, non-current versions expire within the erasure deadline (aws s3api get-bucket-lifecycle-configuration)",
    ));
    Ok(out)
}
