//! Packs and the persistent index: the cold tier as key-value separation.
//!
//! A sealed hot segment whose blocks go cold is not copied into the cold backend any more: it
//! stays on disk as an immutable **pack** (the same self-checking records, renamed
//! `NNNNNNNN.pack`), and the backend holds the **index**: for each cold block, one entry under
//! its key, either the block itself when it is small (inline) or where its record lies in a
//! pack.
//!
//! ```text
//! shard-NNN/segments/00000007.pack        a former segment, truncated to its records
//! shard-NNN/segments/00000007.pack-hint   its hint file (record list), for reclamation
//!
//! backend value = tag u8 | body
//!   tag 0 (inline): body = the block's bytes
//!   tag 1 (packed): body = pack u32 | offset u32 | payload len u32 | key len u16   (LE)
//! ```
//! Why: a large block then costs the cold tier 15 bytes of index, not a second copy (write
//! amplification, the backend's own overhead on large values, and its cache filling with block
//! data), and a cold read is the record from the pack's mapping, checked by the record's xxh3
//! checksum and key, served without a copy and without re-hashing the block. Small blocks stay
//! inline, where one backend read answers them and a pack page per block would cost more.
//!
//! Reclamation: each pack's live bytes are counted (deletes and rewrites lower them); a pack
//! whose live share falls under a threshold has its live records rewritten into the hot tier,
//! and is removed once no index entry needs it.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Tag of an inline entry: the block's bytes follow.
const TAG_INLINE: u8 = 0;
/// Tag of a packed entry: a [`PackLoc`] follows.
const TAG_PACKED: u8 = 1;
/// The length of a packed entry: tag, pack, offset, length, key length.
const PACKED_LEN: usize = 1 + 4 + 4 + 4 + 2;

/// Where a cold block's record lies in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackLoc {
    /// The pack's number (the segment it was).
    pub pack: u32,
    /// The record's offset in the pack.
    pub offset: u32,
    /// The block's length (the record's payload).
    pub len: u32,
    /// The key's length (the record's key), so the record's extent is known without its
    /// header.
    pub key_len: u16,
}

impl PackLoc {
    /// The record's length without padding: header, key, payload.
    pub fn record_len(&self) -> usize {
        crate::segment::record::HEADER_LEN + usize::from(self.key_len) + self.len as usize
    }
}

/// A decoded index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The block's bytes, stored in the backend (not yet checked against the key: the
    /// backend's files carry no checksum of ours, so the reader hashes them).
    Inline(Bytes),
    /// The block's record in a pack (checked by the record's own checksum and key).
    Packed(PackLoc),
}

impl Entry {
    /// The block's length.
    pub fn block_len(&self) -> u64 {
        match self {
            Entry::Inline(data) => data.len() as u64,
            Entry::Packed(loc) => u64::from(loc.len),
        }
    }
}

/// Why a backend value is not an index entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The value is empty: every entry has a tag.
    #[error("an empty index entry")]
    Empty,
    /// The tag is none this build writes (a store of a newer format, or damage).
    #[error("an index entry with unknown tag {0}")]
    UnknownTag(u8),
    /// A packed entry of the wrong length.
    #[error("a packed index entry of {0} bytes (expected {PACKED_LEN})")]
    BadLength(usize),
}

/// The backend value of an inline block: the tag, then the bytes (one copy, of a small block).
pub fn encode_inline(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(TAG_INLINE);
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// The backend value of a packed block.
pub fn encode_packed(loc: PackLoc) -> Bytes {
    let mut out = Vec::with_capacity(PACKED_LEN);
    out.push(TAG_PACKED);
    out.extend_from_slice(&loc.pack.to_le_bytes());
    out.extend_from_slice(&loc.offset.to_le_bytes());
    out.extend_from_slice(&loc.len.to_le_bytes());
    out.extend_from_slice(&loc.key_len.to_le_bytes());
    Bytes::from(out)
}

/// Reads a backend value back; an inline block's bytes are a zero-copy slice of `value`.
pub fn decode(value: Bytes) -> Result<Entry, EntryError> {
    match value.first() {
        None => Err(EntryError::Empty),
        Some(&TAG_INLINE) => Ok(Entry::Inline(value.slice(1..))),
        Some(&TAG_PACKED) => decode_packed(&value).map(Entry::Packed),
        Some(&tag) => Err(EntryError::UnknownTag(tag)),
    }
}

/// The block length a backend value stands for, and the pack location if it is packed,
/// without copying an inline block (for walks and deletes).
pub fn peek(value: &[u8]) -> Result<(u64, Option<PackLoc>), EntryError> {
    match value.first() {
        None => Err(EntryError::Empty),
        Some(&TAG_INLINE) => Ok((value.len() as u64 - 1, None)),
        Some(&TAG_PACKED) => decode_packed(value).map(|loc| (u64::from(loc.len), Some(loc))),
        Some(&tag) => Err(EntryError::UnknownTag(tag)),
    }
}

fn decode_packed(value: &[u8]) -> Result<PackLoc, EntryError> {
    let body: &[u8; PACKED_LEN] = value
        .try_into()
        .map_err(|_| EntryError::BadLength(value.len()))?;
    let u32_at =
        |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    Ok(PackLoc {
        pack: u32_at(1),
        offset: u32_at(5),
        len: u32_at(9),
        key_len: u16::from_le_bytes([body[13], body[14]]),
    })
}

/// Whether `value` is a sound index entry for `key`, with the shard's pack files in
/// `segments_dir`: an inline block that hashes to its key, or a packed one whose record (in
/// its pack, or in the segment it still is while its rename waits) reads back whole with
/// this key. For repairs, which must not copy an entry that points at nothing.
pub fn entry_is_sound(key: &[u8], value: &[u8], segments_dir: &Path) -> bool {
    match decode(Bytes::copy_from_slice(value)) {
        Ok(Entry::Inline(data)) => ipfrs_core_types::verify_key(key, &data).is_ok(),
        Ok(Entry::Packed(loc)) => {
            let files = [
                pack_path(segments_dir, loc.pack),
                crate::segment::file::segment_path(segments_dir, loc.pack),
            ];
            files.iter().any(|path| record_is(path, &loc, key))
        }
        Err(_) => false,
    }
}

/// Whether the record at `loc` in the file at `path` decodes whole and holds `key`.
fn record_is(path: &Path, loc: &PackLoc, key: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut record = vec![0u8; loc.record_len()];
    if file
        .read_exact_at(&mut record, u64::from(loc.offset))
        .is_err()
    {
        return false;
    }
    let Ok(exact) = crate::segment::Alignment::new(1) else {
        return false;
    };
    crate::segment::decode(&record, 0, exact).is_ok_and(|r| {
        r.key == key
            && r.payload
                .data()
                .is_some_and(|d| d.len() == loc.len as usize)
    })
}

/// The extension of pack files.
const PACK_EXTENSION: &str = "pack";

/// The path of pack `id` in a shard's segment directory.
pub fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.{PACK_EXTENSION}"))
}

/// The path of pack `id`'s hint file (its record list, kept from its segment days).
pub fn pack_hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.pack-hint"))
}

/// The pack files in `dir`, in ascending number order. Other files are ignored.
pub fn list_packs(dir: &Path) -> std::io::Result<Vec<(u32, PathBuf)>> {
    crate::segment::file::list_numbered(dir, PACK_EXTENSION)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let loc = PackLoc {
            pack: 7,
            offset: 1 << 30,
            len: 262_144,
            key_len: 34,
        };
        assert_eq!(decode(encode_packed(loc)).unwrap(), Entry::Packed(loc));
        assert_eq!(peek(&encode_packed(loc)).unwrap(), (262_144, Some(loc)));
        for data in [&b""[..], b"x", &[1u8; 16384][..]] {
            let value = encode_inline(data);
            assert_eq!(
                decode(value.clone()).unwrap(),
                Entry::Inline(Bytes::copy_from_slice(data))
            );
            assert_eq!(peek(&value).unwrap(), (data.len() as u64, None));
        }
        assert_eq!(loc.record_len(), 28 + 34 + 262_144);
    }

    #[test]
    fn other_values_are_refused() {
        assert_eq!(decode(Bytes::new()), Err(EntryError::Empty));
        assert_eq!(
            decode(Bytes::from_static(&[9, 1, 2])),
            Err(EntryError::UnknownTag(9))
        );
        assert_eq!(
            decode(Bytes::from_static(&[1, 0, 0])),
            Err(EntryError::BadLength(3))
        );
        assert_eq!(peek(&[1; 16]), Err(EntryError::BadLength(16)));
    }

    #[test]
    fn packs_list_in_order_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00000010.pack",
            "00000002.pack",
            "00000003.seg",
            "00000002.pack-hint",
            "x.pack",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let ids: Vec<u32> = list_packs(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![2, 10]);
        assert_eq!(pack_path(dir.path(), 2), dir.path().join("00000002.pack"));
    }
}
