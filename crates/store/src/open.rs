//! Opening a data directory: what is found on disk, and what is refused.
//!
//! ```text
//!  data dir ─► exists? a directory? ─► (writer) lock ─► latest manifest
//!      │ none: a store only where creating one is asked for,
//!      │       and never over parts, tombstones or logged rows
//!      ▼
//!  tombstone bitmaps (checksummed) ─► (writer) sweep unreferenced files
//!      ─► ingest log: (writer) cut torn tails, remove headerless segments;
//!         replay rows at or above flushed_seq, re-apply requests and drops
//! ```
//!
//! Rules, each a refusal rather than a guess (every one has a test):
//!
//! * A directory that is not a store is created only when the caller asks
//!   for it ([`crate::StoreOptions::create_if_missing`]); a command that
//!   only reads or deletes refuses it ([`StoreError::NoStore`]).
//! * No manifest but parts, tombstone files or logged rows: the manifest
//!   was lost (a partial restore, a careless cleanup). Creating an empty
//!   one would make the sweep delete everything; the open is refused
//!   ([`StoreError::MissingManifest`]) naming what was found.
//! * The sweep runs only against a manifest read from disk, removes only
//!   names Elide writes, and spares what reader leases pin.
//! * The ingest log is recovered by [`wal::recover`] (torn tails cut
//!   durably before anything is appended after them; damage refused).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use croaring::{Bitmap, Treemap};

use crate::error::{Result, StoreError};
use crate::format::{
    classify_object, decode_manifest, decode_tombstones, encode_manifest, manifest_path,
    parse_manifest_path, Manifest, ObjectName, PartMeta,
};
use crate::io::FileSystem;
use crate::memtable::{Chunk, Memtable};
use crate::storage::Storage;
use crate::wal::{self, WalRecord};

/// Check the data directory before anything else: it must be a directory,
/// and it is created (with its entry synced into its parent) only when
/// `create` is set.
pub(crate) fn prepare_dir(fs: &dyn FileSystem, dir: &Path, create: bool) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::InvalidInput(format!(
            "data directory {} exists but is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(StoreError::NoStore {
                    path: dir.to_path_buf(),
                    reason: "the directory does not exist".into(),
                });
            }
            fs.create_dir_all(dir)
                .map_err(|e| StoreError::io(dir.display(), e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::storage::sync_dir(fs, parent)?;
            }
            Ok(())
        }
        Err(e) => Err(StoreError::io(dir.display(), e)),
    }
}

/// Directory, under the data directory, of temporary copies of inputs
/// (a parquet stream is spooled there, since parquet needs random
/// access) and of the server's person exports (unnamed files; where the
/// file system cannot make one, a `.tmp*` file unlinked as soon as it is
/// made). Its `spool-*` and `.tmp*` files are removed at every writer's
/// open: they may hold rows of a person deleted since.
pub const SPOOL_DIR: &str = "tmp";

/// A new spool file path under `data_dir` (its directory created).
pub fn spool_file(data_dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let dir = data_dir.join(SPOOL_DIR);
    std::fs::create_dir_all(&dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(dir.join(format!("spool-{}-{nanos}.parquet", std::process::id())))
}

/// Remove spool files a crashed command left (writer only).
pub(crate) fn sweep_spool(fs: &dyn FileSystem, data_dir: &Path) {
    let dir = data_dir.join(SPOOL_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("spool-") || n.starts_with(".tmp"))
        {
            tracing::info!(path = %e.path().display(), "removing a spooled input left by a crashed command");
            if let Err(err) = fs.remove_file(&e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "could not remove a spooled input");
            }
        }
    }
}

/// Whether `dir` holds a store's manifest directory (checked before the
/// writer lock is taken, so that refusing a directory leaves nothing in it).
pub(crate) fn has_manifest_dir(dir: &Path) -> bool {
    dir.join("manifest").is_dir()
}

/// The latest manifest, if any: `(version, path)`.
pub(crate) fn latest_manifest(storage: &Storage) -> Result<Option<(u64, String)>> {
    if storage.is_remote() {
        return crate::remote::latest_manifest(&storage.inner());
    }
    Ok(storage
        .list("manifest")?
        .into_iter()
        .filter_map(|o| parse_manifest_path(&o.path).map(|v| (v, o.path)))
        .max())
}

/// Read and decode manifest `path`.
pub(crate) fn read_manifest(storage: &Storage, path: &str) -> Result<Manifest> {
    let bytes = storage.get(path)?;
    let m = decode_manifest(path, &bytes)?;
    if parse_manifest_path(path) != Some(m.version) {
        return Err(StoreError::corrupt(
            path,
            format!("holds version {}, not the one its name says", m.version),
        ));
    }
    Ok(m)
}

/// What a directory without a manifest holds that only a store writes.
fn store_leftovers(storage: &Storage, wal_dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for prefix in ["parts", "tombstones"] {
        let n = storage
            .list(prefix)?
            .iter()
            .filter(|o| {
                matches!(
                    classify_object(&o.path),
                    Some(ObjectName::Part | ObjectName::Runs | ObjectName::Tombstone)
                )
            })
            .count();
        if n > 0 {
            found.push(format!("{n} file(s) under {prefix}/"));
        }
    }
    if wal_dir.is_dir() {
        let mut records = 0usize;
        for id in wal::list_segments(wal_dir)? {
            let read = wal::read_segment(&wal::segment_path(wal_dir, id))?;
            records += read.records.len();
        }
        if records > 0 {
            found.push(format!("{records} logged batch(es) under wal/"));
        }
    }
    Ok(found)
}

/// The manifest a writer opens with, and whether it was read from disk
/// (only then may the sweep run against it).
pub(crate) fn writer_manifest(
    storage: &Storage,
    dir: &Path,
    wal_dir: &Path,
    create: bool,
) -> Result<(Manifest, bool)> {
    if let Some((_, path)) = latest_manifest(storage)? {
        return Ok((read_manifest(storage, &path)?, true));
    }
    let found = store_leftovers(storage, wal_dir)?;
    if !found.is_empty() {
        return Err(StoreError::MissingManifest {
            path: dir.to_path_buf(),
            found: found.join(", "),
        });
    }
    if !create {
        return Err(StoreError::NoStore {
            path: dir.to_path_buf(),
            reason: "it holds no manifest/ (not an Elide data directory)".into(),
        });
    }
    // A crash while creating the store may have left a staged manifest.
    let staged: Vec<String> = storage
        .list("manifest")?
        .into_iter()
        .filter(|o| classify_object(&o.path) == Some(ObjectName::Staged))
        .map(|o| o.path)
        .collect();
    for f in storage.delete_all(&staged) {
        tracing::warn!(path = %f.0, error = %f.1, "could not remove a staged manifest");
    }
    let m = Manifest::empty();
    storage.put_new(&manifest_path(0), encode_manifest(&m)?.into())?;
    tracing::info!(dir = %dir.display(), "created a new store");
    Ok((m, false))
}

/// Files the reader leases pin: the manifests of the leased versions and
/// what they reference. `None` when a lease pins everything (a reader
/// still choosing its version): the sweep then leaves every leftover to GC.
pub(crate) fn leased_paths(
    storage: &Storage,
    versions: &[u64],
) -> Result<Option<BTreeSet<String>>> {
    let mut out = BTreeSet::new();
    for &v in versions {
        if v == 0 {
            return Ok(None);
        }
        let path = manifest_path(v);
        match storage.get(&path) {
            Ok(bytes) => {
                let m = decode_manifest(&path, &bytes)?;
                out.extend(m.referenced_paths());
                out.insert(path);
            }
            // Gone already: that reader will fail on its next read.
            Err(_) => continue,
        }
    }
    Ok(Some(out))
}

/// The tombstone bitmaps a manifest references, checked against it.
pub(crate) fn load_tombstones(
    storage: &Storage,
    m: &Manifest,
) -> Result<HashMap<u64, Arc<Bitmap>>> {
    let mut files: BTreeMap<&str, Vec<&PartMeta>> = BTreeMap::new();
    for p in &m.parts {
        if let Some(t) = &p.tombstone {
            files.entry(t.path.as_str()).or_default().push(p);
        }
    }
    let mut out = HashMap::new();
    for (path, parts) in files {
        let bytes = storage.get(path)?;
        let mut decoded = decode_tombstones(path, &bytes)?;
        for p in parts {
            let mut b = decoded
                .remove(&p.id)
                .ok_or_else(|| StoreError::corrupt(path, format!("no bitmap for part {}", p.id)))?;
            if b.cardinality() != p.deleted() || b.maximum().is_some_and(|x| u64::from(x) >= p.rows)
            {
                return Err(StoreError::corrupt(
                    path,
                    format!("bitmap of part {} does not match the manifest", p.id),
                ));
            }
            // Files written before commits stored tombstones as runs
            // are kept in memory as runs too (what a scan reads).
            b.run_optimize();
            out.insert(p.id, Arc::new(b));
        }
    }
    Ok(out)
}

/// Rows of the ingest log that are not in parts, as one memtable, with the
/// rows the manifest's requests and drops hide.
pub(crate) struct Replayed {
    pub memtable: Memtable,
    pub hidden: Treemap,
    /// Segments whose rows are all flushed (removable).
    pub obsolete: Vec<u64>,
}

/// Replay `segments` (ascending) against `manifest`.
pub(crate) fn replay(
    manifest: &Manifest,
    segments: Vec<(u64, Vec<WalRecord>)>,
    wal_dir: &Path,
) -> Result<Replayed> {
    let mut mem = Memtable::new(1, manifest.flushed_seq, None);
    let mut obsolete = Vec::new();
    for (seg, records) in segments {
        let mut kept = false;
        for r in records {
            let end = r
                .seq_start
                .checked_add(r.batch.num_rows() as u64)
                .ok_or_else(|| {
                    StoreError::corrupt(
                        wal::segment_path(wal_dir, seg).display(),
                        format!("record at _seq {} overflows", r.seq_start),
                    )
                })?;
            if end <= manifest.flushed_seq {
                continue;
            }
            if r.seq_start < manifest.flushed_seq || r.seq_start < mem.seq_end {
                return Err(StoreError::corrupt(
                    wal::segment_path(wal_dir, seg).display(),
                    format!(
                        "record at _seq {} overlaps flushed or replayed rows",
                        r.seq_start
                    ),
                ));
            }
            mem.push(Arc::new(Chunk {
                table: r.table,
                seq_start: r.seq_start,
                batch: r.batch,
            }));
            kept = true;
        }
        if kept {
            mem.wal_segments.push(seg);
        } else {
            obsolete.push(seg);
        }
    }
    let mut hidden = Treemap::new();
    let mut hits = Vec::new();
    // Logical requests hide their rows when read, not here (undo.rs);
    // cancelled ones hide nothing.
    for req in manifest
        .requests
        .iter()
        .filter(|r| !r.logical && r.status != crate::format::RequestStatus::Cancelled)
    {
        for t in &req.tables {
            for d in &req.distinct_ids {
                mem.find(*t, req.project_id, d, req.seqs(), &mut hits);
            }
        }
        // A predicate request's rows (a purged one has none left here:
        // the log was flushed past its cut-off before it was purged).
        if let Some(pred) = req
            .predicate
            .as_ref()
            .filter(|_| req.status == crate::format::RequestStatus::Pending)
        {
            crate::by_predicate::match_memtable(
                &mem,
                req.project_id,
                &req.tables,
                pred,
                req.cutoff_seq,
                &mut hits,
            )?;
        }
    }
    for d in &manifest.dropped {
        mem.rows_of_project(d.project_id, d.cutoff_seq, &mut hits)?;
    }
    for h in hits {
        hidden.add(h);
    }
    Ok(Replayed {
        memtable: mem,
        hidden,
        obsolete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer's open removes what a crashed command or export left in
    /// `tmp/` (spooled inputs, a person export's named fallback), and
    /// nothing else.
    #[test]
    fn the_sweep_removes_spools_and_named_temporary_files_only() {
        let dir = tempfile::tempdir().expect("dir");
        let tmp = dir.path().join(SPOOL_DIR);
        std::fs::create_dir_all(&tmp).expect("tmp");
        for name in ["spool-1-2.parquet", ".tmpAbC123", "other.txt"] {
            std::fs::write(tmp.join(name), b"a person's rows").expect("write");
        }
        sweep_spool(&crate::io::StdFs, dir.path());
        let mut left: Vec<String> = std::fs::read_dir(&tmp)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["other.txt"]);
    }
}
