use bytes::Bytes;
use ipfrs_core_types::BackendKind;

use crate::Result;

/// Options every backend takes when it is opened.
#[derive(Debug, Clone, Copy)]
pub struct BackendOptions {
    /// Memory the backend may use for its own cache, in bytes.
    pub cache_bytes: u64,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            cache_bytes: 16 << 20,
        }
    }
}

/// A blocking key-value store that keeps the engine's cold blocks.
///
/// Keys are multihash bytes, values block bytes. Implementations are thread-safe; all
/// methods block, so the engine calls them from a blocking pool, never from a shard's core.
///
/// Contract, checked for every backend by one generic test suite:
/// - after `put_batch` returns, `get`/`contains`/`size` see every item of the batch;
/// - after `delete_batch` returns, they see none of the deleted keys; deleting an absent key
///   is not an error;
/// - `flush` returns once everything written before it is durable, as far as the library
///   allows (see each backend's documentation for its limits);
/// - `iterate` visits keys in ascending byte order.
pub trait ColdBackend: Send + Sync + 'static {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// The length of the value under `key`, without copying it where the library allows.
    fn size(&self, key: &[u8]) -> Result<Option<u64>> {
        Ok(self.get(key)?.map(|v| v.len() as u64))
    }

    /// Whether `key` is stored.
    fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.size(key)?.is_some())
    }

    /// Stores every item. Callers rely only on each item being stored whole (each block
    /// stands alone; durable writes are acknowledged after `flush`): parity-db and rocksdb
    /// write one atomic batch, sled one insert per item (its batches stall every reader; see
    /// `SledBackend`).
    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()>;

    /// Removes every key.
    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()>;

    /// Calls `f(key, value length)` for each key after `after` (all keys if `None`) in
    /// ascending order, until `f` returns false.
    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<()>;

    /// Makes every earlier write durable.
    fn flush(&self) -> Result<()>;

    /// Whether a successful [`ColdBackend::flush`] makes every earlier write durable. A
    /// backend that cannot promise it (parity-db 0.5, whose background writer has no public
    /// wait) makes the hot tier keep compacted segment files until the backend has been
    /// closed cleanly, so a crash never loses blocks that were moved out of them.
    fn flush_is_durable(&self) -> bool {
        true
    }
}
