use std::path::PathBuf;

use ipfrs_core_types::BackendKind;

/// Errors of the cold backends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation on the backend's directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The backend library reported an error.
    #[error("{backend} backend error: {message}")]
    Backend {
        /// Which backend.
        backend: BackendKind,
        /// The library's message.
        message: String,
    },
    /// The backend is not compiled into this build.
    #[error("backend {0} is not in this build (enable the cargo feature `{0}`)")]
    NotCompiled(BackendKind),
}

impl Error {
    pub(crate) fn backend(backend: BackendKind, err: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend,
            message: err.to_string(),
        }
    }
}
