//! Refs in the engine's metadata store: `versioning/refs/<name>` holds the commit's CID bytes.
//!
//! The engine makes each compare-and-swap atomic and durable (fdatasync'ed before it returns)
//! with every cold backend, and the refs travel with the store's data directory instead of
//! living in files beside it.

use cid::Cid;
use futures_lite::future::block_on;
use ipfrs_storage::{MetadataStore, Swap};

use crate::error::{Error, Result};
use crate::refs::{RefStore, validate_name};

/// The metadata namespace of refs.
const PREFIX: &str = "versioning/refs/";

/// Refs kept in a store's metadata ([`MetadataStore`], implemented by the engine).
///
/// [`RefStore`] is synchronous, so each call waits for the engine's metadata thread (one
/// map lookup, or one append and fdatasync for a change) on the calling thread; that thread
/// never waits on the caller's executor, so this is safe inside any async runtime.
#[derive(Debug, Clone)]
pub struct MetadataRefStore<M> {
    store: M,
}

impl<M: MetadataStore> MetadataRefStore<M> {
    /// Refs in `store`'s metadata.
    pub fn new(store: M) -> MetadataRefStore<M> {
        MetadataRefStore { store }
    }
}

fn key(name: &str) -> Vec<u8> {
    format!("{PREFIX}{name}").into_bytes()
}

fn decode(name: &str, value: &[u8]) -> Result<Cid> {
    Cid::try_from(value).map_err(|e| Error::BadRefValue {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

impl<M: MetadataStore> RefStore for MetadataRefStore<M> {
    fn get(&self, name: &str) -> Result<Option<Cid>> {
        validate_name(name)?;
        block_on(self.store.meta_get(&key(name)))?
            .map(|v| decode(name, &v))
            .transpose()
    }

    fn compare_and_swap(&self, name: &str, expected: Option<Cid>, new: Option<Cid>) -> Result<()> {
        validate_name(name)?;
        let (expected_bytes, new_bytes) =
            (expected.map(|c| c.to_bytes()), new.map(|c| c.to_bytes()));
        let key = key(name);
        let swap =
            self.store
                .meta_compare_and_swap(&key, expected_bytes.as_deref(), new_bytes.as_deref());
        match block_on(swap)? {
            Swap::Done => Ok(()),
            Swap::Conflict { current } => Err(Error::Conflict {
                name: name.to_string(),
                expected: expected.map(Box::new),
                found: current.map(|v| decode(name, &v)).transpose()?.map(Box::new),
            }),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Cid)>> {
        let entries = block_on(self.store.meta_list(&key(prefix)))?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
                let cid = decode(&name, &v)?;
                Ok((name, cid))
            })
            .collect()
    }
}
