use std::path::PathBuf;

use ipfrs_core_types::{BackendKind, BlockError};
use ipfrs_shards::{ExecutorFailure, PoisonCause};

/// Errors of the engine. Every error is returned before anything is stored or changed, unless
/// its documentation says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
        #[source]
        cause: PoisonCause,
    },
    /// The disk is full: the write was not stored. Everything acknowledged before stays
    /// readable, reads keep working, and writes succeed again once space is freed.
    #[error(
        "no space left on the device (shard {shard}, {}{detail}): the write was not stored",
        path.display()
    )]
    NoSpace {
        /// The shard.
        shard: usize,
        /// The file that could not be allocated, or the shard's directory.
        path: PathBuf,
        /// What was needed and what was free, when known (empty otherwise).
        detail: String,
    },
    /// A stored block failed its check (checksum or key): its bytes are not served.
    #[error("block {} is corrupt on disk: {reason}", CorruptName(key))]
    Corrupt {
        /// The block's key: the multihash of its CID (its CIDv1 raw is
        /// [`ipfrs_core_types::key::cid_of_key`] of it).
        key: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },
    /// The store has a hot tier but was opened with `Config::hot_tier` set to `None`.
    #[error(
        "{} holds hot segments: open the store with the hot tier enabled",
        path.display()
    )]
    HotTierRequired {
        /// The segments directory.
        path: PathBuf,
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
    /// The pack tier's bucket failed (unreachable, refused credentials, a missing bucket, a
    /// damaged object), or a store whose packs are in a bucket was opened without one.
    #[error("shard {shard}: the pack bucket: {source}")]
    Remote {
        /// The shard.
        shard: usize,
        /// What the bucket said.
        #[source]
        source: std::sync::Arc<ipfrs_remote::RemoteError>,
    },
    /// A shard's cold backend failed.
    #[error("shard {shard}: {source}")]
    Backend {
        /// The shard.
        shard: usize,
        /// The backend's error (shared: a shard's errors are `Clone`).
        #[source]
        source: std::sync::Arc<ipfrs_tiering::Error>,
    },
    /// A cold backend opened outside the shards (by [`crate::repair_cold`] or
    /// [`crate::migrate`]) failed.
    #[error("{}: {source}", path.display())]
    ColdBackend {
        /// The backend's directory.
        path: PathBuf,
        /// The backend's error.
        #[source]
        source: ipfrs_tiering::Error,
    },
    /// A shard's executor could not be started.
    #[error("shard {shard}: could not start its executor: {cause}")]
    Executor {
        /// The shard.
        shard: usize,
        /// What failed.
        #[source]
        cause: ExecutorFailure,
    },
    /// A hot segment file could not be read, created, synced or removed.
    #[error("shard {shard}: {operation} {}: {source}", path.display())]
    SegmentIo {
        /// The shard.
        shard: usize,
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
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
    /// A step of a shard's shutdown did not finish in time; the shard stopped without it.
    #[error("shard {shard}: {step} did not finish within {secs} s of shutdown")]
    ShutdownTimeout {
        /// The shard.
        shard: usize,
        /// The step.
        step: &'static str,
        /// The grace period, in seconds.
        secs: u64,
    },
    /// One of the engine's service threads could not be started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The files of a store being converted or repaired are in a state no conversion or
    /// repair leaves; nothing was changed, and the message says what to move away.
    #[error("{}: {reason}", path.display())]
    UnexpectedFiles {
        /// The directory.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// An internal invariant failed: a bug in the engine, reported instead of a panic.
    #[error("internal error (please report it): {0}")]
    Internal(String),
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
    /// The store is a read-only replica ([`crate::Replica`]): writes go to the primary that
    /// uploads the packs; nothing was changed.
    #[error("{operation} refused: this store is a read-only replica of a pack bucket")]
    ReadOnly {
        /// The refused operation (`put`, `delete`).
        operation: &'static str,
    },
    /// A read replica's bucket failed a read or a listing (unreachable, a pack gone since the
    /// replica's last refresh, a damaged object); the error names the object.
    #[error("the replica's pack bucket: {source}")]
    ReplicaBucket {
        /// What the bucket said.
        #[source]
        source: ipfrs_remote::RemoteError,
    },
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
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

/// A corrupt block's name for messages: its CID when the key is a multihash, else the key's
/// bytes in hex.
struct CorruptName<'a>(&'a [u8]);

impl std::fmt::Display for CorruptName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match ipfrs_core_types::key::cid_of_key(self.0) {
            Ok(cid) => write!(f, "{cid}"),
            Err(_) => {
                f.write_str("with key ")?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

impl Error {
    /// The CID of the block an [`Error::Corrupt`] names (CIDv1 raw of its key), if the key
    /// is a multihash.
    pub fn corrupt_cid(&self) -> Option<ipfrs_core_types::Cid> {
        match self {
            Error::Corrupt { key, .. } => ipfrs_core_types::key::cid_of_key(key).ok(),
            _ => None,
        }
    }
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
            S::NoSpace {
                shard,
                path,
                detail,
            } => Error::NoSpace {
                shard,
                path,
                detail,
            },
            S::HotTierRequired { path } => Error::HotTierRequired { path },
            S::Remote { shard, source } => Error::Remote { shard, source },
            S::RemoteRequired { path, bucket } => Error::RemoteRequired { path, bucket },
            S::Corrupt { key, reason } => Error::Corrupt { key, reason },
            S::Backend { shard, source } => Error::Backend { shard, source },
            S::Executor { shard, cause } => Error::Executor { shard, cause },
            S::SegmentIo {
                shard,
                operation,
                path,
                source,
            } => Error::SegmentIo {
                shard,
                operation,
                path,
                source,
            },
            S::RecordRefused { shard, reason } => Error::RecordRefused { shard, reason },
            S::ShutdownTimeout { shard, step, secs } => {
                Error::ShutdownTimeout { shard, step, secs }
            }
            // A variant added to the shards without a mapping here keeps its message.
            other => Error::Internal(other.to_string()),
        }
    }
}
