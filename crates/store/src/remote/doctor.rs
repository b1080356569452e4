//! `elide doctor`'s checks of an object store: what erasure needs of the
//! bucket, as far as the S3 data API shows it.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, UpdateVersion};
use serde::Serialize;

use super::lease::{now_us, LeaseBody};
use super::{get, latest_manifest, probe_put_if_absent, put, wait, PROBE_PREFIX, WRITER_LEASE};
use crate::error::Result;

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
