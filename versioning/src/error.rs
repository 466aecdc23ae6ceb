//! The crate's one error type.
//!
//! Every operation that returns an error has moved no ref and left no partial output file:
//! blocks it may already have written are unreachable and are reclaimed by gc.

use std::path::PathBuf;

use cid::Cid;

/// Errors of the versioning layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The block store failed.
    #[error("block store: {0}")]
    Store(#[from] ipfrs_storage::Error),
    /// A block or CID was refused (hash mismatch, malformed CID).
    #[error(transparent)]
    Block(#[from] ipfrs_storage::BlockError),
    /// A block the operation needs is not in the store.
    #[error("block {cid} is missing from the store")]
    MissingBlock {
        /// The missing block.
        cid: Cid,
    },
    /// A block does not decode as the versioning object it should be.
    #[error("block {cid} is not a valid {expected} object: {reason}")]
    Decode {
        /// The block (boxed: keeps the error small).
        cid: Box<Cid>,
        /// The kind of object that was expected.
        expected: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// An object could not be encoded (a bug or a value DAG-CBOR cannot hold).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// What the encoder said.
        reason: String,
    },
    /// A safetensors file is corrupt, truncated or unreadable.
    #[error("safetensors file {path}: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's dtype is not one this layer stores.
    #[error("tensor {name}: unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// The dtype as the source named it.
        dtype: String,
    },
    /// A tensor's byte length does not match its dtype and shape.
    #[error("tensor {name}: shape {shape:?} of {dtype} needs {expected} bytes, got {got}")]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
        /// Its shape.
        shape: Vec<u64>,
        /// Bytes the shape needs.
        expected: u64,
        /// Bytes supplied.
        got: u64,
    },
    /// A delta does not fit the tensor it is based on, or its payload is corrupt.
    #[error("delta {cid}: {reason}")]
    BadDelta {
        /// The delta object (boxed: keeps the error small).
        cid: Box<Cid>,
        /// What does not fit.
        reason: String,
    },
    /// A reconstructed chunk does not hash to the CID recorded for it.
    #[error("chunk {cid} reconstructed from a delta does not match its CID")]
    ChunkMismatch {
        /// The expected chunk CID.
        cid: Cid,
    },
    /// A merge was asked of two states with different tensor names.
    #[error("cannot merge: tensors only in ours: {only_ours:?}; only in theirs: {only_theirs:?}")]
    TensorSetMismatch {
        /// Names present only on our side.
        only_ours: Vec<String>,
        /// Names present only on their side.
        only_theirs: Vec<String>,
    },
    /// Two tensors to be merged differ in dtype or shape, or cannot be averaged.
    #[error("cannot merge tensor {name}: {reason}")]
    MergeMismatch {
        /// The tensor.
        name: String,
        /// What differs.
        reason: String,
    },
    /// A merge that is not a fast-forward was asked to fast-forward only.
    #[error("{ours} cannot be fast-forwarded to {theirs}: the histories have diverged")]
    NotFastForward {
        /// Our tip (boxed: keeps the error small).
        ours: Box<Cid>,
        /// Their tip.
        theirs: Box<Cid>,
    },
    /// A merge weight outside [0, 1].
    #[error("merge weight {0} is not in [0, 1]")]
    BadWeight(f64),
    /// A revision names no ref, commit or timestamp that exists.
    #[error("unknown revision {0:?}")]
    UnknownRef(String),
    /// A ref name that is not allowed.
    #[error("invalid ref name {name:?}: {reason}")]
    InvalidRefName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A branch or tag that should not exist yet does.
    #[error("ref {0} already exists")]
    RefExists(String),
    /// A stored ref does not hold a CID (the metadata was written by something else).
    #[error("ref {name} does not hold a commit CID: {reason}")]
    BadRefValue {
        /// The ref.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A compare-and-swap found another value: someone else moved the ref first.
    #[error(
        "conflict on ref {name}: expected {}, found {}; reload and retry",
        ref_value(expected),
        ref_value(found)
    )]
    Conflict {
        /// The ref.
        name: String,
        /// The value the writer expected (boxed: keeps the error small).
        expected: Option<Box<Cid>>,
        /// The value found.
        found: Option<Box<Cid>>,
    },
    /// No commit on the branch is as old as the timestamp asked for.
    #[error("no commit of {rev} at or before timestamp {timestamp_ms} ms")]
    NothingAsOf {
        /// The revision whose history was searched.
        rev: String,
        /// The timestamp, ms since the Unix epoch.
        timestamp_ms: u64,
    },
    /// A CAR file is malformed, or writing one failed; the codec's error names the byte offset.
    #[error("CAR file: {0}")]
    Car(#[from] ipfrs_car::CarError),
    /// A CAR file to import does not name exactly one root (the commit).
    #[error("CAR file: {roots} roots; expected one commit")]
    CarRoots {
        /// How many roots the file names.
        roots: usize,
    },
    /// An I/O error on a file of this layer (refs, ledger, safetensors, CAR).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A malformed argument given as text (key=value, timestamp, weight).
    #[error("invalid argument {arg:?}: {reason}")]
    BadArgument {
        /// The argument.
        arg: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A ref's value as people read it: its commit's CID, or "no commit" for a ref not set.
fn ref_value(value: &Option<Box<Cid>>) -> String {
    value
        .as_deref()
        .map_or_else(|| "no commit".to_owned(), ToString::to_string)
}
