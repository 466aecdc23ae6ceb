//! sled 0.34: the default cold backend. `flush` is sled's own fsync of its log.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipfrs_core_types::BackendKind;

use crate::{BackendOptions, ColdBackend, ColdDamage, DamageStage, Error, Result};

const KIND: BackendKind = BackendKind::Sled;

/// How long an open waits for a just-closed handle's file lock to go.
pub const LOCK_RETRY: Duration = Duration::from_secs(2);

/// A cold backend over one sled database.
pub struct SledBackend {
    db: sled::Db,
    dir: PathBuf,
}

impl SledBackend {
    /// Opens or creates the database in `dir`.
    ///
    /// sled's background flusher may hold the database's file lock for a moment after the
    /// previous handle was dropped, so a reopen right after a close retries that one error
    /// for up to [`LOCK_RETRY`] (the engine's own directory lock already rules out a second
    /// live engine).
    pub fn open(dir: &Path, options: &BackendOptions) -> Result<SledBackend> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes);
        let started = Instant::now();
        loop {
            match config.open() {
                Ok(db) => {
                    return Ok(SledBackend {
                        db,
                        dir: dir.to_path_buf(),
                    });
                }
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < LOCK_RETRY =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                // A kill while sled wrote a snapshot leaves `snap.<lsn>.generating`, which
                // sled 0.34 then takes for its newest snapshot and refuses as corrupt (it is
                // written, synced and only then renamed, so that name always means
                // unfinished). Having got this far, sled holds its lock: no live instance is
                // writing it. Remove it and recover from the previous snapshot and the log.
                Err(sled::Error::Corruption { .. }) if remove_unfinished_snapshots(dir)? > 0 => {}
                Err(e) => return Err(Error::backend(KIND, e)),
            }
        }
    }

    /// sled's error as ours: a read of damaged bytes (`Corruption`) is a [`ColdDamage`], so
    /// the engine reports that key as corrupt rather than failing as an I/O problem.
    fn error(&self, err: sled::Error) -> Error {
        match err {
            sled::Error::Corruption { .. } => ColdDamage {
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

/// Removes sled's unfinished snapshot files in `dir`; returns how many there were.
fn remove_unfinished_snapshots(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::backend(KIND, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::backend(KIND, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(&path).map_err(|e| Error::backend(KIND, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl ColdBackend for SledBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let value = self.db.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn size(&self, key: &[u8]) -> Result<Option<u64>> {
        let value = self.db.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.len() as u64))
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        self.db.contains_key(key).map_err(|e| self.error(e))
    }

    /// One `insert` per item, not a `sled::Batch`. sled 0.34 applies a batch under a
    /// process-wide write lock that every read of every sled tree then waits on, and pins
    /// one epoch for the whole batch, so no page replaced or evicted meanwhile can be freed
    /// until it ends. A compaction batch pulls hundreds of leaves from disk: reads stalled
    /// for it and its memory piled up. Each item is stored whole or not at all, which is
    /// what a block needs: the engine never relied on a batch landing whole, as each block
    /// stands alone and a durable write is acknowledged only after `flush`.
    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()> {
        for (key, value) in items {
            self.db
                .insert(key.as_slice(), value.as_ref())
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// One `remove` per key, for the reasons given at `put_batch`.
    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()> {
        for key in keys {
            self.db.remove(key.as_slice()).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<()> {
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        for entry in self.db.range::<&[u8], _>((start, Bound::Unbounded)) {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            if !f(&key, value.len() as u64) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What a SIGKILL during sled's snapshot write leaves behind (found by ipfrs-torture): a
    /// zero-length `.generating` file newer than the last snapshot. The store must open, with
    /// its data.
    #[test]
    fn an_unfinished_snapshot_left_by_a_kill_does_not_brick_the_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = SledBackend::open(dir.path(), &BackendOptions::default()).unwrap();
            backend
                .put_batch(&[(b"key".to_vec(), Bytes::from_static(b"value"))])
                .unwrap();
            backend.flush().unwrap();
        }
        let stale = dir.path().join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&stale, b"").unwrap();
        let backend = SledBackend::open(dir.path(), &BackendOptions::default()).unwrap();
        assert_eq!(backend.get(b"key").unwrap().as_deref(), Some(&b"value"[..]));
        assert!(!stale.exists());
    }
}
