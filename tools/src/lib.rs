//! ipfrs-tools as a library: the pieces the binaries share.
//!
//! - [`car`]: the CAR codec (the `ipfrs-car` crate, re-exported) and IPLD link extraction;
//!   used by `ipfrs-store` and by benchmark workloads.
//! - [`import`]: CAR import into any block store in one pass, all or nothing, crash-safe
//!   (an undo journal); used by `ipfrs-store car import` and open to embedders.
//! - [`store`]: the `ipfrs-store` admin command line.
//! - [`torture`]: the `ipfrs-torture` crash campaign.

pub mod car;
pub mod daemon;
pub mod import;
pub mod store;
pub mod torture;
