//! The pack tier on S3-compatible object storage (issue 16): the transport the engine's
//! cold tier uploads its sealed packs through and a replica reads them back from.
//!
//! A shard's packs are immutable, so the object store holds them as they are: one object a
//! pack and one its hint file, written create-only, and a per-shard manifest written as a new
//! generation for every change of the live set (see [`manifest`]). Reads are ranged GETs of
//! records inside a pack (several close ranges in one request). The client runs on a tokio
//! thread of the bucket's own, so a shard's core awaits an upload or a read without ever
//! blocking on the network.
//!
//! What this crate does not decide: when a pack is uploaded or may be removed locally, and
//! how reads find a record. Those belong to the shard, which keeps its index and bloom
//! filters local, so a `has` of an absent block never reaches the object store.

pub mod bucket;
pub mod config;
pub mod counting;
pub mod error;
pub mod manifest;
pub mod readahead;

pub use bucket::{PackBucket, Pending, s3_store};
pub use config::{RemoteConfig, RemoteTier};
pub use counting::{RequestCounter, RequestCounts, process_requests};
pub use error::{RemoteError, Result};
pub use manifest::{Manifest, PackEntry};
pub use readahead::ReadAhead;
