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
//!   tag 2 (inline): body = checksum u64 | the block's bytes                        (LE)
//!                   checksum = xxh3-64 of (tag, key len u16 LE, key, block bytes)
//!   tag 1 (packed): body = pack u32 | offset u32 | payload len u32 | key len u16   (LE)
//!   tag 0 (inline, written before the checksum): body = the block's bytes
//! ```
//! Why: a large block then costs the cold tier 15 bytes of index, not a second copy (write
//! amplification, the backend's own overhead on large values, and its cache filling with block
//! data), and a cold read is the record from the pack's mapping, checked by the record's xxh3
//! checksum and key, served without a copy and without re-hashing the block. Small blocks stay
//! inline, where one backend read answers them and a pack page per block would cost more.
//!
//! An inline block carries its own xxh3 checksum over its key and bytes, as a record does:
//! the backend's files carry no checksum of ours, and without one every cold read of a small
//! block re-hashed it with its multihash (sha2-256: 4 KiB took ~10x the backend read's time
//! here). Covering the key too means a value filed under the wrong key is caught as well as a
//! flipped bit. Entries of tag 0, written before the checksum, still read: they are checked by
//! hashing the block against its key, as they always were.
//!
//! Reclamation: each pack's live bytes are counted (deletes and rewrites lower them); a pack
//! whose live share falls under a threshold has its live records rewritten into the hot tier,
//! and is removed once no index entry needs it.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Tag of an inline entry written before inline entries carried a checksum: the block's
/// bytes follow (read back, never written).
const TAG_INLINE_UNCHECKED: u8 = 0;
/// Tag of a packed entry: a [`PackLoc`] follows.
const TAG_PACKED: u8 = 1;
/// Tag of an inline entry: its checksum, then the block's bytes.
const TAG_INLINE: u8 = 2;
/// The length of a packed entry: tag, pack, offset, length, key length.
const PACKED_LEN: usize = 1 + 4 + 4 + 4 + 2;
/// Where an inline block's bytes start: tag, checksum.
const INLINE_HEADER_LEN: usize = 1 + 8;

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
    /// The block's bytes, stored in the backend, already checked by their checksum over key
    /// and bytes ([`decode`] refuses a mismatch): ready to serve.
    Inline(Bytes),
    /// The block's bytes from an entry written before inline entries carried a checksum: not
    /// yet checked, so the reader hashes them against the key
    /// ([`ipfrs_core_types::verify_key`]) before serving them.
    InlineUnchecked(Bytes),
    /// The block's record in a pack (checked by the record's own checksum and key).
    Packed(PackLoc),
}

impl Entry {
    /// The block's length.
    pub fn block_len(&self) -> u64 {
        match self {
            Entry::Inline(data) | Entry::InlineUnchecked(data) => data.len() as u64,
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
    /// An inline entry too short to hold its checksum.
    #[error("an inline index entry of {0} bytes, shorter than its {INLINE_HEADER_LEN}-byte header")]
    TooShort(usize),
    /// An inline block whose bytes (or key) do not match the checksum stored with them.
    #[error("an inline block failed its checksum (stored {stored:016x}, computed {computed:016x})")]
    Checksum {
        /// The checksum in the entry.
        stored: u64,
        /// The checksum of the key and bytes read.
        computed: u64,
    },
}

/// xxh3-64 of an inline entry's tag, key length, key and block bytes (the AVX2 hasher the
/// records use; see `segment::record`).
fn inline_checksum(key: &[u8], data: &[u8]) -> u64 {
    use std::hash::Hasher;
    // Keys are multihashes (at most 66 bytes); a longer one could not have been stored.
    let key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let mut hasher = twox_hash::XxHash3_64::with_seed(0);
    hasher.write(&[TAG_INLINE]);
    hasher.write(&key_len.to_le_bytes());
    hasher.write(key);
    hasher.write(data);
    hasher.finish()
}

/// The backend value of block `data` stored inline under `key`: the tag, the checksum over
/// key and bytes, then the bytes (one copy, of a small block).
pub fn encode_inline(key: &[u8], data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(INLINE_HEADER_LEN + data.len());
    out.push(TAG_INLINE);
    out.extend_from_slice(&inline_checksum(key, data).to_le_bytes());
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// The backend value of an inline block as stores written before the checksum hold it (tag
/// 0, then the bytes): this build reads such entries but never writes them. For tests of
/// stores of that format.
pub fn encode_inline_unchecked(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(TAG_INLINE_UNCHECKED);
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

/// Reads the backend value stored under `key` back; an inline block's bytes are a zero-copy
/// slice of `value`, checked against their checksum (a mismatch is
/// [`EntryError::Checksum`]: damage, never served).
pub fn decode(key: &[u8], value: Bytes) -> Result<Entry, EntryError> {
    match value.first() {
        None => Err(EntryError::Empty),
        Some(&TAG_INLINE) => {
            let stored = inline_stored_checksum(&value)?;
            let data = value.slice(INLINE_HEADER_LEN..);
            let computed = inline_checksum(key, &data);
            if computed != stored {
                return Err(EntryError::Checksum { stored, computed });
            }
            Ok(Entry::Inline(data))
        }
        Some(&TAG_INLINE_UNCHECKED) => Ok(Entry::InlineUnchecked(value.slice(1..))),
        Some(&TAG_PACKED) => decode_packed(&value).map(Entry::Packed),
        Some(&tag) => Err(EntryError::UnknownTag(tag)),
    }
}

/// The checksum field of an inline entry.
fn inline_stored_checksum(value: &[u8]) -> Result<u64, EntryError> {
    let field: [u8; 8] = value
        .get(1..INLINE_HEADER_LEN)
        .and_then(|f| f.try_into().ok())
        .ok_or(EntryError::TooShort(value.len()))?;
    Ok(u64::from_le_bytes(field))
}

/// The block length a backend value stands for, and the pack location if it is packed,
/// without copying or checking an inline block (for walks and deletes).
pub fn peek(value: &[u8]) -> Result<(u64, Option<PackLoc>), EntryError> {
    match value.first() {
        None => Err(EntryError::Empty),
        Some(&TAG_INLINE) => {
            inline_stored_checksum(value)?;
            Ok(((value.len() - INLINE_HEADER_LEN) as u64, None))
        }
        Some(&TAG_INLINE_UNCHECKED) => Ok((value.len() as u64 - 1, None)),
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

/// The entry a repair keeps for `key`, with the shard's pack files in `segments_dir`:
/// `value` itself when it is an inline block that hashes to its key, or a packed one whose
/// record (in its pack, or in the segment it still is while its rename waits) reads back
/// whole with this key; a packed entry rebuilt from its record when only the entry's lengths
/// were damaged (the record at its offset still holds `key` and passes its checksum: the
/// block is intact, and dropping it would lose it); `None` otherwise. For repairs, which
/// must not copy an entry that points at nothing.
pub fn sound_entry(key: &[u8], value: &[u8], segments_dir: &Path) -> Option<Bytes> {
    match decode(key, Bytes::copy_from_slice(value)) {
        Ok(Entry::Inline(_)) => Some(Bytes::copy_from_slice(value)),
        Ok(Entry::InlineUnchecked(data)) => ipfrs_core_types::verify_key(key, &data)
            .is_ok()
            .then(|| Bytes::copy_from_slice(value)),
        Ok(Entry::Packed(loc)) => {
            let files = [
                pack_path(segments_dir, loc.pack),
                crate::segment::file::segment_path(segments_dir, loc.pack),
            ];
            let len = files
                .iter()
                .find_map(|path| record_len_at(path, &loc, key))?;
            let found = PackLoc {
                len,
                key_len: u16::try_from(key.len()).ok()?,
                ..loc
            };
            Some(if found == loc {
                Bytes::copy_from_slice(value)
            } else {
                encode_packed(found)
            })
        }
        Err(_) => None,
    }
}

/// The payload length of the record at `loc`'s offset in the file at `path`, if it decodes
/// whole (checksum included) and holds `key`. The record's own header says how long it is:
/// `loc`'s lengths are not trusted.
fn record_len_at(path: &Path, loc: &PackLoc, key: &[u8]) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    let exact = crate::segment::Alignment::new(1).ok()?;
    let read = |len: usize| {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, u64::from(loc.offset))
            .ok()
            .map(|()| buf)
    };
    let head = read(crate::segment::record::HEADER_LEN + key.len())?;
    let whole = match crate::segment::decode_header(&head, 0, exact) {
        Ok(_) => head,
        Err(crate::segment::RecordError::Truncated { needed, .. }) => read(needed)?,
        Err(_) => return None,
    };
    let record = crate::segment::decode(&whole, 0, exact).ok()?;
    let data = record.payload.data()?;
    (record.key == key && record.next_offset == whole.len()).then_some(())?;
    u32::try_from(data.len()).ok()
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

    /// A sha2-256 multihash key (0x12, 32, digest) for tests; its digest need not match.
    fn key(n: u8) -> Vec<u8> {
        let mut key = vec![0x12, 32];
        key.extend_from_slice(&[n; 32]);
        key
    }

    /// A repair keeps a packed entry whose record is intact, rebuilds one whose lengths
    /// were damaged from the record's own header, and drops one that points at another
    /// record, a damaged record or a missing pack.
    #[test]
    fn sound_entries_are_kept_or_rebuilt_from_their_record() {
        use crate::segment::{Alignment, Payload, encode_at};
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 5000];
        let mut buf = vec![0u8; 8192];
        let offset = 64;
        let len = encode_at(
            &mut buf,
            offset,
            1,
            &key(1),
            Payload::Data(&data),
            Alignment::WORD,
        )
        .unwrap();
        let path = pack_path(dir.path(), 3);
        std::fs::write(&path, &buf).unwrap();
        let loc = PackLoc {
            pack: 3,
            offset: offset as u32,
            len: 5000,
            key_len: 34,
        };
        let exact = encode_packed(loc);
        assert_eq!(
            sound_entry(&key(1), &exact, dir.path()),
            Some(exact.clone())
        );
        for damaged_len in [5001, 4999, 1 << 20] {
            let damaged = encode_packed(PackLoc {
                len: damaged_len,
                ..loc
            });
            assert_eq!(
                sound_entry(&key(1), &damaged, dir.path()),
                Some(exact.clone()),
                "len {damaged_len}"
            );
        }
        assert_eq!(sound_entry(&key(2), &exact, dir.path()), None, "other key");
        let elsewhere = encode_packed(PackLoc {
            offset: (offset + 8) as u32,
            ..loc
        });
        assert_eq!(sound_entry(&key(1), &elsewhere, dir.path()), None);
        let missing = encode_packed(PackLoc { pack: 4, ..loc });
        assert_eq!(sound_entry(&key(1), &missing, dir.path()), None);
        buf[offset + len - 20] ^= 1;
        std::fs::write(&path, &buf).unwrap();
        assert_eq!(sound_entry(&key(1), &exact, dir.path()), None, "damaged");
    }

    #[test]
    fn entries_round_trip() {
        let loc = PackLoc {
            pack: 7,
            offset: 1 << 30,
            len: 262_144,
            key_len: 34,
        };
        assert_eq!(
            decode(&key(1), encode_packed(loc)).unwrap(),
            Entry::Packed(loc)
        );
        assert_eq!(peek(&encode_packed(loc)).unwrap(), (262_144, Some(loc)));
        for data in [&b""[..], b"x", &[1u8; 16384][..]] {
            let value = encode_inline(&key(1), data);
            assert_eq!(value.len(), INLINE_HEADER_LEN + data.len());
            assert_eq!(
                decode(&key(1), value.clone()).unwrap(),
                Entry::Inline(Bytes::copy_from_slice(data))
            );
            assert_eq!(peek(&value).unwrap(), (data.len() as u64, None));
        }
        assert_eq!(loc.record_len(), 28 + 34 + 262_144);
    }

    /// Stores written before inline entries carried a checksum still read: their blocks come
    /// back unchecked, for the reader to hash against the key.
    #[test]
    fn entries_of_the_format_before_the_checksum_still_read() {
        for data in [&b""[..], b"x", &[1u8; 4096][..]] {
            let value = encode_inline_unchecked(data);
            assert_eq!(value[0], 0, "the old format's tag");
            assert_eq!(
                decode(&key(1), value.clone()).unwrap(),
                Entry::InlineUnchecked(Bytes::copy_from_slice(data))
            );
            assert_eq!(peek(&value).unwrap(), (data.len() as u64, None));
        }
    }

    #[test]
    fn an_inline_block_under_another_key_is_refused() {
        let value = encode_inline(&key(1), b"block");
        assert!(matches!(
            decode(&key(2), value.clone()),
            Err(EntryError::Checksum { .. })
        ));
        assert!(matches!(
            decode(&key(1)[..33], value),
            Err(EntryError::Checksum { .. })
        ));
    }

    #[test]
    fn other_values_are_refused() {
        let k = key(1);
        assert_eq!(decode(&k, Bytes::new()), Err(EntryError::Empty));
        assert_eq!(
            decode(&k, Bytes::from_static(&[9, 1, 2])),
            Err(EntryError::UnknownTag(9))
        );
        assert_eq!(
            decode(&k, Bytes::from_static(&[1, 0, 0])),
            Err(EntryError::BadLength(3))
        );
        assert_eq!(peek(&[1; 16]), Err(EntryError::BadLength(16)));
        assert_eq!(
            decode(&k, Bytes::from_static(&[2, 0, 0])),
            Err(EntryError::TooShort(3))
        );
        assert_eq!(peek(&[2; 8]), Err(EntryError::TooShort(8)));
    }

    proptest::proptest! {
        /// Any one damaged byte of an inline entry (a flipped bit, or a cut) is refused or, when
        /// it lands on the tag, read as another kind of entry: never served as the block.
        #[test]
        fn a_damaged_inline_entry_is_never_served(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
            at in proptest::num::usize::ANY,
            bit in 0u8..8,
            cut in proptest::bool::ANY,
        ) {
            let k = key(3);
            let mut value = encode_inline(&k, &data).to_vec();
            let at = at % value.len();
            if cut {
                value.truncate(at);
            } else {
                value[at] ^= 1 << bit;
            }
            match decode(&k, Bytes::from(value)) {
                Ok(Entry::Inline(served)) => proptest::prop_assert!(
                    false, "damaged entry served {} bytes", served.len()
                ),
                // A flipped tag: an old-format entry (the reader hashes it against the key,
                // which the checksum bytes now in front of the block fail) or a packed one of
                // the wrong length.
                Ok(Entry::InlineUnchecked(bytes)) => {
                    proptest::prop_assert_ne!(&bytes[..], &data[..]);
                }
                Ok(Entry::Packed(_)) => proptest::prop_assert!(data.len() + 9 == PACKED_LEN),
                Err(_) => {}
            }
        }
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
