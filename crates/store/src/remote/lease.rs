//! The writer lease on an object store: one writer per store across
//! machines (see the parent module's docs, "One writer per store").

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::{ObjectStore, PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{get, os_err, put, LEASE_MARGIN, WRITER_LEASE};
use crate::error::{Result, StoreError};

/// The writer lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LeaseBody {
    pub(super) holder: String,
    pub(super) host: String,
    pub(super) pid: u32,
    pub(super) expires_at_us: i64,
    /// The writer's local directory (canonical path).
    #[serde(default)]
    pub(super) local_dir: String,
    /// The local directory's writer id (`WRITER_ID`) and the kernel's boot
    /// id: a lease with both (and `local_dir`) equal to the opener's was
    /// left by a process of this boot on this directory, which is dead
    /// since the opener holds the directory's `LOCK` (a cloned machine has
    /// another boot id, a copied directory another path).
    #[serde(default)]
    pub(super) writer_id: String,
    #[serde(default)]
    pub(super) boot_id: String,
}

/// This boot of this machine (Linux), or empty where unknown: then no
/// lease is ever taken over before it expires.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn now_us() -> i64 {
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

    /// Why this lease is lost for good (another writer took it), if it is.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.load(Ordering::SeqCst).then(|| {
            "the writer lease on the object store was taken by another writer; reopen the store"
                .to_string()
        })
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
