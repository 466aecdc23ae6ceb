use ipfrs_shards::ShardStats;

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks stored (identity blocks are never stored).
    pub blocks: u64,
    /// Bytes of block data stored.
    pub bytes: u64,
    /// Reads answered by the block caches.
    pub cache_hits: u64,
    /// Reads that went to a cold backend.
    pub cache_misses: u64,
    /// Lookups answered "absent" by a bloom filter without a backend call.
    pub bloom_negatives: u64,
    /// Bytes held by the block caches.
    pub cache_bytes: u64,
    /// Each shard's own figures.
    pub shards: Vec<ShardStats>,
}

impl Stats {
    pub(crate) fn from_shards(shards: Vec<ShardStats>) -> Stats {
        let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum();
        Stats {
            blocks: sum(|s| s.blocks),
            bytes: sum(|s| s.bytes),
            cache_hits: sum(|s| s.cache_hits),
            cache_misses: sum(|s| s.cache_misses),
            bloom_negatives: sum(|s| s.bloom_negatives),
            cache_bytes: sum(|s| s.cache_bytes),
            shards,
        }
    }
}
