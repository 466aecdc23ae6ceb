//! parity-db 0.5, one btree-indexed column (ordered iteration needs the btree index).
//!
//! Durability limit: parity-db acknowledges a commit once it is queued; its background
//! threads write and fsync the log later, and 0.5 offers no public call that waits for them.
//! `flush` therefore cannot promise more than "queued"; dropping the database (engine close)
//! waits for everything. The engine's hot tier, not this backend, is the durability point for
//! new writes.

use std::path::Path;

use bytes::Bytes;
use ipfrs_core_types::BackendKind;
use parity_db::{ColId, Db, Options};

use crate::{BackendOptions, ColdBackend, Error, Result};

const KIND: BackendKind = BackendKind::ParityDb;
const COLUMN: ColId = 0;

/// A cold backend over one parity-db database.
pub struct ParityDbBackend {
    db: Db,
}

impl ParityDbBackend {
    /// Opens or creates the database in `dir`. parity-db has no cache budget to set.
    pub fn open(dir: &Path, _options: &BackendOptions) -> Result<ParityDbBackend> {
        let mut options = Options::with_columns(dir, 1);
        options.stats = false;
        options.columns[COLUMN as usize].btree_index = true;
        let db = Db::open_or_create(&options).map_err(|e| Error::backend(KIND, e))?;
        Ok(ParityDbBackend { db })
    }
}

impl ColdBackend for ParityDbBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let value = self
            .db
            .get(COLUMN, key)
            .map_err(|e| Error::backend(KIND, e))?;
        Ok(value.map(Bytes::from))
    }

    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()> {
        self.db
            .commit(
                items
                    .iter()
                    .map(|(key, value)| (COLUMN, key.as_slice(), Some(value.to_vec()))),
            )
            .map_err(|e| Error::backend(KIND, e))
    }

    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.db
            .commit(keys.iter().map(|key| (COLUMN, key.as_slice(), None)))
            .map_err(|e| Error::backend(KIND, e))
    }

    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<()> {
        let mut iter = self.db.iter(COLUMN).map_err(|e| Error::backend(KIND, e))?;
        match after {
            Some(key) => iter.seek(key),
            None => iter.seek_to_first(),
        }
        .map_err(|e| Error::backend(KIND, e))?;
        while let Some((key, value)) = iter.next().map_err(|e| Error::backend(KIND, e))? {
            // seek() positions at the first key >= `after`: skip `after` itself.
            if after == Some(key.as_slice()) {
                continue;
            }
            if !f(&key, value.len() as u64) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        // See the module documentation: nothing public to wait on in parity-db 0.5.
        Ok(())
    }

    fn flush_is_durable(&self) -> bool {
        false
    }
}
