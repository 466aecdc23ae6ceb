/// Why a shard refuses writes ([`Error::Poisoned`]).
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum PoisonCause {
    /// Writing a hot segment failed.
    #[error("writing a hot segment failed: {0}")]
    SegmentWrite(#[source] std::sync::Arc<std::io::Error>),
    /// fdatasync of a hot segment failed.
    #[error("syncing a hot segment failed: {0}")]
    SegmentSync(#[source] std::sync::Arc<std::io::Error>),
    /// The cold backend's flush failed (a shard without a hot tier).
    #[error("flushing the cold backend failed: {0}")]
    BackendSync(#[source] std::sync::Arc<ipfrs_tiering::Error>),
    /// Deleting blocks from the cold backend failed after their tombstones were durable:
    /// their cold copies could still be served; a reopen redoes the deletes.
    #[error("deleting from the cold backend failed: {0}")]
    ColdDelete(#[source] std::sync::Arc<ipfrs_tiering::Error>),
    /// The hot tier's writer is not running (a failed start or a panic).
    #[error("the hot tier's writer is not running")]
    WriterStopped,
}

/// Errors of the shards.
#[derive(Debug, thiserror::Error, Clone)]
pub enum Error {
    /// The cold backend failed.
    #[error("shard {shard}: {message}")]
    Backend {
        /// The shard.
        shard: usize,
        /// The backend's error.
        message: String,
    },
    /// io_uring cannot be used on this machine.
    #[error("io_uring is unavailable: {reason}")]
    IoUringUnavailable {
        /// The cause and how to fix it.
        reason: String,
    },
    /// The memlock limit is below what the shards' io_uring rings need.
    #[error(
        "memlock limit too low: {have} bytes allowed, at least {need} needed for io_uring; \
         raise it (`ulimit -l`, or LimitMEMLOCK= in a systemd unit) or lower \
         Config::io_memory_per_shard"
    )]
    MemlockTooLow {
        /// The current limit in bytes.
        have: u64,
        /// What glommio needs.
        need: u64,
    },
    /// The executor could not be started for another reason.
    #[error("shard {shard}: could not start its executor: {message}")]
    Executor {
        /// The shard.
        shard: usize,
        /// What failed.
        message: String,
    },
    /// The shard refuses writes until the engine is reopened (reads keep working): a write
    /// or sync of its files failed, and after a failed fsync the kernel may have dropped the
    /// unwritten pages, so retrying and acknowledging could lose data silently; or a step
    /// that must follow a durable one could not run (see [`PoisonCause`]).
    #[error("shard {shard} refuses writes until the engine is reopened: {cause}")]
    Poisoned {
        /// The shard.
        shard: usize,
        /// What failed.
        cause: PoisonCause,
    },
    /// The disk is full: a new hot segment could not be allocated, a put would have left less
    /// than the room kept for freeing space, or a compaction step had no room for its cold
    /// writes. Nothing was written; everything acknowledged before stays readable, and writes
    /// succeed again once space is freed.
    #[error("shard {shard}: no space left on the device ({path}); nothing was written")]
    NoSpace {
        /// The shard.
        shard: usize,
        /// Where the space ran out: the file that could not be allocated, or the shard's
        /// directory (with what was needed, for compaction).
        path: String,
    },
    /// A hot segment file could not be read, created or removed.
    #[error("shard {shard}: hot segment error: {message}")]
    SegmentIo {
        /// The shard.
        shard: usize,
        /// What failed.
        message: String,
    },
    /// A stored record failed its check; its bytes are not served.
    #[error("corrupt record for key {}: {reason}", hex(key))]
    Corrupt {
        /// The block's key (multihash bytes).
        key: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },
    /// The store has hot segments but was opened with the hot tier off: its newest blocks
    /// would be invisible.
    #[error("{path} holds hot segments: open it with the hot tier enabled (Config::hot_tier)")]
    HotTierRequired {
        /// The segments directory.
        path: String,
    },
    /// The shard has stopped (engine closed, or its thread died).
    #[error("shard {shard} has stopped")]
    Stopped {
        /// The shard.
        shard: usize,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
