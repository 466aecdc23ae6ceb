//! The shared vocabulary of the ipfrs storage engine.
//!
//! Every crate of the engine speaks these types, so they live at the bottom of the dependency
//! graph (tools -> versioning -> engine -> shards -> tiering -> core-types). The facade crate
//! `ipfrs-storage` re-exports all of it: an embedder sees one crate.
//!
//! - [`Block`]: bytes and the CID they hash to, verified at construction.
//! - [`key`]: blocks are stored under their multihash (as Kubo/boxo do), never the whole CID.
//! - [`Config`]: every budget and knob of the engine, also read from TOML files.
//! - [`BlockError`]: what is wrong with a block or CID given by a caller.

mod block;
pub use block::{key_for_data, sha256_accelerated, verify, verify_key};
mod config;
mod config_file;
mod error;
#[cfg(unix)]
pub mod fs;
pub mod key;
pub mod proc_status;
pub mod remote;

pub use block::{Block, Codec, HashAlgorithm};
pub use cid::Cid;
pub use config::{BackendKind, Config, Durability, HotTier, IoDriver};
pub use config_file::ConfigFileError;
pub use error::BlockError;
pub use remote::{RemoteConfig, RemoteTier};
