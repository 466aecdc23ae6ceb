//! Opening a shard's state, step by step, on its own thread before it serves anything: the
//! cold backend, the bloom filter and counters (from the state the last clean close saved, or
//! by walking the cold keys once), the hot tier's recovery and the deletes it must redo. A
//! filter that could miss a key is never consulted: after damage it answers "maybe" for all.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use fastbloom::{AtomicBloomFilter, BloomFilter};
use ipfrs_core_types::Config;
use ipfrs_core_types::key::bloom_hash;
use ipfrs_tiering::backends::{DamagedBackend, is_damage};
use ipfrs_tiering::segment::file::list_segments;
use ipfrs_tiering::{BackendOptions, ColdBackend, ColdDamage, DamageStage, open_or_damaged};

use crate::cache::BlockCache;
use crate::checkpoint::{Checkpoint, Guarded};
use crate::hot::{HotTier, Recovery};
use crate::open_state::{self, OpenState};
use crate::queue::WriteQueue;
use crate::rt;
use crate::shard::{Counters, Shard, bump};
use crate::{Error, Result};

/// A shard opened and ready to run on its executor.
pub(crate) struct Opened {
    pub(crate) shard: Rc<Shard>,
    /// Where the hot tier's writer resumes: see [`Recovery::resume`].
    pub(crate) resume: Option<(u32, u64, Vec<u8>)>,
    /// The hot tier's next sequence number.
    pub(crate) next_seq: u64,
    /// The shard's segment directory.
    pub(crate) segments_dir: PathBuf,
}

/// Opens shard `id` of `shards` over the backend directory `dir`. Damage of the cold backend
/// does not fail it: the damage is kept in `cold_damage` and the shard serves what still works.
pub(crate) fn open(
    id: usize,
    shards: usize,
    config: &Config,
    dir: &Path,
    cold_damage: &OnceLock<ColdDamage>,
) -> Result<Opened> {
    // Taken before the backend is opened (opening may write its files) and removed whatever
    // happens next: see `open_state` for when it may stand in for the walk of the cold keys.
    let saved = open_state::take(dir, config.backend);
    let backend = open_cold(id, shards, config, dir, cold_damage)?;
    // A checkpoint holds for a backend whose flushes are durable only (see `checkpoint`):
    // none is written for another, but a store may have been opened with other code.
    let saved = saved.filter(|state| !state.checkpoint || backend.flush_is_durable());
    let mut keys = KeyFigures::new(config, shards, saved);
    let segments_dir = segments_dir(dir);
    let recovery = recover_hot(id, shards, config, &segments_dir, &mut keys.bloom)?;
    if let Some(recovery) = &recovery {
        settle_recovery(id, recovery, &keys, &*backend, cold_damage)?;
    }
    let backend = walk_cold(
        id,
        config,
        dir,
        backend,
        recovery.as_ref(),
        &mut keys,
        cold_damage,
    )?;
    if cold_damage.get().is_some() {
        // The walk did not see every cold key, so the filter could miss one: a filter with
        // every bit set answers "maybe" for all, and each lookup asks the backend.
        keys.bloom = BloomFilter::from_vec(vec![u64::MAX; 8]).hashes(1);
    }
    // Every write to the backend from now on voids the checkpoint first. A damaged backend
    // gets none, nor one whose flush is not durable (see `checkpoint`).
    let checkpoint = Arc::new(Checkpoint::new(
        dir.to_path_buf(),
        cold_damage.get().is_none() && backend.flush_is_durable(),
    ));
    let backend: Arc<dyn ColdBackend> = Arc::new(Guarded::new(backend, Arc::clone(&checkpoint)));
    let (hot, resume, next_seq) = match recovery {
        Some(r) => (Some(r.tier), r.resume, r.next_seq),
        None => (None, None, 0),
    };
    let shard = Rc::new(Shard {
        id,
        backend,
        cache: Arc::new(BlockCache::new(
            share(config.cache_bytes, shards),
            share(config.location_cache_bytes, shards),
        )),
        // Readers on callers' threads test it while the shard adds to it (atomic bits).
        bloom: Arc::new(
            AtomicBloomFilter::from_vec(keys.bloom.as_slice().to_vec())
                .hashes(keys.bloom.num_hashes()),
        ),
        counters: keys.counters,
        delete_epoch: Arc::default(),
        reads: Arc::default(),
        writes: WriteQueue::new(
            config.durability,
            crate::space::Space::open(
                segments_dir.parent().unwrap_or(&segments_dir),
                config.space_reserve_per_shard(shards),
            ),
        ),
        hot,
        checkpoint,
        damage: RefCell::default(),
        gate: rt::Gate::new(),
        gate_tasks: Rc::default(),
        caller_writes: config.caller_writes,
    });
    Ok(Opened {
        shard,
        resume,
        next_seq,
        segments_dir,
    })
}

/// One shard's part of an engine-wide budget.
fn share(total: u64, shards: usize) -> u64 {
    total / shards as u64
}

/// Where a shard keeps its hot segments: `shard-NNN/segments`, next to its backend directory
/// `shard-NNN/<backend>`.
fn segments_dir(backend_dir: &Path) -> PathBuf {
    backend_dir
        .parent()
        .map_or_else(|| backend_dir.join("segments"), |p| p.join("segments"))
}

/// Opens the cold backend. Damaged files do not stop the shard: it serves its hot tier over
/// what of the backend still works, and the damage is kept for `Engine::cold_damage`.
fn open_cold(
    id: usize,
    shards: usize,
    config: &Config,
    dir: &Path,
    cold_damage: &OnceLock<ColdDamage>,
) -> Result<Arc<dyn ColdBackend>> {
    let options = BackendOptions {
        cache_bytes: share(config.backend_cache_bytes, shards).max(1 << 20),
    };
    let (backend, damage) =
        open_or_damaged(config.backend, dir, &options).map_err(Error::backend(id))?;
    if let Some(damage) = damage {
        let _ = cold_damage.set(damage);
    }
    Ok(Arc::from(backend))
}

/// The shard's bloom filter and counters while it opens, and whether they came from the
/// state of its last clean close (then the cold keys are not walked).
struct KeyFigures {
    bloom: BloomFilter,
    counters: Counters,
    restored: bool,
    /// Restored from a checkpoint: the counters hold the cold blocks that were not hot, and
    /// the hot tier's recovery adds the hot ones.
    checkpoint: bool,
    /// Per pack, as saved: (number, live bytes, held bytes).
    saved_packs: Vec<(u32, u64, u64)>,
}

impl KeyFigures {
    /// An empty filter of the configured size, or the saved one when it has that size: it
    /// holds every key the shard had at its clean close, and nothing has changed the backend
    /// since.
    fn new(config: &Config, shards: usize, saved: Option<OpenState>) -> KeyFigures {
        let bloom = BloomFilter::with_false_pos(config.bloom_fp_rate)
            .expected_items(share(config.bloom_expected_items, shards).max(1024) as usize);
        let saved = saved.filter(|state| {
            state.words.len() == bloom.as_slice().len() && state.num_hashes == bloom.num_hashes()
        });
        let counters = Counters::default();
        let Some(state) = saved else {
            return KeyFigures {
                bloom,
                counters,
                restored: false,
                checkpoint: false,
                saved_packs: Vec::new(),
            };
        };
        counters.blocks.set(state.blocks);
        counters.bytes.set(state.bytes);
        KeyFigures {
            bloom: BloomFilter::from_vec(state.words).hashes(state.num_hashes),
            counters,
            restored: true,
            checkpoint: state.checkpoint,
            saved_packs: state.packs,
        }
    }
}

/// Recovers the hot tier, feeding its keys to `bloom`; refuses a store with hot segments
/// opened without a hot tier (its newest blocks would be invisible).
fn recover_hot(
    id: usize,
    shards: usize,
    config: &Config,
    segments_dir: &Path,
    bloom: &mut BloomFilter,
) -> Result<Option<Recovery>> {
    match config.hot_tier {
        Some(hot) => {
            let budget = share(hot.budget_bytes, shards);
            let marker = crate::hot::remote::marker_path(segments_dir);
            if config.remote.is_none()
                && let Ok(bucket) = std::fs::read_to_string(&marker)
            {
                return Err(Error::RemoteRequired {
                    path: marker,
                    bucket: bucket.trim().to_owned(),
                });
            }
            let mut recovery = HotTier::recover(id, segments_dir, hot, budget, bloom)
                .map_err(Error::segment_io(id, "recovering", segments_dir))?;
            if let Some(tier) = &config.remote {
                let remote = crate::hot::remote::RemotePacks::open(id, shards, tier, segments_dir)?;
                // Packs that left this disk for the bucket: the index points into them.
                let mut packs = recovery.tier.packs.borrow_mut();
                for pack in remote.listed() {
                    packs.add_remote(pack);
                }
                drop(packs);
                recovery.tier.remote = Some(remote);
            }
            Ok(Some(recovery))
        }
        None if list_segments(segments_dir).is_ok_and(|s| !s.is_empty()) => {
            Err(Error::HotTierRequired {
                path: segments_dir.to_path_buf(),
            })
        }
        None => Ok(None),
    }
}

/// Restores the packs' saved figures, counts the hot blocks (unless the saved counters hold
/// them: a clean close's do, a checkpoint's do not) and redoes the cold deletes of durable
/// tombstones (after a valid checkpoint there are none left to do: the shard voids it
/// before it tombstones a block the backend may hold).
fn settle_recovery(
    id: usize,
    recovery: &Recovery,
    keys: &KeyFigures,
    backend: &dyn ColdBackend,
    cold_damage: &OnceLock<ColdDamage>,
) -> Result<()> {
    let figures: Vec<_> = keys
        .saved_packs
        .iter()
        .map(|&(id, live, held)| (id, crate::hot::packs::PackBytes { live, held }))
        .collect();
    recovery.tier.packs.borrow_mut().restore(&figures);
    if !keys.restored || keys.checkpoint {
        let index = recovery.tier.index.borrow();
        bump(&keys.counters.blocks, index.len() as u64);
        bump(&keys.counters.bytes, index.bytes());
    }
    // A delete is acknowledged once its tombstone is durable; its cold copy may not have
    // been deleted yet when the process died.
    if recovery.tombstoned.is_empty() {
        return Ok(());
    }
    // Where those blocks lay in packs is asked first: the bucket's manifest must list those
    // records as dead (a crash may have come before it did).
    if let Some(remote) = &recovery.tier.remote {
        let dead: Vec<_> = recovery
            .tombstoned
            .iter()
            .filter_map(|key| match crate::cold_index::locate(backend, key) {
                Ok(Some((_, Some(loc)))) => Some(loc),
                _ => None,
            })
            .collect();
        remote.note_dead(&dead).map_err(Error::segment_io(
            id,
            "noting deleted records in",
            &recovery.tier.dir,
        ))?;
    }
    let redo = backend
        .delete_batch(&recovery.tombstoned)
        .and_then(|()| backend.flush());
    match redo {
        // A backend that did not open cannot take them: the tombstones stay in the hot
        // tier, which shadows the cold copies, and the next open after a repair redoes them.
        Err(err) if cold_damage.get().is_none() => Err(Error::backend(id)(err)),
        _ => Ok(()),
    }
}

/// Walks the cold keys into the filter, the counters and the packs' live figures, unless
/// the saved state stands in for the walk. Damage met on the way is kept in `cold_damage`,
/// and the backend is wrapped so that reads past it report it.
fn walk_cold(
    id: usize,
    config: &Config,
    dir: &Path,
    backend: Arc<dyn ColdBackend>,
    recovery: Option<&Recovery>,
    keys: &mut KeyFigures,
    cold_damage: &OnceLock<ColdDamage>,
) -> Result<Arc<dyn ColdBackend>> {
    if keys.restored {
        return Ok(backend);
    }
    let hot_index = recovery.map(|r| r.tier.index.borrow());
    let mut packs = recovery.map(|r| r.tier.packs.borrow_mut());
    let (bloom, counters) = (&mut keys.bloom, &keys.counters);
    let walk = backend.iterate(None, &mut |key, value| {
        // An unreadable entry counts nothing; a read of its key reports the damage.
        let (len, packed) = ipfrs_tiering::pack::peek(value).unwrap_or((0, None));
        if let (Some(loc), Some(packs)) = (packed, packs.as_mut()) {
            packs.count_walked(loc.pack, len);
        }
        bloom.insert_hash(bloom_hash(key));
        bump(&counters.keys_walked_at_open, 1);
        // A block both hot and cold (mid-compaction, or promoted) is counted once.
        if !hot_index.as_ref().is_some_and(|index| index.contains(key)) {
            bump(&counters.blocks, 1);
            bump(&counters.bytes, len);
        }
        true
    });
    if let Some(packs) = packs.as_mut() {
        packs.settle_walked();
    }
    match walk {
        Ok(()) => Ok(backend),
        Err(err) if is_damage(&err) => {
            let damage = ColdDamage {
                backend: config.backend,
                path: dir.to_path_buf(),
                stage: DamageStage::Walk,
                cause: err.to_string(),
            };
            let _ = cold_damage.set(damage.clone());
            Ok(Arc::new(DamagedBackend::walked(backend, damage)))
        }
        Err(err) => Err(Error::backend(id)(err)),
    }
}
