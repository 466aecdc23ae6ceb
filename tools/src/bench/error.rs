//! The benchmark's error type: every failure ends as one line on stderr.

use std::fmt;
use std::path::PathBuf;

/// What went wrong. `Display` gives one line, without a trailing newline.
#[derive(Debug)]
pub enum BenchError {
    /// A command-line value is out of range or inconsistent.
    Usage(String),
    /// A file or directory operation failed.
    Io {
        /// What was being done, e.g. "cannot create --dir /x".
        what: String,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The engine failed.
    Engine(ipfrs_storage::Error),
    /// A raw backend failed.
    Backend(ipfrs_tiering::Error),
    /// A block could not be built.
    Block(ipfrs_storage::BlockError),
    /// The disk ceiling's O_DIRECT I/O failed.
    Disk(String),
    /// A result was wrong (a stored block missing, an absent one found).
    Check(String),
    /// Anything else (a latency histogram error, a panicked client thread, a bad report file).
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

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            BenchError::Usage(msg) => msg.clone(),
            BenchError::Io { what, path, source } => {
                format!("{what} {}: {source}", path.display())
            }
            BenchError::Engine(err) => format!("engine: {err}"),
            BenchError::Backend(err) => format!("raw backend: {err}"),
            BenchError::Block(err) => format!("block: {err}"),
            BenchError::Disk(msg) => format!("disk ceiling: {msg}"),
            BenchError::Check(msg) => format!("check failed: {msg}"),
            BenchError::Internal(msg) => msg.clone(),
        };
        f.write_str(&one_line(&text))
    }
}

impl std::error::Error for BenchError {}

impl From<ipfrs_storage::Error> for BenchError {
    fn from(err: ipfrs_storage::Error) -> Self {
        BenchError::Engine(err)
    }
}

impl From<ipfrs_tiering::Error> for BenchError {
    fn from(err: ipfrs_tiering::Error) -> Self {
        BenchError::Backend(err)
    }
}

impl From<ipfrs_storage::BlockError> for BenchError {
    fn from(err: ipfrs_storage::BlockError) -> Self {
        BenchError::Block(err)
    }
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
    }
}
