//! The errors of the daemon and of the pin and gc operations it shares with the CLI; each
//! knows whether the caller or the store is at fault (the HTTP status it is answered with).

use ipfrs_storage::Cid;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CLI-level operation failed (the same errors `ipfrs-store` prints).
    #[error(transparent)]
    Store(#[from] crate::store::error::Error),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] ipfrs_storage::Error),
    /// A CAR import failed; nothing of it was kept.
    #[error("{0}")]
    Import(#[from] crate::import::ImportError),
    /// `pin rm` of a CID that is not pinned.
    #[error("{cid} is not pinned")]
    NotPinned {
        /// The CID.
        cid: Box<Cid>,
    },
    /// `pin rm --recursive=false` of a recursive pin.
    #[error("{cid} is pinned recursively")]
    PinnedRecursively {
        /// The CID.
        cid: Box<Cid>,
    },
    /// A metadata entry under the pins prefix that is not a pin.
    #[error("bad pin entry {key:?} in the metadata store: {reason}")]
    BadPinEntry {
        /// Its key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request the caller got wrong (HTTP 400): the text is the one-line reason.
    #[error("{0}")]
    BadRequest(String),
    /// A request this client may not make (HTTP 403): the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// A block or path that is not in the store (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// A request the gateway understands but does not serve (HTTP 501).
    #[error("{0}")]
    NotImplemented(String),
    /// A request body over its limit (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// A worker thread of the daemon panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error is answered with: 4xx when the request is at fault.
    pub fn status(&self) -> u16 {
        use crate::store::error::Error as S;
        match self {
            Error::BadRequest(_) | Error::NotPinned { .. } | Error::PinnedRecursively { .. } => 400,
            Error::Store(S::BadCid { .. } | S::Usage(_) | S::Block(_) | S::Links(_)) => 400,
            Error::Store(S::Car { .. }) | Error::Import(crate::import::ImportError::Car { .. }) => {
                400
            }
            Error::Store(S::NotFound { .. } | S::MissingBlock { .. }) | Error::NotFound(_) => 404,
            Error::Engine(ipfrs_storage::Error::Block(_)) => 400,
            Error::Forbidden(_) => 403,
            Error::TooLarge(_) => 413,
            Error::NotImplemented(_) => 501,
            _ => 500,
        }
    }
}

/// The daemon's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for crate::store::error::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Store(e) => e,
            Error::Engine(e) => crate::store::error::Error::Engine(e),
            other => crate::store::error::Error::Daemon(Box::new(other)),
        }
    }
}
