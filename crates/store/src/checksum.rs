//! Checksums of part files, and reading parts with every byte checked.
//!
//! Parquet has page checksums, but the writer this crate uses does not
//! write them, so Elide checks parts itself (see [`PartChecksum`]):
//!
//! ```text
//!  0 ───────────────── data region ───────────────── data_len ──── tail ──── size
//!  |PAR1| chunk (rg 0, col 0) | chunk (rg 0, col 1) | ... | page indexes | footer |
//!        |<-64K->|<-64K->|<-r->| |<-r->|
//!   per column chunk, a CRC-32 per 64 KiB block       CRC-32 of the tail, in the
//!   counted from the chunk's start; listed in the     manifest's part entry
//!   footer (key-value metadata BLOCKS_KEY)
//! ```
//!
//! A reader verifies the tail against the manifest before it trusts the
//! footer (and the block list in it), and every block it reads against the
//! list. A flipped bit in any byte a read touches is an error naming the
//! file and the offset, never a changed value. Blocks start at each column
//! chunk, so reading a whole chunk (what a scan does) reads no byte more;
//! reading some pages of a chunk costs at most one block more at each end.
//! The 4-byte leading magic belongs to no chunk; readers never use it and
//! [`crate::scrub`] checks it.
//!
//! [`VerifiedPart`] is the store's reader (flush-time index, deletion
//! resolution, compaction, verification scans, scrub); the query layer
//! applies the same checks to the byte ranges DataFusion fetches.

use std::io::Cursor;
use std::ops::Range;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Result, StoreError};
use crate::format::{PartChecksum, PartMeta};
use crate::storage::Storage;

/// Key of the block list in a part's footer key-value metadata.
pub const BLOCKS_KEY: &str = "elide.chunk_crc32";
/// Bytes per checksummed block of a column chunk.
pub const BLOCK: u64 = 64 << 10;

/// The byte ranges of a file's column chunks, in file order.
pub fn chunk_ranges(md: &ParquetMetaData) -> Vec<Range<u64>> {
    chunk_ranges_of(md.row_groups())
}

/// The byte ranges of the column chunks of `row_groups`, in file order.
pub fn chunk_ranges_of(
    row_groups: &[parquet::file::metadata::RowGroupMetaData],
) -> Vec<Range<u64>> {
    let mut v: Vec<Range<u64>> = row_groups
        .iter()
        .flat_map(|rg| rg.columns().iter())
        .map(|c| chunk_range(c).unwrap_or(u64::MAX..u64::MAX))
        .collect();
    v.sort_by_key(|r| r.start);
    v
}

/// The bytes of a column chunk, `None` if its footer gives a negative
/// offset or size (parquet's own `byte_range` panics on those).
fn chunk_range(c: &parquet::file::metadata::ColumnChunkMetaData) -> Option<Range<u64>> {
    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
    let start = u64::try_from(start).ok()?;
    let len = u64::try_from(c.compressed_size()).ok()?;
    Some(start..start.saturating_add(len))
}

/// Whether every column chunk of `md` lies within a file of `size` bytes
/// (a damaged footer of a part written before checksums, which nothing
/// else checks, must be an error, not a panic of the parquet reader).
pub(crate) fn chunks_within(md: &ParquetMetaData, size: u64) -> std::result::Result<(), String> {
    for (g, rg) in md.row_groups().iter().enumerate() {
        for (i, c) in rg.columns().iter().enumerate() {
            match chunk_range(c) {
                Some(r) if r.end <= size => {}
                _ => {
                    return Err(format!(
                        "column chunk {i} of row group {g} lies outside the file (offset {}, \
                         {} bytes, file of {size})",
                        c.dictionary_page_offset().unwrap_or(c.data_page_offset()),
                        c.compressed_size()
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The CRC-32s of the blocks of each chunk of `data` (a file's bytes from
/// offset 0), chunk after chunk.
pub fn block_crcs(data: &[u8], chunks: &[Range<u64>]) -> Vec<u32> {
    let mut out = Vec::new();
    for c in chunks {
        let bytes = data
            .get(c.start as usize..c.end as usize)
            .unwrap_or_default();
        out.extend(bytes.chunks(BLOCK as usize).map(crc32fast::hash));
    }
    out
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

/// One column chunk and the index of its first block's CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    range: Range<u64>,
    first_crc: usize,
}

/// The block list of a part: for each column chunk, the CRC-32s of its
/// [`BLOCK`]s counted from the chunk's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockList {
    /// Length of the data region (where the footer region starts).
    pub data_len: u64,
    chunks: Vec<Chunk>,
    crcs: Vec<u32>,
}

impl BlockList {
    /// Parse a footer value against the file's chunks; `None` if
    /// malformed, or not one CRC per block of every chunk, or a chunk
    /// outside the data region.
    pub fn decode(value: &str, chunks: &[Range<u64>], data_len: u64) -> Option<BlockList> {
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
        let mut list = Vec::with_capacity(chunks.len());
        let mut n = 0usize;
        let mut prev_end = 0;
        for c in chunks {
            if c.start < prev_end || c.end > data_len || c.end < c.start {
                return None;
            }
            prev_end = c.end;
            list.push(Chunk {
                range: c.clone(),
                first_crc: n,
            });
            n += (c.end - c.start).div_ceil(BLOCK) as usize;
        }
        (n == crcs.len()).then_some(BlockList {
            data_len,
            chunks: list,
            crcs,
        })
    }

    /// The chunks overlapping `range`.
    fn overlapping(&self, range: &Range<u64>) -> &[Chunk] {
        let from = self.chunks.partition_point(|c| c.range.end <= range.start);
        let to = self.chunks.partition_point(|c| c.range.start < range.end);
        self.chunks.get(from..to.max(from)).unwrap_or_default()
    }

    /// The range to read to check `range`: widened to the blocks of the
    /// chunks it touches. `None` if part of it lies outside every chunk
    /// (no reader asks for such bytes).
    pub fn aligned(&self, range: &Range<u64>) -> Option<Range<u64>> {
        let chunks = self.overlapping(range);
        let (first, last) = (chunks.first()?, chunks.last()?);
        if range.start < first.range.start || range.end > last.range.end {
            return None;
        }
        if chunks
            .windows(2)
            .any(|w| w[0].range.end != w[1].range.start)
        {
            return None;
        }
        let off = range.start - first.range.start;
        let start = first.range.start + off / BLOCK * BLOCK;
        let off = range.end - last.range.start;
        let end = (last.range.start + off.div_ceil(BLOCK) * BLOCK).min(last.range.end);
        Some(start..end)
    }

    /// Check `bytes`, read for `range` (from [`BlockList::aligned`], or a
    /// union of such ranges), block by block. `Err` names the first bad
    /// block.
    pub fn verify(&self, range: &Range<u64>, bytes: &[u8]) -> std::result::Result<(), String> {
        if bytes.len() as u64 != range.end.saturating_sub(range.start) {
            return Err(format!(
                "read {} bytes of {}..{}: the file is shorter than its checksums say",
                bytes.len(),
                range.start,
                range.end
            ));
        }
        for c in self.overlapping(range) {
            let blocks = (c.range.end - c.range.start).div_ceil(BLOCK);
            for b in 0..blocks {
                let at = c.range.start + b * BLOCK;
                let end = (at + BLOCK).min(c.range.end);
                if end <= range.start || at >= range.end {
                    continue;
                }
                if at < range.start || end > range.end {
                    return Err(format!(
                        "a read of bytes {}..{} splits block {at}..{end}",
                        range.start, range.end
                    ));
                }
                let got = &bytes[(at - range.start) as usize..(end - range.start) as usize];
                if self.crcs.get(c.first_crc + b as usize) != Some(&crc32fast::hash(got)) {
                    return Err(format!("checksum mismatch in bytes {at}..{end}"));
                }
            }
        }
        Ok(())
    }
}

/// The block list from a part's footer, checked against its manifest entry.
pub fn blocks_of(md: &ParquetMetaData, sum: &PartChecksum) -> Option<BlockList> {
    let value = md
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == BLOCKS_KEY)?
        .value
        .as_deref()?;
    BlockList::decode(value, &chunk_ranges(md), sum.data_len)
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
    /// An object read by ranges (a few columns of a large part).
    Ranges(Storage),
}

/// An object-store part at least this large, read for some columns only,
/// is read by ranges; smaller ones, or reads of every column, in one GET.
const RANGED_READ_MIN: u64 = 4 << 20;

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
            None if columns.is_some() && part.size >= RANGED_READ_MIN => {
                Source::Ranges(storage.clone())
            }
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
        chunks_within(md.metadata(), part.size).map_err(|e| corrupt(part, e))?;
        if let Some(sum) = &part.checksum {
            file.blocks = Some(
                blocks_of(md.metadata(), sum)
                    .ok_or_else(|| corrupt(part, "the footer has no valid block checksum list"))?,
            );
        }
        let indices = column_indices(part, &md, columns)?;
        file.chunks = chunk_ranges(md.metadata());
        Ok((file, md, indices))
    }

    /// Whether the file starts with the parquet magic (the only bytes of
    /// the data region outside every column chunk, which no read uses).
    pub fn leading_magic_ok(&self) -> bool {
        self.read_raw(0..4).is_ok_and(|b| &b[..] == b"PAR1")
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
            Source::Ranges(_) if n == 0 => Ok(Bytes::new()),
            Source::Ranges(storage) => {
                let b = storage
                    .get_range(&self.path, range.clone())
                    .map_err(|e| format!("reading bytes {}..{}: {e}", range.start, range.end))?;
                if b.len() != n {
                    return Err(format!(
                        "the object is shorter than the manifest's {} bytes",
                        self.len
                    ));
                }
                Ok(b)
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
        let aligned = blocks.aligned(&range).ok_or_else(|| {
            err(format!(
                "a read of bytes {}..{} lies outside the column chunks",
                range.start, range.end
            ))
        })?;
        let bytes = self.read_raw(aligned.clone()).map_err(err)?;
        blocks.verify(&aligned, &bytes).map_err(err)?;
        let from = (range.start - aligned.start) as usize;
        Ok(bytes.slice(from..from + (range.end - range.start) as usize))
    }
}

#[cfg(unix)]
pub(crate) fn read_exact_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

#[cfg(not(unix))]
pub(crate) fn read_exact_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
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

    /// A footer whose column chunk starts at a negative offset, has a
    /// negative size or ends past the file is an error, not a panic.
    #[test]
    fn chunks_outside_the_file_are_an_error() {
        use parquet::basic::Type as PhysicalType;
        use parquet::file::metadata::{ColumnChunkMetaData, FileMetaData, RowGroupMetaData};
        use parquet::schema::types::{SchemaDescriptor, Type};
        use std::sync::Arc;
        let field = Type::primitive_type_builder("v", PhysicalType::INT64)
            .build()
            .unwrap();
        let root = Type::group_type_builder("schema")
            .with_fields(vec![Arc::new(field)])
            .build()
            .unwrap();
        let schema = Arc::new(SchemaDescriptor::new(Arc::new(root)));
        let md = |offset: i64, size: i64| {
            let col = ColumnChunkMetaData::builder(schema.column(0))
                .set_data_page_offset(offset)
                .set_total_compressed_size(size)
                .build()
                .unwrap();
            let rg = RowGroupMetaData::builder(schema.clone())
                .set_num_rows(1)
                .set_column_metadata(vec![col])
                .build()
                .unwrap();
            let file = FileMetaData::new(2, 1, None, None, schema.clone(), None);
            ParquetMetaData::new(file, vec![rg])
        };
        assert!(chunks_within(&md(4, 100), 200).is_ok());
        for (offset, size) in [(-5, 100), (4, -1), (150, 100), (i64::MIN, 1)] {
            let e = chunks_within(&md(offset, size), 200).unwrap_err();
            assert!(e.contains("outside the file"), "{e}");
            // The ranges used to check reads do not panic either.
            let _ = chunk_ranges(&md(offset, size));
        }
    }

    #[test]
    fn block_lists_round_trip_and_catch_any_flipped_bit() {
        let data: Vec<u8> = (0..(3 * BLOCK as usize + 100))
            .map(|i| (i * 7) as u8)
            .collect();
        let len = data.len() as u64;
        // Two chunks after a 4-byte magic: 100 bytes, then the rest.
        let chunks = vec![4..104, 104..len];
        let crcs = block_crcs(&data, &chunks);
        assert_eq!(crcs.len(), 1 + 3);
        let list = BlockList::decode(&encode_blocks(&crcs), &chunks, len).unwrap();
        // A whole chunk reads exactly itself.
        assert_eq!(list.aligned(&(104..len)), Some(104..len));
        assert_eq!(list.aligned(&(4..104)), Some(4..104));
        let all = 4..len;
        assert!(list.verify(&all, &data[4..]).is_ok());
        let r = list
            .aligned(&(104 + BLOCK + 5..104 + 2 * BLOCK + 1))
            .unwrap();
        assert_eq!(r, 104 + BLOCK..len, "the chunk's last block is short");
        let r2 = list.aligned(&(104 + 5..104 + 10)).unwrap();
        assert_eq!(r2, 104..104 + BLOCK);
        assert!(list
            .verify(&r, &data[r.start as usize..r.end as usize])
            .is_ok());
        for at in [4usize, 103, 104, 70_000, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 1;
            let err = list.verify(&all, &bad[4..]).unwrap_err();
            assert!(err.contains("checksum mismatch"), "{err}");
        }
        // A short read is an error (not a panic when it is sliced later).
        let err = list
            .verify(&r, &data[r.start as usize..r.end as usize - 1])
            .unwrap_err();
        assert!(err.contains("shorter"), "{err}");
        // Bytes outside every chunk are never read through the list.
        assert_eq!(list.aligned(&(0..4)), None);
        // A list that does not match the chunks is refused.
        assert!(BlockList::decode(&encode_blocks(&crcs[1..]), &chunks, len).is_none());
        assert!(BlockList::decode(&encode_blocks(&crcs), &chunks, len - 1).is_none());
        assert!(BlockList::decode("2;65536;", &[], 0).is_none());
    }
}
