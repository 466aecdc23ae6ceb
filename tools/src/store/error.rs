//! The errors of `ipfrs-store`: each prints as one line.

use std::path::PathBuf;

use ipfrs_car::CarError;
use ipfrs_storage::{Cid, ConfigFileError};

use crate::car::LinkError;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line value is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A text is not a CID.
    #[error("bad CID {text:?}: {reason}")]
    BadCid {
        /// The text given.
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] Box<ConfigFileError>),
    /// The engine failed.
    #[error("{0}")]
    Engine(#[from] ipfrs_storage::Error),
    /// A pin, gc or daemon operation failed.
    #[error(transparent)]
    Daemon(Box<crate::daemon::Error>),
    /// A block could not be built from the input.
    #[error("{0}")]
    Block(#[from] Box<ipfrs_storage::BlockError>),
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A CAR file is malformed; nothing of it was imported (unless --partial said otherwise).
    #[error("{}: {source}{}", path.display(), partial_note(*stored))]
    Car {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset.
        source: Box<CarError>,
        /// Blocks of this file stored before the error (0 unless --partial, or unless the
        /// file changed between the validation and the ingest pass).
        stored: u64,
    },
    /// A CAR file failed in the ingest pass after passing validation: it changed meanwhile.
    #[error("{0} (the file changed after it was verified)")]
    Changed(String),
    /// A block does not decode as its codec (so its links cannot be followed).
    #[error(transparent)]
    Links(#[from] Box<LinkError>),
    /// The repository has no block store yet.
    #[error("{} is not an initialized repository (run `ipfrs-store init --repo {}`)", repo.display(), repo.display())]
    NotInitialized {
        /// The repository.
        repo: PathBuf,
    },
    /// `init` on an existing repository.
    #[error("{} is already initialized", repo.display())]
    AlreadyInitialized {
        /// The repository.
        repo: PathBuf,
    },
    /// `init` on a filesystem with less free space than a new store takes at once; nothing
    /// was created.
    #[error(
        "not enough free space to initialize {}: the new store needs {} ({hot_segments} hot \
         segments of {}, a space reserve of {}, {} for the backend's and the store's files), \
         {} is free",
        repo.display(),
        super::output::bytes(*need),
        super::output::bytes(*segment_bytes),
        super::output::bytes(*reserve_bytes),
        super::output::bytes(*files_bytes),
        super::output::bytes(*free)
    )]
    NoSpaceForInit {
        /// The repository.
        repo: PathBuf,
        /// Bytes the new store takes at its first open (the sum of the parts below).
        need: u64,
        /// Hot segments the first open preallocates (one per shard).
        hot_segments: u64,
        /// Size of one hot segment.
        segment_bytes: u64,
        /// The space reserve across all shards.
        reserve_bytes: u64,
        /// The cold backend's first files and the store's own small files.
        files_bytes: u64,
        /// Bytes free on the filesystem (for unprivileged writers).
        free: u64,
    },
    /// `block rm` of a block a pin keeps (pinned itself, or inside a recursively pinned DAG);
    /// nothing was removed.
    #[error(
        "cannot remove block {cid}: {reason} (unpin it first: ipfrs-store pin rm); nothing was removed"
    )]
    Pinned {
        /// The block.
        cid: Box<Cid>,
        /// Kubo's words: `pinned: direct`, `pinned: recursive` or `pinned via <root>`.
        reason: String,
    },
    /// A running `ipfrs-store daemon` holds the repository's store, and this command needs
    /// the store closed (`repo repair`, `repo migrate`), or is `daemon` or `init`.
    #[error(
        "the ipfrs-store daemon at {api} holds this repository, and `{command}` cannot be sent \
         to it (it takes every other command): {advice}"
    )]
    HeldByDaemon {
        /// The daemon's API address, from `<repo>/api`.
        api: String,
        /// The command that was refused.
        command: &'static str,
        /// What to do.
        advice: &'static str,
    },
    /// A command handed to a running daemon failed there: its message and exit code as the
    /// daemon's run of it gave them.
    #[error("{message}")]
    Handed {
        /// The error's one-line text.
        message: String,
        /// The exit code to exit with.
        code: u8,
    },
    /// A block asked for is not stored.
    #[error("block {cid} is not in the store")]
    NotFound {
        /// The block.
        cid: Box<Cid>,
    },
    /// A block the export needs is not stored.
    #[error("cannot export: block {cid} (linked from {parent}) is not in the store")]
    MissingBlock {
        /// The absent block.
        cid: Box<Cid>,
        /// The block linking to it (or the root itself).
        parent: Box<Cid>,
    },
    /// `repo gc` without any root: it would remove everything.
    #[error(
        "no roots: give ROOT arguments or a pins file (--pins, or <repo>/pins); refusing to remove every block no versioning ref reaches"
    )]
    NoRoots,
    /// A pins file line is not a CID.
    #[error("{}:{line}: bad CID {text:?}: {reason}", path.display())]
    BadPin {
        /// The pins file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The text.
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// `repo verify` found damage (the report lists it).
    #[error("verify found {corrupt} corrupt and {missing} missing blocks, {places} damaged places")]
    Damaged {
        /// Blocks whose bytes do not hash to their CID.
        corrupt: usize,
        /// Blocks listed but unreadable.
        missing: usize,
        /// Damaged places the engine reported.
        places: usize,
    },
    /// The versioning layer refused or failed (unknown revision, bad safetensors file, a
    /// merge that is not a fast-forward, ...).
    #[error("{0}")]
    Version(#[from] ipfrs_versioning::Error),
    /// Some files of a --partial import failed (each was reported).
    #[error("{failed} of {total} CAR files failed to import")]
    PartialImport {
        /// Files with an error.
        failed: usize,
        /// Files given.
        total: usize,
    },
}

fn partial_note(stored: u64) -> String {
    if stored > 0 {
        format!(" ({stored} blocks of this file read before the error were stored)")
    } else {
        String::new()
    }
}

impl Error {
    /// An I/O error on `path` while doing `what`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error: 2 for usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::BadCid { .. } => 2,
            Error::Handed { code, .. } => *code,
            // Malformed text given on the command line, as for a bad CID.
            Error::Version(
                ipfrs_versioning::Error::BadArgument { .. }
                | ipfrs_versioning::Error::InvalidRefName { .. }
                | ipfrs_versioning::Error::BadWeight(_),
            ) => 2,
            _ => 1,
        }
    }
}

impl From<ipfrs_storage::BlockError> for Error {
    fn from(err: ipfrs_storage::BlockError) -> Error {
        Error::Block(Box::new(err))
    }
}

impl From<LinkError> for Error {
    fn from(err: LinkError) -> Error {
        Error::Links(Box::new(err))
    }
}

impl From<ConfigFileError> for Error {
    fn from(err: ConfigFileError) -> Error {
        Error::Config(Box::new(err))
    }
}

/// The result type of the CLI.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses a CID given on the command line.
pub fn parse_cid(text: &str) -> Result<Cid> {
    ipfrs_storage::key::parse_cid(text.trim()).map_err(|e| Error::BadCid {
        text: text.to_string(),
        reason: match e {
            ipfrs_storage::BlockError::MalformedCid { reason } => reason,
            other => other.to_string(),
        },
    })
}
