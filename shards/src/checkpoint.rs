//! Checkpoints of a running shard's open state, so that an open after a crash need not walk
//! every cold key (see `open_state` for the file and why a checkpoint stays valid).
//!
//! ```text
//!   compaction idle for CHECKPOINT_AFTER --> Pending::Checkpoint (alone, on the writer):
//!       hot log synced, backend flushed, state written --> current
//!   current --(before a backend write, a tombstone of a block that may be cold, a
//!              promotion, any compaction or reclamation step)--> file removed, synced
//! ```
//! Everything that could make a checkpoint wrong goes through the shard's writer, so between
//! the writer taking a checkpoint and the next such change nothing moves. Every write to the
//! cold backend goes through [`Guarded`], so no path can forget to discard it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ipfrs_core_types::BackendKind;
use ipfrs_tiering::{ColdBackend, ColdDamage};

use crate::hot::HotTier;
use crate::open_state::{self, OpenState};
use crate::shard::Shard;
use crate::{Error, Result};

/// How long compaction must have had nothing to do before the shard writes a checkpoint:
/// long enough that an ingest that keeps the hot tier over its budget does not rewrite the
/// bloom filter between two compaction steps, short enough that a node at rest has one.
pub(crate) const CHECKPOINT_AFTER: Duration = Duration::from_secs(2);

/// Whether the shard's checkpoint file is current, and how to void it.
pub(crate) struct Checkpoint {
    /// The shard's backend directory (`shard-NNN/<backend>`), whose open-state file it is.
    backend_dir: PathBuf,
    /// False for a shard whose backend's flush is not durable (parity-db's: after a crash
    /// its files may hold less than a checkpoint taken over them says) or was found damaged
    /// at open (an open from a checkpoint would not know of the damage).
    enabled: bool,
    current: AtomicBool,
}

impl Checkpoint {
    /// No checkpoint yet (an open takes whatever file it finds); `enabled` false: never one.
    pub(crate) fn new(backend_dir: PathBuf, enabled: bool) -> Checkpoint {
        Checkpoint {
            backend_dir,
            enabled,
            current: AtomicBool::new(false),
        }
    }

    /// Whether a checkpoint file describes the shard as it is.
    pub(crate) fn is_current(&self) -> bool {
        self.current.load(Ordering::SeqCst)
    }

    /// Removes the checkpoint, durably, if there is one: called (on a blocking thread) before
    /// anything that would make it wrong. If it cannot be removed, the change must not be
    /// made, so the error is returned and the checkpoint still counts as current.
    pub(crate) fn invalidate(&self) -> std::io::Result<()> {
        if !self.current.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        open_state::discard(&self.backend_dir).inspect_err(|_| {
            self.current.store(true, Ordering::SeqCst);
        })
    }

    /// [`Self::invalidate`] from the shard's thread: a trip to the blocking pool only when a
    /// checkpoint is current. Wakes the compaction task, which writes the next checkpoint
    /// once it has been idle for [`CHECKPOINT_AFTER`].
    pub(crate) async fn invalidate_from(&self, shard: &Shard) -> Result<()> {
        if !self.is_current() {
            return Ok(());
        }
        let mark = Arc::clone(&shard.checkpoint);
        let dir = open_state::path(&self.backend_dir);
        crate::rt::spawn_blocking(move || mark.invalidate())
            .await
            .map_err(Error::segment_io(shard.id, "removing the checkpoint", dir))?;
        if let Some(hot) = &shard.hot {
            let _ = hot.wake_tx.try_send(());
        }
        Ok(())
    }
}

/// Whether the shard should write a checkpoint once compaction has been idle: it may have
/// one at all, there is none, and there are cold blocks to save the walk of.
pub(crate) fn wanted(shard: &Shard, hot: &HotTier) -> bool {
    shard.checkpoint.enabled
        && !shard.checkpoint.is_current()
        && shard.writes.poisoned().is_none()
        && shard.counters.blocks.get() > hot.index.borrow().len() as u64
}

/// Writes a checkpoint (see the module documentation); runs alone on the shard's writer.
/// Skipped while a segment is being compacted (its moved blocks would be both hot and cold
/// after a crash) or while file changes wait for the backend's close.
pub(crate) async fn take(shard: &Shard, hot: &HotTier) -> Result<()> {
    if !wanted(shard, hot) || !hot.packing.borrow().is_empty() || !hot.deferred.borrow().is_empty()
    {
        return Ok(());
    }
    // The hot records the counters below leave out must survive a crash, and the backend
    // writes they include must too.
    crate::hot::append::append(shard, hot, &[], true).await?;
    shard.blocking(|backend| backend.flush()).await?;
    let state = state_of(shard, true);
    let dir = shard.checkpoint.backend_dir.clone();
    let kind = shard.backend.kind();
    let path = open_state::path(&dir);
    crate::rt::spawn_blocking(move || open_state::save_checkpoint(&dir, kind, &state))
        .await
        .map_err(Error::segment_io(shard.id, "writing the checkpoint", path))?;
    shard.checkpoint.current.store(true, Ordering::SeqCst);
    crate::shard::bump(&hot.counters.checkpoints, 1);
    Ok(())
}

/// What a clean close saves (`checkpoint` false: every block counted) or a checkpoint
/// records (the cold blocks that are not hot counted; see `open_state`) of `shard` now.
pub(crate) fn state_of(shard: &Shard, checkpoint: bool) -> OpenState {
    let (mut blocks, mut bytes) = (shard.counters.blocks.get(), shard.counters.bytes.get());
    if checkpoint && let Some(hot) = &shard.hot {
        let index = hot.index.borrow();
        blocks = blocks.saturating_sub(index.len() as u64);
        bytes = bytes.saturating_sub(index.bytes());
    }
    OpenState {
        checkpoint,
        blocks,
        bytes,
        num_hashes: shard.bloom.num_hashes(),
        words: shard.bloom.iter().collect(),
        packs: shard
            .hot
            .as_ref()
            .map(|hot| {
                hot.packs
                    .borrow()
                    .figures()
                    .into_iter()
                    .map(|(id, b)| (id, b.live, b.held))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The shard's cold backend, voiding the checkpoint before every write.
pub(crate) struct Guarded {
    inner: Arc<dyn ColdBackend>,
    mark: Arc<Checkpoint>,
}

impl Guarded {
    /// Wraps `inner`.
    pub(crate) fn new(inner: Arc<dyn ColdBackend>, mark: Arc<Checkpoint>) -> Guarded {
        Guarded { inner, mark }
    }

    fn before_write(&self) -> ipfrs_tiering::Result<()> {
        self.mark
            .invalidate()
            .map_err(|source| ipfrs_tiering::Error::Io {
                path: open_state::path(&self.mark.backend_dir),
                source,
            })
    }
}

impl ColdBackend for Guarded {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn get(&self, key: &[u8]) -> ipfrs_tiering::Result<Option<Bytes>> {
        self.inner.get(key)
    }

    fn size(&self, key: &[u8]) -> ipfrs_tiering::Result<Option<u64>> {
        self.inner.size(key)
    }

    fn contains(&self, key: &[u8]) -> ipfrs_tiering::Result<bool> {
        self.inner.contains(key)
    }

    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> ipfrs_tiering::Result<()> {
        self.before_write()?;
        self.inner.put_batch(items)
    }

    fn delete_batch(&self, keys: &[Vec<u8>]) -> ipfrs_tiering::Result<()> {
        self.before_write()?;
        self.inner.delete_batch(keys)
    }

    fn iterate(
        &self,
        after: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> ipfrs_tiering::Result<()> {
        self.inner.iterate(after, f)
    }

    fn flush(&self) -> ipfrs_tiering::Result<()> {
        self.inner.flush()
    }

    fn damage_at_open(&self) -> Option<ColdDamage> {
        self.inner.damage_at_open()
    }

    fn salvage(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> ipfrs_tiering::Result<Option<u64>> {
        self.inner.salvage(f)
    }

    fn flush_is_durable(&self) -> bool {
        self.inner.flush_is_durable()
    }
}
