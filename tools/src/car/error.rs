use ipfrs_storage::{BlockError, Cid};

/// What is wrong with a CAR file. Every variant that concerns the file's bytes names the byte
/// offset (from the start of the file) of the header or section at fault.
#[derive(Debug, thiserror::Error)]
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
    /// A varint longer than 9 bytes or over 2^63 (the CAR spec's limit).
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
    /// The header is not the DAG-CBOR map the spec requires.
    #[error("bad CAR header at byte {offset}: {reason}")]
    BadHeader {
        /// Where the header starts.
        offset: u64,
        /// What the decoder said.
        reason: String,
    },
    /// The version is neither 1 nor 2.
    #[error("unsupported CAR version {version} at byte {offset}")]
    UnsupportedVersion {
        /// The version found.
        version: u64,
        /// Where the header starts.
        offset: u64,
    },
    /// A section's length is zero, shorter than its CID, larger than the block limit, or runs
    /// past the CARv2 payload.
    #[error("bad section length {length} at byte {offset}: {reason}")]
    SectionLength {
        /// The declared length.
        length: u64,
        /// Where the section starts.
        offset: u64,
        /// Why it is refused.
        reason: String,
    },
    /// A section's CID does not parse.
    #[error("bad CID in section at byte {offset}: {reason}")]
    BadCid {
        /// Where the section starts.
        offset: u64,
        /// What the parser said.
        reason: String,
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
