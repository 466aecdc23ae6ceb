//! One Garage node in single-node mode, with its bucket and key made at start-up.

use std::path::Path;

use crate::config::{self, NodeConfig};
use crate::node::Node;
use crate::{Error, REGION};

/// The bucket every [`Garage`] and [`crate::GarageCluster`] creates.
pub const BUCKET: &str = "ipfrs-test";

/// A running single-node Garage on 127.0.0.1 with one bucket and one key allowed to read,
/// write and own it. Dropping it kills the server and reaps it; its files stay in the
/// directory given to [`Garage::start`] (the caller's temporary directory removes them).
#[derive(Debug)]
pub struct Garage {
    node: Node,
    access_key: String,
    secret_key: String,
}

impl Garage {
    /// Starts a node under `dir` with the binary [`crate::garage_binary`] finds.
    ///
    /// Errors: [`Error::BinaryMissing`] when there is none, else as [`Garage::start_with`].
    pub fn start(dir: &Path) -> Result<Self, Error> {
        let binary = crate::garage_binary()?.ok_or(Error::BinaryMissing)?;
        Self::start_with(&binary, dir)
    }

    /// Starts `binary` as a single node under `dir` (created if missing): replication
    /// factor 1, a random RPC secret, random keys, and the bucket [`BUCKET`]; returns once
    /// the S3 endpoint answers.
    ///
    /// Errors: [`Error::Exited`] or [`Error::NotReady`] with the end of the server's log when
    /// it does not come up within its time bound; [`Error::Io`] for files and spawning.
    pub fn start_with(binary: &Path, dir: &Path) -> Result<Self, Error> {
        Self::start_with_block_size(binary, dir, None)
    }

    /// [`Garage::start_with`] with Garage's `block_size` set (see [`NodeConfig::block_size`];
    /// `None`: Garage's default).
    ///
    /// Errors: as [`Garage::start_with`].
    pub fn start_with_block_size(
        binary: &Path,
        dir: &Path,
        block_size: Option<u64>,
    ) -> Result<Self, Error> {
        let mut config = NodeConfig::new(dir, 1, &config::random_hex(32))?;
        config.block_size = block_size;
        let mut node = Node::new(binary, config)?;
        let access_key = config::random_access_key();
        let secret_key = config::random_secret_key();
        node.start(
            &["--single-node", "--default-bucket"],
            &[
                ("GARAGE_DEFAULT_ACCESS_KEY", &access_key),
                ("GARAGE_DEFAULT_SECRET_KEY", &secret_key),
                ("GARAGE_DEFAULT_BUCKET", BUCKET),
            ],
        )?;
        Ok(Self {
            node,
            access_key,
            secret_key,
        })
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`; path-style requests only.
    pub fn endpoint(&self) -> String {
        self.node.config.endpoint()
    }

    /// The region to sign requests with.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The access key id.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The directory holding the node's configuration, log, metadata and data.
    pub fn dir(&self) -> &Path {
        &self.node.config.dir
    }
}
