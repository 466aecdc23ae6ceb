//! What can be wrong with a segment record.

use std::fmt;

use super::record::MAGIC;

/// Which length field of a record is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthField {
    /// The key (multihash) length.
    Key,
    /// The payload (block data) length.
    Payload,
}

impl fmt::Display for LengthField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthField::Key => "key",
            LengthField::Payload => "payload",
        })
    }
}

/// Why a record could not be encoded or decoded.
///
/// Every variant about a record carries `offset`, the byte offset in the segment buffer where
/// that record starts (or would have started), so recovery can truncate or report there.
/// Nothing here is retryable: the same bytes give the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The header at `offset` is all zero bytes: no record was ever written there. In a
    /// preallocated segment this is the normal end of the records.
    #[error("no record at offset {offset}: the space is unwritten (all zero)")]
    Unwritten {
        /// Where the record would start.
        offset: usize,
    },
    /// The first four bytes are not [`MAGIC`]: this is not the start of a record.
    #[error("bad magic at offset {offset}: found {found:#010x}, expected {MAGIC:#010x}")]
    BadMagic {
        /// Where the record starts.
        offset: usize,
        /// The value found instead.
        found: u32,
    },
    /// The record was written in a format version this code does not read.
    #[error("unsupported record format version {version} at offset {offset}")]
    UnsupportedVersion {
        /// Where the record starts.
        offset: usize,
        /// The version byte found.
        version: u8,
    },
    /// The flags byte has bits this format version does not define.
    #[error("unknown flag bits {flags:#04x} in the record at offset {offset}")]
    UnknownFlags {
        /// Where the record starts.
        offset: usize,
        /// The whole flags byte.
        flags: u8,
    },
    /// A key or payload length is outside what the format allows (an empty key, a key or
    /// payload over its limit, or a tombstone with a payload).
    #[error("{field} length {len} out of range {min}..={max} in the record at offset {offset}")]
    LengthOutOfRange {
        /// Where the record starts.
        offset: usize,
        /// Which length.
        field: LengthField,
        /// The length found or given.
        len: u64,
        /// The smallest length allowed here.
        min: u64,
        /// The largest length allowed here.
        max: u64,
    },
    /// The buffer ends before the record (header, key, payload and padding) does.
    #[error("record at offset {offset} truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Where the record starts.
        offset: usize,
        /// The record's full encoded length, or the header length if the header is cut.
        needed: usize,
        /// The bytes left in the buffer from `offset`.
        available: usize,
    },
    /// The stored checksum does not match the header fields, key and payload.
    #[error(
        "checksum mismatch in the record at offset {offset}: stored {stored:#018x}, computed {computed:#018x}"
    )]
    ChecksumMismatch {
        /// Where the record starts.
        offset: usize,
        /// The checksum in the header.
        stored: u64,
        /// The checksum of the bytes as read.
        computed: u64,
    },
    /// A padding byte after the payload is not zero: something wrote over this record's space.
    #[error("non-zero padding byte at offset {at} in the record at offset {offset}")]
    NonZeroPadding {
        /// Where the record starts.
        offset: usize,
        /// The first non-zero padding byte.
        at: usize,
    },
    /// The space at `offset` is unwritten but non-zero bytes follow at `at`: a later write
    /// landed while an earlier one did not.
    #[error("no record at offset {offset}, yet non-zero bytes follow at offset {at}")]
    StrayData {
        /// Where the missing record would start.
        offset: usize,
        /// The first non-zero byte after it.
        at: usize,
    },
    /// A record was asked to start at an offset that is not a multiple of the alignment.
    #[error("offset {offset} is not a multiple of the record alignment {align}")]
    Misaligned {
        /// The offset asked for.
        offset: usize,
        /// The alignment in bytes.
        align: usize,
    },
    /// The destination buffer has no room for the record; nothing was written.
    #[error("no room for a {needed}-byte record at offset {offset}: {available} bytes left")]
    NoSpace {
        /// Where the record would start.
        offset: usize,
        /// The record's encoded length.
        needed: usize,
        /// The bytes left in the buffer from `offset`.
        available: usize,
    },
    /// An alignment that is not a power of two up to [`Alignment::MAX`](super::Alignment::MAX).
    #[error("invalid record alignment {align}: must be a power of two up to 65536")]
    InvalidAlignment {
        /// The value given.
        align: usize,
    },
}
