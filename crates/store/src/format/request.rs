//! Deletion requests as the manifest records them: kind, state, scope,
//! deadline, and the parts that still hold their rows; per-project
//! settings. Pure types (the transitions are `lifecycle.rs`'s); a request
//! decoded from a manifest written before per-request part tracking gets
//! its parts here ([`resolve_legacy_requests`], called by the decoder).

use serde::{Deserialize, Serialize};

use super::Manifest;
use crate::schema::Table;

/// Lifecycle state of a deletion request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Tombstones written: rows are invisible, bytes still on disk.
    Pending,
    /// Parts rewritten without the rows and old files removed.
    Purged,
    /// A scan found no row of the request left.
    Verified,
    /// Cancelled inside its undo window: its rows are visible again.
    /// Terminal; the request hid nothing on disk (it was logical).
    Cancelled,
}

impl RequestStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Purged => "purged",
            RequestStatus::Verified => "verified",
            RequestStatus::Cancelled => "cancelled",
        }
    }
}

/// What a deletion request covers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Every row of some distinct ids (requests written before kinds
    /// existed are of this kind).
    #[default]
    DistinctIds,
    /// Every row of a person's distinct ids (the persons layer's
    /// deletions).
    Person,
    /// The rows an [`EventPredicate`](crate::predicate::EventPredicate)
    /// matches.
    Events,
    /// A retention sweep: the project's rows older than its
    /// `retention_days` (a predicate with a `before` bound).
    Retention,
}

impl RequestKind {
    /// Name as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::DistinctIds => "distinct_ids",
            RequestKind::Person => "person",
            RequestKind::Events => "events",
            RequestKind::Retention => "retention",
        }
    }
}

/// Settings of one project that the store applies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectSettings {
    /// Days from a deletion request to its `purge_due_by`; `None` = the
    /// store's default (`CompactionOptions::max_pending_age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure_deadline_days: Option<u32>,
    /// Rows are kept this many whole UTC days (then a retention sweep
    /// deletes them); `None` = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Events of these names are kept this many whole UTC days (events
    /// table only; a shorter or longer limit than `retention_days` for
    /// one event, e.g. `$autocapture` 30 days in a project kept a year).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub event_retention_days: std::collections::BTreeMap<String, u32>,
}

impl ProjectSettings {
    /// The longest retention a setting may give: 100 years.
    pub const MAX_RETENTION_DAYS: u32 = 36_500;
    /// The longest erasure deadline: 10 years.
    pub const MAX_ERASURE_DEADLINE_DAYS: u32 = 3_650;
    /// At most this many event names have a retention of their own.
    pub const MAX_EVENT_RETENTIONS: usize = 1_000;
    /// The longest event name with a retention of its own, in bytes.
    pub const MAX_EVENT_NAME_BYTES: usize = 400;

    /// Whether every setting is the default.
    pub fn is_default(&self) -> bool {
        *self == ProjectSettings::default()
    }

    /// Refuse settings outside their bounds (days from 1 to the maximums
    /// above; event names not empty). The manifest holds them and every
    /// sweep and deadline reads them, so nothing unbounded is stored.
    pub fn check(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::StoreError::InvalidInput(m));
        let max = Self::MAX_ERASURE_DEADLINE_DAYS;
        if self
            .erasure_deadline_days
            .is_some_and(|d| !(1..=max).contains(&d))
        {
            return bad(format!("the erasure deadline must be from 1 to {max} days"));
        }
        let max = Self::MAX_RETENTION_DAYS;
        if self.retention_days.is_some_and(|d| !(1..=max).contains(&d)) {
            return bad(format!(
                "retention must be from 1 to {max} days (no setting keeps rows forever)"
            ));
        }
        if self.event_retention_days.len() > Self::MAX_EVENT_RETENTIONS {
            return bad(format!(
                "at most {} event names may have a retention of their own",
                Self::MAX_EVENT_RETENTIONS
            ));
        }
        if let Some((e, _)) = self.event_retention_days.iter().find(|(e, d)| {
            e.is_empty() || e.len() > Self::MAX_EVENT_NAME_BYTES || !(1..=max).contains(*d)
        }) {
            return bad(format!(
                "event retention of {e:?}: the name must be 1 to {} bytes and the retention from 1 to {max} days",
                Self::MAX_EVENT_NAME_BYTES
            ));
        }
        Ok(())
    }
}

/// A durable record of a deletion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeletionRequest {
    /// Request id.
    pub id: u64,
    /// What the request covers.
    #[serde(default)]
    pub kind: RequestKind,
    /// Project the distinct ids belong to.
    pub project_id: i64,
    /// The distinct ids whose rows are deleted (kinds `distinct_ids` and
    /// `person`; empty for `events`, whose predicate names its own).
    pub distinct_ids: Vec<String>,
    /// The rows deleted, for kind `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<crate::predicate::EventPredicate>,
    /// Tables the request applies to.
    pub tables: Vec<Table>,
    /// Rows with `_seq < cutoff_seq` are deleted.
    pub cutoff_seq: u64,
    /// ... and `_seq >= floor_seq` (kinds `distinct_ids` and `person`):
    /// a distinct id's rows from before it became the deleted person's
    /// (another person's, which a reset or a split detached it from) are
    /// not this request's. `0` (left out) in requests without a floor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub floor_seq: u64,
    /// Its ids stay in use after it: past the cut-off their rows are
    /// another holder's or no one's (the persons layer's runs of a
    /// detached id), or still the kept person's (`keep_person`)
    /// ([`crate::DeleteSpec::keeps_ids`]). A metadata rebuild does not
    /// block its ids. `false` (left out)
    /// otherwise, and in requests written before it was recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keeps_ids: bool,
    /// When the request was recorded (µs since the epoch, UTC).
    pub created_at_us: i64,
    /// Rows this request hid that no earlier request had hidden.
    pub rows_hidden: u64,
    /// `rows_hidden` per table (absent in requests written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rows_hidden_by_table: std::collections::BTreeMap<Table, u64>,
    /// Rows of the persons metadata removed with this deletion, as the
    /// persons layer reported them (its receipt states it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub metadata_rows_removed: u64,
    /// Lifecycle state.
    pub status: RequestStatus,
    /// The manifest version that recorded the request's last change of
    /// state (its creation included): the deletion feed's cursor. `0` in
    /// manifests written before the feed existed.
    #[serde(default)]
    pub changed_in_version: u64,
    /// When the rows must be gone from disk (µs since the epoch, UTC):
    /// creation plus the project's erasure deadline. `0` in manifests
    /// written before deadlines were recorded; set at open from the
    /// store's default.
    #[serde(default)]
    pub purge_due_by_us: i64,
    /// Live parts that still hold rows of this request (hidden by it or by
    /// an earlier request). A part leaves the list when a commit removes
    /// it from the manifest (purge, merge, fully deleted, project drop);
    /// its path then waits in `awaiting_removal`. Always written;
    /// manifests written before the field existed get it at decode
    /// ([`decode_manifest`]), so no reader meets a request without it.
    #[serde(default = "legacy_parts")]
    pub parts: Vec<u64>,
    /// Paths of files that held rows of this request, left the manifest,
    /// and may still be on disk (GC waits for older snapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting_removal: Vec<String>,
    /// When the request became `purged` (µs since the epoch, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at_us: Option<i64>,
    /// When the verification scan found nothing (µs since the epoch, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at_us: Option<i64>,
    /// After verification: keyed hashes (hex) of the distinct ids, which
    /// are then removed from `distinct_ids`. Answers "was X deleted?"
    /// without keeping X.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_hashes: Vec<String>,
    /// Hidden by its predicate when read, not by tombstone bits: the
    /// request's rows are still live in the parts (and the ingest log),
    /// and every read leaves out what the predicate matches below the
    /// cut-off (`undo.rs`). A request is logical while its undo window is
    /// open, or while a slow predicate is being resolved in the
    /// background (the bridge); resolving it writes its bits and clears
    /// this. A logical request lists no parts and is never purged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logical: bool,
    /// End of the undo window (µs since the epoch, UTC): until then the
    /// request may be cancelled. `None`: no undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_until_us: Option<i64>,
    /// When the request was cancelled (µs since the epoch, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at_us: Option<i64>,
    /// The files that held rows of this request and left the manifest
    /// (rewritten, merged or dropped), with their BLAKE3 and what
    /// replaced them: the receipt's list, moved there at verification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased_files: Vec<crate::receipt::ErasedFile>,
    /// The number of its receipt, once verified (receipt.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_seq: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a request read from a manifest written before per-request part
/// tracking holds in `parts` until [`decode_manifest`] resolves it: no
/// part id ever reaches `u64::MAX`, and nothing outside the decoder sees
/// this value.
const LEGACY_PARTS: u64 = u64::MAX;

fn legacy_parts() -> Vec<u64> {
    vec![LEGACY_PARTS]
}

/// Requests written before per-request part tracking existed: a pending
/// one lists every live part of its scope that carries tombstones
/// (conservative: it becomes purged only when all of them are
/// rewritten); any other holds none.
pub(super) fn resolve_legacy_requests(m: &mut Manifest) {
    let parts = &m.parts;
    for r in m.requests.iter_mut().filter(|r| r.parts == [LEGACY_PARTS]) {
        r.parts = if r.status == RequestStatus::Pending {
            parts
                .iter()
                .filter(|p| {
                    p.project_id == r.project_id
                        && r.tables.contains(&p.table)
                        && p.min_seq < r.cutoff_seq
                        && p.tombstone.is_some()
                })
                .map(|p| p.id)
                .collect()
        } else {
            Vec::new()
        };
    }
}

impl DeletionRequest {
    /// When the rows must be gone: `purge_due_by_us`, or creation plus
    /// `default` for a request that never recorded one (the store fills
    /// these in at open; this serves manifests read without opening).
    pub fn due_by_us(&self, default: std::time::Duration) -> i64 {
        if self.purge_due_by_us > 0 {
            self.purge_due_by_us
        } else {
            self.created_at_us
                .saturating_add(default.as_micros() as i64)
        }
    }

    /// Whether the request covers rows of `table`.
    pub fn covers_table(&self, table: Table) -> bool {
        self.tables.contains(&table)
    }

    /// The `_seq`s of the rows of its distinct ids that it covers:
    /// from its floor to below its cut-off.
    pub fn seqs(&self) -> std::ops::Range<u64> {
        self.floor_seq..self.cutoff_seq
    }
}

impl DeletionRequest {
    /// A pending request of `kind` over `tables` of `project`, covering
    /// rows below `cutoff_seq`, made at `created_at_us` and due by
    /// `purge_due_by_us`; the caller fills in its scope and counts. The
    /// commit path gives it its id ([`crate::commit`]'s `add_request`).
    pub(crate) fn new(
        kind: RequestKind,
        project_id: i64,
        tables: Vec<Table>,
        cutoff_seq: u64,
        created_at_us: i64,
        purge_due_by_us: i64,
    ) -> DeletionRequest {
        DeletionRequest {
            id: 0,
            kind,
            project_id,
            distinct_ids: Vec::new(),
            predicate: None,
            tables,
            cutoff_seq,
            floor_seq: 0,
            keeps_ids: false,
            created_at_us,
            rows_hidden: 0,
            rows_hidden_by_table: Default::default(),
            metadata_rows_removed: 0,
            status: RequestStatus::Pending,
            changed_in_version: 0,
            purge_due_by_us,
            parts: Vec::new(),
            awaiting_removal: Vec::new(),
            purged_at_us: None,
            verified_at_us: None,
            id_hashes: Vec::new(),
            logical: false,
            undo_until_us: None,
            cancelled_at_us: None,
            erased_files: Vec::new(),
            receipt_seq: None,
        }
    }
}

#[cfg(test)]
impl DeletionRequest {
    /// A pending request `id` for distinct id `ada` of project 1 in the
    /// events table, cut-off 50 (unit tests override what they need).
    pub(crate) fn for_test(id: u64) -> DeletionRequest {
        DeletionRequest {
            id,
            distinct_ids: vec!["ada".into()],
            rows_hidden: 1,
            ..DeletionRequest::new(RequestKind::DistinctIds, 1, vec![Table::Events], 50, 0, 0)
        }
    }
}
