use std::path::PathBuf;

use ipfrs_core_types::{BackendKind, BlockError};
use ipfrs_shards::PoisonCause;

/// Errors of the engine. Every error is returned before anything is stored or changed, unless
/// its documentation says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The block or CID handed in is invalid (hash mismatch, too large, unsupported hash,
    /// malformed CID).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A configuration value is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field of [`crate::Config`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory holds files that are not an ipfrs store.
    #[error(
        "{path} is not an ipfrs store: it is not empty and has no ipfrs.meta; \
         choose an empty or new directory"
    )]
    NotOurDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Another engine (this process or another) has the store open.
    #[error("{path} is locked by another open engine; close it first")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The store was created with another backend.
    #[error("{path} was created with the {recorded} backend, not {requested}")]
    BackendMismatch {
        /// The data directory.
        path: PathBuf,
        /// The backend recorded in the store.
        recorded: BackendKind,
        /// The backend asked for.
        requested: BackendKind,
    },
    /// The store's on-disk format is not one this build reads. An older format that
    /// `ipfrs-store repo migrate` ([`crate::migrate`]) converts, or a migration that was
    /// interrupted, says so in the message.
    #[error(
        "{path} has store format {found}; this build reads format {supported}{}",
        format_fix(found)
    )]
    IncompatibleFormat {
        /// The data directory.
        path: PathBuf,
        /// The format found (or the unreadable metadata).
        found: String,
        /// The format this build reads.
        supported: u32,
    },
    /// The store was created with another shard count (blocks are routed by it).
    #[error(
        "{path} has {recorded} shards, not {requested}; leave Config::shards unset to use the recorded count"
    )]
    ShardCountMismatch {
        /// The data directory.
        path: PathBuf,
        /// The recorded count.
        recorded: usize,
        /// The count asked for.
        requested: usize,
    },
    /// The backend is not compiled into this build.
    #[error("backend {0} is not in this build (enable the cargo feature `{0}`)")]
    BackendNotCompiled(BackendKind),
    /// io_uring cannot be used on this machine.
    #[error("io_uring is unavailable: {reason}")]
    IoUringUnavailable {
        /// The cause and how to fix it.
        reason: String,
    },
    /// The memlock limit is too low for the shards' io_uring rings.
    #[error(
        "memlock limit too low: {have} bytes allowed, at least {need} needed for io_uring; \
         raise it (`ulimit -l`, or LimitMEMLOCK= in a systemd unit) or lower \
         Config::io_memory_per_shard"
    )]
    MemlockTooLow {
        /// The current limit in bytes.
        have: u64,
        /// What is needed.
        need: u64,
    },
    /// A shard refuses writes until the engine is reopened; reads still work. `cause` says
    /// what failed (a segment write or sync, the cold backend's flush or a delete that had
    /// to follow durable tombstones, a writer that is not running).
    #[error("shard {shard} refuses writes until the engine is reopened: {cause}")]
    Poisoned {
        /// The shard.
        shard: usize,
        /// What failed.
        cause: PoisonCause,
    },
    /// The disk is full: the write was not stored. Everything acknowledged before stays
    /// readable, reads keep working, and writes succeed again once space is freed.
    #[error("no space left on the device (shard {shard}, {path}): the write was not stored")]
    NoSpace {
        /// The shard.
        shard: usize,
        /// The file that could not be allocated.
        path: String,
    },
    /// A stored block failed its check (checksum or key): its bytes are not served.
    #[error("block {cid} is corrupt on disk: {reason}")]
    Corrupt {
        /// The block's CID (CIDv1 raw of its multihash).
        cid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store has a hot tier but was opened with `Config::hot_tier` set to `None`.
    #[error("{path} holds hot segments: open the store with the hot tier enabled")]
    HotTierRequired {
        /// The segments directory.
        path: String,
    },
    /// The storage below failed (backend error, executor failure).
    #[error("storage error: {0}")]
    Storage(String),
    /// A file operation on the data directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The engine is closed.
    #[error("the engine is closed")]
    Closed,
    /// A metadata key or value is out of bounds; nothing was changed.
    #[error("invalid metadata: {reason}")]
    InvalidMetadata {
        /// What is wrong.
        reason: String,
    },
    /// The change would take live metadata past its in-memory budget; nothing was changed.
    #[error("the metadata store is full ({limit} bytes of keys and values)")]
    MetadataFull {
        /// The budget in bytes.
        limit: usize,
    },
    /// The metadata log is damaged before its last record: no metadata is served or changed
    /// until an operator repairs or removes the file (blocks are unaffected).
    #[error("the metadata log {path} is corrupt at byte {offset}: {reason}")]
    MetadataCorrupt {
        /// The log file.
        path: PathBuf,
        /// Where the first damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A write, fdatasync or rename of the metadata log failed: the kernel may have dropped
    /// what was written, so every change is refused until the engine is reopened (which
    /// replays the log from disk). Reads of acknowledged values keep working; a change refused
    /// with this error was not acknowledged.
    #[error(
        "the metadata log refuses changes after a failed {operation} of {path}: {source}; \
         reopen the engine"
    )]
    MetadataPoisoned {
        /// The file the failed operation was on.
        path: PathBuf,
        /// The operation that failed ("write", "fdatasync", "rename", ...).
        operation: &'static str,
        /// The first failure, shared by every error reported after it.
        source: std::sync::Arc<std::io::Error>,
    },
}

/// What to do about a store format this build does not open, if there is something to do.
fn format_fix(found: &str) -> &'static str {
    if found == crate::directory::MIGRATABLE_FORMAT {
        "; convert it with `ipfrs-store repo migrate` (with the store closed)"
    } else if found == crate::directory::MIGRATING_FORMAT {
        "; a conversion was interrupted: finish it with `ipfrs-store repo migrate`"
    } else {
        ""
    }
}

impl From<ipfrs_shards::Error> for Error {
    fn from(err: ipfrs_shards::Error) -> Error {
        use ipfrs_shards::Error as S;
        match err {
            S::IoUringUnavailable { reason } => Error::IoUringUnavailable { reason },
            S::MemlockTooLow { have, need } => Error::MemlockTooLow { have, need },
            S::Poisoned { shard, cause } => Error::Poisoned { shard, cause },
            S::Stopped { .. } => Error::Closed,
            S::NoSpace { shard, path } => Error::NoSpace { shard, path },
            S::HotTierRequired { path } => Error::HotTierRequired { path },
            S::Corrupt { key, reason } => Error::Corrupt {
                cid: ipfrs_core_types::key::cid_of_key(&key)
                    .map_or_else(|_| format!("key {key:02x?}"), |cid| cid.to_string()),
                reason,
            },
            other @ (S::Backend { .. } | S::Executor { .. } | S::SegmentIo { .. }) => {
                Error::Storage(other.to_string())
            }
        }
    }
}
