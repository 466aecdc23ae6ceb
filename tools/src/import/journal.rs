//! The import journal: a write-ahead list of the CIDs an import adds to the store.
//!
//! File `<dir>/<pid>-<nanos>.journal`: the 8-byte magic, then one record per batch,
//! `length: u32 LE | xxh3-64 of the payload: u64 LE | payload`, the payload being the CIDs
//! of that batch that were absent from the store before it (binary CIDs back to back).
//!
//! A record is appended and synced before its batch's `put_many` starts, so every block an
//! import may have written is named by a durable record. A record that does not check out
//! (short, or a bad checksum) can only be the last one, torn by a crash while it was being
//! written: its batch was never sent, and reading stops there.
//!
//! The file is flock'ed while its import runs. Removing it is the import's commit point;
//! finding one that nobody holds (the importer died) means rolling it back: delete every
//! block it names, flush, then remove it ([`recover`]).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Cid};
use serde::Serialize;

use super::error::{ImportError, Result};

/// The first bytes of every journal (format version 1).
const MAGIC: &[u8; 8] = b"IPFRSIJ1";
/// Bytes before each record's payload: its length and its checksum.
const RECORD_HEADER: usize = 4 + 8;
/// The file name's extension.
const EXTENSION: &str = "journal";
/// CIDs per `delete_many` call of a rollback: bounds the request like an import batch does.
const DELETE_CHUNK: usize = 1024;

/// The open journal of a running import, flock'ed until it is removed or dropped.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    /// Every CID recorded so far, for an abort in this process (no need to read the file).
    recorded: Vec<Cid>,
}

impl Journal {
    /// Creates a new journal in `dir` (created if needed), durable (file and directory entry)
    /// before it returns.
    pub(crate) fn create(dir: &Path) -> Result<Journal> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ImportError::journal("cannot create the directory", dir, e))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = dir.join(format!("{}-{nanos}.{EXTENSION}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ImportError::journal("cannot create", &path, e))?;
        lock(&file, false).map_err(|e| ImportError::journal("cannot lock", &path, e))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_data())
            .map_err(|e| ImportError::journal("cannot write", &path, e))?;
        sync_dir(dir)?;
        Ok(Journal {
            file,
            path,
            dir: dir.to_path_buf(),
            recorded: Vec::new(),
        })
    }

    /// The journal's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record naming `cids` and syncs it: once this returns, a crash leaves a
    /// journal that names them. Nothing is written for an empty list.
    pub(crate) fn append(&mut self, cids: &[Cid]) -> Result<()> {
        if cids.is_empty() {
            return Ok(());
        }
        let mut payload = Vec::with_capacity(cids.len() * 40);
        for cid in cids {
            payload.extend_from_slice(&cid.to_bytes());
        }
        let length = u32::try_from(payload.len()).map_err(|_| {
            ImportError::journal(
                "a batch's CIDs exceed a record (4 GiB) in",
                &self.path,
                ErrorKind::InvalidInput.into(),
            )
        })?;
        let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
        record.extend_from_slice(&length.to_le_bytes());
        record.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.file
            .write_all(&record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| ImportError::journal("cannot append to", &self.path, e))?;
        self.recorded.extend_from_slice(cids);
        Ok(())
    }

    /// Every CID recorded by this process.
    pub(crate) fn recorded(&self) -> &[Cid] {
        &self.recorded
    }

    /// Removes the journal durably: the commit point of an import, or the end of a rollback.
    pub(crate) fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path)
            .map_err(|e| ImportError::journal("cannot remove", &self.path, e))?;
        sync_dir(&self.dir)
    }
}

/// What [`recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// Interrupted imports rolled back (journals removed).
    pub journals: usize,
    /// Blocks those imports had stored and that were deleted.
    pub deleted: u64,
    /// Journals held by a running import (another process), left alone.
    pub live: usize,
    /// Journals whose last record was torn (a crash while it was being written).
    pub torn: usize,
}

/// Rolls back every interrupted import whose journal is in `dir`: deletes the blocks it
/// names, flushes the store, removes the journal. Journals another process still holds are
/// skipped. A missing `dir` means there is nothing to do.
///
/// Run it after opening the store and before other writes: a block a concurrent writer
/// stored after the import had found it absent is deleted too (see the module docs).
pub fn recover<S: BlockStore>(store: &S, dir: &Path) -> Result<Recovered> {
    recover_keeping(store, dir, &|_| false)
}

/// [`recover`], except that journaled blocks for which `keep` is true stay (a store whose
/// other writers may have come to need them, e.g. blocks its pins reach). `keep` is called
/// only when there is a journal to roll back.
pub fn recover_keeping<S: BlockStore>(
    store: &S,
    dir: &Path,
    keep: &dyn Fn(&Cid) -> bool,
) -> Result<Recovered> {
    let mut done = Recovered::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(ImportError::journal("cannot list", dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ImportError::journal("cannot list", dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == EXTENSION) {
            paths.push(path);
        }
    }
    paths.sort();
    for path in paths {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Committed or rolled back by its owner meanwhile.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(ImportError::journal("cannot open", &path, e)),
        };
        match lock(&file, true) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                done.live += 1;
                continue;
            }
            Err(e) => return Err(ImportError::journal("cannot lock", &path, e)),
        }
        let (mut cids, torn) = read_records(&mut file, &path)?;
        cids.retain(|c| !keep(c));
        done.deleted += delete(store, &cids)?;
        block_on(store.flush())?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ImportError::journal("cannot remove", &path, e)),
        }
        sync_dir(dir)?;
        done.journals += 1;
        done.torn += usize::from(torn);
    }
    Ok(done)
}

/// Deletes `cids` in chunks; returns how many were stored.
pub(crate) fn delete<S: BlockStore>(store: &S, cids: &[Cid]) -> Result<u64> {
    let mut deleted = 0;
    for chunk in cids.chunks(DELETE_CHUNK) {
        deleted += block_on(store.delete_many(chunk))?
            .into_iter()
            .filter(|d| *d)
            .count() as u64;
    }
    Ok(deleted)
}

/// The CIDs of every whole record, and whether a torn record ended the file.
fn read_records(file: &mut File, path: &Path) -> Result<(Vec<Cid>, bool)> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| ImportError::journal("cannot read", path, e))?;
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        // Created but its magic never made it to disk: nothing was recorded, nothing sent.
        return Ok((Vec::new(), !bytes.is_empty()));
    };
    let mut cids = Vec::new();
    while !rest.is_empty() {
        let Some(record) = whole_record(rest) else {
            return Ok((cids, true));
        };
        let mut payload = &rest[RECORD_HEADER..RECORD_HEADER + record];
        let mut parsed = Vec::new();
        while !payload.is_empty() {
            match Cid::read_bytes(&mut payload) {
                Ok(cid) => parsed.push(cid),
                // The checksum matched, so the writer wrote this: a bug, not a torn write.
                // Keep what parsed and stop rather than guess where the next CID starts.
                Err(_) => return Ok((cids.into_iter().chain(parsed).collect(), true)),
            }
        }
        cids.extend(parsed);
        rest = &rest[RECORD_HEADER + record..];
    }
    Ok((cids, false))
}

/// The payload length of the record at the start of `rest`, if it is whole and checks out.
fn whole_record(rest: &[u8]) -> Option<usize> {
    let length = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(rest.get(4..RECORD_HEADER)?.try_into().ok()?);
    let payload = rest.get(RECORD_HEADER..RECORD_HEADER.checked_add(length)?)?;
    (xxhash_rust::xxh3::xxh3_64(payload) == sum).then_some(length)
}

/// An exclusive flock on `file` (`try_only`: fail with `WouldBlock` instead of waiting).
fn lock(file: &File, try_only: bool) -> std::io::Result<()> {
    let mut op = libc::LOCK_EX;
    if try_only {
        op |= libc::LOCK_NB;
    }
    // SAFETY: flock on a file descriptor this `File` owns and keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes a directory's entries (a created or removed journal) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    ipfrs_tiering::segment::file::sync_dir(dir)
        .map_err(|e| ImportError::journal("cannot sync the directory", dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ipfrs_storage::Block;

    #[test]
    fn records_read_back_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cids: Vec<Cid> = (0..5u8)
            .map(|i| *Block::new(vec![i; 10]).unwrap().cid())
            .collect();
        let mut journal = Journal::create(dir.path()).unwrap();
        journal.append(&cids[..2]).unwrap();
        journal.append(&[]).unwrap();
        journal.append(&cids[2..]).unwrap();
        let path = journal.path().to_path_buf();
        let (got, torn) = read_records(&mut File::open(&path).unwrap(), &path).unwrap();
        assert_eq!((got, torn), (cids.clone(), false));
        // A crash mid-append: the last record loses its end.
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let (got, torn) = read_records(&mut File::open(&path).unwrap(), &path).unwrap();
        assert_eq!((got, torn), (cids[..2].to_vec(), true));
        // A flipped byte in the first record's payload: nothing after it is trusted.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MAGIC.len() + RECORD_HEADER + 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (got, torn) = read_records(&mut File::open(&path).unwrap(), &path).unwrap();
        assert_eq!((got, torn), (Vec::new(), true));
        journal.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_held_journal_cannot_be_locked_by_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path()).unwrap();
        let other = File::open(journal.path()).unwrap();
        let err = lock(&other, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
        drop(journal);
        lock(&other, true).unwrap();
    }
}
