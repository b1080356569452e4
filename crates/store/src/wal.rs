//! The ingest log: acknowledged appends that are not yet in a part.
//!
//! ```text
//!  append ──► [seq lock] assign _seq, write record ──► group fsync ──► ack
//!                                 │
//!                  wal/00000000000000000007.wal   (one segment per memtable)
//! ```
//!
//! A segment starts with an 12-byte header (`ELIDEWAL`, format version) and
//! holds records `[len u32][crc32 u32][payload]`, payload =
//! `[kind u8 = 1][table u8][seq_start u64][rows u64][Arrow IPC stream]`.
//!
//! **Group commit.** Writers append records under the store's sequencing
//! lock (so log order is `_seq` order) and then call [`Wal::sync_to`] with the
//! log position of their record; one `fdatasync` covers every record written
//! before it started, and the others return without syncing again.
//!
//! **Recovery.** [`read_segment`] stops at the first record that is torn or
//! fails its checksum: a crash can only tear the tail of the segment being
//! written, and everything before that point was acknowledged or not at all.
//! Segments are removed (by GC) once a committed manifest's `flushed_seq`
//! covers all their rows, so that no copy of a deleted row lingers here.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StoreError};
use crate::schema::Table;

const SEGMENT_MAGIC: &[u8; 8] = b"ELIDEWAL";
const SEGMENT_VERSION: u32 = 1;
const HEADER_LEN: u64 = 12;
const KIND_APPEND: u8 = 1;
/// Upper bound of one record, a guard against garbage lengths.
const MAX_RECORD: u32 = 1 << 31;

/// Path of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Segment ids present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
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

/// Encode a record (header + payload).
pub fn encode_record(table: Table, seq_start: u64, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(batch.get_array_memory_size() / 2 + 64);
    payload.push(KIND_APPEND);
    payload.push(table.id());
    payload.extend_from_slice(&seq_start.to_le_bytes());
    payload.extend_from_slice(&(batch.num_rows() as u64).to_le_bytes());
    {
        let mut w = StreamWriter::try_new(&mut payload, batch.schema_ref())?;
        w.write(batch)?;
        w.finish()?;
    }
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l < MAX_RECORD)
        .ok_or_else(|| StoreError::InvalidInput("batch too large for one log record".into()))?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Read every intact record of a segment. Returns the records and whether
/// the segment ended cleanly (false: a torn or corrupt tail was ignored).
pub fn read_segment(path: &Path) -> Result<(Vec<WalRecord>, bool)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(path.display(), e))?;
    if bytes.len() < HEADER_LEN as usize {
        // A crash right after creating the segment: nothing was acknowledged in it.
        return Ok((Vec::new(), bytes.is_empty()));
    }
    if &bytes[0..8] != SEGMENT_MAGIC {
        return Err(StoreError::corrupt(path.display(), "bad ingest-log magic"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != SEGMENT_VERSION {
        return Err(StoreError::corrupt(
            path.display(),
            format!("unsupported ingest-log version {version}"),
        ));
    }
    let mut at = HEADER_LEN as usize;
    let mut out = Vec::new();
    while at < bytes.len() {
        if bytes.len() - at < 8 {
            return Ok((out, false));
        }
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let start = at + 8;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|&e| e <= bytes.len())
        else {
            return Ok((out, false));
        };
        let payload = &bytes[start..end];
        if crc32fast::hash(payload) != crc || payload.len() < 18 || payload[0] != KIND_APPEND {
            return Ok((out, false));
        }
        let table = Table::from_id(payload[1])
            .ok_or_else(|| StoreError::corrupt(path.display(), "unknown table id in record"))?;
        let mut u = [0u8; 8];
        u.copy_from_slice(&payload[2..10]);
        let seq_start = u64::from_le_bytes(u);
        u.copy_from_slice(&payload[10..18]);
        let rows = u64::from_le_bytes(u);
        let reader = StreamReader::try_new(&payload[18..], None)
            .map_err(|e| StoreError::corrupt(path.display(), format!("record IPC: {e}")))?;
        for batch in reader {
            let batch = batch
                .map_err(|e| StoreError::corrupt(path.display(), format!("record IPC: {e}")))?;
            if batch.schema() != table.def().schema() || batch.num_rows() as u64 != rows {
                return Err(StoreError::corrupt(
                    path.display(),
                    "record does not match the table schema",
                ));
            }
            out.push(WalRecord {
                table,
                seq_start,
                batch,
            });
        }
        at = end;
    }
    Ok((out, true))
}

/// The open log: the segment being written plus group-commit state.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
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
    file: Arc<File>,
    written_lsn: u64,
    /// `_seq` high-water of what has been written.
    written_seq: u64,
}

impl Wal {
    /// Open a new segment `id` in `dir` for writing.
    pub fn create(dir: &Path, id: u64, durable_seq: Arc<AtomicU64>) -> Result<Wal> {
        let file = new_segment(dir, id)?;
        let seq = durable_seq.load(Ordering::Acquire);
        Ok(Wal {
            dir: dir.to_path_buf(),
            inner: Mutex::new(WalFile {
                id,
                file: Arc::new(file),
                written_lsn: 0,
                written_seq: seq,
            }),
            sync_lock: Mutex::new(()),
            synced_lsn: AtomicU64::new(0),
            durable_seq,
        })
    }

    /// The segment currently written.
    pub fn current_segment(&self) -> u64 {
        self.inner.lock().map(|w| w.id).unwrap_or(0)
    }

    /// Append an encoded record; the caller holds the store's sequencing lock
    /// so records are in `_seq` order. Returns the position to pass to `sync_to`.
    pub fn write(&self, record: &[u8], seq_end: u64) -> Result<u64> {
        let mut w = self
            .inner
            .lock()
            .map_err(|_| StoreError::Internal("wal lock poisoned".into()))?;
        (&*w.file)
            .write_all(record)
            .map_err(|e| StoreError::io(segment_path(&self.dir, w.id).display(), e))?;
        w.written_lsn += record.len() as u64;
        w.written_seq = seq_end;
        Ok(w.written_lsn)
    }

    /// Block until every record up to `lsn` is durable (group commit).
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        if self.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let _g = self
            .sync_lock
            .lock()
            .map_err(|_| StoreError::Internal("wal sync lock poisoned".into()))?;
        if self.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let (file, id, target_lsn, target_seq) = {
            let w = self
                .inner
                .lock()
                .map_err(|_| StoreError::Internal("wal lock poisoned".into()))?;
            (Arc::clone(&w.file), w.id, w.written_lsn, w.written_seq)
        };
        file.sync_data()
            .map_err(|e| StoreError::io(segment_path(&self.dir, id).display(), e))?;
        self.synced_lsn.fetch_max(target_lsn, Ordering::AcqRel);
        self.durable_seq.fetch_max(target_seq, Ordering::AcqRel);
        Ok(())
    }

    /// Close the current segment (durably) and start segment `new_id`. The
    /// caller holds the sequencing lock, so no write races the switch.
    pub fn rotate(&self, new_id: u64) -> Result<()> {
        let _g = self
            .sync_lock
            .lock()
            .map_err(|_| StoreError::Internal("wal sync lock poisoned".into()))?;
        let mut w = self
            .inner
            .lock()
            .map_err(|_| StoreError::Internal("wal lock poisoned".into()))?;
        w.file
            .sync_data()
            .map_err(|e| StoreError::io(segment_path(&self.dir, w.id).display(), e))?;
        self.synced_lsn.fetch_max(w.written_lsn, Ordering::AcqRel);
        self.durable_seq.fetch_max(w.written_seq, Ordering::AcqRel);
        let file = new_segment(&self.dir, new_id)?;
        w.id = new_id;
        w.file = Arc::new(file);
        Ok(())
    }
}

fn new_segment(dir: &Path, id: u64) -> Result<File> {
    let path = segment_path(dir, id);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(path.display(), e))?;
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    f.write_all(&header)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(path.display(), e))?;
    crate::storage::sync_dir(dir)?;
    Ok(f)
}
