//! On-disk formats: pure types and their encodings, no I/O.
//!
//! * [`Manifest`]: the list of live parts with their current tombstone
//!   versions, the deletion requests (their types in `format/request.rs`)
//!   and the store's counters. Encoded as a
//!   framed JSON document (magic, format version, length, CRC-32).
//! * Tombstone files: one or more roaring bitmaps (portable serialization)
//!   of deleted row positions, one per part, in a framed container (magic,
//!   version, entry table, CRC-32). See `docs/format.md`.
//!
//! Decoding never panics: every malformed input is a [`StoreError::Corrupt`]
//! naming the file.

use std::collections::BTreeMap;

use croaring::{Bitmap, Portable};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::schema::Table;

mod request;
pub use crate::runs_file::RunsRef;
use request::resolve_legacy_requests;
pub use request::{DeletionRequest, ProjectSettings, RequestKind, RequestStatus};

/// Magic bytes opening a manifest file.
pub const MANIFEST_MAGIC: &[u8; 8] = b"ELIDEMAN";
/// Magic bytes opening a tombstone file.
pub const TOMBSTONE_MAGIC: &[u8; 8] = b"ELIDETMB";
/// Current version of the manifest encoding. Versions 2 to 6 have the
/// encoding of version 1; they mark stores whose parts may hold UUID
/// columns as 16 bytes (2: event `uuid`; 3: `person_id` too; see
/// docs/format.md), which builds before could not read, parts that span
/// several days (4: [`PartMeta::last_day`], which builds before would
/// drop when they rewrite the manifest), deletion requests with a
/// floor (5: [`DeletionRequest::floor_seq`], which builds before would
/// ignore, deleting another person's rows below it), or predicates that
/// compare numbers exactly (6: [`crate::predicate::Numbers`], which
/// builds before would ignore, reading two large integers one double
/// holds alike as equal and deleting the other's rows): such builds
/// refuse the store with this version in the error. This build reads
/// versions 1 to 6.
pub const MANIFEST_FORMAT_VERSION: u32 = 6;
/// Current version of the tombstone encoding.
pub const TOMBSTONE_FORMAT_VERSION: u32 = 1;

/// The state of the store at one version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Version of this manifest; each commit publishes `version + 1`.
    pub version: u64,
    /// The next `_seq` to assign. Never decreases, so that a deletion's
    /// cut-off never covers rows appended after it.
    pub next_seq: u64,
    /// Every row with `_seq < flushed_seq` is in a part; the ingest log holds
    /// only rows at or above it.
    pub flushed_seq: u64,
    /// Next id for a part or tombstone file.
    pub next_file_id: u64,
    /// Next deletion-request id.
    pub next_request_id: u64,
    /// When this version was committed (µs since the epoch, UTC).
    pub committed_at_us: i64,
    /// Live parts, ordered by (table, project, day, id).
    pub parts: Vec<PartMeta>,
    /// Deletion requests, ordered by id.
    pub requests: Vec<DeletionRequest>,
    /// Projects dropped while some of their rows were still in the ingest
    /// log: replay hides those rows; removed once `flushed_seq` passes the
    /// cut-off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedProject>,
    /// Figures of the last compaction run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction: Option<CompactionSummary>,
    /// Key (hex) of the keyed hash that verified requests keep instead of
    /// distinct ids; created with the first verified request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash_key: String,
    /// The last receipt of the chain (receipt.rs): its number and the
    /// BLAKE3 of its file. A receipt removed from the end of the chain is
    /// found missing against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts_head: Option<crate::receipt::ReceiptHead>,
    /// Per-project settings that differ from the defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projects: BTreeMap<i64, ProjectSettings>,
    /// Bulk ingests committed as part of a two-phase commit with another
    /// store (the persons metadata), not yet confirmed or voided. Their
    /// parts are durable, invisible to queries and never compacted until
    /// resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_ingests: Vec<PendingIngest>,
    /// Opaque identity of the metadata database bound to this store (the
    /// persons layer sets it; the store only keeps it), so that a missing
    /// or replaced database is noticed instead of silently recreated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_id: Option<String>,
    /// A random token of the commit that published this version: an
    /// object-store commit whose answer was lost reads the version back
    /// and knows by it whether the version is its own (`remote/`).
    /// Empty in manifests written before 2026-12-02.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_token: String,
    /// On an object store: objects commits stopped referencing, with
    /// when, kept for the retention window before GC removes them (so a
    /// later process knows how long each has waited). Entries leave two
    /// windows after their retirement (gc.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredObject>,
    /// On an object store: the writer id of the local directory whose
    /// writer committed this version (`WRITER_ID`). A local ingest log
    /// with rows is replayed only into a store this directory's writer
    /// committed last (`store/opening.rs`, `Store::open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_id: Option<String>,
}

/// An object a commit stopped referencing (object stores only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetiredObject {
    /// Its path.
    pub path: String,
    /// When it was retired (µs since the epoch, UTC).
    pub at_us: i64,
}

/// A bulk ingest committed under a token, waiting for the other half of
/// its two-phase commit (see `bulk.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingIngest {
    /// The token both stores record.
    pub token: String,
    /// Its parts (those still live; a part fully deleted meanwhile leaves).
    pub parts: Vec<u64>,
    /// When it was committed (µs since the epoch, UTC).
    pub created_at_us: i64,
}

impl Manifest {
    /// The manifest of a new, empty store.
    pub fn empty() -> Self {
        Manifest {
            version: 0,
            next_seq: 1,
            flushed_seq: 1,
            next_file_id: 1,
            next_request_id: 1,
            committed_at_us: 0,
            parts: Vec::new(),
            requests: Vec::new(),
            dropped: Vec::new(),
            last_compaction: None,
            hash_key: String::new(),
            pending_ingests: Vec::new(),
            metadata_id: None,
            projects: BTreeMap::new(),
            receipts_head: None,
            commit_token: String::new(),
            retired: Vec::new(),
            writer_id: None,
        }
    }

    /// Whether a part belongs to an unresolved pending ingest.
    pub fn is_pending_part(&self, id: u64) -> bool {
        self.pending_ingests.iter().any(|p| p.parts.contains(&id))
    }

    /// The part with id `id`.
    pub fn part(&self, id: u64) -> Option<&PartMeta> {
        self.parts.iter().find(|p| p.id == id)
    }

    /// The invariants every committed manifest keeps; `Err` names the
    /// first one broken. The commit path checks them in debug builds; the
    /// tests check them after every operation.
    ///
    /// * parts are ordered by (table, project, day, id), ids unique and
    ///   below `next_file_id`, `_seq`s below `next_seq`, deleted rows no
    ///   more than rows; a part's rows are on its days, and a part that
    ///   spans several days spans days of one month;
    /// * `flushed_seq <= next_seq`;
    /// * requests are ordered by id, ids unique and below
    ///   `next_request_id`; a pending request lists only live parts, any
    ///   other lists none; a verified request keeps no distinct id in
    ///   clear.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let key = |p: &PartMeta| (p.table, p.project_id, p.day, p.id);
        for w in self.parts.windows(2) {
            if key(&w[0]) >= key(&w[1]) {
                return Err(format!("parts {} and {} out of order", w[0].id, w[1].id));
            }
        }
        for p in &self.parts {
            if let Some(last) = p.last_day {
                if last <= p.day || month_of(last) != month_of(p.day) {
                    return Err(format!(
                        "part {} spans days {}..={last}: not several days of one month",
                        p.id, p.day
                    ));
                }
            }
            let (first, last) = (*p.days().start(), *p.days().end());
            let ts_days = crate::part::day_of(p.min_ts)..=crate::part::day_of(p.max_ts);
            if p.rows > 0 && (*ts_days.start() < first || *ts_days.end() > last) {
                return Err(format!(
                    "part {} has rows on days {ts_days:?}, outside its days {first}..={last}",
                    p.id
                ));
            }
        }
        let live: std::collections::HashSet<u64> = self.parts.iter().map(|p| p.id).collect();
        if live.len() != self.parts.len() {
            return Err("a part id appears twice".into());
        }
        for p in &self.parts {
            if p.id >= self.next_file_id {
                return Err(format!("part {} is not below next_file_id", p.id));
            }
            if p.rows > 0 && p.max_seq >= self.next_seq {
                return Err(format!(
                    "part {} holds _seq {} >= next_seq",
                    p.id, p.max_seq
                ));
            }
            if p.deleted() > p.rows {
                return Err(format!("part {} deletes more rows than it has", p.id));
            }
        }
        if self.flushed_seq > self.next_seq {
            return Err("flushed_seq is above next_seq".into());
        }
        for w in self.requests.windows(2) {
            if w[0].id >= w[1].id {
                return Err(format!("requests {} and {} out of order", w[0].id, w[1].id));
            }
        }
        for r in &self.requests {
            if r.id >= self.next_request_id {
                return Err(format!("request {} is not below next_request_id", r.id));
            }
            if r.status != RequestStatus::Pending && !r.parts.is_empty() {
                return Err(format!(
                    "request {} is {} but lists parts",
                    r.id,
                    r.status.as_str()
                ));
            }
            if r.logical
                && (r.status != RequestStatus::Pending
                    || !r.parts.is_empty()
                    || r.predicate.is_none())
            {
                return Err(format!(
                    "request {} is logical but is {}, lists parts or has no predicate",
                    r.id,
                    r.status.as_str()
                ));
            }
            if let Some(p) = r.parts.iter().find(|p| !live.contains(p)) {
                return Err(format!(
                    "request {} lists part {p}, which is not live",
                    r.id
                ));
            }
            if r.status == RequestStatus::Verified
                && (!r.distinct_ids.is_empty()
                    || r.predicate
                        .as_ref()
                        .is_some_and(|p| !p.distinct_ids.is_empty()))
            {
                return Err(format!("request {} is verified but keeps its ids", r.id));
            }
        }
        Ok(())
    }

    /// Every object path this manifest references (parts and tombstone files).
    pub fn referenced_paths(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for p in &self.parts {
            out.extend(p.files());
            if let Some(t) = &p.tombstone {
                out.insert(t.path.clone());
            }
        }
        out
    }
}

/// One immutable parquet part: rows of one table and one partition
/// (project x UTC day, or a span of UTC days of one calendar month for a
/// merge of small parts, see [`crate::policy`]), sorted by (`distinct_id`,
/// `_seq`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartMeta {
    /// Unique id (also the file name).
    pub id: u64,
    /// Table the rows belong to.
    pub table: Table,
    /// Partition: project.
    pub project_id: i64,
    /// Partition: days since 1970-01-01 (UTC) of `timestamp`; the first
    /// such day of a part that spans several.
    pub day: i32,
    /// The last day of a part that spans several days (a merge of small
    /// parts of one project and calendar month); absent for a part of one
    /// day. `timestamp` of every row is within `day..=last_day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_day: Option<i32>,
    /// Object path of the parquet file.
    pub path: String,
    /// File size in bytes.
    pub size: u64,
    /// Rows in the file (deleted or not).
    pub rows: u64,
    /// Rows per parquet row group, in order; the scan checks the file against it.
    pub row_groups: Vec<u64>,
    /// Smallest `_seq` in the part.
    pub min_seq: u64,
    /// Largest `_seq` in the part.
    pub max_seq: u64,
    /// Smallest `timestamp` (µs).
    pub min_ts: i64,
    /// Largest `timestamp` (µs).
    pub max_ts: i64,
    /// Current tombstone version, if any row is deleted.
    pub tombstone: Option<TombstoneRef>,
    /// How the file's bytes are checked (absent in parts written before
    /// checksums existed: those are read unchecked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<PartChecksum>,
    /// BLAKE3 of the whole file (hex), computed when it was written; a
    /// receipt names the files a request's purge removed by it. Absent in
    /// parts written before receipts existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// The part's `.runs` file (its distinct ids' runs, for deletions
    /// that do not wait for the in-memory index; see
    /// [`crate::runs_file`]). Absent in parts written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<RunsRef>,
}

/// The checksums of a part file. The file is two regions: the data (the
/// `PAR1` magic and every row group's pages) and the tail (page indexes
/// and footer). The data region is covered by a CRC-32 per 64 KiB block,
/// listed in the footer's key-value metadata (key
/// [`crate::checksum::BLOCKS_KEY`]); the tail, and with it that list, by
/// the CRC-32 here. A reader verifies the tail before it trusts the
/// footer, and every block it reads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartChecksum {
    /// Length of the data region (where the tail starts).
    pub data_len: u64,
    /// CRC-32 of the tail (`data_len..size`).
    pub tail_crc32: u32,
}

impl PartMeta {
    /// The part's own files: the parquet file and its `.runs` file if it
    /// has one (not its tombstone, which changes with deletions).
    pub fn files(&self) -> Vec<String> {
        let mut out = vec![self.path.clone()];
        if self.runs.is_some() {
            out.push(crate::runs_file::runs_path(&self.path));
        }
        out
    }

    /// The UTC days the part's rows are in: `day..=last_day`.
    pub fn days(&self) -> std::ops::RangeInclusive<i32> {
        self.day..=self.last_day.unwrap_or(self.day).max(self.day)
    }

    /// Number of deleted rows.
    pub fn deleted(&self) -> u64 {
        self.tombstone.as_ref().map_or(0, |t| t.deleted)
    }

    /// Number of rows a query sees.
    pub fn live_rows(&self) -> u64 {
        self.rows - self.deleted().min(self.rows)
    }
}

/// Where a part's current tombstone bitmap lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TombstoneRef {
    /// Tombstone file id.
    pub file_id: u64,
    /// Object path of the tombstone file.
    pub path: String,
    /// Cardinality of the bitmap (deleted rows of the part).
    pub deleted: u64,
}

/// A dropped project's rows below `cutoff_seq` that may be in the ingest log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DroppedProject {
    /// The project.
    pub project_id: i64,
    /// Its rows with `_seq` below this are dropped.
    pub cutoff_seq: u64,
}

/// Figures of one compaction run, kept in the manifest for `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CompactionSummary {
    /// When the run finished (µs since the epoch, UTC).
    pub finished_at_us: i64,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    /// Parts rewritten without their deleted rows.
    pub parts_purged: u64,
    /// Parts combined by merges.
    pub parts_merged: u64,
    /// Parts written.
    pub parts_written: u64,
    /// Deleted rows physically removed.
    pub rows_dropped: u64,
    /// Bytes of the parts read.
    pub bytes_read: u64,
    /// Bytes of the parts written.
    pub bytes_written: u64,
    /// Requests that became `purged`.
    pub requests_purged: u64,
    /// Requests that became `verified`.
    pub requests_verified: u64,
}

/// Keyed hash (BLAKE3, hex) of a distinct id of `project`: what a verified
/// request keeps instead of the id. `key_hex` is [`Manifest::hash_key`].
pub fn distinct_id_hash(key_hex: &str, project: i64, distinct_id: &str) -> Option<String> {
    let key = hex_key(key_hex)?;
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(&project.to_le_bytes());
    h.update(distinct_id.as_bytes());
    Some(h.finalize().to_hex().to_string())
}

/// The 32 bytes of a hex hash key ([`Manifest::hash_key`]).
pub fn decode_hash_key(s: &str) -> Option<[u8; 32]> {
    hex_key(s)
}

fn hex_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A time in µs since the epoch as RFC 3339 UTC with microseconds
/// (`2026-11-30T12:00:00.000000Z`); out-of-range values as the number.
pub fn us_to_rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || us.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

/// Object path of manifest `version`.
/// Directory (object prefix) of the manifests.
pub const MANIFEST_DIR: &str = "manifest";

/// Object path of manifest `version`.
pub fn manifest_path(version: u64) -> String {
    format!("manifest/{version:020}.manifest")
}

/// Parse a manifest version out of its object path.
pub fn parse_manifest_path(path: &str) -> Option<u64> {
    let name = path.strip_prefix("manifest/")?.strip_suffix(".manifest")?;
    if name.len() != 20 {
        return None;
    }
    name.parse().ok()
}

/// Object path of tombstone file `file_id`.
pub fn tombstone_path(file_id: u64) -> String {
    format!("tombstones/{file_id:016x}.tomb")
}

/// Object path of part `file_id`.
pub fn part_path(table: Table, project_id: i64, day: i32, file_id: u64) -> String {
    format!(
        "parts/{}/{project_id}/{}/{file_id:016x}.parquet",
        table.name(),
        day_to_string(day)
    )
}

/// What an object path under the data directory is, by its name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectName {
    /// `parts/{table}/{project}/{YYYY-MM-DD}/{id:016x}.parquet`.
    Part,
    /// `parts/{table}/{project}/{YYYY-MM-DD}/{id:016x}.runs`: a part's
    /// distinct-id runs.
    Runs,
    /// `tombstones/{id:016x}.tomb`.
    Tombstone,
    /// `manifest/{version:020}.manifest`.
    Manifest,
    /// One of the above followed by `#<digits>`: a staged write.
    Staged,
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The file id in a part, `.runs` or tombstone path Elide writes (staged
/// copies included), if any.
pub fn file_id_of(path: &str) -> Option<u64> {
    let path = path.rsplit_once('#').map_or(path, |(base, _)| base);
    let name = path.rsplit('/').next()?;
    let id = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".runs"))
        .or_else(|| name.strip_suffix(".tomb"))?;
    is_hex_id(id)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
}

/// Classify a path by the names Elide writes; `None` for anything else
/// (a file Elide did not make, which it never removes).
pub fn classify_object(path: &str) -> Option<ObjectName> {
    if let Some((base, n)) = path.rsplit_once('#') {
        let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        return (digits && !base.contains('#') && classify_object(base).is_some())
            .then_some(ObjectName::Staged);
    }
    if parse_manifest_path(path).is_some() {
        return Some(ObjectName::Manifest);
    }
    if let Some(name) = path.strip_prefix("tombstones/") {
        return name
            .strip_suffix(".tomb")
            .filter(|id| is_hex_id(id))
            .map(|_| ObjectName::Tombstone);
    }
    let rest = path.strip_prefix("parts/")?;
    let mut it = rest.split('/');
    let (table, project, day, file) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let ok = it.next().is_none()
        && Table::from_name(table).is_some()
        && project.parse::<i64>().is_ok()
        && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok()
        && (file.strip_suffix(".parquet").is_some_and(is_hex_id)
            || file.strip_suffix(".runs").is_some_and(is_hex_id));
    ok.then(|| {
        if file.ends_with(".runs") {
            ObjectName::Runs
        } else {
            ObjectName::Part
        }
    })
}

/// Whether `path` is a file of a Delta Lake export (`elide export delta`,
/// crate `elide-delta`) at `parts/<table>/` or `parts/`: its log
/// (`_delta_log/…`) or a deletion-vector file (`dv/deletion_vector_*.bin`).
/// Elide neither removes nor reports them; the export manages them.
pub fn is_export_object(path: &str) -> bool {
    // A crashed write's staged copy (`…#N`) too.
    let path = path.rsplit_once('#').map_or(path, |(base, _)| base);
    let Some(rest) = path.strip_prefix("parts/") else {
        return false;
    };
    let rest = Table::ALL
        .iter()
        .find_map(|t| {
            rest.strip_prefix(t.name())
                .and_then(|r| r.strip_prefix('/'))
        })
        .unwrap_or(rest);
    rest.starts_with("_delta_log/")
        || rest
            .strip_prefix("dv/deletion_vector_")
            .is_some_and(|n| n.ends_with(".bin") && !n.contains('/'))
}

/// The days of `parts` together, first to last (`None` for no part).
pub fn days_of<'a>(
    parts: impl IntoIterator<Item = &'a PartMeta>,
) -> Option<std::ops::RangeInclusive<i32>> {
    parts
        .into_iter()
        .map(PartMeta::days)
        .reduce(|a, b| *a.start().min(b.start())..=*a.end().max(b.end()))
}

/// (year, month) of a day number (UTC): a part never spans two.
pub fn month_of(day: i32) -> (i32, u32) {
    use chrono::Datelike;
    let d = chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0).unwrap_or_default();
    (d.year(), d.month())
}

/// `YYYY-MM-DD` of a day number.
pub fn day_to_string(day: i32) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    match epoch.checked_add_signed(chrono::Duration::days(i64::from(day))) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => format!("day{day}"),
    }
}

/// Encode a manifest.
pub fn encode_manifest(m: &Manifest) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(m)
        .map_err(|e| StoreError::Internal(format!("manifest serialization: {e}")))?;
    let mut out = Vec::with_capacity(payload.len() + 28);
    out.extend_from_slice(MANIFEST_MAGIC);
    out.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decode a manifest read from `path`.
pub fn decode_manifest(path: &str, bytes: &[u8]) -> Result<Manifest> {
    let corrupt = |r: &str| StoreError::corrupt(path, r.to_string());
    if bytes.len() < 28 {
        return Err(corrupt("truncated header"));
    }
    if &bytes[0..8] != MANIFEST_MAGIC {
        return Err(corrupt("bad magic (not an elide manifest)"));
    }
    let version = read_u32(bytes, 8);
    if !(1..=MANIFEST_FORMAT_VERSION).contains(&version) {
        return Err(corrupt(&format!(
            "unsupported manifest format version {version} (this build reads 1 to {MANIFEST_FORMAT_VERSION})"
        )));
    }
    let len = read_u64(bytes, 16);
    let crc = read_u32(bytes, 24);
    let payload = &bytes[28..];
    if payload.len() as u64 != len {
        return Err(corrupt(&format!(
            "length mismatch: header says {len} bytes, file holds {}",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut m: Manifest =
        serde_json::from_slice(payload).map_err(|e| corrupt(&format!("invalid JSON: {e}")))?;
    if parse_manifest_path(path).is_some_and(|v| v != m.version) {
        return Err(corrupt("version in file does not match its name"));
    }
    if let Some(bad) = foreign_path(&m) {
        return Err(corrupt(&format!(
            "names {bad:?}, which is not an object of the store (a part, its runs, a tombstone file)"
        )));
    }
    // A part's rows are positions in 32-bit bitmaps, and what is sized by
    // them (a rewrite's row map) must be what the file holds.
    if let Some(p) = m.parts.iter().find(|p| {
        p.rows > u64::from(u32::MAX)
            || (!p.row_groups.is_empty() && p.row_groups.iter().sum::<u64>() != p.rows)
            // A run holds a row at least.
            || p.runs.as_ref().is_some_and(|r| r.runs > p.rows)
    }) {
        return Err(corrupt(&format!(
            "part {} claims {} rows, in row groups of {:?}, with {} runs",
            p.id,
            p.rows,
            p.row_groups,
            p.runs.as_ref().map_or(0, |r| r.runs)
        )));
    }
    resolve_legacy_requests(&mut m);
    Ok(m)
}

/// The first path `m` names that is not an object of the kind its place
/// holds, if any. Every path the store reads, keeps or removes comes from
/// the manifest, and one joined to the data directory with `..` or as an
/// absolute path would reach outside it (a removal by GC most of all):
/// such a manifest is corrupt, however its checksum came to match.
fn foreign_path(m: &Manifest) -> Option<&str> {
    let is = |p: &str, kinds: &[ObjectName]| classify_object(p).is_some_and(|k| kinds.contains(&k));
    for p in &m.parts {
        if !is(&p.path, &[ObjectName::Part]) {
            return Some(&p.path);
        }
        if let Some(t) = p
            .tombstone
            .as_ref()
            .filter(|t| !is(&t.path, &[ObjectName::Tombstone]))
        {
            return Some(&t.path);
        }
    }
    let files = [ObjectName::Part, ObjectName::Runs];
    for r in &m.requests {
        if let Some(p) = r.awaiting_removal.iter().find(|p| !is(p, &files)) {
            return Some(p);
        }
    }
    m.retired
        .iter()
        .map(|r| r.path.as_str())
        .find(|p| classify_object(p).is_none())
}

/// Encode a tombstone file holding one bitmap per part.
pub fn encode_tombstones(bitmaps: &BTreeMap<u64, &Bitmap>) -> Vec<u8> {
    let blobs: Vec<(u64, Vec<u8>, u64)> = bitmaps
        .iter()
        .map(|(id, b)| (*id, b.serialize::<Portable>(), b.cardinality()))
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(TOMBSTONE_MAGIC);
    out.extend_from_slice(&TOMBSTONE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
    let mut offset = 0u64;
    for (id, blob, card) in &blobs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
        out.extend_from_slice(&card.to_le_bytes());
        offset += blob.len() as u64;
    }
    for (_, blob, _) in &blobs {
        out.extend_from_slice(blob);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decode a tombstone file read from `path` into (part id -> bitmap).
pub fn decode_tombstones(path: &str, bytes: &[u8]) -> Result<BTreeMap<u64, Bitmap>> {
    let corrupt = |r: String| StoreError::corrupt(path, r);
    if bytes.len() < 20 {
        return Err(corrupt("truncated".into()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(corrupt("checksum mismatch".into()));
    }
    if &body[0..8] != TOMBSTONE_MAGIC {
        return Err(corrupt("bad magic (not an elide tombstone file)".into()));
    }
    let version = read_u32(body, 8);
    if version != TOMBSTONE_FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported tombstone format version {version}"
        )));
    }
    let n = read_u32(body, 12) as usize;
    let table_end = 16usize
        .checked_add(
            n.checked_mul(32)
                .ok_or_else(|| corrupt("entry count overflow".into()))?,
        )
        .ok_or_else(|| corrupt("entry count overflow".into()))?;
    if table_end > body.len() {
        return Err(corrupt("entry table past end of file".into()));
    }
    let blobs = &body[table_end..];
    let mut out = BTreeMap::new();
    for i in 0..n {
        let e = 16 + i * 32;
        let (id, off, len, card) = (
            read_u64(body, e),
            read_u64(body, e + 8),
            read_u64(body, e + 16),
            read_u64(body, e + 24),
        );
        let end = off
            .checked_add(len)
            .filter(|&end| end <= blobs.len() as u64)
            .ok_or_else(|| corrupt(format!("bitmap of part {id} past end of file")))?;
        let blob = &blobs[off as usize..end as usize];
        let bitmap = Bitmap::try_deserialize::<Portable>(blob)
            .ok_or_else(|| corrupt(format!("bitmap of part {id} does not deserialize")))?;
        if bitmap.cardinality() != card {
            return Err(corrupt(format!(
                "bitmap of part {id}: cardinality {} but entry says {card}",
                bitmap.cardinality()
            )));
        }
        out.insert(id, bitmap);
    }
    Ok(out)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_roundtrip_and_corruption() {
        let mut m = Manifest::empty();
        m.version = 7;
        let path = manifest_path(7);
        let bytes = encode_manifest(&m).unwrap();
        assert_eq!(decode_manifest(&path, &bytes).unwrap(), m);
        for i in [0, 9, 20, 30, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            assert!(matches!(
                decode_manifest(&path, &bad),
                Err(StoreError::Corrupt { .. })
            ));
        }
        assert!(decode_manifest(&path, &bytes[..bytes.len() - 3]).is_err());
        assert!(decode_manifest(&manifest_path(8), &bytes).is_err());
    }

    /// A manifest naming anything but the store's own objects, where a
    /// part, a tombstone file or a file awaiting removal goes, is corrupt
    /// (its paths are joined to the data directory and removed by GC).
    #[test]
    fn a_manifest_naming_foreign_paths_is_corrupt() {
        let good = || {
            let mut m = Manifest::empty();
            m.parts = vec![part(1, 1, 1, true)];
            m.requests = vec![request(1, RequestStatus::Purged, vec![])];
            m.requests[0].awaiting_removal = vec![m.parts[0].path.clone()];
            m
        };
        let m = good();
        assert!(decode_manifest("ok", &encode_manifest(&m).unwrap()).is_ok());
        for bad in [
            "/home/svc/.ssh/authorized_keys",
            "../../x",
            "parts/events/1/2024-10-04/../../../../etc/passwd",
            "tombstones/0000000000000009.tomb",
            "manifest/00000000000000000001.manifest",
        ] {
            let mut cases = Vec::new();
            let mut m = good();
            m.parts[0].path = bad.into();
            cases.push(m);
            let mut m = good();
            if let Some(t) = m.parts[0].tombstone.as_mut() {
                t.path = bad.replace("tombstones/", "parts/");
            }
            cases.push(m);
            let mut m = good();
            m.requests[0].awaiting_removal = vec![bad.into()];
            cases.push(m);
            for m in cases {
                let e = decode_manifest("bad", &encode_manifest(&m).unwrap()).unwrap_err();
                assert!(matches!(e, StoreError::Corrupt { .. }), "{bad}: {e}");
            }
        }
        // Rows the row groups do not hold, past 2^32, or fewer than runs.
        let mut cases = Vec::new();
        let mut m = good();
        m.parts[0].rows = 1 << 40;
        cases.push(m);
        let mut m = good();
        m.parts[0].row_groups = vec![4, 5];
        cases.push(m);
        let mut m = good();
        m.parts[0].runs = Some(crate::runs_file::RunsRef {
            size: 100,
            head_at: 0,
            head_crc32: 0,
            runs: 11,
        });
        cases.push(m);
        for m in cases {
            let e = decode_manifest("bad", &encode_manifest(&m).unwrap()).unwrap_err();
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        }
    }

    fn part(id: u64, project: i64, min_seq: u64, tombstone: bool) -> PartMeta {
        PartMeta {
            id,
            table: Table::Events,
            project_id: project,
            day: 20_000,
            last_day: None,
            path: part_path(Table::Events, project, 20_000, id),
            size: 10,
            rows: 10,
            row_groups: vec![10],
            min_seq,
            max_seq: min_seq + 9,
            min_ts: 20_000 * crate::MICROS_PER_DAY,
            max_ts: 20_000 * crate::MICROS_PER_DAY,
            tombstone: tombstone.then(|| TombstoneRef {
                file_id: 9,
                path: tombstone_path(9),
                deleted: 2,
            }),
            checksum: None,
            blake3: None,
            runs: None,
        }
    }

    fn request(id: u64, status: RequestStatus, parts: Vec<u64>) -> DeletionRequest {
        DeletionRequest {
            status,
            parts,
            ..DeletionRequest::for_test(id)
        }
    }

    #[test]
    fn requests_without_parts_get_them_at_decode() {
        let mut m = Manifest::empty();
        m.next_seq = 100;
        m.next_file_id = 10;
        m.next_request_id = 3;
        // Two parts of the scope (one with tombstones), one of another project.
        m.parts = vec![
            part(1, 1, 1, true),
            part(2, 1, 20, false),
            part(3, 2, 1, true),
        ];
        m.requests = vec![
            request(1, RequestStatus::Pending, vec![]),
            request(2, RequestStatus::Purged, vec![]),
        ];
        let mut json: serde_json::Value = serde_json::to_value(&m).unwrap();
        for r in json["requests"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("parts");
        }
        let payload = serde_json::to_vec(&json).unwrap();
        let mut bytes = encode_manifest(&Manifest::empty()).unwrap()[..28].to_vec();
        bytes[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes[24..28].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let back = decode_manifest("legacy", &bytes).unwrap();
        assert_eq!(
            back.requests[0].parts,
            vec![1],
            "pending: its scope's tombstoned parts"
        );
        assert!(back.requests[1].parts.is_empty(), "purged: none");
        assert_eq!(back.check_invariants(), Ok(()));
        // Written again, the field is kept as it is (an empty list too).
        let again = decode_manifest("again", &encode_manifest(&m).unwrap()).unwrap();
        assert!(again.requests[0].parts.is_empty());
    }

    #[test]
    fn invariants_name_what_is_broken() {
        let good = || {
            let mut m = Manifest::empty();
            m.next_seq = 100;
            m.next_file_id = 10;
            m.next_request_id = 3;
            m.parts = vec![part(1, 1, 1, true), part(2, 1, 20, false)];
            m.requests = vec![
                request(1, RequestStatus::Pending, vec![1]),
                request(2, RequestStatus::Purged, vec![]),
            ];
            m
        };
        assert_eq!(good().check_invariants(), Ok(()));
        type Breaker = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Breaker, &str)> = vec![
            (Box::new(|m| m.parts.swap(0, 1)), "out of order"),
            (Box::new(|m| m.next_file_id = 2), "next_file_id"),
            (Box::new(|m| m.next_seq = 20), "next_seq"),
            (Box::new(|m| m.parts[0].rows = 1), "more rows"),
            (Box::new(|m| m.flushed_seq = 101), "flushed_seq"),
            (Box::new(|m| m.requests.swap(0, 1)), "out of order"),
            (Box::new(|m| m.next_request_id = 2), "next_request_id"),
            (Box::new(|m| m.requests[0].parts = vec![7]), "not live"),
            (Box::new(|m| m.requests[1].parts = vec![1]), "lists parts"),
            (
                Box::new(|m| m.requests[1].status = RequestStatus::Verified),
                "keeps its ids",
            ),
            (
                Box::new(|m| m.parts[0].max_ts += crate::MICROS_PER_DAY),
                "outside its days",
            ),
            (
                Box::new(|m| m.parts[0].last_day = Some(20_000)),
                "not several days",
            ),
            // 20,000 is 2024-10-04: the 40th is in November.
            (
                Box::new(|m| m.parts[0].last_day = Some(20_040)),
                "not several days",
            ),
        ];
        for (breaker, needle) in cases {
            let mut m = good();
            breaker(&mut m);
            let e = m.check_invariants().unwrap_err();
            assert!(e.contains(needle), "{e} (wanted {needle})");
        }
    }

    #[test]
    fn tombstone_roundtrip_and_corruption() {
        let a = Bitmap::of(&[1, 5, 100_000]);
        let mut b = Bitmap::new();
        b.add_range(10..20_000);
        let mut map = BTreeMap::new();
        map.insert(3u64, &a);
        map.insert(9u64, &b);
        // Commits write run containers (`run_optimize`), older files the
        // array and bitmap containers above: both read back.
        let mut c = b.clone();
        c.add_range(30_000..30_070);
        c.run_optimize();
        map.insert(12u64, &c);
        let bytes = encode_tombstones(&map);
        let back = decode_tombstones("t", &bytes).unwrap();
        assert_eq!(back[&3], a);
        assert_eq!(back[&9], b);
        assert_eq!(back[&12], c);
        assert!(back[&12].statistics().n_run_containers > 0);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                decode_tombstones("t", &bad).is_err(),
                "flip at {i} undetected"
            );
        }
        for len in 0..bytes.len() {
            assert!(decode_tombstones("t", &bytes[..len]).is_err());
        }
    }

    #[test]
    fn delta_export_files_are_left_to_the_export() {
        for p in [
            "parts/events/_delta_log/00000000000000000000.json",
            "parts/events/_delta_log/00000000000000000010.checkpoint.parquet",
            "parts/events/dv/deletion_vector_0b6f1a52-4c41-4d55-9c57-6fd7e1b6b5c4.bin",
            "parts/_delta_log/_last_checkpoint",
            "parts/recordings/_delta_log/00000000000000000001.json",
            "parts/events/dv/deletion_vector_0b6f1a52-4c41-4d55-9c57-6fd7e1b6b5c4.bin#3",
        ] {
            assert!(is_export_object(p), "{p}");
            assert_eq!(classify_object(p), None, "{p}");
        }
        for p in [
            "parts/events/1/2026-09-21/000000000000004b.parquet",
            "parts/events/dv/other.bin",
            "parts/events/1/_delta_log/x.json",
            "tombstones/_delta_log/x.json",
            "_delta_log/00000000000000000000.json",
        ] {
            assert!(!is_export_object(p), "{p}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse_manifest_path(&manifest_path(42)), Some(42));
        assert_eq!(file_id_of(&tombstone_path(0x4a)), Some(0x4a));
        assert_eq!(
            file_id_of("parts/events/1/2026-09-21/000000000000004b.runs"),
            Some(0x4b)
        );
        assert_eq!(
            file_id_of("parts/events/1/2026-09-21/000000000000004c.parquet#12"),
            Some(0x4c)
        );
        assert_eq!(file_id_of(&manifest_path(7)), None);
        assert_eq!(file_id_of("parts/events/1/2026-09-21/4c.parquet"), None);
        assert_eq!(parse_manifest_path("manifest/x.manifest"), None);
        assert_eq!(day_to_string(0), "1970-01-01");
        assert_eq!(
            part_path(Table::Events, 2, 20_393, 255),
            "parts/events/2/2025-11-01/00000000000000ff.parquet"
        );
    }
}
