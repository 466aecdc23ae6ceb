//! The per-shard block cache: quick_cache's sync cache with a byte weighter. Sync because
//! reads on callers' threads use it too (see `read_view`); its shards' locks are held only
//! for a lookup or an insert.
//!
//! quick_cache evicts with S3-FIFO, which keeps a frequently read hot set resident while a
//! scan of one-off reads passes through, where plain LRU would let the scan flush it.

use bytes::Bytes;
use ipfrs_core_types::key::Key;
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

/// A byte-budgeted cache of block bytes; a zero budget disables it.
pub(crate) struct BlockCache {
    inner: Option<quick_cache::sync::Cache<Key, Bytes, ByteWeighter>>,
}

impl BlockCache {
    pub(crate) fn new(budget: u64) -> BlockCache {
        let inner = (budget > 0).then(|| {
            let items = (budget / ASSUMED_BLOCK_SIZE).max(16) as usize;
            quick_cache::sync::Cache::with_weighter(items, budget, ByteWeighter)
        });
        BlockCache { inner }
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

    pub(crate) fn remove(&self, key: &[u8]) {
        if let Some(cache) = self.inner.as_ref() {
            cache.remove(key);
        }
    }

    /// (bytes held, entries held).
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.inner
            .as_ref()
            .map_or((0, 0), |c| (c.weight(), c.len() as u64))
    }
}
