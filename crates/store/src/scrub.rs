//! [`Store::scrub`]: read every file of the store and report what is
//! damaged, without changing anything.
//!
//! | file | check |
//! |---|---|
//! | manifests (all on disk) | frame, CRC-32, JSON, version matches the name |
//! | tombstone files (all on disk) | frame, CRC-32, every bitmap decodes |
//! | parts of the manifest | size; footer CRC-32; every 64 KiB block's CRC-32; every row decodes; row groups and row count match the manifest (parts written before checksums: decode only, reported as unchecked) |
//! | their `.runs` files | head and block CRC-32s; the same runs as the part's `distinct_id` and `_seq` columns |
//! | ingest-log segments | header; every record's CRC-32 and contents; a torn tail is reported (it is cut at the next writer's open), damage before valid records is an error |
//!
//! The persons metadata (SQLite) is checked by the persons layer; the
//! command line reports both.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::format::{classify_object, decode_manifest, decode_tombstones, Manifest, ObjectName};
use crate::lease::Lease;
use crate::schema::{DISTINCT_ID_COLUMN, SEQ_COLUMN};
use crate::storage::Storage;
use crate::store::Store;
use crate::wal::{self, SegmentEnd};

/// One damaged (or unverifiable) file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScrubFinding {
    /// Path relative to the data directory.
    pub path: String,
    /// `damaged`, `unchecked` (no checksum to verify against) or `note`.
    pub severity: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// What [`Store::scrub`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    /// Files read.
    pub files_checked: u64,
    /// Bytes read.
    pub bytes_checked: u64,
    /// Parts verified block by block.
    pub parts_checked: u64,
    /// Findings, damaged first.
    pub findings: Vec<ScrubFinding>,
}

impl ScrubReport {
    /// Whether any file is damaged.
    pub fn damaged(&self) -> bool {
        self.findings.iter().any(|f| f.severity == "damaged")
    }

    fn damage(&mut self, path: &str, e: impl std::fmt::Display) {
        self.findings.push(ScrubFinding {
            path: path.to_string(),
            severity: "damaged",
            problem: e.to_string(),
        });
    }
}

/// Progress of a scrub: files done, files in all.
pub type ScrubProgress<'a> = &'a mut dyn FnMut(u64, u64);

fn gone(e: &StoreError) -> bool {
    e.is_not_found()
}

impl Store {
    /// Read every file of the store and check it (see the module docs).
    /// Files a concurrent writer removes while the scrub runs are skipped.
    pub fn scrub(&self, progress: ScrubProgress<'_>) -> Result<ScrubReport> {
        let wal_dir = self.dir().join("wal");
        scrub_with(self.storage(), Some(&wal_dir), progress)
    }
}

/// Scrub the data directory `dir` without opening it as a store: no log
/// replay, no tombstone load, so a store too damaged to open is still
/// reported on, file by file. A reader lease pins what is being read.
pub fn scrub_dir(dir: &Path, progress: ScrubProgress<'_>) -> Result<ScrubReport> {
    crate::open::prepare_dir(&crate::io::StdFs, dir, false)?;
    if !crate::open::has_manifest_dir(dir) {
        return Err(StoreError::NoStore {
            path: dir.to_path_buf(),
            reason: "it holds no manifest/ (not an Elide data directory)".into(),
        });
    }
    let storage = Storage::local(dir, Arc::new(crate::io::StdFs))?;
    let mut lease = match Lease::acquire(dir) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "cannot take a reader lease; files a writer removes meanwhile are skipped");
            None
        }
    };
    if let (Some(l), Some((v, _))) = (lease.as_mut(), crate::open::latest_manifest(&storage)?) {
        l.set_version(v)?;
    }
    let wal_dir = dir.join("wal");
    scrub_with(&storage, Some(&wal_dir), progress)
}

/// A part's `.runs` file: every checksum, and the same runs as `actual`
/// (collected from the part's columns while its rows were decoded).
fn check_runs(
    storage: &Storage,
    p: &crate::format::PartMeta,
    actual: crate::part::PartPostings,
) -> Result<()> {
    let key = |r: &crate::part::Run| (r.start, r.len, r.min_seq, r.max_seq, r.distinct_id.clone());
    let mut stored: Vec<_> = crate::runs_file::read_all(storage, p)?
        .runs
        .iter()
        .map(key)
        .collect();
    let mut actual: Vec<_> = actual.runs.iter().map(key).collect();
    stored.sort();
    actual.sort();
    if stored != actual {
        return Err(StoreError::corrupt(
            crate::runs_file::runs_path(&p.path),
            "its runs differ from the part's distinct_id and _seq columns",
        ));
    }
    Ok(())
}

fn scrub_with(
    storage: &Storage,
    wal_dir: Option<&Path>,
    progress: ScrubProgress<'_>,
) -> Result<ScrubReport> {
    let mut report = ScrubReport::default();
    let manifests = storage.list("manifest")?;
    let tombstones = storage.list("tombstones")?;
    let segments = match wal_dir.filter(|d| d.is_dir()) {
        Some(d) => wal::list_segments(d)?,
        None => Vec::new(),
    };
    // Parts of the newest manifest that decodes (older ones may remain
    // until GC; a damaged newest one is reported, and the next is used).
    let mut decoded: Vec<Manifest> = Vec::new();
    let mut done = 0u64;
    let total_files =
        |parts: usize| (manifests.len() + tombstones.len() + segments.len() + parts) as u64;
    let mut step = |report: &mut ScrubReport, bytes: u64, total: u64| {
        done += 1;
        report.files_checked += 1;
        report.bytes_checked += bytes;
        progress(done, total);
    };
    for m in &manifests {
        if classify_object(&m.path) == Some(ObjectName::Manifest) {
            match storage.get(&m.path) {
                Ok(bytes) => match decode_manifest(&m.path, &bytes) {
                    Ok(man) => decoded.push(man),
                    Err(e) => report.damage(&m.path, e),
                },
                Err(e) if gone(&e) => {}
                Err(e) => report.damage(&m.path, e),
            }
        }
        step(&mut report, m.size, total_files(0));
    }
    let parts = decoded
        .iter()
        .max_by_key(|m| m.version)
        .map(|m| m.parts.clone())
        .unwrap_or_default();
    if decoded.is_empty() {
        report.damage("manifest/", "no manifest could be read");
    }
    let total = total_files(parts.len() + parts.iter().filter(|p| p.runs.is_some()).count());
    for t in &tombstones {
        if classify_object(&t.path) == Some(ObjectName::Tombstone) {
            match storage.get(&t.path) {
                Ok(bytes) => {
                    if let Err(e) = decode_tombstones(&t.path, &bytes) {
                        report.damage(&t.path, e);
                    }
                }
                Err(e) if gone(&e) => {}
                Err(e) => report.damage(&t.path, e),
            }
        }
        step(&mut report, t.size, total);
    }
    for p in &parts {
        let checked = p.checksum.is_some();
        // Reads every block (checked) and decodes every row.
        let result = (|| {
            let (file, _, _) = crate::checksum::VerifiedPart::open(storage, p, Some(&[]))?;
            if !file.leading_magic_ok() {
                return Err(StoreError::corrupt(
                    &p.path,
                    "bytes 0..4 are not the parquet magic",
                ));
            }
            let mut rows = 0u64;
            // The part's runs, for its `.runs` file (from the same pass).
            let mut runs = crate::part::RunsCollector::default();
            crate::part::scan_live_rows(storage, p, None, 64 * 1024, &mut |b| {
                rows += b.num_rows() as u64;
                if p.runs.is_some() {
                    runs.push(
                        crate::part::str_col(&b, DISTINCT_ID_COLUMN, &p.path)?,
                        crate::part::u64_col(&b, SEQ_COLUMN, &p.path)?.values(),
                    );
                }
                Ok(())
            })?;
            if rows != p.rows {
                return Err(StoreError::corrupt(
                    &p.path,
                    format!("{rows} rows decoded, the manifest says {}", p.rows),
                ));
            }
            Ok(runs.finish())
        })();
        let (result, actual_runs) = match result {
            Ok(runs) => (Ok(()), Some(runs)),
            Err(e) => (Err(e), None),
        };
        match result {
            Ok(()) if checked => report.parts_checked += 1,
            Ok(()) => report.findings.push(ScrubFinding {
                path: p.path.clone(),
                severity: "unchecked",
                problem: "written before part checksums: decodes, but a changed value cannot be detected (a purge or merge rewrites it with checksums)".into(),
            }),
            Err(e) if gone(&e) => {}
            Err(e) => report.damage(&p.path, e),
        }
        step(&mut report, p.size, total);
        if let Some(r) = &p.runs {
            let path = crate::runs_file::runs_path(&p.path);
            // Against the part's columns when they decoded; else its own
            // checksums only (the part is reported above).
            let outcome = match actual_runs {
                Some(actual) => check_runs(storage, p, actual),
                None => crate::runs_file::read_all(storage, p).map(|_| ()),
            };
            match outcome {
                Ok(()) => {}
                Err(e) if gone(&e) => {}
                Err(e) => report.damage(&path, e),
            }
            step(&mut report, r.size, total);
        }
    }
    if let Some(wal_dir) = wal_dir {
        for id in segments {
            let path = wal::segment_path(wal_dir, id);
            let rel = format!(
                "wal/{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("")
            );
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match wal::read_segment(&path) {
                Ok(read) => {
                    if let SegmentEnd::Torn { offset, .. } = read.end {
                        report.findings.push(ScrubFinding {
                            path: rel,
                            severity: "note",
                            problem: format!(
                                "torn tail from byte {offset} (a write that was never acknowledged; the next writer cuts it)"
                            ),
                        });
                    }
                }
                Err(e) if gone(&e) => {}
                Err(e) => report.damage(&rel, e),
            }
            step(&mut report, size, total);
        }
    }
    report
        .findings
        .sort_by_key(|f| (f.severity != "damaged", f.path.clone()));
    Ok(report)
}
