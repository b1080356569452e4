//! A part's distinct-id runs, persisted next to it: the `.runs` file.
//!
//! A deletion resolves a distinct id to its run in each part (parts are
//! sorted by (`distinct_id`, `_seq`), so an id is one run per part; see
//! [`crate::part`]). The in-memory [`crate::index::DistinctIdIndex`] holds
//! every run, and building it at open reads every part. The `.runs` file
//! lets a deletion find its runs without that index, in a few small reads:
//! it is written with its part, immutable, committed in the same manifest
//! entry ([`RunsRef`]) and removed with the part.
//!
//! Layout (little-endian), two regions:
//!
//! - **blocks** (`0..head_at`): the runs sorted by distinct id (bytes),
//!   [`BLOCK_RUNS`] per block; a run is, in LEB128 varints: the bytes its
//!   id shares with the previous id of the block, the length of the rest,
//!   then the rest; its first row minus the previous run's end (zigzag;
//!   the block's first run stores its first row); its length;
//!   its smallest `_seq` minus the head's base; its largest minus its
//!   smallest.
//! - **head** (`head_at..size`): the magic [`MAGIC`], `u32` block count,
//!   `u32` bloom filter length, `u64` run count, `u64` base `_seq` (the
//!   smallest); per block its fence (`u32`
//!   offset, `u32` length, `u32` CRC-32 of the block, `u32` length and bytes
//!   of its first id); then a split-block bloom filter of every id (1%
//!   false positives; parquet's `Sbbf`, the filter the parts carry).
//!
//! Invariants: the manifest entry holds the head's CRC-32, and the head
//! holds each block's, so every byte used is checked before it is trusted;
//! a file that fails a check is an error (the caller falls back to the
//! part's own columns, never to "no rows"). Looking an id up costs one read
//! of the head and one read per group of nearby blocks whose fences
//! may hold it, only in parts whose filter says "maybe".

use bytes::Bytes;
use parquet::bloom_filter::Sbbf;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::format::PartMeta;
use crate::part::{PartPostings, Run};
use crate::storage::Storage;

/// First bytes of a head.
pub const MAGIC: &[u8; 8] = b"ELIDRUN1";
/// Runs per block.
pub const BLOCK_RUNS: usize = 128;
/// Bloom filter false-positive rate.
const FPP: f64 = 0.01;

/// A part's `.runs` file, as its manifest entry records it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunsRef {
    /// File size in bytes.
    pub size: u64,
    /// Where the head starts (the blocks end).
    pub head_at: u64,
    /// CRC-32 of the head (`head_at..size`).
    pub head_crc32: u32,
    /// Runs in the file (distinct ids in the part).
    pub runs: u64,
}

/// The path of a part's `.runs` file: its parquet path with `.runs` for
/// `.parquet`.
pub fn runs_path(part_path: &str) -> String {
    match part_path.strip_suffix(".parquet") {
        Some(base) => format!("{base}.runs"),
        None => format!("{part_path}.runs"),
    }
}

/// Encode `runs` (any order; ids need not be unique) as a `.runs` file.
pub(crate) fn encode(runs: &[Run]) -> (Vec<u8>, RunsRef) {
    let mut sorted: Vec<&Run> = runs.iter().collect();
    sorted.sort_by(|a, b| a.distinct_id.as_bytes().cmp(b.distinct_id.as_bytes()));
    let base_seq = sorted.iter().map(|r| r.min_seq).min().unwrap_or(0);
    let mut out = Vec::new();
    let mut fences: Vec<(u32, u32, u32, &str)> = Vec::new();
    for block in sorted.chunks(BLOCK_RUNS) {
        let at = out.len();
        let (mut prev_id, mut prev_end): (&[u8], i64) = (&[], 0);
        for r in block {
            let id = r.distinct_id.as_bytes();
            let shared = id.iter().zip(prev_id).take_while(|(a, b)| a == b).count();
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (id.len() - shared) as u64);
            out.extend_from_slice(&id[shared..]);
            put_varint(&mut out, zigzag(i64::from(r.start) - prev_end));
            put_varint(&mut out, u64::from(r.len));
            put_varint(&mut out, r.min_seq.wrapping_sub(base_seq));
            put_varint(&mut out, r.max_seq.wrapping_sub(r.min_seq));
            (prev_id, prev_end) = (id, i64::from(r.start) + i64::from(r.len));
        }
        let bytes = &out[at..];
        let first = block.first().map_or("", |r| r.distinct_id.as_str());
        fences.push((at as u32, bytes.len() as u32, crc32fast::hash(bytes), first));
    }
    let head_at = out.len();
    let mut bloom = Sbbf::new_with_ndv_fpp(sorted.len().max(1) as u64, FPP)
        .unwrap_or_else(|_| Sbbf::new_with_num_of_bytes(32));
    for r in &sorted {
        bloom.insert(r.distinct_id.as_bytes());
    }
    let mut bits = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = bloom.write_bitset(&mut bits);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(fences.len() as u32).to_le_bytes());
    out.extend_from_slice(&(bits.len() as u32).to_le_bytes());
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&base_seq.to_le_bytes());
    for (at, len, crc, first) in &fences {
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(first.len() as u32).to_le_bytes());
        out.extend_from_slice(first.as_bytes());
    }
    out.extend_from_slice(&bits);
    let r = RunsRef {
        size: out.len() as u64,
        head_at: head_at as u64,
        head_crc32: crc32fast::hash(&out[head_at..]),
        runs: sorted.len() as u64,
    };
    (out, r)
}

/// Write a part's `.runs` file (not synced: it is synced with the part).
pub(crate) fn write(storage: &Storage, part_path: &str, runs: &[Run]) -> Result<RunsRef> {
    let (bytes, r) = encode(runs);
    storage.put_new_nosync(&runs_path(part_path), Bytes::from(bytes))?;
    Ok(r)
}

/// One block's place in the blocks region.
#[derive(Debug, Clone)]
struct Fence {
    at: u32,
    len: u32,
    crc32: u32,
    first: Box<[u8]>,
}

/// A `.runs` file's head: where the blocks are and which ids the part
/// may hold.
#[derive(Debug, Clone)]
pub(crate) struct RunsHead {
    fences: Vec<Fence>,
    bloom: Sbbf,
    /// The smallest `_seq` of the part's runs (blocks store offsets).
    base_seq: u64,
}

/// A little-endian reader over a checked slice; `None` past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// LEB128, at most 10 bytes.
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f).checked_shl(7 * i)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

fn corrupt(part: &PartMeta, reason: impl Into<String>) -> StoreError {
    StoreError::corrupt(runs_path(&part.path), reason)
}

/// The part's `.runs` entry, or an error if it has none.
fn entry(part: &PartMeta) -> Result<RunsRef> {
    part.runs
        .ok_or_else(|| StoreError::Internal(format!("{} has no .runs file", part.path)))
}

fn decode_head(part: &PartMeta, r: &RunsRef, head: &[u8]) -> Result<RunsHead> {
    if crc32fast::hash(head) != r.head_crc32 {
        return Err(corrupt(part, "head checksum mismatch"));
    }
    let bad = || corrupt(part, "malformed head");
    let mut c = Cursor(head);
    if c.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err(corrupt(part, "bad magic"));
    }
    let blocks = c.u32().ok_or_else(bad)? as usize;
    let bloom_len = c.u32().ok_or_else(bad)? as usize;
    let runs = c.u64().ok_or_else(bad)?;
    let base_seq = c.u64().ok_or_else(bad)?;
    if runs != r.runs || blocks != (runs as usize).div_ceil(BLOCK_RUNS) {
        return Err(corrupt(part, "run count does not match the manifest"));
    }
    let mut fences = Vec::with_capacity(blocks);
    let mut end = 0u64;
    for _ in 0..blocks {
        let at = c.u32().ok_or_else(bad)?;
        let len = c.u32().ok_or_else(bad)?;
        let crc32 = c.u32().ok_or_else(bad)?;
        let n = c.u32().ok_or_else(bad)? as usize;
        let first = c.take(n).ok_or_else(bad)?.into();
        if u64::from(at) != end {
            return Err(corrupt(part, "blocks are not contiguous"));
        }
        end = u64::from(at) + u64::from(len);
        fences.push(Fence {
            at,
            len,
            crc32,
            first,
        });
    }
    if end != r.head_at {
        return Err(corrupt(part, "blocks do not end where the head starts"));
    }
    // parquet's filter is made of 32-byte blocks (and indexes block 0).
    if bloom_len == 0 || !bloom_len.is_multiple_of(32) {
        return Err(corrupt(part, "malformed bloom filter"));
    }
    let bits = c.take(bloom_len).ok_or_else(bad)?;
    if !c.0.is_empty() {
        return Err(bad());
    }
    Ok(RunsHead {
        fences,
        bloom: Sbbf::new(bits),
        base_seq,
    })
}

/// Check a block and call `f` with each run's id (bytes) and the run
/// (its `distinct_id` left empty: ids are built only for the runs kept).
fn for_each_run(
    part: &PartMeta,
    head: &RunsHead,
    fence: &Fence,
    bytes: &[u8],
    mut f: impl FnMut(&[u8], Run) -> Result<()>,
) -> Result<()> {
    if crc32fast::hash(bytes) != fence.crc32 {
        return Err(corrupt(
            part,
            format!("block at {} checksum mismatch", fence.at),
        ));
    }
    let bad = || corrupt(part, format!("malformed block at {}", fence.at));
    let mut c = Cursor(bytes);
    let mut prev_end = 0i64;
    let mut id: Vec<u8> = Vec::new();
    let mut first = true;
    while !c.0.is_empty() {
        let shared = c.varint().ok_or_else(bad)? as usize;
        let rest = c.varint().ok_or_else(bad)? as usize;
        if shared > id.len() || (first && shared > 0) {
            return Err(bad());
        }
        first = false;
        id.truncate(shared);
        id.extend_from_slice(c.take(rest).ok_or_else(bad)?);
        let start = prev_end
            .checked_add(unzigzag(c.varint().ok_or_else(bad)?))
            .ok_or_else(bad)?;
        let len = c.varint().ok_or_else(bad)?;
        let min_seq = head
            .base_seq
            .checked_add(c.varint().ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let max_seq = min_seq
            .checked_add(c.varint().ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(len)) else {
            return Err(corrupt(part, "a run outside the part"));
        };
        if u64::from(start) + u64::from(len) > part.rows || len == 0 {
            return Err(corrupt(part, "a run outside the part"));
        }
        prev_end = i64::from(start) + i64::from(len);
        f(
            &id,
            Run {
                distinct_id: String::new(),
                start,
                len,
                min_seq,
                max_seq,
            },
        )?;
    }
    Ok(())
}

/// Every run of a block, ids included.
fn decode_block(part: &PartMeta, head: &RunsHead, fence: &Fence, bytes: &[u8]) -> Result<Vec<Run>> {
    let mut out = Vec::with_capacity(BLOCK_RUNS);
    for_each_run(part, head, fence, bytes, |id, mut run| {
        run.distinct_id = std::str::from_utf8(id)
            .map_err(|_| {
                corrupt(
                    part,
                    format!("an id that is not UTF-8 in block at {}", fence.at),
                )
            })?
            .to_string();
        out.push(run);
        Ok(())
    })?;
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Read and check a part's head.
pub(crate) fn read_head(storage: &Storage, part: &PartMeta) -> Result<RunsHead> {
    let r = entry(part)?;
    if r.head_at > r.size {
        return Err(corrupt(part, "head beyond the end"));
    }
    let head = storage.get_range(&runs_path(&part.path), r.head_at..r.size)?;
    decode_head(part, &r, &head)
}

impl RunsHead {
    /// Whether the part may hold `id` (false: it certainly does not).
    pub fn may_hold(&self, id: &str) -> bool {
        self.bloom.check(id.as_bytes())
    }

    /// Indices of the blocks that may hold `id`.
    fn blocks_for(&self, id: &str) -> std::ops::Range<usize> {
        let id = id.as_bytes();
        // The last block starting before `id`, and every block starting
        // with it (only duplicates can continue a run across blocks).
        let lo = self.fences.partition_point(|f| &*f.first < id);
        let hi = self.fences.partition_point(|f| &*f.first <= id);
        lo.saturating_sub(1)..hi
    }
}

/// The runs of `ids` in one part, through its head (`head`) and the
/// blocks that may hold them; each block is read once.
pub(crate) fn lookup(
    storage: &Storage,
    part: &PartMeta,
    head: &RunsHead,
    ids: &[&str],
) -> Result<Vec<Run>> {
    let path = runs_path(&part.path);
    let mut wanted: std::collections::BTreeMap<usize, Vec<&str>> = Default::default();
    for id in ids {
        if head.may_hold(id) {
            for b in head.blocks_for(id) {
                wanted.entry(b).or_default().push(id);
            }
        }
    }
    // Blocks at most `GAP` apart are read together (a large batch of ids
    // wants most blocks: one read instead of one per block).
    const GAP: usize = 4;
    let mut groups: Vec<Vec<(usize, Vec<&str>)>> = Vec::new();
    for (b, ids) in wanted {
        match groups.last_mut() {
            Some(g) if g.last().is_some_and(|(last, _)| b <= last + GAP) => g.push((b, ids)),
            _ => groups.push(vec![(b, ids)]),
        }
    }
    let mut out = Vec::new();
    for g in groups {
        let (Some(first), Some(last)) = (
            g.first().and_then(|(b, _)| head.fences.get(*b)),
            g.last().and_then(|(b, _)| head.fences.get(*b)),
        ) else {
            continue;
        };
        let from = u64::from(first.at);
        let bytes = storage.get_range(&path, from..u64::from(last.at) + u64::from(last.len))?;
        for (b, ids) in g {
            let Some(f) = head.fences.get(b) else {
                continue;
            };
            let at = (u64::from(f.at) - from) as usize;
            let block = bytes
                .get(at..at + f.len as usize)
                .ok_or_else(|| corrupt(part, "block beyond the read"))?;
            for_each_run(part, head, f, block, |id, mut run| {
                if let Some(hit) = ids.iter().find(|w| w.as_bytes() == id) {
                    run.distinct_id = (*hit).to_string();
                    out.push(run);
                }
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// Every run of a part, from its `.runs` file (each byte checked).
pub(crate) fn read_all(storage: &Storage, part: &PartMeta) -> Result<PartPostings> {
    let r = entry(part)?;
    let all = storage.get(&runs_path(&part.path))?;
    if all.len() as u64 != r.size || r.head_at > r.size {
        return Err(corrupt(part, "size does not match the manifest"));
    }
    let head = decode_head(part, &r, &all[r.head_at as usize..])?;
    let mut runs = Vec::with_capacity(r.runs as usize);
    for f in &head.fences {
        let bytes = all
            .get(f.at as usize..f.at as usize + f.len as usize)
            .ok_or_else(|| corrupt(part, "block beyond the head"))?;
        runs.extend(decode_block(part, &head, f, bytes)?);
    }
    Ok(PartPostings { runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, start: u32) -> Run {
        Run {
            distinct_id: id.into(),
            start,
            len: 2,
            min_seq: u64::from(start),
            max_seq: u64::from(start) + 1,
        }
    }

    /// Write `runs` as the `.runs` file of a part of `rows` rows.
    fn stored(storage: &Storage, rows: u64, runs: &[Run]) -> PartMeta {
        let path = "parts/events/1/1970-01-01/0000000000000001.parquet";
        let r = write(storage, path, runs).unwrap();
        part(rows, path, r)
    }

    fn part(rows: u64, path: &str, r: RunsRef) -> PartMeta {
        PartMeta {
            id: 1,
            table: crate::schema::Table::Events,
            project_id: 1,
            day: 0,
            last_day: None,
            path: path.into(),
            size: 0,
            rows,
            row_groups: vec![rows],
            min_seq: 0,
            max_seq: 0,
            min_ts: 0,
            max_ts: 0,
            tombstone: None,
            checksum: None,
            blake3: None,
            runs: Some(r),
        }
    }

    #[test]
    fn every_run_is_found_and_absent_ids_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path(), Arc::new(crate::io::StdFs)).unwrap();
        // 1000 ids in a shuffled order and the empty id: "" and id-0000 to
        // id-0126 fill block 0, so a second run of id-0126 starts block 1.
        let mut runs: Vec<Run> = (0..1000u32)
            .map(|i| run(&format!("id-{:04}", (i * 7919) % 1000), i * 2))
            .collect();
        runs.push(run("id-0126", 2000));
        runs.push(run("", 2002));
        let p = stored(&storage, 3000, &runs);
        let head = read_head(&storage, &p).unwrap();
        for want in &runs {
            let got = lookup(&storage, &p, &head, &[&want.distinct_id]).unwrap();
            assert!(
                got.iter().any(|g| g == want),
                "{} not found",
                want.distinct_id
            );
            assert!(got.iter().all(|g| g.distinct_id == want.distinct_id));
        }
        assert_eq!(head.fences.len(), 8);
        assert_eq!(&*head.fences[1].first, b"id-0126");
        assert_eq!(
            lookup(&storage, &p, &head, &["id-0126"]).unwrap().len(),
            2,
            "both runs of an id duplicated across a block edge"
        );
        // Ids in blocks 0, 3 and 7: read in two groups, block 1-2 and 4-6
        // skipped or read between them, every run found once.
        let mut got: Vec<String> = lookup(&storage, &p, &head, &["id-0990", "id-0005", "id-0450"])
            .unwrap()
            .into_iter()
            .map(|r| r.distinct_id)
            .collect();
        got.sort();
        assert_eq!(got, ["id-0005", "id-0450", "id-0990"]);
        assert!(lookup(&storage, &p, &head, &["nobody", "id-10000"])
            .unwrap()
            .is_empty());
        let mut all = read_all(&storage, &p).unwrap().runs;
        let mut want = runs.clone();
        all.sort_by_key(|r| r.start);
        want.sort_by_key(|r| r.start);
        assert_eq!(all, want);
    }

    #[test]
    fn any_changed_byte_is_an_error_not_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path(), Arc::new(crate::io::StdFs)).unwrap();
        let runs: Vec<Run> = (0..300u32)
            .map(|i| run(&format!("u{i:03}"), i * 2))
            .collect();
        let p = stored(&storage, 600, &runs);
        let file = dir.path().join(runs_path(&p.path));
        let good = std::fs::read(&file).unwrap();
        for at in (0..good.len()).step_by(37) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&file, &bad).unwrap();
            let found = read_head(&storage, &p)
                .and_then(|h| lookup(&storage, &p, &h, &["u000", "u150", "u299"]));
            match found {
                Err(StoreError::Corrupt { .. }) => {}
                Ok(runs) => assert_eq!(runs.len(), 3, "byte {at}: a changed byte lost a run"),
                Err(e) => panic!("byte {at}: {e}"),
            }
            assert!(matches!(
                read_all(&storage, &p),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    use std::sync::Arc;
}
