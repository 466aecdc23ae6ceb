use cid::Cid;

/// What is wrong with a block or a CID handed in by a caller.
///
/// Every variant means the request was refused before anything was stored.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// The bytes do not hash to the multihash inside the CID.
    #[error("block data does not match its CID {cid}: the data hashes to a different digest")]
    HashMismatch {
        /// The CID the caller claimed for the data.
        cid: Cid,
    },
    /// The block is larger than the configured limit.
    #[error("block of {size} bytes exceeds the limit of {limit} bytes (Config::max_block_size)")]
    TooLarge {
        /// Size of the refused block.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The multihash code is unknown or not supported by this build.
    #[error("unsupported multihash code 0x{code:x}")]
    UnsupportedHash {
        /// The multihash code found in the CID.
        code: u64,
    },
    /// Bytes or text that do not parse as a CID or a multihash.
    #[error("malformed CID: {reason}")]
    MalformedCid {
        /// What the parser said.
        reason: String,
    },
    /// An identity CID whose inline data is larger than allowed.
    #[error("identity CID carries {size} bytes inline, more than the limit of {limit}")]
    IdentityTooLarge {
        /// Inline data size.
        size: usize,
        /// The limit ([`crate::key::MAX_IDENTITY_SIZE`]).
        limit: usize,
    },
}
