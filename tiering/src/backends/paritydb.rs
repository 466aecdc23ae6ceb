//! parity-db 0.5, one btree-indexed column (ordered iteration needs the btree index).
//!
//! Durability limit: parity-db acknowledges a commit once it is queued; its background
//! threads write and fsync the log later, and 0.5 offers no public call that waits for them.
//! `flush` therefore cannot promise more than "queued"; dropping the database (engine close)
//! waits for everything. The engine's hot tier, not this backend, is the durability point for
//! new writes.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipfrs_core_types::BackendKind;
use parity_db::{ColId, Db, Options};

use crate::{BackendOptions, ColdBackend, ColdDamage, DamageStage, Error, Result};

const KIND: BackendKind = BackendKind::ParityDb;
const COLUMN: ColId = 0;

/// A cold backend over one parity-db database.
pub struct ParityDbBackend {
    db: Db,
    dir: PathBuf,
}

impl ParityDbBackend {
    /// Opens or creates the database in `dir`. parity-db has no cache budget to set.
    ///
    /// # Errors
    /// [`Error::TruncatedTable`] for a value table whose length parity-db could not have left
    /// (see `check_value_tables`).
    pub fn open(dir: &Path, _options: &BackendOptions) -> Result<ParityDbBackend> {
        check_value_tables(dir)?;
        let mut options = Options::with_columns(dir, 1);
        options.stats = false;
        options.columns[COLUMN as usize].btree_index = true;
        let db = Db::open_or_create(&options).map_err(|e| Error::backend(KIND, e))?;
        Ok(ParityDbBackend {
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// parity-db's error as ours: a read of damaged bytes is a [`ColdDamage`], so the engine
    /// reports that key as corrupt rather than failing as an I/O problem.
    fn error(&self, err: parity_db::Error) -> Error {
        match err {
            parity_db::Error::Corruption(_) | parity_db::Error::InvalidValueData => ColdDamage {
                backend: KIND,
                path: self.dir.clone(),
                stage: DamageStage::Read,
                cause: err.to_string(),
            }
            .into_error(),
            other => Error::backend(KIND, other),
        }
    }
}

/// parity-db 0.5 creates and grows its value tables (`table_CC_T` files) 256 KiB at a time
/// (`file::GROW_SIZE_BYTES`, private to the crate).
const TABLE_GROWTH: u64 = 256 << 10;

/// Refuses value tables that were cut short. parity-db maps them and trusts its index, so a
/// read of an entry past a truncated end touches a mapped page with no file behind it: the
/// kernel kills the whole process with SIGBUS (found by engine/tests/cold_corruption.rs).
/// parity-db itself only ever sets their length to a multiple of [`TABLE_GROWTH`], so any
/// other length means damage. (A cut that lands exactly on a multiple still goes unseen.)
fn check_value_tables(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(dir))?;
        let is_table = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("table_"));
        if !is_table {
            continue;
        }
        let len = entry.metadata().map_err(Error::io(entry.path()))?.len();
        if len % TABLE_GROWTH != 0 {
            return Err(Error::TruncatedTable {
                path: entry.path(),
                len,
                granularity: TABLE_GROWTH,
            });
        }
    }
    Ok(())
}

impl ColdBackend for ParityDbBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let value = self.db.get(COLUMN, key).map_err(|e| self.error(e))?;
        Ok(value.map(Bytes::from))
    }

    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()> {
        self.db
            .commit(
                items
                    .iter()
                    .map(|(key, value)| (COLUMN, key.as_slice(), Some(value.to_vec()))),
            )
            .map_err(|e| self.error(e))
    }

    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.db
            .commit(keys.iter().map(|key| (COLUMN, key.as_slice(), None)))
            .map_err(|e| self.error(e))
    }

    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut iter = self.db.iter(COLUMN).map_err(|e| self.error(e))?;
        match after {
            Some(key) => iter.seek(key),
            None => iter.seek_to_first(),
        }
        .map_err(|e| self.error(e))?;
        while let Some((key, value)) = iter.next().map_err(|e| self.error(e))? {
            // seek() positions at the first key >= `after`: skip `after` itself.
            if after == Some(key.as_slice()) {
                continue;
            }
            if !f(&key, &value) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Without the check this open succeeds, and a read of an entry past the cut kills the
    /// process with SIGBUS (as engine/tests/cold_corruption.rs did before the check).
    #[test]
    fn a_truncated_value_table_is_refused_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = ParityDbBackend::open(dir.path(), &BackendOptions::default()).unwrap();
            let items: Vec<(Vec<u8>, Bytes)> = (0..200u32)
                .map(|i| (i.to_be_bytes().to_vec(), Bytes::from(vec![i as u8; 3000])))
                .collect();
            backend.put_batch(&items).unwrap();
        }
        let table = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("table_")
            })
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let len = std::fs::metadata(&table).unwrap().len();
        assert_eq!(len % TABLE_GROWTH, 0, "parity-db's own length");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&table)
            .unwrap()
            .set_len(len - 4096)
            .unwrap();
        match ParityDbBackend::open(dir.path(), &BackendOptions::default()) {
            Err(Error::TruncatedTable { path, len, .. }) => {
                assert_eq!(path, table);
                assert_eq!(len % TABLE_GROWTH, TABLE_GROWTH - 4096);
            }
            Ok(_) => panic!("a truncated value table was opened"),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}
