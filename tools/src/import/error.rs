use std::path::PathBuf;

use ipfrs_car::{CarError, CarHeader};

/// Why an import failed. After any of these from [`super::Import::add`] the caller decides:
/// [`super::Import::abort`] removes what the import added, [`super::Import::commit`] keeps
/// the blocks stored before the error.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not a valid CAR stream (framing, header, or a block whose bytes do not
    /// hash to its CID); the error names the byte offset.
    #[error("{source}")]
    Car {
        /// What is wrong, with the offset.
        source: Box<CarError>,
        /// Blocks of this input stored before the error (all of them verified).
        stored: u64,
        /// Their bytes.
        bytes: u64,
        /// The input's header, when it was read before the error.
        header: Option<Box<CarHeader>>,
    },
    /// The store failed (disk full, closed, a shard's fsync failed).
    #[error("{0}")]
    Store(#[from] ipfrs_storage::Error),
    /// The import journal could not be created, written, synced or removed.
    #[error("import journal {}: {what}: {source}", path.display())]
    Journal {
        /// What was being done.
        what: &'static str,
        /// The journal file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A worker thread of the import panicked (a bug): the import's state is unknown, so the
    /// caller should abort it.
    #[error("an import worker thread panicked")]
    Panicked,
}

impl ImportError {
    pub(crate) fn journal(
        what: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImportError::Journal {
            what,
            path: path.into(),
            source,
        }
    }
}

/// The result type of the import module.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;
