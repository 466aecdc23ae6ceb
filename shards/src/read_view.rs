//! Reads on the caller's thread: what a `get`, `has` or `get_size` can answer without a round
//! trip to the shard's executor.
//!
//! ```text
//!   caller's thread: bloom filter (atomic bits) --absent--> answer
//!     --> hot index (read lock) --hit--> record slice of its mapped segment --> answer
//!     --> cold backend (thread-safe) --inline--> checked by its checksum --> answer
//!                                    --packed--> record slice of its mapped pack --> answer
//!     anything unexplained (a segment or pack gone since the lookup, a damaged entry, an
//!     error) --> the shard, which answers it as it always did (and reports damage)
//! ```
//! The shard stays the only writer of its index, filter, segments and packs; they are shared
//! behind locks that readers hold only for a lookup, and mapped files are reference counted,
//! so a segment or pack removed under a reader stays readable until the reader lets go.
//!
//! Why no acknowledged block is missed: a put is acknowledged after its key is in the filter
//! and the index. Compaction writes a block's cold entry (flushed) before it drops the block
//! from the index, and reclamation puts a block back in the index before it drops the entry;
//! so a reader that finds neither looks in the index once more, and then the block was not
//! there. Hot records are returned unchecked, as the shard returns them: the engine checks
//! every record against its checksum and key before it hands out a byte.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fastbloom::AtomicBloomFilter;
use hashbrown::HashMap;
use ipfrs_core_types::key::bloom_hash;
use ipfrs_tiering::ColdBackend;
use ipfrs_tiering::pack::Entry;
use ipfrs_tiering::segment::{HotIndex, MappedSegment};

use crate::cold_index;
use crate::fetched::Fetched;
use crate::hot::HotTier;
use crate::hot::packs::Packs;
use crate::shared::{Epoch, Shared};
use crate::{Error, Result};

/// Counters kept by readers on any thread (and by the shard for its own lookups).
#[derive(Default)]
pub(crate) struct ReadCounters {
    /// Lookups the bloom filter answered "absent".
    pub(crate) bloom_negatives: AtomicU64,
    /// Keys answered on the caller's thread.
    pub(crate) caller_reads: AtomicU64,
    /// Cold reads the block cache answered.
    pub(crate) cache_hits: AtomicU64,
    /// Cold reads that went to the backend.
    pub(crate) cache_misses: AtomicU64,
    /// Cold reads of packed blocks whose location was cached (no backend lookup).
    pub(crate) location_hits: AtomicU64,
}

impl ReadCounters {
    fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// Adds `n` to one of the counters (from any thread).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// One of the counters, for the stats.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The answer of a read on the caller's thread, or `Shard`: ask the shard.
#[derive(Debug)]
pub enum Quick<T> {
    /// The answer.
    Answer(T),
    /// The shard must answer this key (a cold miss it counts for promotion, a race with a
    /// removal, damage to report).
    Shard,
}

/// A cold block read often enough to be copied back into the hot tier: the caller sends it
/// to the shard ([`crate::protocol::Request::Promote`]).
#[derive(Debug)]
pub struct Promotion {
    /// The block's key.
    pub key: Vec<u8>,
    /// Its bytes (checked).
    pub data: Bytes,
    /// The shard's delete epoch when it was read: the shard drops the promotion if a delete
    /// committed since.
    pub epoch: u64,
}

/// The hot tier's shared parts.
pub(crate) struct HotView {
    pub(crate) index: Arc<Shared<HotIndex>>,
    pub(crate) segments: Arc<Shared<BTreeMap<u32, MappedSegment>>>,
    pub(crate) packs: Arc<Shared<Packs>>,
    pub(crate) cold_reads: Arc<Mutex<HashMap<u128, u16>>>,
    pub(crate) promote_after_reads: u16,
    pub(crate) lane: Arc<crate::hot::lane::Lane>,
}

/// What a caller's thread may read of one shard.
pub struct ReadView {
    pub(crate) id: usize,
    /// Weak: the shard's thread must be the last owner, so that the backend is closed (and
    /// the file changes that wait for that are made) when the shard stops.
    pub(crate) backend: std::sync::Weak<dyn ColdBackend>,
    pub(crate) bloom: Arc<AtomicBloomFilter>,
    pub(crate) epoch: Arc<Epoch>,
    pub(crate) counters: Arc<ReadCounters>,
    pub(crate) cache: Arc<crate::cache::BlockCache>,
    pub(crate) hot: Option<HotView>,
}

/// How many times a reader retries a lookup that a concurrent move made stale before it asks
/// the shard.
const RETRIES: usize = 2;

impl ReadView {
    fn may_contain(&self, key: &[u8]) -> bool {
        let present = self.bloom.contains_hash(bloom_hash(key));
        if !present {
            ReadCounters::bump(&self.counters.bloom_negatives);
        }
        present
    }

    fn answered<T>(&self, value: T) -> Quick<T> {
        ReadCounters::bump(&self.counters.caller_reads);
        Quick::Answer(value)
    }

    fn backend_error(&self, err: ipfrs_tiering::Error) -> Error {
        Error::backend(self.id)(err)
    }

    /// The hot record of `key`, counting the read (unless another reader holds the index
    /// for a count right now: counts guide compaction, they need not be exact). `Err(())`
    /// when the index points into a segment that is gone (retired since: look again).
    fn hot_record(&self, hot: &HotView, key: &[u8]) -> Result<Option<Bytes>, ()> {
        let loc = match hot.index.try_borrow_mut() {
            Some(mut index) => index.touch(key),
            None => hot.index.borrow().get(key),
        };
        let Some(loc) = loc else {
            return Ok(None);
        };
        let segments = hot.segments.borrow();
        match segments.get(&loc.segment) {
            Some(map) => Ok(Some(
                map.slice(loc.offset as usize, loc.record_len())
                    .unwrap_or_default(),
            )),
            None => Err(()),
        }
    }

    /// Stores one block (`key`, its multihash bytes) durably on the caller's thread if the
    /// shard lends its writer now (see `crate::hot::lane`): `Quick::Shard` (nothing written)
    /// when it does not, or when the key may already be stored.
    pub fn put(&self, key: &[u8], data: &[u8]) -> Quick<Result<()>> {
        match &self.hot {
            Some(hot) => hot.lane.try_put(self.id, hot, &self.bloom, key, data),
            None => Quick::Shard,
        }
    }

    /// Reads `key` (a block's multihash bytes). `Ok(Quick::Answer((value, promotion)))`, where
    /// a record is unchecked (see [`Fetched`]) and `promotion` is a block to hand the shard.
    ///
    /// # Errors
    /// A backend error that is not damage (damage goes to the shard, which reports it).
    pub fn get(&self, key: &[u8]) -> Result<Quick<(Option<Fetched>, Option<Promotion>)>> {
        if !self.may_contain(key) {
            return Ok(self.answered((None, None)));
        }
        for _ in 0..RETRIES {
            if let Some(hot) = &self.hot {
                match self.hot_record(hot, key) {
                    Ok(Some(record)) => {
                        return Ok(self.answered((Some(Fetched::Record(record)), None)));
                    }
                    Ok(None) => {}
                    Err(()) => continue,
                }
            }
            if let Some(data) = self.cache.get(key) {
                ReadCounters::bump(&self.counters.cache_hits);
                return Ok(self.answered((Some(Fetched::Data(data)), None)));
            }
            if let Some(record) = self.cached_location(key) {
                return Ok(self.answered((Some(Fetched::Record(record)), None)));
            }
            let epoch = self.epoch.get();
            let Some(backend) = self.backend()? else {
                return Ok(Quick::Shard);
            };
            ReadCounters::bump(&self.counters.cache_misses);
            let entry = match cold_index::get(&*backend, key) {
                Ok(entry) => entry,
                Err(e) if ipfrs_tiering::backends::is_damage(&e) => return Ok(Quick::Shard),
                Err(e) => return Err(self.backend_error(e)),
            };
            match entry {
                None if self.hot_again(key) => continue,
                None => return Ok(self.answered((None, None))),
                // From a store written before inline checksums, hashed against the key: a
                // mismatch goes to the shard, which reads it again, reports and counts it.
                Some(Entry::InlineUnchecked(data))
                    if ipfrs_core_types::verify_key(key, &data).is_err() =>
                {
                    return Ok(Quick::Shard);
                }
                // Checked (by its checksum over key and bytes, as it was decoded, or just
                // above).
                Some(Entry::Inline(data) | Entry::InlineUnchecked(data)) => {
                    self.cache.insert(key.to_vec(), data.clone());
                    if self.epoch.get() != epoch {
                        // A delete committed since the read: the shard advances the epoch
                        // before it drops deleted keys from the cache, so either it drops
                        // this entry or this reader sees the new epoch and does.
                        self.cache.remove(key);
                    }
                    let promotion = self.counts_for_promotion(key).then(|| Promotion {
                        key: key.to_vec(),
                        data: data.clone(),
                        epoch,
                    });
                    return Ok(self.answered((Some(Fetched::Data(data)), promotion)));
                }
                Some(Entry::Packed(loc)) => {
                    let Some(hot) = &self.hot else {
                        return Ok(Quick::Shard);
                    };
                    match crate::hot::pack_record(&hot.packs, &hot.segments, &loc) {
                        Some(record) => {
                            self.cache.insert_location(key, loc);
                            if self.epoch.get() != epoch {
                                // A delete committed since the read (as for the cache above).
                                self.cache.forget_location(key);
                            }
                            return Ok(self.answered((Some(Fetched::Record(record)), None)));
                        }
                        // Only in the bucket: the shard reads it (a network read has no
                        // place on the caller's thread, and the shard merges reads of one
                        // pack). Asked only on a miss, so local reads pay nothing for it.
                        None if hot.packs.borrow().is_remote(loc.pack) => {
                            return Ok(Quick::Shard);
                        }
                        // Reclaimed since the entry was read (the block is hot again), or
                        // damage: look again, then let the shard tell.
                        None => continue,
                    }
                }
            }
        }
        Ok(Quick::Shard)
    }

    /// Whether `key` is stored.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn has(&self, key: &[u8]) -> Result<Quick<bool>> {
        Ok(match self.size(key)? {
            Quick::Answer(size) => Quick::Answer(size.is_some()),
            Quick::Shard => Quick::Shard,
        })
    }

    /// The stored block's length, if it is stored.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn size(&self, key: &[u8]) -> Result<Quick<Option<u64>>> {
        if !self.may_contain(key) {
            return Ok(self.answered(None));
        }
        if let Some(hot) = &self.hot
            && let Some(loc) = hot.index.borrow().get(key)
        {
            return Ok(self.answered(Some(u64::from(loc.len))));
        }
        if let Some(loc) = self.cache.location(key) {
            // Deletes drop the location before they are acknowledged.
            return Ok(self.answered(Some(u64::from(loc.len))));
        }
        let Some(backend) = self.backend()? else {
            return Ok(Quick::Shard);
        };
        match cold_index::size(&*backend, key) {
            Ok(Some(len)) => Ok(self.answered(Some(len))),
            Ok(None) => match &self.hot {
                Some(hot) => {
                    let loc = hot.index.borrow().get(key);
                    Ok(self.answered(loc.map(|loc| u64::from(loc.len))))
                }
                None => Ok(self.answered(None)),
            },
            Err(e) if ipfrs_tiering::backends::is_damage(&e) => Ok(Quick::Shard),
            Err(e) => Err(self.backend_error(e)),
        }
    }

    /// The cold backend for one read, `None` once the shard has closed it (the shard then
    /// answers). Fails as a read of a failing disk would where a test injects that.
    fn backend(&self) -> Result<Option<Arc<dyn ColdBackend>>> {
        let Some(backend) = self.backend.upgrade() else {
            return Ok(None);
        };
        if let Some(err) = crate::cold_index::injected_cold_read_failure(backend.kind()) {
            return Err(self.backend_error(err));
        }
        Ok(Some(backend))
    }

    /// The record of `key` where the location cache says it lies (see
    /// [`crate::hot::cached_pack_record`]), counted as a location hit.
    fn cached_location(&self, key: &[u8]) -> Option<Bytes> {
        let hot = self.hot.as_ref()?;
        let record = crate::hot::cached_pack_record(&self.cache, &hot.packs, &hot.segments, key)?;
        ReadCounters::bump(&self.counters.location_hits);
        Some(record)
    }

    /// Whether `key` went into the hot index since the reader looked (a reclamation moved it
    /// back before dropping its entry).
    fn hot_again(&self, key: &[u8]) -> bool {
        self.hot
            .as_ref()
            .is_some_and(|hot| hot.index.borrow().contains(key))
    }

    /// Counts a read of a cold block; true once it has been read often enough to be promoted.
    fn counts_for_promotion(&self, key: &[u8]) -> bool {
        self.hot.as_ref().is_some_and(|hot| {
            crate::hot::count_read(&hot.cold_reads, hot.promote_after_reads, key)
        })
    }
}

#[cfg(test)]
impl ReadView {
    /// A view of a shard that has nothing: every read goes to the shard (`Quick::Shard`, the
    /// backend being gone), for tests of the message protocol.
    pub(crate) fn detached(id: usize) -> ReadView {
        let backend: std::sync::Weak<dyn ColdBackend> =
            std::sync::Weak::<ipfrs_tiering::backends::SledBackend>::new();
        ReadView {
            id,
            backend,
            bloom: Arc::new(AtomicBloomFilter::from_vec(vec![u64::MAX; 8]).hashes(1)),
            epoch: Arc::default(),
            counters: Arc::default(),
            cache: Arc::new(crate::cache::BlockCache::new(0, 0)),
            hot: None,
        }
    }
}

impl HotView {
    /// What callers' threads may read of `hot`.
    pub(crate) fn of(hot: &HotTier) -> HotView {
        HotView {
            index: Arc::clone(&hot.index),
            segments: Arc::clone(&hot.segments),
            packs: Arc::clone(&hot.packs),
            cold_reads: Arc::clone(&hot.cold_reads),
            promote_after_reads: hot.config.promote_after_reads,
            lane: Arc::clone(&hot.lane),
        }
    }
}
