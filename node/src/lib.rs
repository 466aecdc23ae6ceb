//! ipfrs-node: the ipfrs engine as the block store of a libp2p bitswap node.
//!
//! [`Node`] is a libp2p swarm (TCP, noise, yamux, identify) running beetswap's bitswap
//! behaviour over any `blockstore::Blockstore`: the engine (with `ipfrs-storage`'s feature
//! `blockstore`) in the `bitswap-node` binary, or the blockstore crate's in-memory store to
//! compare against in [`bench`](mod@bench). It serves every block its store holds, and stores what it
//! fetches: beetswap verifies each received block against its CID and hands it to the
//! store's `put_many_keyed`.
//!
//! [`Node::fetch_dag`] fetches a whole DAG by its root, following the links of dag-pb,
//! dag-cbor and raw blocks (`ipfrs_tools::car::links`), and returns once every block is in
//! the store.

pub mod bench;
mod counting;
mod error;
mod node;
pub mod repo;

pub use counting::CountingStore;
pub use error::{Error, Result};
pub use node::{FETCH_WINDOW, Fetched, MAX_MULTIHASH, Node};
