use std::path::PathBuf;

use bytes::Bytes;
use ipfrs_core_types::BackendKind;

use crate::{Error, Result};

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

    /// Calls `f(key, value)` for each key after `after` (all keys if `None`) in ascending
    /// order, until `f` returns false. Values are what the walk reads anyway (every library
    /// here yields them with the keys): the engine's index entries are read this way at open.
    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;

    /// Makes every earlier write durable.
    fn flush(&self) -> Result<()>;

    /// Damage the library found and worked around while opening (log data it had to skip):
    /// the backend serves what is left, and the blocks in the skipped part may be gone
    /// without a trace. `None` for a sound open (and for libraries that cannot tell).
    fn damage_at_open(&self) -> Option<ColdDamage> {
        None
    }

    /// Calls `f` with every key and value the library still holds anywhere, reachable by a
    /// walk or not (after damage a walk can miss data that reads still find), for a repair to
    /// check and keep. Values may be stale or repeated: the caller verifies each against its
    /// key. Returns how many parts could not be read, or `None` when the library has no such
    /// scan (then a walk is all there is).
    fn salvage(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<Option<u64>> {
        let _ = f;
        Ok(None)
    }

    /// Whether a successful [`ColdBackend::flush`] makes every earlier write durable. A
    /// backend that cannot promise it (parity-db 0.5, whose background writer has no public
    /// wait) makes the hot tier keep compacted segment files until the backend has been
    /// closed cleanly, so a crash never loses blocks that were moved out of them.
    fn flush_is_durable(&self) -> bool {
        true
    }
}

/// When a backend's damage was found while the engine opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageStage {
    /// The library refused to open its files (or panicked opening them): nothing of this
    /// backend can be read until it is repaired.
    Open,
    /// The library opened, but walking its keys failed part-way: keys before the damage
    /// were seen, the rest may be unreadable.
    Walk,
    /// A read the library refused because the bytes it needs are damaged.
    Read,
}

/// Damage a cold backend found in its own files, with the directory and the library's cause.
///
/// It travels as [`Error::Damaged`]; [`Error::damage`] gets it back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {backend} cold backend in {} is damaged ({stage:?}): {cause}", path.display())]
pub struct ColdDamage {
    /// Which backend.
    pub backend: BackendKind,
    /// The backend's directory.
    pub path: PathBuf,
    /// When the damage was found.
    pub stage: DamageStage,
    /// What the library said (or how it panicked).
    pub cause: String,
}

impl ColdDamage {
    /// The error a call on a backend with this damage returns.
    pub fn into_error(self) -> Error {
        Error::Damaged(self)
    }
}

impl Error {
    /// The damage this error reports, if it is one: a backend that could not be opened
    /// because of its files, or a read the library refused as corrupted.
    pub fn damage(&self) -> Option<&ColdDamage> {
        match self {
            Error::Damaged(damage) => Some(damage),
            _ => None,
        }
    }
}
