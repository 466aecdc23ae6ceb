//! Damage a shard knows of: what recovery found in its hot segments, and what a listing met
//! since. `repo verify` reports it beside the blocks that fail their reads, so a damaged record
//! is named even when no read of its block can be made (its key is gone, or it is not listed).

use std::fmt;

use ipfrs_core_types::key::Key;

/// The most damage entries one shard keeps. Past it, damage is still counted
/// (`corrupt_records`) and reads of damaged blocks still fail, but no more places are listed:
/// a badly damaged disk must not turn into an unbounded report in memory.
pub const MAX_DAMAGE_KEPT: usize = 10_000;

/// Where damaged bytes were found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DamageSite {
    /// A record of a hot segment (`shard-NNN/segments/SEGMENT.seg` at `offset`).
    HotRecord {
        /// The segment number.
        segment: u32,
        /// The record's offset in the segment.
        offset: u64,
    },
    /// The shard's cold backend.
    ColdBackend {
        /// The file or part of the backend, as precisely as the backend can say.
        detail: String,
    },
}

impl fmt::Display for DamageSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageSite::HotRecord { segment, offset } => {
                write!(f, "hot segment {segment} at offset {offset}")
            }
            DamageSite::ColdBackend { detail } => write!(f, "cold backend ({detail})"),
        }
    }
}

/// One damaged place, with the block it held when that could be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The shard whose files hold it.
    pub shard: usize,
    /// Where it is.
    pub site: DamageSite,
    /// The key (multihash bytes) of the block it held, when it could be named.
    pub key: Option<Key>,
    /// Whether `key` is proven: the stored payload hashes to it (or to a key a few bits from
    /// the stored one, which it then replaces). An unproven key is the one the damaged record
    /// carries, most likely right (the payload is what failed) but not certain.
    pub key_proven: bool,
    /// What is wrong, in words.
    pub cause: String,
}
