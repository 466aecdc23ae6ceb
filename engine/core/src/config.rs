use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::remote::RemoteTier;

/// The cold backend a store keeps its blocks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    /// sled 0.34: the default.
    #[default]
    Sled,
    /// parity-db 0.5 (btree column).
    ParityDb,
    /// rocksdb, only in builds with the `rocksdb` cargo feature.
    RocksDb,
}

impl BackendKind {
    /// Every backend, whether or not this build includes it.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Sled,
        BackendKind::ParityDb,
        BackendKind::RocksDb,
    ];

    /// The name written in the data directory's metadata and accepted on command lines.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Sled => "sled",
            BackendKind::ParityDb => "parity-db",
            BackendKind::RocksDb => "rocksdb",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown backend {s:?} (expected sled, parity-db or rocksdb)"))
    }
}

/// How the shards run and do their file I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IoDriver {
    /// io_uring when this process may use it (probed once at open), the fallback otherwise:
    /// containers whose seccomp profile refuses io_uring (Docker's default since 2023) run
    /// the engine without a flag. The default.
    #[default]
    Auto,
    /// glommio executors and io_uring I/O, or the open fails with `IoUringUnavailable`
    /// (or `MemlockTooLow`) naming what refused it.
    IoUring,
    /// Executors that need no io_uring, with plain system calls for the segment files
    /// (`pwrite`, O_DIRECT where the filesystem allows it, `fallocate`, `fdatasync`) on a
    /// blocking pool. Same on-disk format and the same promises.
    Fallback,
}

impl IoDriver {
    /// The name used in configuration files, flags, metrics and reports.
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::IoUring => "io_uring",
            IoDriver::Fallback => "fallback",
        }
    }
}

impl std::fmt::Display for IoDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IoDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(IoDriver::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(IoDriver::IoUring),
            "fallback" => Ok(IoDriver::Fallback),
            other => Err(format!(
                "unknown I/O driver {other:?} (expected auto, io_uring or fallback)"
            )),
        }
    }
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge after the write is synced to disk: group commit as leader and followers.
    /// The first write of an idle shard is written and synced at once; writes that arrive
    /// meanwhile form the next group, written as soon as the sync in flight returns. The
    /// default: no write ever waits for companions.
    #[default]
    Sync,
    /// Group commit with a gathering window: wait up to `max_delay` (or until `max_ops`
    /// writes are queued) to gather writes, then one write and one sync for all of them, then
    /// acknowledge every waiter. Only worth it where it was measured to help: a lone writer
    /// waits the whole window (single puts: 706/s against 1,329/s with `Sync`, and fewer from
    /// 16 threads too).
    Batch {
        /// Longest a write waits for companions before its group is written.
        max_delay: Duration,
        /// A group is written as soon as this many writes are queued.
        max_ops: usize,
    },
    /// Acknowledge once the write is handed to the storage, before any sync: a crash may lose
    /// acknowledged writes.
    None,
}

impl Durability {
    /// The window and group size `Batch` gets when its figures are not given (TOML
    /// `durability = "batch"`, `ipfrs-bench --durability batch`).
    pub const BATCH_WINDOW: (Duration, usize) = (Duration::from_micros(500), 1024);

    /// `Batch` with [`Self::BATCH_WINDOW`].
    pub const fn batch() -> Durability {
        Durability::Batch {
            max_delay: Self::BATCH_WINDOW.0,
            max_ops: Self::BATCH_WINDOW.1,
        }
    }
}

/// Configuration of an engine. Every memory budget is here, so an edge device can bound them.
///
/// `Config::new(dir)` gives defaults sensible for a laptop; a path converts into a `Config`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory (created if missing; must be empty or an ipfrs store).
    pub data_dir: PathBuf,
    /// Number of shards. `None`: the count recorded in an existing store, or one per core for
    /// a new one. May exceed the core count (shards then share cores).
    pub shards: Option<usize>,
    /// The cold backend.
    pub backend: BackendKind,
    /// Block cache budget in bytes, split evenly between shards.
    pub cache_bytes: u64,
    /// Memory the cold backend may use for its own cache, split evenly between shards.
    pub backend_cache_bytes: u64,
    /// Memory for remembering where cold blocks lie in packs, split evenly between shards
    /// (64 bytes a block: 32 MiB covers about half a million). A cold read of a block whose
    /// location is cached skips the backend's lookup; 0 turns the cache off.
    pub location_cache_bytes: u64,
    /// Blocks the bloom filters are sized for, across all shards.
    pub bloom_expected_items: u64,
    /// The bloom filters' false-positive rate at `bloom_expected_items`.
    pub bloom_fp_rate: f64,
    /// Largest block accepted by `put`, in bytes (default 2 MiB, the bitswap limit).
    pub max_block_size: usize,
    /// When writes are acknowledged.
    pub durability: Durability,
    /// io_uring or the fallback driver (see [`IoDriver`]); `Auto` by default.
    pub io_driver: IoDriver,
    /// Memory glommio registers with io_uring per shard. Registered memory counts against the
    /// memlock limit (`ulimit -l`); glommio's own default (10 MiB) exceeds common limits.
    pub io_memory_per_shard: usize,
    /// Threads in each shard's blocking pool (cold-backend calls run there).
    pub blocking_threads_per_shard: usize,
    /// Pin shard `i` to core `i % cores` (glommio `Placement::Fixed`); off: let the OS place them.
    pub pin_shards: bool,
    /// Answer `get`, `has` and `get_size` on the caller's thread where the shard's shared
    /// state can (bloom filter, hot index, mapped segments and packs, the cold backend),
    /// instead of a round trip to the shard's executor. Off: every read goes to its shard.
    pub caller_reads: bool,
    /// Under `Durability::Sync` or `Batch`, write a lone put on the caller's own thread (one
    /// write and one fdatasync there) while its shard commits no group, instead of handing
    /// it to the shard's executor and waiting for the reply (under `Batch`, for the
    /// gathering window too). The caller's thread blocks for that
    /// write and sync, as it would on sled's flush. Off: every put goes to its shard.
    pub caller_writes: bool,
    /// Requests that may wait in a shard's queue before senders wait (back-pressure).
    pub queue_depth: usize,
    /// Let an idle shard spin this long before it sleeps. A sleeping shard must be woken by
    /// the next request or I/O completion (glommio's sleep path issues a process-wide memory
    /// barrier, and the wake-up is an interrupt: in a 2-vCPU VM one put in five then waited
    /// 2-4 ms). 200 us by default: single durable puts from 16 threads 9.5k -> 20k/s, from one
    /// thread 956 -> 1,536/s, reads unchanged (they run on callers' threads); the price is up
    /// to 200 us of CPU after each burst of work. `None` (TOML: `0`): never spin.
    pub spin_before_park: Option<Duration>,
    /// Hand the C allocator's free memory back to the kernel this often (glibc's
    /// `malloc_trim`; nothing on other C libraries). glibc keeps freed memory in its arenas,
    /// so blocks passing through caches, compaction and the cold backend leave resident
    /// memory well above what is live: in the 512 MiB soak, 611 MiB resident for about 280 MiB
    /// live. While it is on, the engine also fixes glibc's mmap threshold at 4 MiB and its
    /// trim threshold at 64 MiB (see `ipfrs_storage::tune_allocator`), so block-sized buffers
    /// stop costing a page fault per 4 KiB. `None`: never, and the allocator is left alone (an
    /// application that trims, or uses another allocator).
    pub release_free_memory_every: Option<Duration>,
    /// The hot tier: new blocks go to log-structured segment files (io_uring DMA writes,
    /// zero-copy mmap reads) and move to the cold backend when the hot area passes its budget.
    /// `None`: every write goes straight to the cold backend.
    pub hot_tier: Option<HotTier>,
    /// Disk space each store keeps back for deletes and compaction, across all shards (each
    /// shard holds its share in a preallocated `shard-NNN/space.reserve` file). Puts can never
    /// use it: on a full disk they fail with `NoSpace` while `block rm`, `repo gc` and
    /// compaction can still run, releasing it as they need it; it is taken back once space
    /// returns, and puts are refused until it is. `None` (the default): one hot segment per
    /// shard (the room a delete needs to start a new segment for its tombstones), or 16 MiB
    /// per shard without the hot tier. `Some(0)`: no reserve.
    pub space_reserve_bytes: Option<u64>,
    /// Packs on an S3-compatible store (see [`RemoteTier`]); needs the hot tier. `None` (the
    /// default): every pack stays on the local disk.
    pub remote: Option<RemoteTier>,
}

/// The hot tier's budget and knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotTier {
    /// Disk bytes the hot segments may take, across all shards. Past it, compaction moves the
    /// oldest segment's blocks into the cold backend (still-hot ones are rewritten instead).
    /// Each shard keeps at least two segments whatever the budget.
    pub budget_bytes: u64,
    /// Size of one segment file (preallocated): a multiple of 4096, at most 4 GiB, and larger
    /// than two blocks of `max_block_size`.
    pub segment_bytes: u64,
    /// Size of one DMA write; a group commit larger than this is several writes in flight.
    pub write_chunk_bytes: usize,
    /// Reads since its write that keep a block hot when compaction reaches its segment.
    pub keep_hot_reads: u16,
    /// Reads of a cold inline block (while it is tracked) after which it is copied back into
    /// the hot tier. 0 turns promotion off. Packed blocks are not promoted: they are read
    /// from their pack's mapping, which the page cache keeps.
    pub promote_after_reads: u16,
    /// After each write, ask the kernel to read the written records into the page cache in
    /// the background. Segments are written with O_DIRECT, which leaves nothing cached, so
    /// without it the first read of each new block is a disk read, and compaction, which
    /// copies small cold blocks into the backend, reads them from the disk. Costs disk read
    /// bandwidth equal to the bytes written; turn it off for write-only ingest.
    pub prefetch_written: bool,
    /// With `prefetch_written`, also read back records larger than `inline_threshold_bytes`.
    /// Nothing in the engine reads them again (they stay in place when they go cold), so
    /// this only makes the first read of a new large block come from memory: worth it when
    /// new blocks are read soon, as on a node serving what it just received. Off, the first
    /// read fetches the whole record in one request, and a 256 KiB-block ingest reads nothing
    /// back (it was half the device traffic). `ipfrs-store car import` turns it off for the
    /// engine it opens (see `ipfrs_tools::import::tune_for_import`).
    pub prefetch_large_written: bool,
    /// Cold blocks up to this many bytes are copied into the cold backend (inline in its
    /// index); larger ones stay where they are, in the sealed segment, which becomes an
    /// immutable pack, and the backend holds only where (15 bytes). Set it to
    /// `max_block_size` to copy every cold block into the backend. The default, 1 KiB, packs
    /// a 4 KiB block: with its location cached (`location_cache_bytes`) a cold read of it
    /// needs no backend lookup, where an inline one always does (4 KiB blocks beyond the hot
    /// tier, parity-db: single gets 3.6x raw parity-db packed, 0.91x inline; README).
    pub inline_threshold_bytes: u32,
    /// A pack whose live blocks fall under this percentage of its block bytes (deletes, and
    /// blocks that went hot again) has its live blocks rewritten and is removed, giving the
    /// rest of its disk space back. 0 keeps packs until they are empty.
    pub reclaim_below_percent: u8,
}

impl Default for HotTier {
    fn default() -> Self {
        HotTier {
            budget_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            write_chunk_bytes: 1 << 20,
            keep_hot_reads: 2,
            promote_after_reads: 2,
            prefetch_written: true,
            prefetch_large_written: true,
            inline_threshold_bytes: 1 << 10,
            reclaim_below_percent: 50,
        }
    }
}

impl Config {
    /// Defaults for a laptop, storing in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            shards: None,
            backend: BackendKind::default(),
            cache_bytes: 64 << 20,
            backend_cache_bytes: 64 << 20,
            location_cache_bytes: 32 << 20,
            bloom_expected_items: 1_000_000,
            bloom_fp_rate: 0.01,
            max_block_size: 2 << 20,
            durability: Durability::default(),
            io_driver: IoDriver::default(),
            io_memory_per_shard: 1 << 20,
            blocking_threads_per_shard: 2,
            pin_shards: true,
            caller_reads: true,
            caller_writes: true,
            queue_depth: 1024,
            spin_before_park: Some(Duration::from_micros(200)),
            release_free_memory_every: Some(Duration::from_secs(1)),
            hot_tier: Some(HotTier::default()),
            space_reserve_bytes: None,
            remote: None,
        }
    }
}

impl Config {
    /// The space reserve of each shard, in bytes, out of `shards` (see
    /// [`Config::space_reserve_bytes`]).
    pub fn space_reserve_per_shard(&self, shards: usize) -> u64 {
        /// The automatic reserve per shard without a hot tier: room for the cold backend's
        /// log records of a large batch of deletes.
        const COLD_ONLY_RESERVE: u64 = 16 << 20;
        match (self.space_reserve_bytes, &self.hot_tier) {
            (Some(total), _) => total / shards.max(1) as u64,
            (None, Some(hot)) => hot.segment_bytes,
            (None, None) => COLD_ONLY_RESERVE,
        }
    }
}

impl From<&Path> for Config {
    fn from(path: &Path) -> Config {
        Config::new(path)
    }
}

impl From<PathBuf> for Config {
    fn from(path: PathBuf) -> Config {
        Config::new(path)
    }
}

impl From<&PathBuf> for Config {
    fn from(path: &PathBuf) -> Config {
        Config::new(path.clone())
    }
}

impl From<&str> for Config {
    fn from(path: &str) -> Config {
        Config::new(path)
    }
}
