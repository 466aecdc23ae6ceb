//! Revisions: how a caller names a commit.

use std::fmt;
use std::str::FromStr;

use cid::Cid;

use crate::error::{Error, Result};

/// A commit named by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// The `HEAD` ref.
    Head,
    /// A branch by name (`main`, not `heads/main`).
    Branch(String),
    /// A tag by name.
    Tag(String),
    /// A name that is a branch or else a tag (what a user types).
    Name(String),
    /// A commit by CID.
    Commit(Cid),
    /// The newest commit on the first-parent history of `base` made at or before a time.
    AsOf {
        /// Where the history starts.
        base: Box<Revision>,
        /// Milliseconds since the Unix epoch.
        timestamp_ms: u64,
    },
}

impl FromStr for Revision {
    type Err = Error;

    /// `HEAD`, a commit CID, a branch or tag name, or any of these followed by `@<ms>` for
    /// "as of" a timestamp in milliseconds since the Unix epoch (`main@1700000000000`, or
    /// `@1700000000000` for HEAD). Ref names cannot contain `@`, so the split is unambiguous.
    fn from_str(text: &str) -> Result<Revision> {
        if let Some((base, ts)) = text.rsplit_once('@') {
            let timestamp_ms = ts.parse().map_err(|_| Error::BadArgument {
                arg: text.to_string(),
                reason: "expected <revision>@<milliseconds since the Unix epoch>".into(),
            })?;
            let base = if base.is_empty() {
                Revision::Head
            } else {
                base.parse()?
            };
            return Ok(Revision::AsOf {
                base: Box::new(base),
                timestamp_ms,
            });
        }
        if text == crate::refs::HEAD {
            return Ok(Revision::Head);
        }
        if let Ok(cid) = ipfrs_storage::key::parse_cid(text) {
            return Ok(Revision::Commit(cid));
        }
        crate::refs::validate_name(text)?;
        Ok(Revision::Name(text.to_string()))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Head => f.write_str("HEAD"),
            Revision::Branch(b) => write!(f, "branch {b}"),
            Revision::Tag(t) => write!(f, "tag {t}"),
            Revision::Name(n) => f.write_str(n),
            Revision::Commit(c) => write!(f, "{c}"),
            Revision::AsOf { base, timestamp_ms } => write!(f, "{base}@{timestamp_ms}"),
        }
    }
}
