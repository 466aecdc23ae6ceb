//! The node's errors.

use ipfrs_storage::Cid;

/// What can go wrong running a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed (open, close, a store call outside bitswap).
    #[error(transparent)]
    Engine(#[from] ipfrs_storage::Error),
    /// A call through the `blockstore` trait failed.
    #[error("block store: {0}")]
    Blockstore(#[from] blockstore::Error),
    /// The repository's configuration could not be read.
    #[error(transparent)]
    Repo(#[from] ipfrs_tools::store::error::Error),
    /// A CAR import failed; nothing of it was kept.
    #[error(transparent)]
    Import(#[from] ipfrs_tools::import::ImportError),
    /// The libp2p transport or behaviour could not be built.
    #[error("building the libp2p swarm: {0}")]
    Swarm(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Listening on an address failed.
    #[error("listening: {0}")]
    Listen(#[from] libp2p::TransportError<std::io::Error>),
    /// Dialing a peer failed at once (later failures show up as missing blocks).
    #[error("dialing: {0}")]
    Dial(#[from] libp2p::swarm::DialError),
    /// Bitswap gave up on a block.
    #[error("fetching {cid}: {source}")]
    Fetch {
        /// The block.
        cid: Box<Cid>,
        /// What beetswap said.
        source: beetswap::Error,
    },
    /// A fetched block claims a codec it does not decode as: its links cannot be followed.
    #[error(transparent)]
    Links(#[from] ipfrs_tools::car::LinkError),
    /// Not every block arrived, or was stored, in time.
    #[error("timed out: {missing} of {total} blocks not {what} yet")]
    Timeout {
        /// What was waited for (fetched, stored).
        what: &'static str,
        /// Blocks not there yet.
        missing: usize,
        /// Blocks asked for.
        total: usize,
    },
    /// The swarm stopped producing events (it never does while it has a listener or a
    /// connection; this is a bug).
    #[error("the swarm stopped")]
    SwarmEnded,
    /// A file given on the command line.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The result type of the node.
pub type Result<T, E = Error> = std::result::Result<T, E>;
