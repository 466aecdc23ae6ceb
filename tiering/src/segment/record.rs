//! The on-disk format of one hot-segment record.
//!
//! A segment is a sequence of records, each starting at a multiple of the segment's record
//! [`Alignment`] (8 bytes for hot segments: [`Alignment::WORD`]), followed by unwritten (zero)
//! space up to the preallocated end. A record is a fixed 28-byte header, the key (the block's
//! multihash bytes), the payload (the block's data, empty for a tombstone), then zero padding
//! up to the next multiple of the alignment (so at most 7 bytes: records are never padded to
//! a sector; the writer's 4096-byte O_DIRECT granularity is its own business). All integers
//! are little-endian.
//!
//! | offset          | size          | field       | meaning                                            |
//! |-----------------|---------------|-------------|----------------------------------------------------|
//! | 0               | 4             | magic       | [`MAGIC`] (`"IPFr"` in a hex dump), never zero     |
//! | 4               | 1             | version     | [`VERSION`]                                        |
//! | 5               | 1             | flags       | bit 0 = [`FLAG_TOMBSTONE`]; other bits must be 0   |
//! | 6               | 2             | key_len     | u16, 1..=[`MAX_KEY_LEN`]                           |
//! | 8               | 4             | payload_len | u32, 0..=[`MAX_PAYLOAD_LEN`]; 0 for a tombstone    |
//! | 12              | 8             | seq         | u64 sequence number, monotonic per shard           |
//! | 20              | 8             | checksum    | xxh3-64 of bytes 0..20, then key, then payload     |
//! | 28              | key_len       | key         | the block's multihash                              |
//! | 28 + key_len    | payload_len   | payload     | the block's bytes                                  |
//! | 28 + k + p      | pad           | padding     | zeros up to the next multiple of the alignment     |
//!
//! Why it is shaped this way:
//! - The magic is never zero and unwritten space is, so the end of the records in a
//!   preallocated segment is told apart from a record.
//! - The checksum covers every header field before it, so a flipped length, flag or sequence
//!   number is caught, not only damage to the data. Padding is outside the checksum but must be
//!   zero, and [`decode`] checks it, so no byte of a record's extent can change unnoticed.
//! - The sequence number grows by one per record written, so file order (segments by number,
//!   offsets within) is sequence order; recovery replays in file order, and the writer resumes
//!   after the highest sequence number of an undamaged record.
//! - A record does not say whether it is durable: the writer starts every append with a mark
//!   record naming the position the log was durable up to (see [`recover`](super::recover)),
//!   and recovery uses the highest mark to tell a torn tail (truncate) from corruption
//!   (report).

use super::align::Alignment;
use super::error::{LengthField, RecordError};

/// Marks the start of a record. Not zero, so unwritten (zeroed) space never looks like a record,
/// and its bytes read "IPFr" in a hex dump of a segment.
pub const MAGIC: u32 = u32::from_le_bytes(*b"IPFr");

/// The record format version written by this code, and the only one it reads. A layout change
/// bumps it so old code refuses new records instead of misreading them.
pub const VERSION: u8 = 1;

/// Flags bit 0: the record is a tombstone (a delete of its key) and has an empty payload.
pub const FLAG_TOMBSTONE: u8 = 0b0000_0001;

/// Every flag bit this version defines; a record with any other bit set is refused, so a
/// future flag cannot be silently ignored.
const KNOWN_FLAGS: u8 = FLAG_TOMBSTONE;

/// The header's length in bytes: magic 4, version 1, flags 1, key_len 2, payload_len 4, seq 8,
/// checksum 8.
pub const HEADER_LEN: usize = 28;

/// The header bytes covered by the checksum: every field before the checksum itself.
const CHECKSUMMED_HEADER_LEN: usize = 20;

/// The longest key: far above any multihash (the largest digests in the code table are 64
/// bytes; identity multihashes hold at most 128 bytes of data), yet small enough that a garbage
/// length read from a damaged header is refused before any checksum work.
pub const MAX_KEY_LEN: usize = 1024;

/// The longest payload: 1 GiB, far above the engine's block size limit (2 MiB by default,
/// configurable), and small enough that a record's length always fits in a 32-bit `usize` and
/// the offset arithmetic cannot overflow.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// A record's value: block data, or a tombstone marking its key deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload<'a> {
    /// The block's bytes (possibly empty: the empty block is a valid block).
    Data(&'a [u8]),
    /// A delete record: no bytes are stored.
    Tombstone,
}

impl<'a> Payload<'a> {
    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Payload::Tombstone)
    }

    /// The block's bytes, or `None` for a tombstone.
    pub fn data(&self) -> Option<&'a [u8]> {
        match *self {
            Payload::Data(data) => Some(data),
            Payload::Tombstone => None,
        }
    }

    /// The bytes stored on disk for this payload (empty for a tombstone).
    fn bytes(&self) -> &'a [u8] {
        self.data().unwrap_or(&[])
    }
}

/// One record read back by [`decode`], borrowing its key and payload from the segment buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Where this record starts in the buffer.
    pub offset: usize,
    /// The record's sequence number.
    pub seq: u64,
    /// The key (the block's multihash bytes).
    pub key: &'a [u8],
    /// The block's bytes, or a tombstone.
    pub payload: Payload<'a>,
    /// Where the next record would start: the end of this record's padding, a multiple of the
    /// alignment.
    pub next_offset: usize,
}

impl Decoded<'_> {
    /// Whether this record is a tombstone (a delete of its key).
    pub fn is_tombstone(&self) -> bool {
        self.payload.is_tombstone()
    }
}

/// The number of bytes a record with these key and payload lengths takes on disk, padding
/// included: always a multiple of `align`.
///
/// Lengths beyond [`MAX_KEY_LEN`] / [`MAX_PAYLOAD_LEN`] cannot be encoded; for them the result
/// saturates near `usize::MAX` instead of overflowing.
pub fn encoded_len(key_len: usize, payload_len: usize, align: Alignment) -> usize {
    let unpadded = HEADER_LEN
        .saturating_add(key_len)
        .saturating_add(payload_len);
    align
        .round_up(unpadded)
        .unwrap_or(usize::MAX & !(align.get() - 1))
}

/// Appends one record, padded to `align`, to the end of `buf`, and returns how many bytes it
/// appended (its [`encoded_len`]). The record starts at the old `buf.len()`.
///
/// # Errors
/// [`RecordError::Misaligned`] if `buf.len()` is not a multiple of `align`, and
/// [`RecordError::LengthOutOfRange`] for an empty key or a key or payload over its limit.
/// On error `buf` is unchanged.
pub fn encode_into(
    buf: &mut Vec<u8>,
    seq: u64,
    key: &[u8],
    payload: Payload<'_>,
    align: Alignment,
) -> Result<usize, RecordError> {
    let offset = buf.len();
    check_encodable(offset, key, payload, align)?;
    let len = encoded_len(key.len(), payload.bytes().len(), align);
    buf.resize(offset + len, 0);
    encode_at(buf, offset, seq, key, payload, align)
}

/// Writes one record, padded to `align`, at `buf[offset..]`, overwriting the padding with zeros,
/// and returns its length (its [`encoded_len`]). Bytes outside the record are not touched.
///
/// This is the form for filling a fixed-size (DMA) write buffer; `offset` is relative to the
/// buffer, so the buffer itself must start at an aligned position in the segment.
///
/// # Errors
/// [`RecordError::Misaligned`] if `offset` is not a multiple of `align`,
/// [`RecordError::LengthOutOfRange`] for an empty key or a key or payload over its limit, and
/// [`RecordError::NoSpace`] if the record does not fit. On error `buf` is unchanged.
pub fn encode_at(
    buf: &mut [u8],
    offset: usize,
    seq: u64,
    key: &[u8],
    payload: Payload<'_>,
    align: Alignment,
) -> Result<usize, RecordError> {
    check_encodable(offset, key, payload, align)?;
    let data = payload.bytes();
    let len = encoded_len(key.len(), data.len(), align);
    let available = buf.len().saturating_sub(offset);
    let Some(dst) = buf.get_mut(offset..).and_then(|rest| rest.get_mut(..len)) else {
        return Err(RecordError::NoSpace {
            offset,
            needed: len,
            available,
        });
    };

    let (header, rest) = dst.split_at_mut(HEADER_LEN);
    header.copy_from_slice(&header_bytes(seq, key, payload));
    let (key_dst, rest) = rest.split_at_mut(key.len());
    key_dst.copy_from_slice(key);
    let (data_dst, padding) = rest.split_at_mut(data.len());
    data_dst.copy_from_slice(data);
    padding.fill(0);
    Ok(len)
}

/// The header of a record, for writers that copy key and payload into place themselves (a
/// record straddling two DMA buffers): the bytes written are `header`, `key`, `payload`, then
/// zeros up to [`encoded_len`].
///
/// # Errors
/// [`RecordError::LengthOutOfRange`] for an empty key or a key or payload over its limit.
pub fn encode_header(
    seq: u64,
    key: &[u8],
    payload: Payload<'_>,
) -> Result<[u8; HEADER_LEN], RecordError> {
    check_lengths(0, key.len(), payload.bytes().len(), payload.is_tombstone())?;
    Ok(header_bytes(seq, key, payload))
}

/// The header for lengths already checked.
fn header_bytes(seq: u64, key: &[u8], payload: Payload<'_>) -> [u8; HEADER_LEN] {
    let data = payload.bytes();
    let flags = if payload.is_tombstone() {
        FLAG_TOMBSTONE
    } else {
        0
    };
    let mut header = [0u8; HEADER_LEN];
    // Both casts are lossless: callers checked the lengths against MAX_KEY_LEN (< u16::MAX)
    // and MAX_PAYLOAD_LEN (< u32::MAX).
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4] = VERSION;
    header[5] = flags;
    header[6..8].copy_from_slice(&(key.len() as u16).to_le_bytes());
    header[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
    header[12..20].copy_from_slice(&seq.to_le_bytes());
    let checksum = checksum(&header[..CHECKSUMMED_HEADER_LEN], key, data);
    header[20..28].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// A record's header read by [`decode_header`], without the checksum over its key and
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Where the record starts.
    pub offset: usize,
    /// The record's sequence number.
    pub seq: u64,
    /// The key (the block's multihash bytes), unchecked.
    pub key: &'a [u8],
    /// Whether the record is a tombstone.
    pub tombstone: bool,
    /// The payload's length (0 for a tombstone).
    pub payload_len: usize,
    /// The checksum the header stores.
    stored: u64,
    /// Where the next record would start (see [`Decoded::next_offset`]).
    pub next_offset: usize,
}

/// A running xxh3-64 over the headers and keys of a segment's records, in file order. The
/// writer keeps one for the segment it appends to; a walk over the headers
/// ([`walk_headers`](super::walk_headers)) computes the same, and the two agree only if every
/// header and key reads as it was written, none skipped.
#[derive(Clone, Default)]
pub struct HeaderDigest(xxhash_rust::xxh3::Xxh3);

impl HeaderDigest {
    /// Adds one record's header and key.
    pub fn add(&mut self, header: &[u8], key: &[u8]) {
        self.0.update(header);
        self.0.update(key);
    }

    /// The digest of the records added so far.
    pub fn value(&self) -> u64 {
        self.0.digest()
    }
}

/// Reads the header and key of the record at `buf[offset..]`, checking all the format
/// promises but the checksum and the padding, and that the record's extent lies within `buf`,
/// without reading its payload.
///
/// Only for walks over records this process has just written and synced (a sealed segment's
/// hint, compaction's list of what a segment holds), where reading every payload would cost
/// as many disk reads as the segment has bytes: whoever serves or copies a payload must still
/// [`decode`] it. Damage to the payload goes unnoticed here; damage to a length usually
/// derails the walk into bytes that are not a header, which callers treat as a reason to fall
/// back to a checked scan.
///
/// # Errors
/// As [`decode`], except [`RecordError::ChecksumMismatch`] and [`RecordError::NonZeroPadding`].
pub fn decode_header(
    buf: &[u8],
    offset: usize,
    align: Alignment,
) -> Result<Header<'_>, RecordError> {
    if !align.is_aligned(offset) {
        return Err(RecordError::Misaligned {
            offset,
            align: align.get(),
        });
    }
    let rest = buf.get(offset..).unwrap_or(&[]);
    let truncated = |needed: usize| RecordError::Truncated {
        offset,
        needed,
        available: rest.len(),
    };
    let head = &rest[..rest.len().min(HEADER_LEN)];
    if !head.is_empty() && first_nonzero(head).is_none() {
        return Err(RecordError::Unwritten { offset });
    }
    let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
        return Err(truncated(HEADER_LEN));
    };

    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if magic != MAGIC {
        return Err(RecordError::BadMagic {
            offset,
            found: magic,
        });
    }
    let version = header[4];
    if version != VERSION {
        return Err(RecordError::UnsupportedVersion { offset, version });
    }
    let flags = header[5];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RecordError::UnknownFlags { offset, flags });
    }
    let tombstone = flags & FLAG_TOMBSTONE != 0;
    let key_len = usize::from(u16::from_le_bytes([header[6], header[7]]));
    let payload_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    check_lengths(offset, key_len, payload_len, tombstone)?;
    let seq = u64::from_le_bytes([
        header[12], header[13], header[14], header[15], header[16], header[17], header[18],
        header[19],
    ]);
    let stored = u64::from_le_bytes([
        header[20], header[21], header[22], header[23], header[24], header[25], header[26],
        header[27],
    ]);
    let len = encoded_len(key_len, payload_len, align);
    if rest.len() < len {
        return Err(truncated(len));
    }
    Ok(Header {
        offset,
        seq,
        key: &rest[HEADER_LEN..HEADER_LEN + key_len],
        tombstone,
        payload_len,
        stored,
        next_offset: offset + len,
    })
}

/// Reads the record starting at `buf[offset..]`, checking everything the format promises:
/// magic, version, flags, lengths, checksum and zero padding. The returned key and payload
/// borrow from `buf`.
///
/// # Errors
/// - [`RecordError::Misaligned`]: `offset` is not a multiple of `align`.
/// - [`RecordError::Unwritten`]: the header bytes at `offset` are all zero (no record).
/// - [`RecordError::Truncated`]: `buf` ends before the record's padding does.
/// - [`RecordError::BadMagic`], [`RecordError::UnsupportedVersion`],
///   [`RecordError::UnknownFlags`], [`RecordError::LengthOutOfRange`],
///   [`RecordError::ChecksumMismatch`], [`RecordError::NonZeroPadding`]: the bytes are not a
///   record this code wrote, or were damaged after.
pub fn decode(buf: &[u8], offset: usize, align: Alignment) -> Result<Decoded<'_>, RecordError> {
    let header = decode_header(buf, offset, align)?;
    let key_len = header.key.len();
    let record = &buf[offset..header.next_offset];
    let (fields, body) = record.split_at(HEADER_LEN);
    let (key, body) = body.split_at(key_len);
    let (data, padding) = body.split_at(header.payload_len);

    let computed = checksum(&fields[..CHECKSUMMED_HEADER_LEN], key, data);
    if computed != header.stored {
        return Err(RecordError::ChecksumMismatch {
            offset,
            stored: header.stored,
            computed,
        });
    }
    if let Some(i) = first_nonzero(padding) {
        return Err(RecordError::NonZeroPadding {
            offset,
            at: offset + HEADER_LEN + key_len + header.payload_len + i,
        });
    }

    Ok(Decoded {
        offset,
        seq: header.seq,
        key,
        payload: if header.tombstone {
            Payload::Tombstone
        } else {
            Payload::Data(data)
        },
        next_offset: header.next_offset,
    })
}

/// The checks shared by both encoders, done before any byte is written.
fn check_encodable(
    offset: usize,
    key: &[u8],
    payload: Payload<'_>,
    align: Alignment,
) -> Result<(), RecordError> {
    if !align.is_aligned(offset) {
        return Err(RecordError::Misaligned {
            offset,
            align: align.get(),
        });
    }
    check_lengths(
        offset,
        key.len(),
        payload.bytes().len(),
        payload.is_tombstone(),
    )
}

/// The length rules, the same for writing and reading: a key of 1..=MAX_KEY_LEN bytes (a
/// multihash is never empty), a payload of at most MAX_PAYLOAD_LEN, none for a tombstone.
fn check_lengths(
    offset: usize,
    key_len: usize,
    payload_len: usize,
    tombstone: bool,
) -> Result<(), RecordError> {
    if key_len == 0 || key_len > MAX_KEY_LEN {
        return Err(RecordError::LengthOutOfRange {
            offset,
            field: LengthField::Key,
            len: key_len as u64,
            min: 1,
            max: MAX_KEY_LEN as u64,
        });
    }
    let max_payload = if tombstone { 0 } else { MAX_PAYLOAD_LEN };
    if payload_len > max_payload {
        return Err(RecordError::LengthOutOfRange {
            offset,
            field: LengthField::Payload,
            len: payload_len as u64,
            min: 0,
            max: max_payload as u64,
        });
    }
    Ok(())
}

/// xxh3-64 over the checksummed header fields, the key and the payload, in that order (the same
/// value as a one-shot xxh3-64 of their concatenation). Every read of a record pays it, so it
/// uses the hasher that picks AVX2/NEON at run time (see the workspace's Cargo.toml).
fn checksum(header_fields: &[u8], key: &[u8], payload: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = twox_hash::XxHash3_64::with_seed(0);
    hasher.write(header_fields);
    hasher.write(key);
    hasher.write(payload);
    hasher.finish()
}

/// The index of the first non-zero byte of `bytes`, if any.
pub(super) fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    // OR-folding whole chunks has no early exit inside a chunk, so the compiler vectorizes it;
    // only a chunk known to hold a non-zero byte is searched byte by byte.
    const CHUNK: usize = 256;
    bytes
        .chunks(CHUNK)
        .enumerate()
        .find(|(_, chunk)| chunk.iter().fold(0u8, |acc, &b| acc | b) != 0)
        .and_then(|(i, chunk)| {
            chunk
                .iter()
                .position(|&b| b != 0)
                .map(|pos| i * CHUNK + pos)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn constants_agree_with_the_layout() {
        assert_eq!(HEADER_LEN, 4 + 1 + 1 + 2 + 4 + 8 + 8);
        assert_eq!(CHECKSUMMED_HEADER_LEN, HEADER_LEN - 8);
        assert_eq!(&MAGIC.to_le_bytes(), b"IPFr");
        assert!(MAX_KEY_LEN <= usize::from(u16::MAX));
        assert!(MAX_PAYLOAD_LEN <= u32::MAX as usize);
        // The largest record still fits a 32-bit usize.
        let largest = HEADER_LEN + MAX_KEY_LEN + MAX_PAYLOAD_LEN + Alignment::MAX;
        assert!(largest <= u32::MAX as usize);
    }

    #[test]
    fn length_limits_are_enforced_both_ways() {
        assert!(check_lengths(0, 1, 0, false).is_ok());
        assert!(check_lengths(0, MAX_KEY_LEN, MAX_PAYLOAD_LEN, false).is_ok());
        assert!(check_lengths(0, 1, 0, true).is_ok());
        let err = check_lengths(8, 0, 0, false).unwrap_err();
        assert!(matches!(
            err,
            RecordError::LengthOutOfRange {
                offset: 8,
                field: LengthField::Key,
                len: 0,
                ..
            }
        ));
        let err = check_lengths(0, MAX_KEY_LEN + 1, 0, false).unwrap_err();
        assert!(matches!(
            err,
            RecordError::LengthOutOfRange {
                field: LengthField::Key,
                ..
            }
        ));
        let err = check_lengths(0, 4, MAX_PAYLOAD_LEN + 1, false).unwrap_err();
        assert!(matches!(
            err,
            RecordError::LengthOutOfRange {
                field: LengthField::Payload,
                max,
                ..
            } if max == MAX_PAYLOAD_LEN as u64
        ));
        let err = check_lengths(0, 4, 1, true).unwrap_err();
        assert!(matches!(
            err,
            RecordError::LengthOutOfRange {
                field: LengthField::Payload,
                max: 0,
                ..
            }
        ));
    }

    #[test]
    fn first_nonzero_finds_the_first_byte_across_chunks() {
        assert_eq!(first_nonzero(&[]), None);
        let mut bytes = vec![0u8; 1000];
        assert_eq!(first_nonzero(&bytes), None);
        for at in [0, 1, 255, 256, 257, 511, 999] {
            bytes.fill(0);
            bytes[at] = 0x10;
            bytes[999] = 1;
            assert_eq!(first_nonzero(&bytes), Some(at));
        }
    }

    /// Records written before the checksum moved to twox-hash were checked with xxhash-rust:
    /// both must give the same xxh3-64 on every length class (xxh3 has separate paths up to
    /// 16, 128 and 240 bytes, then stripes and blocks of 1 KiB).
    #[test]
    fn streaming_checksum_equals_one_shot() {
        let header = [7u8; CHECKSUMMED_HEADER_LEN];
        let key = [1u8, 2, 3];
        for len in [0, 1, 100, 200, 217, 218, 1000, 1024, 4096, 65_543, 262_157] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut all = header.to_vec();
            all.extend_from_slice(&key);
            all.extend_from_slice(&payload);
            assert_eq!(
                checksum(&header, &key, &payload),
                xxhash_rust::xxh3::xxh3_64(&all),
                "payload of {len} bytes"
            );
        }
    }
}
