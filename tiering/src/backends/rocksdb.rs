//! rocksdb (cargo feature `rocksdb`). Writes go through the WAL without sync; `flush` syncs
//! the WAL (`flush_wal(true)`), which makes every earlier write durable.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipfrs_core_types::BackendKind;
use rocksdb::{BlockBasedOptions, Cache, DB, Direction, IteratorMode, Options, WriteBatch};

use crate::{BackendOptions, ColdBackend, ColdDamage, DamageStage, Error, Result};

const KIND: BackendKind = BackendKind::RocksDb;

/// A cold backend over one rocksdb database.
pub struct RocksDbBackend {
    db: DB,
    dir: PathBuf,
}

impl RocksDbBackend {
    /// Opens or creates the database in `dir`, its block cache bounded by the options.
    pub fn open(dir: &Path, options: &BackendOptions) -> Result<RocksDbBackend> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(options.cache_bytes as usize));
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, dir).map_err(|e| Error::backend(KIND, e))?;
        Ok(RocksDbBackend {
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// rocksdb's error as ours: a read of damaged bytes (a failed block checksum) is a
    /// [`ColdDamage`], so the engine reports that key as corrupt rather than failing as an
    /// I/O problem.
    fn error(&self, err: rocksdb::Error) -> Error {
        match err.kind() {
            rocksdb::ErrorKind::Corruption => ColdDamage {
                backend: KIND,
                path: self.dir.clone(),
                stage: DamageStage::Read,
                cause: err.to_string(),
            }
            .into_error(),
            _ => Error::backend(KIND, err),
        }
    }
}

impl ColdBackend for RocksDbBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let value = self.db.get_pinned(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn size(&self, key: &[u8]) -> Result<Option<u64>> {
        let value = self.db.get_pinned(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.len() as u64))
    }

    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (key, value) in items {
            batch.put(key, value);
        }
        self.db.write(batch).map_err(|e| self.error(e))
    }

    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.delete(key);
        }
        self.db.write(batch).map_err(|e| self.error(e))
    }

    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mode = match after {
            Some(key) => IteratorMode::From(key, Direction::Forward),
            None => IteratorMode::Start,
        };
        for entry in self.db.iterator(mode) {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            if after == Some(&key[..]) {
                continue;
            }
            if !f(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| self.error(e))
    }
}
