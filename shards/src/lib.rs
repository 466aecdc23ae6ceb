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
//! - [`read_view`]: reads on the caller's thread, over the state the shard shares with
//!   callers (`shared`): bloom filter, hot index, segment and pack maps, block cache.
//!
//! Inside a shard each part has one owner and its own file, and no files depend on each other
//! in a circle (the write path calls down into the hot tier, never back):
//! - `shard`: the state a shard owns (backend handle, cache, bloom filter, counters, write
//!   queue, hot tier, damage report, task gate) and what reads it (stats, damage report,
//!   the read view handed to callers).
//! - `queue` and `space`: the write queue (puts, deletes, flushes, compaction steps, in
//!   arrival order) and the disk space reserve that admits them.
//! - `hot`: the hot tier: segments, index and recovery (`hot/mod.rs`), the appender
//!   (`writer`), appends and file changes (`append`), a group's commit into segments
//!   (`group`), compaction and reclamation steps as the writer runs them (`steps`).
//! - `commit`: the committer, the queue's only consumer: takes groups, admits them, commits
//!   them into the hot tier (`hot::group`) or, without one, into the backend.
//! - `hot::compaction`: the compaction task: which segments and packs to work on (policy),
//!   queueing their steps.
//! - `requests`: the request loop's handlers: writes to the queue, reads the caller's thread
//!   could not answer (bloom -> hot index -> cache -> backend on the blocking pool).
//! - `startup` and `executor`: opening a shard's state as named steps, then its thread, its
//!   executor (io_uring setup failures become errors that name their cause), its request
//!   loop and its shutdown.
//! - [`open_state`]: the bloom filter and counters a clean close saves, so the next open need
//!   not walk the cold keys.
//!
//! The shard count may exceed the core count: shards then share cores.

mod cache;
mod checkpoint;
mod cold_index;
mod commit;
pub mod damage;
mod error;
mod executor;
mod fetched;
mod hot;
pub mod open_state;
pub mod protocol;
mod queue;
pub mod read_view;
mod requests;
mod rt;
mod shard;
mod shared;
mod space;
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
