//! The request/reply protocol between the engine and its shards, and the client side.
//!
//! A request carries its own reply channel (a flume channel of capacity one), so the caller
//! may await it from any runtime or block on it from a plain thread. Batched calls are split
//! per shard by the caller and sent as one message per shard.

use bytes::Bytes;
use ipfrs_core_types::key::Key;

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
    /// Read blocks.
    Get {
        /// Keys to read.
        keys: Vec<Key>,
        /// The blocks, in key order.
        reply: Reply<Vec<Option<Bytes>>>,
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
    /// Lookups the bloom filter answered "absent" without a backend call.
    pub bloom_negatives: u64,
    /// Size of the bloom filter in bits.
    pub bloom_bits: u64,
    /// Write groups committed (each one backend batch, and one sync unless durability is None).
    pub write_groups: u64,
    /// Write operations (put or delete requests) those groups carried.
    pub write_ops: u64,
    /// Whether the shard refuses writes after a failed sync.
    pub read_only: bool,
}

/// The client side of a shard: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ShardHandle {
    id: usize,
    tx: flume::Sender<Request>,
}

impl ShardHandle {
    pub(crate) fn new(id: usize, tx: flume::Sender<Request>) -> ShardHandle {
        ShardHandle { id, tx }
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
        Ok(PendingReply { shard: self.id, rx })
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
}

impl<T> PendingReply<T> {
    /// Waits for the reply. A shard that stops before replying yields [`Error::Stopped`].
    pub async fn wait(self) -> Result<T> {
        self.rx
            .recv_async()
            .await
            .map_err(|_| Error::Stopped { shard: self.shard })?
    }
}
