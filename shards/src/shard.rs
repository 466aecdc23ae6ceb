//! A shard's state: everything one shard owns, and what only reads it (stats, the damage
//! report, the view handed to callers' threads).
//!
//! The parts that act on it each live in their own file: the request handlers
//! (`requests`), the write queue (`queue`) and its committer (`commit`), the hot tier's
//! group commit, appends and compaction steps (`hot::group`, `hot::append`, `hot::steps`)
//! and the compaction task (`hot::compaction`). They take the shard as an argument; the
//! shard's thread runs them all, so `Cell`s and the shard's single writer keep the order
//! of puts and deletes the order they arrived in.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::rt::Gate;
use fastbloom::AtomicBloomFilter;
use ipfrs_core_types::key::bloom_hash;
use ipfrs_tiering::ColdBackend;

use crate::cache::BlockCache;
use crate::damage::{Damage, MAX_DAMAGE_KEPT};
use crate::hot::HotTier;
use crate::protocol::ShardStats;
use crate::queue::WriteQueue;
use crate::read_view::ReadCounters;
use crate::{Error, PoisonCause, Result};

/// Counters of one shard; `Cell`s because the shard is single-threaded.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) blocks: Cell<u64>,
    pub(crate) bytes: Cell<u64>,
    pub(crate) write_groups: Cell<u64>,
    pub(crate) write_ops: Cell<u64>,
    pub(crate) put_bytes: Cell<u64>,
    /// Cold reads refused because the backend's bytes did not hash to their key.
    pub(crate) corrupt_cold_reads: Cell<u64>,
    /// Cold keys walked at open to rebuild the bloom filter and counters (0 when a clean
    /// close's saved state stood in for the walk).
    pub(crate) keys_walked_at_open: Cell<u64>,
}

pub(crate) fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

/// Adds a signed change to a counter, never below zero.
pub(crate) fn apply_delta(cell: &Cell<u64>, delta: i64) {
    cell.set(cell.get().saturating_add_signed(delta));
}

/// Everything one shard owns.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) backend: Arc<dyn ColdBackend>,
    pub(crate) cache: Arc<BlockCache>,
    pub(crate) bloom: Arc<AtomicBloomFilter>,
    pub(crate) counters: Counters,
    /// Read counters shared with callers' threads (see [`crate::read_view`]).
    pub(crate) reads: Arc<ReadCounters>,
    /// Incremented each time a group that deleted something commits.
    pub(crate) delete_epoch: Arc<crate::shared::Epoch>,
    pub(crate) writes: WriteQueue,
    /// The hot tier, if configured.
    pub(crate) hot: Option<HotTier>,
    /// Whether the open-state checkpoint is current (see `crate::checkpoint`).
    pub(crate) checkpoint: Arc<crate::checkpoint::Checkpoint>,
    /// Damage met while serving (a listing that could not read a key back), beside what the
    /// hot tier's recovery found; at most [`MAX_DAMAGE_KEPT`] entries.
    pub(crate) damage: RefCell<Vec<Damage>>,
    /// Tasks serving requests; closing it waits for them (clean shutdown).
    pub(crate) gate: Gate,
    /// Tasks in the gate that are not the committer, running now (for the shutdown report).
    pub(crate) gate_tasks: Rc<Cell<usize>>,
    /// Whether lone puts may be written on the caller's thread (`Config::caller_writes`).
    pub(crate) caller_writes: bool,
}

impl Shard {
    pub(crate) fn backend_error(&self, err: ipfrs_tiering::Error) -> Error {
        Error::backend(self.id)(err)
    }

    /// Makes the shard refuse writes from now on (the first cause is kept) and returns the
    /// error for the write that failed with `cause`.
    pub(crate) fn poisoned_by(&self, cause: PoisonCause) -> Error {
        self.writes.poison(cause.clone());
        Error::Poisoned {
            shard: self.id,
            cause,
        }
    }

    /// False only when the key is certainly absent. Not counted in the stats: the writer
    /// asks this too, and only lookups should count as bloom negatives.
    pub(crate) fn bloom_may_contain(&self, key: &[u8]) -> bool {
        self.bloom.contains_hash(bloom_hash(key))
    }

    /// [`Self::bloom_may_contain`] for a lookup, counting the negatives.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        let present = self.bloom_may_contain(key);
        if !present {
            ReadCounters::add(&self.reads.bloom_negatives, 1);
        }
        present
    }

    /// Runs a backend call on the blocking pool: the shard's core never blocks on it.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ColdBackend) -> ipfrs_tiering::Result<T> + Send + 'static,
    ) -> Result<T> {
        let backend = Arc::clone(&self.backend);
        crate::rt::spawn_blocking(move || f(&*backend))
            .await
            .map_err(|e| self.backend_error(e))
    }

    /// What callers' threads may read of this shard.
    pub(crate) fn view(&self) -> crate::read_view::ReadView {
        crate::read_view::ReadView {
            id: self.id,
            backend: Arc::downgrade(&self.backend),
            bloom: Arc::clone(&self.bloom),
            epoch: Arc::clone(&self.delete_epoch),
            counters: Arc::clone(&self.reads),
            cache: Arc::clone(&self.cache),
            hot: self.hot.as_ref().map(crate::read_view::HotView::of),
        }
    }

    /// Takes the writer's state back from callers' threads (see `hot::lane`), folding what
    /// their puts changed into the counters and poisoning the shard if one of them failed.
    /// Every use of the writer comes after this; `close` shuts the lane for good.
    pub(crate) fn reclaim_lane(&self, close: bool) {
        let Some(hot) = &self.hot else {
            return;
        };
        let taken = hot.lane.reclaim(hot.writer.borrow_mut().as_mut(), close);
        self.absorb_lane(taken);
    }

    /// Lends the writer's state to callers' threads while no group is committed: under
    /// `Config::caller_writes` and a durability that syncs (`Sync`, `Batch`), with the shard
    /// writable and not stopping.
    pub(crate) fn lend_lane(&self) {
        let Some(hot) = &self.hot else {
            return;
        };
        let lendable = self.caller_writes
            && self.writes.durability() != ipfrs_core_types::Durability::None
            && self.writes.poisoned().is_none()
            && !hot.stopping.get();
        if let (true, Some(writer)) = (lendable, hot.writer.borrow_mut().as_mut()) {
            hot.lane
                .lend(writer, &self.writes.space, hot.prefetch_up_to());
        }
    }

    /// Folds what the lane's puts changed into the counters, and poisons the shard if one
    /// of them failed.
    fn absorb_lane(&self, (counts, failed): (crate::hot::lane::LaneCounts, Option<PoisonCause>)) {
        if let Some(cause) = failed {
            let _ = self.poisoned_by(cause);
        }
        let c = &self.counters;
        bump(&c.blocks, counts.blocks);
        bump(&c.bytes, counts.bytes);
        bump(&c.put_bytes, counts.bytes);
        // Each lent put is a group of one.
        bump(&c.write_groups, counts.blocks);
        bump(&c.write_ops, counts.blocks);
        if let Some(hot) = &self.hot {
            bump(&hot.counters.disk_bytes, counts.disk_bytes);
        }
    }

    /// Runs `task` inside the shard's gate; `false` if the shard is shutting down (the task
    /// is dropped).
    pub(crate) fn spawn(self: &Rc<Self>, task: impl AsyncFnOnce(Rc<Shard>) + 'static) -> bool {
        let shard = Rc::clone(self);
        let count = Rc::clone(&self.gate_tasks);
        // A closed gate means the shard is shutting down: the request's reply channel is
        // dropped with the task and the caller sees `Stopped`.
        if let Ok(task) = self.gate.spawn(async move {
            count.set(count.get() + 1);
            task(shard).await;
            count.set(count.get() - 1);
        }) {
            task.detach();
            true
        } else {
            false
        }
    }

    /// Adds damage to the shard's report, once per place and key, up to [`MAX_DAMAGE_KEPT`].
    pub(crate) fn note_damage(&self, found: impl IntoIterator<Item = Damage>) {
        let mut damage = self.damage.borrow_mut();
        for new in found {
            let known = damage
                .iter()
                .any(|d| d.site == new.site && d.key == new.key);
            if !known && damage.len() < MAX_DAMAGE_KEPT {
                damage.push(new);
            }
        }
    }

    /// Every damaged place this shard knows of: found at recovery, then met since.
    pub(crate) fn damage_report(&self) -> Vec<Damage> {
        let recovered = self.hot.as_ref().map(|hot| hot.damage.borrow().clone());
        let mut report = recovered.unwrap_or_default();
        report.extend(self.damage.borrow().iter().cloned());
        report
    }

    pub(crate) fn stats(&self) -> ShardStats {
        if let Some(hot) = &self.hot {
            self.absorb_lane(hot.lane.take_counts());
        }
        let c = &self.counters;
        let (cache_bytes, cache_entries) = self.cache.usage();
        let mut stats = ShardStats {
            shard: self.id,
            blocks: c.blocks.get(),
            bytes: c.bytes.get(),
            cache_bytes,
            cache_entries,
            cache_hits: ReadCounters::get(&self.reads.cache_hits),
            cache_misses: ReadCounters::get(&self.reads.cache_misses),
            location_hits: ReadCounters::get(&self.reads.location_hits),
            locations_cached: self.cache.locations_held(),
            bloom_negatives: ReadCounters::get(&self.reads.bloom_negatives),
            caller_reads: ReadCounters::get(&self.reads.caller_reads),
            caller_puts: self.hot.as_ref().map_or(0, |hot| hot.lane.puts()),
            bloom_bits: self.bloom.num_bits() as u64,
            write_groups: c.write_groups.get(),
            write_ops: c.write_ops.get(),
            read_only: self.writes.poisoned().is_some(),
            put_bytes: c.put_bytes.get(),
            corrupt_cold_reads: c.corrupt_cold_reads.get(),
            keys_walked_at_open: c.keys_walked_at_open.get(),
            ..ShardStats::default()
        };
        if let Some(hot) = &self.hot {
            let index = hot.index.borrow();
            let h = &hot.counters;
            stats.hot_blocks = index.len() as u64;
            stats.hot_bytes = index.bytes();
            stats.hot_index_bytes = index.memory_bytes();
            stats.hot_segments = hot.segments.borrow().len() as u64;
            stats.hot_disk_bytes = hot.disk_footprint();
            stats.segment_write_bytes = h.disk_bytes.get();
            stats.compaction_read_bytes = h.compaction_read_bytes.get();
            stats.compaction_cold_bytes = h.compaction_cold_bytes.get();
            stats.compaction_rewritten_bytes = h.compaction_rewritten_bytes.get();
            stats.segments_compacted = h.segments_compacted.get();
            stats.promotions = h.promotions.get();
            stats.corrupt_records = h.corrupt_records.get();
            stats.compaction_failures = h.compaction_failures.get();
            stats.packs_reclaimed = h.packs_reclaimed.get();
            stats.checkpoints = h.checkpoints.get();
        }
        if let Some(hot) = &self.hot {
            (stats.packs, stats.pack_disk_bytes, stats.pack_live_bytes) =
                hot.packs.borrow().usage();
            stats.remote_packs = hot.packs.borrow().remote_count();
        }
        if let Some(remote) = self.hot.as_ref().and_then(|hot| hot.remote.as_ref()) {
            let r = &remote.counters;
            stats.remote_uploads = r.uploads.get();
            stats.remote_upload_bytes = r.upload_bytes.get();
            stats.remote_manifests = r.manifests.get();
            stats.remote_evictions = r.evictions.get();
            stats.remote_fetched_back = r.fetched_back.get();
            stats.remote_deletes = r.deletes.get();
            stats.remote_reads = r.reads.get();
            stats.remote_read_bytes = r.read_bytes.get();
            stats.remote_failures = r.failures.get();
            stats.remote_range_hits = r.range_hits.get();
        }
        stats
    }
}
