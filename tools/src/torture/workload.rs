//! What the campaign stores: blocks that are a pure function of their index, and the engine
//! configuration that makes segments roll over and compaction run within a short campaign.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipfrs_storage::{BackendKind, Block, Config, Durability, HotTier};
use xxhash_rust::xxh3::xxh3_64;

/// Largest block the campaign writes, and the engine's `max_block_size`: a large block is a
/// sizeable share of a segment, so segments fill in a few dozen writes.
pub const MAX_BLOCK: usize = 64 << 10;

/// Shards of the campaign's store: several, so routing and per-shard recovery are exercised,
/// few, so each shard's segments fill quickly.
pub const SHARDS: usize = 4;

/// Hot segment size: small, so the active segment rolls over every few hundred writes.
pub const SEGMENT_BYTES: u64 = 1 << 20;

/// Hot budget across shards: under two segments per shard, so background compaction runs
/// whenever a shard seals a segment (the engine keeps at least two per shard regardless).
pub const BUDGET_BYTES: u64 = 6 << 20;

/// The durability mode under test, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Durability::Sync`: every acknowledgement follows an fdatasync.
    Sync,
    /// `Durability::Batch`: group commit, acknowledged after the group's sync.
    Batch,
    /// `Durability::None`: acknowledged before any sync.
    None,
}

impl Mode {
    /// The engine setting.
    pub fn durability(self) -> Durability {
        match self {
            Mode::Sync => Durability::Sync,
            // A short delay and a small group, so groups both fill and time out.
            Mode::Batch => Durability::Batch {
                max_delay: Duration::from_millis(2),
                max_ops: 32,
            },
            Mode::None => Durability::None,
        }
    }

    /// Whether an acknowledgement promises that the write survives a crash.
    pub fn acks_are_durable(self) -> bool {
        !matches!(self, Mode::None)
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Batch => "batch",
            Mode::None => "none",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "sync" => Ok(Mode::Sync),
            "batch" => Ok(Mode::Batch),
            "none" => Ok(Mode::None),
            _ => Err(format!(
                "unknown durability {s:?} (expected sync, batch or none)"
            )),
        }
    }
}

/// What the children do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Puts, deletes, puts of deleted blocks, explicit compactions.
    Ops,
    /// The same, with CAR imports (all or nothing, journaled) mixed in: about two
    /// operations in five are imports of generated files, some of them faulty.
    Car,
}

impl Workload {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Ops => "ops",
            Workload::Car => "car",
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Workload, String> {
        match s {
            "ops" => Ok(Workload::Ops),
            "car" => Ok(Workload::Car),
            _ => Err(format!("unknown workload {s:?} (expected ops or car)")),
        }
    }
}

/// The engine configuration of a campaign's store (the parent and every child use the same).
pub fn config(dir: &Path, backend: BackendKind, mode: Mode) -> Config {
    let mut config = Config::new(dir);
    config.backend = backend;
    config.shards = Some(SHARDS);
    config.durability = mode.durability();
    config.max_block_size = MAX_BLOCK;
    // Shards share the machine's cores with the parent and other work: do not pin.
    config.pin_shards = false;
    config.cache_bytes = 4 << 20;
    config.backend_cache_bytes = 8 << 20;
    config.hot_tier = Some(HotTier {
        segment_bytes: SEGMENT_BYTES,
        budget_bytes: BUDGET_BYTES,
        write_chunk_bytes: 256 << 10,
        ..HotTier::default()
    });
    config
}

/// The length of block `index`: half small (up to 1 KiB), a third medium (up to 16 KiB),
/// the rest large (up to [`MAX_BLOCK`]), so records of every size share segments.
pub fn block_len(index: u64) -> usize {
    let h = xxh3_64(&index.to_le_bytes());
    let r = (h >> 32) as usize;
    match h % 100 {
        0..50 => 8 + r % 1016,
        50..85 => 1024 + r % (15 << 10),
        _ => (16 << 10) + r % (MAX_BLOCK - (16 << 10) + 1),
    }
}

/// Bytes of pseudo-random pattern at the start of a block; the rest repeats it. An odd
/// period, so a read shifted by a power of two does not match; and the whole block is
/// covered by the CID's hash anyway. Cheap to build, so a check can rebuild thousands.
const PATTERN: usize = 1011;

/// Block `index`: its bytes depend only on the index (which they begin with, so no two
/// indices share a block), so the parent can rebuild any block it has to check.
pub fn block_data(index: u64) -> Vec<u8> {
    let len = block_len(index);
    let mut data = Vec::with_capacity(len + 8);
    data.extend_from_slice(&index.to_le_bytes());
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while data.len() < len.min(8 + PATTERN) {
        // xorshift64: cheap bytes that differ between indices.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len.min(8 + PATTERN));
    while data.len() < len {
        let take = (len - data.len()).min(data.len() - 8);
        data.extend_from_within(8..8 + take);
    }
    data
}

/// Block `index` as a [`Block`] (CIDv1 raw, sha2-256).
pub fn block(index: u64) -> Block {
    #[allow(clippy::expect_used)]
    Block::new(block_data(index)).expect("a raw sha2-256 block of any bytes is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_distinct_sized_within_limits_and_stable() {
        let mut seen = std::collections::HashSet::new();
        let mut classes = [0usize; 3];
        for i in 0..2000 {
            let b = block(i);
            assert!(
                b.len() >= 8 && b.len() <= MAX_BLOCK,
                "block {i}: {}",
                b.len()
            );
            assert_eq!(b.data().as_ref(), &block_data(i)[..]);
            assert!(seen.insert(*b.cid()), "block {i} repeats an earlier one");
            classes[usize::from(b.len() > 1024) + usize::from(b.len() > 16 << 10)] += 1;
        }
        assert!(classes.iter().all(|&n| n > 100), "size classes {classes:?}");
    }

    #[test]
    fn durability_names_round_trip() {
        for mode in [Mode::Sync, Mode::Batch, Mode::None] {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
        }
        assert!("fsync".parse::<Mode>().is_err());
        for w in [Workload::Ops, Workload::Car] {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
        }
        assert!("tar".parse::<Workload>().is_err());
    }
}
