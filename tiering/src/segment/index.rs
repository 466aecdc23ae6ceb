//! The hot index: where each hot block's record is, by key fingerprint.
//!
//! The map holds a 128-bit xxh3 fingerprint of the key, not the key itself: a multihash is
//! 34 bytes or more plus a heap allocation, while the fingerprint is 16 bytes inline, and the
//! record on disk carries the full key, which every read checks. Two keys would have to share
//! all 128 bits to collide (about 2^-64 for 2^32 blocks), and even then the read's key check
//! reports the mismatch instead of serving the other block.
//!
//! One entry is 32 bytes (16 fingerprint + 16 location) plus hashbrown's one control byte, at a
//! load factor between 7/16 and 7/8: 37 to 75 bytes per hot block.

use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashMap;
use xxhash_rust::xxh3::xxh3_128;

/// Where a record lives: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The segment's number.
    pub segment: u32,
    /// The record's offset in the segment.
    pub offset: u32,
    /// The payload's length (the block's size).
    pub len: u32,
    /// The key's length, so the record's extent is known without reading its header.
    pub key_len: u16,
    /// Reads since the record was written or last moved (saturating): what compaction uses to
    /// tell a still-hot block from a cold one.
    pub hits: u16,
}

impl Loc {
    /// The record's extent without padding: header, key and payload.
    pub fn record_len(&self) -> usize {
        super::record::HEADER_LEN + usize::from(self.key_len) + self.len as usize
    }
}

/// A key's 128-bit fingerprint, the index's key.
pub fn fingerprint(key: &[u8]) -> u128 {
    xxh3_128(key)
}

/// A hasher that passes the fingerprint's low 64 bits through: they are already uniform, so
/// hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for types other than u128; fold them so the hasher stays correct.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// The per-shard map from key fingerprint to record location.
#[derive(Default)]
pub struct HotIndex {
    map: HashMap<u128, Loc, BuildHasherDefault<PassThrough>>,
    /// Sum of the payload lengths of every indexed record.
    bytes: u64,
    /// Indexed records per segment, so retiring a segment checks it has none in O(1)
    /// instead of walking every entry on the shard's core.
    live: HashMap<u32, u64>,
}

/// Bytes of index memory per entry slot: fingerprint and location. The table adds one control
/// byte per slot and keeps between 7/16 and 7/8 of its slots full.
pub const ENTRY_BYTES: usize = std::mem::size_of::<u128>() + std::mem::size_of::<Loc>();

impl HotIndex {
    /// An empty index.
    pub fn new() -> HotIndex {
        HotIndex::default()
    }

    /// Where the key's record is, if it is hot.
    pub fn get(&self, key: &[u8]) -> Option<Loc> {
        self.map.get(&fingerprint(key)).copied()
    }

    /// Whether the key is hot.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(&fingerprint(key))
    }

    /// Counts a read of the key, if it is hot, and returns its location.
    pub fn touch(&mut self, key: &[u8]) -> Option<Loc> {
        let loc = self.map.get_mut(&fingerprint(key))?;
        loc.hits = loc.hits.saturating_add(1);
        Some(*loc)
    }

    /// Points the key at a new record, returning the old location if there was one.
    pub fn insert(&mut self, key: &[u8], loc: Loc) -> Option<Loc> {
        self.insert_fingerprint(fingerprint(key), loc)
    }

    /// [`Self::insert`] by fingerprint.
    pub fn insert_fingerprint(&mut self, fp: u128, loc: Loc) -> Option<Loc> {
        self.bytes += u64::from(loc.len);
        *self.live.entry(loc.segment).or_default() += 1;
        let old = self.map.insert(fp, loc);
        if let Some(old) = old {
            self.forget(&old);
        }
        old
    }

    fn forget(&mut self, old: &Loc) {
        self.bytes -= u64::from(old.len);
        if let Some(n) = self.live.get_mut(&old.segment) {
            *n -= 1;
            if *n == 0 {
                self.live.remove(&old.segment);
            }
        }
    }

    /// How many indexed records are in `segment`.
    pub fn live_in(&self, segment: u32) -> u64 {
        self.live.get(&segment).copied().unwrap_or(0)
    }

    /// Forgets the key, returning where its record was.
    pub fn remove(&mut self, key: &[u8]) -> Option<Loc> {
        self.remove_fingerprint(fingerprint(key))
    }

    /// [`Self::remove`] by fingerprint.
    pub fn remove_fingerprint(&mut self, fp: u128) -> Option<Loc> {
        let old = self.map.remove(&fp);
        if let Some(old) = &old {
            self.forget(old);
        }
        old
    }

    /// Forgets the key only if it still points at `segment`/`offset` (a record being moved
    /// out of that segment); returns whether it did.
    pub fn remove_if_at(&mut self, key: &[u8], segment: u32, offset: u32) -> Option<Loc> {
        let fp = fingerprint(key);
        match self.map.get(&fp) {
            Some(loc) if loc.segment == segment && loc.offset == offset => {
                self.remove_fingerprint(fp)
            }
            _ => None,
        }
    }

    /// Hot blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no block is hot.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Payload bytes of the hot blocks.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Memory the table holds now, in bytes (slots times entry size plus control bytes).
    pub fn memory_bytes(&self) -> u64 {
        (self.map.capacity() * (ENTRY_BYTES + 1)) as u64
    }

    /// Every entry, for listing and statistics.
    pub fn iter(&self) -> impl Iterator<Item = (u128, Loc)> + '_ {
        self.map.iter().map(|(fp, loc)| (*fp, *loc))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn loc(segment: u32, offset: u32, len: u32) -> Loc {
        Loc {
            segment,
            offset,
            len,
            key_len: 34,
            hits: 0,
        }
    }

    #[test]
    fn entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Loc>(), 16);
        assert_eq!(ENTRY_BYTES, 32);
    }

    #[test]
    fn live_counts_per_segment_match_the_entries() {
        let mut index = HotIndex::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % n
        };
        for step in 0..20_000u32 {
            let key = next(300).to_le_bytes();
            let segment = next(6) as u32;
            match next(3) {
                0 => drop(index.remove(&key)),
                1 => drop(index.remove_if_at(&key, segment, 0)),
                _ => drop(index.insert(&key, loc(segment, 0, 1 + step % 50))),
            }
        }
        for segment in 0..7 {
            let counted = index.iter().filter(|(_, l)| l.segment == segment).count() as u64;
            assert_eq!(index.live_in(segment), counted, "segment {segment}");
        }
        let bytes: u64 = index.iter().map(|(_, l)| u64::from(l.len)).sum();
        assert_eq!(index.bytes(), bytes);
    }

    #[test]
    fn insert_replace_remove_keep_bytes_exact() {
        let mut index = HotIndex::new();
        assert!(index.insert(b"a", loc(1, 0, 10)).is_none());
        assert!(index.insert(b"b", loc(1, 64, 20)).is_none());
        assert_eq!(index.bytes(), 30);
        assert_eq!(index.insert(b"a", loc(2, 0, 5)), Some(loc(1, 0, 10)));
        assert_eq!(index.bytes(), 25);
        assert_eq!(index.len(), 2);
        assert_eq!(index.remove_if_at(b"a", 1, 0), None, "a moved to segment 2");
        assert_eq!(index.remove_if_at(b"a", 2, 0), Some(loc(2, 0, 5)));
        assert_eq!(index.remove(b"b"), Some(loc(1, 64, 20)));
        assert_eq!(index.bytes(), 0);
        assert!(index.is_empty());
    }

    #[test]
    fn touch_counts_hits_and_saturates() {
        let mut index = HotIndex::new();
        index.insert(b"k", loc(0, 0, 1));
        for _ in 0..3 {
            index.touch(b"k");
        }
        assert_eq!(index.get(b"k").unwrap().hits, 3);
        let mut full = loc(0, 0, 1);
        full.hits = u16::MAX;
        index.insert(b"k", full);
        assert_eq!(index.touch(b"k").unwrap().hits, u16::MAX);
        assert!(index.touch(b"absent").is_none());
    }
}
