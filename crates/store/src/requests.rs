//! The store's API over deletion requests as records: the deletion feed
//! (every request of every kind, in the order of their changes, with a
//! cursor) and the per-project settings that shape new requests (the
//! erasure deadline) and retention sweeps (`retention.rs`). The requests' states and transitions are
//! `lifecycle.rs`'s; this module only reads them and writes settings.

use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::{DeletionRequest, ProjectSettings};
use crate::store::{check_project, Store};

/// One page of the deletion feed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeletionFeed {
    /// Requests whose last change is after the cursor asked for, in the
    /// order of those changes (then by id).
    pub requests: Vec<DeletionRequest>,
    /// Pass this as `since` to get only what changes after this page.
    pub cursor: u64,
}

/// Where a request is in its lifecycle ([`Store::request_states`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestState {
    /// Its state.
    pub status: crate::format::RequestStatus,
    /// When it was verified, if it was.
    pub verified_at_us: Option<i64>,
    /// When its rows must be gone from disk.
    pub purge_due_by_us: i64,
}

impl Store {
    /// Every request (of one project, or all) whose state changed after
    /// cursor `since` (`0` = from the beginning), in the order of the
    /// changes: what a downstream copy must apply. A request appears once,
    /// in its current state; requests dropped with their project leave
    /// the feed. The cursor is a manifest version, so it only grows: the
    /// store's, or for one project the version of its last change.
    pub fn deletion_feed(&self, project: Option<i64>, since: u64) -> Result<DeletionFeed> {
        self.deletion_feed_page(project, since, usize::MAX)
    }

    /// [`Store::deletion_feed`], a page at a time: about `limit`
    /// requests, cut only between two versions (a version's changes come
    /// whole, so a page may hold more than `limit`), with the cursor where
    /// it ends. The requests of manifests older than the feed (version 0)
    /// come first, and a page is never cut among them or right after them
    /// (no cursor would follow them): a first page that reaches them holds
    /// the whole feed.
    pub fn deletion_feed_page(
        &self,
        project: Option<i64>,
        since: u64,
        limit: usize,
    ) -> Result<DeletionFeed> {
        let v = self.inner().current_version()?;
        let mut changed: Vec<&DeletionRequest> = v
            .manifest
            .requests
            .iter()
            .filter(|r| project.is_none_or(|p| p == r.project_id))
            .filter(|r| r.changed_in_version > since || (since == 0 && r.changed_in_version == 0))
            .collect();
        changed.sort_by_key(|r| (r.changed_in_version, r.id));
        // One project's feed ends at its own last change, not at the
        // store's version: that would tell the project how often the
        // others write. (At least 1 once the store has a version: the
        // requests of version 0 are in the feed only from 0.)
        let last_change = match project {
            None => v.manifest.version,
            Some(p) => v
                .manifest
                .requests
                .iter()
                .filter(|r| r.project_id == p)
                .map(|r| r.changed_in_version)
                .max()
                .unwrap_or(0)
                .max(v.manifest.version.min(1)),
        };
        let mut cursor = last_change.max(since);
        if let Some(last) = changed.get(limit.max(1) - 1).map(|r| r.changed_in_version) {
            let end = changed.partition_point(|r| r.changed_in_version <= last);
            if end < changed.len() && last > 0 {
                changed.truncate(end);
                cursor = last;
            }
        }
        Ok(DeletionFeed {
            requests: changed.into_iter().cloned().collect(),
            cursor,
        })
    }

    /// The state of each request of `project`, by id: what a status page
    /// needs, without a copy of every request (their ids, predicates
    /// and receipts' file lists), of every project, per call.
    pub fn request_states(
        &self,
        project: i64,
    ) -> Result<std::collections::HashMap<u64, RequestState>> {
        Ok(self
            .inner()
            .current_version()?
            .manifest
            .requests
            .iter()
            .filter(|r| r.project_id == project)
            .map(|r| {
                (
                    r.id,
                    RequestState {
                        status: r.status,
                        verified_at_us: r.verified_at_us,
                        purge_due_by_us: r.purge_due_by_us,
                    },
                )
            })
            .collect())
    }

    /// One deletion request by id, if it exists.
    pub fn request(&self, id: u64) -> Result<Option<DeletionRequest>> {
        Ok(self
            .inner()
            .current_version()?
            .manifest
            .requests
            .iter()
            .find(|r| r.id == id)
            .cloned())
    }

    /// A project's settings (the defaults if it has none of its own).
    pub fn project_settings(&self, project: i64) -> Result<ProjectSettings> {
        Ok(self
            .inner()
            .current_version()?
            .manifest
            .projects
            .get(&project)
            .cloned()
            .unwrap_or_default())
    }

    /// Replace a project's settings (one commit). They apply to requests
    /// created from then on: a request keeps the `purge_due_by` it was
    /// given.
    pub fn set_project_settings(&self, project: i64, settings: ProjectSettings) -> Result<()> {
        self.update_project_settings(project, |s| -> Result<()> {
            *s = settings;
            Ok(())
        })
        .map(drop)
    }

    /// Change a project's settings in place (one commit): `change` gets
    /// the current settings, read under the commit lock, so changes of
    /// different fields made at once all land. An error from `change` or
    /// from the settings' check commits nothing. Returns the settings as
    /// committed.
    pub fn update_project_settings<E: From<StoreError>>(
        &self,
        project: i64,
        change: impl FnOnce(&mut ProjectSettings) -> std::result::Result<(), E>,
    ) -> std::result::Result<ProjectSettings, E> {
        self.inner().writable()?;
        check_project(project)?;
        let mut tx = Transaction::begin(self.inner())?;
        let mut settings = tx
            .manifest()
            .projects
            .get(&project)
            .cloned()
            .unwrap_or_default();
        change(&mut settings)?;
        settings.check()?;
        tx.set_project_settings(project, settings.clone());
        tx.commit()?;
        tracing::info!(project, ?settings, "project settings changed");
        Ok(settings)
    }
}

impl Store {
    /// The receipt of request `id` (its file's bytes: JSON with `body` and
    /// `signature`), once the request is verified; `None` before.
    pub fn receipt(&self, id: u64) -> Result<Option<Vec<u8>>> {
        let v = self.inner().current_version()?;
        let request = v.manifest.requests.iter().find(|r| r.id == id);
        // A request not yet verified has no receipt: no look through every
        // receipt file for it (one read each, on every call).
        if request.is_some_and(|r| r.status != crate::format::RequestStatus::Verified) {
            return Ok(None);
        }
        let seq = request.and_then(|r| r.receipt_seq);
        crate::receipt::find(
            &self.inner().storage,
            v.manifest.receipts_head.as_ref(),
            id,
            seq,
        )
    }

    /// Check every receipt's signature and the chain (see `receipt.rs`)
    /// against `public_keys`, or the keys the data directory lists. The
    /// error names the first bad receipt.
    pub fn verify_receipts(
        &self,
        public_keys: Option<Vec<ed25519_dalek::VerifyingKey>>,
    ) -> Result<crate::receipt::ChainReport> {
        let v = self.inner().current_version()?;
        crate::receipt::verify_chain(
            &self.inner().storage,
            v.manifest.receipts_head.as_ref(),
            public_keys,
        )
    }
}
