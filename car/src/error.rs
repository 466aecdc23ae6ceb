//! What can go wrong reading or writing a CAR file: one error type, every variant naming the
//! byte offset at fault and keeping the lower layer's error as its source.

use std::collections::TryReserveError;
use std::convert::Infallible;

use ipfrs_core_types::{BlockError, Cid};
use serde_ipld_dagcbor::{DecodeError, EncodeError};

/// What is wrong with a CAR file. Every variant that concerns the file's bytes names the byte
/// offset (from the start of the file) of the header or section at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// Reading or writing failed.
    #[error("I/O error at byte {offset}: {source}")]
    Io {
        /// Where the operation was.
        offset: u64,
        /// The error.
        source: std::io::Error,
    },
    /// The file ends inside a header or section.
    #[error("truncated {what} at byte {offset}: {needed} bytes expected, the file ends first")]
    Truncated {
        /// "CAR header", "section length", "block section", ...
        what: &'static str,
        /// Where the truncated item starts.
        offset: u64,
        /// Bytes the item needs.
        needed: u64,
    },
    /// A varint longer than 9 bytes or over 2^63 (the CAR spec's limit), or not minimal.
    #[error("malformed varint ({what}) at byte {offset}")]
    BadVarint {
        /// What the varint was meant to give.
        what: &'static str,
        /// Where it starts.
        offset: u64,
    },
    /// The header's length is zero or larger than any sane header.
    #[error("bad CAR header length {length} at byte {offset} (limit {limit})")]
    HeaderLength {
        /// The declared length.
        length: u64,
        /// Where the length varint starts.
        offset: u64,
        /// The largest accepted.
        limit: u64,
    },
    /// The header is not the DAG-CBOR map the spec requires, or a CARv2 header's offsets do
    /// not fit together.
    #[error("bad CAR header at byte {offset}: {reason}")]
    BadHeader {
        /// Where the header starts.
        offset: u64,
        /// What is wrong with it.
        #[source]
        reason: HeaderFault,
    },
    /// The version is neither 1 nor 2.
    #[error("unsupported CAR version {version} at byte {offset}")]
    UnsupportedVersion {
        /// The version found.
        version: u64,
        /// Where the header starts.
        offset: u64,
    },
    /// A section's length is zero, larger than the block limit, or runs past the CARv2
    /// payload.
    #[error("bad section length {length} at byte {offset}: {reason}")]
    SectionLength {
        /// The declared length.
        length: u64,
        /// Where the section starts.
        offset: u64,
        /// Why it is refused.
        #[source]
        reason: SectionLengthFault,
    },
    /// A section's CID does not parse.
    #[error("bad CID in section at byte {offset}: {source}")]
    BadCid {
        /// Where the section starts.
        offset: u64,
        /// What the parser said.
        source: cid::Error,
    },
    /// The block's bytes do not hash to its CID, or its hash is unsupported.
    #[error("bad block {cid} in section at byte {offset}: {source}")]
    BadBlock {
        /// The CID the section claims (boxed: CIDs are large and errors travel by value).
        cid: Box<Cid>,
        /// Where the section starts.
        offset: u64,
        /// Why the block was refused.
        source: Box<BlockError>,
    },
}

impl CarError {
    /// The byte offset the error names, if it concerns the file's content.
    pub fn offset(&self) -> u64 {
        match self {
            CarError::Io { offset, .. }
            | CarError::Truncated { offset, .. }
            | CarError::BadVarint { offset, .. }
            | CarError::HeaderLength { offset, .. }
            | CarError::BadHeader { offset, .. }
            | CarError::UnsupportedVersion { offset, .. }
            | CarError::SectionLength { offset, .. }
            | CarError::BadCid { offset, .. }
            | CarError::BadBlock { offset, .. } => *offset,
        }
    }
}

/// Why a CAR header is refused ([`CarError::BadHeader`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderFault {
    /// The header does not decode as DAG-CBOR `{roots, version}`.
    #[error("{0}")]
    Decode(#[source] DecodeError<Infallible>),
    /// The writer could not encode the header (it could not allocate).
    #[error("{0}")]
    Encode(#[source] EncodeError<TryReserveError>),
    /// A CARv1 header without its `roots`.
    #[error("CARv1 header without roots")]
    NoRoots,
    /// A header with version 2 that is not the exact 11-byte CARv2 pragma.
    #[error("CARv2 pragma is not the 11-byte {{version: 2}}")]
    Pragma,
    /// The CARv2 payload would start inside the pragma or the fixed header.
    #[error("CARv2 data offset {data_offset} lies inside the header (at least {min})")]
    DataOffsetInsideHeader {
        /// The data offset the header gives.
        data_offset: u64,
        /// The smallest possible: pragma and fixed header.
        min: u64,
    },
    /// The CARv2 data offset plus its size does not fit in 64 bits.
    #[error("CARv2 data offset + size overflows")]
    DataRangeOverflows,
    /// The payload's CARv1 header ends after the CARv2 data size.
    #[error("the CARv1 header runs past the CARv2 data size")]
    PastDataSize,
}

/// Why a section's length is refused ([`CarError::SectionLength`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionLengthFault {
    /// Zero: a section holds at least a CID.
    #[error("a section holds at least a CID")]
    Empty,
    /// Longer than [`ReadOptions::max_block_size`](crate::ReadOptions) plus room for a CID.
    #[error("larger than the block limit ({max_block_size} bytes) plus a CID")]
    OverLimit {
        /// The block limit in force.
        max_block_size: usize,
    },
    /// The section would end after the CARv2 payload.
    #[error("runs past the CARv2 data end at byte {end}")]
    PastDataEnd {
        /// Where the payload ends.
        end: u64,
    },
}
