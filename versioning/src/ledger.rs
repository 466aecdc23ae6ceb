//! The ledger: which blocks this layer brought into the store, and so may sweep.
//!
//! gc must never delete a block it cannot prove is an unreachable versioning block, and a
//! store may be shared with other users whose blocks the versioning DAG knows nothing about.
//! So a writer records in the ledger every block it is about to store that was *not already
//! in the store*, before storing it; gc considers only ledger entries. A block that existed
//! before this layer wrote the same bytes is never recorded and never swept.
//!
//! Writers (commit, merge, import) hold a shared guard and gc an exclusive one, so gc never
//! sweeps the fresh blocks of a commit whose ref has not moved yet.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};

use cid::Cid;

use crate::error::{Error, Result};

/// A held guard; dropping it releases the lock.
pub type LedgerGuard<'a> = Box<dyn Send + 'a>;

/// Record of the blocks this layer stored, and the lock between writers and gc.
pub trait Ledger: Send + Sync {
    /// Records blocks about to be stored; durable when it returns.
    fn record(&self, cids: &[Cid]) -> Result<()>;
    /// Every recorded block (duplicates removed).
    fn recorded(&self) -> Result<Vec<Cid>>;
    /// Removes entries whose multihash is in `swept` (blocks gc deleted).
    fn forget(&self, swept: &HashSet<Vec<u8>>) -> Result<()>;
    /// A shared guard for a writer: many at once, none while gc runs.
    fn writer(&self) -> Result<LedgerGuard<'_>>;
    /// The exclusive guard of gc.
    fn exclusive(&self) -> Result<LedgerGuard<'_>>;
}

/// Readers/writer state of [`MemLedger`]: writers count up, gc sets -1.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<i64>,
    changed: Condvar,
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        *s = if *s < 0 { 0 } else { *s - 1 };
        self.0.changed.notify_all();
    }
}

impl Gate {
    fn enter(&self, exclusive: bool) -> GateGuard<'_> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let free = if exclusive { *s == 0 } else { *s >= 0 };
            if free {
                *s = if exclusive { -1 } else { *s + 1 };
                return GateGuard(self);
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A ledger in memory, for tests.
#[derive(Debug, Default)]
pub struct MemLedger {
    cids: Mutex<Vec<Cid>>,
    gate: Gate,
}

impl MemLedger {
    /// An empty ledger.
    pub fn new() -> MemLedger {
        MemLedger::default()
    }
}

fn dedup(cids: impl IntoIterator<Item = Cid>) -> Vec<Cid> {
    let mut seen = HashSet::new();
    cids.into_iter()
        .filter(|c| seen.insert(c.hash().to_bytes()))
        .collect()
}

impl Ledger for MemLedger {
    fn record(&self, cids: &[Cid]) -> Result<()> {
        self.cids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(cids);
        Ok(())
    }

    fn recorded(&self) -> Result<Vec<Cid>> {
        let cids = self.cids.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(dedup(cids.iter().copied()))
    }

    fn forget(&self, swept: &HashSet<Vec<u8>>) -> Result<()> {
        self.cids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|c| !swept.contains(&c.hash().to_bytes()));
        Ok(())
    }

    fn writer(&self) -> Result<LedgerGuard<'_>> {
        Ok(Box::new(self.gate.enter(false)))
    }

    fn exclusive(&self) -> Result<LedgerGuard<'_>> {
        Ok(Box::new(self.gate.enter(true)))
    }
}

/// A ledger file: binary CIDs, each prefixed by its length in one byte, appended and fsynced.
/// A torn last record (crash mid-append) is ignored on reading: its block was not stored yet,
/// since recording precedes storing. The lock is `flock` on `<file>.lock`, shared by writers,
/// exclusive for gc, so it also holds across processes.
#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    lock_path: PathBuf,
    append: Mutex<()>,
}

impl FileLedger {
    /// Opens (creating if needed) the ledger file at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileLedger> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        Ok(FileLedger {
            path,
            lock_path: lock_path.into(),
            append: Mutex::new(()),
        })
    }

    fn lock_file(&self) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(Error::io(&self.lock_path))
    }
}

/// Guard owning a locked file: closing it releases the flock.
struct FileGuard(#[allow(dead_code)] File);

impl Ledger for FileLedger {
    fn record(&self, cids: &[Cid]) -> Result<()> {
        if cids.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(cids.len() * 40);
        for cid in cids {
            let bytes = cid.to_bytes();
            // CIDs of this layer are ~36 bytes; the length byte is checked, not assumed.
            let len = u8::try_from(bytes.len()).map_err(|_| Error::Encode {
                what: "ledger entry",
                reason: format!("CID of {} bytes", bytes.len()),
            })?;
            buf.push(len);
            buf.extend_from_slice(&bytes);
        }
        let _serial = self.append.lock().unwrap_or_else(PoisonError::into_inner);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(Error::io(&self.path))?;
        f.write_all(&buf).map_err(Error::io(&self.path))?;
        f.sync_data().map_err(Error::io(&self.path))
    }

    fn recorded(&self) -> Result<Vec<Cid>> {
        let data = match fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.path)(e)),
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let len = usize::from(data[at]);
            let Some(bytes) = data.get(at + 1..at + 1 + len) else {
                break; // torn tail
            };
            let cid = ipfrs_storage::key::parse_cid_bytes(bytes).map_err(|e| Error::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("ledger entry at byte {at}: {e}"),
                ),
            })?;
            out.push(cid);
            at += 1 + len;
        }
        Ok(dedup(out))
    }

    fn forget(&self, swept: &HashSet<Vec<u8>>) -> Result<()> {
        let keep: Vec<Cid> = self
            .recorded()?
            .into_iter()
            .filter(|c| !swept.contains(&c.hash().to_bytes()))
            .collect();
        let _serial = self.append.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut buf = Vec::new();
        for cid in &keep {
            let bytes = cid.to_bytes();
            buf.push(bytes.len() as u8); // fits: every entry was read back from a length byte
            buf.extend_from_slice(&bytes);
        }
        let parent = self.path.parent().map(PathBuf::from).unwrap_or_default();
        (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(&parent)?.sync_all()
        })()
        .map_err(Error::io(&self.path))
    }

    fn writer(&self) -> Result<LedgerGuard<'_>> {
        let f = self.lock_file()?;
        f.lock_shared().map_err(Error::io(&self.lock_path))?;
        Ok(Box::new(FileGuard(f)))
    }

    fn exclusive(&self) -> Result<LedgerGuard<'_>> {
        let f = self.lock_file()?;
        f.lock().map_err(Error::io(&self.lock_path))?;
        Ok(Box::new(FileGuard(f)))
    }
}
