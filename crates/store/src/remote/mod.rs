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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Result, StoreError};
use crate::format::{decode_manifest, parse_manifest_path, MANIFEST_DIR};

mod doctor;
mod lease;

pub use doctor::{doctor, Check};
pub use lease::WriterLease;

/// Where the hint of the latest manifest version lives.
pub const LATEST_HINT: &str = "_elide/latest-manifest";
/// The writer lease object.
pub const WRITER_LEASE: &str = "_elide/writer.lease";
/// Prefix of the put-if-absent probes.
pub(crate) const PROBE_PREFIX: &str = "_elide/probe";

/// How long a writer lease lasts without renewal.
pub const WRITER_LEASE_TTL: Duration = Duration::from_secs(30);
/// A commit is refused when less than this is left of the lease: the
/// commit itself must finish before another writer may take over.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(10);

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
/// runtime's worker: the future runs on this module's own threads. The
/// wait is outside tokio's cooperative budget (`unconstrained`): a
/// `JoinHandle` polled by a task whose budget is spent answers "pending"
/// and wakes itself at once, forever, since the blocked task never
/// yields to refill it (a store call made from async code on an object
/// store spun a core that way).
pub(crate) fn wait<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
    let handle = runtime()?.spawn(fut);
    futures::executor::block_on(tokio::task::unconstrained(handle))
        .map_err(|e| StoreError::Internal(format!("object-store task failed: {e}")))
}

pub(crate) fn os_err(path: &str, source: object_store::Error) -> StoreError {
    StoreError::ObjectStore {
        path: path.to_string(),
        source,
    }
}

pub(crate) fn put(
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

pub(crate) fn get(
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
                // Not our token: another writer's commit. Not a manifest
                // it can read: the outcome is unknown (the caller then
                // keeps every file it wrote, and the handle refuses
                // commits until it is reopened).
                let m = decode_manifest(path, &found)?;
                return Ok(if m.commit_token == token {
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
