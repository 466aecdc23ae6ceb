use std::path::PathBuf;
use std::sync::Arc;

/// Why a shard refuses writes ([`Error::Poisoned`]).
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum PoisonCause {
    /// Writing a hot segment failed.
    #[error("writing a hot segment failed: {0}")]
    SegmentWrite(#[source] Arc<std::io::Error>),
    /// fdatasync of a hot segment failed.
    #[error("syncing a hot segment failed: {0}")]
    SegmentSync(#[source] Arc<std::io::Error>),
    /// The cold backend's flush failed (a shard without a hot tier).
    #[error("flushing the cold backend failed: {0}")]
    BackendSync(#[source] Arc<ipfrs_tiering::Error>),
    /// Deleting blocks from the cold backend failed after their tombstones were durable:
    /// their cold copies could still be served; a reopen redoes the deletes.
    #[error("deleting from the cold backend failed: {0}")]
    ColdDelete(#[source] Arc<ipfrs_tiering::Error>),
    /// Noting deleted blocks' pack records durably (for the bucket's manifest) failed after
    /// their tombstones were durable; their cold copies stay until a reopen redoes the
    /// deletes.
    #[error("noting deleted records for the bucket failed: {0}")]
    DeadRecords(#[source] Arc<std::io::Error>),
    /// The hot tier's writer is not running (a failed start or a panic).
    #[error("the hot tier's writer is not running")]
    WriterStopped,
}

/// Why a shard's executor could not start ([`Error::Executor`]).
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum ExecutorFailure {
    /// The OS refused a new thread.
    #[error("cannot spawn its thread: {0}")]
    Spawn(#[source] Arc<std::io::Error>),
    /// An io_uring call failed for a reason that does not say io_uring is unusable here.
    #[error("{call} failed: {source}")]
    IoUring {
        /// The call (`io_uring_setup`, `io_uring_enter`, `io_uring_register`).
        call: &'static str,
        /// What the kernel said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// glommio refused to build the executor for another reason (its error type is not
    /// `Send`, so only its message crosses the thread).
    #[error("{0}")]
    Runtime(String),
    /// The shard's thread panicked before the shard was ready.
    #[error("its thread panicked while starting: {0}")]
    Panicked(String),
}

/// Errors of the shards.
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The cold backend failed.
    #[error("shard {shard}: {source}")]
    Backend {
        /// The shard.
        shard: usize,
        /// The backend's error.
        #[source]
        source: Arc<ipfrs_tiering::Error>,
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
    #[error("shard {shard}: could not start its executor: {cause}")]
    Executor {
        /// The shard.
        shard: usize,
        /// What failed.
        #[source]
        cause: ExecutorFailure,
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
        #[source]
        cause: PoisonCause,
    },
    /// The disk is full: a new hot segment could not be allocated, a put would have left less
    /// than the room kept for freeing space, or a compaction step had no room for its cold
    /// writes. Nothing was written; everything acknowledged before stays readable, and writes
    /// succeed again once space is freed.
    #[error(
        "shard {shard}: no space left on the device ({}{detail}); nothing was written",
        path.display()
    )]
    NoSpace {
        /// The shard.
        shard: usize,
        /// Where the space ran out: the file that could not be allocated, or the shard's
        /// directory.
        path: PathBuf,
        /// What was needed and what was free, when known (empty otherwise).
        detail: String,
    },
    /// A hot segment file could not be read, created, synced or removed.
    #[error("shard {shard}: {operation} {}: {source}", path.display())]
    SegmentIo {
        /// The shard.
        shard: usize,
        /// What was being done ("recovering", "removing", ...).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A record could not be encoded (a key or payload length out of range); nothing was
    /// written.
    #[error("shard {shard}: record refused: {reason}")]
    RecordRefused {
        /// The shard.
        shard: usize,
        /// What is out of range.
        reason: String,
    },
    /// A stored record failed its check; its bytes are not served.
    #[error("corrupt record for key {}: {reason}", hex(key))]
    Corrupt {
        /// The block's key (multihash bytes).
        key: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },
    /// The store keeps packs only in a bucket (their local files were removed) and was
    /// opened without `Config::remote`: its index points at blocks it could not read.
    #[error(
        "{} names a pack bucket ({bucket}) that holds packs no longer on this disk: open the \
         store with Config::remote (the [remote] section) set to that bucket",
        path.display()
    )]
    RemoteRequired {
        /// The marker file.
        path: PathBuf,
        /// The bucket and prefix it names.
        bucket: String,
    },
    /// The bucket of the pack tier failed (unreachable, refused, damaged object), or a store
    /// whose packs are in a bucket was opened without one.
    #[error("shard {shard}: the pack bucket: {source}")]
    Remote {
        /// The shard.
        shard: usize,
        /// What the bucket said.
        #[source]
        source: Arc<ipfrs_remote::RemoteError>,
    },
    /// The store has hot segments but was opened with the hot tier off: its newest blocks
    /// would be invisible.
    #[error(
        "{} holds hot segments: open it with the hot tier enabled (Config::hot_tier)",
        path.display()
    )]
    HotTierRequired {
        /// The segments directory.
        path: PathBuf,
    },
    /// A step of the shard's shutdown did not finish in time; the shard stopped without it.
    #[error("shard {shard}: {step} did not finish within {secs} s of shutdown")]
    ShutdownTimeout {
        /// The shard.
        shard: usize,
        /// The step ("in-flight work", "the final flush").
        step: &'static str,
        /// The grace period, in seconds.
        secs: u64,
    },
    /// The shard has stopped (engine closed, or its thread died).
    #[error("shard {shard} has stopped")]
    Stopped {
        /// The shard.
        shard: usize,
    },
}

impl Error {
    /// A failed operation on a hot segment file, for `map_err`.
    pub(crate) fn segment_io(
        shard: usize,
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::SegmentIo {
            shard,
            operation,
            path,
            source: Arc::new(source),
        }
    }

    /// A cold-backend failure of `shard`.
    pub(crate) fn backend(shard: usize) -> impl FnOnce(ipfrs_tiering::Error) -> Error {
        move |source| Error::Backend {
            shard,
            source: Arc::new(source),
        }
    }

    /// The shard's error for a failure of its pack bucket.
    pub(crate) fn remote(shard: usize) -> impl FnOnce(ipfrs_remote::RemoteError) -> Error {
        move |source| Error::Remote {
            shard,
            source: Arc::new(source),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
