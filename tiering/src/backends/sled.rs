//! sled 0.34: the default cold backend.
//!
//! `flush` is sled's flush, then an fdatasync of what it wrote. sled 0.34 makes its log
//! "stable" with `sync_file_range`, which neither commits the file's metadata (the log grows
//! into newly allocated blocks) nor flushes the disk's write cache, and writes its blob files
//! (large values) without any sync: after a power cut, a block acknowledged as durable, or
//! moved out of the hot tier on the strength of that flush, could be gone. So the backend
//! syncs the blob files sled wrote since the last flush and their directory, then the log
//! file, before the flush returns and before the mark below is moved.
//!
//! After each flush the backend records sled's stable log position in [`MARK_FILE`], and
//! hands it back to sled at the next open (`Config::durable_mark`, a patch of the vendored
//! sled): recovery then tells damage in the log (below the mark) from a torn write (above
//! it). Unpatched, sled takes any corrupted message for the end of the log and zeroes every
//! segment after it, losing all later data without a word; with the mark it skips the rest
//! of the damaged segment only, and the damage is reported ([`ColdBackend::damage_at_open`]).

use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipfrs_core_types::BackendKind;

use crate::segment::file::sync_dir;
use crate::{BackendOptions, ColdBackend, ColdDamage, DamageStage, Error, Result};

const KIND: BackendKind = BackendKind::Sled;

/// How long an open waits for a just-closed handle's file lock to go.
pub const LOCK_RETRY: Duration = Duration::from_secs(2);

/// The file in the sled directory that holds the durable mark: the log sequence number
/// (little-endian i64) and its bitwise complement, so a torn or damaged mark is ignored (then
/// recovery behaves as upstream sled's).
pub const MARK_FILE: &str = "ipfrs-durable-lsn";

/// A cold backend over one sled database.
pub struct SledBackend {
    db: sled::Db,
    dir: PathBuf,
    /// The mark file and the mark it holds.
    mark: Mutex<(File, i64)>,
    /// sled's log file (`db`), for the fdatasync its flush does not do (module docs).
    log: File,
    /// The newest blob file (named by its LSN) synced so far.
    blobs_synced: Mutex<i64>,
    /// What recovery skipped as damage at open.
    damage: Option<ColdDamage>,
}

/// The mark in `dir`, if there is a valid one.
fn read_mark(dir: &Path) -> Option<i64> {
    let bytes = std::fs::read(dir.join(MARK_FILE)).ok()?;
    let lsn = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let check = i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (check == !lsn).then_some(lsn)
}

/// Writes `lsn` as the mark and syncs it.
fn write_mark(file: &File, dir: &Path, lsn: i64) -> Result<()> {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&lsn.to_le_bytes());
    bytes[8..].copy_from_slice(&(!lsn).to_le_bytes());
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(Error::io(dir.join(MARK_FILE)))
}

/// fdatasync of sled's log file (see the module docs).
fn sync_log(log: &File, dir: &Path) -> Result<()> {
    // Fault injection (tests, the `fail` crate's `failpoints` feature): the sync fails.
    fail::fail_point!("sled-log-sync", |_| Err(Error::Io {
        path: dir.join("db"),
        source: std::io::Error::from_raw_os_error(libc::EIO),
    }));
    log.sync_data().map_err(Error::io(dir.join("db")))
}

/// Syncs every blob file sled wrote after the one named `after` (blob files are named by the
/// LSN of their log message and never rewritten), then their directory if there were any.
/// A blob removed meanwhile (sled's blob GC) needs no sync. The caller records how far its
/// syncs reached: an LSN it read before calling, not the newest name seen here (a blob of a
/// lower LSN may still be being written by another thread).
fn sync_new_blobs(dir: &Path, after: i64) -> Result<()> {
    let blobs = dir.join("blobs");
    let entries = match std::fs::read_dir(&blobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&blobs)(e)),
    };
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(Error::io(&blobs))?;
        let Some(lsn) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i64>().ok())
        else {
            continue;
        };
        if lsn <= after {
            continue;
        }
        match File::open(entry.path()) {
            Ok(file) => file.sync_data().map_err(Error::io(entry.path()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(entry.path())(e)),
        }
        any = true;
    }
    if any {
        sync_dir(&blobs).map_err(Error::io(&blobs))?;
    }
    Ok(())
}

/// The file in the sled directory listing the damage recovery skipped, one line each. sled
/// writes a new snapshot after recovering, and a later open starts from it and never meets
/// the damage again: this file keeps it on record until `repo repair` replaces the backend.
pub const DAMAGE_FILE: &str = "ipfrs-recovery-damage";

/// Appends `lines` to the damage record and syncs it; returns every line it now holds.
fn record_damage(dir: &Path, lines: &[String]) -> Result<Vec<String>> {
    let path = dir.join(DAMAGE_FILE);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut all: Vec<String> = match std::fs::read_to_string(&path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    if !lines.is_empty() {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        for line in lines {
            writeln!(file, "{line}").map_err(io)?;
        }
        file.sync_data().map_err(io)?;
        sync_dir(dir).map_err(io)?;
        all.extend_from_slice(lines);
    }
    Ok(all)
}

/// The most damage lines one open reports in full (the rest are counted).
const DAMAGE_LINES: usize = 4;

impl SledBackend {
    /// Opens or creates the database in `dir`.
    ///
    /// sled's background flusher may hold the database's file lock for a moment after the
    /// previous handle was dropped, so a reopen right after a close retries that one error
    /// for up to `LOCK_RETRY` (the engine's own directory lock already rules out a second
    /// live engine).
    pub fn open(dir: &Path, options: &BackendOptions) -> Result<SledBackend> {
        let mark = read_mark(dir);
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            .durable_mark(mark);
        let started = Instant::now();
        let mut regenerated_conf = None;
        loop {
            match config.open() {
                Ok(db) => {
                    let backend = SledBackend::opened(db, dir, mark, regenerated_conf.as_ref())?;
                    return Ok(backend);
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
                // sled's `conf` holds only settings this build always uses (segment size,
                // compression, version) under a checksum, and sled refuses to open when it
                // is damaged. It is moved aside (kept) and sled writes it anew; if the open
                // still fails, it goes back and the first error stands.
                Err(e @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_)))
                    if regenerated_conf.is_none() =>
                {
                    match set_conf_aside(dir)? {
                        Some(aside) => regenerated_conf = Some((aside, e.to_string())),
                        None => return Err(Error::backend(KIND, e)),
                    }
                }
                Err(e) => {
                    if let Some((aside, _)) = &regenerated_conf {
                        let _ = std::fs::rename(aside, dir.join("conf"));
                    }
                    return Err(Error::backend(KIND, e));
                }
            }
        }
    }

    /// Takes over an opened database: reports what recovery skipped, and moves the mark to
    /// where recovery left the log (new writes continue from there, so an old, higher mark
    /// could otherwise cover bytes that were never written).
    fn opened(
        db: sled::Db,
        dir: &Path,
        mark: Option<i64>,
        regenerated_conf: Option<&(PathBuf, String)>,
    ) -> Result<SledBackend> {
        let mut found = db.recovery_damage();
        if let Some((aside, cause)) = regenerated_conf {
            found.push(format!(
                "sled's conf file was damaged ({cause}) and was written anew from this \
                 build's settings; the damaged one is kept as {}",
                aside.display()
            ));
        }
        let skipped = record_damage(dir, &found)?;
        let damage = (!skipped.is_empty()).then(|| {
            let mut cause = skipped
                .iter()
                .take(DAMAGE_LINES)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            if skipped.len() > DAMAGE_LINES {
                cause.push_str(&format!(
                    "; and {} more damaged places",
                    skipped.len() - DAMAGE_LINES
                ));
            }
            ColdDamage {
                backend: KIND,
                path: dir.to_path_buf(),
                stage: DamageStage::Open,
                cause: format!("sled skipped damaged log data while recovering: {cause}"),
            }
        });
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(MARK_FILE))
            .map_err(Error::io(dir.join(MARK_FILE)))?;
        let log_path = dir.join("db");
        let log = File::open(&log_path).map_err(Error::io(log_path))?;
        // What a previous process wrote past its last mark is synced once here (it may have
        // stopped between sled's flush and the sync), so the mark below is true. Blobs at or
        // below that mark were synced by the flush that wrote it: not again at every open.
        let lsn = db.stable_lsn();
        sync_new_blobs(dir, mark.unwrap_or(i64::MIN))?;
        sync_log(&log, dir)?;
        write_mark(&file, dir, lsn)?;
        Ok(SledBackend {
            db,
            dir: dir.to_path_buf(),
            mark: Mutex::new((file, lsn)),
            log,
            blobs_synced: Mutex::new(lsn),
            damage,
        })
    }

    /// sled's error as ours: a read of damaged bytes (`Corruption`, or a short read of a
    /// file cut short) is a [`ColdDamage`], so the engine reports that key as corrupt rather
    /// than failing as an I/O problem.
    fn error(&self, err: sled::Error) -> Error {
        let damaged = match &err {
            sled::Error::Corruption { .. } => true,
            sled::Error::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ),
            _ => false,
        };
        if !damaged {
            return Error::backend(KIND, err);
        }
        ColdDamage {
            backend: KIND,
            path: self.dir.clone(),
            stage: DamageStage::Read,
            cause: err.to_string(),
        }
        .into_error()
    }
}

/// Moves sled's `conf` in `dir` to the first free `conf.damaged-N`; returns where, or `None`
/// when there is no `conf`.
fn set_conf_aside(dir: &Path) -> Result<Option<PathBuf>> {
    let conf = dir.join("conf");
    if !conf.exists() {
        return Ok(None);
    }
    let aside = (0..)
        .map(|n| dir.join(format!("conf.damaged-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join("conf.damaged"));
    std::fs::rename(&conf, &aside).map_err(Error::io(&conf))?;
    Ok(Some(aside))
}

/// Removes sled's unfinished snapshot files in `dir`; returns how many there were.
fn remove_unfinished_snapshots(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = std::fs::read_dir(dir).map_err(Error::io(dir))?;
    for entry in entries {
        let path = entry.map_err(Error::io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(&path).map_err(Error::io(&path))?;
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

    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        for entry in self.db.range::<&[u8], _>((start, Bound::Unbounded)) {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            if !f(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// sled's flush, then the mark moved up to sled's stable position (under the lock, so
    /// the mark only ever grows).
    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.error(e))?;
        // What the syncs below cover: read before them, since sled's background flusher may
        // make more of the log stable meanwhile, which they would not have synced. Every
        // blob of a message at or below it is already written (a blob precedes its message).
        let lsn = self.db.stable_lsn();
        {
            let mut synced = self.blobs_synced.lock().unwrap_or_else(|e| e.into_inner());
            sync_new_blobs(&self.dir, *synced)?;
            *synced = (*synced).max(lsn);
        }
        sync_log(&self.log, &self.dir)?;
        let mut mark = self.mark.lock().unwrap_or_else(|e| e.into_inner());
        if lsn > mark.1 {
            write_mark(&mark.0, &self.dir, lsn)?;
            mark.1 = lsn;
        }
        Ok(())
    }

    fn damage_at_open(&self) -> Option<ColdDamage> {
        self.damage.clone()
    }

    /// Every leaf of sled's page table (`Tree::salvage`, a patch of the vendored sled).
    fn salvage(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<Option<u64>> {
        Ok(Some(self.db.salvage(f)))
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
