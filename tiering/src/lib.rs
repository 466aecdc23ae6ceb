//! Storage tiers of the ipfrs engine.
//!
//! This crate holds the [`ColdBackend`] trait, the seam every cold store plugs into, and its
//! implementations in [`backends`]: sled (the default), parity-db, and rocksdb behind the
//! `rocksdb` cargo feature. The trait is deliberately small (get, size, contains, put_batch,
//! delete_batch, iterate, flush): caching, bloom filters, batching and routing live above it,
//! once, in the shards.
//!
//! Backends are blocking APIs. Callers on an executor thread must run them on a blocking pool.

pub mod backends;
mod cold;
mod error;
pub mod pack;
pub mod segment;

pub use backends::{open_backend, open_or_damaged};
pub use cold::{BackendOptions, ColdBackend, ColdDamage, DamageStage};
pub use error::{Error, LibraryError};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
