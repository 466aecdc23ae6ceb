//! Thread-per-core shards of the ipfrs engine.
//!
//! Each shard is one glommio `LocalExecutor` on its own thread, pinned to a core
//! (`Placement::Fixed`). It owns everything its blocks need: the cold-backend handle, a block
//! cache with a byte budget, a bloom filter, counters and the write queue. Nothing is shared
//! between shards; requests arrive over a flume channel from any thread or runtime and each
//! carries its own reply channel. Reads that need no write are answered on the caller's
//! thread from state the shard shares read-only with callers (it stays its only writer).
//!
//! - [`protocol`]: the messages and the client side ([`ShardHandle`]).
//! - `executor`: a shard's thread: its executor (io_uring setup failures become errors that
//!   name their cause), its request loop and its shutdown.
//! - `startup`: opening a shard's state before it serves, as named steps (cold backend,
//!   bloom filter and counters, hot-tier recovery, redone deletes, the walk of cold keys).
//! - [`read_view`]: reads on the caller's thread, over the state the shard shares with
//!   callers (`shared`): bloom filter, hot index, segment and pack maps, block cache.
//! - `shard`: the read path in the shard (bloom -> hot index -> cache -> backend on the
//!   blocking pool), for what a caller's thread cannot answer.
//! - `commit`: the write path (one writer per shard, group commit).
//! - [`open_state`]: the bloom filter and counters a clean close saves, so the next open need
//!   not walk the cold keys.
//! - `hot`: the hot tier (segments, index, recovery, group commit into segments,
//!   compaction into the cold backend).
//!
//! The shard count may exceed the core count: shards then share cores.

mod cache;
mod cold_index;
mod commit;
pub mod damage;
mod error;
mod executor;
mod hot;
pub mod open_state;
pub mod protocol;
pub mod read_view;
mod rt;
mod shard;
mod shared;
mod startup;

pub use damage::{Damage, DamageSite};
pub use error::{Error, ExecutorFailure, PoisonCause};
pub use executor::{ShardThread, preflight, resolve_io_driver, start_shard};
/// Power-cut simulation of the hot tier's files (tests only).
#[cfg(feature = "failpoints")]
pub use hot::power_cut;
pub use protocol::{Fetched, PendingReply, ShardHandle, ShardStats};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
