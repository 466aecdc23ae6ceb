//! Refs: named pointers to commits (branches, tags, HEAD), moved only by compare-and-swap.
//!
//! Refs live behind the small [`RefStore`] trait: [`crate::MetadataRefStore`] keeps them in
//! the engine's metadata store (what `ipfrs-store version` uses), [`crate::FileRefStore`] in
//! files beside any other block store, [`MemRefStore`] in memory for tests. Names are
//! `heads/<branch>`, `tags/<tag>` and `HEAD`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use cid::Cid;

use crate::error::{Error, Result};

/// The ref namespace of branches.
pub const BRANCH_PREFIX: &str = "heads/";
/// The ref namespace of tags.
pub const TAG_PREFIX: &str = "tags/";
/// The ref of the commit last committed or checked out.
pub const HEAD: &str = "HEAD";

/// Longest ref name accepted (a file name on every common file system).
const MAX_NAME: usize = 200;

/// Storage of refs with atomic compare-and-swap.
pub trait RefStore: Send + Sync {
    /// The commit a ref points to, `None` if the ref does not exist.
    fn get(&self, name: &str) -> Result<Option<Cid>>;

    /// Sets `name` to `new` (`None` deletes it) if it currently is `expected` (`None`: absent),
    /// atomically with respect to every other writer of this store. Otherwise nothing changes
    /// and the result is [`Error::Conflict`] carrying the value found. Returns once the change
    /// is durable.
    fn compare_and_swap(&self, name: &str, expected: Option<Cid>, new: Option<Cid>) -> Result<()>;

    /// Every ref whose name starts with `prefix`, sorted by name.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Cid)>>;
}

/// Checks a ref name: `/`-separated parts of `[A-Za-z0-9._-]`, none empty or starting with
/// `.` (which also rules out `..` and the stores' hidden temporary files).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidRefName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return bad("must be 1 to 200 characters");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return bad("empty path component");
        }
        if part.starts_with('.') {
            return bad("a component starts with '.'");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return bad("only letters, digits, '.', '_', '-' and '/' are allowed");
        }
    }
    Ok(())
}

/// Refs in memory, for tests and short-lived repositories.
#[derive(Debug, Default)]
pub struct MemRefStore {
    refs: Mutex<BTreeMap<String, Cid>>,
}

impl MemRefStore {
    /// An empty store.
    pub fn new() -> MemRefStore {
        MemRefStore::default()
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Cid>> {
        // A panic while holding the lock cannot leave the map half-updated (each change is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.refs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RefStore for MemRefStore {
    fn get(&self, name: &str) -> Result<Option<Cid>> {
        validate_name(name)?;
        Ok(self.refs().get(name).copied())
    }

    fn compare_and_swap(&self, name: &str, expected: Option<Cid>, new: Option<Cid>) -> Result<()> {
        validate_name(name)?;
        let mut refs = self.refs();
        let found = refs.get(name).copied();
        if found != expected {
            return Err(Error::Conflict {
                name: name.to_string(),
                expected: expected.map(Box::new),
                found: found.map(Box::new),
            });
        }
        match new {
            Some(cid) => refs.insert(name.to_string(), cid),
            None => refs.remove(name),
        };
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Cid)>> {
        Ok(self
            .refs()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }
}
