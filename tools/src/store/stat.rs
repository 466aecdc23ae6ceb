//! `repo stat`: what `Engine::stats()` reports, for people or scripts.

use std::path::PathBuf;

use ipfrs_storage::Stats;
use serde::Serialize;

use super::output::{self, Report};

/// One shard's figures.
#[derive(Debug, Serialize)]
pub struct ShardStat {
    /// The shard.
    pub shard: usize,
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Reads answered by its cache (since open).
    pub cache_hits: u64,
    /// Reads that went to its backend (since open).
    pub cache_misses: u64,
    /// Its bloom filter's size in bytes.
    pub bloom_bytes: u64,
    /// Lookups its bloom filter answered absent (since open).
    pub bloom_negatives: u64,
    /// Blocks in its hot tier.
    pub hot_blocks: u64,
    /// Hot segment files.
    pub hot_segments: u64,
    /// Whether it refuses writes after a failed sync.
    pub read_only: bool,
}

/// The store's figures per tier.
#[derive(Debug, Serialize)]
pub struct Tiers {
    /// Blocks in the hot tier.
    pub hot_blocks: u64,
    /// Bytes of block data in the hot tier.
    pub hot_bytes: u64,
    /// Bytes of block data only in the cold backend.
    pub cold_bytes: u64,
    /// Disk the hot segments take (preallocated).
    pub hot_disk_bytes: u64,
    /// Memory of the hot indexes.
    pub hot_index_bytes: u64,
    /// Damaged hot records found since open (recovery counts those on disk).
    pub corrupt_records: u64,
    /// Packs (sealed segments the index points into), local or only in the bucket.
    pub packs: u64,
    /// Block bytes in packs that the index still points at (live).
    pub pack_live_bytes: u64,
    /// Disk the local pack files take (live and dead records).
    pub pack_disk_bytes: u64,
    /// Packs whose only copy is in the pack bucket (`[remote]`).
    pub remote_packs: u64,
    /// Pack bytes uploaded to the bucket since open.
    pub remote_upload_bytes: u64,
    /// Records read from the bucket since open.
    pub remote_reads: u64,
    /// Records served since open from pack ranges read ahead, without a request.
    pub remote_range_hits: u64,
}

/// The store's figures. Cache and bloom counters count since the store was opened, i.e. in
/// this process for the CLI.
#[derive(Debug, Serialize)]
pub struct RepoStat {
    /// The repository.
    pub repo: PathBuf,
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes of block data stored.
    pub bytes: u64,
    /// Cache hits / reads, `null` before any read.
    pub cache_hit_rate: Option<f64>,
    /// Reads answered by the caches.
    pub cache_hits: u64,
    /// Reads that went to a backend.
    pub cache_misses: u64,
    /// Bytes held by the caches.
    pub cache_bytes: u64,
    /// Bloom filters' total size in bytes.
    pub bloom_bytes: u64,
    /// Lookups the bloom filters answered absent.
    pub bloom_negatives: u64,
    /// Per tier: block data in the hot segments and only in the cold backend, the disk the
    /// segments take and the memory of the hot index.
    pub tiers: Tiers,
    /// The I/O driver the shards run with: `io_uring` or `fallback`.
    pub io_driver: String,
    /// Per shard.
    pub shards: Vec<ShardStat>,
}

impl RepoStat {
    /// From the engine's statistics.
    pub fn new(repo: PathBuf, stats: &Stats) -> RepoStat {
        let reads = stats.cache_hits + stats.cache_misses;
        let shards: Vec<ShardStat> = stats
            .shards
            .iter()
            .map(|s| ShardStat {
                shard: s.shard,
                blocks: s.blocks,
                bytes: s.bytes,
                cache_hits: s.cache_hits,
                cache_misses: s.cache_misses,
                bloom_bytes: s.bloom_bits.div_ceil(8),
                bloom_negatives: s.bloom_negatives,
                hot_blocks: s.hot_blocks,
                hot_segments: s.hot_segments,
                read_only: s.read_only,
            })
            .collect();
        RepoStat {
            repo,
            blocks: stats.blocks,
            bytes: stats.bytes,
            cache_hit_rate: (reads > 0).then(|| stats.cache_hits as f64 / reads as f64),
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
            cache_bytes: stats.cache_bytes,
            bloom_bytes: shards.iter().map(|s| s.bloom_bytes).sum(),
            bloom_negatives: stats.bloom_negatives,
            tiers: Tiers {
                hot_blocks: stats.hot_blocks,
                hot_bytes: stats.hot_bytes,
                cold_bytes: stats.cold_bytes,
                hot_disk_bytes: stats.hot_disk_bytes,
                hot_index_bytes: stats.hot_index_bytes,
                corrupt_records: stats.corrupt_records,
                packs: stats.packs,
                pack_live_bytes: stats.pack_live_bytes,
                pack_disk_bytes: stats.pack_disk_bytes,
                remote_packs: stats.remote_packs,
                remote_upload_bytes: stats.remote_upload_bytes,
                remote_reads: stats.remote_reads,
                remote_range_hits: stats.remote_range_hits,
            },
            io_driver: stats.io_driver.name().to_string(),
            shards,
        }
    }
}

impl Report for RepoStat {
    fn human(&self) -> String {
        let rate = self
            .cache_hit_rate
            .map_or("no reads yet".to_string(), |r| format!("{:.1}%", r * 100.0));
        let t = &self.tiers;
        let mut out = format!(
            "repo       {}\nio driver  {}\nblocks     {}\nbytes      {}\nhot        {} blocks, {} ({} of segments on disk, index {}), {} corrupt records\ncold       {}\npacks      {} ({} only in the bucket), {} live, {} of local pack files\nbucket     {} uploaded, {} records read since open ({} more from read-ahead)\ncache      hit rate {rate} ({} hits, {} misses since open), {} held\nbloom      {} in {} filters, {} negatives since open\n\n",
            self.repo.display(),
            self.io_driver,
            self.blocks,
            output::bytes(self.bytes),
            t.hot_blocks,
            output::bytes(t.hot_bytes),
            output::bytes(t.hot_disk_bytes),
            output::bytes(t.hot_index_bytes),
            t.corrupt_records,
            output::bytes(t.cold_bytes),
            t.packs,
            t.remote_packs,
            output::bytes(t.pack_live_bytes),
            output::bytes(t.pack_disk_bytes),
            output::bytes(t.remote_upload_bytes),
            t.remote_reads,
            t.remote_range_hits,
            self.cache_hits,
            self.cache_misses,
            output::bytes(self.cache_bytes),
            output::bytes(self.bloom_bytes),
            self.shards.len(),
            self.bloom_negatives,
        );
        out.push_str(&format!(
            "{:>5} {:>10} {:>14} {:>10} {:>10} {:>12} {:>10}\n",
            "shard", "blocks", "bytes", "hits", "misses", "bloom bytes", "state"
        ));
        for s in &self.shards {
            out.push_str(&format!(
                "{:>5} {:>10} {:>14} {:>10} {:>10} {:>12} {:>10}\n",
                s.shard,
                s.blocks,
                s.bytes,
                s.cache_hits,
                s.cache_misses,
                s.bloom_bytes,
                if s.read_only { "read-only" } else { "ok" }
            ));
        }
        out
    }
}

/// What `repo compact` did.
#[derive(Debug, Serialize)]
pub struct Compacted {
    /// Segments compacted and removed.
    pub segments: u64,
    /// Blocks still hot (read since written) afterwards.
    pub hot_blocks: u64,
    /// Bytes of block data in the cold backend afterwards.
    pub cold_bytes: u64,
}

impl Compacted {
    /// From the count and the statistics after compaction.
    pub fn new(segments: u64, stats: &Stats) -> Compacted {
        Compacted {
            segments,
            hot_blocks: stats.hot_blocks,
            cold_bytes: stats.cold_bytes,
        }
    }
}

impl Report for Compacted {
    fn human(&self) -> String {
        format!(
            "compacted {} segments; {} blocks stay hot, {} in the cold backend\n",
            self.segments,
            self.hot_blocks,
            output::bytes(self.cold_bytes)
        )
    }
}
