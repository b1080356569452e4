//! The lifecycle of a deletion request: its states and every transition,
//! with their preconditions, in one place. Callers (the compaction's
//! lifecycle step, the background worker) ask this module whether a
//! request may advance and advance it through it; nothing else writes a
//! request's `status`.
//!
//! ```text
//!   pending, logical ──(resolved)──► pending ──(purge complete)──► purged ──(verified clean)──► verified
//!   (hidden by its predicate        (rows hidden by bits;           (bytes gone)                (a scan found nothing;
//!    when read; undo window          bytes on disk)                                              ids kept only as keyed hashes)
//!    open or resolution pending)
//!          │
//!          └──(cancel, inside the undo window)──► cancelled (rows visible again)
//! ```
//!
//! | from | event | to | precondition |
//! |---|---|---|---|
//! | pending, logical | [`Event::Resolved`] | pending (bits) | its undo window, if any, has ended; the caller wrote its bits in the same commit |
//! | pending, logical | [`Event::Cancel`] | cancelled | it has an undo window and the window has not ended |
//! | pending (bits) | [`Event::PurgeComplete`] | purged | no live part holds rows of the request, the ingest log is flushed past its cut-off, no bulk ingest holds `_seq`s below it (and, checked by the caller, no file that held its rows is still on disk) |
//! | purged | [`Event::VerifiedClean`] | verified | the verification scan found no row of the request |
//! | anything else | | refused | an [`StoreError::Internal`] for a transition that does not exist (a caller's bug); a cancel that is not allowed is the user's [`StoreError::InvalidInput`] ([`cancel`]) |
//!
//! A request is created `pending` by a deletion (`store/delete.rs`,
//! `by_predicate.rs`), logical when it has an undo window or its
//! predicate was too slow to resolve in the call (`undo.rs`); the
//! manifest it lives in is published only through the one commit path.

use crate::error::{Result, StoreError};
use crate::format::{distinct_id_hash, DeletionRequest, RequestStatus};

/// When a request of `project` created at `created_us` must be purged:
/// creation plus the project's erasure deadline (its setting in the
/// manifest, else `default`).
pub(crate) fn due_by(
    manifest: &crate::format::Manifest,
    project: i64,
    created_us: i64,
    default: std::time::Duration,
) -> i64 {
    let deadline_us = manifest
        .projects
        .get(&project)
        .and_then(|s| s.erasure_deadline_days)
        .map_or(default.as_micros() as i64, |d| {
            i64::from(d).saturating_mul(crate::MICROS_PER_DAY)
        });
    created_us.saturating_add(deadline_us)
}

/// Requests of manifests written before deadlines were recorded
/// (`purge_due_by_us == 0`) are due `default` after their creation.
pub(crate) fn fill_legacy_deadlines(m: &mut crate::format::Manifest, default: std::time::Duration) {
    for r in m.requests.iter_mut().filter(|r| r.purge_due_by_us == 0) {
        r.purge_due_by_us = r.created_at_us.saturating_add(default.as_micros() as i64);
    }
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Every byte of its rows left the live parts and the ingest log.
    PurgeComplete,
    /// The verification scan found none of its rows.
    VerifiedClean,
    /// A logical request's bits were written (its undo window ended, or
    /// its predicate was resolved in the background).
    Resolved,
    /// Cancelled inside its undo window.
    Cancel,
}

/// The state after `event` in `state`, or `None` if there is no such
/// transition. `logical` is whether a pending request is still hidden by
/// its predicate only.
pub(crate) fn next(state: RequestStatus, logical: bool, event: Event) -> Option<RequestStatus> {
    match (state, logical, event) {
        (RequestStatus::Pending, true, Event::Resolved) => Some(RequestStatus::Pending),
        (RequestStatus::Pending, true, Event::Cancel) => Some(RequestStatus::Cancelled),
        (RequestStatus::Pending, false, Event::PurgeComplete) => Some(RequestStatus::Purged),
        (RequestStatus::Purged, false, Event::VerifiedClean) => Some(RequestStatus::Verified),
        _ => None,
    }
}

/// Whether a pending request's purge is complete as far as the manifest
/// and the store's state tell: no live part holds its rows, the ingest log
/// is flushed past its cut-off (`flushed_seq`), and no bulk ingest in
/// flight reserved `_seq`s below it (`oldest_reservation`, bulk.rs). The
/// caller also checks that the files awaiting removal are gone.
pub(crate) fn purge_complete(
    r: &DeletionRequest,
    flushed_seq: u64,
    oldest_reservation: Option<u64>,
) -> bool {
    r.status == RequestStatus::Pending
        && !r.logical
        && r.parts.is_empty()
        && flushed_seq >= r.cutoff_seq
        && oldest_reservation.is_none_or(|o| o >= r.cutoff_seq)
}

/// Whether a compaction run can advance `r` without rewriting a part: a
/// purged request awaits its verification, or a pending one holds no part
/// any more (it waits for GC and the log).
pub(crate) fn may_advance_without_rewrite(r: &DeletionRequest) -> bool {
    r.status == RequestStatus::Purged
        || (r.status == RequestStatus::Pending && !r.logical && r.parts.is_empty())
}

/// Whether logical request `r` may be resolved to bits at `now_us`: its
/// undo window, if any, has ended.
pub(crate) fn resolvable(r: &DeletionRequest, now_us: i64) -> bool {
    r.status == RequestStatus::Pending && r.logical && r.undo_until_us.is_none_or(|u| u <= now_us)
}

/// pending, logical → pending with bits at `now_us`: `rows_hidden` rows
/// newly hidden (per table), held in `parts`. Refused inside the undo
/// window. The counts recorded when the request was made (what the
/// caller was told) stay unless these are larger (a bridged request's
/// were partial).
pub(crate) fn mark_resolved(
    r: &mut DeletionRequest,
    now_us: i64,
    rows_hidden: std::collections::BTreeMap<crate::schema::Table, u64>,
    parts: Vec<u64>,
) -> Result<()> {
    if r.logical && !resolvable(r, now_us) {
        return Err(StoreError::Internal(format!(
            "request {} resolved inside its undo window",
            r.id
        )));
    }
    advance(r, Event::Resolved)?;
    r.logical = false;
    let total: u64 = rows_hidden.values().sum();
    if total >= r.rows_hidden {
        r.rows_hidden = total;
        r.rows_hidden_by_table = rows_hidden;
    }
    r.parts = parts;
    Ok(())
}

/// pending, logical → cancelled at `now_us`, or why not (the user's
/// error: no undo window, the window ended, not logical any more).
pub(crate) fn cancel(r: &mut DeletionRequest, now_us: i64) -> Result<()> {
    let refuse = |why: String| {
        Err(StoreError::InvalidInput(format!(
            "request {} cannot be cancelled: {why}",
            r.id
        )))
    };
    if r.status == RequestStatus::Cancelled {
        return refuse("it is already cancelled".into());
    }
    let Some(until) = r.undo_until_us else {
        return refuse("it was made without an undo window".into());
    };
    if now_us >= until || !r.logical || r.status != RequestStatus::Pending {
        return refuse(format!(
            "its undo window ended at {}",
            crate::format::us_to_rfc3339(until)
        ));
    }
    advance(r, Event::Cancel)?;
    r.logical = false;
    r.cancelled_at_us = Some(now_us);
    Ok(())
}

/// Whether `r` is waiting for a verification scan.
pub(crate) fn awaits_verification(r: &DeletionRequest) -> bool {
    r.status == RequestStatus::Purged
}

fn advance(r: &mut DeletionRequest, event: Event) -> Result<()> {
    r.status = next(r.status, r.logical, event).ok_or_else(|| {
        StoreError::Internal(format!(
            "request {} cannot take {event:?} in state {}",
            r.id,
            r.status.as_str()
        ))
    })?;
    Ok(())
}

/// pending → purged, at `now_us`: its files are gone.
pub(crate) fn mark_purged(r: &mut DeletionRequest, now_us: i64) -> Result<()> {
    advance(r, Event::PurgeComplete)?;
    r.purged_at_us = Some(now_us);
    r.awaiting_removal.clear();
    Ok(())
}

/// purged → verified, at `now_us`: the distinct ids are replaced by their
/// keyed hashes (`hash_key`, the manifest's), so the manifest answers
/// "was X deleted?" without keeping X.
pub(crate) fn mark_verified(r: &mut DeletionRequest, hash_key: &str, now_us: i64) -> Result<()> {
    if !awaits_verification(r) {
        return advance(r, Event::VerifiedClean);
    }
    let hash = |s: &str| {
        distinct_id_hash(hash_key, r.project_id, s)
            .ok_or_else(|| StoreError::corrupt("manifest", "invalid hash key"))
    };
    let mut hashes = Vec::with_capacity(r.distinct_ids.len());
    for d in &r.distinct_ids {
        hashes.push(hash(d)?);
    }
    // A predicate keeps its shape (event names, window, property keys and
    // operators); its distinct ids join the hashes and its property
    // values become keyed hashes too, as they may be personal.
    let mut predicate = r.predicate.clone();
    if let Some(p) = predicate.as_mut() {
        for d in std::mem::take(&mut p.distinct_ids) {
            hashes.push(hash(&d)?);
        }
        for f in &mut p.properties {
            if !f.value.is_null() {
                let h = hash(&format!("{}={}", f.key, f.value))?;
                f.value = serde_json::Value::String(format!("keyed-hash:{h}"));
            }
        }
    }
    advance(r, Event::VerifiedClean)?;
    r.id_hashes = hashes;
    r.distinct_ids = Vec::new();
    r.predicate = predicate;
    r.verified_at_us = Some(now_us);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn request(status: RequestStatus, parts: Vec<u64>) -> DeletionRequest {
        DeletionRequest {
            cutoff_seq: 100,
            created_at_us: 1,
            rows_hidden: 3,
            status,
            parts,
            awaiting_removal: vec!["parts/x.parquet".into()],
            ..DeletionRequest::for_test(7)
        }
    }

    #[test]
    fn the_transition_table() {
        use Event::*;
        use RequestStatus::*;
        let table = [
            (Pending, true, Resolved, Some(Pending)),
            (Pending, true, Cancel, Some(Cancelled)),
            (Pending, true, PurgeComplete, None),
            (Pending, true, VerifiedClean, None),
            (Pending, false, PurgeComplete, Some(Purged)),
            (Pending, false, VerifiedClean, None),
            (Pending, false, Resolved, None),
            (Pending, false, Cancel, None),
            (Purged, false, PurgeComplete, None),
            (Purged, false, VerifiedClean, Some(Verified)),
            (Purged, false, Cancel, None),
            (Purged, false, Resolved, None),
            (Verified, false, PurgeComplete, None),
            (Verified, false, VerifiedClean, None),
            (Verified, false, Cancel, None),
            (Cancelled, false, Cancel, None),
            (Cancelled, false, Resolved, None),
            (Cancelled, false, PurgeComplete, None),
            (Cancelled, false, VerifiedClean, None),
        ];
        for (state, logical, event, want) in table {
            assert_eq!(
                next(state, logical, event),
                want,
                "{state:?} (logical {logical}) + {event:?}"
            );
        }
    }

    #[test]
    fn purge_complete_needs_no_part_a_flushed_log_and_no_bulk_ingest_below_the_cut_off() {
        let r = request(RequestStatus::Pending, vec![]);
        assert!(purge_complete(&r, 100, None));
        assert!(purge_complete(&r, 100, Some(100)));
        assert!(!purge_complete(&r, 99, None), "rows still in the log");
        assert!(!purge_complete(&r, 100, Some(99)), "a bulk ingest below");
        assert!(!purge_complete(
            &request(RequestStatus::Pending, vec![4]),
            100,
            None
        ));
        assert!(!purge_complete(
            &request(RequestStatus::Purged, vec![]),
            100,
            None
        ));
    }

    #[test]
    fn marking_follows_the_table_and_hashes_the_ids_at_verification() {
        let mut r = request(RequestStatus::Pending, vec![]);
        assert!(may_advance_without_rewrite(&r));
        assert!(mark_verified(&mut r, KEY, 5).is_err(), "not purged yet");
        assert_eq!(r.status, RequestStatus::Pending);
        mark_purged(&mut r, 10).unwrap();
        assert_eq!(
            (r.status, r.purged_at_us),
            (RequestStatus::Purged, Some(10))
        );
        assert!(r.awaiting_removal.is_empty());
        assert!(mark_purged(&mut r, 11).is_err());
        assert!(awaits_verification(&r) && may_advance_without_rewrite(&r));
        mark_verified(&mut r, KEY, 20).unwrap();
        assert_eq!(r.status, RequestStatus::Verified);
        assert!(r.distinct_ids.is_empty());
        assert_eq!(r.id_hashes, vec![distinct_id_hash(KEY, 1, "ada").unwrap()]);
        assert_eq!(r.verified_at_us, Some(20));
        assert!(!may_advance_without_rewrite(&r));
        assert!(mark_verified(&mut r, KEY, 21).is_err());
    }

    fn rows(n: u64) -> std::collections::BTreeMap<crate::schema::Table, u64> {
        [(crate::schema::Table::Events, n)].into()
    }

    fn logical(undo_until_us: Option<i64>) -> DeletionRequest {
        DeletionRequest {
            logical: true,
            undo_until_us,
            ..request(RequestStatus::Pending, vec![])
        }
    }

    #[test]
    fn a_logical_request_is_never_purged_and_resolves_only_after_its_window() {
        let r = logical(Some(100));
        assert!(!purge_complete(&r, 1000, None), "holds no bits yet");
        assert!(!may_advance_without_rewrite(&r));
        assert!(!resolvable(&r, 99));
        assert!(resolvable(&r, 100));
        assert!(resolvable(&logical(None), 0), "the bridge: no window");
        let mut r = logical(Some(100));
        assert!(
            mark_resolved(&mut r, 99, rows(5), vec![3]).is_err(),
            "window open"
        );
        mark_resolved(&mut r, 100, rows(5), vec![3]).unwrap();
        assert_eq!(
            (r.status, r.logical, r.rows_hidden),
            (RequestStatus::Pending, false, 5)
        );
        assert_eq!(r.parts, vec![3]);
        assert!(
            mark_resolved(&mut r, 100, rows(5), vec![3]).is_err(),
            "resolved twice"
        );
    }

    #[test]
    fn cancel_only_inside_the_window_of_a_logical_request() {
        let mut r = logical(Some(100));
        cancel(&mut r, 99).unwrap();
        assert_eq!(r.status, RequestStatus::Cancelled);
        assert_eq!(r.cancelled_at_us, Some(99));
        assert!(!r.logical);
        let again = cancel(&mut r, 99).unwrap_err().to_string();
        assert!(again.contains("already cancelled"), "{again}");
        let late = cancel(&mut logical(Some(100)), 100)
            .unwrap_err()
            .to_string();
        assert!(late.contains("undo window ended"), "{late}");
        let none = cancel(&mut logical(None), 0).unwrap_err().to_string();
        assert!(none.contains("without an undo window"), "{none}");
        let mut resolved = logical(Some(100));
        mark_resolved(&mut resolved, 100, rows(1), vec![]).unwrap();
        assert!(cancel(&mut resolved, 50).is_err(), "bits written: too late");
        assert!(matches!(
            cancel(&mut logical(Some(100)), 200),
            Err(StoreError::InvalidInput(_))
        ));
    }
}
