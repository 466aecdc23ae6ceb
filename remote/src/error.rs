//! What can go wrong between a shard's packs and the object store.

/// An error of the pack tier on an object store.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The configuration cannot name a bucket (a missing or empty field).
    #[error("object store configuration: {0}")]
    Config(String),
    /// Nothing answered at the endpoint (refused, unresolvable, or silent past the open's
    /// timeout): a wrong endpoint or a server that is down.
    #[error("object store at {endpoint} unreachable: {reason}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What the client saw.
        reason: String,
    },
    /// The server answered and refused the credentials (HTTP 401/403).
    #[error("object store refused the credentials for bucket {bucket}: {reason}")]
    Denied {
        /// The bucket asked for.
        bucket: String,
        /// The server's answer.
        reason: String,
    },
    /// The server answered that the bucket does not exist.
    #[error("object store has no bucket {bucket}")]
    NoBucket {
        /// The bucket asked for.
        bucket: String,
    },
    /// A create-only put found the object there already: another writer, or an earlier
    /// attempt of this one whose bytes differ.
    #[error("object {path} exists already")]
    Exists {
        /// The object's path in the bucket.
        path: String,
    },
    /// The object is not in the bucket.
    #[error("object {path} not found")]
    NotFound {
        /// The object's path in the bucket.
        path: String,
    },
    /// An object's bytes fail their check (a manifest's checksum or layout, a pack whose
    /// length or digest is not the one its manifest lists).
    #[error("object {path} is damaged: {reason}")]
    Damaged {
        /// The object's path in the bucket.
        path: String,
        /// Which check failed.
        reason: String,
    },
    /// A request took longer than the configured timeout.
    #[error("object store request timed out after {secs} s: {what}")]
    TimedOut {
        /// The timeout.
        secs: u64,
        /// The request.
        what: String,
    },
    /// Any other error of the object store client.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The runtime thread of the bucket is gone (the bucket was dropped, or it panicked).
    #[error("the object store's runtime thread has stopped")]
    Stopped,
}

/// The result of a pack tier operation.
pub type Result<T> = std::result::Result<T, RemoteError>;

impl RemoteError {
    /// Maps a client error on `path` to the variants callers act on (missing, present).
    pub(crate) fn on(path: &object_store::path::Path, e: object_store::Error) -> RemoteError {
        match e {
            object_store::Error::NotFound { .. } => RemoteError::NotFound {
                path: path.to_string(),
            },
            object_store::Error::AlreadyExists { .. } => RemoteError::Exists {
                path: path.to_string(),
            },
            other => RemoteError::Store(other),
        }
    }
}
