//! The benchmark's error type: every failure ends as one line on stderr.

use std::path::PathBuf;

/// What went wrong. `Display` gives one line (library messages can span several: they are
/// joined), without a trailing newline.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value is out of range or inconsistent.
    #[error("{}", one_line(.0))]
    Usage(String),
    /// A file or directory operation failed.
    #[error("{} {}: {}", one_line(what), path.display(), one_line(&source.to_string()))]
    Io {
        /// What was being done, e.g. "cannot create --dir".
        what: String,
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The engine failed.
    #[error("engine: {}", one_line(&.0.to_string()))]
    Engine(#[from] ipfrs_storage::Error),
    /// A raw backend failed.
    #[error("raw backend: {}", one_line(&.0.to_string()))]
    Backend(#[from] ipfrs_tiering::Error),
    /// A block could not be built.
    #[error("block: {}", one_line(&.0.to_string()))]
    Block(#[from] ipfrs_storage::BlockError),
    /// The CAR file of the `car` workload is malformed (the message names the byte offset).
    #[error("CAR file {}", one_line(.0))]
    Car(String),
    /// The disk ceiling's O_DIRECT I/O failed.
    #[error("disk ceiling: {}", one_line(.0))]
    Disk(String),
    /// The S3 bucket refused or failed a call (opening it, or the engine's pack tier).
    #[error("s3: {}", one_line(&.0.to_string()))]
    Remote(#[from] ipfrs_remote::RemoteError),
    /// A request of the object-per-block target failed.
    #[error("s3 object-per-block: {}", one_line(&.0.to_string()))]
    ObjectStore(#[from] object_store::Error),
    /// The Garage of `--s3 garage` could not be started.
    #[error("garage: {}", one_line(&.0.to_string()))]
    Garage(#[from] ipfrs_garage::Error),
    /// A result was wrong (a stored block missing, an absent one found).
    #[error("check failed: {}", one_line(.0))]
    Check(String),
    /// Anything else (a latency histogram error, a panicked client thread, a bad report file).
    #[error("{}", one_line(.0))]
    Internal(String),
}

impl BenchError {
    /// An I/O error on `path` while doing `what`.
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    /// Whether this error is the user's command line (exit code 2) rather than a failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, BenchError::Usage(_))
    }
}

/// Joins the lines of a message into one, so every error prints as exactly one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The result type of the benchmark.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line() {
        let err = BenchError::Check("first\nsecond  line".into());
        assert_eq!(err.to_string(), "check failed: first second line");
        assert!(BenchError::Usage("x".into()).is_usage());
        let io = BenchError::io("cannot create --dir", "/x", std::io::Error::other("a\nb"));
        assert_eq!(io.to_string(), "cannot create --dir /x: a b");
        assert!(std::error::Error::source(&io).is_some());
    }
}
