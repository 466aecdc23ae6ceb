//! The per-shard caches: block bytes, and where cold blocks lie in packs. Both are
//! quick_cache's sync caches, because reads on callers' threads use them too (see
//! `read_view`); their shards' locks are held only for a lookup or an insert.
//!
//! quick_cache evicts with S3-FIFO, which keeps a frequently read hot set resident while a
//! scan of one-off reads passes through, where plain LRU would let the scan flush it.
//!
//! The location cache is what lets a cold read of a packed block skip the backend: the
//! backend's lookup of an index entry costs what a raw backend's lookup of the block does,
//! so without it a cold read could never be faster than the raw backend. An entry is 16
//! bytes of key fingerprint and 16 of location, so a 32 MiB budget covers about half a
//! million blocks. It is a cache, never the truth: a location that misses (its pack
//! reclaimed and removed) is dropped and the backend asked, and every delete drops the
//! key's location with its bytes ([`BlockCache::remove`]), so a location never outlives its
//! block.

use bytes::Bytes;
use ipfrs_core_types::key::Key;
use ipfrs_tiering::pack::PackLoc;
use ipfrs_tiering::segment::index::fingerprint;
use quick_cache::Weighter;

/// Bookkeeping bytes charged per entry on top of key and value, so many tiny blocks cannot
/// overrun the budget through their overhead.
const ENTRY_OVERHEAD: u64 = 64;

/// Average block size assumed to pre-size the cache's table.
const ASSUMED_BLOCK_SIZE: u64 = 16 << 10;

#[derive(Clone, Copy)]
struct ByteWeighter;

impl Weighter<Key, Bytes> for ByteWeighter {
    fn weight(&self, key: &Key, value: &Bytes) -> u64 {
        key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Bytes charged per cached location: the fingerprint and the location (32) and
/// quick_cache's own bookkeeping per entry, rounded up.
pub(crate) const LOCATION_ENTRY_BYTES: u64 = 64;

/// Byte-budgeted caches of block bytes and of pack locations; a zero budget disables one.
pub(crate) struct BlockCache {
    inner: Option<quick_cache::sync::Cache<Key, Bytes, ByteWeighter>>,
    locations: Option<quick_cache::sync::Cache<u128, PackLoc>>,
}

impl BlockCache {
    /// Caches of at most `budget` bytes of blocks and `location_budget` bytes of locations.
    pub(crate) fn new(budget: u64, location_budget: u64) -> BlockCache {
        let inner = (budget > 0).then(|| {
            let items = (budget / ASSUMED_BLOCK_SIZE).max(16) as usize;
            quick_cache::sync::Cache::with_weighter(items, budget, ByteWeighter)
        });
        let entries = location_budget / LOCATION_ENTRY_BYTES;
        let locations = (entries > 0).then(|| quick_cache::sync::Cache::new(entries as usize));
        BlockCache { inner, locations }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.inner.as_ref()?.get(key)
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.inner.as_ref().is_some_and(|c| c.contains_key(key))
    }

    pub(crate) fn insert(&self, key: Key, value: Bytes) {
        if let Some(cache) = self.inner.as_ref() {
            cache.insert(key, value);
        }
    }

    /// Drops `key`'s bytes and its location (a delete: neither may be served after it).
    pub(crate) fn remove(&self, key: &[u8]) {
        if let Some(cache) = self.inner.as_ref() {
            cache.remove(key);
        }
        self.forget_location(key);
    }

    /// Where `key`'s record lies in a pack, if known.
    pub(crate) fn location(&self, key: &[u8]) -> Option<PackLoc> {
        self.locations.as_ref()?.get(&fingerprint(key))
    }

    /// Remembers where `key`'s record lies in a pack.
    pub(crate) fn insert_location(&self, key: &[u8], loc: PackLoc) {
        if let Some(cache) = self.locations.as_ref() {
            cache.insert(fingerprint(key), loc);
        }
    }

    /// Forgets where `key` lies (its pack was reclaimed, or it is deleted).
    pub(crate) fn forget_location(&self, key: &[u8]) {
        if let Some(cache) = self.locations.as_ref() {
            cache.remove(&fingerprint(key));
        }
    }

    /// Locations held.
    pub(crate) fn locations_held(&self) -> u64 {
        self.locations.as_ref().map_or(0, |c| c.len() as u64)
    }

    /// (bytes held, entries held).
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.inner
            .as_ref()
            .map_or((0, 0), |c| (c.weight(), c.len() as u64))
    }
}
