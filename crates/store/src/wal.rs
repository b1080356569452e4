//! The ingest log: acknowledged appends that are not yet in a part.
//!
//! ```text
//!  append ──► [seq lock] assign _seq, write record ──► group fsync ──► ack
//!                                 │
//!                  wal/00000000000000000007.wal   (one segment per memtable)
//! ```
//!
//! A segment starts with a 12-byte header (`ELIDEWAL`, format version) and
//! holds records `[len u32][crc32 u32][payload]`. Version 2 payload =
//! `[kind u8 = 1][table u8][seq_start u64][rows u64][synced u64][Arrow IPC
//! stream]`, where `synced` is how far the segment was durable (its file
//! offset at the last completed `fdatasync`) when the record was written.
//! Version 1 (still read) has no `synced`.
//!
//! **Group commit.** Writers append records under the store's sequencing
//! lock (so log order is `_seq` order) and then call [`Wal::sync_to`] with the
//! log position of their record; one `fdatasync` covers every record written
//! before it started, and the others return without syncing again.
//!
//! **Recovery** ([`recover`], by the writer at open). A crash, or a power
//! loss, damages only what was not yet synced: a record cut short, or of
//! the right length with contents that never reached the disk — and since
//! a disk may persist unsynced blocks out of order, possibly with a later
//! unsynced record intact after it. Damage to *synced* bytes is different:
//! it silently loses acknowledged rows and must be refused. The `synced`
//! field tells them apart: a bad region is damage when a valid record
//! after it was written once the region was already durable (its `synced`
//! lies past the region's start), or when it lies in a closed segment
//! (synced whole before the next one was created). Otherwise it is a torn
//! tail, which recovery cuts back to the last valid record and syncs
//! *before* the writer creates its new segment, so that an older segment is
//! never left torn behind a newer one. Trailing segments whose header was
//! never written (a crash, or a full disk, while creating one) are removed.
//! Segments are removed (by GC) once a committed manifest's `flushed_seq`
//! covers all their rows, so that no copy of a deleted row lingers here.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StoreError};
use crate::io::{AppendFile, FileSystem};
use crate::schema::Table;

const SEGMENT_MAGIC: &[u8; 8] = b"ELIDEWAL";
/// The version new segments are written in. Versions 3 and 4 have the
/// layout of version 2; their records may hold UUID columns as 16 bytes
/// (3: event `uuid`; 4: `person_id` too), which builds before could not
/// read (they refuse the segment by its version). This build reads
/// versions 1 to 4.
const SEGMENT_VERSION: u32 = 4;
const HEADER_LEN: u64 = 12;
const KIND_APPEND: u8 = 1;
/// Payload bytes before the IPC stream, by segment version.
const PREFIX_V1: usize = 18;
const PREFIX_V2: usize = 26;
/// Upper bound of one record, a guard against garbage lengths.
const MAX_RECORD: u32 = 1 << 31;

/// Path of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Segment ids present in `dir`, ascending (only names Elide writes:
/// twenty digits and `.wal`).
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal") {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(id) = stem.parse::<u64>() {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// One appended batch as logged.
#[derive(Debug)]
pub struct WalRecord {
    /// Target table.
    pub table: Table,
    /// `_seq` of the first row.
    pub seq_start: u64,
    /// The batch in stored schema (with `_seq` and `inserted_at`).
    pub batch: RecordBatch,
}

/// A record encoded but for its `synced` field, which [`Wal::write`]
/// fills in (and folds into the checksum) when it writes it.
pub struct EncodedRecord {
    bytes: Vec<u8>,
    /// CRC state of the IPC stream (the payload after its prefix).
    tail_crc: crc32fast::Hasher,
}

impl std::fmt::Debug for EncodedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedRecord")
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl EncodedRecord {
    /// Set `synced` and the checksum; returns the bytes to write.
    fn seal(&mut self, synced: u64) -> &[u8] {
        let prefix = 8 + PREFIX_V2;
        self.bytes[8 + 18..prefix].copy_from_slice(&synced.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&self.bytes[8..prefix]);
        h.combine(&self.tail_crc);
        let crc = h.finalize();
        self.bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.bytes
    }

    /// The record's buffer, emptied, for the next [`encode_record_into`]
    /// (dropped when larger than [`REUSED_BUFFER_MAX`]).
    pub fn into_buffer(self) -> Vec<u8> {
        let mut bytes = self.bytes;
        if bytes.capacity() > REUSED_BUFFER_MAX {
            return Vec::new();
        }
        bytes.clear();
        bytes
    }
}

/// Largest encoding buffer kept for reuse between appends.
pub const REUSED_BUFFER_MAX: usize = 64 << 20;

/// Encode a record (header + payload) into `bytes` (emptied first),
/// leaving `synced` for [`Wal::write`]. A buffer kept between
/// appends is neither grown nor faulted in again for each record, which
/// took a tenth of a capture batch's time when every record had a fresh
/// one.
pub fn encode_record_into(
    mut bytes: Vec<u8>,
    table: Table,
    seq_start: u64,
    batch: &RecordBatch,
) -> Result<EncodedRecord> {
    bytes.clear();
    // The IPC stream holds every buffer once, padded, and a little
    // metadata: the batch's memory size (capacities) covers it.
    // (Sliced arrays count their parents' buffers: capped at a record's
    // largest size.)
    bytes.reserve((batch.get_array_memory_size() + 4096).min(MAX_RECORD as usize));
    bytes.extend_from_slice(&[0u8; 8]);
    bytes.push(KIND_APPEND);
    bytes.push(table.id());
    bytes.extend_from_slice(&seq_start.to_le_bytes());
    bytes.extend_from_slice(&(batch.num_rows() as u64).to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    {
        let mut w = StreamWriter::try_new(&mut bytes, batch.schema_ref())?;
        w.write(batch)?;
        w.finish()?;
    }
    let len = u32::try_from(bytes.len() - 8)
        .ok()
        .filter(|&l| l < MAX_RECORD)
        .ok_or_else(|| StoreError::InvalidInput("batch too large for one log record".into()))?;
    bytes[0..4].copy_from_slice(&len.to_le_bytes());
    let mut tail_crc = crc32fast::Hasher::new();
    tail_crc.update(&bytes[8 + PREFIX_V2..]);
    Ok(EncodedRecord { bytes, tail_crc })
}

/// How a segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// Bytes from `offset` on are a torn write: an incomplete header, or a
    /// record that fails its checksum, that no record written after the
    /// bytes were synced follows. A crash (or a power loss) while writing
    /// leaves this; nothing from it on was acknowledged.
    Torn {
        /// Where the torn bytes start (the end of the last valid record).
        offset: u64,
        /// Whether the torn record claims more bytes than the file has
        /// (what a process killed mid-write leaves; a power loss may also
        /// leave a record of the right length with unwritten contents).
        runs_past_end: bool,
    },
}

/// A segment as read: its intact records and how it ends.
#[derive(Debug)]
pub struct SegmentRead {
    /// Valid records, in order (up to the first bad region).
    pub records: Vec<WalRecord>,
    /// How the segment ends.
    pub end: SegmentEnd,
    /// File length.
    pub len: u64,
    /// Segment format version (0 when the header is incomplete).
    pub version: u32,
}

/// A record intact at `at`: its end and payload.
struct Found<'a> {
    end: usize,
    payload: &'a [u8],
}

/// The record at `at` of `bytes`, if one is intact there.
fn record_at(bytes: &[u8], at: usize, version: u32) -> Option<Found<'_>> {
    let head = bytes.get(at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let start = at + 8;
    let end = start.checked_add(len)?;
    let payload = bytes.get(start..end)?;
    let prefix = if version == 1 { PREFIX_V1 } else { PREFIX_V2 };
    if payload.len() < prefix
        || payload[0] != KIND_APPEND
        || Table::from_id(payload[1]).is_none()
        || crc32fast::hash(payload) != crc
    {
        return None;
    }
    Some(Found { end, payload })
}

/// Bytes of candidate records [`proof_of_damage`] may hash, per byte of
/// the segment.
const PROOF_SCAN_BUDGET: usize = 4;

/// The first record after the bad bytes at `at` that proves them damage
/// rather than a torn write: intact, and written once they were durable
/// (its `synced` lies past `at`; version 1 has no `synced`, so any intact
/// record). A candidate is checked by its header (kind, table, length,
/// and from version 2 `at < synced <= its offset`, which a real record
/// always satisfies) before its checksum, and the checksums hashed are
/// bounded by [`PROOF_SCAN_BUDGET`] times the segment's size.
///
/// Rows may hold byte patterns that look like headers: a distinct id of
/// `\x01` bytes in the torn record made every offset in it a candidate
/// of 16 MiB, and the scan hashed for hours. Past the budget the bad
/// bytes are taken for a torn write (and that is logged): a real record
/// after damage passes the header checks, and only content made to pass
/// them can use the budget up.
fn proof_of_damage(bytes: &[u8], at: usize, version: u32) -> Option<usize> {
    let prefix = if version == 1 { PREFIX_V1 } else { PREFIX_V2 };
    let mut budget = bytes.len().saturating_mul(PROOF_SCAN_BUDGET);
    for y in at + 1..bytes.len() {
        let Some(head) = y.checked_add(8 + prefix).and_then(|end| bytes.get(y..end)) else {
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let payload = &head[8..];
        let plausible = len >= prefix
            && y + 8 + len <= bytes.len()
            && payload[0] == KIND_APPEND
            && Table::from_id(payload[1]).is_some()
            && (version == 1 || {
                let synced = u64_at(payload, 18);
                synced > at as u64 && synced <= y as u64
            });
        if !plausible {
            continue;
        }
        let Some(left) = budget.checked_sub(len) else {
            tracing::warn!(
                offset = at,
                "ingest-log scan for a valid record after a bad one stopped at its bound; taking the bad bytes for a torn write"
            );
            return None;
        };
        budget = left;
        if record_at(bytes, y, version).is_some() {
            return Some(y);
        }
    }
    None
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut u = [0u8; 8];
    u.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(u)
}

/// Read a segment. A bad region followed by a record written after the
/// region was durable (version 2), or by any valid record (version 1,
/// which has no watermark), is damage: an error naming the segment and
/// the byte offset, since dropping it would silently lose acknowledged
/// records.
pub fn read_segment(path: &Path) -> Result<SegmentRead> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(path.display(), e))?;
    let len = bytes.len() as u64;
    if bytes.len() < HEADER_LEN as usize {
        // Created, header not (fully) written: nothing was ever logged here.
        let end = if bytes.is_empty() {
            SegmentEnd::Clean
        } else {
            SegmentEnd::Torn {
                offset: 0,
                runs_past_end: true,
            }
        };
        return Ok(SegmentRead {
            records: Vec::new(),
            end,
            len,
            version: 0,
        });
    }
    if &bytes[0..8] != SEGMENT_MAGIC {
        return Err(StoreError::corrupt(path.display(), "bad ingest-log magic"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(1..=SEGMENT_VERSION).contains(&version) {
        return Err(StoreError::corrupt(
            path.display(),
            format!("unsupported ingest-log version {version}"),
        ));
    }
    let mut at = HEADER_LEN as usize;
    let mut records = Vec::new();
    while at < bytes.len() {
        let Some(found) = record_at(&bytes, at, version) else {
            if let Some(valid) = proof_of_damage(&bytes, at, version) {
                return Err(StoreError::corrupt(
                    path.display(),
                    format!(
                        "ingest-log record at byte {at} is damaged but a valid record written after it was synced follows at byte {valid}: \
                         this is damage, not a torn write, and dropping it would lose acknowledged rows \
                         (restore the segment from a backup, or cut it at byte {at} to give up the rows from there on)"
                    ),
                ));
            }
            let runs_past_end = match bytes.get(at..at + 8) {
                None => true,
                Some(h) => {
                    let l = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    at + 8 + l > bytes.len()
                }
            };
            return Ok(SegmentRead {
                records,
                end: SegmentEnd::Torn {
                    offset: at as u64,
                    runs_past_end,
                },
                len,
                version,
            });
        };
        let payload = found.payload;
        let table = Table::from_id(payload[1])
            .ok_or_else(|| StoreError::corrupt(path.display(), "unknown table id in record"))?;
        let seq_start = u64_at(payload, 2);
        let rows = u64_at(payload, 10);
        let prefix = if version == 1 { PREFIX_V1 } else { PREFIX_V2 };
        let at_err = |e: &dyn std::fmt::Display| {
            StoreError::corrupt(path.display(), format!("record at byte {at}: IPC: {e}"))
        };
        let reader = StreamReader::try_new(&payload[prefix..], None).map_err(|e| at_err(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| at_err(&e))?;
            if batch.num_rows() as u64 != rows {
                return Err(StoreError::corrupt(
                    path.display(),
                    format!(
                        "record at byte {at} holds {} rows, its header says {rows}",
                        batch.num_rows()
                    ),
                ));
            }
            // A record written before UUIDs were stored as 16 bytes.
            let batch = crate::schema::upgrade_batch(
                table,
                batch,
                &format!("{} (record at byte {at})", path.display()),
            )?;
            records.push(WalRecord {
                table,
                seq_start,
                batch,
            });
        }
        at = found.end;
    }
    Ok(SegmentRead {
        records,
        end: SegmentEnd::Clean,
        len,
        version,
    })
}

/// The ingest log as recovered at open.
#[derive(Debug)]
pub struct Recovered {
    /// Segments with their records, ascending (empty trailing segments
    /// removed, torn tails cut).
    pub segments: Vec<(u64, Vec<WalRecord>)>,
}

/// Recover the ingest log of a writer: read every segment, remove
/// trailing segments whose header was never completed, and cut each torn
/// tail back to the end of its last valid record, durably, before the
/// caller appends anything after it.
///
/// Which torn tails are legal:
/// * in the last segment that holds a record (segments after it with only
///   a header do not count: an open that crashed leaves one), any tail
///   [`read_segment`] calls torn (a crash or a power loss while writing);
/// * in an earlier segment of version 1, only a write that runs past the
///   end of the file (what a recovery of an earlier version left behind
///   when it appended to a new segment without cutting the torn one);
/// * anything else in an earlier segment is damage: a segment is synced
///   whole before the next one is created.
pub fn recover(fs: &dyn FileSystem, dir: &Path) -> Result<Recovered> {
    let mut ids = list_segments(dir)?;
    let mut removed = false;
    // Trailing segments that never got their header hold nothing.
    while let Some(&last) = ids.last() {
        let path = segment_path(dir, last);
        let len = std::fs::metadata(&path)
            .map_err(|e| StoreError::io(path.display(), e))?
            .len();
        if len >= HEADER_LEN {
            break;
        }
        tracing::info!(segment = %path.display(), len, "removing an ingest-log segment whose header was never written");
        fs.remove_file(&path)
            .map_err(|e| StoreError::io(path.display(), e))?;
        removed = true;
        ids.pop();
    }
    if removed {
        crate::storage::sync_dir(fs, dir)?;
    }
    let mut reads = Vec::with_capacity(ids.len());
    for id in ids {
        let path = segment_path(dir, id);
        let read = read_segment(&path)?;
        reads.push((id, path, read));
    }
    let last_with_records = reads
        .iter()
        .rposition(|(_, _, r)| !r.records.is_empty())
        .unwrap_or(0);
    let mut segments = Vec::with_capacity(reads.len());
    for (i, (id, path, read)) in reads.into_iter().enumerate() {
        if let SegmentEnd::Torn {
            offset,
            runs_past_end,
        } = read.end
        {
            let closed = i < last_with_records;
            let legacy_leftover = read.version <= 1 && runs_past_end;
            if closed && !legacy_leftover {
                return Err(StoreError::corrupt(
                    path.display(),
                    format!(
                        "ingest-log record at byte {offset} of a closed segment is damaged: \
                         a closed segment was synced whole before the next one was created \
                         (restore the segment from a backup, or cut it at byte {offset} to give up its rows from there on)"
                    ),
                ));
            }
            if closed {
                tracing::warn!(segment = %path.display(), offset, "cutting a torn tail of a closed ingest-log segment (left by an earlier recovery)");
            } else {
                tracing::info!(segment = %path.display(), offset, dropped = read.len - offset,
                    "cutting the torn tail of the ingest log (writes that were never acknowledged)");
            }
            fs.truncate(&path, offset)
                .map_err(|e| StoreError::io(path.display(), e))?;
        }
        segments.push((id, read.records));
    }
    Ok(Recovered { segments })
}

/// The open log: the segment being written plus group-commit state.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    inner: Mutex<WalFile>,
    sync_lock: Mutex<()>,
    /// Bytes written across all segments since open (a log sequence number).
    synced_lsn: AtomicU64,
    /// Store-wide `_seq` below which every row is durable.
    durable_seq: Arc<AtomicU64>,
}

#[derive(Debug)]
struct WalFile {
    id: u64,
    file: Arc<dyn AppendFile>,
    written_lsn: u64,
    /// `_seq` high-water of what has been written.
    written_seq: u64,
    /// Bytes written to the current segment (its length).
    seg_written: u64,
    /// How far the current segment is durable (its length at the last
    /// completed `fdatasync`): the `synced` field of the next record.
    seg_synced: u64,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("wal lock poisoned".into())
}

impl Wal {
    /// Open a new segment `id` in `dir` for writing.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        id: u64,
        durable_seq: Arc<AtomicU64>,
    ) -> Result<Wal> {
        let file = new_segment(&*fs, dir, id)?;
        let seq = durable_seq.load(Ordering::Acquire);
        Ok(Wal {
            dir: dir.to_path_buf(),
            fs,
            inner: Mutex::new(WalFile {
                id,
                file,
                written_lsn: 0,
                written_seq: seq,
                seg_written: HEADER_LEN,
                seg_synced: HEADER_LEN,
            }),
            sync_lock: Mutex::new(()),
            synced_lsn: AtomicU64::new(0),
            durable_seq,
        })
    }

    /// Append an encoded record; the caller holds the store's sequencing lock
    /// so records are in `_seq` order. Returns the position to pass to `sync_to`.
    pub fn write(&self, record: &mut EncodedRecord, seq_end: u64) -> Result<u64> {
        let mut w = self.inner.lock().map_err(poisoned)?;
        let bytes = record.seal(w.seg_synced);
        w.file
            .write_all(bytes)
            .map_err(|e| StoreError::io(segment_path(&self.dir, w.id).display(), e))?;
        w.written_lsn += bytes.len() as u64;
        w.seg_written += bytes.len() as u64;
        w.written_seq = seq_end;
        Ok(w.written_lsn)
    }

    /// Block until every record up to `lsn` is durable (group commit).
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        if self.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let _g = self.sync_lock.lock().map_err(poisoned)?;
        if self.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let (file, id, target_lsn, target_seq, target_off) = {
            let w = self.inner.lock().map_err(poisoned)?;
            (
                Arc::clone(&w.file),
                w.id,
                w.written_lsn,
                w.written_seq,
                w.seg_written,
            )
        };
        file.sync_data()
            .map_err(|e| StoreError::io(segment_path(&self.dir, id).display(), e))?;
        if let Ok(mut w) = self.inner.lock() {
            if w.id == id {
                w.seg_synced = w.seg_synced.max(target_off);
            }
        }
        self.synced_lsn.fetch_max(target_lsn, Ordering::AcqRel);
        self.durable_seq.fetch_max(target_seq, Ordering::AcqRel);
        Ok(())
    }

    /// Close the current segment (durably) and start segment `new_id`. The
    /// caller holds the sequencing lock, so no write races the switch.
    pub fn rotate(&self, new_id: u64) -> Result<()> {
        let _g = self.sync_lock.lock().map_err(poisoned)?;
        let mut w = self.inner.lock().map_err(poisoned)?;
        w.file
            .sync_data()
            .map_err(|e| StoreError::io(segment_path(&self.dir, w.id).display(), e))?;
        self.synced_lsn.fetch_max(w.written_lsn, Ordering::AcqRel);
        self.durable_seq.fetch_max(w.written_seq, Ordering::AcqRel);
        let file = new_segment(&*self.fs, &self.dir, new_id)?;
        w.id = new_id;
        w.file = file;
        w.seg_written = HEADER_LEN;
        w.seg_synced = HEADER_LEN;
        Ok(())
    }
}

/// Create segment `id` with its header, durably (file and directory
/// entry). A failure removes the partial file, so that no segment without
/// a header is left behind (recovery removes one anyway).
fn new_segment(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<Arc<dyn AppendFile>> {
    let path = segment_path(dir, id);
    let f = fs
        .create_new(&path)
        .map_err(|e| StoreError::io(path.display(), e))?;
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let done = f
        .write_all(&header)
        .and_then(|_| f.sync_data())
        .and_then(|_| fs.sync_dir(dir));
    if let Err(e) = done {
        drop(f);
        let _ = fs.remove_file(&path);
        return Err(StoreError::io(path.display(), e));
    }
    Ok(f)
}
