//! A part's hidden rows as a Delta deletion vector, without converting
//! the bitmap.
//!
//! Delta stores a deletion vector as a `RoaringTreemap` in its portable
//! 64-bit form: the number of 32-bit buckets (u64, little-endian), then
//! for each bucket its high 32 bits (u32, little-endian) followed by a
//! 32-bit roaring bitmap in the portable format. Elide's tombstones are
//! 32-bit roaring bitmaps of row positions (a part has fewer than 2³² rows),
//! so a tombstone is one bucket with key 0 and croaring's portable bytes as
//! they are: only that framing is added. The kernel's writer adds the rest
//! (version byte, size, magic, CRC).

use bytes::Bytes;
use croaring::{Bitmap, Portable};
use delta_kernel::actions::deletion_vector_writer::DeletionVector;

/// Deleted row positions of one part.
#[derive(Debug, Clone)]
pub(crate) struct PartDeletionVector<'a> {
    bits: &'a Bitmap,
}

impl<'a> PartDeletionVector<'a> {
    pub(crate) fn new(bits: &'a Bitmap) -> Self {
        Self { bits }
    }
}

impl DeletionVector for PartDeletionVector<'_> {
    type IndexIterator = std::vec::IntoIter<u64>;

    fn into_iter(self) -> Self::IndexIterator {
        self.bits
            .iter()
            .map(u64::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn cardinality(&self) -> u64 {
        self.bits.cardinality()
    }

    fn serialize(self) -> delta_kernel::KernelResult<Bytes> {
        Ok(Bytes::from(treemap_bytes(self.bits)))
    }
}

/// The portable `RoaringTreemap` bytes of a 32-bit bitmap.
pub(crate) fn treemap_bytes(bits: &Bitmap) -> Vec<u8> {
    if bits.is_empty() {
        return 0u64.to_le_bytes().to_vec();
    }
    let portable = bits.serialize::<Portable>();
    let mut out = Vec::with_capacity(12 + portable.len());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&portable);
    out
}

#[cfg(test)]
mod tests {
    use delta_kernel::actions::deletion_vector_writer::KernelDeletionVector;

    use super::*;

    /// The bytes are exactly what the kernel's own `RoaringTreemap`
    /// serialization writes for the same rows, for bitmaps of every
    /// container kind (array, bitset, run) and the empty one.
    #[test]
    fn same_bytes_as_the_kernels_treemap() {
        let cases: Vec<Vec<u32>> = vec![
            vec![],
            vec![0],
            vec![3, 17, 4_000, 65_535, 65_536, 1_000_000],
            (0..70_000).step_by(2).collect(),
            (10..50_000).collect(),
        ];
        for rows in cases {
            let bits = Bitmap::from_iter(rows.iter().copied());
            let mut kernel = KernelDeletionVector::new();
            kernel.add_deleted_row_indexes(rows.iter().map(|&r| u64::from(r)));
            let theirs = kernel.serialize().unwrap();
            let mut ours_bits = bits.clone();
            ours_bits.run_optimize();
            let ours = PartDeletionVector::new(&ours_bits).serialize().unwrap();
            // Container choice may differ (croaring run-optimizes, the
            // roaring crate may not), so compare what both decode to.
            let decoded = roaring::RoaringTreemap::deserialize_from(&ours[..]).unwrap();
            let expected = roaring::RoaringTreemap::deserialize_from(&theirs[..]).unwrap();
            assert_eq!(decoded, expected, "rows {:?}…", &rows[..rows.len().min(4)]);
            if !bits.is_empty() {
                let plain = PartDeletionVector::new(&bits).serialize().unwrap();
                assert_eq!(
                    roaring::RoaringTreemap::deserialize_from(&plain[..]).unwrap(),
                    expected
                );
            }
        }
    }
}
