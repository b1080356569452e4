//! Writing the `.runs` files that parts written before them lack.
//!
//! A deletion reads `.runs` files instead of waiting for the in-memory
//! index only when every part of its project has one
//! ([`crate::index::runs_from_files`]). Parts written before 2026-12-01
//! have none; purges and merges give their outputs one, and this step,
//! run by each compaction (the background worker's and `compact`), gives
//! one to the others: it reads a part's `distinct_id` and `_seq` columns
//! (as the index build does), writes and syncs the file, and records it
//! in the part's manifest entry. Parts that left the manifest meanwhile
//! (a project dropped, a retention sweep) are skipped and their new file
//! removed.
//!
//! Invariants: a `.runs` file is referenced only after it is durable; a
//! file at the path of a part whose entry has none is an orphan (no
//! version references it: entries gain a file, never lose one while the
//! part lives), so on a local disk (one writer) it is replaced. On an
//! object store it is left alone and its part skipped (it may be the
//! next writer's, if this one's lease lapsed): GC removes it once it has
//! been unreferenced for the retention window (found at the next open),
//! and a later backfill writes the part's file then.

use crate::commit::Transaction;
use crate::error::Result;
use crate::runs_file::{runs_path, RunsRef};
use crate::store::Inner;

/// Most parts given a file per call (one commit).
const BATCH: usize = 256;

/// Give `.runs` files to up to [`BATCH`] parts that lack one, while
/// `over_budget` says no; returns how many were recorded.
pub(crate) fn backfill(inner: &Inner, over_budget: &dyn Fn() -> bool) -> Result<usize> {
    let version = inner.current_version()?;
    let remote = inner.storage.is_remote();
    let mut missing = Vec::new();
    for p in version.manifest.parts.iter().filter(|p| p.runs.is_none()) {
        if missing.len() >= BATCH {
            break;
        }
        // A path already taken on an object store is skipped (see the
        // module docs), before its columns are read: such parts must not
        // fill every batch.
        if remote && inner.storage.exists(&runs_path(&p.path))? {
            continue;
        }
        missing.push(p);
    }
    if missing.is_empty() {
        return Ok(0);
    }
    // The parts stay on disk while they are read.
    let _pin = inner.gc.register(version.manifest.version);
    let mut written: Vec<(u64, String, RunsRef)> = Vec::new();
    let discard = |written: &[(u64, String, RunsRef)]| {
        for (_, path, _) in written {
            inner.gc.discard(&inner.storage, path);
        }
    };
    for p in missing {
        if over_budget() {
            break;
        }
        if let Some(lease) = &inner.writer_lease {
            // A writer whose object-store lease lapsed must not remove a
            // `.runs` file the writer after it may have recorded.
            if let Err(e) = lease.check() {
                discard(&written);
                return Err(e);
            }
        }
        let path = runs_path(&p.path);
        if inner.gc.holds(&path) {
            // A leftover of an earlier attempt that GC is to remove: a
            // file written there now could go with it. The next run
            // writes it.
            tracing::debug!(path = %path, "a .runs leftover waits for GC; left for the next run");
            continue;
        }
        let made = crate::part::postings_from_columns(&inner.storage, p).and_then(|postings| {
            if !remote && inner.storage.exists(&path)? {
                // A crashed backfill's leftover: this writer is the only one.
                inner.storage.delete(&path)?;
            }
            match crate::runs_file::write(&inner.storage, &p.path, &postings.runs) {
                Ok(r) => Ok(Some(r)),
                // Taken since the batch was chosen (an object store):
                // left alone.
                Err(e) if remote && e.is_already_exists() => Ok(None),
                Err(e) => {
                    // A put that answered with an error may have landed:
                    // its file goes (never one that was there already).
                    if !e.is_already_exists() {
                        inner.gc.discard(&inner.storage, &path);
                    }
                    Err(e)
                }
            }
        });
        match made {
            Ok(Some(r)) => written.push((p.id, path, r)),
            Ok(None) => {
                tracing::debug!(path = %path, "a .runs file is already there; left for the sweep");
            }
            Err(e) => {
                // The part itself may be damaged: scrub reports it; the
                // deletions of its project keep using the index.
                tracing::warn!(path = %p.path, error = %e, "could not write the part's .runs file");
            }
        }
    }
    if written.is_empty() {
        return Ok(0);
    }
    let paths: Vec<&str> = written.iter().map(|(_, p, _)| p.as_str()).collect();
    if let Err(e) = inner.storage.sync_files(&paths) {
        discard(&written);
        return Err(e);
    }
    let mut tx = match Transaction::begin(inner) {
        Ok(tx) => tx,
        Err(e) => {
            discard(&written);
            return Err(e);
        }
    };
    let mut recorded = 0;
    let mut gone = Vec::new();
    for (id, path, r) in &written {
        if tx.set_part_runs(*id, *r) {
            recorded += 1;
        } else {
            gone.push(path.clone());
        }
    }
    if recorded == 0 {
        drop(tx);
        discard(&written);
        return Ok(0);
    }
    if let Err(e) = tx.commit() {
        // The manifest may name them (then the next open sweeps whichever
        // it does not), or certainly does not (then they go now).
        let paths: Vec<String> = written.iter().map(|(_, p, _)| p.clone()).collect();
        return Err(inner.gc.after_failed_commit(&inner.storage, e, &paths));
    }
    for path in gone {
        inner.gc.discard(&inner.storage, &path);
    }
    tracing::info!(
        parts = recorded,
        "wrote .runs files for parts written before them"
    );
    Ok(recorded)
}
