//! The store as a node service: pins, gc ordered with writers, and `ipfrs-store daemon`.
//!
//! - [`pins`]: pins kept durably in the engine's metadata store;
//! - [`gc`]: gc that keeps pins and versioned models, under a lock shared by writers;
//! - [`node`]: the writes that must be ordered with gc (puts, imports with root pins, pins).

pub mod error;
pub mod gc;
pub mod node;
pub mod pin_command;
pub mod pins;

pub use error::{Error, Result};
pub use node::Node;
