//! ipfrs-storage: the persistent block store of IPFRS.
//!
//! An io_uring, thread-per-core storage engine for content-addressed blocks. CIDs are routed
//! by `xxh3(multihash digest) % shards` to shards, each a glommio executor pinned to a core
//! that owns its block cache, bloom filter and cold-backend handle (sled by default,
//! parity-db, or rocksdb with the `rocksdb` feature).
//!
//! ```
//! use ipfrs_storage::{Block, BlockStore, Engine};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path();
//! let store = Engine::open(path)?;
//! let block = Block::new(&b"some data"[..])?;
//! let cid = *block.cid();
//! futures_lite::future::block_on(async {
//!     store.put(&block).await?;
//!     let got = store.get(block.cid()).await?;
//!     assert_eq!(got.as_ref(), Some(block.data()));
//!     if store.has(&cid).await? {
//!         store.delete(&cid).await?;
//!     }
//!     store.close().await
//! })?;
//! # Ok::<(), ipfrs_storage::Error>(())
//! ```
//!
//! The crate re-exports the shared vocabulary (`Block`, `Cid`, `Config`, key helpers), so an
//! embedder needs only this crate.
//!
//! With the cargo feature `blockstore`, `Engine` also implements the `blockstore` crate's
//! `Blockstore` trait (0.8), the store of the beetswap bitswap behaviour; its module docs
//! and `to_blockstore_error` say how CIDs and errors map.

mod blocking;
#[cfg(feature = "blockstore")]
mod blockstore;
mod directory;
mod engine;
mod error;
mod metadata;
mod metrics;
mod migrate;
mod repair;
mod replica;
mod replica_store;
mod service;
mod stats;
mod store;
mod trim;

#[cfg(feature = "blockstore")]
pub use crate::blockstore::to_blockstore_error;
pub use blocking::BlockingStore;
pub use engine::Engine;
pub use error::Error;
pub use ipfrs_core_types::{
    BackendKind, Block, BlockError, Cid, Codec, Config, ConfigFileError, Durability, HashAlgorithm,
    HotTier, IoDriver, RemoteConfig, RemoteTier, fs, key, proc_status, sha256_accelerated, verify,
};
pub use ipfrs_shards::{Damage, DamageSite, ExecutorFailure, PoisonCause, ShardStats};

/// The driver an engine opened with `requested` would run on here: `IoUring` or `Fallback`
/// (see [`IoDriver`]); for `IoUring`, the error [`Engine::open`] would return where io_uring
/// cannot be used. Tools use it to name the driver before opening anything.
pub fn resolve_io_driver(requested: IoDriver) -> Result<IoDriver> {
    Ok(ipfrs_shards::resolve_io_driver(requested)?)
}
pub use ipfrs_tiering::{ColdDamage, DamageStage, Error as ColdError, LibraryError};
pub use metadata::{
    MAX_METADATA_BYTES, MAX_METADATA_KEY_BYTES, MAX_METADATA_VALUE_BYTES, MetadataStore, Swap,
};
pub use metrics::{MetricsSnapshot, Op, OpSnapshot};
pub use migrate::{MigrateReport, ShardMigration, ShardOutcome, migrate};
pub use repair::{ShardRepair, repair_cold};
pub use replica::{Refreshed, Replica, ReplicaError, ReplicaReads, ReplicaResult};
pub use stats::Stats;
pub use store::{BlockStore, CidPage, CidStream, Cursor};
pub use trim::tune_allocator;

/// The README's embedding example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which cold backends this build includes.
pub fn compiled_backends() -> Vec<BackendKind> {
    ipfrs_tiering::backends::compiled()
}
