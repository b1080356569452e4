//! Checksums of part files, and reading parts with every byte checked.
//!
//! Parquet has page checksums, but the writer this crate uses does not
//! write them, so Elide checks parts itself (see [`PartChecksum`]):
//!
//! ```text
//!  0 ────────────── data region ─────────────── data_len ──── tail ──── size
//!  | PAR1 | row groups' pages ...              | page indexes | footer |
//!  |<- 64 KiB ->|<- 64 KiB ->| ... |<- rest ->|
//!   CRC-32 per block, listed in the footer      CRC-32 of the tail, in the
//!   (key-value metadata BLOCKS_KEY)              manifest's part entry
//! ```
//!
//! A reader verifies the tail against the manifest before it trusts the
//! footer (and the block list in it), and every block it reads against the
//! list. A flipped bit anywhere in the file is an error naming the file and
//! the offset, never a changed value. Readers fetch whole blocks, so a read
//! of a few bytes costs up to two blocks more.
//!
//! [`VerifiedPart`] is the store's reader (flush-time index, deletion
//! resolution, compaction, verification scans, scrub); the query layer
//! applies the same checks to the byte ranges DataFusion fetches.

use std::io::Cursor;
use std::ops::Range;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Result, StoreError};
use crate::format::{PartChecksum, PartMeta};
use crate::storage::Storage;

/// Key of the block list in a part's footer key-value metadata.
pub const BLOCKS_KEY: &str = "elide.block_crc32";
/// Bytes per checksummed block of the data region.
pub const BLOCK: u64 = 64 << 10;

/// The CRC-32 of each [`BLOCK`] of `data` (the last one may be short).
pub fn block_crcs(data: &[u8]) -> Vec<u32> {
    data.chunks(BLOCK as usize).map(crc32fast::hash).collect()
}

/// The footer value of a block list: `1;<block size>;<hex CRCs>`.
pub fn encode_blocks(crcs: &[u32]) -> String {
    let mut s = format!("1;{BLOCK};");
    s.reserve(crcs.len() * 8);
    for c in crcs {
        s.push_str(&format!("{c:08x}"));
    }
    s
}

/// The block list of a part: CRC-32s of consecutive [`BLOCK`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockList {
    /// Length of the data region they cover.
    pub data_len: u64,
    /// One CRC per block.
    pub crcs: Vec<u32>,
}

impl BlockList {
    /// Parse a footer value; `None` if malformed or not covering `data_len`.
    pub fn decode(value: &str, data_len: u64) -> Option<BlockList> {
        let mut it = value.splitn(3, ';');
        if it.next()? != "1" || it.next()?.parse::<u64>().ok()? != BLOCK {
            return None;
        }
        let hex = it.next()?;
        if hex.len() % 8 != 0 {
            return None;
        }
        let crcs: Vec<u32> = (0..hex.len() / 8)
            .map(|i| u32::from_str_radix(hex.get(8 * i..8 * i + 8)?, 16).ok())
            .collect::<Option<_>>()?;
        (crcs.len() as u64 == data_len.div_ceil(BLOCK)).then_some(BlockList { data_len, crcs })
    }

    /// The block-aligned range to read to check `range` (clipped to the
    /// data region).
    pub fn aligned(&self, range: &Range<u64>) -> Range<u64> {
        let start = range.start / BLOCK * BLOCK;
        let end = range
            .end
            .div_ceil(BLOCK)
            .saturating_mul(BLOCK)
            .min(self.data_len);
        start..end.max(start)
    }

    /// Check `bytes`, read for the block-aligned `range` (from
    /// [`BlockList::aligned`]), block by block. `Err` names the first bad
    /// block's offset.
    pub fn verify(&self, range: &Range<u64>, bytes: &[u8]) -> std::result::Result<(), String> {
        let start = range.start;
        if !start.is_multiple_of(BLOCK) {
            return Err(format!("unaligned read at byte {start}"));
        }
        if bytes.len() as u64 != range.end.saturating_sub(start) {
            return Err(format!(
                "read {} bytes of {start}..{}: the file is shorter than its checksums say",
                bytes.len(),
                range.end
            ));
        }
        let first = (start / BLOCK) as usize;
        for (i, block) in bytes.chunks(BLOCK as usize).enumerate() {
            let at = start + i as u64 * BLOCK;
            let full = (self.data_len - at).min(BLOCK) as usize;
            let expected = self.crcs.get(first + i).copied();
            if block.len() != full || expected != Some(crc32fast::hash(block)) {
                return Err(format!(
                    "checksum mismatch in bytes {at}..{} (block {})",
                    at + full as u64,
                    first + i
                ));
            }
        }
        Ok(())
    }
}

/// The block list from a part's footer, checked against its manifest entry.
pub fn blocks_of(
    md: &parquet::file::metadata::ParquetMetaData,
    sum: &PartChecksum,
) -> Option<BlockList> {
    md.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == BLOCKS_KEY)?
        .value
        .as_deref()
        .and_then(|v| BlockList::decode(v, sum.data_len))
}

/// Check a part's footer region (`tail`, read from `sum.data_len` to the
/// end of a `size`-byte file) against the manifest. `Err` says what is
/// wrong.
pub fn check_tail(sum: &PartChecksum, size: u64, tail: &[u8]) -> std::result::Result<(), String> {
    if sum.data_len > size {
        return Err("checksum region past the end of the file".into());
    }
    if tail.len() as u64 != size - sum.data_len {
        return Err(format!(
            "the file is not {size} bytes long as the manifest says"
        ));
    }
    if crc32fast::hash(tail) != sum.tail_crc32 {
        return Err(format!(
            "checksum mismatch in the footer region (bytes {}..{size})",
            sum.data_len
        ));
    }
    Ok(())
}

/// The block list in a verified footer region (see [`check_tail`]):
/// decodes the footer at its end and reads [`BLOCKS_KEY`].
pub fn blocks_in_tail(sum: &PartChecksum, tail: &[u8]) -> std::result::Result<BlockList, String> {
    let n = tail.len();
    if n < 8 || &tail[n - 4..] != b"PAR1" {
        return Err("the footer region does not end in a parquet footer".into());
    }
    let len = u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as usize;
    let start = (n - 8)
        .checked_sub(len)
        .ok_or("the footer length runs past the footer region")?;
    let md = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&tail[start..n - 8])
        .map_err(|e| format!("footer: {e}"))?;
    blocks_of(&md, sum).ok_or_else(|| "the footer has no valid block checksum list".into())
}

fn corrupt(part: &PartMeta, reason: impl Into<String>) -> StoreError {
    StoreError::corrupt(&part.path, reason.into())
}

/// Where a part's bytes come from.
enum Source {
    /// The local file (read on demand).
    File(std::fs::File),
    /// The whole object, fetched from an object store.
    Bytes(Bytes),
}

/// A part file read through its checksums. Bytes are read when the
/// parquet reader asks for them, each read widened to whole blocks and
/// verified; the footer region is verified once, at open. Parts without
/// checksums (written before them) are read as they are.
pub(crate) struct VerifiedPart {
    source: Source,
    path: String,
    len: u64,
    /// `None`: a part without checksums.
    blocks: Option<BlockList>,
    /// The verified footer region and where it starts.
    tail: Option<(u64, Bytes)>,
    /// Byte ranges of the column chunks, sorted: a streaming read
    /// (`get_read`) from an offset reads to the end of its chunk.
    chunks: Vec<Range<u64>>,
}

impl VerifiedPart {
    /// Only the footer of `part` (verified against the manifest).
    pub fn footer(
        storage: &Storage,
        part: &PartMeta,
    ) -> Result<parquet::arrow::arrow_reader::ArrowReaderMetadata> {
        VerifiedPart::open(storage, part, Some(&[])).map(|(_, md, _)| md)
    }

    /// Open `part` for reading the named top-level `columns` (`None` =
    /// all): its footer region is read and verified now, the pages later,
    /// as the reader asks for them. Returns the reader, its metadata (with
    /// the page index, so that pages are fetched one by one) and the
    /// indices of the columns.
    pub fn open(
        storage: &Storage,
        part: &PartMeta,
        columns: Option<&[&str]>,
    ) -> Result<(
        VerifiedPart,
        parquet::arrow::arrow_reader::ArrowReaderMetadata,
        Vec<usize>,
    )> {
        let perr = |e: ParquetError| StoreError::Parquet {
            path: part.path.clone(),
            source: e,
        };
        let source = match storage.local_root() {
            Some(root) => Source::File(
                std::fs::File::open(root.join(&part.path))
                    .map_err(|e| StoreError::io(&part.path, e))?,
            ),
            None => Source::Bytes(storage.get(&part.path)?),
        };
        let mut file = VerifiedPart {
            source,
            path: part.path.clone(),
            len: part.size,
            blocks: None,
            tail: None,
            chunks: Vec::new(),
        };
        if let Some(sum) = &part.checksum {
            let tail = file
                .read_raw(sum.data_len..part.size.max(sum.data_len))
                .map_err(|e| corrupt(part, e))?;
            check_tail(sum, part.size, &tail).map_err(|e| corrupt(part, e))?;
            file.tail = Some((sum.data_len, tail));
        }
        // The offset index lets the reader fetch pages one by one.
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
        let md = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, options)
            .map_err(perr)?;
        if let Some(sum) = &part.checksum {
            file.blocks = Some(
                blocks_of(md.metadata(), sum)
                    .ok_or_else(|| corrupt(part, "the footer has no valid block checksum list"))?,
            );
        }
        let indices = column_indices(part, &md, columns)?;
        file.chunks = md
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns().iter())
            .map(|c| {
                let (start, len) = c.byte_range();
                start..start + len
            })
            .collect();
        file.chunks.sort_by_key(|r| r.start);
        Ok((file, md, indices))
    }

    /// Bytes `range` of the file, unchecked.
    fn read_raw(&self, range: Range<u64>) -> std::result::Result<Bytes, String> {
        let n = (range.end - range.start) as usize;
        match &self.source {
            Source::File(f) => {
                let mut buf = vec![0u8; n];
                read_exact_at(f, &mut buf, range.start).map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        format!("the file is shorter than the manifest's {} bytes", self.len)
                    }
                    _ => format!("reading bytes {}..{}: {e}", range.start, range.end),
                })?;
                Ok(Bytes::from(buf))
            }
            Source::Bytes(b) => {
                let end = range.end as usize;
                if end > b.len() {
                    return Err(format!(
                        "the object is shorter than the manifest's {} bytes",
                        self.len
                    ));
                }
                Ok(b.slice(range.start as usize..end))
            }
        }
    }

    /// Bytes `range`, checked: from the verified footer region, or read
    /// by whole blocks and verified.
    fn read_checked(&self, range: Range<u64>) -> parquet::errors::Result<Bytes> {
        let err = |e: String| ParquetError::General(format!("part {} is corrupt: {e}", self.path));
        if let Some((at, tail)) = &self.tail {
            if range.start >= *at {
                let from = (range.start - at) as usize;
                let to = (range.end - at) as usize;
                return tail
                    .get(from..to)
                    .map(|_| tail.slice(from..to))
                    .ok_or_else(|| err(format!("read past the end at byte {}", range.end)));
            }
        }
        let Some(blocks) = &self.blocks else {
            return self.read_raw(range).map_err(err);
        };
        if range.end > blocks.data_len {
            return Err(err(format!(
                "a read of bytes {}..{} crosses the footer region",
                range.start, range.end
            )));
        }
        let aligned = blocks.aligned(&range);
        let bytes = self.read_raw(aligned.clone()).map_err(err)?;
        blocks.verify(&aligned, &bytes).map_err(err)?;
        let from = (range.start - aligned.start) as usize;
        Ok(bytes.slice(from..from + (range.end - range.start) as usize))
    }
}

#[cfg(unix)]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

#[cfg(not(unix))]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(buf)
}

/// Top-level indices of `columns` (`None` = all) in a part's schema.
fn column_indices(
    part: &PartMeta,
    md: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    columns: Option<&[&str]>,
) -> Result<Vec<usize>> {
    let schema = md.schema();
    match columns {
        None => Ok((0..schema.fields().len()).collect()),
        Some(cols) => cols
            .iter()
            .map(|c| {
                schema
                    .index_of(c)
                    .map_err(|_| corrupt(part, format!("column {c} missing")))
            })
            .collect(),
    }
}

impl Length for VerifiedPart {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for VerifiedPart {
    type T = Cursor<Bytes>;

    /// A stream from `start` to the end of the column chunk holding it
    /// (or of the file, for the footer region).
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let end = self
            .chunks
            .iter()
            .find(|c| c.start <= start && start < c.end)
            .map_or(self.len, |c| c.end);
        Ok(Cursor::new(self.read_checked(start..end)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.read_checked(start..start + length as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_round_trip_and_catch_any_flipped_bit() {
        let data: Vec<u8> = (0..(3 * BLOCK as usize + 100))
            .map(|i| (i * 7) as u8)
            .collect();
        let crcs = block_crcs(&data);
        assert_eq!(crcs.len(), 4);
        let list = BlockList::decode(&encode_blocks(&crcs), data.len() as u64).unwrap();
        let all = 0..data.len() as u64;
        assert!(list.verify(&all, &data).is_ok());
        let r = list.aligned(&(BLOCK + 5..2 * BLOCK + 1));
        assert_eq!(r, BLOCK..3 * BLOCK);
        assert!(list
            .verify(&r, &data[r.start as usize..r.end as usize])
            .is_ok());
        for at in [0usize, 70_000, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 1;
            let err = list.verify(&all, &bad).unwrap_err();
            assert!(err.contains("checksum mismatch"), "{err}");
        }
        // A short read is an error (not a panic when it is sliced later).
        let err = list
            .verify(&r, &data[r.start as usize..r.end as usize - 1])
            .unwrap_err();
        assert!(err.contains("shorter"), "{err}");
        // A list that does not cover the data region is refused.
        assert!(BlockList::decode(&encode_blocks(&crcs), data.len() as u64 + BLOCK).is_none());
        assert!(BlockList::decode("2;65536;", 0).is_none());
    }
}
