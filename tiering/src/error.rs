use std::path::PathBuf;

use ipfrs_core_types::BackendKind;

use crate::cold::ColdDamage;

/// The library error a backend reported, kept whole so that callers can walk its
/// [`std::error::Error::source`] chain or downcast it to the library's own type.
pub type LibraryError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the cold backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation on the backend's directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The backend library reported an error.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// Which backend.
        backend: BackendKind,
        /// The library's error.
        #[source]
        source: LibraryError,
    },
    /// The backend library panicked inside a call; the guard returned the panic as this error
    /// (see `backends::guard`). The library's state is suspect afterwards.
    #[error("{backend} backend: the library panicked in {call} (damaged files?): {message}")]
    Panicked {
        /// Which backend.
        backend: BackendKind,
        /// The call that panicked (`get`, `put_batch`, ...).
        call: String,
        /// The panic's message.
        message: String,
    },
    /// The backend's files are damaged: it could not be opened, or a read was refused as
    /// corrupted.
    #[error(transparent)]
    Damaged(#[from] ColdDamage),
    /// A parity-db value table was cut short: parity-db maps these files and a read past the
    /// cut would kill the process with SIGBUS, so the backend is not opened.
    #[error(
        "value table {} is {len} bytes, not a multiple of {granularity}: it was truncated, \
         and mapping it could crash the process (SIGBUS)",
        path.display()
    )]
    TruncatedTable {
        /// The table file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The unit parity-db grows its tables by.
        granularity: u64,
    },
    /// The backend is not compiled into this build.
    #[error("backend {0} is not in this build (enable the cargo feature `{0}`)")]
    NotCompiled(BackendKind),
}

impl Error {
    pub(crate) fn backend(
        backend: BackendKind,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Backend {
            backend,
            source: Box::new(err),
        }
    }

    /// An I/O error on `path`, for `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
