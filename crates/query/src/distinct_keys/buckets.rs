//! The rows a [`super::DistinctKeysExec`] partition holds: rows of keys
//! packed into 32 bytes ([`Key`]), and the buckets they are dealt into by
//! hash ([`Bucket`], [`bucket_of`]).
//!
//! Invariant: equal rows of keys have equal [`Key`]s (the bytes past the
//! last key and a null's bytes are zero), so they hash alike and go to
//! the same bucket at every level.

use super::{BUCKETS, KEY_BYTES};

/// A row of keys: each key's bytes side by side (zeros for a null, and
/// past the last key up to [`KEY_BYTES`]), then a bit per key that is null
/// (little-endian).
#[derive(Clone, Copy)]
pub(super) struct Key(pub(super) [u8; KEY_BYTES + 4]);

impl Key {
    /// The key as two 128-bit words (for equality and the hash).
    fn words(&self) -> [u128; 2] {
        let mut halves = [0u128; 2];
        for (half, bytes) in halves.iter_mut().zip(self.0.chunks_exact(16)) {
            let mut word = [0; 16];
            word.copy_from_slice(bytes);
            *half = u128::from_ne_bytes(word);
        }
        halves
    }

    /// The bit per key that is null.
    pub(super) fn nulls(&self) -> u32 {
        let mut flags = [0; 4];
        flags.copy_from_slice(&self.0[KEY_BYTES..]);
        u32::from_le_bytes(flags)
    }
}

impl PartialEq for Key {
    /// Two 128-bit comparisons, where the bytes' would call `memcmp`.
    fn eq(&self, other: &Key) -> bool {
        self.words() == other.words()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    /// As two 128-bit words: a hasher folds those in two steps, where it
    /// would take the 32 bytes as a slice of unknown length.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let halves = self.words();
        state.write_u128(halves[0]);
        state.write_u128(halves[1]);
    }
}

/// Copies each value of `values` (`width` bytes each) into its row at
/// `at`.
pub(super) fn put(rows: &mut [Key], at: usize, width: usize, values: &[u8]) {
    match width {
        1 => put_as::<1>(rows, at, width, values),
        2 => put_as::<2>(rows, at, width, values),
        4 => put_as::<4>(rows, at, width, values),
        8 => put_as::<8>(rows, at, width, values),
        16 => put_as::<16>(rows, at, width, values),
        _ => put_as::<0>(rows, at, width, values),
    }
}

/// [`put`] with `W` the width when it is a constant (0 for any other), so
/// that each copy is a move of a known width rather than a call to
/// `memcpy`.
fn put_as<const W: usize>(rows: &mut [Key], at: usize, width: usize, values: &[u8]) {
    // Widths are never 0 (`key_width`).
    let w = if W == 0 { width.max(1) } else { W };
    for (row, value) in rows.iter_mut().zip(values.chunks_exact(w)) {
        if let Some(to) = row.0.get_mut(at..at + w) {
            to.copy_from_slice(value);
        }
    }
}

/// Appends each row's `width` bytes at `at` to `values` (as [`put`]).
pub(super) fn get(keys: &[Key], at: usize, width: usize, values: &mut Vec<u8>) {
    match width {
        1 => get_as::<1>(keys, at, width, values),
        2 => get_as::<2>(keys, at, width, values),
        4 => get_as::<4>(keys, at, width, values),
        8 => get_as::<8>(keys, at, width, values),
        16 => get_as::<16>(keys, at, width, values),
        _ => get_as::<0>(keys, at, width, values),
    }
}

/// [`get`] with `W` as in [`put_as`].
fn get_as<const W: usize>(keys: &[Key], at: usize, width: usize, values: &mut Vec<u8>) {
    let w = if W == 0 { width } else { W };
    for key in keys {
        if let Some(from) = key.0.get(at..at + w) {
            values.extend_from_slice(from);
        }
    }
}

/// `log2(BUCKETS)`: a row's bucket at level `l` is the `l`-th group of
/// that many bits of its hash, from the top.
pub(super) const BUCKET_BITS: u32 = BUCKETS.trailing_zeros();

/// The deepest level a bucket is split to (then 64 bits are used up, and
/// a bucket that big is rows equal in their hash, deduplicated as they
/// are).
pub(super) const LEVELS: u32 = 64 / BUCKET_BITS;

/// The bucket of a row whose dealer's hash is `hash`, at `level`.
pub(super) fn bucket_of(hash: u64, level: u32) -> usize {
    ((hash >> (64 - BUCKET_BITS * (level + 1))) as usize) & (BUCKETS - 1)
}

/// The rows of a bucket's largest chunks: 32 KiB.
const CHUNK_ROWS: usize = 1_024;

/// The rows of a bucket's first chunk: a small input takes little memory.
const FIRST_CHUNK_ROWS: usize = 64;

/// A bucket's rows, in chunks that double up to [`CHUNK_ROWS`] (appending
/// never moves the rows already there, as growing one vector would).
#[derive(Default)]
pub(super) struct Bucket {
    pub(super) chunks: Vec<Vec<Key>>,
    pub(super) rows: usize,
}

impl Bucket {
    /// Appends `row`; the bytes newly allocated for it (a chunk's), if
    /// any.
    pub(super) fn push(&mut self, row: Key) -> usize {
        self.rows += 1;
        if let Some(last) = self.chunks.last_mut() {
            if last.len() < last.capacity() {
                last.push(row);
                return 0;
            }
        }
        let rows = self.rows.clamp(FIRST_CHUNK_ROWS, CHUNK_ROWS);
        let mut chunk = Vec::with_capacity(rows);
        chunk.push(row);
        self.chunks.push(chunk);
        rows * std::mem::size_of::<Key>()
    }

    /// The bytes its chunks hold.
    pub(super) fn bytes(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Key>()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Key> {
        self.chunks.iter().flatten()
    }
}
