use ipfrs_core_types::IoDriver;
use ipfrs_shards::ShardStats;

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Blocks stored (identity blocks are never stored).
    pub blocks: u64,
    /// Bytes of block data stored.
    pub bytes: u64,
    /// Reads answered by the block caches.
    pub cache_hits: u64,
    /// Reads that went to a cold backend.
    pub cache_misses: u64,
    /// Cold reads of packed blocks answered from a cached location, without the backend.
    pub location_hits: u64,
    /// Pack locations the location caches hold.
    pub locations_cached: u64,
    /// Lookups answered "absent" by a bloom filter without a backend call.
    pub bloom_negatives: u64,
    /// Keys read on the caller's thread, without a round trip to a shard.
    pub caller_reads: u64,
    /// Puts written on the caller's thread while their shard committed nothing
    /// (`Config::caller_writes`).
    pub caller_puts: u64,
    /// Bytes held by the block caches.
    pub cache_bytes: u64,
    /// Blocks in the hot tier.
    pub hot_blocks: u64,
    /// Bytes of block data in the hot tier.
    pub hot_bytes: u64,
    /// Bytes of block data only in the cold backend (`bytes - hot_bytes`).
    pub cold_bytes: u64,
    /// Disk bytes the hot segments take (preallocated).
    pub hot_disk_bytes: u64,
    /// Memory held by the hot indexes.
    pub hot_index_bytes: u64,
    /// Block bytes compaction moved into the cold backends.
    pub compaction_cold_bytes: u64,
    /// Block bytes compaction rewrote into the hot tier.
    pub compaction_rewritten_bytes: u64,
    /// Cold blocks copied back into the hot tier.
    pub promotions: u64,
    /// Damaged hot records found.
    pub corrupt_records: u64,
    /// Cold reads refused because the backend returned bytes that do not hash to the block's
    /// multihash (each refused read counts).
    pub corrupt_cold_reads: u64,
    /// Cold keys walked at open to rebuild the bloom filters and counters; 0 when every shard
    /// started from the state its clean close saved.
    pub keys_walked_at_open: u64,
    /// Pack files (sealed segments whose large cold blocks stay in place).
    pub packs: u64,
    /// Disk bytes the pack files take.
    pub pack_disk_bytes: u64,
    /// Block bytes in packs that index entries still point at.
    pub pack_live_bytes: u64,
    /// Packs whose only copy is in the pack bucket (their local files were removed).
    pub remote_packs: u64,
    /// Packs uploaded to the bucket (with their hints).
    pub remote_uploads: u64,
    /// Pack bytes uploaded to the bucket.
    pub remote_upload_bytes: u64,
    /// Manifest generations published.
    pub remote_manifests: u64,
    /// Uploaded packs whose local file was removed past the local budget.
    pub remote_evictions: u64,
    /// Remote packs fetched back into local files (to be reclaimed).
    pub remote_fetched_back: u64,
    /// Packs deleted from the bucket, a grace period after they left its manifest.
    pub remote_deletes: u64,
    /// Records read from the bucket by ranged GETs.
    pub remote_reads: u64,
    /// Bytes of those records.
    pub remote_read_bytes: u64,
    /// Uploader rounds that failed (an unreachable store, a full disk) and were retried.
    pub remote_failures: u64,
    /// Records served from pack ranges read ahead, without a request to the bucket.
    pub remote_range_hits: u64,
    /// Bytes written to disk by the engine (segments, compaction's cold writes) per byte
    /// accepted by puts; 0 before any put. The cold backend's own amplification comes on top.
    pub write_amplification: f64,
    /// The I/O driver the shards run with (`IoUring` or `Fallback`).
    pub io_driver: IoDriver,
    /// Each shard's own figures.
    pub shards: Vec<ShardStats>,
}

impl Stats {
    pub(crate) fn from_shards(shards: Vec<ShardStats>, io_driver: IoDriver) -> Stats {
        let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
        let put_bytes = sum(|s| s.put_bytes);
        let written = sum(|s| s.segment_write_bytes) + sum(|s| s.compaction_cold_bytes);
        Stats {
            hot_blocks: sum(|s| s.hot_blocks),
            hot_bytes: sum(|s| s.hot_bytes),
            cold_bytes: sum(|s| s.bytes).saturating_sub(sum(|s| s.hot_bytes)),
            hot_disk_bytes: sum(|s| s.hot_disk_bytes),
            hot_index_bytes: sum(|s| s.hot_index_bytes),
            compaction_cold_bytes: sum(|s| s.compaction_cold_bytes),
            compaction_rewritten_bytes: sum(|s| s.compaction_rewritten_bytes),
            promotions: sum(|s| s.promotions),
            corrupt_records: sum(|s| s.corrupt_records),
            corrupt_cold_reads: sum(|s| s.corrupt_cold_reads),
            keys_walked_at_open: sum(|s| s.keys_walked_at_open),
            packs: sum(|s| s.packs),
            pack_disk_bytes: sum(|s| s.pack_disk_bytes),
            pack_live_bytes: sum(|s| s.pack_live_bytes),
            remote_packs: sum(|s| s.remote_packs),
            remote_uploads: sum(|s| s.remote_uploads),
            remote_upload_bytes: sum(|s| s.remote_upload_bytes),
            remote_manifests: sum(|s| s.remote_manifests),
            remote_evictions: sum(|s| s.remote_evictions),
            remote_fetched_back: sum(|s| s.remote_fetched_back),
            remote_deletes: sum(|s| s.remote_deletes),
            remote_reads: sum(|s| s.remote_reads),
            remote_read_bytes: sum(|s| s.remote_read_bytes),
            remote_failures: sum(|s| s.remote_failures),
            remote_range_hits: sum(|s| s.remote_range_hits),
            write_amplification: if put_bytes == 0 {
                0.0
            } else {
                written as f64 / put_bytes as f64
            },
            blocks: sum(|s| s.blocks),
            bytes: sum(|s| s.bytes),
            cache_hits: sum(|s| s.cache_hits),
            cache_misses: sum(|s| s.cache_misses),
            location_hits: sum(|s| s.location_hits),
            locations_cached: sum(|s| s.locations_cached),
            bloom_negatives: sum(|s| s.bloom_negatives),
            caller_reads: sum(|s| s.caller_reads),
            caller_puts: sum(|s| s.caller_puts),
            cache_bytes: sum(|s| s.cache_bytes),
            io_driver,
            shards,
        }
    }
}
