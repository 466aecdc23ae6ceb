//! Where the packs go: endpoint, bucket, prefix, region and credentials (defined in
//! `ipfrs-core-types`, which the engine's `Config` is built from).

pub use ipfrs_core_types::remote::{RemoteConfig, RemoteTier};
