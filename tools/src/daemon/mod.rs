//! The store as a node service: pins, gc ordered with writers, and `ipfrs-store daemon`.
//!
//! - [`pins`]: pins kept durably in the engine's metadata store;
//! - [`gc`]: gc that keeps pins and versioned models, under a lock shared by writers;
//! - [`node`]: the writes that must be ordered with gc (puts, imports with root pins, pins);
//! - [`run`]: the daemon: [`rpc`] (Kubo's RPC subset) and [`gateway`] (trustless gateway,
//!   whose CAR responses [`car_selection`] picks with just enough [`unixfs`]), both sending
//!   CARs through [`car_stream`]
//!   over [`server`] (hyper on tokio, with the [`limits`]), [`auth`] for non-loopback APIs;
//! - [`replica`]: the same gateway over a read replica of a bucket (`replica serve`);
//! - [`client`]: how another `ipfrs-store` hands its command to a running daemon, through
//!   Kubo's endpoints or, for the commands they have no shape for, [`command`];
//! - [`load`]: a bounded load test of a running daemon (the `daemon_load` example).

pub mod auth;
pub mod car_selection;
pub mod car_stream;
pub mod client;
pub mod command;
pub mod error;
pub mod gateway;
pub mod gc;
pub mod http;
pub mod limits;
pub mod load;
pub mod node;
pub mod pin_command;
pub mod pins;
pub mod replica;
pub mod rpc;
pub mod run;
pub mod server;
pub mod unixfs;

pub use error::{Error, Result};
pub use node::Node;
