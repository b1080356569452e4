//! Where a store lives: a local data directory, or a URL of an object store
//! (`s3://bucket/prefix`) plus a local directory for what must stay local.
//!
//! | on the object store (under the prefix) | in the local directory |
//! |---|---|
//! | `manifest/`, `parts/`, `tombstones/`, `receipts/`, `_elide/` (hint, writer lease) | `wal/` (the ingest log), `LOCK`, `readers/`, the persons metadata (SQLite), `tmp/` spools, `OBJECT_STORE` |
//!
//! Why the ingest log stays local: an append must be durable before the
//! call returns, in well under a millisecond; a PUT per append would cost
//! tens of milliseconds and a request each. Its rows reach the object store
//! as parts at each flush, and deletions hide logged rows the same way on
//! either backend (replay re-applies them), so the erasure invariants do
//! not depend on where the log is. The price: unflushed rows live on the
//! writer's machine until the flush (the store's `memtable_*` options bound
//! them), as with a local store.
//!
//! The SQLite metadata (the persons layer) stays local too; the persons
//! layer's `MetaStore` trait is where a shared database (PostgreSQL) would
//! plug in for a deployment of several machines.
//!
//! A local directory is bound to its URL at first use (`OBJECT_STORE`
//! holds the URL): opening it with another URL is refused, since its log
//! would be replayed into the wrong store.
//!
//! S3 is configured from the environment as object_store's
//! `AmazonS3Builder::from_env` reads it (`AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, ...). Conditional writes (`If-None-Match`, `If-Match`)
//! are required and probed at open (`remote/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use crate::error::{Result, StoreError};

/// File in the local directory naming the object store it belongs to.
pub const BINDING_FILE: &str = "OBJECT_STORE";

/// A resolved store location.
#[derive(Debug, Clone)]
pub struct Location {
    /// The directory to open ([`crate::Store::open`]'s path): the data
    /// directory itself, or the local directory of an object store.
    pub local_dir: PathBuf,
    /// The object store, when the data directory is a URL.
    pub object_store: Option<Arc<dyn ObjectStore>>,
    /// The URL as given (for messages), when there is one.
    pub url: Option<String>,
}

/// Whether `data_dir` names an object store rather than a local path.
pub fn is_url(data_dir: &str) -> bool {
    data_dir.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

/// The default local directory of `url`: a directory named after it under
/// the user's data directory (`$XDG_DATA_HOME/elide/stores/`, else
/// `~/.local/share/elide/stores/`).
pub fn default_local_dir(url: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| {
            StoreError::InvalidInput(format!(
                "no local directory for {url}: pass --local-dir (neither XDG_DATA_HOME nor HOME is set)"
            ))
        })?;
    let url = normalize(url);
    let name: String = url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Two URLs that map to one name (`s3://a/b_c`, `s3://a/b/c`) get
    // different directories all the same.
    let hash = blake3::hash(url.as_bytes()).to_hex();
    Ok(base
        .join("elide")
        .join("stores")
        .join(format!("{name}-{}", &hash[..8])))
}

/// A URL as stores are bound to it: without trailing slashes.
fn normalize(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// The object store a URL names (`s3://bucket[/prefix]`), configured from
/// the environment.
pub fn object_store_from_url(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let parsed = url::Url::parse(url)
        .map_err(|e| StoreError::InvalidInput(format!("data directory URL {url:?}: {e}")))?;
    match parsed.scheme() {
        "s3" | "s3a" => {}
        other => {
            return Err(StoreError::InvalidInput(format!(
                "data directory URL {url:?}: the scheme {other:?} is not supported (use s3://bucket/prefix, or a local path)"
            )))
        }
    }
    let bucket = parsed.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "data directory URL {url:?} names no bucket (s3://bucket/prefix)"
        )));
    }
    let s3 = configure(AmazonS3Builder::from_env().with_bucket_name(bucket))?
        .build()
        .map_err(|e| StoreError::ObjectStore {
            path: url.to_string(),
            source: e,
        })?;
    let prefix = parsed.path().trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    })
}

/// What Elide sets on every S3 client: HTTP I/O on the object-store
/// runtime (whichever runtime awaits a request), and retries bounded to
/// 15 s, well inside the writer lease's margin (a commit that cannot
/// reach the store gives up rather than outlive its lease).
pub fn configure(b: AmazonS3Builder) -> Result<AmazonS3Builder> {
    let retry = object_store::RetryConfig {
        retry_timeout: std::time::Duration::from_secs(15),
        max_retries: 5,
        ..Default::default()
    };
    Ok(
        b.with_http_connector(object_store::client::SpawnedReqwestConnector::new(
            crate::remote::runtime_handle()?,
        ))
        .with_retry(retry),
    )
}

/// Resolve `data_dir` (a path or a URL) and the optional `--local-dir`.
pub fn resolve(data_dir: &Path, local_dir: Option<&Path>) -> Result<Location> {
    let Some(url) = data_dir.to_str().filter(|s| is_url(s)) else {
        if let Some(l) = local_dir {
            return Err(StoreError::InvalidInput(format!(
                "--local-dir {} is only for a data directory on an object store (s3://...); {} is local",
                l.display(),
                data_dir.display()
            )));
        }
        return Ok(Location {
            local_dir: data_dir.to_path_buf(),
            object_store: None,
            url: None,
        });
    };
    let url = normalize(url);
    let store = object_store_from_url(url)?;
    let local_dir = match local_dir {
        Some(l) => l.to_path_buf(),
        None => default_local_dir(url)?,
    };
    Ok(Location {
        local_dir,
        object_store: Some(store),
        url: Some(url.to_string()),
    })
}

impl Location {
    /// Set `opts.object_store` for this location and, for an object store,
    /// bind the local directory to the URL ([`bind_local_dir`]). Returns
    /// the directory to pass to [`crate::Store::open`].
    pub fn apply(&self, opts: &mut crate::StoreOptions) -> Result<&Path> {
        if let (Some(url), Some(os)) = (&self.url, &self.object_store) {
            bind_local_dir(&self.local_dir, url)?;
            opts.object_store = Some(Arc::clone(os));
        }
        Ok(&self.local_dir)
    }
}

/// Check (and on first use record) that `local_dir` belongs to `url`, and
/// that it is not a local store's data directory. Call before opening.
pub fn bind_local_dir(local_dir: &Path, url: &str) -> Result<()> {
    if local_dir.join(crate::format::MANIFEST_DIR).is_dir() {
        return Err(StoreError::InvalidInput(format!(
            "{} holds a local store (manifest/); an object store's local directory must be its own",
            local_dir.display()
        )));
    }
    let file = local_dir.join(BINDING_FILE);
    match std::fs::read_to_string(&file) {
        Ok(found) if found.trim() == url => Ok(()),
        Ok(found) => Err(StoreError::InvalidInput(format!(
            "local directory {} belongs to {}, not {url}: its ingest log would be replayed into the wrong store; use another --local-dir",
            local_dir.display(),
            found.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(local_dir).map_err(|e| StoreError::io(local_dir.display(), e))?;
            let tmp = local_dir.join(format!("{BINDING_FILE}.new"));
            std::fs::write(&tmp, format!("{url}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &file))
                .map_err(|e| StoreError::io(file.display(), e))
        }
        Err(e) => Err(StoreError::io(file.display(), e)),
    }
}

/// File in the local directory holding its writer id.
pub const WRITER_ID_FILE: &str = "WRITER_ID";

/// The writer id of local directory `dir` (created on first use): which
/// local directory's writer committed a version (`Manifest::writer_id`),
/// and whose dead process's lease may be taken over (`remote/lease.rs`).
pub(crate) fn writer_id(dir: &Path) -> Result<String> {
    let file = dir.join(WRITER_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => Err(StoreError::corrupt(file.display(), "empty writer id")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let tmp = dir.join(format!("{WRITER_ID_FILE}.new"));
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &file))
                .and_then(|()| std::fs::File::open(dir)?.sync_all())
                .map_err(|e| StoreError::io(file.display(), e))?;
            Ok(id)
        }
        Err(e) => Err(StoreError::io(file.display(), e)),
    }
}
