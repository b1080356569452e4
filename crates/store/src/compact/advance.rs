//! After a run: GC, then the deletion requests' lifecycle, `pending` ->
//! `purged` -> `verified` ([`advance_requests`]), with the verification
//! scan ([`verify`]).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use arrow::array::Array;

use crate::commit::Transaction;
use crate::error::{Result, StoreError};
use crate::format::{CompactionSummary, PartMeta, RequestStatus};
use crate::lifecycle;
use crate::part::{read_columns, str_col, u64_col};
use crate::schema::{DISTINCT_ID_COLUMN, SEQ_COLUMN};
use crate::store::{now_us, Inner, Version};
use crate::Table;

/// GC, then `pending` -> `purged` -> `verified` where the conditions hold.
/// Returns (purged, verified, verification failures).
/// With `summary` (a compaction run's, and when it started), the run is
/// recorded as the manifest's `last_compaction`, its wall time included.
pub(super) fn advance_requests(
    inner: &Inner,
    summary: Option<(&mut CompactionSummary, Instant)>,
) -> Result<(Vec<u64>, Vec<u64>, Vec<String>)> {
    if let Err(e) = inner.gc.collect(&inner.storage) {
        tracing::warn!(error = %e, "gc failed before the lifecycle step");
    }
    let version = inner.current_version()?;
    // After reading the version: every ingest-log segment of a memtable
    // that version's flushes wrote into parts is gone (the flush removes
    // its own only after releasing the commit lock, and a failure there
    // is only logged), so no request below its `flushed_seq` is purged
    // while a segment still holds its rows.
    inner.sweep_wal()?;
    let m = &version.manifest;
    // Which pending requests are purged (file existence checked outside
    // the commit lock; the conditions are re-checked inside).
    let mut purged = Vec::new();
    let orphans = inner.gc.orphans_possible();
    if orphans {
        tracing::warn!("a file no version references may be on disk (it may hold rows): requests become purged once GC has removed it, or after the next open");
    }
    for r in m.requests.iter().filter(|_| !orphans) {
        // A bulk ingest in flight with `_seq`s below the cut-off may still
        // bring rows of the request (bulk.rs).
        if lifecycle::purge_complete(r, m.flushed_seq, inner.oldest_reservation()) {
            // Part files of the request's project and tables that left
            // the manifest before it listed its parts but are still on
            // disk may hold its rows, and no live part leads to them (a
            // part a retention sweep or an events deletion dropped whole,
            // or one an earlier purge or merge replaced, pinned by a
            // snapshot; for a request that was logical, one merged away
            // inside its undo window). A pending request's
            // `changed_in_version` is the version of its creation or of
            // its resolution, the one that gave it its parts.
            let prefixes: Vec<String> = r
                .tables
                .iter()
                .map(|t| format!("parts/{}/{}/", t.name(), r.project_id))
                .collect();
            if inner
                .gc
                .retired_before(r.created_at_us, r.changed_in_version, |p| {
                    prefixes.iter().any(|x| p.starts_with(x.as_str()))
                })
            {
                continue;
            }
            let mut all_gone = true;
            for path in &r.awaiting_removal {
                if inner.storage.exists(path)? {
                    all_gone = false;
                    break;
                }
            }
            if all_gone {
                purged.push(r.id);
            }
        }
    }
    let now = now_us();
    // Verification of everything purged (earlier runs' included).
    let (vversion, pin) = inner.pinned_version()?;
    let to_verify: Vec<&crate::format::DeletionRequest> = vversion
        .manifest
        .requests
        .iter()
        .filter(|r| {
            lifecycle::awaits_verification(r)
                || (purged.contains(&r.id) && r.status == RequestStatus::Pending)
        })
        .collect();
    let (mut clean, failures) = verify(inner, &vversion, &to_verify)?;
    // A request is verified only with its receipt: without the signing
    // key, verification waits (purges still advance).
    let receipt_key = if clean.is_empty() {
        None
    } else {
        match crate::receipt::signing_key(
            &inner.storage,
            inner.opts.receipt_key.as_deref(),
            &inner.dir,
            vversion.manifest.receipts_head.is_some(),
        ) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign receipts: verification of purged requests waits");
                clean.clear();
                None
            }
        }
    };
    // Unpin before the commit, so that its GC can remove the manifest it
    // replaces (the last one holding the ids in clear).
    drop(to_verify);
    drop(pin);
    let mut verified = Vec::new();
    let mut tx = Transaction::begin(inner)?;
    let mut really_purged = Vec::new();
    for id in tx
        .manifest()
        .requests
        .iter()
        .map(|r| r.id)
        .collect::<Vec<_>>()
    {
        // Re-checked under the commit lock.
        if purged.contains(&id) && tx.mark_purged(id, now, inner.oldest_reservation())? {
            really_purged.push(id);
        }
        if clean.contains(&id) && tx.mark_verified(id, now_us())? {
            verified.push(id);
        }
    }
    if let Some(key) = receipt_key.as_ref().filter(|_| !verified.is_empty()) {
        // Their receipts, chained after the last one, written before the
        // commit that publishes the new head (receipt.rs).
        let bodies: Vec<crate::receipt::ReceiptBody> = verified
            .iter()
            .filter_map(|id| tx.manifest().requests.iter().find(|r| r.id == *id))
            .map(crate::receipt::body_of)
            .collect();
        // Receipts past the head are a failed commit's of this writer's,
        // unless another writer took over and published them: on an
        // object store, its lease still held and no newer manifest.
        let fence = || -> Result<()> {
            if let Some(lease) = &inner.writer_lease {
                lease.check()?;
            }
            if inner.storage.is_remote() {
                let ours = inner.current_version()?.manifest.version;
                if let Some((v, _)) = crate::remote::latest_manifest(&inner.storage.inner())? {
                    if v != ours {
                        return Err(StoreError::Unavailable(format!(
                            "manifest version {v} was published by another writer (this one is at {ours}); reopen the store"
                        )));
                    }
                }
            }
            Ok(())
        };
        let (head, assigned) = crate::receipt::write_chain(
            &inner.storage,
            key,
            tx.manifest().receipts_head.as_ref(),
            bodies,
            &fence,
        )?;
        crate::failpoint!("receipt::after_write");
        tx.record_receipts(head, &assigned);
    }
    let mut changed = !really_purged.is_empty() || !verified.is_empty();
    if let Some((s, started)) = summary {
        s.requests_purged = really_purged.len() as u64;
        s.requests_verified = verified.len() as u64;
        s.finished_at_us = now_us();
        s.elapsed_ms = started.elapsed().as_millis() as u64;
        if changed || s.parts_purged + s.parts_merged > 0 {
            tx.set_last_compaction(s.clone());
            changed = true;
        }
    }
    if changed {
        crate::failpoint!("lifecycle::before_commit");
        tx.commit()?;
    }
    if !verified.is_empty() {
        tracing::info!(?verified, "deletion requests verified");
    }
    Ok((really_purged, verified, failures))
}

/// Distinct id -> (request id, `_seq`s covered) of the requests that name it.
type Wanted<'a> = HashMap<&'a str, Vec<(u64, std::ops::Range<u64>)>>;

/// Scan the live parts that could hold rows of `requests` (same project
/// and table, `min_seq` below the cut-off) and return the ids of the
/// requests none of whose rows were found, plus a description of every
/// request with rows left.
fn verify(
    inner: &Inner,
    version: &Version,
    requests: &[&crate::format::DeletionRequest],
) -> Result<(HashSet<u64>, Vec<String>)> {
    if requests.is_empty() {
        return Ok((HashSet::new(), Vec::new()));
    }
    // (table, project) -> distinct id -> [(request id, `_seq`s covered)]
    let mut want: HashMap<(Table, i64), Wanted<'_>> = HashMap::new();
    for r in requests {
        for t in &r.tables {
            let ids = want.entry((*t, r.project_id)).or_default();
            for d in &r.distinct_ids {
                ids.entry(d.as_str()).or_default().push((r.id, r.seqs()));
            }
        }
    }
    let max_cutoff: HashMap<(Table, i64), u64> = requests
        .iter()
        .flat_map(|r| {
            r.tables
                .iter()
                .map(move |t| ((*t, r.project_id), r.cutoff_seq))
        })
        .fold(HashMap::new(), |mut m, (k, c)| {
            let e = m.entry(k).or_insert(0);
            *e = (*e).max(c);
            m
        });
    let candidates: Vec<&PartMeta> = version
        .manifest
        .parts
        .iter()
        .filter(|p| {
            max_cutoff
                .get(&(p.table, p.project_id))
                .is_some_and(|c| p.min_seq < *c)
        })
        .collect();
    let mut found: HashMap<u64, (u64, String)> = HashMap::new();
    for r in requests.iter().filter(|r| r.predicate.is_some()) {
        if let Some(left) =
            crate::by_predicate::rows_left(&inner.storage, &version.manifest.parts, r)?
        {
            found.insert(r.id, left);
        }
    }
    for p in candidates {
        let Some(ids) = want.get(&(p.table, p.project_id)) else {
            continue;
        };
        let b = read_columns(&inner.storage, p, &[DISTINCT_ID_COLUMN, SEQ_COLUMN])?;
        let dids = str_col(&b, DISTINCT_ID_COLUMN, &p.path)?;
        let seqs = u64_col(&b, SEQ_COLUMN, &p.path)?;
        for i in 0..b.num_rows() {
            if dids.is_null(i) {
                continue;
            }
            if let Some(reqs) = ids.get(dids.value(i)) {
                for (rid, covered) in reqs {
                    if covered.contains(&seqs.value(i)) {
                        let e = found.entry(*rid).or_insert((0, p.path.clone()));
                        e.0 += 1;
                    }
                }
            }
        }
    }
    let mut clean = HashSet::new();
    let mut failures = Vec::new();
    for r in requests {
        match found.get(&r.id) {
            None => {
                clean.insert(r.id);
            }
            Some((n, path)) => {
                tracing::error!(request = r.id, rows = n, path = %path, "verification found rows of a purged deletion request");
                failures.push(format!(
                    "request {}: {n} row(s) still on disk (e.g. in {path})",
                    r.id
                ));
            }
        }
    }
    Ok((clean, failures))
}
