//! The errors of `ipfrs-torture`: anything that stops a campaign other than a failed check.

use std::path::PathBuf;

/// What can go wrong running a campaign (a failed check is a [`crate::torture::Failure`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused an operation.
    #[error("engine: {0}")]
    Engine(#[from] ipfrs_storage::Error),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The child wrote a line that is not an event.
    #[error("malformed line from the child: {0:?}")]
    Protocol(String),
    /// The campaign directory exists and is not empty.
    #[error("{0} is not empty: give a new or empty directory")]
    DirNotEmpty(PathBuf),
}

impl Error {
    /// An I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Results of the torture tool.
pub type Result<T, E = Error> = std::result::Result<T, E>;
