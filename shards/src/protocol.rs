//! The request/reply protocol between the engine and its shards, and the client side.
//!
//! A request carries its own reply channel (a flume channel of capacity one), so the caller
//! may await it from any runtime or block on it from a plain thread. Batched calls are split
//! per shard by the caller and sent as one message per shard.

use bytes::Bytes;
use ipfrs_core_types::key::Key;

use std::sync::Arc;

use crate::read_view::ReadView;
use crate::{Error, Result};

/// The sending half of a reply.
pub type Reply<T> = flume::Sender<Result<T>>;

/// A request to a shard.
pub enum Request {
    /// Store blocks (keys and verified bytes). Acknowledged under the configured durability.
    Put {
        /// The blocks.
        items: Vec<(Key, Bytes)>,
        /// Acknowledgement.
        reply: Reply<()>,
    },
    /// Copy a cold block read on a caller's thread back into the hot tier (see
    /// `ShardHandle::promote`). No reply.
    Promote {
        /// The block's key.
        key: Key,
        /// Its bytes, checked.
        data: Bytes,
        /// The shard's delete epoch when it was read.
        epoch: u64,
    },
    /// Read blocks.
    Get {
        /// Keys to read.
        keys: Vec<Key>,
        /// The blocks, in key order.
        reply: Reply<Vec<Option<Fetched>>>,
    },
    /// Test presence.
    Has {
        /// Keys to test.
        keys: Vec<Key>,
        /// Presence, in key order.
        reply: Reply<Vec<bool>>,
    },
    /// Read block sizes.
    Size {
        /// Keys to size.
        keys: Vec<Key>,
        /// Sizes, in key order.
        reply: Reply<Vec<Option<u64>>>,
    },
    /// Remove blocks.
    Delete {
        /// Keys to remove.
        keys: Vec<Key>,
        /// Whether each key was present, in key order.
        reply: Reply<Vec<bool>>,
    },
    /// List keys in ascending order.
    Scan {
        /// Start after this key (from the first if `None`).
        after: Option<Key>,
        /// At most this many keys.
        limit: usize,
        /// The keys.
        reply: Reply<Vec<Key>>,
    },
    /// Counters and budgets.
    Stats {
        /// The snapshot.
        reply: Reply<ShardStats>,
    },
    /// The damaged places the shard knows of (see [`crate::damage`]).
    Damage {
        /// The report.
        reply: Reply<Vec<crate::damage::Damage>>,
    },
    /// Compact every sealed hot segment now (blocks not read since written move to the cold
    /// backend). Replies with the number of segments compacted.
    Compact {
        /// Segments compacted.
        reply: Reply<u64>,
    },
    /// Make every acknowledged write durable, whatever the durability mode.
    Flush {
        /// Acknowledgement.
        reply: Reply<()>,
    },
    /// Finish in-flight work, flush, and stop the shard.
    Shutdown {
        /// Acknowledgement, sent just before the shard's thread ends.
        reply: Reply<()>,
    },
}

pub use crate::fetched::Fetched;

/// A snapshot of one shard's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard's index.
    pub shard: usize,
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes of block data stored.
    pub bytes: u64,
    /// Bytes held by the block cache (data, keys and per-entry overhead).
    pub cache_bytes: u64,
    /// Blocks held by the block cache.
    pub cache_entries: u64,
    /// Reads answered by the cache.
    pub cache_hits: u64,
    /// Reads that went to the backend.
    pub cache_misses: u64,
    /// Cold reads of packed blocks answered from a cached location, without the backend.
    pub location_hits: u64,
    /// Pack locations the location cache holds.
    pub locations_cached: u64,
    /// Lookups the bloom filter answered "absent" without a backend call.
    pub bloom_negatives: u64,
    /// Keys read (`get`, `has`, `get_size`) on the caller's thread, without a round trip to
    /// the shard.
    pub caller_reads: u64,
    /// Puts written on the caller's thread (`Config::caller_writes`).
    pub caller_puts: u64,
    /// Size of the bloom filter in bits.
    pub bloom_bits: u64,
    /// Write groups committed (each one backend batch, and one sync unless durability is None).
    pub write_groups: u64,
    /// Write operations (put or delete requests) those groups carried.
    pub write_ops: u64,
    /// Whether the shard refuses writes after a failed sync.
    pub read_only: bool,
    /// Blocks in the hot tier (some may also have a cold copy).
    pub hot_blocks: u64,
    /// Bytes of block data in the hot tier.
    pub hot_bytes: u64,
    /// Hot segment files.
    pub hot_segments: u64,
    /// Disk bytes the hot segments take (preallocated).
    pub hot_disk_bytes: u64,
    /// Memory held by the hot index.
    pub hot_index_bytes: u64,
    /// Bytes written to hot segments (records, padding, sector rewrites).
    pub segment_write_bytes: u64,
    /// Record bytes compaction read from the segments it emptied.
    pub compaction_read_bytes: u64,
    /// Block bytes compaction moved into the cold backend.
    pub compaction_cold_bytes: u64,
    /// Block bytes compaction rewrote into the hot tier (still hot).
    pub compaction_rewritten_bytes: u64,
    /// Segments compaction removed.
    pub segments_compacted: u64,
    /// Cold blocks copied back into the hot tier.
    pub promotions: u64,
    /// Damaged hot records found (at recovery, or dropped by compaction).
    pub corrupt_records: u64,
    /// Background compaction attempts that failed (full disk, I/O error; each reported on
    /// stderr and retried after a back-off).
    pub compaction_failures: u64,
    /// Block bytes accepted by puts (the denominator of write amplification).
    pub put_bytes: u64,
    /// Cold reads refused as corrupt: the backend returned bytes that do not hash to the
    /// key (counted per read, so a damaged block read twice counts twice).
    pub corrupt_cold_reads: u64,
    /// Cold keys walked at open to rebuild the bloom filter and counters: 0 when the state a
    /// clean close saved stood in for the walk (see [`crate::open_state`]).
    pub keys_walked_at_open: u64,
    /// Pack files (sealed segments whose large cold blocks stay in place, indexed by the
    /// backend).
    pub packs: u64,
    /// Disk bytes the pack files take.
    pub pack_disk_bytes: u64,
    /// Block bytes the packs hold that index entries still point at.
    pub pack_live_bytes: u64,
    /// Packs removed by reclamation (their live blocks rewritten, their space given back).
    pub packs_reclaimed: u64,
    /// Checkpoints of the open state written while running (see
    /// [`crate::open_state`]): an open after a crash starts from the last one still valid
    /// instead of walking the cold keys.
    pub checkpoints: u64,
    /// Packs whose only copy is in the pack bucket (their local files were removed).
    pub remote_packs: u64,
    /// Packs uploaded to the bucket (with their hints).
    pub remote_uploads: u64,
    /// Pack bytes uploaded to the bucket.
    pub remote_upload_bytes: u64,
    /// Manifest generations published.
    pub remote_manifests: u64,
    /// Uploaded packs whose local file was removed past the local budget.
    pub remote_evictions: u64,
    /// Remote packs fetched back into local files (to be reclaimed).
    pub remote_fetched_back: u64,
    /// Packs deleted from the bucket, a grace period after they left its manifest.
    pub remote_deletes: u64,
    /// Records read from the bucket by ranged GETs.
    pub remote_reads: u64,
    /// Bytes of those records.
    pub remote_read_bytes: u64,
    /// Uploader rounds that failed (an unreachable store, a full disk) and were retried.
    pub remote_failures: u64,
    /// Records served from pack ranges read ahead, without a request to the bucket.
    pub remote_range_hits: u64,
}

/// The client side of a shard: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ShardHandle {
    id: usize,
    tx: flume::Sender<Request>,
    /// Never receives a message: it disconnects when the shard's thread ends (see
    /// [`PendingReply::wait`]).
    stopped: flume::Receiver<()>,
    /// Reads on the caller's thread.
    view: Arc<ReadView>,
}

impl ShardHandle {
    /// `stopped` must disconnect (its sender dropped) once the shard will answer nothing
    /// more: when its thread ends.
    pub(crate) fn new(
        id: usize,
        tx: flume::Sender<Request>,
        stopped: flume::Receiver<()>,
        view: Arc<ReadView>,
    ) -> ShardHandle {
        ShardHandle {
            id,
            tx,
            stopped,
            view,
        }
    }

    /// What the caller's thread may read of this shard without a round trip to it.
    pub fn view(&self) -> &ReadView {
        &self.view
    }

    /// [`ReadView::get`] on the caller's thread, handing the shard a block to promote if the
    /// read earned one: the value (a record unchecked, see [`Fetched`]), or `Quick::Shard`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn quick_get(&self, key: &[u8]) -> Result<crate::read_view::Quick<Option<Fetched>>> {
        use crate::read_view::Quick;
        Ok(match self.view.get(key)? {
            Quick::Answer((value, promotion)) => {
                if let Some(promotion) = promotion {
                    self.promote(promotion);
                }
                Quick::Answer(value)
            }
            Quick::Shard => Quick::Shard,
        })
    }

    /// Hands the shard a cold block read often enough on a caller's thread to be copied back
    /// into the hot tier. Dropped if the shard's queue is full: promotion only saves later
    /// reads a trip to the cold backend.
    fn promote(&self, promotion: crate::read_view::Promotion) {
        let _ = self.tx.try_send(Request::Promote {
            key: promotion.key,
            data: promotion.data,
            epoch: promotion.epoch,
        });
    }

    /// The shard's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Sends a request built around a fresh reply channel; the reply is awaited separately,
    /// so a caller can send to every shard first and then wait for all of them.
    pub async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<PendingReply<T>> {
        let (reply, rx) = flume::bounded(1);
        self.tx
            .send_async(make(reply))
            .await
            .map_err(|_| Error::Stopped { shard: self.id })?;
        Ok(PendingReply {
            shard: self.id,
            rx,
            stopped: self.stopped.clone(),
        })
    }

    /// Sends a request and awaits its reply.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        self.send(make).await?.wait().await
    }
}

/// A reply not yet received.
pub struct PendingReply<T> {
    shard: usize,
    rx: flume::Receiver<Result<T>>,
    stopped: flume::Receiver<()>,
}

impl<T> PendingReply<T> {
    /// Waits for the reply. A shard that stops before replying yields [`Error::Stopped`].
    ///
    /// The reply channel alone cannot tell: a request that reached the shard's queue after
    /// its loop had stopped receiving stays in that queue, its reply sender with it, for as
    /// long as any handle keeps the queue alive (flume drops queued messages only with the
    /// last sender), so a caller holding an engine clone while another thread closed the
    /// engine waited for ever. The shard's thread end is watched as well; a reply sent before
    /// the shard stopped still wins (`or` prefers its first future).
    pub async fn wait(self) -> Result<T> {
        let shard = self.shard;
        let reply = async {
            self.rx
                .recv_async()
                .await
                .map_err(|_| Error::Stopped { shard })?
        };
        let stopped = async {
            // Only ever a disconnection: nothing is sent on this channel.
            let _ = self.stopped.recv_async().await;
            Err(Error::Stopped { shard })
        };
        futures_lite::future::or(reply, stopped).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The hang found by engine/tests/shutdown_stress.rs: a request queued after the shard
    /// stopped receiving, the queue kept alive by a live handle. Its caller must see
    /// `Stopped` once the shard's thread is gone, not wait for ever.
    #[test]
    fn a_request_left_in_the_queue_of_a_stopped_shard_fails_with_stopped() {
        let (tx, requests) = flume::bounded(4);
        let (thread_alive, stopped) = flume::bounded::<()>(0);
        let handle = ShardHandle::new(3, tx, stopped, Arc::new(ReadView::detached(3)));
        let pending = futures_lite::future::block_on(handle.send(|reply| Request::Flush { reply }))
            .expect("the queue has room");
        // The shard's loop ended without receiving it; its thread ends.
        drop(requests);
        drop(thread_alive);
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(futures_lite::future::block_on(pending.wait()));
        });
        let result = done
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("wait() returned after the shard stopped");
        assert!(
            matches!(result, Err(Error::Stopped { shard: 3 })),
            "{result:?}"
        );
        drop(handle);
    }

    /// A reply sent just before the shard stopped is still delivered.
    #[test]
    fn a_reply_sent_before_the_stop_wins() {
        let (tx, requests) = flume::bounded(4);
        let (thread_alive, stopped) = flume::bounded::<()>(0);
        let handle = ShardHandle::new(0, tx, stopped, Arc::new(ReadView::detached(0)));
        let pending =
            futures_lite::future::block_on(handle.send(|reply| Request::Flush { reply })).unwrap();
        match requests.recv().unwrap() {
            Request::Flush { reply } => reply.send(Ok(())).unwrap(),
            _ => unreachable!(),
        }
        drop(thread_alive);
        assert!(futures_lite::future::block_on(pending.wait()).is_ok());
    }
}
