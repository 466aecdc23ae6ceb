//! The one error type of this crate: each variant carries what a test's failure message
//! needs (the path, the command, the tail of the server's log).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a Garage node or cluster could not be started, driven or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No binary was found and `IPFRS_REQUIRE_GARAGE` asks for one.
    #[error(
        "no garage binary: set IPFRS_GARAGE, put garage on PATH or run scripts/ensure-garage \
         (IPFRS_REQUIRE_GARAGE is set, so this is a failure rather than a skip)"
    )]
    BinaryMissing,

    /// `IPFRS_GARAGE` names no file.
    #[error("IPFRS_GARAGE={path} names no file")]
    BadBinaryEnv {
        /// The value of `IPFRS_GARAGE`.
        path: PathBuf,
    },

    /// A file or process operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file, directory or binary concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The kernel gave no free port on 127.0.0.1.
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(#[source] std::io::Error),

    /// The server exited before its S3 endpoint answered.
    #[error("garage server exited ({status}) before it answered; end of {log}:\n{tail}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },

    /// The server's S3 endpoint did not answer in time.
    #[error(
        "garage S3 endpoint {endpoint} did not answer within {waited:?}; end of {log}:\n{tail}"
    )]
    NotReady {
        /// The endpoint polled.
        endpoint: String,
        /// How long it was polled.
        waited: Duration,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },

    /// A `garage` CLI command failed or did not finish in time.
    #[error("`garage {args}` failed ({outcome}): {output}")]
    Command {
        /// The command's arguments after `garage`.
        args: String,
        /// The exit status, or that it was killed after its time bound.
        outcome: String,
        /// Its standard error and output.
        output: String,
    },

    /// A `garage` CLI command printed something this crate cannot read.
    #[error("`garage {args}` printed an unexpected answer: {output}")]
    Unexpected {
        /// The command's arguments after `garage`.
        args: String,
        /// What it printed.
        output: String,
    },

    /// A cluster node did not see its running peers as up within its time bound.
    #[error(
        "garage node {index} saw {healthy} of {expected} running nodes up within {waited:?}; \
         its `garage status`:\n{status}"
    )]
    NotConnected {
        /// The node whose view was polled.
        index: usize,
        /// Nodes it saw up at the last poll (itself included).
        healthy: usize,
        /// Nodes running.
        expected: usize,
        /// How long it was polled.
        waited: Duration,
        /// Its last `garage status` output.
        status: String,
    },

    /// A node index past the end of the cluster.
    #[error("no node {index} in a cluster of {len}")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// The number of nodes.
        len: usize,
    },
}
