//! ipfrs-tools as a library: the pieces the binaries share.
//!
//! - [`car`]: CARv1/CARv2 reading (a streaming iterator) and writing, and IPLD link
//!   extraction; used by `ipfrs-store` and by benchmark workloads.
//! - [`store`]: the `ipfrs-store` admin command line.
//! - [`torture`]: the `ipfrs-torture` crash campaign.

pub mod car;
pub mod store;
pub mod torture;
